//! The output stage: every configured output is an encoder (`encode/`), a
//! framer (`frame.rs`) and a sink (`sink/`) on its own delivery thread
//! (`deliver/`). An event is encoded once per format, framed into the batch
//! of every output that asked for that format, and [`Fanout::flush`] hands
//! each batch to its output's thread without waiting. Each record is
//! counted exactly once per output (docs/outputs.md).

pub mod deliver;
pub mod encode;
pub mod frame;
mod offload;
pub mod sink;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::{OutputSpec, SinkSpec, SyslogTransport},
    event::{Event, OutputCounters},
    store::Writer,
};
use deliver::{Coalesce, Delivery, Monitor, spool::Spool};
use encode::{Encoder, Format, Wire};
use frame::Framer;
use offload::Stage;
use sink::{Batch, Sink, SinkError};

/// A batch this large is handed over at once rather than at the next flush.
const BATCH_MAX_BYTES: usize = 1 << 20;

/// How long a heartbeat waits for the outputs' threads to catch up before
/// it reports their counters.
const SETTLE_HEARTBEAT: Duration = Duration::from_millis(100);

/// Why the outputs could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Spool(#[from] deliver::spool::SpoolError),
    #[error(
        "the output {output} keeps a disk spool under agent.state_dir, which is \"none\": \
         set agent.state_dir (--state-dir), or give the output spool=0 to run without one"
    )]
    NoSpoolDir { output: String },
    #[error("cannot start the delivery thread of the output {output}")]
    Thread {
        output: String,
        #[source]
        source: std::io::Error,
    },
}

/// One output: its framing, its batch being filled, and its thread.
struct Output {
    format: Format,
    framer: Framer,
    batch: Batch,
    delivery: Delivery,
}

impl Output {
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let full = std::mem::replace(&mut self.batch, self.delivery.empty_batch());
            self.delivery.offer(full);
        }
    }
}

/// Every configured output, fed one event at a time.
pub struct Fanout {
    /// The outputs encoded on the event loop (the native encoding's).
    outputs: Vec<Output>,
    /// The other encodings' stages (`offload.rs`), with their outputs.
    stages: Vec<Stage>,
    /// Every output, in configuration order, for counters and signals.
    monitors: Vec<Monitor>,
    /// The native encoder and its reused buffer, when anything needs it.
    native: Option<(Box<dyn Encoder>, Vec<u8>)>,
    /// Reused by the framers.
    scratch: Vec<u8>,
    /// The audit store, which keeps every record's native encoding.
    store: Option<Writer>,
}

/// Encodes `wire` in `format` into `buf` and frames it into the batch of
/// each of `outputs` that asked for that format; an encoding failure is
/// counted as a failed write of each. False when it could not be encoded.
fn encode_into(
    format: Format,
    encoder: &mut dyn Encoder,
    wire: &Wire<'_>,
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    outputs: &mut [Output],
) -> bool {
    buf.clear();
    if let Err(err) = encoder.encode_wire(wire, buf) {
        tracing::error!(error = %crate::Chain(&err), encoder = encoder.name(), "cannot encode a record; it is lost for this format");
        buf.clear();
        for output in outputs.iter().filter(|o| o.format == format) {
            output.delivery.count_failed(1);
        }
        return false;
    }
    for output in outputs.iter_mut().filter(|o| o.format == format) {
        output
            .framer
            .frame(wire.event(), buf, scratch, &mut output.batch);
        if output.batch.bytes.len() >= BATCH_MAX_BYTES {
            output.flush();
        }
    }
    true
}

/// An output's spool directory under `spool_root`: its destination and
/// format, made safe for a file name (never a secret: sink names hold
/// none), and a hash that keeps two long names apart.
fn spool_dir(spool_root: &Path, name: &str, format: Format) -> PathBuf {
    use sha2::Digest;
    let id = format!("{name}.{}", format.name());
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = sha2::Sha256::digest(id.as_bytes());
    spool_root.join(format!("{safe}.{}", hex::encode(&hash[..4])))
}

