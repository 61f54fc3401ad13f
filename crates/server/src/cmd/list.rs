//! List commands.
//!
//! A list is a sequence CRDT (`meridian_crdt::list`): pushes and inserts
//! place elements by position keys that every region orders alike, and pops,
//! LREM and LTRIM remove only the elements the writer observed. Across
//! regions of an `active-active` keyspace two regions may pop the same
//! element at the same time (each client gets it: at-least-once delivery);
//! under `primary` or `majority` one region writes at a time, so a pop is
//! exactly-once.
//!
//! The blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) answer at
//! once when they find an element; otherwise they block through
//! [`crate::blocking`] and their connection runs them again when a key they
//! wait on changes, here or by a peer's op.

use bytes::Bytes;
use meridian_crdt::{Blob, ListVal};
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{
    blob, bulk, bulk_array, eq_ignore_case, normalize_range, parse_int, syntax_error, wrongtype,
};
use crate::blocking;
use crate::notify::{self, LIST};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("lpush", -3, WRITE, (1, 1, 1), lpush),
        spec("rpush", -3, WRITE, (1, 1, 1), rpush),
        spec("lpushx", -3, WRITE, (1, 1, 1), lpushx),
        spec("rpushx", -3, WRITE, (1, 1, 1), rpushx),
        spec("lpop", -2, WRITE, (1, 1, 1), lpop),
        spec("rpop", -2, WRITE, (1, 1, 1), rpop),
        spec("llen", 2, READ, (1, 1, 1), llen),
        spec("lrange", 4, READ, (1, 1, 1), lrange),
        spec("lindex", 3, READ, (1, 1, 1), lindex),
        spec("lset", 4, WRITE, (1, 1, 1), lset),
        spec("linsert", 5, WRITE, (1, 1, 1), linsert),
        spec("lrem", 4, WRITE, (1, 1, 1), lrem),
        spec("ltrim", 4, WRITE, (1, 1, 1), ltrim),
        spec("lpos", -3, READ, (1, 1, 1), lpos),
        spec("lmove", 5, WRITE, (1, 2, 1), lmove),
        spec("rpoplpush", 3, WRITE, (1, 2, 1), rpoplpush),
        spec("lmpop", -4, WRITE, (0, 0, 0), lmpop),
        spec("blpop", -3, WRITE, (1, -2, 1), blpop),
        spec("brpop", -3, WRITE, (1, -2, 1), brpop),
        spec("blmove", 6, WRITE, (1, 2, 1), blmove),
        spec("brpoplpush", 4, WRITE, (1, 2, 1), brpoplpush),
        spec("blmpop", -5, WRITE, (0, 0, 0), blmpop),
    ]
}

/// The list at `key`: `Ok(None)` if absent, WRONGTYPE for another type.
fn read<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c ListVal>, Frame> {
    ctx.db().list(key).map_err(|_| wrongtype())
}

fn len_of(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<usize, Frame> {
    Ok(read(ctx, key)?.map_or(0, |l| l.len()))
}

fn values(args: &[Bytes]) -> Vec<Blob> {
    args.iter().map(blob).collect()
}

fn push(ctx: &mut Ctx<'_>, args: &[Bytes], front: bool, only_existing: bool) -> Frame {
    let key = &args[1];
    let len = match len_of(ctx, key) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if only_existing && len == 0 {
        return Frame::Integer(0);
    }
    ctx.db().lpush(key, values(&args[2..]), front);
    notify::emit(ctx, LIST, push_event(front), key);
    Frame::Integer((len + args.len() - 2) as i64)
}

fn lpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    push(ctx, args, true, false)
}

fn rpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    push(ctx, args, false, false)
}

fn lpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    push(ctx, args, true, true)
}

fn rpushx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    push(ctx, args, false, true)
}

fn push_event(front: bool) -> &'static str {
    if front {
        "lpush"
    } else {
        "rpush"
    }
}

/// Pops up to `count` elements and announces it: `lpop` or `rpop`, then
/// `del` if the list is left empty.
fn pop_announced(ctx: &mut Ctx<'_>, key: &[u8], front: bool, count: usize) -> Vec<Blob> {
    let popped = ctx.db().lpop(key, front, count);
    if !popped.is_empty() {
        notify::emit(ctx, LIST, if front { "lpop" } else { "rpop" }, key);
        notify::emit_del_if_emptied(ctx, key);
    }
    popped
}

/// A count that must be positive (0 allowed), with Redis's error text.
fn positive(arg: &[u8], what: &str) -> Result<usize, Frame> {
    match parse_int(arg) {
        Ok(n) if n >= 0 => Ok(n as usize),
        Ok(_) => Err(Frame::error(format!("ERR {what}"))),
        Err(e) => Err(e),
    }
}

fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], front: bool) -> Frame {
    if args.len() > 3 {
        return super::util::arity_error(if front { "lpop" } else { "rpop" });
    }
    let count = match args.get(2) {
        Some(a) => match positive(a, "value is out of range, must be positive") {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        None => None,
    };
    let key = &args[1];
    let len = match len_of(ctx, key) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if len == 0 {
        return if count.is_some() {
            Frame::NullArray
        } else {
            Frame::Null
        };
    }
    match count {
        None => {
            let v = pop_announced(ctx, key, front, 1);
            v.first().map_or(Frame::Null, |v| bulk(v))
        }
        Some(0) => Frame::Array(Vec::new()),
        Some(n) => {
            let v = pop_announced(ctx, key, front, n);
            Frame::Array(v.iter().map(|v| bulk(v)).collect())
        }
    }
}

fn lpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    pop(ctx, args, true)
}

fn rpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    pop(ctx, args, false)
}

fn llen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match len_of(ctx, &args[1]) {
        Ok(n) => Frame::Integer(n as i64),
        Err(e) => e,
    }
}

fn lrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (start, stop) = match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let list = match read(ctx, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    match normalize_range(start, stop, list.len()) {
        Some((s, e)) => bulk_array(list.range_values(s, e + 1)),
        None => Frame::Array(Vec::new()),
    }
}

/// A Redis list index (negative from the end) resolved against `len`.
fn resolve(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lindex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let index = match parse_int(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    match read(ctx, &args[1]) {
        Ok(Some(l)) => resolve(index, l.len())
            .and_then(|i| l.get(i))
            .map_or(Frame::Null, |e| bulk(e.value)),
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

fn lset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let index = match parse_int(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let len = match read(ctx, &args[1]) {
        Ok(Some(l)) => l.len(),
        Ok(None) => return Frame::error("ERR no such key"),
        Err(e) => return e,
    };
    match resolve(index, len) {
        Some(i) => {
            ctx.db().lset(&args[1], i, blob(&args[3]));
            notify::emit(ctx, LIST, "lset", &args[1]);
            Frame::ok()
        }
        None => Frame::error("ERR index out of range"),
    }
}

fn linsert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let before = if eq_ignore_case(&args[2], "before") {
        true
    } else if eq_ignore_case(&args[2], "after") {
        false
    } else {
        return syntax_error();
    };
    let (len, at) = match read(ctx, &args[1]) {
        Ok(Some(l)) => (l.len(), l.values().position(|v| v == &args[3][..])),
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    let Some(at) = at else {
        return Frame::Integer(-1);
    };
    let index = if before { at } else { at + 1 };
    ctx.db().linsert(&args[1], index, blob(&args[4]));
    notify::emit(ctx, LIST, "linsert", &args[1]);
    Frame::Integer(len as i64 + 1)
}

/// Inclusive index ranges covering `indexes` (ascending), runs merged.
fn runs(indexes: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &i in indexes {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == i => *b = i,
            _ => out.push((i, i)),
        }
    }
    out
}

fn lrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match parse_int(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let wanted = &args[3][..];
    let mut hits: Vec<usize> = match read(ctx, &args[1]) {
        Ok(Some(l)) => {
            let matching = |(_, v): &(usize, &[u8])| *v == wanted;
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            if count < 0 {
                let n = l.len();
                l.values()
                    .rev()
                    .enumerate()
                    .map(|(i, e)| (n - 1 - i, e))
                    .filter(matching)
                    .take(limit)
                    .map(|(i, _)| i)
                    .collect()
            } else {
                l.values()
                    .enumerate()
                    .filter(matching)
                    .take(limit)
                    .map(|(i, _)| i)
                    .collect()
            }
        }
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    };
    hits.sort_unstable();
    if !hits.is_empty() {
        ctx.db().lremove(&args[1], &runs(&hits));
        notify::emit(ctx, LIST, "lrem", &args[1]);
        notify::emit_del_if_emptied(ctx, &args[1]);
    }
    Frame::Integer(hits.len() as i64)
}

fn ltrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (start, stop) = match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let len = match read(ctx, &args[1]) {
        Ok(Some(l)) => l.len(),
        Ok(None) => return Frame::ok(),
        Err(e) => return e,
    };
    let ranges = match normalize_range(start, stop, len) {
        None => vec![(0, len - 1)],
        Some((s, e)) => {
            let mut r = Vec::new();
            if s > 0 {
                r.push((0, s - 1));
            }
            if e + 1 < len {
                r.push((e + 1, len - 1));
            }
            r
        }
    };
    if !ranges.is_empty() {
        ctx.db().lremove(&args[1], &ranges);
    }
    // Redis announces every LTRIM of a list, even one that removed nothing.
    notify::emit(ctx, LIST, "ltrim", &args[1]);
    notify::emit_del_if_emptied(ctx, &args[1]);
    Frame::ok()
}

fn lpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let Some(val) = args.get(i + 1) else {
            return syntax_error();
        };
        if eq_ignore_case(opt, "rank") {
            rank = match parse_int(val) {
                // Redis 7.0 negates the rank into LONG_MIN again, which then
                // lets every match count: the first one from the tail.
                Ok(i64::MIN) => -1,
                Ok(0) => return Frame::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ),
                Ok(r) => r,
                Err(e) => return e,
            };
        } else if eq_ignore_case(opt, "count") {
            count = match positive(val, "COUNT can't be negative") {
                Ok(n) => Some(n),
                Err(e) => return e,
            };
        } else if eq_ignore_case(opt, "maxlen") {
            maxlen = match positive(val, "MAXLEN can't be negative") {
                Ok(n) => n,
                Err(e) => return e,
            };
        } else {
            return syntax_error();
        }
        i += 2;
    }
    let list = match read(ctx, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return if count.is_some() {
                Frame::Array(Vec::new())
            } else {
                Frame::Null
            }
        }
        Err(e) => return e,
    };
    let wanted = &args[2][..];
    let len = list.len();
    let limit = if maxlen == 0 { len } else { maxlen.min(len) };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let skip = (rank.unsigned_abs() - 1) as usize;
    let found: Vec<usize> = if rank > 0 {
        list.values()
            .take(limit)
            .enumerate()
            .filter(|(_, v)| *v == wanted)
            .skip(skip)
            .take(want)
            .map(|(i, _)| i)
            .collect()
    } else {
        list.values()
            .rev()
            .take(limit)
            .enumerate()
            .filter(|(_, v)| *v == wanted)
            .skip(skip)
            .take(want)
            .map(|(i, _)| len - 1 - i)
            .collect()
    };
    match count {
        Some(_) => Frame::Array(
            found
                .into_iter()
                .map(|i| Frame::Integer(i as i64))
                .collect(),
        ),
        None => found
            .first()
            .map_or(Frame::Null, |&i| Frame::Integer(i as i64)),
    }
}

