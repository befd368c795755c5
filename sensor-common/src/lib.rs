//! Types shared by weightwarden's kernel programs (`sensor-ebpf`) and its
//! agent (`sensor`): ring buffer records, map keys and values, map names.
//!
//! Everything here is `#[repr(C)]`, `Copy`, has explicit padding and no
//! `bool`, so both sides agree on the layout byte for byte. The agent decodes
//! records with [`decode`]-style unaligned reads, never by trusting the
//! kernel's alignment.
#![no_std]

/// Length of `task_struct::comm`.
pub const TASK_COMM_LEN: usize = 16;
/// Bytes of the exec'd file name kept in an [`ExecEvent`].
pub const EXEC_FILENAME_LEN: usize = 256;
/// Bytes of the NUL-separated argument vector kept in an [`ExecEvent`].
pub const EXEC_ARGS_LEN: usize = 512;
/// The read coverage bitmap splits a file into this many equal segments.
pub const COVERAGE_SEGMENTS: u64 = 256;
/// Words of the coverage bitmap.
pub const COVERAGE_WORDS: usize = (COVERAGE_SEGMENTS / 64) as usize;

/// A one-hash Bloom filter of watched inode numbers, in front of `WATCHED`:
/// the kernel reads a file's inode number and, when its bit is clear, knows
/// the file is not watched without reading its superblock's device or
/// looking up the hash map. The agent sets a bit before inserting the
/// inode into `WATCHED` and never clears one (a stale bit costs a lookup,
/// never a miss). 2^22 bits (512 KiB): with 100k watched files about 2% of
/// unwatched inodes pass.
pub mod ino_filter {
    /// log2 of the number of bits.
    pub const BITS_LOG2: u32 = 22;
    /// Number of 64-bit words in the map.
    pub const WORDS: u32 = 1 << (BITS_LOG2 - 6);

    /// The bit for `ino` (Fibonacci hashing: inode numbers are often
    /// sequential, the multiply spreads them over the top bits).
    #[inline(always)]
    pub fn bit(ino: u64) -> u32 {
        (ino.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS_LOG2)) as u32
    }
}

/// The kernel's prefilter on path operations (`sensor-ebpf/src/path_filter.rs`).
/// A successful rename, unlink, link, mknod, symlink, chmod, chown or
/// truncate by path is sent to the agent only when the last component of
/// one of its paths could name something the agent follows: its hash, or
/// its extension's, is in `PATH_NAMES` (the agent puts there every
/// weight-file extension and the names of the directories under the roots,
/// of the roots and their ancestors, and of the files watched outside the
/// roots), or it starts like an Ollama blob (`sha256`). Empty, truncated
/// and unreadable paths always pass. A hash collision only sends one more
/// record.
///
/// The hash is FNV-1a (64-bit) over the name's bytes **last to first**:
/// the kernel scans a path backwards from its end, which stops at the last
/// `/` instead of reading the whole path.
pub mod path_filter {
    pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

