//! The tracepoint tier's entry points: process lifecycle on the scheduler
//! tracepoints, and every followed syscall through one program at entry
//! and one at exit (`sys_enter`/`sys_exit` BTF tracepoints, decoded in
//! `syscall` from `pt_regs` read through `regs`). Each program is a thin
//! wrapper over the tier-neutral modules; its attach point is listed in the
//! agent's `sensor/src/kernel/programs.rs` (`TRACEPOINT_TIER`), by program name.

mod regs;
mod syscall;

use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

use crate::{process, uring, uring_change, uring_skip};

// --- process lifecycle -----------------------------------------------------

/// `sched/sched_process_exec`: `__data_loc char[] filename` at byte 8.
const EXEC_FILENAME_LOC: usize = 8;

#[tracepoint]
pub fn ww_sched_exec(ctx: TracePointContext) -> u32 {
    // SAFETY: the offset is inside this tracepoint's record.
    let loc: u32 = unsafe { ctx.read_at(EXEC_FILENAME_LOC) }.unwrap_or(0);
    process::on_exec(ctx.as_ptr() as usize + (loc & 0xffff) as usize);
    0
}

/// Raw `sched_process_fork(struct task_struct *parent, struct task_struct
/// *child)`: the raw form gives the child, so threads can be told apart.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn ww_sched_fork(ctx: RawTracePointContext) -> i32 {
    process::on_fork(ctx.arg(1));
    0
}

/// `sched/sched_process_exit` fires after `do_exit` has decremented
/// `signal->live`.
#[tracepoint]
pub fn ww_sched_exit(_ctx: TracePointContext) -> u32 {
    process::on_exit();
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

// --- io_uring: requests no syscall hook sees ------------------------------

/// `io_uring_complete(ctx, void *req, ...)`: a request's completion is
/// posted (reads counted, opens reported). `req` is the second argument
/// on every kernel with it (6.0+), though what follows it changed.
#[btf_tracepoint(function = "io_uring_complete")]
pub fn ww_io_uring_complete(ctx: BtfTracePointContext) -> i32 {
    uring::on_complete(ctx.arg(1));
    0
}

/// `io_uring_file_get(struct io_kiocb *req, int fd)`: a request takes a
/// descriptor, before using it (the policy's kill fallback for reads).
#[btf_tracepoint(function = "io_uring_file_get")]
pub fn ww_io_uring_file_get(ctx: BtfTracePointContext) -> i32 {
    uring::on_file_get(ctx.arg(0), ctx.arg::<i64>(1) as i32);
    0
}

/// `io_uring_submit_req(struct io_kiocb *req)`: a request was prepared
/// and is about to be issued (`io_uring_submit_sqe(req, force_nonblock)`
/// before 6.3, with the same first argument: the agent loads this program
/// for whichever the kernel has). Followed only for requests whose
/// success will post no completion (`IOSQE_CQE_SKIP_SUCCESS`).
#[btf_tracepoint(function = "io_uring_submit_req")]
pub fn ww_io_uring_submit_req(ctx: BtfTracePointContext) -> i32 {
    uring_skip::on_submit(ctx.arg(0));
    0
}

/// `io_uring_queue_async_work(struct io_kiocb *req, int rw)`: a prepared
/// request is queued to an io-wq thread, as every rename, unlink, link
/// and truncation is before it runs (their paths copied into the kernel).
/// Same name and arguments from 6.0 through 6.18.
#[btf_tracepoint(function = "io_uring_queue_async_work")]
pub fn ww_io_uring_queue_async_work(ctx: BtfTracePointContext) -> i32 {
    uring_change::on_queue_async(ctx.arg(0));
    0
}
