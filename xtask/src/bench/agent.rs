//! The agent's own limits, measured with the release sensor on its default
//! configuration watching `agent/`: the highest rate of watched-file opens
//! it turns into JSON lines with zero loss, the burst its ring buffer
//! absorbs while it is stopped, its CPU per 100k records, its memory and
//! start-up time with 100k watched files, the latency from syscall to
//! record written, and how long a policy over those 100k files takes to
//! compile and to reload.

use std::{
    ffi::CString,
    fs::{self, File},
    io::{Read as _, Seek as _, SeekFrom},
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    libc,
    sys::{
        inotify::{AddWatchFlags, InitFlags, Inotify},
        signal::Signal,
    },
};
use serde_json::{Value, json};

use crate::bench::{
    children::Agent,
    fixtures::Layout,
    policy, procfs, records, stats, store,
    worker::{c_path, open_close_once},
};

/// Target rates of the zero-loss search (opens per second; each open is
/// followed by a close, so the agent writes twice as many records).
const RATES: &[u64] = &[25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000];
/// A step keeps up when the output stops growing within this long after
/// the driver stopped: the ring holds under half a second of records at
/// 100k opens/s, so an agent that cannot keep up trails by more.
pub(super) const MAX_DRAIN_LAG: Duration = Duration::from_secs(1);
/// The output is taken as complete once it has not grown for this long.
const QUIET: Duration = Duration::from_millis(300);
/// open+close pairs made while the agent is stopped: 200k records, well
/// over what the default 8 MiB ring holds (~60k 136-byte records).
const BURST_PAIRS: u64 = 100_000;
/// Spacing of the latency probe's opens.
const LATENCY_SPACING: Duration = Duration::from_millis(1);

pub struct Ctx<'a> {
    pub binary: &'a Path,
    pub layout: &'a Layout,
    pub quick: bool,
}

impl Ctx<'_> {
    /// A small safetensors-shaped file in the agent metrics' watched
    /// folder, made if missing.
    pub(super) fn watched_file(&self, name: &str) -> Result<PathBuf> {
        let path = self.layout.agent.join(name);
        if !path.exists() {
            fs::write(&path, b"\x08\0\0\0\0\0\0\0{}      ")
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        Ok(path)
    }

    /// A fresh agent watching the agent metrics' folder.
    pub(super) fn start(&self, name: &str) -> Result<Agent> {
        self.start_with(name, &[])
    }

    /// [`Ctx::start`] with more arguments (another output, a state
    /// directory).
    pub(super) fn start_with(&self, name: &str, extra: &[String]) -> Result<Agent> {
        Agent::start_with(
            self.binary,
            &[&self.layout.agent],
            &self.layout.run,
            name,
            None,
            extra,
        )
    }
}

/// One step of the rate search.
#[derive(Debug, Clone)]
pub struct RateStep {
    /// `None`: as fast as the driver goes.
    pub target: Option<u64>,
    pub opens: u64,
    pub seconds: f64,
    pub open_records: u64,
    pub close_records: u64,
    pub ringbuf_full: u64,
    pub drain_lag: Duration,
    pub agent_cpu_s: f64,
    /// The agent's audit store counters at `sensor_stop`: a record it
    /// could not keep is a loss for the store only (the outputs have it),
    /// so it is reported beside the figures, not in them.
    pub store: Option<records::StoreCounters>,
}

impl RateStep {
    pub fn achieved(&self) -> f64 {
        self.opens as f64 / self.seconds
    }

    /// The driver reached the target (within 3 %).
    pub fn on_target(&self) -> bool {
        self.target
            .is_none_or(|t| self.achieved() >= 0.97 * t as f64)
    }

    pub fn zero_loss(&self) -> bool {
        self.ringbuf_full == 0
            && self.open_records == self.opens
            && self.close_records == self.opens
            && self.drain_lag <= MAX_DRAIN_LAG
    }

