//! The event model: one typed, encoding-neutral record of something the
//! sensor saw, built by the enrich stage and handed to every output.
//!
//! The model keeps what the kernel and `/proc` said, not how one format
//! spells it: times as instants (wall clock, plus the kernel's boot-based
//! clock for kernel events), flags and results as raw numbers, paths and
//! arguments as raw bytes (Linux does not promise UTF-8), and the sensor's
//! status as typed counters. Encoders (`output/encode/`) turn it into the
//! native `weightwarden/1` JSON, and later OCSF and ECS; the native decoder
//! reads records back into these same types, so tests and tools assert on
//! types rather than on untyped JSON.

mod detection;
pub mod names;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use detection::{Detection, DetectionId, RecordId};
pub use text::Text;

use crate::{
    decide::policy::{Mode, Operation, PolicyAction},
    enrich::process::Runtime,
};

/// What happened. The serde names are the schema's (`sensor_start`), which
/// every encoding shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A policy was loaded (at start-up or on reload).
    PolicyLoaded,
    /// A reloaded policy file was rejected; the policy in force stays.
    PolicyRejected,
    /// The policy's verdict was `alert`: the access went ahead.
    Alert,
    /// In audit mode, the policy would have denied the access.
    WouldDeny,
    /// In audit mode, the policy would have killed the process.
    WouldKill,
    /// Enforce mode: the access was refused (`EPERM`).
    Denied,
    /// Enforce mode: the process was killed before it got the data.
    Killed,
    /// A process first copied a watched file to a destination in the
    /// kernel (`sendfile`, `splice`, `copy_file_range`): where the bytes
    /// went. The bytes themselves are in its read summaries.
    Copy,
    /// A process read the memory of a process that holds weight files
    /// (`process_vm_readv`), or attached to it with ptrace (after which it
    /// can): `target` is that process.
    MemoryRead,
    /// A named theft pattern (`detection.id`) matched: built from the
    /// records in `detection.refs`.
    Detection,
    /// A process that had read watched bytes wrote, sent or connected to a
    /// destination: its first call there, then each time its total there
    /// doubled.
    Send,
    /// A watched file was opened for writing (no `O_TRUNC`).
    WriteOpen,
    /// A watched file was truncated: `truncate`, `ftruncate`, or an open
    /// with `O_TRUNC`.
    Truncate,
    /// A watched file was renamed (within the roots or away), or another
    /// file was renamed over it.
    Rename,
    /// A watched file's name was removed.
    Unlink,
    /// A watched file's mode or owner changed.
    SetAttributes,
    /// A new hard link to a watched file.
    Link,
    /// A new weight file (or an entry named like one) appeared in a watched
    /// directory: created there, made with `mknod` or `symlink`, or renamed
    /// or hard-linked in from a file that was not watched.
    Create,
    /// A process's repeated opens and closes of one watched file, counted
    /// in the kernel since its first `open` record (or the last summary).
    OpenSummary,
}

impl Action {
    /// Every action, in the order the schema documents them.
    pub const ALL: [Action; 28] = [
        Action::Open,
        Action::Read,
        Action::Mmap,
        Action::Close,
        Action::Exec,
        Action::Exit,
        Action::Heartbeat,
        Action::SensorStart,
        Action::SensorStop,
        Action::PolicyLoaded,
        Action::PolicyRejected,
        Action::Alert,
        Action::WouldDeny,
        Action::WouldKill,
        Action::Denied,
        Action::Killed,
        Action::Copy,
        Action::MemoryRead,
        Action::Detection,
        Action::Send,
        Action::WriteOpen,
        Action::Truncate,
        Action::Rename,
        Action::Unlink,
        Action::SetAttributes,
        Action::Link,
        Action::Create,
        Action::OpenSummary,
    ];

