//! io_uring requests submitted with `IOSQE_CQE_SKIP_SUCCESS`. Their
//! success posts no completion, so `io_uring_complete` (`uring.rs`) never
//! fires for them: a raw ring could read a weight file with such requests
//! and leave no trace. They are followed as they are submitted instead
//! (`io_uring_submit_req`; `io_uring_submit_sqe` before 6.3), in the
//! submitting task or its SQPOLL thread (which shares its descriptors and
//! memory), after the request's preparation copied its arguments in and
//! before it is issued, and counted as if they succeeded:
//!
//! - a read of a watched file, with the bytes it asks for capped at the
//!   file's end, at the offset it names (or the file's position): what a
//!   regular file's read returns, as `read(2)` is accounted at entry
//!   (`read::enter_estimated`);
//! - a splice from one, the same way, capped also at the capacity of the
//!   pipe it fills;
//! - an open: its file is not known before it runs, but its process is
//!   made a holder, so that its reads of that file by descriptor are seen
//!   (an open into a fixed-file slot needs nothing: requests name their
//!   file);
//! - a write, send or connect of a tainted process, with the bytes it asks
//!   for.
//!
//! Each counts in `kernel.uring_skip_success`. A request that then fails
//! posts its failure (which `uring.rs` ignores), so it was counted anyway:
//! an over-count, never an under-count. Not followed (docs/detections.md):
//! the open's own record (the file is known only once it ran), reads of a
//! followed pipe (what they return is what was written), and tampering
//! requests (their records need the result).
//!
//! Cost: every io_uring request pays one load and one test of its flags.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user};
use sensor_common::{counter, send_syscall, watch_flag};

use crate::{
    holders,
    kernel::{Watched, btf_load, file_kind, offsets, read_at, weight_file},
    maps::count,
    read, send,
    uring::{self, OFF_IO_RW_KI_POS, OFF_IO_SPLICE_FD_IN, OFF_IO_SPLICE_FLAGS, opcode},
    uring_change::{OFF_IO_KIOCB_CQE_FD, OFF_IO_KIOCB_FLAGS, REQ_F_CQE_SKIP, REQ_F_FIXED_FILE},
};

offsets!(
    OFF_IO_RW_ADDR,
    OFF_IO_RW_LEN,
    OFF_IO_SPLICE_LEN,
    OFF_IO_SR_MSG_BUF,
    OFF_IO_SR_MSG_LEN,
    OFF_PIPE_MAX_USAGE,
);

/// The most bytes one read returns (`MAX_RW_COUNT`).
const MAX_RW_COUNT: u64 = 0x7fff_f000;
const PAGE_SIZE: u64 = 4096;
const S_IFMT: u32 = 0o170_000;
const S_IFIFO: u32 = 0o010_000;
/// `iovec` entries summed for a vectored request (more are not counted).
const MAX_IOVECS: u64 = 8;

/// A request is about to be issued (`req` is a BTF-typed `io_kiocb`).
#[inline(always)]
pub fn on_submit(req: u64) {
    let flags = btf_load::<u8>(req, &OFF_IO_KIOCB_FLAGS);
    if flags & REQ_F_CQE_SKIP != 0 {
        submitted(req, flags);
    }
}

/// A request whose success will post no completion.
#[inline(never)]
fn submitted(req: u64, flags: u8) {
    let op = btf_load::<u8>(req, &uring::OFF_IO_KIOCB_OPCODE);
    if uring::is_read(op) {
        read_submitted(req, flags, op);
    } else if op == opcode::SPLICE {
        splice_submitted(req, flags);
    } else if matches!(op, opcode::OPENAT | opcode::OPENAT2) {
        holders::mark_current();
    } else if let Some(syscall) = uring::send_syscall_of(op) {
        if holders::current_tainted() {
            send_submitted(req, flags, op, syscall);
        }
    }
}

/// The file a request names: a fixed-file slot or a descriptor, as
/// submitted (the request takes it only when it is issued).
#[inline(always)]
fn request_file(req: u64, flags: u8) -> Option<u64> {
    let fd = btf_load::<i32>(req, &OFF_IO_KIOCB_CQE_FD);
    uring::named_file(req, flags & REQ_F_FIXED_FILE != 0, fd)
}

/// The bytes a regular file's read of `count` at `offset` (negative: the
/// file's position) returns: up to the file's end. With the offset used.
#[inline(always)]
fn capped(w: &Watched, count: u64, offset: i64) -> (u64, u64) {
    let offset = if offset < 0 {
        w.position()
    } else {
        offset as u64
    };
    let bytes = if offset >= w.size {
        0
    } else {
        count.min(MAX_RW_COUNT).min(w.size - offset)
    };
    (offset, bytes)
}

