//! Tests of the watch set against real directories and a fake kernel map.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sensor_common::{FileKey, WatchEntry, watch_flag};

use super::*;

/// The kernel maps, as a `HashMap` with an optional capacity and sets.
#[derive(Default)]
struct FakeMap {
    entries: HashMap<FileKey, WatchEntry>,
    max: Option<usize>,
    inserts: usize,
    removes: usize,
    dirs: HashSet<FileKey>,
    dirs_max: Option<usize>,
    names: HashSet<u64>,
    names_max: Option<usize>,
    name_filter: bool,
}

impl InodeMap for FakeMap {
    fn insert(&mut self, key: FileKey, entry: WatchEntry) -> Result<(), MapUpdateError> {
        if let Some(max) = self.max
            && !self.entries.contains_key(&key)
            && self.entries.len() >= max
        {
            return Err(MapUpdateError::Full { max: max as u32 });
        }
        self.inserts += 1;
        self.entries.insert(key, entry);
        Ok(())
    }

    fn remove(&mut self, key: &FileKey) -> Result<(), MapUpdateError> {
        self.removes += 1;
        self.entries.remove(key);
        Ok(())
    }

    fn insert_dir(&mut self, key: FileKey) -> Result<(), MapUpdateError> {
        if let Some(max) = self.dirs_max
            && self.dirs.len() >= max
        {
            return Err(MapUpdateError::DirsFull { max: max as u32 });
        }
        self.dirs.insert(key);
        Ok(())
    }

    fn remove_dir(&mut self, key: &FileKey) -> Result<(), MapUpdateError> {
        self.dirs.remove(key);
        Ok(())
    }

    fn insert_name(&mut self, hash: u64) -> Result<(), MapUpdateError> {
        if let Some(max) = self.names_max
            && self.names.len() >= max
        {
            return Err(MapUpdateError::NamesFull { max: max as u32 });
        }
        self.names.insert(hash);
        Ok(())
    }

    fn remove_name(&mut self, hash: u64) -> Result<(), MapUpdateError> {
        self.names.remove(&hash);
        Ok(())
    }

    fn names(&self) -> Result<Vec<u64>, MapUpdateError> {
        Ok(self.names.iter().copied().collect())
    }

    fn set_name_filter(&mut self, on: bool) -> Result<(), MapUpdateError> {
        self.name_filter = on;
        Ok(())
    }
}

impl FakeMap {
    fn flags(&self, key: &FileKey) -> Option<u32> {
        self.entries.get(key).map(|e| e.flags)
    }
}

/// The changes a test expects, without the struct literals.
fn removed(key: FileKey, path: impl Into<PathBuf>) -> WatchChange {
    WatchChange::Removed {
        key,
        path: path.into(),
    }
}

fn renamed(key: FileKey, from: impl Into<PathBuf>, to: impl Into<PathBuf>) -> WatchChange {
    WatchChange::Renamed {
        key,
        from: from.into(),
        to: to.into(),
    }
}

fn added(key: FileKey, path: impl Into<PathBuf>, size: u64, flags: u32) -> WatchChange {
    WatchChange::Added(WatchedFile {
        key,
        path: path.into(),
        size,
        flags,
    })
}

fn spec(roots: &[&Path]) -> WatchSpec {
    WatchSpec {
        roots: roots.iter().map(|r| r.to_path_buf()).collect(),
        roots_required: true,
        extensions: vec!["safetensors".into(), "gguf".into()],
        gpu_patterns: Vec::new(),
        // These tests pin what the roots alone decide; retention has its own.
        max_retained: 0,
    }
}

fn key(path: &Path) -> FileKey {
    let meta = fs::symlink_metadata(path).expect("stat test file");
    FileKey {
        dev: kernel_dev(meta.dev()),
        ino: meta.ino(),
    }
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create test directory");
    }
    fs::write(path, data).expect("write test file");
}

/// Calls `process_inotify` until `done` holds (at most ~2 s), returning
/// every change seen.
fn pump(
    set: &mut WatchSet,
    map: &mut FakeMap,
    done: impl Fn(&WatchSet, &FakeMap) -> bool,
) -> Vec<WatchChange> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut changes = Vec::new();
    loop {
        changes.extend(set.process_inotify(map).expect("process inotify events"));
        if done(set, map) || Instant::now() > deadline {
            return changes;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes whatever arrives within a short while, for checks that
/// something does *not* change.
fn settle(set: &mut WatchSet, map: &mut FakeMap) -> Vec<WatchChange> {
    let mut changes = Vec::new();
    for _ in 0..10 {
        changes.extend(set.process_inotify(map).expect("process inotify events"));
        std::thread::sleep(Duration::from_millis(10));
    }
    changes
}

/// The map and the index agree: same keys, same flags.
fn assert_consistent(set: &WatchSet, map: &FakeMap) {
    assert_eq!(set.len(), map.entries.len(), "index and map sizes differ");
    for (key, entry) in &map.entries {
        assert_eq!(set.flags_of(key), entry.flags, "flags of {key:?}");
    }
}

#[test]
fn initial_scan_finds_only_weight_files_case_insensitively_in_nested_dirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("outside");
    write(&root.join("a.safetensors"), b"a");
    write(&root.join("B.GGUF"), b"bb");
    write(&root.join("sub/deep/c.SafeTensors"), b"ccc");
    write(&root.join("notes.txt"), b"");
    write(&root.join("model.safetensors.part"), b"");
    write(&root.join("sub/x.bin"), b"");
    fs::create_dir_all(root.join("dir.gguf")).expect("mkdir");
    write(&outside.join("o.safetensors"), b"o");
    // A weight-named link to a file is one more path of the file's key; a
    // directory link is not followed.
    symlink(root.join("a.safetensors"), root.join("link.safetensors")).expect("symlink");
    symlink(&outside, root.join("linkdir")).expect("symlink");

    let mut map = FakeMap::default();
    let set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");

    assert_eq!(set.len(), 3);
    assert_consistent(&set, &map);
    for rel in ["a.safetensors", "B.GGUF", "sub/deep/c.SafeTensors"] {
        let path = root.join(rel);
        let k = key(&path);
        assert_eq!(set.path_of(&k), Some(path.as_path()));
        assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));
        assert!(!set.is_gpu_device(&k));
    }
    assert_eq!(set.path_of(&key(&outside.join("o.safetensors"))), None);
    assert_eq!(set.index.size(&key(&root.join("B.GGUF"))), Some(2));
    // The file's own path comes first, whatever order the walk found them.
    assert_eq!(
        set.paths_of(&key(&root.join("a.safetensors"))),
        &[root.join("a.safetensors"), root.join("link.safetensors")]
    );
    let stats = set.stats();
    assert_eq!(
        (stats.files, stats.paths, stats.links, stats.missing_roots),
        (3, 4, 1, 0)
    );
    // models, sub, sub/deep, dir.gguf; not the linked directory.
    assert_eq!(stats.directories, 4);
}

