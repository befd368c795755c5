//! The command line: every clap type, and the dispatch to subcommands.
//! Arguments are validated into plain values before anything is started.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::when::When;
use crate::{
    agent::RunSettings,
    config::{Config, OutputSpec, Overrides},
};

/// Exit statuses, documented in the README.
pub mod exit {
    /// Ran and stopped cleanly (or `doctor`: `run` can work here).
    pub const OK: u8 = 0;
    /// A runtime failure after start-up, or `doctor`: `run` cannot work here.
    pub const FAILURE: u8 = 1;
    /// Bad input: configuration, flags, or a host that cannot run the sensor.
    pub const USAGE: u8 = 2;
    /// `run` stopped cleanly, but records were lost for an output.
    pub const LOST: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "weightwarden",
    version,
    about = "eBPF sensor that audits every access to ML model weight files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the kernel programs and write an audit record for every access
    /// to a watched weight file, until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Report what this host supports and whether `run` can work here.
    Doctor(DoctorArgs),
    /// Write the SHA-256 of every watched weight file to a manifest that
    /// `run` checks them against (`detect.baseline`; docs/detections.md).
    Baseline(BaselineArgs),
    /// Work with a policy file (docs/policy.md).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check that the audit store's chain is intact: no record changed,
    /// removed, inserted or reordered, no tail cut off (docs/store.md).
    /// Exits 0 when intact, 1 where it breaks (and says where).
    Verify(VerifyArgs),
    /// Bring an audit store written by an older weightwarden to this one's
    /// schema (the agent does it when it starts; this is for a copy taken
    /// for forensics). Records, chain and links are kept as they are.
    Migrate(MigrateArgs),
    /// Find records in the audit store: by file (a glob), weight set,
    /// process, executable, user, container, action, severity or detection,
    /// over a time window, in time order (docs/store.md, Querying).
    /// Prints a table on a terminal, else the records as JSON lines, byte
    /// for byte as the agent wrote them. Exits 0 (also when nothing
    /// matches), 2 for bad flags or a store that cannot be read.
    Query(QueryArgs),
    /// Everything one process tree did, in time order: the process, its
    /// ancestors and all its descendants — their execs and exits, weight
    /// accesses, sends and detections (docs/store.md, Querying).
    Timeline(TimelineArgs),
    /// Summarise a time window: who read which weights and how many bytes,
    /// the top readers, detections by id and records by action.
    Stats(StatsArgs),
    /// Detach the programs a stopped agent left attached for the next one
    /// (`kernel.handover`, or an agent that died): unpins everything in
    /// the pin directory. Refuses while an agent runs on them.
    Unload(UnloadArgs),
    /// Benchmarks only: attach empty programs to every hook the sensor uses
    /// and wait for SIGINT/SIGTERM.
    #[command(hide = true)]
    BenchFloor,
    /// Benchmarks only: fill a new audit store with synthetic records
    /// through the real writer and print what it sustained.
    #[command(hide = true)]
    BenchStore(super::bench_store::BenchStoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file. Default: /etc/weightwarden/weightwarden.toml when
    /// it exists, otherwise built-in defaults.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Watch this directory tree (repeatable). Replaces the configured roots.
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// Where records go: `stdout` or `jsonl:PATH`, optionally with
    /// `?format=native|ocsf|ecs` (repeatable). Replaces the configured
    /// outputs.
    #[arg(long = "output", value_name = "SPEC")]
    pub output: Vec<OutputSpec>,
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_bytes: Option<u32>,
    /// Seconds between heartbeat records.
    #[arg(long = "heartbeat-interval", value_name = "SECS")]
    pub heartbeat_interval: Option<u64>,
    /// Seconds after which a long-lived reader's read summary is flushed.
    #[arg(long = "read-flush-interval", value_name = "SECS")]
    pub read_flush_interval: Option<u64>,
    /// A GPU device node pattern (repeatable; a glob per path component:
    /// `*`, `?`, `[0-9]`, `{a,b}`). Replaces the configured patterns.
    #[arg(long = "gpu-device", value_name = "PATTERN")]
    pub gpu_device: Vec<String>,
    /// Judge every access against this policy file (docs/policy.md;
    /// audit mode only in this version). Replaces the configured `policy`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Where the agent keeps state across restarts, or `none`. Replaces
    /// `agent.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The audit store's database, or `none` for no store. Replaces
    /// `store.path` (default /var/lib/weightwarden/audit.db).
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// At SIGTERM, leave the programs attached and pinned for the next
    /// agent to adopt (restarts and upgrades without a gap). Sets
    /// `kernel.handover`; SIGINT always detaches; `weightwarden unload`
    /// detaches what a stopped agent left.
    #[arg(long)]
    pub handover: bool,
    /// Run although another agent runs on this host (for tests only: two
    /// agents record and enforce everything twice).
    #[arg(long, hide = true)]
    pub allow_second_agent: bool,
    /// Serve Prometheus metrics at this address (`HOST:PORT`), or `none`.
    /// Replaces `agent.metrics` (default 127.0.0.1:9465).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// Which store a reading subcommand opens.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The store's database. Default: the configured `store.path`.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Configuration file whose `[store]` names the database and key.
    /// Default: /etc/weightwarden/weightwarden.toml when it exists.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The chain's key. Default: `store.key`, else beside the database
    /// (`audit.key` for `audit.db`).
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// A chain head kept outside the host (a heartbeat's `sensor.store_head`,
    /// `SEQ:HEX`): the chain must contain it, which proves no tail was cut
    /// off since.
    #[arg(long, value_name = "SEQ:HEX")]
    pub head: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The time window of a reading subcommand.
#[derive(Debug, clap::Args)]
pub struct WindowArgs {
    /// Only records at or after WHEN: a span back from now (30s, 90m, 2h,
    /// 7d) or an RFC 3339 time (2026-05-01T09:30:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<When>,
    /// Only records at or before WHEN (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<When>,
}

/// How a reading subcommand prints its rows.
#[derive(Debug, clap::Args)]
pub struct FormatArgs {
    /// The records as JSON lines, byte for byte as the agent's outputs wrote
    /// them (the default when stdout is not a terminal).
    #[arg(long, conflicts_with_all = ["csv", "table"])]
    pub json: bool,
    /// CSV: a header line, then a line per record.
    #[arg(long, conflicts_with = "table")]
    pub csv: bool,
    /// An aligned table (the default on a terminal).
    #[arg(long)]
    pub table: bool,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    /// Records of files whose path matches GLOB (`*`, `?`, `[...]`;
    /// case-sensitive; `*` crosses `/`): '/models/llama/*'.
    #[arg(long, value_name = "GLOB")]
    pub path: Option<String>,
    /// Records naming this weight set (the policy's `[weights.NAME]`).
    #[arg(long, value_name = "NAME")]
    pub weights: Option<String>,
    /// Records of processes with this pid (every process that had it).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Records of processes whose executable matches GLOB: '*/python3*'.
    #[arg(long, value_name = "GLOB")]
    pub exe: Option<String>,
    /// Records of processes running as this user: a uid, or a name looked
    /// up on this host.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Records of processes in this container: its id or a prefix of it.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Records with this action (repeatable: any of them).
    #[arg(long = "action", value_name = "ACTION", value_parser = action_names())]
    pub actions: Vec<String>,
    /// Records of this severity or higher.
    #[arg(long, value_name = "LEVEL", value_parser = severity_names())]
    pub severity: Option<String>,
    /// Detections with this id (bulk_read, copy, egress, ...).
    #[arg(long, value_name = "ID")]
    pub detection: Option<String>,
    /// Print at most N records, the earliest (0: all).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u64,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("root").required(true))]
pub struct TimelineArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    /// The process with this pid: the latest one that had it with records
    /// in the window (a reused pid is said on stderr; --until picks an
    /// earlier one).
    #[arg(long, value_name = "PID", group = "root")]
    pub pid: Option<u32>,
    /// Every process of this container (its id or a prefix of it).
    #[arg(long, value_name = "ID", group = "root")]
    pub container: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Summarise records from WHEN on: a span back from now (30s, 90m, 2h,
    /// 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "24h")]
    pub since: When,
    /// Summarise records up to WHEN (same forms; default: now).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<When>,
    /// One JSON object (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "table")]
    pub json: bool,
    /// Aligned tables (the default on a terminal).
    #[arg(long)]
    pub table: bool,
}

/// The actions records have, as `--action` takes them.
fn action_names() -> clap::builder::PossibleValuesParser {
    crate::event::Action::ALL
        .map(crate::store::row::action_name)
        .into()
}

fn severity_names() -> clap::builder::PossibleValuesParser {
    crate::store::query::SEVERITIES
        .map(crate::store::row::severity_name)
        .into()
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy and explain it: which rules apply to which weight
    /// sets, shadowed rules, executables that do not exist. Exits 0 when
    /// the policy is usable, 1 when it has errors.
    Check(PolicyCheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Treat warnings (shadowed rules, missing executables or paths) as
    /// errors: exit 1 when there is any.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Configuration file (its roots, extensions and `detect.baseline`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Hash the weight files under this directory tree (repeatable).
    /// Replaces the configured roots.
    #[arg(long = "watch", value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// Where to write the manifest. Default: `detect.baseline`, else
    /// /var/lib/weightwarden/baseline.json.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Files hashed at once. Default: one per CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct UnloadArgs {
    /// The pin directory (`kernel.pin_dir`).
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The pin directory whose programs to report (`kernel.pin_dir`).
    #[arg(long, value_name = "DIR", default_value = crate::config::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

impl RunArgs {
    /// What this invocation asks for: the file, then the flags over it.
    pub fn resolve(&self) -> Result<RunSettings, crate::config::ConfigError> {
        let (mut config, source) = Config::load(self.config.as_deref())?;
        let roots_named = crate::agent::roots_were_named(&config, &self.watch);
        config.apply(Overrides {
            watch: self.watch.clone(),
            outputs: self.output.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            heartbeat_interval_secs: self.heartbeat_interval,
            read_flush_interval_secs: self.read_flush_interval,
            gpu_device_patterns: self.gpu_device.clone(),
            policy: self.policy.clone(),
            state_dir: self.state_dir.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        });
        if let Some(level) = &self.log_level {
            config.agent.log_level = level.clone();
        }
        config.kernel.handover |= self.handover;
        config.validate()?;
        Ok(RunSettings {
            config,
            roots_required: roots_named,
            config_origin: source.to_string(),
            allow_second_agent: self.allow_second_agent,
        })
    }
}
