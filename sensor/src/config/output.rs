//! `[output] sinks` and `--output`: where records go, in which encoding,
//! and (for files) when they rotate — one string per output: `stdout` or
//! `jsonl:PATH`, then `?NAME=VALUE&...` options (docs/outputs.md).

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::output::encode::Format;

/// One output: where records go, in which encoding, and when its file
/// rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub sink: SinkSpec,
    pub format: Format,
    pub rotation: Option<Rotation>,
}

/// Where an output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// One record per line on standard output.
    Stdout,
    /// One record per line appended to the file at this path.
    Jsonl(PathBuf),
}

/// When a `jsonl:` file is moved aside for a new one (`PATH` → `PATH.1` →
/// ... → `PATH.KEEP`, the oldest dropped), always between two records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// When the next batch would take the file past this size.
    pub max_bytes: Option<u64>,
    /// When the agent has written to the file this long.
    pub max_age: Option<Duration>,
    /// Rotated files kept.
    pub keep: u32,
}

/// Rotated files kept when `keep` is not given.
pub const DEFAULT_KEEP: u32 = 5;
/// The most rotated files an output may keep.
const MAX_KEEP: u32 = 1000;

impl OutputSpec {
    /// Native records to standard output.
    pub fn stdout() -> Self {
        Self {
            sink: SinkSpec::Stdout,
            format: Format::Native,
            rotation: None,
        }
    }

    /// Native records to a JSON lines file.
    pub fn jsonl(path: impl Into<PathBuf>) -> Self {
        Self {
            sink: SinkSpec::Jsonl(path.into()),
            format: Format::Native,
            rotation: None,
        }
    }
}

/// The string forms [`OutputSpec`] accepts, for error messages.
pub const OUTPUT_FORMS: &str = "`stdout` or `jsonl:PATH`, e.g. `jsonl:/var/log/weightwarden/events.jsonl`, \
     optionally followed by `?format=native|ocsf|ecs` and, for files, `&rotate_size=SIZE` \
     (100MiB), `&rotate_age=AGE` (24h) and `&keep=N`";

/// Why an output spec string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputSpecError {
    #[error("invalid output {value:?}: expected {OUTPUT_FORMS}")]
    UnknownForm { value: String },
    #[error("invalid output {value:?}: the path after `jsonl:` is empty (expected {OUTPUT_FORMS})")]
    EmptyPath { value: String },
    #[error(
        "invalid output {value:?}: unknown format {format:?} (the formats are native, ocsf and ecs)"
    )]
    UnknownFormat { value: String, format: String },
    #[error(
        "invalid output {value:?}: unknown option {option:?} (outputs take format, and files \
         rotate_size, rotate_age and keep)"
    )]
    UnknownOption { value: String, option: String },
    #[error("invalid output {value:?}: {option}: {problem}")]
    BadOption {
        value: String,
        option: String,
        problem: String,
    },
}

