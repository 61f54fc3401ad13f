//! Sorted-set commands.
//!
//! A sorted set merges as an observed-remove set of members, each with a
//! score that is a last-writer-wins base plus summed increments (SPEC §2).
//! Every handler decides locally what Redis would do and then writes the
//! smallest effect that has that result, because other regions merge the
//! effect, not the reply:
//! - ZADD evaluates NX/XX/GT/LT against the current scores and writes a
//!   `zadd` of the final scores of only the members it adds or changes; a
//!   member it leaves alone must not overwrite a concurrent write elsewhere.
//! - ZINCRBY and ZADD INCR write a `zincr` of the increment, never a `zadd`
//!   of the sum, so increments made concurrently in two regions add up.
//! - ZREM, ZPOPMIN/ZPOPMAX and the ZREMRANGEBY* commands write a `zrem` of
//!   exactly the members they removed, so a member added concurrently in
//!   another region survives (add wins).
//! - ZRANGESTORE, like the `*STORE` commands of `zset_algebra.rs`, replaces
//!   its destination with a delete of what this region observed there and
//!   a `zadd` of the result, in one op ([`store`]).
//!
//! ZMPOP lives in `zset_pop.rs` and the set algebra (ZUNION, ZINTER, ZDIFF,
//! their `*STORE` forms, ZINTERCARD) in `zset_algebra.rs`; both build on
//! the helpers here.
//!
//! Members are ordered by score, then by member bytes, which is what the
//! `ZSetVal.index` of `(Score, Blob)` holds. Ranks are found by walking that
//! index, so ZRANK and rank ranges cost O(rank), not Redis's O(log n).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;

use bytes::Bytes;
use meridian_crdt::value::Score;
use meridian_crdt::{Blob, Kind, Value, ZSetVal};
use meridian_resp::{format_double, Frame, Protocol};
use rand::Rng;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{
    blob, bulk, eq_ignore_case, glob_match, normalize_range, parse_float, parse_int, parse_scan,
    syntax_error, wrongtype,
};
use crate::notify::{self, ZSET};

const ERR_NAN: &str = "ERR resulting score is not a number (NaN)";
const ERR_SCORE_RANGE: &str = "ERR min or max is not a float";
const ERR_LEX_RANGE: &str = "ERR min or max not valid string range item";
const ERR_NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

/// Redis 7.0 keeps a sorted set of at most this many members, none longer
/// than [`SMALL_MEMBER_MAX_BYTES`], as one listpack, which ZSCAN returns
/// whole (`zset-max-ziplist-entries`, `zset-max-ziplist-value`).
const SMALL_MEMBERS_MAX: usize = 128;
const SMALL_MEMBER_MAX_BYTES: usize = 64;

/// The most elements one ZRANDMEMBER reply may hold: a negative count asks
/// for that many samples with repetition, and the reply is built in memory.
const RANDOM_REPLY_MAX: u64 = 1_000_000;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("zadd", -4, WRITE, (1, 1, 1), zadd),
        spec("zincrby", 4, WRITE, (1, 1, 1), zincrby),
        spec("zrem", -3, WRITE, (1, 1, 1), zrem),
        spec("zscore", 3, READ, (1, 1, 1), zscore),
        spec("zmscore", -3, READ, (1, 1, 1), zmscore),
        spec("zcard", 2, READ, (1, 1, 1), zcard),
        spec("zcount", 4, READ, (1, 1, 1), zcount),
        spec("zlexcount", 4, READ, (1, 1, 1), zlexcount),
        spec("zrange", -4, READ, (1, 1, 1), zrange),
        spec("zrevrange", -4, READ, (1, 1, 1), zrevrange),
        spec("zrangebyscore", -4, READ, (1, 1, 1), zrangebyscore),
        spec("zrevrangebyscore", -4, READ, (1, 1, 1), zrevrangebyscore),
        spec("zrangebylex", -4, READ, (1, 1, 1), zrangebylex),
        spec("zrangestore", -5, WRITE, (1, 2, 1), zrangestore),
        spec("zrevrangebylex", -4, READ, (1, 1, 1), zrevrangebylex),
        spec("zrank", 3, READ, (1, 1, 1), zrank),
        spec("zrevrank", 3, READ, (1, 1, 1), zrevrank),
        spec("zpopmin", -2, WRITE, (1, 1, 1), zpopmin),
        spec("zpopmax", -2, WRITE, (1, 1, 1), zpopmax),
        spec("zrandmember", -2, READ, (1, 1, 1), zrandmember),
        spec("zscan", -3, READ, (1, 1, 1), zscan),
        spec("zremrangebyscore", 4, WRITE, (1, 1, 1), zremrangebyscore),
        spec("zremrangebyrank", 4, WRITE, (1, 1, 1), zremrangebyrank),
        spec("zremrangebylex", 4, WRITE, (1, 1, 1), zremrangebylex),
    ]
}

