//! `egress`: a process that took watched bytes (or a child of one) sent
//! data to, or connected to, a network peer outside
//! `detect.egress_allowed`: an in-kernel copy into a connected socket, or
//! a `connect`/`write`/`send*` after reading weights (`curl -T`, `scp`, a
//! Python socket).

use std::net::SocketAddr;

use super::{
    About, Context, Detector, Finding, Trusted, about_file, copy::syscall_name, file_label,
    file_text, process_name,
};
use crate::event::{
    AccessDetail, Destination, DestinationKind, Detection, DetectionId, Event, Severity,
};

pub struct Egress;

impl Detector for Egress {
    fn id(&self) -> DetectionId {
        DetectionId::Egress
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if ctx.trusted == Some(Trusted::Sensor) {
            return Vec::new();
        }
        let (destination, bytes, how, about, file) = match event.access.as_ref().map(|a| &a.detail)
        {
            Some(AccessDetail::Copy(copy)) => (
                &copy.destination,
                copy.bytes,
                syscall_name(copy.syscall),
                about_file(event),
                None,
            ),
            Some(AccessDetail::Send(send)) => {
                // Only a process that took weights is followed; without the
                // source (lost records) there is nothing to name.
                let Some(source) = ctx.source else {
                    return Vec::new();
                };
                (
                    &send.destination,
                    send.bytes,
                    "sent",
                    // A connect and the sends that follow are two findings:
                    // the warning before any byte, and the bytes.
                    Some(if send.bytes == 0 {
                        About::Connect {
                            dev: send.destination.dev,
                            ino: send.destination.ino,
                        }
                    } else {
                        About::Destination {
                            dev: send.destination.dev,
                            ino: send.destination.ino,
                        }
                    }),
                    Some(source.file.clone()),
                )
            }
            _ => return Vec::new(),
        };
        let (Some(peer), Some(about)) = (network_peer(destination), about) else {
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
        let weights = match (&file, ctx.source) {
            (Some(_), Some(source)) => format!(
                "{} bytes of weights (most from {})",
                source.bytes,
                file_text(&source.file)
            ),
            _ => file_label(event),
        };
        let summary = if bytes == 0 {
            format!(
                "{}, holding {weights}, connected to {peer}",
                process_name(event)
            )
        } else {
            format!(
                "{} sent {weights} to {peer} ({how}, {bytes} bytes)",
                process_name(event)
            )
        };
        let mut d = Detection::new(DetectionId::Egress, summary);
        d.refs = ctx.refs.to_vec();
        d.bytes = Some(bytes);
        d.matched = Some(peer.to_string());
        vec![Finding {
            severity: Severity::Critical,
            about,
            detection: d,
            file,
        }]
    }
}

/// A socket destination's IP peer (a unix socket is not the network).
fn network_peer(d: &Destination) -> Option<SocketAddr> {
    if d.kind != DestinationKind::Socket {
        return None;
    }
    d.peer.as_deref()?.parse().ok()
}