    /// One FNV-1a step.
    #[inline(always)]
    pub const fn step(hash: u64, byte: u8) -> u64 {
        (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
    }

    /// The hash of a file name (no `/`), as the kernel computes it.
    pub fn name_hash(name: &[u8]) -> u64 {
        name.iter().rev().fold(FNV_OFFSET, |h, &b| step(h, b))
    }

    /// The hash of an extension (without its dot; any ASCII case): its
    /// bytes lowercased, last to first, then the dot. Equal to the
    /// [`name_hash`] of `.` + the lowercased extension, so a file named
    /// like that only passes the filter too.
    pub fn extension_hash(ext: &[u8]) -> u64 {
        let hash = ext
            .iter()
            .rev()
            .fold(FNV_OFFSET, |h, &b| step(h, b.to_ascii_lowercase()));
        step(hash, b'.')
    }

    /// How an Ollama blob's name begins: such names always pass (they are
    /// content addresses, unknown in advance).
    pub const BLOB_PREFIX: [u8; 6] = *b"sha256";

    /// Index 0 of `PATH_FILTER`: non-zero turns the prefilter on. Off
    /// (every path operation sent) until the agent has filled
    /// `PATH_NAMES`, and whenever that map overflowed.
    pub const ON: u32 = 1;
}

/// Names of the maps, shared so a rename breaks the build, not the agent.
pub mod map_name {
    /// `HashMap<FileKey, WatchEntry>`: the watched inodes, kept by the agent.
    pub const WATCHED: &str = "WATCHED";
    /// `Array<u64>` of [`crate::ino_filter::WORDS`]: a one-hash Bloom filter
    /// of the watched inode numbers (see [`crate::ino_filter`]).
    pub const WATCHED_INO_FILTER: &str = "WATCHED_INO_FILTER";
    /// `HashMap<FileKey, u32>`: the directories under the watch roots,
    /// kept by the agent: a file an open creates in one of them (or a few
    /// levels below one) is a change record.
    pub const WATCHED_DIRS: &str = "WATCHED_DIRS";
    /// `HashMap<u64, u8>`: the hashes of the names a path operation must
    /// name to be sent ([`crate::path_filter`]), kept by the agent.
    pub const PATH_NAMES: &str = "PATH_NAMES";
    /// `Array<u32>` of one: [`crate::path_filter::ON`] turns the path
    /// operation prefilter on.
    pub const PATH_FILTER: &str = "PATH_FILTER";
    /// `HashMap<ReadAggKey, ReadAgg>`: in-kernel read aggregation.
    pub const READ_AGG: &str = "READ_AGG";
    /// `HashMap<u32, u32>`: processes that have read a watched file, so the
    /// agent drains aggregates only for exits that can have some.
    pub const READERS: &str = "READERS";
    /// `LruHashMap<ExitKey, u32>`: exits already reported (several threads of
    /// one exiting group can see it dead).
    pub const EXITED: &str = "EXITED";
    /// `LruHashMap<CopyKey, u8>`: (process, source, destination) copies
    /// already reported.
    pub const COPIES_SEEN: &str = "COPIES_SEEN";
    /// `LruHashMap<SendKey, SendAgg>`: what processes that read watched
    /// bytes wrote or sent, per destination.
    pub const SENDS: &str = "SENDS";
    /// `LruHashMap<u32, u8>`: tainted processes whose writes and sends the
    /// agent judged uninteresting (trusted: serving, allowed), written by
    /// the agent, removed by the kernel at the process's exit.
    pub const SENDS_OFF: &str = "SENDS_OFF";
    /// `HashMap<ReadAggKey, OpenAgg>`: repeated opens and closes of a file
    /// by a process, counted in the kernel (open/close storms).
    pub const OPEN_AGG: &str = "OPEN_AGG";
    /// `HashMap<MemKey, MemAgg>`: reads of another process's memory through
    /// `/proc/PID/mem` and `PTRACE_PEEK*`, counted in the kernel.
    pub const MEM_AGG: &str = "MEM_AGG";
    /// `Array<u64>`: processes that opened another's `/proc/PID/mem`, a
    /// byte per tgid (eight per value): only their reads of files that are
    /// not watched look for a memory file.
    pub const MEM_READERS: &str = "MEM_READERS";
    /// `Array<u64>`: processes that may hold a descriptor of a watched file,
    /// a byte per tgid (eight per value), kept by the kernel (opens, forks,
    /// descriptor passing). Reads, maps and closes by processes in neither
    /// holder array skip the descriptor walk.
    pub const HOLDERS_KERNEL: &str = "HOLDERS_KERNEL";
    /// `Array<u64>`: holders the agent found in `/proc`, a bit per tgid
    /// (64 per value); only the agent writes it.
    pub const HOLDERS_AGENT: &str = "HOLDERS_AGENT";
    /// `Array<u32>` of one: non-zero makes every process a holder (fail
    /// open, never blind); the agent clears it once it has seeded.
    pub const HOLDERS_BYPASS: &str = "HOLDERS_BYPASS";
    /// `LruHashMap<u32, Pending>`: per-thread state between syscall enter and exit.
    pub const PENDING: &str = "PENDING";
    /// `PerCpuArray<u64>`: loss and error counters, indexed by [`super::counter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// `RingBuf`: every record to the agent.
    pub const EVENTS: &str = "EVENTS";
    /// `Array<u64>` of [`crate::agent_slot::LEN`]: the agent's tgid and the
    /// load's fingerprint.
    pub const AGENT: &str = "AGENT";
    /// `Array<u32>` of one: the policy generation the kernel enforces (0:
    /// none). Its low bit picks the slot of every table below.
    pub const POLICY_ACTIVE: &str = "POLICY_ACTIVE";
    /// `Array<PolicySlot>` of two, one per slot.
    pub const POLICY_SLOTS: &str = "POLICY_SLOTS";
    /// `HashMap<FileKey, PolicyFile>`: the weight sets of each policy file.
    pub const POLICY_FILES: &str = "POLICY_FILES";
    /// `HashMap<u32, ProcessVerdict>` by tgid: verdicts for slot 0.
    pub const VERDICTS_0: &str = "VERDICTS_0";
    /// `HashMap<u32, ProcessVerdict>` by tgid: verdicts for slot 1.
    pub const VERDICTS_1: &str = "VERDICTS_1";
    /// `HashMap<FileKey, ExeVerdict>`: the verdict a process gets at exec,
    /// by its executable ([`crate::enforce::ANY_OTHER_EXE`]: any other).
    pub const EXE_VERDICTS: &str = "EXE_VERDICTS";
    /// `LruHashMap<u64, FileKey>`: the identity the kernel read for the
    /// agent's own `O_PATH` opens, by [`crate::identity_probe_key`]; how
    /// the agent confirms the keys it computes from `stat()`.
    pub const IDENTITY_PROBE: &str = "IDENTITY_PROBE";
}

/// Indexes of the per-CPU `COUNTERS` map.
pub mod counter {
    /// `bpf_ringbuf_reserve` failed: the ring buffer was full, a record is lost.
    pub const RINGBUF_FULL: u32 = 0;
    /// The read aggregation (or readers) map was full: a read went
    /// uncounted.
    pub const READ_AGG_FULL: u32 = 1;
    /// The per-thread pending map refused an insert: a read or mmap went unseen.
    pub const PENDING_FULL: u32 = 2;
    /// A kernel structure could not be read (`bpf_probe_read_kernel` failed).
    pub const KERNEL_READ_FAILED: u32 = 3;
    /// A process beyond the holder arrays (pid_max raised after start) became
    /// a holder; such processes always pay the full check.
    pub const HOLDERS_FULL: u32 = 4;
    /// A forked child's copy of its parent's policy verdict was refused (the
    /// verdict map is full): the child counts as not yet judged.
    pub const VERDICTS_FULL: u32 = 5;
    /// `bpf_send_signal(SIGKILL)` failed for an access the policy stops: the
    /// access went on.
    pub const KILL_FAILED: u32 = 6;
    /// An io_uring request on a weight file (or a write or send of a
    /// process that took weights) was submitted with
    /// `IOSQE_CQE_SKIP_SUCCESS`: its success posts no result, so it was
    /// counted as submitted, with the bytes it asked for (capped at the
    /// file's end).
    pub const URING_SKIP_SUCCESS: u32 = 7;
    /// Number of counters; the map's size.
    pub const COUNT: u32 = 8;
}

/// Kinds of ring buffer records; the first field of every [`EventHeader`].
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const OPEN: u32 = 4;
    pub const READ: u32 = 5;
    pub const MMAP: u32 = 6;
    pub const CLOSE: u32 = 7;
    /// A watched GPU device node was opened: the process serves a model.
    pub const GPU_OPEN: u32 = 8;
    /// The kernel stopped an access the policy forbids ([`EnforceEvent`]).
    pub const ENFORCE: u32 = 9;
    /// A process first copied a watched file to a destination in the kernel
    /// ([`CopyEvent`]); the bytes go into its read summaries.
    pub const COPY: u32 = 10;
    /// A process read another's memory, or attached to it ([`MemoryEvent`]).
    pub const MEMORY: u32 = 11;
    /// A watched file may have been changed: an open for writing or with
    /// `O_TRUNC`, a truncate, rename, unlink, attribute change or link
    /// ([`ChangeEvent`]).
    pub const CHANGE: u32 = 12;
    /// A process that has read watched bytes wrote, sent or connected to a
    /// destination ([`SendEvent`]).
    pub const SEND: u32 = 13;
    /// Repeated opens and closes of one file by one process since the last
    /// summary ([`OpenSummaryEvent`]).
    pub const OPEN_SUMMARY: u32 = 14;
}

