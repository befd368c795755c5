//! The agent's audit store (docs/store.md, issue 10), measured two ways.
//! With capture running: a fresh agent while processes open and close
//! watched files at stepped record rates, and what its store kept of the
//! records its outputs wrote. On synthetic records: `weightwarden
//! bench-store` fills a new store through the real writer alone (how fast,
//! how big per million records), then `query`, `timeline`, `stats` and
//! `verify` are timed against it, each a fresh process as a person would
//! run it.

use std::{
    ffi::{CString, OsStr},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    libc,
    sys::{
        statvfs,
        wait::{WaitStatus, waitpid},
    },
    unistd::{ForkResult, fork},
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    bench::{
        agent::{self, Ctx},
        records::{self, StoreCounters},
        stats,
        worker::c_path,
    },
    process,
};

/// Target record rates of the capture steps (records/s; each open+close
/// pair of the driver is two records).
pub const INGEST_RATES: [u64; 4] = [50_000, 100_000, 200_000, 400_000];
/// The goal of issue 10: records/s the store keeps, capture running.
pub const INGEST_GOAL: f64 = 100_000.0;
/// Distinct watched files each driver process opens and closes once. A
/// process's first open of a file is an `open` record and its close a
/// `close` record; its later opens of the same file are counted in the
/// kernel and leave it as one `open_summary` (docs/events.md), so one
/// process reopening one file, as the sustained-rate row does, makes
/// almost no records.
pub const FILES_PER_PROCESS: usize = 500;
/// `store.queue_max`'s default: records the queue to the writer holds,
/// which a step hides a slower writer behind (see the method).
pub const QUEUE_MAX: u64 = 65_536;

/// `bench-store --days`: the synthetic records span this many days up to
/// now.
pub const SYNTHETIC_DAYS: u64 = 7;
/// Runs of each timed command.
pub const CLI_RUNS: usize = 5;
/// Issue 10's goal for each query, in seconds.
pub const QUERY_GOAL_S: f64 = 0.2;
/// Issue 10's goal for `verify`, records/s.
pub const VERIFY_GOAL: f64 = 1_000_000.0;
/// The file the path query asks for: one of bench-store's 200
/// (`/models/m{0..9}/model-{00001..00020}-of-00020.safetensors`, one
/// process in 200 reads it).
pub const QUERY_PATH: &str = "/models/m3/model-00007-of-00020.safetensors";
/// The query's window, and `stats`'s, as the titles show it: `--since`
/// is given as the RFC 3339 time this long before the timing began
/// ([`since`]), so that every run asks for the same records (a span such
/// as `24h` is counted back from each run's own start, and the window
/// would slide off the store's oldest records from run to run).
pub const WINDOW: &str = "<24 h ago>";
const WINDOW_SECS: i64 = 24 * 3600;
/// Disk one synthetic record may take with its share of the WAL, for the
/// free-space check (bench-store made about 1,300 bytes a record).
const BYTES_PER_RECORD_BOUND: u64 = 2_048;

/// Seconds each capture step drives.
pub fn ingest_secs(quick: bool) -> f64 {
    if quick { 2.0 } else { 6.0 }
}

/// One step of the capture ramp.
#[derive(Debug, Clone)]
pub struct IngestStep {
    /// Records/s asked of the driver.
    pub target: u64,
    /// open+close pairs made.
    pub pairs: u64,
    pub seconds: f64,
    /// Lines of the agent's JSON lines output: every record the outputs
    /// wrote (the driven opens and closes, and the agent's own: its status
    /// records, the driver processes' exits, detections).
    pub output_records: u64,
    /// Records in the store once the agent had stopped (it commits what
    /// is queued first), as `verify` counted them, with any retention
    /// removed.
    pub kept: u64,
    /// The store's counters in `sensor_stop`.
    pub counters: StoreCounters,
    pub ringbuf_full: u64,
    /// How long after the driver stopped the output last grew.
    pub drain_lag: Duration,
}

impl IngestStep {
    /// Records/s the driver made (two per pair).
    pub fn driven(&self) -> f64 {
        self.pairs as f64 * 2.0 / self.seconds
    }

    /// The driver reached the target (within 3 %).
    pub fn on_target(&self) -> bool {
        self.driven() >= 0.97 * self.target as f64
    }

