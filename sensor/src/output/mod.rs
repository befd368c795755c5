//! Where records go: JSON lines on stdout or appended to a file. A record is
//! serialised once and handed to every sink; every failed write is counted
//! per sink and reported in the heartbeat, never dropped silently.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Stdout, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::event::Record;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create the directory {path} for the JSON lines output: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot open the JSON lines output {path}: {source} \
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

pub struct StdoutSink {
    out: BufWriter<Stdout>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Appends records to a file, one JSON object per line.
pub struct JsonlSink {
    name: String,
    out: BufWriter<File>,
}

impl JsonlSink {
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            name: format!("jsonl:{}", path.display()),
            out: BufWriter::with_capacity(64 * 1024, file),
        })
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Per-sink delivery counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub records_written: u64,
    pub write_failures: u64,
}

/// Every configured sink, fed one serialised record at a time.
pub struct Fanout {
    sinks: Vec<(Box<dyn Sink>, SinkStats)>,
    line: Vec<u8>,
    pub serialize_failures: u64,
}

impl Fanout {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        let sinks = sinks
            .into_iter()
            .map(|s| {
                let stats = SinkStats {
                    name: s.name().to_string(),
                    ..SinkStats::default()
                };
                (s, stats)
            })
            .collect();
        Self {
            sinks,
            line: Vec::with_capacity(4096),
            serialize_failures: 0,
        }
    }

    /// Serialises `record` and writes it to every sink.
    pub fn emit(&mut self, record: &Record) {
        self.line.clear();
        if let Err(err) = serde_json::to_writer(&mut self.line, record) {
            self.serialize_failures += 1;
            tracing::error!(error = %err, "cannot serialise a record; it is lost");
            return;
        }
        self.line.push(b'\n');
        for (sink, stats) in &mut self.sinks {
            match sink.write_line(&self.line) {
                Ok(()) => stats.records_written += 1,
                Err(err) => {
                    stats.write_failures += 1;
                    // First failure and then every 1000th, so a dead sink
                    // cannot flood the log.
                    if stats.write_failures % 1000 == 1 {
                        tracing::error!(sink = %stats.name, error = %err, failures = stats.write_failures, "record write failed; the record is lost for this sink");
                    }
                }
            }
        }
    }

    /// Flushes every sink; call after each batch.
    pub fn flush(&mut self) {
        for (sink, stats) in &mut self.sinks {
            if let Err(err) = sink.flush() {
                stats.write_failures += 1;
                if stats.write_failures % 1000 == 1 {
                    tracing::error!(sink = %stats.name, error = %err, "flush failed; buffered records may be lost");
                }
            }
        }
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks.iter().map(|(_, s)| s.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, SCHEMA, Severity};

    fn record() -> Record {
        Record {
            schema: SCHEMA,
            time: "2026-01-01T00:00:00.000000000Z".into(),
            host: "h".into(),
            action: Action::Heartbeat,
            severity: Severity::Info,
            tier: "tracepoint",
            process: None,
            file: None,
            access: None,
            exit: None,
            sensor: None,
        }
    }

    struct Broken;
    impl Sink for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn write_line(&mut self, _: &[u8]) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn jsonl_appends_one_object_per_line_and_failures_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/events.jsonl");
        let jsonl = JsonlSink::open(&path).expect("open");
        let mut fanout = Fanout::new(vec![Box::new(jsonl), Box::new(Broken)]);
        fanout.emit(&record());
        fanout.emit(&record());
        fanout.flush();
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(v["schema"], "weightwarden/1");
        assert_eq!(v["action"], "heartbeat");
        let stats = fanout.stats();
        assert_eq!(stats[0].records_written, 2);
        assert_eq!(stats[1].write_failures, 2);
    }

    #[test]
    fn unopenable_jsonl_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory cannot be opened for appending.
        let err = JsonlSink::open(dir.path()).err().expect("error");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
