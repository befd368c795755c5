//! Syscall decoding for the tracepoint tier. Every syscall passes the two
//! BTF tracepoints `sys_enter(regs, id)` and `sys_exit(regs, ret)`; their
//! programs (`super`) call here to pick out the few syscalls the sensor
//! follows by number, decode their arguments from the saved registers
//! (`regs`) for the caller's ABI (x86-64 or ia32) and hand over to the
//! tier-neutral hook families (`file`, `read`, `holders`).
//!
//! Why not one `syscalls/sys_*_<name>` tracepoint per syscall: on this
//! kernel each enabled one costs its syscall a perf-style record before the
//! program runs (+0.2-0.3 us on a 0.57 us pread, measured), where a BTF
//! tracepoint program costs about 0.05 us and reads registers with plain
//! loads. And no `syscalls/*` tracepoint fires for an ia32 syscall at all.
//!
//! x32 syscalls (number | `__X32_SYSCALL_BIT`) match no number here: a
//! known blind spot on kernels that accept them (docs/architecture.md).

use aya_ebpf::{Global, helpers::bpf_probe_read_user, programs::BtfTracePointContext};
use sensor_common::{change_syscall as cs, copy_syscall, memory_method, send_syscall};

use super::regs::{
    OFF_REGS_BP, OFF_REGS_BX, OFF_REGS_CX, OFF_REGS_DI, OFF_REGS_DX, OFF_REGS_ORIG_AX, OFF_REGS_R8,
    OFF_REGS_R9, OFF_REGS_R10, OFF_REGS_SI, fd_reg, reg, reg32,
};
use crate::{
    agent_probe, aio,
    change::{self, AT_FDCWD, PassedFlags, PathArg},
    file::{self, MmapArgs, OpenCall},
    holders,
    kernel::in_compat_syscall,
    proc_mem, process,
    read::{self, Offset},
    send,
};

/// Non-zero: capture ia32 syscalls (`kernel.compat_syscalls`). When zero
/// they are still recognised, so that their numbers are never decoded as
/// x86-64 ones.
#[unsafe(no_mangle)]
pub static COMPAT_ENABLED: Global<u64> = Global::new(0);

/// x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
mod native {
    pub const READ: u64 = 0;
    pub const OPEN: u64 = 2;
    pub const IOCTL: u64 = 16;
    pub const PTRACE: u64 = 101;
    pub const PROCESS_VM_READV: u64 = 310;
    pub const CLOSE: u64 = 3;
    pub const MMAP: u64 = 9;
    pub const PREAD64: u64 = 17;
    pub const READV: u64 = 19;
    pub const SENDFILE: u64 = 40;
    pub const RECVMSG: u64 = 47;
    pub const CREAT: u64 = 85;
    pub const OPENAT: u64 = 257;
    pub const SPLICE: u64 = 275;
    pub const PREADV: u64 = 295;
    pub const RECVMMSG: u64 = 299;
    pub const FANOTIFY_INIT: u64 = 300;
    pub const OPEN_BY_HANDLE_AT: u64 = 304;
    pub const COPY_FILE_RANGE: u64 = 326;
    pub const PREADV2: u64 = 327;
    pub const OPENAT2: u64 = 437;
    pub const PIDFD_GETFD: u64 = 438;
    // Followed for tainted processes only (`send.rs`).
    pub const WRITE: u64 = 1;
    pub const PWRITE64: u64 = 18;
    pub const WRITEV: u64 = 20;
    pub const CONNECT: u64 = 42;
    pub const SENDTO: u64 = 44;
    pub const SENDMSG: u64 = 46;
    pub const PWRITEV: u64 = 296;
    pub const SENDMMSG: u64 = 307;
    pub const PWRITEV2: u64 = 328;
    // Tampering (`change.rs`).
    pub const TRUNCATE: u64 = 76;
    pub const FTRUNCATE: u64 = 77;
    pub const RENAME: u64 = 82;
    pub const LINK: u64 = 86;
    pub const UNLINK: u64 = 87;
    pub const CHMOD: u64 = 90;
    pub const FCHMOD: u64 = 91;
    pub const CHOWN: u64 = 92;
    pub const FCHOWN: u64 = 93;
    pub const LCHOWN: u64 = 94;
    pub const FCHOWNAT: u64 = 260;
    pub const UNLINKAT: u64 = 263;
    pub const RENAMEAT: u64 = 264;
    pub const LINKAT: u64 = 265;
    pub const FCHMODAT: u64 = 268;
    pub const RENAMEAT2: u64 = 316;
    pub const FCHMODAT2: u64 = 452;
    pub const MKNOD: u64 = 133;
    pub const MKNODAT: u64 = 259;
    pub const SYMLINK: u64 = 88;
    pub const SYMLINKAT: u64 = 266;
    pub const IO_SUBMIT: u64 = 209;
}

