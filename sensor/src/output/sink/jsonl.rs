//! `jsonl:PATH`: records appended to a file, one per line; the directory
//! is created when missing.
//!
//! Checked at start-up: the path opens for appending, a FIFO has a reader
//! (opening one without would hang), a regular file's file system has room.
//! While running: a file that was deleted or moved away (a log rotation
//! without a signal) is opened again at its path before the next write,
//! so no record goes into a file nobody can see; a write that fails part
//! way through a regular file is cut back to the last whole record, so
//! the file holds only whole lines. With a [`Rotation`], the file is moved
//! aside (`PATH.1`, ... `PATH.KEEP`, the oldest dropped) before a batch
//! that would take it past its size, or once the agent has written to it
//! for its age: always between two batches, so no record is split.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::{Batch, Sink, SinkError, WriteError, Written, write_fully};
use crate::config::Rotation;

/// Appends records to a file, one JSON object per line.
pub struct JsonlSink {
    name: String,
    path: PathBuf,
    file: File,
    /// A regular file (not a FIFO or a device): can be measured and cut.
    regular: bool,
    rotation: Option<Rotation>,
    /// When this file was opened: its age, for `rotate_age`.
    opened: std::time::Instant,
}

impl JsonlSink {
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = open_append(path)?;
        let meta = file.metadata().map_err(|source| SinkError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let regular = meta.file_type().is_file();
        if regular && no_room(&file) {
            return Err(SinkError::Full {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            name: format!("jsonl:{}", path.display()),
            path: path.to_path_buf(),
            file,
            regular,
            rotation: None,
            opened: std::time::Instant::now(),
        })
    }

    /// Rotates as `rotation` says (a FIFO or a device never rotates).
    pub fn rotating(mut self, rotation: Option<Rotation>) -> Self {
        self.rotation = rotation;
        self
    }

    /// Whether the file must be moved aside before `next` more bytes go
    /// into it, `size` long now.
    fn due(&self, size: u64, next: usize) -> bool {
        let Some(r) = self.rotation.filter(|_| self.regular && size > 0) else {
            return false;
        };
        r.max_bytes.is_some_and(|max| size + next as u64 > max)
            || r.max_age.is_some_and(|age| self.opened.elapsed() >= age)
    }

    /// `PATH.KEEP-1` → `PATH.KEEP`, ..., `PATH` → `PATH.1`, then a new
    /// `PATH`. On failure the agent writes on where it was.
    fn rotate(&mut self, keep: u32) {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(output = %self.name, error = %err, "cannot rotate an older file")
                }
            }
        }
        let moved = std::fs::rename(&self.path, numbered(1))
            .and_then(|()| open_append(&self.path).map_err(io::Error::other));
        match moved {
            Ok(file) => {
                self.file = file;
                self.opened = std::time::Instant::now();
            }
            Err(err) => tracing::warn!(
                output = %self.name,
                error = %crate::Chain(&err),
                "cannot rotate the output file: writing on to it"
            ),
        }
    }

    /// Opens the path again when it no longer names the open file.
    fn follow_path(&mut self) {
        let Ok(open) = self.file.metadata() else {
            return;
        };
        let same = std::fs::metadata(&self.path)
            .is_ok_and(|now| (now.dev(), now.ino()) == (open.dev(), open.ino()));
        if same {
            return;
        }
        let why = if open.nlink() == 0 {
            "was deleted"
        } else {
            "was moved away"
        };
        match open_append(&self.path) {
            Ok(file) => {
                tracing::warn!(
                    output = %self.name,
                    "the output file {why}: writing to a new file at its path"
                );
                self.regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
                self.file = file;
            }
            Err(err) => tracing::warn!(
                output = %self.name,
                error = %crate::Chain(&err),
                "the output file {why} and cannot be created again: its records are lost"
            ),
        }
    }
}

/// Opens `path` for appending. A FIFO is opened without blocking, which
/// fails at once when it has no reader; then blocking again, so that a
/// slow reader slows the writes rather than losing records.
fn open_append(path: &Path) -> Result<File, SinkError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENXIO) => SinkError::FifoWithoutReader {
                path: path.to_path_buf(),
            },
            _ => SinkError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
        .map(nix::fcntl::OFlag::from_bits_truncate)
        .and_then(|f| {
            nix::fcntl::fcntl(
                &file,
                nix::fcntl::FcntlArg::F_SETFL(f - nix::fcntl::OFlag::O_NONBLOCK),
            )
        });
    flags.map_err(|errno| SinkError::Open {
        path: path.to_path_buf(),
        source: errno.into(),
    })?;
    Ok(file)
}

/// Whether the file system holding `file` has no block left for it. The
/// agent runs as root, which may write into the blocks a file system
/// reserves for root: only when those are gone too is it full.
fn no_room(file: &File) -> bool {
    nix::sys::statvfs::fstatvfs(file).is_ok_and(|s| s.blocks_free() == 0)
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, batch: &Batch) -> Result<Written, WriteError> {
        let records = &batch.bytes[..];
        self.follow_path();
        let mut before = self
            .regular
            .then(|| self.file.metadata().map(|m| m.len()).ok())
            .flatten();
        if let (Some(size), Some(r)) = (before, self.rotation)
            && self.due(size, records.len())
        {
            self.rotate(r.keep);
            before = self.file.metadata().map(|m| m.len()).ok();
        }
        let Err(err) = write_fully(&self.file, records) else {
            return Ok(Written::default());
        };
        let whole = batch.whole_within(err.written);
        if let Some(before) = before {
            // Keep whole lines: cut what the failed write left of its
            // last record (the output counts that record lost).
            let whole_bytes = if whole == 0 { 0 } else { batch.ends[whole - 1] };
            if whole_bytes < err.written {
                let _ = self.file.set_len(before + whole_bytes as u64);
            }
        }
        Err(WriteError::lost(whole, err.source))
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.path).map_err(io::Error::other)?;
        self.regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
        self.file = file;
        Ok(())
    }
}
