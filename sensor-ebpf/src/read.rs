//! The read family, aggregated in the kernel per (process, file): a read is
//! not an event. Enter resolves the descriptor and remembers the offset;
//! exit adds the bytes returned to the process's aggregate and marks the
//! file segments touched. Summaries leave the kernel on close, when the
//! flush interval passes, and (from the agent) on exit and when idle.

use aya_ebpf::{Global, helpers::bpf_get_current_pid_tgid};
use sensor_common::{
    CopyEvent, CopyKey, FileKey, Pending, ReadAgg, ReadAggKey, ReadEvent, copy_syscall, counter,
    enforce::op, flush_reason, kind, pending_kind, watch_flag,
};

use crate::{
    emit::{fill_header, now_ns, reserve},
    kernel::{Watched, file_kind, file_of_fd, socket_peer_of, weight_fd},
    maps::{COPIES_SEEN, PENDING, READ_AGG, READERS, count},
};

/// Flush a read aggregate that has been accumulating this long (ns).
#[unsafe(no_mangle)]
pub static READ_FLUSH_INTERVAL_NS: Global<u64> = Global::new(10_000_000_000);

const BPF_NOEXIST: u64 = 1;
const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const EEXIST: i32 = 17;

/// A read's offset once the arguments are decoded.
#[derive(Clone, Copy)]
pub enum Offset {
    /// The descriptor's current position.
    Position,
    At(u64),
}

/// Remembers a read of a watched file until the syscall returns. The
/// caller has checked the holder prefilter.
#[inline(always)]
pub fn enter(fd: u64, offset: Offset) {
    remember(fd, offset, pending_kind::READ, -1, 0);
}

/// The source of an in-kernel copy (`sendfile`, `splice`,
/// `copy_file_range`): decided by the policy as a read, and counted as one
/// (bytes moved, coverage) when the syscall returns. The caller has
/// checked the holder prefilter.
#[inline(always)]
pub fn copy_enter(fd: u64, offset: Offset, out_fd: u64, syscall: u32) {
    remember(fd, offset, pending_kind::COPY, out_fd as i32, syscall);
}

/// A reflink (`FICLONE`, `FICLONERANGE`) of `fd` into `out_fd`: no byte
/// moves, but the range (`len` bytes from `offset`; 0: to the end) is
/// copied, so it is counted as read when the ioctl succeeds.
#[inline(always)]
pub fn reflink_enter(fd: u64, offset: u64, len: u64, out_fd: u64, syscall: u32) {
    remember(
        fd,
        Offset::At(offset),
        pending_kind::REFLINK,
        out_fd as i32,
        syscall,
    );
    if len == 0 {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(p) = PENDING.get_ptr_mut(&tid) {
        // SAFETY: map values stay valid for the program's run.
        unsafe { (*p).len = len };
    }
}

#[inline(always)]
fn remember(fd: u64, offset: Offset, kind: u32, out_fd: i32, syscall: u32) {
    let Some(w) = weight_fd(fd) else {
        if kind == pending_kind::READ && crate::proc_mem::current_reader() {
            crate::proc_mem::read_enter(fd);
        }
        return;
    };
    let ops = if kind == pending_kind::READ {
        1 << op::READ
    } else {
        (1 << op::READ) | (1 << op::COPY)
    };
    if crate::enforce::stopped_any(ops, &w, fd as i32) {
        return;
    }
    let offset = match offset {
        Offset::Position => w.position(),
        Offset::At(off) => off,
    };
    let pending = Pending {
        kind,
        fd: fd as i32,
        file: w.key,
        file_size: w.size,
        offset,
        len: 0,
        prot: 0,
        flags: 0,
        out_fd,
        syscall,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if PENDING.insert(&tid, &pending, 0).is_err() {
        count(counter::PENDING_FULL);
    }
}

/// Adds a returned read to the process's aggregate.
#[inline(always)]
pub fn exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out at once.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        return;
    };
    let _ = PENDING.remove(&tid);
    let ret = match p.kind {
        pending_kind::READ | pending_kind::COPY => ret,
        pending_kind::PROC_MEM => {
            if ret > 0 {
                crate::proc_mem::account(
                    p.offset as u32,
                    sensor_common::memory_method::PROC_MEM_READ,
                    ret as u64,
                );
            }
            return;
        }
        // A reflink returns 0: its bytes are the range it cloned.
        pending_kind::REFLINK if ret == 0 => {
            let rest = p.file_size.saturating_sub(p.offset);
            (if p.len == 0 { rest } else { p.len.min(rest) }) as i64
        }
        _ => return,
    };
    if ret < 0 {
        return;
    }
    let copy = p.kind != pending_kind::READ;
    account(
        pid_tgid,
        p.file,
        p.fd,
        p.offset,
        ret as u64,
        p.file_size,
        copy,
    );
    if copy
        && ret > 0
        && let Some(out_file) = file_of_fd(p.out_fd as u64)
    {
        report_copy(pid_tgid, &p, out_file, ret as u64);
    }
}

