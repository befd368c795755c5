//! `stats`: a window's summary — who read which weights and how much, the
//! top readers, detections by id, records by action.
//!
//! Bytes are the `read` summaries' alone: they already count every byte a
//! process copied in the kernel (`copy` records name where the first call
//! sent them, and summing both would count those bytes twice;
//! docs/events.md). Opens are `open` records plus the opens that
//! `open_summary` records counted (`access.opens`, read from the record:
//! no column holds it). A reader is its executable, else its `comm`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

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

const READS: &str = "
SELECT coalesce(exe, comm, '?') AS reader, uid, path,
       coalesce(sum(bytes) FILTER (WHERE action = 'read'), 0) AS read_bytes,
       count(*) FILTER (WHERE action = 'open')
         + coalesce(sum(json_extract(CAST(record AS TEXT), '$.access.opens'))
                      FILTER (WHERE action = 'open_summary'), 0),
       count(*) FILTER (WHERE action = 'mmap')
FROM records
WHERE action IN ('read', 'open', 'open_summary', 'mmap') AND time_ns >= ?1 AND time_ns <= ?2
GROUP BY reader, uid, path
ORDER BY read_bytes DESC, reader, uid, path";

const TOP: &str = "
SELECT coalesce(exe, comm, '?') AS reader, uid, sum(bytes) AS read_bytes, count(DISTINCT path)
FROM records
WHERE action = 'read' AND time_ns >= ?1 AND time_ns <= ?2
GROUP BY reader, uid
ORDER BY read_bytes DESC, reader, uid
LIMIT ?3";

const DETECTIONS: &str = "
SELECT detection, count(*) AS n FROM records
WHERE detection IS NOT NULL AND action = 'detection' AND time_ns >= ?1 AND time_ns <= ?2
GROUP BY detection ORDER BY n DESC, detection";

const ACTIONS: &str = "
SELECT action, count(*) AS n FROM records WHERE time_ns >= ?1 AND time_ns <= ?2
GROUP BY action ORDER BY n DESC, action";

/// Summarises the records of the store at `path` (open in `conn`) from
/// `since_ns` to `until_ns`.
pub fn stats(
    conn: &Connection,
    path: &Path,
    since_ns: i64,
    until_ns: i64,
) -> Result<Stats, StoreError> {
    let at = |e| StoreError::at(path, e);
    let window = [since_ns, until_ns];
    let reads = conn
        .prepare(READS)
        .and_then(|mut s| {
            s.query_map(window, |r| {
                Ok(Reading {
                    reader: r.get(0)?,
                    uid: r.get(1)?,
                    path: r.get(2)?,
                    bytes: r.get(3)?,
                    opens: r.get(4)?,
                    mmaps: r.get(5)?,
                })
            })?
            .collect()
        })
        .map_err(at)?;
    let top = i64::try_from(TOP_READERS).unwrap_or(i64::MAX);
    let top_readers = conn
        .prepare(TOP)
        .and_then(|mut s| {
            s.query_map([since_ns, until_ns, top], |r| {
                Ok(Reader {
                    reader: r.get(0)?,
                    uid: r.get(1)?,
                    bytes: r.get(2)?,
                    files: r.get(3)?,
                })
            })?
            .collect()
        })
        .map_err(at)?;
    let counts = |sql: &str| -> Result<Vec<Count>, StoreError> {
        conn.prepare(sql)
            .and_then(|mut s| {
                s.query_map(window, |r| {
                    Ok(Count {
                        name: r.get(0)?,
                        count: r.get(1)?,
                    })
                })?
                .collect()
            })
            .map_err(at)
    };
    let actions = counts(ACTIONS)?;
    Ok(Stats {
        since_ns,
        until_ns,
        records: actions.iter().map(|c| c.count).sum(),
        reads,
        top_readers,
        detections: counts(DETECTIONS)?,
        actions,
    })
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
}
