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
///
/// Every record carries one or more of these, so the common case (years
/// 1970 to 9999) is written by hand, digit by digit: `time`'s formatter
/// interprets its format description per call and cost several percent of
/// the agent's CPU. Anything else goes through `time`.
pub fn format_unix_ns(unix_ns: i128) -> String {
    match fast_rfc3339(unix_ns) {
        Some(text) => text,
        None => slow_rfc3339(unix_ns),
    }
}

/// Last second of 9999-12-31, in Unix seconds.
const LAST_FOUR_DIGIT_SECOND: i64 = 253_402_300_799;

fn fast_rfc3339(unix_ns: i128) -> Option<String> {
    let secs = i64::try_from(unix_ns.div_euclid(1_000_000_000)).ok()?;
    if !(0..=LAST_FOUR_DIGIT_SECOND).contains(&secs) {
        return None;
    }
    // In range by the checks above: a remainder below 1e9.
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = (secs % 86_400) as u32;
    let mut text = [0u8; 30];
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 9, nanos);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (29, b'Z'),
    ] {
        text[at] = sep;
    }
    // Only ASCII digits and separators were written.
    String::from_utf8(text.to_vec()).ok()
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 that
/// is not negative: Howard Hinnant's `civil_from_days`, for the proleptic
/// Gregorian calendar in 400-year eras.
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

fn slow_rfc3339(unix_ns: i128) -> String {
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
    fn hand_written_text_is_time_s_text() {
        // Day and year boundaries, leap days (2000, 2024, not 2100), the
        // range's ends, and a spread of instants in between.
        let mut instants: Vec<i128> = vec![
            0,
            1,
            999_999_999,
            951_782_400_000_000_000,     // 2000-02-29
            1_709_164_800_000_000_000,   // 2024-02-29
            4_107_542_400_000_000_000,   // 2100-03-01
            4_107_542_399_999_999_999,   // 2100-02-28, last ns
            253_402_300_799_999_999_999, // 9999-12-31, last ns
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            instants.push(
                i128::from(x % 253_402_300_800) * 1_000_000_000 + i128::from(x % 1_000_000_000),
            );
        }
        for ns in instants {
            assert_eq!(
                fast_rfc3339(ns).as_deref(),
                Some(slow_rfc3339(ns).as_str()),
                "{ns}"
            );
        }
    }

    #[test]
    fn instants_outside_four_digit_years_fall_back() {
        assert_eq!(fast_rfc3339(-1), None);
        assert_eq!(format_unix_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(fast_rfc3339(253_402_300_800_000_000_000), None);
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
