//! Kernel capture of weight-file access, end to end: the real programs in
//! the running kernel, driven by real processes, asserting exact records.

#![allow(clippy::unwrap_used)]

use std::{fs, process::Command, time::Duration};

use sensor::event::{Action, Event, FlushReason, Text, Tier};
use serde_json::Value;
use tests::{
    RECORD_TIMEOUT, SensorProcess, access_mode, briefs, exe, file, identity, is_by, open_flags,
    path, process, python, read_summary, read_total, run, write_file,
};

const MIB: u64 = 1024 * 1024;

fn only(events: Vec<Event>, what: &str) -> Event {
    assert_eq!(
        events.len(),
        1,
        "expected exactly one {what}: {:#?}",
        briefs(&events)
    );
    events.into_iter().next().unwrap()
}

#[test]
fn cat_of_64_mib_weight_file_is_an_open_and_one_read_summary() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, 64 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = run(Command::new("cat").arg(&weights));
    sensor.wait_exit(pid);

    let (dev, ino) = identity(&weights);
    // Decoding already checked the schema (`weightwarden/1`).
    let open = only(sensor.events_by_pid(Action::Open, pid), "open");
    assert_eq!(path(&open), weights);
    let f = file(&open);
    assert_eq!((f.dev, f.ino, f.size), (dev, ino, 64 * MIB), "{f:?}");
    assert_eq!(
        access_mode(open_flags(&open)),
        libc::O_RDONLY,
        "{:?}",
        tests::access(&open)
    );
    assert_eq!(process(&open).comm, "cat");
    assert_eq!(exe(&open), fs::canonicalize("/usr/bin/cat").unwrap());
    assert_eq!(
        process(&open).args.get(1),
        Some(&Text::from(weights.as_path()))
    );
    assert_eq!(open.tier, Tier::Tracepoint);

    let read = only(sensor.events_by_pid(Action::Read, pid), "read summary");
    let summary = read_summary(&read);
    assert_eq!(summary.bytes, 67_108_864, "{summary:?}");
    assert_eq!(summary.coverage, 1.0);
    assert_eq!(summary.reason, FlushReason::Close);
    assert!(summary.calls >= 1, "{summary:?}");
    assert_eq!(file(&read).ino, ino);

    only(sensor.events_by_pid(Action::Close, pid), "close");
    let (status, _) = sensor.stop();
    assert!(status.success(), "SIGTERM must exit 0: {status:?}");
}

