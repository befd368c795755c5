//! The kernel programs, embedded in the agent at build time.

/// The BPF ELF object built from `sensor-ebpf` by `build.rs`. Empty when the
/// build ran with `AYA_BUILD_SKIP=1`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/weightwarden"));
