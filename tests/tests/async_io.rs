//! Asynchronous I/O is seen and byte-counted (issue 9): io_uring opens
//! (into a descriptor or a fixed-file slot), reads and splices (which
//! never pass a syscall hook) and Linux AIO reads (`io_submit`) are counted
//! like `read(2)` and `splice(2)`, for the submitting process, with exact
//! bytes, calls and coverage. A raw io_uring helper (`helpers/uring.c`, no
//! liburing) drives each opcode as an unprivileged user, and a second one
//! (`helpers/uring_sends.c`) io_uring writes, sends and a connect after
//! reading weights (`send` records, `copy` and `egress`); `fio` drives the
//! io_uring engine (plain, with registered files and buffers, and with a
//! kernel SQ polling thread) and the libaio one. Where the kernel lacks
//! what the io_uring programs need (made so here with the test-only
//! `WEIGHTWARDEN_TEST_HIDE_BTF`), the rest of capture runs and the sensor
//! says io_uring capture is off.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use sensor::event::{
    AccessDetail, Action, CopySyscall, DestinationKind, DetectionId, Event, FlushReason,
    IoUringCapture, SendSyscall,
};
use tests::{SensorProcess, access, briefs, build_helper, process, read_summary, write_file};

const MIB: u64 = 1024 * 1024;

/// What `helpers/uring.c` reads of a 1 MiB file (4 KiB coverage segments):
/// 64 KiB at 0 (segments 0-15), 2 x 16 KiB at 128 KiB (32-39), 64 KiB at
/// 512 KiB with READ_FIXED (128-143), 8 KiB and 4 KiB at the position
/// after an lseek to 768 KiB (192-194) and 0 bytes at the end: six calls.
const HELPER_BYTES: u64 = 65536 + 32768 + 65536 + 8192 + 4096;
const HELPER_CALLS: u64 = 6;
const HELPER_SEGMENTS: f64 = 16.0 + 8.0 + 16.0 + 3.0;

/// A directory and a file in it that uid 65534 can read.
fn public_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.join(name);
    write_file(&file, size as usize);
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    file
}

/// Runs the helper on `file` as uid 65534; returns its pid and output, or
/// `Err` with the reason io_uring is unavailable to it here (exit 77).
fn uring_as_nobody(helper: &Path, file: &Path) -> Result<(u32, String), String> {
    uring_mode_as_nobody(helper, &[], file)
}

