//! Workload drivers: what clients do. They only write and record; judging
//! the outcome is the checkers' job (`check.rs`).
//!
//! Key families, each with a rule a checker models exactly:
//! - `c:*` counters (INCRBY only), `h:*` hashes (HINCRBY of field `n`, HSET
//!   of other fields), `z:*` sorted sets (ZINCRBY of `zc`, ZADD of others);
//! - `r:*` registers written only by SET (last writer wins, conflicts
//!   journaled);
//! - `s:*` sets (SADD/SREM) and `d:*` sets that are also deleted whole;
//! - `t:*` strings whose TTL is set and removed (never due), `m:*`
//!   strings under the `majority` policy, and `p:*` strings under the
//!   `primary` policy (written only where the elected primary is; each
//!   write records its term for the policy checker);
//! - `l:*` lists: RPUSH and LPUSH of values unique to the run, LPOP and
//!   RPOP, and now and then LREM, LTRIM and LINSERT, each recorded with the
//!   values it added or removed as the writer saw them;
//! - scripts, each of whose writes become effects of one op, as the server
//!   commits a script (`server/src/scripting.rs`): transfers between the
//!   counters `x:0`..`x:3` (one INCRBY down, one up, so they always sum to
//!   zero) and pairs `y:*:a`/`y:*:b` set to one value;
//! - `b:*` bitmaps: SETBITs to 1 of bits up to 1023, replicated as bit
//!   patches (folded into the value as the store decides), so each bitmap
//!   must end as the union of every acknowledged SETBIT;
//! - `u:*` HyperLogLogs: PFADDs of a few elements, replicated as register
//!   patches or folded whole values, so each must end holding exactly the
//!   registers of every acknowledged PFADD's elements;
//! - `xs:*` streams (not `x:*`, the transfer counters): XADD `*` of an
//!   entry whose value is unique to the run, the ID taken as the server
//!   takes it (`auto_id` with the region's slot); XDEL and XTRIM MAXLEN of
//!   entries the writer held; XGROUP CREATE of group `g` where the writer
//!   holds none, and XREADGROUP `>` of it, each recorded with the IDs it
//!   added, removed or delivered;
//! - `bf:*` strings written only by BITFIELD `OVERFLOW WRAP INCRBY` of the
//!   fixed fields [`BITFIELD_FIELDS`], which merge as counters, so each
//!   field must end as the sum of its acknowledged increments modulo
//!   2^width (kept apart from `b:*`, whose union rule stays exact).

use meridian_cluster::{admit, Policies};
use meridian_crdt::hll::{self, Hll};
use meridian_crdt::{
    Blob, Delivery, Delta, Dot, NodeLimits, Patch, RegionId, StreamId, Tag, Value,
};
use meridian_store::db::{auto_id, Trim, TrimTo};
use meridian_store::{Db, Store, StoreError};

use crate::config::{Breakage, SimConfig};
use crate::history::{Fate, History, Recorded, Write};
use crate::region::SimRegion;
use crate::rng::SimRng;

/// Far beyond any run, so no key ever expires mid-run.
const TTL_DEADLINE_MS: u64 = 1 << 50;

/// The policies every simulated region runs with.
pub fn policies() -> Policies {
    Policies::parse(&["m:*=majority", "p:*=primary:r0"]).expect("valid policy")
}

/// Writes in the mix without lists; with them, [`LIST_CHOICES`] more, and
/// with scripts [`SCRIPT_CHOICES`] more after those.
const CHOICES: u64 = 14;
const LIST_CHOICES: u64 = 2;
const SCRIPT_CHOICES: u64 = 2;
const BIT_CHOICES: u64 = 2;
const STREAM_CHOICES: u64 = 2;
const BITFIELD_CHOICES: u64 = 1;
/// The fields (offset, width) of every `bf:*` string: apart, unaligned,
/// from a width that wraps at nearly every increment to one that only
/// wraps below zero.
pub const BITFIELD_FIELDS: [(u64, u8); 4] = [(0, 8), (8, 3), (11, 16), (64, 63)];
/// The consumer group of every stream.
pub const STREAM_GROUP: &[u8] = b"g";
/// Bits a `b:*` SETBIT picks from: past 512, the string is long enough to
/// replicate patches rather than its whole value.
pub const BITS: u64 = 1024;

