//! The policy's kill fallback, tier-neutral: an access to a policy file
//! through a descriptor no deny mechanism judged (passed in over a socket,
//! inherited, opened before the policy) is decided here, from the tables
//! the agent compiled (`sensor_common::enforce`), and a stopped process is
//! sent `SIGKILL` before the access is carried out: the signal is pending
//! when the syscall starts its work, so the page cache copy and the write
//! paths give up (`fatal_signal_pending`) and the process never returns to
//! user space with the bytes.
//!
//! A process's verdict row is set here at exec from its executable where
//! that alone decides it (`EXE_VERDICTS`), copied from its parent at fork,
//! and written by the agent: at exec and GPU open, at policy load, and by
//! the fanotify thread at each open it answers. A process without a row of
//! the active generation (or whose credentials changed since) gets the
//! slot's `unjudged_stop`: every weight set in which any rule or the
//! default stops someone (fail closed).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_send_signal},
    maps::HashMap,
};
use sensor_common::{
    EnforceEvent, ProcessVerdict, counter,
    enforce::{self, ANY_OTHER_EXE, flag, slot_flag},
    kind,
};

use crate::{
    emit::{fill_header, reserve},
    kernel::{Watched, current_exe, weight_file},
    maps::{
        EXE_VERDICTS, POLICY_ACTIVE, POLICY_FILES, POLICY_SLOTS, VERDICTS_0, VERDICTS_1, count,
    },
};

const SIGKILL: u32 = 9;
const EPERM: i32 = 1;

/// What the active policy says of `ops` (a bit per
/// `sensor_common::enforce::op`) on a watched file by the current process.
struct Stop {
    /// The weight sets whose verdict stops it.
    sets: u64,
    /// The operation that stopped (the first of `ops` that did).
    op: u32,
    generation: u32,
    /// `enforce::flag::UNJUDGED` or 0.
    flags: u32,
    /// The verdict is `kill` (a judged process only).
    kill: bool,
    /// The slot's `slot_flag` bits.
    slot_flags: u32,
}

/// The active policy's decision on `ops` for `w`; `None` when it allows.
#[inline(always)]
fn decide(ops: u32, w: &Watched) -> Option<Stop> {
    let active = *POLICY_ACTIVE.get(0)?;
    if active == 0 {
        return None;
    }
    let slot = (active & 1) as usize;
    // SAFETY: the value is copied out at once.
    let file = (unsafe { POLICY_FILES.get(&w.key) }).copied()?;
    let sets = file.sets.get(slot).copied().unwrap_or(0);
    if sets == 0 {
        return None;
    }
    let settings = POLICY_SLOTS
        .get(slot as u32)
        .copied()
        .filter(|s| s.generation == active);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    let judged = verdict(slot, tgid).filter(|v| {
        v.generation == active && v.uid == uid_gid as u32 && v.gid == (uid_gid >> 32) as u32
    });
    let (stops, kills, flags) = match judged {
        Some(v) => (v.stop, v.kill, 0),
        // A slot that does not match its generation: fail closed.
        None => (
            settings.map_or([sets; enforce::op::COUNT], |s| s.unjudged_stop),
            [0; enforce::op::COUNT],
            flag::UNJUDGED,
        ),
    };
    for op in 0..enforce::op::COUNT as u32 {
        if ops & (1 << op) == 0 {
            continue;
        }
        let hit = sets & stops.get(op as usize).copied().unwrap_or(0);
        if hit != 0 {
            return Some(Stop {
                sets: hit,
                op,
                generation: active,
                flags,
                kill: hit & kills.get(op as usize).copied().unwrap_or(0) != 0,
                slot_flags: settings.map_or(0, |s| s.flags),
            });
        }
    }
    None
}

/// Whether the policy stops `op` (`sensor_common::enforce::op`) on the
/// watched file `w` by the current process, in a syscall hook; the caller
/// then skips the access's accounting (it moves no bytes). Where BPF LSM
/// decides, its security hook refuses the access in a moment (and records
/// it); elsewhere the process has been sent `SIGKILL` here and the
/// decision recorded.
#[inline(always)]
pub fn stopped(op: u32, w: &Watched, fd: i32) -> bool {
    stopped_any(1 << op, w, fd)
}

/// [`stopped`] for an access that is several operations at once (a bit
/// per `sensor_common::enforce::op`): a copy's source is `READ` and
/// `COPY`. A `COPY` verdict is carried out here even where BPF LSM
/// decides: its hooks cannot tell a copy from a read.
#[inline(always)]
pub fn stopped_any(ops: u32, w: &Watched, fd: i32) -> bool {
    let Some(stop) = decide(ops, w) else {
        return false;
    };
    if stop.slot_flags & slot_flag::LSM_DECIDES != 0 && stop.op != enforce::op::COPY {
        return true;
    }
    let mut flags = stop.flags;
    // SAFETY: the helper signals the current process; no preconditions.
    let killed = unsafe { bpf_send_signal(SIGKILL) } == 0;
    if !killed {
        count(counter::KILL_FAILED);
        flags |= flag::KILL_FAILED;
    }
    report(w, fd, stop.op, stop.sets, stop.generation, flags);
    killed
}

