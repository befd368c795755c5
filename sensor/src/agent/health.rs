//! The sensor's own status: the agent's counters and the kernel's loss
//! counters in the metrics registry, gathered with every stage's figures
//! into heartbeats, `sensor_start` and `sensor_stop`, and a warning in the
//! log whenever a loss counter rose since the last report.

use std::time::Instant;

use crate::{
    enrich::clock::unix_now_ns,
    event::{Action, OutputCounters, SensorStatus, Timestamp},
    kernel::maps::{KernelCounterTotals, KernelCounters},
    metrics::{Collect, Counter, Gauge, Registry},
};

/// The agent's own counters.
pub struct AgentCounters {
    pub kernel_records: Counter,
    pub decode_errors: Counter,
    pub records_emitted: Counter,
    pub read_summaries_drained: Counter,
    pub aggregate_map_errors: Counter,
    pub verdict_write_errors: Counter,
    pub path_changes: Counter,
    pub path_changes_unresolved: Counter,
    pub creator_changes_folded: Counter,
    pub sends_off_errors: Counter,
    pub lineage_derived: Counter,
    pub lineage_unnamed: Counter,
    pub lineage_failed: Counter,
    pub lineage_pipes: Counter,
    pub lineage_pipes_closed: Counter,
    pub lineage_restored: Counter,
    pub lineage_restore_gone: Counter,
    pub state_save_failures: Counter,
    /// The most bytes one drain of the ring buffer found waiting: how close
    /// the ring came to full (its size is `ring_buffer_bytes`).
    pub ring_backlog_peak_bytes: Gauge,
    pub ring_buffer_bytes: Gauge,
    /// Restarts without a gap (`agent/handover.rs`).
    pub handover_adopted: Counter,
    pub handover_replaced: Counter,
    pub handover_left_attached: Counter,
    pub handover_records_undecoded: Counter,
    pub handover_aggregates_unreported: Counter,
}

impl AgentCounters {
    fn register(registry: &mut Registry) -> Self {
        let ring_backlog_peak_bytes = registry.gauge(
            "agent",
            "ring_backlog_peak_bytes",
            "the most bytes one drain found waiting in the kernel's ring buffer",
        );
        let ring_buffer_bytes = registry.gauge(
            "agent",
            "ring_buffer_bytes",
            "the kernel ring buffer's size",
        );
        let mut counter = |name, help| registry.counter("agent", name, help);
        Self {
            ring_backlog_peak_bytes,
            ring_buffer_bytes,
            handover_adopted: counter(
                "handover_adopted",
                "loads an earlier agent left pinned that this one took over (capture ran on meanwhile)",
            ),
            handover_replaced: counter(
                "handover_replaced",
                "loads an earlier agent left pinned that this one replaced (another build or other kernel settings)",
            ),
            handover_left_attached: counter(
                "handover_left_attached",
                "stops that left the programs attached and pinned for the next agent (kernel.handover)",
            ),
            handover_records_undecoded: counter(
                "handover_records_undecoded",
                "records a replaced load of another build left in its ring buffer: lost, their layout may differ",
            ),
            handover_aggregates_unreported: counter(
                "handover_aggregates_unreported",
                "read, open and memory aggregates a replaced load still held: their counts are lost",
            ),
            kernel_records: counter("kernel_records", "records received from the kernel"),
            decode_errors: counter("decode_errors", "kernel records that could not be decoded"),
            records_emitted: counter("records_emitted", "records handed to the outputs"),
            read_summaries_drained: counter(
                "read_summaries_drained",
                "read summaries drained from the kernel's aggregate map",
            ),
            aggregate_map_errors: counter(
                "aggregate_map_errors",
                "failed reads of the kernel's aggregate map",
            ),
            verdict_write_errors: counter(
                "verdict_write_errors",
                "process verdicts the kernel tables refused (those processes count as not judged)",
            ),
            path_changes: counter(
                "path_changes",
                "path operations (rename, unlink, chmod, ...) received from the kernel",
            ),
            lineage_derived: counter(
                "lineage_derived",
                "copies of weights now watched, derived from their source",
            ),
            lineage_unnamed: counter(
                "lineage_unnamed",
                "copies of weights whose destination file had no name the agent could find (closed before the record was handled): not watched",
            ),
            lineage_failed: counter(
                "lineage_failed",
                "copies of weights that could not be watched (warned: gone, no file handle, the bound)",
            ),
            lineage_pipes: counter(
                "lineage_pipes",
                "pipes weights were copied into now watched, so that their readers are followed",
            ),
            lineage_pipes_closed: counter(
                "lineage_pipes_closed",
                "pipes weights were copied into that no process held any more when the agent looked: their reader is not followed",
            ),
            lineage_restored: counter(
                "lineage_restored",
                "files followed outside the roots before a restart (copies, weights moved away) followed again",
            ),
            lineage_restore_gone: counter(
                "lineage_restore_gone",
                "files followed outside the roots before a restart that were deleted meanwhile",
            ),
            state_save_failures: counter(
                "state_save_failures",
                "failed saves of the followed files to agent.state_dir (warned; retried every second)",
            ),
            sends_off_errors: counter(
                "sends_off_errors",
                "trusted processes the kernel could not be told to stop following (their sends stay records)",
            ),
            creator_changes_folded: counter(
                "creator_changes_folded",
                "opens for writing, truncates and attribute changes of a file by the process that created it, folded into its create record",
            ),
            path_changes_unresolved: counter(
                "path_changes_unresolved",
                "path operations whose relative path could not be resolved (process and directory gone): a watched file's change may be missing",
            ),
        }
    }
}

