//! The `weightwarden` binary: parse, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use sensor::{
    agent::{self, Phase, RunSettings},
    cli::{Cli, Command, doctor, exit},
};
use tracing_subscriber::EnvFilter;

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_env("WEIGHTWARDEN_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sensor={level},weightwarden={level}")));
    // Colour only for a person at a terminal, not for journald or a
    // container runtime's log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor(args) => {
            let report = doctor::diagnose();
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => {
                        eprintln!("weightwarden: cannot encode the report: {err}");
                        return ExitCode::from(exit::FAILURE);
                    }
                }
            } else {
                print!("{}", report.render());
            }
            ExitCode::from(if report.can_run {
                exit::OK
            } else {
                exit::FAILURE
            })
        }
        Command::BenchFloor => bench_floor(),
        Command::Run(args) => {
            let (config, origin, roots_required) = match args.resolve() {
                Ok(resolved) => resolved,
                Err(err) => {
                    eprintln!("weightwarden: {err}");
                    return ExitCode::from(exit::USAGE);
                }
            };
            init_logging(&config.agent.log_level);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("weightwarden: cannot start the async runtime: {err}");
                    return ExitCode::from(exit::FAILURE);
                }
            };
            let settings = RunSettings {
                config,
                roots_required,
                config_origin: origin,
            };
            match runtime.block_on(agent::run(settings)) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(err) => {
                    eprintln!("weightwarden: {}", error_chain(&err));
                    ExitCode::from(match err.phase {
                        Phase::StartUp => exit::USAGE,
                        Phase::Live => exit::FAILURE,
                    })
                }
            }
        }
    }
}

/// Attaches the empty programs, says so on stdout, waits for a signal.
fn bench_floor() -> ExitCode {
    let (_ebpf, attached) = match sensor::kernel::floor::attach() {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("weightwarden: {}", error_chain(&err));
            return ExitCode::from(exit::FAILURE);
        }
    };
    println!("floor attached {attached}");
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(err) = signals.thread_block() {
        eprintln!("weightwarden: cannot block SIGINT/SIGTERM to wait for them: {err}");
        return ExitCode::from(exit::FAILURE);
    }
    let _ = signals.wait();
    ExitCode::from(exit::OK)
}

/// The error and its causes, `: `-separated.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
