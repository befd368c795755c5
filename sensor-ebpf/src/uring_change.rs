//! Tampering through io_uring: `IORING_OP_RENAMEAT`, `UNLINKAT`,
//! `LINKAT`, `SYMLINKAT` and `FTRUNCATE` (Linux 6.9+) requests make the
//! change records their syscalls make (`change.rs`), and an `OPENAT` or
//! `OPENAT2` of a watched file for writing or with `O_TRUNC` makes
//! `openat(2)`'s (the request's flags as passed: [`open_call`], for
//! `uring.rs`). No syscall hook sees any of them: the kernel runs them
//! from the ring, mostly on its io-wq threads.
//!
//! None of these requests can run without blocking, so the kernel runs
//! each on an io-wq thread of the submitter (`REQ_F_FORCE_ASYNC`, set by
//! their preparation), after queueing it there: `io_uring_queue_async_work`
//! fires then, in the submitting task (or another thread of its group: its
//! SQPOLL thread, or the io-wq thread that ran the request a linked one
//! waited for; all share its descriptor table and working directory), and
//! never for the reads and opens that complete inline, which pay nothing
//! here. A path request's strings were copied into the kernel by its
//! preparation (a `struct filename` per path, in the request's command
//! data) and are put by the time it completes, so they are read at the
//! queueing: passed through the name prefilter as the syscalls' paths are
//! (`path_filter.rs`), with the identity of the directory a relative one
//! starts from (the working directory, or the request's `dirfd`). The
//! record is kept by the request's address until `io_uring_complete`
//! gives the result: a success is sent, as the syscall's exit sends it; a
//! failure is dropped. An `FTRUNCATE` of a watched file keeps its file's
//! state before the same way; its completion is a record with the state
//! after, whatever the result, as `ftruncate(2)`'s is. A kept record names
//! the thread that queued the request (its header is filled then) and is
//! timed at the completion.
//!
//! Not seen (docs/architecture.md): a request submitted with
//! `IOSQE_CQE_SKIP_SUCCESS` (a success posts no completion, so no
//! tracepoint fires for it) and a completion that overflowed the ring (it
//! is posted later without its request). More than [`IN_FLIGHT`] requests
//! kept for their completions at once are counted (`pending_full`).
//!
//! Cost: the queueing program reads the opcode and returns for every
//! other request punted to io-wq (requests that complete inline never run
//! it); `on_complete` (`uring.rs`) pays one opcode test.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use sensor_common::{
    CHANGE_PATH_LEN, ChangeEvent, FileKey, FileState, change_flag, change_syscall as cs, counter,
    kind,
};

use crate::{
    change::{self, AT_FDCWD, PassedFlags},
    emit::{BPF_RB_NO_WAKEUP, fill_header, now_ns},
    file::OpenCall,
    kernel::{btf_load, file_state, offsets, read_at, weight_file},
    maps::{EVENTS, count},
    path_filter, uring,
};

offsets!(
    OFF_IO_KIOCB_FLAGS,
    OFF_IO_KIOCB_CQE_FD,
    OFF_IO_OPEN_HOW_FLAGS,
    OFF_FILENAME_NAME,
    OFF_IO_RENAME_OLD_DFD,
    OFF_IO_RENAME_NEW_DFD,
    OFF_IO_RENAME_OLDPATH,
    OFF_IO_RENAME_NEWPATH,
    OFF_IO_RENAME_FLAGS,
    OFF_IO_UNLINK_DFD,
    OFF_IO_UNLINK_FILENAME,
    OFF_IO_UNLINK_FLAGS,
    OFF_IO_LINK_OLD_DFD,
    OFF_IO_LINK_NEW_DFD,
    OFF_IO_LINK_OLDPATH,
    OFF_IO_LINK_NEWPATH,
    OFF_IO_LINK_FLAGS,
    OFF_IO_FTRUNC_LEN,
);

/// `enum io_uring_op` (include/uapi/linux/io_uring.h); numbers are ABI.
mod opcode {
    pub const OPENAT2: u8 = 28;
    pub const RENAMEAT: u8 = 35;
    pub const UNLINKAT: u8 = 36;
    pub const SYMLINKAT: u8 = 38;
    pub const LINKAT: u8 = 39;
    /// Linux 6.9+.
    pub const FTRUNCATE: u8 = 55;
}

