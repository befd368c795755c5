//! Filling the common record header and reserving ring buffer space. Every
//! failed reservation is counted: the agent reports the counter.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    },
    maps::ring_buf::RingBufEntry,
};
use sensor_common::{EventHeader, counter, header_flag};

use crate::{
    kernel::{current_task, in_compat_syscall, parent_tgid},
    maps::{EVENTS, count},
};

/// Boot-based time in ns: the clock of `task_struct::start_boottime`, which
/// the agent turns into wall-clock time.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_boot_ns() }
}

#[inline(always)]
fn cgroup_id() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_current_cgroup_id() }
}

/// Fills `header` for the current task.
#[inline(always)]
pub fn fill_header(header: &mut EventHeader, kind: u32, size: usize) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = kind;
    header.size = size as u32;
    header.boot_ns = now_ns();
    header.tgid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.ppid = parent_tgid(current_task());
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.flags = if in_compat_syscall() {
        header_flag::COMPAT_SYSCALL
    } else {
        0
    };
    header.cgroup_id = cgroup_id();
    header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// `bpf_ringbuf_submit` flag: do not wake the reader. A wakeup costs the
/// submitting task an irq_work and the reader an IPI, 15-20 us a record on
/// a VM when the agent is idle (bpf_stats: exec 22.5 -> 1.5 us); records
/// that can wait for the agent's next poll (at most 100 ms) use this.
pub const BPF_RB_NO_WAKEUP: u64 = 1;

/// Reserves a `T` in the ring buffer, counting a failure.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count(counter::RINGBUF_FULL);
    }
    entry
}
