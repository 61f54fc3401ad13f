//! The list checks of a chaos run (see the parent module for how "certainly
//! observed" and "may have observed" are decided).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Ctx, Index, KeyState};
use crate::chaos::history::{Cmd, Op, ReadValue};

fn pushed_value(op: &Op) -> Option<&str> {
    match &op.cmd {
        Cmd::Rpush { value, .. } | Cmd::Lpush { value, .. } => Some(value),
        _ => None,
    }
}

/// What a pop returned, when its reply arrived (`None`: it may have taken
/// up to its count of anything it may have observed).
fn popped(op: &Op) -> Option<&[String]> {
    match &op.read {
        Some(ReadValue::Elements(vs)) => Some(vs),
        Some(_) => Some(&[]),
        None => None,
    }
}

/// Lists (`l:*`, never deleted), from the pushed values, each unique to the
/// run:
/// - (b) the final list holds each value once, only values someone pushed,
///   and none a pop returned (a pop whose reply arrived was durable and had
///   observed the value, so it took it everywhere); every acknowledged push
///   is present, or a pop returned its value, or it is one of the values
///   the pops whose replies were lost may have taken: each such pop takes
///   at most its count, of pushes it may have observed (a matching, so no
///   lost reply explains two values more than it could have taken);
///   a pop returns only values pushed before it completed, and two pops
///   return the same value only when neither had observed the other
///   (concurrent pops in two regions: each takes what it sees);
/// - (c) a push that certainly observed another lands past it: an RPUSH
///   after it, an LPUSH before it (so one client's pushes to an end keep
///   their order), when both are still there;
/// - one order everywhere: an element's position key never changes, so
///   two elements an LRANGE returned are in the same order in the final
///   list, and an LRANGE returns only values pushed before it completed,
///   each once.
///
/// A push whose reply was lost may be present or absent.
pub(super) fn check_lists(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    let no_ops: Vec<&Op> = Vec::new();
    let mut keys: BTreeSet<&str> = ix.pushes.keys().copied().collect();
    keys.extend(ix.pops.keys());
    keys.extend(ix.list_reads.keys());
    for key in keys {
        let pushes = ix.pushes.get(key).unwrap_or(&no_ops);
        let pops = ix.pops.get(key).unwrap_or(&no_ops);
        let empty = Vec::new();
        let list = match state.get(key) {
            None => &empty,
            Some(KeyState::List(l)) => l,
            // `check_types` reports it.
            Some(_) => continue,
        };
        let by_value: HashMap<&str, &Op> = pushes
            .iter()
            .filter_map(|p| Some((pushed_value(p)?, *p)))
            .collect();
        let mut taken: HashMap<&str, Vec<&Op>> = HashMap::new();
        for pop in pops {
            for v in popped(pop).unwrap_or_default() {
                cx.count("list-pop-known");
                match by_value.get(v.as_str()) {
                    Some(p) if p.invoke_us <= pop.complete_us => {}
                    _ => cx.anomaly(
                        "list-invented",
                        key,
                        format!("a pop returned {v}, which no push had been sent for"),
                        &[*pop],
                    ),
                }
                taken.entry(v).or_default().push(pop);
            }
        }
        // Pops in two regions that had not seen each other may both take
        // an element; a pop that had observed another (certainly, or by
        // running after it in the same region) finds it gone.
        for (v, by) in &taken {
            for (i, a) in by.iter().enumerate() {
                for b in &by[i + 1..] {
                    cx.count("list-pop-pair");
                    if a.region == b.region || ix.certain(a, b) || ix.certain(b, a) {
                        cx.anomaly(
                            "list-popped-twice",
                            key,
                            format!("two pops returned {v}, and one had observed the other"),
                            &[*a, *b],
                        );
                    }
                }
            }
        }
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            cx.count("list-value-known");
            if at.insert(v, i).is_some() {
                cx.anomaly("list-duplicated", key, format!("{v} is held twice"), &[]);
            }
            let Some(push) = by_value.get(v.as_str()) else {
                cx.anomaly(
                    "list-invented",
                    key,
                    format!("{v} is held, and nobody pushed it"),
                    &[],
                );
                continue;
            };
            if let Some(by) = taken.get(v.as_str()) {
                let mut ops = vec![*push];
                ops.extend(by);
                cx.anomaly(
                    "list-resurrected",
                    key,
                    format!("{v} is held at index {i}, yet a pop returned it"),
                    &ops,
                );
            }
        }
        check_list_losses(cx, key, pushes, pops, &at, &taken);
        check_list_order(cx, ix, key, pushes, &at);
        for read in ix.list_reads.get(key).unwrap_or(&no_ops) {
            let (true, Some(ReadValue::Elements(seen))) = (read.acked(), &read.read) else {
                continue;
            };
            cx.count("list-read");
            let mut once = BTreeSet::new();
            let mut last: Option<(&str, usize)> = None;
            for v in seen {
                if !once.insert(v.as_str()) {
                    cx.anomaly(
                        "list-duplicated",
                        key,
                        format!("a read returned {v} twice"),
                        &[*read],
                    );
                }
                if by_value
                    .get(v.as_str())
                    .is_none_or(|p| p.invoke_us > read.complete_us)
                {
                    cx.anomaly(
                        "list-invented",
                        key,
                        format!("a read returned {v}, which no push had been sent for"),
                        &[*read],
                    );
                }
                let Some(&i) = at.get(v.as_str()) else {
                    continue;
                };
                if let Some((before, j)) = last.filter(|(_, j)| *j > i) {
                    cx.anomaly(
                        "list-order",
                        key,
                        format!("a read returned {before} before {v}, the final list holds them the other way round (indexes {j} and {i})"),
                        &[*read],
                    );
                }
                last = Some((v, i));
            }
        }
    }
}