/// The opcodes above as bits of one word.
const TAMPER_OPS: u64 = (1 << opcode::RENAMEAT)
    | (1 << opcode::UNLINKAT)
    | (1 << opcode::SYMLINKAT)
    | (1 << opcode::LINKAT)
    | (1 << opcode::FTRUNCATE);

/// `REQ_F_FIXED_FILE` and `REQ_F_CQE_SKIP`: the request's flags start
/// with the `IOSQE_*` bits as submitted (`IOSQE_FIXED_FILE`,
/// `IOSQE_CQE_SKIP_SUCCESS`), the same numbers on every kernel.
pub(crate) const REQ_F_FIXED_FILE: u8 = 1 << 0;
pub(crate) const REQ_F_CQE_SKIP: u8 = 1 << 6;

/// `OFF_IO_FTRUNC_LEN` on kernels without `IORING_OP_FTRUNCATE`.
const NO_FTRUNCATE: u64 = u64::MAX;

/// Requests waiting for their completion (the map's size).
const IN_FLIGHT: u32 = 1024;

/// Records of requests between their queueing and completion, by the
/// request's address. A plain hash, not LRU: more than [`IN_FLIGHT`] at
/// once must be counted (`pending_full`), not evict a record unseen. An
/// entry whose completion never fires (a CQ overflow) stays until a
/// tampering request reuses its address (requests are recycled fast).
#[map]
static URING_CHANGES: HashMap<u64, ChangeEvent> = HashMap::with_max_entries(IN_FLIGHT, 0);

/// Where a record is put together: 700 bytes are too many for the stack.
#[map]
static URING_CHANGE_SCRATCH: PerCpuArray<ChangeEvent> = PerCpuArray::with_max_entries(1, 0);

/// Whether `op` is one of the requests followed here: for every other
/// completion, this is the cost.
#[inline(always)]
pub fn is_tamper_op(op: u8) -> bool {
    op < 64 && (TAMPER_OPS >> op) & 1 != 0
}

/// How an io_uring open of the request `req` (`OPENAT` or `OPENAT2`) was
/// made, for its tampering records: its flags as passed are read from
/// the request only when the file is a watched one (`change.rs`).
#[inline(always)]
pub fn open_call(req: u64, op: u8) -> OpenCall {
    let syscall = if op == opcode::OPENAT2 {
        cs::IO_URING_OPENAT2
    } else {
        cs::IO_URING_OPENAT
    };
    OpenCall::Native(
        syscall,
        PassedFlags::Kernel(req + OFF_IO_OPEN_HOW_FLAGS.load()),
    )
}

/// `io_uring_queue_async_work(req, ..)`: a prepared request (a BTF-typed
/// `io_kiocb`) is queued to an io-wq thread. One load and one test for
/// the requests not followed here.
#[inline(always)]
pub fn on_queue_async(req: u64) {
    let op = btf_load::<u8>(req, &uring::OFF_IO_KIOCB_OPCODE);
    if is_tamper_op(op) {
        queued(req, op);
    }
}

/// A tampering request is about to run: its record, kept for its
/// completion.
#[inline(never)]
fn queued(req: u64, op: u8) {
    // A record left at this address by an earlier request whose
    // completion never fired (an overflowed one) must not be taken for
    // this one's, which may not be kept.
    let _ = URING_CHANGES.remove(&req);
    let Some(flags) = read_at::<u8>(req, &OFF_IO_KIOCB_FLAGS) else {
        return;
    };
    // Its success would post no completion: nothing would send it.
    if flags & REQ_F_CQE_SKIP != 0 {
        return;
    }
    if op == opcode::FTRUNCATE {
        truncate_queued(req, flags);
    } else {
        path_queued(req, op);
    }
}

/// The kernel's copy of the path the `struct filename *` at `offset` in
/// `req` holds (0: none).
#[inline(always)]
fn name_at(req: u64, offset: &aya_ebpf::Global<u64>) -> u64 {
    read_at::<u64>(req, offset)
        .and_then(|filename| read_at::<u64>(filename, &OFF_FILENAME_NAME))
        .unwrap_or(0)
}

#[inline(always)]
fn int_at(req: u64, offset: &aya_ebpf::Global<u64>) -> i32 {
    read_at::<i32>(req, offset).unwrap_or(0)
}

