//! weightwarden's agent: loads the kernel programs, keeps the watched-inode
//! set current, turns kernel records into audit events and writes them.
//!
//! Folders follow the data, one way:
//!
//! ```text
//! kernel  -> enrich  -> decide  -> event  -> output (and store)
//! load,      process    policy,    the       encoders (native, ...)
//! maps,      table,     detectors  encoding- and sinks (stdout, jsonl, ...)
//! decode     watch set,            neutral
//!            coverage              model
//! ```
//!
//! `agent` only wires the stages together (start-up order, event loop,
//! health); `metrics` is the one counters registry every stage reports
//! into; `config` is the settings file and its defaults; `cli` holds one
//! file per subcommand. docs/architecture.md has a "where does X go" table.

pub mod agent;
pub mod cli;
pub mod config;
pub mod decide;
pub mod enrich;
pub mod event;
pub mod kernel;
pub mod lockfile;
pub mod metrics;
pub mod output;
pub mod store;

/// An error followed by its causes, `: `-separated: how errors are printed
/// and logged. Our messages name the operation and the fix and never
/// repeat their cause, which is always the `source`. Some of aya's errors
/// do print their cause in their own message as well (`map error: {0}`,
/// a program load's errno): such a cause is not printed a second time.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            // toml ends its multi-line messages with a newline.
            let text = cause.to_string().trim_end().to_owned();
            if !previous.contains(&text) {
                write!(f, ": {text}")?;
            }
            previous = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// Skips in unit tests follow the integration tests' rule (tests/src/lib.rs):
/// the skip is printed and logged to `$WEIGHTWARDEN_SKIP_LOG` for `cargo
/// xtask test`'s list, and under `CI=true` it fails unless `feature` is in
/// `$WEIGHTWARDEN_SKIP_ALLOW`.
#[cfg(test)]
pub(crate) fn test_skipped(feature: &str, reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let line = format!("{test}: {feature}: {reason}");
    eprintln!("skipped: {line}");
    if let Some(log) = std::env::var_os("WEIGHTWARDEN_SKIP_LOG") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{line}"));
        assert!(written.is_ok(), "cannot log the skip: {written:?}");
    }
    let allowed = std::env::var("WEIGHTWARDEN_SKIP_ALLOW")
        .unwrap_or_default()
        .split(',')
        .any(|f| f.trim() == feature);
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !in_ci || allowed,
        "CI=true and {feature} is not in WEIGHTWARDEN_SKIP_ALLOW: {line}"
    );
}
