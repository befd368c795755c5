//! OCSF 1.2: each record as the event class a SIEM's OCSF pipeline expects
//! (docs/outputs.md holds the mapping table):
//!
//! - File System Activity (1001): file accesses and tampering;
//! - Process Activity (1007): exec, exit, reads of another's memory;
//! - Network Activity (4001): sends to a socket (egress);
//! - Detection Finding (2004): detections and policy verdicts, enforced
//!   or not;
//! - Application Lifecycle (6002): the sensor's own records.
//!
//! What OCSF has no attribute for stays in `unmapped`, in the native
//! encoding's shape, so nothing the native record says is lost; the native
//! record's id and seq are `metadata.uid` and `metadata.sequence`.

use serde::Serialize;
use serde_json::Value;

use super::{EncodeError, Encoder, Wire, base_name, failed, native, send, to_socket};
use crate::event::{Action, Event, Severity};

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.2.0";

/// The OCSF encoder.
#[derive(Debug, Default)]
pub struct Ocsf;

impl Encoder for Ocsf {
    fn name(&self) -> &'static str {
        "ocsf"
    }

    fn encode_wire(&mut self, wire: &Wire<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        super::write_line(out, &Out::of(wire.event, &wire.native))
    }
}

/// An OCSF class: its uid and name, and its category's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub uid: u32,
    pub name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
}

pub const FILE_SYSTEM_ACTIVITY: Class = Class {
    uid: 1001,
    name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};
pub const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};

/// OCSF's "Other" activity: the name is the source's own.
const OTHER: u32 = 99;

/// The class and activity (id, name) of a record.
pub fn class_of(event: &Event) -> (Class, u32, &'static str) {
    use Action::*;
    let fs = FILE_SYSTEM_ACTIVITY;
    match event.action {
        Open | OpenSummary => (fs, 14, "Open"),
        // A map is how safetensors and llama.cpp read weights.
        Read | Mmap => (fs, 2, "Read"),
        Close => (fs, OTHER, "Close"),
        Copy => (fs, OTHER, "Copy"),
        Create => (fs, 1, "Create"),
        WriteOpen | Truncate => (fs, 3, "Update"),
        Unlink => (fs, 4, "Delete"),
        Rename => (fs, 5, "Rename"),
        SetAttributes => (fs, 6, "Set Attributes"),
        Link => (fs, OTHER, "Link"),
        Exec => (PROCESS_ACTIVITY, 1, "Launch"),
        Exit => (PROCESS_ACTIVITY, 2, "Terminate"),
        MemoryRead => (PROCESS_ACTIVITY, OTHER, "Memory Read"),
        Send if to_socket(event) && is_connect(event) => (NETWORK_ACTIVITY, 1, "Open"),
        Send if to_socket(event) => (NETWORK_ACTIVITY, 6, "Traffic"),
        Send => (fs, OTHER, "Send"),
        Detection | Alert | WouldDeny | WouldKill | Denied | Killed => {
            (DETECTION_FINDING, 1, "Create")
        }
        SensorStart => (APPLICATION_LIFECYCLE, 3, "Start"),
        SensorStop => (APPLICATION_LIFECYCLE, 4, "Stop"),
        Heartbeat => (APPLICATION_LIFECYCLE, OTHER, "Heartbeat"),
        PolicyLoaded => (APPLICATION_LIFECYCLE, OTHER, "Policy Loaded"),
        PolicyRejected => (APPLICATION_LIFECYCLE, OTHER, "Policy Rejected"),
    }
}

fn is_connect(event: &Event) -> bool {
    use crate::event::SendSyscall::{Connect, IoUringConnect};
    send(event).is_some_and(|s| matches!(s.syscall, Connect | IoUringConnect))
}

fn send_destination(event: &Event) -> Option<&crate::event::Destination> {
    send(event).map(|s| &s.destination)
}

