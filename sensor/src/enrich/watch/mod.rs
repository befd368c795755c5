//! The watch set: turns the configured watch roots, weight-file extensions
//! and GPU device patterns into the kernel's `WATCHED` inode map, keeps that
//! map current while the agent runs, and answers "which path is this key?".
//!
//! The kernel identifies a file by `(device, inode)`, so that is what the
//! map holds; the paths live only here. The rules:
//!
//! - A weight file is a *regular* file under a root whose name's last
//!   extension is configured (ASCII case-insensitive).
//! - So is an Ollama blob, whatever the root: a regular file named
//!   `sha256-<64 hex>` (or `sha256:<64 hex>`, older releases) directly in
//!   a directory named `blobs`. Ollama names every blob by its digest, so
//!   the small manifest, config, template and license blobs beside the
//!   GGUF weights are watched too: a few more keys and some noise when
//!   `ollama` reads them, accepted rather than guessing by size.
//! - A symbolic link under a root whose own name has a weight extension
//!   and which resolves (the whole chain, as `open` would) to a regular
//!   file gets that file watched, wherever it is, with the *link's* path
//!   as its watched path. This is the Hugging Face hub cache:
//!   `snapshots/<rev>/model.safetensors` links to `../../blobs/<sha256>`,
//!   a file with no extension, and records name the snapshot path. Links
//!   with other names, and links to directories, are not followed. A
//!   dangling weight-named link is remembered, and watched once its target
//!   appears (the hub writes the blob first and links it last, so usually
//!   the link's own creation does it). Whoever can create links under a
//!   root can thereby get any regular file audited under a weight name:
//!   noise, never a blind spot. (A root named by a symlink is followed.)
//! - Hard links and weight-named links give one key several paths; the key
//!   stays in the map while any watched path (a file or a link) still
//!   leads to it, and [`WatchSet::path_of`] names the oldest one still
//!   present.
//! - A GPU device is whatever a pattern's `*` glob expands to (symlinks
//!   followed, directories skipped). A pattern whose only wildcard is in the
//!   last component also gets its parent directory watched, so a device
//!   node created after start (`nvidia-modprobe`) is picked up at once;
//!   other patterns are re-resolved by [`WatchSet::rescan`].
//! - A directory reachable through two roots (a root that is a symlink
//!   into another, a bind mount) is walked once and its files are named by
//!   the first path found.
//! - Roots that do not exist yet are polled for by
//!   [`WatchSet::poll_missing_roots`]; a root that disappears goes back to
//!   being polled for.
//!
//! Changes arrive through inotify; each batch of events is applied to the
//! index first and the kernel map is updated from the *net* difference, so
//! a file renamed (or a directory moved) within the tree never leaves the
//! map, not even briefly. inotify is blind to mounts and unmounts inside the
//! roots, and a rename whose two halves straddle two reads is applied as a
//! removal then an addition: the periodic [`WatchSet::rescan`] is the
//! backstop for both. A deleted file leaves the map with its last watched
//! path even if a process still holds it open.
//!
//! A link's target is followed through events on the target's own path: a
//! blob written, renamed into place, replaced or deleted re-resolves the
//! links pointing at it, as does a directory holding targets appearing or
//! vanishing; so does a change to a weight-named link that another one
//! points at. That path is worked out lexically from the link (exact below
//! a root, whose subdirectories are never links), so a target outside the
//! roots, or reached through a directory link or a link with another name,
//! is only brought up to date by the rescan.

mod confirm;
pub mod devices;
mod followed_state;
mod index;
mod names;
mod outside;
mod pattern;
mod scan;

pub use confirm::{KernelIdentity, Probed, ProcfsIdentity, close_unseen, open_and_stat, open_path};
pub use followed_state::{FILE_NAME as FOLLOWED_STATE_FILE, StateError};
pub use scan::{identity, key_of, mtime_ns};

/// The kernel's key for the file at `path` that `stat()` (a final link
/// followed) described as `meta`, its device's mount learned when new
/// (btrfs, overlayfs: `st_dev` is not the kernel's device).
pub fn key_at(path: &Path, meta: &std::fs::Metadata) -> FileKey {
    scan::key_at(path, meta, true)
}

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use sensor_common::{FileKey, WatchEntry, watch_flag};
use tracing::{debug, info, warn};

use self::confirm::Confirmations;
use self::index::{Index, Links};
use self::names::PathNames;
use self::outside::{Handle, Outside, Refused, Released};
use self::pattern::{Extensions, GpuPattern};
use self::scan::{
    DirWatch, Found, Scan, TopError, WalkedDir, Walker, found_at, read_weight_link, watch_hint,
};

/// The kernel's watched-inode and watched-directory maps (implemented by
/// the agent over aya's `HashMap`s; a fake in tests).
pub trait InodeMap {
    fn insert(&mut self, key: FileKey, entry: WatchEntry) -> Result<(), MapUpdateError>;
    /// Removing a key that is not there must succeed.
    fn remove(&mut self, key: &FileKey) -> Result<(), MapUpdateError>;
    /// Puts a directory under the roots in `WATCHED_DIRS` (a file created
    /// in it is a create record).
    fn insert_dir(&mut self, key: FileKey) -> Result<(), MapUpdateError>;
    /// Removing a directory that is not there must succeed.
    fn remove_dir(&mut self, key: &FileKey) -> Result<(), MapUpdateError>;
    /// Lets path operations naming `hash` through the kernel's prefilter
    /// (`PATH_NAMES`; `sensor_common::path_filter`).
    fn insert_name(&mut self, hash: u64) -> Result<(), MapUpdateError>;
    /// Removing a name that is not there must succeed.
    fn remove_name(&mut self, hash: u64) -> Result<(), MapUpdateError>;
    /// Every name in the map, the kernel's own (learned from renames and
    /// links) included.
    fn names(&self) -> Result<Vec<u64>, MapUpdateError>;
    /// Turns the kernel's path-operation prefilter on (or off: every path
    /// operation is sent).
    fn set_name_filter(&mut self, on: bool) -> Result<(), MapUpdateError>;
}

/// The inode map of a walk that feeds no kernel (`weightwarden baseline`
/// lists the watch set's files).
pub struct OfflineMap;

impl InodeMap for OfflineMap {
    fn insert(&mut self, _: FileKey, _: WatchEntry) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn remove(&mut self, _: &FileKey) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn insert_dir(&mut self, _: FileKey) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn remove_dir(&mut self, _: &FileKey) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn insert_name(&mut self, _: u64) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn remove_name(&mut self, _: u64) -> Result<(), MapUpdateError> {
        Ok(())
    }

    fn names(&self) -> Result<Vec<u64>, MapUpdateError> {
        Ok(Vec::new())
    }

    fn set_name_filter(&mut self, _: bool) -> Result<(), MapUpdateError> {
        Ok(())
    }
}

/// Why the kernel refused an update of the watched-inode map.
#[derive(Debug, thiserror::Error)]
pub enum MapUpdateError {
    #[error("the watched-inode map is full ({max} entries; raise watch.max_files)")]
    Full { max: u32 },
    #[error("the watched-directory map is full ({max} entries; raise watch.max_dirs)")]
    DirsFull { max: u32 },
    #[error("the path-name map is full ({max} entries; raise watch.max_dirs)")]
    NamesFull { max: u32 },
    #[error("updating the watched-inode map failed: {message}")]
    Other { message: String },
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Directories searched recursively for weight files.
    pub roots: Vec<PathBuf>,
    /// The user named the roots: a missing or unreadable root is an error
    /// (at start; one that disappears later is waited for). Otherwise
    /// missing roots are skipped and polled for.
    pub roots_required: bool,
    /// Weight-file extensions (`safetensors`, `gguf`, ...), with or without
    /// the dot; matched case-insensitively against a name's last extension.
    pub extensions: Vec<String>,
    /// Absolute GPU device patterns (`/dev/nvidia*`): `*` matches any run
    /// of characters within one path component.
    pub gpu_patterns: Vec<String>,
    /// Bound on inodes kept watched outside the roots by file handle:
    /// retained (left the roots while alive) and derived ones.
    pub max_retained: usize,
}

/// Default of [`WatchSpec::max_retained`] (`watch.max_retained`).
pub const DEFAULT_MAX_RETAINED: usize = 1024;

impl Default for WatchSpec {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            roots_required: false,
            extensions: Vec::new(),
            gpu_patterns: Vec::new(),
            max_retained: DEFAULT_MAX_RETAINED,
        }
    }
}

/// A file that entered the watch set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    pub key: FileKey,
    pub path: PathBuf,
    /// Size when last seen (0 for device nodes).
    pub size: u64,
    /// [`watch_flag`] bits.
    pub flags: u32,
}

