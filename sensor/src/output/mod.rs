//! The output stage: every configured output is an encoder (`encode/`)
//! feeding a sink (`sink/`). An event is encoded once per format and the
//! bytes handed to every output that asked for that format; every failed
//! write is counted per output and reported in the heartbeat, never
//! dropped silently.

pub mod encode;
pub mod sink;

use crate::{
    config::OutputSpec,
    event::{Event, OutputCounters},
    store::Writer,
};
use encode::{Encoder, Format};
use sink::{Sink, SinkError};

/// One output: a sink and the format it takes.
struct Output {
    format: Format,
    sink: Box<dyn Sink>,
    counters: OutputCounters,
}

/// Every configured output, fed one event at a time.
pub struct Fanout {
    outputs: Vec<Output>,
    /// One encoder and one reused buffer per format in use.
    encoders: Vec<(Format, Box<dyn Encoder>, Vec<u8>)>,
    /// The audit store, which keeps every record's native encoding.
    store: Option<Writer>,
}

impl Fanout {
    /// Opens every output; the first that cannot be opened is the error.
    pub fn open(specs: &[OutputSpec]) -> Result<Self, SinkError> {
        let sinks = specs
            .iter()
            .map(|spec| Ok((spec.format, sink::open(&spec.sink)?)))
            .collect::<Result<Vec<_>, SinkError>>()?;
        Ok(Self::new(sinks))
    }

    /// Outputs from sinks already open, each with its format.
    pub fn new(sinks: Vec<(Format, Box<dyn Sink>)>) -> Self {
        let mut encoders: Vec<(Format, Box<dyn Encoder>, Vec<u8>)> = Vec::new();
        let outputs = sinks
            .into_iter()
            .map(|(format, sink)| {
                if !encoders.iter().any(|(f, ..)| *f == format) {
                    encoders.push((format, format.encoder(), Vec::with_capacity(4096)));
                }
                let counters = OutputCounters {
                    name: sink.name().to_string(),
                    ..OutputCounters::default()
                };
                Output {
                    format,
                    sink,
                    counters,
                }
            })
            .collect();
        Self {
            outputs,
            encoders,
            store: None,
        }
    }

    /// Keeps every record in `store` too, in the native encoding the
    /// outputs write (byte for byte, with the line's newline).
    pub fn attach_store(&mut self, store: Writer) {
        if !self.encoders.iter().any(|(f, ..)| *f == Format::Native) {
            let native = Format::Native;
            self.encoders
                .push((native, native.encoder(), Vec::with_capacity(4096)));
        }
        self.store = Some(store);
    }

    pub fn store(&self) -> Option<&Writer> {
        self.store.as_ref()
    }

    /// Commits every record queued for the store and stops its writer:
    /// the last thing before the agent exits.
    pub fn finish(&mut self) {
        if let Some(store) = &mut self.store {
            store.finish();
        }
    }

    /// Encodes `event` once per format and writes it to every output.
    pub fn emit(&mut self, event: &Event) {
        for (format, encoder, buf) in &mut self.encoders {
            buf.clear();
            if let Err(err) = encoder.encode(event, buf) {
                tracing::error!(error = %crate::Chain(&err), encoder = encoder.name(), "cannot encode a record; it is lost for this format");
                buf.clear();
                // Outputs of this format count it as a failed write.
                for output in self.outputs.iter_mut().filter(|o| o.format == *format) {
                    output.counters.write_failures += 1;
                }
                // The store keeps the native encoding: it lost it too.
                if *format == Format::Native
                    && let Some(store) = &self.store
                {
                    store.count_unencodable();
                }
                continue;
            }
            if *format == Format::Native
                && let Some(store) = &self.store
            {
                store.submit(event, buf);
            }
            for output in self.outputs.iter_mut().filter(|o| o.format == *format) {
                let counters = &mut output.counters;
                match output.sink.write_line(buf) {
                    Ok(()) => counters.records_written += 1,
                    Err(err) => {
                        counters.write_failures += 1;
                        // First failure and then every 1000th, so a dead
                        // sink cannot flood the log.
                        if counters.write_failures % 1000 == 1 {
                            tracing::error!(sink = %counters.name, error = %crate::Chain(&err), failures = counters.write_failures, "record write failed; the record is lost for this sink");
                        }
                    }
                }
            }
        }
    }

    /// Flushes every sink; call after each batch.
    pub fn flush(&mut self) {
        for output in &mut self.outputs {
            let counters = &mut output.counters;
            if let Err(err) = output.sink.flush() {
                counters.write_failures += 1;
                if counters.write_failures % 1000 == 1 {
                    tracing::error!(sink = %counters.name, error = %crate::Chain(&err), "flush failed; buffered records may be lost");
                }
            }
        }
    }

    /// Per-output counters, in configuration order.
    pub fn counters(&self) -> Vec<OutputCounters> {
        self.outputs.iter().map(|o| o.counters.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::event::{Action, Severity, Tier, Timestamp};
    use sink::JsonlSink;

    fn event() -> Event {
        Event {
            id: None,
            time: Timestamp::from_unix_ns(1_767_225_600_000_000_000),
            host: "h".into(),
            action: Action::Heartbeat,
            severity: Severity::Info,
            tier: Tier::Tracepoint,
            process: None,
            file: None,
            access: None,
            exit: None,
            sensor: None,
            policy: None,
            target: None,
            detection: None,
        }
    }

    struct Broken;
    impl Sink for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn write_line(&mut self, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn jsonl_appends_one_record_per_line_and_failures_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/events.jsonl");
        let jsonl = JsonlSink::open(&path).expect("open");
        let mut fanout = Fanout::new(vec![
            (Format::Native, Box::new(jsonl)),
            (Format::Native, Box::new(Broken)),
        ]);
        fanout.emit(&event());
        fanout.emit(&event());
        fanout.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let decoded = encode::native::decode(lines[0]).expect("decode");
        assert_eq!(decoded, event());
        let counters = fanout.counters();
        assert_eq!(counters[0].records_written, 2);
        assert_eq!(counters[0].write_failures, 0);
        assert_eq!(counters[1].records_written, 0);
        assert_eq!(counters[1].write_failures, 2);
    }

    #[test]
    fn unopenable_jsonl_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory cannot be opened for appending.
        let err = JsonlSink::open(dir.path()).err().expect("error");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
