//! Kernel capture of weight-file access, end to end: the real programs in
//! the running kernel, driven by real processes, asserting exact records.

#![allow(clippy::unwrap_used)]

use std::{fs, process::Command, time::Duration};

use sensor::event::{Action, Text};
use serde_json::Value;
use tests::{RECORD_TIMEOUT, SensorProcess, brief, identity, python, read_bytes, run, write_file};

const MIB: usize = 1024 * 1024;

fn only(records: Vec<Value>, what: &str) -> Value {
    assert_eq!(
        records.len(),
        1,
        "expected exactly one {what}: {:#?}",
        records.iter().map(brief).collect::<Vec<_>>()
    );
    records.into_iter().next().unwrap_or_default()
}

#[test]
fn cat_of_64_mib_weight_file_is_an_open_and_one_read_summary() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("llama.safetensors");
    write_file(&file, 64 * MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = run(Command::new("cat").arg(&file));
    sensor.wait_exit(pid);

    let (dev, ino) = identity(&file);
    let open = only(sensor.by_pid("open", pid), "open");
    assert_eq!(open["file"]["path"], file.display().to_string());
    assert_eq!(open["file"]["dev"], dev);
    assert_eq!(open["file"]["ino"], ino);
    assert_eq!(open["file"]["size"], 64 * MIB);
    assert_eq!(open["access"]["flags"][0], "O_RDONLY");
    assert_eq!(open["process"]["comm"], "cat");
    let exe = fs::canonicalize("/usr/bin/cat").unwrap();
    assert_eq!(open["process"]["exe"], exe.display().to_string());
    assert_eq!(open["process"]["args"][1], file.display().to_string());
    assert_eq!(open["schema"], "weightwarden/1");
    assert_eq!(open["tier"], "tracepoint");

    let read = only(sensor.by_pid("read", pid), "read summary");
    assert_eq!(read["access"]["bytes"], 67_108_864u64, "{read}");
    assert_eq!(read["access"]["coverage"], 1.0);
    assert_eq!(read["access"]["reason"], "close");
    assert!(read["access"]["calls"].as_u64().unwrap() >= 1);
    assert_eq!(read["file"]["ino"], ino);

    only(sensor.by_pid("close", pid), "close");
    let (status, _) = sensor.stop();
    assert!(status.success(), "SIGTERM must exit 0: {status:?}");
}

#[test]
fn python_mmap_is_an_mmap_record_with_prot_and_flags() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("model.gguf");
    write_file(&file, 64 * MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = python(
        "import mmap, sys\n\
         f = open(sys.argv[1], 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)\n\
         total = sum(m[i] for i in range(0, len(m), 4096))\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let mmap = only(sensor.by_pid("mmap", pid), "mmap");
    assert_eq!(mmap["access"]["length"], 64 * MIB);
    assert_eq!(mmap["access"]["offset"], 0);
    assert_eq!(mmap["access"]["prot"], serde_json::json!(["PROT_READ"]));
    assert_eq!(mmap["access"]["map_flags"][0], "MAP_PRIVATE");
    assert_eq!(mmap["access"]["result"], "ok");
    assert_eq!(mmap["file"]["path"], file.display().to_string());
    assert_eq!(mmap["process"]["exe"], tests::python_exe_str());
}

#[test]
fn dd_with_small_blocks_is_summarised_not_one_event_per_read() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.bin");
    write_file(&file, 4 * MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = run(Command::new("dd")
        .arg(format!("if={}", file.display()))
        .arg("of=/dev/null")
        .arg("bs=4096")
        .stderr(std::process::Stdio::null()));
    sensor.wait_exit(pid);
    let reads = sensor.by_pid("read", pid);
    assert_eq!(
        reads.len(),
        1,
        "{:?}",
        reads.iter().map(brief).collect::<Vec<_>>()
    );
    assert_eq!(reads[0]["access"]["bytes"], 4 * MIB);
    // 1024 full blocks and the read that returns end of file.
    assert_eq!(reads[0]["access"]["calls"], 1025);
}

#[test]
fn pread_at_offsets_counts_bytes_and_partial_coverage() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.pt");
    write_file(&file, 4 * MIB);
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
    let read = only(sensor.by_pid("read", pid), "read summary");
    assert_eq!(read["access"]["bytes"], MIB, "{read}");
    assert_eq!(read["access"]["calls"], 9);
    assert_eq!(read["access"]["coverage"], 0.25);
}

