//! The golden records: `golden.jsonl` was written by the record types this
//! encoder replaced (commit "Golden native records for every action"), so
//! byte equality here proves the encoding did not change.

use super::*;
use crate::enrich::coverage::coverage;
use crate::event::{Detection, DetectionId, RecordId};

const GOLDEN: &str = include_str!("golden.jsonl");

fn at(text: &str) -> Timestamp {
    parse_time("test", text).expect("time")
}

pub(in crate::output::encode) fn process() -> Process {
    Process {
        pid: 48211,
        tid: 48213,
        ppid: 48190,
        uid: 1000,
        gid: 1001,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3.11".into()),
        args: vec!["python3".into(), "-c".into(), "load(\"m\")".into()],
        args_truncated: true,
        cgroup_id: 4242,
        container: Some(Container {
            id: "0123456789ab".into(),
            runtime: Runtime::Containerd,
            pod_uid: Some("1f2e3d4c-0000-1111-2222-333344445555".into()),
        }),
        start_time: Some(at("2026-11-25T17:30:02.301554412Z")),
        gpu: true,
        ancestors: vec![
            Ancestor {
                pid: 48190,
                comm: "bash".into(),
                exe: Some("/usr/bin/bash".into()),
                gpu: false,
            },
            Ancestor {
                pid: 1,
                comm: "systemd".into(),
                exe: None,
                gpu: false,
            },
        ],
        ..Process::default()
    }
}

fn host_process() -> Process {
    Process {
        pid: 7,
        tid: 7,
        ppid: 1,
        comm: "cat".into(),
        ..Process::default()
    }
}

pub(in crate::output::encode) fn base(action: Action, process: Option<Process>) -> Event {
    Event {
        id: None,
        time: at("2026-11-25T17:30:02.418230114Z"),
        host: "gpu-7".into(),
        action,
        severity: Severity::Info,
        tier: Tier::Tracepoint,
        process,
        file: None,
        access: None,
        exit: None,
        sensor: None,
        policy: None,
        target: None,
        detection: None,
    }
}

pub(in crate::output::encode) fn file(path: Option<&str>) -> File {
    File {
        path: path.map(Text::from),
        dev: (254 << 20) | 3,
        ino: 1_835_011,
        size: 67_108_864,
        derived_from: None,
    }
}

fn access(abi: SyscallAbi, detail: AccessDetail) -> Option<Access> {
    Some(Access { abi, detail })
}

fn status() -> SensorStatus {
    let section = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    SensorStatus {
        version: "0.1.0".into(),
        pid: 4321,
        uptime_secs: 61,
        hooks_attached: 5,
        watched_files: 12,
        status_time: Some(at("2026-11-25T17:31:03.000000001Z")),
        counters: BTreeMap::from([
            (
                "watch".to_string(),
                section(&[
                    ("files", 12),
                    ("paths", 13),
                    ("gpu_devices", 2),
                    ("links", 1),
                    ("directories", 4),
                    ("missing_roots", 1),
                    ("unreadable_dirs", 0),
                    ("watch_failures", 0),
                    ("map_full_failures", 0),
                    ("map_update_failures", 0),
                    ("queue_overflows", 0),
                    ("rescans", 1),
                ]),
            ),
            (
                "processes".to_string(),
                section(&[
                    ("entries", 300),
                    ("exited", 2),
                    ("gpu_processes", 1),
                    ("evictions", 0),
                    ("proc_read_failures", 3),
                ]),
            ),
            (
                "kernel".to_string(),
                section(&[
                    ("ringbuf_full", 7),
                    ("read_aggregates_full", 0),
                    ("pending_full", 1),
                    ("kernel_read_failures", 0),
                    ("holders_full", 0),
                ]),
            ),
            (
                "agent".to_string(),
                section(&[
                    ("kernel_records", 100),
                    ("decode_errors", 0),
                    ("records_emitted", 90),
                    ("read_summaries_drained", 4),
                    ("aggregate_map_errors", 0),
                ]),
            ),
        ]),
        outputs: vec![
            OutputCounters {
                name: "stdout".into(),
                records_written: 89,
                write_failures: 0,
                ..OutputCounters::default()
            },
            OutputCounters {
                name: "jsonl:/var/log/ww.jsonl".into(),
                records_written: 88,
                write_failures: 1,
                dropped: 2,
                queued: 3,
                queued_bytes: 900,
                spooled: 4,
                spool_bytes: 1200,
            },
        ],
        enforcement: None,
        unconfirmed: None,
        io_uring: None,
        store_head: None,
    }
}

