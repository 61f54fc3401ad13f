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

mod packed;
mod pos;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use pos::{ElemId, Part, Pos};

use crate::blob::Blob;
use crate::num::Observes;
use crate::vv::{Dot, Tag, VersionVector};
use packed::Packed;

/// Elements per chunk: pushes and pops at either end move at most this many
/// elements, and finding an index walks one length per chunk.
const CHUNK_MAX: usize = 128;

/// One element of a list, owned.
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

    fn as_ref(&self) -> ElemRef<'_> {
        ElemRef {
            pos: Cow::Borrowed(&self.pos),
            value: self.value.as_bytes(),
            set: self.set,
        }
    }
}

/// One element of a list as a reader sees it, wherever it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ElemRef<'a> {
    pub pos: Cow<'a, Pos>,
    pub value: &'a [u8],
    pub set: Option<Tag>,
}

impl ElemRef<'_> {
    pub fn id(&self) -> ElemId {
        self.pos.id()
    }

    pub fn written(&self) -> Tag {
        self.set.unwrap_or(self.pos.id().tag)
    }

    pub fn to_owned(&self) -> Elem {
        Elem {
            pos: self.pos.clone().into_owned(),
            value: Blob::from(self.value),
            set: self.set,
        }
    }
}

/// An `LSET` that lost to a concurrent one: (winner, loser) with values.
pub struct SetDisplaced {
    pub winner: (Tag, Blob),
    pub loser: (Tag, Blob),
}

#[derive(Debug, Clone)]
enum Chunk {
    Open(Vec<Elem>),
    Packed(Packed),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Open(v) => v.len(),
            Chunk::Packed(p) => p.count,
        }
    }

    fn first_pos(&self) -> Option<&Pos> {
        match self {
            Chunk::Open(v) => v.first().map(|e| &e.pos),
            Chunk::Packed(p) => Some(&p.first),
        }
    }

    fn last_pos(&self) -> Option<&Pos> {
        match self {
            Chunk::Open(v) => v.last().map(|e| &e.pos),
            Chunk::Packed(p) => Some(&p.last),
        }
    }

    fn refs(&self) -> Vec<ElemRef<'_>> {
        match self {
            Chunk::Open(v) => v.iter().map(Elem::as_ref).collect(),
            Chunk::Packed(p) => p.refs(),
        }
    }

    fn values(&self) -> Vec<&[u8]> {
        match self {
            Chunk::Open(v) => v.iter().map(|e| e.value.as_bytes()).collect(),
            Chunk::Packed(p) => p.values(),
        }
    }

    /// The elements, decoded in place if packed.
    fn open(&mut self) -> &mut Vec<Elem> {
        if let Chunk::Packed(_) = self {
            let packed = std::mem::replace(self, Chunk::Open(Vec::new()));
            *self = Chunk::Open(packed.into_elems());
        }
        match self {
            Chunk::Open(v) => v,
            Chunk::Packed(_) => unreachable!("opened above"),
        }
    }

    fn pack(&mut self) {
        if let Chunk::Open(v) = self {
            if !v.is_empty() {
                *self = Chunk::Packed(Packed::encode(v));
            }
        }
    }

    fn into_elems(self) -> Vec<Elem> {
        match self {
            Chunk::Open(v) => v,
            Chunk::Packed(p) => p.refs().iter().map(ElemRef::to_owned).collect(),
        }
    }
}

