//! Entry points, one module per hook tier. A tier is a set of programs that
//! together capture what the sensor reports, using one kind of kernel hook;
//! the agent loads one tier per run (`sensor/src/kernel/programs.rs` lists each
//! tier's programs and attach points).
//!
//! A tier module holds only what is specific to its hooks: the entry points
//! and the decoding of their contexts (for the tracepoint tier, syscall
//! numbers and `pt_regs`). It turns what the hook saw into plain values
//! (a descriptor, an offset, a return value) and calls the tier-neutral
//! modules at the crate root (`process`, `file`, `read`, `holders`, over
//! `kernel`, `emit`, `maps`), which any tier can call.
//!
//! - `tracepoint`: classic, raw and BTF tracepoints; runs on every kernel
//!   with BTF from 5.11 on. The only capture tier today.
//! - `lsm`: BPF LSM programs that deny what the policy forbids (`bpf` in
//!   the kernel's `lsm=` list), attached beside the capture tier while a
//!   policy is enforced.
//! - fentry (next): a `tier/fentry/` module here, with `fentry`/`fexit`
//!   programs on VFS functions.
//!
//! `weightwarden doctor`'s capability probes (`crate::probe`) and the
//! benchmark floor (`crate::floor`) are not tiers: they report nothing.

pub mod lsm;
pub mod tracepoint;
