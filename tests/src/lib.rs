//! Harness for the integration tests: starts the real `weightwarden`
//! binary as a child process with a JSON lines output in a temp dir, waits
//! until capture is live, and reads back the records it wrote.
//!
//! Tests must run as root, one at a time (`--test-threads=1`): they load
//! eBPF programs and a concurrent test's processes would show up in the
//! records.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{
    ffi::OsStr,
    fs,
    io::Write,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use sensor::event::{
    Access, AccessDetail, Action, Event, File, Process, ReadSummary, SyscallAbi, Text,
};
use serde_json::Value;
use tempfile::TempDir;

pub mod vm;

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

/// `(dev, ino)` of a path as the event model holds them: `dev` is the
/// kernel's `s_dev`, `(major << 20) | minor`, not userspace's `st_dev`.
pub fn identity(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap();
    let dev = m.dev();
    (
        (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev)),
        m.ino(),
    )
}

/// A running sensor writing to a JSON lines file.
///
/// Every run ends with a health check (in `stop`, or when the value is
/// dropped at the end of a test that passed): the agent exits 0 on SIGTERM,
/// its last record is `sensor_stop` with every loss and failure counter at
/// 0, its stderr has no `WARN` or `ERROR` line and ends with `stopped`, and
/// every BPF program, link and map it held is gone from the kernel. A test
/// that causes loss on purpose says so with [`SensorProcess::expect_loss`].
pub struct SensorProcess {
    child: Option<Child>,
    pub dir: TempDir,
    pub events: PathBuf,
    pub stderr: PathBuf,
    loss_expected: bool,
    /// `WARN` lines a test causes on purpose, by a part of their text.
    warnings_expected: Vec<String>,
    errors_expected: Vec<String>,
    /// The exit status the run must end with (0 unless a test says).
    exit_expected: i32,
    /// The run's audit store (`--store`; `none`: it keeps none).
    store: PathBuf,
    /// The stop leaves the programs attached for the next agent
    /// (`kernel.handover`): they outlive the process.
    handover_expected: bool,
}

impl SensorProcess {
    /// Starts `weightwarden run --watch <each root> --output jsonl:<tmp>`
    /// plus `extra` args, and waits for the `sensor_start` record.
    pub fn start(roots: &[&Path], extra: &[&str]) -> Self {
        Self::start_with_config(roots, extra, "# defaults\n")
    }

    /// `start` with `config` as the configuration file's text.
    pub fn start_with_config(roots: &[&Path], extra: &[&str], config: &str) -> Self {
        Self::spawn(roots, extra, config, &[])
    }

    /// `start` with more environment variables for the agent (test-only
    /// switches such as `WEIGHTWARDEN_TEST_HIDE_BTF`).
    pub fn start_with_env(roots: &[&Path], extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(roots, extra, "# defaults\n", env)
    }

    /// `start` with a configuration and more environment variables.
    pub fn start_with(roots: &[&Path], extra: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(roots, extra, config, env)
    }