/// A list's elements in key order, in chunks of at most [`CHUNK_MAX`]:
/// the first and last chunk open, the ones between packed. Equality and
/// encoding see only the elements, never the chunking.
#[derive(Debug, Clone, Default)]
pub struct ListVal {
    chunks: Vec<Chunk>,
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
            seq.serialize_element(&e.to_owned())?;
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
            chunks.push(Chunk::Open(it.by_ref().take(CHUNK_MAX).collect()));
        }
        let mut l = ListVal { chunks, len };
        l.tidy(0, usize::MAX);
        l
    }

    /// Drops emptied chunks among `from..=to` and packs those of them that
    /// are not at either end.
    fn tidy(&mut self, from: usize, to: usize) {
        let mut c = from;
        let mut to = to.min(self.chunks.len().saturating_sub(1));
        while c <= to && c < self.chunks.len() {
            if self.chunks[c].len() == 0 {
                self.chunks.remove(c);
                if to == 0 {
                    break;
                }
                to -= 1;
                continue;
            }
            if c != 0 && c + 1 != self.chunks.len() {
                self.chunks[c].pack();
            }
            c += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements in order (a packed chunk is decoded as it is reached).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = ElemRef<'_>> + '_ {
        self.chunks.iter().flat_map(|c| c.refs())
    }

    /// The elements' values, in order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(|c| c.values())
    }

    /// The values of elements `start..end` (clamped), in order.
    pub fn range_values(&self, start: usize, end: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let end = end.min(self.len);
        let (c, o) = self.at(start).unwrap_or((self.chunks.len(), 0));
        let n = end.saturating_sub(start);
        self.chunks[c.min(self.chunks.len())..]
            .iter()
            .flat_map(|c| c.values())
            .skip(o)
            .take(n)
    }

    pub fn first(&self) -> Option<ElemRef<'_>> {
        self.get(0)
    }

    pub fn last(&self) -> Option<ElemRef<'_>> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
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

    pub fn get(&self, i: usize) -> Option<ElemRef<'_>> {
        let (c, o) = self.at(i)?;
        match &self.chunks[c] {
            Chunk::Open(v) => v.get(o).map(Elem::as_ref),
            Chunk::Packed(p) => p.refs().into_iter().nth(o),
        }
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
            .partition_point(|ch| ch.last_pos().is_some_and(|p| p < pos));
        if c == self.chunks.len() {
            let last = self.chunks.len() - 1;
            return Err((last, self.chunks[last].len()));
        }
        if self.chunks[c].first_pos().is_some_and(|p| pos < p) {
            return Err((c, 0));
        }
        let found = match &self.chunks[c] {
            Chunk::Open(v) => v.binary_search_by(|e| e.pos.cmp(pos)),
            Chunk::Packed(p) => p.refs().binary_search_by(|e| (*e.pos).cmp(pos)),
        };
        match found {
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
            self.chunks.push(Chunk::Open(Vec::with_capacity(4)));
        }
        let last_chunk = c + 1 == self.chunks.len();
        let chunk = self.chunks[c].open();
        chunk.insert(o, elem);
        self.len += 1;
        if chunk.len() > CHUNK_MAX {
            // Split so pushes at either end keep leaving room: a full chunk
            // at the front gives its front part away, elsewhere its back part.
            let at = if c == 0 && o == 0 {
                CHUNK_MAX / 8
            } else if last_chunk && o + 1 == chunk.len() {
                chunk.len() - CHUNK_MAX / 8
            } else {
                chunk.len() / 2
            };
            let tail = chunk.split_off(at);
            self.chunks.insert(c + 1, Chunk::Open(tail));
            self.tidy(c, c + 1);
        } else {
            self.tidy(c, c);
        }
        true
    }

    /// Removes the elements with keys in `lo..=hi` that `ctx` observed;
    /// returns how many.
    pub fn remove_range(&mut self, lo: &Pos, hi: &Pos, ctx: &impl Observes) -> usize {
        let (first, mut o) = match self.locate(lo) {
            Ok(at) | Err(at) => at,
        };
        let mut c = first;
        let mut removed = 0;
        while c < self.chunks.len() {
            if self.chunks[c].first_pos().is_some_and(|p| p > hi) {
                break;
            }
            let chunk = self.chunks[c].open();
            let before = chunk.len();
            // The chunk's elements from `o` up to the first key above `hi`.
            let end = o + chunk[o..].partition_point(|e| e.pos <= *hi);
            let past = end < chunk.len();
            if chunk[o..end].iter().all(|e| ctx.observed(e.id().dot())) {
                // The usual case (a pop, a trim): one contiguous cut.
                chunk.drain(o..end);
            } else {
                let mut i = 0;
                chunk.retain(|e| {
                    let keep = !(o..end).contains(&i) || !ctx.observed(e.id().dot());
                    i += 1;
                    keep
                });
            }
            removed += before - chunk.len();
            o = 0;
            c += 1;
            if past {
                break;
            }
        }
        self.len -= removed;
        self.tidy(first, c);
        removed
    }

    /// Removes every observed element for which `pred` holds of its insert
    /// (DEL, expiry). The insert, not a later `LSET`, decides: an element is
    /// removed whole or not at all, so a removal and a concurrent `LSET`
    /// give the same list in either order (an `LSET` of an element already
    /// removed writes nothing).
    pub fn remove_observed(&mut self, ctx: &impl Observes, pred: impl Fn(&Tag) -> bool) {
        let n = self.chunks.len();
        for chunk in &mut self.chunks {
            let doomed = chunk
                .refs()
                .iter()
                .any(|e| ctx.observed(e.id().dot()) && pred(&e.id().tag));
            if doomed {
                chunk
                    .open()
                    .retain(|e| !(ctx.observed(e.id().dot()) && pred(&e.id().tag)));
            }
        }
        self.len = self.chunks.iter().map(Chunk::len).sum();
        self.tidy(0, n);
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
        let e = &mut self.chunks[c].open()[o];
        let old = e.written();
        let out = if ctx.observed(old.dot) {
            e.value = value.clone();
            e.set = Some(tag);
            None
        } else if tag > old {
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
        };
        self.tidy(c, c);
        out
    }

    /// The newest write visible here.
    pub fn stamp(&self) -> Option<Tag> {
        self.iter().map(|e| e.written()).max()
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
            .flat_map(Chunk::into_elems)
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
                        out.push(b.to_owned());
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
                            a.value = Blob::from(b.value);
                            a.set = b.set;
                            ((tb, a.value.clone()), loser)
                        } else {
                            ((ta, a.value.clone()), (tb, Blob::from(b.value)))
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

    /// Bytes this list holds on the heap (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Open(v) => {
                    v.capacity() * std::mem::size_of::<Elem>()
                        + v.iter().map(|e| e.value.heap_bytes()).sum::<usize>()
                }
                Chunk::Packed(p) => p.heap_bytes(),
            })
            .sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::pos::tests::id;
    use crate::region::RegionId;

    #[test]
    fn chunks_split_and_index() {
        let mut l = ListVal::default();
        for i in 0..1000u64 {
            let last = l.last().map(|e| e.pos.into_owned());
            let p = Pos::after(last.as_ref(), id("ra", i + 1, 0));
            assert!(l.insert(Elem {
                pos: p,
                value: Blob::from(format!("{i}").as_str()),
                set: None
            }));
        }
        for i in 0..500u64 {
            let first = l.first().map(|e| e.pos.into_owned());
            let p = Pos::before(first.as_ref(), id("ra", 2000 + i, 0));
            l.insert(Elem {
                pos: p,
                value: Blob::from(format!("-{i}").as_str()),
                set: None,
            });
        }
        assert_eq!(l.len(), 1500);
        assert_eq!(l.get(0).unwrap().value, b"-499");
        assert_eq!(l.get(500).unwrap().value, b"0");
        assert_eq!(l.get(1499).unwrap().value, b"999");
        let r: Vec<_> = l.range_values(498, 502).map(<[u8]>::to_vec).collect();
        assert_eq!(r.len(), 4);
        assert_eq!(r[2], b"0");
        let all = VersionVector::new();
        // Nothing observed: nothing removed.
        let lo = l.get(0).unwrap().pos.into_owned();
        let hi = l.get(1499).unwrap().pos.into_owned();
        assert_eq!(l.remove_range(&lo, &hi, &all), 0);
    }

    /// A list big enough to have packed interior chunks reads, splits and
    /// removes like a plain vector of its elements.
    #[test]
    fn packed_lists_behave_like_a_vector() {
        let mut l = ListVal::default();
        let mut model: Vec<Vec<u8>> = Vec::new();
        for i in 0..2000u64 {
            let last = l.last().map(|e| e.pos.into_owned());
            let v = format!("v{i}").into_bytes();
            l.insert(Elem {
                pos: Pos::after(last.as_ref(), id("ra", i + 1, 0)),
                value: Blob::from(&v[..]),
                set: None,
            });
            model.push(v);
        }
        assert!(l.chunks.iter().any(|c| matches!(c, Chunk::Packed(_))));
        // Insert in the middle of a packed chunk.
        let lo = l.get(700).unwrap().pos.into_owned();
        let hi = l.get(701).unwrap().pos.into_owned();
        l.insert(Elem {
            pos: Pos::between(Some(&lo), Some(&hi), id("rb", 5000, 0)),
            value: Blob::from("mid"),
            set: None,
        });
        model.insert(701, b"mid".to_vec());
        // Remove a range spanning several chunks.
        let mut seen = VersionVector::new();
        seen.set(RegionId::new("ra").unwrap(), 10_000);
        let lo = l.get(300).unwrap().pos.into_owned();
        let hi = l.get(1200).unwrap().pos.into_owned();
        l.remove_range(&lo, &hi, &seen);
        // The element from "rb" was not observed: it stays.
        model = model
            .iter()
            .enumerate()
            .filter(|(i, v)| !(300..=1200).contains(i) || v.as_slice() == b"mid")
            .map(|(_, v)| v.clone())
            .collect();
        let values: Vec<Vec<u8>> = l.values().map(<[u8]>::to_vec).collect();
        assert_eq!(values, model);
        assert_eq!(l.len(), model.len());
        for (i, v) in model.iter().enumerate() {
            assert_eq!(l.get(i).unwrap().value, &v[..], "index {i}");
        }
        let some: Vec<&[u8]> = l.range_values(650, 760).collect();
        let want: Vec<&[u8]> = model[650..760].iter().map(Vec::as_slice).collect();
        assert_eq!(some, want);
        let back: Vec<Vec<u8>> = l.values().rev().map(<[u8]>::to_vec).collect();
        assert_eq!(back, model.iter().rev().cloned().collect::<Vec<_>>());
    }
}
