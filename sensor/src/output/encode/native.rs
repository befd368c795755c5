//! The native encoding, `weightwarden/1`: one JSON object per line, every
//! field documented in docs/events.md. A field is never renamed, retyped or
//! given a new meaning within `weightwarden/1`; fields may be added.
//!
//! The wire structs below are the format: their field order is the byte
//! order of every record (a golden test holds it). [`decode`] reads a line
//! back into the event model, so tests and tools work with types.
//!
//! Text that is not valid UTF-8 is written readable (invalid bytes become
//! U+FFFD) with a faithful `*_escaped` twin beside it (`path_escaped`,
//! `exe_escaped`, `args_escaped`), present only when the two differ.

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{EncodeError, Encoder, Wire};
use crate::{
    decide::policy::{Mode, Operation, PolicyAction},
    enrich::{clock::format_unix_ns, process::Runtime},
    event::{
        Access, AccessDetail, Action, Ancestor, ChangeDetail, ChangeSyscall, Container, CopyDetail,
        CopySyscall, DerivedFrom, Destination, DestinationKind, EntryType, Event, Exit, File,
        FileState, FlushReason, IoUringCapture, MemoryMethod, MemorySummary, OpenSummary,
        OutputCounters, PolicyInfo, PolicyLoaded, PolicyRejected, PolicyVerdict, Process,
        ReadSummary, Replaced, SendDetail, SendSyscall, SensorStatus, Severity, SyscallAbi, Target,
        Text, Tier, Timestamp, UnconfirmedIdentity,
        names::{kernel_dev_text, mmap_flags, mmap_prot, open_flags, syscall_result},
    },
};

pub(in crate::output::encode) mod detection;

use detection::{WireDetection, parse_record_id};

/// Value of every record's `schema` field.
pub const SCHEMA: &str = "weightwarden/1";

/// The `weightwarden/1` encoder.
#[derive(Debug, Default)]
pub struct Native;

impl Encoder for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn encode_wire(&mut self, wire: &Wire<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        super::write_line(out, &wire.native)
    }
}

/// A record's detail objects as the native encoding writes them, for the
/// other encodings to pass through (OCSF's `unmapped`, ECS's
/// `weightwarden.*`).
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
pub(in crate::output::encode) struct Details<'a> {
    access: Option<&'a WireAccess>,
    exit: Option<&'a WireExit>,
    sensor: Option<&'a Map<String, Value>>,
    policy: Option<&'a WirePolicy>,
    target: Option<&'a WireTarget>,
    detection: Option<&'a WireDetection>,
}

impl Record<'_> {
    pub(in crate::output::encode) fn details(&self) -> Details<'_> {
        Details {
            access: self.access.as_ref(),
            exit: self.exit.as_ref(),
            sensor: self.sensor.as_ref(),
            policy: self.policy.as_ref(),
            target: self.target.as_ref(),
            detection: self.detection.as_ref(),
        }
    }
}

/// The record's wire form, borrowing from `event`: the other encodings
/// take its readable texts and pass its detail objects through.
pub(in crate::output::encode) fn wire(event: &Event) -> Record<'_> {
    Record::from(event)
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a weightwarden/1 JSON record")]
    Json(#[from] serde_json::Error),
    #[error("schema {0:?} is not {SCHEMA}")]
    Schema(String),
    #[error("field {field} has an invalid value {value:?}")]
    Value { field: &'static str, value: String },
    #[error("field {0} is missing for this action")]
    Missing(&'static str),
}

/// Reads one record (a line, with or without its newline) into the model.
pub fn decode(line: &str) -> Result<Event, DecodeError> {
    let record: Record<'_> = serde_json::from_str(line)?;
    record.into_event()
}

// --- the wire format ---------------------------------------------------

#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct Record<'a> {
    pub(in crate::output::encode) schema: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) seq: Option<u64>,
    pub(in crate::output::encode) time: String,
    pub(in crate::output::encode) host: Cow<'a, str>,
    pub(in crate::output::encode) action: Action,
    pub(in crate::output::encode) severity: Severity,
    pub(in crate::output::encode) tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) process: Option<WireProcess<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) file: Option<WireFile<'a>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) access: Option<WireAccess>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) exit: Option<WireExit>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) sensor: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) policy: Option<WirePolicy>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) target: Option<WireTarget>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) detection: Option<WireDetection>,
}

/// `target` on `memory_read`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireTarget {
    pid: u32,
    comm: String,
    exe: Option<String>,
    exe_escaped: Option<String>,
    gpu: bool,
    weights: Vec<String>,
    weights_escaped: Option<Vec<Option<String>>>,
}

impl From<&Target> for WireTarget {
    fn from(t: &Target) -> Self {
        let (exe, exe_escaped) = match t.exe.as_ref().map(text_pair) {
            Some((readable, escaped)) => (Some(readable.into_owned()), escaped),
            None => (None, None),
        };
        let pairs: Vec<_> = t.weights.iter().map(text_pair).collect();
        let escaped: Vec<Option<String>> = pairs.iter().map(|(_, e)| e.clone()).collect();
        WireTarget {
            pid: t.pid,
            comm: t.comm.clone(),
            exe,
            exe_escaped,
            gpu: t.gpu,
            weights: pairs.into_iter().map(|(r, _)| r.into_owned()).collect(),
            weights_escaped: escaped.iter().any(Option::is_some).then_some(escaped),
        }
    }
}

