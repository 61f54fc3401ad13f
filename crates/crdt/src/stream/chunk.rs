//! A stream's entries, packed in chunks of consecutive entries, as Redis
//! packs them in listpacks (and as lists pack theirs, `list/packed.rs`).
//!
//! A chunk is one buffer holding up to [`CHUNK_ENTRIES_MAX`] entries in ID
//! order (fewer once it passes [`CHUNK_BYTES_MAX`]), kept in a B-tree by
//! its first ID. Each entry is, in LEB128 varints:
//!
//! - its ID: the first entry's milliseconds and sequence number; every
//!   later entry's milliseconds after the previous entry's, then its
//!   sequence number (less the previous one's plus one when in the same
//!   millisecond);
//! - its count of versions (one, unless regions added the ID at once), and
//!   each version's tag as the differences of its HLC and its dot from the
//!   previous version's (zigzag): an op right after another in the same
//!   region differs by a few clock ticks and one dot;
//! - each version's fields: `2·strings + shared`, then the strings, each as
//!   its length and bytes; with `shared` set the names are those of the
//!   last entry of the chunk that wrote its own, and only the values
//!   follow (Redis's listpacks share their master entry's names the same
//!   way).
//!
//! An append above the last ID writes at the end of the last chunk. A
//! trim that takes whole entries from the front of a chunk only counts
//! them dead there, as Redis flags entries deleted in a listpack: they
//! stay in the buffer, skipped, until the chunk has nothing else. Any
//! other change (a peer's lower ID, a removal, a merge) decodes the chunks
//! it touches and encodes them again. Chunks are how a region holds its
//! entries, not part of the state: equality, encoding and merge see the
//! entries, never where chunks begin.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use super::dots::{sort_dots, Dots};
use super::fields::{get_len, get_u64, put_len, put_u64, FieldsRef};
use super::{StreamId, Version};
use crate::hlc::Hlc;
use crate::region::RegionId;
use crate::vv::{Dot, Tag, SEQ_MAX};

/// Entries a chunk holds at most (Redis's `stream-node-max-entries` default).
pub(super) const CHUNK_ENTRIES_MAX: u32 = 100;
/// Bytes past which a chunk takes no more entries (Redis's
/// `stream-node-max-bytes` default).
pub(super) const CHUNK_BYTES_MAX: usize = 4096;

/// Where a dot's region index starts in its bits.
const REGION_SHIFT: u32 = SEQ_MAX.count_ones();

/// A wrapping difference as a small number either way.
fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(z: u64) -> u64 {
    ((z >> 1) as i64 ^ -((z & 1) as i64)) as u64
}

fn dot_bits(d: Dot) -> u64 {
    (u64::from(d.region().index()) << REGION_SHIFT) | d.seq()
}

fn dot_of(bits: u64) -> Dot {
    Dot::new(
        RegionId::from_index((bits >> REGION_SHIFT) as u16),
        bits & SEQ_MAX,
    )
}

/// One version of an entry, read in place.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct VersionRef<'a> {
    pub tag: Tag,
    pub fields: FieldsRef<'a>,
}

impl VersionRef<'_> {
    pub fn owned(self) -> Version {
        Version {
            tag: self.tag,
            fields: self.fields.to_owned(),
        }
    }
}

/// An entry read in place: its versions in tag order, the one readers see
/// last.
#[derive(Clone, Debug)]
pub(super) struct EntryRef<'a> {
    pub id: StreamId,
    pub versions: SmallVec<[VersionRef<'a>; 1]>,
}

impl<'a> EntryRef<'a> {
    /// The version readers see.
    pub fn shown(&self) -> Option<VersionRef<'a>> {
        self.versions.last().copied()
    }

    pub fn owned(&self) -> Dots<Version> {
        self.versions.iter().map(|v| v.owned()).collect()
    }
}

