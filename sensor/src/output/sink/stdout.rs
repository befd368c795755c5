//! `stdout`: records as lines on standard output, a batch per write.
//!
//! When the reader of a pipe on stdout goes away (`weightwarden run |
//! head -1`), the output is dead for good: no reader can come back to
//! that pipe. The agent goes on (capture, the store and the other outputs
//! are unaffected), counts stdout's records as lost, warns, and exits 3 at
//! its stop (docs/outputs.md).

use std::{io, os::fd::AsFd};

use super::{Batch, Sink, SinkError, WriteError, Written, write_fully};

pub struct StdoutSink {
    /// Its reader has gone (`EPIPE`).
    broken: bool,
}

impl StdoutSink {
    /// Standard output, checked open for writing.
    pub fn open() -> Result<Self, SinkError> {
        let stdout = io::stdout();
        let mode = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map(|flags| flags & libc::O_ACCMODE)
            .map_err(|_| SinkError::StdoutUnusable)?;
        if mode != libc::O_WRONLY && mode != libc::O_RDWR {
            return Err(SinkError::StdoutUnusable);
        }
        Ok(Self { broken: false })
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn write(&mut self, batch: &Batch) -> Result<Written, WriteError> {
        if self.broken {
            return Err(WriteError::lost(
                0,
                io::Error::from(io::ErrorKind::BrokenPipe),
            ));
        }
        match write_fully(io::stdout().as_fd(), &batch.bytes) {
            Ok(()) => Ok(Written::default()),
            Err(err) => {
                self.broken = err.source.kind() == io::ErrorKind::BrokenPipe;
                Err(WriteError::lost(
                    batch.whole_within(err.written),
                    err.source,
                ))
            }
        }
    }

    fn is_dead(&self) -> bool {
        self.broken
    }
}
