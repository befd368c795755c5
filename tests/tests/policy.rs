//! A policy in audit mode, end to end: real processes read a weight file
//! under `run --policy`, and every access the policy would stop gets its
//! `would_deny` / `alert` record, by executable identity (a hard link of
//! the allowed binary is allowed; a copy is not), while the access itself
//! goes ahead.

#![allow(clippy::unwrap_used)]

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

use sensor::{
    decide::policy::{Mode, Operation, PolicyAction},
    event::{Action, Event, PolicyInfo, Severity},
};
use tests::{SensorProcess, binary, is_by, output_within, write_file};

use tests::verdict as policy_of;

/// Copies `/usr/bin/cat` to `dir/name`, executable.
fn cat_copy(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::copy(fs::canonicalize("/usr/bin/cat").unwrap(), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The SHA-256 of each policy the run loaded, in order.
fn loaded_hashes(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.policy {
            Some(PolicyInfo::Loaded(l)) => Some(l.sha256.clone()),
            _ => None,
        })
        .collect()
}

/// A weight file, a server binary (a copy of `cat`), a hard link of it,
/// another copy, and a policy whose rule 1 allows the server.
struct Host {
    models: tempfile::TempDir,
    weights: std::path::PathBuf,
    bin: tempfile::TempDir,
    server: std::path::PathBuf,
    link: std::path::PathBuf,
    copy: std::path::PathBuf,
    policy: std::path::PathBuf,
}

impl Host {
    /// `mode`, weight set `llama` (default deny), rule 1 allowing the
    /// server, then `more` rules.
    fn new(mode: &str, more: &str) -> Self {
        let models = tempfile::tempdir().unwrap();
        let weights = models.path().join("llama.safetensors");
        write_file(&weights, 8192);
        let bin = tempfile::tempdir().unwrap();
        let server = cat_copy(bin.path(), "server");
        let link = bin.path().join("server-link");
        fs::hard_link(&server, &link).unwrap();
        let copy = cat_copy(bin.path(), "server-copy");
        let policy = bin.path().join("policy.toml");
        fs::write(
            &policy,
            tests::policy_allowing(mode, models.path(), "the server", &server, more),
        )
        .unwrap();
        Self {
            models,
            weights,
            bin,
            server,
            link,
            copy,
            policy,
        }
    }

    fn start(&self) -> SensorProcess {
        SensorProcess::start(
            &[self.models.path()],
            &["--policy", self.policy.to_str().unwrap()],
        )
    }

    /// Runs `exe` on the weight file; its pid and what it printed.
    fn read_with(&self, exe: &Path) -> (u32, std::process::Output) {
        let child = Command::new(exe)
            .arg(&self.weights)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        (pid, child.wait_with_output().unwrap())
    }
}

#[test]
fn audit_mode_records_what_the_policy_would_stop_by_executable_identity() {
    let host = Host::new(
        "audit",
        "\n[[rules]]\nname = \"copies are noticed\"\nweights = [\"*\"]\n\
         exe = [\"COPY\"]\noperations = [\"read\"]\naction = \"alert\"\n",
    );
    let text = fs::read_to_string(&host.policy)
        .unwrap()
        .replace("COPY", host.copy.to_str().unwrap());
    fs::write(&host.policy, text).unwrap();
    let (server, link, copy, policy_file) = (&host.server, &host.link, &host.copy, &host.policy);
    let sensor = host.start();

    // Audit mode stops nothing: every reader gets all the bytes.
    let read_with = |exe: &Path| -> u32 {
        let (pid, out) = host.read_with(exe);
        assert!(out.status.success(), "{} failed", exe.display());
        assert_eq!(
            out.stdout.len(),
            8192,
            "{} did not read it all",
            exe.display()
        );
        pid
    };
    let server_pid = read_with(server);
    let link_pid = read_with(link);
    let copy_pid = read_with(copy);
    let cat_pid = read_with(Path::new("/usr/bin/cat"));
    sensor.wait_exit(cat_pid);
    let (status, events) = sensor.stop_events();
    assert!(status.success());

    let loaded = events
        .iter()
        .position(|e| e.action == Action::PolicyLoaded)
        .expect("policy_loaded");
    assert_eq!(events[0].action, Action::SensorStart);
    assert_eq!(
        events[0]
            .sensor
            .as_ref()
            .and_then(|s| s.enforcement.as_deref()),
        Some("none"),
        "sensor_start names the mechanism: none in audit mode"
    );
    assert_eq!(loaded, 1, "policy_loaded follows sensor_start");
    let Some(PolicyInfo::Loaded(info)) = &events[loaded].policy else {
        panic!("policy_loaded without its policy");
    };
    assert_eq!(
        (info.mode, info.weight_sets, info.rules),
        (Mode::Audit, 1, 2)
    );
    assert_eq!((info.files, info.files_unwatched, info.warnings), (1, 0, 0));
    assert_eq!(
        info.path.as_bytes(),
        policy_file.to_str().unwrap().as_bytes()
    );

    let verdicts = |pid: u32| -> Vec<&Event> {
        events
            .iter()
            .filter(|e| {
                e.policy.is_some()
                    && e.action != Action::PolicyLoaded
                    && e.process.as_ref().is_some_and(|p| p.pid == pid)
            })
            .collect()
    };
    // The allowed binary, and a hard link of it (the same file): nothing.
    assert!(
        verdicts(server_pid).is_empty(),
        "{:?}",
        verdicts(server_pid)
    );
    assert!(verdicts(link_pid).is_empty(), "{:?}", verdicts(link_pid));
    // `cat` itself: its open and its read would be denied by the default.
    let cat = verdicts(cat_pid);
    let ops: Vec<Operation> = cat.iter().map(|e| policy_of(e).operation).collect();
    assert_eq!(ops, [Operation::Open, Operation::Read], "{cat:?}");
    for e in &cat {
        assert_eq!(e.action, Action::WouldDeny);
        assert_eq!(e.severity, Severity::High);
        let v = policy_of(e);
        assert_eq!(
            (
                v.verdict,
                v.rule,
                v.weight_set.as_str(),
                v.mechanism.as_str()
            ),
            (PolicyAction::Deny, None, "llama", "none")
        );
    }
    // Each verdict record follows the access record it judges.
    for verdict in &cat {
        let at = events
            .iter()
            .position(|e| std::ptr::eq(e, *verdict))
            .unwrap();
        let access = &events[at - 1];
        assert!(is_by(access, access.action, cat_pid));
        assert_eq!(access.file, verdict.file);
        assert_eq!(access.access, verdict.access);
    }
    // A copy of the server is another file: its open falls to the default
    // (deny), its read to rule 2 (alert).
    let copy = verdicts(copy_pid);
    assert_eq!(copy.len(), 2, "{copy:?}");
    assert_eq!(
        (
            copy[0].action,
            policy_of(copy[0]).operation,
            policy_of(copy[0]).rule
        ),
        (Action::WouldDeny, Operation::Open, None)
    );
    let alert = policy_of(copy[1]);
    assert_eq!(copy[1].action, Action::Alert);
    assert_eq!(copy[1].severity, Severity::Medium);
    assert_eq!(
        (alert.rule, alert.rule_name.as_deref(), alert.operation),
        (Some(2), Some("copies are noticed"), Operation::Read)
    );
}

#[test]
fn enforce_mode_denies_opens_with_eperm_and_kills_by_rule() {
    use std::os::unix::process::ExitStatusExt;

    let host = Host::new(
        "enforce",
        "\n[[rules]]\nname = \"never this one\"\nweights = [\"llama\"]\nexe = [\"DOOMED\"]\n\
         action = \"kill\"\n",
    );
    let doomed = cat_copy(host.bin.path(), "doomed");
    let text = fs::read_to_string(&host.policy)
        .unwrap()
        .replace("DOOMED", doomed.to_str().unwrap());
    fs::write(&host.policy, text).unwrap();
    let (server, link, copy, weights) = (&host.server, &host.link, &host.copy, &host.weights);
    let sensor = host.start();
    let read_with = |exe: &Path| host.read_with(exe);
    // The allowed binary and a hard link of it read everything.
    for exe in [server, link] {
        let (_, out) = read_with(exe);
        assert!(out.status.success(), "{}: {:?}", exe.display(), out);
        assert_eq!(out.stdout.len(), 8192);
    }
    // cat, and a copy of the allowed binary: EPERM, no byte.
    let mut denied_pids = Vec::new();
    for exe in [Path::new("/usr/bin/cat"), copy.as_path()] {
        let (pid, out) = read_with(exe);
        assert_eq!(out.status.code(), Some(1), "{}", exe.display());
        assert!(out.stdout.is_empty(), "{} got bytes", exe.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "{:?}",
            out
        );
        denied_pids.push(pid);
    }
    // The kill rule: killed before it printed a byte.
    let (doomed_pid, out) = read_with(&doomed);
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert!(out.stdout.is_empty());
    sensor.wait_for_event("the killed record", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed
    });
    let (status, events) = sensor.stop_events();
    assert!(status.success());

    let Some(PolicyInfo::Loaded(info)) = events
        .iter()
        .find(|e| e.action == Action::PolicyLoaded)
        .and_then(|e| e.policy.clone())
    else {
        panic!("no policy_loaded");
    };
    assert_eq!(
        (info.mode, info.mechanism.as_str()),
        (Mode::Enforce, "fanotify+bpf_send_signal")
    );
    assert_eq!(
        events[0]
            .sensor
            .as_ref()
            .and_then(|s| s.enforcement.as_deref()),
        Some("fanotify+bpf_send_signal"),
        "sensor_start names the mechanism"
    );
    for pid in &denied_pids {
        let denied: Vec<&Event> = events
            .iter()
            .filter(|e| {
                e.action == Action::Denied && e.process.as_ref().is_some_and(|p| p.pid == *pid)
            })
            .collect();
        assert_eq!(denied.len(), 1, "{pid}: {denied:?}");
        let v = policy_of(denied[0]);
        assert_eq!(
            (v.verdict, v.rule, v.operation, v.mechanism.as_str()),
            (PolicyAction::Deny, None, Operation::Open, "fanotify")
        );
        assert_eq!(denied[0].severity, Severity::High);
        let file = denied[0].file.as_ref().unwrap();
        assert_eq!(
            file.path.as_ref().map(|p| p.as_bytes().to_vec()),
            Some(weights.to_str().unwrap().as_bytes().to_vec())
        );
        // The open never happened: no open record for it.
        assert!(!events.iter().any(|e| is_by(e, Action::Open, *pid)));
    }
    let killed: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Killed)
        .collect();
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert_eq!(killed[0].process.as_ref().map(|p| p.pid), Some(doomed_pid));
    let v = policy_of(killed[0]);
    assert_eq!(
        (v.verdict, v.rule, v.rule_name.as_deref()),
        (PolicyAction::Kill, Some(2), Some("never this one"))
    );
    // The allowed reads are ordinary records, with no verdict.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.action, Action::WouldDeny | Action::WouldKill))
    );
}

