//! The audit store (issue 10): a real agent keeps every record it writes
//! in its SQLite store, indexed by who read what; `weightwarden verify`
//! finds an attacker's edits made with the `sqlite3` CLI (changed, removed,
//! inserted and reordered records, a cut tail) at the record where they
//! happened; a `kill -9` loses nothing that was committed; a full disk is
//! counted, not fatal; a store that cannot be used stops start-up with
//! exit 2 and says why.
//!
//! Every other test's agent keeps a store too, which its health check
//! compares with its JSON lines output, byte for byte, and verifies
//! (`tests/src/lib.rs`).

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tests::{SensorProcess, binary, write_file};

/// Runs `weightwarden verify --db DB` with `extra`; its exit code and
/// stdout and stderr.
fn verify(db: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(binary())
        .arg("verify")
        .arg("--db")
        .arg(db)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `sqlite3 DB SQL`, as an attacker with write access to the file would.
fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A store written by a real agent that saw `cat` read a 1 MiB weight file
/// `reads` times; returns the store's directory and the cats' pids.
fn recorded_store(reads: usize) -> (tempfile::TempDir, PathBuf, Vec<u32>) {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let keep = tempfile::tempdir().unwrap();
    let db = keep.path().join("audit.db");
    let sensor = SensorProcess::start(&[models.path()], &["--store", db.to_str().unwrap()]);
    let pids = (0..reads)
        .map(|_| {
            tests::run(
                Command::new("cat")
                    .arg(&weights)
                    .stdout(std::process::Stdio::null()),
            )
        })
        .collect();
    // The health check at stop compares the store with the output, byte
    // for byte, and verifies it.
    let (status, records) = sensor.stop();
    assert!(status.success());
    let stored = tests::store_records(&db).unwrap();
    assert_eq!(
        stored.iter().filter(|&&b| b == b'\n').count(),
        records.len()
    );
    (keep, db, pids)
}

#[test]
fn a_real_agents_store_holds_every_record_indexed_and_verifies() {
    let (_keep, db, pids) = recorded_store(3);
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    // The columns responders search by: each cat's read, with its bytes
    // and the file's path.
    for pid in &pids {
        let row = sqlite3(
            &db,
            &format!(
                "SELECT action, comm, bytes, path LIKE '%llama.safetensors' FROM audit WHERE pid = {pid} AND action = 'read'"
            ),
        );
        assert_eq!(row, "read|cat|1048576|1", "pid {pid}");
    }
    // The key is the owner's alone.
    let key = db.with_extension("key");
    let mode = fs::metadata(&key).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn tampering_with_sqlite3_is_found_at_the_record_it_touched() {
    let cases: &[(&str, &str)] = &[
        (
            "UPDATE records SET record = replace(record, 'cat', 'dog') WHERE seq = 5",
            "record 5 does not match",
        ),
        (
            "DELETE FROM records WHERE seq = 5",
            "records 5 to 5 are missing",
        ),
        (
            // Insert a forged record at 5, moving the rest up.
            "UPDATE records SET seq = seq + 100000 WHERE seq >= 5; \
             UPDATE records SET seq = seq - 99999 WHERE seq > 100000; \
             INSERT INTO records (seq, time_ns, action, severity, record, mac) \
             SELECT 5, time_ns, action, severity, record, mac FROM records WHERE seq = 4",
            "record 5 does not match",
        ),
        (
            // Swap two records.
            "UPDATE records SET seq = -1 WHERE seq = 5; \
             UPDATE records SET seq = 5 WHERE seq = 6; \
             UPDATE records SET seq = 6 WHERE seq = -1",
            "record 5 does not match",
        ),
    ];
    let (keep, db, _) = recorded_store(2);
    for (sql, named) in cases {
        let copy = keep.path().join("copy.db");
        fs::copy(&db, &copy).unwrap();
        fs::copy(db.with_extension("key"), copy.with_extension("key")).unwrap();
        sqlite3(&copy, sql);
        let (code, out) = verify(&copy, &[]);
        assert_eq!(code, 1, "{sql}: {out}");
        assert!(out.contains(named), "{sql}: {out}");
    }
    // A cut tail: the store's head names what is gone.
    let last: u64 = sqlite3(&db, "SELECT max(seq) FROM records")
        .parse()
        .unwrap();
    sqlite3(
        &db,
        &format!("DELETE FROM records WHERE seq > {}", last - 3),
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "ends at record {} but its head says {last}",
            last - 3
        )),
        "{out}"
    );
}