/// The kernel's per-CPU counters, mirrored into the registry.
struct KernelLosses {
    map: KernelCounters,
    last: KernelCounterTotals,
    ringbuf_full: Counter,
    read_aggregates_full: Counter,
    pending_full: Counter,
    kernel_read_failures: Counter,
    holders_full: Counter,
    verdicts_full: Counter,
    kills_failed: Counter,
    uring_skip_success: Counter,
}

impl KernelLosses {
    fn register(map: KernelCounters, registry: &mut Registry) -> Self {
        let mut counter = |name, help| registry.counter("kernel", name, help);
        Self {
            map,
            last: KernelCounterTotals::default(),
            ringbuf_full: counter("ringbuf_full", "records lost: the ring buffer was full"),
            read_aggregates_full: counter(
                "read_aggregates_full",
                "reads not counted: the aggregate map was full",
            ),
            pending_full: counter(
                "pending_full",
                "reads or maps not seen: the pending map was full",
            ),
            kernel_read_failures: counter(
                "kernel_read_failures",
                "kernel structure reads that failed",
            ),
            holders_full: counter(
                "holders_full",
                "holder marks beyond the prefilter's pid range",
            ),
            verdicts_full: counter(
                "verdicts_full",
                "forked processes whose inherited policy verdict the full verdict map refused",
            ),
            kills_failed: counter(
                "kills_failed",
                "accesses the policy stops whose SIGKILL could not be sent",
            ),
            uring_skip_success: counter(
                "uring_skip_success",
                "io_uring requests on weights submitted with IOSQE_CQE_SKIP_SUCCESS, counted as \
                 submitted with the bytes they asked for",
            ),
        }
    }

    /// Reads the kernel's totals into the registry, warning about every
    /// loss since the last call.
    fn update(&mut self) {
        let now = match self.map.totals() {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %crate::Chain(&err), "cannot read the kernel's loss counters");
                return;
            }
        };
        let last = self.last;
        let rise = |now: u64, last: u64, counter: &Counter| {
            let delta = now.saturating_sub(last);
            counter.inc_by(delta);
            delta
        };
        let lost = rise(now.ringbuf_full, last.ringbuf_full, &self.ringbuf_full);
        if lost > 0 {
            tracing::warn!(
                lost,
                "the kernel could not queue {lost} records since the last report: the ring \
                 buffer was full (raise kernel.ring_buffer_bytes)"
            );
        }
        let agg_full = rise(
            now.read_aggregates_full,
            last.read_aggregates_full,
            &self.read_aggregates_full,
        );
        if agg_full > 0 {
            tracing::warn!(
                agg_full,
                "reads went uncounted: the read aggregate map was full (raise kernel.read_aggregates_max)"
            );
        }
        let pending_full = rise(now.pending_full, last.pending_full, &self.pending_full);
        if pending_full > 0 {
            tracing::warn!(
                pending_full,
                "reads or maps went unseen: the pending map was full (raise kernel.pending_max)"
            );
        }
        let read_failures = rise(
            now.kernel_read_failures,
            last.kernel_read_failures,
            &self.kernel_read_failures,
        );
        if read_failures > 0 {
            tracing::warn!(
                read_failures,
                "kernel structure reads failed: those accesses may be missing from the records"
            );
        }
        rise(now.holders_full, last.holders_full, &self.holders_full);
        let verdicts_full = rise(now.verdicts_full, last.verdicts_full, &self.verdicts_full);
        if verdicts_full > 0 {
            tracing::warn!(
                verdicts_full,
                "forked processes started without their parent's policy verdict (the verdict map \
                 is full): until judged they are stopped wherever the policy stops anyone"
            );
        }
        let kills_failed = rise(now.kills_failed, last.kills_failed, &self.kills_failed);
        if kills_failed > 0 {
            tracing::error!(
                kills_failed,
                "the kernel could not kill processes the policy stops: those accesses went on"
            );
        }
        let skipped = rise(
            now.uring_skip_success,
            last.uring_skip_success,
            &self.uring_skip_success,
        );
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "io_uring requests on weights asked for no completion on success \
                 (IOSQE_CQE_SKIP_SUCCESS, a way to read unseen): recorded as submitted, with the \
                 bytes they asked for"
            );
        }
        self.last = now;
    }
}

