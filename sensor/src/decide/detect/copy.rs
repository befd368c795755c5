//! `copy`: a watched file's bytes copied in the kernel (`sendfile`,
//! `splice`, `copy_file_range`, a reflink) to another file, a pipe or a
//! socket by a process not allowed to read weights.

use super::{Context, Detector, Finding, about_file, file_label, process_name};
use crate::event::{
    AccessDetail, CopyDetail, CopySyscall, Destination, DestinationKind, Detection, DetectionId,
    Event, Severity,
};

pub struct Copy;

impl Detector for Copy {
    fn id(&self) -> DetectionId {
        DetectionId::Copy
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        let Some(AccessDetail::Copy(copy)) = event.access.as_ref().map(|a| &a.detail) else {
            return Vec::new();
        };
        if ctx.trusted.is_some() {
            return Vec::new();
        }
        let Some(about) = about_file(event) else {
            return Vec::new();
        };
        let mut d = Detection::new(
            DetectionId::Copy,
            format!(
                "{} copied {} to {} ({})",
                process_name(event),
                file_label(event),
                destination_text(&copy.destination),
                syscall_name(copy.syscall)
            ),
        );
        d.refs = ctx.refs.to_vec();
        d.bytes = Some(copied_bytes(copy, event));
        d.matched = Some(syscall_name(copy.syscall).to_owned());
        vec![Finding {
            severity: Severity::High,
            about,
            detection: d,
        }]
    }
}

/// The bytes the first call moved; a whole-file reflink moves none but
/// copies the file.
fn copied_bytes(copy: &CopyDetail, event: &Event) -> u64 {
    match copy.syscall {
        CopySyscall::Ficlone => event.file.as_ref().map_or(0, |f| f.size),
        _ => copy.bytes,
    }
}

pub(super) fn syscall_name(syscall: CopySyscall) -> &'static str {
    match syscall {
        CopySyscall::Sendfile => "sendfile",
        CopySyscall::Splice => "splice",
        CopySyscall::CopyFileRange => "copy_file_range",
        CopySyscall::Ficlone => "ioctl FICLONE",
        CopySyscall::FicloneRange => "ioctl FICLONERANGE",
    }
}

/// Where the bytes went, for a summary.
pub(super) fn destination_text(d: &Destination) -> String {
    match (d.kind, &d.path, &d.peer) {
        (DestinationKind::File, Some(path), _) => path.to_lossy().into_owned(),
        (DestinationKind::File, None, _) => format!("inode {}", d.ino),
        (DestinationKind::Pipe, ..) => "a pipe".to_owned(),
        (DestinationKind::Socket, _, Some(peer)) => format!("a socket to {peer}"),
        (DestinationKind::Socket, _, None) => "a socket".to_owned(),
        (DestinationKind::Other, ..) => format!("inode {}", d.ino),
    }
}
