//! Reading another process's memory through its `/proc/PID/mem` (or
//! `/proc/PID/task/TID/mem`) and with `PTRACE_PEEKTEXT`/`PTRACE_PEEKDATA`.
//! The open is a `memory_read` record at once (`PROC_MEM_OPEN`); the
//! reads and peeks are counted per (reader, target, method) in `MEM_AGG`
//! and leave the kernel as one record per flush: when the descriptor is
//! closed or the tracer detaches (here), when the flush interval has passed
//! (here), and from the agent when the reader exits, goes idle, or the
//! sensor stops. Every process is followed, whatever its target: the agent
//! keeps the records whose target holds weight files.
//!
//! A memory file is told apart at its open (every open of an unwatched
//! file pays one more kernel read: its superblock's magic) by the procfs
//! magic, its name `mem` and its parent directory's name, the target's
//! pid. The opener becomes a holder (its reads pass the holder prefilter)
//! and a *memory reader* (`MEM_READERS`, a byte per tgid): only a memory
//! reader's reads of unwatched files look for a memory file again, so no
//! other process pays anything for its reads. The reader of a followed
//! pipe is marked the same way, for its `read`/`pread64` exits.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel};
use sensor_common::{
    MemAgg, MemKey, MemoryEvent, Pending, counter, flush_reason, kind, memory_method, pending_kind,
};

use crate::{
    emit::{fill_header, now_ns, reserve},
    holders,
    kernel::{
        OFF_DENTRY_NAME, OFF_DENTRY_PARENT, OFF_FILE_INODE, OFF_FILE_PATH_DENTRY, OFF_INODE_SB,
        OFF_SB_MAGIC, file_of_fd, read_at,
    },
    maps::{MEM_AGG, MEM_READERS, PENDING, count},
    read::{READ_FLUSH_INTERVAL_NS, mark_reader},
};

/// `PROC_SUPER_MAGIC`.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The pid (or thread id) whose memory the file at `file_ptr` (on the
/// superblock `sb`) is, if it is a procfs `mem` file.
#[inline(always)]
fn target_of(file_ptr: u64, sb: u64) -> Option<u32> {
    if read_at::<u64>(sb, &OFF_SB_MAGIC)? != PROC_SUPER_MAGIC {
        return None;
    }
    let dentry = read_at::<u64>(file_ptr, &OFF_FILE_PATH_DENTRY)?;
    let name = read_at::<u64>(dentry, &OFF_DENTRY_NAME)?;
    // SAFETY: bpf_probe_read_kernel checks the address.
    let name = unsafe { bpf_probe_read_kernel(name as *const [u8; 4]) }.ok()?;
    if name != *b"mem\0" {
        return None;
    }
    let parent = read_at::<u64>(dentry, &OFF_DENTRY_PARENT)?;
    let digits = read_at::<u64>(parent, &OFF_DENTRY_NAME)?;
    // Short names live inline in the dentry (40 bytes or more), so eight
    // bytes are there to read; pids have at most seven digits.
    // SAFETY: bpf_probe_read_kernel checks the address.
    let digits = unsafe { bpf_probe_read_kernel(digits as *const [u8; 8]) }.ok()?;
    let mut pid: u32 = 0;
    let mut len = 0;
    for b in digits {
        if b == 0 {
            break;
        }
        if !b.is_ascii_digit() {
            return None;
        }
        pid = pid.wrapping_mul(10).wrapping_add(u32::from(b - b'0'));
        len += 1;
    }
    (len > 0 && pid != 0).then_some(pid)
}

/// The target of descriptor `fd`'s file, if it is a memory file.
#[inline(always)]
fn target_of_fd(fd: u64) -> Option<u32> {
    let file_ptr = file_of_fd(fd)?;
    let inode = read_at::<u64>(file_ptr, &OFF_FILE_INODE)?;
    target_of(file_ptr, read_at::<u64>(inode, &OFF_INODE_SB)?)
}

/// Whether the current process opened a memory file (a tgid beyond the
/// array counts as one: it pays the check, it is never missed).
#[inline(always)]
pub fn current_reader() -> bool {
    let tgid = current_tgid();
    MEM_READERS
        .get(tgid / 8)
        .is_none_or(|&bytes| (bytes >> ((tgid % 8) * 8)) & 0xff != 0)
}

fn set_reader_byte(tgid: u32, value: u8) {
    if let Some(word) = MEM_READERS.get_ptr_mut(tgid / 8) {
        // SAFETY: the array slot is valid for the program's run and the
        // byte index is below 8, inside the 8-byte value.
        unsafe { *(word as *mut u8).add((tgid % 8) as usize) = value };
    }
}

