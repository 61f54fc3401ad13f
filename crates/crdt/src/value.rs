//! The typed values a key holds, and how effects and merges change them.
//!
//! Every element (string base, hash field, set member, sorted-set member) keeps
//! the [`Tag`] of the write that made it. Removal is always *observed-remove*:
//! an effect removes an element only if the effect's context covers the
//! element's dot. Concurrent additions therefore survive removals (add wins),
//! and concurrent overwrites of one register resolve by the larger tag with the
//! loser reported as a [`Conflict`].
//!
//! A key normally holds one type. Two regions can concurrently give one key two
//! types (SET vs SADD); both values are then kept, side by side, and the key
//! shows the one with the newest write — a product of CRDTs, so it converges
//! whatever the order — while the hidden one is journaled.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::conflict::Conflict;
use crate::list::{Elem, ListVal, SetDisplaced};
use crate::num::{Contrib, Delta, Displaced, NumReg, Observes};
use crate::op::{obs_for, EffectKind, KeyObs, OpCtx, SubObs};
use crate::patch::StrReg;
use crate::stream::StreamVal;
use crate::vv::{Dot, Tag, VersionVector};

pub use crate::elems::{Element, Elems, HashVal, Presence, Score, SetVal, ZMember, ZSetVal};

pub type Hasher = foldhash::fast::RandomState;
pub type Map<V> = IndexMap<Blob, V, Hasher>;

/// The Redis type a value shows as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    String,
    Hash,
    Set,
    ZSet,
    List,
    Stream,
}

impl Kind {
    /// The name `TYPE` replies with.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
            Kind::Stream => "stream",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Str(StrReg),
    Hash(Box<HashVal>),
    Set(Box<SetVal>),
    ZSet(Box<ZSetVal>),
    List(Box<ListVal>),
    Stream(Box<StreamVal>),
}

