//! The policy file as written: TOML read into these types, every value
//! that a later check may complain about kept with its place in the file,
//! so that every error names the file, the line and the column.
//!
//! ```toml
//! mode = "enforce"             # or "audit" (the default)
//!
//! [weights.llama]
//! paths = ["/models/llama"]    # directories (recursive), files, globs
//! default = "deny"             # "allow" | "alert" | "kill" | "deny"
//!
//! [[rules]]
//! weights = ["llama"]          # names, or "*"
//! exe = ["/usr/bin/vllm"]
//! operations = ["open", "read", "mmap"]
//! action = "allow"
//! ```

use std::{collections::BTreeMap, fmt, ops::Range, path::Path};

use serde::Deserialize;
use toml::Spanned;

/// Audit logs what would be stopped and stops nothing; enforce stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Audit,
    Enforce,
}

/// What happens to an access, from the mildest to the strictest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Let it happen; the access is still recorded as usual.
    Allow,
    /// Let it happen and raise an `alert` record.
    Alert,
    /// Refuse it (`EPERM`), or kill where no refusal can reach.
    Deny,
    /// Kill the process (`SIGKILL`) before it gets the data.
    Kill,
}

impl PolicyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Allow => "allow",
            PolicyAction::Alert => "alert",
            PolicyAction::Deny => "deny",
            PolicyAction::Kill => "kill",
        }
    }
}

/// What a process does to a weight file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Open,
    Read,
    Mmap,
    /// Open for writing, truncate, rename over, unlink.
    Write,
    /// An in-kernel copy of the file's bytes elsewhere (`sendfile`,
    /// `splice`, `copy_file_range`, a reflink): also a `read`.
    Copy,
}

impl Operation {
    /// What a rule without `operations` covers: every read operation (a
    /// copy is a read unless a rule names `copy`).
    pub const READS: [Operation; 3] = [Operation::Open, Operation::Read, Operation::Mmap];
    pub const ALL: [Operation; 5] = [
        Operation::Open,
        Operation::Read,
        Operation::Mmap,
        Operation::Write,
        Operation::Copy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Read => "read",
            Operation::Mmap => "mmap",
            Operation::Write => "write",
            Operation::Copy => "copy",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub weights: BTreeMap<String, Spanned<WeightSetFile>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightSetFile {
    pub paths: Vec<Spanned<String>>,
    /// What happens to an access no rule decides; `alert` when absent.
    #[serde(default)]
    pub default: Option<PolicyAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Written on every record the rule decides.
    #[serde(default)]
    pub name: Option<String>,
    pub weights: Vec<Spanned<String>>,
    #[serde(default)]
    pub exe: Vec<Spanned<String>>,
    #[serde(default)]
    pub exe_sha256: Vec<Spanned<String>>,
    #[serde(default)]
    pub parent_exe: Vec<Spanned<String>>,
    #[serde(default)]
    pub uid: Vec<u32>,
    #[serde(default)]
    pub gid: Vec<u32>,
    #[serde(default)]
    pub user: Vec<Spanned<String>>,
    #[serde(default)]
    pub group: Vec<Spanned<String>>,
    #[serde(default)]
    pub container: Vec<Spanned<String>>,
    #[serde(default)]
    pub cgroup: Vec<Spanned<String>>,
    #[serde(default)]
    pub gpu: Option<bool>,
    #[serde(default)]
    pub operations: Option<Vec<Operation>>,
    pub action: PolicyAction,
}

/// A place in the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The text of a policy file, to turn byte spans into lines and columns.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// The 1-based line and column (in characters) where `span` starts.
    pub fn locate(&self, span: &Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location {
            file: self.path.display().to_string(),
            line,
            column,
        }
    }
}

/// Why a policy file could not be read as a policy at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read policy file {} (check the path and its permissions)", .path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// toml's message, the source, names the line and column, shows the
    /// line and, for an unknown key, the keys allowed there.
    #[error("{location}: the policy file is not valid (see docs/policy.md for every key)")]
    Syntax {
        location: Location,
        #[source]
        source: Box<toml::de::Error>,
    },
}

/// Parses the text of a policy file.
pub fn parse(source: &Source<'_>) -> Result<PolicyFile, ParseError> {
    toml::from_str(source.text).map_err(|source_err: toml::de::Error| ParseError::Syntax {
        location: source.locate(&source_err.span().unwrap_or(0..0)),
        source: Box::new(source_err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source<'_> {
        Source {
            path: Path::new("/etc/ww/policy.toml"),
            text,
        }
    }

    #[test]
    fn the_documented_minimum_shape_parses() {
        let text = r#"
mode = "enforce"

[weights.llama]
paths = ["/models/llama"]
default = "deny"

[[rules]]
weights = ["llama"]
exe = ["/usr/bin/vllm"]
operations = ["open", "read", "mmap"]
action = "allow"
"#;
        let policy = parse(&source(text)).expect("parse");
        assert_eq!(policy.mode, Mode::Enforce);
        let llama = policy.weights["llama"].get_ref();
        assert_eq!(llama.default, Some(PolicyAction::Deny));
        assert_eq!(llama.paths[0].get_ref(), "/models/llama");
        let rule = policy.rules[0].get_ref();
        assert_eq!(rule.action, PolicyAction::Allow);
        assert_eq!(rule.operations.as_deref(), Some(&Operation::READS[..]));
        // Spans lead back to the text.
        assert_eq!(source(text).locate(&rule.exe[0].span()).line, 10);
    }

    #[test]
    fn mode_defaults_to_audit_and_unknown_keys_are_located() {
        let policy = parse(&source("")).expect("empty policy");
        assert_eq!(policy.mode, Mode::Audit);
        let err =
            parse(&source("[[rules]]\nweights = [\"*\"]\nacton = \"deny\"\n")).expect_err("typo");
        let ParseError::Syntax { location, source } = &err else {
            panic!("{err}");
        };
        assert_eq!((location.line, location.column), (3, 1));
        assert!(source.to_string().contains("acton"), "{source}");
        assert!(
            err.to_string().starts_with("/etc/ww/policy.toml:3:1: "),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_located() {
        let err = parse(&source("mode = \"enforcing\"\n")).expect_err("mode");
        let ParseError::Syntax { location, .. } = err else {
            panic!("wrong error");
        };
        assert_eq!((location.line, location.column), (1, 8));
    }

    #[test]
    fn columns_count_characters() {
        let text = "# ü\nx = \"é\"  y";
        let at = text.find('y').expect("y");
        let location = source(text).locate(&(at..at + 1));
        assert_eq!((location.line, location.column), (2, 10));
    }
}
