//! The long-running programs a benchmark starts — the sensor agent, the
//! empty-program floor — each owned by a guard that stops it when dropped,
//! on error paths too, so nothing the benchmark started outlives it.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::{bench::records, process};

/// How long a stopping child gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process that is stopped (SIGCONT, SIGTERM, then SIGKILL) when
/// the guard is dropped.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let line = process::display(cmd);
        eprintln!("+ {line} &");
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{line}`"))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.pid())?);
        kill(pid, signal).with_context(|| format!("cannot send {signal} to {}", self.name))
    }

    /// The exit status if the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("cannot wait for {}", self.name)),
            None => Ok(None),
        }
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Asks the child to stop (SIGCONT first, in case it was stopped for
    /// the burst test, then SIGTERM) and waits; SIGKILL after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let status = child.wait()?;
        bail!(
            "{} did not stop within {} s of SIGTERM and was killed ({status})",
            self.name,
            timeout.as_secs()
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(err) = self.terminate(STOP_TIMEOUT)
        {
            eprintln!("bench: stopping {}: {err:#}", self.name);
        }
    }
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `weightwarden run`'s exit status when it stopped cleanly but its
/// outputs lost records (sensor/src/cli/args.rs, `exit::LOST`).
const EXIT_OUTPUTS_LOST: i32 = 3;

/// A running `weightwarden run` writing JSON lines to a file.
pub struct Agent {
    guard: ChildGuard,
    output: PathBuf,
    store: PathBuf,
    log: PathBuf,
    /// From spawn until the `sensor_start` record was seen.
    pub startup: Duration,
    pub start_record: Value,
}

impl Agent {
    /// Starts the agent watching `watch`, writing `<run>/<name>.jsonl`
    /// (its stderr to `<name>.log`, its audit store to `<name>.db`), with
    /// an empty configuration file so
    /// the host's /etc file cannot change what is measured, and waits
    /// until capture is live.
    pub fn start(binary: &Path, watch: &[&Path], run_dir: &Path, name: &str) -> Result<Self> {
        Self::start_with_policy(binary, watch, run_dir, name, None)
    }

    /// [`Agent::start`], with `--policy <policy>` when given (its
    /// `policy_loaded` record then follows `sensor_start`, written with
    /// it).
    pub fn start_with_policy(
        binary: &Path,
        watch: &[&Path],
        run_dir: &Path,
        name: &str,
        policy: Option<&Path>,
    ) -> Result<Self> {
        Self::start_with(binary, watch, run_dir, name, policy, &[])
    }

    /// [`Agent::start_with_policy`] with more arguments after the others
    /// (another `--output`; a `--state-dir` replaces the default `none`).
    pub fn start_with(
        binary: &Path,
        watch: &[&Path],
        run_dir: &Path,
        name: &str,
        policy: Option<&Path>,
        extra: &[String],
    ) -> Result<Self> {
        let output = run_dir.join(format!("{name}.jsonl"));
        let log = run_dir.join(format!("{name}.log"));
        let config = run_dir.join("empty.toml");
        std::fs::write(&config, "")
            .with_context(|| format!("cannot write {}", config.display()))?;
        let _ = std::fs::remove_file(&output);
        let mut cmd = Command::new(binary);
        // No state from an earlier agent: the tainted-write row makes the
        // unwatched file a copy of weights (derived), which a kept state
        // would watch in every later row.
        cmd.arg("run");
        if !extra.iter().any(|a| a == "--state-dir") {
            cmd.args(["--state-dir", "none"]);
        }
        // The default configuration keeps an audit store; each agent gets
        // a fresh one here, so that the host's own agent (which holds the
        // default store) cannot collide with it and no run inherits
        // another's records.
        let store = run_dir.join(format!("{name}.db"));
        for stale in ["db", "db-wal", "db-shm", "key"] {
            let _ = std::fs::remove_file(store.with_extension(stale));
        }
        cmd.arg("--store").arg(&store);
        for dir in watch {
            cmd.arg("--watch").arg(dir);
        }
        if let Some(policy) = policy {
            cmd.arg("--policy").arg(policy);
        }
        cmd.arg("--output")
            .arg(format!("jsonl:{}", output.display()))
            .args(extra)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::create(&log).with_context(|| format!("cannot create {}", log.display()))?,
            );
        let spawned = Instant::now();
        let mut guard = ChildGuard::spawn(&format!("the sensor ({name})"), &mut cmd)?;
        let deadline = spawned + Duration::from_secs(180);
        loop {
            if let Some(record) = records::first_record(&output)? {
                let startup = spawned.elapsed();
                if record.get("action").and_then(Value::as_str) != Some("sensor_start") {
                    bail!(
                        "the sensor's first record in {} is not sensor_start: {record}",
                        output.display()
                    );
                }
                return Ok(Self {
                    guard,
                    output,
                    store,
                    log,
                    startup,
                    start_record: record,
                });
            }
            if let Some(status) = guard.try_wait()? {
                bail!(
                    "the sensor exited ({status}) before capture was live; its log {}:\n{}",
                    log.display(),
                    log_tail(&log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the sensor wrote no sensor_start record within 180 s; its log {}:\n{}",
                    log.display(),
                    log_tail(&log, 20)
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The agent's audit store (`<run>/<name>.db`; its key beside it,
    /// `<name>.key`).
    pub fn store(&self) -> &Path {
        &self.store
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.guard.signal(signal)
    }

    /// Stops the agent with SIGTERM (it drains and writes `sensor_stop`)
    /// and checks it exited 0.
    pub fn stop(self) -> Result<()> {
        self.stop_accepting(&[0])
    }

    /// [`Agent::stop`] for a step that measures what outputs lose: the
    /// agent's exit status 3 (stopped, but outputs lost records, each
    /// counted in `sensor_stop`) is then a result the step reads from
    /// those counters, not a failure.
    pub fn stop_counting_losses(self) -> Result<()> {
        self.stop_accepting(&[0, EXIT_OUTPUTS_LOST])
    }

    fn stop_accepting(mut self, codes: &[i32]) -> Result<()> {
        let status = self.guard.terminate(STOP_TIMEOUT)?;
        if !status.code().is_some_and(|code| codes.contains(&code)) {
            bail!(
                "the sensor exited with {status} when stopped; its log {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 20)
            );
        }
        Ok(())
    }
}

/// A running `weightwarden bench-floor`: empty programs on every hook the
/// sensor uses.
pub struct Floor {
    guard: ChildGuard,
    /// Attachments made, as the floor reported them.
    pub hooks: u64,
}

impl Floor {
    pub fn start(binary: &Path, run_dir: &Path) -> Result<Self> {
        let log = run_dir.join("floor.log");
        let mut cmd = Command::new(binary);
        cmd.arg("bench-floor")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                File::create(&log).with_context(|| format!("cannot create {}", log.display()))?,
            );
        let mut guard = ChildGuard::spawn("the empty-program floor", &mut cmd)?;
        let stdout = guard
            .child_mut()
            .and_then(|child| child.stdout.take())
            .context("the floor's stdout was not captured")?;
        // Read on a thread so a floor that hangs before printing cannot
        // hang the benchmark.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => bail!("cannot read the floor's output: {err}"),
            Err(_) => bail!("the floor printed nothing within 60 s"),
        };
        let Some(hooks) = line
            .trim()
            .strip_prefix("floor attached ")
            .and_then(|n| n.parse().ok())
        else {
            bail!(
                "the floor did not attach (it printed {:?}); its log {}:\n{}",
                line.trim(),
                log.display(),
                log_tail(&log, 20)
            );
        };
        Ok(Self { guard, hooks })
    }

    pub fn stop(mut self) -> Result<()> {
        let status = self.guard.terminate(STOP_TIMEOUT)?;
        if !status.success() {
            bail!("the floor exited with {status} when stopped");
        }
        Ok(())
    }
}