/// (b) Every acknowledged push is held, or a pop returned its value, or
/// it is matched to a distinct slot of a pop whose reply was lost and that
/// may have observed it.
fn check_list_losses(
    cx: &mut Ctx<'_>,
    key: &str,
    pushes: &[&Op],
    pops: &[&Op],
    at: &HashMap<&str, usize>,
    taken: &HashMap<&str, Vec<&Op>>,
) {
    let mut missing: Vec<&Op> = Vec::new();
    for push in pushes.iter().filter(|p| p.acked()) {
        cx.count("list-acked-push");
        let Some(v) = pushed_value(push) else {
            continue;
        };
        if !at.contains_key(v) && !taken.contains_key(v) {
            missing.push(push);
        }
    }
    if missing.is_empty() {
        return;
    }
    // One slot per value a pop with a lost reply may have taken.
    let slots: Vec<&Op> = pops
        .iter()
        .filter(|p| popped(p).is_none())
        .flat_map(|p| {
            let count = match p.cmd {
                Cmd::Lpop { count, .. } | Cmd::Rpop { count, .. } => count as usize,
                _ => 0,
            };
            std::iter::repeat_n(*p, count)
        })
        .collect();
    let fits: Vec<Vec<usize>> = missing
        .iter()
        .map(|push| {
            (0..slots.len())
                .filter(|&s| slots[s].maybe_observed(push))
                .collect()
        })
        .collect();
    for (m, push) in unmatched(&fits, slots.len())
        .into_iter()
        .map(|m| (m, missing[m]))
    {
        let v = pushed_value(push).unwrap_or_default();
        let mut ops = vec![push];
        let mut candidates: Vec<&Op> = fits[m].iter().map(|&s| slots[s]).collect();
        candidates.dedup_by_key(|p| p.id);
        ops.extend(candidates);
        cx.anomaly(
            "list-lost",
            key,
            format!("acknowledged push of {v} is gone: no pop returned it, and the pops whose replies were lost cannot have taken it as well as the other missing values"),
            &ops,
        );
    }
}

