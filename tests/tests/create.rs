//! A new weight file appearing in a watched folder is a `create` record
//! and a `tamper` detection, with the file's identity and state after,
//! whatever made it: an open that created it (`cp`, `touch`, Python's
//! `open('w')`, `open`/`openat`/`openat2`/`creat` by number, io_uring
//! `OPENAT`), `mknod` (a regular file, a FIFO, a device node), or a name
//! given to a file no one watched (`mv` or `ln` from outside the roots,
//! `ln -s`), also in a folder made a moment before. Files with other names,
//! files made outside the roots and opens of existing files are not. A
//! creator writing its new file is one record; tamper records of a derived
//! file name its original.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use sensor::event::{
    AccessDetail, Action, ChangeDetail, ChangeSyscall, DetectionId, EntryType, Event,
};
use tests::{SensorProcess, briefs, build_helper, identity, python, run, write_file};

const O_CREAT: u32 = 0o100;

fn change(e: &Event) -> &ChangeDetail {
    match &tests::access(e).detail {
        AccessDetail::Change(c) => c,
        other => panic!("not a change: {other:?}"),
    }
}

/// `changes MODE FILE [TO]` (helpers/changes.c); returns its pid.
fn helper(exe: &Path, mode: &str, file: &Path, to: Option<&Path>) -> u32 {
    run(Command::new(exe).arg(mode).arg(file).args(to))
}

/// A stopped run's records, with what the tests ask of them.
struct Run {
    events: Vec<Event>,
}

impl Run {
    /// The tampering records of `pid`.
    fn changes_by(&self, pid: u32) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.action.is_change() && tests::process(e).pid == pid)
            .collect()
    }

    fn describe(&self, pid: u32) -> String {
        briefs(
            self.events
                .iter()
                .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid)),
        )
        .join("\n")
    }

    /// The one tampering record of `pid`: a `create` of `path` (the file
    /// there now, not following a link), by `syscall`, of `kind`, with a
    /// `tamper` detection. Returns its change detail.
    fn created(
        &self,
        pid: u32,
        path: &Path,
        syscall: ChangeSyscall,
        kind: EntryType,
    ) -> &ChangeDetail {
        let records = self.changes_by(pid);
        assert_eq!(records.len(), 1, "{pid}:\n{}", self.describe(pid));
        let e = records[0];
        assert_eq!(e.action, Action::Create, "{}", self.describe(pid));
        assert_eq!(tests::path(e), path);
        let c = change(e);
        assert_eq!((c.syscall, c.file_type), (syscall, Some(kind)), "{c:?}");
        assert!(c.result >= 0, "{c:?}");
        let after = c.after.expect("after");
        assert_eq!(after.ino, tests::file(e).ino);
        assert!(after.mtime.is_some());
        let tamper: Vec<_> = self
            .events
            .iter()
            .filter(|d| {
                d.detection
                    .as_ref()
                    .is_some_and(|d| d.id == DetectionId::Tamper)
                    && tests::process(d).pid == pid
            })
            .collect();
        assert_eq!(tamper.len(), 1, "{}", self.describe(pid));
        let detection = tamper[0].detection.as_ref().unwrap();
        assert_eq!(detection.matched.as_deref(), Some("create"));
        c
    }
}

fn ino_of(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    std::os::unix::fs::MetadataExt::ino(&meta)
}

