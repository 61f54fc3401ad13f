//! Anti-entropy: repairing a pair of regions that the retained log cannot
//! bring up to date, by shipping state for the keys that differ — both
//! ways, in one session.
//!
//! # Digest tree
//! Every key sits at `key_hash(key)`, a 64-bit hash; a range is the set of
//! hashes sharing a prefix of `bits` bits ([`Range`]). A range's digest is
//! the wrapping sum of its keys' digests, each a hash of the key and its
//! postcard-encoded [`Entry`] (hidden state included, in
//! [`Entry::canonical`] form), so equal digests mean equal state (up to a
//! 64-bit collision). Trees are built on demand from the keyspace, one pass
//! under the store lock; nothing is maintained on the write path.
//!
//! # Keys ahead of the peer
//! A key whose state holds a dot the peer's version vector does not cover
//! ([`Entry::holds_dot_beyond`]) certainly differs from the peer's: the peer
//! has not seen that op. Such keys are sent first, with no digest at all;
//! after a partition they are nearly all the diverged keys (a write leaves
//! its dot). The digest trees then compare each side's state *as joining
//! the other's ahead states would leave it* ([`joined_tree`]), so they only
//! have to find what left no dot behind (deletes) and what changed during
//! the session.
//!
//! # Session (on the dialer's link, before streaming)
//! D is the dialer, A the acceptor; `t1…t6` name the moments below.
//! 1. `t1` D starts recording which keys change, collects its states ahead
//!    of A's `Welcome` vector and its vector `vD1`; sends `AeBegin { vD1 }`.
//! 2. `t2` A starts recording changed keys, collects its states ahead of
//!    `vD1` and its vector `vA2`, and sends them (`AeState`s, then
//!    `AeAheadEnd { vA2 }`). D sends its ahead states and `AeAheadEnd`.
//! 3. A builds its tree joined with D's ahead states and answers `AeNodes`
//!    with the digests of the 2^[`TOP_BITS`] top ranges; `t3` D builds its
//!    tree joined with A's ahead states and compares: an equal range is
//!    done; a differing range where D holds at most [`LEAF_KEYS_MAX`] keys
//!    becomes a leaf; any other is split into 2^[`SPLIT_BITS`] parts
//!    (`AeDescend`), whose digests A answers. Repeat.
//! 4. `t4` under one store lock D collects its states of every key in a
//!    leaf range that it did not send ahead, and of every key changed since
//!    `t1` (`None` for one it no longer holds), its vector `vD4` and clock;
//!    sends them (`AeState` with the leaf ranges) and `AeEnd { vD4 }`.
//! 5. `t5` under one store lock A joins D's ahead states (read at `vD1`),
//!    then D's later states and the empty state for every key it holds in a
//!    leaf range that D did not send (read at `vD4`), and only then joins
//!    `vD4`. It answers, read under the same lock, its state of every key
//!    that D sent, that lies in a leaf range or that changed at A since
//!    `t2`, unless D sent exactly that state; then `AeDone { vA5 }`.
//! 6. `t6` under one store lock D joins A's ahead states (at `vA2`), A's
//!    answer and the empty state for every key in a leaf range that neither
//!    side sent (at `vA5`), and only then joins `vA5`. Both merges are made
//!    durable by a snapshot ([`Store::merge_states`]); streaming resumes.
//!
//! Why each vector may be joined: a key outside the leaf ranges had equal
//! joined states in the trees, so whatever one side held there at the tree
//! is in the other's state once the ahead states are merged; a key changed
//! after its side started recording is sent by that side at `t4` or `t5`;
//! everything else was sent. A key D sent ahead and did not change is
//! D's state at `t4` too. A key A answered nothing for holds what D sent.
//!
//! A key that changes on one side after that side collected what it sends
//! (after `t2` at A, after `t4` at D) is joined with the other side's state
//! when that state is at hand (answered, sent, sent ahead, or empty in a
//! leaf range). Otherwise the other side's state is the one compared equal
//! at the trees, which this side no longer holds: if the change brought an
//! element whose dot the other side had seen (an op relayed by a third
//! region or streamed meanwhile), the other side may have removed it, and
//! joining its vector would hide that removal for good, so the session is
//! given up (before either merge at A, before D's merge at D) and runs again.
//!
//! Every state sent holds only ops on disk: a side waits until its log is
//! synced up to what it collected before sending.
//!
//! # One session per pair
//! The session repairs both sides, so a pair needs one. A dialer does not
//! start one while it is accepting one from the same peer; when both dial at
//! once, the acceptor whose own dialer runs a session to that peer refuses
//! (`AeBusy`) if its region id sorts first, so the session dialed by the
//! region sorting first goes on. The refused dialer waits for the accepted
//! session to end (the peer streams again), then reconnects and compares
//! version vectors afresh, which normally needs no session.
//!
//! [`Store::merge_states`]: meridian_store::Store::merge_states

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_crdt::{Blob, Entry, Hlc, RegionId, VersionVector};
use meridian_store::{Db, Store};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::status::ReplStatus;
use crate::wire::{read_msg, write_msg, Msg, WireError, BATCH_MAX_BYTES};
use crate::{wall_ms, Host, ReplConfig};

/// Bits of the top-level ranges (256 ranges).
pub const TOP_BITS: u8 = 8;
/// How long a session waits for the state it sends to be on disk.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Each split makes 2^SPLIT_BITS parts.
pub const SPLIT_BITS: u8 = 2;
/// A differing range with at most this many keys on the dialer is sent whole.
pub const LEAF_KEYS_MAX: usize = 2;
/// Ranges compared in one round; past it, differing ranges are sent whole.
pub const FRONTIER_MAX: usize = 1 << 20;
/// State an acceptor buffers for one session before merging it.
pub const SESSION_STATE_MAX_BYTES: usize = 1 << 30;

/// Hashes with the top `bits` bits equal to `prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub prefix: u64,
    pub bits: u8,
}

impl Range {
    pub fn lo(self) -> u64 {
        if self.bits == 0 {
            0
        } else {
            self.prefix << (64 - self.bits as u32)
        }
    }

    pub fn hi(self) -> u64 {
        self.lo() | u64::MAX.checked_shr(self.bits as u32).unwrap_or(0)
    }

    pub fn contains(self, h: u64) -> bool {
        (self.lo()..=self.hi()).contains(&h)
    }