    /// Records/s the outputs wrote: over the drive and the time the
    /// output took to catch up after it.
    pub fn record_rate(&self) -> f64 {
        self.output_records as f64 / (self.seconds + self.drain_lag.as_secs_f64())
    }

    /// Every record the outputs wrote is in the store, and the store
    /// counted no loss.
    pub fn kept_all(&self) -> bool {
        self.kept == self.output_records && self.counters.lost() == 0
    }

    /// Records the outputs wrote that the store does not hold.
    pub fn missing(&self) -> u64 {
        self.output_records.saturating_sub(self.kept)
    }

    /// The rate this step shows the store keeps everything at: the
    /// target when the driver and the outputs reached it (within 3 %),
    /// else what the outputs wrote (the driver fell short, the kernel
    /// lost records, the output trailed); `None` when the store did not
    /// keep everything.
    pub fn sustained(&self) -> Option<f64> {
        let target = self.target as f64;
        self.kept_all().then(|| {
            if self.on_target() && self.record_rate() >= 0.97 * target {
                target
            } else {
                self.record_rate()
            }
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "target_records_per_sec": self.target,
            "pairs": self.pairs,
            "seconds": self.seconds,
            "driven_records_per_sec": self.driven(),
            "driver_on_target": self.on_target(),
            "output_records": self.output_records,
            "output_records_per_sec": self.record_rate(),
            "store_kept": self.kept,
            "store_missing": self.missing(),
            "store_counters_at_stop": self.counters.to_json(),
            "ringbuf_full": self.ringbuf_full,
            "drain_lag_s": self.drain_lag.as_secs_f64(),
            "kept_all": self.kept_all(),
            "sustained_records_per_sec": self.sustained(),
        })
    }
}

pub struct IngestResult {
    pub secs_per_step: f64,
    pub steps: Vec<IngestStep>,
}

impl IngestResult {
    /// The step with the highest rate at which the store kept everything.
    pub fn best(&self) -> Option<&IngestStep> {
        self.steps
            .iter()
            .filter_map(|s| Some((s, s.sustained()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "secs_per_step": self.secs_per_step,
            "files_per_process": FILES_PER_PROCESS,
            "steps": self.steps.iter().map(IngestStep::to_json).collect::<Vec<_>>(),
            "best_records_per_sec": self.best().and_then(IngestStep::sustained),
            "rule": "kept all = the store holds as many records as the JSON lines output \
                     (verify's count once the agent stopped) and sensor_stop counts no \
                     lost_queue_full, lost_disk_full, lost_write_error or lost_encode_error",
        })
    }
}

/// Runs every step of [`INGEST_RATES`] against a fresh agent each.
pub fn ingest(ctx: &Ctx) -> Result<IngestResult> {
    let secs = ingest_secs(ctx.quick);
    let paths = (0..FILES_PER_PROCESS)
        .map(|i| ctx.watched_file(&format!("store-{i:03}.safetensors")))
        .collect::<Result<Vec<_>>>()?;
    let files = paths
        .iter()
        .map(|p| c_path(p))
        .collect::<Result<Vec<_>>>()?;
    let one_file = paths.first().context("the store driver has no file")?;
    let mut steps = Vec::new();
    for (i, &target) in INGEST_RATES.iter().enumerate() {
        let step = ingest_step(
            ctx,
            &format!("store-ingest-{i}"),
            target,
            secs,
            &files,
            one_file,
        )
        .with_context(|| format!("the store step at {target} records/s"))?;
        eprintln!(
            "bench: store at {target} records/s: {:.0}/s driven, the outputs wrote {}, the \
             store kept {}, lost {} (queue full {}), ringbuf_full {}",
            step.driven(),
            step.output_records,
            step.kept,
            step.counters.lost(),
            step.counters.lost_queue_full,
            step.ringbuf_full
        );
        steps.push(step);
    }
    Ok(IngestResult {
        secs_per_step: secs,
        steps,
    })
}

fn ingest_step(
    ctx: &Ctx,
    name: &str,
    target: u64,
    secs: f64,
    files: &[CString],
    one_file: &Path,
) -> Result<IngestStep> {
    let agent = ctx.start(name)?;
    let output = agent.output().to_path_buf();
    let db = agent.store().to_path_buf();
    let driven = drive_processes(files, target / 2, Duration::from_secs_f64(secs));
    let drain_lag = agent::wait_quiet(&output, Instant::now());
    agent.stop()?;
    let (pairs, elapsed) = driven?;
    let drain_lag = drain_lag?;
    let counted = (|| {
        // Only the line count and the status record are used.
        let scan = records::scan(&output, one_file)?;
        let ringbuf_full = agent::stop_counter(&scan, &output, "kernel.ringbuf_full")?;
        let stop = scan.last_status.as_ref().context("no sensor_stop record")?;
        let counters = StoreCounters::of(stop).with_context(|| {
            format!(
                "the sensor_stop record in {} has no store counters (sensor.store): {stop}",
                output.display()
            )
        })?;
        let (verified, _) = verify(ctx.binary, &db)?;
        Ok::<_, anyhow::Error>((scan.lines, ringbuf_full, counters, verified))
    })();
    // Each step writes up to gigabytes; keep only what the report needs.
    fs::remove_file(&output).with_context(|| format!("cannot remove {}", output.display()))?;
    remove(&db)?;
    let (output_records, ringbuf_full, counters, verified) = counted?;
    Ok(IngestStep {
        target,
        pairs,
        seconds: elapsed.as_secs_f64(),
        output_records,
        kept: verified.records + verified.pruned,
        counters,
        ringbuf_full,
        drain_lag,
    })
}

/// open+close of each of `files` once per round, each round by a fresh
/// process (forked), started while fewer than `pairs_per_sec` times the
/// elapsed time have been made, until `duration` has passed; returns the
/// pairs made and the time taken.
pub(super) fn drive_processes(
    files: &[CString],
    pairs_per_sec: u64,
    duration: Duration,
) -> Result<(u64, Duration)> {
    if files.is_empty() || pairs_per_sec == 0 {
        bail!("the store driver needs files and a rate");
    }
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok((done, elapsed));
        }
        let due_at = Duration::from_secs_f64(done as f64 / pairs_per_sec as f64);
        if due_at > elapsed {
            thread::sleep((due_at - elapsed).min(duration - elapsed));
            continue;
        }
        open_close_in_child(files)?;
        done += files.len() as u64;
    }
}

