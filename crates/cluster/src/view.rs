//! A region's view of the cluster: which peers it hears from, whether that
//! is a majority (witnesses count), the quorum lease, and the epoch.
//!
//! The lease: a region holds it at time `now` while it has heard, within
//! the last `lease_ms`, from enough peers that together with itself they
//! are a majority of all members. A region cut off from the majority
//! therefore stops writing `majority` and `primary` keys at most `lease_ms`
//! after it last heard from the majority — bounding the split-brain window —
//! while the majority side, which still hears a majority, keeps writing.
//!
//! The epoch increases at every change of the view (a peer going down or
//! coming back, the lease lost or regained); journal entries, status and
//! logs carry it.
//!
//! Time: callers pass the wall clock, but the view keeps its own *view
//! time*, which follows the wall clock forwards and ignores its jumps
//! backwards. A clock set back must not stretch a lease (a cut-off region
//! would keep writing `majority` keys past it); a jump forwards only ends a
//! lease early. Without jumps, view time is the wall clock.

use std::collections::{BTreeMap, VecDeque};

use meridian_crdt::RegionId;

use crate::detector::{Detector, Liveness, Thresholds};

/// Transitions remembered for status.
const TRANSITIONS_KEPT: usize = 100;

#[derive(Debug, Clone)]
pub struct ViewConfig {
    pub me: RegionId,
    /// Every other member, data regions and witnesses alike.
    pub peers: Vec<RegionId>,
    pub lease_ms: u64,
    pub thresholds: Thresholds,
    /// A deliberate bug for the simulator's checker tests: view time is
    /// the wall clock itself, jumps backwards included. Never set outside
    /// those tests.
    pub unsafe_wall_clock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    PeerLiveness {
        peer: RegionId,
        from: Liveness,
        to: Liveness,
    },
    LeaseLost {
        reason: String,
    },
    LeaseRegained,
    /// An operator added or removed a region (or this region learned of it).
    MembersChanged {
        added: Vec<RegionId>,
        removed: Vec<RegionId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at_ms: u64,
    pub epoch: u64,
    pub change: Change,
}

/// A partition as seen from here: from the first peer lost to all back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub epoch_at_start: u64,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    config: ViewConfig,
    detectors: BTreeMap<RegionId, Detector>,
    liveness: BTreeMap<RegionId, Liveness>,
    epoch: u64,
    lease_held: bool,
    started_ms: u64,
    /// View time at the last call that advanced it, and the wall clock then.
    clock_ms: u64,
    wall_seen_ms: u64,
    transitions: VecDeque<Transition>,
    partition: Option<Partition>,
    /// Peers that announced a clean shutdown and have not reconnected.
    left: std::collections::BTreeSet<RegionId>,
}

