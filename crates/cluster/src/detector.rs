//! Phi-accrual failure detection.
//!
//! Each peer's messages arrive at some rhythm (heartbeats when idle, op
//! batches when busy). Phi measures how surprising the current silence is
//! given that rhythm: with inter-arrival times modelled as exponential with
//! the observed mean, `phi(t) = t / mean · log10(e)`, so phi 1 means a 10%
//! chance the peer is still alive and merely slow, phi 8 one in 10^8. A peer
//! is `suspect` past one threshold and `down` past another.

use std::collections::VecDeque;

/// Inter-arrival samples kept per peer.
const SAMPLES_MAX: usize = 200;
/// Intervals shorter than this are counted as this: ops batches can arrive
/// microseconds apart, which would make any pause look like death.
const INTERVAL_FLOOR_MS: f64 = 50.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Liveness {
    Up,
    Suspect,
    Down,
}

impl Liveness {
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub suspect_phi: f64,
    pub down_phi: f64,
    /// Expected heartbeat interval, used before any sample exists and as a
    /// floor for the mean.
    pub heartbeat_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            suspect_phi: 3.0,
            down_phi: 8.0,
            heartbeat_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Detector {
    last_heard_ms: Option<u64>,
    intervals: VecDeque<f64>,
    sum: f64,
}

impl Detector {
    /// Records a message from the peer at `now_ms`.
    pub fn heard(&mut self, now_ms: u64) {
        if let Some(last) = self.last_heard_ms {
            if now_ms <= last {
                return;
            }
            let interval = ((now_ms - last) as f64).max(INTERVAL_FLOOR_MS);
            if self.intervals.len() == SAMPLES_MAX {
                self.sum -= self.intervals.pop_front().unwrap_or(0.0);
            }
            self.intervals.push_back(interval);
            self.sum += interval;
        }
        self.last_heard_ms = Some(now_ms);
    }

    pub fn last_heard_ms(&self) -> Option<u64> {
        self.last_heard_ms
    }

    /// Forgets the rhythm (a new connection starts a new one).
    pub fn reset(&mut self) {
        self.intervals.clear();
        self.sum = 0.0;
    }

    pub fn phi(&self, now_ms: u64, t: &Thresholds) -> f64 {
        let Some(last) = self.last_heard_ms else {
            return f64::INFINITY;
        };
        let mean = if self.intervals.is_empty() {
            t.heartbeat_ms as f64
        } else {
            self.sum / self.intervals.len() as f64
        }
        .max(t.heartbeat_ms as f64);
        let silence = now_ms.saturating_sub(last) as f64;
        silence / mean * std::f64::consts::LOG10_E
    }

    pub fn liveness(&self, now_ms: u64, t: &Thresholds) -> Liveness {
        let phi = self.phi(now_ms, t);
        if phi >= t.down_phi {
            Liveness::Down
        } else if phi >= t.suspect_phi {
            Liveness::Suspect
        } else {
            Liveness::Up
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_moves_a_peer_from_up_to_suspect_to_down() {
        let t = Thresholds::default();
        let mut d = Detector::default();
        assert_eq!(d.liveness(0, &t), Liveness::Down, "never heard");
        for i in 0..20 {
            d.heard(i * 250);
        }
        let last = 19 * 250;
        assert_eq!(d.liveness(last + 300, &t), Liveness::Up);
        // phi 3 at 3 / log10(e) = 6.9 mean intervals, phi 8 at 18.4.
        assert_eq!(d.liveness(last + 2_000, &t), Liveness::Suspect);
        assert_eq!(d.liveness(last + 4_700, &t), Liveness::Down);
        d.heard(last + 5_000);
        assert_eq!(d.liveness(last + 5_100, &t), Liveness::Up);
    }

    #[test]
    fn a_burst_of_messages_does_not_make_a_short_pause_fatal() {
        let t = Thresholds::default();
        let mut d = Detector::default();
        for i in 0..100 {
            d.heard(1_000 + i);
        }
        assert_eq!(d.liveness(1_100 + 400, &t), Liveness::Up);
    }
}