/// One event per line of the golden file, built the way the generator
/// built its records.
pub(in crate::output::encode) fn golden_events() -> Vec<Event> {
    let mut out = Vec::new();
    let mut open = base(Action::Open, Some(process()));
    open.file = Some(file(Some("/models/llama/model.safetensors")));
    open.access = access(
        SyscallAbi::Native,
        AccessDetail::Open {
            fd: 3,
            flags: 0o2100000 | 0x4000_0000,
        },
    );
    out.push(open);
    let mut open32 = base(Action::Open, Some(host_process()));
    open32.file = Some(file(None));
    open32.access = access(SyscallAbi::Ia32, AccessDetail::Open { fd: 4, flags: 2 });
    out.push(open32);
    let mut read = base(Action::Read, Some(process()));
    read.file = Some(file(Some("/models/llama/model.safetensors")));
    read.access = access(
        SyscallAbi::Native,
        AccessDetail::Read(ReadSummary {
            fd: Some(3),
            bytes: 67_108_864,
            calls: 513,
            copies: 0,
            coverage: coverage(&[u64::MAX; 4], 64 << 20),
            reason: FlushReason::Close,
            first: at("2026-11-25T17:30:02.303101876Z"),
            last: at("2026-11-25T17:30:02.417996309Z"),
        }),
    );
    out.push(read);
    let mut partial = base(Action::Read, Some(host_process()));
    partial.file = Some(file(Some("/models/x.gguf")));
    partial.access = access(
        SyscallAbi::Ia32,
        AccessDetail::Read(ReadSummary {
            fd: None,
            bytes: 10,
            calls: 2,
            copies: 0,
            coverage: coverage(&[0b111, 0, 0, 0], 10),
            reason: FlushReason::Idle,
            first: at("2026-11-25T17:30:02.000000001Z"),
            last: at("2026-11-25T17:30:02.000000002Z"),
        }),
    );
    out.push(partial);
    let mut mmap = base(Action::Mmap, Some(process()));
    mmap.file = Some(file(Some("/models/llama/model.safetensors")));
    mmap.access = access(
        SyscallAbi::Native,
        AccessDetail::Mmap {
            fd: 5,
            prot: 1,
            flags: 0x2 | 0x8000,
            offset: 4096,
            length: 67_104_768,
            result: 0x7f00_0000_0000,
        },
    );
    out.push(mmap);
    let mut mmap_err = base(Action::Mmap, Some(host_process()));
    mmap_err.file = Some(file(Some("/models/x.gguf")));
    mmap_err.access = access(
        SyscallAbi::Native,
        AccessDetail::Mmap {
            fd: 6,
            prot: 0,
            flags: 0x1 | 0x4000_0000,
            offset: 0,
            length: 1,
            result: -13,
        },
    );
    out.push(mmap_err);
    let mut close = base(Action::Close, Some(process()));
    close.file = Some(file(Some("/models/llama/model.safetensors")));
    close.access = access(SyscallAbi::Native, AccessDetail::Close { fd: 3 });
    out.push(close);
    out.push(base(Action::Exec, Some(process())));
    let mut exit = base(Action::Exit, Some(host_process()));
    exit.exit = Some(Exit {
        wait_status: 3 << 8,
    });
    out.push(exit);
    let mut killed = base(Action::Exit, Some(process()));
    killed.exit = Some(Exit { wait_status: 9 });
    out.push(killed);
    for action in [Action::SensorStart, Action::Heartbeat, Action::SensorStop] {
        let mut r = base(action, None);
        r.sensor = Some(status());
        out.push(r);
    }
    out
}

