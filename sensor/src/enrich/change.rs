//! Tampering records: the kernel's change records turned into
//! `write_open`, `truncate`, `rename`, `unlink`, `set_attributes`, `link`
//! and `create` events.
//!
//! Descriptor operations arrive decided (the kernel looked the inode up in
//! the watch map), and so do creates by an open (the kernel found the new
//! file's directory among the watched ones: `create` when the watch
//! patterns take it for a weight file). Path operations arrive for every
//! successful call on the host whose paths pass the kernel's name
//! prefilter, with the path strings and the identity of the directory a
//! relative path starts from; here they are resolved to absolute paths and
//! matched against the watch set. A new name under the roots for an inode
//! that was not watched before (moved or hard-linked in, `mknod`,
//! `symlink`) is a `create`. The caller first applies every queued inotify
//! event: the kernel sent the record after the change's inotify event was
//! queued, so the watch set then already shows the change, and a path that
//! left it (unlink, rename) is found among its recent removals with the
//! inode's state before.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sensor_common::{ChangeEvent, FileKey, change_flag, header_flag, watch_flag};

use super::events::Enricher;
use super::watch::{self, WatchSet};
use crate::event::{
    Access, AccessDetail, Action, ChangeDetail, ChangeSyscall, EntryType, Event, File, FileState,
    Replaced, SyscallAbi, Text, Timestamp,
};

const O_TRUNC: u64 = 0o1000;
const AT_FDCWD: i32 = -100;
/// How long before its record a change's inotify event can have been
/// applied: the syscall's own duration, generously.
const MATCH_SLACK_NS: u64 = 1_000_000_000;

/// What became of a path record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOutcome {
    /// It named a watched file: an event.
    Matched,
    /// It named no watched file (nearly all of them).
    Unwatched,
    /// A relative path whose starting directory the agent could not name
    /// (the process and its directory were gone): who, but not which.
    Unresolved,
}

fn state(key: &FileKey, size: u64, mtime_ns: i64) -> FileState {
    FileState {
        ino: key.ino,
        size,
        mtime: Some(Timestamp::from_unix_ns(i128::from(mtime_ns))),
    }
}

fn kernel_state(key: &FileKey, s: &sensor_common::FileState) -> FileState {
    let ns = i128::from(s.mtime_sec) * 1_000_000_000 + i128::from(s.mtime_nsec);
    FileState {
        ino: key.ino,
        size: s.size,
        mtime: Some(Timestamp::from_unix_ns(ns)),
    }
}

/// The file at `path` now (links followed), if it is `key` (or any file,
/// when `key` is `None`).
fn stat_state(path: &Path, key: Option<FileKey>) -> Option<(FileKey, FileState)> {
    let meta = std::fs::metadata(path).ok()?;
    let found = watch::key_at(path, &meta);
    if key.is_some_and(|k| k != found) {
        return None;
    }
    Some((found, state(&found, meta.len(), watch::mtime_ns(&meta))))
}

/// `path` with `.` and `..` taken out lexically (symbolic links in it are
/// not followed: a path through a directory link is compared as written).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where `/proc/PID/<link>` points, if it is still the directory `base`.
fn proc_dir(pid: u32, link: &str, base: &FileKey) -> Option<PathBuf> {
    let path = PathBuf::from(format!("/proc/{pid}/{link}"));
    (watch::identity(&path) == Some(*base))
        .then(|| std::fs::read_link(&path).ok())
        .flatten()
}

/// One path argument of a record.
struct RawPath<'a> {
    bytes: &'a [u8],
    dirfd: i32,
    base: FileKey,
}

impl RawPath<'_> {
    /// The absolute path, `Err(())` when a relative path's starting
    /// directory cannot be named; `Ok(None)` for an empty path
    /// (`AT_EMPTY_PATH`: the call acted on `dirfd`'s file).
    fn resolve(&self, pid: u32, watch: &WatchSet) -> Result<Option<PathBuf>, ()> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let path = Path::new(OsStr::from_bytes(self.bytes));
        if path.is_absolute() {
            return Ok(Some(normalize(path)));
        }
        let link = if self.dirfd == AT_FDCWD {
            String::from("cwd")
        } else {
            format!("fd/{}", self.dirfd)
        };
        let dir = proc_dir(pid, &link, &self.base).or_else(|| watch.dir_path(&self.base));
        match dir {
            Some(dir) => Ok(Some(normalize(&dir.join(path)))),
            None => Err(()),
        }
    }
}