/// One change to the watch set, per path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchChange {
    /// A path is now watched (a new inode, or a new hard link to one).
    Added(WatchedFile),
    /// A path is no longer watched; the key left the kernel map only if
    /// [`WatchSet::paths_of`] is now empty for it.
    Removed { key: FileKey, path: PathBuf },
    /// A watched inode moved within the watch set; it never left the map.
    /// (A file deleted and another created in the same batch that happens
    /// to get the same inode number looks the same: the key is all the
    /// kernel sees, so the map is right either way.)
    Renamed {
        key: FileKey,
        from: PathBuf,
        to: PathBuf,
    },
}

/// Health of the watch set, for heartbeats. Counts of failures are
/// cumulative since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WatchStats {
    /// Weight-file inodes in the map.
    pub files: usize,
    /// Weight-file paths (more than `files` when there are hard links or
    /// several weight-named links to one file).
    pub paths: usize,
    pub gpu_devices: usize,
    /// Weight-named symbolic links under the roots, dangling ones included
    /// (the resolving ones are among `paths`).
    pub links: usize,
    /// Directories under inotify watch.
    pub directories: usize,
    /// Of those under the roots, how many the kernel's watched-directory
    /// map holds (creates are seen in these).
    pub kernel_directories: usize,
    /// Directories not put in the kernel's watched-directory map because
    /// it was full (`watch.max_dirs`): files created in them are not
    /// create records.
    pub dir_map_full_failures: u64,
    /// Name hashes in the kernel's path-operation prefilter.
    pub path_names: usize,
    /// Times the prefilter's name map was full: path operations were then
    /// sent unfiltered until the next rescan fit them.
    pub path_names_overflows: u64,
    /// Policy files outside the roots (or without a weight extension),
    /// watched because the policy names them.
    pub policy_files: usize,
    /// Roots that do not exist (or cannot be read) right now.
    pub missing_roots: usize,
    /// Inodes that left the roots (renamed out or to another extension,
    /// their last watched link unlinked) and are watched while they live.
    pub retained: usize,
    /// Inodes watched as derived from a watched file (copies).
    pub derived: usize,
    /// Inodes not retained or derived: `watch.max_retained` was reached.
    pub retained_dropped: u64,
    /// Inodes not retained: their file system gives no file handles.
    pub retained_unsupported: u64,
    /// Retained or derived inodes released because they were deleted.
    pub retained_gone: u64,
    /// Devices holding watched files whose keys the kernel confirmed.
    pub confirmed_devices: usize,
    /// Devices holding watched files whose keys the kernel did not confirm
    /// (listed in `sensor.unconfirmed`).
    pub unconfirmed_devices: usize,
    /// Directories under a root that could not be listed.
    pub unreadable_dirs: u64,
    /// Directories that could not be watched (usually the
    /// `fs.inotify.max_user_watches` limit).
    pub watch_failures: u64,
    /// Files not audited because the kernel map was full.
    pub map_full_failures: u64,
    /// Other refused map inserts and removals.
    pub map_update_failures: u64,
    /// inotify queue overflows (each followed by a rescan).
    pub queue_overflows: u64,
    /// Full re-walks done (periodic and after overflows).
    pub rescans: u64,
}

impl crate::metrics::Collect for WatchStats {
    fn collect(&self, out: &mut crate::metrics::Section<'_>) {
        let n = |v: usize| v as u64;
        out.set(
            "files",
            "weight-file inodes in the kernel map",
            n(self.files),
        );
        out.set("paths", "watched weight-file paths", n(self.paths));
        out.set(
            "gpu_devices",
            "GPU device nodes watched",
            n(self.gpu_devices),
        );
        out.set(
            "links",
            "weight-named symbolic links under the roots",
            n(self.links),
        );
        out.set(
            "directories",
            "directories under inotify watch",
            n(self.directories),
        );
        out.set(
            "kernel_directories",
            "directories in the kernel's watched-directory map",
            n(self.kernel_directories),
        );
        out.total(
            "dir_map_full_failures",
            "directories not in the kernel map: watch.max_dirs was reached",
            self.dir_map_full_failures,
        );
        out.set(
            "path_names",
            "names in the kernel's path-operation prefilter",
            n(self.path_names),
        );
        out.total(
            "path_names_overflows",
            "times the path-name map was full (path operations sent unfiltered)",
            self.path_names_overflows,
        );
        out.set(
            "missing_roots",
            "watch roots missing now",
            n(self.missing_roots),
        );
        out.set(
            "retained",
            "inodes watched after leaving the roots, while they live",
            n(self.retained),
        );
        out.set(
            "derived",
            "inodes watched as derived from a watched file",
            n(self.derived),
        );
        out.total(
            "retained_dropped",
            "inodes not followed: watch.max_retained was reached",
            self.retained_dropped,
        );
        out.total(
            "retained_unsupported",
            "inodes not retained: no file handles on their file system",
            self.retained_unsupported,
        );
        out.total(
            "retained_gone",
            "followed inodes released once deleted",
            self.retained_gone,
        );
        out.set(
            "confirmed_devices",
            "devices whose file keys the kernel confirmed",
            n(self.confirmed_devices),
        );
        out.set(
            "unconfirmed_devices",
            "devices whose file keys the kernel did not confirm",
            n(self.unconfirmed_devices),
        );
        out.set(
            "policy_files",
            "policy files watched outside the roots",
            n(self.policy_files),
        );
        out.total(
            "unreadable_dirs",
            "directories that could not be listed",
            self.unreadable_dirs,
        );
        out.total(
            "watch_failures",
            "directories that could not be watched",
            self.watch_failures,
        );
        out.total(
            "map_full_failures",
            "files not audited: the kernel map was full",
            self.map_full_failures,
        );
        out.total(
            "map_update_failures",
            "refused kernel map updates",
            self.map_update_failures,
        );
        out.total(
            "queue_overflows",
            "inotify queue overflows",
            self.queue_overflows,
        );
        out.total("rescans", "full re-walks of the roots", self.rescans);
    }
}

/// Why the watch set could not be built or updated.
///
/// Like every error here, the message names the operation and the fix;
/// the OS error is the `source` (printed after it by [`crate::Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch root {} does not exist (create it, or fix the directory given to --watch)", .path.display())]
    RootMissing { path: PathBuf },
    #[error("watch root {} is not a directory (--watch takes directories)", .path.display())]
    RootNotDirectory { path: PathBuf },
    #[error("cannot read watch root {} (run as root or fix the directory's permissions)", .path.display())]
    RootUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch root {} with inotify ({hint})", .path.display())]
    RootWatch {
        path: PathBuf,
        #[source]
        errno: Errno,
        hint: &'static str,
    },
    #[error("gpu device pattern {pattern:?} is refused")]
    GpuPattern {
        pattern: String,
        #[source]
        source: pattern::PatternError,
    },
    #[error("cannot create an inotify instance (raise the fs.inotify.max_user_instances sysctl)")]
    InotifyInit {
        #[source]
        errno: Errno,
    },
    #[error("cannot read inotify events")]
    InotifyRead {
        #[source]
        errno: Errno,
    },
}

/// What [`WatchSet::restore_followed`] found of the saved inodes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Followed again.
    pub followed: usize,
    /// Deleted while no agent ran.
    pub gone: usize,
    /// Alive but not followed: `watch.max_retained` (or 0).
    pub refused: usize,
}

/// Why [`WatchSet::watch_derived`] could not watch a file.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error("cannot stat {}", .path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is not watched: watch.max_retained inodes are already followed (raise it)", .path.display())]
    Full { path: PathBuf },
    #[error("{} is not watched: its file system gives no file handles to follow it by", .path.display())]
    NoHandle { path: PathBuf },
    #[error("{} is not watched: the kernel's watch map refused it", .path.display())]
    Map { path: PathBuf },
}

/// `stat()`'s `st_dev` as the kernel's `super_block::s_dev` (`major << 20
/// | minor`), which is what the kernel programs read: translated through
/// the mount table where a walk learned the device (btrfs, overlayfs:
/// `devices.rs`).
pub fn kernel_dev(st_dev: u64) -> u64 {
    devices::translate(st_dev)
}