/// The first copy of a watched file by a process to a destination (the
/// file at `out_file`) is a record of its own (where the bytes went);
/// later ones are only bytes in the read summaries.
#[inline(always)]
fn report_copy(pid_tgid: u64, p: &Pending, out_file: u64, bytes: u64) {
    let Some((destination, mode)) = file_kind(out_file) else {
        return;
    };
    let key = CopyKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        source: p.file,
        destination,
    };
    if COPIES_SEEN.insert(&key, &1, BPF_NOEXIST).is_err() {
        return; // reported before
    }
    let Some(mut entry) = reserve::<CopyEvent>() else {
        // Lost (counted): let the next call try again.
        let _ = COPIES_SEEN.remove(&key);
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a CopyEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::COPY, size_of::<CopyEvent>());
    ev.source = p.file;
    ev.source_size = p.file_size;
    ev.destination = destination;
    ev.destination_mode = mode;
    ev.fd_in = p.fd;
    ev.fd_out = p.out_fd;
    ev.syscall = p.syscall;
    ev.bytes = bytes;
    ev.peer_addr = [0; 16];
    ev.peer_family = 0;
    ev.peer_port = 0;
    ev._pad = 0;
    if mode & S_IFMT == S_IFSOCK
        && let Some((family, addr, port)) = socket_peer_of(out_file)
    {
        ev.peer_family = family;
        ev.peer_addr = addr;
        ev.peer_port = port;
    }
    entry.submit(0);
}

/// The most one `read` transfers (`MAX_RW_COUNT`, `INT_MAX & PAGE_MASK`).
const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// `read(fd, buf, count)` and `pread64(fd, buf, count, pos)`, accounted at
/// entry: for a regular file the kernel returns exactly `count` bytes capped
/// at the file's end (and at `MAX_RW_COUNT`), so no exit work is needed.
/// A call that then fails is still counted: an over-count, never an
/// under-count. The caller has checked the holder prefilter.
#[inline(always)]
pub fn enter_estimated(fd: u64, count: u64, offset: Offset) {
    let Some(w) = weight_fd(fd) else {
        // Another process's memory: counted at exit, as returned.
        if crate::proc_mem::current_reader() {
            crate::proc_mem::read_enter(fd);
        }
        return;
    };
    if crate::enforce::stopped(op::READ, &w, fd as i32) {
        return;
    }
    if w.entry.flags & watch_flag::PIPE != 0 {
        // A pipe's read returns what was written, not a capped `count`:
        // counted at exit, like a `readv`.
        pipe_read_enter(fd, &w);
        return;
    }
    let count = count.min(MAX_RW_COUNT);
    let offset = match offset {
        Offset::Position => w.position(),
        Offset::At(off) => off,
    };
    let size = w.size;
    let bytes = if offset >= size {
        0
    } else {
        count.min(size - offset)
    };
    account(
        bpf_get_current_pid_tgid(),
        w.key,
        fd as i32,
        offset,
        bytes,
        size,
        false,
    );
}

