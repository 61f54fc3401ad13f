//! BITFIELD and BITFIELD_RO, as Redis 7.0: integers of 1 to 64 bits
//! (unsigned ones up to 63, so that every value fits a RESP integer) read
//! and written at any bit offset of a string, with SETBIT's bit order.
//!
//! Merging: each field a SET writes is one bit patch of the field's offset
//! and width holding its new value ([`Patch::Bits`]), so two regions
//! writing one field concurrently keep the later write's whole field, never
//! a mix of the two, and fields written elsewhere survive. An INCRBY under
//! OVERFLOW WRAP (the default) is an increment of the field's counter
//! ([`Patch::Incr`]): increments of one field (same offset and width,
//! signed or not) made concurrently in several regions all count, modulo
//! 2^width, as INCRBY on a string counter does. Under OVERFLOW SAT or FAIL
//! the result depends on the order increments are made in, so the INCRBY
//! writes the value it computed here as a bit patch, last writer wins (the
//! other journaled). Either way the reply is the value computed here.

use bytes::Bytes;
use meridian_crdt::patch::write_bits;
use meridian_crdt::{Blob, Patch};
use meridian_resp::{parse_redis_int, Frame};

use super::bits::{bit_offset, with_string};
use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::strings::read;
use super::util::{eq_ignore_case, parse_int, syntax_error};
use crate::notify::{self, STRING};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("bitfield", -2, WRITE, (1, 1, 1), bitfield),
        spec("bitfield_ro", -2, READ, (1, 1, 1), bitfield_ro),
    ]
}

const ERR_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// What an INCRBY or SET does with a result the field cannot hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// Keep the low bits (two's complement for signed fields).
    Wrap,
    /// Stop at the largest or smallest value the field holds.
    Sat,
    /// Write nothing and answer nil.
    Fail,
}

#[derive(Clone, Copy)]
enum Action {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One GET, SET or INCRBY, with the OVERFLOW in force where it stands.
#[derive(Clone, Copy)]
struct FieldOp {
    action: Action,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

impl FieldOp {
    fn writes(&self) -> bool {
        !matches!(self.action, Action::Get)
    }

