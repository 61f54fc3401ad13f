//! Lists: a sequence CRDT of elements ordered by dense position keys.
//!
//! Every element gets, where it is inserted, a [`Pos`]: a short list of
//! `(digit, id)` parts, ordered lexicographically, whose last part carries the
//! element's own unique [`ElemId`] (the dot of the op that inserted it plus an
//! index within that op). Keys are compared, never re-derived, so every region
//! holds the same elements in the same order whatever order their inserts
//! arrived in; ties between concurrent inserts at the same spot are broken by
//! the ids, so they never collide.
//!
//! - `RPUSH` takes the digit after the last element's first digit, `LPUSH` the
//!   one before the first element's: a queue's keys stay one part long.
//! - `LINSERT` takes a key strictly between two neighbours ([`Pos::between`]),
//!   going one part deeper only when the neighbours' digits are adjacent.
//! - A removal (pop, `LREM`, `LTRIM`, `DEL`) names the key ranges it removed and
//!   removes, in every region, only the elements in them its op *observed*
//!   (their dot is in its version vector). An element pushed concurrently into
//!   a removed range survives, as add-wins sets keep concurrent adds.
//! - `LSET` overwrites one element's value: last writer wins on the element,
//!   and a concurrent overwrite that loses is reported as a conflict.
//!
//! Why keys rather than a tree of "inserted after" references (RGA, Fugue):
//! with keys, a removed element leaves nothing behind. Reference-based
//! sequences keep every removed element as a tombstone until causal stability,
//! because a concurrent insert may still name it as its anchor; a job queue
//! that pushes and pops millions of elements would carry them all. Here
//! nothing anchors on an element, so a pop frees its memory at once and a
//! state merge needs only each side's version vector. The price is that two
//! regions pushing several elements to the same end concurrently, in separate
//! ops, may see them interleaved (each region's own elements keep their order),
//! which Redis's own single-server semantics never promised across clients.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::num::Observes;
use crate::vv::{Dot, Tag, VersionVector};

/// Elements per chunk: pushes and pops at either end move at most this many
/// elements, and finding an index walks one length per chunk.
const CHUNK_MAX: usize = 128;

/// An element's identity: the op that inserted it and its index in that op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElemId {
    pub tag: Tag,
    pub idx: u32,
}

impl ElemId {
    pub fn dot(&self) -> Dot {
        self.tag.dot
    }
}

/// One part of a position key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Part {
    pub digit: i64,
    pub id: ElemId,
}

/// A position key: parts compared in order, a shorter key before any key it
/// is a prefix of. The last part's id is the element's own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos(SmallVec<[Part; 1]>);

impl Pos {
    pub fn single(digit: i64, id: ElemId) -> Pos {
        Pos(smallvec::smallvec![Part { digit, id }])
    }

    /// The element's id (the last part's).
    pub fn id(&self) -> ElemId {
        self.0.last().expect("a position key has a part").id
    }

    pub fn parts(&self) -> &[Part] {
        &self.0
    }

    /// A key for a new first element (`LPUSH`), before `first`.
    pub fn before(first: Option<&Pos>, id: ElemId) -> Pos {
        match first {
            None => Pos::single(0, id),
            Some(f) => match f.0[0].digit.checked_sub(1) {
                Some(d) => Pos::single(d, id),
                None => Pos::between(None, Some(f), id),
            },
        }
    }

    /// A key for a new last element (`RPUSH`), after `last`.
    pub fn after(last: Option<&Pos>, id: ElemId) -> Pos {
        match last {
            None => Pos::single(0, id),
            Some(l) => match l.0[0].digit.checked_add(1) {
                Some(d) => Pos::single(d, id),
                None => Pos::between(Some(l), None, id),
            },
        }
    }

    /// A key strictly between `lo` and `hi` (`None`: no bound on that side),
    /// as short as the neighbours allow. Requires `lo < hi`.
    pub fn between(lo: Option<&Pos>, hi: Option<&Pos>, id: ElemId) -> Pos {
        debug_assert!(
            lo.zip(hi).is_none_or(|(l, h)| l < h),
            "between {lo:?} and {hi:?}"
        );
        let lo = lo.map_or(&[][..], |p| &p.0[..]);
        let mut hi = hi.map(|p| &p.0[..]);
        let mut out: SmallVec<[Part; 1]> = SmallVec::new();
        let mut level = 0;
        loop {
            let l = lo.get(level);
            // Past the end of `hi` only once `hi` is known to be above
            // whatever extends the parts taken so far.
            let h = hi.and_then(|h| h.get(level));
            let digit = match (l, h) {
                (None, None) => Some(0),
                (Some(l), None) => l.digit.checked_add(1),
                (None, Some(h)) => h.digit.checked_sub(1),
                (Some(l), Some(h)) => {
                    let gap = (h.digit as i128) - (l.digit as i128);
                    (gap > 1).then(|| (l.digit as i128 + gap / 2) as i64)
                }
            };
            if let Some(digit) = digit {
                out.push(Part { digit, id });
                return Pos(out);
            }
            // No digit fits at this level: copy the lower neighbour's part
            // (or the upper's, when the lower has ended) and go deeper.
            let take = match (l, h) {
                (Some(l), _) => *l,
                // Only below `i64::MIN`, after 2^63 pushes to one end.
                (None, _) => panic!("list position digits exhausted below {h:?}"),
            };
            if h.is_some_and(|h| *h != take) {
                // Everything that extends `take` sorts below `h`.
                hi = None;
            }
            out.push(take);
            level += 1;
        }
    }
}

