//! Sinks: where encoded records go. Each destination is one file here plus
//! one line in [`open`].

mod jsonl;
mod stdout;

use std::{io, path::PathBuf};

pub use jsonl::JsonlSink;
pub use stdout::StdoutSink;

use crate::config::SinkSpec;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create the directory {path} for the JSON lines output")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot open the JSON lines output {path} \
         (check that the path is a writable file, or choose another with --output jsonl:PATH)"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One destination of serialised records.
pub trait Sink: Send {
    /// A short name for logs and counters (`stdout`, `jsonl:/path`).
    fn name(&self) -> &str;
    /// Writes one record line (with its trailing newline).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// Opens the destination an output spec names.
pub fn open(spec: &SinkSpec) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkSpec::Stdout => Box::new(StdoutSink::new()),
        SinkSpec::Jsonl(path) => Box::new(JsonlSink::open(path)?),
    })
}
