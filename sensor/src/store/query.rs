//! `query`: which records match a responder's filter, as parameterised
//! SQL over the indexed columns (`schema.rs`), in time order, and each
//! match decoded with its record's bytes. A filter on who acted or on
//! which file picks their ids from `actors` or `files` first, then reads
//! those ids' records through `records_actor` or `records_file`.
//!
//! User values only ever travel as bound parameters; the SQL text is built
//! from fixed fragments, so a path glob like `x' OR 1=1 --` is a pattern
//! that matches no file, not a change to the statement.

use std::path::Path;

use rusqlite::{Connection, Row, types::Value};

use super::{StoreError, row::severity_name};
use crate::event::Severity;

/// What `query` selects: every field is ANDed, `None` (or empty) matches
/// all. Times are Unix ns, both ends inclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    /// SQLite GLOB on `path` (`*`, `?`, `[...]`; case-sensitive).
    pub path: Option<String>,
    pub weight_set: Option<String>,
    pub pid: Option<i64>,
    /// SQLite GLOB on `exe`.
    pub exe: Option<String>,
    pub uid: Option<i64>,
    /// A container id or a prefix of one (`docker ps` shows 12 digits).
    pub container: Option<String>,
    /// Any of these actions.
    pub actions: Vec<String>,
    /// This severity or a higher one.
    pub min_severity: Option<Severity>,
    pub detection: Option<String>,
    /// At most this many rows; `None`: all.
    pub limit: Option<u64>,
}

/// Every severity, lowest first.
pub const SEVERITIES: [Severity; 5] = [
    Severity::Info,
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// A statement and the values bound to its `?` placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<Value>,
}

/// The columns every reader selects from [`joined`], in
/// [`Found::from_row`]'s order.
pub const COLUMNS: &str = "r.seq, r.time_ns, r.action, r.severity, a.pid, a.start_ns, a.ppid, \
                           a.uid, a.comm, a.exe, a.container, f.path, r.weight_set, r.bytes, \
                           r.detection, r.record";

/// The records (`r`) with their actors (`a`) and files (`f`), read
/// through `index` if given (as the `audit` view, which cannot be told
/// which index to use).
pub fn joined(index: Option<&str>) -> String {
    let indexed = index.map_or(String::new(), |i| format!(" INDEXED BY {i}"));
    format!(
        "records r{indexed} LEFT JOIN actors a ON a.id = r.actor LEFT JOIN files f ON f.id = r.file"
    )
}

/// One matching record: the indexed columns, and the record's bytes as the
/// agent's outputs wrote them (newline included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub seq: i64,
    pub time_ns: i64,
    pub action: String,
    pub severity: String,
    pub pid: Option<i64>,
    pub pid_start_ns: Option<i64>,
    pub ppid: Option<i64>,
    pub uid: Option<i64>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub container: Option<String>,
    pub path: Option<String>,
    pub weight_set: Option<String>,
    pub bytes: Option<i64>,
    pub detection: Option<String>,
    pub record: Vec<u8>,
}

impl Found {
    /// Decodes a row selected with [`COLUMNS`].
    pub fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            time_ns: row.get(1)?,
            action: row.get(2)?,
            severity: row.get(3)?,
            pid: row.get(4)?,
            pid_start_ns: row.get(5)?,
            ppid: row.get(6)?,
            uid: row.get(7)?,
            comm: row.get(8)?,
            exe: row.get(9)?,
            container: row.get(10)?,
            path: row.get(11)?,
            weight_set: row.get(12)?,
            bytes: row.get(13)?,
            detection: row.get(14)?,
            record: row.get(15)?,
        })
    }
}

/// Escapes SQLite GLOB's special characters: `text` then matches itself.
pub fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// `WHERE` terms and their values, built from fixed fragments.
#[derive(Debug, Default)]
struct Terms {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Terms {
    fn push(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) {
        self.sql.push(sql.to_owned());
        self.params.extend(values);
    }

