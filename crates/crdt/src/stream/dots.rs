//! The dot sets a stream is made of, and the registers built on them.
//!
//! Every element carries the [`Tag`] of the op that wrote it. A write
//! replaces the elements its op observed; a removal drops only those; a
//! join keeps an element held on both sides, and one held on one side
//! only unless the other side's context covers its dot. So every part of a
//! stream merges the same way, commutatively, associatively and
//! idempotently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::StreamId;
use crate::num::Observes;
use crate::region::RegionId;
use crate::vv::{Tag, VersionVector};

/// Something written by one op, known by that op's tag (and, for an op
/// that writes several elements of one set, their part).
pub(super) trait Tagged {
    fn tag(&self) -> Tag;

    /// What tells elements apart and orders them: the tag, then the part
    /// (a group's delivery cursors: one per region whose entries it
    /// delivered, all written by one op).
    fn key(&self) -> (Tag, u32) {
        (self.tag(), 0)
    }
}

impl Tagged for Tag {
    fn tag(&self) -> Tag {
        *self
    }
}

/// A set of elements each written by its own op, kept in tag order: the
/// dot set every part of a stream is made of.
pub(super) type Dots<T> = SmallVec<[T; 1]>;

pub(super) fn sort_dots<T: Tagged>(v: &mut Dots<T>) {
    v.sort_by_key(|x| x.key());
}

/// Adds `x`, first dropping what its op observed (a write replaces what its
/// writer saw). Adding an element already held changes nothing.
pub(super) fn write_dot<T: Tagged>(v: &mut Dots<T>, x: T, ctx: &impl Observes) {
    write_dot_where(v, x, ctx, |_| true);
}

/// [`write_dot`] replacing only the observed elements `replaces` holds of.
pub(super) fn write_dot_where<T: Tagged>(
    v: &mut Dots<T>,
    x: T,
    ctx: &impl Observes,
    replaces: impl Fn(&T) -> bool,
) {
    let key = x.key();
    if v.iter().any(|y| y.key() == key) {
        return;
    }
    v.retain(|y| !(ctx.observed(y.tag().dot) && replaces(y)));
    v.push(x);
    sort_dots(v);
}

/// Drops the elements `ctx` observed for which `pred` holds of their tag.
pub(super) fn remove_dots<T: Tagged>(
    v: &mut Dots<T>,
    ctx: &impl Observes,
    pred: impl Fn(&Tag) -> bool,
) {
    v.retain(|y| {
        let t = y.tag();
        !(ctx.observed(t.dot) && pred(&t))
    });
}

/// The causal join of two dot sets: an element on both sides stays, one
/// on one side only stays unless the other side's context covers it.
pub(super) fn join_dots<T: Tagged + Clone>(
    mine: &mut Dots<T>,
    ctx: &VersionVector,
    theirs: &[T],
    other_ctx: &VersionVector,
) {
    mine.retain(|x| {
        let k = x.key();
        theirs.iter().any(|y| y.key() == k) || !other_ctx.covers(k.0.dot)
    });
    for y in theirs {
        let k = y.key();
        if !mine.iter().any(|x| x.key() == k) && !ctx.covers(k.0.dot) {
            mine.push(y.clone());
        }
    }
    sort_dots(mine);
}

/// Joins two maps of dot sets key by key, dropping keys left empty.
pub(super) fn join_map<K: Ord + Clone, T: Tagged + Clone>(
    mine: &mut BTreeMap<K, Dots<T>>,
    ctx: &VersionVector,
    theirs: &BTreeMap<K, Dots<T>>,
    other_ctx: &VersionVector,
) {
    let empty: Dots<T> = SmallVec::new();
    let mut keys: Vec<K> = mine.keys().cloned().collect();
    keys.extend(theirs.keys().cloned());
    keys.sort();
    keys.dedup();
    for k in keys {
        let t = theirs.get(&k).unwrap_or(&empty);
        let slot = mine.entry(k.clone()).or_default();
        join_dots(slot, ctx, t, other_ctx);
        if slot.is_empty() {
            mine.remove(&k);
        }
    }
}

