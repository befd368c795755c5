//! `cargo xtask`: the one entry point developers and CI use to prepare a
//! machine, build, run and test weightwarden. The alias lives in
//! `.cargo/config.toml`; each subcommand has its own module with an
//! `execute` function, and every external command goes through `process`.

mod args;
mod bench;
mod build;
mod process;
mod run;
mod setup;
mod test;
mod vm_kernel;
mod workspace;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{
    args::{Cli, Command},
    workspace::Workspace,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The cause chain only: a backtrace of xtask itself (which
            // anyhow captures when RUST_BACKTRACE is set, as it often is in
            // CI) would bury the failing command.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let ws = Workspace::locate()?;
    match cli.command {
        Command::Setup(args) if args.build_only => setup::build_only(&ws),
        Command::Setup(_) => setup::execute(&ws),
        Command::Build(args) => build::execute(&ws, &args),
        Command::Run(args) => run::execute(&ws, &args),
        Command::Test(args) => test::execute(&ws, &args),
        Command::Bench(args) => bench::execute(&ws, &args),
        Command::BenchWorker(args) => bench::worker::execute(&args),
    }
}