/// How [`SendEvent`]'s bytes left the process.
pub mod send_syscall {
    pub const WRITE: u32 = 1;
    pub const PWRITE64: u32 = 2;
    pub const WRITEV: u32 = 3;
    pub const PWRITEV: u32 = 4;
    pub const SENDTO: u32 = 5;
    pub const SENDMSG: u32 = 6;
    pub const SENDMMSG: u32 = 7;
    /// `connect`: no byte yet, but a peer.
    pub const CONNECT: u32 = 8;
    /// Completed io_uring requests (`IORING_OP_*`), which pass no syscall
    /// hook: the request names its file, not a descriptor (the record's
    /// `fd` is -1).
    pub const IO_URING_WRITE: u32 = 9;
    pub const IO_URING_WRITEV: u32 = 10;
    pub const IO_URING_WRITE_FIXED: u32 = 11;
    /// Linux 6.15+.
    pub const IO_URING_WRITEV_FIXED: u32 = 12;
    pub const IO_URING_SEND: u32 = 13;
    pub const IO_URING_SENDMSG: u32 = 14;
    pub const IO_URING_SEND_ZC: u32 = 15;
    pub const IO_URING_SENDMSG_ZC: u32 = 16;
    /// As [`CONNECT`].
    pub const IO_URING_CONNECT: u32 = 17;

    /// Whether `syscall` is a connect (no byte; a result of 0 or
    /// `-EINPROGRESS` is a success).
    pub const fn is_connect(syscall: u32) -> bool {
        syscall == CONNECT || syscall == IO_URING_CONNECT
    }
}

/// The tgid marks in `HOLDERS_KERNEL` (a byte each; any non-zero one is a
/// holder).
pub mod holder_mark {
    /// May hold a watched descriptor.
    pub const HOLDER: u8 = 1;
    /// Has read (or mapped, or copied) watched bytes, or descends from a
    /// process that had: its writes and sends are followed.
    pub const TAINTED: u8 = 2;
    /// Has opened a GPU device: a serving process, whose writes and sends
    /// are not followed (its reads of weights are its job).
    pub const SERVING: u8 = 3;
}

/// The syscalls a [`ChangeEvent`] reports (x86-64 only).
pub mod change_syscall {
    pub const OPEN: u32 = 1;
    pub const OPENAT: u32 = 2;
    pub const OPENAT2: u32 = 3;
    pub const CREAT: u32 = 4;
    pub const OPEN_BY_HANDLE_AT: u32 = 5;
    pub const TRUNCATE: u32 = 6;
    pub const FTRUNCATE: u32 = 7;
    pub const RENAME: u32 = 8;
    pub const RENAMEAT: u32 = 9;
    pub const RENAMEAT2: u32 = 10;
    pub const UNLINK: u32 = 11;
    pub const UNLINKAT: u32 = 12;
    pub const CHMOD: u32 = 13;
    pub const FCHMOD: u32 = 14;
    pub const FCHMODAT: u32 = 15;
    pub const FCHMODAT2: u32 = 16;
    pub const CHOWN: u32 = 17;
    pub const FCHOWN: u32 = 18;
    pub const LCHOWN: u32 = 19;
    pub const FCHOWNAT: u32 = 20;
    pub const LINK: u32 = 21;
    pub const LINKAT: u32 = 22;
    pub const MKNOD: u32 = 23;
    pub const MKNODAT: u32 = 24;
    pub const SYMLINK: u32 = 25;
    pub const SYMLINKAT: u32 = 26;
    /// io_uring `IORING_OP_OPENAT` and `IORING_OP_OPENAT2` requests
    /// (creates, and opens of watched files for writing or with
    /// `O_TRUNC`).
    pub const IO_URING_OPENAT: u32 = 27;
    pub const IO_URING_OPENAT2: u32 = 28;
    /// io_uring `IORING_OP_RENAMEAT` (`renameat2`'s arguments),
    /// `IORING_OP_UNLINKAT`, `IORING_OP_LINKAT`, `IORING_OP_SYMLINKAT`
    /// and `IORING_OP_FTRUNCATE` (Linux 6.9+) requests.
    pub const IO_URING_RENAMEAT: u32 = 29;
    pub const IO_URING_UNLINKAT: u32 = 30;
    pub const IO_URING_LINKAT: u32 = 31;
    pub const IO_URING_SYMLINKAT: u32 = 32;
    pub const IO_URING_FTRUNCATE: u32 = 33;
}

/// Bits of [`ChangeEvent::flags`].
pub mod change_flag {
    /// `file` is the watched file itself, decided by the kernel from a
    /// descriptor (opens, `ftruncate`, `fchmod`, `fchown`). Without it the
    /// record is a path operation the agent resolves: `file` and `base2`
    /// are then the directories `path` and `path2` are relative to.
    pub const FILE: u32 = 1;
    /// `before` holds the file's state at syscall entry.
    pub const BEFORE: u32 = 2;
    /// `after` holds the file's state at syscall exit.
    pub const AFTER: u32 = 4;
    /// `path` did not fit (or could not be read): it is cut short.
    pub const PATH_TRUNCATED: u32 = 8;
    /// The same for `path2`.
    pub const PATH2_TRUNCATED: u32 = 16;
    /// With [`FILE`]: the open created `file` (`FMODE_CREATED`) in a
    /// watched directory or below one (`WATCHED_DIRS`); `base2` is the
    /// directory it was created in and `path` its name.
    pub const CREATED: u32 = 32;
}

/// Bytes of each path argument a [`ChangeEvent`] carries.
pub const CHANGE_PATH_LEN: usize = 256;

/// A file's size and modification time, as the inode held them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub _pad: u32,
}

/// A change to a watched file (descriptor operations, decided in the
/// kernel), or a path operation the agent resolves against the watch set
/// (reported for every successful call: the kernel cannot resolve a path
/// in a syscall tracepoint).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ChangeEvent {
    pub header: EventHeader,
    /// One of [`change_syscall`].
    pub syscall: u32,
    /// [`change_flag`] bits.
    pub flags: u32,
    /// With [`change_flag::FILE`]: the watched file. Otherwise the
    /// identity of the directory a relative `path` starts from (the
    /// working directory, or `dirfd`'s); zero for an absolute path.
    pub file: FileKey,
    /// The directory a relative `path2` starts from.
    pub base2: FileKey,
    pub before: FileState,
    pub after: FileState,
    /// Opens: the flags as passed (`O_TRUNC` included); truncates: the
    /// length; chmod: the mode; chown: the uid; rename, unlink, link and
    /// the `*at` forms: their flags argument.
    pub arg: u64,
    /// chown: the gid; `fchownat`, `fchmodat2`: the flags.
    pub arg2: u64,
    /// The descriptor (fd operations) or `dirfd` of `path`
    /// (`AT_FDCWD` = -100 for the working directory).
    pub fd: i32,
    /// `dirfd` of `path2`.
    pub fd2: i32,
    /// The syscall's return value.
    pub ret: i64,
    /// Bytes of `path` and `path2` used (no NUL).
    pub path_len: u32,
    pub path2_len: u32,
    pub path: [u8; CHANGE_PATH_LEN],
    pub path2: [u8; CHANGE_PATH_LEN],
}

