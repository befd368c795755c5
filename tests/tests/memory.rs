//! Reading a serving process's memory is reading its weights: a
//! `process_vm_readv` of a process that maps a weight file, a ptrace
//! attach to it, an open of its `/proc/PID/mem` and the reads through it,
//! and `PTRACE_PEEKDATA` words, are `memory_read` records naming the
//! target and the weight files it holds (the reads and peeks summarised:
//! bytes and calls exactly). The same reads of a process holding no
//! weights are no record (control).

#![allow(clippy::unwrap_used)]

use std::{
    io::BufRead,
    path::Path,
    process::{Child, Stdio},
};

use sensor::event::{AccessDetail, Action, DetectionId, FlushReason, MemoryMethod, Severity};
use tests::{SensorProcess, run, write_file};

/// A Python process mapping `file` (or nothing) and waiting; its pid and
/// the address of the mapping.
fn holder(file: Option<&Path>) -> (Child, u64) {
    let code = "import mmap, sys, time\n\
                if len(sys.argv) > 1:\n    f = open(sys.argv[1], 'rb')\n    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n    f.close()\n    m[0]\n\
                else:\n    m = mmap.mmap(-1, 4096)\n    m[0] = 1\n\
                print('ready', flush=True)\n\
                time.sleep(60)\n";
    let mut cmd = tests::python_command();
    cmd.arg("-c").arg(code).stdout(Stdio::piped());
    if let Some(file) = file {
        cmd.arg(file);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let wanted = file.map(|f| f.to_str().unwrap().to_owned());
    let addr = maps
        .lines()
        .find(|l| match &wanted {
            Some(path) => l.ends_with(path.as_str()),
            None => l.contains("rw-s") || l.ends_with("/dev/zero (deleted)"),
        })
        .or_else(|| maps.lines().find(|l| l.contains("[heap]")))
        .and_then(|l| l.split('-').next())
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .unwrap();
    (child, addr)
}

/// Reads 4 KiB of `pid`'s memory at `addr` with process_vm_readv; its pid.
fn vm_read(pid: u32, addr: u64) -> u32 {
    run(tests::python_command()
        .arg("-c")
        .arg(
            "import ctypes, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             class iovec(ctypes.Structure):\n    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n\
             buf = ctypes.create_string_buffer(4096)\n\
             local = iovec(ctypes.cast(buf, ctypes.c_void_p), 4096)\n\
             remote = iovec(int(sys.argv[2]), 4096)\n\
             libc.process_vm_readv.restype = ctypes.c_ssize_t\n\
             n = libc.process_vm_readv(int(sys.argv[1]), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)\n\
             assert n == 4096, ctypes.get_errno()",
        )
        .arg(pid.to_string())
        .arg(addr.to_string()))
}

/// Attaches to `pid` with ptrace and detaches; its pid.
fn ptrace_attach(pid: u32) -> u32 {
    run(tests::python_command()
        .arg("-c")
        .arg(
            "import ctypes, os, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             pid = int(sys.argv[1])\n\
             assert libc.ptrace(16, pid, 0, 0) == 0, ctypes.get_errno()\n\
             os.waitpid(pid, 0)\n\
             assert libc.ptrace(17, pid, 0, 0) == 0, ctypes.get_errno()",
        )
        .arg(pid.to_string()))
}

#[test]
fn reading_a_weight_holder_s_memory_is_a_memory_read_record() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let (mut server, addr) = holder(Some(&weights));
    let server_pid = server.id();
    let reader = vm_read(server_pid, addr);
    let tracer = ptrace_attach(server_pid);
    // Control: the same reads of a process holding no weights.
    let (mut other, other_addr) = holder(None);
    let quiet_reader = vm_read(other.id(), other_addr);
    let quiet_tracer = ptrace_attach(other.id());
    for child in [&mut server, &mut other] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    sensor.wait_exit(quiet_tracer);
    let (status, events) = sensor.stop_events();
    assert!(status.success());

    let memory: Vec<_> = events
        .iter()
        .filter(|e| e.action == Action::MemoryRead)
        .collect();
    assert_eq!(memory.len(), 2, "{:#?}", tests::briefs(&events));
    for (pid, method, bytes) in [
        (reader, MemoryMethod::ProcessVmReadv, 4096),
        (tracer, MemoryMethod::PtraceAttach, 0),
    ] {
        let record = memory
            .iter()
            .find(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
            .unwrap_or_else(|| panic!("no memory_read by {pid}"));
        assert_eq!(
            tests::access(record).detail,
            AccessDetail::Memory {
                method,
                bytes,
                summary: None
            }
        );
        let target = record.target.as_ref().unwrap();
        assert_eq!(target.pid, server_pid);
        assert_eq!(
            target
                .weights
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect::<Vec<_>>(),
            vec![weights.as_os_str().as_encoded_bytes().to_vec()]
        );
        // Named: a memory_read detection citing the record, medium since
        // the target holds no GPU.
        let found = tests::of_pid(&events, Action::Detection, pid);
        let detection = found
            .iter()
            .find(|e| e.detection.as_ref().unwrap().id == DetectionId::MemoryRead)
            .unwrap_or_else(|| panic!("no memory_read detection for {pid}: {found:#?}"));
        assert_eq!(detection.severity, Severity::Medium);
        assert_eq!(detection.target.as_ref().unwrap().pid, server_pid);
        assert_eq!(
            detection.detection.as_ref().unwrap().refs,
            vec![record.id.unwrap()]
        );
    }
    assert!(
        tests::of_pid(&events, Action::Detection, quiet_reader).is_empty()
            && tests::of_pid(&events, Action::Detection, quiet_tracer).is_empty()
    );
    assert!(
        !memory
            .iter()
            .any(|e| e.process.as_ref().is_some_and(|p| p.pid == quiet_reader)),
        "a read of a process holding no weights was reported"
    );
}

/// Opens `pid`'s `/proc/PID/mem`, seeks to `addr` and reads 4 KiB twice
/// (unbuffered: two `read` calls); its pid.
fn proc_mem_read(pid: u32, addr: u64) -> u32 {
    run(tests::python_command()
        .arg("-c")
        .arg(
            "import sys\n\
             with open(f'/proc/{sys.argv[1]}/mem', 'rb', buffering=0) as f:\n    \
             f.seek(int(sys.argv[2]))\n    \
             assert len(f.read(4096)) == 4096\n    \
             assert len(f.read(4096)) == 4096\n",
        )
        .arg(pid.to_string())
        .arg(addr.to_string()))
}

/// Attaches to `pid`, peeks 16 words at `addr` with PTRACE_PEEKDATA and
/// detaches; its pid.
fn ptrace_peek(pid: u32, addr: u64) -> u32 {
    run(tests::python_command()
        .arg("-c")
        .arg(
            "import ctypes, os, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             libc.ptrace.restype = ctypes.c_long\n\
             libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]\n\
             pid, addr = int(sys.argv[1]), int(sys.argv[2])\n\
             assert libc.ptrace(16, pid, None, None) == 0, ctypes.get_errno()\n\
             os.waitpid(pid, 0)\n\
             for i in range(16):\n    \
             ctypes.set_errno(0)\n    \
             libc.ptrace(2, pid, addr + 8 * i, None)\n    \
             assert ctypes.get_errno() == 0, ctypes.get_errno()\n\
             assert libc.ptrace(17, pid, None, None) == 0, ctypes.get_errno()",
        )
        .arg(pid.to_string())
        .arg(addr.to_string()))
}

#[test]
fn proc_pid_mem_and_ptrace_peeks_of_a_weight_holder_are_memory_read_records() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let (mut server, addr) = holder(Some(&weights));
    let server_pid = server.id();
    let before = tests::now_ns();
    let mem_reader = proc_mem_read(server_pid, addr);
    let peeker = ptrace_peek(server_pid, addr);
    let after = tests::now_ns();
    // Control: the same against a process holding no weights.
    let (mut other, other_addr) = holder(None);
    let quiet_mem_reader = proc_mem_read(other.id(), other_addr);
    let quiet_peeker = ptrace_peek(other.id(), other_addr);
    for child in [&mut server, &mut other] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    sensor.wait_exit(quiet_peeker);
    let (status, events) = sensor.stop_events();
    assert!(status.success());

    let memory_of = |pid: u32| -> Vec<&sensor::event::Event> {
        events
            .iter()
            .filter(|e| e.action == Action::MemoryRead)
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
            .collect()
    };
    // (reader, method, bytes, calls): the open at once, then its two
    // reads in one summary at the close; the attach at once, then the 16
    // peeks (8 bytes each) in one summary at the detach.
    for (pid, expected) in [
        (
            mem_reader,
            vec![
                (MemoryMethod::ProcMemOpen, 0, None),
                (MemoryMethod::ProcMemRead, 8192, Some(2)),
            ],
        ),
        (
            peeker,
            vec![
                (MemoryMethod::PtraceAttach, 0, None),
                (MemoryMethod::PtracePeek, 128, Some(16)),
            ],
        ),
    ] {
        let records = memory_of(pid);
        let got: Vec<_> = records
            .iter()
            .map(|e| match &tests::access(e).detail {
                AccessDetail::Memory {
                    method,
                    bytes,
                    summary,
                } => (*method, *bytes, summary.map(|s| s.calls)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            expected,
            "{:#?}",
            tests::briefs(records.iter().copied())
        );
        for record in &records {
            let target = record.target.as_ref().unwrap();
            assert_eq!(target.pid, server_pid);
            assert_eq!(
                target.weights,
                vec![sensor::event::Text::from(weights.as_path())]
            );
            if let AccessDetail::Memory {
                summary: Some(s), ..
            } = &tests::access(record).detail
            {
                assert_eq!(s.reason, FlushReason::Close, "{s:?}");
                assert!(
                    before <= s.first.unix_ns && s.first <= s.last && s.last.unix_ns <= after,
                    "{s:?} outside [{before}, {after}]"
                );
            }
        }
        // Named: a memory_read detection at the first record (the summary
        // that follows is a repeat for the same reader and target, counted
        // in `suppressed` within the repeat window), citing it.
        let found: Vec<_> = tests::of_pid(&events, Action::Detection, pid)
            .into_iter()
            .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::MemoryRead)
            .collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        let detection = found[0].detection.as_ref().unwrap();
        let first_method = match expected[0].0 {
            MemoryMethod::ProcMemOpen => "/proc/PID/mem open",
            _ => "ptrace attach",
        };
        assert_eq!(detection.matched.as_deref(), Some(first_method));
        assert_eq!(detection.refs, vec![records[0].id.unwrap()]);
    }
    for quiet in [quiet_mem_reader, quiet_peeker] {
        assert!(
            memory_of(quiet).is_empty(),
            "a read of a process holding no weights was reported"
        );
        assert!(tests::of_pid(&events, Action::Detection, quiet).is_empty());
    }
}
