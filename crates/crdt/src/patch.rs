//! Strings written in part: SETBIT and BITFIELD write bits, PFADD and
//! PFMERGE raise HyperLogLog registers, BITFIELD INCRBY under OVERFLOW
//! WRAP counts.
//!
//! A string is a last-writer-wins register ([`NumReg`]) whose value a
//! whole-string write replaces. Writing it whole for a partial write would
//! lose one of two concurrent SETBITs of different bits, or one of two
//! concurrent PFADDs. So a partial write is kept beside the register as a
//! [`Patch`] stamped with its op's [`Tag`], and readers see
//! ([`StrReg::render`]):
//! - the visible base, then every bit patch with a larger tag than that
//!   base, in tag order: each bit range is last-writer-wins against the
//!   whole-string writes and the other bit patches concurrent with it;
//! - when the visible base is a HyperLogLog (or there is none), the
//!   register-wise maximum of it, of every other base that is one
//!   (concurrent PFADDs that each wrote the whole value) and of every
//!   register patch: concurrent PFADDs count as their union;
//! - last, every *counted field* ([`Counted`]): the increments of a field
//!   that no write of it has reset, summed over regions and added to the
//!   field's bits modulo 2^width (each field wraps within its own bits; a
//!   carry never leaves it). Fields that overlap without being the same
//!   add in order of offset, then width.
//!
//! A counted field is [`NumReg`]'s counter for one bit range: each
//! region's running total of its increments ([`Patch::Incr`]), and the
//! totals writes of the field reset (offsets). A write that covers the
//! field (a bit patch, or a whole-string write) resets the totals its op
//! observed; increments it did not observe stay on top of its bits, as a
//! concurrent SET and INCR do on a string counter, and are journaled
//! ([`Rule::AddedOnTop`]). A fold (the store's whole value standing for the
//! patches) resets nothing: it carries the bits without the increments, so
//! two regions folding at once lose no increment. Wrapping addition
//! commutes, so the field reads the same in every order; OVERFLOW SAT and
//! FAIL depend on the order and stay bit patches.
//!
//! A patch goes once a write observed it: a whole-string write (which
//! carries what it saw), or a patch of the same bits or register that
//! supersedes it. The store folds a key's patches into one whole-string
//! write once they grow ([`StrReg::patch_count`]), so a key written only by
//! SETBITs keeps a few patches, never one per bit ever written.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use smallvec::SmallVec;

use crate::blob::Blob;
use crate::conflict::Conflict;
#[cfg(doc)]
use crate::conflict::Rule;
use crate::hll;
use crate::num::{Contrib, Counter, Delta, Displaced, NumReg, Observes};
use crate::vv::{Dot, Tag, VersionVector};

/// One partial write of a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Patch {
    /// Bits `offset .. offset + width` (bit 0 is the most significant bit
    /// of the first byte, as SETBIT counts) become the low `width` bits of
    /// `value`, most significant first; the string grows with zero bytes
    /// to hold them. `width` is 1 ..= 64.
    Bits { offset: u64, width: u8, value: u64 },
    /// HyperLogLog register `index` is raised to at least `value`.
    Register { index: u16, value: u8 },
    /// BITFIELD INCRBY under OVERFLOW WRAP: the field of bits `offset ..
    /// offset + width` (1 ..= 64) counts `delta` more, modulo 2^width,
    /// in incarnation `start` of the op's region's running total (see
    /// [`Counted`]; the origin decides `start`, as for INCR). Never held as
    /// a patch: it adds to the field's counter.
    Incr {
        offset: u64,
        width: u8,
        start: u64,
        delta: u64,
    },
}

impl Patch {
    /// A later patch that replaces all of `self`.
    fn supersedes(&self, older: &Patch) -> bool {
        match (self, older) {
            (
                Patch::Bits { offset, width, .. },
                Patch::Bits {
                    offset: o,
                    width: w,
                    ..
                },
            ) => *offset <= *o && o + u64::from(*w) <= offset + u64::from(*width),
            (Patch::Register { index, value }, Patch::Register { index: i, value: v }) => {
                index == i && value >= v
            }
            _ => false,
        }
    }

