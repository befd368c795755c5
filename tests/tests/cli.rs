//! Bad input stops the agent before anything starts, with an error that
//! names the problem and the fix; `doctor` tells the truth about the host.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use tests::binary;

fn weightwarden(args: &[&str]) -> Output {
    Command::new(binary()).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn not_root_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(binary())
        .args(["run", "--watch"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must run as root"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[kernel]\nring_bufer_bytes = 4096\n").unwrap();
    let out = weightwarden(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("ring_bufer_bytes"), "{err}");
    assert!(err.contains(config.to_str().unwrap()), "{err}");
}

#[test]
fn missing_or_unreadable_watch_directory_is_named() {
    let out = weightwarden(&["run", "--watch", "/nonexistent/models"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/models"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_output_and_ring_buffer_flags_are_refused() {
    let out = weightwarden(&["run", "--output", "kafka:x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("kafka:x"), "{}", stderr(&out));
    let out = weightwarden(&["run", "--ring-buffer-bytes", "5000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("power of two"), "{}", stderr(&out));
}

#[test]
fn doctor_reports_the_tracepoint_tier_and_probes_hooks() {
    let out = weightwarden(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["can_run"], true);
    assert_eq!(report["tier"], "tracepoint");
    let status = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
    };
    assert_eq!(status("hook: tracepoint"), "ok");
    assert_eq!(status("hook: raw tracepoint"), "ok");
    assert_eq!(status("tracepoint tier"), "ok");
    assert_eq!(status("BTF"), "ok");
    // Each other hook type was really tried: ok or missing, never skipped.
    for hook in ["hook: fentry", "hook: BPF LSM", "hook: kprobe"] {
        assert_ne!(status(hook), "skipped", "{hook}");
    }
}