/// Forks a process that opens and closes each of `files` once, and waits
/// for it.
fn open_close_in_child(files: &[CString]) -> Result<()> {
    // SAFETY: the child only calls open, close and _exit (async-signal-
    // safe) on memory made before the fork, and never returns.
    match unsafe { fork() }.context("cannot fork a store driver process")? {
        ForkResult::Child => {
            for file in files {
                // SAFETY: `file` is NUL-terminated.
                let fd = unsafe { libc::open(file.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    // SAFETY: ends the child without running the parent's
                    // destructors or atexit handlers.
                    unsafe { libc::_exit(1) };
                }
                // SAFETY: closes the descriptor opened above, once.
                unsafe { libc::close(fd) };
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            match waitpid(child, None).context("cannot wait for a store driver process")? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => bail!(
                    "a store driver process could not open every watched file it was given \
                     ({status:?})"
                ),
            }
        }
    }
}

/// Removes a store's files: the database, its WAL and shared-memory
/// files and its key.
pub fn remove(db: &Path) -> Result<()> {
    for ext in ["db", "db-wal", "db-shm", "key"] {
        let path = db.with_extension(ext);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", path.display()));
            }
        }
    }
    Ok(())
}

/// Removes a store's files when dropped, on error paths too: the
/// synthetic store is gigabytes.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        if let Err(err) = remove(&self.0) {
            eprintln!("bench: {err:#}");
        }
    }
}

/// What `weightwarden bench-store` prints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BenchStore {
    pub records: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub db_bytes: u64,
    pub lost: u64,
}

impl BenchStore {
    /// Bytes of the database per million records.
    pub fn bytes_per_million(&self) -> Option<f64> {
        (self.records > 0).then(|| self.db_bytes as f64 / self.records as f64 * 1e6)
    }
}

/// The one JSON line `bench-store` prints (its last non-empty line).
pub fn parse_bench_store(stdout: &str) -> Result<BenchStore> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("bench-store printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("bench-store printed {line:?}"))
}

/// What `verify` found intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Records in the store, checked.
    pub records: u64,
    /// Records retention removed before them (sealed cuts).
    pub pruned: u64,
}