    /// The bit range a bit patch writes.
    fn bit_range(&self) -> Option<(u64, u64)> {
        match self {
            Patch::Bits { offset, width, .. } => Some((*offset, offset + u64::from(*width))),
            Patch::Register { .. } | Patch::Incr { .. } => None,
        }
    }
}

/// The bits `offset .. offset + width` a BITFIELD INCRBY counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Field {
    pub offset: u64,
    pub width: u8,
}

impl Field {
    pub fn range(&self) -> (u64, u64) {
        (self.offset, self.offset + u64::from(self.width))
    }

    fn within(&self, (lo, hi): (u64, u64)) -> bool {
        let (a, b) = self.range();
        lo <= a && b <= hi
    }

    fn overlaps(&self, (lo, hi): (u64, u64)) -> bool {
        let (a, b) = self.range();
        a < hi && lo < b
    }

    /// The name a write's observation ([`crate::KeyObs`]'s `fields`) gives
    /// this field's totals: a leading zero byte, then the offset and width.
    pub fn name(&self) -> Blob {
        let mut n = Vec::with_capacity(18);
        n.extend_from_slice(b"\0bitfield\0");
        n.extend_from_slice(&self.offset.to_be_bytes());
        n.push(self.width);
        Blob::from(n)
    }

    fn mask(&self) -> u64 {
        u64::MAX >> (64 - u32::from(self.width))
    }
}

/// A field that BITFIELD INCRBY counts in: its per-region totals and the
/// totals writes of it reset ([`NumReg`]'s counter, integers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    pub field: Field,
    pub counter: Counter,
}

impl Counted {
    /// What readers add to the field's bits, when anything.
    fn shown(&self) -> Option<u64> {
        let u = self.counter.unobserved();
        u.any.then(|| (u.int as u64) & self.field.mask())
    }

    /// Each region's latest total still showing (not reset by a write),
    /// with what it adds to the field.
    fn showing(&self) -> impl Iterator<Item = (Contrib, u64)> + '_ {
        self.counter.contrib.iter().filter_map(move |c| {
            let off = self
                .counter
                .offsets
                .iter()
                .find(|o| o.region == c.region && o.start == c.start);
            let (seq, int) = off.map_or((0, 0), |o| (o.seq, o.int));
            (c.seq > seq || (c.seq == seq && c.int != int))
                .then(|| (*c, (c.int.wrapping_sub(int) as u64) & self.field.mask()))
        })
    }
}

/// A patch and the tag of the op that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patched {
    pub patch: Patch,
    pub tag: Tag,
}

/// A string: the register plus the patches no write has observed yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrReg {
    reg: NumReg<Blob>,
    /// In tag order (an op's own patches in the order it wrote them).
    /// Boxed so that a string without patches, nearly every one, pays one
    /// word for them rather than a `Vec`'s three.
    #[allow(clippy::box_collection)]
    patches: Option<Box<Vec<Patched>>>,
    /// Counted fields, by field; boxed for the same reason.
    #[allow(clippy::box_collection)]
    counted: Option<Box<Vec<Counted>>>,
}

impl Deref for StrReg {
    type Target = NumReg<Blob>;

    fn deref(&self) -> &NumReg<Blob> {
        &self.reg
    }
}

impl DerefMut for StrReg {
    fn deref_mut(&mut self) -> &mut NumReg<Blob> {
        &mut self.reg
    }
}

impl From<NumReg<Blob>> for StrReg {
    fn from(reg: NumReg<Blob>) -> StrReg {
        StrReg {
            reg,
            patches: None,
            counted: None,
        }
    }
}

impl StrReg {
    /// A string as snapshot format 4 held it: no counted fields.
    #[allow(clippy::box_collection)]
    pub(crate) fn from_parts(reg: NumReg<Blob>, patches: Option<Box<Vec<Patched>>>) -> StrReg {
        StrReg {
            reg,
            patches,
            counted: None,
        }
    }

