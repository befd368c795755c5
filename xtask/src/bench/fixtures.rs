//! The files the benchmark works on, and where they live: a folder on a
//! real disk (never tmpfs, whose page cache behaves differently), made
//! once and reused by later runs, with a check for free space first.
//!
//! Layout under the bench folder:
//! - `models/` (watched): the weight file, a small file for 4 KiB reads,
//!   the Python loader's model;
//! - `unwatched/`, `storm/` and `churn/` (not watched): the unrelated-I/O
//!   files (`churn/` is empty between runs: the file-churn row makes and
//!   removes its own);
//! - `agent/` (watched by the agent-metric runs) and `many/` (100k files);
//! - `enforce/` (watched, and the one weight set of the enforcement rows'
//!   policy): a small file like the one in `models/`;
//! - `run/`: this run's sensor outputs and logs, emptied at the start.

use std::{
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use nix::sys::{statfs, statvfs};
use serde::Serialize;

use crate::bench::worker::storm_file_name;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Free space (plus what existing fixtures already use) a run needs: the
/// fixtures (about 3.2 GiB) and the rate test's JSON output (up to about
/// 2 GiB per step, removed after each).
const REQUIRED_BYTES: u64 = 6 * GIB;

/// How big each workload is.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    pub weight_bytes: u64,
    pub small_file_bytes: u64,
    pub pread_calls: u64,
    pub storm_files: u32,
    pub storm_calls: u64,
    /// Create+rename+unlink rounds of the file-churn row per timed run.
    pub churn_calls: u64,
    /// Processes the churn row spawns per timed run.
    pub spawns: u64,
    /// open+close pairs of the enforce-open row per timed run.
    pub enforce_opens: u64,
    pub model_bytes: u64,
    /// Tensors the Python loader's model is split into.
    pub model_tensors: u64,
    pub many_files: u32,
    /// Synthetic records of the store-synthetic row.
    pub store_records: u64,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                weight_bytes: 256 * MIB,
                small_file_bytes: 64 * MIB,
                pread_calls: 100_000,
                storm_files: 1000,
                storm_calls: 20_000,
                churn_calls: 5_000,
                spawns: 200,
                enforce_opens: 2_000,
                model_bytes: 128 * MIB,
                model_tensors: 16,
                many_files: 100_000,
                store_records: 200_000,
            }
        } else {
            Self {
                weight_bytes: 2 * GIB,
                small_file_bytes: 64 * MIB,
                pread_calls: 1_000_000,
                storm_files: 1000,
                storm_calls: 200_000,
                churn_calls: 20_000,
                spawns: 1000,
                enforce_opens: 10_000,
                model_bytes: GIB,
                model_tensors: 16,
                many_files: 100_000,
                store_records: 10_000_000,
            }
        }
    }
}

/// Folders of `many/`: the 100k files are spread over this many, as a
/// model store's per-model folders would be.
const MANY_DIRS: u32 = 100;

pub struct Layout {
    pub root: PathBuf,
    pub models: PathBuf,
    pub unwatched: PathBuf,
    pub storm: PathBuf,
    pub churn: PathBuf,
    pub agent: PathBuf,
    pub many: PathBuf,
    pub enforce: PathBuf,
    pub run: PathBuf,
}

impl Layout {
    /// `/var/tmp/weightwarden-bench`, or `<target>/bench/data` when
    /// /var/tmp is a tmpfs.
    pub fn choose(target_dir: &Path) -> Self {
        let var_tmp = Path::new("/var/tmp");
        let on_tmpfs = statfs::statfs(var_tmp)
            .map(|fs| fs.filesystem_type() == statfs::TMPFS_MAGIC)
            .unwrap_or(true);
        let root = if var_tmp.is_dir() && !on_tmpfs {
            var_tmp.join("weightwarden-bench")
        } else {
            target_dir.join("bench").join("data")
        };
        Self::at(root)
    }

    fn at(root: PathBuf) -> Self {
        Self {
            models: root.join("models"),
            unwatched: root.join("unwatched"),
            storm: root.join("storm"),
            churn: root.join("churn"),
            agent: root.join("agent"),
            many: root.join("many"),
            enforce: root.join("enforce"),
            run: root.join("run"),
            root,
        }
    }

    pub fn weight_file(&self, sizes: &Sizes) -> PathBuf {
        self.models
            .join(format!("weight-{}m.safetensors", sizes.weight_bytes / MIB))
    }

