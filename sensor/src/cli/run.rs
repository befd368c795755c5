//! `weightwarden run`: resolve the configuration, set up logging and the
//! runtime, run the agent, and turn the outcome into an exit status.

use tracing_subscriber::EnvFilter;

use super::{args::RunArgs, exit};
use crate::{
    Chain,
    agent::{self, Phase},
};

pub fn execute(args: &RunArgs) -> u8 {
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::USAGE;
        }
    };
    init_logging(&settings.config.agent.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!(
                "weightwarden: cannot start the async runtime: {}",
                Chain(&err)
            );
            // Nothing was loaded yet: a start-up failure.
            return exit::USAGE;
        }
    };
    match runtime.block_on(agent::run(settings)) {
        Ok(stopped) if stopped.outputs_lost > 0 => {
            eprintln!(
                "weightwarden: stopped, but {} record(s) could not be written to the outputs \
                 (the log names each output and why; sensor_stop's sinks counters say how many \
                 each lost)",
                stopped.outputs_lost
            );
            exit::LOST
        }
        Ok(_) => exit::OK,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            match err.phase {
                Phase::StartUp => exit::USAGE,
                Phase::Live => exit::FAILURE,
            }
        }
    }
}

pub(super) fn init_logging(level: &str) {
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