#[test]
fn hard_links_are_one_key_with_several_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let a = root.join("a.gguf");
    let b = root.join("sub/b.gguf");
    write(&a, b"weights");
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::hard_link(&a, &b).expect("hard link");
    let k = key(&a);

    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    assert_eq!(set.len(), 1);
    assert_eq!(set.stats().paths, 2);
    let mut paths = set.paths_of(&k).to_vec();
    paths.sort();
    assert_eq!(paths, vec![a.clone(), b.clone()]);

    // Deleting one link keeps the inode watched through the other.
    fs::remove_file(&a).expect("unlink");
    let changes = pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 1);
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&b));
    assert_eq!(set.path_of(&k), Some(b.as_path()));
    assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));
    assert_eq!(map.removes, 0);
    assert_eq!(changes, vec![removed(k, a.clone())]);

    // A new link is one more path of the same key.
    fs::hard_link(&b, &a).expect("hard link");
    pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 2);
    assert_eq!(set.paths_of(&k), &[b.clone(), a.clone()]);

    fs::remove_file(&a).expect("unlink");
    fs::remove_file(&b).expect("unlink");
    pump(&mut set, &mut map, |_, m| m.entries.is_empty());
    assert!(set.paths_of(&k).is_empty());
    assert!(map.entries.is_empty());
    assert_consistent(&set, &map);
}

#[test]
fn created_files_are_added_and_their_size_follows_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    assert!(set.is_empty());

    let path = root.join("new.safetensors");
    let mut file = fs::File::create(&path).expect("create");
    let k = key(&path);
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&k).is_some());
    assert_eq!(changes, vec![added(k, path.clone(), 0, watch_flag::WEIGHT)]);
    assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));

    std::io::Write::write_all(&mut file, &[7u8; 4096]).expect("write");
    drop(file);
    let changes = pump(&mut set, &mut map, |s, _| s.index.size(&k) == Some(4096));
    assert_eq!(set.index.size(&k), Some(4096));
    assert!(
        changes.is_empty(),
        "a write is not a watch set change: {changes:?}"
    );

    // Files of other extensions are ignored.
    write(&root.join("config.json"), b"{}");
    write(&root.join("tokenizer.model"), b"");
    assert!(settle(&mut set, &mut map).is_empty());
    assert_eq!(set.len(), 1);
    assert_consistent(&set, &map);
}

#[test]
fn renames_keep_the_key_and_follow_the_extension() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let a = root.join("a.safetensors");
    write(&a, b"x");
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    let k = key(&a);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    let (inserts, removes) = (map.inserts, map.removes);

    // Within the tree: same key, new path, the map is not touched.
    let b = root.join("sub/b.safetensors");
    fs::rename(&a, &b).expect("rename");
    let changes = pump(&mut set, &mut map, |s, _| {
        s.path_of(&k) == Some(b.as_path())
    });
    assert_eq!(changes, vec![renamed(k, a.clone(), b.clone())]);
    assert_eq!((map.inserts, map.removes), (inserts, removes));

    // To a non-weight extension: no longer watched.
    let part = root.join("sub/b.safetensors.bak");
    fs::rename(&b, &part).expect("rename");
    let changes = pump(&mut set, &mut map, |_, m| m.entries.is_empty());
    assert_eq!(changes, vec![removed(k, b.clone())]);
    assert!(set.path_of(&k).is_none());

    // And back to a weight extension: watched again.
    let c = root.join("c.GGUF");
    fs::rename(&part, &c).expect("rename");
    pump(&mut set, &mut map, |s, _| s.path_of(&k).is_some());
    assert_eq!(set.path_of(&k), Some(c.as_path()));
    assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));
    assert_consistent(&set, &map);
}

#[test]
fn files_moved_in_out_and_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&root).expect("mkdir");
    write(&outside.join("in.gguf"), b"1");
    write(&root.join("out.gguf"), b"2");
    write(&root.join("del.gguf"), b"3");
    let (k_in, k_out, k_del) = (
        key(&outside.join("in.gguf")),
        key(&root.join("out.gguf")),
        key(&root.join("del.gguf")),
    );
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert_eq!(set.len(), 2);

    fs::rename(outside.join("in.gguf"), root.join("in.gguf")).expect("move in");
    fs::rename(root.join("out.gguf"), outside.join("out.gguf")).expect("move out");
    fs::remove_file(root.join("del.gguf")).expect("delete");
    let changes = pump(&mut set, &mut map, |s, _| {
        s.len() == 1 && s.path_of(&k_in).is_some()
    });
    assert_eq!(set.path_of(&k_in), Some(root.join("in.gguf").as_path()));
    assert!(set.path_of(&k_out).is_none());
    assert!(set.path_of(&k_del).is_none());
    assert_eq!(map.entries.keys().copied().collect::<Vec<_>>(), vec![k_in]);
    assert_eq!(changes.len(), 3);
    assert!(changes.contains(&removed(k_out, root.join("out.gguf"))));
    assert!(changes.contains(&removed(k_del, root.join("del.gguf"))));
    assert_consistent(&set, &map);
}

#[test]
fn a_file_replaced_by_rename_changes_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let model = root.join("model.safetensors");
    write(&model, b"old");
    let old = key(&model);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");

    // The usual download pattern: write a temporary name, rename over.
    let tmp_path = root.join("model.safetensors.incomplete");
    write(&tmp_path, b"new!");
    let new = key(&tmp_path);
    fs::rename(&tmp_path, &model).expect("rename over");
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&new).is_some());
    assert_eq!(set.path_of(&new), Some(model.as_path()));
    assert!(set.path_of(&old).is_none());
    assert_eq!(map.flags(&old), None);
    assert_eq!(map.flags(&new), Some(watch_flag::WEIGHT));
    assert!(changes.contains(&removed(old, model.clone())));
    assert!(changes.contains(&added(new, model.clone(), 4, watch_flag::WEIGHT)));
    assert_consistent(&set, &map);
}

