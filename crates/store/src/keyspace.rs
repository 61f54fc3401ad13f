//! The keyspace: every key's [`Entry`], an expiry index, and SCAN cursors.
//!
//! Visible keys live in `live`; keys that hold only remembered state (counter
//! offsets of a deleted counter, a TTL that outlived its content) live in
//! `hidden`, so DBSIZE, SCAN and RANDOMKEY never see them. Both maps keep
//! insertion order with swap-removal, which is what makes the SCAN cursor
//! below keep Redis's guarantee.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use meridian_crdt::value::Hasher;
use meridian_crdt::{Blob, Conflict, EffectKind, Entry, Kind, OpCtx};

#[derive(Debug, Default, Clone)]
pub struct Keyspace {
    live: IndexMap<Blob, Box<Entry>, Hasher>,
    hidden: IndexMap<Blob, Box<Entry>, Hasher>,
    /// (deadline, key) for every key with a deadline, live or hidden.
    expires: BTreeSet<(u64, Blob)>,
}

/// The type a new key takes when an effect creates it.
pub fn kind_of(effect: &EffectKind) -> Kind {
    match effect {
        EffectKind::HSet { .. } | EffectKind::HDel { .. } | EffectKind::HIncr { .. } => Kind::Hash,
        EffectKind::SAdd { .. } | EffectKind::SRem { .. } => Kind::Set,
        EffectKind::ZAdd { .. } | EffectKind::ZIncr { .. } | EffectKind::ZRem { .. } => Kind::ZSet,
        EffectKind::LInsert { .. } | EffectKind::LRemove { .. } | EffectKind::LSet { .. } => {
            Kind::List
        }
        k if k.is_stream() => Kind::Stream,
        _ => Kind::String,
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace::default()
    }

    /// A visible key (expiry is the caller's concern).
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.live.get(key).map(|b| &**b)
    }

    /// Any key, visible or hidden.
    pub fn get_any(&self, key: &[u8]) -> Option<&Entry> {
        self.get(key).or_else(|| self.hidden.get(key).map(|b| &**b))
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn hidden_len(&self) -> usize {
        self.hidden.len()
    }

    /// Applies one effect to `key` and re-files it. A live key that stays
    /// live is changed in place, so a SCAN in progress does not lose it.
    pub fn apply(
        &mut self,
        key: &[u8],
        effect: &EffectKind,
        ctx: &OpCtx<'_>,
        conflicts: &mut Vec<Conflict>,
    ) {
        if let Some(entry) = self.live.get_mut(key) {
            let before = entry.deadline_ms();
            entry.apply(key, effect, ctx, conflicts);
            let after = entry.deadline_ms();
            let (live, empty) = (entry.is_live(), entry.is_empty());
            self.reindex(key, before, after);
            if !live {
                if let Some((k, e)) = self.live.swap_remove_entry(key) {
                    if !empty {
                        self.hidden.insert(k, e);
                    } else {
                        self.reindex(&k, after, None);
                    }
                }
            }
            return;
        }
        let (k, mut entry) = self
            .hidden
            .swap_remove_entry(key)
            .unwrap_or_else(|| (Blob::from(key), Box::new(Entry::new(kind_of(effect)))));
        let before = entry.deadline_ms();
        entry.apply(key, effect, ctx, conflicts);
        let after = entry.deadline_ms();
        if entry.is_live() {
            self.reindex(key, before, after);
            self.live.insert(k, entry);
        } else if !entry.is_empty() {
            self.reindex(key, before, after);
            self.hidden.insert(k, entry);
        } else {
            self.reindex(key, before, None);
        }
    }

    /// Runs `f` on the stream `key` holds, if any (to change what is local
    /// to this region, never the state).
    pub fn with_stream(&mut self, key: &[u8], f: impl FnOnce(&mut meridian_crdt::StreamVal)) {
        let entry = match self.live.get_mut(key) {
            Some(e) => e,
            None => match self.hidden.get_mut(key) {
                Some(e) => e,
                None => return,
            },
        };
        if let Some(s) = entry.stream_mut() {
            f(s);
        }
    }

    fn reindex(&mut self, key: &[u8], before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        if let Some(d) = before {
            self.expires.remove(&(d, Blob::from(key)));
        }
        if let Some(d) = after {
            self.expires.insert((d, Blob::from(key)));
        }
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms`.
    pub fn due(&self, now_ms: u64, limit: usize) -> Vec<Blob> {
        self.expires
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn expiring_len(&self) -> usize {
        self.expires.len()
    }

    /// One step of a SCAN. The cursor counts down through insertion order:
    /// cursor 0 starts at the end, and the walk is done when it returns 0.
    /// Removal moves the last key into the hole, which the walk has already
    /// passed, so every key present for the whole scan is returned at least
    /// once; keys added meanwhile may or may not be.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&Blob, &Entry)) -> u64 {
        let len = self.live.len() as u64;
        let mut at = if cursor == 0 || cursor > len {
            len
        } else {
            cursor
        };
        let mut seen = 0;
        while at > 0 && seen < count.max(1) {
            at -= 1;
            if let Some((k, e)) = self.live.get_index(at as usize) {
                visit(k, e);
            }
            seen += 1;
        }
        at
    }

    pub fn key_at(&self, index: usize) -> Option<&Blob> {
        self.live.get_index(index).map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Blob, &Entry)> {
        self.live.iter().map(|(k, e)| (k, &**e))
    }

    /// Every key with stored state, hidden ones included (for snapshots).
    pub fn iter_all(&self) -> impl Iterator<Item = (&Blob, &Entry)> {
        self.live
            .iter()
            .chain(self.hidden.iter())
            .map(|(k, e)| (k, &**e))
    }

    /// Inserts a loaded entry (snapshot recovery).
    pub fn load(&mut self, key: Blob, entry: Entry) {
        if let Some(d) = entry.deadline_ms() {
            self.expires.insert((d, key.clone()));
        }
        if entry.is_live() {
            self.live.insert(key, Box::new(entry));
        } else if !entry.is_empty() {
            self.hidden.insert(key, Box::new(entry));
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        self.live.reserve(additional);
    }

    /// Collects `key`'s settled counter incarnations in place (readers see
    /// no change, so the key keeps its place); a key left holding nothing
    /// is removed. Returns (incarnations dropped, key removed).
    pub fn collect_tombstones(&mut self, key: &[u8]) -> (usize, bool) {
        let (n, empty, deadline) = match self.live.get_mut(key).or_else(|| self.hidden.get_mut(key))
        {
            Some(e) => {
                let n = e.collect_tombstones();
                (n, e.is_empty(), e.deadline_ms())
            }
            None => return (0, false),
        };
        if !empty {
            return (n, false);
        }
        self.reindex(key, deadline, None);
        self.live.swap_remove(key);
        self.hidden.swap_remove(key);
        (n, true)
    }

    /// Sets `key`'s whole entry (a state merge). A live key that stays live
    /// keeps its place, so a SCAN in progress does not lose it.
    pub fn replace(&mut self, key: &[u8], entry: Entry) {
        let before = self.get_any(key).and_then(|e| e.deadline_ms());
        let after = entry.deadline_ms();
        if entry.is_live() {
            if let Some(slot) = self.live.get_mut(key) {
                **slot = entry;
                self.reindex(key, before, after);
                return;
            }
        }
        self.reindex(key, before, None);
        self.live.swap_remove(key);
        self.hidden.swap_remove(key);
        self.load(Blob::from(key), entry);
    }
}
