//! The tracepoint tier: every kernel program, where it attaches, and what it
//! is for. This table is the one place to look for a hook.

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A classic tracepoint: `category/name` under tracefs `events/`.
    TracePoint(&'static str, &'static str),
    /// A raw tracepoint by name (its arguments are the `TP_PROTO`).
    RawTracePoint(&'static str),
}

/// One kernel program and its attach points.
#[derive(Debug)]
pub struct ProgramSpec {
    /// The function name in `sensor-ebpf/src/main.rs`.
    pub name: &'static str,
    pub attach: &'static [Attach],
    pub purpose: &'static str,
}

use Attach::{RawTracePoint as Raw, TracePoint as Tp};

/// Every program of the tracepoint tier. Exit hooks come before their enter
/// hooks so that no enter ever runs without its exit attached.
pub const TRACEPOINT_TIER: &[ProgramSpec] = &[
    ProgramSpec {
        name: "ww_sched_exec",
        attach: &[Tp("sched", "sched_process_exec")],
        purpose: "exec: file name, arguments, start time",
    },
    ProgramSpec {
        name: "ww_sched_fork",
        attach: &[Raw("sched_process_fork")],
        purpose: "fork of a new process (threads are skipped)",
    },
    ProgramSpec {
        name: "ww_sched_exit",
        attach: &[Tp("sched", "sched_process_exit")],
        purpose: "exit of a process's main thread",
    },
    ProgramSpec {
        name: "ww_exit_open",
        attach: &[
            Tp("syscalls", "sys_exit_open"),
            Tp("syscalls", "sys_exit_openat"),
            Tp("syscalls", "sys_exit_openat2"),
            Tp("syscalls", "sys_exit_creat"),
            Tp("syscalls", "sys_exit_open_by_handle_at"),
        ],
        purpose: "opens of watched files and GPU device nodes, decided on the new descriptor's inode",
    },
    ProgramSpec {
        name: "ww_exit_fd_receive",
        attach: &[
            Tp("syscalls", "sys_exit_recvmsg"),
            Tp("syscalls", "sys_exit_recvmmsg"),
            Tp("syscalls", "sys_exit_pidfd_getfd"),
            Tp("syscalls", "sys_exit_fanotify_init"),
        ],
        purpose: "descriptors that arrive without an open: the process joins the holder prefilter",
    },
    ProgramSpec {
        name: "ww_enter_close",
        attach: &[Tp("syscalls", "sys_enter_close")],
        purpose: "close of a watched file: flushes the read summary",
    },
    ProgramSpec {
        name: "ww_exit_mmap",
        attach: &[Tp("syscalls", "sys_exit_mmap")],
        purpose: "result of a watched file mapping",
    },
    ProgramSpec {
        name: "ww_enter_mmap",
        attach: &[Tp("syscalls", "sys_enter_mmap")],
        purpose: "mmap of a watched file: length, prot, flags",
    },
    ProgramSpec {
        name: "ww_exit_read",
        attach: &[
            Tp("syscalls", "sys_exit_readv"),
            Tp("syscalls", "sys_exit_preadv"),
            Tp("syscalls", "sys_exit_preadv2"),
        ],
        purpose: "bytes returned by a vectored read of a watched file, into the per-process aggregate",
    },
    ProgramSpec {
        name: "ww_enter_read",
        attach: &[Tp("syscalls", "sys_enter_read")],
        purpose: "read of a watched file, accounted at entry (count capped at the file's end)",
    },
    ProgramSpec {
        name: "ww_enter_pread",
        attach: &[Tp("syscalls", "sys_enter_pread64")],
        purpose: "pread64 of a watched file, accounted at entry (count capped at the file's end)",
    },
    ProgramSpec {
        name: "ww_enter_read_pos",
        attach: &[Tp("syscalls", "sys_enter_readv")],
        purpose: "readv of a watched file at the descriptor's position",
    },
    ProgramSpec {
        name: "ww_enter_preadv",
        attach: &[
            Tp("syscalls", "sys_enter_preadv"),
            Tp("syscalls", "sys_enter_preadv2"),
        ],
        purpose: "preadv/preadv2 of a watched file",
    },
];

/// 32-bit (ia32) syscalls fire no `syscalls/*` tracepoint, so these raw
/// tracepoints see every syscall and act only on compat ones. They cost
/// every syscall a program call (`kernel.compat_syscalls = false` turns
/// them off).
pub const COMPAT_PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        name: "ww_compat_exit",
        attach: &[Raw("sys_exit")],
        purpose: "ia32 opens, reads and maps: results",
    },
    ProgramSpec {
        name: "ww_compat_enter",
        attach: &[Raw("sys_enter")],
        purpose: "ia32 reads, maps and closes of watched files",
    },
];

/// The hook tier that captured an event, as written in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Tracepoint,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Tracepoint => "tracepoint",
        }
    }
}
