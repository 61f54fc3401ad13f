//! Property tests for the merge laws every value type relies on:
//! - replicas that exchange ops in any causal order, with duplicates, converge;
//! - a fresh replica replaying all ops in any causal order reaches that state;
//! - state merge is commutative, associative and idempotent, and agrees with
//!   op replay.
//!
//! The actions cover every value type: strings, counters, hashes, sets,
//! sorted sets, lists, partial string writes (bit patches, HyperLogLog
//! registers, BITFIELD increments of overlapping counted fields, folds),
//! TTLs and streams (XADD with IDs unique across regions and with one
//! explicit ID several regions add, XDEL and trims of observed entries,
//! XSETID, and consumer groups created, read, acknowledged, claimed,
//! re-pointed and destroyed). Converged strings read the same bit by bit
//! and whole (`StrReg::bit`, `len` and `render` agree).

use std::collections::BTreeMap;

use meridian_crdt::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Replica {
    region: RegionId,
    clock: HlcClock,
    seq: u64,
    vv: VersionVector,
    keys: BTreeMap<Blob, Entry>,
    /// Ops in the order this replica applied them (a causal order).
    log: Vec<Op>,
}

fn state(r: &Replica) -> (&VersionVector, &BTreeMap<Blob, Entry>) {
    (&r.vv, &r.keys)
}