/// The sorted set at `key`: `Ok(None)` if absent, an error frame if the key
/// holds another type.
pub(super) fn read<'a>(ctx: &'a mut Ctx<'_>, key: &[u8]) -> Result<Option<&'a ZSetVal>, Frame> {
    match ctx.db().get_typed(key, Kind::ZSet) {
        Err(_) => Err(wrongtype()),
        Ok(None) => Ok(None),
        Ok(Some(entry)) => match entry.value() {
            Value::ZSet(z) => Ok(Some(z)),
            _ => Err(wrongtype()),
        },
    }
}

/// Members, with their scores when asked: flat `[m, s, m, s, …]`, or
/// `[[m, s], …]` where Redis nests the pairs (RESP3).
pub(super) fn members_reply(items: Vec<(Blob, f64)>, withscores: bool, nested: bool) -> Frame {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (member, score) in items {
        let member = bulk(&member);
        if !withscores {
            out.push(member);
        } else if nested {
            out.push(Frame::Array(vec![member, Frame::Double(score)]));
        } else {
            out.push(member);
            out.push(Frame::Double(score));
        }
    }
    Frame::Array(out)
}

// ----- score and lex intervals -----

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A score bound read the way Redis's `zslParseRange` reads it with
/// `strtod`: leading white space is skipped, the empty string is 0, values
/// out of range saturate to ±inf or 0, and NaN is refused.
fn parse_bound_score(text: &[u8]) -> Option<f64> {
    if text.is_empty() {
        return Some(0.0);
    }
    let start = text.iter().position(|b| !is_c_space(*b))?;
    let body = &text[start..];
    parse_redis_double_or_saturated(body).filter(|v| !v.is_nan())
}

fn parse_redis_double_or_saturated(body: &[u8]) -> Option<f64> {
    meridian_resp::parse_redis_double(body)
        .or_else(|| std::str::from_utf8(body).ok()?.parse::<f64>().ok())
}

/// Start and end of a span of the `(score, member)` index.
type IndexBounds = (Bound<(Score, Blob)>, Bound<(Score, Blob)>);

/// A score interval such as `(1.5 +inf`.
#[derive(Debug, Clone, Copy)]
struct ScoreRange {
    min: f64,
    min_ex: bool,
    max: f64,
    max_ex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, Frame> {
        fn bound(arg: &[u8]) -> Option<(f64, bool)> {
            match arg.split_first() {
                Some((b'(', rest)) => parse_bound_score(rest).map(|v| (v, true)),
                _ => parse_bound_score(arg).map(|v| (v, false)),
            }
        }
        match (bound(min), bound(max)) {
            (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
                min,
                min_ex,
                max,
                max_ex,
            }),
            _ => Err(Frame::error(ERR_SCORE_RANGE)),
        }
    }

    /// Bounds on the `(score, member)` index selecting exactly the members
    /// whose score is in the interval; `None` when no score can be. Stored
    /// scores are never -0.0, so a -0.0 bound is read as 0.0, which keeps
    /// IEEE comparison (where -0.0 == 0.0) in the index's total order.
    fn index_bounds(&self) -> Option<IndexBounds> {
        if self.min > self.max || (self.min == self.max && (self.min_ex || self.max_ex)) {
            return None;
        }
        let norm = |v: f64| if v == 0.0 { 0.0 } else { v };
        let (min, max) = (norm(self.min), norm(self.max));
        let start = if self.min_ex {
            if min == f64::INFINITY {
                return None;
            }
            min.next_up()
        } else {
            min
        };
        let end = if self.max_ex {
            Bound::Excluded((Score(max), Blob::new()))
        } else if max == f64::INFINITY {
            Bound::Unbounded
        } else {
            Bound::Excluded((Score(max.next_up()), Blob::new()))
        };
        Some((Bound::Included((Score(start), Blob::new())), end))
    }

    /// The members in the interval, lowest first or (`rev`) highest first.
    fn members<'a>(
        &self,
        z: &'a ZSetVal,
        rev: bool,
    ) -> Box<dyn Iterator<Item = &'a (Score, Blob)> + 'a> {
        let span = self
            .index_bounds()
            .map(|b| z.index.range(b))
            .into_iter()
            .flatten();
        if rev {
            Box::new(span.rev())
        } else {
            Box::new(span)
        }
    }
}

