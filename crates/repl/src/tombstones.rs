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

//! The round itself is [`Round`], a state machine that does no I/O: it is
//! fed this region's durable and applied vectors and what each peer's acks
//! said, and answers wait, abandon or collect. [`run`] drives it on a timer
//! against the live store and link status; the simulator drives the same
//! `Round` over its simulated links.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use meridian_crdt::{Blob, RegionId, VersionVector};

use crate::status::ReplStatus;
use crate::{wall_ms, Host, ReplConfig};

/// Candidates taken per round.
pub const CANDIDATES_MAX: usize = 100_000;
/// How often a round in progress looks again at what it waits for.
const POLL: Duration = Duration::from_millis(100);

/// Keys holding settled incarnations, each with a fingerprint of its state
/// when taken ([`meridian_store::Db::tombstone_candidates`]).
pub type Candidates = Vec<(Blob, u64)>;

/// What a round knows of one data member other than this region.
#[derive(Debug, Clone, Copy)]
pub enum PeerDurable<'a> {
    /// No link to it: it cannot have said what it holds.
    NoLink,
    /// Linked but never heard from: it may still be a data member.
    NotHeard,
    /// A witness holds no data, so it holds nothing to wait for.
    Witness,
    /// What its last ack said it holds on stable storage.
    Durable(&'a VersionVector),
}

/// What a round in progress waits for (shown in `/v1/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// This region's log to reach stable storage up to `V0`.
    OwnLog,
    NoLink(RegionId),
    NotHeard(RegionId),
    /// A peer's durable vector to cover `V0`.
    Peer(RegionId),
    /// This region to apply the join of what its peers held.
    OwnApply,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::OwnLog => f.write_str("this region's log to reach stable storage"),
            Waiting::NoLink(p) => write!(f, "region {p} (no link)"),
            Waiting::NotHeard(p) => write!(f, "region {p} (not heard from)"),
            Waiting::Peer(p) => write!(f, "region {p}"),
            Waiting::OwnApply => f.write_str("this region to apply what its peers hold"),
        }
    }
}

/// What a round is fed at each step.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The membership's version now: a change abandons the round.
    pub members_version: u64,
    /// This region's vector as of its stable storage (`Store::durable_vv`).
    pub durable_vv: &'a VersionVector,
    /// This region's vector as applied (`Db::version_vector`).
    pub applied_vv: &'a VersionVector,
}

/// What a round answers to a step.
#[derive(Debug)]
pub enum Step {
    /// Not yet: feed the round again later.
    Wait(Round, Waiting),
    /// The membership changed: put the candidates back
    /// (`Db::requeue_tombstones`), they are looked at next time.
    Abandon(Candidates),
    /// Stable: collect these (`Db::collect_tombstones`).
    Collect(Candidates),
}

/// One collection round (steps 2 to 4 of the module docs), without I/O.
#[derive(Debug)]
pub struct Round {
    v0: VersionVector,
    members_version: u64,
    candidates: Candidates,
    /// The join of the data members' durable vectors, once each covered
    /// `v0` (step 2 passed).
    reported: Option<VersionVector>,
    unsafe_skip_stability: bool,
}

impl Round {
    /// Step 1: a round over `candidates`, taken together with this region's
    /// vector `v0` under one store lock; `None` when there is nothing to
    /// collect.
    pub fn begin(v0: VersionVector, candidates: Candidates, members_version: u64) -> Option<Round> {
        (!candidates.is_empty()).then_some(Round {
            v0,
            members_version,
            candidates,
            reported: None,
            unsafe_skip_stability: false,
        })
    }

    /// Collects at the first step, without waiting for stability. Wrong on
    /// purpose: the simulator's `collect-early` breakage proves that its
    /// checkers catch it.
    pub fn unsafe_skip_stability(mut self) -> Round {
        self.unsafe_skip_stability = true;
        self
    }

    pub fn candidates_len(&self) -> usize {
        self.candidates.len()
    }

