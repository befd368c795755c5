//! Minimal programs `weightwarden doctor` loads to learn, by really trying,
//! which hook types this kernel accepts. They count nothing and decide
//! nothing; `run` never loads them.

use aya_ebpf::programs::{FEntryContext, LsmContext, ProbeContext};

pub fn fentry(_ctx: &FEntryContext) -> i32 {
    0
}

/// Allows every open (returns the previous verdict, 0).
pub fn lsm(_ctx: &LsmContext) -> i32 {
    0
}

pub fn kprobe(_ctx: &ProbeContext) -> u32 {
    0
}