#[test]
fn a_killed_agent_loses_nothing_it_committed_and_the_next_one_chains_on() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 16);
    let keep = tempfile::tempdir().unwrap();
    let db = keep.path().join("audit.db");
    let store = ["--store", db.to_str().unwrap()];
    let sensor = SensorProcess::start(&[models.path()], &store);
    // Records keep coming while the agent is killed.
    let mut load = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while :; do cat {} > /dev/null; done",
            weights.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let written = sensor.kill_hard();
    let _ = load.kill();
    let _ = load.wait();
    assert!(written.len() > 20, "{}", written.len());
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "after kill -9: {out}");
    let kept: u64 = sqlite3(&db, "SELECT count(*) FROM records")
        .parse()
        .unwrap();
    assert!(kept > 0, "{out}");
    // The next agent chains on; the whole store verifies.
    let sensor = SensorProcess::start(&[models.path()], &store);
    let (status, _) = sensor.stop();
    assert!(status.success());
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "after the restart: {out}");
    let now: u64 = sqlite3(&db, "SELECT count(*) FROM records")
        .parse()
        .unwrap();
    assert!(now > kept, "{kept} then {now}");
}

#[test]
fn a_heartbeats_chain_head_proves_a_tail_cut_the_store_itself_hides() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 16);
    let keep = tempfile::tempdir().unwrap();
    let db = keep.path().join("audit.db");
    let sensor = SensorProcess::start(
        &[models.path()],
        &["--store", db.to_str().unwrap(), "--heartbeat-interval", "1"],
    );
    let cat = || {
        tests::run(
            Command::new("cat")
                .arg(&weights)
                .stdout(std::process::Stdio::null()),
        )
    };
    let first = cat();
    // A heartbeat after the cat's records were committed: the SIEM's copy.
    let heartbeat = sensor.wait_for("a heartbeat with a head", Duration::from_secs(10), |r| {
        r["action"] == "heartbeat"
            && r["sensor"]["store_head"]
                .as_str()
                .and_then(|h| h.split_once(':'))
                .and_then(|(seq, _)| seq.parse::<u64>().ok())
                .is_some_and(|seq| seq >= 4)
    });
    let head = heartbeat["sensor"]["store_head"]
        .as_str()
        .unwrap()
        .to_owned();
    let head_seq: u64 = head.split_once(':').unwrap().0.parse().unwrap();
    for _ in 0..3 {
        cat();
    }
    let (status, _) = sensor.stop();
    assert!(status.success());
    // Intact, and the SIEM's head is in it.
    let (code, out) = verify(&db, &["--head", &head]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&db, &["--head", "1:00"]);
    assert_eq!(code, 2, "a head that is no head: {out}");
    // An attacker without the key cuts everything from the first cat's
    // records on and moves the store's own head back to match: the store
    // is consistent with itself...
    let cut = sqlite3(
        &db,
        &format!("SELECT min(seq) FROM audit WHERE pid = {first}"),
    )
    .parse::<u64>()
    .unwrap();
    assert!(cut <= head_seq, "{cut} {head_seq}");
    let kept = cut - 1;
    sqlite3(
        &db,
        &format!(
            "DELETE FROM records WHERE seq > {kept}; \
             UPDATE meta SET value = '{kept}:' || hex(mac) FROM records \
             WHERE meta.key = 'head' AND records.seq = {kept}"
        ),
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "the store alone cannot tell: {out}");
    // ...but not with the head the heartbeat carried out of the host.
    let (code, out) = verify(&db, &["--head", &head]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "ends at record {kept} but its head says {head_seq}"
        )),
        "{out}"
    );
}

