//! `serving_shell`: a shell or interpreter started under a GPU-serving
//! process (a model server's code execution, a debug shell) used weights.

use super::{
    Context, Detector, Finding, Trusted, about_file, file_label, file_name, process_name,
    uses_bytes,
};
use crate::event::{Detection, DetectionId, Event, Severity};

pub struct ServingShell {
    interpreters: Vec<String>,
}

impl ServingShell {
    pub fn new(interpreters: &[String]) -> Self {
        Self {
            interpreters: interpreters.to_vec(),
        }
    }

    /// The interpreter a file name is (`python3.11` is `python`).
    fn interpreter(&self, name: &[u8]) -> Option<&str> {
        self.interpreters
            .iter()
            .find(|i| {
                name.strip_prefix(i.as_bytes())
                    .is_some_and(|rest| rest.iter().all(|b| b.is_ascii_digit() || *b == b'.'))
            })
            .map(String::as_str)
    }
}

impl Detector for ServingShell {
    fn id(&self) -> DetectionId {
        DetectionId::ServingShell
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if matches!(
            ctx.trusted,
            Some(Trusted::Policy | Trusted::Configured | Trusted::Sensor)
        ) || !uses_bytes(event)
        {
            return Vec::new();
        }
        let (Some(process), Some(about)) = (&event.process, about_file(event)) else {
            return Vec::new();
        };
        // A serving process's own workers open the GPU themselves.
        if process.gpu {
            return Vec::new();
        }
        let name = process
            .exe
            .as_ref()
            .map_or(process.comm.as_bytes(), |e| file_name(e.as_bytes()));
        let Some(shell) = self.interpreter(name) else {
            return Vec::new();
        };
        let Some(server) = process.ancestors.iter().find(|a| a.gpu) else {
            return Vec::new();
        };
        let mut d = Detection::new(
            DetectionId::ServingShell,
            format!(
                "{} started under GPU-serving {} (pid {}) used {}",
                process_name(event),
                server.comm,
                server.pid,
                file_label(event)
            ),
        );
        d.refs = ctx.refs.to_vec();
        d.matched = Some(shell.to_owned());
        vec![Finding {
            severity: Severity::High,
            about,
            detection: d,
            file: None,
        }]
    }
}