    /// The name records carry (the serde name): `sensor_start`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Read => "read",
            Action::Mmap => "mmap",
            Action::Close => "close",
            Action::Exec => "exec",
            Action::Exit => "exit",
            Action::Heartbeat => "heartbeat",
            Action::SensorStart => "sensor_start",
            Action::SensorStop => "sensor_stop",
            Action::PolicyLoaded => "policy_loaded",
            Action::PolicyRejected => "policy_rejected",
            Action::Alert => "alert",
            Action::WouldDeny => "would_deny",
            Action::WouldKill => "would_kill",
            Action::Denied => "denied",
            Action::Killed => "killed",
            Action::Copy => "copy",
            Action::MemoryRead => "memory_read",
            Action::Detection => "detection",
            Action::Send => "send",
            Action::WriteOpen => "write_open",
            Action::Truncate => "truncate",
            Action::Rename => "rename",
            Action::Unlink => "unlink",
            Action::SetAttributes => "set_attributes",
            Action::Link => "link",
            Action::Create => "create",
            Action::OpenSummary => "open_summary",
        }
    }

    /// The tampering actions (`AccessDetail::Change`).
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::WriteOpen
                | Action::Truncate
                | Action::Rename
                | Action::Unlink
                | Action::SetAttributes
                | Action::Link
                | Action::Create
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The name records carry (`high`).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The hook tier that captured an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Syscall and sched tracepoints (`kernel/programs.rs`).
    Tracepoint,
}

/// An instant, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub unix_ns: i128,
    /// The kernel's CLOCK_BOOTTIME ns, for events timed by the kernel;
    /// `None` for the agent's own records and for decoded ones.
    pub boot_ns: Option<u64>,
}

impl Timestamp {
    pub fn from_unix_ns(unix_ns: i128) -> Self {
        Self {
            unix_ns,
            boot_ns: None,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Set by the agent as it writes the record (`None` until then, and
    /// on records decoded from an older agent).
    pub id: Option<RecordId>,
    pub time: Timestamp,
    pub host: String,
    pub action: Action,
    pub severity: Severity,
    pub tier: Tier,
    /// The acting process; absent on the sensor's own records.
    pub process: Option<Process>,
    /// The file, on file actions.
    pub file: Option<File>,
    /// How the file was used, on file actions.
    pub access: Option<Access>,
    /// How the process ended, on `exit`.
    pub exit: Option<Exit>,
    /// The sensor's status, on heartbeats, start and stop.
    pub sensor: Option<SensorStatus>,
    /// The policy's verdict (`alert`, `would_*`) or the loaded policy
    /// (`policy_loaded`).
    pub policy: Option<PolicyInfo>,
    /// The process whose memory was read, on `memory_read`.
    pub target: Option<Target>,
    /// What matched, on `detection`.
    pub detection: Option<Detection>,
}

/// A process whose memory another read, and the weight files it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Text>,
    pub gpu: bool,
    /// Its weight files, mapped or open, when the read happened (read from
    /// its `/proc` entry as the agent handled the record).
    pub weights: Vec<Text>,
}

/// What a policy record says.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyInfo {
    Verdict(PolicyVerdict),
    Loaded(PolicyLoaded),
    Rejected(PolicyRejected),
}

/// A policy file that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRejected {
    pub path: Text,
    /// Each error, located (`FILE:LINE:COLUMN: error: ...`).
    pub errors: Vec<String>,
}

/// Why the policy judged an access as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    /// SHA-256 of the policy file that decided.
    pub sha256: String,
    pub mode: Mode,
    pub verdict: PolicyAction,
    pub operation: Operation,
    /// The deciding rule's number (1-based); `None`: the weight set's
    /// default decided.
    pub rule: Option<u32>,
    pub rule_name: Option<String>,
    pub weight_set: String,
    /// What acted on it: `none` in audit mode.
    pub mechanism: String,
    /// The kernel had not judged the process under this policy yet and
    /// stopped it fail-closed (as the strictest rule would).
    pub unjudged: bool,
}

/// A policy as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLoaded {
    pub sha256: String,
    pub path: Text,
    pub mode: Mode,
    pub weight_sets: u64,
    pub rules: u64,
    /// Files the weight sets cover.
    pub files: u64,
    /// Of those, files the watch set does not cover: no record, so no
    /// verdict, for them.
    pub files_unwatched: u64,
    pub warnings: u64,
    /// What carries out `deny` and `kill`: `none` (audit) or `fanotify`.
    pub mechanism: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: Option<Text>,
    pub args: Vec<Text>,
    pub args_truncated: bool,
    pub cgroup_id: u64,
    pub container: Option<Container>,
    pub start_time: Option<Timestamp>,
    /// The process has opened a GPU device node.
    pub gpu: bool,
    /// Parent first.
    pub ancestors: Vec<Ancestor>,
    /// For the policy, not written by the native encoding: the identity
    /// of the executable and of the parent's, and the cgroup v2 path.
    pub exe_id: Option<sensor_common::FileKey>,
    pub parent_exe_id: Option<sensor_common::FileKey>,
    pub cgroup_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub runtime: Runtime,
    pub pod_uid: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Text>,
    /// It has opened a GPU device (`serving_shell` looks for these).
    pub gpu: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// The watched path of the inode (the first found, for hard links).
    pub path: Option<Text>,
    /// The kernel's `s_dev` (`major << 20 | minor`).
    pub dev: u64,
    pub ino: u64,
    /// Size in bytes when the event happened.
    pub size: u64,
    /// A copy's destination the sensor watches because it holds a watched
    /// file's bytes: the file it was copied from.
    pub derived_from: Option<DerivedFrom>,
}

