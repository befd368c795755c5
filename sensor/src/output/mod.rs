//! The output stage: every configured output is an encoder (`encode/`)
//! feeding a sink (`sink/`). An event is encoded once per format and the
//! bytes added to the batch of every output that asked for that format;
//! [`Fanout::flush`] writes each batch in one go. Each record is counted
//! exactly once per output, as written or as failed (lost), from what the
//! write actually did; a failing output is logged at its first failure,
//! every minute while it lasts, and when it recovers.

pub mod encode;
pub mod sink;

use std::time::{Duration, Instant};

use crate::{
    config::OutputSpec,
    event::{Event, OutputCounters},
    store::Writer,
};
use encode::{Encoder, Format};
use sink::{Sink, SinkError, WriteError};

/// A batch this large is written at once rather than at the next flush.
const BATCH_MAX_BYTES: usize = 1 << 20;

/// How often a failing output is warned about while it keeps failing.
const FAILING_WARN_EVERY: Duration = Duration::from_secs(60);

/// One output: a sink, the format it takes, and its batch.
struct Output {
    format: Format,
    sink: Box<dyn Sink>,
    counters: OutputCounters,
    /// Encoded records not written yet, and where each ends in it.
    batch: Vec<u8>,
    ends: Vec<usize>,
    failing: Option<Failing>,
}

/// An output that failed and has not written since.
struct Failing {
    error: String,
    lost: u64,
    warned: Instant,
    lost_since_warned: u64,
}

impl Output {
    /// Writes the batch; counts each record written or lost.
    fn flush(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let records = self.ends.len() as u64;
        let result = if self.sink.is_dead() {
            Err(WriteError {
                written: 0,
                source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
            })
        } else {
            self.sink.write(&self.batch)
        };
        match result {
            Ok(()) => {
                self.counters.records_written += records;
                if let Some(f) = self.failing.take() {
                    tracing::info!(
                        output = %self.counters.name,
                        lost = f.lost,
                        "the output writes again; records were lost while it failed"
                    );
                }
            }
            Err(err) => {
                let whole = self
                    .ends
                    .iter()
                    .take_while(|&&end| end <= err.written)
                    .count() as u64;
                self.counters.records_written += whole;
                self.counters.write_failures += records - whole;
                self.failed(records - whole, &err);
            }
        }
        self.batch.clear();
        self.ends.clear();
    }

    /// Logs a failure: at the first, then once a minute while it lasts.
    fn failed(&mut self, lost: u64, err: &WriteError) {
        let error = crate::Chain(&err.source).to_string();
        let name = &self.counters.name;
        match &mut self.failing {
            None => {
                tracing::error!(
                    output = %name,
                    error,
                    lost,
                    "cannot write to the output: its records are lost (counted in its \
                     write_failures; the agent, the store and the other outputs go on)"
                );
                self.failing = Some(Failing {
                    error,
                    lost,
                    warned: Instant::now(),
                    lost_since_warned: 0,
                });
            }
            Some(f) => {
                f.lost += lost;
                f.lost_since_warned += lost;
                if f.warned.elapsed() >= FAILING_WARN_EVERY || f.error != error {
                    tracing::warn!(
                        output = %name,
                        error,
                        lost = f.lost_since_warned,
                        lost_in_all = f.lost,
                        "the output still fails: records lost since the last warning"
                    );
                    f.warned = Instant::now();
                    f.lost_since_warned = 0;
                    f.error = error;
                }
            }
        }
    }
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
            .map(|spec| Ok((spec.format, sink::open(&spec.sink, spec.rotation)?)))
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
                    batch: Vec::new(),
                    ends: Vec::new(),
                    failing: None,
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
        self.flush();
        if let Some(store) = &mut self.store {
            store.finish();
        }
    }

    /// Encodes `event` once per format and adds it to every output's
    /// batch.
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
                output.batch.extend_from_slice(buf);
                output.ends.push(output.batch.len());
                if output.batch.len() >= BATCH_MAX_BYTES {
                    output.flush();
                }
            }
        }
    }

    /// Writes every output's batch; call after each batch of events.
    pub fn flush(&mut self) {
        for output in &mut self.outputs {
            output.flush();
        }
    }

    /// Opens every output's destination again (SIGHUP: an external log
    /// rotation moved the files).
    pub fn reopen(&mut self) {
        self.flush();
        for output in &mut self.outputs {
            match output.sink.reopen() {
                Ok(()) => tracing::info!(output = %output.counters.name, "output reopened"),
                Err(err) => tracing::error!(
                    output = %output.counters.name,
                    error = %crate::Chain(&err),
                    "cannot reopen the output: it goes on writing where it did"
                ),
            }
        }
    }

    /// Per-output counters, in configuration order.
    pub fn counters(&self) -> Vec<OutputCounters> {
        self.outputs.iter().map(|o| o.counters.clone()).collect()
    }

    /// Records lost for any output so far.
    pub fn lost(&self) -> u64 {
        self.outputs.iter().map(|o| o.counters.write_failures).sum()
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
        fn write(&mut self, _: &[u8]) -> Result<(), WriteError> {
            Err(WriteError {
                written: 0,
                source: io::Error::other("disk full"),
            })
        }
    }

    /// Takes `room` bytes, then fails: a disk that fills mid-batch.
    struct Filling {
        room: usize,
        got: Vec<u8>,
    }
    impl Sink for Filling {
        fn name(&self) -> &str {
            "filling"
        }
        fn write(&mut self, records: &[u8]) -> Result<(), WriteError> {
            let n = records.len().min(self.room);
            self.got.extend_from_slice(&records[..n]);
            self.room -= n;
            if n < records.len() {
                return Err(WriteError {
                    written: n,
                    source: io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn a_write_that_stops_part_way_counts_each_record_once() {
        let mut line = Vec::new();
        encode::native::Native
            .encode(&event(), &mut line)
            .expect("encode");
        // Room for two whole records and half of the third.
        let room = 2 * line.len() + line.len() / 2;
        let mut fanout = Fanout::new(vec![(
            Format::Native,
            Box::new(Filling {
                room,
                got: Vec::new(),
            }),
        )]);
        for _ in 0..5 {
            fanout.emit(&event());
        }
        fanout.flush();
        let c = &fanout.counters()[0];
        assert_eq!((c.records_written, c.write_failures), (2, 3));
        // Later records find no room either: lost, and counted.
        fanout.emit(&event());
        fanout.flush();
        let c = &fanout.counters()[0];
        assert_eq!((c.records_written, c.write_failures), (2, 4));
        assert_eq!(fanout.lost(), 4);
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
