//! Registers that can also count: the rule shared by string keys, hash fields
//! and sorted-set scores.
//!
//! A [`NumReg`] is a last-writer-wins *base* plus a PN-counter of per-region
//! *contributions*. Increments never overwrite: each region keeps a running
//! total of its own increments (`Contrib`), and totals only grow in seq order.
//! A write (SET, HSET, ZADD) or a delete records the totals it had observed as
//! *offsets*; the visible number is `base + Σ (contribution − offset)`, so a
//! concurrent increment the writer never saw is added on top instead of lost.
//!
//! A region's running total lives in an *incarnation* named by the seq of
//! the op that started it (`Contrib::start`). The origin starts a new one
//! when its current one is *settled* (a write or delete reset exactly its
//! total), so a settled incarnation never changes again: the next one
//! replaces it wherever it arrives, and one nobody increments again is
//! collected once every region holds it settled (see
//! [`Counter::collect_settled`] and the store's tombstone collection). The
//! origin names the incarnation in the effect; replicas never decide it.
//!
//! Merge laws (proved by the property tests in `tests/`):
//! - contributions and offsets are per-(region, incarnation) maxima by seq,
//!   and an incarnation one side lacks although its context covers the
//!   incarnation's seq was collected there and is dropped (the causal join
//!   of a dot store, the dot being the incarnation's latest seq);
//! - the base is a causal last-writer-wins register: a base survives a merge
//!   unless the other side's context covers its dot and it does not hold it;
//!   two surviving bases keep the larger [`Tag`];
//!
//! Hence merge is commutative, associative and idempotent.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::region::RegionId;
use crate::vv::{Dot, Tag, VersionVector};

/// The running total of one region's increments in one incarnation, as of
/// that region's op `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contrib {
    pub region: RegionId,
    /// The seq of the op that started this incarnation.
    pub start: u64,
    pub seq: u64,
    pub int: i64,
    pub float: f64,
}

impl Contrib {
    fn id(&self) -> (RegionId, u64) {
        (self.region, self.start)
    }

    /// The op that last changed this total.
    fn dot(&self) -> Dot {
        Dot::new(self.region, self.seq)
    }

    /// `offset` resets exactly this total: nothing of it is visible.
    fn settled_by(&self, offset: &Contrib) -> bool {
        offset.id() == self.id()
            && offset.seq == self.seq
            && offset.int == self.int
            && offset.float.to_bits() == self.float.to_bits()
    }
}

/// Per-region running totals and the totals already reset by writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub contrib: SmallVec<[Contrib; 1]>,
    pub offsets: SmallVec<[Contrib; 1]>,
}

/// An increment: integer (INCR, HINCRBY) or floating point (INCRBYFLOAT, ZINCRBY).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Delta {
    Int(i64),
    Float(f64),
}

/// The part of a number that no winning write has reset.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Unobserved {
    pub int: i128,
    pub float: f64,
    /// Some region has increments beyond what the offsets reset.
    pub any: bool,
}

fn upsert_max(list: &mut SmallVec<[Contrib; 1]>, c: Contrib) {
    match list.iter_mut().find(|x| x.id() == c.id()) {
        Some(slot) => {
            if c.seq > slot.seq {
                *slot = c;
            }
        }
        None => {
            let at = list.partition_point(|x| x.id() < c.id());
            list.insert(at, c);
        }
    }
}

impl Counter {
    fn offset_of(&self, c: &Contrib) -> Option<&Contrib> {
        self.offsets.iter().find(|o| o.id() == c.id())
    }

    fn is_settled(&self, c: &Contrib) -> bool {
        self.offset_of(c).is_some_and(|o| c.settled_by(o))
    }

    /// The incarnation an increment by op `dot` goes to, as its origin
    /// decides: the region's latest one unless a write settled it, or one
    /// this op already started (a MULTI block incrementing after a reset).
    pub fn start_for(&self, dot: Dot) -> u64 {
        let latest = self
            .contrib
            .iter()
            .filter(|c| c.region == dot.region())
            .max_by_key(|c| c.start);
        match latest {
            Some(c) if c.start == dot.seq() || !self.is_settled(c) => c.start,
            _ => dot.seq(),
        }
    }

