//! The bitmap commands on strings, as Redis 7.0: SETBIT, GETBIT, BITCOUNT,
//! BITPOS and BITOP (BITFIELD is in `bitfield.rs`). Bit 0 is the most
//! significant bit of the first byte, and a write past the end grows the
//! string with zero bytes.
//!
//! A SETBIT is a partial write ([`meridian_crdt::patch`]): two regions
//! setting different bits of one key at the same time keep both; two
//! setting one bit differently keep the later write's and journal the
//! other. BITOP computes its destination from the sources as this region
//! holds them and writes it whole, as SET does.

use bytes::Bytes;
use meridian_crdt::patch::write_bits;
use meridian_crdt::{Blob, Kind, Patch, Value};
use meridian_resp::{parse_redis_int, Frame};

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::strings::STRING_MAX_BYTES;
use super::util::{eq_ignore_case, parse_int, syntax_error, wrongtype};
use crate::notify::{self, GENERIC, STRING};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("setbit", 4, WRITE, (1, 1, 1), setbit),
        spec("getbit", 3, READ, (1, 1, 1), getbit),
        spec("bitcount", -2, READ, (1, 1, 1), bitcount),
        spec("bitpos", -3, READ, (1, 1, 1), bitpos),
        spec("bitop", -4, WRITE, (2, -1, 1), bitop),
    ]
}

const ERR_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// A bit offset within Redis's 512 MB strings. With `field_bits` (BITFIELD),
/// `#n` means the n-th field of that width: `n * field_bits`.
pub(super) fn bit_offset(arg: &[u8], field_bits: Option<u32>) -> Result<u64, Frame> {
    let (digits, times) = match (arg.split_first(), field_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    // Redis multiplies without checking, so an `#n` that overflows wraps
    // around, to an error or to a small offset, as it does there.
    match parse_redis_int(digits).map(|n| n.wrapping_mul(times)) {
        Some(n) if n >= 0 && (n as u64) < (STRING_MAX_BYTES as u64) * 8 => Ok(n as u64),
        _ => Err(Frame::error(ERR_OFFSET)),
    }
}

/// Answers from the string at `key` as it reads now (`None` if absent),
/// without copying it; WRONGTYPE if the key holds another type.
pub(super) fn with_string(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    answer: impl FnOnce(Option<&[u8]>) -> Result<Frame, Frame>,
) -> Frame {
    let reply = match ctx.db().get_typed(key, Kind::String) {
        Err(_) => return wrongtype(),
        Ok(None) => answer(None),
        Ok(Some(entry)) => match entry.value() {
            Value::Str(r) => answer(Some(&r.render())),
            _ => return wrongtype(),
        },
    };
    reply.unwrap_or_else(|e| e)
}

fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let bit = match bit_offset(&args[2], None) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let on = match &args[3][..] {
        b"1" => true,
        b"0" => false,
        _ => return Frame::error("ERR bit is not an integer or out of range"),
    };
    // The bit and the length as readers see them, without building the
    // whole string: a large bitmap holds patches most of the time.
    let (old, len) = match ctx.db().get_typed(&args[1], Kind::String) {
        Err(_) => return wrongtype(),
        Ok(None) => (false, 0),
        Ok(Some(entry)) => match entry.value() {
            Value::Str(r) => (r.bit(bit), r.len()),
            _ => return wrongtype(),
        },
    };
    let grown = len as u64 <= bit / 8;
    // Redis writes (and announces) a SETBIT that created or grew the
    // string or changed the bit, not one that left it as it was.
    if grown || old != on {
        let patch = Patch::Bits {
            offset: bit,
            width: 1,
            value: u64::from(on),
        };
        ctx.db().patch_string(&args[1], vec![patch], |mut value| {
            write_bits(&mut value, bit, 1, u64::from(on));
            Blob::from(value)
        });
        notify::emit(ctx, STRING, "setbit", &args[1]);
    }
    Frame::Integer(i64::from(old))
}

fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let bit = match bit_offset(&args[2], None) {
        Ok(b) => b,
        Err(e) => return e,
    };
    match ctx.db().get_typed(&args[1], Kind::String) {
        Err(_) => wrongtype(),
        Ok(None) => Frame::Integer(0),
        Ok(Some(entry)) => match entry.value() {
            Value::Str(r) => Frame::Integer(i64::from(r.bit(bit))),
            _ => wrongtype(),
        },
    }
}

/// Whether BITCOUNT's and BITPOS's `start` and `end` count bytes or bits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Byte,
    Bit,
}

fn unit(arg: &[u8]) -> Result<Unit, Frame> {
    if eq_ignore_case(arg, "byte") {
        Ok(Unit::Byte)
    } else if eq_ignore_case(arg, "bit") {
        Ok(Unit::Bit)
    } else {
        Err(syntax_error())
    }
}