impl Value {
    pub fn empty(kind: Kind) -> Value {
        match kind {
            Kind::String => Value::Str(StrReg::default()),
            Kind::Hash => Value::Hash(Box::default()),
            Kind::Set => Value::Set(Box::default()),
            Kind::ZSet => Value::ZSet(Box::default()),
            Kind::List => Value::List(Box::default()),
            Kind::Stream => Value::Stream(Box::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Value::Str(_) => Kind::String,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::List(_) => Kind::List,
            Value::Stream(_) => Kind::Stream,
        }
    }

    pub fn is_live(&self) -> bool {
        match self {
            Value::Str(r) => r.is_live(),
            Value::Hash(h) => !h.fields.live.is_empty(),
            Value::Set(s) => !s.members.live.is_empty(),
            Value::ZSet(z) => !z.members.live.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Stream(x) => x.is_live(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Str(r) => r.is_empty(),
            Value::Hash(h) => h.fields.is_empty(),
            Value::Set(s) => s.members.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Stream(x) => x.holds_nothing(),
        }
    }

    /// The newest write still visible in this value.
    fn stamp(&self) -> Option<Tag> {
        match self {
            Value::Str(r) => r.stamp(),
            Value::Hash(h) => h.fields.live.values().filter_map(|f| f.stamp()).max(),
            Value::Set(s) => s.members.live.values().filter_map(|p| p.stamp()).max(),
            Value::ZSet(z) => z.stamp(),
            Value::List(l) => l.stamp(),
            Value::Stream(x) => x.stamp(),
        }
    }

    /// Counter totals a key-wide delete made now would reset.
    pub fn observe(&self, into: &mut KeyObs) {
        match self {
            Value::Str(r) => {
                into.string = r.observation();
                into.fields.extend(
                    r.field_observation()
                        .into_iter()
                        .map(|(sub, totals)| SubObs { sub, totals }),
                );
            }
            Value::Hash(h) => {
                for (k, f) in h.fields.live.iter().chain(h.fields.graves.iter()) {
                    let totals = f.observation();
                    if !totals.is_empty() {
                        into.fields.push(SubObs {
                            sub: k.clone(),
                            totals,
                        });
                    }
                }
            }
            Value::Set(_) | Value::List(_) | Value::Stream(_) => {}
            Value::ZSet(z) => {
                for (k, m) in z.members.live.iter().chain(z.members.graves.iter()) {
                    let totals = m.score.observation();
                    if !totals.is_empty() {
                        into.members.push(SubObs {
                            sub: k.clone(),
                            totals,
                        });
                    }
                }
            }
        }
    }

    /// Settled counter incarnations held, in every field or member.
    fn settled_count(&self) -> usize {
        match self {
            Value::Str(r) => r.settled_count(),
            Value::Hash(h) => h
                .fields
                .live
                .values()
                .chain(h.fields.graves.values())
                .map(|f| f.settled_count())
                .sum(),
            Value::Set(_) | Value::List(_) | Value::Stream(_) => 0,
            Value::ZSet(z) => z
                .members
                .live
                .values()
                .chain(z.members.graves.values())
                .map(|m| m.score.settled_count())
                .sum(),
        }
    }

    /// Drops settled counter incarnations and the removed fields or members
    /// that held nothing else. Live elements stay where they are (a settled
    /// incarnation adds nothing to what readers see), so SCAN loses nothing.
    fn collect_settled(&mut self) -> usize {
        match self {
            Value::Str(r) => r.collect_settled(),
            Value::Hash(h) => {
                let mut n = 0;
                for f in h.fields.live.values_mut() {
                    n += f.collect_settled();
                }
                for f in h.fields.graves.values_mut() {
                    n += f.collect_settled();
                }
                h.fields.graves.retain(|_, f| !f.is_empty());
                n
            }
            Value::Set(_) | Value::List(_) | Value::Stream(_) => 0,
            Value::ZSet(z) => {
                let mut n = 0;
                for m in z.members.live.values_mut() {
                    n += m.score.collect_settled();
                }
                for m in z.members.graves.values_mut() {
                    n += m.score.collect_settled();
                }
                z.members.graves.retain(|_, m| !m.is_empty());
                n
            }
        }
    }

    /// Removes every observed element for which `pred` holds.
    fn remove_observed(
        &mut self,
        obs: &KeyObs,
        ctx: &impl Observes,
        pred: impl Fn(&Tag) -> bool + Copy,
    ) {
        match self {
            Value::Str(r) => r.remove_if(&obs.string, &field_obs(obs), ctx, pred),
            Value::Hash(h) => {
                for k in h.fields.keys() {
                    h.fields
                        .update(&k, |f| f.remove_if(obs_for(&obs.fields, &k), ctx, pred));
                }
            }
            Value::Set(s) => {
                for k in s.members.keys() {
                    s.members.update(&k, |p| p.remove_if(ctx, pred));
                }
            }
            Value::ZSet(z) => {
                for k in z.members.keys() {
                    z.update(&k, |m| {
                        m.adds.remove_if(ctx, pred);
                        m.score.remove_if(obs_for(&obs.members, &k), ctx, pred);
                    });
                }
            }
            Value::List(l) => l.remove_observed(ctx, pred),
            Value::Stream(x) => x.remove_observed(ctx, pred),
        }
    }

    fn join(
        &mut self,
        key: &[u8],
        ctx: &VersionVector,
        other: &Value,
        other_ctx: &VersionVector,
        list_displaced: &mut Vec<SetDisplaced>,
        conflicts: &mut Vec<Conflict>,
    ) -> Vec<(Option<Blob>, Displaced<Blob>)> {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a
                .join(ctx, b, other_ctx)
                .into_iter()
                .map(|d| (None, d))
                .collect(),
            (Value::Hash(a), Value::Hash(b)) => a
                .fields
                .join(ctx, &b.fields, other_ctx)
                .into_iter()
                .map(|(k, d)| (Some(k), d))
                .collect(),
            (Value::Set(a), Value::Set(b)) => {
                a.members.join(ctx, &b.members, other_ctx);
                Vec::new()
            }
            (Value::ZSet(a), Value::ZSet(b)) => {
                let d = a.members.join(ctx, &b.members, other_ctx);
                **a = ZSetVal::from(std::mem::take(&mut a.members));
                d.into_iter().map(|(k, d)| (Some(k), d)).collect()
            }
            (Value::List(a), Value::List(b)) => {
                list_displaced.extend(a.join(ctx, b, other_ctx));
                Vec::new()
            }
            (Value::Stream(a), Value::Stream(b)) => {
                a.join(key, ctx, b, other_ctx, conflicts);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

/// A key's time to live: a deadline, or an explicit PERSIST marker that beats
/// any concurrent deadline. Among concurrent deadlines the latest wins.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ttl {
    pub deadline_ms: Option<u64>,
    pub tag: Tag,
}

impl Ttl {
    /// The concurrent-TTL order: PERSIST > later deadline > larger tag.
    fn beats(&self, other: &Ttl) -> bool {
        let rank = |t: &Ttl| (t.deadline_ms.map_or(u64::MAX, |d| d), t.tag);
        rank(self) > rank(other)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Extra {
    /// Concurrent TTL writes; the one that [`Ttl::beats`] the others rules.
    ttl: SmallVec<[Ttl; 1]>,
    /// Values of other types written concurrently, hidden from readers.
    shadows: Vec<Value>,
}

/// Everything one key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    value: Value,
    extra: Option<Box<Extra>>,
}

impl Value {
    /// Puts every collection's elements in key order and every set of tags
    /// in tag order: the order elements arrived in is not part of a state.
    fn canonicalize(&mut self) {
        fn presence(p: &mut Presence) {
            p.0.sort();
        }
        match self {
            Value::Str(_) => {}
            Value::Hash(h) => {
                h.fields.live.sort_keys();
                h.fields.graves.sort_keys();
            }
            Value::Set(set) => {
                set.members.live.sort_keys();
                set.members.graves.sort_keys();
                for p in set
                    .members
                    .live
                    .values_mut()
                    .chain(set.members.graves.values_mut())
                {
                    presence(p);
                }
            }
            Value::ZSet(z) => {
                z.members.live.sort_keys();
                z.members.graves.sort_keys();
                for m in z
                    .members
                    .live
                    .values_mut()
                    .chain(z.members.graves.values_mut())
                {
                    presence(&mut m.adds);
                }
            }
            // Always in key order.
            Value::List(_) => {}
            // Always in ID, name and tag order.
            Value::Stream(_) => {}
        }
    }
}

impl Entry {
    /// This state in a canonical form: equal states (`==`) encode to the
    /// same bytes whatever order their elements arrived in, so digests of
    /// converged regions agree (anti-entropy compares them). Borrowed when
    /// the entry is a plain string, whose encoding has no order to fix.
    pub fn canonical(&self) -> std::borrow::Cow<'_, Entry> {
        if matches!(self.value, Value::Str(_)) && self.extra.is_none() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut e = self.clone();
        e.value.canonicalize();
        if let Some(extra) = e.extra.as_mut() {
            extra.ttl.sort_by_key(|t| (t.tag, t.deadline_ms));
            for v in &mut extra.shadows {
                v.canonicalize();
            }
            extra.shadows.sort_by_key(|v| v.kind());
        }
        std::borrow::Cow::Owned(e)
    }

    pub fn new(kind: Kind) -> Entry {
        Entry {
            value: Value::empty(kind),
            extra: None,
        }
    }

    /// The value readers see.
    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    pub fn kind(&self) -> Kind {
        self.value.kind()
    }

    pub fn is_live(&self) -> bool {
        self.value.is_live()
    }

    /// Nothing left to remember: the key can be dropped.
    ///
    /// A TTL whose key content was deleted by a writer that had not observed
    /// the TTL is kept too: dropping it on some regions and not others would
    /// make convergence depend on arrival order. Such an entry is invisible;
    /// tombstone collection drops it once stable ([`Entry::collect_tombstones`]).
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
            && self
                .extra
                .as_ref()
                .is_none_or(|e| e.ttl.is_empty() && e.shadows.iter().all(|s| s.is_empty()))
    }

    pub fn ttl(&self) -> Option<Ttl> {
        self.extra.as_ref().and_then(|e| {
            e.ttl
                .iter()
                .copied()
                .reduce(|a, b| if a.beats(&b) { a } else { b })
        })
    }

    /// When the key expires, if it has a deadline.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.ttl().and_then(|t| t.deadline_ms)
    }

    pub fn has_shadows(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| !e.shadows.is_empty())
    }

    /// Counter totals that a key-wide delete or overwrite made now observes.
    pub fn observe(&self) -> KeyObs {
        let mut obs = KeyObs::default();
        self.value.observe(&mut obs);
        if let Some(e) = &self.extra {
            for s in &e.shadows {
                s.observe(&mut obs);
            }
        }
        obs
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        let shadows = self.extra.as_mut().map(|e| e.shadows.iter_mut());
        std::iter::once(&mut self.value).chain(shadows.into_iter().flatten())
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// The value of `kind`, visible or shadowed, if the key holds one.
    pub fn typed(&self, kind: Kind) -> Option<&Value> {
        std::iter::once(&self.value)
            .chain(self.extra.iter().flat_map(|e| e.shadows.iter()))
            .find(|v| v.kind() == kind)
    }

    /// The stream this key holds, visible or shadowed, to change what is
    /// local to this region (its node limits), never its state.
    pub fn stream_mut(&mut self) -> Option<&mut StreamVal> {
        self.values_mut().find_map(|v| match v {
            Value::Stream(s) => Some(&mut **s),
            _ => None,
        })
    }

    /// The value of `kind`, visible or shadowed, created empty if missing.
    fn typed_mut(&mut self, kind: Kind) -> &mut Value {
        if self.value.kind() == kind {
            return &mut self.value;
        }
        let extra = self.extra_mut();
        let at = match extra.shadows.iter().position(|v| v.kind() == kind) {
            Some(i) => i,
            None => {
                extra.shadows.push(Value::empty(kind));
                extra.shadows.len() - 1
            }
        };
        &mut extra.shadows[at]
    }

    fn remove_ttl_observed(&mut self, ctx: &impl Observes) {
        if let Some(e) = &mut self.extra {
            e.ttl.retain(|t| !ctx.observed(t.tag.dot));
        }
    }

    fn write_ttl(
        &mut self,
        new: Ttl,
        ctx: &impl Observes,
        key: &[u8],
        conflicts: &mut Vec<Conflict>,
    ) {
        let kind = self.kind();
        let extra = self.extra_mut();
        extra.ttl.retain(|t| !ctx.observed(t.tag.dot));
        for old in &extra.ttl {
            let (winner, loser) = if new.beats(old) {
                (new, *old)
            } else {
                (*old, new)
            };
            conflicts.push(Conflict::ttl(key, kind, winner, loser));
        }
        extra.ttl.push(new);
        extra.ttl.sort_by_key(|t| t.tag);
    }

    /// Applies one effect of an op. Conflicts the effect resolves by
    /// discarding a value are appended to `conflicts`.
    pub fn apply(
        &mut self,
        key: &[u8],
        kind: &EffectKind,
        ctx: &OpCtx<'_>,
        conflicts: &mut Vec<Conflict>,
    ) {
        let tag = ctx.tag;
        let target = match kind {
            EffectKind::Del { obs } => {
                for v in self.values_mut() {
                    v.remove_observed(obs, ctx, |_| true);
                }
                self.remove_ttl_observed(ctx);
                None
            }
            EffectKind::Expire { deadline_ms, obs } => {
                let deadline_ms = *deadline_ms;
                for v in self.values_mut() {
                    v.remove_observed(obs, ctx, |t| t.hlc.wall_ms() <= deadline_ms);
                }
                self.remove_ttl_observed(ctx);
                None
            }
            EffectKind::DropTtl => {
                self.remove_ttl_observed(ctx);
                None
            }
            // Applied to the libraries, never to a key (`Libraries`).
            EffectKind::LibrarySet { .. } | EffectKind::LibraryDel => None,
            EffectKind::SetTtl { deadline_ms } => {
                let new = Ttl {
                    deadline_ms: *deadline_ms,
                    tag,
                };
                self.write_ttl(new, ctx, key, conflicts);
                None
            }
            EffectKind::StrSet {
                value,
                keep_ttl,
                obs,
            } => {
                for v in self.values_mut().filter(|v| v.kind() != Kind::String) {
                    v.remove_observed(obs, ctx, |_| true);
                }
                if !keep_ttl {
                    self.remove_ttl_observed(ctx);
                }
                if let Value::Str(r) = self.typed_mut(Kind::String) {
                    let fields = field_obs(obs);
                    let displaced = r.write(
                        key,
                        value.clone(),
                        tag,
                        &obs.string,
                        Some(&fields),
                        ctx,
                        conflicts,
                    );
                    for d in displaced {
                        conflicts.push(Conflict::register(key, None, Kind::String, d));
                    }
                }
                Some(Kind::String)
            }
            EffectKind::StrPatch { patches, fold, obs } => {
                for v in self.values_mut().filter(|v| v.kind() != Kind::String) {
                    v.remove_observed(obs, ctx, |_| true);
                }
                if let Value::Str(r) = self.typed_mut(Kind::String) {
                    // A fold resets no counted field: its value holds the
                    // bits without their increments.
                    if let Some(value) = fold {
                        let displaced =
                            r.write(key, value.clone(), tag, &obs.string, None, ctx, conflicts);
                        for d in displaced {
                            conflicts.push(Conflict::register(key, None, Kind::String, d));
                        }
                    }
                    r.patch(key, patches, tag, &field_obs(obs), ctx, conflicts);
                }
                Some(Kind::String)
            }
            EffectKind::StrIncr { delta, start } => {
                if let Value::Str(r) = self.typed_mut(Kind::String) {
                    r.incr(tag.dot, *start, *delta);
                }
                Some(Kind::String)
            }
            EffectKind::HSet { fields, obs } => {
                if let Value::Hash(h) = self.typed_mut(Kind::Hash) {
                    for (f, v) in fields {
                        let displaced = h
                            .fields
                            .update(f, |reg| reg.write(v.clone(), tag, obs_for(obs, f), ctx));
                        for d in displaced {
                            conflicts.push(Conflict::register(key, Some(f), Kind::Hash, d));
                        }
                    }
                }
                Some(Kind::Hash)
            }
            EffectKind::HDel { fields, obs } => {
                if let Value::Hash(h) = self.typed_mut(Kind::Hash) {
                    for f in fields {
                        h.fields.update(f, |reg| reg.remove(obs_for(obs, f), ctx));
                    }
                }
                Some(Kind::Hash)
            }
            EffectKind::HIncr {
                field,
                delta,
                start,
            } => {
                if let Value::Hash(h) = self.typed_mut(Kind::Hash) {
                    h.fields
                        .update(field, |reg| reg.incr(tag.dot, *start, *delta));
                }
                Some(Kind::Hash)
            }
            EffectKind::SAdd { members } => {
                if let Value::Set(s) = self.typed_mut(Kind::Set) {
                    for m in members {
                        s.members.update(m, |p| p.add(tag, ctx));
                    }
                }
                Some(Kind::Set)
            }
            EffectKind::SRem { members } => {
                if let Value::Set(s) = self.typed_mut(Kind::Set) {
                    for m in members {
                        s.members.update(m, |p| p.remove_if(ctx, |_| true));
                    }
                }
                Some(Kind::Set)
            }
            EffectKind::ZAdd { members, obs } => {
                if let Value::ZSet(z) = self.typed_mut(Kind::ZSet) {
                    for (m, score) in members {
                        let displaced = z.update(m, |zm| {
                            zm.adds.add(tag, ctx);
                            zm.score.write(*score, tag, obs_for(obs, m), ctx)
                        });
                        for d in displaced {
                            conflicts.push(Conflict::score(key, m, d));
                        }
                    }
                }
                Some(Kind::ZSet)
            }
            EffectKind::ZIncr {
                member,
                delta,
                start,
            } => {
                if let Value::ZSet(z) = self.typed_mut(Kind::ZSet) {
                    z.update(member, |zm| {
                        zm.adds.add(tag, ctx);
                        zm.score.incr(tag.dot, *start, Delta::Float(*delta));
                    });
                }
                Some(Kind::ZSet)
            }
            EffectKind::LInsert { items } => {
                if let Value::List(l) = self.typed_mut(Kind::List) {
                    for (pos, value) in items {
                        l.insert(Elem {
                            pos: pos.clone(),
                            value: value.clone(),
                            set: None,
                        });
                    }
                }
                Some(Kind::List)
            }
            EffectKind::LRemove { ranges } => {
                if let Value::List(l) = self.typed_mut(Kind::List) {
                    for (lo, hi) in ranges {
                        l.remove_range(lo, hi, ctx);
                    }
                }
                Some(Kind::List)
            }
            EffectKind::LSet { pos, value } => {
                if let Value::List(l) = self.typed_mut(Kind::List) {
                    if let Some(d) = l.set(pos, value, tag, ctx) {
                        conflicts.push(Conflict::list_set(key, d));
                    }
                }
                Some(Kind::List)
            }
            EffectKind::ZRem { members, obs } => {
                if let Value::ZSet(z) = self.typed_mut(Kind::ZSet) {
                    for m in members {
                        z.update(m, |zm| {
                            zm.adds.remove_if(ctx, |_| true);
                            zm.score.remove(obs_for(obs, m), ctx);
                        });
                    }
                }
                Some(Kind::ZSet)
            }
            stream if stream.is_stream() => {
                if let Value::Stream(x) = self.typed_mut(Kind::Stream) {
                    apply_stream(x, key, stream, ctx, conflicts);
                }
                Some(Kind::Stream)
            }
            other => unreachable!("an effect of no value type: {other:?}"),
        };
        self.settle(key, target, tag, conflicts);
    }

    /// Drops empty values and elects the visible one. When two live values of
    /// different types remain, the one holding the newest write is shown and
    /// the hidden one is journaled.
    fn settle(
        &mut self,
        key: &[u8],
        target: Option<Kind>,
        tag: Tag,
        conflicts: &mut Vec<Conflict>,
    ) {
        if self.tidy() {
            self.elect(key, target, tag, conflicts);
        }
    }

    /// Drops empty values (and `extra` once it holds nothing); true while
    /// shadowed values remain, which an election must place.
    fn tidy(&mut self) -> bool {
        if self.value.is_empty() && self.value.kind() != Kind::String {
            // An emptied value has no type left: one canonical form, so that
            // replicas that emptied it along different paths compare equal.
            self.value = Value::empty(Kind::String);
        }
        let Some(extra) = self.extra.as_mut() else {
            return false;
        };
        extra.shadows.retain(|v| !v.is_empty());
        if !extra.shadows.is_empty() {
            return true;
        }
        if extra.ttl.is_empty() {
            self.extra = None;
        }
        false
    }

    fn elect(&mut self, key: &[u8], target: Option<Kind>, tag: Tag, conflicts: &mut Vec<Conflict>) {
        let Some(extra) = self.extra.as_mut() else {
            return;
        };
        let before = self.value.kind();
        let mut all: Vec<Value> = std::mem::take(&mut extra.shadows);
        all.push(std::mem::replace(
            &mut self.value,
            Value::empty(Kind::String),
        ));
        all.retain(|v| !v.is_empty());
        let best = all
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| (v.is_live(), v.stamp(), v.kind()))
            .map(|(i, _)| i)
            .unwrap_or(0);
        self.value = all.swap_remove(best);
        let shown = self.value.kind();
        let hidden_live: Vec<Kind> = all
            .iter()
            .filter(|v| v.is_live())
            .map(|v| v.kind())
            .collect();
        if self.value.is_live() {
            if let Some(t) = target {
                if t != shown && hidden_live.contains(&t) {
                    conflicts.push(Conflict::type_change(key, shown, t, tag));
                } else if t == shown && before != shown && hidden_live.contains(&before) {
                    conflicts.push(Conflict::type_change(key, shown, before, tag));
                }
            }
        }
        all.sort_by_key(|v| v.kind());
        let extra = self.extra_mut();
        extra.shadows = all;
        if extra.shadows.is_empty() && extra.ttl.is_empty() {
            self.extra = None;
        }
    }

    /// The counter incarnation an increment by op `dot` made now goes to,
    /// for the string (`sub` `None`), a hash field or a sorted-set member.
    pub fn counter_start(&self, kind: Kind, sub: Option<&[u8]>, dot: crate::vv::Dot) -> u64 {
        let mut values =
            std::iter::once(&self.value).chain(self.extra.iter().flat_map(|e| e.shadows.iter()));
        match (values.find(|v| v.kind() == kind), sub) {
            (Some(Value::Str(r)), None) => r.start_for(dot),
            (Some(Value::Hash(h)), Some(sub)) => h
                .fields
                .live
                .get(sub)
                .or_else(|| h.fields.graves.get(sub))
                .map_or(dot.seq(), |f| f.start_for(dot)),
            (Some(Value::ZSet(z)), Some(sub)) => z
                .members
                .live
                .get(sub)
                .or_else(|| z.members.graves.get(sub))
                .map_or(dot.seq(), |m| m.score.start_for(dot)),
            _ => dot.seq(),
        }
    }

    /// Holds nothing but TTLs: a delete removed the content while a
    /// concurrent EXPIRE or PERSIST it had not observed set one.
    pub fn has_orphan_ttl(&self) -> bool {
        self.value.is_empty()
            && self
                .extra
                .as_ref()
                .is_some_and(|e| !e.ttl.is_empty() && e.shadows.iter().all(|s| s.is_empty()))
    }

    /// What tombstone collection could drop here once stable: settled
    /// counter incarnations and orphan TTLs.
    pub fn tombstone_count(&self) -> usize {
        let settled: usize = std::iter::once(&self.value)
            .chain(self.extra.iter().flat_map(|e| e.shadows.iter()))
            .map(|v| v.settled_count())
            .sum();
        let ttls = if self.has_orphan_ttl() {
            self.extra.as_ref().map_or(0, |e| e.ttl.len())
        } else {
            0
        };
        settled + ttls
    }

    /// Drops every settled counter incarnation (and fields, members or
    /// shadowed values left holding nothing), then TTLs left on a key with
    /// nothing else; returns how many were dropped.
    /// The caller removes the key if the entry [`is_empty`](Self::is_empty)
    /// afterwards. Safe only once causally stable: see the store's
    /// tombstone collection.
    pub fn collect_tombstones(&mut self) -> usize {
        let mut n: usize = self.values_mut().map(|v| v.collect_settled()).sum();
        // Collecting changes no value's liveness, so nothing to elect.
        self.tidy();
        if self.has_orphan_ttl() {
            // Every region holds the content's removal and the TTL, and
            // every write that creates the key again drops the TTLs it
            // observed (`EffectKind::DropTtl`): the TTL can no longer
            // apply to anything.
            if let Some(extra) = self.extra.as_mut() {
                n += extra.ttl.len();
                extra.ttl.clear();
            }
        }
        self.tidy();
        n
    }

    /// Counter totals under one field or member that a write made now observes.
    pub fn sub_observation(&self, kind: Kind, sub: &[u8]) -> SmallVec<[Contrib; 1]> {
        let mut values =
            std::iter::once(&self.value).chain(self.extra.iter().flat_map(|e| e.shadows.iter()));
        match values.find(|v| v.kind() == kind) {
            Some(Value::Hash(h)) => {
                sub_observation(h.fields.live.get(sub).or_else(|| h.fields.graves.get(sub)))
            }
            Some(Value::ZSet(z)) => sub_observation(
                z.members
                    .live
                    .get(sub)
                    .or_else(|| z.members.graves.get(sub))
                    .map(|m| &m.score),
            ),
            _ => SmallVec::new(),
        }
    }

    /// True if this state holds a dot (of a write, an add, a TTL or a
    /// counter total) that `vv` does not cover: a region at `vv` has not
    /// seen that op, so its state of the key differs from this one. The
    /// converse does not hold (a delete leaves no dot behind), so this only
    /// tells what certainly differs.
    pub fn holds_dot_beyond(&self, vv: &VersionVector) -> bool {
        self.any_dot(|d| !vv.covers(d))
    }

    /// True if `pred` holds for a dot this state holds (of a write, an add,
    /// a TTL or a counter total).
    pub fn any_dot(&self, pred: impl Fn(Dot) -> bool) -> bool {
        fn reg<V>(r: &NumReg<V>, pred: &dyn Fn(Dot) -> bool) -> bool {
            r.base.iter().any(|b| pred(b.tag.dot))
                || r.counter.as_ref().is_some_and(|c| {
                    c.contrib
                        .iter()
                        .chain(c.offsets.iter())
                        .any(|t| pred(Dot::new(t.region, t.seq)))
                })
        }
        fn presence(p: &Presence, pred: &dyn Fn(Dot) -> bool) -> bool {
            p.0.iter().any(|t| pred(t.dot))
        }
        fn value(v: &Value, pred: &dyn Fn(Dot) -> bool) -> bool {
            match v {
                Value::Str(r) => reg(r, pred) || r.any_patch_dot(pred),
                Value::Hash(h) => h
                    .fields
                    .live
                    .values()
                    .chain(h.fields.graves.values())
                    .any(|f| reg(f, pred)),
                Value::Set(s) => s
                    .members
                    .live
                    .values()
                    .chain(s.members.graves.values())
                    .any(|p| presence(p, pred)),
                Value::ZSet(z) => z
                    .members
                    .live
                    .values()
                    .chain(z.members.graves.values())
                    .any(|m| presence(&m.adds, pred) || reg(&m.score, pred)),
                Value::List(l) => l.any_dot(pred),
                Value::Stream(x) => x.any_dot(pred),
            }
        }
        value(&self.value, &pred)
            || self.extra.as_ref().is_some_and(|e| {
                e.ttl.iter().any(|t| pred(t.tag.dot)) || e.shadows.iter().any(|s| value(s, &pred))
            })
    }

    /// State merge with causal contexts: `self` reflects every op covered by
    /// `ctx`, `other` every op covered by `other_ctx`.
    pub fn join(
        &mut self,
        key: &[u8],
        ctx: &VersionVector,
        other: &Entry,
        other_ctx: &VersionVector,
        conflicts: &mut Vec<Conflict>,
    ) {
        let mut theirs: Vec<&Value> = vec![&other.value];
        if let Some(e) = &other.extra {
            theirs.extend(e.shadows.iter());
        }
        let mut kinds: Vec<Kind> = self.values_mut().map(|v| v.kind()).collect();
        kinds.extend(theirs.iter().map(|v| v.kind()));
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let empty = Value::empty(kind);
            let their = theirs
                .iter()
                .find(|v| v.kind() == kind)
                .copied()
                .unwrap_or(&empty);
            let mut list_displaced = Vec::new();
            for (sub, d) in self.typed_mut(kind).join(
                key,
                ctx,
                their,
                other_ctx,
                &mut list_displaced,
                conflicts,
            ) {
                conflicts.push(Conflict::register(key, sub.as_deref(), kind, d));
            }
            for d in list_displaced {
                conflicts.push(Conflict::list_set(key, d));
            }
        }
        let their_ttl: SmallVec<[Ttl; 1]> = other
            .extra
            .as_ref()
            .map(|e| e.ttl.clone())
            .unwrap_or_default();
        let extra = self.extra_mut();
        extra
            .ttl
            .retain(|m| their_ttl.contains(m) || !other_ctx.covers(m.tag.dot));
        for t in their_ttl {
            if !extra.ttl.contains(&t) && !ctx.covers(t.tag.dot) {
                extra.ttl.push(t);
            }
        }
        extra.ttl.sort_by_key(|t| t.tag);
        let tag = self.value.stamp().unwrap_or(Tag {
            hlc: crate::hlc::Hlc::ZERO,
            dot: crate::vv::Dot::new(crate::region::RegionId::new("merge").expect("valid"), 0),
        });
        self.settle(key, None, tag, conflicts);
    }
}