    /// `column IN (?, ?, ...)`, one placeholder per value.
    fn any_of(&mut self, column: &str, values: Vec<Value>) {
        let marks = vec!["?"; values.len()].join(", ");
        self.push(&format!("{column} IN ({marks})"), values);
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Filter {
    /// The statement selecting [`COLUMNS`] of the matching records, in
    /// time order (then the chain's). Each partial index's condition is
    /// spelt out (`path IS NOT NULL`, ...) so the planner may use it.
    pub fn sql(&self) -> Sql {
        let mut t = Terms::default();
        if let Some(since) = self.since_ns {
            t.push("r.time_ns >= ?", [Value::Integer(since)]);
        }
        if let Some(until) = self.until_ns {
            t.push("r.time_ns <= ?", [Value::Integer(until)]);
        }
        if let Some(glob) = &self.path {
            t.push(
                "r.file IN (SELECT id FROM files WHERE path GLOB ?)",
                [text(glob)],
            );
        }
        if let Some(set) = &self.weight_set {
            t.push("r.weight_set IS NOT NULL AND r.weight_set = ?", [text(set)]);
        }
        if let Some(pid) = self.pid {
            t.push(
                "r.actor IN (SELECT id FROM actors WHERE pid = ?)",
                [Value::Integer(pid)],
            );
        }
        if let Some(glob) = &self.exe {
            t.push(
                "r.actor IN (SELECT id FROM actors WHERE exe GLOB ?)",
                [text(glob)],
            );
        }
        if let Some(uid) = self.uid {
            t.push(
                "r.actor IN (SELECT id FROM actors WHERE uid = ?)",
                [Value::Integer(uid)],
            );
        }
        if let Some(id) = &self.container {
            let prefix = format!("{}*", glob_literal(id));
            t.push(
                "r.actor IN (SELECT id FROM actors WHERE container GLOB ?)",
                [text(&prefix)],
            );
        }
        if !self.actions.is_empty() {
            t.any_of("r.action", self.actions.iter().map(|a| text(a)).collect());
        }
        if let Some(min) = self.min_severity.filter(|s| *s > Severity::Info) {
            t.sql.push("r.severity <> 'info'".to_owned());
            let at_least = SEVERITIES.iter().filter(|s| **s >= min);
            t.any_of(
                "r.severity",
                at_least.map(|s| text(severity_name(*s))).collect(),
            );
        }
        if let Some(id) = &self.detection {
            t.push("r.detection IS NOT NULL AND r.detection = ?", [text(id)]);
        }
        let mut sql = format!("SELECT {COLUMNS} FROM {}", joined(self.index()));
        if !t.sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&t.sql.join(" AND "));
        }
        sql.push_str(" ORDER BY r.time_ns, r.seq");
        if let Some(limit) = self.limit {
            sql.push_str(" LIMIT ?");
            t.params
                .push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        Sql {
            text: sql,
            params: t.params,
        }
    }
}

impl Filter {
    /// The index the records are read through: a file's or an actor's,
    /// when the filter names files or actors. SQLite has no statistics
    /// here (a reader cannot `ANALYZE` a store it only reads) and, given a
    /// time window, prefers the time index, which holds every exec and
    /// exit on the host: far more than the records of one model's files,
    /// one executable or one container.
    fn index(&self) -> Option<&'static str> {
        if self.path.is_some() {
            Some("records_file")
        } else if self.pid.is_some()
            || self.exe.is_some()
            || self.uid.is_some()
            || self.container.is_some()
        {
            Some("records_actor")
        } else {
            None
        }
    }
}

/// Runs `filter` on the store at `path` (open in `conn`), handing each
/// match to `each` in order; returns how many there were. `each`'s error
/// (a closed pipe) stops the walk.
pub fn each<E: From<StoreError>>(
    conn: &Connection,
    path: &Path,
    filter: &Filter,
    mut each: impl FnMut(Found) -> Result<(), E>,
) -> Result<u64, E> {
    let at = |e| StoreError::at(path, e);
    let sql = filter.sql();
    let mut stmt = conn.prepare(&sql.text).map_err(at)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(sql.params))
        .map_err(at)?;
    let mut n = 0;
    while let Some(row) = rows.next().map_err(at)? {
        each(Found::from_row(row).map_err(at)?)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
