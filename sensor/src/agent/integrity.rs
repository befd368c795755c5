//! Wiring for the baseline check: the checker thread (its logic is
//! `decide/detect/integrity.rs`), its reports into the event loop, and
//! re-checks of files that tamper records name.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::{Agent, AgentError};
use crate::{
    decide::detect::integrity::{self, Manifest, Report},
    event::Action,
};

/// Reports queued from the checker before it waits for the event loop.
const QUEUE: usize = 1024;

pub(super) struct Integrity {
    reports: mpsc::Receiver<Report>,
    /// Paths to check again (tamper records).
    recheck: std::sync::mpsc::Sender<PathBuf>,
}

/// Starts checking every file in `manifest`.
pub(super) fn start(manifest: Manifest) -> Result<Integrity, AgentError> {
    let (report_tx, reports) = mpsc::channel(QUEUE);
    let (recheck, recheck_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ww-integrity".into())
        .spawn(move || {
            integrity::checker(manifest, recheck_rx, |r| report_tx.blocking_send(r).is_ok());
        })
        .map_err(|source| AgentError::Io {
            what: "the baseline checker thread",
            source,
        })?;
    Ok(Integrity { reports, recheck })
}

/// The checker's next report; never, without a baseline.
pub(super) async fn next_report(integrity: &mut Option<Integrity>) -> Option<Report> {
    match integrity {
        Some(i) => i.reports.recv().await,
        None => std::future::pending().await,
    }
}

impl Agent {
    /// Sends the files whose writers are done to the checker.
    pub(super) fn recheck_written(&mut self) {
        let paths = self.decide.detectors_mut().take_rechecks();
        if let Some(integrity) = &self.integrity {
            for path in paths {
                // A send fails only once the checker has ended, which its
                // report channel closing tells the event loop.
                let _ = integrity.recheck.send(path);
            }
        }
    }

    pub(super) fn record_integrity(&mut self, report: Option<Report>) {
        match report {
            Some(Report::Checked(entry, check)) => {
                let mut base = self
                    .enrich
                    .sensor_event(Action::Detection, Default::default());
                base.sensor = None;
                if let Some(event) = self.decide.detectors_mut().integrity(base, &entry, &check) {
                    self.publish(event);
                    self.out.flush();
                }
            }
            Some(Report::PassDone { files, secs }) => tracing::info!(
                files,
                secs = format!("{secs:.1}"),
                "every file in the baseline was checked"
            ),
            None => {
                // The thread ended (or panicked): no more checks.
                self.integrity = None;
            }
        }
    }
}
