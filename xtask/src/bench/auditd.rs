//! auditd as the peer the sensor is compared with: the Debian daemon
//! started in the foreground as a child, with one watch, `-w <models> -p
//! r`, which is how an auditd user would audit reads of weight files.
//!
//! The kernel only audits the syscalls of processes created after auditing
//! was first enabled, and once it has been, every process created later
//! carries an audit context until reboot. So workloads run in processes
//! started after auditd (see `worker`), and between auditd sessions the
//! kernel keeps a `-a never,task` rule, which gives new processes no audit
//! context: the other configurations are measured as on a host that never
//! ran auditd. [`AuditHost`] puts the rules back as it found them (none)
//! and restores the enabled flag when the benchmark ends.

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    bench::{
        children::{ChildGuard, log_tail},
        debian,
    },
    process,
};

/// The key our watch rule carries, to find its records in the audit log.
pub const KEY: &str = "weightwarden-bench";
const AUDIT_LOG: &str = "/var/log/audit/audit.log";

/// This host's audit subsystem, checked free for the benchmark to use.
pub struct AuditHost {
    original_enabled: u32,
}

impl AuditHost {
    /// Installs auditd when missing and checks that no audit daemon runs
    /// and no rules are loaded (the benchmark would disturb them).
    pub fn prepare() -> Result<Self> {
        debian::ensure_package("auditd")?;
        let status = auditctl(&["-s"])?;
        let pid = status_field(&status, "pid").unwrap_or(0);
        if pid != 0 {
            bail!(
                "an audit daemon is already running (pid {pid}); stop it (and remove its rules \
                 with `auditctl -D`) to compare against auditd"
            );
        }
        let rules = auditctl(&["-l"])?;
        if !no_rules(&rules) {
            bail!(
                "audit rules are already loaded (`auditctl -l`: {}); remove them with \
                 `auditctl -D` to compare against auditd",
                rules.trim()
            );
        }
        let original_enabled = status_field(&status, "enabled").unwrap_or(0);
        auditctl(&["-a", "never,task"])?;
        Ok(Self { original_enabled })
    }
}

impl Drop for AuditHost {
    fn drop(&mut self) {
        let enabled = self.original_enabled.to_string();
        for args in [&["-D"][..], &["-e", &enabled]] {
            if let Err(err) = auditctl(args) {
                eprintln!("bench: restoring the audit state: {err:#}");
            }
        }
    }
}

/// A running auditd with the benchmark's watch.
pub struct Auditd {
    guard: ChildGuard,
    log_records_before: usize,
    restored: bool,
}

impl Auditd {
    pub fn start(models: &Path, run_dir: &Path) -> Result<Self> {
        let log = run_dir.join("auditd.log");
        let log_records_before = watch_records();
        let mut cmd = Command::new("auditd");
        cmd.arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::create(&log).with_context(|| format!("cannot create {}", log.display()))?,
            );
        let mut guard = ChildGuard::spawn("auditd", &mut cmd)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = auditctl(&["-s"])?;
            if status_field(&status, "pid") == Some(guard.pid()) {
                break;
            }
            if let Some(exit) = guard.try_wait()? {
                bail!(
                    "auditd exited ({exit}) before registering with the kernel; its log {}:\n{}",
                    log.display(),
                    log_tail(&log, 20)
                );
            }
            if Instant::now() > deadline {
                bail!("auditd did not register with the kernel within 20 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let auditd = Self {
            guard,
            log_records_before,
            restored: false,
        };
        auditctl(&["-D"])?;
        auditctl(&["-e", "1"])?;
        let dir = models.to_string_lossy();
        auditctl(&["-w", &dir, "-p", "r", "-k", KEY])?;
        let rules = auditctl(&["-l"])?;
        if !rules.contains(&*dir) {
            bail!("auditctl accepted the watch on {dir} but does not list it: {rules}");
        }
        Ok(auditd)
    }

    /// Stops auditd; returns how many audit log lines the watch produced
    /// during the session (proof that it was really auditing).
    pub fn stop(mut self) -> Result<usize> {
        restore_between_sessions()?;
        self.restored = true;
        let status = self.guard.terminate(Duration::from_secs(30))?;
        if !status.success() {
            bail!("auditd exited with {status} when stopped");
        }
        Ok(watch_records().saturating_sub(self.log_records_before))
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        if !self.restored
            && let Err(err) = restore_between_sessions()
        {
            eprintln!("bench: removing the auditd watch: {err:#}");
        }
    }
}

/// Removes the watch, brings back `-a never,task` and turns auditing off.
fn restore_between_sessions() -> Result<()> {
    auditctl(&["-D"])?;
    auditctl(&["-a", "never,task"])?;
    auditctl(&["-e", "0"])?;
    Ok(())
}

fn auditctl(args: &[&str]) -> Result<String> {
    process::stdout(Command::new("auditctl").args(args))
}

/// Lines of the audit log that name the benchmark's key.
fn watch_records() -> usize {
    std::fs::read_to_string(AUDIT_LOG)
        .map(|text| text.lines().filter(|line| line.contains(KEY)).count())
        .unwrap_or(0)
}

/// A numeric field of `auditctl -s` (`enabled 1`, `pid 4242`).
fn status_field(status: &str, name: &str) -> Option<u32> {
    status.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

fn no_rules(list: &str) -> bool {
    list.trim().is_empty() || list.trim() == "No rules"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auditctl_status() {
        let status = "enabled 1\nfailure 1\npid 10642\nrate_limit 0\nbacklog_limit 64\n\
                      loginuid_immutable 0 unlocked\n";
        assert_eq!(status_field(status, "enabled"), Some(1));
        assert_eq!(status_field(status, "pid"), Some(10_642));
        assert_eq!(status_field(status, "loginuid_immutable"), Some(0));
        assert_eq!(status_field(status, "lost"), None);
        assert!(no_rules("No rules\n"));
        assert!(!no_rules("-a never,task\n"));
    }
}