/// The counters transfers move amounts between.
pub const TRANSFER_KEYS: u64 = 4;
/// The pairs scripts set.
pub const PAIRS: u64 = 3;

/// What the clients of a run may do.
pub struct Workload {
    pub policies: Policies,
    /// Whether list writes are in the mix. Without them a seed draws
    /// exactly what it drew before lists existed, so seeds found then
    /// replay the same run.
    pub lists: bool,
    /// Whether scripted writes are in the mix (drawn after every other
    /// choice, so without them a seed draws what it drew before).
    pub scripts: bool,
    /// `--break split-scripts`: a script's first write is committed alone.
    pub split_scripts: bool,
    /// Whether SETBITs and PFADDs are in the mix (drawn after every
    /// choice above).
    pub bits: bool,
    /// `--break stream-ids-without-slot`: XADD `*` leaves its slot out.
    pub unslotted_ids: bool,
    /// Whether stream writes are in the mix (drawn after every choice
    /// above, so without them a seed draws what it drew before).
    pub streams: bool,
    /// `--break bitfield-incr-as-bits`: increments are bit patches.
    pub incr_as_bits: bool,
    /// Whether BITFIELD WRAP increments are in the mix (drawn after every
    /// choice above).
    pub bitfields: bool,
}

impl Workload {
    pub fn new(cfg: &SimConfig) -> Workload {
        Workload {
            policies: policies(),
            lists: cfg.lists,
            scripts: cfg.scripts,
            split_scripts: cfg.breakage == Breakage::SplitScripts,
            bits: cfg.bits,
            unslotted_ids: cfg.breakage == Breakage::StreamIdsWithoutSlot,
            streams: cfg.streams,
            bitfields: cfg.bitfields,
            incr_as_bits: cfg.breakage == Breakage::BitfieldIncrAsBits,
        }
    }
}

/// What one client command did.
pub enum Outcome {
    Committed {
        index: usize,
        journaled: bool,
    },
    Refused,
    Nothing,
    /// The store refused the commit (an I/O error: an anomaly here).
    Failed(String),
}