fn encode_all(events: &[Event]) -> String {
    let mut out = Vec::new();
    for event in events {
        Native.encode(event, &mut out).expect("encode");
    }
    String::from_utf8(out).expect("utf-8")
}

/// The actions the record types before the event model had; the policy's
/// actions came after and are held by `policy_records_have_their_shape`.
const ACTIONS_BEFORE_THE_MODEL: usize = 9;

#[test]
fn every_action_encodes_byte_for_byte_as_before() {
    let events = golden_events();
    let covered: Vec<Action> = events.iter().map(|e| e.action).collect();
    for action in &Action::ALL[..ACTIONS_BEFORE_THE_MODEL] {
        assert!(covered.contains(action), "no golden record for {action:?}");
    }
    let encoded = encode_all(&events);
    for (n, (got, want)) in encoded.lines().zip(GOLDEN.lines()).enumerate() {
        assert_eq!(got, want, "golden line {}", n + 1);
    }
    assert_eq!(encoded.lines().count(), GOLDEN.lines().count());
}

#[test]
fn golden_records_decode_into_the_same_events() {
    for (line, mut want) in GOLDEN.lines().zip(golden_events()) {
        let got = decode(line).expect("decode");
        // The record keeps the address only as "ok".
        if let Some(Access {
            detail: AccessDetail::Mmap { result, .. },
            ..
        }) = &mut want.access
            && *result >= 0
        {
            *result = 0;
        }
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn invalid_utf8_gets_a_faithful_twin_and_decodes_to_the_same_bytes() {
    let mut event = base(Action::Open, Some(process()));
    let mut p = process();
    p.exe = Some(Text::from(b"/opt/\xffbin".as_slice()));
    p.args = vec![Text::from("a\\x41"), Text::from(b"x\xfe.gguf".as_slice())];
    p.ancestors[0].exe = Some(Text::from(b"/a\xc3".as_slice()));
    event.process = Some(p);
    event.file = Some(file(None));
    event.file.as_mut().expect("file").path = Some(Text::from(b"/models/x\xff.gguf".as_slice()));
    event.access = access(SyscallAbi::Native, AccessDetail::Open { fd: 3, flags: 0 });
    let line = encode_all(std::slice::from_ref(&event));
    let json: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(json["file"]["path"], "/models/x\u{fffd}.gguf");
    assert_eq!(json["file"]["path_escaped"], "/models/x\\xff.gguf");
    assert_eq!(json["process"]["exe_escaped"], "/opt/\\xffbin");
    assert_eq!(json["process"]["args_escaped"][1], "x\\xfe.gguf");
    assert_eq!(json["process"]["args_escaped"][0], "a\\\\x41");
    assert_eq!(json["process"]["ancestors"][0]["exe_escaped"], "/a\\xc3");
    assert_eq!(decode(&line).expect("decode"), event);
}

#[test]
fn bad_records_are_decode_errors() {
    assert!(matches!(decode("{"), Err(DecodeError::Json(_))));
    let other = GOLDEN
        .lines()
        .next()
        .expect("line")
        .replace("weightwarden/1", "weightwarden/9");
    assert!(matches!(decode(&other), Err(DecodeError::Schema(_))));
    let bad_dev = GOLDEN.lines().next().expect("line").replace("254:3", "x");
    assert!(matches!(
        decode(&bad_dev),
        Err(DecodeError::Value {
            field: "file.dev",
            ..
        })
    ));
}

#[test]
fn policy_records_have_their_shape_and_decode_back() {
    use crate::decide::policy::{Mode, Operation, PolicyAction};
    use crate::event::{PolicyInfo, PolicyLoaded, PolicyVerdict};

    let mut would_deny = base(Action::WouldDeny, Some(host_process()));
    would_deny.severity = Severity::High;
    would_deny.file = Some(file(Some("/models/x.gguf")));
    would_deny.access = access(SyscallAbi::Native, AccessDetail::Open { fd: 3, flags: 0 });
    would_deny.policy = Some(PolicyInfo::Verdict(PolicyVerdict {
        sha256: "ab".repeat(32),
        mode: Mode::Audit,
        verdict: PolicyAction::Deny,
        operation: Operation::Open,
        rule: None,
        rule_name: None,
        weight_set: "llama".into(),
        mechanism: "none".into(),
        unjudged: false,
    }));
    let mut alert = would_deny.clone();
    alert.action = Action::Alert;
    alert.severity = Severity::Medium;
    if let Some(PolicyInfo::Verdict(v)) = &mut alert.policy {
        v.verdict = PolicyAction::Alert;
        v.rule = Some(2);
        v.rule_name = Some("admins".into());
    }
    let mut loaded = base(Action::PolicyLoaded, None);
    loaded.policy = Some(PolicyInfo::Loaded(PolicyLoaded {
        sha256: "cd".repeat(32),
        path: Text::from("/etc/weightwarden/policy.toml"),
        mode: Mode::Audit,
        weight_sets: 2,
        rules: 3,
        files: 120,
        files_unwatched: 4,
        warnings: 1,
        mechanism: "none".into(),
    }));
    let events = [would_deny, alert, loaded];
    let text = encode_all(&events);
    let lines: Vec<&str> = text.lines().collect();
    let tail = |line: &str| line[line.find("\"policy\":").expect("policy object")..].to_owned();
    assert_eq!(
        tail(lines[0]),
        format!(
            "\"policy\":{{\"sha256\":\"{}\",\"mode\":\"audit\",\"verdict\":\"deny\",\"operation\":\"open\",\"weight_set\":\"llama\",\"mechanism\":\"none\"}}}}",
            "ab".repeat(32)
        )
    );
    assert!(lines[0].contains("\"action\":\"would_deny\",\"severity\":\"high\""));
    assert!(tail(lines[1]).contains(
        "\"verdict\":\"alert\",\"operation\":\"open\",\"rule\":2,\"rule_name\":\"admins\""
    ));
    assert_eq!(
        tail(lines[2]),
        format!(
            "\"policy\":{{\"sha256\":\"{}\",\"mode\":\"audit\",\"mechanism\":\"none\",\"path\":\"/etc/weightwarden/policy.toml\",\"weight_sets\":2,\"rules\":3,\"files\":120,\"files_unwatched\":4,\"warnings\":1}}}}",
            "cd".repeat(32)
        )
    );
    for (line, event) in lines.iter().zip(&events) {
        assert_eq!(&decode(line).expect("decode"), event, "{line}");
    }
}

#[test]
fn a_read_summary_with_copies_says_so_and_decodes_back() {
    let mut events = golden_events();
    let read = events
        .iter_mut()
        .find(|e| e.action == Action::Read)
        .expect("a read in the golden events");
    if let Some(Access {
        detail: AccessDetail::Read(r),
        ..
    }) = &mut read.access
    {
        r.copies = 3;
    }
    let read = read.clone();
    let line = encode_all(std::slice::from_ref(&read));
    assert!(line.contains("\"calls\":513,\"copies\":3,"), "{line}");
    let back = decode(line.trim_end()).expect("decodes");
    assert_eq!(back, read);
}

#[test]
fn copy_records_have_their_shape_and_decode_back() {
    let mut copy = base(Action::Copy, Some(process()));
    copy.file = Some(file(Some("/models/llama/model.safetensors")));
    copy.access = access(
        SyscallAbi::Native,
        AccessDetail::Copy(CopyDetail {
            fd: 3,
            fd_out: 4,
            syscall: CopySyscall::CopyFileRange,
            bytes: 1 << 20,
            destination: Destination {
                kind: DestinationKind::File,
                dev: (8 << 20) | 1,
                ino: 77,
                path: Some(Text::from("/tmp/stolen.bin")),
                peer: None,
            },
        }),
    );
    let mut socket = copy.clone();
    if let Some(Access {
        detail: AccessDetail::Copy(c),
        ..
    }) = &mut socket.access
    {
        c.syscall = CopySyscall::Sendfile;
        c.destination = Destination {
            kind: DestinationKind::Socket,
            dev: 9,
            ino: 4242,
            path: None,
            peer: Some(String::from("10.0.0.9:443")),
        };
    }
    let text = encode_all(&[copy.clone(), socket.clone()]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(
            "\"access\":{\"fd\":3,\"bytes\":1048576,\"fd_out\":4,\"copy_syscall\":\"copy_file_range\",\
             \"destination\":{\"type\":\"file\",\"dev\":\"8:1\",\"ino\":77,\"path\":\"/tmp/stolen.bin\"}}"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"destination\":{\"type\":\"socket\",\"dev\":\"0:9\",\"ino\":4242,\"peer\":\"10.0.0.9:443\"}"),
        "{}",
        lines[1]
    );
    assert_eq!(decode(lines[0]).expect("decodes"), copy);
    assert_eq!(decode(lines[1]).expect("decodes"), socket);
}

#[test]
fn memory_read_records_have_their_shape_and_decode_back() {
    let mut read = base(Action::MemoryRead, Some(process()));
    read.severity = Severity::High;
    read.access = access(
        SyscallAbi::Native,
        AccessDetail::Memory {
            method: MemoryMethod::ProcessVmReadv,
            bytes: 4096,
            summary: None,
        },
    );
    read.target = Some(Target {
        pid: 4321,
        comm: "vllm".into(),
        exe: Some(Text::from("/usr/bin/python3.11")),
        gpu: true,
        weights: vec![Text::from("/models/llama/model.safetensors")],
    });
    let line = encode_all(std::slice::from_ref(&read));
    assert!(
        line.contains(
            "\"access\":{\"bytes\":4096,\"method\":\"process_vm_readv\"},\"target\":{\"pid\":4321,\
             \"comm\":\"vllm\",\"exe\":\"/usr/bin/python3.11\",\"gpu\":true,\
             \"weights\":[\"/models/llama/model.safetensors\"]}"
        ),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), read);
}

#[test]
fn memory_read_summaries_have_their_shape_and_decode_back() {
    let mut peeks = base(Action::MemoryRead, Some(process()));
    peeks.severity = Severity::Medium;
    peeks.access = access(
        SyscallAbi::Native,
        AccessDetail::Memory {
            method: MemoryMethod::PtracePeek,
            bytes: 8 * 512,
            summary: Some(MemorySummary {
                calls: 512,
                reason: FlushReason::Close,
                first: Timestamp::from_unix_ns(1_764_000_000_000_000_000),
                last: Timestamp::from_unix_ns(1_764_000_000_500_000_000),
            }),
        },
    );
    peeks.target = Some(Target {
        pid: 4321,
        comm: "vllm".into(),
        exe: None,
        gpu: false,
        weights: vec![Text::from("/models/llama/model.safetensors")],
    });
    let line = encode_all(std::slice::from_ref(&peeks));
    assert!(
        line.contains(
            "\"access\":{\"bytes\":4096,\"calls\":512,\"method\":\"ptrace_peek\",\"reason\":\"close\",\
             \"first_time\":\"2025-11-24T16:00:00.000000000Z\",\"last_time\":\"2025-11-24T16:00:00.500000000Z\"}"
        ),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), peeks);
}

