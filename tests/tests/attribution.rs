//! Attribution: every way a process can reach a watched file's bytes is
//! charged to the process that read them, with the file identified by
//! inode whatever path or descriptor led there.

#![allow(clippy::unwrap_used)]

use std::{fs, os::unix::fs::symlink, process::Command};

use sensor::event::{AccessDetail, Action, SyscallAbi};
use tests::{
    SensorProcess, access, briefs, exe, of_pid, path, process, python, read_summary, read_total,
    run, write_file,
};

const MIB: usize = 1024 * 1024;

/// A watched root with one 1 MiB weight file, and a running sensor.
fn setup(name: &str) -> (tempfile::TempDir, std::path::PathBuf, SensorProcess) {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(name);
    write_file(&file, MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    (root, file, sensor)
}

fn assert_read_by(sensor: &SensorProcess, pid: u32, file: &std::path::Path, bytes: u64) {
    sensor.wait_exit(pid);
    let events = sensor.file_events(file);
    let mine = events.iter().filter(|e| process(e).pid == pid);
    assert_eq!(
        read_total(mine),
        bytes,
        "reads by {pid}: {:#?}",
        briefs(&events)
    );
}

#[test]
fn relative_path_after_chdir() {
    let (root, file, sensor) = setup("rel.safetensors");
    let pid = python(
        "import os, sys\nos.chdir(sys.argv[1])\nopen('rel.safetensors', 'rb').read()\n",
        &[root.path().to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
    let opens = sensor.events_by_pid(Action::Open, pid);
    assert_eq!(path(&opens[0]), file, "{:#?}", briefs(&opens));
}

#[test]
fn openat_with_a_directory_descriptor() {
    let (root, file, sensor) = setup("dirfd.safetensors");
    let pid = python(
        "import os, sys\nd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n\
         fd = os.open('dirfd.safetensors', os.O_RDONLY, dir_fd=d)\n\
         while os.read(fd, 1 << 16): pass\nos.close(fd)\n",
        &[root.path().to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
}

#[test]
fn symlink_from_outside_the_root() {
    let (_root, file, sensor) = setup("target.gguf");
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("innocent-name");
    symlink(&file, &link).unwrap();
    let pid = run(Command::new("cat").arg(&link));
    assert_read_by(&sensor, pid, &file, MIB as u64);
}

#[test]
fn hard_link_from_outside_the_root() {
    let (_root, file, sensor) = setup("hard.gguf");
    let elsewhere = tempfile::tempdir_in(file.parent().unwrap().parent().unwrap()).unwrap();
    let link = elsewhere.path().join("copy.dat");
    fs::hard_link(&file, &link).unwrap();
    let pid = run(Command::new("cat").arg(&link));
    assert_read_by(&sensor, pid, &file, MIB as u64);
}

#[test]
fn bind_mount_of_the_root() {
    let (root, file, sensor) = setup("bound.safetensors");
    let mnt = tempfile::tempdir().unwrap();
    run(Command::new("mount")
        .arg("--bind")
        .arg(root.path())
        .arg(mnt.path()));
    let via_bind = mnt.path().join("bound.safetensors");
    let result = std::panic::catch_unwind(|| {
        let pid = run(Command::new("cat").arg(&via_bind));
        assert_read_by(&sensor, pid, &file, MIB as u64);
    });
    run(Command::new("umount").arg(mnt.path()));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn opened_by_one_thread_read_by_another() {
    let (_root, file, sensor) = setup("threads.pt");
    // The reading thread prints its kernel thread id.
    let out = tests::python_output(
        "import os, sys, threading\nfd = os.open(sys.argv[1], os.O_RDONLY)\n\
         def reader():\n    print(threading.get_native_id(), os.getpid())\n    while os.read(fd, 1 << 16): pass\n\
         t = threading.Thread(target=reader); t.start(); t.join()\nos.close(fd)\n",
        &[file.as_os_str()],
    );
    let (tid, pid) = out.split_once(' ').unwrap();
    let (tid, pid): (u32, u32) = (tid.parse().unwrap(), pid.parse().unwrap());
    assert_ne!(tid, pid, "the reader runs in a second thread");
    assert_read_by(&sensor, pid, &file, MIB as u64);
    let read = &sensor.events_by_pid(Action::Read, pid)[0];
    assert_eq!(process(read).tid, tid, "the reading thread");
    let open = &sensor.events_by_pid(Action::Open, pid)[0];
    assert_eq!(process(open).tid, pid, "the main thread opened it");
}

#[test]
fn python_duplicates_share_the_file_position() {
    let (_root, file, sensor) = setup("dups.bin");
    // Each duplicate reads a quarter through the shared file position.
    // Python issues fcntl(F_DUPFD_CLOEXEC) for os.dup, dup2 and dup3 for
    // os.dup2, fcntl(F_DUPFD) for fcntl.F_DUPFD (checked with strace): the
    // dup(2) syscall itself and each one on its own are in syscalls.rs.
    let pid = python(
        "import os, sys, fcntl\nfd = os.open(sys.argv[1], os.O_RDONLY)\nq = 262144\n\
         a = os.dup(fd); os.read(a, q)\n\
         os.dup2(fd, 50); os.read(50, q)\n\
         os.dup2(fd, 51, inheritable=False); os.read(51, q)\n\
         c = fcntl.fcntl(fd, fcntl.F_DUPFD, 60); os.read(c, q)\n",
        &[file.to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
}

#[test]
fn forked_child_reading_an_inherited_descriptor() {
    let (_root, file, sensor) = setup("fork.safetensors");
    let child: u32 = tests::python_output(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\npid = os.fork()\n\
             if pid == 0:\n    while os.read(fd, 1 << 16): pass\n    os._exit(0)\n\
             os.waitpid(pid, 0)\nprint(pid)\n",
        &[file.as_os_str()],
    )
    .parse()
    .unwrap();
    assert_read_by(&sensor, child, &file, MIB as u64);
    let read = &sensor.events_by_pid(Action::Read, child)[0];
    assert_eq!(
        exe(read),
        tests::python_exe(),
        "a forked child has its parent's image"
    );
}

#[test]
fn descriptor_passed_over_a_unix_socket() {
    let (_root, file, sensor) = setup("passed.gguf");
    let receiver: u32 = tests::python_output(
            "import os, sys, socket\na, b = socket.socketpair()\npid = os.fork()\n\
             if pid == 0:\n    msg, fds, flags, addr = socket.recv_fds(b, 16, 1)\n\
             \x20   while os.read(fds[0], 1 << 16): pass\n    os._exit(0)\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\nsocket.send_fds(a, [b'x'], [fd])\nos.close(fd)\n\
             os.waitpid(pid, 0)\nprint(pid)\n",
        &[file.as_os_str()],
    )
    .parse()
    .unwrap();
    assert_read_by(&sensor, receiver, &file, MIB as u64);
}

#[test]
fn descriptor_number_reused_after_close() {
    let (_root, file, sensor) = setup("reuse.safetensors");
    let other = tempfile::NamedTempFile::new().unwrap();
    fs::write(other.path(), vec![7u8; MIB]).unwrap();
    // The watched file's descriptor is closed, and the same number then
    // names an unwatched file: those reads must not count.
    let pid = python(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nos.read(fd, 4096)\nos.close(fd)\n\
         fd2 = os.open(sys.argv[2], os.O_RDONLY)\nassert fd2 == fd\n\
         while os.read(fd2, 1 << 16): pass\n",
        &[file.to_str().unwrap(), other.path().to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, 4096);
}

#[test]
fn main_thread_exiting_first_does_not_end_the_process() {
    let (_root, file, sensor) = setup("leader.safetensors");
    // The main thread leaves with pthread_exit; a worker reads afterwards.
    // The process ends when the worker does, and its reads are its own.
    let child = tests::python_command()
        .arg("-c")
        .arg(
            "import ctypes, os, sys, threading, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n\
             def worker():\n    time.sleep(0.5)\n    while os.read(fd, 1 << 16): pass\n    os._exit(0)\n\
             threading.Thread(target=worker).start()\nctypes.CDLL(None).pthread_exit(None)\n",
        )
        .arg(&file)
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let exit = sensor.wait_exit(pid);
    let reads = sensor.events_by_pid(Action::Read, pid);
    assert_eq!(
        tests::read_total(&reads),
        MIB as u64,
        "{:#?}",
        tests::briefs(&reads)
    );
    let exits = sensor.events_by_pid(Action::Exit, pid);
    assert_eq!(exits.len(), 1, "one exit per process: {exits:#?}");
    assert!(
        exit.time >= reads[0].time,
        "the exit comes after the reads: {exit:?} {reads:?}"
    );
}

#[test]
fn descriptor_with_garbage_in_the_upper_register_half() {
    let (_root, file, sensor) = setup("wide.safetensors");
    // The kernel truncates descriptor arguments to 32 bits; so must we.
    let pid = python(
        "import ctypes, mmap, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         libc.syscall.restype = ctypes.c_long\n\
         fd = os.open(sys.argv[1], os.O_RDONLY)\nwide = fd | (1 << 32)\nbuf = ctypes.create_string_buffer(1 << 20)\n\
         n = libc.syscall(17, ctypes.c_long(wide), buf, ctypes.c_long(1 << 20), ctypes.c_long(0))\nassert n == 1 << 20, n\n\
         addr = libc.syscall(9, ctypes.c_long(0), ctypes.c_long(1 << 20), ctypes.c_long(mmap.PROT_READ), \
         ctypes.c_long(mmap.MAP_PRIVATE), ctypes.c_long(wide), ctypes.c_long(0))\nassert addr > 0, addr\n\
         assert libc.syscall(3, ctypes.c_long(wide)) == 0\n",
        &[file.to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
    assert_eq!(sensor.events_by_pid(Action::Mmap, pid).len(), 1);
    assert_eq!(sensor.events_by_pid(Action::Close, pid).len(), 1);
}

#[test]
fn syscall_numbers_with_garbage_in_the_upper_half() {
    let (_root, file, sensor) = setup("widenr.safetensors");
    // The kernel runs syscall (int)rax, but orig_ax keeps all 64 bits:
    // `(1 << 32) | openat` opens, reads and maps like openat itself.
    let pid = python(
        "import ctypes, mmap, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         libc.syscall.restype = ctypes.c_long\nL = ctypes.c_long\nhi = 1 << 32\n\
         fd = libc.syscall(L(hi | 257), L(-100), sys.argv[1].encode(), L(os.O_RDONLY))\nassert fd >= 0, ctypes.get_errno()\n\
         class Iov(ctypes.Structure): _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n\
         buf = ctypes.create_string_buffer(1 << 20)\niov = Iov(ctypes.cast(buf, ctypes.c_void_p), 1 << 20)\n\
         n = libc.syscall(L(hi | 19), L(fd), ctypes.byref(iov), L(1))\nassert n == 1 << 20, n\n\
         addr = libc.syscall(L(hi | 9), L(0), L(1 << 20), L(mmap.PROT_READ), L(mmap.MAP_PRIVATE), L(fd), L(0))\nassert addr > 0, addr\n\
         assert libc.syscall(L(hi | 3), L(fd)) == 0\n",
        &[file.to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
    assert_eq!(sensor.events_by_pid(Action::Open, pid).len(), 1);
    assert_eq!(sensor.events_by_pid(Action::Mmap, pid).len(), 1);
    assert_eq!(sensor.events_by_pid(Action::Close, pid).len(), 1);
}

#[test]
fn open_by_handle_at_is_seen() {
    let (root, file, sensor) = setup("handle.gguf");
    let pid = python(
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         class Handle(ctypes.Structure): _fields_ = [('bytes', ctypes.c_uint), ('type', ctypes.c_int), ('f', ctypes.c_ubyte * 128)]\n\
         h = Handle(128, 0)\nmount_id = ctypes.c_int()\n\
         assert libc.name_to_handle_at(-100, sys.argv[1].encode(), ctypes.byref(h), ctypes.byref(mount_id), 0) == 0, ctypes.get_errno()\n\
         mfd = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)\n\
         fd = libc.open_by_handle_at(mfd, ctypes.byref(h), os.O_RDONLY)\nassert fd >= 0, ctypes.get_errno()\n\
         while os.read(fd, 1 << 16): pass\n",
        &[file.to_str().unwrap(), root.path().to_str().unwrap()],
    );
    assert_read_by(&sensor, pid, &file, MIB as u64);
    assert_eq!(sensor.events_by_pid(Action::Open, pid).len(), 1);
}

#[test]
fn coverage_accumulates_across_reopens() {
    let (_root, file, sensor) = setup("pieces.safetensors");
    // Each half through its own open and close: the second summary shows
    // the whole file read by this process.
    let pid = python(
        "import os, sys\nfor half in range(2):\n    fd = os.open(sys.argv[1], os.O_RDONLY)\n\
         \x20   os.pread(fd, 524288, half * 524288)\n    os.close(fd)\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let reads = sensor.events_by_pid(Action::Read, pid);
    let coverage: Vec<_> = reads.iter().map(|r| read_summary(r).coverage).collect();
    assert_eq!(coverage, [0.5, 1.0], "{:#?}", briefs(&reads));
}

#[test]
fn a_many_threaded_exit_is_one_exit_record() {
    let (_root, _file, sensor) = setup("unused.bin");
    let pids: Vec<u32> = (0..5)
        .map(|_| {
            // Prints its pid and thread count, then exits with 16 threads
            // still asleep.
            let out = tests::python_output(
                "import os, sys, threading, time\n\
                 for _ in range(16): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n\
                 time.sleep(0.2)\nprint(os.getpid(), len(os.listdir('/proc/self/task')), flush=True)\nos._exit(0)\n",
                &[],
            );
            let (pid, threads) = out.split_once(' ').unwrap();
            assert_eq!(threads, "17", "the control: 17 threads at exit");
            pid.parse().unwrap()
        })
        .collect();
    // Stopped, the agent has drained everything the kernel queued: any
    // second exit record would be among these.
    let (_, events) = sensor.stop_events();
    for pid in pids {
        let exits = of_pid(&events, Action::Exit, pid);
        assert_eq!(exits.len(), 1, "pid {pid}: {:#?}", briefs(exits));
        // Its exec was captured in the same run.
        let execs = of_pid(&events, Action::Exec, pid);
        assert!(!execs.is_empty(), "pid {pid} has no exec record");
    }
}

/// Builds `helpers/int80.c` in `dir` and runs it on `file` with `mode`
/// (empty for all-ia32); returns its pid, or None after recording a skip
/// when the helper exits 77, which means only that this kernel refuses
/// `int $0x80` from a 64-bit process (its probe got ENOSYS or a fault).
/// Any other failure fails the test.
fn run_int80(dir: &std::path::Path, file: &std::path::Path, mode: &[&str]) -> Option<u32> {
    let helper = tests::build_helper(dir, "int80");
    let child = Command::new(&helper)
        .arg(file)
        .args(mode)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    if status.code() == Some(77) {
        tests::skipped(
            tests::feature::IA32,
            "this kernel refuses int $0x80 from a 64-bit process (no IA32 emulation)",
        );
        return None;
    }
    assert!(status.success(), "int80 helper failed: {status:?}");
    Some(pid)
}

#[test]
fn thirty_two_bit_syscalls_are_seen() {
    // The kernel fires no syscalls/* tracepoint for int $0x80; the
    // sys_enter/sys_exit programs must decode the ia32 ABI.
    let (root, file, sensor) = setup("int80.safetensors");
    let Some(pid) = run_int80(root.path(), &file, &[]) else {
        return;
    };
    assert_read_by(&sensor, pid, &file, MIB as u64 + 4096);
    let open = &sensor.events_by_pid(Action::Open, pid)[0];
    assert_eq!(access(open).abi, SyscallAbi::Ia32);
    let mmap = &sensor.events_by_pid(Action::Mmap, pid)[0];
    assert_eq!(access(mmap).abi, SyscallAbi::Ia32);
    let AccessDetail::Mmap { length, .. } = access(mmap).detail else {
        panic!("not an mmap: {mmap:?}");
    };
    assert_eq!(length, 8192);
    assert_eq!(sensor.events_by_pid(Action::Close, pid).len(), 1);
}

#[test]
fn ia32_reads_of_a_descriptor_opened_natively_are_counted() {
    let (root, file, sensor) = setup("mixed.safetensors");
    let Some(pid) = run_int80(root.path(), &file, &["mixed"]) else {
        return;
    };
    assert_read_by(&sensor, pid, &file, MIB as u64);
    assert_eq!(sensor.events_by_pid(Action::Open, pid).len(), 1);
    assert_eq!(sensor.events_by_pid(Action::Close, pid).len(), 1);
}

#[test]
fn descriptor_received_with_ia32_recvmsg() {
    // The receipt, by recvmsg or socketcall(SYS_RECVMSG) through int $0x80,
    // must make the receiver a holder, or its x86-64 reads of the passed
    // descriptor are prefiltered away.
    for variant in ["recvmsg", "socketcall"] {
        let (root, file, sensor) = setup("passed32.safetensors");
        let Some(pid) = run_int80(root.path(), &file, &[variant]) else {
            return;
        };
        assert_read_by(&sensor, pid, &file, MIB as u64);
    }
}

#[test]
fn ia32_syscalls_are_never_taken_for_x86_64_ones() {
    // With ia32 capture off, an ia32 read (number 3) must be skipped, not
    // decoded as the x86-64 syscall 3, close: the helper passes the
    // descriptor in edi too, so a misdecode would report a close per read.
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("abi.safetensors");
    write_file(&file, MIB);
    let sensor = SensorProcess::start_with_config(
        &[root.path()],
        &[],
        "[kernel]\ncompat_syscalls = false\n",
    );
    let Some(pid) = run_int80(root.path(), &file, &["mixed"]) else {
        return;
    };
    // The control: a native reader in the same run is captured.
    let control = run(Command::new("cat").arg(&file));
    // Stopped, the agent has drained everything the kernel queued.
    let (_, events) = sensor.stop_events();
    let of = |action, p| of_pid(&events, action, p).len();
    let control_bytes = read_total(of_pid(&events, Action::Read, control));
    assert_eq!(control_bytes, MIB as u64, "the control reader was captured");
    assert_eq!(
        of(Action::Exit, pid),
        1,
        "the helper's exit is in the records"
    );
    assert_eq!(of(Action::Open, pid), 1, "the x86-64 open");
    assert_eq!(of(Action::Close, pid), 1, "the x86-64 close only");
    assert_eq!(
        of(Action::Read, pid),
        0,
        "ia32 reads are not captured with compat_syscalls = false"
    );
}

#[test]
fn descriptor_taken_with_pidfd_getfd() {
    let (_root, file, sensor) = setup("grabbed.safetensors");
    // A holder keeps the file open; another process takes a copy of the
    // descriptor with pidfd_getfd(2) and reads through it.
    let mut holder = tests::Interactive::start(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint(fd, flush=True)\nsys.stdin.readline()\n",
        &[file.as_os_str()],
    );
    let target_fd = holder.read_line();
    let holder_pid = holder.pid().to_string();
    let thief = python(
        "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         pidfd = os.pidfd_open(int(sys.argv[1]))\n\
         fd = libc.syscall(438, pidfd, int(sys.argv[2]), 0)\nassert fd >= 0, ctypes.get_errno()\n\
         off = 0\nwhile True:\n    b = os.pread(fd, 1 << 16, off)\n    if not b: break\n    off += len(b)\n",
        &[&holder_pid, &target_fd],
    );
    assert!(holder.finish());
    assert_read_by(&sensor, thief, &file, MIB as u64);
}

#[test]
fn clone_files_child_shares_descriptors_opened_later() {
    let (_root, file, sensor) = setup("shared-table.gguf");
    // The child is created sharing the parent's descriptor table before the
    // parent opens the file; the child then reads the parent's descriptor.
    let child: u32 = tests::python_output(
        "import ctypes, os, sys, time\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             CLONE_FILES = 0x400; SIGCHLD = 17\n\
             pid = libc.syscall(56, CLONE_FILES | SIGCHLD, 0, 0, 0, 0)\n\
             if pid == 0:\n    time.sleep(0.5)\n    fd = 100\n\
             \x20   while os.read(fd, 1 << 16): pass\n    os._exit(0)\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\nos.dup2(fd, 100)\nos.close(fd)\n\
             os.waitpid(pid, 0)\nprint(pid)\n",
        &[file.as_os_str()],
    )
    .parse()
    .unwrap();
    assert_read_by(&sensor, child, &file, MIB as u64);
}

#[test]
fn file_that_joins_the_watch_set_while_open() {
    let root = tempfile::tempdir().unwrap();
    let staged = root.path().join("model.part");
    write_file(&staged, MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // Opened before it is a weight file (no open record possible), renamed
    // into one, then read through the old descriptor.
    let mut reader = tests::Interactive::start(
        "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint('open', flush=True)\n\
         sys.stdin.readline()\nwhile os.read(fd, 1 << 16): pass\n",
        &[staged.as_os_str()],
    );
    assert_eq!(reader.read_line(), "open");
    let file = root.path().join("model.safetensors");
    fs::rename(&staged, &file).unwrap();
    // The watch set takes it within a second, the holder scan right after.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let pid = reader.pid();
    reader.send("go");
    assert!(reader.finish());
    assert_read_by(&sensor, pid, &file, MIB as u64);
}
