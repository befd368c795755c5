//! The records each (process, file) pair produced, so that a detection can
//! cite the accesses it was built from.

use std::collections::HashMap;

use crate::event::{Event, RecordId};

/// References kept per pair: the first record (usually the open) and the
/// most recent ones.
const KEPT: usize = 8;

/// Pairs kept at most. Beyond it a whole process's pairs are dropped (its
/// later detections then cite only newer records); exits free them first.
const PAIRS_MAX: usize = 65_536;

/// A pair's other half: a file `(dev, ino)`, or a target process.
type Other = (u64, u64);

#[derive(Default)]
pub struct History {
    by_pid: HashMap<u32, HashMap<Other, Vec<RecordId>>>,
    pairs: usize,
    /// Processes whose pairs were dropped to make room.
    pub evicted: u64,
}

impl History {
    /// Notes `event` and returns the references for a detection built on
    /// it: this pair's records, oldest first, `event` last.
    pub fn record(&mut self, event: &Event) -> Vec<RecordId> {
        let (Some(id), Some((pid, other))) = (event.id, key(event)) else {
            return event.id.into_iter().collect();
        };
        let known = self
            .by_pid
            .get(&pid)
            .is_some_and(|files| files.contains_key(&other));
        if !known {
            if self.pairs >= PAIRS_MAX {
                self.evict_one();
            }
            self.pairs += 1;
        }
        let refs = self
            .by_pid
            .entry(pid)
            .or_default()
            .entry(other)
            .or_default();
        if refs.len() == KEPT {
            // Keep the first record; drop the oldest of the rest.
            refs.remove(1);
        }
        refs.push(id);
        refs.clone()
    }

    /// The records kept for `pid` and `other` (a file's `(dev, ino)`).
    pub fn refs(&self, pid: u32, other: Other) -> Vec<RecordId> {
        self.by_pid
            .get(&pid)
            .and_then(|files| files.get(&other))
            .cloned()
            .unwrap_or_default()
    }

    pub fn forget(&mut self, pid: u32) {
        if let Some(files) = self.by_pid.remove(&pid) {
            self.pairs -= files.len();
        }
    }

    fn evict_one(&mut self) {
        if let Some(&pid) = self.by_pid.keys().next() {
            self.forget(pid);
            self.evicted += 1;
        }
    }

    /// The processes it holds something for.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pid.keys().copied()
    }
}

fn key(event: &Event) -> Option<(u32, Other)> {
    let pid = event.process.as_ref()?.pid;
    match (&event.file, &event.target) {
        (Some(f), _) => Some((pid, (f.dev, f.ino))),
        (None, Some(t)) => Some((pid, (u64::MAX, u64::from(t.pid)))),
        (None, None) => None,
    }
}