/// The watched inodes, their paths, and the inotify watches keeping them
/// current.
pub struct WatchSet {
    roots: Vec<Root>,
    extensions: Extensions,
    gpu_patterns: Vec<GpuPattern>,
    gpu_dirs: Vec<GpuDir>,
    inotify: Inotify,
    /// Weight files (and the weight-named links leading to them).
    index: Index,
    /// Every weight-named link under the roots, resolving or dangling.
    links: Links,
    /// GPU device nodes (a handful), with every path matching a pattern.
    gpu: BTreeMap<FileKey, Vec<PathBuf>>,
    dirs: HashMap<WatchDescriptor, DirWatch>,
    /// The tree directories by identity (`DirWatch::key`).
    dir_keys: HashMap<FileKey, WatchDescriptor>,
    /// The directories the kernel's `WATCHED_DIRS` holds.
    kernel_dirs: HashSet<FileKey>,
    /// The names the kernel's path-operation prefilter lets through.
    names: PathNames,
    /// Paths that recently left the index, newest last, with the inode's
    /// state then: what a tampering record (unlink, rename) needs after the
    /// change it reports has been applied ([`WatchSet::take_gone`]).
    gone: VecDeque<Gone>,
    /// Per key, the state a refresh (a close after a write, a rescan)
    /// replaced, with when (CLOCK_BOOTTIME): the state before a change
    /// whose refresh came first ([`WatchSet::state_before`]).
    replaced_states: HashMap<FileKey, (u64, i64, u64)>,
    /// Inodes watched without a weight path under the roots: the policy's
    /// files, retained ones (left the roots, still alive) and derived ones
    /// (`outside.rs`).
    outside: Outside,
    /// File handles of the indexed inodes, taken when first watched, so
    /// that an inode leaving the roots can be followed while it lives.
    handles: HashMap<FileKey, Handle>,
    /// Per mount id: whether its file handles open again.
    handle_mounts: HashMap<i32, bool>,
    /// Which devices' keys the kernel confirmed.
    confirmations: Confirmations,
    counters: Counters,
}

/// A watched path that left the index (deleted, renamed, replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub key: FileKey,
    pub path: PathBuf,
    /// The inode's size and modification time (ns) when last seen.
    pub size: u64,
    pub mtime_ns: i64,
    /// CLOCK_BOOTTIME when the agent applied the removal.
    pub boot_ns: u64,
}

/// How many removals, and for how long, [`WatchSet::take_gone`] can
/// answer for: the kernel's record of a change reaches the agent within
/// 0.1 s unless the agent is far behind (then the record says who, but
/// not which file: counted by the caller).
const GONE_MAX: usize = 4096;
const GONE_NS: u64 = 60_000_000_000;

#[derive(Debug)]
struct Root {
    path: PathBuf,
    present: bool,
    /// Its absence was already logged: poll quietly.
    reported: bool,
}

/// The parent directory of a GPU pattern, watched for devices appearing.
#[derive(Debug)]
struct GpuDir {
    path: PathBuf,
    wd: Option<WatchDescriptor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Tree,
    Gpu,
}

#[derive(Debug, Default)]
struct Counters {
    unreadable_dirs: u64,
    watch_failures: u64,
    map_full_failures: u64,
    map_update_failures: u64,
    queue_overflows: u64,
    rescans: u64,
    dir_map_full_failures: u64,
}

/// Index changes not yet applied to the kernel map.
struct Batch {
    /// Flags of every touched key before the batch.
    before: HashMap<FileKey, u32>,
    /// Path-level changes, in order (only when `record`).
    ops: Vec<PathOp>,
    record: bool,
    /// Keys whose last watched path went in this batch, with that path:
    /// retained if their inode still lives.
    orphans: HashMap<FileKey, PathBuf>,
    /// Tree directories added or dropped: `WATCHED_DIRS` follows.
    dirs: HashSet<FileKey>,
    /// The inodes followed outside the roots changed: their names go to
    /// the path prefilter.
    outside: bool,
}

struct PathOp {
    key: FileKey,
    path: PathBuf,
    added: bool,
}

impl Batch {
    fn new(record: bool) -> Self {
        Self {
            before: HashMap::new(),
            ops: Vec::new(),
            record,
            orphans: HashMap::new(),
            dirs: HashSet::new(),
            outside: false,
        }
    }

    /// Must be called before the key's flags change.
    fn touch(&mut self, key: FileKey, flags: u32) {
        self.before.entry(key).or_insert(flags);
    }

    fn op(&mut self, key: FileKey, path: &Path, added: bool) {
        if self.record {
            self.ops.push(PathOp {
                key,
                path: path.to_path_buf(),
                added,
            });
        }
    }
}

/// Work found while applying events, done once at the end of the batch.
#[derive(Default)]
struct FollowUp {
    overflow: bool,
    gpu_dirty: bool,
}

/// Whether `path` is `prefix` or below it. Both must be normalized (no
/// `//`, `.` or trailing `/`), which every path built here is; comparing
/// bytes keeps removing a subtree cheap with 100k indexed paths.
fn is_under(path: &Path, prefix: &Path) -> bool {
    let (p, q) = (
        path.as_os_str().as_encoded_bytes(),
        prefix.as_os_str().as_encoded_bytes(),
    );
    p.starts_with(q) && (p.len() == q.len() || q.ends_with(b"/") || p.get(q.len()) == Some(&b'/'))
}

/// The error for a root whose walk failed at the top.
fn root_error(path: PathBuf, error: TopError) -> WatchError {
    match error {
        TopError::Missing => WatchError::RootMissing { path },
        TopError::NotDirectory => WatchError::RootNotDirectory { path },
        TopError::Stat(error) | TopError::Read(error) => WatchError::RootUnreadable {
            path,
            source: error,
        },
        TopError::Watch(errno) => WatchError::RootWatch {
            path,
            errno,
            hint: watch_hint(errno),
        },
    }
}

/// An absolute, normalized form of a configured root (`/models/`,
/// `./models` and `/models/./` all become the same path).
fn normalize_root(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .components()
        .collect()
}

fn gpu_watch_mask() -> AddWatchFlags {
    // IN_MASK_ADD: the same directory may be under a root, whose richer
    // mask must survive.
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::from_bits_retain(libc::IN_MASK_ADD)
}

