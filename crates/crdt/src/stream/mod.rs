//! Streams: Redis streams as a CRDT.
//!
//! A stream is an ordered map of entries, `StreamId (ms, seq) → fields`,
//! plus the metadata Redis 7 keeps (the last ID, the count of entries ever
//! added, the largest deleted ID) and its consumer groups. Every part is a
//! set of elements stamped with the [`Tag`] of the op that wrote them, and
//! every removal is observed-remove: an effect removes an element only if
//! its op's context covers the element's dot. So the whole value is a
//! product of *dot sets*, and its merge is theirs:
//!
//! - an element held on both sides stays; one held on one side only stays
//!   unless the other side's context covers its dot (it was removed there);
//! - hence the join is commutative, associative and idempotent, and agrees
//!   with replaying the ops in any causal order (`tests/merge_laws.rs`).
//!
//! The parts:
//! - **Entries.** IDs are unique across regions (the writing region chooses
//!   auto-generated ones so that they cannot collide, see the store), so
//!   every region holds the same entries in the same ID order. An entry is
//!   a set of versions: two regions adding the same explicit ID at once
//!   leave two, readers see the one with the larger tag and the other is
//!   journaled; a removal (XDEL, a trim, DEL) takes only the versions its
//!   op observed. Trims are replicated as "every observed entry up to this
//!   ID" (a trim always removes a prefix), so an entry added concurrently
//!   survives a trim.
//! - **Marks** (`last_id`, `max_deleted_entry_id`, a group's last delivered
//!   ID): multi-value registers of *raises* (XADD, XDEL, XREADGROUP) and
//!   *sets* (XSETID, XGROUP SETID). A write replaces the marks its op
//!   observed. The value is the largest ID among the raises and the
//!   last-writer-wins set, so concurrent XADDs raise the last ID to the
//!   largest of theirs and concurrent XSETIDs resolve by tag.
//! - **Entries added**: per region, the number of XADDs that region made
//!   to the stream (the origin's own count, carried in the effect), summed,
//!   on top of the last-writer-wins value an XSETID ENTRIESADDED set; a
//!   write that resets it (DEL, XSETID ENTRIESADDED) drops the counts it
//!   observed, so concurrent XADDs add up and a new stream counts from 0.
//! - **Consumer groups**, by name: created (add-wins) and destroyed
//!   (observed-remove) like set members; every write that adds to a group
//!   (XREADGROUP, XCLAIM, SETID, CREATECONSUMER) adds to its presence too,
//!   so a group destroyed concurrently with a read survives with what the
//!   destroy did not observe. A group holds its last delivered ID (a mark,
//!   carrying the group's `entries_read`), its pending entries (per ID, the
//!   versions written by deliveries and claims, the largest tag shown) and
//!   its consumers (each a set of "seen" stamps, the latest time shown).
//!
//! Nothing here is a tombstone: removing an element forgets it, so streams
//! leave nothing for tombstone collection.
//!
//! Redis keeps a stream as a radix tree of listpack *nodes*, and approximate
//! trimming (`MAXLEN ~`, `LIMIT`) and XINFO report on them. A region keeps
//! the same node layout beside the entries ([`NodeLimits`], [`StreamVal::
//! nodes`]), built as Redis would build it from the appends this region
//! applied. It is local: not part of the state (equality, encoding, merge),
//! rebuilt from the entries when a stream is loaded, and only ever read to
//! decide a trim here, which replicates as the IDs it removed.
//!
//! The entries themselves are packed in chunks of consecutive entries, IDs
//! and tags as differences, names shared with an earlier entry of the chunk
//! (`chunk.rs`), so an entry takes about what its values do.

mod chunk;
mod dots;
mod fields;
mod group;
mod layout;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::conflict::Conflict;
use crate::num::Observes;
use crate::op::OpCtx;
use crate::vv::{Tag, VersionVector};

use chunk::Entries;
use dots::{join_dots, remove_dots, sort_dots, write_dot, Added, Dots, Tagged};
pub use dots::{Mark, Marks};
pub use fields::{Fields, FieldsIter, FieldsRef};
pub use group::{Delivery, Group, Nack, Seen};
use layout::Layout;
pub use layout::{Node, NodeLimits};

/// A stream entry ID: milliseconds, then a sequence number.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The ID right after this one, `None` past the last possible one.
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
        }
    }

    /// The ID right before this one, `None` before `0-0`.
    pub fn prev(self) -> Option<StreamId> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self
                .ms
                .checked_sub(1)
                .map(|ms| StreamId { ms, seq: u64::MAX }),
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::ZERO
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One version of an entry: its fields and values, flattened in pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub tag: Tag,
    pub fields: Fields,
}

