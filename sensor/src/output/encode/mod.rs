//! Encoders: one event in, one encoded record out. Each encoding is one
//! file here plus one line in [`Format`]; a sink receives records already
//! encoded in the format its output asked for.

pub mod ecs;
pub mod native;
pub mod ocsf;

use crate::event::Event;

/// Turns events into the bytes of one encoding.
pub trait Encoder: Send {
    /// The name used in output specs and logs (`native`).
    fn name(&self) -> &'static str;
    /// Appends the encoded record, with its record separator, to `out`.
    fn encode_wire(&mut self, wire: &Wire<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// [`Encoder::encode_wire`] for one event on its own.
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_wire(&Wire::of(event), out)
    }
}

/// An event and its native wire form, built once per record for every
/// encoding: OCSF and ECS take the native form's readable texts and pass
/// its detail objects through, so building it once spares each of them
/// the work (times, texts, process lists) again.
pub struct Wire<'a> {
    event: &'a Event,
    native: native::Record<'a>,
}

impl<'a> Wire<'a> {
    pub fn of(event: &'a Event) -> Self {
        Self {
            event,
            native: native::wire(event),
        }
    }

    pub fn event(&self) -> &'a Event {
        self.event
    }
}

/// A `send` record's detail, if this is one.
fn send(event: &Event) -> Option<&crate::event::SendDetail> {
    match event.access.as_ref().map(|a| &a.detail) {
        Some(crate::event::AccessDetail::Send(s)) => Some(s),
        _ => None,
    }
}

/// A send to a socket (network egress), not to a file or a pipe.
fn to_socket(event: &Event) -> bool {
    send(event).is_some_and(|s| s.destination.kind == crate::event::DestinationKind::Socket)
}

/// The access was refused, killed or failed: OCSF's status 2, ECS's
/// `failure` outcome.
fn failed(event: &Event) -> bool {
    use crate::event::Action;
    match event.action {
        Action::Denied | Action::Killed | Action::PolicyRejected => true,
        Action::Mmap => matches!(
            event.access.as_ref().map(|a| &a.detail),
            Some(crate::event::AccessDetail::Mmap { result, .. }) if *result < 0
        ),
        _ => false,
    }
}

/// `/usr/bin/cat` → `cat`.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Appends `record` as one line of JSON to `out`.
fn write_line(out: &mut Vec<u8>, record: &impl serde::Serialize) -> Result<(), EncodeError> {
    serde_json::to_writer(&mut *out, record).map_err(EncodeError::Json)?;
    out.push(b'\n');
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode a record as JSON")]
    Json(#[source] serde_json::Error),
}

/// The encodings an output may ask for (`?format=NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `weightwarden/1` JSON lines.
    #[default]
    Native,
    /// OCSF 1.2 classes (`ocsf.rs`).
    Ocsf,
    /// Elastic Common Schema 8 (`ecs.rs`).
    Ecs,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Native, Format::Ocsf, Format::Ecs];

    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Format::Native => Box::new(native::Native),
            Format::Ocsf => Box::new(ocsf::Ocsf),
            Format::Ecs => Box::new(ecs::Ecs),
        }
    }

    /// The name in output strings (`native`, `ocsf`, `ecs`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
        }
    }

    /// The format named `name`, if any.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}