/// Consecutive entries in one buffer (see the module docs).
#[derive(Clone, Default)]
struct Chunk {
    buf: Vec<u8>,
    /// Entries written, the first `dead` of them gone (never all).
    count: u32,
    dead: u32,
    /// The last entry's ID, the last version's HLC and dot bits: what the
    /// next entry is written after.
    last: StreamId,
    last_hlc: u64,
    last_dot: u64,
    /// Where the strings of the last entry that wrote its own names start,
    /// and how many it has (0: none yet).
    names_at: usize,
    names_strings: usize,
}

impl Chunk {
    fn is_full(&self) -> bool {
        self.count >= CHUNK_ENTRIES_MAX || self.buf.len() >= CHUNK_BYTES_MAX
    }

    /// Writes entry `id`, above every entry held, with its versions in tag
    /// order.
    fn push<'v>(
        &mut self,
        id: StreamId,
        versions: impl ExactSizeIterator<Item = (Tag, FieldsRef<'v>)>,
    ) {
        debug_assert!(self.count == 0 || id > self.last);
        if self.count == 0 {
            put_u64(&mut self.buf, id.ms);
            put_u64(&mut self.buf, id.seq);
        } else {
            let ms = id.ms - self.last.ms;
            put_u64(&mut self.buf, ms);
            let seq = if ms == 0 {
                id.seq - self.last.seq - 1
            } else {
                id.seq
            };
            put_u64(&mut self.buf, seq);
        }
        put_u64(&mut self.buf, versions.len() as u64);
        for (tag, fields) in versions {
            put_u64(&mut self.buf, zigzag(tag.hlc.0.wrapping_sub(self.last_hlc)));
            let dot = dot_bits(tag.dot);
            put_u64(&mut self.buf, zigzag(dot.wrapping_sub(self.last_dot)));
            self.last_hlc = tag.hlc.0;
            self.last_dot = dot;
            let shared = self.names_strings > 0
                && self.names_strings == fields.len()
                && self.names().eq(fields.names());
            put_len(&mut self.buf, (fields.len() << 1) | usize::from(shared));
            if shared {
                for value in fields.iter().skip(1).step_by(2) {
                    put_len(&mut self.buf, value.len());
                    self.buf.extend_from_slice(value);
                }
            } else {
                self.names_at = self.buf.len();
                self.names_strings = fields.len();
                for s in fields.iter() {
                    put_len(&mut self.buf, s.len());
                    self.buf.extend_from_slice(s);
                }
            }
        }
        self.count += 1;
        self.last = id;
    }

    /// The names later entries may share.
    fn names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        FieldsRef {
            body: &self.buf[self.names_at..],
            names: None,
            strings: self.names_strings,
        }
        .names()
    }

    /// The entries, in ID order.
    fn decode(&self) -> Vec<EntryRef<'_>> {
        let mut out = Vec::with_capacity((self.count - self.dead) as usize);
        let whole = self.decode_into(&mut out, usize::MAX);
        debug_assert!(whole.is_some(), "a stream chunk that does not decode");
        out
    }

    /// The first entry's ID.
    fn first(&self) -> Option<StreamId> {
        let mut out = Vec::with_capacity(1);
        self.decode_into(&mut out, 1);
        out.first().map(|e| e.id)
    }

    /// Decodes the live entries into `out`, `max` of them at most.
    fn decode_into<'a>(&'a self, out: &mut Vec<EntryRef<'a>>, max: usize) -> Option<()> {
        let buf = &self.buf[..];
        let mut at = 0;
        let mut prev: Option<StreamId> = None;
        let (mut hlc, mut dot) = (0u64, 0u64);
        let mut names: Option<&[u8]> = None;
        for i in 0..self.count {
            if out.len() >= max {
                return Some(());
            }
            let (a, next) = get_u64(buf, at)?;
            let (b, next) = get_u64(buf, next)?;
            let id = match prev {
                None => StreamId::new(a, b),
                Some(p) if a == 0 => StreamId::new(p.ms, p.seq.checked_add(b)?.checked_add(1)?),
                Some(p) => StreamId::new(p.ms.checked_add(a)?, b),
            };
            prev = Some(id);
            let (n, mut next) = get_u64(buf, next)?;
            let mut versions = SmallVec::new();
            for _ in 0..n {
                let (h, after) = get_u64(buf, next)?;
                let (d, after) = get_u64(buf, after)?;
                hlc = hlc.wrapping_add(unzigzag(h));
                dot = dot.wrapping_add(unzigzag(d));
                let (header, mut after) = get_len(buf, after)?;
                let (strings, shared) = (header >> 1, header & 1 == 1);
                let body = &buf[after..];
                if !shared {
                    names = Some(body);
                }
                let held = if shared { strings / 2 } else { strings };
                for _ in 0..held {
                    let (len, start) = get_len(buf, after)?;
                    after = start.checked_add(len)?;
                }
                versions.push(VersionRef {
                    tag: Tag {
                        hlc: Hlc(hlc),
                        dot: dot_of(dot),
                    },
                    fields: FieldsRef {
                        body,
                        names: if shared { Some(names?) } else { None },
                        strings,
                    },
                });
                next = after;
            }
            if i >= self.dead {
                out.push(EntryRef { id, versions });
            }
            at = next;
        }
        (at == buf.len()).then_some(())
    }
}

