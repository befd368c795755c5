//! weightwarden's agent: loads the kernel programs, keeps the watched-inode
//! set current, turns kernel records into audit records and writes them.
//!
//! Data flows one way: kernel (`loader`, `programs`) -> `decode` ->
//! `process` context -> `record` -> `sink`; `agent` wires them together.

pub mod agent;
pub mod btf;
pub mod cli;
pub mod clock;
pub mod config;
pub mod coverage_book;
pub mod decode;
pub mod doctor;
pub mod ebpf;
pub mod floor;
pub mod loader;
pub mod preflight;
pub mod process;
pub mod programs;
pub mod read_maps;
pub mod record;
pub mod sink;
pub mod watch;