/// The watched file a derived file was copied from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFrom {
    pub path: Option<Text>,
    pub dev: u64,
    pub ino: u64,
}

/// The syscall ABI that made an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyscallAbi {
    #[default]
    Native,
    /// 32-bit x86 (`int $0x80`).
    Ia32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub abi: SyscallAbi,
    pub detail: AccessDetail,
}

/// What each file action carries.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessDetail {
    Open {
        fd: i32,
        /// The file's `f_flags`, raw.
        flags: u32,
    },
    Close {
        fd: i32,
    },
    Mmap {
        fd: i32,
        prot: u32,
        flags: u32,
        offset: u64,
        length: u64,
        /// The syscall's return value: an address, or `-errno`.
        result: i64,
    },
    Read(ReadSummary),
    Copy(CopyDetail),
    Send(SendDetail),
    Memory {
        method: MemoryMethod,
        /// `process_vm_readv`, `/proc/PID/mem` reads: bytes copied;
        /// `PTRACE_PEEK*`: the words' bytes; 0 for an attach or an open.
        bytes: u64,
        /// The aggregated methods (`proc_mem_read`, `ptrace_peek`): how
        /// many calls, when, and why the summary was sent.
        summary: Option<MemorySummary>,
    },
    /// Repeated opens and closes of one file by one process.
    OpenSummary(OpenSummary),
    /// A tampering action (write open, truncate, rename, unlink,
    /// attribute change, link).
    Change(Box<ChangeDetail>),
}

/// How a watched file was changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeDetail {
    pub syscall: ChangeSyscall,
    /// The descriptor, for descriptor operations (opens, `ftruncate`,
    /// `fchmod`, `fchown`).
    pub fd: Option<i32>,
    /// Opens: the flags as passed (`O_TRUNC`, `O_CREAT` included);
    /// `renameat2`, `linkat`, `unlinkat`, `fchmodat2`, `fchownat`: their
    /// flags argument, when not 0.
    pub flags: Option<u32>,
    /// chmod family: the new mode.
    pub mode: Option<u32>,
    /// chown family: the new owner and group (`u32::MAX`: unchanged).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// truncate, ftruncate: the length asked for.
    pub length: Option<u64>,
    /// The file's state before and after; `after` is absent for unlink
    /// and when the agent could not see it.
    pub before: Option<FileState>,
    pub after: Option<FileState>,
    /// rename, link: the path the call named as the source and the
    /// destination (resolved to absolute paths where the agent could).
    pub old_path: Option<Text>,
    pub new_path: Option<Text>,
    /// rename over a watched file: the file that was replaced.
    pub replaced: Option<Replaced>,
    /// create: what kind of entry appeared.
    pub file_type: Option<EntryType>,
    /// create of a device node (`mknod`): its device number, encoded like
    /// [`File::dev`] (`major << 20 | minor`).
    pub rdev: Option<u64>,
    /// The syscall's return value (`0`, a descriptor, or `-errno`).
    pub result: i64,
}

/// The kind of a directory entry, as `stat`'s `st_mode` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryType {
    /// From `st_mode`'s file type bits (`S_IFMT`); `None` for none of them.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Self::Regular,
            libc::S_IFDIR => Self::Directory,
            libc::S_IFLNK => Self::Symlink,
            libc::S_IFIFO => Self::Fifo,
            libc::S_IFSOCK => Self::Socket,
            libc::S_IFCHR => Self::CharDevice,
            libc::S_IFBLK => Self::BlockDevice,
            _ => return None,
        })
    }
}

/// A file's identity and state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub ino: u64,
    pub size: u64,
    /// Modification time; `None` when the source did not have it.
    pub mtime: Option<Timestamp>,
}

/// A watched file a rename replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    pub path: Option<Text>,
    pub dev: u64,
    pub state: FileState,
}