    pub fn patches(&self) -> &[Patched] {
        self.patches.as_deref().map_or(&[], |p| &p[..])
    }

    /// Patches held: the store folds them into a whole write past a bound.
    pub fn patch_count(&self) -> usize {
        self.patches().len()
    }

    /// Counted fields, by field ([`Counted`]).
    pub fn counted(&self) -> &[Counted] {
        self.counted.as_deref().map_or(&[], |c| &c[..])
    }

    /// Present to readers: a base, increments, or patches.
    pub fn is_live(&self) -> bool {
        self.reg.is_live() || self.patch_count() > 0 || self.shows_counts()
    }

    /// Holds nothing at all and can be forgotten.
    pub fn is_empty(&self) -> bool {
        self.reg.is_empty() && self.patch_count() == 0 && self.counted.is_none()
    }

    /// Some counted field adds to what readers see.
    fn shows_counts(&self) -> bool {
        self.counted().iter().any(|c| c.counter.unobserved().any)
    }

    /// The incarnation an increment of `field` by op `dot` goes to, as its
    /// origin decides it ([`Counter::start_for`]).
    pub fn field_start(&self, field: Field, dot: Dot) -> u64 {
        self.counted()
            .iter()
            .find(|c| c.field == field)
            .map_or(dot.seq(), |c| c.counter.start_for(dot))
    }

    /// The totals of each counted field a write made now resets, named by
    /// [`Field::name`].
    pub fn field_observation(&self) -> Vec<(Blob, SmallVec<[Contrib; 1]>)> {
        self.counted()
            .iter()
            .map(|c| (c.field.name(), c.counter.observation()))
            .filter(|(_, t)| !t.is_empty())
            .collect()
    }

