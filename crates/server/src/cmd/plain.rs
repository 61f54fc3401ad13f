//! A key's value as a reader sees it, detached from its CRDT metadata, and
//! how to write such a value back through the [`meridian_store::Db`] API.
//!
//! RENAME, COPY and RESTORE all move a *visible* value: they read it here
//! and write it as ordinary effects (a string set, a hash set, set adds,
//! sorted-set adds, list pushes), so the copy replicates and merges like any client
//! write. Counters become plain values in the copy: the copy starts a new
//! history, it does not share the source's per-region contributions.
//!
//! A new value type adds its arm to [`Plain`], [`plain`] and
//! [`write_plain`]; the compiler then points at every other match on it
//! (the DUMP codec in `dump.rs`, OBJECT ENCODING and MEMORY USAGE in
//! `object.rs`).

use meridian_crdt::{Blob, Value};
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
        }
    }

    /// True for a collection with no elements, which no key may hold.
    pub fn is_empty(&self) -> bool {
        match self {
            Plain::Str(_) => false,
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
    }
}