/// [`uring_as_nobody`] in one of the helper's modes (`fixed-open`,
/// `splice`).
fn uring_mode_as_nobody(
    helper: &Path,
    mode: &[&str],
    file: &Path,
) -> Result<(u32, String), String> {
    let out = tests::output_within(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(helper)
            .args(mode)
            .arg(file),
        std::time::Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.code() == Some(77) {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    assert!(
        out.status.success(),
        "uring {}: {:?} {}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap_or_else(|| panic!("no pid line: {stdout}"))
        .parse()
        .unwrap();
    Ok((pid, stdout))
}

fn events_for<'a>(events: &'a [Event], action: Action, file: &Path) -> Vec<&'a Event> {
    let (dev, ino) = tests::identity(file);
    events
        .iter()
        .filter(|e| e.action == action)
        .filter(|e| {
            e.file
                .as_ref()
                .is_some_and(|f| (f.dev, f.ino) == (dev, ino))
        })
        .collect()
}

#[test]
fn raw_io_uring_open_and_reads_by_an_unprivileged_user_are_counted_exactly() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    // The control: the same requests on a file outside the watched root.
    let elsewhere = tempfile::tempdir().unwrap();
    let unwatched = public_file(elsewhere.path(), "other.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let (control, control_out) = match uring_as_nobody(&helper, &unwatched) {
        Ok(run) => run,
        Err(why) => tests::skip!(
            tests::feature::IO_URING,
            "io_uring is not available to an unprivileged process: {why}"
        ),
    };
    let (pid, out) = uring_as_nobody(&helper, &weights).unwrap();
    // Both runs read what the table above says (the kernel returned it).
    for o in [&out, &control_out] {
        let results: Vec<&str> = o.lines().skip(2).collect();
        assert_eq!(
            results,
            [
                "read 65536",
                "readv 32768",
                "read_fixed 65536",
                "read_pos 8192",
                "read_pos 4096",
                "read_end 0"
            ],
            "{o}"
        );
    }
    let fd: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("open "))
        .unwrap()
        .parse()
        .unwrap();
    sensor.wait_exit(pid);
    let (_, events) = sensor.stop_events();
    assert_eq!(tests::io_uring_capture(&events), IoUringCapture::On);

    // The open: by the submitting process (uid 65534), with the
    // descriptor the completion returned.
    let opens = tests::of_pid(&events, Action::Open, pid);
    assert_eq!(opens.len(), 1, "{:#?}", briefs(opens.iter().copied()));
    let p = process(opens[0]);
    assert_eq!((p.uid, p.comm.as_str()), (65534, "uring"));
    match access(opens[0]).detail {
        AccessDetail::Open { fd: got, flags } => {
            assert_eq!(got, fd);
            assert_eq!(tests::access_mode(flags), libc::O_RDONLY);
        }
        ref other => panic!("not an open: {other:?}"),
    }
    // The reads: one summary at close(2), exact bytes, calls, coverage.
    let reads = tests::of_pid(&events, Action::Read, pid);
    assert_eq!(reads.len(), 1, "{:#?}", briefs(reads.iter().copied()));
    let s = read_summary(reads[0]);
    assert_eq!(
        (s.bytes, s.calls, s.copies, s.reason, s.fd),
        (HELPER_BYTES, HELPER_CALLS, 0, FlushReason::Close, Some(fd))
    );
    assert_eq!(s.coverage, HELPER_SEGMENTS / 256.0);
    assert_eq!(tests::path(reads[0]), weights);
    // The control left nothing, though it did the same.
    let by_control: Vec<&Event> = events
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == control))
        .filter(|e| e.file.is_some())
        .collect();
    assert!(by_control.is_empty(), "{:#?}", briefs(by_control));
    assert!(events_for(&events, Action::Read, &unwatched).is_empty());
}

/// The helper's printed result for `op`, each time it printed one.
fn results<'a>(out: &'a str, op: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(op)?.strip_prefix(' '))
        .collect()
}

#[test]
fn io_uring_opens_into_fixed_slots_are_open_records_and_their_slot_reads_count() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let (pid, out) = match uring_mode_as_nobody(&helper, &["fixed-open"], &weights) {
        Ok(run) => run,
        Err(why) => tests::skip!(
            tests::feature::IO_URING,
            "io_uring is not available to an unprivileged process: {why}"
        ),
    };
    // Slot 2 by number (the result is 0), then whichever slot was free;
    // 64 KiB at 0 and 64 KiB at 256 KiB through the first, 16 KiB at
    // 512 KiB through the second.
    assert_eq!(results(&out, "open_slot"), ["0"], "{out}");
    assert_eq!(results(&out, "read"), ["65536", "16384"], "{out}");
    assert_eq!(results(&out, "read_fixed"), ["65536"], "{out}");
    assert_eq!(results(&out, "open_alloc").len(), 1, "{out}");
    sensor.wait_exit(pid);
    let (_, events) = sensor.stop_events();

    // The first open is a record with no descriptor (fd -1); the second,
    // of the same file in the same mode, is counted in an open summary.
    let opens = tests::of_pid(&events, Action::Open, pid);
    assert_eq!(opens.len(), 1, "{:#?}", briefs(&events));
    assert_eq!(process(opens[0]).uid, 65534);
    assert_eq!(tests::path(opens[0]), weights);
    match access(opens[0]).detail {
        AccessDetail::Open { fd, flags } => {
            assert_eq!(fd, -1);
            assert_eq!(tests::access_mode(flags), libc::O_RDONLY);
        }
        ref other => panic!("not an open: {other:?}"),
    }
    let counted: u64 = tests::of_pid(&events, Action::OpenSummary, pid)
        .iter()
        .map(|e| match &access(e).detail {
            AccessDetail::OpenSummary(o) => o.opens,
            other => panic!("not an open summary: {other:?}"),
        })
        .sum();
    assert_eq!(counted, 1, "{:#?}", briefs(&events));
    // The reads through both slots: exact bytes and coverage (4 KiB
    // segments 0-15, 64-79, 128-131), drained at the helper's exit (no
    // descriptor was ever closed), or some of them at its first write to
    // stdout (a pipe: it took weights, so its reads so far are reported
    // before its write is judged).
    let reads = tests::of_pid(&events, Action::Read, pid);
    assert!(
        (1..=2).contains(&reads.len()),
        "{:#?}",
        briefs(reads.iter().copied())
    );
    let reasons: Vec<FlushReason> = reads.iter().map(|r| read_summary(r).reason).collect();
    assert!(
        matches!(
            reasons[..],
            [FlushReason::Exit] | [FlushReason::Send] | [FlushReason::Send, FlushReason::Exit]
        ),
        "{reasons:?}"
    );
    let sum = |f: fn(&sensor::event::ReadSummary) -> u64| -> u64 {
        reads.iter().map(|r| f(read_summary(r))).sum()
    };
    assert_eq!(
        (sum(|s| s.bytes), sum(|s| s.calls), sum(|s| s.copies)),
        (65536 + 65536 + 16384, 3, 0)
    );
    let last = read_summary(reads.last().unwrap());
    assert_eq!(last.fd, None);
    assert_eq!(last.coverage, 36.0 / 256.0);
}

