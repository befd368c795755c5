//! Every x86-64 write, send and connect the sensor follows for processes
//! that took watched bytes (sensor-ebpf/src/send.rs, numbers in
//! sensor-ebpf/src/tier/tracepoint/syscall.rs), issued by number from
//! `helpers/sends.c`: a wrong number or argument register fails a test.
//!
//! Each test runs the helper twice under one sensor: first after reading a
//! file outside the roots (the control: not followed, no `send` record),
//! then after reading the watched file. The helper's four calls of 4096
//! bytes to one destination give exactly three `send` records there: the
//! first call (4096 bytes, 1 call), the doubling to 8192 (2 calls) and the
//! one to 16384 (4 calls); 12288 is no doubling of 8192. Each record names
//! the syscall, the descriptor and the destination's identity (the file's
//! dev/ino and path, the socket's inode and its peer with the exact port).
//! The helper's report, one write(2) to its stdout pipe after the sends, is
//! a fourth destination: one `send` record of that pipe, which also covers
//! write(2) to a pipe.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, UdpSocket},
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::JoinHandle,
};

use sensor::event::{AccessDetail, Action, DestinationKind, Event, SendDetail, SendSyscall};
use tests::{RECORD_TIMEOUT, SensorProcess, briefs, build_helper, identity, of_pid, write_file};

const MIB: usize = 1024 * 1024;

/// The `send` records of four 4096-byte calls to one destination:
/// `(bytes, calls)` at the first call and at each doubling.
const FOUR_CALLS: [(u64, u64); 3] = [(4096, 1), (8192, 2), (16384, 4)];

/// Where the helper's calls go.
#[derive(Clone, Copy, PartialEq)]
enum Sink {
    /// A new file outside the roots.
    File,
    /// `/dev/null`: a character device, not followed.
    DevNull,
    /// A TCP listener on 127.0.0.1 (connected before the taint, or the
    /// connect itself is the call).
    Tcp,
    /// A UDP socket on 127.0.0.1, named by each `sendto`.
    Udp,
}

/// What the helper printed: `fd=FD bytes=B calls=C major=M minor=N ino=I`.
#[derive(Debug)]
struct Report {
    fd: i32,
    bytes: u64,
    calls: u64,
    /// The destination's identity, with `dev` as the kernel names it.
    dev: u64,
    ino: u64,
    /// The report line's length, newline included: its own write.
    line_len: u64,
}

impl Report {
    fn parse(line: &str) -> Self {
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .parse()
                .unwrap()
        };
        Self {
            fd: field("fd") as i32,
            bytes: field("bytes"),
            calls: field("calls"),
            dev: (field("major") << 20) | field("minor"),
            ino: field("ino"),
            line_len: line.len() as u64,
        }
    }
}

/// One helper run, finished.
struct Run {
    pid: u32,
    report: Report,
    /// `127.0.0.1:PORT` of a socket sink.
    peer: Option<String>,
    /// A file sink's path.
    out: Option<PathBuf>,
    /// `(dev, ino)` of the helper's stdout pipe.
    stdout: (u64, u64),
}