/// One end of a lex interval: `-`, `+`, `[member` or `(member`.
#[derive(Debug, Clone, Copy)]
enum LexBound<'a> {
    Min,
    Max,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

impl<'a> LexBound<'a> {
    /// Redis's `zslParseLexRangeItem`: `+` and `-` stand alone (C string
    /// comparison: a NUL may follow).
    fn parse(arg: &'a [u8]) -> Option<LexBound<'a>> {
        let alone = arg.get(1).is_none_or(|b| *b == 0);
        match arg.first() {
            Some(b'+') if alone => Some(LexBound::Max),
            Some(b'-') if alone => Some(LexBound::Min),
            Some(b'(') => Some(LexBound::Excl(&arg[1..])),
            Some(b'[') => Some(LexBound::Incl(&arg[1..])),
            _ => None,
        }
    }

    fn exclusive(self) -> bool {
        !matches!(self, LexBound::Incl(_))
    }

    /// `member` compared with this bound (Redis's `sdscmplex`).
    fn cmp_member(self, member: &[u8]) -> Ordering {
        match self {
            LexBound::Min => Ordering::Greater,
            LexBound::Max => Ordering::Less,
            LexBound::Incl(b) | LexBound::Excl(b) => member.cmp(b),
        }
    }

    fn index_bound(self, score: Score) -> Bound<(Score, Blob)> {
        match self {
            LexBound::Min | LexBound::Max => Bound::Unbounded,
            LexBound::Incl(b) => Bound::Included((score, Blob::from(b))),
            LexBound::Excl(b) => Bound::Excluded((score, Blob::from(b))),
        }
    }
}

/// A lex interval such as `[a (c`.
#[derive(Debug, Clone, Copy)]
struct LexRange<'a> {
    min: LexBound<'a>,
    max: LexBound<'a>,
}

impl<'a> LexRange<'a> {
    fn parse(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, Frame> {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(Frame::error(ERR_LEX_RANGE)),
        }
    }

    fn gte_min(&self, member: &[u8]) -> bool {
        match self.min.cmp_member(member) {
            Ordering::Greater => true,
            Ordering::Equal => !self.min.exclusive(),
            Ordering::Less => false,
        }
    }

    fn lte_max(&self, member: &[u8]) -> bool {
        match self.max.cmp_member(member) {
            Ordering::Less => true,
            Ordering::Equal => !self.max.exclusive(),
            Ordering::Greater => false,
        }
    }

    /// No member can be in the interval (Redis compares the bounds first).
    fn always_empty(&self) -> bool {
        use LexBound::*;
        let cmp = match (self.min, self.max) {
            (Min, Min) | (Max, Max) => Ordering::Equal,
            (Min, _) | (_, Max) => Ordering::Less,
            (Max, _) | (_, Min) => Ordering::Greater,
            (Incl(a) | Excl(a), Incl(b) | Excl(b)) => a.cmp(b),
        };
        cmp == Ordering::Greater
            || (cmp == Ordering::Equal && (self.min.exclusive() || self.max.exclusive()))
    }

    /// The members in the interval, in index order or (`rev`) reversed.
    ///
    /// Lex intervals are meant for sets whose members all have one score;
    /// then the index is searched directly. With mixed scores the result is
    /// what Redis gives for a small set: from the first member (in score
    /// order) at or above `min`, while members stay at or below `max`.
    fn members<'b>(
        &self,
        z: &'b ZSetVal,
        rev: bool,
    ) -> Box<dyn Iterator<Item = &'b (Score, Blob)> + 'b>
    where
        'a: 'b,
    {
        let (Some(first), Some(last)) = (z.index.first(), z.index.last()) else {
            return Box::new(std::iter::empty());
        };
        if self.always_empty() || !self.gte_min(&last.1) || !self.lte_max(&first.1) {
            return Box::new(std::iter::empty());
        }
        let range = *self;
        if first.0 == last.0 {
            let span = z.index.range((
                range.min.index_bound(first.0),
                range.max.index_bound(first.0),
            ));
            return if rev {
                Box::new(span.rev())
            } else {
                Box::new(span)
            };
        }
        if rev {
            Box::new(
                z.index
                    .iter()
                    .rev()
                    .skip_while(move |(_, m)| !range.lte_max(m))
                    .take_while(move |(_, m)| range.gte_min(m)),
            )
        } else {
            Box::new(
                z.index
                    .iter()
                    .skip_while(move |(_, m)| !range.gte_min(m))
                    .take_while(move |(_, m)| range.lte_max(m)),
            )
        }
    }
}