/// ia32 numbers (arch/x86/entry/syscalls/syscall_32.tbl).
mod ia32 {
    pub const READ: u64 = 3;
    pub const OPEN: u64 = 5;
    pub const IOCTL: u64 = 54;
    pub const PTRACE: u64 = 26;
    pub const PROCESS_VM_READV: u64 = 347;
    pub const CLOSE: u64 = 6;
    pub const CREAT: u64 = 8;
    pub const OLD_MMAP: u64 = 90;
    pub const SOCKETCALL: u64 = 102;
    pub const READV: u64 = 145;
    pub const PREAD64: u64 = 180;
    pub const SENDFILE: u64 = 187;
    pub const MMAP2: u64 = 192;
    pub const SENDFILE64: u64 = 239;
    pub const OPENAT: u64 = 295;
    pub const SPLICE: u64 = 313;
    pub const PREADV: u64 = 333;
    pub const RECVMMSG: u64 = 337;
    pub const FANOTIFY_INIT: u64 = 338;
    pub const OPEN_BY_HANDLE_AT: u64 = 342;
    pub const RECVMSG: u64 = 372;
    pub const COPY_FILE_RANGE: u64 = 377;
    pub const PREADV2: u64 = 378;
    pub const RECVMMSG_TIME64: u64 = 417;
    pub const OPENAT2: u64 = 437;
    pub const PIDFD_GETFD: u64 = 438;
    pub const IO_SUBMIT: u64 = 248;

    /// `socketcall(call, args)` calls that may deliver descriptors.
    pub const SYS_RECVMSG: u64 = 17;
    pub const SYS_RECVMMSG: u64 = 19;
}

/// Syscalls followed at entry, under either ABI's numbering (the two
/// overlap: 3 is an x86-64 close and an ia32 read). All of them act on a
/// descriptor the process already holds.
#[inline(always)]
fn followed_at_entry(nr: u64) -> bool {
    let native = matches!(
        nr,
        native::READ
            | native::CLOSE
            | native::MMAP
            | native::PREAD64
            | native::READV
            | native::PREADV
            | native::PREADV2
            | native::SENDFILE
            | native::SPLICE
            | native::COPY_FILE_RANGE
            | native::FTRUNCATE
            | native::FCHMOD
            | native::FCHOWN
            | native::IO_SUBMIT
    );
    let ia32 = matches!(
        nr,
        ia32::READ
            | ia32::IO_SUBMIT
            | ia32::CLOSE
            | ia32::SENDFILE
            | ia32::SENDFILE64
            | ia32::SPLICE
            | ia32::COPY_FILE_RANGE
            | ia32::OLD_MMAP
            | ia32::READV
            | ia32::PREAD64
            | ia32::MMAP2
            | ia32::PREADV
            | ia32::PREADV2
    );
    native || ia32
}

/// Syscalls followed at exit, under either ABI's numbering.
#[inline(always)]
fn followed_at_exit(nr: u64) -> bool {
    let native = matches!(
        nr,
        native::OPEN
            | native::MMAP
            | native::READV
            | native::RECVMSG
            | native::CREAT
            | native::OPENAT
            | native::PREADV
            | native::RECVMMSG
            | native::FANOTIFY_INIT
            | native::OPEN_BY_HANDLE_AT
            | native::PREADV2
            | native::OPENAT2
            | native::PIDFD_GETFD
            | native::SENDFILE
            | native::SPLICE
            | native::COPY_FILE_RANGE
            | native::IOCTL
            | native::PTRACE
            | native::PROCESS_VM_READV
            | native::FTRUNCATE
            | native::FCHMOD
            | native::FCHOWN
    );
    let ia32 = matches!(
        nr,
        ia32::READ
            | ia32::OPEN
            | ia32::CREAT
            | ia32::OLD_MMAP
            | ia32::SOCKETCALL
            | ia32::READV
            | ia32::PREAD64
            | ia32::MMAP2
            | ia32::OPENAT
            | ia32::PREADV
            | ia32::RECVMMSG
            | ia32::FANOTIFY_INIT
            | ia32::OPEN_BY_HANDLE_AT
            | ia32::RECVMSG
            | ia32::PREADV2
            | ia32::RECVMMSG_TIME64
            | ia32::SENDFILE
            | ia32::SENDFILE64
            | ia32::SPLICE
            | ia32::COPY_FILE_RANGE
            | ia32::IOCTL
            | ia32::PTRACE
            | ia32::PROCESS_VM_READV
    );
    native || ia32
}

