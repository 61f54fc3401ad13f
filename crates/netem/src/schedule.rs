//! Pure timing rules: when a chunk is due and how fast bytes may leave.
//!
//! Nothing here does I/O or reads a clock; callers pass `Instant`s in. That
//! keeps the rules testable without sockets, and the I/O code in `conn` thin.

use std::time::{Duration, Instant};

use crate::conditions::Direction;
use crate::rng::SplitMix64;

/// Bandwidth pacing writes at most this much time's worth of bytes at once,
/// so a rate limit shapes a stream smoothly rather than in chunk-sized bursts.
pub(crate) const PACING_SLICE_MS: u64 = 10;

/// The random draws for one chunk, taken when it is read. The draws are kept
/// as unit values rather than as durations so that a change of conditions
/// re-scales chunks already in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Draw {
    /// Uniform in `-1.0..1.0`; multiplied by the jitter in force.
    pub(crate) jitter_unit: f64,
    /// Whether the chunk is "lost" and pays the retransmission penalty.
    pub(crate) lost: bool,
}

impl Draw {
    /// Always consumes exactly two values, whatever the conditions, so that a
    /// seed gives the same jitter sequence with or without loss configured.
    pub(crate) fn sample(rng: &mut SplitMix64, loss: f64) -> Draw {
        let jitter_unit = rng.next_f64() * 2.0 - 1.0;
        let lost = rng.next_f64() < loss;
        Draw { jitter_unit, lost }
    }

    /// How long after it was read a chunk with these draws is due under `d`:
    /// `delay ± jitter`, floored at zero, plus the loss penalty if lost.
    pub(crate) fn delay(&self, d: &Direction) -> Duration {
        let jitter_ms = self.jitter_unit * d.jitter_ms as f64;
        let mut delay_ms = (d.delay_ms as f64 + jitter_ms).max(0.0);
        if self.lost {
            delay_ms += d.loss_penalty_ms() as f64;
        }
        Duration::from_secs_f64(delay_ms / 1000.0)
    }
}

/// Paces writes to a byte rate. It keeps only the earliest time the next
/// write may start; an idle link earns no burst credit.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next_free: Option<Instant>,
}

impl Pacer {
    /// How many of `remaining` bytes to write next at `rate`.
    pub(crate) fn slice_len(rate_bytes_per_s: Option<u64>, remaining: usize) -> usize {
        match rate_bytes_per_s {
            None => remaining,
            Some(rate) => {
                let per_slice = rate.saturating_mul(PACING_SLICE_MS) / 1000;
                remaining.min(usize::try_from(per_slice.max(1)).unwrap_or(usize::MAX))
            }
        }
    }

    /// When the next write may start, given the time now.
    pub(crate) fn ready_at(&self, now: Instant) -> Instant {
        self.next_free.map_or(now, |t| t.max(now))
    }

    /// Records that `len` bytes were written starting at `start` (the value
    /// `ready_at` returned, not the possibly later wake-up time, so oversleeping
    /// is made up on the next slice and the average rate holds).
    pub(crate) fn record(&mut self, start: Instant, len: usize, rate_bytes_per_s: Option<u64>) {
        self.next_free = rate_bytes_per_s
            .map(|rate| start + Duration::from_secs_f64(len as f64 / rate.max(1) as f64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_base_plus_scaled_jitter() {
        let d = Direction {
            delay_ms: 100,
            jitter_ms: 20,
            ..Direction::IDEAL
        };
        let early = Draw {
            jitter_unit: -1.0,
            lost: false,
        };
        let late = Draw {
            jitter_unit: 0.5,
            lost: false,
        };
        assert_eq!(early.delay(&d), Duration::from_millis(80));
        assert_eq!(late.delay(&d), Duration::from_millis(110));
    }

    #[test]
    fn jitter_larger_than_delay_floors_at_zero() {
        let d = Direction {
            delay_ms: 5,
            jitter_ms: 50,
            ..Direction::IDEAL
        };
        let draw = Draw {
            jitter_unit: -1.0,
            lost: false,
        };
        assert_eq!(draw.delay(&d), Duration::ZERO);
    }

    #[test]
    fn lost_chunk_pays_the_retransmission_penalty() {
        let d = Direction::delayed(100);
        let draw = Draw {
            jitter_unit: 0.0,
            lost: true,
        };
        assert_eq!(draw.delay(&d), Duration::from_millis(400));
    }

    #[test]
    fn draws_are_reproducible_per_seed() {
        let draws = |seed| {
            let mut rng = SplitMix64::derived(seed, &[3, 1]);
            (0..64)
                .map(|_| Draw::sample(&mut rng, 0.25))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(42), draws(42));
        assert_ne!(draws(42), draws(43));
        let lost = draws(42).iter().filter(|d| d.lost).count();
        assert!((4..=32).contains(&lost), "{lost} of 64 lost at p=0.25");
    }

    #[test]
    fn loss_extremes_are_exact() {
        let mut rng = SplitMix64::new(5);
        assert!((0..1000).all(|_| Draw::sample(&mut rng, 1.0).lost));
        assert!((0..1000).all(|_| !Draw::sample(&mut rng, 0.0).lost));
    }

    #[test]
    fn pacer_spaces_slices_by_rate_without_idle_credit() {
        let t0 = Instant::now();
        let mut p = Pacer::default();
        assert_eq!(p.ready_at(t0), t0);
        assert_eq!(Pacer::slice_len(Some(100_000), 1 << 20), 1_000);
        assert_eq!(Pacer::slice_len(Some(10), 5), 1);
        assert_eq!(Pacer::slice_len(None, 12_345), 12_345);
        p.record(t0, 1_000, Some(100_000));
        assert_eq!(p.ready_at(t0), t0 + Duration::from_millis(10));
        let much_later = t0 + Duration::from_secs(5);
        assert_eq!(p.ready_at(much_later), much_later);
        p.record(t0, 1_000, None);
        assert_eq!(p.ready_at(t0), t0);
    }
}
