//! What a link does to the bytes crossing it: [`LinkConditions`] for one
//! directed link, made of one [`Direction`] each way.
//!
//! These are plain values. A [`crate::LinkControl`] validates them with
//! [`LinkConditions::validate`] before they take effect, so the proxy never has
//! to handle a loss probability of 1.5 or a bandwidth of zero bytes a second.

/// Longest delay (including jitter) a direction may be given: one hour. It
/// keeps every deadline the proxy computes far from `Instant` overflow, and no
/// test needs more.
pub const DELAY_MS_MAX: u64 = 3_600_000;

/// A lost chunk is delivered after an extra penalty of this many times the
/// direction's one-way delay ...
pub const LOSS_PENALTY_DELAY_FACTOR: u64 = 3;
/// ... but never less than this, Linux's minimum TCP retransmission timeout.
pub const LOSS_PENALTY_MIN_MS: u64 = 200;

/// The conditions of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Direction {
    /// Base one-way delay added to every chunk of bytes.
    pub delay_ms: u64,
    /// Each chunk's delay is drawn uniformly from
    /// `delay_ms - jitter_ms ..= delay_ms + jitter_ms` (floored at zero). Jitter
    /// never reorders bytes; see the crate docs.
    pub jitter_ms: u64,
    /// Probability in `0.0..=1.0` that a chunk is "lost", i.e. delivered only
    /// after a retransmission penalty; see the crate docs.
    pub loss: f64,
    /// `false` partitions the link: its connections are closed and new ones are
    /// refused.
    pub up: bool,
    /// Delivery rate limit; `None` is unlimited. Must not be `Some(0)`.
    pub bandwidth_bytes_per_s: Option<u64>,
}

impl Direction {
    /// A perfect direction: no delay, no loss, no limit, up.
    pub const IDEAL: Direction = Direction {
        delay_ms: 0,
        jitter_ms: 0,
        loss: 0.0,
        up: true,
        bandwidth_bytes_per_s: None,
    };

    /// A direction that is down (partitioned).
    pub const DOWN: Direction = Direction {
        up: false,
        ..Direction::IDEAL
    };

    /// An up direction with a fixed one-way delay and nothing else.
    pub const fn delayed(delay_ms: u64) -> Direction {
        Direction {
            delay_ms,
            ..Direction::IDEAL
        }
    }

    /// The extra delay a lost chunk suffers on top of its sampled delay.
    pub fn loss_penalty_ms(&self) -> u64 {
        (self.delay_ms * LOSS_PENALTY_DELAY_FACTOR).max(LOSS_PENALTY_MIN_MS)
    }

    fn validate(&self, direction: &'static str) -> Result<(), ConditionsError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(ConditionsError::LossOutOfRange {
                direction,
                loss: self.loss,
            });
        }
        if self.bandwidth_bytes_per_s == Some(0) {
            return Err(ConditionsError::ZeroBandwidth { direction });
        }
        let delay_max_ms = self.delay_ms.saturating_add(self.jitter_ms);
        if delay_max_ms > DELAY_MS_MAX {
            return Err(ConditionsError::DelayTooLarge {
                direction,
                delay_ms: delay_max_ms,
            });
        }
        Ok(())
    }
}

impl Default for Direction {
    fn default() -> Direction {
        Direction::IDEAL
    }
}

/// The conditions of one directed link A→B. `forward` is what happens to bytes
/// A sends to B (the op stream), `backward` to bytes B sends back on the same
/// connection (acknowledgements).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkConditions {
    pub forward: Direction,
    pub backward: Direction,
}

impl LinkConditions {
    /// A perfect link, the state every proxy starts in.
    pub const IDEAL: LinkConditions = LinkConditions {
        forward: Direction::IDEAL,
        backward: Direction::IDEAL,
    };

    /// A WAN link with the same fixed one-way delay each way, so the round
    /// trip is `2 * one_way_delay_ms`.
    pub const fn wan(one_way_delay_ms: u64) -> LinkConditions {
        LinkConditions {
            forward: Direction::delayed(one_way_delay_ms),
            backward: Direction::delayed(one_way_delay_ms),
        }
    }

    /// Both directions down.
    pub const fn partitioned() -> LinkConditions {
        LinkConditions {
            forward: Direction::DOWN,
            backward: Direction::DOWN,
        }
    }

