//! Stream writes: each reads the stream as this region holds it now to
//! decide what the effect carries (the ID an XADD takes, the count of
//! entries this region added, the entries a trim removes, the largest
//! deleted ID), then records one effect (see `meridian_crdt::stream`).
//! Argument checks and Redis's replies are the command's.

use meridian_crdt::{Blob, Delivery, EffectKind, Kind, NodeLimits, StreamId, StreamVal, Value};

use super::{Db, WrongType};

/// Bits of an auto-generated sequence number that carry the writing
/// region's slot once the cluster has more than one member.
pub const SLOT_BITS: u32 = 10;

/// Regions a cluster can hold while auto-generated IDs stay unique.
pub const SLOTS_MAX: u64 = (1 << SLOT_BITS) - 1;

/// How a trim picks what to remove (XTRIM, XADD's MAXLEN/MINID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimTo {
    /// Keep at most this many entries.
    MaxLen(u64),
    /// Keep no entry below this ID.
    MinId(StreamId),
}

/// A trim as Redis runs it: `approx` removes whole nodes only; `limit`
/// (0: none) bounds how many entries it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    pub to: TrimTo,
    pub approx: bool,
    pub limit: u64,
}

/// The smallest sequence number above `after` (or from 0, `None`) that
/// carries `slot` in its low bits; `None` when none fits in 64 bits.
fn slotted_seq(after: Option<u64>, slot: u64) -> Option<u64> {
    let Some(after) = after else {
        return Some(slot);
    };
    let step = 1u64 << SLOT_BITS;
    let k = if after < slot {
        return Some(slot);
    } else {
        (after - slot) / step + 1
    };
    k.checked_mul(step)?.checked_add(slot)
}

/// The ID XADD `*` takes after `last` at `now_ms`: Redis's rule (the time,
/// or the last ID's time with the next sequence number) when this region
/// is alone (`slot` `None`); with peers the sequence number carries the
/// region's slot in its low [`SLOT_BITS`] bits, so two regions adding in
/// the same millisecond never take the same ID. `None`: no ID is left.
pub fn auto_id(last: StreamId, now_ms: u64, slot: Option<u64>) -> Option<StreamId> {
    if now_ms > last.ms {
        return Some(StreamId::new(now_ms, slot.unwrap_or(0)));
    }
    match slot {
        None => last.next(),
        Some(slot) => match slotted_seq(Some(last.seq), slot) {
            Some(seq) => Some(StreamId::new(last.ms, seq)),
            None => last.ms.checked_add(1).map(|ms| StreamId::new(ms, slot)),
        },
    }
}

/// The ID XADD `ms-*` takes after `last`: the next sequence number in
/// `last`'s millisecond (with the region's slot as for [`auto_id`]), else
/// the first of `ms`. `None` when the sequence numbers of `ms` ran out.
pub fn auto_seq(last: StreamId, ms: u64, slot: Option<u64>) -> Option<StreamId> {
    let after = (last.ms == ms).then_some(last.seq);
    let seq = match slot {
        None => match after {
            Some(s) => s.checked_add(1)?,
            None => 0,
        },
        Some(slot) => slotted_seq(after, slot)?,
    };
    Some(StreamId::new(ms, seq))
}

