//! Tampering with a weight file is one record per operation, attributed to
//! the process that did it, naming the file (path, dev, ino) with its state
//! before and after: opens for writing (`dd conv=notrunc`) or with
//! `O_TRUNC` (`: > FILE`), `truncate -s 0`, Python's `os.truncate` and
//! `os.ftruncate`, `mv` over a watched file (the replaced inode named),
//! `mv` away, `rm` (also by a relative path), `chmod`, `chown`, `ln`, and
//! a dirfd-relative `renameat`. The same operations on files outside the
//! roots are no record. The same through io_uring requests (a rename over
//! and away, unlinks by a path relative to a directory descriptor and to
//! the working directory, a hard link, a symbolic link, an open for
//! writing and one with `O_TRUNC`, `FTRUNCATE` through a descriptor and a
//! fixed-file slot) are the same records, each a `tamper` detection.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sensor::event::{AccessDetail, Action, ChangeDetail, ChangeSyscall, DetectionId, Event};
use tests::{SensorProcess, identity, run, write_file};

const MIB: u64 = 1024 * 1024;

/// The one record of `action` by `pid`, with its change detail.
fn change_of(sensor: &SensorProcess, action: Action, pid: u32) -> (Event, ChangeDetail) {
    sensor.wait_exit(pid);
    let events = sensor.events_by_pid(action, pid);
    assert_eq!(events.len(), 1, "{action:?} by {pid}: {events:#?}");
    let e = events[0].clone();
    let detail = match &tests::access(&e).detail {
        AccessDetail::Change(c) => (**c).clone(),
        other => panic!("not a change: {other:?}"),
    };
    (e, detail)
}

/// Asserts the record's process, file identity and path.
fn assert_file(e: &Event, pid: u32, exe: &str, path: &Path, ino: u64) {
    assert_eq!(tests::process(e).pid, pid);
    assert_eq!(
        tests::exe(e),
        std::fs::canonicalize(exe).unwrap(),
        "{}",
        tests::brief(e)
    );
    assert_eq!(tests::path(e), path);
    assert_eq!(tests::file(e).ino, ino);
}

fn weight(dir: &Path, name: &str, size: u64) -> (PathBuf, u64) {
    let path = dir.join(name);
    write_file(&path, size as usize);
    let ino = identity(&path).1;
    (path, ino)
}

fn sizes(c: &ChangeDetail) -> (Option<u64>, Option<u64>) {
    (c.before.map(|s| s.size), c.after.map(|s| s.size))
}

