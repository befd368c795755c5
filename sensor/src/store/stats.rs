//! `stats`: a window's summary — who read which weights and how much, the
//! top readers, detections by id, records by action — from the hourly
//! sums (`rollup.rs`) for the window's whole hours and from the records
//! for the partial hours at its edges.
//!
//! Bytes are the `read` summaries' alone: they already count every byte a
//! process copied in the kernel (`copy` records name where the first call
//! sent them, and summing both would count those bytes twice;
//! docs/events.md). Opens are `open` records plus the opens that
//! `open_summary` records counted (`access.opens`, kept in the
//! `opens` column). A reader is its executable, else its `comm`.

use std::path::Path;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension};

use super::{
    StoreError,
    rollup::{HOUR_NS, Sum, hour_of},
};

/// Top readers listed at most.
pub const TOP_READERS: usize = 10;

/// One reader's use of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub reader: String,
    pub uid: Option<i64>,
    pub path: Option<String>,
    pub bytes: i64,
    pub opens: i64,
    pub mmaps: i64,
}

/// One reader over all files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub reader: String,
    pub uid: Option<i64>,
    pub bytes: i64,
    pub files: i64,
}

/// A count of records with one value (a detection id, an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub name: String,
    pub count: i64,
}

/// The summary of a window (Unix ns, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub since_ns: i64,
    pub until_ns: i64,
    pub records: i64,
    /// By bytes, most first.
    pub reads: Vec<Reading>,
    /// The [`TOP_READERS`] readers of the most bytes.
    pub top_readers: Vec<Reader>,
    pub detections: Vec<Count>,
    pub actions: Vec<Count>,
}

/// The sums of hours `?1` to `?2`, by reader, user, file id, action and
/// detection (the columns [`add`] reads; summed in Rust, which is several
/// times faster here than SQLite's `GROUP BY`).
const HOURS: &str = "
SELECT reader, uid, file, action, detection, records, bytes, opens
FROM hourly WHERE hour >= ?1 AND hour <= ?2";

/// The same columns for each record from `?1` to `?2` (ns, inclusive).
const RECORDS: &str = "
SELECT coalesce(a.exe, a.comm, '?'), coalesce(a.uid, -1), coalesce(r.file, 0), r.action,
       coalesce(r.detection, ''), 1, coalesce(r.bytes, 0), coalesce(r.opens, 0)
FROM records r INDEXED BY records_time LEFT JOIN actors a ON a.id = r.actor
WHERE r.time_ns >= ?1 AND r.time_ns <= ?2";

/// Who did what to which file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Part {
    reader: String,
    uid: Option<i64>,
    path: Option<String>,
    action: String,
    detection: String,
}

/// Where a window's sums come from: whole hours from `hourly`, the rest
/// from `records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Hours read from `hourly` (inclusive), if any.
    hours: Option<(i64, i64)>,
    /// Time ranges read from `records` (ns, inclusive).
    records: [Option<(i64, i64)>; 2],
}

/// Plans the window `since..=until` over a store whose records lie in
/// `first..=last`: an hour's sums serve when every record of that hour
/// is inside the window (the hours at the store's own ends included).
fn plan(since: i64, until: i64, first: i64, last: i64) -> Plan {
    let whole = |since: i64, until: i64| Plan {
        hours: None,
        records: [Some((since, until)), None],
    };
    // `hour_of` truncates, as SQLite does: an hour is only a clock hour
    // for times after 1970.
    if first < 0 || since > until {
        return whole(since, until);
    }
    let (lo, hi) = (since.max(first), until.min(last));
    if lo > hi {
        return Plan {
            hours: None,
            records: [None, None],
        };
    }
    // The first hour whose records all come at or after `since`, and the
    // last whose records all come at or before `until`.
    let mut h0 = hour_of(lo);
    if (h0 * HOUR_NS).max(first) < since {
        h0 += 1;
    }
    let mut h1 = hour_of(hi);
    if ((h1 + 1) * HOUR_NS - 1).min(last) > until {
        h1 -= 1;
    }
    if h0 > h1 {
        return whole(lo, hi);
    }
    let before = (lo < h0 * HOUR_NS).then(|| (lo, h0 * HOUR_NS - 1));
    let after = (hi >= (h1 + 1) * HOUR_NS).then(|| ((h1 + 1) * HOUR_NS, hi));
    Plan {
        hours: Some((h0, h1)),
        records: [before, after],
    }
}

