//! Sinks: where encoded records go. Each destination is one file here plus
//! one line in [`open`].
//!
//! A sink is handed whole batches of records, already framed for it
//! (`output/frame.rs`), and says exactly which went out: local sinks write
//! with plain `write(2)` calls (a buffered writer would report records as
//! written that a later flush then lost), network sinks report what their
//! destination acknowledged or, failing that, what the transport took.

mod http;
mod jsonl;
mod stdout;
mod syslog;
mod tls;

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    time::Duration,
};

pub use http::HttpSink;
pub use jsonl::JsonlSink;
pub use stdout::StdoutSink;
pub use syslog::SyslogSink;

use crate::config::{OutputSpec, SinkSpec};

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
    #[error(
        "cannot read the CA certificates {path} of the output {output} (ca=PATH takes a PEM file)"
    )]
    CaFile {
        output: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the CA file {path} of the output {output} holds no PEM certificate")]
    CaEmpty { output: String, path: PathBuf },
    #[error("cannot read the secret file {path} of the output {output}")]
    SecretFile {
        output: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the output {output} cannot be set up: {problem}")]
    Setup { output: String, problem: String },
}

/// Records framed for one sink, back to back, and where each ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
}

impl Batch {
    pub fn records(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends one framed record.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
    }

    /// Appends every record of `other`.
    pub fn append(&mut self, other: &Batch) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    /// Record `i`'s bytes.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// How many records lie wholly within the first `bytes` bytes.
    pub fn whole_within(&self, bytes: usize) -> usize {
        self.ends.iter().take_while(|&&end| end <= bytes).count()
    }

    /// The first `n` records, as a batch of their own.
    pub fn head(&self, n: usize) -> Batch {
        let end = if n == 0 { 0 } else { self.ends[n - 1] };
        Batch {
            bytes: self.bytes[..end].to_vec(),
            ends: self.ends[..n].to_vec(),
        }
    }

    /// The records from `first` on, as a batch of their own.
    pub fn tail(&self, first: usize) -> Batch {
        let start = if first == 0 { 0 } else { self.ends[first - 1] };
        Batch {
            bytes: self.bytes[start..].to_vec(),
            ends: self.ends[first..].iter().map(|end| end - start).collect(),
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// A batch that did not all go out.
#[derive(Debug)]
pub struct WriteError {
    /// The leading records that did (whole).
    pub delivered: usize,
    pub source: io::Error,
    /// The destination may take the rest later (a network peer that is
    /// down): the output keeps them (its spool) and tries again. Otherwise
    /// they are lost.
    pub retry: bool,
    /// Of the `delivered` records, those the destination refused for good.
    pub rejected: usize,
}

impl WriteError {
    /// A local write that failed after `delivered` records: not retried.
    pub fn lost(delivered: usize, source: io::Error) -> Self {
        Self {
            delivered,
            source,
            retry: false,
            rejected: 0,
        }
    }

    /// A destination that failed after `delivered` records; try the rest
    /// again later.
    pub fn retry(delivered: usize, source: io::Error) -> Self {
        Self {
            delivered,
            source,
            retry: true,
            rejected: 0,
        }
    }
}

/// A batch the destination took, except records it refused for good
/// (malformed for it, say): those are counted lost, never retried.
#[derive(Debug, Default)]
pub struct Written {
    pub rejected: usize,
    /// The destination's reason for the first refusal.
    pub reason: Option<String>,
}

/// One destination of encoded records.
pub trait Sink: Send {
    /// A short name for logs, counters and the spool directory
    /// (`stdout`, `jsonl:/path`, `syslog:tcp://host:514`); never holds a
    /// secret.
    fn name(&self) -> &str;
    /// Writes `batch` in full, or says how far it got.
    fn write(&mut self, batch: &Batch) -> Result<Written, WriteError>;
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

/// Opens the destination an output spec names, checked usable. Network
/// destinations are not contacted here: one that is down at start-up is
/// spooled for like one that goes down later.
pub fn open(spec: &OutputSpec) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match &spec.sink {
        SinkSpec::Stdout => Box::new(StdoutSink::open()?),
        SinkSpec::Jsonl(path) => Box::new(JsonlSink::open(path)?.rotating(spec.rotation)),
        SinkSpec::Syslog(to) => Box::new(SyslogSink::open(to, &spec.tls)?),
        SinkSpec::Http(to) => Box::new(HttpSink::open(to, &spec.tls)?),
    })
}

/// How long a write waits for a descriptor that is not ready (a
/// non-blocking pipe whose reader is slow) before it fails.
const NOT_READY_WAIT: Duration = Duration::from_secs(1);

/// A failed `write(2)`: the bytes that went out before the error.
#[derive(Debug)]
pub(crate) struct PartialWrite {
    pub written: usize,
    pub source: io::Error,
}

/// `write(2)` until all of `bytes` went out; on an error, how many did.
pub(crate) fn write_fully(fd: impl AsFd, bytes: &[u8]) -> Result<(), PartialWrite> {
    let fd = fd.as_fd();
    let mut written = 0;
    while written < bytes.len() {
        match nix::unistd::write(fd, &bytes[written..]) {
            Ok(0) => {
                return Err(PartialWrite {
                    written,
                    source: io::Error::new(io::ErrorKind::WriteZero, "the write took no bytes"),
                });
            }
            Ok(n) => written += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) if wait_writable(fd.as_raw_fd()) => {}
            Err(errno) => {
                return Err(PartialWrite {
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
