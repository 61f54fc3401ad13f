//! The node layout Redis would give a stream: which entries share a
//! listpack, and how many bytes it takes. Local to a region (see the
//! module docs of [`super`]): only approximate trims and XINFO read it.

use std::collections::BTreeMap;

use super::{FieldsRef, StreamId};
use crate::blob::Blob;

/// How many entries (live and deleted) and bytes a node holds before
/// appends go to a new one: `stream-node-max-entries` and
/// `stream-node-max-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    pub entries: u64,
    pub bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> NodeLimits {
        NodeLimits {
            entries: 100,
            bytes: 4096,
        }
    }
}

/// Redis's largest listpack (`STREAM_LISTPACK_MAX_SIZE`, 1 GiB).
const LISTPACK_MAX_BYTES: u64 = 1 << 30;

/// One node as Redis would hold it: a listpack whose master entry is the
/// first entry appended to it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Live entries.
    pub live: u64,
    /// Entries flagged deleted, still taking their place.
    pub deleted: u64,
    /// The largest ID appended to it (deleted or not).
    pub last: StreamId,
    /// The listpack's bytes but for the live and deleted counts.
    body_bytes: u64,
    /// The master entry's field names.
    fields: Box<[Blob]>,
}

impl Node {
    fn bytes(&self) -> u64 {
        // Header (total bytes, element count), the two counts, end byte.
        6 + lp_int_bytes(self.live as i64) + lp_int_bytes(self.deleted as i64) + self.body_bytes + 1
    }
}

/// The node layout Redis would have (see the module docs).
#[derive(Debug, Clone, Default)]
pub(super) struct Layout {
    pub(super) nodes: BTreeMap<StreamId, Node>,
    pub(super) limits: NodeLimits,
}

/// Bytes a listpack element takes whose content is `s`.
pub(super) fn lp_str_bytes(s: &[u8]) -> u64 {
    let enc = match lp_int(s) {
        Some(v) => lp_int_enc(v),
        None => {
            let n = s.len() as u64;
            if n < 64 {
                1 + n
            } else if n < 4096 {
                2 + n
            } else {
                5 + n
            }
        }
    };
    enc + lp_backlen(enc)
}

/// Bytes a listpack element holding the integer `v` takes.
fn lp_int_bytes(v: i64) -> u64 {
    let enc = lp_int_enc(v);
    enc + lp_backlen(enc)
}

fn lp_int_enc(v: i64) -> u64 {
    match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32768..=32767 => 3,
        -8_388_608..=8_388_607 => 4,
        -2_147_483_648..=2_147_483_647 => 5,
        _ => 9,
    }
}

fn lp_backlen(len: u64) -> u64 {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// A listpack stores a string that reads as a 64-bit integer as one.
fn lp_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

impl Layout {
    /// Places a new entry as Redis appends it: into the last node unless
    /// that is full, else into a new one. An entry below the last node's
    /// first (one a peer added with an older explicit ID) joins the node
    /// whose range holds it.
    pub(super) fn insert(&mut self, id: StreamId, fields: FieldsRef<'_>) {
        let total: u64 = fields.iter().map(|f| f.len() as u64).sum();
        let tail = self.nodes.keys().next_back().copied();
        let at = self.nodes.range(..=id).next_back().map(|(k, _)| *k);
        let target = match (at, tail) {
            (None, _) => None,
            (Some(k), Some(t)) if k == t => {
                let node = &self.nodes[&k];
                let max_bytes = match self.limits.bytes {
                    0 => LISTPACK_MAX_BYTES,
                    b => b.min(LISTPACK_MAX_BYTES),
                };
                let full = node.bytes() + total >= max_bytes
                    || (self.limits.entries > 0 && node.live + node.deleted >= self.limits.entries);
                (!full).then_some(k)
            }
            (Some(k), _) => Some(k),
        };
        match target {
            Some(k) => {
                let node = self.nodes.get_mut(&k).expect("found above");
                let same = node.fields.len() * 2 == fields.len()
                    && node
                        .fields
                        .iter()
                        .zip(fields.names())
                        .all(|(a, b)| a.as_bytes() == b);
                node.body_bytes += entry_bytes(k, id, &fields, same);
                node.live += 1;
                node.last = node.last.max(id);
            }
            None => {
                let mut body = lp_int_bytes((fields.len() / 2) as i64);
                body += fields.names().map(lp_str_bytes).sum::<u64>();
                body += lp_int_bytes(0);
                body += entry_bytes(id, id, &fields, true);
                self.nodes.insert(
                    id,
                    Node {
                        live: 1,
                        deleted: 0,
                        last: id,
                        body_bytes: body,
                        fields: fields.names().map(Blob::from).collect(),
                    },
                );
            }
        }
    }

    /// An entry was removed: flagged deleted in its node, and the node goes
    /// once nothing live is left in it.
    pub(super) fn remove(&mut self, id: StreamId) {
        let Some((&k, node)) = self.nodes.range_mut(..=id).next_back() else {
            return;
        };
        node.live = node.live.saturating_sub(1);
        node.deleted += 1;
        if node.live == 0 {
            self.nodes.remove(&k);
        }
    }

    pub(super) fn rebuild<'a>(&mut self, entries: impl Iterator<Item = (StreamId, FieldsRef<'a>)>) {
        self.nodes.clear();
        for (id, fields) in entries {
            self.insert(id, fields);
        }
    }
}

/// Bytes one entry takes in a node whose master ID is `master`.
pub(super) fn entry_bytes(
    master: StreamId,
    id: StreamId,
    fields: &FieldsRef<'_>,
    same_fields: bool,
) -> u64 {
    let pairs = fields.len() / 2;
    let flags = if same_fields { 2 } else { 0 };
    let mut n = lp_int_bytes(flags);
    n += lp_int_bytes(id.ms.wrapping_sub(master.ms) as i64);
    n += lp_int_bytes(id.seq.wrapping_sub(master.seq) as i64);
    let mut count = pairs as i64 + 3;
    if same_fields {
        n += fields
            .iter()
            .skip(1)
            .step_by(2)
            .map(lp_str_bytes)
            .sum::<u64>();
    } else {
        n += lp_int_bytes(pairs as i64);
        n += fields.iter().map(lp_str_bytes).sum::<u64>();
        count += pairs as i64 + 1;
    }
    n + lp_int_bytes(count)
}
