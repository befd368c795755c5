//! The one counters registry every stage reports into. Heartbeats,
//! `sensor_stop` and the stop log line read their counters from a
//! [`Registry::snapshot`]; the same metrics encode as OpenMetrics text
//! ([`Registry::encode_text`]) for the metrics endpoint (`endpoint.rs`),
//! with labelled families beside them for what has many instances: records
//! by action, and each output's counts.
//!
//! Built on `prometheus-client`, whose counters and gauges are shared
//! handles: a stage keeps its handle and increments it where the event
//! happens; the registry keeps a clone under `(section, name)`. Stages
//! whose figures are sizes or totals they already keep (the watch set, the
//! process table) publish them through [`Collect`] just before a snapshot.

use std::{collections::BTreeMap, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter, family::Family, gauge},
    registry,
};

pub mod endpoint;

/// A labelled family of counters (`weightwarden_records_total{action=...}`).
type Labelled = Family<Vec<(String, String)>, Counter>;
/// A labelled family of gauges (`weightwarden_output_queued_records{output=...}`).
type LabelledGauge = Family<Vec<(String, String)>, Gauge>;

/// A count that only goes up.
pub type Counter = counter::Counter<u64, AtomicU64>;
/// A figure that is set (a size, or a total kept elsewhere).
pub type Gauge = gauge::Gauge<u64, AtomicU64>;

#[derive(Debug, Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

impl Metric {
    fn get(&self) -> u64 {
        match self {
            Metric::Counter(c) => c.get(),
            Metric::Gauge(g) => g.get(),
        }
    }
}

/// A stage that publishes figures it keeps itself.
pub trait Collect {
    /// Writes every figure into `section`.
    fn collect(&self, section: &mut Section<'_>);
}

pub struct Registry {
    prom: registry::Registry,
    /// `(section, name)` in registration order.
    entries: Vec<(&'static str, &'static str, Metric)>,
    /// Records written, by action.
    records: Labelled,
    /// Per output: records written, and records lost.
    output_written: Labelled,
    output_failed: Labelled,
    output_dropped: Labelled,
    enforced: Labelled,
    /// Records and bytes waiting, in each output's queue and spool.
    output_waiting: [LabelledGauge; 4],
}

/// The output gauges, in [`crate::event::OutputCounters`]' order.
const WAITING: [(&str, &str); 4] = [
    (
        "output_queued_records",
        "records waiting in an output's memory queue",
    ),
    (
        "output_queued_bytes",
        "bytes waiting in an output's memory queue",
    ),
    (
        "output_spooled_records",
        "records waiting in an output's disk spool",
    ),
    (
        "output_spool_bytes",
        "bytes waiting in an output's disk spool",
    ),
];

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut prom = registry::Registry::with_prefix("weightwarden");
        let (records, output_written, output_failed) = (
            Labelled::default(),
            Labelled::default(),
            Labelled::default(),
        );
        prom.register("records", "records written, by action", records.clone());
        prom.register(
            "output_records_written",
            "records an output wrote whole",
            output_written.clone(),
        );
        prom.register(
            "output_write_failures",
            "records lost for an output (a failed write, a refusal, an encoding that failed)",
            output_failed.clone(),
        );
        let output_dropped = Labelled::default();
        prom.register(
            "output_dropped",
            "records lost for an output because its queue or its spool was full",
            output_dropped.clone(),
        );
        let enforced = Labelled::default();
        prom.register(
            "enforcements",
            "accesses stopped, by mechanism (fanotify, lsm, kill) and action (denied, killed)",
            enforced.clone(),
        );
        let output_waiting: [LabelledGauge; 4] = Default::default();
        for (gauge, (name, help)) in output_waiting.iter().zip(WAITING) {
            prom.register(name, help, gauge.clone());
        }
        Self {
            prom,
            entries: Vec::new(),
            records,
            output_written,
            output_failed,
            output_dropped,
            enforced,
            output_waiting,
        }
    }

    /// Publishes the records written so far by action (`action`, total).
    pub fn records_by_action<'a>(&self, totals: impl IntoIterator<Item = (&'a str, u64)>) {
        for (action, total) in totals {
            let counter = self
                .records
                .get_or_create(&vec![("action".to_owned(), action.to_owned())]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Counts one access stopped by `mechanism`, recorded as `action`.
    pub fn enforced(&self, mechanism: &str, action: &str) {
        self.enforced
            .get_or_create(&vec![
                ("mechanism".to_owned(), mechanism.to_owned()),
                ("action".to_owned(), action.to_owned()),
            ])
            .inc();
    }

    /// Publishes each output's totals, labelled with its name.
    pub fn outputs(&self, outputs: &[crate::event::OutputCounters]) {
        for o in outputs {
            let labels = vec![("output".to_owned(), o.name.clone())];
            let written = self.output_written.get_or_create(&labels);
            written.inc_by(o.records_written.saturating_sub(written.get()));
            let failed = self.output_failed.get_or_create(&labels);
            failed.inc_by(o.write_failures.saturating_sub(failed.get()));
            let dropped = self.output_dropped.get_or_create(&labels);
            dropped.inc_by(o.dropped.saturating_sub(dropped.get()));
            let waiting = [o.queued, o.queued_bytes, o.spooled, o.spool_bytes];
            for (gauge, value) in self.output_waiting.iter().zip(waiting) {
                gauge.get_or_create(&labels).set(value);
            }
        }
    }

    fn find(&self, section: &str, name: &str) -> Option<&Metric> {
        self.entries
            .iter()
            .find(|(s, n, _)| *s == section && *n == name)
            .map(|(.., m)| m)
    }

    /// A counter `section.name`, created on first use. A name is one kind
    /// of metric: asking for a gauge's name as a counter is a bug, logged,
    /// and answered with a counter that reports nowhere.
    pub fn counter(&mut self, section: &'static str, name: &'static str, help: &str) -> Counter {
        self.metric(section, name, help, Metric::Counter, |m| match m {
            Metric::Counter(c) => Some(c),
            Metric::Gauge(_) => None,
        })
    }

    /// A gauge `section.name`, created on first use (same rule).
    pub fn gauge(&mut self, section: &'static str, name: &'static str, help: &str) -> Gauge {
        self.metric(section, name, help, Metric::Gauge, |m| match m {
            Metric::Gauge(g) => Some(g),
            Metric::Counter(_) => None,
        })
    }

    /// The metric `section.name` of one kind: found, or registered.
    fn metric<M>(
        &mut self,
        section: &'static str,
        name: &'static str,
        help: &str,
        wrap: fn(M) -> Metric,
        of_kind: fn(&Metric) -> Option<&M>,
    ) -> M
    where
        M: registry::Metric + Clone + Default,
    {
        if let Some(found) = self.find(section, name) {
            return match of_kind(found) {
                Some(metric) => metric.clone(),
                None => {
                    tracing::error!(section, name, "metric asked for as the other kind");
                    M::default()
                }
            };
        }
        let metric = M::default();
        self.prom
            .register(format!("{section}_{name}"), help, metric.clone());
        self.entries.push((section, name, wrap(metric.clone())));
        metric
    }

    /// Lets `stage` publish its figures under `section`.
    pub fn collect(&mut self, section: &'static str, stage: &dyn Collect) {
        stage.collect(&mut Section {
            registry: self,
            name: section,
        });
    }

    /// Every metric's value, by section and name.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (section, name, metric) in &self.entries {
            out.entry((*section).to_string())
                .or_default()
                .insert((*name).to_string(), metric.get());
        }
        out
    }

    /// The metrics as OpenMetrics text.
    pub fn encode_text(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.prom)?;
        Ok(text)
    }
}

