//! The `weightwarden` binary: parse the command line and hand it to the
//! subcommand's `execute` (one file each under `cli/`).

use std::process::ExitCode;

use clap::Parser;
use sensor::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let status = match Cli::parse().command {
        Command::Run(args) => cli::run::execute(&args),
        Command::Doctor(args) => cli::doctor::execute(&args),
        Command::Baseline(args) => cli::baseline::execute(&args),
        Command::Policy(command) => cli::policy::execute(&command),
        Command::Verify(args) => cli::verify::execute(&args),
        Command::Migrate(args) => cli::migrate::execute(&args),
        Command::Query(args) => cli::query::execute(&args),
        Command::Timeline(args) => cli::timeline::execute(&args),
        Command::Stats(args) => cli::stats::execute(&args),
        Command::Unload(args) => cli::unload::execute(&args),
        Command::BenchFloor => cli::bench_floor::execute(),
        Command::BenchStore(args) => cli::bench_store::execute(&args),
    };
    ExitCode::from(status)
}
