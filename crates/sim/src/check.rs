//! Invariant checkers. They read the regions' final state and the drivers'
//! history and never drive anything themselves.
//!
//! Each models the merge rule it checks independently of the store's code:
//! counters sum, observed-remove sets, last-writer-wins registers with
//! siblings, lists whose unique values are accounted for one by one, and
//! the conflicts a region must journal given the order its log applied the
//! writes in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use meridian_crdt::{Dot, EffectKind, Entry, Op, Rule, StreamId, Tag, Value, VersionVector};
use meridian_store::db::visible_digest;
use meridian_store::{Db, PeerApply, Store};

use crate::history::{Fate, History, Recorded, Write};
use crate::region::SimRegion;

mod streams;
pub use streams::check_streams;

/// A violated invariant: which checker, what it saw, and the run's last
/// events.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub check: &'static str,
    pub detail: String,
    pub trace: Vec<String>,
}

impl Anomaly {
    pub fn new(check: &'static str, detail: String) -> Anomaly {
        Anomaly {
            check,
            detail,
            trace: Vec::new(),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.check, self.detail)
    }
}

type Check = Result<(), Anomaly>;

fn fail(check: &'static str, detail: String) -> Check {
    Err(Anomaly::new(check, detail))
}

/// Every checker that runs once the regions have converged.
pub fn check_all(regions: &mut [SimRegion], history: &History) -> Check {
    check_primary_writes(history)?;
    check_majority_writes(history, regions.len())?;
    for r in regions.iter_mut() {
        let id = r.id;
        let db = r.store().db();
        check_counters(db, history).map_err(|a| tag_region(a, id))?;
        check_deleted_counters(db, history).map_err(|a| tag_region(a, id))?;
        check_sets(db, history).map_err(|a| tag_region(a, id))?;
        check_registers(db, history).map_err(|a| tag_region(a, id))?;
        check_scripts_whole(db).map_err(|a| tag_region(a, id))?;
        check_transfers(db, history).map_err(|a| tag_region(a, id))?;
        check_bits(db, history).map_err(|a| tag_region(a, id))?;
        check_hyperloglogs(db, history).map_err(|a| tag_region(a, id))?;
        check_bitfields(db, history).map_err(|a| tag_region(a, id))?;
    }
    check_lists_converged(regions, history)?;
    check_streams(regions, history)?;
    if let Some(r) = regions.first_mut() {
        let id = r.id;
        check_lists(r.store().db_mut(), history).map_err(|a| tag_region(a, id))?;
    }
    for r in regions.iter_mut() {
        check_conflict_journal(r)?;
    }
    check_idempotent_replay(regions)?;
    check_recovery_replays_same_state(regions)
}

pub(crate) fn tag_region(mut a: Anomaly, id: meridian_crdt::RegionId) -> Anomaly {
    a.detail = format!("region {id}: {}", a.detail);
    a
}

/// The `primary` policy's promise, from what clients were told: no two
/// regions accepted `primary` writes in the same term, and a term's writes
/// all came before any write of a later term (the old primary had stopped
/// before the new one started; simulated time is the one true clock).
/// Every accepted write counts, acknowledged or not.
pub fn check_primary_writes(history: &History) -> Check {
    // term -> (region, first tick, last tick)
    let mut terms: BTreeMap<u64, (usize, u64, u64)> = BTreeMap::new();
    for op in &history.ops {
        let Some(term) = op.primary_term else {
            continue;
        };
        let e = terms.entry(term).or_insert((op.region, op.tick, op.tick));
        if e.0 != op.region {
            return fail(
                "primary",
                format!(
                    "regions r{} and r{} both accepted primary writes in term {term} (r{} at tick {})",
                    e.0, op.region, op.region, op.tick
                ),
            );
        }
        e.1 = e.1.min(op.tick);
        e.2 = e.2.max(op.tick);
    }
    let mut latest: Option<(u64, usize, u64)> = None;
    for (term, (region, first, last)) in terms {
        if let Some((t, r, until)) = latest {
            if until >= first {
                return fail(
                    "primary",
                    format!(
                        "r{r} accepted primary writes in term {t} until tick {until}, but r{region} had accepted writes in term {term} from tick {first}"
                    ),
                );
            }
        }
        if latest.is_none_or(|(_, _, until)| last > until) {
            latest = Some((term, region, last));
        }
    }
    Ok(())
}

/// The `majority` policy's promise: a region accepts `majority` writes only
/// while it has heard a majority (itself included) within the lease —
/// of real time, whatever its wall clock did.
pub fn check_majority_writes(history: &History, regions: usize) -> Check {
    let majority = regions / 2 + 1;
    for op in &history.ops {
        if let Some(reached) = op.reached_in_lease.filter(|n| *n < majority) {
            return fail(
                "majority",
                format!(
                    "r{} accepted a majority write at tick {} having heard {reached} of {regions} regions within the lease",
                    op.region, op.tick
                ),
            );
        }
    }
    Ok(())
}

