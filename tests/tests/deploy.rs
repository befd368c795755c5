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

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

fn validators_python() -> PathBuf {
    let python = Path::new(env!("CARGO_TARGET_TMPDIR")).join("validators-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup`, which installs the validators",
        python.display()
    );
    python
}

/// The manifest's documents as JSON (PyYAML, which kubernetes-validate
/// brings).
fn manifest_documents() -> Vec<serde_json::Value> {
    let out = Command::new(validators_python())
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(deploy_file("kubernetes/weightwarden.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_manifest_validates_against_the_kubernetes_schemas() {
    let validate = validators_python().with_file_name("kubernetes-validate");
    let out = Command::new(validate)
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .arg(deploy_file("kubernetes/weightwarden.yaml"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for kind in ["namespace", "serviceaccount", "configmap", "daemonset"] {
        assert!(
            said.contains(&format!("passed for resource {kind}/weightwarden")),
            "{said}"
        );
    }
}

#[test]
fn the_daemonset_carries_a_working_configuration_and_policy() {
    let docs = manifest_documents();
    let by_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap();
    let data = &by_kind("ConfigMap")["data"];
    let dir = tempfile::tempdir().unwrap();
    // The configuration parses and validates as the agent would load it.
    let config_text = data["weightwarden.toml"].as_str().unwrap();
    let config = sensor::config::Config::from_toml_str(config_text, Path::new("configmap"))
        .unwrap_or_else(|e| panic!("{}", sensor::Chain(&e)));
    config
        .validate()
        .unwrap_or_else(|e| panic!("{}", sensor::Chain(&e)));
    // The policy passes `weightwarden policy check`.
    let policy = dir.path().join("policy.toml");
    fs::write(&policy, data["policy.toml"].as_str().unwrap()).unwrap();
    let out = Command::new(binary())
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let pod = &by_kind("DaemonSet")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    // Every path the agent uses is mounted from the host: the policy and
    // configuration, the watch roots, state (spools, store), the lock,
    // bpffs, tracefs, BTF and the cgroup tree.
    let mut wanted: Vec<String> = config
        .watch
        .roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    wanted.extend(
        [
            "/etc/weightwarden",
            "/var/lib/weightwarden",
            "/run/weightwarden",
            "/sys/fs/bpf",
            "/sys/kernel/tracing",
            "/sys/kernel/btf",
            "/sys/fs/cgroup",
            "/home",
        ]
        .map(str::to_owned),
    );
    for path in &wanted {
        assert!(
            mounts.contains(&path.as_str()),
            "{path} is not mounted: {mounts:?}"
        );
    }
    assert_eq!(
        config.policy.as_deref(),
        Some(Path::new("/etc/weightwarden/policy.toml"))
    );
    // A pod replaced leaves its programs pinned in the host's bpffs (the
    // mount above) for the next one.
    assert!(config.kernel.handover);
    assert!(
        config
            .kernel
            .pin_dir(false)
            .is_some_and(|d| d.starts_with("/sys/fs/bpf")),
        "{:?}",
        config.kernel.pin_dir
    );
    assert_eq!(container["args"][2], "/etc/weightwarden/weightwarden.toml");
    // Host processes and the host's name.
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    // The same capabilities as the systemd unit, and no others.
    let mut granted: Vec<String> = container["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    let mut unit: Vec<String> = unit_text()
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    granted.sort();
    unit.sort();
    assert_eq!(granted, unit);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
}

#[test]
fn the_container_file_builds_with_this_projects_toolchains() {
    let text = fs::read_to_string(deploy_file("container/Containerfile")).unwrap();
    // The nightly it pins is the one CI builds the eBPF programs with.
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .unwrap();
    let verbose = String::from_utf8(out.stdout).unwrap();
    let hash = verbose
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .unwrap();
    assert!(
        text.contains(&hash[..9]),
        "the Containerfile does not name nightly {}",
        &hash[..9]
    );
    // And the userspace toolchain of the workspace.
    let cargo =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")).unwrap();
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(
        text.contains(&format!("ARG RUST_VERSION={rust_version}")),
        "{rust_version}"
    );
    // Its build step exists: `cargo xtask setup --build-only`.
    assert!(text.contains("cargo xtask setup --build-only"));
    let help = Command::new("cargo")
        .args(["xtask", "setup", "--help"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--build-only"),
        "{help:?}"
    );
}
