//! The command line: every clap type in `args`, one file per subcommand.

pub mod args;
pub mod doctor;

pub use args::{Cli, Command, exit};