#[test]
fn unwatched_files_produce_no_file_records() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let watched = root.path().join("a.safetensors");
    let wrong_ext = root.path().join("notes.txt");
    let outside = elsewhere.path().join("b.safetensors");
    for f in [&watched, &wrong_ext, &outside] {
        write_file(f, MIB);
    }
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let pid = run(Command::new("cat")
        .arg(&wrong_ext)
        .arg(&outside)
        .arg(&watched));
    sensor.wait_exit(pid);
    assert!(sensor.file_records(&wrong_ext).is_empty());
    assert!(sensor.file_records(&outside).is_empty());
    // The control: the watched one in the same process was seen.
    assert_eq!(read_bytes(&sensor.file_records(&watched)), MIB as u64);
    let file_actions = sensor.by_pid("open", pid).len();
    assert_eq!(file_actions, 1);
}

#[test]
fn files_created_while_running_are_watched_within_a_second() {
    let root = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let sub = root.path().join("new-model");
    fs::create_dir(&sub).unwrap();
    let file = sub.join("late.gguf");
    write_file(&file, MIB);
    std::thread::sleep(Duration::from_secs(1));
    let pid = run(Command::new("cat").arg(&file));
    sensor.wait_exit(pid);
    assert_eq!(read_bytes(&sensor.by_pid("read", pid)), MIB as u64);

    // Renamed in from a non-weight name.
    let staged = root.path().join("download.part");
    write_file(&staged, MIB);
    let renamed = root.path().join("final.safetensors");
    fs::rename(&staged, &renamed).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let pid = run(Command::new("cat").arg(&renamed));
    sensor.wait_exit(pid);
    let open = only(sensor.by_pid("open", pid), "open");
    assert_eq!(open["file"]["path"], renamed.display().to_string());
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
    assert_eq!(exit.exit.and_then(|x| x.code()), Some(3), "{exit:?}");
    let exec = sensor.wait_for_event("exec", RECORD_TIMEOUT, |e| {
        tests::is_by(e, Action::Exec, pid)
    });
    let process = tests::process(&exec);
    assert_eq!(
        process.args,
        ["sh", "-c", "exit 3"].map(Text::from),
        "{process:?}"
    );
    assert_eq!(process.ppid, std::process::id());
    assert_eq!(
        process.ancestors.first().map(|a| a.pid),
        Some(std::process::id()),
        "{process:?}"
    );
    // The process started between the spawn and its reaping (a few ms of
    // slack: the kernel's boot clock is turned into wall time).
    let start = process.start_time.expect("a start time").unix_ns;
    let slack = 20_000_000;
    assert!(
        before - slack <= start && start <= after + slack,
        "start_time {start} not within [{before}, {after}] ns: {exec:?}"
    );
    assert_eq!(tests::process(&exit).start_time, process.start_time);
    assert_eq!(tests::exe(&exec), fs::canonicalize("/bin/sh").unwrap());
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
    let opens = sensor.by_pid("open", pid);
    assert_eq!(
        opens.len(),
        2,
        "{:#?}",
        opens.iter().map(brief).collect::<Vec<_>>()
    );
    assert_eq!(opens[0]["access"]["flags"][0], "O_RDONLY");
    assert_eq!(opens[1]["access"]["flags"][0], "O_WRONLY");
    assert_eq!(read_bytes(&sensor.by_pid("read", pid)), 8192);
}

#[test]
fn readv_and_preadv2_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.h5");
    write_file(&file, 4 * MIB);
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
    let read = only(sensor.by_pid("read", pid), "read summary");
    assert_eq!(read["access"]["bytes"], 4 * MIB);
    assert_eq!(read["access"]["calls"], 3);
    assert_eq!(read["access"]["coverage"], 1.0);
    assert_eq!(read["access"]["reason"], "exit");
}

