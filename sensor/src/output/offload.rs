//! Encoding stages: the outputs that asked for OCSF or ECS are encoded,
//! framed and handed to their delivery threads on a thread of their own,
//! one per encoding. Those encodings cost two to three times the native
//! one per record; on the event loop they took CPU from draining the
//! kernel's ring buffer, so that asking for a SIEM's encoding lost
//! capture. The native encoding stays on the event loop: the audit store
//! keeps it, and it is what the outputs' counters are checked against.
//!
//! The event loop hands each stage the events of a ring batch at once
//! (shared, not copied). A stage's backlog is bounded in events: a batch
//! that does not fit is dropped for the stage's outputs, counted in their
//! `dropped` and warned about, and capture goes on. A stage runs at the
//! agent's own priority: at nice 5 (the outputs' threads') it starved on
//! a busy 2-CPU host and dropped at 50,000 records/s, a rate the event
//! loop alone handled.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard, mpsc},
    thread::JoinHandle,
    time::Instant,
};

use super::{
    Output,
    deliver::{Alarm, Monitor},
    encode::{Encoder, Format, Wire},
};
use crate::event::Event;

/// Events a stage may hold that it has not encoded yet: about a second
/// of a busy host's records, a few tens of MiB at most.
pub const BACKLOG_MAX: usize = 65_536;

/// One encoding's stage, as the event loop holds it.
pub struct Stage {
    pub format: Format,
    /// The events of the batch being gathered.
    events: Vec<Arc<Event>>,
    tx: Option<mpsc::Sender<Vec<Arc<Event>>>>,
    backlog: Arc<Backlog>,
    /// The stage's outputs, to count what it drops.
    monitors: Vec<Monitor>,
    drops: Vec<Alarm>,
    thread: Option<JoinHandle<()>>,
}

impl Stage {
    /// Starts the thread that encodes `format` for `outputs`.
    pub fn start(
        format: Format,
        outputs: Vec<Output>,
        backlog_max: usize,
    ) -> std::io::Result<Self> {
        let monitors: Vec<Monitor> = outputs
            .iter()
            .map(|o| o.delivery.monitor().clone())
            .collect();
        let drops = monitors
            .iter()
            .map(|m| Alarm::new(m.name().to_owned()))
            .collect();
        let backlog = Arc::new(Backlog::new(backlog_max));
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            encoder: format.encoder(),
            format,
            outputs,
            backlog: backlog.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("encode {}", format.name()))
            .spawn(move || worker.run(&rx))?;
        Ok(Self {
            format,
            events: Vec::new(),
            tx: Some(tx),
            backlog,
            monitors,
            drops,
            thread: Some(thread),
        })
    }

    pub fn push(&mut self, event: &Arc<Event>) {
        self.events.push(event.clone());
    }

    /// Hands the gathered events to the thread, or drops and counts them
    /// when its backlog is full.
    pub fn flush(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events);
        let n = events.len();
        let sent = self.backlog.admit(n)
            && match &self.tx {
                Some(tx) => tx.send(events).is_ok(),
                None => false,
            };
        if !sent {
            for (monitor, alarm) in self.monitors.iter().zip(&mut self.drops) {
                monitor.count_dropped(n as u64);
                alarm.lost(
                    n as u64,
                    "its encoding stage is full (encoding is slower than capture)",
                    "records dropped: the output's encoding cannot keep up with capture; \
                     they are counted in its dropped (give the agent more CPU, or use \
                     the native encoding for this output)",
                );
            }
        }
    }

    /// Waits until the thread has handed every event it was given to its
    /// outputs, or until `deadline`.
    pub fn settle(&self, deadline: Instant) {
        self.backlog.settle(deadline);
    }

    /// Hands over the last events, then waits for the thread: it encodes
    /// them and stops its outputs' threads (each delivering or spooling
    /// what it holds).
    pub fn finish(&mut self) {
        self.flush();
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(
                encoding = self.format.name(),
                "the encoding stage's thread panicked; its outputs' last records are lost"
            );
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The stage's thread: encodes each event once, frames it into every
/// output's batch, and offers the batches at the end of each ring batch.
struct Worker {
    format: Format,
    encoder: Box<dyn Encoder>,
    outputs: Vec<Output>,
    backlog: Arc<Backlog>,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Vec<Arc<Event>>>) {
        let mut buf = Vec::with_capacity(4096);
        let mut scratch = Vec::new();
        while let Ok(events) = rx.recv() {
            for event in &events {
                super::encode_into(
                    self.format,
                    self.encoder.as_mut(),
                    &Wire::of(event),
                    &mut buf,
                    &mut scratch,
                    &mut self.outputs,
                );
            }
            for output in &mut self.outputs {
                output.flush();
            }
            self.backlog.done(events.len());
        }
        for output in &mut self.outputs {
            output.flush();
            output.delivery.finish();
        }
    }
}

/// Events handed to a stage and not yet offered to its outputs.
struct Backlog {
    events: Mutex<usize>,
    /// The backlog went to zero.
    empty: Condvar,
    max: usize,
}