    /// The rate this step shows the agent sustains with zero loss: the
    /// target when the driver reached it (pacing makes it exact, less
    /// the last partial batch), what the driver reached otherwise; `None`
    /// when records were lost or trailed.
    pub fn sustained(&self) -> Option<f64> {
        if !self.zero_loss() {
            return None;
        }
        match self.target {
            Some(target) if self.on_target() => Some(target as f64),
            _ => Some(self.achieved()),
        }
    }

    /// Agent CPU seconds per 100k records written about the driven file.
    pub fn cpu_per_100k(&self) -> Option<f64> {
        let records = self.open_records + self.close_records;
        (records > 0).then(|| self.agent_cpu_s / records as f64 * 100_000.0)
    }

    fn to_json(&self) -> Value {
        json!({
            "target_opens_per_sec": self.target,
            "opens": self.opens,
            "seconds": self.seconds,
            "achieved_opens_per_sec": self.achieved(),
            "open_records": self.open_records,
            "close_records": self.close_records,
            "ringbuf_full": self.ringbuf_full,
            "drain_lag_s": self.drain_lag.as_secs_f64(),
            "agent_cpu_s": self.agent_cpu_s,
            "agent_cpu_s_per_100k_records": self.cpu_per_100k(),
            "zero_loss": self.zero_loss(),
            "sustained_opens_per_sec": self.sustained(),
            "driver_on_target": self.on_target(),
            "store": self.store.map(records::StoreCounters::to_json),
        })
    }
}

pub struct RateResult {
    pub steps: Vec<RateStep>,
}

impl RateResult {
    /// The zero-loss step with the highest sustained rate.
    pub fn best(&self) -> Option<&RateStep> {
        self.steps
            .iter()
            .filter_map(|s| Some((s, s.sustained()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s)
    }

    pub fn unthrottled(&self) -> Option<&RateStep> {
        self.steps.iter().find(|s| s.target.is_none())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "steps": self.steps.iter().map(RateStep::to_json).collect::<Vec<_>>(),
            "best_zero_loss_opens_per_sec": self.best().and_then(RateStep::sustained),
            "max_drive_rule": format!(
                "zero loss = ringbuf_full 0, every open and close written, output complete \
                 within {} s of the driver stopping",
                MAX_DRAIN_LAG.as_secs()
            ),
        })
    }
}

/// Steps the open rate up until a step loses records (or the driver cannot
/// reach the target), then drives as fast as one thread can.
pub fn rate(ctx: &Ctx) -> Result<RateResult> {
    let secs = if ctx.quick { 1.0 } else { 3.0 };
    let mut steps = Vec::new();
    for (i, &target) in RATES.iter().enumerate() {
        let step = rate_step(ctx, &format!("rate-{i}"), Some(target), secs)?;
        eprintln!(
            "bench: agent rate {target}/s: {:.0}/s driven, {} of {} opens written, \
             ringbuf_full {}, drained {:.2} s after",
            step.achieved(),
            step.open_records,
            step.opens,
            step.ringbuf_full,
            step.drain_lag.as_secs_f64()
        );
        let stop = !step.zero_loss() || !step.on_target();
        steps.push(step);
        if stop {
            break;
        }
    }
    let step = rate_step(ctx, "rate-max", None, secs)?;
    eprintln!(
        "bench: agent rate unthrottled: {:.0}/s driven, {} of {} opens written, ringbuf_full {}",
        step.achieved(),
        step.open_records,
        step.opens,
        step.ringbuf_full
    );
    steps.push(step);
    Ok(RateResult { steps })
}