impl Replica {
    fn new(name: &str) -> Replica {
        Replica {
            region: RegionId::new(name).unwrap(),
            clock: HlcClock::new(u64::MAX),
            seq: 0,
            vv: VersionVector::new(),
            keys: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> bool {
        let dot = op.dot();
        if self.vv.covers(dot) {
            return false;
        }
        assert_eq!(self.vv.get(dot.region()), dot.seq() - 1, "per-origin order");
        assert!(self.vv.dominates(&op.ctx), "causal delivery");
        let _ = self.clock.observe(op.tag.hlc, 0);
        let ctx = op.context();
        let mut conflicts = Vec::new();
        for e in &op.effects {
            let kind_hint = match &e.kind {
                EffectKind::HSet { .. } | EffectKind::HDel { .. } | EffectKind::HIncr { .. } => {
                    Kind::Hash
                }
                EffectKind::SAdd { .. } | EffectKind::SRem { .. } => Kind::Set,
                EffectKind::ZAdd { .. } | EffectKind::ZIncr { .. } | EffectKind::ZRem { .. } => {
                    Kind::ZSet
                }
                EffectKind::LInsert { .. }
                | EffectKind::LRemove { .. }
                | EffectKind::LSet { .. } => Kind::List,
                k if k.is_stream() => Kind::Stream,
                _ => Kind::String,
            };
            let entry = self
                .keys
                .entry(e.key.clone())
                .or_insert_with(|| Entry::new(kind_hint));
            entry.apply(&e.key, &e.kind, &ctx, &mut conflicts);
            if entry.is_empty() {
                self.keys.remove(&e.key);
            }
        }
        self.vv.observe(dot);
        self.log.push(op.clone());
        true
    }

    /// Makes a local op the way the store does: observations read from state.
    fn write(&mut self, action: &Action, wall_ms: u64) {
        // Stream writes mostly go to keys of their own, so streams grow
        // groups and pending entries; one key is shared with every type.
        let key = if action.verb >= 23 && action.key < 2 {
            Blob::from(format!("s{}", action.key).as_str())
        } else {
            Blob::from(format!("k{}", action.key).as_str())
        };
        let entry = self.keys.get(&key);
        let keyobs = entry.map(|e| e.observe()).unwrap_or_default();
        let sub = Blob::from(format!("m{}", action.sub).as_str());
        let subobs = |kind| {
            let totals = entry
                .map(|e| e.sub_observation(kind, &sub))
                .unwrap_or_default();
            vec![SubObs {
                sub: sub.clone(),
                totals,
            }]
        };
        let next = Dot::new(self.region, self.seq + 1);
        let start = |kind, sub: Option<&[u8]>| {
            entry.map_or(next.seq(), |e| e.counter_start(kind, sub, next))
        };
        if matches!(action.verb, 11 | 12) && !entry.is_some_and(|e| e.is_live()) {
            // EXPIRE and expiry only ever target a key that exists here.
            return;
        }
        let tag = Tag {
            hlc: self.clock.now(wall_ms),
            dot: next,
        };
        let list = match entry.and_then(|e| e.typed(Kind::List)) {
            Some(Value::List(l)) => (**l).clone(),
            _ => ListVal::default(),
        };
        let len = list.len();
        let pos_at = |i: usize| list.get(i).map(|e| e.pos.into_owned());
        let elem = |idx: u32| ElemId { tag, idx };
        let value = |i: u32| Blob::from(format!("e{}-{}-{i}", action.n, self.seq).as_str());
        if matches!(action.verb, 16 | 18 | 19) && len == 0 {
            // Pops, LSET and LREM act only on elements this replica holds.
            return;
        }
        let stream = match entry.and_then(|e| e.typed(Kind::Stream)) {
            Some(Value::Stream(x)) => (**x).clone(),
            _ => StreamVal::default(),
        };
        let kind = if action.verb >= 23 {
            match stream_effect(&stream, action, self.region, self.slot(), tag, wall_ms) {
                Some(k) => k,
                None => return,
            }
        } else {
            match action.verb {
                14 | 15 => {
                    // RPUSH (14) or LPUSH (15) of one to three values.
                    let front = action.verb == 15;
                    let mut end = if front {
                        pos_at(0)
                    } else {
                        len.checked_sub(1).and_then(pos_at)
                    };
                    let mut items = Vec::new();
                    for i in 0..(action.n as u32 % 3 + 1) {
                        let p = if front {
                            Pos::before(end.as_ref(), elem(i))
                        } else {
                            Pos::after(end.as_ref(), elem(i))
                        };
                        end = Some(p.clone());
                        items.push((p, value(i)));
                    }
                    EffectKind::LInsert { items }
                }
                16 => {
                    // A pop of up to two elements from the front.
                    let n = (action.n as usize % 2 + 1).min(len);
                    EffectKind::LRemove {
                        ranges: vec![(pos_at(0).unwrap(), pos_at(n - 1).unwrap())],
                    }
                }
                17 => {
                    // LINSERT before the element at `sub` (or at the end).
                    let at = (action.sub as usize).min(len);
                    let lo = at.checked_sub(1).and_then(pos_at);
                    let hi = pos_at(at);
                    let p = match (&lo, &hi) {
                        (_, None) => Pos::after(lo.as_ref(), elem(0)),
                        (None, Some(_)) => Pos::before(hi.as_ref(), elem(0)),
                        _ => Pos::between(lo.as_ref(), hi.as_ref(), elem(0)),
                    };
                    EffectKind::LInsert {
                        items: vec![(p, value(0))],
                    }
                }
                18 => EffectKind::LSet {
                    pos: pos_at(action.sub as usize % len).unwrap(),
                    value: value(9),
                },
                19 => {
                    // LREM / LTRIM: one element in the middle, or the tail.
                    let a = action.sub as usize % len;
                    let b = if action.n.is_multiple_of(2) {
                        a
                    } else {
                        len - 1
                    };
                    EffectKind::LRemove {
                        ranges: vec![(pos_at(a).unwrap(), pos_at(b).unwrap())],
                    }
                }
                0 => EffectKind::StrSet {
                    value: Blob::from(format!("v{}", action.n).as_str()),
                    keep_ttl: action.n.is_multiple_of(2),
                    obs: keyobs,
                },
                1 => EffectKind::StrIncr {
                    delta: Delta::Int(action.n as i64 - 5),
                    start: start(Kind::String, None),
                },
                2 => EffectKind::Del { obs: keyobs },
                3 => EffectKind::HSet {
                    fields: vec![(sub.clone(), Blob::from(format!("h{}", action.n).as_str()))],
                    obs: subobs(Kind::Hash),
                },
                4 => EffectKind::HDel {
                    fields: vec![sub.clone()],
                    obs: subobs(Kind::Hash),
                },
                5 => EffectKind::HIncr {
                    field: sub.clone(),
                    delta: Delta::Int(action.n as i64),
                    start: start(Kind::Hash, Some(&sub)),
                },
                6 => EffectKind::SAdd {
                    members: vec![sub.clone()],
                },
                7 => EffectKind::SRem {
                    members: vec![sub.clone()],
                },
                8 => EffectKind::ZAdd {
                    members: vec![(sub.clone(), action.n as f64)],
                    obs: subobs(Kind::ZSet),
                },
                9 => EffectKind::ZIncr {
                    member: sub.clone(),
                    delta: action.n as f64 / 4.0,
                    start: start(Kind::ZSet, Some(&sub)),
                },
                10 => EffectKind::ZRem {
                    members: vec![sub.clone()],
                    obs: subobs(Kind::ZSet),
                },
                11 => EffectKind::SetTtl {
                    deadline_ms: if action.n.is_multiple_of(3) {
                        None
                    } else {
                        Some(wall_ms + action.n as u64)
                    },
                },
                12 => EffectKind::Expire {
                    deadline_ms: wall_ms.saturating_sub(action.n as u64),
                    obs: keyobs,
                },
                20 if action.n.is_multiple_of(3) => {
                    // BITFIELD INCRBY under OVERFLOW WRAP: fields of one key
                    // that overlap the bit patches below and each other.
                    let field = Field {
                        offset: u64::from(action.sub) * 3,
                        width: action.sub % 2 * 3 + 2,
                    };
                    let start = match entry.and_then(|e| e.typed(Kind::String)) {
                        Some(Value::Str(r)) => r.field_start(field, next),
                        _ => next.seq(),
                    };
                    EffectKind::StrPatch {
                        patches: vec![Patch::Incr {
                            offset: field.offset,
                            width: field.width,
                            start,
                            delta: u64::from(action.n) + 1,
                        }],
                        fold: None,
                        obs: keyobs,
                    }
                }
                20 => EffectKind::StrPatch {
                    // SETBIT or BITFIELD: overlapping bit ranges of one key.
                    patches: vec![Patch::Bits {
                        offset: u64::from(action.sub) * 3,
                        width: action.n % 5 + 1,
                        value: u64::from(action.n) * 7,
                    }],
                    fold: None,
                    obs: keyobs,
                },
                21 => EffectKind::StrPatch {
                    // PFADD raising two registers.
                    patches: vec![
                        Patch::Register {
                            index: u16::from(action.sub),
                            value: action.n,
                        },
                        Patch::Register {
                            index: u16::from(action.sub) + 1,
                            value: action.n / 2,
                        },
                    ],
                    fold: None,
                    obs: keyobs,
                },
                22 => EffectKind::StrPatch {
                    // A partial write folding the patches it observed.
                    patches: Vec::new(),
                    fold: Some(Blob::from(format!("f{}", action.n).as_str())),
                    obs: keyobs,
                },
                _ => EffectKind::StrIncr {
                    delta: Delta::Float(action.n as f64 / 8.0),
                    start: start(Kind::String, None),
                },
            }
        };
        self.seq += 1;
        let mut effects = Vec::new();
        if kind.needs_ttl_dropped() && entry.is_none_or(|e| !e.is_live()) {
            // As the store does: a new key has no TTL.
            effects.push(Effect {
                key: key.clone(),
                kind: EffectKind::DropTtl,
            });
        }
        effects.push(Effect { key, kind });
        let op = Op {
            tag,
            ctx: self.vv.clone(),
            effects,
        };
        assert!(self.apply(&op));
    }

    /// This replica's slot in auto-generated stream IDs (its index + 1).
    fn slot(&self) -> u64 {
        NAMES
            .iter()
            .position(|n| *n == self.region.as_str())
            .map_or(0, |i| i as u64 + 1)
    }

    /// Receives everything `from` has applied, in `from`'s order.
    fn sync_from(&mut self, from: &Replica) {
        for op in &from.log {
            self.apply(op);
        }
    }
}

#[derive(Clone, Debug)]
struct Action {
    replica: usize,
    sync_from: Option<usize>,
    verb: u8,
    key: u8,
    sub: u8,
    n: u8,
}

fn action() -> impl Strategy<Value = Action> {
    (
        0..3usize,
        prop::option::weighted(0.25, 0..3usize),
        0..50u8,
        0..3u8,
        0..3u8,
        0..10u8,
    )
        .prop_map(|(replica, sync_from, verb, key, sub, n)| Action {
            replica,
            sync_from,
            // Groups, reads from them, adds and claims come more often than
            // the other stream writes, so groups hold pending entries.
            verb: match verb {
                37..=40 => 30,
                41..=43 => 29,
                44..=46 => 23,
                47..=49 => 33,
                v => v,
            },
            key,
            sub,
            n,
        })
}

const NAMES: [&str; 3] = ["prop-a", "prop-b", "prop-c"];

/// The next auto-generated ID as the store makes it with peers: the
/// region's slot in the low 10 bits of the sequence, so regions never
/// collide.
fn next_stream_id(last: StreamId, now_ms: u64, slot: u64) -> StreamId {
    if now_ms > last.ms {
        return StreamId::new(now_ms, slot);
    }
    let k = (last.seq.saturating_sub(slot) / 1024) + 1;
    let seq = if last.seq < slot {
        slot
    } else {
        k * 1024 + slot
    };
    StreamId::new(last.ms, seq)
}

/// A stream write made the way the store makes it, from the stream as the
/// writing replica holds it; `None` when it would change nothing.
fn stream_effect(
    s: &StreamVal,
    a: &Action,
    region: RegionId,
    slot: u64,
    tag: Tag,
    wall_ms: u64,
) -> Option<EffectKind> {
    let ids: Vec<StreamId> = s
        .range(StreamId::ZERO, StreamId::MAX)
        .map(|(id, _)| id)
        .collect();
    let group = Blob::from(format!("g{}", a.sub % 2).as_str());
    let consumer = Blob::from(format!("c{}", a.n % 3).as_str());
    let nth = |i: usize| ids.get(i % ids.len().max(1)).copied();
    Some(match a.verb {
        23 | 24 => EffectKind::XAdd {
            id: next_stream_id(s.last_id(), wall_ms / 4, slot),
            fields: vec![Blob::from("f"), Blob::from(format!("v{}", a.n).as_str())],
            added: s.next_added(region),
        },
        25 => {
            // The same explicit ID from any region: concurrent adds collide.
            let id = StreamId::new(1, u64::from(a.sub));
            if id <= s.last_id() {
                return None;
            }
            EffectKind::XAdd {
                id,
                fields: vec![Blob::from("x"), Blob::from(region.as_str())],
                added: s.next_added(region),
            }
        }
        26 => {
            let id = nth(a.sub as usize)?;
            EffectKind::XDel {
                ids: vec![id],
                max_deleted: s.max_deleted().max(id),
            }
        }
        27 => EffectKind::XTrim {
            upto: nth(a.n as usize % 2)?,
        },
        28 => EffectKind::XSetId {
            last: StreamId::new(s.last_id().ms + u64::from(a.n), 0).max(s.last_id()),
            added: a
                .n
                .is_multiple_of(2)
                .then_some(u64::from(a.n) + s.len() as u64),
            max_deleted: a.n.is_multiple_of(3).then(|| s.first_id()),
        },
        29 => EffectKind::XGroupCreate {
            group,
            last: if a.n.is_multiple_of(3) {
                s.last_id()
            } else {
                StreamId::ZERO
            },
            read: a.n.is_multiple_of(4).then_some(0),
        },
        30 | 31 => {
            // XREADGROUP of up to two new entries.
            let Some(g) = s.group(&group) else {
                // No such group here yet: create it, reading from the start.
                return Some(EffectKind::XGroupCreate {
                    group,
                    last: StreamId::ZERO,
                    read: None,
                });
            };
            let (_, read) = g.last_delivered();
            let new: Vec<(StreamId, RegionId)> = s
                .undelivered(g)
                .take(2)
                .map(|(id, _, origin)| (id, origin))
                .collect();
            if new.is_empty() {
                return None;
            }
            // Each region's cursor moves to the largest of its entries read,
            // and every LASTID-like raise goes above the group's top.
            let mut cursors: Vec<(RegionId, StreamId)> = Vec::new();
            for &(id, origin) in &new {
                match cursors.iter_mut().find(|c| c.0 == origin) {
                    Some(c) => c.1 = c.1.max(id),
                    None => cursors.push((origin, id)),
                }
            }
            let raise = a.n.is_multiple_of(5).then(|| {
                let (top, _) = g.last_delivered();
                StreamId::new(top.ms, top.seq.saturating_add(1))
            });
            let new: Vec<StreamId> = new.into_iter().map(|(id, _)| id).collect();
            EffectKind::XDeliver {
                group,
                delivery: Delivery {
                    consumer: Some(consumer),
                    now_ms: wall_ms,
                    cursors,
                    raise,
                    read: read.map(|r| r + new.len() as u64),
                    pel: if a.verb == 31 {
                        Vec::new()
                    } else {
                        new.iter().map(|id| (*id, wall_ms, 1)).collect()
                    },
                    dropped: Vec::new(),
                },
            }
        }
        32 => {
            let g = s.group(&group)?;
            let (id, _) = g.pending().nth(a.n as usize % 2)?;
            EffectKind::XAck {
                group,
                ids: vec![id],
            }
        }
        33 => {
            // XCLAIM of a pending entry: claimed if its entry is there,
            // dropped if not.
            let g = s.group(&group)?;
            let (id, nack) = g.pending().nth(a.n as usize % 2)?;
            let present = s.get(id).is_some();
            EffectKind::XDeliver {
                group,
                delivery: Delivery {
                    consumer: present.then_some(consumer),
                    now_ms: wall_ms,
                    cursors: Vec::new(),
                    raise: None,
                    read: None,
                    pel: if present {
                        vec![(id, wall_ms, nack.count + 1)]
                    } else {
                        Vec::new()
                    },
                    dropped: if present { Vec::new() } else { vec![id] },
                },
            }
        }
        34 => {
            s.group(&group)?;
            EffectKind::XGroupSetId {
                group,
                last: nth(a.n as usize).unwrap_or_default(),
                read: None,
            }
        }
        35 => {
            s.group(&group)?;
            EffectKind::XGroupDestroy { group }
        }
        _ => {
            let g = s.group(&group)?;
            if a.n.is_multiple_of(2) {
                if !g.has_consumer(&consumer) {
                    return None;
                }
                EffectKind::XConsumerDel { group, consumer }
            } else {
                let _ = tag;
                EffectKind::XConsumerCreate {
                    group,
                    consumer,
                    now_ms: wall_ms,
                }
            }
        }
    })
}

fn run(actions: &[Action]) -> Vec<Replica> {
    let mut rs: Vec<Replica> = NAMES.iter().map(|n| Replica::new(n)).collect();
    for (i, a) in actions.iter().enumerate() {
        match a.sync_from {
            Some(j) if j != a.replica => {
                let from = rs[j].clone();
                rs[a.replica].sync_from(&from);
            }
            _ => rs[a.replica].write(a, 1_000 + i as u64 / 2),
        }
    }
    rs
}

/// A random causal order of all ops: repeatedly deliver the next op of a
/// randomly picked replica log. Each log is itself a causal order, so its next
/// op's dependencies are always delivered already; ops seen before are
/// duplicates and are skipped.
fn replay(ops_by_replica: &[Vec<Op>], picks: &[usize]) -> Replica {
    let mut fresh = Replica::new("prop-fresh");
    let mut cursors = vec![0usize; ops_by_replica.len()];
    let mut pick = picks.iter().cycle();
    loop {
        let pending: Vec<usize> = (0..ops_by_replica.len())
            .filter(|&i| cursors[i] < ops_by_replica[i].len())
            .collect();
        if pending.is_empty() {
            return fresh;
        }
        let i = pending[pick.next().copied().unwrap_or(0) % pending.len()];
        fresh.apply(&ops_by_replica[i][cursors[i]]);
        cursors[i] += 1;
    }
}

fn merged(parts: &[&Replica]) -> (VersionVector, BTreeMap<Blob, Entry>) {
    let mut vv = parts[0].vv.clone();
    let mut keys = parts[0].keys.clone();
    for p in &parts[1..] {
        keys = merge_states(&vv, &keys, &p.vv, &p.keys);
        vv.join(&p.vv);
    }
    (vv, keys)
}

fn merge_states(
    ctx_a: &VersionVector,
    a: &BTreeMap<Blob, Entry>,
    ctx_b: &VersionVector,
    b: &BTreeMap<Blob, Entry>,
) -> BTreeMap<Blob, Entry> {
    let mut out = BTreeMap::new();
    let mut conflicts = Vec::new();
    let keys: std::collections::BTreeSet<&Blob> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let mut mine = a.get(k).cloned().unwrap_or_else(|| Entry::new(b[k].kind()));
        let empty = Entry::new(mine.kind());
        let theirs = b.get(k).unwrap_or(&empty);
        mine.join(k, ctx_a, theirs, ctx_b, &mut conflicts);
        if !mine.is_empty() {
            out.insert(k.clone(), mine);
        }
    }
    out
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_converge_after_exchanging_all_ops(actions in prop::collection::vec(action(), 1..60)) {
        let mut rs = run(&actions);
        for _ in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let from = rs[j].clone();
                    rs[i].sync_from(&from);
                }
            }
        }
        prop_assert_eq!(state(&rs[0]), state(&rs[1]));
        prop_assert_eq!(state(&rs[1]), state(&rs[2]));
        for entry in rs[0].keys.values() {
            if let Value::Str(r) = entry.value() {
                let whole = r.render();
                prop_assert_eq!(r.len(), whole.len());
                for bit in 0..(whole.len() as u64 * 8 + 8) {
                    prop_assert_eq!(r.bit(bit), meridian_crdt::patch::read_bit(&whole, bit));
                }
            }
        }
        // Converged replicas encode their states to the same bytes in
        // canonical form, whatever order elements arrived in: anti-entropy
        // digests depend on it.
        for (key, entry) in &rs[0].keys {
            let mine = postcard::to_stdvec(&*entry.canonical()).unwrap();
            for other in &rs[1..] {
                let theirs = postcard::to_stdvec(&*other.keys[key].canonical()).unwrap();
                prop_assert_eq!(&mine, &theirs, "key {:?}", key);
            }
        }
    }

    #[test]
    fn any_causal_order_with_duplicates_gives_the_same_state(
        actions in prop::collection::vec(action(), 1..60),
        picks in prop::collection::vec(0..3usize, 1..40),
    ) {
        let rs = run(&actions);
        let logs: Vec<Vec<Op>> = rs.iter().map(|r| r.log.clone()).collect();
        let one = replay(&logs, &picks);
        let mut reversed_picks = picks.clone();
        reversed_picks.reverse();
        let two = replay(&logs, &reversed_picks);
        prop_assert_eq!(state(&one), state(&two));
        // Delivering everything again changes nothing.
        let mut again = one.clone();
        for log in &logs { for op in log { prop_assert!(!again.apply(op)); } }
        prop_assert_eq!(state(&again), state(&one));
    }

    #[test]
    fn state_merge_is_commutative_associative_idempotent(actions in prop::collection::vec(action(), 1..60)) {
        let rs = run(&actions);
        let (a, b, c) = (&rs[0], &rs[1], &rs[2]);
        let ab = merge_states(&a.vv, &a.keys, &b.vv, &b.keys);
        let ba = merge_states(&b.vv, &b.keys, &a.vv, &a.keys);
        prop_assert_eq!(&ab, &ba);
        let aa = merge_states(&a.vv, &a.keys, &a.vv, &a.keys);
        prop_assert_eq!(&aa, &a.keys);
        let mut vab = a.vv.clone(); vab.join(&b.vv);
        let ab_c = merge_states(&vab, &ab, &c.vv, &c.keys);
        let mut vbc = b.vv.clone(); vbc.join(&c.vv);
        let bc = merge_states(&b.vv, &b.keys, &c.vv, &c.keys);
        let a_bc = merge_states(&a.vv, &a.keys, &vbc, &bc);
        prop_assert_eq!(&ab_c, &a_bc);
    }

    #[test]
    fn state_merge_agrees_with_op_replay(actions in prop::collection::vec(action(), 1..60)) {
        let rs = run(&actions);
        let (_, keys) = merged(&[&rs[0], &rs[1], &rs[2]]);
        let mut replayed = Replica::new("prop-fresh");
        for r in &rs { replayed.sync_from(r); }
        prop_assert_eq!(&keys, &replayed.keys);
    }
}

