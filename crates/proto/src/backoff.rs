//! Retry schedule: capped exponential backoff with deterministic "equal jitter".
//!
//! The `n`-th consecutive failure (n ≥ 1) waits a delay drawn from `[c/2, c]` where
//! `c = min(max, initial × multiplier^(n-1))`. Half the ceiling is kept as a floor so that
//! a busy receiver is not hammered by retries drawn close to zero (as "full jitter" would);
//! the other half is jitter so that many senders restarted at once spread out.
//!
//! The jitter is not random: it is a hash of a seed, a key (a record id, or the peer) and
//! the attempt number. This crate has no source of randomness, tests are reproducible, and
//! a node gets spread by seeding each [`crate::Sender`] differently (e.g. from its node id
//! and the peer's).

use std::time::Duration;

/// An exponential backoff schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the delay after the first failure.
    pub initial: Duration,
    /// Factor applied to the ceiling after each further failure (≥ 1).
    pub multiplier: u32,
    /// Largest ceiling; no delay exceeds it.
    pub max: Duration,
}

impl Default for Backoff {
    /// 200 ms, doubling, capped at 60 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            multiplier: 2,
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The ceiling `c` for the `failures`-th consecutive failure; zero for none.
    pub fn ceiling(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let mut c = self.initial.min(self.max);
        for _ in 1..failures {
            if c >= self.max {
                break;
            }
            c = c.saturating_mul(self.multiplier.max(1)).min(self.max);
            if self.multiplier <= 1 {
                break;
            }
        }
        c
    }

    /// The delay after the `failures`-th consecutive failure for `key`, in `[c/2, c]`.
    ///
    /// Deterministic in `(seed, key, failures)`.
    pub fn delay(&self, seed: u64, key: u128, failures: u32) -> Duration {
        let c = self.ceiling(failures);
        let half = c / 2;
        let span = c.saturating_sub(half).as_nanos();
        if span == 0 {
            return c;
        }
        let draw = u128::from(mix(seed, key, failures)) % (span + 1);
        // draw ≤ span ≤ c, which came from a Duration, so it fits in u64 nanoseconds
        // unless c exceeds ~584 years; saturate rather than wrap in that case.
        half.saturating_add(Duration::from_nanos(
            u64::try_from(draw).unwrap_or(u64::MAX),
        ))
    }
}

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a well-spread hash of one word.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes `(seed, key, attempt)` to 64 bits.
fn mix(seed: u64, key: u128, attempt: u32) -> u64 {
    let mut h = splitmix(seed);
    h = splitmix(h ^ (key as u64));
    h = splitmix(h ^ ((key >> 64) as u64));
    splitmix(h ^ u64::from(attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_then_cap() {
        let b = Backoff::default();
        let ms: Vec<u128> = (0..13).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(
            ms,
            [0, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 60_000, 60_000, 60_000]
        );
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn degenerate_schedules_do_not_loop_or_overflow() {
        let flat = Backoff {
            initial: Duration::from_secs(1),
            multiplier: 1,
            max: Duration::from_secs(10),
        };
        assert_eq!(flat.ceiling(u32::MAX), Duration::from_secs(1));
        let zero = Backoff {
            multiplier: 0,
            ..flat
        };
        assert_eq!(zero.ceiling(5), Duration::from_secs(1));
        let huge = Backoff {
            initial: Duration::MAX,
            multiplier: u32::MAX,
            max: Duration::MAX,
        };
        assert!(huge.delay(1, 2, 3) >= Duration::MAX / 2);
    }

    #[test]
    fn delays_stay_in_band_and_are_deterministic() {
        let b = Backoff::default();
        let mut distinct = std::collections::HashSet::new();
        for key in 0..50u128 {
            for n in 1..20 {
                let d = b.delay(7, key, n);
                let c = b.ceiling(n);
                assert!(
                    d >= c / 2 && d <= c,
                    "key {key} n {n}: {d:?} not in [c/2, c] of {c:?}"
                );
                assert_eq!(d, b.delay(7, key, n));
                distinct.insert(d);
            }
        }
        // Jitter spreads: 950 draws from wide bands are not a handful of values.
        assert!(
            distinct.len() > 900,
            "only {} distinct delays",
            distinct.len()
        );
        assert_ne!(b.delay(1, 5, 3), b.delay(2, 5, 3), "seed changes the draw");
    }
}
