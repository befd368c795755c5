//! Every x86-64 syscall the sensor follows (sensor-ebpf/src/tier/tracepoint/syscall.rs),
//! issued by number from `helpers/syscalls.c`, so that a wrong constant in
//! the kernel programs fails a test: a libc or Python call can swap the
//! syscall for another (glibc's `open` is `openat`, CPython's `os.preadv`
//! is `preadv2` and `os.dup` is `fcntl(F_DUPFD_CLOEXEC)`).
//!
//! Each test runs the helper once against a 1 MiB watched file, stops the
//! sensor, and asserts on its final records: the exact bytes, calls and
//! coverage of the read summary, the open (or its absence when the
//! descriptor arrived another way), the mapping and the closes.
//!
//! The writes, sends and connects of processes that took watched bytes
//! are in `syscalls_sends.rs`, the tampering syscalls (and the opens for
//! writing or with `O_TRUNC`) in `syscalls_changes.rs`.

#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command};

use sensor::event::{Action, Event, FlushReason};
use tests::{
    KERNEL_O_LARGEFILE, SensorProcess, access_mode, briefs, build_helper, of_pid, open_flags, path,
    read_summary, read_total, write_file,
};

const MIB: u64 = 1024 * 1024;

/// One helper run's records, after the sensor stopped.
struct Run {
    pid: u32,
    /// `BYTES CALLS` the helper printed.
    printed: (u64, u64),
    events: Vec<Event>,
    file: PathBuf,
    _root: tempfile::TempDir,
}

impl Run {
    /// `syscalls GET READ FILE` under a running sensor.
    fn new(get: &str, read: &str) -> Self {
        let bin_dir = tempfile::tempdir().unwrap();
        let helper = build_helper(bin_dir.path(), "syscalls");
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("sys.safetensors");
        write_file(&file, MIB as usize);
        let sensor = SensorProcess::start(&[root.path()], &[]);
        let child = Command::new(&helper)
            .args([get, read])
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "syscalls {get} {read}: {:?}",
            out.status
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (bytes, calls) = text.trim().split_once(' ').unwrap();
        let printed = (bytes.parse().unwrap(), calls.parse().unwrap());
        sensor.wait_exit(pid);
        let (_, events) = sensor.stop_events();
        Self {
            pid,
            printed,
            events,
            file,
            _root: root,
        }
    }

    fn mine(&self, action: Action) -> Vec<&Event> {
        of_pid(&self.events, action, self.pid)
    }

    fn describe(&self) -> String {
        let mine = briefs(
            self.events
                .iter()
                .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == self.pid)),
        );
        format!("records of pid {}:\n{}", self.pid, mine.join("\n"))
    }

    /// The single read summary: `bytes`, `calls` and `coverage` exactly,
    /// matching what the helper itself counted, flushed by the close.
    fn assert_read(&self, bytes: u64, calls: u64, coverage: f64) {
        assert_eq!(self.printed, (bytes, calls), "the helper's own count");
        let reads = self.mine(Action::Read);
        assert_eq!(reads.len(), 1, "one read summary: {}", self.describe());
        let read = read_summary(reads[0]);
        assert_eq!(
            (read.bytes, read.calls, read.coverage, read.reason),
            (bytes, calls, coverage, FlushReason::Close),
            "(bytes, calls, coverage, reason): {read:?}"
        );
        assert_eq!(path(reads[0]), self.file);
    }

    /// Exactly one open by this process, read-only, of the file.
    fn assert_one_open(&self) {
        let opens = self.mine(Action::Open);
        assert_eq!(opens.len(), 1, "{}", self.describe());
        let mode = access_mode(open_flags(opens[0]));
        assert_eq!(mode, libc::O_RDONLY, "{:?}", tests::access(opens[0]));
        assert_eq!(path(opens[0]), self.file);
    }

    /// No open by this process: the descriptor came from elsewhere.
    fn assert_no_open(&self) {
        assert!(self.mine(Action::Open).is_empty(), "{}", self.describe());
    }

    fn assert_closes(&self, n: usize) {
        assert_eq!(self.mine(Action::Close).len(), n, "{}", self.describe());
    }

    /// The whole file with 64 KiB calls plus the one at end of file.
    fn assert_whole_file_read(&self) {
        self.assert_read(MIB, 17, 1.0);
    }
}

// --- Opens: each one opens, reads with read(2), closes with close(2). ---

#[test]
fn open_2_read_0_close_3() {
    let run = Run::new("open", "read");
    run.assert_one_open();
    run.assert_whole_file_read();
    run.assert_closes(1);
}

#[test]
fn openat_257() {
    let run = Run::new("openat", "read");
    run.assert_one_open();
    run.assert_whole_file_read();
    run.assert_closes(1);
}

#[test]
fn openat2_437() {
    let run = Run::new("openat2", "read");
    run.assert_one_open();
    run.assert_whole_file_read();
    run.assert_closes(1);
}