    /// Applies one increment made by op `dot` to incarnation `start`.
    /// Several increments of one op (a MULTI/EXEC block) share the dot and
    /// add up.
    ///
    /// The region's older incarnations go: its origin started this one
    /// only once it held the previous one settled, and the ops that settled
    /// it are in this op's causal past, so it is settled here too (it adds
    /// nothing) and no increment to it can still arrive. So a counter holds
    /// at most one incarnation per region, however often it is deleted.
    pub fn add(&mut self, dot: Dot, start: u64, delta: Delta) {
        let region = dot.region();
        let older = |c: &Contrib| c.region == region && c.start < start;
        if self.contrib.iter().any(older) || self.offsets.iter().any(older) {
            self.contrib.retain(|c| !older(c));
            self.offsets.retain(|c| !older(c));
        }
        let slot = match self
            .contrib
            .iter_mut()
            .position(|x| x.region == region && x.start == start)
        {
            Some(i) => &mut self.contrib[i],
            None => {
                let at = self.contrib.partition_point(|x| x.id() < (region, start));
                self.contrib.insert(
                    at,
                    Contrib {
                        region,
                        start,
                        seq: 0,
                        int: 0,
                        float: 0.0,
                    },
                );
                &mut self.contrib[at]
            }
        };
        if dot.seq() < slot.seq {
            return;
        }
        slot.seq = dot.seq();
        match delta {
            Delta::Int(d) => slot.int = slot.int.wrapping_add(d),
            Delta::Float(d) => slot.float += d,
        }
    }

    /// Records that a write reset the totals in `observed`. A total whose
    /// incarnation is gone here (replaced by a newer one, or collected) was
    /// settled already: an offset for it would cancel nothing.
    pub fn reset(&mut self, observed: &[Contrib]) {
        for &c in observed {
            if self.contrib.iter().any(|x| x.id() == c.id()) {
                upsert_max(&mut self.offsets, c);
            }
        }
    }

    /// The totals a write made now resets: every incarnation not settled.
    pub fn observation(&self) -> SmallVec<[Contrib; 1]> {
        self.contrib
            .iter()
            .filter(|c| !self.is_settled(c))
            .copied()
            .collect()
    }

    pub fn unobserved(&self) -> Unobserved {
        let mut u = Unobserved::default();
        for c in &self.contrib {
            let off = self.offset_of(c);
            let (seq, int, float) = off.map_or((0, 0, 0.0), |o| (o.seq, o.int, o.float));
            // Same seq, other totals: increments made later in the op (a
            // MULTI block) that reset the counter part-way through.
            if c.seq > seq || (c.seq == seq && (c.int != int || c.float != float)) {
                u.any = true;
                u.int += c.int.wrapping_sub(int) as i128;
                u.float += c.float - float;
            }
        }
        u
    }

    /// Causal join: incarnations held on both sides keep their larger
    /// totals; one held on one side only survives unless the other side's
    /// context covers its latest seq, which means the other side collected
    /// it (it held it, settled, and every region had it settled).
    pub fn join(&mut self, ctx: &VersionVector, other: &Counter, other_ctx: &VersionVector) {
        let holds =
            |list: &SmallVec<[Contrib; 1]>, c: &Contrib| list.iter().any(|x| x.id() == c.id());
        let collected_there: Vec<(RegionId, u64)> = self
            .contrib
            .iter()
            .filter(|c| !holds(&other.contrib, c) && other_ctx.covers(c.dot()))
            .map(|c| c.id())
            .collect();
        let collected_here: Vec<(RegionId, u64)> = other
            .contrib
            .iter()
            .filter(|c| !holds(&self.contrib, c) && ctx.covers(c.dot()))
            .map(|c| c.id())
            .collect();
        for &c in &other.contrib {
            if !collected_here.contains(&c.id()) {
                upsert_max(&mut self.contrib, c);
            }
        }
        for &o in &other.offsets {
            upsert_max(&mut self.offsets, o);
        }
        self.contrib.retain(|c| !collected_there.contains(&c.id()));
        // Only the newest incarnation of each region stays (see `add`), and
        // an offset stays only with its incarnation (so the offsets of what
        // was collected go too).
        let newest: Vec<(RegionId, u64)> = self
            .contrib
            .iter()
            .filter(|c| {
                !self
                    .contrib
                    .iter()
                    .any(|x| x.region == c.region && x.start > c.start)
            })
            .map(|c| c.id())
            .collect();
        self.contrib.retain(|c| newest.contains(&c.id()));
        let contrib = &self.contrib;
        self.offsets
            .retain(|o| contrib.iter().any(|c| c.id() == o.id()));
    }

