//! Hash commands.
//!
//! A hash is a map of fields, and each field is a counting register like a
//! string key: HSET, HSETNX and HMSET write a last-writer-wins value (a
//! concurrent write of the same field loses by HLC and is journaled), while
//! HINCRBY and HINCRBYFLOAT add a counter contribution, so increments made
//! concurrently in two regions add up instead of overwriting each other.
//! HDEL removes only the field versions the writer observed, so a field
//! written concurrently in another region survives (add wins). Commands emit
//! only what changes: HDEL names only fields that exist, and a command that
//! changes nothing emits nothing.

use std::collections::HashSet;

use bytes::Bytes;
use meridian_crdt::num::{parse_float as parse_stored_float, parse_strict_i64};
use meridian_crdt::{Blob, Delta, HashVal, Kind, NumReg, Value};
use meridian_resp::{parse_redis_double, Frame, Protocol};

use super::set::{
    check_repeats, parse_random_count, random_member, random_positions, scan_args, scan_reply,
    scan_walk,
};
use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{
    arity_error, blob, bulk, eq_ignore_case, parse_float, parse_int, syntax_error, wrongtype,
    ERR_OVERFLOW,
};
use crate::notify::{self, HASH};

/// Hashes Redis keeps as a listpack (at most this many fields, none of whose
/// names or values is longer than the byte bound) are returned whole by
/// HSCAN, in insertion order, whatever the cursor and COUNT.
const SCAN_LISTPACK_ENTRIES_MAX: usize = 128;
const SCAN_LISTPACK_VALUE_BYTES_MAX: usize = 64;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("hset", -4, WRITE, (1, 1, 1), hset),
        spec("hsetnx", 4, WRITE, (1, 1, 1), hsetnx),
        spec("hmset", -4, WRITE, (1, 1, 1), hmset),
        spec("hget", 3, READ, (1, 1, 1), hget),
        spec("hmget", -3, READ, (1, 1, 1), hmget),
        spec("hgetall", 2, READ, (1, 1, 1), hgetall),
        spec("hkeys", 2, READ, (1, 1, 1), hkeys),
        spec("hvals", 2, READ, (1, 1, 1), hvals),
        spec("hdel", -3, WRITE, (1, 1, 1), hdel),
        spec("hexists", 3, READ, (1, 1, 1), hexists),
        spec("hlen", 2, READ, (1, 1, 1), hlen),
        spec("hstrlen", 3, READ, (1, 1, 1), hstrlen),
        spec("hincrby", 4, WRITE, (1, 1, 1), hincrby),
        spec("hincrbyfloat", 4, WRITE, (1, 1, 1), hincrbyfloat),
        spec("hscan", -3, READ, (1, 1, 1), hscan),
        spec("hrandfield", -2, READ, (1, 1, 1), hrandfield),
    ]
}

/// The hash at `key`: `Ok(None)` if absent, WRONGTYPE for another type.
fn read<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c HashVal>, Frame> {
    match ctx.db().get_typed(key, Kind::Hash) {
        Err(_) => Err(wrongtype()),
        Ok(None) => Ok(None),
        Ok(Some(entry)) => match entry.value() {
            Value::Hash(h) => Ok(Some(h)),
            _ => Err(wrongtype()),
        },
    }
}

/// A field's value as readers see it.
fn value_of(reg: &NumReg<Blob>) -> Bytes {
    Bytes::copy_from_slice(&reg.render())
}

fn field(hash: Option<&HashVal>, name: &[u8]) -> Option<Bytes> {
    hash.and_then(|h| h.fields.get(name)).map(value_of)
}

fn bulk_or_null(v: Option<Bytes>) -> Frame {
    v.map_or(Frame::Null, Frame::Bulk)
}

