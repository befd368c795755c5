//! What keeps detections readable: the repeat window (one record per
//! process, subject and detection per window, the repeats counted in the
//! next one) and the rate limit (at most `detect.max_per_minute`, the rest
//! counted and warned about). Nothing is dropped without a count.

use std::{collections::HashMap, time::Instant};

use super::{About, Finding};
use crate::{
    event::{DetectionId, Event},
    metrics::{Collect, Section},
};

/// Windows kept at most (see `history.rs` for the same policy).
const WINDOWS_MAX: usize = 65_536;

/// A detection's identity for the repeat window, within one process:
/// the process's start time (a reused pid is another process), what it is
/// about, and which detection.
type Key = (i128, About, DetectionId);

struct Window {
    last_ns: i128,
    suppressed: u64,
}

pub struct Limit {
    window_ns: i128,
    per_minute: f64,
    tokens: f64,
    refilled: Instant,
    by_pid: HashMap<u32, HashMap<Key, Window>>,
    windows: usize,
    written: [u64; DetectionId::ALL.len()],
    suppressed: u64,
    rate_limited: u64,
    warned: Option<Instant>,
    integrity_checked: u64,
    integrity_unreadable: u64,
    /// Processes whose repeat windows were dropped to make room.
    pub evicted: u64,
}

impl Limit {
    pub fn new(window_secs: u64, per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute);
        Self {
            window_ns: i128::from(window_secs) * 1_000_000_000,
            per_minute,
            tokens: per_minute,
            refilled: Instant::now(),
            by_pid: HashMap::new(),
            windows: 0,
            written: [0; DetectionId::ALL.len()],
            suppressed: 0,
            rate_limited: 0,
            warned: None,
            integrity_checked: 0,
            integrity_unreadable: 0,
            evicted: 0,
        }
    }

    /// The finding, to be written, or `None` (a counted repeat or over the
    /// rate).
    pub fn admit(&mut self, event: &Event, mut finding: Finding) -> Option<Finding> {
        // The agent's own findings (a baseline check) have no process.
        let (pid, start) = event
            .process
            .as_ref()
            .map_or((0, 0), |p| (p.pid, p.start_time.map_or(0, |t| t.unix_ns)));
        let key = (start, finding.about, finding.detection.id);
        let now = event.time.unix_ns;
        let window_ns = self.window_ns;
        if let Some(w) = self.window(pid, &key)
            && now.saturating_sub(w.last_ns) < window_ns
        {
            w.suppressed += 1;
            self.suppressed += 1;
            return None;
        }
        if !self.take_token() {
            self.rate_limited += 1;
            self.warn_rate();
            return None;
        }
        let window = self.window_or_insert(pid, key);
        finding.detection.suppressed = std::mem::take(&mut window.suppressed);
        window.last_ns = now;
        self.written[index(finding.detection.id)] += 1;
        Some(finding)
    }

    /// Counts a baseline check; warns about a file that cannot be read
    /// (no mismatch can be told, so it is no detection).
    pub fn count_integrity(
        &mut self,
        entry: &super::integrity::Entry,
        check: &super::integrity::Check,
    ) {
        self.integrity_checked += 1;
        if let super::integrity::Check::Unreadable(why) = check {
            self.integrity_unreadable += 1;
            tracing::warn!(
                path = %entry.path.display(),
                error = %why,
                "a file in the baseline cannot be read to check it"
            );
        }
    }

    pub fn forget(&mut self, pid: u32) {
        if let Some(windows) = self.by_pid.remove(&pid) {
            self.windows -= windows.len();
        }
    }

    /// The processes it holds a window for.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pid.keys().copied()
    }

    fn window(&mut self, pid: u32, key: &Key) -> Option<&mut Window> {
        self.by_pid.get_mut(&pid)?.get_mut(key)
    }

    fn window_or_insert(&mut self, pid: u32, key: Key) -> &mut Window {
        let known = self.by_pid.get(&pid).is_some_and(|w| w.contains_key(&key));
        if !known {
            if self.windows >= WINDOWS_MAX
                && let Some(&victim) = self.by_pid.keys().next()
            {
                self.forget(victim);
                self.evicted += 1;
            }
            self.windows += 1;
        }
        self.by_pid
            .entry(pid)
            .or_default()
            .entry(key)
            .or_insert(Window {
                last_ns: 0,
                suppressed: 0,
            })
    }

    /// A token bucket holding a minute's worth, refilled continuously.
    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Once a minute at most, while the limit holds detections back.
    fn warn_rate(&mut self) {
        let now = Instant::now();
        if self
            .warned
            .is_some_and(|at| now.duration_since(at).as_secs() < 60)
        {
            return;
        }
        self.warned = Some(now);
        tracing::warn!(
            limit = self.per_minute,
            rate_limited = self.rate_limited,
            "detections over detect.max_per_minute are not written (counted in detect.rate_limited)"
        );
    }
}

fn index(id: DetectionId) -> usize {
    DetectionId::ALL
        .iter()
        .position(|&d| d == id)
        .unwrap_or_default()
}

impl Collect for Limit {
    fn collect(&self, section: &mut Section<'_>) {
        for (id, written) in DetectionId::ALL.iter().zip(self.written) {
            section.total(id.as_str(), "detection records written", written);
        }
        section.total(
            "suppressed",
            "repeats inside detect.repeat_window_secs, counted in the next record",
            self.suppressed,
        );
        section.total(
            "integrity_checked",
            "files checked against the baseline manifest",
            self.integrity_checked,
        );
        section.total(
            "integrity_unreadable",
            "baseline files that could not be read to check",
            self.integrity_unreadable,
        );
        section.total(
            "rate_limited",
            "detections over detect.max_per_minute, not written",
            self.rate_limited,
        );
    }
}
