//! Lineage: the destination of a copy of weights (an in-kernel copy's
//! file, or the file a process wrote what it took to) becomes watched
//! itself, derived from the original, so that a second hop (compress the
//! copy, upload the archive, copy it again) is attributed to the original
//! model (`file.derived_from` on its records). The inodes followed this
//! way (and the watched files that left the roots) outlive the agent: they
//! are saved in `agent.state_dir` and followed again by the next one.
//!
//! A copy into a pipe is followed the same way: the pipe is watched, and
//! the processes holding it become holders at once, so that the reader at
//! the other end (`tar c model | curl -T - URL`: `curl` is `tar`'s
//! sibling, not its child) takes the weights in its reads and is followed
//! in its turn (its upload is an `egress`).

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use sensor_common::FileKey;

use super::Agent;
use crate::{
    enrich::{
        process::procfs,
        watch::{FOLLOWED_STATE_FILE, InodeMap, Restored, WatchSet},
    },
    event::{AccessDetail, Action, Destination, DestinationKind, DetectionId, Event},
};

impl Agent {
    /// Watches a copy's destination file or pipe, if `record` names one.
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
        if destination.kind == DestinationKind::Pipe {
            self.follow_pipe(key, source);
            return;
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

impl Agent {
    /// Watches the pipe `key` a copy of `source` went into, and makes the
    /// processes holding it holders now rather than at the next rescan:
    /// the reader may be reading already.
    fn follow_pipe(&mut self, key: FileKey, source: FileKey) {
        let name = format!("pipe:[{}]", key.ino);
        // Seeded as found, with the prefilter held off meanwhile: the shell
        // of `dd if=model | (sleep 1; exec curl ...)` may fork the reader's
        // subshell while /proc is scanned, and only the fork hook can mark
        // it then.
        let (holders, seeded) = super::holders::scan_and_seed(&mut self.kernel.holders, || {
            procfs::pids_with_open_file(Path::new("/proc"), |target| {
                target.as_os_str().as_bytes() == name.as_bytes()
            })
        });
        if let Err(err) = seeded {
            tracing::warn!(error = %crate::Chain(&err), "the readers of a pipe weights were copied into are not followed");
        }
        if holders.is_empty() {
            // Both ends closed already: whoever read it is not known.
            self.health.agent.lineage_pipes_closed.inc();
            return;
        }
        let from = self.watch.derived_from(&source).unwrap_or(source);
        match self
            .watch
            .watch_pipe(key, from, holders, &mut self.kernel.watched)
        {
            Ok(()) => {
                self.health.agent.lineage_pipes.inc();
            }
            Err(err) => {
                self.health.agent.lineage_failed.inc();
                tracing::warn!(error = %crate::Chain(&err), "a pipe weights were copied into cannot be watched");
            }
        }
    }
}

/// Where the followed inodes are saved, when `agent.state_dir` is set.
pub(super) fn state_file(config: &crate::config::Config) -> Option<PathBuf> {
    Some(config.agent.state_dir()?.join(FOLLOWED_STATE_FILE))
}

/// At start: follows again what the previous agent followed. A state file
/// that cannot be used is a warning (it was moved aside if corrupt), never
/// a reason not to start: capture matters more than the history.
pub(super) fn restore(
    watch: &mut WatchSet,
    state: Option<&Path>,
    map: &mut impl InodeMap,
) -> Restored {
    let Some(state) = state else {
        return Restored::default();
    };
    match watch.restore_followed(state, map) {
        Ok(restored) => {
            if restored != Restored::default() {
                tracing::info!(
                    followed = restored.followed,
                    deleted = restored.gone,
                    refused = restored.refused,
                    state = %state.display(),
                    "files followed outside the watch roots before the restart (copies of \
                     weights, weights moved away) are followed again"
                );
            }
            restored
        }
        Err(err) => {
            tracing::warn!(
                error = %crate::Chain(&err),
                "the files followed before the restart (copies of weights, weights moved \
                 away) are not followed again: their reads go unrecorded until copied anew \
                 (a corrupt file is kept beside it as .corrupt)"
            );
            Restored::default()
        }
    }
}

impl Agent {
    /// Saves the followed inodes if they changed since the last save
    /// (every second, and at stop).
    pub(super) fn save_followed(&mut self) {
        let Some(state) = &self.followed_state else {
            return;
        };
        if let Err(err) = self.watch.save_followed(state) {
            self.health.agent.state_save_failures.inc();
            let failures = self.health.agent.state_save_failures.get();
            if failures == 1 || failures.is_multiple_of(60) {
                tracing::warn!(
                    state = %state.display(),
                    error = %err,
                    failures,
                    "cannot save the files followed outside the roots: a restarted agent \
                     would not follow them (check agent.state_dir)"
                );
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
    matches!(
        destination.kind,
        DestinationKind::File | DestinationKind::Pipe
    )
    .then_some((destination, source))
}
