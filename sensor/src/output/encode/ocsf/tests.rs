use serde_json::{Value, json};

use super::*;
use crate::{
    decide::policy::{Mode, Operation, PolicyAction},
    event::{
        AccessDetail, Destination, DestinationKind, Detection, DetectionId, PolicyInfo,
        PolicyVerdict, RecordId, SendDetail, SendSyscall, SyscallAbi,
    },
    output::encode::native::tests::{base, file, golden_events, process},
};

fn encode(event: &Event) -> Value {
    let mut out = Vec::new();
    Ocsf.encode(event, &mut out).expect("encode");
    assert_eq!(out.last(), Some(&b'\n'), "one record per line");
    serde_json::from_slice(&out).expect("json")
}

fn with_id(mut event: Event, seq: u64) -> Event {
    event.id = Some(RecordId { run: 0xabc, seq });
    event
}

fn class(v: &Value) -> (u64, u64, u64) {
    (
        v["class_uid"].as_u64().expect("class_uid"),
        v["activity_id"].as_u64().expect("activity_id"),
        v["type_uid"].as_u64().expect("type_uid"),
    )
}

#[test]
fn every_record_has_the_base_attributes_and_a_computed_type() {
    for (n, event) in golden_events().into_iter().enumerate() {
        let event = with_id(event, n as u64 + 1);
        let v = encode(&event);
        let (class_uid, activity, type_uid) = class(&v);
        assert_eq!(type_uid, class_uid * 100 + activity, "{v}");
        assert_eq!(v["category_uid"], json!(class_uid / 1000), "{v}");
        assert!(v["severity_id"].is_u64() && v["time"].is_i64(), "{v}");
        let meta = &v["metadata"];
        assert_eq!(meta["version"], "1.2.0");
        assert_eq!(meta["product"]["name"], "weightwarden");
        assert_eq!(meta["product"]["vendor_name"], "weightwarden");
        assert_eq!(meta["product"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(meta["uid"], json!(format!("0000000000000abc-{}", n + 1)));
        assert_eq!(meta["sequence"], json!(n + 1));
        assert_eq!(v["device"]["hostname"], "gpu-7");
        // `time` is the native time's milliseconds.
        assert_eq!(v["time"], json!(1_795_627_802_418_i64));
        assert_eq!(meta["original_time"], "2026-11-25T17:30:02.418230114Z");
    }
}

#[test]
fn a_file_access_is_file_system_activity_with_actor_and_file() {
    let mut open = base(Action::Open, Some(process()));
    open.file = Some(file(Some("/models/llama/model.safetensors")));
    open.access = Some(crate::event::Access {
        abi: SyscallAbi::Native,
        detail: AccessDetail::Open { fd: 3, flags: 0 },
    });
    let v = encode(&open);
    assert_eq!(class(&v), (1001, 14, 100114));
    assert_eq!(v["activity_name"], "Open");
    assert_eq!(v["status_id"], 1);
    let f = &v["file"];
    assert_eq!(f["name"], "model.safetensors");
    assert_eq!(f["path"], "/models/llama/model.safetensors");
    assert_eq!(f["parent_folder"], "/models/llama");
    assert_eq!(f["type_id"], 1);
    assert_eq!(f["size"], 67_108_864);
    assert_eq!(f["uid"], "254:3:1835011");
    let p = &v["actor"]["process"];
    assert_eq!(p["pid"], 48211);
    assert_eq!(p["tid"], 48213);
    assert_eq!(p["name"], "python3");
    assert_eq!(p["cmd_line"], "python3 -c load(\"m\")");
    assert_eq!(p["file"]["path"], "/usr/bin/python3.11");
    assert_eq!(p["file"]["name"], "python3.11");
    assert_eq!(p["user"]["uid"], "1000");
    assert_eq!(p["created_time"], json!(1_795_627_802_301_i64));
    assert_eq!(p["parent_process"]["pid"], 48190);
    assert_eq!(p["parent_process"]["name"], "bash");
    assert_eq!(p["container"]["uid"], "0123456789ab");
    assert_eq!(p["container"]["runtime"], "containerd");
    assert_eq!(p["lineage"], json!(["/usr/bin/bash", "systemd"]));
    assert_eq!(v["actor"]["user"]["uid"], "1000");
    // What OCSF has no attribute for, in the native shape.
    let u = &v["unmapped"];
    assert_eq!(u["action"], "open");
    assert_eq!(u["access"]["fd"], 3);
    assert_eq!(u["process"]["gid"], 1001);
    assert_eq!(u["process"]["gpu"], true);
    assert_eq!(u["file"]["dev"], "254:3");
    assert_eq!(u["file"]["ino"], 1_835_011);
}

#[test]
fn activities_follow_the_mapping_table() {
    let cases = [
        (Action::Read, 1001, 2),
        (Action::Mmap, 1001, 2),
        (Action::Close, 1001, 99),
        (Action::Create, 1001, 1),
        (Action::WriteOpen, 1001, 3),
        (Action::Truncate, 1001, 3),
        (Action::Unlink, 1001, 4),
        (Action::Rename, 1001, 5),
        (Action::SetAttributes, 1001, 6),
        (Action::Link, 1001, 99),
        (Action::Exec, 1007, 1),
        (Action::Exit, 1007, 2),
        (Action::MemoryRead, 1007, 99),
        (Action::Detection, 2004, 1),
        (Action::Denied, 2004, 1),
        (Action::Killed, 2004, 1),
        (Action::WouldDeny, 2004, 1),
        (Action::Alert, 2004, 1),
        (Action::SensorStart, 6002, 3),
        (Action::SensorStop, 6002, 4),
        (Action::Heartbeat, 6002, 99),
        (Action::PolicyLoaded, 6002, 99),
    ];
    for (action, class_uid, activity) in cases {
        let (c, a, _) = class_of(&base(action, Some(process())));
        assert_eq!((c.uid, a), (class_uid, activity), "{action:?}");
    }
}

#[test]
fn exec_and_exit_are_process_activity_with_the_parent_as_actor() {
    let v = encode(&base(Action::Exec, Some(process())));
    assert_eq!(class(&v), (1007, 1, 100701));
    assert_eq!(v["process"]["pid"], 48211);
    assert_eq!(v["actor"]["process"]["pid"], 48190);
    assert_eq!(v["actor"]["process"]["file"]["path"], "/usr/bin/bash");
    let mut exit = base(Action::Exit, Some(process()));
    exit.exit = Some(crate::event::Exit { wait_status: 9 });
    let v = encode(&exit);
    assert_eq!(class(&v), (1007, 2, 100702));
    assert_eq!(v["exit_code"], 137, "SIGKILL");
    assert_eq!(v["unmapped"]["exit"]["signal"], 9);
}

#[test]
fn a_denied_open_is_a_blocked_detection_finding_naming_the_rule() {
    let mut denied = with_id(base(Action::Denied, Some(process())), 7);
    denied.severity = Severity::High;
    denied.file = Some(file(Some("/models/llama/model.safetensors")));
    denied.policy = Some(PolicyInfo::Verdict(PolicyVerdict {
        sha256: "ab".repeat(32),
        mode: Mode::Enforce,
        verdict: PolicyAction::Deny,
        operation: Operation::Open,
        rule: Some(2),
        rule_name: Some("no shells".into()),
        weight_set: "llama".into(),
        mechanism: "fanotify".into(),
        unjudged: false,
    }));
    let v = encode(&denied);
    assert_eq!(class(&v), (2004, 1, 200401));
    assert_eq!(
        (v["severity_id"].clone(), v["severity"].clone()),
        (json!(4), json!("High"))
    );
    assert_eq!(v["status_id"], 2);
    assert_eq!(
        (v["action_id"].clone(), v["disposition_id"].clone()),
        (json!(2), json!(2))
    );
    let info = &v["finding_info"];
    assert_eq!(info["uid"], "0000000000000abc-7");
    assert_eq!(info["title"], "policy denied: no shells");
    assert_eq!(info["analytic"]["name"], "no shells");
    assert_eq!(v["metadata"]["profiles"], json!(["security_control"]));
    assert_eq!(info["types"], json!(["denied"]));
    let evidence = &v["evidences"][0];
    assert_eq!(evidence["file"]["path"], "/models/llama/model.safetensors");
    assert_eq!(evidence["actor"]["process"]["pid"], 48211);
    assert_eq!(v["resources"][0]["uid"], "254:3:1835011");
    assert_eq!(v["unmapped"]["policy"]["weight_set"], "llama");
    assert!(
        v.get("file").is_none(),
        "a finding carries its file as evidence"
    );
}

#[test]
fn a_detection_names_its_id_summary_and_the_records_it_was_built_from() {
    let mut d = with_id(base(Action::Detection, Some(process())), 9);
    d.severity = Severity::Critical;
    let mut detection = Detection::new(DetectionId::BulkRead, "python3 read most of llama".into());
    detection.refs = vec![RecordId { run: 0xabc, seq: 3 }];
    d.detection = Some(detection);
    let v = encode(&d);
    assert_eq!(v["severity_id"], 5);
    let info = &v["finding_info"];
    assert_eq!(info["title"], "python3 read most of llama");
    assert_eq!(info["analytic"]["name"], "bulk_read");
    assert_eq!(
        info["related_events"],
        json!([{ "uid": "0000000000000abc-3" }])
    );
    assert_eq!(v["disposition"], "Detected");
    assert_eq!(v["unmapped"]["detection"]["id"], "bulk_read");
}

fn send(kind: DestinationKind, syscall: SendSyscall, peer: Option<&str>) -> Event {
    let mut e = base(Action::Send, Some(process()));
    e.access = Some(crate::event::Access {
        abi: SyscallAbi::Native,
        detail: AccessDetail::Send(SendDetail {
            fd: 5,
            syscall,
            bytes: 4096,
            calls: 2,
            destination: Destination {
                kind,
                dev: 0,
                ino: 77,
                path: None,
                peer: peer.map(str::to_owned),
            },
        }),
    });
    e
}

#[test]
fn a_send_to_a_socket_is_outbound_network_activity() {
    let v = encode(&send(
        DestinationKind::Socket,
        SendSyscall::Sendto,
        Some("10.1.2.3:443"),
    ));
    assert_eq!(class(&v), (4001, 6, 400106));
    assert_eq!(v["dst_endpoint"], json!({ "ip": "10.1.2.3", "port": 443 }));
    assert_eq!(v["src_endpoint"]["hostname"], "gpu-7");
    assert_eq!(v["traffic"]["bytes_out"], 4096);
    assert_eq!(v["connection_info"]["direction_id"], 2);
    let v = encode(&send(
        DestinationKind::Socket,
        SendSyscall::Connect,
        Some("[::1]:8080"),
    ));
    assert_eq!(class(&v), (4001, 1, 400101));
    assert_eq!(v["dst_endpoint"]["ip"], "::1");
    // A pipe is no network: the destination is the file acted on.
    let v = encode(&send(DestinationKind::Pipe, SendSyscall::Write, None));
    assert_eq!(class(&v), (1001, 99, 100199));
    assert_eq!(v["file"]["name"], "pipe:[77]");
    assert_eq!(v["file"]["type_id"], 6);
}

#[test]
fn sensor_records_are_the_application_s_lifecycle() {
    let events = golden_events();
    let start = events
        .iter()
        .find(|e| e.action == Action::SensorStart)
        .expect("start");
    let v = encode(start);
    assert_eq!(class(&v), (6002, 3, 600203));
    assert_eq!(v["app"]["name"], "weightwarden");
    assert!(v["unmapped"]["sensor"].is_object(), "{v}");
}

#[test]
#[ignore = "a measurement, not a test: cargo test --release -- --ignored encode_speed --nocapture"]
fn encode_speed() {
    let events: Vec<Event> = golden_events()
        .into_iter()
        .filter(|e| e.sensor.is_none())
        .collect();
    let mut formats: Vec<(&str, Box<dyn Encoder>)> = vec![
        ("native", Box::new(crate::output::encode::native::Native)),
        ("ocsf", Box::new(Ocsf)),
        ("ecs", Box::new(crate::output::encode::ecs::Ecs)),
    ];
    for round in 0..2 {
        for (name, encoder) in &mut formats {
            let _ = round;
            if std::env::var("ENCODING").is_ok_and(|only| only != *name) {
                continue;
            }
            let mut out = Vec::with_capacity(4096);
            let began = std::time::Instant::now();
            let n = 200_000;
            for i in 0..n {
                out.clear();
                encoder
                    .encode(&events[i % events.len()], &mut out)
                    .expect("encode");
            }
            let per = began.elapsed().as_secs_f64() / n as f64 * 1e6;
            eprintln!("{name}: {per:.2} us/record ({} bytes)", out.len());
        }
    }
}
