//! String and counter commands.
//!
//! Writes that replace a value (SET, APPEND, SETRANGE, GETSET…) become one
//! last-writer-wins write of the whole new value. INCR and friends become
//! counter contributions, so increments made concurrently in two regions add
//! up instead of overwriting each other.

use bytes::Bytes;
use meridian_crdt::{Blob, Delta, Kind, Value};
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{
    arity_error, eq_ignore_case, not_integer, parse_int, syntax_error, wrongtype, ERR_NOT_FLOAT,
    ERR_OVERFLOW,
};
use crate::notify::{self, EXPIRED, GENERIC, STRING};

/// Largest string value (Redis's default `proto-max-bulk-len`).
pub const STRING_MAX_BYTES: usize = 512 * 1024 * 1024;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("get", 2, READ, (1, 1, 1), get),
        spec("set", -3, WRITE, (1, 1, 1), set),
        spec("setnx", 3, WRITE, (1, 1, 1), setnx),
        spec("setex", 4, WRITE, (1, 1, 1), setex),
        spec("psetex", 4, WRITE, (1, 1, 1), psetex),
        spec("getset", 3, WRITE, (1, 1, 1), getset),
        spec("getdel", 2, WRITE, (1, 1, 1), getdel),
        spec("getex", -2, WRITE, (1, 1, 1), getex),
        spec("mget", -2, READ, (1, -1, 1), mget),
        spec("mset", -3, WRITE, (1, -1, 2), mset),
        spec("msetnx", -3, WRITE, (1, -1, 2), msetnx),
        spec("append", 3, WRITE, (1, 1, 1), append),
        spec("strlen", 2, READ, (1, 1, 1), strlen),
        spec("getrange", 4, READ, (1, 1, 1), getrange),
        spec("substr", 4, READ, (1, 1, 1), getrange),
        spec("setrange", 4, WRITE, (1, 1, 1), setrange),
        spec("incr", 2, WRITE, (1, 1, 1), incr),
        spec("decr", 2, WRITE, (1, 1, 1), decr),
        spec("incrby", 3, WRITE, (1, 1, 1), incrby),
        spec("decrby", 3, WRITE, (1, 1, 1), decrby),
        spec("incrbyfloat", 3, WRITE, (1, 1, 1), incrbyfloat),
    ]
}

/// The string at `key`: `Ok(None)` if absent, an error frame if another type.
pub fn read(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Vec<u8>>, Frame> {
    match ctx.db().get_typed(key, Kind::String) {
        Err(_) => Err(wrongtype()),
        Ok(None) => Ok(None),
        Ok(Some(entry)) => match entry.value() {
            Value::Str(r) => Ok(Some(r.render().into_owned())),
            _ => Err(wrongtype()),
        },
    }
}

fn bulk_or_null(v: Option<Vec<u8>>) -> Frame {
    v.map_or(Frame::Null, |v| Frame::Bulk(Bytes::from(v)))
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(v) => bulk_or_null(v),
        Err(e) => e,
    }
}

/// An expiry as given to SET/GETEX: relative or absolute, in s or ms.
#[derive(Clone, Copy)]
enum ExpireArg {
    Ex(i64),
    Px(i64),
    ExAt(i64),
    PxAt(i64),
}

/// `EX|PX|EXAT|PXAT n` at `args[i]`, if that is what stands there.
fn expire_option(args: &[Bytes], i: usize) -> Option<Result<ExpireArg, Frame>> {
    let word = &args[i];
    let make: fn(i64) -> ExpireArg = if eq_ignore_case(word, "ex") {
        ExpireArg::Ex
    } else if eq_ignore_case(word, "px") {
        ExpireArg::Px
    } else if eq_ignore_case(word, "exat") {
        ExpireArg::ExAt
    } else if eq_ignore_case(word, "pxat") {
        ExpireArg::PxAt
    } else {
        return None;
    };
    let n = args.get(i + 1)?;
    Some(parse_int(n).map(make))
}

/// The absolute deadline in ms, or Redis's "invalid expire time" error.
fn deadline_ms(now_ms: u64, arg: ExpireArg, cmd: &str) -> Result<u64, Frame> {
    let invalid = || Frame::error(format!("ERR invalid expire time in '{cmd}' command"));
    let (value, scale, absolute) = match arg {
        ExpireArg::Ex(v) => (v, 1000, false),
        ExpireArg::Px(v) => (v, 1, false),
        ExpireArg::ExAt(v) => (v, 1000, true),
        ExpireArg::PxAt(v) => (v, 1, true),
    };
    if value <= 0 {
        return Err(invalid());
    }
    let ms = value.checked_mul(scale).ok_or_else(invalid)?;
    let at = if absolute {
        Some(ms)
    } else {
        ms.checked_add(now_ms as i64)
    };
    at.filter(|v| *v > 0).map(|v| v as u64).ok_or_else(invalid)
}