#[test]
fn a_broken_policy_stops_the_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    fs::write(
        &broken,
        "[[rules]]\nweights = [\"nope\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let out = output_within(
        Command::new(binary())
            .args(["run", "--config", "/dev/null", "--watch"])
            .arg(dir.path())
            .arg("--policy")
            .arg(&broken),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:12: error: rule 1 names weight set \"nope\"",
            broken.display()
        )),
        "{err}"
    );
}

/// Reload: an edit of the file and SIGHUP each swap the policy whole; a
/// malformed file is rejected and the policy in force keeps deciding;
/// opens running through the swaps are decided under one policy or the
/// other, never neither.
#[test]
fn reload_swaps_the_policy_whole_and_keeps_the_old_one_on_errors() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let bin = tempfile::tempdir().unwrap();
    let server = cat_copy(bin.path(), "server");
    let cat = fs::canonicalize("/usr/bin/cat").unwrap();
    let policy_file = bin.path().join("policy.toml");
    let policy = |allow_cat: bool| {
        let mut text = format!(
            "mode = \"enforce\"\n\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n\n\
             [[rules]]\nweights = [\"llama\"]\nexe = [\"{}\"]\naction = \"allow\"\n",
            models.path().display(),
            server.display()
        );
        if allow_cat {
            text.push_str(&format!(
                "\n[[rules]]\nweights = [\"llama\"]\nexe = [\"{}\"]\naction = \"allow\"\n",
                cat.display()
            ));
        }
        text
    };
    // Written in place of the old file at once (rename), as editors do.
    let install = |text: &str| {
        let tmp = bin.path().join("policy.toml.new");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &policy_file).unwrap();
    };
    install(&policy(false));
    let mut sensor = SensorProcess::start(
        &[models.path()],
        &["--policy", policy_file.to_str().unwrap()],
    );
    sensor.expect_warning("was rejected; the one in force stays");
    let cat_reads = || {
        Command::new(&cat)
            .arg(&weights)
            .output()
            .unwrap()
            .status
            .success()
    };
    let loads = |n: usize| sensor.wait_policy_loads(n);
    loads(1);
    assert!(!cat_reads(), "cat is denied at first");

    // The allowed server reads the file in a loop through every swap.
    let looping = tests::ReaderLoop::start(&server, &weights, 4096);

    // An edit allows cat: picked up within a second or two.
    install(&policy(true));
    loads(2);
    assert!(cat_reads(), "the edited policy allows cat");
    // A malformed edit is rejected; cat stays allowed.
    install("mode = \"enforce\"\n[[rules]]\nweights = [\"nope\"]\naction = \"allow\"\n");
    sensor.wait_for_event("policy_rejected", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::PolicyRejected
    });
    assert!(cat_reads(), "the policy in force stays after a rejection");
    // SIGHUP loads the (fixed) file again: cat denied again.
    fs::write(&policy_file, policy(false)).unwrap();
    sensor.signal(nix::sys::signal::Signal::SIGHUP);
    loads(3);
    assert!(!cat_reads(), "the reloaded policy denies cat again");

    let (runs, failures) = looping.finish();
    assert!(runs > 0);
    let (status, events) = sensor.stop_events();
    assert!(
        failures.is_empty(),
        "an allowed open failed during a swap ({runs} runs): {failures:?}\n{:?}",
        events
            .iter()
            .filter(|e| matches!(e.action, Action::Killed | Action::Denied))
            .collect::<Vec<_>>()
    );
    assert!(status.success());
    let rejected: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::PolicyRejected)
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let Some(PolicyInfo::Rejected(r)) = &rejected[0].policy else {
        panic!("policy_rejected without its errors");
    };
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains(":3:12: error: rule 1 names weight set \"nope\"")),
        "{:?}",
        r.errors
    );
    let hashes = loaded_hashes(&events);
    assert_eq!(hashes.len(), 3);
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2], "the same text, the same hash");
}