/// The syscall number the kernel runs: the low 32 bits of `orig_ax` (the
/// entry code takes it as an `int`). `orig_ax` keeps all 64 bits of `rax`,
/// so without the mask `(1 << 32) | openat` would open a file unseen.
#[inline(always)]
fn syscall_nr(raw: u64) -> u64 {
    raw & 0xffff_ffff
}

/// `sys_enter(struct pt_regs *regs, long id)`. The fast path (number and
/// holder checks, all most syscalls see) is inlined into the program; the
/// rest is a called function, so its stack frame and registers are paid
/// only by the few syscalls that get that far.
#[inline(always)]
pub fn on_sys_enter(ctx: &BtfTracePointContext) {
    let nr = syscall_nr(ctx.arg(1));
    if followed_at_entry(nr) && holders::current_may_hold() {
        if nr == native::IO_SUBMIT || nr == ia32::IO_SUBMIT {
            // Its own call chain: the per-iocb global function's stack
            // frame does not fit under `enter_followed`'s (the verifier
            // of 6.1 allows 512 bytes for a chain of calls).
            io_submit_enter(nr, ctx.arg(0));
        } else {
            enter_followed(nr, ctx.arg(0));
        }
    } else if (nr == native::IOCTL || nr == ia32::IOCTL) && is_reflink(ctx.arg(0)) {
        // ioctl is frequent (GPU drivers): only the reflink commands, under
        // either ABI's argument register, go on to the holder check.
        if holders::current_may_hold() {
            enter_followed(nr, ctx.arg(0));
        }
    }
}

/// `FICLONE` and `FICLONERANGE` (`_IOW(0x94, 9, int)`,
/// `_IOW(0x94, 13, struct file_clone_range)`).
const FICLONE: u64 = 0x4004_9409;
const FICLONERANGE: u64 = 0x4020_940d;

/// Whether an ioctl's command is a reflink: `si` for x86-64, `cx` for
/// ia32 (the ABI is checked later; a match under the wrong one only costs
/// the descriptor check).
#[inline(always)]
fn is_reflink(regs: u64) -> bool {
    let native = reg(regs, &OFF_REGS_SI) & 0xffff_ffff;
    let ia32 = reg32(regs, &OFF_REGS_CX);
    matches!(native, FICLONE | FICLONERANGE) || matches!(ia32, FICLONE | FICLONERANGE)
}

/// `struct file_clone_range`: the argument of `FICLONERANGE`.
#[repr(C)]
#[derive(Clone, Copy)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// `ioctl(dest_fd, FICLONE, src_fd)` or `ioctl(dest_fd, FICLONERANGE,
/// &range)`: a reflink whose source may be a watched file.
#[inline(always)]
fn reflink_enter(dest_fd: u64, cmd: u64, arg: u64) {
    match cmd & 0xffff_ffff {
        FICLONE => read::reflink_enter(arg, 0, 0, dest_fd, copy_syscall::FICLONE),
        FICLONERANGE => {
            // SAFETY: bpf_probe_read_user checks the address.
            if let Ok(r) = unsafe { bpf_probe_read_user(arg as *const FileCloneRange) } {
                read::reflink_enter(
                    r.src_fd as u64,
                    r.src_offset,
                    r.src_length,
                    dest_fd,
                    copy_syscall::FICLONERANGE,
                );
            }
        }
        _ => {}
    }
}

/// `io_submit(ctx, nr, iocbpp)` under either ABI (`nr` is a 32-bit long
/// for ia32 callers); the number matched one of the two.
#[inline(never)]
fn io_submit_enter(nr: u64, regs: u64) {
    if !in_compat_syscall() {
        if nr == native::IO_SUBMIT {
            aio::submit_enter(reg(regs, &OFF_REGS_SI), reg(regs, &OFF_REGS_DX), false);
        }
    } else if COMPAT_ENABLED.load() != 0 && nr == ia32::IO_SUBMIT {
        aio::submit_enter(
            reg32(regs, &OFF_REGS_CX) as u32 as i32 as i64 as u64,
            reg32(regs, &OFF_REGS_DX),
            true,
        );
    }
}

#[inline(never)]
fn enter_followed(nr: u64, regs: u64) {
    if !in_compat_syscall() {
        native_enter(nr, regs);
    } else if COMPAT_ENABLED.load() != 0 {
        ia32_enter(nr, regs);
    }
}

