//! The command-line surface of `cargo xtask`: every clap type is here, so
//! the subcommand modules receive plain, already-validated values.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up, build, run and test weightwarden"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what this machine lacks (rust-src, bpf-linker, mounts,
    /// Debian packages, the VM tests' kernel); fast when everything is
    /// already there.
    Setup(SetupArgs),
    /// Set up, then build the sensor (the eBPF object is built and embedded
    /// by the sensor crate's build script).
    Build(BuildArgs),
    /// Set up, build, then replace this process with `weightwarden run`.
    Run(RunArgs),
    /// Run the whole suite: setup, fmt, clippy, unit tests, then the
    /// integration tests (root only), stopping at the first failure.
    Test(TestArgs),
    /// Measure what the sensor costs the host and what the agent sustains
    /// (root): installs auditd for the comparison, prints a table, writes
    /// target/bench/results.json and docs/benchmarks.md.
    Bench(BenchArgs),
    /// Internal to `bench`: one workload, warmed up once then timed, in a
    /// process started after the configuration under test.
    #[command(hide = true)]
    BenchWorker(BenchWorkerArgs),
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Only what building needs (rust-src, the linting tools, gcc, bpf-linker):
    /// no test packages, VM kernel, validators or mounts. For a container
    /// image's build stage (deploy/container/Containerfile).
    #[arg(long)]
    pub build_only: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Build and run the release binary (`--release=false` for a debug build).
    #[arg(
        long,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub release: bool,
    /// Arguments passed to `weightwarden run`, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Arguments passed to the integration test run after `--` (for
    /// example a test name filter).
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Repetitions of each workload under each configuration (the report
    /// gives their median and spread).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Smaller sizes (256 MiB weight file, 100k calls, 1 s rate steps,
    /// 200k synthetic store records) for a fast check; the Markdown then
    /// goes to target/bench/, not docs/.
    #[arg(long)]
    pub quick: bool,
    /// Run only this row (repeatable); the Markdown then goes to
    /// target/bench/, not docs/.
    #[arg(long, value_enum, value_name = "ROW")]
    pub only: Vec<BenchRow>,
}

/// The rows of the benchmark report, by the name `--only` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum BenchRow {
    /// 1 MiB sequential reads of the whole weight file.
    WeightRead,
    /// mmap (MAP_PRIVATE) of the weight file, touching every page.
    WeightMmap,
    /// 4 KiB preads of a watched file.
    WatchedPread,
    /// 4 KiB preads of a file outside the watched folder.
    UnwatchedPread,
    /// 4 KiB io_uring reads of a file outside the watched folder (one
    /// request per `io_uring_enter`).
    UnwatchedUringRead,
    /// 4 KiB pwrites to an unwatched file by a process that took no
    /// weights (what every write on the host pays).
    UnwatchedWrite,
    /// The same by a process that read a watched file first (its writes
    /// are followed: `send` records).
    TaintedWrite,
    /// open+close of unwatched files.
    OpenClose,
    /// Create, rename and unlink of unwatched files in an unwatched
    /// folder (what every path operation on the host pays).
    FileChurn,
    /// Python (numpy memmap or safetensors) loading a watched model.
    PythonLoader,
    /// Process churn: spawn and reap short-lived processes (`/bin/true`).
    ProcessChurn,
    /// open+close of a file of an enforce-mode policy by the process the
    /// policy allows: no sensor, the sensor without a policy, with it.
    EnforceOpen,
    /// 4 KiB preads of a file of an enforce-mode policy by the process
    /// the policy allows: no sensor, the sensor without a policy, with it.
    EnforceRead,
    /// Sustained watched-file opens per second with zero loss, and the
    /// agent's CPU per 100k records.
    AgentRate,
    /// The burst the ring buffer absorbs while the agent is stopped.
    AgentBurst,
    /// Resident memory and start-up time with 100k watched files.
    AgentMemory,
    /// End-to-end latency from syscall to record written.
    AgentLatency,
    /// Compiling and checking a policy that covers the 100k-file folder.
    PolicyCompile,
    /// SIGHUP to `policy_loaded` for an enforce-mode policy over the
    /// 100k-file folder (compile, fanotify marks, kernel tables).
    PolicyReload,
    /// Records/s the agent's audit store keeps while capture runs, at
    /// stepped rates of watched-file opens by short-lived processes.
    StoreIngest,
    /// Records/s written with zero loss to the native JSON lines output
    /// alone, and the agent's CPU per 100k records.
    OutputNative,
    /// The same with an OCSF JSON lines output beside it.
    OutputOcsf,
    /// The same with an ECS JSON lines output beside it.
    OutputEcs,
    /// Time for an HTTP output to drain a 1 GiB disk spool (64 MiB with
    /// --quick) once its collector is back.
    SpoolDrain,
    /// A store of synthetic records (10M; 200k with --quick) filled
    /// through the writer alone: its rate, size, and how long `query`,
    /// `timeline`, `stats` and `verify` take on it.
    StoreSynthetic,
}