#[test]
fn an_io_uring_splice_from_a_watched_file_is_a_copy_with_its_exact_bytes() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    let elsewhere = tempfile::tempdir().unwrap();
    let unwatched = public_file(elsewhere.path(), "other.safetensors", MIB);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let (control, _) = match uring_mode_as_nobody(&helper, &["splice"], &unwatched) {
        Ok(run) => run,
        Err(why) => tests::skip!(
            tests::feature::IO_URING,
            "io_uring is not available to an unprivileged process: {why}"
        ),
    };
    let (pid, out) = uring_mode_as_nobody(&helper, &["splice"], &weights).unwrap();
    // 64 KiB at 0, 32 KiB at the position 256 KiB, 16 KiB at 512 KiB from
    // the file as fixed slot 0; each drained from the pipe whole.
    assert_eq!(
        results(&out, "splice"),
        ["65536 65536", "32768 32768", "16384 16384"],
        "{out}"
    );
    sensor.wait_exit(pid);
    let (_, events) = sensor.stop_events();

    // The bytes moved, as reads that were copies, at the offsets spliced
    // from (4 KiB segments 0-15, 64-71, 128-131).
    let opens = tests::of_pid(&events, Action::Open, pid);
    assert_eq!(opens.len(), 1, "{:#?}", briefs(&events));
    let AccessDetail::Open { fd, .. } = access(opens[0]).detail else {
        panic!("not an open")
    };
    let reads = tests::of_pid(&events, Action::Read, pid);
    assert!(!reads.is_empty(), "{:#?}", briefs(&events));
    let bytes: u64 = reads.iter().map(|r| read_summary(r).bytes).sum();
    let calls: u64 = reads.iter().map(|r| read_summary(r).calls).sum();
    let copies: u64 = reads.iter().map(|r| read_summary(r).copies).sum();
    assert_eq!((bytes, calls, copies), (65536 + 32768 + 16384, 3, 3));
    assert_eq!(
        reads.last().map(|r| read_summary(r).coverage),
        Some(28.0 / 256.0)
    );
    // One copy record, for the first splice into the pipe: the submitter's,
    // with the descriptor it named (the request keeps no output number).
    let copies = tests::of_pid(&events, Action::Copy, pid);
    assert_eq!(copies.len(), 1, "{:#?}", briefs(&events));
    assert_eq!(tests::path(copies[0]), weights);
    let AccessDetail::Copy(c) = &access(copies[0]).detail else {
        panic!("not a copy")
    };
    assert_eq!(
        (c.syscall, c.destination.kind, c.fd, c.fd_out, c.bytes),
        (
            CopySyscall::IoUringSplice,
            DestinationKind::Pipe,
            fd,
            -1,
            65536
        )
    );
    // The copy detection names the file and the request.
    let detections: Vec<&Event> = tests::of_pid(&events, Action::Detection, pid)
        .into_iter()
        .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::Copy)
        .collect();
    assert_eq!(detections.len(), 1, "{:#?}", briefs(&events));
    let d = detections[0].detection.as_ref().unwrap();
    assert_eq!(d.matched.as_deref(), Some("io_uring splice"));
    assert!(
        d.summary.contains("llama.safetensors") && d.summary.contains("a pipe"),
        "{}",
        d.summary
    );
    assert_eq!(tests::path(detections[0]), weights);
    // The control spliced the same way and left nothing.
    assert!(
        !events
            .iter()
            .any(|e| { e.file.is_some() && e.process.as_ref().is_some_and(|p| p.pid == control) }),
        "{:#?}",
        briefs(&events)
    );
}

