//! Inodes watched without a weight path under the roots, and why:
//!
//! - **policy**: a file the policy names ([`super::WatchSet::pin_policy_files`]);
//! - **retained**: a watched file that left the roots while its inode
//!   lives (renamed out, renamed to another extension, its last watched
//!   hard link unlinked while another link elsewhere keeps it): its reads
//!   are still counted;
//! - **derived**: a file made from a watched one (a copy's destination),
//!   watched with the file it came from ([`super::WatchSet::watch_derived`]);
//!   or a pipe a copy of weights went into ([`super::WatchSet::watch_pipe`]),
//!   so that whoever reads the other end is followed too.
//!
//! Retained and derived inodes are followed by file handle, never by an
//! open descriptor (which would keep a deleted file's blocks allocated):
//! `name_to_handle_at` when the file is first watched, then on each check
//! `open_by_handle_at(O_PATH)`: `ESTALE` means the inode is gone, and the
//! descriptor's `/proc/self/fd` link names where it is now (the records'
//! `file.path`). A deleted file still held open by a process lives on, so
//! its reads through that descriptor keep being counted until it is closed.
//! Their number is bounded (`watch.max_retained`); what the bound or a file
//! system without handles (FUSE, most overlayfs mounts) keeps out is
//! counted and logged. A pipe has no handle: it is followed while one of
//! the processes that held it when it was found lives, and never saved.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sensor_common::FileKey;

use super::confirm::close_unseen;
use super::followed_state::SavedFile;

/// A file handle from `name_to_handle_at`: the mount it was taken on, the
/// handle type and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Handle {
    mnt_id: i32,
    handle_type: i32,
    bytes: HandleBytes,
}

/// One is kept per watched inode (100,000 of them is 5 MiB less than a
/// heap allocation each): inline up to the size of the common ones
/// (ext4 and xfs 8 to 16 bytes, btrfs 20), on the heap beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HandleBytes {
    Inline { len: u8, bytes: [u8; INLINE_HANDLE] },
    Heap(Box<[u8]>),
}

const INLINE_HANDLE: usize = 22;

impl HandleBytes {
    fn new(bytes: &[u8]) -> Self {
        if bytes.len() > INLINE_HANDLE {
            return HandleBytes::Heap(bytes.into());
        }
        let mut inline = [0; INLINE_HANDLE];
        inline[..bytes.len()].copy_from_slice(bytes);
        HandleBytes::Inline {
            len: bytes.len() as u8,
            bytes: inline,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            HandleBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            HandleBytes::Heap(bytes) => bytes,
        }
    }
}

/// `MAX_HANDLE_SZ` in the kernel.
const MAX_HANDLE_SZ: usize = 128;

#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