impl Tagged for Version {
    fn tag(&self) -> Tag {
        self.tag
    }
}

/// A stream: see the module docs.
#[derive(Debug, Clone, Default)]
pub struct StreamVal {
    entries: Entries,
    last: Marks,
    deleted: Marks,
    added: Added,
    /// Adds of the stream itself, by XGROUP CREATE: a stream whose entries
    /// and groups are all gone still exists, as in Redis.
    made: Dots<Tag>,
    groups: BTreeMap<Blob, Group>,
    layout: Layout,
    /// Per region, the largest ID of an entry it added here: an upper
    /// bound (removals leave it), local like the layout, rebuilt on load;
    /// where a group's undelivered entries may start.
    origins: BTreeMap<crate::region::RegionId, StreamId>,
}

impl PartialEq for StreamVal {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.last == other.last
            && self.deleted == other.deleted
            && self.added == other.added
            && self.made == other.made
            && self.groups == other.groups
    }
}

#[derive(Serialize)]
struct ReprRef<'a> {
    entries: &'a Entries,
    last: &'a Marks,
    deleted: &'a Marks,
    added: &'a Added,
    made: &'a Dots<Tag>,
    groups: &'a BTreeMap<Blob, Group>,
}

#[derive(Deserialize)]
struct Repr {
    entries: Entries,
    last: Marks,
    deleted: Marks,
    added: Added,
    made: Dots<Tag>,
    groups: BTreeMap<Blob, Group>,
}

impl Serialize for StreamVal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReprRef {
            entries: &self.entries,
            last: &self.last,
            deleted: &self.deleted,
            added: &self.added,
            made: &self.made,
            groups: &self.groups,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for StreamVal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = Repr::deserialize(d)?;
        // Decoded state is untrusted: restore the order and the non-empty
        // sets the value relies on rather than assume them.
        let mut s = StreamVal {
            entries: r.entries,
            last: r.last,
            deleted: r.deleted,
            added: r.added,
            made: r.made,
            groups: r.groups,
            layout: Layout::default(),
            origins: BTreeMap::new(),
        };
        sort_dots(&mut s.last.0);
        sort_dots(&mut s.deleted.0);
        sort_dots(&mut s.added.base);
        sort_dots(&mut s.added.counts);
        sort_dots(&mut s.made);
        for g in s.groups.values_mut() {
            sort_dots(&mut g.adds);
            sort_dots(&mut g.last.0);
            g.pel.retain(|_, v| !v.is_empty());
            g.pel.values_mut().for_each(sort_dots);
            g.consumers.retain(|_, v| !v.is_empty());
            g.consumers.values_mut().for_each(sort_dots);
        }
        s.groups.retain(|_, g| !g.is_empty());
        s.rebuild_layout();
        s.rebuild_origins();
        Ok(s)
    }
}

impl StreamVal {
    // ----- reading -----

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries (the stream may still exist: see [`StreamVal::is_live`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Holds nothing at all: the key can go.
    pub fn holds_nothing(&self) -> bool {
        self.entries.is_empty()
            && self.last.is_empty()
            && self.deleted.is_empty()
            && self.added.is_empty()
            && self.made.is_empty()
            && self.groups.is_empty()
    }

    /// The stream exists for readers: anything but a group's leftovers
    /// (which never outlive every add of their group, see [`Group`]).
    pub fn is_live(&self) -> bool {
        !self.entries.is_empty()
            || !self.last.is_empty()
            || !self.made.is_empty()
            || self.groups.values().any(Group::exists)
    }

    /// The last ID: never below the largest entry ID.
    pub fn last_id(&self) -> StreamId {
        let top = self.entries.last_id().unwrap_or_default();
        self.last.value().max(top)
    }

    /// The largest ID ever deleted by XDEL (or set by XSETID).
    pub fn max_deleted(&self) -> StreamId {
        self.deleted.value()
    }

    /// The count of entries ever added.
    pub fn entries_added(&self) -> u64 {
        self.added.value()
    }

    /// The count `region`'s next XADD carries (its own, plus one).
    pub fn next_added(&self, region: crate::region::RegionId) -> u64 {
        self.added.next_for(region)
    }

    /// The first entry's ID, `0-0` when empty (Redis's recorded first ID).
    pub fn first_id(&self) -> StreamId {
        self.entries.first_id().unwrap_or_default()
    }

    /// The largest entry ID, if any entry.
    pub fn last_entry_id(&self) -> Option<StreamId> {
        self.entries.last_id()
    }

    /// The fields of the entry `id` as readers see them.
    pub fn get(&self, id: StreamId) -> Option<FieldsRef<'_>> {
        self.entries.get(id)?.shown().map(|v| v.fields)
    }

    /// The entries with IDs in `start..=end`, in ID order.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl DoubleEndedIterator<Item = (StreamId, FieldsRef<'_>)> + '_ {
        self.entries
            .range(start, end)
            .filter_map(|e| e.shown().map(|v| (e.id, v.fields)))
    }

