//! Turning a run's [`Results`] into the report: each row's goal and
//! verdict, the workload and agent tables (terminal and Markdown), the
//! `docs/benchmarks.md` page with the machine, kernel and method, and the
//! JSON with every raw sample.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    args::BenchRow,
    bench::{
        Config, Metric, Results, WorkloadRow,
        fixtures::Sizes,
        records, row_name,
        stats::{self, Ratio, Summary},
        store::{self, IngestStep, Timed},
        table::{self, Table},
    },
};

/// Whether a row met its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No goal (a figure to report), or the figures a goal needs are
    /// missing.
    NotJudged,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotJudged => "—",
        }
    }
}

const RSS_GOAL_MIB: f64 = 64.0;
const RATE_GOAL: u64 = 100_000;

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

pub fn title(row: BenchRow, sizes: &Sizes) -> String {
    match row {
        BenchRow::WeightRead => format!(
            "weight load: {} file, 1 MiB sequential reads, warm page cache",
            size(sizes.weight_bytes)
        ),
        BenchRow::WeightMmap => format!(
            "weight load: mmap (MAP_PRIVATE) of a {} file + touch every page",
            size(sizes.weight_bytes)
        ),
        BenchRow::WatchedPread => format!(
            "small reads of a watched file: 4 KiB pread, {} calls",
            table::count(sizes.pread_calls)
        ),
        BenchRow::UnwatchedPread => format!(
            "unrelated I/O: 4 KiB pread of an unwatched file, {} calls",
            table::count(sizes.pread_calls)
        ),
        BenchRow::UnwatchedUringRead => format!(
            "unrelated io_uring I/O: 4 KiB io_uring read of an unwatched file, {} calls",
            table::count(sizes.pread_calls)
        ),
        BenchRow::UnwatchedWrite => format!(
            "unrelated writes: 4 KiB pwrite to an unwatched file, {} calls",
            table::count(sizes.pread_calls)
        ),
        BenchRow::TaintedWrite => format!(
            "writes after reading weights: 4 KiB pwrite to an unwatched file by a process that read a watched one, {} calls",
            table::count(sizes.pread_calls)
        ),
        BenchRow::OpenClose => format!(
            "unrelated open/close storm: {} open+close over {} unwatched files",
            table::count(sizes.storm_calls),
            table::count(u64::from(sizes.storm_files))
        ),
        BenchRow::FileChurn => format!(
            "unrelated file churn: {} create+rename+unlink of unwatched files in an unwatched folder",
            table::count(sizes.churn_calls)
        ),
        BenchRow::PythonLoader => format!(
            "real loader: Python (numpy memmap) loading a watched {} safetensors model",
            size(sizes.model_bytes)
        ),
        BenchRow::ProcessChurn => format!(
            "process churn: {} spawns of /bin/true, each waited for",
            table::count(sizes.spawns)
        ),
        BenchRow::EnforceOpen => format!(
            "open+close of a policy file by the process the policy allows, {} times",
            table::count(sizes.enforce_opens)
        ),
        BenchRow::EnforceRead => format!(
            "4 KiB pread of a policy file by the process the policy allows, {} calls",
            table::count(sizes.pread_calls)
        ),
        other => row_name(other),
    }
}

/// The calls (open+close pairs, preads) a timed run of an enforcement
/// row makes, for its per-call figure.
fn calls(row: BenchRow, sizes: &Sizes) -> Option<u64> {
    match row {
        BenchRow::EnforceOpen => Some(sizes.enforce_opens),
        BenchRow::EnforceRead => Some(sizes.pread_calls),
        _ => None,
    }
}

pub fn goal(row: BenchRow) -> &'static str {
    match row {
        BenchRow::WeightRead | BenchRow::WeightMmap => "<= 1.01",
        BenchRow::WatchedPread => "report; <= floor + 25%",
        BenchRow::UnwatchedPread
        | BenchRow::UnwatchedUringRead
        | BenchRow::UnwatchedWrite
        | BenchRow::FileChurn => "<= 1.25",
        BenchRow::OpenClose => "<= 1.25, and < auditd",
        BenchRow::PythonLoader => "<= 1.02",
        _ => "report",
    }
}

/// The verdict of a workload row from its median ratios to `off`, with a
/// short reason.
pub fn judge(
    row: BenchRow,
    on: Option<f64>,
    auditd: Option<f64>,
    floor: Option<f64>,
) -> (Verdict, String) {
    let Some(on) = on else {
        return (
            Verdict::NotJudged,
            "no figure with the sensor on".to_owned(),
        );
    };
    let bound = |limit: f64| {
        if on <= limit {
            (Verdict::Met, format!("on {on:.3} <= {limit}"))
        } else {
            (Verdict::Missed, format!("on {on:.3} > {limit}"))
        }
    };
    match row {
        BenchRow::WeightRead | BenchRow::WeightMmap => bound(1.01),
        BenchRow::PythonLoader => bound(1.02),
        BenchRow::UnwatchedPread
        | BenchRow::UnwatchedUringRead
        | BenchRow::UnwatchedWrite
        | BenchRow::FileChurn => bound(1.25),
        BenchRow::OpenClose => {
            let (verdict, reason) = bound(1.25);
            match auditd {
                None if verdict == Verdict::Missed => (verdict, reason),
                None => (
                    Verdict::NotJudged,
                    format!("{reason}; auditd not measured, so not compared"),
                ),
                Some(a) if on < a => (verdict, format!("{reason}, < auditd {a:.3}")),
                Some(a) => (
                    Verdict::Missed,
                    format!("{reason}, and not below auditd {a:.3}"),
                ),
            }
        }
        BenchRow::WatchedPread => match floor {
            None => (
                Verdict::NotJudged,
                "floor not measured, so not compared".to_owned(),
            ),
            Some(f) => {
                let over = on / f;
                if over <= 1.25 {
                    (Verdict::Met, format!("on/floor {over:.3} <= 1.25"))
                } else {
                    (Verdict::Missed, format!("on/floor {over:.3} > 1.25"))
                }
            }
        },
        _ => (Verdict::NotJudged, String::new()),
    }
}

/// The baseline summary and each configuration's ratio to it.
struct Figures {
    off: Option<Summary>,
    ratios: Vec<(Config, Option<Ratio>)>,
}

/// A configuration's samples: one per repetition, the median of its
/// timed runs.
fn samples(w: &WorkloadRow, config: Config) -> Vec<f64> {
    w.runs
        .get(&config)
        .map(|reps| {
            reps.iter()
                .filter_map(|runs| stats::summarize(runs).map(|s| s.median))
                .collect()
        })
        .unwrap_or_default()
}

/// The baseline and the ratio to it of every other configuration the row
/// was measured under.
fn figures(w: &WorkloadRow) -> Figures {
    let off = samples(w, Config::Off);
    Figures {
        off: stats::summarize(&off),
        ratios: w
            .runs
            .keys()
            .filter(|c| **c != Config::Off)
            .map(|&c| (c, stats::ratio(&samples(w, c), &off)))
            .collect(),
    }
}

/// What the policy alone costs the allowed process: `enforce` over `on`
/// (the sensor without a policy).
fn policy_ratio(w: &WorkloadRow) -> Option<Ratio> {
    stats::ratio(&samples(w, Config::Enforce), &samples(w, Config::On))
}

/// The same difference per call: median time under `enforce` less the
/// median under `on`, over the calls of a timed run.
fn policy_cost_per_call_ns(w: &WorkloadRow, sizes: &Sizes) -> Option<f64> {
    let calls = calls(w.row, sizes)?;
    let median = |c| stats::summarize(&samples(w, c)).map(|s| s.median);
    Some((median(Config::Enforce)? - median(Config::On)?) / calls as f64)
}

impl Figures {
    fn ratio(&self, config: Config) -> Option<Ratio> {
        self.ratios
            .iter()
            .find(|(c, _)| *c == config)
            .and_then(|(_, r)| *r)
    }
}

fn workload_verdict(w: &WorkloadRow) -> (Verdict, String) {
    if let Some(reason) = &w.unavailable {
        return (Verdict::NotJudged, format!("unavailable: {reason}"));
    }
    let f = figures(w);
    let median = |c| f.ratio(c).map(|r| r.median);
    judge(
        w.row,
        median(Config::On),
        median(Config::Auditd),
        median(Config::Floor),
    )
}

