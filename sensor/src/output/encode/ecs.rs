//! Elastic Common Schema 8: each record with ECS's `event.*`, `file.*`,
//! `process.*`, `user.*`, `host.*`, `container.*`, `rule.*` and
//! `destination.*` fields (docs/outputs.md holds the mapping table), so
//! Elastic's and Splunk's ECS content applies as is. What ECS has no field
//! for stays under `weightwarden.*`, in the native encoding's shape; the
//! native id and seq are `event.id` and `event.sequence`.

use serde::Serialize;
use serde_json::Value;

use super::{EncodeError, Encoder, Wire, base_name, failed, native, send, to_socket};
use crate::event::{Action, Event, Severity};

/// The ECS version the records follow.
pub const ECS_VERSION: &str = "8.11.0";

/// The ECS encoder.
#[derive(Debug, Default)]
pub struct Ecs;

impl Encoder for Ecs {
    fn name(&self) -> &'static str {
        "ecs"
    }

    fn encode_wire(&mut self, wire: &Wire<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        super::write_line(out, &Doc::of(wire.event, &wire.native))
    }
}

/// `event.kind`, `event.category` and `event.type` of a record.
pub fn classify(
    event: &Event,
) -> (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
) {
    use Action::*;
    const FILE: &[&str] = &["file"];
    const PROCESS: &[&str] = &["process"];
    const ALERT: &[&str] = &["intrusion_detection", "file"];
    match event.action {
        Open | Read | Mmap | Close | OpenSummary | Copy => ("event", FILE, &["access"]),
        Create => ("event", FILE, &["creation"]),
        WriteOpen | Truncate | Rename | SetAttributes | Link => ("event", FILE, &["change"]),
        Unlink => ("event", FILE, &["deletion"]),
        Exec => ("event", PROCESS, &["start"]),
        Exit => ("event", PROCESS, &["end"]),
        MemoryRead => ("event", PROCESS, &["access"]),
        Send if to_socket(event) => ("event", &["network"], &["connection"]),
        Send => ("event", FILE, &["change"]),
        Detection => ("alert", ALERT, &["indicator"]),
        Alert | WouldDeny | WouldKill => ("alert", ALERT, &["allowed"]),
        Denied | Killed => ("alert", ALERT, &["denied"]),
        SensorStart => ("event", PROCESS, &["start"]),
        SensorStop => ("event", PROCESS, &["end"]),
        Heartbeat => ("metric", &["host"], &["info"]),
        PolicyLoaded | PolicyRejected => ("event", &["configuration"], &["change"]),
    }
}

/// `event.severity`: 1 (info) to 5 (critical), as in docs/outputs.md.
pub fn severity(severity: Severity) -> u32 {
    match severity {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

fn outcome(event: &Event) -> &'static str {
    if failed(event) { "failure" } else { "success" }
}

/// Encodes one event as an ECS document (for tests and tools; the encoder
/// writes the same without building a value).
pub fn record(event: &Event) -> Result<Value, EncodeError> {
    serde_json::to_value(Doc::of(event, &native::wire(event))).map_err(EncodeError::Json)
}

// --- the ECS wire structs, borrowing from the event and its native wire
// form ---

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    ecs: EcsVersion,
    event: EventFields<'a>,
    host: Host<'a>,
    agent: Agent,
    process: Option<ProcessFields<'a>>,
    user: Option<Id>,
    group: Option<Id>,
    container: Option<ContainerFields<'a>>,
    file: Option<FileFields<'a>>,
    destination: Option<Destination<'a>>,
    network: Option<Network>,
    source: Option<Bytes>,
    rule: Option<Rule<'a>>,
    message: Option<&'a str>,
    weightwarden: Extra<'a>,
}