/// The `send` records of `pid`, as `(syscall, bytes, calls)`, to the
/// destination `(dev, ino)`; each checked to name no descriptor (-1) and
/// `kind`, and a socket's `peer`.
fn sends_to(
    events: &[Event],
    pid: u32,
    to: (u64, u64),
    kind: DestinationKind,
    peer: Option<&str>,
) -> Vec<(SendSyscall, u64, u64)> {
    tests::of_pid(events, Action::Send, pid)
        .into_iter()
        .filter_map(|e| match &access(e).detail {
            AccessDetail::Send(d) if (d.destination.dev, d.destination.ino) == to => Some(d),
            AccessDetail::Send(_) => None,
            other => panic!("a send record without its detail: {other:?}"),
        })
        .map(|d| {
            assert_eq!(d.fd, -1, "{d:?}");
            assert_eq!(d.destination.kind, kind, "{d:?}");
            assert_eq!(d.destination.peer.as_deref(), peer, "{d:?}");
            // Not watched: named only by the descriptor the helper held
            // (closed, it may be, before the agent looked).
            if let Some(path) = &d.destination.path {
                assert_eq!(kind, DestinationKind::File, "{d:?}");
                assert_eq!(
                    tests::identity(Path::new(&path.to_lossy().into_owned())),
                    to
                );
            }
            (d.syscall, d.bytes, d.calls)
        })
        .collect()
}

/// The one detection `id` of `pid` whose summary contains `text`.
fn detection_naming<'a>(events: &'a [Event], pid: u32, id: DetectionId, text: &str) -> &'a Event {
    let found: Vec<&Event> = tests::of_pid(events, Action::Detection, pid)
        .into_iter()
        .filter(|e| {
            let d = e.detection.as_ref().unwrap();
            d.id == id && d.summary.contains(text)
        })
        .collect();
    assert_eq!(found.len(), 1, "{id} {text}: {:#?}", briefs(events));
    found[0]
}