impl ClusterView {
    pub fn new(config: ViewConfig, now_ms: u64) -> ClusterView {
        let detectors = config
            .peers
            .iter()
            .map(|p| (*p, Detector::default()))
            .collect();
        let liveness = config.peers.iter().map(|p| (*p, Liveness::Down)).collect();
        let mut view = ClusterView {
            config,
            detectors,
            liveness,
            epoch: 1,
            lease_held: true,
            started_ms: now_ms,
            clock_ms: now_ms,
            wall_seen_ms: now_ms,
            transitions: VecDeque::new(),
            partition: None,
            left: Default::default(),
        };
        view.lease_held = view.lease(now_ms).is_ok();
        view
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// View time at wall-clock `now_ms`.
    pub fn time_ms(&self, now_ms: u64) -> u64 {
        if self.config.unsafe_wall_clock {
            return now_ms;
        }
        self.clock_ms + now_ms.saturating_sub(self.wall_seen_ms)
    }

    /// Moves view time to wall-clock `now_ms` (never backwards).
    fn advance(&mut self, now_ms: u64) -> u64 {
        let t = self.time_ms(now_ms);
        assert!(
            self.config.unsafe_wall_clock || t >= self.clock_ms,
            "view time went back from {} to {t}",
            self.clock_ms
        );
        self.clock_ms = t;
        self.wall_seen_ms = now_ms;
        t
    }

    pub fn members(&self) -> usize {
        self.config.peers.len() + 1
    }

    pub fn majority(&self) -> usize {
        self.members() / 2 + 1
    }

    pub fn lease_ms(&self) -> u64 {
        self.config.lease_ms
    }

    /// Replaces the peers (after a membership change): a new peer starts
    /// down until heard, a removed one stops counting toward the majority.
    /// Raises the epoch; the lease is re-evaluated at the next tick.
    pub fn set_peers(&mut self, peers: &[RegionId], now_ms: u64) -> Option<Transition> {
        let added: Vec<RegionId> = peers
            .iter()
            .filter(|p| !self.config.peers.contains(p))
            .copied()
            .collect();
        let removed: Vec<RegionId> = self
            .config
            .peers
            .iter()
            .filter(|p| !peers.contains(p))
            .copied()
            .collect();
        if added.is_empty() && removed.is_empty() {
            return None;
        }
        for p in &added {
            self.detectors.insert(*p, Detector::default());
            self.liveness.insert(*p, Liveness::Down);
        }
        for p in &removed {
            self.detectors.remove(p);
            self.liveness.remove(p);
            self.left.remove(p);
        }
        self.config.peers = peers.to_vec();
        Some(self.bump(now_ms, Change::MembersChanged { added, removed }))
    }

    /// A message from `peer` arrived.
    pub fn heard(&mut self, peer: RegionId, now_ms: u64) {
        if self.left.contains(&peer) {
            return;
        }
        let t = self.advance(now_ms);
        if let Some(d) = self.detectors.get_mut(&peer) {
            d.heard(t);
        }
    }

    /// A new connection from `peer`: its rhythm starts over.
    pub fn reconnected(&mut self, peer: RegionId) {
        self.left.remove(&peer);
        if let Some(d) = self.detectors.get_mut(&peer) {
            d.reset();
        }
    }

    /// `peer` said it is shutting down: it counts as down from the next
    /// tick, and stray messages from its closing links do not bring it back;
    /// only a new connection does.
    pub fn peer_left(&mut self, peer: RegionId) {
        if self.detectors.contains_key(&peer) {
            self.left.insert(peer);
        }
    }

    pub fn liveness(&self, peer: RegionId) -> Option<Liveness> {
        self.liveness.get(&peer).copied()
    }

    /// How long ago (view time) `peer` was last heard, at wall-clock `now_ms`.
    pub fn last_heard_ago_ms(&self, peer: RegionId, now_ms: u64) -> Option<u64> {
        let t = self.time_ms(now_ms);
        self.detectors
            .get(&peer)
            .and_then(|d| d.last_heard_ms())
            .map(|h| t.saturating_sub(h))
    }

    /// Peers heard from within the lease (`now_ms` in view time).
    fn heard_within_lease(&self, now_ms: u64) -> usize {
        self.detectors
            .values()
            .filter(|d| {
                d.last_heard_ms()
                    .is_some_and(|t| now_ms.saturating_sub(t) <= self.config.lease_ms)
            })
            .count()
    }

    /// `Ok` while this region holds the majority lease; otherwise why not.
    /// A region just started gets no lease until it has heard a majority
    /// (it may be the minority side of a partition it does not know of).
    pub fn lease(&self, now_ms: u64) -> Result<(), String> {
        let now_ms = self.time_ms(now_ms);
        let reached = self.heard_within_lease(now_ms) + 1;
        if reached >= self.majority() {
            return Ok(());
        }
        let since = if now_ms.saturating_sub(self.started_ms) < self.config.lease_ms {
            "since start".to_string()
        } else {
            format!("within the last {} ms", self.config.lease_ms)
        };
        Err(format!(
            "region {} reaches {reached} of {} regions {since}, not a majority ({})",
            self.config.me,
            self.members(),
            self.majority()
        ))
    }

    /// Re-evaluates liveness and the lease at `now_ms`; returns what changed
    /// (each change raised the epoch).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Transition> {
        let now_ms = self.advance(now_ms);
        let mut out = Vec::new();
        let t = self.config.thresholds;
        let peers: Vec<RegionId> = self.config.peers.clone();
        for peer in peers {
            let to = if self.left.contains(&peer) {
                Liveness::Down
            } else {
                self.detectors[&peer].liveness(now_ms, &t)
            };
            let from = self.liveness[&peer];
            if from != to {
                self.liveness.insert(peer, to);
                // Up <-> suspect is noise for the epoch; only down counts.
                if from == Liveness::Down || to == Liveness::Down {
                    out.push(self.bump(now_ms, Change::PeerLiveness { peer, from, to }));
                }
            }
        }
        let lease = self.lease(self.wall_seen_ms);
        match (&lease, self.lease_held) {
            (Err(reason), true) => {
                self.lease_held = false;
                out.push(self.bump(
                    now_ms,
                    Change::LeaseLost {
                        reason: reason.clone(),
                    },
                ));
            }
            (Ok(()), false) => {
                self.lease_held = true;
                out.push(self.bump(now_ms, Change::LeaseRegained));
            }
            _ => {}
        }
        // A partition, as heal reports count it: some peer down, or this
        // region cut off from the majority (which can happen before the
        // failure detector declares anyone down).
        let any_down = self.liveness.values().any(|l| *l == Liveness::Down) || !self.lease_held;
        let warm = now_ms.saturating_sub(self.started_ms) > self.config.lease_ms;
        match (&mut self.partition, any_down) {
            (None, true)
            | (
                Some(Partition {
                    ended_ms: Some(_), ..
                }),
                true,
            ) if warm => {
                // It began when the silence began: the last word from a peer
                // now down, or, when the lease is what was lost, one lease
                // before now (the majority was last heard then).
                let down_since = self
                    .liveness
                    .iter()
                    .filter(|(_, l)| **l == Liveness::Down)
                    .filter_map(|(p, _)| self.detectors[p].last_heard_ms());
                let lease_since =
                    (!self.lease_held).then(|| now_ms.saturating_sub(self.config.lease_ms));
                let silent_since = down_since.chain(lease_since).min();
                self.partition = Some(Partition {
                    started_ms: silent_since.unwrap_or(now_ms),
                    ended_ms: None,
                    epoch_at_start: self.epoch,
                });
            }
            (Some(p), false) if p.ended_ms.is_none() => p.ended_ms = Some(now_ms),
            _ => {}
        }
        if let Some(p) = &self.partition {
            assert!(
                self.config.unsafe_wall_clock
                    || (p.started_ms <= now_ms && p.ended_ms.is_none_or(|e| e >= p.started_ms)),
                "partition from {} to {:?} at view time {now_ms}",
                p.started_ms,
                p.ended_ms
            );
        }
        out
    }

