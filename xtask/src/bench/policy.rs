//! The policies the policy rows run the sensor with (docs/policy.md), and
//! what its `policy_loaded` record says of the one it loaded.
//!
//! Both are enforce mode with `default = "deny"` and one `allow` rule, so
//! the benchmark measures the path every allowed access takes: the opener
//! judged by the fanotify thread, its reads decided from the kernel
//! tables, and nothing denied.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::bench::records;

/// `path` as a TOML basic string (quoted, with `"`, `\` and control
/// characters escaped). A path that is not UTF-8 has no TOML spelling.
pub fn toml_path(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8: a policy cannot name it", path.display()))?;
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

/// An enforce-mode policy with one weight set, `name`, covering
/// `weights` (a folder, recursively), which only the executable `allowed`
/// may open, read and map; everything else is denied.
pub fn enforce_allowing(name: &str, weights: &Path, allowed: &Path) -> Result<String> {
    ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{name:?} is not a bare TOML key"
    );
    Ok(format!(
        "mode = \"enforce\"\n\n\
         [weights.{name}]\n\
         paths = [{}]\n\
         default = \"deny\"\n\n\
         [[rules]]\n\
         name = \"the allowed reader\"\n\
         weights = [\"{name}\"]\n\
         exe = [{}]\n\
         operations = [\"open\", \"read\", \"mmap\"]\n\
         action = \"allow\"\n",
        toml_path(weights)?,
        toml_path(allowed)?,
    ))
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What a `policy_loaded` record says of the policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub mode: String,
    /// What carries the verdicts out: `fanotify+bpf_send_signal`,
    /// `bpf_lsm+fanotify`, ...
    pub mechanism: String,
    /// Files its weight sets cover.
    pub files: u64,
    pub files_unwatched: u64,
}

impl Loaded {
    /// The `policy` of a `policy_loaded` record; `None` for any other
    /// record, or one missing a field.
    pub fn from_record(record: &Value) -> Option<Self> {
        if record.get("action").and_then(Value::as_str) != Some("policy_loaded") {
            return None;
        }
        let policy = record.get("policy")?;
        let text = |key: &str| policy.get(key).and_then(Value::as_str).map(str::to_owned);
        let count = |key: &str| policy.get(key).and_then(Value::as_u64);
        Some(Self {
            mode: text("mode")?,
            mechanism: text("mechanism")?,
            files: count("files")?,
            files_unwatched: count("files_unwatched")?,
        })
    }

    /// Checks the sensor enforces a policy over at least `files` files of
    /// its watch set: what the figures claim to measure. (Files outside
    /// it, such as the 100k-file folder's `.complete` marker, are marked
    /// all the same, and not counted.)
    pub fn check_enforcing(&self, files: u64) -> Result<()> {
        if self.mode != "enforce" {
            bail!(
                "the sensor loaded the policy in {} mode, not enforce",
                self.mode
            );
        }
        let watched = self.files.saturating_sub(self.files_unwatched);
        if watched < files {
            bail!(
                "the sensor's policy covers {watched} watched files ({} in all), fewer than the \
                 {files} it should",
                self.files
            );
        }
        Ok(())
    }
}

