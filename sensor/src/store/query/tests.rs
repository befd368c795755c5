//! Filters to SQL, and what they select from a real (test) store.

use rusqlite::types::Value;

use super::*;
use crate::store::{
    fixture::{by, store},
    schema::{self, Access},
};

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn no_filter_selects_everything_in_time_order() {
    let sql = Filter::default().sql();
    assert_eq!(
        sql.text,
        format!(
            "SELECT {COLUMNS} FROM records r LEFT JOIN actors a ON a.id = r.actor \
             LEFT JOIN files f ON f.id = r.file ORDER BY r.time_ns, r.seq"
        )
    );
    assert!(sql.params.is_empty());
}

#[test]
fn every_filter_is_a_bound_parameter() {
    let filter = Filter {
        since_ns: Some(10),
        until_ns: Some(20),
        path: Some("/models/*".into()),
        weight_set: Some("llama".into()),
        pid: Some(42),
        exe: Some("*/python3*".into()),
        uid: Some(1000),
        container: Some("ab*c".into()),
        actions: vec!["read".into(), "copy".into()],
        min_severity: Some(Severity::High),
        detection: Some("bulk_read".into()),
        limit: Some(5),
    };
    let sql = filter.sql();
    assert_eq!(
        sql.text,
        format!(
            "SELECT {COLUMNS} FROM records r INDEXED BY records_file \
             LEFT JOIN actors a ON a.id = r.actor LEFT JOIN files f ON f.id = r.file \
             WHERE r.time_ns >= ? AND r.time_ns <= ? AND \
             r.file IN (SELECT id FROM files WHERE path GLOB ?) AND \
             r.weight_set IS NOT NULL AND r.weight_set = ? AND \
             r.actor IN (SELECT id FROM actors WHERE pid = ?) AND \
             r.actor IN (SELECT id FROM actors WHERE exe GLOB ?) AND \
             r.actor IN (SELECT id FROM actors WHERE uid = ?) AND \
             r.actor IN (SELECT id FROM actors WHERE container GLOB ?) AND \
             r.action IN (?, ?) AND r.severity <> 'info' AND r.severity IN (?, ?) AND \
             r.detection IS NOT NULL AND r.detection = ? ORDER BY r.time_ns, r.seq LIMIT ?"
        )
    );
    assert_eq!(
        sql.params,
        vec![
            Value::Integer(10),
            Value::Integer(20),
            text("/models/*"),
            text("llama"),
            Value::Integer(42),
            text("*/python3*"),
            Value::Integer(1000),
            // A container id is a prefix, its own `*` a literal one.
            text("ab[*]c*"),
            text("read"),
            text("copy"),
            text("high"),
            text("critical"),
            text("bulk_read"),
            Value::Integer(5),
        ]
    );
}

#[test]
fn glob_literal_escapes_each_special_character() {
    assert_eq!(glob_literal("a*b?c[d]e"), "a[*]b[?]c[[]d]e");
    assert_eq!(glob_literal("3f2a"), "3f2a");
}

/// A store with three reads of two files by two users, a detection and a
/// container's exec.
fn sample(dir: &std::path::Path) -> std::path::PathBuf {
    let read = |seq, t, pid, path: &str, uid, bytes| Found {
        path: Some(path.into()),
        uid: Some(uid),
        bytes: Some(bytes),
        exe: Some("/usr/bin/cat".into()),
        ..by(seq, t, "read", pid, 1, 1)
    };
    store(
        dir,
        &[
            // Out of time order in the chain: the output is by time.
            read(1, 300, 10, "/models/llama/a.safetensors", 0, 100),
            read(2, 100, 11, "/models/llama/b.safetensors", 65534, 200),
            read(3, 200, 12, "/models/qwen/c.gguf", 0, 300),
            Found {
                severity: "high".into(),
                detection: Some("bulk_read".into()),
                path: Some("/models/llama/a.safetensors".into()),
                ..by(4, 300, "detection", 10, 1, 1)
            },
            Found {
                container: Some("3f2a9c0d11aa".into()),
                ..by(5, 400, "exec", 20, 1, 1)
            },
        ],
    )
}

fn seqs(db: &std::path::Path, filter: &Filter) -> Vec<i64> {
    let conn = schema::open(db, Access::Read).expect("open");
    let mut out = Vec::new();
    each::<StoreError>(&conn, db, filter, |f| {
        out.push(f.seq);
        Ok(())
    })
    .expect("query");
    out
}

