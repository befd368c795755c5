//! The output rows: records/s the agent writes with zero loss to a
//! second JSON lines output in OCSF or ECS, and its CPU per 100k records
//! against the native output alone; and the time an HTTP output takes to
//! drain a full disk spool once its collector is back.
//!
//! The encoding rows drive records as the audit store's ingest row does
//! (new processes each opening and closing distinct watched files: two
//! real records a file), at stepped rates, against a fresh agent per step
//! whose outputs are its native JSON lines file and, but for the native
//! row, a second file in the encoding. A step is clean when the kernel
//! lost nothing (`ringbuf_full` 0), the second file holds as many records
//! as the native one and counted no failure or drop, and both were
//! complete within 1 s of the driver stopping.
//!
//! The spool is filled by an agent whose `http:` output points at a port
//! nobody listens on while the driver opens a watched file as fast as it
//! can, until the spool directory holds the target size. A second agent
//! with the same state directory and output then starts with a collector
//! listening on that port (a minimal HTTP/1.1 server here that counts the
//! NDJSON lines it is sent), and the drain is timed from that agent's
//! start until the collector has every spooled record.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::bench::{
    agent::{self, Ctx},
    procfs, records,
    store::{self, FILES_PER_PROCESS, INGEST_RATES},
    worker::c_path,
};

/// One step of an encoding's rate search.
#[derive(Debug, Clone)]
pub struct EncodingStep {
    pub target: u64,
    /// Records/s the driver made.
    pub driven: f64,
    /// Lines of the native output, and of the encoding's (the native
    /// row: the same).
    pub native_records: u64,
    pub encoded_records: u64,
    /// The encoding's output's write failures and drops.
    pub lost: u64,
    pub ringbuf_full: u64,
    pub drain_lag: Duration,
    pub agent_cpu_s: f64,
}

impl EncodingStep {
    pub fn clean(&self) -> bool {
        self.ringbuf_full == 0
            && self.lost == 0
            && self.encoded_records == self.native_records
            && self.drain_lag <= agent::MAX_DRAIN_LAG
    }

    /// The driver reached the target (within 3 %).
    pub fn on_target(&self) -> bool {
        self.driven >= 0.97 * self.target as f64
    }

    /// Agent CPU seconds per 100k records written.
    pub fn cpu_per_100k(&self) -> Option<f64> {
        (self.native_records > 0).then(|| self.agent_cpu_s / self.native_records as f64 * 100_000.0)
    }

    fn to_json(&self) -> Value {
        json!({
            "target_records_per_sec": self.target,
            "driven_records_per_sec": self.driven,
            "native_records": self.native_records,
            "encoded_records": self.encoded_records,
            "lost": self.lost,
            "ringbuf_full": self.ringbuf_full,
            "drain_lag_s": self.drain_lag.as_secs_f64(),
            "agent_cpu_s": self.agent_cpu_s,
            "agent_cpu_s_per_100k_records": self.cpu_per_100k(),
            "clean": self.clean(),
        })
    }
}

pub struct EncodingResult {
    /// `native` (its output alone), `ocsf` or `ecs`.
    pub format: &'static str,
    pub steps: Vec<EncodingStep>,
}

impl EncodingResult {
    /// The highest target reached clean.
    pub fn best(&self) -> Option<&EncodingStep> {
        self.steps
            .iter()
            .filter(|s| s.clean() && s.on_target())
            .max_by_key(|s| s.target)
    }

    /// The step at `target`, for comparing CPU between encodings.
    pub fn at(&self, target: u64) -> Option<&EncodingStep> {
        self.steps.iter().find(|s| s.target == target)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "format": self.format,
            "steps": self.steps.iter().map(EncodingStep::to_json).collect::<Vec<_>>(),
            "best_clean_records_per_sec": self.best().map(|s| s.target),
        })
    }
}

