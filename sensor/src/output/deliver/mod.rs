//! Delivery: each output's own thread, fed through a bounded memory queue,
//! so that a slow or dead destination never blocks capture, the store or
//! the other outputs. A destination that may come back (a syslog server,
//! an HTTP endpoint) gets a disk spool: while it is down its records wait
//! there, then are replayed in order, with exponential backoff and jitter
//! between attempts; the spool outlives the agent.
//!
//! Every record offered to an output ends in exactly one counter:
//! `written`, `failed` (the destination or the encoder lost it), `dropped`
//! (the queue or the spool was full, or the spool was damaged), or, for
//! now, `queued` / `spooled` (still waiting).

mod backoff;
mod queue;
pub mod spool;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use backoff::Backoff;
use queue::{Pop, Queue};
use spool::Spool;

use crate::{
    event::OutputCounters,
    output::sink::{Batch, Sink, WriteError},
};

/// How often a failing output is warned about while it keeps failing.
const FAILING_WARN_EVERY: Duration = Duration::from_secs(60);
/// At stop, how long an output may go on delivering (its queue, then its
/// spool) before what is left stays in the spool for the next start.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Per-output counts, shared by the event loop and the output's thread.
#[derive(Default)]
struct Stats {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
}

/// Batches written and emptied, for the event loop to fill again: their
/// buffers keep their capacity, and are freed by the thread that made
/// them, so a busy output allocates (and page-faults) nothing per turn.
#[derive(Default)]
struct Pool(std::sync::Mutex<Vec<Batch>>);

/// Batches a pool keeps.
const POOL_KEEP: usize = 4;

impl Pool {
    fn give(&self, mut batch: Batch) {
        batch.clear();
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_KEEP {
            pool.push(batch);
        }
    }

    fn take(&self) -> Option<Batch> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
}

/// Gathers records into larger batches before a write (an HTTP request
/// per record would be slow): up to this many bytes, for up to this long.
#[derive(Debug, Clone, Copy)]
pub struct Coalesce {
    pub bytes: usize,
    pub age: Duration,
}

/// The event loop's handle on one output's thread.
pub struct Delivery {
    monitor: Monitor,
    pool: Arc<Pool>,
    thread: Option<JoinHandle<()>>,
    /// Warns about the records `offer` drops.
    drops: Alarm,
}

/// What another thread may do with an output while its [`Delivery`]
/// lives elsewhere: read its counters, wait for it to settle, count
/// records lost before they reached it, and ask it to reopen.
#[derive(Clone)]
pub struct Monitor {
    name: String,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    reopen: Arc<AtomicBool>,
}

impl Delivery {
    /// Starts the output's thread; `spool` for destinations that may come
    /// back.
    pub fn start(
        sink: Box<dyn Sink>,
        queue_bytes: u64,
        spool: Option<Spool>,
        coalesce: Option<Coalesce>,
    ) -> std::io::Result<Self> {
        let name = sink.name().to_owned();
        let queue = Arc::new(Queue::new(queue_bytes));
        let stats = Arc::new(Stats::default());
        let reopen = Arc::new(AtomicBool::new(false));
        let pool = Arc::new(Pool::default());
        let worker = Worker {
            pool: pool.clone(),
            failing: Alarm::new(name.clone()),
            sink,
            queue: queue.clone(),
            stats: stats.clone(),
            reopen: reopen.clone(),
            spool,
            backoff: Backoff::new(),
            coalesce,
        };
        worker.publish_spool();
        let thread = std::thread::Builder::new()
            .name(format!("output {}", short(&name)))
            .spawn(move || worker.run())?;
        Ok(Self {
            drops: Alarm::new(name.clone()),
            monitor: Monitor {
                name,
                queue,
                stats,
                reopen,
            },
            pool,
            thread: Some(thread),
        })
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// An empty batch to fill, with the capacity of one written before
    /// when there is one.
    pub fn empty_batch(&self) -> Batch {
        self.pool.take().unwrap_or_default()
    }

    /// Hands `batch` to the output's thread without waiting; when its
    /// queue is full the records are dropped, counted and warned about.
    pub fn offer(&mut self, batch: Batch) {
        if let Err(batch) = self.monitor.queue.push(batch) {
            let n = batch.records() as u64;
            self.monitor.count_dropped(n);
            self.drops.lost(
                n,
                "its queue is full (the destination is slower than capture)",
                "records dropped: the output's queue is full; they are counted in its \
                 dropped (raise its queue=SIZE, or find why the destination is slow)",
            );
        }
    }

    /// Counts records found damaged in the spool at start-up.
    pub fn count_dropped(&self, records: u64) {
        self.monitor.count_dropped(records);
    }

    /// Counts records the encoder could not encode for this output.
    pub fn count_failed(&self, records: u64) {
        self.monitor.count_failed(records);
    }

    /// Closes the queue and waits for the thread: it delivers what is
    /// queued for up to [`STOP_GRACE`], spools the rest where it can.
    pub fn finish(&mut self) {
        self.monitor.queue.close();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(output = %self.monitor.name, "the output's thread panicked");
        }
    }
}

