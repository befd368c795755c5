//! The kernel rows compiled from real policies over real files.

use std::fs;

use super::*;
use crate::decide::policy;

fn compile(text: &str) -> (tempfile::TempDir, Policy) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    fs::create_dir_all(dir.path().join("b")).expect("mkdir");
    fs::write(dir.path().join("a/x.gguf"), b"x").expect("write");
    fs::write(dir.path().join("b/y.gguf"), b"y").expect("write");
    let text = text.replace("DIR", &dir.path().display().to_string());
    let path = dir.path().join("policy.toml");
    fs::write(&path, text).expect("write");
    let checked = policy::load(&path).expect("load");
    let policy = checked.policy.expect("a valid policy");
    (dir, policy)
}

const TWO_SETS: &str = r#"
mode = "enforce"
[weights.a]
paths = ["DIR/a"]
default = "deny"
[weights.b]
paths = ["DIR/b"]
default = "allow"
[[rules]]
weights = ["a"]
uid = [0]
operations = ["read"]
action = "allow"
[[rules]]
weights = ["b"]
uid = [1000]
operations = ["mmap"]
action = "kill"
"#;

fn subject(uid: u32) -> Subject<'static> {
    Subject {
        uid,
        gid: uid,
        ..Subject::default()
    }
}

#[test]
fn a_row_holds_the_sets_that_stop_each_operation() {
    let (_dir, mut p) = compile(TWO_SETS);
    p.generation = 7;
    let (read, mmap) = (enforce::op::READ as usize, enforce::op::MMAP as usize);

    let root = verdict_row(&p, &subject(0));
    assert_eq!(root.generation, 7);
    assert_eq!((root.uid, root.gid), (0, 0));
    assert_eq!(root.stop[read], 0, "rule 1 allows root to read a");
    assert_eq!(root.stop[mmap], 0b01, "a's default denies root's maps");
    let (open, write) = (enforce::op::OPEN as usize, enforce::op::WRITE as usize);
    assert_eq!((root.stop[open], root.stop[write]), (0b01, 0b01));

    let user = verdict_row(&p, &subject(1000));
    assert_eq!(user.stop[read], 0b01, "a's default denies uid 1000's reads");
    assert_eq!(
        user.stop[mmap], 0b11,
        "a's default and rule 2 (b) stop its maps"
    );

    let other = verdict_row(&p, &subject(42));
    assert_eq!((other.stop[read], other.stop[mmap]), (0b01, 0b01));
}

#[test]
fn an_unjudged_process_is_stopped_wherever_anyone_would_be() {
    let (_dir, p) = compile(TWO_SETS);
    let stop = unjudged_stop(&p);
    assert_eq!(stop[enforce::op::READ as usize], 0b01, "b stops no reader");
    assert_eq!(
        stop[enforce::op::MMAP as usize],
        0b11,
        "rule 2 stops maps of b"
    );
}

#[test]
fn alert_and_allow_never_stop() {
    let (_dir, p) = compile(
        r#"
[weights.a]
paths = ["DIR/a"]
default = "alert"
"#,
    );
    assert_eq!(unjudged_stop(&p), [0; enforce::op::COUNT]);
    assert_eq!(verdict_row(&p, &subject(0)).stop, [0; enforce::op::COUNT]);
}

#[test]
fn an_executable_gets_its_row_at_exec_only_where_it_alone_decides() {
    let (dir, p) = compile(
        r#"
mode = "enforce"
[weights.a]
paths = ["DIR/a"]
default = "deny"
[[rules]]
weights = ["a"]
exe = ["DIR/a/x.gguf"]
action = "allow"
"#,
    );
    let x = crate::enrich::watch::identity(&dir.path().join("a/x.gguf")).expect("stat");
    let rows: HashMap<FileKey, Option<ProcessVerdict>> = exe_rows(&p).into_iter().collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    // The rule's operations default to the read ones: writes fall to the
    // set's default.
    assert_eq!(
        rows[&x].map(|r| r.stop),
        Some([0, 0, 0, 1, 0]),
        "the named one reads (and copies), and may not write"
    );
    assert_eq!(
        rows[&enforce::ANY_OTHER_EXE].map(|r| r.stop),
        Some([1; 5]),
        "any other is denied by the default"
    );

    // A rule about users: only the agent can judge who runs what.
    let (_dir, p) = compile(TWO_SETS);
    let rows = exe_rows(&p);
    assert_eq!(rows, vec![(enforce::ANY_OTHER_EXE, None)]);
}
