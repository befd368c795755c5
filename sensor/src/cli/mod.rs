//! The command line: every clap type in `args`, one file per subcommand.

pub mod args;
pub mod baseline;
pub mod bench_floor;
pub mod bench_store;
pub mod doctor;
pub mod migrate;
pub mod policy;
pub mod query;
pub mod run;
pub mod stats;
pub mod store_args;
pub mod table;
pub mod timeline;
pub mod unload;
pub mod verify;
pub mod when;

pub use args::{Cli, Command, exit};
