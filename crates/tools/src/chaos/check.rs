//! The offline checker of a chaos run: reads the history the workload
//! recorded and the regions' final state, and never drives anything.
//!
//! The regions' causal order is only partly visible from the outside, so
//! every check decides only what the history makes certain, using the two
//! relations of [`Op`]: `certainly_observed` (an under-approximation of
//! "b's context covers a's dot") and `maybe_observed` (an
//! over-approximation). Operations with an error reply, a dead connection
//! or a timeout may have happened; only acknowledged ones certainly did.
//!
//! The rules mirrored (as `meridian-sim`'s `check.rs` states them with
//! exact dots):
//! - **sets** are observed-remove: a member is present iff some add of it
//!   was observed by no SREM of it and no DEL of its key;
//! - **counters** show the sum of the increments no DEL observed;
//! - **registers and hash fields** keep the writes no other write (or DEL)
//!   observed, and show the largest; a write another write observed is gone;
//! - **a key** all of whose writes a DEL observed is gone;
//! - **the conflict journal** records every pair of concurrent writes to a
//!   register or field that both stayed unobserved, in every data region,
//!   and nothing that was causally ordered;
//! - **lists** hold each pushed value at most once; an acknowledged push is
//!   present, or a pop returned its value, or a pop whose reply was lost
//!   may have taken it; a value a pop returned is gone, and no later pop
//!   returns it again; a push that observed another lands past it at its
//!   end; and two elements keep one order in every read and in the end;
//! - **streams** hold every entry an acknowledged XADD added, at the ID
//!   its reply named, only entries some XADD was sent for, in strictly
//!   increasing ID order, and no two acknowledged XADDs took one ID;
//! - **bitmaps** hold every bit an acknowledged SETBIT set and no bit no
//!   SETBIT was sent for; **bitfield increments** under OVERFLOW WRAP
//!   count as a counter: a field reads the sum of its acknowledged
//!   increments plus some of those whose replies were lost, modulo 2^width;
//! - **all data regions** hold the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::{Cmd, Op, ReadValue, Vv};

mod bits;
mod lists;
mod streams;

/// A key's final value in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Str(String),
    Set(BTreeSet<String>),
    Hash(BTreeMap<String, String>),
    /// A list's values in order.
    List(Vec<String>),
    /// A stream's entries in XRANGE order: ID and the value of field `v`.
    Stream(Vec<(String, String)>),
    /// A bitmap's or bitfield's bytes (`b:*`, `bf:*`).
    Bytes(Vec<u8>),
    /// A type the workload never writes (an anomaly in itself).
    Other(String),
}

/// One conflict-journal entry, as `/v1/conflicts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub key: String,
    pub field: Option<String>,
    pub winner: String,
    pub loser: String,
}

/// One data region at the end of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegionState {
    pub name: String,
    /// Every key that exists (absent keys are not listed).
    pub keys: BTreeMap<String, KeyState>,
    /// Journal entries per key; a key missing here was not fetched (its
    /// journal was truncated), so its conflicts are not checked.
    pub conflicts: BTreeMap<String, Vec<JournalEntry>>,
}

/// The moment the regions were seen converged once the load had stopped:
/// every operation that took effect before `at_us` and survived (a write
/// lost with an unsynced log tail never counted) is covered by `vv`. A
/// write whose "before" vector covers `vv` therefore observed all of them,
/// acknowledged or not; the epilogue's writes are such writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Barrier {
    pub at_us: u64,
    pub vv: Vv,
}

/// What the checker was given.
pub struct Input<'a> {
    pub regions: &'a [String],
    pub ops: &'a [Op],
    pub finals: &'a [RegionState],
    pub barrier: Option<&'a Barrier>,
}

/// A violated invariant, with the operations that prove it.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub check: &'static str,
    pub key: String,
    pub detail: String,
    pub history: Vec<String>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[{}] {}: {}", self.check, self.key, self.detail)?;
        for h in &self.history {
            writeln!(f, "    {h}")?;
        }
        Ok(())
    }
}

/// The checker's verdict.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations in the history, by command and outcome.
    pub ops: BTreeMap<String, u64>,
    /// Assertions made, by check (only decidable ones are counted).
    pub checked: BTreeMap<&'static str, u64>,
    pub anomalies: Vec<Anomaly>,
}

/// At most this many operations are quoted per anomaly.
const HISTORY_QUOTED_MAX: usize = 12;

struct Ctx<'a> {
    regions: &'a [String],
    report: Report,
}