#[derive(Serialize)]
struct EcsVersion {
    version: &'static str,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct EventFields<'a> {
    kind: &'static str,
    category: &'static [&'static str],
    #[serde(rename = "type")]
    types: &'static [&'static str],
    action: Action,
    outcome: &'static str,
    severity: u32,
    id: Option<&'a str>,
    sequence: Option<u64>,
    module: &'static str,
    dataset: &'static str,
    provider: &'static str,
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Agent {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Id {
    id: String,
}

#[derive(Serialize)]
struct Thread {
    id: u32,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct ProcessFields<'a> {
    pid: u32,
    thread: Thread,
    name: &'a str,
    executable: Option<&'a str>,
    args: &'a [std::borrow::Cow<'a, str>],
    args_count: usize,
    command_line: Option<String>,
    start: Option<&'a str>,
    parent: Parent<'a>,
    exit_code: Option<i64>,
    end: Option<&'a str>,
    user: Id,
    group: Id,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Parent<'a> {
    pid: u32,
    name: Option<&'a str>,
    executable: Option<&'a str>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct ContainerFields<'a> {
    id: &'a str,
    runtime: Option<&'a str>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct FileFields<'a> {
    path: Option<&'a str>,
    name: Option<&'a str>,
    directory: Option<&'a str>,
    extension: Option<&'a str>,
    device: Option<&'a str>,
    inode: String,
    size: Option<u64>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Destination<'a> {
    address: Option<&'a str>,
    ip: Option<String>,
    port: Option<u16>,
}

#[derive(Serialize)]
struct Network {
    direction: &'static str,
    bytes: u64,
}

#[derive(Serialize)]
struct Bytes {
    bytes: u64,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Rule<'a> {
    id: std::borrow::Cow<'a, str>,
    name: std::borrow::Cow<'a, str>,
    description: Option<&'a str>,
    ruleset: std::borrow::Cow<'a, str>,
    category: Option<&'static str>,
    version: Option<&'a str>,
}

/// What ECS has no field for, in the native shape.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Extra<'a> {
    schema: &'static str,
    tier: crate::event::Tier,
    #[serde(flatten)]
    details: native::Details<'a>,
    process: Option<ProcessExtra<'a>>,
    file: Option<FileExtra<'a>>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct ProcessExtra<'a> {
    cgroup_id: u64,
    gpu: bool,
    args_truncated: bool,
    pod_uid: Option<&'a str>,
    ancestors: &'a [native::WireAncestor<'a>],
    exe_escaped: Option<&'a str>,
    args_escaped: Option<&'a [String]>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct FileExtra<'a> {
    path_escaped: Option<&'a str>,
    derived_from: Option<&'a native::WireDerivedFrom>,
}

impl<'a> Doc<'a> {
    fn of(event: &'a Event, wire: &'a native::Record<'a>) -> Self {
        let (kind, category, types) = classify(event);
        let p = wire.process.as_ref();
        let exit_code = event.exit.and_then(|x| {
            // Killed by a signal: 128 + the signal, as a shell reports it.
            x.code()
                .map(i64::from)
                .or_else(|| x.signal().map(|s| 128 + i64::from(s)))
        });
        let socket = send(event).filter(|_| to_socket(event));
        let detection = event.detection.as_ref();
        Doc {
            timestamp: &wire.time,
            ecs: EcsVersion {
                version: ECS_VERSION,
            },
            event: EventFields {
                kind,
                category,
                types,
                action: event.action,
                outcome: outcome(event),
                severity: severity(event.severity),
                id: wire.id.as_deref(),
                sequence: wire.seq,
                module: "weightwarden",
                dataset: "weightwarden.audit",
                provider: "weightwarden",
            },
            host: Host {
                hostname: &event.host,
                name: &event.host,
            },
            agent: Agent {
                kind: "weightwarden",
                version: env!("CARGO_PKG_VERSION"),
            },
            process: p.map(|p| process(p, exit_code.map(|c| (c, wire.time.as_str())))),
            user: p.map(|p| Id {
                id: p.uid.to_string(),
            }),
            group: p.map(|p| Id {
                id: p.gid.to_string(),
            }),
            container: p.and_then(|p| {
                p.container_id.as_deref().map(|id| ContainerFields {
                    id,
                    runtime: p.container_runtime.as_deref(),
                })
            }),
            file: wire.file.as_ref().map(file).or_else(|| {
                send(event)
                    .filter(|_| !to_socket(event))
                    .map(|s| destination_file(&s.destination))
            }),
            destination: socket.map(|s| {
                let addr = s
                    .destination
                    .peer
                    .as_deref()
                    .and_then(|p| p.parse::<std::net::SocketAddr>().ok());
                Destination {
                    address: s.destination.peer.as_deref(),
                    ip: addr.map(|a| a.ip().to_string()),
                    port: addr.map(|a| a.port()),
                }
            }),
            network: socket.map(|s| Network {
                direction: "egress",
                bytes: s.bytes,
            }),
            source: socket.map(|s| Bytes { bytes: s.bytes }),
            rule: rule(event),
            message: detection.map(|d| d.summary.as_str()),
            weightwarden: Extra {
                schema: native::SCHEMA,
                tier: event.tier,
                details: wire.details(),
                process: p.map(|p| ProcessExtra {
                    cgroup_id: p.cgroup_id,
                    gpu: p.gpu,
                    args_truncated: p.args_truncated,
                    pod_uid: p.pod_uid.as_deref(),
                    ancestors: &p.ancestors,
                    exe_escaped: p.exe_escaped.as_deref(),
                    args_escaped: p.args_escaped.as_deref(),
                }),
                file: wire
                    .file
                    .as_ref()
                    .filter(|f| f.path_escaped.is_some() || f.derived_from.is_some())
                    .map(|f| FileExtra {
                        path_escaped: f.path_escaped.as_deref(),
                        derived_from: f.derived_from.as_ref(),
                    }),
            },
        }
    }
}

/// `process.*` with `parent`; `exit` the code and end time on `exit`.
fn process<'a>(p: &'a native::WireProcess<'a>, exit: Option<(i64, &'a str)>) -> ProcessFields<'a> {
    let words: Vec<&str> = p.args.iter().map(|a| a.as_ref()).collect();
    let first = p.ancestors.first().filter(|a| a.pid == p.ppid);
    ProcessFields {
        pid: p.pid,
        thread: Thread { id: p.tid },
        name: &p.comm,
        executable: p.exe.as_deref(),
        args: &p.args,
        args_count: p.args.len(),
        command_line: (!words.is_empty()).then(|| words.join(" ")),
        start: p.start_time.as_deref(),
        parent: Parent {
            pid: p.ppid,
            name: first.map(|a| a.comm.as_ref()),
            executable: first.and_then(|a| a.exe.as_deref()),
        },
        exit_code: exit.map(|(code, _)| code),
        end: exit.map(|(_, time)| time),
        user: Id {
            id: p.uid.to_string(),
        },
        group: Id {
            id: p.gid.to_string(),
        },
    }
}