/// Writes the field/value pairs of HSET/HMSET (the last value of a field
/// named twice wins, as in Redis); returns how many fields are new.
fn write_pairs(ctx: &mut Ctx<'_>, args: &[Bytes], cmd: &str) -> Result<i64, Frame> {
    if args.len() % 2 == 1 {
        return Err(arity_error(cmd));
    }
    let key = &args[1];
    let hash = read(ctx, key)?;
    let mut seen = HashSet::new();
    let mut fields: Vec<(Blob, Blob)> = args[2..]
        .chunks(2)
        .rev()
        .filter(|pair| seen.insert(&pair[0][..]))
        .map(|pair| (blob(&pair[0]), blob(&pair[1])))
        .collect();
    fields.reverse();
    let added = fields
        .iter()
        .filter(|(f, _)| hash.is_none_or(|h| h.fields.get(f).is_none()))
        .count();
    ctx.db().hset(key, fields);
    // HSET and HMSET both announce `hset`, as in Redis.
    notify::emit(ctx, HASH, "hset", key);
    Ok(added as i64)
}

fn hset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match write_pairs(ctx, args, "hset") {
        Ok(n) => Frame::Integer(n),
        Err(e) => e,
    }
}

fn hmset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match write_pairs(ctx, args, "hmset") {
        Ok(_) => Frame::ok(),
        Err(e) => e,
    }
}

fn hsetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    match read(ctx, key) {
        Ok(h) if h.is_some_and(|h| h.fields.get(&args[2]).is_some()) => Frame::Integer(0),
        Ok(_) => {
            ctx.db().hset(key, vec![(blob(&args[2]), blob(&args[3]))]);
            notify::emit(ctx, HASH, "hset", key);
            Frame::Integer(1)
        }
        Err(e) => e,
    }
}

fn hget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => bulk_or_null(field(h, &args[2])),
        Err(e) => e,
    }
}

fn hmget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Array(
            args[2..]
                .iter()
                .map(|f| bulk_or_null(field(h, f)))
                .collect(),
        ),
        Err(e) => e,
    }
}

fn hgetall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Map(h.map_or_else(Vec::new, |h| {
            h.fields
                .live
                .iter()
                .map(|(f, v)| (bulk(f), Frame::Bulk(value_of(v))))
                .collect()
        })),
        Err(e) => e,
    }
}

fn hkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Array(h.map_or_else(Vec::new, |h| {
            h.fields.live.keys().map(|f| bulk(f)).collect()
        })),
        Err(e) => e,
    }
}

fn hvals(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Array(h.map_or_else(Vec::new, |h| {
            h.fields
                .live
                .values()
                .map(|v| Frame::Bulk(value_of(v)))
                .collect()
        })),
        Err(e) => e,
    }
}

fn hdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let hash = match read(ctx, key) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let mut seen = HashSet::new();
    let gone: Vec<Blob> = args[2..]
        .iter()
        .filter(|f| seen.insert(&f[..]) && hash.is_some_and(|h| h.fields.get(f).is_some()))
        .map(blob)
        .collect();
    let removed = gone.len() as i64;
    if !gone.is_empty() {
        ctx.db().hdel(key, gone);
        notify::emit(ctx, HASH, "hdel", key);
        notify::emit_del_if_emptied(ctx, key);
    }
    Frame::Integer(removed)
}

fn hexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Integer(h.is_some_and(|h| h.fields.get(&args[2]).is_some()) as i64),
        Err(e) => e,
    }
}

fn hlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Integer(h.map_or(0, |h| h.fields.len()) as i64),
        Err(e) => e,
    }
}

fn hstrlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(h) => Frame::Integer(
            h.and_then(|h| h.fields.get(&args[2]))
                .map_or(0, |v| v.render().len()) as i64,
        ),
        Err(e) => e,
    }
}

fn hincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, name) = (&args[1], &args[2]);
    let delta = match parse_int(&args[3]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let current = match read(ctx, key) {
        Ok(h) => field(h, name),
        Err(e) => return e,
    };
    let n = match current {
        None => 0,
        Some(v) => match parse_strict_i64(&v) {
            Some(n) => n,
            None => return Frame::error("ERR hash value is not an integer"),
        },
    };
    let Some(next) = n.checked_add(delta) else {
        return Frame::error(ERR_OVERFLOW);
    };
    ctx.db().hincr(key, blob(name), Delta::Int(delta));
    notify::emit(ctx, HASH, "hincrby", key);
    Frame::Integer(next)
}