    /// Drops every settled incarnation with its offset; returns how many.
    /// Only safe once every region holds them settled and nothing that
    /// could still change them is in flight (the store decides when).
    pub fn collect_settled(&mut self) -> usize {
        let settled: Vec<(RegionId, u64)> = self
            .contrib
            .iter()
            .filter(|c| self.is_settled(c))
            .map(|c| c.id())
            .collect();
        if settled.is_empty() {
            return 0;
        }
        self.contrib.retain(|c| !settled.contains(&c.id()));
        self.offsets.retain(|o| !settled.contains(&o.id()));
        settled.len()
    }

    /// Incarnations that are settled (collectable once stable).
    pub fn settled_count(&self) -> usize {
        self.contrib.iter().filter(|c| self.is_settled(c)).count()
    }
}

/// A last-writer-wins value with the tag of the write that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reg<V> {
    pub val: V,
    pub tag: Tag,
}

/// Two concurrent writes of one register: readers see `winner`, `loser`
/// is hidden (kept as a sibling until a write observes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Displaced<V> {
    pub loser: Reg<V>,
    pub winner: Reg<V>,
}

impl<V> Displaced<V> {
    pub fn map<W>(self, f: impl Fn(V) -> W) -> Displaced<W> {
        Displaced {
            loser: Reg {
                val: f(self.loser.val),
                tag: self.loser.tag,
            },
            winner: Reg {
                val: f(self.winner.val),
                tag: self.winner.tag,
            },
        }
    }
}

/// Concurrent writes of one register, none of which observed the others.
///
/// Readers see the largest tag; the others stay so that a later delete that
/// observed only the winner uncovers them (observed-remove), which is what
/// makes op replay and state merge agree. A later write that observed them
/// all leaves a single value again, so there is at most one per region.
pub type Siblings<V> = SmallVec<[Reg<V>; 1]>;

/// Last-writer-wins base plus counter; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumReg<V> {
    pub base: Siblings<V>,
    pub counter: Option<Box<Counter>>,
}

impl<V> Default for NumReg<V> {
    fn default() -> Self {
        NumReg {
            base: SmallVec::new(),
            counter: None,
        }
    }
}

/// What a write or delete knows of the writer's causal past.
pub trait Observes {
    fn observed(&self, dot: Dot) -> bool;
}

impl Observes for VersionVector {
    fn observed(&self, dot: Dot) -> bool {
        self.covers(dot)
    }
}

/// Adds `new` to concurrent `siblings`, reporting each pair it decides.
fn add_sibling<V: Clone>(siblings: &mut Siblings<V>, new: Reg<V>) -> Vec<Displaced<V>> {
    if siblings.iter().any(|s| s.tag == new.tag) {
        return Vec::new();
    }
    let displaced = siblings
        .iter()
        .map(|s| {
            if s.tag > new.tag {
                Displaced {
                    loser: new.clone(),
                    winner: s.clone(),
                }
            } else {
                Displaced {
                    loser: s.clone(),
                    winner: new.clone(),
                }
            }
        })
        .collect();
    let at = siblings.partition_point(|s| s.tag < new.tag);
    siblings.insert(at, new);
    displaced
}

/// Causal join of two sibling sets (see the module docs).
pub fn join_siblings<V: Clone>(
    mine: &mut Siblings<V>,
    ctx: &VersionVector,
    theirs: &Siblings<V>,
    their_ctx: &VersionVector,
) -> Vec<Displaced<V>> {
    mine.retain(|m| theirs.iter().any(|t| t.tag == m.tag) || !their_ctx.covers(m.tag.dot));
    let mut displaced = Vec::new();
    for t in theirs {
        if !ctx.covers(t.tag.dot) {
            displaced.extend(add_sibling(mine, t.clone()));
        }
    }
    displaced
}

impl<V: Clone> NumReg<V> {
    /// The base readers see: the largest tag among concurrent writes.
    pub fn visible(&self) -> Option<&Reg<V>> {
        self.base.last()
    }

    /// Present to readers: a base, or increments no write has reset.
    pub fn is_live(&self) -> bool {
        !self.base.is_empty() || self.unobserved().any
    }