fn path_bytes(buf: &[u8], len: u32) -> &[u8] {
    &buf[..(len as usize).min(buf.len())]
}

/// Whether `key` was watched before it got the name `to`: under another
/// watched path, or followed outside the roots.
fn watched_elsewhere(watch: &WatchSet, key: &FileKey, to: &Path) -> bool {
    watch.is_outside(key) || watch.paths_of(key).iter().any(|p| p != to)
}

/// What kind of entry is at `path` now (not following a final link).
fn entry_type(path: &Path) -> Option<EntryType> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    EntryType::from_mode(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()))
}

/// `mknod`'s device argument (`new_encode_dev`, as `stat`'s `st_rdev`) in
/// the kernel's encoding (`major << 20 | minor`), as file devices are.
fn device_number(dev: u64) -> u64 {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major << 20) | minor
}

impl Enricher {
    /// A descriptor change the kernel decided: always an event, but for a
    /// created file the watch patterns do not take for a weight file.
    pub fn fd_change(&mut self, c: &ChangeEvent, watch: &WatchSet) -> Option<Event> {
        let syscall = ChangeSyscall::from_raw(c.syscall)?;
        if c.flags & change_flag::CREATED != 0 {
            return self.created(c, syscall, watch);
        }
        let key = c.file;
        let mut detail = ChangeDetail {
            syscall,
            fd: Some(c.fd),
            result: c.ret,
            ..ChangeDetail::default()
        };
        let action = match syscall.base() {
            ChangeSyscall::Ftruncate => {
                detail.length = Some(c.arg);
                Action::Truncate
            }
            ChangeSyscall::Fchmod => {
                detail.mode = Some(c.arg as u32);
                Action::SetAttributes
            }
            ChangeSyscall::Fchown => {
                detail.uid = Some(c.arg as u32);
                detail.gid = Some(c.arg2 as u32);
                Action::SetAttributes
            }
            _ => {
                // An open: its state before is gone (O_TRUNC) or unchanged
                // yet; the watch set's last sight of the file stands in.
                detail.flags = Some(c.arg as u32);
                detail.before = watch
                    .state_before(&key, c.header.boot_ns)
                    .map(|(size, mtime)| state(&key, size, mtime));
                if c.arg & O_TRUNC != 0 {
                    Action::Truncate
                } else {
                    Action::WriteOpen
                }
            }
        };
        if c.flags & change_flag::BEFORE != 0 {
            detail.before = Some(kernel_state(&key, &c.before));
        }
        if c.flags & change_flag::AFTER != 0 {
            detail.after = Some(kernel_state(&key, &c.after));
        }
        let path = watch.path_of(&key).map(Text::from);
        Some(self.change_event(action, c, key, path, detail, watch))
    }

    /// A file an open created in (or a few levels below) a watched
    /// directory: `base2` is its directory, `path` the name it was created
    /// with. An event when that path is a weight file's. The name the
    /// kernel read decides, not where the file is now: a file created as
    /// `x.tmp` and renamed over a weight file before this record was
    /// handled is that rename's record (with `replaced`), not a create.
    fn created(
        &mut self,
        c: &ChangeEvent,
        syscall: ChangeSyscall,
        watch: &WatchSet,
    ) -> Option<Event> {
        let key = c.file;
        let name = OsStr::from_bytes(path_bytes(&c.path, c.path_len));
        let path = watch.tree_dir_path(&c.base2).map(|d| d.join(name));
        let weight_name = match &path {
            Some(p) => watch.is_weight_path(p),
            // A directory the agent cannot name yet (made a moment ago,
            // below a watched one): the name alone.
            None => watch.may_be_weight_name(name),
        };
        if !weight_name {
            return None;
        }
        let path = path.or_else(|| watch.path_of(&key).map(Path::to_path_buf));
        let detail = ChangeDetail {
            syscall,
            fd: Some(c.fd),
            flags: (c.arg != 0).then_some(c.arg as u32),
            after: (c.flags & change_flag::AFTER != 0).then(|| kernel_state(&key, &c.after)),
            file_type: Some(EntryType::Regular),
            // The descriptor is `fd`; the result says the open succeeded.
            result: c.ret.min(0),
            ..ChangeDetail::default()
        };
        let path = path.as_deref().map(Text::from);
        Some(self.change_event(Action::Create, c, key, path, detail, watch))
    }

