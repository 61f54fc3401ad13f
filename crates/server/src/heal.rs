//! Heal reports: when a partition seen from this region ends, how long it
//! lasted, how many ops were exchanged to catch up, and how many conflicts
//! the journal gained since it began. Logged, counted and shown in
//! `/v1/status`.

use serde_json::{json, Value};

/// A heal is reported once peers are caught up, or after this long.
const SETTLE_MAX_MS: u64 = 30_000;

#[derive(Debug, Clone, Default)]
pub struct HealTracker {
    open: Option<Open>,
    last: Option<HealReport>,
    pub heals_total: u64,
}

#[derive(Debug, Clone)]
struct Open {
    started_ms: u64,
    conflicts_at_start: u64,
    healed: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub struct HealReport {
    pub started_ms: u64,
    pub healed_ms: u64,
    pub caught_up_ms: u64,
    pub ops_exchanged: u64,
    pub conflicts_during: u64,
    pub epoch: u64,
}

impl HealReport {
    pub fn json(&self) -> Value {
        json!({
            "partition_started_ms": self.started_ms,
            "healed_ms": self.healed_ms,
            "partition_ms": self.healed_ms.saturating_sub(self.started_ms),
            "catch_up_ms": self.caught_up_ms.saturating_sub(self.healed_ms),
            "ops_exchanged": self.ops_exchanged,
            "conflicts_during": self.conflicts_during,
            "epoch": self.epoch,
        })
    }
}

impl HealTracker {
    pub fn last(&self) -> Option<&HealReport> {
        self.last.as_ref()
    }

    pub fn in_partition_since(&self) -> Option<u64> {
        self.open
            .as_ref()
            .filter(|o| o.healed.is_none())
            .map(|o| o.started_ms)
    }
}

/// What the tracker reads each tick while it follows a partition.
#[derive(Debug, Clone)]
pub struct HealInputs {
    pub partition_started_ms: u64,
    pub partition_ended_ms: Option<u64>,
    pub epoch: u64,
    /// Conflicts the journal holds now.
    pub conflicts_total: u64,
    /// Once the partition has ended: ops sent to and applied from peers
    /// since start, and whether every peer has every op of this region.
    pub exchange: Option<(u64, bool)>,
}

impl HealTracker {
    /// Whether the partition that began at `started_ms` needs readings:
    /// one is being followed, or this one was not reported yet. False once
    /// its report is out, so a healed cluster costs the tick nothing.
    pub fn follows(&self, started_ms: u64) -> bool {
        self.open.is_some()
            || self
                .last
                .as_ref()
                .is_none_or(|l| l.started_ms != started_ms)
    }

    /// Follows the partition the cluster view reports; called every tick
    /// while there is one.
    pub fn observe(&mut self, inputs: &HealInputs, now_ms: u64) {
        let started_ms = inputs.partition_started_ms;
        let fresh = self
            .open
            .as_ref()
            .is_none_or(|o| o.started_ms != started_ms);
        if fresh
            && self
                .last
                .as_ref()
                .is_none_or(|l| l.started_ms != started_ms)
        {
            self.open = Some(Open {
                started_ms,
                conflicts_at_start: inputs.conflicts_total,
                healed: None,
            });
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(healed_ms) = inputs.partition_ended_ms else {
            return;
        };
        let Some((ops, caught_up)) = inputs.exchange else {
            return;
        };
        let (healed_ms, ops_at_heal) = *open.healed.get_or_insert((healed_ms, ops));
        if !caught_up && now_ms.saturating_sub(healed_ms) < SETTLE_MAX_MS {
            return;
        }
        let report = HealReport {
            started_ms: open.started_ms,
            healed_ms,
            caught_up_ms: now_ms,
            ops_exchanged: ops.saturating_sub(ops_at_heal),
            conflicts_during: inputs
                .conflicts_total
                .saturating_sub(open.conflicts_at_start),
            epoch: inputs.epoch,
        };
        tracing::info!(
            partition_ms = healed_ms.saturating_sub(report.started_ms),
            catch_up_ms = now_ms.saturating_sub(healed_ms),
            ops_exchanged = report.ops_exchanged,
            conflicts_during = report.conflicts_during,
            epoch = report.epoch,
            "partition healed"
        );
        self.heals_total += 1;
        self.last = Some(report);
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(ended_ms: Option<u64>, exchange: Option<(u64, bool)>) -> HealInputs {
        HealInputs {
            partition_started_ms: 1_000,
            partition_ended_ms: ended_ms,
            epoch: 3,
            conflicts_total: 7,
            exchange,
        }
    }

    #[test]
    fn a_reported_heal_needs_no_more_readings_until_the_next_partition() {
        let mut tracker = HealTracker::default();
        assert!(tracker.follows(1_000));
        tracker.observe(&inputs(None, None), 1_500);
        assert!(tracker.follows(1_000));
        tracker.observe(&inputs(Some(2_000), Some((10, false))), 2_000);
        assert!(tracker.last().is_none(), "not caught up yet");
        tracker.observe(&inputs(Some(2_000), Some((25, true))), 2_400);
        let report = tracker.last().expect("reported once caught up");
        assert_eq!((report.ops_exchanged, report.caught_up_ms), (15, 2_400));
        assert!(!tracker.follows(1_000));
        assert!(tracker.follows(9_000));
    }
}