/// How [`MemoryEvent`] reached the other process's memory.
pub mod memory_method {
    /// `process_vm_readv`: `bytes` copied.
    pub const PROCESS_VM_READV: u32 = 1;
    /// `ptrace(PTRACE_ATTACH)`.
    pub const PTRACE_ATTACH: u32 = 2;
    /// `ptrace(PTRACE_SEIZE)`.
    pub const PTRACE_SEIZE: u32 = 3;
    /// An open of `/proc/PID/mem` (or `/proc/PID/task/TID/mem`).
    pub const PROC_MEM_OPEN: u32 = 4;
    /// Reads of such a descriptor: `bytes` returned, `calls` (aggregated).
    pub const PROC_MEM_READ: u32 = 5;
    /// `PTRACE_PEEKTEXT`/`PTRACE_PEEKDATA`: `calls` words (aggregated).
    pub const PTRACE_PEEK: u32 = 6;
}

/// A read of another process's memory (or an attach that allows one).
/// Rare syscalls: reported for every caller; the agent keeps those whose
/// target holds weight files.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryEvent {
    pub header: EventHeader,
    pub target: u32,
    /// One of [`memory_method`].
    pub method: u32,
    /// `process_vm_readv`, `/proc/PID/mem` reads: bytes copied;
    /// `PTRACE_PEEK*`: bytes of the words peeked; attach and open: 0.
    pub bytes: u64,
    /// Calls in this record: 1, or for the aggregated methods
    /// (`PROC_MEM_READ`, `PTRACE_PEEK`) the calls since the last summary.
    pub calls: u64,
    /// The aggregated methods: the first call's boot time (the header's
    /// `boot_ns` is the last one's); otherwise the header's.
    pub first_ns: u64,
    /// One of [`flush_reason`] for the aggregated methods; 0 otherwise.
    pub reason: u32,
    pub _pad: u32,
}

/// Key of `MEM_AGG`: one reader, one target, one method.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemKey {
    pub tgid: u32,
    /// The pid (or thread id) whose memory is read.
    pub target: u32,
    /// One of [`memory_method`].
    pub method: u32,
    pub _pad: u32,
}

/// Value of `MEM_AGG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MemAgg {
    pub bytes: u64,
    pub calls: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub last_tid: u32,
    pub _pad: u32,
}

/// The in-kernel copy syscalls, as [`CopyEvent::syscall`] names them.
pub mod copy_syscall {
    pub const SENDFILE: u32 = 1;
    pub const SPLICE: u32 = 2;
    pub const COPY_FILE_RANGE: u32 = 3;
    /// `ioctl(FICLONE)`: a reflink of the whole file, no byte moved.
    pub const FICLONE: u32 = 4;
    /// `ioctl(FICLONERANGE)`: a reflink of a range.
    pub const FICLONERANGE: u32 = 5;
    /// An io_uring `IORING_OP_SPLICE` request (no syscall: the ring's).
    pub const URING_SPLICE: u32 = 6;
}

/// What made the kernel emit a read summary.
pub mod flush_reason {
    /// The descriptor was closed.
    pub const CLOSE: u32 = 1;
    /// The flush interval passed while the descriptor kept reading.
    pub const INTERVAL: u32 = 2;
    /// The process exited (emitted by the agent from the aggregation map).
    pub const EXIT: u32 = 3;
    /// No read for a flush interval (emitted by the agent's sweep).
    pub const IDLE: u32 = 4;
    /// The agent is stopping.
    pub const SHUTDOWN: u32 = 5;
    /// The process wrote or sent before its reads were reported: they are
    /// reported first (emitted by the agent).
    pub const SEND: u32 = 6;
}

/// Bits of [`WatchEntry::flags`].
pub mod watch_flag {
    /// A model weight file.
    pub const WEIGHT: u32 = 1;
    /// A GPU (or accelerator) device node.
    pub const GPU_DEVICE: u32 = 2;
    /// With `WEIGHT`: a pipe a copy of weights went into. Its reads are
    /// counted as they return (a pipe has no size to cap a read at).
    pub const PIPE: u32 = 4;
}

/// Identity of a file: the kernel's `super_block::s_dev` (`major << 20 |
/// minor`, not the `stat()` encoding) and the inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// Value of the `WATCHED` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchEntry {
    pub flags: u32,
    pub _pad: u32,
}

/// Common header of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader {
    /// One of [`kind`].
    pub kind: u32,
    /// Size of the whole record, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub boot_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// `real_parent->tgid`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// [`header_flag`] bits.
    pub flags: u32,
    /// cgroup v2 id (the inode number of the cgroup's directory).
    pub cgroup_id: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// `open`, `mmap`, `close` and `gpu_open` records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileEvent {
    pub header: EventHeader,
    pub file: FileKey,
    /// `inode::i_size` when the event happened.
    pub file_size: u64,
    pub fd: i32,
    /// `open`: `file::f_flags`; `mmap`: `prot`.
    pub flags: u32,
    /// `mmap`: the `flags` argument (`MAP_PRIVATE`, `MAP_SHARED`, ...).
    pub mmap_flags: u32,
    pub _pad: u32,
    /// `mmap`: length mapped.
    pub len: u64,
    /// `mmap`: file offset mapped.
    pub offset: u64,
    /// `mmap`: the address or `-errno`; otherwise 0.
    pub ret: i64,
}

/// Key of the read aggregation map: one entry per (process, file).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadAggKey {
    pub tgid: u32,
    pub _pad: u32,
    pub file: FileKey,
}

/// Value of the read aggregation map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadAgg {
    /// Successful read calls since the last flush.
    pub calls: u64,
    /// Bytes returned since the last flush.
    pub bytes: u64,
    /// Boot time of the first read since the last flush.
    pub first_ns: u64,
    /// Boot time of the latest read.
    pub last_ns: u64,
    /// `i_size` seen by the latest read.
    pub file_size: u64,
    /// The thread that read last.
    pub last_tid: u32,
    /// Of `calls`, in-kernel copies (`sendfile`, `splice`,
    /// `copy_file_range`): bytes that went to another file, a pipe or a
    /// socket without passing through the process.
    pub copy_calls: u32,
    /// Segments read since the last flush (the agent keeps the union).
    pub covered: Coverage,
}