#[test]
fn new_subdirectories_are_watched_and_scanned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    let dirs_before = set.stats().directories;

    // Created in one go, before any event is read: the walk must find it.
    let deep = root.join("org/model/snap");
    write(&deep.join("w.safetensors"), b"w");
    let k = key(&deep.join("w.safetensors"));
    pump(&mut set, &mut map, |s, _| s.path_of(&k).is_some());
    assert_eq!(set.path_of(&k), Some(deep.join("w.safetensors").as_path()));
    assert_eq!(set.stats().directories, dirs_before + 3);

    // The new directories are watched themselves.
    write(&deep.join("later.gguf"), b"l");
    let later = key(&deep.join("later.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&later).is_some());
    assert!(set.path_of(&later).is_some());

    // Deleting the tree forgets its files and its watches.
    fs::remove_dir_all(root.join("org")).expect("rm -r");
    pump(&mut set, &mut map, |s, _| {
        s.is_empty() && s.stats().directories == dirs_before
    });
    assert!(set.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().directories, dirs_before);
    assert_consistent(&set, &map);
}

#[test]
fn directories_moved_within_the_tree_keep_their_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&outside).expect("mkdir");
    write(&root.join("d/x.gguf"), b"x");
    write(&root.join("d/inner/y.gguf"), b"y");
    let kx = key(&root.join("d/x.gguf"));
    let ky = key(&root.join("d/inner/y.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    let (inserts, removes) = (map.inserts, map.removes);

    fs::rename(root.join("d"), root.join("e")).expect("rename dir");
    let changes = pump(&mut set, &mut map, |s, _| {
        s.path_of(&kx) == Some(root.join("e/x.gguf").as_path())
    });
    assert_eq!(
        set.path_of(&ky),
        Some(root.join("e/inner/y.gguf").as_path())
    );
    assert_eq!((map.inserts, map.removes), (inserts, removes));
    assert_eq!(changes.len(), 2);
    assert!(changes.contains(&renamed(
        ky,
        root.join("d/inner/y.gguf"),
        root.join("e/inner/y.gguf")
    )));

    // The moved directory is still watched, under its new name.
    write(&root.join("e/inner/z.gguf"), b"z");
    let kz = key(&root.join("e/inner/z.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&kz).is_some());
    assert_eq!(
        set.path_of(&kz),
        Some(root.join("e/inner/z.gguf").as_path())
    );

    // Moved out of the tree: everything below it goes, watches too.
    let dirs = set.stats().directories;
    fs::rename(root.join("e"), outside.join("e")).expect("move out");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().directories, dirs - 2);
    // Changes there are no longer reported.
    write(&outside.join("e/new.gguf"), b"n");
    assert!(settle(&mut set, &mut map).is_empty());
    assert!(set.is_empty());
    assert_consistent(&set, &map);
}

#[test]
fn a_missing_default_root_is_picked_up_when_it_appears() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("later/models");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(
        WatchSpec {
            roots_required: false,
            ..spec(&[&root])
        },
        &mut map,
    )
    .expect("a missing default root is not an error");
    assert_eq!(set.stats().missing_roots, 1);
    assert!(set.poll_missing_roots(&mut map).expect("poll").is_empty());

    write(&root.join("m.gguf"), b"m");
    let k = key(&root.join("m.gguf"));
    let changes = set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(changes.len(), 1);
    assert_eq!(set.path_of(&k), Some(root.join("m.gguf").as_path()));
    assert_eq!(set.stats().missing_roots, 0);

    // From then on inotify keeps it current.
    write(&root.join("n.gguf"), b"n");
    let kn = key(&root.join("n.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&kn).is_some());
    assert!(set.path_of(&kn).is_some());

    // A root that disappears is waited for again.
    fs::remove_dir_all(&root).expect("rm root");
    pump(&mut set, &mut map, |s, _| s.stats().missing_roots == 1);
    assert_eq!(set.stats().missing_roots, 1);
    assert!(set.is_empty());
    assert!(map.entries.is_empty());
    write(&root.join("again.gguf"), b"a");
    set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(set.len(), 1);
    assert_consistent(&set, &map);
}

#[test]
fn a_required_root_must_exist_and_be_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-models");
    let mut map = FakeMap::default();
    let err = WatchSet::new(spec(&[&missing]), &mut map)
        .err()
        .expect("a missing required root is an error");
    assert!(matches!(err, WatchError::RootMissing { .. }));
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("--watch"), "{message}");

    let file = tmp.path().join("file");
    write(&file, b"");
    let err = WatchSet::new(spec(&[&file]), &mut map)
        .err()
        .expect("a file root is an error");
    assert!(matches!(err, WatchError::RootNotDirectory { .. }));
    assert!(err.to_string().contains(&file.display().to_string()));
}

#[test]
fn roots_are_normalized_and_deduplicated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("m");
    write(&root.join("a.gguf"), b"a");
    let slashed = PathBuf::from(format!("{}/./", root.display()));
    let mut map = FakeMap::default();
    let set = WatchSet::new(spec(&[&slashed, &root]), &mut map).expect("watch set");
    assert_eq!(set.roots.len(), 1);
    assert_eq!(
        set.path_of(&key(&root.join("a.gguf"))),
        Some(root.join("a.gguf").as_path())
    );
}

#[test]
fn a_full_map_is_counted_not_silent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for name in ["a.gguf", "b.gguf", "c.gguf"] {
        write(&root.join(name), name.as_bytes());
    }
    let mut map = FakeMap {
        max: Some(1),
        ..FakeMap::default()
    };
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    assert_eq!(set.stats().map_full_failures, 2);
    assert_eq!(map.entries.len(), 1);
    // The index only names what the kernel audits.
    assert_eq!(set.len(), 1);
    assert_consistent(&set, &map);

    // Once there is room, a rescan adds the rest.
    map.max = None;
    let changes = set.rescan(&mut map).expect("rescan");
    assert_eq!(changes.len(), 2);
    assert_eq!(set.len(), 3);
    assert_eq!(set.stats().map_full_failures, 2);
    assert_consistent(&set, &map);
}

#[test]
fn rescan_reconciles_what_inotify_has_not_reported_yet() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    write(&root.join("gone.gguf"), b"g");
    let gone = key(&root.join("gone.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");

    // Created before the deletion so it cannot reuse the inode number.
    write(&root.join("sub/new.gguf"), b"n");
    let new = key(&root.join("sub/new.gguf"));
    fs::remove_file(root.join("gone.gguf")).expect("delete");
    let changes = set.rescan(&mut map).expect("rescan");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(set.path_of(&gone).is_none());
    assert!(set.path_of(&new).is_some());
    assert_eq!(set.stats().rescans, 1);
    assert_consistent(&set, &map);

    // The queued events then agree with the disk: nothing more changes.
    let changes = set.process_inotify(&mut map).expect("events");
    assert!(changes.is_empty(), "{changes:?}");
    assert_consistent(&set, &map);
}

#[test]
fn gpu_patterns_flag_devices_and_follow_new_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dev = tmp.path().join("dev");
    let root = tmp.path().join("models");
    fs::create_dir_all(&root).expect("mkdir");
    write(&dev.join("nvidia0"), b"");
    write(&dev.join("nvidiactl"), b"");
    write(&dev.join("null"), b"");
    fs::create_dir_all(dev.join("nvidia-caps")).expect("mkdir");
    let pattern = format!("{}/nvidia*", dev.display());
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(
        WatchSpec {
            gpu_patterns: vec![pattern, format!("{}/dri/renderD*", dev.display())],
            ..spec(&[&root])
        },
        &mut map,
    )
    .expect("watch set");

    let (k0, kctl) = (key(&dev.join("nvidia0")), key(&dev.join("nvidiactl")));
    assert!(set.is_gpu_device(&k0) && set.is_gpu_device(&kctl));
    assert!(!set.is_gpu_device(&key(&dev.join("null"))));
    assert_eq!(map.flags(&k0), Some(watch_flag::GPU_DEVICE));
    assert_eq!(set.path_of(&k0), Some(dev.join("nvidia0").as_path()));
    assert_eq!(set.len(), 2);
    assert_eq!(set.stats().gpu_devices, 2);

    // A device node created later (nvidia-modprobe) is picked up.
    write(&dev.join("nvidia1"), b"");
    let k1 = key(&dev.join("nvidia1"));
    let changes = pump(&mut set, &mut map, |s, _| s.is_gpu_device(&k1));
    assert_eq!(map.flags(&k1), Some(watch_flag::GPU_DEVICE));
    assert_eq!(
        changes,
        vec![added(k1, dev.join("nvidia1"), 0, watch_flag::GPU_DEVICE)]
    );
    // A directory appearing later (the second pattern) is polled for.
    write(&dev.join("dri/renderD128"), b"");
    let kr = key(&dev.join("dri/renderD128"));
    set.poll_missing_roots(&mut map).expect("poll");
    assert!(set.is_gpu_device(&kr));

    fs::remove_file(dev.join("nvidia0")).expect("rm");
    pump(&mut set, &mut map, |s, _| !s.is_gpu_device(&k0));
    assert!(!set.is_gpu_device(&k0));
    assert_eq!(map.flags(&k0), None);
    // Weight files under the roots are unaffected by device churn.
    assert_eq!(set.stats().files, 0);
    assert_consistent(&set, &map);
}