fn rate_step(ctx: &Ctx, name: &str, target: Option<u64>, secs: f64) -> Result<RateStep> {
    let file = ctx.watched_file(&format!("{name}.safetensors"))?;
    let c_file = c_path(&file)?;
    let agent = ctx.start(name)?;
    let cpu_before = procfs::cpu_seconds(agent.pid())?;
    let (opens, elapsed) = drive(&c_file, target, Duration::from_secs_f64(secs), None)?;
    let drain_lag = wait_quiet(agent.output(), Instant::now())?;
    let agent_cpu_s = procfs::cpu_seconds(agent.pid())? - cpu_before;
    let output = agent.output().to_path_buf();
    let db = agent.store().to_path_buf();
    agent.stop()?;
    let scan = records::scan(&output, &file)?;
    let ringbuf_full = stop_counter(&scan, &output, "kernel.ringbuf_full")?;
    let store = scan
        .last_status
        .as_ref()
        .and_then(records::StoreCounters::of);
    // Overload runs write gigabytes; keep only what the report needs.
    fs::remove_file(&output).with_context(|| format!("cannot remove {}", output.display()))?;
    store::remove(&db)?;
    Ok(RateStep {
        target,
        opens,
        seconds: elapsed.as_secs_f64(),
        open_records: scan.opens,
        close_records: scan.closes,
        ringbuf_full,
        drain_lag,
        agent_cpu_s,
        store,
    })
}

pub(super) fn stop_counter(scan: &records::Scan, output: &Path, counter: &str) -> Result<u64> {
    let stop = scan
        .last_status
        .as_ref()
        .filter(|r| r.get("action").and_then(Value::as_str) == Some("sensor_stop"))
        .with_context(|| format!("{} ends without a sensor_stop record", output.display()))?;
    records::counter(stop, counter)
        .with_context(|| format!("the sensor_stop record has no sensor.{counter}: {stop}"))
}

/// open+close of `file` from this thread, paced to `rate` per second
/// (unpaced when `None`), for `duration` or until `max_ops`; returns the
/// pairs made and the time taken.
fn drive(
    file: &CString,
    rate: Option<u64>,
    duration: Duration,
    max_ops: Option<u64>,
) -> Result<(u64, Duration)> {
    const BATCH: u64 = 64;
    let limit = max_ops.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration || done >= limit {
            return Ok((done, elapsed));
        }
        let due = rate.map_or(u64::MAX, |r| (r as f64 * elapsed.as_secs_f64()) as u64);
        if done >= due {
            thread::sleep(Duration::from_micros(50));
            continue;
        }
        let n = (due - done).min(BATCH).min(limit - done);
        for _ in 0..n {
            open_close_once(file)?;
        }
        done += n;
    }
}

/// Waits until the file at `path` has not grown for [`QUIET`]; returns how
/// long after `since` it last grew.
pub(super) fn wait_quiet(path: &Path, since: Instant) -> Result<Duration> {
    let deadline = since + Duration::from_secs(120);
    let mut last_len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut last_change = since;
    loop {
        thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len != last_len {
            last_len = len;
            last_change = now;
        } else if now.duration_since(last_change) >= QUIET {
            return Ok(last_change.saturating_duration_since(since));
        }
        if now > deadline {
            bail!(
                "{} was still growing 120 s after the driver stopped",
                path.display()
            );
        }
    }
}

pub struct BurstResult {
    pub pairs: u64,
    pub seconds: f64,
    pub arrived: u64,
    pub lost: u64,
}

impl BurstResult {
    pub fn to_json(&self) -> Value {
        json!({
            "pairs": self.pairs,
            "records_made": self.pairs * 2,
            "seconds": self.seconds,
            "records_arrived": self.arrived,
            "ringbuf_full": self.lost,
            "ring_buffer_bytes": 8 << 20,
        })
    }
}