/// Applies a stream effect ([`EffectKind::is_stream`]).
fn apply_stream(
    x: &mut StreamVal,
    key: &[u8],
    kind: &EffectKind,
    ctx: &OpCtx<'_>,
    conflicts: &mut Vec<Conflict>,
) {
    match kind {
        EffectKind::XAdd { id, fields, added } => x.add(key, *id, fields, *added, ctx, conflicts),
        EffectKind::XDel { ids, max_deleted } => x.delete(ids, *max_deleted, ctx),
        EffectKind::XTrim { upto } => x.trim(*upto, ctx),
        EffectKind::XSetId {
            last,
            added,
            max_deleted,
        } => x.set_id(*last, *added, *max_deleted, ctx),
        EffectKind::XGroupCreate { group, last, read } => x.create_group(group, *last, *read, ctx),
        EffectKind::XGroupSetId { group, last, read } => x.set_group_id(group, *last, *read, ctx),
        EffectKind::XGroupDestroy { group } => x.destroy_group(group, ctx),
        EffectKind::XConsumerCreate {
            group,
            consumer,
            now_ms,
        } => x.create_consumer(group, consumer, *now_ms, ctx),
        EffectKind::XConsumerDel { group, consumer } => x.delete_consumer(group, consumer, ctx),
        EffectKind::XDeliver { group, delivery } => x.deliver(group, delivery, ctx),
        EffectKind::XAck { group, ids } => x.ack(group, ids, ctx),
        other => unreachable!("not a stream effect: {other:?}"),
    }
}

