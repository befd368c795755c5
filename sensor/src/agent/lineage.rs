//! Lineage: the destination of a copy of weights (an in-kernel copy's
//! file, or the file a process wrote what it took to) becomes watched
//! itself, derived from the original, so that a second hop (compress the
//! copy, upload the archive, copy it again) is attributed to the original
//! model (`file.derived_from` on its records).

use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path};

use sensor_common::FileKey;

use super::Agent;
use crate::event::{AccessDetail, Action, Destination, DestinationKind, DetectionId, Event};

impl Agent {
    /// Watches a copy's destination file, if `record` names one.
    pub(super) fn follow_lineage(&mut self, record: &Event) {
        let Some((destination, source)) = copy_of(record) else {
            return;
        };
        let key = FileKey {
            dev: destination.dev,
            ino: destination.ino,
        };
        if self.watch.flags_of(&key) != 0 {
            return; // watched already (a copy into the roots, or a repeat)
        }
        let Some(path) = &destination.path else {
            // The copier closed it before the agent could name it.
            self.health.agent.lineage_unnamed.inc();
            return;
        };
        let path = Path::new(OsStr::from_bytes(path.as_bytes()));
        // A copy of a copy derives from the original.
        let from = self.watch.derived_from(&source).unwrap_or(source);
        match self
            .watch
            .watch_derived(path, from, &mut self.kernel.watched)
        {
            Ok(_) => {
                self.health.agent.lineage_derived.inc();
                self.holders_rescan = true;
            }
            Err(err) => {
                self.health.agent.lineage_failed.inc();
                tracing::warn!(error = %crate::Chain(&err), "a copy of weights cannot be watched");
            }
        }
    }
}

/// The destination file and the source of a copy record, or of a `copy`
/// detection on a write through user space.
fn copy_of(record: &Event) -> Option<(&Destination, FileKey)> {
    let file = record.file.as_ref()?;
    let source = FileKey {
        dev: file.dev,
        ino: file.ino,
    };
    let destination = match (record.action, &record.access.as_ref()?.detail) {
        (Action::Copy, AccessDetail::Copy(copy)) => &copy.destination,
        (Action::Detection, AccessDetail::Send(send))
            if record.detection.as_ref()?.id == DetectionId::Copy =>
        {
            &send.destination
        }
        _ => return None,
    };
    (destination.kind == DestinationKind::File).then_some((destination, source))
}
