//! The saved user registers (`struct pt_regs`) that the `sys_enter` and
//! `sys_exit` BTF tracepoints hand over: where each register sits (offsets
//! from the running kernel's BTF, set by the agent as load-time globals)
//! and how a syscall argument is read from one. x86-64 layout; ia32
//! arguments use the low halves of the same registers.

use aya_ebpf::Global;

use crate::kernel::{btf_load, offsets};

offsets!(
    OFF_REGS_BX,
    OFF_REGS_CX,
    OFF_REGS_DX,
    OFF_REGS_SI,
    OFF_REGS_DI,
    OFF_REGS_BP,
    OFF_REGS_R8,
    OFF_REGS_R9,
    OFF_REGS_R10,
    OFF_REGS_ORIG_AX,
);

/// A saved register: `regs` is the tracepoint's trusted `pt_regs`.
#[inline(always)]
pub fn reg(regs: u64, offset: &Global<u64>) -> u64 {
    btf_load(regs, offset)
}

/// An ia32 argument: the low half of the register.
#[inline(always)]
pub fn reg32(regs: u64, offset: &Global<u64>) -> u64 {
    reg(regs, offset) & 0xffff_ffff
}

/// A descriptor argument. The kernel takes descriptors as `unsigned int`
/// and ignores the register's upper half; so must we, or a caller could
/// hide a read behind `fd | 1 << 32`.
#[inline(always)]
pub fn fd_reg(regs: u64, offset: &Global<u64>) -> u64 {
    reg32(regs, offset)
}
