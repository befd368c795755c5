//! The pin directory (`kernel.pin_dir`, on bpffs): the running agent's
//! program links under `links/` and its maps under `maps/`, so that the
//! kernel keeps capturing and enforcing when the agent stops for a
//! restart (`kernel.handover`) or dies, and the next agent adopts what it
//! finds: the same programs go on feeding the same ring buffer, which the
//! new agent reads from where the old one stopped.
//!
//! Adoption needs the same load: the same eBPF object, kernel offsets and
//! frozen settings, which the `AGENT` map's fingerprint says
//! (`sensor_common::agent_slot`). Anything else (an upgrade, a changed map
//! size) is a replacement: the new agent attaches its own programs, then
//! detaches the old ones and drains their ring buffer (`agent/handover.rs`).
//!
//! The directory itself is `flock`ed by the agent using it: a second agent
//! never adopts programs a live one is still reading.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData};
use sensor_common::{agent_slot, map_name};
use sha2::{Digest, Sha256};

/// `BPF_FS_MAGIC` (`statfs` of a bpffs directory).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The load's identity, as kept in the `AGENT` map.
pub type Fingerprint = [u64; agent_slot::FINGERPRINT_WORDS as usize];

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "kernel.pin_dir {} is not on the BPF file system: mount it (`mount -t bpf bpf \
         /sys/fs/bpf`; the DaemonSet mounts the host's), or set kernel.pin_dir = \"none\" \
         (then a restart of the agent is a gap in capture)",
        .0.display()
    )]
    NotBpffs(PathBuf),
    #[error(
        "the programs pinned in {} belong to a running agent{}: stop it first, or give this \
         one another kernel.pin_dir",
        .path.display(),
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { path: PathBuf, pid: Option<u32> },
    #[error("cannot use the pin directory {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot pin {what} at {}", .path.display())]
    Pin {
        what: String,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read the pinned map {}", .path.display())]
    Map {
        path: PathBuf,
        #[source]
        source: Box<aya::maps::MapError>,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pin directory, locked by this agent.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    _lock: File,
}

/// What an earlier agent left pinned.
#[derive(Debug, Clone)]
pub struct Previous {
    /// The agent that pinned it (it is gone: the lock was free).
    pub tgid: u64,
    /// `None` when the `AGENT` map is missing or unreadable: a load of
    /// another build, never adopted.
    pub fingerprint: Option<Fingerprint>,
    /// Its object's digest ([`object_digest`]).
    pub object: Option<u64>,
    /// The policy generation its kernel tables enforce and the policy's
    /// digest ([`policy_digest`]), when one is enforced.
    pub policy: Option<(u32, u64)>,
    /// Map name and pin path.
    pub maps: Vec<(String, PathBuf)>,
    /// Link pin name (`<program>-<attach index>`) and pin path.
    pub links: Vec<(String, PathBuf)>,
}

impl Previous {
    /// Unpins its links: the programs detach (no agent holds them).
    pub fn unpin_links(&self) -> Result<(), PinError> {
        unpin(&self.links)
    }

    /// Unpins its maps: each is freed once nothing uses it.
    pub fn unpin_maps(&self) -> Result<(), PinError> {
        unpin(&self.maps)
    }

    /// The pin path of map `name`.
    pub fn map(&self, name: &str) -> Option<&Path> {
        self.maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_path())
    }
}

/// A link's pin name: the program and which of its attach points (bpffs
/// refuses names with a dot: it keeps those for its own files).
pub fn link_name(program: &str, attach_index: usize) -> String {
    format!("{program}-{attach_index}")
}

