//! io_uring requests. Their reads and opens never pass a syscall hook (the
//! ring is read by the kernel, not by `read(2)`); the `io_uring`
//! tracepoints see each request instead:
//!
//! - `io_uring_complete(.., req, ..)` fires when a request's completion is
//!   posted, in the submitting process (its own task, or one of its io-wq
//!   or SQPOLL threads, which belong to its thread group). The request
//!   still holds its file, its opcode, its result and, for reads, the
//!   `kiocb` whose position has moved past the bytes read: reads are
//!   accounted here exactly like `read(2)` (bytes = the result, coverage
//!   from `ki_pos - result`), opens reported like `openat(2)`. `req` is a
//!   `void *` in the tracepoint's prototype, so the fields are probe reads
//!   at offsets from the kernel's BTF.
//! - `io_uring_file_get(req, fd)` fires when a request takes a descriptor
//!   from the process's table, before the file is used: the policy's kill
//!   fallback decides reads there, while a policy is enforced.
//!
//! No descriptor walk for reads: the request names its file, so the inode
//! filter is the only prefilter, and fixed files, descriptors passed to
//! another ring (`IORING_OP_MSG_RING`) and rings shared between processes
//! are all counted.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
};
use sensor_common::{change_syscall, counter, enforce::op as enforce_op};

use crate::{
    file, holders,
    kernel::{btf_load, offsets, read_at, weight_fd, weight_file},
    maps::count,
    read,
};

offsets!(
    OFF_IO_KIOCB_FILE,
    OFF_IO_KIOCB_OPCODE,
    OFF_IO_KIOCB_CQE_RES,
    OFF_IO_RW_KI_POS,
    OFF_IO_OPEN_FILE_SLOT,
);

/// `enum io_uring_op` (include/uapi/linux/io_uring.h); numbers are ABI.
mod opcode {
    pub const READV: u8 = 1;
    pub const READ_FIXED: u8 = 4;
    pub const OPENAT: u8 = 18;
    pub const READ: u8 = 22;
    pub const OPENAT2: u8 = 28;
    /// Installs a fixed file into the process's descriptor table (6.8+).
    pub const FIXED_FD_INSTALL: u8 = 54;
    /// Vectored read into registered buffers (6.15+).
    pub const READV_FIXED: u8 = 60;
}

#[inline(always)]
fn is_read(op: u8) -> bool {
    matches!(
        op,
        opcode::READ | opcode::READV | opcode::READ_FIXED | opcode::READV_FIXED
    )
}

/// The request fields a completion needs. The file pointer, the read's
/// `ki_pos`, the opcode and the result all sit in the first 128 bytes of
/// an `io_kiocb` on the kernels seen (6.1, 6.18): one probe read fetches
/// them (each probe read has a fixed cost that dominates here); a field
/// outside the window is read on its own. The offsets are verifier
/// constants, so the untaken branches cost nothing.
struct Request {
    opcode: u8,
    res: i32,
    file: u64,
    ki_pos: i64,
}

const REQ_WINDOW_WORDS: usize = 16;

impl Request {
    /// Not inlined: the window's 128 bytes must leave the stack before
    /// the accounting's calls (6.1's verifier allows 512 bytes for a
    /// chain of calls).
    #[inline(never)]
    fn read(req: u64) -> Option<Self> {
        // SAFETY: bpf_probe_read_kernel checks the address.
        let window = match unsafe { bpf_probe_read_kernel(req as *const [u64; REQ_WINDOW_WORDS]) } {
            Ok(w) => w,
            Err(_) => {
                count(counter::KERNEL_READ_FAILED);
                return None;
            }
        };
        // The little-endian word holding `size` bytes at `offset`, shifted
        // down to them, if they are inside the window.
        let field = |offset: &Global<u64>, size: u64| -> Option<u64> {
            let off = offset.load();
            let word = window.get((off / 8) as usize)?;
            (off % 8 + size <= 8).then_some(word >> ((off % 8) * 8))
        };
        let opcode = match field(&OFF_IO_KIOCB_OPCODE, 1) {
            Some(v) => v as u8,
            None => read_at::<u8>(req, &OFF_IO_KIOCB_OPCODE)?,
        };
        let res = match field(&OFF_IO_KIOCB_CQE_RES, 4) {
            Some(v) => v as u32 as i32,
            None => read_at::<i32>(req, &OFF_IO_KIOCB_CQE_RES)?,
        };
        let file = match field(&OFF_IO_KIOCB_FILE, 8) {
            Some(v) => v,
            None => read_at::<u64>(req, &OFF_IO_KIOCB_FILE)?,
        };
        let ki_pos = match field(&OFF_IO_RW_KI_POS, 8) {
            Some(v) => v as i64,
            None => read_at::<i64>(req, &OFF_IO_RW_KI_POS).unwrap_or(0),
        };
        Some(Self {
            opcode,
            res,
            file,
            ki_pos,
        })
    }
}

