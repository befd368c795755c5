//! Deciding one access from the compiled tables: no I/O, no lock, no
//! process lookup; everything the decision needs comes in the
//! [`Subject`], gathered when the process was seen.
//!
//! Order: for each weight set the file is in, the first rule (in file
//! order) that covers the set and the operation and matches the process
//! decides; when none does, the set's `default`. A file in several sets
//! gets the strictest of their verdicts (`allow` < `alert` < `deny` <
//! `kill`).

use sensor_common::FileKey;

use super::{
    compile::{Policy, Rule, SubjectMatch},
    file::{Operation, PolicyAction},
};

/// What the decision knows about the acting process.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    /// The identity of its executable.
    pub exe: Option<FileKey>,
    /// The identity of its parent's executable.
    pub parent_exe: Option<FileKey>,
    pub uid: u32,
    pub gid: u32,
    pub container_id: Option<&'a str>,
    /// Its cgroup v2 path (`/system.slice/vllm.service`).
    pub cgroup_path: Option<&'a str>,
    /// It holds a GPU device.
    pub gpu: bool,
}

/// What the policy says about one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: PolicyAction,
    /// The deciding rule's index into [`Policy::rules`]; `None` when a
    /// set's default decided.
    pub rule: Option<usize>,
    /// The weight set (index into [`Policy::sets`]) whose verdict this is.
    pub set: usize,
}

impl SubjectMatch {
    /// Whether the process is one this rule is about.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let within = |allowed: &Option<Vec<FileKey>>, key: Option<FileKey>| {
            allowed
                .as_ref()
                .is_none_or(|list| key.is_some_and(|k| list.contains(&k)))
        };
        within(&self.exe, s.exe)
            && within(&self.parent_exe, s.parent_exe)
            && self.uids.as_ref().is_none_or(|u| u.contains(&s.uid))
            && self.gids.as_ref().is_none_or(|g| g.contains(&s.gid))
            && self.containers.as_ref().is_none_or(|prefixes| {
                s.container_id
                    .is_some_and(|id| prefixes.iter().any(|p| id.starts_with(p.as_str())))
            })
            && self
                .cgroups
                .as_ref()
                .is_none_or(|(_, set)| s.cgroup_path.is_some_and(|p| set.is_match(p)))
            && self.gpu.is_none_or(|gpu| gpu == s.gpu)
    }
}

impl SubjectMatch {
    /// Whether the rule looks at anything but the executable.
    pub fn looks_beyond_exe(&self) -> bool {
        self.parent_exe.is_some()
            || self.uids.is_some()
            || self.gids.is_some()
            || self.containers.is_some()
            || self.cgroups.is_some()
            || self.gpu.is_some()
    }
}

impl Rule {
    fn decides(&self, set: usize, op: Operation, subject: &Subject<'_>) -> bool {
        self.sets.contains(&set) && self.operations.contains(&op) && self.subject.matches(subject)
    }
}

impl Policy {
    /// The verdict for `op` on `file` by `subject`; `None` when the file is
    /// in no weight set.
    pub fn decide(&self, file: &FileKey, op: Operation, subject: &Subject<'_>) -> Option<Verdict> {
        self.decide_in_sets(self.sets_of(file), op, subject)
    }

    /// The verdict for `op` on a file in `sets`; `None` when there are none.
    pub fn decide_in_sets(
        &self,
        sets: &[usize],
        op: Operation,
        subject: &Subject<'_>,
    ) -> Option<Verdict> {
        sets.iter()
            .map(|&set| self.decide_in_set(set, op, subject))
            .max_by_key(|v| v.action)
    }

    /// The verdict within one weight set. A copy no rule decides is
    /// decided as the read it also is: `copy` rules only make copying
    /// stricter (or laxer) than reading.
    pub fn decide_in_set(&self, set: usize, op: Operation, subject: &Subject<'_>) -> Verdict {
        match self
            .rules
            .iter()
            .position(|rule| rule.decides(set, op, subject))
        {
            Some(index) => Verdict {
                action: self.rules[index].action,
                rule: Some(index),
                set,
            },
            None if op == Operation::Copy => self.decide_in_set(set, Operation::Read, subject),
            None => Verdict {
                action: self
                    .sets
                    .get(set)
                    .map_or(PolicyAction::Alert, |s| s.default),
                rule: None,
                set,
            },
        }
    }
}
