//! The tamper-evident chain: every stored record carries an HMAC-SHA256
//! (`mac`) of the previous record's and of its own sequence number and
//! bytes, keyed with a per-host secret only root can read. Changing,
//! removing, inserting or reordering a record breaks every link from it
//! on, and no one without the key can forge new ones.
//!
//! The first link starts from the store's genesis (its random id, in
//! `meta`); retention removes a prefix of the chain and keeps the link it
//! was cut at (`prunes`, sealed with the same key). The head (the last
//! record's sequence number and link) is kept in `meta` and written into
//! every heartbeat, so that a copy outside the host can prove a truncated
//! tail. docs/store.md says what this does and does not prove.

use std::{
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::StoreError;

/// One link: an HMAC-SHA256.
pub type Link = [u8; 32];

const KEY_BYTES: usize = 32;

/// The chain's key.
#[derive(Clone)]
pub struct Key([u8; KEY_BYTES]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl Key {
    /// Reads the key at `path`, or (for the writer, `create`) makes one
    /// there: 32 random bytes, mode 0600, in a directory made 0700 if
    /// missing. A key others can read is refused: whoever holds it can
    /// forge the chain.
    pub fn load(path: &Path, create: bool) -> Result<Self, StoreError> {
        let io = |source| StoreError::Key {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::File::open(path) {
            Ok(mut file) => {
                let mode = file.metadata().map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(StoreError::KeyExposed {
                        path: path.to_path_buf(),
                        mode: mode & 0o777,
                    });
                }
                let mut key = [0u8; KEY_BYTES];
                let mut rest = Vec::new();
                file.read_exact(&mut key).map_err(io)?;
                file.read_to_end(&mut rest).map_err(io)?;
                if !rest.is_empty() {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("longer than the {KEY_BYTES} bytes of a key"),
                    )));
                }
                Ok(Self(key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
                Self::create(path).map_err(io)
            }
            Err(err) => Err(io(err)),
        }
    }

    fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let key: [u8; KEY_BYTES] = random()?;
        // create_new: two agents racing never overwrite each other's key.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(&key)?;
        file.sync_all()?;
        Ok(Self(key))
    }

    /// A key made from known bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Names the key without revealing it: the first 8 bytes of its
    /// SHA-256, hex. Kept in `meta` to tell a store chained with another
    /// key from a tampered one.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// The link before the first record of the store `store_id`.
    pub fn genesis(&self, store_id: &str) -> Link {
        let mut mac = self.mac();
        mac.update(b"weightwarden audit store genesis\0");
        mac.update(store_id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The link of record `seq` with bytes `record`, after `prev`.
    pub fn link(&self, prev: &Link, seq: u64, record: &[u8]) -> Link {
        self.linker().link(prev, seq, record)
    }

    /// A [`Linker`]: for many links in a row.
    pub fn linker(&self) -> Linker {
        Linker(self.mac())
    }

    /// The seal of a retention cut: records through `through` were
    /// removed, the chain resuming from `link`.
    pub fn seal(&self, through: u64, link: &Link, removed: u64) -> Link {
        let mut mac = self.mac();
        mac.update(b"weightwarden audit store prune\0");
        mac.update(&through.to_le_bytes());
        mac.update(link);
        mac.update(&removed.to_le_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Computes links with the key's HMAC state made once: keying HMAC hashes
/// two blocks, which a record's link would otherwise pay each time.
#[derive(Clone)]
pub struct Linker(Hmac<Sha256>);

impl Linker {
    /// [`Key::link`].
    pub fn link(&self, prev: &Link, seq: u64, record: &[u8]) -> Link {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(&seq.to_le_bytes());
        mac.update(record);
        mac.finalize().into_bytes().into()
    }
}

/// `N` bytes from the kernel's random source.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Where the key of the store at `db` lives unless configured: beside it,
/// `audit.db` → `audit.key`.
pub fn default_key_path(db: &Path) -> PathBuf {
    db.with_extension("key")
}

/// A chain head: the last record's sequence number and link (0 and the
/// genesis for an empty store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub link: Link,
}

impl Head {
    /// `SEQ:HEX`, as heartbeats carry it and `verify --head` takes it.
    pub fn text(&self) -> String {
        format!("{}:{}", self.seq, hex::encode(self.link))
    }

    /// Parses [`Head::text`].
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, link) = text.split_once(':')?;
        let bytes = hex::decode(link).ok()?;
        Some(Self {
            seq: seq.parse().ok()?,
            link: bytes.try_into().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/audit.key");
        let made = Key::load(&path, true).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Key::load(&path, false).expect("read");
        assert_eq!(made.id(), again.id());
        assert_eq!(made.genesis("s"), again.genesis("s"));
        // A reader never makes one.
        let err = Key::load(&dir.path().join("none.key"), false).expect_err("missing");
        assert!(err.to_string().contains("none.key"), "{err}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.key");
        Key::load(&path, true).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Key::load(&path, false).expect_err("exposed");
        assert!(err.to_string().contains("0644"), "{err}");
    }

    #[test]
    fn links_depend_on_everything_they_cover() {
        let key = Key::from_bytes([7; 32]);
        let g = key.genesis("store");
        let l = key.link(&g, 1, b"record");
        assert_ne!(l, key.link(&g, 2, b"record"));
        assert_ne!(l, key.link(&g, 1, b"recorD"));
        assert_ne!(l, key.link(&key.genesis("other"), 1, b"record"));
        assert_ne!(l, Key::from_bytes([8; 32]).link(&g, 1, b"record"));
        let head = Head { seq: 9, link: l };
        assert_eq!(Head::parse(&head.text()), Some(head));
        assert_eq!(Head::parse("9:zz"), None);
    }
}
