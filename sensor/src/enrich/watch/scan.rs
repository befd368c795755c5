//! Walking a directory tree under a watch root: puts an inotify watch on
//! every directory and collects the weight files found, without touching
//! the index or the kernel map (the caller merges the result).
//!
//! Each directory is watched *before* it is read, so a file created while
//! the walk runs is either seen by the read or reported by inotify.
//! Symbolic links to directories are never followed below the top
//! directory: they could lead out of the tree or into a loop. A symbolic
//! link whose own name has a weight extension is resolved (stat'ed, never
//! walked into): when it leads to a regular file, that file is reported
//! under the link's path, which is how the Hugging Face hub cache's
//! `snapshots/<rev>/model.safetensors -> ../../blobs/<sha256>` is seen.
//! Mount points are crossed (keys carry the device); a set of visited
//! directory inodes stops bind-mount loops.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, Inotify, WatchDescriptor};
use sensor_common::FileKey;
use tracing::{debug, warn};

use super::devices;
use super::pattern::Extensions;

/// A weight file found by a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) key: FileKey,
    pub(super) size: u64,
    /// Modification time, ns since the epoch.
    pub(super) mtime_ns: i64,
    /// `stat()`'s device, whose translation into `key.dev` the kernel
    /// confirms (`confirm.rs`).
    pub(super) st_dev: u64,
}

/// A file's modification time in ns since the epoch.
pub fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// One inotify watch. A directory can be both under a root and a GPU
/// pattern's parent: the kernel gives one inode one descriptor.
#[derive(Debug)]
pub(super) struct DirWatch {
    /// Its path under a root when `tree`, else the GPU directory's path.
    pub(super) path: PathBuf,
    pub(super) tree: bool,
    pub(super) gpu: bool,
    /// Its identity as the kernel sees it, when `tree` (`WATCHED_DIRS`).
    pub(super) key: Option<FileKey>,
}

/// A directory a walk watched.
#[derive(Debug)]
pub(super) struct WalkedDir {
    pub(super) wd: WatchDescriptor,
    pub(super) path: PathBuf,
    pub(super) key: FileKey,
}

/// What a walk found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Weight files, and weight-named links resolving to a regular file
    /// (under the link's path, with the target's key and size).
    pub(super) files: HashMap<PathBuf, Found>,
    /// Every weight-named link, resolving or dangling, with the path it
    /// points at ([`link_target`]).
    pub(super) links: HashMap<PathBuf, PathBuf>,
    /// Every directory watched, in walk order.
    pub(super) dirs: Vec<WalkedDir>,
    /// Directories below the top that could not be listed.
    pub(super) unreadable_dirs: u64,
    /// Directories below the top that could not be watched.
    pub(super) watch_failures: u64,
}

/// Why the top directory of a walk could not be walked.
#[derive(Debug)]
pub(super) enum TopError {
    Missing,
    NotDirectory,
    Stat(io::Error),
    Watch(Errno),
    Read(io::Error),
}

enum Watched {
    New,
    Alias,
}

/// The events a watched tree directory reports.
pub(super) fn tree_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// The file key of `meta`, in the kernel's encoding: `st_dev` translated
/// to the superblock's device where a walk or [`identity`] learned it
/// (`devices.rs`).
pub fn key_of(meta: &fs::Metadata) -> FileKey {
    FileKey {
        dev: devices::translate(meta.dev()),
        ino: meta.ino(),
    }
}

/// The key of the file at `path` whose `stat()` (`follow`ing a final link
/// or not) gave `meta`, learning its device's mount when new.
pub fn key_at(path: &Path, meta: &fs::Metadata, follow: bool) -> FileKey {
    FileKey {
        dev: devices::learn(path, meta.dev(), follow),
        ino: meta.ino(),
    }
}

/// The found file at `path` whose `stat()` gave `meta`.
pub(super) fn found_at(path: &Path, meta: &fs::Metadata, follow: bool) -> Found {
    Found {
        key: key_at(path, meta, follow),
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        st_dev: meta.dev(),
    }
}

/// The identity of the file at `path` (links followed), if it exists, as
/// the kernel programs see it.
pub fn identity(path: &std::path::Path) -> Option<FileKey> {
    fs::metadata(path)
        .ok()
        .map(|meta| key_at(path, &meta, true))
}

/// A weight-named symbolic link, read.
#[derive(Debug)]
pub(super) struct WeightLink {
    /// Where it points ([`link_target`]).
    pub(super) target: PathBuf,
    /// The regular file it resolves to; `None` when dangling or leading to
    /// anything else.
    pub(super) found: Option<Found>,
}