/// Stops the agent (SIGSTOP), makes [`BURST_PAIRS`] open+close pairs as
/// fast as possible, resumes it and counts what reached the output.
pub fn burst(ctx: &Ctx) -> Result<BurstResult> {
    let file = ctx.watched_file("burst.safetensors")?;
    let c_file = c_path(&file)?;
    let agent = ctx.start("burst")?;
    agent.signal(Signal::SIGSTOP)?;
    let driven = drive(&c_file, None, Duration::from_secs(60), Some(BURST_PAIRS));
    agent.signal(Signal::SIGCONT)?;
    let (pairs, elapsed) = driven?;
    wait_quiet(agent.output(), Instant::now())?;
    let output = agent.output().to_path_buf();
    agent.stop()?;
    let scan = records::scan(&output, &file)?;
    let lost = stop_counter(&scan, &output, "kernel.ringbuf_full")?;
    Ok(BurstResult {
        pairs,
        seconds: elapsed.as_secs_f64(),
        arrived: scan.opens + scan.closes,
        lost,
    })
}

pub struct MemoryResult {
    pub files: u32,
    pub watched_files: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub startup_s: Vec<f64>,
}

impl MemoryResult {
    pub fn startup_median(&self) -> Option<f64> {
        stats::summarize(&self.startup_s).map(|s| s.median)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "files": self.files,
            "watched_files": self.watched_files,
            "vm_rss_kib": self.rss_kib,
            "vm_hwm_kib": self.hwm_kib,
            "startup_s": self.startup_s,
            "startup_median_s": self.startup_median(),
        })
    }
}

/// Starts the agent on the 100k-file folder (three times, one for quick),
/// timing spawn to `sensor_start`, and reads its memory a second after
/// the first start.
pub fn memory(ctx: &Ctx, files: u32) -> Result<MemoryResult> {
    let starts = if ctx.quick { 1 } else { 3 };
    let mut startup_s = Vec::new();
    let mut result = None;
    for i in 0..starts {
        let agent = Agent::start(
            ctx.binary,
            &[&ctx.layout.many],
            &ctx.layout.run,
            &format!("many-{i}"),
        )?;
        startup_s.push(agent.startup.as_secs_f64());
        if result.is_none() {
            let watched_files = records::counter(&agent.start_record, "watched_files")
                .context("sensor_start has no sensor.watched_files")?;
            thread::sleep(Duration::from_secs(1));
            let mem = procfs::memory(agent.pid())?;
            result = Some((watched_files, mem));
        }
        agent.stop()?;
    }
    let (watched_files, mem) = result.context("the agent was never started")?;
    if watched_files < u64::from(files) {
        bail!(
            "the sensor watches {watched_files} files of {}, which holds {files}: the memory \
             figure would not be for {files} watched files",
            ctx.layout.many.display()
        );
    }
    Ok(MemoryResult {
        files,
        watched_files,
        rss_kib: mem.rss_kib,
        hwm_kib: mem.hwm_kib,
        startup_s,
    })
}

pub struct PolicyResult {
    pub files: u32,
    /// Wall time of each `weightwarden policy check`.
    pub secs: Vec<f64>,
}

impl PolicyResult {
    pub fn median(&self) -> Option<f64> {
        stats::summarize(&self.secs).map(|s| s.median)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "files": self.files,
            "secs": self.secs,
            "median_s": self.median(),
        })
    }
}

/// Runs of each policy row (one for quick).
fn policy_runs(quick: bool) -> u32 {
    if quick { 1 } else { 5 }
}

/// Writes the policy of the policy-compile and policy-reload rows: enforce
/// mode, one weight set (the 100k-file folder), only `/usr/bin/cat`
/// allowed.
fn many_policy(ctx: &Ctx) -> Result<PathBuf> {
    let path = ctx.layout.run.join("policy-100k.toml");
    let text = policy::enforce_allowing("many", &ctx.layout.many, Path::new("/usr/bin/cat"))?;
    policy::write(&path, &text)?;
    Ok(path)
}

