//! The BPF LSM tier of enforcement: where the kernel runs `bpf` among its
//! LSMs, the policy denies in the security hooks (`EPERM`, nobody killed)
//! instead of killing from the syscall hooks. `file_permission` sees every
//! read and write through any descriptor (read, pread, readv, sendfile,
//! splice, copy_file_range, io_uring), `mmap_file` every map, `file_open`
//! every open. Attached only while a policy is enforced (the agent's
//! `ENFORCEMENT_LSM` table); decisions come from `crate::enforce`.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use sensor_common::enforce::op;

use crate::{
    enforce::lsm_check,
    kernel::{OFF_FILE_FLAGS, read_at},
};

const MAY_WRITE: u32 = 2;
const MAY_READ: u32 = 4;
const O_ACCMODE: u32 = 0o3;
const O_TRUNC: u32 = 0o1000;

/// `int file_open(struct file *file)`: an open for reading is an `open`;
/// one for writing or truncation is also a `write`. A process the tables
/// have not judged is left to fanotify, which reads its `/proc` entry.
#[lsm(hook = "file_open")]
pub fn ww_lsm_file_open(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let file: u64 = ctx.arg(0);
    let flags = read_at::<u32>(file, &OFF_FILE_FLAGS).unwrap_or(0);
    let writes = flags & O_ACCMODE != 0 || flags & O_TRUNC != 0;
    let ops = if writes {
        (1 << op::OPEN) | (1 << op::WRITE)
    } else {
        1 << op::OPEN
    };
    lsm_check(file, ops, true)
}

/// `int file_permission(struct file *file, int mask)`: each read or write
/// through a descriptor, whoever opened it.
#[lsm(hook = "file_permission")]
pub fn ww_lsm_file_permission(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    let mask: u32 = ctx.arg(1);
    let ops = if mask & MAY_WRITE != 0 {
        1 << op::WRITE
    } else if mask & MAY_READ != 0 {
        1 << op::READ
    } else {
        return 0;
    };
    lsm_check(ctx.arg(0), ops, false)
}

/// `int mmap_file(struct file *file, unsigned long reqprot, unsigned long
/// prot, unsigned long flags)`: a map of a file (`file` is NULL for
/// anonymous memory).
#[lsm(hook = "mmap_file")]
pub fn ww_lsm_mmap_file(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let file: u64 = ctx.arg(0);
    if file == 0 {
        return 0;
    }
    lsm_check(file, 1 << op::MMAP, false)
}