/// What `helpers/uring_sends.c` moves after reading 128 KiB of the
/// watched file: to a file, WRITE 64 KiB, WRITEV 32 KiB (from an io-wq
/// thread), WRITE_FIXED 64 KiB through a fixed slot (a record at the
/// first and at 160 KiB, the first doubling); to a second file one
/// WRITEV_FIXED (6.15+); to a TCP socket, CONNECT, then SEND, SENDMSG
/// (from an io-wq thread), SEND_ZC and SENDMSG_ZC, each doubling the total
/// (a record each).
#[test]
fn io_uring_writes_sends_and_connects_after_reading_weights_are_send_records() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring_sends");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    let elsewhere = tempfile::tempdir().unwrap();
    let unwatched = public_file(elsewhere.path(), "other.safetensors", MIB);
    let out = tempfile::tempdir().unwrap();
    fs::set_permissions(out.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);

    // The helper's arguments are SOURCE OUT: the source goes where the
    // other helper's mode does.
    let control_out = out.path().join("control.bin");
    let (control, control_printed) =
        match uring_mode_as_nobody(&helper, &[unwatched.to_str().unwrap()], &control_out) {
            Ok(run) => run,
            Err(why) => tests::skip!(
                tests::feature::IO_URING,
                "io_uring is not available to an unprivileged process: {why}"
            ),
        };
    let copy = out.path().join("copy.bin");
    let (pid, printed) =
        uring_mode_as_nobody(&helper, &[weights.to_str().unwrap()], &copy).unwrap();
    for o in [&printed, &control_printed] {
        for (op, result) in [
            ("write", "65536"),
            ("writev", "32768"),
            ("write_fixed", "65536"),
            ("connect", "0"),
            ("send", "65536"),
            ("sendmsg", "65536"),
            ("send_zc", "131072"),
            ("sendmsg_zc", "262144"),
            ("received", "524288"),
        ] {
            assert_eq!(results(o, op), [result], "{op}: {o}");
        }
    }
    // -22 (EINVAL): a kernel before 6.15, without the opcode.
    let writev_fixed = results(&printed, "writev_fixed") == ["32768"];
    let port = results(&printed, "port")[0];
    sensor.wait_exit(pid);
    let (_, events) = sensor.stop_events();
    assert_eq!(tests::io_uring_capture(&events), IoUringCapture::On);

    // The file: the first request, then the doubling (160 KiB of 128 KiB
    // read); the requests name their file, a fixed one too.
    assert_eq!(
        sends_to(
            &events,
            pid,
            tests::identity(&copy),
            DestinationKind::File,
            None
        ),
        [
            (SendSyscall::IoUringWrite, 65536, 1),
            (SendSyscall::IoUringWriteFixed, 163_840, 3)
        ],
        "{:#?}",
        briefs(&events)
    );
    let vfixed = out.path().join("copy.bin.vfixed");
    assert_eq!(
        sends_to(
            &events,
            pid,
            tests::identity(&vfixed),
            DestinationKind::File,
            None
        ),
        if writev_fixed {
            vec![(SendSyscall::IoUringWritevFixed, 32768, 1)]
        } else {
            vec![]
        },
        "{printed}"
    );
    // The socket: its peer read from the socket itself at each record.
    let peer = format!("127.0.0.1:{port}");
    let socket = tests::of_pid(&events, Action::Send, pid)
        .into_iter()
        .find_map(|e| match &access(e).detail {
            AccessDetail::Send(d) if d.destination.kind == DestinationKind::Socket => {
                Some((d.destination.dev, d.destination.ino))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no send to a socket: {:#?}", briefs(&events)));
    assert_eq!(
        sends_to(&events, pid, socket, DestinationKind::Socket, Some(&peer)),
        [
            (SendSyscall::IoUringConnect, 0, 1),
            (SendSyscall::IoUringSend, 65536, 2),
            (SendSyscall::IoUringSendmsg, 131_072, 3),
            (SendSyscall::IoUringSendZc, 262_144, 4),
            (SendSyscall::IoUringSendmsgZc, 524_288, 5)
        ]
    );
    // Nothing else but the helper's report, written with write(2).
    for e in tests::of_pid(&events, Action::Send, pid) {
        let AccessDetail::Send(d) = &access(e).detail else {
            unreachable!()
        };
        assert!(
            d.syscall == SendSyscall::Write || d.fd == -1,
            "{:#?}",
            briefs(&events)
        );
    }

    // The detections: a copy through user space to each destination once
    // it got half of the 128 KiB taken (`detect.copy_share`; the first
    // request did), naming the weights; the connect and the bytes to a
    // peer outside `detect.egress_allowed` are egress.
    // The file is named by its path if the agent found the helper's
    // descriptor of it still open, else by its inode.
    let (_, ino) = tests::identity(&copy);
    let to_file = tests::of_pid(&events, Action::Detection, pid)
        .into_iter()
        .find(|e| {
            let d = e.detection.as_ref().unwrap();
            d.id == DetectionId::Copy
                && (d.summary.contains(&format!("inode {ino}"))
                    || d.summary.contains(&format!("to {}", copy.display())))
        })
        .unwrap_or_else(|| panic!("no copy to the file: {:#?}", briefs(&events)));
    assert_eq!(tests::path(to_file), weights);
    let d = to_file.detection.as_ref().unwrap();
    assert_eq!(
        (d.bytes, d.matched.as_deref()),
        (Some(65536), Some("write"))
    );
    let to_socket = detection_naming(&events, pid, DetectionId::Copy, &peer);
    assert_eq!(tests::path(to_socket), weights);
    assert_eq!(to_socket.detection.as_ref().unwrap().bytes, Some(65536));
    let egress: Vec<&Event> = tests::of_pid(&events, Action::Detection, pid)
        .into_iter()
        .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::Egress)
        .collect();
    let mut bytes: Vec<Option<u64>> = egress
        .iter()
        .map(|e| {
            assert_eq!(tests::path(e), weights);
            let d = e.detection.as_ref().unwrap();
            assert_eq!(d.matched.as_deref(), Some(peer.as_str()));
            d.bytes
        })
        .collect();
    bytes.sort();
    assert_eq!(bytes, [Some(0), Some(65536)], "{:#?}", briefs(&events));

    // The control did the same after reading no watched byte: not followed.
    assert!(
        tests::of_pid(&events, Action::Send, control).is_empty()
            && tests::of_pid(&events, Action::Detection, control).is_empty(),
        "{:#?}",
        briefs(&events)
    );
}

/// The `DEV INO` the helper printed after `name` (`st_dev`, `st_ino`), as
/// records name a file (the kernel's device number).
fn printed_identity(out: &str, name: &str) -> (u64, u64) {
    let v: Vec<u64> = results(out, name)[0]
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let dev = v[0] as libc::dev_t;
    (
        (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)),
        v[1],
    )
}

/// `helpers/uring.c skip-success`: every request with
/// IOSQE_CQE_SKIP_SUCCESS, whose success posts no completion (so the
/// completion tracepoint never fires): 4 KiB by pread(2) through the
/// descriptor such an open made (segment 224), then 64 KiB at 0 (0-15),
/// 2 x 16 KiB at 128 KiB (32-39), 64 KiB READ_FIXED at 512 KiB (128-143),
/// 8 KiB at the position after an lseek to 768 KiB (192-193), and a 16 KiB
/// splice at 640 KiB into a pipe (160-163); then 64 + 64 KiB written to a
/// file and 16 KiB sent on a unix socket.
const SKIP_BYTES: u64 = 4096 + 65536 + 32768 + 65536 + 8192 + 16384;
const SKIP_SEGMENTS: f64 = 1.0 + 16.0 + 8.0 + 16.0 + 2.0 + 4.0;

#[test]
fn io_uring_requests_that_post_no_completion_are_counted_as_submitted() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    let elsewhere = tempfile::tempdir().unwrap();
    let unwatched = public_file(elsewhere.path(), "other.safetensors", MIB);
    let mut sensor = SensorProcess::start(&[root.path()], &[]);
    sensor.expect_warning("IOSQE_CQE_SKIP_SUCCESS");

    let (control, control_out) = match uring_mode_as_nobody(&helper, &["skip-success"], &unwatched)
    {
        Ok(run) => run,
        Err(why) => tests::skip!(
            tests::feature::IO_URING,
            "io_uring is not available to an unprivileged process: {why}"
        ),
    };
    let (pid, out) = uring_mode_as_nobody(&helper, &["skip-success"], &weights).unwrap();
    for o in [&out, &control_out] {
        for op in [
            "open",
            "read",
            "readv",
            "read_fixed",
            "read_pos",
            "splice",
            "write",
            "writev",
            "send",
        ] {
            assert_eq!(results(o, op), ["0"], "{op}: {o}");
        }
        assert_eq!(results(o, "drained"), ["16384"], "{o}");
        assert_eq!(results(o, "received"), ["16384"], "{o}");
    }
    let fd: i32 = results(&out, "fd")[0].parse().unwrap();
    sensor.wait_exit(pid);
    let (_, events) = sensor.stop_events();
    assert_eq!(tests::io_uring_capture(&events), IoUringCapture::On);

    // The reads, the pread(2) too (the open made the process a holder):
    // exact bytes, calls and coverage, though no request posted a result.
    let reads = tests::of_pid(&events, Action::Read, pid);
    assert!(!reads.is_empty(), "{:#?}", briefs(&events));
    let bytes: u64 = reads.iter().map(|r| read_summary(r).bytes).sum();
    let calls: u64 = reads.iter().map(|r| read_summary(r).calls).sum();
    let copies: u64 = reads.iter().map(|r| read_summary(r).copies).sum();
    assert_eq!((bytes, calls, copies), (SKIP_BYTES, 6, 1));
    assert_eq!(
        reads.last().map(|r| read_summary(r).coverage),
        Some(SKIP_SEGMENTS / 256.0)
    );
    for r in &reads {
        assert_eq!(tests::path(r), weights);
    }
    // The splice: a copy to a pipe with its bytes.
    let copy_records = tests::of_pid(&events, Action::Copy, pid);
    assert_eq!(copy_records.len(), 1, "{:#?}", briefs(&events));
    let AccessDetail::Copy(c) = &access(copy_records[0]).detail else {
        panic!("not a copy")
    };
    assert_eq!(
        (c.syscall, c.destination.kind, c.fd, c.bytes),
        (CopySyscall::IoUringSplice, DestinationKind::Pipe, fd, 16384)
    );
    // The writes and the send, with the bytes they asked for.
    assert_eq!(
        sends_to(
            &events,
            pid,
            printed_identity(&out, "out"),
            DestinationKind::File,
            None
        ),
        [
            (SendSyscall::IoUringWrite, 65536, 1),
            (SendSyscall::IoUringWritev, 131_072, 2)
        ]
    );
    assert_eq!(
        sends_to(
            &events,
            pid,
            printed_identity(&out, "socket"),
            DestinationKind::Socket,
            None
        ),
        [(SendSyscall::IoUringSend, 16384, 1)]
    );
    // Counted apart: the five reads and splice, two writes and the send;
    // none of the control's, which took no weights.
    let stop = events.last().unwrap();
    assert_eq!(stop.action, Action::SensorStop);
    let counters = &stop.sensor.as_ref().unwrap().counters;
    assert_eq!(
        counters["kernel"].get("uring_skip_success"),
        Some(&8),
        "{counters:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.file.is_some() && e.process.as_ref().is_some_and(|p| p.pid == control)),
        "{:#?}",
        briefs(&events)
    );
}