/// Reads the symbolic link at `path` and resolves it (the whole chain, as
/// `open` would). Fails only when `path` cannot be read as a link (gone, or
/// no longer a link); a target that cannot be stat'ed makes it dangling.
pub(super) fn read_weight_link(path: &Path) -> io::Result<WeightLink> {
    let raw = fs::read_link(path)?;
    let target = link_target(path, &raw);
    let found = match fs::metadata(path) {
        Ok(meta) if meta.is_file() => Some(found_at(path, &meta, true)),
        Ok(_) => {
            debug!(path = %path.display(), target = %raw.display(), "weight-named link does not lead to a regular file; not watched");
            None
        }
        // Dangling (the usual state of a download in progress) or a loop.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            debug!(path = %path.display(), target = %raw.display(), error = %e, "weight-named link is dangling; watched once its target appears");
            None
        }
        Err(e) => {
            warn!(path = %path.display(), target = %raw.display(), error = %e, "cannot resolve weight-named link; its target is not audited until the next rescan");
            None
        }
    };
    Ok(WeightLink { target, found })
}

/// The absolute path the link at `link` with contents `raw` points at,
/// with `.` and `..` resolved lexically. Only used to match inotify events
/// on a target to the links that point at it, so it is computed the way
/// those events name paths: below a root, whose directories are never
/// links (the walk does not follow them), `..` is exact. A target outside
/// the roots, or whose path crosses a link, is not matched by events; the
/// periodic rescan catches up with it.
pub(super) fn link_target(link: &Path, raw: &Path) -> PathBuf {
    let joined = match link.parent() {
        Some(parent) if raw.is_relative() => parent.join(raw),
        _ => raw.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The hint to show with a failed `inotify_add_watch`.
pub(super) fn watch_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::ENOSPC => "raise the fs.inotify.max_user_watches sysctl",
        Errno::EACCES | Errno::EPERM => "run as root or fix the directory's permissions",
        Errno::ENOMEM => "the kernel is out of memory",
        _ => "check that the path is a directory on a local file system",
    }
}

