//! Partial writes of strings: [`Db::patch_string`], the one door SETBIT,
//! BITFIELD, PFADD and PFMERGE write through, and over counted fields
//! (BITFIELD INCRBY under OVERFLOW WRAP, [`meridian_crdt::Counted`]) what
//! the store adds to the patches a command wrote so that readers here see
//! what the command computed, and what a fold of such a string carries.

use meridian_crdt::patch::{read_bits, write_bits};
use meridian_crdt::{Blob, Dot, EffectKind, Field, Kind, Patch, StrReg, Value};

use super::{Db, MAX_BIT_PATCHES, MAX_REGISTER_PATCHES};

/// Completes a partial write over a string with counted fields:
/// - each increment is stamped with the incarnation it goes to (`dot` is
///   the op's);
/// - a bit patch overlapping a counted field that shows increments,
///   without covering it, is followed by a patch of the whole field as it
///   then reads: a SETBIT inside a counter is a write of the counter, and
///   resets the increments it observed;
/// - an increment of a field meeting another, overlapping field that
///   shows increments writes that field whole first: overlapping fields
///   otherwise add in a fixed order, not in the order written.
///
/// Each whole field written may overlap further fields in turn. The string
/// is rendered only when a field must be written whole.
pub(super) fn counted_patches(reg: Option<&StrReg>, patches: Vec<Patch>, dot: Dot) -> Vec<Patch> {
    let mut w = Widen {
        reg,
        live: reg.map_or_else(Vec::new, |r| r.shown_fields().collect()),
        out: Vec::with_capacity(patches.len()),
        bytes: None,
    };
    for p in patches {
        match p {
            Patch::Bits { offset, width, .. } => {
                w.push(p);
                w.settle(offset, offset + u64::from(width), None);
            }
            Patch::Incr {
                offset,
                width,
                delta,
                ..
            } => {
                let field = Field { offset, width };
                let (lo, hi) = field.range();
                w.settle(lo, hi, Some(field));
                let start = reg.map_or(dot.seq(), |r| r.field_start(field, dot));
                w.push(Patch::Incr {
                    offset,
                    width,
                    start,
                    delta,
                });
                if !w.live.contains(&field) {
                    w.live.push(field);
                }
            }
            Patch::Register { .. } => w.push(p),
        }
    }
    w.out
}

/// The state of [`counted_patches`].
struct Widen<'a> {
    reg: Option<&'a StrReg>,
    /// Counted fields showing increments after `out`.
    live: Vec<Field>,
    out: Vec<Patch>,
    /// The string as it reads after `out`, once needed.
    bytes: Option<Vec<u8>>,
}

impl Widen<'_> {
    fn push(&mut self, p: Patch) {
        if let Some(b) = self.bytes.as_mut() {
            apply_to(b, &p);
        }
        self.out.push(p);
    }

    /// After bits `lo .. hi` were written, every live field they cover is
    /// reset and every one they only overlap is written whole, in turn.
    /// Before field `except` is incremented, every other live field
    /// overlapping it is written whole.
    fn settle(&mut self, lo: u64, hi: u64, except: Option<Field>) {
        let mut ranges = vec![(lo, hi, except.is_none())];
        while let Some((lo, hi, resets)) = ranges.pop() {
            let covered = |f: &Field| lo <= f.offset && f.range().1 <= hi;
            if resets {
                self.live.retain(|f| Some(*f) == except || !covered(f));
            }
            while let Some(f) = self.live.iter().copied().find(|f| {
                Some(*f) != except && f.offset < hi && lo < f.range().1 && !(resets && covered(f))
            }) {
                let value = self.read(f);
                self.push(Patch::Bits {
                    offset: f.offset,
                    width: f.width,
                    value,
                });
                let (flo, fhi) = f.range();
                ranges.push((flo, fhi, true));
                self.live.retain(|l| *l != f);
            }
        }
    }

    fn read(&mut self, f: Field) -> u64 {
        let (reg, out) = (self.reg, &self.out);
        let b = self.bytes.get_or_insert_with(|| {
            let mut b = reg.map_or_else(Vec::new, |r| r.render().into_owned());
            for p in out {
                apply_to(&mut b, p);
            }
            b
        });
        read_bits(b, f.offset, f.width)
    }
}

/// `bytes` as `p` leaves them where it runs (an increment wraps within
/// its field; registers are not bits and are left out).
fn apply_to(bytes: &mut Vec<u8>, p: &Patch) {
    match *p {
        Patch::Bits {
            offset,
            width,
            value,
        } => write_bits(bytes, offset, width, value),
        Patch::Incr {
            offset,
            width,
            delta,
            ..
        } => {
            let mask = u64::MAX >> (64 - u32::from(width));
            let old = read_bits(bytes, offset, width);
            write_bits(bytes, offset, width, old.wrapping_add(delta) & mask);
        }
        Patch::Register { .. } => {}
    }
}