/// A weight file renamed into a weight set after start-up (a deploy, a
/// download finishing) is resolved into the policy and enforced within
/// about a second, with a `policy_loaded` record for the new file set.
#[test]
fn weight_files_that_appear_later_are_enforced() {
    let host = Host::new("enforce", "");
    let sensor = host.start();
    let staged = host.bin.path().join("new.safetensors");
    write_file(&staged, 4096);
    let landed = host.models.path().join("new.safetensors");
    fs::rename(&staged, &landed).unwrap();
    sensor.wait_for_event(
        "a policy_loaded with the new file",
        tests::RECORD_TIMEOUT,
        |e| matches!(&e.policy, Some(PolicyInfo::Loaded(l)) if l.files == 2),
    );
    let out = Command::new("cat").arg(&landed).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "cat read a file that appeared later");
    let (_, out) = host.read_with(&host.server);
    assert!(out.status.success(), "the server still reads");
    drop(sensor);
}

/// `write` is its own operation: a policy that lets everyone read a weight
/// set, and nobody write it, refuses opens for writing and truncation with
/// EPERM (the file stays as it was) while reads go on; audit mode lets the
/// write happen and records `would_deny` for operation `write`.
#[test]
fn write_rules_stop_an_overwrite() {
    for mode in ["enforce", "audit"] {
        let host = Host::new(
            mode,
            "\n[[rules]]\nname = \"anyone reads\"\nweights = [\"llama\"]\n\
             operations = [\"open\", \"read\", \"mmap\"]\naction = \"allow\"\n",
        );
        let original = fs::read(&host.weights).unwrap();
        let sensor = host.start();
        let (reader, out) = host.read_with(Path::new("/usr/bin/cat"));
        assert!(out.status.success(), "{mode}: {out:?}");
        assert_eq!(out.stdout, original, "{mode}: reading is allowed");

        // Overwrite in place (O_WRONLY), truncate (O_TRUNC), and r+ (O_RDWR).
        let dd = Command::new("dd")
            .args(["if=/dev/zero", "bs=512", "count=1", "conv=notrunc"])
            .arg(format!("of={}", host.weights.display()))
            .output()
            .unwrap();
        let truncate = Command::new("sh")
            .arg("-c")
            .arg(format!(": > '{}'", host.weights.display()))
            .output()
            .unwrap();
        let python = {
            let child = tests::python_command()
                .args(["-c", "import sys\nopen(sys.argv[1], 'r+b').write(b'x')"])
                .arg(&host.weights)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            let status = child.wait_with_output().unwrap().status;
            assert_eq!(
                status.success(),
                mode == "audit",
                "{mode}: python r+: {status:?}"
            );
            pid
        };
        let (status, events) = sensor.stop_events();
        assert!(status.success());
        let written = fs::read(&host.weights).unwrap();
        if mode == "enforce" {
            for out in [&dd, &truncate] {
                assert!(!out.status.success(), "{out:?}");
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
                    "{out:?}"
                );
            }
            assert_eq!(written, original, "a refused write changed the file");
        } else {
            assert!(dd.status.success() && truncate.status.success());
            assert_ne!(written, original, "audit mode stops nothing");
        }
        let expected = if mode == "enforce" {
            Action::Denied
        } else {
            Action::WouldDeny
        };
        let writes: Vec<&Event> = events
            .iter()
            .filter(|e| e.action == expected)
            .filter(|e| {
                e.policy
                    .as_ref()
                    .is_some_and(|_| policy_of(e).operation == Operation::Write)
            })
            .collect();
        let pids: Vec<u32> = writes
            .iter()
            .filter_map(|e| e.process.as_ref().map(|p| p.pid))
            .collect();
        assert!(pids.contains(&python), "{mode}: python's r+ open: {pids:?}");
        assert_eq!(writes.len(), 3, "{mode}: {:#?}", tests::briefs(&events));
        for record in &writes {
            let v = policy_of(record);
            assert_eq!((v.verdict, v.rule), (PolicyAction::Deny, None), "{mode}");
        }
        assert!(
            !events
                .iter()
                .any(|e| e.process.as_ref().is_some_and(|p| p.pid == reader)
                    && matches!(e.action, Action::Denied | Action::WouldDeny)),
            "{mode}: the reader was judged"
        );
    }
}