#[test]
fn open_summaries_have_their_shape_and_decode_back() {
    let mut opens = base(Action::OpenSummary, Some(process()));
    opens.file = Some(file(Some("/models/llama/model.safetensors")));
    opens.access = access(
        SyscallAbi::Native,
        AccessDetail::OpenSummary(OpenSummary {
            fd: None,
            opens: 9_999,
            closes: 10_000,
            flags: 0o100000,
            reason: FlushReason::Exit,
            first: Timestamp::from_unix_ns(1_764_000_000_000_000_000),
            last: Timestamp::from_unix_ns(1_764_000_001_000_000_000),
        }),
    );
    let line = encode_all(std::slice::from_ref(&opens));
    assert!(line.contains("\"action\":\"open_summary\""), "{line}");
    assert!(
        line.contains(
            "\"access\":{\"flags\":[\"O_RDONLY\",\"O_LARGEFILE\"],\"flags_raw\":32768,\"opens\":9999,\
             \"closes\":10000,\"reason\":\"exit\",\"first_time\":\"2025-11-24T16:00:00.000000000Z\",\
             \"last_time\":\"2025-11-24T16:00:01.000000000Z\"}"
        ),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), opens);
}

#[test]
fn detection_records_have_their_shape_and_decode_back() {
    let run = 0x0123_4567_89ab_cdef;
    let mut found = base(Action::Detection, Some(process()));
    found.id = Some(RecordId { run, seq: 12 });
    found.severity = Severity::High;
    found.file = Some(file(Some("/models/llama/model.safetensors")));
    found.access = access(
        SyscallAbi::Native,
        AccessDetail::Open {
            fd: 3,
            flags: 0o100000,
        },
    );
    if let Some(p) = found.process.as_mut() {
        p.ancestors[0].gpu = true;
    }
    let mut detection = Detection::new(
        DetectionId::BulkRead,
        "cat (pid 7) read 100% of /models/llama/model.safetensors".into(),
    );
    detection.refs = vec![RecordId { run, seq: 10 }, RecordId { run, seq: 11 }];
    detection.suppressed = 3;
    detection.bytes = Some(4096);
    detection.share = Some(1.0);
    detection.matched = Some("read".into());
    found.detection = Some(detection);
    let line = encode_all(std::slice::from_ref(&found));
    assert!(
        line.starts_with(
            "{\"schema\":\"weightwarden/1\",\"id\":\"0123456789abcdef-12\",\"seq\":12,\"time\""
        ),
        "{line}"
    );
    assert!(
        line.contains(
            "\"detection\":{\"id\":\"bulk_read\",\"summary\":\"cat (pid 7) read 100% of \
             /models/llama/model.safetensors\",\"atlas\":[\"AML.T0035\",\"AML.T0037\"],\
             \"refs\":[\"0123456789abcdef-10\",\"0123456789abcdef-11\"],\"suppressed\":3,\
             \"bytes\":4096,\"share\":1.0,\"matched\":\"read\"}"
        ),
        "{line}"
    );
    assert!(
        line.contains("\"comm\":\"bash\",\"exe\":\"/usr/bin/bash\",\"gpu\":true}"),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), found);
    let bad = line.replace("0123456789abcdef-10", "not-an-id");
    assert!(matches!(
        decode(bad.trim_end()),
        Err(DecodeError::Value {
            field: "detection.refs",
            ..
        })
    ));
}

