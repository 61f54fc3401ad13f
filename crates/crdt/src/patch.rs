//! Strings written in part: SETBIT and BITFIELD write bits, PFADD and
//! PFMERGE raise HyperLogLog registers.
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
//!   register patch: concurrent PFADDs count as their union.
//!
//! A patch goes once a write observed it: a whole-string write (which
//! carries what it saw), or a patch of the same bits or register that
//! supersedes it. The store folds a key's patches into one whole-string
//! write once they grow ([`StrReg::patch_count`]), so a key written only by
//! SETBITs keeps a few patches, never one per bit ever written.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};

use crate::blob::Blob;
use crate::conflict::Conflict;
use crate::hll;
use crate::num::{Contrib, Displaced, NumReg, Observes};
use crate::vv::{Tag, VersionVector};

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
            Patch::Register { .. } => None,
        }
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
        StrReg { reg, patches: None }
    }
}

impl StrReg {
    pub fn patches(&self) -> &[Patched] {
        self.patches.as_deref().map_or(&[], |p| &p[..])
    }

    /// Patches held: the store folds them into a whole write past a bound.
    pub fn patch_count(&self) -> usize {
        self.patches().len()
    }

    /// Present to readers: a base, increments, or patches.
    pub fn is_live(&self) -> bool {
        self.reg.is_live() || self.patch_count() > 0
    }

    /// Holds nothing at all and can be forgotten.
    pub fn is_empty(&self) -> bool {
        self.reg.is_empty() && self.patch_count() == 0
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
        if patches.is_empty() && !self.has_hll_siblings() {
            return base;
        }
        let mut bytes = base.into_owned();
        for p in self.shown_bit_patches() {
            if let Patch::Bits {
                offset,
                width,
                value,
            } = p.patch
            {
                write_bits(&mut bytes, offset, width, value);
            }
        }
        self.raise_registers(&mut bytes);
        Cow::Owned(bytes)
    }

    /// Bit `bit` as [`render`](Self::render) shows it, without building
    /// the whole string: GETBIT on a large bitmap holding patches.
    pub fn bit(&self, bit: u64) -> bool {
        if self.shows_registers() {
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
                Patch::Bits { .. } => None,
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
    /// is reported, as are concurrent bit patches the write hides.
    pub fn write(
        &mut self,
        key: &[u8],
        val: Blob,
        tag: Tag,
        observed: &[Contrib],
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
        let displaced = self.reg.write(val, tag, observed, ctx);
        // Two HyperLogLogs written concurrently are merged, not displaced.
        displaced
            .into_iter()
            .filter(|d| !(hll::is_hll(&d.winner.val) && hll::is_hll(&d.loser.val)))
            .collect()
    }

    /// Like [`NumReg::remove_if`], dropping the observed patches too.
    pub fn remove_if(
        &mut self,
        observed: &[Contrib],
        ctx: &impl Observes,
        pred: impl Fn(&Tag) -> bool,
    ) {
        self.drop_patches_if(|p| ctx.observed(p.tag.dot) && pred(&p.tag));
        self.reg.remove_if(observed, ctx, pred);
    }

    /// A partial write: `new` patches stamped `tag`, each dropping the
    /// patches it supersedes that its op observed (`vv` or its own op).
    /// Concurrent bit patches it overlaps with another value are reported
    /// for the journal.
    pub fn patch(
        &mut self,
        key: &[u8],
        new: &[Patch],
        tag: Tag,
        ctx: &impl Observes,
        conflicts: &mut Vec<Conflict>,
    ) {
        if new.is_empty() {
            return;
        }
        let list = self.patches.get_or_insert_with(Default::default);
        for p in new {
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
        self.reg
            .join(ctx, &other.reg, other_ctx)
            .into_iter()
            .filter(|d| !(hll::is_hll(&d.winner.val) && hll::is_hll(&d.loser.val)))
            .collect()
    }

    /// True if `pred` holds for the dot of a base, a counter total or a patch.
    pub fn any_patch_dot(&self, pred: &dyn Fn(crate::vv::Dot) -> bool) -> bool {
        self.patches().iter().any(|p| pred(p.tag.dot))
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
        r.write(b"k", Blob::from("\x0f"), tag(1), &[], &none, &mut conflicts);
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
        r.patch(b"k", &patches, tag(2), &seen, &mut conflicts);
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