/// `sys_exit(struct pt_regs *regs, long ret)`, split like `on_sys_enter`.
#[inline(always)]
pub fn on_sys_exit(ctx: &BtfTracePointContext) {
    let regs: u64 = ctx.arg(0);
    let nr = syscall_nr(reg(regs, &OFF_REGS_ORIG_AX));
    // The registers still hold the arguments: only a reflink ioctl can
    // have left a pending entry.
    let other_ioctl = (nr == native::IOCTL || nr == ia32::IOCTL) && !is_reflink(regs);
    // Path operations are called from here, not through `exit_followed`:
    // one call level less keeps the combined stack under 512 bytes on
    // kernels without private stacks (6.1 counted 640).
    if is_path_change(nr) && !in_compat_syscall() {
        path_change_exit(nr, regs, ctx.arg(1));
    } else if followed_at_exit(nr) && !other_ioctl {
        exit_followed(nr, regs, ctx.arg(1));
        // Beside the open's handling, not under it (`create.rs`).
        open_created_exit(nr, regs, ctx.arg(1));
    } else if is_send(nr) && holders::current_tainted() {
        send_exit(nr, regs, ctx.arg(1));
    } else if (nr == native::READ || nr == native::PREAD64)
        && crate::proc_mem::current_reader()
        && !in_compat_syscall()
    {
        proc_mem_read_exit(ctx.arg(1));
    }
}

/// A `read`/`pread64` of a process that opened another's `/proc/PID/mem`
/// returns: a read of that file is counted as returned (other reads of
/// `read`/`pread64` are accounted at entry and left nothing pending). A
/// call of its own, so that its frame is not the program's: 6.1's
/// verifier allows 512 bytes for a chain of calls.
#[inline(never)]
fn proc_mem_read_exit(ret: i64) {
    read::exit(ret);
}

/// Writes, sends and connects (x86-64): followed for tainted processes.
#[inline(always)]
fn is_send(nr: u64) -> bool {
    matches!(
        nr,
        native::WRITE
            | native::PWRITE64
            | native::WRITEV
            | native::CONNECT
            | native::SENDTO
            | native::SENDMSG
            | native::PWRITEV
            | native::SENDMMSG
            | native::PWRITEV2
    )
}

/// A tainted process's write, send or connect: the registers still hold
/// the arguments (di: the descriptor), `ret` the bytes. ia32 ones are not
/// followed (docs/detections.md).
#[inline(never)]
fn send_exit(nr: u64, regs: u64, ret: i64) {
    if in_compat_syscall() {
        return;
    }
    let fd = fd_reg(regs, &OFF_REGS_DI);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let (syscall, bytes, to) = match nr {
        native::WRITE => (send_syscall::WRITE, bytes, 0),
        native::PWRITE64 => (send_syscall::PWRITE64, bytes, 0),
        native::WRITEV => (send_syscall::WRITEV, bytes, 0),
        native::PWRITEV | native::PWRITEV2 => (send_syscall::PWRITEV, bytes, 0),
        // sendto(fd, buf, len, flags, dest_addr, addrlen)
        native::SENDTO => (send_syscall::SENDTO, bytes, reg(regs, &OFF_REGS_R8)),
        native::SENDMSG => (send_syscall::SENDMSG, bytes, 0),
        // sendmmsg(fd, msgvec, vlen, flags): ret is the messages sent.
        native::SENDMMSG => (
            send_syscall::SENDMMSG,
            send::mmsg_bytes(reg(regs, &OFF_REGS_SI), ret),
            0,
        ),
        native::CONNECT => (send_syscall::CONNECT, 0, 0),
        _ => return,
    };
    send::sent(fd, syscall, ret, bytes, to);
}

#[inline(never)]
fn exit_followed(nr: u64, regs: u64, ret: i64) {
    if !in_compat_syscall() {
        native_exit(nr, regs, ret);
    } else if COMPAT_ENABLED.load() != 0 {
        ia32_exit(nr, regs, ret);
    } else {
        ia32_exit_uncaptured(nr, regs, ret);
    }
}

