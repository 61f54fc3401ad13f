//! A key's value as a reader sees it, detached from its CRDT metadata, and
//! how to write such a value back through the [`meridian_store::Db`] API.
//!
//! RENAME, COPY and RESTORE all move a *visible* value: they read it here
//! and write it as ordinary effects (a string set, a hash set, set adds,
//! sorted-set adds, list pushes, stream adds and group writes), so the copy
//! replicates and merges like any client write. Counters become plain values in the copy: the copy starts a new
//! history, it does not share the source's per-region contributions.
//!
//! A new value type adds its arm to [`Plain`], [`plain`] and
//! [`write_plain`]; the compiler then points at every other match on it
//! (the DUMP codec in `dump.rs`, OBJECT ENCODING and MEMORY USAGE in
//! `object.rs`).

use meridian_crdt::{Blob, Delivery, NodeLimits, StreamId, StreamVal, Value};
use meridian_store::Db;

/// A visible value without its CRDT metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    Str(Blob),
    Hash(Vec<(Blob, Blob)>),
    Set(Vec<Blob>),
    /// Members in score order (ties by member), as ZRANGE lists them.
    ZSet(Vec<(Blob, f64)>),
    /// Elements in list order.
    List(Vec<Blob>),
    Stream(Box<PlainStream>),
}

/// A stream as readers see it: entries, metadata, consumer groups.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainStream {
    /// Entries in ID order, each with its fields and values in pairs.
    pub entries: Vec<(StreamId, Vec<Blob>)>,
    pub last_id: StreamId,
    pub entries_added: u64,
    pub max_deleted: StreamId,
    /// Groups in name order.
    pub groups: Vec<PlainGroup>,
}

/// A consumer group as readers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainGroup {
    pub name: Blob,
    pub last: StreamId,
    pub read: Option<u64>,
    /// Pending entries in ID order: ID, consumer, delivery time, count.
    pub pending: Vec<(StreamId, Blob, u64, u64)>,
    /// Consumers in name order with the time they were last seen.
    pub consumers: Vec<(Blob, u64)>,
}

impl PlainStream {
    fn of(s: &StreamVal) -> PlainStream {
        PlainStream {
            entries: s
                .range(StreamId::ZERO, StreamId::MAX)
                .map(|(id, f)| (id, f.iter().map(Blob::from).collect()))
                .collect(),
            last_id: s.last_id(),
            entries_added: s.entries_added(),
            max_deleted: s.max_deleted(),
            groups: s
                .groups()
                .map(|(name, g)| {
                    let (last, read) = g.last_delivered();
                    PlainGroup {
                        name: name.clone(),
                        last,
                        read,
                        pending: g
                            .pending()
                            .map(|(id, n)| (id, n.consumer.clone(), n.delivered_ms, n.count))
                            .collect(),
                        consumers: g.consumers().map(|(c, seen)| (c.clone(), seen)).collect(),
                    }
                })
                .collect(),
        }
    }
}

impl Plain {
    /// How many elements a collection holds (1 for a string).
    pub fn len(&self) -> usize {
        match self {
            Plain::Str(_) => 1,
            Plain::Hash(fields) => fields.len(),
            Plain::Set(members) => members.len(),
            Plain::ZSet(members) => members.len(),
            Plain::List(values) => values.len(),
            Plain::Stream(s) => s.entries.len(),
        }
    }

    /// True for a collection with no elements, which no key may hold.
    pub fn is_empty(&self) -> bool {
        match self {
            // A stream may exist with no entries, as in Redis.
            Plain::Str(_) | Plain::Stream(_) => false,
            _ => self.len() == 0,
        }
    }
}

/// What a reader of `value` sees.
pub fn plain(value: &Value) -> Plain {
    match value {
        Value::Str(r) => Plain::Str(Blob::from(&r.render()[..])),
        Value::Hash(h) => Plain::Hash(
            h.fields
                .live
                .iter()
                .map(|(f, reg)| (f.clone(), Blob::from(&reg.render()[..])))
                .collect(),
        ),
        Value::Set(s) => Plain::Set(s.members.live.keys().cloned().collect()),
        Value::ZSet(z) => Plain::ZSet(z.index.iter().map(|(s, m)| (m.clone(), s.0)).collect()),
        Value::List(l) => Plain::List(l.values().map(Blob::from).collect()),
        Value::Stream(s) => Plain::Stream(Box::new(PlainStream::of(s))),
    }
}

/// Writes `value` under `key` as one effect of the op being built. The
/// caller has deleted whatever `key` held before, so the write creates it.
pub fn write_plain(db: &mut Db, key: &[u8], value: Plain) {
    match value {
        Plain::Str(v) => db.set_string(key, v, false),
        Plain::Hash(fields) => db.hset(key, fields),
        Plain::Set(members) => db.sadd(key, members),
        Plain::ZSet(members) => db.zadd(key, members),
        Plain::List(values) => db.lpush(key, values, false),
        Plain::Stream(s) => write_stream(db, key, *s),
    }
}

/// A stream written back: its entries, then its metadata (the count of
/// entries added is the source's, not this write's), then its groups with
/// their consumers and pending entries.
fn write_stream(db: &mut Db, key: &[u8], s: PlainStream) {
    for (id, fields) in s.entries {
        db.xadd(key, id, fields, NodeLimits::default());
    }
    let max_deleted = (!s.max_deleted.is_zero()).then_some(s.max_deleted);
    db.xsetid(key, s.last_id, Some(s.entries_added), max_deleted);
    for g in s.groups {
        db.xgroup_create(key, &g.name, g.last, g.read);
        for (consumer, seen) in &g.consumers {
            let pel: Vec<(StreamId, u64, u64)> = g
                .pending
                .iter()
                .filter(|p| p.1 == *consumer)
                .map(|p| (p.0, p.2, p.3))
                .collect();
            if pel.is_empty() {
                db.xgroup_createconsumer(key, &g.name, consumer, *seen);
            } else {
                let delivery = Delivery {
                    consumer: Some(consumer.clone()),
                    now_ms: *seen,
                    cursors: Vec::new(),
                    raise: None,
                    read: None,
                    pel,
                    dropped: Vec::new(),
                };
                db.xdeliver(key, &g.name, delivery);
            }
        }
    }
}
