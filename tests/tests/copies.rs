//! In-kernel copies of a weight file are reads: `cp` (copy_file_range),
//! Python's `shutil.copyfile` (sendfile), `os.splice` into a pipe and
//! `os.sendfile` into a socket each leave a read summary with the bytes
//! moved, the file's coverage and how many of its calls were copies, and
//! one `copy` record saying where the bytes went (the destination file's
//! path and identity, a pipe, a socket and its peer). A copy at an explicit
//! offset covers only that range.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use sensor::event::{AccessDetail, Action, CopyDetail, CopySyscall, DestinationKind, ReadSummary};
use tests::{SensorProcess, read_summary, run, write_file};

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 8 * MIB;

/// Every read summary of `pid`, summed: bytes, calls, copies, and the
/// coverage of the last one (the process's union so far).
fn reads_of(sensor: &SensorProcess, pid: u32) -> (u64, u64, u64, f64) {
    sensor.wait_exit(pid);
    // Of watched files only: a pipe the copy went into is followed once
    // the agent has seen the copy (lineage), and a thread of the copier
    // draining it reads that pipe.
    let events: Vec<_> = sensor
        .events_by_pid(Action::Read, pid)
        .into_iter()
        .filter(|e| e.file.as_ref().is_some_and(|f| f.derived_from.is_none()))
        .collect();
    assert!(!events.is_empty(), "no read summary for {pid}");
    let summaries: Vec<&ReadSummary> = events.iter().map(read_summary).collect();
    (
        summaries.iter().map(|s| s.bytes).sum(),
        summaries.iter().map(|s| s.calls).sum(),
        summaries.iter().map(|s| s.copies).sum(),
        summaries.last().map_or(0.0, |s| s.coverage),
    )
}

/// The one `copy` record of `pid`: where its copies went.
fn copy_of(sensor: &SensorProcess, pid: u32) -> CopyDetail {
    let copies = sensor.events_by_pid(Action::Copy, pid);
    assert_eq!(copies.len(), 1, "{pid}: {copies:#?}");
    match &tests::access(&copies[0]).detail {
        AccessDetail::Copy(c) => c.clone(),
        other => panic!("not a copy: {other:?}"),
    }
}

fn python(code: &str, args: &[&Path]) -> u32 {
    run(tests::python_command().arg("-c").arg(code).args(args))
}

#[test]
fn in_kernel_copies_are_counted_as_reads_with_their_bytes() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, SIZE as usize);
    let out = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);

    // coreutils cp: copy_file_range.
    let cp = run(Command::new("cp")
        .arg(&weights)
        .arg(out.path().join("cp.bin")));
    let (bytes, calls, copies, coverage) = reads_of(&sensor, cp);
    assert_eq!((bytes, coverage), (SIZE, 1.0), "cp");
    assert!(
        copies > 0 && copies == calls,
        "cp: {copies} copies of {calls} calls"
    );

    // shutil.copyfile: sendfile on Linux.
    let shutil = python(
        "import shutil, sys\nshutil.copyfile(sys.argv[1], sys.argv[2])",
        &[&weights, &out.path().join("shutil.bin")],
    );
    let (bytes, _, copies, coverage) = reads_of(&sensor, shutil);
    assert_eq!((bytes, coverage), (SIZE, 1.0), "shutil.copyfile");
    assert!(copies > 0, "shutil.copyfile made no copy call");
    let copy = copy_of(&sensor, shutil);
    assert_eq!(
        (copy.syscall, copy.destination.kind),
        (CopySyscall::Sendfile, DestinationKind::File)
    );

    // splice into a pipe, drained by a thread.
    let splice = python(
        "import os, sys, threading\n\
         r, w = os.pipe()\n\
         def drain():\n    while os.read(r, 1 << 16):\n        pass\n\
         t = threading.Thread(target=drain); t.start()\n\
         f = os.open(sys.argv[1], os.O_RDONLY)\n\
         while os.splice(f, w, 1 << 16):\n    pass\n\
         os.close(w); t.join()",
        &[&weights],
    );
    let (bytes, _, copies, coverage) = reads_of(&sensor, splice);
    assert_eq!((bytes, coverage), (SIZE, 1.0), "splice");
    assert!(copies > 0);
    let copy = copy_of(&sensor, splice);
    assert_eq!(
        (copy.syscall, copy.destination.kind, copy.destination.path),
        (CopySyscall::Splice, DestinationKind::Pipe, None)
    );

    // sendfile into a socket.
    let socket = python(
        "import os, socket, sys, threading\n\
         a, b = socket.socketpair()\n\
         def drain():\n    while b.recv(1 << 16):\n        pass\n\
         t = threading.Thread(target=drain); t.start()\n\
         f = os.open(sys.argv[1], os.O_RDONLY)\n\
         off = 0\n\
         while True:\n    n = os.sendfile(a.fileno(), f, off, 1 << 20)\n    if n == 0:\n        break\n    off += n\n\
         a.shutdown(socket.SHUT_WR); t.join()",
        &[&weights],
    );
    let (bytes, _, copies, coverage) = reads_of(&sensor, socket);
    assert_eq!((bytes, coverage), (SIZE, 1.0), "sendfile to a socket");
    assert!(copies > 0);
    let copy = copy_of(&sensor, socket);
    assert_eq!(
        (copy.destination.kind, copy.destination.peer.as_deref()),
        (DestinationKind::Socket, Some("unix"))
    );

    // sendfile to a TCP peer on loopback: the record names it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut sink).unwrap();
        sink.len()
    });
    let tcp = run(tests::python_command()
        .arg("-c")
        .arg(
            "import os, socket, sys\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[2])))\n\
             f = os.open(sys.argv[1], os.O_RDONLY)\n\
             off = 0\n\
             while True:\n    n = os.sendfile(s.fileno(), f, off, 1 << 20)\n    if n == 0:\n        break\n    off += n\n\
             s.close()",
        )
        .arg(&weights)
        .arg(port.to_string()));
    assert_eq!(receiver.join().unwrap() as u64, SIZE);
    let (bytes, _, _, _) = reads_of(&sensor, tcp);
    assert_eq!(bytes, SIZE, "sendfile over TCP");
    let copy = copy_of(&sensor, tcp);
    assert_eq!(
        (copy.destination.kind, copy.destination.peer),
        (DestinationKind::Socket, Some(format!("127.0.0.1:{port}")))
    );

    // An explicit source offset: 1 MiB from 4 MiB on, an eighth of the file.
    let ranged = python(
        "import os, sys\n\
         f = os.open(sys.argv[1], os.O_RDONLY)\n\
         o = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o600)\n\
         left = 1 << 20\n\
         off = 4 << 20\n\
         while left:\n    n = os.copy_file_range(f, o, left, off)\n    off += n\n    left -= n",
        &[&weights, &out.path().join("ranged.bin")],
    );
    let (bytes, _, copies, coverage) = reads_of(&sensor, ranged);
    assert_eq!(bytes, MIB, "copy_file_range at an offset");
    assert!((coverage - 0.125).abs() < 1e-9, "coverage {coverage}");
    assert!(copies > 0);

    // Control: cat reads, and makes no copy call.
    let cat = run(Command::new("cat").arg(&weights));
    let (bytes, _, copies, _) = reads_of(&sensor, cat);
    assert_eq!((bytes, copies), (SIZE, 0));
    assert!(sensor.events_by_pid(Action::Copy, cat).is_empty());
    let (status, _) = sensor.stop_events();
    assert!(status.success());
}