/// One element of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Elem {
    pub pos: Pos,
    pub value: Blob,
    /// The `LSET` that wrote the value, if one did.
    pub set: Option<Tag>,
}

impl Elem {
    pub fn id(&self) -> ElemId {
        self.pos.id()
    }

    /// The write that made the value: the `LSET`, else the insert.
    pub fn written(&self) -> Tag {
        self.set.unwrap_or(self.pos.id().tag)
    }
}

/// An `LSET` that lost to a concurrent one: (winner, loser) with values.
pub struct SetDisplaced {
    pub winner: (Tag, Blob),
    pub loser: (Tag, Blob),
}

/// A list's elements in key order, in chunks of at most [`CHUNK_MAX`].
/// Equality and encoding see only the elements, never the chunking.
#[derive(Debug, Clone, Default)]
pub struct ListVal {
    chunks: Vec<Vec<Elem>>,
    len: usize,
}

impl PartialEq for ListVal {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Serialize for ListVal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // Length first: compact formats (the log's, snapshots') need it.
        let mut seq = s.serialize_seq(Some(self.len))?;
        for e in self.iter() {
            seq.serialize_element(e)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ListVal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut elems: Vec<Elem> = Vec::deserialize(d)?;
        // Decoded state is untrusted: restore the order and uniqueness the
        // list relies on rather than assume it.
        elems.sort_by(|a, b| a.pos.cmp(&b.pos));
        elems.dedup_by(|a, b| a.pos == b.pos);
        Ok(ListVal::from_sorted(elems))
    }
}