impl WireTarget {
    fn into_model(self) -> Result<Target, DecodeError> {
        let escaped = self.weights_escaped.unwrap_or_default();
        let weights = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                text_from(
                    "target.weights",
                    w,
                    escaped.get(i).and_then(Option::as_deref),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Target {
            pid: self.pid,
            comm: self.comm,
            exe: self
                .exe
                .as_deref()
                .map(|e| text_from("target.exe", e, self.exe_escaped.as_deref()))
                .transpose()?,
            gpu: self.gpu,
            weights,
        })
    }
}

/// `policy`: a verdict's fields on `alert` and `would_*`, the policy's on
/// `policy_loaded`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Default)]
pub(in crate::output::encode) struct WirePolicy {
    sha256: Option<String>,
    mode: Option<Mode>,
    verdict: Option<PolicyAction>,
    operation: Option<Operation>,
    rule: Option<u32>,
    rule_name: Option<String>,
    weight_set: Option<String>,
    mechanism: Option<String>,
    unjudged: Option<bool>,
    path: Option<String>,
    path_escaped: Option<String>,
    weight_sets: Option<u64>,
    rules: Option<u64>,
    files: Option<u64>,
    files_unwatched: Option<u64>,
    warnings: Option<u64>,
    errors: Option<Vec<String>>,
}

impl From<&PolicyInfo> for WirePolicy {
    fn from(p: &PolicyInfo) -> Self {
        match p {
            PolicyInfo::Verdict(v) => WirePolicy {
                sha256: Some(v.sha256.clone()),
                mode: Some(v.mode),
                verdict: Some(v.verdict),
                operation: Some(v.operation),
                rule: v.rule,
                rule_name: v.rule_name.clone(),
                weight_set: Some(v.weight_set.clone()),
                mechanism: Some(v.mechanism.clone()),
                unjudged: v.unjudged.then_some(true),
                ..WirePolicy::default()
            },
            PolicyInfo::Loaded(l) => WirePolicy {
                sha256: Some(l.sha256.clone()),
                mode: Some(l.mode),
                path: Some(l.path.to_lossy().into_owned()),
                path_escaped: l.path.escaped(),
                weight_sets: Some(l.weight_sets),
                rules: Some(l.rules),
                files: Some(l.files),
                files_unwatched: Some(l.files_unwatched),
                warnings: Some(l.warnings),
                mechanism: Some(l.mechanism.clone()),
                ..WirePolicy::default()
            },
            PolicyInfo::Rejected(r) => WirePolicy {
                path: Some(r.path.to_lossy().into_owned()),
                path_escaped: r.path.escaped(),
                errors: Some(r.errors.clone()),
                ..WirePolicy::default()
            },
        }
    }
}

impl WirePolicy {
    fn into_model(self, action: Action) -> Result<PolicyInfo, DecodeError> {
        let need = |field: &'static str, v: Option<u64>| v.ok_or(DecodeError::Missing(field));
        if action == Action::PolicyRejected {
            let path = self.path.ok_or(DecodeError::Missing("policy.path"))?;
            return Ok(PolicyInfo::Rejected(PolicyRejected {
                path: text_from("policy.path", &path, self.path_escaped.as_deref())?,
                errors: self.errors.unwrap_or_default(),
            }));
        }
        let sha256 = self.sha256.ok_or(DecodeError::Missing("policy.sha256"))?;
        if action == Action::PolicyLoaded {
            let path = self.path.ok_or(DecodeError::Missing("policy.path"))?;
            return Ok(PolicyInfo::Loaded(PolicyLoaded {
                sha256,
                path: text_from("policy.path", &path, self.path_escaped.as_deref())?,
                mode: self.mode.ok_or(DecodeError::Missing("policy.mode"))?,
                weight_sets: need("policy.weight_sets", self.weight_sets)?,
                rules: need("policy.rules", self.rules)?,
                files: need("policy.files", self.files)?,
                files_unwatched: need("policy.files_unwatched", self.files_unwatched)?,
                warnings: need("policy.warnings", self.warnings)?,
                mechanism: self
                    .mechanism
                    .ok_or(DecodeError::Missing("policy.mechanism"))?,
            }));
        }
        Ok(PolicyInfo::Verdict(PolicyVerdict {
            sha256,
            mode: self.mode.ok_or(DecodeError::Missing("policy.mode"))?,
            verdict: self.verdict.ok_or(DecodeError::Missing("policy.verdict"))?,
            operation: self
                .operation
                .ok_or(DecodeError::Missing("policy.operation"))?,
            rule: self.rule,
            rule_name: self.rule_name,
            weight_set: self
                .weight_set
                .ok_or(DecodeError::Missing("policy.weight_set"))?,
            mechanism: self
                .mechanism
                .ok_or(DecodeError::Missing("policy.mechanism"))?,
            unjudged: self.unjudged.unwrap_or(false),
        }))
    }
}

#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireProcess<'a> {
    pub(in crate::output::encode) pid: u32,
    pub(in crate::output::encode) tid: u32,
    pub(in crate::output::encode) ppid: u32,
    pub(in crate::output::encode) uid: u32,
    pub(in crate::output::encode) gid: u32,
    pub(in crate::output::encode) comm: Cow<'a, str>,
    pub(in crate::output::encode) exe: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) exe_escaped: Option<String>,
    pub(in crate::output::encode) args: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) args_escaped: Option<Vec<String>>,
    pub(in crate::output::encode) args_truncated: bool,
    pub(in crate::output::encode) cgroup_id: u64,
    pub(in crate::output::encode) container_id: Option<Cow<'a, str>>,
    pub(in crate::output::encode) container_runtime: Option<Cow<'a, str>>,
    pub(in crate::output::encode) pod_uid: Option<Cow<'a, str>>,
    pub(in crate::output::encode) start_time: Option<String>,
    pub(in crate::output::encode) gpu: bool,
    pub(in crate::output::encode) ancestors: Vec<WireAncestor<'a>>,
}