// ----- ZADD, ZINCRBY -----

#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// A member's score before the command and as the command has left it so
/// far (a member may appear more than once in one ZADD).
struct Slot {
    before: Option<f64>,
    now: Option<f64>,
}

/// ZADD; GEOADD runs it too, with the positions turned into scores.
pub(super) fn zadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    zadd_generic(ctx, args, AddFlags::default())
}

fn zincrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    zadd_generic(
        ctx,
        args,
        AddFlags {
            incr: true,
            ..AddFlags::default()
        },
    )
}

/// ZADD and ZINCRBY, which Redis parses alike (so ZINCRBY also reads the
/// ZADD options in front of its increment).
fn zadd_generic(ctx: &mut Ctx<'_>, args: &[Bytes], mut f: AddFlags) -> Frame {
    let key = &args[1];
    let mut at = 2;
    while let Some(opt) = args.get(at) {
        match () {
            _ if eq_ignore_case(opt, "nx") => f.nx = true,
            _ if eq_ignore_case(opt, "xx") => f.xx = true,
            _ if eq_ignore_case(opt, "gt") => f.gt = true,
            _ if eq_ignore_case(opt, "lt") => f.lt = true,
            _ if eq_ignore_case(opt, "ch") => f.ch = true,
            _ if eq_ignore_case(opt, "incr") => f.incr = true,
            _ => break,
        }
        at += 1;
    }
    let rest = &args[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return syntax_error();
    }
    if f.nx && f.xx {
        return Frame::error("ERR XX and NX options at the same time are not compatible");
    }
    if [f.gt, f.lt, f.nx].iter().filter(|on| **on).count() > 1 {
        return Frame::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && rest.len() > 2 {
        return Frame::error("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        match parse_float(&pair[0]) {
            Ok(score) => pairs.push((score, &pair[1][..])),
            Err(e) => return e,
        }
    }

    let mut slots: HashMap<&[u8], Slot> = HashMap::with_capacity(pairs.len());
    let mut order: Vec<&[u8]> = Vec::new();
    {
        let z = match read(ctx, key) {
            Ok(z) => z,
            Err(e) => return e,
        };
        if z.is_none() && f.xx {
            return if f.incr {
                Frame::Null
            } else {
                Frame::Integer(0)
            };
        }
        for &(_, member) in &pairs {
            slots.entry(member).or_insert_with(|| {
                order.push(member);
                let score = z.and_then(|z| z.score(member));
                Slot {
                    before: score,
                    now: score,
                }
            });
        }
    }

    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    for &(score, member) in &pairs {
        let Some(slot) = slots.get_mut(member) else {
            continue;
        };
        match slot.now {
            Some(current) => {
                if f.nx {
                    continue;
                }
                let new = if f.incr { current + score } else { score };
                if new.is_nan() {
                    return Frame::error(ERR_NAN);
                }
                if (f.lt && new >= current) || (f.gt && new <= current) {
                    continue;
                }
                processed += 1;
                if new != current {
                    updated += 1;
                    slot.now = Some(new);
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                processed += 1;
                added += 1;
                slot.now = Some(score);
            }
        }
    }

    if f.incr {
        // INCR takes exactly one pair, as checked above.
        let (delta, member) = pairs[0];
        if processed == 0 {
            return Frame::Null;
        }
        if slots.get(member).is_some_and(|s| s.now != s.before) {
            ctx.db().zincr(key, Blob::from(member), delta);
            notify::emit(ctx, ZSET, "zincr", key);
        }
        // The score as stored, which is what later reads show.
        return match read(ctx, key) {
            Ok(z) => z
                .and_then(|z| z.score(member))
                .map_or(Frame::Null, Frame::Double),
            Err(e) => e,
        };
    }

    let writes: Vec<(Blob, f64)> = order
        .iter()
        .filter_map(|m| {
            let slot = slots.get(m)?;
            match slot.now {
                Some(now) if slot.now != slot.before => Some((Blob::from(*m), now)),
                _ => None,
            }
        })
        .collect();
    if !writes.is_empty() {
        ctx.db().zadd(key, writes);
        notify::emit(ctx, ZSET, "zadd", key);
    }
    Frame::Integer(if f.ch { added + updated } else { added })
}

// ----- reads of single members -----

fn zscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(z) => z
            .and_then(|z| z.score(&args[2]))
            .map_or(Frame::Null, Frame::Double),
        Err(e) => e,
    }
}