#[test]
fn retention_in_a_real_agent_cuts_the_oldest_and_the_store_still_verifies() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let keep = tempfile::tempdir().unwrap();
    let db = keep.path().join("audit.db");
    let store = ["--store", db.to_str().unwrap()];
    // Over 2 MiB of records (each cat makes six, two of them detections:
    // fewer than detect.max_per_minute), by an agent without a size bound.
    let sensor = SensorProcess::start(&[models.path()], &store);
    tests::run(Command::new("sh").arg("-c").arg(format!(
        "for i in $(seq 250); do cat {} > /dev/null; done",
        weights.display()
    )));
    let (status, _) = sensor.stop();
    assert!(status.success());
    let before: u64 = sqlite3(&db, "SELECT count(*) FROM records")
        .parse()
        .unwrap();
    let bytes = |db: &Path| -> u64 {
        sqlite3(
            db,
            "SELECT (page_count - freelist_count) * page_size \
             FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
        )
        .parse()
        .unwrap()
    };
    assert!(bytes(&db) > 2 << 20, "{}", bytes(&db));
    // The next agent is bound to 1 MiB: it cuts the oldest at start-up.
    let sensor = SensorProcess::start_with_config(
        &[models.path()],
        &store,
        "[store]\nmax_bytes = 1048576\n",
    );
    let (status, records) = sensor.stop();
    assert!(status.success());
    let stop = records.last().unwrap();
    let pruned = stop["sensor"]["store"]["pruned"].as_u64().unwrap();
    assert!(pruned > 0, "{}", stop["sensor"]);
    assert!(bytes(&db) <= 1 << 20, "{}", bytes(&db));
    // What is left is the newest, numbered on from the cut, and verifies.
    let (first, last, count): (u64, u64, u64) = {
        let row = sqlite3(&db, "SELECT min(seq), max(seq), count(*) FROM records");
        let v: Vec<u64> = row.split('|').map(|n| n.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    };
    assert_eq!(first, pruned + 1);
    assert_eq!(count, last - pruned);
    assert!(
        last > before,
        "the second agent's records: {before} then {last}"
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("records {first} to {last}")) && out.contains("retention"),
        "{out}"
    );
    // The hourly sums lost the cut records with them.
    let summed: u64 = sqlite3(&db, "SELECT sum(records) FROM hourly")
        .parse()
        .unwrap();
    assert_eq!(summed, count);
}

