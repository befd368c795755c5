//! Maps the cgroup ids the kernel puts in every record to cgroup v2 paths.
//!
//! A cgroup v2 id is the inode number of the cgroup's directory in the
//! cgroup2 filesystem (kernfs), so the only way from an id back to a path
//! is to walk the mount and match directory inodes. The walk is cached; an
//! unknown id triggers a new walk at most once per [`REWALK_INTERVAL`], and
//! an id still unknown after a walk that started after it was asked for is
//! remembered as unresolvable (a cgroup outside this mount's view, or one
//! already removed) so it cannot make every later record pay for a walk.
//!
//! kernfs never reuses ids on 64-bit kernels, so a cached id -> path pair
//! never goes wrong; a walk replaces the whole map so removed cgroups do not
//! accumulate.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest time between two walks caused by unknown ids.
pub const REWALK_INTERVAL: Duration = Duration::from_secs(1);
/// Cgroup trees are a few levels deep; anything deeper is not a real
/// hierarchy (or is a loop through a bind mount) and is not followed.
const MAX_DEPTH: usize = 64;
/// Directories recorded per walk; bounds memory on pathological hosts.
const MAX_CGROUPS: usize = 1 << 20;
/// Unresolvable ids remembered before the set is cleared and relearned.
const MAX_UNRESOLVABLE: usize = 4096;

/// Errors of the cgroup resolver.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cannot walk cgroup2 mount {path} (check that the cgroup2 \
         filesystem is mounted there and readable by the agent)"
    )]
    Walk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Cgroup id -> cgroup v2 path, relative to the cgroup2 mount.
#[derive(Debug)]
pub struct CgroupResolver {
    mount: PathBuf,
    paths: HashMap<u64, String>,
    /// When the cached map was walked, if ever.
    walked_at: Option<Instant>,
    /// Ids that a walk started after they were asked for did not find.
    unresolvable: HashSet<u64>,
    rewalk_interval: Duration,
}

impl CgroupResolver {
    /// A resolver over the cgroup2 filesystem mounted at `mount_point`
    /// (normally [`cgroup2_mount`]). Nothing is read until the first lookup.
    pub fn new(mount_point: PathBuf) -> Self {
        Self {
            mount: mount_point,
            paths: HashMap::new(),
            walked_at: None,
            unresolvable: HashSet::new(),
            rewalk_interval: REWALK_INTERVAL,
        }
    }

    /// The cgroup2 mount point this resolver walks.
    pub fn mount_point(&self) -> &Path {
        &self.mount
    }

    /// Walks the mount now, replacing the cache; returns how many cgroups it
    /// found. Call it at start-up to fail loudly on a wrong mount point.
    pub fn refresh(&mut self) -> Result<usize, CgroupError> {
        self.walk(Instant::now())
    }

    /// The path of cgroup `cgroup_id` (e.g. `/system.slice/docker-<id>.scope`,
    /// or `/` for the root), if it is under the mount.
    pub fn resolve(&mut self, cgroup_id: u64) -> Option<&str> {
        self.resolve_at(cgroup_id, Instant::now())
    }

    /// The path of `cgroup_id` if it is already cached; never walks.
    pub fn cached(&self, cgroup_id: u64) -> Option<&str> {
        self.paths.get(&cgroup_id).map(String::as_str)
    }

    fn resolve_at(&mut self, cgroup_id: u64, now: Instant) -> Option<&str> {
        if !self.paths.contains_key(&cgroup_id) && !self.unresolvable.contains(&cgroup_id) {
            let due = self
                .walked_at
                .is_none_or(|at| now.saturating_duration_since(at) >= self.rewalk_interval);
            if due {
                if let Err(err) = self.walk(now) {
                    tracing::debug!(err = %crate::Chain(&err), cgroup_id, "cgroup id lookup walk failed");
                } else if !self.paths.contains_key(&cgroup_id) {
                    // This walk began after the id was seen in a record, so
                    // after its cgroup was created (a cgroup exists before
                    // any task can be in it): it will never show up here.
                    self.remember_unresolvable(cgroup_id);
                }
            }
        }
        self.paths.get(&cgroup_id).map(String::as_str)
    }