#[test]
fn a_file_both_weight_and_gpu_gets_both_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let odd = root.join("odd.gguf");
    write(&odd, b"x");
    let mut map = FakeMap::default();
    let set = WatchSet::new(
        WatchSpec {
            gpu_patterns: vec![format!("{}/odd*", root.display())],
            ..spec(&[root])
        },
        &mut map,
    )
    .expect("watch set");
    let k = key(&odd);
    assert_eq!(
        map.flags(&k),
        Some(watch_flag::WEIGHT | watch_flag::GPU_DEVICE)
    );
    assert_eq!(set.len(), 1);
    assert_eq!(set.path_of(&k), Some(odd.as_path()));
}

#[test]
fn relative_gpu_patterns_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut map = FakeMap::default();
    let err = WatchSet::new(
        WatchSpec {
            gpu_patterns: vec!["dev/nvidia*".into()],
            ..spec(&[tmp.path()])
        },
        &mut map,
    )
    .err()
    .expect("a relative pattern is an error");
    assert!(err.to_string().contains("dev/nvidia*"));
}

#[test]
fn kernel_dev_uses_the_kernel_encoding() {
    assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
    assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    assert_eq!(kernel_dev(libc::makedev(0, 0xfffff)), 0xfffff);
    assert_eq!(kernel_dev(libc::makedev(4095, 5)), (4095 << 20) | 5);
    assert_eq!(kernel_dev(0), 0);
    // glibc's encoding of 259:300 differs from the kernel's.
    assert_ne!(libc::makedev(259, 300), (259 << 20) | 300);
}

#[test]
fn is_under_compares_whole_components() {
    let p = |s: &str| PathBuf::from(s);
    assert!(is_under(&p("/m/a/b"), &p("/m/a")));
    assert!(is_under(&p("/m/a"), &p("/m/a")));
    assert!(!is_under(&p("/m/ab"), &p("/m/a")));
    assert!(!is_under(&p("/m"), &p("/m/a")));
    assert!(is_under(&p("/m"), &p("/")));
}

#[test]
fn changes_net_out_and_pair_renames() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut map = FakeMap::default();
    let set = WatchSet::new(spec(&[tmp.path()]), &mut map).expect("watch set");
    let k = FileKey { dev: 1, ino: 2 };
    let op = |path: &str, added| PathOp {
        key: k,
        path: PathBuf::from(path),
        added,
    };
    // Added then removed in one batch: no change.
    assert!(
        set.changes(vec![op("/a", true), op("/a", false)], &HashSet::new())
            .is_empty()
    );
    // Removed then re-added (a directory moved out and back): no change.
    assert!(
        set.changes(vec![op("/a", false), op("/a", true)], &HashSet::new())
            .is_empty()
    );
    assert_eq!(
        set.changes(vec![op("/a", false), op("/b", true)], &HashSet::new()),
        vec![renamed(k, PathBuf::from("/a"), PathBuf::from("/b"))]
    );
    // Two removals and one addition are not a rename.
    let changes = set.changes(
        vec![op("/a", false), op("/c", false), op("/b", true)],
        &HashSet::new(),
    );
    assert_eq!(changes.len(), 3);
}

#[test]
fn a_root_moved_into_another_root_is_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r1 = tmp.path().join("r1");
    let r2 = tmp.path().join("r2");
    write(&r1.join("sub/a.gguf"), b"a");
    fs::create_dir_all(&r2).expect("mkdir");
    let k = key(&r1.join("sub/a.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&r1, &r2]), &mut map).expect("watch set");
    let (inserts, removes) = (map.inserts, map.removes);

    fs::rename(&r1, r2.join("r1")).expect("move root");
    let moved = r2.join("r1/sub/a.gguf");
    let changes = pump(&mut set, &mut map, |s, _| {
        s.path_of(&k) == Some(moved.as_path())
    });
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&moved));
    assert_eq!((map.inserts, map.removes), (inserts, removes));
    assert_eq!(
        changes,
        vec![renamed(k, r1.join("sub/a.gguf"), moved.clone())]
    );
    assert_eq!(set.stats().missing_roots, 1);
    // Still watched under the new name.
    write(&r2.join("r1/sub/b.gguf"), b"b");
    let kb = key(&r2.join("r1/sub/b.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&kb).is_some());
    assert!(set.path_of(&kb).is_some());
    assert_consistent(&set, &map);
}

#[test]
fn a_root_moved_away_is_forgotten_and_waited_for() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    write(&root.join("a.gguf"), b"a");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert_eq!(set.len(), 1);

    fs::rename(&root, tmp.path().join("old-models")).expect("move root away");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().missing_roots, 1);
    assert_eq!(set.stats().directories, 0);
    // Changes in the moved-away tree are not reported.
    write(&tmp.path().join("old-models/b.gguf"), b"b");
    assert!(settle(&mut set, &mut map).is_empty());
    assert_consistent(&set, &map);
}