fn zmscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(z) => Frame::Array(
            args[2..]
                .iter()
                .map(|m| {
                    z.and_then(|z| z.score(m))
                        .map_or(Frame::Null, Frame::Double)
                })
                .collect(),
        ),
        Err(e) => e,
    }
}

fn zcard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| z.len() as i64)),
        Err(e) => e,
    }
}

/// The 0-based position of `member` in score order, or from the top.
fn rank(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> Frame {
    let z = match read(ctx, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Frame::Null,
        Err(e) => return e,
    };
    let Some(score) = z.score(&args[2]) else {
        return Frame::Null;
    };
    let below = z.index.range(..(Score(score), blob(&args[2]))).count();
    let rank = if rev { z.len() - 1 - below } else { below };
    Frame::Integer(rank as i64)
}

fn zrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    rank(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    rank(ctx, args, true)
}

fn zcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let range = match ScoreRange::parse(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match read(ctx, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| range.members(z, false).count() as i64)),
        Err(e) => e,
    }
}

fn zlexcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let range = match LexRange::parse(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match read(ctx, &args[1]) {
        Ok(z) => Frame::Integer(z.map_or(0, |z| range.members(z, false).count() as i64)),
        Err(e) => e,
    }
}

// ----- ZRANGE and its older forms -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeBy {
    Rank,
    Score,
    Lex,
}

/// A parsed range of one of the three kinds.
enum Interval<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

/// The members `interval` selects, in reply order: `offset` and `limit`
/// (negative: no limit) apply to score and lex intervals, as LIMIT does.
fn select(
    z: &ZSetVal,
    interval: &Interval<'_>,
    rev: bool,
    offset: i64,
    limit: i64,
) -> Vec<(Blob, f64)> {
    let own = |(s, m): &(Score, Blob)| (m.clone(), s.0);
    let span = match interval {
        Interval::Rank(start, end) => {
            let Some((start, end)) = normalize_range(*start, *end, z.len()) else {
                return Vec::new();
            };
            let take = end - start + 1;
            return if rev {
                z.index
                    .iter()
                    .rev()
                    .skip(start)
                    .take(take)
                    .map(own)
                    .collect()
            } else {
                z.index.iter().skip(start).take(take).map(own).collect()
            };
        }
        Interval::Score(r) => r.members(z, rev),
        Interval::Lex(r) => r.members(z, rev),
    };
    // Redis skips `offset` members one by one, so a negative one skips all.
    if offset < 0 {
        return Vec::new();
    }
    let span = span.skip(usize::try_from(offset).unwrap_or(usize::MAX));
    match usize::try_from(limit) {
        Ok(n) => span.take(n).map(own).collect(),
        Err(_) => span.map(own).collect(),
    }
}

/// A parsed ZRANGE-family request: which members, in which order, and
/// whether the reply carries scores.
struct RangeQuery<'a> {
    interval: Interval<'a>,
    rev: bool,
    offset: i64,
    limit: i64,
    withscores: bool,
}

impl RangeQuery<'_> {
    fn select(&self, z: &ZSetVal) -> Vec<(Blob, f64)> {
        select(z, &self.interval, self.rev, self.offset, self.limit)
    }
}