/// Value of `OPEN_AGG`, keyed like `READ_AGG` by (process, file): what a
/// process's repeated opens and closes of one file add up to. The entry
/// is made by the process's first open of the file (an `open` record); a
/// later open in an access mode (`O_ACCMODE`) already written is counted
/// here instead of written, and from the first counted open on, closes
/// are counted too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAgg {
    /// Opens counted (not written as `open` records) since the last summary.
    pub opens: u64,
    /// Closes counted (not written as `close` records) since the last
    /// summary.
    pub closes: u64,
    /// Boot time of the first counted open or close since the last
    /// summary; 0 when none.
    pub first_ns: u64,
    /// Boot time of the latest counted open or close.
    pub last_ns: u64,
    /// Boot time of the latest open or close, counted or written (the
    /// agent's idle sweep).
    pub seen_ns: u64,
    /// `i_size` at the latest open.
    pub file_size: u64,
    /// The thread of the latest counted open or close.
    pub last_tid: u32,
    /// Access modes whose first open was written: bit `1 << (f_flags & 3)`.
    pub modes: u32,
    /// `f_flags` of the latest counted open.
    pub flags: u32,
    /// Non-zero once an open was counted: closes are counted from then on.
    pub summarising: u32,
}

/// An open summary: a process's counted opens and closes of one file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenSummaryEvent {
    pub header: EventHeader,
    pub file: FileKey,
    pub agg: OpenAgg,
    /// One of [`flush_reason`].
    pub reason: u32,
    /// The descriptor of the open or close that sent it (interval).
    pub fd: i32,
}

/// Segments of a file read: bit `i` covers bytes `[i * s, (i + 1) * s)`
/// with `s = ceil(size / 256)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub words: [u64; COVERAGE_WORDS],
}

impl Coverage {
    /// Marks the segments of a `size`-byte file that the `len` bytes at
    /// `offset` touch (the kernel, on every read of a watched file). A range
    /// past the file's end (the file grew since `size` was read) counts in
    /// the last segment. `offset + len` must not overflow: syscall offsets
    /// are at most `i64::MAX` and one read moves at most 2 GiB.
    #[inline(always)]
    pub fn mark(&mut self, offset: u64, len: u64, size: u64) {
        if size == 0 || len == 0 {
            return;
        }
        // Never 0 (size is not), but spelled so that the optimiser sees it:
        // a division-by-zero panic path left in gets the program refused.
        let segment = size.div_ceil(COVERAGE_SEGMENTS).max(1);
        let last_segment = COVERAGE_SEGMENTS - 1;
        let first = (offset / segment).min(last_segment);
        let last = ((offset + len - 1) / segment).min(last_segment);
        for (w, word) in self.words.iter_mut().enumerate() {
            let lo = w as u64 * 64;
            let hi = lo + 63;
            if last < lo || first > hi {
                continue;
            }
            let a = first.max(lo) - lo;
            let b = last.min(hi) - lo;
            *word |= (u64::MAX >> (63 - (b - a))) << a;
        }
    }
}

/// Key of the `EXITED` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExitKey {
    pub tgid: u32,
    pub _pad: u32,
    pub start_ns: u64,
}

/// A read summary: what one process read of one file since the last flush.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadEvent {
    pub header: EventHeader,
    pub file: FileKey,
    pub agg: ReadAgg,
    /// One of [`flush_reason`].
    pub reason: u32,
    pub fd: i32,
}

/// `execve` completed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// `task_struct::start_boottime` (CLOCK_BOOTTIME ns) of the process.
    pub start_ns: u64,
    /// The identity of the new executable (`mm->exe_file`); zero when it
    /// could not be read.
    pub exe: FileKey,
    /// Bytes of `filename` used (without the NUL).
    pub filename_len: u32,
    /// Bytes of `args` used: NUL-separated, possibly cut short.
    pub args_len: u32,
    /// The whole argument vector was longer than [`EXEC_ARGS_LEN`].
    pub args_truncated: u32,
    pub _pad: u32,
    pub filename: [u8; EXEC_FILENAME_LEN],
    pub args: [u8; EXEC_ARGS_LEN],
}

/// A new process (not a thread) was forked; the header is the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_tgid: u32,
    pub _pad: u32,
    pub child_start_ns: u64,
}

/// The last thread of a process exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task_struct::exit_code` (wait status encoding).
    pub exit_code: u32,
    /// [`exit_flag`] bits.
    pub flags: u32,
}

/// Bits of [`ExitEvent::flags`].
pub mod exit_flag {
    /// The process read a watched file: its read aggregates and coverage
    /// are in the kernel maps for the agent to drain.
    pub const HAD_READS: u32 = 1;
}

/// What a thread was doing between a syscall's enter and exit.
pub mod pending_kind {
    pub const READ: u32 = 1;
    pub const MMAP: u32 = 2;
    /// An in-kernel copy with a watched source, counted as a read.
    pub const COPY: u32 = 3;
    /// `ftruncate`, `fchmod` or `fchown` of a watched file: its state at
    /// entry (`file_size`; `offset`, `len`: mtime seconds and
    /// nanoseconds), reported at exit with the state then.
    pub const CHANGE: u32 = 5;
    /// A reflink with a watched source: its range counted as read.
    pub const REFLINK: u32 = 4;
    /// A read of another process's `/proc/PID/mem` (`offset`: the
    /// target's pid): its bytes counted at exit.
    pub const PROC_MEM: u32 = 6;
}

/// Value of the `PENDING` map, keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending {
    pub kind: u32,
    pub fd: i32,
    pub file: FileKey,
    pub file_size: u64,
    /// `read`: file offset of the read; `mmap`: file offset mapped.
    pub offset: u64,
    /// `mmap`: length.
    pub len: u64,
    /// `mmap`: prot.
    pub prot: u32,
    /// `mmap`: flags.
    pub flags: u32,
    /// A copy: the destination descriptor.
    pub out_fd: i32,
    /// A copy: one of [`copy_syscall`]; a change: one of
    /// [`change_syscall`].
    pub syscall: u32,
}

/// Key of `SENDS`: what one process wrote or sent to one destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SendKey {
    pub tgid: u32,
    pub _pad: u32,
    pub destination: FileKey,
}

/// Value of `SENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendAgg {
    pub bytes: u64,
    pub calls: u64,
    /// The total last reported (a record is sent on the first call and
    /// each time the total doubles).
    pub reported: u64,
}

/// A process that has read watched bytes wrote or sent to a destination:
/// on its first call there, then each time its total there doubled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SendEvent {
    pub header: EventHeader,
    /// The destination's identity (a pipe's or a socket's inode too).
    pub destination: FileKey,
    /// The destination's `i_mode`.
    pub destination_mode: u32,
    pub fd: i32,
    /// One of [`send_syscall`] (the latest call).
    pub syscall: u32,
    pub _pad: u32,
    /// Bytes written there so far, and calls.
    pub bytes: u64,
    pub calls: u64,
    /// As [`CopyEvent::peer_addr`].
    pub peer_addr: [u8; 16],
    pub peer_family: u16,
    pub peer_port: u16,
    pub _pad2: u32,
}

