//! `memory_read`: a process read the memory of a process holding weights
//! (`process_vm_readv`, an open or reads of its `/proc/PID/mem`, a ptrace
//! attach or peeks); high when the target serves models from a GPU.

use super::{About, Context, Detector, Finding, Trusted, process_name};
use crate::event::{AccessDetail, Detection, DetectionId, Event, MemoryMethod, Severity};

pub struct MemoryRead;

impl Detector for MemoryRead {
    fn id(&self) -> DetectionId {
        DetectionId::MemoryRead
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        let Some(AccessDetail::Memory { method, bytes, .. }) =
            event.access.as_ref().map(|a| &a.detail)
        else {
            return Vec::new();
        };
        let Some(target) = &event.target else {
            return Vec::new();
        };
        if ctx.trusted == Some(Trusted::Sensor) {
            return Vec::new();
        }
        let how = match method {
            MemoryMethod::ProcessVmReadv => "process_vm_readv",
            MemoryMethod::PtraceAttach => "ptrace attach",
            MemoryMethod::PtraceSeize => "ptrace seize",
            MemoryMethod::ProcMemOpen => "/proc/PID/mem open",
            MemoryMethod::ProcMemRead => "/proc/PID/mem read",
            MemoryMethod::PtracePeek => "ptrace peek",
        };
        let weights: Vec<_> = target.weights.iter().map(|w| w.to_lossy()).collect();
        let mut d = Detection::new(
            DetectionId::MemoryRead,
            format!(
                "{} read the memory of {} (pid {}{}), which holds {} ({how})",
                process_name(event),
                target.comm,
                target.pid,
                if target.gpu { ", GPU-serving" } else { "" },
                weights.join(", ")
            ),
        );
        d.refs = ctx.refs.to_vec();
        d.bytes = Some(*bytes);
        d.matched = Some(how.to_owned());
        vec![Finding {
            severity: if target.gpu {
                Severity::High
            } else {
                Severity::Medium
            },
            about: About::Process(target.pid),
            detection: d,
            file: None,
        }]
    }
}
