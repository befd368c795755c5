//! How the store's reading subcommands print rows: an aligned table for
//! people, CSV for spreadsheets, or the records themselves as JSON lines,
//! byte for byte as the agent's outputs wrote them (so a `query --json`
//! is interchangeable with the SIEM's copy). JSON and CSV stream; a table
//! needs every row to align them.
//!
//! Output goes to stdout through one buffer; a reader that closes the
//! pipe (`| head`) ends the command quietly, as ripgrep does.

use std::io::{self, BufWriter, IsTerminal, StdoutLock, Write};

use tabled::{
    builder::Builder,
    settings::{Padding, Style, style::HorizontalLine},
};

use super::{args::FormatArgs, exit};
use crate::{Chain, store::StoreError};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl FormatArgs {
    /// The format asked for; else a table on a terminal and JSON lines for
    /// a program.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.csv {
            Format::Csv
        } else if self.table {
            Format::Table
        } else {
            default_format()
        }
    }
}

/// A table when a person reads stdout, JSON when a program does.
pub fn default_format() -> Format {
    if io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    }
}

/// Rows on their way to stdout.
pub struct Listing {
    format: Format,
    table: Builder,
    rows: u64,
    out: BufWriter<StdoutLock<'static>>,
}

impl Listing {
    /// Starts a listing with these column headers (CSV writes them now).
    pub fn start(format: Format, headers: &[&str]) -> io::Result<Self> {
        let mut out = BufWriter::new(io::stdout().lock());
        let mut table = Builder::new();
        match format {
            Format::Csv => out.write_all(csv_line(headers).as_bytes())?,
            Format::Table => table.push_record(headers.iter().copied()),
            Format::Json => {}
        }
        Ok(Self {
            format,
            table,
            rows: 0,
            out,
        })
    }

    /// Adds a record: its own bytes for JSON, else the cells `cells` makes.
    pub fn push(&mut self, record: &[u8], cells: impl FnOnce() -> Vec<String>) -> io::Result<()> {
        self.rows += 1;
        match self.format {
            Format::Json => self.out.write_all(record),
            Format::Csv => self.out.write_all(csv_line(&cells()).as_bytes()),
            Format::Table => {
                self.table.push_record(cells());
                Ok(())
            }
        }
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes what is left (a table) and flushes; returns the row count.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.format == Format::Table && self.rows > 0 {
            self.out.write_all(aligned(self.table).as_bytes())?;
        }
        self.out.flush()?;
        Ok(self.rows)
    }
}

/// Columns padded to their widest cell, two spaces apart, a rule under
/// the headers; no trailing spaces.
pub fn aligned(table: Builder) -> String {
    let mut table = table.build();
    table
        .with(Style::blank().horizontals([(1, HorizontalLine::new('-').intersection(' '))]))
        .with(Padding::new(0, 1, 0, 0));
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table of `headers` and `rows`, [`aligned`].
pub fn table_of(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut b = Builder::new();
    b.push_record(headers.iter().copied());
    for row in rows {
        b.push_record(row);
    }
    aligned(b)
}

/// One CSV line (RFC 4180 quoting): a field with a comma, quote, CR or LF
/// is quoted, its quotes doubled. Lines end in LF, not the RFC's CRLF:
/// every CSV reader takes it, and `cut`/`awk` see no stray CR.
pub fn csv_line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let cell = cell.as_ref();
        if cell.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(cell);
        }
    }
    line.push('\n');
    line
}

/// Why a listing stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Reading the store failed (a damaged page found mid-way, ...).
    Store(StoreError),
    /// Writing stdout failed.
    Write(io::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::Write(e)
    }
}

impl Failure {
    /// Says what failed on stderr; the exit status. A closed pipe is no
    /// failure: `| head` stops reading on purpose.
    pub fn status(self) -> u8 {
        match self {
            Failure::Write(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
            Failure::Write(e) => {
                eprintln!("weightwarden: cannot write to stdout: {e}");
                exit::FAILURE
            }
            Failure::Store(e) => {
                eprintln!("weightwarden: {}", Chain(&e));
                exit::USAGE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_line(&["a", "b c", ""]), "a,b c,\n");
        assert_eq!(
            csv_line(&["x,y", "say \"hi\"", "two\nlines", "cr\r"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\"\n"
        );
        assert_eq!(csv_line::<&str>(&[]), "\n");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let text = table_of(
            &["time", "action", "path"],
            [
                vec!["t1".into(), "read".into(), "/m/a".into()],
                vec!["t22".into(), "open".into(), String::new()],
            ],
        );
        assert_eq!(
            text,
            "time  action  path\n\
             ----- ------- -----\n\
             t1    read    /m/a\n\
             t22   open\n"
        );
    }
}