    fn bump(&mut self, now_ms: u64, change: Change) -> Transition {
        // Every raise of the epoch is a recorded transition, so the last
        // one recorded names the epoch in force.
        let recorded = self.transitions.back().map_or(1, |t| t.epoch);
        assert!(
            recorded == self.epoch,
            "the epoch is {} but the last transition recorded epoch {recorded}",
            self.epoch
        );
        self.epoch += 1;
        let t = Transition {
            at_ms: now_ms,
            epoch: self.epoch,
            change,
        };
        if self.transitions.len() == TRANSITIONS_KEPT {
            self.transitions.pop_front();
        }
        self.transitions.push_back(t.clone());
        t
    }

    pub fn transitions(&self) -> impl DoubleEndedIterator<Item = &Transition> {
        self.transitions.iter()
    }

    /// The current or most recent partition seen from here.
    pub fn partition(&self) -> Option<&Partition> {
        self.partition.as_ref()
    }

    /// How many members (self included) this region hears within the lease.
    pub fn reachable(&self, now_ms: u64) -> usize {
        self.heard_within_lease(self.time_ms(now_ms)) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: u64) -> ClusterView {
        let r = |n| RegionId::new(n).unwrap();
        ClusterView::new(
            ViewConfig {
                me: r("va"),
                peers: vec![r("vb"), r("vc")],
                lease_ms: 1_000,
                thresholds: Thresholds::default(),
                unsafe_wall_clock: false,
            },
            now,
        )
    }

    #[test]
    fn a_peer_that_says_goodbye_is_down_at_once_until_it_reconnects() {
        let b = RegionId::new("vb").unwrap();
        let mut v = view(0);
        for t in (0..2_000).step_by(100) {
            v.heard(b, t);
            v.tick(t);
        }
        assert_eq!(v.liveness(b), Some(Liveness::Up));
        v.peer_left(b);
        v.heard(b, 2_010);
        v.tick(2_020);
        assert_eq!(
            v.liveness(b),
            Some(Liveness::Down),
            "down without waiting for the detector"
        );
        v.reconnected(b);
        v.heard(b, 2_100);
        v.tick(2_100);
        assert_eq!(v.liveness(b), Some(Liveness::Up));
    }

