//! The holder prefilter: which processes may hold a descriptor of a
//! watched file. Every `read`, `pread64`, `readv`, `mmap` and `close` on the
//! host would otherwise pay the descriptor walk (`kernel::watched_fd`, a
//! string of kernel reads); a process that cannot hold a watched descriptor
//! pays two array loads instead, which the verifier inlines (a hash lookup
//! here cost ~60 ns per syscall).
//!
//! A process becomes a holder when it opens a watched file, when its
//! parent was one at fork, when it may have received descriptors
//! (`recvmsg`/`recvmmsg`, `pidfd_getfd`, `fanotify_init`), or when the
//! agent found a watched descriptor in its `/proc/PID/fd` (at start-up, and
//! after files join the watch set). It stops being one at exit.
//!
//! Two arrays indexed by tgid, so that each has one kind of writer:
//! `HOLDERS_KERNEL` holds a byte per process, set and cleared here with
//! single-byte stores (no read-modify-write to race between CPUs);
//! `HOLDERS_AGENT` a bit per process, written only by the agent (and never
//! cleared while it runs: a stale bit costs a reused pid the walk). Every
//! uncertainty errs towards "holder": a tgid beyond the arrays (pid_max
//! raised after start, counted), the bypass flag the agent holds until it
//! has seeded the arrays, and the agent's setting.

use aya_ebpf::{Global, helpers::bpf_get_current_pid_tgid};
use sensor_common::{counter, holder_mark};

use crate::maps::{HOLDERS_AGENT, HOLDERS_BYPASS, HOLDERS_KERNEL, count};

/// Non-zero: the prefilter is on (`kernel.holder_prefilter`).
#[unsafe(no_mangle)]
pub static HOLDER_PREFILTER: Global<u64> = Global::new(0);

fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Whether the current process may hold a watched descriptor.
#[inline(always)]
pub fn current_may_hold() -> bool {
    prefilter_off() || is_holder(current_tgid())
}

/// Whether `tgid` may hold a watched descriptor (for fork: the parent).
#[inline(always)]
pub fn may_hold(tgid: u32) -> bool {
    prefilter_off() || is_holder(tgid)
}

/// The prefilter lets everyone through: turned off, or held off by the
/// agent while it seeds the arrays from `/proc`.
#[inline(always)]
fn prefilter_off() -> bool {
    HOLDER_PREFILTER.load() == 0 || HOLDERS_BYPASS.get(0).is_some_and(|&b| b != 0)
}

/// Whether `tgid` is in either holder array. A tgid beyond them is one.
#[inline(always)]
fn is_holder(tgid: u32) -> bool {
    let Some(&bytes) = HOLDERS_KERNEL.get(tgid / 8) else {
        return true;
    };
    if (bytes >> ((tgid % 8) * 8)) & 0xff != 0 {
        return true;
    }
    HOLDERS_AGENT
        .get(tgid / 64)
        .is_none_or(|&bits| (bits >> (tgid % 64)) & 1 != 0)
}

/// Sets `tgid`'s byte in `HOLDERS_KERNEL`; false when it is beyond the
/// array.
#[inline(always)]
fn set_kernel_byte(tgid: u32, value: u8) -> bool {
    let Some(word) = HOLDERS_KERNEL.get_ptr_mut(tgid / 8) else {
        return false;
    };
    // SAFETY: the array slot is valid for the program's run and the byte
    // index is below 8, inside the 8-byte value.
    unsafe { *(word as *mut u8).add((tgid % 8) as usize) = value };
    true
}

/// Makes `tgid` a holder; a tgid beyond the array is one anyway (counted).
#[inline(always)]
pub fn mark(tgid: u32) {
    if HOLDER_PREFILTER.load() != 0
        && kernel_byte(tgid) == 0
        && !set_kernel_byte(tgid, holder_mark::HOLDER)
    {
        count(counter::HOLDERS_FULL);
    }
}

/// Makes the current process a holder.
#[inline(always)]
pub fn mark_current() {
    mark(current_tgid());
}

/// `tgid`'s byte in `HOLDERS_KERNEL` (0 beyond the array).
#[inline(always)]
fn kernel_byte(tgid: u32) -> u8 {
    HOLDERS_KERNEL
        .get(tgid / 8)
        .map_or(0, |&bytes| ((bytes >> ((tgid % 8) * 8)) & 0xff) as u8)
}

/// The current process has read (mapped, copied) watched bytes: its
/// writes and sends are followed from now on, unless it serves models.
/// Set whether or not the prefilter is on.
#[inline(always)]
pub fn taint_current() {
    let tgid = current_tgid();
    if kernel_byte(tgid) < holder_mark::TAINTED {
        set_kernel_byte(tgid, holder_mark::TAINTED);
    }
}

/// The current process opened a GPU device: it serves models, and its
/// writes and sends are its job, not followed.
#[inline(always)]
pub fn mark_serving_current() {
    set_kernel_byte(current_tgid(), holder_mark::SERVING);
}

/// Whether `tgid` is tainted.
#[inline(always)]
pub fn tainted(tgid: u32) -> bool {
    kernel_byte(tgid) == holder_mark::TAINTED
}

/// Whether the current process's writes and sends are followed (one array
/// load: every write on the host pays it).
#[inline(always)]
pub fn current_tainted() -> bool {
    tainted(current_tgid())
}

/// A forked child of a tainted process is tainted too (`tar` reads, its
/// `gzip` child writes).
#[inline(always)]
pub fn inherit_taint(parent_tgid: u32, child_tgid: u32) {
    if kernel_byte(parent_tgid) == holder_mark::TAINTED {
        set_kernel_byte(child_tgid, holder_mark::TAINTED);
    }
}

/// Forgets an exited process. (The agent never clears its bits while it
/// runs: clearing on the exit record could race a reuse of the pid that a
/// `/proc` scan had just marked; a stale bit only costs the full check.)
#[inline(always)]
pub fn forget(tgid: u32) {
    set_kernel_byte(tgid, 0);
}

/// Exit of `recvmsg`, `recvmmsg`, `pidfd_getfd` or `fanotify_init` (and,
/// with ia32 capture off, of an ia32 open): the process may now hold
/// descriptors the sensor did not see it open. Any success counts; telling
/// SCM_RIGHTS from other control data would need the caller's buffers.
#[inline(always)]
pub fn acquired_descriptors(ret: i64) {
    if ret >= 0 {
        mark_current();
    }
}