/// One random client command at region `r` (which is up).
pub fn driver_write(
    rng: &mut SimRng,
    region: &mut SimRegion,
    r: usize,
    workload: &Workload,
    history: &mut History,
    tick: u64,
    now_ms: u64,
) -> Outcome {
    let id = region.id;
    let n = rng.below(3);
    let lists = if workload.lists { LIST_CHOICES } else { 0 };
    let scripts = if workload.scripts { SCRIPT_CHOICES } else { 0 };
    let bits = if workload.bits { BIT_CHOICES } else { 0 };
    let streams = if workload.streams { STREAM_CHOICES } else { 0 };
    let bitfields = if workload.bitfields {
        BITFIELD_CHOICES
    } else {
        0
    };
    let choice = rng.below(CHOICES + lists + scripts + bits + streams + bitfields);
    // Writes to `m:*` and `p:*` pass the policy check the server runs
    // (`meridian_cluster::admit`): decided on the lease and the election,
    // and for a primary write counted in the term it was admitted in. The
    // election runs on simulated time itself (see region.rs).
    let mut primary_term = None;
    let policy_key = match choice {
        11 => Some(format!("m:{n}")),
        13 => Some(format!("p:{n}")),
        _ => None,
    };
    if let Some(key) = policy_key {
        let lease = region.view.lease(now_ms);
        let lease = lease.as_ref().map(|_| ()).map_err(String::as_str);
        let now = (tick * crate::sim::TICK_MS, now_ms);
        if admit(
            &workload.policies,
            &[key.as_bytes()],
            id,
            lease,
            &mut region.election,
            now,
        )
        .is_err()
        {
            history.refused += 1;
            return Outcome::Refused;
        }
        if choice == 13 {
            primary_term = Some(region.election.term());
        }
    }
    let slot = (!workload.unslotted_ids).then(|| stream_slot(id, &region.peers));
    let store = region.store();
    store.db_mut().set_now_ms(now_ms);
    let ctx = store.db().version_vector().clone();
    let conflicts_before = store.db().conflicts_total();
    let write = if choice >= CHOICES + lists + scripts + bits + streams {
        bitfield_write(rng, store.db_mut(), n, workload.incr_as_bits)
    } else if choice >= CHOICES + lists + scripts + bits {
        let which = choice - CHOICES - lists - scripts - bits;
        let values = &mut history.stream_values;
        stream_write(rng, store.db_mut(), which, n, id, slot, values)
    } else if choice > CHOICES + lists + scripts {
        pfadd_write(rng, store.db_mut(), n)
    } else if choice >= CHOICES + lists + scripts {
        bit_write(rng, store.db_mut(), n)
    } else if choice >= CHOICES + lists {
        let which = choice - CHOICES - lists;
        match script_write(rng, store, which, id, tick, workload.split_scripts) {
            Ok(write) => write,
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    } else if choice >= CHOICES {
        list_write(rng, store.db_mut(), n, id, &mut history.list_values)
    } else {
        random_write(rng, store.db_mut(), choice, n, id, tick)
    };
    let committed = match store.commit() {
        Ok(Some(_lsn)) => true,
        Ok(None) => false,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if !committed {
        return Outcome::Nothing;
    }
    let db = store.db();
    let tag = Tag {
        hlc: db.clock(),
        dot: Dot::new(id, db.seq()),
    };
    history.ops.push(Recorded {
        region: r,
        tick,
        tag,
        ctx,
        write,
        fate: Fate::Pending,
        primary_term,
        reached_in_lease: None,
    });
    Outcome::Committed {
        index: history.ops.len() - 1,
        journaled: db.conflicts_total() != conflicts_before,
    }
}

/// Makes write number `choice` of the mix to key family member `n` in `db`
/// (the policy check of `m:*` and `p:*` writes has passed).
fn random_write(
    rng: &mut SimRng,
    db: &mut Db,
    choice: u64,
    n: u64,
    id: RegionId,
    tick: u64,
) -> Write {
    match choice {
        0 => {
            let (key, delta) = (format!("c:{n}"), rng.between(-5, 10));
            db.incr(key.as_bytes(), Delta::Int(delta));
            Write::Incr { key, delta }
        }
        1 => {
            let (key, delta) = (format!("h:{n}"), rng.between(-5, 10));
            db.hincr(key.as_bytes(), Blob::from(&b"n"[..]), Delta::Int(delta));
            Write::HIncr { key, delta }
        }
        2 => {
            let key = format!("h:{n}");
            let field = format!("f{}", rng.below(3));
            let value = format!("v{}", rng.below(100));
            db.hset(
                key.as_bytes(),
                vec![(Blob::from(field.as_bytes()), Blob::from(value.as_bytes()))],
            );
            Write::Other { key, what: "hset" }
        }
        3 => {
            let (key, delta) = (format!("z:{n}"), rng.between(-5, 10));
            db.zincr(key.as_bytes(), Blob::from(&b"zc"[..]), delta as f64);
            Write::ZIncr { key, delta }
        }
        4 => {
            let key = format!("z:{n}");
            let member = format!("m{}", rng.below(3));
            db.zadd(
                key.as_bytes(),
                vec![(Blob::from(member.as_bytes()), rng.below(50) as f64)],
            );
            Write::Other { key, what: "zadd" }
        }
        5 | 6 => {
            let key = format!("r:{n}");
            let value = format!("{id}-{tick}-{}", rng.below(1000));
            db.set_string(key.as_bytes(), Blob::from(value.as_bytes()), false);
            Write::Set { key, value }
        }
        7 => {
            let key = format!("s:{n}");
            let member = format!("m{}", rng.below(4));
            db.sadd(key.as_bytes(), vec![Blob::from(member.as_bytes())]);
            Write::SAdd { key, member }
        }
        8 => {
            let key = format!("s:{n}");
            let member = format!("m{}", rng.below(4));
            db.srem(key.as_bytes(), vec![Blob::from(member.as_bytes())]);
            Write::SRem { key, member }
        }
        9 => {
            let key = format!("d:{n}");
            if rng.chance(600) {
                let member = format!("m{}", rng.below(4));
                db.sadd(key.as_bytes(), vec![Blob::from(member.as_bytes())]);
                Write::SAdd { key, member }
            } else {
                db.del(key.as_bytes());
                Write::Del { key }
            }
        }
        10 => {
            let key = format!("t:{n}");
            if db.get(key.as_bytes()).is_none() {
                db.set_string(key.as_bytes(), Blob::from(&b"x"[..]), false);
                Write::Other { key, what: "set" }
            } else if rng.chance(500) {
                db.set_ttl(key.as_bytes(), Some(TTL_DEADLINE_MS + rng.below(1000)));
                Write::Other {
                    key,
                    what: "expire",
                }
            } else {
                db.set_ttl(key.as_bytes(), None);
                Write::Other {
                    key,
                    what: "persist",
                }
            }
        }
        12 => {
            // Counters that are also deleted: what a delete leaves behind
            // is collected once stable, and counting must go on right.
            // Many keys, so a key often stays unchanged for the length of a
            // collection round.
            let key = format!("k:{}", rng.below(16));
            if rng.chance(250) {
                db.del(key.as_bytes());
                Write::Del { key }
            } else {
                let delta = rng.between(-5, 10);
                db.incr(key.as_bytes(), Delta::Int(delta));
                Write::Incr { key, delta }
            }
        }
        11 => {
            let key = format!("m:{n}");
            let value = format!("{id}-{tick}");
            db.set_string(key.as_bytes(), Blob::from(value.as_bytes()), false);
            Write::Other {
                key,
                what: "set-majority",
            }
        }
        _ => {
            let key = format!("p:{n}");
            let value = format!("{id}-{tick}");
            db.set_string(key.as_bytes(), Blob::from(value.as_bytes()), false);
            Write::Other {
                key,
                what: "set-primary",
            }
        }
    }
}

/// SETBIT to 1 of a random bit of `b:n`, as the server's SETBIT writes it:
/// the bit as a patch, with the whole string as it reads after it.
fn bit_write(rng: &mut SimRng, db: &mut Db, n: u64) -> Write {
    let key = format!("b:{n}");
    let bit = rng.below(BITS);
    let patch = Patch::Bits {
        offset: bit,
        width: 1,
        value: 1,
    };
    db.patch_string(key.as_bytes(), vec![patch], |mut whole| {
        meridian_crdt::patch::write_bits(&mut whole, bit, 1, 1);
        Blob::from(whole.as_slice())
    });
    Write::SetBit { key, bit }
}

/// BITFIELD `bf:n` OVERFLOW WRAP INCRBY of one or two of its fields, as
/// the server's BITFIELD writes it: each increment a `Patch::Incr` of its
/// field (which the store stamps and counts), with the whole string as it
/// reads after them.
fn bitfield_write(rng: &mut SimRng, db: &mut Db, n: u64, as_bits: bool) -> Write {
    use meridian_crdt::patch::{read_bits, write_bits};
    let key = format!("bf:{n}");
    let mut incrs = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let (offset, width) = BITFIELD_FIELDS[rng.index(BITFIELD_FIELDS.len())];
        incrs.push((offset, width, rng.between(-300, 300)));
    }
    let mut whole = match db.get(key.as_bytes()).map(|e| e.value()) {
        Some(Value::Str(r)) => r.render().into_owned(),
        _ => Vec::new(),
    };
    let need = incrs
        .iter()
        .map(|(o, w, _)| (o + u64::from(*w)).div_ceil(8) as usize)
        .max()
        .unwrap_or(0);
    let grown = whole.len() < need;
    if grown {
        whole.resize(need, 0);
    }
    let mut changed = false;
    let mut patches = Vec::new();
    for &(offset, width, delta) in &incrs {
        let mask = (1u64 << width) - 1;
        let old = read_bits(&whole, offset, width);
        let by = delta as u64 & mask;
        let new = old.wrapping_add(by) & mask;
        write_bits(&mut whole, offset, width, new);
        patches.push(if as_bits {
            Patch::Bits {
                offset,
                width,
                value: new,
            }
        } else {
            Patch::Incr {
                offset,
                width,
                start: 0,
                delta: by,
            }
        });
        changed |= new != old;
    }
    if changed || grown {
        db.patch_string(key.as_bytes(), patches, |_| Blob::from(whole.as_slice()));
    }
    Write::FieldIncr { key, incrs }
}

/// PFADD of one to four elements to `u:n`, as the server's PFADD writes
/// it: the registers it raised as patches, the whole value if it folds.
fn pfadd_write(rng: &mut SimRng, db: &mut Db, n: u64) -> Write {
    let key = format!("u:{n}");
    let elements: Vec<String> = (0..1 + rng.below(4))
        .map(|_| format!("e{}", rng.below(5000)))
        .collect();
    let current = match db.get(key.as_bytes()).map(|e| e.value()) {
        Some(Value::Str(r)) => r.render().into_owned(),
        _ => Vec::new(),
    };
    let mut hll = if current.is_empty() {
        Hll::new()
    } else {
        Hll::parse(current).expect("u:* keys hold HyperLogLogs")
    };
    let mut patches = Vec::new();
    for e in &elements {
        let (index, value) = hll::hash(e.as_bytes());
        if hll
            .set(usize::from(index), value, hll::SPARSE_MAX_BYTES_DEFAULT)
            .expect("not corrupt")
        {
            patches.push(Patch::Register { index, value });
        }
    }
    if !patches.is_empty() {
        hll.invalidate_cache();
        let whole = Blob::from(hll.into_bytes().as_slice());
        db.patch_string(key.as_bytes(), patches, |_| whole);
    }
    Write::PfAdd { key, elements }
}

/// The slot region `me` puts in the stream IDs it generates, as the
/// server's `Members::stream_slot`: its place among the members by name,
/// from 1.
pub fn stream_slot(me: RegionId, peers: &[RegionId]) -> u64 {
    let below = peers.iter().filter(|p| p.as_str() < me.as_str()).count();
    below as u64 + 1
}

/// The IDs and values of the stream at `key` as this region holds it now.
fn stream_entries(db: &mut Db, key: &str) -> Vec<(StreamId, String)> {
    match db.stream(key.as_bytes()) {
        Ok(Some(s)) => s
            .range(StreamId::ZERO, StreamId::MAX)
            .map(|(id, f)| (id, entry_value(f)))
            .collect(),
        Ok(None) | Err(_) => Vec::new(),
    }
}

/// The value of an entry's field `v` (the workload adds no other field).
pub fn entry_value(fields: meridian_crdt::FieldsRef<'_>) -> String {
    let v = fields.iter().nth(1).unwrap_or_default();
    String::from_utf8_lossy(v).into_owned()
}

/// One stream write to `xs:n`, as the server's stream commands write it.
/// `which` 0 is an XADD; 1 draws among XADD, XDEL, XTRIM and the group.
fn stream_write(
    rng: &mut SimRng,
    db: &mut Db,
    which: u64,
    n: u64,
    id: RegionId,
    slot: Option<u64>,
    next_value: &mut u64,
) -> Write {
    let key = format!("xs:{n}");
    let held = stream_entries(db, &key);
    let what = if which == 0 { 0 } else { rng.below(10) };
    match what {
        0..=4 => {
            *next_value += 1;
            let value = format!("{id}-{next_value}");
            let last = match db.stream(key.as_bytes()) {
                Ok(Some(s)) => s.last_id(),
                _ => StreamId::ZERO,
            };
            let entry = auto_id(last, db.now_ms(), slot).expect("stream IDs left");
            let fields = vec![Blob::from(&b"v"[..]), Blob::from(value.as_bytes())];
            db.xadd(key.as_bytes(), entry, fields, NodeLimits::default());
            Write::XAdd {
                key,
                id: entry,
                value,
            }
        }
        5 | 6 => {
            let ids: Vec<StreamId> = if held.is_empty() {
                Vec::new()
            } else {
                vec![held[rng.index(held.len())].0]
            };
            db.xdel(key.as_bytes(), &ids);
            Write::XDel { key, ids }
        }
        7 => {
            let keep = 8 + rng.below(8);
            let trim = Trim {
                to: TrimTo::MaxLen(keep),
                approx: false,
                limit: 0,
            };
            db.xtrim(key.as_bytes(), trim);
            let now: std::collections::BTreeSet<StreamId> = stream_entries(db, &key)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let removed: Vec<StreamId> = held
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !now.contains(id))
                .collect();
            let upto = removed.last().copied().unwrap_or(StreamId::ZERO);
            Write::XTrim { key, upto, removed }
        }
        _ => group_write(db, key, id),
    }
}

