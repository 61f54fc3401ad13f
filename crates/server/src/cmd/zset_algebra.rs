//! The algebra of sorted sets: ZUNION, ZINTER, ZDIFF, their `*STORE` forms
//! and ZINTERCARD, as Redis's `zunionInterDiffGenericCommand` does them.
//!
//! Inputs may be sorted sets or plain sets (a set member counts with score
//! 1); a missing key is an empty input. Every input key is type-checked
//! before the options after the keys are read, so WRONGTYPE wins over a
//! syntax error there, as in Redis.
//!
//! The result is computed from this region's view. A `*STORE` writes it
//! through [`zset::store`]: a delete of what the destination held and a
//! `zadd` of the result in one op, which peers apply as they apply a DEL
//! followed by ZADD. What replicates is therefore the stored result, never
//! the recipe: another region does not recompute the union from its own
//! copies of the inputs.
//!
//! The arithmetic follows Redis exactly: a score is multiplied by its
//! input's weight and a NaN product (`inf × 0`) counts as 0; SUM counts
//! `inf + -inf` as 0; the inputs of a union or intersection are taken
//! smallest first (Redis sorts them by size), which decides the result when
//! infinities of both signs meet.

use std::collections::HashMap;

use bytes::Bytes;
use meridian_crdt::value::Score;
use meridian_crdt::{Blob, Kind, SetVal, Value, ZSetVal};
use meridian_resp::{parse_redis_double, Frame, Protocol};
use meridian_store::Db;

use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{eq_ignore_case, parse_int, syntax_error, wrongtype};
use super::zset;

/// Key positions as Redis's `COMMAND INFO` gives them: the inputs move with
/// numkeys, so only a `*STORE`'s destination has a fixed place.
pub fn specs() -> Vec<Spec> {
    vec![
        spec("zunion", -3, READ, (0, 0, 0), zunion),
        spec("zinter", -3, READ, (0, 0, 0), zinter),
        spec("zdiff", -3, READ, (0, 0, 0), zdiff),
        spec("zunionstore", -4, WRITE, (1, 1, 1), zunionstore),
        spec("zinterstore", -4, WRITE, (1, 1, 1), zinterstore),
        spec("zdiffstore", -4, WRITE, (1, 1, 1), zdiffstore),
        spec("zintercard", -3, READ, (0, 0, 0), zintercard),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    Union,
    Inter,
    Diff,
}

/// How the scores of one member in several inputs become one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`. MIN and MAX compare as C does, so a
    /// NaN `val` leaves `acc` as it is.
    fn fold(self, acc: &mut f64, val: f64) {
        match self {
            Aggregate::Sum => {
                *acc += val;
                if acc.is_nan() {
                    *acc = 0.0;
                }
            }
            Aggregate::Min => {
                if val < *acc {
                    *acc = val;
                }
            }
            Aggregate::Max => {
                if val > *acc {
                    *acc = val;
                }
            }
        }
    }
}

/// One input of the algebra.
#[derive(Clone, Copy)]
enum Input<'a> {
    Missing,
    ZSet(&'a ZSetVal),
    Set(&'a SetVal),
}

impl<'a> Input<'a> {
    fn len(self) -> usize {
        match self {
            Input::Missing => 0,
            Input::ZSet(z) => z.len(),
            Input::Set(s) => s.members.len(),
        }
    }

    fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            Input::Missing => None,
            Input::ZSet(z) => z.score(member),
            Input::Set(s) => s.members.get(member).map(|_| 1.0),
        }
    }

    fn members(self) -> Box<dyn Iterator<Item = (&'a Blob, f64)> + 'a> {
        match self {
            Input::Missing => Box::new(std::iter::empty()),
            Input::ZSet(z) => Box::new(z.index.iter().map(|(s, m)| (m, s.0))),
            Input::Set(s) => Box::new(s.members.live.keys().map(|m| (m, 1.0))),
        }
    }
}

/// The inputs named by `keys`, in order. Like Redis, every key is checked
/// before anything is computed, and the first of another type is an error.
fn read_inputs<'d>(db: &'d mut Db, keys: &[Bytes]) -> Result<Vec<Input<'d>>, Frame> {
    for k in keys {
        // `get` first: it expires a key whose deadline has passed.
        if let Some(e) = db.get(k) {
            if !matches!(e.kind(), Kind::ZSet | Kind::Set) {
                return Err(wrongtype());
            }
        }
    }
    let db: &'d Db = db;
    Ok(keys
        .iter()
        .map(|k| match db.peek(k).map(|e| e.value()) {
            Some(Value::ZSet(z)) => Input::ZSet(z),
            Some(Value::Set(s)) => Input::Set(s),
            _ => Input::Missing,
        })
        .collect())
}

/// What follows the input keys.
struct Options {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT; 0 is no limit.
    limit: usize,
}

/// The command being run, which decides where its keys are and which
/// options it accepts.
#[derive(Clone, Copy)]
struct Form {
    /// For Redis's message about too few keys.
    name: &'static str,
    combine: Combine,
    /// A `*STORE` form: the destination comes first; no WITHSCORES.
    store: bool,
    /// ZINTERCARD: only LIMIT.
    cardinality: bool,
}

