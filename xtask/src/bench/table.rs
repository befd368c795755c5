//! Rendering result tables twice from one definition: aligned plain text
//! for the terminal and GitHub Markdown for `docs/benchmarks.md`, plus the
//! number formats both use.

use std::fmt::Write as _;

/// A table of strings; every row has as many cells as there are headers.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row, padded with empty cells or cut to the header count.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// GitHub Markdown; `|` inside a cell is escaped.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            format!("| {} |\n", escaped.join(" | "))
        };
        let mut out = line(&self.headers);
        out.push_str(&format!("|{}\n", "---|".repeat(self.headers.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// Columns padded to their widest cell, separated by two spaces, with
    /// a rule under the headers.
    pub fn plain(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|col| {
                std::iter::once(&self.headers)
                    .chain(&self.rows)
                    .map(|row| row[col].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| {
                    let pad = width - cell.chars().count();
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        };
        line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule);
        for row in &self.rows {
            line(row);
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
            "| workload | goal | on |\n|---|---|---|\n\
             | weight load | <= 1.01 | 1.004 |\n| a\\|b | report |  |\n"
        );
    }

    #[test]
    fn renders_aligned_text() {
        assert_eq!(
            sample().plain(),
            "workload     goal     on\n\
             -----------  -------  -----\n\
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
        assert_eq!(ratio(1.0341, 0.9912, 1.052), "1.034 (0.991–1.052)");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
