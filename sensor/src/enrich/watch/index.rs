//! The in-memory index of watched weight files: inode key -> paths (hard
//! links give one key several paths) and path -> key, storing each path
//! exactly once.
//!
//! The reverse direction is needed to forget a deleted file, whose inode can
//! no longer be stat'ed. Keeping a second `PathBuf` per path for it would
//! double the index's memory (the target is 100k files), so the reverse map
//! is keyed by a 64-bit hash of the path and every hit is confirmed against
//! the forward map: collisions cost a comparison, never a wrong answer.
//!
//! Beside it, [`Links`] remembers the weight-named symbolic links under the
//! roots and the path each points at, resolving or dangling, so that an
//! event on a link's target (a blob written, replaced or deleted) can be
//! traced back to the links that must be resolved again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};

use sensor_common::FileKey;

/// The paths of one inode. Almost every file has exactly one, so that case
/// needs no separate `Vec` allocation.
#[derive(Debug)]
enum Paths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl Paths {
    fn as_slice(&self) -> &[PathBuf] {
        match self {
            Paths::One(path) => std::slice::from_ref(path),
            Paths::Many(paths) => paths,
        }
    }
}

#[derive(Debug)]
struct Entry {
    paths: Paths,
    size: u64,
    /// Modification time when last seen, ns since the epoch.
    mtime_ns: i64,
}

/// Keys whose paths share one hash value; a multiset, so the rare
/// collision of two paths of the same key stays consistent on removal.
#[derive(Debug)]
enum Slot {
    One(FileKey),
    Many(Vec<FileKey>),
}

#[derive(Debug)]
pub(super) struct Index<S = RandomState> {
    files: HashMap<FileKey, Entry>,
    by_path: HashMap<u64, Slot>,
    /// Randomly keyed per process, so names chosen by whoever can write into
    /// a watched directory cannot be made to collide on purpose.
    hasher: S,
    paths: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<S: BuildHasher> Index<S> {
    pub(super) fn with_hasher(hasher: S) -> Self {
        Self {
            files: HashMap::new(),
            by_path: HashMap::new(),
            hasher,
            paths: 0,
        }
    }

    /// Number of inodes.
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    /// Number of paths (at least [`Self::len`]).
    pub(super) fn path_count(&self) -> usize {
        self.paths
    }

    pub(super) fn contains(&self, key: &FileKey) -> bool {
        self.files.contains_key(key)
    }

    pub(super) fn paths(&self, key: &FileKey) -> &[PathBuf] {
        self.files.get(key).map_or(&[], |e| e.paths.as_slice())
    }

    pub(super) fn size(&self, key: &FileKey) -> Option<u64> {
        self.files.get(key).map(|e| e.size)
    }

    /// Size and modification time (ns) when last seen.
    pub(super) fn state(&self, key: &FileKey) -> Option<(u64, i64)> {
        self.files.get(key).map(|e| (e.size, e.mtime_ns))
    }

    /// The key `path` is indexed under, if any.
    pub(super) fn key_of(&self, path: &Path) -> Option<FileKey> {
        let hash = self.hasher.hash_one(path);
        let holds = |key: &FileKey| self.paths(key).iter().any(|p| p == path);
        match self.by_path.get(&hash)? {
            Slot::One(key) => holds(key).then_some(*key),
            Slot::Many(keys) => keys.iter().copied().find(|k| holds(k)),
        }
    }

    /// Indexes `path` under `key`, or only refreshes the size when it is
    /// already there. Returns whether the path was new. The caller must
    /// first remove `path` from any other key (see [`Self::key_of`]).
    pub(super) fn insert(&mut self, key: FileKey, path: PathBuf, size: u64, mtime_ns: i64) -> bool {
        let hash = self.hasher.hash_one(&path);
        match self.files.get_mut(&key) {
            Some(entry) => {
                entry.size = size;
                entry.mtime_ns = mtime_ns;
                if entry.paths.as_slice().contains(&path) {
                    return false;
                }
                entry.paths = match std::mem::replace(&mut entry.paths, Paths::Many(Vec::new())) {
                    Paths::One(first) => Paths::Many(vec![first, path]),
                    Paths::Many(mut paths) => {
                        paths.push(path);
                        Paths::Many(paths)
                    }
                };
            }
            None => {
                self.files.insert(
                    key,
                    Entry {
                        paths: Paths::One(path),
                        size,
                        mtime_ns,
                    },
                );
            }
        }
        match self.by_path.get_mut(&hash) {
            None => {
                self.by_path.insert(hash, Slot::One(key));
            }
            Some(slot) => {
                *slot = match std::mem::replace(slot, Slot::Many(Vec::new())) {
                    Slot::One(other) => Slot::Many(vec![other, key]),
                    Slot::Many(mut keys) => {
                        keys.push(key);
                        Slot::Many(keys)
                    }
                };
            }
        }
        self.paths += 1;
        true
    }

    /// Removes `path` from `key`, dropping the key with its last path.
    /// Returns the removed path, `None` when it was not indexed there.
    pub(super) fn remove(&mut self, key: &FileKey, path: &Path) -> Option<PathBuf> {
        let entry = self.files.get_mut(key)?;
        let removed = match &mut entry.paths {
            Paths::One(only) if only == path => {
                let removed = std::mem::take(only);
                self.files.remove(key);
                removed
            }
            Paths::One(_) => return None,
            Paths::Many(paths) => {
                let at = paths.iter().position(|p| p == path)?;
                let removed = paths.remove(at);
                if paths.len() == 1 {
                    let last = paths.pop().unwrap_or_default();
                    entry.paths = Paths::One(last);
                }
                removed
            }
        };
        let hash = self.hasher.hash_one(&removed);
        if let Some(slot) = self.by_path.get_mut(&hash) {
            match slot {
                Slot::One(_) => {
                    self.by_path.remove(&hash);
                }
                Slot::Many(keys) => {
                    if let Some(at) = keys.iter().position(|k| k == key) {
                        keys.swap_remove(at);
                    }
                    if keys.len() == 1 {
                        *slot = Slot::One(keys[0]);
                    }
                }
            }
        }
        self.paths -= 1;
        Some(removed)
    }

    /// Every key with its paths, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (FileKey, &[PathBuf])> {
        self.files.iter().map(|(k, e)| (*k, e.paths.as_slice()))
    }