/// OCSF's `severity_id` and its label.
pub fn severity(severity: Severity) -> (u32, &'static str) {
    match severity {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// Encodes one event as an OCSF object (for tests and tools; the encoder
/// writes the same without building a value).
pub fn record(event: &Event) -> Result<Value, EncodeError> {
    serde_json::to_value(Out::of(event, &native::wire(event))).map_err(EncodeError::Json)
}

// --- the OCSF wire structs, borrowing from the event and its native wire
// form (typed and borrowed: no map is built per record) ---

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Out<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u64,
    type_name: String,
    severity_id: u32,
    severity: &'static str,
    time: i64,
    status_id: u32,
    status: &'static str,
    metadata: Metadata<'a>,
    device: Device<'a>,
    actor: Option<Actor<'a>>,
    process: Option<Proc<'a>>,
    exit_code: Option<i64>,
    file: Option<OcsfFile<'a>>,
    evidences: Option<[Evidence<'a>; 1]>,
    resources: Option<[Resource<'a>; 1]>,
    finding_info: Option<FindingInfo<'a>>,
    action_id: Option<u32>,
    action: Option<&'static str>,
    disposition_id: Option<u32>,
    disposition: Option<&'static str>,
    src_endpoint: Option<Endpoint<'a>>,
    dst_endpoint: Option<Endpoint<'a>>,
    connection_info: Option<ConnectionInfo>,
    traffic: Option<Traffic>,
    app: Option<Product>,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

const PRODUCT: Product = Product {
    name: "weightwarden",
    vendor_name: "weightwarden",
    version: env!("CARGO_PKG_VERSION"),
};

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: Product,
    log_name: &'static str,
    uid: Option<&'a str>,
    sequence: Option<u64>,
    event_code: Action,
    /// Nanoseconds, which `time` (milliseconds) drops.
    original_time: &'a str,
    profiles: Option<[&'static str; 1]>,
}

#[derive(Serialize)]
struct Device<'a> {
    hostname: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Actor<'a> {
    process: Proc<'a>,
    user: Option<User>,
}

#[derive(Serialize)]
struct User {
    uid: String,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Proc<'a> {
    pid: u32,
    tid: Option<u32>,
    name: Option<&'a str>,
    cmd_line: Option<String>,
    file: Option<Executable<'a>>,
    user: Option<User>,
    created_time: Option<i64>,
    parent_process: Option<Box<Proc<'a>>>,
    container: Option<Container<'a>>,
    lineage: Option<Vec<&'a str>>,
}

#[derive(Serialize)]
struct Executable<'a> {
    name: &'a str,
    path: &'a str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Container<'a> {
    uid: &'a str,
    runtime: Option<&'a str>,
    pod_uuid: Option<&'a str>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct OcsfFile<'a> {
    name: std::borrow::Cow<'a, str>,
    path: Option<&'a str>,
    parent_folder: Option<&'a str>,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
    /// What identifies the file across names: device and inode.
    uid: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Evidence<'a> {
    actor: Option<Actor<'a>>,
    file: Option<OcsfFile<'a>>,
}

#[derive(Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: Option<&'a str>,
    uid: String,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct FindingInfo<'a> {
    uid: String,
    title: String,
    types: [&'static str; 1],
    analytic: Option<Analytic<'a>>,
    related_events: Option<Vec<Related>>,
}

#[derive(Serialize)]
struct Analytic<'a> {
    name: std::borrow::Cow<'a, str>,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Related {
    uid: String,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Endpoint<'a> {
    hostname: Option<&'a str>,
    ip: Option<String>,
    port: Option<u16>,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct ConnectionInfo {
    direction_id: u32,
    direction: &'static str,
}

#[derive(Serialize)]
struct Traffic {
    bytes_out: u64,
}

/// What OCSF has no attribute for, in the native shape.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct Unmapped<'a> {
    action: Action,
    tier: crate::event::Tier,
    #[serde(flatten)]
    details: native::Details<'a>,
    process: Option<ProcessExtras<'a>>,
    file: Option<FileExtras<'a>>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct ProcessExtras<'a> {
    gid: u32,
    cgroup_id: u64,
    gpu: bool,
    args_truncated: bool,
    exe_escaped: Option<&'a str>,
    args_escaped: Option<&'a [String]>,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize)]
struct FileExtras<'a> {
    dev: &'a str,
    ino: u64,
    path_escaped: Option<&'a str>,
    derived_from: Option<&'a native::WireDerivedFrom>,
}

fn millis(unix_ns: i128) -> i64 {
    i64::try_from(unix_ns.div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

fn executable(exe: Option<&str>) -> Option<Executable<'_>> {
    exe.map(|path| Executable {
        name: base_name(path),
        path,
        type_id: 1,
        kind: "Regular File",
    })
}

fn user(uid: u32) -> Option<User> {
    Some(User {
        uid: uid.to_string(),
    })
}

/// The process as OCSF describes it, from its native form and model.
fn process<'a>(p: &'a native::WireProcess<'a>, model: Option<&crate::event::Process>) -> Proc<'a> {
    let words: Vec<&str> = p.args.iter().map(|a| a.as_ref()).collect();
    Proc {
        pid: p.pid,
        tid: Some(p.tid),
        name: Some(&p.comm),
        cmd_line: (!words.is_empty()).then(|| words.join(" ")),
        file: executable(p.exe.as_deref()),
        user: user(p.uid),
        created_time: model.and_then(|m| m.start_time).map(|t| millis(t.unix_ns)),
        parent_process: Some(Box::new(parent(p))),
        container: p.container_id.as_deref().map(|uid| Container {
            uid,
            runtime: p.container_runtime.as_deref(),
            pod_uuid: p.pod_uid.as_deref(),
        }),
        lineage: Some(
            p.ancestors
                .iter()
                .map(|a| a.exe.as_deref().unwrap_or(&a.comm))
                .collect(),
        ),
    }
}

/// The parent: its pid, and its name and executable when the record's
/// ancestry has them.
fn parent<'a>(p: &'a native::WireProcess<'a>) -> Proc<'a> {
    let first = p.ancestors.first().filter(|a| a.pid == p.ppid);
    Proc {
        pid: p.ppid,
        tid: None,
        name: first.map(|a| a.comm.as_ref()),
        cmd_line: None,
        file: first.and_then(|a| executable(a.exe.as_deref())),
        user: None,
        created_time: None,
        parent_process: None,
        container: None,
        lineage: None,
    }
}

fn file<'a>(f: &'a native::WireFile<'a>) -> OcsfFile<'a> {
    let path = f.path.as_deref();
    OcsfFile {
        name: match path {
            Some(path) => base_name(path).into(),
            None => format!("inode {}", f.ino).into(),
        },
        path,
        parent_folder: path
            .and_then(|p| p.rsplit_once('/'))
            .map(|(dir, _)| if dir.is_empty() { "/" } else { dir }),
        type_id: 1,
        kind: "Regular File",
        size: Some(f.size),
        uid: Some(format!("{}:{}", f.dev, f.ino)),
    }
}

/// A send's destination as the file acted on.
fn destination_file(d: &crate::event::Destination) -> OcsfFile<'_> {
    use crate::event::DestinationKind::*;
    let (type_id, kind, word) = match d.kind {
        File => (1, "Regular File", "file"),
        Pipe => (6, "Named Pipe", "pipe"),
        Socket => (5, "Local Socket", "socket"),
        Other => (99, "Other", "other"),
    };
    let path = d.path.as_ref().and_then(|p| p.as_str());
    OcsfFile {
        name: match path {
            Some(path) => base_name(path).into(),
            None => format!("{word}:[{}]", d.ino).into(),
        },
        path,
        parent_folder: None,
        type_id,
        kind,
        size: None,
        uid: None,
    }
}

/// `127.0.0.1:8080` or `[::1]:443` as an endpoint; anything else (a unix
/// socket) by name.
fn endpoint(peer: Option<&str>) -> Endpoint<'_> {
    let none = Endpoint {
        hostname: None,
        ip: None,
        port: None,
        name: None,
    };
    match peer.map(|p| (p, p.parse::<std::net::SocketAddr>())) {
        Some((_, Ok(addr))) => Endpoint {
            ip: Some(addr.ip().to_string()),
            port: Some(addr.port()),
            ..none
        },
        Some((peer, Err(_))) => Endpoint {
            name: Some(peer),
            ..none
        },
        None => Endpoint {
            name: Some("unknown"),
            ..none
        },
    }
}

impl<'a> Out<'a> {
    fn of(event: &'a Event, wire: &'a native::Record<'a>) -> Self {
        let (class, activity_id, activity_name) = class_of(event);
        let (severity_id, severity_name) = severity(event.severity);
        let (status_id, status) = status(event);
        let model = event.process.as_ref();
        let actor = wire.process.as_ref().map(|p| Actor {
            process: process(p, model),
            user: user(p.uid),
        });
        let ocsf_file = wire.file.as_ref().map(file);
        let mut out = Out {
            class_uid: class.uid,
            class_name: class.name,
            category_uid: class.category_uid,
            category_name: class.category_name,
            activity_id,
            activity_name,
            type_uid: u64::from(class.uid) * 100 + u64::from(activity_id),
            type_name: format!("{}: {activity_name}", class.name),
            severity_id,
            severity: severity_name,
            time: millis(event.time.unix_ns),
            status_id,
            status,
            metadata: Metadata {
                version: OCSF_VERSION,
                product: PRODUCT,
                log_name: native::SCHEMA,
                uid: wire.id.as_deref(),
                sequence: wire.seq,
                event_code: event.action,
                original_time: &wire.time,
                profiles: None,
            },
            device: Device {
                hostname: &event.host,
                type_id: 1,
                kind: "Server",
            },
            actor: None,
            process: None,
            exit_code: None,
            file: None,
            evidences: None,
            resources: None,
            finding_info: None,
            action_id: None,
            action: None,
            disposition_id: None,
            disposition: None,
            src_endpoint: None,
            dst_endpoint: None,
            connection_info: None,
            traffic: None,
            app: None,
            unmapped: Unmapped {
                action: event.action,
                tier: event.tier,
                details: wire.details(),
                process: wire.process.as_ref().map(|p| ProcessExtras {
                    gid: p.gid,
                    cgroup_id: p.cgroup_id,
                    gpu: p.gpu,
                    args_truncated: p.args_truncated,
                    exe_escaped: p.exe_escaped.as_deref(),
                    args_escaped: p.args_escaped.as_deref(),
                }),
                file: wire.file.as_ref().map(|f| FileExtras {
                    dev: &f.dev,
                    ino: f.ino,
                    path_escaped: f.path_escaped.as_deref(),
                    derived_from: f.derived_from.as_ref(),
                }),
            },
        };
        match class {
            c if c == PROCESS_ACTIVITY && event.action == Action::MemoryRead => {
                out.process = event.target.as_ref().map(|t| Proc {
                    pid: t.pid,
                    tid: None,
                    name: Some(&t.comm),
                    cmd_line: None,
                    file: t.exe.as_ref().and_then(|e| executable(e.as_str())),
                    user: None,
                    created_time: None,
                    parent_process: None,
                    container: None,
                    lineage: None,
                });
                out.actor = actor;
            }
            c if c == PROCESS_ACTIVITY => {
                // The process launched or ended; its parent acted.
                if let Some(p) = wire.process.as_ref() {
                    out.process = Some(process(p, model));
                    out.actor = Some(Actor {
                        process: parent(p),
                        user: user(p.uid),
                    });
                }
                // A death by a signal is 128 + the signal, as a shell says.
                out.exit_code = event.exit.and_then(|x| {
                    x.code()
                        .map(i64::from)
                        .or_else(|| x.signal().map(|s| 128 + i64::from(s)))
                });
            }
            c if c == DETECTION_FINDING => {
                out.resources = ocsf_file.as_ref().map(|f| {
                    [Resource {
                        kind: "file",
                        name: f.path,
                        uid: f.uid.clone().unwrap_or_default(),
                    }]
                });
                out.evidences = Some([Evidence {
                    actor,
                    file: ocsf_file,
                }]);
                out.finding(event, wire);
            }
            c if c == NETWORK_ACTIVITY => {
                // `actor` and `device` are the host profile's here.
                out.metadata.profiles = Some(["host"]);
                out.actor = actor;
                let destination = send_destination(event);
                out.src_endpoint = Some(Endpoint {
                    hostname: Some(&event.host),
                    ip: None,
                    port: None,
                    name: None,
                });
                out.dst_endpoint = Some(endpoint(destination.and_then(|d| d.peer.as_deref())));
                out.connection_info = Some(ConnectionInfo {
                    direction_id: 2,
                    direction: "Outbound",
                });
                out.traffic = send(event).map(|s| Traffic { bytes_out: s.bytes });
            }
            c if c == APPLICATION_LIFECYCLE => {
                // The class has no `device` of its own: the host profile's.
                out.metadata.profiles = Some(["host"]);
                out.app = Some(PRODUCT);
                out.actor = actor;
            }
            _ => {
                out.actor = actor;
                // A send to a pipe or a file acts on its destination.
                out.file = ocsf_file.or_else(|| send_destination(event).map(destination_file));
            }
        }
        out
    }

    /// `finding_info`, and what was done about it (the security-control
    /// profile's attributes).
    fn finding(&mut self, event: &'a Event, wire: &'a native::Record<'a>) {
        let types = [event.action.name()];
        let (title, analytic) = match (&event.detection, &event.policy) {
            (Some(d), _) => (
                d.summary.clone(),
                Some(Analytic {
                    name: d.id.as_str().into(),
                    type_id: 1,
                    kind: "Rule",
                }),
            ),
            (None, Some(crate::event::PolicyInfo::Verdict(v))) => {
                let rule = match &v.rule_name {
                    Some(name) => std::borrow::Cow::Borrowed(name.as_str()),
                    None => std::borrow::Cow::Owned(format!("default of {}", v.weight_set)),
                };
                (
                    format!("policy {}: {rule}", types[0]),
                    Some(Analytic {
                        name: rule,
                        type_id: 1,
                        kind: "Rule",
                    }),
                )
            }
            _ => (types[0].to_owned(), None),
        };
        self.finding_info = Some(FindingInfo {
            uid: wire
                .id
                .clone()
                .unwrap_or_else(|| format!("{}-{}", event.host, event.time.unix_ns)),
            title,
            types,
            analytic,
            related_events: event.detection.as_ref().map(|d| {
                d.refs
                    .iter()
                    .map(|r| Related { uid: r.to_string() })
                    .collect()
            }),
        });
        let (action_id, action, disposition_id, disposition) = match event.action {
            Action::Denied | Action::Killed => (2, "Denied", 2, "Blocked"),
            Action::Alert => (1, "Allowed", 19, "Alert"),
            _ => (1, "Allowed", 15, "Detected"),
        };
        self.metadata.profiles = Some(["security_control"]);
        self.action_id = Some(action_id);
        self.action = Some(action);
        self.disposition_id = Some(disposition_id);
        self.disposition = Some(disposition);
    }
}

/// Whether the access went ahead: a refused or killed one failed.
fn status(event: &Event) -> (u32, &'static str) {
    if failed(event) {
        (2, "Failure")
    } else {
        (1, "Success")
    }
}

#[cfg(test)]
mod tests;