#[derive(Debug, Args)]
pub struct BenchWorkerArgs {
    #[arg(long, value_enum)]
    pub workload: WorkerWorkload,
    /// The file read or opened, or the folder holding the open/close
    /// storm's files.
    #[arg(long)]
    pub path: PathBuf,
    /// Calls made by `pread`, `open-close` and `open-close-file`,
    /// processes by `spawn` (the whole-file workloads ignore it).
    #[arg(long, default_value_t = 0)]
    pub calls: u64,
    /// Files `open-close` cycles through (`f0000.dat`, `f0001.dat`, ...),
    /// and `file-churn` creates in turn.
    #[arg(long, default_value_t = 1)]
    pub files: u32,
    /// Timed runs after the warm-up (each is printed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub timed: u32,
    /// Read this (watched) file whole before the work, so the sensor
    /// follows the worker's writes.
    #[arg(long)]
    pub taint: Option<PathBuf>,
}

/// What a `bench-worker` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerWorkload {
    /// Read the whole file with 1 MiB `read` calls.
    SequentialRead,
    /// mmap the whole file MAP_PRIVATE and read one byte of every page.
    MmapTouch,
    /// `--calls` 4 KiB `pread` calls at offsets cycling through the file.
    Pread,
    /// `--calls` 4 KiB io_uring reads at offsets cycling through the file.
    UringRead,
    /// `--calls` 4 KiB `pwrite` calls at offsets cycling through the file.
    Pwrite,
    /// `--calls` open+close pairs over `--files` files.
    OpenClose,
    /// `--calls` open+close pairs of the one file `--path`.
    OpenCloseFile,
    /// `--calls` rounds of create (`open(O_CREAT)` + close), rename and
    /// unlink of a file in the folder `--path`.
    FileChurn,
    /// `--calls` spawns of `--path` (a program that exits at once), each
    /// waited for.
    Spawn,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Command {
        let cli = Cli::try_parse_from(std::iter::once("xtask").chain(argv.iter().copied()));
        match cli {
            Ok(cli) => cli.command,
            Err(err) => panic!("{argv:?} should parse: {err}"),
        }
    }

    #[test]
    fn run_defaults_to_release_and_passes_trailing_args() {
        let Command::Run(args) = parse(&["run", "--", "--config", "/etc/ww.toml"]) else {
            panic!("expected the run subcommand");
        };
        assert!(args.release);
        assert_eq!(args.args, ["--config", "/etc/ww.toml"]);
    }

    #[test]
    fn run_release_can_be_turned_off() {
        let Command::Run(args) = parse(&["run", "--release=false"]) else {
            panic!("expected the run subcommand");
        };
        assert!(!args.release);
        let Command::Run(args) = parse(&["run", "--release"]) else {
            panic!("expected the run subcommand");
        };
        assert!(args.release);
    }

    #[test]
    fn build_is_debug_unless_asked() {
        let Command::Build(args) = parse(&["build"]) else {
            panic!("expected the build subcommand");
        };
        assert!(!args.release);
    }

    #[test]
    fn test_forwards_a_filter_to_the_integration_tests() {
        let Command::Test(args) = parse(&["test", "--", "ring_buf"]) else {
            panic!("expected the test subcommand");
        };
        assert_eq!(args.args, ["ring_buf"]);
    }

    #[test]
    fn bench_defaults_to_five_full_runs_of_every_row() {
        let Command::Bench(args) = parse(&["bench"]) else {
            panic!("expected the bench subcommand");
        };
        assert_eq!(args.runs, 5);
        assert!(!args.quick);
        assert!(args.only.is_empty());
        let Command::Bench(args) = parse(&[
            "bench",
            "--quick",
            "--runs",
            "3",
            "--only",
            "open-close",
            "--only",
            "agent-rate",
            "--only",
            "enforce-open",
            "--only",
            "enforce-read",
            "--only",
            "policy-reload",
            "--only",
            "store-ingest",
            "--only",
            "store-synthetic",
        ]) else {
            panic!("expected the bench subcommand");
        };
        assert_eq!(args.runs, 3);
        assert!(args.quick);
        assert_eq!(
            args.only,
            [
                BenchRow::OpenClose,
                BenchRow::AgentRate,
                BenchRow::EnforceOpen,
                BenchRow::EnforceRead,
                BenchRow::PolicyReload,
                BenchRow::StoreIngest,
                BenchRow::StoreSynthetic
            ]
        );
        let zero = Cli::try_parse_from(["xtask", "bench", "--runs", "0"]);
        assert!(zero.is_err());
    }

    #[test]
    fn bench_worker_takes_a_workload() {
        let Command::BenchWorker(args) = parse(&[
            "bench-worker",
            "--workload",
            "pread",
            "--path",
            "/m/small.safetensors",
            "--calls",
            "1000",
        ]) else {
            panic!("expected the bench-worker subcommand");
        };
        assert_eq!(args.workload, WorkerWorkload::Pread);
        assert_eq!(args.calls, 1000);
        assert_eq!(args.files, 1);
        assert_eq!(args.timed, 1);
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
