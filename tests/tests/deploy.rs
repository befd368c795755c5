//! The deployment files hold up: the systemd unit verifies with
//! `systemd-analyze`, the capabilities it grants are enough for the agent
//! to capture and enforce (run under that bounding set, no more), and the
//! agent tells the service manager when capture is live.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{binary, write_file};

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/weightwarden.service")
}

fn unit_text() -> String {
    fs::read_to_string(unit_path()).unwrap()
}

#[test]
fn the_service_unit_verifies_cleanly() {
    // The unit names the installed binary; verify checks it is executable.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("weightwarden.service");
    fs::write(
        &unit,
        unit_text().replace("/usr/local/bin/weightwarden", binary().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A warning (an unknown key) is a failure too.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let text = unit_text();
    for line in ["Type=notify", "Restart=on-failure", "ProtectSystem=strict"] {
        assert!(text.lines().any(|l| l == line), "no {line}");
    }
}

/// The unit's `CapabilityBoundingSet`, as `setpriv --bounding-set` takes it.
fn unit_capabilities() -> String {
    let text = unit_text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| format!("+{}", c.strip_prefix("CAP_").unwrap().to_lowercase()))
        .collect();
    format!("-all,{}", caps.join(","))
}

#[test]
fn the_unit_s_capabilities_are_enough_to_capture_and_enforce() {
    tests::require_root();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 8192);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n",
            models.path().display()
        ),
    )
    .unwrap();
    let mut agent = Command::new("setpriv")
        .arg("--bounding-set")
        .arg(unit_capabilities())
        .arg(binary())
        .args([
            "run",
            "--state-dir",
            "none",
            "--metrics",
            "none",
            "--allow-second-agent",
        ])
        .arg("--store")
        .arg(dir.path().join("audit.db"))
        .arg("--watch")
        .arg(models.path())
        .arg("--policy")
        .arg(&policy)
        .arg("--output")
        .arg(format!("jsonl:{}", out.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tests::wait_live(&mut agent, &out);
    let cat = Command::new("cat").arg(&weights).output().unwrap();
    assert!(!cat.status.success(), "the policy let cat read");
    assert!(String::from_utf8_lossy(&cat.stderr).contains("Operation not permitted"));
    let done = tests::stop_agent(agent);
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{log}");
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    let records = fs::read_to_string(&out).unwrap();
    assert!(records.contains("\"action\":\"denied\""), "{records}");
    assert!(records.contains("\"action\":\"sensor_stop\""));
}

#[test]
fn the_service_manager_hears_ready_once_capture_is_live_and_stopping() {
    tests::require_root();
    let models = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let out = dir.path().join("events.jsonl");
    let listener = UnixDatagram::bind(&socket).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let agent = tests::agent_command(models.path(), &out, &["--allow-second-agent"])
        .env("NOTIFY_SOCKET", &socket)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = listener.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        ready.starts_with("READY=1\nSTATUS=capture is live"),
        "{ready}"
    );
    // Read only now: ready comes after sensor_start is written.
    let records = fs::read_to_string(&out).unwrap();
    assert!(records.contains("\"action\":\"sensor_start\""), "{records}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    let done = agent.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}