/// The syscalls behind a tampering action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSyscall {
    Open,
    #[default]
    Openat,
    Openat2,
    Creat,
    OpenByHandleAt,
    Truncate,
    Ftruncate,
    Rename,
    Renameat,
    Renameat2,
    Unlink,
    Unlinkat,
    Chmod,
    Fchmod,
    Fchmodat,
    Fchmodat2,
    Chown,
    Fchown,
    Lchown,
    Fchownat,
    Link,
    Linkat,
    Mknod,
    Mknodat,
    Symlink,
    Symlinkat,
    /// io_uring `IORING_OP_OPENAT` (a create, an open for writing or with
    /// `O_TRUNC`).
    IoUringOpenat,
    /// io_uring `IORING_OP_OPENAT2` (the same).
    IoUringOpenat2,
    /// io_uring `IORING_OP_RENAMEAT` (`renameat2`'s arguments).
    IoUringRenameat,
    /// io_uring `IORING_OP_UNLINKAT`.
    IoUringUnlinkat,
    /// io_uring `IORING_OP_LINKAT`.
    IoUringLinkat,
    /// io_uring `IORING_OP_SYMLINKAT`.
    IoUringSymlinkat,
    /// io_uring `IORING_OP_FTRUNCATE` (Linux 6.9+).
    IoUringFtruncate,
}

impl ChangeSyscall {
    /// From `sensor_common::change_syscall`.
    pub fn from_raw(raw: u32) -> Option<Self> {
        use sensor_common::change_syscall as c;
        Some(match raw {
            c::OPEN => Self::Open,
            c::OPENAT => Self::Openat,
            c::OPENAT2 => Self::Openat2,
            c::CREAT => Self::Creat,
            c::OPEN_BY_HANDLE_AT => Self::OpenByHandleAt,
            c::TRUNCATE => Self::Truncate,
            c::FTRUNCATE => Self::Ftruncate,
            c::RENAME => Self::Rename,
            c::RENAMEAT => Self::Renameat,
            c::RENAMEAT2 => Self::Renameat2,
            c::UNLINK => Self::Unlink,
            c::UNLINKAT => Self::Unlinkat,
            c::CHMOD => Self::Chmod,
            c::FCHMOD => Self::Fchmod,
            c::FCHMODAT => Self::Fchmodat,
            c::FCHMODAT2 => Self::Fchmodat2,
            c::CHOWN => Self::Chown,
            c::FCHOWN => Self::Fchown,
            c::LCHOWN => Self::Lchown,
            c::FCHOWNAT => Self::Fchownat,
            c::LINK => Self::Link,
            c::LINKAT => Self::Linkat,
            c::MKNOD => Self::Mknod,
            c::MKNODAT => Self::Mknodat,
            c::SYMLINK => Self::Symlink,
            c::SYMLINKAT => Self::Symlinkat,
            c::IO_URING_OPENAT => Self::IoUringOpenat,
            c::IO_URING_OPENAT2 => Self::IoUringOpenat2,
            c::IO_URING_RENAMEAT => Self::IoUringRenameat,
            c::IO_URING_UNLINKAT => Self::IoUringUnlinkat,
            c::IO_URING_LINKAT => Self::IoUringLinkat,
            c::IO_URING_SYMLINKAT => Self::IoUringSymlinkat,
            c::IO_URING_FTRUNCATE => Self::IoUringFtruncate,
            _ => return None,
        })
    }

