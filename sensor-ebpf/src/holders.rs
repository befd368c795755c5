//! The holder prefilter: which processes may hold a descriptor of a
//! watched file. Every `read`, `pread64`, `readv`, `mmap` and `close` on the
//! host would otherwise pay the descriptor walk (`kernel::watched_fd`, seven
//! kernel reads); a process that cannot hold a watched descriptor pays one
//! hash lookup instead.
//!
//! A process becomes a holder when it opens a watched file, when its
//! parent was one at fork, when it may have received descriptors
//! (`recvmsg`/`recvmmsg`, `pidfd_getfd`, `fanotify_init`), or when the
//! agent found a watched descriptor in its `/proc/PID/fd` (at start-up, and
//! after files join the watch set). It stops being one at exit. Every
//! uncertainty errs towards "holder": a full map turns the prefilter off
//! (counted), and so does the agent's setting.

use aya_ebpf::{Global, helpers::bpf_get_current_pid_tgid};
use sensor_common::counter;

use crate::maps::{HOLDERS, HOLDERS_OVERFLOW, count};

/// Non-zero: the prefilter is on (`kernel.holder_prefilter`).
#[unsafe(no_mangle)]
pub static HOLDER_PREFILTER: Global<u64> = Global::new(0);

const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Whether the current process may hold a watched descriptor.
#[inline(always)]
pub fn current_may_hold() -> bool {
    if HOLDER_PREFILTER.load() == 0 {
        return true;
    }
    if HOLDERS_OVERFLOW.get(0).is_some_and(|&o| o != 0) {
        return true;
    }
    // SAFETY: only presence is tested.
    unsafe { HOLDERS.get(&current_tgid()) }.is_some()
}

/// Whether `tgid` is a holder (for fork: the parent).
#[inline(always)]
pub fn is_holder(tgid: u32) -> bool {
    // SAFETY: only presence is tested.
    unsafe { HOLDERS.get(&tgid) }.is_some()
}

/// Makes `tgid` a holder; a full map turns the prefilter off.
#[inline(always)]
pub fn mark(tgid: u32) {
    if HOLDER_PREFILTER.load() == 0 {
        return;
    }
    if let Err(err) = HOLDERS.insert(&tgid, &1, BPF_NOEXIST)
        && err != -EEXIST
    {
        count(counter::HOLDERS_FULL);
        if let Some(flag) = HOLDERS_OVERFLOW.get_ptr_mut(0) {
            // SAFETY: the array slot is valid for the program's run.
            unsafe { *flag = 1 };
        }
    }
}

/// Makes the current process a holder.
#[inline(always)]
pub fn mark_current() {
    mark(current_tgid());
}

/// Forgets an exited process.
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = HOLDERS.remove(&tgid);
}

/// Exit of `recvmsg`, `recvmmsg`, `pidfd_getfd` or `fanotify_init`: the
/// process may now hold descriptors it did not open. Any success counts;
/// telling SCM_RIGHTS from other control data would need the caller's
/// buffers.
#[inline(always)]
pub fn fd_receiving_exit(ret: i64) {
    if ret >= 0 {
        mark_current();
    }
}