#[test]
fn without_the_io_uring_layout_capture_runs_and_sensor_start_says_io_uring_is_off() {
    let bin = tempfile::tempdir().unwrap();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let helper = build_helper(bin.path(), "uring");
    let root = tempfile::tempdir().unwrap();
    let weights = public_file(root.path(), "llama.safetensors", MIB);
    // A policy in enforce mode, so that the warning says what the kill
    // fallback loses (no BPF LSM here); it guards another directory.
    let guarded = tempfile::tempdir().unwrap();
    write_file(&guarded.path().join("guarded.safetensors"), 4096);
    let policy = bin.path().join("policy.toml");
    fs::write(
        &policy,
        tests::policy_allowing(
            "enforce",
            guarded.path(),
            "nobody real",
            Path::new("/usr/bin/true"),
            "",
        ),
    )
    .unwrap();
    let hide = [(sensor::kernel::btf::HIDE_ENV, "io_kiocb.opcode")];
    let mut sensor = SensorProcess::start_with_env(
        &[root.path()],
        &["--policy", policy.to_str().unwrap()],
        &hide,
    );
    sensor.expect_warning("IO_URING CAPTURE OFF");
    sensor.expect_warning(sensor::kernel::btf::HIDE_ENV);

    // A plain read is captured as ever.
    let cat = tests::run(
        Command::new("cat")
            .arg(&weights)
            .stdout(std::process::Stdio::null()),
    );
    // io_uring's opens and reads are the blind spot the record names.
    let uring = match uring_as_nobody(&helper, &weights) {
        Ok((pid, _)) => Some(pid),
        Err(why) => {
            eprintln!("io_uring is not available to an unprivileged process: {why}");
            None
        }
    };
    sensor.wait_exit(cat);
    if let Some(pid) = uring {
        sensor.wait_exit(pid);
    }
    // Said loudly at start-up: what is missing, what it costs, the fix.
    let log = sensor.log();
    let warning = log
        .lines()
        .find(|l| l.contains("IO_URING CAPTURE OFF"))
        .unwrap_or_else(|| panic!("no io_uring warning in:\n{log}"));
    for part in ["io_kiocb.opcode", "not stopped by the kill fallback", "6.0"] {
        assert!(warning.contains(part), "{part}: {warning}");
    }
    let (status, events) = sensor.stop_events();
    assert!(status.success());

    let reads = tests::of_pid(&events, Action::Read, cat);
    assert_eq!(tests::read_total(reads.iter().copied()), MIB);
    let IoUringCapture::Off { reason } = tests::io_uring_capture(&events) else {
        panic!("io_uring capture is on");
    };
    assert!(reason.contains("io_kiocb.opcode"), "{reason}");
    // Repeated until the end: the stop record says it too.
    let stop = events.last().and_then(|e| e.sensor.as_ref()).unwrap();
    assert!(
        matches!(stop.io_uring, Some(IoUringCapture::Off { .. })),
        "{stop:?}"
    );
    if let Some(pid) = uring {
        for action in [Action::Open, Action::Read] {
            assert!(
                tests::of_pid(&events, action, pid).is_empty(),
                "io_uring programs ran: {:#?}",
                briefs(&events)
            );
        }
    }

    // doctor says the same, and that `run` works.
    let out = Command::new(tests::binary())
        .args(["doctor", "--json"])
        .envs(hide)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["can_run"], true, "{report:#}");
    let check = tests::doctor_check(&report, "io_uring capture");
    assert_eq!(check["status"], "missing", "{check:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("io_kiocb.opcode"),
        "{check:#}"
    );
}