    fn spawn(roots: &[&Path], extra: &[&str], config: &str, env: &[(&str, &str)]) -> Self {
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
        // Nor state from an earlier test (or from the host's agent).
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.path().join("state"));
        }
        // Tests run agents side by side (and beside a host's own).
        cmd.arg("--allow-second-agent");
        // Nor a port: tests that scrape metrics ask for one.
        if !extra.contains(&"--metrics") {
            cmd.arg("--metrics").arg("none");
        }
        // Nor records: each run has its own audit store, which the health
        // check compares with the records written.
        let store = match extra.iter().position(|a| *a == "--store") {
            Some(i) => PathBuf::from(extra.get(i + 1).copied().unwrap_or("none")),
            None => {
                let own = dir.path().join("audit.db");
                cmd.arg("--store").arg(&own);
                own
            }
        };
        cmd.args(extra)
            .envs(env.iter().copied())
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
            loss_expected: false,
            warnings_expected: Vec::new(),
            errors_expected: Vec::new(),
            exit_expected: 0,
            store,
            handover_expected: false,
        };
        sensor.wait_for("sensor_start", Duration::from_secs(30), |r| {
            r["action"] == "sensor_start"
        });
        sensor
    }

    /// The record lines written so far. The agent may be mid-write: only
    /// whole lines are records.
    fn lines(&self) -> Vec<String> {
        let Ok(text) = fs::read_to_string(&self.events) else {
            return Vec::new();
        };
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Every record written so far.
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Every record written so far, decoded into the event model (the
    /// agent's own types): assert on fields, not on untyped JSON.
    pub fn events(&self) -> Vec<sensor::event::Event> {
        self.lines()
            .iter()
            .map(|l| {
                sensor::output::encode::native::decode(l)
                    .unwrap_or_else(|e| panic!("undecodable record {l:?}: {}", sensor::Chain(&e)))
            })
            .collect()
    }

    /// Waits until a record matches `pred`; panics with the log on timeout.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.poll(what, timeout, || {
            self.records().into_iter().find(|r| pred(r))
        })
    }

    /// `wait_for`, on decoded events.
    pub fn wait_for_event(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        self.poll(what, timeout, || {
            self.events().into_iter().find(|e| pred(e))
        })
    }

    /// Waits until the agent has written `n` `policy_loaded` records (the
    /// start-up's is the first).
    pub fn wait_policy_loads(&self, n: usize) {
        self.poll(&format!("policy_loaded #{n}"), RECORD_TIMEOUT, || {
            let loads = self
                .events()
                .iter()
                .filter(|e| e.action == Action::PolicyLoaded)
                .count();
            (loads >= n).then_some(())
        });
    }

    /// Calls `found` until it returns something; panics with the log on
    /// timeout.
    fn poll<T>(&self, what: &str, timeout: Duration, found: impl Fn() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(it) = found() {
                return it;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {what} record within {timeout:?}"));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// File events (open, read, mmap, close) for a file identity.
    pub fn file_events(&self, path: &Path) -> Vec<Event> {
        let (dev, ino) = identity(path);
        self.events()
            .into_iter()
            .filter(|e| {
                e.file
                    .as_ref()
                    .is_some_and(|f| (f.dev, f.ino) == (dev, ino))
            })
            .collect()
    }

    /// Records of `action` for a process id.
    pub fn by_pid(&self, action: &str, pid: u32) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["action"] == action && r["process"]["pid"] == pid)
            .collect()
    }

    /// Events of `action` for a process id.
    pub fn events_by_pid(&self, action: Action, pid: u32) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| is_by(e, action, pid))
            .collect()
    }

    /// The process's exit record has been written: everything it did is in.
    pub fn wait_exit(&self, pid: u32) -> Event {
        self.wait_for_event(&format!("exit of {pid}"), RECORD_TIMEOUT, |e| {
            is_by(e, Action::Exit, pid)
        })
    }

    /// The stop (SIGTERM under `kernel.handover`) leaves the programs
    /// attached and pinned for the next agent: the check that everything
    /// the agent held is gone from the kernel is skipped.
    pub fn expect_handover(&mut self) {
        self.handover_expected = true;
    }

    /// This run loses records or reads on purpose: the health check at
    /// stop skips the loss counters and the agent's warnings about them
    /// (it still wants a clean exit, no `ERROR` line and nothing left
    /// attached).
    pub fn expect_loss(&mut self) {
        self.loss_expected = true;
    }

    /// This run causes a warning on purpose: `WARN` lines containing
    /// `text` do not fail the health check (every other one still does).
    pub fn expect_warning(&mut self, text: &str) {
        self.warnings_expected.push(text.to_owned());
    }

    /// An error the test provokes on purpose (a full disk): log lines at
    /// ERROR that contain `text` do not fail the run.
    pub fn expect_error(&mut self, text: &str) {
        self.errors_expected.push(text.to_owned());
    }

    /// The run's own JSON lines output as the agent names it in counters
    /// (`jsonl:` and this, its path).
    pub fn output_name(&self) -> String {
        self.events.display().to_string()
    }

    /// This run loses records for an output on purpose: it must exit 3
    /// (`run`'s status for a clean stop with records lost), and lost
    /// records do not fail the health check.
    pub fn expect_output_loss(&mut self) {
        self.loss_expected = true;
        self.exit_expected = 3;
    }

    /// Sends SIGTERM, waits, checks the run's health (see the type's doc);
    /// returns the exit status and all records.
    pub fn stop(self) -> (ExitStatus, Vec<Value>) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// `stop`, with the records decoded into events.
    pub fn stop_events(mut self) -> (ExitStatus, Vec<Event>) {
        let (status, _) = self.finish(nix::sys::signal::Signal::SIGTERM);
        (status, self.events())
    }

    /// `stop`, also returning the agent's whole stderr (the temp dir that
    /// holds it goes with the value).
    pub fn stop_with_log(mut self) -> (ExitStatus, Vec<Value>, String) {
        let (status, records) = self.finish(nix::sys::signal::Signal::SIGTERM);
        (status, records, self.log())
    }

    /// `stop` with `signal` (SIGTERM or SIGINT: both must exit 0).
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> (ExitStatus, Vec<Value>) {
        self.finish(signal)
    }

    fn finish(&mut self, signal: nix::sys::signal::Signal) -> (ExitStatus, Vec<Value>) {
        // Before the child leaves `self`: should this panic, the drop still
        // kills the agent (an orphan would keep its programs attached).
        let held = BpfObjects::held_by(self.child.as_ref().unwrap().id());
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the sensor did not stop within 20 s of {signal}");
            }
            sleep(Duration::from_millis(50));
        };
        let records = self.records();
        self.check_health(status, &records, &held);
        (status, records)
    }

    /// The audit store this run kept: its own, or the one the test named
    /// (`--store`).
    pub fn store_path(&self) -> PathBuf {
        self.store.clone()
    }

    /// What is wrong with the run's own audit store, if it kept one: it
    /// must hold every record the JSON lines output has, byte for byte, in
    /// the same order, and its chain must verify.
    fn store_problems(&self) -> Vec<String> {
        let db = self.store_path();
        if !db.exists() {
            return Vec::new();
        }
        let stored = match store_records(&db) {
            Ok(stored) => stored,
            Err(err) => return vec![format!("audit store {}: {err}", db.display())],
        };
        let written = fs::read(&self.events).unwrap_or_default();
        let mut problems = Vec::new();
        // A store a test named may hold earlier runs' records first.
        if !stored.ends_with(&written) {
            problems.push(format!(
                "the audit store's records ({} bytes) do not end with the JSON lines output's \
                 ({} bytes)",
                stored.len(),
                written.len()
            ));
        }
        let out = Command::new(binary())
            .arg("verify")
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "weightwarden verify: {:?} {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        problems
    }

    /// The health check every run ends with.
    fn check_health(&self, status: ExitStatus, records: &[Value], held: &BpfObjects) {
        let mut problems = Vec::new();
        if status.code() != Some(self.exit_expected) {
            problems.push(format!(
                "the agent exited with {status:?}, not {}",
                self.exit_expected
            ));
        }
        match records.last() {
            Some(stop) if stop["action"] == "sensor_stop" => {
                if !self.loss_expected {
                    problems.extend(counter_problems(&stop["sensor"]));
                }
            }
            other => problems.push(format!("the last record is not sensor_stop: {other:?}")),
        }
        if !self.loss_expected {
            problems.extend(self.store_problems());
        }
        let log = self.log();
        for line in log.lines() {
            let error = line.contains(" ERROR ")
                && !self
                    .errors_expected
                    .iter()
                    .any(|e| line.contains(e.as_str()));
            let warning = line.contains(" WARN ")
                && !self.loss_expected
                && !self
                    .warnings_expected
                    .iter()
                    .any(|w| line.contains(w.as_str()));
            if error || warning {
                problems.push(format!("agent log: {line}"));
            }
        }
        if !log.lines().any(|l| l.contains(" stopped ")) {
            problems.push("the agent's log has no `stopped` line".to_owned());
        }
        if !self.handover_expected {
            problems.extend(held.still_loaded());
        }
        if !problems.is_empty() {
            self.fail(&format!(
                "unhealthy run:\n  {}\n(a test that causes loss on purpose calls expect_loss())",
                problems.join("\n  ")
            ));
        }
    }

    /// The agent's stderr so far.
    /// Sends `signal` to the running agent.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    }

    /// Whether the agent is still running.
    /// Kills the agent with SIGKILL, as a crash or the OOM killer would:
    /// no shutdown and no health check. Returns the records it wrote.
    pub fn kill_hard(mut self) -> Vec<Value> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.records()
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

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
    /// A test that passed without calling `stop` gets the same health
    /// check; one that is already failing just kills the agent.
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if std::thread::panicking() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        } else {
            self.finish(nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// A `sensor` record's counter `section.name` (0 when absent: counters
/// created on first use).
pub fn sensor_counter(event: &Event, section: &str, name: &str) -> u64 {
    event
        .sensor
        .as_ref()
        .and_then(|s| s.counters.get(section))
        .and_then(|c| c.get(name))
        .copied()
        .unwrap_or(0)
}

/// Every non-zero loss or failure counter in a `sensor_stop` record's
/// `sensor` object: all of `kernel` (a counter added later is covered
/// too), the agent's decode and aggregate-map errors, sink write failures
/// and the watch set's map and queue failures.
pub fn counter_problems(sensor: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut want_zero = |path: String, v: &Value| match v.as_u64() {
        Some(0) => {}
        _ => problems.push(format!("{path} = {v} (want 0)")),
    };
    match sensor["kernel"].as_object() {
        Some(kernel) if !kernel.is_empty() => {
            // Not a loss: io_uring requests recorded as submitted.
            for (k, v) in kernel.iter().filter(|(k, _)| *k != "uring_skip_success") {
                want_zero(format!("kernel.{k}"), v);
            }
        }
        _ => want_zero("kernel".to_owned(), &sensor["kernel"]),
    }
    if let Some(store) = sensor["store"].as_object() {
        for (k, v) in store.iter().filter(|(k, _)| k.starts_with("lost_")) {
            want_zero(format!("store.{k}"), v);
        }
    }
    for k in [
        "decode_errors",
        "aggregate_map_errors",
        "handover_records_undecoded",
        "handover_aggregates_unreported",
    ] {
        want_zero(format!("agent.{k}"), &sensor["agent"][k]);
    }
    want_zero(
        "detect.rate_limited".to_owned(),
        &sensor["detect"]["rate_limited"],
    );
    match sensor["sinks"].as_array() {
        Some(sinks) if !sinks.is_empty() => {
            for sink in sinks {
                want_zero(
                    format!("sinks[{}].write_failures", sink["name"]),
                    &sink["write_failures"],
                );
            }
        }
        _ => want_zero("sinks".to_owned(), &sensor["sinks"]),
    }
    for k in [
        "map_full_failures",
        "map_update_failures",
        "queue_overflows",
        "watch_failures",
    ] {
        want_zero(format!("watch.{k}"), &sensor["watch"][k]);
    }
    problems
}

/// The BPF programs, links and maps a process holds descriptors of, by
/// kernel id (from `/proc/PID/fdinfo`).
pub struct BpfObjects {
    pid: u32,
    progs: Vec<u32>,
    links: Vec<u32>,
    maps: Vec<u32>,
}

/// `bpf(2)` commands that open an object by id.
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

impl BpfObjects {
    /// What `pid` holds now. Panics unless it holds programs, links and
    /// maps: the check after stop would otherwise prove nothing.
    pub fn held_by(pid: u32) -> Self {
        let mut held = Self {
            pid,
            progs: Vec::new(),
            links: Vec::new(),
            maps: Vec::new(),
        };
        for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let (list, key) = match target.to_str() {
                Some("anon_inode:bpf-prog") => (&mut held.progs, "prog_id:"),
                // Named so when created, `bpf-link` when opened from a pin.
                Some("anon_inode:bpf_link" | "anon_inode:bpf-link") => {
                    (&mut held.links, "link_id:")
                }
                Some("anon_inode:bpf-map") => (&mut held.maps, "map_id:"),
                _ => continue,
            };
            let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            let id = fs::read_to_string(info).ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            });
            list.extend(id);
        }
        // An agent that adopted pinned programs holds their links, not them.
        assert!(
            !held.links.is_empty() && !held.maps.is_empty(),
            "the running sensor (pid {pid}) holds no BPF links or maps: {} programs, {} links, \
             {} maps",
            held.progs.len(),
            held.links.len(),
            held.maps.len()
        );
        held
    }

    /// Those still in the kernel after the holder exited (waits up to 5 s
    /// for deferred frees), one line each.
    pub fn still_loaded(&self) -> Vec<String> {
        let kinds = [
            ("program", BPF_PROG_GET_FD_BY_ID, &self.progs),
            ("link", BPF_LINK_GET_FD_BY_ID, &self.links),
            ("map", BPF_MAP_GET_FD_BY_ID, &self.maps),
        ];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<String> = kinds
                .iter()
                .flat_map(|(kind, cmd, ids)| {
                    ids.iter()
                        .filter(|id| bpf_object_exists(*cmd, **id))
                        .map(move |id| {
                            format!("BPF {kind} {id} of pid {} is still loaded", self.pid)
                        })
                })
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// Whether the BPF object of that kind and id exists (`*_GET_FD_BY_ID`).
fn bpf_object_exists(cmd: libc::c_long, id: u32) -> bool {
    // The union bpf_attr member for these commands: the id, then next_id
    // and open_flags, all u32.
    let attr = [id, 0, 0, 0];
    // SAFETY: attr outlives the call and its size is passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), size_of_val(&attr)) };
    if fd >= 0 {
        // SAFETY: the descriptor was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOENT),
        "bpf({cmd}) of id {id}: {err}"
    );
    false
}

/// A config file holding `text` in `dir`.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("weightwarden.toml");
    fs::write(&path, text).unwrap();
    path
}

