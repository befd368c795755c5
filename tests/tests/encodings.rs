//! One agent, three outputs: the native JSON lines, OCSF and ECS, record
//! for record. Real processes read, copy and send a weight file under an
//! audit policy; every record appears in every encoding with the same id
//! and sequence number, in the class and fields docs/outputs.md maps it
//! to, and the OCSF output validates against the OCSF 1.2 models of the
//! `ocsf-pydantic` package (installed by `cargo xtask setup`).

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;
use tests::{SensorProcess, write_file};

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The OCSF class and activity docs/outputs.md gives each action.
fn ocsf_class(native: &Value) -> (u64, u64) {
    let socket = native["access"]["destination"]["type"] == "socket";
    match native["action"].as_str().unwrap() {
        "open" => (1001, 14),
        "read" | "mmap" => (1001, 2),
        "close" | "copy" => (1001, 99),
        "send" if socket && native["access"]["send_syscall"] == "connect" => (4001, 1),
        "send" if socket => (4001, 6),
        "send" => (1001, 99),
        "exec" => (1007, 1),
        "exit" => (1007, 2),
        "detection" | "would_deny" | "would_kill" | "alert" | "denied" | "killed" => (2004, 1),
        "sensor_start" => (6002, 3),
        "sensor_stop" => (6002, 4),
        "heartbeat" | "policy_loaded" => (6002, 99),
        other => panic!("no class in the test's table for {other}"),
    }
}

