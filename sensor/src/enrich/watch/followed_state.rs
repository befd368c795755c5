//! The inodes followed outside the roots, kept across agent restarts.
//!
//! A restarted agent would otherwise forget every copy of weights it was
//! following (lineage) and every watched file that had left the roots:
//! their reads would go unrecorded, and a second hop would no longer be
//! attributed to the original model. The set is written to
//! `<agent.state_dir>/followed.json` when it changed (checked every
//! second) and when the agent stops, atomically (a temporary file renamed
//! over it).
//!
//! On start each entry is found again by its file handle, which names the
//! inode *and its generation*: a file deleted while no agent ran, whose
//! inode number a new file took, is not mistaken for it. The handle is
//! tried through the saved path first (one `name_to_handle_at`), then
//! through every mount of the file's device (mount ids change across
//! reboots; handles of ext4, xfs and btrfs do not).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sensor_common::FileKey;
use serde::{Deserialize, Serialize};

use super::outside::{Handle, Kept};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "followed.json";

/// Bumped when the layout changes; an older agent refuses a newer file.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    files: Vec<SavedFile>,
}

/// One followed inode as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedFile {
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Where it was last seen (a hint: the handle decides).
    pub(super) path: PathBuf,
    pub(super) retained: bool,
    /// `[dev, ino]` of the watched file it was made from.
    pub(super) derived_from: Option<[u64; 2]>,
    pub(super) handle_type: i32,
    /// The handle's bytes, in hex.
    pub(super) handle: String,
}

impl SavedFile {
    pub(super) fn of(key: FileKey, kept: &Kept) -> Option<SavedFile> {
        let handle = kept.handle.as_ref()?;
        Some(SavedFile {
            dev: key.dev,
            ino: key.ino,
            path: kept.path.clone(),
            retained: kept.retained,
            derived_from: kept.derived_from.map(|from| [from.dev, from.ino]),
            handle_type: handle.handle_type(),
            handle: hex::encode(handle.bytes()),
        })
    }

    pub(super) fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            ino: self.ino,
        }
    }

    /// The inode again, if it still lives: its handle on a mount of its
    /// device, and where it is now (the saved path when the kernel cannot
    /// name it, e.g. deleted but still held open).
    pub(super) fn find(&self) -> Option<(Handle, PathBuf)> {
        let bytes = hex::decode(&self.handle).ok()?;
        let key = self.key();
        if let Ok(current) = Handle::of(&self.path)
            && current.handle_type() == self.handle_type
            && current.bytes() == bytes.as_slice()
        {
            return Some((current, self.path.clone()));
        }
        let mounts = super::devices::read_mountinfo(Path::new("/proc/self/mountinfo")).ok()?;
        let mut ids: Vec<u64> = mounts
            .iter()
            .filter(|(_, mount)| mount.kernel_dev == key.dev)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids.into_iter().find_map(|id| {
            let handle = Handle::from_parts(i32::try_from(id).ok()?, self.handle_type, &bytes);
            let path = handle.locate(key).ok()?.path;
            Some((handle, path.unwrap_or_else(|| self.path.clone())))
        })
    }
}

/// Why the saved set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a followed-files state file", .path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{} was written by a newer weightwarden (state version {found}, this one reads {VERSION})",
        .path.display()
    )]
    Newer { path: PathBuf, found: u32 },
}

/// The saved set, or an empty one when there is no file yet.
pub(super) fn load(path: &Path) -> Result<Vec<SavedFile>, StateError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let state: StateFile = serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if state.version > VERSION {
        return Err(StateError::Newer {
            path: path.to_path_buf(),
            found: state.version,
        });
    }
    Ok(state.files)
}

/// Writes `files` to `path` atomically, the directory created (0700) if
/// missing, the file readable by root only (it names where copies are).
pub(super) fn save(path: &Path, files: Vec<SavedFile>) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let text = serde_json::to_vec(&StateFile {
        version: VERSION,
        files,
    })
    .map_err(io::Error::other)?;
    let temp = path.with_extension("json.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    out.write_all(&text)?;
    out.sync_all()?;
    std::fs::rename(&temp, path)
}

/// Moves a corrupt state file aside (kept for inspection, not lost) so
/// that the next save does not overwrite it; returns where it went.
pub(super) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let aside = path.with_extension("json.corrupt");
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(path: &Path) -> SavedFile {
        let key = super::super::identity(path).expect("stat");
        let kept = Kept {
            path: path.to_path_buf(),
            policy: false,
            handle: Some(Handle::of(path).expect("handle")),
            retained: false,
            derived_from: Some(FileKey { dev: 1, ino: 2 }),
            state: None,
            pipe_holders: Vec::new(),
        };
        SavedFile::of(key, &kept).expect("saved")
    }

    #[test]
    fn a_saved_set_reads_back_and_finds_its_inodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("copy.bin");
        std::fs::write(&file, b"weights").expect("write");
        let state = dir.path().join("state").join(FILE_NAME);
        assert_eq!(load(&state).expect("no file yet"), Vec::new());

        let entry = saved(&file);
        save(&state, vec![entry.clone()]).expect("save");
        let loaded = load(&state).expect("load");
        assert_eq!(loaded, vec![entry.clone()]);
        let (_, path) = loaded[0].find().expect("alive");
        assert_eq!(path, file);

        // Moved: found through its mount, at its new path.
        let moved = dir.path().join("moved.bin");
        std::fs::rename(&file, &moved).expect("rename");
        let (_, path) = loaded[0].find().expect("alive after a move");
        assert_eq!(path, moved);

        // Deleted, and a new file at the old path: not the same inode.
        std::fs::remove_file(&moved).expect("remove");
        std::fs::write(&file, b"other").expect("write");
        assert!(loaded[0].find().is_none());
    }

    #[test]
    fn bad_state_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join(FILE_NAME);
        std::fs::write(&state, b"{not json").expect("write");
        let err = load(&state).expect_err("corrupt");
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        let aside = set_aside(&state).expect("aside");
        assert!(aside.exists() && !state.exists());

        std::fs::write(&state, br#"{"version": 99, "files": []}"#).expect("write");
        let err = load(&state).expect_err("newer");
        assert!(err.to_string().contains("newer weightwarden"), "{err}");
    }
}