pub mod v3;
pub mod v4;

/// The totals of a string's counted field (`crate::patch::Field`) that a
/// write observed, by the field's name.
fn field_obs(obs: &KeyObs) -> impl Fn(crate::patch::Field) -> SmallVec<[Contrib; 1]> + '_ {
    move |f| SmallVec::from_slice(obs_for(&obs.fields, &f.name()))
}

/// Counter totals for one field or member that a write observes.
pub fn sub_observation<V: Clone>(reg: Option<&NumReg<V>>) -> SmallVec<[Contrib; 1]> {
    reg.map_or_else(SmallVec::new, |r| r.observation())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::region::RegionId;

    fn apply(e: &mut Entry, region: &str, seq: u64, seen: &VersionVector, kind: EffectKind) {
        let tag = Tag {
            hlc: Hlc(seq << 16),
            dot: Dot::new(RegionId::new(region).unwrap(), seq),
        };
        let ctx = OpCtx { tag, vv: seen };
        e.apply(b"k", &kind, &ctx, &mut Vec::new());
    }

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (r, s) in pairs {
            v.set(RegionId::new(r).unwrap(), *s);
        }
        v
    }

    /// Writes, increments and TTLs leave dots a peer that has not seen them
    /// lacks; a delete leaves none, which is why anti-entropy still
    /// compares digests after sending what is certainly ahead.
    #[test]
    fn dots_beyond_a_vector_are_the_ops_it_has_not_seen() {
        let mut e = Entry::new(Kind::String);
        let set = |v: &str| EffectKind::StrSet {
            value: Blob::from(v),
            keep_ttl: false,
            obs: KeyObs::default(),
        };
        apply(&mut e, "ra", 5, &vv(&[("ra", 4)]), set("x"));
        assert!(e.holds_dot_beyond(&vv(&[("ra", 4)])));
        assert!(!e.holds_dot_beyond(&vv(&[("ra", 5)])));

        apply(
            &mut e,
            "rc",
            3,
            &vv(&[("ra", 5), ("rc", 2)]),
            EffectKind::StrIncr {
                delta: Delta::Int(1),
                start: 3,
            },
        );
        assert!(e.holds_dot_beyond(&vv(&[("ra", 5), ("rc", 2)])));
        assert!(!e.holds_dot_beyond(&vv(&[("ra", 5), ("rc", 3)])));

        apply(
            &mut e,
            "rb",
            1,
            &vv(&[("ra", 5), ("rc", 3)]),
            EffectKind::SetTtl {
                deadline_ms: Some(1),
            },
        );
        assert!(e.holds_dot_beyond(&vv(&[("ra", 5), ("rc", 3)])));

        // A delete leaves nothing: a region that still holds "y" sees no
        // dot here beyond what it has.
        let mut d = Entry::new(Kind::String);
        apply(&mut d, "ra", 1, &VersionVector::new(), set("y"));
        let obs = d.observe();
        apply(&mut d, "rb", 1, &vv(&[("ra", 1)]), EffectKind::Del { obs });
        assert!(d.is_empty());
        assert!(!d.holds_dot_beyond(&vv(&[("ra", 1)])));
    }
}
