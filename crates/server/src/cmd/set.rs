//! Set commands.
//!
//! A set is an observed-remove set: SADD tags each member it adds, and SREM,
//! SPOP and SMOVE remove only the tags the writer had observed, so a member
//! added concurrently in another region survives the removal (add wins).
//! Each command emits only what changes: SADD names only members that are
//! new, SREM only members that are present, SPOP exactly the members it
//! chose. The `*STORE` commands replace the destination as Redis does: a
//! delete of what the writer observed there, then an add of the result (an
//! empty result leaves only the delete).
//!
//! The helpers shared with the hash commands live here too: the cursor walk
//! of SSCAN/HSCAN and the count argument of SRANDMEMBER/HRANDFIELD.

use std::collections::HashSet;

use bytes::Bytes;
use meridian_crdt::value::Map;
use meridian_crdt::{Blob, Kind, SetVal, Value};
use meridian_resp::Frame;
use meridian_store::Db;
use rand::Rng;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{blob, bulk, eq_ignore_case, glob_match, parse_int, syntax_error, wrongtype};
use crate::notify::{self, SET};

/// Sets of at most this many integers are intsets in Redis 7.0: SSCAN returns
/// them whole, in ascending order, whatever the cursor and COUNT.
const SCAN_INTSET_ENTRIES_MAX: usize = 512;

/// Most elements a negative count may ask SRANDMEMBER or HRANDFIELD for:
/// the reply is built in memory, so it needs a bound.
const RANDOM_REPEATS_MAX: i64 = 1_000_000;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("sadd", -3, WRITE, (1, 1, 1), sadd),
        spec("srem", -3, WRITE, (1, 1, 1), srem),
        spec("smembers", 2, READ, (1, 1, 1), smembers),
        spec("sismember", 3, READ, (1, 1, 1), sismember),
        spec("smismember", -3, READ, (1, 1, 1), smismember),
        spec("scard", 2, READ, (1, 1, 1), scard),
        spec("spop", -2, WRITE, (1, 1, 1), spop),
        spec("srandmember", -2, READ, (1, 1, 1), srandmember),
        spec("sinter", -2, READ, (1, -1, 1), sinter),
        spec("sunion", -2, READ, (1, -1, 1), sunion),
        spec("sdiff", -2, READ, (1, -1, 1), sdiff),
        spec("sinterstore", -3, WRITE, (1, -1, 1), sinterstore),
        spec("sunionstore", -3, WRITE, (1, -1, 1), sunionstore),
        spec("sdiffstore", -3, WRITE, (1, -1, 1), sdiffstore),
        spec("sintercard", -3, READ, (0, 0, 0), sintercard),
        spec("smove", 4, WRITE, (1, 2, 1), smove),
        spec("sscan", -3, READ, (1, 1, 1), sscan),
    ]
}

/// The set at `key`: `Ok(None)` if absent, WRONGTYPE for another type.
fn read<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c SetVal>, Frame> {
    read_db(ctx.db(), key)
}

fn read_db<'d>(db: &'d mut Db, key: &[u8]) -> Result<Option<&'d SetVal>, Frame> {
    match db.get_typed(key, Kind::Set) {
        Err(_) => Err(wrongtype()),
        Ok(None) => Ok(None),
        Ok(Some(entry)) => match entry.value() {
            Value::Set(s) => Ok(Some(s)),
            _ => Err(wrongtype()),
        },
    }
}

/// Every set named by `keys`, side by side (`None` for a missing key). Like
/// Redis, every key is type-checked before anything is computed.
fn read_all<'d>(db: &'d mut Db, keys: &[Bytes]) -> Result<Vec<Option<&'d SetVal>>, Frame> {
    for k in keys {
        read_db(db, k)?;
    }
    let db: &'d Db = db;
    Ok(keys
        .iter()
        .map(|k| match db.peek(k).map(|e| e.value()) {
            Some(Value::Set(s)) => Some(&**s),
            _ => None,
        })
        .collect())
}

fn is_member(set: Option<&SetVal>, member: &[u8]) -> bool {
    set.is_some_and(|s| s.members.get(member).is_some())
}

fn members_frame<'a>(members: impl IntoIterator<Item = &'a Blob>) -> Vec<Frame> {
    members.into_iter().map(|m| bulk(m)).collect()
}

