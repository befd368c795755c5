//! When to try a destination again: exponential backoff with jitter, so a
//! fleet of agents whose SIEM came back does not reconnect in step.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(500);
const MOST: Duration = Duration::from_secs(30);

pub struct Backoff {
    /// The next delay before jitter.
    next: Duration,
    /// No attempt before this.
    until: Option<Instant>,
    /// xorshift64 state: jitter needs spread, not secrecy.
    rng: u64,
}

impl Backoff {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            next: FIRST,
            until: None,
            rng: seed | 1,
        }
    }

    /// An attempt failed: wait between half and all of the next delay,
    /// which doubles up to [`MOST`]. Returns the wait.
    pub fn failed(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = self.next.as_millis() as u64 / 2;
        let wait = Duration::from_millis(half + self.rng % (half + 1));
        self.until = Some(Instant::now() + wait);
        self.next = (self.next * 2).min(MOST);
        wait
    }

    /// An attempt succeeded: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.next = FIRST;
        self.until = None;
    }

    /// How long until the next attempt may be made (zero: now).
    pub fn left(&self) -> Duration {
        self.until.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Within a failure's wait.
    pub fn waiting(&self) -> bool {
        !self.left().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_most_and_reset() {
        let mut b = Backoff::new();
        let mut bound = FIRST;
        for _ in 0..10 {
            let wait = b.failed();
            assert!(wait >= bound / 2 && wait <= bound, "{wait:?} for {bound:?}");
            assert!(b.waiting());
            bound = (bound * 2).min(MOST);
        }
        assert_eq!(bound, MOST);
        b.reset();
        assert!(!b.waiting());
        assert!(b.failed() <= FIRST);
    }
}
