//! The decide stage: judging events. The policy (who may touch which
//! weights) judges every access first; detectors (named theft patterns,
//! none yet) then see every event.
//!
//! A detector sits behind the one small [`Detector`] trait so that a new
//! detection is one new file plus one line in [`Decide::new`].

pub mod enforce;
pub mod policy;

use crate::event::Event;

/// A named detection over the stream of events.
pub trait Detector: Send {
    /// A stable identifier, written on every finding (`ww.copy.full_read`).
    fn id(&self) -> &'static str;
    /// Looks at one event; returns the findings it completes, if any.
    fn observe(&mut self, event: &Event) -> Vec<Event>;
}

/// The policy, if one is loaded, and every registered detector.
#[derive(Default)]
pub struct Decide {
    judge: Option<policy::judge::Judge>,
    detectors: Vec<Box<dyn Detector>>,
}

impl Decide {
    /// The policy's judge and the detectors enabled by default (none yet).
    pub fn new(judge: Option<policy::judge::Judge>) -> Self {
        Self {
            judge,
            detectors: Vec::new(),
        }
    }

    /// The loaded policy's tables, if any.
    pub fn policy(&self) -> Option<policy::SharedPolicy> {
        self.judge.as_ref().map(|j| j.shared_policy())
    }

    pub fn judge_mut(&mut self) -> Option<&mut policy::judge::Judge> {
        self.judge.as_mut()
    }

    pub fn judge(&self) -> Option<&policy::judge::Judge> {
        self.judge.as_ref()
    }

    /// The record of a decision an enforcement mechanism carried out.
    pub fn enforced(
        &self,
        event: Event,
        policy: &policy::Policy,
        verdict: policy::Verdict,
        how: policy::judge::Enforcement,
    ) -> Option<Event> {
        Some(self.judge.as_ref()?.enforced(event, policy, verdict, how))
    }

    /// The records `event` gives rise to: the policy's verdict, then the
    /// detectors' findings, in order.
    pub fn observe(&mut self, event: &Event) -> Vec<Event> {
        let verdict = self.judge.as_ref().and_then(|j| j.judge(event));
        verdict
            .into_iter()
            .chain(self.detectors.iter_mut().flat_map(|d| d.observe(event)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }
}