/// `DB: intact: N records, head SEQ:HEX (records A to B)[; P earlier
/// records removed by retention (...)]`.
pub fn parse_verify(stdout: &str) -> Result<Verified> {
    let text = stdout.trim();
    let count = |rest: &str, what: &str| -> Result<u64> {
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("verify printed no {what} count: {text:?}"))
    };
    let (_, rest) = text
        .rsplit_once(": intact: ")
        .with_context(|| format!("verify did not say the chain is intact: {text:?}"))?;
    let records = count(rest, "record")?;
    let pruned = match rest.split_once("; ") {
        Some((_, cut)) if cut.contains("removed by retention") => count(cut, "pruned")?,
        _ => 0,
    };
    Ok(Verified { records, pruned })
}

/// Runs `weightwarden verify --db DB` (the key beside it); its findings
/// and wall time.
fn verify(binary: &Path, db: &Path) -> Result<(Verified, f64)> {
    let (secs, stdout) = run_cli(binary, &[os("verify"), os("--db"), db.as_os_str()])?;
    Ok((parse_verify(&stdout)?, secs))
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Runs the sensor's `args`, stdout captured; its wall time (spawn to
/// exit) and stdout. Fails, naming the command and quoting its stderr,
/// unless it exits 0.
fn run_cli(binary: &Path, args: &[&OsStr]) -> Result<(f64, String)> {
    let mut cmd = Command::new(binary);
    cmd.args(args).stdin(Stdio::null());
    let line = process::display(&cmd);
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let stdout =
        String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8"))?;
    Ok((secs, stdout))
}

/// Lines of output (JSON lines: records).
pub fn count_lines(stdout: &str) -> u64 {
    stdout.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// `process.pid` of the first record of JSON lines.
pub fn first_pid(stdout: &str) -> Result<u32> {
    let line = stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .context("the query returned no record")?;
    let record: Value =
        serde_json::from_str(line).with_context(|| format!("a record is not JSON: {line}"))?;
    record["process"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .with_context(|| format!("the record has no process.pid: {line}"))
}

/// `records` of the JSON `stats` prints.
pub fn stats_records(stdout: &str) -> Result<u64> {
    let value: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("stats printed no JSON: {:?}", stdout.trim()))?;
    value["records"]
        .as_u64()
        .with_context(|| format!("stats printed no record count: {value}"))
}

/// One command timed [`CLI_RUNS`] times.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Wall time of each run, spawn to exit.
    pub secs: Vec<f64>,
    /// What it answered (the same every run): records printed, records
    /// in the window, or records verified.
    pub rows: u64,
}

impl Timed {
    pub fn median(&self) -> Option<f64> {
        stats::summarize(&self.secs).map(|s| s.median)
    }

    fn to_json(&self) -> Value {
        let s = stats::summarize(&self.secs);
        json!({
            "secs": self.secs,
            "median_s": s.map(|s| s.median),
            "min_s": s.map(|s| s.min),
            "max_s": s.map(|s| s.max),
            "rows": self.rows,
        })
    }
}

/// Runs `args` [`CLI_RUNS`] times; `rows` reads each run's answer, which
/// must be the same every time.
fn time_cli(binary: &Path, args: &[&OsStr], rows: impl Fn(&str) -> Result<u64>) -> Result<Timed> {
    let mut secs = Vec::new();
    let mut answer = None;
    for _ in 0..CLI_RUNS {
        let (s, stdout) = run_cli(binary, args)?;
        let n = rows(&stdout)?;
        if let Some(first) = answer.filter(|a| *a != n) {
            bail!(
                "`{}` answered {first}, then {n}: the store changed under the benchmark",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        answer = Some(n);
        secs.push(s);
    }
    Ok(Timed {
        secs,
        rows: answer.unwrap_or(0),
    })
}

pub struct SyntheticResult {
    pub ingest: BenchStore,
    /// `--since` of the query and `stats`: 24 h before the timing began.
    pub since: String,
    /// The pid `timeline` was asked for: the process of the first record
    /// of the last hour.
    pub pid: u32,
    pub query: Timed,
    pub timeline: Timed,
    pub stats: Timed,
    pub verify: Timed,
}

impl SyntheticResult {
    /// Records `verify` checked per second (median run).
    pub fn verify_rate(&self) -> Option<f64> {
        self.verify
            .median()
            .filter(|s| *s > 0.0)
            .map(|s| self.verify.rows as f64 / s)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "bench_store": {
                "records": self.ingest.records,
                "days": SYNTHETIC_DAYS,
                "seconds": self.ingest.seconds,
                "records_per_sec": self.ingest.records_per_sec,
                "db_bytes": self.ingest.db_bytes,
                "db_bytes_per_million_records": self.ingest.bytes_per_million(),
                "lost": self.ingest.lost,
            },
            "query": {
                "args": format!("--since {} --path {QUERY_PATH} --json --limit 0", self.since),
                "timed": self.query.to_json(),
            },
            "timeline": {
                "args": format!("--pid {} --json", self.pid),
                "timed": self.timeline.to_json(),
            },
            "stats": {
                "args": format!("--since {} --json", self.since),
                "timed": self.stats.to_json(),
            },
            "verify": {
                "timed": self.verify.to_json(),
                "records_per_sec": self.verify_rate(),
            },
            "runs": CLI_RUNS,
        })
    }
}

/// Fills `<run>/bench-store.db` with `records` synthetic records, times
/// the commands against it, and removes it.
pub fn synthetic(ctx: &Ctx, records: u64) -> Result<SyntheticResult> {
    let binary = ctx.binary;
    let db = ctx.layout.run.join("bench-store.db");
    remove(&db)?;
    check_space(&ctx.layout.run, records)?;
    let _removed = Removed(db.clone());
    let mut cmd = Command::new(binary);
    cmd.arg("bench-store")
        .arg("--db")
        .arg(&db)
        .args(["--records", &records.to_string()])
        .args(["--days", &SYNTHETIC_DAYS.to_string()]);
    eprintln!("+ {}", process::display(&cmd));
    let ingest = parse_bench_store(&process::stdout(&mut cmd)?)?;
    eprintln!(
        "bench: bench-store wrote {} records in {:.1} s ({:.0}/s), {} bytes, {} lost",
        ingest.records, ingest.seconds, ingest.records_per_sec, ingest.db_bytes, ingest.lost
    );
    if ingest.records != records {
        bail!(
            "bench-store was asked for {records} records and says it wrote {}",
            ingest.records
        );
    }
    let db = db.as_os_str();
    let (_, recent) = run_cli(
        binary,
        &[
            os("query"),
            os("--db"),
            db,
            os("--since"),
            os("1h"),
            os("--limit"),
            os("1"),
            os("--json"),
        ],
    )?;
    let pid = first_pid(&recent).context("looking for a pid of the last hour")?;
    let since = since(OffsetDateTime::now_utc())?;

    eprintln!("bench: store query --path {QUERY_PATH} --since {WINDOW}");
    let query = time_cli(
        binary,
        &[
            os("query"),
            os("--db"),
            db,
            os("--since"),
            os(&since),
            os("--path"),
            os(QUERY_PATH),
            os("--json"),
            os("--limit"),
            os("0"),
        ],
        |out| Ok(count_lines(out)),
    )?;
    if query.rows == 0 {
        bail!(
            "`query --path {QUERY_PATH} --since {WINDOW}` found no record: the synthetic store \
             has none for that file in the window, so its time would mean nothing"
        );
    }
    let pid_arg = pid.to_string();
    eprintln!("bench: store timeline --pid {pid}");
    let timeline = time_cli(
        binary,
        &[
            os("timeline"),
            os("--db"),
            db,
            os("--pid"),
            os(&pid_arg),
            os("--json"),
        ],
        |out| Ok(count_lines(out)),
    )?;
    if timeline.rows == 0 {
        bail!("`timeline --pid {pid}` found no record of a pid `query` had just returned");
    }
    eprintln!("bench: store stats --since {WINDOW}");
    let stats = time_cli(
        binary,
        &[
            os("stats"),
            os("--db"),
            db,
            os("--since"),
            os(&since),
            os("--json"),
        ],
        stats_records,
    )?;
    if stats.rows == 0 {
        bail!("`stats --since {WINDOW}` counted no record in the window of the synthetic store");
    }
    eprintln!("bench: store verify");
    let verify = time_cli(binary, &[os("verify"), os("--db"), db], |out| {
        Ok(parse_verify(out)?.records)
    })?;
    if verify.rows + ingest.lost != ingest.records {
        bail!(
            "verify counted {} records in the store, but bench-store wrote {} and lost {}",
            verify.rows,
            ingest.records,
            ingest.lost
        );
    }
    Ok(SyntheticResult {
        ingest,
        since,
        pid,
        query,
        timeline,
        stats,
        verify,
    })
}

/// The RFC 3339 time [`WINDOW_SECS`] before `now`, to the second.
fn since(now: OffsetDateTime) -> Result<String> {
    let start = now.replace_nanosecond(0)? - time::Duration::seconds(WINDOW_SECS);
    start
        .format(&Rfc3339)
        .context("cannot format the window's start")
}

/// Fails, saying how much is needed, unless the folder's file system has
/// room for `records` synthetic records.
fn check_space(dir: &Path, records: u64) -> Result<()> {
    const MIB: u64 = 1 << 20;
    let stat = statvfs::statvfs(dir)
        .with_context(|| format!("cannot stat the file system of {}", dir.display()))?;
    let available = stat.blocks_available() * stat.fragment_size();
    let needed = records.saturating_mul(BYTES_PER_RECORD_BOUND);
    if available < needed {
        bail!(
            "not enough free disk space for the store's {records} synthetic records in {}: \
             {} MiB free, about {} MiB needed",
            dir.display(),
            available / MIB,
            needed / MIB
        );
    }
    Ok(())
}

/// A step that kept `kept` of `output` records and lost `queue_full` to
/// a full queue (the report's tests too).
#[cfg(test)]
pub(super) fn test_step(
    target: u64,
    pairs: u64,
    seconds: f64,
    output: u64,
    kept: u64,
    queue_full: u64,
) -> IngestStep {
    IngestStep {
        target,
        pairs,
        seconds,
        output_records: output,
        kept,
        counters: StoreCounters {
            records_written: kept,
            lost_queue_full: queue_full,
            ..StoreCounters::default()
        },
        ringbuf_full: 0,
        drain_lag: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: u64, pairs: u64, output: u64, kept: u64, queue_full: u64) -> IngestStep {
        test_step(target, pairs, 2.0, output, kept, queue_full)
    }

    #[test]
    fn a_step_keeps_all_when_the_store_holds_every_output_record() {
        // 50k records/s for 2 s: 50,000 pairs; the agent's own records
        // come on top.
        let s = step(50_000, 50_000, 100_100, 100_100, 0);
        assert!(s.on_target());
        assert!(s.kept_all());
        assert_eq!(s.driven(), 50_000.0);
        assert_eq!(s.record_rate(), 50_050.0);
        assert_eq!(s.sustained(), Some(50_000.0));
        // A record missing, or a loss counted, is not keeping all.
        assert!(!step(50_000, 50_000, 100_100, 100_099, 0).kept_all());
        assert_eq!(step(50_000, 50_000, 100_100, 100_099, 0).missing(), 1);
        assert!(!step(50_000, 50_000, 100_100, 100_100, 1).kept_all());
        // The driver fell short: what the outputs wrote is the rate.
        let short = step(400_000, 300_000, 600_000, 600_000, 0);
        assert!(!short.on_target());
        assert_eq!(short.sustained(), Some(300_000.0));
        // An output that trailed the driver: its rate is over both.
        let mut slow = step(100_000, 100_000, 200_000, 200_000, 0);
        slow.drain_lag = Duration::from_secs(2);
        assert_eq!(slow.record_rate(), 50_000.0);
        assert_eq!(slow.sustained(), Some(50_000.0));
        // A usual lag of some milliseconds is within the tolerance.
        slow.drain_lag = Duration::from_millis(40);
        assert_eq!(slow.sustained(), Some(100_000.0));
    }

    #[test]
    fn the_best_step_is_the_fastest_that_kept_all() {
        let result = IngestResult {
            secs_per_step: 2.0,
            steps: vec![
                step(50_000, 50_000, 100_000, 100_000, 0),
                step(100_000, 100_000, 200_000, 200_000, 0),
                step(200_000, 200_000, 400_000, 150_000, 250_000),
                step(400_000, 300_000, 600_000, 150_000, 450_000),
            ],
        };
        assert_eq!(result.best().map(|s| s.target), Some(100_000));
        let json = result.to_json();
        assert_eq!(json["best_records_per_sec"], 100_000.0);
        assert_eq!(json["steps"][2]["store_missing"], 250_000);
        assert_eq!(json["steps"][3]["kept_all"], false);
        let none = IngestResult {
            secs_per_step: 2.0,
            steps: vec![step(50_000, 50_000, 100_000, 90_000, 10_000)],
        };
        assert!(none.best().is_none());
    }

    #[test]
    fn parses_what_bench_store_prints() {
        let out = "{\"records\":200000,\"seconds\":8.5,\"records_per_sec\":23529.4,\
                   \"db_bytes\":254000000,\"lost\":0}\n";
        let b = parse_bench_store(out).unwrap();
        assert_eq!(b.records, 200_000);
        assert_eq!(b.db_bytes, 254_000_000);
        assert_eq!(b.bytes_per_million(), Some(1_270_000_000.0));
        assert!(parse_bench_store("").is_err());
        assert!(parse_bench_store("{\"records\":1}\n").is_err());
        assert!(parse_bench_store("not json\n").is_err());
    }

    #[test]
    fn parses_what_verify_prints() {
        let v = parse_verify(
            "/var/tmp/b/run/bench-store.db: intact: 200000 records, head 200000:ab12 \
             (records 1 to 200000)\n",
        )
        .unwrap();
        assert_eq!(
            v,
            Verified {
                records: 200_000,
                pruned: 0
            }
        );
        let v = parse_verify(
            "/d/a.db: intact: 900 records, head 1000:ff (records 101 to 1000); 100 earlier \
             records removed by retention (through 100, sealed)",
        )
        .unwrap();
        assert_eq!((v.records, v.pruned), (900, 100));
        // An empty store: no range.
        assert_eq!(
            parse_verify("/d/a.db: intact: 0 records, head 0:00").unwrap(),
            Verified {
                records: 0,
                pruned: 0
            }
        );
        assert!(parse_verify("/d/a.db: BROKEN: record 7 does not match its chain link").is_err());
        assert!(parse_verify("").is_err());
    }

    #[test]
    fn reads_the_cli_answers() {
        let records = "{\"action\":\"exec\",\"process\":{\"pid\":1300}}\n\
                       {\"action\":\"open\",\"process\":{\"pid\":1301}}\n";
        assert_eq!(count_lines(records), 2);
        assert_eq!(count_lines(""), 0);
        assert_eq!(first_pid(records).unwrap(), 1300);
        assert!(first_pid("").is_err());
        assert!(first_pid("{\"action\":\"sensor_start\"}\n").is_err());
        assert_eq!(
            stats_records("{\"since\":\"x\",\"records\":28571,\"reads\":[]}\n").unwrap(),
            28_571
        );
        assert!(stats_records("{\"since\":\"x\"}").is_err());
        assert!(stats_records("0 records from").is_err());
    }

    #[test]
    fn drives_each_round_in_a_new_process_at_the_asked_rate() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<CString> = (0..10)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                fs::write(&path, b"x").unwrap();
                c_path(&path).unwrap()
            })
            .collect();
        let (pairs, took) = drive_processes(&files, 2_000, Duration::from_millis(300)).unwrap();
        assert_eq!(pairs % 10, 0);
        // Never faster than asked (the pacing); how much slower depends on
        // the machine's load, so only that it made progress.
        let rate = pairs as f64 / took.as_secs_f64();
        assert!(pairs > 0 && rate <= 2_100.0, "{rate}");
        let missing = vec![c_path(&dir.path().join("none")).unwrap()];
        let err = drive_processes(&missing, 1_000, Duration::from_millis(50)).unwrap_err();
        assert!(format!("{err:#}").contains("could not open"), "{err:#}");
    }

    #[test]
    fn the_window_starts_24_hours_back_to_the_second() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_795_626_593_123_456_789).unwrap();
        assert_eq!(since(now).unwrap(), "2026-11-24T17:09:53Z");
    }

    #[test]
    fn removes_every_file_of_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        for name in ["s.db", "s.db-wal", "s.db-shm", "s.key", "t.db"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        {
            let _removed = Removed(db.clone());
        }
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["t.db"]);
        // Nothing to remove is fine.
        remove(&db).unwrap();
    }
}