/// A package upgrade replaces the allowed binary (a new file renamed over
/// it, so a new inode): the policy follows the path within a couple of
/// seconds, without a restart or SIGHUP, and the old inode no longer
/// counts as allowed.
#[test]
fn an_upgraded_executable_is_allowed_again_without_a_reload() {
    let host = Host::new("enforce", "");
    let sensor = host.start();
    let (_, out) = host.read_with(&host.server);
    assert!(out.status.success(), "{out:?}");
    // Keep the old binary at another name: a copy of the allowed one by
    // inode, which must stop counting once the path names a new file.
    let old = host.bin.path().join("server-old");
    fs::hard_link(&host.server, &old).unwrap();
    let staged = cat_copy(host.bin.path(), "server.new");
    fs::rename(&staged, &host.server).unwrap();
    sensor.wait_policy_loads(2);
    let (_, out) = host.read_with(&host.server);
    assert!(
        out.status.success(),
        "the upgraded binary is refused: {out:?}"
    );
    assert_eq!(out.stdout.len(), 8192);
    let (_, out) = host.read_with(&old);
    assert!(
        !out.status.success(),
        "the replaced binary still counts: {out:?}"
    );
    let (status, _) = sensor.stop_events();
    assert!(status.success());
}

/// A watch root holding weight set `llama` (in `a/`) and room for files
/// outside it, a server allowed to read it, an agent enforcing that.
struct ResolveHost {
    root: tempfile::TempDir,
    weights: std::path::PathBuf,
    server: std::path::PathBuf,
    policy_file: std::path::PathBuf,
    /// The policy file's text.
    text: String,
    sensor: SensorProcess,
    _bin: tempfile::TempDir,
}

