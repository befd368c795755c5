//! Tampering with a weight file is one record per operation, attributed to
//! the process that did it, naming the file (path, dev, ino) with its state
//! before and after: opens for writing (`dd conv=notrunc`) or with
//! `O_TRUNC` (`: > FILE`), `truncate -s 0`, Python's `os.truncate` and
//! `os.ftruncate`, `mv` over a watched file (the replaced inode named),
//! `mv` away, `rm` (also by a relative path), `chmod`, `chown`, `ln`, and
//! a dirfd-relative `renameat`. The same operations on files outside the
//! roots are no record.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sensor::event::{AccessDetail, Action, ChangeDetail, ChangeSyscall, Event};
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
