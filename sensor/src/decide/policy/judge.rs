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
    AccessDetail, Action, Event, PolicyInfo, PolicyLoaded, PolicyVerdict, Process, Severity, Text,
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
        how: Enforcement,
    ) -> Event {
        event.action = match (verdict.action, how.outcome) {
            (PolicyAction::Alert, _) => Action::Alert,
            (_, Outcome::Killed) => Action::Killed,
            (_, Outcome::Denied) => Action::Denied,
            (PolicyAction::Kill, Outcome::Failed) => Action::WouldKill,
            (_, Outcome::Failed) => Action::WouldDeny,
        };
        event.severity = if verdict.action == PolicyAction::Alert {
            Severity::Medium
        } else {
            Severity::High
        };
        let mut info = verdict_info(policy, verdict, how.operation, how.mechanism);
        if let PolicyInfo::Verdict(v) = &mut info {
            v.unjudged = how.unjudged;
        }
        event.policy = Some(info);
        event
    }

    /// The verdict behind an access the kernel stopped in `set` (its
    /// tables said so; this finds the rule): the process's own verdict, or
    /// for a process it had not judged, the set's default where that stops,
    /// else `deny` (fail closed).
    pub fn kernel_verdict(
        policy: &Policy,
        set: usize,
        operation: Operation,
        process: Option<&Process>,
        unjudged: bool,
    ) -> super::Verdict {
        match process.filter(|_| !unjudged) {
            Some(process) => policy.decide_in_set(set, operation, &subject(process)),
            None => {
                let default = policy.sets.get(set).map(|s| s.default);
                super::Verdict {
                    action: default
                        .filter(|&d| d >= PolicyAction::Deny)
                        .unwrap_or(PolicyAction::Deny),
                    rule: None,
                    set,
                }
            }
        }
    }

    /// What the `policy_loaded` record says of the policy in force;
    /// `mechanism` names what carries it out.
    pub fn loaded(
        &self,
        files_unwatched: u64,
        findings: &[Finding],
        mechanism: String,
    ) -> PolicyInfo {
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
            mechanism,
        })
    }

    /// The verdict record for an access event, unless the policy allows it.
    pub fn judge(&self, event: &Event) -> Option<Event> {
        let policy = self.policy.load();
        let file = event.file.as_ref()?;
        let process = event.process.as_ref()?;
        let detail = &event.access.as_ref()?.detail;
        let ops: &[Operation] = match detail {
            // The enforcer judges opens, for reading and for writing, and
            // records what it stops.
            AccessDetail::Open { .. } if self.opens_enforced_by.is_some() => return None,
            AccessDetail::Open { flags, .. } if flags & O_ACCMODE != 0 => {
                &[Operation::Open, Operation::Write]
            }
            AccessDetail::Open { .. } => &[Operation::Open],
            AccessDetail::Read(_) => &[Operation::Read],
            AccessDetail::Mmap { .. } => &[Operation::Mmap],
            // The copy's bytes are in the read summaries, judged as reads;
            // the copy record is judged as a copy; a write open is judged
            // as its `open` record; path operations (rename, unlink,
            // truncate) are not judged yet.
            AccessDetail::Copy(_) => &[Operation::Copy],
            // Repeated opens are judged at the process's first `open`
            // record of the file; the summary is not judged again.
            AccessDetail::Close { .. }
            | AccessDetail::OpenSummary(_)
            | AccessDetail::Memory { .. }
            | AccessDetail::Send(_)
            | AccessDetail::Change(_) => {
                return None;
            }
        };
        let key = FileKey {
            dev: file.dev,
            ino: file.ino,
        };
        let subject = subject(process);
        let (op, verdict) = ops
            .iter()
            .filter_map(|&op| Some((op, policy.decide(&key, op, &subject)?)))
            .max_by_key(|(_, v)| v.action)?;
        let stops = verdict.action >= PolicyAction::Deny;
        let in_kernel = matches!(op, Operation::Read | Operation::Mmap | Operation::Copy);
        if stops && policy.mode == Mode::Enforce && in_kernel {
            // The kernel tables decided this access as it happened; what
            // they stopped is their own `killed` record.
            return None;
        }
        let (action, severity) = match verdict.action {
            PolicyAction::Allow => return None,
            PolicyAction::Alert => (Action::Alert, Severity::Medium),
            PolicyAction::Deny => (Action::WouldDeny, Severity::High),
            PolicyAction::Kill => (Action::WouldKill, Severity::High),
        };
        let mut record = event.clone();
        record.action = action;
        record.severity = severity;
        let mechanism = match policy.mode {
            Mode::Audit => "none",
            // An open while no fanotify group answers (its thread failed).
            Mode::Enforce => "none: the open enforcer is not running",
        };
        record.policy = Some(verdict_info(&policy, verdict, op, mechanism));
        Some(record)
    }
}

/// How an enforced decision was carried out.
#[derive(Debug, Clone, Copy)]
pub struct Enforcement {
    pub operation: Operation,
    /// `fanotify`, `bpf_send_signal`.
    pub mechanism: &'static str,
    pub outcome: Outcome,
    /// The kernel had no verdict for the process and stopped it fail-closed.
    pub unjudged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Denied,
    Killed,
    /// The mechanism failed: the access went on.
    Failed,
}

/// What the policy matches a process in a record on.
pub(crate) fn subject(process: &Process) -> Subject<'_> {
    Subject {
        exe: process.exe_id,
        parent_exe: process.parent_exe_id,
        uid: process.uid,
        gid: process.gid,
        container_id: process.container.as_ref().map(|c| c.id.as_str()),
        cgroup_path: process.cgroup_path.as_deref(),
        gpu: process.gpu,
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
        unjudged: false,
    })
}