/// Summarises the records of the store at `path` (open in `conn`) from
/// `since_ns` to `until_ns`.
pub fn stats(
    conn: &Connection,
    path: &Path,
    since_ns: i64,
    until_ns: i64,
) -> Result<Stats, StoreError> {
    let at = |e| StoreError::at(path, e);
    // Two statements: SQLite reads one end of an index for a lone min()
    // or max(), but the whole index for both in one.
    let end = |sql: &str| -> Result<Option<i64>, StoreError> {
        conn.query_row(sql, [], |r| r.get(0)).map_err(at)
    };
    let first = end("SELECT min(time_ns) FROM records")?;
    let last = end("SELECT max(time_ns) FROM records")?;
    let sums = match (first, last) {
        (Some(first), Some(last)) => {
            sums(conn, plan(since_ns, until_ns, first, last)).map_err(at)?
        }
        _ => BTreeMap::new(),
    };
    Ok(summarise(since_ns, until_ns, &sums))
}

/// The sums `plan` reads.
fn sums(conn: &Connection, plan: Plan) -> rusqlite::Result<BTreeMap<Part, Sum>> {
    let mut by_file = HashMap::new();
    if let Some((h0, h1)) = plan.hours {
        add(conn, HOURS, h0, h1, &mut by_file)?;
    }
    for (lo, hi) in plan.records.into_iter().flatten() {
        add(conn, RECORDS, lo, hi, &mut by_file)?;
    }
    by_path(conn, by_file)
}

/// A [`Part`] with its file by id (0: none).
type FilePart = (String, i64, i64, String, String);

/// Adds the rows `sql` selects for `lo..=hi` to `sums`.
fn add(
    conn: &Connection,
    sql: &str,
    lo: i64,
    hi: i64,
    sums: &mut HashMap<FilePart, Sum>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([lo, hi])?;
    while let Some(r) = rows.next()? {
        let key = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        sums.entry(key).or_default().add(Sum {
            records: r.get(5)?,
            bytes: r.get(6)?,
            opens: r.get(7)?,
        });
    }
    Ok(())
}

/// `sums` with each file named by its path (files with one path, say
/// before and after a replacement, count together).
fn by_path(
    conn: &Connection,
    sums: HashMap<FilePart, Sum>,
) -> rusqlite::Result<BTreeMap<Part, Sum>> {
    let mut paths: HashMap<i64, Option<String>> = HashMap::new();
    let mut stmt = conn.prepare_cached("SELECT path FROM files WHERE id = ?1")?;
    let mut out: BTreeMap<Part, Sum> = BTreeMap::new();
    for ((reader, uid, file, action, detection), s) in sums {
        let path = match paths.get(&file) {
            Some(p) => p.clone(),
            None => {
                let p: Option<String> = if file == 0 {
                    None
                } else {
                    stmt.query_row([file], |r| r.get(0)).optional()?.flatten()
                };
                paths.insert(file, p.clone());
                p
            }
        };
        let part = Part {
            reader,
            uid: (uid != -1).then_some(uid),
            path,
            action,
            detection,
        };
        out.entry(part).or_default().add(s);
    }
    Ok(out)
}

/// One reader's bytes and the paths they came from.
type ReaderSum<'a> = (i64, BTreeSet<&'a str>);