    /// The `(key, path)` pairs whose path satisfies `pred`, copied out so
    /// the caller can remove them.
    pub(super) fn select(&self, mut pred: impl FnMut(&Path) -> bool) -> Vec<(FileKey, PathBuf)> {
        let mut out = Vec::new();
        for (key, paths) in self.iter() {
            for path in paths {
                if pred(path) {
                    out.push((key, path.clone()));
                }
            }
        }
        out
    }
}

/// Weight-named symbolic links under the roots: link path -> the path it
/// points at (made absolute lexically, see `scan::link_target`), and back.
/// A few thousand at most (one per file of each cached model snapshot), so
/// plain maps of paths are fine here.
#[derive(Debug, Default)]
pub(super) struct Links {
    target_of: HashMap<PathBuf, PathBuf>,
    links_to: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Links {
    pub(super) fn len(&self) -> usize {
        self.target_of.len()
    }

    /// The links pointing at `target`.
    pub(super) fn links_to(&self, target: &Path) -> &[PathBuf] {
        self.links_to.get(target).map_or(&[], Vec::as_slice)
    }

    /// Records that `link` points at `target`, replacing what it pointed at
    /// before.
    pub(super) fn set(&mut self, link: PathBuf, target: PathBuf) {
        if self.target_of.get(&link) == Some(&target) {
            return;
        }
        self.remove(&link);
        self.links_to
            .entry(target.clone())
            .or_default()
            .push(link.clone());
        self.target_of.insert(link, target);
    }

    /// Forgets `link`; returns whether it was known.
    pub(super) fn remove(&mut self, link: &Path) -> bool {
        let Some(target) = self.target_of.remove(link) else {
            return false;
        };
        if let Some(links) = self.links_to.get_mut(&target) {
            links.retain(|l| l != link);
            if links.is_empty() {
                self.links_to.remove(&target);
            }
        }
        true
    }

    /// The links whose own path satisfies `pred`.
    pub(super) fn select_links(&self, mut pred: impl FnMut(&Path) -> bool) -> Vec<PathBuf> {
        self.target_of
            .keys()
            .filter(|link| pred(link))
            .cloned()
            .collect()
    }

    /// The links whose target satisfies `pred`.
    pub(super) fn select_by_target(&self, mut pred: impl FnMut(&Path) -> bool) -> Vec<PathBuf> {
        self.links_to
            .iter()
            .filter(|(target, _)| pred(target))
            .flat_map(|(_, links)| links.iter().cloned())
            .collect()
    }
}

impl FromIterator<(PathBuf, PathBuf)> for Links {
    fn from_iter<I: IntoIterator<Item = (PathBuf, PathBuf)>>(iter: I) -> Self {
        let mut links = Links::default();
        for (link, target) in iter {
            links.set(link, target);
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    fn key(ino: u64) -> FileKey {
        FileKey { dev: 7, ino }
    }

    /// Hashes everything to the same value, to exercise collisions.
    #[derive(Default, Clone)]
    struct Colliding;
    struct ZeroHasher;
    impl Hasher for ZeroHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, _: &[u8]) {}
    }
    impl BuildHasher for Colliding {
        type Hasher = ZeroHasher;
        fn build_hasher(&self) -> ZeroHasher {
            ZeroHasher
        }
    }