#[test]
fn new_weight_files_in_watched_folders_are_create_records() {
    let bin = tempfile::tempdir().unwrap();
    let changes = build_helper(bin.path(), "changes");
    let uring = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("exists.safetensors"), b"x").unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    let src = out.join("src.bin");
    write_file(&src, 1 << 20);
    for name in ["to-move", "to-link", "control-move"] {
        write_file(&out.join(name), 4096);
    }
    let sensor = SensorProcess::start(&[root], &[]);
    let mut inos = Vec::new();
    let mut made = |pid: u32, path: PathBuf, syscall, kind| {
        inos.push(ino_of(&path));
        (pid, path, syscall, kind)
    };
    let p = |name: &str| root.join(name);

    // Created by an open.
    let cases = vec![
        made(
            run(Command::new("cp").arg(&src).arg(p("cp.safetensors"))),
            p("cp.safetensors"),
            ChangeSyscall::Openat,
            EntryType::Regular,
        ),
        made(
            python(
                "open(__import__('sys').argv[1], 'w').write('x')",
                &[p("sub/py.gguf").to_str().unwrap()],
            ),
            p("sub/py.gguf"),
            ChangeSyscall::Openat,
            EntryType::Regular,
        ),
        made(
            run(Command::new("touch").arg(p("touched.safetensors"))),
            p("touched.safetensors"),
            ChangeSyscall::Openat,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "open_create", &p("open.safetensors"), None),
            p("open.safetensors"),
            ChangeSyscall::Open,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "openat_create", &p("openat.safetensors"), None),
            p("openat.safetensors"),
            ChangeSyscall::Openat,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "openat2_create", &p("openat2.safetensors"), None),
            p("openat2.safetensors"),
            ChangeSyscall::Openat2,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "creat_create", &p("creat.safetensors"), None),
            p("creat.safetensors"),
            ChangeSyscall::Creat,
            EntryType::Regular,
        ),
        // mknod: a regular file, FIFOs, a device node.
        made(
            helper(&changes, "mknodat_reg", &p("mknod.safetensors"), None),
            p("mknod.safetensors"),
            ChangeSyscall::Mknodat,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "mknod_fifo", &p("fifo.safetensors"), None),
            p("fifo.safetensors"),
            ChangeSyscall::Mknod,
            EntryType::Fifo,
        ),
        made(
            run(Command::new("mkfifo").arg(p("mkfifo.gguf"))),
            p("mkfifo.gguf"),
            ChangeSyscall::Mknodat,
            EntryType::Fifo,
        ),
        made(
            helper(&changes, "mknodat_chr", &p("null.safetensors"), None),
            p("null.safetensors"),
            ChangeSyscall::Mknodat,
            EntryType::CharDevice,
        ),
        // A name for a file no one watched.
        made(
            run(Command::new("mv")
                .arg(out.join("to-move"))
                .arg(p("moved.safetensors"))),
            p("moved.safetensors"),
            ChangeSyscall::Renameat2,
            EntryType::Regular,
        ),
        made(
            run(Command::new("ln")
                .arg(out.join("to-link"))
                .arg(p("linked.safetensors"))),
            p("linked.safetensors"),
            ChangeSyscall::Linkat,
            EntryType::Regular,
        ),
        made(
            helper(&changes, "symlink", &p("sym.safetensors"), Some(&src)),
            p("sym.safetensors"),
            ChangeSyscall::Symlink,
            EntryType::Symlink,
        ),
        // A folder made and filled at once: created before the agent has
        // put the new folder in the kernel's map.
        made(
            python(
                "import os, sys\nos.makedirs(os.path.dirname(sys.argv[1]))\nopen(sys.argv[1], 'wb').close()",
                &[p("new/deeper/fresh.safetensors").to_str().unwrap()],
            ),
            p("new/deeper/fresh.safetensors"),
            ChangeSyscall::Openat,
            EntryType::Regular,
        ),
    ];
    // io_uring OPENAT, when io_uring is available here.
    let uring_pid = {
        let child = Command::new(&uring)
            .arg("--create")
            .arg(p("uring.safetensors"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = child.wait_with_output().unwrap().status;
        if status.code() == Some(77) {
            tests::skipped("io_uring create", "io_uring is not available here");
            None
        } else {
            assert!(status.success(), "uring --create: {status:?}");
            Some(pid)
        }
    };

    // Not creates of weight files: outside the roots, another name, an
    // open of a file that exists, a move of a non-weight name.
    let controls = [
        run(Command::new("cp")
            .arg(&src)
            .arg(out.join("copy.safetensors"))),
        run(Command::new("touch").arg(p("notes.txt"))),
        run(Command::new("touch").arg(p("exists.safetensors"))),
        run(Command::new("mv")
            .arg(out.join("control-move"))
            .arg(p("moved.txt"))),
        helper(&changes, "mknod_fifo", &out.join("fifo.safetensors"), None),
    ];
    // A file made under another name and renamed over a weight file at
    // once (a download's `os.replace`): one `rename`, replacing, whenever
    // the agent handles the create's record.
    let replacer = python(
        "import os, sys
open(sys.argv[1], 'w').write('x')
os.replace(sys.argv[1], sys.argv[2])",
        &[
            p("download.part").to_str().unwrap(),
            p("exists.safetensors").to_str().unwrap(),
        ],
    );
    for pid in cases
        .iter()
        .map(|c| c.0)
        .chain(controls)
        .chain(uring_pid)
        .chain([replacer])
    {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    let r = Run { events };

    for (pid, path, syscall, kind) in &cases {
        let c = r.created(*pid, path, *syscall, *kind);
        if c.fd.is_some() {
            assert_eq!(c.flags.unwrap_or(0) & O_CREAT, O_CREAT, "{c:?}");
        }
    }
    // Opens that created and wrote: nothing more than the create.
    let cp = &cases[0];
    let cp_ino = identity(&cp.1).1;
    assert!(
        r.changes_by(cp.0)
            .iter()
            .all(|e| tests::file(e).ino == cp_ino),
        "{}",
        r.describe(cp.0)
    );
    // What each way of appearing says of itself.
    let detail = |i: usize| change(r.changes_by(cases[i].0)[0]).clone();
    let mknod = detail(7);
    assert_eq!(mknod.mode, Some(0o600));
    let null = detail(10);
    assert_eq!(null.rdev, Some((1 << 20) | 3), "makedev(1, 3)");
    let moved = detail(11);
    assert_eq!(
        moved.old_path.as_ref().map(|t| t.as_bytes()),
        Some(out.join("to-move").as_os_str().as_bytes())
    );
    let sym = detail(13);
    assert_eq!(
        sym.old_path.as_ref().map(|t| t.as_bytes()),
        Some(src.as_os_str().as_bytes()),
        "the link's contents"
    );
    // The symlink record names the regular file it leads to.
    let sym_event = r.changes_by(cases[13].0)[0];
    assert_eq!(tests::file(sym_event).ino, ino_of(&src));
    if let Some(pid) = uring_pid {
        r.created(
            pid,
            &p("uring.safetensors"),
            ChangeSyscall::IoUringOpenat,
            EntryType::Regular,
        );
    }
    for pid in controls {
        let by: Vec<Action> = r.changes_by(pid).iter().map(|e| e.action).collect();
        // Opening a weight file that exists for writing is a write open.
        let expected: &[Action] = if pid == controls[2] {
            &[Action::WriteOpen]
        } else {
            &[]
        };
        assert_eq!(by, expected, "{pid}: {}", r.describe(pid));
    }
    let replaced: Vec<&Event> = r.changes_by(replacer);
    assert_eq!(
        replaced.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Action::Rename],
        "{}",
        r.describe(replacer)
    );
    assert!(change(replaced[0]).replaced.is_some());
    // Every new weight file is watched now: the inodes are distinct files.
    let distinct: HashSet<_> = inos.iter().collect();
    assert_eq!(distinct.len(), inos.len());
}

#[test]
fn a_creator_writing_its_new_file_is_one_create_record() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("checkpoint.safetensors");
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // Create and write; once the agent watches the file (a moment later),
    // reopen it for writing, truncate it, change its mode.
    let creator = python(
        "import os, sys, time\n\
         p = sys.argv[1]\n\
         f = open(p, 'wb'); f.write(b'x' * 65536); f.flush()\n\
         time.sleep(1)\n\
         fd = os.open(p, os.O_RDWR); os.ftruncate(fd, 10); os.close(fd)\n\
         f.close()\n\
         os.chmod(p, 0o600)\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(creator);
    // Someone else truncating it is a record again.
    let other = run(Command::new("truncate").arg("-s").arg("5").arg(&file));
    sensor.wait_exit(other);
    let (_, events) = sensor.stop_events();
    let r = Run { events };
    let own = r.changes_by(creator);
    assert_eq!(
        own.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Action::Create],
        "{}",
        r.describe(creator)
    );
    let stop = r.events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(
        stop.counter("agent", "creator_changes_folded"),
        3,
        "write open, ftruncate, chmod"
    );
    let theirs: Vec<Action> = r.changes_by(other).iter().map(|e| e.action).collect();
    assert_eq!(theirs, [Action::WriteOpen, Action::Truncate]);
}

