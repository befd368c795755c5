//! `cargo xtask bench` (issue 3): what the sensor costs a GPU inference
//! host, and what the agent sustains. Every workload runs, repeatedly and
//! interleaved, with the sensor off (the baseline), on, with auditd as the
//! peer, and with empty eBPF programs on the sensor's hooks (the floor the
//! kernel charges); every figure is a ratio to the baseline of the same
//! run. The policy-enforcement rows have a rotation of their own: off, on
//! without a policy, and on with an enforce-mode policy that allows the
//! reader (what enforcing costs the process it lets through). The agent
//! metrics use the release sensor alone, and so do the audit store's rows
//! (issue 10: what it keeps with capture running, and its commands on a
//! store of synthetic records). Results go to the terminal,
//! `target/bench/results.json` and `docs/benchmarks.md`.

mod agent;
mod auditd;
mod children;
mod debian;
mod fixtures;
mod outputs;
mod policy;
mod procfs;
mod python;
mod records;
mod report;
mod stats;
mod store;
mod table;
pub mod worker;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum as _;
use serde::Serialize;

use crate::{
    args::{BenchArgs, BenchRow, WorkerWorkload},
    build, process, setup,
    workspace::Workspace,
};

/// Lets the agent finish its start-up work (the /proc scan, first record
/// writes) before anything is timed.
const SETTLE: Duration = Duration::from_millis(500);
/// Before a configuration's workloads, the machine must have been this
/// idle (share of CPU time, all CPUs) over [`IDLE_WINDOW`]: teardown of the
/// previous configuration (programs detached, daemons exiting) and stray
/// work would otherwise land in the next one's figures.
const IDLE_SHARE: f64 = 0.9;
const IDLE_WINDOW: Duration = Duration::from_millis(250);
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after `sensor_start` the `policy_loaded` record written with
/// it may take to appear complete.
const POLICY_LOADED_TIMEOUT: Duration = Duration::from_secs(5);

/// A configuration workloads are measured under; serialised by
/// [`Config::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Config {
    Off,
    On,
    Auditd,
    Floor,
    /// The sensor with an enforce-mode policy over the workload's file
    /// that allows the workload (the enforcement rows only).
    Enforce,
}

impl Config {
    /// What the workload rows are measured under.
    const ALL: [Config; 4] = [Config::Off, Config::On, Config::Auditd, Config::Floor];
    /// What the enforcement rows are measured under.
    const ENFORCEMENT: [Config; 3] = [Config::Off, Config::On, Config::Enforce];

