//! The elected primary of `primary:REGION` keyspaces: terms, votes and the
//! primary's lease. Pure: time, the region's version vector and message
//! delivery are passed in, so the simulator drives exactly this code.
//!
//! One election per cluster: every `primary` keyspace follows the same
//! primary, at first the region the policies name (term 0).
//!
//! # The protocol
//! - **Terms are durable.** `term`, `voted_for` (in `term`) and the known
//!   primary with the term it was elected in ([`Durable`]) are saved, and a
//!   vote or a request for votes leaves only once the state it follows from
//!   is on disk ([`Election::mark_saved`]), so a restart cannot vote twice
//!   in one term.
//! - **State** goes to every peer at every heartbeat: the known primary and
//!   its term, whether the sender is that primary now (`leader`), whether it
//!   has heard the primary within the lease, and an *echo* of the last
//!   `State` it received from the peer it follows.
//! - **The primary's lease is made of echoes.** The primary writes only
//!   while a majority (itself and witnesses included) has echoed a `State`
//!   it sent within the last `lease_ms` — measured on its own clock, so no
//!   two clocks are compared. A follower echoes only while it follows the
//!   primary: once it votes for someone else it stops, and the old primary
//!   loses its lease at most `lease_ms` after the last `State` that
//!   follower had echoed.
//! - **Standing.** A data region (never a witness) stands when it holds no
//!   claim from the primary for `lease_ms` (plus a stagger by rank, so two
//!   regions rarely stand at once), and a majority, itself included, says
//!   in fresh `State`s that it does not hear the primary either (a
//!   pre-vote: a region cut off alone does not stand and cannot depose a
//!   healthy primary). It raises the term, votes for itself and sends
//!   `VoteRequest` with its version vector.
//! - **Voting.** A region grants at most one vote per term (durable), and
//!   only if it has not heard the primary within the lease, and the
//!   candidate has every write of the current primary the voter has (its
//!   counter for the primary's region is not behind; comparing whole
//!   vectors would refuse every candidate after concurrent active-active
//!   writes). A region adopts a higher term only when asked to vote in it
//!   while it does not hear the primary, or by learning of a primary
//!   elected in it, so a candidate of a flapping region does not disturb a
//!   cluster that hears its primary. A voter that refused a candidate for
//!   lacking writes has adopted its term and may stand above it.
//! - **Winning.** Votes from a majority of all members make the candidate
//!   primary for its term. It accepts writes only after one more full
//!   lease, and only while it holds its echo lease.
//! - **Stepping down.** Anyone learning of a primary elected in a higher
//!   term follows it; a primary that reaches a majority but is echoed by
//!   fewer for a whole lease steps down, so the others can elect.
//!
//! Why at most one region writes at a time: a winner's voters and any
//! majority that renews the old primary's lease share a region; it stopped
//! echoing before it voted, and voted only after a lease of silence from
//! the old primary, so the old lease had run out before the vote, and the
//! winner waits a further lease. Two primaries in one term would need a
//! region to vote twice in it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use meridian_crdt::{RegionId, VersionVector};
use serde::{Deserialize, Serialize};

/// Terms whose accepted-write counts are kept for status.
const TERMS_KEPT: usize = 16;

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub me: RegionId,
    /// Every other member, data regions and witnesses alike.
    pub peers: Vec<RegionId>,
    pub witness: bool,
    /// The primary of term 0 (the first `primary:REGION` named), if this
    /// region has `primary` keyspaces; a region without never stands.
    pub initial_primary: Option<RegionId>,
    pub lease_ms: u64,
    /// The stagger between two ranks of candidates.
    pub stagger_ms: u64,
    /// A deliberate bug for the simulator's checker tests: a new primary
    /// writes at once, and a primary writes on the (wall-clock) quorum lease
    /// alone, without its echo lease. Never set outside those tests.
    pub unsafe_skip_leases: bool,
}

/// What must survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    pub term: u64,
    pub voted_for: Option<RegionId>,
    pub primary: Option<RegionId>,
    /// The term `primary` was elected in (0: the configured one).
    pub primary_term: u64,
}

impl Durable {
    /// The file form: one `name value` line per field.
    pub fn encode(&self) -> String {
        let opt = |r: &Option<RegionId>| r.map_or("-".to_string(), |r| r.to_string());
        format!(
            "term {}\nvoted_for {}\nprimary {}\nprimary_term {}\n",
            self.term,
            opt(&self.voted_for),
            opt(&self.primary),
            self.primary_term
        )
    }

