//! The store's schema: its tables and indexes, its version, and the
//! migrations that bring an older database up to it.
//!
//! One row per record (`records`), in the order the agent wrote them
//! (`seq`), holding the record's native encoding byte for byte beside the
//! fields responders search by. Who acted (`actors`: a pid with its start
//! time, executable, user, container) and on which file (`files`: device,
//! inode, path) are kept once each and named by id, so that a record
//! carries three indexes (time; actor, time; file, time) and a question
//! over a window reads only that window. `hourly` sums the records of each
//! hour by reader, file, action and detection for `stats` (`rollup.rs`);
//! the `audit` view joins it all back for `query`, `timeline` and anyone
//! with a `sqlite3` shell. `prunes` keeps where retention cut the chain
//! (`chain.rs`), `meta` the store's identity and chain head. The version is
//! SQLite's `user_version`.

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, rollup::rollup_of_records};

/// The version this agent writes. Each step in [`MIGRATIONS`] goes from
/// its index to the next.
pub const VERSION: u32 = 2;

/// `MIGRATIONS[n]` turns a version-`n` database into version `n + 1`
/// (version 0: an empty file).
const MIGRATIONS: &[&str] = &[V1, V2];

/// Version 1: one table of records, twelve indexes.
pub const V1: &str = "
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

/// Version 2: actors and files in tables of their own, three indexes on
/// records instead of twelve, hourly sums for `stats`. The records keep
/// their sequence numbers, bytes and links: the chain is unchanged.
const V2: &str = concat!(
    "
CREATE TABLE actors (
    id        INTEGER PRIMARY KEY,
    pid       INTEGER NOT NULL,
    start_ns  INTEGER,
    ppid      INTEGER,
    uid       INTEGER,
    exe       TEXT,
    comm      TEXT,
    container TEXT
);
INSERT INTO actors (pid, start_ns, ppid, uid, exe, comm, container)
    SELECT DISTINCT pid, pid_start_ns, ppid, uid, exe, comm, container FROM records
    WHERE pid IS NOT NULL;
CREATE INDEX actors_pid       ON actors(pid, start_ns);
CREATE INDEX actors_parent    ON actors(ppid);
CREATE INDEX actors_exe       ON actors(exe) WHERE exe IS NOT NULL;
CREATE INDEX actors_uid       ON actors(uid);
CREATE INDEX actors_container ON actors(container) WHERE container IS NOT NULL;

CREATE TABLE files (
    id   INTEGER PRIMARY KEY,
    dev  INTEGER NOT NULL,
    ino  INTEGER NOT NULL,
    path TEXT
);
INSERT INTO files (dev, ino, path)
    SELECT DISTINCT dev, ino, path FROM records WHERE dev IS NOT NULL AND ino IS NOT NULL;
CREATE INDEX files_inode ON files(dev, ino);
CREATE INDEX files_path  ON files(path) WHERE path IS NOT NULL;

CREATE TABLE records_v2 (
    seq        INTEGER PRIMARY KEY,
    time_ns    INTEGER NOT NULL,
    action     TEXT NOT NULL,
    severity   TEXT NOT NULL,
    actor      INTEGER REFERENCES actors(id),
    file       INTEGER REFERENCES files(id),
    weight_set TEXT,
    detection  TEXT,
    bytes      INTEGER,
    opens      INTEGER,
    record     BLOB NOT NULL,
    mac        BLOB NOT NULL
);
INSERT INTO records_v2
    SELECT r.seq, r.time_ns, r.action, r.severity,
           (SELECT a.id FROM actors a
             WHERE a.pid = r.pid AND a.start_ns IS r.pid_start_ns AND a.ppid IS r.ppid
               AND a.uid IS r.uid AND a.exe IS r.exe AND a.comm IS r.comm
               AND a.container IS r.container
             LIMIT 1),
           (SELECT f.id FROM files f
             WHERE f.dev = r.dev AND f.ino = r.ino AND f.path IS r.path LIMIT 1),
           r.weight_set, r.detection, r.bytes,
           CASE WHEN r.action = 'open_summary'
                THEN json_extract(CAST(r.record AS TEXT), '$.access.opens') END,
           r.record, r.mac
    FROM records r ORDER BY r.seq;
DROP TABLE records;
ALTER TABLE records_v2 RENAME TO records;
CREATE INDEX records_time      ON records(time_ns);
CREATE INDEX records_actor     ON records(actor, time_ns);
CREATE INDEX records_file      ON records(file, time_ns);
CREATE INDEX records_weights   ON records(weight_set, time_ns) WHERE weight_set IS NOT NULL;
CREATE INDEX records_severity  ON records(severity, time_ns) WHERE severity <> 'info';
CREATE INDEX records_detection ON records(detection, time_ns) WHERE detection IS NOT NULL;

CREATE VIEW audit AS
    SELECT r.seq, r.time_ns, r.action, r.severity, r.actor, r.file,
           a.pid, a.start_ns AS pid_start_ns, a.ppid, a.uid, a.comm, a.exe, a.container,
           f.dev, f.ino, f.path, r.weight_set, r.detection, r.bytes, r.opens, r.record, r.mac
    FROM records r
    LEFT JOIN actors a ON a.id = r.actor
    LEFT JOIN files f ON f.id = r.file;

CREATE TABLE hourly (
    hour      INTEGER NOT NULL,
    reader    TEXT NOT NULL,
    uid       INTEGER NOT NULL,
    file      INTEGER NOT NULL,
    action    TEXT NOT NULL,
    detection TEXT NOT NULL,
    records   INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    opens     INTEGER NOT NULL,
    PRIMARY KEY (hour, reader, uid, file, action, detection)
) WITHOUT ROWID;
INSERT INTO hourly ",
    rollup_of_records!("", "true"),
    ";
"
);

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
        assert_eq!(tables, 6);
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
