//! A file's creator writing it is one `create` record, not a storm: after
//! a process's `create` record for a file, its own later opens for writing,
//! truncates and attribute changes of that file (`cp -p`, Python's
//! `shutil.copy2`: create, then `chmod`) are folded into that record,
//! counted in `agent.creator_changes_folded`, until the process exits. The
//! content and attributes of a file its creator gives it were never anyone
//! else's. Renames, unlinks and links by the creator stay records: they
//! can move the file over another, or away.

use std::collections::{HashSet, VecDeque};

use sensor_common::FileKey;

use crate::event::{Action, Event};

/// How many (process, file) creations are remembered; the oldest go.
const CREATIONS_MAX: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Creations {
    set: HashSet<(u32, FileKey)>,
    /// Insertion order, for the bound.
    order: VecDeque<(u32, FileKey)>,
}

impl Creations {
    /// Whether `event` is to be written: false for a change its process
    /// makes to a file it created. Remembers `create` records.
    pub(super) fn keep(&mut self, event: &Event) -> bool {
        let (Some(process), Some(file)) = (&event.process, &event.file) else {
            return true;
        };
        let entry = (
            process.pid,
            FileKey {
                dev: file.dev,
                ino: file.ino,
            },
        );
        match event.action {
            Action::Create => {
                if self.set.insert(entry) {
                    if self.order.len() >= CREATIONS_MAX
                        && let Some(oldest) = self.order.pop_front()
                    {
                        self.set.remove(&oldest);
                    }
                    self.order.push_back(entry);
                }
                true
            }
            Action::WriteOpen | Action::Truncate | Action::SetAttributes => {
                !self.set.contains(&entry)
            }
            _ => true,
        }
    }

    /// Forgets an exited process's creations (its pid may be reused).
    pub(super) fn forget_process(&mut self, tgid: u32) {
        if self.set.iter().any(|(pid, _)| *pid == tgid) {
            self.set.retain(|(pid, _)| *pid != tgid);
            self.order.retain(|(pid, _)| *pid != tgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{File, Process, Severity, Tier, Timestamp};

    fn event(action: Action, pid: u32, ino: u64) -> Event {
        Event {
            id: None,
            time: Timestamp::from_unix_ns(0),
            host: "h".into(),
            action,
            severity: Severity::Info,
            tier: Tier::Tracepoint,
            process: Some(Process {
                pid,
                ..Process::default()
            }),
            file: Some(File {
                path: None,
                dev: 1,
                ino,
                size: 0,
                derived_from: None,
            }),
            access: None,
            exit: None,
            sensor: None,
            policy: None,
            target: None,
            detection: None,
        }
    }

    #[test]
    fn the_creators_own_changes_are_folded_until_it_exits() {
        let mut c = Creations::default();
        assert!(c.keep(&event(Action::WriteOpen, 10, 1)), "not created yet");
        assert!(c.keep(&event(Action::Create, 10, 1)));
        for action in [Action::WriteOpen, Action::Truncate, Action::SetAttributes] {
            assert!(!c.keep(&event(action, 10, 1)), "{action:?}");
        }
        // Another process, another file, or a rename: written.
        assert!(c.keep(&event(Action::Truncate, 11, 1)));
        assert!(c.keep(&event(Action::Truncate, 10, 2)));
        assert!(c.keep(&event(Action::Rename, 10, 1)));
        assert!(c.keep(&event(Action::Unlink, 10, 1)));
        c.forget_process(10);
        assert!(c.keep(&event(Action::Truncate, 10, 1)), "pid reused");
    }

    #[test]
    fn the_oldest_creations_go_first() {
        let mut c = Creations::default();
        for ino in 0..=CREATIONS_MAX as u64 {
            c.keep(&event(Action::Create, 1, ino));
        }
        assert!(c.keep(&event(Action::Truncate, 1, 0)), "evicted");
        assert!(!c.keep(&event(Action::Truncate, 1, CREATIONS_MAX as u64)));
        assert_eq!(c.set.len(), CREATIONS_MAX);
    }
}
