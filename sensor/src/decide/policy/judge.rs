//! The policy in the event stream: every open, read and map of a file in a
//! weight set is judged, and a verdict other than `allow` becomes a record
//! of its own (`alert`, or `would_deny` / `would_kill` in audit mode)
//! beside the access record, with the rule and the weight set that
//! decided.
//!
//! This is audit: the access has already happened when its record is
//! judged. Stopping it (`denied`, `killed`) needs the enforcement
//! mechanisms, which decide in the kernel's path, not here.

use std::path::PathBuf;

use sensor_common::FileKey;

use super::{Mode, Operation, Policy, PolicyAction, Subject, compile::Finding};
use crate::event::{
    AccessDetail, Action, Event, PolicyInfo, PolicyLoaded, PolicyVerdict, Severity, Text,
};

/// `O_ACCMODE`: an open for writing is also a `write` operation.
const O_ACCMODE: u32 = 0o3;

pub struct Judge {
    policy: Policy,
    path: PathBuf,
}

impl Judge {
    pub fn new(policy: Policy, path: PathBuf) -> Self {
        Self { policy, path }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What the `policy_loaded` record says.
    pub fn loaded(&self, files_unwatched: u64, findings: &[Finding]) -> PolicyInfo {
        PolicyInfo::Loaded(PolicyLoaded {
            sha256: self.policy.hash.clone(),
            path: Text::from(self.path.as_path()),
            mode: self.policy.mode,
            weight_sets: self.policy.sets.len() as u64,
            rules: self.policy.rules.len() as u64,
            files: self.policy.files().count() as u64,
            files_unwatched,
            warnings: findings.len() as u64,
        })
    }

    /// The verdict record for an access event, unless the policy allows it.
    pub fn judge(&self, event: &Event) -> Option<Event> {
        let file = event.file.as_ref()?;
        let process = event.process.as_ref()?;
        let ops: &[Operation] = match &event.access.as_ref()?.detail {
            AccessDetail::Open { flags, .. } if flags & O_ACCMODE != 0 => {
                &[Operation::Open, Operation::Write]
            }
            AccessDetail::Open { .. } => &[Operation::Open],
            AccessDetail::Read(_) => &[Operation::Read],
            AccessDetail::Mmap { .. } => &[Operation::Mmap],
            AccessDetail::Close { .. } => return None,
        };
        let key = FileKey {
            dev: file.dev,
            ino: file.ino,
        };
        let subject = Subject {
            exe: process.exe_id,
            parent_exe: process.parent_exe_id,
            uid: process.uid,
            gid: process.gid,
            container_id: process.container.as_ref().map(|c| c.id.as_str()),
            cgroup_path: process.cgroup_path.as_deref(),
            gpu: process.gpu,
        };
        let (op, verdict) = ops
            .iter()
            .filter_map(|&op| Some((op, self.policy.decide(&key, op, &subject)?)))
            .max_by_key(|(_, v)| v.action)?;
        let (action, severity) = match (verdict.action, self.policy.mode) {
            (PolicyAction::Allow, _) => return None,
            (PolicyAction::Alert, _) => (Action::Alert, Severity::Medium),
            (PolicyAction::Deny, Mode::Audit) => (Action::WouldDeny, Severity::High),
            (PolicyAction::Kill, Mode::Audit) => (Action::WouldKill, Severity::High),
            // Enforcement is refused when the policy is loaded, until its
            // mechanisms exist; say what would have happened.
            (PolicyAction::Deny, Mode::Enforce) => (Action::WouldDeny, Severity::High),
            (PolicyAction::Kill, Mode::Enforce) => (Action::WouldKill, Severity::High),
        };
        let rule = verdict.rule.and_then(|i| self.policy.rules.get(i));
        let mut record = event.clone();
        record.action = action;
        record.severity = severity;
        record.policy = Some(PolicyInfo::Verdict(PolicyVerdict {
            sha256: self.policy.hash.clone(),
            mode: self.policy.mode,
            verdict: verdict.action,
            operation: op,
            rule: rule.map(|r| r.number as u32),
            rule_name: rule.and_then(|r| r.name.clone()),
            weight_set: self
                .policy
                .sets
                .get(verdict.set)
                .map_or_else(String::new, |s| s.name.clone()),
            mechanism: String::from("none"),
        }));
        Some(record)
    }
}