impl Ctx<'_> {
    fn count(&mut self, check: &'static str) {
        *self.report.checked.entry(check).or_default() += 1;
    }

    fn anomaly(&mut self, check: &'static str, key: &str, detail: String, ops: &[&Op]) {
        let mut history: Vec<String> = ops
            .iter()
            .take(HISTORY_QUOTED_MAX)
            .map(|o| o.describe(self.regions))
            .collect();
        if ops.len() > HISTORY_QUOTED_MAX {
            history.push(format!("... and {} more", ops.len() - HISTORY_QUOTED_MAX));
        }
        self.report.anomalies.push(Anomaly {
            check,
            key: key.to_string(),
            detail,
            history,
        });
    }
}

/// The operations of a run, grouped for the checks.
#[derive(Default)]
struct Index<'a> {
    /// Every write to a key, in history order.
    writes: BTreeMap<&'a str, Vec<&'a Op>>,
    dels: BTreeMap<&'a str, Vec<&'a Op>>,
    adds: BTreeMap<(&'a str, &'a str), Vec<&'a Op>>,
    srems: BTreeMap<(&'a str, &'a str), Vec<&'a Op>>,
    incrs: BTreeMap<&'a str, Vec<&'a Op>>,
    /// Register (field `None`) and hash-field writes per cell.
    cells: BTreeMap<(&'a str, Option<&'a str>), Vec<&'a Op>>,
    /// List pushes, pops and LRANGEs per key.
    pushes: BTreeMap<&'a str, Vec<&'a Op>>,
    pops: BTreeMap<&'a str, Vec<&'a Op>>,
    list_reads: BTreeMap<&'a str, Vec<&'a Op>>,
    /// XADDs, SETBITs and BITFIELD increments per key.
    xadds: BTreeMap<&'a str, Vec<&'a Op>>,
    setbits: BTreeMap<&'a str, Vec<&'a Op>>,
    bitfields: BTreeMap<&'a str, Vec<&'a Op>>,
    reads: Vec<&'a Op>,
    barrier: Option<&'a Barrier>,
}

impl Index<'_> {
    /// `b` certainly observed `a`: by their own vectors
    /// ([`Op::certainly_observed`]), or because `b` observed everything up
    /// to the barrier and `a` took effect, if at all, before it.
    fn certain(&self, b: &Op, a: &Op) -> bool {
        b.certainly_observed(a)
            || self.barrier.is_some_and(|bar| {
                b.acked()
                    && a.effect_deadline_us() < bar.at_us
                    && b.before
                        .as_ref()
                        .is_some_and(|v| v.iter().zip(&bar.vv).all(|(x, y)| x >= y))
            })
    }
}

fn index<'a>(ops: &'a [Op], barrier: Option<&'a Barrier>) -> Index<'a> {
    let mut ix = Index {
        barrier,
        ..Index::default()
    };
    for op in ops {
        let key = op.cmd.key();
        match &op.cmd {
            Cmd::Set { .. } => ix.cells.entry((key, None)).or_default().push(op),
            Cmd::Hset { field, .. } => ix.cells.entry((key, Some(field))).or_default().push(op),
            Cmd::Incrby { .. } => ix.incrs.entry(key).or_default().push(op),
            Cmd::Sadd { member, .. } => ix.adds.entry((key, member)).or_default().push(op),
            Cmd::Srem { member, .. } => ix.srems.entry((key, member)).or_default().push(op),
            Cmd::Del { .. } => ix.dels.entry(key).or_default().push(op),
            Cmd::Get { .. } | Cmd::Smembers { .. } | Cmd::Hgetall { .. } => ix.reads.push(op),
            Cmd::Rpush { .. } | Cmd::Lpush { .. } => ix.pushes.entry(key).or_default().push(op),
            Cmd::Lpop { .. } | Cmd::Rpop { .. } => ix.pops.entry(key).or_default().push(op),
            Cmd::Lrange { .. } => ix.list_reads.entry(key).or_default().push(op),
            Cmd::Xadd { .. } => ix.xadds.entry(key).or_default().push(op),
            Cmd::Setbit { .. } => ix.setbits.entry(key).or_default().push(op),
            Cmd::Bitfield { .. } => ix.bitfields.entry(key).or_default().push(op),
        }
        if op.cmd.is_write()
            && !matches!(op.cmd, Cmd::Del { .. } | Cmd::Srem { .. })
            && !op.cmd.is_pop()
        {
            ix.writes.entry(key).or_default().push(op);
        }
    }
    ix
}