    pub fn decode(text: &str) -> Result<Durable, String> {
        let mut d = Durable::default();
        let region = |v: &str| match v {
            "-" => Ok(None),
            v => RegionId::new(v)
                .map(Some)
                .map_err(|e| format!("bad region {v:?}: {e}")),
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("bad number {v:?}: {e}"))
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line
                .split_once(' ')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            match name {
                "term" => d.term = num(value)?,
                "voted_for" => d.voted_for = region(value)?,
                "primary" => d.primary = region(value)?,
                "primary_term" => d.primary_term = num(value)?,
                other => return Err(format!("unknown field {other:?}")),
            }
        }
        if d.primary_term > d.term {
            return Err(format!(
                "primary term {} is above the term {}",
                d.primary_term, d.term
            ));
        }
        Ok(d)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower => "follower",
        }
    }
}

/// Election messages, sent on the peer links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ElectionMsg {
    State {
        primary: Option<RegionId>,
        primary_term: u64,
        /// The sender is `primary` and may act as it.
        leader: bool,
        /// The sender heard a claim from the primary within the lease.
        hears_primary: bool,
        /// Changes at every start of the sender (echoes from an earlier
        /// life mean nothing to its new clock).
        incarnation: u64,
        /// The sender's clock when it sent this.
        sent_ms: u64,
        /// `(incarnation, sent_ms)` of the receiver's latest `State`, sent
        /// only while the sender follows the receiver as primary.
        echo: Option<(u64, u64)>,
    },
    VoteRequest {
        term: u64,
        vv: VersionVector,
    },
    /// The sender votes for the receiver in `term`.
    VoteGrant {
        term: u64,
    },
}

/// What an election step changed, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEvent {
    Stood {
        term: u64,
    },
    Won {
        term: u64,
        writable_in_ms: u64,
    },
    Follows {
        primary: RegionId,
        term: u64,
    },
    Voted {
        candidate: RegionId,
        term: u64,
    },
    /// A vote refused (sent again at every heartbeat while it stands).
    Refused {
        candidate: RegionId,
        term: u64,
        reason: &'static str,
    },
    SteppedDown {
        term: u64,
        reason: String,
    },
}

