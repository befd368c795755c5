//! The detectors on hand-made records: thresholds, trust, references, the
//! repeat window and the rate limit. The real-kernel routes are in
//! tests/tests/detections.rs.

use super::*;
use crate::event::{
    Access, Ancestor, CopyDetail, Destination, File, FlushReason, Process, ReadSummary, SyscallAbi,
    Target, Tier, Timestamp,
};

const SECOND: i128 = 1_000_000_000;

struct Run {
    detectors: Detectors,
    seq: u64,
}

impl Run {
    fn new(config: DetectConfig) -> Self {
        Self {
            detectors: Detectors::new(&config),
            seq: 0,
        }
    }

    fn feed(&mut self, mut event: Event) -> Vec<Event> {
        self.seq += 1;
        event.id = Some(RecordId {
            run: 7,
            seq: self.seq,
        });
        self.detectors.observe(&event, None)
    }

    fn ids(&mut self, event: Event) -> Vec<DetectionId> {
        self.feed(event)
            .iter()
            .filter_map(|e| e.detection.as_ref().map(|d| d.id))
            .collect()
    }
}

fn process(pid: u32, exe: &str) -> Process {
    Process {
        pid,
        tid: pid,
        comm: exe
            .rsplit('/')
            .next()
            .unwrap_or(exe)
            .chars()
            .take(15)
            .collect(),
        exe: Some(exe.into()),
        start_time: Some(Timestamp::from_unix_ns(1_000 * SECOND)),
        ..Process::default()
    }
}

fn event(at_secs: i128, p: Process, detail: AccessDetail) -> Event {
    Event {
        id: None,
        time: Timestamp::from_unix_ns(2_000 * SECOND + at_secs * SECOND),
        host: "h".into(),
        action: Action::Read,
        severity: Severity::Info,
        tier: Tier::Tracepoint,
        process: Some(p),
        file: Some(File {
            path: Some("/models/m.safetensors".into()),
            dev: 42,
            ino: 7,
            size: 1000,
            derived_from: None,
        }),
        access: Some(Access {
            abi: SyscallAbi::Native,
            detail,
        }),
        exit: None,
        sensor: None,
        policy: None,
        target: None,
        detection: None,
    }
}

fn open() -> AccessDetail {
    AccessDetail::Open { fd: 3, flags: 0 }
}

fn read(bytes: u64, coverage: f64) -> AccessDetail {
    AccessDetail::Read(ReadSummary {
        fd: Some(3),
        bytes,
        calls: 1,
        copies: 0,
        coverage,
        reason: FlushReason::Close,
        first: Timestamp::from_unix_ns(0),
        last: Timestamp::from_unix_ns(0),
    })
}

fn only(ids: &[DetectionId]) -> DetectConfig {
    DetectConfig {
        disabled: DetectionId::ALL
            .into_iter()
            .filter(|id| !ids.contains(id))
            .collect(),
        ..DetectConfig::default()
    }
}

