//! Tombstone collection by causal stability.
//!
//! A delete or write that resets a counter leaves its *settled* incarnations
//! behind (see `meridian_crdt::num`): invisible, but needed while some
//! region might still hold the counter unreset, or while an increment to it
//! is in flight. They are dropped in rounds, never by a timer alone:
//!
//! 1. Take the candidates (keys holding settled incarnations, with a
//!    fingerprint of each key's state) and this region's version vector
//!    `V0`, under the store lock. Everything that settled them is in `V0`.
//! 2. Wait until this region and every other data member hold `V0` on
//!    stable storage (each peer's durable vector comes with its `Ack`; a
//!    member not heard from, or down, holds the round). Then every region
//!    has, and will keep after a power loss, the resets; and since a
//!    region's log is in apply order, every op it made before it had them.
//!    Let `R` be the join of those durable vectors.
//! 3. Wait until this region has applied `R`: every increment any region
//!    made to those incarnations before holding them settled is here. From
//!    then on no region adds to them (an origin starts a new incarnation
//!    once its current one is settled).
//! 4. Drop the settled incarnations of every candidate whose state is
//!    unchanged since step 1; a key left holding nothing is removed.
//!
//! A change of membership abandons the round (the candidates are looked at
//! again next time): a region added meanwhile was not asked. A region that
//! merges the state of a peer that has not collected yet drops what it
//! collected again (`Counter::join`), so a merge never brings one back.

use std::sync::Arc;
use std::time::Duration;

use meridian_crdt::VersionVector;

use crate::status::ReplStatus;
use crate::{wall_ms, Host, ReplConfig};

/// Candidates taken per round.
pub const CANDIDATES_MAX: usize = 100_000;
/// How often a round in progress looks again at what it waits for.
const POLL: Duration = Duration::from_millis(100);

/// What tombstone collection has done, for status and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TombstoneStats {
    /// Rounds that collected (or found nothing to collect).
    pub rounds_total: u64,
    /// Rounds abandoned because the membership changed.
    pub rounds_abandoned_total: u64,
    /// Settled counter incarnations dropped.
    pub collected_total: u64,
    /// Keys removed because nothing was left in them.
    pub keys_removed_total: u64,
    /// Candidates of the round in progress (0 when none is).
    pub pending: usize,
    /// What the round in progress waits for.
    pub waiting_for: Option<String>,
    /// Wall-clock ms when the last round ended.
    pub last_round_ms: u64,
}

/// Runs collection rounds every `tombstone_interval_ms` (0: never).
pub async fn run(config: Arc<ReplConfig>, host: Host, status: Arc<ReplStatus>) {
    if config.witness || config.tombstone_interval_ms == 0 {
        return;
    }
    let every = Duration::from_millis(config.tombstone_interval_ms);
    let mut closing = host.closing.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
        if *closing.borrow() {
            return;
        }
        round(&config, &host, &status).await;
    }
}

/// Why a round cannot go on yet, or must be abandoned.
enum Wait {
    For(String),
    Abandon,
}

/// One round (see the module docs).
pub async fn round(config: &ReplConfig, host: &Host, status: &ReplStatus) {
    let members_at_start = host.members.version();
    let (v0, candidates) = {
        let mut store = host.store.lock();
        let v0 = store.db().version_vector().clone();
        (v0, store.db_mut().tombstone_candidates(CANDIDATES_MAX))
    };
    if candidates.is_empty() {
        finish(status, None);
        return;
    }
    status.tombstones.lock().pending = candidates.len();
    // Step 2: every data member holds V0 durably.
    let reported = loop {
        match stable(config, host, status, &v0, members_at_start) {
            Ok(r) => break r,
            Err(Wait::For(what)) => set_waiting(status, what),
            Err(Wait::Abandon) => return abandon(host, status, candidates),
        }
        if !pause(host).await {
            return abandon(host, status, candidates);
        }
    };
    // Step 3: this region has applied everything they held then.
    loop {
        if host.members.version() != members_at_start {
            return abandon(host, status, candidates);
        }
        let caught_up = host.store.lock().db().version_vector().dominates(&reported);
        if caught_up {
            break;
        }
        set_waiting(status, "this region to apply what its peers hold".into());
        if !pause(host).await {
            return abandon(host, status, candidates);
        }
    }
    // Step 4.
    let done = host.store.lock().db_mut().collect_tombstones(candidates);
    if done.incarnations > 0 {
        tracing::debug!(
            incarnations = done.incarnations,
            keys_removed = done.keys_removed,
            changed = done.changed,
            "tombstones collected"
        );
    }
    finish(status, Some(done));
}

/// Step 2's test: `Ok` with the join of the data members' durable vectors
/// once each covers `v0` (this region's included).
fn stable(
    config: &ReplConfig,
    host: &Host,
    status: &ReplStatus,
    v0: &VersionVector,
    members_at_start: u64,
) -> Result<VersionVector, Wait> {
    if host.members.version() != members_at_start {
        return Err(Wait::Abandon);
    }
    if !host.store.lock().durable_vv().dominates(v0) {
        return Err(Wait::For(
            "this region's log to reach stable storage".into(),
        ));
    }
    let mut reported = VersionVector::new();
    let membership = host.members.current();
    let outbound = status.outbound.lock();
    for (peer, _) in membership.peers(config.region, &config.peers) {
        let Some(link) = outbound.get(&peer) else {
            return Err(Wait::For(format!("region {peer} (no link)")));
        };
        match link.peer_witness {
            Some(true) => continue,
            None => return Err(Wait::For(format!("region {peer} (not heard from)"))),
            Some(false) => {}
        }
        if !link.peer_durable_vv.dominates(v0) {
            return Err(Wait::For(format!("region {peer}")));
        }
        reported.join(&link.peer_durable_vv);
    }
    Ok(reported)
}

/// Waits one poll; false when the region is shutting down.
async fn pause(host: &Host) -> bool {
    tokio::time::sleep(POLL).await;
    !*host.closing.borrow()
}

fn set_waiting(status: &ReplStatus, what: String) {
    let mut stats = status.tombstones.lock();
    if stats.waiting_for.as_deref() != Some(what.as_str()) {
        tracing::debug!(waiting_for = %what, "tombstone collection waits");
        stats.waiting_for = Some(what);
    }
}

fn abandon(host: &Host, status: &ReplStatus, candidates: Vec<(meridian_crdt::Blob, u64)>) {
    host.store
        .lock()
        .db_mut()
        .requeue_tombstones(candidates.into_iter().map(|(k, _)| k));
    let mut stats = status.tombstones.lock();
    stats.rounds_abandoned_total += 1;
    stats.pending = 0;
    stats.waiting_for = None;
}

fn finish(status: &ReplStatus, done: Option<meridian_store::db::Collected>) {
    let mut stats = status.tombstones.lock();
    stats.rounds_total += 1;
    stats.pending = 0;
    stats.waiting_for = None;
    stats.last_round_ms = wall_ms();
    if let Some(done) = done {
        stats.collected_total += done.incarnations as u64;
        stats.keys_removed_total += done.keys_removed as u64;
    }
}