/// A reflink moves no byte but copies the file: `cp --reflink=always` on
/// xfs (FICLONE) and a FICLONERANGE of one MiB are reads of what they
/// cloned, with a `copy` record naming the clone.
#[test]
fn reflinks_are_copies_of_the_range_they_clone() {
    let fs = tests::LoopFs::mount(&["mkfs.xfs", "-q", "-m", "reflink=1"], 512);
    let weights = fs.dir.path().join("models/llama.safetensors");
    std::fs::create_dir(fs.dir.path().join("models")).unwrap();
    write_file(&weights, SIZE as usize);
    let sensor = SensorProcess::start(&[&fs.dir.path().join("models")], &[]);

    let clone = fs.dir.path().join("clone.bin");
    let cp = run(Command::new("cp")
        .arg("--reflink=always")
        .arg(&weights)
        .arg(&clone));
    let (bytes, _, copies, coverage) = reads_of(&sensor, cp);
    assert_eq!((bytes, coverage), (SIZE, 1.0), "cp --reflink=always");
    assert!(copies > 0);
    let copy = copy_of(&sensor, cp);
    assert_eq!(copy.syscall, CopySyscall::Ficlone);
    assert_eq!(copy.bytes, SIZE);
    assert_eq!(copy.destination.ino, tests::identity(&clone).1);

    // FICLONERANGE: 1 MiB from 2 MiB on (xfs clones whole blocks).
    let ranged = python(
        "import fcntl, os, struct, sys\n\
         src = os.open(sys.argv[1], os.O_RDONLY)\n\
         dst = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)\n\
         os.ftruncate(dst, 8 << 20)\n\
         FICLONERANGE = 0x4020940d\n\
         fcntl.ioctl(dst, FICLONERANGE, struct.pack('qQQQ', src, 2 << 20, 1 << 20, 0))",
        &[&weights, &fs.dir.path().join("ranged.bin")],
    );
    let (bytes, _, _, coverage) = reads_of(&sensor, ranged);
    assert_eq!(bytes, MIB, "FICLONERANGE of 1 MiB");
    assert!((coverage - 0.125).abs() < 1e-9, "coverage {coverage}");
    assert_eq!(copy_of(&sensor, ranged).syscall, CopySyscall::FicloneRange);
    let (status, _) = sensor.stop_events();
    assert!(status.success());
}