/// Runs fio reading `file` whole with `args`; returns its pid.
fn fio(file: &Path, size: u64, args: &[&str]) -> u32 {
    tests::run(
        Command::new("fio")
            .args(["--name=weights", "--rw=read", "--bs=64k", "--numjobs=1"])
            .arg(format!("--size={size}"))
            .arg(format!("--filename={}", file.display()))
            .args(["--output=/dev/null"])
            .args(args),
    )
}

/// The reads of `file` and the process that opened it: exactly one
/// process, a fio job, opened it and read all of it.
#[track_caller]
fn assert_read_whole_by_one_fio_job(events: &[Event], file: &Path, size: u64, what: &str) {
    let opens = events_for(events, Action::Open, file);
    assert_eq!(
        opens.len(),
        1,
        "{what}: {:#?}",
        briefs(opens.iter().copied())
    );
    let job = process(opens[0]);
    assert_eq!(job.comm, "fio", "{what}");
    let reads = events_for(events, Action::Read, file);
    assert!(!reads.is_empty(), "{what}: no read summary");
    for r in &reads {
        assert_eq!(
            process(r).pid,
            job.pid,
            "{what}: {:#?}",
            briefs(reads.clone())
        );
    }
    let bytes: u64 = reads.iter().map(|r| read_summary(r).bytes).sum();
    let calls: u64 = reads.iter().map(|r| read_summary(r).calls).sum();
    let coverage = reads.last().map_or(0.0, |r| read_summary(r).coverage);
    assert_eq!(
        (bytes, calls, coverage),
        (size, size / 65536, 1.0),
        "{what}"
    );
}

