//! Test stores for the readers (`query`, `timeline`, `stats`): rows with
//! only the columns a test cares about, inserted directly (no chain: the
//! readers never check it).

use std::path::{Path, PathBuf};

use super::{
    query::Found,
    schema::{self, Access},
};

/// A record by `pid` (started at `start`, child of `ppid`) at `time_ns`.
pub fn by(seq: i64, time_ns: i64, action: &str, pid: i64, start: i64, ppid: i64) -> Found {
    Found {
        seq,
        time_ns,
        action: action.into(),
        severity: "info".into(),
        pid: Some(pid),
        pid_start_ns: Some(start),
        ppid: Some(ppid),
        uid: Some(0),
        comm: Some(format!("p{pid}")),
        ..Found::default()
    }
}

/// A store at `dir/audit.db` holding `rows`; a row without record bytes
/// gets `{"seq":N}` and a newline.
pub fn store(dir: &Path, rows: &[Found]) -> PathBuf {
    let path = dir.join("audit.db");
    let conn = schema::open(&path, Access::Write).expect("create");
    for r in rows {
        conn.execute(
            "INSERT INTO records (seq, time_ns, action, severity, pid, pid_start_ns, ppid, uid, \
             comm, exe, container, path, weight_set, bytes, detection, record, mac) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             zeroblob(32))",
            rusqlite::params![
                r.seq,
                r.time_ns,
                r.action,
                r.severity,
                r.pid,
                r.pid_start_ns,
                r.ppid,
                r.uid,
                r.comm,
                r.exe,
                r.container,
                r.path,
                r.weight_set,
                r.bytes,
                r.detection,
                if r.record.is_empty() {
                    format!("{{\"seq\":{}}}\n", r.seq).into_bytes()
                } else {
                    r.record.clone()
                },
            ],
        )
        .expect("insert");
    }
    path
}