    fn parts(self) -> impl Iterator<Item = Range> {
        (0..1u64 << SPLIT_BITS).map(move |i| Range {
            prefix: (self.prefix << SPLIT_BITS) | i,
            bits: self.bits + SPLIT_BITS,
        })
    }
}

/// The top-level ranges, in order.
pub fn top_frontier() -> Vec<Range> {
    (0..1u64 << TOP_BITS)
        .map(|prefix| Range {
            prefix,
            bits: TOP_BITS,
        })
        .collect()
}

/// The next frontier: the parts of every range whose bit is set.
pub fn descend(frontier: &[Range], bitmap: &[u8]) -> Vec<Range> {
    frontier
        .iter()
        .enumerate()
        .filter(|(i, _)| bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .flat_map(|(_, r)| r.parts())
        .collect()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Where a key sits in the tree.
pub fn key_hash(key: &[u8]) -> u64 {
    mix(fnv(0xcbf29ce484222325, key))
}

/// A key's digest: its name and its whole state, encoded canonically so
/// that regions holding the same state agree whatever order its elements
/// arrived in.
pub fn key_digest(key: &[u8], entry: &Entry, scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    let encoded =
        postcard::to_extend(&*entry.canonical(), std::mem::take(scratch)).unwrap_or_default();
    let h = fnv(
        fnv(0x84222325cbf29ce4, &(key.len() as u64).to_le_bytes()),
        key,
    );
    let d = mix(fnv(h, &encoded));
    *scratch = encoded;
    d
}

/// Every key's (hash, digest), sorted by hash, with prefix sums so any
/// range's digest and key count take two binary searches.
#[derive(Debug, Default)]
pub struct Tree {
    hashes: Vec<u64>,
    sums: Vec<u64>,
}

impl Tree {
    pub fn build<'a>(keys: impl Iterator<Item = (&'a Blob, &'a Entry)>) -> Tree {
        let mut scratch = Vec::new();
        let items = keys
            .map(|(k, e)| (key_hash(k), key_digest(k, e, &mut scratch)))
            .collect();
        Tree::from_items(items)
    }

    pub fn from_items(mut items: Vec<(u64, u64)>) -> Tree {
        items.sort_unstable();
        let mut sums = Vec::with_capacity(items.len() + 1);
        sums.push(0u64);
        let mut acc = 0u64;
        for (_, d) in &items {
            acc = acc.wrapping_add(*d);
            sums.push(acc);
        }
        Tree {
            hashes: items.into_iter().map(|(h, _)| h).collect(),
            sums,
        }
    }

    fn span(&self, r: Range) -> (usize, usize) {
        let lo = self.hashes.partition_point(|h| *h < r.lo());
        let hi = self.hashes.partition_point(|h| *h <= r.hi());
        (lo, hi)
    }

    pub fn digest(&self, r: Range) -> u64 {
        let (lo, hi) = self.span(r);
        self.sums[hi].wrapping_sub(self.sums[lo])
    }

    pub fn count(&self, r: Range) -> usize {
        let (lo, hi) = self.span(r);
        hi - lo
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Digests of `frontier`, 8 bytes LE each.
    pub fn encode(&self, frontier: &[Range]) -> Vec<u8> {
        frontier
            .iter()
            .flat_map(|r| self.digest(*r).to_le_bytes())
            .collect()
    }
}

/// One comparison round on the dialer: which ranges to split (a bitmap
/// over `frontier`) and which differing ranges to send whole.
pub fn compare(mine: &Tree, frontier: &[Range], theirs: &[u8]) -> (Vec<u8>, Vec<Range>) {
    let mut bitmap = vec![0u8; frontier.len().div_ceil(8)];
    let mut leaves = Vec::new();
    let mut next_len = 0usize;
    for (i, r) in frontier.iter().enumerate() {
        let their = theirs
            .get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        if their == Some(mine.digest(*r)) {
            continue;
        }
        let parts = 1usize << SPLIT_BITS;
        if mine.count(*r) <= LEAF_KEYS_MAX
            || r.bits + SPLIT_BITS > 64
            || next_len + parts > FRONTIER_MAX
        {
            leaves.push(*r);
        } else {
            bitmap[i / 8] |= 1 << (i % 8);
            next_len += parts;
        }
    }
    (bitmap, leaves)
}

/// True if `h` lies in one of `ranges` (disjoint, sorted by `lo`).
pub fn in_ranges(ranges: &[Range], h: u64) -> bool {
    let at = ranges.partition_point(|r| r.lo() <= h);
    at > 0 && ranges[at - 1].contains(h)
}

/// True when this region's log cannot bring a peer at `peer_vv` up to date.
pub fn needed(host: &Host, peer_vv: &VersionVector) -> bool {
    !peer_vv.dominates(host.store.lock().log_base_vv())
}

/// Messages that belong to a session (handled by [`Acceptor::handle`]).
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

/// States as a side held them: `None` for a key it holds nothing for.
type StateMap = HashMap<Blob, Option<Entry>>;

/// Every key whose state holds an op a region at `peer_vv` has not seen:
/// they differ from the peer's whatever it holds.
pub fn ahead_of(db: &Db, peer_vv: &VersionVector) -> Vec<(Blob, Option<Entry>)> {
    db.keyspace()
        .iter_all()
        .filter(|(_, e)| e.holds_dot_beyond(peer_vv))
        .map(|(k, e)| (k.clone(), Some(e.clone())))
        .collect()
}

/// The digest tree of this region's state as joining `theirs` (a peer's
/// states, read at `their_vv`) would leave it; nothing is changed.
pub fn joined_tree(db: &Db, theirs: &StateMap, their_vv: &VersionVector) -> Tree {
    let mut scratch = Vec::new();
    let mut items = Vec::new();
    for (k, e) in db.keyspace().iter_all() {
        match theirs.get(k) {
            None => items.push((key_hash(k), key_digest(k, e, &mut scratch))),
            Some(t) => {
                if let Some(j) = db.joined_state(k, t.as_ref(), their_vv) {
                    items.push((key_hash(k), key_digest(k, &j, &mut scratch)));
                }
            }
        }
    }
    for (k, t) in theirs {
        if db.keyspace().get_any(k).is_none() {
            if let Some(j) = db.joined_state(k, t.as_ref(), their_vv) {
                items.push((key_hash(k), key_digest(k, &j, &mut scratch)));
            }
        }
    }
    Tree::from_items(items)
}

/// Equal states, whatever order their elements arrived in.
fn same(a: &Option<Entry>, b: &Option<Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => *a.canonical() == *b.canonical(),
        _ => false,
    }
}

fn record(status: &ReplStatus, bytes: u64, keys_sent: u64, keys_merged: u64) {
    let mut ae = status.antientropy.lock();
    ae.sessions_total += 1;
    ae.bytes_total += bytes;
    ae.keys_sent_total += keys_sent;
    ae.keys_merged_total += keys_merged;
}

/// One session's record of changed keys ([`Db::track_touched`]); stopped
/// when taken or dropped. Never dropped while the store lock is held.
struct Tracking {
    store: Arc<Mutex<Store>>,
    id: Option<u64>,
}

impl Tracking {
    /// Starts tracking; `store` is the locked `shared`.
    fn start(shared: &Arc<Mutex<Store>>, store: &mut Store) -> Tracking {
        Tracking {
            store: shared.clone(),
            id: Some(store.db_mut().track_touched()),
        }
    }

    /// The keys changed since the start; stops tracking.
    fn take(&mut self, store: &mut Store) -> HashSet<Blob> {
        self.id
            .take()
            .map(|id| store.db_mut().take_touched(id))
            .unwrap_or_default()
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.store.lock().db_mut().take_touched(id);
        }
    }
}

