//! The VM harness (`tests/src/vm.rs`) on a real QEMU guest: the kernel it
//! boots has what the host's refuses (BPF LSM, fentry), the guest script's
//! exit status and output come back faithfully, a hung guest is stopped,
//! a kernel panic is an error, and the real `weightwarden` binary runs and
//! captures in the guest.

#![allow(clippy::unwrap_used)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use sensor::event::{Action, Event, Text};
use serde_json::Value;
use tests::{
    access_mode, briefs, exe, file, open_flags, path, process,
    vm::{GUEST_BINARY, Vm, VmError, VmRun, agent_records, agent_records_warning, agent_script},
};

/// Far above what each run takes (2 to 9 s), so that only a hang fails.
const TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn the_guest_kernel_has_bpf_lsm_active_and_btf() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image.script(
        "set -e\n\
         ww-emit lsm /sys/kernel/security/lsm\n\
         uname -r | ww-emit release\n\
         test -s /sys/kernel/btf/vmlinux\n\
         grep -E ' (securityfs|tracefs|debugfs|bpf|cgroup2) ' /proc/mounts | ww-emit mounts\n",
    );
    let run = vm.run(&image, TIMEOUT).unwrap();
    run.assert_success();
    assert!(run.warnings().is_empty(), "{:?}", run.warnings());

    let lsm = run.expect_section("lsm");
    assert!(
        lsm.trim().split(',').any(|l| l == "bpf"),
        "active LSMs: {lsm:?}"
    );
    // The guest is not the host: its kernel is the one booted.
    let release = run.expect_section("release").trim().to_owned();
    let host = nix::sys::utsname::uname().unwrap();
    assert_ne!(
        release,
        host.release().to_string_lossy(),
        "the script ran on the host's kernel"
    );
    let mounts = run.expect_section("mounts");
    for fs in ["securityfs", "tracefs", "debugfs", "bpf", "cgroup2"] {
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(2) == Some(fs)),
            "{fs} is not mounted in the guest:\n{mounts}"
        );
    }
}

#[test]
fn a_failing_guest_script_reports_its_exit_status_and_output() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image
        .add_bytes("/data/no-newline.txt", "first\nlast, unterminated", 0o644)
        .script("ww-emit data /data/no-newline.txt\nprintf '' | ww-emit empty\nexit 7\n");
    let run = vm.run(&image, TIMEOUT).unwrap();
    assert_eq!(run.exit_status(), 7, "{}", run.console());
    assert!(!run.success());
    assert_eq!(run.section("data"), Some("first\nlast, unterminated"));
    assert_eq!(run.section("empty"), Some(""));
    // A failure brings the kernel log along.
    assert!(
        run.expect_section("dmesg").contains("Linux version"),
        "{}",
        run.console()
    );
    let failed = std::panic::catch_unwind(|| {
        run.assert_success();
    });
    assert!(
        failed.is_err(),
        "assert_success passed a script that exited 7"
    );
}

#[test]
fn a_hung_guest_is_killed_at_the_timeout_with_the_console_tail() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image.script("echo about to hang\nsleep 600\n");
    let timeout = Duration::from_secs(8);
    let start = Instant::now();
    let err = vm.run(&image, timeout).unwrap_err();
    let took = start.elapsed();
    assert!(
        took < timeout + Duration::from_secs(5),
        "the run ended {took:?} after starting, timeout {timeout:?}"
    );
    match &err {
        VmError::Timeout { tail, .. } => {
            assert!(tail.contains("about to hang"), "{err}");
        }
        other => panic!("not a timeout: {other}"),
    }
}

#[test]
fn a_guest_kernel_panic_is_an_error_with_the_panic_in_it() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image.script("echo c > /proc/sysrq-trigger\nsleep 600\n");
    let err = vm.run(&image, TIMEOUT).unwrap_err();
    match &err {
        VmError::NoExitStatus { tail, .. } => {
            assert!(tail.contains("Kernel panic"), "{err}");
        }
        other => panic!("not a missing exit status: {other}"),
    }
}

#[test]
fn doctor_in_the_guest_loads_fentry_and_bpf_lsm_hooks() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .script(
            "uname -r | ww-emit release\n\
             weightwarden doctor --json > /tmp/doctor.json\n\
             status=$?\n\
             ww-emit doctor /tmp/doctor.json\n\
             exit $status\n",
        );
    let run = vm.run(&image, TIMEOUT).unwrap();
    run.assert_success();

    let report: Value = serde_json::from_str(run.expect_section("doctor"))
        .unwrap_or_else(|e| run.fail(&format!("doctor printed no JSON report: {e}")));
    let release = run.expect_section("release").trim();
    assert_eq!(report["kernel"], release, "{report:#}");
    assert_eq!(report["can_run"], true, "{report:#}");
    let check = |name: &str| tests::doctor_check(&report, name);
    for name in [
        "BPF LSM in boot list",
        "hook: BPF LSM",
        "hook: fentry",
        "hook: kprobe",
    ] {
        let c = check(name);
        assert_eq!(c["status"], "ok", "{c:#}");
    }
    assert_eq!(
        check("hook: BPF LSM")["detail"],
        "loaded and attached lsm/file_open"
    );
}

