//! The session (see the module docs of [`super`]) as two state machines
//! without I/O: [`DialerSession`] and [`Acceptor`] are fed the peer's
//! messages and this region's locked [`Store`], read and merge state
//! through it, and answer with an [`Out`]: the messages to send, the LSN
//! the log must be synced to before they leave, and whether a merge raised
//! this region's vector. Neither waits, reads a clock or touches a socket,
//! so the tokio driver ([`super::driver`]) and the simulator run the same
//! steps. A side dropped before it finished must be told to stop tracking
//! changed keys (`stop_tracking`).

use std::collections::{BTreeMap, HashSet};

use meridian_crdt::{Blob, Entry, Hlc, Libraries, VersionVector};
use meridian_store::{Store, StoreError};

use super::tree::{
    ahead_of, compare, descend, in_ranges, joined_tree, key_hash, top_frontier, Range, Tree,
    FRONTIER_MAX, TOP_BITS,
};
use crate::wire::{Msg, BATCH_MAX_BYTES};

/// State an acceptor buffers for one session before merging it.
pub const SESSION_STATE_MAX_BYTES: usize = 1 << 30;

/// States as a side held them: `None` for a key it holds nothing for.
/// Ordered, so a session sends and merges in one order wherever it runs.
pub type StateMap = BTreeMap<Blob, Option<Entry>>;

/// Why a session cannot go on; the link is closed and the session runs
/// again on the next connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The peer runs a session with this region the other way, which
    /// repairs both sides.
    #[error("anti-entropy: the peer runs its own session with this region")]
    Busy,
    #[error("anti-entropy: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("anti-entropy: {0}")]
    Protocol(&'static str),
    #[error("anti-entropy: session state over its limit")]
    TooLarge,
    #[error("anti-entropy: bad range of {0} bits")]
    BadRange(u8),
    #[error("anti-entropy: undecodable state: {0}")]
    Undecodable(postcard::Error),
    #[error("anti-entropy: a state does not encode: {0}")]
    Encode(postcard::Error),
    /// Joining the peer's vector could hide a removal the peer made (see
    /// the module docs): the session is given up and runs again.
    #[error(
        "anti-entropy: {0:?} took an op the peer had seen during the session; comparing again"
    )]
    ChangedMidSession(Blob),
    #[error("anti-entropy: merging failed: {0}")]
    Merge(#[from] StoreError),
}

/// What a side asks its driver to do after a step.
#[derive(Debug, Default)]
pub struct Out {
    /// `msgs` leave only once the op log is synced up to this LSN: state
    /// sent to a peer must not hold ops a crash here could lose (and this
    /// region reissue under the same dots).
    pub synced_lsn: u64,
    pub msgs: Vec<Msg>,
    /// A merge raised this region's vector with ops that are not in its
    /// log: links streaming the log must compare state first.
    pub raised_vv: bool,
    /// This side's session is over.
    pub finished: Option<Finished>,
}

/// A session that ran to its end on one side.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The peer's vector as the peer last sent it: the acceptor's after
    /// its merge (on the dialer), the dialer's at `t4` (on the acceptor).
    pub peer_vv: VersionVector,
    pub keys_sent: u64,
    pub keys_merged: u64,
}

/// True when this region's log cannot bring a peer at `peer_vv` up to date.
pub fn needs_state(store: &Store, peer_vv: &VersionVector) -> bool {
    !peer_vv.dominates(store.log_base_vv())
}

/// Messages that belong to a session (handled by an [`Acceptor`]).
pub fn is_session_msg(msg: &Msg) -> bool {
    matches!(
        msg,
        Msg::AeBegin { .. }
            | Msg::AeAheadEnd { .. }
            | Msg::AeDescend { .. }
            | Msg::AeState { .. }
            | Msg::AeEnd { .. }
    )
}