    /// Counted fields adding to what readers see, by field.
    pub fn shown_fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.counted()
            .iter()
            .filter(|c| c.counter.unobserved().any)
            .map(|c| c.field)
    }

    fn counter_mut(&mut self, field: Field) -> &mut Counter {
        let list = self.counted.get_or_insert_with(Default::default);
        let at = match list.binary_search_by(|c| c.field.cmp(&field)) {
            Ok(i) => i,
            Err(i) => {
                list.insert(
                    i,
                    Counted {
                        field,
                        counter: Counter::default(),
                    },
                );
                i
            }
        };
        &mut list[at].counter
    }

    /// Forgets counted fields that never counted anything (as
    /// `NumReg` forgets such a counter).
    fn drop_empty_counts(&mut self) {
        if let Some(list) = self.counted.as_mut() {
            list.retain(|c| !c.counter.contrib.is_empty());
            if list.is_empty() {
                self.counted = None;
            }
        }
    }

    /// Settled counter incarnations, of the string and of counted fields.
    pub fn settled_count(&self) -> usize {
        self.reg.settled_count()
            + self
                .counted()
                .iter()
                .map(|c| c.counter.settled_count())
                .sum::<usize>()
    }

    /// Drops settled counter incarnations (see [`Counter::collect_settled`]).
    pub fn collect_settled(&mut self) -> usize {
        let mut n = self.reg.collect_settled();
        if let Some(list) = self.counted.as_mut() {
            n += list
                .iter_mut()
                .map(|c| c.counter.collect_settled())
                .sum::<usize>();
        }
        self.drop_empty_counts();
        n
    }

    /// Resets, in every counted field a write `covers`, the totals the
    /// write observed (`observed`, and the op's own increments: one
    /// BITFIELD may INCRBY a field and then SET it); then reports, in
    /// every field it `touches`, each region whose increments the write had
    /// not observed and which still show over it (`write`: the write's tag
    /// and value as the journal shows it).
    #[allow(clippy::too_many_arguments)]
    fn reset_counts(
        &mut self,
        key: &[u8],
        covers: impl Fn(Field) -> bool,
        touches: impl Fn(Field) -> bool,
        observed: &dyn Fn(Field) -> SmallVec<[Contrib; 1]>,
        ctx: &impl Observes,
        write: (Tag, &dyn Fn(Field) -> Blob),
        conflicts: &mut Vec<Conflict>,
    ) {
        let Some(list) = self.counted.as_mut() else {
            return;
        };
        let own = write.0.dot;
        for c in list.iter_mut().filter(|c| touches(c.field)) {
            if !covers(c.field) {
                report_showing(key, c, ctx, write, conflicts);
                continue;
            }
            let mut totals = observed(c.field);
            totals.extend(
                c.counter
                    .contrib
                    .iter()
                    .filter(|t| t.region == own.region() && t.seq == own.seq())
                    .copied(),
            );
            c.counter.reset(&totals);
            report_showing(key, c, ctx, write, conflicts);
        }
    }

    /// The newest write readers see, for electing a type.
    pub fn stamp(&self) -> Option<Tag> {
        let newest = self.patches().last().map(|p| p.tag);
        self.reg.stamp().max(newest)
    }

    /// The bytes a reader sees (see the module docs).
    pub fn render(&self) -> Cow<'_, [u8]> {
        let base = self.reg.render();
        let patches = self.patches();
        if patches.is_empty() && !self.has_hll_siblings() && !self.shows_counts() {
            return base;
        }
        let mut bytes = base.into_owned();
        self.write_patches(&mut bytes);
        for c in self.counted() {
            if let Some(adds) = c.shown() {
                let f = c.field;
                let old = read_bits(&bytes, f.offset, f.width);
                write_bits(
                    &mut bytes,
                    f.offset,
                    f.width,
                    old.wrapping_add(adds) & f.mask(),
                );
            }
        }
        Cow::Owned(bytes)
    }

    /// What [`render`](Self::render) shows without the counted fields'
    /// increments: the value a fold writes, under the counters it leaves.
    pub fn render_plain(&self) -> Vec<u8> {
        let mut bytes = self.reg.render().into_owned();
        self.write_patches(&mut bytes);
        bytes
    }

    fn write_patches(&self, bytes: &mut Vec<u8>) {
        for p in self.shown_bit_patches() {
            if let Patch::Bits {
                offset,
                width,
                value,
            } = p.patch
            {
                write_bits(bytes, offset, width, value);
            }
        }
        self.raise_registers(bytes);
    }

    /// Bit `bit` as [`render`](Self::render) shows it, without building
    /// the whole string: GETBIT on a large bitmap holding patches.
    pub fn bit(&self, bit: u64) -> bool {
        // A counted field's carries reach any of its bits: the field is
        // read whole, from the rendered string.
        if self.shows_registers() || self.shown_fields().any(|f| f.overlaps((bit, bit + 1))) {
            return read_bit(&self.render(), bit);
        }
        let newest = self.shown_bit_patches().rev().find(|p| {
            p.patch
                .bit_range()
                .is_some_and(|(lo, hi)| lo <= bit && bit < hi)
        });
        match newest.map(|p| p.patch) {
            Some(Patch::Bits {
                offset,
                width,
                value,
            }) => (value >> (offset + u64::from(width) - 1 - bit)) & 1 == 1,
            _ => read_bit(&self.reg.render(), bit),
        }
    }

    /// The length of what [`render`](Self::render) shows, without building
    /// it when only bit patches are held.
    pub fn len(&self) -> usize {
        if self.shows_registers() {
            return self.render().len();
        }
        let patched = self
            .shown_bit_patches()
            .filter_map(|p| p.patch.bit_range())
            .chain(self.shown_fields().map(|f| f.range()))
            .map(|(_, hi)| hi.div_ceil(8) as usize)
            .max()
            .unwrap_or(0);
        self.reg.render().len().max(patched)
    }

    /// Readers see a register-wise maximum: register patches, or
    /// HyperLogLog bases to merge ([`render`](Self::render)).
    fn shows_registers(&self) -> bool {
        self.patches()
            .iter()
            .any(|p| matches!(p.patch, Patch::Register { .. }))
            || self.has_hll_siblings()
    }

    /// The patches newer than the visible base, in tag order: the bit
    /// patches among them show over it.
    fn shown_bit_patches(&self) -> impl DoubleEndedIterator<Item = &Patched> {
        let top = self.reg.visible().map(|b| b.tag);
        self.patches()
            .iter()
            .filter(move |p| p.patch.bit_range().is_some() && top.is_none_or(|t| p.tag > t))
    }

    /// More than one base, and the visible one a HyperLogLog.
    fn has_hll_siblings(&self) -> bool {
        self.reg.base.len() > 1 && self.reg.visible().is_some_and(|b| hll::is_hll(&b.val))
    }

    /// Raises `bytes`, when they are a HyperLogLog or empty, to the
    /// registers of every other HyperLogLog base and of every register
    /// patch.
    fn raise_registers(&self, bytes: &mut Vec<u8>) {
        let mut regs: Vec<(u16, u8)> = self
            .patches()
            .iter()
            .filter_map(|p| match p.patch {
                Patch::Register { index, value } => Some((index, value)),
                Patch::Bits { .. } | Patch::Incr { .. } => None,
            })
            .collect();
        if self.reg.base.len() > 1 {
            let top = self.reg.visible().map(|b| b.tag);
            for b in self.reg.base.iter().filter(|b| Some(b.tag) != top) {
                if let Some(r) = hll::registers(&b.val) {
                    regs.extend(r);
                }
            }
        }
        if regs.is_empty() {
            return;
        }
        if let Some(raised) = hll::raise(bytes, &regs) {
            *bytes = raised;
        }
    }

    /// A whole-string write: replaces the bases it observed and drops the
    /// patches it observed; concurrent bases stay as siblings and each pair
    /// is reported, as are concurrent bit patches the write hides. With
    /// `fields` (a SET, not a fold), it resets the counted fields' totals
    /// it observed ([`Field::name`] to totals); increments it had not
    /// observed stay on top of its value and are reported, fold or not.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        key: &[u8],
        val: Blob,
        tag: Tag,
        observed: &[Contrib],
        fields: Option<&dyn Fn(Field) -> SmallVec<[Contrib; 1]>>,
        ctx: &impl Observes,
        conflicts: &mut Vec<Conflict>,
    ) -> Vec<Displaced<Blob>> {
        self.drop_patches_if(|p| ctx.observed(p.tag.dot));
        let top = self.reg.visible().map(|b| b.tag);
        for p in self.patches() {
            // A concurrent bit patch showing until now, hidden by this write.
            if p.tag < tag && top.is_none_or(|t| p.tag > t) && p.patch.bit_range().is_some() {
                conflicts.push(Conflict::patch_hidden(key, (p.tag, &p.patch), (tag, &val)));
            }
        }
        // A fold resets nothing (its value holds no increment), but what
        // shows over it unobserved is journaled as over any write.
        let shown = |_: Field| val.clone();
        let none = |_: Field| SmallVec::new();
        let resets = fields.is_some();
        let totals: &dyn Fn(Field) -> SmallVec<[Contrib; 1]> = fields.unwrap_or(&none);
        self.reset_counts(
            key,
            |_| resets,
            |_| true,
            totals,
            ctx,
            (tag, &shown),
            conflicts,
        );
        let displaced = self.reg.write(val, tag, observed, ctx);
        // Two HyperLogLogs written concurrently are merged, not displaced.
        displaced
            .into_iter()
            .filter(|d| !(hll::is_hll(&d.winner.val) && hll::is_hll(&d.loser.val)))
            .collect()
    }

    /// Like [`NumReg::remove_if`], dropping the observed patches and
    /// resetting the counted fields' observed totals too.
    pub fn remove_if(
        &mut self,
        observed: &[Contrib],
        fields: &dyn Fn(Field) -> SmallVec<[Contrib; 1]>,
        ctx: &impl Observes,
        pred: impl Fn(&Tag) -> bool,
    ) {
        self.drop_patches_if(|p| ctx.observed(p.tag.dot) && pred(&p.tag));
        if let Some(list) = self.counted.as_mut() {
            for c in list.iter_mut() {
                c.counter.reset(&fields(c.field));
            }
        }
        self.drop_empty_counts();
        self.reg.remove_if(observed, ctx, pred);
    }

    /// A partial write: `new` patches stamped `tag`, each dropping the
    /// patches it supersedes that its op observed (`vv` or its own op).
    /// Concurrent bit patches it overlaps with another value are reported
    /// for the journal. A bit patch covering a counted field resets the
    /// totals its op observed (`fields`, by [`Field::name`]); an increment
    /// adds to its field's counter. Increments and writes of one field
    /// that did not observe each other are reported once per write and
    /// region.
    pub fn patch(
        &mut self,
        key: &[u8],
        new: &[Patch],
        tag: Tag,
        fields: &dyn Fn(Field) -> SmallVec<[Contrib; 1]>,
        ctx: &impl Observes,
        conflicts: &mut Vec<Conflict>,
    ) {
        if new.is_empty() {
            return;
        }
        for p in new {
            if let Patch::Incr {
                offset,
                width,
                start,
                delta,
            } = *p
            {
                let field = Field { offset, width };
                self.report_writes_under(key, field, tag, delta, ctx, conflicts);
                self.counter_mut(field)
                    .add(tag.dot, start, Delta::Int(delta as i64));
                continue;
            }
            let list = self.patches.get_or_insert_with(Default::default);
            list.retain(|old| !(ctx.observed(old.tag.dot) && p.supersedes(&old.patch)));
            if let Some(range) = p.bit_range() {
                for old in list.iter().filter(|o| !ctx.observed(o.tag.dot)) {
                    if let Some(c) = bit_conflict(key, range, p, tag, old) {
                        conflicts.push(c);
                    }
                }
            }
            let at = list.partition_point(|o| o.tag <= tag);
            list.insert(at, Patched { patch: *p, tag });
            if let Some(range) = p.bit_range() {
                let shown = |_: Field| Blob::from(crate::conflict::shown_patch(p).as_str());
                // A patch covering a field resets it; one overlapping it
                // only is under the increments, which show over its bits.
                self.reset_counts(
                    key,
                    |f| f.within(range),
                    |f| f.overlaps(range),
                    fields,
                    ctx,
                    (tag, &shown),
                    conflicts,
                );
            }
        }
        // A later whole write this op had not observed hides its bits.
        if let Some(top) = self.reg.visible() {
            if top.tag > tag && !ctx.observed(top.tag.dot) {
                for p in new.iter().filter(|p| p.bit_range().is_some()) {
                    conflicts.push(Conflict::patch_hidden(key, (tag, p), (top.tag, &top.val)));
                }
            }
        }
    }

    /// Reports the writes of `field`'s bits an increment by `tag` had not
    /// observed (its delta shows over them), unless its region's
    /// increments already showed over them: that pair was reported when
    /// the first of them met the write.
    fn report_writes_under(
        &self,
        key: &[u8],
        field: Field,
        tag: Tag,
        delta: u64,
        ctx: &impl Observes,
        conflicts: &mut Vec<Conflict>,
    ) {
        let region = tag.dot.region();
        let counted = self.counted().iter().find(|c| c.field == field);
        if counted.is_some_and(|c| c.showing().any(|(t, _)| t.region == region)) {
            return;
        }
        let adds = (tag, delta & field.mask());
        let top = self.reg.visible().map(|b| b.tag);
        for p in self.patches() {
            let shown = top.is_none_or(|t| p.tag > t);
            let over = p.patch.bit_range().is_some_and(|r| field.overlaps(r));
            if shown && over && !ctx.observed(p.tag.dot) {
                let write = Blob::from(crate::conflict::shown_patch(&p.patch).as_str());
                conflicts.push(Conflict::added_on_top(
                    key,
                    field.range(),
                    (p.tag, write),
                    adds,
                ));
            }
        }
        if let Some(b) = self.reg.visible() {
            if !ctx.observed(b.tag.dot) {
                conflicts.push(Conflict::added_on_top(
                    key,
                    field.range(),
                    (b.tag, b.val.clone()),
                    adds,
                ));
            }
        }
    }

    fn drop_patches_if(&mut self, pred: impl Fn(&Patched) -> bool) {
        if let Some(list) = self.patches.as_mut() {
            list.retain(|p| !pred(p));
            if list.is_empty() {
                self.patches = None;
            }
        }
    }

    /// State merge with causal contexts: a patch one side holds stays
    /// unless the other side observed it and no longer holds it.
    pub fn join(
        &mut self,
        ctx: &VersionVector,
        other: &StrReg,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<Blob>> {
        let theirs = other.patches();
        self.drop_patches_if(|p| !theirs.contains(p) && other_ctx.covers(p.tag.dot));
        let add: Vec<Patched> = theirs
            .iter()
            .filter(|t| !ctx.covers(t.tag.dot) && !self.patches().contains(t))
            .copied()
            .collect();
        if !add.is_empty() {
            let list = self.patches.get_or_insert_with(Default::default);
            for t in add {
                let at = list.partition_point(|o| o.tag <= t.tag);
                list.insert(at, t);
            }
        }
        let mut fields: Vec<Field> = self.counted().iter().map(|c| c.field).collect();
        fields.extend(other.counted().iter().map(|c| c.field));
        fields.sort();
        fields.dedup();
        for f in fields {
            let theirs = other.counted().iter().find(|c| c.field == f);
            let mine = self.counter_mut(f);
            match theirs {
                Some(t) => mine.join(ctx, &t.counter, other_ctx),
                None => mine.join(ctx, &Counter::default(), other_ctx),
            }
        }
        self.drop_empty_counts();
        self.reg
            .join(ctx, &other.reg, other_ctx)
            .into_iter()
            .filter(|d| !(hll::is_hll(&d.winner.val) && hll::is_hll(&d.loser.val)))
            .collect()
    }

    /// True if `pred` holds for the dot of a patch or of a counted
    /// field's total or offset.
    pub fn any_patch_dot(&self, pred: &dyn Fn(crate::vv::Dot) -> bool) -> bool {
        self.patches().iter().any(|p| pred(p.tag.dot))
            || self.counted().iter().any(|c| {
                c.counter
                    .contrib
                    .iter()
                    .chain(c.counter.offsets.iter())
                    .any(|t| pred(Dot::new(t.region, t.seq)))
            })
    }
}