/// `args` without repeats, in first-seen order.
fn distinct(args: &[Bytes]) -> Vec<&Bytes> {
    let mut seen = HashSet::with_capacity(args.len());
    args.iter().filter(|a| seen.insert(&a[..])).collect()
}

fn sadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let set = match read(ctx, key) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let (present, new): (Vec<_>, Vec<_>) = distinct(&args[2..])
        .into_iter()
        .partition(|m| is_member(set, m));
    let new: Vec<Blob> = new.into_iter().map(blob).collect();
    let present: Vec<Blob> = present.into_iter().map(blob).collect();
    let added = new.len() as i64;
    if !new.is_empty() {
        ctx.db().sadd(key, new);
        notify::emit(ctx, SET, "sadd", key);
    }
    if !present.is_empty() {
        // Re-adding refreshes the members' tags: add wins over a
        // concurrent SREM, as for a member added for the first time.
        ctx.db().sadd_again(key, present);
    }
    Frame::Integer(added)
}

fn srem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let set = match read(ctx, key) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let gone: Vec<Blob> = distinct(&args[2..])
        .into_iter()
        .filter(|m| is_member(set, m))
        .map(blob)
        .collect();
    let removed = gone.len() as i64;
    if !gone.is_empty() {
        ctx.db().srem(key, gone);
        notify::emit(ctx, SET, "srem", key);
        notify::emit_del_if_emptied(ctx, key);
    }
    Frame::Integer(removed)
}

fn smembers(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(s) => Frame::Set(s.map_or_else(Vec::new, |s| members_frame(s.members.live.keys()))),
        Err(e) => e,
    }
}

fn sismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(s) => Frame::Integer(is_member(s, &args[2]) as i64),
        Err(e) => e,
    }
}

fn smismember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(s) => Frame::Array(
            args[2..]
                .iter()
                .map(|m| Frame::Integer(is_member(s, m) as i64))
                .collect(),
        ),
        Err(e) => e,
    }
}

fn scard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(s) => Frame::Integer(s.map_or(0, |s| s.members.len()) as i64),
        Err(e) => e,
    }
}

/// One element chosen uniformly, `None` if there is none.
pub(super) fn random_member<V>(map: &Map<V>) -> Option<&Blob> {
    if map.is_empty() {
        return None;
    }
    let at = rand::thread_rng().gen_range(0..map.len());
    map.get_index(at).map(|(k, _)| k)
}

/// `amount` distinct positions below `len`, in random order.
fn distinct_indexes(len: usize, amount: usize) -> Vec<usize> {
    rand::seq::index::sample(&mut rand::thread_rng(), len, amount).into_vec()
}

fn spop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let count = match args.len() {
        2 => None,
        3 => match parse_int(&args[2]) {
            Ok(n) if n >= 0 => Some(n as u64),
            _ => return Frame::error("ERR value is out of range, must be positive"),
        },
        _ => return syntax_error(),
    };
    let set = match read(ctx, key) {
        Ok(Some(s)) => s,
        Ok(None) if count.is_some() => return Frame::Set(Vec::new()),
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let live = &set.members.live;
    let chosen: Vec<Blob> = match count {
        None => random_member(live).cloned().into_iter().collect(),
        Some(n) if n >= live.len() as u64 => live.keys().cloned().collect(),
        Some(n) => distinct_indexes(live.len(), n as usize)
            .into_iter()
            .filter_map(|i| live.get_index(i).map(|(m, _)| m.clone()))
            .collect(),
    };
    let reply = match count {
        None => chosen.first().map_or(Frame::Null, |m| bulk(m)),
        Some(_) => Frame::Set(members_frame(&chosen)),
    };
    if !chosen.is_empty() {
        ctx.db().srem(key, chosen);
        notify::emit(ctx, SET, "spop", key);
        notify::emit_del_if_emptied(ctx, key);
    }
    reply
}

/// The count of SRANDMEMBER/HRANDFIELD: any `long` but `LONG_MIN`, as in
/// Redis.
pub(super) fn parse_random_count(arg: &[u8]) -> Result<i64, Frame> {
    match parse_int(arg)? {
        i64::MIN => Err(out_of_range(-i64::MAX)),
        n => Ok(n),
    }
}