/// x86-64 arguments: di, si, dx, r10, r8, r9.
#[inline(always)]
fn native_enter(nr: u64, regs: u64) {
    match nr {
        // read(fd, buf, count)
        native::READ => read::enter_estimated(
            fd_reg(regs, &OFF_REGS_DI),
            reg(regs, &OFF_REGS_DX),
            Offset::Position,
        ),
        // pread64(fd, buf, count, pos)
        native::PREAD64 => read::enter_estimated(
            fd_reg(regs, &OFF_REGS_DI),
            reg(regs, &OFF_REGS_DX),
            Offset::At(reg(regs, &OFF_REGS_R10)),
        ),
        // readv(fd, iov, vlen)
        native::READV => read::enter(fd_reg(regs, &OFF_REGS_DI), Offset::Position),
        // preadv(fd, iov, vlen, pos_l, pos_h): on 64-bit pos_l is the
        // whole offset; preadv2 adds flags, and pos -1 means the position.
        native::PREADV | native::PREADV2 => {
            let offset = match reg(regs, &OFF_REGS_R10) {
                u64::MAX => Offset::Position,
                pos => Offset::At(pos),
            };
            read::enter(fd_reg(regs, &OFF_REGS_DI), offset);
        }
        native::CLOSE => file::close_enter(fd_reg(regs, &OFF_REGS_DI)),
        // ftruncate(fd, length), fchmod(fd, mode), fchown(fd, uid, gid)
        native::FTRUNCATE => change::fd_enter(fd_reg(regs, &OFF_REGS_DI), cs::FTRUNCATE),
        native::FCHMOD => change::fd_enter(fd_reg(regs, &OFF_REGS_DI), cs::FCHMOD),
        native::FCHOWN => change::fd_enter(fd_reg(regs, &OFF_REGS_DI), cs::FCHOWN),
        // ioctl(fd, cmd, arg)
        native::IOCTL => reflink_enter(
            fd_reg(regs, &OFF_REGS_DI),
            reg(regs, &OFF_REGS_SI),
            reg(regs, &OFF_REGS_DX),
        ),
        // sendfile(out_fd, in_fd, off_t *offset, count)
        native::SENDFILE => read::copy_enter(
            fd_reg(regs, &OFF_REGS_SI),
            user_offset(reg(regs, &OFF_REGS_DX), true),
            fd_reg(regs, &OFF_REGS_DI),
            copy_syscall::SENDFILE,
        ),
        // splice(fd_in, loff_t *off_in, fd_out, ...), copy_file_range(fd_in,
        // loff_t *off_in, fd_out, ...)
        native::SPLICE | native::COPY_FILE_RANGE => read::copy_enter(
            fd_reg(regs, &OFF_REGS_DI),
            user_offset(reg(regs, &OFF_REGS_SI), true),
            fd_reg(regs, &OFF_REGS_DX),
            if nr == native::SPLICE {
                copy_syscall::SPLICE
            } else {
                copy_syscall::COPY_FILE_RANGE
            },
        ),
        // mmap(addr, len, prot, flags, fd, off)
        native::MMAP => file::mmap_enter(MmapArgs {
            len: reg(regs, &OFF_REGS_SI),
            prot: reg(regs, &OFF_REGS_DX),
            flags: reg(regs, &OFF_REGS_R10),
            fd: fd_reg(regs, &OFF_REGS_R8),
            offset: reg(regs, &OFF_REGS_R9),
        }),
        _ => {}
    }
}

#[inline(always)]
fn native_exit(nr: u64, regs: u64, ret: i64) {
    match nr {
        // process_vm_readv(pid, ...): bytes copied from pid's memory.
        native::PROCESS_VM_READV if ret > 0 => process::on_memory_access(
            reg(regs, &OFF_REGS_DI) as u32,
            memory_method::PROCESS_VM_READV,
            ret as u64,
        ),
        // ptrace(request, pid, ...)
        native::PTRACE if ret == 0 => {
            ptrace_exit(reg(regs, &OFF_REGS_DI), reg(regs, &OFF_REGS_SI), 8)
        }
        native::OPEN
        | native::CREAT
        | native::OPENAT
        | native::OPENAT2
        | native::OPEN_BY_HANDLE_AT => {
            // The agent's identity probes are not records.
            if !agent_probe::open_exit(ret) {
                file::open_exit(ret, open_call(nr, regs));
            }
        }
        native::FTRUNCATE | native::FCHMOD => change::fd_exit(ret, reg(regs, &OFF_REGS_SI), 0),
        native::FCHOWN => change::fd_exit(ret, reg(regs, &OFF_REGS_SI), reg(regs, &OFF_REGS_DX)),
        native::READV
        | native::PREADV
        | native::PREADV2
        | native::SENDFILE
        | native::SPLICE
        | native::COPY_FILE_RANGE
        | native::IOCTL => read::exit(ret),
        native::MMAP => file::mmap_exit(ret),
        native::RECVMSG | native::RECVMMSG | native::PIDFD_GETFD | native::FANOTIFY_INIT => {
            holders::acquired_descriptors(ret)
        }
        _ => {}
    }
}

/// x86-64 path operations (`change.rs`): reported when they succeed.
#[inline(always)]
fn is_path_change(nr: u64) -> bool {
    matches!(
        nr,
        native::TRUNCATE
            | native::RENAME
            | native::LINK
            | native::UNLINK
            | native::CHMOD
            | native::CHOWN
            | native::LCHOWN
            | native::FCHOWNAT
            | native::UNLINKAT
            | native::RENAMEAT
            | native::LINKAT
            | native::FCHMODAT
            | native::RENAMEAT2
            | native::FCHMODAT2
            | native::MKNOD
            | native::MKNODAT
            | native::SYMLINK
            | native::SYMLINKAT
    )
}

