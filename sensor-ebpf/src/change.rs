//! Tampering with watched files: opens for writing or with `O_TRUNC`,
//! truncates, renames, unlinks, attribute changes and hard links.
//!
//! Descriptor operations (opens, `ftruncate`, `fchmod`, `fchown`) are
//! decided here, on the descriptor's inode, so only watched files make a
//! record. Path operations cannot be: a syscall tracepoint has no resolved
//! path, only the user's string. A successful one whose paths pass the
//! name prefilter (`path_filter.rs`) is reported with its path arguments
//! and the identity of the directory a relative path starts from, queued
//! without a wakeup; the agent resolves them against the watch set.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user,
    bpf_probe_read_user_str_bytes,
};
use sensor_common::{
    CHANGE_PATH_LEN, ChangeEvent, FileKey, FileState, Pending, change_flag, change_syscall,
    counter, kind, pending_kind,
};

use crate::{
    emit::{BPF_RB_NO_WAKEUP, fill_header, reserve},
    kernel::{Watched, cwd_key, fd_key, file_of_fd, file_state, weight_fd},
    maps::{PENDING, count},
    path_filter,
};

const O_ACCMODE: u64 = 0o3;
const O_TRUNC: u64 = 0o1000;
const O_CREAT: u64 = 0o100;
/// `dirfd` for "the working directory".
pub const AT_FDCWD: i32 = -100;

/// Where an open's flags are, as the caller passed them: the kernel drops
/// `O_TRUNC` (and `O_CREAT`, `O_EXCL`) from `f_flags` once the open is done,
/// so they are read from the saved registers, which still hold the
/// arguments at exit, or from `openat2`'s `struct open_how`.
pub enum PassedFlags {
    Value(u64),
    /// The user address of a `struct open_how` (flags first).
    OpenHow(u64),
    /// The kernel address of the flags (an io_uring open's `how.flags`,
    /// kept in its request: `uring_change.rs`).
    Kernel(u64),
}

impl PassedFlags {
    /// The flags (0 when `open_how` cannot be read).
    #[inline(always)]
    pub fn get(&self) -> u64 {
        match *self {
            PassedFlags::Value(v) => v,
            // SAFETY: bpf_probe_read_user checks the address.
            PassedFlags::OpenHow(how) => {
                unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0)
            }
            // SAFETY: bpf_probe_read_kernel checks the address.
            PassedFlags::Kernel(at) => {
                unsafe { bpf_probe_read_kernel(at as *const u64) }.unwrap_or(0)
            }
        }
    }

    /// Whether the open may have created its file: `O_CREAT` was passed
    /// (`openat2`'s flags are not read for this: the file's mode decides).
    #[inline(always)]
    pub fn may_create(&self) -> bool {
        match *self {
            PassedFlags::Value(v) => v & O_CREAT != 0,
            PassedFlags::OpenHow(_) | PassedFlags::Kernel(_) => true,
        }
    }
}

/// The open that returned `fd` of the watched file `w` wrote to it or
/// truncated it: a change record with the state after (the state before
/// an `O_TRUNC` is gone by now; the agent takes it from its watch index).
#[inline(always)]
pub fn open_exit(w: &Watched, fd: i32, f_flags: u32, syscall: u32, passed: &PassedFlags) {
    let passed = passed.get();
    if u64::from(f_flags) & O_ACCMODE == 0 && passed & O_TRUNC == 0 {
        return;
    }
    let Some((key, after)) = file_state(w.file_ptr) else {
        return;
    };
    send_fd_change(syscall, fd, key, None, Some(after), passed, 0, 0);
}