/// XGROUP CREATE of `g` at `0` where this region holds no group yet,
/// else XREADGROUP `>` of up to three entries for consumer `c-<region>`,
/// as the server's `deliver_new` builds the delivery: each region's
/// cursor raised over its entries served, each entry pending.
fn group_write(db: &mut Db, key: String, id: RegionId) -> Write {
    let now_ms = db.now_ms();
    let (exists, served) = match db.stream(key.as_bytes()) {
        Ok(Some(s)) => match s.group(STREAM_GROUP) {
            Some(g) => {
                let served: Vec<(StreamId, RegionId)> = s
                    .undelivered(g)
                    .take(3)
                    .map(|(id, _, origin)| (id, origin))
                    .collect();
                (true, served)
            }
            None => (false, Vec::new()),
        },
        // No stream: nothing to read, and no MKSTREAM.
        _ => {
            return Write::XReadGroup {
                key,
                ids: Vec::new(),
            }
        }
    };
    if !exists {
        db.xgroup_create(key.as_bytes(), STREAM_GROUP, StreamId::ZERO, Some(0));
        return Write::Other {
            key,
            what: "xgroup-create",
        };
    }
    let mut cursors: Vec<(RegionId, StreamId)> = Vec::new();
    for &(entry, origin) in &served {
        match cursors.iter_mut().find(|c| c.0 == origin) {
            Some(c) => c.1 = c.1.max(entry),
            None => cursors.push((origin, entry)),
        }
    }
    let ids: Vec<StreamId> = served.iter().map(|(e, _)| *e).collect();
    if !ids.is_empty() {
        let delivery = Delivery {
            consumer: Some(Blob::from(format!("c-{id}").as_bytes())),
            now_ms,
            cursors,
            raise: None,
            read: None,
            pel: ids.iter().map(|e| (*e, now_ms, 1)).collect(),
            dropped: Vec::new(),
        };
        db.xdeliver(key.as_bytes(), STREAM_GROUP, delivery);
    }
    Write::XReadGroup { key, ids }
}

