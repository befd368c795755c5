//! Sinks: where encoded records go. Each destination is one file here plus
//! one line in [`open`].
//!
//! A sink is handed whole batches of records and writes them with plain
//! `write(2)` calls, so that when a write fails the output knows exactly
//! which records went out and which were lost (a buffered writer would
//! report records as written that a later flush then lost).

mod jsonl;
mod stdout;

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    time::Duration,
};

pub use jsonl::JsonlSink;
pub use stdout::StdoutSink;

use crate::config::{Rotation, SinkSpec};

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
    #[error(
        "the JSON lines output {path} is a FIFO that no process reads: start its reader \
         first, or choose a file"
    )]
    FifoWithoutReader { path: PathBuf },
    #[error(
        "the file system of the JSON lines output {path} is full: free space there, or \
         choose another path"
    )]
    Full { path: PathBuf },
    #[error(
        "standard output is not open for writing (it was closed, or opened read-only): \
         give the agent a stdout, or choose another output with --output jsonl:PATH"
    )]
    StdoutUnusable,
}

/// A failed write: the bytes that went out before the error.
#[derive(Debug)]
pub struct WriteError {
    pub written: usize,
    pub source: io::Error,
}

/// One destination of encoded records.
pub trait Sink: Send {
    /// A short name for logs and counters (`stdout`, `jsonl:/path`).
    fn name(&self) -> &str;
    /// Writes `records` (whole lines) in full, or says how far it got.
    fn write(&mut self, records: &[u8]) -> Result<(), WriteError>;
    /// Opens the destination again (SIGHUP, after an external log
    /// rotation); a no-op where that means nothing.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The destination can never take a record again (a pipe whose
    /// reader has gone): the output stops trying.
    fn is_dead(&self) -> bool {
        false
    }
}

/// Opens the destination an output spec names, checked usable.
pub fn open(spec: &SinkSpec, rotation: Option<Rotation>) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match spec {
        SinkSpec::Stdout => Box::new(StdoutSink::open()?),
        SinkSpec::Jsonl(path) => Box::new(JsonlSink::open(path)?.rotating(rotation)),
    })
}

/// How long a write waits for a descriptor that is not ready (a
/// non-blocking pipe whose reader is slow) before it fails.
const NOT_READY_WAIT: Duration = Duration::from_secs(1);

/// `write(2)` until all of `bytes` went out; on an error, how many did.
pub(crate) fn write_fully(fd: impl AsFd, bytes: &[u8]) -> Result<(), WriteError> {
    let fd = fd.as_fd();
    let mut written = 0;
    while written < bytes.len() {
        match nix::unistd::write(fd, &bytes[written..]) {
            Ok(0) => {
                return Err(WriteError {
                    written,
                    source: io::Error::new(io::ErrorKind::WriteZero, "the write took no bytes"),
                });
            }
            Ok(n) => written += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) if wait_writable(fd.as_raw_fd()) => {}
            Err(errno) => {
                return Err(WriteError {
                    written,
                    source: io::Error::from(errno),
                });
            }
        }
    }
    Ok(())
}

/// Waits up to [`NOT_READY_WAIT`] for `fd` to take bytes.
fn wait_writable(fd: std::os::fd::RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = NOT_READY_WAIT.as_millis() as libc::c_int;
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}
