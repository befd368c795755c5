//! `weightwarden bench-floor` (hidden): attaches empty programs to every
//! hook the sensor uses and waits for SIGINT/SIGTERM. Benchmarks run a
//! workload under it to measure the floor the kernel itself charges for the
//! hooks, against which the sensor's own cost is judged.

use aya::{
    EbpfLoader,
    programs::{RawTracePoint, TracePoint},
};

use crate::{
    ebpf,
    loader::LoadError,
    programs::{Attach, COMPAT_PROGRAMS, TRACEPOINT_TIER},
};

/// Attaches the empty programs; returns the loaded object (dropping it
/// detaches them) and how many attachments were made.
pub fn attach(with_compat: bool) -> Result<(aya::Ebpf, usize), LoadError> {
    if ebpf::OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(sensor_common::map_name::EVENTS, 4096)
        .load(ebpf::OBJECT)
        .map_err(|e| LoadError::Object(Box::new(e)))?;
    let program_err = |name: &'static str| {
        move |source| LoadError::ProgramLoad {
            program: name,
            source: Box::new(source),
            hint: "",
        }
    };
    let attach_err = |name: &'static str, target: String| {
        move |source| LoadError::Attach {
            program: name,
            target,
            source: Box::new(source),
            hint: "",
        }
    };
    let tp: &mut TracePoint = ebpf
        .program_mut("ww_empty_tp")
        .ok_or(LoadError::NoProgram("ww_empty_tp"))?
        .try_into()
        .map_err(program_err("ww_empty_tp"))?;
    tp.load().map_err(program_err("ww_empty_tp"))?;
    let mut attached = 0;
    let compat: &[_] = if with_compat { COMPAT_PROGRAMS } else { &[] };
    let specs = || TRACEPOINT_TIER.iter().chain(compat);
    for spec in specs() {
        for attach in spec.attach {
            if let Attach::TracePoint(category, name) = *attach {
                tp.attach(category, name)
                    .map_err(attach_err("ww_empty_tp", format!("{category}/{name}")))?;
                attached += 1;
            }
        }
    }
    let raw: &mut RawTracePoint = ebpf
        .program_mut("ww_empty_raw")
        .ok_or(LoadError::NoProgram("ww_empty_raw"))?
        .try_into()
        .map_err(program_err("ww_empty_raw"))?;
    raw.load().map_err(program_err("ww_empty_raw"))?;
    for spec in specs() {
        for attach in spec.attach {
            if let Attach::RawTracePoint(name) = *attach {
                raw.attach(name)
                    .map_err(attach_err("ww_empty_raw", name.to_string()))?;
                attached += 1;
            }
        }
    }
    Ok((ebpf, attached))
}
