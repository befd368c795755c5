//! The decide stage: judging events. The policy (who may touch which
//! weights) judges every access first; the named detections (`detect/`)
//! then see every record.

pub mod detect;
pub mod enforce;
pub mod policy;

use crate::{config::DetectConfig, event::Event};

/// The policy, if one is loaded, and the detectors.
pub struct Decide {
    judge: Option<policy::judge::Judge>,
    detectors: detect::Detectors,
}

impl Decide {
    /// The policy's judge and the detections `config` enables.
    pub fn new(judge: Option<policy::judge::Judge>, config: &DetectConfig) -> Self {
        Self {
            judge,
            detectors: detect::Detectors::new(config),
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
    /// detections, in order. `event` must carry its record id (the
    /// detections cite it).
    pub fn observe(&mut self, event: &Event) -> Vec<Event> {
        let policy = self.judge.as_ref().map(|j| j.shared_policy().load_full());
        let verdict = self.judge.as_ref().and_then(|j| j.judge(event));
        let findings = self.detectors.observe(event, policy.as_deref());
        verdict.into_iter().chain(findings).collect()
    }

    pub fn detectors(&self) -> &detect::Detectors {
        &self.detectors
    }

    pub fn detectors_mut(&mut self) -> &mut detect::Detectors {
        &mut self.detectors
    }
}
