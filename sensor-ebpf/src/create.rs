//! New files appearing in watched directories, seen at the open that
//! created them (`open`/`openat`/`openat2`/`creat` with `O_CREAT`, io_uring
//! `OPENAT`/`OPENAT2`): the kernel marks such a `struct file` with
//! `FMODE_CREATED`. The file's directory is found from its dentry and
//! looked up in `WATCHED_DIRS` (every directory under the roots, kept by
//! the agent), so only creates there make a record; `mknod`, `symlink`
//! and renames or links into a watched directory are path operations
//! (`change.rs`).
//!
//! The two nearest ancestors are looked at too: a process that makes a
//! directory and fills it at once (`os.makedirs` then `open`) creates its
//! files before the agent has put the new directory in the map.
//!
//! Cost on unrelated opens: callers test `O_CREAT` as passed before calling
//! here (a register already loaded); an open that passed it and did not
//! create (an existing log file) pays the descriptor's lookup and one probe
//! read of `f_mode`; a create outside the roots, the walk of up to three
//! directories.
//!
//! Called from the programs' top level, beside the open's own handling
//! (`file.rs`), not under it: 6.1's verifier allows 512 bytes of stack for
//! a chain of calls, and `exit_followed` and this frame together exceed it
//! (it counted 704).

use aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes;
use sensor_common::{ChangeEvent, FileKey, FileState, change_flag, kind};

use crate::{
    emit::{fill_header, reserve},
    kernel::{
        OFF_DENTRY_INODE, OFF_DENTRY_NAME, OFF_DENTRY_PARENT, OFF_FILE_MODE, OFF_FILE_PATH_DENTRY,
        OFF_INODE_INO, OFF_INODE_SB, OFF_SB_DEV, file_of_fd, file_state, read_at,
    },
    maps::{WATCHED, WATCHED_DIRS},
};

/// `FMODE_CREATED` (include/linux/fs.h): set on the file of an open that
/// created it. Bit 20 since 4.19, through 6.18 (checked on 6.1 and 6.18
/// by tests/tests/create.rs and the VM tests).
const FMODE_CREATED: u32 = 1 << 20;

/// Directories looked up, from the file's own up.
const DIR_LEVELS: usize = 3;

/// The open that returned `fd` may have created its file (the caller
/// checked `O_CREAT`, or cannot): when it did, in or just below a watched
/// directory, a change record with the file's state, its directory and its
/// name (`passed`: the flags as passed, 0 when unknown). A file already
/// watched (its inode number reused before the agent dropped the old one)
/// has its open's own records.
#[inline(never)]
pub fn open_exit(fd: i32, syscall: u32, passed: u64) {
    if fd < 0 {
        return;
    }
    let Some(file_ptr) = file_of_fd(fd as u32 as u64) else {
        return;
    };
    let Some(mode) = read_at::<u32>(file_ptr, &OFF_FILE_MODE) else {
        return;
    };
    if mode & FMODE_CREATED == 0 {
        return;
    }
    let Some(dentry) = read_at::<u64>(file_ptr, &OFF_FILE_PATH_DENTRY) else {
        return;
    };
    let Some(dir) = watched_dir(dentry) else {
        return;
    };
    let Some((key, after)) = file_state(file_ptr) else {
        return;
    };
    // SAFETY: only the presence is used.
    if unsafe { WATCHED.get(&key) }.is_some() {
        return;
    }
    send(syscall, fd, passed, key, after, dir, dentry);
}

/// The key of the directory `dentry` is in, if it or one of its
/// [`DIR_LEVELS`]` - 1` nearest ancestors is a watched directory.
#[inline(always)]
fn watched_dir(dentry: u64) -> Option<FileKey> {
    let mut child = dentry;
    let mut parent_key = None;
    for _ in 0..DIR_LEVELS {
        let dir = read_at::<u64>(child, &OFF_DENTRY_PARENT)?;
        // The root of its file system: nothing above.
        if dir == child {
            return None;
        }
        let key = dir_key(dir)?;
        let parent = *parent_key.get_or_insert(key);
        // SAFETY: only the presence is used.
        if unsafe { WATCHED_DIRS.get(&key) }.is_some() {
            return Some(parent);
        }
        child = dir;
    }
    None
}

/// The identity of the directory `dentry` names. Field by field, not
/// with the 64-byte inode window the hot paths use: creates are rare, and
/// a small frame leaves room under the 512-byte limit for a chain of calls
/// (6.1).
#[inline(always)]
fn dir_key(dentry: u64) -> Option<FileKey> {
    let inode = read_at::<u64>(dentry, &OFF_DENTRY_INODE)?;
    let ino = read_at::<u64>(inode, &OFF_INODE_INO)?;
    let sb = read_at::<u64>(inode, &OFF_INODE_SB)?;
    let dev = read_at::<u32>(sb, &OFF_SB_DEV)?;
    Some(FileKey {
        dev: u64::from(dev),
        ino,
    })
}

#[inline(always)]
fn send(
    syscall: u32,
    fd: i32,
    passed: u64,
    key: FileKey,
    after: FileState,
    dir: FileKey,
    dentry: u64,
) {
    let Some(mut entry) = reserve::<ChangeEvent>() else {
        return;
    };
    // SAFETY: the reservation is valid, sized and aligned for a ChangeEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::CHANGE, size_of::<ChangeEvent>());
    ev.syscall = syscall;
    ev.flags = change_flag::FILE | change_flag::AFTER | change_flag::CREATED;
    ev.file = key;
    ev.base2 = dir;
    ev.before = FileState::default();
    ev.after = after;
    ev.arg = passed;
    ev.arg2 = 0;
    ev.fd = fd;
    ev.fd2 = 0;
    ev.ret = i64::from(fd);
    ev.path_len = 0;
    ev.path2_len = 0;
    ev.path[0] = 0;
    ev.path2[0] = 0;
    // The name as the directory holds it (`d_name`; at most 255 bytes).
    if let Some(name) = read_at::<u64>(dentry, &OFF_DENTRY_NAME) {
        // SAFETY: bpf_probe_read_kernel_str_bytes checks the address.
        if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut ev.path) } {
            ev.path_len = s.len() as u32;
        }
    }
    entry.submit(0);
}
