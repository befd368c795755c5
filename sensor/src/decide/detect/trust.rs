//! Who may read weights, for the detections: the policy's explicit
//! `allow`, the configured trusted executables, GPU-serving processes, and
//! the sensor itself.

use sensor_common::FileKey;

use crate::{
    config::DetectConfig,
    decide::policy::{Operation, Policy, PolicyAction, judge::subject},
    enrich::watch::identity,
    event::Event,
};

/// Why a process may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trusted {
    /// A policy rule allows it this file.
    Policy,
    /// Its executable is in `detect.trusted_exes`.
    Configured,
    /// It has opened a GPU device: it serves models (without a policy
    /// rule saying otherwise).
    Serving,
    /// It runs the sensor's own executable (`weightwarden baseline`).
    Sensor,
}

pub struct Trust {
    trusted_exes: Vec<FileKey>,
    own_exe: Option<FileKey>,
}

impl Trust {
    /// Resolves the trusted executables' identities now (a path that does
    /// not exist trusts nothing until the next refresh).
    pub fn new(config: &DetectConfig) -> Self {
        Self {
            trusted_exes: config
                .trusted_exes
                .iter()
                .filter_map(|p| identity(p))
                .collect(),
            own_exe: std::env::current_exe().ok().and_then(|p| identity(&p)),
        }
    }

    /// Why the record's process may read the record's file, if it may. A
    /// policy verdict other than `allow` by a rule overrides the GPU role:
    /// a serving process the policy alerts on is not trusted.
    pub fn of(&self, event: &Event, policy: Option<&Policy>) -> Option<Trusted> {
        self.of_file(event, event.file.as_ref(), policy)
    }

    /// [`Trust::of`] for a file other than the record's (a send's source:
    /// a process the policy lets read a model may write what it read).
    pub fn of_file(
        &self,
        event: &Event,
        file: Option<&crate::event::File>,
        policy: Option<&Policy>,
    ) -> Option<Trusted> {
        let process = event.process.as_ref()?;
        if process.exe_id.is_some() && process.exe_id == self.own_exe {
            return Some(Trusted::Sensor);
        }
        if process
            .exe_id
            .is_some_and(|exe| self.trusted_exes.contains(&exe))
        {
            return Some(Trusted::Configured);
        }
        let verdict = policy.zip(file).and_then(|(policy, file)| {
            let key = FileKey {
                dev: file.dev,
                ino: file.ino,
            };
            policy.decide(&key, Operation::Read, &subject(process))
        });
        match verdict {
            Some(v) if v.action == PolicyAction::Allow && v.rule.is_some() => Some(Trusted::Policy),
            Some(v) if v.action > PolicyAction::Allow => None,
            _ => process.gpu.then_some(Trusted::Serving),
        }
    }
}
