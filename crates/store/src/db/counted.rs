//! Partial writes over counted fields (BITFIELD INCRBY under OVERFLOW
//! WRAP, [`meridian_crdt::Counted`]): what the store adds to the patches a
//! command wrote so that readers here see what the command computed, and
//! what a fold of such a string carries.

use meridian_crdt::patch::{read_bits, write_bits};
use meridian_crdt::{Blob, Dot, Field, Patch, StrReg};

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