    pub fn small_watched(&self) -> PathBuf {
        self.models.join("small.safetensors")
    }

    pub fn small_unwatched(&self) -> PathBuf {
        self.unwatched.join("small.dat")
    }

    /// The file of the enforcement rows' policy (the only one in its
    /// weight set).
    pub fn enforce_file(&self) -> PathBuf {
        self.enforce.join("small.safetensors")
    }

    pub fn model_file(&self, sizes: &Sizes) -> PathBuf {
        self.models
            .join(format!("model-{}m.safetensors", sizes.model_bytes / MIB))
    }

    /// Files that exist for this run's sizes, with how big they must be.
    fn big_files(&self, sizes: &Sizes) -> [(PathBuf, u64, u64); 5] {
        [
            (self.weight_file(sizes), sizes.weight_bytes, 8),
            (self.small_watched(), sizes.small_file_bytes, 8),
            (self.small_unwatched(), sizes.small_file_bytes, 8),
            (self.enforce_file(), sizes.small_file_bytes, 8),
            (
                self.model_file(sizes),
                sizes.model_bytes,
                sizes.model_tensors,
            ),
        ]
    }

    /// Makes every folder and missing file; empties `run/`.
    pub fn prepare(&self, sizes: &Sizes) -> Result<()> {
        for dir in [
            &self.root,
            &self.models,
            &self.unwatched,
            &self.storm,
            &self.churn,
            &self.agent,
            &self.many,
            &self.enforce,
        ] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        self.check_space(sizes)?;
        if self.run.exists() {
            fs::remove_dir_all(&self.run)
                .with_context(|| format!("cannot empty {}", self.run.display()))?;
        }
        fs::create_dir_all(&self.run)
            .with_context(|| format!("cannot create {}", self.run.display()))?;
        for (path, data_bytes, tensors) in self.big_files(sizes) {
            if safetensors_size(data_bytes, tensors) == file_len(&path) {
                continue;
            }
            eprintln!(
                "bench: writing {} ({} MiB)",
                path.display(),
                data_bytes / MIB
            );
            write_safetensors(&path, data_bytes, tensors)?;
        }
        for i in 0..sizes.storm_files {
            let path = self.storm.join(storm_file_name(i));
            if !path.exists() {
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            }
        }
        self.prepare_many(sizes.many_files)
    }

    fn check_space(&self, sizes: &Sizes) -> Result<()> {
        let stat = statvfs::statvfs(&self.root)
            .with_context(|| format!("cannot stat the file system of {}", self.root.display()))?;
        let available = stat.blocks_available() * stat.fragment_size();
        let reusable: u64 = self
            .big_files(sizes)
            .iter()
            .map(|(path, _, _)| file_len(path).unwrap_or(0))
            .sum();
        if available + reusable < REQUIRED_BYTES {
            bail!(
                "not enough free disk space for the benchmark in {}: {} MiB free (plus {} MiB \
                 of files from an earlier run), {} MiB needed; free some space or point \
                 /var/tmp at a bigger disk",
                self.root.display(),
                available / MIB,
                reusable / MIB,
                REQUIRED_BYTES / MIB
            );
        }
        Ok(())
    }