/// A fold of a string with counted fields: the value is the string
/// without increments ([`StrReg::render_plain`]) with this write's bits
/// over it; the increments and every bit patch touching a counted field
/// (which resets what it covers) stay patches.
pub(super) fn fold_counted(reg: Option<&StrReg>, patches: Vec<Patch>) -> (Vec<Patch>, Blob) {
    let mut value = reg.map_or_else(Vec::new, |r| r.render_plain());
    let mut counted: Vec<Field> =
        reg.map_or_else(Vec::new, |r| r.counted().iter().map(|c| c.field).collect());
    let mut kept = Vec::new();
    for p in patches {
        match p {
            Patch::Bits {
                offset,
                width,
                value: bits,
            } => {
                write_bits(&mut value, offset, width, bits);
                let end = offset + u64::from(width);
                if counted
                    .iter()
                    .any(|f| f.offset < end && offset < f.range().1)
                {
                    kept.push(p);
                }
            }
            Patch::Incr { offset, width, .. } => {
                // The string grows to hold the field, as the increment would.
                let need = (offset + u64::from(width)).div_ceil(8) as usize;
                if value.len() < need {
                    value.resize(need, 0);
                }
                counted.push(Field { offset, width });
                kept.push(p);
            }
            Patch::Register { .. } => {}
        }
    }
    (kept, Blob::from(value))
}

impl Db {
    /// A partial write of a string (SETBIT, BITFIELD, PFADD, PFMERGE):
    /// `patches` as they change the string; `whole` makes the string as it
    /// reads after them here from the string as it reads now (called only
    /// when the write folds). The patches are replicated as such, so concurrent
    /// partial writes in other regions merge with them, until the key
    /// would hold more than its bound; the write is then `whole` instead,
    /// which folds the patches this region observed into the value.
    ///
    /// HyperLogLogs fold early ([`MAX_REGISTER_PATCHES`]): concurrent
    /// HyperLogLog values are merged register by register, so a fold loses
    /// nothing. A folded bitmap is a whole value, last writer wins against
    /// a concurrent fold elsewhere (the loser journaled), so bitmaps fold
    /// only past [`MAX_BIT_PATCHES`], which bounds what a key's patches
    /// cost.
    ///
    /// Increments of counted fields ([`Patch::Incr`], BITFIELD INCRBY
    /// under OVERFLOW WRAP) are stamped here with the counter incarnation
    /// they go to; writes over counted fields are completed as
    /// [`counted_patches`] says. Counted fields do not count
    /// towards the bound (each holds at most one total per region), and a
    /// fold never carries their increments in its value nor resets them:
    /// its value is the string without them and the increments stay beside
    /// it ([`fold_counted`]), so a fold in each of two cut-off
    /// regions loses no increment.
    pub fn patch_string(
        &mut self,
        key: &[u8],
        patches: Vec<Patch>,
        whole: impl FnOnce(Vec<u8>) -> Blob,
    ) {
        let dot = self.next_dot();
        let entry = self.keys.get_any(key);
        let reg = entry
            .and_then(|e| e.typed(Kind::String))
            .and_then(|v| match v {
                Value::Str(r) => Some(r),
                _ => None,
            });
        let held = reg.map_or(0, |r| r.patch_count());
        let obs = entry.map(|e| e.observe()).unwrap_or_default();
        let registers = patches.iter().any(|p| matches!(p, Patch::Register { .. }));
        let counts = reg.is_some_and(|r| !r.counted().is_empty())
            || patches.iter().any(|p| matches!(p, Patch::Incr { .. }));
        let patches = if counts {
            counted_patches(reg, patches, dot)
        } else {
            patches
        };
        let bound = if registers {
            MAX_REGISTER_PATCHES
        } else {
            MAX_BIT_PATCHES
        };
        // Bit patches show over the base only when their tag is newer, and
        // every write of one op shares its tag: once this op has written
        // the key whole (a SET, or a fold as the patches grew), a bit patch
        // of the same op would not show, so the rest of the op writes the
        // key whole too.
        let written_whole_by_this_op = !registers
            && reg
                .and_then(|r| r.visible())
                .is_some_and(|base| base.tag.dot == dot);
        let kind = if written_whole_by_this_op || held + patches.len() > bound {
            let (patches, value) = if counts {
                fold_counted(reg, patches)
            } else {
                let current = reg.map_or_else(Vec::new, |r| r.render().into_owned());
                (Vec::new(), whole(current))
            };
            EffectKind::StrPatch {
                patches,
                fold: Some(value),
                obs,
            }
        } else {
            EffectKind::StrPatch {
                patches,
                fold: None,
                obs,
            }
        };
        self.effect(key, kind);
    }
}