/// A `read`/`pread64` of a followed pipe: remembered until it returns,
/// and the process's read exits followed (`read`/`pread64` are accounted
/// at entry for everyone else).
#[inline(never)]
fn pipe_read_enter(fd: u64, w: &Watched) {
    let pending = Pending {
        kind: pending_kind::READ,
        fd: fd as i32,
        file: w.key,
        ..Pending::default()
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if PENDING.insert(&tid, &pending, 0).is_err() {
        count(counter::PENDING_FULL);
        return;
    }
    crate::proc_mem::follow_read_exits();
}

/// A read that already happened, with its exact bytes: an io_uring
/// request's completion (the caller found the file watched). Counted for
/// `pid_tgid`'s process like a returned `read(2)`.
#[inline(always)]
pub fn completed(pid_tgid: u64, w: &Watched, fd: i32, offset: u64, bytes: u64) {
    account(pid_tgid, w.key, fd, offset, bytes, w.size, false);
}

/// An io_uring splice from the watched file `w` that moved `bytes` from
/// `offset` into `out_file` (the request's file, a pipe): counted for
/// `pid_tgid`'s process like a returned `splice(2)`, the first one to a
/// destination a copy record. `fd_in` is the descriptor the splice named
/// (-1 for a fixed-file slot).
#[inline(always)]
pub fn uring_splice_completed(
    pid_tgid: u64,
    w: &Watched,
    fd_in: i32,
    offset: u64,
    bytes: u64,
    out_file: u64,
) {
    account(pid_tgid, w.key, fd_in, offset, bytes, w.size, true);
    let p = Pending {
        kind: pending_kind::COPY,
        fd: fd_in,
        file: w.key,
        file_size: w.size,
        offset,
        out_fd: -1,
        syscall: copy_syscall::URING_SPLICE,
        ..Pending::default()
    };
    report_copy(pid_tgid, &p, out_file, bytes);
}

/// Adds one read of `bytes` at `offset` to the process's aggregate and
/// coverage, and flushes the aggregate when the interval has passed.
#[inline(always)]
fn account(pid_tgid: u64, file: FileKey, fd: i32, offset: u64, bytes: u64, size: u64, copy: bool) {
    if bytes > 0 {
        crate::holders::taint_current();
    }
    let tid = pid_tgid as u32;
    let key = ReadAggKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        file,
    };
    let now = now_ns();
    let Some(agg) = aggregate_for(&key, now) else {
        return;
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &mut *agg };
    // Threads of one process may read the same file on two CPUs at once:
    // the counters are added atomically. The rest is last-writer-wins.
    crate::atomic::add(&mut agg.calls, 1);
    crate::atomic::add(&mut agg.bytes, bytes);
    if copy {
        agg.copy_calls = agg.copy_calls.wrapping_add(1);
    }
    agg.last_ns = now;
    agg.file_size = size;
    agg.last_tid = tid;
    if bytes > 0 {
        agg.covered.mark(offset, bytes, size);
    }
    if now.wrapping_sub(agg.first_ns) >= READ_FLUSH_INTERVAL_NS.load() {
        // A refused summary (ring full) loses this window's calls and bytes,
        // counted; its coverage bits stay for the next summary, and the next
        // attempt waits a whole interval rather than retrying on every read.
        let sent = emit_read(&key, agg, flush_reason::INTERVAL, fd);
        agg.calls = 0;
        agg.bytes = 0;
        agg.copy_calls = 0;
        agg.first_ns = now;
        if sent {
            agg.covered = Default::default();
        }
    }
}

/// The aggregate for `key`, created if absent; a full map is counted.
#[inline(always)]
fn aggregate_for(key: &ReadAggKey, now: u64) -> Option<*mut ReadAgg> {
    if let Some(agg) = READ_AGG.get_ptr_mut(key) {
        return Some(agg);
    }
    let fresh = ReadAgg {
        first_ns: now,
        ..ReadAgg::default()
    };
    if let Err(err) = READ_AGG.insert(key, &fresh, BPF_NOEXIST)
        && err != -EEXIST
    {
        count(counter::READ_AGG_FULL);
        return None;
    }
    mark_reader(key.tgid);
    READ_AGG.get_ptr_mut(key)
}

/// Tells the exit path that `tgid` has aggregates for the agent to drain
/// (reads, opens, memory reads).
#[inline(always)]
pub fn mark_reader(tgid: u32) {
    if let Err(err) = READERS.insert(&tgid, &1, BPF_NOEXIST)
        && err != -EEXIST
    {
        count(counter::READ_AGG_FULL);
    }
}

/// Sends a read summary for `key` from `agg`; false when the ring buffer
/// was full (counted), so that the caller keeps the aggregate for a later
/// flush or the agent's drain instead of dropping its bytes and coverage.
#[inline(always)]
pub fn emit_read(key: &ReadAggKey, agg: &ReadAgg, reason: u32, fd: i32) -> bool {
    let Some(mut entry) = reserve::<ReadEvent>() else {
        return false;
    };
    // SAFETY: the reservation is valid, sized and aligned for a ReadEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::READ, size_of::<ReadEvent>());
    ev.file = key.file;
    ev.agg = *agg;
    ev.reason = reason;
    ev.fd = fd;
    entry.submit(0);
    true
}
