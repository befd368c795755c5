//! One agent per host: a second `run` refuses, naming the first one's
//! pid, unless `--allow-second-agent` says otherwise; the lock goes with
//! the agent that held it.

#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

fn agent(models: &Path, out: &Path, extra: &[&str]) -> Child {
    tests::agent_command(models, out, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(agent: Child) {
    let out = tests::stop_agent(agent);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_second_agent_is_refused_naming_the_first() {
    tests::require_root();
    let models = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name);
    let mut first = agent(models.path(), &out("first.jsonl"), &[]);
    tests::wait_live(&mut first, &out("first.jsonl"));

    let began = Instant::now();
    let second = agent(models.path(), &out("second.jsonl"), &[])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another weightwarden agent (pid {}) is running",
            first.id()
        )),
        "{stderr}"
    );
    assert!(began.elapsed() < Duration::from_secs(20));
    assert!(
        !out("second.jsonl").exists(),
        "the refused agent wrote records"
    );

    // Allowed explicitly: both run.
    let mut beside = agent(
        models.path(),
        &out("beside.jsonl"),
        &["--allow-second-agent"],
    );
    tests::wait_live(&mut beside, &out("beside.jsonl"));
    stop(beside);

    // The lock goes with the agent that held it.
    stop(first);
    let mut next = agent(models.path(), &out("next.jsonl"), &[]);
    tests::wait_live(&mut next, &out("next.jsonl"));
    stop(next);
}
