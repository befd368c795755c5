//! Test stores for the readers (`query`, `timeline`, `stats`): rows with
//! only the columns a test cares about, inserted as the writer inserts
//! them but without the chain (the readers never check it).

use std::path::{Path, PathBuf};

use super::{
    insert::Inserter,
    query::Found,
    row::{Actor, FileKey, Row},
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

/// A store at `dir/audit.db` holding `rows`, put in as the writer puts
/// records in; a row without record bytes gets `{"seq":N}` and a newline.
pub fn store(dir: &Path, rows: &[Found]) -> PathBuf {
    let path = dir.join("audit.db");
    let conn = schema::open(&path, Access::Write).expect("create");
    let mut inserter = Inserter::default();
    for r in rows {
        let record = if r.record.is_empty() {
            format!("{{\"seq\":{}}}\n", r.seq).into_bytes()
        } else {
            r.record.clone()
        };
        inserter
            .record(&conn, r.seq as u64, &row_of(r, &record), &record, &[0; 32])
            .expect("insert");
    }
    inserter.finish_batch(&conn).expect("sums");
    path
}

/// The columns the writer would have taken from `found`'s event.
fn row_of(found: &Found, record: &[u8]) -> Row {
    let leak = |s: &str| &*Box::leak(s.to_owned().into_boxed_str());
    let opens = serde_json::from_slice::<serde_json::Value>(record)
        .ok()
        .and_then(|v| v.pointer("/access/opens").and_then(|o| o.as_i64()));
    Row {
        time_ns: found.time_ns,
        action: leak(&found.action),
        severity: leak(&found.severity),
        actor: found.pid.map(|pid| Actor {
            pid,
            start_ns: found.pid_start_ns,
            ppid: found.ppid,
            uid: found.uid,
            exe: found.exe.clone(),
            comm: found.comm.clone(),
            container: found.container.clone(),
        }),
        file: found.path.as_ref().map(|p| FileKey {
            dev: 0,
            ino: 0,
            path: Some(p.clone()),
        }),
        weight_set: found.weight_set.clone(),
        detection: found.detection.as_deref().map(leak),
        bytes: found.bytes,
        opens,
    }
}