fn hincrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, name) = (&args[1], &args[2]);
    let delta = match parse_float(&args[3]) {
        Ok(d) if d.is_finite() => d,
        Ok(_) => return Frame::error("ERR value is NaN or Infinity"),
        Err(e) => return e,
    };
    let current = match read(ctx, key) {
        Ok(h) => field(h, name),
        Err(e) => return e,
    };
    let base = match current {
        None => 0.0,
        // An infinite value reads as a number, and then fails below as
        // Redis fails it.
        Some(v) => match parse_stored_float(&v)
            .or_else(|| parse_redis_double(&v).filter(|f| f.is_infinite()))
        {
            Some(f) => f,
            None => return Frame::error("ERR hash value is not a float"),
        },
    };
    if !(base + delta).is_finite() {
        return Frame::error("ERR increment would produce NaN or Infinity");
    }
    ctx.db().hincr(key, blob(name), Delta::Float(delta));
    notify::emit(ctx, HASH, "hincrbyfloat", key);
    match read(ctx, key) {
        Ok(h) => bulk_or_null(field(h, name)),
        Err(e) => e,
    }
}

/// Whether Redis would keep this hash as a listpack.
fn is_listpack(hash: &HashVal) -> bool {
    hash.fields.len() <= SCAN_LISTPACK_ENTRIES_MAX
        && hash.fields.live.iter().all(|(f, v)| {
            f.len() <= SCAN_LISTPACK_VALUE_BYTES_MAX
                && v.render().len() <= SCAN_LISTPACK_VALUE_BYTES_MAX
        })
}

fn hscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (hash, opts) = match scan_args(ctx, args, read) {
        Ok(Some(found)) => found,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let mut items = Vec::new();
    let mut visit = |f: &Blob, v: &NumReg<Blob>| {
        if opts.matches(f) {
            items.push(bulk(f));
            items.push(Frame::Bulk(value_of(v)));
        }
    };
    let next = if is_listpack(hash) {
        hash.fields.live.iter().for_each(|(f, v)| visit(f, v));
        0
    } else {
        scan_walk(&hash.fields.live, opts.cursor, opts.count, visit)
    };
    scan_reply(next, items)
}

fn hrandfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut count = None;
    let mut with_values = false;
    if args.len() >= 3 {
        let n = match parse_random_count(&args[2]) {
            Ok(n) => n,
            Err(e) => return e,
        };
        if args.len() > 4 || (args.len() == 4 && !eq_ignore_case(&args[3], "withvalues")) {
            return syntax_error();
        }
        with_values = args.len() == 4;
        if with_values && !(-i64::MAX / 2..=i64::MAX / 2).contains(&n) {
            return Frame::error("ERR value is out of range");
        }
        if let Err(e) = check_repeats(n) {
            return e;
        }
        count = Some(n);
    }
    let proto = ctx.proto();
    let hash = match read(ctx, &args[1]) {
        Ok(Some(h)) => h,
        Ok(None) if count.is_some() => return Frame::Array(Vec::new()),
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let live = &hash.fields.live;
    let Some(count) = count else {
        return random_member(live).map_or(Frame::Null, |f| bulk(f));
    };
    let entry_at = |i: usize| {
        live.get_index(i).map(|(f, v)| {
            let value = with_values.then(|| value_of(v));
            (Bytes::copy_from_slice(f), value)
        })
    };
    let positions = random_positions(live.len(), count);
    let picked: Vec<(Bytes, Option<Bytes>)> = if count < 0 {
        // Repeats share one copy of each entry's bytes.
        let all: Vec<_> = (0..live.len()).filter_map(entry_at).collect();
        positions
            .into_iter()
            .filter_map(|i| all.get(i).cloned())
            .collect()
    } else {
        positions.into_iter().filter_map(entry_at).collect()
    };
    let mut out = Vec::with_capacity(picked.len() * if with_values { 2 } else { 1 });
    for (f, v) in picked {
        match v {
            None => out.push(Frame::Bulk(f)),
            Some(v) if proto == Protocol::Resp3 => {
                out.push(Frame::Array(vec![Frame::Bulk(f), Frame::Bulk(v)]))
            }
            Some(v) => {
                out.push(Frame::Bulk(f));
                out.push(Frame::Bulk(v));
            }
        }
    }
    Frame::Array(out)
}