/// Opens an output's spool and reports what an earlier run left in it:
/// the spool, and the records of damaged frames it cut off (lost).
fn open_spool(root: &Path, name: &str, spec: &OutputSpec) -> Result<(Spool, u64), OpenError> {
    let dir = spool_dir(root, name, spec.format);
    let (spool, found) = Spool::open(&dir, spec.delivery.spool_bytes)?;
    if found.records > 0 {
        tracing::info!(
            output = %name,
            records = found.records,
            "records an earlier run spooled are delivered first"
        );
    }
    if found.cut_bytes > 0 {
        tracing::error!(
            output = %name,
            spool = %dir.display(),
            bytes = found.cut_bytes,
            records = found.cut_records,
            "the spool held a torn or corrupt batch (a crash in mid-write, or a \
             damaged disk): it was cut off and its records are lost"
        );
    }
    Ok((spool, found.cut_records))
}

impl Fanout {
    /// Opens every output and starts its thread; the first that cannot be
    /// opened is the error. Spools live under `spool_root`.
    pub fn open(specs: &[OutputSpec], spool_root: Option<&Path>) -> Result<Self, OpenError> {
        let mut outputs = Vec::new();
        for spec in specs {
            let sink = sink::open(spec)?;
            let mut framer = Framer::for_output(spec);
            if let SinkSpec::Syslog(s) = &spec.sink
                && let SyslogTransport::Unix(path) = &s.transport
                && sink::SyslogSink::unix_is_stream(path)
            {
                framer = framer.counted();
            }
            let spool = if spec.delivery.spool_bytes > 0 {
                let root = spool_root.ok_or_else(|| OpenError::NoSpoolDir {
                    output: sink.name().to_owned(),
                })?;
                Some(open_spool(root, sink.name(), spec)?)
            } else {
                None
            };
            let coalesce = match &spec.sink {
                SinkSpec::Http(h) => Some(Coalesce {
                    bytes: h.batch_bytes,
                    age: h.batch_age,
                }),
                _ => None,
            };
            let cut = spool.as_ref().map_or(0, |(_, cut)| *cut);
            let delivery = start(
                sink,
                spec.delivery.queue_bytes,
                spool.map(|(s, _)| s),
                coalesce,
            )?;
            delivery.count_dropped(cut);
            outputs.push((spec.format, framer, delivery));
        }
        Self::with(outputs)
    }

    /// Outputs from sinks already open, each with its format, framed as
    /// lines, without spools.
    #[cfg(test)]
    pub fn new(sinks: Vec<(Format, Box<dyn Sink>)>) -> Self {
        let outputs = sinks
            .into_iter()
            .map(|(format, sink)| {
                let delivery =
                    start(sink, crate::config::DEFAULT_QUEUE_BYTES, None, None).expect("a thread");
                (format, Framer::Line, delivery)
            })
            .collect();
        Self::with(outputs).expect("threads")
    }

    fn with(outputs: Vec<(Format, Framer, Delivery)>) -> Result<Self, OpenError> {
        let monitors = outputs.iter().map(|(.., d)| d.monitor().clone()).collect();
        let mut inline = Vec::new();
        let mut offloaded: Vec<(Format, Vec<Output>)> = Vec::new();
        for (format, framer, delivery) in outputs {
            let output = Output {
                format,
                framer,
                batch: Batch::default(),
                delivery,
            };
            if format == Format::Native {
                inline.push(output);
            } else if let Some((_, list)) = offloaded.iter_mut().find(|(f, _)| *f == format) {
                list.push(output);
            } else {
                offloaded.push((format, vec![output]));
            }
        }
        let mut stages = Vec::new();
        for (format, outputs) in offloaded {
            let first = outputs[0].delivery.monitor().name().to_owned();
            let stage = Stage::start(format, outputs, offload::BACKLOG_MAX).map_err(|source| {
                OpenError::Thread {
                    output: first,
                    source,
                }
            })?;
            stages.push(stage);
        }
        let native =
            (!inline.is_empty()).then(|| (Format::Native.encoder(), Vec::with_capacity(4096)));
        Ok(Self {
            outputs: inline,
            stages,
            monitors,
            native,
            scratch: Vec::new(),
            store: None,
        })
    }

    /// Keeps every record in `store` too, in the native encoding the
    /// outputs write (byte for byte, with the line's newline).
    pub fn attach_store(&mut self, store: Writer) {
        if self.native.is_none() {
            self.native = Some((Format::Native.encoder(), Vec::with_capacity(4096)));
        }
        self.store = Some(store);
    }

    pub fn store(&self) -> Option<&Writer> {
        self.store.as_ref()
    }

