//! The collections inside values: [`Elems`], a map of elements that each
//! keep the tags or counter contributions that made them, and the element
//! types of hashes (counting registers), sets ([`Presence`]) and sorted sets
//! ([`ZMember`]). Their joins are causal: an element one side lacks is
//! kept unless the other side's context covers it (it was removed there).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::num::{Displaced, NumReg, Observes};
use crate::value::Map;
use crate::vv::{Tag, VersionVector};

/// An element of a collection: live elements are visible, empty ones can be
/// forgotten, and the rest (counter offsets of a removed field) are kept out
/// of sight so a late increment is measured correctly.
pub trait Element: Default + Clone {
    fn is_live(&self) -> bool;
    fn is_empty(&self) -> bool;
    /// Causal join; `None` context means "absent on the other side".
    fn join_with(
        &mut self,
        ctx: &VersionVector,
        other: &Self,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<Blob>>;
}

impl Element for NumReg<Blob> {
    fn is_live(&self) -> bool {
        NumReg::is_live(self)
    }
    fn is_empty(&self) -> bool {
        NumReg::is_empty(self)
    }
    fn join_with(
        &mut self,
        ctx: &VersionVector,
        other: &Self,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<Blob>> {
        self.join(ctx, other, other_ctx)
    }
}

/// Live elements and removed-but-remembered ones, each with stable insertion
/// order so SCAN cursors can walk them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Elems<V> {
    pub live: Map<V>,
    pub graves: Map<V>,
}

impl<V: PartialEq> PartialEq for Elems<V> {
    fn eq(&self, other: &Self) -> bool {
        self.live == other.live && self.graves == other.graves
    }
}

impl<V: Element> Elems<V> {
    pub fn get(&self, k: &[u8]) -> Option<&V> {
        self.live.get(k)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.graves.is_empty()
    }

    /// Runs `f` on element `k` (creating it if absent) and files the result
    /// under live, graves, or nowhere. A live element that stays live is
    /// changed in place, so SCAN never loses it.
    pub fn update<R>(&mut self, k: &[u8], f: impl FnOnce(&mut V) -> R) -> R {
        if let Some(v) = self.live.get_mut(k) {
            let r = f(v);
            if !v.is_live() {
                if let Some((key, v)) = self.live.swap_remove_entry(k) {
                    if !v.is_empty() {
                        self.graves.insert(key, v);
                    }
                }
            }
            return r;
        }
        let (key, mut v) = self
            .graves
            .swap_remove_entry(k)
            .unwrap_or_else(|| (Blob::from(k), V::default()));
        let r = f(&mut v);
        if v.is_live() {
            self.live.insert(key, v);
        } else if !v.is_empty() {
            self.graves.insert(key, v);
        }
        r
    }

    pub fn keys(&self) -> Vec<Blob> {
        self.live
            .keys()
            .chain(self.graves.keys())
            .cloned()
            .collect()
    }

    pub(crate) fn join(
        &mut self,
        ctx: &VersionVector,
        other: &Elems<V>,
        other_ctx: &VersionVector,
    ) -> Vec<(Blob, Displaced<Blob>)> {
        let mut displaced = Vec::new();
        let mut keys = self.keys();
        keys.extend(other.keys());
        keys.sort();
        keys.dedup();
        let empty = V::default();
        for k in keys {
            let theirs = other
                .live
                .get(&k[..])
                .or_else(|| other.graves.get(&k[..]))
                .unwrap_or(&empty);
            for d in self.update(&k, |mine| mine.join_with(ctx, theirs, other_ctx)) {
                displaced.push((k.clone(), d));
            }
        }
        displaced
    }
}

/// The tags of the concurrent adds that keep a set member present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Presence(pub SmallVec<[Tag; 1]>);

impl Presence {
    /// An add replaces the adds it observed.
    pub fn add(&mut self, tag: Tag, ctx: &impl Observes) {
        self.0.retain(|t| !ctx.observed(t.dot) || *t == tag);
        if !self.0.contains(&tag) {
            self.0.push(tag);
            self.0.sort();
        }
    }