    /// A path change: an event when it named a watched file.
    pub fn path_change(
        &mut self,
        c: &ChangeEvent,
        watch: &mut WatchSet,
    ) -> (Option<Event>, PathOutcome) {
        let Some(syscall) = ChangeSyscall::from_raw(c.syscall) else {
            return (None, PathOutcome::Unwatched);
        };
        let pid = c.header.tgid;
        let first = RawPath {
            bytes: path_bytes(&c.path, c.path_len),
            dirfd: c.fd,
            base: c.file,
        };
        let second = RawPath {
            bytes: path_bytes(&c.path2, c.path2_len),
            dirfd: c.fd2,
            base: c.base2,
        };
        // An io_uring request is matched as the syscall it stands for.
        let op = syscall.base();
        let two_paths = matches!(
            op,
            ChangeSyscall::Rename
                | ChangeSyscall::Renameat
                | ChangeSyscall::Renameat2
                | ChangeSyscall::Link
                | ChangeSyscall::Linkat
                | ChangeSyscall::Symlink
                | ChangeSyscall::Symlinkat
        );
        // A symbolic link's first string is its contents, not a path the
        // call resolved.
        let symlink = matches!(op, ChangeSyscall::Symlink | ChangeSyscall::Symlinkat);
        if symlink {
            let raw = path_bytes(&c.path, c.path_len);
            return match second.resolve(pid, watch) {
                Ok(Some(link)) => self.symlink_created(c, syscall, raw, link, watch),
                Ok(None) => (None, PathOutcome::Unwatched),
                Err(()) => (None, PathOutcome::Unresolved),
            };
        }
        let new = if two_paths {
            second.resolve(pid, watch)
        } else {
            Ok(None)
        };
        // A second path whose directory is gone (a descriptor closed, the
        // process exited) is kept as given: the first may still name a
        // watched file, whose record must not be lost.
        let new_unknown = new.is_err();
        let new = new.or_else(|()| match first.resolve(pid, watch) {
            Ok(_) => Ok(Some(PathBuf::from(OsStr::from_bytes(second.bytes)))),
            Err(()) => Err(()),
        });
        let (Ok(old), Ok(new)) = (first.resolve(pid, watch), new) else {
            // Only a name that could be a weight file's is a possible miss.
            let named = |p: &RawPath| {
                Path::new(OsStr::from_bytes(p.bytes))
                    .file_name()
                    .is_some_and(|n| watch.may_be_weight_name(n))
            };
            return if named(&first) || (two_paths && named(&second)) {
                (None, PathOutcome::Unresolved)
            } else {
                (None, PathOutcome::Unwatched)
            };
        };
        let not_before = c.header.boot_ns.saturating_sub(MATCH_SLACK_NS);
        let weight =
            |watch: &WatchSet, key: &FileKey| watch.flags_of(key) & watch_flag::WEIGHT != 0;
        // The file a one-path call acted on: the path's, or dirfd's own
        // for an empty path.
        let target = |watch: &WatchSet, path: &Option<PathBuf>, base: FileKey| match path {
            Some(p) => watch.key_at(p).or_else(|| watch.outside_at(p)),
            None => Some(base).filter(|k| weight(watch, k)),
        };
        let indexed = |watch: &WatchSet, key: &FileKey| {
            watch
                .state_before(key, c.header.boot_ns)
                .map(|(size, mtime)| state(key, size, mtime))
        };
        let mut detail = ChangeDetail {
            syscall,
            result: c.ret,
            ..ChangeDetail::default()
        };
        let flags = |v: u64| (v != 0).then_some(v as u32);
        let (action, key, path) = match op {
            ChangeSyscall::Unlink | ChangeSyscall::Unlinkat => {
                detail.flags = flags(c.arg);
                let Some(old) = old else {
                    return (None, PathOutcome::Unwatched);
                };
                match watch.take_gone(&old, not_before) {
                    Some(gone) => {
                        detail.before = Some(state(&gone.key, gone.size, gone.mtime_ns));
                        (Action::Unlink, gone.key, Some(gone.path))
                    }
                    // A file followed outside the roots, not found gone
                    // yet: its state before is not known.
                    None => match watch.outside_at(&old) {
                        Some(key) => (Action::Unlink, key, Some(old)),
                        None => return (None, PathOutcome::Unwatched),
                    },
                }
            }
            ChangeSyscall::Rename | ChangeSyscall::Renameat | ChangeSyscall::Renameat2 => {
                detail.flags = flags(c.arg);
                let (Some(from), Some(to)) = (old.clone(), new.clone()) else {
                    return (None, PathOutcome::Unwatched);
                };
                let moved = watch.take_gone(&from, not_before);
                // With its directory unknown, where it landed is where the
                // watch set follows it now (retained outside the roots).
                let to = match (new_unknown, &moved) {
                    (true, Some(g)) => watch.path_of(&g.key).map_or(to, Path::to_path_buf),
                    _ => to,
                };
                let replaced = watch.take_gone(&to, not_before);
                let after = stat_state(&to, moved.as_ref().map(|g| g.key));
                let (key, before) = match (&moved, &after) {
                    (Some(g), _) => (g.key, Some(state(&g.key, g.size, g.mtime_ns))),
                    // An unwatched file renamed onto a watched name, or into
                    // the roots with a weight name: it is watched now.
                    (None, Some((key, now))) if weight(watch, key) || replaced.is_some() => {
                        (*key, Some(*now))
                    }
                    // A file followed outside the roots, renamed and gone
                    // again before the record was handled.
                    (None, None) => match watch.outside_at(&from) {
                        Some(key) => (key, None),
                        None => return (None, PathOutcome::Unwatched),
                    },
                    _ => return (None, PathOutcome::Unwatched),
                };
                // A file no one watched before, moved in without replacing
                // a watched one: it appeared.
                let appeared =
                    moved.is_none() && replaced.is_none() && !watched_elsewhere(watch, &key, &to);
                detail.after = after.map(|(_, s)| s);
                detail.replaced = replaced.map(|g| Replaced {
                    dev: g.key.dev,
                    state: state(&g.key, g.size, g.mtime_ns),
                    path: Some(Text::from(g.path.as_path())),
                });
                detail.old_path = Some(Text::from(from.as_path()));
                detail.new_path = Some(Text::from(to.as_path()));
                if appeared {
                    detail.file_type = entry_type(&to);
                    (Action::Create, key, Some(to))
                } else {
                    if watch.is_outside(&key) && !watch.under_roots(&to) {
                        watch.moved_outside(&key, &to);
                    }
                    detail.before = before;
                    // Where it is now: a file renamed out of the roots
                    // stays watched (docs/architecture.md), under its new
                    // name.
                    (Action::Rename, key, Some(to))
                }
            }
            ChangeSyscall::Link | ChangeSyscall::Linkat => {
                detail.flags = flags(c.arg);
                let Some(to) = new.clone() else {
                    return (None, PathOutcome::Unwatched);
                };
                let source = target(watch, &old, c.file).filter(|k| weight(watch, k));
                // The new name's directory unknown: the linked file is the
                // watched one the first path names, as it is now.
                let linked = match (new_unknown, source) {
                    (true, Some(key)) => old
                        .as_deref()
                        .and_then(|p| stat_state(p, Some(key)))
                        .or_else(|| indexed(watch, &key).map(|s| (key, s))),
                    _ => stat_state(&to, source),
                };
                let Some((key, now)) = linked else {
                    return (None, PathOutcome::Unwatched);
                };
                if !weight(watch, &key) {
                    return (None, PathOutcome::Unwatched);
                }
                detail.after = Some(now);
                detail.old_path = old.as_deref().map(Text::from);
                detail.new_path = Some(Text::from(to.as_path()));
                if source.is_none() && !watched_elsewhere(watch, &key, &to) {
                    // A file no one watched linked in: it appeared.
                    detail.file_type = Some(EntryType::Regular);
                    (Action::Create, key, Some(to))
                } else {
                    detail.before = Some(now);
                    (
                        Action::Link,
                        key,
                        watch.path_of(&key).map(Path::to_path_buf),
                    )
                }
            }
            ChangeSyscall::Mknod | ChangeSyscall::Mknodat => {
                let Some(path) = old else {
                    return (None, PathOutcome::Unwatched);
                };
                if !watch.under_roots(&path)
                    || (watch.key_at(&path).is_none() && !watch.is_weight_path(&path))
                {
                    return (None, PathOutcome::Unwatched);
                }
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    return (None, PathOutcome::Unwatched);
                };
                let key = watch::key_of(&meta);
                let mode = c.arg as u32;
                // mknod with no type bits makes a regular file.
                let kind = EntryType::from_mode(mode).unwrap_or(EntryType::Regular);
                detail.mode = Some(mode);
                detail.file_type = Some(kind);
                if matches!(kind, EntryType::CharDevice | EntryType::BlockDevice) {
                    detail.rdev = Some(device_number(c.arg2));
                }
                detail.after = Some(state(&key, meta.len(), watch::mtime_ns(&meta)));
                (Action::Create, key, Some(path))
            }
            _ => {
                let Some(key) = target(watch, &old, c.file) else {
                    return (None, PathOutcome::Unwatched);
                };
                let action = match op {
                    ChangeSyscall::Truncate => {
                        detail.length = Some(c.arg);
                        Action::Truncate
                    }
                    ChangeSyscall::Chmod | ChangeSyscall::Fchmodat | ChangeSyscall::Fchmodat2 => {
                        detail.mode = Some(c.arg as u32);
                        detail.flags = flags(c.arg2);
                        Action::SetAttributes
                    }
                    _ => {
                        detail.uid = Some(c.arg as u32);
                        detail.gid = Some(c.arg2 as u32);
                        detail.flags = flags(c.arg2 >> 32);
                        Action::SetAttributes
                    }
                };
                detail.before = indexed(watch, &key);
                let path = watch.path_of(&key).map(Path::to_path_buf);
                detail.after = path
                    .as_deref()
                    .or(old.as_deref())
                    .and_then(|p| stat_state(p, Some(key)))
                    .map(|(_, s)| s);
                (action, key, path)
            }
        };
        let path = path.as_deref().map(Text::from);
        let event = self.change_event(action, c, key, path, detail, watch);
        (Some(event), PathOutcome::Matched)
    }

    /// A symbolic link made under the roots with a weight file's name:
    /// `file` is what it leads to when that is a regular file (the watch
    /// set follows it), else the link itself; `old_path` is its contents.
    fn symlink_created(
        &mut self,
        c: &ChangeEvent,
        syscall: ChangeSyscall,
        contents: &[u8],
        link: PathBuf,
        watch: &WatchSet,
    ) -> (Option<Event>, PathOutcome) {
        if !watch.under_roots(&link) || !watch.is_weight_path(&link) {
            return (None, PathOutcome::Unwatched);
        }
        let found = match watch.key_at(&link) {
            Some(key) => stat_state(&link, Some(key)),
            None => std::fs::symlink_metadata(&link).ok().map(|meta| {
                let key = watch::key_of(&meta);
                (key, state(&key, meta.len(), watch::mtime_ns(&meta)))
            }),
        };
        let Some((key, after)) = found else {
            return (None, PathOutcome::Unwatched);
        };
        let detail = ChangeDetail {
            syscall,
            result: c.ret,
            after: Some(after),
            old_path: Some(Text::from(contents)),
            new_path: Some(Text::from(link.as_path())),
            file_type: Some(EntryType::Symlink),
            ..ChangeDetail::default()
        };
        let path = Some(Text::from(link.as_path()));
        let event = self.change_event(Action::Create, c, key, path, detail, watch);
        (Some(event), PathOutcome::Matched)
    }

    fn change_event(
        &mut self,
        action: Action,
        c: &ChangeEvent,
        key: FileKey,
        path: Option<Text>,
        detail: ChangeDetail,
        watch: &WatchSet,
    ) -> Event {
        let h = &c.header;
        let mut event = self.base_event(action, h);
        let size = detail
            .after
            .or(detail.before)
            .map_or(0, |s: FileState| s.size);
        event.file = Some(File {
            path,
            dev: key.dev,
            ino: key.ino,
            size,
            derived_from: super::events::derived_from(watch, &key),
        });
        event.access = Some(Access {
            abi: if h.flags & header_flag::COMPAT_SYSCALL != 0 {
                SyscallAbi::Ia32
            } else {
                SyscallAbi::Native
            },
            detail: AccessDetail::Change(Box::new(detail)),
        });
        event
    }
}