#[test]
fn open_by_handle_at_304() {
    let run = Run::new("open_by_handle_at", "read");
    run.assert_one_open();
    run.assert_whole_file_read();
    run.assert_closes(1);
}

#[test]
fn creat_85() {
    let run = Run::new("creat", "none");
    let opens = run.mine(Action::Open);
    assert_eq!(opens.len(), 1, "{}", run.describe());
    // creat is open(O_CREAT | O_WRONLY | O_TRUNC); the kernel keeps only
    // O_WRONLY (and O_LARGEFILE) on the file (docs/events.md).
    assert_eq!(
        open_flags(opens[0]),
        libc::O_WRONLY as u32 | KERNEL_O_LARGEFILE,
        "{:?}",
        tests::access(opens[0])
    );
    assert_eq!(path(opens[0]), run.file);
    assert!(run.mine(Action::Read).is_empty(), "{}", run.describe());
    run.assert_closes(1);
}

// --- Reads: openat, then the named read syscall, then close. ---

#[test]
fn readv_19() {
    let run = Run::new("openat", "readv");
    run.assert_whole_file_read();
}

#[test]
fn pread64_17_at_offsets() {
    // The second half only: an offset taken from the wrong register (or
    // the file position, 0) would cover the first 64 KiB, not half.
    let run = Run::new("openat", "pread64");
    run.assert_read(MIB / 2, 8, 0.5);
}

#[test]
fn preadv_295_at_offsets() {
    let run = Run::new("openat", "preadv");
    run.assert_read(MIB / 2, 8, 0.5);
}

#[test]
fn preadv2_327_at_offsets() {
    let run = Run::new("openat", "preadv2");
    run.assert_read(MIB / 2, 8, 0.5);
}

#[test]
fn preadv2_327_at_the_file_position() {
    // Offset -1: the descriptor's position, which the reads advance.
    let run = Run::new("openat", "preadv2_pos");
    run.assert_whole_file_read();
}

#[test]
fn mmap_9() {
    let run = Run::new("openat", "mmap");
    let maps = run.mine(Action::Mmap);
    assert_eq!(maps.len(), 1, "{}", run.describe());
    tests::assert_read_only_private_mapping(maps[0], &run.file, MIB);
    assert!(run.mine(Action::Read).is_empty(), "a mapping is not a read");
    run.assert_closes(1);
}

// --- Linux AIO: one io_submit of eight control blocks for the second half,
// the last asking past the end of file. Counted at submission like
// pread64: the count asked for, capped at the file's end (uncapped, bytes
// would be 64 KiB over). fio's libaio engine (async_io.rs) also issues
// io_submit itself, with IOCB_CMD_PREAD blocks only. ---

#[test]
fn io_submit_209_iocb_cmd_pread() {
    let run = Run::new("openat", "aio_pread");
    run.assert_one_open();
    run.assert_read(MIB / 2, 8, 0.5);
    run.assert_closes(1);
}

#[test]
fn io_submit_209_iocb_cmd_preadv() {
    let run = Run::new("openat", "aio_preadv");
    run.assert_one_open();
    run.assert_read(MIB / 2, 8, 0.5);
    run.assert_closes(1);
}

// --- Duplicates: openat, duplicate, close the original, read the copy. ---

fn assert_read_through_duplicate(get: &str) {
    let run = Run::new(get, "read");
    run.assert_one_open();
    run.assert_whole_file_read();
    // The original's close and the copy's.
    run.assert_closes(2);
}

#[test]
fn dup_32() {
    assert_read_through_duplicate("dup");
}

#[test]
fn dup2_33() {
    assert_read_through_duplicate("dup2");
}

#[test]
fn dup3_292() {
    assert_read_through_duplicate("dup3");
}

#[test]
fn fcntl_72_f_dupfd() {
    assert_read_through_duplicate("dupfd");
}

#[test]
fn fcntl_72_f_dupfd_cloexec() {
    assert_read_through_duplicate("dupfd_cloexec");
}

// --- Descriptors that arrive without an open: the receipt must make the
// process a holder, or the holder prefilter drops its reads. ---

fn assert_read_of_received_descriptor(get: &str) {
    let run = Run::new(get, "read");
    run.assert_no_open();
    run.assert_whole_file_read();
    run.assert_closes(1);
    // The bytes are the receiver's alone, whoever opened the file.
    assert_eq!(
        read_total(
            run.events
                .iter()
                .filter(|e| e.file.is_some() && path(e) == run.file)
        ),
        MIB,
        "{}",
        run.describe()
    );
}

#[test]
fn recvmsg_47() {
    assert_read_of_received_descriptor("recvmsg");
}

#[test]
fn recvmmsg_299() {
    assert_read_of_received_descriptor("recvmmsg");
}

#[test]
fn pidfd_getfd_438() {
    assert_read_of_received_descriptor("pidfd_getfd");
}

#[test]
fn fanotify_init_300() {
    assert_read_of_received_descriptor("fanotify");
}