    /// The visible groups, in name order.
    pub fn groups(&self) -> impl Iterator<Item = (&Blob, &Group)> + '_ {
        self.groups.iter().filter(|(_, g)| g.exists())
    }

    /// The region that added entry `id` (of its shown version).
    pub fn origin_of(&self, id: StreamId) -> Option<crate::region::RegionId> {
        self.entries.get(id)?.shown().map(|v| v.tag.dot.region())
    }

    /// The entries group `g` has not delivered, in ID order, with the
    /// region that added each: every entry above its region's floor
    /// ([`Group::floor`]).
    pub fn undelivered<'a>(
        &'a self,
        g: &'a Group,
    ) -> impl Iterator<Item = (StreamId, FieldsRef<'a>, crate::region::RegionId)> + 'a {
        // Where to start: the lowest floor of a region with an entry above
        // its floor.
        let start = self
            .origins
            .iter()
            .map(|(r, top)| (g.floor(*r), *top))
            .filter(|(floor, top)| top > floor)
            .map(|(floor, _)| floor)
            .min();
        let range = match start.and_then(StreamId::next) {
            Some(from) => self.entries.range(from, StreamId::MAX),
            None => self.entries.range(StreamId::MAX, StreamId::ZERO),
        };
        range.filter_map(move |e| {
            let v = e.shown()?;
            let origin = v.tag.dot.region();
            (e.id > g.floor(origin)).then_some((e.id, v.fields, origin))
        })
    }

    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.groups.get(name).filter(|g| g.exists())
    }

    /// The nodes Redis would hold (see the module docs), by first ID.
    pub fn nodes(&self) -> impl Iterator<Item = (StreamId, &Node)> + '_ {
        self.layout.nodes.iter().map(|(k, n)| (*k, n))
    }

    /// The nodes of Redis's radix tree: its root, every branching point,
    /// every run of single-child steps and every key, counted on the
    /// nodes' 16-byte big-endian keys (XINFO STREAM `radix-tree-nodes`).
    pub fn radix_nodes(&self) -> u64 {
        let keys: Vec<[u8; 16]> = self
            .layout
            .nodes
            .keys()
            .map(|id| {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&id.ms.to_be_bytes());
                k[8..].copy_from_slice(&id.seq.to_be_bytes());
                k
            })
            .collect();
        fn count(keys: &[[u8; 16]], depth: usize) -> u64 {
            if keys.is_empty() {
                return 1;
            }
            if depth == 16 {
                return 1;
            }
            let first = &keys[0];
            let last = &keys[keys.len() - 1];
            let mut common = depth;
            while common < 16 && first[common] == last[common] {
                common += 1;
            }
            if common > depth {
                // A compressed node holding the shared run.
                return 1 + count(keys, common);
            }
            let mut n = 1;
            let mut i = 0;
            while i < keys.len() {
                let b = keys[i][depth];
                let j = i + keys[i..].partition_point(|k| k[depth] == b);
                n += count(&keys[i..j], depth + 1);
                i = j;
            }
            n
        }
        count(&keys, 0)
    }

    /// The limits the next appends applied here go by.
    pub fn set_node_limits(&mut self, limits: NodeLimits) {
        self.layout.limits = limits;
    }

    /// The newest write still visible in this value.
    pub fn stamp(&self) -> Option<Tag> {
        let mut best: Option<Tag> = None;
        self.for_each_tag(&mut |t| best = best.max(Some(t)));
        best
    }

    pub fn any_dot(&self, pred: &dyn Fn(crate::vv::Dot) -> bool) -> bool {
        let mut hit = false;
        self.for_each_tag(&mut |t| hit |= pred(t.dot));
        hit
    }

    fn for_each_tag(&self, f: &mut dyn FnMut(Tag)) {
        self.entries
            .iter()
            .for_each(|e| e.versions.iter().for_each(|v| f(v.tag)));
        self.last.0.iter().for_each(|m| f(m.tag));
        self.deleted.0.iter().for_each(|m| f(m.tag));
        self.added.base.iter().for_each(|b| f(b.0));
        self.added.counts.iter().for_each(|c| f(c.0));
        self.made.iter().for_each(|t| f(*t));
        for g in self.groups.values() {
            g.for_each_tag(f);
        }
    }

    /// Bytes this stream holds on the heap (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes()
            + self
                .groups
                .values()
                .map(|g| 64 + g.pel.len() * 80 + g.consumers.len() * 64)
                .sum::<usize>()
    }

    // ----- effects -----

    /// XADD: adds the entry `id` (a version of it, if another region added
    /// the same ID concurrently: the larger tag is shown, the other
    /// reported), raises the last ID and records `added`, the origin's own
    /// count of XADDs.
    pub fn add(
        &mut self,
        key: &[u8],
        id: StreamId,
        fields: &[Blob],
        added: u64,
        ctx: &OpCtx<'_>,
        conflicts: &mut Vec<Conflict>,
    ) {
        let tag = ctx.tag;
        let new = Version {
            tag,
            fields: Fields::new(fields.iter().map(|f| f.as_bytes())),
        };
        if self.entries.last_id().is_none_or(|last| id > last) {
            // An append, as nearly every XADD is.
            self.entries.append(id, tag, new.fields.as_ref());
            self.layout.insert(id, new.fields.as_ref());
            let top = self.origins.entry(tag.dot.region()).or_default();
            *top = (*top).max(id);
        } else {
            let mut added = false;
            let (had, _) = self.entries.update(id, |versions| {
                if versions.iter().any(|v| v.tag == tag) {
                    return;
                }
                versions.retain(|v| !ctx.observed(v.tag.dot));
                for old in versions.iter() {
                    let (winner, loser) = if old.tag > tag {
                        (old, &new)
                    } else {
                        (&new, old)
                    };
                    conflicts.push(Conflict::stream_entry(key, id, winner, loser));
                }
                versions.push(new);
                sort_dots(versions);
                added = true;
            });
            if added {
                let top = self.origins.entry(tag.dot.region()).or_default();
                *top = (*top).max(id);
            }
            if !had {
                if let Some(v) = self.entries.get(id).and_then(|e| e.shown()) {
                    self.layout.insert(id, v.fields);
                }
            }
        }
        self.last.write(
            Mark {
                id,
                tag,
                set: false,
                read: None,
                origin: None,
            },
            ctx,
        );
        self.added.add(tag, added, ctx);
    }

    /// Removes the observed versions of entry `id`.
    fn remove_entry(&mut self, id: StreamId, ctx: &impl Observes) {
        if self.entries.get(id).is_none() {
            return;
        }
        let (had, has) = self.entries.update(id, |v| remove_dots(v, ctx, |_| true));
        if had && !has {
            self.layout.remove(id);
        }
    }

    /// XDEL: removes the observed versions of `ids`; `max_deleted` is the
    /// largest deleted ID as the origin holds it now.
    pub fn delete(&mut self, ids: &[StreamId], max_deleted: StreamId, ctx: &OpCtx<'_>) {
        let tag = ctx.tag;
        for id in ids {
            self.remove_entry(*id, ctx);
        }
        self.deleted.write(
            Mark {
                id: max_deleted,
                tag,
                set: false,
                read: None,
                origin: None,
            },
            ctx,
        );
    }

    /// A trim: removes every observed entry up to `upto`.
    pub fn trim(&mut self, upto: StreamId, ctx: &impl Observes) {
        let gone = self.entries.retain_upto(upto, |t| ctx.observed(t.dot));
        for id in gone {
            self.layout.remove(id);
        }
    }

    /// XSETID.
    pub fn set_id(
        &mut self,
        last: StreamId,
        added: Option<u64>,
        max_deleted: Option<StreamId>,
        ctx: &OpCtx<'_>,
    ) {
        let tag = ctx.tag;
        self.last.write(
            Mark {
                id: last,
                tag,
                set: true,
                read: None,
                origin: None,
            },
            ctx,
        );
        if let Some(n) = added {
            self.added.set(tag, n, ctx);
        }
        if let Some(id) = max_deleted {
            self.deleted.write(
                Mark {
                    id,
                    tag,
                    set: true,
                    read: None,
                    origin: None,
                },
                ctx,
            );
        }
    }

    fn group_mut(&mut self, name: &[u8]) -> &mut Group {
        self.groups.entry(Blob::from(name)).or_default()
    }

    fn tidy_group(&mut self, name: &[u8]) {
        if self.groups.get(name).is_some_and(Group::is_empty) {
            self.groups.remove(name);
        }
    }

    /// XGROUP CREATE (the stream too, if it did not exist).
    pub fn create_group(
        &mut self,
        name: &[u8],
        last: StreamId,
        read: Option<u64>,
        ctx: &OpCtx<'_>,
    ) {
        write_dot(&mut self.made, ctx.tag, ctx);
        self.set_group_id(name, last, read, ctx);
    }

    /// XGROUP SETID.
    pub fn set_group_id(
        &mut self,
        name: &[u8],
        last: StreamId,
        read: Option<u64>,
        ctx: &OpCtx<'_>,
    ) {
        let tag = ctx.tag;
        let g = self.group_mut(name);
        g.touch(tag, ctx);
        g.last.write(
            Mark {
                id: last,
                tag,
                set: true,
                read,
                origin: None,
            },
            ctx,
        );
    }

    /// XGROUP DESTROY: removes what the op observed of the group.
    pub fn destroy_group(&mut self, name: &[u8], ctx: &impl Observes) {
        if let Some(g) = self.groups.get_mut(name) {
            g.remove_observed(ctx, |_| true);
        }
        self.tidy_group(name);
    }

    /// XGROUP CREATECONSUMER.
    pub fn create_consumer(&mut self, name: &[u8], consumer: &[u8], now_ms: u64, ctx: &OpCtx<'_>) {
        let tag = ctx.tag;
        let g = self.group_mut(name);
        g.touch(tag, ctx);
        g.see(consumer, tag, now_ms, ctx);
    }

    /// XGROUP DELCONSUMER: the consumer and the pending entries it owns,
    /// as far as the op observed them.
    pub fn delete_consumer(&mut self, name: &[u8], consumer: &[u8], ctx: &impl Observes) {
        if let Some(g) = self.groups.get_mut(name) {
            if let Some(seen) = g.consumers.get_mut(consumer) {
                remove_dots(seen, ctx, |_| true);
                if seen.is_empty() {
                    g.consumers.remove(consumer);
                }
            }
            for v in g.pel.values_mut() {
                v.retain(|n| !(n.consumer.as_bytes() == consumer && ctx.observed(n.tag.dot)));
            }
            g.pel.retain(|_, v| !v.is_empty());
        }
        self.tidy_group(name);
    }

    /// XREADGROUP, XCLAIM, XAUTOCLAIM.
    pub fn deliver(&mut self, name: &[u8], d: &Delivery, ctx: &OpCtx<'_>) {
        let tag = ctx.tag;
        let g = self.group_mut(name);
        if let Some(consumer) = &d.consumer {
            g.touch(tag, ctx);
            g.see(consumer, tag, d.now_ms, ctx);
            for &(id, delivered_ms, count) in &d.pel {
                let v = g.pel.entry(id).or_default();
                write_dot(
                    v,
                    Nack {
                        tag,
                        consumer: consumer.clone(),
                        delivered_ms,
                        count,
                    },
                    ctx,
                );
            }
        }
        // The raise first: it replaces every mark it observed, this op's
        // cursors after it not among them.
        if let Some(id) = d.raise {
            g.touch(tag, ctx);
            g.last.write(
                Mark {
                    id,
                    tag,
                    set: false,
                    read: d.read,
                    origin: None,
                },
                ctx,
            );
        }
        for &(origin, id) in &d.cursors {
            g.touch(tag, ctx);
            g.last.write(
                Mark {
                    id,
                    tag,
                    set: false,
                    read: d.read,
                    origin: Some(origin),
                },
                ctx,
            );
        }
        for id in &d.dropped {
            if let Some(v) = g.pel.get_mut(id) {
                remove_dots(v, ctx, |_| true);
                if v.is_empty() {
                    g.pel.remove(id);
                }
            }
        }
        self.tidy_group(name);
    }

    /// XACK: removes the observed deliveries of `ids`.
    pub fn ack(&mut self, name: &[u8], ids: &[StreamId], ctx: &impl Observes) {
        if let Some(g) = self.groups.get_mut(name) {
            for id in ids {
                if let Some(v) = g.pel.get_mut(id) {
                    remove_dots(v, ctx, |_| true);
                    if v.is_empty() {
                        g.pel.remove(id);
                    }
                }
            }
        }
        self.tidy_group(name);
    }

    /// DEL, expiry, or a write of another type over the key: removes every
    /// observed element for which `pred` holds of its tag.
    pub fn remove_observed(&mut self, ctx: &impl Observes, pred: impl Fn(&Tag) -> bool + Copy) {
        let gone = self
            .entries
            .retain_upto(StreamId::MAX, |t| ctx.observed(t.dot) && pred(&t));
        for id in gone {
            self.layout.remove(id);
        }
        remove_dots(&mut self.last.0, ctx, pred);
        remove_dots(&mut self.deleted.0, ctx, pred);
        remove_dots(&mut self.added.base, ctx, pred);
        remove_dots(&mut self.added.counts, ctx, pred);
        remove_dots(&mut self.made, ctx, pred);
        for g in self.groups.values_mut() {
            g.remove_observed(ctx, pred);
        }
        self.groups.retain(|_, g| !g.is_empty());
    }

    /// State merge (see the module docs). Versions of one entry ID that
    /// meet here for the first time are reported.
    pub fn join(
        &mut self,
        key: &[u8],
        ctx: &VersionVector,
        other: &StreamVal,
        other_ctx: &VersionVector,
        conflicts: &mut Vec<Conflict>,
    ) {
        let mut entries = self.entries.to_map();
        let other_entries = other.entries.to_map();
        let before: Vec<StreamId> = entries.keys().copied().collect();
        let empty: Dots<Version> = SmallVec::new();
        let mut ids = before.clone();
        ids.extend(other_entries.keys().copied());
        ids.sort();
        ids.dedup();
        for id in ids {
            let theirs = other_entries.get(&id).unwrap_or(&empty);
            let slot = entries.entry(id).or_default();
            let mine_tags: Vec<Tag> = slot.iter().map(|v| v.tag).collect();
            join_dots(slot, ctx, theirs, other_ctx);
            if slot.len() > 1 {
                let top = slot.last().expect("more than one");
                for v in &slot[..slot.len() - 1] {
                    // Concurrent versions, one from each side, that did not
                    // meet before.
                    let pair_new = mine_tags.contains(&top.tag) != mine_tags.contains(&v.tag);
                    if pair_new {
                        conflicts.push(Conflict::stream_entry(key, id, top, v));
                    }
                }
            }
            if slot.is_empty() {
                entries.remove(&id);
            }
        }
        self.entries = Entries::from_sorted(entries.iter().map(|(id, v)| (*id, v)));
        join_dots(&mut self.last.0, ctx, &other.last.0, other_ctx);
        join_dots(&mut self.deleted.0, ctx, &other.deleted.0, other_ctx);
        join_dots(&mut self.added.base, ctx, &other.added.base, other_ctx);
        join_dots(&mut self.added.counts, ctx, &other.added.counts, other_ctx);
        join_dots(&mut self.made, ctx, &other.made, other_ctx);
        let mut names: Vec<Blob> = self.groups.keys().cloned().collect();
        names.extend(other.groups.keys().cloned());
        names.sort();
        names.dedup();
        let none = Group::default();
        for name in names {
            let theirs = other.groups.get(&name).unwrap_or(&none);
            self.group_mut(&name).join(ctx, theirs, other_ctx);
            self.tidy_group(&name);
        }
        // The layout follows the entries that came and went.
        let before: std::collections::BTreeSet<StreamId> = before.into_iter().collect();
        for id in &before {
            if !entries.contains_key(id) {
                self.layout.remove(*id);
            }
        }
        for (id, v) in &entries {
            if !before.contains(id) {
                if let Some(v) = v.last() {
                    self.layout.insert(*id, v.fields.as_ref());
                }
            }
        }
        self.rebuild_origins();
    }

    fn rebuild_origins(&mut self) {
        self.origins.clear();
        for e in self.entries.iter() {
            for v in &e.versions {
                let top = self.origins.entry(v.tag.dot.region()).or_default();
                *top = (*top).max(e.id);
            }
        }
    }

    fn rebuild_layout(&mut self) {
        let mut layout = std::mem::take(&mut self.layout);
        layout.rebuild(
            self.entries
                .iter()
                .filter_map(|e| e.shown().map(|v| (e.id, v.fields))),
        );
        self.layout = layout;
    }
}