#[test]
fn bulk_read_at_the_share_and_not_below() {
    let mut run = Run::new(only(&[DetectionId::BulkRead]));
    let cat = process(10, "/usr/bin/cat");
    assert!(run.ids(event(0, cat.clone(), read(499, 0.499))).is_empty());
    let found = run.feed(event(1, cat, read(1, 0.5)));
    assert_eq!(found.len(), 1);
    let d = found[0].detection.as_ref().unwrap();
    assert_eq!(d.id, DetectionId::BulkRead);
    assert_eq!(d.share, Some(0.5));
    assert_eq!(d.bytes, Some(500), "bytes summed over the summaries");
    assert_eq!(found[0].severity, Severity::High);
    assert_eq!(found[0].action, Action::Detection);
    assert_eq!(found[0].id, None, "the agent stamps it");
    // Both summaries are cited, oldest first.
    assert_eq!(d.refs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn a_full_map_is_a_bulk_read_and_a_header_map_is_not() {
    let mut run = Run::new(only(&[DetectionId::BulkRead]));
    let mmap = |length| AccessDetail::Mmap {
        fd: 3,
        prot: 1,
        flags: 2,
        offset: 0,
        length,
        result: 0x7f00_0000_0000,
    };
    assert!(
        run.ids(event(0, process(11, "/usr/bin/x"), mmap(100)))
            .is_empty()
    );
    assert_eq!(
        run.ids(event(0, process(12, "/usr/bin/x"), mmap(4096))),
        vec![DetectionId::BulkRead]
    );
    let failed = AccessDetail::Mmap {
        fd: 3,
        prot: 1,
        flags: 2,
        offset: 0,
        length: 4096,
        result: -13,
    };
    assert!(
        run.ids(event(0, process(13, "/usr/bin/x"), failed))
            .is_empty()
    );
}

#[test]
fn serving_processes_and_trusted_executables_are_no_reader_to_flag() {
    let mut run = Run::new(only(&[
        DetectionId::BulkRead,
        DetectionId::UnexpectedReader,
    ]));
    let mut server = process(20, "/usr/bin/python3.11");
    server.gpu = true;
    assert!(run.ids(event(0, server.clone(), open())).is_empty());
    assert!(run.ids(event(1, server, read(1000, 1.0))).is_empty());
    assert_eq!(
        run.ids(event(0, process(21, "/usr/bin/cat"), open())),
        vec![DetectionId::UnexpectedReader]
    );
    // A write-only open is no reader.
    let write = AccessDetail::Open { fd: 3, flags: 1 };
    assert!(
        run.ids(event(0, process(22, "/usr/bin/dd"), write))
            .is_empty()
    );
}

#[test]
fn a_trusted_executable_by_identity() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup");
    std::fs::write(&backup, b"#!/bin/sh\n").unwrap();
    let mut config = only(&[DetectionId::UnexpectedReader]);
    config.trusted_exes = vec![backup.clone()];
    let mut run = Run::new(config);
    let mut p = process(30, "/elsewhere/named/otherwise");
    p.exe_id = crate::enrich::watch::identity(&backup);
    assert!(run.ids(event(0, p, open())).is_empty());
    assert_eq!(
        run.ids(event(0, process(31, "/usr/bin/cat"), open())),
        vec![DetectionId::UnexpectedReader]
    );
}

#[test]
fn repeats_inside_the_window_are_counted_in_the_next_record() {
    let mut config = only(&[DetectionId::UnexpectedReader]);
    config.repeat_window_secs = 60;
    let mut run = Run::new(config);
    let cat = process(40, "/usr/bin/cat");
    assert_eq!(run.feed(event(0, cat.clone(), open())).len(), 1);
    assert!(run.feed(event(10, cat.clone(), open())).is_empty());
    assert!(run.feed(event(59, cat.clone(), open())).is_empty());
    let again = run.feed(event(61, cat.clone(), open()));
    assert_eq!(again[0].detection.as_ref().unwrap().suppressed, 2);
    // Another process is another window.
    assert_eq!(
        run.feed(event(62, process(41, "/usr/bin/cat"), open()))
            .len(),
        1
    );
    // A reused pid (another start time) too.
    let mut reused = cat;
    reused.start_time = Some(Timestamp::from_unix_ns(1_500 * SECOND));
    assert_eq!(run.feed(event(63, reused, open())).len(), 1);
    let mut counters = crate::metrics::Registry::new();
    counters.collect("detect", &run.detectors);
    let snapshot = counters.snapshot();
    assert_eq!(snapshot["detect"]["suppressed"], 2);
    assert_eq!(snapshot["detect"]["unexpected_reader"], 4);
}

#[test]
fn over_the_rate_is_counted_not_written() {
    let mut config = only(&[DetectionId::UnexpectedReader]);
    config.max_per_minute = 2;
    let mut run = Run::new(config);
    let written: usize = (0..5)
        .map(|pid| {
            run.feed(event(0, process(50 + pid, "/usr/bin/cat"), open()))
                .len()
        })
        .sum();
    assert_eq!(written, 2);
    let mut counters = crate::metrics::Registry::new();
    counters.collect("detect", &run.detectors);
    assert_eq!(counters.snapshot()["detect"]["rate_limited"], 3);
}

#[test]
fn transfer_tools_by_name_script_and_identity() {
    let mut run = Run::new(only(&[DetectionId::TransferTool]));
    let matched = |found: Vec<Event>| {
        found
            .first()
            .and_then(|e| e.detection.as_ref()?.matched.clone())
    };
    assert_eq!(
        matched(run.feed(event(0, process(60, "/usr/bin/tar"), open()))),
        Some("tar".into())
    );
    let mut aws = process(61, "/usr/bin/python3.11");
    aws.args = vec!["/usr/bin/python3".into(), "/usr/local/bin/aws".into()];
    assert_eq!(
        matched(run.feed(event(0, aws, read(10, 0.01)))),
        Some("aws".into())
    );
    // The installed tar under another name.
    if let Some(tar) = crate::enrich::watch::identity(std::path::Path::new("/usr/bin/tar")) {
        let mut renamed = process(62, "/tmp/innocent");
        renamed.exe_id = Some(tar);
        assert_eq!(
            matched(run.feed(event(0, renamed, open()))),
            Some("tar".into())
        );
    }
    assert!(
        run.feed(event(0, process(63, "/usr/bin/cat"), open()))
            .is_empty()
    );
    // A download writes; it does not use the weights' bytes.
    let write = AccessDetail::Open {
        fd: 3,
        flags: 0o1 | 0o100,
    };
    assert!(
        run.feed(event(0, process(64, "/usr/bin/curl"), write))
            .is_empty()
    );
}

#[test]
fn a_shell_under_a_serving_process() {
    let mut run = Run::new(only(&[DetectionId::ServingShell]));
    let server = Ancestor {
        pid: 70,
        comm: "vllm".into(),
        exe: Some("/usr/bin/python3.11".into()),
        gpu: true,
    };
    let mut shell = process(71, "/usr/bin/bash");
    shell.ancestors = vec![server.clone()];
    assert_eq!(
        run.ids(event(0, shell, open())),
        vec![DetectionId::ServingShell]
    );
    // A worker that opened the GPU itself is serving, not a shell.
    let mut worker = process(72, "/usr/bin/python3.11");
    worker.ancestors = vec![server];
    worker.gpu = true;
    assert!(run.ids(event(0, worker, open())).is_empty());
    // A shell with no serving ancestor is not this detection.
    assert!(
        run.ids(event(0, process(73, "/usr/bin/bash"), open()))
            .is_empty()
    );
}

#[test]
fn copies_and_egress_outside_the_allowlist() {
    let mut config = only(&[DetectionId::Copy, DetectionId::Egress]);
    config.egress_allowed = vec!["10.0.0.0/8".parse().unwrap()];
    let mut run = Run::new(config);
    let to = |peer: &str| {
        AccessDetail::Copy(CopyDetail {
            fd: 3,
            fd_out: 4,
            syscall: crate::event::CopySyscall::Sendfile,
            bytes: 1000,
            destination: Destination {
                kind: crate::event::DestinationKind::Socket,
                dev: 9,
                ino: 99,
                path: None,
                peer: Some(peer.into()),
            },
        })
    };
    let mut found = run.ids(event(
        0,
        process(80, "/usr/bin/python3"),
        to("192.0.2.7:443"),
    ));
    found.sort();
    assert_eq!(found, vec![DetectionId::Copy, DetectionId::Egress]);
    assert_eq!(
        run.ids(event(
            0,
            process(81, "/usr/bin/python3"),
            to("10.1.2.3:443")
        )),
        vec![DetectionId::Copy]
    );
    assert_eq!(
        run.ids(event(0, process(82, "/usr/bin/python3"), to("unix"))),
        vec![DetectionId::Copy]
    );
}

#[test]
fn memory_reads_are_high_against_a_serving_target() {
    let mut run = Run::new(only(&[DetectionId::MemoryRead]));
    let mut e = event(
        0,
        process(90, "/usr/bin/gdb"),
        AccessDetail::Memory {
            method: crate::event::MemoryMethod::PtraceAttach,
            bytes: 0,
            summary: None,
        },
    );
    e.file = None;
    e.target = Some(Target {
        pid: 91,
        comm: "python3".into(),
        exe: None,
        gpu: true,
        weights: vec!["/models/m.safetensors".into()],
    });
    let found = run.feed(e);
    assert_eq!(found[0].severity, Severity::High);
    assert!(
        found[0]
            .detection
            .as_ref()
            .unwrap()
            .summary
            .contains("GPU-serving")
    );
}

#[test]
fn memory_reads_name_their_method() {
    use crate::event::MemoryMethod as M;
    for (n, (method, name)) in [
        (M::ProcMemOpen, "/proc/PID/mem open"),
        (M::ProcMemRead, "/proc/PID/mem read"),
        (M::PtracePeek, "ptrace peek"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut run = Run::new(only(&[DetectionId::MemoryRead]));
        let mut e = event(
            0,
            process(90 + n as u32, "/usr/bin/gdb"),
            AccessDetail::Memory {
                method,
                bytes: 8192,
                summary: None,
            },
        );
        e.file = None;
        e.target = Some(Target {
            pid: 99,
            comm: "python3".into(),
            exe: None,
            gpu: false,
            weights: vec!["/models/m.safetensors".into()],
        });
        let found = run.feed(e);
        let d = found[0].detection.as_ref().unwrap();
        assert_eq!(d.matched.as_deref(), Some(name));
        assert_eq!(d.bytes, Some(8192));
        assert!(d.summary.contains(name), "{}", d.summary);
    }
}

#[test]
fn exits_forget_the_process() {
    let mut run = Run::new(only(&[DetectionId::UnexpectedReader]));
    let cat = process(100, "/usr/bin/cat");
    assert_eq!(run.feed(event(0, cat.clone(), open())).len(), 1);
    let mut exit = event(1, cat.clone(), open());
    exit.action = Action::Exit;
    exit.access = None;
    exit.file = None;
    assert!(run.feed(exit).is_empty());
    // Same pid and start after the exit: a new window, fresh references.
    let found = run.feed(event(2, cat, open()));
    assert_eq!(found[0].detection.as_ref().unwrap().refs.len(), 1);
}

#[test]
fn processes_gone_without_an_exit_are_forgotten_by_the_sweep() {
    let mut run = Run::new(only(&[DetectionId::UnexpectedReader]));
    let cat = process(100, "/usr/bin/cat");
    assert_eq!(run.feed(event(0, cat.clone(), open())).len(), 1);
    // Its exit record was lost; the sweep finds it gone.
    run.detectors.forget_gone(|pid| pid == 100);
    let found = run.feed(event(1, cat, open()));
    assert_eq!(found.len(), 1, "a fresh repeat window");
    assert_eq!(found[0].detection.as_ref().unwrap().refs.len(), 1);
    assert_eq!(run.detectors.evicted(), 0);
}

#[test]
fn state_dropped_at_its_bound_is_counted() {
    let mut run = Run::new(only(&[DetectionId::UnexpectedReader]));
    // One pair per process, 65,536 processes: the bound; one more evicts.
    for pid in 1..=65_537 {
        run.feed(event(0, process(pid, "/usr/bin/cat"), open()));
    }
    assert!(run.detectors.evicted() >= 1, "{}", run.detectors.evicted());
}

fn send_to_file(bytes: u64) -> AccessDetail {
    AccessDetail::Send(crate::event::SendDetail {
        fd: 4,
        syscall: crate::event::SendSyscall::Write,
        bytes,
        calls: 1,
        destination: Destination {
            kind: crate::event::DestinationKind::File,
            dev: 42,
            ino: 99,
            path: Some("/tmp/out".into()),
            peer: None,
        },
    })
}

#[test]
fn a_send_before_the_read_summary_is_judged_when_the_read_comes() {
    let mut run = Run::new(only(&[DetectionId::Copy]));
    let dd = process(110, "/usr/bin/dd");
    let mut send = event(0, dd.clone(), send_to_file(1000));
    send.file = None;
    send.action = Action::Send;
    assert!(run.feed(send).is_empty(), "no weights known yet");
    let found = run.feed(event(1, dd, read(1000, 1.0)));
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = found[0].detection.as_ref().unwrap();
    assert_eq!(
        (d.id, d.matched.as_deref(), d.bytes),
        (DetectionId::Copy, Some("write"), Some(1000))
    );
    assert!(matches!(
        found[0].access.as_ref().map(|a| &a.detail),
        Some(AccessDetail::Send(_))
    ));
    // The source is named, and both records are cited.
    assert_eq!(
        found[0].file.as_ref().and_then(|f| f.path.clone()),
        Some("/models/m.safetensors".into())
    );
    assert_eq!(d.refs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 1]);
    // Less than copy_share of what was taken is no copy.
    let mut small = event(2, process(111, "/usr/bin/dd"), send_to_file(400));
    small.file = None;
    small.action = Action::Send;
    run.feed(small);
    assert!(
        run.feed(event(3, process(111, "/usr/bin/dd"), read(1000, 1.0)))
            .is_empty()
    );
}

#[test]
fn a_child_s_send_is_tied_to_its_parent_s_weights() {
    let mut run = Run::new(only(&[DetectionId::Egress]));
    let parent = process(120, "/usr/bin/python3");
    let mut child = process(121, "/usr/bin/curl");
    child.ancestors = vec![Ancestor {
        pid: 120,
        comm: "python3".into(),
        exe: None,
        gpu: false,
    }];
    assert!(run.feed(event(0, parent, read(1000, 1.0))).is_empty());
    let mut send = event(1, child, send_to_file(10));
    send.file = None;
    send.action = Action::Send;
    if let Some(AccessDetail::Send(s)) = send.access.as_mut().map(|a| &mut a.detail) {
        s.destination.kind = crate::event::DestinationKind::Socket;
        s.destination.peer = Some("192.0.2.7:443".into());
    }
    let found = run.feed(send);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(
        found[0].file.as_ref().and_then(|f| f.path.clone()),
        Some("/models/m.safetensors".into()),
        "the parent's weights"
    );
}
