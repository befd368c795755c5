//! `weightwarden bench-floor` (hidden): attaches empty programs to every
//! hook the sensor uses and waits for SIGINT/SIGTERM. Benchmarks run a
//! workload under it to measure the floor the kernel itself charges for the
//! hooks, against which the sensor's own cost is judged.

use aya::EbpfLoader;

use crate::kernel::{
    loader::{LoadError, attach_program, kernel_btf, load_program},
    object as ebpf,
    programs::{Attach, TRACEPOINT_TIER},
};

/// The empty program for a kind of hook (a BTF tracepoint program is
/// verified against its one target, so each target has its own).
fn empty_program(attach: &Attach) -> &'static str {
    match attach {
        Attach::TracePoint(..) => "ww_empty_tp",
        Attach::RawTracePoint(_) => "ww_empty_raw",
        Attach::BtfTracePoint("sys_exit") => "ww_empty_sys_exit",
        Attach::BtfTracePoint(_) => "ww_empty_sys_enter",
    }
}

/// Attaches the empty programs; returns the loaded object (dropping it
/// detaches them) and how many attachments were made.
pub fn attach() -> Result<(aya::Ebpf, usize), LoadError> {
    if ebpf::OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(sensor_common::map_name::EVENTS, 4096)
        .load(ebpf::OBJECT)
        .map_err(|e| LoadError::Object(Box::new(e)))?;
    let btf = kernel_btf()?;
    let mut loaded = Vec::new();
    let mut attached = 0;
    for attach in TRACEPOINT_TIER.iter().flat_map(|spec| spec.attach) {
        let name = empty_program(attach);
        if !loaded.contains(&name) {
            load_program(&mut ebpf, name, attach, &btf)?;
            loaded.push(name);
        }
        attach_program(&mut ebpf, name, attach)?;
        attached += 1;
    }
    Ok((ebpf, attached))
}