impl ResolveHost {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("a");
        fs::create_dir(&models).unwrap();
        let weights = models.join("llama.safetensors");
        write_file(&weights, 8192);
        let bin = tempfile::tempdir().unwrap();
        let server = cat_copy(bin.path(), "server");
        let policy_file = bin.path().join("policy.toml");
        let text = tests::policy_allowing("enforce", &models, "the server", &server, "");
        fs::write(&policy_file, &text).unwrap();
        let sensor =
            SensorProcess::start(&[root.path()], &["--policy", policy_file.to_str().unwrap()]);
        Self {
            root,
            weights,
            server,
            policy_file,
            text,
            sensor,
            _bin: bin,
        }
    }
}

/// A re-resolve that changes nothing (a weight file appearing under the
/// watch root but outside every weight set) and then an edit: the allowed
/// server, reading in a loop throughout, is never refused or killed (a
/// load that ends early must not make the next one write the tables in
/// use).
#[test]
fn an_edit_after_a_no_op_re_resolve_keeps_the_allowed_reader_reading() {
    let ResolveHost {
        root,
        weights,
        server,
        policy_file,
        text,
        sensor,
        _bin,
    } = ResolveHost::start();

    let looping = tests::ReaderLoop::start(&server, &weights, 8192);
    let loads = |n: usize| sensor.wait_policy_loads(n);
    loads(1);
    // Outside every weight set: resolved again, and nothing changes.
    fs::create_dir(root.path().join("b")).unwrap();
    write_file(&root.path().join("b/other.safetensors"), 4096);
    std::thread::sleep(Duration::from_millis(2500));
    // Then an edit: a real reload.
    fs::write(&policy_file, format!("# edited\n{text}")).unwrap();
    loads(2);
    std::thread::sleep(Duration::from_millis(500));
    let (runs, failures) = looping.finish();
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    assert!(runs > 0);
    assert!(
        failures.is_empty(),
        "the allowed server failed {} of {runs} runs: {failures:?}\n{:?}",
        failures.len(),
        events
            .iter()
            .filter(|e| matches!(e.action, Action::Killed | Action::Denied))
            .collect::<Vec<_>>()
    );
    let loaded = events
        .iter()
        .filter(|e| e.action == Action::PolicyLoaded)
        .count();
    assert_eq!(loaded, 2, "the no-op re-resolve wrote no record");
}