impl WatchSet {
    /// Walks every root, resolves the GPU patterns, fills `map` and watches
    /// every directory under the roots. Fails for a required root that is
    /// missing, not a directory, unreadable or unwatchable, for a relative
    /// GPU pattern, or when inotify cannot be set up; problems below a root
    /// are logged and counted in [`WatchSet::stats`].
    pub fn new(spec: WatchSpec, map: &mut impl InodeMap) -> Result<WatchSet, WatchError> {
        let gpu_patterns = spec
            .gpu_patterns
            .iter()
            .map(|raw| {
                GpuPattern::parse(raw).map_err(|source| WatchError::GpuPattern {
                    pattern: raw.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|errno| WatchError::InotifyInit { errno })?;

        let mut roots: Vec<Root> = Vec::new();
        for raw in &spec.roots {
            let path = normalize_root(raw);
            if roots.iter().all(|r| r.path != path) {
                roots.push(Root {
                    path,
                    present: false,
                    reported: false,
                });
            }
        }
        let gpu_dir_paths: BTreeSet<PathBuf> = gpu_patterns
            .iter()
            .filter_map(GpuPattern::watch_dir)
            .collect();
        let mut set = WatchSet {
            roots,
            extensions: Extensions::new(&spec.extensions),
            gpu_patterns,
            gpu_dirs: gpu_dir_paths
                .into_iter()
                .map(|path| GpuDir { path, wd: None })
                .collect(),
            inotify,
            index: Index::default(),
            links: Links::default(),
            gpu: BTreeMap::new(),
            dirs: HashMap::new(),
            dir_keys: HashMap::new(),
            kernel_dirs: HashSet::new(),
            names: PathNames::default(),
            gone: VecDeque::new(),
            replaced_states: HashMap::new(),
            outside: Outside::new(spec.max_retained),
            handles: HashMap::new(),
            handle_mounts: HashMap::new(),
            confirmations: Confirmations::default(),
            counters: Counters::default(),
        };

        let mut batch = Batch::new(false);
        for i in 0..set.roots.len() {
            set.start_root(i, spec.roots_required, &mut batch)?;
        }
        set.watch_gpu_dirs();
        set.resolve_gpu(&mut batch);
        set.commit(batch, map);
        set.rebuild_names(map);
        let stats = set.stats();
        info!(
            files = stats.files,
            paths = stats.paths,
            gpu_devices = stats.gpu_devices,
            directories = stats.directories,
            missing_roots = stats.missing_roots,
            "watch set ready"
        );
        Ok(set)
    }

    /// The inotify descriptor (non-blocking), for tokio's `AsyncFd`: when
    /// readable, call [`WatchSet::process_inotify`].
    pub fn inotify_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Reads every pending inotify event (until `EAGAIN`, so the caller may
    /// clear its readiness afterwards) and applies them: weight files and
    /// weight-named links created, written, moved in or renamed are added;
    /// deleted or moved out ones are removed (a key stays while another
    /// watched path leads to it); links whose target changed are resolved
    /// again; new directories are watched, then walked; a queue overflow
    /// triggers a full rescan. The map is updated even when reading fails
    /// part way.
    pub fn process_inotify(
        &mut self,
        map: &mut impl InodeMap,
    ) -> Result<Vec<WatchChange>, WatchError> {
        let mut batch = Batch::new(true);
        let mut follow_up = FollowUp::default();
        let mut failure = None;
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    for event in events {
                        self.apply(event, &mut batch, &mut follow_up);
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(errno) => {
                    failure = Some(errno);
                    break;
                }
            }
        }
        if follow_up.overflow {
            self.counters.queue_overflows += 1;
            warn!(
                "the inotify queue overflowed and changes were lost; rescanning the watch roots \
                 (raise the fs.inotify.max_queued_events sysctl)"
            );
            self.rescan_into(&mut batch);
        } else if follow_up.gpu_dirty {
            self.resolve_gpu(&mut batch);
        }
        let changes = self.commit(batch, map);
        match failure {
            Some(errno) => Err(WatchError::InotifyRead { errno }),
            None => Ok(changes),
        }
    }

    /// Starts watching roots (and GPU pattern directories) that have come
    /// into existence. Meant to be called every second: it costs one
    /// `stat` per missing root and one failed `inotify_add_watch` per
    /// missing GPU directory.
    pub fn poll_missing_roots(
        &mut self,
        map: &mut impl InodeMap,
    ) -> Result<Vec<WatchChange>, WatchError> {
        let mut batch = Batch::new(true);
        for i in 0..self.roots.len() {
            if !self.roots[i].present {
                self.start_root(i, false, &mut batch)?;
            }
        }
        if self.watch_gpu_dirs() {
            self.resolve_gpu(&mut batch);
        }
        self.check_outside(&mut batch);
        Ok(self.commit(batch, map))
    }

    /// Re-walks every root and re-resolves the GPU patterns, reconciling
    /// the index, the inotify watches and `map` with what is on disk. The
    /// backstop for anything inotify cannot see; it briefly holds a second
    /// copy of the paths.
    pub fn rescan(&mut self, map: &mut impl InodeMap) -> Result<Vec<WatchChange>, WatchError> {
        let mut batch = Batch::new(true);
        self.rescan_into(&mut batch);
        let changes = self.commit(batch, map);
        self.rebuild_names(map);
        Ok(changes)
    }

    /// Lets path operations naming `name` through the kernel's prefilter
    /// from now on: a watched file's new name (a rename, a hard link)
    /// that the prefilter would not otherwise know.
    pub fn learn_name(&mut self, name: &OsStr, map: &mut impl InodeMap) {
        self.names.learn(names::of(name), map);
    }

    /// Whether the kernel filters path operations by name now.
    pub fn path_filter_on(&self) -> bool {
        self.names.is_on()
    }

    /// Every name the prefilter must let through (`names.rs`).
    fn wanted_names(&self) -> HashSet<u64> {
        let roots = self
            .roots
            .iter()
            .flat_map(|r| r.path.ancestors().filter_map(Path::file_name));
        let dirs = self
            .dirs
            .values()
            .filter(|d| d.tree)
            .filter_map(|d| d.path.file_name());
        self.extensions
            .iter()
            .map(names::of_extension)
            .chain(roots.chain(dirs).map(names::of))
            .chain(self.outside_names())
            .chain(self.names.learned())
            .collect()
    }

    /// The names of the inodes followed outside the roots, as last seen.
    fn outside_names(&self) -> impl Iterator<Item = u64> + '_ {
        self.outside
            .keys()
            .filter_map(|key| self.outside.get(key))
            .filter_map(|kept| kept.path.file_name())
            .map(names::of)
    }

    fn rebuild_names(&mut self, map: &mut impl InodeMap) {
        let wanted = self.wanted_names();
        self.names.rebuild(wanted, map);
    }

    /// The first watched path of the inode still present (stable while it
    /// exists).
    pub fn path_of(&self, key: &FileKey) -> Option<&Path> {
        self.paths_of(key).first().map(PathBuf::as_path)
    }

    /// Every watched path of the inode: its hard links and the weight-named
    /// symbolic links to it under the roots, or for a GPU device the paths
    /// matching the patterns.
    /// Every watched file under the roots, with its first path.
    pub fn files(&self) -> impl Iterator<Item = (FileKey, &Path)> {
        self.index
            .iter()
            .filter_map(|(key, paths)| Some((key, paths.first()?.as_path())))
    }

    pub fn paths_of(&self, key: &FileKey) -> &[PathBuf] {
        let paths = self.index.paths(key);
        if !paths.is_empty() {
            return paths;
        }
        if let Some(paths) = self.gpu.get(key) {
            return paths;
        }
        self.outside
            .get(key)
            .map_or(&[], |kept| std::slice::from_ref(&kept.path))
    }

    /// The watched file `key` was made from, for an inode watched with
    /// [`WatchSet::watch_derived`].
    pub fn derived_from(&self, key: &FileKey) -> Option<FileKey> {
        self.outside.get(key)?.derived_from
    }

    /// Watches the file at `path`, wherever it is and whatever its name,
    /// as derived from the watched file `from` (a copy's destination): its
    /// accesses are records like a weight file's, named by its current
    /// path, while its inode lives ([`WatchSet::derived_from`] names the
    /// source). Bounded with the retained inodes by `watch.max_retained`.
    pub fn watch_derived(
        &mut self,
        path: &Path,
        from: FileKey,
        map: &mut impl InodeMap,
    ) -> Result<FileKey, DeriveError> {
        let meta = std::fs::metadata(path).map_err(|source| DeriveError::Stat {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(DeriveError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let key = scan::key_at(path, &meta, true);
        let mut batch = Batch::new(false);
        batch.outside = true;
        batch.touch(key, self.flags_of(&key));
        match self
            .outside
            .derive(key, path, from, (meta.len(), scan::mtime_ns(&meta)))
        {
            Ok(()) => {}
            Err(Refused::Full) => {
                return Err(DeriveError::Full {
                    path: path.to_path_buf(),
                });
            }
            Err(Refused::Off) => {
                return Err(DeriveError::Full {
                    path: path.to_path_buf(),
                });
            }
            Err(Refused::NoHandle) => {
                return Err(DeriveError::NoHandle {
                    path: path.to_path_buf(),
                });
            }
        }
        self.confirmations
            .note(std::os::unix::fs::MetadataExt::dev(&meta), path);
        self.commit(batch, map);
        if self.flags_of(&key) == 0 {
            return Err(DeriveError::Map {
                path: path.to_path_buf(),
            });
        }
        Ok(key)
    }

    /// Watches the pipe `key` as derived from the watched file `from` (a
    /// copy of it went in): the reads of whoever holds the other end are
    /// then records like a weight file's, named `pipe:[INO]` as in
    /// `/proc/PID/fd`, and make that process followed in turn. Kept while
    /// one of `holders` (the processes holding it now) lives; not saved
    /// across restarts (a pipe does not outlive its processes). Bounded
    /// with the other followed inodes by `watch.max_retained`.
    pub fn watch_pipe(
        &mut self,
        key: FileKey,
        from: FileKey,
        holders: Vec<u32>,
        map: &mut impl InodeMap,
    ) -> Result<(), DeriveError> {
        let name = PathBuf::from(format!("pipe:[{}]", key.ino));
        let mut batch = Batch::new(false);
        batch.touch(key, self.flags_of(&key));
        match self.outside.follow_pipe(key, &name, from, holders) {
            Ok(()) => {}
            Err(Refused::Full | Refused::Off | Refused::NoHandle) => {
                return Err(DeriveError::Full { path: name });
            }
        }
        self.commit(batch, map);
        if self.flags_of(&key) == 0 {
            return Err(DeriveError::Map { path: name });
        }
        Ok(())
    }

    /// Saves the inodes followed outside the roots to `path` when they
    /// changed since the last save. Returns whether it wrote.
    pub fn save_followed(&mut self, path: &Path) -> io::Result<bool> {
        if !self.outside.take_changed() {
            return Ok(false);
        }
        followed_state::save(path, self.outside.saved()).inspect_err(|_| {
            // Not saved: try again at the next call.
            self.outside.mark_changed();
        })?;
        Ok(true)
    }

    /// Follows again the inodes a previous agent saved to `path` (derived
    /// copies, files that had left the roots) that still live; a corrupt
    /// file is moved aside, named in the error. Call once, at start.
    pub fn restore_followed(
        &mut self,
        path: &Path,
        map: &mut impl InodeMap,
    ) -> Result<Restored, StateError> {
        let saved = match followed_state::load(path) {
            Ok(saved) => saved,
            Err(err @ StateError::Corrupt { .. }) => {
                if let Err(e) = followed_state::set_aside(path) {
                    warn!(path = %path.display(), error = %e, "cannot move the corrupt state file aside");
                }
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let mut restored = Restored::default();
        let mut batch = Batch::new(false);
        for entry in &saved {
            let key = entry.key();
            let Some((handle, now_at)) = entry.find() else {
                restored.gone += 1;
                continue;
            };
            batch.touch(key, self.flags_of(&key));
            match self.outside.restore(entry, handle, now_at) {
                Ok(()) => restored.followed += 1,
                Err(_) => restored.refused += 1,
            }
        }
        self.commit(batch, map);
        // What was found is what is followed: the file says so next save.
        if restored.gone > 0 || restored.refused > 0 {
            self.outside.mark_changed();
        }
        Ok(restored)
    }

    /// Watches every file of the policy as a weight file, under the roots
    /// or not, whatever its name (the policy decides its reads and maps
    /// from the kernel's watch map, as for any weight file); files of the
    /// previous policy no root covers leave the map. Returns how many
    /// policy files only the policy brings in.
    pub fn pin_policy_files(
        &mut self,
        files: &[(FileKey, PathBuf)],
        map: &mut impl InodeMap,
    ) -> usize {
        let mut batch = Batch::new(false);
        batch.outside = true;
        let keys: Vec<FileKey> = self
            .outside
            .keys()
            .copied()
            .chain(files.iter().map(|(key, _)| *key))
            .collect();
        for key in keys {
            batch.touch(key, self.flags_of(&key));
        }
        self.outside.set_policy(files);
        self.commit(batch, map);
        self.policy_only()
    }

    /// Sets what asks the kernel for a file's identity (the programs must
    /// be attached for it to answer), then asks it about every device with
    /// a watched file; from then on each new device is asked when its
    /// first file is watched. Returns how many devices are unconfirmed.
    pub fn confirm_identities(&mut self, probe: Box<dyn KernelIdentity>) -> usize {
        self.confirmations.set_probe(probe);
        self.confirmations.run();
        self.confirmations.counts().1
    }

    /// Devices under the roots whose keys the kernel did not confirm.
    pub fn unconfirmed(&self) -> Vec<crate::event::UnconfirmedIdentity> {
        let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        self.confirmations.unconfirmed(&roots)
    }

    /// Takes the oldest removal of `path` applied at or after `not_before`
    /// (CLOCK_BOOTTIME ns): the one a change made then caused.
    pub fn take_gone(&mut self, path: &Path, not_before: u64) -> Option<Gone> {
        let at = self
            .gone
            .iter()
            .position(|g| g.boot_ns >= not_before && g.path == path)?;
        self.gone.remove(at)
    }

    /// Whether a file named `name` could be a weight file: its extension
    /// is a watched one, or it looks like a model blob (`sha256...`).
    pub fn may_be_weight_name(&self, name: &OsStr) -> bool {
        self.extensions.matches(name) || name.as_encoded_bytes().starts_with(b"sha256")
    }

    /// Whether the watch patterns take an entry at `path` for a weight
    /// file (or a weight-named link): its extension, or an Ollama blob
    /// name in a `blobs` directory. Its type is not looked at.
    pub fn is_weight_path(&self, path: &Path) -> bool {
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => self.extensions.is_weight_file(dir, name),
            _ => false,
        }
    }

    /// Whether `key` is followed outside the roots (retained, derived, a
    /// policy file).
    pub fn is_outside(&self, key: &FileKey) -> bool {
        self.outside.contains(key)
    }

    /// A file followed outside the roots was renamed to `to`: named so
    /// from now on (the liveness check would find it within a second; a
    /// record about its new name may come first).
    pub fn moved_outside(&mut self, key: &FileKey, to: &Path) {
        self.outside.set_path(key, to);
    }

    /// The inode followed outside the roots whose last known path is
    /// `path` (absolute, normalized).
    pub fn outside_at(&self, path: &Path) -> Option<FileKey> {
        self.outside
            .keys()
            .find(|key| self.outside.get(key).is_some_and(|kept| kept.path == path))
            .copied()
    }

    /// The key the index holds `path` (a weight file or a weight-named
    /// link under the roots) under.
    pub fn key_at(&self, path: &Path) -> Option<FileKey> {
        self.index.key_of(path)
    }

    /// A weight file's size and modification time (ns) as the watch set
    /// last saw them (its walk, or the last close after a write).
    pub fn state_of(&self, key: &FileKey) -> Option<(u64, i64)> {
        self.index.state(key)
    }

    /// A weight file's state before a change made at `boot_ns`: the one a
    /// refresh applied after that instant replaced, else the current one.
    pub fn state_before(&self, key: &FileKey, boot_ns: u64) -> Option<(u64, i64)> {
        match self.replaced_states.get(key) {
            Some(&(size, mtime, at)) if at >= boot_ns => Some((size, mtime)),
            _ => self.index.state(key),
        }
    }

    /// The path of a directory under watch (or a root's ancestor) with
    /// identity `key`: where a relative path of a process that is gone
    /// started. Stats each root ancestor: for the rare record that needs
    /// one.
    pub fn dir_path(&self, key: &FileKey) -> Option<PathBuf> {
        if let Some(path) = self.tree_dir_path(key) {
            return Some(path.to_path_buf());
        }
        self.roots
            .iter()
            .flat_map(|r| r.path.ancestors().skip(1).map(Path::to_path_buf))
            .find(|p| identity(p) == Some(*key))
    }

    /// The path of the directory under the roots with identity `key`.
    pub fn tree_dir_path(&self, key: &FileKey) -> Option<&Path> {
        let wd = self.dir_keys.get(key)?;
        self.dirs.get(wd).map(|d| d.path.as_path())
    }

    /// Whether `path` (absolute, normalized) is under a present root.
    pub fn under_roots(&self, path: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| r.present && is_under(path, &r.path))
    }

    pub fn is_gpu_device(&self, key: &FileKey) -> bool {
        self.gpu.contains_key(key)
    }

    /// The [`watch_flag`] bits of the key (0 when not watched).
    pub fn flags_of(&self, key: &FileKey) -> u32 {
        let mut flags = 0;
        if self.index.contains(key) || self.outside.contains(key) {
            flags |= watch_flag::WEIGHT;
        }
        if self.outside.is_pipe(key) {
            flags |= watch_flag::PIPE;
        }
        if self.gpu.contains_key(key) {
            flags |= watch_flag::GPU_DEVICE;
        }
        flags
    }

    /// Number of keys in the kernel map.
    pub fn len(&self) -> usize {
        self.index.len()
            + self
                .gpu
                .keys()
                .filter(|key| !self.index.contains(key))
                .count()
            + self.outside_only()
    }

    /// Inodes outside the roots neither the index nor the GPU patterns
    /// cover.
    fn outside_only(&self) -> usize {
        self.outside
            .keys()
            .filter(|key| !self.index.contains(key) && !self.gpu.contains_key(key))
            .count()
    }

    /// Policy files only the policy brings in.
    fn policy_only(&self) -> usize {
        self.outside
            .keys()
            .filter(|key| {
                !self.index.contains(key) && self.outside.get(key).is_some_and(|k| k.policy)
            })
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> WatchStats {
        WatchStats {
            files: self.index.len(),
            paths: self.index.path_count(),
            gpu_devices: self.gpu.len(),
            links: self.links.len(),
            directories: self.dirs.values().filter(|d| d.tree).count(),
            kernel_directories: self.kernel_dirs.len(),
            dir_map_full_failures: self.counters.dir_map_full_failures,
            path_names: self.names.len(),
            path_names_overflows: self.names.overflows,
            missing_roots: self.roots.iter().filter(|r| !r.present).count(),
            policy_files: self.policy_only(),
            retained: self.outside.followed().0,
            derived: self.outside.followed().1,
            retained_dropped: self.outside.counters.dropped_full,
            retained_unsupported: self.outside.counters.unsupported,
            retained_gone: self.outside.counters.gone,
            confirmed_devices: self.confirmations.counts().0,
            unconfirmed_devices: self.confirmations.counts().1,
            unreadable_dirs: self.counters.unreadable_dirs,
            watch_failures: self.counters.watch_failures,
            map_full_failures: self.counters.map_full_failures,
            map_update_failures: self.counters.map_update_failures,
            queue_overflows: self.counters.queue_overflows,
            rescans: self.counters.rescans,
        }
    }

    /// Walks root `i` and merges it. A failure is an error when `strict`;
    /// otherwise the root stays missing and is polled for, its absence
    /// logged once.
    fn start_root(&mut self, i: usize, strict: bool, batch: &mut Batch) -> Result<(), WatchError> {
        let path = self.roots[i].path.clone();
        let mut walker = Walker::new(&self.inotify, &self.extensions, &self.dirs);
        let result = walker.walk(&path, true);
        let scan = walker.finish();
        let error = match result {
            Ok(()) => {
                let root = &mut self.roots[i];
                if root.reported {
                    info!(path = %path.display(), "watch root appeared; watching it");
                }
                root.present = true;
                root.reported = false;
                self.merge(scan, batch);
                self.reresolve_links_into(&path, batch);
                return Ok(());
            }
            Err(error) => error,
        };
        // Drop the watch the walk may have placed on the root before failing.
        for dir in &scan.dirs {
            if !self.dirs.contains_key(&dir.wd)
                && let Err(errno) = self.inotify.rm_watch(dir.wd)
            {
                debug!(path = %path.display(), error = %errno, "cannot drop the watch of a failed root");
            }
        }
        let error = root_error(path, error);
        if strict {
            return Err(error);
        }
        let root = &mut self.roots[i];
        root.present = false;
        if !root.reported {
            root.reported = true;
            match error {
                WatchError::RootMissing { .. } => {
                    info!(path = %root.path.display(), "watch root does not exist; waiting for it to appear");
                }
                error => {
                    warn!(error = %crate::Chain(&error), "watch root skipped; retrying every second")
                }
            }
        }
        Ok(())
    }

    /// Watches the GPU pattern directories not watched yet; true when one
    /// was added.
    fn watch_gpu_dirs(&mut self) -> bool {
        let mut added = false;
        for dir in self.gpu_dirs.iter_mut().filter(|d| d.wd.is_none()) {
            match self.inotify.add_watch(&dir.path, gpu_watch_mask()) {
                Ok(wd) => {
                    dir.wd = Some(wd);
                    added = true;
                    let watch = self.dirs.entry(wd).or_insert_with(|| DirWatch {
                        path: dir.path.clone(),
                        tree: false,
                        gpu: false,
                        key: None,
                    });
                    watch.gpu = true;
                }
                Err(Errno::ENOENT | Errno::ENOTDIR) => {}
                Err(errno) => {
                    debug!(path = %dir.path.display(), error = %errno, "cannot watch gpu device directory");
                }
            }
        }
        added
    }

    /// Re-expands the GPU patterns and updates `self.gpu`.
    fn resolve_gpu(&mut self, batch: &mut Batch) {
        let mut fresh: BTreeMap<FileKey, Vec<PathBuf>> = BTreeMap::new();
        for pattern in &self.gpu_patterns {
            for path in pattern.expand() {
                // Follow symlinks: /dev/dri/by-path/* and friends point at
                // the real nodes, whose inode is what the kernel sees.
                match std::fs::metadata(&path) {
                    Ok(meta) if !meta.is_dir() => {
                        let paths = fresh.entry(key_of(&meta)).or_default();
                        if !paths.contains(&path) {
                            paths.push(path);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        debug!(pattern = pattern.as_str(), path = %path.display(), %error, "gpu pattern match not usable");
                    }
                }
            }
        }
        let keys: BTreeSet<FileKey> = self.gpu.keys().chain(fresh.keys()).copied().collect();
        for key in keys {
            let old = self.gpu.get(&key).map_or(&[][..], Vec::as_slice);
            let new = fresh.get(&key).map_or(&[][..], Vec::as_slice);
            if old == new {
                continue;
            }
            batch.touch(key, self.flags_of(&key));
            for path in old.iter().filter(|p| !new.contains(p)) {
                batch.op(key, path, false);
            }
            for path in new.iter().filter(|p| !old.contains(p)) {
                batch.op(key, path, true);
            }
        }
        self.gpu = fresh;
    }

    /// Applies one inotify event to the index.
    fn apply(&mut self, event: InotifyEvent, batch: &mut Batch, follow_up: &mut FollowUp) {
        let mask = event.mask;
        if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            follow_up.overflow = true;
            return;
        }
        // Events of a watch already dropped (moved or deleted directories)
        // are stale: whatever replaced it was walked afresh.
        let Some(dir) = self.dirs.get(&event.wd) else {
            return;
        };
        let (dir_path, tree, gpu) = (dir.path.clone(), dir.tree, dir.gpu);
        let gone = AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_IGNORED;

        if gpu {
            if mask.intersects(gone | AddWatchFlags::IN_MOVE_SELF) {
                for gpu_dir in &mut self.gpu_dirs {
                    if gpu_dir.wd == Some(event.wd) {
                        gpu_dir.wd = None;
                    }
                }
                self.release(event.wd, Role::Gpu, batch);
                follow_up.gpu_dirty = true;
            } else if event
                .name
                .as_deref()
                .is_some_and(|name| self.gpu_patterns.iter().any(|p| p.matches_last(name)))
            {
                follow_up.gpu_dirty = true;
            }
        }
        if !tree {
            return;
        }

        let Some(name) = event.name else {
            // An event about the watched directory itself. A moved
            // directory below a root is handled through its parent's
            // IN_MOVED_FROM; only a moved root needs handling here.
            let moved_root = mask.contains(AddWatchFlags::IN_MOVE_SELF)
                && self.roots.iter().any(|r| r.path == dir_path);
            if mask.intersects(gone) || moved_root {
                self.forget_subtree(&dir_path, &HashSet::new(), batch);
            }
            return;
        };
        let path = dir_path.join(&name);
        if mask.contains(AddWatchFlags::IN_ISDIR) {
            if mask.intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE) {
                self.forget_subtree(&path, &HashSet::new(), batch);
            }
            if mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
                self.walk_subdir(&path, batch);
            }
        } else {
            self.reconcile_path(path, &name, batch);
        }
    }

    /// Brings the index entry of one path in line with the disk, then the
    /// links pointing at it: whatever the event was, the current state
    /// decides.
    fn reconcile_path(&mut self, path: PathBuf, name: &OsStr, batch: &mut Batch) {
        self.reconcile_entry(&path, name, batch);
        let links = self.links.links_to(&path).to_vec();
        self.reresolve(links, batch);
    }

    /// Reconciles one path: a weight file, a weight-named link, or a path
    /// indexed until now.
    fn reconcile_entry(&mut self, path: &Path, name: &OsStr, batch: &mut Batch) {
        let indexed = self.index.key_of(path);
        let link_name = self.extensions.matches(name);
        let weight_file = link_name
            || path
                .parent()
                .is_some_and(|dir| self.extensions.is_weight_file(dir, name));
        if indexed.is_none() && !weight_file {
            return;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() && link_name => match read_weight_link(path) {
                Ok(link) => {
                    self.links.set(path.to_path_buf(), link.target);
                    match link.found {
                        Some(found) => {
                            self.add_path(found, path.to_path_buf(), batch);
                        }
                        None => self.unindex(indexed, path, batch),
                    }
                }
                // Replaced or removed since the lstat: its own event follows.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                    ) =>
                {
                    self.links.remove(path);
                    self.unindex(indexed, path, batch);
                }
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot read weight-named link; its watch entry is left as is until the next rescan");
                }
            },
            Ok(meta) if meta.is_file() && weight_file => {
                self.links.remove(path);
                self.add_path(found_at(path, &meta, false), path.to_path_buf(), batch);
            }
            Ok(_) => {
                self.links.remove(path);
                self.unindex(indexed, path, batch);
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.links.remove(path);
                self.unindex(indexed, path, batch);
            }
            Err(error) => {
                warn!(path = %path.display(), %error, "cannot stat weight file; its watch entry is left as is until the next rescan");
            }
        }
    }

    fn unindex(&mut self, indexed: Option<FileKey>, path: &Path, batch: &mut Batch) {
        if let Some(key) = indexed {
            self.remove_path(key, path, batch);
        }
    }

    /// Resolves `links` again and, in turn, the links pointing at them (a
    /// link to a link). Each link is resolved once.
    fn reresolve(&mut self, mut pending: Vec<PathBuf>, batch: &mut Batch) {
        let mut seen: HashSet<PathBuf> = HashSet::new();
        while let Some(link) = pending.pop() {
            if seen.contains(&link) {
                continue;
            }
            if let Some(name) = link.file_name() {
                let name = name.to_os_string();
                self.reconcile_entry(&link, &name, batch);
            }
            pending.extend(self.links.links_to(&link).iter().cloned());
            seen.insert(link);
        }
    }

    /// Resolves again the links outside `dir` that point into it, after
    /// `dir` appeared or vanished (links inside it were just walked or
    /// forgotten).
    fn reresolve_links_into(&mut self, dir: &Path, batch: &mut Batch) {
        let links: Vec<PathBuf> = self
            .links
            .select_by_target(|target| is_under(target, dir))
            .into_iter()
            .filter(|link| !is_under(link, dir))
            .collect();
        if !links.is_empty() {
            self.reresolve(links, batch);
        }
    }

    /// Watches and walks a directory that appeared below a root.
    fn walk_subdir(&mut self, path: &Path, batch: &mut Batch) {
        let mut walker = Walker::new(&self.inotify, &self.extensions, &self.dirs);
        let result = walker.walk(path, false);
        let scan = walker.finish();
        match result {
            // Gone again, or replaced by a symlink or a file: nothing to do.
            Ok(()) | Err(TopError::Missing | TopError::NotDirectory) => {}
            Err(TopError::Stat(error) | TopError::Read(error)) => {
                self.counters.unreadable_dirs += 1;
                warn!(path = %path.display(), %error, "cannot read new directory under a watch root; its weight files are not audited (run as root or fix the directory's permissions)");
            }
            Err(TopError::Watch(errno)) => {
                // Not reachable: below a root, watch failures are counted in the scan.
                debug!(path = %path.display(), error = %errno, "cannot watch new directory");
            }
        }
        self.merge(scan, batch);
        self.reresolve_links_into(path, batch);
    }

    /// Adds a walk's directories and files to the index.
    fn merge(&mut self, scan: Scan, batch: &mut Batch) {
        let Scan {
            files,
            links,
            dirs,
            unreadable_dirs,
            watch_failures,
        } = scan;
        self.counters.unreadable_dirs += unreadable_dirs;
        self.counters.watch_failures += watch_failures;
        // inotify returns a watched inode's existing descriptor: a known
        // descriptor under a new path is a directory that moved without us
        // seeing its old location go (e.g. a root moved into another root).
        // Forget the old location, keeping the descriptors just confirmed.
        let keep: HashSet<WatchDescriptor> = dirs.iter().map(|d| d.wd).collect();
        let stale: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|walked| {
                self.dirs
                    .get(&walked.wd)
                    .filter(|d| d.tree && d.path != walked.path)
                    .map(|d| d.path.clone())
            })
            .collect();
        for prefix in stale {
            self.forget_subtree(&prefix, &keep, batch);
        }
        for dir in dirs {
            self.set_tree_dir(dir, batch);
        }
        self.add_found(files, &links, batch);
        for (link, target) in links {
            self.links.set(link, target);
        }
    }

    /// Adds a walk's files to the index, a file's own paths before the
    /// links leading to it, so that [`WatchSet::path_of`] names the file
    /// itself when a walk finds both.
    fn add_found(
        &mut self,
        files: HashMap<PathBuf, Found>,
        links: &HashMap<PathBuf, PathBuf>,
        batch: &mut Batch,
    ) {
        let (linked, own): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|(path, _)| links.contains_key(path));
        for (path, found) in own.into_iter().chain(linked) {
            self.add_path(found, path, batch);
        }
    }

    fn set_tree_dir(&mut self, dir: WalkedDir, batch: &mut Batch) {
        let WalkedDir { wd, path, key } = dir;
        let watch = self.dirs.entry(wd).or_insert_with(|| DirWatch {
            path: PathBuf::new(),
            tree: false,
            gpu: false,
            key: None,
        });
        watch.path = path;
        watch.tree = true;
        // The same descriptor means the same inode; a changed key is a
        // device learned anew (btrfs, overlayfs): the old one goes.
        if let Some(old) = watch.key.replace(key)
            && old != key
            && self.dir_keys.get(&old) == Some(&wd)
        {
            self.dir_keys.remove(&old);
            batch.dirs.insert(old);
        }
        self.dir_keys.insert(key, wd);
        batch.dirs.insert(key);
    }

    /// Forgets every file, link and directory at or below `prefix` (removed
    /// or moved away), except the watches in `keep`, and resolves again the
    /// links elsewhere that pointed into it; roots there go back to being
    /// polled for.
    fn forget_subtree(
        &mut self,
        prefix: &Path,
        keep: &HashSet<WatchDescriptor>,
        batch: &mut Batch,
    ) {
        for (key, path) in self.index.select(|p| is_under(p, prefix)) {
            self.remove_path(key, &path, batch);
        }
        for link in self.links.select_links(|l| is_under(l, prefix)) {
            self.links.remove(&link);
        }
        let wds: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(wd, d)| d.tree && !keep.contains(wd) && is_under(&d.path, prefix))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in wds {
            self.release(wd, Role::Tree, batch);
        }
        for root in &mut self.roots {
            if root.present && is_under(&root.path, prefix) {
                root.present = false;
                root.reported = true;
                info!(path = %root.path.display(), "watch root disappeared; waiting for it to reappear");
            }
        }
        self.reresolve_links_into(prefix, batch);
    }

