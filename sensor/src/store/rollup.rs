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

/// Who read, in `hourly`: the executable, else the name; and the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reader {
    pub name: String,
    pub uid: i64,
}

/// The reader of records without a process, as [`rollup_of_records!`]
/// names it.
pub const NO_READER: &str = "?";
/// The user of records without one.
pub const NO_UID: i64 = -1;

/// A batch's records, counted by actor id (0: none) and file id (0: none):
/// cheap per record; folded into `hourly`'s key at the flush.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    hour: i64,
    actor: i64,
    file: i64,
    action: &'static str,
    detection: &'static str,
}

/// Records, and the sums of their `bytes` and `opens`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum {
    pub records: i64,
    pub bytes: i64,
    pub opens: i64,
}

impl Sum {
    pub fn add(&mut self, other: Sum) {
        self.records += other.records;
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.opens = self.opens.wrapping_add(other.opens);
    }
}

/// A batch's sums, before they are added to `hourly`.
#[derive(Debug, Default)]
pub struct Sums(HashMap<Key, Sum>);

impl Sums {
    /// Counts `row`, whose actor and file have these ids.
    pub fn add(&mut self, row: &Row, actor: Option<i64>, file: Option<i64>) {
        let key = Key {
            hour: hour_of(row.time_ns),
            actor: actor.unwrap_or(0),
            file: file.unwrap_or(0),
            action: row.action,
            detection: row.detection.unwrap_or(""),
        };
        self.0.entry(key).or_default().add(Sum {
            records: 1,
            bytes: row.bytes.unwrap_or(0),
            opens: row.opens.unwrap_or(0),
        });
    }

    /// Adds the sums to `hourly` (in the caller's transaction), each actor
    /// named by `readers`, and empties them.
    pub fn flush(
        &mut self,
        conn: &Connection,
        readers: &HashMap<i64, Reader>,
    ) -> rusqlite::Result<()> {
        let nobody = Reader {
            name: NO_READER.to_owned(),
            uid: NO_UID,
        };
        let mut rows: HashMap<(i64, &Reader, i64, &str, &str), Sum> = HashMap::new();
        for (k, s) in self.0.drain() {
            let reader = readers.get(&k.actor).unwrap_or(&nobody);
            rows.entry((k.hour, reader, k.file, k.action, k.detection))
                .or_default()
                .add(s);
        }
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO hourly (hour, reader, uid, file, action, detection, records, bytes, \
             opens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9){ADD}"
        ))?;
        for ((hour, reader, file, action, detection), s) in rows {
            stmt.execute(rusqlite::params![
                hour,
                reader.name,
                reader.uid,
                file,
                action,
                detection,
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

/// Whether `hourly` holds exactly the sums of the records (tests).
#[cfg(test)]
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