/// The first `policy_loaded` record of the sensor's output at `path`,
/// waiting up to `timeout` for it to be written.
pub fn first_loaded(path: &Path, timeout: Duration) -> Result<Loaded> {
    let deadline = Instant::now() + timeout;
    let mut follow = records::Follow::from_start(path)?;
    loop {
        if let Some(record) = follow.poll(&["policy_loaded"])?.first() {
            return Loaded::from_record(record).with_context(|| {
                format!(
                    "a policy_loaded record in {} lacks a field: {record}",
                    path.display()
                )
            });
        }
        if Instant::now() > deadline {
            bail!(
                "{} holds no policy_loaded record {} s after start-up",
                path.display(),
                timeout.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_paths_for_toml() {
        assert_eq!(toml_path(Path::new("/m/a b")).unwrap(), "\"/m/a b\"");
        assert_eq!(
            toml_path(Path::new("/m/\"q\"\\x\n\u{7f}é")).unwrap(),
            "\"/m/\\\"q\\\"\\\\x\\u000A\\u007Fé\""
        );
        use std::os::unix::ffi::OsStrExt as _;
        let bad = std::ffi::OsStr::from_bytes(b"/m/\xff");
        assert!(toml_path(Path::new(bad)).is_err());
    }

    #[test]
    fn writes_an_enforce_policy_with_one_allowed_executable() {
        let text =
            enforce_allowing("bench", Path::new("/b/enforce"), Path::new("/t/xtask")).unwrap();
        assert_eq!(
            text,
            "mode = \"enforce\"\n\n\
             [weights.bench]\n\
             paths = [\"/b/enforce\"]\n\
             default = \"deny\"\n\n\
             [[rules]]\n\
             name = \"the allowed reader\"\n\
             weights = [\"bench\"]\n\
             exe = [\"/t/xtask\"]\n\
             operations = [\"open\", \"read\", \"mmap\"]\n\
             action = \"allow\"\n"
        );
        assert!(enforce_allowing("a b", Path::new("/b"), Path::new("/t")).is_err());
        assert!(enforce_allowing("", Path::new("/b"), Path::new("/t")).is_err());
    }

    /// A record as the sensor wrote it on this host.
    const LOADED: &str = r#"{"schema":"weightwarden/1","time":"2026-11-28T10:24:39.273925488Z","host":"vm","action":"policy_loaded","severity":"info","tier":"tracepoint","policy":{"sha256":"758fa2b2a9393c1236692d80a1c4f0851be26963ed5817b588c90ce22b4b0654","mode":"enforce","mechanism":"fanotify+bpf_send_signal","path":"policy.toml","weight_sets":1,"rules":1,"files":1,"files_unwatched":0,"warnings":0}}"#;

    #[test]
    fn reads_policy_loaded_records() {
        let record: Value = serde_json::from_str(LOADED).unwrap();
        let loaded = Loaded::from_record(&record).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                mode: "enforce".into(),
                mechanism: "fanotify+bpf_send_signal".into(),
                files: 1,
                files_unwatched: 0,
            }
        );
        loaded.check_enforcing(1).unwrap();
        assert!(loaded.check_enforcing(2).is_err());
        let audit = Loaded {
            mode: "audit".into(),
            ..loaded.clone()
        };
        assert!(audit.check_enforcing(1).is_err());
        let unwatched = Loaded {
            files: 3,
            files_unwatched: 1,
            ..loaded
        };
        unwatched.check_enforcing(2).unwrap();
        assert!(unwatched.check_enforcing(3).is_err());
        let other: Value = serde_json::from_str(r#"{"action":"sensor_start"}"#).unwrap();
        assert!(Loaded::from_record(&other).is_none());
        let partial: Value =
            serde_json::from_str(r#"{"action":"policy_loaded","policy":{"mode":"enforce"}}"#)
                .unwrap();
        assert!(Loaded::from_record(&partial).is_none());
    }

    #[test]
    fn finds_the_first_policy_loaded_of_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(
            &out,
            format!("{{\"action\":\"sensor_start\"}}\n{LOADED}\n{{\"action\":\"exec\"}}\n"),
        )
        .unwrap();
        let wait = Duration::from_millis(20);
        assert_eq!(
            first_loaded(&out, wait).unwrap().mechanism,
            "fanotify+bpf_send_signal"
        );
        std::fs::write(&out, "{\"action\":\"sensor_start\"}\n").unwrap();
        assert!(first_loaded(&out, wait).is_err());
        std::fs::write(&out, "{\"action\":\"policy_loaded\",\"policy\":{}}\n").unwrap();
        let err = first_loaded(&out, wait).unwrap_err();
        assert!(format!("{err:#}").contains("lacks a field"), "{err:#}");
    }
}
