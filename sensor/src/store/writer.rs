//! The store's writer: a thread of its own that takes records from a
//! bounded queue and commits them in batches, one transaction each, so
//! that capture never waits on the disk. Every record it cannot keep is
//! counted by reason (the queue was full, the disk was full, another write
//! error) and reported in heartbeats and the log; the agent runs on.

use std::{
    sync::{
        Arc, Mutex,
        atomic::AtomicUsize,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{self, RecvTimeoutError, Sender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rusqlite::{Connection, ErrorCode};

use super::{
    StoreError, StoreSettings,
    chain::{Head, Key, Linker},
    insert::Inserter,
    meta,
    retention::{self, Retention},
    row::Row,
    schema::{self, Access},
};
use crate::{event::Event, metrics::Section};

/// Records committed in one transaction at most.
const BATCH_MAX: usize = 4096;

/// How often retention runs (and the size is measured).
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// A record on its way to the writer.
struct Pending {
    row: Row,
    record: Vec<u8>,
}

/// What the writer and the agent share: counters and the chain head.
#[derive(Default)]
struct Shared {
    head: Mutex<Option<Head>>,
    written: AtomicU64,
    lost_queue_full: AtomicU64,
    lost_disk_full: AtomicU64,
    lost_write_error: AtomicU64,
    lost_writer_gone: AtomicU64,
    lost_encode_error: AtomicU64,
    pruned: AtomicU64,
    /// Records sent to the writer and not yet taken.
    queued: AtomicUsize,
    size_bytes: AtomicU64,
}

/// The agent's side of the writer.
pub struct Writer {
    /// Held while the writer runs: one writer per store (`flock`).
    _lock: std::fs::File,
    tx: Option<Sender<Pending>>,
    /// Records queued at most (`store.queue_max`).
    queue_max: usize,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    path: std::path::PathBuf,
}

impl Writer {
    /// Opens (creating or migrating) the store `settings` names, with its
    /// key, and starts the writer thread.
    pub fn start(settings: &StoreSettings) -> Result<Self, StoreError> {
        let lock = lock(&settings.path)?;
        let conn = schema::open(&settings.path, Access::Write)?;
        let key = Key::load(&settings.key_path, true)?;
        let head = meta::open_chain(&conn, &key, &settings.path)?;
        let shared = Arc::new(Shared {
            head: Mutex::new(Some(head)),
            ..Shared::default()
        });
        shared
            .size_bytes
            .store(retention::used_bytes(&conn).unwrap_or(0), Relaxed);
        // Unbounded, bounded by `Shared::queued`: a bounded channel would
        // allocate all of its slots up front (20 MiB at the default).
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            linker: key.linker(),
            conn,
            key,
            head,
            shared: Arc::clone(&shared),
            retention: settings.retention,
            path: settings.path.clone(),
            inserter: Inserter::default(),
        };
        let thread = std::thread::Builder::new()
            .name("ww-store".into())
            .spawn(move || worker.run(&rx))
            .map_err(|source| StoreError::Thread { source })?;
        Ok(Self {
            _lock: lock,
            tx: Some(tx),
            queue_max: settings.queue_max,
            thread: Some(thread),
            shared,
            path: settings.path.clone(),
        })
    }

    /// Queues one record: `record` its native encoding, `event` what it
    /// encodes. Never blocks: a full queue counts the record lost.
    pub fn submit(&self, event: &Event, record: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        if self.shared.queued.load(Relaxed) >= self.queue_max {
            let lost = self.shared.lost_queue_full.fetch_add(1, Relaxed) + 1;
            if lost % 10_000 == 1 {
                tracing::error!(
                    lost,
                    store = %self.path.display(),
                    "the audit store is behind: records lost for it (the queue to its \
                     writer is full; raise store.queue_max or give it a faster disk)"
                );
            }
            return;
        }
        if !self.send(event, record) {
            let lost = self.shared.lost_writer_gone.fetch_add(1, Relaxed) + 1;
            if lost % 10_000 == 1 {
                tracing::error!(
                    lost,
                    "the audit store's writer has stopped: records lost for it"
                );
            }
        }
    }

    /// Queues the record; false when the writer has stopped.
    fn send(&self, event: &Event, record: &[u8]) -> bool {
        let Some(tx) = &self.tx else { return false };
        let pending = Pending {
            row: Row::of(event),
            record: record.to_vec(),
        };
        self.shared.queued.fetch_add(1, Relaxed);
        if tx.send(pending).is_err() {
            self.shared.queued.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// [`Writer::submit`] that waits for room instead: for `bench-store`,
    /// which measures what the writer sustains.
    pub fn submit_waiting(&self, event: &Event, record: &[u8]) {
        while self.shared.queued.load(Relaxed) >= self.queue_max
            && self.thread.as_ref().is_some_and(|t| !t.is_finished())
        {
            std::thread::sleep(Duration::from_micros(50));
        }
        if !self.send(event, record) {
            self.shared.lost_writer_gone.fetch_add(1, Relaxed);
        }
    }

    /// Counts a record lost for the store because its native encoding
    /// failed (the outputs count it as a failed write).
    pub fn count_unencodable(&self) {
        self.shared.lost_encode_error.fetch_add(1, Relaxed);
    }

    /// Records lost for the store so far, for every reason.
    pub fn lost(&self) -> u64 {
        let s = &self.shared;
        [
            &s.lost_queue_full,
            &s.lost_disk_full,
            &s.lost_write_error,
            &s.lost_writer_gone,
            &s.lost_encode_error,
        ]
        .iter()
        .map(|c| c.load(Relaxed))
        .sum()
    }

    /// The chain head as last committed: what heartbeats carry.
    pub fn head(&self) -> Option<Head> {
        self.shared.head.lock().map(|h| *h).unwrap_or(None)
    }

    /// Commits everything queued and stops the writer.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the audit store's writer panicked; records queued for it are lost");
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Takes the store's writer lock (an exclusive `flock` on the database
/// file, which SQLite's own POSIX locks do not touch), creating the file
/// and its directory (0700) when missing.
pub fn lock(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let io = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    match crate::lockfile::try_lock(path, 0o700).map_err(io)? {
        crate::lockfile::Lock::Held(file) => Ok(file),
        crate::lockfile::Lock::Taken(_) => Err(StoreError::InUse(path.to_path_buf())),
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

impl crate::metrics::Collect for Writer {
    fn collect(&self, section: &mut Section<'_>) {
        let s = &self.shared;
        section.total(
            "records_written",
            "records committed to the audit store",
            s.written.load(Relaxed),
        );
        section.total(
            "lost_queue_full",
            "records lost for the store: the queue to its writer was full",
            s.lost_queue_full.load(Relaxed),
        );
        section.total(
            "lost_disk_full",
            "records lost for the store: the disk was full",
            s.lost_disk_full.load(Relaxed),
        );
        section.total(
            "lost_write_error",
            "records lost for the store: another write error",
            s.lost_write_error.load(Relaxed) + s.lost_writer_gone.load(Relaxed),
        );
        section.total(
            "lost_encode_error",
            "records lost for the store: their native encoding failed",
            s.lost_encode_error.load(Relaxed),
        );
        section.total(
            "pruned",
            "records removed by retention",
            s.pruned.load(Relaxed),
        );
        section.set(
            "size_bytes",
            "bytes the store's records and indexes use",
            s.size_bytes.load(Relaxed),
        );
    }
}

/// The writer thread's state.
struct Worker {
    conn: Connection,
    key: Key,
    head: Head,
    shared: Arc<Shared>,
    retention: Retention,
    path: std::path::PathBuf,
    inserter: Inserter,
    linker: Linker,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut last_retention = Instant::now();
        self.retain();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(first) => batch.push(first),
                Err(RecvTimeoutError::Timeout) => {}
                // Sent only once every queued record was received.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.shared.queued.fetch_sub(batch.len(), Relaxed);
            if !batch.is_empty() {
                self.commit(&batch);
                batch.clear();
            }
            if last_retention.elapsed() >= RETENTION_INTERVAL {
                self.retain();
                last_retention = Instant::now();
            }
        }
    }

    /// Commits `batch` in one transaction, chained after the head; on
    /// failure nothing of it is kept and the head stays.
    fn commit(&mut self, batch: &[Pending]) {
        match self.insert(batch) {
            Ok(head) => {
                self.head = head;
                if let Ok(mut shared) = self.shared.head.lock() {
                    *shared = Some(head);
                }
                self.shared.written.fetch_add(batch.len() as u64, Relaxed);
            }
            Err(err) => {
                // Ids given inside the failed transaction may be given again.
                self.inserter.forget();
                let disk_full = matches!(
                    &err,
                    rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::DiskFull
                );
                let counter = if disk_full {
                    &self.shared.lost_disk_full
                } else {
                    &self.shared.lost_write_error
                };
                let before = counter.fetch_add(batch.len() as u64, Relaxed);
                // The first failure, then one line per 10,000 lost.
                if before == 0 || before / 10_000 != (before + batch.len() as u64) / 10_000 {
                    tracing::error!(
                        store = %self.path.display(),
                        lost = batch.len(),
                        error = %err,
                        "cannot write to the audit store: these records are lost for it \
                         (the outputs still have them){}",
                        if disk_full { "; the disk is full" } else { "" }
                    );
                }
            }
        }
    }

    fn insert(&mut self, batch: &[Pending]) -> rusqlite::Result<Head> {
        let tx = self.conn.transaction()?;
        let mut head = self.head;
        for p in batch {
            let seq = head.seq + 1;
            let link = self.linker.link(&head.link, seq, &p.record);
            self.inserter
                .record(&tx, seq, &p.row, &p.record, &link[..])?;
            head = Head { seq, link };
        }
        self.inserter.finish_batch(&tx)?;
        meta::set_head(&tx, &head)?;
        tx.commit()?;
        Ok(head)
    }

    /// Applies retention; measures the store's size.
    fn retain(&mut self) {
        match retention::apply(&mut self.conn, &self.key, &self.retention) {
            Ok(removed) => {
                if removed > 0 {
                    self.inserter.forget();
                }
                self.shared.pruned.fetch_add(removed, Relaxed);
            }
            Err(err) => tracing::warn!(
                store = %self.path.display(),
                error = %err,
                "audit store retention failed; it is tried again in a minute"
            ),
        }
        if let Ok(bytes) = retention::used_bytes(&self.conn) {
            self.shared.size_bytes.store(bytes, Relaxed);
        }
    }
}