/// A read: counted for the submitting process like a returned `read(2)`.
#[inline(always)]
fn read_submitted(req: u64, flags: u8, op: u8) {
    let Some(w) = request_file(req, flags).and_then(weight_file) else {
        return;
    };
    if w.entry.flags & watch_flag::PIPE != 0 {
        return;
    }
    let len = u64::from(btf_load::<u32>(req, &OFF_IO_RW_LEN));
    let asked = if matches!(op, opcode::READV | opcode::READV_FIXED) {
        iovec_bytes(btf_load::<u64>(req, &OFF_IO_RW_ADDR), len)
    } else {
        len
    };
    let (offset, bytes) = capped(&w, asked, btf_load::<i64>(req, &OFF_IO_RW_KI_POS));
    count(counter::URING_SKIP_SUCCESS);
    read::completed(bpf_get_current_pid_tgid(), &w, -1, offset, bytes);
}

/// A splice from a watched file into a pipe: counted like a returned
/// `splice(2)`, a copy to the pipe.
#[inline(always)]
fn splice_submitted(req: u64, flags: u8) {
    let splice_flags = btf_load::<u32>(req, &OFF_IO_SPLICE_FLAGS);
    let fd_in = btf_load::<i32>(req, &OFF_IO_SPLICE_FD_IN);
    let fixed_in = splice_flags & uring::SPLICE_F_FD_IN_FIXED != 0;
    let Some(w) = uring::named_file(req, fixed_in, fd_in).and_then(weight_file) else {
        return;
    };
    let Some(out) = request_file(req, flags) else {
        return;
    };
    let room = pipe_capacity(out).unwrap_or(0);
    let len = btf_load::<u64>(req, &OFF_IO_SPLICE_LEN).min(room);
    let off_in = btf_load::<i64>(req, &uring::OFF_IO_SPLICE_OFF_IN);
    let (offset, bytes) = capped(&w, len, off_in);
    count(counter::URING_SKIP_SUCCESS);
    let fd = if fixed_in { -1 } else { fd_in };
    read::uring_splice_completed(bpf_get_current_pid_tgid(), &w, fd, offset, bytes, out);
}

/// The bytes the pipe at `file` holds when full (a splice into a pipe
/// moves no more); None for a file that is no pipe.
#[inline(always)]
fn pipe_capacity(file: u64) -> Option<u64> {
    let (_, mode) = file_kind(file)?;
    if mode & S_IFMT != S_IFIFO {
        return None;
    }
    let pipe = read_at::<u64>(file, &crate::kernel::OFF_FILE_PRIVATE_DATA)?;
    let pages = read_at::<u32>(pipe, &OFF_PIPE_MAX_USAGE)?;
    Some(u64::from(pages) * PAGE_SIZE)
}

/// A write, send or connect of a tainted process: the bytes it asks for
/// went to its file.
#[inline(always)]
fn send_submitted(req: u64, flags: u8, op: u8, syscall: u32) {
    let Some(file) = request_file(req, flags) else {
        return;
    };
    let bytes = match op {
        opcode::WRITE | opcode::WRITE_FIXED => u64::from(btf_load::<u32>(req, &OFF_IO_RW_LEN)),
        opcode::WRITEV | opcode::WRITEV_FIXED => iovec_bytes(
            btf_load::<u64>(req, &OFF_IO_RW_ADDR),
            u64::from(btf_load::<u32>(req, &OFF_IO_RW_LEN)),
        ),
        opcode::SEND | opcode::SEND_ZC => u64::from(btf_load::<u32>(req, &OFF_IO_SR_MSG_LEN)),
        opcode::SENDMSG | opcode::SENDMSG_ZC => {
            msghdr_bytes(btf_load::<u64>(req, &OFF_IO_SR_MSG_BUF))
        }
        _ => 0,
    };
    // A connect sends nothing; `request_sent` follows it as one that
    // succeeded (result 0).
    let res = if syscall == send_syscall::IO_URING_CONNECT {
        0
    } else if bytes == 0 {
        return;
    } else {
        bytes.min(i64::MAX as u64) as i64
    };
    count(counter::URING_SKIP_SUCCESS);
    send::request_sent(file, syscall, res);
}

/// The bytes of the first [`MAX_IOVECS`] of the `n` `iovec`s at `iov`
/// (user memory of the submitting process, which its SQPOLL thread
/// shares).
#[inline(always)]
fn iovec_bytes(iov: u64, n: u64) -> u64 {
    let mut total = 0u64;
    for i in 0..MAX_IOVECS {
        if i >= n {
            break;
        }
        // `struct iovec { void *iov_base; size_t iov_len; }`.
        // SAFETY: bpf_probe_read_user checks the address.
        if let Ok(len) = unsafe { bpf_probe_read_user((iov + i * 16 + 8) as *const u64) } {
            total = total.saturating_add(len);
        }
    }
    total
}

/// The bytes of a `sendmsg`'s message: the `iovec`s its `user_msghdr`
/// (user memory) names.
#[inline(always)]
fn msghdr_bytes(msg: u64) -> u64 {
    // `msg_iov` and `msg_iovlen` at 16 and 24 (x86-64).
    // SAFETY: bpf_probe_read_user checks the address.
    let read = |at: u64| unsafe { bpf_probe_read_user(at as *const u64) };
    match (read(msg + 16), read(msg + 24)) {
        (Ok(iov), Ok(len)) => iovec_bytes(iov, len),
        _ => 0,
    }
}