impl Handle {
    /// The handle of the file at `path` (a final link followed).
    pub(super) fn of(path: &Path) -> io::Result<Handle> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut raw = RawHandle {
            handle_bytes: MAX_HANDLE_SZ as u32,
            handle_type: 0,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        let mut mnt_id: libc::c_int = 0;
        // SAFETY: c_path is NUL-terminated; raw has room for MAX_HANDLE_SZ
        // bytes as handle_bytes says; mnt_id is a valid out-pointer.
        let ret = unsafe {
            libc::name_to_handle_at(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                (&mut raw as *mut RawHandle).cast(),
                &mut mnt_id,
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
        Ok(Handle {
            mnt_id,
            handle_type: raw.handle_type,
            bytes: HandleBytes::new(&raw.f_handle[..len]),
        })
    }

    /// A handle saved earlier, tried on mount `mnt_id`.
    pub(super) fn from_parts(mnt_id: i32, handle_type: i32, bytes: &[u8]) -> Handle {
        Handle {
            mnt_id,
            handle_type,
            bytes: HandleBytes::new(bytes),
        }
    }

    /// The mount it was taken on.
    pub(super) fn mnt_id(&self) -> i32 {
        self.mnt_id
    }

    pub(super) fn handle_type(&self) -> i32 {
        self.handle_type
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Opens the inode `key` and says where it is now and its state.
    pub(super) fn locate(&self, key: FileKey) -> io::Result<Located> {
        let fd = self.open()?;
        let path = current_path(&fd, key);
        let state = nix::sys::stat::fstat(&fd).ok().map(|stat| {
            let mtime = stat
                .st_mtime
                .saturating_mul(1_000_000_000)
                .saturating_add(stat.st_mtime_nsec);
            (stat.st_size.max(0) as u64, mtime)
        });
        close_unseen(fd);
        Ok(Located { path, state })
    }

    /// Whether the handle opens its inode again (taken from a file known
    /// to exist): FUSE file systems without export support give handles
    /// that never do, and would make every followed inode look deleted.
    pub(super) fn reopens(&self) -> bool {
        match self.open() {
            Ok(fd) => {
                close_unseen(fd);
                true
            }
            Err(_) => false,
        }
    }

    /// Opens the inode with `O_PATH` through its mount (whose root is
    /// opened for the call only: a descriptor kept open would stop the
    /// mount from being unmounted). `ESTALE`: the inode is gone;
    /// `NotFound`: so is its mount.
    fn open(&self) -> io::Result<OwnedFd> {
        let mounts = super::devices::read_mountinfo(Path::new("/proc/self/mountinfo"))?;
        let mount = mounts
            .get(&(self.mnt_id as u64))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        // open_by_handle_at refuses an O_PATH mount descriptor (EBADF).
        let mount_fd = open_dir(&mount.mount_point)?;
        let bytes = self.bytes.as_slice();
        let mut raw = RawHandle {
            handle_bytes: bytes.len() as u32,
            handle_type: self.handle_type,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        raw.f_handle[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: mount_fd is open; raw is a valid handle buffer.
        let fd = unsafe {
            libc::open_by_handle_at(
                mount_fd.as_raw_fd(),
                (&mut raw as *mut RawHandle).cast(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        let result = if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: fd was just opened and is ours.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        close_unseen(mount_fd);
        result
    }
}

/// A live inode, opened by handle.
pub(super) struct Located {
    /// Where it is now; `None` when the kernel cannot name it (deleted
    /// but held open).
    pub(super) path: Option<PathBuf>,
    /// Its size and modification time (ns).
    pub(super) state: Option<(u64, i64)>,
}

/// Opens a directory `O_RDONLY` (not a weight file: no record).
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c_path is NUL-terminated; the result is checked.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where a live inode is now, if the kernel can name it: `None` when it
/// is deleted (nlink 0, held open by someone) or the name does not lead
/// back to it.
fn current_path(fd: &OwnedFd, key: FileKey) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    // A deleted file's link ends in " (deleted)"; a disconnected one is
    // not a usable path either: check it leads to the same inode.
    (super::identity(&link) == Some(key)).then_some(link)
}

/// A followed inode found gone.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Released {
    pub(super) key: FileKey,
    pub(super) path: PathBuf,
    /// Its size and modification time (ns) when last seen alive.
    pub(super) state: Option<(u64, i64)>,
}

/// Why an inode outside the roots is watched (several at once are fine).
#[derive(Debug, Clone, Default)]
pub(super) struct Kept {
    /// Its path: the policy's, or the last one the kernel named.
    pub(super) path: PathBuf,
    pub(super) policy: bool,
    /// Followed while it lives.
    pub(super) handle: Option<Handle>,
    /// Left the roots (renamed, unlinked) and kept while it lives.
    pub(super) retained: bool,
    /// Made from this watched file.
    pub(super) derived_from: Option<FileKey>,
    /// Its size and modification time (ns) when last checked: the state
    /// before an unlink, once it is gone.
    pub(super) state: Option<(u64, i64)>,
    /// For a pipe: the processes that held it when it was found; it is
    /// followed while one of them lives.
    pub(super) pipe_holders: Vec<u32>,
}

impl Kept {
    fn followed(&self) -> bool {
        self.retained || self.derived_from.is_some()
    }
}

/// What the liveness check did with one inode.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Checked {
    Alive,
    /// The inode is gone (or its mount): stop watching it.
    Gone,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Not retained or derived: the bound was reached.
    pub(super) dropped_full: u64,
    /// Not retained: no file handle on that file system.
    pub(super) unsupported: u64,
    /// Released because the inode was deleted (or its mount went away).
    pub(super) gone: u64,
}

#[derive(Debug)]
pub(super) struct Outside {
    kept: HashMap<FileKey, Kept>,
    /// Bound on followed (retained or derived) inodes.
    max_followed: usize,
    pub(super) counters: Counters,
    /// The followed set or a path in it changed since the last
    /// [`Outside::take_changed`]: time to save it.
    changed: bool,
}

/// Why an inode could not be followed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// `watch.max_retained` is 0.
    Off,
    Full,
    NoHandle,
}

impl Outside {
    pub(super) fn new(max_followed: usize) -> Self {
        Self {
            kept: HashMap::new(),
            max_followed,
            counters: Counters::default(),
            changed: false,
        }
    }

    pub(super) fn get(&self, key: &FileKey) -> Option<&Kept> {
        self.kept.get(key)
    }

    pub(super) fn contains(&self, key: &FileKey) -> bool {
        self.kept.contains_key(key)
    }

    /// Whether `key` is a followed pipe.
    pub(super) fn is_pipe(&self, key: &FileKey) -> bool {
        self.kept
            .get(key)
            .is_some_and(|kept| !kept.pipe_holders.is_empty())
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &FileKey> {
        self.kept.keys()
    }

    /// Names a followed inode's new path (a policy file keeps the
    /// policy's).
    pub(super) fn set_path(&mut self, key: &FileKey, path: &Path) {
        if let Some(kept) = self.kept.get_mut(key)
            && kept.followed()
        {
            kept.path = path.to_path_buf();
        }
    }

    pub(super) fn remove(&mut self, key: &FileKey) {
        if self.kept.remove(key).is_some_and(|k| k.followed()) {
            self.changed = true;
        }
    }

    pub(super) fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Whether the followed set changed since the last call.
    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The followed inodes, as saved across restarts.
    pub(super) fn saved(&self) -> Vec<SavedFile> {
        self.kept
            .iter()
            .filter(|(_, kept)| kept.followed())
            .filter_map(|(key, kept)| SavedFile::of(*key, kept))
            .collect()
    }

    /// Follows a saved inode found again by `handle`, now at `path`.
    pub(super) fn restore(
        &mut self,
        saved: &SavedFile,
        handle: Handle,
        path: PathBuf,
    ) -> Result<(), Refused> {
        let kept = self.admit(saved.key(), Some(handle), &path)?;
        kept.retained |= saved.retained;
        if kept.derived_from.is_none() {
            kept.derived_from = saved.derived_from.map(|[dev, ino]| FileKey { dev, ino });
        }
        Ok(())
    }

    /// Makes room to follow `key` by `handle`, last seen at `path` (kept
    /// as its path unless the policy names it): the checks every way of
    /// following shares, each refusal counted.
    fn admit(
        &mut self,
        key: FileKey,
        handle: Option<Handle>,
        path: &Path,
    ) -> Result<&mut Kept, Refused> {
        if self.max_followed == 0 {
            return Err(Refused::Off);
        }
        let Some(handle) = handle else {
            self.counters.unsupported += 1;
            return Err(Refused::NoHandle);
        };
        if !self.room_for(&key) {
            self.counters.dropped_full += 1;
            return Err(Refused::Full);
        }
        self.changed = true;
        let kept = self.kept.entry(key).or_default();
        kept.handle = Some(handle);
        if !kept.policy {
            kept.path = path.to_path_buf();
        }
        Ok(kept)
    }

    /// Number of retained and derived inodes.
    pub(super) fn followed(&self) -> (usize, usize) {
        self.kept.values().fold((0, 0), |(r, d), k| {
            (
                r + usize::from(k.retained),
                d + usize::from(k.derived_from.is_some()),
            )
        })
    }

    /// Makes `files` the policy's set: keys of the old set not in the new
    /// one lose the policy reason (and go with their last reason).
    pub(super) fn set_policy(&mut self, files: &[(FileKey, PathBuf)]) {
        for kept in self.kept.values_mut() {
            kept.policy = false;
        }
        for (key, path) in files {
            let kept = self.kept.entry(*key).or_default();
            kept.policy = true;
            if !kept.followed() {
                kept.path = path.clone();
            }
        }
        self.kept.retain(|_, k| k.policy || k.followed());
    }

    fn room_for(&self, key: &FileKey) -> bool {
        self.kept.get(key).is_some_and(Kept::followed)
            || self.kept.values().filter(|k| k.followed()).count() < self.max_followed
    }

    /// Keeps `key`, which just left the roots, while its inode lives.
    /// `handle` was taken while it was watched; `last_path` is its last
    /// watched path.
    pub(super) fn retain(
        &mut self,
        key: FileKey,
        handle: Option<Handle>,
        last_path: &Path,
    ) -> Result<(), Refused> {
        let kept = self.admit(key, handle, last_path)?;
        kept.retained = true;
        Ok(())
    }

    /// Follows the pipe `key` (named `name`), which a copy of `from` went
    /// into, while one of `holders` lives.
    pub(super) fn follow_pipe(
        &mut self,
        key: FileKey,
        name: &Path,
        from: FileKey,
        holders: Vec<u32>,
    ) -> Result<(), Refused> {
        if self.max_followed == 0 {
            return Err(Refused::Off);
        }
        if !self.room_for(&key) {
            self.counters.dropped_full += 1;
            return Err(Refused::Full);
        }
        let kept = self.kept.entry(key).or_default();
        kept.path = name.to_path_buf();
        kept.derived_from = Some(from);
        kept.pipe_holders = holders;
        Ok(())
    }

    /// Follows `key` at `path` (its size and modification time `state`)
    /// as derived from `from`.
    pub(super) fn derive(
        &mut self,
        key: FileKey,
        path: &Path,
        from: FileKey,
        state: (u64, i64),
    ) -> Result<(), Refused> {
        let handle = Handle::of(path).ok().filter(Handle::reopens);
        let kept = self.admit(key, handle, path)?;
        kept.derived_from = Some(from);
        kept.state = Some(state);
        Ok(())
    }

    /// Checks whether a followed inode still lives, updating its path and
    /// state. A followed inode back under the roots (`in_roots`) stops
    /// being retained (the index names it again); one that is gone loses
    /// its followed reasons. Returns the keys that lost their last reason,
    /// with their last path and state.
    pub(super) fn check(&mut self, in_roots: impl Fn(&FileKey) -> bool) -> Vec<Released> {
        let mut released = Vec::new();
        for (key, kept) in &mut self.kept {
            let checked = check_kept(key, kept, &in_roots, &mut self.counters, &mut self.changed);
            if checked == Checked::Gone && !kept.policy {
                released.push(Released {
                    key: *key,
                    path: kept.path.clone(),
                    state: kept.state,
                });
            }
        }
        self.kept.retain(|_, k| k.policy || k.followed());
        released
    }

    /// [`Outside::check`] for one key; true when it was released.
    pub(super) fn check_one(&mut self, key: &FileKey, in_roots: impl Fn(&FileKey) -> bool) -> bool {
        let Some(kept) = self.kept.get_mut(key) else {
            return false;
        };
        let gone = check_kept(key, kept, &in_roots, &mut self.counters, &mut self.changed)
            == Checked::Gone;
        if !kept.policy && !kept.followed() {
            self.kept.remove(key);
        }
        gone
    }
}

/// Checks one kept inode; `changed` is set when it stops being followed
/// or moved (what the saved state holds).
fn check_kept(
    key: &FileKey,
    kept: &mut Kept,
    in_roots: &impl Fn(&FileKey) -> bool,
    counters: &mut Counters,
    changed: &mut bool,
) -> Checked {
    if !kept.followed() {
        return Checked::Alive;
    }
    if !kept.pipe_holders.is_empty() {
        return check_pipe(kept, counters);
    }
    if kept.retained && kept.derived_from.is_none() && in_roots(key) {
        kept.retained = false;
        kept.handle = None;
        *changed = true;
        return Checked::Alive;
    }
    let state = match kept.handle.as_ref().map(|h| h.locate(*key)) {
        Some(Ok(Located { path, state: stat })) => {
            if let Some(path) = path
                && path != kept.path
            {
                kept.path = path;
                *changed = true;
            }
            kept.state = stat;
            Checked::Alive
        }
        Some(Err(error)) if error.raw_os_error() == Some(libc::ESTALE) => Checked::Gone,
        Some(Err(error)) if error.kind() == io::ErrorKind::NotFound => Checked::Gone,
        Some(Err(error)) => {
            tracing::debug!(dev = key.dev, ino = key.ino, %error, "cannot check a retained inode; kept until the next check");
            Checked::Alive
        }
        None => Checked::Gone,
    };
    if state == Checked::Gone {
        counters.gone += 1;
        kept.retained = false;
        kept.derived_from = None;
        kept.handle = None;
        *changed = true;
    }
    state
}

/// A followed pipe lives while a process that held it does (a pid
/// reused meanwhile keeps it a little longer: harmless).
fn check_pipe(kept: &mut Kept, counters: &mut Counters) -> Checked {
    kept.pipe_holders
        .retain(|pid| Path::new("/proc").join(pid.to_string()).exists());
    if !kept.pipe_holders.is_empty() {
        return Checked::Alive;
    }
    counters.gone += 1;
    kept.derived_from = None;
    Checked::Gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(path: &Path) -> FileKey {
        super::super::identity(path).expect("stat")
    }

    #[test]
    fn handle_bytes_keep_every_length_exactly() {
        for len in [0, 8, INLINE_HANDLE, INLINE_HANDLE + 1, MAX_HANDLE_SZ] {
            let bytes: Vec<u8> = (1..=len as u8).collect();
            let kept = HandleBytes::new(&bytes);
            assert_eq!(kept.as_slice(), &bytes[..], "length {len}");
            assert_eq!(
                matches!(kept, HandleBytes::Inline { .. }),
                len <= INLINE_HANDLE
            );
        }
        assert_eq!(std::mem::size_of::<Handle>(), 32);
    }

    #[test]
    fn a_retained_inode_lives_while_any_link_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("elsewhere"));
        std::fs::write(&a, b"weights").expect("write");
        let key = key_of(&a);
        let Ok(handle) = Handle::of(&a) else {
            eprintln!("skipped: no file handles on the temp dir's file system");
            return;
        };
        std::fs::hard_link(&a, &b).expect("link");
        std::fs::remove_file(&a).expect("unlink");

        let mut outside = Outside::new(1);
        assert_eq!(outside.retain(key, Some(handle.clone()), &a), Ok(()));
        assert_eq!(outside.followed(), (1, 0));
        assert!(outside.check(|_| false).is_empty());
        assert_eq!(outside.get(&key).map(|k| k.path.clone()), Some(b.clone()));

        // The bound holds: a second inode is refused and counted.
        let c = dir.path().join("c.gguf");
        std::fs::write(&c, b"more").expect("write");
        let other = Handle::of(&c).expect("handle");
        assert_eq!(
            outside.retain(key_of(&c), Some(other), &c),
            Err(Refused::Full)
        );
        assert_eq!(outside.retain(key_of(&c), None, &c), Err(Refused::NoHandle));
        assert_eq!(outside.counters.dropped_full, 1);
        assert_eq!(outside.counters.unsupported, 1);

        std::fs::remove_file(&b).expect("unlink");
        let released = outside.check(|_| false);
        assert_eq!(
            released
                .iter()
                .map(|r| (r.key, r.path.clone(), r.state.map(|s| s.0)))
                .collect::<Vec<_>>(),
            vec![(key, b, Some(7))],
            "its last path and size"
        );
        assert!(!outside.contains(&key));
        assert_eq!(outside.counters.gone, 1);
    }

    #[test]
    fn a_pipe_is_followed_while_a_holder_lives_and_never_saved() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let holder = child.id();
        let pipe = FileKey { dev: 15, ino: 4242 };
        let from = FileKey { dev: 1, ino: 2 };
        let mut outside = Outside::new(2);
        let name = Path::new("pipe:[4242]");
        assert_eq!(outside.follow_pipe(pipe, name, from, vec![holder]), Ok(()));
        assert!(outside.is_pipe(&pipe));
        assert_eq!(outside.followed(), (0, 1));
        assert!(
            outside.saved().is_empty(),
            "a pipe does not outlive its processes"
        );
        assert!(outside.check(|_| false).is_empty());
        // The bound is shared with the other followed inodes.
        assert_eq!(
            outside.follow_pipe(FileKey { dev: 15, ino: 1 }, name, from, vec![holder]),
            Ok(())
        );
        assert_eq!(
            outside.follow_pipe(FileKey { dev: 15, ino: 2 }, name, from, vec![holder]),
            Err(Refused::Full)
        );

        child.kill().expect("kill");
        child.wait().expect("wait");
        let released = outside.check(|_| false);
        assert_eq!(released.len(), 2);
        assert!(!outside.contains(&pipe) && !outside.is_pipe(&pipe));
        assert_eq!(outside.counters.gone, 2);
    }

    #[test]
    fn policy_reasons_outlive_retention_and_back_under_the_roots_ends_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.gguf");
        std::fs::write(&a, b"weights").expect("write");
        let key = key_of(&a);
        let Ok(handle) = Handle::of(&a) else {
            return;
        };
        let mut outside = Outside::new(8);
        outside.set_policy(&[(key, a.clone())]);
        assert_eq!(outside.retain(key, Some(handle), &a), Ok(()));
        assert!(outside.check(|_| true).is_empty(), "back under the roots");
        assert_eq!(outside.followed(), (0, 0));
        assert!(outside.contains(&key), "still the policy's");
        outside.set_policy(&[]);
        assert!(!outside.contains(&key));
    }
}