#[test]
fn fio_io_uring_and_libaio_reads_are_counted_exactly() {
    let size = 4 * MIB;
    let root = tempfile::tempdir().unwrap();
    let plain = public_file(root.path(), "plain.safetensors", size);
    let fixed = public_file(root.path(), "fixed.safetensors", size);
    let sqpoll = public_file(root.path(), "sqpoll.safetensors", size);
    let libaio = public_file(root.path(), "libaio.safetensors", size);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let pids = [
        fio(&plain, size, &["--ioengine=io_uring", "--iodepth=4"]),
        // READ_FIXED through a registered file: the request names its file.
        fio(
            &fixed,
            size,
            &[
                "--ioengine=io_uring",
                "--iodepth=4",
                "--fixedbufs",
                "--registerfiles",
            ],
        ),
        // A kernel thread submits: it belongs to the job's thread group.
        fio(
            &sqpoll,
            size,
            &["--ioengine=io_uring", "--iodepth=4", "--sqthread_poll=1"],
        ),
        fio(&libaio, size, &["--ioengine=libaio", "--iodepth=8"]),
    ];
    for pid in pids {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    assert_read_whole_by_one_fio_job(&events, &plain, size, "io_uring");
    assert_read_whole_by_one_fio_job(&events, &fixed, size, "io_uring, fixed");
    assert_read_whole_by_one_fio_job(&events, &sqpoll, size, "io_uring, sqpoll");
    assert_read_whole_by_one_fio_job(&events, &libaio, size, "libaio");
}
