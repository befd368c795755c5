//! weightwarden's agent: loads the kernel programs, keeps the watched-inode
//! set current, turns kernel records into audit records and writes them.
//!
//! Data flows one way: kernel (`loader`, `programs`) -> `decode` ->
//! `process` context -> `record` -> `sink`; `pipeline` wires them together.

pub mod btf;
pub mod decode;
pub mod ebpf;
pub mod loader;
pub mod programs;