#[test]
fn send_records_have_their_shape_and_decode_back() {
    let mut send = base(Action::Send, Some(process()));
    send.access = access(
        SyscallAbi::Native,
        AccessDetail::Send(crate::event::SendDetail {
            fd: 5,
            syscall: crate::event::SendSyscall::Sendto,
            bytes: 1 << 20,
            calls: 16,
            destination: Destination {
                kind: DestinationKind::Socket,
                dev: 9,
                ino: 77,
                path: None,
                peer: Some("192.0.2.7:443".into()),
            },
        }),
    );
    let line = encode_all(std::slice::from_ref(&send));
    assert!(
        line.contains(
            "\"access\":{\"fd\":5,\"bytes\":1048576,\"calls\":16,\"send_syscall\":\"sendto\",\
             \"destination\":{\"type\":\"socket\",\"dev\":\"0:9\",\"ino\":77,\"peer\":\"192.0.2.7:443\"}}"
        ),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), send);
    // A detection raised on a send decodes its access as a send.
    let mut found = send.clone();
    found.action = Action::Detection;
    found.detection = Some(Detection::new(DetectionId::Egress, "sent".into()));
    let line = encode_all(std::slice::from_ref(&found));
    assert_eq!(decode(line.trim_end()).expect("decodes"), found);
}

