//! How watches retry when the API server is unreachable.
//!
//! kube's default follows client-go: 800 ms doubling to 30 s. After an outage of half a minute
//! that leaves every watch waiting up to 30 s more before it looks again, so statuses stay wrong
//! long after the API server is back. meshready caps the delay at 5 s instead: with its ~16
//! watches that is at most about 3 connection attempts a second against a dead API server, still
//! far from a tight loop, and every watch is back within seconds of the API server's return.

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// The first delay after a failure.
pub const INITIAL: Duration = Duration::from_millis(500);
/// The longest delay between two attempts.
pub const MAX: Duration = Duration::from_secs(5);

/// Doubling delays from [`INITIAL`] to [`MAX`], each jittered by up to a quarter either way so
/// that the watches do not all knock at once; back to [`INITIAL`] after a success.
#[derive(Debug)]
pub struct WatchBackoff {
    next: Duration,
    /// xorshift state for the jitter: it needs to differ between watches, not to be random.
    state: u64,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        Self::with_seed(seed)
    }
}

impl WatchBackoff {
    pub fn with_seed(seed: u64) -> Self {
        Self {
            next: INITIAL,
            state: seed | 1,
        }
    }

    fn jitter(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // In [-0.25, 0.25).
        (self.state % 1000) as f64 / 2000.0 - 0.25
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        let jitter = self.jitter();
        Some(base.mul_f64(1.0 + jitter))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter() {
        let mut backoff = WatchBackoff::with_seed(7);
        let delays: Vec<Duration> = backoff.by_ref().take(8).collect();
        let bases = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0];
        for (delay, base) in delays.iter().zip(bases) {
            let secs = delay.as_secs_f64();
            assert!(
                (base * 0.75..=base * 1.25).contains(&secs),
                "{secs} not within a quarter of {base}"
            );
        }
        backoff.reset();
        assert!(backoff.next().unwrap() <= INITIAL.mul_f64(1.25));
    }

    #[test]
    fn thirty_seconds_down_costs_a_few_attempts_per_watch() {
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        for delay in WatchBackoff::with_seed(1) {
            elapsed += delay;
            if elapsed > Duration::from_secs(30) {
                break;
            }
            attempts += 1;
        }
        assert!((6..=12).contains(&attempts), "{attempts}");
    }
}
