//! The benchmark floor: the empty program of every hook the first tier
//! uses, attached where its real programs attach. Benchmarks run a workload
//! under it to measure what the kernel itself charges for the hooks,
//! against which the sensor's own cost is judged.

use aya::{Btf, Ebpf};

use crate::kernel::{
    loader::{LoadError, LoadOptions, attach_program, kernel_btf, load_program, open_object},
    programs::{Attach, TIERS},
};

/// Attaches the empty programs; returns the loaded object (dropping it
/// detaches them) and how many attachments were made.
pub fn attach() -> Result<(Ebpf, usize), LoadError> {
    let mut ebpf = open_object(None, &LoadOptions::probe())?;
    let btf = kernel_btf()?;
    let mut loaded = Vec::new();
    let mut attached = 0;
    // The tier the benchmarks measure: the best one, which `run` uses
    // wherever it loads.
    let tier = &TIERS[0];
    for attach in tier.programs.iter().flat_map(|spec| spec.attach) {
        attach_empty(&mut ebpf, &btf, &mut loaded, attach)?;
        attached += 1;
    }
    // Its io_uring hooks where this kernel has them, as `run` attaches
    // them (kernel/uring.rs).
    for attach in tier.io_uring.iter().flat_map(|spec| spec.attach) {
        match attach_empty(&mut ebpf, &btf, &mut loaded, attach) {
            Ok(()) => attached += 1,
            Err(err) => tracing::warn!(
                hook = %attach.describe(),
                error = %crate::Chain(&err),
                "the floor goes without this io_uring hook, as `run` would"
            ),
        }
    }
    Ok((ebpf, attached))
}

/// Loads (once) and attaches the empty program for `attach`.
fn attach_empty(
    ebpf: &mut Ebpf,
    btf: &Btf,
    loaded: &mut Vec<&'static str>,
    attach: &Attach,
) -> Result<(), LoadError> {
    let name = floor_program(attach)?;
    if !loaded.contains(&name) {
        load_program(ebpf, name, attach, btf)?;
        loaded.push(name);
    }
    attach_program(ebpf, name, attach)
}

fn floor_program(attach: &Attach) -> Result<&'static str, LoadError> {
    attach
        .floor_program()
        .ok_or_else(|| LoadError::NoFloorProgram(attach.describe()))
}
