//! Process trees from a test store: ancestors, descendants, reused pids.

use super::*;
use crate::store::{
    fixture::{by, store},
    query::Found,
    schema::{self, Access},
};

/// A shell (pid 200) run from bash (100, itself from 50), whose pipeline
/// children are 201 and 202 (202 forked 203); pid 200 and 201 are reused.
fn sample(dir: &Path) -> std::path::PathBuf {
    store(
        dir,
        &[
            at(1, 5, "exec", 50, 5, 1),
            at(2, 10, "exec", 100, 10, 50),
            // An earlier process with pid 200, gone before the one asked about.
            at(3, 100, "exec", 200, 100, 100),
            at(4, 150, "exit", 200, 100, 100),
            at(5, 1000, "exec", 200, 1000, 100),
            at(6, 1100, "exec", 201, 1100, 200),
            at(7, 1101, "exec", 202, 1100, 200),
            Found {
                path: Some("/models/llama.safetensors".into()),
                bytes: Some(4096),
                ..at(8, 1200, "read", 201, 1100, 200)
            },
            at(9, 1300, "exec", 203, 1150, 202),
            at(10, 1400, "exit", 201, 1100, 200),
            at(11, 1500, "exit", 203, 1150, 202),
            at(12, 1600, "exit", 202, 1100, 200),
            // The same shell, its start time 5 µs off (a resampled clock).
            Found {
                pid_start_ns: Some(1000 * S + 5_000),
                ..at(13, 5000, "exit", 200, 1000, 100)
            },
            // pid 201 again, long after: its ppid 200 is no longer the shell.
            at(14, 9000, "exec", 201, 9000, 200),
            // bash goes on after the shell: not the tree's.
            at(15, 9999, "exec", 100, 10, 50),
            // Unrelated.
            at(16, 1200, "exec", 300, 1200, 999),
        ],
    )
}

/// Test times are in seconds; the same-process tolerance is far below.
const S: i64 = 1_000_000_000;

/// `by` with times in seconds.
fn at(seq: i64, time_s: i64, action: &str, pid: i64, start_s: i64, ppid: i64) -> Found {
    by(seq, time_s * S, action, pid, start_s * S, ppid)
}

fn open(db: &Path) -> Connection {
    schema::open(db, Access::Read).expect("open")
}

#[test]
fn a_pids_tree_has_its_ancestors_and_descendants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let conn = open(&db);
    let tree = tree(&conn, &db, &Root::Pid(200), Window::default())
        .expect("tree")
        .expect("found");
    let shape: Vec<(i64, &str, i32)> = tree
        .members
        .iter()
        .map(|m| (m.process.pid, m.relation.name(), m.depth))
        .collect();
    assert_eq!(
        shape,
        [
            (200, "self", 0),
            (100, "ancestor", -1),
            (50, "ancestor", -2),
            (201, "descendant", 1),
            (202, "descendant", 1),
            (203, "descendant", 2),
        ]
    );
    let root = &tree.members[0].process;
    assert_eq!(root.start, Some((1000 * S, 1000 * S + 5_000)));
    assert_eq!((root.first_ns, root.exit_ns), (1000 * S, Some(5000 * S)));
    assert_eq!(tree.earlier.len(), 1);
    assert_eq!(tree.earlier[0].start, Some((100 * S, 100 * S)));
    let seqs: Vec<(i64, usize)> = records(&conn, &db, &tree, Window::default())
        .expect("records")
        .into_iter()
        .map(|(i, f)| (f.seq, i))
        .collect();
    assert_eq!(
        seqs,
        [
            (1, 2),
            (2, 1),
            (5, 0),
            (6, 3),
            (7, 4),
            (8, 3),
            (9, 5),
            (10, 3),
            (11, 5),
            (12, 4),
            (13, 0)
        ]
    );
}

#[test]
fn a_window_picks_the_process_and_bounds_its_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sample(dir.path());
    let conn = open(&db);
    let early = Window {
        since_ns: None,
        until_ns: Some(500 * S),
    };
    let tree = tree(&conn, &db, &Root::Pid(200), early)
        .expect("tree")
        .expect("found");
    assert_eq!(tree.members[0].process.start, Some((100 * S, 100 * S)));
    assert!(tree.earlier.is_empty());
    let late = Window {
        since_ns: Some(1150 * S),
        until_ns: Some(1450 * S),
    };
    let tree = super::tree(&conn, &db, &Root::Pid(201), late)
        .expect("tree")
        .expect("found");
    let seqs: Vec<i64> = records(&conn, &db, &tree, late)
        .expect("records")
        .into_iter()
        .map(|(_, f)| f.seq)
        .collect();
    assert_eq!(seqs, [8, 10]);
    assert_eq!(
        super::tree(&conn, &db, &Root::Pid(4242), Window::default()).expect("tree"),
        None
    );
}

#[test]
fn a_containers_tree_is_its_processes_and_their_kin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inside = |f: Found| Found {
        container: Some("3f2a9c0d11aa".into()),
        ..f
    };
    let db = store(
        dir.path(),
        &[
            at(1, 10, "exec", 70, 10, 1),
            inside(at(2, 20, "exec", 71, 20, 70)),
            inside(at(3, 30, "exec", 72, 30, 71)),
            at(4, 40, "exec", 73, 40, 72),
            at(5, 50, "exec", 74, 50, 1),
        ],
    );
    let conn = open(&db);
    let tree = tree(
        &conn,
        &db,
        &Root::Container("3f2a".into()),
        Window::default(),
    )
    .expect("tree")
    .expect("found");
    let shape: Vec<(i64, &str)> = tree
        .members
        .iter()
        .map(|m| (m.process.pid, m.relation.name()))
        .collect();
    assert_eq!(
        shape,
        [
            (71, "self"),
            (72, "self"),
            (70, "ancestor"),
            (73, "descendant")
        ]
    );
}
