//! Heal reports: when a partition seen from this region ends, how long it
//! lasted, how many ops were exchanged to catch up, and how many conflicts
//! the journal gained since it began. Logged, counted and shown in
//! `/v1/status`.

use serde_json::{json, Value};

use crate::shared::Shared;

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

fn conflicts_total(shared: &Shared) -> u64 {
    shared.store.lock().journal().counts().values().sum()
}

fn ops_exchanged_total(shared: &Shared) -> (u64, bool) {
    let store = shared.store.lock();
    let peers = shared
        .repl
        .view(store.log().last_lsn(), crate::shared::wall_ms(), |lsn| {
            store.appended_ms_after(lsn)
        });
    drop(store);
    let ops = peers.iter().map(|p| p.ops_sent + p.ops_applied).sum();
    let caught_up = peers.iter().all(|p| p.lag_ops == 0);
    (ops, caught_up)
}

/// Follows the partition the cluster view reports; called every tick.
pub fn observe(shared: &Shared, now_ms: u64) {
    let (partition, epoch) = {
        let view = shared.host.view.lock();
        (view.partition().cloned(), view.epoch())
    };
    let Some(p) = partition else { return };
    let mut tracker = shared.heal.lock();
    let fresh = tracker
        .open
        .as_ref()
        .is_none_or(|o| o.started_ms != p.started_ms);
    if fresh
        && tracker
            .last
            .as_ref()
            .is_none_or(|l| l.started_ms != p.started_ms)
    {
        tracker.open = Some(Open {
            started_ms: p.started_ms,
            conflicts_at_start: conflicts_total(shared),
            healed: None,
        });
    }
    let Some(open) = tracker.open.as_mut() else {
        return;
    };
    let Some(healed_ms) = p.ended_ms else { return };
    let (ops, caught_up) = ops_exchanged_total(shared);
    let (healed_ms, ops_at_heal) = *open.healed.get_or_insert((healed_ms, ops));
    if !caught_up && now_ms.saturating_sub(healed_ms) < SETTLE_MAX_MS {
        return;
    }
    let report = HealReport {
        started_ms: open.started_ms,
        healed_ms,
        caught_up_ms: now_ms,
        ops_exchanged: ops.saturating_sub(ops_at_heal),
        conflicts_during: conflicts_total(shared).saturating_sub(open.conflicts_at_start),
        epoch,
    };
    tracing::info!(
        partition_ms = healed_ms.saturating_sub(report.started_ms),
        catch_up_ms = now_ms.saturating_sub(healed_ms),
        ops_exchanged = report.ops_exchanged,
        conflicts_during = report.conflicts_during,
        epoch,
        "partition healed"
    );
    tracker.heals_total += 1;
    tracker.last = Some(report);
    tracker.open = None;
}