fn validator() -> (PathBuf, PathBuf) {
    let python = Path::new(env!("CARGO_TARGET_TMPDIR")).join("validators-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup`, which installs the OCSF models",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ocsf_validate.py");
    (python, script)
}

#[test]
fn every_record_is_written_in_all_three_encodings() {
    let (python, script) = validator();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let out = tempfile::tempdir().unwrap();
    let ocsf = out.path().join("ocsf.jsonl");
    let ecs = out.path().join("ecs.jsonl");
    let policy = out.path().join("policy.toml");
    let cat = fs::canonicalize("/usr/bin/cat").unwrap();
    fs::write(
        &policy,
        tests::policy_allowing("audit", models.path(), "the server", &cat, ""),
    )
    .unwrap();
    let ocsf_output = format!("jsonl:{}?format=ocsf", ocsf.display());
    let ecs_output = format!("jsonl:{}?format=ecs", ecs.display());
    let sensor = SensorProcess::start(
        &[models.path()],
        &[
            "--output",
            &ocsf_output,
            "--output",
            &ecs_output,
            "--policy",
            policy.to_str().unwrap(),
        ],
    );

    // Allowed: an exec, open, read, close and exit.
    let status = Command::new(&cat)
        .arg(&weights)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let cp = Command::new("cp")
        .arg(&weights)
        .arg(out.path().join("stolen.bin"))
        .status()
        .unwrap();
    assert!(cp.success());
    // Reads, then sends to a socket: egress.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sender = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import socket\ndata = open({:?}, 'rb').read()\n\
             s = socket.create_connection(('127.0.0.1', {port}))\ns.sendall(data)\ns.close()",
            weights.display()
        ))
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let mut received = Vec::new();
    conn.read_to_end(&mut received).unwrap();
    assert_eq!(received.len(), 1 << 20);
    let pid = sender.id();
    assert!(sender.wait_with_output().unwrap().status.success());
    sensor.wait_exit(pid);

    let (status, native) = sensor.stop();
    assert!(status.success());
    let ocsf = lines(&ocsf);
    let ecs = lines(&ecs);
    assert_eq!(ocsf.len(), native.len(), "OCSF records");
    assert_eq!(ecs.len(), native.len(), "ECS records");
    let mut seen = std::collections::BTreeSet::new();
    for ((n, o), e) in native.iter().zip(&ocsf).zip(&ecs) {
        let action = n["action"].as_str().unwrap();
        seen.insert(action.to_owned());
        // The same record: id and sequence number.
        assert_eq!(o["metadata"]["uid"], n["id"], "{o}");
        assert_eq!(o["metadata"]["sequence"], n["seq"], "{o}");
        assert_eq!(e["event"]["id"], n["id"], "{e}");
        assert_eq!(e["event"]["sequence"], n["seq"], "{e}");
        assert_eq!(o["metadata"]["event_code"], n["action"]);
        assert_eq!(e["event"]["action"], n["action"]);
        assert_eq!(e["@timestamp"], n["time"]);
        assert_eq!(o["metadata"]["original_time"], n["time"]);
        let (class, activity) = ocsf_class(n);
        assert_eq!(
            (o["class_uid"].as_u64(), o["activity_id"].as_u64()),
            (Some(class), Some(activity)),
            "{action}: {o}"
        );
        assert_eq!(o["type_uid"].as_u64(), Some(class * 100 + activity));
        if let Some(p) = n.get("process") {
            let actor = match class {
                1007 => &o["process"],
                2004 => &o["evidences"][0]["actor"]["process"],
                _ => &o["actor"]["process"],
            };
            assert_eq!(actor["pid"], p["pid"], "{action}: {o}");
            assert_eq!(e["process"]["pid"], p["pid"], "{action}: {e}");
            assert_eq!(e["process"]["executable"], p["exe"], "{action}: {e}");
            assert_eq!(e["user"]["id"], p["uid"].to_string(), "{action}: {e}");
            assert_eq!(e["process"]["parent"]["pid"], p["ppid"]);
        }
        if let Some(f) = n.get("file") {
            let file = if class == 2004 {
                &o["evidences"][0]["file"]
            } else {
                &o["file"]
            };
            assert_eq!(file["path"], f["path"], "{action}: {o}");
            assert_eq!(
                file["uid"],
                format!("{}:{}", f["dev"].as_str().unwrap(), f["ino"]),
            );
            assert_eq!(e["file"]["path"], f["path"], "{action}: {e}");
            assert_eq!(e["file"]["inode"], f["ino"].to_string());
        }
        if action == "send" && n["access"]["destination"]["type"] == "socket" {
            assert_eq!(o["dst_endpoint"]["port"], port, "{o}");
            assert_eq!(e["destination"]["port"], port, "{e}");
        }
        if let Some(d) = n.get("detection") {
            assert_eq!(o["finding_info"]["analytic"]["name"], d["id"]);
            assert_eq!(e["rule"]["id"], d["id"]);
            assert_eq!(e["event"]["kind"], "alert");
        }
        if action == "would_deny" {
            assert_eq!(o["disposition"], "Detected", "{o}");
            assert_eq!(e["event"]["type"], serde_json::json!(["allowed"]));
            assert_eq!(e["rule"]["id"], "default:llama");
        }
    }
    for action in [
        "sensor_start",
        "policy_loaded",
        "exec",
        "open",
        "read",
        "close",
        "copy",
        "send",
        "would_deny",
        "detection",
        "exit",
        "sensor_stop",
    ] {
        assert!(
            seen.contains(action),
            "no {action} record to check: {seen:?}"
        );
    }

    // The published OCSF models accept every record.
    let result = Command::new(&python)
        .arg(&script)
        .stdin(fs::File::open(out.path().join("ocsf.jsonl")).unwrap())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "the OCSF validator refused a record: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let counts: Value = serde_json::from_slice(&result.stdout).unwrap();
    for class in ["1001", "1007", "2004", "4001", "6002"] {
        assert!(
            counts[class].as_u64() > Some(0),
            "no class {class}: {counts}"
        );
    }
}

#[test]
fn an_unknown_format_stops_the_start_with_exit_2_naming_it() {
    let out = Command::new(tests::binary())
        .args(["run", "--output", "stdout?format=cef", "--store", "none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown format \"cef\"") && stderr.contains("native, ocsf and ecs"),
        "{stderr}"
    );
}