/// A path operation returning: its arguments are still in the registers
/// (di, si, dx, r10, r8).
#[inline(never)]
fn path_change_exit(nr: u64, regs: u64, ret: i64) {
    if ret != 0 {
        return;
    }
    let a = |off| reg(regs, off);
    let cwd = |ptr| PathArg {
        dirfd: AT_FDCWD,
        ptr,
    };
    let at = |dirfd: u64, ptr| PathArg {
        dirfd: dirfd as u32 as i32,
        ptr,
    };
    let none = PathArg { dirfd: 0, ptr: 0 };
    let (di, si, dx, r10, r8) = (
        a(&OFF_REGS_DI),
        a(&OFF_REGS_SI),
        a(&OFF_REGS_DX),
        a(&OFF_REGS_R10),
        a(&OFF_REGS_R8),
    );
    match nr {
        native::TRUNCATE => change::path_exit(ret, cs::TRUNCATE, cwd(di), none, si, 0),
        native::RENAME => change::path_exit(ret, cs::RENAME, cwd(di), cwd(si), 0, 0),
        native::RENAMEAT => change::path_exit(ret, cs::RENAMEAT, at(di, si), at(dx, r10), 0, 0),
        native::RENAMEAT2 => change::path_exit(ret, cs::RENAMEAT2, at(di, si), at(dx, r10), r8, 0),
        native::UNLINK => change::path_exit(ret, cs::UNLINK, cwd(di), none, 0, 0),
        native::UNLINKAT => change::path_exit(ret, cs::UNLINKAT, at(di, si), none, dx, 0),
        native::CHMOD => change::path_exit(ret, cs::CHMOD, cwd(di), none, si, 0),
        native::FCHMODAT => change::path_exit(ret, cs::FCHMODAT, at(di, si), none, dx, 0),
        native::FCHMODAT2 => change::path_exit(ret, cs::FCHMODAT2, at(di, si), none, dx, r10),
        native::CHOWN => change::path_exit(ret, cs::CHOWN, cwd(di), none, si, dx),
        native::LCHOWN => change::path_exit(ret, cs::LCHOWN, cwd(di), none, si, dx),
        // fchownat(dfd, path, uid, gid, flags): the flags ride in arg2's
        // upper half.
        native::FCHOWNAT => change::path_exit(
            ret,
            cs::FCHOWNAT,
            at(di, si),
            none,
            dx,
            (r10 & 0xffff_ffff) | (r8 << 32),
        ),
        native::LINK => change::path_exit(ret, cs::LINK, cwd(di), cwd(si), 0, 0),
        native::LINKAT => change::path_exit(ret, cs::LINKAT, at(di, si), at(dx, r10), r8, 0),
        // mknod(path, mode, dev), mknodat(dfd, path, mode, dev)
        native::MKNOD => change::path_exit(ret, cs::MKNOD, cwd(di), none, si, dx),
        native::MKNODAT => change::path_exit(ret, cs::MKNODAT, at(di, si), none, dx, r10),
        // symlink(target, path), symlinkat(target, dfd, path): the target
        // is a string stored as is, not a path the call resolves.
        native::SYMLINK => change::path_exit(ret, cs::SYMLINK, cwd(di), cwd(si), 0, 0),
        native::SYMLINKAT => change::path_exit(ret, cs::SYMLINKAT, cwd(di), at(si, dx), 0, 0),
        _ => {}
    }
}

/// An x86-64 open that passed `O_CREAT` (or may have: `openat2`)
/// returning: did it create a file in a watched directory? The flag test
/// is all other opens pay.
#[inline(always)]
fn open_created_exit(nr: u64, regs: u64, ret: i64) {
    if ret < 0
        || !matches!(
            nr,
            native::OPEN | native::CREAT | native::OPENAT | native::OPENAT2
        )
    {
        return;
    }
    let OpenCall::Native(syscall, passed) = open_call(nr, regs) else {
        return;
    };
    if passed.may_create() && !in_compat_syscall() {
        crate::create::open_exit(ret as i32, syscall, passed.get());
    }
}

