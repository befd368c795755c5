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

use serde_json::{Map, Value, json};

use super::{EncodeError, Encoder, native};
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

    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        serde_json::to_writer(&mut *out, &record(event)?).map_err(EncodeError::Json)?;
        out.push(b'\n');
        Ok(())
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

fn send_destination(event: &Event) -> Option<&crate::event::Destination> {
    match event.access.as_ref().map(|a| &a.detail) {
        Some(crate::event::AccessDetail::Send(s)) => Some(&s.destination),
        _ => None,
    }
}

fn to_socket(event: &Event) -> bool {
    send_destination(event).is_some_and(|d| d.kind == crate::event::DestinationKind::Socket)
}

fn is_connect(event: &Event) -> bool {
    use crate::event::SendSyscall::{Connect, IoUringConnect};
    matches!(
        event.access.as_ref().map(|a| &a.detail),
        Some(crate::event::AccessDetail::Send(s)) if matches!(s.syscall, Connect | IoUringConnect)
    )
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

/// Encodes one event as an OCSF object.
pub fn record(event: &Event) -> Result<Value, EncodeError> {
    let mut native = native::object(event)?;
    let (class, activity_id, activity_name) = class_of(event);
    let (severity_id, severity_name) = severity(event.severity);
    let time_ms = i64::try_from(event.time.unix_ns.div_euclid(1_000_000)).unwrap_or(i64::MAX);
    let mut out = Map::new();
    out.insert("class_uid".into(), json!(class.uid));
    out.insert("class_name".into(), json!(class.name));
    out.insert("category_uid".into(), json!(class.category_uid));
    out.insert("category_name".into(), json!(class.category_name));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert(
        "type_uid".into(),
        json!(u64::from(class.uid) * 100 + u64::from(activity_id)),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{}: {activity_name}", class.name)),
    );
    out.insert("severity_id".into(), json!(severity_id));
    out.insert("severity".into(), json!(severity_name));
    out.insert("time".into(), json!(time_ms));
    let (status_id, status) = status(event);
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status));
    out.insert("metadata".into(), metadata(&native));
    out.insert(
        "device".into(),
        json!({ "hostname": event.host, "type_id": 1, "type": "Server" }),
    );
    let process = native.remove("process").and_then(object_of);
    let file = native.remove("file").and_then(object_of);
    let mut unmapped = Map::new();
    let actor = process.as_ref().map(|p| {
        unmapped.insert("process".into(), process_extras(p));
        json!({ "process": ocsf_process(p), "user": user(p) })
    });
    let file = file.map(|f| {
        let (ocsf_file, extras) = ocsf_file(&f);
        unmapped.insert("file".into(), extras);
        ocsf_file
    });
    match class {
        c if c == PROCESS_ACTIVITY => {
            let p = process.as_ref();
            if event.action == Action::MemoryRead {
                if let Some(target) = native.get("target").and_then(Value::as_object) {
                    out.insert("process".into(), target_process(target));
                }
                out.insert("actor".into(), actor.unwrap_or(Value::Null));
            } else {
                // The process launched or ended; its parent acted.
                if let Some(p) = p {
                    out.insert("process".into(), ocsf_process(p));
                    out.insert(
                        "actor".into(),
                        json!({ "process": parent_process(p), "user": user(p) }),
                    );
                }
                if let Some(code) = exit_code(&native) {
                    out.insert("exit_code".into(), json!(code));
                }
            }
        }
        c if c == DETECTION_FINDING => {
            let mut evidence = Map::new();
            if let Some(actor) = actor {
                evidence.insert("actor".into(), actor);
            }
            if let Some(f) = file {
                out.insert(
                    "resources".into(),
                    json!([{ "type": "file", "name": get(&f, "path"), "uid": get(&f, "uid") }]),
                );
                evidence.insert("file".into(), Value::Object(f));
            }
            out.insert("evidences".into(), json!([evidence]));
            finding(event, &native, &mut out);
        }
        c if c == NETWORK_ACTIVITY => {
            // `actor` and `device` are the host profile's here.
            add_profile(&mut out, "host");
            out.insert("actor".into(), actor.unwrap_or(Value::Null));
            network(event, &native, &mut out);
        }
        c if c == APPLICATION_LIFECYCLE => {
            out.insert("app".into(), product());
            // The class has no `device` of its own: the host profile's.
            add_profile(&mut out, "host");
            if let Some(actor) = actor {
                out.insert("actor".into(), actor);
            }
        }
        _ => {
            out.insert("actor".into(), actor.unwrap_or(Value::Null));
            // A send to a pipe or a file acts on its destination.
            let file = file
                .map(Value::Object)
                .or_else(|| send_destination(event).map(destination_file));
            out.insert("file".into(), file.unwrap_or(Value::Null));
        }
    }
    // The rest of the native record, in its own shape.
    for key in [
        "action",
        "tier",
        "access",
        "exit",
        "sensor",
        "policy",
        "target",
        "detection",
    ] {
        if let Some(v) = native.remove(key) {
            unmapped.insert(key.into(), v);
        }
    }
    out.insert("unmapped".into(), Value::Object(unmapped));
    Ok(Value::Object(out))
}