pub struct Health {
    started: Instant,
    pub hooks_attached: u64,
    registry: Registry,
    pub agent: AgentCounters,
    kernel: KernelLosses,
    /// Records written, by action (indexed as [`Action::ALL`]).
    by_action: [u64; Action::ALL.len()],
}

impl Health {
    pub fn new(kernel: KernelCounters, hooks_attached: u64) -> Self {
        let mut registry = Registry::new();
        let agent = AgentCounters::register(&mut registry);
        let kernel = KernelLosses::register(kernel, &mut registry);
        Self {
            started: Instant::now(),
            hooks_attached,
            registry,
            agent,
            kernel,
            by_action: [0; Action::ALL.len()],
        }
    }

    /// Counts a record written, by its action, and an enforcement by its
    /// mechanism.
    pub fn count(&mut self, event: &crate::event::Event) {
        // `Action::ALL` lists the variants in declaration order.
        if let Some(n) = self.by_action.get_mut(event.action as usize) {
            *n += 1;
        }
        if matches!(event.action, Action::Denied | Action::Killed)
            && let Some(crate::event::PolicyInfo::Verdict(v)) = &event.policy
        {
            self.registry.enforced(&v.mechanism, event.action.name());
        }
    }

    /// Publishes the labelled families (records by action, each output's
    /// counts) into the registry, for the metrics endpoint.
    pub fn publish_families(&mut self, outputs: &[crate::event::OutputCounters]) {
        let totals = Action::ALL
            .iter()
            .map(|a| a.name())
            .zip(self.by_action)
            .filter(|(_, n)| *n > 0);
        self.registry.records_by_action(totals);
        self.registry.outputs(outputs);
    }

    /// The registry as OpenMetrics text.
    pub fn encode_text(&self) -> String {
        self.registry.encode_text().unwrap_or_else(|err| {
            tracing::error!(error = %err, "cannot encode the metrics");
            String::from("# EOF\n")
        })
    }

    /// A status snapshot; `stages` publish their figures under their
    /// section names first.
    pub fn status(
        &mut self,
        watched_files: usize,
        stages: &[(&'static str, &dyn Collect)],
        outputs: Vec<OutputCounters>,
    ) -> SensorStatus {
        self.kernel.update();
        for (section, stage) in stages {
            self.registry.collect(section, *stage);
        }
        SensorStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            hooks_attached: self.hooks_attached,
            watched_files: watched_files as u64,
            status_time: Some(Timestamp::from_unix_ns(unix_now_ns())),
            counters: self.registry.snapshot(),
            outputs,
            enforcement: None,
            unconfirmed: None,
            io_uring: None,
            store_head: None,
        }
    }

    /// Reads the kernel's loss counters and warns of any rise since the
    /// last look: called every second, so that a loss is in the log within
    /// a second, not at the next heartbeat.
    pub fn check_losses(&mut self) {
        self.kernel.update();
    }

    /// Publishes a running total kept outside the registry (created on the
    /// first non-zero value, so the field appears once something happened).
    pub fn total(&mut self, section: &'static str, name: &'static str, help: &str, total: u64) {
        if total == 0 {
            return;
        }
        let counter = self.registry.counter(section, name, help);
        let rise = total.saturating_sub(counter.get());
        if rise > 0 {
            counter.inc_by(rise);
            tracing::warn!(
                lost = rise,
                "{name}: {rise} enforcement decisions were carried out but their records were lost (the channel to the event loop was full)"
            );
        }
    }

    /// The last kernel totals read, for the final log line.
    pub fn last_kernel(&self) -> KernelCounterTotals {
        self.kernel.last
    }
}