/// Redis's `zrangeGenericCommand` reading its arguments: `args[src]` is the
/// source key, then min, max and the options. `by` and `rev` are fixed by
/// the older commands and `None` where ZRANGE reads them from its options;
/// `store` (ZRANGESTORE) refuses WITHSCORES as an unknown option.
fn parse_range<'a>(
    args: &'a [Bytes],
    src: usize,
    store: bool,
    mut by: Option<RangeBy>,
    mut rev: Option<bool>,
) -> Result<RangeQuery<'a>, Frame> {
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = src + 3;
    while j < args.len() {
        let opt = &args[j];
        let left = args.len() - j - 1;
        if !store && eq_ignore_case(opt, "withscores") {
            withscores = true;
        } else if eq_ignore_case(opt, "limit") && left >= 2 {
            (offset, limit) = (parse_int(&args[j + 1])?, parse_int(&args[j + 2])?);
            j += 2;
        } else if rev.is_none() && eq_ignore_case(opt, "rev") {
            rev = Some(true);
        } else if by.is_none() && eq_ignore_case(opt, "bylex") {
            by = Some(RangeBy::Lex);
        } else if by.is_none() && eq_ignore_case(opt, "byscore") {
            by = Some(RangeBy::Score);
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    let by = by.unwrap_or(RangeBy::Rank);
    let rev = rev.unwrap_or(false);
    if limit != -1 && by == RangeBy::Rank {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == RangeBy::Lex {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Score and lex intervals of a reversed range are given as max, min.
    let (lo, hi) = if rev && by != RangeBy::Rank {
        (&args[src + 2], &args[src + 1])
    } else {
        (&args[src + 1], &args[src + 2])
    };
    let interval = match by {
        RangeBy::Rank => Interval::Rank(parse_int(lo)?, parse_int(hi)?),
        RangeBy::Score => Interval::Score(ScoreRange::parse(lo, hi)?),
        RangeBy::Lex => Interval::Lex(LexRange::parse(lo, hi)?),
    };
    Ok(RangeQuery {
        interval,
        rev,
        offset,
        limit,
        withscores,
    })
}

fn range_generic(
    ctx: &mut Ctx<'_>,
    args: &[Bytes],
    by: Option<RangeBy>,
    rev: Option<bool>,
) -> Frame {
    let query = match parse_range(args, 1, false, by, rev) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let nested = query.withscores && ctx.proto() == Protocol::Resp3;
    let items = match read(ctx, &args[1]) {
        Ok(Some(z)) => query.select(z),
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    members_reply(items, query.withscores, nested)
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]:
/// ZRANGE's selection, written over `dst` (a missing source empties it).
fn zrangestore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let query = match parse_range(args, 2, true, None, None) {
        Ok(q) => q,
        Err(e) => return e,
    };
    let items = match read(ctx, &args[2]) {
        Ok(Some(z)) => query.select(z),
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    store(ctx, &args[1], items, "zrangestore")
}

/// Writes `items` over `dest` as the `*STORE` commands do (Redis's
/// `setKey`, or `dbDelete` for an empty result) and replies their count;
/// `event` is the command's name, as Redis announces it.
///
/// Whatever `dest` held, of any type, is deleted and the result added in
/// the same op, so a peer applies the replacement whole. The delete is
/// observed-remove like every other: it drops what this region had seen
/// at `dest`, and a member another region adds there concurrently
/// survives next to the stored result (add wins), as with ZADD after DEL.
pub(super) fn store(
    ctx: &mut Ctx<'_>,
    dest: &[u8],
    items: Vec<(Blob, f64)>,
    event: &'static str,
) -> Frame {
    let stored = items.len() as i64;
    let existed = ctx.db().del(dest);
    if !items.is_empty() {
        ctx.db().zadd(dest, items);
    }
    notify::emit_store(ctx, ZSET, event, dest, existed, stored > 0);
    Frame::Integer(stored)
}

fn zrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, None, None)
}

fn zrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, Some(RangeBy::Rank), Some(true))
}

fn zrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, Some(RangeBy::Score), Some(false))
}

fn zrevrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, Some(RangeBy::Score), Some(true))
}

fn zrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, Some(RangeBy::Lex), Some(false))
}

fn zrevrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range_generic(ctx, args, Some(RangeBy::Lex), Some(true))
}

// ----- removals -----

fn zrem(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let removed: Vec<Blob> = match read(ctx, key) {
        Ok(Some(z)) => {
            let mut seen = std::collections::HashSet::new();
            args[2..]
                .iter()
                .filter(|m| z.score(m).is_some() && seen.insert(&m[..]))
                .map(blob)
                .collect()
        }
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    let n = removed.len() as i64;
    if n > 0 {
        ctx.db().zrem(key, removed);
        notify::emit(ctx, ZSET, "zrem", key);
        notify::emit_del_if_emptied(ctx, key);
    }
    Frame::Integer(n)
}

/// The ZREMRANGEBY* commands: removes the members `interval` selects;
/// `event` is the command's name, as Redis announces it.
fn remove_range(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    interval: Interval<'_>,
    event: &'static str,
) -> Frame {
    let removed: Vec<Blob> = match read(ctx, key) {
        Ok(Some(z)) => select(z, &interval, false, 0, -1)
            .into_iter()
            .map(|(m, _)| m)
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return e,
    };
    let n = removed.len() as i64;
    if n > 0 {
        ctx.db().zrem(key, removed);
        notify::emit(ctx, ZSET, event, key);
        notify::emit_del_if_emptied(ctx, key);
    }
    Frame::Integer(n)
}

fn zremrangebyscore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match ScoreRange::parse(&args[2], &args[3]) {
        Ok(r) => remove_range(ctx, &args[1], Interval::Score(r), "zremrangebyscore"),
        Err(e) => e,
    }
}