/// An edit of the policy and a new file under the watch roots that reach
/// the agent in the same poll: the re-resolve the new file asks for must
/// not read the edit and, finding the weight files unchanged, drop it
/// unloaded (the policy in force would stay the old one, unnoticed).
#[test]
fn an_edit_that_lands_with_a_new_file_is_loaded() {
    let ResolveHost {
        root,
        policy_file,
        text,
        sensor,
        _bin,
        ..
    } = ResolveHost::start();
    sensor.wait_policy_loads(1);

    let edited = format!("# edited\n{text}");
    fs::write(&policy_file, &edited).unwrap();
    fs::create_dir(root.path().join("b")).unwrap();
    write_file(&root.path().join("b/other.safetensors"), 4096);
    sensor.wait_policy_loads(2);
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    let hashes = loaded_hashes(&events);
    let sum = Command::new("sha256sum")
        .arg(&policy_file)
        .output()
        .unwrap();
    let edited_hash = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    assert_eq!(
        Some(hashes[1].as_str()),
        edited_hash.split_whitespace().next()
    );
}

#[test]
fn a_copy_rule_stops_in_kernel_copies_and_lets_reads_through() {
    use std::os::unix::process::ExitStatusExt;

    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let out = tempfile::tempdir().unwrap();
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("policy.toml");
    let text = |mode: &str| {
        format!(
            "mode = \"{mode}\"\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n\n\
             [[rules]]\nname = \"no copies\"\nweights = [\"llama\"]\noperations = [\"copy\"]\n\
             action = \"deny\"\n\n[[rules]]\nname = \"anyone reads\"\nweights = [\"llama\"]\n\
             action = \"allow\"\n",
            models.path().display()
        )
    };
    let cp = |name: &str| {
        let dest = out.path().join(name);
        let status = Command::new("cp")
            .arg(&weights)
            .arg(&dest)
            .status()
            .unwrap();
        (status, fs::metadata(&dest).map_or(0, |m| m.len()))
    };

    fs::write(&policy, text("enforce")).unwrap();
    let sensor = SensorProcess::start(&[models.path()], &["--policy", policy.to_str().unwrap()]);
    // Reading is allowed: cat gets every byte.
    let cat = Command::new("cat").arg(&weights).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout.len(), 1 << 20);
    // cp's copy_file_range is a copy: killed before a byte moved.
    let (status, copied) = cp("stolen.bin");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(copied, 0);
    sensor.wait_for_event("the killed copier", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed
    });
    let (_, events) = sensor.stop_events();
    let killed: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Killed)
        .collect();
    assert_eq!(killed.len(), 1, "{killed:#?}");
    let v = policy_of(killed[0]);
    assert_eq!(
        (
            v.verdict,
            v.operation,
            v.rule,
            v.rule_name.as_deref(),
            v.mechanism.as_str()
        ),
        (
            PolicyAction::Deny,
            Operation::Copy,
            Some(1),
            Some("no copies"),
            "bpf_send_signal"
        )
    );
    assert_eq!(tests::exe(killed[0]), Path::new("/usr/bin/cp"));

    // Audit mode: the copy goes ahead, and its copy record is judged.
    fs::write(&policy, text("audit")).unwrap();
    let sensor = SensorProcess::start(&[models.path()], &["--policy", policy.to_str().unwrap()]);
    let (status, copied) = cp("audited.bin");
    assert!(status.success());
    assert_eq!(copied, 1 << 20);
    sensor.wait_for_event("the would_deny", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::WouldDeny
    });
    let (_, events) = sensor.stop_events();
    let judged: Vec<_> = events
        .iter()
        .filter(|e| e.action == Action::WouldDeny)
        .map(|e| {
            let v = policy_of(e);
            (v.operation, v.rule)
        })
        .collect();
    assert_eq!(
        judged,
        vec![(Operation::Copy, Some(1))],
        "reads are allowed; the copy is not"
    );
}