#[test]
fn tamper_records_of_a_derived_file_name_its_original() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("stash");
    let moved = out.path().join("stash2");
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // A copy held open a moment, so the agent can name it (lineage).
    let copier = python(
        "import sys, time\n\
         data = open(sys.argv[1], 'rb').read()\n\
         out = open(sys.argv[2], 'wb'); out.write(data); out.flush()\n\
         time.sleep(1)\n",
        &[weights.to_str().unwrap(), copy.to_str().unwrap()],
    );
    sensor.wait_exit(copier);
    let steps = [
        run(Command::new("truncate").arg("-s").arg("0").arg(&copy)),
        run(Command::new("chmod").arg("600").arg(&copy)),
        run(Command::new("mv").arg(&copy).arg(&moved)),
        run(Command::new("rm").arg(&moved)),
    ];
    for pid in steps {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    let r = Run { events };
    let expected = [
        vec![Action::WriteOpen, Action::Truncate],
        vec![Action::SetAttributes],
        vec![Action::Rename],
        vec![Action::Unlink],
    ];
    let original = identity(&weights);
    for (pid, actions) in steps.iter().zip(expected) {
        let records = r.changes_by(*pid);
        assert_eq!(
            records.iter().map(|e| e.action).collect::<Vec<_>>(),
            actions,
            "{}",
            r.describe(*pid)
        );
        for e in records {
            let from = tests::file(e).derived_from.as_ref().expect("derived_from");
            assert_eq!((from.dev, from.ino), original, "{e:?}");
            assert_eq!(
                from.path.as_ref().map(|p| p.as_bytes()),
                Some(weights.as_os_str().as_bytes())
            );
        }
    }
}
