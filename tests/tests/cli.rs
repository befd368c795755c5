//! Bad input stops the agent before anything starts, with an error that
//! names the problem and the fix; `doctor` tells the truth about the host.

#![allow(clippy::unwrap_used)]

use std::{
    process::{Command, Output},
    time::Duration,
};

use tests::{binary, output_within};

/// Every CLI run here must finish on its own: bad input stops the agent
/// before it starts, and doctor exits. A hang fails the test.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn weightwarden(args: &[&str]) -> Output {
    output_within(Command::new(binary()).args(args), CLI_TIMEOUT)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn not_root_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(binary())
            .args(["run", "--watch"])
            .arg(dir.path()),
        CLI_TIMEOUT,
    );
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
    let check = |name: &str| tests::doctor_check(&report, name);
    let status = |name: &str| check(name)["status"].as_str().unwrap().to_string();
    assert_eq!(status("hook: tracepoint"), "ok");
    assert_eq!(status("hook: raw tracepoint"), "ok");
    assert_eq!(status("tracepoint tier"), "ok");
    assert_eq!(status("BTF"), "ok");
    // Each other hook type was really tried: ok having loaded it, or
    // missing with the kernel's refusal and a fix; never skipped.
    for hook in ["hook: fentry", "hook: BPF LSM", "hook: kprobe"] {
        let c = check(hook);
        let detail = c["detail"].as_str().unwrap_or("");
        match c["status"].as_str() {
            Some("ok") => assert!(detail.starts_with("loaded"), "{c}"),
            Some("missing") => {
                assert!(detail.contains("refused"), "{c}");
                assert!(c["fix"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
            }
            _ => panic!("{hook} was not tried: {c}"),
        }
    }
    // Where the host itself says what it has, the report must agree.
    // kprobes: tracefs has kprobe_events exactly when CONFIG_KPROBES=y.
    let kprobes = std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
    assert_eq!(
        status("hook: kprobe"),
        if kprobes { "ok" } else { "missing" },
        "{:#}",
        check("hook: kprobe")
    );
    // The LSM boot list, from securityfs.
    if let Ok(lsms) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        let bpf = lsms.trim().split(',').any(|l| l == "bpf");
        let c = check("BPF LSM in boot list");
        assert_eq!(c["status"] == "ok", bpf, "{lsms}: {c}");
    }
    // Without the boot list entry no BPF LSM program can run.
    if status("BPF LSM in boot list") != "ok" {
        assert_eq!(status("hook: BPF LSM"), "missing");
    }
}

/// `policy check` on a usable policy, a shadowed one and broken ones: the
/// explanation on stdout, located findings on stderr, exit 0 or 1.
#[test]
fn policy_check_explains_good_shadowed_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models/llama");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("a.safetensors"), b"w").unwrap();
    let cat = std::fs::canonicalize("/usr/bin/cat").unwrap();
    let policy = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let stdout = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let base = format!(
        "mode = \"enforce\"\n\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n\n\
         [[rules]]\nweights = [\"llama\"]\nexe = [\"{}\"]\naction = \"allow\"\n",
        models.display(),
        cat.display()
    );

    let good = policy("good.toml", base.clone());
    let out = weightwarden(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("weight set \"llama\": 1 file(s)"), "{text}");
    assert!(
        text.contains("rule 1 (line 7): allow open/read/mmap by exe"),
        "{text}"
    );
    assert!(
        text.contains("otherwise: deny (no rule for write)"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("0 error(s), 0 warning(s)"),
        "{}",
        stderr(&out)
    );

    let shadowed = policy(
        "shadowed.toml",
        format!(
            "{base}\n[[rules]]\nweights = [\"*\"]\nexe = [\"{}\"]\noperations = [\"read\"]\naction = \"deny\"\n",
            cat.display()
        ),
    );
    let path = shadowed.to_str().unwrap();
    let out = weightwarden(&["policy", "check", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{path}:12:1: warning: rule 2 is shadowed: rule 1 (line 7)"
        )),
        "{}",
        stderr(&out)
    );
    let out = weightwarden(&["policy", "check", "--deny-warnings", path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let broken = policy(
        "broken.toml",
        base.replace("weights = [\"llama\"]", "weights = [\"lama\"]")
            .replace(&cat.display().to_string(), "/no/such/server"),
    );
    let path = broken.to_str().unwrap();
    let out = weightwarden(&["policy", "check", path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{path}:8:12: error: rule 1 names weight set \"lama\", which is not defined (defined: llama)")),
        "{err}"
    );
    assert!(
        err.contains("/no/such/server") && err.contains("matches no process"),
        "{err}"
    );
    assert!(
        stdout(&out).is_empty(),
        "no explanation of an unusable policy"
    );

    let syntax = policy(
        "syntax.toml",
        base.replace("action = \"allow\"", "acton = \"allow\""),
    );
    let path = syntax.to_str().unwrap();
    let out = weightwarden(&["policy", "check", path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{path}:10:1: the policy file is not valid")),
        "{err}"
    );
    assert!(err.contains("acton"), "{err}");
}

/// An executable on btrfs (whose `st_dev` is not the superblock's device
/// the kernel sees) is named by the kernel's identity: `policy check` has
/// nothing to warn about (enforce_routes.rs proves the kernel recognises
/// it at exec).
#[test]
fn policy_check_takes_an_executable_on_btrfs_without_warning() {
    tests::require_root();
    let fs = tests::LoopFs::mount(&["mkfs.btrfs", "-q"], 128);
    let exe = fs.dir.path().join("server");
    std::fs::copy("/usr/bin/cat", &exe).unwrap();
    let models = tempfile::tempdir().unwrap();
    let policy = models.path().join("policy.toml");
    std::fs::write(
        &policy,
        tests::policy_allowing("enforce", models.path(), "on btrfs", &exe, ""),
    )
    .unwrap();
    let path = policy.to_str().unwrap();
    let out = weightwarden(&["policy", "check", "--deny-warnings", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("btrfs"), "{}", stderr(&out));
}