#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireAncestor<'a> {
    pub(in crate::output::encode) pid: u32,
    pub(in crate::output::encode) comm: Cow<'a, str>,
    pub(in crate::output::encode) exe: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) exe_escaped: Option<String>,
    /// Written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub(in crate::output::encode) gpu: bool,
}

#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireFile<'a> {
    pub(in crate::output::encode) path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) path_escaped: Option<String>,
    pub(in crate::output::encode) dev: String,
    pub(in crate::output::encode) ino: u64,
    pub(in crate::output::encode) size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(in crate::output::encode) derived_from: Option<WireDerivedFrom>,
}

/// `file.derived_from`: the watched file a derived file was copied from.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireDerivedFrom {
    path: Option<String>,
    path_escaped: Option<String>,
    dev: String,
    ino: u64,
}

/// `access.destination` on `copy`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
struct WireDestination {
    #[serde(rename = "type")]
    kind: DestinationKind,
    dev: String,
    ino: u64,
    path: Option<String>,
    path_escaped: Option<String>,
    peer: Option<String>,
}

/// A file's identity and state, on tampering records.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
struct WireState {
    ino: u64,
    size: u64,
    mtime: Option<String>,
}

/// `access.replaced`: the watched file a rename replaced.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
struct WireReplaced {
    path: Option<String>,
    path_escaped: Option<String>,
    dev: String,
    ino: u64,
    size: u64,
    mtime: Option<String>,
}