impl PinDir {
    /// Creates (if need be) and locks `path`, which must be on bpffs.
    pub fn open(path: &Path) -> Result<Self, PinError> {
        // The nearest directory that exists says where the rest would go.
        let existing = path
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        let stat = nix::sys::statfs::statfs(existing)
            .map_err(|e| io_at(existing)(io::Error::from_raw_os_error(e as i32)))?;
        if stat.filesystem_type().0 as i64 != BPF_FS_MAGIC {
            return Err(PinError::NotBpffs(path.to_path_buf()));
        }
        for dir in [path.to_path_buf(), path.join("maps"), path.join("links")] {
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let lock = File::open(path).map_err(io_at(path))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                let pid = read_agent(&path.join("maps").join(map_name::AGENT))
                    .ok()
                    .and_then(|slots| u32::try_from(slots[agent_slot::TGID as usize]).ok());
                return Err(PinError::Busy {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            return Err(io_at(path)(err));
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.path.join("maps").join(name)
    }

    pub fn link_path(&self, name: &str) -> PathBuf {
        self.path.join("links").join(name)
    }

    /// What an earlier agent left here, if anything.
    pub fn previous(&self) -> Result<Option<Previous>, PinError> {
        let maps = self.list("maps")?;
        let links = self.list("links")?;
        if maps.is_empty() && links.is_empty() {
            return Ok(None);
        }
        let agent = maps
            .iter()
            .find(|(n, _)| n == map_name::AGENT)
            .and_then(|(_, path)| read_agent(path).ok());
        let tgid = agent.map_or(0, |slots| slots[agent_slot::TGID as usize]);
        let fingerprint = agent.map(|slots| {
            let mut f = Fingerprint::default();
            let first = agent_slot::FINGERPRINT as usize;
            f.copy_from_slice(&slots[first..first + agent_slot::FINGERPRINT_WORDS as usize]);
            f
        });
        Ok(Some(Previous {
            tgid,
            fingerprint,
            object: agent.map(|slots| slots[agent_slot::OBJECT as usize]),
            policy: agent.and_then(|slots| {
                let generation = slots[agent_slot::POLICY_GENERATION as usize];
                let generation = u32::try_from(generation).ok().filter(|&g| g != 0)?;
                Some((generation, slots[agent_slot::POLICY_DIGEST as usize]))
            }),
            maps,
            links,
        }))
    }

    fn list(&self, sub: &str) -> Result<Vec<(String, PathBuf)>, PinError> {
        let dir = self.path.join(sub);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            if let Some(name) = entry.file_name().to_str() {
                found.push((name.to_owned(), entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Unpins everything here: links first (each detaches once no
    /// descriptor holds it), then maps (each freed once no program uses
    /// it). Returns how many links were unpinned.
    pub fn clear(&self) -> Result<usize, PinError> {
        let mut detached = 0;
        // A replacement cut short leaves its own beside the earlier load's.
        for sub in ["links", "links-next", "maps", "maps-next"] {
            if !self.path.join(sub).exists() {
                continue;
            }
            let pins = self.list(sub)?;
            for (_, path) in &pins {
                std::fs::remove_file(path).map_err(io_at(path))?;
            }
            if sub.starts_with("links") {
                detached += pins.len();
            }
        }
        Ok(detached)
    }
}

fn unpin(pins: &[(String, PathBuf)]) -> Result<(), PinError> {
    for (_, path) in pins {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(path)(e)),
        }
    }
    Ok(())
}

/// Reads the `AGENT` map pinned at `path`.
fn read_agent(path: &Path) -> Result<[u64; agent_slot::LEN as usize], PinError> {
    let map_err = |source| PinError::Map {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let data = MapData::from_pin(path).map_err(map_err)?;
    let array: Array<MapData, u64> = Array::try_from(Map::Array(data)).map_err(map_err)?;
    let mut slots = [0u64; agent_slot::LEN as usize];
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = array.get(&(i as u32), 0).map_err(map_err)?;
    }
    Ok(slots)
}

/// The `AGENT` map, once the agent has claimed it: where it notes the
/// policy generation the kernel tables enforce.
pub struct AgentSlots {
    map: Array<MapData, u64>,
}

impl AgentSlots {
    pub fn new(map: Array<MapData, u64>) -> Self {
        Self { map }
    }

    /// Notes that the kernel tables enforce `generation` of the policy
    /// whose file hashes to `sha256_hex` (0: none).
    pub fn note_policy(&mut self, generation: u32, sha256_hex: &str) {
        let digest = policy_digest(sha256_hex);
        // Best effort: without it an adopting agent only loses the names
        // of the policy behind stops made while no agent ran.
        let _ = self
            .map
            .set(agent_slot::POLICY_DIGEST, digest, 0)
            .and_then(|()| {
                self.map
                    .set(agent_slot::POLICY_GENERATION, u64::from(generation), 0)
            });
    }
}

/// The first 8 bytes of a policy file's SHA-256 (hex), as a word.
pub fn policy_digest(sha256_hex: &str) -> u64 {
    u64::from_str_radix(sha256_hex.get(..16).unwrap_or("0"), 16).unwrap_or(0)
}

/// A short digest of the object alone (from its SHA-256): two loads with
/// the same one make records of the same layout.
pub fn object_digest(object_sha256: &[u8]) -> u64 {
    fingerprint(object_sha256, &[])[0]
}

/// The fingerprint of a load: the object (its SHA-256), then every input
/// frozen into it or sizing its maps, each length-prefixed.
pub fn fingerprint(object: &[u8], inputs: &[(&str, Vec<u8>)]) -> Fingerprint {
    let mut hash = Sha256::new();
    hash.update((object.len() as u64).to_le_bytes());
    hash.update(object);
    for (name, value) in inputs {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value);
    }
    let digest = hash.finalize();
    let mut f = Fingerprint::default();
    for (word, chunk) in f.iter_mut().zip(digest.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_the_object_and_each_input() {
        let base = fingerprint(b"object", &[("ring", vec![1, 0]), ("pid", vec![2])]);
        assert_eq!(
            base,
            fingerprint(b"object", &[("ring", vec![1, 0]), ("pid", vec![2])])
        );
        assert_ne!(
            base,
            fingerprint(b"objecT", &[("ring", vec![1, 0]), ("pid", vec![2])])
        );
        assert_ne!(
            base,
            fingerprint(b"object", &[("ring", vec![1, 1]), ("pid", vec![2])])
        );
        // Length prefixes: moving a byte from one input to the next is
        // another load.
        assert_ne!(
            base,
            fingerprint(b"object", &[("ring", vec![1]), ("pid", vec![0, 2])])
        );
    }

    #[test]
    fn a_directory_off_bpffs_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = PinDir::open(&dir.path().join("pins")).expect_err("tmpfs is not bpffs");
        assert!(matches!(err, PinError::NotBpffs(_)), "{err:?}");
        assert!(err.to_string().contains("mount -t bpf"), "{err}");
    }
}