/// LEFT (true) or RIGHT (false).
fn side(arg: &[u8]) -> Option<bool> {
    if eq_ignore_case(arg, "left") {
        Some(true)
    } else if eq_ignore_case(arg, "right") {
        Some(false)
    } else {
        None
    }
}

/// The pop-and-push of LMOVE and friends; `Ok(None)` when the source is
/// empty. The destination's type is checked only when there is something to
/// move, as Redis does. Announced as Redis does: the push to the
/// destination (created if new), then the pop from the source, then `del`
/// if that emptied it.
fn move_one(
    ctx: &mut Ctx<'_>,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<Option<Blob>, Frame> {
    if len_of(ctx, src)? == 0 {
        return Ok(None);
    }
    read(ctx, dst)?;
    let v = ctx.db().lpop(src, from_left, 1);
    let Some(v) = v.into_iter().next() else {
        return Ok(None);
    };
    ctx.db().lpush(dst, vec![v.clone()], to_left);
    if src == dst {
        // The list is never empty in Redis's rotation; the pop here left
        // it empty for a moment when it held one element.
        notify::emit_replaced(ctx, LIST, push_event(to_left), dst);
    } else {
        notify::emit(ctx, LIST, push_event(to_left), dst);
    }
    notify::emit(ctx, LIST, if from_left { "lpop" } else { "rpop" }, src);
    notify::emit_del_if_emptied(ctx, src);
    Ok(Some(v))
}

fn lmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (Some(from), Some(to)) = (side(&args[3]), side(&args[4])) else {
        return syntax_error();
    };
    match move_one(ctx, &args[1], &args[2], from, to) {
        Ok(Some(v)) => bulk(&v),
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

fn rpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match move_one(ctx, &args[1], &args[2], false, true) {
        Ok(Some(v)) => bulk(&v),
        Ok(None) => Frame::Null,
        Err(e) => e,
    }
}

/// The parsed `numkeys key... LEFT|RIGHT [COUNT n]` of LMPOP and BLMPOP,
/// starting at `args[at]`.
struct MultiPop {
    keys: Vec<Bytes>,
    left: bool,
    count: usize,
}

