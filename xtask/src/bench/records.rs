//! Reading what the sensor wrote: its JSON lines output (the `sensor_start`
//! and `sensor_stop` records and their counters, the audit store's among
//! them, how many records name a given file) and the RFC 3339 timestamps in it, turned into Unix
//! nanoseconds so latencies can be computed against the wall clock.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::Path,
};

use anyhow::{Context as _, Result};
use serde_json::Value;
use time::{
    OffsetDateTime, format_description::BorrowedFormatItem,
    format_description::well_known::Rfc3339, macros::format_description,
};

/// The first record of a JSON lines file, once its line is complete.
pub fn first_record(path: &Path) -> Result<Option<Value>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !line.ends_with('\n') {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .with_context(|| format!("the first line of {} is not JSON: {line}", path.display()))
}

/// What a JSON lines file holds about one watched file, plus the sensor's
/// last status record.
#[derive(Debug, Default)]
pub struct Scan {
    pub opens: u64,
    pub closes: u64,
    pub reads: u64,
    pub mmaps: u64,
    /// Policy verdicts on it: `alert`, `would_deny`, `would_kill`,
    /// `denied`, `killed`.
    pub verdicts: u64,
    pub lines: u64,
    /// The last `sensor_stop` (or, failing that, `heartbeat`) record.
    pub last_status: Option<Value>,
}

/// Counts the records about `file` in the sensor's output at `path`.
/// Lines are matched as text (the writer's field order puts `action`
/// before `file`), since an overload run writes gigabytes of them; only
/// status records are parsed.
pub fn scan(path: &Path, file: &Path) -> Result<Scan> {
    let reader = BufReader::with_capacity(
        1 << 20,
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let needle = path_needle(file);
    let mut scan = Scan::default();
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        scan.lines += 1;
        if let Some(action) = action_of(&line) {
            match action {
                "sensor_stop" | "heartbeat" => {
                    let record: Value = serde_json::from_str(&line).with_context(|| {
                        format!("a {action} record in {} is not JSON", path.display())
                    })?;
                    scan.last_status = Some(record);
                }
                _ if !line.contains(&needle) => {}
                "open" => scan.opens += 1,
                "close" => scan.closes += 1,
                // A process's repeated opens and closes of one file are
                // counted in the kernel: they arrive in open summaries.
                "open_summary" => {
                    let record: Value = serde_json::from_str(&line).with_context(|| {
                        format!("an open_summary record in {} is not JSON", path.display())
                    })?;
                    let count = |key: &str| record["access"][key].as_u64().unwrap_or(0);
                    scan.opens += count("opens");
                    scan.closes += count("closes");
                }
                "read" => scan.reads += 1,
                "mmap" => scan.mmaps += 1,
                "alert" | "would_deny" | "would_kill" | "denied" | "killed" => {
                    scan.verdicts += 1;
                }
                _ => {}
            }
        }
    }
    Ok(scan)
}

/// The last status record (`sensor_stop`, else the last `heartbeat`) of
/// the sensor's output at `path`.
pub fn last_status(path: &Path) -> Result<Option<Value>> {
    let reader = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut last = None;
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if matches!(action_of(&line), Some("sensor_stop" | "heartbeat")) {
            last = Some(line);
        }
    }
    last.map(|line| {
        serde_json::from_str(&line)
            .with_context(|| format!("a status record in {} is not JSON", path.display()))
    })
    .transpose()
}

/// Reads a JSON lines file as it grows: each [`Follow::poll`] returns the
/// records of the lines completed since the last one.
pub struct Follow {
    file: File,
    path: std::path::PathBuf,
    pending: Vec<u8>,
}

impl Follow {
    /// Follows the file at `path` from its first line.
    pub fn from_start(path: &Path) -> Result<Self> {
        Ok(Self {
            file: File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            path: path.to_path_buf(),
            pending: Vec::new(),
        })
    }

    /// Follows the file at `path` from its current end: only lines
    /// written from now on are returned.
    pub fn from_end(path: &Path) -> Result<Self> {
        let mut follow = Self::from_start(path)?;
        follow
            .file
            .seek(SeekFrom::End(0))
            .with_context(|| format!("cannot seek in {}", path.display()))?;
        Ok(follow)
    }