/// Times `weightwarden policy check` on a policy whose weight set is the
/// 100k-file folder (five times, one for quick): reading, resolving every
/// file to its identity, hashing and checking, which is what a start-up
/// or a reload does before the swap.
pub fn policy_compile(ctx: &Ctx, files: u32) -> Result<PolicyResult> {
    let policy = many_policy(ctx)?;
    let mut secs = Vec::new();
    for _ in 0..policy_runs(ctx.quick) {
        let started = Instant::now();
        let out = std::process::Command::new(ctx.binary)
            .args(["policy", "check"])
            .arg(&policy)
            .output()
            .context("cannot run weightwarden policy check")?;
        secs.push(started.elapsed().as_secs_f64());
        let text = String::from_utf8_lossy(&out.stdout);
        // `weight set "many": N file(s) from ...`
        let covered: u64 = text
            .split("\"many\": ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if !out.status.success() || covered < u64::from(files) {
            bail!(
                "policy check did not cover the {files} files: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(PolicyResult { files, secs })
}

/// How long a reload may take before the row gives up on it.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ReloadResult {
    pub files: u32,
    /// What the last `policy_loaded` record said of the policy.
    pub loaded: policy::Loaded,
    /// Spawn to `sensor_start` of each agent, the policy loaded, marked
    /// and in the kernel tables.
    pub startup_s: Vec<f64>,
    /// SIGHUP to `policy_loaded`, each agent's first reload: the kernel
    /// tables' idle slot takes every file.
    pub first_s: Vec<f64>,
    /// The same, each agent's second reload: the idle slot already holds
    /// these files, so no file entry is written.
    pub again_s: Vec<f64>,
    /// Reloads started before the machine was idle (after waiting 10 s).
    pub not_idle: u32,
}

impl ReloadResult {
    /// The median first reload: the figure judged.
    pub fn median(&self) -> Option<f64> {
        stats::summarize(&self.first_s).map(|s| s.median)
    }

    pub fn to_json(&self) -> Value {
        let median = |secs: &[f64]| stats::summarize(secs).map(|s| s.median);
        json!({
            "files": self.files,
            "policy_files": self.loaded.files,
            "mechanism": self.loaded.mechanism,
            "startup_s": self.startup_s,
            "startup_median_s": median(&self.startup_s),
            "first_reload_s": self.first_s,
            "first_reload_median_s": median(&self.first_s),
            "second_reload_s": self.again_s,
            "second_reload_median_s": median(&self.again_s),
            "reloads_not_idle": self.not_idle,
            "timed": "SIGHUP sent to the policy_loaded record it causes appearing in the \
                      output (polled every millisecond)",
        })
    }
}

/// Starts the agent enforcing the 100k-file policy, watching that folder
/// (five times, one for quick), and times two reloads of it by SIGHUP:
/// compiling it again, marking every file for fanotify, writing the
/// kernel tables and judging every process, then the `policy_loaded`
/// record.
pub fn policy_reload(ctx: &Ctx, files: u32) -> Result<ReloadResult> {
    let policy = many_policy(ctx)?;
    let (mut startup_s, mut first_s, mut again_s) = (Vec::new(), Vec::new(), Vec::new());
    let mut not_idle = 0;
    let mut loaded = None;
    for i in 0..policy_runs(ctx.quick) {
        let agent = Agent::start_with_policy(
            ctx.binary,
            &[&ctx.layout.many],
            &ctx.layout.run,
            &format!("reload-{i}"),
            Some(&policy),
        )?;
        startup_s.push(agent.startup.as_secs_f64());
        policy::first_loaded(agent.output(), Duration::from_secs(5))?
            .check_enforcing(u64::from(files))?;
        for secs in [&mut first_s, &mut again_s] {
            if !procfs::wait_idle(0.9, Duration::from_millis(250), Duration::from_secs(10))? {
                not_idle += 1;
            }
            let (took, record) = reload_once(&agent, u64::from(files))?;
            eprintln!("bench: policy reload {:.3} s", took.as_secs_f64());
            secs.push(took.as_secs_f64());
            loaded = Some(record);
        }
        agent.stop()?;
    }
    Ok(ReloadResult {
        files,
        loaded: loaded.context("no reload was made")?,
        startup_s,
        first_s,
        again_s,
        not_idle,
    })
}

/// Sends the agent SIGHUP and waits for the `policy_loaded` record of the
/// reload; returns the time between the two and what the record says.
fn reload_once(agent: &Agent, files: u64) -> Result<(Duration, policy::Loaded)> {
    let mut follow = records::Follow::from_end(agent.output())?;
    let started = Instant::now();
    agent.signal(Signal::SIGHUP)?;
    loop {
        let found = follow.poll(&["policy_loaded", "policy_rejected"])?;
        let took = started.elapsed();
        if let Some(record) = found.first() {
            let loaded = policy::Loaded::from_record(record)
                .with_context(|| format!("the reload was not taken: {record}"))?;
            loaded.check_enforcing(files)?;
            return Ok((took, loaded));
        }
        if took > RELOAD_TIMEOUT {
            bail!(
                "no policy_loaded record in {} within {} s of SIGHUP",
                agent.output().display(),
                RELOAD_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
}

pub struct LatencyResult {
    pub opens: u64,
    pub samples_ns: Vec<f64>,
}

impl LatencyResult {
    pub fn p(&self, pct: f64) -> Option<f64> {
        stats::percentile(&self.samples_ns, pct)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "opens": self.opens,
            "records": self.samples_ns.len(),
            "p50_ns": self.p(50.0),
            "p99_ns": self.p(99.0),
            "max_ns": self.p(100.0),
            "samples_ns": self.samples_ns,
            "arrival": "wall clock when an inotify-woken reader of the JSON lines file read \
                        the record, minus the record's `time` (the kernel's timestamp)",
        })
    }
}

/// Opens a watched file every millisecond while a reader thread, woken by
/// inotify, notes when each `open` record appears in the output. A
/// different file each time: a process's repeated opens of one file are
/// summarised in the kernel, only its first is an `open` record at once.
pub fn latency(ctx: &Ctx) -> Result<LatencyResult> {
    let opens: u64 = if ctx.quick { 500 } else { 2000 };
    let files = (0..opens)
        .map(|i| c_path(&ctx.watched_file(&format!("latency-{i}.safetensors"))?))
        .collect::<Result<Vec<_>>>()?;
    let agent = ctx.start("latency")?;
    let output = agent.output().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let tail = {
        // Every latency file's path starts so.
        let prefix = ctx.layout.agent.join("latency-");
        let needle = records::path_needle(&prefix);
        let needle = needle.trim_end_matches('"').to_owned();
        let (output, stop) = (output.clone(), stop.clone());
        thread::spawn(move || tail_open_records(&output, &needle, &stop))
    };
    let start = Instant::now();
    let mut driven = Ok(());
    for i in 0..opens {
        let due = start + LATENCY_SPACING * u32::try_from(i)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        driven = files.get(i as usize).map_or(Ok(()), open_close_once);
        if driven.is_err() {
            break;
        }
    }
    let quiet = wait_quiet(&output, Instant::now());
    stop.store(true, Ordering::Relaxed);
    let arrivals = tail
        .join()
        .map_err(|_| anyhow::anyhow!("the latency reader thread panicked"))?;
    agent.stop()?;
    driven?;
    quiet?;
    let samples_ns: Vec<f64> = arrivals?
        .into_iter()
        .map(|(arrival, time)| (arrival - time) as f64)
        .collect();
    if samples_ns.len() as u64 != opens {
        bail!(
            "the latency probe made {opens} opens but {} open records arrived",
            samples_ns.len()
        );
    }
    Ok(LatencyResult { opens, samples_ns })
}

/// Follows the file at `path`, returning (arrival, record time) in Unix
/// nanoseconds for every `open` record whose line holds `needle`.
fn tail_open_records(path: &Path, needle: &str, stop: &AtomicBool) -> Result<Vec<(i128, i128)>> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .context("cannot create an inotify instance")?;
    inotify
        .add_watch(path, AddWatchFlags::IN_MODIFY)
        .with_context(|| format!("cannot watch {}", path.display()))?;
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut found = Vec::new();
    loop {
        // Drain whatever is there, then sleep until the file changes.
        loop {
            let n = file
                .read(&mut chunk)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            let arrival = unix_now_ns();
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                if records::action_of(&line) != Some("open") || !line.contains(needle) {
                    continue;
                }
                let record: Value = serde_json::from_str(&line)
                    .with_context(|| format!("an open record is not JSON: {line}"))?;
                let time = record
                    .get("time")
                    .and_then(Value::as_str)
                    .and_then(records::parse_rfc3339_ns)
                    .with_context(|| format!("an open record has no RFC 3339 time: {line}"))?;
                found.push((arrival, time));
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(found);
        }
        let mut poll = libc::pollfd {
            fd: inotify.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        unsafe { libc::poll(&mut poll, 1, 50) };
        // Only the wake-up matters; the events themselves are discarded.
        let _ = inotify.read_events();
    }
}

fn unix_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: Option<u64>, opens: u64, written: u64, lost: u64, lag_ms: u64) -> RateStep {
        RateStep {
            target,
            opens,
            seconds: 2.0,
            open_records: written,
            close_records: written,
            ringbuf_full: lost,
            drain_lag: Duration::from_millis(lag_ms),
            agent_cpu_s: 0.5,
            store: None,
        }
    }

    #[test]
    fn zero_loss_needs_every_record_no_ring_loss_and_a_short_drain() {
        assert!(step(Some(50_000), 100_000, 100_000, 0, 20).zero_loss());
        assert!(!step(Some(50_000), 100_000, 99_999, 0, 20).zero_loss());
        assert!(!step(Some(50_000), 100_000, 100_000, 1, 20).zero_loss());
        assert!(!step(Some(50_000), 100_000, 100_000, 0, 1500).zero_loss());
        assert!(step(Some(50_000), 100_000, 0, 0, 0).on_target());
        assert!(!step(Some(100_000), 100_000, 0, 0, 0).on_target());
        assert_eq!(
            step(None, 100_000, 100_000, 0, 0).cpu_per_100k(),
            Some(0.25)
        );
    }

    #[test]
    fn the_best_rate_is_the_highest_clean_step() {
        let result = RateResult {
            steps: vec![
                step(Some(25_000), 50_000, 50_000, 0, 10),
                step(Some(50_000), 100_000, 100_000, 0, 10),
                step(Some(100_000), 200_000, 150_000, 9_000, 900),
                step(None, 600_000, 200_000, 80_000, 900),
            ],
        };
        assert_eq!(result.best().and_then(|s| s.target), Some(50_000));
        assert_eq!(result.unthrottled().map(|s| s.opens), Some(600_000));
        // A driver-limited step with zero loss counts at the rate reached.
        let result = RateResult {
            steps: vec![
                step(Some(100_000), 300_000, 300_000, 0, 10),
                step(Some(150_000), 280_000, 280_000, 0, 10),
                step(None, 270_000, 270_000, 0, 10),
            ],
        };
        let best = result.best().unwrap();
        assert_eq!(best.target, Some(150_000));
        assert_eq!(best.sustained(), Some(140_000.0));
    }

    #[test]
    fn drives_at_the_asked_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        let c = c_path(&path).unwrap();
        let (done, took) = drive(&c, Some(10_000), Duration::from_millis(200), None).unwrap();
        let rate = done as f64 / took.as_secs_f64();
        assert!((7_000.0..=10_100.0).contains(&rate), "{rate}");
        let (done, _) = drive(&c, None, Duration::from_secs(10), Some(1000)).unwrap();
        assert_eq!(done, 1000);
    }
}