/// The values of the list at `key` as this region holds it now.
fn list_values(db: &mut Db, key: &str) -> Vec<String> {
    match db.list(key.as_bytes()) {
        Ok(Some(l)) => l
            .values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        Ok(None) | Err(_) => Vec::new(),
    }
}

/// One list write to `l:n`. Pushed values are `<region>-<k>`, unique to
/// the run (`next_value` counts them); a removal records what it took from
/// the list as the writer held it, so the checker can account for every
/// value that ever left a list.
fn list_write(rng: &mut SimRng, db: &mut Db, n: u64, id: RegionId, next_value: &mut u64) -> Write {
    let key = format!("l:{n}");
    let held = list_values(db, &key);
    let mut unique = || {
        *next_value += 1;
        format!("{id}-{next_value}")
    };
    match rng.below(20) {
        0..=9 => {
            let front = rng.chance(400);
            let values: Vec<String> = (0..1 + rng.below(3)).map(|_| unique()).collect();
            let blobs = values.iter().map(|v| Blob::from(v.as_bytes())).collect();
            db.lpush(key.as_bytes(), blobs, front);
            Write::Push { key, values, front }
        }
        10..=15 => {
            let front = rng.chance(600);
            let count = 1 + rng.below(2) as usize;
            let popped = db.lpop(key.as_bytes(), front, count);
            let values = popped
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            let what = if front { "lpop" } else { "rpop" };
            Write::Remove { key, what, values }
        }
        16 => {
            // LREM of one value: values are unique, so that is one element.
            if !held.is_empty() {
                let i = rng.index(held.len());
                db.lremove(key.as_bytes(), &[(i, i)]);
            }
            removed_since(db, key, "lrem", &held)
        }
        17 => {
            // LTRIM start stop, with start and stop near the ends (stop
            // counted from the end); past each other, the list goes whole.
            let len = held.len();
            if len > 0 {
                let start = (rng.below(3) as usize).min(len);
                let stop = len - 1 - (rng.below(3) as usize).min(len - 1);
                let ranges: Vec<(usize, usize)> = if start > stop {
                    vec![(0, len - 1)]
                } else {
                    let mut r = Vec::new();
                    if start > 0 {
                        r.push((0, start - 1));
                    }
                    if stop + 1 < len {
                        r.push((stop + 1, len - 1));
                    }
                    r
                };
                db.lremove(key.as_bytes(), &ranges);
            }
            removed_since(db, key, "ltrim", &held)
        }
        _ => {
            let index = rng.index(held.len() + 1);
            let value = unique();
            db.linsert(key.as_bytes(), index, Blob::from(value.as_bytes()));
            Write::Insert {
                key,
                value,
                after: index.checked_sub(1).map(|i| held[i].clone()),
                before: held.get(index).cloned(),
            }
        }
    }
}

