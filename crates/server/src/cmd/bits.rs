//! SETBIT and GETBIT on strings, as Redis: bit 0 is the most significant
//! bit of the first byte, and a write past the end grows the string with
//! zero bytes.
//!
//! A SETBIT is a partial write ([`meridian_crdt::patch`]): two regions
//! setting different bits of one key at the same time keep both; two
//! setting one bit differently keep the later write's and journal the
//! other.

use bytes::Bytes;
use meridian_crdt::{Blob, Patch};
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::strings::{read, STRING_MAX_BYTES};
use super::util::parse_int;
use crate::notify::{self, STRING};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("setbit", 4, WRITE, (1, 1, 1), setbit),
        spec("getbit", 3, READ, (1, 1, 1), getbit),
    ]
}

/// A bit offset within Redis's 512 MB strings.
fn offset(arg: &[u8]) -> Result<usize, Frame> {
    match parse_int(arg) {
        Ok(n) if n >= 0 && (n as u64) < (STRING_MAX_BYTES as u64) * 8 => Ok(n as usize),
        _ => Err(Frame::error(
            "ERR bit offset is not an integer or out of range",
        )),
    }
}

fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let bit = match offset(&args[2]) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let on = match &args[3][..] {
        b"1" => true,
        b"0" => false,
        _ => return Frame::error("ERR bit is not an integer or out of range"),
    };
    let mut value = match read(ctx, &args[1]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
    let grown = value.len() <= byte;
    if grown {
        value.resize(byte + 1, 0);
    }
    let old = value[byte] & mask != 0;
    if on {
        value[byte] |= mask;
    } else {
        value[byte] &= !mask;
    }
    let patch = Patch::Bits {
        offset: bit as u64,
        width: 1,
        value: u64::from(on),
    };
    ctx.db()
        .patch_string(&args[1], vec![patch], || Blob::from(value.as_slice()));
    // Redis announces a SETBIT that created or grew the string or changed
    // the bit, not one that left it as it was.
    if grown || old != on {
        notify::emit(ctx, STRING, "setbit", &args[1]);
    }
    Frame::Integer(i64::from(old))
}

fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let bit = match offset(&args[2]) {
        Ok(b) => b,
        Err(e) => return e,
    };
    match read(ctx, &args[1]) {
        Ok(v) => {
            let set = v
                .and_then(|v| v.get(bit / 8).copied())
                .is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
            Frame::Integer(i64::from(set))
        }
        Err(e) => e,
    }
}