/// The convergence checker's report when the bound is exceeded.
pub fn divergence(regions: &mut [SimRegion], heal_ticks: u64) -> Anomaly {
    let mut lines = Vec::new();
    for r in regions.iter_mut() {
        let id = r.id;
        let db = r.store().db();
        lines.push(format!(
            "{id}: vv {:?} digest {:?}",
            db.version_vector(),
            visible_digest(db)
        ));
    }
    lines.push(differing_keys(regions));
    Anomaly::new(
        "convergence",
        format!(
            "regions differ {heal_ticks} ticks after every fault healed: {}",
            lines.join("; ")
        ),
    )
}

/// The first few keys whose whole state differs between the first region
/// and another, with both states: where to start reading a divergence.
fn differing_keys(regions: &mut [SimRegion]) -> String {
    const SHOWN_MAX: usize = 3;
    let mut states: Vec<BTreeMap<Vec<u8>, Entry>> = Vec::new();
    for r in regions.iter_mut() {
        let db = r.store().db();
        let all = db.keyspace().iter_all();
        states.push(
            all.map(|(k, e)| (k.to_vec(), e.canonical().into_owned()))
                .collect(),
        );
    }
    let mut shown = Vec::new();
    for (i, other) in states.iter().enumerate().skip(1) {
        let keys: BTreeSet<&Vec<u8>> = states[0].keys().chain(other.keys()).collect();
        for k in keys {
            let (a, b) = (states[0].get(k), other.get(k));
            if a != b && shown.len() < SHOWN_MAX {
                let key = String::from_utf8_lossy(k);
                shown.push(format!(
                    "{key:?}: region 0 holds {a:?}, region {i} holds {b:?}"
                ));
            }
        }
    }
    format!("differing keys: {}", shown.join("; "))
}

fn str_value(db: &Db, key: &str) -> Option<Vec<u8>> {
    match db.peek(key.as_bytes())?.value() {
        Value::Str(r) => Some(r.render().into_owned()),
        _ => None,
    }
}

fn hash_field(db: &Db, key: &str, field: &[u8]) -> Option<Vec<u8>> {
    match db.peek(key.as_bytes())?.value() {
        Value::Hash(h) => h
            .fields
            .live
            .iter()
            .find(|(f, _)| &f[..] == field)
            .map(|(_, v)| v.render().into_owned()),
        _ => None,
    }
}

fn zscore(db: &Db, key: &str, member: &[u8]) -> Option<f64> {
    match db.peek(key.as_bytes())?.value() {
        Value::ZSet(z) => z
            .index
            .iter()
            .find(|(_, m)| &m[..] == member)
            .map(|(s, _)| s.0),
        _ => None,
    }
}