/// Reports each region whose increments of `c` show over a write that had
/// not observed them.
fn report_showing(
    key: &[u8],
    c: &Counted,
    ctx: &impl Observes,
    write: (Tag, &dyn Fn(Field) -> Blob),
    conflicts: &mut Vec<Conflict>,
) {
    for (t, adds) in c.showing() {
        if !ctx.observed(Dot::new(t.region, t.seq)) {
            conflicts.push(Conflict::added_on_top(
                key,
                c.field.range(),
                (write.0, write.1(c.field)),
                (total_tag(&t), adds),
            ));
        }
    }
}

/// The tag a journal entry gives a region's increment total: its latest
/// op's dot (totals keep no HLC, so the HLC is zero).
fn total_tag(t: &Contrib) -> Tag {
    Tag {
        hlc: crate::hlc::Hlc::ZERO,
        dot: Dot::new(t.region, t.seq),
    }
}

/// The concurrent bit patch `old` overlapping `range` of `new` with other
/// bits, as a conflict the larger tag wins.
fn bit_conflict(
    key: &[u8],
    range: (u64, u64),
    new: &Patch,
    tag: Tag,
    old: &Patched,
) -> Option<Conflict> {
    let (lo, hi) = old.patch.bit_range()?;
    let (from, to) = (range.0.max(lo), range.1.min(hi));
    if from >= to {
        return None;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    apply_patch(&mut a, new);
    apply_patch(&mut b, &old.patch);
    let differs = (from..to).any(|bit| read_bit(&a, bit) != read_bit(&b, bit));
    if !differs {
        return None;
    }
    let (winner, loser) = if tag > old.tag {
        ((tag, new), (old.tag, &old.patch))
    } else {
        ((old.tag, &old.patch), (tag, new))
    };
    Some(Conflict::bits(key, (from, to), winner, loser))
}

fn apply_patch(bytes: &mut Vec<u8>, p: &Patch) {
    if let Patch::Bits {
        offset,
        width,
        value,
    } = *p
    {
        write_bits(bytes, offset, width, value);
    }
}

/// Bits `offset .. offset + width` of `bytes` as an unsigned number, most
/// significant first (bits past the end read 0).
pub fn read_bits(bytes: &[u8], offset: u64, width: u8) -> u64 {
    (offset..offset + u64::from(width))
        .fold(0, |acc, bit| (acc << 1) | u64::from(read_bit(bytes, bit)))
}

/// Bit `bit` of `bytes` (0 past the end), SETBIT's numbering.
pub fn read_bit(bytes: &[u8], bit: u64) -> bool {
    usize::try_from(bit / 8)
        .ok()
        .and_then(|i| bytes.get(i))
        .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0)
}