struct Setup {
    helper: PathBuf,
    /// The watched file and a file of the same size outside the roots.
    watched: PathBuf,
    unwatched: PathBuf,
    out: tempfile::TempDir,
    root: tempfile::TempDir,
    _bin: tempfile::TempDir,
    _elsewhere: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let bin = tempfile::tempdir().unwrap();
        let helper = build_helper(bin.path(), "sends");
        let root = tempfile::tempdir().unwrap();
        let watched = root.path().join("sends.safetensors");
        write_file(&watched, MIB);
        let elsewhere = tempfile::tempdir().unwrap();
        let unwatched = elsewhere.path().join("sends.safetensors");
        write_file(&unwatched, MIB);
        Self {
            helper,
            watched,
            unwatched,
            out: tempfile::tempdir().unwrap(),
            root,
            _bin: bin,
            _elsewhere: elsewhere,
        }
    }

    fn sensor(&self) -> SensorProcess {
        SensorProcess::start(&[self.root.path()], &[])
    }

    /// `sends MODE SOURCE DEST`, reading the watched file (`tainted`) or the
    /// unwatched one. A tainted run is held open until the agent wrote its
    /// last expected record, so that a file destination's descriptor can
    /// still be named.
    fn run(&self, sensor: &SensorProcess, mode: &str, sink: Sink, tainted: bool) -> Run {
        let source = if tainted {
            &self.watched
        } else {
            &self.unwatched
        };
        let name = format!("{mode}-{}.bin", if tainted { "tainted" } else { "control" });
        let out = (sink == Sink::File).then(|| self.out.path().join(name));
        // The receiving end: a TCP reader thread, or a UDP socket kept
        // open until the run is over.
        let mut tcp: Option<JoinHandle<u64>> = None;
        let mut _udp: Option<UdpSocket> = None;
        let (dest, peer) = match sink {
            Sink::File => (out.clone().unwrap().into_os_string(), None),
            Sink::DevNull => ("/dev/null".into(), None),
            Sink::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                tcp = Some(std::thread::spawn(move || {
                    let (mut conn, _) = listener.accept().unwrap();
                    let mut sink = Vec::new();
                    conn.read_to_end(&mut sink).unwrap();
                    sink.len() as u64
                }));
                (port.to_string().into(), Some(format!("127.0.0.1:{port}")))
            }
            Sink::Udp => {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = socket.local_addr().unwrap().port();
                _udp = Some(socket);
                (port.to_string().into(), Some(format!("127.0.0.1:{port}")))
            }
        };
        let mut child = Command::new(&self.helper)
            .arg(mode)
            .arg(source)
            .arg(&dest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout_fd = child.stdout.as_ref().unwrap().as_raw_fd();
        let stdout = identity(Path::new(&format!("/proc/self/fd/{stdout_fd}")));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty(), "sends {mode}: no report");
        let report = Report::parse(&line);
        if tainted {
            // The last record of each destination: the helper's report's,
            // and the destination's own unless it is not followed.
            sensor.wait_for_event(
                &format!("the report's send by {pid}"),
                RECORD_TIMEOUT,
                |e| send_of(e, pid).is_some_and(|d| d.destination.ino == stdout.1),
            );
            if sink != Sink::DevNull {
                let (bytes, calls) = (report.bytes, report.calls);
                sensor.wait_for_event(&format!("the last send by {pid}"), RECORD_TIMEOUT, |e| {
                    send_of(e, pid).is_some_and(|d| {
                        d.destination.ino == report.ino && (d.bytes, d.calls) == (bytes, calls)
                    })
                });
            }
        }
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(status.success(), "sends {mode}: {status:?}");
        if let Some(reader) = tcp {
            assert_eq!(reader.join().unwrap(), report.bytes, "bytes the peer got");
        }
        sensor.wait_exit(pid);
        Run {
            pid,
            report,
            peer,
            out,
            stdout,
        }
    }
}

fn send_of(e: &Event, pid: u32) -> Option<&SendDetail> {
    if !tests::is_by(e, Action::Send, pid) {
        return None;
    }
    match &tests::access(e).detail {
        AccessDetail::Send(d) => Some(d),
        other => panic!("a send record without its detail: {other:?}"),
    }
}

fn sends_of(events: &[Event], pid: u32) -> Vec<&SendDetail> {
    events.iter().filter_map(|e| send_of(e, pid)).collect()
}

fn describe(events: &[Event], pid: u32) -> String {
    let mine = briefs(
        events
            .iter()
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid)),
    );
    format!("records of pid {pid}:\n{}", mine.join("\n"))
}

/// The tainted run's `send` records: `expected` `(bytes, calls)` to the
/// destination the helper reported, each naming `syscall`, then exactly
/// one for the report's write to the stdout pipe.
fn assert_sends(
    events: &[Event],
    run: &Run,
    syscall: SendSyscall,
    kind: DestinationKind,
    expected: &[(u64, u64)],
) {
    let r = &run.report;
    let sends = sends_of(events, run.pid);
    let (to_sink, others): (Vec<_>, Vec<_>) = sends
        .into_iter()
        .partition(|d| (d.destination.dev, d.destination.ino) == (r.dev, r.ino));
    let got: Vec<_> = to_sink
        .iter()
        .map(|d| (d.syscall, d.bytes, d.calls))
        .collect();
    let want: Vec<_> = expected
        .iter()
        .map(|&(bytes, calls)| (syscall, bytes, calls))
        .collect();
    assert_eq!(got, want, "{r:?}\n{}", describe(events, run.pid));
    for d in &to_sink {
        assert_eq!(d.fd, r.fd, "{d:?}");
        assert_eq!(d.destination.kind, kind, "{d:?}");
        assert_eq!(d.destination.peer, run.peer, "{d:?}");
        let path = d.destination.path.as_ref().map(|p| p.as_bytes());
        let out = run.out.as_ref().map(|p| p.as_os_str().as_bytes());
        assert_eq!(path, out, "{d:?}");
    }
    if let Some(out) = &run.out {
        assert_eq!(identity(out), (r.dev, r.ino), "the file the helper wrote");
    }
    assert_eq!(others.len(), 1, "{}", describe(events, run.pid));
    let report = others[0];
    assert_eq!(
        (
            report.syscall,
            report.bytes,
            report.calls,
            report.fd,
            report.destination.kind,
            (report.destination.dev, report.destination.ino),
            &report.destination.path,
            &report.destination.peer,
        ),
        (
            SendSyscall::Write,
            r.line_len,
            1,
            1,
            DestinationKind::Pipe,
            run.stdout,
            &None,
            &None,
        ),
        "the report's write to the stdout pipe"
    );
}