/// A stream's entries in chunks (see the module docs).
#[derive(Clone, Default)]
pub(super) struct Entries {
    chunks: BTreeMap<StreamId, Chunk>,
    len: usize,
}

impl Entries {
    /// Entries packed from `entries`, in ID order, none without versions.
    pub fn from_sorted<'a>(entries: impl Iterator<Item = (StreamId, &'a Dots<Version>)>) -> Self {
        let mut out = Entries::default();
        out.put_all(entries);
        out
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first_id(&self) -> Option<StreamId> {
        self.chunks.values().next().and_then(Chunk::first)
    }

    pub fn last_id(&self) -> Option<StreamId> {
        self.chunks.values().next_back().map(|c| c.last)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + '_ {
        self.chunks.values().flat_map(Chunk::decode)
    }

    /// The entries with IDs in `start..=end`, in ID order.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl DoubleEndedIterator<Item = EntryRef<'_>> + '_ {
        let chunks = if start <= end {
            // From the chunk that may hold `start`.
            let from = self
                .chunks
                .range(..=start)
                .next_back()
                .map_or(start, |(k, _)| *k);
            (Bound::Included(from), Bound::Included(end))
        } else {
            (
                Bound::Included(StreamId::MAX),
                Bound::Excluded(StreamId::MAX),
            )
        };
        self.chunks
            .range(chunks)
            .flat_map(|(_, c)| c.decode())
            .filter(move |e| start <= e.id && e.id <= end)
    }

    pub fn get(&self, id: StreamId) -> Option<EntryRef<'_>> {
        let (_, c) = self.chunks.range(..=id).next_back()?;
        if id > c.last {
            return None;
        }
        c.decode().into_iter().find(|e| e.id == id)
    }

    /// Adds entry `id`, above every entry held, with one version.
    pub fn append(&mut self, id: StreamId, tag: Tag, fields: FieldsRef<'_>) {
        debug_assert!(self.last_id().is_none_or(|last| id > last));
        self.len += 1;
        if let Some(mut tail) = self.chunks.last_entry() {
            let c = tail.get_mut();
            if !c.is_full() {
                c.push(id, std::iter::once((tag, fields)));
                return;
            }
            c.buf.shrink_to_fit();
        }
        let mut c = Chunk::default();
        c.push(id, std::iter::once((tag, fields)));
        self.chunks.insert(id, c);
    }

    /// Changes the versions of entry `id` (none if it is not held) with
    /// `f`; the entry goes if none are left. Answers whether it was held
    /// before and is after.
    pub fn update(&mut self, id: StreamId, f: impl FnOnce(&mut Dots<Version>)) -> (bool, bool) {
        let key = self
            .chunks
            .range(..=id)
            .next_back()
            .map(|(k, _)| *k)
            .or_else(|| self.first_id());
        let mut entries = match key.and_then(|k| self.chunks.remove(&k)) {
            Some(c) => owned(&c),
            None => Vec::new(),
        };
        self.len -= entries.len();
        let (had, i) = match entries.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => (true, i),
            Err(i) => {
                entries.insert(i, (id, Dots::new()));
                (false, i)
            }
        };
        f(&mut entries[i].1);
        let has = !entries[i].1.is_empty();
        if !has {
            entries.remove(i);
        }
        self.put_all(entries.iter().map(|(id, v)| (*id, v)));
        (had, has)
    }

    /// Drops the versions `gone` holds of among the entries up to `upto`;
    /// entries left without any go, and their IDs are answered.
    pub fn retain_upto(&mut self, upto: StreamId, gone: impl Fn(Tag) -> bool) -> Vec<StreamId> {
        let keys: Vec<StreamId> = self.chunks.range(..=upto).map(|(k, _)| *k).collect();
        let mut removed = Vec::new();
        for k in keys {
            let Some(mut c) = self.chunks.remove(&k) else {
                continue;
            };
            let live = c.decode();
            // Entries that go whole at the front, and whether any other
            // entry loses a version.
            let mut front = 0;
            let mut elsewhere = false;
            for (i, e) in live.iter().enumerate().take_while(|(_, e)| e.id <= upto) {
                let lost = e.versions.iter().filter(|v| gone(v.tag)).count();
                if front == i && lost == e.versions.len() {
                    front += 1;
                } else if lost > 0 {
                    elsewhere = true;
                    break;
                }
            }
            if !elsewhere {
                removed.extend(live[..front].iter().map(|e| e.id));
                drop(live);
                self.len -= front;
                c.dead += front as u32;
                if c.dead < c.count {
                    self.chunks.insert(k, c);
                }
                continue;
            }
            self.len -= live.len();
            let kept: Vec<(StreamId, SmallVec<[VersionRef<'_>; 1]>)> = live
                .iter()
                .map(|e| {
                    let versions: SmallVec<[VersionRef<'_>; 1]> = if e.id <= upto {
                        e.versions
                            .iter()
                            .filter(|v| !gone(v.tag))
                            .copied()
                            .collect()
                    } else {
                        e.versions.clone()
                    };
                    if versions.is_empty() {
                        removed.push(e.id);
                    }
                    (e.id, versions)
                })
                .collect();
            self.put_refs(
                kept.iter()
                    .map(|(id, vs)| (*id, vs.iter().map(|v| (v.tag, v.fields)))),
            );
        }
        removed
    }

    /// Every entry, owned, by ID.
    pub fn to_map(&self) -> BTreeMap<StreamId, Dots<Version>> {
        self.iter().map(|e| (e.id, e.owned())).collect()
    }

    /// Bytes on the heap: the chunks' buffers and B-tree slots (nodes
    /// about half full as chunks arrive in order).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<StreamId>() + std::mem::size_of::<Chunk>();
        self.chunks
            .values()
            .map(|c| 2 * slot + c.buf.capacity() + 16)
            .sum()
    }

    /// Packs `entries`, in ID order and between the chunks held, into new
    /// chunks.
    fn put_all<'a>(&mut self, entries: impl Iterator<Item = (StreamId, &'a Dots<Version>)>) {
        self.put_refs(entries.map(|(id, v)| (id, v.iter().map(|v| (v.tag, v.fields.as_ref())))));
    }

    /// [`Entries::put_all`] of versions read in place.
    fn put_refs<'v, I>(&mut self, entries: impl Iterator<Item = (StreamId, I)>)
    where
        I: ExactSizeIterator<Item = (Tag, FieldsRef<'v>)>,
    {
        let mut chunk: Option<(StreamId, Chunk)> = None;
        for (id, versions) in entries {
            if versions.len() == 0 {
                continue;
            }
            if let Some((first, c)) = chunk.take_if(|(_, c)| c.is_full()) {
                self.put(first, c);
            }
            let (_, c) = chunk.get_or_insert_with(|| (id, Chunk::default()));
            c.push(id, versions);
        }
        if let Some((first, c)) = chunk {
            self.put(first, c);
        }
    }

    fn put(&mut self, first: StreamId, mut c: Chunk) {
        c.buf.shrink_to_fit();
        self.len += c.count as usize;
        let old = self.chunks.insert(first, c);
        debug_assert!(old.is_none(), "two stream chunks begin at {first}");
    }
}

