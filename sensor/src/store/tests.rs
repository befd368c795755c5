//! The writer, retention and `verify` together, on real databases in a
//! temporary directory: what the writer commits verifies, and every edit
//! an attacker with write access to the file (but not the key) can make is
//! named where it happened.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{
    StoreSettings,
    chain::{Head, Key},
    retention::Retention,
    rollup,
    schema::{self, Access},
    synthetic,
    verify::{self, Broken},
    writer::Writer,
};
use crate::{
    event::{Event, RecordId},
    output::encode::{Encoder, native::Native},
};

/// Record `seq`: the synthetic host's (a process's exec, open, read or
/// close of a weight file, or a detection), at `unix_ns`.
fn event(seq: u64, unix_ns: i128) -> Event {
    let templates = synthetic::templates().expect("templates");
    let mut e = synthetic::event(&templates, seq - 1, unix_ns, 0);
    e.id = Some(RecordId { run: 7, seq });
    e
}

/// The records' bytes, in chain order.
fn stored(conn: &Connection) -> Vec<Vec<u8>> {
    conn.prepare("SELECT record FROM records ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Whether the hourly sums are those of the records, and every actor and
/// file is named by a record.
fn derived_tables_match(path: &Path) -> bool {
    let conn = schema::open(path, Access::Read).expect("open");
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM actors WHERE id NOT IN (SELECT actor FROM records \
             WHERE actor IS NOT NULL)) + (SELECT count(*) FROM files WHERE id NOT IN \
             (SELECT file FROM records WHERE file IS NOT NULL))",
            [],
            |r| r.get(0),
        )
        .expect("orphans");
    rollup::matches_records(&conn).expect("sums") && orphans == 0
}

fn now_ns() -> i128 {
    crate::enrich::clock::unix_now_ns()
}

/// A store in `dir` holding `n` records, the first `old` of them 10 days
/// old; returns its settings and the encoded records.
fn store_with(dir: &Path, n: u64, old: u64, retention: Retention) -> (StoreSettings, Vec<Vec<u8>>) {
    let mut settings = StoreSettings::at(&dir.join("audit.db"));
    settings.retention = retention;
    let mut writer = Writer::start(&settings).expect("start");
    let mut records = Vec::new();
    let now = now_ns();
    for seq in 1..=n {
        let at = if seq <= old {
            now - 10 * 86_400 * 1_000_000_000
        } else {
            now
        };
        let e = event(seq, at);
        let mut buf = Vec::new();
        Native.encode(&e, &mut buf).expect("encode");
        writer.submit(&e, &buf);
        records.push(buf);
    }
    writer.finish();
    (settings, records)
}

fn check(settings: &StoreSettings) -> Result<verify::Intact, Broken> {
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    let key = Key::load(&settings.key_path, false).expect("key");
    verify::verify(&conn, &settings.path, &key, None).expect("verify ran")
}

fn edit(path: &PathBuf, sql: &str) {
    Connection::open(path)
        .expect("open")
        .execute_batch(sql)
        .expect("edit");
}

#[test]
fn what_the_writer_commits_verifies_and_holds_the_records_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, records) = store_with(dir.path(), 100, 0, Retention::default());
    let intact = check(&settings).expect("intact");
    assert_eq!(
        (intact.records, intact.first, intact.head.seq),
        (100, Some(1), 100)
    );
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    assert_eq!(stored(&conn), records);
    assert!(derived_tables_match(&settings.path));
    // 25 processes, the same 25 actors whatever the records' order.
    let actors: i64 = conn
        .query_row("SELECT count(*) FROM actors", [], |r| r.get(0))
        .expect("actors");
    assert_eq!(actors, 25);
    // A second run chains on from the first's head.
    let mut writer = Writer::start(&settings).expect("restart");
    let e = event(1, now_ns());
    let mut buf = Vec::new();
    Native.encode(&e, &mut buf).expect("encode");
    writer.submit(&e, &buf);
    writer.finish();
    assert_eq!(check(&settings).expect("intact").head.seq, 101);
}