fn set_members(db: &Db, key: &str) -> BTreeSet<String> {
    match db.peek(key.as_bytes()).map(|e| e.value()) {
        Some(Value::Set(s)) => s
            .members
            .live
            .keys()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn as_int(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Counters equal the sum of the increments that survived (acknowledged,
/// or found durable after a crash); increments lost in a crash were never
/// acknowledged and never shipped, so they count nowhere.
pub fn check_counters(db: &Db, history: &History) -> Check {
    let mut expected: BTreeMap<(&'static str, &str), i64> = BTreeMap::new();
    for op in history.durable() {
        let (family, key, delta) = match &op.write {
            Write::Incr { key, delta } => ("incr", key, delta),
            Write::HIncr { key, delta } => ("hincr", key, delta),
            Write::ZIncr { key, delta } => ("zincr", key, delta),
            _ => continue,
        };
        if key.starts_with("k:") {
            continue;
        }
        *expected.entry((family, key.as_str())).or_default() += delta;
    }
    for ((family, key), sum) in expected {
        let got = match family {
            "incr" => str_value(db, key).and_then(|v| as_int(&v)),
            "hincr" => hash_field(db, key, b"n").and_then(|v| as_int(&v)),
            _ => zscore(db, key, b"zc").map(|s| s as i64),
        };
        if got != Some(sum) {
            return fail(
                "counters",
                format!("{family} {key}: expected the sum of acknowledged increments {sum}, found {got:?}"),
            );
        }
    }
    Ok(())
}

/// A script's writes are seen all or none: the transfer counters sum to
/// zero (every transfer takes from one what it gives another), and both
/// keys of each pair hold one value (a pair's writes share their op's tag,
/// so last writer wins picks the same script on both). Run at every check
/// point, not only at the end: a region applying half a script's op, or
/// its two halves in different batches, shows here.
pub fn check_scripts_whole(db: &Db) -> Check {
    let mut sum = 0i64;
    let mut seen = Vec::new();
    for n in 0..crate::driver::TRANSFER_KEYS {
        let key = format!("x:{n}");
        let value = str_value(db, &key).map(|v| as_int(&v));
        match value {
            None => {}
            Some(Some(v)) => {
                sum += v;
                seen.push(format!("{key}={v}"));
            }
            Some(None) => return fail("scripts", format!("{key} holds no integer")),
        }
    }
    if sum != 0 {
        return fail(
            "scripts",
            format!(
                "transfers do not sum to zero ({sum}: {}): half of a script's op is visible",
                seen.join(" ")
            ),
        );
    }
    for n in 0..crate::driver::PAIRS {
        let (a, b) = (format!("y:{n}:a"), format!("y:{n}:b"));
        let (va, vb) = (str_value(db, &a), str_value(db, &b));
        if va != vb {
            let show = |v: &Option<Vec<u8>>| {
                v.as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| "(none)".into())
            };
            return fail(
                "scripts",
                format!(
                    "pair {n}: {a}={} but {b}={}: half of a script's op is visible",
                    show(&va),
                    show(&vb)
                ),
            );
        }
    }
    Ok(())
}

/// After convergence, each transfer counter holds exactly what the
/// acknowledged transfers (those that survived) moved in and out of it.
pub fn check_transfers(db: &Db, history: &History) -> Check {
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for op in history.durable() {
        if let Write::Transfer { from, to, amount } = &op.write {
            *expected.entry(from.as_str()).or_default() -= amount;
            *expected.entry(to.as_str()).or_default() += amount;
        }
    }
    for (key, want) in expected {
        let got = str_value(db, key).and_then(|v| as_int(&v));
        if got.unwrap_or(0) != want {
            return fail(
                "scripts",
                format!("{key}: acknowledged transfers leave {want}, found {got:?}"),
            );
        }
    }
    Ok(())
}

/// Counters that are also deleted (`k:*`), exactly: the value is the sum
/// of the increments no delete observed, and the key is absent when every
/// increment was observed by some delete. A delete's leftovers collected too
/// early, or an increment counted into a collected incarnation, shows here.
pub fn check_deleted_counters(db: &Db, history: &History) -> Check {
    let mut incrs: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    let mut dels: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for op in history.durable() {
        match &op.write {
            Write::Incr { key, .. } if key.starts_with("k:") => {
                incrs.entry(key).or_default().push(op)
            }
            Write::Del { key } if key.starts_with("k:") => dels.entry(key).or_default().push(op),
            _ => {}
        }
    }
    for (key, ops) in incrs {
        let deletes = dels.get(key).map(Vec::as_slice).unwrap_or_default();
        let unobserved: Vec<i64> = ops
            .iter()
            .filter(|i| !deletes.iter().any(|d| d.observed(i)))
            .map(|i| match i.write {
                Write::Incr { delta, .. } => delta,
                _ => 0,
            })
            .collect();
        let expected = (!unobserved.is_empty()).then(|| unobserved.iter().sum::<i64>());
        let got = str_value(db, key).and_then(|v| as_int(&v));
        if got != expected {
            return fail(
                "deleted-counters",
                format!(
                    "{key}: expected {expected:?} (the increments no delete observed), found {got:?}"
                ),
            );
        }
    }
    Ok(())
}

/// Observed-remove sets, exactly: a member is present iff some add of it
/// was observed by no SREM of it and no DEL of its key. So nothing deleted
/// resurrects, and no add a remove had not observed is lost.
pub fn check_sets(db: &Db, history: &History) -> Check {
    let mut adds: BTreeMap<(&str, &str), Vec<&Recorded>> = BTreeMap::new();
    let mut removes: BTreeMap<(&str, &str), Vec<&Recorded>> = BTreeMap::new();
    let mut dels: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for op in history.durable() {
        match &op.write {
            Write::SAdd { key, member } => {
                keys.insert(key.as_str());
                adds.entry((key, member)).or_default().push(op)
            }
            Write::SRem { key, member } => {
                keys.insert(key.as_str());
                removes.entry((key, member)).or_default().push(op)
            }
            Write::Del { key } if key.starts_with("d:") => {
                keys.insert(key.as_str());
                dels.entry(key).or_default().push(op)
            }
            _ => {}
        }
    }
    for key in keys {
        let mut expected = BTreeSet::new();
        for ((k, member), added) in adds.range((key, "")..) {
            if *k != key {
                break;
            }
            let removers: Vec<&&Recorded> = removes
                .get(&(key, *member))
                .into_iter()
                .flatten()
                .chain(dels.get(key).into_iter().flatten())
                .collect();
            if added
                .iter()
                .any(|a| !removers.iter().any(|rm| rm.observed(a)))
            {
                expected.insert(member.to_string());
            }
        }
        let got = set_members(db, key);
        if got != expected {
            let resurrected: Vec<&String> = got.difference(&expected).collect();
            let lost: Vec<&String> = expected.difference(&got).collect();
            return fail(
                "sets",
                format!("{key}: resurrected (removed by an op that observed every add) {resurrected:?}, lost (an add no remove observed) {lost:?}"),
            );
        }
    }
    Ok(())
}

/// Bitmaps only ever SETBIT to 1 (`b:*`): each is the union of the bits its
/// acknowledged SETBITs set, every one kept whatever region set it and
/// however its patches were folded, and no bit a lost op set.
pub fn check_bits(db: &Db, history: &History) -> Check {
    let mut expected: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for op in history.durable() {
        if let Write::SetBit { key, bit } = &op.write {
            expected.entry(key).or_default().insert(*bit);
        }
    }
    for (key, bits) in expected {
        let bytes = str_value(db, key).unwrap_or_default();
        let got: BTreeSet<u64> = (0..bytes.len() as u64 * 8)
            .filter(|b| meridian_crdt::patch::read_bit(&bytes, *b))
            .collect();
        if got != bits {
            let lost: Vec<&u64> = bits.difference(&got).collect();
            let extra: Vec<&u64> = got.difference(&bits).collect();
            return fail(
                "bits",
                format!("{key}: lost acknowledged bits {lost:?}, holds bits no acknowledged SETBIT set {extra:?}"),
            );
        }
    }
    Ok(())
}

/// Strings written only by BITFIELD OVERFLOW WRAP INCRBY of fixed fields
/// (`bf:*`): increments merge as a counter (`Patch::Incr`), so each field
/// reads exactly the sum of its acknowledged increments modulo 2^width,
/// whatever region made them and in whatever order they arrived; one lost
/// in a crash counts nowhere.
pub fn check_bitfields(db: &Db, history: &History) -> Check {
    let mut expected: BTreeMap<(&str, u64, u8), u64> = BTreeMap::new();
    for op in history.durable() {
        if let Write::FieldIncr { key, incrs } = &op.write {
            for &(offset, width, delta) in incrs {
                let sum = expected.entry((key, offset, width)).or_default();
                *sum = sum.wrapping_add(delta as u64);
            }
        }
    }
    for ((key, offset, width), sum) in expected {
        let want = sum & ((1u64 << width) - 1);
        let bytes = str_value(db, key).unwrap_or_default();
        let got = meridian_crdt::patch::read_bits(&bytes, offset, width);
        if got != want {
            return fail(
                "bitfields",
                format!("{key}: u{width} at {offset} reads {got}, but its acknowledged increments sum to {want} modulo 2^{width}"),
            );
        }
    }
    Ok(())
}

/// HyperLogLogs only ever PFADDed to (`u:*`): each holds exactly the
/// registers the elements of its acknowledged PFADDs raise, the union of
/// what every region added however it was replicated, folded or merged.
pub fn check_hyperloglogs(db: &Db, history: &History) -> Check {
    use meridian_crdt::hll::{self, Hll, REGISTERS};
    let mut expected: BTreeMap<&str, Box<[u8; REGISTERS]>> = BTreeMap::new();
    for op in history.durable() {
        if let Write::PfAdd { key, elements } = &op.write {
            let regs = expected
                .entry(key)
                .or_insert_with(|| Box::new([0; REGISTERS]));
            for e in elements {
                let (index, value) = hll::hash(e.as_bytes());
                let r = &mut regs[usize::from(index)];
                *r = (*r).max(value);
            }
        }
    }
    for (key, regs) in expected {
        let bytes = str_value(db, key).unwrap_or_default();
        let got = Hll::parse(bytes).ok().and_then(|h| h.registers().ok());
        match got {
            Some(got) if got == *regs => {}
            Some(got) => {
                let differ = (0..REGISTERS).filter(|&i| got[i] != regs[i]).count();
                return fail(
                    "hyperloglogs",
                    format!(
                        "{key}: {differ} registers differ from the union of acknowledged PFADDs"
                    ),
                );
            }
            None => return fail("hyperloglogs", format!("{key}: not a HyperLogLog")),
        }
    }
    Ok(())
}

/// Last writer wins among the writes no other write observed.
pub fn check_registers(db: &Db, history: &History) -> Check {
    let mut writes: BTreeMap<&str, Vec<(&Recorded, &str)>> = BTreeMap::new();
    for op in history.durable() {
        if let Write::Set { key, value } = &op.write {
            writes.entry(key).or_default().push((op, value));
        }
    }
    for (key, ws) in writes {
        let winner = ws
            .iter()
            .filter(|(w, _)| !ws.iter().any(|(o, _)| o.dot() != w.dot() && o.observed(w)))
            .max_by_key(|(w, _)| w.tag)
            .map(|(_, v)| v.as_bytes().to_vec());
        let got = str_value(db, key);
        if got != winner {
            return fail(
                "registers",
                format!(
                    "{key}: expected {:?}, found {:?}",
                    winner.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    got.map(|v| String::from_utf8_lossy(&v).into_owned())
                ),
            );
        }
    }
    Ok(())
}

/// The list keys the history wrote, in order.
fn list_keys(history: &History) -> BTreeSet<&str> {
    history
        .ops
        .iter()
        .filter_map(|op| match &op.write {
            Write::Push { key, .. } | Write::Insert { key, .. } | Write::Remove { key, .. } => {
                Some(key.as_str())
            }
            _ => None,
        })
        .collect()
}

/// The values of the list at `key` in order (empty when absent).
fn list_of(db: &mut Db, key: &str) -> Result<Vec<String>, Anomaly> {
    match db.list(key.as_bytes()) {
        Ok(Some(l)) => Ok(l
            .values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()),
        Ok(None) => Ok(Vec::new()),
        Err(_) => Err(Anomaly::new(
            "lists",
            format!("{key} holds another type than a list"),
        )),
    }
}

/// Lists, (a): every region holds the same values in the same order for
/// every list key. The convergence wait compares digests; this says which
/// list and where the orders part.
pub fn check_lists_converged(regions: &mut [SimRegion], history: &History) -> Check {
    for key in list_keys(history) {
        let mut first: Option<Vec<String>> = None;
        for r in regions.iter_mut() {
            let id = r.id;
            let got = list_of(r.store().db_mut(), key)?;
            let Some(want) = &first else {
                first = Some(got);
                continue;
            };
            if got != *want {
                let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
                return fail(
                    "lists",
                    format!(
                        "{key}: region {id} holds {} values, the first region {}; they part at index {at}: {:?} against {:?}",
                        got.len(),
                        want.len(),
                        got.get(at..(at + 3).min(got.len())).unwrap_or_default(),
                        want.get(at..(at + 3).min(want.len())).unwrap_or_default(),
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Lists, exactly, from the values they were given (each unique to the
/// run, so a value names its push):
/// - (b) a list holds each value at most once, and exactly the values
///   some surviving push or insert gave it that no surviving removal took:
///   nothing acknowledged is lost silently, nothing removed or lost in a
///   crash comes back, nothing appears that nobody pushed;
/// - (c) a push lands past everything its writer held at that end: an
///   RPUSH after every value its op had observed (its context covers the
///   value's push), an LPUSH before each, and the values of one push in
///   argument order (reversed for LPUSH). So a region's own pushes to one
///   end keep their order. An insert lands between the neighbours it was
///   given, those still present.
///
/// Why (c) holds for values still present at the end: a value the pusher
/// had observed was in its list then, unless a removal that observed it
/// had taken it, and such a removal, surviving, takes it everywhere; a
/// removal lost in a crash takes the later push with it (a log loses a
/// suffix). Position keys of earlier elements never change.
pub fn check_lists(db: &mut Db, history: &History) -> Check {
    let mut pushed: BTreeMap<&str, &Recorded> = BTreeMap::new();
    let mut removed: BTreeMap<&str, &Recorded> = BTreeMap::new();
    for op in &history.ops {
        match &op.write {
            Write::Push { values, .. } => {
                for v in values {
                    pushed.insert(v, op);
                }
            }
            Write::Insert { value, .. } => {
                pushed.insert(value, op);
            }
            Write::Remove { values, .. } if op.fate == Fate::Durable => {
                for v in values {
                    removed.entry(v).or_insert(op);
                }
            }
            _ => {}
        }
    }
    for key in list_keys(history) {
        let list = list_of(db, key)?;
        let mut at: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, v) in list.iter().enumerate() {
            if at.insert(v, i).is_some() {
                return fail("lists", format!("{key}: holds {v} twice"));
            }
            let Some(push) = pushed.get(v.as_str()) else {
                return fail("lists", format!("{key}: holds {v}, which nobody pushed"));
            };
            if push.fate != Fate::Durable {
                return fail(
                    "lists",
                    format!(
                        "{key}: holds {v}, pushed by {} which a crash lost",
                        push.dot()
                    ),
                );
            }
            if let Some(rm) = removed.get(v.as_str()) {
                return fail(
                    "lists",
                    format!(
                        "{key}: holds {v} at index {i}, which {} ({:?}) removed",
                        rm.dot(),
                        rm.write
                    ),
                );
            }
        }
        for op in history.durable() {
            match &op.write {
                Write::Push {
                    key: k,
                    values,
                    front,
                } if k == key => {
                    for v in values {
                        if !at.contains_key(v.as_str()) && !removed.contains_key(v.as_str()) {
                            return fail(
                                "lists",
                                format!(
                                    "{key}: {v}, pushed by {} (acknowledged), is gone and no removal took it",
                                    op.dot()
                                ),
                            );
                        }
                    }
                    check_push_order(key, op, values, *front, &at, &pushed)?;
                }
                Write::Insert {
                    key: k,
                    value,
                    after,
                    before,
                } if k == key => {
                    let Some(&i) = at.get(value.as_str()) else {
                        if removed.contains_key(value.as_str()) {
                            continue;
                        }
                        return fail(
                            "lists",
                            format!(
                                "{key}: {value}, inserted by {} (acknowledged), is gone and no removal took it",
                                op.dot()
                            ),
                        );
                    };
                    let lo = after.as_deref().and_then(|a| at.get(a));
                    let hi = before.as_deref().and_then(|b| at.get(b));
                    if lo.is_some_and(|&lo| lo > i) || hi.is_some_and(|&hi| hi < i) {
                        return fail(
                            "lists",
                            format!(
                                "{key}: {value} (inserted by {} between {after:?} and {before:?}) is at index {i}, outside them ({lo:?}, {hi:?})",
                                op.dot()
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// (c) for one push: each of its values still present comes after (RPUSH)
/// or before (LPUSH) every present value its op observed, and the values
/// it pushed earlier.
fn check_push_order(
    key: &str,
    op: &Recorded,
    values: &[String],
    front: bool,
    at: &BTreeMap<&str, usize>,
    pushed: &BTreeMap<&str, &Recorded>,
) -> Check {
    let end = if front { "LPUSH" } else { "RPUSH" };
    for (j, v) in values.iter().enumerate() {
        let Some(&iv) = at.get(v.as_str()) else {
            continue;
        };
        let earlier_here = values[..j].iter().map(String::as_str);
        let observed = at
            .keys()
            .copied()
            .filter(|a| pushed.get(a).is_some_and(|p| op.observed(p)));
        for a in earlier_here.chain(observed) {
            let Some(&ia) = at.get(a) else {
                continue;
            };
            if (front && ia < iv) || (!front && ia > iv) {
                return fail(
                    "lists",
                    format!(
                        "{key}: {end} {} put {v} at index {iv}, on the wrong side of {a} (index {ia}), which it had observed",
                        op.dot()
                    ),
                );
            }
        }
    }
    Ok(())
}

/// The conflict journal is exact for `r:*` registers (written only by SET):
/// replaying the region's own log in order, each SET meets the writes it
/// had not observed that are still held (siblings), and each such pair is
/// one conflict; nothing else may be journaled for those keys.
pub fn check_conflict_journal(region: &mut SimRegion) -> Check {
    let id = region.id;
    let store = region.store();
    // Only a log that holds the region's whole history can say exactly
    // what it journaled: compaction drops records, and a state merge
    // journals what it found without logging an op.
    if !store.log_base_vv().is_empty() {
        return Ok(());
    }
    let mut expected: Vec<(String, Dot, Dot)> = Vec::new();
    let mut siblings: BTreeMap<Vec<u8>, Vec<Tag>> = BTreeMap::new();
    let last = store.log().last_lsn();
    if last >= store.log().oldest_lsn() {
        let reader = store
            .log()
            .reader(store.log().oldest_lsn())
            .map_err(|e| Anomaly::new("journal", e.to_string()))?;
        for next in reader {
            let (lsn, payload) = next.map_err(|e| Anomaly::new("journal", e.to_string()))?;
            let op: Op = postcard::from_bytes(&payload)
                .map_err(|e| Anomaly::new("journal", format!("record {lsn}: {e}")))?;
            for effect in &op.effects {
                if !effect.key.starts_with(b"r:") {
                    continue;
                }
                if let EffectKind::StrSet { .. } = effect.kind {
                    let held = siblings.entry(effect.key.to_vec()).or_default();
                    held.retain(|t| !op.ctx.covers(t.dot));
                    for t in held.iter() {
                        let (w, l) = if *t > op.tag {
                            (t, &op.tag)
                        } else {
                            (&op.tag, t)
                        };
                        expected.push((
                            String::from_utf8_lossy(&effect.key).into_owned(),
                            w.dot,
                            l.dot,
                        ));
                    }
                    held.push(op.tag);
                }
            }
        }
    }
    let mut journaled: Vec<(String, Dot, Dot)> = store
        .journal()
        .recent()
        .filter(|e| e.conflict.key.starts_with(b"r:") && e.conflict.sub.is_none())
        .filter(|e| e.conflict.rule == Rule::LastWriterWins)
        .map(|e| {
            (
                String::from_utf8_lossy(&e.conflict.key).into_owned(),
                e.conflict.winner.dot,
                e.conflict.loser.dot,
            )
        })
        .collect();
    expected.sort();
    journaled.sort();
    if expected != journaled {
        let missed: Vec<_> = expected.iter().filter(|e| !journaled.contains(e)).collect();
        let false_entries: Vec<_> = journaled.iter().filter(|e| !expected.contains(e)).collect();
        return fail(
            "journal",
            format!(
                "region {id}: {} conflicts expected, {} journaled; missed {missed:?}; false or repeated {false_entries:?}",
                expected.len(),
                journaled.len()
            ),
        );
    }
    Ok(())
}

/// Replaying every region's whole log into every region changes nothing:
/// each op is a duplicate, digests, version vectors and journals stay.
pub fn check_idempotent_replay(regions: &mut [SimRegion]) -> Check {
    let mut logs = Vec::new();
    for r in regions.iter_mut() {
        let store = r.store();
        let mut records = Vec::new();
        let reader = store
            .log()
            .reader(store.log().oldest_lsn())
            .map_err(|e| Anomaly::new("idempotence", e.to_string()))?;
        for next in reader {
            records.push(
                next.map_err(|e| Anomaly::new("idempotence", e.to_string()))?
                    .1,
            );
        }
        logs.push(records);
    }
    for r in regions.iter_mut() {
        let id = r.id;
        let store = r.store();
        let before = state_of(store);
        let now = store.db().now_ms();
        for records in &logs {
            for rec in records {
                match store.apply_peer_op(rec, now) {
                    Ok(PeerApply::Duplicate) => {}
                    other => {
                        return fail(
                            "idempotence",
                            format!("region {id}: replaying an applied op gave {other:?}"),
                        )
                    }
                }
            }
        }
        let after = state_of(store);
        if before != after {
            return fail(
                "idempotence",
                format!("region {id}: replaying duplicates changed {before:?} into {after:?}"),
            );
        }
    }
    Ok(())
}

fn state_of(store: &Store) -> ((u64, usize), VersionVector, usize) {
    let db = store.db();
    (
        visible_digest(db),
        db.version_vector().clone(),
        store.journal().retained(),
    )
}

/// A clean restart rebuilds exactly the state: recovery replays the log
/// through the same apply code and journals nothing twice.
pub fn check_recovery_replays_same_state(regions: &mut [SimRegion]) -> Check {
    for r in regions.iter_mut() {
        let id = r.id;
        let now = r.store().db().now_ms();
        let before = state_of(r.store());
        r.reopen_clean(now)
            .map_err(|e| Anomaly::new("recovery", format!("region {id}: {e}")))?;
        let after = state_of(r.store());
        if before != after {
            return fail(
                "recovery",
                format!("region {id}: state before restart {before:?}, after {after:?}"),
            );
        }
    }
    Ok(())
}

/// Converged regions that collected everything collectable hold equal
/// states, hidden parts included: collection that dropped the wrong thing,
/// or an increment counted into a collected incarnation, leaves a region's
/// hidden state different even when what readers see agrees.
pub fn check_whole_states_equal(regions: &mut [SimRegion]) -> Check {
    fn whole(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = db
            .keyspace()
            .iter_all()
            .map(|(k, e)| {
                let bytes = postcard::to_stdvec(&*e.canonical()).unwrap_or_default();
                (k.to_vec(), bytes)
            })
            .collect();
        all.sort();
        all
    }
    let first = whole(regions[0].store().db());
    for r in regions.iter_mut().skip(1) {
        let id = r.id;
        let other = whole(r.store().db());
        if other != first {
            let differ = differing_keys(regions);
            return fail(
                "whole-state",
                format!("region {id} and region 0 hold different states; {differ}"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The list checker on hand-made histories over a real `Db`: each
    //! broken story must be caught, the sound ones must pass.
    use meridian_crdt::{Blob, Hlc, RegionId};

    use super::*;
    use crate::history::Fate;

    fn r0() -> RegionId {
        RegionId::new("r0").expect("valid region id")
    }

    /// A list `l:0` in a one-region `Db`, built by RPUSHes (`front`
    /// false) and LPUSHes of one value each, one op per push.
    fn db_with(pushes: &[(&str, bool)]) -> Db {
        let mut db = Db::new(r0(), 0);
        for (v, front) in pushes {
            db.lpush(b"l:0", vec![Blob::from(v.as_bytes())], *front);
            db.commit().expect("a push writes");
        }
        db
    }

    /// Op `seq` of r0, having observed r0's ops up to `observed`.
    fn op(seq: u64, observed: u64, write: Write, fate: Fate) -> Recorded {
        let mut ctx = VersionVector::new();
        ctx.set(r0(), observed);
        Recorded {
            region: 0,
            tick: seq,
            tag: Tag {
                hlc: Hlc(seq),
                dot: Dot::new(r0(), seq),
            },
            ctx,
            write,
            fate,
            primary_term: None,
            reached_in_lease: None,
        }
    }

    fn push(values: &[&str], front: bool) -> Write {
        Write::Push {
            key: "l:0".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            front,
        }
    }

    fn pop(values: &[&str]) -> Write {
        Write::Remove {
            key: "l:0".into(),
            what: "lpop",
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn check(db: &mut Db, ops: Vec<Recorded>) -> Result<(), String> {
        let history = History {
            ops,
            ..History::default()
        };
        check_lists(db, &history).map_err(|a| a.detail)
    }

    #[test]
    fn an_acknowledged_push_nothing_removed_must_be_present() {
        let mut db = db_with(&[("a", false)]);
        let a = op(1, 0, push(&["a"], false), Fate::Durable);
        let b = op(2, 1, push(&["b"], false), Fate::Durable);
        let err = check(&mut db, vec![a.clone(), b.clone()]).unwrap_err();
        assert!(
            err.contains("b, pushed by") && err.contains("no removal"),
            "{err}"
        );
        // Taken by a pop: accounted for.
        let popped = op(3, 2, pop(&["b"]), Fate::Durable);
        assert_eq!(check(&mut db, vec![a.clone(), b.clone(), popped]), Ok(()));
        // A pop lost in a crash took nothing.
        let lost = op(3, 2, pop(&["b"]), Fate::Lost);
        assert!(check(&mut db, vec![a, b, lost]).is_err());
    }

    #[test]
    fn a_removed_or_crash_lost_value_must_not_be_present() {
        let mut db = db_with(&[("a", false)]);
        let a = op(1, 0, push(&["a"], false), Fate::Durable);
        let err = check(
            &mut db,
            vec![a.clone(), op(2, 1, pop(&["a"]), Fate::Durable)],
        )
        .unwrap_err();
        assert!(err.contains("removed"), "{err}");
        assert_eq!(
            check(&mut db, vec![a, op(2, 1, pop(&["a"]), Fate::Lost)]),
            Ok(())
        );
        let err = check(&mut db, vec![op(1, 0, push(&["a"], false), Fate::Lost)]).unwrap_err();
        assert!(err.contains("lost"), "{err}");
        let err = check(&mut db, vec![op(1, 0, push(&["x"], false), Fate::Durable)]).unwrap_err();
        assert!(err.contains("nobody pushed"), "{err}");
    }

    #[test]
    fn an_rpush_lands_after_what_it_observed_and_an_lpush_before() {
        // The list holds b, a.
        let mut db = db_with(&[("a", false), ("b", true)]);
        let lpush_b = op(2, 1, push(&["b"], true), Fate::Durable);
        let rpush_b = op(2, 1, push(&["b"], false), Fate::Durable);
        let a = op(1, 0, push(&["a"], false), Fate::Durable);
        assert_eq!(check(&mut db, vec![a.clone(), lpush_b]), Ok(()));
        let err = check(&mut db, vec![a.clone(), rpush_b]).unwrap_err();
        assert!(err.contains("wrong side of a"), "{err}");
        // Concurrent (b had not observed a): either order is fine.
        let concurrent = op(2, 0, push(&["b"], false), Fate::Durable);
        assert_eq!(check(&mut db, vec![a, concurrent]), Ok(()));
    }

    #[test]
    fn one_push_keeps_its_values_in_argument_order() {
        // The list holds b, a: RPUSH b a, or LPUSH a b.
        let mut db = db_with(&[("a", false), ("b", true)]);
        let both = |values: &[&str], front| op(1, 0, push(values, front), Fate::Durable);
        assert_eq!(check(&mut db, vec![both(&["b", "a"], false)]), Ok(()));
        assert_eq!(check(&mut db, vec![both(&["a", "b"], true)]), Ok(()));
        assert!(check(&mut db, vec![both(&["a", "b"], false)]).is_err());
        assert!(check(&mut db, vec![both(&["b", "a"], true)]).is_err());
    }

    #[test]
    fn an_insert_lands_between_its_neighbours() {
        // The list holds a, b, c.
        let mut db = db_with(&[("a", false), ("b", false), ("c", false)]);
        let pushes = op(1, 0, push(&["a", "c"], false), Fate::Durable);
        let insert = |after: &str, before: &str| {
            op(
                2,
                1,
                Write::Insert {
                    key: "l:0".into(),
                    value: "b".into(),
                    after: Some(after.into()),
                    before: Some(before.into()),
                },
                Fate::Durable,
            )
        };
        assert_eq!(
            check(&mut db, vec![pushes.clone(), insert("a", "c")]),
            Ok(())
        );
        let err = check(&mut db, vec![pushes, insert("c", "a")]).unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }
}
