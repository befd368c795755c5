//! Named detections: theft and tampering patterns recognised in the stream
//! of access records, each a `detection` record with a stable id, a
//! severity, a one-line summary, MITRE ATLAS techniques and the ids of the
//! records it was built from (docs/detections.md).
//!
//! Each pattern is one [`Detector`] in a file of its own; [`Detectors`]
//! runs them on every record, remembers which records each (process,
//! file) pair produced (the references), and passes their findings through
//! the repeat window and the rate limit ([`limit`]).

mod bulk_read;
mod copy;
mod egress;
mod history;
pub mod integrity;
mod limit;
mod memory_read;
mod serving_shell;
mod taken;
mod tamper;
mod transfer_tool;
pub mod trust;
mod unexpected_reader;

use crate::{
    config::DetectConfig,
    decide::policy::Policy,
    event::{AccessDetail, Action, Detection, DetectionId, Event, RecordId, Severity},
    metrics::{Collect, Section},
};

pub use trust::{Trust, Trusted};

/// What a finding is about, for the repeat window: the same detection of
/// the same process is written again for another file or target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum About {
    File {
        dev: u64,
        ino: u64,
    },
    /// A weight set of the policy in force, by index.
    WeightSet(usize),
    /// Another process (`memory_read`).
    Process(u32),
    /// Where a write or send went (a file, a pipe, a socket).
    Destination {
        dev: u64,
        ino: u64,
    },
    /// A socket connected before any byte was sent on it.
    Connect {
        dev: u64,
        ino: u64,
    },
    /// One kind of change to a file (`tamper`: a truncate after a write
    /// open is another finding).
    Change {
        dev: u64,
        ino: u64,
        operation: &'static str,
    },
}

/// A detector's conclusion, before the repeat window and the rate limit.
#[derive(Debug)]
pub struct Finding {
    pub severity: Severity,
    pub about: About,
    pub detection: Detection,
    /// The file to name when the record has none (a send's source).
    pub file: Option<crate::event::File>,
}

/// What a detector may consult beside the record.
pub struct Context<'a> {
    pub config: &'a DetectConfig,
    pub policy: Option<&'a Policy>,
    /// Why the record's process may read the record's file, if it may.
    pub trusted: Option<Trusted>,
    /// The ids of the records the process's use of this file produced so
    /// far, this one last.
    pub refs: &'a [RecordId],
    /// For a write or send: the weights its process (or an ancestor) took.
    pub source: Option<&'a taken::Source>,
}

/// One named pattern over the stream of records.
pub trait Detector: Send {
    fn id(&self) -> DetectionId;
    /// Looks at one record; returns what it completes.
    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding>;
    /// The process exited: drop what is kept about it.
    fn forget(&mut self, _pid: u32) {}
}

/// Every enabled detector, the references they cite, and the limits on
/// what they write.
pub struct Detectors {
    config: DetectConfig,
    trust: Trust,
    detectors: Vec<Box<dyn Detector>>,
    history: history::History,
    limit: limit::Limit,
    writes: integrity::Writes,
    taken: taken::Taken,
    /// Processes whose sends were judged trusted: the kernel may stop
    /// following them.
    unfollow: Vec<u32>,
    /// `evicted()` when last warned about.
    evicted_warned: u64,
}

impl Detectors {
    /// The detectors `config` enables. `own_exe` is the agent's
    /// executable: its own reads (a baseline check) are no theft.
    pub fn new(config: &DetectConfig) -> Self {
        let all: Vec<Box<dyn Detector>> = vec![
            Box::new(bulk_read::BulkRead::default()),
            Box::new(copy::Copy),
            Box::new(egress::Egress),
            Box::new(transfer_tool::TransferTool::new(&config.transfer_tools)),
            Box::new(memory_read::MemoryRead),
            Box::new(unexpected_reader::UnexpectedReader),
            Box::new(serving_shell::ServingShell::new(&config.interpreters)),
            Box::new(tamper::Tamper),
        ];
        Self {
            trust: Trust::new(config),
            detectors: all.into_iter().filter(|d| config.enabled(d.id())).collect(),
            history: history::History::default(),
            limit: limit::Limit::new(config.repeat_window_secs, config.max_per_minute),
            writes: integrity::Writes::default(),
            taken: taken::Taken::default(),
            unfollow: Vec::new(),
            evicted_warned: 0,
            config: config.clone(),
        }
    }