    #[test]
    fn a_removed_peer_stops_counting_toward_the_majority() {
        let r = |n| RegionId::new(n).unwrap();
        let mut v = view(0);
        // Only vb answers: 2 of 3 is a majority.
        for t in (0..2_000).step_by(100) {
            v.heard(r("vb"), t);
            v.tick(t);
        }
        assert!(v.lease(2_000).is_ok());
        let before = v.epoch();
        let t = v.set_peers(&[r("vb"), r("vc"), r("vd")], 2_000).unwrap();
        assert!(
            matches!(t.change, Change::MembersChanged { ref added, .. } if added == &vec![r("vd")])
        );
        assert!(v.epoch() > before);
        assert_eq!((v.members(), v.majority()), (4, 3));
        assert!(v.lease(2_050).is_err(), "2 of 4 is not a majority");
        v.set_peers(&[r("vb")], 2_100).unwrap();
        assert_eq!((v.members(), v.majority()), (2, 2));
        assert!(v.lease(2_150).is_ok());
        assert!(
            v.set_peers(&[r("vb")], 2_200).is_none(),
            "no change, no epoch"
        );
    }

    #[test]
    fn lease_needs_a_majority_heard_within_lease_ms() {
        let b = RegionId::new("vb").unwrap();
        let mut v = view(0);
        assert!(v.lease(0).is_err(), "no lease before hearing anyone");
        v.heard(b, 100);
        assert!(v.lease(100).is_ok(), "self + one of three is a majority");
        assert!(v.lease(1_100).is_ok());
        let err = v.lease(1_101).unwrap_err();
        assert!(err.contains("reaches 1 of 3"), "{err}");
    }

    #[test]
    fn each_change_of_view_raises_the_epoch_once() {
        let b = RegionId::new("vb").unwrap();
        let c = RegionId::new("vc").unwrap();
        let mut v = view(0);
        v.tick(0);
        let start = v.epoch();
        for t in (0..3_000).step_by(250) {
            v.heard(b, t);
            v.heard(c, t);
            v.tick(t);
        }
        assert!(v.epoch() > start, "peers came up and the lease was gained");
        let up = v.epoch();
        for t in (3_000..12_000).step_by(250) {
            v.heard(b, t);
            v.tick(t);
        }
        // c went down (once), the lease stayed (a and b are a majority).
        assert_eq!(v.epoch(), up + 1);
        assert!(v.partition().is_some_and(|p| p.ended_ms.is_none()));
        for t in (12_000..13_000).step_by(250) {
            v.heard(b, t);
            v.heard(c, t);
            v.tick(t);
        }
        assert_eq!(v.epoch(), up + 2);
        assert!(v.partition().is_some_and(|p| p.ended_ms.is_some()));
    }

    #[test]
    fn a_clock_set_back_does_not_stretch_the_lease() {
        let b = RegionId::new("vb").unwrap();
        let mut v = view(10_000);
        v.heard(b, 10_000);
        v.tick(10_000);
        v.tick(10_500);
        assert!(v.lease(10_500).is_ok());
        // The wall clock jumps back 5 s (ticks come every 50 ms, so at most
        // that much of real time goes unseen); 600 ms pass.
        v.tick(5_500);
        assert!(
            v.lease(6_100).is_err(),
            "1.1 s have passed since b was heard"
        );
        assert_eq!(v.last_heard_ago_ms(b, 6_100), Some(1_100));
    }

    /// The partition a heal report measures starts when the silence began,
    /// not when the lease ran out (reports were a lease too short).
    #[test]
    fn partition_starts_when_the_majority_went_silent() {
        let b = RegionId::new("vb").unwrap();
        let c = RegionId::new("vc").unwrap();
        let mut v = view(0);
        for t in (0..=3_000).step_by(100) {
            v.heard(b, t);
            v.heard(c, t);
            v.tick(t);
        }
        for t in (3_050..=3_000 + 1_050).step_by(50) {
            v.tick(t);
        }
        let p = v.partition().expect("lease lost, so a partition began");
        assert!(p.started_ms <= 3_050, "started at {}", p.started_ms);
    }
}
