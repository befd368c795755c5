//! `unexpected_reader`: weights opened, read, mapped or copied by a process
//! neither allowed by the policy (or `detect.trusted_exes`) nor
//! GPU-serving.

use super::{Context, Detector, Finding, about_file, file_label, process_name, uses_bytes};
use crate::event::{Detection, DetectionId, Event, Severity};

pub struct UnexpectedReader;

impl Detector for UnexpectedReader {
    fn id(&self) -> DetectionId {
        DetectionId::UnexpectedReader
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if ctx.trusted.is_some() || !uses_bytes(event) {
            return Vec::new();
        }
        let Some(about) = about_file(event) else {
            return Vec::new();
        };
        // With a policy, its rules say who may read: an access outside them
        // matters more than one on a host that never said.
        let (severity, why) = match ctx.policy {
            Some(_) => (Severity::Medium, "no policy rule allows it"),
            None => (Severity::Low, "it is not a GPU-serving process"),
        };
        let mut d = Detection::new(
            DetectionId::UnexpectedReader,
            format!("{} read {}: {why}", process_name(event), file_label(event)),
        );
        d.refs = ctx.refs.to_vec();
        vec![Finding {
            severity,
            about,
            detection: d,
            file: None,
        }]
    }
}