/// A peer's place in [`ReplStatus::antientropy_peers`], left when dropped.
struct PeerSession {
    status: Arc<ReplStatus>,
    peer: RegionId,
    dialing: bool,
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        {
            let mut peers = self.status.antientropy_peers.lock();
            if self.dialing {
                peers.dialing.remove(&self.peer);
            } else {
                peers.accepting.remove(&self.peer);
            }
        }
        self.status.antientropy_ended.notify_waiters();
    }
}

/// How long a dialer waits for a session the peer dialed to end.
pub const BUSY_WAIT: Duration = Duration::from_secs(120);

/// Waits (at most [`BUSY_WAIT`]) until no session accepted from `peer` is
/// in progress here.
pub async fn wait_for_accepted(status: &ReplStatus, peer: RegionId) {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        // Created before the check, so a notification in between counts.
        let ended = status.antientropy_ended.notified();
        if !status.antientropy_peers.lock().accepting.contains(&peer) {
            return;
        }
        if tokio::time::timeout_at(deadline, ended).await.is_err() {
            return;
        }
    }
}

/// Waits until the op log is on disk up to `lsn`: state sent to a peer
/// must not hold ops a crash here could lose (and this region reissue).
async fn wait_synced(host: &Host, lsn: u64) -> Result<(), String> {
    if host.store.lock().log().synced_lsn() >= lsn {
        return Ok(());
    }
    let mut synced = host.synced.subscribe();
    let durable = tokio::time::timeout(SYNC_WAIT, synced.wait_for(|l| *l >= lsn))
        .await
        .is_ok_and(|r| r.is_ok());
    match durable {
        true => Ok(()),
        false => Err(format!(
            "anti-entropy: the op log did not become durable up to lsn {lsn} within {SYNC_WAIT:?}"
        )),
    }
}

/// Sends `states` as `AeState` batches, `ranges` with the first; returns
/// the bytes written.
async fn send_states<W: AsyncWrite + Unpin>(
    wr: &mut W,
    states: &[(Blob, Option<Entry>)],
    ranges: &[Range],
) -> Result<u64, String> {
    let mut bytes = 0u64;
    let mut ranges: Vec<(u64, u8)> = ranges.iter().map(|r| (r.prefix, r.bits)).collect();
    let mut batch = Vec::new();
    for (i, state) in states.iter().enumerate() {
        batch = postcard::to_extend(state, batch).map_err(|e| e.to_string())?;
        if batch.len() >= BATCH_MAX_BYTES || i + 1 == states.len() {
            let msg = Msg::AeState {
                ranges: std::mem::take(&mut ranges),
                entries: std::mem::take(&mut batch),
            };
            bytes += write_msg(wr, &msg).await.map_err(|e| e.to_string())? as u64;
        }
    }
    if !ranges.is_empty() {
        let msg = Msg::AeState {
            ranges,
            entries: Vec::new(),
        };
        bytes += write_msg(wr, &msg).await.map_err(|e| e.to_string())? as u64;
    }
    Ok(bytes)
}

/// What a session buffers of the peer's states and ranges, within
/// [`SESSION_STATE_MAX_BYTES`].
#[derive(Debug, Default)]
struct Received {
    bytes: usize,
}

impl Received {
    /// Decodes an `AeState`'s ranges into `ranges` and states into `into`.
    fn take(
        &mut self,
        ranges: Vec<(u64, u8)>,
        entries: &[u8],
        into_ranges: &mut Vec<Range>,
        into: &mut StateMap,
    ) -> Result<(), String> {
        self.bytes += entries.len() + ranges.len() * 9;
        if self.bytes > SESSION_STATE_MAX_BYTES {
            return Err("anti-entropy: session state over its limit".into());
        }
        for (prefix, bits) in ranges {
            if !(TOP_BITS..=64).contains(&bits) {
                return Err(format!("anti-entropy: bad range of {bits} bits"));
            }
            into_ranges.push(Range { prefix, bits });
        }
        let mut rest = entries;
        while !rest.is_empty() {
            let ((key, entry), next) = postcard::take_from_bytes::<(Blob, Option<Entry>)>(rest)
                .map_err(|e| format!("anti-entropy: undecodable state: {e}"))?;
            into.insert(key, entry);
            rest = next;
        }
        Ok(())
    }
}

/// Why a dialer's session did not run to its end.
#[derive(Debug)]
pub enum PushError {
    /// The peer runs a session with this region the other way
    /// ([`wait_for_accepted`], then reconnect).
    Busy,
    Failed(String),
}

impl From<String> for PushError {
    fn from(e: String) -> Self {
        PushError::Failed(e)
    }
}

impl From<WireError> for PushError {
    fn from(e: WireError) -> Self {
        PushError::Failed(e.to_string())
    }
}

