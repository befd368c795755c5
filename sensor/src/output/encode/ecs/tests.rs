use serde_json::{Value, json};

use super::*;
use crate::{
    decide::policy::{Mode, Operation, PolicyAction},
    event::{
        Access, AccessDetail, Destination, DestinationKind, Detection, DetectionId, PolicyInfo,
        PolicyVerdict, RecordId, SendDetail, SendSyscall, SyscallAbi,
    },
    output::encode::native::tests::{base, file, golden_events, process},
};

fn encode(event: &Event) -> Value {
    let mut out = Vec::new();
    Ecs.encode(event, &mut out).expect("encode");
    assert_eq!(out.last(), Some(&b'\n'), "one record per line");
    serde_json::from_slice(&out).expect("json")
}

#[test]
fn every_record_has_the_event_fields_and_the_native_id() {
    for (n, mut event) in golden_events().into_iter().enumerate() {
        event.id = Some(RecordId {
            run: 0xabc,
            seq: n as u64 + 1,
        });
        let v = encode(&event);
        assert_eq!(v["@timestamp"], "2026-11-25T17:30:02.418230114Z");
        assert_eq!(v["ecs"]["version"], "8.11.0");
        let e = &v["event"];
        assert_eq!(e["id"], json!(format!("0000000000000abc-{}", n + 1)));
        assert_eq!(e["sequence"], json!(n + 1));
        assert_eq!(e["module"], "weightwarden");
        assert_eq!(e["dataset"], "weightwarden.audit");
        assert!(e["kind"].is_string() && e["category"].is_array() && e["type"].is_array());
        assert_eq!(
            e["action"],
            serde_json::to_value(event.action).expect("action")
        );
        assert_eq!(v["host"]["hostname"], "gpu-7");
        assert_eq!(v["agent"]["type"], "weightwarden");
        assert_eq!(v["weightwarden"]["schema"], "weightwarden/1");
    }
}

#[test]
fn a_file_access_has_file_process_user_and_container() {
    let mut read = base(Action::Read, Some(process()));
    read.file = Some(file(Some("/models/llama/model.safetensors")));
    let v = encode(&read);
    let e = &v["event"];
    assert_eq!(e["kind"], "event");
    assert_eq!(e["category"], json!(["file"]));
    assert_eq!(e["type"], json!(["access"]));
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["severity"], 1);
    let f = &v["file"];
    assert_eq!(f["path"], "/models/llama/model.safetensors");
    assert_eq!(f["name"], "model.safetensors");
    assert_eq!(f["directory"], "/models/llama");
    assert_eq!(f["extension"], "safetensors");
    assert_eq!(f["inode"], "1835011");
    assert_eq!(f["device"], "254:3");
    assert_eq!(f["size"], 67_108_864);
    let p = &v["process"];
    assert_eq!(p["pid"], 48211);
    assert_eq!(p["thread"]["id"], 48213);
    assert_eq!(p["name"], "python3");
    assert_eq!(p["executable"], "/usr/bin/python3.11");
    assert_eq!(p["args"], json!(["python3", "-c", "load(\"m\")"]));
    assert_eq!(p["args_count"], 3);
    assert_eq!(p["command_line"], "python3 -c load(\"m\")");
    assert_eq!(p["start"], "2026-11-25T17:30:02.301554412Z");
    assert_eq!(p["parent"]["pid"], 48190);
    assert_eq!(p["parent"]["name"], "bash");
    assert_eq!(p["parent"]["executable"], "/usr/bin/bash");
    assert_eq!(p["user"]["id"], "1000");
    assert_eq!(v["user"]["id"], "1000");
    assert_eq!(v["group"]["id"], "1001");
    assert_eq!(v["container"]["id"], "0123456789ab");
    assert_eq!(v["container"]["runtime"], "containerd");
    let w = &v["weightwarden"];
    assert_eq!(w["process"]["gpu"], true);
    assert_eq!(
        w["process"]["pod_uid"],
        "1f2e3d4c-0000-1111-2222-333344445555"
    );
    assert_eq!(w["tier"], "tracepoint");
}