    /// Holds nothing at all and can be forgotten.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.counter.is_none()
    }

    pub fn unobserved(&self) -> Unobserved {
        self.counter
            .as_ref()
            .map_or(Unobserved::default(), |c| c.unobserved())
    }

    /// The totals a write made here now would reset.
    pub fn observation(&self) -> SmallVec<[Contrib; 1]> {
        self.counter
            .as_ref()
            .map_or_else(SmallVec::new, |c| c.observation())
    }

    /// The incarnation an increment by op `dot` made here now goes to.
    pub fn start_for(&self, dot: Dot) -> u64 {
        self.counter
            .as_ref()
            .map_or(dot.seq(), |c| c.start_for(dot))
    }

    /// Drops settled counter incarnations (see [`Counter::collect_settled`]).
    pub fn collect_settled(&mut self) -> usize {
        let n = self.counter.as_mut().map_or(0, |c| c.collect_settled());
        self.drop_settled_counter();
        n
    }

    /// Settled counter incarnations held.
    pub fn settled_count(&self) -> usize {
        self.counter.as_ref().map_or(0, |c| c.settled_count())
    }

    /// A write of `val`: replaces the bases it observed; concurrent ones stay
    /// as siblings and each pair is reported.
    pub fn write(
        &mut self,
        val: V,
        tag: Tag,
        observed: &[Contrib],
        ctx: &impl Observes,
    ) -> Vec<Displaced<V>> {
        self.reset_counter(observed);
        // The op's own earlier writes (a MULTI block writing twice) count as
        // observed, so the later write replaces them.
        self.base.retain(|b| !ctx.observed(b.tag.dot));
        add_sibling(&mut self.base, Reg { val, tag })
    }

    /// A delete: drops the observed bases and resets observed increments.
    pub fn remove(&mut self, observed: &[Contrib], ctx: &impl Observes) {
        self.remove_if(observed, ctx, |_| true)
    }

    /// Like [`remove`](Self::remove), but only bases for which `pred` holds.
    pub fn remove_if(
        &mut self,
        observed: &[Contrib],
        ctx: &impl Observes,
        pred: impl Fn(&Tag) -> bool,
    ) {
        self.reset_counter(observed);
        self.base
            .retain(|b| !(ctx.observed(b.tag.dot) && pred(&b.tag)));
        self.drop_settled_counter();
    }

    pub fn incr(&mut self, dot: Dot, start: u64, delta: Delta) {
        self.counter
            .get_or_insert_with(Default::default)
            .add(dot, start, delta);
    }

    fn reset_counter(&mut self, observed: &[Contrib]) {
        if observed.is_empty() {
            return;
        }
        self.counter
            .get_or_insert_with(Default::default)
            .reset(observed);
    }

    /// A counter whose every contribution is reset and that has no base is
    /// still needed: a later increment from a region is measured against the
    /// offsets. It is only forgettable when it never counted anything.
    fn drop_settled_counter(&mut self) {
        if let Some(c) = &self.counter {
            if c.contrib.is_empty() {
                self.counter = None;
            }
        }
    }

    /// State merge with causal contexts (see module docs).
    pub fn join(
        &mut self,
        ctx: &VersionVector,
        other: &NumReg<V>,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<V>> {
        if let Some(oc) = &other.counter {
            self.counter
                .get_or_insert_with(Default::default)
                .join(ctx, oc, other_ctx);
        } else if let Some(c) = &mut self.counter {
            c.join(ctx, &Counter::default(), other_ctx);
        }
        let displaced = join_siblings(&mut self.base, ctx, &other.base, other_ctx);
        self.drop_settled_counter();
        displaced
    }

    /// The largest tag that makes this value visible, for electing which
    /// type a key shows after a concurrent type change.
    pub fn stamp(&self) -> Option<Tag> {
        self.visible().map(|b| b.tag)
    }
}

/// Parses an integer the way Redis's `string2ll` does: optional '-', no '+',
/// no leading zeros, no spaces, within `i64`.
pub fn parse_strict_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as i128;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Parses a float as INCRBYFLOAT accepts it: finite decimal or exponent
/// form, no spaces.
pub fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty()
        || s.starts_with(|c: char| c.is_whitespace())
        || s.ends_with(|c: char| c.is_whitespace())
    {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Formats a float the way Meridian stores INCRBYFLOAT results: the shortest
/// decimal that reads back as the same `f64`, never in exponent form.
pub fn format_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    format!("{f}")
}

