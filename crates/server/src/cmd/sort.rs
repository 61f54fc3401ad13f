//! SORT and SORT_RO: the elements of a list, set or sorted set, sorted
//! numerically or (ALPHA) bytewise, optionally by other keys (BY), with
//! other keys' values fetched per element (GET), a LIMIT, and STORE into a
//! list, written as one replicated write like any list write.

use bytes::Bytes;
use meridian_crdt::{Blob, Value};
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{bulk, eq_ignore_case, parse_int, syntax_error, wrongtype};
use crate::notify;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("sort", -2, WRITE, (1, 1, 1), sort),
        spec("sort_ro", -2, READ, (1, 1, 1), sort_ro),
    ]
}

struct Options {
    by: Option<Bytes>,
    /// BY a pattern without `*`: keep the source's order.
    dont_sort: bool,
    limit: Option<(i64, i64)>,
    get: Vec<Bytes>,
    desc: bool,
    alpha: bool,
    store: Option<Bytes>,
}

fn parse(args: &[Bytes], read_only: bool) -> Result<Options, Frame> {
    let mut o = Options {
        by: None,
        dont_sort: false,
        limit: None,
        get: Vec::new(),
        desc: false,
        alpha: false,
        store: None,
    };
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        let left = args.len() - i - 1;
        if eq_ignore_case(a, "asc") {
            o.desc = false;
        } else if eq_ignore_case(a, "desc") {
            o.desc = true;
        } else if eq_ignore_case(a, "alpha") {
            o.alpha = true;
        } else if eq_ignore_case(a, "limit") && left >= 2 {
            let offset = parse_int(&args[i + 1])?;
            let count = parse_int(&args[i + 2])?;
            o.limit = Some((offset, count));
            i += 2;
        } else if eq_ignore_case(a, "store") && left >= 1 && !read_only {
            o.store = Some(args[i + 1].clone());
            i += 1;
        } else if eq_ignore_case(a, "by") && left >= 1 {
            let p = args[i + 1].clone();
            o.dont_sort = !p.contains(&b'*');
            o.by = Some(p);
            i += 1;
        } else if eq_ignore_case(a, "get") && left >= 1 {
            o.get.push(args[i + 1].clone());
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    Ok(o)
}

/// SORT's keys as `COMMAND GETKEYS` reports them (Redis's `sortGetKeys`):
/// the source, read, and the (last) STORE destination, overwritten; the words of
/// the other options are skipped.
pub fn key_positions(line: &[Bytes]) -> Vec<(usize, Vec<Frame>)> {
    let mut keys = vec![(1, vec![Frame::simple("RO"), Frame::simple("access")])];
    let mut i = 2;
    while i < line.len() {
        let a = &line[i];
        let skip = if eq_ignore_case(a, "limit") {
            2
        } else if eq_ignore_case(a, "get") || eq_ignore_case(a, "by") {
            1
        } else if eq_ignore_case(a, "store") {
            // Only the last STORE counts, as for the command itself.
            if i + 1 < line.len() {
                keys.truncate(1);
                keys.push((i + 1, vec![Frame::simple("OW"), Frame::simple("update")]));
            }
            1
        } else {
            0
        };
        i += 1 + skip;
    }
    keys
}

/// What a pattern names for `elem`: `#` is the element itself; otherwise
/// the first `*` is replaced by it and the key read as a string, or, with
/// `->field`, as a hash field. Patterns without `*` name nothing.
fn lookup(ctx: &mut Ctx<'_>, pattern: &[u8], elem: &[u8]) -> Option<Blob> {
    if pattern == b"#" {
        return Some(Blob::from(elem));
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let after = &pattern[star + 1..];
    let (suffix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(at) if at + 2 < after.len() => (&after[..at], Some(&after[at + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(suffix);
    let entry = ctx.db().get(&key)?;
    match (entry.value(), field) {
        (Value::Str(r), None) => Some(Blob::from(&r.render()[..])),
        (Value::Hash(h), Some(f)) => h.fields.live.get(f).map(|r| Blob::from(&r.render()[..])),
        _ => None,
    }
}

/// The source's elements in its own order; `zset` tells a sorted set.
fn elements(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<(Vec<Blob>, bool), Frame> {
    let Some(entry) = ctx.db().get(key) else {
        return Ok((Vec::new(), false));
    };
    Ok(match entry.value() {
        Value::List(l) => (l.values().map(Blob::from).collect(), false),
        Value::Set(s) => (s.members.live.keys().cloned().collect(), false),
        Value::ZSet(z) => (z.index.iter().map(|(_, m)| m.clone()).collect(), true),
        _ => return Err(wrongtype()),
    })
}

/// Redis reads scores with `strtod`: surrounding spaces and any float form.
fn score_of(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let v: f64 = s.trim_start().parse().ok()?;
    (!v.is_nan()).then_some(v)
}

fn sort_generic(ctx: &mut Ctx<'_>, args: &[Bytes], read_only: bool) -> Frame {
    let mut o = match parse(args, read_only) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let (mut elems, is_zset) = match elements(ctx, &args[1]) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let is_set = matches!(
        ctx.db().get(&args[1]).map(|e| e.value()),
        Some(Value::Set(_))
    );
    if o.dont_sort && is_set && (o.store.is_some() || ctx.client.in_script) {
        // A set has no order of its own: what is stored (or what a script
        // gets) must not depend on the hash table, so it is sorted bytewise
        // instead, as Redis does.
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    if o.dont_sort {
        if is_zset && o.desc {
            elems.reverse();
        }
    } else {
        let mut keyed: Vec<(Blob, Option<Blob>)> = Vec::with_capacity(elems.len());
        for e in elems {
            let by = match &o.by {
                Some(p) => lookup(ctx, p, &e),
                None => None,
            };
            keyed.push((e, by));
        }
        let sorted = if o.alpha {
            let by_pattern = o.by.is_some();
            keyed.sort_by(|a, b| {
                let c = if by_pattern {
                    a.1.cmp(&b.1)
                } else {
                    a.0.cmp(&b.0)
                };
                if o.desc {
                    c.reverse()
                } else {
                    c
                }
            });
            keyed.into_iter().map(|(e, _)| e).collect::<Vec<_>>()
        } else {
            let mut scored = Vec::with_capacity(keyed.len());
            for (e, by) in keyed {
                let src = if o.by.is_some() { by } else { Some(e.clone()) };
                let score = match src {
                    None => 0.0,
                    Some(b) => match score_of(&b) {
                        Some(s) => s,
                        None => {
                            return Frame::error(
                                "ERR One or more scores can't be converted into double",
                            )
                        }
                    },
                };
                scored.push((score, e));
            }
            scored.sort_by(|a, b| {
                let c = a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1));
                if o.desc {
                    c.reverse()
                } else {
                    c
                }
            });
            scored.into_iter().map(|(_, e)| e).collect()
        };
        elems = sorted;
    }
    if let Some((offset, count)) = o.limit {
        let start = offset.max(0) as usize;
        let n = if count < 0 {
            usize::MAX
        } else {
            count as usize
        };
        elems = elems.into_iter().skip(start).take(n).collect();
    }
    let mut out: Vec<Option<Blob>> = Vec::new();
    if o.get.is_empty() {
        out.extend(elems.into_iter().map(Some));
    } else {
        for e in &elems {
            for p in &o.get {
                out.push(lookup(ctx, p, e));
            }
        }
    }
    match o.store {
        Some(dst) => {
            let n = out.len();
            let existed = ctx.db().del(&dst);
            if n > 0 {
                let values = out.into_iter().map(Option::unwrap_or_default).collect();
                ctx.db().lpush(&dst, values, false);
            }
            notify::emit_store(ctx, notify::LIST, "sortstore", &dst, existed, n > 0);
            Frame::Integer(n as i64)
        }
        None => Frame::Array(
            out.into_iter()
                .map(|v| v.map_or(Frame::Null, |v| bulk(&v)))
                .collect(),
        ),
    }
}

fn sort(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    sort_generic(ctx, args, false)
}

fn sort_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    sort_generic(ctx, args, true)
}