#[test]
fn a_full_disk_is_counted_and_the_agent_runs_on() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let db = mnt.path().join("audit.db");
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let mut sensor = SensorProcess::start(&[models.path()], &["--store", db.to_str().unwrap()]);
    sensor.expect_loss();
    sensor.expect_error("cannot write to the audit store");
    // Thousands of records: far more than 512 KiB holds.
    tests::run(Command::new("sh").arg("-c").arg(format!(
        "for i in $(seq 3000); do cat {} > /dev/null; done",
        weights.display()
    )));
    let (status, records, log) = sensor.stop_with_log();
    assert!(status.success(), "{log}");
    let stop = records.last().unwrap();
    assert_eq!(stop["action"], "sensor_stop");
    let lost = stop["sensor"]["store"]["lost_disk_full"].as_u64().unwrap();
    assert!(lost > 0, "{}", stop["sensor"]);
    assert!(log.contains("the disk is full"), "{log}");
    // What it kept still verifies.
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_store_that_cannot_be_used_stops_start_up_and_says_why() {
    let models = tempfile::tempdir().unwrap();
    let keep = tempfile::tempdir().unwrap();
    let run = |db: &Path| {
        let out = Command::new(binary())
            .args([
                "run",
                "--state-dir",
                "none",
                "--output",
                "stdout",
                "--watch",
            ])
            .arg(models.path())
            .arg("--store")
            .arg(db)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // In use by another agent.
    let db = keep.path().join("audit.db");
    let sensor = SensorProcess::start(&[models.path()], &["--store", db.to_str().unwrap()]);
    let (code, err) = run(&db);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("in use by another weightwarden agent"),
        "{err}"
    );
    drop(sensor);
    // Its key readable by others.
    let key = db.with_extension("key");
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (code, err) = run(&db);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("readable by others") && err.contains("chmod 600"),
        "{err}"
    );
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Written by a newer weightwarden.
    sqlite3(&db, "PRAGMA user_version = 99");
    let (code, err) = run(&db);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("schema version 99, newer"), "{err}");
    // Not a database at all.
    let junk = keep.path().join("junk.db");
    fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let (code, err) = run(&junk);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a SQLite database"), "{err}");
    // verify names a missing store and a wrong key.
    let (code, out) = verify(&keep.path().join("none.db"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no audit store at"), "{out}");
}

/// `weightwarden ARGS`: exit code, stdout, stderr.
fn weightwarden(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_version_1_copy_is_refused_by_readers_until_migrated_then_answers_the_same() {
    let (keep, db, _) = recorded_store(2);
    // The same records in a version-1 store, as the first store's agents
    // wrote them: every field on the record row, its chain as it was.
    let old = keep.path().join("old.db");
    let v1 = sensor::store::schema::V1;
    sqlite3(
        &old,
        &format!(
            "{v1}; ATTACH '{}' AS new; \
             INSERT INTO records (seq, time_ns, action, severity, pid, pid_start_ns, ppid, uid, \
             exe, comm, container, path, dev, ino, weight_set, detection, bytes, record, mac) \
             SELECT seq, time_ns, action, severity, pid, pid_start_ns, ppid, uid, exe, comm, \
             container, path, dev, ino, weight_set, detection, bytes, record, mac \
             FROM new.audit ORDER BY seq; \
             INSERT INTO meta SELECT * FROM new.meta; PRAGMA user_version = 1;",
            db.display()
        ),
    );
    let old_arg = old.to_str().unwrap();
    let key = db.with_extension("key");
    let key_arg = key.to_str().unwrap();
    let (code, _, err) = weightwarden(&["query", "--db", old_arg, "--json"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("schema version 1") && err.contains("weightwarden migrate --db"),
        "{err}"
    );
    let (code, out, err) = weightwarden(&["migrate", "--db", old_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrated from schema version 1 to"), "{out}");
    // The chain is the one the agent made, and every answer the same.
    let (code, migrated) = verify(&old, &["--key", key_arg]);
    assert_eq!(code, 0, "{migrated}");
    let (_, original) = verify(&db, &[]);
    let head = |text: &str| text.split(" head ").nth(1).unwrap().to_owned();
    assert_eq!(head(&migrated), head(&original));
    let db_arg = db.to_str().unwrap();
    for args in [
        &["query", "--json", "--limit", "0"][..],
        &["query", "--json", "--path", "*llama*", "--exe", "*/cat"],
        &["stats", "--json", "--since", "1h"],
        &["query", "--csv", "--action", "read"],
    ] {
        let with = |db: &str| {
            let mut all = vec![args[0], "--db", db];
            all.extend(&args[1..]);
            weightwarden(&all)
        };
        let (code, out, err) = with(old_arg);
        assert_eq!(code, 0, "{args:?}: {err}");
        let (_, want, _) = with(db_arg);
        // `stats` names its window, which moved between the two runs.
        let strip = |s: &str| s.split(",\"since\"").next().unwrap_or(s).to_owned();
        assert_eq!(strip(&out), strip(&want), "{args:?}");
        assert!(!out.is_empty(), "{args:?}");
    }
    let (code, out, _) = weightwarden(&["migrate", "--db", old_arg]);
    assert_eq!(code, 0);
    assert!(out.contains("already at schema version"), "{out}");
    // Under a running agent: refused, by name.
    let models = tempfile::tempdir().unwrap();
    // With its key beside it, where the agent looks.
    fs::copy(&key, old.with_extension("key")).unwrap();
    let sensor = SensorProcess::start(&[models.path()], &["--store", old_arg]);
    let (code, _, err) = weightwarden(&["migrate", "--db", old_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("in use by another weightwarden agent"),
        "{err}"
    );
    let (status, _) = sensor.stop();
    assert!(status.success());
}
