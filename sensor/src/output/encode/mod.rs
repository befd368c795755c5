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
    /// Appends the encoded `event`, with its record separator, to `out`.
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError>;
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
