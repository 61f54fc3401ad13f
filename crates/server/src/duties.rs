//! The region's background duties, each a task that runs until the process
//! exits: watching the cluster (failure detection, the quorum lease, the
//! election, heal reports), active expiry, the fsync timer under
//! `--fsync everysec`, scheduled snapshots, and the bound on client
//! tracking's table.

use std::sync::Arc;
use std::time::Duration;

use meridian_store::FsyncPolicy;

use crate::heal::HealInputs;
use crate::metrics::Metrics;
use crate::shared::{wall_ms, Shared};

/// Keys examined per active-expiry pass, and how often passes run.
const EXPIRE_KEYS_PER_PASS_MAX: usize = 200;
const EXPIRE_PASS_INTERVAL_MS: u64 = 100;

/// Starts every duty.
pub fn start(shared: &Arc<Shared>) {
    tokio::spawn(active_expiry(shared.clone()));
    tokio::spawn(watch_the_cluster(shared.clone()));
    if shared.config.fsync == FsyncPolicy::Everysec {
        tokio::spawn(fsync_every_second(shared.clone()));
    }
    tokio::spawn(snapshots(shared.clone()));
    tokio::spawn(wake_blocked_by_peers(shared.clone()));
    tokio::spawn(crate::tracking::bound_table(shared.clone()));
}

/// Wakes clients blocked on keys that ops from peers (or merged state)
/// changed: a push made in another region serves a BLPOP here once it is
/// applied. Local writes wake them at the end of their own batch. The
/// changes peers made go to notifications and tracking here too.
async fn wake_blocked_by_peers(shared: Arc<Shared>) {
    let mut applied = shared.host.applied.subscribe();
    // Merged state does not announce itself on `applied`: a slow tick
    // covers it while anyone is blocked.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
        let blocked = shared.blocking.lock().count() > 0;
        if !blocked && !crate::events::wanted(&shared) {
            continue;
        }
        let mut store = shared.store.lock();
        if blocked {
            let _ = crate::blocking::wake_ready(&shared, &mut store);
        }
        crate::events::drain(&shared, &mut store, None);
    }
}

/// Re-evaluates failure detection, the quorum lease and the election every
/// 50 ms; each change of view raises the epoch, is logged and counted, and
/// stamps the conflict journal from then on.
async fn watch_the_cluster(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_epoch = shared.host.view.lock().epoch();
    loop {
        tick.tick().await;
        let now = wall_ms();
        let (transitions, epoch) = {
            let mut view = shared.host.view.lock();
            (view.tick(now), view.epoch())
        };
        observe_heal(&shared, now);
        shared.host.election_tick();
        // Membership changes raise the epoch outside `tick`.
        if epoch != last_epoch {
            shared.store.lock().set_epoch(epoch);
            last_epoch = epoch;
        }
        for t in &transitions {
            Metrics::inc(&shared.metrics.view_changes_total);
            match &t.change {
                meridian_cluster::Change::PeerLiveness { peer, from, to } => {
                    if *to == meridian_cluster::Liveness::Down {
                        tracing::warn!(epoch = t.epoch, %peer, from = from.name(), "peer is down")
                    } else {
                        tracing::info!(epoch = t.epoch, %peer, to = to.name(), "peer is back")
                    }
                }
                meridian_cluster::Change::LeaseLost { reason } => {
                    Metrics::inc(&shared.metrics.fenced_total);
                    tracing::warn!(epoch = t.epoch, %reason, "quorum lease lost: majority and primary keyspaces are fenced")
                }
                meridian_cluster::Change::LeaseRegained => {
                    tracing::info!(
                        epoch = t.epoch,
                        "quorum lease regained: fenced keyspaces are writable again"
                    )
                }
                // Logged by the link manager when it applies the change.
                meridian_cluster::Change::MembersChanged { .. } => {}
            }
        }
    }
}

/// Deletes expired keys nobody reads, a bounded number per pass, so a mass
/// expiry never holds the lock for long.
async fn active_expiry(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(EXPIRE_PASS_INTERVAL_MS));
    loop {
        tick.tick().await;
        let mut expired = 0;
        loop {
            let mut store = shared.store.lock();
            if store.is_poisoned() {
                break;
            }
            store.db_mut().set_now_ms(wall_ms());
            let before = store.log().last_lsn();
            let n = store.db_mut().expire_due(EXPIRE_KEYS_PER_PASS_MAX);
            crate::events::drain(&shared, &mut store, None);
            if !crate::commit::finish(&shared, store, before) {
                break;
            }
            expired += n;
            // Keep going while a quarter of the pass was due, as Redis does.
            if n < EXPIRE_KEYS_PER_PASS_MAX / 4 || expired >= EXPIRE_KEYS_PER_PASS_MAX * 10 {
                break;
            }
        }
    }
}

async fn fsync_every_second(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if shared.store.lock().is_poisoned() {
            continue;
        }
        let host = shared.host.clone();
        let result = tokio::task::spawn_blocking(move || host.sync()).await;
        if let Ok(Err(e)) = result {
            crate::commit::poison(&shared, "fsync of the op log", &e);
        }
    }
}

/// Compacts the log with a snapshot once enough ops accumulated. The
/// keyspace is serialized under the lock; the file is written without it.
async fn snapshots(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let due = {
            let store = shared.store.lock();
            !store.is_poisoned() && store.ops_since_snapshot() >= shared.config.snapshot_after_ops
        };
        if due {
            if let Err(e) = crate::snapshot::take(&shared).await {
                tracing::error!(error = %e, "snapshot failed");
            }
        }
    }
}

/// Feeds the heal tracker what it needs while it follows a partition. The
/// inputs are read before the tracker's lock is taken, so the tracker never
/// holds its lock while the store's is taken; once a partition's report is
/// out, nothing is read at all.
fn observe_heal(shared: &Shared, now_ms: u64) {
    let (partition, epoch) = {
        let view = shared.host.view.lock();
        (view.partition().cloned(), view.epoch())
    };
    let Some(partition) = partition else { return };
    if !shared.heal.lock().follows(partition.started_ms) {
        return;
    }
    let (conflicts_total, exchange) = {
        let store = shared.store.lock();
        let exchange = partition.ended_ms.map(|_| {
            let peers = shared.repl.view(store.log().last_lsn(), now_ms, |lsn| {
                store.appended_ms_after(lsn)
            });
            (
                peers.iter().map(|p| p.ops_sent + p.ops_applied).sum(),
                peers.iter().all(|p| p.lag_ops == 0),
            )
        });
        (store.journal().counts().values().sum::<u64>(), exchange)
    };
    let inputs = HealInputs {
        partition_started_ms: partition.started_ms,
        partition_ended_ms: partition.ended_ms,
        epoch,
        conflicts_total,
        exchange,
    };
    shared.heal.lock().observe(&inputs, now_ms);
}