/// Whether an acceptor refuses a session `peer` dials while its own
/// dialer runs one to `peer`: the session dialed by the region whose id
/// sorts first goes on.
pub fn refuses(me: meridian_crdt::RegionId, peer: meridian_crdt::RegionId, dialing: bool) -> bool {
    dialing && me < peer
}

/// `states` as `AeState` batches, `ranges` with the first.
pub fn state_msgs(
    states: &[(Blob, Option<Entry>)],
    ranges: &[Range],
) -> Result<Vec<Msg>, SessionError> {
    let mut msgs = Vec::new();
    let mut ranges: Vec<(u64, u8)> = ranges.iter().map(|r| (r.prefix, r.bits)).collect();
    let mut batch = Vec::new();
    for (i, state) in states.iter().enumerate() {
        batch = postcard::to_extend(state, batch).map_err(SessionError::Encode)?;
        if batch.len() >= BATCH_MAX_BYTES || i + 1 == states.len() {
            msgs.push(Msg::AeState {
                ranges: std::mem::take(&mut ranges),
                entries: std::mem::take(&mut batch),
            });
        }
    }
    if !ranges.is_empty() {
        msgs.push(Msg::AeState {
            ranges,
            entries: Vec::new(),
        });
    }
    Ok(msgs)
}

/// This region's libraries, for `AeEnd`/`AeDone` (read with the vector
/// they carry).
fn libraries_msg(store: &Store) -> Result<Vec<u8>, SessionError> {
    postcard::to_stdvec(store.db().libraries()).map_err(SessionError::Encode)
}

fn libraries_of(bytes: &[u8]) -> Result<Libraries, SessionError> {
    postcard::from_bytes(bytes).map_err(SessionError::Undecodable)
}

/// Equal states, whatever order their elements arrived in.
fn same(a: &Option<Entry>, b: &Option<Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => *a.canonical() == *b.canonical(),
        _ => false,
    }
}

/// What a session buffers of the peer's states and ranges, within
/// [`SESSION_STATE_MAX_BYTES`].
#[derive(Debug, Default)]
struct Received {
    bytes: usize,
}

impl Received {
    /// Decodes an `AeState`'s ranges into `into_ranges` and states into
    /// `into`.
    fn take(
        &mut self,
        ranges: Vec<(u64, u8)>,
        entries: &[u8],
        into_ranges: &mut Vec<Range>,
        into: &mut StateMap,
    ) -> Result<(), SessionError> {
        self.bytes += entries.len() + ranges.len() * 9;
        if self.bytes > SESSION_STATE_MAX_BYTES {
            return Err(SessionError::TooLarge);
        }
        for (prefix, bits) in ranges {
            if !(TOP_BITS..=64).contains(&bits) {
                return Err(SessionError::BadRange(bits));
            }
            into_ranges.push(Range { prefix, bits });
        }
        let mut rest = entries;
        while !rest.is_empty() {
            let ((key, entry), next) = postcard::take_from_bytes::<(Blob, Option<Entry>)>(rest)
                .map_err(SessionError::Undecodable)?;
            into.insert(key, entry);
            rest = next;
        }
        Ok(())
    }

    /// As [`Received::take`], for states that come without ranges.
    fn take_states(
        &mut self,
        ranges: Vec<(u64, u8)>,
        entries: &[u8],
        into: &mut StateMap,
        why: &'static str,
    ) -> Result<(), SessionError> {
        let mut seen = Vec::new();
        self.take(ranges, entries, &mut seen, into)?;
        match seen.is_empty() {
            true => Ok(()),
            false => Err(SessionError::Protocol(why)),
        }
    }
}