#[test]
fn long_lived_readers_are_flushed_periodically_and_when_idle() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("slow.safetensors");
    write_file(&file, 4 * MIB);
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
    let idle = sensor.wait_for("idle summary", Duration::from_secs(15), |r| {
        r["action"] == "read" && r["process"]["pid"] == pid && r["access"]["reason"] == "idle"
    });
    assert!(reader.finish());
    sensor.wait_exit(pid);
    let reads = sensor.by_pid("read", pid);
    let reasons: Vec<_> = reads
        .iter()
        .map(|r| r["access"]["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(reasons.iter().any(|r| r == "interval"), "{reasons:?}");
    assert_eq!(read_bytes(&reads), 4 * MIB as u64, "{reasons:?}");
    assert_eq!(idle["process"]["exe"], tests::python_exe_str());
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
    let open = only(sensor.by_pid("open", pid), "open");
    assert_eq!(open["process"]["uid"], 65534);
    assert_eq!(open["process"]["gid"], 65534);
    assert_eq!(open["process"]["comm"], "cat");
}

#[test]
fn hugging_face_and_ollama_cache_layouts_are_watched() {
    let root = tempfile::tempdir().unwrap();
    // Hugging Face hub: extension-less blobs behind weight-named symlinks.
    let repo = root.path().join("hub/models--meta-llama--Llama-3-8B");
    let hash = "a".repeat(64);
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(repo.join("snapshots/0123abc")).unwrap();
    write_file(&repo.join("blobs").join(&hash), MIB);
    let link = repo.join("snapshots/0123abc/model-00001-of-00004.safetensors");
    std::os::unix::fs::symlink(format!("../../blobs/{hash}"), &link).unwrap();
    // Ollama: sha256-<hex> blobs.
    let ollama = root.path().join("ollama/models/blobs");
    fs::create_dir_all(&ollama).unwrap();
    let blob = ollama.join(format!("sha256-{}", "b".repeat(64)));
    write_file(&blob, MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pid = run(Command::new("cat").arg(&link).arg(&blob));
    sensor.wait_exit(pid);
    let reads = sensor.by_pid("read", pid);
    let paths: Vec<_> = reads
        .iter()
        .map(|r| r["file"]["path"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(paths.contains(&link.display().to_string()), "{paths:?}");
    assert!(paths.contains(&blob.display().to_string()), "{paths:?}");
    assert_eq!(read_bytes(&reads), 2 * MIB as u64);
}

#[test]
fn deleted_and_renamed_away_files_leave_the_watch_set() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a.safetensors");
    let b = root.path().join("b.safetensors");
    let keep = root.path().join("keep.safetensors");
    for f in [&a, &b, &keep] {
        write_file(f, 4096);
    }
    let sensor = SensorProcess::start(&[root.path()], &["--heartbeat-interval", "1"]);
    let watched = |r: &serde_json::Value| r["sensor"]["watched_files"].as_u64();
    assert_eq!(sensor.records()[0]["sensor"]["watched_files"], 3);
    fs::remove_file(&a).unwrap();
    // Renamed to a name that is not a weight file: no longer watched.
    let c = root.path().join("b.safetensors.bak");
    fs::rename(&b, &c).unwrap();
    sensor.wait_for("heartbeat with 1 watched", Duration::from_secs(5), |r| {
        r["action"] == "heartbeat" && watched(r) == Some(1)
    });
    let gone = run(Command::new("cat").arg(&c));
    // The control: the file still watched, read the same way.
    let control = run(Command::new("cat").arg(&keep));
    // Stopped, the agent has drained everything the kernel queued.
    let (_, records) = sensor.stop();
    let of = |action: &str, pid: u32| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["action"] == action && r["process"]["pid"] == pid)
            .collect()
    };
    let opens = of("open", control);
    assert_eq!(opens.len(), 1, "the control's open");
    assert_eq!(opens[0]["file"]["path"], keep.display().to_string());
    assert_eq!(of("exit", gone).len(), 1, "the renamed file's reader ran");
    assert!(of("open", gone).is_empty(), "{:?}", of("open", gone));
    assert!(of("read", gone).is_empty(), "{:?}", of("read", gone));
}

/// Linux names are bytes: two files whose names differ only in invalid
/// UTF-8 must stay two names in the records, and an argument that is not
/// UTF-8 must come back byte for byte.
#[test]
fn names_and_arguments_that_are_not_utf8_keep_their_bytes() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt};

    use sensor::event::{Action, Text};

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
    let events = sensor.events();
    for (file, pid) in files.iter().zip(&pids) {
        let open = events
            .iter()
            .find(|e| e.action == Action::Open && e.process.as_ref().is_some_and(|p| p.pid == *pid))
            .unwrap_or_else(|| panic!("no open by {pid}"));
        let want = Text::from(file.as_os_str().as_bytes());
        assert_eq!(
            open.file.as_ref().and_then(|f| f.path.clone()),
            Some(want.clone())
        );
        let process = open.process.as_ref().unwrap();
        assert_eq!(process.args.last(), Some(&want), "{process:?}");
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
