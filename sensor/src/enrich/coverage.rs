//! Cumulative read coverage per (process, file), kept by the agent. Each
//! read summary from the kernel carries the file segments read since the
//! previous flush; a record reports every segment the process has read of
//! the file since its first read, across reopens, until it exits. Keeping
//! the union here rather than in a second kernel map saves every watched
//! read a hash lookup.

use std::collections::HashMap;

use sensor_common::{Coverage, FileKey};

#[derive(Debug, Default)]
pub struct CoverageBook {
    by_process: HashMap<u32, HashMap<FileKey, Coverage>>,
}

impl CoverageBook {
    /// Adds the segments of one summary; returns the process's coverage of
    /// the file so far.
    pub fn add(&mut self, tgid: u32, file: FileKey, window: &Coverage) -> Coverage {
        let total = self
            .by_process
            .entry(tgid)
            .or_default()
            .entry(file)
            .or_default();
        for (word, new) in total.words.iter_mut().zip(window.words) {
            *word |= new;
        }
        *total
    }

    /// Forgets an exited process.
    pub fn forget(&mut self, tgid: u32) {
        self.by_process.remove(&tgid);
    }

    /// Forgets every process `alive` rejects (exits whose record was lost);
    /// returns how many.
    pub fn retain_processes(&mut self, alive: impl Fn(u32) -> bool) -> usize {
        let before = self.by_process.len();
        self.by_process.retain(|&tgid, _| alive(tgid));
        before - self.by_process.len()
    }

    /// (process, file) pairs held.
    pub fn len(&self) -> usize {
        self.by_process.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_process.is_empty()
    }
}

/// Share of a `size`-byte file covered by the bitmap (see
/// `sensor_common::ReadAgg::covered`).
pub fn coverage(covered: &[u64], size: u64) -> f64 {
    if size == 0 {
        return 0.0;
    }
    let segments_total = sensor_common::COVERAGE_SEGMENTS;
    let segment = size.div_ceil(segments_total);
    let used_segments = size.div_ceil(segment).min(segments_total);
    let touched: u64 = covered.iter().map(|w| u64::from(w.count_ones())).sum();
    (touched.min(used_segments) as f64 / used_segments as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_used_segments() {
        // A 64 MiB file fully read touches all 256 segments.
        assert_eq!(coverage(&[u64::MAX; 4], 64 << 20), 1.0);
        // Half the segments.
        assert_eq!(coverage(&[u64::MAX, u64::MAX, 0, 0], 64 << 20), 0.5);
        // A 10-byte file has 10 one-byte segments.
        assert_eq!(coverage(&[0b11111, 0, 0, 0], 10), 0.5);
        assert_eq!(coverage(&[0; 4], 0), 0.0);
    }

    fn cov(words: [u64; 4]) -> Coverage {
        Coverage { words }
    }

    const A: FileKey = FileKey { dev: 1, ino: 10 };
    const B: FileKey = FileKey { dev: 1, ino: 11 };

    #[test]
    fn summaries_accumulate_per_process_and_file() {
        let mut book = CoverageBook::default();
        assert_eq!(book.add(7, A, &cov([1, 0, 0, 0])), cov([1, 0, 0, 0]));
        assert_eq!(book.add(7, A, &cov([2, 0, 0, 8])), cov([3, 0, 0, 8]));
        // Another file and another process start from nothing.
        assert_eq!(book.add(7, B, &cov([4, 0, 0, 0])), cov([4, 0, 0, 0]));
        assert_eq!(book.add(8, A, &cov([0, 1, 0, 0])), cov([0, 1, 0, 0]));
        assert_eq!(book.len(), 3);
    }

    #[test]
    fn exits_and_sweeps_forget_processes() {
        let mut book = CoverageBook::default();
        book.add(7, A, &cov([1, 0, 0, 0]));
        book.add(8, A, &cov([1, 0, 0, 0]));
        book.add(9, B, &cov([1, 0, 0, 0]));
        book.forget(7);
        assert_eq!(book.len(), 2);
        assert_eq!(book.retain_processes(|tgid| tgid == 9), 1);
        assert_eq!(book.len(), 1);
        // A reused pid starts over.
        assert_eq!(book.add(8, A, &cov([0, 0, 2, 0])), cov([0, 0, 2, 0]));
        book.forget(8);
        book.forget(9);
        assert!(book.is_empty());
    }
}