/// Writes a string, then its expiry: with a deadline already past the key
/// is deleted. Redis announces `set` and `expire`, and `expired` once it
/// reclaims the key; here the key is gone at once, and so is announced.
fn write_string(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    value: &[u8],
    keep_ttl: bool,
    deadline: Option<u64>,
) {
    // Redis's write looks the key up first, which expires it if its
    // deadline passed: `expired`, then `new`, then `set`.
    ctx.db().get(key);
    ctx.db().set_string(key, Blob::from(value), keep_ttl);
    notify::emit(ctx, STRING, "set", key);
    if let Some(d) = deadline {
        if d <= ctx.db().now_ms() {
            ctx.db().del(key);
            notify::emit(ctx, GENERIC, "expire", key);
            notify::emit(ctx, EXPIRED, "expired", key);
        } else {
            ctx.db().set_ttl(key, Some(d));
            notify::emit(ctx, GENERIC, "expire", key);
        }
    }
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get_old, mut keep_ttl) = (false, false, false, false);
    let mut expire: Option<ExpireArg> = None;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        if eq_ignore_case(a, "nx") && !xx {
            nx = true;
        } else if eq_ignore_case(a, "xx") && !nx {
            xx = true;
        } else if eq_ignore_case(a, "get") {
            get_old = true;
        } else if eq_ignore_case(a, "keepttl") && expire.is_none() {
            keep_ttl = true;
        } else if let Some(parsed) = (!keep_ttl && expire.is_none())
            .then(|| expire_option(args, i))
            .flatten()
        {
            match parsed {
                Ok(e) => expire = Some(e),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let deadline = match expire.map(|e| deadline_ms(ctx.db().now_ms(), e, "set")) {
        Some(Err(e)) => return e,
        Some(Ok(d)) => Some(d),
        None => None,
    };
    let old = if get_old {
        match read(ctx, key) {
            Ok(v) => Some(v),
            Err(e) => return e,
        }
    } else {
        None
    };
    // The lookup also expires a key past its deadline, which KEEPTTL must
    // see happen first (`write_string` looks it up in any case).
    let exists = (nx || xx || keep_ttl) && ctx.db().get(key).is_some();
    if (nx && exists) || (xx && !exists) {
        return match old {
            Some(v) => bulk_or_null(v),
            None => Frame::Null,
        };
    }
    write_string(ctx, key, value, keep_ttl, deadline);
    match old {
        Some(v) => bulk_or_null(v),
        None => Frame::ok(),
    }
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if ctx.db().get(&args[1]).is_some() {
        return Frame::Integer(0);
    }
    write_string(ctx, &args[1], &args[2], false, None);
    Frame::Integer(1)
}

fn setex_with(ctx: &mut Ctx<'_>, args: &[Bytes], millis: bool, cmd: &str) -> Frame {
    let n = match parse_int(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let arg = if millis {
        ExpireArg::Px(n)
    } else {
        ExpireArg::Ex(n)
    };
    match deadline_ms(ctx.db().now_ms(), arg, cmd) {
        Ok(d) => {
            write_string(ctx, &args[1], &args[3], false, Some(d));
            Frame::ok()
        }
        Err(e) => e,
    }
}

fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    setex_with(ctx, args, false, "setex")
}

fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    setex_with(ctx, args, true, "psetex")
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let old = match read(ctx, &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    write_string(ctx, &args[1], &args[2], false, None);
    bulk_or_null(old)
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let old = match read(ctx, &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if old.is_some() {
        ctx.db().del(&args[1]);
        notify::emit(ctx, GENERIC, "del", &args[1]);
    }
    bulk_or_null(old)
}

fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let mut expire: Option<ExpireArg> = None;
    let mut persist = false;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if eq_ignore_case(a, "persist") && expire.is_none() && !persist {
            persist = true;
            i += 1;
            continue;
        }
        if let Some(parsed) = (expire.is_none() && !persist)
            .then(|| expire_option(args, i))
            .flatten()
        {
            match parsed {
                Ok(e) => expire = Some(e),
                Err(e) => return e,
            }
            i += 2;
            continue;
        }
        return syntax_error();
    }
    let deadline = match expire.map(|e| deadline_ms(ctx.db().now_ms(), e, "getex")) {
        Some(Err(e)) => return e,
        Some(Ok(d)) => Some(d),
        None => None,
    };
    let value = match read(ctx, key) {
        Ok(Some(v)) => v,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    if let Some(d) = deadline {
        if d <= ctx.db().now_ms() {
            ctx.db().del(key);
            notify::emit(ctx, GENERIC, "del", key);
        } else {
            ctx.db().set_ttl(key, Some(d));
            notify::emit(ctx, GENERIC, "expire", key);
        }
    } else if persist && ctx.db().get(key).and_then(|e| e.deadline_ms()).is_some() {
        ctx.db().set_ttl(key, None);
        notify::emit(ctx, GENERIC, "persist", key);
    }
    Frame::Bulk(Bytes::from(value))
}

fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let out = args[1..]
        .iter()
        .map(|k| match read(ctx, k) {
            Ok(v) => bulk_or_null(v),
            Err(_) => Frame::Null,
        })
        .collect();
    Frame::Array(out)
}

fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return arity_error("mset");
    }
    for pair in args[1..].chunks(2) {
        write_string(ctx, &pair[0], &pair[1], false, None);
    }
    Frame::ok()
}

fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return arity_error("msetnx");
    }
    if args[1..]
        .chunks(2)
        .any(|pair| ctx.db().get(&pair[0]).is_some())
    {
        return Frame::Integer(0);
    }
    for pair in args[1..].chunks(2) {
        write_string(ctx, &pair[0], &pair[1], false, None);
    }
    Frame::Integer(1)
}

fn too_big() -> Frame {
    Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut value = match read(ctx, &args[1]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    if value.len() + args[2].len() > STRING_MAX_BYTES {
        return too_big();
    }
    value.extend_from_slice(&args[2]);
    ctx.db()
        .set_string(&args[1], Blob::from(value.as_slice()), true);
    notify::emit(ctx, STRING, "append", &args[1]);
    Frame::Integer(value.len() as i64)
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(v) => Frame::Integer(v.map_or(0, |v| v.len()) as i64),
        Err(e) => e,
    }
}

fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (mut start, mut end) = match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        _ => return not_integer(),
    };
    let value = match read(ctx, &args[1]) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return e,
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Frame::bulk(Bytes::new());
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Frame::bulk(Bytes::new());
    }
    Frame::Bulk(Bytes::copy_from_slice(
        &value[start as usize..=end as usize],
    ))
}

fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let offset = match parse_int(&args[2]) {
        Ok(n) if n >= 0 => n as usize,
        Ok(_) => return Frame::error("ERR offset is out of range"),
        Err(e) => return e,
    };
    let patch = &args[3];
    let current = match read(ctx, &args[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(mut value) = current.or_else(|| (!patch.is_empty()).then(Vec::new)) else {
        return Frame::Integer(0);
    };
    if patch.is_empty() {
        return Frame::Integer(value.len() as i64);
    }
    if offset + patch.len() > STRING_MAX_BYTES {
        return too_big();
    }
    if value.len() < offset + patch.len() {
        value.resize(offset + patch.len(), 0);
    }
    value[offset..offset + patch.len()].copy_from_slice(patch);
    ctx.db()
        .set_string(&args[1], Blob::from(value.as_slice()), true);
    notify::emit(ctx, STRING, "setrange", &args[1]);
    Frame::Integer(value.len() as i64)
}

fn incr_by(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> Frame {
    let current = match read(ctx, key) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let n = match current {
        None => 0,
        Some(v) => match meridian_crdt::num::parse_strict_i64(&v) {
            Some(n) => n,
            None => return not_integer(),
        },
    };
    let Some(next) = n.checked_add(delta) else {
        return Frame::error(ERR_OVERFLOW);
    };
    ctx.db().incr(key, Delta::Int(delta));
    // INCR, DECR, INCRBY and DECRBY all announce `incrby`, as in Redis.
    notify::emit(ctx, STRING, "incrby", key);
    Frame::Integer(next)
}

fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    incr_by(ctx, &args[1], 1)
}

fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    incr_by(ctx, &args[1], -1)
}

fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match parse_int(&args[2]) {
        Ok(d) => incr_by(ctx, &args[1], d),
        Err(e) => e,
    }
}

fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match parse_int(&args[2]) {
        Ok(i64::MIN) => Frame::error("ERR decrement would overflow"),
        Ok(d) => incr_by(ctx, &args[1], -d),
        Err(e) => e,
    }
}

fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let current = match read(ctx, key) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let base = match current {
        None => 0.0,
        Some(v) => match meridian_crdt::num::parse_float(&v) {
            Some(f) => f,
            None => return Frame::error(ERR_NOT_FLOAT),
        },
    };
    let Some(delta) = meridian_crdt::num::parse_float(&args[2]) else {
        // Redis reads an infinite increment, then refuses its result.
        if super::util::is_infinity(&args[2]) {
            return Frame::error("ERR increment would produce NaN or Infinity");
        }
        return Frame::error(ERR_NOT_FLOAT);
    };
    if !(base + delta).is_finite() {
        return Frame::error("ERR increment would produce NaN or Infinity");
    }
    ctx.db().incr(key, Delta::Float(delta));
    notify::emit(ctx, STRING, "incrbyfloat", key);
    match read(ctx, key) {
        Ok(v) => bulk_or_null(v),
        Err(e) => e,
    }
}