    /// Drops one role of a watch, and the watch with its last role.
    fn release(&mut self, wd: WatchDescriptor, role: Role, batch: &mut Batch) {
        let Some(watch) = self.dirs.get_mut(&wd) else {
            return;
        };
        match role {
            Role::Tree => {
                watch.tree = false;
                if let Some(key) = watch.key.take()
                    && self.dir_keys.get(&key) == Some(&wd)
                {
                    self.dir_keys.remove(&key);
                    batch.dirs.insert(key);
                }
            }
            Role::Gpu => watch.gpu = false,
        }
        if !watch.tree && !watch.gpu {
            self.dirs.remove(&wd);
            // EINVAL when the kernel already dropped it (directory deleted).
            if let Err(errno) = self.inotify.rm_watch(wd) {
                debug!(error = %errno, "inotify watch already gone");
            }
        }
    }

    fn add_path(&mut self, found: Found, path: PathBuf, batch: &mut Batch) {
        let Found {
            key,
            size,
            mtime_ns,
            st_dev,
        } = found;
        self.confirmations.note(st_dev, &path);
        match self.index.key_of(&path) {
            Some(old) if old == key => {
                // Same file: refresh the size (written since, or a rescan).
                if let Some((old_size, old_mtime)) = self.index.state(&key)
                    && (old_size, old_mtime) != (size, mtime_ns)
                {
                    if self.replaced_states.len() >= GONE_MAX {
                        self.replaced_states.clear();
                    }
                    let now = super::clock::BootClock::boot_now_ns();
                    self.replaced_states.insert(key, (old_size, old_mtime, now));
                }
                self.index.insert(key, path, size, mtime_ns);
                return;
            }
            // A different inode now lives at this path (replaced by rename).
            Some(old) => self.remove_path(old, &path, batch),
            None => {}
        }
        batch.touch(key, self.flags_of(&key));
        batch.op(key, &path, true);
        if !self.index.contains(&key) && !self.handles.contains_key(&key) {
            // One syscall per new inode; none on file systems without
            // handles (FUSE), whose files are then not retained.
            if let Ok(handle) = Handle::of(&path)
                && self.handles_work(&handle)
            {
                self.handles.insert(key, handle);
            }
        }
        self.index.insert(key, path, size, mtime_ns);
    }