    /// An otherwise perfect link with each direction up or down. Any direction
    /// down cuts the TCP connection; see the crate docs on one-way partitions.
    pub const fn one_way(forward_up: bool, backward_up: bool) -> LinkConditions {
        LinkConditions {
            forward: Direction {
                up: forward_up,
                ..Direction::IDEAL
            },
            backward: Direction {
                up: backward_up,
                ..Direction::IDEAL
            },
        }
    }

    /// The same conditions with both directions' `up` set to `up`, delays and
    /// limits kept. Partitioning and healing through this keeps a WAN profile
    /// in place across the cut.
    pub const fn with_up(self, up: bool) -> LinkConditions {
        LinkConditions {
            forward: Direction { up, ..self.forward },
            backward: Direction {
                up,
                ..self.backward
            },
        }
    }

    /// The same conditions with `jitter_ms` set on both directions.
    pub const fn with_jitter(self, jitter_ms: u64) -> LinkConditions {
        LinkConditions {
            forward: Direction {
                jitter_ms,
                ..self.forward
            },
            backward: Direction {
                jitter_ms,
                ..self.backward
            },
        }
    }

    /// The same conditions with `loss` set on both directions.
    pub const fn with_loss(self, loss: f64) -> LinkConditions {
        LinkConditions {
            forward: Direction {
                loss,
                ..self.forward
            },
            backward: Direction {
                loss,
                ..self.backward
            },
        }
    }

    /// The same conditions with a bandwidth limit on both directions.
    pub const fn with_bandwidth(self, bytes_per_s: u64) -> LinkConditions {
        LinkConditions {
            forward: Direction {
                bandwidth_bytes_per_s: Some(bytes_per_s),
                ..self.forward
            },
            backward: Direction {
                bandwidth_bytes_per_s: Some(bytes_per_s),
                ..self.backward
            },
        }
    }

    /// True when both directions are up, the only state in which the link
    /// carries a connection.
    pub fn is_up(&self) -> bool {
        self.forward.up && self.backward.up
    }

    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConditionsError> {
        self.forward.validate("forward")?;
        self.backward.validate("backward")
    }
}

/// Why a [`LinkConditions`] value was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionsError {
    #[error("{direction} loss {loss} is outside 0.0..=1.0")]
    LossOutOfRange { direction: &'static str, loss: f64 },
    #[error(
        "{direction} bandwidth of 0 bytes/s would stall the link forever; partition it instead"
    )]
    ZeroBandwidth { direction: &'static str },
    #[error(
        "{direction} delay plus jitter of {delay_ms} ms exceeds the limit of {DELAY_MS_MAX} ms"
    )]
    DelayTooLarge {
        direction: &'static str,
        delay_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_validate() {
        for c in [
            LinkConditions::IDEAL,
            LinkConditions::wan(40),
            LinkConditions::partitioned(),
            LinkConditions::one_way(true, false),
            LinkConditions::wan(40)
                .with_jitter(10)
                .with_loss(0.1)
                .with_bandwidth(1_000),
        ] {
            assert_eq!(c.validate(), Ok(()), "{c:?}");
        }
    }

    #[test]
    fn out_of_range_fields_are_rejected() {
        let bad_loss = LinkConditions::IDEAL.with_loss(1.5);
        assert!(matches!(
            bad_loss.validate(),
            Err(ConditionsError::LossOutOfRange { .. })
        ));
        let nan_loss = LinkConditions::IDEAL.with_loss(f64::NAN);
        assert!(nan_loss.validate().is_err());
        let zero_bw = LinkConditions::IDEAL.with_bandwidth(0);
        assert_eq!(
            zero_bw.validate(),
            Err(ConditionsError::ZeroBandwidth {
                direction: "forward"
            })
        );
        let mut too_slow = LinkConditions::IDEAL;
        too_slow.backward.delay_ms = DELAY_MS_MAX;
        too_slow.backward.jitter_ms = 1;
        assert!(matches!(
            too_slow.validate(),
            Err(ConditionsError::DelayTooLarge {
                direction: "backward",
                ..
            })
        ));
    }

    #[test]
    fn loss_penalty_is_three_one_way_delays_with_a_floor() {
        assert_eq!(Direction::delayed(0).loss_penalty_ms(), 200);
        assert_eq!(Direction::delayed(50).loss_penalty_ms(), 200);
        assert_eq!(Direction::delayed(100).loss_penalty_ms(), 300);
    }

    #[test]
    fn with_up_keeps_delays() {
        let c = LinkConditions::wan(30).with_up(false);
        assert!(!c.is_up());
        assert_eq!(c.with_up(true), LinkConditions::wan(30));
    }
}