fn zremrangebyrank(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(s), Ok(e)) => remove_range(ctx, &args[1], Interval::Rank(s, e), "zremrangebyrank"),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

fn zremrangebylex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match LexRange::parse(&args[2], &args[3]) {
        Ok(r) => remove_range(ctx, &args[1], Interval::Lex(r), "zremrangebylex"),
        Err(e) => e,
    }
}

/// ZPOPMIN / ZPOPMAX: without a count one member as a flat pair; with a
/// count, in RESP3, a list of pairs.
fn pop(ctx: &mut Ctx<'_>, args: &[Bytes], max: bool) -> Frame {
    if args.len() > 3 {
        return syntax_error();
    }
    let count = match args.get(2).map(|a| parse_int(a)) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => return Frame::error(ERR_NOT_POSITIVE),
    };
    let nested = count.is_some() && ctx.proto() == Protocol::Resp3;
    let n = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    match pop_ends(ctx, &args[1], max, n) {
        Ok(popped) => members_reply(popped, true, nested),
        Err(e) => e,
    }
}

/// Removes up to `n` members from the low end of the sorted set at `key`
/// (`max`: the high end) and returns them in the order popped. The write
/// is a `zrem` of exactly those members, so a member another region adds
/// concurrently survives.
pub(super) fn pop_ends(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    max: bool,
    n: usize,
) -> Result<Vec<(Blob, f64)>, Frame> {
    let popped: Vec<(Blob, f64)> = match read(ctx, key)? {
        Some(z) => {
            let own = |(s, m): &(Score, Blob)| (m.clone(), s.0);
            if max {
                z.index.iter().rev().take(n).map(own).collect()
            } else {
                z.index.iter().take(n).map(own).collect()
            }
        }
        None => Vec::new(),
    };
    if !popped.is_empty() {
        ctx.db()
            .zrem(key, popped.iter().map(|(m, _)| m.clone()).collect());
        notify::emit(ctx, ZSET, if max { "zpopmax" } else { "zpopmin" }, key);
        notify::emit_del_if_emptied(ctx, key);
    }
    Ok(popped)
}

