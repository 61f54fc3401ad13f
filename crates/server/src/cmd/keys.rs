//! Key-space commands: DEL, EXISTS, TYPE, KEYS, SCAN, RENAME, RANDOMKEY,
//! TOUCH and the expiry family.
//!
//! DEL removes only what this region has observed, so a value another region
//! writes concurrently survives the merge instead of being deleted unseen.
//! The expiry commands write the key's TTL register: among concurrent TTLs
//! the longest deadline wins and PERSIST beats any deadline, so a key never
//! expires earlier than one of its writers asked. A deadline already in the
//! past deletes the key, as in Redis.
//!
//! RENAME has no CRDT of its own: it is a delete of the source plus a fresh
//! write of the same value (and TTL) under the new name, in one op. A write
//! that another region makes to the old name concurrently therefore survives
//! under the old name. COPY is the same write without the delete.
//!
//! Reads that list keys (KEYS, SCAN, RANDOMKEY) skip keys whose deadline has
//! passed without expiring them, so listing never writes.

use bytes::Bytes;
use meridian_crdt::{Blob, Entry};
use meridian_resp::Frame;
use rand::Rng;

use super::plain::{plain, write_plain};
use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{db_index, eq_ignore_case, glob_match, parse_int, parse_scan, syntax_error};
use crate::notify::{self, GENERIC};

/// Random probes RANDOMKEY makes before walking the keyspace for a key
/// that has not expired.
const RANDOMKEY_PROBES_MAX: usize = 100;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("del", -2, WRITE, (1, -1, 1), del),
        spec("unlink", -2, WRITE, (1, -1, 1), del),
        spec("exists", -2, READ, (1, -1, 1), exists),
        spec("touch", -2, READ, (1, -1, 1), exists),
        spec("type", 2, READ, (1, 1, 1), type_),
        spec("keys", 2, READ, (0, 0, 0), keys),
        spec("scan", -2, READ, (0, 0, 0), scan),
        spec("randomkey", 1, READ, (0, 0, 0), randomkey),
        spec("rename", 3, WRITE, (1, 2, 1), rename),
        spec("renamenx", 3, WRITE, (1, 2, 1), renamenx),
        spec("move", 3, WRITE, (1, 1, 1), move_),
        spec("copy", -3, WRITE, (1, 2, 1), copy),
        spec("expire", -3, WRITE, (1, 1, 1), expire),
        spec("pexpire", -3, WRITE, (1, 1, 1), pexpire),
        spec("expireat", -3, WRITE, (1, 1, 1), expireat),
        spec("pexpireat", -3, WRITE, (1, 1, 1), pexpireat),
        spec("ttl", 2, READ, (1, 1, 1), ttl),
        spec("pttl", 2, READ, (1, 1, 1), pttl),
        spec("expiretime", 2, READ, (1, 1, 1), expiretime),
        spec("pexpiretime", 2, READ, (1, 1, 1), pexpiretime),
        spec("persist", 2, WRITE, (1, 1, 1), persist),
    ]
}

/// Whether a key listed from the keyspace is still visible at `now_ms`.
fn unexpired(entry: &Entry, now_ms: u64) -> bool {
    entry.deadline_ms().is_none_or(|d| d > now_ms)
}

fn bulk_key(key: &Blob) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(key))
}

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut deleted = 0;
    for key in &args[1..] {
        if ctx.db().del(key) {
            notify::emit(ctx, GENERIC, "del", key);
            deleted += 1;
        }
    }
    Frame::Integer(deleted)
}

/// EXISTS and TOUCH: how many of the arguments name a key (repeats count).
fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let found = args[1..]
        .iter()
        .filter(|k| ctx.db().get(k).is_some())
        .count();
    Frame::Integer(found as i64)
}

fn type_(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = ctx.db().get(&args[1]).map_or("none", |e| e.kind().name());
    Frame::simple(name)
}

fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let pattern = &args[1];
    let all = &pattern[..] == b"*";
    let db = ctx.db();
    let now_ms = db.now_ms();
    let found = db
        .keyspace()
        .iter()
        .filter(|(k, e)| unexpired(e, now_ms) && (all || glob_match(pattern, k, false)))
        .map(|(k, _)| bulk_key(k))
        .collect();
    Frame::Array(found)
}

fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let opts = match parse_scan(&args[1..], true, false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let db = ctx.db();
    let now_ms = db.now_ms();
    let mut found = Vec::new();
    let next = db.keyspace().scan(opts.cursor, opts.count, |k, e| {
        let wanted = unexpired(e, now_ms)
            && opts
                .pattern
                .as_ref()
                .is_none_or(|p| glob_match(p, k, false))
            && opts
                .type_filter
                .as_ref()
                .is_none_or(|t| eq_ignore_case(t, e.kind().name()));
        if wanted {
            found.push(bulk_key(k));
        }
    });
    Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(found)])
}

fn randomkey(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let db = ctx.db();
    let now_ms = db.now_ms();
    let ks = db.keyspace();
    if ks.is_empty() {
        return Frame::Null;
    }
    let mut rng = rand::thread_rng();
    for _ in 0..RANDOMKEY_PROBES_MAX {
        let Some(key) = ks.key_at(rng.gen_range(0..ks.len())) else {
            continue;
        };
        if ks.get(key).is_some_and(|e| unexpired(e, now_ms)) {
            return bulk_key(key);
        }
    }
    ks.iter()
        .find(|(_, e)| unexpired(e, now_ms))
        .map_or(Frame::Null, |(k, _)| bulk_key(k))
}

/// RENAME and RENAMENX: `Ok(true)` when renamed, `Ok(false)` when RENAMENX
/// found the destination taken (or source and destination are the same).
fn rename_generic(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> Result<bool, Frame> {
    let (src, dst) = (&args[1], &args[2]);
    let Some(entry) = ctx.db().get(src) else {
        return Err(Frame::error("ERR no such key"));
    };
    let deadline = entry.deadline_ms();
    let value = plain(entry.value());
    if src == dst {
        return Ok(!nx);
    }
    if ctx.db().get(dst).is_some() {
        if nx {
            return Ok(false);
        }
        ctx.db().del(dst);
    }
    write_plain(ctx.db(), dst, value);
    if deadline.is_some() {
        ctx.db().set_ttl(dst, deadline);
    }
    ctx.db().del(src);
    notify::emit(ctx, GENERIC, "rename_from", src);
    notify::emit(ctx, GENERIC, "rename_to", dst);
    Ok(true)
}

fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match rename_generic(ctx, args, false) {
        Ok(_) => Frame::ok(),
        Err(e) => e,
    }
}

fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match rename_generic(ctx, args, true) {
        Ok(renamed) => Frame::Integer(renamed as i64),
        Err(e) => e,
    }
}

/// MOVE behaves as Redis configured with `databases 1`: the only database
/// is 0, which is always the source.
fn move_(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match db_index(&args[2]) {
        Ok(0) => Frame::error("ERR source and destination objects are the same"),
        Ok(_) => Frame::error("ERR DB index is out of range"),
        Err(e) => e,
    }
}