impl Form {
    const fn new(name: &'static str, combine: Combine, store: bool) -> Form {
        Form {
            name,
            combine,
            store,
            cardinality: false,
        }
    }
}

const ZUNION: Form = Form::new("zunion", Combine::Union, false);
const ZINTER: Form = Form::new("zinter", Combine::Inter, false);
const ZDIFF: Form = Form::new("zdiff", Combine::Diff, false);
const ZUNIONSTORE: Form = Form::new("zunionstore", Combine::Union, true);
const ZINTERSTORE: Form = Form::new("zinterstore", Combine::Inter, true);
const ZDIFFSTORE: Form = Form::new("zdiffstore", Combine::Diff, true);
const ZINTERCARD: Form = Form {
    cardinality: true,
    ..Form::new("zintercard", Combine::Inter, false)
};

/// The input keys: `args[at]` is numkeys, the keys follow it. `name` is the
/// command, for Redis's message about too few keys.
fn input_keys<'a>(args: &'a [Bytes], at: usize, name: &str) -> Result<&'a [Bytes], Frame> {
    let numkeys = parse_int(&args[at])?;
    if numkeys < 1 {
        return Err(Frame::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let first = at + 1;
    match usize::try_from(numkeys) {
        Ok(n) if n <= args.len() - first => Ok(&args[first..first + n]),
        _ => Err(syntax_error()),
    }
}

/// Reads the options after `numkeys` inputs in Redis's order: a repeated
/// option overrides the earlier one, and WEIGHTS takes exactly one weight
/// per input.
fn parse_options(rest: &[Bytes], numkeys: usize, form: Form) -> Result<Options, Frame> {
    let mut opts = Options {
        weights: vec![1.0; numkeys],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let weighs = form.combine != Combine::Diff && !form.cardinality;
    let mut j = 0;
    while j < rest.len() {
        let remaining = rest.len() - j;
        let opt = &rest[j];
        if weighs && remaining > numkeys && eq_ignore_case(opt, "weights") {
            for (w, arg) in opts.weights.iter_mut().zip(&rest[j + 1..]) {
                *w = parse_redis_double(arg)
                    .ok_or_else(|| Frame::error("ERR weight value is not a float"))?;
            }
            j += 1 + numkeys;
        } else if weighs && remaining >= 2 && eq_ignore_case(opt, "aggregate") {
            let name = &rest[j + 1];
            opts.aggregate = if eq_ignore_case(name, "sum") {
                Aggregate::Sum
            } else if eq_ignore_case(name, "min") {
                Aggregate::Min
            } else if eq_ignore_case(name, "max") {
                Aggregate::Max
            } else {
                return Err(syntax_error());
            };
            j += 2;
        } else if !form.store && !form.cardinality && eq_ignore_case(opt, "withscores") {
            opts.withscores = true;
            j += 1;
        } else if form.cardinality && remaining >= 2 && eq_ignore_case(opt, "limit") {
            opts.limit = match parse_int(&rest[j + 1]) {
                Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Frame::error("ERR LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(opts)
}

/// An input's score times its weight, with Redis's rule that a NaN product
/// (`inf × 0`) is 0.
fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// The inputs with their weights, smallest input first, in a stable order
/// among equals (Redis `qsort`s them by size before a union or an
/// intersection).
fn by_size<'a>(inputs: &[Input<'a>], weights: &[f64]) -> Vec<(Input<'a>, f64)> {
    let mut sized: Vec<(Input<'a>, f64)> = inputs.iter().copied().zip(weights.to_vec()).collect();
    sized.sort_by_key(|(input, _)| input.len());
    sized
}

fn union<'a>(inputs: &[Input<'a>], opts: &Options) -> HashMap<&'a Blob, f64> {
    let mut acc: HashMap<&'a Blob, f64> = HashMap::new();
    for (input, weight) in by_size(inputs, &opts.weights) {
        for (member, score) in input.members() {
            let score = weighted(score, weight);
            acc.entry(member)
                .and_modify(|a| opts.aggregate.fold(a, score))
                .or_insert(score);
        }
    }
    acc
}

/// The members of every input with their aggregated scores, walking the
/// smallest input and stopping after `limit` members (0: no limit).
fn intersection<'a>(inputs: &[Input<'a>], opts: &Options, limit: usize) -> Vec<(&'a Blob, f64)> {
    let sized = by_size(inputs, &opts.weights);
    let Some((&(first, first_weight), rest)) = sized.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    'members: for (member, score) in first.members() {
        let mut acc = weighted(score, first_weight);
        for &(input, weight) in rest {
            // Unlike the first input's, these products are not cleared of
            // NaN before they are folded in, as in Redis.
            let Some(score) = input.score(member) else {
                continue 'members;
            };
            opts.aggregate.fold(&mut acc, score * weight);
        }
        out.push((member, acc));
        if out.len() == limit {
            break;
        }
    }
    out
}