#[test]
fn io_uring_send_records_name_the_request_and_no_descriptor() {
    let mut send = base(Action::Send, Some(process()));
    send.access = access(
        SyscallAbi::Native,
        AccessDetail::Send(crate::event::SendDetail {
            fd: -1,
            syscall: crate::event::SendSyscall::IoUringWriteFixed,
            bytes: 163_840,
            calls: 3,
            destination: Destination {
                kind: DestinationKind::File,
                dev: 9,
                ino: 78,
                path: None,
                peer: None,
            },
        }),
    );
    let line = encode_all(std::slice::from_ref(&send));
    assert!(
        line.contains(
            "\"access\":{\"fd\":-1,\"bytes\":163840,\"calls\":3,\
             \"send_syscall\":\"io_uring_write_fixed\",\
             \"destination\":{\"type\":\"file\",\"dev\":\"0:9\",\"ino\":78}}"
        ),
        "{line}"
    );
    assert_eq!(decode(line.trim_end()).expect("decodes"), send);
}

#[test]
fn create_records_have_their_shape_and_decode_back() {
    let after = FileState {
        ino: 4242,
        size: 0,
        mtime: Some(at("2026-11-28T10:00:00Z")),
    };
    let mut node = base(Action::Create, Some(process()));
    node.file = Some(file(Some("/models/llama/evil.safetensors")));
    node.access = access(
        SyscallAbi::Native,
        AccessDetail::Change(Box::new(ChangeDetail {
            syscall: ChangeSyscall::Mknodat,
            mode: Some(0o600),
            file_type: Some(EntryType::BlockDevice),
            rdev: Some((8 << 20) | 1),
            after: Some(after),
            ..ChangeDetail::default()
        })),
    );
    let mut opened = base(Action::Create, Some(process()));
    opened.file = Some(file(Some("/models/llama/new.safetensors")));
    opened.access = access(
        SyscallAbi::Native,
        AccessDetail::Change(Box::new(ChangeDetail {
            syscall: ChangeSyscall::IoUringOpenat,
            fd: Some(5),
            file_type: Some(EntryType::Regular),
            after: Some(after),
            ..ChangeDetail::default()
        })),
    );
    let text = encode_all(&[node.clone(), opened.clone()]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("\"action\":\"create\""), "{}", lines[0]);
    assert!(
        lines[0].contains(
            "\"syscall\":\"mknodat\",\"mode\":\"0600\",\"after\":{\"ino\":4242,\"size\":0,\
             \"mtime\":\"2026-11-28T10:00:00.000000000Z\"},\"file_type\":\"block_device\",\
             \"rdev\":\"8:1\"}"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"syscall\":\"io_uring_openat\""),
        "{}",
        lines[1]
    );
    assert_eq!(decode(lines[0]).expect("decodes"), node);
    assert_eq!(decode(lines[1]).expect("decodes"), opened);
}

