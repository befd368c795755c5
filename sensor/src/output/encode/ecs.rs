//! Elastic Common Schema 8: each record with ECS's `event.*`, `file.*`,
//! `process.*`, `user.*`, `host.*`, `container.*`, `rule.*` and
//! `destination.*` fields (docs/outputs.md holds the mapping table), so
//! Elastic's and Splunk's ECS content applies as is. What ECS has no field
//! for stays under `weightwarden.*`, in the native encoding's shape; the
//! native id and seq are `event.id` and `event.sequence`.

use serde_json::{Map, Value, json};

use super::{EncodeError, Encoder, native};
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

    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        serde_json::to_writer(&mut *out, &record(event)?).map_err(EncodeError::Json)?;
        out.push(b'\n');
        Ok(())
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
        Send if is_socket(event) => ("event", &["network"], &["connection"]),
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

fn send(event: &Event) -> Option<&crate::event::SendDetail> {
    match event.access.as_ref().map(|a| &a.detail) {
        Some(crate::event::AccessDetail::Send(s)) => Some(s),
        _ => None,
    }
}

fn is_socket(event: &Event) -> bool {
    send(event).is_some_and(|s| s.destination.kind == crate::event::DestinationKind::Socket)
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
    match event.action {
        Action::Denied | Action::Killed | Action::PolicyRejected => "failure",
        Action::Mmap => match event.access.as_ref().map(|a| &a.detail) {
            Some(crate::event::AccessDetail::Mmap { result, .. }) if *result < 0 => "failure",
            _ => "success",
        },
        _ => "success",
    }
}

fn get<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Value {
    m.get(key).unwrap_or(&Value::Null)
}

/// Inserts `value` unless it is null.
fn put(m: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        m.insert(key.into(), value);
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Encodes one event as an ECS document.
pub fn record(event: &Event) -> Result<Value, EncodeError> {
    let mut native = native::object(event)?;
    let (kind, category, types) = classify(event);
    let mut out = Map::new();
    out.insert("@timestamp".into(), get(&native, "time").clone());
    out.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    let mut ev = Map::new();
    ev.insert("kind".into(), json!(kind));
    ev.insert("category".into(), json!(category));
    ev.insert("type".into(), json!(types));
    ev.insert("action".into(), get(&native, "action").clone());
    ev.insert("outcome".into(), json!(outcome(event)));
    ev.insert("severity".into(), json!(severity(event.severity)));
    put(&mut ev, "id", get(&native, "id").clone());
    put(&mut ev, "sequence", get(&native, "seq").clone());
    ev.insert("module".into(), json!("weightwarden"));
    ev.insert("dataset".into(), json!("weightwarden.audit"));
    ev.insert("provider".into(), json!("weightwarden"));
    out.insert("event".into(), Value::Object(ev));
    out.insert(
        "host".into(),
        json!({ "hostname": event.host, "name": event.host }),
    );
    out.insert(
        "agent".into(),
        json!({ "type": "weightwarden", "version": env!("CARGO_PKG_VERSION") }),
    );
    let mut extra = Map::new();
    extra.insert("schema".into(), json!(native::SCHEMA));
    if let Some(Value::Object(p)) = native.remove("process") {
        process_fields(&p, &native, &mut out, &mut extra);
    }
    if let Some(Value::Object(f)) = native.remove("file") {
        out.insert("file".into(), file(&f));
        let mut rest = Map::new();
        for key in ["path_escaped", "derived_from"] {
            if let Some(v) = f.get(key) {
                rest.insert(key.into(), v.clone());
            }
        }
        if !rest.is_empty() {
            extra.insert("file".into(), Value::Object(rest));
        }
    } else if let Some(s) = send(event).filter(|_| !is_socket(event)) {
        // A send to a file or a pipe: the destination is the file.
        let d = &s.destination;
        let mut f = Map::new();
        if let Some(path) = &d.path {
            let path = path.to_lossy();
            f.insert("path".into(), json!(path));
            f.insert("name".into(), json!(base_name(&path)));
        }
        f.insert("inode".into(), json!(d.ino.to_string()));
        f.insert(
            "type".into(),
            json!(match d.kind {
                crate::event::DestinationKind::Pipe => "pipe",
                _ => "file",
            }),
        );
        out.insert("file".into(), Value::Object(f));
    }
    if let Some(s) = send(event).filter(|_| is_socket(event)) {
        let mut dest = Map::new();
        if let Some(peer) = &s.destination.peer {
            dest.insert("address".into(), json!(peer));
            if let Ok(addr) = peer.parse::<std::net::SocketAddr>() {
                dest.insert("ip".into(), json!(addr.ip().to_string()));
                dest.insert("port".into(), json!(addr.port()));
            }
        }
        out.insert("destination".into(), Value::Object(dest));
        out.insert(
            "network".into(),
            json!({ "direction": "egress", "bytes": s.bytes }),
        );
        out.insert("source".into(), json!({ "bytes": s.bytes }));
    }
    if let Some(rule) = rule(&native) {
        out.insert("rule".into(), rule);
    }
    if let Some(summary) = native
        .get("detection")
        .and_then(|d| d.get("summary"))
        .filter(|s| !s.is_null())
    {
        out.insert("message".into(), summary.clone());
    }
    for key in [
        "tier",
        "access",
        "exit",
        "sensor",
        "policy",
        "target",
        "detection",
    ] {
        if let Some(v) = native.remove(key) {
            extra.insert(key.into(), v);
        }
    }
    out.insert("weightwarden".into(), Value::Object(extra));
    Ok(Value::Object(out))
}

/// `process.*` (with `parent`), `user.*`, `group.*`, `container.*`; the
/// rest of the native process under `weightwarden.process`.
fn process_fields(
    p: &Map<String, Value>,
    native: &Map<String, Value>,
    out: &mut Map<String, Value>,
    extra: &mut Map<String, Value>,
) {
    let mut process = Map::new();
    process.insert("pid".into(), get(p, "pid").clone());
    process.insert("thread".into(), json!({ "id": get(p, "tid") }));
    process.insert("name".into(), get(p, "comm").clone());
    put(&mut process, "executable", get(p, "exe").clone());
    if let Some(args) = p.get("args").and_then(Value::as_array) {
        process.insert("args".into(), json!(args));
        process.insert("args_count".into(), json!(args.len()));
        let words: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        if !words.is_empty() {
            process.insert("command_line".into(), json!(words.join(" ")));
        }
    }
    put(&mut process, "start", get(p, "start_time").clone());
    let mut parent = Map::new();
    parent.insert("pid".into(), get(p, "ppid").clone());
    let first = p
        .get("ancestors")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .filter(|a| a.get("pid") == p.get("ppid"));
    if let Some(a) = first {
        parent.insert("name".into(), get(a, "comm").clone());
        put(&mut parent, "executable", get(a, "exe").clone());
    }
    process.insert("parent".into(), Value::Object(parent));
    if let Some(exit) = native.get("exit").and_then(Value::as_object) {
        let code = exit.get("code").and_then(Value::as_i64).or_else(|| {
            // Killed by a signal: 128 + the signal, as a shell reports it.
            exit.get("signal").and_then(Value::as_i64).map(|s| 128 + s)
        });
        put(&mut process, "exit_code", json!(code));
        process.insert("end".into(), get(native, "time").clone());
    }
    let uid = get(p, "uid").as_u64().map(|u| u.to_string());
    let gid = get(p, "gid").as_u64().map(|g| g.to_string());
    process.insert("user".into(), json!({ "id": uid }));
    process.insert("group".into(), json!({ "id": gid }));
    out.insert("process".into(), Value::Object(process));
    out.insert("user".into(), json!({ "id": uid }));
    out.insert("group".into(), json!({ "id": gid }));
    if let Some(id) = p.get("container_id").and_then(Value::as_str) {
        let mut c = Map::new();
        c.insert("id".into(), json!(id));
        put(&mut c, "runtime", get(p, "container_runtime").clone());
        out.insert("container".into(), Value::Object(c));
    }
    let mut rest = Map::new();
    for key in [
        "cgroup_id",
        "gpu",
        "args_truncated",
        "pod_uid",
        "ancestors",
        "exe_escaped",
        "args_escaped",
    ] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            rest.insert(key.into(), v.clone());
        }
    }
    extra.insert("process".into(), Value::Object(rest));
}