    /// The bit past the field's last.
    fn end(&self) -> u64 {
        self.offset + u64::from(self.bits)
    }
}

/// `i8`, `u16`…: signed or not, and the width in bits.
fn field_type(arg: &[u8]) -> Result<(bool, u32), Frame> {
    let (signed, digits) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(Frame::error(ERR_TYPE)),
    };
    let max = if signed { 64 } else { 63 };
    match parse_redis_int(digits) {
        Some(n) if (1..=max).contains(&n) => Ok((signed, n as u32)),
        _ => Err(Frame::error(ERR_TYPE)),
    }
}

/// The subcommands after the key, checked whole before anything runs.
fn parse(args: &[Bytes]) -> Result<Vec<FieldOp>, Frame> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let rest = args.len() - j - 1;
        let name = &args[j];
        // A SET or INCRBY is made from the value that follows.
        let make: Option<fn(i64) -> Action> = if eq_ignore_case(name, "get") && rest >= 2 {
            None
        } else if eq_ignore_case(name, "set") && rest >= 3 {
            Some(Action::Set)
        } else if eq_ignore_case(name, "incrby") && rest >= 3 {
            Some(Action::IncrBy)
        } else if eq_ignore_case(name, "overflow") && rest >= 1 {
            let kind = &args[j + 1];
            overflow = if eq_ignore_case(kind, "wrap") {
                Overflow::Wrap
            } else if eq_ignore_case(kind, "sat") {
                Overflow::Sat
            } else if eq_ignore_case(kind, "fail") {
                Overflow::Fail
            } else {
                return Err(Frame::error("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(syntax_error());
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(&args[j + 2], Some(bits))?;
        let action = match make {
            None => Action::Get,
            Some(make) => make(parse_int(&args[j + 3])?),
        };
        ops.push(FieldOp {
            action,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if make.is_some() { 4 } else { 3 };
    }
    Ok(ops)
}

/// The field's bits as an unsigned number (bits past the string read 0).
fn get_bits(bytes: &[u8], offset: u64, bits: u32) -> u64 {
    (offset..offset + u64::from(bits)).fold(0, |acc, bit| {
        let on = usize::try_from(bit / 8)
            .ok()
            .and_then(|i| bytes.get(i))
            .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
        (acc << 1) | u64::from(on)
    })
}

/// The field's value: sign-extended when signed.
fn get_field(bytes: &[u8], op: &FieldOp) -> i64 {
    let raw = get_bits(bytes, op.offset, op.bits);
    if op.signed && op.bits < 64 && raw >> (op.bits - 1) & 1 == 1 {
        (raw | (u64::MAX << op.bits)) as i64
    } else {
        raw as i64
    }
}

/// The smallest and largest values a field holds.
fn limits(signed: bool, bits: u32) -> (i128, i128) {
    if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// `value + incr` as the field stores it under `overflow`; `None` when it
/// overflows and the policy is FAIL. A SET is `incr` 0; its value is read
/// as Redis reads it, so a negative value set in an unsigned field is a
/// huge number that overflows upwards.
fn add(op: &FieldOp, value: i64, incr: i64) -> Option<i64> {
    let wide = if op.signed {
        i128::from(value)
    } else {
        i128::from(value as u64)
    };
    let sum = wide + i128::from(incr);
    let (min, max) = limits(op.signed, op.bits);
    // Redis computes a signed field's headroom `max - value` in 64 bits: a
    // value set far below a narrow field's minimum wraps it negative and
    // counts as an overflow upwards, so SAT answers the maximum.
    let up = sum > max || (op.signed && op.bits < 64 && incr > (max as i64).wrapping_sub(value));
    if !up && sum >= min {
        return Some(sum as i64);
    }
    match op.overflow {
        Overflow::Fail => None,
        Overflow::Sat => Some((if up { max } else { min }) as i64),
        Overflow::Wrap => Some(((sum - min).rem_euclid(max - min + 1) + min) as i64),
    }
}

/// The field's low `bits` bits, as a patch carries them.
fn low_bits(value: i64, bits: u32) -> u64 {
    if bits == 64 {
        value as u64
    } else {
        value as u64 & ((1u64 << bits) - 1)
    }
}

fn bitfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run(ctx, args, false)
}

fn bitfield_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    run(ctx, args, true)
}

fn run(ctx: &mut Ctx<'_>, args: &[Bytes], read_only: bool) -> Frame {
    let ops = match parse(args) {
        Ok(ops) => ops,
        Err(e) => return e,
    };
    if !ops.iter().any(FieldOp::writes) {
        return with_string(ctx, &args[1], |s| {
            let s = s.unwrap_or_default();
            Ok(Frame::Array(
                ops.iter()
                    .map(|op| Frame::Integer(get_field(s, op)))
                    .collect(),
            ))
        });
    }
    if read_only {
        return Frame::error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    match read(ctx, &args[1]) {
        Ok(value) => write(ctx, &args[1], value.unwrap_or_default(), &ops),
        Err(e) => e,
    }
}

/// Runs a BITFIELD that writes on `value`, the string as it reads now.
/// Redis first grows the string to hold every field written, even those
/// that will fail, and announces `setbit` only when a field changed or the
/// string grew under one that did not fail.
fn write(ctx: &mut Ctx<'_>, key: &[u8], mut value: Vec<u8>, ops: &[FieldOp]) -> Frame {
    let need = ops
        .iter()
        .filter(|op| op.writes())
        .map(|op| op.end().div_ceil(8) as usize)
        .max()
        .unwrap_or(0);
    let grown = value.len() < need;
    if grown {
        value.resize(need, 0);
    }
    let mut replies = Vec::with_capacity(ops.len());
    let mut patches = Vec::new();
    // The bit past the farthest field written.
    let mut written_end = 0;
    let mut changed = false;
    for op in ops {
        let old = get_field(&value, op);
        let (new, reply) = match op.action {
            Action::Get => {
                replies.push(Frame::Integer(old));
                continue;
            }
            Action::Set(v) => (add(op, v, 0), old),
            Action::IncrBy(by) => {
                let new = add(op, old, by);
                (new, new.unwrap_or(0))
            }
        };
        let Some(new) = new else {
            replies.push(Frame::Null);
            continue;
        };
        replies.push(Frame::Integer(reply));
        let bits = low_bits(new, op.bits);
        write_bits(&mut value, op.offset, op.bits as u8, bits);
        patches.push(match (op.action, op.overflow) {
            (Action::IncrBy(by), Overflow::Wrap) => Patch::Incr {
                offset: op.offset,
                width: op.bits as u8,
                // The store stamps the counter's incarnation.
                start: 0,
                delta: low_bits(by, op.bits),
            },
            _ => Patch::Bits {
                offset: op.offset,
                width: op.bits as u8,
                value: bits,
            },
        });
        written_end = written_end.max(op.end());
        changed |= grown || old != new;
    }
    if changed || grown {
        // The string grew past every field written when the farthest ones
        // failed: a zero bit at its new end carries the growth, as Redis
        // keeps it.
        if grown && written_end.div_ceil(8) < value.len() as u64 {
            patches.push(Patch::Bits {
                offset: value.len() as u64 * 8 - 1,
                width: 1,
                value: 0,
            });
        }
        ctx.db().patch_string(key, patches, |_| Blob::from(value));
    }
    if changed {
        notify::emit(ctx, STRING, "setbit", key);
    }
    Frame::Array(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(signed: bool, bits: u32, overflow: Overflow) -> FieldOp {
        FieldOp {
            action: Action::Get,
            signed,
            bits,
            offset: 0,
            overflow,
        }
    }

    #[test]
    fn overflow_wraps_saturates_or_fails() {
        let u8w = op(false, 8, Overflow::Wrap);
        assert_eq!(add(&u8w, 100, 257), Some(101));
        assert_eq!(add(&u8w, 100, -101), Some(255));
        assert_eq!(add(&u8w, -1, 0), Some(255));
        let u8s = op(false, 8, Overflow::Sat);
        assert_eq!(add(&u8s, 100, 257), Some(255));
        assert_eq!(add(&u8s, 100, -255), Some(0));
        // A negative value set in an unsigned field overflows upwards.
        assert_eq!(add(&u8s, -5, 0), Some(255));
        let i8s = op(true, 8, Overflow::Sat);
        assert_eq!(add(&i8s, 100, 257), Some(127));
        assert_eq!(add(&i8s, 100, -255), Some(-128));
        let i8w = op(true, 8, Overflow::Wrap);
        assert_eq!(add(&i8w, 100, 257), Some(101));
        assert_eq!(add(&i8w, 0, 99900), Some(60));
        let i64w = op(true, 64, Overflow::Wrap);
        assert_eq!(add(&i64w, i64::MAX, 1), Some(i64::MIN));
        let i64f = op(true, 64, Overflow::Fail);
        assert_eq!(add(&i64f, i64::MIN, -1), None);
        // Below the minimum: SAT gives the minimum, unless the headroom
        // Redis computes in 64 bits wraps, as for an i63 here.
        let i62s = op(true, 62, Overflow::Sat);
        assert_eq!(add(&i62s, -(1 << 62) - 1, 0), Some(-(1 << 61)));
        let i63s = op(true, 63, Overflow::Sat);
        assert_eq!(add(&i63s, -(1 << 62) - 1, 0), Some((1 << 62) - 1));
        assert_eq!(
            add(&op(false, 63, Overflow::Fail), i64::MAX, 0),
            Some(i64::MAX)
        );
    }

    #[test]
    fn fields_read_most_significant_bit_first_and_sign_extend() {
        let bytes = [0b0000_0001, 0b0111_0000];
        let mut f = op(false, 5, Overflow::Wrap);
        f.offset = 7;
        assert_eq!(get_field(&bytes, &f), 23);
        f.signed = true;
        assert_eq!(get_field(&bytes, &f), -9);
        f.offset = 100;
        assert_eq!(get_field(&bytes, &f), 0);
    }

    #[test]
    fn types_are_checked_as_redis_checks_them() {
        assert_eq!(field_type(b"i64"), Ok((true, 64)));
        assert_eq!(field_type(b"u63"), Ok((false, 63)));
        for bad in [&b"u64"[..], b"i65", b"i0", b"I8", b"u08", b"u", b"", b"x8"] {
            assert_eq!(field_type(bad), Err(Frame::error(ERR_TYPE)));
        }
    }
}