    /// Gives the candidates back (the round is dropped unfinished).
    pub fn into_candidates(self) -> Candidates {
        self.candidates
    }

    /// Looks at what the round waits for. `peers` are the data members
    /// other than this region, as the membership lists them now.
    pub fn step<'a>(
        mut self,
        now: Progress<'_>,
        peers: impl IntoIterator<Item = (RegionId, PeerDurable<'a>)>,
    ) -> Step {
        if now.members_version != self.members_version {
            return Step::Abandon(self.candidates);
        }
        if self.unsafe_skip_stability {
            return Step::Collect(self.candidates);
        }
        let reported = match self.reported.take() {
            Some(r) => r,
            None => match self.stable(now, peers) {
                Ok(r) => r,
                Err(what) => return Step::Wait(self, what),
            },
        };
        if !now.applied_vv.dominates(&reported) {
            self.reported = Some(reported);
            return Step::Wait(self, Waiting::OwnApply);
        }
        Step::Collect(self.candidates)
    }

    /// Step 2's test: the join of the data members' durable vectors once
    /// each covers `v0` (this region's included).
    fn stable<'a>(
        &self,
        now: Progress<'_>,
        peers: impl IntoIterator<Item = (RegionId, PeerDurable<'a>)>,
    ) -> Result<VersionVector, Waiting> {
        if !now.durable_vv.dominates(&self.v0) {
            return Err(Waiting::OwnLog);
        }
        let mut reported = VersionVector::new();
        for (peer, held) in peers {
            match held {
                PeerDurable::NoLink => return Err(Waiting::NoLink(peer)),
                PeerDurable::NotHeard => return Err(Waiting::NotHeard(peer)),
                PeerDurable::Witness => continue,
                PeerDurable::Durable(vv) if !vv.dominates(&self.v0) => {
                    return Err(Waiting::Peer(peer))
                }
                PeerDurable::Durable(vv) => reported.join(vv),
            }
        }
        Ok(reported)
    }
}

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

/// One round (see the module docs), driving a [`Round`].
pub async fn round(config: &ReplConfig, host: &Host, status: &ReplStatus) {
    let begun = {
        let mut store = host.store.lock();
        let v0 = store.db().version_vector().clone();
        let candidates = store.db_mut().tombstone_candidates(CANDIDATES_MAX);
        Round::begin(v0, candidates, host.members.version())
    };
    let Some(mut round) = begun else {
        finish(status, None);
        return;
    };
    status.tombstones.lock().pending = round.candidates_len();
    loop {
        match step(config, host, status, round) {
            Step::Collect(candidates) => {
                let done = host.store.lock().db_mut().collect_tombstones(candidates);
                if done.incarnations > 0 {
                    tracing::debug!(
                        incarnations = done.incarnations,
                        keys_removed = done.keys_removed,
                        changed = done.changed,
                        "tombstones collected"
                    );
                }
                return finish(status, Some(done));
            }
            Step::Abandon(candidates) => return abandon(host, status, candidates),
            Step::Wait(waiting, what) => {
                set_waiting(status, what.to_string());
                round = waiting;
            }
        }
        if !pause(host).await {
            return abandon(host, status, round.into_candidates());
        }
    }
}

