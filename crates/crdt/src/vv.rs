//! Dots, tags and version vectors: the causal bookkeeping.
//!
//! A [`Dot`] names one replicated op: `(origin region, seq)`. Every region
//! numbers its own ops 1, 2, 3… A [`VersionVector`] holds, per origin, the
//! highest seq applied; because ops of one origin are applied in seq order, a
//! version vector describes exactly the set of ops a region has seen.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::hlc::Hlc;
use crate::region::RegionId;

const SEQ_BITS: u32 = 48;
/// Highest sequence number one region can issue (2^48 - 1).
pub const SEQ_MAX: u64 = (1 << SEQ_BITS) - 1;

/// `(region, seq)` packed into eight bytes: region index in the top 16 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dot(u64);

impl Dot {
    pub fn new(region: RegionId, seq: u64) -> Dot {
        debug_assert!(seq <= SEQ_MAX);
        Dot(((region.index() as u64) << SEQ_BITS) | (seq & SEQ_MAX))
    }

    pub fn region(self) -> RegionId {
        RegionId::from_index((self.0 >> SEQ_BITS) as u16)
    }

    pub fn seq(self) -> u64 {
        self.0 & SEQ_MAX
    }
}

impl Ord for Dot {
    fn cmp(&self, other: &Self) -> Ordering {
        self.region()
            .cmp(&other.region())
            .then(self.seq().cmp(&other.seq()))
    }
}

impl PartialOrd for Dot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.region(), self.seq())
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for Dot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.region(), self.seq()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Dot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (region, seq) = <(RegionId, u64)>::deserialize(d)?;
        if seq > SEQ_MAX {
            return Err(serde::de::Error::custom("sequence number out of range"));
        }
        Ok(Dot::new(region, seq))
    }
}

/// The write that produced a stored element: when (HLC) and which op (dot).
///
/// Tags order by HLC, then region name, then seq: the last-writer-wins order.
/// Two distinct ops never share a tag, so the order is total.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    pub hlc: Hlc,
    pub dot: Dot,
}

impl Ord for Tag {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hlc.cmp(&other.hlc).then(self.dot.cmp(&other.dot))
    }
}

impl PartialOrd for Tag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}@{}.{}",
            self.dot,
            self.hlc.wall_ms(),
            self.hlc.logical()
        )
    }
}

/// Per origin region, the highest contiguous seq applied. Kept sorted by
/// region, one entry per region, every seq within [`SEQ_MAX`]; decoding
/// refuses anything else, since vectors arrive from peers and disks.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionVector(SmallVec<[(RegionId, u64); 4]>);

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = SmallVec::<[(RegionId, u64); 4]>::deserialize(d)?;
        if entries.iter().any(|(_, seq)| *seq > SEQ_MAX) {
            return Err(serde::de::Error::custom(
                "version vector: sequence number out of range",
            ));
        }
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(serde::de::Error::custom(
                "version vector: regions not in order or listed twice",
            ));
        }
        Ok(VersionVector(entries))
    }
}

impl VersionVector {
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    pub fn get(&self, region: RegionId) -> u64 {
        self.0
            .iter()
            .find(|(r, _)| *r == region)
            .map_or(0, |(_, s)| *s)
    }

    pub fn set(&mut self, region: RegionId, seq: u64) {
        match self.0.iter_mut().find(|(r, _)| *r == region) {
            Some(slot) => slot.1 = seq,
            None => {
                let at = self.0.partition_point(|(r, _)| *r < region);
                self.0.insert(at, (region, seq));
            }
        }
    }

    /// Records that `dot` was applied (keeps the maximum).
    pub fn observe(&mut self, dot: Dot) {
        let before = self.get(dot.region());
        if before < dot.seq() {
            self.set(dot.region(), dot.seq());
        }
        assert!(
            self.covers(dot) && self.get(dot.region()) >= before,
            "observing {dot:?} lowered the counter of its region from {before} or left it uncovered"
        );
    }

    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.region()) >= dot.seq()
    }

    /// Pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        #[cfg(debug_assertions)]
        let before = self.clone();
        for &(r, s) in &other.0 {
            if self.get(r) < s {
                self.set(r, s);
            }
        }
        #[cfg(debug_assertions)]
        {
            assert!(
                self.dominates(&before) && self.dominates(other),
                "the join {self:?} does not dominate both {before:?} and {other:?}"
            );
            assert!(
                self.0
                    .iter()
                    .all(|&(r, s)| s == before.get(r).max(other.get(r))),
                "the join {self:?} holds a counter above both {before:?} and {other:?}"
            );
        }
        debug_assert!(
            self.is_sorted(),
            "a join left the vector {self:?} unsorted or with a region twice"
        );
    }

    /// True when every entry of `other` is covered by `self`.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|&(r, s)| self.get(r) >= s)
    }

    pub fn iter(&self) -> impl Iterator<Item = (RegionId, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, s)| *s == 0)
    }

    /// One entry per region, in region order: what lookups and decoding
    /// rely on.
    fn is_sorted(&self) -> bool {
        self.0.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(r, s)| (r, s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_packs_region_and_seq() {
        let r = RegionId::new("dot-test").unwrap();
        let d = Dot::new(r, SEQ_MAX);
        assert_eq!(d.region(), r);
        assert_eq!(d.seq(), SEQ_MAX);
    }

    /// Vectors come from peers and disks: one that names a seq no dot can
    /// hold, or a region twice, or out of order, is refused when decoded
    /// (a seq of u64::MAX used to overflow the readiness check later).
    #[test]
    fn a_decoded_version_vector_is_checked() {
        let a = RegionId::new("vvd-a").unwrap();
        let b = RegionId::new("vvd-b").unwrap();
        let mut ok = VersionVector::new();
        ok.set(a, 3);
        ok.set(b, SEQ_MAX);
        let bytes = postcard::to_stdvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<VersionVector>(&bytes).unwrap(), ok);
        let raw = |entries: Vec<(RegionId, u64)>| postcard::to_stdvec(&entries).unwrap();
        for bad in [
            raw(vec![(a, SEQ_MAX + 1)]),
            raw(vec![(a, u64::MAX)]),
            raw(vec![(a, 1), (a, 2)]),
            raw(vec![(b, 1), (a, 2)]),
        ] {
            assert!(postcard::from_bytes::<VersionVector>(&bad).is_err());
        }
    }

    #[test]
    fn version_vector_join_and_cover() {
        let a = RegionId::new("vv-a").unwrap();
        let b = RegionId::new("vv-b").unwrap();
        let mut x = VersionVector::new();
        x.set(a, 3);
        let mut y = VersionVector::new();
        y.set(b, 5);
        y.set(a, 1);
        x.join(&y);
        assert_eq!(x.get(a), 3);
        assert_eq!(x.get(b), 5);
        assert!(x.covers(Dot::new(b, 5)));
        assert!(!x.covers(Dot::new(b, 6)));
        assert!(x.dominates(&y));
        assert!(!y.dominates(&x));
    }
}