#[test]
fn categories_and_types_follow_the_mapping_table() {
    let cases: [(Action, &str, &[&str], &[&str]); 12] = [
        (Action::Open, "event", &["file"], &["access"]),
        (Action::Mmap, "event", &["file"], &["access"]),
        (Action::Create, "event", &["file"], &["creation"]),
        (Action::Truncate, "event", &["file"], &["change"]),
        (Action::Rename, "event", &["file"], &["change"]),
        (Action::Unlink, "event", &["file"], &["deletion"]),
        (Action::Exec, "event", &["process"], &["start"]),
        (Action::Exit, "event", &["process"], &["end"]),
        (
            Action::Detection,
            "alert",
            &["intrusion_detection", "file"],
            &["indicator"],
        ),
        (
            Action::WouldDeny,
            "alert",
            &["intrusion_detection", "file"],
            &["allowed"],
        ),
        (
            Action::Denied,
            "alert",
            &["intrusion_detection", "file"],
            &["denied"],
        ),
        (Action::Heartbeat, "metric", &["host"], &["info"]),
    ];
    for (action, kind, category, types) in cases {
        let got = classify(&base(action, Some(process())));
        assert_eq!(got, (kind, category, types), "{action:?}");
    }
}

#[test]
fn an_exit_has_its_code_and_end() {
    let mut exit = base(Action::Exit, Some(process()));
    exit.exit = Some(crate::event::Exit {
        wait_status: 3 << 8,
    });
    let v = encode(&exit);
    assert_eq!(v["process"]["exit_code"], 3);
    assert_eq!(v["process"]["end"], "2026-11-25T17:30:02.418230114Z");
}

#[test]
fn a_killed_read_is_a_failed_alert_with_the_rule() {
    let mut killed = base(Action::Killed, Some(process()));
    killed.severity = Severity::Critical;
    killed.file = Some(file(Some("/models/x.gguf")));
    killed.policy = Some(PolicyInfo::Verdict(PolicyVerdict {
        sha256: "cd".repeat(32),
        mode: Mode::Enforce,
        verdict: PolicyAction::Kill,
        operation: Operation::Read,
        rule: None,
        rule_name: None,
        weight_set: "gguf".into(),
        mechanism: "bpf_send_signal".into(),
        unjudged: false,
    }));
    let v = encode(&killed);
    assert_eq!(v["event"]["kind"], "alert");
    assert_eq!(v["event"]["outcome"], "failure");
    assert_eq!(v["event"]["severity"], 5);
    let rule = &v["rule"];
    assert_eq!(rule["id"], "default:gguf");
    assert_eq!(rule["name"], "default of weight set gguf");
    assert_eq!(rule["version"], json!("cd".repeat(32)));
    assert_eq!(v["weightwarden"]["policy"]["verdict"], "kill");
}

#[test]
fn a_detection_is_a_rule_and_a_message() {
    let mut d = base(Action::Detection, Some(process()));
    d.detection = Some(Detection::new(
        DetectionId::TransferTool,
        "tar read llama".into(),
    ));
    let v = encode(&d);
    assert_eq!(v["rule"]["id"], "transfer_tool");
    assert_eq!(v["rule"]["description"], "tar read llama");
    assert_eq!(v["message"], "tar read llama");
    assert_eq!(v["weightwarden"]["detection"]["id"], "transfer_tool");
}

#[test]
fn a_send_to_a_socket_is_egress_to_a_destination() {
    let mut e = base(Action::Send, Some(process()));
    e.access = Some(Access {
        abi: SyscallAbi::Native,
        detail: AccessDetail::Send(SendDetail {
            fd: 5,
            syscall: SendSyscall::Sendto,
            bytes: 4096,
            calls: 2,
            destination: Destination {
                kind: DestinationKind::Socket,
                dev: 0,
                ino: 77,
                path: None,
                peer: Some("10.1.2.3:443".into()),
            },
        }),
    });
    let v = encode(&e);
    assert_eq!(v["event"]["category"], json!(["network"]));
    assert_eq!(v["destination"]["ip"], "10.1.2.3");
    assert_eq!(v["destination"]["port"], 443);
    assert_eq!(v["destination"]["address"], "10.1.2.3:443");
    assert_eq!(v["network"]["direction"], "egress");
    assert_eq!(v["source"]["bytes"], 4096);
}
