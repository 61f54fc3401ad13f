//! Anti-entropy: repairing a peer that the retained log cannot bring up to
//! date, by shipping state for the keys that differ.
//!
//! # Digest tree
//! Every key sits at `key_hash(key)`, a 64-bit hash; a range is the set of
//! hashes sharing a prefix of `bits` bits ([`Range`]). A range's digest is
//! the wrapping sum of its keys' digests, each a hash of the key and its
//! postcard-encoded [`Entry`] (hidden state included), so equal digests mean
//! equal state (up to a 64-bit collision). Trees are built on demand from
//! the keyspace, one pass under the store lock; nothing is maintained on the
//! write path.
//!
//! # Session (on the dialer's link, before streaming)
//! 1. The dialer (the region whose log cannot serve the peer) builds its
//!    tree and starts recording which keys change, then sends `AeBegin`.
//! 2. The acceptor builds its tree and answers `AeNodes` with the digests of
//!    the 2^[`TOP_BITS`] top ranges.
//! 3. The dialer compares: an equal range is done; a differing range where
//!    the dialer holds at most [`LEAF_KEYS_MAX`] keys becomes a leaf; any
//!    other differing range is split into 2^[`SPLIT_BITS`] parts
//!    (`AeDescend`), and the acceptor answers their digests. Repeat.
//! 4. Under one store lock the dialer collects its entries for every leaf
//!    range and for every key changed since step 1 (`None` for one it no
//!    longer holds), and its version vector and clock; it sends them as
//!    `AeState` batches and `AeEnd`.
//! 5. The acceptor joins each sent entry with its own ([`Entry::join`]),
//!    joins every key it holds in a leaf range that the dialer did not send
//!    with the empty state, and only then joins the dialer's version vector:
//!    every key whose state differed was in a differing range or changed
//!    after step 1, so the merged state reflects every op that vector
//!    covers. The merge is made durable by a snapshot ([`Store::merge_states`])
//!    and answered with `AeDone`; streaming resumes from the dialer's log.
//!
//! Keys the acceptor changed after step 2 need nothing: its state there is
//! in the causal future of what it reported, and a join with a state's own
//! past leaves it as it is.
//!
//! [`Store::merge_states`]: meridian_store::Store::merge_states

use std::collections::HashSet;
use std::time::Instant;

use meridian_crdt::{Blob, Entry, Hlc, RegionId, VersionVector};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::status::ReplStatus;
use crate::wire::{read_msg, write_msg, Msg, BATCH_MAX_BYTES};
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
        Msg::AeBegin | Msg::AeDescend { .. } | Msg::AeState { .. } | Msg::AeEnd { .. }
    )
}

fn record(status: &ReplStatus, bytes: u64, keys_sent: u64, keys_merged: u64) {
    let mut ae = status.antientropy.lock();
    ae.sessions_total += 1;
    ae.bytes_total += bytes;
    ae.keys_sent_total += keys_sent;
    ae.keys_merged_total += keys_merged;
}

/// Runs a session as the dialer; returns the peer's version vector after it.
pub async fn push<R, W>(
    rd: &mut R,
    wr: &mut W,
    host: &Host,
    status: &ReplStatus,
    peer: RegionId,
) -> Result<VersionVector, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // One session at a time: they share the store's changed-key tracking.
    let _one = status.antientropy_session.lock().await;
    let started = Instant::now();
    let mine = {
        let mut store = host.store.lock();
        store.db_mut().track_touched();
        Tree::build(store.db().keyspace().iter_all())
    };
    let result = push_session(rd, wr, host, &mine).await;
    // A failed session must not leave tracking on.
    host.store.lock().db_mut().take_touched();
    let (vv, bytes, keys) = result?;
    record(status, bytes, keys, 0);
    tracing::info!(%peer, keys_sent = keys, bytes, keys_here = mine.len(), elapsed_ms = started.elapsed().as_millis() as u64, "anti-entropy session sent state");
    Ok(vv)
}