/// The bits `first..=last` that `start` and `end` name in a string of
/// `len` bytes, Redis's way: negative counts from the end, then both are
/// clamped to the string; `None` when that leaves nothing.
fn bit_range(start: i64, end: i64, unit: Unit, len: usize) -> Option<(u64, u64)> {
    let total = match unit {
        Unit::Byte => len as i64,
        Unit::Bit => len as i64 * 8,
    };
    let from_end = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(total - 1));
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(match unit {
        Unit::Byte => (start * 8, end * 8 + 7),
        Unit::Bit => (start, end),
    })
}

/// The masks of the bits of `first`'s byte from `first` on and of `last`'s
/// byte up to `last`.
fn edge_masks(first: u64, last: u64) -> (u8, u8) {
    (0xff >> (first % 8), 0xff << (7 - last % 8))
}

/// The bits set in `bytes` among bits `first..=last` (within the string).
fn count_ones(bytes: &[u8], first: u64, last: u64) -> u64 {
    let (a, b) = ((first / 8) as usize, (last / 8) as usize);
    let (head, tail) = edge_masks(first, last);
    let ones = |byte: u8| u64::from(byte.count_ones());
    if a == b {
        return ones(bytes[a] & head & tail);
    }
    let mut words = bytes[a + 1..b].chunks_exact(8);
    let middle: u64 = words
        .by_ref()
        .map(|w| u64::from(u64::from_ne_bytes(w.try_into().expect("8 bytes")).count_ones()))
        .sum::<u64>()
        + words.remainder().iter().map(|&x| ones(x)).sum::<u64>();
    ones(bytes[a] & head) + middle + ones(bytes[b] & tail)
}

/// The first bit equal to `bit` among bits `first..=last` (within the
/// string).
fn find_bit(bytes: &[u8], first: u64, last: u64, bit: bool) -> Option<u64> {
    let (a, b) = ((first / 8) as usize, (last / 8) as usize);
    let (head, tail) = edge_masks(first, last);
    // Looking for a 0 is looking for a 1 in the complement.
    let flip = if bit { 0 } else { 0xff };
    let hit = |i: usize, mask: u8| {
        let found = (bytes[i] ^ flip) & mask;
        (found != 0).then(|| i as u64 * 8 + u64::from(found.leading_zeros()))
    };
    if a == b {
        return hit(a, head & tail);
    }
    hit(a, head)
        .or_else(|| {
            let i = bytes[a + 1..b].iter().position(|&x| x != flip)?;
            hit(a + 1 + i, 0xff)
        })
        .or_else(|| hit(b, tail))
}

/// BITCOUNT key [start end [BYTE|BIT]]. Redis 7.0 looks the key up before
/// it reads the range, so a missing key counts 0 whatever follows.
fn bitcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    with_string(ctx, &args[1], |s| {
        let Some(s) = s else {
            return Ok(Frame::Integer(0));
        };
        let range = match args.len() {
            2 => bit_range(0, -1, Unit::Byte, s.len()),
            4 | 5 => {
                let (start, end) = (parse_int(&args[2])?, parse_int(&args[3])?);
                // Redis counts nothing for two negative indexes in reverse
                // order (before clamping would make them meet), and says
                // so before it reads the unit.
                if start < 0 && end < 0 && start > end {
                    return Ok(Frame::Integer(0));
                }
                let unit = match args.get(4) {
                    Some(u) => unit(u)?,
                    None => Unit::Byte,
                };
                bit_range(start, end, unit, s.len())
            }
            _ => return Err(syntax_error()),
        };
        let count = range.map_or(0, |(first, last)| count_ones(s, first, last));
        Ok(Frame::Integer(count as i64))
    })
}

