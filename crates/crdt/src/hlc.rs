//! Hybrid logical clock.
//!
//! An [`Hlc`] packs wall-clock milliseconds (upper 48 bits) and a logical
//! counter (lower 16 bits) into one `u64`, so it orders like a number and costs
//! eight bytes on every stored element. The clock never reads the system time
//! itself: callers pass `wall_ms`, which lets tests and the simulator drive it.

use serde::{Deserialize, Serialize};

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc(pub u64);

impl Hlc {
    pub const ZERO: Hlc = Hlc(0);

    pub fn new(wall_ms: u64, logical: u16) -> Hlc {
        Hlc((wall_ms << LOGICAL_BITS) | logical as u64)
    }

    pub fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MAX) as u16
    }
}

/// A remote timestamp further ahead of local wall time than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("remote clock is {ahead_ms} ms ahead of local wall time (limit {max_offset_ms} ms)")]
pub struct ClockAhead {
    pub ahead_ms: u64,
    pub max_offset_ms: u64,
}

/// The per-region clock: monotonic across local events and received stamps.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_offset_ms: u64,
}

impl HlcClock {
    pub fn new(max_offset_ms: u64) -> HlcClock {
        HlcClock {
            last: Hlc::ZERO,
            max_offset_ms,
        }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event, strictly greater than every earlier one.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let next = if wall_ms > self.last.wall_ms() {
            Hlc::new(wall_ms, 0)
        } else {
            successor(self.last)
        };
        self.last = next;
        next
    }

    /// Advances past a received timestamp. A stamp more than `max_offset_ms`
    /// ahead of `wall_ms` is refused (the clock does not move), so one region
    /// with a runaway clock cannot drag every other region's clock forward.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), ClockAhead> {
        let ahead_ms = remote.wall_ms().saturating_sub(wall_ms);
        if ahead_ms > self.max_offset_ms {
            return Err(ClockAhead {
                ahead_ms,
                max_offset_ms: self.max_offset_ms,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }

    /// Raises the clock to at least `floor` (used after recovery from disk).
    pub fn raise_to(&mut self, floor: Hlc) {
        if floor > self.last {
            self.last = floor;
        }
    }
}

fn successor(h: Hlc) -> Hlc {
    if h.logical() as u64 == LOGICAL_MAX {
        Hlc::new(h.wall_ms() + 1, 0)
    } else {
        Hlc(h.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn logical_counter_overflows_into_milliseconds() {
        let mut c = HlcClock::new(500);
        c.raise_to(Hlc::new(10, u16::MAX));
        assert_eq!(c.now(5), Hlc::new(11, 0));
    }

    #[test]
    fn remote_clock_too_far_ahead_is_refused() {
        let mut c = HlcClock::new(500);
        let err = c.observe(Hlc::new(10_000, 0), 9_000).unwrap_err();
        assert_eq!(err.ahead_ms, 1_000);
        assert_eq!(c.last(), Hlc::ZERO);
        c.observe(Hlc::new(9_400, 3), 9_000).unwrap();
        assert!(c.now(9_000) > Hlc::new(9_400, 3));
    }

    proptest! {
        #[test]
        fn clock_is_strictly_monotonic(events in proptest::collection::vec((0u64..1000, any::<bool>(), 0u64..1500), 1..200)) {
            let mut c = HlcClock::new(400);
            let mut prev = Hlc::ZERO;
            for (wall, is_receive, remote) in events {
                if is_receive {
                    let _ = c.observe(Hlc::new(remote, 7), wall);
                    prop_assert!(c.last() >= prev);
                    prev = c.last();
                } else {
                    let t = c.now(wall);
                    prop_assert!(t > prev);
                    prev = t;
                }
            }
        }
    }
}
