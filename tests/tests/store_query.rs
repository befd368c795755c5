//! The responders' commands on a real agent's store: `query`, `timeline`
//! and `stats` answer with exactly the records the agent wrote — `--json`
//! byte for byte as its JSON lines output — for processes this test ran
//! (cats as root and as nobody, a shell pipeline, dd, a Python mmap), and
//! refuse bad input and unusable stores (missing, not a database, newer,
//! locked) with exit 2 and the reason.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{SensorProcess, binary, write_file};

const MIB: u64 = 1 << 20;
const QWEN_BYTES: u64 = 64 * 1024;

/// A store a real agent wrote while this test's processes read weights.
struct Recorded {
    _models: tempfile::TempDir,
    keep: tempfile::TempDir,
    db: PathBuf,
    /// Every record, as the agent's JSON lines output has it (the health
    /// check at stop compares the store with it byte for byte).
    lines: Vec<String>,
    llama: PathBuf,
    qwen: PathBuf,
    /// `cat llama` as root, and as uid 65534.
    root_cat: u32,
    nobody_cat: u32,
    /// `sh -c 'cat llama | gzip > out'`.
    sh: u32,
    dd: u32,
    python: u32,
}

impl Recorded {
    fn records(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The lines whose record `pred` takes, in time order (then the
    /// store's, which is the output's): what a reader must print.
    fn lines_where(&self, pred: impl Fn(&Value) -> bool) -> String {
        let mut picked: Vec<(i128, &String)> = self
            .lines
            .iter()
            .filter(|l| pred(&serde_json::from_str(l).unwrap()))
            .map(|l| {
                let r: Value = serde_json::from_str(l).unwrap();
                (tests::rfc3339_ns(r["time"].as_str().unwrap()), l)
            })
            .collect();
        picked.sort_by_key(|(t, _)| *t);
        picked.into_iter().map(|(_, l)| l.as_str()).collect()
    }

    /// The children `sh` forked, by comm.
    fn child(&self, comm: &str) -> u32 {
        let execs: Vec<u32> = self
            .records()
            .iter()
            .filter(|r| {
                r["action"] == "exec"
                    && r["process"]["ppid"] == self.sh
                    && r["process"]["comm"] == comm
            })
            .map(|r| r["process"]["pid"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            execs.len(),
            1,
            "{comm} children of sh {}: {execs:?}",
            self.sh
        );
        execs[0]
    }
}

/// A file that uid 65534 can read too.
fn public(path: &Path, size: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_file(path, size);
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Runs `weightwarden ARGS`; its exit code, stdout and stderr.
fn weightwarden(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `weightwarden ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = weightwarden(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

fn record() -> Recorded {
    let models = tempfile::tempdir().unwrap();
    fs::set_permissions(models.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let llama = models.path().join("llama/llama-3-8b.safetensors");
    let qwen = models.path().join("qwen/qwen-7b.gguf");
    public(&llama, MIB as usize);
    public(&qwen, QWEN_BYTES as usize);
    fs::set_permissions(llama.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(qwen.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    let keep = tempfile::tempdir().unwrap();
    let db = keep.path().join("audit.db");
    let db_arg = db.to_str().unwrap().to_owned();
    let sensor = SensorProcess::start(&[models.path()], &["--store", &db_arg]);

    let root_cat = tests::run(Command::new("cat").arg(&llama));
    // While the agent writes: a reader opens the store beside it.
    let pid = root_cat.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let live = loop {
        let out = ok(&["query", "--db", &db_arg, "--pid", &pid, "--action", "read"]);
        if !out.is_empty() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let read: Value = serde_json::from_str(&live).unwrap();
    assert_eq!(
        (
            read["process"]["pid"].as_u64(),
            read["access"]["bytes"].as_u64()
        ),
        (Some(u64::from(root_cat)), Some(MIB)),
        "{live}"
    );

    let nobody_cat = tests::run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(&llama),
    );
    let out = keep.path().join("llama.gz");
    let sh = tests::run(Command::new("sh").arg("-c").arg(format!(
        "cat {} | gzip > {}",
        llama.display(),
        out.display()
    )));
    let dd = tests::run(
        Command::new("dd")
            .arg(format!("if={}", qwen.display()))
            .args(["of=/dev/null", "bs=4096", "status=none"]),
    );
    let python = tests::python(
        "import mmap, sys\n\
         f = open(sys.argv[1], 'rb')\n\
         m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
         assert m[0] == 0",
        &[qwen.to_str().unwrap()],
    );
    for pid in [nobody_cat, sh, dd, python] {
        sensor.wait_exit(pid);
    }
    let (status, _) = sensor.stop();
    assert!(status.success());
    let all = tests::store_records(&db).unwrap();
    let lines = String::from_utf8(all)
        .unwrap()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect();
    Recorded {
        _models: models,
        keep,
        db,
        lines,
        llama,
        qwen,
        root_cat,
        nobody_cat,
        sh,
        dd,
        python,
    }
}

fn pid_of(r: &Value) -> Option<u32> {
    r["process"]["pid"].as_u64().map(|p| p as u32)
}

/// The bytes each process read of files whose path contains `part`, by
/// the `read` records in JSON lines: a process's reads may come in
/// several summaries (its first write flushes one: docs/events.md).
fn read_bytes(jsonl: &str, part: &str) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for r in jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
    {
        let path = r["file"]["path"].as_str().unwrap_or_default();
        if r["action"] == "read" && path.contains(part) {
            *out.entry(pid_of(&r).unwrap()).or_default() += r["access"]["bytes"].as_u64().unwrap();
        }
    }
    out
}

#[test]
fn query_prints_the_agents_own_records_for_each_filter() {
    let rec = record();
    let db = rec.db.to_str().unwrap();
    let pipe_cat = rec.child("cat");
    let llama = rec.llama.to_str().unwrap();

    // Who read this model in the last hour: the records, byte for byte.
    let got = ok(&[
        "query", "--db", db, "--json", "--path", "*llama*", "--since", "1h",
    ]);
    let of_llama = |r: &Value| {
        r["file"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("llama"))
    };
    let want = rec.lines_where(of_llama);
    assert_eq!(got, want);
    assert_eq!(
        read_bytes(&got, "llama"),
        BTreeMap::from([(rec.root_cat, MIB), (rec.nobody_cat, MIB), (pipe_cat, MIB)])
    );
    // A directory's glob; the default format off a terminal is JSON.
    let dir_glob = format!("{}/*", rec.llama.parent().unwrap().display());
    assert_eq!(ok(&["query", "--db", db, "--path", &dir_glob]), want);

    // By user: a uid, or a name.
    for user in ["65534", "nobody"] {
        let got = ok(&["query", "--db", db, "--user", user, "--action", "read"]);
        let want = rec.lines_where(|r| r["process"]["uid"] == 65534 && r["action"] == "read");
        assert_eq!(got, want, "--user {user}");
        assert_eq!(
            read_bytes(&got, "llama"),
            BTreeMap::from([(rec.nobody_cat, MIB)]),
            "--user {user}"
        );
    }
    // By pid, action, executable.
    let got = ok(&[
        "query",
        "--db",
        db,
        "--pid",
        &rec.dd.to_string(),
        "--action",
        "read",
    ]);
    let dd_reads = rec.lines_where(|r| pid_of(r) == Some(rec.dd) && r["action"] == "read");
    assert_eq!(got, dd_reads);
    assert_eq!(
        read_bytes(&got, "qwen"),
        BTreeMap::from([(rec.dd, QWEN_BYTES)])
    );
    let got = ok(&["query", "--db", db, "--exe", "*/dd", "--action", "read"]);
    assert_eq!(got, dd_reads);
    let got = ok(&[
        "query",
        "--db",
        db,
        "--pid",
        &rec.python.to_string(),
        "--action",
        "mmap",
        "--action",
        "read",
    ]);
    let want = rec.lines_where(|r| {
        pid_of(r) == Some(rec.python) && (r["action"] == "mmap" || r["action"] == "read")
    });
    assert_eq!(got, want);
    assert_eq!(got.lines().count(), 1, "{got}");
    assert!(got.contains("\"action\":\"mmap\""), "{got}");

    // CSV: the header, then one row per read, quoted where needed.
    let csv = ok(&[
        "query", "--db", db, "--csv", "--path", llama, "--action", "read",
    ]);
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some(
            "seq,time,action,severity,pid,ppid,uid,user,comm,exe,container,path,weight_set,\
             bytes,detection"
        )
    );
    let mut by_reader: BTreeMap<(u32, String, String), u64> = BTreeMap::new();
    for row in rows {
        let c: Vec<&str> = row.split(',').collect();
        assert_eq!(c.len(), 15, "{row}");
        assert_eq!((c[2], c[11]), ("read", llama), "{row}");
        let key = (c[4].parse().unwrap(), c[6].to_owned(), c[8].to_owned());
        *by_reader.entry(key).or_default() += c[13].parse::<u64>().unwrap();
    }
    let cat = |pid: u32, uid: &str| ((pid, uid.to_owned(), "cat".to_owned()), MIB);
    assert_eq!(
        by_reader,
        BTreeMap::from([
            cat(rec.root_cat, "0"),
            cat(rec.nobody_cat, "65534"),
            cat(pipe_cat, "0")
        ])
    );

    // A table for people.
    let dd_pid = rec.dd.to_string();
    let dd_bytes = QWEN_BYTES.to_string();
    let table = ok(&[
        "query", "--db", db, "--table", "--pid", &dd_pid, "--action", "read",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("time ") && lines[0].ends_with(" detection"),
        "{table}"
    );
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        row[1..],
        [
            "read",
            "info",
            dd_pid.as_str(),
            "dd",
            "root(0)",
            rec.qwen.to_str().unwrap(),
            dd_bytes.as_str(),
            "-"
        ]
    );

    // --limit: the earliest N, and a note that more matched.
    let (code, out, err) =
        weightwarden(&["query", "--db", db, "--path", "*llama*", "--limit", "1"]);
    assert_eq!(code, 0, "{err}");
    let all = rec.lines_where(of_llama);
    assert_eq!(Some(out.as_str()), all.split_inclusive('\n').next());
    assert!(
        err.contains("more match") && err.contains("--limit 0"),
        "{err}"
    );

    // A window that holds nothing, and a filter nothing matches: exit 0.
    assert_eq!(
        ok(&["query", "--db", db, "--until", "2000-01-01T00:00:00Z"]),
        ""
    );
    assert_eq!(ok(&["query", "--db", db, "--path", "x' OR '1'='1"]), "");

    // A copy of the database file alone answers the same.
    let copy = rec.keep.path().join("copy.db");
    fs::copy(&rec.db, &copy).unwrap();
    let copied = ok(&["query", "--db", copy.to_str().unwrap(), "--path", "*llama*"]);
    assert_eq!(copied, ok(&["query", "--db", db, "--path", "*llama*"]));
}

#[test]
fn timeline_follows_a_shell_pipeline_through_its_children() {
    let rec = record();
    let db = rec.db.to_str().unwrap();
    let (cat, gzip) = (rec.child("cat"), rec.child("gzip"));
    let tree = [rec.sh, cat, gzip];
    let got = ok(&[
        "timeline",
        "--db",
        db,
        "--json",
        "--pid",
        &rec.sh.to_string(),
    ]);
    let want = rec.lines_where(|r| pid_of(r).is_some_and(|p| tree.contains(&p)));
    assert_eq!(got, want);
    // Each process's exec and exit, and the cat's read of the weights.
    let csv = ok(&[
        "timeline",
        "--db",
        db,
        "--csv",
        "--pid",
        &rec.sh.to_string(),
    ]);
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .unwrap()
            .starts_with("relation,depth,seq,time,action,")
    );
    let seen: Vec<(String, String, u32, String)> = rows
        .map(|row| {
            let c: Vec<&str> = row.split(',').collect();
            (
                c[0].to_owned(),
                c[1].to_owned(),
                c[6].parse().unwrap(),
                c[4].to_owned(),
            )
        })
        .collect();
    for want in [
        ("self", "0", rec.sh, "exec"),
        ("descendant", "1", cat, "exec"),
        ("descendant", "1", gzip, "exec"),
        ("descendant", "1", cat, "read"),
        ("descendant", "1", cat, "exit"),
        ("descendant", "1", gzip, "exit"),
        ("self", "0", rec.sh, "exit"),
    ] {
        let want = (
            want.0.to_owned(),
            want.1.to_owned(),
            want.2,
            want.3.to_owned(),
        );
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }
    // The cat read the whole model.
    assert_eq!(read_bytes(&got, "llama"), BTreeMap::from([(cat, MIB)]));
    // No one else: the test process that ran the shell left no record.
    assert!(seen.iter().all(|s| tree.contains(&s.2)), "{seen:?}");
    // A pid with no records: said, exit 0.
    let (code, out, err) = weightwarden(&["timeline", "--db", db, "--pid", "4194303"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("pid 4194303 has no records"), "{err}");
}

#[test]
fn stats_counts_bytes_per_reader_and_file() {
    let rec = record();
    let db = rec.db.to_str().unwrap();
    let records = rec.records();
    let exe_of = |pid: u32| {
        records
            .iter()
            .find(|r| pid_of(r) == Some(pid) && r["action"] == "read")
            .map(|r| r["process"]["exe"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let cat = exe_of(rec.root_cat);
    let dd = exe_of(rec.dd);
    let stats: Value =
        serde_json::from_str(&ok(&["stats", "--db", db, "--json", "--since", "1h"])).unwrap();
    let reading = |reader: &str, uid: u32, path: &Path| -> Value {
        stats["reads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["reader"] == reader && r["uid"] == uid && r["path"] == path.to_str().unwrap()
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {reader} {uid} {path:?} in {stats}"))
    };
    // Root's two cats (one alone, one in the pipeline), nobody's one.
    let root_cats = reading(&cat, 0, &rec.llama);
    assert_eq!(
        (root_cats["bytes"].as_u64(), root_cats["opens"].as_u64()),
        (Some(2 * MIB), Some(2)),
        "{root_cats}"
    );
    let nobody = reading(&cat, 65534, &rec.llama);
    assert_eq!(
        (
            nobody["bytes"].as_u64(),
            nobody["opens"].as_u64(),
            nobody["user"].as_str()
        ),
        (Some(MIB), Some(1), Some("nobody")),
        "{nobody}"
    );
    let dd_read = reading(&dd, 0, &rec.qwen);
    assert_eq!(
        (dd_read["bytes"].as_u64(), dd_read["opens"].as_u64()),
        (Some(QWEN_BYTES), Some(1)),
        "{dd_read}"
    );
    let py = reading(&tests::python_exe_str(), 0, &rec.qwen);
    assert_eq!(py["mmaps"].as_u64(), Some(1), "{py}");
    // Top readers by bytes.
    let top: Vec<(String, u64, u64)> = stats["top_readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reader"].as_str().unwrap().to_owned(),
                r["uid"].as_u64().unwrap(),
                r["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    // The agent's read records, summed the same way; a pipe the pipeline's
    // cat wrote weights into is watched too (lineage), so its gzip may
    // show as a reader of it.
    let mut sums: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["action"] == "read") {
        let p = &r["process"];
        let reader = p["exe"].as_str().or(p["comm"].as_str()).unwrap().to_owned();
        *sums
            .entry((reader, p["uid"].as_u64().unwrap()))
            .or_default() += r["access"]["bytes"].as_u64().unwrap();
    }
    let mut want: Vec<(String, u64, u64)> = sums.into_iter().map(|((e, u), b)| (e, u, b)).collect();
    want.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, a.1).cmp(&(&b.0, b.1))));
    want.truncate(10);
    assert_eq!(top, want);
    for known in [
        (cat.clone(), 0, 2 * MIB),
        (cat, 65534, MIB),
        (dd, 0, QWEN_BYTES),
    ] {
        assert!(top.contains(&known), "{known:?} not in {top:?}");
    }
    // Records by action and detections by id: the agent's own counts.
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    let mut detections: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        *actions
            .entry(r["action"].as_str().unwrap().to_owned())
            .or_default() += 1;
        if r["action"] == "detection" {
            *detections
                .entry(r["detection"]["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let counted = |key: &str, name: &str| -> BTreeMap<String, u64> {
        stats[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c[name].as_str().unwrap().to_owned(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(counted("actions", "action"), actions);
    assert_eq!(counted("detections", "detection"), detections);
    assert_eq!(stats["records"].as_u64(), Some(records.len() as u64));
    // For people: tables.
    let table = ok(&["stats", "--db", db, "--table"]);
    assert!(
        table.contains("Who read which weights") && table.contains("nobody(65534)"),
        "{table}"
    );
}

#[test]
fn bad_input_and_unusable_stores_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let missing = missing.to_str().unwrap();
    for cmd in [
        vec!["query", "--db", missing],
        vec!["timeline", "--db", missing, "--pid", "1"],
        vec!["stats", "--db", missing],
    ] {
        let (code, out, err) = weightwarden(&cmd);
        assert_eq!((code, out.as_str()), (2, ""), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!("no audit store at {missing}")),
            "{cmd:?}: {err}"
        );
    }
    let (code, _, err) = weightwarden(&["query", "--db", missing, "--since", "bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--since")
            && err.contains("bogus")
            && err.contains("90m")
            && err.contains("RFC 3339"),
        "{err}"
    );
    let (code, _, err) = weightwarden(&["query", "--db", missing, "--user", "no-such-user-here"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such user"), "{err}");
    // Not a database.
    let junk = dir.path().join("junk.db");
    fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let (code, _, err) = weightwarden(&["query", "--db", junk.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a SQLite database"), "{err}");
    // Written by a newer weightwarden.
    let newer = dir.path().join("newer.db");
    let made = Command::new("sqlite3")
        .arg(&newer)
        .arg("PRAGMA user_version = 99; CREATE TABLE records (x);")
        .status()
        .unwrap();
    assert!(made.success());
    let (code, _, err) = weightwarden(&["stats", "--db", newer.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("schema version 99, newer"), "{err}");
    // Locked by another program for longer than the 5 s a reader waits:
    // a sqlite3 shell holding an exclusive transaction (on a database in
    // rollback mode: in the agent's WAL mode nothing blocks a reader).
    let mut shell = Command::new("sqlite3")
        .arg(&newer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_shell = shell.stdin.take().unwrap();
    to_shell
        .write_all(b"BEGIN EXCLUSIVE; SELECT 'locked';\n")
        .unwrap();
    let mut said = String::new();
    BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said.trim(), "locked");
    let started = Instant::now();
    let (code, _, err) = weightwarden(&["query", "--db", newer.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("stayed locked for more than 5 s") && err.contains("newer.db"),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(5));
    drop(to_shell);
    assert!(shell.wait().unwrap().success());
}