    /// The records whose `action` is one of `actions` among the lines
    /// completed since the last call (a line still being written waits
    /// for the next).
    pub fn poll(&mut self, actions: &[&str]) -> Result<Vec<Value>> {
        let mut chunk = [0u8; 1 << 16];
        loop {
            let n = self
                .file
                .read(&mut chunk)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            if n == 0 {
                break;
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .filter(|line| action_of(line).is_some_and(|a| actions.contains(&a)))
            .map(|line| {
                serde_json::from_str(line).with_context(|| {
                    format!("a record in {} is not JSON: {line}", self.path.display())
                })
            })
            .collect()
    }
}

/// `"path":"<file>"` as the sensor serialises it.
pub fn path_needle(file: &Path) -> String {
    let quoted = Value::String(file.to_string_lossy().into_owned()).to_string();
    format!("\"path\":{quoted}")
}

/// The `action` of a record line, read without parsing the line.
pub fn action_of(line: &str) -> Option<&str> {
    const KEY: &str = "\"action\":\"";
    let start = line.find(KEY)? + KEY.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// A counter of a status record (`sensor_start`, `heartbeat`,
/// `sensor_stop`) by its dotted path under `sensor`, e.g.
/// `kernel.ringbuf_full`.
pub fn counter(record: &Value, dotted: &str) -> Option<u64> {
    dotted
        .split('.')
        .try_fold(record.get("sensor")?, |value, key| value.get(key))?
        .as_u64()
}

/// The audit store's counters of a status record (`sensor.store`, present
/// when the agent keeps a store): what it committed and what it could not
/// keep, by reason (docs/store.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounters {
    pub records_written: u64,
    pub lost_queue_full: u64,
    pub lost_disk_full: u64,
    pub lost_write_error: u64,
    /// Records whose native encoding failed; agents before this counter
    /// have none (0).
    pub lost_encode_error: u64,
    pub pruned: u64,
}

impl StoreCounters {
    /// The `sensor.store` section of `record`; `None` when it has none
    /// (no store) or a counter is missing.
    pub fn of(record: &Value) -> Option<Self> {
        let c = |name: &str| counter(record, &format!("store.{name}"));
        Some(Self {
            records_written: c("records_written")?,
            lost_queue_full: c("lost_queue_full")?,
            lost_disk_full: c("lost_disk_full")?,
            lost_write_error: c("lost_write_error")?,
            lost_encode_error: c("lost_encode_error").unwrap_or(0),
            pruned: c("pruned")?,
        })
    }

    /// Records lost for the store, every reason.
    pub fn lost(&self) -> u64 {
        self.lost_queue_full + self.lost_disk_full + self.lost_write_error + self.lost_encode_error
    }

    /// `12 (queue full 10, write error 2)`: the losses by reason, the
    /// reasons that counted none left out.
    pub fn lost_by_reason(&self) -> String {
        let reasons: Vec<String> = [
            ("queue full", self.lost_queue_full),
            ("disk full", self.lost_disk_full),
            ("write error", self.lost_write_error),
            ("encode error", self.lost_encode_error),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {}", crate::bench::table::count(*n)))
        .collect();
        if reasons.is_empty() {
            "0".to_owned()
        } else {
            format!(
                "{} ({})",
                crate::bench::table::count(self.lost()),
                reasons.join(", ")
            )
        }
    }

    pub fn to_json(self) -> Value {
        serde_json::json!({
            "records_written": self.records_written,
            "lost_queue_full": self.lost_queue_full,
            "lost_disk_full": self.lost_disk_full,
            "lost_write_error": self.lost_write_error,
            "lost_encode_error": self.lost_encode_error,
            "pruned": self.pruned,
        })
    }
}

/// Unix time in nanoseconds of an RFC 3339 timestamp
/// (`2026-11-25T17:09:53.123456789Z`, or with a `+hh:mm`/`-hh:mm` offset).
pub fn parse_rfc3339_ns(text: &str) -> Option<i128> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time in seconds (the seconds
/// themselves if the year would not have four digits).
pub fn format_utc(unix_secs: i64) -> String {
    const FORMAT: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{unix_secs} s after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn parses_the_sensor_timestamps() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2026-11-25T17:09:53.123456789Z"),
            Some(1_795_626_593_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-25T17:09:53.5Z"),
            Some(1_795_626_593_500_000_000)
        );
        // An offset, either way, names the same instant.
        assert_eq!(
            parse_rfc3339_ns("2026-11-25T18:39:53.123456789+01:30"),
            Some(1_795_626_593_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_ns("2026-11-25T12:09:53.123456789-05:00"),
            Some(1_795_626_593_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_ns("1969-12-31T23:59:59Z"),
            Some(-1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2024-02-29T00:00:00Z"),
            Some(1_709_164_800 * 1_000_000_000)
        );
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T17:09:53",
            "2026-11-25T17:09:53.Z",
            "2026-13-25T17:09:53Z",
            "2023-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T17:09:53+0100",
            "2026-11-25T17:09:53Zjunk",
            "2026-1a-25T17:09:53Z",
            "2026-11-25T17:09:53.12é",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_dates_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(format_utc(1_709_164_800), "2024-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_795_626_593), "2026-11-25 17:09:53 UTC");
        assert_eq!(
            format_utc(i64::MAX),
            format!("{} s after the Unix epoch", i64::MAX)
        );
    }

    #[test]
    fn reads_actions_and_counters() {
        let line = r#"{"schema":"weightwarden/1","action":"sensor_stop","sensor":{"kernel":{"ringbuf_full":3},"sinks":[{"records_written":42}]}}"#;
        assert_eq!(action_of(line), Some("sensor_stop"));
        assert_eq!(action_of("{}"), None);
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(counter(&record, "kernel.ringbuf_full"), Some(3));
        assert_eq!(counter(&record, "kernel.missing"), None);
    }

    #[test]
    fn reads_the_store_counters() {
        let line = r#"{"action":"sensor_stop","sensor":{"store":{"records_written":900,"lost_queue_full":70,"lost_disk_full":0,"lost_write_error":3,"pruned":5,"size_bytes":65536}}}"#;
        let record: Value = serde_json::from_str(line).unwrap();
        let store = StoreCounters::of(&record).unwrap();
        assert_eq!(store.records_written, 900);
        assert_eq!(store.pruned, 5);
        assert_eq!(store.lost(), 73);
        assert_eq!(store.lost_by_reason(), "73 (queue full 70, write error 3)");
        // A newer agent's encode failures count too.
        let line = line.replace("\"pruned\"", "\"lost_encode_error\":2,\"pruned\"");
        let record: Value = serde_json::from_str(&line).unwrap();
        let store = StoreCounters::of(&record).unwrap();
        assert_eq!(store.lost(), 75);
        assert_eq!(
            store.lost_by_reason(),
            "75 (queue full 70, write error 3, encode error 2)"
        );
        assert_eq!(StoreCounters::default().lost_by_reason(), "0");
        assert_eq!(store.to_json()["lost_write_error"], 3);
        // No store, or a counter missing: none.
        let none: Value = serde_json::from_str(r#"{"sensor":{"kernel":{}}}"#).unwrap();
        assert_eq!(StoreCounters::of(&none), None);
        let partial: Value =
            serde_json::from_str(r#"{"sensor":{"store":{"records_written":1}}}"#).unwrap();
        assert_eq!(StoreCounters::of(&partial), None);
    }

    #[test]
    fn follows_a_growing_file_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "{\"action\":\"policy_loaded\",\"n\":1}\n").unwrap();
        let mut from_start = Follow::from_start(&out).unwrap();
        let mut from_end = Follow::from_end(&out).unwrap();
        assert_eq!(from_start.poll(&["policy_loaded"]).unwrap().len(), 1);
        assert!(from_end.poll(&["policy_loaded"]).unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        // A line half written is read once complete.
        write!(
            f,
            "{{\"action\":\"exec\"}}\n{{\"action\":\"policy_loaded\","
        )
        .unwrap();
        f.flush().unwrap();
        assert!(from_end.poll(&["policy_loaded"]).unwrap().is_empty());
        writeln!(f, "\"n\":2}}").unwrap();
        writeln!(f, "{{\"action\":\"policy_rejected\",\"n\":3}}").unwrap();
        let got = from_end
            .poll(&["policy_loaded", "policy_rejected"])
            .unwrap();
        let ns: Vec<u64> = got.iter().map(|r| r["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [2, 3]);
        assert!(from_end.poll(&["policy_loaded"]).unwrap().is_empty());
        writeln!(f, "{{\"action\":\"policy_loaded\",broken").unwrap();
        assert!(from_end.poll(&["policy_loaded"]).is_err());
        assert!(Follow::from_start(&dir.path().join("none")).is_err());
    }

    #[test]
    fn scans_records_about_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let mut f = File::create(&out).unwrap();
        let rec = |action: &str, path: &str| {
            format!(r#"{{"action":"{action}","file":{{"path":"{path}","ino":1}}}}"#)
        };
        for line in [
            r#"{"action":"sensor_start","sensor":{"watched_files":2}}"#.to_owned(),
            rec("open", "/m/a.safetensors"),
            rec("read", "/m/a.safetensors"),
            rec("close", "/m/a.safetensors"),
            rec("open", "/m/b.safetensors"),
            rec("denied", "/m/a.safetensors"),
            rec("would_kill", "/m/b.safetensors"),
            rec("open", "/m/a.safetensors.bak"),
            r#"{"action":"exec","process":{"pid":1}}"#.to_owned(),
            r#"{"action":"sensor_stop","sensor":{"kernel":{"ringbuf_full":0}}}"#.to_owned(),
        ] {
            writeln!(f, "{line}").unwrap();
        }
        drop(f);
        let scan = scan(&out, Path::new("/m/a.safetensors")).unwrap();
        assert_eq!(
            (scan.opens, scan.reads, scan.closes, scan.mmaps),
            (1, 1, 1, 0)
        );
        assert_eq!(scan.verdicts, 1);
        assert_eq!(scan.lines, 10);
        let stop = scan.last_status.unwrap();
        assert_eq!(counter(&stop, "kernel.ringbuf_full"), Some(0));
        assert_eq!(last_status(&out).unwrap(), Some(stop));

        let first = first_record(&out).unwrap().unwrap();
        assert_eq!(first["action"], "sensor_start");
        assert!(first_record(&dir.path().join("none")).unwrap().is_none());
        std::fs::write(dir.path().join("partial"), "{\"action\":").unwrap();
        assert!(first_record(&dir.path().join("partial")).unwrap().is_none());
    }
}