/// A sensor run in the guest: `weightwarden run` watching `/models`, one
/// `cat` of `/models/tiny.gguf` (65536 bytes), then SIGTERM. Returns the
/// run, its records and `cat`'s pid, after `agent_records`' checks.
fn sensor_run_with_one_cat(vm: &Vm) -> (VmRun, Vec<Event>, u32) {
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_bytes("/etc/weightwarden-test.toml", "# defaults\n", 0o644)
        .script(agent_script(
            "mkdir -p /models\nhead -c 65536 /dev/zero > /models/tiny.gguf",
            "--watch /models --config /etc/weightwarden-test.toml",
            "cat /models/tiny.gguf > /dev/null &\ncat=$!\nwait $cat\necho $cat | ww-emit cat-pid",
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records(&run);
    let cat: u32 = run.expect_section("cat-pid").trim().parse().unwrap();
    (run, events, cat)
}

/// The open `cat` made: exactly one.
fn open_by(events: &[Event], pid: u32) -> &Event {
    let opens: Vec<&Event> = events
        .iter()
        .filter(|e| tests::is_by(e, Action::Open, pid))
        .collect();
    assert_eq!(opens.len(), 1, "{:#?}", briefs(events));
    opens[0]
}

#[test]
fn the_sensor_in_the_guest_records_an_open_of_a_watched_file() {
    let vm = tests::vm_or_skip!();
    let (_run, events, cat) = sensor_run_with_one_cat(&vm);
    let open = open_by(&events, cat);
    assert_eq!(path(open), Path::new("/models/tiny.gguf"));
    assert_eq!(file(open).size, 65536);
    assert_eq!(process(open).comm, "cat");
    assert_eq!(
        process(open).args,
        [Text::from("cat"), Text::from("/models/tiny.gguf")]
    );
    assert_eq!(
        access_mode(open_flags(open)),
        libc::O_RDONLY,
        "{:?}",
        tests::access(open)
    );
    assert!(
        events.iter().any(|e| tests::is_by(e, Action::Exit, cat)),
        "{:#?}",
        briefs(&events)
    );
}

// Busybox's shell runs an applet by exec'ing `/proc/self/exe` (so the exec
// record's comm is `exe`); the agent must read that path back from the
// process, not resolve it in its own (where it names the agent's binary).
#[test]
fn an_exec_of_proc_self_exe_names_the_executable_that_runs() {
    let vm = tests::vm_or_skip!();
    let (_run, events, cat) = sensor_run_with_one_cat(&vm);
    let open = open_by(&events, cat);
    assert_eq!(exe(open), Path::new("/bin/busybox"), "{:#?}", process(open));
}

/// The io_uring programs on the guest's 6.1 kernel, whose request layout
/// and fixed-file table differ from the host's (an array of `file_ptr`
/// words, not resource nodes): on in `sensor_start`, a plain open and
/// reads, an open into a fixed slot and reads through it, splices (one
/// from a fixed slot), and requests that post no completion on success,
/// each counted exactly, by the helper's pid.
#[test]
fn io_uring_opens_reads_and_splices_are_captured_on_the_guest_kernel() {
    let vm = tests::vm_or_skip!();
    let bin = tempfile::tempdir().unwrap();
    let uring = tests::build_helper(bin.path(), "uring");
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_executable_at("/usr/local/bin/uring", &uring)
        .script(agent_script(
            "mkdir -p /models\nhead -c 1048576 /dev/urandom > /models/tiny.safetensors",
            "--watch /models",
            "uring /models/tiny.safetensors | ww-emit plain\n\
             uring fixed-open /models/tiny.safetensors | ww-emit fixed-open\n\
             uring splice /models/tiny.safetensors | ww-emit splice\n\
             uring skip-success /models/tiny.safetensors | ww-emit skip-success",
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records_warning(&run, &["IOSQE_CQE_SKIP_SUCCESS"]);
    assert_eq!(
        tests::io_uring_capture(&events),
        sensor::event::IoUringCapture::On
    );
    let pid = |mode: &str| -> u32 {
        let out = run.expect_section(mode);
        out.lines()
            .find_map(|l| l.strip_prefix("pid "))
            .unwrap_or_else(|| run.fail(&format!("{mode}: no pid line:\n{out}")))
            .parse()
            .unwrap()
    };
    let sum = |pid: u32| -> (u64, u64, u64) {
        let reads = tests::of_pid(&events, Action::Read, pid);
        let s = |f: fn(&sensor::event::ReadSummary) -> u64| {
            reads.iter().map(|r| f(tests::read_summary(r))).sum::<u64>()
        };
        (s(|r| r.bytes), s(|r| r.calls), s(|r| r.copies))
    };
    // What helpers/uring.c reads in each mode (tests/tests/async_io.rs).
    assert_eq!(sum(pid("plain")), (176_128, 6, 0), "{:#?}", briefs(&events));
    assert_eq!(
        sum(pid("fixed-open")),
        (147_456, 3, 0),
        "{:#?}",
        briefs(&events)
    );
    assert_eq!(
        sum(pid("splice")),
        (114_688, 3, 3),
        "{:#?}",
        briefs(&events)
    );
    // Every request with IOSQE_CQE_SKIP_SUCCESS, seen at submission
    // (`io_uring_submit_sqe` on 6.1): the pread(2) through the descriptor
    // such an open made, four reads and a splice; its writes and send
    // count too.
    assert_eq!(
        sum(pid("skip-success")),
        (192_512, 6, 1),
        "{:#?}",
        briefs(&events)
    );
    let stop = events.last().unwrap();
    assert_eq!(stop.action, Action::SensorStop);
    assert_eq!(
        stop.sensor.as_ref().unwrap().counters["kernel"].get("uring_skip_success"),
        Some(&8),
        "{stop:?}"
    );
    let fixed_opens = tests::of_pid(&events, Action::Open, pid("fixed-open"));
    assert_eq!(fixed_opens.len(), 1, "{:#?}", briefs(&events));
    assert!(
        matches!(
            tests::access(fixed_opens[0]).detail,
            sensor::event::AccessDetail::Open { fd: -1, .. }
        ),
        "{:?}",
        tests::access(fixed_opens[0])
    );
    let copies = tests::of_pid(&events, Action::Copy, pid("splice"));
    assert_eq!(copies.len(), 1, "{:#?}", briefs(&events));
    match &tests::access(copies[0]).detail {
        sensor::event::AccessDetail::Copy(c) => {
            assert_eq!(c.syscall, sensor::event::CopySyscall::IoUringSplice)
        }
        other => panic!("not a copy: {other:?}"),
    }
}

/// io_uring writes, sends and a connect by a process that read weights,
/// on the guest's 6.1 kernel (its verifier, its request layout): the
/// `send` records of `helpers/uring_sends.c` (tests/tests/async_io.rs),
/// by the request's file (fd -1), with the socket's peer. 6.1 has no
/// WRITEV_FIXED (it fails with EINVAL: no record).
#[test]
fn io_uring_writes_and_sends_after_reading_weights_are_send_records_on_the_guest_kernel() {
    use sensor::event::{AccessDetail, DestinationKind, SendSyscall};
    let vm = tests::vm_or_skip!();
    let bin = tempfile::tempdir().unwrap();
    let helper = tests::build_helper(bin.path(), "uring_sends");
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_executable_at("/usr/local/bin/uring_sends", &helper)
        .script(agent_script(
            "ip link set lo up\nmkdir -p /models /out\n\
             head -c 1048576 /dev/urandom > /models/tiny.safetensors",
            "--watch /models",
            "uring_sends /models/tiny.safetensors /out/copy.bin > /tmp/sends.txt\n\
             ww-emit sends /tmp/sends.txt\n\
             stat -c '%i' /out/copy.bin | ww-emit copy-ino",
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records(&run);
    assert_eq!(
        tests::io_uring_capture(&events),
        sensor::event::IoUringCapture::On
    );
    let out = run.expect_section("sends");
    let field = |name: &str| -> &str {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| run.fail(&format!("no {name} line:\n{out}")))
    };
    assert_eq!(field("writev_fixed"), "-22", "{out}");
    assert_eq!(field("received"), "524288", "{out}");
    let pid: u32 = field("pid").parse().unwrap();
    let peer = format!("127.0.0.1:{}", field("port"));
    let copy_ino: u64 = run.expect_section("copy-ino").trim().parse().unwrap();
    let mut to_file = Vec::new();
    let mut to_socket = Vec::new();
    for e in tests::of_pid(&events, Action::Send, pid) {
        let AccessDetail::Send(d) = &tests::access(e).detail else {
            panic!("not a send: {e:?}")
        };
        let got = (d.syscall, d.bytes, d.calls);
        match d.destination.kind {
            _ if d.syscall == SendSyscall::Write => {} // its report
            DestinationKind::File if d.destination.ino == copy_ino => to_file.push(got),
            DestinationKind::Socket => {
                assert_eq!(d.destination.peer.as_deref(), Some(peer.as_str()), "{d:?}");
                to_socket.push(got);
            }
            _ => panic!("an unexpected send: {d:?}"),
        }
        if d.syscall != SendSyscall::Write {
            assert_eq!(d.fd, -1, "{d:?}");
        }
    }
    assert_eq!(
        to_file,
        [
            (SendSyscall::IoUringWrite, 65536, 1),
            (SendSyscall::IoUringWriteFixed, 163_840, 3)
        ],
        "{:#?}",
        briefs(&events)
    );
    assert_eq!(
        to_socket,
        [
            (SendSyscall::IoUringConnect, 0, 1),
            (SendSyscall::IoUringSend, 65536, 2),
            (SendSyscall::IoUringSendmsg, 131_072, 3),
            (SendSyscall::IoUringSendZc, 262_144, 4),
            (SendSyscall::IoUringSendmsgZc, 524_288, 5)
        ],
        "{:#?}",
        briefs(&events)
    );
}

/// Tampering through io_uring on the guest's 6.1 kernel, whose request
/// layout and submission path differ from the host's: a rename over a
/// watched file and one away by a path relative to a directory
/// descriptor, an unlink (linked behind a timeout: queued to io-wq later),
/// a hard link, a symbolic link, an open for writing and one with
/// `O_TRUNC` are each the record its syscall makes, and a `tamper`
/// detection. 6.1 has no `IORING_OP_FTRUNCATE`: the helper
/// says the kernel refused it, and nothing is recorded.
#[test]
fn io_uring_tampering_is_recorded_on_the_guest_kernel() {
    let vm = tests::vm_or_skip!();
    let bin = tempfile::tempdir().unwrap();
    let uring = tests::build_helper(bin.path(), "uring");
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_executable_at("/usr/local/bin/uring", &uring)
        .script(agent_script(
            "mkdir -p /models /scratch\n\
             for f in a b c d e g; do head -c 65536 /dev/zero > /models/$f.safetensors; done\n\
             echo evil > /models/x.tmp",
            "--watch /models",
            "uring rename /models/x.tmp /models/a.safetensors | ww-emit rename\n\
             uring --dir /models rename b.safetensors /scratch/elsewhere | ww-emit rename-away\n\
             uring --dir /models --linked unlink c.safetensors | ww-emit unlink\n\
             uring link /models/d.safetensors /scratch/d-link | ww-emit link\n\
             uring --dir /models symlink d.safetensors s.safetensors | ww-emit symlink\n\
             uring write-open /models/e.safetensors | ww-emit write-open\n\
             uring ftruncate /models/g.safetensors | ww-emit ftruncate\n\
             sleep 1",
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records_warning(&run, &["IOSQE_CQE_SKIP_SUCCESS"]);
    assert_eq!(
        tests::io_uring_capture(&events),
        sensor::event::IoUringCapture::On
    );
    let pid = |mode: &str| -> u32 {
        let out = run.expect_section(mode);
        out.lines()
            .find_map(|l| l.strip_prefix("pid "))
            .unwrap_or_else(|| run.fail(&format!("{mode}: no pid line:\n{out}")))
            .parse()
            .unwrap()
    };
    use sensor::event::{AccessDetail, ChangeSyscall as S, DetectionId};
    let only = |mode: &str, action: Action| -> (&Event, sensor::event::ChangeDetail) {
        let found = tests::of_pid(&events, action, pid(mode));
        assert_eq!(found.len(), 1, "{mode}: {:#?}", briefs(&events));
        let AccessDetail::Change(c) = &tests::access(found[0]).detail else {
            panic!("{mode}: not a change");
        };
        (found[0], (**c).clone())
    };
    let tampered = |mode: &str| -> Vec<String> {
        tests::of_pid(&events, Action::Detection, pid(mode))
            .iter()
            .filter_map(|e| e.detection.as_ref())
            .filter(|d| d.id == DetectionId::Tamper)
            .map(|d| d.matched.clone().unwrap_or_default())
            .collect()
    };
    let text = |t: &Option<Text>| t.as_ref().map(|t| t.to_lossy().into_owned());

    let (e, r) = only("rename", Action::Rename);
    assert_eq!(path(e), Path::new("/models/a.safetensors"));
    assert_eq!(r.syscall, S::IoUringRenameat);
    assert!(r.replaced.is_some(), "{r:?}");
    assert_eq!(text(&r.old_path).as_deref(), Some("/models/x.tmp"));
    assert_eq!(tampered("rename"), ["rename"]);

    let (e, r) = only("rename-away", Action::Rename);
    assert_eq!(path(e), Path::new("/scratch/elsewhere"));
    assert_eq!(
        (r.syscall, text(&r.old_path).as_deref()),
        (S::IoUringRenameat, Some("/models/b.safetensors"))
    );
    assert_eq!(tampered("rename-away"), ["rename"]);

    let (e, u) = only("unlink", Action::Unlink);
    assert_eq!(path(e), Path::new("/models/c.safetensors"));
    assert_eq!(
        (u.syscall, u.before.map(|s| s.size)),
        (S::IoUringUnlinkat, Some(65536))
    );
    assert_eq!(tampered("unlink"), ["unlink"]);

    let (e, l) = only("link", Action::Link);
    assert_eq!(path(e), Path::new("/models/d.safetensors"));
    assert_eq!(
        (l.syscall, text(&l.new_path).as_deref()),
        (S::IoUringLinkat, Some("/scratch/d-link"))
    );
    assert_eq!(tampered("link"), ["link"]);

    let (e, c) = only("symlink", Action::Create);
    assert_eq!(path(e), Path::new("/models/s.safetensors"));
    assert_eq!(
        (c.syscall, text(&c.old_path).as_deref()),
        (S::IoUringSymlinkat, Some("d.safetensors"))
    );
    assert_eq!(tampered("symlink"), ["create"]);

    let (_, w) = only("write-open", Action::WriteOpen);
    assert_eq!(w.syscall, S::IoUringOpenat);
    let (_, t) = only("write-open", Action::Truncate);
    assert_eq!(
        (t.syscall, t.flags.map(|f| f & 0o1000)),
        (S::IoUringOpenat2, Some(0o1000))
    );
    assert_eq!(
        (t.before.map(|s| s.size), t.after.map(|s| s.size)),
        (Some(65536), Some(0))
    );

    // The kernel refused the request (exit 78): no truncation to record.
    assert!(
        run.expect_section("ftruncate")
            .contains("ftruncate unsupported"),
        "{}",
        run.expect_section("ftruncate")
    );
    assert!(tests::of_pid(&events, Action::Truncate, pid("ftruncate")).is_empty());
}

// On 6.1 (FMODE_CREATED, the dentry walk and the path prefilter's loop
// under its verifier): a new weight file is a `create` record, whether an
// open made it or busybox's `mv` (rename(2)) brought it in; renames and
// unlinks of unrelated files are not sent to the agent at all.
#[test]
fn the_sensor_in_the_guest_records_creates_and_filters_unrelated_path_operations() {
    let vm = tests::vm_or_skip!();
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_bytes("/etc/weightwarden-test.toml", "# defaults\n", 0o644)
        .script(agent_script(
            "mkdir -p /models/sub /scratch\nhead -c 65536 /dev/zero > /models/tiny.gguf\n\
             echo x > /scratch/incoming",
            "--watch /models --config /etc/weightwarden-test.toml",
            "cp /models/tiny.gguf /models/sub/copy.gguf &\ncp=$!\nwait $cp\n\
             echo $cp | ww-emit cp-pid\n\
             mv /scratch/incoming /models/moved.gguf &\nmv=$!\nwait $mv\n\
             echo $mv | ww-emit mv-pid\n\
             i=0\nwhile [ $i -lt 100 ]; do\n\
             touch /scratch/u$i; mv /scratch/u$i /scratch/v$i; rm /scratch/v$i\n\
             i=$((i + 1))\ndone\nsleep 1",
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records(&run);
    let pid = |section: &str| -> u32 { run.expect_section(section).trim().parse().unwrap() };
    for (who, path) in [
        (pid("cp-pid"), "/models/sub/copy.gguf"),
        (pid("mv-pid"), "/models/moved.gguf"),
    ] {
        let created: Vec<&Event> = events
            .iter()
            .filter(|e| tests::is_by(e, Action::Create, who))
            .collect();
        assert_eq!(created.len(), 1, "{:#?}", briefs(&events));
        assert_eq!(tests::path(created[0]), Path::new(path));
    }
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    // The 200 unrelated renames and unlinks never reached the agent (the
    // move into /models did, and the guest's own boot-time ones may).
    let sent = stop.counter("agent", "path_changes");
    assert!(sent < 20, "{sent} path operations sent");
    assert!(stop.counter("watch", "path_names") > 0);
}
