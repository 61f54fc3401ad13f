//! Consumer groups: a group's presence, its last delivered ID, its
//! pending entries and its consumers, each a dot set (see [`super::dots`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dots::{join_dots, join_map, remove_dots, write_dot, Dots, Marks, Tagged};
use super::StreamId;
use crate::blob::Blob;
use crate::num::Observes;
use crate::region::RegionId;
use crate::vv::{Tag, VersionVector};

/// One delivery or claim of a pending entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    pub tag: Tag,
    pub consumer: Blob,
    pub delivered_ms: u64,
    pub count: u64,
}

impl Tagged for Nack {
    fn tag(&self) -> Tag {
        self.tag
    }
}

/// A consumer was created or seen at `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub tag: Tag,
    pub ms: u64,
}

impl Tagged for Seen {
    fn tag(&self) -> Tag {
        self.tag
    }
}

/// A consumer group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub(super) adds: Dots<Tag>,
    pub(super) last: Marks,
    pub(super) pel: BTreeMap<StreamId, Dots<Nack>>,
    pub(super) consumers: BTreeMap<Blob, Dots<Seen>>,
}

impl Group {
    /// Created and not destroyed (by a destroy that observed every create).
    pub fn exists(&self) -> bool {
        !self.adds.is_empty()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.adds.is_empty()
            && self.last.is_empty()
            && self.pel.is_empty()
            && self.consumers.is_empty()
    }

    /// The last delivered ID and the group's `entries_read` (`None`:
    /// unknown, Redis's -1).
    pub fn last_delivered(&self) -> (StreamId, Option<u64>) {
        match self.last.top() {
            Some(m) => (m.id, m.read),
            None => (StreamId::ZERO, None),
        }
    }

    /// How far the group delivered the entries `origin` added: XREADGROUP
    /// `>` serves an entry only above its origin's floor. A group read in
    /// one region moves the floors of the regions whose entries it served,
    /// so an entry another region added concurrently with a lower ID than
    /// those is still served when it arrives; one largest ID for every
    /// region would skip it.
    pub fn floor(&self, origin: RegionId) -> StreamId {
        self.last.floor(origin)
    }

    /// The pending entries in ID order, each with the delivery readers see.
    pub fn pending(&self) -> impl DoubleEndedIterator<Item = (StreamId, &Nack)> + '_ {
        self.pel
            .iter()
            .filter_map(|(id, v)| v.last().map(|n| (*id, n)))
    }

    /// The pending entries from `start` on, in ID order.
    pub fn pending_from(&self, start: StreamId) -> impl Iterator<Item = (StreamId, &Nack)> + '_ {
        self.pel
            .range(start..)
            .filter_map(|(id, v)| v.last().map(|n| (*id, n)))
    }

    pub fn pending_entry(&self, id: StreamId) -> Option<&Nack> {
        self.pel.get(&id).and_then(|v| v.last())
    }

    pub fn pending_len(&self) -> usize {
        self.pel.len()
    }

    /// The consumers in name order, each with when it was last seen.
    pub fn consumers(&self) -> impl Iterator<Item = (&Blob, u64)> + '_ {
        self.consumers
            .iter()
            .filter_map(|(name, seen)| seen.iter().map(|s| s.ms).max().map(|ms| (name, ms)))
    }

    pub fn consumer_seen(&self, name: &[u8]) -> Option<u64> {
        self.consumers
            .get(name)
            .and_then(|s| s.iter().map(|s| s.ms).max())
    }

    pub fn has_consumer(&self, name: &[u8]) -> bool {
        self.consumers.contains_key(name)
    }

    /// How many pending entries `consumer` owns.
    pub fn pending_of(&self, consumer: &[u8]) -> usize {
        self.pending()
            .filter(|(_, n)| n.consumer.as_bytes() == consumer)
            .count()
    }

    pub(super) fn touch(&mut self, tag: Tag, ctx: &impl Observes) {
        write_dot(&mut self.adds, tag, ctx);
    }

    pub(super) fn see(&mut self, consumer: &[u8], tag: Tag, ms: u64, ctx: &impl Observes) {
        let seen = self.consumers.entry(Blob::from(consumer)).or_default();
        write_dot(seen, Seen { tag, ms }, ctx);
    }

    pub(super) fn remove_observed(
        &mut self,
        ctx: &impl Observes,
        pred: impl Fn(&Tag) -> bool + Copy,
    ) {
        remove_dots(&mut self.adds, ctx, pred);
        remove_dots(&mut self.last.0, ctx, pred);
        for v in self.pel.values_mut() {
            remove_dots(v, ctx, pred);
        }
        self.pel.retain(|_, v| !v.is_empty());
        for v in self.consumers.values_mut() {
            remove_dots(v, ctx, pred);
        }
        self.consumers.retain(|_, v| !v.is_empty());
    }

    pub(super) fn join(&mut self, ctx: &VersionVector, other: &Group, other_ctx: &VersionVector) {
        join_dots(&mut self.adds, ctx, &other.adds, other_ctx);
        join_dots(&mut self.last.0, ctx, &other.last.0, other_ctx);
        join_map(&mut self.pel, ctx, &other.pel, other_ctx);
        join_map(&mut self.consumers, ctx, &other.consumers, other_ctx);
    }

    pub(super) fn for_each_tag(&self, f: &mut dyn FnMut(Tag)) {
        self.adds.iter().for_each(|t| f(*t));
        self.last.0.iter().for_each(|m| f(m.tag));
        self.pel.values().flatten().for_each(|n| f(n.tag));
        self.consumers.values().flatten().for_each(|s| f(s.tag));
    }
}

/// A group write: what one XREADGROUP, XCLAIM or XAUTOCLAIM did to a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The consumer served (created if new, its seen time raised).
    pub consumer: Option<Blob>,
    pub now_ms: u64,
    /// How far the group delivered each region's entries now, for the
    /// regions whose entries this delivered (see [`Group::floor`]).
    pub cursors: Vec<(RegionId, StreamId)>,
    /// The group's last delivered ID raised for every region's entries
    /// (XCLAIM's LASTID).
    pub raise: Option<StreamId>,
    /// The group's `entries_read` after this, kept with its cursors.
    pub read: Option<u64>,
    /// Pending entries now owned by `consumer`: (ID, delivery time, count).
    pub pel: Vec<(StreamId, u64, u64)>,
    /// Pending entries dropped because their entry no longer exists.
    pub dropped: Vec<StreamId>,
}