    pub fn remove_if(&mut self, ctx: &impl Observes, pred: impl Fn(&Tag) -> bool) {
        self.0.retain(|t| !(ctx.observed(t.dot) && pred(t)));
    }

    pub(crate) fn join(
        &mut self,
        ctx: &VersionVector,
        other: &Presence,
        other_ctx: &VersionVector,
    ) {
        let mut out: SmallVec<[Tag; 1]> = self
            .0
            .iter()
            .filter(|t| other.0.contains(t) || !other_ctx.covers(t.dot))
            .copied()
            .collect();
        for t in &other.0 {
            if !out.contains(t) && !ctx.covers(t.dot) {
                out.push(*t);
            }
        }
        out.sort();
        self.0 = out;
    }

    pub(crate) fn stamp(&self) -> Option<Tag> {
        self.0.iter().max().copied()
    }
}

impl Element for Presence {
    fn is_live(&self) -> bool {
        !self.0.is_empty()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn join_with(
        &mut self,
        ctx: &VersionVector,
        other: &Self,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<Blob>> {
        self.join(ctx, other, other_ctx);
        Vec::new()
    }
}

/// A sorted-set member: present while it has adds; its score is a counting
/// register (ZADD sets the base, ZINCRBY contributions are summed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZMember {
    pub adds: Presence,
    pub score: NumReg<f64>,
}

impl ZMember {
    pub fn score(&self) -> f64 {
        let u = self.score.unobserved();
        let base = self.score.visible().map_or(0.0, |b| b.val);
        let s = base + u.int as f64 + u.float;
        // NaN (inf + -inf from concurrent increments) and -0.0 both show as 0.
        if s.is_nan() || s == 0.0 {
            0.0
        } else {
            s
        }
    }
}

impl Element for ZMember {
    fn is_live(&self) -> bool {
        self.adds.is_live()
    }
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.score.is_empty()
    }
    fn join_with(
        &mut self,
        ctx: &VersionVector,
        other: &Self,
        other_ctx: &VersionVector,
    ) -> Vec<Displaced<Blob>> {
        self.adds.join(ctx, &other.adds, other_ctx);
        self.score
            .join(ctx, &other.score, other_ctx)
            .into_iter()
            .map(|d| d.map(|score| Blob::from(format!("{score}").as_str())))
            .collect()
    }
}

/// `f64` ordered the way Redis orders scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score(pub f64);

impl Eq for Score {}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Elems<ZMember>", into = "Elems<ZMember>")]
pub struct ZSetVal {
    pub members: Elems<ZMember>,
    /// Live members ordered by (score, member): derived, rebuilt on load.
    pub index: BTreeSet<(Score, Blob)>,
}

impl PartialEq for ZSetVal {
    fn eq(&self, other: &Self) -> bool {
        self.members == other.members
    }
}

impl From<Elems<ZMember>> for ZSetVal {
    fn from(members: Elems<ZMember>) -> Self {
        let index = members
            .live
            .iter()
            .map(|(k, m)| (Score(m.score()), k.clone()))
            .collect();
        ZSetVal { members, index }
    }
}

impl From<ZSetVal> for Elems<ZMember> {
    fn from(z: ZSetVal) -> Self {
        z.members
    }
}

impl ZSetVal {
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.members.get(member).map(|m| m.score())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Updates one member and keeps the score index in step.
    pub fn update<R>(&mut self, member: &[u8], f: impl FnOnce(&mut ZMember) -> R) -> R {
        if let Some(m) = self.members.get(member) {
            self.index.remove(&(Score(m.score()), Blob::from(member)));
        }
        let r = self.members.update(member, f);
        if let Some(m) = self.members.get(member) {
            self.index.insert((Score(m.score()), Blob::from(member)));
        }
        r
    }

    pub(crate) fn stamp(&self) -> Option<Tag> {
        self.members
            .live
            .values()
            .filter_map(|m| m.adds.stamp())
            .max()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HashVal {
    pub fields: Elems<NumReg<Blob>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetVal {
    pub members: Elems<Presence>,
}