    /// The id of the cgroup at `path` (relative to the mount), read from its
    /// directory's inode; also caches the pair. Paths that climb out of the
    /// mount (`/proc/PID/cgroup` shows `/..` for cgroups outside the reader's
    /// cgroup namespace) or land on another filesystem are refused.
    pub fn id_of(&mut self, path: &str) -> Option<u64> {
        let relative = path.trim_start_matches('/');
        if relative.split('/').any(|c| c == "..") {
            return None;
        }
        let mount_dev = fs::metadata(&self.mount).ok()?.dev();
        let meta = fs::metadata(self.mount.join(relative)).ok()?;
        if !meta.is_dir() || meta.dev() != mount_dev {
            return None;
        }
        let ino = meta.ino();
        self.unresolvable.remove(&ino);
        self.paths.insert(ino, format!("/{relative}"));
        Some(ino)
    }

    fn remember_unresolvable(&mut self, cgroup_id: u64) {
        if self.unresolvable.len() >= MAX_UNRESOLVABLE {
            self.unresolvable.clear();
        }
        self.unresolvable.insert(cgroup_id);
    }

    fn walk(&mut self, now: Instant) -> Result<usize, CgroupError> {
        self.walked_at = Some(now);
        let root_ino = fs::metadata(&self.mount)
            .map_err(|source| CgroupError::Walk {
                path: self.mount.clone(),
                source,
            })?
            .ino();
        let mut paths = HashMap::new();
        paths.insert(root_ino, "/".to_owned());
        let mut stack = vec![(self.mount.clone(), String::new(), 0usize)];
        while let Some((dir, relative, depth)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Cgroups come and go during the walk.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(source) if depth == 0 => return Err(CgroupError::Walk { path: dir, source }),
                Err(err) => {
                    tracing::debug!(path = %dir.display(), err = %crate::Chain(&err), "skipping unreadable cgroup");
                    continue;
                }
            };
            for entry in entries.flatten() {
                // Type and inode come from the directory listing itself
                // (kernfs reports the node id as `d_ino`): no stat per
                // cgroup, and symlinks are never followed.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let child_relative = format!("{relative}/{}", name.to_string_lossy());
                paths.insert(entry.ino(), child_relative.clone());
                if paths.len() >= MAX_CGROUPS {
                    tracing::warn!(
                        mount = %self.mount.display(),
                        limit = MAX_CGROUPS,
                        "cgroup walk stopped at its limit; some cgroup ids will not resolve"
                    );
                    stack.clear();
                    break;
                }
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), child_relative, depth + 1));
                }
            }
        }
        let found = paths.len();
        self.paths = paths;
        Ok(found)
    }
}

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Option<PathBuf> {
    match fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => cgroup2_mount_from(&text),
        Err(err) => {
            tracing::warn!(err = %crate::Chain(&err), "cannot read /proc/self/mountinfo to find the cgroup2 mount");
            None
        }
    }
}