fn workload_table(results: &Results) -> Table {
    let mut t = Table::new(&[
        "workload",
        "goal (ratio to off)",
        "off median (min–max)",
        "on",
        "auditd",
        "floor",
        "verdict",
    ]);
    for w in &results.workloads {
        let f = figures(w);
        let off = off_cell(w, &f);
        let cell = |config: Config| ratio_cell(results, f.ratio(config), config);
        let (verdict, reason) = workload_verdict(w);
        let verdict = if reason.is_empty() {
            verdict.as_str().to_owned()
        } else {
            format!("{} ({reason})", verdict.as_str())
        };
        t.row(vec![
            title(w.row, &results.sizes),
            goal(w.row).to_owned(),
            off,
            cell(Config::On),
            cell(Config::Auditd),
            cell(Config::Floor),
            verdict,
        ]);
    }
    t
}

/// `median (min–max)` of the baseline.
fn off_cell(w: &WorkloadRow, f: &Figures) -> String {
    match (&w.unavailable, f.off) {
        (Some(_), _) => "unavailable".to_owned(),
        (None, Some(s)) => format!(
            "{} ({}–{})",
            table::duration_ns(s.median),
            table::duration_ns(s.min),
            table::duration_ns(s.max)
        ),
        (None, None) => "—".to_owned(),
    }
}

/// A ratio and its spread, or why there is none.
fn ratio_cell(results: &Results, ratio: Option<Ratio>, config: Config) -> String {
    match ratio {
        Some(r) => table::ratio(r.median, r.min, r.max),
        None if results.config_unavailable.contains_key(&config) => "unavailable".to_owned(),
        None => "—".to_owned(),
    }
}

/// The enforcement rows: each configuration's ratio to off, then what
/// the policy adds to the sensor, as a ratio and per call.
fn enforcement_table(results: &Results) -> Table {
    let mut t = Table::new(&[
        "workload",
        "goal",
        "off median (min–max)",
        "on, no policy",
        "enforce",
        "enforce / on",
        "enforce − on, per call",
    ]);
    for w in &results.enforcement {
        let f = figures(w);
        let cell = |config: Config| ratio_cell(results, f.ratio(config), config);
        t.row(vec![
            title(w.row, &results.sizes),
            goal(w.row).to_owned(),
            off_cell(w, &f),
            cell(Config::On),
            cell(Config::Enforce),
            ratio_cell(results, policy_ratio(w), Config::Enforce),
            policy_cost_per_call_ns(w, &results.sizes)
                .map_or_else(|| "—".to_owned(), table::signed_duration_ns),
        ]);
    }
    t
}

/// `0.612 s (median of 5: 0.600–0.700 s)`, or the one figure.
fn secs_spread(secs: &[f64]) -> String {
    match stats::summarize(secs) {
        Some(s) if s.n > 1 => format!(
            "{:.3} s (median of {}: {:.3}–{:.3} s)",
            s.median, s.n, s.min, s.max
        ),
        Some(s) => format!("{:.3} s", s.median),
        None => "—".to_owned(),
    }
}