#[test]
fn an_edited_deleted_inserted_or_reordered_record_is_named_where_it_happened() {
    let cases: &[(&str, Broken)] = &[
        (
            "UPDATE records SET record = replace(record, 'gpu-node-01', 'gpu-node-02') WHERE seq = 40",
            Broken::Altered { seq: 40 },
        ),
        (
            "DELETE FROM records WHERE seq IN (40, 41)",
            Broken::Missing { from: 40, to: 41 },
        ),
        (
            "UPDATE records SET seq = seq + 1000 WHERE seq >= 40; \
             INSERT INTO records SELECT 40, time_ns, action, severity, actor, file, \
             weight_set, detection, bytes, opens, record, mac FROM records WHERE seq = 39; \
             UPDATE records SET seq = seq - 999 WHERE seq >= 1040",
            Broken::Altered { seq: 40 },
        ),
        (
            "UPDATE records SET record = (SELECT record FROM records WHERE seq = 50), \
             mac = (SELECT mac FROM records WHERE seq = 50) WHERE seq = 40",
            Broken::Altered { seq: 40 },
        ),
        (
            "DELETE FROM records WHERE seq > 90",
            Broken::Truncated {
                last: 90,
                head: 100,
            },
        ),
    ];
    for (sql, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (settings, _) = store_with(dir.path(), 100, 0, Retention::default());
        edit(&settings.path, sql);
        assert_eq!(check(&settings).expect_err(sql), *want, "{sql}");
    }
}

#[test]
fn a_head_kept_outside_proves_a_tail_cut_along_with_the_stores_own_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, _) = store_with(dir.path(), 50, 0, Retention::default());
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    let key = Key::load(&settings.key_path, false).expect("key");
    let at_30 = Head {
        seq: 30,
        link: conn
            .query_row("SELECT mac FROM records WHERE seq = 30", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .expect("mac")
            .try_into()
            .expect("32 bytes"),
    };
    drop(conn);
    // The attacker cuts the tail and moves meta's head back to match.
    edit(
        &settings.path,
        "DELETE FROM records WHERE seq > 20; UPDATE meta SET value = '20:' || \
         (SELECT hex(mac) FROM records WHERE seq = 20) WHERE key = 'head'",
    );
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    // Alone, the store looks whole (hex() is upper case: same bytes).
    let alone = verify::verify(&conn, &settings.path, &key, None).expect("ran");
    assert_eq!(alone.map(|i| i.head.seq), Ok(20));
    let given = verify::verify(&conn, &settings.path, &key, Some(at_30)).expect("ran");
    assert_eq!(given, Err(Broken::Truncated { last: 20, head: 30 }));
}

#[test]
fn retention_cuts_a_prefix_that_still_verifies_and_a_forged_cut_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = Retention {
        max_age: Some(std::time::Duration::from_secs(86_400)),
        max_bytes: None,
    };
    // The writer applies retention when it starts: write, then restart.
    let (settings, _) = store_with(dir.path(), 60, 25, Retention::default());
    let mut again = settings.clone();
    again.retention = retention;
    Writer::start(&again).expect("restart").finish();
    let intact = check(&settings).expect("intact");
    assert_eq!(
        (
            intact.records,
            intact.first,
            intact.pruned,
            intact.pruned_through
        ),
        (35, Some(26), 25, Some(25))
    );
    // The cut records left the hourly sums; their own actors went too.
    assert!(derived_tables_match(&settings.path));
    // Removing more and claiming retention did it needs the key.
    edit(
        &settings.path,
        "DELETE FROM records WHERE seq <= 30; \
         UPDATE prunes SET through_seq = 30, removed = 30",
    );
    assert_eq!(check(&settings), Err(Broken::ForgedCut { through: 30 }));
}

#[test]
fn retention_by_size_keeps_the_store_under_its_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, _) = store_with(dir.path(), 5_000, 0, Retention::default());
    let mut bounded = settings.clone();
    bounded.retention.max_bytes = Some(1 << 20);
    Writer::start(&bounded).expect("restart").finish();
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    let used = super::retention::used_bytes(&conn).expect("size");
    assert!(used <= 1 << 20, "{used}");
    let intact = check(&settings).expect("intact");
    assert!(intact.pruned > 0 && intact.records > 0, "{intact:?}");
    assert_eq!(intact.pruned + intact.records, 5_000);
    assert!(derived_tables_match(&settings.path));
}