/// The summary of `sums`.
fn summarise(since_ns: i64, until_ns: i64, sums: &BTreeMap<Part, Sum>) -> Stats {
    let mut reads: BTreeMap<(&str, Option<i64>, Option<&str>), Reading> = BTreeMap::new();
    // Per reader: bytes, and the paths they came from.
    let mut readers: BTreeMap<(&str, Option<i64>), ReaderSum<'_>> = BTreeMap::new();
    let mut detections: BTreeMap<&str, i64> = BTreeMap::new();
    let mut actions: BTreeMap<&str, i64> = BTreeMap::new();
    for (p, s) in sums {
        *actions.entry(&p.action).or_default() += s.records;
        if p.action == "detection" && !p.detection.is_empty() {
            *detections.entry(&p.detection).or_default() += s.records;
        }
        if !matches!(p.action.as_str(), "read" | "open" | "open_summary" | "mmap") {
            continue;
        }
        let r = reads
            .entry((&p.reader, p.uid, p.path.as_deref()))
            .or_insert_with(|| Reading {
                reader: p.reader.clone(),
                uid: p.uid,
                path: p.path.clone(),
                bytes: 0,
                opens: 0,
                mmaps: 0,
            });
        match p.action.as_str() {
            "read" => {
                r.bytes += s.bytes;
                let reader = readers.entry((&p.reader, p.uid)).or_default();
                reader.0 += s.bytes;
                reader.1.extend(p.path.as_deref());
            }
            "open" => r.opens += s.records,
            "open_summary" => r.opens += s.opens,
            _ => r.mmaps += s.records,
        }
    }
    let mut reads: Vec<Reading> = reads.into_values().collect();
    reads.sort_by(|a, b| {
        (b.bytes, &a.reader, a.uid, &a.path).cmp(&(a.bytes, &b.reader, b.uid, &b.path))
    });
    let mut top_readers: Vec<Reader> = readers
        .into_iter()
        .map(|((reader, uid), (bytes, files))| Reader {
            reader: reader.to_owned(),
            uid,
            bytes,
            files: files.len() as i64,
        })
        .collect();
    top_readers.sort_by(|a, b| (b.bytes, &a.reader, a.uid).cmp(&(a.bytes, &b.reader, b.uid)));
    top_readers.truncate(TOP_READERS);
    let counts = |m: BTreeMap<&str, i64>| {
        let mut v: Vec<Count> = m
            .into_iter()
            .map(|(name, count)| Count {
                name: name.to_owned(),
                count,
            })
            .collect();
        v.sort_by(|a, b| (b.count, &a.name).cmp(&(a.count, &b.name)));
        v
    };
    let actions = counts(actions);
    Stats {
        since_ns,
        until_ns,
        records: actions.iter().map(|c| c.count).sum(),
        reads,
        top_readers,
        detections: counts(detections),
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        fixture::{by, store},
        query::Found,
        schema::{self, Access},
    };

    fn access(seq: i64, action: &str, pid: i64, exe: &str, uid: i64, path: &str) -> Found {
        Found {
            exe: Some(exe.into()),
            uid: Some(uid),
            path: Some(path.into()),
            ..by(seq, seq * 10, action, pid, 1, 1)
        }
    }

    #[test]
    fn sums_reads_and_counts_opens_per_reader_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = "/models/a.safetensors";
        let b = "/models/b.gguf";
        let read = |seq, pid, exe, uid, path, bytes| Found {
            bytes: Some(bytes),
            ..access(seq, "read", pid, exe, uid, path)
        };
        let db = store(
            dir.path(),
            &[
                access(1, "open", 10, "/usr/bin/cat", 0, a),
                read(2, 10, "/usr/bin/cat", 0, a, 1000),
                // Another cat, same user and file: the same reader.
                access(3, "open", 11, "/usr/bin/cat", 0, a),
                read(4, 11, "/usr/bin/cat", 0, a, 500),
                Found {
                    record: br#"{"action":"open_summary","access":{"opens":7}}"#.to_vec(),
                    ..access(5, "open_summary", 11, "/usr/bin/cat", 0, a)
                },
                // A copy's bytes are in the read summaries already.
                Found {
                    bytes: Some(999_999),
                    ..access(6, "copy", 11, "/usr/bin/cat", 0, a)
                },
                read(7, 12, "/usr/bin/cat", 65534, b, 300),
                access(8, "mmap", 13, "/usr/bin/python3", 0, b),
                Found {
                    detection: Some("bulk_read".into()),
                    ..by(9, 90, "detection", 10, 1, 1)
                },
                // Outside the window.
                read(100, 14, "/usr/bin/dd", 0, a, 1 << 30),
            ],
        );
        let conn = schema::open(&db, Access::Read).expect("open");
        let s = stats(&conn, &db, 0, 500).expect("stats");
        let reading = |reader: &str, uid, path: &str, bytes, opens, mmaps| Reading {
            reader: reader.into(),
            uid: Some(uid),
            path: Some(path.into()),
            bytes,
            opens,
            mmaps,
        };
        assert_eq!(
            s.reads,
            [
                reading("/usr/bin/cat", 0, a, 1500, 9, 0),
                reading("/usr/bin/cat", 65534, b, 300, 0, 0),
                reading("/usr/bin/python3", 0, b, 0, 0, 1),
            ]
        );
        let reader = |reader: &str, uid, bytes, files| Reader {
            reader: reader.into(),
            uid: Some(uid),
            bytes,
            files,
        };
        assert_eq!(
            s.top_readers,
            [
                reader("/usr/bin/cat", 0, 1500, 1),
                reader("/usr/bin/cat", 65534, 300, 1)
            ]
        );
        let count = |name: &str, count| Count {
            name: name.into(),
            count,
        };
        assert_eq!(s.detections, [count("bulk_read", 1)]);
        assert_eq!(
            s.actions,
            [
                count("read", 3),
                count("open", 2),
                count("copy", 1),
                count("detection", 1),
                count("mmap", 1),
                count("open_summary", 1),
            ]
        );
        assert_eq!(s.records, 9);
    }

    #[test]
    fn a_window_reads_whole_hours_from_the_sums_and_its_edges_from_the_records() {
        const H: i64 = HOUR_NS;
        // Records from 10:30 to 15:20 (hours 10 to 15).
        let (first, last) = (10 * H + H / 2, 15 * H + H / 3);
        let p = plan(11 * H + 5, 14 * H + 7, first, last);
        assert_eq!(p.hours, Some((12, 13)));
        assert_eq!(
            p.records,
            [Some((11 * H + 5, 12 * H - 1)), Some((14 * H, 14 * H + 7))]
        );
        // From before the first record to after the last: every hour, the
        // store's own ends included.
        let p = plan(0, 20 * H, first, last);
        assert_eq!(p.hours, Some((10, 15)));
        assert_eq!(p.records, [None, None]);
        // Inside one hour: records only.
        let p = plan(12 * H + 1, 12 * H + 9, first, last);
        assert_eq!(p.hours, None);
        assert_eq!(p.records, [Some((12 * H + 1, 12 * H + 9)), None]);
        // Hour-aligned ends.
        let p = plan(11 * H, 13 * H - 1, first, last);
        assert_eq!(p.hours, Some((11, 12)));
        assert_eq!(p.records, [None, None]);
        // Outside the records.
        let p = plan(20 * H, 21 * H, first, last);
        assert_eq!((p.hours, p.records), (None, [None, None]));
    }

    #[test]
    fn the_sums_give_what_the_records_give_for_any_window() {
        const H: i64 = HOUR_NS;
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ["/models/a.gguf", "/models/b.gguf", "/models/c.gguf"];
        let actions = ["open", "read", "mmap", "close", "detection", "exec"];
        // 300 records over 6 hours, by 7 processes, 3 users.
        let rows: Vec<Found> = (1..=300i64)
            .map(|seq| {
                let action = actions[(seq % 6) as usize];
                Found {
                    bytes: (action == "read").then_some(seq * 1000),
                    detection: (action == "detection").then(|| "bulk_read".to_owned()),
                    path: (action != "exec").then(|| files[(seq % 3) as usize].to_owned()),
                    exe: (seq % 5 != 0).then(|| format!("/usr/bin/e{}", seq % 4)),
                    uid: Some(seq % 3),
                    ..by(seq, 100 * H + seq * (6 * H / 300), action, seq % 7, 1, 1)
                }
            })
            .collect();
        let db = store(dir.path(), &rows);
        let conn = schema::open(&db, Access::Read).expect("open");
        let (first, last) = (100 * H + 6 * H / 300, 106 * H);
        for (since, until) in [
            (0, i64::MAX),
            (101 * H + 17, 104 * H + 3),
            (101 * H, 103 * H - 1),
            (102 * H + 5, 102 * H + 9),
            (first, last),
            (first + 1, last - 1),
        ] {
            let p = plan(since, until, first, last);
            let raw = Plan {
                hours: None,
                records: [Some((since, until)), None],
            };
            let with_hours = summarise(since, until, &sums(&conn, p).expect("sums"));
            let from_records = summarise(since, until, &sums(&conn, raw).expect("raw"));
            assert_eq!(with_hours, from_records, "{since}..{until}: {p:?}");
        }
        // The whole store reads the sums alone, and finds every record.
        assert_eq!(plan(0, i64::MAX, first, last).records, [None, None]);
        assert_eq!(stats(&conn, &db, 0, i64::MAX).expect("stats").records, 300);
    }
}
