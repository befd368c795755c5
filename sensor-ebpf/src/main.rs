//! weightwarden's kernel programs.
//!
//! - `tier/`: the entry points, one module per hook tier (tracepoint today;
//!   fentry and LSM next), each decoding its own hooks' contexts.
//! - tier-neutral logic any tier calls with plain values: `process` (exec,
//!   fork, exit records), `file` (opens, closes, maps), `read` (read
//!   aggregation and coverage), `holders` (the holder prefilter), over
//!   `kernel` (kernel structures), `emit` (record headers, ring buffer),
//!   `maps` (every map) and `atomic`; `uring` (io_uring requests) and
//!   `aio` (Linux AIO submissions) feed `read` and `file`; `uring_change`
//!   (io_uring renames, unlinks, links, truncations) feeds `change`;
//!   `uring_skip` (io_uring requests whose success posts no completion)
//!   feeds `read`, `send` and `holders`; `enforce` (the policy's kill
//!   fallback) is called by `read` and `file`.
//! - `floor` (the benchmark floor's empty programs) and `probe`
//!   (`weightwarden doctor`'s capability probes): loaded by those commands
//!   only, never by `run`.
//! - `btf_types`: puts the types shared with the agent in the object's BTF
//!   for the agent's layout test; no program uses it.
//!
//! The attach point of each program is listed once, in the agent's
//! `sensor/src/kernel/programs.rs`, which finds programs by name.
#![no_std]
#![no_main]
// `atomic_xadd`: core's atomic types lack read-modify-write on the BPF
// target, but the instruction (BPF_XADD) exists.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod agent_probe;
mod aio;
mod atomic;
mod btf_types;
mod change;
mod create;
mod emit;
mod enforce;
mod file;
mod floor;
mod holders;
mod kernel;
mod maps;
mod opens;
mod path_filter;
mod probe;
mod proc_mem;
mod process;
mod read;
mod send;
mod tier;
mod uring;
mod uring_change;
mod uring_skip;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