    /// The detection records `event` completes. `event` must carry its id.
    pub fn observe(&mut self, event: &Event, policy: Option<&Policy>) -> Vec<Event> {
        self.writes.observe(event);
        if event.action == Action::Exit {
            if let Some(p) = &event.process {
                self.forget(p.pid);
            }
            return Vec::new();
        }
        if !is_access(event) || self.detectors.is_empty() {
            return Vec::new();
        }
        let refs = self.history.record(event);
        let took_more = self.taken.observe(event);
        let mut records = self.judge(event, refs, policy);
        // A write or send usually comes before the read summary of the
        // bytes it carries (the kernel sums reads until a close): sends
        // are judged again as their process's weights become known.
        if let Some(pid) = took_more {
            for send in self.taken.sends_after(pid) {
                let refs = send.id.into_iter().collect();
                records.extend(self.judge(&send, refs, policy));
            }
        }
        if is_send(event) {
            self.taken.keep_send(event);
        }
        records
    }

    /// Whether `event` is a write or send that the detections would tie
    /// to weights, but whose process's (and ancestors') weights are not
    /// known yet.
    pub fn lacks_source(&self, event: &Event) -> bool {
        !self.detectors.is_empty() && is_send(event) && self.taken.source(event).is_none()
    }

    /// Runs every detector on one record; `refs` are its own references.
    fn judge(
        &mut self,
        event: &Event,
        mut refs: Vec<RecordId>,
        policy: Option<&Policy>,
    ) -> Vec<Event> {
        // A write or send carries no file: the weights its process (or an
        // ancestor) took are its source, and their records are cited too.
        let source = is_send(event).then(|| self.taken.source(event)).flatten();
        if let Some(s) = &source {
            let mut cited = self.history.refs(s.pid, (s.file.dev, s.file.ino));
            cited.append(&mut refs);
            refs = cited;
        }
        let trusted = match &source {
            Some(s) => self.trust.of_file(event, Some(&s.file), policy),
            None => self.trust.of(event, policy),
        };
        if trusted.is_some()
            && is_send(event)
            && let Some(p) = &event.process
        {
            self.unfollow.push(p.pid);
        }
        let ctx = Context {
            config: &self.config,
            policy,
            trusted,
            refs: &refs,
            source: source.as_ref(),
        };
        let findings: Vec<Finding> = self
            .detectors
            .iter_mut()
            .flat_map(|d| d.observe(event, &ctx))
            .collect();
        findings
            .into_iter()
            .filter_map(|f| self.limit.admit(event, f))
            .map(|f| record(event, f))
            .collect()
    }

    /// The record for a baseline check, if it is a mismatch: `base` is
    /// an agent record (no process) with the time and host.
    pub fn integrity(
        &mut self,
        mut base: Event,
        entry: &integrity::Entry,
        check: &integrity::Check,
    ) -> Option<Event> {
        self.limit.count_integrity(entry, check);
        if !self.config.enabled(DetectionId::IntegrityMismatch) {
            return None;
        }
        let finding = integrity::finding(entry, check)?;
        base.file = Some(crate::event::File {
            path: Some(crate::event::Text::from(entry.path.as_path())),
            dev: entry.dev,
            ino: entry.ino,
            size: std::fs::metadata(&entry.path).map_or(0, |m| m.len()),
            derived_from: None,
        });
        let finding = self.limit.admit(&base, finding)?;
        Some(record(&base, finding))
    }