/// `weightwarden run` as tests start it by hand: no store, state or
/// metrics port, watching `models`, its records in `out` (native JSON
/// lines); `extra` after.
pub fn agent_command(models: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args([
        "run",
        "--store",
        "none",
        "--state-dir",
        "none",
        "--metrics",
        "none",
    ])
    .arg("--watch")
    .arg(models)
    .arg("--output")
    .arg(format!("jsonl:{}", out.display()))
    .args(extra)
    .stdin(Stdio::null());
    cmd
}

/// Waits until an agent started by hand (not through [`SensorProcess`])
/// has written `sensor_start` to its JSON lines output `out`; panics if
/// it exits first or takes 30 s.
pub fn wait_live(agent: &mut std::process::Child, out: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(out).is_ok_and(|t| t.contains("\"sensor_start\"")) {
        assert!(agent.try_wait().unwrap().is_none(), "the agent exited");
        assert!(
            Instant::now() < deadline,
            "no sensor_start in {}",
            out.display()
        );
        sleep(Duration::from_millis(50));
    }
}

/// Stops an agent started by hand with SIGTERM; its output once it exited.
pub fn stop_agent(agent: std::process::Child) -> std::process::Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    agent.wait_with_output().unwrap()
}

/// Runs a command to completion and returns its pid; panics on failure.
pub fn run(cmd: &mut Command) -> u32 {
    let child = cmd.stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {:?}", out.status);
    pid
}

