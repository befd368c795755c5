//! The benchmark floor: programs that do nothing, for every kind of hook the
//! sensor attaches to. `weightwarden bench-floor` (`sensor/src/kernel/floor.rs`)
//! attaches them in place of the real programs, so that a benchmark can
//! measure what the kernel charges for the hooks alone; `run` never loads
//! them. They share no code with the real entry points on purpose: whatever
//! those do, the floor stays empty.

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

/// Attached to every classic tracepoint the sensor uses.
#[tracepoint]
pub fn ww_empty_tp(_ctx: TracePointContext) -> u32 {
    0
}

/// The `sys_enter` counterpart of `ww_empty_tp` (a BTF tracepoint program
/// is verified against its one target, so each target has its own).
#[btf_tracepoint(function = "sys_enter")]
pub fn ww_empty_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The `sys_exit` counterpart of `ww_empty_tp`.
#[btf_tracepoint(function = "sys_exit")]
pub fn ww_empty_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The `io_uring_complete` counterpart of `ww_empty_tp`.
#[btf_tracepoint(function = "io_uring_complete")]
pub fn ww_empty_io_uring_complete(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The `io_uring_file_get` counterpart of `ww_empty_tp`.
#[btf_tracepoint(function = "io_uring_file_get")]
pub fn ww_empty_io_uring_file_get(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The `io_uring_queue_async_work` counterpart of `ww_empty_tp`.
#[btf_tracepoint(function = "io_uring_queue_async_work")]
pub fn ww_empty_io_uring_queue_async_work(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The `io_uring_submit_req` counterpart of `ww_empty_tp` (loaded for
/// `io_uring_submit_sqe` before 6.3).
#[btf_tracepoint(function = "io_uring_submit_req")]
pub fn ww_empty_io_uring_submit_req(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The raw-tracepoint counterpart of `ww_empty_tp`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn ww_empty_raw(_ctx: RawTracePointContext) -> i32 {
    0
}