/// Steps the record rate up with an output in `format` until a step is
/// not clean or the driver falls short.
pub fn encoding(ctx: &Ctx, format: &'static str) -> Result<EncodingResult> {
    let secs = store::ingest_secs(ctx.quick);
    let files = (0..FILES_PER_PROCESS)
        .map(|i| {
            ctx.watched_file(&format!("store-{i:03}.safetensors"))
                .and_then(|p| c_path(&p))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut steps = Vec::new();
    for (i, &target) in INGEST_RATES.iter().enumerate() {
        let step = encoding_step(
            ctx,
            &format!("output-{format}-{i}"),
            format,
            target,
            secs,
            &files,
        )
        .with_context(|| format!("the {format} step at {target} records/s"))?;
        eprintln!(
            "bench: {format} output at {target} records/s: {:.0}/s driven, native {} records, \
             {format} {}, lost {}, ringbuf_full {}, drained {:.2} s after",
            step.driven,
            step.native_records,
            step.encoded_records,
            step.lost,
            step.ringbuf_full,
            step.drain_lag.as_secs_f64()
        );
        let stop = !step.clean() || !step.on_target();
        steps.push(step);
        if stop {
            break;
        }
    }
    Ok(EncodingResult { format, steps })
}

/// The ingest driver's watched files (made if missing).
fn store_files(ctx: &Ctx) -> Result<Vec<std::ffi::CString>> {
    (0..FILES_PER_PROCESS)
        .map(|i| {
            ctx.watched_file(&format!("store-{i:03}.safetensors"))
                .and_then(|p| c_path(&p))
        })
        .collect()
}

fn count_lines(path: &Path) -> Result<u64> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0; 1 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

fn encoding_step(
    ctx: &Ctx,
    name: &str,
    format: &str,
    target: u64,
    secs: f64,
    files: &[std::ffi::CString],
) -> Result<EncodingStep> {
    let second =
        (format != "native").then(|| ctx.layout.run.join(format!("{name}.jsonl.{format}")));
    let mut extra = Vec::new();
    if let Some(path) = &second {
        let _ = fs::remove_file(path);
        extra.push("--output".to_owned());
        extra.push(format!("jsonl:{}?format={format}", path.display()));
    }
    let agent = ctx.start_with(name, &extra)?;
    let output = agent.output().to_path_buf();
    let db = agent.store().to_path_buf();
    let cpu_before = procfs::cpu_seconds(agent.pid())?;
    let driven = store::drive_processes(files, target / 2, Duration::from_secs_f64(secs));
    let stopped = Instant::now();
    let mut drain_lag = agent::wait_quiet(&output, stopped)?;
    if let Some(path) = &second {
        drain_lag = drain_lag.max(agent::wait_quiet(path, stopped)?);
    }
    let agent_cpu_s = procfs::cpu_seconds(agent.pid())? - cpu_before;
    // What the outputs lost is this step's result (sensor_stop below).
    agent.stop_counting_losses()?;
    let (pairs, elapsed) = driven?;
    let scan = records::scan(&output, &output)?;
    let ringbuf_full = agent::stop_counter(&scan, &output, "kernel.ringbuf_full")?;
    let stop = scan.last_status.as_ref().context("no sensor_stop record")?;
    let (encoded_records, lost) = match &second {
        Some(path) => {
            let sink = &stop["sensor"]["sinks"][1];
            let lost = sink["write_failures"].as_u64().unwrap_or(0)
                + sink["dropped"].as_u64().unwrap_or(0);
            let lines = count_lines(path)?;
            fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
            (lines, lost)
        }
        None => (scan.lines, 0),
    };
    fs::remove_file(&output).with_context(|| format!("cannot remove {}", output.display()))?;
    store::remove(&db)?;
    Ok(EncodingStep {
        target,
        driven: pairs as f64 * 2.0 / elapsed.as_secs_f64(),
        native_records: scan.lines,
        encoded_records,
        lost,
        ringbuf_full,
        drain_lag,
        agent_cpu_s,
    })
}

/// open+close pairs/s that fill the spool: 20k records/s, which the
/// agent's native output, its audit store and the spool all take at once
/// on this project's 2-CPU machines (the fill is not what is measured).
const FILL_PAIRS_PER_SEC: u64 = 10_000;

/// The spool the drain row fills: 1 GiB (64 MiB quick).
pub fn spool_target(quick: bool) -> u64 {
    if quick { 64 << 20 } else { 1 << 30 }
}

pub struct DrainResult {
    pub spool_bytes: u64,
    pub records: u64,
    pub seconds: f64,
}

impl DrainResult {
    pub fn mib_per_sec(&self) -> f64 {
        self.spool_bytes as f64 / f64::from(1 << 20) / self.seconds
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    pub fn to_json(&self) -> Value {
        json!({
            "spool_bytes": self.spool_bytes,
            "records": self.records,
            "seconds": self.seconds,
            "mib_per_sec": self.mib_per_sec(),
            "records_per_sec": self.records_per_sec(),
        })
    }
}

/// Bytes of the files under `dir` (the spool's segments).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub fn spool_drain(ctx: &Ctx) -> Result<DrainResult> {
    let target = spool_target(ctx.quick);
    let state = ctx.layout.run.join("spool-state");
    let _ = fs::remove_dir_all(&state);
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let extra = vec![
        "--state-dir".to_owned(),
        state.display().to_string(),
        "--output".to_owned(),
        // A spool cap above the target, and the largest requests.
        format!("http:http://127.0.0.1:{port}/bulk?spool=2GiB&batch_size=4MiB&batch_age=200ms"),
    ];
    let files = store_files(ctx)?;
    let spool_dir = state.join("spool");
    let filler = ctx.start_with("spool-fill", &extra)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while dir_bytes(&spool_dir) < target {
        if Instant::now() > deadline {
            bail!(
                "the spool reached only {} bytes in 10 minutes",
                dir_bytes(&spool_dir)
            );
        }
        // Records, not summaries: new processes, distinct files.
        store::drive_processes(&files, FILL_PAIRS_PER_SEC, Duration::from_secs(2))?;
    }
    let output = filler.output().to_path_buf();
    filler.stop()?;
    let stop = last_stop(&output)?;
    let sink = &stop["sensor"]["sinks"][1];
    let spooled = sink["spooled"].as_u64().context("no spooled count")?;
    let spool_bytes = sink["spool_bytes"].as_u64().context("no spool_bytes")?;
    let lost = sink["write_failures"].as_u64().unwrap_or(0) + sink["dropped"].as_u64().unwrap_or(0);
    if lost > 0 || spooled == 0 {
        bail!("the spool did not keep every record: {sink}");
    }
    eprintln!("bench: spool holds {spooled} records, {spool_bytes} bytes");
    fs::remove_file(&output).ok();

    let received = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on port {port} again"))?;
    {
        let received = received.clone();
        thread::spawn(move || collect(listener, &received));
    }
    let started = Instant::now();
    let drainer = ctx.start_with("spool-drain", &extra)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    while received.load(Ordering::Relaxed) < spooled {
        if Instant::now() > deadline {
            bail!(
                "the collector got {} of {spooled} records in 15 minutes",
                received.load(Ordering::Relaxed)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let output = drainer.output().to_path_buf();
    drainer.stop()?;
    fs::remove_file(&output).ok();
    let _ = fs::remove_dir_all(&state);
    Ok(DrainResult {
        spool_bytes,
        records: spooled,
        seconds,
    })
}

/// The last `sensor_stop` record of a JSON lines file.
fn last_stop(path: &Path) -> Result<Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"sensor_stop\""))
        .with_context(|| format!("{} has no sensor_stop", path.display()))?;
    Ok(serde_json::from_str(line)?)
}

/// Answers every POST with 200, counting the NDJSON lines of the bodies.
fn collect(listener: TcpListener, received: &AtomicU64) {
    thread::scope(|scope| {
        for stream in listener.incoming().flatten() {
            scope.spawn(move || {
                let _ = serve(stream, received);
            });
        }
    });
}

fn serve(stream: TcpStream, received: &AtomicU64) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        let lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
        received.fetch_add(lines, Ordering::Relaxed);
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

/// The goal of issue 11: records/s to a JSON lines file with zero loss.
pub const OUTPUT_GOAL: u64 = 100_000;
/// The step whose CPU the encodings are compared at.
const CPU_AT: u64 = 100_000;

/// The outputs' section of the report, and the goals it missed.
pub fn table(results: &crate::bench::OutputResults) -> (crate::bench::table::Table, Vec<String>) {
    use crate::bench::table::{Table, count};
    let mut t = Table::new(&["metric", "goal", "result", "verdict"]);
    let mut missed = Vec::new();
    let native_cpu = results.encodings.iter().find_map(|e| match e {
        Some(Ok(r)) if r.format == "native" => r.at(CPU_AT).and_then(EncodingStep::cpu_per_100k),
        _ => None,
    });
    for result in results.encodings.iter().flatten() {
        let r = match result {
            Ok(r) => r,
            Err(err) => {
                t.row(vec![
                    "records/s to JSON lines".into(),
                    format!(">= {}/s", count(OUTPUT_GOAL)),
                    format!("failed: {err}"),
                    "missed".into(),
                ]);
                missed.push(format!(
                    "records/s to JSON lines: the measurement failed: {err}"
                ));
                continue;
            }
        };
        let what = match r.format {
            "native" => "records/s with zero loss, native JSON lines".to_owned(),
            f => format!(
                "records/s with zero loss, native and {} JSON lines",
                f.to_uppercase()
            ),
        };
        let best = r.best().map(|s| s.target);
        let first_fail = r.steps.iter().find(|s| !(s.clean() && s.on_target()));
        let mut result = match best {
            Some(b) => format!("{}/s", count(b)),
            None => "none clean".to_owned(),
        };
        if let Some(s) = first_fail {
            let why = if !s.on_target() {
                format!("the driver reached {:.0}/s", s.driven)
            } else if s.ringbuf_full > 0 {
                format!("ringbuf_full {}", s.ringbuf_full)
            } else if s.lost > 0 || s.encoded_records != s.native_records {
                format!(
                    "{} records short or lost",
                    count(s.native_records.saturating_sub(s.encoded_records) + s.lost)
                )
            } else {
                format!("the output trailed {:.1} s", s.drain_lag.as_secs_f64())
            };
            result.push_str(&format!(" ({}/s: {why})", count(s.target)));
        }
        let met = best.is_some_and(|b| b >= OUTPUT_GOAL);
        if !met {
            missed.push(format!("{what}: {result}"));
        }
        t.row(vec![
            what,
            format!(">= {}/s", count(OUTPUT_GOAL)),
            result,
            if met { "met" } else { "missed" }.into(),
        ]);
        if let Some(cpu) = r.at(CPU_AT).and_then(EncodingStep::cpu_per_100k) {
            let ratio = match native_cpu {
                Some(n) if r.format != "native" && n > 0.0 => {
                    format!(", {:.2}x native alone", cpu / n)
                }
                _ => String::new(),
            };
            t.row(vec![
                format!("agent CPU per 100k records, {}", r.format),
                "report".into(),
                format!("{cpu:.3} CPU-s at {}/s{ratio}", count(CPU_AT)),
                "—".into(),
            ]);
        }
    }
    match &results.drain {
        Some(Ok(d)) => t.row(vec![
            format!(
                "drain a {} MiB spool to an HTTP collector",
                d.spool_bytes >> 20
            ),
            "report".into(),
            format!(
                "{:.1} s ({:.0} MiB/s, {}/s records), from the agent's start",
                d.seconds,
                d.mib_per_sec(),
                count(d.records_per_sec() as u64)
            ),
            "—".into(),
        ]),
        Some(Err(err)) => t.row(vec![
            "drain a spool".into(),
            "report".into(),
            format!("failed: {err}"),
            "—".into(),
        ]),
        None => {}
    }
    (t, missed)
}

/// Whether any output row ran.
pub fn ran(results: &crate::bench::OutputResults) -> bool {
    !results.encodings.is_empty() || results.drain.is_some()
}

pub fn json(results: &crate::bench::OutputResults) -> Value {
    let encodings: Vec<Value> = results
        .encodings
        .iter()
        .flatten()
        .map(|r| match r {
            Ok(r) => r.to_json(),
            Err(err) => json!({ "error": err }),
        })
        .collect();
    json!({
        "encodings": encodings,
        "spool_drain": match &results.drain {
            Some(Ok(d)) => d.to_json(),
            Some(Err(err)) => json!({ "error": err }),
            None => Value::Null,
        },
    })
}

/// How the rows were measured, for the report's method notes.
pub fn method(quick: bool) -> String {
    format!(
        "Outputs: the audit store's ingest driver (new processes each opening and closing {} \
         watched files once: two records a file) at stepped record rates ({}) for {} s, against \
         a fresh agent whose outputs are its native JSON lines file and, but for the native row, \
         a second JSON lines file in OCSF or ECS. A step is clean when `ringbuf_full` stayed 0, \
         the second file holds as many records as the native one with no write failure or drop \
         counted, and both were complete within 1 s of the driver stopping. CPU is the agent's \
         (utime+stime) over the step at {}/s, per 100k records. Spool drain: an agent whose \
         `http:` output points at a closed port is driven until its spool holds {} MiB; a second \
         agent with the same state directory then starts beside a local HTTP collector (in \
         xtask: it answers 200 and counts lines), timed from its spawn (start-up included) to \
         the collector holding every spooled record.",
        FILES_PER_PROCESS,
        INGEST_RATES.map(crate::bench::table::count).join(", "),
        store::ingest_secs(quick),
        crate::bench::table::count(CPU_AT),
        spool_target(quick) >> 20,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::OutputResults;

    fn step(target: u64, native: u64, encoded: u64, lost: u64) -> EncodingStep {
        EncodingStep {
            target,
            driven: target as f64,
            native_records: native,
            encoded_records: encoded,
            lost,
            ringbuf_full: 0,
            drain_lag: Duration::from_millis(100),
            agent_cpu_s: 0.5,
        }
    }

    #[test]
    fn a_step_is_clean_only_with_every_record_in_the_second_output() {
        assert!(step(100_000, 600_000, 600_000, 0).clean());
        assert!(!step(100_000, 600_000, 599_999, 0).clean());
        assert!(!step(100_000, 600_000, 600_000, 1).clean());
        let mut trailing = step(100_000, 600_000, 600_000, 0);
        trailing.drain_lag = Duration::from_secs(2);
        assert!(!trailing.clean());
    }

    #[test]
    fn the_table_judges_the_goal_and_compares_cpu_with_native() {
        let native = EncodingResult {
            format: "native",
            steps: vec![
                step(50_000, 300_000, 300_000, 0),
                step(100_000, 600_000, 600_000, 0),
            ],
        };
        let ocsf = EncodingResult {
            format: "ocsf",
            steps: vec![
                step(50_000, 300_000, 300_000, 0),
                step(100_000, 600_000, 590_000, 0),
            ],
        };
        let results = OutputResults {
            encodings: vec![Some(Ok(native)), Some(Ok(ocsf))],
            drain: Some(Ok(DrainResult {
                spool_bytes: 1 << 30,
                records: 900_000,
                seconds: 10.0,
            })),
        };
        let (table, missed) = table(&results);
        let text = table.plain();
        assert!(
            text.contains("records/s with zero loss, native JSON lines"),
            "{text}"
        );
        assert!(text.contains("100,000/s"), "{text}");
        assert!(text.contains("10,000 records short or lost"), "{text}");
        assert!(text.contains("1.00x native alone"), "{text}");
        assert!(text.contains("drain a 1024 MiB spool"), "{text}");
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert!(missed[0].contains("OCSF"), "{missed:?}");
    }
}
