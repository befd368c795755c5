//! The program tables: every kernel program, where it attaches and what it
//! is for, by hook tier; the empty programs of the benchmark floor; and the
//! probe `doctor` loads for each kind of hook. `run`, `doctor` and
//! `bench-floor` all load from these tables (through `kernel/loader.rs`),
//! so a new tier is one more table and one line in [`TIERS`].

use crate::event::Tier;

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
    /// A BPF trampoline at a kernel function's entry (`fentry`).
    FEntry(&'static str),
    /// A BPF LSM hook (`lsm/<hook>`).
    Lsm(&'static str),
    /// A kprobe on a kernel function.
    KProbe(&'static str),
}

impl Attach {
    /// How logs and errors name the attach point.
    pub fn describe(&self) -> String {
        match self {
            Attach::TracePoint(c, n) => format!("tracepoint {c}/{n}"),
            Attach::RawTracePoint(n) => format!("raw tracepoint {n}"),
            Attach::BtfTracePoint(n) => format!("BTF tracepoint {n}"),
            Attach::FEntry(f) => format!("fentry {f}"),
            Attach::Lsm(h) => format!("lsm/{h}"),
            Attach::KProbe(f) => format!("kprobe {f}"),
        }
    }

    /// The empty program `bench-floor` attaches here (a BTF tracepoint
    /// program is verified against its one target, so each has its own).
    pub fn floor_program(&self) -> Option<&'static str> {
        match self {
            Attach::TracePoint(..) => Some("ww_empty_tp"),
            Attach::RawTracePoint(_) => Some("ww_empty_raw"),
            Attach::BtfTracePoint("sys_exit") => Some("ww_empty_sys_exit"),
            Attach::BtfTracePoint("sys_enter") => Some("ww_empty_sys_enter"),
            Attach::BtfTracePoint("io_uring_complete") => Some("ww_empty_io_uring_complete"),
            Attach::BtfTracePoint("io_uring_file_get") => Some("ww_empty_io_uring_file_get"),
            Attach::BtfTracePoint("io_uring_queue_async_work") => {
                Some("ww_empty_io_uring_queue_async_work")
            }
            Attach::BtfTracePoint("io_uring_submit_req") => Some("ww_empty_io_uring_submit_req"),
            _ => None,
        }
    }
}

/// One kernel program and its attach points.
#[derive(Debug)]
pub struct ProgramSpec {
    /// The function name in `sensor-ebpf` (`tier/<tier>/mod.rs`, or
    /// `floor.rs` and `probe.rs`).
    pub name: &'static str,
    pub attach: &'static [Attach],
    pub purpose: &'static str,
}

use Attach::{BtfTracePoint as Btf, FEntry, KProbe, Lsm, RawTracePoint as Raw, TracePoint as Tp};

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
    // (sensor-ebpf/src/tier/tracepoint/syscall.rs), under the x86-64 and ia32 ABIs.
    ProgramSpec {
        name: "ww_sys_exit",
        attach: &[Btf("sys_exit")],
        purpose: "opens of watched files and GPU device nodes (decided on the new descriptor's \
                  inode), results of vectored reads, copies and maps, descriptors received \
                  without an open",
    },
    ProgramSpec {
        name: "ww_sys_enter",
        attach: &[Btf("sys_enter")],
        purpose: "read, pread64, readv, preadv(2), the source of sendfile, splice and \
                  copy_file_range, mmap and close of watched files, Linux AIO reads \
                  (io_submit), for processes the holder prefilter lets through",
    },
];

/// The tracepoint tier's io_uring programs: io_uring requests pass no
/// syscall hook (sensor-ebpf/src/uring.rs, uring_change.rs). Optional
/// (kernel/uring.rs): where the kernel lacks their tracepoints or request
/// layout, the tier runs without them. Completion before the others, as
/// exits before enters.
pub const IO_URING_CAPTURE: &[ProgramSpec] = &[
    ProgramSpec {
        name: "ww_io_uring_complete",
        attach: &[Btf("io_uring_complete")],
        purpose: "io_uring reads (read, readv, read_fixed, readv_fixed) and splices of watched \
                  files with their bytes, io_uring opens of watched files (into a descriptor \
                  or a fixed-file slot; for writing or with O_TRUNC, a tampering record), the \
                  results of io_uring renames, unlinks, links, symlinks and ftruncates",
    },
    ProgramSpec {
        name: "ww_io_uring_submit_req",
        // `io_uring_submit_sqe` before 6.3 (kernel/loader.rs).
        attach: &[Btf("io_uring_submit_req")],
        purpose: "io_uring requests submitted with IOSQE_CQE_SKIP_SUCCESS, whose success posts \
                  no completion: reads and splices of watched files with the bytes they ask \
                  for, opens (their process's reads by descriptor are then followed), writes \
                  and sends of processes that took weights",
    },
    ProgramSpec {
        name: "ww_io_uring_queue_async_work",
        attach: &[Btf("io_uring_queue_async_work")],
        purpose: "the paths of io_uring renames, unlinks, links and symlinks (the kernel's copy, \
                  through the name prefilter) and the state of a watched file before an io_uring \
                  ftruncate, as the request is queued to io-wq, kept until it completes",
    },
    ProgramSpec {
        name: "ww_io_uring_file_get",
        attach: &[Btf("io_uring_file_get")],
        purpose: "the policy's kill fallback for io_uring reads and splices of policy files, \
                  while a policy is enforced",
    },
];