impl Db {
    /// The visible stream at `key` (expiring it first if due); `Ok(None)`
    /// when the key is absent.
    pub fn stream(&mut self, key: &[u8]) -> Result<Option<&StreamVal>, WrongType> {
        match self.get_typed(key, Kind::Stream)? {
            Some(e) => match e.value() {
                Value::Stream(s) => Ok(Some(s)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// The stream value the next stream effect on `key` applies to.
    fn stream_for_write(&self, key: &[u8]) -> Option<&StreamVal> {
        match self.keys.get_any(key)?.typed(Kind::Stream)? {
            Value::Stream(s) => Some(s),
            _ => None,
        }
    }

    /// XADD of the entry `id` (the caller checked that it is above the
    /// last ID); `limits` are the node limits in force here.
    pub fn xadd(&mut self, key: &[u8], id: StreamId, fields: Vec<Blob>, limits: NodeLimits) {
        self.keys.with_stream(key, |s| s.set_node_limits(limits));
        let added = self
            .stream_for_write(key)
            .map_or(1, |s| s.next_added(self.region));
        self.effect(key, EffectKind::XAdd { id, fields, added });
    }

    /// Trims the stream as Redis's `streamTrim` would, node by node;
    /// returns how many entries it removed.
    pub fn xtrim(&mut self, key: &[u8], trim: Trim) -> u64 {
        let Some(s) = self.stream_for_write(key) else {
            return 0;
        };
        let (removed, upto) = trim_plan(s, trim);
        if let Some(upto) = upto {
            self.effect(key, EffectKind::XTrim { upto });
        }
        removed
    }

    /// XDEL: removes the entries among `ids` that exist; returns how many.
    pub fn xdel(&mut self, key: &[u8], ids: &[StreamId]) -> usize {
        let Some(s) = self.stream_for_write(key) else {
            return 0;
        };
        let mut gone: Vec<StreamId> = ids
            .iter()
            .copied()
            .filter(|id| s.get(*id).is_some())
            .collect();
        gone.sort();
        gone.dedup();
        let Some(&top) = gone.last() else {
            return 0;
        };
        let max_deleted = s.max_deleted().max(top);
        let n = gone.len();
        self.effect(
            key,
            EffectKind::XDel {
                ids: gone,
                max_deleted,
            },
        );
        n
    }

    /// XSETID.
    pub fn xsetid(
        &mut self,
        key: &[u8],
        last: StreamId,
        added: Option<u64>,
        max_deleted: Option<StreamId>,
    ) {
        self.effect(
            key,
            EffectKind::XSetId {
                last,
                added,
                max_deleted,
            },
        );
    }

    /// XGROUP CREATE (MKSTREAM included: the effect creates the stream).
    pub fn xgroup_create(&mut self, key: &[u8], group: &[u8], last: StreamId, read: Option<u64>) {
        self.effect(
            key,
            EffectKind::XGroupCreate {
                group: Blob::from(group),
                last,
                read,
            },
        );
    }

    /// XGROUP SETID.
    pub fn xgroup_setid(&mut self, key: &[u8], group: &[u8], last: StreamId, read: Option<u64>) {
        self.effect(
            key,
            EffectKind::XGroupSetId {
                group: Blob::from(group),
                last,
                read,
            },
        );
    }

    /// XGROUP DESTROY.
    pub fn xgroup_destroy(&mut self, key: &[u8], group: &[u8]) {
        self.effect(
            key,
            EffectKind::XGroupDestroy {
                group: Blob::from(group),
            },
        );
    }

    /// XGROUP CREATECONSUMER, the consumer seen at `now_ms`.
    pub fn xgroup_createconsumer(
        &mut self,
        key: &[u8],
        group: &[u8],
        consumer: &[u8],
        now_ms: u64,
    ) {
        self.effect(
            key,
            EffectKind::XConsumerCreate {
                group: Blob::from(group),
                consumer: Blob::from(consumer),
                now_ms,
            },
        );
    }

    /// XGROUP DELCONSUMER.
    pub fn xgroup_delconsumer(&mut self, key: &[u8], group: &[u8], consumer: &[u8]) {
        self.effect(
            key,
            EffectKind::XConsumerDel {
                group: Blob::from(group),
                consumer: Blob::from(consumer),
            },
        );
    }

    /// XREADGROUP, XCLAIM, XAUTOCLAIM: what they delivered, claimed or
    /// dropped, as the command decided it from the group as held here.
    pub fn xdeliver(&mut self, key: &[u8], group: &[u8], delivery: Delivery) {
        self.effect(
            key,
            EffectKind::XDeliver {
                group: Blob::from(group),
                delivery,
            },
        );
    }

    /// XACK of the pending entries among `ids`; returns how many there were.
    pub fn xack(&mut self, key: &[u8], group: &[u8], ids: &[StreamId]) -> usize {
        let Some(g) = self.stream_for_write(key).and_then(|s| s.group(group)) else {
            return 0;
        };
        let mut acked: Vec<StreamId> = ids
            .iter()
            .copied()
            .filter(|id| g.pending_entry(*id).is_some())
            .collect();
        acked.sort();
        acked.dedup();
        let n = acked.len();
        if n > 0 {
            self.effect(
                key,
                EffectKind::XAck {
                    group: Blob::from(group),
                    ids: acked,
                },
            );
        }
        n
    }
}

/// What Redis's `streamTrim` removes from `s`: how many entries, and the
/// largest ID among them (a trim always removes a prefix).
fn trim_plan(s: &StreamVal, trim: Trim) -> (u64, Option<StreamId>) {
    let mut len = s.len() as u64;
    let mut removed = 0u64;
    let mut upto = None;
    let nodes: Vec<(StreamId, u64, StreamId)> =
        s.nodes().map(|(k, n)| (k, n.live, n.last)).collect();
    for (i, &(first, live, last)) in nodes.iter().enumerate() {
        if let TrimTo::MaxLen(max) = trim.to {
            if len <= max {
                break;
            }
        }
        if trim.limit > 0 && removed + live > trim.limit {
            break;
        }
        let end = nodes.get(i + 1).map(|n| n.0);
        let in_node = |s: &StreamVal| -> Vec<StreamId> {
            let hi = end.and_then(StreamId::prev).unwrap_or(StreamId::MAX);
            s.range(first, hi).map(|(id, _)| id).collect()
        };
        let whole = match trim.to {
            TrimTo::MaxLen(max) => len - live >= max,
            TrimTo::MinId(min) => last < min,
        };
        if whole {
            len -= live;
            removed += live;
            if let Some(top) = in_node(s).last() {
                upto = Some(*top);
            }
            continue;
        }
        if trim.approx {
            break;
        }
        for id in in_node(s) {
            let stop = match trim.to {
                TrimTo::MaxLen(max) => len <= max,
                TrimTo::MinId(min) => id >= min,
            };
            if stop {
                break;
            }
            len -= 1;
            removed += 1;
            upto = Some(id);
        }
        break;
    }
    (removed, upto)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alone, IDs follow Redis exactly; with peers, the slot sits in the
    /// low bits of every auto-generated sequence number.
    #[test]
    fn auto_ids_carry_the_slot_only_with_peers() {
        let last = StreamId::new(100, 5);
        assert_eq!(auto_id(last, 99, None), Some(StreamId::new(100, 6)));
        assert_eq!(auto_id(last, 101, None), Some(StreamId::new(101, 0)));
        assert_eq!(
            auto_id(last, 99, Some(3)),
            Some(StreamId::new(100, 1024 + 3))
        );
        assert_eq!(
            auto_id(StreamId::new(100, 2), 99, Some(3)),
            Some(StreamId::new(100, 3))
        );
        assert_eq!(
            auto_id(StreamId::new(100, 3), 99, Some(3)),
            Some(StreamId::new(100, 1027))
        );
        assert_eq!(auto_id(last, 101, Some(3)), Some(StreamId::new(101, 3)));
        assert_eq!(auto_id(StreamId::MAX, 5, None), None);
        assert_eq!(
            auto_id(StreamId::new(7, u64::MAX), 5, Some(2)),
            Some(StreamId::new(8, 2))
        );
        assert_eq!(auto_seq(last, 100, None), Some(StreamId::new(100, 6)));
        assert_eq!(auto_seq(last, 200, None), Some(StreamId::new(200, 0)));
        assert_eq!(auto_seq(last, 100, Some(1)), Some(StreamId::new(100, 1025)));
        assert_eq!(auto_seq(StreamId::new(1, u64::MAX), 1, None), None);
        for slot in 1..=3 {
            let id = auto_id(StreamId::new(50, 4000), 10, Some(slot)).unwrap();
            assert_eq!(id.seq & SLOTS_MAX, slot);
            assert!(id > StreamId::new(50, 4000));
        }
    }
}