#[test]
fn filters_select_the_matching_records_in_time_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let all = Filter::default();
    assert_eq!(seqs(&db, &all), [2, 3, 1, 4, 5]);
    let path = |glob: &str| Filter {
        path: Some(glob.into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &path("*llama*")), [2, 1, 4]);
    assert_eq!(seqs(&db, &path("/models/*/c.gguf")), [3]);
    // A quote is part of the pattern, not of the statement.
    assert_eq!(seqs(&db, &path("x' OR '1'='1")), Vec::<i64>::new());
    let window = Filter {
        since_ns: Some(200),
        until_ns: Some(300),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &window), [3, 1, 4]);
    let user = Filter {
        uid: Some(65534),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &user), [2]);
    let severe = Filter {
        min_severity: Some(Severity::Medium),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &severe), [4]);
    let container = Filter {
        container: Some("3f2a".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &container), [5]);
    let actions = Filter {
        actions: vec!["exec".into(), "detection".into()],
        limit: Some(1),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &actions), [4]);
    let detection = Filter {
        detection: Some("bulk_read".into()),
        pid: Some(10),
        ..Filter::default()
    };
    assert_eq!(seqs(&db, &detection), [4]);
}

#[test]
fn a_match_carries_its_columns_and_record_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let conn = schema::open(&db, Access::Read).expect("open");
    let mut found = Vec::new();
    let filter = Filter {
        pid: Some(11),
        ..Filter::default()
    };
    each::<StoreError>(&conn, &db, &filter, |f| {
        found.push(f);
        Ok(())
    })
    .expect("query");
    assert_eq!(
        found,
        [Found {
            path: Some("/models/llama/b.safetensors".into()),
            uid: Some(65534),
            bytes: Some(200),
            exe: Some("/usr/bin/cat".into()),
            record: b"{\"seq\":2}\n".to_vec(),
            ..by(2, 100, "read", 11, 1, 1)
        }]
    );
}

/// The plan SQLite chooses for `filter`, as EXPLAIN QUERY PLAN says it.
fn plan(db: &std::path::Path, filter: &Filter) -> String {
    let conn = schema::open(db, Access::Read).expect("open");
    let sql = filter.sql();
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
        .expect("prepare");
    let rows = stmt
        .query_map(rusqlite::params_from_iter(sql.params), |r| {
            r.get::<_, String>(3)
        })
        .expect("plan");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("; ")
}

#[test]
fn each_searchable_filter_reads_through_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let cases = [
        (
            Filter {
                path: Some("/models/llama/*".into()),
                ..Filter::default()
            },
            "records_file (file=?); LIST SUBQUERY 1; SEARCH files USING COVERING INDEX files_path",
        ),
        (
            Filter {
                pid: Some(10),
                ..Filter::default()
            },
            "records_actor (actor=?); LIST SUBQUERY 1; SEARCH actors USING COVERING INDEX actors_pid",
        ),
        (
            Filter {
                container: Some("3f2a".into()),
                ..Filter::default()
            },
            "records_actor (actor=?); LIST SUBQUERY 1; SEARCH actors USING COVERING INDEX actors_container",
        ),
        (
            Filter {
                detection: Some("bulk_read".into()),
                ..Filter::default()
            },
            "records_detection",
        ),
        (
            Filter {
                since_ns: Some(1),
                ..Filter::default()
            },
            "records_time",
        ),
    ];
    for (filter, index) in cases {
        let plan = plan(&db, &filter);
        assert!(plan.contains(index), "{filter:?}: {plan}");
    }
}

#[test]
fn a_filter_on_files_or_actors_reads_their_records_within_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let day = |f: Filter| Filter {
        since_ns: Some(1),
        until_ns: Some(1000),
        ..f
    };
    let cases = [
        (
            day(Filter {
                path: Some("/models/llama/*".into()),
                ..Filter::default()
            }),
            "records_file (file=? AND time_ns>? AND time_ns<?)",
        ),
        (
            day(Filter {
                exe: Some("/usr/bin/*".into()),
                ..Filter::default()
            }),
            "records_actor (actor=? AND time_ns>? AND time_ns<?)",
        ),
        (
            day(Filter {
                container: Some("3f2a".into()),
                ..Filter::default()
            }),
            "records_actor (actor=? AND time_ns>? AND time_ns<?)",
        ),
        // Without a prefix, the files' paths are scanned: still few next
        // to the records of a window.
        (
            day(Filter {
                path: Some("*llama*".into()),
                ..Filter::default()
            }),
            "records_file (file=? AND time_ns>? AND time_ns<?)",
        ),
        (
            day(Filter {
                pid: Some(10),
                ..Filter::default()
            }),
            "records_actor (actor=? AND time_ns>? AND time_ns<?)",
        ),
    ];
    for (filter, index) in cases {
        let plan = plan(&db, &filter);
        assert!(plan.contains(index), "{filter:?}: {plan}");
    }
    // The same rows as without the hint.
    let hinted = day(Filter {
        path: Some("/models/llama/*".into()),
        ..Filter::default()
    });
    assert_eq!(seqs(&db, &hinted), [2, 1, 4]);
}