#[test]
fn a_second_writer_is_refused_and_a_wrong_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::at(&dir.path().join("audit.db"));
    let first = Writer::start(&settings).expect("first");
    let err = Writer::start(&settings).err().expect("second");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    let mut other = settings.clone();
    other.key_path = dir.path().join("other.key");
    let err = Writer::start(&other).err().expect("other key");
    assert!(err.to_string().contains("chained with key"), "{err}");
}

#[test]
fn a_version_1_store_migrates_with_its_records_chain_and_answers() {
    use super::{meta, row::Row};
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::at(&dir.path().join("audit.db"));
    let key = Key::load(&settings.key_path, true).expect("key");
    // A store as a version-1 agent left it: 60 records, chained.
    let conn = Connection::open(&settings.path).expect("create");
    conn.execute_batch(schema::V1).expect("v1");
    conn.pragma_update(None, "user_version", 1)
        .expect("version");
    let head = meta::open_chain(&conn, &key, &settings.path).expect("meta");
    let mut link = head.link;
    let now = now_ns();
    let mut records = Vec::new();
    for seq in 1..=60u64 {
        let e = event(seq, now);
        let mut buf = Vec::new();
        Native.encode(&e, &mut buf).expect("encode");
        link = key.link(&link, seq, &buf);
        let r = Row::of(&e);
        let (a, f) = (r.actor.clone().unwrap_or_default(), r.file.clone());
        conn.execute(
            "INSERT INTO records (seq, time_ns, run, run_seq, action, severity, pid, \
             pid_start_ns, ppid, uid, exe, comm, container, path, dev, ino, weight_set, \
             detection, bytes, record, mac) VALUES (?1, ?2, 7, ?1, ?3, ?4, ?5, ?6, ?7, ?8, \
             ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            rusqlite::params![
                seq as i64,
                r.time_ns,
                r.action,
                r.severity,
                r.actor.as_ref().map(|a| a.pid),
                a.start_ns,
                a.ppid,
                a.uid,
                a.exe,
                a.comm,
                a.container,
                f.as_ref().and_then(|f| f.path.clone()),
                f.as_ref().map(|f| f.dev),
                f.as_ref().map(|f| f.ino),
                r.weight_set,
                r.detection,
                r.bytes,
                buf,
                &link[..],
            ],
        )
        .expect("v1 record");
        records.push(buf);
    }
    meta::set_head(&conn, &Head { seq: 60, link }).expect("head");
    drop(conn);
    // The agent migrates it and chains on.
    let mut writer = Writer::start(&settings).expect("migrate");
    let e = event(61, now);
    let mut buf = Vec::new();
    Native.encode(&e, &mut buf).expect("encode");
    writer.submit(&e, &buf);
    writer.finish();
    records.push(buf);
    let intact = check(&settings).expect("intact");
    assert_eq!((intact.records, intact.head.seq), (61, 61));
    assert!(derived_tables_match(&settings.path));
    let conn = schema::open(&settings.path, Access::Read).expect("open");
    assert_eq!(schema::version(&conn).expect("version"), schema::VERSION);
    assert_eq!(stored(&conn), records);
    // Each record has the process and file it had, through the new tables:
    // the migrated ones, and the one written after with the same process.
    let (actors, files): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM actors), (SELECT count(*) FROM files)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert_eq!((actors, files), (16, 15));
    let filter = super::query::Filter {
        path: Some("/models/m3/*".into()),
        ..Default::default()
    };
    let mut found = Vec::new();
    super::query::each::<super::StoreError>(&conn, &settings.path, &filter, |f| {
        found.push((f.seq, f.action, f.pid));
        Ok(())
    })
    .expect("query");
    let want: Vec<(i64, String, Option<i64>)> = (1..=61u64)
        .map(|seq| event(seq, now))
        .enumerate()
        .filter(|(_, e)| {
            e.file
                .as_ref()
                .and_then(|f| f.path.as_ref())
                .is_some_and(|p| p.to_lossy().starts_with("/models/m3/"))
        })
        .map(|(i, e)| {
            let r = Row::of(&e);
            (i as i64 + 1, r.action.to_owned(), r.actor.map(|a| a.pid))
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(found, want);
}