/// `COPY source destination [DB n] [REPLACE]`: a fresh write of the
/// source's visible value (and deadline) under the new name, through the
/// same effects a client's writes make, so it replicates like them. There
/// is one database, so `DB` must name 0, as SELECT requires.
fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if eq_ignore_case(&args[i], "replace") {
            replace = true;
        } else if eq_ignore_case(&args[i], "db") && i + 1 < args.len() {
            match db_index(&args[i + 1]) {
                Ok(0) => {}
                Ok(_) => return Frame::error("ERR DB index is out of range"),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let (src, dst) = (&args[1], &args[2]);
    if src == dst {
        return Frame::error("ERR source and destination objects are the same");
    }
    let Some(entry) = ctx.db().get(src) else {
        return Frame::Integer(0);
    };
    let deadline = entry.deadline_ms();
    let value = plain(entry.value());
    if ctx.db().get(dst).is_some() {
        if !replace {
            return Frame::Integer(0);
        }
        ctx.db().del(dst);
    }
    write_plain(ctx.db(), dst, value);
    if deadline.is_some() {
        ctx.db().set_ttl(dst, deadline);
    }
    notify::emit(ctx, GENERIC, "copy_to", dst);
    Frame::Integer(1)
}

#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_expire_flags(args: &[Bytes]) -> Result<ExpireFlags, Frame> {
    let mut f = ExpireFlags::default();
    for a in args {
        if eq_ignore_case(a, "nx") {
            f.nx = true;
        } else if eq_ignore_case(a, "xx") {
            f.xx = true;
        } else if eq_ignore_case(a, "gt") {
            f.gt = true;
        } else if eq_ignore_case(a, "lt") {
            f.lt = true;
        } else {
            return Err(Frame::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(a)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Frame::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

/// The EXPIRE family. `relative` adds the current time; `seconds` scales
/// the argument to milliseconds. Checks run in Redis's order: options, the
/// number, overflow, then the key.
fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    relative: bool,
    seconds: bool,
    name: &str,
) -> Frame {
    let flags = match parse_expire_flags(&args[3..]) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut when = match parse_int(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    if seconds {
        match when.checked_mul(1000) {
            Some(ms) => when = ms,
            None => return invalid(),
        }
    }
    let now_ms = ctx.db().now_ms();
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let base = if relative { now } else { 0 };
    match when.checked_add(base) {
        Some(at) => when = at,
        None => return invalid(),
    }
    let key = &args[1];
    let Some(entry) = ctx.db().get(key) else {
        return Frame::Integer(0);
    };
    let current = entry
        .deadline_ms()
        .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    let refused = (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c));
    if refused {
        return Frame::Integer(0);
    }
    if when <= now {
        ctx.db().del(key);
        notify::emit(ctx, GENERIC, "del", key);
    } else {
        ctx.db().set_ttl(key, Some(when as u64));
        notify::emit(ctx, GENERIC, "expire", key);
    }
    Frame::Integer(1)
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    expire_generic(ctx, args, true, true, "expire")
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    expire_generic(ctx, args, true, false, "pexpire")
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    expire_generic(ctx, args, false, true, "expireat")
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    expire_generic(ctx, args, false, false, "pexpireat")
}

/// TTL, PTTL, EXPIRETIME and PEXPIRETIME: -2 for a missing key, -1 for a key
/// without a deadline.
fn ttl_generic(ctx: &mut Ctx<'_>, key: &[u8], millis: bool, absolute: bool) -> Frame {
    let now_ms = ctx.db().now_ms();
    let Some(entry) = ctx.db().get(key) else {
        return Frame::Integer(-2);
    };
    let Some(deadline) = entry.deadline_ms() else {
        return Frame::Integer(-1);
    };
    let ms = if absolute {
        deadline
    } else {
        deadline.saturating_sub(now_ms)
    };
    let shown = if millis {
        ms
    } else {
        ms.saturating_add(500) / 1000
    };
    Frame::Integer(i64::try_from(shown).unwrap_or(i64::MAX))
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    ttl_generic(ctx, &args[1], false, false)
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    ttl_generic(ctx, &args[1], true, false)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    ttl_generic(ctx, &args[1], false, true)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    ttl_generic(ctx, &args[1], true, true)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let has_deadline = ctx.db().get(key).is_some_and(|e| e.deadline_ms().is_some());
    if has_deadline {
        ctx.db().set_ttl(key, None);
        notify::emit(ctx, GENERIC, "persist", key);
    }
    Frame::Integer(has_deadline as i64)
}

/// Visible keys at the batch's time, without expiring anything: keys past
/// their deadline that the expiry cycle has not reclaimed yet are left out.
pub fn dbsize(ctx: &mut Ctx<'_>) -> u64 {
    let db = ctx.db();
    let now_ms = db.now_ms();
    let ks = db.keyspace();
    let due = ks
        .due(now_ms, usize::MAX)
        .iter()
        .filter(|k| ks.get(k).is_some())
        .count();
    (ks.len() - due) as u64
}

/// Visible keys, and among them those with a deadline, as `INFO keyspace`
/// reports them.
pub struct KeyCounts {
    pub keys: u64,
    pub expires: u64,
    /// Mean time left of the keys with a deadline, in milliseconds.
    pub avg_ttl_ms: u64,
}

pub fn key_counts(ctx: &mut Ctx<'_>) -> KeyCounts {
    let db = ctx.db();
    let now_ms = db.now_ms();
    let ks = db.keyspace();
    let (mut due, mut expires, mut ttl_sum_ms) = (0u64, 0u64, 0u128);
    for key in ks.due(u64::MAX, usize::MAX) {
        let Some(deadline) = ks.get(&key).and_then(|e| e.deadline_ms()) else {
            continue;
        };
        if deadline <= now_ms {
            due += 1;
        } else {
            expires += 1;
            ttl_sum_ms += u128::from(deadline - now_ms);
        }
    }
    KeyCounts {
        keys: ks.len() as u64 - due,
        expires,
        avg_ttl_ms: if expires == 0 {
            0
        } else {
            (ttl_sum_ms / u128::from(expires)) as u64
        },
    }
}