/// `ftruncate`, `fchmod`, `fchown` entering with descriptor `fd`: when it
/// names a watched file, remember its state until the call returns. The
/// caller has checked the holder prefilter.
#[inline(always)]
pub fn fd_enter(fd: u64, syscall: u32) {
    let Some(w) = weight_fd(fd) else { return };
    let Some((key, before)) = file_state(w.file_ptr) else {
        return;
    };
    let pending = Pending {
        kind: pending_kind::CHANGE,
        fd: fd as i32,
        file: key,
        file_size: before.size,
        offset: before.mtime_sec as u64,
        len: u64::from(before.mtime_nsec),
        prot: 0,
        flags: 0,
        out_fd: -1,
        syscall,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if PENDING.insert(&tid, &pending, 0).is_err() {
        count(counter::PENDING_FULL);
    }
}

/// The same call returning: reports the change with the state before and
/// after (`arg`, `arg2`: the call's arguments, from the registers).
#[inline(always)]
pub fn fd_exit(ret: i64, arg: u64, arg2: u64) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out at once.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        return;
    };
    let _ = PENDING.remove(&tid);
    if p.kind != pending_kind::CHANGE {
        return;
    }
    let before = FileState {
        size: p.file_size,
        mtime_sec: p.offset as i64,
        mtime_nsec: p.len as u32,
        _pad: 0,
    };
    let after = file_of_fd(p.fd as u32 as u64)
        .and_then(file_state)
        .filter(|(key, _)| *key == p.file)
        .map(|(_, state)| state);
    send_fd_change(p.syscall, p.fd, p.file, Some(before), after, arg, arg2, ret);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn send_fd_change(
    syscall: u32,
    fd: i32,
    file: FileKey,
    before: Option<FileState>,
    after: Option<FileState>,
    arg: u64,
    arg2: u64,
    ret: i64,
) {
    let Some(mut entry) = reserve::<ChangeEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a ChangeEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::CHANGE, size_of::<ChangeEvent>());
    ev.syscall = syscall;
    ev.flags = change_flag::FILE;
    ev.file = file;
    ev.base2 = FileKey::default();
    ev.before = FileState::default();
    ev.after = FileState::default();
    if let Some(before) = before {
        ev.flags |= change_flag::BEFORE;
        ev.before = before;
    }
    if let Some(after) = after {
        ev.flags |= change_flag::AFTER;
        ev.after = after;
    }
    ev.arg = arg;
    ev.arg2 = arg2;
    ev.fd = fd;
    ev.fd2 = 0;
    ev.ret = ret;
    ev.path_len = 0;
    ev.path2_len = 0;
    entry.submit(0);
}

/// A path argument: the `dirfd` it is relative to and the user address of
/// the string (0: none).
pub struct PathArg {
    pub dirfd: i32,
    pub ptr: u64,
}

/// A successful path operation: reported with its paths for the agent to
/// resolve, when one of them passes the prefilter.
#[inline(always)]
pub fn path_exit(ret: i64, syscall: u32, path: PathArg, path2: PathArg, arg: u64, arg2: u64) {
    if ret != 0 {
        return;
    }
    if path_filter::enabled() {
        let first = path_filter::passes(path.ptr);
        let second = path_filter::passes(path2.ptr);
        if !first && !second {
            return;
        }
        if first && !second && moves_a_name(syscall) {
            path_filter::learn(path2.ptr);
        }
    }
    let Some(mut entry) = reserve::<ChangeEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a ChangeEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::CHANGE, size_of::<ChangeEvent>());
    ev.syscall = syscall;
    ev.flags = 0;
    ev.before = FileState::default();
    ev.after = FileState::default();
    ev.arg = arg;
    ev.arg2 = arg2;
    ev.fd = path.dirfd;
    ev.fd2 = path2.dirfd;
    ev.ret = ret;
    let (len, cut) = read_path(path.ptr, &mut ev.path);
    ev.path_len = len;
    if cut {
        ev.flags |= change_flag::PATH_TRUNCATED;
    }
    ev.file = base_of(path.dirfd, ev.path.first().copied());
    let (len2, cut2) = read_path(path2.ptr, &mut ev.path2);
    ev.path2_len = len2;
    if cut2 {
        ev.flags |= change_flag::PATH2_TRUNCATED;
    }
    ev.base2 = if path2.ptr == 0 {
        FileKey::default()
    } else {
        base_of(path2.dirfd, ev.path2.first().copied())
    };
    entry.submit(BPF_RB_NO_WAKEUP);
}

/// A rename or a hard link: the second path is a new name of what the
/// first names.
#[inline(always)]
pub fn moves_a_name(syscall: u32) -> bool {
    matches!(
        syscall,
        change_syscall::RENAME
            | change_syscall::RENAMEAT
            | change_syscall::RENAMEAT2
            | change_syscall::LINK
            | change_syscall::LINKAT
            | change_syscall::IO_URING_RENAMEAT
            | change_syscall::IO_URING_LINKAT
    )
}

/// Reads a path argument into `buf`: bytes used, and whether it was cut
/// short (or unreadable).
#[inline(always)]
fn read_path(ptr: u64, buf: &mut [u8; CHANGE_PATH_LEN]) -> (u32, bool) {
    buf[0] = 0;
    if ptr == 0 {
        return (0, false);
    }
    // SAFETY: bpf_probe_read_user_str_bytes checks the address.
    match unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, buf) } {
        Ok(s) => {
            let len = s.len() as u32;
            (len, len as usize >= CHANGE_PATH_LEN - 1)
        }
        Err(_) => (0, true),
    }
}

/// The directory a path starting with `first` is relative to: none for an
/// absolute path; the working directory for `AT_FDCWD`; else `dirfd`'s file
/// (an empty path with `AT_EMPTY_PATH` names that file itself).
#[inline(always)]
pub fn base_of(dirfd: i32, first: Option<u8>) -> FileKey {
    if first == Some(b'/') {
        return FileKey::default();
    }
    let key = if dirfd == AT_FDCWD {
        cwd_key()
    } else {
        fd_key(dirfd as u32 as u64)
    };
    key.unwrap_or_default()
}