/// A path request: its paths, as the syscall with the same arguments
/// would report them (`change::path_exit`), when one passes the
/// prefilter.
#[inline(always)]
fn path_queued(req: u64, op: u8) {
    // (syscall, dirfd and path, second dirfd and path, flags)
    let (syscall, dfd, path, dfd2, path2, arg) = match op {
        // renameat2(olddfd, old, newdfd, new, flags)
        opcode::RENAMEAT => (
            cs::IO_URING_RENAMEAT,
            int_at(req, &OFF_IO_RENAME_OLD_DFD),
            name_at(req, &OFF_IO_RENAME_OLDPATH),
            int_at(req, &OFF_IO_RENAME_NEW_DFD),
            name_at(req, &OFF_IO_RENAME_NEWPATH),
            int_at(req, &OFF_IO_RENAME_FLAGS),
        ),
        // unlinkat(dfd, path, flags)
        opcode::UNLINKAT => (
            cs::IO_URING_UNLINKAT,
            int_at(req, &OFF_IO_UNLINK_DFD),
            name_at(req, &OFF_IO_UNLINK_FILENAME),
            0,
            0,
            int_at(req, &OFF_IO_UNLINK_FLAGS),
        ),
        // linkat(olddfd, old, newdfd, new, flags)
        opcode::LINKAT => (
            cs::IO_URING_LINKAT,
            int_at(req, &OFF_IO_LINK_OLD_DFD),
            name_at(req, &OFF_IO_LINK_OLDPATH),
            int_at(req, &OFF_IO_LINK_NEW_DFD),
            name_at(req, &OFF_IO_LINK_NEWPATH),
            int_at(req, &OFF_IO_LINK_FLAGS),
        ),
        // symlinkat(target, newdfd, linkpath): the target is a string
        // stored as is, not a path the request resolves.
        opcode::SYMLINKAT => (
            cs::IO_URING_SYMLINKAT,
            AT_FDCWD,
            name_at(req, &OFF_IO_LINK_OLDPATH),
            int_at(req, &OFF_IO_LINK_NEW_DFD),
            name_at(req, &OFF_IO_LINK_NEWPATH),
            0,
        ),
        _ => return,
    };
    if path_filter::enabled() {
        let first = path_filter::passes_kernel(path);
        let second = path_filter::passes_kernel(path2);
        if !first && !second {
            return;
        }
        // Learnt now, before the result is known (the syscalls learn at
        // exit, on success): a request that fails lets one more name
        // through, no more.
        if first && !second && change::moves_a_name(syscall) {
            path_filter::learn_kernel(path2);
        }
    }
    let Some(ev) = URING_CHANGE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU value is ours for this program's run.
    let ev = unsafe { &mut *ev };
    fill_header(&mut ev.header, kind::CHANGE, size_of::<ChangeEvent>());
    ev.syscall = syscall;
    ev.flags = 0;
    ev.before = FileState::default();
    ev.after = FileState::default();
    ev.arg = arg as u32 as u64;
    ev.arg2 = 0;
    ev.fd = dfd;
    ev.fd2 = dfd2;
    ev.ret = 0;
    let (len, cut) = read_name(path, &mut ev.path);
    ev.path_len = len;
    if cut {
        ev.flags |= change_flag::PATH_TRUNCATED;
    }
    ev.file = change::base_of(dfd, ev.path.first().copied());
    let (len2, cut2) = read_name(path2, &mut ev.path2);
    ev.path2_len = len2;
    if cut2 {
        ev.flags |= change_flag::PATH2_TRUNCATED;
    }
    ev.base2 = if path2 == 0 {
        FileKey::default()
    } else {
        change::base_of(dfd2, ev.path2.first().copied())
    };
    keep(req, ev);
}

/// Reads the kernel's copy of a path into `buf`: bytes used, and whether
/// it was cut short (or unreadable).
#[inline(always)]
fn read_name(ptr: u64, buf: &mut [u8; CHANGE_PATH_LEN]) -> (u32, bool) {
    buf[0] = 0;
    if ptr == 0 {
        return (0, false);
    }
    // SAFETY: bpf_probe_read_kernel_str_bytes checks the address.
    match unsafe { bpf_probe_read_kernel_str_bytes(ptr as *const u8, buf) } {
        Ok(s) => {
            let len = s.len() as u32;
            (len, len as usize >= CHANGE_PATH_LEN - 1)
        }
        Err(_) => (0, true),
    }
}

