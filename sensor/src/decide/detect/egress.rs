//! `egress`: watched bytes sent to a network peer outside
//! `detect.egress_allowed` (today: an in-kernel copy of a watched file to
//! a connected socket; sends through user space are not followed yet, see
//! docs/detections.md).

use std::net::SocketAddr;

use super::{
    Context, Detector, Finding, Trusted, about_file, copy::syscall_name, file_label, process_name,
};
use crate::event::{AccessDetail, DestinationKind, Detection, DetectionId, Event, Severity};

pub struct Egress;

impl Detector for Egress {
    fn id(&self) -> DetectionId {
        DetectionId::Egress
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        let Some(AccessDetail::Copy(copy)) = event.access.as_ref().map(|a| &a.detail) else {
            return Vec::new();
        };
        if ctx.trusted == Some(Trusted::Sensor) || copy.destination.kind != DestinationKind::Socket
        {
            return Vec::new();
        }
        // A unix socket is not the network (`copy` covers it).
        let Some(peer) = copy
            .destination
            .peer
            .as_deref()
            .and_then(|p| p.parse::<SocketAddr>().ok())
        else {
            return Vec::new();
        };
        if ctx
            .config
            .egress_allowed
            .iter()
            .any(|net| net.contains(&peer.ip()))
        {
            return Vec::new();
        }
        let Some(about) = about_file(event) else {
            return Vec::new();
        };
        let mut d = Detection::new(
            DetectionId::Egress,
            format!(
                "{} sent {} to {peer} ({})",
                process_name(event),
                file_label(event),
                syscall_name(copy.syscall)
            ),
        );
        d.refs = ctx.refs.to_vec();
        d.bytes = Some(copy.bytes);
        d.matched = Some(peer.to_string());
        vec![Finding {
            severity: Severity::Critical,
            about,
            detection: d,
        }]
    }
}
