//! What each process has taken from weight files (bytes read, copied or
//! mapped, per file), so that a write or send by it, or by a child of it,
//! can be tied to the weights it most likely carries.

use std::collections::HashMap;

use crate::event::{AccessDetail, Event, File};

/// Processes kept at most; beyond it an arbitrary one is dropped (its
/// sends then name no source and raise no `copy`), exits free them first.
const PROCESSES_MAX: usize = 16_384;

/// One file as a process took it.
#[derive(Debug, Clone)]
pub struct Took {
    pub file: File,
    pub bytes: u64,
}

/// The weights a sender carries: the process that took them (itself or
/// an ancestor), the file it took most of, and the total over its files.
#[derive(Debug, Clone)]
pub struct Source {
    pub pid: u32,
    pub file: File,
    pub bytes: u64,
}

/// Sends kept per process for judging again (the latest per
/// destination).
const SENDS_KEPT: usize = 16;

/// Senders remembered below one ancestor (the oldest go first).
const SENDERS_PER_ANCESTOR: usize = 256;

#[derive(Default)]
pub struct Taken {
    by_pid: HashMap<u32, HashMap<(u64, u64), Took>>,
    /// Recent sends, by process, to judge again when its weights (or its
    /// parent's) become known.
    sends: HashMap<u32, Vec<Event>>,
    /// The senders below each ancestor, so that a read looks only at its
    /// own process's sends and its descendants' (stale entries, of
    /// senders since forgotten, are skipped).
    descendants: HashMap<u32, Vec<u32>>,
    /// Processes whose weights or sends were dropped to make room.
    pub evicted: u64,
}

impl Taken {
    /// Notes what `event` took; returns the process's pid when it took
    /// more.
    pub fn observe(&mut self, event: &Event) -> Option<u32> {
        let (Some(p), Some(file)) = (&event.process, &event.file) else {
            return None;
        };
        let bytes = match event.access.as_ref().map(|a| &a.detail) {
            Some(AccessDetail::Read(r)) => r.bytes,
            Some(AccessDetail::Mmap { length, result, .. }) if !super::is_errno(*result) => {
                (*length).min(file.size)
            }
            _ => return None,
        };
        if bytes == 0 {
            return None;
        }
        if self.by_pid.len() >= PROCESSES_MAX
            && !self.by_pid.contains_key(&p.pid)
            && let Some(&victim) = self.by_pid.keys().next()
        {
            self.by_pid.remove(&victim);
            self.evicted += 1;
        }
        let took = self
            .by_pid
            .entry(p.pid)
            .or_default()
            .entry((file.dev, file.ino))
            .or_insert_with(|| Took {
                file: file.clone(),
                bytes: 0,
            });
        took.bytes = took.bytes.saturating_add(bytes);
        took.file.size = file.size;
        Some(p.pid)
    }

    /// Keeps a send (replacing the one before to the same destination).
    pub fn keep_send(&mut self, event: &Event) {
        let (Some(p), Some(AccessDetail::Send(send))) =
            (&event.process, event.access.as_ref().map(|a| &a.detail))
        else {
            return;
        };
        if self.sends.len() >= PROCESSES_MAX
            && !self.sends.contains_key(&p.pid)
            && let Some(&victim) = self.sends.keys().next()
        {
            self.sends.remove(&victim);
            self.evicted += 1;
        }
        if self.descendants.len() >= PROCESSES_MAX {
            // Only an ancestor that took weights (or may yet) is asked for
            // its descendants' sends; drop those that have none kept.
            let sends = &self.sends;
            self.descendants
                .retain(|_, below| below.iter().any(|s| sends.contains_key(s)));
        }
        for a in &p.ancestors {
            let below = self.descendants.entry(a.pid).or_default();
            if below.contains(&p.pid) {
                continue;
            }
            if below.len() >= SENDERS_PER_ANCESTOR {
                let sends = &self.sends;
                below.retain(|s| sends.contains_key(s));
                if below.len() >= SENDERS_PER_ANCESTOR {
                    below.remove(0);
                }
            }
            below.push(p.pid);
        }
        let kept = self.sends.entry(p.pid).or_default();
        kept.retain(|e| match e.access.as_ref().map(|a| &a.detail) {
            Some(AccessDetail::Send(other)) => {
                other.destination.ino != send.destination.ino
                    || other.destination.dev != send.destination.dev
            }
            _ => false,
        });
        if kept.len() == SENDS_KEPT {
            kept.remove(0);
        }
        kept.push(event.clone());
    }

    /// The kept sends of `pid` and of its descendants.
    pub fn sends_after(&self, pid: u32) -> Vec<Event> {
        let below = self.descendants.get(&pid).map_or(&[][..], Vec::as_slice);
        std::iter::once(&pid)
            .chain(below)
            .filter_map(|sender| self.sends.get(sender))
            .flatten()
            // A pid reused since: only the process whose ancestry names
            // `pid` (or `pid` itself).
            .filter(|e| {
                e.process
                    .as_ref()
                    .is_some_and(|p| p.pid == pid || p.ancestors.iter().any(|a| a.pid == pid))
            })
            .cloned()
            .collect()
    }

    /// The weights `event`'s process carries: its own, else its nearest
    /// ancestor's (the kernel follows a child of a reader too).
    pub fn source(&self, event: &Event) -> Option<Source> {
        let p = event.process.as_ref()?;
        std::iter::once(p.pid)
            .chain(p.ancestors.iter().map(|a| a.pid))
            .find_map(|pid| {
                let files = self.by_pid.get(&pid)?;
                let most = files.values().max_by_key(|t| t.bytes)?;
                Some(Source {
                    pid,
                    file: most.file.clone(),
                    bytes: files.values().map(|t| t.bytes).sum(),
                })
            })
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.sends.remove(&pid);
        self.descendants.remove(&pid);
    }

    /// The processes it holds something for.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_pid
            .keys()
            .chain(self.sends.keys())
            .chain(self.descendants.keys())
            .copied()
    }
}