impl NumReg<Blob> {
    /// The bytes a reader sees: the base, plus increments no write has reset.
    /// When the base is not a number (a concurrent SET of text and INCR), the
    /// text is shown and the increments stay recorded underneath.
    pub fn render(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        let u = self.unobserved();
        let base = self.visible().map(|b| &b.val[..]);
        if !u.any {
            return Cow::Borrowed(base.unwrap_or(b""));
        }
        let base = base.unwrap_or(b"0");
        if u.float == 0.0 {
            if let Some(i) = parse_strict_i64(base) {
                return Cow::Owned((i as i128 + u.int).to_string().into_bytes());
            }
        }
        match parse_float(base) {
            Some(f) => Cow::Owned(format_float(f + u.int as f64 + u.float).into_bytes()),
            None => Cow::Borrowed(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers_follow_redis() {
        assert_eq!(parse_strict_i64(b"0"), Some(0));
        assert_eq!(parse_strict_i64(b"-12"), Some(-12));
        assert_eq!(parse_strict_i64(b"012"), None);
        assert_eq!(parse_strict_i64(b"+1"), None);
        assert_eq!(parse_strict_i64(b"-0"), None);
        assert_eq!(parse_strict_i64(b" 1"), None);
        assert_eq!(parse_strict_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_strict_i64(b"9223372036854775808"), None);
        assert_eq!(parse_strict_i64(b"-9223372036854775808"), Some(i64::MIN));
    }

    fn dot(region: &str, seq: u64) -> Dot {
        Dot::new(RegionId::new(region).unwrap(), seq)
    }

    #[test]
    fn increments_after_a_settling_reset_start_a_new_incarnation() {
        let mut c = Counter::default();
        c.add(dot("inc-a", 1), 1, Delta::Int(5));
        assert_eq!(c.start_for(dot("inc-a", 2)), 1, "not settled yet");
        c.reset(&c.observation());
        assert!(!c.unobserved().any);
        assert_eq!(c.start_for(dot("inc-a", 3)), 3, "settled: a new one");
        // Another region's increments have their own incarnations.
        assert_eq!(c.start_for(dot("inc-b", 1)), 1);
        c.add(dot("inc-a", 3), 3, Delta::Int(2));
        assert_eq!(c.unobserved().int, 2);
        assert_eq!(c.contrib.len(), 1, "the settled incarnation is replaced");
        assert!(c.offsets.is_empty());
        c.reset(&c.observation());
        assert_eq!(c.settled_count(), 1);
        assert_eq!(c.collect_settled(), 1);
        assert!(!c.unobserved().any, "collecting changes nothing visible");
        assert!(c.contrib.is_empty() && c.offsets.is_empty());
    }

    /// A counter deleted and incremented again and again (during a
    /// partition nothing is collected) stays one incarnation per region;
    /// replaying a long log of such cycles once took quadratic time.
    #[test]
    fn delete_and_increment_cycles_keep_one_incarnation_per_region() {
        let mut c = Counter::default();
        for seq in 1..=1_000u64 {
            for r in ["cyc-a", "cyc-b"] {
                let d = dot(r, seq);
                let start = c.start_for(d);
                c.add(d, start, Delta::Int(1));
            }
            c.reset(&c.observation());
        }
        assert_eq!(c.contrib.len(), 2);
        assert_eq!(c.offsets.len(), 2);
        assert!(!c.unobserved().any);
    }

    #[test]
    fn a_collected_incarnation_is_not_brought_back_by_a_merge() {
        let mut settled = Counter::default();
        settled.add(dot("inc-a", 1), 1, Delta::Int(5));
        settled.reset(&settled.observation());
        let mut vv = VersionVector::new();
        vv.observe(dot("inc-a", 1));
        vv.observe(dot("inc-b", 1));
        // A peer that lost the reset (it had not synced it) still holds the
        // increment unreset; this region collected it.
        let mut stale = Counter::default();
        stale.add(dot("inc-a", 1), 1, Delta::Int(5));
        let mut stale_vv = VersionVector::new();
        stale_vv.observe(dot("inc-a", 1));
        let mut here = settled.clone();
        here.collect_settled();
        let mut joined = here.clone();
        joined.join(&vv, &stale, &stale_vv);
        assert!(!joined.unobserved().any, "collected here: not resurrected");
        let mut there = stale.clone();
        there.join(&stale_vv, &here, &vv);
        assert!(!there.unobserved().any, "collected there: dropped here too");
        // Without collection the merge keeps both and they agree.
        let mut plain = stale.clone();
        plain.join(&stale_vv, &settled, &vv);
        assert!(!plain.unobserved().any);
    }

    #[test]
    fn floats_render_without_exponent() {
        assert_eq!(format_float(10.5), "10.5");
        assert_eq!(format_float(3000.0), "3000");
        assert_eq!(format_float(1e20), "100000000000000000000");
        assert_eq!(format_float(-0.0), "0");
    }
}
