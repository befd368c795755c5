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
mod compat;

mod emit;
mod file;
mod holders;
mod kernel;
mod maps;
mod probe;
mod process;
mod read;

use aya_ebpf::{
    macros::{fentry, kprobe, lsm, raw_tracepoint, tracepoint},
    programs::{FEntryContext, LsmContext, ProbeContext, RawTracePointContext, TracePointContext},
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

// --- opens: decided at syscall exit, when the descriptor exists ------------

#[tracepoint]
pub fn ww_exit_open(ctx: TracePointContext) -> u32 {
    file::on_open_exit(&ctx);
    0
}

// --- descriptors that arrive without an open (holder prefilter) ----------

#[tracepoint]
pub fn ww_exit_fd_receive(ctx: TracePointContext) -> u32 {
    holders::on_fd_receiving_exit(&ctx);
    0
}

// --- close ----------------------------------------------------------------

#[tracepoint]
pub fn ww_enter_close(ctx: TracePointContext) -> u32 {
    file::on_close_enter(&ctx);
    0
}

// --- mmap -----------------------------------------------------------------

#[tracepoint]
pub fn ww_enter_mmap(ctx: TracePointContext) -> u32 {
    file::on_mmap_enter(&ctx);
    0
}

#[tracepoint]
pub fn ww_exit_mmap(ctx: TracePointContext) -> u32 {
    file::on_mmap_exit(&ctx);
    0
}

// --- the read family -------------------------------------------------------

/// `read(fd, buf, count)`, accounted at entry at the file position.
#[tracepoint]
pub fn ww_enter_read(ctx: TracePointContext) -> u32 {
    read::on_enter_estimated(&ctx, read::OffsetFrom::FilePosition);
    0
}

/// `readv(fd, iov, vlen)`: the file position is the offset; bytes at exit.
#[tracepoint]
pub fn ww_enter_read_pos(ctx: TracePointContext) -> u32 {
    read::on_enter(&ctx, read::OffsetFrom::FilePosition);
    0
}

/// `pread64(fd, buf, count, pos)`, accounted at entry at the fourth
/// argument.
#[tracepoint]
pub fn ww_enter_pread(ctx: TracePointContext) -> u32 {
    read::on_enter_estimated(&ctx, read::OffsetFrom::Argument(3));
    0
}

/// `preadv(fd, iov, vlen, pos_l, pos_h)` and `preadv2(..., flags)`: the
/// fourth argument is the offset, `-1` meaning the file position (preadv2).
#[tracepoint]
pub fn ww_enter_preadv(ctx: TracePointContext) -> u32 {
    read::on_enter(&ctx, read::OffsetFrom::ArgumentOrPosition(3));
    0
}

#[tracepoint]
pub fn ww_exit_read(ctx: TracePointContext) -> u32 {
    read::on_exit(&ctx);
    0
}

// --- 32-bit (ia32) syscalls, which fire no syscalls/* tracepoint ---------

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn ww_compat_enter(ctx: RawTracePointContext) -> i32 {
    compat::on_sys_enter(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn ww_compat_exit(ctx: RawTracePointContext) -> i32 {
    compat::on_sys_exit(&ctx);
    0
}

// --- benchmark floor: the same hooks, doing nothing -----------------------

/// Attached by `weightwarden bench-floor` to every tracepoint the sensor
/// uses, to measure what the kernel charges for the hooks alone.
#[tracepoint]
pub fn ww_empty_tp(_ctx: TracePointContext) -> u32 {
    0
}

/// The raw-tracepoint counterpart of `ww_empty_tp`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn ww_empty_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

// --- capability probes for `weightwarden doctor` ----------------------------

#[fentry(function = "vfs_read")]
pub fn ww_probe_fentry(ctx: FEntryContext) -> i32 {
    probe::fentry(&ctx)
}

#[lsm(hook = "file_open")]
pub fn ww_probe_lsm(ctx: LsmContext) -> i32 {
    probe::lsm(&ctx)
}

#[kprobe]
pub fn ww_probe_kprobe(ctx: ProbeContext) -> u32 {
    probe::kprobe(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