pub(super) struct Walker<'a> {
    inotify: &'a Inotify,
    extensions: &'a Extensions,
    /// The watch set's current watches, to recognize a directory already
    /// watched under another path.
    known: &'a HashMap<WatchDescriptor, DirWatch>,
    visited: HashSet<(u64, u64)>,
    out: Scan,
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        inotify: &'a Inotify,
        extensions: &'a Extensions,
        known: &'a HashMap<WatchDescriptor, DirWatch>,
    ) -> Self {
        Self {
            inotify,
            extensions,
            known,
            visited: HashSet::new(),
            out: Scan::default(),
        }
    }

    /// Walks the tree at `top`. For a watch root (`is_root`) a symlink at
    /// `top` itself is followed, since the user named it, and failing to
    /// watch `top` is an error; below the top, links are never followed and
    /// a directory that cannot be watched is only counted.
    /// Fails when `top` itself is missing, not a directory or unreadable;
    /// problems below it are logged and counted in the [`Scan`].
    pub(super) fn walk(&mut self, top: &Path, is_root: bool) -> Result<(), TopError> {
        let meta = if is_root {
            fs::metadata(top)
        } else {
            fs::symlink_metadata(top)
        };
        let meta = meta.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => TopError::Missing,
            _ => TopError::Stat(e),
        })?;
        if !meta.is_dir() {
            return Err(TopError::NotDirectory);
        }
        let id = (meta.dev(), meta.ino());
        if !self.visited.insert(id) {
            return Ok(());
        }
        match self.watch(top, is_root, &meta) {
            Ok(Watched::Alias) => return Ok(()),
            Ok(Watched::New) => {}
            Err(errno) if is_root => return Err(TopError::Watch(errno)),
            Err(errno) => self.watch_failed(top, errno),
        }
        let entries = fs::read_dir(top).map_err(TopError::Read)?;
        let mut pending = Vec::new();
        self.list(top, entries, &mut pending);

        while let Some(dir) = pending.pop() {
            // The entry said "directory" but it may have been replaced since;
            // lstat again so a symlink swapped in is not followed.
            let meta = match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => meta,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    debug!(path = %dir.display(), error = %e, "directory vanished during the walk");
                    continue;
                }
                Err(e) => {
                    // EACCES on a FUSE mount, EIO on a corrupt directory:
                    // a part of the tree nobody audits, so never quiet.
                    self.unreadable(&dir, &e);
                    continue;
                }
            };
            let id = (meta.dev(), meta.ino());
            if !self.visited.insert(id) {
                debug!(path = %dir.display(), "directory already walked (bind mount?); skipping");
                continue;
            }
            match self.watch(&dir, false, &meta) {
                Ok(Watched::Alias) => continue,
                Ok(Watched::New) => {}
                Err(errno) => self.watch_failed(&dir, errno),
            }
            match fs::read_dir(&dir) {
                Ok(entries) => self.list(&dir, entries, &mut pending),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => self.unreadable(&dir, &e),
            }
        }
        Ok(())
    }

    /// A directory below the top that could not be stat'ed or listed.
    fn unreadable(&mut self, dir: &Path, error: &io::Error) {
        self.out.unreadable_dirs += 1;
        warn!(
            path = %dir.display(),
            %error,
            "cannot read directory under a watch root; its weight files are not audited (run as root, fix the directory's permissions, or mount FUSE with allow_other)"
        );
    }

    /// The walk's result. Logs a summary when more than one directory could
    /// not be watched (only the first is logged individually).
    pub(super) fn finish(self) -> Scan {
        if self.out.watch_failures > 1 {
            warn!(
                count = self.out.watch_failures,
                "directories could not be watched with inotify ({})",
                watch_hint(Errno::ENOSPC)
            );
        }
        self.out
    }

    /// The directory's files are still indexed, so they are audited; only
    /// changes below it go unnoticed until the next rescan. Only the first
    /// failure of a walk is logged in full: when the watch limit is reached,
    /// every further directory fails the same way.
    fn watch_failed(&mut self, dir: &Path, errno: Errno) {
        self.out.watch_failures += 1;
        if self.out.watch_failures == 1 {
            warn!(
                path = %dir.display(),
                error = %errno,
                "cannot watch directory with inotify; changes below it are seen only by a rescan ({})",
                watch_hint(errno)
            );
        }
    }

    /// Watches `dir`, whose `stat()` is `meta`. The kernel hands back the
    /// existing descriptor for an inode already watched: under another path
    /// that still leads to this directory, `dir` is an alias (a root
    /// reached through a symlink, a bind mount) and is not walked twice,
    /// which would make the two paths fight over the descriptor. Under a
    /// path that no longer leads here, the directory moved and the caller
    /// forgets the old location.
    fn watch(&mut self, dir: &Path, follow: bool, meta: &fs::Metadata) -> Result<Watched, Errno> {
        let id = (meta.dev(), meta.ino());
        let mut mask = tree_mask();
        if !follow {
            mask |= AddWatchFlags::IN_DONT_FOLLOW;
        }
        let wd = self.inotify.add_watch(dir, mask)?;
        if let Some(known) = self.known.get(&wd)
            && known.tree
            && known.path != dir
            && fs::metadata(&known.path).is_ok_and(|m| (m.dev(), m.ino()) == id)
        {
            debug!(
                path = %dir.display(),
                watched_as = %known.path.display(),
                "directory already watched under another path; not walking it twice"
            );
            return Ok(Watched::Alias);
        }
        self.out.dirs.push(WalkedDir {
            wd,
            path: dir.to_path_buf(),
            key: key_at(dir, meta, follow),
        });
        Ok(Watched::New)
    }

    fn list(&mut self, dir: &Path, entries: fs::ReadDir, pending: &mut Vec<PathBuf>) {
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.out.unreadable_dirs += 1;
                    warn!(path = %dir.display(), error = %e, "listing a directory under a watch root failed part way");
                    return;
                }
            };
            // `file_type` does not follow symlinks, so links are never
            // descended into, and resolved only when weight-named.
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    warn!(path = %entry.path().display(), error = %e, "cannot tell the type of an entry under a watch root; it is not audited");
                    continue;
                }
            };
            if file_type.is_dir() {
                pending.push(entry.path());
            } else if file_type.is_symlink() && self.extensions.matches(&entry.file_name()) {
                self.link(entry.path());
            } else if file_type.is_file() && self.extensions.is_weight_file(dir, &entry.file_name())
            {
                let path = entry.path();
                match entry.metadata() {
                    Ok(meta) if meta.is_file() => {
                        let found = found_at(&path, &meta, false);
                        self.out.files.insert(path, found);
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot stat weight file; it is not audited");
                    }
                }
            }
        }
    }

    fn link(&mut self, path: PathBuf) {
        match read_weight_link(&path) {
            Ok(link) => {
                if let Some(found) = link.found {
                    self.out.files.insert(path.clone(), found);
                }
                self.out.links.insert(path, link.target);
            }
            // Gone since the listing, or replaced by something else: an
            // event for it is queued.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read weight-named link; its target is not audited");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_resolve_dots_lexically() {
        let t = |link: &str, raw: &str| link_target(Path::new(link), Path::new(raw));
        assert_eq!(
            t(
                "/hf/hub/models--o--n/snapshots/abc/model.safetensors",
                "../../blobs/0f1e"
            ),
            PathBuf::from("/hf/hub/models--o--n/blobs/0f1e")
        );
        assert_eq!(
            t("/hf/snapshots/abc/sub/m.gguf", "../../../blobs/x"),
            PathBuf::from("/hf/blobs/x")
        );
        assert_eq!(t("/m/a.gguf", "./b.gguf"), PathBuf::from("/m/b.gguf"));
        assert_eq!(
            t("/m/a.gguf", "/data//x/./y.gguf"),
            PathBuf::from("/data/x/y.gguf")
        );
        assert_eq!(
            t("/m/a.gguf", "/data/x/../y.gguf"),
            PathBuf::from("/data/y.gguf")
        );
        // `..` above the root stays at the root, as the kernel does.
        assert_eq!(
            t("/m/a.gguf", "../../../../b.gguf"),
            PathBuf::from("/b.gguf")
        );
    }
}