/// `64MiB`, `100M`, `1G`, `4096`: bytes (K/M/G and KiB/MiB/GiB are both
/// powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `30s`, `90m`, `24h`, `7d`.
fn parse_age(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let secs: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

impl FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `?name=value&...` after the destination; a `?` in a path with no
        // such options after it is part of the path.
        let (destination, options) = match s.rsplit_once('?') {
            Some((destination, options))
                if !options.contains('/') && options.split('&').all(|o| o.contains('=')) =>
            {
                (destination, Some(options))
            }
            _ => (s, None),
        };
        let sink = if destination == "stdout" {
            SinkSpec::Stdout
        } else {
            match destination.strip_prefix("jsonl:") {
                Some("") => {
                    return Err(OutputSpecError::EmptyPath {
                        value: s.to_owned(),
                    });
                }
                Some(path) => SinkSpec::Jsonl(PathBuf::from(path)),
                None => {
                    return Err(OutputSpecError::UnknownForm {
                        value: s.to_owned(),
                    });
                }
            }
        };
        let bad = |option: &str, problem: &str| OutputSpecError::BadOption {
            value: s.to_owned(),
            option: option.to_owned(),
            problem: problem.to_owned(),
        };
        let mut format = Format::Native;
        let (mut max_bytes, mut max_age, mut keep) = (None, None, None);
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            match name {
                "format" => {
                    format =
                        Format::named(value).ok_or_else(|| OutputSpecError::UnknownFormat {
                            value: s.to_owned(),
                            format: value.to_owned(),
                        })?;
                }
                "rotate_size" => {
                    let bytes = parse_size(value).filter(|&b| b > 0).ok_or_else(|| {
                        bad(option, "give a size above 0 such as 100MiB, 512K or 1G")
                    })?;
                    max_bytes = Some(bytes);
                }
                "rotate_age" => {
                    let age = parse_age(value)
                        .filter(|a| !a.is_zero())
                        .ok_or_else(|| bad(option, "give an age above 0 such as 90m, 24h or 7d"))?;
                    max_age = Some(age);
                }
                "keep" => {
                    let n = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_KEEP).contains(n))
                        .ok_or_else(|| bad(option, "give 1 to 1000 rotated files to keep"))?;
                    keep = Some(n);
                }
                _ => {
                    return Err(OutputSpecError::UnknownOption {
                        value: s.to_owned(),
                        option: option.to_owned(),
                    });
                }
            }
        }
        let rotating = max_bytes.is_some() || max_age.is_some();
        if let Some(n) = keep.filter(|_| !rotating) {
            return Err(bad(
                &format!("keep={n}"),
                "keep says how many rotated files to keep: give rotate_size or rotate_age too",
            ));
        }
        if rotating && sink == SinkSpec::Stdout {
            return Err(bad(
                "rotate_size/rotate_age",
                "only jsonl: files rotate (standard output has no file to move)",
            ));
        }
        let rotation = rotating.then(|| Rotation {
            max_bytes,
            max_age,
            keep: keep.unwrap_or(DEFAULT_KEEP),
        });
        Ok(Self {
            sink,
            format,
            rotation,
        })
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Jsonl(path) => write!(f, "jsonl:{}", path.display()),
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut options = Vec::new();
        if self.format != Format::Native {
            options.push(format!("format={}", self.format.name()));
        }
        if let Some(r) = &self.rotation {
            if let Some(bytes) = r.max_bytes {
                options.push(format!("rotate_size={bytes}"));
            }
            if let Some(age) = r.max_age {
                options.push(format!("rotate_age={}s", age.as_secs()));
            }
            options.push(format!("keep={}", r.keep));
        }
        write!(f, "{}", self.sink)?;
        if !options.is_empty() {
            write!(f, "?{}", options.join("&"))?;
        }
        Ok(())
    }
}

impl Serialize for OutputSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Display is lossy for non-UTF-8 paths; writing a config that
        // silently names a different file would be worse than failing.
        if let SinkSpec::Jsonl(path) = &self.sink
            && path.to_str().is_none()
        {
            return Err(serde::ser::Error::custom(format!(
                "output path {} is not valid UTF-8 and cannot be written to TOML",
                path.display()
            )));
        }
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for OutputSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = OutputSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an output string, {OUTPUT_FORMS}")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<OutputSpec, E> {
                value.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_age_and_keep() {
        let spec: OutputSpec = "jsonl:/var/log/ww.jsonl?format=ocsf&rotate_size=64MiB&keep=3"
            .parse()
            .expect("spec");
        assert_eq!(spec.format, Format::Ocsf);
        assert_eq!(
            spec.rotation,
            Some(Rotation {
                max_bytes: Some(64 << 20),
                max_age: None,
                keep: 3
            })
        );
        let spec: OutputSpec = "jsonl:/x?rotate_age=24h".parse().expect("age");
        assert_eq!(
            spec.rotation,
            Some(Rotation {
                max_bytes: None,
                max_age: Some(Duration::from_secs(86_400)),
                keep: DEFAULT_KEEP
            })
        );
        // Written back in a form that reads the same.
        let again: OutputSpec = spec.to_string().parse().expect("round trip");
        assert_eq!(again, spec);
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1T"), None);
        for (text, says) in [
            ("jsonl:/x?rotate_size=0", "above 0"),
            ("jsonl:/x?rotate_size=lots", "100MiB"),
            ("jsonl:/x?rotate_age=1w", "24h"),
            ("jsonl:/x?keep=3", "give rotate_size or rotate_age too"),
            ("jsonl:/x?rotate_size=1M&keep=0", "1 to 1000"),
            ("stdout?rotate_size=1M", "only jsonl: files rotate"),
            ("jsonl:/x?compress=gzip", "unknown option \"compress=gzip\""),
        ] {
            let err = text.parse::<OutputSpec>().expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