/// Runs a session as the dialer, `peer_vv` being the peer's vector from its
/// `Welcome`; returns the peer's version vector after it.
pub async fn push<R, W>(
    rd: &mut R,
    wr: &mut W,
    host: &Host,
    status: &Arc<ReplStatus>,
    peer: RegionId,
    peer_vv: &VersionVector,
) -> Result<VersionVector, PushError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // One session dialed at a time: each buffers up to a session's state.
    let _one = status.antientropy_session.lock().await;
    let _pair = {
        let mut peers = status.antientropy_peers.lock();
        if peers.accepting.contains(&peer) {
            return Err(PushError::Busy);
        }
        peers.dialing.insert(peer);
        PeerSession {
            status: status.clone(),
            peer,
            dialing: true,
        }
    };
    let started = Instant::now();
    let done = push_session(rd, wr, host, peer_vv).await?;
    record(status, done.bytes, done.keys_sent, done.keys_merged);
    tracing::info!(%peer, keys_sent = done.keys_sent, keys_merged = done.keys_merged, bytes = done.bytes, elapsed_ms = started.elapsed().as_millis() as u64, "anti-entropy session repaired both sides");
    Ok(done.peer_vv)
}

struct Pushed {
    peer_vv: VersionVector,
    bytes: u64,
    keys_sent: u64,
    keys_merged: u64,
}

async fn push_session<R, W>(
    rd: &mut R,
    wr: &mut W,
    host: &Host,
    peer_vv: &VersionVector,
) -> Result<Pushed, PushError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // t1: what the peer certainly lacks, and changes from now on.
    let (mut tracking, ahead, vv1, ahead_lsn) = {
        let mut store = host.store.lock();
        let tracking = Tracking::start(&host.store, &mut store);
        let ahead = ahead_of(store.db(), peer_vv);
        let vv = store.db().version_vector().clone();
        (tracking, ahead, vv, store.log().last_lsn())
    };
    let mut bytes = write_msg(wr, &Msg::AeBegin { vv: vv1.clone() }).await? as u64;
    let mut received = Received::default();
    let mut no_ranges = Vec::new();
    let mut theirs_ahead = StateMap::new();
    let vv2 = loop {
        let (msg, size) = read_msg(rd).await?;
        bytes += size as u64;
        match msg {
            Msg::AeState { ranges, entries } => {
                received.take(ranges, &entries, &mut no_ranges, &mut theirs_ahead)?
            }
            Msg::AeAheadEnd { vv } => break vv,
            Msg::AeBusy => return Err(PushError::Busy),
            other => {
                return Err(PushError::Failed(format!(
                    "anti-entropy: expected the peer's states, got {other:?}"
                )))
            }
        }
    };
    if !no_ranges.is_empty() {
        return Err(PushError::Failed(
            "anti-entropy: ranges among ahead states".into(),
        ));
    }
    wait_synced(host, ahead_lsn).await?;
    bytes += send_states(wr, &ahead, &[]).await?;
    bytes += write_msg(wr, &Msg::AeAheadEnd { vv: vv1 }).await? as u64;
    let mut sent: StateMap = ahead.into_iter().collect();
    let keys_ahead = sent.len() as u64;
    // t3: the tree as merging the peer's ahead states would leave it.
    let mine = joined_tree(host.store.lock().db(), &theirs_ahead, &vv2);
    let mut frontier = top_frontier();
    let mut leaves = Vec::new();
    loop {
        let (msg, size) = read_msg(rd).await?;
        bytes += size as u64;
        let digests = match msg {
            Msg::AeNodes { digests } if digests.len() == frontier.len() * 8 => digests,
            other => {
                return Err(PushError::Failed(format!(
                    "anti-entropy: expected digests, got {other:?}"
                )))
            }
        };
        let (bitmap, found) = compare(&mine, &frontier, &digests);
        leaves.extend(found);
        let next = descend(&frontier, &bitmap);
        if next.is_empty() {
            break;
        }
        bytes += write_msg(wr, &Msg::AeDescend { bitmap }).await? as u64;
        frontier = next;
    }
    drop(mine);
    leaves.sort_by_key(|r| r.lo());
    // t4: one lock for the entries, the changed keys, the vector they
    // reflect, and the log position that covers all of them.
    let (states, vv4, clock, logged_lsn, mut later) = {
        let mut store = host.store.lock();
        let logged_lsn = store.log().last_lsn();
        let touched = tracking.take(&mut store);
        let later = Tracking::start(&host.store, &mut store);
        let db = store.db();
        let mut states: Vec<(Blob, Option<Entry>)> = db
            .keyspace()
            .iter_all()
            .filter(|(k, _)| {
                touched.contains(*k) || (!sent.contains_key(*k) && in_ranges(&leaves, key_hash(k)))
            })
            .map(|(k, e)| (k.clone(), Some(e.clone())))
            .collect();
        states.extend(
            touched
                .into_iter()
                .filter(|k| db.keyspace().get_any(k).is_none())
                .map(|k| (k, None)),
        );
        (
            states,
            db.version_vector().clone(),
            db.clock(),
            logged_lsn,
            later,
        )
    };
    drop(tracking);
    wait_synced(host, logged_lsn).await?;
    bytes += send_states(wr, &states, &leaves).await?;
    bytes += write_msg(
        wr,
        &Msg::AeEnd {
            vv: vv4.clone(),
            clock: clock.0,
        },
    )
    .await? as u64;
    let keys_sent = keys_ahead + states.len() as u64;
    sent.extend(states);
    let mut answer = StateMap::new();
    let (vv5, clock5) = loop {
        let (msg, size) = read_msg(rd).await?;
        bytes += size as u64;
        match msg {
            Msg::AeState { ranges, entries } => {
                received.take(ranges, &entries, &mut no_ranges, &mut answer)?
            }
            Msg::AeDone { vv, clock } => break (vv, Hlc(clock)),
            other => {
                return Err(PushError::Failed(format!(
                    "anti-entropy: expected the peer's answer, got {other:?}"
                )))
            }
        }
    };
    if !no_ranges.is_empty() {
        return Err(PushError::Failed(
            "anti-entropy: ranges in an answer".into(),
        ));
    }
    // t6: the peer's ahead states (at vv2), its answer and what it lacks
    // in the leaf ranges (at vv5), then vv5.
    let keys_merged = {
        let mut store = host.store.lock();
        store.db_mut().set_now_ms(wall_ms());
        let changed = later.take(&mut store);
        let db = store.db();
        // A key changed here since t4 must be joined with the peer's state
        // at vv5 too. Unanswered, the peer's state is what this region
        // sent, its ahead state, nothing (in a leaf range), or this
        // region's state at t4, which is gone: then only a new dot the
        // peer had seen could be wrong, and the session is given up.
        let mut again: Vec<(&Blob, Option<&Entry>)> = Vec::new();
        for k in &changed {
            if answer.contains_key(k) || in_ranges(&leaves, key_hash(k)) {
                continue;
            }
            if let Some(state) = sent.get(k).or_else(|| theirs_ahead.get(k)) {
                again.push((k, state.as_ref()));
            } else if db
                .keyspace()
                .get_any(k)
                .is_some_and(|e| e.any_dot(|d| vv5.covers(d) && !vv4.covers(d)))
            {
                return Err(PushError::Failed(format!(
                    "anti-entropy: {k:?} took an op the peer had seen during the session; comparing again"
                )));
            }
        }
        let absent: Vec<Blob> = db
            .keyspace()
            .iter_all()
            .map(|(k, _)| k)
            .chain(
                theirs_ahead
                    .keys()
                    .filter(|k| db.keyspace().get_any(k).is_none()),
            )
            .filter(|k| {
                !answer.contains_key(*k)
                    && !sent.contains_key(*k)
                    && in_ranges(&leaves, key_hash(k))
            })
            .cloned()
            .collect();
        let before = db.version_vector().clone();
        let first: Vec<(&Blob, Option<&Entry>)> =
            theirs_ahead.iter().map(|(k, e)| (k, e.as_ref())).collect();
        let mut last: Vec<(&Blob, Option<&Entry>)> =
            answer.iter().map(|(k, e)| (k, e.as_ref())).collect();
        last.extend(absent.iter().map(|k| (k, None)));
        last.extend(again);
        let n = (first.len() + last.len()) as u64;
        store
            .merge_states(&[(first, &vv2), (last, &vv5)], &vv5, clock5)
            .map_err(|e| format!("anti-entropy: merging failed: {e}"))?;
        if *store.db().version_vector() != before {
            // Ops now in the state but not in the log: links that stream
            // this region's log must compare state first.
            host.state_merged.send_modify(|n| *n += 1);
        }
        n
    };
    Ok(Pushed {
        peer_vv: vv5,
        bytes,
        keys_sent,
        keys_merged,
    })
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// No session.
    #[default]
    Idle,
    /// This session was refused (`AeBusy`): what the dialer sent before it
    /// read the refusal is dropped.
    Refused,
    /// Receiving the dialer's ahead states.
    Ahead,
    /// Comparing digests, then receiving the dialer's leaf states.
    Tree,
    /// Answered; the place in `antientropy_peers` is kept until the dialer
    /// streams again (it has merged the answer by then).
    Done,
}