/// A request's completion is being posted; `req` is its `io_kiocb` (NULL
/// for completions posted without one, such as overflowed ones flushed
/// later).
#[inline(always)]
pub fn on_complete(req: u64) {
    if req == 0 {
        return;
    }
    let Some(r) = Request::read(req) else {
        return;
    };
    if r.res < 0 {
        return;
    }
    if is_read(r.opcode) {
        read_completed(&r);
    } else if matches!(
        r.opcode,
        opcode::OPENAT | opcode::OPENAT2 | opcode::FIXED_FD_INSTALL
    ) {
        if descriptor_completed(req, &r) {
            // Beside the open's handling, not under it (`create.rs`).
            let syscall = if r.opcode == opcode::OPENAT2 {
                change_syscall::IO_URING_OPENAT2
            } else {
                change_syscall::IO_URING_OPENAT
            };
            crate::create::open_exit(r.res, syscall, 0);
        }
    }
}

/// A read request completed: its bytes go into the process's read
/// aggregate, at the position it read from.
#[inline(never)]
fn read_completed(r: &Request) {
    let Some(w) = weight_file(r.file) else {
        return;
    };
    // The read moved the kiocb's position past its bytes (an offset of -1
    // read from, and moved, the file's position in the same way).
    let offset = (r.ki_pos - i64::from(r.res)).max(0) as u64;
    // The descriptor number is gone (the completion's flags overwrite
    // it) or never existed (a fixed file): -1.
    read::completed(bpf_get_current_pid_tgid(), &w, -1, offset, r.res as u64);
}

/// An open completed (its result is the new descriptor, in the
/// submitter's table, which io-wq threads share), or a fixed file was
/// installed as a descriptor. True for an open into the descriptor table
/// (it may have created its file).
#[inline(never)]
fn descriptor_completed(req: u64, r: &Request) -> bool {
    let res = r.res;
    if r.opcode == opcode::FIXED_FD_INSTALL {
        // Not an open: the file was opened or registered before; but the
        // process now holds a descriptor the prefilter did not see arrive.
        holders::acquired_descriptors(i64::from(res));
        return false;
    }
    // An open into a fixed-file slot returns 0 or the slot, not a
    // descriptor: not followed (the slot's reads are still counted).
    if read_at::<u32>(req, &OFF_IO_OPEN_FILE_SLOT).unwrap_or(1) != 0 {
        return false;
    }
    // No flags as passed: an io_uring open for writing or truncation is
    // an `open` record only (docs/events.md); a create is a record
    // (`on_complete`).
    file::open_exit(i64::from(res), file::OpenCall::Plain);
    true
}

/// A request takes descriptor `fd` from the process's table (`req` is a
/// BTF-typed `io_kiocb`), before the file is used: while a policy is
/// enforced, a read of a file it stops is stopped here, as `read(2)` is
/// at syscall entry (the kill is pending before the page cache copy).
#[inline(always)]
pub fn on_file_get(req: u64, fd: i32) {
    if !crate::enforce::active() || fd < 0 {
        return;
    }
    if !is_read(btf_load::<u8>(req, &OFF_IO_KIOCB_OPCODE)) {
        return;
    }
    if !holders::current_may_hold() {
        return;
    }
    if let Some(w) = weight_fd(fd as u64) {
        crate::enforce::stopped(enforce_op::READ, &w, fd);
    }
}