/// A raise or a set of an ID register (see the module docs), with the
/// group's `entries_read` when it is a group's last delivered ID.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub id: StreamId,
    pub tag: Tag,
    /// Written by XSETID / XGROUP SETID / XGROUP CREATE (last writer wins
    /// among concurrent sets) rather than raised.
    pub set: bool,
    pub read: Option<u64>,
    /// A group's delivery cursor for the entries one region added: the
    /// group delivered every entry of that region up to `id`. `None`: the
    /// mark holds for every region's entries.
    pub origin: Option<RegionId>,
}

impl Tagged for Mark {
    fn tag(&self) -> Tag {
        self.tag
    }

    fn key(&self) -> (Tag, u32) {
        (
            self.tag,
            self.origin.map_or(0, |r| u32::from(r.index()) + 1),
        )
    }
}

/// An ID register: the marks no later write observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Marks(pub(super) Dots<Mark>);

impl Marks {
    /// The mark readers see: the largest ID among the raises and the set
    /// with the largest tag (the larger tag on equal IDs).
    pub fn top(&self) -> Option<&Mark> {
        let set = self.0.iter().filter(|m| m.set).max_by_key(|m| m.tag);
        self.0
            .iter()
            .filter(|m| !m.set)
            .chain(set)
            .max_by_key(|m| (m.id, m.tag))
    }

    pub fn value(&self) -> StreamId {
        self.top().map_or(StreamId::ZERO, |m| m.id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A write replaces the marks its op observed; a cursor (a mark with
    /// an origin) only the observed cursors of its own origin, so one
    /// region's delivery leaves the other regions' cursors and the group's
    /// starting point alone.
    pub(super) fn write(&mut self, m: Mark, ctx: &impl Observes) {
        match m.origin {
            None => write_dot(&mut self.0, m, ctx),
            Some(r) => write_dot_where(&mut self.0, m, ctx, |y| y.origin == Some(r)),
        }
    }

    /// How far a group delivered the entries `origin` added: the largest
    /// of its starting point (the last-writer-wins set), its raises for
    /// every region, and the cursors for `origin`.
    pub fn floor(&self, origin: RegionId) -> StreamId {
        let set = self.0.iter().filter(|m| m.set).max_by_key(|m| m.tag);
        self.0
            .iter()
            .filter(|m| !m.set && m.origin.is_none_or(|o| o == origin))
            .chain(set)
            .map(|m| m.id)
            .max()
            .unwrap_or_default()
    }
}

/// The count of entries ever added: per region, that region's own count
/// as of its latest XADD, summed on top of the last-writer-wins value an
/// XSETID ENTRIESADDED set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub(super) base: Dots<(Tag, u64)>,
    pub(super) counts: Dots<(Tag, u64)>,
}

impl Tagged for (Tag, u64) {
    fn tag(&self) -> Tag {
        self.0
    }
}

impl Added {
    pub fn value(&self) -> u64 {
        let base = self.base.iter().max_by_key(|b| b.0).map_or(0, |b| b.1);
        self.counts
            .iter()
            .fold(base, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// The count `region`'s next XADD carries.
    pub fn next_for(&self, region: RegionId) -> u64 {
        self.counts
            .iter()
            .filter(|(t, _)| t.dot.region() == region)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.base.is_empty() && self.counts.is_empty()
    }

    pub(super) fn add(&mut self, tag: Tag, count: u64, ctx: &impl Observes) {
        // The region's earlier count is in this op's past: replaced.
        let region = tag.dot.region();
        self.counts
            .retain(|(t, _)| !(t.dot.region() == region && ctx.observed(t.dot)));
        if let Some(same) = self.counts.iter_mut().find(|(t, _)| *t == tag) {
            same.1 = same.1.max(count);
            return;
        }
        self.counts.push((tag, count));
        sort_dots(&mut self.counts);
    }

    pub(super) fn set(&mut self, tag: Tag, value: u64, ctx: &impl Observes) {
        remove_dots(&mut self.counts, ctx, |_| true);
        write_dot(&mut self.base, (tag, value), ctx);
    }
}