/// The values `held` had that the list at `key` no longer has.
fn removed_since(db: &mut Db, key: String, what: &'static str, held: &[String]) -> Write {
    let now: std::collections::BTreeSet<String> = list_values(db, &key).into_iter().collect();
    let values = held.iter().filter(|v| !now.contains(*v)).cloned().collect();
    Write::Remove { key, what, values }
}

/// One script: its writes go into the op being built, committed as one by
/// the caller, as the server commits a script with its batch. `split`
/// (`--break split-scripts`) commits the first write alone.
fn script_write(
    rng: &mut SimRng,
    store: &mut Store,
    which: u64,
    id: RegionId,
    tick: u64,
    split: bool,
) -> Result<Write, StoreError> {
    let between = |store: &mut Store| -> Result<(), StoreError> {
        if split {
            store.commit()?;
        }
        Ok(())
    };
    if which == 0 {
        let a = rng.below(TRANSFER_KEYS);
        let b = (a + 1 + rng.below(TRANSFER_KEYS - 1)) % TRANSFER_KEYS;
        let (from, to) = (format!("x:{a}"), format!("x:{b}"));
        let amount = rng.between(1, 20);
        store.db_mut().incr(from.as_bytes(), Delta::Int(-amount));
        between(store)?;
        store.db_mut().incr(to.as_bytes(), Delta::Int(amount));
        Ok(Write::Transfer { from, to, amount })
    } else {
        let n = rng.below(PAIRS);
        let keys = [format!("y:{n}:a"), format!("y:{n}:b")];
        let value = format!("{id}-{tick}-{}", rng.below(1000));
        store
            .db_mut()
            .set_string(keys[0].as_bytes(), Blob::from(value.as_bytes()), false);
        between(store)?;
        store
            .db_mut()
            .set_string(keys[1].as_bytes(), Blob::from(value.as_bytes()), false);
        Ok(Write::Pair { keys, value })
    }
}