    /// The syscall that takes the same arguments and does the same: an
    /// io_uring request's (`IoUringRenameat` is `Renameat2`), else itself.
    pub fn base(self) -> Self {
        match self {
            Self::IoUringOpenat => Self::Openat,
            Self::IoUringOpenat2 => Self::Openat2,
            Self::IoUringRenameat => Self::Renameat2,
            Self::IoUringUnlinkat => Self::Unlinkat,
            Self::IoUringLinkat => Self::Linkat,
            Self::IoUringSymlinkat => Self::Symlinkat,
            Self::IoUringFtruncate => Self::Ftruncate,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryMethod {
    ProcessVmReadv,
    PtraceAttach,
    PtraceSeize,
    /// An open of another process's `/proc/PID/mem`.
    ProcMemOpen,
    /// Reads of such a descriptor (summarised).
    ProcMemRead,
    /// `PTRACE_PEEKTEXT`/`PTRACE_PEEKDATA` words (summarised).
    PtracePeek,
}

/// The calls an aggregated memory read record sums up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySummary {
    pub calls: u64,
    pub reason: FlushReason,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// A process's first in-kernel copy of a watched file to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDetail {
    /// The watched file's descriptor (-1: an io_uring splice from a
    /// fixed-file slot).
    pub fd: i32,
    /// The destination's descriptor (-1: an io_uring splice, whose
    /// request does not keep it).
    pub fd_out: i32,
    pub syscall: CopySyscall,
    /// Bytes the first call moved (all the bytes are in the read
    /// summaries).
    pub bytes: u64,
    pub destination: Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopySyscall {
    Sendfile,
    Splice,
    CopyFileRange,
    /// `ioctl(FICLONE)`: a reflink of the whole file (no byte moved).
    Ficlone,
    /// `ioctl(FICLONERANGE)`: a reflink of a range.
    FicloneRange,
    /// An io_uring `IORING_OP_SPLICE` request.
    IoUringSplice,
}

/// What a process that had read weights wrote or sent to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendDetail {
    /// The descriptor of the latest call (-1: an io_uring request, which
    /// names its file, not a descriptor number).
    pub fd: i32,
    pub syscall: SendSyscall,
    /// Bytes written there so far by the process, and calls.
    pub bytes: u64,
    pub calls: u64,
    pub destination: Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendSyscall {
    Write,
    Pwrite64,
    Writev,
    Pwritev,
    Sendto,
    Sendmsg,
    Sendmmsg,
    Connect,
    /// Completed io_uring requests (`IORING_OP_WRITE`, ...).
    IoUringWrite,
    IoUringWritev,
    IoUringWriteFixed,
    IoUringWritevFixed,
    IoUringSend,
    IoUringSendmsg,
    IoUringSendZc,
    IoUringSendmsgZc,
    IoUringConnect,
}

/// Where a copy's bytes went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub kind: DestinationKind,
    /// The destination's identity, as the kernel names it (a pipe's or a
    /// socket's inode too).
    pub dev: u64,
    pub ino: u64,
    /// A file's path, when the agent could still see it.
    pub path: Option<Text>,
    /// A socket's peer (`127.0.0.1:8080`, `[::1]:443`), or `unix`.
    pub peer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    File,
    Pipe,
    Socket,
    Other,
}

/// A process's reads of one file, summed in the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSummary {
    /// Absent on summaries the agent drained (exit, idle, shutdown).
    pub fd: Option<i32>,
    pub bytes: u64,
    pub calls: u64,
    /// Of `calls`, in-kernel copies (`sendfile`, `splice`,
    /// `copy_file_range`): their bytes went to another file, a pipe or a
    /// socket without passing through the process.
    pub copies: u64,
    /// Share (0..=1) of the file's segments the process has read so far.
    pub coverage: f64,
    pub reason: FlushReason,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// A process's repeated opens and closes of one file, counted in the
/// kernel: the opens after its first `open` record in each access mode,
/// and the closes after the first such open.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSummary {
    /// The descriptor of the open or close that sent it (interval);
    /// absent on summaries the agent drained (exit, idle, shutdown).
    pub fd: Option<i32>,
    pub opens: u64,
    pub closes: u64,
    /// `f_flags` of the latest counted open.
    pub flags: u32,
    pub reason: FlushReason,
    pub first: Timestamp,
    pub last: Timestamp,
}

/// Why a read summary was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    Close,
    Interval,
    Exit,
    Idle,
    Shutdown,
    /// The process wrote or sent while reading: its reads so far were
    /// reported first, to judge the send.
    Send,
    /// A reason number this agent does not know (the object and the agent
    /// are out of step).
    Unknown,
}

impl FlushReason {
    /// From `sensor_common::flush_reason`.
    pub fn from_raw(reason: u32) -> Self {
        use sensor_common::flush_reason as raw;
        match reason {
            raw::CLOSE => Self::Close,
            raw::INTERVAL => Self::Interval,
            raw::EXIT => Self::Exit,
            raw::IDLE => Self::Idle,
            raw::SHUTDOWN => Self::Shutdown,
            raw::SEND => Self::Send,
            _ => Self::Unknown,
        }
    }
}

/// How a process ended: the `wait(2)`-style status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub wait_status: u32,
}

impl Exit {
    /// The exit status, when the process exited normally.
    pub fn code(self) -> Option<i32> {
        (self.signal().is_none()).then_some(((self.wait_status >> 8) & 0xff) as i32)
    }

    /// The signal that ended it.
    pub fn signal(self) -> Option<i32> {
        let signal = (self.wait_status & 0x7f) as i32;
        (signal != 0).then_some(signal)
    }