/// Every replica has every op: what tombstone collection waits for.
fn sync_all(rs: &mut [Replica]) {
    for _ in 0..2 {
        for i in 0..rs.len() {
            for j in 0..rs.len() {
                let from = rs[j].clone();
                rs[i].sync_from(&from);
            }
        }
    }
}

fn collect(keys: &mut BTreeMap<Blob, Entry>) -> usize {
    let mut n = 0;
    for e in keys.values_mut() {
        n += e.collect_tombstones();
    }
    keys.retain(|_, e| !e.is_empty());
    n
}

/// A state with every settled counter incarnation collected.
fn collected(keys: &BTreeMap<Blob, Entry>) -> BTreeMap<Blob, Entry> {
    let mut keys = keys.clone();
    collect(&mut keys);
    keys
}

proptest! {
    #![proptest_config(config())]

    /// Replicas that collect their tombstones (settled counters, orphan
    /// TTLs) once every replica has every op (causal stability), each on
    /// its own schedule, end where replicas that never collect end, by op
    /// exchange and by state merge alike: collection changes nothing anyone
    /// can see, now or later.
    #[test]
    fn collecting_tombstones_at_stability_changes_no_outcome(
        before in prop::collection::vec(action(), 1..50),
        after in prop::collection::vec(action(), 0..40),
        collectors in prop::collection::vec(any::<bool>(), 3),
    ) {
        let mut reference = run(&before);
        sync_all(&mut reference);
        let mut gc = reference.clone();
        let mut dropped = 0;
        for (r, yes) in gc.iter_mut().zip(&collectors) {
            if *yes {
                dropped += collect(&mut r.keys);
            }
        }
        for (i, a) in after.iter().enumerate() {
            for rs in [&mut reference, &mut gc] {
                match a.sync_from {
                    Some(j) if j != a.replica => {
                        let from = rs[j].clone();
                        rs[a.replica].sync_from(&from);
                    }
                    _ => rs[a.replica].write(a, 100_000 + i as u64 / 2),
                }
            }
        }
        // The ops may differ (a write over a collected orphan TTL has no
        // TTL to drop), what they lead to may not.
        // State merge, before the ops are exchanged.
        let (_, merged_ref) = merged(&[&reference[0], &reference[1], &reference[2]]);
        let (_, merged_gc) = merged(&[&gc[0], &gc[1], &gc[2]]);
        prop_assert_eq!(collected(&merged_ref), collected(&merged_gc), "dropped {}", dropped);
        // Op exchange.
        sync_all(&mut reference);
        sync_all(&mut gc);
        for (r, g) in reference.iter().zip(&gc) {
            prop_assert_eq!(collected(&r.keys), collected(&g.keys), "dropped {}", dropped);
        }
        prop_assert_eq!(collected(&merged_gc), collected(&gc[0].keys));
    }
}