/// An open's change syscall and flags as passed, for the tampering
/// records: open(path, flags, mode), creat(path, mode) (`O_CREAT |
/// O_WRONLY | O_TRUNC`), openat(dfd, path, flags, mode), openat2(dfd,
/// path, how, size), open_by_handle_at(mount_fd, handle, flags).
#[inline(always)]
fn open_call(nr: u64, regs: u64) -> OpenCall {
    let (syscall, passed) = match nr {
        native::OPEN => (cs::OPEN, PassedFlags::Value(reg(regs, &OFF_REGS_SI))),
        native::CREAT => (cs::CREAT, PassedFlags::Value(0o1101)),
        native::OPENAT => (cs::OPENAT, PassedFlags::Value(reg(regs, &OFF_REGS_DX))),
        native::OPENAT2 => (cs::OPENAT2, PassedFlags::OpenHow(reg(regs, &OFF_REGS_DX))),
        native::OPEN_BY_HANDLE_AT => (
            cs::OPEN_BY_HANDLE_AT,
            PassedFlags::Value(reg(regs, &OFF_REGS_DX)),
        ),
        _ => return OpenCall::Plain,
    };
    OpenCall::Native(syscall, passed)
}

/// The offset an in-kernel copy reads at: the value behind the user
/// pointer `ptr` (64 or 32 bits wide), or the descriptor's position when it
/// is NULL (or cannot be read: the syscall then fails with EFAULT).
#[inline(always)]
fn user_offset(ptr: u64, wide: bool) -> Offset {
    if ptr == 0 {
        return Offset::Position;
    }
    // SAFETY: bpf_probe_read_user checks the address.
    let value = if wide {
        unsafe { bpf_probe_read_user(ptr as *const u64) }.ok()
    } else {
        unsafe { bpf_probe_read_user(ptr as *const u32) }
            .ok()
            .map(u64::from)
    };
    value.map_or(Offset::Position, Offset::At)
}

/// A successful `ptrace(request, pid)`: attaching is what lets a process
/// read another's memory, a record at once; `PTRACE_PEEKTEXT`/`PEEKDATA`
/// words (`word` bytes each) follow by the thousand and are counted per
/// (tracer, target), summarised when the tracer detaches.
#[inline(always)]
fn ptrace_exit(request: u64, pid: u64, word: u64) {
    const PTRACE_PEEKTEXT: u64 = 1;
    const PTRACE_PEEKDATA: u64 = 2;
    const PTRACE_DETACH: u64 = 17;
    const PTRACE_ATTACH: u64 = 16;
    const PTRACE_SEIZE: u64 = 0x4206;
    let method = match request & 0xffff_ffff {
        PTRACE_ATTACH => memory_method::PTRACE_ATTACH,
        PTRACE_SEIZE => memory_method::PTRACE_SEIZE,
        PTRACE_PEEKTEXT | PTRACE_PEEKDATA => {
            return proc_mem::account(pid as u32, memory_method::PTRACE_PEEK, word);
        }
        PTRACE_DETACH => return proc_mem::flush(pid as u32, memory_method::PTRACE_PEEK),
        _ => return,
    };
    process::on_memory_access(pid as u32, method, 0);
}

/// A 64-bit offset passed as two 32-bit halves.
#[inline(always)]
fn split_offset(low: u64, high: u64) -> u64 {
    (high << 32) | low
}

/// `old_mmap`'s argument block (all 32-bit, in user memory).
#[repr(C)]
#[derive(Clone, Copy)]
struct OldMmapArgs {
    addr: u32,
    len: u32,
    prot: u32,
    flags: u32,
    fd: u32,
    offset: u32,
}