/// A chunk's entries, owned, to change and pack again.
fn owned(c: &Chunk) -> Vec<(StreamId, Dots<Version>)> {
    c.decode().into_iter().map(|e| (e.id, e.owned())).collect()
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .iter()
                .zip(other.iter())
                .all(|(a, b)| a.id == b.id && a.versions == b.versions)
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|e| (e.id, e.versions)))
            .finish()
    }
}

/// As the map of versions by ID it packs, so snapshots, logs and digests
/// read the same bytes whichever way a region holds the entries.
impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len))?;
        for e in self.iter() {
            m.serialize_entry(&e.id, &e.owned())?;
        }
        m.end()
    }
}

/// Decoded state is untrusted: each entry's versions are put in tag
/// order without repeats and entries without any are dropped. Entries in
/// ID order, as every encoder writes them, are packed as they arrive, so
/// loading a large stream never holds it unpacked; any other order is
/// gathered in a map first.
impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("stream entries by ID")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Entries::default();
                let mut pending: Vec<(StreamId, Dots<Version>)> = Vec::new();
                let mut unordered: Option<BTreeMap<StreamId, Dots<Version>>> = None;
                while let Some((id, mut versions)) = map.next_entry::<StreamId, Dots<Version>>()? {
                    sort_dots(&mut versions);
                    versions.dedup_by_key(|v| v.tag);
                    if versions.is_empty() {
                        continue;
                    }
                    if let Some(all) = unordered.as_mut() {
                        all.insert(id, versions);
                        continue;
                    }
                    let last = pending.last().map(|p| p.0).or_else(|| out.last_id());
                    if last.is_some_and(|last| id <= last) {
                        let mut all = out.to_map();
                        all.extend(pending.drain(..));
                        all.insert(id, versions);
                        unordered = Some(all);
                        continue;
                    }
                    pending.push((id, versions));
                    if pending.len() >= CHUNK_ENTRIES_MAX as usize {
                        out.put_all(pending.iter().map(|(id, v)| (*id, v)));
                        pending.clear();
                    }
                }
                match unordered {
                    Some(all) => Ok(Entries::from_sorted(all.iter().map(|(id, v)| (*id, v)))),
                    None => {
                        out.put_all(pending.iter().map(|(id, v)| (*id, v)));
                        Ok(out)
                    }
                }
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Fields;
    use super::*;

    /// splitmix64: all the randomness of a run, from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn version(rng: &mut Rng, op: u64) -> Version {
        let region = ["ka", "kb", "kc"][rng.below(3) as usize];
        let tag = Tag {
            hlc: Hlc::new(1_000 + op / 3, rng.below(4) as u16),
            dot: Dot::new(RegionId::new(region).unwrap(), op),
        };
        let long = "x".repeat(rng.below(300) as usize);
        let value = format!("{}", rng.next());
        let strings: Vec<&[u8]> = match rng.below(4) {
            0 => vec![b"item", value.as_bytes(), b"value", long.as_bytes()],
            1 => vec![b"f", b""],
            2 => vec![value.as_bytes(), b"v"],
            _ => vec![b"item", value.as_bytes(), b"value", b"abcdefgh"],
        };
        Version {
            tag,
            fields: Fields::new(strings.into_iter()),
        }
    }

    fn random_id(rng: &mut Rng, top: StreamId) -> StreamId {
        StreamId::new(rng.below(top.ms + 2), rng.below(top.seq + 3))
    }

    /// Compares everything `e` answers with the map it must hold.
    fn same(
        e: &Entries,
        model: &BTreeMap<StreamId, Dots<Version>>,
        rng: &mut Rng,
        seed: u64,
        step: usize,
    ) {
        let at = format!("seed {seed} (MERIDIAN_TEST_SEED={seed} replays it), step {step}");
        assert_eq!(&e.to_map(), model, "{at}");
        assert_eq!(e.len(), model.len(), "{at}");
        assert_eq!(e.first_id(), model.keys().next().copied(), "{at}");
        assert_eq!(e.last_id(), model.keys().next_back().copied(), "{at}");
        let top = e.last_id().unwrap_or_default();
        let (a, b) = (random_id(rng, top), random_id(rng, top));
        let got: Vec<StreamId> = e.range(a, b).map(|x| x.id).collect();
        let want: Vec<StreamId> = if a <= b {
            model.range(a..=b).map(|(id, _)| *id).collect()
        } else {
            Vec::new()
        };
        assert_eq!(got, want, "{at}: range {a}..={b}");
        let back: Vec<StreamId> = e.range(a, b).rev().map(|x| x.id).collect();
        assert!(back.iter().rev().eq(want.iter()), "{at}: reversed range");
        assert_eq!(
            e.get(a).map(|x| x.owned()).as_ref(),
            model.get(&a),
            "{at}: get {a}"
        );
        assert_eq!(
            postcard::to_stdvec(e).unwrap(),
            postcard::to_stdvec(model).unwrap(),
            "{at}: encoding"
        );
    }

    fn run(seed: u64) {
        let mut rng = Rng(seed);
        let mut e = Entries::default();
        let mut model: BTreeMap<StreamId, Dots<Version>> = BTreeMap::new();
        let mut op = 0;
        for step in 0..600 {
            op += 1;
            let top = e.last_id().unwrap_or_default();
            match rng.below(12) {
                0..=6 => {
                    let id = match rng.below(3) {
                        0 => StreamId::new(top.ms + 1 + rng.below(1 << 40), rng.below(3)),
                        _ => StreamId::new(top.ms, top.seq + 1 + rng.below(2000)),
                    };
                    let v = version(&mut rng, op);
                    e.append(id, v.tag, v.fields.as_ref());
                    model.insert(id, Dots::from_elem(v, 1));
                }
                7 | 8 => {
                    // Below the last ID: a new entry, or another version.
                    let id = random_id(&mut rng, top);
                    let v = version(&mut rng, op);
                    let slot = model.entry(id).or_default();
                    slot.push(v.clone());
                    sort_dots(slot);
                    e.update(id, |versions| {
                        versions.push(v);
                        sort_dots(versions);
                    });
                }
                9 => {
                    let id = match rng.below(2) {
                        0 => model.keys().nth(rng.below(model.len() as u64 + 1) as usize),
                        _ => None,
                    }
                    .copied()
                    .unwrap_or_else(|| random_id(&mut rng, top));
                    let (had, has) = e.update(id, |v| v.retain(|x| x.tag.dot.seq() % 2 == 1));
                    assert_eq!(had, model.contains_key(&id), "seed {seed}, step {step}");
                    if let Some(v) = model.get_mut(&id) {
                        v.retain(|x| x.tag.dot.seq() % 2 == 1);
                    }
                    model.retain(|_, v| !v.is_empty());
                    assert_eq!(has, model.contains_key(&id), "seed {seed}, step {step}");
                }
                10 => {
                    // A trim of everything up to an ID, or of some versions.
                    let upto = random_id(&mut rng, top);
                    let every = rng.below(2) == 0;
                    let lose = |t: Tag| every || t.dot.seq().is_multiple_of(3);
                    let mut gone = e.retain_upto(upto, lose);
                    let mut want = Vec::new();
                    for (id, v) in model.range_mut(..=upto) {
                        v.retain(|x| !lose(x.tag));
                        if v.is_empty() {
                            want.push(*id);
                        }
                    }
                    model.retain(|_, v| !v.is_empty());
                    gone.sort();
                    assert_eq!(gone, want, "seed {seed}, step {step}");
                }
                _ => same(&e, &model, &mut rng, seed, step),
            }
        }
        same(&e, &model, &mut rng, seed, 600);
        let packed = Entries::from_sorted(model.iter().map(|(id, v)| (*id, v)));
        assert_eq!(packed, e, "seed {seed}");
    }

    /// Entries decode from their encoding as they were, and from a map
    /// whose IDs are out of order, repeated or without versions (decoded
    /// state is untrusted) as a map would hold them.
    #[test]
    fn entries_decode_in_order_and_out_of_order() {
        let mut rng = Rng(7);
        let mut model: BTreeMap<StreamId, Dots<Version>> = BTreeMap::new();
        for i in 0..450u64 {
            model.insert(
                StreamId::new(i / 3, i % 3),
                Dots::from_elem(version(&mut rng, i + 1), 1),
            );
        }
        let e = Entries::from_sorted(model.iter().map(|(id, v)| (*id, v)));
        let bytes = postcard::to_stdvec(&e).unwrap();
        let back: Entries = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, e);
        // The same entries sent backwards, one of them twice and one with
        // no versions, as pairs postcard reads as a map.
        let mut pairs: Vec<(StreamId, Dots<Version>)> =
            model.iter().rev().map(|(id, v)| (*id, v.clone())).collect();
        pairs.insert(5, pairs[0].clone());
        pairs.push((StreamId::new(999, 0), Dots::new()));
        let bytes = postcard::to_stdvec(&pairs).unwrap();
        let back: Entries = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_map(), model);
    }

    /// Chunks hold what a map of versions by ID would, through appends,
    /// adds below the last ID, removals and trims, and encode as it does.
    #[test]
    fn chunks_hold_what_a_map_of_versions_holds() {
        match std::env::var("MERIDIAN_TEST_SEED") {
            Ok(s) => run(s.parse().expect("MERIDIAN_TEST_SEED is a number")),
            Err(_) => (0..24).for_each(run),
        }
    }

    /// Entries written one after another in one region, with the same
    /// names, take about what their values take.
    #[test]
    fn appended_entries_share_names_and_small_deltas() {
        let mut e = Entries::default();
        let region = RegionId::new("ka").unwrap();
        for i in 0..1000u64 {
            let value = i.to_string();
            let fields =
                Fields::new([&b"item"[..], value.as_bytes(), b"value", b"abcdefgh"].into_iter());
            let tag = Tag {
                hlc: Hlc::new(1_000 + i / 7, (i % 7) as u16),
                dot: Dot::new(region, i + 1),
            };
            e.append(StreamId::new(1_000 + i / 7, i % 7), tag, fields.as_ref());
        }
        let bytes: usize = e.chunks.values().map(|c| c.buf.len()).sum();
        // Values (1 + 3 and 1 + 8 bytes), the header, ID and tag deltas.
        assert!(bytes < 1000 * 24, "{bytes} bytes for 1000 entries");
        assert_eq!(e.chunks.len(), 10);
        let third = e.get(StreamId::new(1_000, 2)).unwrap();
        let shown: Vec<&[u8]> = third.shown().unwrap().fields.iter().collect();
        assert_eq!(shown, [&b"item"[..], b"2", b"value", b"abcdefgh"]);
    }
}