/// The Python interpreter: the first `python3` on `PATH` (Debian's, which
/// `cargo xtask setup` installs, unless another comes first), resolved to
/// the real binary through its own `sys.executable`. Running that binary
/// directly matters: a pyenv shim would exec several helpers first. This
/// is also the `exe` records must name for Python processes.
pub fn python_exe() -> &'static Path {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(sys.executable))",
            ])
            .output()
            .expect("python3 on PATH");
        assert!(out.status.success(), "python3: {out:?}");
        let exe = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(exe.is_absolute(), "python3 reported {}", exe.display());
        exe
    })
}

/// `python_exe()` as records print it.
pub fn python_exe_str() -> String {
    python_exe().display().to_string()
}

/// A `Command` for the Python interpreter.
pub fn python_command() -> Command {
    Command::new(python_exe())
}

/// Runs a Python snippet; returns its pid.
pub fn python(code: &str, args: &[&str]) -> u32 {
    run(python_command().arg("-c").arg(code).args(args))
}

/// Whether `e` is an `action` by process `pid`.
pub fn is_by(e: &Event, action: Action, pid: u32) -> bool {
    e.action == action && e.process.as_ref().is_some_and(|p| p.pid == pid)
}

/// The events of `action` by `pid` among `events` (a stopped run's).
pub fn of_pid(events: &[Event], action: Action, pid: u32) -> Vec<&Event> {
    events.iter().filter(|e| is_by(e, action, pid)).collect()
}

