//! `--since` / `--until`: a time given as a span back from now (`30s`,
//! `90m`, `2h`, `7d`) or as an RFC 3339 time. Parsed without reading the
//! clock, resolved against one `now` so both ends agree.

use std::str::FromStr;

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// What a `--since` / `--until` value accepts, for error messages.
pub const FORMS: &str = "a span back from now (30s, 90m, 2h, 7d) or an RFC 3339 time \
                         (2026-05-01T09:30:00Z, 2026-05-01T11:30:00+02:00)";

/// A point in time, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This many ns before now.
    Ago(i64),
    /// Unix ns.
    At(i64),
}

impl When {
    /// Unix ns, with `now_ns` as now.
    pub fn resolve(self, now_ns: i64) -> i64 {
        match self {
            When::Ago(span) => now_ns.saturating_sub(span),
            When::At(ns) => ns,
        }
    }
}

impl FromStr for When {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("not a time: give {FORMS}");
        let text = text.trim();
        if let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic)
            && text.len() > 1
            && text[..text.len() - 1].bytes().all(|b| b.is_ascii_digit())
        {
            let secs: i64 = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
            return n
                .checked_mul(secs)
                .and_then(|s| s.checked_mul(1_000_000_000))
                .map(When::Ago)
                .ok_or_else(bad);
        }
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?;
        i64::try_from(at.unix_timestamp_nanos())
            .map(When::At)
            .map_err(|_| bad())
    }
}

/// Unix ns now.
pub fn now_ns() -> i64 {
    i64::try_from(crate::enrich::clock::unix_now_ns()).unwrap_or(i64::MAX)
}

/// `--since` and `--until` resolved against `now_ns`, or why they make no
/// window.
pub fn window(
    since: Option<When>,
    until: Option<When>,
    now_ns: i64,
) -> Result<(Option<i64>, Option<i64>), String> {
    let since = since.map(|w| w.resolve(now_ns));
    let until = until.map(|w| w.resolve(now_ns));
    match (since, until) {
        (Some(s), Some(u)) if s > u => Err(format!(
            "--since ({}) is after --until ({}): nothing can match",
            crate::enrich::clock::format_unix_ns(s.into()),
            crate::enrich::clock::format_unix_ns(u.into())
        )),
        _ => Ok((since, until)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn spans_count_back_from_now() {
        let now = 1_800_000_000 * S;
        for (text, span) in [
            ("30s", 30 * S),
            ("90m", 90 * 60 * S),
            ("2h", 2 * 3600 * S),
            ("7d", 7 * 86_400 * S),
            ("0s", 0),
        ] {
            let when: When = text.parse().expect(text);
            assert_eq!(when, When::Ago(span), "{text}");
            assert_eq!(when.resolve(now), now - span, "{text}");
        }
    }

    #[test]
    fn rfc3339_times_are_absolute_in_any_offset() {
        let utc: When = "2026-05-01T09:30:00Z".parse().expect("utc");
        let paris: When = "2026-05-01T11:30:00+02:00".parse().expect("offset");
        assert_eq!(utc, When::At(1_777_627_800 * S));
        assert_eq!(utc, paris);
        let frac: When = "2026-05-01T09:30:00.5Z".parse().expect("fraction");
        assert_eq!(frac, When::At(1_777_627_800 * S + S / 2));
        assert_eq!(frac.resolve(0), 1_777_627_800 * S + S / 2);
    }

    #[test]
    fn anything_else_is_refused_naming_the_accepted_forms() {
        for text in [
            "bogus",
            "",
            "h",
            "2w",
            "-2h",
            "1.5h",
            "2026-05-01",
            "99999999999999999d",
        ] {
            let err = text.parse::<When>().expect_err(text);
            assert!(err.contains("90m") && err.contains("RFC 3339"), "{err}");
        }
    }

    #[test]
    fn a_window_must_not_end_before_it_starts() {
        let now = 1_800_000_000 * S;
        let (since, until) = window(
            Some(When::Ago(2 * 3600 * S)),
            Some(When::Ago(3600 * S)),
            now,
        )
        .expect("ok");
        assert_eq!((since, until), (Some(now - 7200 * S), Some(now - 3600 * S)));
        let err = window(Some(When::Ago(S)), Some(When::Ago(2 * S)), now).expect_err("inverted");
        assert!(
            err.contains("--since") && err.contains("after --until"),
            "{err}"
        );
        assert_eq!(window(None, None, now), Ok((None, None)));
    }
}