/// A MULTI block is one op: a later write in it must replace an earlier one
/// to the same register (it once kept the first, since both share a tag).
#[test]
fn second_write_in_one_op_replaces_the_first() {
    let region = RegionId::new("multi-a").unwrap();
    let tag = Tag {
        hlc: Hlc::new(1, 0),
        dot: Dot::new(region, 1),
    };
    let ctx = VersionVector::new();
    let op = Op {
        tag,
        ctx: ctx.clone(),
        effects: Vec::new(),
    };
    let mut conflicts = Vec::new();
    let mut e = Entry::new(Kind::String);
    for (v, ttl) in [("first", 10), ("second", 20)] {
        let set = EffectKind::StrSet {
            value: Blob::from(v),
            keep_ttl: false,
            obs: KeyObs::default(),
        };
        e.apply(b"k", &set, &op.context(), &mut conflicts);
        e.apply(
            b"k",
            &EffectKind::SetTtl {
                deadline_ms: Some(ttl),
            },
            &op.context(),
            &mut conflicts,
        );
    }
    match e.value() {
        Value::Str(r) => assert_eq!(&r.render()[..], b"second"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.deadline_ms(), Some(20));
    assert!(conflicts.is_empty(), "{conflicts:?}");
}

/// INCR, SET, INCR in one MULTI block: the SET resets the first increment
/// only; the second, made after it in the same op, counts (it was lost).
#[test]
fn increment_after_a_reset_in_the_same_op_counts() {
    let region = RegionId::new("multi-b").unwrap();
    let tag = Tag {
        hlc: Hlc::new(1, 0),
        dot: Dot::new(region, 1),
    };
    let op = Op {
        tag,
        ctx: VersionVector::new(),
        effects: Vec::new(),
    };
    let mut conflicts = Vec::new();
    let mut e = Entry::new(Kind::String);
    e.apply(
        b"c",
        &EffectKind::StrIncr {
            delta: Delta::Int(1),
            start: 1,
        },
        &op.context(),
        &mut conflicts,
    );
    let obs = e.observe();
    e.apply(
        b"c",
        &EffectKind::StrSet {
            value: Blob::from("10"),
            keep_ttl: false,
            obs,
        },
        &op.context(),
        &mut conflicts,
    );
    e.apply(
        b"c",
        &EffectKind::StrIncr {
            delta: Delta::Int(1),
            start: 1,
        },
        &op.context(),
        &mut conflicts,
    );
    match e.value() {
        Value::Str(r) => assert_eq!(&r.render()[..], b"11"),
        other => panic!("{other:?}"),
    }
}
