//! Process lifecycle records: exec, fork (processes, not threads) and
//! exit, from plain values any tier can supply (a file name's address, the
//! child task). These records let the agent keep a process table without
//! racing `/proc` for short-lived processes such as `cat`. They are submitted without waking
//! the agent (`emit::BPF_RB_NO_WAKEUP`): every process on the host makes
//! them, and the ring keeps them ahead of any file record of the same
//! process, which does wake it.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf,
};
use sensor_common::{
    EXEC_ARGS_LEN, ExecEvent, ExitEvent, ExitKey, ForkEvent, MemoryEvent, exit_flag, kind,
};

use crate::{
    emit::{BPF_RB_NO_WAKEUP, fill_header, reserve},
    holders,
    kernel::{
        OFF_MM_ARG_END, OFF_MM_ARG_START, OFF_SIGNAL_LIVE, OFF_TASK_EXIT_CODE, OFF_TASK_FILES,
        OFF_TASK_MM, OFF_TASK_PID, OFF_TASK_SIGNAL, OFF_TASK_START_TIME, OFF_TASK_TGID,
        current_exe, current_task, read_at,
    },
    maps::{EXITED, READERS},
};

const BPF_NOEXIST: u64 = 1;

/// The current task has exec'd the file named by the kernel string at
/// `filename`.
pub fn on_exec(filename: usize) {
    // A new image: the policy's verdicts on the old one no longer hold.
    crate::enforce::on_exec((bpf_get_current_pid_tgid() >> 32) as u32);
    let Some(mut entry) = reserve::<ExecEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for an ExecEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXEC, size_of::<ExecEvent>());
    let task = current_task();
    ev.start_ns = read_at::<u64>(task, &OFF_TASK_START_TIME).unwrap_or(0);
    ev.exe = current_exe().unwrap_or_default();
    ev._pad = 0;

    // SAFETY: bpf_probe_read_kernel_str checks the address.
    ev.filename_len =
        match unsafe { bpf_probe_read_kernel_str_bytes(filename as *const u8, &mut ev.filename) } {
            Ok(s) => s.len() as u32,
            Err(_) => 0,
        };

    // The new image's argv sits in its own memory between arg_start and
    // arg_end; copy a bounded prefix.
    ev.args_len = 0;
    ev.args_truncated = 0;
    if let Some(mm) = read_at::<u64>(task, &OFF_TASK_MM) {
        let start = read_at::<u64>(mm, &OFF_MM_ARG_START).unwrap_or(0);
        let end = read_at::<u64>(mm, &OFF_MM_ARG_END).unwrap_or(0);
        if start != 0 && end > start {
            let mut len = (end - start) as usize;
            if len > EXEC_ARGS_LEN {
                len = EXEC_ARGS_LEN;
                ev.args_truncated = 1;
            }
            if let Some(dst) = ev.args.get_mut(..len) {
                // SAFETY: bpf_probe_read_user checks the address.
                if unsafe { bpf_probe_read_user_buf(start as *const u8, dst) }.is_ok() {
                    ev.args_len = len as u32;
                }
            }
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP);
}

/// The current process read another's memory with `process_vm_readv` or
/// attached to it with ptrace (`method`, `sensor_common::memory_method`).
pub fn on_memory_access(target: u32, method: u32, bytes: u64) {
    let Some(mut entry) = reserve::<MemoryEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a MemoryEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::MEMORY, size_of::<MemoryEvent>());
    ev.target = target;
    ev.method = method;
    ev.bytes = bytes;
    ev.calls = 1;
    ev.first_ns = ev.header.boot_ns;
    ev.reason = 0;
    ev._pad = 0;
    entry.submit(0);
}

/// The current task has forked `child` (a `struct task_struct *`); a new
/// thread is told apart from a new process by the child's pid and tgid.
pub fn on_fork(child: u64) {
    let Some(child_tgid) = read_at::<u32>(child, &OFF_TASK_TGID) else {
        return;
    };
    let Some(child_pid) = read_at::<u32>(child, &OFF_TASK_PID) else {
        return;
    };
    if child_pid != child_tgid {
        return; // a new thread, not a new process
    }
    // The child inherits the parent's descriptors. A child that shares the
    // parent's table (clone with CLONE_FILES but not CLONE_THREAD) sees
    // every descriptor either opens later: both become holders now.
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    crate::enforce::inherit(parent_tgid, child_tgid);
    let shared_table = read_at::<u64>(child, &OFF_TASK_FILES)
        .is_some_and(|f| Some(f) == read_at::<u64>(current_task(), &OFF_TASK_FILES));
    if shared_table {
        holders::mark(parent_tgid);
        holders::mark(child_tgid);
    } else if holders::may_hold(parent_tgid) {
        // Including while the agent seeds from /proc: a child forked after
        // the scan passed its parent must not start unmarked.
        holders::mark(child_tgid);
    }
    holders::inherit_taint(parent_tgid, child_tgid);
    let Some(mut entry) = reserve::<ForkEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a ForkEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::FORK, size_of::<ForkEvent>());
    ev.child_tgid = child_tgid;
    ev._pad = 0;
    ev.child_start_ns = read_at::<u64>(child, &OFF_TASK_START_TIME).unwrap_or(0);
    entry.submit(BPF_RB_NO_WAKEUP);
}

/// The current thread is exiting, reported once per process: when its last
/// thread exits. The caller runs after `do_exit` has decremented
/// `signal->live` (as `sched_process_exit` does), so zero means the whole
/// group is dead (a main thread that called `pthread_exit` while workers go
/// on is not the end).
pub fn on_exit() {
    let task = current_task();
    let live =
        read_at::<u64>(task, &OFF_TASK_SIGNAL).and_then(|s| read_at::<i32>(s, &OFF_SIGNAL_LIVE));
    let group_dead = match live {
        Some(live) => live == 0,
        None => {
            let pid_tgid = bpf_get_current_pid_tgid();
            pid_tgid as u32 == (pid_tgid >> 32) as u32
        }
    };
    if !group_dead {
        return;
    }
    // Threads of one group exit concurrently and more than one can find
    // `live` at zero: the first to claim the exit reports it.
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let claim = ExitKey {
        tgid,
        _pad: 0,
        start_ns: read_at::<u64>(task, &OFF_TASK_START_TIME).unwrap_or(0),
    };
    if EXITED.insert(&claim, &1, BPF_NOEXIST).is_err() {
        return;
    }
    // A reused pid is followed again (only a tainted process can have
    // been stopped following: others pay no map delete).
    if holders::tainted(tgid) {
        let _ = crate::maps::SENDS_OFF.remove(&tgid);
    }
    holders::forget(tgid);
    crate::proc_mem::forget(tgid);
    crate::enforce::on_exit(tgid);
    // SAFETY: the value is only tested for presence.
    let had_reads = unsafe { READERS.get(&tgid) }.is_some();
    if had_reads {
        let _ = READERS.remove(&tgid);
    }
    let Some(mut entry) = reserve::<ExitEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for an ExitEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXIT, size_of::<ExitEvent>());
    ev.exit_code = read_at::<u32>(task, &OFF_TASK_EXIT_CODE).unwrap_or(0);
    ev.flags = if had_reads { exit_flag::HAD_READS } else { 0 };
    entry.submit(BPF_RB_NO_WAKEUP);
}