#[test]
fn change_records_have_their_shape_and_decode_back() {
    let state = |ino, size, mtime: &str| FileState {
        ino,
        size,
        mtime: Some(at(mtime)),
    };
    let mut rename = base(Action::Rename, Some(process()));
    rename.file = Some(file(Some("/models/llama/model.safetensors")));
    rename.access = access(
        SyscallAbi::Native,
        AccessDetail::Change(Box::new(ChangeDetail {
            syscall: ChangeSyscall::Renameat,
            old_path: Some(Text::from("/tmp/evil.bin")),
            new_path: Some(Text::from("/models/llama/model.safetensors")),
            before: Some(state(99, 10, "2026-11-25T17:00:00.000000001Z")),
            after: Some(state(99, 10, "2026-11-25T17:00:00.000000001Z")),
            replaced: Some(Replaced {
                path: Some(Text::from("/models/llama/model.safetensors")),
                dev: (8 << 20) | 1,
                state: state(1835011, 67108864, "2026-11-20T10:00:00Z"),
            }),
            ..ChangeDetail::default()
        })),
    );
    let mut truncate = base(Action::Truncate, Some(process()));
    truncate.file = Some(file(Some("/models/llama/model.safetensors")));
    truncate.access = access(
        SyscallAbi::Native,
        AccessDetail::Change(Box::new(ChangeDetail {
            syscall: ChangeSyscall::Openat,
            fd: Some(3),
            flags: Some(0o1101),
            before: Some(state(1835011, 67108864, "2026-11-20T10:00:00Z")),
            after: Some(state(1835011, 0, "2026-11-25T17:30:02Z")),
            ..ChangeDetail::default()
        })),
    );
    let mut chmod = base(Action::SetAttributes, Some(process()));
    chmod.file = Some(file(Some("/models/llama/model.safetensors")));
    chmod.access = access(
        SyscallAbi::Native,
        AccessDetail::Change(Box::new(ChangeDetail {
            syscall: ChangeSyscall::Fchmodat,
            mode: Some(0o600),
            result: 0,
            ..ChangeDetail::default()
        })),
    );
    let text = encode_all(&[rename.clone(), truncate.clone(), chmod.clone()]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains(
            "\"access\":{\"result\":\"ok\",\"syscall\":\"renameat\",\"old_path\":\"/tmp/evil.bin\",\
             \"new_path\":\"/models/llama/model.safetensors\",\
             \"before\":{\"ino\":99,\"size\":10,\"mtime\":\"2026-11-25T17:00:00.000000001Z\"},\
             \"after\":{\"ino\":99,\"size\":10,\"mtime\":\"2026-11-25T17:00:00.000000001Z\"},\
             \"replaced\":{\"path\":\"/models/llama/model.safetensors\",\"dev\":\"8:1\",\
             \"ino\":1835011,\"size\":67108864,\"mtime\":\"2026-11-20T10:00:00.000000000Z\"}}"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "\"access\":{\"fd\":3,\"flags\":[\"O_WRONLY\",\"O_CREAT\",\"O_TRUNC\"],\"flags_raw\":577,"
        ),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("\"mode\":\"0600\""), "{}", lines[2]);
    assert_eq!(decode(lines[0]).expect("decodes"), rename);
    assert_eq!(decode(lines[1]).expect("decodes"), truncate);
    assert_eq!(decode(lines[2]).expect("decodes"), chmod);
    // A detection raised on a change decodes its access as the change.
    let mut found = rename.clone();
    found.action = Action::Detection;
    found.detection = Some(Detection::new(DetectionId::Tamper, "renamed".into()));
    let line = encode_all(std::slice::from_ref(&found));
    assert_eq!(decode(line.trim_end()).expect("decodes"), found);
}

