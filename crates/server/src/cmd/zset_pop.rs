//! ZMPOP: pops from the first non-empty sorted set of several.
//!
//! The write is ZPOPMIN/ZPOPMAX's ([`zset::pop_ends`]): a `zrem` of exactly
//! the members popped, so a member another region adds concurrently
//! survives. The blocking BZMPOP reads the same arguments after its
//! timeout ([`parse_mpop`]).

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, WRITE};
use super::util::{bulk, eq_ignore_case, parse_int, syntax_error};
use super::zset;
use crate::blocking;

/// No fixed key positions, as in Redis's `COMMAND INFO`: the keys move with
/// numkeys.
pub fn specs() -> Vec<Spec> {
    vec![
        spec("zmpop", -4, WRITE, (0, 0, 0), zmpop),
        spec("bzpopmin", -3, WRITE, (1, -2, 1), bzpopmin),
        spec("bzpopmax", -3, WRITE, (1, -2, 1), bzpopmax),
        spec("bzmpop", -5, WRITE, (0, 0, 0), bzmpop),
    ]
}

/// `numkeys key [key ...] MIN|MAX [COUNT count]`.
pub(super) struct Mpop<'a> {
    pub keys: &'a [Bytes],
    /// MAX: pop the highest scores.
    pub max: bool,
    pub count: usize,
}

/// A `long` of at least 1, with `message` as the error for anything else
/// (Redis's `getRangeLongFromObjectOrReply(…, 1, LONG_MAX, …, message)`).
fn positive(arg: &[u8], message: &str) -> Result<usize, Frame> {
    match parse_int(arg) {
        Ok(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(Frame::error(message)),
    }
}

/// Reads the arguments from `args[numkeys_at]` on as Redis's
/// `zmpopGenericCommand` does: numkeys, then MIN or MAX right after the
/// keys (a missing or other word there is a syntax error), then at most
/// one COUNT.
pub(super) fn parse_mpop(args: &[Bytes], numkeys_at: usize) -> Result<Mpop<'_>, Frame> {
    let numkeys = positive(&args[numkeys_at], "ERR numkeys should be greater than 0")?;
    let first = numkeys_at + 1;
    let where_at = first
        .checked_add(numkeys)
        .filter(|at| *at < args.len())
        .ok_or_else(syntax_error)?;
    let max = if eq_ignore_case(&args[where_at], "min") {
        false
    } else if eq_ignore_case(&args[where_at], "max") {
        true
    } else {
        return Err(syntax_error());
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        let more = j + 1 < args.len();
        if count.is_none() && more && eq_ignore_case(&args[j], "count") {
            count = Some(positive(
                &args[j + 1],
                "ERR count should be greater than 0",
            )?);
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(Mpop {
        keys: &args[first..where_at],
        max,
        count: count.unwrap_or(1),
    })
}

/// Replies `[key, [[member, score], …]]`, or a null array when every key is
/// missing. Like Redis, only keys up to the first existing one are
/// type-checked.
fn zmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let req = match parse_mpop(args, 1) {
        Ok(r) => r,
        Err(e) => return e,
    };
    for key in req.keys {
        match zset::read(ctx, key) {
            Ok(None) => continue,
            Ok(Some(_)) => {}
            Err(e) => return e,
        }
        return match zset::pop_ends(ctx, key, req.max, req.count) {
            Ok(popped) => Frame::Array(vec![bulk(key), zset::members_reply(popped, true, true)]),
            Err(e) => e,
        };
    }
    Frame::NullArray
}

/// A sorted set's length, or WRONGTYPE: what the blocking helpers look at.
fn zset_len(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<usize, Frame> {
    Ok(zset::read(ctx, key)?.map_or(0, |z| z.len()))
}

fn check_zsets(ctx: &mut Ctx<'_>, keys: &[Bytes]) -> Result<(), Frame> {
    blocking::check_types(ctx, keys, zset_len)
}

fn available(ctx: &mut Ctx<'_>, key: &[u8]) -> bool {
    blocking::available(ctx, key, zset_len)
}

/// BZPOPMIN/BZPOPMAX: `[key, member, score]`, blocking while every key is
/// empty.
fn bzpop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> Frame {
    let timeout = match blocking::parse_timeout(&args[args.len() - 1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    if let Err(e) = check_zsets(ctx, keys) {
        return e;
    }
    for key in keys {
        if !available(ctx, key) {
            continue;
        }
        return match zset::pop_ends(ctx, key, max, 1) {
            Ok(popped) => match popped.into_iter().next() {
                Some((m, score)) => Frame::Array(vec![bulk(key), bulk(&m), Frame::Double(score)]),
                None => continue,
            },
            Err(e) => e,
        };
    }
    blocking::block(ctx, keys, timeout, Frame::NullArray)
}

fn bzpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    bzpop(ctx, args, false)
}

fn bzpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    bzpop(ctx, args, true)
}

fn bzmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let timeout = match blocking::parse_timeout(&args[1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let req = match parse_mpop(args, 2) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(e) = check_zsets(ctx, req.keys) {
        return e;
    }
    for key in req.keys {
        if !available(ctx, key) {
            continue;
        }
        return match zset::pop_ends(ctx, key, req.max, req.count) {
            Ok(popped) => Frame::Array(vec![bulk(key), zset::members_reply(popped, true, true)]),
            Err(e) => e,
        };
    }
    blocking::block(ctx, req.keys, timeout, Frame::NullArray)
}