fn parse_mpop(args: &[Bytes], at: usize) -> Result<MultiPop, Frame> {
    let numkeys = match parse_int(&args[at]) {
        Ok(n) if n > 0 => n as usize,
        Ok(_) => return Err(Frame::error("ERR numkeys should be greater than 0")),
        Err(_) => return Err(Frame::error("ERR numkeys should be greater than 0")),
    };
    let first = at + 1;
    if numkeys > args.len().saturating_sub(first + 1) {
        return Err(syntax_error());
    }
    let keys = args[first..first + numkeys].to_vec();
    let mut i = first + numkeys;
    let Some(left) = side(&args[i]) else {
        return Err(syntax_error());
    };
    i += 1;
    let mut count = None;
    while i < args.len() {
        if eq_ignore_case(&args[i], "count") && i + 1 < args.len() && count.is_none() {
            count = match parse_int(&args[i + 1]) {
                Ok(n) if n > 0 => Some(n as usize),
                _ => return Err(Frame::error("ERR count should be greater than 0")),
            };
            i += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(MultiPop {
        keys,
        left,
        count: count.unwrap_or(1),
    })
}

/// Pops from the first non-empty key this client may serve from: `[key,
/// [values]]`, or `None` when every key is empty.
fn mpop_from(ctx: &mut Ctx<'_>, p: &MultiPop, queued: bool) -> Result<Option<Frame>, Frame> {
    for key in &p.keys {
        let ready = if queued {
            available(ctx, key)
        } else {
            len_of(ctx, key)? > 0
        };
        if !ready {
            continue;
        }
        let v = pop_announced(ctx, key, p.left, p.count);
        return Ok(Some(Frame::Array(vec![
            bulk(key),
            Frame::Array(v.iter().map(|v| bulk(v)).collect()),
        ])));
    }
    Ok(None)
}

fn lmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let p = match parse_mpop(args, 1) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match mpop_from(ctx, &p, false) {
        Ok(Some(f)) => f,
        Ok(None) => Frame::NullArray,
        Err(e) => e,
    }
}

fn check_lists(ctx: &mut Ctx<'_>, keys: &[Bytes]) -> Result<(), Frame> {
    blocking::check_types(ctx, keys, len_of)
}

fn available(ctx: &mut Ctx<'_>, key: &[u8]) -> bool {
    blocking::available(ctx, key, len_of)
}

fn bpop(ctx: &mut Ctx<'_>, args: &[Bytes], front: bool) -> Frame {
    let timeout = match blocking::parse_timeout(&args[args.len() - 1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    if let Err(e) = check_lists(ctx, keys) {
        return e;
    }
    for key in keys {
        if available(ctx, key) {
            let v = pop_announced(ctx, key, front, 1);
            if let Some(v) = v.first() {
                return Frame::Array(vec![bulk(key), bulk(v)]);
            }
        }
    }
    blocking::block(ctx, keys, timeout, Frame::NullArray)
}

fn blpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    bpop(ctx, args, true)
}

fn brpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    bpop(ctx, args, false)
}

fn bmove(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    from_left: bool,
    to_left: bool,
    timeout_arg: &[u8],
) -> Frame {
    let timeout = match blocking::parse_timeout(timeout_arg) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (src, dst) = (&args[1], &args[2]);
    if let Err(e) = check_lists(ctx, std::slice::from_ref(src)) {
        return e;
    }
    if available(ctx, src) {
        match move_one(ctx, src, dst, from_left, to_left) {
            Ok(Some(v)) => return bulk(&v),
            Ok(None) => {}
            Err(e) => return e,
        }
    }
    blocking::block(ctx, std::slice::from_ref(src), timeout, Frame::Null)
}

fn blmove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (Some(from), Some(to)) = (side(&args[3]), side(&args[4])) else {
        return syntax_error();
    };
    bmove(ctx, args, from, to, &args[5])
}

fn brpoplpush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    bmove(ctx, args, false, true, &args[3])
}

fn blmpop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let timeout = match blocking::parse_timeout(&args[1]) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let p = match parse_mpop(args, 2) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if let Err(e) = check_lists(ctx, &p.keys) {
        return e;
    }
    match mpop_from(ctx, &p, true) {
        Ok(Some(f)) => return f,
        Ok(None) => {}
        Err(e) => return e,
    }
    blocking::block(ctx, &p.keys, timeout, Frame::NullArray)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_adjacent_indexes() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![(0, 2), (5, 5), (7, 8)]);
        assert_eq!(runs(&[]), Vec::<(usize, usize)>::new());
    }

    #[test]
    fn negative_indexes_count_from_the_end() {
        assert_eq!(resolve(-1, 3), Some(2));
        assert_eq!(resolve(-3, 3), Some(0));
        assert_eq!(resolve(-4, 3), None);
        assert_eq!(resolve(3, 3), None);
    }
}