/// Key of `COPIES_SEEN`: a (process, source, destination) already reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CopyKey {
    pub tgid: u32,
    pub _pad: u32,
    pub source: FileKey,
    pub destination: FileKey,
}

/// A process's first in-kernel copy of a watched file to a destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyEvent {
    pub header: EventHeader,
    pub source: FileKey,
    pub source_size: u64,
    /// The destination's identity (a pipe's or a socket's inode too).
    pub destination: FileKey,
    /// The destination's `i_mode` (its type: regular file, pipe, socket).
    pub destination_mode: u32,
    pub fd_in: i32,
    pub fd_out: i32,
    /// One of [`copy_syscall`].
    pub syscall: u32,
    /// Bytes this first call moved.
    pub bytes: u64,
    /// A socket destination's peer address (IPv4 in the first 4 bytes),
    /// network order.
    pub peer_addr: [u8; 16],
    /// A socket destination's family (`AF_UNIX` 1, `AF_INET` 2, `AF_INET6`
    /// 10); 0 for other destinations or when it could not be read.
    pub peer_family: u16,
    /// The peer's port, host order.
    pub peer_port: u16,
    pub _pad: u32,
}

/// In-kernel enforcement: tables the agent compiles from the policy, so
/// that the program seeing an access decides it on the spot. Every table
/// has two slots; the agent fills the slot the active generation does not
/// use, then switches `POLICY_ACTIVE`, so a reload changes every table at
/// once.
pub mod enforce {
    /// Operations decided in the kernel: indexes of
    /// [`super::ProcessVerdict::stop`].
    pub mod op {
        /// `read`, `pread`, `readv` and the copy syscalls' source side.
        pub const READ: u32 = 0;
        pub const MMAP: u32 = 1;
        /// Decided by BPF LSM (`file_open`); fanotify decides it elsewhere.
        pub const OPEN: u32 = 2;
        /// An open for writing or truncation, a write through a descriptor
        /// (BPF LSM).
        pub const WRITE: u32 = 3;
        /// The source side of `sendfile`, `splice`, `copy_file_range` and
        /// reflinks, beside `READ`: stopped by the syscall hooks (with a
        /// kill) even where BPF LSM decides, since a security hook sees a
        /// copy only as a read.
        pub const COPY: u32 = 4;
        pub const COUNT: usize = 5;
    }
    /// Bits of [`super::EnforceEvent::flags`].
    pub mod flag {
        /// The process had no verdict of the active policy (not judged yet,
        /// or its credentials changed since): the slot's `unjudged_stop`
        /// decided.
        pub const UNJUDGED: u32 = 1;
        /// `bpf_send_signal` failed: the access went on.
        pub const KILL_FAILED: u32 = 2;
        /// A BPF LSM hook refused the access (`EPERM`).
        pub const DENIED: u32 = 4;
        /// ... and killed the process (a `kill` verdict).
        pub const KILLED: u32 = 8;
    }
    /// Bits of [`super::PolicySlot::flags`].
    pub mod slot_flag {
        /// BPF LSM programs are attached and decide reads, writes and maps
        /// in the security hooks (deny): the syscall hooks do not kill.
        pub const LSM_DECIDES: u32 = 1;
    }
    /// How many weight sets the kernel tables can tell apart (bits of a
    /// `u64`).
    pub const MAX_SETS: usize = 64;
    /// The `EXE_VERDICTS` key for every executable no rule names.
    pub const ANY_OTHER_EXE: super::FileKey = super::FileKey { dev: 0, ino: 0 };
}

/// Value of `POLICY_FILES`: the weight sets (a bit per set) a file is in,
/// per slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyFile {
    pub sets: [u64; 2],
}

/// Value of `VERDICTS_0`/`VERDICTS_1`: what the policy of generation `generation`
/// says of one process, judged by the agent with the credentials below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessVerdict {
    pub generation: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    /// Per operation ([`enforce::op`]): the weight sets (bits) in which
    /// the policy denies or kills it.
    pub stop: [u64; enforce::op::COUNT],
    /// Of those, the sets in which the verdict is `kill` (a BPF LSM hook
    /// then kills as well as refusing).
    pub kill: [u64; enforce::op::COUNT],
}

/// Value of `EXE_VERDICTS`: per slot, the verdict row of any process
/// running this executable (its `uid`/`gid` are filled in at exec), where
/// the executable alone decides it; a row of generation 0 where the policy
/// also looks at who runs it (the agent judges those).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeVerdict {
    pub slots: [ProcessVerdict; 2],
}

/// Value of `POLICY_SLOTS`: one policy generation's settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicySlot {
    pub generation: u32,
    /// [`enforce::slot_flag`] bits.
    pub flags: u32,
    /// Per operation: the weight sets in which a process without a verdict
    /// is stopped (those where any rule or the default stops: fail closed).
    pub unjudged_stop: [u64; enforce::op::COUNT],
}

/// The kernel stopped an access (kind [`kind::ENFORCE`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EnforceEvent {
    pub header: EventHeader,
    pub file: FileKey,
    pub file_size: u64,
    /// The weight sets whose verdict stopped it.
    pub sets: u64,
    pub fd: i32,
    /// One of [`enforce::op`].
    pub op: u32,
    /// The policy generation that decided.
    pub generation: u32,
    /// [`enforce::flag`] bits.
    pub flags: u32,
}

