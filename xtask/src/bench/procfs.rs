//! What `/proc` says about the machine (CPU model, logical CPUs, memory,
//! kernel release) and about the agent process (CPU time consumed,
//! resident memory). Parsers are separate from the reads so they are
//! tested on fixed text.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub os: String,
}

pub fn machine() -> Result<Machine> {
    let cpuinfo = read("/proc/cpuinfo")?;
    let meminfo = read("/proc/meminfo")?;
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    Ok(Machine {
        cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
        logical_cpus: logical_cpus(&cpuinfo),
        mem_total_kib: status_kib(&meminfo, "MemTotal").unwrap_or(0),
        kernel: read("/proc/sys/kernel/osrelease")?.trim().to_owned(),
        os: os_pretty_name(&os_release).unwrap_or_else(|| "unknown OS".to_owned()),
    })
}

fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {path} (is procfs mounted?)"))
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

fn logical_cpus(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(key, _)| key.trim() == "processor")
        })
        .count()
}

fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim_matches('"').to_owned())
    })
}

/// A `Key:   1234 kB` line of `/proc/meminfo` or `/proc/PID/status`.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name != key {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU time of a process, in clock ticks, from
/// `/proc/PID/stat` (fields 14 and 15; the command name in field 2 may
/// hold spaces and parentheses, so fields are counted after its last `)`).
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = read(&path)?;
    let ticks = stat_cpu_ticks(&stat).with_context(|| format!("cannot parse {path}: {stat}"))?;
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    // USER_HZ, the unit of these fields, is 100 on every Linux port that
    // does not say otherwise.
    let per_sec = if per_sec > 0 { per_sec } else { 100 };
    Ok(ticks as f64 / per_sec as f64)
}

/// (busy, total) jiffies of all CPUs from the `cpu` line of /proc/stat;
/// idle and iowait count as not busy.
fn cpu_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user and nice).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Waits until the CPUs were at least `share` idle over one `window`;
/// false when that did not happen within `timeout`.
pub fn wait_idle(share: f64, window: Duration, timeout: Duration) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let sample = || -> Result<(u64, u64)> {
        let stat = read("/proc/stat")?;
        cpu_jiffies(&stat).context("cannot parse the cpu line of /proc/stat")
    };
    let mut before = sample()?;
    loop {
        thread::sleep(window);
        let after = sample()?;
        let total = after.1.saturating_sub(before.1);
        let busy = after.0.saturating_sub(before.0);
        if total > 0 && 1.0 - busy as f64 / total as f64 >= share {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        before = after;
    }
}

/// Resident memory now and at its peak, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

fn parse_memory(status: &str) -> Option<Memory> {
    Some(Memory {
        rss_kib: status_kib(status, "VmRSS")?,
        hwm_kib: status_kib(status, "VmHWM")?,
    })
}

pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = read(&path)?;
    parse_memory(&status).with_context(|| format!("{path} has no VmRSS/VmHWM line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(logical_cpus(cpuinfo), 2);
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn reads_kib_lines() {
        let status = "Name:\tweightwarden\nVmHWM:\t   41236 kB\nVmRSS:\t   39012 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 39_012,
                hwm_kib: 41_236
            })
        );
        assert_eq!(parse_memory("VmRSS:\t1 kB\n"), None);
        assert_eq!(
            status_kib("MemTotal:       24633856 kB\n", "MemTotal"),
            Some(24_633_856)
        );
    }

    #[test]
    fn reads_cpu_ticks_past_an_awkward_command_name() {
        let stat = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 12345 1000000 900 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(325));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn reads_cpu_time_from_proc_stat() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
        assert_eq!(cpu_jiffies(stat), Some((170, 990)));
        assert_eq!(cpu_jiffies("cpu0 1 2 3 4\n"), None);
        assert!(wait_idle(0.0, Duration::from_millis(20), Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn reads_the_os_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(memory(pid).unwrap().rss_kib > 0);
    }
}
