//! The local audit store: every record the agent writes, kept in an
//! embedded SQLite database (docs/store.md) for responders' questions, in a
//! tamper-evident chain. `schema` (tables, indexes, migrations), `row`
//! (what is indexed), `insert` (a record into the tables), `rollup` (hourly
//! sums), `chain` (the keyed links), `meta` (identity and head), `writer`
//! (the agent's writer thread), `retention`, `verify`;
//! the responders' readers `query`, `timeline` and `stats`.

pub mod chain;
pub mod insert;
pub mod meta;
pub mod query;
pub mod retention;
pub mod rollup;
pub mod row;
pub mod schema;
pub mod stats;
pub mod synthetic;
pub mod timeline;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};

pub use chain::{Head, Key};
pub use retention::Retention;
pub use writer::Writer;

/// Where the agent's store is unless configured.
pub const DEFAULT_PATH: &str = "/var/lib/weightwarden/audit.db";

/// Records waiting for the writer at most, unless configured.
pub const DEFAULT_QUEUE_MAX: usize = 65_536;

/// The store as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub key_path: PathBuf,
    pub retention: Retention,
    pub queue_max: usize,
}

impl StoreSettings {
    /// The store at `path`, its key beside it, default bounds.
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            key_path: chain::default_key_path(path),
            retention: Retention::default(),
            queue_max: DEFAULT_QUEUE_MAX,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no audit store at {0} (is the agent's store elsewhere? `--db PATH`)")]
    Missing(PathBuf),
    #[error("{0} is not a weightwarden audit store")]
    NotAStore(PathBuf),
    #[error("audit store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "audit store {path} has schema version {found}, newer than this weightwarden reads \
         ({supported}): use the weightwarden that wrote it"
    )]
    Newer {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "audit store {path} has schema version {found}, older than this weightwarden reads \
         ({supported}): start the agent once to migrate it, or migrate a copy with \
         `weightwarden migrate --db COPY`"
    )]
    Older {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "audit store {0} stayed locked for more than 5 s: another program holds it (a `sqlite3` \
         shell in a transaction?); end it, or read a copy (docs/store.md)"
    )]
    Busy(PathBuf),
    #[error("audit store {path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("audit store key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit store key {path} is readable by others (mode {mode:04o}): whoever reads it can \
         forge the chain; `chmod 600 {path}` and, if it leaked, start a new store"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error(
        "audit store {path} is chained with key {store_key}, not with this key ({key}): give \
         the key it was made with (`--key PATH`)"
    )]
    OtherKey {
        path: PathBuf,
        store_key: String,
        key: String,
    },
    #[error("cannot open audit store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit store {0} is in use by another weightwarden agent: run one agent per host, or \
         give this one its own store (`--store PATH`, or `--store none`)"
    )]
    InUse(PathBuf),
    #[error("cannot start the audit store's writer thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A SQLite error at `path`, with the common causes named.
    pub fn at(path: &Path, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &source {
            rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::NotADatabase => {
                Self::Corrupt {
                    path: path.to_path_buf(),
                    what: "the file is not a SQLite database (or is encrypted or overwritten)"
                        .into(),
                }
            }
            rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::DatabaseCorrupt => {
                Self::Corrupt {
                    path: path.to_path_buf(),
                    what: "SQLite reports the file corrupt (`sqlite3 FILE .recover` may save \
                           what is left)"
                        .into(),
                }
            }
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                Self::Busy(path.to_path_buf())
            }
            _ => Self::Sqlite {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;
