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
//!   from `ki_pos - result`), opens reported like `openat(2)` (an open
//!   into a fixed-file slot too, found in the ring's table), splices from
//!   a watched file like `splice(2)`, and the writes, sends and connects
//!   of a tainted process like `write(2)`, `send(2)` and `connect(2)`
//!   (`send.rs`: by the request's file, `fd` -1). `req` is a `void *` in
//!   the tracepoint's prototype, so the fields are probe reads at offsets
//!   from the kernel's BTF.
//! - `io_uring_file_get(req, fd)` fires when a request takes a descriptor
//!   from the process's table, before the file is used: the policy's kill
//!   fallback decides reads and splice sources there, while a policy is
//!   enforced.
//!
//! No descriptor walk for reads: the request names its file, so the inode
//! filter is the only prefilter, and fixed files, descriptors passed to
//! another ring (`IORING_OP_MSG_RING`) and rings shared between processes
//! are all counted. A splice's request names only its output: its input
//! is looked up again by the number the request kept.
//!
//! Optional: the agent loads these programs only where the kernel's BTF
//! has every offset below (Linux 6.0+, `sensor/src/kernel/uring.rs`).

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
};
use sensor_common::{change_syscall, counter, enforce::op as enforce_op, send_syscall};

use crate::{
    file, holders,
    kernel::{btf_load, file_of_fd, offsets, read_at, weight_fd, weight_file},
    maps::count,
    read, send,
};

offsets!(
    OFF_IO_KIOCB_FILE,
    OFF_IO_KIOCB_OPCODE,
    OFF_IO_KIOCB_CQE_RES,
    OFF_IO_RW_KI_POS,
    OFF_IO_OPEN_FILE_SLOT,
    OFF_IO_KIOCB_CTX,
    OFF_IO_CTX_FIXED_FILES,
    OFF_IO_FIXED_NODE_FILE,
    OFF_IO_SPLICE_OFF_IN,
    OFF_IO_SPLICE_FD_IN,
    OFF_IO_SPLICE_FLAGS,
);

/// `enum io_uring_op` (include/uapi/linux/io_uring.h); numbers are ABI.
pub(crate) mod opcode {
    pub const READV: u8 = 1;
    pub const WRITEV: u8 = 2;
    pub const READ_FIXED: u8 = 4;
    pub const WRITE_FIXED: u8 = 5;
    pub const SENDMSG: u8 = 9;
    pub const CONNECT: u8 = 16;
    pub const OPENAT: u8 = 18;
    pub const READ: u8 = 22;
    pub const WRITE: u8 = 23;
    pub const SEND: u8 = 26;
    pub const OPENAT2: u8 = 28;
    /// `splice(2)`; its sibling `TEE` (33) moves pipe to pipe only, so
    /// never a watched file's bytes.
    pub const SPLICE: u8 = 30;
    /// Zero-copy sends (`SEND_ZC` 6.0+, `SENDMSG_ZC` 6.1+); their buffer
    /// notifications complete as requests of another opcode (`NOP`).
    pub const SEND_ZC: u8 = 47;
    pub const SENDMSG_ZC: u8 = 48;
    /// Installs a fixed file into the process's descriptor table (6.8+).
    pub const FIXED_FD_INSTALL: u8 = 54;
    /// Vectored read and write with registered buffers (6.15+).
    pub const READV_FIXED: u8 = 60;
    pub const WRITEV_FIXED: u8 = 61;
}

#[inline(always)]
pub(crate) fn is_read(op: u8) -> bool {
    matches!(
        op,
        opcode::READ | opcode::READV | opcode::READ_FIXED | opcode::READV_FIXED
    )
}

/// The `send_syscall` of a write, send or connect request.
#[inline(always)]
pub(crate) fn send_syscall_of(op: u8) -> Option<u32> {
    Some(match op {
        opcode::WRITE => send_syscall::IO_URING_WRITE,
        opcode::WRITEV => send_syscall::IO_URING_WRITEV,
        opcode::WRITE_FIXED => send_syscall::IO_URING_WRITE_FIXED,
        opcode::WRITEV_FIXED => send_syscall::IO_URING_WRITEV_FIXED,
        opcode::SEND => send_syscall::IO_URING_SEND,
        opcode::SENDMSG => send_syscall::IO_URING_SENDMSG,
        opcode::SEND_ZC => send_syscall::IO_URING_SEND_ZC,
        opcode::SENDMSG_ZC => send_syscall::IO_URING_SENDMSG_ZC,
        opcode::CONNECT => send_syscall::IO_URING_CONNECT,
        _ => return None,
    })
}