/// ia32 arguments: bx, cx, dx, si, di, bp. Reads keep exact bytes-returned
/// accounting at exit (these are rare).
#[inline(always)]
fn ia32_enter(nr: u64, regs: u64) {
    match nr {
        ia32::READ | ia32::READV => read::enter(fd_reg(regs, &OFF_REGS_BX), Offset::Position),
        // pread64(fd, buf, count, pos_lo, pos_hi), preadv(fd, vec, vlen, pos_lo, pos_hi)
        ia32::PREAD64 | ia32::PREADV => read::enter(
            fd_reg(regs, &OFF_REGS_BX),
            Offset::At(split_offset(
                reg32(regs, &OFF_REGS_SI),
                reg32(regs, &OFF_REGS_DI),
            )),
        ),
        ia32::PREADV2 => {
            let (low, high) = (reg32(regs, &OFF_REGS_SI), reg32(regs, &OFF_REGS_DI));
            let offset = if low == 0xffff_ffff && high == 0xffff_ffff {
                Offset::Position
            } else {
                Offset::At(split_offset(low, high))
            };
            read::enter(fd_reg(regs, &OFF_REGS_BX), offset);
        }
        ia32::CLOSE => file::close_enter(fd_reg(regs, &OFF_REGS_BX)),
        ia32::IOCTL => reflink_enter(
            fd_reg(regs, &OFF_REGS_BX),
            reg32(regs, &OFF_REGS_CX),
            reg32(regs, &OFF_REGS_DX),
        ),
        // sendfile(out_fd, in_fd, off_t *offset, count): a 32-bit offset;
        // sendfile64's is 64-bit.
        ia32::SENDFILE | ia32::SENDFILE64 => read::copy_enter(
            fd_reg(regs, &OFF_REGS_CX),
            user_offset(reg32(regs, &OFF_REGS_DX), nr == ia32::SENDFILE64),
            fd_reg(regs, &OFF_REGS_BX),
            copy_syscall::SENDFILE,
        ),
        ia32::SPLICE | ia32::COPY_FILE_RANGE => read::copy_enter(
            fd_reg(regs, &OFF_REGS_BX),
            user_offset(reg32(regs, &OFF_REGS_CX), true),
            fd_reg(regs, &OFF_REGS_DX),
            if nr == ia32::SPLICE {
                copy_syscall::SPLICE
            } else {
                copy_syscall::COPY_FILE_RANGE
            },
        ),
        // mmap2(addr, len, prot, flags, fd, pgoff)
        ia32::MMAP2 => file::mmap_enter(MmapArgs {
            len: reg32(regs, &OFF_REGS_CX),
            prot: reg32(regs, &OFF_REGS_DX),
            flags: reg32(regs, &OFF_REGS_SI),
            fd: fd_reg(regs, &OFF_REGS_DI),
            offset: reg32(regs, &OFF_REGS_BP) << 12,
        }),
        ia32::OLD_MMAP => {
            let block = reg32(regs, &OFF_REGS_BX);
            // SAFETY: bpf_probe_read_user checks the address.
            if let Ok(a) = unsafe { bpf_probe_read_user(block as *const OldMmapArgs) } {
                file::mmap_enter(MmapArgs {
                    len: a.len.into(),
                    prot: a.prot.into(),
                    flags: a.flags.into(),
                    fd: a.fd.into(),
                    offset: a.offset.into(),
                });
            }
        }
        _ => {}
    }
}

/// ia32 opens.
#[inline(always)]
fn ia32_is_open(nr: u64) -> bool {
    matches!(
        nr,
        ia32::OPEN | ia32::CREAT | ia32::OPENAT | ia32::OPENAT2 | ia32::OPEN_BY_HANDLE_AT
    )
}

/// ia32 syscalls that may hand the process descriptors it did not open.
/// The registers still hold the arguments at exit (for `socketcall`).
#[inline(always)]
fn ia32_receives_descriptors(nr: u64, regs: u64) -> bool {
    match nr {
        ia32::RECVMSG
        | ia32::RECVMMSG
        | ia32::RECVMMSG_TIME64
        | ia32::PIDFD_GETFD
        | ia32::FANOTIFY_INIT => true,
        ia32::SOCKETCALL => matches!(
            reg32(regs, &OFF_REGS_BX),
            ia32::SYS_RECVMSG | ia32::SYS_RECVMMSG
        ),
        _ => false,
    }
}

/// With ia32 capture off, a process that gets a descriptor through an ia32
/// open or descriptor passing still joins the holder set (whether the file
/// is watched is not looked at): its x86-64 reads of that descriptor must
/// not be prefiltered away.
#[inline(always)]
fn ia32_exit_uncaptured(nr: u64, regs: u64, ret: i64) {
    if ia32_is_open(nr) || ia32_receives_descriptors(nr, regs) {
        holders::acquired_descriptors(ret);
    }
}

#[inline(always)]
fn ia32_exit(nr: u64, regs: u64, ret: i64) {
    match nr {
        ia32::PROCESS_VM_READV if ret > 0 => process::on_memory_access(
            reg32(regs, &OFF_REGS_BX) as u32,
            memory_method::PROCESS_VM_READV,
            ret as u64,
        ),
        ia32::PTRACE if ret == 0 => {
            ptrace_exit(reg32(regs, &OFF_REGS_BX), reg32(regs, &OFF_REGS_CX), 4)
        }
        _ if ia32_is_open(nr) => file::open_exit(ret, OpenCall::Plain),
        ia32::READ
        | ia32::READV
        | ia32::PREAD64
        | ia32::PREADV
        | ia32::PREADV2
        | ia32::SENDFILE
        | ia32::SENDFILE64
        | ia32::SPLICE
        | ia32::COPY_FILE_RANGE
        | ia32::IOCTL => read::exit(ret),
        ia32::OLD_MMAP | ia32::MMAP2 => file::mmap_exit(ret),
        _ if ia32_receives_descriptors(nr, regs) => holders::acquired_descriptors(ret),
        _ => {}
    }
}
