//! Who already holds weights or GPU devices, from `/proc`: seeds the
//! kernel's holder prefilter and the process table's GPU marks for
//! processes that opened them before capture went live.

use std::path::Path;

use sensor_common::watch_flag;

use crate::{
    enrich::{
        process::{ProcessTable, procfs},
        watch::{WatchSet, identity},
    },
    kernel::maps::Holders,
};

/// Processes with a descriptor, in `/proc/PID/fd`, of a watched file whose
/// watch flags include `flag`.
fn pids_holding(watch: &WatchSet, flag: u32) -> Vec<u32> {
    procfs::pids_with_open_file(Path::new("/proc"), |path| {
        identity(path).is_some_and(|key| watch.flags_of(&key) & flag != 0)
    })
}

/// Marks processes whose `/proc/PID/fd` holds a watched weight file as
/// holders, then lets the prefilter work. On any failure the prefilter
/// stays off: costlier, never blind.
pub fn seed(holders: &mut Holders, watch: &WatchSet) {
    // Everyone counts as a holder until the bits are written: a process
    // forked after the scan passed its parent is then marked by the
    // kernel's fork hook.
    if let Err(err) = holders.set_bypass(true) {
        tracing::warn!(error = %crate::Chain(&err), "cannot hold the prefilter off to rescan /proc");
    }
    let pids = pids_holding(watch, watch_flag::WEIGHT);
    let seeded = holders.seed(pids);
    let result = seeded.and_then(|n| holders.set_bypass(false).map(|()| n));
    match result {
        Ok(n) => tracing::debug!(holders = n, "holder prefilter seeded from /proc"),
        Err(err) => {
            tracing::warn!(error = %crate::Chain(&err), "holder prefilter stays off: every read pays the descriptor walk")
        }
    }
}

/// Marks processes already holding a GPU device as GPU-serving.
pub fn mark_gpu_processes(processes: &mut ProcessTable, watch: &WatchSet) {
    for pid in pids_holding(watch, watch_flag::GPU_DEVICE) {
        processes.mark_gpu(pid);
    }
}