/// Runs every check.
pub fn check(input: &Input<'_>) -> Report {
    let mut cx = Ctx {
        regions: input.regions,
        report: Report::default(),
    };
    for op in input.ops {
        *cx.report
            .ops
            .entry(format!("{} {:?}", op.cmd.name(), op.outcome).to_lowercase())
            .or_default() += 1;
    }
    let ix = index(input.ops, input.barrier);
    check_identical(&mut cx, input.finals);
    let Some(first) = input.finals.first() else {
        cx.anomaly("convergence", "*", "no final state".into(), &[]);
        return cx.report;
    };
    let state = &first.keys;
    check_types(&mut cx, state);
    check_sets(&mut cx, &ix, state);
    check_counters(&mut cx, &ix, state);
    check_deleted_keys(&mut cx, &ix, state);
    check_cells(&mut cx, &ix, state);
    check_journal(&mut cx, &ix, input.finals);
    check_reads(&mut cx, &ix);
    lists::check_lists(&mut cx, &ix, state);
    streams::check_streams(&mut cx, &ix, state);
    bits::check_bitmaps(&mut cx, &ix, state);
    bits::check_bitfields(&mut cx, &ix, state);
    cx.report
}

/// (e) Every data region ends with the same keys and values.
fn check_identical(cx: &mut Ctx<'_>, finals: &[RegionState]) {
    let Some(first) = finals.first() else {
        return;
    };
    for other in &finals[1..] {
        cx.count("regions-identical");
        let keys: BTreeSet<&String> = first.keys.keys().chain(other.keys.keys()).collect();
        for key in keys {
            let (a, b) = (first.keys.get(key), other.keys.get(key));
            if a != b {
                cx.anomaly(
                    "convergence",
                    key,
                    format!("{} has {a:?}, {} has {b:?}", first.name, other.name),
                    &[],
                );
            }
        }
    }
}

/// Every key holds the type its prefix says (`r:` and `c:` strings, `s:`
/// sets, `h:` hashes, `l:` lists, `xs:` streams, `b:` and `bf:` strings
/// written in part).
fn check_types(cx: &mut Ctx<'_>, state: &BTreeMap<String, KeyState>) {
    for (key, found) in state {
        cx.count("key-type");
        let fits = match found {
            KeyState::Str(_) => key.starts_with("r:") || key.starts_with("c:"),
            KeyState::Set(_) => key.starts_with("s:"),
            KeyState::Hash(_) => key.starts_with("h:"),
            KeyState::List(_) => key.starts_with("l:"),
            KeyState::Stream(_) => key.starts_with("xs:"),
            KeyState::Bytes(_) => key.starts_with("b:") || key.starts_with("bf:"),
            KeyState::Other(_) => false,
        };
        if !fits {
            cx.anomaly("wrong-type", key, format!("holds {found:?}"), &[]);
        }
    }
}

fn members(state: &BTreeMap<String, KeyState>, key: &str) -> Option<BTreeSet<String>> {
    match state.get(key)? {
        KeyState::Set(m) => Some(m.clone()),
        _ => None,
    }
}

/// (a) and (c) for sets: an acknowledged add that no SREM of the member and
/// no DEL of the key may have observed is present; a member every possible
/// add of which an acknowledged SREM or DEL certainly observed is absent;
/// no member appears that nobody added.
fn check_sets(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    let no_ops: Vec<&Op> = Vec::new();
    let mut set_keys: BTreeSet<&str> = ix.adds.keys().map(|(k, _)| *k).collect();
    set_keys.extend(ix.srems.keys().map(|(k, _)| *k));
    for (&(key, member), adds) in &ix.adds {
        let dels = ix.dels.get(key).unwrap_or(&no_ops);
        let srems = ix.srems.get(&(key, member)).unwrap_or(&no_ops);
        let removers: Vec<&Op> = srems.iter().chain(dels.iter()).copied().collect();
        let present = members(state, key).is_some_and(|m| m.contains(member));
        let survivor = adds
            .iter()
            .find(|a| a.acked() && !removers.iter().any(|r| r.maybe_observed(a)));
        if let Some(add) = survivor {
            cx.count("set-member-present");
            if !present {
                let mut ops = vec![*add];
                ops.extend(srems.iter().copied());
                cx.anomaly(
                    "set-lost",
                    key,
                    format!("member {member} was added (acknowledged) and no SREM or DEL can have observed that add, yet it is missing"),
                    &ops,
                );
            }
        }
        let all_removed = adds
            .iter()
            .all(|a| removers.iter().any(|r| r.acked() && ix.certain(r, a)));
        if all_removed {
            cx.count("set-member-absent");
            if present {
                let mut ops: Vec<&Op> = adds.clone();
                ops.extend(
                    removers
                        .iter()
                        .filter(|r| adds.iter().any(|a| ix.certain(r, a))),
                );
                cx.anomaly(
                    "set-resurrected",
                    key,
                    format!("member {member} is present, but every add of it was observed by an acknowledged SREM or DEL"),
                    &ops,
                );
            }
        }
    }
    for key in set_keys {
        let Some(found) = members(state, key) else {
            continue;
        };
        for m in &found {
            cx.count("set-member-known");
            if !ix.adds.contains_key(&(key, m.as_str())) {
                cx.anomaly(
                    "set-invented",
                    key,
                    format!("member {m} was never added"),
                    &[],
                );
            }
        }
    }
}

