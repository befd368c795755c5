//! Rendering result tables twice from one definition, with `tabled`:
//! GitHub Markdown for `docs/benchmarks.md`, and columns without borders
//! for the terminal; plus the number formats both use.

use tabled::{
    builder::Builder,
    settings::{Format, Padding, Style, object::Segment, style::HorizontalLine},
};

/// A table of strings; rows shorter than the headers end in empty cells.
#[derive(Debug, Clone, Default)]
pub struct Table(Builder);

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        let mut builder = Builder::new();
        builder.push_record(headers.iter().copied());
        Self(builder)
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.0.push_record(cells);
    }

    /// GitHub Markdown; `|` inside a cell is escaped.
    pub fn markdown(&self) -> String {
        let mut table = self.0.clone().build();
        table
            .with(Style::markdown())
            .modify(Segment::all(), Format::content(|c| c.replace('|', "\\|")));
        table.to_string() + "\n"
    }

    /// Columns padded to their widest cell, two spaces apart, with a rule
    /// under the headers.
    pub fn plain(&self) -> String {
        let mut table = self.0.clone().build();
        table
            .with(Style::blank().horizontals([(1, HorizontalLine::new('-').intersection(' '))]))
            .with(Padding::new(0, 1, 0, 0));
        let mut out = String::new();
        for line in table.to_string().lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration given in nanoseconds, with a unit that keeps 3-4
/// significant digits.
pub fn duration_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A difference of durations in nanoseconds, signed (`+127.3 µs`,
/// `-12 ns`), in the units of [`duration_ns`].
pub fn signed_duration_ns(ns: f64) -> String {
    let sign = if ns < 0.0 { '-' } else { '+' };
    format!("{sign}{}", duration_ns(ns.abs()))
}

/// `1.034 (0.991–1.052)`: a ratio of medians and its spread.
pub fn ratio(median: f64, min: f64, max: f64) -> String {
    format!("{median:.3} ({min:.3}–{max:.3})")
}

/// A count with thousands separated by commas (`1,234,567`).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["workload", "goal", "on"]);
        t.row(vec!["weight load".into(), "<= 1.01".into(), "1.004".into()]);
        t.row(vec!["a|b".into(), "report".into()]);
        t
    }

    #[test]
    fn renders_markdown() {
        assert_eq!(
            sample().markdown(),
            "| workload    | goal    | on    |\n\
             |-------------|---------|-------|\n\
             | weight load | <= 1.01 | 1.004 |\n\
             | a\\|b        | report  |       |\n"
        );
    }

    #[test]
    fn renders_aligned_text() {
        assert_eq!(
            sample().plain(),
            "workload     goal     on\n\
             ------------ -------- ------\n\
             weight load  <= 1.01  1.004\n\
             a|b          report\n"
        );
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(duration_ns(1_234_567_890.0), "1.235 s");
        assert_eq!(duration_ns(12_345_678.0), "12.3 ms");
        assert_eq!(duration_ns(1_500.0), "1.5 µs");
        assert_eq!(duration_ns(999.0), "999 ns");
        assert_eq!(signed_duration_ns(127_345.0), "+127.3 µs");
        assert_eq!(signed_duration_ns(-12.4), "-12 ns");
        assert_eq!(signed_duration_ns(0.0), "+0 ns");
        assert_eq!(ratio(1.0341, 0.9912, 1.052), "1.034 (0.991–1.052)");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
