//! Who already holds weights or GPU devices, from `/proc`: seeds the
//! kernel's holder prefilter and the process table's GPU marks for
//! processes that opened them before capture went live.

use std::path::Path;

use aya::maps::MapError;
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
    match scan_and_seed(holders, || pids_holding(watch, watch_flag::WEIGHT)).1 {
        Ok(n) => tracing::debug!(holders = n, "holder prefilter seeded from /proc"),
        Err(err) => {
            tracing::warn!(error = %crate::Chain(&err), "holder prefilter stays off: every read pays the descriptor walk")
        }
    }
}

/// Marks the processes `scan` finds as holders, with everyone counting as
/// one until the bits are written: a process forked while the scan runs
/// (after the pid list was taken) from a parent it finds is then marked by
/// the kernel's fork hook, which would otherwise see a parent that is not
/// a holder yet. Returns the pids found, and how many were marked, or why
/// the prefilter stays off.
pub fn scan_and_seed(
    holders: &mut Holders,
    scan: impl FnOnce() -> Vec<u32>,
) -> (Vec<u32>, Result<usize, MapError>) {
    if let Err(err) = holders.set_bypass(true) {
        tracing::warn!(error = %crate::Chain(&err), "cannot hold the prefilter off to rescan /proc");
    }
    let pids = scan();
    let seeded = holders
        .seed(pids.iter().copied())
        .and_then(|n| holders.set_bypass(false).map(|()| n));
    (pids, seeded)
}

/// Marks processes already holding a GPU device as GPU-serving.
pub fn mark_gpu_processes(processes: &mut ProcessTable, watch: &WatchSet) {
    for pid in pids_holding(watch, watch_flag::GPU_DEVICE) {
        processes.mark_gpu(pid);
    }
}