fn failed<T>(metric: &Metric<T>) -> Option<&str> {
    match metric {
        Some(Err(err)) => Some(err),
        _ => None,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The agent table, and the goals it shows missed.
fn agent_table(results: &Results) -> (Table, Vec<String>) {
    let mut t = Table::new(&["metric", "goal", "result", "verdict"]);
    let mut missed = Vec::new();
    let a = &results.agent;
    let error_row = |t: &mut Table, metric: &str, goal: &str, err: &str| {
        t.row(vec![
            metric.to_owned(),
            goal.to_owned(),
            format!("failed: {err}"),
            if goal == "report" { "—" } else { "missed" }.to_owned(),
        ]);
    };

    const RATE: &str = "sustained watched-file opens/s with zero loss (kernel → JSON lines)";
    if let Some(err) = failed(&a.rate) {
        error_row(&mut t, RATE, ">= 100,000/s", err);
        missed.push(format!("{RATE}: the measurement failed: {err}"));
    }
    if let Some(Ok(rate)) = &a.rate {
        let best = rate.best().and_then(|s| Some((s, s.sustained()?)));
        let first_fail = rate
            .steps
            .iter()
            .find(|s| s.target.is_some() && !(s.zero_loss() && s.on_target()));
        let mut result = match best {
            Some((s, r)) if s.on_target() && s.target.is_some() => {
                format!("{}/s", table::count(r as u64))
            }
            Some((_, r)) => format!("{}/s (all the driver reached)", table::count(r as u64)),
            None => "none of the steps".to_owned(),
        };
        if let Some(s) = first_fail {
            let _ = write!(
                result,
                "; at {}/s: {}",
                table::count(s.target.unwrap_or(0)),
                step_outcome(s)
            );
        }
        let met = best.is_some_and(|(_, r)| r >= RATE_GOAL as f64);
        if !met {
            missed.push(format!("{RATE}: {result} (goal >= 100,000/s)"));
        }
        t.row(vec![
            RATE.to_owned(),
            ">= 100,000/s".to_owned(),
            result,
            if met { "met" } else { "missed" }.to_owned(),
        ]);
        if let Some(s) = rate.unthrottled() {
            t.row(vec![
                "one driver thread, unthrottled".to_owned(),
                "report".to_owned(),
                step_outcome(s),
                "—".to_owned(),
            ]);
        }
        let cpu = best.map(|(s, _)| s).or(rate.steps.first());
        if let Some((s, cpu)) = cpu.and_then(|s| Some((s, s.cpu_per_100k()?))) {
            t.row(vec![
                "agent CPU per 100k records".to_owned(),
                "report".to_owned(),
                format!(
                    "{cpu:.3} CPU-s (user+system, open and close records, at {} opens/s)",
                    table::count(s.achieved().round() as u64)
                ),
                "—".to_owned(),
            ]);
        }
    }

    const BURST: &str = "burst absorbed by the ring buffer (8 MiB default, agent stopped)";
    if let Some(err) = failed(&a.burst) {
        error_row(&mut t, BURST, "report", err);
    }
    if let Some(Ok(b)) = &a.burst {
        let result = if b.lost > 0 {
            format!(
                "{} records (~{} open+close pairs); {} of {} made were lost",
                table::count(b.arrived),
                table::count(b.arrived / 2),
                table::count(b.lost),
                table::count(b.pairs * 2)
            )
        } else {
            format!(
                "all {} records made (no loss, so the ring holds more)",
                table::count(b.arrived)
            )
        };
        t.row(vec![
            BURST.to_owned(),
            "report".to_owned(),
            result,
            "—".to_owned(),
        ]);
    }

    let files = table::count(u64::from(results.sizes.many_files));
    let rss = format!("resident memory, {files} watched files");
    let startup = format!("start-up, {files} watched files (spawn → sensor_start)");
    if let Some(err) = failed(&a.memory) {
        error_row(&mut t, &rss, "<= 64 MiB", err);
        missed.push(format!("{rss}: the measurement failed: {err}"));
    }
    if let Some(Ok(m)) = &a.memory {
        let met = mib(m.rss_kib) <= RSS_GOAL_MIB;
        let result = format!(
            "VmRSS {:.1} MiB (peak VmHWM {:.1} MiB), {} files in the watch map",
            mib(m.rss_kib),
            mib(m.hwm_kib),
            table::count(m.watched_files)
        );
        if !met {
            missed.push(format!("{rss}: {result} (goal <= 64 MiB)"));
        }
        t.row(vec![
            rss,
            "<= 64 MiB".to_owned(),
            result,
            if met { "met" } else { "missed" }.to_owned(),
        ]);
        let spread = stats::summarize(&m.startup_s);
        t.row(vec![
            startup,
            "report".to_owned(),
            match spread {
                Some(s) if s.n > 1 => format!(
                    "{:.2} s (median of {}: {:.2}–{:.2} s)",
                    s.median, s.n, s.min, s.max
                ),
                Some(s) => format!("{:.2} s", s.median),
                None => "—".to_owned(),
            },
            "—".to_owned(),
        ]);
    }

    let compile = format!("policy compile and check, {files} files (`policy check`)");
    if let Some(err) = failed(&a.policy) {
        error_row(&mut t, &compile, "< 1 s", err);
        missed.push(format!("{compile}: the measurement failed: {err}"));
    }
    if let Some(Ok(p)) = &a.policy {
        let median = p.median().unwrap_or(f64::INFINITY);
        let met = median < 1.0;
        let result = secs_spread(&p.secs);
        if !met {
            missed.push(format!("{compile}: {result} (goal < 1 s)"));
        }
        t.row(vec![
            compile,
            "< 1 s".to_owned(),
            result,
            if met { "met" } else { "missed" }.to_owned(),
        ]);
    }

    let reload = format!(
        "policy reload, {files} files, enforce mode (SIGHUP → `policy_loaded`; an agent's first \
         and second reload)"
    );
    if let Some(err) = failed(&a.reload) {
        error_row(&mut t, &reload, "< 1 s", err);
        missed.push(format!("{reload}: the measurement failed: {err}"));
    }
    if let Some(Ok(r)) = &a.reload {
        let met = r.median().is_some_and(|m| m < 1.0);
        let mut result = format!(
            "first {}; second {}; start-up with the policy {}; enforced by `{}`",
            secs_spread(&r.first_s),
            secs_spread(&r.again_s),
            secs_spread(&r.startup_s),
            r.loaded.mechanism
        );
        if r.not_idle > 0 {
            let _ = write!(
                result,
                " ({} of the reloads began before the machine was idle)",
                r.not_idle
            );
        }
        if !met {
            missed.push(format!("{reload}: {result} (goal < 1 s)"));
        }
        t.row(vec![
            reload,
            "< 1 s".to_owned(),
            result,
            if met { "met" } else { "missed" }.to_owned(),
        ]);
    }

    const LATENCY: &str = "end-to-end latency, syscall → record written (p50, p99)";
    if let Some(err) = failed(&a.latency) {
        error_row(&mut t, LATENCY, "report", err);
    }
    if let Some(Ok(l)) = &a.latency {
        let ms = |p: f64| {
            l.p(p)
                .map_or("—".to_owned(), |ns| format!("{:.3} ms", ns / 1e6))
        };
        t.row(vec![
            LATENCY.to_owned(),
            "report".to_owned(),
            format!(
                "p50 {}, p99 {}, max {} ({} opens, 1 ms apart)",
                ms(50.0),
                ms(99.0),
                ms(100.0),
                table::count(l.opens)
            ),
            "—".to_owned(),
        ]);
    }
    (t, missed)
}

/// `110.3 ms (median of 5: 98.1 ms–130.2 ms)`, or the one figure.
fn ms_spread(secs: &[f64]) -> String {
    let ms = |s: f64| table::duration_ns(s * 1e9);
    match stats::summarize(secs) {
        Some(s) if s.n > 1 => format!(
            "{} (median of {}: {}–{})",
            ms(s.median),
            s.n,
            ms(s.min),
            ms(s.max)
        ),
        Some(s) => ms(s.median),
        None => "—".to_owned(),
    }
}

fn per_sec(rate: f64) -> String {
    format!("{}/s", table::count(rate.round() as u64))
}

/// What one step of the store's capture ramp drove, and what the outputs
/// and the store got of it.
fn ingest_outcome(s: &IngestStep) -> String {
    let driven = if s.on_target() {
        format!("driven at {}", per_sec(s.driven()))
    } else {
        format!("the driver reached only {}", per_sec(s.driven()))
    };
    let mut text = format!(
        "{driven} ({} open+close pairs by {} processes); the outputs wrote {} records ({}); \
         the store kept {}",
        table::count(s.pairs),
        table::count(s.pairs / store::FILES_PER_PROCESS as u64),
        table::count(s.output_records),
        per_sec(s.record_rate()),
        if s.kept == s.output_records {
            "all".to_owned()
        } else {
            table::count(s.kept)
        },
    );
    if s.kept != s.output_records || s.counters.lost() > 0 {
        let _ = write!(
            text,
            ", {} missing (lost by sensor_stop's count: {})",
            table::count(s.missing()),
            s.counters.lost_by_reason()
        );
    }
    if s.ringbuf_full > 0 {
        let _ = write!(
            text,
            "; {} lost in the kernel (ringbuf_full), for the outputs too",
            table::count(s.ringbuf_full)
        );
    }
    if s.drain_lag > crate::bench::agent::MAX_DRAIN_LAG {
        let _ = write!(
            text,
            "; the output was complete {:.2} s after the driver stopped",
            s.drain_lag.as_secs_f64()
        );
    }
    text
}

/// `met`/`missed` for a goal whose figure may be missing.
fn met(ok: bool) -> String {
    if ok { "met" } else { "missed" }.to_owned()
}

/// Whether any agent row ran (the section is left out otherwise).
fn agent_ran(results: &Results) -> bool {
    let a = &results.agent;
    a.rate.is_some()
        || a.burst.is_some()
        || a.memory.is_some()
        || a.latency.is_some()
        || a.policy.is_some()
        || a.reload.is_some()
}

/// Whether any audit store row ran (the section is left out otherwise).
fn store_ran(results: &Results) -> bool {
    results.store.ingest.is_some() || results.store.synthetic.is_some()
}

/// `1 record`, `2 records`, `1,000 records`.
fn records_count(n: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} record{s}", table::count(n))
}

/// What kept a step's records from reaching the outputs at its target:
/// the driver, the kernel (ring buffer full), the agent (output trailing
/// the driver). Empty when nothing did.
fn upstream_limits(s: &IngestStep) -> Vec<String> {
    let mut limits = Vec::new();
    if !s.on_target() {
        limits.push(format!("the driver reached only {}", per_sec(s.driven())));
    }
    if s.ringbuf_full > 0 {
        limits.push(format!(
            "the kernel lost {} records (ringbuf_full)",
            table::count(s.ringbuf_full)
        ));
    }
    if s.drain_lag > crate::bench::agent::MAX_DRAIN_LAG {
        limits.push(format!(
            "the output was complete {:.2} s after the driver stopped",
            s.drain_lag.as_secs_f64()
        ));
    }
    limits
}

/// The audit store table, and the goals it shows missed.
fn store_table(results: &Results) -> (Table, Vec<String>) {
    let mut t = Table::new(&["metric", "goal", "result", "verdict"]);
    let mut missed = Vec::new();
    let s = &results.store;
    let goal_rate = format!(">= {}", per_sec(store::INGEST_GOAL));

    const INGEST: &str = "records/s the audit store keeps, capture running (every record the \
                          outputs wrote)";
    if let Some(err) = failed(&s.ingest) {
        t.row(vec![
            INGEST.to_owned(),
            goal_rate.clone(),
            format!("failed: {err}"),
            "missed".to_owned(),
        ]);
        missed.push(format!("{INGEST}: the measurement failed: {err}"));
    }
    if let Some(Ok(ingest)) = &s.ingest {
        let best = ingest.best().and_then(|s| Some((s, s.sustained()?)));
        let mut result = match best {
            Some((s, r)) if r < s.target as f64 => format!(
                "{}, all that reached the outputs at the {} step ({}: the capture's limit, \
                 not the store's)",
                per_sec(r),
                per_sec(s.target as f64),
                upstream_limits(s).join(", ")
            ),
            Some((_, r)) => per_sec(r),
            None => format!(
                "none of the steps (the lowest: {})",
                per_sec(store::INGEST_RATES[0] as f64)
            ),
        };
        match ingest.steps.iter().find(|s| !s.kept_all()) {
            Some(s) => {
                let _ = write!(
                    result,
                    "; at {}: the store kept {} of {}",
                    per_sec(s.target as f64),
                    table::count(s.kept),
                    table::count(s.output_records)
                );
            }
            None => result.push_str("; the store kept every record at every step"),
        }
        let ok = best.is_some_and(|(_, r)| r >= store::INGEST_GOAL);
        if !ok {
            missed.push(format!("{INGEST}: {result} (goal {goal_rate})"));
        }
        t.row(vec![INGEST.to_owned(), goal_rate.clone(), result, met(ok)]);
        for step in &ingest.steps {
            t.row(vec![
                format!(
                    "store at {} target, capture running ({:.0} s)",
                    per_sec(step.target as f64),
                    ingest.secs_per_step
                ),
                "report".to_owned(),
                ingest_outcome(step),
                "—".to_owned(),
            ]);
        }
    }

    let records = table::count(results.sizes.store_records);
    let synthetic = format!("store of {records} synthetic records (`bench-store`)");
    if let Some(err) = failed(&s.synthetic) {
        t.row(vec![
            synthetic.clone(),
            "<= 200 ms a query, verify >= 1,000,000/s".to_owned(),
            format!("failed: {err}"),
            "missed".to_owned(),
        ]);
        missed.push(format!("{synthetic}: the measurement failed: {err}"));
    }
    if let Some(Ok(r)) = &s.synthetic {
        let n = table::count(r.ingest.records);
        let mut ingest = format!(
            "{} ({n} in {:.1} s)",
            per_sec(r.ingest.records_per_sec),
            r.ingest.seconds
        );
        if r.ingest.lost > 0 {
            let _ = write!(ingest, "; {} lost", table::count(r.ingest.lost));
        }
        t.row(vec![
            format!(
                "store ingest, the writer alone (`bench-store`: {n} synthetic records over {} \
                 days, no capture)",
                store::SYNTHETIC_DAYS
            ),
            "report".to_owned(),
            ingest,
            "—".to_owned(),
        ]);
        t.row(vec![
            "store size per million records".to_owned(),
            "report".to_owned(),
            match r.ingest.bytes_per_million() {
                Some(b) => format!(
                    "{} MiB per million records ({} bytes a record; {:.2} GiB for {n})",
                    table::count((b / (1 << 20) as f64).round() as u64),
                    table::count((b / 1e6).round() as u64),
                    r.ingest.db_bytes as f64 / (1u64 << 30) as f64
                ),
                None => "—".to_owned(),
            },
            "—".to_owned(),
        ]);
        let mut query_row = |title: String, timed: &Timed, answer: String| {
            let median = timed.median();
            let ok = median.is_some_and(|m| m <= store::QUERY_GOAL_S);
            let result = format!("{}; {answer}", ms_spread(&timed.secs));
            if !ok {
                missed.push(format!("{title}: {result} (goal <= 200 ms)"));
            }
            t.row(vec![title, "<= 200 ms".to_owned(), result, met(ok)]);
        };
        query_row(
            format!(
                "`query --path {} --since {} --json --limit 0`, {n} records",
                store::QUERY_PATH,
                store::WINDOW
            ),
            &r.query,
            records_count(r.query.rows),
        );
        query_row(
            format!("`timeline --pid PID --json` (a process of the last hour), {n} records"),
            &r.timeline,
            if r.timeline.rows == 1 {
                // bench-store gives a process's records start times
                // further apart than the 50 ms that makes them one process.
                format!(
                    "1 record (pid {}: bench-store's records of one process carry start times \
                     too far apart for timeline to join them)",
                    r.pid
                )
            } else {
                format!("{} (pid {})", records_count(r.timeline.rows), r.pid)
            },
        );
        query_row(
            format!("`stats --since {} --json`, {n} records", store::WINDOW),
            &r.stats,
            format!("{} in the window", records_count(r.stats.rows)),
        );
        let title = format!("`verify`, the whole chain of {n} records");
        let goal = format!(">= {}", per_sec(store::VERIFY_GOAL));
        let rate = r.verify_rate();
        let result = format!(
            "{} ({} records: {})",
            rate.map_or_else(|| "—".to_owned(), per_sec),
            table::count(r.verify.rows),
            secs_spread(&r.verify.secs)
        );
        let ok = rate.is_some_and(|v| v >= store::VERIFY_GOAL);
        if !ok {
            missed.push(format!("{title}: {result} (goal {goal})"));
        }
        t.row(vec![title, goal, result, met(ok)]);
    }
    (t, missed)
}

fn step_outcome(s: &crate::bench::agent::RateStep) -> String {
    let driven = table::count(s.achieved().round() as u64);
    let driven = if s.on_target() {
        format!("driven at {driven}/s")
    } else {
        format!("the driver reached only {driven}/s")
    };
    let mut text = format!(
        "{driven}, {} opens and {} closes of {} written, {} lost in the kernel, output \
         complete {:.2} s after the driver stopped",
        table::count(s.open_records),
        table::count(s.close_records),
        table::count(s.opens),
        table::count(s.ringbuf_full),
        s.drain_lag.as_secs_f64()
    );
    // The outputs have what the store lost: not a loss of this row.
    if let Some(store) = s.store.filter(|c| c.lost() > 0) {
        let _ = write!(
            text,
            "; the audit store lost {} of the agent's records, which the outputs have",
            store.lost_by_reason()
        );
    }
    text
}

/// The terminal report.
pub fn plain(results: &Results) -> String {
    let mut out = String::new();
    if !results.workloads.is_empty() {
        out.push_str(&workload_table(results).plain());
        out.push('\n');
    }
    if !results.enforcement.is_empty() {
        out.push_str(&enforcement_table(results).plain());
        out.push('\n');
    }
    let (agent, mut missed) = agent_table(results);
    if agent_ran(results) {
        out.push_str(&agent.plain());
    }
    if store_ran(results) {
        let (store, store_missed) = store_table(results);
        if agent_ran(results) {
            out.push('\n');
        }
        out.push_str(&store.plain());
        missed.extend(store_missed);
    }
    if crate::bench::outputs::ran(&results.outputs) {
        let (outputs, outputs_missed) = crate::bench::outputs::table(&results.outputs);
        out.push('\n');
        out.push_str(&outputs.plain());
        missed.extend(outputs_missed);
    }
    let missed = missed_goals(results, missed);
    if !missed.is_empty() {
        out.push_str("\ngoals missed:\n");
        for m in missed {
            let _ = writeln!(out, "- {m}");
        }
    }
    out
}

fn missed_goals(results: &Results, agent_missed: Vec<String>) -> Vec<String> {
    let mut missed: Vec<String> = results
        .workloads
        .iter()
        .chain(&results.enforcement)
        .filter_map(|w| {
            let (verdict, reason) = workload_verdict(w);
            (verdict == Verdict::Missed).then(|| {
                format!(
                    "{} (goal {}): {reason}",
                    title(w.row, &results.sizes),
                    goal(w.row)
                )
            })
        })
        .collect();
    missed.extend(agent_missed);
    missed
}

/// `docs/benchmarks.md`.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let mode = match (results.quick, results.partial) {
        (false, false) => "full".to_owned(),
        (true, false) => "quick (reduced sizes)".to_owned(),
        (quick, true) => format!(
            "{}, selected rows only",
            if quick { "quick" } else { "full" }
        ),
    };
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (issue 3); do not edit by hand, run it again. \
         Raw samples of this run are in `target/bench/results.json`.\n\n\
         ## Where it ran\n"
    );
    let mut where_ = Table::new(&["", ""]);
    where_.row(vec!["date".into(), records::format_utc(results.unix_time)]);
    where_.row(vec![
        "CPU".into(),
        format!("{} ({} logical CPUs)", m.cpu_model, m.logical_cpus),
    ]);
    where_.row(vec![
        "memory".into(),
        format!("{:.1} GiB", m.mem_total_kib as f64 / (1024.0 * 1024.0)),
    ]);
    where_.row(vec!["kernel".into(), m.kernel.clone()]);
    where_.row(vec!["OS".into(), m.os.clone()]);
    where_.row(vec!["sensor".into(), results.sensor.clone()]);
    where_.row(vec![
        "auditd".into(),
        match (
            &results.auditd_version,
            results.config_unavailable.get(&Config::Auditd),
        ) {
            (_, Some(reason)) => format!("unavailable: {reason}"),
            (Some(v), None) => format!("Debian auditd {v}"),
            (None, None) => "not run".into(),
        },
    ]);
    where_.row(vec![
        "run".into(),
        format!("{mode}, {} repetitions", results.runs),
    ]);
    md.push_str(&where_.markdown());

    if !results.workloads.is_empty() {
        let _ = writeln!(md, "\n## Workloads\n");
        md.push_str(&workload_table(results).markdown());
        let _ = writeln!(
            md,
            "\nEach cell is the ratio of medians, time with the configuration over time with \
             the sensor off (lower is better; 1.000 = no cost); in parentheses, the lowest and \
             highest ratio of a repetition to the baseline of the same repetition. \
             `floor` is empty eBPF programs on the same hooks: what the kernel charges for \
             running any program there. Verdicts follow the medians; where a range straddles \
             its goal, it shows how far this machine's own noise reaches."
        );
    }

    if !results.enforcement.is_empty() {
        let _ = writeln!(md, "\n## Policy enforcement\n");
        md.push_str(&enforcement_table(results).markdown());
        let mechanism = results
            .enforce_mechanism
            .as_deref()
            .map_or_else(String::new, |m| {
                format!(" This run's policy was enforced by `{m}` (its `policy_loaded` record).")
            });
        let _ = writeln!(
            md,
            "\nThe same method, with three configurations of their own: **off**; **on**, the \
             sensor watching the workload's folder without a policy; **enforce**, the same with \
             an enforce-mode policy over that folder that allows the workload's executable and \
             denies everything else, so these figures are what enforcing costs a process it lets \
             through. `on` and `enforce` are ratios to off as above; `enforce / on` is the \
             policy's own cost, the ratio of their medians (in parentheses, the lowest and \
             highest of a repetition's enforce over the same repetition's on); the last column \
             is the difference of the medians per call.{mechanism}"
        );
    }

    let (agent, mut agent_missed) = agent_table(results);
    if agent_ran(results) {
        let _ = writeln!(md, "\n## Agent\n");
        md.push_str(&agent.markdown());
    }
    if store_ran(results) {
        let (store, store_missed) = store_table(results);
        let _ = writeln!(md, "\n## Audit store\n");
        md.push_str(&store.markdown());
        let _ = writeln!(
            md,
            "\nThe agent's embedded SQLite store ([store.md](store.md)), issue 10. With capture \
             running, what matters is that the store keeps every record the outputs wrote; the \
             queries and `verify` are each a fresh `weightwarden` process on a store filled by \
             `bench-store`, timed from spawn to exit."
        );
        agent_missed.extend(store_missed);
    }
    if crate::bench::outputs::ran(&results.outputs) {
        let (outputs, outputs_missed) = crate::bench::outputs::table(&results.outputs);
        let _ = writeln!(md, "\n## Outputs\n");
        md.push_str(&outputs.markdown());
        let _ = writeln!(
            md,
            "\nIssue 11: each output writes on its own thread ([outputs.md](outputs.md)); \
             the native encoding is made on the event loop, OCSF and ECS on a thread per \
             encoding. The OCSF and ECS rows run a second output beside the native one, so \
             their CPU is both encodings' (and the audit store's); a step's `lost` counts \
             what that output dropped or failed to write."
        );
        agent_missed.extend(outputs_missed);
    }

    let missed = missed_goals(results, agent_missed);
    let _ = writeln!(md, "\n## Goals missed\n");
    if missed.is_empty() {
        let _ = writeln!(md, "None: every goal judged in this run was met.");
    } else {
        for m in &missed {
            let _ = writeln!(md, "- **Missed**: {m}");
        }
        let _ = writeln!(
            md,
            "\nWhere the time goes and why each miss remains, measured per program: \
             [performance.md](performance.md)."
        );
    }
    let not_judged: Vec<String> = results
        .workloads
        .iter()
        .chain(&results.enforcement)
        .filter_map(|w| {
            let (verdict, reason) = workload_verdict(w);
            (verdict == Verdict::NotJudged && goal(w.row) != "report")
                .then(|| format!("{}: {reason}", title(w.row, &results.sizes)))
        })
        .collect();
    if !not_judged.is_empty() {
        let _ = writeln!(md, "\nNot judged:\n");
        for n in not_judged {
            let _ = writeln!(md, "- {n}");
        }
    }

    let _ = writeln!(md, "\n## Method\n");
    for line in method(results) {
        let _ = writeln!(md, "- {line}");
    }
    if !results.notes.is_empty() || !results.config_unavailable.is_empty() {
        let _ = writeln!(md, "\n## Notes from this run\n");
        for (config, reason) in &results.config_unavailable {
            let _ = writeln!(md, "- `{config}` unavailable: {reason}");
        }
        for note in &results.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

fn method(results: &Results) -> Vec<String> {
    let floor = results
        .floor_hooks
        .map_or(String::new(), |n| format!(" ({n} attachments)"));
    vec![
        format!(
            "Configurations: **off** (nothing loaded); **on**: the release \
             `weightwarden run --watch <models> --output jsonl:<file> --config <empty file>`, \
             the default configuration (8 MiB ring buffer, 32-bit syscall capture on); \
             **auditd**: Debian's auditd in the foreground with the one rule \
             `-w <models> -p r -k weightwarden-bench`; **floor**: `weightwarden bench-floor`, \
             empty programs on every hook `run` attaches{floor}."
        ),
        format!(
            "Each of the {} repetitions runs every configuration once, in an order rotated by \
             one place per repetition, so drift of the machine spreads over all of them and no \
             configuration always follows another. The baseline is therefore measured as \
             often, and as spread out, as the others.",
            results.runs
        ),
        "Every measurement is a fresh process started after its configuration was up \
         (the kernel audits only processes created while auditing is on), once the machine \
         has been 90% idle for 250 ms: it runs the workload once untimed (warm-up; the page \
         cache is warm), then timed with `Instant`: 5 runs for the weight-load and Python \
         rows, 3 for the open/close storm, the two churn rows and the enforced open row, 1 \
         for the pread rows (which last seconds); the repetition's sample is the median of its timed runs. Workloads are Rust loops \
         calling libc directly (`read` of 1 MiB, `mmap` + one volatile byte read per 4 KiB \
         page, `pread` of 4 KiB at offsets cycling through a 64 MiB file, `open`+`close`; \
         the file-churn row creates (`open(O_CREAT | O_EXCL)` + `close`), renames and \
         unlinks files by absolute path in a folder nobody watches, cycling through 1,000 \
         names; the process-churn row spawns `/bin/true` with `std::process::Command` and waits for it); \
         the Python row runs Debian's `/usr/bin/python3`, which times its own loads (one \
         `mmap` of the model, then a sum over every tensor)."
            .to_owned(),
        "Between auditd sessions the kernel keeps a `-a never,task` rule: once auditing \
         has been enabled, new processes otherwise carry an audit context (a slower \
         syscall path) until reboot, which would slow the other configurations too. \
         The rules and the enabled flag are restored at the end."
            .to_owned(),
        format!(
            "Files live in {} (a disk, not tmpfs); the weight and model files are \
             safetensors-shaped and written once.",
            results.bench_dir.display()
        ),
        "Sustained rate: one thread opens and closes a watched file at a target rate \
         (25k, 50k, 100k, 150k, 200k, 300k, 400k/s, stopping at the first failure) for 3 s \
         (1 s quick), against a fresh agent. Zero loss means `ringbuf_full` stayed 0, \
         every open and every close reached the JSON lines file, and the file was complete \
         within 1 s of the driver stopping (an agent that cannot keep up trails further). \
         The agent's CPU (utime+stime from /proc) is taken over the best step."
            .to_owned(),
        "Burst: the agent is stopped (SIGSTOP), 100,000 open+close pairs are made as fast \
         as possible, then it is resumed; what reached the output is what the 8 MiB ring \
         held."
            .to_owned(),
        "Memory and start-up: the agent watches 100,000 header-only `.safetensors` files in \
         100 folders; start-up is spawn to the `sensor_start` record appearing (polled every \
         2 ms); VmRSS/VmHWM are read from /proc one second after start. The goal is judged \
         on VmRSS."
            .to_owned(),
        "Policy compile: `weightwarden policy check` on a policy whose one weight set is \
         the 100,000-file folder, wall time from spawn to exit (5 runs, 1 quick): the file \
         read, every file resolved to its (device, inode), the text hashed, the rules \
         checked. A start-up or a reload does the same before the swap, plus one fanotify \
         mark per file in enforce mode."
            .to_owned(),
        format!(
            "Policy enforcement: these rows have a rotation of their own (off, on, enforce) and \
             work on a 64 MiB safetensors-shaped file in `{}/enforce`, the one file of the \
             policy's one weight set. **enforce** adds `--policy <file>` to **on**: \
             `mode = \"enforce\"`, `default = \"deny\"`, one rule allowing `open`, `read` and \
             `mmap` to the bench worker's executable (the xtask binary, by identity). Each run \
             checks the `policy_loaded` record (enforce mode, the file covered and watched) and \
             that the sensor wrote no verdict on the file: the worker was let through every \
             time. With fanotify, each open of the file waits while the agent's fanotify thread \
             judges the opener from its `/proc` entry and answers; each read is decided in the \
             kernel from the policy's tables. The open row makes {} open+close pairs per timed \
             run, fewer than the storm's, since each allowed open is a round trip to the agent.",
            results.bench_dir.display(),
            table::count(results.sizes.enforce_opens)
        ),
        "Policy reload: the agent starts watching the 100,000-file folder with the \
         policy-compile row's policy in enforce mode (5 times, 1 quick); once the machine is \
         idle, SIGHUP is sent and timed to the `policy_loaded` record it causes appearing in \
         the output (polled every millisecond), twice per agent. The first reload compiles the \
         file again, marks every file for fanotify, writes every file into the kernel tables' \
         idle slot, judges every process and swaps; the second finds the idle slot already \
         holding those files (the tables alternate between two slots) and writes none, as a \
         reload after an edit of the rules alone would. The goal is judged on the first."
            .to_owned(),
        "Latency: a watched file is opened every millisecond; a reader thread woken by \
         inotify on the output notes the wall-clock time it reads each `open` record, \
         minus the record's `time` (the kernel's timestamp of the syscall). It includes \
         the agent's batching and write, and the reader's wake-up."
            .to_owned(),
        format!(
            "Audit store, capture running: every agent of the benchmark keeps a store of its own \
             (`--store <run>/<name>.db`, the default settings: a queue of {} records to the \
             writer). Each step starts a fresh agent, then drives a target record rate ({}) for \
             {} s ({} s quick): a new process (forked) opens and closes each of {} watched \
             files once, two records a file, and the next starts when the rate allows. One \
             process reopening one file would make almost no records: the kernel counts a \
             process's repeated opens of a file and sends one `open_summary` (which is why the \
             sustained-rate row above is a rate of opens, not of records). After the output \
             stops growing the agent is stopped, which commits what is queued; `weightwarden \
             verify` then counts the store's records. The store kept all when it holds as many \
             records as the JSON lines file has lines (the driver's records and the agent's \
             own: status records, the processes' exits, detections) and `sensor_stop` counted \
             no `lost_*` (queue full, disk full, write or encode error). The rate of a step is \
             the target, or the records the outputs wrote per second when that was less. The \
             queue can hide a writer slower than a step's rate: by up to {} records/s over a \
             step of this run ({} records over its seconds).",
            table::count(store::QUEUE_MAX),
            store::INGEST_RATES
                .iter()
                .map(|r| table::count(*r))
                .collect::<Vec<_>>()
                .join(", "),
            store::ingest_secs(false),
            store::ingest_secs(true),
            store::FILES_PER_PROCESS,
            table::count((store::QUEUE_MAX as f64 / store::ingest_secs(results.quick)) as u64),
            table::count(store::QUEUE_MAX),
        ),
        format!(
            "Audit store, synthetic records: `weightwarden bench-store --db <run>/bench-store.db \
             --records {} --days {}` (hidden) fills a new store through the real writer as fast \
             as it takes them, no capture running: records shaped like the agent's, a week of a \
             busy host's processes each exec'ing, then opening, reading and closing one of 200 \
             weight files of 10 models; ingest is its records over its seconds, size the \
             database file after it. Then each command runs {} times, a fresh process with \
             stdout read by the benchmark, timed spawn to exit (median, and the lowest and \
             highest): `query --since {} --path {} --json --limit 0`; `timeline --pid PID --json`, \
             PID that of the first record of the last hour (`query --since 1h --limit 1`); \
             `stats --since {} --json`; `verify` (the key beside the database), whose rate is the \
             records it counted over the median time. `--since` is the RFC 3339 time 24 hours \
             before the timing began, the same in every run, so that each run answers the same \
             records (`24h` would count back from each run's own start). The store is deleted \
             at the end.",
            results.sizes.store_records,
            store::SYNTHETIC_DAYS,
            store::CLI_RUNS,
            store::WINDOW,
            store::QUERY_PATH,
            store::WINDOW,
        ),
        crate::bench::outputs::method(results.quick),
    ]
}

/// `target/bench/results.json`: the tables' figures and every raw sample.
pub fn json(results: &Results) -> Value {
    let workloads: Vec<Value> = results
        .workloads
        .iter()
        .map(|w| workload_json(results, w, &Config::ALL))
        .collect();
    let enforcement: Vec<Value> = results
        .enforcement
        .iter()
        .map(|w| {
            let mut value = workload_json(results, w, &Config::ENFORCEMENT);
            let ratio = policy_ratio(w);
            value["enforce_over_on"] = json!({
                "ratio": ratio.map(|r| r.median),
                "ratio_min": ratio.map(|r| r.min),
                "ratio_max": ratio.map(|r| r.max),
                "calls_per_timed_run": calls(w.row, &results.sizes),
                "per_call_ns": policy_cost_per_call_ns(w, &results.sizes),
            });
            value
        })
        .collect();
    let metric = |m: Option<Result<Value, &String>>| match m {
        None => Value::Null,
        Some(Ok(v)) => v,
        Some(Err(e)) => json!({ "error": e }),
    };
    let a = &results.agent;
    let s = &results.store;
    json!({
        "schema": "weightwarden-bench/1",
        "date": records::format_utc(results.unix_time),
        "unix_time": results.unix_time,
        "machine": results.machine,
        "sensor": results.sensor,
        "auditd_version": results.auditd_version,
        "floor_hooks": results.floor_hooks,
        "quick": results.quick,
        "partial": results.partial,
        "runs": results.runs,
        "sizes": results.sizes,
        "bench_dir": results.bench_dir,
        "config_unavailable": results.config_unavailable,
        "workloads": workloads,
        "enforcement": enforcement,
        "enforce_mechanism": results.enforce_mechanism,
        "agent": {
            "rate": metric(a.rate.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "burst": metric(a.burst.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "memory": metric(a.memory.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "latency": metric(a.latency.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "policy": metric(a.policy.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "policy_reload": metric(a.reload.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
        },
        "store": {
            "ingest": metric(s.ingest.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
            "synthetic": metric(s.synthetic.as_ref().map(|r| r.as_ref().map(|r| r.to_json()))),
        },
        "outputs": crate::bench::outputs::json(&results.outputs),
        "notes": results.notes,
    })
}

/// One workload row of the JSON: every sample of each of `configs`, and
/// its ratio to off.
fn workload_json(results: &Results, w: &WorkloadRow, configs: &[Config]) -> Value {
    let f = figures(w);
    let (verdict, reason) = workload_verdict(w);
    let configs: serde_json::Map<String, Value> = configs
        .iter()
        .map(|&c| {
            let samples = samples(w, c);
            let summary = stats::summarize(&samples);
            let ratio = if c == Config::Off { None } else { f.ratio(c) };
            let value = json!({
                "samples_ns": samples,
                "timed_runs_ns": w.runs.get(&c),
                "median_ns": summary.map(|s| s.median),
                "min_ns": summary.map(|s| s.min),
                "max_ns": summary.map(|s| s.max),
                "q1_ns": summary.map(|s| s.q1),
                "q3_ns": summary.map(|s| s.q3),
                "ratio_to_off": ratio.map(|r| r.median),
                "ratio_min": ratio.map(|r| r.min),
                "ratio_max": ratio.map(|r| r.max),
                "unavailable": results.config_unavailable.get(&c),
            });
            (c.name().to_owned(), value)
        })
        .collect();
    json!({
        "row": row_name(w.row),
        "title": title(w.row, &results.sizes),
        "goal": goal(w.row),
        "verdict": verdict.as_str(),
        "verdict_reason": reason,
        "unavailable": w.unavailable,
        "configs": configs,
    })
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::PathBuf, time::Duration};

    use super::*;
    use crate::bench::{
        AgentResults, StoreResults, agent,
        procfs::Machine,
        records::StoreCounters,
        store::{BenchStore, IngestResult, SyntheticResult},
    };

    #[test]
    fn judges_each_goal() {
        use BenchRow::*;
        assert_eq!(judge(WeightRead, Some(1.009), None, None).0, Verdict::Met);
        assert_eq!(
            judge(WeightMmap, Some(1.011), None, None).0,
            Verdict::Missed
        );
        assert_eq!(judge(PythonLoader, Some(1.015), None, None).0, Verdict::Met);
        assert_eq!(
            judge(UnwatchedPread, Some(1.3), None, None).0,
            Verdict::Missed
        );
        assert_eq!(judge(OpenClose, Some(1.2), Some(1.5), None).0, Verdict::Met);
        assert_eq!(
            judge(OpenClose, Some(1.2), Some(1.1), None).0,
            Verdict::Missed
        );
        assert_eq!(
            judge(OpenClose, Some(1.2), None, None).0,
            Verdict::NotJudged
        );
        assert_eq!(judge(OpenClose, Some(1.3), None, None).0, Verdict::Missed);
        let (v, reason) = judge(WatchedPread, Some(1.5), None, Some(1.25));
        assert_eq!(v, Verdict::Met);
        assert_eq!(reason, "on/floor 1.200 <= 1.25");
        assert_eq!(
            judge(WatchedPread, Some(1.6), None, Some(1.25)).0,
            Verdict::Missed
        );
        assert_eq!(
            judge(WatchedPread, Some(1.6), None, None).0,
            Verdict::NotJudged
        );
        assert_eq!(judge(WeightRead, None, None, None).0, Verdict::NotJudged);
    }

    fn results() -> Results {
        let mut runs = BTreeMap::new();
        // Repetition samples are medians of their timed runs.
        runs.insert(
            Config::Off,
            vec![vec![100.0], vec![101.0, 102.0, 150.0], vec![98.0]],
        );
        runs.insert(Config::On, vec![vec![110.0], vec![112.0], vec![108.0]]);
        runs.insert(Config::Floor, vec![vec![105.0], vec![104.0], vec![106.0]]);
        // 1,000 opens a run in the fixture's sizes.
        let mut enforce_runs = BTreeMap::new();
        enforce_runs.insert(Config::Off, vec![vec![2e6], vec![2.2e6], vec![1.8e6]]);
        enforce_runs.insert(Config::On, vec![vec![3e6], vec![3.3e6], vec![2.7e6]]);
        enforce_runs.insert(
            Config::Enforce,
            vec![vec![130e6, 120e6, 140e6], vec![99e6], vec![150e6]],
        );
        let mut sizes = Sizes::new(false);
        sizes.enforce_opens = 1000;
        Results {
            unix_time: 1_795_626_593,
            machine: Machine {
                cpu_model: "AMD EPYC".into(),
                logical_cpus: 2,
                mem_total_kib: 24 * 1024 * 1024,
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            quick: false,
            partial: false,
            runs: 3,
            sizes,
            sensor: "weightwarden 0.1.0".into(),
            auditd_version: None,
            floor_hooks: Some(20),
            bench_dir: PathBuf::from("/var/tmp/weightwarden-bench"),
            workloads: vec![WorkloadRow {
                row: BenchRow::UnwatchedPread,
                runs,
                unavailable: None,
            }],
            enforcement: vec![WorkloadRow {
                row: BenchRow::EnforceOpen,
                runs: enforce_runs,
                unavailable: None,
            }],
            enforce_mechanism: Some("fanotify+bpf_send_signal".into()),
            config_unavailable: [(Config::Auditd, "no audit support".to_owned())].into(),
            agent: AgentResults {
                memory: Some(Ok(agent::MemoryResult {
                    files: 100_000,
                    watched_files: 100_000,
                    rss_kib: 80 * 1024,
                    hwm_kib: 90 * 1024,
                    startup_s: vec![1.0, 1.2, 1.1],
                })),
                rate: Some(Ok(agent::RateResult {
                    steps: vec![agent::RateStep {
                        target: Some(50_000),
                        opens: 150_000,
                        seconds: 3.0,
                        open_records: 150_000,
                        close_records: 150_000,
                        ringbuf_full: 0,
                        drain_lag: Duration::from_millis(20),
                        agent_cpu_s: 1.5,
                        store: Some(crate::bench::records::StoreCounters {
                            records_written: 40,
                            lost_queue_full: 2,
                            ..Default::default()
                        }),
                    }],
                })),
                latency: Some(Err("boom".into())),
                policy: Some(Ok(agent::PolicyResult {
                    files: 100_000,
                    secs: vec![0.5, 0.4, 0.6],
                })),
                burst: None,
                reload: Some(Ok(agent::ReloadResult {
                    files: 100_000,
                    loaded: crate::bench::policy::Loaded {
                        mode: "enforce".into(),
                        mechanism: "fanotify+bpf_send_signal".into(),
                        files: 100_000,
                        files_unwatched: 0,
                    },
                    startup_s: vec![1.5, 1.4, 1.6],
                    first_s: vec![1.2, 1.1, 1.3],
                    again_s: vec![0.5, 0.4, 0.6],
                    not_idle: 0,
                })),
            },
            store: StoreResults::default(),
            outputs: crate::bench::OutputResults::default(),
            notes: vec!["a note".into()],
        }
    }

    fn ingest_step(target: u64, output: u64, kept: u64, queue_full: u64) -> IngestStep {
        IngestStep {
            drain_lag: Duration::from_millis(40),
            ..super::super::store::test_step(target, target * 3, 6.0, output, kept, queue_full)
        }
    }

    fn store_results() -> StoreResults {
        let timed = |secs: Vec<f64>, rows| Timed { secs, rows };
        StoreResults {
            ingest: Some(Ok(IngestResult {
                secs_per_step: 6.0,
                steps: vec![
                    ingest_step(50_000, 300_100, 300_100, 0),
                    ingest_step(100_000, 600_100, 265_000, 335_100),
                ],
            })),
            synthetic: Some(Ok(SyntheticResult {
                ingest: BenchStore {
                    records: 10_000_000,
                    seconds: 445.1,
                    records_per_sec: 22_466.9,
                    db_bytes: 12_700_000_000,
                    lost: 0,
                },
                since: "2026-11-24T17:09:53Z".into(),
                pid: 2_500_299,
                query: timed(vec![0.11, 0.1, 0.12, 0.2, 0.09], 5_357),
                timeline: timed(vec![0.004, 0.005, 0.004, 0.004, 0.006], 4),
                stats: timed(vec![0.84, 0.8, 0.9, 0.85, 0.83], 1_428_000),
                verify: timed(vec![21.0, 20.0, 22.0, 21.5, 20.5], 10_000_000),
            })),
        }
    }

    #[test]
    fn the_store_section_reports_each_row_and_its_goal() {
        let mut r = results();
        // Without a store row, no section.
        assert!(!markdown(&r).contains("## Audit store"));
        r.store = store_results();
        let md = markdown(&r);
        let section = md
            .split_once("## Audit store\n\n")
            .and_then(|(_, rest)| rest.split_once("\n\n"))
            .map(|(table, _)| table)
            .unwrap_or_default();
        let row = |start: &str| {
            section
                .lines()
                .find(|l| l.starts_with(&format!("| {start}")))
                .unwrap_or_else(|| panic!("no row {start:?} in {section}"))
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("records/s the audit store keeps"),
            [
                "records/s the audit store keeps, capture running (every record the outputs \
                 wrote)",
                ">= 100,000/s",
                "50,000/s; at 100,000/s: the store kept 265,000 of 600,100",
                "missed"
            ]
        );
        assert_eq!(
            row("store at 100,000/s target")[2],
            "driven at 100,000/s (300,000 open+close pairs by 600 processes); the outputs \
             wrote 600,100 records (99,354/s); the store kept 265,000, 335,100 missing (lost \
             by sensor_stop's count: 335,100 (queue full 335,100))"
        );
        assert!(
            row("store at 50,000/s target")[2].ends_with("the store kept all"),
            "{section}"
        );
        assert_eq!(
            row("store ingest, the writer alone")[2],
            "22,467/s (10,000,000 in 445.1 s)"
        );
        assert_eq!(
            row("store size per million records")[2],
            "1,211 MiB per million records (1,270 bytes a record; 11.83 GiB for 10,000,000)"
        );
        assert_eq!(
            row("`query --path /models/m3/model-00007-of-00020.safetensors")[2..],
            [
                "110.0 ms (median of 5: 90.0 ms–200.0 ms); 5,357 records",
                "met"
            ]
        );
        assert_eq!(
            row("`timeline --pid PID --json`")[2],
            "4.0 ms (median of 5: 4.0 ms–6.0 ms); 4 records (pid 2500299)"
        );
        assert_eq!(
            row("`stats --since <24 h ago> --json`")[2..],
            [
                "840.0 ms (median of 5: 800.0 ms–900.0 ms); 1,428,000 records in the window",
                "missed"
            ]
        );
        assert_eq!(
            row("`verify`, the whole chain")[1..],
            [
                ">= 1,000,000/s",
                "476,190/s (10,000,000 records: 21.000 s (median of 5: 20.000–22.000 s))",
                "missed"
            ]
        );
        assert!(
            md.contains("- **Missed**: records/s the audit store keeps"),
            "{md}"
        );
        assert!(
            md.contains("- **Missed**: `stats --since <24 h ago>"),
            "{md}"
        );
        assert!(!md.contains("- **Missed**: `query --path"), "{md}");
        assert!(md.contains("Audit store, capture running:"), "{md}");
        assert!(plain(&r).contains("store size per million records"));

        let v = json(&r);
        assert_eq!(v["store"]["ingest"]["best_records_per_sec"], 50_000.0);
        assert_eq!(v["store"]["synthetic"]["query"]["timed"]["median_s"], 0.11);
        assert_eq!(
            v["store"]["synthetic"]["verify"]["timed"]["rows"],
            10_000_000
        );

        // A failed measurement is a row that says so, and a missed goal.
        r.store.synthetic = Some(Err("`weightwarden bench-store` failed".into()));
        let md = markdown(&r);
        assert!(
            md.contains("failed: `weightwarden bench-store` failed"),
            "{md}"
        );
        assert_eq!(
            json(&r)["store"]["synthetic"]["error"],
            "`weightwarden bench-store` failed"
        );
    }

    #[test]
    fn a_store_that_kept_all_the_capture_delivered_is_not_blamed() {
        let mut r = results();
        // The agent delivered 10,240 records/s whatever the target: the
        // kernel lost the rest; the store kept every one it was given.
        let mut step = ingest_step(100_000, 61_440, 61_440, 0);
        step.ringbuf_full = 540_000;
        step.drain_lag = Duration::from_secs(6);
        r.store.ingest = Some(Ok(IngestResult {
            secs_per_step: 6.0,
            steps: vec![step],
        }));
        let (t, missed) = store_table(&r);
        let md = t.markdown();
        assert!(
            md.contains(
                "| 5,120/s, all that reached the outputs at the 100,000/s step (the kernel lost \
                 540,000 records (ringbuf_full), the output was complete 6.00 s after the driver \
                 stopped: the capture's limit, not the store's); the store kept every record at \
                 every step"
            ),
            "{md}"
        );
        assert_eq!(missed.len(), 1);
        assert!(
            md.contains("the store kept all; 540,000 lost in the kernel"),
            "{md}"
        );
    }

    #[test]
    fn a_rate_step_says_what_the_store_lost() {
        let mut step = agent::RateStep {
            target: None,
            opens: 1000,
            seconds: 1.0,
            open_records: 1000,
            close_records: 1000,
            ringbuf_full: 0,
            drain_lag: Duration::ZERO,
            agent_cpu_s: 0.1,
            store: Some(StoreCounters::default()),
        };
        assert!(!step_outcome(&step).contains("store"));
        step.store = Some(StoreCounters {
            lost_queue_full: 70,
            ..StoreCounters::default()
        });
        assert!(
            step_outcome(&step).ends_with(
                "; the audit store lost 70 (queue full 70) of the agent's records, which the \
                 outputs have"
            ),
            "{}",
            step_outcome(&step)
        );
    }

    #[test]
    fn the_page_names_the_machine_figures_and_misses() {
        let md = markdown(&results());
        assert!(
            md.contains(
                "|        |                                |\n\
                 |--------|--------------------------------|\n\
                 | date   | 2026-11-25 17:09:53 UTC        |\n\
                 | CPU    | AMD EPYC (2 logical CPUs)      |\n\
                 | memory | 24.0 GiB                       |\n\
                 | kernel | 6.1.0                          |\n\
                 | OS     | Debian GNU/Linux 12 (bookworm) |\n\
                 | sensor | weightwarden 0.1.0             |\n\
                 | auditd | unavailable: no audit support  |\n\
                 | run    | full, 3 repetitions            |\n"
            ),
            "{md}"
        );
        let workloads = md
            .split_once("## Workloads\n\n")
            .and_then(|(_, rest)| rest.split_once("\n\n"))
            .map(|(table, _)| table);
        assert_eq!(
            workloads,
            Some(
                "| workload                                                         \
                 | goal (ratio to off) | off median (min–max)  | on                  \
                 | auditd      | floor               | verdict                |\n\
                 |------------------------------------------------------------------\
                 |---------------------|-----------------------|---------------------\
                 |-------------|---------------------|------------------------|\n\
                 | unrelated I/O: 4 KiB pread of an unwatched file, 1,000,000 calls \
                 | <= 1.25             | 100 ns (98 ns–102 ns) | 1.100 (1.098–1.102) \
                 | unavailable | 1.050 (1.020–1.082) | met (on 1.100 <= 1.25) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("`auditd` unavailable: no audit support"),
            "{md}"
        );
        // The rate goal (100k/s) is missed at 50k/s, memory at 80 MiB.
        assert!(
            md.contains("- **Missed**: sustained watched-file opens/s"),
            "{md}"
        );
        assert!(
            md.contains("| policy compile and check, 100,000 files (`policy check`)"),
            "{md}"
        );
        assert!(md.contains("0.500 s (median of 3: 0.400–0.600 s)"), "{md}");
        assert!(
            md.contains("- **Missed**: resident memory, 100,000 watched files"),
            "{md}"
        );
        assert!(md.contains("| 50,000/s "), "{md}");
        assert!(md.contains("failed: boom"), "{md}");
        assert!(md.contains("1.10 s (median of 3: 1.00–1.20 s)"), "{md}");
        assert!(
            md.contains("0.500 CPU-s (user+system, open and close records, at 50,000 opens/s)"),
            "{md}"
        );

        let enforcement = md
            .split_once("## Policy enforcement\n\n")
            .and_then(|(_, rest)| rest.split_once("\n\n"))
            .map(|(table, _)| table);
        assert_eq!(
            enforcement,
            Some(
                "| workload                                                                  \
                 | goal   | off median (min–max)   | on, no policy       | enforce                \
                 | enforce / on           | enforce − on, per call |\n\
                 |---------------------------------------------------------------------------\
                 |--------|------------------------|---------------------|------------------------\
                 |------------------------|------------------------|\n\
                 | open+close of a policy file by the process the policy allows, 1,000 times \
                 | report | 2.0 ms (1.8 ms–2.2 ms) | 1.500 (1.500–1.500) | 65.000 (45.000–83.333) \
                 | 43.333 (30.000–55.556) | +127.0 µs              |"
            ),
            "{md}"
        );
        assert!(
            md.contains("policy was enforced by `fanotify+bpf_send_signal`"),
            "{md}"
        );
        assert!(
            md.contains(
                "| first 1.200 s (median of 3: 1.100–1.300 s); second 0.500 s (median of 3: \
                 0.400–0.600 s); start-up with the policy 1.500 s (median of 3: 1.400–1.600 s); \
                 enforced by `fanotify+bpf_send_signal` | missed  |"
            ),
            "{md}"
        );
        assert!(
            md.contains("- **Missed**: policy reload, 100,000 files, enforce mode"),
            "{md}"
        );
        assert!(
            md.contains("The open row makes 1,000 open+close pairs"),
            "{md}"
        );

        let text = plain(&results());
        assert!(text.contains("goals missed:"), "{text}");
        assert!(
            text.contains("open+close of a policy file by the process the policy allows"),
            "{text}"
        );
    }

    #[test]
    fn the_json_keeps_raw_samples() {
        let v = json(&results());
        let row = &v["workloads"][0];
        assert_eq!(row["row"], "unwatched-pread");
        assert_eq!(
            row["configs"]["off"]["timed_runs_ns"][1],
            serde_json::json!([101.0, 102.0, 150.0])
        );
        assert_eq!(row["verdict"], "met");
        assert_eq!(
            row["configs"]["off"]["samples_ns"],
            serde_json::json!([100.0, 102.0, 98.0])
        );
        assert_eq!(row["configs"]["on"]["ratio_to_off"], 1.1);
        assert_eq!(row["configs"]["auditd"]["unavailable"], "no audit support");
        assert_eq!(v["config_unavailable"]["auditd"], "no audit support");
        for config in Config::ALL {
            assert_eq!(serde_json::to_value(config).unwrap(), config.name());
        }
        assert_eq!(v["machine"]["cpu_model"], "AMD EPYC");
        assert_eq!(v["sizes"]["pread_calls"], 1_000_000);
        assert_eq!(v["agent"]["latency"]["error"], "boom");
        assert_eq!(v["agent"]["burst"], Value::Null);
        assert_eq!(v["agent"]["rate"]["best_zero_loss_opens_per_sec"], 50_000.0);

        let row = &v["enforcement"][0];
        assert_eq!(row["row"], "enforce-open");
        let configs: Vec<&String> = row["configs"].as_object().unwrap().keys().collect();
        // Only the enforcement rows' configurations (keys sorted).
        assert_eq!(configs, ["enforce", "off", "on"]);
        assert_eq!(row["configs"]["enforce"]["ratio_to_off"], 65.0);
        assert_eq!(
            row["configs"]["enforce"]["timed_runs_ns"][0],
            serde_json::json!([130e6, 120e6, 140e6])
        );
        assert_eq!(row["enforce_over_on"]["per_call_ns"], 127_000.0);
        assert_eq!(row["enforce_over_on"]["calls_per_timed_run"], 1000);
        assert_eq!(row["enforce_over_on"]["ratio_max"], 150e6 / 2.7e6);
        assert_eq!(v["enforce_mechanism"], "fanotify+bpf_send_signal");
        let reload = &v["agent"]["policy_reload"];
        assert_eq!(reload["first_reload_median_s"], 1.2);
        assert_eq!(reload["second_reload_median_s"], 0.5);
        assert_eq!(reload["policy_files"], 100_000);
    }
}
