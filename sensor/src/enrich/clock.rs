//! Kernel timestamps (CLOCK_BOOTTIME ns) to wall-clock RFC 3339 strings.

use nix::time::{ClockId, clock_gettime};
use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-25T17:09:53.123456789Z`.
const RFC3339_NS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Converts boot-based kernel times to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Wall-clock ns at boot: `realtime - boottime`, sampled.
    boot_epoch_ns: i128,
}

impl BootClock {
    /// Samples the offset between the two clocks now. Call again after the
    /// wall clock may have been stepped (the agent does on each heartbeat).
    pub fn sample() -> Self {
        let boot = now_ns(ClockId::CLOCK_BOOTTIME);
        let real = now_ns(ClockId::CLOCK_REALTIME);
        Self {
            boot_epoch_ns: real - boot,
        }
    }

    /// For tests: a clock whose boot happened at `boot_epoch_ns`.
    pub fn with_boot_epoch_ns(boot_epoch_ns: i128) -> Self {
        Self { boot_epoch_ns }
    }

    /// RFC 3339 text for a CLOCK_BOOTTIME instant.
    pub fn format_boot_ns(&self, boot_ns: u64) -> String {
        format_unix_ns(self.unix_ns(boot_ns))
    }

    /// Unix-epoch ns of a CLOCK_BOOTTIME instant.
    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        self.boot_epoch_ns + i128::from(boot_ns)
    }

    /// CLOCK_BOOTTIME now, in ns.
    pub fn boot_now_ns() -> u64 {
        u64::try_from(now_ns(ClockId::CLOCK_BOOTTIME)).unwrap_or(0)
    }
}

fn now_ns(clock: ClockId) -> i128 {
    match clock_gettime(clock) {
        Ok(ts) => i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()),
        Err(_) => 0,
    }
}

/// RFC 3339 text for ns since the Unix epoch.
pub fn format_unix_ns(unix_ns: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .ok()
        .and_then(|t| t.format(RFC3339_NS).ok())
        .unwrap_or_else(|| String::from("1970-01-01T00:00:00.000000000Z"))
}

/// RFC 3339 text for now.
pub fn now_rfc3339() -> String {
    format_unix_ns(unix_now_ns())
}

/// Unix-epoch ns now.
pub fn unix_now_ns() -> i128 {
    now_ns(ClockId::CLOCK_REALTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds_in_utc() {
        let clock = BootClock::with_boot_epoch_ns(1_700_000_000_000_000_000);
        assert_eq!(clock.format_boot_ns(5), "2023-11-14T22:13:20.000000005Z");
    }

    #[test]
    fn sampled_clock_maps_boot_now_to_about_now() {
        let clock = BootClock::sample();
        let mapped = clock.unix_ns(BootClock::boot_now_ns());
        let now = unix_now_ns();
        // Four clock reads apart: well under a millisecond, unless the
        // wall clock was stepped in between.
        let gap = (now - mapped).abs();
        assert!(gap < 50_000_000, "boot time maps {gap} ns away from now");
    }
}