/// Refuses a negative count beyond [`RANDOM_REPEATS_MAX`].
pub(super) fn check_repeats(count: i64) -> Result<(), Frame> {
    if count < -RANDOM_REPEATS_MAX {
        return Err(out_of_range(-RANDOM_REPEATS_MAX));
    }
    Ok(())
}

fn out_of_range(min: i64) -> Frame {
    Frame::error(format!(
        "ERR value is out of range, value must between {min} and {}",
        i64::MAX
    ))
}

/// Positions for a random reply with `count` elements drawn from `len`: a
/// negative count draws with repeats, a positive one without, and a count
/// at least `len` takes everything in order.
pub(super) fn random_positions(len: usize, count: i64) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    if count < 0 {
        let mut rng = rand::thread_rng();
        return (0..count.unsigned_abs())
            .map(|_| rng.gen_range(0..len))
            .collect();
    }
    if count as u64 >= len as u64 {
        return (0..len).collect();
    }
    distinct_indexes(len, count as usize)
}

fn srandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match args.len() {
        2 => None,
        3 => match parse_random_count(&args[2]).and_then(|n| check_repeats(n).map(|_| n)) {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        _ => return syntax_error(),
    };
    let set = match read(ctx, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) if count.is_some() => return Frame::Array(Vec::new()),
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let live = &set.members.live;
    let Some(count) = count else {
        return random_member(live).map_or(Frame::Null, |m| bulk(m));
    };
    let positions = random_positions(live.len(), count);
    if count < 0 {
        // Repeats share one copy of each member's bytes.
        let copies: Vec<Bytes> = live.keys().map(|m| Bytes::copy_from_slice(m)).collect();
        return Frame::Array(
            positions
                .into_iter()
                .map(|i| Frame::Bulk(copies[i].clone()))
                .collect(),
        );
    }
    Frame::Array(
        positions
            .into_iter()
            .filter_map(|i| live.get_index(i).map(|(m, _)| bulk(m)))
            .collect(),
    )
}

/// The sets of an intersection, smallest first; `None` if one is missing.
fn by_size<'a>(sets: &[Option<&'a SetVal>]) -> Option<Vec<&'a SetVal>> {
    let mut sets = sets.iter().copied().collect::<Option<Vec<_>>>()?;
    sets.sort_by_key(|s| s.members.len());
    Some(sets)
}

/// Members common to `sets`, walking the first (smallest) one.
fn common<'a: 's, 's>(sets: &'s [&'a SetVal]) -> impl Iterator<Item = &'a Blob> + 's {
    let rest = sets.get(1..).unwrap_or_default();
    sets.first()
        .into_iter()
        .flat_map(|s| s.members.live.keys())
        .filter(move |m| rest.iter().all(|s| s.members.get(m).is_some()))
}

fn intersection<'a>(sets: &[Option<&'a SetVal>]) -> Vec<&'a Blob> {
    by_size(sets).map_or_else(Vec::new, |sets| common(&sets).collect())
}

fn union<'a>(sets: &[Option<&'a SetVal>]) -> Vec<&'a Blob> {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    sets.iter()
        .flatten()
        .flat_map(|s| s.members.live.keys())
        .filter(|m| seen.insert(&m[..]))
        .collect()
}

fn difference<'a>(sets: &[Option<&'a SetVal>]) -> Vec<&'a Blob> {
    let Some((Some(first), rest)) = sets.split_first() else {
        return Vec::new();
    };
    first
        .members
        .live
        .keys()
        .filter(|m| !rest.iter().any(|s| is_member(*s, m)))
        .collect()
}

type Combine = for<'a> fn(&[Option<&'a SetVal>]) -> Vec<&'a Blob>;

fn combine(ctx: &mut Ctx<'_>, keys: &[Bytes], op: Combine) -> Frame {
    match read_all(ctx.db(), keys) {
        Ok(sets) => Frame::Set(members_frame(op(&sets))),
        Err(e) => e,
    }
}

/// SINTERSTORE and friends; `event` is the command's name, as Redis
/// announces it.
fn combine_store(
    ctx: &mut Ctx<'_>,
    dest: &[u8],
    keys: &[Bytes],
    op: Combine,
    event: &'static str,
) -> Frame {
    let result: Vec<Blob> = match read_all(ctx.db(), keys) {
        Ok(sets) => op(&sets).into_iter().cloned().collect(),
        Err(e) => return e,
    };
    let len = result.len() as i64;
    let existed = ctx.db().del(dest);
    if !result.is_empty() {
        ctx.db().sadd(dest, result);
    }
    notify::emit_store(ctx, SET, event, dest, existed, len > 0);
    Frame::Integer(len)
}