/// An `FTRUNCATE`: when the file its descriptor (or fixed-file slot)
/// names now is a watched one, its state before, with the file's address
/// (in `arg2` until the completion) to check that the request truncated
/// that file.
#[inline(always)]
fn truncate_queued(req: u64, flags: u8) {
    let Some(fd) = read_at::<i32>(req, &OFF_IO_KIOCB_CQE_FD) else {
        return;
    };
    let fixed = flags & REQ_F_FIXED_FILE != 0;
    let Some(w) = uring::named_file(req, fixed, fd).and_then(weight_file) else {
        return;
    };
    let Some((key, before)) = file_state(w.file_ptr) else {
        return;
    };
    let Some(ev) = URING_CHANGE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU value is ours for this program's run.
    let ev = unsafe { &mut *ev };
    fill_header(&mut ev.header, kind::CHANGE, size_of::<ChangeEvent>());
    ev.syscall = cs::IO_URING_FTRUNCATE;
    ev.flags = change_flag::FILE | change_flag::BEFORE;
    ev.file = key;
    ev.base2 = FileKey::default();
    ev.before = before;
    ev.after = FileState::default();
    ev.arg = truncate_length(req);
    ev.arg2 = w.file_ptr;
    // A fixed-file slot is no descriptor.
    ev.fd = if fixed { -1 } else { fd };
    ev.fd2 = 0;
    ev.ret = 0;
    ev.path_len = 0;
    ev.path2_len = 0;
    ev.path[0] = 0;
    ev.path2[0] = 0;
    keep(req, ev);
}

#[inline(always)]
fn truncate_length(req: u64) -> u64 {
    if OFF_IO_FTRUNC_LEN.load() == NO_FTRUNCATE {
        return 0;
    }
    read_at::<u64>(req, &OFF_IO_FTRUNC_LEN).unwrap_or(0)
}

#[inline(always)]
fn keep(req: u64, ev: &ChangeEvent) {
    if URING_CHANGES.insert(&req, ev, 0).is_err() {
        count(counter::PENDING_FULL);
    }
}

/// A tampering request completed with `res` (`file`: the file the
/// request used, set when it ran). Called for failures too.
#[inline(never)]
pub fn completed(req: u64, op: u8, res: i32, file: u64) {
    let kept = URING_CHANGES.get_ptr_mut(&req);
    if op == opcode::FTRUNCATE {
        truncate_completed(req, kept, res, file);
    } else if let Some(ev) = kept
        && res == 0
    {
        // SAFETY: a map value stays valid for the program's run.
        send(unsafe { &mut *ev }, res, BPF_RB_NO_WAKEUP);
    }
    if kept.is_some() {
        let _ = URING_CHANGES.remove(&req);
    }
}

/// An `FTRUNCATE` completed: a record when its file is watched, with the
/// state before when it was taken from the same file at its queueing (a
/// descriptor replaced in between, or a file watched since, has none).
#[inline(always)]
fn truncate_completed(req: u64, kept: Option<*mut ChangeEvent>, res: i32, file: u64) {
    let Some(w) = weight_file(file) else {
        return;
    };
    let Some((key, after)) = file_state(w.file_ptr) else {
        return;
    };
    if let Some(ev) = kept {
        // SAFETY: a map value stays valid for the program's run.
        let ev = unsafe { &mut *ev };
        if ev.arg2 == file && ev.file == key {
            ev.flags |= change_flag::AFTER;
            ev.after = after;
            ev.arg2 = 0;
            send(ev, res, 0);
            return;
        }
    }
    change::send_fd_change(
        cs::IO_URING_FTRUNCATE,
        -1,
        key,
        None,
        Some(after),
        truncate_length(req),
        0,
        i64::from(res),
    );
}

/// Sends a kept record with the request's result, timed now (the agent
/// matches it against the change's inotify event, queued before this).
#[inline(always)]
fn send(ev: &mut ChangeEvent, res: i32, flags: u64) {
    ev.ret = i64::from(res);
    ev.header.boot_ns = now_ns();
    if EVENTS.output::<ChangeEvent>(&*ev, flags).is_err() {
        count(counter::RINGBUF_FULL);
    }
}