/// (b) A counter lies between the increments that certainly count (acked,
/// observed by no DEL) plus every uncertain decrement, and the same plus
/// every uncertain increment. With no DEL and positive deltas that is
/// [acknowledged, acknowledged + indeterminate].
fn check_counters(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    let no_ops: Vec<&Op> = Vec::new();
    for (&key, incrs) in &ix.incrs {
        let dels = ix.dels.get(key).unwrap_or(&no_ops);
        let (mut lo, mut hi) = (0i64, 0i64);
        let mut uncertain: Vec<&Op> = Vec::new();
        for op in incrs {
            let Cmd::Incrby { delta, .. } = op.cmd else {
                continue;
            };
            let counted = op.acked() && !dels.iter().any(|d| d.maybe_observed(op));
            let dropped = dels.iter().any(|d| d.acked() && ix.certain(d, op));
            if counted {
                lo += delta;
                hi += delta;
            } else if !dropped {
                lo += delta.min(0);
                hi += delta.max(0);
                uncertain.push(op);
            }
        }
        let found = match state.get(key) {
            None => Some(0),
            Some(KeyState::Str(s)) => s.parse::<i64>().ok(),
            Some(_) => None,
        };
        cx.count(if dels.is_empty() {
            "counter-range"
        } else {
            "counter-range-after-del"
        });
        if found.is_none_or(|v| v < lo || v > hi) {
            cx.anomaly(
                "counter-range",
                key,
                format!(
                    "value {:?} outside [{lo}, {hi}] ({} increments, {} uncertain, {} DELs)",
                    state.get(key),
                    incrs.len(),
                    uncertain.len(),
                    dels.len()
                ),
                &uncertain,
            );
        }
    }
}

/// (c) for keys: a key all of whose possible writes an acknowledged DEL
/// certainly observed does not exist.
fn check_deleted_keys(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    let no_ops: Vec<&Op> = Vec::new();
    for (&key, dels) in &ix.dels {
        let writes = ix.writes.get(key).unwrap_or(&no_ops);
        // Latest writes first: the one that escapes every DEL is usually last.
        let all_deleted = writes
            .iter()
            .rev()
            .all(|w| dels.iter().rev().any(|d| ix.certain(d, w)));
        if !all_deleted {
            continue;
        }
        cx.count("key-deleted");
        if let Some(found) = state.get(key) {
            let last_del = dels
                .iter()
                .filter(|d| d.acked())
                .max_by_key(|d| d.invoke_us);
            let mut ops: Vec<&Op> = writes.iter().rev().take(4).copied().collect();
            ops.extend(last_del);
            cx.anomaly(
                "key-resurrected",
                key,
                format!("key exists ({found:?}) although an acknowledged DEL observed every write to it"),
                &ops,
            );
        }
    }
}

fn cell_value<'s>(
    state: &'s BTreeMap<String, KeyState>,
    key: &str,
    field: Option<&str>,
) -> Option<&'s str> {
    match (state.get(key)?, field) {
        (KeyState::Str(s), None) => Some(s),
        (KeyState::Hash(h), Some(f)) => h.get(f).map(String::as_str),
        _ => None,
    }
}

fn written_value(op: &Op) -> Option<&str> {
    match &op.cmd {
        Cmd::Set { value, .. } | Cmd::Hset { value, .. } => Some(value),
        _ => None,
    }
}

