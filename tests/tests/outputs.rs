//! Outputs that fail, as a new user's would: a full device, a full disk, a
//! FIFO nobody reads, a deleted or rotated file, a stdout whose reader
//! goes away. Each is refused at start-up with exit 2 when it can be
//! known then; otherwise every record is counted exactly once per output
//! (written or lost), the failure is logged, the agent goes on, and `run`
//! exits 3 at its stop.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{SensorProcess, binary, run, write_file};

/// The sinks counters of the run's `sensor_stop`, by name.
fn sink<'a>(records: &'a [Value], name: &str) -> &'a Value {
    let stop = records.last().unwrap();
    assert_eq!(stop["action"], "sensor_stop");
    stop["sensor"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sink {name}: {}", stop["sensor"]["sinks"]))
}

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "none"])
            .arg(dir.path()));
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_device_loses_every_record_counted_and_the_run_exits_3() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let mut sensor = SensorProcess::start(&[models.path()], &["--output", "jsonl:/dev/full"]);
    sensor.expect_output_loss();
    sensor.expect_error("cannot write to the output");
    for _ in 0..3 {
        let pid = run(Command::new("cat").arg(&weights));
        sensor.wait_exit(pid);
    }
    let (_, records, log) = sensor.stop_with_log();
    // Every record before sensor_stop went to both outputs: the file got
    // them all, /dev/full none, and each is counted once.
    let offered = records.len() as u64 - 1;
    let file = sink(&records, "jsonl:/dev/full");
    assert_eq!(file["records_written"], 0, "{file}");
    assert_eq!(file["write_failures"], offered, "{file}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("jsonl:/dev/full"))
        .collect();
    assert_eq!(errors.len(), 1, "one error at the first failure: {log}");
    assert!(errors[0].contains("No space left on device"), "{log}");
    assert!(
        log.contains("record(s) could not be written to the outputs"),
        "{log}"
    );
}

#[test]
fn a_disk_that_fills_keeps_whole_lines_and_exact_counts() {
    let disk = Tmpfs::mount("256k");
    let out = disk.path().join("events.jsonl");
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let spec = format!("jsonl:{}", out.display());
    let mut sensor = SensorProcess::start(&[models.path()], &["--output", &spec]);
    sensor.expect_output_loss();
    sensor.expect_error("cannot write to the output");
    // Far more than 256 KiB of records.
    run(Command::new("sh").arg("-c").arg(format!(
        "for i in $(seq 400); do cat {} > /dev/null; done",
        weights.display()
    )));
    let (_, records, _) = sensor.stop_with_log();
    let text = fs::read_to_string(&out).unwrap();
    assert!(
        text.ends_with('\n'),
        "a record cut part way was left in the file"
    );
    let kept = text.lines().count() as u64;
    for line in text.lines() {
        serde_json::from_str::<Value>(line).expect("every line a whole record");
    }
    let counted = sink(&records, &spec);
    // sensor_stop's counters were taken before it was written.
    let stop_kept = u64::from(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("sensor_stop")),
    );
    assert_eq!(counted["records_written"], kept - stop_kept, "{counted}");
    assert_eq!(
        counted["records_written"].as_u64().unwrap() + counted["write_failures"].as_u64().unwrap(),
        records.len() as u64 - 1,
        "each record counted once: {counted}"
    );
    assert!(counted["write_failures"].as_u64() > Some(0), "{counted}");
}

