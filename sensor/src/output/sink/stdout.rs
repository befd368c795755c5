//! `stdout`: records as lines on standard output, buffered, flushed after
//! each batch.

use std::io::{self, BufWriter, Stdout, Write};

use super::Sink;

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
