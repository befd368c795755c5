//! `weightwarden baseline` writes the SHA-256 of every watched file, and
//! `run` with `detect.baseline` raises `integrity_mismatch` for a file
//! changed or removed since (checked at start), and for a file written
//! while it runs (checked again when the writer closes it).

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command, time::Duration};

use sensor::event::{Action, DetectionId, Event, Severity};
use tests::{SensorProcess, write_file};

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn baseline(args: &[&std::ffi::OsStr]) -> std::process::Output {
    tests::output_within(
        Command::new(tests::binary()).arg("baseline").args(args),
        Duration::from_secs(60),
    )
}

fn mismatches(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| {
            e.action == Action::Detection
                && e.detection.as_ref().unwrap().id == DetectionId::IntegrityMismatch
        })
        .collect()
}

fn of_path<'a>(found: &[&'a Event], path: &Path) -> &'a Event {
    let hits: Vec<_> = found.iter().filter(|e| tests::path(e) == path).collect();
    assert_eq!(hits.len(), 1, "{}: {found:#?}", path.display());
    hits[0]
}

#[test]
fn changed_and_missing_files_are_integrity_mismatches() {
    let root = tempfile::tempdir().unwrap();
    let [kept, changed, removed, live] = [
        "kept.safetensors",
        "changed.gguf",
        "removed.bin",
        "live.safetensors",
    ]
    .map(|n| root.path().join(n));
    for f in [&kept, &changed, &removed, &live] {
        write_file(f, 3 << 20);
    }
    std::fs::write(root.path().join("notes.txt"), b"not a weight file").unwrap();
    let state = tempfile::tempdir().unwrap();
    let manifest = state.path().join("baseline.json");

    let out = baseline(&[
        "--watch".as_ref(),
        root.path().as_os_str(),
        "--output".as_ref(),
        manifest.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(written["schema"], "weightwarden-baseline/1");
    let files = written["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{written:#}");
    for entry in files {
        let path = Path::new(entry["path"].as_str().unwrap());
        assert_eq!(entry["sha256"], sha256sum(path), "{}", path.display());
        assert_eq!(entry["size"], 3 << 20);
        assert_eq!(entry["ino"], tests::identity(path).1);
    }

    let original = sha256sum(&changed);
    let dd = |file: &Path| {
        let out = Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", file.display()))
            .args(["bs=4096", "count=1", "seek=10", "conv=notrunc"])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    dd(&changed);
    std::fs::remove_file(&removed).unwrap();
    let config = format!("[detect]\nbaseline = \"{}\"\n", manifest.display());
    let sensor = SensorProcess::start_with_config(&[root.path()], &[], &config);
    // The start-up pass has reported both before the live write's check.
    sensor.wait_for("the start-up mismatches", Duration::from_secs(30), |r| {
        r["detection"]["id"] == "integrity_mismatch"
            && r["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("removed.bin"))
    });
    let before_live = sha256sum(&live);
    dd(&live);
    let after_live = sha256sum(&live);
    sensor.wait_for("the live write's mismatch", Duration::from_secs(30), |r| {
        r["detection"]["id"] == "integrity_mismatch"
            && r["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("live.safetensors"))
    });
    // A rename over a baselined file is checked when its record comes.
    let evil = root.path().join("evil.tmp");
    std::fs::write(&evil, b"not the model").unwrap();
    assert!(
        Command::new("mv")
            .arg(&evil)
            .arg(&kept)
            .status()
            .unwrap()
            .success()
    );
    sensor.wait_for("the rename's mismatch", Duration::from_secs(30), |r| {
        r["detection"]["id"] == "integrity_mismatch"
            && r["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("kept.safetensors"))
    });
    let (_, events) = sensor.stop_events();
    let found = mismatches(&events);
    assert_eq!(found.len(), 4, "{found:#?}");
    let k = of_path(&found, &kept).detection.as_ref().unwrap();
    assert_eq!(k.sha256, Some(sha256sum(&kept)));

    let c = of_path(&found, &changed);
    let d = c.detection.as_ref().unwrap();
    assert_eq!(c.severity, Severity::Critical);
    assert_eq!(d.expected_sha256.as_deref(), Some(original.as_str()));
    assert_eq!(d.sha256, Some(sha256sum(&changed)));
    assert_eq!(d.matched.as_deref(), Some("sha256"));
    assert!(c.process.is_none(), "the agent's own check");

    let r = of_path(&found, &removed).detection.as_ref().unwrap();
    assert_eq!(
        (r.matched.as_deref(), r.sha256.as_ref()),
        (Some("missing"), None)
    );

    let l = of_path(&found, &live).detection.as_ref().unwrap();
    assert_eq!(l.expected_sha256, Some(before_live));
    assert_eq!(l.sha256, Some(after_live));
    // Every file was checked at start; each changed one raised one.
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(
        stop.counter("detect", "integrity_checked"),
        6,
        "4 at start, 1 after the write, 1 after the rename"
    );
}

#[test]
fn a_bad_manifest_stops_run_and_baseline_refuses_bad_roots() {
    let root = tempfile::tempdir().unwrap();
    write_file(&root.path().join("m.gguf"), 4096);
    let state = tempfile::tempdir().unwrap();
    let manifest = state.path().join("baseline.json");
    std::fs::write(
        &manifest,
        b"{\"schema\": \"weightwarden-baseline/1\", \"files\": [",
    )
    .unwrap();
    let config = state.path().join("weightwarden.toml");
    std::fs::write(
        &config,
        format!("[detect]\nbaseline = \"{}\"\n", manifest.display()),
    )
    .unwrap();
    let out = tests::output_within(
        Command::new(tests::binary())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--watch")
            .arg(root.path()),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&manifest.display().to_string())
            && stderr.contains("weightwarden baseline"),
        "{stderr}"
    );

    let out = baseline(&[
        "--watch".as_ref(),
        state.path().join("absent").as_os_str(),
        "--output".as_ref(),
        manifest.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