fn zpopmin(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    pop(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    pop(ctx, args, true)
}

// ----- random members and scanning -----

fn zrandmember(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() < 3 {
        return match read(ctx, &args[1]) {
            Ok(Some(z)) if !z.members.live.is_empty() => {
                let at = rand::thread_rng().gen_range(0..z.len());
                z.members
                    .live
                    .get_index(at)
                    .map_or(Frame::Null, |(m, _)| bulk(m))
            }
            Ok(_) => Frame::Null,
            Err(e) => e,
        };
    }
    let count = match parse_int(&args[2]) {
        Ok(i64::MIN) => {
            return Frame::error(format!(
                "ERR value is out of range, value must between {} and {}",
                -i64::MAX,
                i64::MAX
            ))
        }
        Ok(n) => n,
        Err(e) => return e,
    };
    if args.len() > 4 || (args.len() == 4 && !eq_ignore_case(&args[3], "withscores")) {
        return syntax_error();
    }
    let withscores = args.len() == 4;
    if withscores && !(-i64::MAX / 2..=i64::MAX / 2).contains(&count) {
        return Frame::error("ERR value is out of range");
    }
    let nested = withscores && ctx.proto() == Protocol::Resp3;
    let z = match read(ctx, &args[1]) {
        Ok(Some(z)) if !z.members.live.is_empty() => z,
        Ok(_) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    let wanted = count.unsigned_abs();
    if wanted == 0 {
        return Frame::Array(Vec::new());
    }
    let len = z.len();
    let unique = count > 0;
    if unique && wanted >= len as u64 {
        let all = z.index.iter().map(|(s, m)| (m.clone(), s.0)).collect();
        return members_reply(all, withscores, nested);
    }
    if !unique && wanted > RANDOM_REPLY_MAX {
        return Frame::error(format!(
            "ERR count is too large, must be at most {RANDOM_REPLY_MAX}"
        ));
    }
    let live = &z.members.live;
    let at = |i: usize| live.get_index(i).map(|(m, zm)| (m.clone(), zm.score()));
    let mut rng = rand::thread_rng();
    // `wanted` is below `len` if unique, else at most RANDOM_REPLY_MAX.
    let wanted = wanted as usize;
    let picked: Vec<(Blob, f64)> = if unique {
        rand::seq::index::sample(&mut rng, len, wanted)
            .into_iter()
            .filter_map(at)
            .collect()
    } else {
        (0..wanted)
            .filter_map(|_| at(rng.gen_range(0..len)))
            .collect()
    };
    members_reply(picked, withscores, nested)
}

fn zscan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if let Err(e) = parse_scan(&args[2..3], false, false) {
        return e;
    }
    let z = match read(ctx, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Frame::Array(vec![bulk(b"0"), Frame::Array(Vec::new())]),
        Err(e) => return e,
    };
    let opts = match parse_scan(&args[2..], false, false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut out = Vec::new();
    let mut emit = |member: &Blob, score: f64| {
        let keep = opts
            .pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, member, false));
        if keep {
            out.push(bulk(member));
            out.push(Frame::Bulk(Bytes::from(format_double(score))));
        }
    };
    let live = &z.members.live;
    let small =
        live.len() <= SMALL_MEMBERS_MAX && live.keys().all(|m| m.len() <= SMALL_MEMBER_MAX_BYTES);
    let next = if small {
        for (s, m) in &z.index {
            emit(m, s.0);
        }
        0
    } else {
        // Counting down through insertion order: removing a member moves
        // the last one into its slot, which is then seen again, never
        // skipped, so a member present for the whole scan is returned.
        let len = live.len() as u64;
        let mut at = if opts.cursor == 0 || opts.cursor > len {
            len
        } else {
            opts.cursor
        };
        let mut seen = 0;
        while at > 0 && seen < opts.count {
            at -= 1;
            if let Some((m, zm)) = live.get_index(at as usize) {
                emit(m, zm.score());
            }
            seen += 1;
        }
        at
    };
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(next.to_string())),
        Frame::Array(out),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_read_like_strtod() {
        assert_eq!(parse_bound_score(b""), Some(0.0));
        assert_eq!(parse_bound_score(b"  1.5"), Some(1.5));
        assert_eq!(parse_bound_score(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_bound_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_bound_score(b"0x10"), Some(16.0));
        assert_eq!(parse_bound_score(b" "), None);
        assert_eq!(parse_bound_score(b"1 "), None);
        assert_eq!(parse_bound_score(b"nan"), None);
        assert_eq!(parse_bound_score(b"abc"), None);
    }

    /// The index bounds select exactly the scores IEEE comparison admits.
    #[test]
    fn score_interval_bounds_match_comparison() {
        let scores = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1.5,
            f64::MAX,
            f64::INFINITY,
        ];
        let mut z = ZSetVal::default();
        for (i, s) in scores.iter().enumerate() {
            let s = if *s == 0.0 { 0.0 } else { *s };
            z.index
                .insert((Score(s), Blob::from(format!("m{i}").as_str())));
        }
        for &min in &scores {
            for &max in &scores {
                for (min_ex, max_ex) in [(false, false), (true, false), (false, true), (true, true)]
                {
                    let r = ScoreRange {
                        min,
                        min_ex,
                        max,
                        max_ex,
                    };
                    let want: Vec<_> = z
                        .index
                        .iter()
                        .filter(|(s, _)| {
                            let s = s.0;
                            (if min_ex { s > min } else { s >= min })
                                && (if max_ex { s < max } else { s <= max })
                        })
                        .collect();
                    let got: Vec<_> = r.members(&z, false).collect();
                    assert_eq!(got, want, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn lex_bounds_parse_like_redis() {
        assert!(matches!(LexBound::parse(b"-"), Some(LexBound::Min)));
        assert!(matches!(LexBound::parse(b"+"), Some(LexBound::Max)));
        assert!(matches!(LexBound::parse(b"[a"), Some(LexBound::Incl(b"a"))));
        assert!(matches!(LexBound::parse(b"("), Some(LexBound::Excl(b""))));
        assert!(LexBound::parse(b"+a").is_none());
        assert!(LexBound::parse(b"a").is_none());
        assert!(LexBound::parse(b"").is_none());
    }
}
