//! `integrity_mismatch`: the baseline manifest (SHA-256 of every watched
//! file, written by `weightwarden baseline`), hashing, and verification.
//! The agent checks every file in the manifest when it starts, on a thread
//! of its own, and again each file a tamper record names.

use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `schema` of a manifest.
pub const MANIFEST_SCHEMA: &str = "weightwarden-baseline/1";

/// Bytes read per call while hashing.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    /// RFC 3339, when it was written.
    pub created: String,
    pub host: String,
    pub files: Vec<Entry>,
}

/// One file as it was when the baseline was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: PathBuf,
    /// The kernel's `s_dev` and the inode number (`file.dev` is written as
    /// `MAJOR:MINOR` in records; here as the number).
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the baseline manifest {} (write one with `weightwarden baseline`)", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the baseline manifest {} is not a {MANIFEST_SCHEMA} manifest (write it again with `weightwarden baseline`)", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the baseline manifest {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = fs::read(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|source| ManifestError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if manifest.schema != MANIFEST_SCHEMA {
            return Err(ManifestError::Parse {
                path: path.to_owned(),
                source: serde::de::Error::custom(format!(
                    "schema {:?}, expected {MANIFEST_SCHEMA:?}",
                    manifest.schema
                )),
            });
        }
        if let Some(bad) = manifest.files.iter().find(|e| !is_sha256(&e.sha256)) {
            return Err(ManifestError::Parse {
                path: path.to_owned(),
                source: serde::de::Error::custom(format!(
                    "{}: sha256 {:?} is not 64 hex digits",
                    bad.path.display(),
                    bad.sha256
                )),
            });
        }
        Ok(manifest)
    }

    /// Writes the manifest whole or not at all (a temporary file renamed
    /// over the target), readable by root only.
    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        let err = |source| ManifestError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new("."))).map_err(err)?;
        serde_json::to_writer_pretty(&mut tmp, self).map_err(|e| err(e.into()))?;
        io::Write::write_all(&mut tmp, b"\n").map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 of a file, streamed; `progress` hears of each chunk.