#[test]
fn nested_roots_are_walked_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let outer = tmp.path().join("m");
    let inner = outer.join("inner");
    write(&inner.join("a.gguf"), b"a");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&outer, &inner]), &mut map).expect("watch set");
    assert_eq!(set.len(), 1);
    assert_eq!(set.stats().paths, 1);
    assert_eq!(set.stats().directories, 2);

    // Recreated through the outer root's events; the inner root is found
    // again by the poll.
    fs::remove_dir_all(&inner).expect("rm inner");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert_eq!(set.stats().missing_roots, 1);
    write(&inner.join("b.gguf"), b"b");
    let kb = key(&inner.join("b.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&kb).is_some());
    set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(set.stats().missing_roots, 0);
    assert_eq!(set.stats().paths, 1);
    assert_consistent(&set, &map);
}

#[test]
fn a_queue_overflow_triggers_a_rescan() {
    let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX);
    if limit > 20_000 {
        crate::test_skipped(
            "inotify-queue",
            &format!("fs.inotify.max_queued_events is {limit}, too many files to create"),
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    // Each rename queues IN_MOVED_FROM and IN_MOVED_TO (never merged: the
    // cookies differ), filling the queue cheaply.
    let (flip, flop) = (root.join("flip.txt"), root.join("flop.txt"));
    write(&flip, b"");
    for _ in 0..limit / 4 + 10 {
        fs::rename(&flip, &flop).expect("rename");
        fs::rename(&flop, &flip).expect("rename");
    }
    // Queued after the overflow: its event is lost, only a rescan sees it.
    write(&root.join("late.gguf"), b"late");
    let late = key(&root.join("late.gguf"));
    let changes = set.process_inotify(&mut map).expect("events");
    assert_eq!(set.stats().queue_overflows, 1);
    assert_eq!(set.stats().rescans, 1);
    assert_eq!(set.path_of(&late), Some(root.join("late.gguf").as_path()));
    assert_eq!(changes.len(), 1);
    assert_consistent(&set, &map);
}

#[test]
fn a_root_reached_through_a_symlink_is_not_walked_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real = tmp.path().join("cache");
    write(&real.join("hub/m/a.gguf"), b"a");
    let alias = tmp.path().join("models");
    symlink(real.join("hub"), &alias).expect("symlink");
    let k = key(&real.join("hub/m/a.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&real, &alias]), &mut map).expect("watch set");
    assert_eq!(set.paths_of(&k), &[real.join("hub/m/a.gguf")]);
    assert_eq!(set.stats().missing_roots, 0);

    // Polls and rescans leave it alone: the two roots do not take turns.
    let (inserts, removes) = (map.inserts, map.removes);
    assert!(set.poll_missing_roots(&mut map).expect("poll").is_empty());
    assert!(set.rescan(&mut map).expect("rescan").is_empty());
    assert!(settle(&mut set, &mut map).is_empty());
    assert_eq!((map.inserts, map.removes), (inserts, removes));
    assert_eq!(set.paths_of(&k), &[real.join("hub/m/a.gguf")]);

    // Written through the alias: seen, under the first root's path.
    write(&alias.join("m/b.gguf"), b"b");
    let kb = key(&real.join("hub/m/b.gguf"));
    pump(&mut set, &mut map, |s, _| s.path_of(&kb).is_some());
    assert_eq!(set.path_of(&kb), Some(real.join("hub/m/b.gguf").as_path()));
    assert_consistent(&set, &map);
}

/// A 64-hex-digit digest, distinct per `n`.
fn digest(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// One repository of a Hugging Face hub cache, laid out the way
/// `huggingface_hub` writes it.
struct HfRepo {
    repo: PathBuf,
}

impl HfRepo {
    /// `<cache>/hub/models--meta-llama--Llama-3-8B`, with its `blobs/` and
    /// `snapshots/` directories created.
    fn new(cache: &Path) -> Self {
        let repo = cache.join("hub/models--meta-llama--Llama-3-8B");
        fs::create_dir_all(repo.join("blobs")).expect("mkdir blobs");
        fs::create_dir_all(repo.join("snapshots")).expect("mkdir snapshots");
        Self { repo }
    }

    fn blob(&self, hash: &str) -> PathBuf {
        self.repo.join("blobs").join(hash)
    }

    fn snapshot(&self, rev: &str, name: &str) -> PathBuf {
        self.repo.join("snapshots").join(rev).join(name)
    }

    /// Downloads a blob: written as `<hash>.incomplete`, renamed into place.
    fn write_blob(&self, hash: &str, data: &[u8]) -> PathBuf {
        let blob = self.blob(hash);
        let partial = self.blob(&format!("{hash}.incomplete"));
        write(&partial, data);
        fs::rename(&partial, &blob).expect("rename blob into place");
        blob
    }

    /// `snapshots/<rev>/<name> -> ../../blobs/<hash>`.
    fn link(&self, rev: &str, name: &str, hash: &str) -> PathBuf {
        let link = self.snapshot(rev, name);
        fs::create_dir_all(link.parent().expect("snapshot dir")).expect("mkdir snapshot");
        symlink(format!("../../blobs/{hash}"), &link).expect("symlink");
        link
    }
}

const REV: &str = "8cde5ca8380496c9a6cc7ef3a8b46a0372a1d920";
const SHARD1: &str = "model-00001-of-00004.safetensors";
const SHARD2: &str = "model-00002-of-00004.safetensors";
const SHARD3: &str = "model-00003-of-00004.safetensors";

#[test]
fn hf_hub_snapshot_links_watch_their_blobs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let blob1 = hf.write_blob(&digest(1), b"shard one");
    let blob2 = hf.write_blob(&digest(2), b"shard two");
    let config = hf.write_blob(&digest(3), b"{}");
    let tokenizer = hf.write_blob(&digest(4), b"weights-sized tokenizer");
    let shard1 = hf.link(REV, SHARD1, &digest(1));
    let shard2 = hf.link(REV, SHARD2, &digest(2));
    hf.link(REV, "config.json", &digest(3));
    // Not weight-named: no reason to watch, even though a weight-named
    // link elsewhere could lead to the same blob.
    hf.link(REV, "tokenizer.json", &digest(4));
    // Dangling: the blob of shard 3 is still downloading.
    let shard3 = hf.link(REV, SHARD3, &digest(5));
    hf.link(REV, "weights.link", &digest(1));

    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");

    let (k1, k2) = (key(&blob1), key(&blob2));
    assert_eq!(set.len(), 2);
    assert_eq!(set.paths_of(&k1), std::slice::from_ref(&shard1));
    assert_eq!(set.paths_of(&k2), std::slice::from_ref(&shard2));
    assert_eq!(map.flags(&k1), Some(watch_flag::WEIGHT));
    assert_eq!(map.flags(&k2), Some(watch_flag::WEIGHT));
    // The size is the blob's, not the link's.
    assert_eq!(set.index.size(&k1), Some(9));
    assert_eq!(set.path_of(&key(&config)), None);
    assert_eq!(set.path_of(&key(&tokenizer)), None);
    assert!(set.index.key_of(&shard3).is_none());
    let stats = set.stats();
    // Three weight-named links, one of them dangling.
    assert_eq!((stats.files, stats.paths, stats.links), (2, 2, 3));
    assert_consistent(&set, &map);

    // Periodic rescans leave the links alone.
    let (inserts, removes) = (map.inserts, map.removes);
    assert!(set.rescan(&mut map).expect("rescan").is_empty());
    assert!(settle(&mut set, &mut map).is_empty());
    assert_eq!((map.inserts, map.removes), (inserts, removes));
    assert_eq!(set.paths_of(&k1), std::slice::from_ref(&shard1));
    assert_eq!(set.stats().links, 3);
}

#[test]
fn hf_hub_links_created_after_start_are_watched_and_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");
    assert!(set.is_empty());

    // The downloader's order: blob first, then the snapshot link. The blob
    // alone (no extension) is nothing to watch.
    let blob1 = hf.write_blob(&digest(1), b"shard one");
    let k1 = key(&blob1);
    assert!(settle(&mut set, &mut map).is_empty());
    // In a new snapshot directory: found by walking it.
    let shard1 = hf.link(REV, SHARD1, &digest(1));
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&k1).is_some());
    assert_eq!(
        changes,
        vec![added(k1, shard1.clone(), 9, watch_flag::WEIGHT)]
    );
    assert_eq!(map.flags(&k1), Some(watch_flag::WEIGHT));

    // In the now-watched snapshot directory: IN_CREATE of the link itself.
    let blob2 = hf.write_blob(&digest(2), b"shard two");
    let k2 = key(&blob2);
    let shard2 = hf.link(REV, SHARD2, &digest(2));
    pump(&mut set, &mut map, |s, _| s.path_of(&k2).is_some());
    assert_eq!(set.path_of(&k2), Some(shard2.as_path()));

    // Renamed in (IN_MOVED_TO of a link).
    let blob3 = hf.write_blob(&digest(3), b"shard three");
    let k3 = key(&blob3);
    let staged = hf.link(REV, "shard3.tmp", &digest(3));
    assert!(settle(&mut set, &mut map).is_empty());
    let shard3 = hf.snapshot(REV, SHARD3);
    fs::rename(&staged, &shard3).expect("rename link into place");
    pump(&mut set, &mut map, |s, _| s.path_of(&k3).is_some());
    assert_eq!(set.path_of(&k3), Some(shard3.as_path()));

    // A link deleted: its key leaves the map, the blob is untouched.
    fs::remove_file(&shard1).expect("unlink");
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&k1).is_none());
    assert_eq!(changes, vec![removed(k1, shard1.clone())]);
    assert_eq!(map.flags(&k1), None);
    assert!(blob1.exists());
    assert_eq!(set.len(), 2);
    assert_consistent(&set, &map);
}