fn sinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine(ctx, &args[1..], intersection)
}

fn sunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine(ctx, &args[1..], union)
}

fn sdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine(ctx, &args[1..], difference)
}

fn sinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine_store(ctx, &args[1], &args[2..], intersection, "sinterstore")
}

fn sunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine_store(ctx, &args[1], &args[2..], union, "sunionstore")
}

fn sdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    combine_store(ctx, &args[1], &args[2..], difference, "sdiffstore")
}

fn sintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let numkeys = match parse_int(&args[1]) {
        Ok(n) if n > 0 => n as u64,
        _ => return Frame::error("ERR numkeys should be greater than 0"),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Frame::error("ERR Number of keys can't be greater than number of args");
    }
    let keys_end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = keys_end;
    while i < args.len() {
        if eq_ignore_case(&args[i], "limit") && i + 1 < args.len() {
            limit = match parse_int(&args[i + 1]) {
                Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Frame::error("ERR LIMIT can't be negative"),
            };
            i += 2;
        } else {
            return syntax_error();
        }
    }
    let sets = match read_all(ctx.db(), &args[2..keys_end]) {
        Ok(sets) => sets,
        Err(e) => return e,
    };
    let found = by_size(&sets).map_or(0, |sets| match limit {
        0 => common(&sets).count(),
        n => common(&sets).take(n).count(),
    });
    Frame::Integer(found as i64)
}

fn smove(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let in_src = match read(ctx, src) {
        Ok(None) => return Frame::Integer(0),
        Ok(Some(s)) => s.members.get(member).is_some(),
        Err(e) => return e,
    };
    let in_dst = match read(ctx, dst) {
        Ok(s) => is_member(s, member),
        Err(e) => return e,
    };
    if src == dst || !in_src {
        return Frame::Integer(in_src as i64);
    }
    ctx.db().srem(src, vec![blob(member)]);
    notify::emit(ctx, SET, "srem", src);
    notify::emit_del_if_emptied(ctx, src);
    if !in_dst {
        ctx.db().sadd(dst, vec![blob(member)]);
        notify::emit(ctx, SET, "sadd", dst);
    }
    Frame::Integer(1)
}

/// The reply of HSCAN/SSCAN: the next cursor and the elements.
pub(super) fn scan_reply(cursor: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(cursor.to_string())),
        Frame::Array(items),
    ])
}

/// One step of a SSCAN/HSCAN walk over a collection's live elements, the
/// scheme of `Keyspace::scan`: the cursor counts down through insertion
/// order, cursor 0 starts at the end, and the walk is done when it returns 0.
/// Removal moves the last element into the hole, which the walk has already
/// passed, so an element present for the whole scan is returned at least
/// once.
pub(super) fn scan_walk<V>(
    map: &Map<V>,
    cursor: u64,
    count: usize,
    mut visit: impl FnMut(&Blob, &V),
) -> u64 {
    let len = map.len() as u64;
    let mut at = if cursor == 0 || cursor > len {
        len
    } else {
        cursor
    };
    let mut seen = 0;
    while at > 0 && seen < count.max(1) {
        at -= 1;
        if let Some((k, v)) = map.get_index(at as usize) {
            visit(k, v);
        }
        seen += 1;
    }
    at
}

/// The cursor of SSCAN/HSCAN, read as Redis reads it (`strtoul`): an empty
/// cursor is 0, a sign is allowed, and a negative number wraps around.
fn parse_cursor(arg: &[u8]) -> Result<u64, Frame> {
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ if arg.is_empty() => return Ok(0),
        _ => (false, arg),
    };
    let n = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| Frame::error("ERR invalid cursor"))?;
    Ok(if negative { n.wrapping_neg() } else { n })
}

/// The `[MATCH pattern] [COUNT count]` options of SSCAN/HSCAN.
pub(super) struct ScanOpts {
    pub cursor: u64,
    pattern: Option<Bytes>,
    pub count: usize,
}

impl ScanOpts {
    /// Whether `name` passes the MATCH pattern.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, name, false))
    }
}