/// The members of the first input found in none of the others, with the
/// first input's scores (ZDIFF takes no weights).
fn difference<'a>(inputs: &[Input<'a>]) -> Vec<(&'a Blob, f64)> {
    let Some((&first, rest)) = inputs.split_first() else {
        return Vec::new();
    };
    first
        .members()
        .filter(|(m, _)| rest.iter().all(|input| input.score(m).is_none()))
        .collect()
}

/// The result in Redis's order: by score, then by member bytes. Redis's
/// comparison has -0 equal to 0, so those tie and go by member; a -0 is
/// still replied as `-0` (and stored as 0, as every stored score is).
fn ordered<'a>(items: impl IntoIterator<Item = (&'a Blob, f64)>) -> Vec<(Blob, f64)> {
    let mut items: Vec<(Blob, f64)> = items.into_iter().map(|(m, s)| (m.clone(), s)).collect();
    let key = |s: f64| Score(if s == 0.0 { 0.0 } else { s });
    items.sort_unstable_by(|a, b| key(a.1).cmp(&key(b.1)).then_with(|| a.0.cmp(&b.0)));
    items
}

/// Every command of the family: numkeys, the input keys and the options,
/// after the destination of a `*STORE`.
fn generic(ctx: &mut Ctx<'_>, args: &[Bytes], form: Form) -> Frame {
    let numkeys_at = if form.store { 2 } else { 1 };
    let keys = match input_keys(args, numkeys_at, form.name) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let nested = ctx.proto() == Protocol::Resp3;
    let inputs = match read_inputs(ctx.db(), keys) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let opts = match parse_options(&args[numkeys_at + 1 + keys.len()..], keys.len(), form) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if form.cardinality {
        return Frame::Integer(intersection(&inputs, &opts, opts.limit).len() as i64);
    }
    let items = match form.combine {
        Combine::Union => ordered(union(&inputs, &opts)),
        Combine::Inter => ordered(intersection(&inputs, &opts, 0)),
        Combine::Diff => ordered(difference(&inputs)),
    };
    if form.store {
        zset::store(ctx, &args[1], items, form.name)
    } else {
        zset::members_reply(items, opts.withscores, opts.withscores && nested)
    }
}

fn zunion(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZUNION)
}

fn zinter(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZINTER)
}

fn zdiff(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZDIFF)
}

fn zunionstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZUNIONSTORE)
}

fn zinterstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZINTERSTORE)
}

fn zdiffstore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZDIFFSTORE)
}

fn zintercard(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    generic(ctx, args, ZINTERCARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sorted set as a union reads it: the members' count and the score
    /// index (the members carry no scores of their own here).
    fn zset(items: &[(&str, f64)]) -> ZSetVal {
        let mut z = ZSetVal::default();
        for (m, s) in items {
            z.index.insert((Score(*s), Blob::from(*m)));
            z.members.live.insert(Blob::from(*m), Default::default());
        }
        z
    }

    fn options(weights: &[f64], aggregate: Aggregate) -> Options {
        Options {
            weights: weights.to_vec(),
            aggregate,
            withscores: true,
            limit: 0,
        }
    }

    #[test]
    fn sum_of_opposite_infinities_is_zero() {
        let mut acc = f64::INFINITY;
        Aggregate::Sum.fold(&mut acc, f64::NEG_INFINITY);
        assert_eq!(acc, 0.0);
        let mut acc = 1.0;
        Aggregate::Min.fold(&mut acc, f64::NAN);
        assert_eq!(acc, 1.0);
        assert_eq!(weighted(f64::INFINITY, 0.0), 0.0);
    }

    /// Redis adds the smaller inputs first: `inf + 1 + -inf` is 0 whatever
    /// order the keys were given in, where `inf + -inf + 1` would be 1.
    #[test]
    fn union_takes_the_smallest_inputs_first() {
        let (a, b, c) = (
            zset(&[("x", f64::INFINITY)]),
            zset(&[("x", f64::NEG_INFINITY), ("y", 1.0)]),
            zset(&[("x", 1.0)]),
        );
        let opts = options(&[1.0; 3], Aggregate::Sum);
        for order in [[&a, &b, &c], [&b, &a, &c]] {
            let inputs: Vec<Input<'_>> = order.iter().map(|z| Input::ZSet(z)).collect();
            let got = union(&inputs, &opts);
            assert_eq!(got.get(&Blob::from("x")), Some(&0.0));
        }
    }

    #[test]
    fn options_follow_redis() {
        let form = ZUNION;
        let args = |words: &[&str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let o = parse_options(&args(&["weights", "1", "2", "weights", "3", "4"]), 2, form)
            .ok()
            .unwrap();
        assert_eq!(o.weights, vec![3.0, 4.0]);
        assert!(parse_options(&args(&["weights", "1"]), 2, form).is_err());
        assert!(parse_options(&args(&["weights", "1", "nan"]), 2, form).is_err());
        assert!(parse_options(&args(&["withscores"]), 1, ZUNIONSTORE).is_err());
        assert!(parse_options(&args(&["aggregate", "min"]), 1, ZDIFF).is_err());
        assert!(parse_options(&args(&["weights", "1"]), 1, ZINTERCARD).is_err());
    }
}