    /// Hands every output's last batch over, lets each thread deliver (or
    /// spool) for a grace period, stops the threads, then commits every
    /// record queued for the store: the last thing before the agent exits.
    pub fn finish(&mut self) {
        self.flush();
        for output in &mut self.outputs {
            output.delivery.finish();
        }
        for stage in &mut self.stages {
            stage.finish();
        }
        if let Some(store) = &mut self.store {
            store.finish();
        }
    }

    /// Encodes `event` in the native encoding for the store and the
    /// native outputs, and hands it to the other encodings' stages.
    pub fn emit(&mut self, event: &Arc<Event>) {
        for stage in &mut self.stages {
            stage.push(event);
        }
        let Some((encoder, buf)) = &mut self.native else {
            return;
        };
        let wire = Wire::of(event);
        let encoded = encode_into(
            Format::Native,
            encoder.as_mut(),
            &wire,
            buf,
            &mut self.scratch,
            &mut self.outputs,
        );
        if let Some(store) = &self.store {
            if encoded {
                store.submit(event, buf);
            } else {
                // The store keeps the native encoding: it lost it too.
                store.count_unencodable();
            }
        }
    }

    /// Hands every output's batch to its thread; call after each batch of
    /// events.
    pub fn flush(&mut self) {
        for output in &mut self.outputs {
            output.flush();
        }
        for stage in &mut self.stages {
            stage.flush();
        }
    }

    /// Flushes, then waits up to `wait` for every output's thread to have
    /// handled all it was given, so that counters taken next account for
    /// every record before them (written, lost, or waiting in a spool).
    pub fn settle(&mut self, wait: Duration) {
        self.flush();
        let deadline = Instant::now() + wait;
        for stage in &self.stages {
            stage.settle(deadline);
        }
        for monitor in &self.monitors {
            monitor.settle(deadline);
        }
    }

    /// [`Fanout::settle`] for a heartbeat: briefly.
    pub fn settle_briefly(&mut self) {
        self.settle(SETTLE_HEARTBEAT);
    }

    /// Opens every output's destination again (SIGHUP: an external log
    /// rotation moved the files), each on its thread before its next
    /// write.
    pub fn reopen(&mut self) {
        self.flush();
        for monitor in &self.monitors {
            monitor.reopen();
        }
    }

    /// Per-output counters, in configuration order.
    pub fn counters(&self) -> Vec<OutputCounters> {
        self.monitors.iter().map(Monitor::counters).collect()
    }

    /// Records lost for any output so far.
    pub fn lost(&self) -> u64 {
        self.monitors.iter().map(Monitor::lost).sum()
    }
}