/// Names of the load-time globals (`aya_ebpf::Global<u64>`) that carry
/// kernel structure offsets, read from the running kernel's BTF.
pub mod offset_global {
    pub const TASK_FILES: &str = "OFF_TASK_FILES";
    pub const TASK_REAL_PARENT: &str = "OFF_TASK_REAL_PARENT";
    pub const TASK_TGID: &str = "OFF_TASK_TGID";
    pub const TASK_PID: &str = "OFF_TASK_PID";
    pub const TASK_MM: &str = "OFF_TASK_MM";
    pub const TASK_START_TIME: &str = "OFF_TASK_START_TIME";
    pub const TASK_EXIT_CODE: &str = "OFF_TASK_EXIT_CODE";
    pub const TASK_SIGNAL: &str = "OFF_TASK_SIGNAL";
    /// `task_struct.thread_info.status` (x86: holds `TS_COMPAT`).
    pub const TASK_TI_STATUS: &str = "OFF_TASK_TI_STATUS";
    pub const REGS_BX: &str = "OFF_REGS_BX";
    pub const REGS_CX: &str = "OFF_REGS_CX";
    pub const REGS_DX: &str = "OFF_REGS_DX";
    pub const REGS_SI: &str = "OFF_REGS_SI";
    pub const REGS_DI: &str = "OFF_REGS_DI";
    pub const REGS_BP: &str = "OFF_REGS_BP";
    pub const REGS_R8: &str = "OFF_REGS_R8";
    pub const REGS_R9: &str = "OFF_REGS_R9";
    pub const REGS_R10: &str = "OFF_REGS_R10";
    pub const REGS_ORIG_AX: &str = "OFF_REGS_ORIG_AX";
    pub const SIGNAL_LIVE: &str = "OFF_SIGNAL_LIVE";
    pub const FILES_FDT: &str = "OFF_FILES_FDT";
    pub const FDT_MAX_FDS: &str = "OFF_FDT_MAX_FDS";
    pub const FDT_FD: &str = "OFF_FDT_FD";
    pub const FILE_INODE: &str = "OFF_FILE_INODE";
    pub const FILE_POS: &str = "OFF_FILE_POS";
    pub const FILE_FLAGS: &str = "OFF_FILE_FLAGS";
    /// `file.f_mode`: `FMODE_CREATED` tells an open that created its file.
    pub const FILE_MODE: &str = "OFF_FILE_MODE";
    pub const INODE_INO: &str = "OFF_INODE_INO";
    pub const INODE_SB: &str = "OFF_INODE_SB";
    pub const INODE_SIZE: &str = "OFF_INODE_SIZE";
    pub const INODE_MODE: &str = "OFF_INODE_MODE";
    pub const FILE_PRIVATE_DATA: &str = "OFF_FILE_PRIVATE_DATA";
    pub const SOCKET_SK: &str = "OFF_SOCKET_SK";
    pub const SKC_FAMILY: &str = "OFF_SKC_FAMILY";
    pub const SKC_DADDR: &str = "OFF_SKC_DADDR";
    pub const SKC_DPORT: &str = "OFF_SKC_DPORT";
    pub const SKC_V6_DADDR: &str = "OFF_SKC_V6_DADDR";
    /// Start of the 64-byte read that fetches `i_sb`, `i_ino` and `i_size`
    /// together: the lowest of their offsets.
    pub const INODE_WINDOW: &str = "OFF_INODE_WINDOW";
    pub const SB_DEV: &str = "OFF_SB_DEV";
    pub const MM_ARG_START: &str = "OFF_MM_ARG_START";
    pub const MM_ARG_END: &str = "OFF_MM_ARG_END";
    pub const MM_EXE_FILE: &str = "OFF_MM_EXE_FILE";
    pub const INODE_MTIME_SEC: &str = "OFF_INODE_MTIME_SEC";
    pub const INODE_MTIME_NSEC: &str = "OFF_INODE_MTIME_NSEC";
    pub const TASK_FS: &str = "OFF_TASK_FS";
    /// `fs_struct.pwd.dentry`: the working directory's dentry.
    pub const FS_PWD_DENTRY: &str = "OFF_FS_PWD_DENTRY";
    pub const DENTRY_INODE: &str = "OFF_DENTRY_INODE";
    /// `dentry.d_parent`.
    pub const DENTRY_PARENT: &str = "OFF_DENTRY_PARENT";
    /// `dentry.d_name.name`: the name's bytes.
    pub const DENTRY_NAME: &str = "OFF_DENTRY_NAME";
    /// `file.f_path.dentry`.
    pub const FILE_PATH_DENTRY: &str = "OFF_FILE_PATH_DENTRY";
    /// `super_block.s_magic`: tells procfs (`/proc/PID/mem`).
    pub const SB_MAGIC: &str = "OFF_SB_MAGIC";
    /// `io_kiocb.file`: the request's file (the first word of the
    /// per-opcode command data).
    pub const IO_KIOCB_FILE: &str = "OFF_IO_KIOCB_FILE";
    pub const IO_KIOCB_OPCODE: &str = "OFF_IO_KIOCB_OPCODE";
    /// `io_kiocb.cqe.res`: the request's result once it completes.
    pub const IO_KIOCB_CQE_RES: &str = "OFF_IO_KIOCB_CQE_RES";
    /// `io_rw.kiocb.ki_pos` from the start of the `io_kiocb` (the command
    /// data overlays it at offset 0).
    pub const IO_RW_KI_POS: &str = "OFF_IO_RW_KI_POS";
    /// `io_open.file_slot`: non-zero for an open into a fixed-file slot.
    pub const IO_OPEN_FILE_SLOT: &str = "OFF_IO_OPEN_FILE_SLOT";
    /// `io_kiocb.ctx`: the request's ring.
    pub const IO_KIOCB_CTX: &str = "OFF_IO_KIOCB_CTX";
    /// The pointer to a ring's fixed-file array in `io_ring_ctx`
    /// (`file_table.files` up to 6.12, `file_table.data.nodes` since 6.13).
    pub const IO_CTX_FIXED_FILES: &str = "OFF_IO_CTX_FIXED_FILES";
    /// `io_rsrc_node.file_ptr`, or `u64::MAX` where the array's entries
    /// are the `file_ptr` words themselves (up to 6.12).
    pub const IO_FIXED_NODE_FILE: &str = "OFF_IO_FIXED_NODE_FILE";
    /// `io_splice.off_in` (-1: the file's position), `splice_fd_in` (a
    /// descriptor, or a fixed-file slot with `SPLICE_F_FD_IN_FIXED`) and
    /// `flags`, from the start of the `io_kiocb`.
    pub const IO_SPLICE_OFF_IN: &str = "OFF_IO_SPLICE_OFF_IN";
    pub const IO_SPLICE_FD_IN: &str = "OFF_IO_SPLICE_FD_IN";
    pub const IO_SPLICE_FLAGS: &str = "OFF_IO_SPLICE_FLAGS";
    /// `io_kiocb.flags`: its low byte holds the `IOSQE_*` bits as the
    /// submitter set them (`REQ_F_FIXED_FILE`, `REQ_F_CQE_SKIP`).
    pub const IO_KIOCB_FLAGS: &str = "OFF_IO_KIOCB_FLAGS";
    /// `io_kiocb.cqe.fd`: the descriptor (or fixed-file slot) a request
    /// names, from submission until its result is set.
    pub const IO_KIOCB_CQE_FD: &str = "OFF_IO_KIOCB_CQE_FD";
    /// `io_open.how.flags` from the start of the `io_kiocb`: an io_uring
    /// open's flags as passed (`O_TRUNC` included).
    pub const IO_OPEN_HOW_FLAGS: &str = "OFF_IO_OPEN_HOW_FLAGS";
    /// `filename.name`: the kernel's copy of a path string.
    pub const FILENAME_NAME: &str = "OFF_FILENAME_NAME";
    /// `io_rename`'s fields from the start of the `io_kiocb`: the
    /// directories' descriptors, the `struct filename *` of each path, and
    /// the flags.
    pub const IO_RENAME_OLD_DFD: &str = "OFF_IO_RENAME_OLD_DFD";
    pub const IO_RENAME_NEW_DFD: &str = "OFF_IO_RENAME_NEW_DFD";
    pub const IO_RENAME_OLDPATH: &str = "OFF_IO_RENAME_OLDPATH";
    pub const IO_RENAME_NEWPATH: &str = "OFF_IO_RENAME_NEWPATH";
    pub const IO_RENAME_FLAGS: &str = "OFF_IO_RENAME_FLAGS";
    /// `io_unlink`'s fields, the same way.
    pub const IO_UNLINK_DFD: &str = "OFF_IO_UNLINK_DFD";
    pub const IO_UNLINK_FILENAME: &str = "OFF_IO_UNLINK_FILENAME";
    pub const IO_UNLINK_FLAGS: &str = "OFF_IO_UNLINK_FLAGS";
    /// `io_link`'s fields (`LINKAT` and `SYMLINKAT` requests), the same
    /// way.
    pub const IO_LINK_OLD_DFD: &str = "OFF_IO_LINK_OLD_DFD";
    pub const IO_LINK_NEW_DFD: &str = "OFF_IO_LINK_NEW_DFD";
    pub const IO_LINK_OLDPATH: &str = "OFF_IO_LINK_OLDPATH";
    pub const IO_LINK_NEWPATH: &str = "OFF_IO_LINK_NEWPATH";
    pub const IO_LINK_FLAGS: &str = "OFF_IO_LINK_FLAGS";
    /// `io_ftrunc.len` from the start of the `io_kiocb`, or `u64::MAX`
    /// on kernels without `IORING_OP_FTRUNCATE` (before 6.9).
    pub const IO_FTRUNC_LEN: &str = "OFF_IO_FTRUNC_LEN";
    /// `io_rw.addr` and `io_rw.len` from the start of the `io_kiocb`: a
    /// read's or write's buffer and length as submitted (a vectored one's
    /// `iovec` array and count).
    pub const IO_RW_ADDR: &str = "OFF_IO_RW_ADDR";
    pub const IO_RW_LEN: &str = "OFF_IO_RW_LEN";
    /// `io_splice.len`: the bytes a splice asked for.
    pub const IO_SPLICE_LEN: &str = "OFF_IO_SPLICE_LEN";
    /// `io_sr_msg.buf` (a send's buffer, a sendmsg's `user_msghdr`, one
    /// union) and `io_sr_msg.len` (a send's length).
    pub const IO_SR_MSG_BUF: &str = "OFF_IO_SR_MSG_BUF";
    pub const IO_SR_MSG_LEN: &str = "OFF_IO_SR_MSG_LEN";
    /// `pipe_inode_info.max_usage`: a pipe's capacity in pages.
    pub const PIPE_MAX_USAGE: &str = "OFF_PIPE_MAX_USAGE";
}