impl Backlog {
    fn new(max: usize) -> Self {
        Self {
            events: Mutex::new(0),
            empty: Condvar::new(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        // Every change under the lock is one addition or subtraction.
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` more events unless that would pass the bound (an empty
    /// backlog takes any one batch).
    fn admit(&self, n: usize) -> bool {
        let mut events = self.lock();
        if *events > 0 && *events + n > self.max {
            return false;
        }
        *events += n;
        true
    }

    fn done(&self, n: usize) {
        let mut events = self.lock();
        *events = events.saturating_sub(n);
        if *events == 0 {
            self.empty.notify_all();
        }
    }

    fn settle(&self, deadline: Instant) {
        let mut events = self.lock();
        while *events > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            events = self
                .empty
                .wait_timeout(events, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;
    use crate::output::{
        Fanout,
        frame::Framer,
        sink::{self, Batch, Sink, WriteError},
    };

    fn numbered(n: u64) -> Arc<Event> {
        Arc::new(crate::output::tests::numbered(n))
    }

    /// Keeps every record it is given.
    struct Keep(Arc<Mutex<Vec<serde_json::Value>>>);
    impl Sink for Keep {
        fn name(&self) -> &str {
            "keep"
        }
        fn write(&mut self, batch: &Batch) -> Result<sink::Written, WriteError> {
            let mut got = self.0.lock().expect("lock");
            got.extend(
                (0..batch.records())
                    .map(|i| serde_json::from_slice(batch.record(i)).expect("one JSON record")),
            );
            Ok(sink::Written::default())
        }
    }

    fn kept() -> (Keep, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        (Keep(got.clone()), got)
    }

    #[test]
    fn each_encoding_s_outputs_get_every_record_in_order_and_settle_counts_them() {
        let (ocsf, ocsf_got) = kept();
        let (ecs, ecs_got) = kept();
        let (native, native_got) = kept();
        let mut fanout = Fanout::new(vec![
            (Format::Ocsf, Box::new(ocsf)),
            (Format::Native, Box::new(native)),
            (Format::Ecs, Box::new(ecs)),
        ]);
        for batch in 0..20 {
            for n in 0..50 {
                fanout.emit(&numbered(batch * 50 + n));
            }
            fanout.flush();
        }
        // Settling waits for the stages, then for the outputs' threads.
        fanout.settle(Duration::from_secs(10));
        let written: Vec<u64> = fanout
            .counters()
            .iter()
            .map(|c| c.records_written)
            .collect();
        assert_eq!(written, [1000, 1000, 1000]);
        let want: Vec<String> = (0..1000).map(|n| format!("h{n}")).collect();
        let hosts = |got: &Arc<Mutex<Vec<serde_json::Value>>>,
                     field: &dyn Fn(&serde_json::Value) -> String| {
            got.lock()
                .expect("lock")
                .iter()
                .map(field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hosts(&ocsf_got, &|v| v["device"]["hostname"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            want
        );
        assert_eq!(
            hosts(&ecs_got, &|v| v["host"]["hostname"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            want
        );
        assert_eq!(
            hosts(&native_got, &|v| v["host"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
            want
        );
        assert_eq!(ocsf_got.lock().expect("lock")[0]["class_uid"], 6002);
    }

    #[test]
    fn a_stage_that_is_behind_drops_whole_batches_and_counts_them_for_each_output() {
        let (first, first_got) = kept();
        let (second, _) = kept();
        let outputs = vec![
            (Format::Ocsf, Framer::Line, first),
            (Format::Ocsf, Framer::Line, second),
        ]
        .into_iter()
        .map(|(format, framer, sink)| Output {
            format,
            framer,
            batch: Batch::default(),
            delivery: crate::output::deliver::Delivery::start(Box::new(sink), 1 << 20, None, None)
                .expect("start"),
        })
        .collect();
        let mut stage = Stage::start(Format::Ocsf, outputs, 100).expect("stage");
        // The thread is 95 events behind (as if the CPU went elsewhere):
        // 5 more fit, 6 do not.
        assert!(stage.backlog.admit(95));
        for n in 0..6 {
            stage.push(&numbered(n));
        }
        stage.flush();
        let dropped: Vec<u64> = stage
            .monitors
            .iter()
            .map(|m| m.counters().dropped)
            .collect();
        assert_eq!(dropped, [6, 6]);
        for n in 6..11 {
            stage.push(&numbered(n));
        }
        stage.flush();
        stage.backlog.done(95);
        stage.settle(Instant::now() + Duration::from_secs(10));
        let monitors = stage.monitors.clone();
        stage.finish();
        let counted: Vec<(u64, u64)> = monitors
            .iter()
            .map(|m| (m.counters().records_written, m.counters().dropped))
            .collect();
        assert_eq!(counted, [(5, 6), (5, 6)]);
        let got = first_got.lock().expect("lock");
        let hosts: Vec<&str> = got
            .iter()
            .filter_map(|v| v["device"]["hostname"].as_str())
            .collect();
        assert_eq!(hosts, ["h6", "h7", "h8", "h9", "h10"]);
    }
}