impl Monitor {
    /// The output's name (its destination), as its counters give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts records lost before they reached the output: found damaged
    /// in the spool at start-up, or refused by a full encoding stage.
    pub fn count_dropped(&self, records: u64) {
        self.stats.dropped.fetch_add(records, Relaxed);
    }

    /// Counts records the encoder could not encode for this output.
    pub fn count_failed(&self, records: u64) {
        self.stats.failed.fetch_add(records, Relaxed);
    }

    /// Asks the thread to open its destination again before its next
    /// write (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Waits until the thread has handled everything offered, or until
    /// `deadline`.
    pub fn settle(&self, deadline: Instant) {
        self.queue.settle(deadline);
    }

    pub fn counters(&self) -> OutputCounters {
        let (queued, queued_bytes) = self.queue.depth();
        OutputCounters {
            name: self.name.clone(),
            records_written: self.stats.written.load(Relaxed),
            write_failures: self.stats.failed.load(Relaxed),
            dropped: self.stats.dropped.load(Relaxed),
            queued,
            queued_bytes,
            spooled: self.stats.spooled.load(Relaxed),
            spool_bytes: self.stats.spool_bytes.load(Relaxed),
        }
    }

    /// Records lost for this output: failed or dropped.
    pub fn lost(&self) -> u64 {
        self.stats.failed.load(Relaxed) + self.stats.dropped.load(Relaxed)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A thread name is at most 15 bytes.
fn short(name: &str) -> String {
    name.chars().take(8).collect()
}

/// Logs losses of one kind: an error at the first, a warning each minute
/// while they go on, a line when the output works again.
pub(super) struct Alarm {
    output: String,
    /// Since the first loss of the current run of failures.
    active: Option<Active>,
}

struct Active {
    why: String,
    lost: u64,
    lost_since_warned: u64,
    warned: Instant,
}

impl Alarm {
    pub(super) fn new(output: String) -> Self {
        Self {
            output,
            active: None,
        }
    }

    /// `lost` records could not go out because of `why`.
    pub(super) fn lost(&mut self, lost: u64, why: &str, first: &str) {
        match &mut self.active {
            None => {
                tracing::error!(output = %self.output, error = why, lost, "{first}");
                self.active = Some(Active {
                    why: why.to_owned(),
                    lost,
                    lost_since_warned: 0,
                    warned: Instant::now(),
                });
            }
            Some(a) => {
                a.lost += lost;
                a.lost_since_warned += lost;
                if a.warned.elapsed() >= FAILING_WARN_EVERY || a.why != why {
                    tracing::warn!(
                        output = %self.output,
                        error = why,
                        lost = a.lost_since_warned,
                        lost_in_all = a.lost,
                        "the output still fails: records lost or waiting since the last warning"
                    );
                    a.warned = Instant::now();
                    a.lost_since_warned = 0;
                    a.why = why.to_owned();
                }
            }
        }
    }

    fn recovered(&mut self, what: &str) {
        if let Some(a) = self.active.take() {
            tracing::info!(output = %self.output, records = a.lost, "{what}");
        }
    }
}

/// The output's thread.
struct Worker {
    pool: Arc<Pool>,
    sink: Box<dyn Sink>,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    reopen: Arc<AtomicBool>,
    spool: Option<Spool>,
    backoff: Backoff,
    coalesce: Option<Coalesce>,
    failing: Alarm,
}

/// How long an idle thread sleeps before it looks at its spool again.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// The outputs' threads yield the CPU to the event loop: when both want
/// it, draining the kernel's ring buffer comes first (a full ring loses
/// records for every output and the store; an output's queue absorbs a
/// burst and counts what it cannot).
const OUTPUT_NICE: libc::c_int = 5;

impl Worker {
    fn run(mut self) {
        // SAFETY: setpriority with who = 0 changes only the calling thread.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, OUTPUT_NICE);
        }
        loop {
            if self.reopen.swap(false, Relaxed) {
                match self.sink.reopen() {
                    Ok(()) => tracing::info!(output = %self.sink.name(), "output reopened"),
                    Err(err) => tracing::error!(
                        output = %self.sink.name(),
                        error = %crate::Chain(&err),
                        "cannot reopen the output: it goes on writing where it did"
                    ),
                }
            }
            if self.spooling() && !self.backoff.waiting() {
                self.replay(None);
            }
            let wait = if self.spooling() {
                self.backoff.left().max(Duration::from_millis(10))
            } else {
                IDLE_WAKE
            };
            match self.queue.pop(wait) {
                Pop::Closed => break,
                Pop::Empty => {}
                Pop::Batch(batch) => {
                    let batch = self.coalesced(batch);
                    self.deliver(batch);
                }
            }
        }
        self.stop();
    }

    /// Records wait in the spool: new ones go behind them.
    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// `first` and what queued behind it, so that a busy output writes
    /// in few large writes rather than one per event-loop turn; with
    /// coalescing limits (HTTP), also what arrives within them. The thread
    /// sleeps between looks rather than waking at every batch.
    fn coalesced(&mut self, mut batch: Batch) -> Batch {
        for more in self.queue.take_all() {
            batch.append(&more);
            self.pool.give(more);
        }
        let Some(c) = self.coalesce else {
            return batch;
        };
        const LOOK_EVERY: Duration = Duration::from_millis(20);
        let until = Instant::now() + c.age;
        while batch.bytes.len() < c.bytes {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.queue.is_closed() {
                break;
            }
            std::thread::sleep(left.min(LOOK_EVERY));
            for more in self.queue.take_all() {
                batch.append(&more);
                self.pool.give(more);
            }
        }
        batch
    }

    fn deliver(&mut self, batch: Batch) {
        self.send(&batch);
        self.pool.give(batch);
    }

    fn send(&mut self, batch: &Batch) {
        if self.spooling() {
            self.spool_batch(batch);
            return;
        }
        match self.sink.write(batch) {
            Ok(w) => {
                self.count(batch.records(), w.rejected, w.reason.as_deref());
                self.backoff.reset();
                self.failing.recovered("the output writes again");
            }
            Err(err) => self.write_failed(batch, err),
        }
    }

    /// Counts `delivered` records, `rejected` of them refused for good.
    fn count(&mut self, delivered: usize, rejected: usize, reason: Option<&str>) {
        self.stats
            .written
            .fetch_add((delivered - rejected) as u64, Relaxed);
        if rejected > 0 {
            self.stats.failed.fetch_add(rejected as u64, Relaxed);
            tracing::error!(
                output = %self.sink.name(),
                rejected,
                reason = reason.unwrap_or("none given"),
                "the destination refused records: they are lost (counted in write_failures)"
            );
        }
    }

    fn write_failed(&mut self, batch: &Batch, err: WriteError) {
        self.count(err.delivered, err.rejected, None);
        let rest = batch.tail(err.delivered);
        let why = crate::Chain(&err.source).to_string();
        if err.retry && self.spool.is_some() {
            let wait = self.backoff.failed();
            self.spool_batch(&rest);
            let first = format!(
                "cannot deliver to the output: its records wait in its spool and are \
                 retried in {} ms, then with growing delays",
                wait.as_millis()
            );
            self.failing.lost(rest.records() as u64, &why, &first);
        } else {
            self.stats.failed.fetch_add(rest.records() as u64, Relaxed);
            self.failing.lost(
                rest.records() as u64,
                &why,
                "cannot write to the output: its records are lost (counted in its \
                 write_failures; the agent, the store and the other outputs go on)",
            );
        }
    }

    /// Appends to the spool; records past its cap, or that it cannot
    /// take at all, are dropped.
    fn spool_batch(&mut self, batch: &Batch) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        let fits = spool.fitting(batch);
        let kept = if fits == batch.records() {
            spool.append(batch)
        } else if fits > 0 {
            spool.append(&batch.head(fits))
        } else {
            Ok(())
        };
        let (dropped, why) = match kept {
            Ok(()) if fits == batch.records() => (0, String::new()),
            Ok(()) => (
                batch.records() - fits,
                format!("the spool is at its cap of {} bytes", spool.cap()),
            ),
            Err(err) => (
                batch.records(),
                format!("cannot write to the spool: {}", crate::Chain(&err)),
            ),
        };
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped as u64, Relaxed);
            self.failing.lost(
                dropped as u64,
                &why,
                "records dropped: the output's spool cannot take them (counted in its \
                 dropped; raise its spool=SIZE or free the spool's disk)",
            );
        }
        self.publish_spool();
    }

    fn publish_spool(&self) {
        if let Some(spool) = &self.spool {
            self.stats.spooled.store(spool.records(), Relaxed);
            self.stats.spool_bytes.store(spool.pending_bytes(), Relaxed);
        }
    }

    /// Delivers the spool from its oldest batch until it is empty, the
    /// destination fails again, or `deadline`. What the queue holds meanwhile
    /// goes into the spool behind it, in order.
    fn replay(&mut self, deadline: Option<Instant>) {
        let mut replayed = 0u64;
        loop {
            for batch in self.queue.take_all() {
                self.spool_batch(&batch);
                self.pool.give(batch);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let Some(spool) = &mut self.spool else {
                return;
            };
            let head = match spool.head() {
                Ok(Some(head)) => head.clone(),
                Ok(None) => break,
                Err(err) => {
                    self.spool_unreadable(&err);
                    break;
                }
            };
            let (done, failure) = match self.sink.write(&head) {
                Ok(w) => {
                    self.count(head.records(), w.rejected, w.reason.as_deref());
                    (head.records(), None)
                }
                Err(err) => {
                    self.count(err.delivered, err.rejected, None);
                    if err.retry {
                        (err.delivered, Some(err))
                    } else {
                        // Not worth retrying: lost, and the spool goes on.
                        let rest = (head.records() - err.delivered) as u64;
                        self.stats.failed.fetch_add(rest, Relaxed);
                        (head.records(), None)
                    }
                }
            };
            replayed += done as u64;
            let consumed = self.spool.as_mut().map(|s| s.consume(done));
            if let Some(Err(err)) = consumed {
                self.spool_unreadable(&err);
            }
            self.publish_spool();
            if let Some(err) = failure {
                let why = crate::Chain(&err.source).to_string();
                let wait = self.backoff.failed();
                let waiting = self.spool.as_ref().map_or(0, Spool::records);
                self.failing.lost(
                    0,
                    &why,
                    &format!(
                        "cannot deliver the spooled records ({waiting} wait); retrying in \
                         {} ms",
                        wait.as_millis()
                    ),
                );
                return;
            }
            self.backoff.reset();
        }
        if !self.spooling() && replayed > 0 {
            self.failing
                .recovered("the output delivers again: its spool is replayed");
            tracing::info!(output = %self.sink.name(), replayed, "spool replayed");
        }
    }

    /// The spool's head cannot be read: its records are dropped, so that
    /// the output does not stall on it for ever.
    fn spool_unreadable(&mut self, err: &std::io::Error) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        let n = spool.head().ok().flatten().map_or(0, Batch::records);
        tracing::error!(
            output = %self.sink.name(),
            error = %crate::Chain(err),
            records = n,
            "cannot read the output's spool: its oldest batch is dropped (counted in dropped)"
        );
        self.stats.dropped.fetch_add(n as u64, Relaxed);
        let _ = spool.consume(n.max(1));
    }

    /// The queue closed: deliver what is left for a while, keep the rest.
    fn stop(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        if self.spooling() && !self.backoff.waiting() {
            self.replay(Some(deadline));
        }
        if let Some(spool) = &self.spool
            && !spool.is_empty()
        {
            tracing::warn!(
                output = %self.sink.name(),
                records = spool.records(),
                bytes = spool.pending_bytes(),
                "records wait in the output's spool: the next agent delivers them"
            );
        }
        self.queue.idle();
    }
}