impl ListVal {
    fn from_sorted(elems: Vec<Elem>) -> ListVal {
        let len = elems.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK_MAX));
        let mut it = elems.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(CHUNK_MAX).collect());
        }
        ListVal { chunks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Elem> + '_ {
        self.chunks.iter().flatten()
    }

    /// The elements' values, in order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.iter().map(|e| e.value.as_bytes())
    }

    pub fn first(&self) -> Option<&Elem> {
        self.chunks.first().and_then(|c| c.first())
    }

    pub fn last(&self) -> Option<&Elem> {
        self.chunks.last().and_then(|c| c.last())
    }

    /// The chunk and offset of index `i`.
    fn at(&self, mut i: usize) -> Option<(usize, usize)> {
        if i >= self.len {
            return None;
        }
        if i >= self.len / 2 {
            // Count from the end: LINDEX -1 and RPOP-side reads stay cheap.
            let mut from_end = self.len - 1 - i;
            for (c, chunk) in self.chunks.iter().enumerate().rev() {
                if from_end < chunk.len() {
                    return Some((c, chunk.len() - 1 - from_end));
                }
                from_end -= chunk.len();
            }
            return None;
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.len() {
                return Some((c, i));
            }
            i -= chunk.len();
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&Elem> {
        self.at(i).map(|(c, o)| &self.chunks[c][o])
    }

    /// Elements `start..end` (clamped), in order.
    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Elem> + '_ {
        let end = end.min(self.len);
        let (c, o) = self.at(start).unwrap_or((self.chunks.len(), 0));
        let n = end.saturating_sub(start);
        self.chunks[c.min(self.chunks.len())..]
            .iter()
            .flatten()
            .skip(o)
            .take(n)
    }

    /// Where `pos` is, or where it would go: `Ok` found, `Err` insertion
    /// point, as (chunk, offset).
    fn locate(&self, pos: &Pos) -> Result<(usize, usize), (usize, usize)> {
        if self.chunks.is_empty() {
            return Err((0, 0));
        }
        // The first chunk whose last key is not below `pos`.
        let c = self
            .chunks
            .partition_point(|ch| ch.last().is_some_and(|e| e.pos < *pos));
        if c == self.chunks.len() {
            let last = self.chunks.len() - 1;
            return Err((last, self.chunks[last].len()));
        }
        match self.chunks[c].binary_search_by(|e| e.pos.cmp(pos)) {
            Ok(o) => Ok((c, o)),
            Err(o) => Err((c, o)),
        }
    }

    /// Inserts an element at its key's place; false if its key is present.
    pub fn insert(&mut self, elem: Elem) -> bool {
        let (c, o) = match self.locate(&elem.pos) {
            Ok(_) => return false,
            Err(at) => at,
        };
        if self.chunks.is_empty() {
            self.chunks.push(Vec::with_capacity(4));
        }
        let last_chunk = c + 1 == self.chunks.len();
        let chunk = &mut self.chunks[c];
        chunk.insert(o, elem);
        self.len += 1;
        if chunk.len() > CHUNK_MAX {
            // Split so pushes at either end keep leaving room: a full chunk
            // at the front gives its front half away, elsewhere the back half.
            let at = if c == 0 && o == 0 {
                CHUNK_MAX / 8
            } else if last_chunk && o + 1 == chunk.len() {
                chunk.len() - CHUNK_MAX / 8
            } else {
                chunk.len() / 2
            };
            let tail = chunk.split_off(at);
            self.chunks.insert(c + 1, tail);
        }
        true
    }

    /// Removes the elements with keys in `lo..=hi` that `ctx` observed;
    /// returns how many.
    pub fn remove_range(&mut self, lo: &Pos, hi: &Pos, ctx: &impl Observes) -> usize {
        let (mut c, mut o) = match self.locate(lo) {
            Ok(at) | Err(at) => at,
        };
        let mut removed = 0;
        while c < self.chunks.len() {
            let chunk = &mut self.chunks[c];
            let before = chunk.len();
            let mut past = false;
            chunk.retain_mut_from(o, |e| {
                if past || e.pos > *hi {
                    past = true;
                    return true;
                }
                !ctx.observed(e.id().dot())
            });
            removed += before - chunk.len();
            if chunk.is_empty() {
                self.chunks.remove(c);
            } else {
                c += 1;
            }
            o = 0;
            if past {
                break;
            }
        }
        self.len -= removed;
        removed
    }

    /// Removes every observed element for which `pred` holds of its insert
    /// (DEL, expiry). The insert, not a later `LSET`, decides: an element is
    /// removed whole or not at all, so a removal and a concurrent `LSET`
    /// give the same list in either order (an `LSET` of an element already
    /// removed writes nothing).
    pub fn remove_observed(&mut self, ctx: &impl Observes, pred: impl Fn(&Tag) -> bool) {
        for chunk in &mut self.chunks {
            chunk.retain(|e| !(ctx.observed(e.id().dot()) && pred(&e.id().tag)));
        }
        self.chunks.retain(|c| !c.is_empty());
        self.len = self.chunks.iter().map(Vec::len).sum();
    }

    /// `LSET`: writes the element at `pos`, if it is still here. A write the
    /// op did not observe that the element holds is a concurrent `LSET`: the
    /// larger tag wins and the other is returned.
    pub fn set(
        &mut self,
        pos: &Pos,
        value: &Blob,
        tag: Tag,
        ctx: &impl Observes,
    ) -> Option<SetDisplaced> {
        let (c, o) = self.locate(pos).ok()?;
        let e = &mut self.chunks[c][o];
        let old = e.written();
        if ctx.observed(old.dot) {
            e.value = value.clone();
            e.set = Some(tag);
            return None;
        }
        if tag > old {
            let loser = (old, std::mem::replace(&mut e.value, value.clone()));
            e.set = Some(tag);
            Some(SetDisplaced {
                winner: (tag, value.clone()),
                loser,
            })
        } else {
            Some(SetDisplaced {
                winner: (old, e.value.clone()),
                loser: (tag, value.clone()),
            })
        }
    }

    /// The newest write visible here.
    pub fn stamp(&self) -> Option<Tag> {
        self.iter().map(Elem::written).max()
    }

    pub fn any_dot(&self, pred: &dyn Fn(Dot) -> bool) -> bool {
        self.iter()
            .any(|e| pred(e.id().dot()) || e.set.is_some_and(|t| pred(t.dot)))
    }

    /// State merge: an element both sides hold keeps the newer `LSET`; one
    /// only one side holds stays unless the other side's context covers it
    /// (the other side removed it). Returns the `LSET`s discarded.
    pub fn join(
        &mut self,
        ctx: &VersionVector,
        other: &ListVal,
        other_ctx: &VersionVector,
    ) -> Vec<SetDisplaced> {
        let mut displaced = Vec::new();
        let mut out: Vec<Elem> = Vec::with_capacity(self.len.max(other.len));
        let mut mine = std::mem::take(&mut self.chunks)
            .into_iter()
            .flatten()
            .peekable();
        let mut theirs = other.iter().peekable();
        loop {
            let order = match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => a.pos.cmp(&b.pos),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let a = mine.next().expect("peeked");
                    if !other_ctx.covers(a.id().dot()) {
                        out.push(a);
                    }
                }
                std::cmp::Ordering::Greater => {
                    let b = theirs.next().expect("peeked");
                    if !ctx.covers(b.id().dot()) {
                        out.push(b.clone());
                    }
                }
                std::cmp::Ordering::Equal => {
                    let mut a = mine.next().expect("peeked");
                    let b = theirs.next().expect("peeked");
                    let (ta, tb) = (a.written(), b.written());
                    if ta != tb {
                        let concurrent = !ctx.covers(tb.dot) && !other_ctx.covers(ta.dot);
                        let (winner, loser) = if tb > ta {
                            let loser = (ta, a.value.clone());
                            a.value = b.value.clone();
                            a.set = b.set;
                            ((tb, b.value.clone()), loser)
                        } else {
                            ((ta, a.value.clone()), (tb, b.value.clone()))
                        };
                        if concurrent {
                            displaced.push(SetDisplaced { winner, loser });
                        }
                    }
                    out.push(a);
                }
            }
        }
        drop(mine);
        *self = ListVal::from_sorted(out);
        displaced
    }
}

