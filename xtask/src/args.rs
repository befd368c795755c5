//! The command-line surface of `cargo xtask`: every clap type is here, so
//! the subcommand modules receive plain, already-validated values.

use clap::{ArgAction, Args, Parser, Subcommand};

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
    /// Debian packages); fast when everything is already there.
    Setup,
    /// Set up, then build the sensor (the eBPF object is built and embedded
    /// by the sensor crate's build script).
    Build(BuildArgs),
    /// Set up, build, then replace this process with `weightwarden run`.
    Run(RunArgs),
    /// Run the whole suite: setup, fmt, clippy, unit tests, then the
    /// integration tests (root only), stopping at the first failure.
    Test(TestArgs),
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
    fn cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