/// Stops a tracker of changed keys, if it runs.
fn stop(store: &mut Store, tracker: &mut Option<u64>) -> HashSet<Blob> {
    tracker
        .take()
        .map(|id| store.db_mut().take_touched(id))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialPhase {
    /// Receiving the acceptor's ahead states.
    Ahead,
    /// Comparing digests.
    Tree,
    /// Receiving the acceptor's answer.
    Answer,
    Over,
}

/// The dialer's side of one session.
#[derive(Debug)]
pub struct DialerSession {
    phase: DialPhase,
    /// Keys changed since `t1`, then since `t4`.
    tracker: Option<u64>,
    vv1: VersionVector,
    /// This region's ahead states until they are sent.
    ahead: Vec<(Blob, Option<Entry>)>,
    ahead_lsn: u64,
    received: Received,
    theirs_ahead: StateMap,
    vv2: VersionVector,
    tree: Option<Tree>,
    frontier: Vec<Range>,
    leaves: Vec<Range>,
    sent: StateMap,
    vv4: VersionVector,
    answer: StateMap,
    keys_sent: u64,
    unsafe_skip_one_key: bool,
}

impl DialerSession {
    /// `t1`: what the peer (at `peer_vv`, from its `Welcome`) certainly
    /// lacks, and changes from now on.
    pub fn begin(store: &mut Store, peer_vv: &VersionVector) -> (DialerSession, Out) {
        let tracker = Some(store.db_mut().track_touched());
        let ahead = ahead_of(store.db(), peer_vv);
        let vv1 = store.db().version_vector().clone();
        let session = DialerSession {
            phase: DialPhase::Ahead,
            tracker,
            vv1: vv1.clone(),
            ahead,
            ahead_lsn: store.log().last_lsn(),
            received: Received::default(),
            theirs_ahead: StateMap::new(),
            vv2: VersionVector::new(),
            tree: None,
            frontier: Vec::new(),
            leaves: Vec::new(),
            sent: StateMap::new(),
            vv4: VersionVector::new(),
            answer: StateMap::new(),
            keys_sent: 0,
            unsafe_skip_one_key: false,
        };
        let out = Out {
            msgs: vec![Msg::AeBegin { vv: vv1 }],
            ..Out::default()
        };
        (session, out)
    }

    /// Leaves the first key the acceptor sent (ahead or in its answer) out
    /// of the final merge and joins the acceptor's vector anyway. Wrong on
    /// purpose: the simulator's `ae-skip-key` breakage proves that its
    /// checkers catch it.
    pub fn unsafe_skip_one_key(mut self) -> DialerSession {
        self.unsafe_skip_one_key = true;
        self
    }

    pub fn is_tracking(&self) -> bool {
        self.tracker.is_some()
    }

    /// Stops recording changed keys: the session is dropped unfinished.
    pub fn stop_tracking(&mut self, store: &mut Store) {
        stop(store, &mut self.tracker);
    }

    /// Feeds the acceptor's next message; `now_ms` is this region's wall
    /// clock, for the merge.
    pub fn handle(
        &mut self,
        store: &mut Store,
        msg: Msg,
        now_ms: u64,
    ) -> Result<Out, SessionError> {
        match (self.phase, msg) {
            (DialPhase::Ahead, Msg::AeState { ranges, entries }) => {
                let why = "ranges among ahead states";
                self.received
                    .take_states(ranges, &entries, &mut self.theirs_ahead, why)?;
                Ok(Out::default())
            }
            (DialPhase::Ahead, Msg::AeAheadEnd { vv }) => self.ahead_end(store, vv),
            (DialPhase::Ahead, Msg::AeBusy) => Err(SessionError::Busy),
            (DialPhase::Tree, Msg::AeNodes { digests })
                if digests.len() == self.frontier.len() * 8 =>
            {
                self.nodes(store, &digests)
            }
            (DialPhase::Answer, Msg::AeState { ranges, entries }) => {
                let why = "ranges in an answer";
                self.received
                    .take_states(ranges, &entries, &mut self.answer, why)?;
                Ok(Out::default())
            }
            (
                DialPhase::Answer,
                Msg::AeDone {
                    vv,
                    clock,
                    libraries,
                },
            ) => {
                let libraries = libraries_of(&libraries)?;
                self.done(store, vv, Hlc(clock), &libraries, now_ms)
            }
            (phase, other) => Err(SessionError::Unexpected {
                expected: match phase {
                    DialPhase::Ahead => "the peer's states",
                    DialPhase::Tree => "digests",
                    DialPhase::Answer => "the peer's answer",
                    DialPhase::Over => "nothing",
                },
                got: format!("{other:?}"),
            }),
        }
    }

    /// `t2` on this side: this region's ahead states go out, and `t3` the
    /// tree as merging the peer's ahead states would leave it.
    fn ahead_end(&mut self, store: &Store, vv2: VersionVector) -> Result<Out, SessionError> {
        let ahead = std::mem::take(&mut self.ahead);
        let mut msgs = state_msgs(&ahead, &[])?;
        msgs.push(Msg::AeAheadEnd {
            vv: self.vv1.clone(),
        });
        self.keys_sent = ahead.len() as u64;
        self.sent = ahead.into_iter().collect();
        self.tree = Some(joined_tree(store.db(), &self.theirs_ahead, &vv2));
        self.vv2 = vv2;
        self.frontier = top_frontier();
        self.phase = DialPhase::Tree;
        Ok(Out {
            synced_lsn: self.ahead_lsn,
            msgs,
            ..Out::default()
        })
    }

    /// One comparison round; once no range is left to split, `t4`.
    fn nodes(&mut self, store: &mut Store, digests: &[u8]) -> Result<Out, SessionError> {
        let Some(tree) = &self.tree else {
            return Err(SessionError::Protocol("digests out of session"));
        };
        let (bitmap, found) = compare(tree, &self.frontier, digests);
        self.leaves.extend(found);
        let next = descend(&self.frontier, &bitmap);
        if !next.is_empty() {
            self.frontier = next;
            return Ok(Out {
                msgs: vec![Msg::AeDescend { bitmap }],
                ..Out::default()
            });
        }
        self.tree = None;
        self.leaves.sort_by_key(|r| r.lo());
        self.leaf_states(store)
    }

    /// `t4`: one lock for the entries, the changed keys, the vector they
    /// reflect, and the log position that covers all of them.
    fn leaf_states(&mut self, store: &mut Store) -> Result<Out, SessionError> {
        let logged_lsn = store.log().last_lsn();
        let touched = stop(store, &mut self.tracker);
        self.tracker = Some(store.db_mut().track_touched());
        let db = store.db();
        let mut states: Vec<(Blob, Option<Entry>)> = db
            .keyspace()
            .iter_all()
            .filter(|(k, _)| {
                touched.contains(*k)
                    || (!self.sent.contains_key(*k) && in_ranges(&self.leaves, key_hash(k)))
            })
            .map(|(k, e)| (k.clone(), Some(e.clone())))
            .collect();
        let mut gone: Vec<Blob> = touched
            .into_iter()
            .filter(|k| db.keyspace().get_any(k).is_none())
            .collect();
        gone.sort();
        states.extend(gone.into_iter().map(|k| (k, None)));
        self.vv4 = db.version_vector().clone();
        let clock = db.clock();
        let mut msgs = state_msgs(&states, &self.leaves)?;
        msgs.push(Msg::AeEnd {
            vv: self.vv4.clone(),
            clock: clock.0,
            libraries: libraries_msg(store)?,
        });
        self.keys_sent += states.len() as u64;
        self.sent.extend(states);
        self.phase = DialPhase::Answer;
        Ok(Out {
            synced_lsn: logged_lsn,
            msgs,
            ..Out::default()
        })
    }

    /// `t6`: the peer's ahead states (at `vA2`), its answer and what it
    /// lacks in the leaf ranges (at `vA5`), then `vA5`.
    fn done(
        &mut self,
        store: &mut Store,
        vv5: VersionVector,
        clock5: Hlc,
        libraries5: &Libraries,
        now_ms: u64,
    ) -> Result<Out, SessionError> {
        store.db_mut().set_now_ms(now_ms);
        let changed = stop(store, &mut self.tracker);
        self.phase = DialPhase::Over;
        let db = store.db();
        // Unanswered, the peer's state at vA5 is what this region sent (it
        // answers every key sent to it unless its state is exactly that);
        // nothing, in a leaf range (`absent` below); and for another key it
        // sent ahead, that ahead state (it answers every key it changed
        // since). Each is joined at vA5 like an answer: the peer's vector
        // may have grown since vA2 without the key changing (by a merge),
        // and the ahead state at vA2 alone would keep what vA5 removed.
        let mut again: Vec<(&Blob, Option<&Entry>)> = self
            .sent
            .iter()
            .filter(|(k, _)| !self.answer.contains_key(*k))
            .map(|(k, e)| (k, e.as_ref()))
            .collect();
        again.extend(
            self.theirs_ahead
                .iter()
                .filter(|(k, _)| {
                    !self.answer.contains_key(*k)
                        && !self.sent.contains_key(*k)
                        && !in_ranges(&self.leaves, key_hash(k))
                })
                .map(|(k, e)| (k, e.as_ref())),
        );
        // A key changed here since t4 must be joined with the peer's state
        // at vA5 too. If it is none of the above, the peer's state is this
        // region's state at t4, which is gone: then only a new dot the peer
        // had seen could be wrong, and the session is given up.
        for k in &changed {
            if self.answer.contains_key(k)
                || self.sent.contains_key(k)
                || self.theirs_ahead.contains_key(k)
                || in_ranges(&self.leaves, key_hash(k))
            {
                continue;
            }
            if db
                .keyspace()
                .get_any(k)
                .is_some_and(|e| e.any_dot(|d| vv5.covers(d) && !self.vv4.covers(d)))
            {
                return Err(SessionError::ChangedMidSession(k.clone()));
            }
        }
        let absent: Vec<Blob> = db
            .keyspace()
            .iter_all()
            .map(|(k, _)| k)
            .chain(
                self.theirs_ahead
                    .keys()
                    .filter(|k| db.keyspace().get_any(k).is_none()),
            )
            .filter(|k| {
                !self.answer.contains_key(*k)
                    && !self.sent.contains_key(*k)
                    && in_ranges(&self.leaves, key_hash(k))
            })
            .cloned()
            .collect();
        let before = db.version_vector().clone();
        let skipped = match self.unsafe_skip_one_key {
            true => self.theirs_ahead.keys().chain(self.answer.keys()).min(),
            false => None,
        };
        let first: Vec<(&Blob, Option<&Entry>)> = self
            .theirs_ahead
            .iter()
            .filter(|(k, _)| Some(*k) != skipped)
            .map(|(k, e)| (k, e.as_ref()))
            .collect();
        let mut last: Vec<(&Blob, Option<&Entry>)> = self
            .answer
            .iter()
            .filter(|(k, _)| Some(*k) != skipped)
            .map(|(k, e)| (k, e.as_ref()))
            .collect();
        last.extend(absent.iter().map(|k| (k, None)));
        last.extend(again);
        let keys_merged = (first.len() + last.len()) as u64;
        store.merge_states(
            &[(first, &self.vv2), (last, &vv5)],
            libraries5,
            &vv5,
            clock5,
        )?;
        Ok(Out {
            raised_vv: *store.db().version_vector() != before,
            finished: Some(Finished {
                peer_vv: vv5,
                keys_sent: self.keys_sent,
                keys_merged,
            }),
            ..Out::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptPhase {
    /// Receiving the dialer's ahead states.
    Ahead,
    /// Comparing digests, then receiving the dialer's leaf states.
    Tree,
}

/// The acceptor's side of one session, from `AeBegin` to `AeDone`.
#[derive(Debug)]
struct AcceptorSession {
    phase: AcceptPhase,
    peer_vv: VersionVector,
    /// This region's vector when it began tracking changed keys (`t2`).
    own_vv: VersionVector,
    tracker: Option<u64>,
    tree: Option<Tree>,
    frontier: Vec<Range>,
    ranges: Vec<Range>,
    ahead: StateMap,
    states: StateMap,
    received: Received,
    keys_sent: u64,
    unsafe_skip_one_key: bool,
}

impl AcceptorSession {
    /// `t2`: what the dialer (at `peer_vv`) certainly lacks, and changes
    /// from now on.
    fn begin(
        store: &mut Store,
        peer_vv: VersionVector,
        unsafe_skip_one_key: bool,
    ) -> Result<(Self, Out), SessionError> {
        let tracker = Some(store.db_mut().track_touched());
        let ahead = ahead_of(store.db(), &peer_vv);
        let own_vv = store.db().version_vector().clone();
        let mut msgs = state_msgs(&ahead, &[])?;
        msgs.push(Msg::AeAheadEnd { vv: own_vv.clone() });
        let session = AcceptorSession {
            phase: AcceptPhase::Ahead,
            peer_vv,
            own_vv,
            tracker,
            tree: None,
            frontier: Vec::new(),
            ranges: Vec::new(),
            ahead: StateMap::new(),
            states: StateMap::new(),
            received: Received::default(),
            keys_sent: ahead.len() as u64,
            unsafe_skip_one_key,
        };
        let out = Out {
            synced_lsn: store.log().last_lsn(),
            msgs,
            ..Out::default()
        };
        Ok((session, out))
    }

    fn handle(&mut self, store: &mut Store, msg: Msg, now_ms: u64) -> Result<Out, SessionError> {
        match (self.phase, msg) {
            (AcceptPhase::Ahead, Msg::AeState { ranges, entries }) => {
                let why = "ranges among ahead states";
                self.received
                    .take_states(ranges, &entries, &mut self.ahead, why)?;
                Ok(Out::default())
            }
            (AcceptPhase::Ahead, Msg::AeAheadEnd { vv }) => {
                if vv != self.peer_vv {
                    return Err(SessionError::Protocol("ahead states read at two vectors"));
                }
                self.tree = Some(joined_tree(store.db(), &self.ahead, &self.peer_vv));
                self.frontier = top_frontier();
                self.phase = AcceptPhase::Tree;
                Ok(self.nodes())
            }
            (AcceptPhase::Tree, Msg::AeDescend { bitmap }) => {
                let next = descend(&self.frontier, &bitmap);
                if self.tree.is_none() || next.len() > FRONTIER_MAX * 4 {
                    return Err(SessionError::Protocol("descend out of session or too wide"));
                }
                self.frontier = next;
                Ok(self.nodes())
            }
            (AcceptPhase::Tree, Msg::AeState { ranges, entries }) => {
                self.tree = None;
                self.received
                    .take(ranges, &entries, &mut self.ranges, &mut self.states)?;
                Ok(Out::default())
            }
            (
                AcceptPhase::Tree,
                Msg::AeEnd {
                    vv,
                    clock,
                    libraries,
                },
            ) => {
                let libraries = libraries_of(&libraries)?;
                self.end(store, vv, Hlc(clock), &libraries, now_ms)
            }
            (phase, other) => Err(SessionError::Unexpected {
                expected: match phase {
                    AcceptPhase::Ahead => "the dialer's ahead states",
                    AcceptPhase::Tree => "a descent or the dialer's states",
                },
                got: format!("{other:?}"),
            }),
        }
    }

    fn nodes(&self) -> Out {
        let digests = self
            .tree
            .as_ref()
            .map(|t| t.encode(&self.frontier))
            .unwrap_or_default();
        Out {
            msgs: vec![Msg::AeNodes { digests }],
            ..Out::default()
        }
    }

    /// `t5`: merge what the dialer sent, join its vector last, answer.
    fn end(
        &mut self,
        store: &mut Store,
        vv4: VersionVector,
        clock: Hlc,
        libraries4: &Libraries,
        now_ms: u64,
    ) -> Result<Out, SessionError> {
        self.ranges.sort_by_key(|r| r.lo());
        if self.tracker.is_none() {
            return Err(SessionError::Protocol("end out of session"));
        }
        store.db_mut().set_now_ms(now_ms);
        let touched = stop(store, &mut self.tracker);
        let db = store.db();
        // A key changed here since t2 that the dialer did not send, out
        // of the leaf ranges, was equal to the dialer's at the trees;
        // only a new dot the dialer had seen could make it wrong to join
        // vD4 now (the dialer may have removed that element): give up.
        for k in &touched {
            if self.states.contains_key(k)
                || self.ahead.contains_key(k)
                || in_ranges(&self.ranges, key_hash(k))
            {
                continue;
            }
            if db
                .keyspace()
                .get_any(k)
                .is_some_and(|e| e.any_dot(|d| vv4.covers(d) && !self.own_vv.covers(d)))
            {
                return Err(SessionError::ChangedMidSession(k.clone()));
            }
        }
        let held: Vec<Blob> = db
            .keyspace()
            .iter_all()
            .filter(|(k, _)| in_ranges(&self.ranges, key_hash(k)))
            .map(|(k, _)| k.clone())
            .collect();
        // Keys held here in a leaf range that the dialer did not send:
        // it holds nothing for them.
        let absent: Vec<&Blob> = held
            .iter()
            .filter(|k| !self.states.contains_key(*k) && !self.ahead.contains_key(*k))
            .collect();
        let before = db.version_vector().clone();
        let skipped = match self.unsafe_skip_one_key {
            true => self.ahead.keys().chain(self.states.keys()).min(),
            false => None,
        };
        let first: Vec<(&Blob, Option<&Entry>)> = self
            .ahead
            .iter()
            .filter(|(k, _)| Some(*k) != skipped)
            .map(|(k, e)| (k, e.as_ref()))
            .collect();
        let mut last: Vec<(&Blob, Option<&Entry>)> = self
            .states
            .iter()
            .filter(|(k, _)| Some(*k) != skipped)
            .map(|(k, e)| (k, e.as_ref()))
            .collect();
        last.extend(absent.iter().map(|k| (*k, None)));
        // A key the dialer sent ahead and not again at t4 did not change
        // there: that state is its state at vD4 too, joined at vD4 as well.
        // The dialer's vector may have grown by a merge that left the key
        // alone, and the state at vD1 would not carry the removals vD4 does.
        last.extend(
            self.ahead
                .iter()
                .filter(|(k, _)| !self.states.contains_key(*k) && Some(*k) != skipped)
                .map(|(k, e)| (k, e.as_ref())),
        );
        let keys_merged = (first.len() + last.len()) as u64;
        store.merge_states(
            &[(first, &self.peer_vv), (last, &vv4)],
            libraries4,
            &vv4,
            clock,
        )?;
        let db = store.db();
        let mut candidates: Vec<&Blob> = held.iter().collect();
        candidates.extend(self.ahead.keys());
        candidates.extend(self.states.keys());
        candidates.extend(touched.iter());
        candidates.sort();
        candidates.dedup();
        let answer: Vec<(Blob, Option<Entry>)> = candidates
            .into_iter()
            .filter_map(|k| {
                let now = db.keyspace().get_any(k).cloned();
                let theirs = self.states.get(k).or_else(|| self.ahead.get(k));
                match theirs {
                    Some(t) if same(t, &now) => None,
                    _ => Some((k.clone(), now)),
                }
            })
            .collect();
        let vv5 = db.version_vector().clone();
        let mut msgs = state_msgs(&answer, &[])?;
        msgs.push(Msg::AeDone {
            vv: vv5.clone(),
            clock: db.clock().0,
            libraries: libraries_msg(store)?,
        });
        self.keys_sent += answer.len() as u64;
        Ok(Out {
            synced_lsn: store.log().last_lsn(),
            msgs,
            raised_vv: vv5 != before,
            finished: Some(Finished {
                peer_vv: vv4,
                keys_sent: self.keys_sent,
                keys_merged,
            }),
        })
    }
}

#[derive(Debug, Default)]
enum Accepting {
    /// No session.
    #[default]
    Idle,
    /// This session was refused (`AeBusy`): what the dialer sent before it
    /// read the refusal is dropped.
    Refused,
    Running(Box<AcceptorSession>),
    /// Answered; the pair stays busy until the dialer streams again (it
    /// has merged the answer by then).
    Answered,
}

/// The acceptor's side of a link: the sessions its dialer runs, one after
/// another, fed the session's messages in order.
#[derive(Debug, Default)]
pub struct Acceptor {
    state: Accepting,
    unsafe_skip_one_key: bool,
}

impl Acceptor {
    /// Sessions begun from now on leave the first key the dialer sent out
    /// of the acceptor's merge and join the dialer's vector anyway. Wrong on
    /// purpose, as [`DialerSession::unsafe_skip_one_key`].
    pub fn unsafe_skip_one_key(&mut self) {
        self.unsafe_skip_one_key = true;
    }

    /// A session from this dialer runs, or was answered and the dialer has
    /// not streamed since.
    pub fn is_accepting(&self) -> bool {
        matches!(self.state, Accepting::Running(_) | Accepting::Answered)
    }

    /// The last session was answered or refused.
    pub fn is_over(&self) -> bool {
        matches!(self.state, Accepting::Answered | Accepting::Refused)
    }

    pub fn is_tracking(&self) -> bool {
        matches!(&self.state, Accepting::Running(s) if s.tracker.is_some())
    }

    /// Stops recording changed keys: the session is dropped unfinished.
    pub fn stop_tracking(&mut self, store: &mut Store) {
        if let Accepting::Running(s) = &mut self.state {
            stop(store, &mut s.tracker);
        }
    }

    /// The dialer sent something outside a session: any session it dialed
    /// is over on its side.
    pub fn settle(&mut self, store: &mut Store) {
        self.stop_tracking(store);
        self.state = Accepting::Idle;
    }

    /// Feeds one session message ([`is_session_msg`]). `refuse` is whether
    /// an `AeBegin` is refused ([`refuses`]; ignored for other messages);
    /// `now_ms` is this region's wall clock, for the merge.
    pub fn handle(
        &mut self,
        store: &mut Store,
        msg: Msg,
        now_ms: u64,
        refuse: bool,
    ) -> Result<Out, SessionError> {
        if let Msg::AeBegin { vv } = msg {
            self.settle(store);
            if refuse {
                self.state = Accepting::Refused;
                return Ok(Out {
                    msgs: vec![Msg::AeBusy],
                    ..Out::default()
                });
            }
            let (session, out) = AcceptorSession::begin(store, vv, self.unsafe_skip_one_key)?;
            self.state = Accepting::Running(Box::new(session));
            return Ok(out);
        }
        match (&mut self.state, msg) {
            (Accepting::Refused, Msg::AeState { .. } | Msg::AeAheadEnd { .. }) => {
                Ok(Out::default())
            }
            (Accepting::Running(session), msg) => {
                let out = session.handle(store, msg, now_ms)?;
                if out.finished.is_some() {
                    self.state = Accepting::Answered;
                }
                Ok(out)
            }
            (state, other) => Err(SessionError::Unexpected {
                expected: match state {
                    Accepting::Idle => "a session to begin",
                    _ => "nothing until the dialer streams again",
                },
                got: format!("{other:?}"),
            }),
        }
    }
}