fn which(name: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn writes_and_truncates_of_weight_files_are_records() {
    let root = tempfile::tempdir().unwrap();
    let (a, a_ino) = weight(root.path(), "a.safetensors", MIB);
    let (b, b_ino) = weight(root.path(), "b.safetensors", MIB);
    let (c, c_ino) = weight(root.path(), "c.safetensors", MIB);
    let (d, d_ino) = weight(root.path(), "d.safetensors", MIB);
    let (e, e_ino) = weight(root.path(), "e.safetensors", MIB);
    let out = tempfile::tempdir().unwrap();
    let (u, _) = weight(out.path(), "u.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    // coreutils truncate: an open for writing, then ftruncate.
    let pid = run(Command::new("truncate").arg("-s").arg("0").arg(&a));
    let (ev, w) = change_of(&sensor, Action::WriteOpen, pid);
    assert_file(&ev, pid, &which("truncate"), &a, a_ino);
    assert_eq!(w.syscall, ChangeSyscall::Openat);
    assert_eq!(sizes(&w), (Some(MIB), Some(MIB)));
    let (ev, t) = change_of(&sensor, Action::Truncate, pid);
    assert_file(&ev, pid, &which("truncate"), &a, a_ino);
    assert_eq!(
        (t.syscall, t.length, sizes(&t)),
        (ChangeSyscall::Ftruncate, Some(0), (Some(MIB), Some(0)))
    );
    assert_eq!(t.after.unwrap().ino, a_ino);

    // os.truncate: truncate(2) by path.
    let py = tests::python_exe_str();
    let pid = tests::python(
        "import os, sys\nos.truncate(sys.argv[1], 100)",
        &[b.to_str().unwrap()],
    );
    let (ev, t) = change_of(&sensor, Action::Truncate, pid);
    assert_file(&ev, pid, &py, &b, b_ino);
    assert_eq!(
        (t.syscall, t.length, sizes(&t)),
        (ChangeSyscall::Truncate, Some(100), (Some(MIB), Some(100)))
    );

    // os.ftruncate on a descriptor opened O_RDWR.
    let pid = tests::python(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nos.ftruncate(fd, 10)",
        &[c.to_str().unwrap()],
    );
    let (ev, t) = change_of(&sensor, Action::Truncate, pid);
    assert_file(&ev, pid, &py, &c, c_ino);
    assert_eq!(
        (t.syscall, t.length, sizes(&t)),
        (ChangeSyscall::Ftruncate, Some(10), (Some(MIB), Some(10)))
    );
    assert_eq!(sensor.events_by_pid(Action::WriteOpen, pid).len(), 1);

    // `: > FILE`: the shell's open with O_TRUNC is the truncation.
    let pid = run(Command::new("sh")
        .arg("-c")
        .arg(format!(": > {}", d.display())));
    let (ev, t) = change_of(&sensor, Action::Truncate, pid);
    assert_file(&ev, pid, &which("sh"), &d, d_ino);
    assert_eq!(t.syscall, ChangeSyscall::Openat);
    assert_eq!(t.flags.unwrap() & 0o1000, 0o1000, "O_TRUNC as passed");
    assert_eq!(sizes(&t), (Some(MIB), Some(0)));

    // dd conv=notrunc: a write open, no truncation.
    let pid = run(Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", e.display()))
        .args(["bs=4096", "count=1", "conv=notrunc", "status=none"]));
    let (ev, w) = change_of(&sensor, Action::WriteOpen, pid);
    assert_file(&ev, pid, &which("dd"), &e, e_ino);
    assert_eq!(w.flags.unwrap() & 0o1003, 0o1, "O_WRONLY without O_TRUNC");
    assert_eq!(sizes(&w), (Some(MIB), Some(MIB)));
    assert!(sensor.events_by_pid(Action::Truncate, pid).is_empty());

    // Control: the same on a file outside the roots.
    let control = [
        run(Command::new("truncate").arg("-s").arg("0").arg(&u)),
        run(Command::new("sh")
            .arg("-c")
            .arg(format!(": > {}", u.display()))),
        tests::python(
            "import os, sys\nos.truncate(sys.argv[1], 5)",
            &[u.to_str().unwrap()],
        ),
    ];
    let (_, events) = sensor.stop_events();
    for pid in control {
        let by: Vec<_> = events
            .iter()
            .filter(|e| e.action.is_change() && tests::process(e).pid == pid)
            .collect();
        assert!(by.is_empty(), "{pid}: {by:#?}");
    }
}

#[test]
fn renames_unlinks_attributes_and_links_are_records() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (a, a_ino) = weight(root.path(), "a.safetensors", MIB);
    let (other, other_ino) = weight(root.path(), "other.tmp", 2 * MIB);
    let (b, b_ino) = weight(root.path(), "b.safetensors", MIB);
    let (c, c_ino) = weight(root.path(), "c.safetensors", 3 * MIB);
    let (d, d_ino) = weight(root.path(), "d.safetensors", MIB);
    let (e, e_ino) = weight(root.path(), "e.safetensors", MIB);
    let (f, f_ino) = weight(root.path(), "f.safetensors", MIB);
    let (u, _) = weight(out.path(), "u.safetensors", MIB);
    let (v, _) = weight(out.path(), "v.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let mv = which("mv");

    // mv over a watched file: the moved inode and the one it replaced.
    let pid = run(Command::new("mv").arg(&other).arg(&a));
    let (ev, r) = change_of(&sensor, Action::Rename, pid);
    assert_file(&ev, pid, &mv, &a, other_ino);
    assert_eq!(r.syscall, ChangeSyscall::Renameat);
    let replaced = r.replaced.clone().expect("replaced");
    assert_eq!(
        (replaced.state.ino, replaced.state.size),
        (a_ino, MIB),
        "{r:?}"
    );
    assert_eq!(sizes(&r), (Some(2 * MIB), Some(2 * MIB)));

    // mv away from the roots.
    let elsewhere = out.path().join("elsewhere");
    let pid = run(Command::new("mv").arg(&b).arg(&elsewhere));
    let (ev, r) = change_of(&sensor, Action::Rename, pid);
    // Named where it is now: it stays watched outside the roots.
    assert_file(&ev, pid, &mv, &elsewhere, b_ino);
    assert_eq!(r.syscall, ChangeSyscall::Renameat2);
    assert_eq!(
        r.new_path.as_ref().unwrap().as_bytes(),
        elsewhere.as_os_str().as_encoded_bytes()
    );
    assert_eq!(
        (r.before.unwrap().ino, r.after.unwrap().ino),
        (b_ino, b_ino)
    );
    assert!(r.replaced.is_none());

    // rm, by an absolute and by a relative path (rm gone by the time the
    // agent resolves it: the working directory is a watched one).
    let pid = run(Command::new("rm").arg(&c));
    let (ev, u_rec) = change_of(&sensor, Action::Unlink, pid);
    assert_file(&ev, pid, &which("rm"), &c, c_ino);
    assert_eq!(
        (u_rec.syscall, sizes(&u_rec)),
        (ChangeSyscall::Unlinkat, (Some(3 * MIB), None))
    );
    let pid = run(Command::new("rm")
        .arg("f.safetensors")
        .current_dir(root.path()));
    let (ev, _) = change_of(&sensor, Action::Unlink, pid);
    assert_file(&ev, pid, &which("rm"), &f, f_ino);

    // chmod, chown.
    let pid = run(Command::new("chmod").arg("600").arg(&d));
    let (ev, s) = change_of(&sensor, Action::SetAttributes, pid);
    assert_file(&ev, pid, &which("chmod"), &d, d_ino);
    assert_eq!((s.syscall, s.mode), (ChangeSyscall::Fchmodat, Some(0o600)));
    assert_eq!(sizes(&s), (Some(MIB), Some(MIB)));
    let pid = run(Command::new("chown").arg("1:1").arg(&d));
    let (ev, s) = change_of(&sensor, Action::SetAttributes, pid);
    assert_file(&ev, pid, &which("chown"), &d, d_ino);
    assert_eq!(
        (s.syscall, s.uid, s.gid),
        (ChangeSyscall::Fchownat, Some(1), Some(1))
    );

    // ln: a new hard link.
    let link = out.path().join("newname");
    let pid = run(Command::new("ln").arg(&d).arg(&link));
    let (ev, l) = change_of(&sensor, Action::Link, pid);
    assert_file(&ev, pid, &which("ln"), &d, d_ino);
    assert_eq!(l.syscall, ChangeSyscall::Linkat);
    assert_eq!(
        l.new_path.as_ref().unwrap().as_bytes(),
        link.as_os_str().as_encoded_bytes()
    );

    // renameat relative to a directory descriptor.
    let g = root.path().join("g.safetensors");
    let pid = tests::python(
        "import os, sys\nd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n\
         os.rename('e.safetensors', 'g.safetensors', src_dir_fd=d, dst_dir_fd=d)",
        &[root.path().to_str().unwrap()],
    );
    let (ev, r) = change_of(&sensor, Action::Rename, pid);
    assert_file(&ev, pid, &tests::python_exe_str(), &g, e_ino);
    assert_eq!(r.syscall, ChangeSyscall::Renameat);
    assert_eq!(
        r.old_path.as_ref().unwrap().as_bytes(),
        e.as_os_str().as_encoded_bytes()
    );

    // Control: the same outside the roots.
    let control = [
        run(Command::new("chmod").arg("600").arg(&v)),
        run(Command::new("ln").arg(&v).arg(out.path().join("v2"))),
        run(Command::new("mv").arg(&v).arg(out.path().join("v3"))),
        run(Command::new("rm").arg(&u)),
    ];
    let (_, events) = sensor.stop_events();
    for pid in control {
        let by: Vec<_> = events
            .iter()
            .filter(|e| e.action.is_change() && tests::process(e).pid == pid)
            .collect();
        assert!(by.is_empty(), "{pid}: {by:#?}");
    }
}

/// `helpers/uring.c` in one of its tampering modes, as root, from `cwd`:
/// its pid, exit code and output; `None` where io_uring is not available
/// (exit 77).
fn uring(helper: &Path, args: &[&std::ffi::OsStr], cwd: &Path) -> Option<(u32, i32, String)> {
    let out = tests::output_within(
        Command::new(helper).args(args).current_dir(cwd),
        std::time::Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    if code == 77 {
        return None;
    }
    // 78: the kernel lacks the opcode (FTRUNCATE before 6.9).
    assert!(
        code == 0 || code == 78,
        "uring {args:?}: {:?} {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap_or_else(|| panic!("no pid line: {stdout}"))
        .parse()
        .unwrap();
    Some((pid, code, stdout))
}

/// The `matched` operations of the `tamper` detections about `pid`.
fn tamper_detections(sensor: &SensorProcess, pid: u32) -> Vec<String> {
    sensor
        .events_by_pid(Action::Detection, pid)
        .iter()
        .filter_map(|e| e.detection.as_ref())
        .filter(|d| d.id == DetectionId::Tamper)
        .map(|d| d.matched.clone().unwrap_or_default())
        .collect()
}

#[test]
fn io_uring_renames_unlinks_links_truncations_and_write_opens_are_the_syscalls_records() {
    let bin = tempfile::tempdir().unwrap();
    let helper = tests::build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (a, a_ino) = weight(root.path(), "a.safetensors", MIB);
    let (other, other_ino) = weight(root.path(), "other.tmp", 2 * MIB);
    let (b, b_ino) = weight(root.path(), "b.safetensors", MIB);
    let (c, c_ino) = weight(root.path(), "c.safetensors", 3 * MIB);
    let (d, d_ino) = weight(root.path(), "d.safetensors", MIB);
    let (e, e_ino) = weight(root.path(), "e.safetensors", MIB);
    let (f, f_ino) = weight(root.path(), "f.safetensors", MIB);
    let (g, g_ino) = weight(root.path(), "g.safetensors", MIB);
    let (u, _) = weight(out.path(), "u.safetensors", MIB);
    let (v, _) = weight(out.path(), "v.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let exe = helper.to_str().unwrap();
    let os = |p: &Path| p.as_os_str().to_owned();
    let dir = |p: &Path| [std::ffi::OsString::from("--dir"), os(p)];
    let run_uring = |args: Vec<std::ffi::OsString>, cwd: &Path| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        uring(&helper, &args, cwd)
    };
    let bytes = |p: &Path| p.as_os_str().as_encoded_bytes().to_vec();
    let path_of = |t: &Option<sensor::event::Text>| t.as_ref().map(|t| t.as_bytes().to_vec());

    // IORING_OP_RENAMEAT over a watched file: the moved inode and the one
    // it replaced.
    let Some((pid, _, _)) = run_uring(vec!["rename".into(), os(&other), os(&a)], out.path()) else {
        tests::skip!(
            tests::feature::IO_URING,
            "io_uring is not available to this process"
        );
    };
    let (ev, r) = change_of(&sensor, Action::Rename, pid);
    assert_file(&ev, pid, exe, &a, other_ino);
    assert_eq!(r.syscall, ChangeSyscall::IoUringRenameat);
    let replaced = r.replaced.clone().expect("replaced");
    assert_eq!((replaced.state.ino, replaced.state.size), (a_ino, MIB));
    assert_eq!(sizes(&r), (Some(2 * MIB), Some(2 * MIB)));
    assert_eq!(
        (path_of(&r.old_path), path_of(&r.new_path)),
        (Some(bytes(&other)), Some(bytes(&a)))
    );
    assert_eq!(tamper_detections(&sensor, pid), ["rename"]);

    // Away from the roots, the old path relative to a directory
    // descriptor (the process is gone when the agent resolves it: the
    // descriptor's directory is a watched one).
    let elsewhere = out.path().join("elsewhere");
    let mut args = dir(root.path()).to_vec();
    args.extend(["rename".into(), "b.safetensors".into(), os(&elsewhere)]);
    let (pid, _, _) = run_uring(args, out.path()).unwrap();
    let (ev, r) = change_of(&sensor, Action::Rename, pid);
    assert_file(&ev, pid, exe, &elsewhere, b_ino);
    assert_eq!(r.syscall, ChangeSyscall::IoUringRenameat);
    assert_eq!(
        (path_of(&r.old_path), path_of(&r.new_path)),
        (Some(bytes(&b)), Some(bytes(&elsewhere)))
    );
    assert_eq!(
        (r.before.unwrap().ino, r.after.unwrap().ino),
        (b_ino, b_ino)
    );
    assert!(r.replaced.is_none());
    assert_eq!(tamper_detections(&sensor, pid), ["rename"]);

    // IORING_OP_UNLINKAT relative to a directory descriptor, and to the
    // working directory (that one linked behind a timeout: the kernel
    // queues it 20 ms after the submission, from the submitter's task
    // work).
    let mut args = dir(root.path()).to_vec();
    args.extend(["unlink".into(), "c.safetensors".into()]);
    let (pid, _, _) = run_uring(args, out.path()).unwrap();
    let (ev, un) = change_of(&sensor, Action::Unlink, pid);
    assert_file(&ev, pid, exe, &c, c_ino);
    assert_eq!(
        (un.syscall, sizes(&un)),
        (ChangeSyscall::IoUringUnlinkat, (Some(3 * MIB), None))
    );
    assert_eq!(tamper_detections(&sensor, pid), ["unlink"]);
    let (pid, _, _) = run_uring(
        vec!["--linked".into(), "unlink".into(), "f.safetensors".into()],
        root.path(),
    )
    .unwrap();
    let (ev, un) = change_of(&sensor, Action::Unlink, pid);
    assert_file(&ev, pid, exe, &f, f_ino);
    assert_eq!(un.syscall, ChangeSyscall::IoUringUnlinkat);
    assert_eq!(tamper_detections(&sensor, pid), ["unlink"]);

    // IORING_OP_LINKAT: a new hard link outside the roots.
    let link = out.path().join("newname");
    let (pid, _, _) = run_uring(vec!["link".into(), os(&d), os(&link)], out.path()).unwrap();
    let (ev, l) = change_of(&sensor, Action::Link, pid);
    assert_file(&ev, pid, exe, &d, d_ino);
    assert_eq!(l.syscall, ChangeSyscall::IoUringLinkat);
    assert_eq!(
        (path_of(&l.old_path), path_of(&l.new_path)),
        (Some(bytes(&d)), Some(bytes(&link)))
    );
    assert_eq!(tamper_detections(&sensor, pid), ["link"]);

    // IORING_OP_SYMLINKAT: a link with a weight file's name, made relative
    // to a directory descriptor, to a watched file: a create.
    let s = root.path().join("s.safetensors");
    let mut args = dir(root.path()).to_vec();
    args.extend([
        "symlink".into(),
        "d.safetensors".into(),
        "s.safetensors".into(),
    ]);
    let (pid, _, _) = run_uring(args, out.path()).unwrap();
    let (ev, sl) = change_of(&sensor, Action::Create, pid);
    assert_file(&ev, pid, exe, &s, d_ino);
    assert_eq!(sl.syscall, ChangeSyscall::IoUringSymlinkat);
    assert_eq!(sl.file_type, Some(sensor::event::EntryType::Symlink));
    assert_eq!(
        (path_of(&sl.old_path), path_of(&sl.new_path)),
        (Some(b"d.safetensors".to_vec()), Some(bytes(&s)))
    );
    assert_eq!(tamper_detections(&sensor, pid), ["create"]);

    // IORING_OP_OPENAT for writing, IORING_OP_OPENAT2 with O_TRUNC: the
    // flags as passed.
    let (pid, _, stdout) = run_uring(vec!["write-open".into(), os(&e)], out.path()).unwrap();
    let fd = |op: &str| -> i32 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{op} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ev, w) = change_of(&sensor, Action::WriteOpen, pid);
    assert_file(&ev, pid, exe, &e, e_ino);
    assert_eq!(
        (w.syscall, w.fd, w.flags.unwrap() & 0o1003),
        (ChangeSyscall::IoUringOpenat, Some(fd("open")), 0o1)
    );
    assert_eq!(sizes(&w), (Some(MIB), Some(MIB)));
    let (ev, t) = change_of(&sensor, Action::Truncate, pid);
    assert_file(&ev, pid, exe, &e, e_ino);
    assert_eq!(
        (t.syscall, t.fd, t.flags.unwrap() & 0o1003),
        (ChangeSyscall::IoUringOpenat2, Some(fd("open2")), 0o1001)
    );
    assert_eq!(sizes(&t), (Some(MIB), Some(0)));
    let found = tamper_detections(&sensor, pid);
    assert!(
        found.contains(&"write_open".to_owned()) && found.contains(&"truncate".to_owned()),
        "{found:?}"
    );

    // IORING_OP_FTRUNCATE (6.9+) through a descriptor, then through a
    // fixed-file slot (no descriptor: fd -1), each with the state before
    // and after. The descriptor's open(2) O_RDWR is a write open.
    let (pid, code, stdout) = run_uring(vec!["ftruncate".into(), os(&g)], out.path()).unwrap();
    sensor.wait_exit(pid);
    let truncations: Vec<ChangeDetail> = sensor
        .events_by_pid(Action::Truncate, pid)
        .iter()
        .map(|e| {
            assert_file(e, pid, exe, &g, g_ino);
            match &tests::access(e).detail {
                AccessDetail::Change(c) => (**c).clone(),
                other => panic!("not a change: {other:?}"),
            }
        })
        .collect();
    if code == 78 {
        // The kernel has no such request: nothing was truncated.
        assert!(stdout.contains("ftruncate unsupported"), "{stdout}");
        assert!(truncations.is_empty(), "{truncations:#?}");
    } else {
        assert!(
            stdout.contains("ftruncate 0\n") && stdout.contains("ftruncate_fixed 0\n"),
            "{stdout}"
        );
        let seen: Vec<_> = truncations
            .iter()
            .map(|t| (t.syscall, t.length, sizes(t), t.fd.unwrap() >= 0))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    ChangeSyscall::IoUringFtruncate,
                    Some(4096),
                    (Some(MIB), Some(4096)),
                    true
                ),
                (
                    ChangeSyscall::IoUringFtruncate,
                    Some(0),
                    (Some(4096), Some(0)),
                    false
                ),
            ]
        );
        assert_eq!(truncations[1].fd, Some(-1));
        assert!(tamper_detections(&sensor, pid).contains(&"truncate".to_owned()));
    }

    // Control: the same outside the roots.
    let control = [
        run_uring(
            vec!["rename".into(), os(&v), os(&out.path().join("v3"))],
            out.path(),
        ),
        run_uring(
            vec!["link".into(), os(&u), os(&out.path().join("u2"))],
            out.path(),
        ),
        run_uring(vec!["write-open".into(), os(&u)], out.path()),
        run_uring(vec!["unlink".into(), os(&u)], out.path()),
    ]
    .map(|r| r.unwrap().0);
    let (_, events) = sensor.stop_events();
    for pid in control {
        let by: Vec<_> = events
            .iter()
            .filter(|e| e.action.is_change() && tests::process(e).pid == pid)
            .collect();
        assert!(by.is_empty(), "{pid}: {by:#?}");
    }
}