    fn remove_path(&mut self, key: FileKey, path: &Path, batch: &mut Batch) {
        batch.touch(key, self.flags_of(&key));
        let state = self.index.state(&key);
        if let Some(removed) = self.index.remove(&key, path) {
            if let Some((size, mtime_ns)) = state {
                self.remember_gone(key, removed.clone(), size, mtime_ns);
            }
            if !self.index.contains(&key) {
                batch.orphans.insert(key, removed.clone());
            }
            batch.op(key, &removed, false);
        }
    }

    fn remember_gone(&mut self, key: FileKey, path: PathBuf, size: u64, mtime_ns: i64) {
        let now = super::clock::BootClock::boot_now_ns();
        while self.gone.len() >= GONE_MAX
            || self
                .gone
                .front()
                .is_some_and(|g| now.saturating_sub(g.boot_ns) > GONE_NS)
        {
            self.gone.pop_front();
        }
        self.gone.push_back(Gone {
            key,
            path,
            size,
            mtime_ns,
            boot_ns: now,
        });
    }

    /// Walks everything again and reconciles the index with it.
    fn rescan_into(&mut self, batch: &mut Batch) {
        self.counters.rescans += 1;
        self.confirmations.reset();
        // Device numbers are learned (and confirmed) again: one may belong
        // to another file system since the last walk.
        devices::new_generation();
        let mut walker = Walker::new(&self.inotify, &self.extensions, &self.dirs);
        let results: Vec<Result<(), TopError>> = self
            .roots
            .iter()
            .map(|root| walker.walk(&root.path, true))
            .collect();
        let scan = walker.finish();
        for (root, result) in self.roots.iter_mut().zip(results) {
            match result {
                Ok(()) => {
                    if !root.present {
                        info!(path = %root.path.display(), "watch root appeared; watching it");
                    }
                    root.present = true;
                    root.reported = false;
                }
                Err(error) => {
                    if root.present {
                        let error = root_error(root.path.clone(), error);
                        warn!(error = %crate::Chain(&error), "watch root lost; waiting for it to reappear");
                    }
                    root.present = false;
                    root.reported = true;
                }
            }
        }

        let found = &scan.files;
        let stale: Vec<(FileKey, PathBuf)> = self
            .index
            .iter()
            .flat_map(|(key, paths)| {
                paths
                    .iter()
                    .filter(move |p| found.get(*p).map(|f| f.key) != Some(key))
                    .map(move |p| (key, p.clone()))
            })
            .collect();
        for (key, path) in stale {
            self.remove_path(key, &path, batch);
        }
        let walked: HashSet<WatchDescriptor> = scan.dirs.iter().map(|d| d.wd).collect();
        let unwalked: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(wd, d)| d.tree && !walked.contains(wd))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in unwalked {
            self.release(wd, Role::Tree, batch);
        }
        let Scan {
            files,
            links,
            dirs,
            unreadable_dirs,
            watch_failures,
        } = scan;
        self.counters.unreadable_dirs += unreadable_dirs;
        self.counters.watch_failures += watch_failures;
        for dir in dirs {
            self.set_tree_dir(dir, batch);
        }
        self.add_found(files, &links, batch);
        // The walk saw every link under the present roots.
        self.links = links.into_iter().collect();
        self.watch_gpu_dirs();
        self.resolve_gpu(batch);
    }

    /// Applies a batch's net effect to the kernel map and turns its path
    /// operations into changes. A key the map refuses is dropped from the
    /// index too, so the index never names a file the kernel does not
    /// audit; the next event on it or the next rescan retries.
    fn commit(&mut self, mut batch: Batch, map: &mut impl InodeMap) -> Vec<WatchChange> {
        batch.outside |= !batch.orphans.is_empty();
        self.retain_orphans(std::mem::take(&mut batch.orphans));
        let mut rejected = HashSet::new();
        let mut full = 0u64;
        for (key, before) in batch.before {
            let after = self.flags_of(&key);
            if after == before {
                continue;
            }
            if after == 0 {
                self.handles.remove(&key);
                if let Err(error) = map.remove(&key) {
                    self.counters.map_update_failures += 1;
                    warn!(dev = key.dev, ino = key.ino, %error, "cannot remove an unwatched file from the kernel map; its accesses may still be reported without a path");
                }
                continue;
            }
            let entry = WatchEntry {
                flags: after,
                _pad: 0,
            };
            let Err(error) = map.insert(key, entry) else {
                continue;
            };
            let path = self
                .path_of(&key)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            match error {
                MapUpdateError::Full { .. }
                | MapUpdateError::DirsFull { .. }
                | MapUpdateError::NamesFull { .. } => {
                    self.counters.map_full_failures += 1;
                    full += 1;
                    if full == 1 {
                        warn!(path = %path.display(), %error, "file is not audited");
                    }
                }
                MapUpdateError::Other { .. } => {
                    self.counters.map_update_failures += 1;
                    warn!(path = %path.display(), %error, "file is not audited");
                }
            }
            if before == 0 {
                self.drop_key(&key);
                rejected.insert(key);
            }
        }
        if full > 1 {
            warn!(
                count = full,
                "files are not audited: the watched-inode map is full (raise watch.max_files)"
            );
        }
        self.commit_dirs(std::mem::take(&mut batch.dirs), map);
        if batch.outside {
            let names: Vec<u64> = self.outside_names().collect();
            self.names.add(names, map);
        }
        // New devices met by this batch are checked against the kernel.
        self.confirmations.run();
        self.changes(batch.ops, &rejected)
    }

    /// Brings `WATCHED_DIRS` in line with the tree directories a batch
    /// added or dropped. A directory the map refuses is retried when a
    /// walk meets it again (the next rescan).
    fn commit_dirs(&mut self, touched: HashSet<FileKey>, map: &mut impl InodeMap) {
        let mut full = 0u64;
        // A new directory's name goes to the path prefilter too.
        let new_names: Vec<u64> = touched
            .iter()
            .filter_map(|key| self.tree_dir_path(key)?.file_name())
            .map(names::of)
            .collect();
        self.names.add(new_names, map);
        for key in touched {
            let wanted = self.dir_keys.contains_key(&key);
            if wanted == self.kernel_dirs.contains(&key) {
                continue;
            }
            let result = if wanted {
                map.insert_dir(key)
            } else {
                map.remove_dir(&key)
            };
            match result {
                Ok(()) if wanted => {
                    self.kernel_dirs.insert(key);
                }
                Ok(()) => {
                    self.kernel_dirs.remove(&key);
                }
                Err(error @ MapUpdateError::DirsFull { .. }) => {
                    self.counters.dir_map_full_failures += 1;
                    full += 1;
                    if full == 1 {
                        let path = self.tree_dir_path(&key).unwrap_or(Path::new(""));
                        warn!(path = %path.display(), %error, "files created in this directory are not create records");
                    }
                }
                Err(error) => {
                    self.counters.map_update_failures += 1;
                    warn!(dev = key.dev, ino = key.ino, %error, "cannot update the kernel's watched-directory map");
                }
            }
        }
        if full > 1 {
            warn!(
                count = full,
                "directories are not in the kernel's watched-directory map, so files created in \
                 them are not create records (raise watch.max_dirs)"
            );
        }
    }

    fn drop_key(&mut self, key: &FileKey) {
        for path in self.index.paths(key).to_vec() {
            self.index.remove(key, &path);
        }
        self.gpu.remove(key);
        self.outside.remove(key);
        self.handles.remove(key);
    }

    /// Whether handles taken on `handle`'s mount open again: checked once
    /// per mount, with the first handle (its file exists right now).
    fn handles_work(&mut self, handle: &Handle) -> bool {
        *self
            .handle_mounts
            .entry(handle.mnt_id())
            .or_insert_with(|| handle.reopens())
    }

    /// Keeps watching the inodes that lost their last watched path in a
    /// batch while they live (renamed out of the roots or to another
    /// extension, unlinked while another hard link keeps them).
    fn retain_orphans(&mut self, orphans: HashMap<FileKey, PathBuf>) {
        for (key, last_path) in orphans {
            if self.index.contains(&key) {
                continue;
            }
            let handle = self.handles.remove(&key);
            match self.outside.retain(key, handle, &last_path) {
                Ok(()) => {
                    // Deleted for good? Then not even for a second.
                    let index = &self.index;
                    let gone = self.outside.check_one(&key, |k| index.contains(k));
                    if gone {
                        debug!(path = %last_path.display(), "watched file deleted");
                    } else {
                        info!(
                            last_path = %last_path.display(),
                            path = %self.path_of(&key).map(|p| p.display().to_string()).unwrap_or_default(),
                            "watched file left the watch roots; still watched while its inode lives"
                        );
                    }
                }
                Err(Refused::Off) => {}
                Err(Refused::NoHandle) => {
                    warn!(path = %last_path.display(), "watched file left the watch roots and is no longer watched: its file system gives no file handles to follow it by");
                }
                Err(Refused::Full) => {
                    let dropped = self.outside.counters.dropped_full;
                    if dropped == 1 || dropped.is_multiple_of(100) {
                        warn!(path = %last_path.display(), dropped, "watched file left the watch roots and is no longer watched: watch.max_retained inodes are already followed (raise it)");
                    }
                }
            }
        }
    }

    /// Checks the inodes followed outside the roots (retained, derived):
    /// the gone ones leave the map, the others get their current path.
    fn check_outside(&mut self, batch: &mut Batch) {
        // Their paths are brought up to date: new names for the prefilter.
        batch.outside = true;
        let index = &self.index;
        let released = self.outside.check(|k| index.contains(k));
        for Released { key, path, state } in released {
            // Its flags were WEIGHT until the check released it.
            batch.touch(key, self.flags_of(&key) | watch_flag::WEIGHT);
            batch.op(key, &path, false);
            debug!(path = %path.display(), "followed inode gone; no longer watched");
            // The unlink's record may not have been handled yet.
            if let Some((size, mtime_ns)) = state {
                self.remember_gone(key, path, size, mtime_ns);
            }
        }
    }

    /// Nets out a batch's path operations (a path added then removed is no
    /// change) and pairs one removal with one addition of the same key into
    /// a rename.
    fn changes(&self, ops: Vec<PathOp>, rejected: &HashSet<FileKey>) -> Vec<WatchChange> {
        if ops.is_empty() {
            return Vec::new();
        }
        // (present before the batch, present after, first position)
        let mut net: HashMap<(FileKey, PathBuf), (bool, bool, usize)> = HashMap::new();
        for (pos, op) in ops.into_iter().enumerate() {
            net.entry((op.key, op.path))
                .and_modify(|state| state.1 = op.added)
                .or_insert((!op.added, op.added, pos));
        }
        let mut items: Vec<(usize, FileKey, PathBuf, bool)> = net
            .into_iter()
            .filter(|(_, (before, after, _))| before != after)
            .map(|((key, path), (_, after, pos))| (pos, key, path, after))
            .collect();
        items.sort_unstable_by_key(|item| item.0);

        let mut counts: HashMap<FileKey, (usize, usize)> = HashMap::new();
        for (_, key, _, added) in &items {
            let count = counts.entry(*key).or_default();
            if *added {
                count.1 += 1;
            } else {
                count.0 += 1;
            }
        }
        let is_rename = |key: &FileKey| counts.get(key) == Some(&(1, 1));
        let mut rename_to: HashMap<FileKey, PathBuf> = HashMap::new();
        for (_, key, path, added) in &items {
            if *added && is_rename(key) {
                rename_to.insert(*key, path.clone());
            }
        }

        let mut changes = Vec::with_capacity(items.len());
        for (_, key, path, added) in items {
            if is_rename(&key) {
                if let (false, Some(to)) = (added, rename_to.remove(&key)) {
                    changes.push(WatchChange::Renamed {
                        key,
                        from: path,
                        to,
                    });
                }
            } else if added {
                if !rejected.contains(&key) {
                    changes.push(WatchChange::Added(WatchedFile {
                        key,
                        path,
                        size: self.index.size(&key).unwrap_or(0),
                        flags: self.flags_of(&key),
                    }));
                }
            } else {
                changes.push(WatchChange::Removed { key, path });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests;
