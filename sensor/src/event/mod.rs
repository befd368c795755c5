//! The audit record, native JSON schema version 1 (`weightwarden/1`).
//!
//! One record type for every action; sinks encode it. Each field is
//! documented in `docs/events.md`; a change to a field's meaning or type is a
//! schema version bump.

use serde::Serialize;

/// Value of every record's `schema` field.
pub const SCHEMA: &str = "weightwarden/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Open,
    Read,
    Mmap,
    Close,
    Exec,
    Exit,
    Heartbeat,
    SensorStart,
    SensorStop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub schema: &'static str,
    pub time: String,
    pub host: String,
    pub action: Action,
    pub severity: Severity,
    pub tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProcessRecord {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub args: Vec<String>,
    pub args_truncated: bool,
    pub cgroup_id: u64,
    pub container_id: Option<String>,
    pub container_runtime: Option<&'static str>,
    pub pod_uid: Option<String>,
    pub start_time: Option<String>,
    pub gpu: bool,
    pub ancestors: Vec<AncestorRecord>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AncestorRecord {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileRecord {
    /// The watched path of the inode (the first one found, for hard links).
    pub path: Option<String>,
    /// Device as `major:minor`.
    pub dev: String,
    pub ino: u64,
    /// Size in bytes when the event happened.
    pub size: u64,
}

/// How the file was accessed; which fields are present depends on the action.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AccessRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// `ia32` when a 32-bit syscall (`int $0x80`) made the access; absent
    /// for the native ABI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall_abi: Option<&'static str>,
    /// `open`: decoded open flags (`O_RDONLY`, `O_CLOEXEC`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags_raw: Option<u32>,
    /// `mmap`: decoded protection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prot: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prot_raw: Option<u32>,
    /// `mmap`: decoded mapping flags (`MAP_PRIVATE`, `MAP_SHARED`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_flags: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_flags_raw: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// `mmap`: `ok` or the errno name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// `read`: bytes returned in this summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `read`: completed read calls in this summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// `read`: share (0..=1) of the file's 256 segments touched since the
    /// process's first read of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// `read`: why the summary was sent (`close`, `interval`, `exit`, `idle`, `shutdown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ExitRecord {
    /// Exit status when the process exited normally.
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitRecord {
    /// From a `wait(2)`-style status word.
    pub fn from_wait_status(status: u32) -> Self {
        let signal = (status & 0x7f) as i32;
        if signal == 0 {
            Self {
                code: Some(((status >> 8) & 0xff) as i32),
                signal: None,
            }
        } else {
            Self {
                code: None,
                signal: Some(signal),
            }
        }
    }
}

/// `major:minor` of a kernel `s_dev` (`major << 20 | minor`).
pub fn kernel_dev_text(dev: u64) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// Names of the bits set in `value`; unknown bits are named `0x...`.
fn bit_names(value: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if bit != 0 && value & bit == bit {
            names.push(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push("UNKNOWN_BITS");
    }
    names
}

/// Decoded `open(2)` flags: the access mode first, then the flag bits.
pub fn open_flags(flags: u32) -> Vec<&'static str> {
    let mode = match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    const TABLE: &[(u32, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o4000000, "O_SYNC_BIT"),
        (0o10000000, "O_PATH"),
        (0o20000000, "O_TMPFILE_BIT"),
    ];
    let mut names = vec![mode];
    names.extend(bit_names(flags & !0o3, TABLE));
    names
}

/// Decoded `mmap(2)` protection.
pub fn mmap_prot(prot: u32) -> Vec<&'static str> {
    if prot == 0 {
        return vec!["PROT_NONE"];
    }
    bit_names(
        prot,
        &[(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")],
    )
}

/// Decoded `mmap(2)` flags (x86-64 values).
pub fn mmap_flags(flags: u32) -> Vec<&'static str> {
    let mut names = vec![match flags & 0x3 {
        0x1 => "MAP_SHARED",
        0x2 => "MAP_PRIVATE",
        0x3 => "MAP_SHARED_VALIDATE",
        _ => "MAP_TYPE_0",
    }];
    const TABLE: &[(u32, &str)] = &[
        (0x10, "MAP_FIXED"),
        (0x20, "MAP_ANONYMOUS"),
        (0x100, "MAP_GROWSDOWN"),
        (0x800, "MAP_DENYWRITE"),
        (0x1000, "MAP_EXECUTABLE"),
        (0x2000, "MAP_LOCKED"),
        (0x4000, "MAP_NORESERVE"),
        (0x8000, "MAP_POPULATE"),
        (0x10000, "MAP_NONBLOCK"),
        (0x20000, "MAP_STACK"),
        (0x40000, "MAP_HUGETLB"),
        (0x80000, "MAP_SYNC"),
        (0x100000, "MAP_FIXED_NOREPLACE"),
    ];
    names.extend(bit_names(flags & !0x3, TABLE));
    names
}

/// `ok` or the errno name of a syscall return value.
pub fn syscall_result(ret: i64) -> String {
    if !(-4095..0).contains(&ret) {
        return String::from("ok");
    }
    let errno = nix::errno::Errno::from_raw((-ret) as i32);
    format!("{errno:?}")
}

/// Share of a `size`-byte file covered by the bitmap (see
/// `sensor_common::ReadAgg::covered`).
pub fn coverage(covered: &[u64], size: u64) -> f64 {
    if size == 0 {
        return 0.0;
    }
    let segments_total = sensor_common::COVERAGE_SEGMENTS;
    let segment = size.div_ceil(segments_total);
    let used_segments = size.div_ceil(segment).min(segments_total);
    let touched: u64 = covered.iter().map(|w| u64::from(w.count_ones())).sum();
    (touched.min(used_segments) as f64 / used_segments as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_decode() {
        assert_eq!(open_flags(0), vec!["O_RDONLY"]);
        assert_eq!(
            open_flags(0o2000000 | 0o100000),
            vec!["O_RDONLY", "O_LARGEFILE", "O_CLOEXEC"]
        );
        assert_eq!(
            open_flags(0o1 | 0o100 | 0o1000),
            vec!["O_WRONLY", "O_CREAT", "O_TRUNC"]
        );
    }

    #[test]
    fn mmap_decode() {
        assert_eq!(mmap_prot(1), vec!["PROT_READ"]);
        assert_eq!(mmap_prot(0), vec!["PROT_NONE"]);
        assert_eq!(mmap_flags(0x2), vec!["MAP_PRIVATE"]);
        assert_eq!(mmap_flags(0x1 | 0x8000), vec!["MAP_SHARED", "MAP_POPULATE"]);
        assert_eq!(
            mmap_flags(0x2 | 0x4000_0000),
            vec!["MAP_PRIVATE", "UNKNOWN_BITS"]
        );
    }

    #[test]
    fn wait_status_decodes() {
        assert_eq!(
            ExitRecord::from_wait_status(0),
            ExitRecord {
                code: Some(0),
                signal: None
            }
        );
        assert_eq!(
            ExitRecord::from_wait_status(3 << 8),
            ExitRecord {
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            ExitRecord::from_wait_status(9),
            ExitRecord {
                code: None,
                signal: Some(9)
            }
        );
    }

    #[test]
    fn coverage_counts_used_segments() {
        // A 64 MiB file fully read touches all 256 segments.
        assert_eq!(coverage(&[u64::MAX; 4], 64 << 20), 1.0);
        // Half the segments.
        assert_eq!(coverage(&[u64::MAX, u64::MAX, 0, 0], 64 << 20), 0.5);
        // A 10-byte file has 10 one-byte segments.
        assert_eq!(coverage(&[0b11111, 0, 0, 0], 10), 0.5);
        assert_eq!(coverage(&[0; 4], 0), 0.0);
    }

    #[test]
    fn dev_and_result_text() {
        assert_eq!(kernel_dev_text((8 << 20) | 1), "8:1");
        assert_eq!(syscall_result(0x7f00_0000_0000), "ok");
        assert_eq!(syscall_result(-13), "EACCES");
    }
}

#[cfg(test)]
mod golden_generator {
    use super::*;
    use serde_json::json;

    fn process() -> ProcessRecord {
        ProcessRecord {
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
            container_id: Some("0123456789ab".into()),
            container_runtime: Some("containerd"),
            pod_uid: Some("1f2e3d4c-0000-1111-2222-333344445555".into()),
            start_time: Some("2026-11-25T17:30:02.301554412Z".into()),
            gpu: true,
            ancestors: vec![
                AncestorRecord { pid: 48190, comm: "bash".into(), exe: Some("/usr/bin/bash".into()) },
                AncestorRecord { pid: 1, comm: "systemd".into(), exe: None },
            ],
        }
    }

    fn host_process() -> ProcessRecord {
        ProcessRecord {
            pid: 7,
            tid: 7,
            ppid: 1,
            comm: "cat".into(),
            exe: None,
            args: vec![],
            start_time: None,
            ..ProcessRecord::default()
        }
    }

    fn base(action: Action, process: Option<ProcessRecord>) -> Record {
        Record {
            schema: SCHEMA,
            time: "2026-11-25T17:30:02.418230114Z".into(),
            host: "gpu-7".into(),
            action,
            severity: Severity::Info,
            tier: "tracepoint",
            process,
            file: None,
            access: None,
            exit: None,
            sensor: None,
        }
    }

    fn file(path: Option<&str>) -> FileRecord {
        FileRecord {
            path: path.map(String::from),
            dev: kernel_dev_text((254 << 20) | 3),
            ino: 1_835_011,
            size: 67_108_864,
        }
    }

    #[test]
    #[ignore = "writes the golden file from the pre-refactor record types"]
    fn write_golden() {
        let mut out = Vec::new();
        let mut open = base(Action::Open, Some(process()));
        open.file = Some(file(Some("/models/llama/model.safetensors")));
        open.access = Some(AccessRecord {
            fd: Some(3),
            flags: Some(open_flags(0o2100000 | 0x4000_0000)),
            flags_raw: Some(0o2100000 | 0x4000_0000),
            ..AccessRecord::default()
        });
        out.push(open);
        let mut open32 = base(Action::Open, Some(host_process()));
        open32.file = Some(file(None));
        open32.access = Some(AccessRecord {
            fd: Some(4),
            syscall_abi: Some("ia32"),
            flags: Some(open_flags(2)),
            flags_raw: Some(2),
            ..AccessRecord::default()
        });
        out.push(open32);
        let mut read = base(Action::Read, Some(process()));
        read.file = Some(file(Some("/models/llama/model.safetensors")));
        read.access = Some(AccessRecord {
            fd: Some(3),
            bytes: Some(67_108_864),
            calls: Some(513),
            coverage: Some(coverage(&[u64::MAX; 4], 64 << 20)),
            reason: Some("close"),
            first_time: Some("2026-11-25T17:30:02.303101876Z".into()),
            last_time: Some("2026-11-25T17:30:02.417996309Z".into()),
            ..AccessRecord::default()
        });
        out.push(read);
        let mut partial = base(Action::Read, Some(host_process()));
        partial.file = Some(file(Some("/models/x.gguf")));
        partial.access = Some(AccessRecord {
            syscall_abi: Some("ia32"),
            bytes: Some(10),
            calls: Some(2),
            coverage: Some(coverage(&[0b111, 0, 0, 0], 10)),
            reason: Some("idle"),
            first_time: Some("2026-11-25T17:30:02.000000001Z".into()),
            last_time: Some("2026-11-25T17:30:02.000000002Z".into()),
            ..AccessRecord::default()
        });
        out.push(partial);
        let mut mmap = base(Action::Mmap, Some(process()));
        mmap.file = Some(file(Some("/models/llama/model.safetensors")));
        mmap.access = Some(AccessRecord {
            fd: Some(5),
            prot: Some(mmap_prot(1)),
            prot_raw: Some(1),
            map_flags: Some(mmap_flags(0x2 | 0x8000)),
            map_flags_raw: Some(0x2 | 0x8000),
            offset: Some(4096),
            length: Some(67_104_768),
            result: Some(syscall_result(0x7f00_0000_0000)),
            ..AccessRecord::default()
        });
        out.push(mmap);
        let mut mmap_err = base(Action::Mmap, Some(host_process()));
        mmap_err.file = Some(file(Some("/models/x.gguf")));
        mmap_err.access = Some(AccessRecord {
            fd: Some(6),
            prot: Some(mmap_prot(0)),
            prot_raw: Some(0),
            map_flags: Some(mmap_flags(0x1 | 0x4000_0000)),
            map_flags_raw: Some(0x1 | 0x4000_0000),
            offset: Some(0),
            length: Some(1),
            result: Some(syscall_result(-13)),
            ..AccessRecord::default()
        });
        out.push(mmap_err);
        let mut close = base(Action::Close, Some(process()));
        close.file = Some(file(Some("/models/llama/model.safetensors")));
        close.access = Some(AccessRecord {
            fd: Some(3),
            ..AccessRecord::default()
        });
        out.push(close);
        out.push(base(Action::Exec, Some(process())));
        let mut exit = base(Action::Exit, Some(host_process()));
        exit.exit = Some(ExitRecord::from_wait_status(3 << 8));
        out.push(exit);
        let mut killed = base(Action::Exit, Some(process()));
        killed.exit = Some(ExitRecord::from_wait_status(9));
        out.push(killed);
        for action in [Action::SensorStart, Action::Heartbeat, Action::SensorStop] {
            let mut r = base(action, None);
            r.sensor = Some(json!({
                "version": "0.1.0",
                "pid": 4321,
                "uptime_secs": 61,
                "hooks_attached": 5,
                "watched_files": 12,
                "watch": {"files": 12, "paths": 13, "gpu_devices": 2, "links": 1, "directories": 4,
                          "missing_roots": 1, "unreadable_dirs": 0, "watch_failures": 0,
                          "map_full_failures": 0, "map_update_failures": 0, "queue_overflows": 0,
                          "rescans": 1},
                "processes": {"entries": 300, "exited": 2, "gpu_processes": 1, "evictions": 0,
                              "proc_read_failures": 3},
                "kernel": {"ringbuf_full": 7, "read_aggregates_full": 0, "pending_full": 1,
                           "kernel_read_failures": 0, "holders_full": 0},
                "agent": {"kernel_records": 100, "decode_errors": 0, "records_emitted": 90,
                          "read_summaries_drained": 4, "aggregate_map_errors": 0},
                "sinks": [{"name": "stdout", "records_written": 89, "write_failures": 0},
                          {"name": "jsonl:/var/log/ww.jsonl", "records_written": 88, "write_failures": 1}],
                "status_time": "2026-11-25T17:31:03.000000001Z",
            }));
            out.push(r);
        }
        let mut text = String::new();
        for r in &out {
            text.push_str(&serde_json::to_string(r).expect("json"));
            text.push('\n');
        }
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/output/encode/native.golden.jsonl"),
            text,
        )
        .expect("write");
    }
}