/// One section of the registry, as a [`Collect`] stage sees it.
pub struct Section<'a> {
    registry: &'a mut Registry,
    name: &'static str,
}

impl Section<'_> {
    /// Sets the figure `name` of this section (a size, a level).
    pub fn set(&mut self, name: &'static str, help: &str, value: u64) {
        self.registry.gauge(self.name, name, help).set(value);
    }

    /// Publishes a running total the stage keeps itself as a counter: it
    /// advances by what the total rose since the last call.
    pub fn total(&mut self, name: &'static str, help: &str, total: u64) {
        let counter = self.registry.counter(self.name, name, help);
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sizes(u64);
    impl Collect for Sizes {
        fn collect(&self, section: &mut Section<'_>) {
            section.set("files", "watched files", self.0);
            section.total("rescans", "rescans", self.0 * 2);
        }
    }

    #[test]
    fn handles_share_state_with_the_snapshot_and_the_text() {
        let mut registry = Registry::new();
        let records = registry.counter("agent", "records_emitted", "records written");
        records.inc();
        records.inc_by(2);
        // The same name gives the same counter.
        registry.counter("agent", "records_emitted", "").inc();
        registry.collect("watch", &Sizes(12));
        registry.collect("watch", &Sizes(13));
        let snapshot = registry.snapshot();
        assert_eq!(snapshot["agent"]["records_emitted"], 4);
        assert_eq!(snapshot["watch"]["files"], 13);
        assert_eq!(snapshot["watch"]["rescans"], 26);
        // A counter under a gauge's name reports nowhere.
        registry.counter("watch", "files", "").inc_by(100);
        assert_eq!(registry.snapshot()["watch"]["files"], 13);
        let text = registry.encode_text().expect("text");
        assert!(
            text.contains("weightwarden_agent_records_emitted_total 4"),
            "{text}"
        );
        assert!(text.contains("weightwarden_watch_files 13"), "{text}");
        assert!(
            text.contains("weightwarden_watch_rescans_total 26"),
            "{text}"
        );
    }
}