/// Names `profile` in `metadata.profiles`: the attributes it adds are in
/// the record.
fn add_profile(out: &mut Map<String, Value>, profile: &str) {
    if let Some(Value::Object(m)) = out.get_mut("metadata") {
        m.insert("profiles".into(), json!([profile]));
    }
}

fn object_of(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Whether the access went ahead: a refused or killed one failed.
fn status(event: &Event) -> (u32, &'static str) {
    match event.action {
        Action::Denied | Action::Killed => (2, "Failure"),
        Action::Mmap => match event.access.as_ref().map(|a| &a.detail) {
            Some(crate::event::AccessDetail::Mmap { result, .. }) if *result < 0 => (2, "Failure"),
            _ => (1, "Success"),
        },
        _ => (1, "Success"),
    }
}

fn product() -> Value {
    json!({
        "name": "weightwarden",
        "vendor_name": "weightwarden",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

fn metadata(native: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), json!(OCSF_VERSION));
    m.insert("product".into(), product());
    m.insert("log_name".into(), json!(native::SCHEMA));
    if let Some(id) = native.get("id") {
        m.insert("uid".into(), id.clone());
    }
    if let Some(seq) = native.get("seq") {
        m.insert("sequence".into(), seq.clone());
    }
    if let Some(action) = native.get("action") {
        m.insert("event_code".into(), action.clone());
    }
    // Nanoseconds, which `time` (milliseconds) drops.
    if let Some(time) = native.get("time") {
        m.insert("original_time".into(), time.clone());
    }
    Value::Object(m)
}

fn get<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Value {
    m.get(key).unwrap_or(&Value::Null)
}

fn user(p: &Map<String, Value>) -> Value {
    match p.get("uid").and_then(Value::as_u64) {
        Some(uid) => json!({ "uid": uid.to_string() }),
        None => Value::Null,
    }
}

/// `/usr/bin/cat` → `cat`.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn executable(exe: &Value) -> Value {
    match exe.as_str() {
        Some(path) => json!({
            "name": base_name(path),
            "path": path,
            "type_id": 1,
            "type": "Regular File",
        }),
        None => Value::Null,
    }
}

/// The native time text as OCSF's milliseconds.
fn millis(time: &Value) -> Value {
    time.as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(Value::Null, |t| {
            json!(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        })
}

fn ocsf_process(p: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("pid".into(), get(p, "pid").clone());
    out.insert("tid".into(), get(p, "tid").clone());
    out.insert("name".into(), get(p, "comm").clone());
    if let Some(args) = p
        .get("args")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        let words: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        out.insert("cmd_line".into(), json!(words.join(" ")));
    }
    let exe = executable(get(p, "exe"));
    if !exe.is_null() {
        out.insert("file".into(), exe);
    }
    out.insert("user".into(), user(p));
    let created = millis(get(p, "start_time"));
    if !created.is_null() {
        out.insert("created_time".into(), created);
    }
    out.insert("parent_process".into(), parent_process(p));
    if let Some(id) = p.get("container_id").and_then(Value::as_str) {
        let mut c = Map::new();
        c.insert("uid".into(), json!(id));
        if let Some(runtime) = p.get("container_runtime").filter(|v| !v.is_null()) {
            c.insert("runtime".into(), runtime.clone());
        }
        if let Some(pod) = p.get("pod_uid").filter(|v| !v.is_null()) {
            c.insert("pod_uuid".into(), pod.clone());
        }
        out.insert("container".into(), Value::Object(c));
    }
    if let Some(ancestors) = p.get("ancestors").and_then(Value::as_array) {
        let lineage: Vec<Value> = ancestors
            .iter()
            .filter_map(Value::as_object)
            .map(|a| match a.get("exe").and_then(Value::as_str) {
                Some(exe) => json!(exe),
                None => get(a, "comm").clone(),
            })
            .collect();
        out.insert("lineage".into(), Value::Array(lineage));
    }
    Value::Object(out)
}

/// The parent: its pid, and its name and executable when the record's
/// ancestry has them.
fn parent_process(p: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("pid".into(), get(p, "ppid").clone());
    let parent = p
        .get("ancestors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .filter(|a| a.get("pid") == p.get("ppid"));
    if let Some(a) = parent {
        out.insert("name".into(), get(a, "comm").clone());
        let exe = executable(get(a, "exe"));
        if !exe.is_null() {
            out.insert("file".into(), exe);
        }
    }
    Value::Object(out)
}

/// The native process fields OCSF has no attribute for.
fn process_extras(p: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for key in [
        "gid",
        "cgroup_id",
        "gpu",
        "args_truncated",
        "exe_escaped",
        "args_escaped",
    ] {
        if let Some(v) = p.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn target_process(t: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("pid".into(), get(t, "pid").clone());
    out.insert("name".into(), get(t, "comm").clone());
    let exe = executable(get(t, "exe"));
    if !exe.is_null() {
        out.insert("file".into(), exe);
    }
    Value::Object(out)
}

fn exit_code(native: &Map<String, Value>) -> Option<i64> {
    let exit = native.get("exit")?.as_object()?;
    // A signal's death is 128 + the signal, as a shell reports it.
    exit.get("code")
        .and_then(Value::as_i64)
        .or_else(|| exit.get("signal").and_then(Value::as_i64).map(|s| 128 + s))
}

/// OCSF's file object from the native one, and what it has no room for.
fn ocsf_file(f: &Map<String, Value>) -> (Map<String, Value>, Value) {
    let mut out = Map::new();
    let path = f.get("path").and_then(Value::as_str);
    let dev = get(f, "dev").as_str().unwrap_or("0:0");
    let ino = get(f, "ino").as_u64().unwrap_or(0);
    let name = match path {
        Some(path) => base_name(path).to_owned(),
        None => format!("inode {ino}"),
    };
    out.insert("name".into(), json!(name));
    if let Some(path) = path {
        out.insert("path".into(), json!(path));
        if let Some((dir, _)) = path.rsplit_once('/') {
            let dir = if dir.is_empty() { "/" } else { dir };
            out.insert("parent_folder".into(), json!(dir));
        }
    }
    out.insert("type_id".into(), json!(1));
    out.insert("type".into(), json!("Regular File"));
    out.insert("size".into(), get(f, "size").clone());
    // What identifies the file across names: device and inode.
    out.insert("uid".into(), json!(format!("{dev}:{ino}")));
    let mut extras = Map::new();
    for key in ["dev", "ino", "path_escaped", "derived_from"] {
        if let Some(v) = f.get(key) {
            extras.insert(key.into(), v.clone());
        }
    }
    (out, Value::Object(extras))
}

/// A send's destination as the file acted on.
fn destination_file(d: &crate::event::Destination) -> Value {
    use crate::event::DestinationKind::*;
    let (type_id, type_name, kind) = match d.kind {
        File => (1, "Regular File", "file"),
        Pipe => (6, "Named Pipe", "pipe"),
        Socket => (5, "Local Socket", "socket"),
        Other => (99, "Other", "other"),
    };
    let path = d.path.as_ref().map(|p| p.to_lossy().into_owned());
    let name = match &path {
        Some(path) => base_name(path).to_owned(),
        None => format!("{kind}:[{}]", d.ino),
    };
    json!({ "name": name, "path": path, "type_id": type_id, "type": type_name })
}

/// `src_endpoint` (this host), `dst_endpoint` (the socket's peer) and the
/// bytes sent.
fn network(event: &Event, native: &Map<String, Value>, out: &mut Map<String, Value>) {
    out.insert("src_endpoint".into(), json!({ "hostname": event.host }));
    let peer = send_destination(event).and_then(|d| d.peer.clone());
    out.insert("dst_endpoint".into(), endpoint(peer.as_deref()));
    out.insert(
        "connection_info".into(),
        json!({ "direction_id": 2, "direction": "Outbound" }),
    );
    let bytes = native
        .get("access")
        .and_then(|a| a.get("bytes"))
        .cloned()
        .unwrap_or(Value::Null);
    out.insert("traffic".into(), json!({ "bytes_out": bytes }));
}

/// `127.0.0.1:8080` or `[::1]:443` as an endpoint; anything else (a unix
/// socket) by name.
fn endpoint(peer: Option<&str>) -> Value {
    let Some(peer) = peer else {
        return json!({ "name": "unknown" });
    };
    match peer.parse::<std::net::SocketAddr>() {
        Ok(addr) => json!({ "ip": addr.ip().to_string(), "port": addr.port() }),
        Err(_) => json!({ "name": peer }),
    }
}

/// `finding_info`, and for policy verdicts what was done about it.
fn finding(event: &Event, native: &Map<String, Value>, out: &mut Map<String, Value>) {
    let uid = native
        .get("id")
        .cloned()
        .unwrap_or_else(|| json!(format!("{}-{}", event.host, event.time.unix_ns)));
    let detection = native.get("detection").and_then(Value::as_object);
    let policy = native.get("policy").and_then(Value::as_object);
    let (title, analytic) = match (detection, policy) {
        (Some(d), _) => (
            get(d, "summary").clone(),
            json!({ "name": get(d, "id"), "type_id": 1, "type": "Rule" }),
        ),
        (None, Some(p)) => {
            let rule = p
                .get("rule_name")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or_else(|| {
                    json!(format!(
                        "default of {}",
                        get(p, "weight_set").as_str().unwrap_or("?")
                    ))
                });
            (
                json!(format!(
                    "policy {}: {}",
                    event_action(event),
                    rule.as_str().unwrap_or("")
                )),
                json!({ "name": rule, "type_id": 1, "type": "Rule" }),
            )
        }
        (None, None) => (json!(event_action(event)), Value::Null),
    };
    let mut info = Map::new();
    info.insert("uid".into(), uid);
    info.insert("title".into(), title);
    info.insert("types".into(), json!([event_action(event)]));
    if !analytic.is_null() {
        info.insert("analytic".into(), analytic);
    }
    if let Some(refs) = detection
        .and_then(|d| d.get("refs"))
        .and_then(Value::as_array)
    {
        let related: Vec<Value> = refs.iter().map(|r| json!({ "uid": r })).collect();
        info.insert("related_events".into(), Value::Array(related));
    }
    out.insert("finding_info".into(), Value::Object(info));
    // What the sensor did.
    let (action_id, action, disposition_id, disposition) = match event.action {
        Action::Denied | Action::Killed => (2, "Denied", 2, "Blocked"),
        Action::Alert => (1, "Allowed", 19, "Alert"),
        _ => (1, "Allowed", 15, "Detected"),
    };
    // The security-control profile's attributes.
    add_profile(out, "security_control");
    out.insert("action_id".into(), json!(action_id));
    out.insert("action".into(), json!(action));
    out.insert("disposition_id".into(), json!(disposition_id));
    out.insert("disposition".into(), json!(disposition));
}

fn event_action(event: &Event) -> String {
    serde_json::to_value(event.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