/// ECS's file fields from the native file.
fn file(f: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    if let Some(path) = f.get("path").and_then(Value::as_str) {
        out.insert("path".into(), json!(path));
        let name = base_name(path);
        out.insert("name".into(), json!(name));
        if let Some((dir, _)) = path.rsplit_once('/') {
            out.insert(
                "directory".into(),
                json!(if dir.is_empty() { "/" } else { dir }),
            );
        }
        if let Some((_, ext)) = name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
            out.insert("extension".into(), json!(ext));
        }
    }
    put(&mut out, "device", get(f, "dev").clone());
    if let Some(ino) = f.get("ino").and_then(Value::as_u64) {
        out.insert("inode".into(), json!(ino.to_string()));
    }
    out.insert("size".into(), get(f, "size").clone());
    out.insert("type".into(), json!("file"));
    Value::Object(out)
}

/// `rule.*`: the detection that matched, or the policy rule that decided.
fn rule(native: &Map<String, Value>) -> Option<Value> {
    if let Some(d) = native.get("detection").and_then(Value::as_object) {
        return Some(json!({
            "id": get(d, "id"),
            "name": get(d, "id"),
            "description": get(d, "summary"),
            "ruleset": "weightwarden detections",
            "category": "model weight theft",
        }));
    }
    let p = native.get("policy").and_then(Value::as_object)?;
    // A verdict names its weight set; a loaded policy does not decide.
    let set = p.get("weight_set").and_then(Value::as_str)?;
    let id = match p.get("rule").and_then(Value::as_u64) {
        Some(n) => n.to_string(),
        None => format!("default:{set}"),
    };
    let name = p
        .get("rule_name")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| json!(format!("default of weight set {set}")));
    Some(json!({
        "id": id,
        "name": name,
        "ruleset": format!("weightwarden policy (weight set {set})"),
        "version": get(p, "sha256"),
    }))
}

#[cfg(test)]
mod tests;