/// What the run's `sensor_start` record says of io_uring capture.
pub fn io_uring_capture(events: &[Event]) -> sensor::event::IoUringCapture {
    let start = events
        .iter()
        .find(|e| e.action == Action::SensorStart)
        .and_then(|e| e.sensor.as_ref())
        .expect("a sensor_start record");
    start
        .io_uring
        .clone()
        .unwrap_or_else(|| panic!("sensor_start has no io_uring: {start:?}"))
}

/// The acting process; panics on the sensor's own records.
pub fn process(e: &Event) -> &Process {
    e.process
        .as_ref()
        .unwrap_or_else(|| panic!("no process: {e:?}"))
}

/// The file; panics unless `e` is a file action.
pub fn file(e: &Event) -> &File {
    e.file.as_ref().unwrap_or_else(|| panic!("no file: {e:?}"))
}

/// The file's watched path, as the bytes it is.
pub fn path(e: &Event) -> &Path {
    let path = file(e).path.as_ref();
    text_path(path.unwrap_or_else(|| panic!("no path: {e:?}")))
}

/// The acting process's executable.
pub fn exe(e: &Event) -> &Path {
    let exe = process(e).exe.as_ref();
    text_path(exe.unwrap_or_else(|| panic!("no exe: {e:?}")))
}

fn text_path(text: &Text) -> &Path {
    Path::new(OsStr::from_bytes(text.as_bytes()))
}

/// How the file was used; panics unless `e` is a file action.
pub fn access(e: &Event) -> &Access {
    e.access
        .as_ref()
        .unwrap_or_else(|| panic!("no access: {e:?}"))
}