#[test]
fn two_snapshots_linking_one_blob_share_its_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let blob = hf.write_blob(&digest(1), b"shared");
    let old_rev = hf.link(
        "0000000000000000000000000000000000000001",
        SHARD1,
        &digest(1),
    );
    let new_rev = hf.link(REV, SHARD1, &digest(1));
    let k = key(&blob);

    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");
    assert_eq!(set.len(), 1);
    let mut paths = set.paths_of(&k).to_vec();
    paths.sort();
    assert_eq!(paths, vec![old_rev.clone(), new_rev.clone()]);
    assert_eq!(map.entries.len(), 1);

    // Pruning the old revision keeps the blob watched through the new one.
    fs::remove_dir_all(old_rev.parent().expect("snapshot dir")).expect("rm -r");
    let changes = pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 1);
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&new_rev));
    assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));
    assert_eq!(map.removes, 0);
    assert_eq!(changes, vec![removed(k, old_rev)]);

    fs::remove_file(&new_rev).expect("unlink");
    pump(&mut set, &mut map, |_, m| m.entries.is_empty());
    assert!(set.is_empty());
    assert!(map.entries.is_empty());
    assert_consistent(&set, &map);
}

#[test]
fn a_key_stays_while_a_file_or_a_link_still_leads_to_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    // `llama.gguf` and `raw.bin` are hard links of one inode; only the
    // first has a watched extension (the spec's are safetensors and gguf).
    let file = root.join("llama.gguf");
    let raw = root.join("raw.bin");
    write(&file, b"weights");
    fs::hard_link(&file, &raw).expect("hard link");
    let link = root.join("current.gguf");
    symlink("raw.bin", &link).expect("symlink");
    let k = key(&file);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[root]), &mut map).expect("watch set");
    assert_eq!(set.paths_of(&k), &[file.clone(), link.clone()]);

    // The link removed: the file still holds the key.
    fs::remove_file(&link).expect("unlink");
    pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 1);
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&file));
    // Back again, and now the file removed: the link still holds it.
    symlink("raw.bin", &link).expect("symlink");
    pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 2);
    fs::remove_file(&file).expect("rm");
    pump(&mut set, &mut map, |s, _| s.paths_of(&k).len() == 1);
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&link));
    assert_eq!(map.flags(&k), Some(watch_flag::WEIGHT));
    assert_eq!(map.removes, 0);

    // The inode's last name the link leads through goes: the link dangles
    // and the key leaves the map, though the link is still remembered.
    fs::remove_file(&raw).expect("rm");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().links, 1);
    assert_consistent(&set, &map);
}

#[test]
fn a_non_weight_named_link_is_no_reason_to_watch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let blob = hf.write_blob(&digest(1), b"weights");
    let k = key(&blob);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");

    for name in ["weights", "model.safetensors.lnk", "README.md"] {
        hf.link(REV, name, &digest(1));
    }
    assert!(settle(&mut set, &mut map).is_empty());
    assert!(set.is_empty());
    assert_eq!(set.stats().links, 0);

    // Renaming one to a weight name is what makes it count.
    let shard = hf.snapshot(REV, SHARD1);
    fs::rename(hf.snapshot(REV, "weights"), &shard).expect("rename");
    pump(&mut set, &mut map, |s, _| s.path_of(&k).is_some());
    assert_eq!(set.paths_of(&k), std::slice::from_ref(&shard));
    // And back: no longer.
    fs::rename(&shard, hf.snapshot(REV, "weights")).expect("rename");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().links, 0);
    assert_consistent(&set, &map);
}

#[test]
fn a_dangling_link_is_ignored_until_its_blob_appears() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let shard = hf.link(REV, SHARD1, &digest(1));
    // Links to a directory or in a loop lead to no weight file either.
    fs::create_dir_all(hf.blob("dir")).expect("mkdir");
    hf.link(REV, SHARD2, "dir");
    symlink(SHARD3, hf.snapshot(REV, SHARD3)).expect("self-loop");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");
    assert!(set.is_empty());
    assert!(map.entries.is_empty());
    assert_eq!(set.stats().links, 3);

    // The blob is renamed into place: the link's target appearing is what
    // gets it watched.
    let blob = hf.write_blob(&digest(1), b"late blob");
    let k = key(&blob);
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&k).is_some());
    assert_eq!(
        changes,
        vec![added(k, shard.clone(), 9, watch_flag::WEIGHT)]
    );

    // Deleted again (`huggingface-cli delete-cache` removes blobs too):
    // the link dangles and the key goes.
    fs::remove_file(&blob).expect("rm blob");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    assert_consistent(&set, &map);
}

#[test]
fn a_replaced_blob_moves_the_link_to_the_new_inode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("huggingface");
    let hf = HfRepo::new(&cache);
    let blob = hf.write_blob(&digest(1), b"old");
    let shard = hf.link(REV, SHARD1, &digest(1));
    let old = key(&blob);
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&cache]), &mut map).expect("watch set");
    assert_eq!(set.path_of(&old), Some(shard.as_path()));

    // Re-downloaded (`force_download`): a new inode renamed over the blob.
    hf.write_blob(&digest(1), b"new!");
    let new = key(&blob);
    assert_ne!(old, new);
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&new).is_some());
    assert_eq!(set.path_of(&new), Some(shard.as_path()));
    assert!(set.path_of(&old).is_none());
    assert_eq!(map.flags(&old), None);
    assert_eq!(map.flags(&new), Some(watch_flag::WEIGHT));
    assert_eq!(set.index.size(&new), Some(4));
    assert!(changes.contains(&removed(old, shard.clone())));
    assert!(changes.contains(&added(new, shard.clone(), 4, watch_flag::WEIGHT)));

    // The blobs directory moved away and back: links dangle, then resolve.
    let aside = tmp.path().join("blobs-aside");
    fs::rename(hf.repo.join("blobs"), &aside).expect("move blobs out");
    pump(&mut set, &mut map, |s, _| s.is_empty());
    assert!(map.entries.is_empty());
    fs::rename(&aside, hf.repo.join("blobs")).expect("move blobs back");
    pump(&mut set, &mut map, |s, _| s.path_of(&new).is_some());
    assert_eq!(set.path_of(&new), Some(shard.as_path()));
    assert_consistent(&set, &map);
}