    /// The folder of `count` tiny weight files, in [`MANY_DIRS`]
    /// subfolders, marked complete once made.
    fn prepare_many(&self, count: u32) -> Result<()> {
        let marker = self.many.join(".complete");
        if fs::read_to_string(&marker).is_ok_and(|text| text.trim() == count.to_string()) {
            return Ok(());
        }
        eprintln!(
            "bench: creating {count} small weight files in {}",
            self.many.display()
        );
        if self.many.exists() {
            fs::remove_dir_all(&self.many)
                .with_context(|| format!("cannot empty {}", self.many.display()))?;
        }
        let header = safetensors_header(0, 0);
        let per_dir = count.div_ceil(MANY_DIRS);
        for i in 0..count {
            let dir = self.many.join(format!("d{:03}", i / per_dir));
            if i % per_dir == 0 {
                fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let path = dir.join(format!("f{:04}.safetensors", i % per_dir));
            fs::write(&path, &header)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        fs::write(&marker, count.to_string())
            .with_context(|| format!("cannot write {}", marker.display()))
    }
}

fn file_len(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().map(|meta| meta.len())
}

/// The safetensors header (8-byte little-endian length, then JSON padded
/// with spaces to a multiple of 8) for `data_bytes` of `U32` data split
/// into `tensors` equal tensors.
fn safetensors_header(data_bytes: u64, tensors: u64) -> Vec<u8> {
    let mut json = String::from(r#"{"__metadata__":{"format":"np"}"#);
    if let Some(each) = data_bytes.checked_div(tensors) {
        let each = each / 4 * 4;
        for t in 0..tensors {
            let begin = t * each;
            let end = if t + 1 == tensors {
                data_bytes
            } else {
                begin + each
            };
            json.push_str(&format!(
                r#","t{t:03}":{{"dtype":"U32","shape":[{}],"data_offsets":[{begin},{end}]}}"#,
                (end - begin) / 4
            ));
        }
    }
    json.push('}');
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(json.as_bytes());
    header
}

fn safetensors_size(data_bytes: u64, tensors: u64) -> Option<u64> {
    Some(safetensors_header(data_bytes, tensors).len() as u64 + data_bytes)
}

/// Writes a safetensors file of `data_bytes` of pseudo-random data (to a
/// temporary name, renamed when complete and synced, so writeback does not
/// run during the measurements).
fn write_safetensors(path: &Path, data_bytes: u64, tensors: u64) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut file =
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let werr = || format!("cannot write {}", partial.display());
    file.write_all(&safetensors_header(data_bytes, tensors))
        .with_context(werr)?;
    let mut block = vec![0u8; MIB as usize];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in block.chunks_exact_mut(8) {
        // xorshift64: cheap bytes that no file system compresses away.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let mut left = data_bytes;
    while left > 0 {
        let n = left.min(MIB);
        file.write_all(&block[..n as usize]).with_context(werr)?;
        left -= n;
    }
    file.sync_all().with_context(werr)?;
    fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_headers_are_aligned_json_with_exact_offsets() {
        let header = safetensors_header(40, 3);
        let len = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
        assert_eq!(header.len(), 8 + len);
        assert!(len.is_multiple_of(8));
        let json: serde_json::Value = serde_json::from_slice(&header[8..]).unwrap();
        assert_eq!(json["t000"]["data_offsets"], serde_json::json!([0, 12]));
        assert_eq!(json["t002"]["data_offsets"], serde_json::json!([24, 40]));
        assert_eq!(json["t002"]["shape"], serde_json::json!([4]));
        assert_eq!(json["__metadata__"]["format"], "np");
        assert!(safetensors_header(0, 0).len().is_multiple_of(8));
    }

    #[test]
    fn makes_fixtures_once() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::at(dir.path().to_path_buf());
        let sizes = Sizes {
            weight_bytes: 3 * MIB,
            small_file_bytes: MIB,
            pread_calls: 10,
            storm_files: 5,
            storm_calls: 10,
            churn_calls: 10,
            spawns: 2,
            enforce_opens: 10,
            model_bytes: 2 * MIB,
            model_tensors: 4,
            many_files: 300,
            store_records: 100,
        };
        // The space check wants gigabytes a test machine may not have.
        for dir in [
            &layout.models,
            &layout.unwatched,
            &layout.storm,
            &layout.many,
            &layout.enforce,
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        for (path, bytes, tensors) in layout.big_files(&sizes) {
            write_safetensors(&path, bytes, tensors).unwrap();
            assert_eq!(file_len(&path), safetensors_size(bytes, tensors));
        }
        layout.prepare_many(sizes.many_files).unwrap();
        let dirs = fs::read_dir(&layout.many).unwrap().count();
        assert_eq!(dirs, 101, "100 folders and the marker");
        assert!(layout.many.join("d099/f0002.safetensors").is_file());
        assert!(!layout.many.join("d099/f0003.safetensors").exists());
        // A second call trusts the marker.
        fs::remove_file(layout.many.join("d000/f0000.safetensors")).unwrap();
        layout.prepare_many(sizes.many_files).unwrap();
        assert!(!layout.many.join("d000/f0000.safetensors").exists());
        assert!(
            layout
                .weight_file(&sizes)
                .ends_with("models/weight-3m.safetensors")
        );
        assert_eq!(
            file_len(&layout.enforce_file()),
            safetensors_size(MIB, 8),
            "the enforcement rows' file is made with the others"
        );
    }
}