/// Writes the low `width` bits of `value` at bit `offset`, most significant
/// first, growing `bytes` with zeros to hold them.
pub fn write_bits(bytes: &mut Vec<u8>, offset: u64, width: u8, value: u64) {
    let end = offset + u64::from(width);
    let need = end.div_ceil(8) as usize;
    if bytes.len() < need {
        bytes.resize(need, 0);
    }
    for i in 0..u64::from(width) {
        let bit = offset + i;
        let on = (value >> (u64::from(width) - 1 - i)) & 1 == 1;
        let (byte, mask) = ((bit / 8) as usize, 0x80u8 >> (bit % 8));
        if on {
            bytes[byte] |= mask;
        } else {
            bytes[byte] &= !mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_written_most_significant_first() {
        let mut b = Vec::new();
        write_bits(&mut b, 1, 1, 1);
        assert_eq!(b, vec![0x40]);
        write_bits(&mut b, 4, 8, 0xff);
        assert_eq!(b, vec![0x4f, 0xf0]);
        write_bits(&mut b, 6, 3, 0b010);
        assert_eq!(b, vec![0x4d, 0x70]);
        assert!(read_bit(&b, 1));
        assert!(!read_bit(&b, 0));
        assert!(!read_bit(&b, 1 << 40));
    }

    #[test]
    fn one_bit_reads_as_the_whole_string_shows_it() {
        use crate::hlc::Hlc;
        use crate::region::RegionId;
        use crate::vv::{Dot, VersionVector};
        let region = RegionId::new("bits").unwrap();
        let tag = |seq: u64| Tag {
            hlc: Hlc::new(seq, 0),
            dot: Dot::new(region, seq),
        };
        let mut r = StrReg::default();
        let mut conflicts = Vec::new();
        let none = VersionVector::new();
        r.write(
            b"k",
            Blob::from("\x0f"),
            tag(1),
            &[],
            None,
            &none,
            &mut conflicts,
        );
        let mut seen = VersionVector::new();
        seen.observe(tag(1).dot);
        let patches = [
            Patch::Bits {
                offset: 2,
                width: 4,
                value: 0b1001,
            },
            Patch::Bits {
                offset: 13,
                width: 1,
                value: 1,
            },
        ];
        r.patch(
            b"k",
            &patches,
            tag(2),
            &|_| SmallVec::new(),
            &seen,
            &mut conflicts,
        );
        let whole = r.render().into_owned();
        assert_eq!(r.len(), whole.len());
        for bit in 0..24 {
            assert_eq!(r.bit(bit), read_bit(&whole, bit), "bit {bit}");
        }
    }

    #[test]
    fn a_patch_supersedes_only_what_it_covers() {
        let wide = Patch::Bits {
            offset: 8,
            width: 8,
            value: 0,
        };
        let inside = Patch::Bits {
            offset: 9,
            width: 2,
            value: 3,
        };
        assert!(wide.supersedes(&inside));
        assert!(!inside.supersedes(&wide));
        let r3 = Patch::Register { index: 7, value: 3 };
        let r5 = Patch::Register { index: 7, value: 5 };
        assert!(r5.supersedes(&r3));
        assert!(!r3.supersedes(&r5));
        assert!(!r5.supersedes(&wide));
    }
}
