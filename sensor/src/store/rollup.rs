//! Hourly sums (`hourly`): for each hour, reader (executable, else name),
//! user, file, action and detection, how many records, bytes and counted
//! opens. `stats` reads whole hours from here and only the partial hours
//! at a window's edges from `records`, so that a day's summary reads a
//! few thousand rows instead of a day of records.
//!
//! The writer adds each batch's sums in the batch's transaction
//! ([`Sums::flush`]); retention takes a cut's records out of them in the
//! cut's ([`subtract_through`]). Both use the same key as
//! [`rollup_of_records!`], which builds them from records: the migration
//! that made the table, the cut, and `stats` for its edges.

use std::collections::HashMap;

use rusqlite::Connection;

use super::row::Row;

/// An hour, in ns.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// The hour `time_ns` is in, as SQLite's integer division gives it.
pub fn hour_of(time_ns: i64) -> i64 {
    time_ns / HOUR_NS
}

/// `SELECT`s the sums of the records matching `$cond` (SQL over `r`, the
/// records, and `a`, their actors), in `hourly`'s column order, each sum
/// with `$sign` (`""`, or `"-"` to take them out).
macro_rules! rollup_of_records {
    ($sign:literal, $cond:literal) => {
        concat!(
            "SELECT r.time_ns / 3600000000000, coalesce(a.exe, a.comm, '?'), \
             coalesce(a.uid, -1), coalesce(r.file, 0), r.action, coalesce(r.detection, ''), ",
            $sign,
            "count(*), ",
            $sign,
            "coalesce(sum(r.bytes), 0), ",
            $sign,
            "coalesce(sum(r.opens), 0) \
             FROM records r LEFT JOIN actors a ON a.id = r.actor WHERE ",
            $cond,
            " GROUP BY 1, 2, 3, 4, 5, 6"
        )
    };
}
pub(crate) use rollup_of_records;

/// Adds the selected sums (columns as [`rollup_of_records!`]) to `hourly`.
const ADD: &str = " ON CONFLICT (hour, reader, uid, file, action, detection) DO UPDATE SET \
                   records = records + excluded.records, bytes = bytes + excluded.bytes, \
                   opens = opens + excluded.opens";

/// One row of `hourly`, as its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    hour: i64,
    reader: String,
    uid: i64,
    file: i64,
    action: &'static str,
    detection: &'static str,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    records: i64,
    bytes: i64,
    opens: i64,
}

/// A batch's sums, before they are added to `hourly`.
#[derive(Debug, Default)]
pub struct Sums(HashMap<Key, Sum>);

impl Sums {
    /// Counts `row`, whose file has id `file`.
    pub fn add(&mut self, row: &Row, file: Option<i64>) {
        let key = Key {
            hour: hour_of(row.time_ns),
            reader: row.reader().to_owned(),
            uid: row.actor.as_ref().and_then(|a| a.uid).unwrap_or(-1),
            file: file.unwrap_or(0),
            action: row.action,
            detection: row.detection.unwrap_or(""),
        };
        let sum = self.0.entry(key).or_default();
        sum.records += 1;
        sum.bytes = sum.bytes.wrapping_add(row.bytes.unwrap_or(0));
        sum.opens = sum.opens.wrapping_add(row.opens.unwrap_or(0));
    }

    /// Adds the sums to `hourly` (in the caller's transaction) and empties
    /// them.
    pub fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO hourly (hour, reader, uid, file, action, detection, records, bytes, \
             opens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9){ADD}"
        ))?;
        for (k, s) in self.0.drain() {
            stmt.execute(rusqlite::params![
                k.hour,
                k.reader,
                k.uid,
                k.file,
                k.action,
                k.detection,
                s.records,
                s.bytes,
                s.opens
            ])?;
        }
        Ok(())
    }

    /// Forgets the sums (their batch was not committed).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Takes the records through `seq` out of `hourly` (before a retention
/// cut removes them, in its transaction).
pub fn subtract_through(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    let negated = rollup_of_records!("-", "r.seq <= ?1");
    conn.execute(
        &format!(
            "INSERT INTO hourly (hour, reader, uid, file, action, detection, records, bytes, \
             opens) {negated}{ADD}"
        ),
        [seq],
    )?;
    conn.execute("DELETE FROM hourly WHERE records = 0", [])?;
    Ok(())
}

/// Whether `hourly` holds exactly the sums of the records (tests, and
/// `verify --deep`).
pub fn matches_records(conn: &Connection) -> rusqlite::Result<bool> {
    let diff: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM (SELECT * FROM hourly EXCEPT {} \
             UNION ALL SELECT * FROM ({} EXCEPT SELECT * FROM hourly))",
            rollup_of_records!("", "true"),
            rollup_of_records!("", "true")
        ),
        [],
        |r| r.get(0),
    )?;
    Ok(diff == 0)
}