/// Feeds `round` this region's vectors and what the links' acks said.
fn step(config: &ReplConfig, host: &Host, status: &ReplStatus, round: Round) -> Step {
    let (durable_vv, applied_vv) = {
        let mut store = host.store.lock();
        let durable = store.durable_vv().clone();
        (durable, store.db().version_vector().clone())
    };
    let now = Progress {
        members_version: host.members.version(),
        durable_vv: &durable_vv,
        applied_vv: &applied_vv,
    };
    let membership = host.members.current();
    let outbound = status.outbound.lock();
    let peers = membership
        .peers(config.region, &config.peers)
        .into_iter()
        .map(|(peer, _)| {
            let held = match outbound.get(&peer) {
                None => PeerDurable::NoLink,
                Some(link) => match link.peer_witness {
                    None => PeerDurable::NotHeard,
                    Some(true) => PeerDurable::Witness,
                    Some(false) => PeerDurable::Durable(&link.peer_durable_vv),
                },
            };
            (peer, held)
        });
    round.step(now, peers)
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

fn abandon(host: &Host, status: &ReplStatus, candidates: Candidates) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> RegionId {
        RegionId::new(name).unwrap()
    }

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (r, seq) in entries {
            v.set(id(r), *seq);
        }
        v
    }

    fn round() -> Round {
        let candidates = vec![(Blob::from("k"), 7)];
        Round::begin(vv(&[("a", 3)]), candidates, 1).unwrap()
    }

    fn progress<'a>(durable: &'a VersionVector, applied: &'a VersionVector) -> Progress<'a> {
        Progress {
            members_version: 1,
            durable_vv: durable,
            applied_vv: applied,
        }
    }

    fn waits_for(step: Step) -> (Round, Waiting) {
        match step {
            Step::Wait(round, what) => (round, what),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn no_candidates_no_round() {
        assert!(Round::begin(VersionVector::new(), Vec::new(), 0).is_none());
    }

    /// Each condition holds the round in turn: this region's log, a peer
    /// without a link, one not heard from, one whose durable vector lacks
    /// `V0`; then this region must apply what a peer reported beyond `V0`.
    /// A witness is never waited for.
    #[test]
    fn a_round_waits_for_every_data_member_then_for_applying_their_join() {
        let v0 = vv(&[("a", 3)]);
        let beyond = vv(&[("a", 3), ("b", 9)]);
        let (r, what) = waits_for(round().step(progress(&VersionVector::new(), &v0), []));
        assert_eq!(what, Waiting::OwnLog);
        let (r, what) = waits_for(r.step(progress(&v0, &v0), [(id("b"), PeerDurable::NoLink)]));
        assert_eq!(what, Waiting::NoLink(id("b")));
        let (r, what) = waits_for(r.step(progress(&v0, &v0), [(id("b"), PeerDurable::NotHeard)]));
        assert_eq!(what.to_string(), "region b (not heard from)");
        let behind = vv(&[("a", 2)]);
        let peers = [
            (id("w"), PeerDurable::Witness),
            (id("b"), PeerDurable::Durable(&behind)),
        ];
        let (r, what) = waits_for(r.step(progress(&v0, &v0), peers));
        assert_eq!(what, Waiting::Peer(id("b")));
        let peers = [
            (id("w"), PeerDurable::Witness),
            (id("b"), PeerDurable::Durable(&beyond)),
        ];
        let (r, what) = waits_for(r.step(progress(&v0, &v0), peers));
        assert_eq!(what, Waiting::OwnApply);
        // Step 2 passed once: the reported join is kept, peers are not asked.
        let (r, what) = waits_for(r.step(progress(&v0, &v0), []));
        assert_eq!(what, Waiting::OwnApply);
        match r.step(progress(&v0, &beyond), []) {
            Step::Collect(c) => assert_eq!(c, vec![(Blob::from("k"), 7)]),
            other => panic!("expected a collection, got {other:?}"),
        }
    }

    #[test]
    fn a_change_of_membership_abandons_the_round_with_its_candidates() {
        let v0 = vv(&[("a", 3)]);
        let (r, _) = waits_for(round().step(progress(&v0, &v0), [(id("b"), PeerDurable::NoLink)]));
        let mut now = progress(&v0, &v0);
        now.members_version = 2;
        match r.step(now, []) {
            Step::Abandon(c) => assert_eq!(c.len(), 1),
            other => panic!("expected the round abandoned, got {other:?}"),
        }
    }

    #[test]
    fn skipping_stability_collects_at_once() {
        let none = VersionVector::new();
        let r = round().unsafe_skip_stability();
        let step = r.step(progress(&none, &none), [(id("b"), PeerDurable::NoLink)]);
        assert!(matches!(step, Step::Collect(_)), "{step:?}");
    }
}