/// Which fields are present depends on the action (docs/events.md).
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Default)]
pub(in crate::output::encode) struct WireAccess {
    fd: Option<i32>,
    syscall_abi: Option<Cow<'static, str>>,
    flags: Option<Vec<Cow<'static, str>>>,
    flags_raw: Option<u32>,
    prot: Option<Vec<Cow<'static, str>>>,
    prot_raw: Option<u32>,
    map_flags: Option<Vec<Cow<'static, str>>>,
    map_flags_raw: Option<u32>,
    offset: Option<u64>,
    length: Option<u64>,
    result: Option<String>,
    bytes: Option<u64>,
    calls: Option<u64>,
    opens: Option<u64>,
    closes: Option<u64>,
    copies: Option<u64>,
    coverage: Option<f64>,
    fd_out: Option<i32>,
    #[serde(rename = "copy_syscall")]
    copy_syscall: Option<CopySyscall>,
    method: Option<MemoryMethod>,
    send_syscall: Option<SendSyscall>,
    destination: Option<WireDestination>,
    syscall: Option<ChangeSyscall>,
    mode: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    old_path: Option<String>,
    old_path_escaped: Option<String>,
    new_path: Option<String>,
    new_path_escaped: Option<String>,
    before: Option<WireState>,
    after: Option<WireState>,
    replaced: Option<WireReplaced>,
    file_type: Option<EntryType>,
    rdev: Option<String>,
    reason: Option<Cow<'static, str>>,
    first_time: Option<String>,
    last_time: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireExit {
    code: Option<i32>,
    signal: Option<i32>,
}

// --- model -> wire -----------------------------------------------------

fn time_text(t: &Timestamp) -> String {
    format_unix_ns(t.unix_ns)
}

/// The readable form, and the faithful one when it differs.
fn text_pair(text: &Text) -> (Cow<'_, str>, Option<String>) {
    (text.to_lossy(), text.escaped())
}

fn names(list: Vec<&'static str>) -> Vec<Cow<'static, str>> {
    list.into_iter().map(Cow::Borrowed).collect()
}

impl<'a> From<&'a Event> for Record<'a> {
    fn from(e: &'a Event) -> Self {
        Record {
            schema: Cow::Borrowed(SCHEMA),
            id: e.id.map(|id| id.to_string()),
            seq: e.id.map(|id| id.seq),
            time: time_text(&e.time),
            host: Cow::Borrowed(&e.host),
            action: e.action,
            severity: e.severity,
            tier: e.tier,
            process: e.process.as_ref().map(WireProcess::from),
            file: e.file.as_ref().map(WireFile::from),
            access: e.access.as_ref().map(WireAccess::from),
            exit: e.exit.map(|x| WireExit {
                code: x.code(),
                signal: x.signal(),
            }),
            sensor: e.sensor.as_ref().map(sensor_object),
            policy: e.policy.as_ref().map(WirePolicy::from),
            target: e.target.as_ref().map(WireTarget::from),
            detection: e.detection.as_ref().map(WireDetection::from),
        }
    }
}

impl<'a> From<&'a Process> for WireProcess<'a> {
    fn from(p: &'a Process) -> Self {
        let (exe, exe_escaped) = match p.exe.as_ref().map(text_pair) {
            Some((readable, escaped)) => (Some(readable), escaped),
            None => (None, None),
        };
        // Every element escaped alike, so the list unescapes as one.
        let args_escaped = p
            .args
            .iter()
            .any(|a| a.as_str().is_none())
            .then(|| p.args.iter().map(Text::escape).collect());
        WireProcess {
            pid: p.pid,
            tid: p.tid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            comm: Cow::Borrowed(&p.comm),
            exe,
            exe_escaped,
            args: p.args.iter().map(Text::to_lossy).collect(),
            args_escaped,
            args_truncated: p.args_truncated,
            cgroup_id: p.cgroup_id,
            container_id: p.container.as_ref().map(|c| Cow::Borrowed(c.id.as_str())),
            container_runtime: p
                .container
                .as_ref()
                .map(|c| Cow::Borrowed(c.runtime.as_str())),
            pod_uid: p
                .container
                .as_ref()
                .and_then(|c| c.pod_uid.as_deref())
                .map(Cow::Borrowed),
            start_time: p.start_time.as_ref().map(time_text),
            gpu: p.gpu,
            ancestors: p
                .ancestors
                .iter()
                .map(|a| {
                    let (exe, exe_escaped) = match a.exe.as_ref().map(text_pair) {
                        Some((readable, escaped)) => (Some(readable), escaped),
                        None => (None, None),
                    };
                    WireAncestor {
                        pid: a.pid,
                        comm: Cow::Borrowed(&a.comm),
                        exe,
                        exe_escaped,
                        gpu: a.gpu,
                    }
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a File> for WireFile<'a> {
    fn from(f: &'a File) -> Self {
        let (path, path_escaped) = match f.path.as_ref().map(text_pair) {
            Some((readable, escaped)) => (Some(readable), escaped),
            None => (None, None),
        };
        WireFile {
            path,
            path_escaped,
            dev: kernel_dev_text(f.dev),
            ino: f.ino,
            size: f.size,
            derived_from: f.derived_from.as_ref().map(|d| {
                let (path, path_escaped) = match d.path.as_ref().map(text_pair) {
                    Some((readable, escaped)) => (Some(readable.into_owned()), escaped),
                    None => (None, None),
                };
                WireDerivedFrom {
                    path,
                    path_escaped,
                    dev: kernel_dev_text(d.dev),
                    ino: d.ino,
                }
            }),
        }
    }
}

impl From<&Access> for WireAccess {
    fn from(a: &Access) -> Self {
        let mut w = WireAccess {
            syscall_abi: match a.abi {
                SyscallAbi::Native => None,
                SyscallAbi::Ia32 => Some(Cow::Borrowed("ia32")),
            },
            ..WireAccess::default()
        };
        match &a.detail {
            AccessDetail::Open { fd, flags } => {
                w.fd = Some(*fd);
                w.flags = Some(names(open_flags(*flags)));
                w.flags_raw = Some(*flags);
            }
            AccessDetail::Close { fd } => w.fd = Some(*fd),
            AccessDetail::Mmap {
                fd,
                prot,
                flags,
                offset,
                length,
                result,
            } => {
                w.fd = Some(*fd);
                w.prot = Some(names(mmap_prot(*prot)));
                w.prot_raw = Some(*prot);
                w.map_flags = Some(names(mmap_flags(*flags)));
                w.map_flags_raw = Some(*flags);
                w.offset = Some(*offset);
                w.length = Some(*length);
                w.result = Some(syscall_result(*result));
            }
            AccessDetail::Read(r) => {
                w.fd = r.fd.filter(|&fd| fd >= 0);
                w.bytes = Some(r.bytes);
                w.calls = Some(r.calls);
                // Only when there were any: records without copies keep
                // their shape.
                w.copies = (r.copies > 0).then_some(r.copies);
                w.coverage = Some(r.coverage);
                w.reason = Some(Cow::Borrowed(reason_text(r.reason)));
                w.first_time = Some(time_text(&r.first));
                w.last_time = Some(time_text(&r.last));
            }
            AccessDetail::Memory {
                method,
                bytes,
                summary,
            } => {
                w.method = Some(*method);
                w.bytes = Some(*bytes);
                if let Some(s) = summary {
                    w.calls = Some(s.calls);
                    w.reason = Some(Cow::Borrowed(reason_text(s.reason)));
                    w.first_time = Some(time_text(&s.first));
                    w.last_time = Some(time_text(&s.last));
                }
            }
            AccessDetail::OpenSummary(o) => {
                w.fd = o.fd.filter(|&fd| fd >= 0);
                w.opens = Some(o.opens);
                w.closes = Some(o.closes);
                w.flags = Some(names(open_flags(o.flags)));
                w.flags_raw = Some(o.flags);
                w.reason = Some(Cow::Borrowed(reason_text(o.reason)));
                w.first_time = Some(time_text(&o.first));
                w.last_time = Some(time_text(&o.last));
            }
            AccessDetail::Change(c) => change_to_wire(c, &mut w),
            AccessDetail::Copy(c) => {
                w.fd = Some(c.fd);
                w.fd_out = Some(c.fd_out);
                w.copy_syscall = Some(c.syscall);
                w.bytes = Some(c.bytes);
                w.destination = Some(WireDestination::from(&c.destination));
            }
            AccessDetail::Send(send) => {
                w.fd = Some(send.fd);
                w.send_syscall = Some(send.syscall);
                w.bytes = Some(send.bytes);
                w.calls = Some(send.calls);
                w.destination = Some(WireDestination::from(&send.destination));
            }
        }
        w
    }
}

impl From<&Destination> for WireDestination {
    fn from(d: &Destination) -> Self {
        let (path, path_escaped) = match d.path.as_ref().map(text_pair) {
            Some((readable, escaped)) => (Some(readable.into_owned()), escaped),
            None => (None, None),
        };
        WireDestination {
            kind: d.kind,
            dev: kernel_dev_text(d.dev),
            ino: d.ino,
            path,
            path_escaped,
            peer: d.peer.clone(),
        }
    }
}

impl WireDestination {
    fn into_model(self) -> Result<Destination, DecodeError> {
        Ok(Destination {
            kind: self.kind,
            dev: parse_dev(&self.dev)?,
            ino: self.ino,
            path: self
                .path
                .as_deref()
                .map(|p| text_from("access.destination.path", p, self.path_escaped.as_deref()))
                .transpose()?,
            peer: self.peer,
        })
    }
}

fn state_to_wire(s: &FileState) -> WireState {
    WireState {
        ino: s.ino,
        size: s.size,
        mtime: s.mtime.as_ref().map(time_text),
    }
}

fn owned_pair(text: &Text) -> (String, Option<String>) {
    let (readable, escaped) = text_pair(text);
    (readable.into_owned(), escaped)
}

fn change_to_wire(c: &ChangeDetail, w: &mut WireAccess) {
    w.syscall = Some(c.syscall);
    w.fd = c.fd;
    if let Some(flags) = c.flags {
        let open = matches!(
            c.syscall.base(),
            ChangeSyscall::Open
                | ChangeSyscall::Openat
                | ChangeSyscall::Openat2
                | ChangeSyscall::Creat
                | ChangeSyscall::OpenByHandleAt
        );
        if open {
            w.flags = Some(names(open_flags(flags)));
        }
        w.flags_raw = Some(flags);
    }
    w.mode = c.mode.map(|m| format!("{:04o}", m & 0o7777));
    w.uid = c.uid;
    w.gid = c.gid;
    w.length = c.length;
    if let Some(p) = &c.old_path {
        let (readable, escaped) = owned_pair(p);
        w.old_path = Some(readable);
        w.old_path_escaped = escaped;
    }
    if let Some(p) = &c.new_path {
        let (readable, escaped) = owned_pair(p);
        w.new_path = Some(readable);
        w.new_path_escaped = escaped;
    }
    w.before = c.before.as_ref().map(state_to_wire);
    w.after = c.after.as_ref().map(state_to_wire);
    w.replaced = c.replaced.as_ref().map(|r| {
        let (path, path_escaped) = match r.path.as_ref().map(owned_pair) {
            Some((readable, escaped)) => (Some(readable), escaped),
            None => (None, None),
        };
        WireReplaced {
            path,
            path_escaped,
            dev: kernel_dev_text(r.dev),
            ino: r.state.ino,
            size: r.state.size,
            mtime: r.state.mtime.as_ref().map(time_text),
        }
    });
    w.file_type = c.file_type;
    w.rdev = c.rdev.map(kernel_dev_text);
    w.result = Some(syscall_result(c.result));
}

/// The `sensor` object. A JSON map keeps its keys sorted, as the first
/// releases wrote them.
fn sensor_object(s: &SensorStatus) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("version".into(), Value::from(s.version.as_str()));
    map.insert("pid".into(), Value::from(s.pid));
    map.insert("uptime_secs".into(), Value::from(s.uptime_secs));
    map.insert("hooks_attached".into(), Value::from(s.hooks_attached));
    map.insert("watched_files".into(), Value::from(s.watched_files));
    for (section, counters) in &s.counters {
        let counters: Map<String, Value> = counters
            .iter()
            .map(|(name, value)| (name.clone(), Value::from(*value)))
            .collect();
        map.insert(section.clone(), Value::Object(counters));
    }
    let outputs = s
        .outputs
        .iter()
        .map(|o| {
            let mut m = Map::new();
            m.insert("name".into(), Value::from(o.name.as_str()));
            m.insert("records_written".into(), Value::from(o.records_written));
            m.insert("write_failures".into(), Value::from(o.write_failures));
            m.insert("dropped".into(), Value::from(o.dropped));
            m.insert("queued".into(), Value::from(o.queued));
            m.insert("queued_bytes".into(), Value::from(o.queued_bytes));
            m.insert("spooled".into(), Value::from(o.spooled));
            m.insert("spool_bytes".into(), Value::from(o.spool_bytes));
            Value::Object(m)
        })
        .collect();
    map.insert("sinks".into(), Value::Array(outputs));
    if let Some(t) = &s.status_time {
        map.insert("status_time".into(), Value::from(time_text(t)));
    }
    if let Some(enforcement) = &s.enforcement {
        map.insert("enforcement".into(), Value::from(enforcement.as_str()));
    }
    if let Some(unconfirmed) = &s.unconfirmed {
        let list = unconfirmed
            .iter()
            .map(|u| {
                let mut m = Map::new();
                m.insert("root".into(), Value::from(lossy_path(&u.root)));
                m.insert(
                    "mount_point".into(),
                    Value::from(lossy_path(&u.mount_point)),
                );
                m.insert("fstype".into(), Value::from(u.fstype.as_str()));
                m.insert("dev".into(), Value::from(u.dev.as_str()));
                m.insert("reason".into(), Value::from(u.reason.as_str()));
                Value::Object(m)
            })
            .collect();
        map.insert("unconfirmed".into(), Value::Array(list));
    }
    if let Some(io_uring) = &s.io_uring {
        let mut m = Map::new();
        match io_uring {
            IoUringCapture::On => {
                m.insert("capture".into(), Value::from("on"));
            }
            IoUringCapture::Off { reason } => {
                m.insert("capture".into(), Value::from("off"));
                m.insert("reason".into(), Value::from(reason.as_str()));
            }
        }
        map.insert("io_uring".into(), Value::Object(m));
    }
    if let Some(head) = &s.store_head {
        map.insert("store_head".into(), Value::from(head.as_str()));
    }
    map
}

fn lossy_path(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

fn reason_text(reason: FlushReason) -> &'static str {
    match reason {
        FlushReason::Close => "close",
        FlushReason::Interval => "interval",
        FlushReason::Exit => "exit",
        FlushReason::Idle => "idle",
        FlushReason::Shutdown => "shutdown",
        FlushReason::Send => "send",
        FlushReason::Unknown => "unknown",
    }
}

// --- wire -> model -----------------------------------------------------

fn parse_time(field: &'static str, text: &str) -> Result<Timestamp, DecodeError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| Timestamp::from_unix_ns(t.unix_timestamp_nanos()))
        .map_err(|_| DecodeError::Value {
            field,
            value: text.to_owned(),
        })
}

/// The raw bytes: from the escaped twin when there is one.
fn text_from(
    field: &'static str,
    readable: &str,
    escaped: Option<&str>,
) -> Result<Text, DecodeError> {
    match escaped {
        Some(escaped) => Text::unescape(escaped).ok_or_else(|| DecodeError::Value {
            field,
            value: escaped.to_owned(),
        }),
        None => Ok(Text::from(readable)),
    }
}

fn parse_dev(text: &str) -> Result<u64, DecodeError> {
    let bad = || DecodeError::Value {
        field: "file.dev",
        value: text.to_owned(),
    };
    let (major, minor) = text.split_once(':').ok_or_else(bad)?;
    let major: u64 = major.parse().map_err(|_| bad())?;
    let minor: u64 = minor.parse().map_err(|_| bad())?;
    Ok((major << 20) | minor)
}

/// `-errno` for an errno name, 0 for `ok` (the mapped address is not in
/// the record).
fn parse_result(text: &str) -> Result<i64, DecodeError> {
    if text == "ok" {
        return Ok(0);
    }
    (1..4096)
        .find(|&n| syscall_result(-n) == text)
        .map(|n| -n)
        .ok_or_else(|| DecodeError::Value {
            field: "access.result",
            value: text.to_owned(),
        })
}

fn parse_reason(text: &str) -> FlushReason {
    match text {
        "close" => FlushReason::Close,
        "interval" => FlushReason::Interval,
        "exit" => FlushReason::Exit,
        "idle" => FlushReason::Idle,
        "shutdown" => FlushReason::Shutdown,
        "send" => FlushReason::Send,
        _ => FlushReason::Unknown,
    }
}

impl Record<'_> {
    fn into_event(self) -> Result<Event, DecodeError> {
        if self.schema != SCHEMA {
            return Err(DecodeError::Schema(self.schema.into_owned()));
        }
        let action = self.action;
        Ok(Event {
            id: self.id.as_deref().map(parse_record_id).transpose()?,
            time: parse_time("time", &self.time)?,
            host: self.host.into_owned(),
            action,
            severity: self.severity,
            tier: self.tier,
            process: self.process.map(WireProcess::into_model).transpose()?,
            file: self.file.map(WireFile::into_model).transpose()?,
            access: self.access.map(|a| a.into_model(action)).transpose()?,
            exit: self.exit.map(|x| Exit::from_parts(x.code, x.signal)),
            sensor: self.sensor.map(sensor_from_object).transpose()?,
            policy: self.policy.map(|p| p.into_model(action)).transpose()?,
            target: self.target.map(WireTarget::into_model).transpose()?,
            detection: self.detection.map(WireDetection::into_model).transpose()?,
        })
    }
}

impl WireProcess<'_> {
    fn into_model(self) -> Result<Process, DecodeError> {
        let exe = match &self.exe {
            Some(exe) => Some(text_from("process.exe", exe, self.exe_escaped.as_deref())?),
            None => None,
        };
        let args = match &self.args_escaped {
            Some(escaped) => escaped
                .iter()
                .map(|a| text_from("process.args_escaped", a, Some(a)))
                .collect::<Result<_, _>>()?,
            None => self.args.iter().map(|a| Text::from(a.as_ref())).collect(),
        };
        let container = match (self.container_id, self.container_runtime) {
            (Some(id), Some(runtime)) => Some(Container {
                id: id.into_owned(),
                runtime: Runtime::from_name(&runtime).ok_or_else(|| DecodeError::Value {
                    field: "process.container_runtime",
                    value: runtime.into_owned(),
                })?,
                pod_uid: self.pod_uid.map(Cow::into_owned),
            }),
            _ => None,
        };
        let ancestors = self
            .ancestors
            .into_iter()
            .map(|a| {
                let exe = match &a.exe {
                    Some(exe) => Some(text_from(
                        "process.ancestors.exe",
                        exe,
                        a.exe_escaped.as_deref(),
                    )?),
                    None => None,
                };
                Ok(Ancestor {
                    pid: a.pid,
                    comm: a.comm.into_owned(),
                    exe,
                    gpu: a.gpu,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Process {
            pid: self.pid,
            tid: self.tid,
            ppid: self.ppid,
            uid: self.uid,
            gid: self.gid,
            comm: self.comm.into_owned(),
            exe,
            args,
            args_truncated: self.args_truncated,
            cgroup_id: self.cgroup_id,
            container,
            start_time: self
                .start_time
                .as_deref()
                .map(|t| parse_time("process.start_time", t))
                .transpose()?,
            gpu: self.gpu,
            ancestors,
            // Not in the native encoding.
            exe_id: None,
            parent_exe_id: None,
            cgroup_path: None,
        })
    }
}

impl WireFile<'_> {
    fn into_model(self) -> Result<File, DecodeError> {
        let path = match &self.path {
            Some(path) => Some(text_from("file.path", path, self.path_escaped.as_deref())?),
            None => None,
        };
        let derived_from = match self.derived_from {
            Some(d) => Some(DerivedFrom {
                path: d
                    .path
                    .as_deref()
                    .map(|p| text_from("file.derived_from.path", p, d.path_escaped.as_deref()))
                    .transpose()?,
                dev: parse_dev(&d.dev)?,
                ino: d.ino,
            }),
            None => None,
        };
        Ok(File {
            path,
            dev: parse_dev(&self.dev)?,
            ino: self.ino,
            size: self.size,
            derived_from,
        })
    }
}

impl WireAccess {
    fn into_model(self, action: Action) -> Result<Access, DecodeError> {
        let abi = match self.syscall_abi.as_deref() {
            None => SyscallAbi::Native,
            Some("ia32") => SyscallAbi::Ia32,
            Some(other) => {
                return Err(DecodeError::Value {
                    field: "access.syscall_abi",
                    value: other.to_owned(),
                });
            }
        };
        let fd = self.fd.ok_or(DecodeError::Missing("access.fd"));
        // A verdict or detection record carries the access that it judged:
        // its kind shows in which fields are present.
        let action = match action {
            Action::Alert
            | Action::WouldDeny
            | Action::WouldKill
            | Action::Denied
            | Action::Killed
            | Action::Detection => {
                if self.syscall.is_some() {
                    // Any tampering action: they decode alike.
                    Action::Truncate
                } else if self.send_syscall.is_some() {
                    Action::Send
                } else if self.destination.is_some() {
                    Action::Copy
                } else if self.method.is_some() {
                    Action::MemoryRead
                } else if self.opens.is_some() {
                    Action::OpenSummary
                } else if self.flags_raw.is_some() {
                    Action::Open
                } else if self.prot_raw.is_some() {
                    Action::Mmap
                } else if self.bytes.is_some() {
                    Action::Read
                } else {
                    Action::Close
                }
            }
            other => other,
        };
        let detail = match action {
            Action::Open => AccessDetail::Open {
                fd: fd?,
                flags: self
                    .flags_raw
                    .ok_or(DecodeError::Missing("access.flags_raw"))?,
            },
            Action::Close => AccessDetail::Close { fd: fd? },
            Action::Mmap => AccessDetail::Mmap {
                fd: fd?,
                prot: self
                    .prot_raw
                    .ok_or(DecodeError::Missing("access.prot_raw"))?,
                flags: self
                    .map_flags_raw
                    .ok_or(DecodeError::Missing("access.map_flags_raw"))?,
                offset: self.offset.ok_or(DecodeError::Missing("access.offset"))?,
                length: self.length.ok_or(DecodeError::Missing("access.length"))?,
                result: parse_result(
                    self.result
                        .as_deref()
                        .ok_or(DecodeError::Missing("access.result"))?,
                )?,
            },
            action if action.is_change() => {
                let state = |field: &'static str, s: WireState| -> Result<FileState, DecodeError> {
                    Ok(FileState {
                        ino: s.ino,
                        size: s.size,
                        mtime: s.mtime.map(|t| parse_time(field, &t)).transpose()?,
                    })
                };
                let text = |field, p: Option<String>, escaped: Option<String>| {
                    p.map(|p| text_from(field, &p, escaped.as_deref()))
                        .transpose()
                };
                let mode = self
                    .mode
                    .map(|m| {
                        u32::from_str_radix(&m, 8).map_err(|_| DecodeError::Value {
                            field: "access.mode",
                            value: m.clone(),
                        })
                    })
                    .transpose()?;
                let replaced = match self.replaced {
                    Some(r) => Some(Replaced {
                        path: text("access.replaced.path", r.path, r.path_escaped)?,
                        dev: parse_dev(&r.dev)?,
                        state: state(
                            "access.replaced.mtime",
                            WireState {
                                ino: r.ino,
                                size: r.size,
                                mtime: r.mtime,
                            },
                        )?,
                    }),
                    None => None,
                };
                AccessDetail::Change(Box::new(ChangeDetail {
                    syscall: self.syscall.ok_or(DecodeError::Missing("access.syscall"))?,
                    fd: self.fd,
                    flags: self.flags_raw,
                    mode,
                    uid: self.uid,
                    gid: self.gid,
                    length: self.length,
                    before: self
                        .before
                        .map(|s| state("access.before.mtime", s))
                        .transpose()?,
                    after: self
                        .after
                        .map(|s| state("access.after.mtime", s))
                        .transpose()?,
                    old_path: text("access.old_path", self.old_path, self.old_path_escaped)?,
                    new_path: text("access.new_path", self.new_path, self.new_path_escaped)?,
                    replaced,
                    file_type: self.file_type,
                    rdev: self.rdev.as_deref().map(parse_dev).transpose()?,
                    result: parse_result(
                        self.result
                            .as_deref()
                            .ok_or(DecodeError::Missing("access.result"))?,
                    )?,
                }))
            }
            Action::MemoryRead => {
                let summary = match (self.calls, self.first_time, self.last_time) {
                    (Some(calls), Some(first), Some(last)) => Some(MemorySummary {
                        calls,
                        reason: parse_reason(
                            self.reason
                                .as_deref()
                                .ok_or(DecodeError::Missing("access.reason"))?,
                        ),
                        first: parse_time("access.first_time", &first)?,
                        last: parse_time("access.last_time", &last)?,
                    }),
                    _ => None,
                };
                AccessDetail::Memory {
                    method: self.method.ok_or(DecodeError::Missing("access.method"))?,
                    bytes: self.bytes.ok_or(DecodeError::Missing("access.bytes"))?,
                    summary,
                }
            }
            Action::OpenSummary => {
                let time = |field, text: Option<String>| {
                    parse_time(field, &text.ok_or(DecodeError::Missing(field))?)
                };
                AccessDetail::OpenSummary(OpenSummary {
                    fd: self.fd,
                    opens: self.opens.ok_or(DecodeError::Missing("access.opens"))?,
                    closes: self.closes.ok_or(DecodeError::Missing("access.closes"))?,
                    flags: self
                        .flags_raw
                        .ok_or(DecodeError::Missing("access.flags_raw"))?,
                    reason: parse_reason(
                        self.reason
                            .as_deref()
                            .ok_or(DecodeError::Missing("access.reason"))?,
                    ),
                    first: time("access.first_time", self.first_time)?,
                    last: time("access.last_time", self.last_time)?,
                })
            }
            Action::Copy => AccessDetail::Copy(CopyDetail {
                fd: fd?,
                fd_out: self.fd_out.ok_or(DecodeError::Missing("access.fd_out"))?,
                syscall: self
                    .copy_syscall
                    .ok_or(DecodeError::Missing("access.copy_syscall"))?,
                bytes: self.bytes.ok_or(DecodeError::Missing("access.bytes"))?,
                destination: self
                    .destination
                    .ok_or(DecodeError::Missing("access.destination"))?
                    .into_model()?,
            }),
            Action::Send => AccessDetail::Send(SendDetail {
                fd: fd?,
                syscall: self
                    .send_syscall
                    .ok_or(DecodeError::Missing("access.send_syscall"))?,
                bytes: self.bytes.ok_or(DecodeError::Missing("access.bytes"))?,
                calls: self.calls.ok_or(DecodeError::Missing("access.calls"))?,
                destination: self
                    .destination
                    .ok_or(DecodeError::Missing("access.destination"))?
                    .into_model()?,
            }),
            Action::Read => {
                let time = |field, text: Option<String>| {
                    parse_time(field, &text.ok_or(DecodeError::Missing(field))?)
                };
                AccessDetail::Read(ReadSummary {
                    fd: self.fd,
                    bytes: self.bytes.ok_or(DecodeError::Missing("access.bytes"))?,
                    calls: self.calls.ok_or(DecodeError::Missing("access.calls"))?,
                    copies: self.copies.unwrap_or(0),
                    coverage: self
                        .coverage
                        .ok_or(DecodeError::Missing("access.coverage"))?,
                    reason: parse_reason(
                        self.reason
                            .as_deref()
                            .ok_or(DecodeError::Missing("access.reason"))?,
                    ),
                    first: time("access.first_time", self.first_time)?,
                    last: time("access.last_time", self.last_time)?,
                })
            }
            _ => return Err(DecodeError::Missing("a file action for access")),
        };
        Ok(Access { abi, detail })
    }
}

fn sensor_from_object(mut map: Map<String, Value>) -> Result<SensorStatus, DecodeError> {
    let number = |map: &Map<String, Value>, field: &'static str| {
        map.get(field)
            .and_then(Value::as_u64)
            .ok_or(DecodeError::Missing(field))
    };
    let mut status = SensorStatus {
        version: map
            .get("version")
            .and_then(Value::as_str)
            .ok_or(DecodeError::Missing("sensor.version"))?
            .to_owned(),
        pid: u32::try_from(number(&map, "pid")?).map_err(|_| DecodeError::Value {
            field: "sensor.pid",
            value: map["pid"].to_string(),
        })?,
        uptime_secs: number(&map, "uptime_secs")?,
        hooks_attached: number(&map, "hooks_attached")?,
        watched_files: number(&map, "watched_files")?,
        status_time: map
            .get("status_time")
            .and_then(Value::as_str)
            .map(|t| parse_time("sensor.status_time", t))
            .transpose()?,
        ..SensorStatus::default()
    };
    if let Some(Value::String(enforcement)) = map.remove("enforcement") {
        status.enforcement = Some(enforcement);
    }
    if let Some(Value::String(head)) = map.remove("store_head") {
        status.store_head = Some(head);
    }
    if let Some(Value::Array(list)) = map.remove("unconfirmed") {
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        status.unconfirmed = Some(
            list.iter()
                .map(|u| UnconfirmedIdentity {
                    root: text(u, "root").into(),
                    mount_point: text(u, "mount_point").into(),
                    fstype: text(u, "fstype"),
                    dev: text(u, "dev"),
                    reason: text(u, "reason"),
                })
                .collect(),
        );
    }
    if let Some(Value::Object(io_uring)) = map.remove("io_uring") {
        status.io_uring = Some(match io_uring.get("capture").and_then(Value::as_str) {
            Some("on") => IoUringCapture::On,
            Some("off") => IoUringCapture::Off {
                reason: io_uring
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            other => {
                return Err(DecodeError::Value {
                    field: "sensor.io_uring.capture",
                    value: format!("{other:?}"),
                });
            }
        });
    }
    if let Some(Value::Array(outputs)) = map.remove("sinks") {
        for o in outputs {
            status.outputs.push(OutputCounters {
                name: o["name"].as_str().unwrap_or_default().to_owned(),
                records_written: o["records_written"].as_u64().unwrap_or(0),
                write_failures: o["write_failures"].as_u64().unwrap_or(0),
                dropped: o["dropped"].as_u64().unwrap_or(0),
                queued: o["queued"].as_u64().unwrap_or(0),
                queued_bytes: o["queued_bytes"].as_u64().unwrap_or(0),
                spooled: o["spooled"].as_u64().unwrap_or(0),
                spool_bytes: o["spool_bytes"].as_u64().unwrap_or(0),
            });
        }
    }
    for (section, value) in map {
        if let Value::Object(counters) = value {
            let counters: BTreeMap<String, u64> = counters
                .into_iter()
                .filter_map(|(name, v)| v.as_u64().map(|v| (name, v)))
                .collect();
            status.counters.insert(section, counters);
        }
    }
    Ok(status)
}

#[cfg(test)]
pub(super) mod tests;
