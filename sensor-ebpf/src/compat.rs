//! 32-bit (ia32) syscalls on x86-64. The kernel fires no
//! `syscalls/sys_*` tracepoint for a syscall made through `int $0x80` (or
//! from a 32-bit binary), so without this module such an open, read or
//! mmap of a watched file is invisible. Raw `sys_enter`/`sys_exit` see
//! every syscall; these programs return at once unless the current one is
//! a compat syscall, then decode its ia32 number and registers and hand
//! over to the same logic as the native hooks.

use aya_ebpf::{Global, helpers::bpf_probe_read_user, programs::RawTracePointContext};

use crate::{
    file::{self, MmapArgs},
    kernel::{
        OFF_REGS_BP, OFF_REGS_BX, OFF_REGS_CX, OFF_REGS_DI, OFF_REGS_DX, OFF_REGS_ORIG_AX,
        OFF_REGS_SI, OFF_TASK_TI_STATUS, current_task, read_at,
    },
    read::{self, Offset},
};

/// Non-zero when the agent found the offsets below in the kernel's BTF.
#[unsafe(no_mangle)]
pub static COMPAT_ENABLED: Global<u64> = Global::new(0);

/// `thread_info.status` bit the x86 entry code sets for compat syscalls.
const TS_COMPAT: u32 = 0x0002;

// ia32 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl).
const NR_READ: u64 = 3;
const NR_OPEN: u64 = 5;
const NR_CLOSE: u64 = 6;
const NR_CREAT: u64 = 8;
const NR_OLD_MMAP: u64 = 90;
const NR_READV: u64 = 145;
const NR_PREAD64: u64 = 180;
const NR_MMAP2: u64 = 192;
const NR_OPENAT: u64 = 295;
const NR_PREADV: u64 = 333;
const NR_OPEN_BY_HANDLE_AT: u64 = 342;
const NR_PREADV2: u64 = 378;
const NR_OPENAT2: u64 = 437;

/// Whether the current syscall is a compat one.
#[inline(always)]
pub fn in_compat_syscall() -> bool {
    if COMPAT_ENABLED.load() == 0 {
        return false;
    }
    read_at::<u32>(current_task(), &OFF_TASK_TI_STATUS).is_some_and(|s| s & TS_COMPAT != 0)
}

/// A 32-bit argument register of the syscall.
#[inline(always)]
fn reg(regs: u64, offset: &Global<u64>) -> u64 {
    read_at::<u64>(regs, offset).map_or(0, |v| v & 0xffff_ffff)
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

/// Raw `sys_enter(struct pt_regs *regs, long id)`.
pub fn on_sys_enter(ctx: &RawTracePointContext) {
    let nr: u64 = ctx.arg(1);
    // Most syscalls are not one of ours under either ABI's numbering:
    // reject them before paying for the compat check's kernel read.
    if !matches!(
        nr,
        NR_READ
            | NR_READV
            | NR_PREAD64
            | NR_PREADV
            | NR_PREADV2
            | NR_CLOSE
            | NR_MMAP2
            | NR_OLD_MMAP
    ) || !in_compat_syscall()
    {
        return;
    }
    let regs: u64 = ctx.arg(0);
    match nr {
        NR_READ | NR_READV => read::enter(reg(regs, &OFF_REGS_BX), Offset::Position),
        // pread64(fd, buf, count, pos_lo, pos_hi), preadv(fd, vec, vlen, pos_lo, pos_hi)
        NR_PREAD64 | NR_PREADV => read::enter(
            reg(regs, &OFF_REGS_BX),
            Offset::At(split_offset(
                reg(regs, &OFF_REGS_SI),
                reg(regs, &OFF_REGS_DI),
            )),
        ),
        NR_PREADV2 => {
            let (low, high) = (reg(regs, &OFF_REGS_SI), reg(regs, &OFF_REGS_DI));
            let offset = if low == 0xffff_ffff && high == 0xffff_ffff {
                Offset::Position
            } else {
                Offset::At(split_offset(low, high))
            };
            read::enter(reg(regs, &OFF_REGS_BX), offset);
        }
        NR_CLOSE => file::close_enter(reg(regs, &OFF_REGS_BX)),
        // mmap2(addr, len, prot, flags, fd, pgoff)
        NR_MMAP2 => file::mmap_enter(MmapArgs {
            len: reg(regs, &OFF_REGS_CX),
            prot: reg(regs, &OFF_REGS_DX),
            flags: reg(regs, &OFF_REGS_SI),
            fd: reg(regs, &OFF_REGS_DI),
            offset: reg(regs, &OFF_REGS_BP) << 12,
        }),
        NR_OLD_MMAP => {
            let block = reg(regs, &OFF_REGS_BX);
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

/// Raw `sys_exit(struct pt_regs *regs, long ret)`.
pub fn on_sys_exit(ctx: &RawTracePointContext) {
    if !in_compat_syscall() {
        return;
    }
    let regs: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    match reg(regs, &OFF_REGS_ORIG_AX) {
        NR_OPEN | NR_CREAT | NR_OPENAT | NR_OPENAT2 | NR_OPEN_BY_HANDLE_AT => file::open_exit(ret),
        NR_READ | NR_READV | NR_PREAD64 | NR_PREADV | NR_PREADV2 => read::exit(ret),
        NR_OLD_MMAP | NR_MMAP2 => file::mmap_exit(ret),
        _ => {}
    }
}