    pub fn name(self) -> &'static str {
        match self {
            Config::Off => "off",
            Config::On => "on",
            Config::Auditd => "auditd",
            Config::Floor => "floor",
            Config::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rows measured under every configuration.
const WORKLOAD_ROWS: [BenchRow; 11] = [
    BenchRow::WeightRead,
    BenchRow::WeightMmap,
    BenchRow::WatchedPread,
    BenchRow::UnwatchedPread,
    BenchRow::UnwatchedUringRead,
    BenchRow::UnwatchedWrite,
    BenchRow::TaintedWrite,
    BenchRow::OpenClose,
    BenchRow::FileChurn,
    BenchRow::PythonLoader,
    BenchRow::ProcessChurn,
];

/// The rows measured without a policy and with an enforce-mode one.
const ENFORCEMENT_ROWS: [BenchRow; 2] = [BenchRow::EnforceOpen, BenchRow::EnforceRead];

/// The weight set of the enforcement rows' policy.
const ENFORCE_SET: &str = "bench";

/// The samples of one workload row.
pub struct WorkloadRow {
    pub row: BenchRow,
    /// Per configuration and repetition, the nanoseconds of each timed run
    /// (several for short workloads, whose median is the repetition's
    /// sample).
    pub runs: BTreeMap<Config, Vec<Vec<f64>>>,
    /// Why the whole row could not be measured.
    pub unavailable: Option<String>,
}

/// One agent metric: not run, measured, or failed (with the reason).
pub type Metric<T> = Option<Result<T, String>>;

#[derive(Default)]
pub struct AgentResults {
    pub rate: Metric<agent::RateResult>,
    pub burst: Metric<agent::BurstResult>,
    pub memory: Metric<agent::MemoryResult>,
    pub latency: Metric<agent::LatencyResult>,
    pub policy: Metric<agent::PolicyResult>,
    pub reload: Metric<agent::ReloadResult>,
}

#[derive(Default)]
pub struct OutputResults {
    /// Native alone, then with an OCSF and with an ECS output beside it.
    pub encodings: Vec<Metric<outputs::EncodingResult>>,
    pub drain: Metric<outputs::DrainResult>,
}

#[derive(Default)]
pub struct StoreResults {
    pub ingest: Metric<store::IngestResult>,
    pub synthetic: Metric<store::SyntheticResult>,
}

/// Everything a run found, for the report.
pub struct Results {
    pub unix_time: i64,
    pub machine: procfs::Machine,
    pub quick: bool,
    pub partial: bool,
    pub runs: u32,
    pub sizes: fixtures::Sizes,
    pub sensor: String,
    pub auditd_version: Option<String>,
    pub floor_hooks: Option<u64>,
    pub bench_dir: PathBuf,
    pub workloads: Vec<WorkloadRow>,
    /// The enforcement rows, measured under [`Config::ENFORCEMENT`].
    pub enforcement: Vec<WorkloadRow>,
    /// What enforced their policy, as its `policy_loaded` record said.
    pub enforce_mechanism: Option<String>,
    pub config_unavailable: BTreeMap<Config, String>,
    pub agent: AgentResults,
    pub store: StoreResults,
    pub outputs: OutputResults,
    pub notes: Vec<String>,
}

pub fn execute(ws: &Workspace, args: &BenchArgs) -> Result<()> {
    if !process::is_root() {
        bail!(
            "the benchmark loads eBPF programs, runs auditd and installs Debian packages: \
             run it as root"
        );
    }
    setup::execute(ws)?;
    build::build_sensor(ws, true)?;
    let binary = build::binary_path(ws, true)?;
    let target = ws.target_dir()?;
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let selected = |row: BenchRow| args.only.is_empty() || args.only.contains(&row);
    let sizes = fixtures::Sizes::new(args.quick);
    let layout = fixtures::Layout::choose(&target);
    layout.prepare(&sizes)?;

    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut results = Results {
        unix_time,
        machine: procfs::machine()?,
        quick: args.quick,
        partial: !args.only.is_empty(),
        runs: args.runs,
        sizes,
        sensor: sensor_description(&binary),
        auditd_version: None,
        floor_hooks: None,
        bench_dir: layout.root.clone(),
        workloads: Vec::new(),
        enforcement: Vec::new(),
        enforce_mechanism: None,
        config_unavailable: BTreeMap::new(),
        agent: AgentResults::default(),
        store: StoreResults::default(),
        outputs: OutputResults::default(),
        notes: Vec::new(),
    };

    let rows: Vec<BenchRow> = WORKLOAD_ROWS.into_iter().filter(|r| selected(*r)).collect();
    if !rows.is_empty() {
        let phase = Phase {
            name: None,
            configs: &Config::ALL,
            watch: &layout.models,
            policy: None,
        };
        results.workloads =
            measure_workloads(&binary, &layout, &phase, &rows, args.runs, &mut results)?;
    }
    let rows: Vec<BenchRow> = ENFORCEMENT_ROWS
        .into_iter()
        .filter(|r| selected(*r))
        .collect();
    if !rows.is_empty() {
        let policy = layout.run.join("enforce-policy.toml");
        let reader = std::env::current_exe().context("cannot find the xtask executable")?;
        policy::write(
            &policy,
            &policy::enforce_allowing(ENFORCE_SET, &layout.enforce, &reader)?,
        )?;
        let phase = Phase {
            name: Some("enforcement"),
            configs: &Config::ENFORCEMENT,
            watch: &layout.enforce,
            policy: Some(&policy),
        };
        results.enforcement =
            measure_workloads(&binary, &layout, &phase, &rows, args.runs, &mut results)?;
    }
    let ctx = agent::Ctx {
        binary: &binary,
        layout: &layout,
        quick: args.quick,
    };
    let run_metric = |row: BenchRow, what: &str| {
        let run = selected(row);
        if run {
            eprintln!("==> bench: agent {what}");
        }
        run
    };
    if run_metric(BenchRow::AgentRate, "sustained rate") {
        results.agent.rate = metric(agent::rate(&ctx));
    }
    if run_metric(BenchRow::AgentBurst, "ring-buffer burst") {
        results.agent.burst = metric(agent::burst(&ctx));
    }
    if run_metric(BenchRow::AgentMemory, "memory and start-up") {
        results.agent.memory = metric(agent::memory(&ctx, sizes.many_files));
    }
    if run_metric(BenchRow::AgentLatency, "end-to-end latency") {
        results.agent.latency = metric(agent::latency(&ctx));
    }
    if run_metric(BenchRow::PolicyCompile, "policy compile") {
        results.agent.policy = metric(agent::policy_compile(&ctx, sizes.many_files));
    }
    if run_metric(BenchRow::PolicyReload, "policy reload") {
        results.agent.reload = metric(agent::policy_reload(&ctx, sizes.many_files));
    }
    if run_metric(BenchRow::StoreIngest, "audit store with capture running") {
        results.store.ingest = metric(store::ingest(&ctx));
    }
    for (row, format) in [
        (BenchRow::OutputNative, "native"),
        (BenchRow::OutputOcsf, "ocsf"),
        (BenchRow::OutputEcs, "ecs"),
    ] {
        if run_metric(row, &format!("output rate, {format}")) {
            results
                .outputs
                .encodings
                .push(metric(outputs::encoding(&ctx, format)));
        }
    }
    if run_metric(BenchRow::SpoolDrain, "spool drain") {
        results.outputs.drain = metric(outputs::spool_drain(&ctx));
    }
    if run_metric(BenchRow::StoreSynthetic, "audit store, synthetic records") {
        results.store.synthetic = metric(store::synthetic(&ctx, sizes.store_records));
    }

    let json_path = out_dir.join("results.json");
    let json = serde_json::to_string_pretty(&report::json(&results))
        .context("cannot serialise the results")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let markdown = report::markdown(&results);
    // A reduced or partial run must not replace the published figures.
    let md_path = if results.quick || results.partial {
        out_dir.join("benchmarks.md")
    } else {
        workspace_root().join("docs").join("benchmarks.md")
    };
    std::fs::write(&md_path, markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    println!("{}", report::plain(&results));
    eprintln!(
        "bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

/// The repository root (the folder above this crate), where `docs/` is.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `weightwarden 0.1.0, commit abc1234` (with `+ local changes` when the
/// work tree differs from it).
fn sensor_description(binary: &Path) -> String {
    let version = process::stdout(Command::new(binary).arg("--version"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| "weightwarden (version unknown)".to_owned());
    let root = workspace_root();
    let commit = process::stdout(Command::new("git").arg("-C").arg(&root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let dirty = process::stdout(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_ok_and(|s| !s.trim().is_empty());
    match commit {
        Ok(commit) if dirty => format!("{version}, commit {} + local changes", commit.trim()),
        Ok(commit) => format!("{version}, commit {}", commit.trim()),
        Err(_) => version,
    }
}

/// A configuration while it is up.
enum Session {
    Off,
    On(children::Agent),
    Auditd(auditd::Auditd),
    Floor(children::Floor),
    Enforce(children::Agent),
}

impl Session {
    fn config(&self) -> Config {
        match self {
            Session::Off => Config::Off,
            Session::On(_) => Config::On,
            Session::Auditd(_) => Config::Auditd,
            Session::Floor(_) => Config::Floor,
            Session::Enforce(_) => Config::Enforce,
        }
    }
}

/// Rows measured together, every repetition under each of `configs`.
struct Phase<'a> {
    /// Which rows, in messages and the sensor outputs' names (none for
    /// the main workload rows).
    name: Option<&'a str>,
    configs: &'a [Config],
    /// What the sensor watches when it runs.
    watch: &'a Path,
    /// The policy of [`Config::Enforce`].
    policy: Option<&'a Path>,
}

fn measure_workloads(
    binary: &Path,
    layout: &fixtures::Layout,
    phase: &Phase,
    rows: &[BenchRow],
    runs: u32,
    results: &mut Results,
) -> Result<Vec<WorkloadRow>> {
    let sizes = results.sizes;
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    // Held to the end: puts the audit rules and flag back as found.
    let _audit_host = if phase.configs.contains(&Config::Auditd) {
        match auditd::AuditHost::prepare() {
            Ok(host) => {
                results.auditd_version = process::stdout(Command::new("dpkg-query").args([
                    "-W",
                    "-f=${Version}",
                    "auditd",
                ]))
                .ok();
                Some(host)
            }
            Err(err) => {
                let reason = format!("{err:#}");
                eprintln!("bench: auditd unavailable: {reason}");
                results.config_unavailable.insert(Config::Auditd, reason);
                None
            }
        }
    } else {
        None
    };
    let mut loader = None;
    let mut workloads: Vec<WorkloadRow> = rows
        .iter()
        .map(|&row| WorkloadRow {
            row,
            runs: BTreeMap::new(),
            unavailable: None,
        })
        .collect();
    if let Some(python) = workloads
        .iter_mut()
        .find(|w| w.row == BenchRow::PythonLoader)
    {
        match python::Loader::prepare(&layout.run) {
            Ok(l) => loader = Some(l),
            Err(err) => python.unavailable = Some(format!("{err:#}")),
        }
    }

    let configs = phase.configs;
    for rep in 0..runs {
        for k in 0..configs.len() {
            // Rotated each repetition, so no configuration always runs
            // first or right after another.
            let config = configs[(rep as usize + k) % configs.len()];
            if results.config_unavailable.contains_key(&config) {
                continue;
            }
            let of_phase = phase
                .name
                .map_or_else(String::new, |n| format!(" of the {n} rows"));
            eprintln!(
                "==> bench: repetition {}/{runs}{of_phase}, sensor {config}",
                rep + 1
            );
            let session = match start_session(config, binary, layout, phase, rep) {
                Ok(session) => session,
                Err(err) if config == Config::On || config == Config::Off => return Err(err),
                Err(err) => {
                    let reason = format!("{err:#}");
                    eprintln!("bench: {config} unavailable: {reason}");
                    results.config_unavailable.insert(config, reason);
                    continue;
                }
            };
            if let Session::Floor(floor) = &session {
                results.floor_hooks = Some(floor.hooks);
            }
            thread::sleep(SETTLE);
            if !procfs::wait_idle(IDLE_SHARE, IDLE_WINDOW, IDLE_TIMEOUT)? {
                results.notes.push(format!(
                    "The machine was not {:.0}% idle within {} s before repetition {}{of_phase} \
                     with the sensor {config}; it was measured anyway.",
                    IDLE_SHARE * 100.0,
                    IDLE_TIMEOUT.as_secs(),
                    rep + 1
                ));
            }
            for workload in &mut workloads {
                if workload.unavailable.is_some() {
                    continue;
                }
                let times = measure(&exe, workload.row, layout, &sizes, loader.as_mut())
                    .with_context(|| {
                        format!(
                            "measuring {} with the sensor {config}",
                            row_name(workload.row)
                        )
                    })?;
                workload.runs.entry(config).or_default().push(times);
            }
            finish_session(session, layout, &sizes, rows, rep, results)?;
        }
    }
    if let Some(method) = loader.and_then(|l| l.method) {
        results.notes.push(format!(
            "The Python loader used `{method}` (Debian's /usr/bin/python3)."
        ));
    }
    Ok(workloads)
}

fn start_session(
    config: Config,
    binary: &Path,
    layout: &fixtures::Layout,
    phase: &Phase,
    rep: u32,
) -> Result<Session> {
    let name = |config: Config| match phase.name {
        Some(phase) => format!("{phase}-{config}-{rep}"),
        None => format!("{config}-{rep}"),
    };
    Ok(match config {
        Config::Off => Session::Off,
        Config::On => Session::On(children::Agent::start(
            binary,
            &[phase.watch],
            &layout.run,
            &name(config),
        )?),
        Config::Auditd => Session::Auditd(auditd::Auditd::start(phase.watch, &layout.run)?),
        Config::Floor => Session::Floor(children::Floor::start(binary, &layout.run)?),
        Config::Enforce => {
            let policy = phase
                .policy
                .context("the enforce configuration needs a policy")?;
            let agent = children::Agent::start_with_policy(
                binary,
                &[phase.watch],
                &layout.run,
                &name(config),
                Some(policy),
            )?;
            // Measuring anything else than an enforced policy over the
            // workloads' file would mislabel every figure.
            policy::first_loaded(agent.output(), POLICY_LOADED_TIMEOUT)?.check_enforcing(1)?;
            Session::Enforce(agent)
        }
    })
}

/// The watched file `row` works on, whose records show the sensor saw it.
fn watched_file(
    row: BenchRow,
    layout: &fixtures::Layout,
    sizes: &fixtures::Sizes,
) -> Option<PathBuf> {
    match row {
        BenchRow::WeightRead | BenchRow::WeightMmap => Some(layout.weight_file(sizes)),
        BenchRow::WatchedPread => Some(layout.small_watched()),
        BenchRow::EnforceOpen | BenchRow::EnforceRead => Some(layout.enforce_file()),
        _ => None,
    }
}

/// Stops the configuration and checks it did what it is there for: the
/// sensor wrote records for the watched files used and no policy verdict
/// on them (the enforcement rows' policy allows their workloads), auditd
/// logged.
fn finish_session(
    session: Session,
    layout: &fixtures::Layout,
    sizes: &fixtures::Sizes,
    rows: &[BenchRow],
    rep: u32,
    results: &mut Results,
) -> Result<()> {
    let config = session.config();
    match session {
        Session::Off => {}
        Session::Floor(floor) => floor.stop()?,
        Session::Auditd(auditd) => {
            let logged = auditd.stop()?;
            if logged == 0 {
                results.notes.push(format!(
                    "auditd logged no record with key {} in repetition {}: its watch may not \
                     have fired",
                    auditd::KEY,
                    rep + 1
                ));
            }
        }
        Session::On(agent) | Session::Enforce(agent) => {
            let output = agent.output().to_path_buf();
            agent.stop()?;
            let mut watched: Vec<PathBuf> = rows
                .iter()
                .filter_map(|&row| watched_file(row, layout, sizes))
                .collect();
            watched.sort();
            watched.dedup();
            for file in &watched {
                let scan = records::scan(&output, file)?;
                if scan.opens == 0 {
                    bail!(
                        "the sensor wrote no open record for {} (output {}): it was not \
                         watching the benchmark's files, so the `{config}` figures would be \
                         wrong",
                        file.display(),
                        output.display()
                    );
                }
                if scan.verdicts > 0 {
                    bail!(
                        "the sensor wrote {} policy verdicts on {} (output {}): the \
                         workload was not let through as the policy says, so the \
                         `{config}` figures would not be those of an allowed process",
                        scan.verdicts,
                        file.display(),
                        output.display()
                    );
                }
            }
            if config == Config::Enforce {
                let mechanism = policy::first_loaded(&output, POLICY_LOADED_TIMEOUT)?.mechanism;
                match &results.enforce_mechanism {
                    None => results.enforce_mechanism = Some(mechanism),
                    Some(seen) if *seen != mechanism => results.notes.push(format!(
                        "The policy was enforced by `{mechanism}` in repetition {}, by \
                         `{seen}` before.",
                        rep + 1
                    )),
                    Some(_) => {}
                }
            }
            let stop = records::last_status(&output)?;
            let lost = stop
                .as_ref()
                .and_then(|r| records::counter(r, "kernel.ringbuf_full"))
                .with_context(|| {
                    format!("{} ends without the sensor's counters", output.display())
                })?;
            if lost > 0 {
                results.notes.push(format!(
                    "The sensor lost {lost} records in the kernel (ringbuf_full) during \
                     repetition {}.",
                    rep + 1
                ));
            }
            if let Some(store) = stop
                .as_ref()
                .and_then(records::StoreCounters::of)
                .filter(|s| s.lost() > 0)
            {
                results.notes.push(format!(
                    "The agent's audit store lost {} records (the outputs have them) with the \
                     sensor {config} in repetition {}.",
                    store.lost_by_reason(),
                    rep + 1
                ));
            }
        }
    }
    Ok(())
}

/// What the process-churn row spawns: coreutils' `true`, which exits at
/// once.
const SPAWNED_PROGRAM: &str = "/bin/true";

/// Timed runs per measurement: several for the short workloads (a tenth
/// of a second each, where one interruption would swing a single run),
/// one for those that last seconds and average over it themselves.
pub fn timed_runs(row: BenchRow) -> u32 {
    match row {
        BenchRow::WeightRead | BenchRow::WeightMmap | BenchRow::PythonLoader => 5,
        BenchRow::OpenClose
        | BenchRow::FileChurn
        | BenchRow::ProcessChurn
        | BenchRow::EnforceOpen => 3,
        _ => 1,
    }
}

/// One measurement of `row` in a fresh process: the nanoseconds of each
/// timed run.
fn measure(
    exe: &Path,
    row: BenchRow,
    layout: &fixtures::Layout,
    sizes: &fixtures::Sizes,
    loader: Option<&mut python::Loader>,
) -> Result<Vec<f64>> {
    let timed = timed_runs(row);
    let mut taint = None;
    let (workload, path, calls, files) = match row {
        BenchRow::WeightRead => (
            WorkerWorkload::SequentialRead,
            layout.weight_file(sizes),
            0,
            1,
        ),
        BenchRow::WeightMmap => (WorkerWorkload::MmapTouch, layout.weight_file(sizes), 0, 1),
        BenchRow::WatchedPread => (
            WorkerWorkload::Pread,
            layout.small_watched(),
            sizes.pread_calls,
            1,
        ),
        BenchRow::UnwatchedPread => (
            WorkerWorkload::Pread,
            layout.small_unwatched(),
            sizes.pread_calls,
            1,
        ),
        BenchRow::UnwatchedUringRead => (
            WorkerWorkload::UringRead,
            layout.small_unwatched(),
            sizes.pread_calls,
            1,
        ),
        BenchRow::UnwatchedWrite | BenchRow::TaintedWrite => {
            if row == BenchRow::TaintedWrite {
                taint = Some(layout.small_watched());
            }
            (
                WorkerWorkload::Pwrite,
                layout.small_unwatched(),
                sizes.pread_calls,
                1,
            )
        }
        BenchRow::OpenClose => (
            WorkerWorkload::OpenClose,
            layout.storm.clone(),
            sizes.storm_calls,
            sizes.storm_files,
        ),
        BenchRow::FileChurn => (
            WorkerWorkload::FileChurn,
            layout.churn.clone(),
            sizes.churn_calls,
            sizes.storm_files,
        ),
        BenchRow::ProcessChurn => (
            WorkerWorkload::Spawn,
            PathBuf::from(SPAWNED_PROGRAM),
            sizes.spawns,
            1,
        ),
        BenchRow::EnforceOpen => (
            WorkerWorkload::OpenCloseFile,
            layout.enforce_file(),
            sizes.enforce_opens,
            1,
        ),
        BenchRow::EnforceRead => (
            WorkerWorkload::Pread,
            layout.enforce_file(),
            sizes.pread_calls,
            1,
        ),
        BenchRow::PythonLoader => {
            let loader = loader.context("the Python loader was not prepared")?;
            return loader.measure(&layout.model_file(sizes), timed);
        }
        other => bail!("{} is not a workload row", row_name(other)),
    };
    let name = workload
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .context("every worker workload has a name")?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench-worker", "--workload", &name, "--path"])
        .arg(&path)
        .args(["--calls", &calls.to_string(), "--files", &files.to_string()])
        .args(["--timed", &timed.to_string()]);
    if let Some(taint) = taint {
        cmd.arg("--taint").arg(taint);
    }
    let out = process::stdout(&mut cmd)?;
    // `<work> <ns> <ns> ...`
    let times: Option<Vec<f64>> = out
        .split_whitespace()
        .skip(1)
        .map(|ns| ns.parse::<u64>().ok().map(|ns| ns as f64))
        .collect();
    times
        .filter(|t| t.len() == timed as usize)
        .with_context(|| format!("the bench worker printed {:?}", out.trim()))
}

/// An agent metric's outcome, its error kept as text for the report.
fn metric<T>(result: Result<T>) -> Metric<T> {
    Some(result.map_err(|err| format!("{err:#}")))
}

/// The name `--only` takes for a row.
pub fn row_name(row: BenchRow) -> String {
    row.to_possible_value()
        .map_or_else(|| format!("{row:?}"), |v| v.get_name().to_owned())
}