/// The read summary of a read event.
pub fn read_summary(e: &Event) -> &ReadSummary {
    match &access(e).detail {
        AccessDetail::Read(summary) => summary,
        _ => panic!("not a read: {e:?}"),
    }
}

/// The raw `f_flags` of an open event.
pub fn open_flags(e: &Event) -> u32 {
    match access(e).detail {
        AccessDetail::Open { flags, .. } => flags,
        _ => panic!("not an open: {e:?}"),
    }
}

/// The access mode of raw open flags (`libc::O_RDONLY`, `O_WRONLY`, ...).
pub fn access_mode(flags: u32) -> i32 {
    flags as i32 & libc::O_ACCMODE
}

/// The kernel's `O_LARGEFILE` on x86-64, which it sets on every file a
/// 64-bit process opens (glibc's `libc::O_LARGEFILE` is 0 there).
pub const KERNEL_O_LARGEFILE: u32 = 0o100000;

/// Asserts that `e` is a successful native `mmap(NULL, length, PROT_READ,
/// MAP_PRIVATE, fd, 0)` of `file_path`.
pub fn assert_read_only_private_mapping(e: &Event, file_path: &Path, length: u64) {
    let AccessDetail::Mmap {
        prot,
        flags,
        offset,
        length: mapped,
        result,
        ..
    } = access(e).detail
    else {
        panic!("not an mmap: {e:?}");
    };
    assert_eq!(
        (mapped, offset, prot, flags),
        (length, 0, libc::PROT_READ as u32, libc::MAP_PRIVATE as u32),
        "(length, offset, prot, flags)"
    );
    assert!(result >= 0, "the mapping failed: {:?}", access(e));
    assert_eq!(access(e).abi, SyscallAbi::Native);
    assert_eq!(path(e), file_path);
}

/// Sum of the bytes of the read events among `events`.
pub fn read_total<'a>(events: impl IntoIterator<Item = &'a Event>) -> u64 {
    events
        .into_iter()
        .filter(|e| e.action == Action::Read)
        .map(|e| read_summary(e).bytes)
        .sum()
}

/// An event as a compact line, for assertion messages.
pub fn brief(e: &Event) -> String {
    use std::fmt::Write as _;
    let mut line = format!("{:?}", e.action);
    if let Some(p) = &e.process {
        let _ = write!(line, " pid={} tid={} comm={:?}", p.pid, p.tid, p.comm);
    }
    if let Some(AccessDetail::Read(summary)) = e.access.as_ref().map(|a| &a.detail) {
        let _ = write!(line, " bytes={}", summary.bytes);
    }
    if let Some(path) = e.file.as_ref().and_then(|f| f.path.as_ref()) {
        let _ = write!(line, " path={path:?}");
    }
    line
}

/// `brief` of each, for `{:#?}` in assertion messages.
pub fn briefs<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<String> {
    events.into_iter().map(brief).collect()
}

