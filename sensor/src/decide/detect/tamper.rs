//! `tamper`: a weight file was opened for writing, truncated, renamed
//! (away, or another file over it), unlinked, re-permissioned or linked
//! anew, or a new one appeared in a watched directory, by a process no
//! policy rule allows to `write` it (the tampering records:
//! docs/events.md).

use sensor_common::FileKey;

use super::{About, Context, Detector, Finding, Trusted, file_label, process_name};
use crate::{
    decide::policy::{Operation, PolicyAction, judge::subject},
    event::{
        AccessDetail, Action, ChangeDetail, ChangeSyscall, Detection, DetectionId, EntryType,
        Event, Severity, Text,
    },
};

pub struct Tamper;

impl Detector for Tamper {
    fn id(&self) -> DetectionId {
        DetectionId::Tamper
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        let Some(AccessDetail::Change(change)) = event.access.as_ref().map(|a| &a.detail) else {
            return Vec::new();
        };
        if ctx.trusted == Some(Trusted::Sensor) || allowed_to_write(event, ctx) {
            return Vec::new();
        }
        let Some(file) = &event.file else {
            return Vec::new();
        };
        let about = About::Change {
            dev: file.dev,
            ino: file.ino,
            operation: action_name(event.action),
        };
        let who = process_name(event);
        let what = file_label(event);
        let path = |p: &Option<Text>| {
            p.as_ref()
                .map_or_else(|| "?".into(), |p| p.to_lossy().into_owned())
        };
        let size = |s: &Option<crate::event::FileState>| {
            s.map_or_else(|| "?".into(), |s| s.size.to_string())
        };
        let (severity, summary) = match event.action {
            Action::WriteOpen => (Severity::High, format!("{who} opened {what} for writing")),
            Action::Truncate => (
                Severity::High,
                format!(
                    "{who} truncated {what} ({} -> {} bytes)",
                    size(&change.before),
                    size(&change.after)
                ),
            ),
            Action::Rename => match &change.replaced {
                Some(r) => (
                    Severity::Critical,
                    format!(
                        "{who} replaced {} (inode {}, {} bytes) with {}",
                        path(&r.path),
                        r.state.ino,
                        r.state.size,
                        path(&change.old_path)
                    ),
                ),
                None => (
                    Severity::High,
                    format!(
                        "{who} renamed {} to {}",
                        path(&change.old_path),
                        path(&change.new_path)
                    ),
                ),
            },
            Action::Unlink => (Severity::High, format!("{who} unlinked {what}")),
            Action::SetAttributes => (
                Severity::Medium,
                format!("{who} changed the mode or owner of {what}"),
            ),
            Action::Link => (
                Severity::Medium,
                format!("{who} linked {what} as {}", path(&change.new_path)),
            ),
            Action::Create => (Severity::High, created(&who, &what, change)),
            _ => return Vec::new(),
        };
        let mut d = Detection::new(DetectionId::Tamper, summary);
        d.refs = ctx.refs.to_vec();
        d.matched = Some(action_name(event.action).to_owned());
        vec![Finding {
            severity,
            about,
            detection: d,
            file: None,
        }]
    }
}

/// A policy rule (not a weight set's default) allows the process to
/// `write` the file: a deployment job replacing a model.
fn allowed_to_write(event: &Event, ctx: &Context<'_>) -> bool {
    let (Some(policy), Some(process), Some(file)) = (ctx.policy, &event.process, &event.file)
    else {
        return false;
    };
    let key = FileKey {
        dev: file.dev,
        ino: file.ino,
    };
    policy
        .decide(&key, Operation::Write, &subject(process))
        .is_some_and(|v| v.action == PolicyAction::Allow && v.rule.is_some())
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::WriteOpen => "write_open",
        Action::Truncate => "truncate",
        Action::Rename => "rename",
        Action::Unlink => "unlink",
        Action::SetAttributes => "set_attributes",
        Action::Create => "create",
        _ => "link",
    }
}

/// The summary of a `create`: how the file appeared.
fn created(who: &str, what: &str, change: &ChangeDetail) -> String {
    let old = change
        .old_path
        .as_ref()
        .map_or_else(|| "?".into(), |p| p.to_lossy().into_owned());
    match change.syscall.base() {
        ChangeSyscall::Rename | ChangeSyscall::Renameat | ChangeSyscall::Renameat2 => {
            format!("{who} moved {old} in as {what}")
        }
        ChangeSyscall::Link | ChangeSyscall::Linkat => format!("{who} linked {old} in as {what}"),
        ChangeSyscall::Symlink | ChangeSyscall::Symlinkat => {
            format!("{who} made {what}, a symbolic link to {old}")
        }
        ChangeSyscall::Mknod | ChangeSyscall::Mknodat => {
            let kind = change.file_type.map_or("node", |t| match t {
                EntryType::Regular => "file",
                EntryType::Fifo => "FIFO",
                EntryType::Socket => "socket",
                EntryType::CharDevice => "character device",
                EntryType::BlockDevice => "block device",
                EntryType::Directory | EntryType::Symlink => "node",
            });
            format!("{who} made {what}, a {kind}, with mknod")
        }
        _ => format!("{who} created {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(syscall: ChangeSyscall, old: Option<&str>, kind: Option<EntryType>) -> ChangeDetail {
        ChangeDetail {
            syscall,
            old_path: old.map(Text::from),
            file_type: kind,
            ..ChangeDetail::default()
        }
    }

    #[test]
    fn a_create_says_how_the_file_appeared() {
        let say = |c: ChangeDetail| created("cp (pid 7)", "/models/x.safetensors", &c);
        assert_eq!(
            say(change(
                ChangeSyscall::Openat,
                None,
                Some(EntryType::Regular)
            )),
            "cp (pid 7) created /models/x.safetensors"
        );
        assert_eq!(
            say(change(ChangeSyscall::Renameat2, Some("/tmp/x"), None)),
            "cp (pid 7) moved /tmp/x in as /models/x.safetensors"
        );
        assert_eq!(
            say(change(ChangeSyscall::Linkat, Some("/tmp/x"), None)),
            "cp (pid 7) linked /tmp/x in as /models/x.safetensors"
        );
        assert_eq!(
            say(change(ChangeSyscall::Symlink, Some("../blobs/a"), None)),
            "cp (pid 7) made /models/x.safetensors, a symbolic link to ../blobs/a"
        );
        assert_eq!(
            say(change(
                ChangeSyscall::Mknodat,
                None,
                Some(EntryType::BlockDevice)
            )),
            "cp (pid 7) made /models/x.safetensors, a block device, with mknod"
        );
        assert_eq!(action_name(Action::Create), "create");
    }
}
