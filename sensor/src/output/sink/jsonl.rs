//! `jsonl:PATH`: records appended to a file, one per line; the directory
//! is created when missing.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::Path,
};

use super::{Sink, SinkError};

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
