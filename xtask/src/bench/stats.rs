//! Statistics over repeated measurements: the median and spread of a set
//! of samples, ratios against a baseline, and latency percentiles. Pure
//! functions, so the figures the report prints are tested on their own.

/// The median and spread of one set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartiles (linear interpolation between order
    /// statistics, as R's default and numpy's `percentile` do).
    pub q1: f64,
    pub q3: f64,
}

/// The summary of `samples`, or `None` when there are none (or any is not
/// a number, which would make every order statistic meaningless).
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        n: sorted.len(),
        median: quantile(&sorted, 0.5),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        q1: quantile(&sorted, 0.25),
        q3: quantile(&sorted, 0.75),
    })
}

/// The `q` quantile (0..=1) of sorted, non-empty samples, interpolating
/// linearly between the two nearest order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = pos.floor() as usize;
    let upper = pos.ceil() as usize;
    let frac = pos - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * frac
}

/// The `p` percentile (0..=100) by nearest rank: always one of the samples,
/// which is what a latency percentile should be. `None` when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A configuration's cost relative to the baseline measured in the same
/// run: the ratio of medians, and the spread of the per-repetition ratios
/// (repetition `i` of the configuration over repetition `i` of the
/// baseline, which ran moments apart, so drift of the machine cancels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn ratio(samples: &[f64], baseline: &[f64]) -> Option<Ratio> {
    let ours = summarize(samples)?;
    let base = summarize(baseline)?;
    if base.median <= 0.0 {
        return None;
    }
    let paired: Vec<f64> = samples
        .iter()
        .zip(baseline)
        .filter(|(_, b)| **b > 0.0)
        .map(|(s, b)| s / b)
        .collect();
    let spread = summarize(&paired)?;
    Some(Ratio {
        median: ours.median / base.median,
        min: spread.min,
        max: spread.max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quartiles_of_odd_and_even_counts() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert_eq!((s.q1, s.q3), (2.0, 4.0));

        let s = summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!((s.q1, s.q3), (1.75, 3.25));

        let s = summarize(&[7.0]).unwrap();
        assert_eq!(
            (s.median, s.min, s.max, s.q1, s.q3),
            (7.0, 7.0, 7.0, 7.0, 7.0)
        );
    }

    #[test]
    fn nothing_to_summarize() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn nearest_rank_percentiles_are_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ratio_of_medians_with_paired_spread() {
        let base = [100.0, 110.0, 90.0];
        let ours = [120.0, 121.0, 99.0];
        let r = ratio(&ours, &base).unwrap();
        assert!((r.median - 1.2).abs() < 1e-12, "{r:?}");
        assert!((r.min - 1.1).abs() < 1e-12, "{r:?}");
        assert!((r.max - 1.2).abs() < 1e-12, "{r:?}");
        assert!(ratio(&ours, &[]).is_none());
        assert!(ratio(&ours, &[0.0, 0.0, 0.0]).is_none());
    }
}