/// Name of the global that turns on capture of 32-bit (ia32) syscalls
/// (non-zero): `kernel.compat_syscalls`.
pub const COMPAT_ENABLED_GLOBAL: &str = "COMPAT_ENABLED";

/// Bits of [`EventHeader::flags`].
pub mod header_flag {
    /// The event came from a 32-bit (ia32, `int $0x80`) syscall.
    pub const COMPAT_SYSCALL: u32 = 1;
}

/// Name of the global that turns the `HOLDERS` prefilter on (non-zero).
pub const HOLDER_PREFILTER_GLOBAL: &str = "HOLDER_PREFILTER";

/// The `AGENT` map (`Array<u64>`): the running agent's tgid, whose
/// `O_PATH` opens are identity probes (`IDENTITY_PROBE`), never records;
/// and the fingerprint of the load (object, kernel offsets, settings frozen
/// into it), by which a new agent tells whether it may adopt pinned
/// programs. A map rather than a global: the adopting agent writes its own
/// tgid into programs an earlier agent loaded.
pub mod agent_slot {
    /// The agent's tgid (0: no agent; `doctor`'s loads).
    pub const TGID: u32 = 0;
    /// The object's digest alone: its records decode alike.
    pub const OBJECT: u32 = 1;
    /// The fingerprint's first word; it takes [`FINGERPRINT_WORDS`].
    pub const FINGERPRINT: u32 = 2;
    pub const FINGERPRINT_WORDS: u32 = 4;
    /// The policy generation the kernel tables enforce, and the first 8
    /// bytes of its file's SHA-256: an adopting agent with the same policy
    /// knows which policy the kernel's stops were made under.
    pub const POLICY_GENERATION: u32 = FINGERPRINT + FINGERPRINT_WORDS;
    pub const POLICY_DIGEST: u32 = POLICY_GENERATION + 1;
    pub const LEN: u32 = POLICY_DIGEST + 1;
}

/// The `IDENTITY_PROBE` key of descriptor `fd` opened by thread `tid`.
pub const fn identity_probe_key(tid: u32, fd: u32) -> u64 {
    ((tid as u64) << 32) | fd as u64
}

/// Name of the global holding the in-kernel read flush interval in ns.
pub const READ_FLUSH_INTERVAL_GLOBAL: &str = "READ_FLUSH_INTERVAL_NS";

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers
    // and integer arrays, with every padding byte an explicit field.
    unsafe impl aya::Pod for FileKey {}
    unsafe impl aya::Pod for WatchEntry {}
    unsafe impl aya::Pod for ReadAggKey {}
    unsafe impl aya::Pod for ReadAgg {}
    unsafe impl aya::Pod for OpenAgg {}
    unsafe impl aya::Pod for MemKey {}
    unsafe impl aya::Pod for MemAgg {}
    unsafe impl aya::Pod for Pending {}
    unsafe impl aya::Pod for Coverage {}
    unsafe impl aya::Pod for ExitKey {}
    unsafe impl aya::Pod for CopyKey {}
    unsafe impl aya::Pod for PolicyFile {}
    unsafe impl aya::Pod for ProcessVerdict {}
    unsafe impl aya::Pod for PolicySlot {}
    unsafe impl aya::Pod for ExeVerdict {}
}

#[cfg(test)]
mod tests;