/// The left vertices a maximum matching leaves unmatched, in a bipartite
/// graph where left vertex `l` may take the right vertices `fits[l]`
/// (augmenting paths; the graphs here are small).
fn unmatched(fits: &[Vec<usize>], right: usize) -> Vec<usize> {
    fn augment(
        l: usize,
        fits: &[Vec<usize>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &r in &fits[l] {
            if seen[r] {
                continue;
            }
            seen[r] = true;
            if owner[r].is_none_or(|o| augment(o, fits, owner, seen)) {
                owner[r] = Some(l);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; right];
    (0..fits.len())
        .filter(|&l| !augment(l, fits, &mut owner, &mut vec![false; right]))
        .collect()
}

/// (c) Of two values still held, one whose push certainly observed the
/// other's lands past it at its end.
fn check_list_order(
    cx: &mut Ctx<'_>,
    ix: &Index<'_>,
    key: &str,
    pushes: &[&Op],
    at: &HashMap<&str, usize>,
) {
    let held: Vec<(&Op, usize)> = pushes
        .iter()
        .filter(|p| p.acked())
        .filter_map(|p| Some((*p, *at.get(pushed_value(p)?)?)))
        .collect();
    for &(b, ib) in &held {
        let front = matches!(b.cmd, Cmd::Lpush { .. });
        for &(a, ia) in &held {
            if a.id == b.id || !ix.certain(b, a) {
                continue;
            }
            cx.count("list-push-order");
            if (front && ib > ia) || (!front && ib < ia) {
                cx.anomaly(
                    "list-order",
                    key,
                    format!(
                        "{} {} landed at index {ib}, on the wrong side of {} (index {ia}), whose push it had observed",
                        b.cmd.name(),
                        pushed_value(b).unwrap_or_default(),
                        pushed_value(a).unwrap_or_default()
                    ),
                    &[a, b],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories of lists: each broken one must be caught, and
    //! concurrent pushes and pops must not be.
    use super::super::tests::H;
    use super::*;
    use crate::chaos::history::Outcome;

    fn rpush(key: &str, value: &str) -> Cmd {
        Cmd::Rpush {
            key: key.into(),
            value: value.into(),
        }
    }

    fn lpush(key: &str, value: &str) -> Cmd {
        Cmd::Lpush {
            key: key.into(),
            value: value.into(),
        }
    }

    fn lpop(key: &str, count: u32) -> Cmd {
        Cmd::Lpop {
            key: key.into(),
            count,
        }
    }

    fn list(vs: &[&str]) -> KeyState {
        KeyState::List(vs.iter().map(|v| v.to_string()).collect())
    }

    fn elements(vs: &[&str]) -> Option<ReadValue> {
        Some(ReadValue::Elements(
            vs.iter().map(|v| v.to_string()).collect(),
        ))
    }

    #[test]
    fn an_acknowledged_push_is_held_or_popped() {
        let mut h = H::new();
        h.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, rpush("l:0", "b"), 0, 5, [0, 0, 0], [0, 1, 0]);
        assert!(h.check(&[("l:0", list(&["a", "b"]))]).is_empty());
        assert_eq!(h.check(&[("l:0", list(&["a"]))]), vec!["list-lost"]);
        h.acked(2, lpop("l:0", 1), 10, 12, [1, 1, 0], [1, 1, 1]);
        h.ops[2].read = elements(&["b"]);
        assert!(h.check(&[("l:0", list(&["a"]))]).is_empty());
        // What a pop returned is gone for good.
        assert_eq!(
            h.check(&[("l:0", list(&["a", "b"]))]),
            vec!["list-resurrected"]
        );
        // A concurrent pop elsewhere may take it too; a later one may not.
        h.acked(0, lpop("l:0", 1), 10, 12, [1, 0, 0], [2, 0, 0]);
        h.ops[3].read = elements(&["b"]);
        assert!(h.check(&[("l:0", list(&["a"]))]).is_empty());
        h.acked(1, lpop("l:0", 1), 20, 22, [2, 1, 1], [2, 2, 1]);
        h.ops[4].read = elements(&["b"]);
        assert_eq!(h.check(&[("l:0", list(&["a"]))]), vec!["list-popped-twice"]);
    }

    #[test]
    fn a_pop_whose_reply_was_lost_may_explain_as_many_values_as_its_count() {
        let mut h = H::new();
        h.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(0, rpush("l:0", "b"), 6, 8, [1, 0, 0], [2, 0, 0]);
        h.acked(0, rpush("l:0", "c"), 9, 11, [2, 0, 0], [3, 0, 0]);
        h.unknown(1, lpop("l:0", 2), 20, 25);
        assert!(h.check(&[("l:0", list(&["c"]))]).is_empty());
        assert_eq!(h.check(&[]), vec!["list-lost"]);
        // A pop that took effect before the pushes were sent took none.
        let mut early = H::new();
        early.unknown(1, lpop("l:0", 2), 0, 1);
        early.acked(0, rpush("l:0", "a"), 5, 6, [0, 0, 0], [1, 0, 0]);
        assert_eq!(early.check(&[]), vec!["list-lost"]);
        // A push whose reply was lost may be held or not.
        let mut unsure = H::new();
        unsure.unknown(0, rpush("l:0", "a"), 0, 5);
        assert!(unsure.check(&[]).is_empty());
        assert!(unsure.check(&[("l:0", list(&["a"]))]).is_empty());
    }

    #[test]
    fn lists_hold_only_pushed_values_once() {
        let mut h = H::new();
        h.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        assert_eq!(
            h.check(&[("l:0", list(&["a", "x"]))]),
            vec!["list-invented"]
        );
        assert_eq!(
            h.check(&[("l:0", list(&["a", "a"]))]),
            vec!["list-duplicated"]
        );
        h.acked(1, lpop("l:0", 1), 10, 12, [1, 0, 0], [1, 1, 0]);
        h.ops[1].read = elements(&["y"]);
        assert_eq!(h.check(&[("l:0", list(&["a"]))]), vec!["list-invented"]);
    }

    #[test]
    fn a_push_that_observed_another_lands_past_it() {
        // b observed a (its vector before covers a's after).
        let mut h = H::new();
        h.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, rpush("l:0", "b"), 6, 8, [1, 0, 0], [1, 1, 0]);
        assert!(h.check(&[("l:0", list(&["a", "b"]))]).is_empty());
        assert_eq!(h.check(&[("l:0", list(&["b", "a"]))]), vec!["list-order"]);
        let mut front = H::new();
        front.acked(0, lpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        front.acked(1, lpush("l:0", "b"), 6, 8, [1, 0, 0], [1, 1, 0]);
        assert!(front.check(&[("l:0", list(&["b", "a"]))]).is_empty());
        assert_eq!(
            front.check(&[("l:0", list(&["a", "b"]))]),
            vec!["list-order"]
        );
        // Concurrent pushes may land either way.
        let mut concurrent = H::new();
        concurrent.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        concurrent.acked(1, rpush("l:0", "b"), 0, 5, [0, 0, 0], [0, 1, 0]);
        assert!(concurrent.check(&[("l:0", list(&["b", "a"]))]).is_empty());
    }

    #[test]
    fn reads_see_elements_in_the_one_order_they_end_in() {
        let mut h = H::new();
        h.acked(0, rpush("l:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, rpush("l:0", "b"), 0, 5, [0, 0, 0], [0, 1, 0]);
        h.push(
            2,
            Cmd::Lrange { key: "l:0".into() },
            6,
            7,
            Outcome::Ok,
            None,
            None,
        );
        h.ops[2].read = elements(&["a", "b"]);
        assert!(h.check(&[("l:0", list(&["a", "b"]))]).is_empty());
        assert_eq!(h.check(&[("l:0", list(&["b", "a"]))]), vec!["list-order"]);
        h.ops[2].read = elements(&["a", "z"]);
        assert_eq!(
            h.check(&[("l:0", list(&["a", "b"]))]),
            vec!["list-invented"]
        );
    }
}