    /// Processes whose writes and sends are trusted since the last call:
    /// following them further only makes records no detection uses.
    pub fn take_unfollowed(&mut self) -> Vec<u32> {
        let mut pids = std::mem::take(&mut self.unfollow);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Files written since the last call whose writer has closed them
    /// (or exited): to check against the baseline again.
    pub fn take_rechecks(&mut self) -> Vec<std::path::PathBuf> {
        self.writes.take_done()
    }

    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// Forgets the processes `gone` says have exited (their exit record
    /// was lost, or they were never seen to exit).
    pub fn forget_gone(&mut self, gone: impl Fn(u32) -> bool) {
        let mut pids: Vec<u32> = self
            .history
            .pids()
            .chain(self.taken.pids())
            .chain(self.limit.pids())
            .filter(|&pid| gone(pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            self.forget(pid);
        }
    }

    fn forget(&mut self, pid: u32) {
        self.history.forget(pid);
        self.taken.forget(pid);
        self.limit.forget(pid);
        self.detectors.iter_mut().for_each(|d| d.forget(pid));
    }

    /// Processes whose detection state was dropped to bound memory.
    pub fn evicted(&self) -> u64 {
        self.history.evicted + self.taken.evicted + self.limit.evicted
    }

    /// Warns when state was evicted since the last call (called on the
    /// agent's sweep, so at most once per sweep).
    pub fn warn_evictions(&mut self) {
        let evicted = self.evicted();
        if evicted > self.evicted_warned {
            tracing::warn!(
                since_last = evicted - self.evicted_warned,
                total = evicted,
                "detection state of some processes was dropped at its bound (more processes \
                 touching weights at once than it holds): their later detections may cite \
                 fewer records or miss an egress (detect.state_evicted)"
            );
            self.evicted_warned = evicted;
        }
    }

    /// Re-reads the trusted executables' identities (an upgrade replaced
    /// one).
    pub fn refresh_trust(&mut self) {
        self.trust = Trust::new(&self.config);
    }
}

impl Collect for Detectors {
    fn collect(&self, section: &mut Section<'_>) {
        self.limit.collect(section);
        section.total(
            "state_evicted",
            "processes whose detection state (cited records, weights taken, sends, repeat \
             windows) was dropped at its bound: their later detections may cite fewer records, \
             miss an egress or repeat",
            self.evicted(),
        );
    }
}

fn is_send(event: &Event) -> bool {
    matches!(
        event.access.as_ref().map(|a| &a.detail),
        Some(AccessDetail::Send(_))
    )
}

/// Records the detectors look at: a process doing something to a watched
/// file or to a process holding weights.
fn is_access(event: &Event) -> bool {
    event.process.is_some()
        && matches!(
            event.access.as_ref().map(|a| &a.detail),
            Some(
                AccessDetail::Open { .. }
                    | AccessDetail::Read(_)
                    | AccessDetail::Mmap { .. }
                    | AccessDetail::Copy(_)
                    | AccessDetail::Memory { .. }
                    | AccessDetail::Send(_)
                    | AccessDetail::Change(_)
            )
        )
}

/// The `detection` record: the access's process, file, access and target,
/// with what was found.
fn record(event: &Event, finding: Finding) -> Event {
    let mut record = event.clone();
    record.id = None;
    record.action = Action::Detection;
    record.severity = finding.severity;
    record.policy = None;
    record.detection = Some(finding.detection);
    if record.file.is_none() {
        record.file = finding.file;
    }
    record
}

/// The file name of a path-like text (`/usr/bin/tar` -> `tar`).
fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// A process's name for a summary: its executable's file name, else comm.
fn process_name(event: &Event) -> String {
    let Some(p) = &event.process else {
        return "?".to_owned();
    };
    let exe = p
        .exe
        .as_ref()
        .map(|e| String::from_utf8_lossy(file_name(e.as_bytes())).into_owned());
    format!("{} (pid {})", exe.unwrap_or_else(|| p.comm.clone()), p.pid)
}

/// A file's name for a summary: its watched path, else its identity.
fn file_label(event: &Event) -> String {
    event
        .file
        .as_ref()
        .map_or_else(|| "?".to_owned(), file_text)
}

/// [`file_label`] of a file: a copy, or a pipe a copy went into, also
/// names the watched file it came from.
fn file_text(f: &crate::event::File) -> String {
    let name = match &f.path {
        Some(path) => path.to_lossy().into_owned(),
        None => format!(
            "inode {} on {}",
            f.ino,
            crate::event::names::kernel_dev_text(f.dev)
        ),
    };
    match f.derived_from.as_ref().and_then(|d| d.path.as_ref()) {
        Some(from) => format!("{name} (copied from {})", from.to_lossy()),
        None => name,
    }
}

/// Whether the record is a use of the file's bytes: an open for reading,
/// a read, a successful map, an in-kernel copy. (An open for writing only
/// is tampering's business, and a download's.)
fn uses_bytes(event: &Event) -> bool {
    const O_ACCMODE: u32 = 0o3;
    const O_WRONLY: u32 = 0o1;
    match event.access.as_ref().map(|a| &a.detail) {
        Some(AccessDetail::Open { flags, .. }) => flags & O_ACCMODE != O_WRONLY,
        Some(AccessDetail::Mmap { result, .. }) => !is_errno(*result),
        Some(AccessDetail::Read(_) | AccessDetail::Copy(_)) => true,
        _ => false,
    }
}

/// A syscall result that is `-errno` rather than a value (an address).
fn is_errno(result: i64) -> bool {
    (-4095..0).contains(&result)
}

/// The finding's subject when it is the record's file.
fn about_file(event: &Event) -> Option<About> {
    event.file.as_ref().map(|f| About::File {
        dev: f.dev,
        ino: f.ino,
    })
}

#[cfg(test)]
mod tests;
