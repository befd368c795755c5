//! What the store indexes of a record: the fields responders search by,
//! taken from the event beside its encoded bytes (which are what is kept
//! and chained; these columns only find them). Who did it ([`Actor`]) and
//! to which file ([`FileKey`]) are kept once each in their own tables
//! (`schema.rs`); a record names them by id.

use std::sync::OnceLock;

use crate::event::{AccessDetail, Action, Event, PolicyInfo, Severity};

/// The indexed columns of one record (`schema.rs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub time_ns: i64,
    pub action: &'static str,
    pub severity: &'static str,
    pub actor: Option<Actor>,
    pub file: Option<FileKey>,
    /// The policy's weight set, on verdicts and detections that name one.
    pub weight_set: Option<String>,
    pub detection: Option<&'static str>,
    /// Bytes read, copied, sent or detected, where the record has them.
    pub bytes: Option<i64>,
    /// `open_summary`: the opens it counted (`stats`).
    pub opens: Option<i64>,
}

/// A process as one record saw it: a pid with its start time (pids are
/// reused), and what it was then (its executable and name change at exec,
/// its parent when it is reparented).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Actor {
    pub pid: i64,
    pub start_ns: Option<i64>,
    pub ppid: Option<i64>,
    pub uid: Option<i64>,
    pub exe: Option<String>,
    pub comm: Option<String>,
    pub container: Option<String>,
}

/// A file as one record named it: its identity and the path it had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: i64,
    pub ino: i64,
    pub path: Option<String>,
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
            action: action_name(event.action),
            severity: severity_name(event.severity),
            ..Row::default()
        };
        row.actor = event.process.as_ref().map(|p| Actor {
            pid: i64::from(p.pid),
            start_ns: p.start_time.map(|t| ns(t.unix_ns)),
            ppid: Some(i64::from(p.ppid)),
            uid: Some(i64::from(p.uid)),
            exe: p.exe.as_ref().map(|e| e.to_lossy().into_owned()),
            comm: Some(p.comm.clone()),
            container: p.container.as_ref().map(|c| c.id.clone()),
        });
        row.file = event.file.as_ref().map(|f| FileKey {
            dev: int(f.dev),
            ino: int(f.ino),
            path: f.path.as_ref().map(|p| p.to_lossy().into_owned()),
        });
        if let Some(d) = &event.detection {
            row.detection = Some(d.id.as_str());
            row.bytes = d.bytes.map(int);
            row.weight_set = d.weight_set.clone();
        }
        if let Some(PolicyInfo::Verdict(v)) = &event.policy {
            row.weight_set = row.weight_set.or_else(|| Some(v.weight_set.clone()));
        }
        if let Some(access) = &event.access {
            match &access.detail {
                AccessDetail::Read(r) => row.bytes = row.bytes.or(Some(int(r.bytes))),
                AccessDetail::Copy(c) => row.bytes = row.bytes.or(Some(int(c.bytes))),
                AccessDetail::Send(s) => row.bytes = row.bytes.or(Some(int(s.bytes))),
                AccessDetail::OpenSummary(s) => row.opens = Some(int(s.opens)),
                _ => {}
            }
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
