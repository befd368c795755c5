//! `cargo xtask test`: the whole suite, as CI runs it (`.ci/run`). Stages
//! run cheapest first and the first failure stops the run, reporting which
//! stages passed and how long each took.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{args::TestArgs, process, setup, workspace::Workspace};

pub fn execute(ws: &Workspace, args: &TestArgs) -> Result<()> {
    let mut stages = Stages::default();
    stages.run("setup", || setup::execute(ws))?;
    stages.run("fmt", || {
        process::run(ws.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    stages.run("clippy", || {
        // The eBPF object is only embedded, never inspected, by clippy: an
        // empty stub saves building it here.
        process::run(
            ws.cargo()
                .env("AYA_BUILD_SKIP", "1")
                .arg("clippy")
                .args(package_args(&["sensor", "sensor-common", "xtask", "tests"]))
                .args(["--all-targets", "--", "-D", "warnings"]),
        )
    })?;
    stages.run("unit tests", || {
        with_skip_log(ws, "unit tests", |skip_log| {
            process::run(
                ws.cargo()
                    .env(SKIP_LOG_ENV, skip_log)
                    .arg("test")
                    .args(package_args(&["sensor", "sensor-common", "xtask"])),
            )
        })
    })?;
    stages.run("integration tests", || {
        if !process::is_root() {
            bail!(
                "the integration tests load eBPF programs and must run as root \
                 (the stages before them passed without it)"
            );
        }
        // The tests drive the real `weightwarden` binary, which `cargo
        // test` does not build for another package.
        process::run(ws.cargo().args(["build", "-p", "sensor"]))?;
        with_skip_log(ws, "integration tests", |skip_log| {
            // One thread: the tests attach programs to the same kernel hooks
            // and read shared maps, so they must not overlap.
            process::run(
                ws.cargo()
                    .env(SKIP_LOG_ENV, skip_log)
                    .args(["test", "-p", "tests", "--", "--test-threads=1"])
                    .args(&args.args),
            )
        })
    })?;
    eprintln!("xtask test: every stage passed: {}", stages.summary());
    Ok(())
}

/// The env var skipped tests append a line to (tests/src/lib.rs
/// `skipped`, and `test_skipped` in the sensor's unit tests).
const SKIP_LOG_ENV: &str = "WEIGHTWARDEN_SKIP_LOG";

/// Runs a test stage with a fresh skip log, then prints the skipped tests,
/// whether the stage passed or not.
fn with_skip_log(
    ws: &Workspace,
    stage: &str,
    run: impl FnOnce(&std::path::Path) -> Result<()>,
) -> Result<()> {
    let file = format!("weightwarden-skipped-{}.txt", stage.replace(' ', "-"));
    let skip_log = ws.target_dir()?.join(file);
    match std::fs::remove_file(&skip_log) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(
                anyhow::Error::new(err).context(format!("cannot clear {}", skip_log.display()))
            );
        }
        _ => {}
    }
    let result = run(&skip_log);
    let skipped = std::fs::read_to_string(&skip_log).unwrap_or_default();
    eprintln!("{}", skip_report(stage, &skipped));
    result
}

/// What `cargo xtask test` prints about a stage's skipped tests, from the
/// skip log's lines (`test: feature: reason`).
fn skip_report(stage: &str, log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return format!("==> {stage}: no test skipped");
    }
    let mut report = format!(
        "==> {stage}: {} SKIPPED (this host lacks what they need; \
         under CI=true a skip fails unless its feature is in WEIGHTWARDEN_SKIP_ALLOW):",
        lines.len()
    );
    for line in lines {
        report.push_str("\n    skipped: ");
        report.push_str(line);
    }
    report
}

/// `-p NAME` for each package.
fn package_args<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages.iter().flat_map(|p| ["-p", *p]).collect()
}

/// The stages that passed so far, with their durations.
#[derive(Default)]
struct Stages {
    passed: Vec<(&'static str, Duration)>,
    started: Option<Instant>,
}

impl Stages {
    fn run(&mut self, name: &'static str, stage: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("==> {name}");
        let start = Instant::now();
        self.started.get_or_insert(start);
        let result = stage();
        let took = start.elapsed();
        match result {
            Ok(()) => {
                eprintln!("==> {name}: passed in {}", seconds(took));
                self.passed.push((name, took));
                Ok(())
            }
            Err(err) => {
                let before = if self.passed.is_empty() {
                    "no stage passed before it".to_owned()
                } else {
                    format!("passed before it: {}", self.summary())
                };
                Err(err.context(format!(
                    "stage `{name}` failed after {}; {before}",
                    seconds(took)
                )))
            }
        }
    }

    fn summary(&self) -> String {
        let stages = self
            .passed
            .iter()
            .map(|(name, took)| format!("{name} ({})", seconds(*took)))
            .collect::<Vec<_>>()
            .join(", ");
        match self.started {
            Some(start) => format!("{stages}; {} in all", seconds(start.elapsed())),
            None => stages,
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_first_failure_and_names_what_passed() {
        let mut stages = Stages::default();
        assert!(stages.run("first", || Ok(())).is_ok());
        let err = match stages.run("second", || bail!("boom")) {
            Ok(()) => panic!("a failing stage must fail the run"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.starts_with("stage `second` failed after "), "{err}");
        assert!(err.contains("passed before it: first ("), "{err}");
        assert!(err.ends_with(": boom"), "{err}");
        assert_eq!(stages.passed.len(), 1);
    }

    #[test]
    fn a_first_stage_failure_says_nothing_passed() {
        let mut stages = Stages::default();
        let err = match stages.run("only", || bail!("boom")) {
            Ok(()) => panic!("a failing stage must fail the run"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("no stage passed before it"), "{err}");
    }

    #[test]
    fn skip_report_lists_every_skipped_test_or_says_none() {
        assert_eq!(
            skip_report("integration tests", ""),
            "==> integration tests: no test skipped"
        );
        let report = skip_report(
            "integration tests",
            "a: ia32: no int80\nb: cgroup2: none mounted\n",
        );
        assert!(report.contains("2 SKIPPED"), "{report}");
        assert!(
            report.contains("\n    skipped: a: ia32: no int80"),
            "{report}"
        );
        assert!(
            report.ends_with("\n    skipped: b: cgroup2: none mounted"),
            "{report}"
        );
    }

    #[test]
    fn formats_seconds_with_one_decimal() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.2 s");
    }
}
