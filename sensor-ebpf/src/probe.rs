//! Capability probes: minimal programs `weightwarden doctor`
//! (`sensor/src/cli/doctor.rs`) loads to learn, by really trying, which hook
//! types this kernel accepts. They count nothing and decide nothing; `run`
//! never loads them. The fentry and LSM tiers' real programs live under
//! `tier/`, not here.

use aya_ebpf::{
    macros::{fentry, kprobe, lsm},
    programs::{FEntryContext, LsmContext, ProbeContext},
};

/// Loads where fentry/fexit programs do (a BTF-typed trampoline on
/// `vfs_read`).
#[fentry(function = "vfs_read")]
pub fn ww_probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

/// Loads where BPF LSM programs do. Allows every open (returns the previous
/// verdict, 0).
#[lsm(hook = "file_open")]
pub fn ww_probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

/// Loads where kprobes do.
#[kprobe]
pub fn ww_probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}
