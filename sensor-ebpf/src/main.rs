//! weightwarden's kernel programs, tracepoint tier.
//!
//! Every entry point here is a thin wrapper: the work lives in one module
//! per hook family. The attach point of each program is listed once, in the
//! agent's `sensor/src/programs.rs`.
#![no_std]
#![no_main]
// `atomic_xadd`: core's atomic types lack read-modify-write on the BPF
// target, but the instruction (BPF_XADD) exists.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod atomic;
mod emit;
mod file;
mod floor;
mod holders;
mod kernel;
mod maps;
mod probe;
mod process;
mod read;
mod syscall;

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

// --- process lifecycle -----------------------------------------------------

#[tracepoint]
pub fn ww_sched_exec(ctx: TracePointContext) -> u32 {
    process::on_exec(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn ww_sched_fork(ctx: RawTracePointContext) -> i32 {
    process::on_fork(&ctx);
    0
}

#[tracepoint]
pub fn ww_sched_exit(ctx: TracePointContext) -> u32 {
    process::on_exit(&ctx);
    0
}

// --- syscalls: one program at entry and one at exit for all of them -------

/// Reads, closes and maps of descriptors a process holds.
#[btf_tracepoint(function = "sys_enter")]
pub fn ww_sys_enter(ctx: BtfTracePointContext) -> i32 {
    syscall::on_sys_enter(&ctx);
    0
}

/// Opens (decided when the descriptor exists), results of vectored reads
/// and maps, and descriptors that arrive without an open.
#[btf_tracepoint(function = "sys_exit")]
pub fn ww_sys_exit(ctx: BtfTracePointContext) -> i32 {
    syscall::on_sys_exit(&ctx);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