/// A BPF LSM hook's verdict on `ops` for the file at `file_ptr` by the
/// current process: 0, or `-EPERM` (recorded). With `defer_unjudged`, a
/// process the tables have no row for is left to the next decider (the
/// fanotify thread answers opens from `/proc`).
#[inline(always)]
pub fn lsm_check(file_ptr: u64, ops: u32, defer_unjudged: bool) -> i32 {
    if !active() {
        return 0;
    }
    let Some(w) = weight_file(file_ptr) else {
        return 0;
    };
    let Some(stop) = decide(ops, &w) else {
        return 0;
    };
    if defer_unjudged && stop.flags & flag::UNJUDGED != 0 {
        return 0;
    }
    let mut flags = stop.flags | flag::DENIED;
    if stop.kill {
        // SAFETY: the helper signals the current process; no preconditions.
        if unsafe { bpf_send_signal(SIGKILL) } == 0 {
            flags |= flag::KILLED;
        } else {
            count(counter::KILL_FAILED);
        }
    }
    report(&w, -1, stop.op, stop.sets, stop.generation, flags);
    -EPERM
}

/// The current process's verdict in `slot`.
#[inline(always)]
fn verdict(slot: usize, tgid: u32) -> Option<ProcessVerdict> {
    // SAFETY: values are copied out at once.
    unsafe {
        if slot == 0 {
            VERDICTS_0.get(&tgid).copied()
        } else {
            VERDICTS_1.get(&tgid).copied()
        }
    }
}

#[inline(always)]
fn report(w: &Watched, fd: i32, op: u32, sets: u64, generation: u32, flags: u32) {
    let Some(mut entry) = reserve::<EnforceEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for an EnforceEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::ENFORCE, size_of::<EnforceEvent>());
    ev.file = w.key;
    ev.file_size = w.size;
    ev.sets = sets;
    ev.fd = fd;
    ev.op = op;
    ev.generation = generation;
    ev.flags = flags;
    entry.submit(0);
}

/// A forked child starts with its parent's verdicts (same executable and
/// credentials); the agent judges it again when it sees the fork. A stale
/// entry of a reused tgid is replaced or removed.
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    if !active() {
        return;
    }
    inherit_in(&VERDICTS_0, parent, child);
    inherit_in(&VERDICTS_1, parent, child);
}

#[inline(always)]
fn inherit_in(map: &HashMap<u32, ProcessVerdict>, parent: u32, child: u32) {
    // SAFETY: the value is copied out at once.
    match unsafe { map.get(&parent) }.copied() {
        Some(v) => {
            if map.insert(&child, &v, 0).is_err() {
                count(counter::VERDICTS_FULL);
            }
        }
        None => {
            let _ = map.remove(&child);
        }
    }
}

/// The current process exec'd: the old image's rows go; where the new
/// executable alone decides the verdict, its row comes in at once (no
/// window in which a freshly exec'd process is unjudged).
#[inline(always)]
pub fn on_exec(tgid: u32) {
    if !active() {
        return;
    }
    forget(tgid);
    let Some(exe) = current_exe() else { return };
    // SAFETY: values are copied out at once.
    let entry = unsafe {
        EXE_VERDICTS
            .get(&exe)
            .or_else(|| EXE_VERDICTS.get(&ANY_OTHER_EXE))
    };
    let Some(entry) = entry.copied() else { return };
    let uid_gid = bpf_get_current_uid_gid();
    for (slot, row) in entry.slots.iter().enumerate() {
        if row.generation == 0 {
            continue;
        }
        let mut row = *row;
        row.uid = uid_gid as u32;
        row.gid = (uid_gid >> 32) as u32;
        let map = if slot == 0 { &VERDICTS_0 } else { &VERDICTS_1 };
        if map.insert(&tgid, &row, 0).is_err() {
            count(counter::VERDICTS_FULL);
        }
    }
}

/// Whether a policy is enforced in the kernel. Without one, exec, fork
/// and exit leave the verdict maps alone: rows left from an earlier
/// generation never count (a new one clears its slot first, and a row is
/// valid only for the active generation).
#[inline(always)]
pub fn active() -> bool {
    POLICY_ACTIVE
        .get(0)
        .is_some_and(|&generation| generation != 0)
}

/// A process exited: its verdicts go with it (the agent also sweeps rows
/// of gone processes).
#[inline(always)]
pub fn on_exit(tgid: u32) {
    if active() {
        forget(tgid);
    }
}

/// The process exec'd a new image or exited: its verdicts no longer hold.
#[inline(always)]
fn forget(tgid: u32) {
    let _ = VERDICTS_0.remove(&tgid);
    let _ = VERDICTS_1.remove(&tgid);
}