/// The cgroup2 mount point in mountinfo `text`. A mount of the filesystem's
/// root is preferred: the paths in `/proc/PID/cgroup` are relative to the
/// root, so walking a bind mount of a subtree would give shortened paths.
fn cgroup2_mount_from(text: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in text.lines() {
        // `id parent major:minor root mount-point options [optional...] - fstype source super-options`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let mut fields = before.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if root == "/" {
            return Some(mount_point);
        }
        fallback.get_or_insert(mount_point);
    }
    fallback
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')));
        match escaped.and_then(|v| u8::try_from(v).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(path: &Path) -> u64 {
        match fs::metadata(path) {
            Ok(m) => m.ino(),
            Err(err) => panic!("stat {}: {err}", path.display()),
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("tempdir: {err}"),
        };
        for sub in [
            "system.slice/docker-abc.scope",
            "system.slice/sshd.service",
            "user.slice/user-1000.slice/session-2.scope",
        ] {
            if let Err(err) = fs::create_dir_all(dir.path().join(sub)) {
                panic!("mkdir {sub}: {err}");
            }
        }
        // Interface files are regular files; they must not be recorded.
        if let Err(err) = fs::write(dir.path().join("system.slice/cgroup.procs"), "1\n") {
            panic!("write: {err}");
        }
        dir
    }

    #[test]
    fn resolves_directories_by_inode() {
        let dir = tree();
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        let docker = ino(&dir.path().join("system.slice/docker-abc.scope"));
        let session = ino(&dir
            .path()
            .join("user.slice/user-1000.slice/session-2.scope"));
        assert_eq!(
            resolver.resolve(docker),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            resolver.resolve(session),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        assert_eq!(resolver.resolve(ino(dir.path())), Some("/"));
        let file = ino(&dir.path().join("system.slice/cgroup.procs"));
        assert_eq!(resolver.resolve(file), None);
    }

    #[test]
    fn refresh_counts_directories_and_reports_bad_mounts() {
        let dir = tree();
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        // root, system.slice, 2 services, user.slice, user-1000.slice, session
        assert_eq!(resolver.refresh().ok(), Some(7));
        let mut missing = CgroupResolver::new(dir.path().join("nope"));
        match missing.refresh() {
            Err(err) => assert!(
                err.to_string().contains("cannot walk cgroup2 mount"),
                "{err}"
            ),
            Ok(n) => panic!("walked {n} cgroups of a missing mount"),
        }
    }

    #[test]
    fn misses_rewalk_at_most_once_per_interval() {
        let dir = tree();
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        let t0 = Instant::now();
        assert!(resolver.resolve_at(ino(dir.path()), t0).is_some());

        // A cgroup created after the walk is not seen until the interval
        // has passed...
        let new = dir.path().join("system.slice/crio-new.scope");
        if let Err(err) = fs::create_dir(&new) {
            panic!("mkdir: {err}");
        }
        let new_ino = ino(&new);
        let soon = t0 + Duration::from_millis(100);
        assert_eq!(resolver.resolve_at(new_ino, soon), None);
        assert_eq!(resolver.walked_at, Some(t0));
        // ...and then it is.
        let later = t0 + REWALK_INTERVAL;
        assert_eq!(
            resolver.resolve_at(new_ino, later),
            Some("/system.slice/crio-new.scope")
        );
        assert_eq!(resolver.walked_at, Some(later));
    }

    #[test]
    fn ids_missing_after_a_walk_stop_causing_walks() {
        let dir = tree();
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        let t0 = Instant::now();
        let bogus = u64::MAX - 7;
        assert_eq!(resolver.resolve_at(bogus, t0), None);
        assert!(resolver.unresolvable.contains(&bogus));
        let later = t0 + 10 * REWALK_INTERVAL;
        assert_eq!(resolver.resolve_at(bogus, later), None);
        assert_eq!(
            resolver.walked_at,
            Some(t0),
            "an unresolvable id walked again"
        );
    }

    #[test]
    fn removed_cgroups_leave_the_cache_on_the_next_walk() {
        let dir = tree();
        let gone = dir.path().join("system.slice/sshd.service");
        let gone_ino = ino(&gone);
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        assert!(resolver.resolve(gone_ino).is_some());
        if let Err(err) = fs::remove_dir(&gone) {
            panic!("rmdir: {err}");
        }
        assert_eq!(resolver.refresh().ok(), Some(6));
        assert!(!resolver.paths.contains_key(&gone_ino));
    }

    #[test]
    fn id_of_reads_the_inode_and_caches_it() {
        let dir = tree();
        let mut resolver = CgroupResolver::new(dir.path().to_path_buf());
        let expected = ino(&dir.path().join("system.slice/sshd.service"));
        assert_eq!(resolver.id_of("/system.slice/sshd.service"), Some(expected));
        assert!(resolver.walked_at.is_none());
        assert_eq!(
            resolver.resolve(expected),
            Some("/system.slice/sshd.service")
        );
        assert!(resolver.walked_at.is_none(), "a cached id caused a walk");
        assert_eq!(resolver.id_of("/no/such.scope"), None);
        assert_eq!(resolver.id_of("/system.slice/cgroup.procs"), None);
        assert_eq!(resolver.id_of("/../../etc"), None);
        assert_eq!(resolver.id_of("/"), Some(ino(dir.path())));
    }

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_from(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn prefers_a_mount_of_the_cgroup2_root() {
        let text = "\
50 23 0:38 /kubepods/pod1 /host\\040cg rw shared:5 - cgroup2 cgroup2 rw
51 23 0:38 / /sys/fs/cgroup rw,nosuid shared:9 master:1 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount_from(text),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let only_subtree = "50 23 0:38 /kubepods /host\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_from(only_subtree),
            Some(PathBuf::from("/host cg"))
        );
        assert_eq!(
            cgroup2_mount_from("31 23 0:28 / /x rw - tmpfs tmpfs rw\n"),
            None
        );
    }

    #[test]
    fn real_mountinfo_names_a_directory() {
        // Not every test machine has cgroup2; when it does, it must be a
        // directory whose root resolves to "/".
        if let Some(mount) = cgroup2_mount() {
            let mut resolver = CgroupResolver::new(mount.clone());
            assert_eq!(resolver.resolve(ino(&mount)), Some("/"));
        }
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mountinfo("/trailing\\04"), "/trailing\\04");
    }
}
