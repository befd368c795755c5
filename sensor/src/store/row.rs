//! What the store indexes of a record: the fields responders search by,
//! taken from the event beside its encoded bytes (which are what is kept
//! and chained; these columns only find them).

use std::sync::OnceLock;

use crate::event::{AccessDetail, Action, Event, PolicyInfo, Severity};

/// The indexed columns of one record (`schema.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub time_ns: i64,
    pub run: Option<i64>,
    pub run_seq: Option<i64>,
    pub action: &'static str,
    pub severity: &'static str,
    pub pid: Option<i64>,
    /// With the pid, who the process was (pids are reused).
    pub pid_start_ns: Option<i64>,
    pub ppid: Option<i64>,
    pub uid: Option<i64>,
    pub exe: Option<String>,
    pub comm: Option<String>,
    pub container: Option<String>,
    pub path: Option<String>,
    pub dev: Option<i64>,
    pub ino: Option<i64>,
    /// The policy's weight set, on verdicts and detections that name one.
    pub weight_set: Option<String>,
    pub detection: Option<&'static str>,
    /// Bytes read, copied, sent or detected, where the record has them.
    pub bytes: Option<i64>,
}

/// SQLite integers are signed: a `u64` is kept bit for bit.
fn int(v: u64) -> i64 {
    v as i64
}

fn ns(unix_ns: i128) -> i64 {
    unix_ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Row {
    pub fn of(event: &Event) -> Self {
        let mut row = Row {
            time_ns: ns(event.time.unix_ns),
            run: event.id.map(|id| int(id.run)),
            run_seq: event.id.map(|id| int(id.seq)),
            action: action_name(event.action),
            severity: severity_name(event.severity),
            ..Row::default()
        };
        if let Some(p) = &event.process {
            row.pid = Some(i64::from(p.pid));
            row.pid_start_ns = p.start_time.map(|t| ns(t.unix_ns));
            row.ppid = Some(i64::from(p.ppid));
            row.uid = Some(i64::from(p.uid));
            row.exe = p.exe.as_ref().map(|e| e.to_lossy().into_owned());
            row.comm = Some(p.comm.clone());
            row.container = p.container.as_ref().map(|c| c.id.clone());
        }
        if let Some(f) = &event.file {
            row.path = f.path.as_ref().map(|p| p.to_lossy().into_owned());
            row.dev = Some(int(f.dev));
            row.ino = Some(int(f.ino));
        }
        if let Some(d) = &event.detection {
            row.detection = Some(d.id.as_str());
            row.bytes = d.bytes.map(int);
            row.weight_set = d.weight_set.clone();
        }
        if let Some(PolicyInfo::Verdict(v)) = &event.policy {
            row.weight_set = row.weight_set.or_else(|| Some(v.weight_set.clone()));
        }
        if row.bytes.is_none() {
            row.bytes = event.access.as_ref().and_then(|a| match &a.detail {
                AccessDetail::Read(r) => Some(int(r.bytes)),
                AccessDetail::Copy(c) => Some(int(c.bytes)),
                AccessDetail::Send(s) => Some(int(s.bytes)),
                _ => None,
            });
        }
        row
    }
}

/// The name the native encoding gives `action` (`open`, `read`, ...).
pub fn action_name(action: Action) -> &'static str {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Action::ALL.iter().map(|a| &*serde_name(a).leak()).collect());
    Action::ALL
        .iter()
        .position(|a| *a == action)
        .and_then(|i| names.get(i).copied())
        .unwrap_or("unknown")
}

pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// A unit enum's serde name (its snake_case spelling).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_schema_name() {
        assert_eq!(action_name(Action::Open), "open");
        assert_eq!(action_name(Action::SensorStart), "sensor_start");
        assert_eq!(action_name(Action::OpenSummary), "open_summary");
        for a in Action::ALL {
            assert_ne!(action_name(a), "unknown", "{a:?}");
        }
        assert_eq!(severity_name(Severity::High), "high");
    }
}
