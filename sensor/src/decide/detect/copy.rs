//! `copy`: a watched file's bytes copied in the kernel (`sendfile`,
//! `splice`, `copy_file_range`, a reflink) to another file, a pipe or a
//! socket by a process not allowed to read weights; or copied through user
//! space: read, then written to one destination.

use super::{About, Context, Detector, Finding, about_file, file_label, file_text, process_name};
use crate::event::{
    AccessDetail, CopyDetail, CopySyscall, Destination, DestinationKind, Detection, DetectionId,
    Event, SendDetail, Severity,
};

pub struct Copy;

impl Detector for Copy {
    fn id(&self) -> DetectionId {
        DetectionId::Copy
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if ctx.trusted.is_some() {
            return Vec::new();
        }
        let copy = match event.access.as_ref().map(|a| &a.detail) {
            Some(AccessDetail::Copy(copy)) => copy,
            Some(AccessDetail::Send(send)) => return through_user_space(event, send, ctx),
            _ => return Vec::new(),
        };
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
            file: None,
        }]
    }
}

/// A copy through user space: a process that took watched bytes (or
/// its parent did) has written at least `detect.copy_share` of them to
/// one destination (`tar`, `dd`, Python's `shutil.copyfileobj`).
fn through_user_space(event: &Event, send: &SendDetail, ctx: &Context<'_>) -> Vec<Finding> {
    let Some(source) = ctx.source else {
        return Vec::new();
    };
    let needed = (source.bytes as f64 * ctx.config.copy_share).ceil() as u64;
    if send.bytes == 0 || send.bytes < needed.max(1) {
        return Vec::new();
    }
    let from = file_text(&source.file);
    let mut d = Detection::new(
        DetectionId::Copy,
        format!(
            "{} wrote {} bytes to {} after taking {} bytes of weights (most from {from})",
            process_name(event),
            send.bytes,
            destination_text(&send.destination),
            source.bytes
        ),
    );
    d.refs = ctx.refs.to_vec();
    d.bytes = Some(send.bytes);
    d.share = Some((send.bytes as f64 / source.bytes as f64).min(1.0));
    d.matched = Some("write".to_owned());
    vec![Finding {
        severity: Severity::High,
        about: About::Destination {
            dev: send.destination.dev,
            ino: send.destination.ino,
        },
        detection: d,
        file: Some(source.file.clone()),
    }]
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
        CopySyscall::IoUringSplice => "io_uring splice",
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
