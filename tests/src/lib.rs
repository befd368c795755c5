//! Harness for the integration tests: starts the real `weightwarden`
//! binary as a child process with a JSON lines output in a temp dir, waits
//! until capture is live, and reads back the records it wrote.
//!
//! Tests must run as root, one at a time (`--test-threads=1`): they load
//! eBPF programs and a concurrent test's processes would show up in the
//! records.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{
    fs,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

/// How long to wait for records the kernel already produced.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// The `weightwarden` binary under test: `$WEIGHTWARDEN_BIN`, or the one
/// `cargo build -p sensor` put beside this test binary's `deps/` folder.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIGHTWARDEN_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("weightwarden");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p sensor` (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// Panics with a clear message unless running as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests load eBPF programs and must run as root"
    );
}

/// A weight file of `size` bytes with a recognisable pattern.
pub fn write_file(path: &Path, size: usize) {
    let mut f = fs::File::create(path).unwrap();
    let block: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

/// `(dev as major:minor, ino)` of a path, as records print them.
pub fn identity(path: &Path) -> (String, u64) {
    let m = fs::metadata(path).unwrap();
    let dev = m.dev();
    (
        format!("{}:{}", libc::major(dev), libc::minor(dev)),
        m.ino(),
    )
}

/// A running sensor writing to a JSON lines file.
pub struct SensorProcess {
    child: Option<Child>,
    pub dir: TempDir,
    pub events: PathBuf,
    pub stderr: PathBuf,
}

impl SensorProcess {
    /// Starts `weightwarden run --watch <each root> --output jsonl:<tmp>`
    /// plus `extra` args, and waits for the `sensor_start` record.
    pub fn start(roots: &[&Path], extra: &[&str]) -> Self {
        Self::start_with_config(roots, extra, "# defaults\n")
    }

    /// `start` with `config` as the configuration file's text.
    pub fn start_with_config(roots: &[&Path], extra: &[&str], config: &str) -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.jsonl");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--output")
            .arg(format!("jsonl:{}", events.display()))
            // No default config file from the host may leak into a test.
            .arg("--config")
            .arg(config_file(dir.path(), config));
        for root in roots {
            cmd.arg("--watch").arg(root);
        }
        cmd.args(extra)
            .env("WEIGHTWARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().unwrap();
        let sensor = Self {
            child: Some(child),
            dir,
            events,
            stderr,
        };
        sensor.wait_for("sensor_start", Duration::from_secs(30), |r| {
            r["action"] == "sensor_start"
        });
        sensor
    }

    /// Every record written so far.
    pub fn records(&self) -> Vec<Value> {
        let Ok(text) = fs::read_to_string(&self.events) else {
            return Vec::new();
        };
        // The agent may be mid-write: only whole lines are records.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Waits until a record matches `pred`; panics with the log on timeout.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {what} record within {timeout:?}"));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// File records (open, read, mmap, close) for a file identity.
    pub fn file_records(&self, path: &Path) -> Vec<Value> {
        let (dev, ino) = identity(path);
        self.records()
            .into_iter()
            .filter(|r| r["file"]["ino"] == ino && r["file"]["dev"] == dev.as_str())
            .collect()
    }

    /// Records of `action` for a process id.
    pub fn by_pid(&self, action: &str, pid: u32) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["action"] == action && r["process"]["pid"] == pid)
            .collect()
    }

    /// The process's exit record has been written: everything it did is in.
    pub fn wait_exit(&self, pid: u32) -> Value {
        self.wait_for(&format!("exit of {pid}"), RECORD_TIMEOUT, |r| {
            r["action"] == "exit" && r["process"]["pid"] == pid
        })
    }

    /// Sends SIGTERM and waits; returns the exit status and all records.
    pub fn stop(self) -> (ExitStatus, Vec<Value>) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` and waits; returns the exit status and all records.
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> (ExitStatus, Vec<Value>) {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the sensor did not stop within 20 s of SIGTERM");
            }
            sleep(Duration::from_millis(50));
        };
        (status, self.records())
    }

    /// The agent's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn fail(&self, msg: &str) -> ! {
        let records: Vec<String> = self.records().iter().map(Value::to_string).collect();
        panic!(
            "{msg}\n--- agent stderr ---\n{}\n--- {} records ---\n{}",
            self.log(),
            records.len(),
            records.join("\n")
        );
    }
}

impl Drop for SensorProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A config file holding `text` in `dir`.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("weightwarden.toml");
    fs::write(&path, text).unwrap();
    path
}

/// Runs a command to completion and returns its pid; panics on failure.
pub fn run(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {:?}", out.status);
    pid
}

/// The system Python (Debian's `python3` package; `cargo xtask setup`
/// installs it). Not a pyenv shim: shims exec several helpers first.
pub const PYTHON: &str = "/usr/bin/python3";

/// Runs a Python snippet; returns its pid.
pub fn python(code: &str, args: &[&str]) -> u32 {
    run(Command::new(PYTHON).arg("-c").arg(code).args(args))
}

/// Fields of a record as a compact string, for assertion messages.
pub fn brief(r: &Value) -> String {
    format!(
        "{} pid={} comm={} bytes={} path={}",
        r["action"],
        r["process"]["pid"],
        r["process"]["comm"],
        r["access"]["bytes"],
        r["file"]["path"]
    )
}

/// Sum of `access.bytes` over read records.
pub fn read_bytes(records: &[Value]) -> u64 {
    records
        .iter()
        .filter(|r| r["action"] == "read")
        .map(|r| r["access"]["bytes"].as_u64().unwrap_or(0))
        .sum()
}

/// A Python snippet running with piped stdin and stdout, for tests that
/// must act between its steps (it prints a line when ready, waits for one).
pub struct Interactive {
    child: Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Interactive {
    pub fn start(code: &str, args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(code)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints, trimmed.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
        line.trim().to_string()
    }

    /// Sends a line to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }

    /// Closes stdin and waits; returns whether it exited successfully.
    pub fn finish(mut self) -> bool {
        drop(self.child.stdin.take());
        self.child.wait().unwrap().success()
    }

    /// Kills it (for processes that outlive the test's interest).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Python snippet to completion and returns its stdout, trimmed;
/// panics with its stderr on failure.
pub fn python_output(code: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
