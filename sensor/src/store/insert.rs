//! Putting one record into the tables (`schema.rs`): its actor and file
//! by id (found in a cache, else in their tables, else added), the record
//! row, and its share of the hourly sums. The writer does it inside a
//! batch's transaction; the readers' test stores go through it too.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    rollup::{NO_READER, NO_UID, Reader, Sums},
    row::{Actor, FileKey, Row},
};

/// Ids remembered per table before the cache starts again, at the end of
/// a batch (the tables' indexes still find them).
const CACHE_MAX: usize = 65_536;

/// The writer's state across records: the ids it has seen, and the sums
/// of the batch in progress.
#[derive(Debug, Default)]
pub struct Inserter {
    actors: HashMap<Actor, i64>,
    /// Each cached actor's reader and user, as the hourly sums name them.
    readers: HashMap<i64, Reader>,
    files: HashMap<FileKey, i64>,
    sums: Sums,
}

impl Inserter {
    /// Adds record `seq`: `row` its columns, `record` its bytes, `mac` its
    /// link.
    pub fn record(
        &mut self,
        conn: &Connection,
        seq: u64,
        row: &Row,
        record: &[u8],
        mac: &[u8],
    ) -> rusqlite::Result<()> {
        let actor = row
            .actor
            .as_ref()
            .map(|a| self.actor(conn, a))
            .transpose()?;
        let file = row.file.as_ref().map(|f| self.file(conn, f)).transpose()?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO records (seq, time_ns, action, severity, actor, file, weight_set, \
             detection, bytes, opens, record, mac) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        stmt.execute(params![
            seq as i64,
            row.time_ns,
            row.action,
            row.severity,
            actor,
            file,
            row.weight_set,
            row.detection,
            row.bytes,
            row.opens,
            record,
            mac,
        ])?;
        self.sums.add(row, actor, file);
        Ok(())
    }

    /// Adds the batch's hourly sums: the last step of its transaction.
    /// The caches start again here when full (the sums name actors by the
    /// cache until then).
    pub fn finish_batch(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.sums.flush(conn, &self.readers)?;
        if self.actors.len() >= CACHE_MAX {
            self.actors.clear();
            self.readers.clear();
        }
        if self.files.len() >= CACHE_MAX {
            self.files.clear();
        }
        Ok(())
    }

    /// Forgets every id and sum: after a transaction that failed (its ids
    /// were rolled back and may be given again) or a retention cut (which
    /// removes actors and files no record names any more).
    pub fn forget(&mut self) {
        self.actors.clear();
        self.readers.clear();
        self.files.clear();
        self.sums.clear();
    }

    fn actor(&mut self, conn: &Connection, a: &Actor) -> rusqlite::Result<i64> {
        if let Some(id) = self.actors.get(a) {
            return Ok(*id);
        }
        let known: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM actors WHERE pid = ?1 AND start_ns IS ?2 AND ppid IS ?3 \
                 AND uid IS ?4 AND exe IS ?5 AND comm IS ?6 AND container IS ?7 LIMIT 1",
            )?
            .query_row(
                params![a.pid, a.start_ns, a.ppid, a.uid, a.exe, a.comm, a.container],
                |r| r.get(0),
            )
            .optional()?;
        let id = match known {
            Some(id) => id,
            None => {
                conn.prepare_cached(
                    "INSERT INTO actors (pid, start_ns, ppid, uid, exe, comm, container) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    a.pid,
                    a.start_ns,
                    a.ppid,
                    a.uid,
                    a.exe,
                    a.comm,
                    a.container
                ])?;
                conn.last_insert_rowid()
            }
        };
        self.actors.insert(a.clone(), id);
        self.readers.insert(
            id,
            Reader {
                name: a
                    .exe
                    .as_deref()
                    .or(a.comm.as_deref())
                    .unwrap_or(NO_READER)
                    .to_owned(),
                uid: a.uid.unwrap_or(NO_UID),
            },
        );
        Ok(id)
    }

    fn file(&mut self, conn: &Connection, f: &FileKey) -> rusqlite::Result<i64> {
        if let Some(id) = self.files.get(f) {
            return Ok(*id);
        }
        let known: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM files WHERE dev = ?1 AND ino = ?2 AND path IS ?3 LIMIT 1",
            )?
            .query_row(params![f.dev, f.ino, f.path], |r| r.get(0))
            .optional()?;
        let id = match known {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO files (dev, ino, path) VALUES (?1, ?2, ?3)")?
                    .execute(params![f.dev, f.ino, f.path])?;
                conn.last_insert_rowid()
            }
        };
        self.files.insert(f.clone(), id);
        Ok(id)
    }
}

/// Marks the actors and files the records through `seq` name (before a
/// retention cut removes those records, in its transaction), for
/// [`remove_orphans`] after it.
pub fn mark_cut(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS cut_actors (id INTEGER PRIMARY KEY);
         CREATE TEMP TABLE IF NOT EXISTS cut_files (id INTEGER PRIMARY KEY);
         DELETE FROM cut_actors;
         DELETE FROM cut_files;",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO cut_actors SELECT actor FROM records \
         WHERE seq <= ?1 AND actor IS NOT NULL",
        [seq],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO cut_files SELECT file FROM records \
         WHERE seq <= ?1 AND file IS NOT NULL",
        [seq],
    )?;
    Ok(())
}

/// After a cut: removes the marked actors and files that no record names.
pub fn remove_orphans(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM actors WHERE id IN (SELECT id FROM cut_actors)
             AND NOT EXISTS (SELECT 1 FROM records WHERE actor = actors.id);
         DELETE FROM files WHERE id IN (SELECT id FROM cut_files)
             AND NOT EXISTS (SELECT 1 FROM records WHERE file = files.id);
         DELETE FROM cut_actors;
         DELETE FROM cut_files;",
    )
}