/// (d) Registers and hash fields: an acknowledged write that nothing can
/// have superseded (no write it had not certainly observed, no DEL that may
/// have observed it) is the final value; the final value was written by
/// someone; and no write an acknowledged write or DEL certainly observed
/// is the final value.
fn check_cells(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    let no_ops: Vec<&Op> = Vec::new();
    for (&(key, field), writes) in &ix.cells {
        let dels = ix.dels.get(key).unwrap_or(&no_ops);
        let label = match field {
            Some(f) => format!("{key} {f}"),
            None => key.to_string(),
        };
        let found = cell_value(state, key, field);
        for a in writes.iter().filter(|a| a.acked()) {
            let superseded = writes
                .iter()
                .rev()
                .any(|b| b.id != a.id && !ix.certain(a, b))
                || dels.iter().rev().any(|d| d.maybe_observed(a));
            if superseded {
                continue;
            }
            cx.count("register-acked-write-final");
            if found != written_value(a) {
                cx.anomaly(
                    "register-lost",
                    &label,
                    format!("acknowledged write is not the final value {found:?}, and every other write to it happened before it"),
                    &[*a],
                );
            }
        }
        let Some(value) = found else {
            continue;
        };
        cx.count("register-final-value");
        let Some(w) = writes.iter().find(|w| written_value(w) == Some(value)) else {
            cx.anomaly(
                "register-invented",
                &label,
                format!("final value {value:?} was never written"),
                &[],
            );
            continue;
        };
        let overwriter = writes
            .iter()
            .chain(dels.iter())
            .find(|b| b.acked() && ix.certain(b, w));
        if let Some(b) = overwriter {
            cx.anomaly(
                "register-resurrected",
                &label,
                format!("final value {value:?} was certainly overwritten or deleted by a later acknowledged op"),
                &[*w, *b],
            );
        }
    }
}

/// (d) The journal: every pair of acknowledged, certainly concurrent writes
/// to a cell that nothing else may have observed is journaled in every data
/// region (both stayed held as siblings everywhere, so whichever arrived
/// second met the other), and no journaled pair was causally ordered.
fn check_journal(cx: &mut Ctx<'_>, ix: &Index<'_>, finals: &[RegionState]) {
    let no_ops: Vec<&Op> = Vec::new();
    for (&(key, field), writes) in &ix.cells {
        let journaled: Vec<&RegionState> = finals
            .iter()
            .filter(|r| r.conflicts.contains_key(key))
            .collect();
        if journaled.is_empty() {
            continue;
        }
        let dels = ix.dels.get(key).unwrap_or(&no_ops);
        let label = match field {
            Some(f) => format!("{key} {f}"),
            None => key.to_string(),
        };
        let by_value: HashMap<&str, &Op> = writes
            .iter()
            .filter_map(|w| Some((written_value(w)?, *w)))
            .collect();
        // Writes nothing else may have observed, latest first.
        let frontier: Vec<&Op> = writes
            .iter()
            .rev()
            .filter(|w| {
                w.acked()
                    && !writes.iter().rev().any(|o| o.maybe_observed(w))
                    && !dels.iter().any(|d| d.maybe_observed(w))
            })
            .copied()
            .collect();
        for (i, a) in frontier.iter().enumerate() {
            for b in &frontier[i + 1..] {
                if a.maybe_observed(b) || b.maybe_observed(a) {
                    continue;
                }
                let (va, vb) = (written_value(a), written_value(b));
                for region in &journaled {
                    cx.count("journal-concurrent-pair");
                    let listed = region.conflicts[key].iter().any(|e| {
                        e.field.as_deref() == field
                            && ((Some(e.winner.as_str()) == va && Some(e.loser.as_str()) == vb)
                                || (Some(e.winner.as_str()) == vb && Some(e.loser.as_str()) == va))
                    });
                    if !listed {
                        cx.anomaly(
                            "journal-missed",
                            &label,
                            format!("{} has no conflict entry for two concurrent writes neither of which anything else observed", region.name),
                            &[*a, *b],
                        );
                    }
                }
            }
        }
        for region in &journaled {
            for e in &region.conflicts[key] {
                if e.field.as_deref() != field {
                    continue;
                }
                let (Some(w), Some(l)) = (
                    by_value.get(e.winner.as_str()),
                    by_value.get(e.loser.as_str()),
                ) else {
                    cx.anomaly(
                        "journal-invented",
                        &label,
                        format!(
                            "{} journals {:?} over {:?}, values no write produced",
                            region.name, e.winner, e.loser
                        ),
                        &[],
                    );
                    continue;
                };
                cx.count("journal-entry");
                if ix.certain(w, l) || ix.certain(l, w) {
                    cx.anomaly(
                        "journal-false",
                        &label,
                        format!(
                            "{} journals a conflict between causally ordered writes",
                            region.name
                        ),
                        &[*w, *l],
                    );
                }
            }
        }
    }
}