    fn exercise<S: BuildHasher>(mut index: Index<S>) {
        assert!(index.insert(key(1), PathBuf::from("/m/a.gguf"), 10, 0));
        assert!(index.insert(key(1), PathBuf::from("/m/link.gguf"), 11, 0));
        assert!(!index.insert(key(1), PathBuf::from("/m/a.gguf"), 12, 0));
        assert!(index.insert(key(2), PathBuf::from("/m/b.gguf"), 20, 0));
        assert_eq!(index.len(), 2);
        assert_eq!(index.path_count(), 3);
        assert_eq!(index.size(&key(1)), Some(12));
        assert_eq!(
            index.paths(&key(1)),
            &[PathBuf::from("/m/a.gguf"), PathBuf::from("/m/link.gguf")]
        );
        assert_eq!(index.key_of(Path::new("/m/link.gguf")), Some(key(1)));
        assert_eq!(index.key_of(Path::new("/m/b.gguf")), Some(key(2)));
        assert_eq!(index.key_of(Path::new("/m/c.gguf")), None);

        assert_eq!(index.remove(&key(2), Path::new("/m/a.gguf")), None);
        assert_eq!(
            index.remove(&key(1), Path::new("/m/a.gguf")),
            Some(PathBuf::from("/m/a.gguf"))
        );
        assert!(index.contains(&key(1)));
        assert_eq!(index.paths(&key(1)), &[PathBuf::from("/m/link.gguf")]);
        assert_eq!(index.key_of(Path::new("/m/a.gguf")), None);
        assert_eq!(index.key_of(Path::new("/m/link.gguf")), Some(key(1)));
        assert!(index.remove(&key(1), Path::new("/m/link.gguf")).is_some());
        assert!(!index.contains(&key(1)));
        assert!(index.paths(&key(1)).is_empty());
        assert_eq!(index.key_of(Path::new("/m/b.gguf")), Some(key(2)));
        assert_eq!(index.path_count(), 1);
        let picked = index.select(|p| p.starts_with("/m"));
        assert_eq!(picked, vec![(key(2), PathBuf::from("/m/b.gguf"))]);
    }

    #[test]
    fn index_keeps_both_directions_consistent() {
        exercise(Index::default());
    }

    #[test]
    fn index_is_exact_under_hash_collisions() {
        exercise(Index::with_hasher(Colliding));
    }

    #[test]
    fn links_track_both_directions() {
        let p = PathBuf::from;
        let mut links: Links = [
            (p("/hf/snap/a/m.safetensors"), p("/hf/blobs/1")),
            (p("/hf/snap/b/m.safetensors"), p("/hf/blobs/1")),
            (p("/hf/snap/b/n.safetensors"), p("/hf/blobs/2")),
        ]
        .into_iter()
        .collect();
        assert_eq!(links.len(), 3);
        assert_eq!(
            links.links_to(Path::new("/hf/blobs/1")),
            &[p("/hf/snap/a/m.safetensors"), p("/hf/snap/b/m.safetensors")]
        );

        // Re-pointing a link moves it between targets.
        links.set(p("/hf/snap/a/m.safetensors"), p("/hf/blobs/2"));
        assert_eq!(
            links.links_to(Path::new("/hf/blobs/1")),
            &[p("/hf/snap/b/m.safetensors")]
        );
        assert_eq!(links.links_to(Path::new("/hf/blobs/2")).len(), 2);
        assert_eq!(links.len(), 3);

        let mut into = links.select_by_target(|t| t.starts_with("/hf/blobs"));
        into.sort();
        assert_eq!(into.len(), 3);
        let mut under_b = links.select_links(|l| l.starts_with("/hf/snap/b"));
        under_b.sort();
        assert_eq!(
            under_b,
            vec![p("/hf/snap/b/m.safetensors"), p("/hf/snap/b/n.safetensors")]
        );

        assert!(links.remove(Path::new("/hf/snap/b/m.safetensors")));
        assert!(!links.remove(Path::new("/hf/snap/b/m.safetensors")));
        assert!(links.links_to(Path::new("/hf/blobs/1")).is_empty());
        assert!(!links.links_to.contains_key(Path::new("/hf/blobs/1")));
        assert_eq!(links.len(), 2);
    }
}