fn start(
    sink: Box<dyn Sink>,
    queue_bytes: u64,
    spool: Option<Spool>,
    coalesce: Option<Coalesce>,
) -> Result<Delivery, OpenError> {
    let output = sink.name().to_owned();
    Delivery::start(sink, queue_bytes, spool, coalesce)
        .map_err(|source| OpenError::Thread { output, source })
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::event::{Action, Severity, Tier, Timestamp};
    use sink::{JsonlSink, WriteError};

    /// A heartbeat record: the outputs' tests' smallest whole event.
    pub(super) fn event() -> Event {
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
        fn write(&mut self, _: &Batch) -> Result<sink::Written, WriteError> {
            Err(WriteError::lost(0, io::Error::other("disk full")))
        }
    }

    /// Takes `room` bytes, then fails: a disk that fills mid-batch.
    struct Filling {
        room: usize,
    }
    impl Sink for Filling {
        fn name(&self) -> &str {
            "filling"
        }
        fn write(&mut self, batch: &Batch) -> Result<sink::Written, WriteError> {
            let n = batch.bytes.len().min(self.room);
            self.room -= n;
            if n < batch.bytes.len() {
                return Err(WriteError::lost(
                    batch.whole_within(n),
                    io::Error::from_raw_os_error(libc::ENOSPC),
                ));
            }
            Ok(sink::Written::default())
        }
    }

    /// A network peer: down while `down` is set (nothing taken), keeps
    /// what it takes.
    struct Peer {
        down: std::sync::Arc<std::sync::atomic::AtomicBool>,
        got: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }
    impl Sink for Peer {
        fn name(&self) -> &str {
            "peer"
        }
        fn write(&mut self, batch: &Batch) -> Result<sink::Written, WriteError> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(WriteError::retry(
                    0,
                    io::Error::from(io::ErrorKind::ConnectionRefused),
                ));
            }
            let mut got = self.got.lock().expect("lock");
            got.extend(
                (0..batch.records()).map(|i| String::from_utf8_lossy(batch.record(i)).into_owned()),
            );
            Ok(sink::Written::default())
        }
    }

    /// [`event`] told apart by its host, `h{n}`.
    pub(super) fn numbered(n: u64) -> Event {
        let mut e = event();
        e.host = format!("h{n}");
        e
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_peer_that_is_down_gets_every_record_in_order_from_the_spool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let peer = || Peer {
            down: down.clone(),
            got: got.clone(),
        };
        let spool = |dir: &Path| Spool::open(dir, 1 << 20).expect("spool").0;
        let mut fanout = Fanout::with(vec![(
            Format::Native,
            Framer::Line,
            start(Box::new(peer()), 1 << 20, Some(spool(dir.path())), None).expect("start"),
        )])
        .expect("fanout");
        for n in 0..10 {
            fanout.emit(&Arc::new(numbered(n)));
            fanout.flush();
        }
        fanout.settle(Duration::from_secs(5));
        let c = &fanout.counters()[0];
        assert_eq!(
            (c.records_written, c.spooled, c.queued),
            (0, 10, 0),
            "{c:?}"
        );
        // The agent stops while the peer is down: the spool keeps them.
        fanout.finish();
        drop(fanout);
        // The next agent: the peer is back; it replays first, then new.
        down.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut fanout = Fanout::with(vec![(
            Format::Native,
            Framer::Line,
            start(Box::new(peer()), 1 << 20, Some(spool(dir.path())), None).expect("start"),
        )])
        .expect("fanout");
        for n in 10..15 {
            fanout.emit(&Arc::new(numbered(n)));
        }
        fanout.flush();
        wait_until("delivery", || got.lock().expect("lock").len() == 15);
        fanout.settle(Duration::from_secs(5));
        let hosts: Vec<String> = got
            .lock()
            .expect("lock")
            .iter()
            .map(|line| {
                encode::native::decode(line.trim_end())
                    .expect("decode")
                    .host
            })
            .collect();
        let want: Vec<String> = (0..15).map(|n| format!("h{n}")).collect();
        assert_eq!(hosts, want);
        // This run wrote the ten it replayed and its own five.
        let c = &fanout.counters()[0];
        assert_eq!(
            (c.records_written, c.spooled, c.write_failures, c.dropped),
            (15, 0, 0, 0),
            "{c:?}"
        );
    }

    #[test]
    fn a_full_spool_drops_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let peer = Peer {
            down: down.clone(),
            got: Default::default(),
        };
        let (spool, _) = Spool::open(dir.path(), 2048).expect("spool");
        let mut fanout = Fanout::with(vec![(
            Format::Native,
            Framer::Line,
            start(Box::new(peer), 1 << 20, Some(spool), None).expect("start"),
        )])
        .expect("fanout");
        for n in 0..40 {
            fanout.emit(&Arc::new(numbered(n)));
            fanout.flush();
        }
        fanout.settle(Duration::from_secs(5));
        let c = &fanout.counters()[0];
        assert!(c.dropped > 0 && c.spooled > 0, "{c:?}");
        assert_eq!(c.spooled + c.dropped, 40, "{c:?}");
        assert_eq!(fanout.lost(), c.dropped);
    }

    #[test]
    fn a_write_that_stops_part_way_counts_each_record_once() {
        let mut line = Vec::new();
        encode::native::Native
            .encode(&event(), &mut line)
            .expect("encode");
        // Room for two whole records and half of the third.
        let room = 2 * line.len() + line.len() / 2;
        let mut fanout = Fanout::new(vec![(Format::Native, Box::new(Filling { room }))]);
        for _ in 0..5 {
            fanout.emit(&Arc::new(event()));
        }
        fanout.settle(Duration::from_secs(5));
        let c = &fanout.counters()[0];
        assert_eq!((c.records_written, c.write_failures), (2, 3));
        // Later records find no room either: lost, and counted.
        fanout.emit(&Arc::new(event()));
        fanout.settle(Duration::from_secs(5));
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
        fanout.emit(&Arc::new(event()));
        fanout.emit(&Arc::new(event()));
        fanout.settle(Duration::from_secs(5));
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