/// Reads return only values some write had been sent for.
fn check_reads(cx: &mut Ctx<'_>, ix: &Index<'_>) {
    let sent_before = |key: &str, field: Option<&str>, value: &str, by_us: u64| {
        ix.cells.get(&(key, field)).is_some_and(|ws| {
            ws.iter()
                .any(|w| written_value(w) == Some(value) && w.invoke_us <= by_us)
        })
    };
    for r in &ix.reads {
        let (Some(read), true) = (&r.read, r.acked()) else {
            continue;
        };
        let key = r.cmd.key();
        cx.count("read");
        let bad: Vec<String> = match read {
            ReadValue::Nil => Vec::new(),
            ReadValue::Text(v) => (!sent_before(key, None, v, r.complete_us))
                .then(|| v.clone())
                .into_iter()
                .collect(),
            ReadValue::Members(ms) => ms
                .iter()
                .filter(|m| {
                    !ix.adds
                        .get(&(key, m.as_str()))
                        .is_some_and(|adds| adds.iter().any(|a| a.invoke_us <= r.complete_us))
                })
                .cloned()
                .collect(),
            ReadValue::Fields(fs) => fs
                .iter()
                .filter(|(f, v)| !sent_before(key, Some(f), v, r.complete_us))
                .map(|(f, v)| format!("{f}={v}"))
                .collect(),
            // Lists are read by LRANGE, which `check_lists` judges.
            ReadValue::Elements(_) => Vec::new(),
        };
        if !bad.is_empty() {
            cx.anomaly(
                "read-invented",
                key,
                format!("read returned {bad:?}, which no write had been sent for"),
                &[*r],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories: each broken one must be caught, and the
    //! add-wins and concurrency cases must not be.
    use super::*;
    use crate::chaos::history::Outcome;

    pub(super) fn regions() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    /// A hand-made history (shared with the list checker's tests).
    pub(super) struct H {
        pub(super) ops: Vec<Op>,
        pub(super) barrier: Option<Barrier>,
    }

    impl H {
        pub(super) fn new() -> H {
            H {
                ops: Vec::new(),
                barrier: None,
            }
        }

        /// An acknowledged write in `region` between `t0` and `t1` (ms) whose
        /// version vectors were `before` and `after`.
        pub(super) fn acked(
            &mut self,
            region: usize,
            cmd: Cmd,
            t0: u64,
            t1: u64,
            before: [u64; 3],
            after: [u64; 3],
        ) -> &mut H {
            self.push(region, cmd, t0, t1, Outcome::Ok, Some(before), Some(after))
        }

        pub(super) fn unknown(&mut self, region: usize, cmd: Cmd, t0: u64, t1: u64) -> &mut H {
            self.push(region, cmd, t0, t1, Outcome::Indeterminate, None, None)
        }

        #[allow(clippy::too_many_arguments)]
        pub(super) fn push(
            &mut self,
            region: usize,
            cmd: Cmd,
            t0: u64,
            t1: u64,
            outcome: Outcome,
            before: Option<[u64; 3]>,
            after: Option<[u64; 3]>,
        ) -> &mut H {
            self.ops.push(Op {
                id: self.ops.len() as u64 + 1,
                client: region as u32,
                region,
                cmd,
                invoke_us: t0 * 1000,
                complete_us: t1 * 1000,
                outcome,
                before: before.map(|v| v.to_vec()),
                after: after.map(|v| v.to_vec()),
                read: None,
                error: None,
            });
            self
        }

        pub(super) fn check(&self, keys: &[(&str, KeyState)]) -> Vec<&'static str> {
            let state: BTreeMap<String, KeyState> = keys
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            self.check_regions(vec![state.clone(), state.clone(), state], BTreeMap::new())
        }

        pub(super) fn check_regions(
            &self,
            states: Vec<BTreeMap<String, KeyState>>,
            conflicts: BTreeMap<String, Vec<JournalEntry>>,
        ) -> Vec<&'static str> {
            let regions = regions();
            let finals: Vec<RegionState> = states
                .into_iter()
                .zip(&regions)
                .map(|(keys, name)| RegionState {
                    name: name.clone(),
                    keys,
                    conflicts: conflicts.clone(),
                })
                .collect();
            let report = check(&Input {
                regions: &regions,
                ops: &self.ops,
                finals: &finals,
                barrier: self.barrier.as_ref(),
            });
            let mut kinds: Vec<&'static str> = report.anomalies.iter().map(|a| a.check).collect();
            kinds.dedup();
            kinds
        }
    }

    fn sadd(key: &str, member: &str) -> Cmd {
        Cmd::Sadd {
            key: key.into(),
            member: member.into(),
        }
    }

    fn srem(key: &str, member: &str) -> Cmd {
        Cmd::Srem {
            key: key.into(),
            member: member.into(),
        }
    }

    fn set(key: &str, value: &str) -> Cmd {
        Cmd::Set {
            key: key.into(),
            value: value.into(),
        }
    }

    fn del(key: &str) -> Cmd {
        Cmd::Del { key: key.into() }
    }

    fn incr(key: &str, delta: i64) -> Cmd {
        Cmd::Incrby {
            key: key.into(),
            delta,
        }
    }

    fn members(ms: &[&str]) -> KeyState {
        KeyState::Set(ms.iter().map(|m| m.to_string()).collect())
    }

    fn text(v: &str) -> KeyState {
        KeyState::Str(v.to_string())
    }

    #[test]
    fn an_acknowledged_add_nothing_removed_must_be_present() {
        let mut h = H::new();
        h.acked(0, sadd("s:0", "m1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, sadd("s:0", "m2"), 6, 9, [1, 0, 0], [1, 1, 0]);
        assert_eq!(h.check(&[("s:0", members(&["m2"]))]), vec!["set-lost"]);
        assert!(h.check(&[("s:0", members(&["m1", "m2"]))]).is_empty());
    }

    #[test]
    fn an_add_concurrent_with_a_remove_may_survive_and_must_here() {
        // The SREM in b had not seen the add in a (its vector after the
        // remove has a:0): add wins, so the member must stay.
        let mut h = H::new();
        h.acked(0, sadd("s:0", "m1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, srem("s:0", "m1"), 10, 12, [0, 0, 0], [0, 1, 0]);
        assert!(h.check(&[("s:0", members(&["m1"]))]).is_empty());
        assert_eq!(h.check(&[]), vec!["set-lost"]);
    }

    #[test]
    fn a_remove_that_observed_every_add_must_not_resurrect() {
        let mut h = H::new();
        h.acked(0, sadd("s:0", "m1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, srem("s:0", "m1"), 10, 12, [1, 0, 0], [1, 1, 0]);
        assert_eq!(
            h.check(&[("s:0", members(&["m1"]))]),
            vec!["set-resurrected"]
        );
        assert!(h.check(&[]).is_empty());
    }

    #[test]
    fn an_indeterminate_remove_leaves_the_member_undecided() {
        let mut h = H::new();
        h.acked(0, sadd("s:0", "m1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.unknown(1, srem("s:0", "m1"), 10, 12);
        assert!(h.check(&[("s:0", members(&["m1"]))]).is_empty());
        assert!(h.check(&[]).is_empty());
    }

    #[test]
    fn members_nobody_added_are_invented() {
        let mut h = H::new();
        h.acked(0, sadd("s:0", "m1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        assert_eq!(
            h.check(&[("s:0", members(&["m1", "x"]))]),
            vec!["set-invented"]
        );
    }

    #[test]
    fn a_counter_lies_between_acknowledged_and_possible_increments() {
        let mut h = H::new();
        h.acked(0, incr("c:0", 5), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, incr("c:0", 2), 0, 5, [0, 0, 0], [0, 1, 0]);
        h.unknown(2, incr("c:0", 3), 0, 5);
        h.unknown(2, incr("c:0", -1), 6, 7);
        for ok in ["6", "7", "9", "10"] {
            assert!(h.check(&[("c:0", text(ok))]).is_empty(), "{ok}");
        }
        for bad in ["5", "11", "0"] {
            assert_eq!(
                h.check(&[("c:0", text(bad))]),
                vec!["counter-range"],
                "{bad}"
            );
        }
        assert_eq!(h.check(&[]), vec!["counter-range"]);
    }

    #[test]
    fn a_delete_removes_the_increments_it_observed_only() {
        let mut h = H::new();
        h.acked(0, incr("c:7", 5), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, del("c:7"), 10, 12, [1, 0, 0], [1, 1, 0]);
        h.acked(2, incr("c:7", 2), 10, 12, [0, 0, 0], [0, 0, 1]);
        assert!(h.check(&[("c:7", text("2"))]).is_empty());
        assert_eq!(h.check(&[("c:7", text("7"))]), vec!["counter-range"]);
    }

    #[test]
    fn a_key_deleted_after_all_its_writes_must_stay_deleted() {
        let mut h = H::new();
        h.acked(0, set("r:1", "v1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(2, del("r:1"), 10, 12, [1, 0, 0], [1, 0, 1]);
        assert!(h.check(&[]).is_empty());
        let found = h.check(&[("r:1", text("v1"))]);
        assert!(found.contains(&"key-resurrected"), "{found:?}");
        assert!(found.contains(&"register-resurrected"), "{found:?}");
    }

    #[test]
    fn a_delete_concurrent_with_a_write_does_not_decide_the_key() {
        let mut h = H::new();
        h.acked(0, set("r:1", "v1"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(2, del("r:1"), 3, 12, [0, 0, 0], [0, 0, 1]);
        assert!(h.check(&[("r:1", text("v1"))]).is_empty());
        assert_eq!(h.check(&[]), vec!["register-lost"]);
    }

    #[test]
    fn register_writes_are_final_or_superseded() {
        let mut h = H::new();
        h.acked(0, set("r:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, set("r:0", "b"), 10, 12, [1, 0, 0], [1, 1, 0]);
        assert!(h.check(&[("r:0", text("b"))]).is_empty());
        // "a" was overwritten by a write that observed it; "b" is lost.
        let found = h.check(&[("r:0", text("a"))]);
        assert!(found.contains(&"register-resurrected"), "{found:?}");
        assert!(found.contains(&"register-lost"), "{found:?}");
        assert_eq!(
            h.check(&[("r:0", text("zzz"))]),
            vec!["register-lost", "register-invented"]
        );
    }

    #[test]
    fn a_write_after_the_convergence_barrier_observed_every_earlier_write() {
        let mut h = H::new();
        h.acked(0, set("r:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        // Its region died before answering: it may have happened.
        h.unknown(1, set("r:0", "b"), 6, 8);
        h.acked(2, set("r:0", "e"), 100, 101, [1, 1, 0], [1, 1, 1]);
        // Without the barrier, "b" may be a concurrent write that won.
        assert!(h.check(&[("r:0", text("b"))]).is_empty());
        h.barrier = Some(Barrier {
            at_us: 50_000,
            vv: vec![1, 1, 0],
        });
        assert_eq!(
            h.check(&[("r:0", text("b"))]),
            vec!["register-lost", "register-resurrected"]
        );
        assert!(h.check(&[("r:0", text("e"))]).is_empty());
    }

    #[test]
    fn regions_that_differ_are_reported() {
        let mut h = H::new();
        h.acked(0, incr("c:0", 1), 0, 5, [0, 0, 0], [1, 0, 0]);
        let one: BTreeMap<String, KeyState> = [("c:0".to_string(), text("1"))].into();
        let found = h.check_regions(vec![one.clone(), one, BTreeMap::new()], BTreeMap::new());
        assert_eq!(found, vec!["convergence"]);
    }

    #[test]
    fn concurrent_frontier_writes_must_be_journaled_and_ordered_ones_must_not() {
        let mut h = H::new();
        h.acked(0, set("r:2", "x"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, set("r:2", "y"), 0, 5, [0, 0, 0], [0, 1, 0]);
        let state: BTreeMap<String, KeyState> = [("r:2".to_string(), text("y"))].into();
        let states = vec![state.clone(), state.clone(), state];
        let entry = |w: &str, l: &str| JournalEntry {
            key: "r:2".into(),
            field: None,
            winner: w.into(),
            loser: l.into(),
        };
        let none: BTreeMap<String, Vec<JournalEntry>> = [("r:2".to_string(), Vec::new())].into();
        assert_eq!(
            h.check_regions(states.clone(), none),
            vec!["journal-missed"]
        );
        let listed: BTreeMap<String, Vec<JournalEntry>> =
            [("r:2".to_string(), vec![entry("y", "x")])].into();
        assert!(h.check_regions(states.clone(), listed).is_empty());

        let mut ordered = H::new();
        ordered.acked(0, set("r:2", "x"), 0, 5, [0, 0, 0], [1, 0, 0]);
        ordered.acked(1, set("r:2", "y"), 6, 9, [1, 0, 0], [1, 1, 0]);
        let journaled: BTreeMap<String, Vec<JournalEntry>> =
            [("r:2".to_string(), vec![entry("y", "x")])].into();
        assert_eq!(
            ordered.check_regions(states, journaled),
            vec!["journal-false"]
        );
    }

    #[test]
    fn reads_of_values_never_written_are_reported() {
        let mut h = H::new();
        h.acked(0, set("r:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.push(
            1,
            Cmd::Get { key: "r:0".into() },
            1,
            2,
            Outcome::Ok,
            None,
            None,
        );
        h.ops[1].read = Some(ReadValue::Text("a".into()));
        assert!(h.check(&[("r:0", text("a"))]).is_empty());
        h.ops[1].read = Some(ReadValue::Text("b".into()));
        assert_eq!(h.check(&[("r:0", text("a"))]), vec!["read-invented"]);
    }
}
