//! The store's schema: its tables and indexes, its version, and the
//! migrations that bring an older database up to it.
//!
//! One row per record (`records`), in the order the agent wrote them
//! (`seq`), holding the record's native encoding byte for byte beside the
//! fields responders search by, each indexed with the time so that a
//! question over a window reads only that window. `prunes` keeps where
//! retention cut the chain (`chain.rs`), `meta` the store's identity and
//! chain head. The version is SQLite's `user_version`.

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// The version this agent writes. Each step in [`MIGRATIONS`] goes from
/// its index to the next.
pub const VERSION: u32 = 1;

/// `MIGRATIONS[n]` turns a version-`n` database into version `n + 1`
/// (version 0: an empty file).
const MIGRATIONS: &[&str] = &[V1];

const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE records (
    seq          INTEGER PRIMARY KEY,
    time_ns      INTEGER NOT NULL,
    run          INTEGER,
    run_seq      INTEGER,
    action       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    pid          INTEGER,
    pid_start_ns INTEGER,
    ppid         INTEGER,
    uid          INTEGER,
    exe          TEXT,
    comm         TEXT,
    container    TEXT,
    path         TEXT,
    dev          INTEGER,
    ino          INTEGER,
    weight_set   TEXT,
    detection    TEXT,
    bytes        INTEGER,
    record       BLOB NOT NULL,
    mac          BLOB NOT NULL
);
CREATE INDEX records_time      ON records(time_ns);
CREATE INDEX records_file      ON records(dev, ino, time_ns);
CREATE INDEX records_path      ON records(path, time_ns) WHERE path IS NOT NULL;
CREATE INDEX records_weights   ON records(weight_set, time_ns) WHERE weight_set IS NOT NULL;
CREATE INDEX records_process   ON records(pid, pid_start_ns, time_ns);
CREATE INDEX records_parent    ON records(ppid, time_ns);
CREATE INDEX records_exe       ON records(exe, time_ns) WHERE exe IS NOT NULL;
CREATE INDEX records_uid       ON records(uid, time_ns);
CREATE INDEX records_container ON records(container, time_ns) WHERE container IS NOT NULL;
CREATE INDEX records_action    ON records(action, time_ns);
CREATE INDEX records_severity  ON records(severity, time_ns) WHERE severity <> 'info';
CREATE INDEX records_detection ON records(detection, time_ns) WHERE detection IS NOT NULL;

CREATE TABLE prunes (
    through_seq INTEGER PRIMARY KEY,
    mac         BLOB NOT NULL,
    removed     INTEGER NOT NULL,
    time_ns     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    seal        BLOB NOT NULL
);
";

/// How a database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The agent's writer: created when missing, migrated to [`VERSION`].
    Write,
    /// A reader (`query`, `verify`, ...): never created or changed; works
    /// beside a running writer (WAL) and on a copied file.
    Read,
}

/// Opens the database at `path` for `access` and checks its version: a
/// writer migrates an older one (in one transaction) and both refuse a
/// newer one.
pub fn open(path: &std::path::Path, access: Access) -> Result<Connection, StoreError> {
    let flags = match access {
        Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if access == Access::Read && !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::at(path, e))?;
    // A writer holding the lock briefly (a commit) must not fail a reader.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| StoreError::at(path, e))?;
    if access == Access::Write {
        // WAL: readers never wait for the writer, nor it for them;
        // NORMAL: a commit survives the agent being killed (not a power
        // loss of the last commits, which the chain head then shows).
        conn.pragma_update(None, "journal_mode", "wal")
            .and_then(|()| conn.pragma_update(None, "synchronous", "normal"))
            .map_err(|e| StoreError::at(path, e))?;
    }
    let found = version(&conn).map_err(|e| StoreError::at(path, e))?;
    if found > VERSION {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            found,
            supported: VERSION,
        });
    }
    if found < VERSION {
        match access {
            Access::Write => {
                if found == 0 {
                    // Retention gives freed pages back (`retention.rs`);
                    // only settable before the first table.
                    conn.pragma_update(None, "auto_vacuum", "incremental")
                        .map_err(|e| StoreError::at(path, e))?;
                }
                migrate(&conn, found).map_err(|e| StoreError::at(path, e))?
            }
            Access::Read if found == 0 => return Err(StoreError::NotAStore(path.to_path_buf())),
            Access::Read => {
                return Err(StoreError::Older {
                    path: path.to_path_buf(),
                    found,
                    supported: VERSION,
                });
            }
        }
    }
    Ok(conn)
}

/// The database's schema version (0: a new, empty one). A file that is
/// not a SQLite database fails here.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Applies every migration from `from` on, in one transaction.
fn migrate(conn: &Connection, from: u32) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step as u32 + 1)?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_current_schema_and_a_reader_then_opens_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        let conn = open(&path, Access::Write).expect("create");
        assert_eq!(version(&conn).expect("version"), VERSION);
        drop(conn);
        let conn = open(&path, Access::Read).expect("read");
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .expect("tables");
        assert_eq!(tables, 3);
    }

    #[test]
    fn every_older_version_migrates_to_the_current_one() {
        for from in 0..VERSION {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("audit.db");
            let conn = Connection::open(&path).expect("open");
            // Build version `from` the way an agent of that version did.
            for (step, sql) in MIGRATIONS.iter().enumerate().take(from as usize) {
                conn.execute_batch(sql).expect("old schema");
                conn.pragma_update(None, "user_version", step as u32 + 1)
                    .expect("version");
            }
            drop(conn);
            let conn = open(&path, Access::Write).expect("migrate");
            assert_eq!(version(&conn).expect("version"), VERSION, "from {from}");
        }
    }

    #[test]
    fn a_newer_database_is_refused_by_name_and_a_reader_never_creates_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", VERSION + 1)
            .expect("version");
        drop(conn);
        for access in [Access::Read, Access::Write] {
            let err = open(&path, access).expect_err("newer");
            let text = err.to_string();
            assert!(
                text.contains("newer") && text.contains("audit.db"),
                "{text}"
            );
        }
        let missing = dir.path().join("none.db");
        let err = open(&missing, Access::Read).expect_err("missing");
        assert!(matches!(err, StoreError::Missing(_)), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let err = open(&path, Access::Read).expect_err("garbage");
        let text = err.to_string();
        assert!(text.contains("audit.db"), "{text}");
    }
}
