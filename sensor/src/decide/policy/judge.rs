//! The policy in the event stream: every open, read and map of a file in a
//! weight set is judged, and a verdict other than `allow` becomes a record
//! of its own (`alert`, or `would_deny` / `would_kill` in audit mode)
//! beside the access record, with the rule and the weight set that
//! decided.
//!
//! This is audit: the access has already happened when its record is
//! judged. Stopping it is the enforcement mechanisms' (`decide/enforce/`),
//! which decide in the opener's path; their decisions come back here to
//! become `denied` and `killed` records ([`Judge::enforced`]).

use std::path::PathBuf;

use sensor_common::FileKey;

use super::{Mode, Operation, Policy, PolicyAction, Subject, compile::Finding};
use crate::event::{
    AccessDetail, Action, Event, PolicyInfo, PolicyLoaded, PolicyVerdict, Severity, Text,
};

/// `O_ACCMODE`: an open for writing is also a `write` operation.
const O_ACCMODE: u32 = 0o3;

pub struct Judge {
    policy: super::SharedPolicy,
    path: PathBuf,
    /// What enforces opens (`fanotify`), if anything: its decisions are
    /// its own records (`denied`, `killed`), so the judge leaves opens to it.
    opens_enforced_by: Option<&'static str>,
}

impl Judge {
    pub fn new(
        policy: super::SharedPolicy,
        path: PathBuf,
        opens_enforced_by: Option<&'static str>,
    ) -> Self {
        Self {
            policy,
            path,
            opens_enforced_by,
        }
    }

    pub fn shared_policy(&self) -> super::SharedPolicy {
        self.policy.clone()
    }

    /// The policy file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// What enforces opens, if anything.
    pub fn opens_enforced_by(&self) -> Option<&'static str> {
        self.opens_enforced_by
    }

    /// What enforces opens, from now on (a reload may start fanotify).
    pub fn set_opens_enforced_by(&mut self, mechanism: Option<&'static str>) {
        self.opens_enforced_by = mechanism;
    }

    /// The enforced decision as a record, on the access it refused;
    /// `policy` is the one that decided.
    pub fn enforced(
        &self,
        mut event: Event,
        policy: &Policy,
        verdict: super::Verdict,
        killed: bool,
    ) -> Event {
        event.action = match (verdict.action, killed) {
            (PolicyAction::Alert, _) => Action::Alert,
            (_, true) => Action::Killed,
            _ => Action::Denied,
        };
        event.severity = if verdict.action == PolicyAction::Alert {
            Severity::Medium
        } else {
            Severity::High
        };
        let mechanism = self.opens_enforced_by.unwrap_or("none");
        event.policy = Some(verdict_info(policy, verdict, Operation::Open, mechanism));
        event
    }

    /// What the `policy_loaded` record says of the policy in force.
    pub fn loaded(&self, files_unwatched: u64, findings: &[Finding]) -> PolicyInfo {
        let policy = self.policy.load();
        PolicyInfo::Loaded(PolicyLoaded {
            sha256: policy.hash.clone(),
            path: Text::from(self.path.as_path()),
            mode: policy.mode,
            weight_sets: policy.sets.len() as u64,
            rules: policy.rules.len() as u64,
            files: policy.files().count() as u64,
            files_unwatched,
            warnings: findings.len() as u64,
            mechanism: self.opens_enforced_by.unwrap_or("none").to_owned(),
        })
    }

    /// The verdict record for an access event, unless the policy allows it.
    pub fn judge(&self, event: &Event) -> Option<Event> {
        let policy = self.policy.load();
        let file = event.file.as_ref()?;
        let process = event.process.as_ref()?;
        let detail = &event.access.as_ref()?.detail;
        let ops: &[Operation] = match detail {
            // Opens are the enforcer's to judge, but it cannot tell a write
            // open from a read one: writes are judged here, in the record.
            AccessDetail::Open { flags, .. } if self.opens_enforced_by.is_some() => {
                if flags & O_ACCMODE == 0 {
                    return None;
                }
                &[Operation::Write]
            }
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
            .filter_map(|&op| Some((op, policy.decide(&key, op, &subject)?)))
            .max_by_key(|(_, v)| v.action)?;
        let (action, severity) = match (verdict.action, policy.mode) {
            (PolicyAction::Allow, _) => return None,
            (PolicyAction::Alert, _) => (Action::Alert, Severity::Medium),
            (PolicyAction::Deny, Mode::Audit) => (Action::WouldDeny, Severity::High),
            (PolicyAction::Kill, Mode::Audit) => (Action::WouldKill, Severity::High),
            // Enforce mode, on a route no mechanism covers yet (a read or a
            // map through a descriptor opened before, passed or inherited):
            // say what should have happened.
            (PolicyAction::Deny, Mode::Enforce) => (Action::WouldDeny, Severity::High),
            (PolicyAction::Kill, Mode::Enforce) => (Action::WouldKill, Severity::High),
        };
        let mut record = event.clone();
        record.action = action;
        record.severity = severity;
        let mechanism = match policy.mode {
            Mode::Audit => "none",
            Mode::Enforce => "none: no mechanism covers this route yet",
        };
        record.policy = Some(verdict_info(&policy, verdict, op, mechanism));
        Some(record)
    }
}

/// The `policy` object of a verdict record.
fn verdict_info(
    policy: &Policy,
    verdict: super::Verdict,
    operation: Operation,
    mechanism: &str,
) -> PolicyInfo {
    let rule = verdict.rule.and_then(|i| policy.rules.get(i));
    PolicyInfo::Verdict(PolicyVerdict {
        sha256: policy.hash.clone(),
        mode: policy.mode,
        verdict: verdict.action,
        operation,
        rule: rule.map(|r| r.number as u32),
        rule_name: rule.and_then(|r| r.name.clone()),
        weight_set: policy
            .sets
            .get(verdict.set)
            .map_or_else(String::new, |s| s.name.clone()),
        mechanism: mechanism.to_owned(),
    })
}
