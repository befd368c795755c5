//! The tracepoint tier: every kernel program, where it attaches, and what it
//! is for. This table is the one place to look for a hook.

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A classic tracepoint: `category/name` under tracefs `events/`.
    TracePoint(&'static str, &'static str),
    /// A raw tracepoint by name (its arguments are the `TP_PROTO`).
    RawTracePoint(&'static str),
    /// A BTF-typed raw tracepoint (`tp_btf`): arguments are typed kernel
    /// pointers the program may read with plain loads.
    BtfTracePoint(&'static str),
}

/// One kernel program and its attach points.
#[derive(Debug)]
pub struct ProgramSpec {
    /// The function name in `sensor-ebpf/src/main.rs`.
    pub name: &'static str,
    pub attach: &'static [Attach],
    pub purpose: &'static str,
}

use Attach::{BtfTracePoint as Btf, RawTracePoint as Raw, TracePoint as Tp};

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
    // Every syscall passes these two; they act on the few the sensor follows
    // (sensor-ebpf/src/syscall.rs), under the x86-64 and ia32 ABIs.
    ProgramSpec {
        name: "ww_sys_exit",
        attach: &[Btf("sys_exit")],
        purpose: "opens of watched files and GPU device nodes (decided on the new descriptor's \
                  inode), results of vectored reads and maps, descriptors received without an open",
    },
    ProgramSpec {
        name: "ww_sys_enter",
        attach: &[Btf("sys_enter")],
        purpose: "read, pread64, readv, preadv(2), mmap and close of watched files, for processes \
                  the holder prefilter lets through",
    },
];