/// Reads `key cursor [MATCH pattern] [COUNT count]` in Redis's order: a bad
/// cursor first, then the key (a missing key replies an empty scan before
/// the options are read, another type WRONGTYPE), then the options.
/// `Ok(None)` is the missing key.
pub(super) fn scan_args<'c, T>(
    ctx: &'c mut Ctx<'_>,
    args: &[Bytes],
    read: impl FnOnce(&'c mut Ctx<'_>, &[u8]) -> Result<Option<&'c T>, Frame>,
) -> Result<Option<(&'c T, ScanOpts)>, Frame> {
    let cursor = parse_cursor(&args[2])?;
    let Some(value) = read(ctx, &args[1])? else {
        return Ok(None);
    };
    let mut opts = ScanOpts {
        cursor,
        pattern: None,
        count: 10,
    };
    let mut i = 3;
    while i < args.len() {
        let Some(next) = args.get(i + 1) else {
            return Err(syntax_error());
        };
        if eq_ignore_case(&args[i], "count") {
            opts.count = match parse_int(next)? {
                n if n >= 1 => n as usize,
                _ => return Err(syntax_error()),
            };
        } else if eq_ignore_case(&args[i], "match") {
            opts.pattern = Some(next.clone());
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok(Some((value, opts)))
}

/// Members that are all integers, in ascending order, if the set is one
/// Redis would keep as an intset.
fn as_intset(set: &SetVal) -> Option<Vec<(i64, &Blob)>> {
    if set.members.len() > SCAN_INTSET_ENTRIES_MAX {
        return None;
    }
    let mut ints = set
        .members
        .live
        .keys()
        .map(|m| meridian_crdt::num::parse_strict_i64(m).map(|n| (n, m)))
        .collect::<Option<Vec<_>>>()?;
    ints.sort_unstable_by_key(|(n, _)| *n);
    Some(ints)
}

fn sscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (set, opts) = match scan_args(ctx, args, read) {
        Ok(Some(found)) => found,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    if let Some(ints) = as_intset(set) {
        let items = ints
            .into_iter()
            .filter(|(_, m)| opts.matches(m))
            .map(|(_, m)| bulk(m))
            .collect();
        return scan_reply(0, items);
    }
    let mut items = Vec::new();
    let next = scan_walk(&set.members.live, opts.cursor, opts.count, |m, _| {
        if opts.matches(m) {
            items.push(bulk(m));
        }
    });
    scan_reply(next, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_like_strtoul() {
        assert_eq!(parse_cursor(b"0").ok(), Some(0));
        assert_eq!(parse_cursor(b"").ok(), Some(0));
        assert_eq!(parse_cursor(b"+3").ok(), Some(3));
        assert_eq!(parse_cursor(b"-0").ok(), Some(0));
        assert_eq!(parse_cursor(b"-1").ok(), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615").ok(), Some(u64::MAX));
        for bad in [
            &b"18446744073709551616"[..],
            b"-",
            b"+",
            b" 1",
            b"1 ",
            b"0x1",
            b"1.0",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn negative_random_counts_are_bounded() {
        assert!(check_repeats(-RANDOM_REPEATS_MAX).is_ok());
        assert!(check_repeats(-RANDOM_REPEATS_MAX - 1).is_err());
        assert!(check_repeats(i64::MAX).is_ok());
        assert!(parse_random_count(b"-9223372036854775808").is_err());
        assert_eq!(random_positions(3, -5).len(), 5);
        assert_eq!(random_positions(3, 10), vec![0, 1, 2]);
        let mut distinct = random_positions(10, 4);
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn scan_walk_returns_every_element_present_throughout() {
        let mut map: Map<()> = Map::default();
        for i in 0..100 {
            map.insert(Blob::from(format!("e{i}").as_str()), ());
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = scan_walk(&map, cursor, 7, |k, _| {
                seen.insert(k.clone());
            });
            step += 1;
            if step == 3 {
                // Removals and additions in the middle of the walk.
                for i in (0..100).step_by(9) {
                    map.swap_remove(format!("e{i}").as_bytes());
                }
                for i in 100..130 {
                    map.insert(Blob::from(format!("e{i}").as_str()), ());
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in (0..100).filter(|i| i % 9 != 0) {
            assert!(seen.contains(format!("e{i}").as_bytes()), "e{i} missed");
        }
    }
}