/// `Vec::retain_mut` from an offset on: elements before `from` stay.
trait RetainFrom<T> {
    fn retain_mut_from(&mut self, from: usize, f: impl FnMut(&mut T) -> bool);
}

impl<T> RetainFrom<T> for Vec<T> {
    fn retain_mut_from(&mut self, from: usize, mut f: impl FnMut(&mut T) -> bool) {
        let mut i = 0;
        self.retain_mut(|e| {
            let keep = i < from || f(e);
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::region::RegionId;

    fn id(region: &str, seq: u64, idx: u32) -> ElemId {
        ElemId {
            tag: Tag {
                hlc: Hlc(seq << 16),
                dot: Dot::new(RegionId::new(region).unwrap(), seq),
            },
            idx,
        }
    }

    #[test]
    fn between_is_strictly_between_and_short() {
        let a = Pos::single(5, id("ra", 1, 0));
        let b = Pos::single(6, id("ra", 2, 0));
        let m = Pos::between(Some(&a), Some(&b), id("rb", 3, 0));
        assert!(a < m && m < b, "{m:?}");
        assert_eq!(m.parts().len(), 2);
        // Repeatedly inserting right after `a` stays two parts deep.
        let mut hi = m.clone();
        for seq in 4..200 {
            let n = Pos::between(Some(&a), Some(&hi), id("rb", seq, 0));
            assert!(a < n && n < hi);
            assert!(n.parts().len() <= 2, "{n:?}");
            hi = n;
        }
        // And right before `b`.
        let mut lo = m;
        for seq in 200..400 {
            let n = Pos::between(Some(&lo), Some(&b), id("rc", seq, 0));
            assert!(lo < n && n < b);
            assert!(n.parts().len() <= 2, "{n:?}");
            lo = n;
        }
        // Equal digits from different regions.
        let x = Pos::single(7, id("ra", 9, 0));
        let y = Pos::single(7, id("rb", 9, 0));
        let z = Pos::between(Some(&x), Some(&y), id("rc", 10, 0));
        assert!(x < z && z < y, "{z:?}");
    }

    #[test]
    fn the_last_digit_overflows_into_a_deeper_key() {
        let last = Pos::single(i64::MAX, id("ra", 1, 0));
        let after = Pos::after(Some(&last), id("ra", 2, 0));
        assert!(after > last);
    }

    #[test]
    fn chunks_split_and_index() {
        let mut l = ListVal::default();
        for i in 0..1000u64 {
            let last = l.last().map(|e| e.pos.clone());
            let p = Pos::after(last.as_ref(), id("ra", i + 1, 0));
            assert!(l.insert(Elem {
                pos: p,
                value: Blob::from(format!("{i}").as_str()),
                set: None
            }));
        }
        for i in 0..500u64 {
            let first = l.first().map(|e| e.pos.clone());
            let p = Pos::before(first.as_ref(), id("ra", 2000 + i, 0));
            l.insert(Elem {
                pos: p,
                value: Blob::from(format!("-{i}").as_str()),
                set: None,
            });
        }
        assert_eq!(l.len(), 1500);
        assert_eq!(l.get(0).unwrap().value.as_bytes(), b"-499");
        assert_eq!(l.get(500).unwrap().value.as_bytes(), b"0");
        assert_eq!(l.get(1499).unwrap().value.as_bytes(), b"999");
        let r: Vec<_> = l.range(498, 502).map(|e| e.value.clone()).collect();
        assert_eq!(r.len(), 4);
        assert_eq!(r[2].as_bytes(), b"0");
        let all = VersionVector::new();
        // Nothing observed: nothing removed.
        let lo = l.get(0).unwrap().pos.clone();
        let hi = l.get(1499).unwrap().pos.clone();
        assert_eq!(l.remove_range(&lo, &hi, &all), 0);
    }
}