/// The acceptor's side of a session, fed the session's messages in order.
#[derive(Default)]
pub struct Acceptor {
    phase: Phase,
    peer_vv: VersionVector,
    /// This region's vector when it began tracking changed keys (t2).
    own_vv: VersionVector,
    tracking: Option<Tracking>,
    pair: Option<PeerSession>,
    tree: Option<Tree>,
    frontier: Vec<Range>,
    ranges: Vec<Range>,
    ahead: StateMap,
    states: StateMap,
    received: Received,
    keys_sent: u64,
    bytes: u64,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("phase", &self.phase)
            .field("ranges", &self.ranges.len())
            .field("ahead", &self.ahead.len())
            .field("states", &self.states.len())
            .finish()
    }
}

impl Acceptor {
    /// The dialer sent something outside a session: any session it dialed
    /// is over on its side.
    pub fn settle(&mut self) {
        if self.phase != Phase::Idle {
            *self = Acceptor::default();
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        peer: RegionId,
        msg: Msg,
        size: usize,
        wr: &mut W,
        config: &ReplConfig,
        host: &Host,
        status: &Arc<ReplStatus>,
    ) -> Result<(), String> {
        if config.witness {
            return Err("anti-entropy sent to a witness".into());
        }
        self.bytes += size as u64;
        match (msg, self.phase) {
            (Msg::AeBegin { vv }, _) => {
                // Dropped here, outside the store lock.
                *self = Acceptor::default();
                self.begin(peer, vv, size, wr, config, host, status).await
            }
            (Msg::AeState { .. } | Msg::AeAheadEnd { .. }, Phase::Refused) => Ok(()),
            (Msg::AeState { ranges, entries }, Phase::Ahead) => {
                let mut ranges_seen = Vec::new();
                self.received
                    .take(ranges, &entries, &mut ranges_seen, &mut self.ahead)?;
                if ranges_seen.is_empty() {
                    Ok(())
                } else {
                    Err("anti-entropy: ranges among ahead states".into())
                }
            }
            (Msg::AeAheadEnd { vv }, Phase::Ahead) => {
                if vv != self.peer_vv {
                    return Err("anti-entropy: ahead states read at two vectors".into());
                }
                let tree = joined_tree(host.store.lock().db(), &self.ahead, &self.peer_vv);
                self.tree = Some(tree);
                self.frontier = top_frontier();
                self.phase = Phase::Tree;
                self.send_nodes(wr).await
            }
            (Msg::AeDescend { bitmap }, Phase::Tree) => {
                let next = descend(&self.frontier, &bitmap);
                if self.tree.is_none() || next.len() > FRONTIER_MAX * 4 {
                    return Err("anti-entropy: descend out of session or too wide".into());
                }
                self.frontier = next;
                self.send_nodes(wr).await
            }
            (Msg::AeState { ranges, entries }, Phase::Tree) => {
                self.tree = None;
                self.received
                    .take(ranges, &entries, &mut self.ranges, &mut self.states)
            }
            (Msg::AeEnd { vv, clock }, Phase::Tree) => {
                self.end(peer, vv, Hlc(clock), wr, host, status).await
            }
            (other, phase) => Err(format!(
                "anti-entropy: unexpected {other:?} in phase {phase:?}"
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin<W: AsyncWrite + Unpin>(
        &mut self,
        peer: RegionId,
        vv: VersionVector,
        size: usize,
        wr: &mut W,
        config: &ReplConfig,
        host: &Host,
        status: &Arc<ReplStatus>,
    ) -> Result<(), String> {
        self.bytes = size as u64;
        let refuse = {
            let mut peers = status.antientropy_peers.lock();
            let refuse = peers.dialing.contains(&peer) && config.region < peer;
            if !refuse {
                peers.accepting.insert(peer);
            }
            refuse
        };
        if refuse {
            self.phase = Phase::Refused;
            let sent = write_msg(wr, &Msg::AeBusy)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(%peer, "anti-entropy: refused a session; this region's own session with the peer repairs both");
            self.bytes += sent as u64;
            return Ok(());
        }
        self.pair = Some(PeerSession {
            status: status.clone(),
            peer,
            dialing: false,
        });
        // t2: what the dialer certainly lacks, and changes from now on.
        let (ahead, vv2, lsn) = {
            let mut store = host.store.lock();
            self.tracking = Some(Tracking::start(&host.store, &mut store));
            let ahead = ahead_of(store.db(), &vv);
            (
                ahead,
                store.db().version_vector().clone(),
                store.log().last_lsn(),
            )
        };
        self.peer_vv = vv;
        self.own_vv = vv2.clone();
        self.phase = Phase::Ahead;
        wait_synced(host, lsn).await?;
        self.keys_sent += ahead.len() as u64;
        self.bytes += send_states(wr, &ahead, &[]).await?;
        let sent = write_msg(wr, &Msg::AeAheadEnd { vv: vv2 })
            .await
            .map_err(|e| e.to_string())?;
        self.bytes += sent as u64;
        Ok(())
    }

    async fn end<W: AsyncWrite + Unpin>(
        &mut self,
        peer: RegionId,
        vv4: VersionVector,
        clock: Hlc,
        wr: &mut W,
        host: &Host,
        status: &ReplStatus,
    ) -> Result<(), String> {
        self.ranges.sort_by_key(|r| r.lo());
        let Some(mut tracking) = self.tracking.take() else {
            return Err("anti-entropy: end out of session".into());
        };
        // t5
        let (answer, merged, vv5, clock5, logged_lsn, changed) = {
            let mut store = host.store.lock();
            store.db_mut().set_now_ms(wall_ms());
            let touched = tracking.take(&mut store);
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
                    return Err(format!(
                        "anti-entropy: {k:?} took an op the dialer had seen during the session; comparing again"
                    ));
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
            let first: Vec<(&Blob, Option<&Entry>)> =
                self.ahead.iter().map(|(k, e)| (k, e.as_ref())).collect();
            let mut last: Vec<(&Blob, Option<&Entry>)> =
                self.states.iter().map(|(k, e)| (k, e.as_ref())).collect();
            last.extend(absent.iter().map(|k| (*k, None)));
            let merged = (first.len() + last.len()) as u64;
            store
                .merge_states(&[(first, &self.peer_vv), (last, &vv4)], &vv4, clock)
                .map_err(|e| format!("anti-entropy: merging failed: {e}"))?;
            let db = store.db();
            let mut candidates: HashSet<&Blob> = held.iter().collect();
            candidates.extend(self.ahead.keys());
            candidates.extend(self.states.keys());
            candidates.extend(touched.iter());
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
            (
                answer,
                merged,
                vv5.clone(),
                db.clock(),
                store.log().last_lsn(),
                vv5 != before,
            )
        };
        drop(tracking);
        if changed {
            // Ops now in the state but not in the log: links that stream
            // this region's log must compare state first.
            host.state_merged.send_modify(|n| *n += 1);
        }
        wait_synced(host, logged_lsn).await?;
        self.keys_sent += answer.len() as u64;
        self.bytes += send_states(wr, &answer, &[]).await?;
        let sent = write_msg(
            wr,
            &Msg::AeDone {
                vv: vv5,
                clock: clock5.0,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        self.bytes += sent as u64;
        record(status, self.bytes, self.keys_sent, merged);
        tracing::info!(%peer, keys_merged = merged, keys_sent = self.keys_sent, bytes = self.bytes, "anti-entropy session merged and answered");
        // Keep only the place in `antientropy_peers` until the dialer
        // streams again.
        let pair = self.pair.take();
        *self = Acceptor::default();
        self.pair = pair;
        self.phase = Phase::Done;
        Ok(())
    }

    async fn send_nodes<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), String> {
        let digests = self
            .tree
            .as_ref()
            .map(|t| t.encode(&self.frontier))
            .unwrap_or_default();
        let sent = write_msg(wr, &Msg::AeNodes { digests })
            .await
            .map_err(|e| e.to_string())?;
        self.bytes += sent as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(keys: &[(String, u64)]) -> Tree {
        Tree::from_items(
            keys.iter()
                .map(|(k, v)| (key_hash(k.as_bytes()), mix(*v)))
                .collect(),
        )
    }

    /// Runs the comparison rounds between two trees as a session does and
    /// returns the leaf ranges the dialer would send whole.
    fn diff(dialer: &Tree, acceptor: &Tree) -> (Vec<Range>, usize) {
        let mut frontier = top_frontier();
        let mut leaves = Vec::new();
        let mut digest_bytes = 0;
        while !frontier.is_empty() {
            let theirs = acceptor.encode(&frontier);
            digest_bytes += theirs.len();
            let (bitmap, found) = compare(dialer, &frontier, &theirs);
            leaves.extend(found);
            frontier = descend(&frontier, &bitmap);
        }
        leaves.sort_by_key(|r| r.lo());
        (leaves, digest_bytes)
    }

    #[test]
    fn ranges_nest_and_partition_the_hash_space() {
        let top = top_frontier();
        assert_eq!(top.first().unwrap().lo(), 0);
        assert_eq!(top.last().unwrap().hi(), u64::MAX);
        for w in top.windows(2) {
            assert_eq!(w[0].hi() + 1, w[1].lo());
        }
        let r = top[37];
        let parts: Vec<Range> = r.parts().collect();
        assert_eq!(parts.first().unwrap().lo(), r.lo());
        assert_eq!(parts.last().unwrap().hi(), r.hi());
        let full = Range {
            prefix: 5,
            bits: 64,
        };
        assert_eq!((full.lo(), full.hi()), (5, 5));
    }

    #[test]
    fn identical_trees_send_nothing() {
        let keys: Vec<(String, u64)> = (0..5000).map(|i| (format!("k{i}"), i)).collect();
        let (leaves, bytes) = diff(&tree_of(&keys), &tree_of(&keys));
        assert!(leaves.is_empty());
        assert_eq!(bytes, 256 * 8, "only the top level is compared");
    }

    /// Every key that differs (changed, only on one side) lies in a leaf
    /// range, and the leaves hold few keys besides.
    #[test]
    fn differing_keys_are_found_and_little_else_is_sent() {
        let n = 100_000u64;
        let a: Vec<(String, u64)> = (0..n).map(|i| (format!("key:{i}"), i)).collect();
        let mut b = a.clone();
        let mut differing = Vec::new();
        for i in (0..n).step_by(100) {
            b[i as usize].1 += 1_000_000;
            differing.push(format!("key:{i}"));
        }
        b.push(("only-on-acceptor".into(), 1));
        differing.push("only-on-acceptor".into());
        let (ta, tb) = (tree_of(&a), tree_of(&b));
        let (leaves, digest_bytes) = diff(&ta, &tb);
        for k in &differing {
            assert!(
                in_ranges(&leaves, key_hash(k.as_bytes())),
                "{k} not covered"
            );
        }
        let sent = a
            .iter()
            .filter(|(k, _)| in_ranges(&leaves, key_hash(k.as_bytes())))
            .count();
        assert!(sent >= differing.len() - 1);
        assert!(
            sent < 2 * differing.len(),
            "sent {sent} keys for {} differing",
            differing.len()
        );
        assert!(
            digest_bytes < differing.len() * 120,
            "{digest_bytes} digest bytes"
        );
    }

    /// Sessions between two in-process regions over an in-memory pipe.
    mod session {
        use super::super::*;
        use meridian_crdt::Tag;
        use meridian_log::ReadBound;

        struct Region {
            name: RegionId,
            host: Host,
            status: Arc<ReplStatus>,
            config: ReplConfig,
            _dir: tempfile::TempDir,
        }

        fn region(name: &str, peer: &str) -> Region {
            let dir = tempfile::tempdir().unwrap();
            let me = RegionId::new(name).unwrap();
            let other = RegionId::new(peer).unwrap();
            let opts = meridian_store::StoreOptions::new(dir.path().join("data"), me);
            let (mut store, _) = meridian_store::Store::open(opts).unwrap();
            // Keep the whole log, so what follows a session can be streamed.
            store.retain_from(Some(1));
            let host = crate::testing::host(store, me, other);
            let config = crate::testing::config(me, None);
            Region {
                name: me,
                host,
                status: Arc::new(ReplStatus::default()),
                config,
                _dir: dir,
            }
        }

        /// Commits one op made by `f` and syncs it.
        fn write(r: &Region, f: impl FnOnce(&mut Db)) {
            let mut store = r.host.store.lock();
            store.db_mut().set_now_ms(wall_ms());
            f(store.db_mut());
            store.commit().unwrap();
            store.sync().unwrap();
        }

        fn set(r: &Region, key: &str, value: &str) {
            write(r, |db| {
                db.set_string(key.as_bytes(), Blob::from(value), false)
            });
        }

        fn del(r: &Region, key: &str) {
            write(r, |db| {
                db.del(key.as_bytes());
            });
        }

        /// What a sender streams after the session: `from`'s log from
        /// `to`'s version vector, applied in order (an op whose
        /// dependencies are missing fails, as it resets a real link).
        fn stream(from: &Region, to: &Region) {
            let peer_vv = to.host.store.lock().db().version_vector().clone();
            let mut records = Vec::new();
            {
                let store = from.host.store.lock();
                let reader = store
                    .log()
                    .reader_bounded(store.resume_lsn(&peer_vv), ReadBound::Synced)
                    .unwrap();
                for next in reader {
                    records.push(next.unwrap().1);
                }
            }
            let mut store = to.host.store.lock();
            for record in records {
                let tag = postcard::take_from_bytes::<Tag>(&record).unwrap().0;
                if !store.db().version_vector().covers(tag.dot) {
                    store.apply_peer_op(&record, wall_ms()).unwrap();
                }
            }
            store.flush().unwrap();
        }

        /// Every key's state (canonical) and the version vector.
        fn state(r: &Region) -> (Vec<(Blob, Entry)>, VersionVector) {
            let store = r.host.store.lock();
            let mut keys: Vec<(Blob, Entry)> = store
                .db()
                .keyspace()
                .iter_all()
                .map(|(k, e)| (k.clone(), e.canonical().into_owned()))
                .collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            (keys, store.db().version_vector().clone())
        }

        fn encoded_len(r: &Region, key: &str) -> usize {
            let store = r.host.store.lock();
            let entry = store.db().keyspace().get_any(key.as_bytes()).cloned();
            postcard::to_stdvec(&(Blob::from(key), entry))
                .unwrap()
                .len()
        }

        fn session_bytes(r: &Region) -> u64 {
            r.status.antientropy.lock().bytes_total
        }

        /// Runs one session, `dialer` dialing `acceptor`; `during` runs
        /// before the acceptor handles each message.
        async fn session(
            dialer: &Region,
            acceptor: &Region,
            mut during: impl FnMut(&Msg),
        ) -> Result<VersionVector, PushError> {
            let (d_side, a_side) = tokio::io::duplex(64 << 20);
            let (mut d_rd, mut d_wr) = tokio::io::split(d_side);
            let (mut a_rd, mut a_wr) = tokio::io::split(a_side);
            let welcome = acceptor.host.store.lock().db().version_vector().clone();
            // The dialer's ends close when it is done, so an acceptor left
            // waiting sees the connection end.
            let dial = async move {
                push(
                    &mut d_rd,
                    &mut d_wr,
                    &dialer.host,
                    &dialer.status,
                    acceptor.name,
                    &welcome,
                )
                .await
            };
            let accept = async {
                let mut acceptor_side = Acceptor::default();
                while let Ok((msg, size)) = read_msg(&mut a_rd).await {
                    during(&msg);
                    acceptor_side
                        .handle(
                            dialer.name,
                            msg,
                            size,
                            &mut a_wr,
                            &acceptor.config,
                            &acceptor.host,
                            &acceptor.status,
                        )
                        .await
                        .unwrap();
                    if matches!(acceptor_side.phase, Phase::Done | Phase::Refused) {
                        break;
                    }
                }
            };
            let (result, ()) = tokio::join!(dial, accept);
            result
        }

        fn key(i: usize) -> String {
            format!("key:{i:05}")
        }

        /// Two regions holding `n` keys in sync.
        async fn loaded(n: usize) -> (Region, Region) {
            let (ra, rb) = (region("ra", "rb"), region("rb", "ra"));
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                write(&ra, |db| {
                    for i in chunk {
                        db.set_string(key(*i).as_bytes(), Blob::from("initial value"), false);
                    }
                });
            }
            stream(&ra, &rb);
            assert_eq!(state(&ra), state(&rb));
            (ra, rb)
        }

        /// After a partition each side changed and deleted keys the other
        /// did not: one session leaves both with the same state and vector,
        /// each changed key's state crossing once (it holds a dot the
        /// other lacks); only the deletes, which leave no dot, are found by
        /// the digest trees.
        #[tokio::test]
        async fn one_session_repairs_both_sides_moving_each_changed_key_once() {
            let (ra, rb) = loaded(3_000).await;
            let mut changed = Vec::new();
            for i in 0..40 {
                let (r, k) = (if i % 2 == 0 { &ra } else { &rb }, key(i * 70));
                set(r, &k, &format!("changed at {}", r.name));
                changed.push((i % 2, k));
            }
            for i in 0..6 {
                del(if i % 2 == 0 { &ra } else { &rb }, &key(i * 70 + 35));
            }
            let payload: usize = changed
                .iter()
                .map(|(side, k)| encoded_len(if *side == 0 { &ra } else { &rb }, k))
                .sum();

            session(&rb, &ra, |_| {}).await.unwrap();
            assert_eq!(state(&ra), state(&rb), "one session repairs both sides");
            assert_eq!(ra.host.store.lock().db().keyspace().len(), 3_000 - 6);
            for r in [&ra, &rb] {
                let ae = r.status.antientropy.lock().clone();
                assert_eq!(ae.sessions_total, 1);
            }
            // Each changed key once, the top-level digests, for each of the
            // six deletes a descent and a state, and the framing. Sending
            // back what the dialer sent (or 8-byte digests down to every
            // changed key) would not fit.
            let bytes = session_bytes(&rb) as usize;
            let allowance = 256 * 8 + 6 * (120 + 40) + 512;
            println!("{bytes} bytes for {payload} B of changed states");
            assert!(
                bytes <= payload + allowance,
                "{bytes} bytes for {payload} B of changed states"
            );
            assert_eq!(session_bytes(&ra), session_bytes(&rb));
        }

        /// Keys written and deleted on both sides while the session runs,
        /// at every step of it: after the session and the op streams that
        /// follow it, both sides hold the same state. A vector raised past
        /// a change the state lacks would make the stream skip its op.
        #[tokio::test]
        async fn keys_changed_on_both_sides_mid_session_still_converge() {
            let (ra, rb) = loaded(2_000).await;
            for i in 0..20 {
                set(
                    if i % 2 == 0 { &ra } else { &rb },
                    &key(i * 90),
                    "partition",
                );
            }
            del(&ra, &key(5));
            let mut step = 0;
            session(&rb, &ra, |msg| {
                step += 1;
                let at = format!("{step}");
                match msg {
                    Msg::AeBegin { .. } | Msg::AeAheadEnd { .. } | Msg::AeEnd { .. } => {
                        // The acceptor's keys: one it sends ahead, one in
                        // a range the trees compare, one deleted.
                        set(&ra, &key(step * 7), &format!("ra during {at}"));
                        set(&ra, &format!("new:ra:{step}"), "x");
                        del(&ra, &key(step * 7 + 1));
                        // The dialer's, past its own first reads.
                        set(&rb, &key(step * 7 + 2), &format!("rb during {at}"));
                        set(&rb, &format!("new:rb:{step}"), "x");
                        del(&rb, &key(step * 7 + 3));
                        // The same key on both sides.
                        set(&ra, &key(1_000 + step), "ra");
                        set(&rb, &key(1_000 + step), "rb");
                    }
                    _ => {}
                }
            })
            .await
            .unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
            assert_eq!(ra.host.store.lock().db().trackers(), 0);
            assert_eq!(rb.host.store.lock().db().trackers(), 0);
        }

        /// An op the acceptor had seen (and whose element it had since
        /// deleted) reaches the dialer by another stream after the dialer
        /// collected its states: raising the dialer's vector past the
        /// delete would keep the element forever, so the session is given
        /// up, and the next one converges.
        #[tokio::test]
        async fn an_op_relayed_to_the_dialer_mid_session_does_not_hide_a_delete() {
            let (ra, rb) = loaded(500).await;
            set(&ra, "relayed", "x");
            let created = {
                let store = ra.host.store.lock();
                let reader = store
                    .log()
                    .reader_bounded(store.log().last_lsn(), ReadBound::Synced)
                    .unwrap();
                reader.map(|r| r.unwrap().1).next().unwrap()
            };
            del(&ra, "relayed");
            set(&rb, &key(3), "rb");
            let failed = session(&rb, &ra, |msg| {
                if let Msg::AeEnd { .. } = msg {
                    let mut store = rb.host.store.lock();
                    store.apply_peer_op(&created, wall_ms()).unwrap();
                    store.sync().unwrap();
                }
            })
            .await;
            assert!(matches!(failed, Err(PushError::Failed(_))), "{failed:?}");
            session(&rb, &ra, |_| {}).await.unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
            assert!(rb
                .host
                .store
                .lock()
                .db()
                .keyspace()
                .get_any(b"relayed")
                .is_none());
        }

        /// When both ends dial at once, the acceptor whose own session to
        /// the peer runs refuses only if its region id sorts first: exactly
        /// one of the two sessions goes on, and the refused one changes
        /// nothing.
        #[tokio::test]
        async fn of_two_sessions_dialed_at_once_the_lower_region_s_goes_on() {
            let (ra, rb) = loaded(500).await;
            set(&ra, &key(1), "ra");
            set(&rb, &key(2), "rb");
            let before = state(&rb);
            ra.status.antientropy_peers.lock().dialing.insert(rb.name);
            rb.status.antientropy_peers.lock().dialing.insert(ra.name);
            let refused = session(&rb, &ra, |_| {}).await;
            assert!(matches!(refused, Err(PushError::Busy)), "{refused:?}");
            assert_eq!(state(&rb), before);
            assert_eq!(rb.host.store.lock().db().trackers(), 0);
            rb.status.antientropy_peers.lock().dialing.clear();
            ra.status.antientropy_peers.lock().dialing.clear();
            // rb accepts ra's session although rb's own dialer is busy.
            rb.status.antientropy_peers.lock().dialing.insert(ra.name);
            session(&ra, &rb, |_| {}).await.unwrap();
            assert_eq!(state(&ra), state(&rb));
        }
    }
}