/// A Python snippet running with piped stdin and stdout, for tests that
/// must act between its steps (it prints a line when ready, waits for one).
pub struct Interactive {
    child: Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Interactive {
    pub fn start(code: &str, args: &[&std::ffi::OsStr]) -> Self {
        let mut child = python_command()
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
    let out = python_command()
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

/// Features a test may find missing on a host, for [`skipped`] and
/// [`skip!`].
pub mod feature {
    /// `int $0x80` from a 64-bit process (`CONFIG_IA32_EMULATION`, not
    /// turned off with `ia32_emulation=0`).
    pub const IA32: &str = "ia32";
    /// A mounted cgroup v2 hierarchy.
    pub const CGROUP2: &str = "cgroup2";
    /// Two CPUs or more (two syscalls in flight at once).
    pub const SMP: &str = "smp";
    /// A QEMU virtual machine ([`crate::vm`]): QEMU, busybox and a kernel
    /// image, which `cargo xtask setup` installs and fetches.
    pub const VM: &str = "vm";
    /// io_uring open to unprivileged processes (`CONFIG_IO_URING`, and
    /// `kernel.io_uring_disabled` at 0).
    pub const IO_URING: &str = "io_uring";
    /// The `fchmodat2` syscall (Linux 6.6 and later).
    pub const FCHMODAT2: &str = "fchmodat2";
}

/// The env var naming the file skips are appended to (`cargo xtask test`
/// sets it and prints the file at the end).
pub const SKIP_LOG_ENV: &str = "WEIGHTWARDEN_SKIP_LOG";

/// The env var that lists, comma-separated, the features this machine is
/// known to lack; under `CI=true` a skip for any other feature fails.
pub const SKIP_ALLOW_ENV: &str = "WEIGHTWARDEN_SKIP_ALLOW";

/// Records that the running test is skipped because this host lacks
/// `feature`: prints `skipped: TEST: FEATURE: REASON` to stderr, appends
/// that line to `$WEIGHTWARDEN_SKIP_LOG`, and under `CI=true` panics
/// unless `feature` is listed in `$WEIGHTWARDEN_SKIP_ALLOW` (CI machines
/// must run every tier they support). Use [`skip!`], which also returns.
pub fn skipped(feature: &str, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    if let Err(message) = record_skip(&test, feature, reason, env) {
        panic!("{message}");
    }
}

/// `skipped`, with the environment passed in: Err when the skip must fail.
fn record_skip(
    test: &str,
    feature: &str,
    reason: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let line = format!("{test}: {feature}: {reason}");
    eprintln!("skipped: {line}");
    let in_ci = env("CI").is_some_and(|v| v == "true");
    let allowed = env(SKIP_ALLOW_ENV)
        .unwrap_or_default()
        .split(',')
        .any(|f| f.trim() == feature);
    let fatal = in_ci && !allowed;
    if let Some(log) = env(SKIP_LOG_ENV) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{SKIP_LOG_ENV}={log}: {e}"))?;
        let mark = if fatal { " (FAILED under CI=true)" } else { "" };
        writeln!(f, "{line}{mark}").map_err(|e| format!("{SKIP_LOG_ENV}={log}: {e}"))?;
    }
    if fatal {
        return Err(format!(
            "CI=true and {feature} is not in {SKIP_ALLOW_ENV}: a CI machine must run this \
             test ({line})"
        ));
    }
    Ok(())
}

/// `skip!(feature, "reason {x}")`: [`skipped`], then returns from the test.
#[macro_export]
macro_rules! skip {
    ($feature:expr, $($reason:tt)+) => {{
        $crate::skipped($feature, &format!($($reason)+));
        return;
    }};
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it
/// and panicking if it takes longer than `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}; stderr so far:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    }
}

/// Nanoseconds since the Unix epoch of an RFC 3339 UTC time as records
/// print it (`2026-11-28T07:39:46.011821946Z`); panics on anything else.
pub fn rfc3339_ns(text: &str) -> i128 {
    // The time crate also takes a space for the `T`; records never do.
    assert!(
        text.ends_with('Z') && text.get(10..11) == Some("T"),
        "not a record's UTC time: {text:?}"
    );
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not an RFC 3339 time: {text:?}: {e}"))
        .unix_timestamp_nanos()
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// A filesystem made with `mkfs` (program and flags) on a sparse image of
/// `mib` MiB, loop-mounted on a temporary directory and unmounted on drop:
/// the filesystem matrix (btrfs, xfs, ...) on one machine.
pub struct LoopFs {
    pub dir: TempDir,
    _image: TempDir,
}

impl LoopFs {
    pub fn mount(mkfs: &[&str], mib: u64) -> Self {
        require_root();
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("fs.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let made = Command::new(mkfs[0])
            .args(&mkfs[1..])
            .arg(&image)
            .output()
            .unwrap();
        assert!(made.status.success(), "{mkfs:?}: {made:?}");
        let dir = tempfile::tempdir().unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(mount.status.success(), "mount: {mount:?}");
        Self {
            dir,
            _image: image_dir,
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Runs `exe file` over and over on a thread until [`ReaderLoop::finish`],
/// recording every run that did not exit 0 with `len` bytes on stdout: an
/// allowed reader that must never be refused or killed while the policy
/// changes under it.
pub struct ReaderLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, Vec<String>)>,
}

impl ReaderLoop {
    pub fn start(exe: &Path, file: &Path, len: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (exe, file, running) = (exe.to_path_buf(), file.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (mut runs, mut failures) = (0u64, Vec::new());
            while !running.load(std::sync::atomic::Ordering::Relaxed) {
                let child = Command::new(&exe)
                    .arg(&file)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let pid = child.id();
                let out = child.wait_with_output().unwrap();
                if !out.status.success() || out.stdout.len() != len {
                    failures.push(format!(
                        "pid {pid}: {:?}, {} bytes, {}",
                        out.status,
                        out.stdout.len(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                runs += 1;
            }
            (runs, failures)
        });
        Self { stop, thread }
    }

    /// Stops the loop; how many runs it made and the failed ones.
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The check `name` of a `weightwarden doctor --json` report; panics with
/// the report when it has none.
#[track_caller]
pub fn doctor_check(report: &Value, name: &str) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name:?} check: {report:#}"))
}

/// The verdict a policy record carries; panics on a record without one.
#[track_caller]
pub fn verdict(e: &Event) -> &sensor::event::PolicyVerdict {
    match &e.policy {
        Some(sensor::event::PolicyInfo::Verdict(v)) => v,
        other => panic!("no verdict on {:?}: {other:?}", e.action),
    }
}

/// A policy text: `mode`, weight set `llama` (every file under `models`,
/// default deny), rule 1 named `name` allowing `exe`, then `more` rules.
pub fn policy_allowing(mode: &str, models: &Path, name: &str, exe: &Path, more: &str) -> String {
    format!(
        "mode = \"{mode}\"\n\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n\n\
         [[rules]]\nname = \"{name}\"\nweights = [\"llama\"]\nexe = [\"{}\"]\n\
         action = \"allow\"\n{more}",
        models.display(),
        exe.display(),
    )
}

/// The taker's pid and fate (`exit N`, `signal N`) from the output of
/// `helpers/routes.c`'s `give-*` commands.
#[track_caller]
pub fn taker_fate(output: &str) -> (u32, String) {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("taker "))
        .unwrap_or_else(|| panic!("no taker line in {output:?}"));
    let (pid, fate) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("a malformed taker line: {line:?}"));
    (pid.parse().unwrap(), fate.to_owned())
}

/// Every record of the audit store at `db`, in order, concatenated: what
/// a JSON lines output of the same run holds.
pub fn store_records(db: &Path) -> Result<Vec<u8>, String> {
    let conn = sensor::store::schema::open(db, sensor::store::schema::Access::Read)
        .map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("SELECT record FROM records ORDER BY seq")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let bytes: Vec<u8> = row.get(0).map_err(|e| e.to_string())?;
        all.extend_from_slice(&bytes);
    }
    Ok(all)
}

/// Builds `helpers/NAME.c` into `dir` with gcc and returns the binary.
pub fn build_helper(dir: &Path, name: &str) -> PathBuf {
    let bin = dir.join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("helpers")
        .join(format!("{name}.c"));
    let out = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// A test CA and a server certificate it signed, for `localhost` and
/// 127.0.0.1, made with `openssl` in `dir`: `ca.pem`, `server.pem` and
/// `server.key` there (the TLS outputs' tests).
pub fn make_test_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=weightwarden test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn a_skip_is_logged_and_fails_only_in_ci_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        let log_var = (SKIP_LOG_ENV, log.display().to_string());
        assert_eq!(
            record_skip(
                "t1",
                "ia32",
                "no int80",
                env_of(std::slice::from_ref(&log_var))
            ),
            Ok(())
        );
        let ci = ("CI", "true".to_owned());
        let err = record_skip(
            "t2",
            "ia32",
            "no int80",
            env_of(&[log_var.clone(), ci.clone()]),
        );
        assert!(err.unwrap_err().contains("CI=true and ia32"));
        let allow = (SKIP_ALLOW_ENV, "cgroup2, ia32".to_owned());
        assert_eq!(
            record_skip("t3", "ia32", "no int80", env_of(&[log_var, ci, allow])),
            Ok(())
        );
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "t1: ia32: no int80\nt2: ia32: no int80 (FAILED under CI=true)\nt3: ia32: no int80\n"
        );
    }

    #[test]
    fn output_within_kills_and_fails_a_command_that_overruns() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo hi"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.stdout, b"hi\n");
        let start = Instant::now();
        let hung = std::panic::catch_unwind(|| {
            output_within(Command::new("sleep").arg("30"), Duration::from_millis(200))
        });
        assert!(hung.is_err(), "a hang must fail");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn rfc3339_times_parse_to_unix_nanoseconds() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), 0);
        assert_eq!(
            rfc3339_ns("2026-11-28T07:39:46.011821946Z"),
            1_795_851_586_011_821_946
        );
        assert_eq!(
            rfc3339_ns("2000-03-01T00:00:01.5Z"),
            951_868_801_500_000_000
        );
        assert!(std::panic::catch_unwind(|| rfc3339_ns("2026-11-28 07:39:46Z")).is_err());
        assert!(std::panic::catch_unwind(|| rfc3339_ns("2026-11-28T07:39:46")).is_err());
        assert!(std::panic::catch_unwind(|| rfc3339_ns("2026-11-28T07:39:46+01:00")).is_err());
    }
}