#[test]
fn io_uring_capture_on_sensor_records_has_its_shape_and_decodes_back() {
    for (capture, want) in [
        (IoUringCapture::On, r#""io_uring":{"capture":"on"}"#),
        (
            IoUringCapture::Off {
                reason: "the kernel's io_uring request layout lacks io_kiocb.opcode".into(),
            },
            r#""io_uring":{"capture":"off","reason":"the kernel's io_uring request layout lacks io_kiocb.opcode"}"#,
        ),
    ] {
        let mut start = base(Action::SensorStart, None);
        let mut s = status();
        s.io_uring = Some(capture);
        start.sensor = Some(s);
        let line = encode_all(std::slice::from_ref(&start));
        assert!(line.contains(want), "{line}");
        assert_eq!(decode(line.trim_end()).expect("decodes"), start);
    }
    let bad = encode_all(&[{
        let mut start = base(Action::SensorStart, None);
        let mut s = status();
        s.io_uring = Some(IoUringCapture::On);
        start.sensor = Some(s);
        start
    }])
    .replace(r#""capture":"on""#, r#""capture":"maybe""#);
    assert!(matches!(
        decode(bad.trim_end()),
        Err(DecodeError::Value {
            field: "sensor.io_uring.capture",
            ..
        })
    ));
}