/// BITPOS key bit [start [end [BYTE|BIT]]]: the first bit equal to `bit`
/// in the range. With no 0 in it, a range without an end answers the bit
/// just past the string (its zero padding), one with an end -1.
fn bitpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let bit = match parse_int(&args[2]) {
        Ok(0) => false,
        Ok(1) => true,
        Ok(_) => return Frame::error("ERR The bit argument must be 1 or 0."),
        Err(e) => return e,
    };
    with_string(ctx, &args[1], |s| {
        let Some(s) = s else {
            return Ok(Frame::Integer(if bit { -1 } else { 0 }));
        };
        let (start, end, unit) = match args.len() {
            3 => (0, None, Unit::Byte),
            4..=6 => {
                let start = parse_int(&args[3])?;
                let unit = match args.get(5) {
                    Some(u) => unit(u)?,
                    None => Unit::Byte,
                };
                let end = args.get(4).map(|e| parse_int(e)).transpose()?;
                (start, end, unit)
            }
            _ => return Err(syntax_error()),
        };
        let Some((first, last)) = bit_range(start, end.unwrap_or(-1), unit, s.len()) else {
            return Ok(Frame::Integer(-1));
        };
        let pos = match find_bit(s, first, last, bit) {
            Some(p) => p as i64,
            None if bit || end.is_some() => -1,
            None => last as i64 + 1,
        };
        Ok(Frame::Integer(pos))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP op dest src...: `dest` becomes the sources combined byte by byte,
/// the shorter ones padded with zeros, written whole (any TTL goes, as
/// Redis's SET drops it); an empty result deletes `dest`. Answers the
/// result's length.
fn bitop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let op = match &args[1] {
        a if eq_ignore_case(a, "and") => BitOp::And,
        a if eq_ignore_case(a, "or") => BitOp::Or,
        a if eq_ignore_case(a, "xor") => BitOp::Xor,
        a if eq_ignore_case(a, "not") => BitOp::Not,
        _ => return syntax_error(),
    };
    if op == BitOp::Not && args.len() != 4 {
        return Frame::error("ERR BITOP NOT must be called with a single source key.");
    }
    let (dest, sources) = (&args[2], &args[3..]);
    let result = match combine(ctx, op, sources) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let len = result.len();
    if len > 0 {
        ctx.db().set_string(dest, Blob::from(result), false);
        notify::emit(ctx, STRING, "set", dest);
    } else if ctx.db().del(dest) {
        notify::emit(ctx, GENERIC, "del", dest);
    }
    Frame::Integer(len as i64)
}

/// The sources combined by `op`, read in place (a missing key is an empty
/// string); WRONGTYPE if one holds another type.
fn combine(ctx: &mut Ctx<'_>, op: BitOp, sources: &[Bytes]) -> Result<Vec<u8>, Frame> {
    // Expire what is due first, so the reads below, which borrow every
    // source at once, see what a lookup would.
    for key in sources {
        ctx.db().get(key);
    }
    let db = ctx.store.db();
    let mut views = Vec::with_capacity(sources.len());
    for key in sources {
        views.push(match db.peek(key).map(|e| e.value()) {
            None => None,
            Some(Value::Str(r)) => Some(r.render()),
            Some(_) => return Err(wrongtype()),
        });
    }
    let bytes = |i: usize| views[i].as_deref().unwrap_or_default();
    let len = (0..views.len()).map(|i| bytes(i).len()).max().unwrap_or(0);
    let mut out = bytes(0).to_vec();
    out.resize(len, 0);
    for i in 1..views.len() {
        let src = bytes(i);
        match op {
            BitOp::And => {
                out.iter_mut().zip(src).for_each(|(o, s)| *o &= s);
                out[src.len()..].fill(0);
            }
            BitOp::Or => out.iter_mut().zip(src).for_each(|(o, s)| *o |= s),
            BitOp::Xor => out.iter_mut().zip(src).for_each(|(o, s)| *o ^= s),
            BitOp::Not => {}
        }
    }
    if op == BitOp::Not {
        out.iter_mut().for_each(|o| *o = !*o);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit by bit, as a reference for the byte-wise scans.
    fn bits_of(bytes: &[u8]) -> Vec<bool> {
        (0..bytes.len() * 8)
            .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
            .collect()
    }

    #[test]
    fn counts_and_finds_bits_as_a_bit_by_bit_scan_does() {
        let bytes: Vec<u8> = (0u32..40).map(|i| (i * 37 % 251) as u8).collect();
        let bits = bits_of(&bytes);
        let total = bits.len() as u64;
        for first in 0..total {
            for last in first..total {
                let range = &bits[first as usize..=last as usize];
                let ones = range.iter().filter(|b| **b).count() as u64;
                assert_eq!(count_ones(&bytes, first, last), ones, "{first}..={last}");
                for bit in [false, true] {
                    let want = range
                        .iter()
                        .position(|b| *b == bit)
                        .map(|p| first + p as u64);
                    assert_eq!(find_bit(&bytes, first, last, bit), want);
                }
            }
        }
    }

    #[test]
    fn ranges_count_from_the_end_and_clamp_to_the_string() {
        assert_eq!(bit_range(0, -1, Unit::Byte, 6), Some((0, 47)));
        assert_eq!(bit_range(-100, -90, Unit::Byte, 6), Some((0, 7)));
        assert_eq!(bit_range(1, 1000, Unit::Bit, 2), Some((1, 15)));
        assert_eq!(bit_range(5, 2, Unit::Byte, 6), None);
        assert_eq!(bit_range(0, -1, Unit::Byte, 0), None);
        assert_eq!(bit_range(i64::MIN, i64::MIN, Unit::Bit, 6), Some((0, 0)));
    }

    #[test]
    fn hash_offsets_count_fields_and_wrap_as_redis_does() {
        assert_eq!(bit_offset(b"#3", Some(8)), Ok(24));
        assert_eq!(bit_offset(b"#3", None), Err(Frame::error(ERR_OFFSET)));
        // 2305843009213693953 * 8 overflows to 8.
        assert_eq!(bit_offset(b"#2305843009213693953", Some(8)), Ok(8));
        assert_eq!(
            bit_offset(b"4294967296", None),
            Err(Frame::error(ERR_OFFSET))
        );
        assert_eq!(bit_offset(b"4294967295", None), Ok(4294967295));
        assert_eq!(bit_offset(b"-0", None), Err(Frame::error(ERR_OFFSET)));
    }
}