/// Forgets an exited process.
#[inline(always)]
pub fn forget(tgid: u32) {
    set_reader_byte(tgid, 0);
}

/// An open returned the unwatched file at `file_ptr` (on superblock
/// `sb`): if it is another process's memory, a record, and the opener's
/// reads are followed from now on.
#[inline(always)]
pub fn open_exit(file_ptr: u64, sb: u64) {
    let Some(target) = target_of(file_ptr, sb) else {
        return;
    };
    let tgid = current_tgid();
    if target == tgid {
        return; // its own memory (`/proc/self/mem`)
    }
    holders::mark_current();
    set_reader_byte(tgid, 1);
    crate::process::on_memory_access(target, memory_method::PROC_MEM_OPEN, 0);
}

/// The current process's `read`/`pread64` exits are followed from now
/// on (it reads a followed pipe, whose bytes are known only at exit).
#[inline(always)]
pub fn follow_read_exits() {
    set_reader_byte(current_tgid(), 1);
}

/// A memory reader's read of an unwatched descriptor, at entry: if it is
/// a memory file, its bytes are counted when the call returns.
#[inline(always)]
pub fn read_enter(fd: u64) {
    let Some(target) = target_of_fd(fd) else {
        return;
    };
    let pending = Pending {
        kind: pending_kind::PROC_MEM,
        fd: fd as i32,
        offset: u64::from(target),
        ..Pending::default()
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if PENDING.insert(&tid, &pending, 0).is_err() {
        count(counter::PENDING_FULL);
    }
}

/// A memory reader closes an unwatched descriptor: a memory file's reads
/// are summarised now.
#[inline(always)]
pub fn close_enter(fd: u64) {
    if !current_reader() {
        return;
    }
    if let Some(target) = target_of_fd(fd) {
        flush(target, memory_method::PROC_MEM_READ);
    }
}

/// Counts one read (or peek) of `bytes` of `target`'s memory.
#[inline(always)]
pub fn account(target: u32, method: u32, bytes: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let key = MemKey {
        tgid: (pid_tgid >> 32) as u32,
        target,
        method,
        _pad: 0,
    };
    let now = now_ns();
    let agg = match MEM_AGG.get_ptr_mut(&key) {
        Some(agg) => agg,
        None => {
            let fresh = MemAgg {
                first_ns: now,
                ..MemAgg::default()
            };
            if let Err(err) = MEM_AGG.insert(&key, &fresh, BPF_NOEXIST)
                && err != -EEXIST
            {
                count(counter::READ_AGG_FULL);
                return;
            }
            mark_reader(key.tgid);
            let Some(agg) = MEM_AGG.get_ptr_mut(&key) else {
                return;
            };
            agg
        }
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &mut *agg };
    crate::atomic::add(&mut agg.calls, 1);
    crate::atomic::add(&mut agg.bytes, bytes);
    agg.last_ns = now;
    agg.last_tid = pid_tgid as u32;
    if now.wrapping_sub(agg.first_ns) >= READ_FLUSH_INTERVAL_NS.load() {
        if emit(&key, agg, flush_reason::INTERVAL) {
            agg.calls = 0;
            agg.bytes = 0;
        }
        agg.first_ns = now;
    }
}

/// Sends and removes the current process's summary for (`target`,
/// `method`); a refused one stays for the agent's drain.
#[inline(always)]
pub fn flush(target: u32, method: u32) {
    let key = MemKey {
        tgid: current_tgid(),
        target,
        method,
        _pad: 0,
    };
    let Some(agg) = MEM_AGG.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &*agg };
    if agg.calls == 0 || emit(&key, agg, flush_reason::CLOSE) {
        let _ = MEM_AGG.remove(&key);
    }
}

/// Sends a summary of `agg`; false when the ring buffer was full.
#[inline(always)]
fn emit(key: &MemKey, agg: &MemAgg, reason: u32) -> bool {
    let Some(mut entry) = reserve::<MemoryEvent>() else {
        return false;
    };
    // SAFETY: the reservation is valid, sized and aligned for a MemoryEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::MEMORY, size_of::<MemoryEvent>());
    ev.target = key.target;
    ev.method = key.method;
    ev.bytes = agg.bytes;
    ev.calls = agg.calls;
    ev.first_ns = agg.first_ns;
    ev.reason = reason;
    ev._pad = 0;
    entry.submit(0);
    true
}
