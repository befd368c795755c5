//! Policy: which processes may open, read, map or write which weight sets,
//! and what happens otherwise (allow, alert, deny, kill). docs/policy.md
//! documents the file.
//!
//! As Tetragon keeps them apart, parsing (`file`), compiling into tables
//! (`compile`), deciding from the tables (`verdict`) and explaining
//! (`lint`) are separate; `judge` turns verdicts into records. The
//! mechanisms that carry verdicts out live in `decide/enforce/`; the
//! policy's life in the agent (load, reload, enforcement thread) is
//! `agent/policy.rs`.

pub mod compile;
pub mod file;
pub mod judge;
pub mod lint;
pub mod verdict;

use std::path::{Path, PathBuf};

pub use compile::{Finding, Level, Policy};
pub use file::{Mode, Operation, PolicyAction};
pub use verdict::{Subject, Verdict};

/// The policy in force, swapped whole on reload: readers (the judge, the
/// enforcement thread) take the current one per decision, so no access is
/// decided under half of one policy and half of another.
pub type SharedPolicy = std::sync::Arc<arc_swap::ArcSwap<Policy>>;

/// A policy file read, compiled and checked.
pub struct Checked {
    /// `None` when a finding is an error.
    pub policy: Option<Policy>,
    /// Errors and warnings, in file order.
    pub findings: Vec<Finding>,
}

/// Reads, compiles and checks the policy at `path`.
pub fn load(path: &Path) -> Result<Checked, file::ParseError> {
    let text = std::fs::read_to_string(path).map_err(|source| file::ParseError::Read {
        path: PathBuf::from(path),
        source,
    })?;
    let source = file::Source { path, text: &text };
    let parsed = file::parse(&source)?;
    let (policy, mut findings) = compile::compile(&parsed, &source);
    if let Some(policy) = &policy {
        findings.extend(lint::shadowed_rules(policy));
    }
    findings.sort_by_key(|f| f.location.as_ref().map(|l| (l.line, l.column)));
    Ok(Checked { policy, findings })
}
