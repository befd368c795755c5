//! The kernel's per-CPU loss and error counters, summed.

use aya::maps::{MapData, MapError, PerCpuArray};
use sensor_common::counter;

/// Totals of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounterTotals {
    pub ringbuf_full: u64,
    pub read_aggregates_full: u64,
    pub pending_full: u64,
    pub kernel_read_failures: u64,
    /// Processes beyond the holder arrays (pid_max raised after start)
    /// became holders: they pay the full check (costlier, not blind).
    pub holders_full: u64,
    /// Forked processes whose inherited policy verdict did not fit.
    pub verdicts_full: u64,
    /// `SIGKILL`s for stopped accesses that could not be sent.
    pub kills_failed: u64,
    /// io_uring requests on weights (or writes and sends of processes that
    /// took weights) submitted with `IOSQE_CQE_SKIP_SUCCESS`: counted as
    /// submitted, with the bytes they asked for.
    pub uring_skip_success: u64,
}

/// The kernel's loss and error counters.
pub struct KernelCounters {
    map: PerCpuArray<MapData, u64>,
}

impl KernelCounters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Self { map }
    }

    /// Sums every CPU's counters.
    pub fn totals(&self) -> Result<KernelCounterTotals, MapError> {
        let sum =
            |index: u32| -> Result<u64, MapError> { Ok(self.map.get(&index, 0)?.iter().sum()) };
        Ok(KernelCounterTotals {
            ringbuf_full: sum(counter::RINGBUF_FULL)?,
            read_aggregates_full: sum(counter::READ_AGG_FULL)?,
            pending_full: sum(counter::PENDING_FULL)?,
            kernel_read_failures: sum(counter::KERNEL_READ_FAILED)?,
            holders_full: sum(counter::HOLDERS_FULL)?,
            verdicts_full: sum(counter::VERDICTS_FULL)?,
            kills_failed: sum(counter::KILL_FAILED)?,
            uring_skip_success: sum(counter::URING_SKIP_SUCCESS)?,
        })
    }
}