/// ECS's file fields from the native file.
fn file<'a>(f: &'a native::WireFile<'a>) -> FileFields<'a> {
    let path = f.path.as_deref();
    let name = path.map(base_name);
    FileFields {
        path,
        name,
        directory: path
            .and_then(|p| p.rsplit_once('/'))
            .map(|(dir, _)| if dir.is_empty() { "/" } else { dir }),
        extension: name
            .and_then(|n| n.rsplit_once('.'))
            .filter(|(stem, _)| !stem.is_empty())
            .map(|(_, ext)| ext),
        device: Some(&f.dev),
        inode: f.ino.to_string(),
        size: Some(f.size),
        kind: "file",
    }
}

/// A send's file or pipe: the destination is the file.
fn destination_file(d: &crate::event::Destination) -> FileFields<'_> {
    let path = d.path.as_ref().and_then(|p| p.as_str());
    FileFields {
        path,
        name: path.map(base_name),
        directory: None,
        extension: None,
        device: None,
        inode: d.ino.to_string(),
        size: None,
        kind: match d.kind {
            crate::event::DestinationKind::Pipe => "pipe",
            _ => "file",
        },
    }
}

/// `rule.*`: the detection that matched, or the policy rule that decided.
fn rule(event: &Event) -> Option<Rule<'_>> {
    if let Some(d) = &event.detection {
        return Some(Rule {
            id: d.id.as_str().into(),
            name: d.id.as_str().into(),
            description: Some(&d.summary),
            ruleset: "weightwarden detections".into(),
            category: Some("model weight theft"),
            version: None,
        });
    }
    // A verdict names its weight set; a loaded policy does not decide.
    let Some(crate::event::PolicyInfo::Verdict(v)) = &event.policy else {
        return None;
    };
    let set = &v.weight_set;
    Some(Rule {
        id: match v.rule {
            Some(n) => n.to_string().into(),
            None => format!("default:{set}").into(),
        },
        name: match &v.rule_name {
            Some(name) => name.as_str().into(),
            None => format!("default of weight set {set}").into(),
        },
        description: None,
        ruleset: format!("weightwarden policy (weight set {set})").into(),
        category: None,
        version: Some(&v.sha256),
    })
}

#[cfg(test)]
mod tests;