async fn push_session<R, W>(
    rd: &mut R,
    wr: &mut W,
    host: &Host,
    mine: &Tree,
) -> Result<(VersionVector, u64, u64), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let err = |e: crate::wire::WireError| e.to_string();
    let mut bytes = write_msg(wr, &Msg::AeBegin).await.map_err(err)? as u64;
    let mut frontier = top_frontier();
    let mut leaves = Vec::new();
    loop {
        let (msg, size) = read_msg(rd).await.map_err(err)?;
        bytes += size as u64;
        let digests = match msg {
            Msg::AeNodes { digests } if digests.len() == frontier.len() * 8 => digests,
            other => return Err(format!("anti-entropy: expected digests, got {other:?}")),
        };
        let (bitmap, found) = compare(mine, &frontier, &digests);
        leaves.extend(found);
        let next = descend(&frontier, &bitmap);
        if next.is_empty() {
            break;
        }
        bytes += write_msg(wr, &Msg::AeDescend { bitmap })
            .await
            .map_err(err)? as u64;
        frontier = next;
    }
    leaves.sort_by_key(|r| r.lo());
    // One lock: the entries, the changed keys and the vector they reflect,
    // and the log position that covers all of them.
    let (states, vv, clock, logged_lsn) = {
        let mut store = host.store.lock();
        let logged_lsn = store.log().last_lsn();
        let touched = store.db_mut().take_touched();
        let db = store.db();
        let mut states: Vec<(Blob, Option<Entry>)> = db
            .keyspace()
            .iter_all()
            .filter(|(k, _)| touched.contains(*k) || in_ranges(&leaves, key_hash(k)))
            .map(|(k, e)| (k.clone(), Some(e.clone())))
            .collect();
        states.extend(
            touched
                .into_iter()
                .filter(|k| db.keyspace().get_any(k).is_none())
                .map(|k| (k, None)),
        );
        (states, db.version_vector().clone(), db.clock(), logged_lsn)
    };
    // The state may hold ops not yet on disk. Sent now, a power loss here
    // would leave the peer holding dots this region then reuses; the op
    // stream obeys the same rule by shipping only synced records.
    let mut synced = host.synced.subscribe();
    match tokio::time::timeout(SYNC_WAIT, synced.wait_for(|lsn| *lsn >= logged_lsn)).await {
        Ok(Ok(_)) => {}
        _ => {
            return Err(format!(
                "anti-entropy: the op log did not become durable up to lsn {logged_lsn} within {SYNC_WAIT:?}"
            ))
        }
    }
    let keys = states.len() as u64;
    let mut ranges: Vec<(u64, u8)> = leaves.iter().map(|r| (r.prefix, r.bits)).collect();
    let mut batch = Vec::new();
    for (i, state) in states.iter().enumerate() {
        batch = postcard::to_extend(state, batch).map_err(|e| e.to_string())?;
        if batch.len() >= BATCH_MAX_BYTES || i + 1 == states.len() {
            let msg = Msg::AeState {
                ranges: std::mem::take(&mut ranges),
                entries: std::mem::take(&mut batch),
            };
            bytes += write_msg(wr, &msg).await.map_err(err)? as u64;
        }
    }
    if !ranges.is_empty() {
        let msg = Msg::AeState {
            ranges,
            entries: Vec::new(),
        };
        bytes += write_msg(wr, &msg).await.map_err(err)? as u64;
    }
    bytes += write_msg(wr, &Msg::AeEnd { vv, clock: clock.0 })
        .await
        .map_err(err)? as u64;
    let (msg, size) = read_msg(rd).await.map_err(err)?;
    bytes += size as u64;
    match msg {
        Msg::AeDone { vv } => Ok((vv, bytes, keys)),
        other => Err(format!("anti-entropy: expected AeDone, got {other:?}")),
    }
}

