//! Linux AIO (`io_submit`): the reads are issued inside `io_submit`, never
//! through a read syscall, and Linux AIO has no tracepoint of its own. The
//! submitted control blocks are read from the caller's memory at syscall
//! entry, and each `IOCB_CMD_PREAD`/`IOCB_CMD_PREADV` of a watched file is
//! accounted like `pread64(2)`: the bytes requested, capped at the file's
//! end (what a regular file returns), counted at submission (an over-count
//! if the request then fails, never an under-count). The completions
//! (`io_getevents`, or the ring the caller may read directly) are not
//! followed. The caller has checked the holder prefilter.

use aya_ebpf::helpers::bpf_probe_read_user;

use crate::read::{self, Offset};

/// Control blocks looked at per `io_submit`: the verifier checks each
/// iteration, so the loop is bounded. Blocks beyond it in one call are
/// not counted (docs/architecture.md, "Known limits").
const MAX_IOCBS: u64 = 32;
/// Vectors summed per `IOCB_CMD_PREADV`; a longer vector counts as a read
/// to the file's end (an over-count, never an under-count).
const MAX_IOVECS: u64 = 8;

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PREADV: u16 = 7;
/// The most one read transfers (`MAX_RW_COUNT`).
const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// `struct iocb` (include/uapi/linux/aio_abi.h): the same layout for
/// x86-64 and ia32 callers. Only some fields are read; all are listed
/// for the layout.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `io_submit(ctx, nr, iocbpp)`: `iocbpp` is an array of `nr` pointers,
/// 64-bit for x86-64 callers and 32-bit for ia32 ones (`compat`).
#[inline(always)]
pub fn submit_enter(nr: u64, iocbpp: u64, compat: bool) {
    let nr = (nr as i64).max(0) as u64;
    let width = if compat { 4 } else { 8 };
    for i in 0..MAX_IOCBS {
        if i >= nr {
            break;
        }
        let slot = iocbpp + i * width;
        // SAFETY: bpf_probe_read_user checks the address.
        let ptr = if compat {
            unsafe { bpf_probe_read_user(slot as *const u32) }.map(u64::from)
        } else {
            unsafe { bpf_probe_read_user(slot as *const u64) }
        };
        // An unreadable array: io_submit fails with EFAULT there too.
        let Ok(ptr) = ptr else { break };
        ww_aio_iocb(ptr, u64::from(compat));
    }
}

/// One control block at `ptr` (`compat`: an ia32 caller's). A global
/// (exported) function: the verifier checks it once, on its own, instead
/// of once per loop iteration at every call site (which exceeds its
/// budget). Arguments and result are plain scalars, as a global function's
/// must be.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ww_aio_iocb(ptr: u64, compat: u64) -> i64 {
    submitted(ptr, compat != 0);
    0
}

#[inline(always)]
fn submitted(ptr: u64, compat: bool) {
    // SAFETY: bpf_probe_read_user checks the address.
    let Ok(cb) = (unsafe { bpf_probe_read_user(ptr as *const Iocb) }) else {
        return;
    };
    let count = match cb.aio_lio_opcode {
        IOCB_CMD_PREAD => cb.aio_nbytes,
        IOCB_CMD_PREADV => vector_len(cb.aio_buf, cb.aio_nbytes, compat),
        _ => return,
    };
    read::enter_estimated(
        u64::from(cb.aio_fildes),
        count,
        Offset::At(cb.aio_offset.max(0) as u64),
    );
}

/// The total length of an iovec array of `count` entries at `iov`.
#[inline(always)]
fn vector_len(iov: u64, count: u64, compat: bool) -> u64 {
    if count > MAX_IOVECS {
        return MAX_RW_COUNT;
    }
    let width = if compat { 8 } else { 16 };
    let mut total = 0u64;
    for i in 0..MAX_IOVECS {
        if i >= count {
            break;
        }
        // iov_len follows iov_base: the second half of the entry.
        let at = iov + i * width + width / 2;
        // SAFETY: bpf_probe_read_user checks the address.
        let len = if compat {
            unsafe { bpf_probe_read_user(at as *const u32) }.map(u64::from)
        } else {
            unsafe { bpf_probe_read_user(at as *const u64) }
        };
        match len {
            Ok(len) => total = total.saturating_add(len),
            // The kernel fails the request with EFAULT.
            Err(_) => return 0,
        }
    }
    total
}