/// The control (the same calls after reading no watched byte) has no
/// `send` record, and the tainted run's are as `assert_sends` says.
fn assert_mode(mode: &str, sink: Sink, syscall: SendSyscall, kind: DestinationKind) {
    let setup = Setup::new();
    let sensor = setup.sensor();
    let control = setup.run(&sensor, mode, sink, false);
    let run = setup.run(&sensor, mode, sink, true);
    let (_, events) = sensor.stop_events();
    let expected: &[(u64, u64)] = if syscall == SendSyscall::Connect {
        assert_eq!((run.report.bytes, run.report.calls), (0, 1));
        &[(0, 1)]
    } else {
        assert_eq!((run.report.bytes, run.report.calls), (16384, 4));
        &FOUR_CALLS
    };
    assert_sends(&events, &run, syscall, kind, expected);
    assert_eq!(
        (control.report.bytes, control.report.calls),
        (run.report.bytes, run.report.calls),
        "the control made the same calls"
    );
    assert!(
        of_pid(&events, Action::Send, control.pid).is_empty(),
        "the control read no watched byte: {}",
        describe(&events, control.pid)
    );
}

// --- Files: a new file outside the roots. ---

#[test]
fn write_1() {
    assert_mode(
        "write",
        Sink::File,
        SendSyscall::Write,
        DestinationKind::File,
    );
}

#[test]
fn pwrite64_18() {
    assert_mode(
        "pwrite64",
        Sink::File,
        SendSyscall::Pwrite64,
        DestinationKind::File,
    );
}

#[test]
fn writev_20() {
    assert_mode(
        "writev",
        Sink::File,
        SendSyscall::Writev,
        DestinationKind::File,
    );
}

#[test]
fn pwritev_296() {
    assert_mode(
        "pwritev",
        Sink::File,
        SendSyscall::Pwritev,
        DestinationKind::File,
    );
}

#[test]
fn pwritev2_328() {
    // Named `pwritev` in records (docs/events.md).
    assert_mode(
        "pwritev2",
        Sink::File,
        SendSyscall::Pwritev,
        DestinationKind::File,
    );
}

#[test]
fn write_1_to_a_character_device_is_not_followed() {
    let setup = Setup::new();
    let sensor = setup.sensor();
    let run = setup.run(&sensor, "devnull", Sink::DevNull, true);
    let (_, events) = sensor.stop_events();
    assert_eq!((run.report.bytes, run.report.calls), (16384, 4));
    // Nothing to /dev/null; the same process's write to its stdout pipe,
    // after those, is the positive control.
    assert_sends(
        &events,
        &run,
        SendSyscall::Write,
        DestinationKind::Other,
        &[],
    );
}

// --- Sockets: TCP connected before the taint, or UDP unconnected. ---

#[test]
fn connect_42() {
    assert_mode(
        "connect",
        Sink::Tcp,
        SendSyscall::Connect,
        DestinationKind::Socket,
    );
}

#[test]
fn sendto_44_connected() {
    assert_mode(
        "sendto",
        Sink::Tcp,
        SendSyscall::Sendto,
        DestinationKind::Socket,
    );
}

#[test]
fn sendto_44_unconnected() {
    // The socket has no peer: the record's is the address each call named.
    assert_mode(
        "sendto_unconnected",
        Sink::Udp,
        SendSyscall::Sendto,
        DestinationKind::Socket,
    );
}

#[test]
fn sendmsg_46() {
    assert_mode(
        "sendmsg",
        Sink::Tcp,
        SendSyscall::Sendmsg,
        DestinationKind::Socket,
    );
}

#[test]
fn sendmmsg_307() {
    // Two 2048-byte messages a call: 4096 bytes, one call each time.
    assert_mode(
        "sendmmsg",
        Sink::Tcp,
        SendSyscall::Sendmmsg,
        DestinationKind::Socket,
    );
}