#[cfg(test)]
mod tests {
    use super::layout::{entry_bytes, lp_str_bytes};
    use super::*;
    use crate::hlc::Hlc;
    use crate::region::RegionId;
    use crate::vv::Dot;

    fn tag(region: &str, seq: u64) -> Tag {
        Tag {
            hlc: Hlc::new(seq, 0),
            dot: Dot::new(RegionId::new(region).unwrap(), seq),
        }
    }

    fn fields(v: &[&str]) -> Vec<Blob> {
        v.iter().map(|s| Blob::from(*s)).collect()
    }

    fn packed(v: &[&str]) -> Fields {
        Fields::new(v.iter().map(|s| s.as_bytes()))
    }

    /// Applies `f` as op `seq` of region `region`, which observed `seen`.
    fn op(region: &str, seq: u64, seen: &VersionVector, f: impl FnOnce(&OpCtx<'_>)) {
        f(&OpCtx {
            tag: tag(region, seq),
            vv: seen,
        });
    }

    fn add(s: &mut StreamVal, region: &str, seq: u64, id: StreamId) {
        let seen = VersionVector::new();
        op(region, seq, &seen, |c| {
            s.add(b"k", id, &fields(&["f", "v"]), seq, c, &mut Vec::new())
        });
    }

    /// Two regions add the same explicit ID at once: both versions stay,
    /// readers see the later one, the other is reported; an XDEL that
    /// observed only the shown one leaves the other, since a removal takes
    /// only what it observed.
    #[test]
    fn one_id_added_in_two_regions_keeps_both_and_reports_the_loser() {
        let id = StreamId::new(5, 0);
        let none = VersionVector::new();
        let add = |s: &mut StreamVal, region: &str, seq: u64, v: &str| {
            let mut found = Vec::new();
            op(region, seq, &none, |c| {
                s.add(b"k", id, &fields(&["f", v]), 1, c, &mut found)
            });
            found
        };
        let mut here = StreamVal::default();
        assert!(add(&mut here, "ca", 1, "a").is_empty());
        let found = add(&mut here, "cb", 2, "b");
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].loser_value[..], b"f a");
        assert_eq!(here.get(id), Some(packed(&["f", "b"]).as_ref()));
        assert_eq!(here.len(), 1);
        // The other order gives the same state and the same report.
        let mut there = StreamVal::default();
        assert!(add(&mut there, "cb", 2, "b").is_empty());
        assert_eq!(add(&mut there, "ca", 1, "a").len(), 1);
        assert_eq!(here, there);
        // An XDEL by a region that saw only "cb"'s add.
        let mut seen = VersionVector::new();
        seen.set(RegionId::new("cb").unwrap(), 2);
        op("cc", 1, &seen, |c| here.delete(&[id], id, c));
        assert_eq!(here.get(id), Some(packed(&["f", "a"]).as_ref()));
    }

    /// Concurrent adds count up; a reset (XSETID ENTRIESADDED, or DEL)
    /// drops only the counts it observed, so a new stream counts from 0
    /// while an add it did not observe still counts.
    #[test]
    fn entries_added_sum_across_regions_and_resets_drop_what_they_saw() {
        let mut s = StreamVal::default();
        add(&mut s, "ea", 1, StreamId::new(1, 0));
        add(&mut s, "eb", 1, StreamId::new(2, 0));
        assert_eq!(s.entries_added(), 2);
        let ea = RegionId::new("ea").unwrap();
        assert_eq!(s.next_added(ea), 2);
        let mut seen = VersionVector::new();
        seen.set(ea, 1);
        op("ec", 1, &seen, |c| {
            s.set_id(StreamId::new(9, 0), Some(10), None, c)
        });
        // ea's add was reset into the 10; eb's was not observed.
        assert_eq!(s.entries_added(), 11);
        assert_eq!(s.last_id(), StreamId::new(9, 0));
        seen.set(RegionId::new("ec").unwrap(), 1);
        op("ec", 2, &seen, |c| s.remove_observed(c, |_| true));
        assert_eq!(s.entries_added(), 1);
        assert_eq!(s.len(), 1);
    }

    /// A group read in one region does not make another region's entry
    /// with a lower ID, added concurrently, count as delivered: each
    /// region's entries have their own floor.
    #[test]
    fn a_group_read_elsewhere_does_not_skip_a_concurrent_lower_entry() {
        let (ra, rb) = (RegionId::new("ga").unwrap(), RegionId::new("gb").unwrap());
        let mut s = StreamVal::default();
        // gb adds 99-2 while ga adds 100-1, creates the group and reads.
        add(&mut s, "gb", 1, StreamId::new(99, 2));
        let mut ga_seen = VersionVector::new();
        add(&mut s, "ga", 1, StreamId::new(100, 1));
        ga_seen.set(ra, 1);
        op("ga", 2, &ga_seen, |c| {
            s.create_group(b"g", StreamId::ZERO, None, c)
        });
        ga_seen.set(ra, 2);
        // As ga saw it (without gb's entry) only 100-1 was new.
        let delivery = Delivery {
            consumer: Some(Blob::from("c")),
            now_ms: 1,
            cursors: vec![(ra, StreamId::new(100, 1))],
            raise: None,
            read: Some(1),
            pel: vec![(StreamId::new(100, 1), 1, 1)],
            dropped: Vec::new(),
        };
        op("ga", 3, &ga_seen, |c| s.deliver(b"g", &delivery, c));
        let g = s.group(b"g").unwrap();
        assert_eq!(g.last_delivered().0, StreamId::new(100, 1));
        let left: Vec<StreamId> = s.undelivered(g).map(|e| e.0).collect();
        assert_eq!(left, vec![StreamId::new(99, 2)]);
        assert_eq!(g.floor(rb), StreamId::ZERO);
    }

    /// Nodes fill to `stream-node-max-entries`, counting deleted entries,
    /// and a node whose last live entry goes is dropped, as in Redis.
    #[test]
    fn nodes_split_by_entries_and_go_when_emptied() {
        let mut s = StreamVal::default();
        s.set_node_limits(NodeLimits {
            entries: 2,
            bytes: 4096,
        });
        for i in 1..=5 {
            add(&mut s, "sa", i, StreamId::new(i, 0));
        }
        assert_eq!(s.nodes().count(), 3);
        let mut seen = VersionVector::new();
        seen.set(RegionId::new("sa").unwrap(), 5);
        // Deleting one of a full node's two entries keeps the node.
        op("sb", 1, &seen, |c| {
            s.delete(&[StreamId::new(1, 0)], StreamId::new(1, 0), c)
        });
        assert_eq!(s.nodes().count(), 3);
        op("sb", 2, &seen, |c| {
            s.delete(&[StreamId::new(2, 0)], StreamId::new(2, 0), c)
        });
        assert_eq!(s.nodes().count(), 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.max_deleted(), StreamId::new(2, 0));
    }

    /// Node bytes follow listpack encodings: an entry with the master's
    /// fields stores only its values.
    #[test]
    fn listpack_sizes_follow_redis_encodings() {
        assert_eq!(lp_str_bytes(b"0"), 2);
        assert_eq!(lp_str_bytes(b"127"), 2);
        assert_eq!(lp_str_bytes(b"128"), 3);
        assert_eq!(lp_str_bytes(b"-1"), 3);
        assert_eq!(lp_str_bytes(b"01"), 4);
        assert_eq!(lp_str_bytes(b"item"), 6);
        assert_eq!(lp_str_bytes(&[b'x'; 64]), 66 + 1);
        assert!(
            entry_bytes(
                StreamId::ZERO,
                StreamId::new(0, 1),
                &packed(&["a", "b"]).as_ref(),
                true
            ) < entry_bytes(
                StreamId::ZERO,
                StreamId::new(0, 1),
                &packed(&["a", "b"]).as_ref(),
                false
            )
        );
    }

    /// Redis's radix tree node count for a few node keys.
    #[test]
    fn radix_nodes_count_a_compressed_trie() {
        let mut s = StreamVal::default();
        assert_eq!(s.radix_nodes(), 1);
        add(&mut s, "sr", 1, StreamId::new(1, 0));
        assert_eq!(s.radix_nodes(), 2);
    }

    /// Concurrent raises take the largest ID, a set the last writer's.
    #[test]
    fn marks_raise_to_the_largest_and_sets_are_last_writer_wins() {
        let mut m = Marks::default();
        let none = VersionVector::new();
        m.write(
            Mark {
                id: StreamId::new(5, 0),
                tag: tag("ma", 1),
                set: false,
                read: None,
                origin: None,
            },
            &none,
        );
        m.write(
            Mark {
                id: StreamId::new(3, 0),
                tag: tag("mb", 1),
                set: false,
                read: None,
                origin: None,
            },
            &none,
        );
        assert_eq!(m.value(), StreamId::new(5, 0));
        m.write(
            Mark {
                id: StreamId::new(9, 0),
                tag: tag("mc", 2),
                set: true,
                read: None,
                origin: None,
            },
            &none,
        );
        m.write(
            Mark {
                id: StreamId::new(7, 0),
                tag: tag("md", 3),
                set: true,
                read: None,
                origin: None,
            },
            &none,
        );
        // The later set (7) wins over the earlier one (9); no raise is above.
        assert_eq!(m.value(), StreamId::new(7, 0));
    }
}
