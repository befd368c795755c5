//! Encoders: one event in, one encoded record out. Each encoding is one
//! file here plus one line in [`Format`]; a sink receives records already
//! encoded in the format its output asked for.

pub mod native;

use crate::event::Event;

/// Turns events into the bytes of one encoding.
pub trait Encoder: Send {
    /// The name used in output specs and logs (`native`).
    fn name(&self) -> &'static str;
    /// Appends the encoded `event`, with its record separator, to `out`.
    fn encode(&mut self, event: &Event, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode a record as JSON")]
    Json(#[source] serde_json::Error),
}

/// The encodings an output may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `weightwarden/1` JSON lines.
    #[default]
    Native,
}

impl Format {
    pub fn encoder(self) -> Box<dyn Encoder> {
        match self {
            Format::Native => Box::new(native::Native),
        }
    }
}
