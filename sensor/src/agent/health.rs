//! The sensor's own status: the counters every stage keeps, gathered into
//! heartbeats, `sensor_start` and `sensor_stop`, and a warning in the log
//! whenever a loss counter rose since the last report.

use std::{collections::BTreeMap, time::Instant};

use crate::{
    enrich::clock::unix_now_ns,
    event::{SensorStatus, Timestamp},
    kernel::maps::{KernelCounterTotals, KernelCounters},
};

/// Agent-side counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct AgentCounters {
    pub kernel_records: u64,
    pub decode_errors: u64,
    pub records_emitted: u64,
    pub read_summaries_drained: u64,
    pub aggregate_map_errors: u64,
}

pub struct Health {
    started: Instant,
    pub hooks_attached: u64,
    pub agent: AgentCounters,
    kernel: KernelCounters,
    last_kernel: KernelCounterTotals,
}

/// One section of counters from a serialisable stats struct.
fn section<T: serde::Serialize>(stats: &T) -> BTreeMap<String, u64> {
    match serde_json::to_value(stats) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_u64().map(|v| (k, v)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl Health {
    pub fn new(kernel: KernelCounters, hooks_attached: u64) -> Self {
        Self {
            started: Instant::now(),
            hooks_attached,
            agent: AgentCounters::default(),
            kernel,
            last_kernel: KernelCounterTotals::default(),
        }
    }

    /// The kernel's totals, warning about every loss since the last call.
    fn kernel_totals(&mut self) -> KernelCounterTotals {
        let kernel = match self.kernel.totals() {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the kernel's loss counters");
                self.last_kernel
            }
        };
        let lost = kernel
            .ringbuf_full
            .saturating_sub(self.last_kernel.ringbuf_full);
        if lost > 0 {
            tracing::warn!(
                lost,
                "the kernel could not queue {lost} records since the last report: the ring \
                 buffer was full (raise kernel.ring_buffer_bytes)"
            );
        }
        let agg_full = kernel
            .read_aggregates_full
            .saturating_sub(self.last_kernel.read_aggregates_full);
        if agg_full > 0 {
            tracing::warn!(
                agg_full,
                "reads went uncounted: the read aggregate map was full (raise kernel.read_aggregates_max)"
            );
        }
        self.last_kernel = kernel;
        kernel
    }

    /// A status snapshot; `sections` are the other stages' counters.
    pub fn status(
        &mut self,
        watched_files: usize,
        sections: impl IntoIterator<Item = (&'static str, BTreeMap<String, u64>)>,
        outputs: Vec<crate::event::OutputCounters>,
    ) -> SensorStatus {
        let kernel = self.kernel_totals();
        let mut counters: BTreeMap<String, BTreeMap<String, u64>> = sections
            .into_iter()
            .map(|(name, s)| (name.to_string(), s))
            .collect();
        counters.insert("kernel".into(), section(&kernel));
        counters.insert("agent".into(), section(&self.agent));
        SensorStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            hooks_attached: self.hooks_attached,
            watched_files: watched_files as u64,
            status_time: Some(Timestamp::from_unix_ns(unix_now_ns())),
            counters,
            outputs,
        }
    }

    /// The last kernel totals read, for the final log line.
    pub fn last_kernel(&self) -> KernelCounterTotals {
        self.last_kernel
    }
}

/// A stats struct as a counters section.
pub fn stats_section<T: serde::Serialize>(stats: &T) -> BTreeMap<String, u64> {
    section(stats)
}
