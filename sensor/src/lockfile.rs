//! Exclusive `flock`s on files that say "one of these at a time": the
//! audit store's writer, one agent per host. The kernel drops a lock with
//! the process that held it, however that process ends.

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::DirBuilderExt},
    path::Path,
};

/// Whether the lock was taken.
pub enum Lock {
    /// Ours, while the file stays open.
    Held(File),
    /// Another process holds it; the file is open to read what it wrote.
    Taken(File),
}

/// Opens `path` (creating it, and its directory with `dir_mode`) and
/// tries for an exclusive lock on it without waiting.
pub fn try_lock(path: &Path, dir_mode: u32) -> io::Result<Lock> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Lock::Held(file));
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(Lock::Taken(file))
    } else {
        Err(err)
    }
}