/// The acceptor's side of a session, fed the session's messages in order.
#[derive(Debug, Default)]
pub struct Acceptor {
    tree: Option<Tree>,
    frontier: Vec<Range>,
    ranges: Vec<Range>,
    states: Vec<(Blob, Option<Entry>)>,
    state_bytes: usize,
    bytes: u64,
}

impl Acceptor {
    pub async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Msg,
        size: usize,
        wr: &mut W,
        config: &ReplConfig,
        host: &Host,
        status: &ReplStatus,
    ) -> Result<(), String> {
        if config.witness {
            return Err("anti-entropy sent to a witness".into());
        }
        self.bytes += size as u64;
        match msg {
            Msg::AeBegin => {
                *self = Acceptor {
                    bytes: size as u64,
                    ..Acceptor::default()
                };
                let tree = Tree::build(host.store.lock().db().keyspace().iter_all());
                self.frontier = top_frontier();
                self.tree = Some(tree);
                self.send_nodes(wr).await
            }
            Msg::AeDescend { bitmap } => {
                let next = descend(&self.frontier, &bitmap);
                if self.tree.is_none() || next.len() > FRONTIER_MAX * 4 {
                    return Err("anti-entropy: descend out of session or too wide".into());
                }
                self.frontier = next;
                self.send_nodes(wr).await
            }
            Msg::AeState { ranges, entries } => {
                self.state_bytes += entries.len();
                if self.state_bytes > SESSION_STATE_MAX_BYTES {
                    return Err("anti-entropy: session state over its limit".into());
                }
                for (prefix, bits) in ranges {
                    if !(TOP_BITS..=64).contains(&bits) {
                        return Err(format!("anti-entropy: bad range of {bits} bits"));
                    }
                    self.ranges.push(Range { prefix, bits });
                }
                let mut rest = &entries[..];
                while !rest.is_empty() {
                    let (state, next) = postcard::take_from_bytes::<(Blob, Option<Entry>)>(rest)
                        .map_err(|e| format!("anti-entropy: undecodable state: {e}"))?;
                    self.states.push(state);
                    rest = next;
                }
                Ok(())
            }
            Msg::AeEnd { vv, clock } => {
                let before = host.store.lock().db().version_vector().clone();
                let merged = self.merge(host, &vv, Hlc(clock))?;
                let vv = host.store.lock().db().version_vector().clone();
                if vv != before {
                    // Ops now in the state but not in the log: links that
                    // stream this region's log must compare state first.
                    host.state_merged.send_modify(|n| *n += 1);
                }
                let sent = write_msg(wr, &Msg::AeDone { vv })
                    .await
                    .map_err(|e| e.to_string())?;
                self.bytes += sent as u64;
                record(status, self.bytes, 0, merged);
                tracing::info!(
                    keys_merged = merged,
                    bytes = self.bytes,
                    "anti-entropy session merged state"
                );
                *self = Acceptor::default();
                Ok(())
            }
            other => Err(format!("anti-entropy: unexpected {other:?}")),
        }
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

    /// Joins the session's state under one store lock; returns keys merged.
    fn merge(&mut self, host: &Host, vv: &VersionVector, clock: Hlc) -> Result<u64, String> {
        self.ranges.sort_by_key(|r| r.lo());
        let mut states = std::mem::take(&mut self.states);
        let mut store = host.store.lock();
        store.db_mut().set_now_ms(wall_ms());
        let sent: HashSet<&Blob> = states.iter().map(|(k, _)| k).collect();
        // Keys held here in a range the peer sent whole, but not sent: the
        // peer holds nothing for them.
        let absent: Vec<Blob> = store
            .db()
            .keyspace()
            .iter_all()
            .filter(|(k, _)| !sent.contains(k) && in_ranges(&self.ranges, key_hash(k)))
            .map(|(k, _)| k.clone())
            .collect();
        states.extend(absent.into_iter().map(|k| (k, None)));
        let n = states.len() as u64;
        store
            .merge_states(states, vv, clock)
            .map_err(|e| format!("anti-entropy: merging failed: {e}"))?;
        Ok(n)
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
}