/// `SPLICE_F_FD_IN_FIXED`: a splice's input is a fixed-file slot.
pub(crate) const SPLICE_F_FD_IN_FIXED: u32 = 1 << 31;
/// `IORING_FILE_INDEX_ALLOC`: an open into whichever fixed slot is free;
/// its result is the slot.
const FILE_INDEX_ALLOC: u32 = u32::MAX;
/// The flag bits a fixed-file table entry keeps below its file pointer
/// (`FFS_*`; a `struct file` is at least 8-byte aligned).
const FFS_FLAGS: u64 = 7;
/// `OFF_IO_FIXED_NODE_FILE` where the table's entries are the `file_ptr`
/// words themselves (up to 6.12) rather than pointers to nodes.
const ENTRY_IS_FILE_PTR: u64 = u64::MAX;

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
    if let Some(syscall) = send_syscall_of(r.opcode) {
        // Followed for tainted processes only (`send.rs`): the others pay
        // one array load. Before the result test: a connect may complete
        // with `-EINPROGRESS`.
        if holders::current_tainted() {
            send_completed(&r, syscall);
        }
        return;
    }
    if crate::uring_change::is_tamper_op(r.opcode) {
        // Renames, unlinks, links, truncations: their failures too.
        crate::uring_change::completed(req, r.opcode, r.res, r.file);
        return;
    }
    if r.res < 0 {
        return;
    }
    if is_read(r.opcode) {
        read_completed(&r);
    } else if r.opcode == opcode::SPLICE {
        splice_completed(req, &r);
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

/// A write, send or connect request of a tainted process completed: its
/// result went to the request's file. Not inlined, like the others: its
/// frame is not the program's (6.1's verifier allows 512 bytes for a chain
/// of calls).
#[inline(never)]
fn send_completed(r: &Request, syscall: u32) {
    send::request_sent(r.file, syscall, i64::from(r.res));
}

/// A splice completed: if its input is a watched file, its bytes (the
/// result) were read from it, at the position it moved past, into the
/// request's file (the output, a pipe).
#[inline(never)]
fn splice_completed(req: u64, r: &Request) {
    if r.res <= 0 {
        return;
    }
    let (Some(flags), Some(fd_in)) = (
        read_at::<u32>(req, &OFF_IO_SPLICE_FLAGS),
        read_at::<i32>(req, &OFF_IO_SPLICE_FD_IN),
    ) else {
        return;
    };
    // The request keeps the input's number, not its file: found again in
    // the ring's table, or in the process's (io-wq and SQPOLL threads
    // share it). A descriptor closed and reused in between misleads this.
    let fixed = flags & SPLICE_F_FD_IN_FIXED != 0;
    let Some(w) = named_file(req, fixed, fd_in).and_then(weight_file) else {
        return;
    };
    let moved = i64::from(r.res);
    // `off_in` moved past the bytes spliced; -1 moved the file's position.
    let end = match read_at::<i64>(req, &OFF_IO_SPLICE_OFF_IN) {
        Some(-1) | None => w.position() as i64,
        Some(off) => off,
    };
    let offset = (end - moved).max(0) as u64;
    let fd = if fixed { -1 } else { fd_in };
    read::uring_splice_completed(
        bpf_get_current_pid_tgid(),
        &w,
        fd,
        offset,
        moved as u64,
        r.file,
    );
}

/// An open completed (its result is the new descriptor, in the
/// submitter's table, which io-wq threads share; or, into a fixed-file
/// slot, 0 or the slot), or a fixed file was installed as a descriptor.
/// True for an open into the descriptor table (it may have created its
/// file).
#[inline(never)]
fn descriptor_completed(req: u64, r: &Request) -> bool {
    let res = r.res;
    if r.opcode == opcode::FIXED_FD_INSTALL {
        // Not an open: the file was opened or registered before; but the
        // process now holds a descriptor the prefilter did not see arrive.
        holders::acquired_descriptors(i64::from(res));
        return false;
    }
    let Some(slot) = read_at::<u32>(req, &OFF_IO_OPEN_FILE_SLOT) else {
        return false;
    };
    // An open for writing or truncation is also a change record, with
    // the flags the request keeps (`uring_change.rs`); a create is one
    // too (`on_complete`).
    let call = || crate::uring_change::open_call(req, r.opcode);
    if slot == 0 {
        file::open_exit(i64::from(res), call());
        return true;
    }
    // Into a fixed-file slot (`file_slot` is the slot plus one, or
    // `FILE_INDEX_ALLOC` with the slot as the result): the file is in the
    // ring's table, and no descriptor names it.
    let index = if slot == FILE_INDEX_ALLOC {
        res as u32
    } else {
        slot - 1
    };
    if let Some(file_ptr) = fixed_file(req, index) {
        file::opened(file_ptr, -1, call());
    }
    false
}

/// The file a request names by number: slot `n` of its ring's fixed-file
/// table when `fixed`, else descriptor `n` of the current process (io-wq
/// and SQPOLL threads share the submitter's table).
#[inline(always)]
pub(crate) fn named_file(req: u64, fixed: bool, n: i32) -> Option<u64> {
    if fixed {
        fixed_file(req, n as u32)
    } else {
        file_of_fd(n as u32 as u64)
    }
}

/// The file in slot `slot` of the fixed-file table of `req`'s ring. The
/// caller's request succeeded with that slot, so it is inside the table
/// (or, before it ran, checks the file it ran with: `uring_change.rs`).
#[inline(always)]
pub(crate) fn fixed_file(req: u64, slot: u32) -> Option<u64> {
    let ctx = read_at::<u64>(req, &OFF_IO_KIOCB_CTX)?;
    let entries = read_at::<u64>(ctx, &OFF_IO_CTX_FIXED_FILES)?;
    if entries == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    let entry =
        match unsafe { bpf_probe_read_kernel((entries + u64::from(slot) * 8) as *const u64) } {
            Ok(e) => e,
            Err(_) => {
                count(counter::KERNEL_READ_FAILED);
                return None;
            }
        };
    let file_ptr = if OFF_IO_FIXED_NODE_FILE.load() == ENTRY_IS_FILE_PTR {
        entry
    } else {
        read_at::<u64>(entry, &OFF_IO_FIXED_NODE_FILE)?
    };
    let file = file_ptr & !FFS_FLAGS;
    (file != 0).then_some(file)
}

/// A request takes descriptor `fd` from the process's table (`req` is a
/// BTF-typed `io_kiocb`), before the file is used: while a policy is
/// enforced, a read of a file it stops, or a splice from one, is stopped
/// here, as `read(2)` and `splice(2)` are at syscall entry (the kill is
/// pending before the page cache copy).
#[inline(always)]
pub fn on_file_get(req: u64, fd: i32) {
    if !crate::enforce::active() || fd < 0 {
        return;
    }
    let op = btf_load::<u8>(req, &OFF_IO_KIOCB_OPCODE);
    let ops = if is_read(op) {
        1 << enforce_op::READ
    } else if op == opcode::SPLICE && is_splice_input(req, fd) {
        (1 << enforce_op::READ) | (1 << enforce_op::COPY)
    } else {
        return;
    };
    if !holders::current_may_hold() {
        return;
    }
    if let Some(w) = weight_fd(fd as u64) {
        crate::enforce::stopped_any(ops, &w, fd);
    }
}

/// Whether `fd` is the input of the splice `req` (a splice also takes its
/// output, which the policy does not judge as a read).
#[inline(always)]
fn is_splice_input(req: u64, fd: i32) -> bool {
    btf_load::<u32>(req, &OFF_IO_SPLICE_FLAGS) & SPLICE_F_FD_IN_FIXED == 0
        && btf_load::<i32>(req, &OFF_IO_SPLICE_FD_IN) == fd
}
