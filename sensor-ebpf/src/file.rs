//! Opens, closes and memory maps of watched files (and opens of GPU device
//! nodes). Identity is decided from the descriptor's inode, so relative
//! paths, symlinks, hard links and bind mounts all resolve to the same key.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use sensor_common::{
    FileEvent, Pending, ReadAggKey, counter, enforce::op, flush_reason, kind, pending_kind,
    watch_flag,
};

use crate::{
    change::PassedFlags,
    emit::{fill_header, reserve},
    holders,
    kernel::{Lookup, OFF_FILE_FLAGS, Watched, file_of_fd, lookup_file, read_at, weight_fd},
    maps::{PENDING, READ_AGG, count},
    read::emit_read,
};

const MAP_ANONYMOUS: u64 = 0x20;

/// Sends a file record; `fill` sets the kind-specific fields.
#[inline(always)]
fn send_file_event(event_kind: u32, fd: i32, w: &Watched, fill: impl FnOnce(&mut FileEvent)) {
    let Some(mut entry) = reserve::<FileEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a FileEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, event_kind, size_of::<FileEvent>());
    ev.file = w.key;
    ev.file_size = w.size;
    ev.fd = fd;
    ev.flags = 0;
    ev.mmap_flags = 0;
    ev._pad = 0;
    ev.len = 0;
    ev.offset = 0;
    ev.ret = 0;
    fill(ev);
    entry.submit(0);
}

/// How an open was made, for its tampering records.
pub enum OpenCall {
    /// An x86-64 open syscall or an io_uring open request: its change
    /// syscall and the flags as passed.
    Native(u32, PassedFlags),
    /// An open whose flags are not followed (ia32): no tampering record
    /// (docs/events.md).
    Plain,
}

/// Reports the descriptor an open returned, if its file is watched; an
/// x86-64 or io_uring open for writing or with `O_TRUNC` is also a change
/// record.
/// (An open that created its file is looked at by the caller's caller,
/// `create.rs`.)
#[inline(always)]
pub fn open_exit(ret: i64, call: OpenCall) {
    if ret < 0 {
        return;
    }
    let Some(file_ptr) = file_of_fd(ret as u64) else {
        return;
    };
    opened(file_ptr, ret as i32, call);
}

/// Reports the open of the file at `file_ptr`, if it is watched, as
/// descriptor `fd` (-1: into an io_uring fixed-file slot, which no
/// descriptor names).
#[inline(always)]
pub fn opened(file_ptr: u64, fd: i32, call: OpenCall) {
    let w = match lookup_file(file_ptr) {
        Lookup::Watched(w) => w,
        // Not watched: another process's memory, perhaps.
        Lookup::Unwatched { sb } => return crate::proc_mem::open_exit(file_ptr, sb),
        Lookup::Unknown => return,
    };
    if w.entry.flags & watch_flag::GPU_DEVICE != 0 {
        holders::mark_serving_current();
        send_file_event(kind::GPU_OPEN, fd, &w, |_| {});
    }
    if w.entry.flags & watch_flag::WEIGHT != 0 {
        holders::mark_current();
        let flags = read_at::<u32>(w.file_ptr, &OFF_FILE_FLAGS).unwrap_or(0);
        if crate::opens::on_open(&w, fd, flags) {
            send_file_event(kind::OPEN, fd, &w, |ev| ev.flags = flags);
        }
        if let OpenCall::Native(syscall, passed) = &call {
            crate::change::open_exit(&w, fd, flags, *syscall, passed);
        }
    }
}

/// Flushes the read summary of a watched file being closed, then reports
/// the close. The caller has checked the holder prefilter.
#[inline(always)]
pub fn close_enter(fd: u64) {
    let Some(w) = weight_fd(fd) else {
        crate::proc_mem::close_enter(fd);
        return;
    };
    // A close the open summary counts: the read aggregate goes on too
    // (flushed by the interval, the idle sweep or the exit), or a storm
    // of open-read-close would be a storm of read summaries.
    if !crate::opens::on_close(&w, fd as i32) {
        return;
    }
    let key = ReadAggKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        file: w.key,
    };
    if let Some(agg) = READ_AGG.get_ptr_mut(&key) {
        // SAFETY: map values stay valid for the program's run.
        let agg = unsafe { &mut *agg };
        // A summary the full ring buffer refused stays in the map for the
        // agent's idle or exit drain.
        if agg.calls == 0 || emit_read(&key, agg, flush_reason::CLOSE, fd as i32) {
            let _ = READ_AGG.remove(&key);
        }
    }
    send_file_event(kind::CLOSE, fd as i32, &w, |_| {});
}

/// The arguments of an `mmap` that matter here, whatever the ABI.
pub struct MmapArgs {
    pub len: u64,
    pub prot: u64,
    pub flags: u64,
    pub fd: u64,
    /// File offset in bytes.
    pub offset: u64,
}

/// Remembers a mapping of a watched file until the syscall returns. The
/// caller has checked the holder prefilter.
#[inline(always)]
pub fn mmap_enter(args: MmapArgs) {
    if args.flags & MAP_ANONYMOUS != 0 {
        return;
    }
    let Some(w) = weight_fd(args.fd) else {
        return;
    };
    if crate::enforce::stopped(op::MMAP, &w, args.fd as i32) {
        return;
    }
    let pending = Pending {
        kind: pending_kind::MMAP,
        fd: args.fd as i32,
        file: w.key,
        file_size: w.size,
        offset: args.offset,
        len: args.len,
        prot: args.prot as u32,
        flags: args.flags as u32,
        out_fd: -1,
        syscall: 0,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if PENDING.insert(&tid, &pending, 0).is_err() {
        count(counter::PENDING_FULL);
    }
}

/// Reports a remembered mapping with its result.
#[inline(always)]
pub fn mmap_exit(ret: i64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        return;
    };
    let _ = PENDING.remove(&tid);
    if p.kind != pending_kind::MMAP {
        return;
    }
    // A mapped weight file's bytes are the process's to write anywhere.
    if !(-4095..0).contains(&ret) {
        holders::taint_current();
    }
    let Some(mut entry) = reserve::<FileEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a FileEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::MMAP, size_of::<FileEvent>());
    ev.file = p.file;
    ev.file_size = p.file_size;
    ev.fd = p.fd;
    ev.flags = p.prot;
    ev.mmap_flags = p.flags;
    ev._pad = 0;
    ev.len = p.len;
    ev.offset = p.offset;
    ev.ret = ret;
    entry.submit(0);
}
