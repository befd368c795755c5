//! Writes and sends by a process whose weights the detections do not know
//! yet. The kernel sums reads until a close or
//! `kernel.read_flush_interval_secs`, so a streaming copier (`cat`, `tar`,
//! `dd`) writes long before its reads are reported, and its `copy` or
//! `egress` would wait for its close, and the pipe it fills would be
//! followed too late (`lineage.rs`).

use std::collections::HashSet;

use sensor_common::flush_reason;

use super::Agent;
use crate::event::{Action, Event};

/// Senders remembered as drained early at most (exits free them).
const SENDERS_DRAINED_MAX: usize = 16_384;

impl Agent {
    /// Before a write or send of a process whose weights are not known
    /// yet is judged: its reads so far, and its ancestors', are reported
    /// (`reason: send`), so that the send is judged now rather than at
    /// the close. Once per process: one walk of the aggregates.
    pub(super) fn report_reads_before_send(&mut self, event: &Event) {
        if event.action != Action::Send || !self.decide.detectors().lacks_source(event) {
            return;
        }
        let Some(p) = &event.process else {
            return;
        };
        if !self.senders_drained.insert(p.pid) {
            return;
        }
        if self.senders_drained.len() > SENDERS_DRAINED_MAX {
            // Exits keep it small; a flood of senders only costs walks.
            self.senders_drained.clear();
            self.senders_drained.insert(p.pid);
        }
        let pids: HashSet<u32> = std::iter::once(p.pid)
            .chain(p.ancestors.iter().map(|a| a.pid))
            .collect();
        self.drain_aggregates(|key, _| pids.contains(&key.tgid), flush_reason::SEND);
    }
}