#[test]
fn python_mmap_is_an_mmap_record_with_prot_and_flags() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("model.gguf");
    write_file(&file, 64 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = python(
        "import mmap, sys\n\
         f = open(sys.argv[1], 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)\n\
         total = sum(m[i] for i in range(0, len(m), 4096))\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let mmap = only(sensor.events_by_pid(Action::Mmap, pid), "mmap");
    tests::assert_read_only_private_mapping(&mmap, &file, 64 * MIB);
    assert_eq!(exe(&mmap), tests::python_exe());
}

#[test]
fn dd_with_small_blocks_is_summarised_not_one_event_per_read() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.bin");
    write_file(&file, 4 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = run(Command::new("dd")
        .arg(format!("if={}", file.display()))
        .arg("of=/dev/null")
        .arg("bs=4096")
        .stderr(std::process::Stdio::null()));
    sensor.wait_exit(pid);
    let read = only(sensor.events_by_pid(Action::Read, pid), "read summary");
    let summary = read_summary(&read);
    assert_eq!(summary.bytes, 4 * MIB, "{summary:?}");
    // 1024 full blocks and the read that returns end of file.
    assert_eq!(summary.calls, 1025, "{summary:?}");
}

#[test]
fn pread_at_offsets_counts_bytes_and_partial_coverage() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.pt");
    write_file(&file, 4 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // The first quarter, with os.pread (pread64) and os.preadv (which
    // CPython issues as preadv2; preadv itself is in syscalls.rs).
    let pid = python(
        "import os, sys\n\
         fd = os.open(sys.argv[1], os.O_RDONLY)\n\
         for off in range(0, 512 * 1024, 65536): os.pread(fd, 65536, off)\n\
         bufs = [bytearray(65536) for _ in range(8)]\n\
         os.preadv(fd, bufs, 512 * 1024)\n\
         os.close(fd)\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let read = only(sensor.events_by_pid(Action::Read, pid), "read summary");
    let summary = read_summary(&read);
    assert_eq!(
        (summary.bytes, summary.calls, summary.coverage),
        (MIB, 9, 0.25),
        "(bytes, calls, coverage): {summary:?}"
    );
}

#[test]
fn unwatched_files_produce_no_file_records() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let watched = root.path().join("a.safetensors");
    let wrong_ext = root.path().join("notes.txt");
    let outside = elsewhere.path().join("b.safetensors");
    for f in [&watched, &wrong_ext, &outside] {
        write_file(f, MIB as usize);
    }
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = run(Command::new("cat")
        .arg(&wrong_ext)
        .arg(&outside)
        .arg(&watched));
    sensor.wait_exit(pid);
    assert!(sensor.file_events(&wrong_ext).is_empty());
    assert!(sensor.file_events(&outside).is_empty());
    // The control: the watched one in the same process was seen.
    assert_eq!(read_total(&sensor.file_events(&watched)), MIB);
    let file_actions = sensor.events_by_pid(Action::Open, pid).len();
    assert_eq!(file_actions, 1);
}

#[test]
fn files_created_while_running_are_watched_within_a_second() {
    let root = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let sub = root.path().join("new-model");
    fs::create_dir(&sub).unwrap();
    let file = sub.join("late.gguf");
    write_file(&file, MIB as usize);
    std::thread::sleep(Duration::from_secs(1));
    let pid = run(Command::new("cat").arg(&file));
    sensor.wait_exit(pid);
    assert_eq!(read_total(&sensor.events_by_pid(Action::Read, pid)), MIB);

    // Renamed in from a non-weight name.
    let staged = root.path().join("download.part");
    write_file(&staged, MIB as usize);
    let renamed = root.path().join("final.safetensors");
    fs::rename(&staged, &renamed).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let pid = run(Command::new("cat").arg(&renamed));
    sensor.wait_exit(pid);
    let open = only(sensor.events_by_pid(Action::Open, pid), "open");
    assert_eq!(path(&open), renamed);
}

#[test]
fn exec_and_exit_records_carry_process_context() {
    let root = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let before = tests::now_ns();
    let child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    let after = tests::now_ns();
    assert_eq!(status.code(), Some(3));
    let exit = sensor.wait_exit(pid);
    assert_eq!(
        exit.exit.and_then(|x| x.code()),
        Some(3),
        "{}",
        tests::brief(&exit)
    );
    let exec = sensor.wait_for_event("exec", RECORD_TIMEOUT, |e| is_by(e, Action::Exec, pid));
    let execed = process(&exec);
    assert_eq!(
        execed.args,
        ["sh", "-c", "exit 3"].map(Text::from),
        "{execed:?}"
    );
    assert_eq!(execed.ppid, std::process::id());
    assert_eq!(
        execed.ancestors.first().map(|a| a.pid),
        Some(std::process::id()),
        "{execed:?}"
    );
    // The process started between the spawn and its reaping (a few ms of
    // slack: the kernel's boot clock is turned into wall time).
    let start = execed.start_time.expect("a start time").unix_ns;
    let slack = 20_000_000;
    assert!(
        before - slack <= start && start <= after + slack,
        "start_time {start} not within [{before}, {after}] ns: {}",
        tests::brief(&exec)
    );
    assert_eq!(process(&exit).start_time, execed.start_time);
    assert_eq!(exe(&exec), fs::canonicalize("/bin/sh").unwrap());
}

#[test]
fn creat_and_openat2_are_seen() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.onnx");
    write_file(&file, 8192);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // openat2(2) has no libc wrapper: call it by number with an open_how
    // {flags, mode, resolve}. creat(2) then truncates the file for writing.
    let pid = python(
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         class How(ctypes.Structure): _fields_ = [('flags', ctypes.c_uint64), ('mode', ctypes.c_uint64), ('resolve', ctypes.c_uint64)]\n\
         how = How(os.O_RDONLY, 0, 0)\n\
         fd = libc.syscall(437, -100, sys.argv[1].encode(), ctypes.byref(how), ctypes.sizeof(how))\n\
         assert fd >= 0, ctypes.get_errno()\nos.read(fd, 8192)\nos.close(fd)\n\
         fd = libc.creat(sys.argv[1].encode(), 0o644)\nassert fd >= 0\nos.close(fd)\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let opens = sensor.events_by_pid(Action::Open, pid);
    assert_eq!(opens.len(), 2, "{:#?}", briefs(&opens));
    let modes: Vec<_> = opens.iter().map(|o| access_mode(open_flags(o))).collect();
    assert_eq!(
        modes,
        [libc::O_RDONLY, libc::O_WRONLY],
        "{:#?}",
        briefs(&opens)
    );
    assert_eq!(read_total(&sensor.events_by_pid(Action::Read, pid)), 8192);
}

#[test]
fn readv_and_preadv2_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.h5");
    write_file(&file, 4 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = python(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n\
         os.readv(fd, [bytearray(MIB) for _ in range(2)])\n\
         os.preadv(fd, [bytearray(MIB)], 2 * MIB, os.RWF_HIPRI)  # flags: preadv2\n\
         os.preadv(fd, [bytearray(MIB)], 3 * MIB)\n"
            .replace("MIB", "1048576")
            .as_str(),
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let read = only(sensor.events_by_pid(Action::Read, pid), "read summary");
    let summary = read_summary(&read);
    assert_eq!(
        (
            summary.bytes,
            summary.calls,
            summary.coverage,
            summary.reason
        ),
        (4 * MIB, 3, 1.0, FlushReason::Exit),
        "(bytes, calls, coverage, reason): {summary:?}"
    );
}

#[test]
fn long_lived_readers_are_flushed_periodically_and_when_idle() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("slow.safetensors");
    write_file(&file, 4 * MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &["--read-flush-interval", "1"]);
    // Reads 1 MiB every 0.6 s for four reads, then idles with the
    // descriptor open until told to stop.
    let reader = tests::Interactive::start(
        "import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n\
         for _ in range(4):\n    os.read(fd, 1048576)\n    time.sleep(0.6)\n\
         sys.stdin.readline()\n",
        &[file.as_os_str()],
    );
    let pid = reader.pid();
    let idle = sensor.wait_for_event("idle summary", Duration::from_secs(15), |e| {
        is_by(e, Action::Read, pid) && read_summary(e).reason == FlushReason::Idle
    });
    assert!(reader.finish());
    sensor.wait_exit(pid);
    let reads = sensor.events_by_pid(Action::Read, pid);
    let reasons: Vec<_> = reads.iter().map(|r| read_summary(r).reason).collect();
    assert!(reasons.contains(&FlushReason::Interval), "{reasons:?}");
    assert_eq!(read_total(&reads), 4 * MIB, "{reasons:?}");
    assert_eq!(exe(&idle), tests::python_exe());
}

#[test]
fn the_acting_user_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("public.gguf");
    write_file(&file, 4096);
    fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&file));
    sensor.wait_exit(pid);
    let open = only(sensor.events_by_pid(Action::Open, pid), "open");
    let p = process(&open);
    assert_eq!(
        (p.uid, p.gid, p.comm.as_str()),
        (65534, 65534, "cat"),
        "{p:?}"
    );
}