#[test]
fn links_to_targets_outside_the_roots_are_watched_and_rescanned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let store = tmp.path().join("store");
    write(&store.join("llama-70b.bin"), b"outside");
    let link = root.join("llama.gguf");
    fs::create_dir_all(&root).expect("mkdir");
    symlink(store.join("llama-70b.bin"), &link).expect("symlink");
    let old = key(&store.join("llama-70b.bin"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert_eq!(set.paths_of(&old), std::slice::from_ref(&link));

    // A rescan with nothing changed touches nothing.
    let (inserts, removes) = (map.inserts, map.removes);
    assert!(set.rescan(&mut map).expect("rescan").is_empty());
    assert_eq!((map.inserts, map.removes), (inserts, removes));

    // Outside the roots no event tells of a replaced target; the rescan does.
    write(&store.join("llama-70b.bin.new"), b"replaced");
    fs::rename(store.join("llama-70b.bin.new"), store.join("llama-70b.bin")).expect("rename");
    let new = key(&store.join("llama-70b.bin"));
    assert!(settle(&mut set, &mut map).is_empty());
    let changes = set.rescan(&mut map).expect("rescan");
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(set.paths_of(&new), std::slice::from_ref(&link));
    assert_eq!(map.flags(&old), None);
    assert_consistent(&set, &map);
}

#[test]
fn ollama_blobs_are_weight_files_by_name_and_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let models = tmp.path().join("ollama/models");
    let gguf = models.join(format!("blobs/sha256-{}", digest(1)));
    let template = models.join(format!("blobs/sha256-{}", digest(2)));
    write(&gguf, b"GGUF weights");
    write(&template, b"{{ .Prompt }}");
    write(
        &models.join(format!("blobs/sha256-{}-partial", digest(3))),
        b"downloading",
    );
    write(
        &models.join("manifests/registry.ollama.ai/library/llama3/latest"),
        b"{}",
    );
    // The digest name alone is not enough: it must sit in `blobs/`.
    write(&models.join(format!("sha256-{}", digest(4))), b"stray");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&models]), &mut map).expect("watch set");

    let (kg, kt) = (key(&gguf), key(&template));
    assert_eq!(set.len(), 2);
    assert_eq!(set.path_of(&kg), Some(gguf.as_path()));
    assert_eq!(set.path_of(&kt), Some(template.as_path()));
    assert_eq!(map.flags(&kg), Some(watch_flag::WEIGHT));

    // `ollama pull`: written as `-partial`, renamed to the digest name.
    let partial = models.join(format!("blobs/sha256-{}-partial", digest(5)));
    write(&partial, b"more GGUF");
    let pulled = models.join(format!("blobs/sha256-{}", digest(5)));
    fs::rename(&partial, &pulled).expect("rename into place");
    let kp = key(&pulled);
    let changes = pump(&mut set, &mut map, |s, _| s.path_of(&kp).is_some());
    assert_eq!(
        changes,
        vec![added(kp, pulled.clone(), 9, watch_flag::WEIGHT)]
    );

    // `ollama rm`: the blob is deleted.
    fs::remove_file(&gguf).expect("rm");
    pump(&mut set, &mut map, |s, _| s.path_of(&kg).is_none());
    assert_eq!(map.flags(&kg), None);
    assert_eq!(set.len(), 2);
    // A rescan agrees.
    assert!(set.rescan(&mut map).expect("rescan").is_empty());
    assert_consistent(&set, &map);
}

/// Retention on: the spec as the agent builds it.
fn retaining(roots: &[&Path]) -> WatchSpec {
    WatchSpec {
        max_retained: DEFAULT_MAX_RETAINED,
        ..spec(roots)
    }
}

#[test]
fn files_leaving_the_roots_stay_watched_while_their_inode_lives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&outside).expect("mkdir");
    write(&root.join("out.gguf"), b"1");
    write(&root.join("ext.gguf"), b"22");
    write(&root.join("linked.gguf"), b"333");
    write(&root.join("del.gguf"), b"4444");
    let k = |name: &str| key(&root.join(name));
    let (k_out, k_ext, k_linked, k_del) = (
        k("out.gguf"),
        k("ext.gguf"),
        k("linked.gguf"),
        k("del.gguf"),
    );
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(retaining(&[&root]), &mut map).expect("watch set");
    assert_eq!(set.len(), 4);

    fs::rename(root.join("out.gguf"), outside.join("out.gguf")).expect("move out");
    fs::rename(root.join("ext.gguf"), root.join("ext.txt")).expect("rename");
    fs::hard_link(root.join("linked.gguf"), outside.join("linked")).expect("link");
    fs::remove_file(root.join("linked.gguf")).expect("unlink");
    fs::remove_file(root.join("del.gguf")).expect("delete");
    pump(&mut set, &mut map, |s, _| {
        s.stats().retained == 3 && s.stats().files == 0
    });
    let stats = set.stats();
    assert_eq!(
        (stats.files, stats.retained, stats.retained_gone),
        (0, 3, 1)
    );
    let mut kept: Vec<FileKey> = map.entries.keys().copied().collect();
    kept.sort();
    let mut expected = vec![k_out, k_ext, k_linked];
    expected.sort();
    assert_eq!(
        kept, expected,
        "the deleted file left, the three others stay"
    );
    assert!(set.path_of(&k_del).is_none());
    assert_consistent(&set, &map);

    // Their current paths, once checked.
    set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(
        set.path_of(&k_out),
        Some(outside.join("out.gguf").as_path())
    );
    assert_eq!(set.path_of(&k_ext), Some(root.join("ext.txt").as_path()));
    assert_eq!(
        set.path_of(&k_linked),
        Some(outside.join("linked").as_path())
    );

    // Deleted: gone at the next check.
    fs::remove_file(outside.join("out.gguf")).expect("delete");
    let changes = set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(changes, vec![removed(k_out, outside.join("out.gguf"))]);
    assert_eq!(map.flags(&k_out), None);
    assert_eq!(set.stats().retained, 2);
    assert_eq!(set.stats().retained_gone, 2);

    // Back under the roots by its old name: the index names it again.
    fs::rename(root.join("ext.txt"), root.join("ext.gguf")).expect("rename back");
    pump(&mut set, &mut map, |s, _| s.stats().files == 1);
    set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(set.stats().retained, 1);
    assert_eq!(set.path_of(&k_ext), Some(root.join("ext.gguf").as_path()));
    assert_eq!(map.flags(&k_ext), Some(watch_flag::WEIGHT));
    assert_consistent(&set, &map);
}

#[test]
fn the_retained_bound_is_kept_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&outside).expect("mkdir");
    write(&root.join("a.gguf"), b"1");
    write(&root.join("b.gguf"), b"2");
    let mut map = FakeMap::default();
    let spec = WatchSpec {
        max_retained: 1,
        ..spec(&[&root])
    };
    let mut set = WatchSet::new(spec, &mut map).expect("watch set");
    fs::rename(root.join("a.gguf"), outside.join("a.gguf")).expect("move out");
    fs::rename(root.join("b.gguf"), outside.join("b.gguf")).expect("move out");
    pump(&mut set, &mut map, |s, _| s.stats().files == 0);
    let stats = set.stats();
    assert_eq!((stats.retained, stats.retained_dropped), (1, 1));
    assert_eq!(map.entries.len(), 1);
    assert_consistent(&set, &map);
}