    /// The status word for an exit code or a signal.
    pub fn from_parts(code: Option<i32>, signal: Option<i32>) -> Self {
        let wait_status = match signal {
            Some(signal) => (signal & 0x7f) as u32,
            None => ((code.unwrap_or(0) & 0xff) as u32) << 8,
        };
        Self { wait_status }
    }
}

/// The agent's status and counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SensorStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub hooks_attached: u64,
    pub watched_files: u64,
    pub status_time: Option<Timestamp>,
    /// Counters by section (`kernel`, `agent`, `watch`, `processes`), each
    /// by name: a snapshot of the metrics registry.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per-output delivery counters, in configuration order.
    pub outputs: Vec<OutputCounters>,
    /// What enforces the policy (`fanotify`), when a policy in enforce
    /// mode is loaded; `none` for a policy in audit mode; absent without a
    /// policy.
    pub enforcement: Option<String>,
    /// File systems under the roots whose file identities the kernel did
    /// not confirm (`sensor.unconfirmed`): always written on `sensor_start`
    /// (empty when every one was confirmed), on heartbeats and
    /// `sensor_stop` when not empty.
    pub unconfirmed: Option<Vec<UnconfirmedIdentity>>,
    /// Whether io_uring requests are captured (`sensor.io_uring`): always
    /// written on `sensor_start`, on heartbeats and `sensor_stop` when off.
    pub io_uring: Option<IoUringCapture>,
    /// The audit store's chain head as last committed (`SEQ:HEX`,
    /// `sensor.store_head`), when the agent keeps a store: a copy outside
    /// the host that `verify --head` checks the store against.
    pub store_head: Option<String>,
}

/// Whether the io_uring programs run (`kernel/uring.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoUringCapture {
    On,
    /// Off: io_uring reads, opens, splices, tampering, and the writes and
    /// sends of processes that took weights go unrecorded, for `reason`
    /// (what the kernel lacks).
    Off {
        reason: String,
    },
}

/// A device under a watch root whose `(device, inode)` keys, as the agent
/// computes them, the kernel did not confirm: reads of its files may go
/// unrecorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnconfirmedIdentity {
    /// The watch root the file system is under.
    pub root: std::path::PathBuf,
    /// Its mount point and type, from the mount table.
    pub mount_point: std::path::PathBuf,
    pub fstype: String,
    /// `stat()`'s device, `major:minor`.
    pub dev: String,
    /// What the kernel said instead, or why it could not be asked.
    pub reason: String,
}

impl SensorStatus {
    /// A counter by section and name; 0 when absent.
    pub fn counter(&self, section: &str, name: &str) -> u64 {
        self.counters
            .get(section)
            .and_then(|s| s.get(name))
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputCounters {
    pub name: String,
    /// Records the destination took.
    pub records_written: u64,
    /// Records lost: a failed write, a refusal, an encoding that failed.
    pub write_failures: u64,
    /// Records lost because the output's queue or spool was full.
    pub dropped: u64,
    /// Records (and bytes) waiting in the output's memory queue.
    pub queued: u64,
    pub queued_bytes: u64,
    /// Records (and bytes) waiting in the output's disk spool.
    pub spooled: u64,
    pub spool_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_actions_are_in_declaration_order() {
        // The health counters index records by `action as usize`.
        for (i, action) in Action::ALL.iter().enumerate() {
            assert_eq!(*action as usize, i, "{action:?}");
            let serde = serde_json::to_value(action).expect("serialize");
            assert_eq!(serde, action.name(), "the name is the serde name");
        }
    }

    #[test]
    fn exit_status_words() {
        let exited = Exit {
            wait_status: 3 << 8,
        };
        assert_eq!((exited.code(), exited.signal()), (Some(3), None));
        let killed = Exit { wait_status: 9 };
        assert_eq!((killed.code(), killed.signal()), (None, Some(9)));
        let clean = Exit { wait_status: 0 };
        assert_eq!((clean.code(), clean.signal()), (Some(0), None));
        for status in [0, 3 << 8, 255 << 8, 9, 15] {
            let e = Exit {
                wait_status: status,
            };
            assert_eq!(Exit::from_parts(e.code(), e.signal()), e);
        }
    }

    #[test]
    fn flush_reasons_from_the_kernel() {
        use sensor_common::flush_reason as raw;
        assert_eq!(FlushReason::from_raw(raw::CLOSE), FlushReason::Close);
        assert_eq!(FlushReason::from_raw(raw::SHUTDOWN), FlushReason::Shutdown);
        assert_eq!(FlushReason::from_raw(9999), FlushReason::Unknown);
    }
}