#[test]
fn hugging_face_and_ollama_cache_layouts_are_watched() {
    let root = tempfile::tempdir().unwrap();
    // Hugging Face hub: extension-less blobs behind weight-named symlinks.
    let repo = root.path().join("hub/models--meta-llama--Llama-3-8B");
    let hash = "a".repeat(64);
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(repo.join("snapshots/0123abc")).unwrap();
    write_file(&repo.join("blobs").join(&hash), MIB as usize);
    let link = repo.join("snapshots/0123abc/model-00001-of-00004.safetensors");
    std::os::unix::fs::symlink(format!("../../blobs/{hash}"), &link).unwrap();
    // Ollama: sha256-<hex> blobs.
    let ollama = root.path().join("ollama/models/blobs");
    fs::create_dir_all(&ollama).unwrap();
    let blob = ollama.join(format!("sha256-{}", "b".repeat(64)));
    write_file(&blob, MIB as usize);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = run(Command::new("cat").arg(&link).arg(&blob));
    sensor.wait_exit(pid);
    let reads = sensor.events_by_pid(Action::Read, pid);
    let paths: Vec<_> = reads.iter().map(path).collect();
    assert!(paths.contains(&link.as_path()), "{paths:?}");
    assert!(paths.contains(&blob.as_path()), "{paths:?}");
    assert_eq!(read_total(&reads), 2 * MIB);
}