#[test]
fn a_derived_file_is_watched_with_its_source_while_it_lives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    write(&root.join("m.gguf"), b"weights");
    let copy = tmp.path().join("copy.bin");
    write(&copy, b"weights");
    let source = key(&root.join("m.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(retaining(&[&root]), &mut map).expect("watch set");
    let derived = set.watch_derived(&copy, source, &mut map).expect("derive");
    assert_eq!(derived, key(&copy));
    assert_eq!(set.derived_from(&derived), Some(source));
    assert_eq!(set.derived_from(&source), None);
    assert_eq!(set.path_of(&derived), Some(copy.as_path()));
    assert_eq!(map.flags(&derived), Some(watch_flag::WEIGHT));
    assert_eq!(set.stats().derived, 1);
    assert_consistent(&set, &map);
    assert!(matches!(
        set.watch_derived(tmp.path(), source, &mut map),
        Err(DeriveError::NotAFile { .. })
    ));

    fs::remove_file(&copy).expect("delete");
    set.poll_missing_roots(&mut map).expect("poll");
    assert_eq!(map.flags(&derived), None);
    assert_eq!(set.derived_from(&derived), None);
    assert_eq!(set.stats().derived, 0);
    assert_consistent(&set, &map);
}

#[test]
fn directories_under_the_roots_are_in_the_kernel_dir_map() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    write(&root.join("llama/a.gguf"), b"a");
    fs::create_dir_all(root.join("empty/deeper")).expect("mkdir");
    fs::create_dir_all(tmp.path().join("outside")).expect("mkdir");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    let dirs =
        |names: &[&str]| -> HashSet<FileKey> { names.iter().map(|n| key(&root.join(n))).collect() };
    assert_eq!(map.dirs, dirs(&["", "llama", "empty", "empty/deeper"]));
    assert_eq!(set.stats().kernel_directories, 4);
    let llama = key(&root.join("llama"));
    assert_eq!(
        set.tree_dir_path(&llama),
        Some(root.join("llama").as_path())
    );
    assert!(set.under_roots(&root.join("new/x.gguf")));
    assert!(!set.under_roots(&tmp.path().join("outside/x.gguf")));

    // A new directory joins at once; a removed one leaves; a moved one
    // keeps its key and gets its new path.
    fs::create_dir_all(root.join("new")).expect("mkdir");
    pump(&mut set, &mut map, |_, m| m.dirs.len() == 5);
    assert!(map.dirs.contains(&key(&root.join("new"))));
    fs::remove_dir_all(root.join("empty")).expect("rmdir");
    pump(&mut set, &mut map, |_, m| m.dirs.len() == 3);
    assert_eq!(map.dirs, dirs(&["", "llama", "new"]));
    fs::rename(root.join("llama"), root.join("new/llama2")).expect("move");
    pump(&mut set, &mut map, |s, _| {
        s.tree_dir_path(&llama) == Some(root.join("new/llama2").as_path())
    });
    assert!(map.dirs.contains(&llama));
    assert_eq!(map.dirs.len(), 3);
}

#[test]
fn a_full_dir_map_is_counted_and_retried_by_the_rescan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    for d in ["a", "b", "c"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let mut map = FakeMap {
        dirs_max: Some(2),
        ..FakeMap::default()
    };
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert_eq!(map.dirs.len(), 2);
    assert_eq!(set.stats().dir_map_full_failures, 2);
    map.dirs_max = None;
    set.rescan(&mut map).expect("rescan");
    assert_eq!(map.dirs.len(), 4);
    assert_eq!(set.stats().kernel_directories, 4);
}

#[test]
fn the_path_prefilter_knows_extensions_directories_roots_and_learned_names() {
    use sensor_common::path_filter::{extension_hash, name_hash};
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    write(&root.join("llama/a.gguf"), b"a");
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert!(map.name_filter, "on once the names are in");
    assert!(set.path_filter_on());
    for ext in [&b"gguf"[..], b"safetensors"] {
        assert!(map.names.contains(&extension_hash(ext)));
    }
    // The directories' names, the root's and its ancestors'.
    for name in ["llama", "models"] {
        assert!(map.names.contains(&name_hash(name.as_bytes())), "{name}");
    }
    let tmp_name = tmp.path().file_name().expect("temp dir name");
    assert!(map.names.contains(&name_hash(tmp_name.as_encoded_bytes())));
    assert!(!map.names.contains(&name_hash(b"a.gguf")), "by extension");

    fs::create_dir_all(root.join("mistral")).expect("mkdir");
    pump(&mut set, &mut map, |_, m| {
        m.names.contains(&name_hash(b"mistral"))
    });
    set.learn_name(OsStr::new("renamed-copy"), &mut map);
    assert!(map.names.contains(&name_hash(b"renamed-copy")));

    // A rescan drops what is no longer wanted (the names the kernel
    // learned by itself too), keeps what the agent learned.
    fs::remove_dir(root.join("mistral")).expect("rmdir");
    settle(&mut set, &mut map);
    map.names.insert(name_hash(b"kernel-learned"));
    set.rescan(&mut map).expect("rescan");
    assert!(!map.names.contains(&name_hash(b"mistral")));
    assert!(!map.names.contains(&name_hash(b"kernel-learned")));
    assert!(map.names.contains(&name_hash(b"renamed-copy")));
    assert_eq!(set.stats().path_names, map.names.len());
}

#[test]
fn a_full_name_map_turns_the_prefilter_off_until_a_rescan_fits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    write(&root.join("a.gguf"), b"a");
    let mut map = FakeMap {
        names_max: Some(3),
        ..FakeMap::default()
    };
    let mut set = WatchSet::new(spec(&[&root]), &mut map).expect("watch set");
    assert!(!map.name_filter, "every path operation is sent");
    assert!(!set.path_filter_on());
    assert!(set.stats().path_names_overflows > 0);
    map.names_max = None;
    set.rescan(&mut map).expect("rescan");
    assert!(map.name_filter);
    assert!(set.path_filter_on());
}

#[test]
fn followed_files_outside_the_roots_are_found_by_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("models");
    let outside = tmp.path().join("elsewhere");
    fs::create_dir_all(&outside).expect("mkdir");
    write(&root.join("m.gguf"), b"1");
    let k = key(&root.join("m.gguf"));
    let mut map = FakeMap::default();
    let mut set = WatchSet::new(retaining(&[&root]), &mut map).expect("watch set");
    fs::rename(root.join("m.gguf"), outside.join("kept")).expect("move out");
    pump(&mut set, &mut map, |s, _| s.stats().retained == 1);
    set.poll_missing_roots(&mut map).expect("poll");
    assert!(set.is_outside(&k));
    assert_eq!(set.outside_at(&outside.join("kept")), Some(k));
    assert_eq!(set.outside_at(&outside.join("other")), None);
    assert!(
        map.names
            .contains(&sensor_common::path_filter::name_hash(b"kept")),
        "its name passes the prefilter"
    );
    assert!(set.is_weight_path(&root.join("x.GGUF")));
    assert!(!set.is_weight_path(&root.join("x.txt")));
}
