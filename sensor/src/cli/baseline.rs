//! `weightwarden baseline`: hashes every watched weight file (the roots and
//! extensions `run` would watch) into a manifest for `detect.baseline`.
//! Streaming SHA-256, one file per thread, with a progress bar on a
//! terminal. Exit 0 when every file was hashed, 1 when some could not be
//! (the manifest holds the rest and the errors are listed), 2 for bad
//! input.

use std::{
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use indicatif::{ProgressBar, ProgressStyle};

use super::{args::BaselineArgs, exit};
use crate::{
    Chain,
    config::{Config, DEFAULT_BASELINE, Overrides},
    decide::detect::integrity::{self, Entry, MANIFEST_SCHEMA, Manifest},
    enrich::watch::{OfflineMap, WatchSet, WatchSpec, key_at},
};

pub fn execute(args: &BaselineArgs) -> u8 {
    let config = match resolve(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::USAGE;
        }
    };
    super::run::init_logging("warn");
    let output = args
        .output
        .clone()
        .or_else(|| config.detect.baseline.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BASELINE));
    let watch = match WatchSet::new(
        WatchSpec {
            roots: config.watch.roots.clone(),
            roots_required: !args.watch.is_empty(),
            extensions: config.watch.extensions.clone(),
            gpu_patterns: Vec::new(),
            ..WatchSpec::default()
        },
        &mut OfflineMap,
    ) {
        Ok(watch) => watch,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::USAGE;
        }
    };
    let mut files: Vec<PathBuf> = watch.files().map(|(_, p)| p.to_owned()).collect();
    files.sort();
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let started = Instant::now();
    let (entries, errors) = hash_all(&files, jobs);
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.to_owned(),
        created: crate::enrich::clock::format_unix_ns(now_ns()),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        files: entries,
    };
    if let Err(err) = manifest.write(&output) {
        eprintln!("weightwarden: {}", Chain(&err));
        return exit::FAILURE;
    }
    for error in &errors {
        eprintln!("weightwarden: {error}");
    }
    eprintln!(
        "{} files, {bytes} bytes hashed in {:.1} s: {}{}",
        manifest.files.len(),
        started.elapsed().as_secs_f64(),
        output.display(),
        if errors.is_empty() {
            String::new()
        } else {
            format!(
                " ({} files could not be hashed and are not in it)",
                errors.len()
            )
        }
    );
    if errors.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn resolve(args: &BaselineArgs) -> Result<Config, crate::config::ConfigError> {
    let (mut config, _) = Config::load(args.config.as_deref())?;
    config.apply(Overrides {
        watch: args.watch.clone(),
        ..Overrides::default()
    });
    config.validate()?;
    Ok(config)
}

/// Every file's entry, and a message for each that could not be hashed.
fn hash_all(files: &[PathBuf], jobs: usize) -> (Vec<Entry>, Vec<String>) {
    let total: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    // indicatif draws only on a terminal.
    let bar = ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    let results = integrity::parallel(files, jobs, |path| entry(path, &bar));
    bar.finish_and_clear();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(error) => errors.push(error),
        }
    }
    (entries, errors)
}

/// One file's entry; an error when it cannot be read or changed while it
/// was hashed (its hash would match neither version).
fn entry(path: &Path, bar: &ProgressBar) -> Result<Entry, String> {
    let fail =
        |what: &str, err: &dyn std::fmt::Display| format!("{}: {what}: {err}", path.display());
    let before = std::fs::metadata(path).map_err(|e| fail("cannot stat", &e))?;
    let sha256 =
        integrity::hash_file(path, &|n| bar.inc(n)).map_err(|e| fail("cannot read", &e))?;
    let after = std::fs::metadata(path).map_err(|e| fail("cannot stat", &e))?;
    let changed = before.len() != after.len() || before.modified().ok() != after.modified().ok();
    if changed {
        return Err(fail(
            "changed while it was hashed",
            &"hash it again when it is settled",
        ));
    }
    let key = key_at(path, &after);
    Ok(Entry {
        path: path.to_owned(),
        dev: key.dev,
        ino: key.ino,
        size: after.len(),
        sha256,
    })
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