/// A deleted file leaves the watch set; one renamed to a name that is not a
/// weight file's stays watched while it lives (issue 9, item 5: its reads
/// are still counted, under its new name). tests/tests/filesystems.rs
/// covers renames out of the root and hard links.
#[test]
fn deleted_files_leave_the_watch_set_and_renamed_away_ones_stay() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a.safetensors");
    let b = root.path().join("b.safetensors");
    let keep = root.path().join("keep.safetensors");
    for f in [&a, &b, &keep] {
        write_file(f, 4096);
    }
    let sensor = SensorProcess::start(&[root.path()], &["--heartbeat-interval", "1"]);
    let watched = |e: &Event| e.sensor.as_ref().map(|s| s.watched_files);
    assert_eq!(watched(&sensor.events()[0]), Some(3));
    fs::remove_file(&a).unwrap();
    let c = root.path().join("b.safetensors.bak");
    fs::rename(&b, &c).unwrap();
    sensor.wait_for_event("heartbeat with 2 watched", Duration::from_secs(5), |e| {
        e.action == Action::Heartbeat
            && watched(e) == Some(2)
            && e.sensor.as_ref().unwrap().counter("watch", "retained") == 1
    });
    let renamed = run(Command::new("cat").arg(&c));
    // The control: the file still under its weight name, read the same way.
    let control = run(Command::new("cat").arg(&keep));
    // Stopped, the agent has drained everything the kernel queued.
    let (_, events) = sensor.stop_events();
    let of = |action, pid| tests::of_pid(&events, action, pid);
    let opens = of(Action::Open, control);
    assert_eq!(opens.len(), 1, "the control's open");
    assert_eq!(path(opens[0]), keep);
    let opens = of(Action::Open, renamed);
    assert_eq!(opens.len(), 1, "{:?}", briefs(opens));
    assert_eq!(path(opens[0]), c);
    assert_eq!(read_total(of(Action::Read, renamed)), 4096);
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(stop.watched_files, 2);
    assert_eq!(stop.counter("watch", "retained_gone"), 1, "the deleted one");
}

/// Linux names are bytes: two files whose names differ only in invalid
/// UTF-8 must stay two names in the records, and an argument that is not
/// UTF-8 must come back byte for byte.
#[test]
fn names_and_arguments_that_are_not_utf8_keep_their_bytes() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt};

    let root = tempfile::tempdir().unwrap();
    let names: [&[u8]; 2] = [b"x\xff.gguf", b"x\xfe.gguf"];
    let files: Vec<_> = names
        .iter()
        .map(|name| root.path().join(OsStr::from_bytes(name)))
        .collect();
    for file in &files {
        write_file(file, 4096);
    }
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pids: Vec<u32> = files
        .iter()
        .map(|file| run(Command::new("cat").arg(file)))
        .collect();
    for &pid in &pids {
        sensor.wait_exit(pid);
    }
    for (file, &pid) in files.iter().zip(&pids) {
        let open = only(sensor.events_by_pid(Action::Open, pid), "open");
        assert_eq!(path(&open), file, "{}", tests::brief(&open));
        let args = &process(&open).args;
        assert_eq!(args.last(), Some(&Text::from(file.as_os_str().as_bytes())));
    }
    // The readable forms collide; the raw records do not.
    let raw: Vec<Value> = sensor
        .records()
        .into_iter()
        .filter(|r| r["action"] == "open")
        .collect();
    let readable: Vec<_> = raw.iter().map(|r| r["file"]["path"].clone()).collect();
    assert_eq!(readable.len(), 2, "{raw:?}");
    assert_eq!(readable[0], readable[1]);
    assert_ne!(
        raw[0]["file"]["path_escaped"],
        raw[1]["file"]["path_escaped"]
    );
    assert!(
        raw[0]["file"]["path_escaped"]
            .as_str()
            .unwrap()
            .ends_with("x\\xff.gguf")
    );
}