pub fn hash_file(path: &Path, progress: &dyn Fn(u64)) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        progress(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Runs `work` on every item with `jobs` threads; results in item order.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, work(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker that panicked has lost its results; the others'
            // stand (the caller counts what is missing).
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// What a check of one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Intact,
    /// Its content is not the baseline's.
    Changed {
        sha256: String,
    },
    /// Nothing at its path any more.
    Missing,
    /// It could not be read (not a mismatch: the agent warns).
    Unreadable(String),
}

/// Hashes the file at the entry's path and compares.
pub fn check(entry: &Entry) -> Check {
    match hash_file(&entry.path, &|_| {}) {
        Ok(sha256) if sha256.eq_ignore_ascii_case(&entry.sha256) => Check::Intact,
        Ok(sha256) => Check::Changed { sha256 },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Check::Missing,
        Err(e) => Check::Unreadable(e.to_string()),
    }
}

/// What the checker thread tells the agent.
#[derive(Debug)]
pub enum Report {
    /// One file's check (the agent writes a detection for a mismatch).
    Checked(Entry, Check),
    /// The start-up pass is over.
    PassDone { files: usize, secs: f64 },
}

/// Checks every entry, then each path asked for on `recheck` (a tamper
/// record named it), until `recheck` closes or `report` refuses. Runs on
/// a thread of its own at the lowest CPU priority: hashing a host's models
/// must not slow their serving.
pub fn checker(
    manifest: Manifest,
    recheck: std::sync::mpsc::Receiver<PathBuf>,
    report: impl Fn(Report) -> bool,
) {
    // SAFETY: setpriority with who = 0 changes only the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    let started = std::time::Instant::now();
    for entry in &manifest.files {
        if !report(Report::Checked(entry.clone(), check(entry))) {
            return;
        }
    }
    let done = Report::PassDone {
        files: manifest.files.len(),
        secs: started.elapsed().as_secs_f64(),
    };
    if !report(done) {
        return;
    }
    while let Ok(path) = recheck.recv() {
        if let Some(entry) = manifest.files.iter().find(|e| e.path == path)
            && !report(Report::Checked(entry.clone(), check(entry)))
        {
            return;
        }
    }
}

/// Descriptors opened for writing on watched files, until closed: then
/// the file is checked again (a write through a descriptor is a tamper
/// record of its own once those exist; the open is what is seen today).
#[derive(Default)]
pub struct Writes {
    open: std::collections::HashMap<(u32, i32), PathBuf>,
    done: Vec<PathBuf>,
}

impl Writes {
    pub fn observe(&mut self, event: &crate::event::Event) {
        use crate::event::{AccessDetail, Action};
        const O_ACCMODE: u32 = 0o3;
        let Some(pid) = event.process.as_ref().map(|p| p.pid) else {
            return;
        };
        let path = || {
            event
                .file
                .as_ref()
                .and_then(|f| f.path.as_ref())
                .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p.as_bytes())))
        };
        match (event.action, event.access.as_ref().map(|a| &a.detail)) {
            (Action::Open, Some(AccessDetail::Open { fd, flags })) if flags & O_ACCMODE != 0 => {
                if let Some(path) = path() {
                    self.open.insert((pid, *fd), path);
                }
            }
            (Action::Close, Some(AccessDetail::Close { fd })) => {
                if let Some(path) = self.open.remove(&(pid, *fd)) {
                    self.done.push(path);
                }
            }
            // Truncated, renamed (away or over), unlinked: check every path
            // the change touched now.
            (action, Some(AccessDetail::Change(change)))
                if action.is_change() && action != Action::WriteOpen =>
            {
                let text_path = |t: &crate::event::Text| {
                    PathBuf::from(std::ffi::OsStr::from_bytes(t.as_bytes()))
                };
                self.done.extend(path());
                self.done.extend(change.old_path.as_ref().map(text_path));
                self.done.extend(change.new_path.as_ref().map(text_path));
            }
            (Action::Exit, _) => {
                let closed: Vec<_> = self
                    .open
                    .keys()
                    .filter(|(p, _)| *p == pid)
                    .copied()
                    .collect();
                for key in closed {
                    if let Some(path) = self.open.remove(&key) {
                        self.done.push(path);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn take_done(&mut self) -> Vec<PathBuf> {
        let mut done = std::mem::take(&mut self.done);
        done.sort();
        done.dedup();
        done
    }
}

/// The `integrity_mismatch` finding for a check, if it is one.
pub fn finding(entry: &Entry, check: &Check) -> Option<super::Finding> {
    let (summary, sha256) = match check {
        Check::Changed { sha256 } => (
            format!(
                "{} no longer has its baseline SHA-256 ({} now)",
                entry.path.display(),
                short(sha256)
            ),
            Some(sha256.clone()),
        ),
        Check::Missing => (
            format!("{} is gone (it is in the baseline)", entry.path.display()),
            None,
        ),
        Check::Intact | Check::Unreadable(_) => return None,
    };
    let mut d = super::Detection::new(super::DetectionId::IntegrityMismatch, summary);
    d.expected_sha256 = Some(entry.sha256.clone());
    d.sha256 = sha256;
    d.matched = Some(
        match check {
            Check::Missing => "missing",
            _ => "sha256",
        }
        .to_owned(),
    );
    Some(super::Finding {
        severity: crate::event::Severity::Critical,
        about: super::About::File {
            dev: entry.dev,
            ino: entry.ino,
        },
        detection: d,
        file: None,
    })
}

fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_sha256sum_and_checks_tell_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        fs::write(&file, b"abc").unwrap();
        // `printf abc | sha256sum`
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash_file(&file, &|_| {}).unwrap(), abc);
        let entry = Entry {
            path: file.clone(),
            dev: 1,
            ino: 2,
            size: 3,
            sha256: abc.into(),
        };
        assert_eq!(check(&entry), Check::Intact);
        fs::write(&file, b"abd").unwrap();
        assert!(matches!(check(&entry), Check::Changed { .. }));
        fs::remove_file(&file).unwrap();
        assert_eq!(check(&entry), Check::Missing);
    }

    #[test]
    fn manifests_round_trip_and_bad_ones_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/baseline.json");
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA.into(),
            created: "2026-11-28T00:00:00Z".into(),
            host: "h".into(),
            files: vec![Entry {
                path: "/models/a.gguf".into(),
                dev: 5,
                ino: 6,
                size: 7,
                sha256: "0".repeat(64),
            }],
        };
        manifest.write(&path).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), manifest);
        fs::write(&path, b"{\"schema\":\"weightwarden-baseline/1\",").unwrap();
        let err = crate::Chain(&Manifest::load(&path).unwrap_err()).to_string();
        assert!(err.contains("line 1"), "{err}");
        let mut bad = manifest.clone();
        bad.files[0].sha256 = "xyz".into();
        bad.write(&path).unwrap();
        let err = crate::Chain(&Manifest::load(&path).unwrap_err()).to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
        assert!(matches!(
            Manifest::load(&dir.path().join("none")),
            Err(ManifestError::Read { .. })
        ));
    }

    #[test]
    fn parallel_keeps_the_order() {
        let items: Vec<u64> = (0..100).collect();
        assert_eq!(
            parallel(&items, 4, |i| i * 2),
            (0..100).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(parallel(&Vec::<u64>::new(), 4, |i| *i).is_empty());
    }
}
