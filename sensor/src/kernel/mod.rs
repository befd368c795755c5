//! The kernel stage: the embedded eBPF object, the running kernel's BTF
//! offsets, the checks made before loading, the hook tiers and their
//! program tables, the loader shared by `run`, `doctor` and the benchmark
//! floor, the agent's views of the kernel maps, and the decoding of ring
//! buffer records into typed kernel events.

pub mod btf;
pub mod decode;
pub mod floor;
pub mod loader;
pub mod maps;
pub mod object;
pub mod pins;
pub mod preflight;
pub mod programs;
pub mod uring;
