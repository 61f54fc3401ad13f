//! The digest tree: where a key sits in the hash space, what a range of
//! it digests to, and the comparison rounds that narrow two trees down to
//! the ranges that differ. Pure: built from a keyspace, no I/O.

use meridian_crdt::{Blob, Entry, VersionVector};
use meridian_store::Db;

use super::session::StateMap;

/// Bits of the top-level ranges (256 ranges).
pub const TOP_BITS: u8 = 8;
/// Each split makes 2^SPLIT_BITS parts.
pub const SPLIT_BITS: u8 = 2;
/// A differing range with at most this many keys on the dialer is sent whole.
pub const LEAF_KEYS_MAX: usize = 2;
/// Ranges compared in one round; past it, differing ranges are sent whole.
pub const FRONTIER_MAX: usize = 1 << 20;

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

    pub(super) fn parts(self) -> impl Iterator<Item = Range> {
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