#[test]
fn outputs_that_cannot_work_stop_the_start_with_exit_2() {
    let models = tempfile::tempdir().unwrap();
    let start = |output: &str| {
        let out = Command::new(binary())
            .args(["run", "--store", "none", "--state-dir", "none", "--watch"])
            .arg(models.path())
            .args(["--output", output])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A FIFO with no reader: opening it would hang the start for good.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    run(Command::new("mkfifo").arg(&fifo));
    let began = Instant::now();
    let (code, stderr) = start(&format!("jsonl:{}", fifo.display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is a FIFO that no process reads"),
        "{stderr}"
    );
    assert!(began.elapsed() < Duration::from_secs(30));
    // A full file system.
    let disk = Tmpfs::mount("64k");
    // dd fails when the file system is full: that is the point.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", disk.path().join("fill").display()))
        .arg("bs=4k")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let (code, stderr) = start(&format!("jsonl:{}/events.jsonl", disk.path().display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is full"), "{stderr}");
    // A directory.
    let (code, stderr) = start(&format!("jsonl:{}", dir.path().display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
}

/// Waits until `path` holds a line containing `text`.
fn wait_line(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.contains(text))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {text} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deleted_output_file_is_created_again_with_the_records_that_follow() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.jsonl");
    let spec = format!("jsonl:{}", out.display());
    let mut sensor = SensorProcess::start(&[models.path()], &["--output", &spec]);
    sensor.expect_warning("the output file was deleted");
    let first = run(Command::new("cat").arg(&weights));
    sensor.wait_exit(first);
    wait_line(&out, &format!("\"pid\":{first}"));
    fs::remove_file(&out).unwrap();
    let second = run(Command::new("cat").arg(&weights));
    sensor.wait_exit(second);
    wait_line(&out, &format!("\"pid\":{second}"));
    let (status, records, log) = sensor.stop_with_log();
    assert!(status.success());
    assert!(log.contains("the output file was deleted"), "{log}");
    let counted = sink(&records, &spec);
    assert_eq!(counted["write_failures"], 0, "{counted}");
}

#[test]
fn a_rotated_file_and_sighup_lose_and_split_no_record() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.jsonl");
    let rotated = dir.path().join("copy.jsonl.1");
    let spec = format!("jsonl:{}", out.display());
    let mut sensor = SensorProcess::start(&[models.path()], &["--output", &spec]);
    // The move may be seen before the signal comes.
    sensor.expect_warning("the output file was moved away");
    for round in 0..3 {
        let pid = run(Command::new("cat").arg(&weights));
        sensor.wait_exit(pid);
        if round == 1 {
            // logrotate's `create` rotation: move, then `postrotate`.
            fs::rename(&out, &rotated).unwrap();
            sensor.signal(nix::sys::signal::Signal::SIGHUP);
        }
    }
    let (status, records, log) = sensor.stop_with_log();
    assert!(status.success(), "{log}");
    assert!(log.contains("outputs reopened"), "{log}");
    let before = fs::read_to_string(&rotated).unwrap();
    let after = fs::read_to_string(&out).unwrap();
    assert!(!before.is_empty() && !after.is_empty());
    // The two files together are the run's records, whole and in order.
    let both: Vec<Value> = before
        .lines()
        .chain(after.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(both, records);
}

#[test]
fn a_stdout_whose_reader_goes_away_is_counted_lost_and_capture_goes_on() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let state = tempfile::tempdir().unwrap();
    let store = state.path().join("audit.db");
    let mut agent = Command::new(binary())
        .args([
            "run",
            "--output",
            "stdout",
            "--state-dir",
            "none",
            "--store",
        ])
        .arg(&store)
        .arg("--watch")
        .arg(models.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: one line, then the reader is gone.
    let mut stdout = BufReader::new(agent.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("sensor_start"), "{first}");
    drop(stdout);
    for _ in 0..3 {
        run(Command::new("cat").arg(&weights));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent stopped with its stdout"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains("output=stdout") && log.contains("Broken pipe"),
        "{log}"
    );
    // The store kept what stdout lost.
    let query = Command::new(binary())
        .args(["query", "--json", "--action", "open", "--db"])
        .arg(&store)
        .output()
        .unwrap();
    let opens = String::from_utf8_lossy(&query.stdout).lines().count();
    assert_eq!(opens, 3, "{}", String::from_utf8_lossy(&query.stderr));
}

#[test]
fn a_rotated_output_keeps_its_newest_files_of_whole_records_in_order() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 4096);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rotated.jsonl");
    let spec = format!("jsonl:{}?rotate_size=16KiB&keep=3", out.display());
    let sensor = SensorProcess::start(&[models.path()], &["--output", &spec]);
    // Far more than 4 x 16 KiB of records, spread over many batches.
    run(Command::new("sh").arg("-c").arg(format!(
        "for i in $(seq 60); do cat {} > /dev/null; sleep 0.02; done",
        weights.display()
    )));
    let (status, records) = sensor.stop();
    assert!(status.success());
    let file = |n: u32| {
        let mut name = out.clone().into_os_string();
        name.push(format!(".{n}"));
        std::path::PathBuf::from(name)
    };
    assert!(!file(4).exists(), "more than keep=3 rotated files");
    // Oldest first: .3, .2, .1, then the file itself.
    let mut kept: Vec<Value> = Vec::new();
    for path in [file(3), file(2), file(1), out.clone()] {
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        // No file past its size unless one batch alone was larger.
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty(), "{} is empty", path.display());
        for line in lines {
            kept.push(serde_json::from_str(line).unwrap());
        }
    }
    // What is kept is the run's last records, in order, none split or
    // missing between the files.
    assert!(kept.len() < records.len(), "nothing was rotated away");
    assert_eq!(kept[..], records[records.len() - kept.len()..]);
}

/// ext4 keeps blocks for root: a file system that users have filled is
/// not full for the agent, which runs as root and starts and writes there.
#[test]
fn a_file_system_full_only_for_users_still_takes_the_agent_s_records() {
    let disk = tests::LoopFs::mount(&["mkfs.ext4", "-q", "-F", "-m", "10"], 16);
    let fill = disk.dir.path().join("fill");
    fs::File::create(&fill).unwrap();
    run(Command::new("chown").arg("nobody").arg(&fill));
    run(Command::new("chmod").arg("777").arg(disk.dir.path()));
    // As a user: until the users' share is gone (dd then fails), in big
    // writes and then in single blocks for the last few.
    for bs in ["bs=64k", "bs=1k"] {
        let _ = Command::new("setpriv")
            .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", fill.display()))
            .args([bs, "oflag=append", "conv=notrunc"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
    }
    let stat = nix::sys::statvfs::statvfs(disk.dir.path()).unwrap();
    assert_eq!(stat.blocks_available(), 0, "users still have room");
    assert!(stat.blocks_free() > 0, "no block left for root");
    let out = disk.dir.path().join("events.jsonl");
    let models = tempfile::tempdir().unwrap();
    let spec = format!("jsonl:{}", out.display());
    let sensor = SensorProcess::start(&[models.path()], &["--output", &spec]);
    let (status, records) = sensor.stop();
    assert!(status.success());
    assert_eq!(
        fs::read_to_string(&out).unwrap().lines().count(),
        records.len()
    );
}