/// Primary writes this region accepted in one term, for status and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedWrites {
    pub term: u64,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct PeerState {
    arrived_ms: u64,
    hears_primary: bool,
    /// Their latest `State`'s `(incarnation, sent_ms)`, echoed back.
    last: Option<(u64, u64)>,
    /// Our `sent_ms` they echoed while following us (our clock).
    echoed_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Election {
    config: ElectionConfig,
    durable: Durable,
    dirty: bool,
    /// What is known to be on disk: votes and requests go out only once
    /// the state they follow from is.
    saved: Durable,
    role: Role,
    incarnation: u64,
    started_ms: u64,
    /// When we last heard the primary claim to be primary (or started).
    primary_heard_ms: u64,
    peers: BTreeMap<RegionId, PeerState>,
    votes: BTreeSet<RegionId>,
    candidate_since_ms: u64,
    voted_at_ms: u64,
    /// Writes wait until then after a win.
    writable_from_ms: u64,
    /// Since when a reachable majority has not echoed us (as primary).
    unsupported_since_ms: Option<u64>,
    accepted: VecDeque<AcceptedWrites>,
    elections_total: u64,
}

impl Election {
    /// Starts from what was saved (or the default for a new region);
    /// `incarnation` must differ at every start.
    pub fn new(
        config: ElectionConfig,
        saved: Option<Durable>,
        incarnation: u64,
        now_ms: u64,
    ) -> Election {
        let mut durable = saved.unwrap_or_default();
        if durable.primary.is_none() && durable.primary_term == 0 {
            durable.primary = config.initial_primary;
        }
        let role = if durable.primary == Some(config.me) && durable.primary_term == durable.term {
            Role::Leader
        } else {
            Role::Follower
        };
        let peers = config
            .peers
            .iter()
            .map(|p| (*p, PeerState::default()))
            .collect();
        Election {
            config,
            saved: durable.clone(),
            durable,
            dirty: false,
            role,
            incarnation,
            started_ms: now_ms,
            primary_heard_ms: now_ms,
            peers,
            votes: BTreeSet::new(),
            candidate_since_ms: 0,
            voted_at_ms: 0,
            writable_from_ms: 0,
            unsupported_since_ms: None,
            accepted: VecDeque::new(),
            elections_total: 0,
        }
    }

    pub fn durable(&self) -> &Durable {
        &self.durable
    }

    /// The durable state, once after each change: save it, then report it
    /// with [`Election::mark_saved`].
    pub fn take_dirty(&mut self) -> Option<Durable> {
        std::mem::take(&mut self.dirty).then(|| self.durable.clone())
    }

    /// `d` (a state [`Election::take_dirty`] or [`Election::durable`]
    /// returned) is on disk now.
    pub fn mark_saved(&mut self, d: Durable) {
        assert!(
            d.term <= self.durable.term,
            "state of term {} saved, but the election is only in term {}",
            d.term,
            self.durable.term
        );
        self.saved = d;
    }

    /// The invariants every step keeps, checked against the durable state
    /// before the step: the term never goes back; a vote, once cast in a
    /// term, stays; the known primary was elected in a term this region has
    /// reached; a region leads only in a term it was elected in, and stands
    /// only having voted for itself.
    fn assert_step(&self, before: &Durable) {
        let d = &self.durable;
        assert!(
            d.term >= before.term,
            "the term went back from {} to {}",
            before.term,
            d.term
        );
        assert!(
            d.term != before.term || before.voted_for.is_none() || d.voted_for == before.voted_for,
            "voted for {:?} and then for {:?} in term {}",
            before.voted_for,
            d.voted_for,
            d.term
        );
        assert!(
            d.primary_term <= d.term,
            "the primary {:?} was elected in term {}, above the current term {}",
            d.primary,
            d.primary_term,
            d.term
        );
        assert!(
            d.primary_term >= before.primary_term,
            "the known primary went back from term {} to term {}",
            before.primary_term,
            d.primary_term
        );
        assert!(
            self.role != Role::Leader
                || (d.primary == Some(self.config.me) && d.primary_term == d.term),
            "region {} leads in term {} but the primary known is {:?} of term {}",
            self.config.me,
            d.term,
            d.primary,
            d.primary_term
        );
        assert!(
            self.role != Role::Candidate || d.voted_for == Some(self.config.me),
            "region {} stands in term {} having voted for {:?}",
            self.config.me,
            d.term,
            d.voted_for
        );
    }

    pub fn term(&self) -> u64 {
        self.durable.term
    }

    pub fn primary(&self) -> Option<RegionId> {
        self.durable.primary
    }

    pub fn primary_term(&self) -> u64 {
        self.durable.primary_term
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn elections_total(&self) -> u64 {
        self.elections_total
    }

    pub fn lease_ms(&self) -> u64 {
        self.config.lease_ms
    }

    /// Follows a membership change: new members start unknown (no echo, not
    /// hearing the primary), removed ones stop counting for majorities and
    /// lose any vote they gave in the current term.
    pub fn set_peers(&mut self, peers: &[RegionId]) {
        self.peers.retain(|p, _| peers.contains(p));
        for p in peers {
            self.peers.entry(*p).or_default();
        }
        self.votes
            .retain(|p| *p == self.config.me || peers.contains(p));
        self.config.peers = peers.to_vec();
    }

    fn majority(&self) -> usize {
        let members = self.config.peers.len() + 1;
        members / 2 + 1
    }

    fn fresh(&self, at_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(at_ms) < self.config.lease_ms
    }

    /// True when this region has heard the primary claim its role within
    /// the lease (or is the primary).
    pub fn hears_primary(&self, now_ms: u64) -> bool {
        self.role == Role::Leader || self.fresh(self.primary_heard_ms, now_ms)
    }

    /// Members (self included) whose echo of our `State` is within the lease.
    fn supporters(&self, now_ms: u64) -> usize {
        1 + self
            .peers
            .values()
            .filter(|p| p.echoed_ms.is_some_and(|t| self.fresh(t, now_ms)))
            .count()
    }

    /// Members (self included) whose `State` arrived within the lease.
    fn reachable(&self, now_ms: u64) -> usize {
        1 + self
            .peers
            .values()
            .filter(|p| p.arrived_ms > 0 && self.fresh(p.arrived_ms, now_ms))
            .count()
    }

    /// The echo lease's end, on this region's clock, while primary.
    pub fn lease_remaining_ms(&self, now_ms: u64) -> u64 {
        if self.role != Role::Leader {
            return 0;
        }
        let mut ends: Vec<u64> = self
            .peers
            .values()
            .filter_map(|p| p.echoed_ms)
            .map(|t| t + self.config.lease_ms)
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        // The majority's weakest member decides: self plus majority-1 peers.
        ends.get(self.majority().saturating_sub(2))
            .map_or(0, |end| end.saturating_sub(now_ms))
    }

    /// `Ok` while this region may accept `primary` writes; otherwise why not.
    pub fn may_write(&self, now_ms: u64) -> Result<(), String> {
        let me = self.config.me;
        if self.role != Role::Leader {
            return Err(match self.durable.primary {
                Some(p) => format!("region {me} is not the primary (the primary is {p})"),
                None => format!("region {me} knows no primary"),
            });
        }
        if self.config.unsafe_skip_leases {
            return Ok(());
        }
        let term = self.durable.term;
        if now_ms < self.writable_from_ms {
            return Err(format!(
                "region {me} was elected primary in term {term} and waits {} ms more for the old primary's lease to expire",
                self.writable_from_ms - now_ms
            ));
        }
        let supporters = self.supporters(now_ms);
        if supporters < self.majority() {
            return Err(format!(
                "region {me}, primary in term {term}, is followed by {supporters} of {} regions within the last {} ms, not a majority ({})",
                self.config.peers.len() + 1,
                self.config.lease_ms,
                self.majority()
            ));
        }
        Ok(())
    }

    /// Notes a `primary` write accepted now (wall clock, for status).
    pub fn note_write(&mut self, wall_ms: u64) {
        // Only a writable primary admits primary writes, and the admission
        // and this count are one step (`admission::admit`).
        assert_eq!(
            self.role,
            Role::Leader,
            "a primary write counted by a region that is not the primary"
        );
        let term = self.durable.term;
        match self.accepted.back_mut() {
            Some(a) if a.term == term => {
                a.count += 1;
                a.last_ms = wall_ms;
            }
            _ => {
                if self.accepted.len() == TERMS_KEPT {
                    self.accepted.pop_front();
                }
                self.accepted.push_back(AcceptedWrites {
                    term,
                    count: 1,
                    first_ms: wall_ms,
                    last_ms: wall_ms,
                });
            }
        }
    }

    /// Primary writes accepted here, per term, oldest first.
    pub fn accepted(&self) -> impl DoubleEndedIterator<Item = &AcceptedWrites> {
        self.accepted.iter()
    }

    fn rank(&self) -> u64 {
        let mut members: Vec<RegionId> = self
            .config
            .peers
            .iter()
            .copied()
            .chain([self.config.me])
            .filter(|r| Some(*r) != self.durable.primary)
            .collect();
        members.sort();
        // A primary that stepped down stands last.
        members
            .iter()
            .position(|r| *r == self.config.me)
            .unwrap_or(members.len()) as u64
    }

    fn election_timeout_ms(&self) -> u64 {
        self.config.lease_ms + self.rank() * self.config.stagger_ms
    }

    /// Re-evaluates at `now_ms`: stands, retries, or steps down.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ElectionEvent> {
        let before = self.durable.clone();
        let out = self.tick_inner(now_ms);
        self.assert_step(&before);
        out
    }

    fn tick_inner(&mut self, now_ms: u64) -> Vec<ElectionEvent> {
        let mut out = Vec::new();
        let majority = self.majority();
        if self.role == Role::Leader {
            let unsupported = self.supporters(now_ms) < majority;
            if !unsupported {
                self.unsupported_since_ms = None;
            } else if self.reachable(now_ms) >= majority {
                let since = *self.unsupported_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= self.config.lease_ms
                    && now_ms.saturating_sub(self.started_ms) >= self.config.lease_ms
                {
                    self.role = Role::Follower;
                    self.unsupported_since_ms = None;
                    self.primary_heard_ms = 0;
                    out.push(ElectionEvent::SteppedDown {
                        term: self.durable.term,
                        reason: "a majority is reachable but does not follow".into(),
                    });
                }
            } else {
                self.unsupported_since_ms = None;
            }
            return out;
        }
        if self.config.witness || self.config.initial_primary.is_none() {
            return out;
        }
        let timeout = self.election_timeout_ms();
        let silent = now_ms.saturating_sub(self.primary_heard_ms) >= timeout;
        let not_hearing = 1 + self
            .peers
            .values()
            .filter(|p| p.arrived_ms > 0 && self.fresh(p.arrived_ms, now_ms) && !p.hears_primary)
            .count();
        let recently_voted = self.durable.voted_for.is_some_and(|v| v != self.config.me)
            && now_ms.saturating_sub(self.voted_at_ms) < timeout;
        let retry = match self.role {
            Role::Candidate => now_ms.saturating_sub(self.candidate_since_ms) >= timeout,
            _ => true,
        };
        if silent && not_hearing >= majority && !recently_voted && retry {
            self.durable.term += 1;
            self.durable.voted_for = Some(self.config.me);
            self.dirty = true;
            self.role = Role::Candidate;
            self.votes = BTreeSet::from([self.config.me]);
            self.candidate_since_ms = now_ms;
            self.elections_total += 1;
            out.push(ElectionEvent::Stood {
                term: self.durable.term,
            });
            self.maybe_win(now_ms, &mut out);
        } else if self.role == Role::Candidate && !silent {
            self.role = Role::Follower;
        }
        out
    }

    fn maybe_win(&mut self, now_ms: u64, out: &mut Vec<ElectionEvent>) {
        if self.role != Role::Candidate || self.votes.len() < self.majority() {
            return;
        }
        assert!(
            self.durable.voted_for == Some(self.config.me) && self.votes.contains(&self.config.me),
            "region {} wins term {} without its own vote (voted for {:?})",
            self.config.me,
            self.durable.term,
            self.durable.voted_for
        );
        debug_assert!(
            self.votes
                .iter()
                .all(|v| *v == self.config.me || self.config.peers.contains(v)),
            "votes {:?} counted from regions that are not members",
            self.votes
        );
        self.role = Role::Leader;
        self.durable.primary = Some(self.config.me);
        self.durable.primary_term = self.durable.term;
        self.dirty = true;
        let wait = if self.config.unsafe_skip_leases {
            0
        } else {
            self.config.lease_ms
        };
        self.writable_from_ms = now_ms + wait;
        self.unsupported_since_ms = None;
        for p in self.peers.values_mut() {
            p.echoed_ms = None;
        }
        out.push(ElectionEvent::Won {
            term: self.durable.term,
            writable_in_ms: wait,
        });
    }

    /// Whether this region follows `peer` as primary now, so echoes it.
    fn follows(&self, peer: RegionId) -> bool {
        let d = &self.durable;
        d.primary == Some(peer)
            && (d.term == d.primary_term
                || d.voted_for.is_none()
                || (d.voted_for == Some(self.config.me) && self.role != Role::Candidate))
    }

    /// What to send `peer` now.
    pub fn outbox(&self, peer: RegionId, now_ms: u64, vv: &VersionVector) -> Vec<ElectionMsg> {
        let d = &self.durable;
        let echo = if self.follows(peer) {
            self.peers.get(&peer).and_then(|p| p.last)
        } else {
            None
        };
        let mut out = vec![ElectionMsg::State {
            primary: d.primary,
            primary_term: d.primary_term,
            leader: self.role == Role::Leader,
            hears_primary: self.hears_primary(now_ms),
            incarnation: self.incarnation,
            sent_ms: now_ms,
            echo,
        }];
        // A vote is sent only once it is on disk.
        let saved_vote = (self.saved.term == d.term)
            .then_some(self.saved.voted_for)
            .flatten();
        assert!(
            saved_vote.is_none() || saved_vote == d.voted_for,
            "the vote saved for term {} is {saved_vote:?}, the vote held is {:?}",
            d.term,
            d.voted_for
        );
        if self.role == Role::Candidate
            && saved_vote == Some(self.config.me)
            && !self.votes.contains(&peer)
        {
            out.push(ElectionMsg::VoteRequest {
                term: d.term,
                vv: vv.clone(),
            });
        }
        if saved_vote == Some(peer) {
            out.push(ElectionMsg::VoteGrant { term: d.term });
        }
        out
    }

    /// Adopts a primary elected in a term above ours.
    fn follow(
        &mut self,
        primary: RegionId,
        primary_term: u64,
        now_ms: u64,
        out: &mut Vec<ElectionEvent>,
    ) {
        let d = &mut self.durable;
        if primary_term > d.term {
            d.term = primary_term;
            d.voted_for = None;
            // A candidate stood in the term it leaves behind.
            if self.role == Role::Candidate {
                self.role = Role::Follower;
            }
        }
        d.primary = Some(primary);
        d.primary_term = primary_term;
        self.dirty = true;
        if primary == self.config.me {
            return;
        }
        if self.role != Role::Follower {
            out.push(ElectionEvent::SteppedDown {
                term: primary_term,
                reason: format!("{primary} was elected in term {primary_term}"),
            });
        }
        self.role = Role::Follower;
        self.primary_heard_ms = now_ms;
        out.push(ElectionEvent::Follows {
            primary,
            term: primary_term,
        });
    }

    /// A message from `peer` arrived; `vv` is this region's version vector.
    pub fn receive(
        &mut self,
        peer: RegionId,
        msg: ElectionMsg,
        now_ms: u64,
        vv: &VersionVector,
    ) -> Vec<ElectionEvent> {
        let before = self.durable.clone();
        let out = self.receive_inner(peer, msg, now_ms, vv);
        self.assert_step(&before);
        out
    }

    fn receive_inner(
        &mut self,
        peer: RegionId,
        msg: ElectionMsg,
        now_ms: u64,
        vv: &VersionVector,
    ) -> Vec<ElectionEvent> {
        let mut out = Vec::new();
        if !self.peers.contains_key(&peer) {
            return out;
        }
        match msg {
            ElectionMsg::State {
                primary,
                primary_term,
                leader,
                hears_primary,
                incarnation,
                sent_ms,
                echo,
            } => {
                let d = &self.durable;
                let newer =
                    (primary_term, primary.is_some()) > (d.primary_term, d.primary.is_some());
                if let (true, Some(p)) = (newer, primary) {
                    self.follow(p, primary_term, now_ms, &mut out);
                }
                let d = &self.durable;
                if leader
                    && primary == Some(peer)
                    && d.primary == Some(peer)
                    && primary_term == d.primary_term
                {
                    self.primary_heard_ms = now_ms;
                }
                let mine = self.role == Role::Leader
                    && primary == Some(self.config.me)
                    && primary_term == self.durable.term;
                let p = self.peers.get_mut(&peer).expect("a member");
                p.arrived_ms = now_ms;
                p.hears_primary = hears_primary;
                p.last = Some((incarnation, sent_ms));
                if let Some((inc, at)) = echo {
                    if mine && inc == self.incarnation && at <= now_ms {
                        p.echoed_ms = Some(p.echoed_ms.map_or(at, |t| t.max(at)));
                    }
                }
            }
            ElectionMsg::VoteRequest { term, vv: theirs } => {
                // A region that hears the primary neither votes nor adopts
                // the term: a flapping candidate changes nothing.
                let refused = if term < self.durable.term {
                    Some("its term is behind")
                } else if self.hears_primary(now_ms) {
                    Some("the primary is heard")
                } else {
                    None
                };
                if let Some(reason) = refused {
                    out.push(ElectionEvent::Refused {
                        candidate: peer,
                        term,
                        reason,
                    });
                    return out;
                }
                if term > self.durable.term {
                    self.durable.term = term;
                    self.durable.voted_for = None;
                    self.dirty = true;
                    if self.role == Role::Candidate {
                        self.role = Role::Follower;
                    }
                }
                // A candidate lacking writes of the primary this region has
                // gets no vote; this region may stand itself, above its term.
                let up_to_date = self
                    .durable
                    .primary
                    .is_none_or(|p| theirs.get(p) >= vv.get(p));
                if !up_to_date {
                    out.push(ElectionEvent::Refused {
                        candidate: peer,
                        term,
                        reason: "it lacks writes of the primary",
                    });
                } else if self.durable.voted_for.is_none() {
                    self.durable.voted_for = Some(peer);
                    self.voted_at_ms = now_ms;
                    self.dirty = true;
                    out.push(ElectionEvent::Voted {
                        candidate: peer,
                        term,
                    });
                }
            }
            ElectionMsg::VoteGrant { term } => {
                if self.role == Role::Candidate && term == self.durable.term {
                    self.votes.insert(peer);
                    self.maybe_win(now_ms, &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: &str) -> RegionId {
        RegionId::new(n).unwrap()
    }

    const LEASE: u64 = 1_000;

    fn node(me: &str, now: u64) -> Election {
        let all = ["ea", "eb", "ec"];
        Election::new(
            ElectionConfig {
                me: r(me),
                peers: all.iter().filter(|p| **p != me).map(|p| r(p)).collect(),
                witness: false,
                initial_primary: Some(r("ea")),
                lease_ms: LEASE,
                stagger_ms: 200,
                unsafe_skip_leases: false,
            },
            None,
            1,
            now,
        )
    }

    /// Delivers every message each node has for each other node, where
    /// `link(from, to)` allows.
    fn exchange(nodes: &mut [Election], now: u64, link: impl Fn(usize, usize) -> bool) {
        let vv = VersionVector::new();
        for from in 0..nodes.len() {
            for to in 0..nodes.len() {
                if from == to || !link(from, to) {
                    continue;
                }
                let to_id = nodes[to].config.me;
                let from_id = nodes[from].config.me;
                for m in nodes[from].outbox(to_id, now, &vv) {
                    nodes[to].receive(from_id, m, now, &vv);
                }
            }
        }
        for n in nodes.iter_mut() {
            n.tick(now);
            if let Some(d) = n.take_dirty() {
                n.mark_saved(d);
            }
        }
    }

    #[test]
    fn the_configured_primary_writes_once_a_majority_echoes_it() {
        let mut nodes = vec![node("ea", 0), node("eb", 0), node("ec", 0)];
        assert!(nodes[0].may_write(0).is_err(), "no echo yet");
        for t in (0..300).step_by(100) {
            exchange(&mut nodes, t, |_, _| true);
        }
        assert_eq!(nodes[0].may_write(300), Ok(()));
        assert!(nodes[1]
            .may_write(300)
            .unwrap_err()
            .contains("primary is ea"));
    }

    #[test]
    fn a_cut_off_primary_is_replaced_in_a_higher_term_after_its_lease() {
        let mut nodes = vec![node("ea", 0), node("eb", 0), node("ec", 0)];
        for t in (0..=1_000).step_by(100) {
            exchange(&mut nodes, t, |_, _| true);
        }
        let cut = 1_000;
        let mut old_last_ok = 0;
        let mut new_first_ok = None;
        for t in (1_100..=6_000).step_by(50) {
            exchange(&mut nodes, t, |a, b| a != 0 && b != 0);
            if nodes[0].may_write(t).is_ok() {
                old_last_ok = t;
            }
            if new_first_ok.is_none()
                && (nodes[1].may_write(t).is_ok() || nodes[2].may_write(t).is_ok())
            {
                new_first_ok = Some(t);
            }
        }
        let first = new_first_ok.expect("a new primary was elected and writes");
        assert!(
            old_last_ok < cut + LEASE,
            "old primary wrote until {old_last_ok}"
        );
        assert!(first >= old_last_ok + LEASE, "new primary wrote at {first}");
        let new = nodes[1].primary().unwrap();
        assert_ne!(new, r("ea"));
        assert_eq!(nodes[1].term(), 1);
        // Heal: the old primary follows the new one.
        for t in (6_100..7_000).step_by(100) {
            exchange(&mut nodes, t, |_, _| true);
        }
        assert_eq!(nodes[0].role(), Role::Follower);
        assert_eq!(nodes[0].primary(), Some(new));
        assert_eq!(nodes[0].term(), 1);
    }

    #[test]
    fn a_region_cut_off_alone_does_not_depose_a_healthy_primary() {
        let mut nodes = vec![node("ea", 0), node("eb", 0), node("ec", 0)];
        for t in (0..=1_000).step_by(100) {
            exchange(&mut nodes, t, |_, _| true);
        }
        // eb hears nobody for a while, then everyone again.
        for t in (1_100..=5_000).step_by(100) {
            exchange(&mut nodes, t, |a, b| a != 1 && b != 1);
        }
        for t in (5_100..=7_000).step_by(100) {
            exchange(&mut nodes, t, |_, _| true);
            assert_eq!(nodes[0].may_write(t), Ok(()), "at {t}");
        }
        assert_eq!(nodes[0].term(), 0);
        assert_eq!(nodes[2].primary(), Some(r("ea")));
    }

    /// A peer's `State` can name this region primary of a term above the
    /// one it stands in (only a peer that lies or is damaged can: a winner
    /// saved the term it stood in). The candidate used to adopt the term,
    /// drop its vote and go on standing, a candidate without its own vote
    /// in a term it never stood in, which a late grant could make primary.
    #[test]
    fn a_candidate_told_of_a_later_term_stops_standing() {
        let mut eb = node("eb", 0);
        let vv = VersionVector::new();
        let state = |primary: &str, primary_term: u64| ElectionMsg::State {
            primary: Some(r(primary)),
            primary_term,
            leader: false,
            hears_primary: false,
            incarnation: 1,
            sent_ms: 2_000,
            echo: None,
        };
        eb.receive(r("ec"), state("ea", 0), 2_000, &vv);
        eb.tick(2_000);
        assert_eq!((eb.role(), eb.term()), (Role::Candidate, 1));
        eb.receive(r("ec"), state("eb", 5), 2_100, &vv);
        assert_eq!(eb.term(), 5);
        assert_eq!(eb.role(), Role::Follower);
        eb.receive(r("ec"), ElectionMsg::VoteGrant { term: 5 }, 2_200, &vv);
        assert_ne!(eb.role(), Role::Leader, "a term it never stood in");
    }

    #[test]
    fn one_vote_per_term_even_across_a_restart() {
        let mut voter = node("ec", 0);
        let vv = VersionVector::new();
        voter.receive(
            r("eb"),
            ElectionMsg::VoteRequest {
                term: 1,
                vv: vv.clone(),
            },
            2_000,
            &vv,
        );
        let saved = voter.take_dirty().expect("the vote is saved");
        assert_eq!(saved.voted_for, Some(r("eb")));
        let mut again = Election::new(voter.config.clone(), Some(saved), 2, 2_000);
        again.receive(
            r("ea"),
            ElectionMsg::VoteRequest {
                term: 1,
                vv: vv.clone(),
            },
            4_000,
            &vv,
        );
        assert_eq!(again.durable().voted_for, Some(r("eb")));
        assert!(again
            .outbox(r("ea"), 4_000, &vv)
            .iter()
            .all(|m| !matches!(m, ElectionMsg::VoteGrant { .. })));
    }

    #[test]
    fn a_voter_refuses_a_candidate_behind_on_the_primarys_writes() {
        let mut voter = node("ec", 0);
        let mut mine = VersionVector::new();
        mine.set(r("ea"), 5);
        let mut theirs = VersionVector::new();
        theirs.set(r("ea"), 4);
        theirs.set(r("eb"), 9);
        voter.receive(
            r("eb"),
            ElectionMsg::VoteRequest {
                term: 1,
                vv: theirs,
            },
            2_000,
            &mine,
        );
        assert_eq!(voter.durable().voted_for, None);
        assert_eq!(voter.term(), 1, "it adopted the term, to stand above it");
    }

    fn state_from(primary: &str, echo: Option<(u64, u64)>, sent_ms: u64) -> ElectionMsg {
        ElectionMsg::State {
            primary: Some(r(primary)),
            primary_term: 0,
            leader: false,
            hears_primary: true,
            incarnation: 9,
            sent_ms,
            echo,
        }
    }

    #[test]
    fn echoes_of_an_earlier_incarnation_renew_no_lease() {
        let vv = VersionVector::new();
        let restarted = Election::new(node("ea", 0).config.clone(), None, 2, 1_000);
        let mut a = restarted.clone();
        for peer in ["eb", "ec"] {
            a.receive(r(peer), state_from("ea", Some((1, 990)), 1_000), 1_000, &vv);
        }
        assert!(a.may_write(1_000).is_err(), "echoes of incarnation 1");
        let mut a = restarted;
        for peer in ["eb", "ec"] {
            a.receive(r(peer), state_from("ea", Some((2, 990)), 1_000), 1_000, &vv);
        }
        assert_eq!(a.may_write(1_000), Ok(()));
    }

    #[test]
    fn a_primary_reached_but_not_followed_for_a_lease_steps_down() {
        let vv = VersionVector::new();
        let mut a = node("ea", 0);
        // The others hear ea but no longer echo it (they voted elsewhere).
        for t in (0..=3_000).step_by(100) {
            for peer in ["eb", "ec"] {
                a.receive(r(peer), state_from("ea", None, t), t, &vv);
            }
            a.tick(t);
        }
        assert_eq!(a.role(), Role::Follower);
        assert!(!a.hears_primary(3_000));
    }

    #[test]
    fn durable_state_round_trips_and_bad_files_are_refused() {
        let d = Durable {
            term: 7,
            voted_for: Some(r("eb")),
            primary: Some(r("ec")),
            primary_term: 6,
        };
        assert_eq!(Durable::decode(&d.encode()), Ok(d));
        assert!(Durable::decode("term x\n").is_err());
        assert!(Durable::decode("term 1\nprimary_term 2\n").is_err());
    }
}