/// The BPF LSM programs that deny what an enforced policy forbids
/// (sensor-ebpf/src/tier/lsm), attached beside the capture tier while a
/// policy is configured, where the kernel runs `bpf` among its LSMs.
pub const ENFORCEMENT_LSM: &[ProgramSpec] = &[
    ProgramSpec {
        name: "ww_lsm_file_open",
        attach: &[Lsm("file_open")],
        purpose: "deny opens (for reading, writing, truncation) of policy files",
    },
    ProgramSpec {
        name: "ww_lsm_file_permission",
        attach: &[Lsm("file_permission")],
        purpose: "deny reads and writes of policy files through any descriptor",
    },
    ProgramSpec {
        name: "ww_lsm_mmap_file",
        attach: &[Lsm("mmap_file")],
        purpose: "deny maps of policy files",
    },
];

/// One hook tier: the programs `run` loads and attaches when it is chosen.
#[derive(Debug)]
pub struct TierSpec {
    pub tier: Tier,
    /// What it hooks, for `doctor`.
    pub summary: &'static str,
    /// What a host needs for it, for `doctor`'s fix line.
    pub needs: &'static str,
    pub programs: &'static [ProgramSpec],
    /// Programs the tier runs without where this kernel cannot load them
    /// (kernel/uring.rs says why); `run` reports them off.
    pub io_uring: &'static [ProgramSpec],
}

/// Every tier, best first. `run` uses the first one this kernel loads.
pub const TIERS: &[TierSpec] = &[TierSpec {
    tier: Tier::Tracepoint,
    summary: "syscall and sched tracepoints",
    needs: "Linux 5.11+ with CONFIG_DEBUG_INFO_BTF=y (BTF tracepoints on sys_enter/sys_exit); \
            its io_uring programs, optional, need 6.0+ with CONFIG_IO_URING=y",
    programs: TRACEPOINT_TIER,
    io_uring: IO_URING_CAPTURE,
}];

/// A kind of hook `doctor` tries for real, with a program of its own.
#[derive(Debug)]
pub struct HookProbe {
    /// The hook type, as `doctor` names it.
    pub hook: &'static str,
    pub program: &'static str,
    pub attach: Attach,
    /// `run` cannot work without it.
    pub required: bool,
    /// What a host needs for it.
    pub needs: &'static str,
}

/// One probe per kind of hook a tier uses or will use.
pub const HOOK_PROBES: &[HookProbe] = &[
    HookProbe {
        hook: "tracepoint",
        program: "ww_empty_tp",
        attach: Tp("sched", "sched_process_exit"),
        required: true,
        needs: "mount tracefs; check kernel.unprivileged_bpf/lockdown",
    },
    HookProbe {
        hook: "raw tracepoint",
        program: "ww_empty_raw",
        attach: Raw("sched_process_fork"),
        required: true,
        needs: "Linux 4.17+",
    },
    HookProbe {
        hook: "BTF tracepoint",
        program: "ww_empty_sys_enter",
        attach: Btf("sys_enter"),
        required: true,
        needs: "Linux 5.5+ with CONFIG_DEBUG_INFO_BTF=y",
    },
    HookProbe {
        hook: "fentry",
        program: "ww_probe_fentry",
        attach: FEntry("vfs_read"),
        required: false,
        needs: "Linux 5.5+ with BPF trampolines; lockdown or a restrictive LSM can refuse it",
    },
    HookProbe {
        hook: "BPF LSM",
        program: "ww_probe_lsm",
        attach: Lsm("file_open"),
        required: false,
        needs: "CONFIG_BPF_LSM=y and `bpf` in the lsm= boot list",
    },
    HookProbe {
        hook: "kprobe",
        program: "ww_probe_kprobe",
        attach: KProbe("vfs_read"),
        required: false,
        needs: "CONFIG_KPROBES=y",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tier_attach_point_has_a_floor_program() {
        for tier in TIERS {
            for spec in tier.programs.iter().chain(tier.io_uring) {
                for attach in spec.attach {
                    assert!(
                        attach.floor_program().is_some(),
                        "{} at {} has no empty program for the benchmark floor",
                        spec.name,
                        attach.describe()
                    );
                }
            }
        }
    }

    #[test]
    fn tier_program_names_are_unique() {
        let mut names: Vec<&str> = TIERS
            .iter()
            .flat_map(|t| t.programs.iter().chain(t.io_uring).map(|p| p.name))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a program is listed twice");
    }
}
