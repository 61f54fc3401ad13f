//! `Db`: one region's state and the only way to change it.
//!
//! Commands read through `Db` and write by adding *effects* to the op being
//! built; each effect is applied at once (later commands of a MULTI block see
//! it) and the finished [`Op`] is handed to the caller to log and replicate.
//! Remote and recovered ops go through [`Db::apply_op`], the same apply code.
//!
//! `Db` never reads the clock: the caller sets `now_ms` before each batch.

use std::collections::VecDeque;

use meridian_crdt::{
    Blob, Conflict, Delta, Dot, Effect, EffectKind, Entry, Hlc, HlcClock, Kind, Libraries, Op,
    OpCtx, RegionId, SubObs, Tag, Value, VersionVector,
};

use crate::keyspace::Keyspace;

pub mod changes;
mod counted;
mod lists;
mod streams;

pub use changes::{Change, Event, Origin};
pub use streams::{auto_id, auto_seq, Trim, TrimTo, SLOTS_MAX, SLOT_BITS};

/// Conflicts kept in memory for `MERIDIAN CONFLICTS`.
pub const CONFLICTS_KEPT_MAX: usize = 10_000;

/// Register patches a HyperLogLog holds before a partial write folds them
/// into its value ([`Db::patch_string`]).
pub const MAX_REGISTER_PATCHES: usize = 32;

/// Bit patches a string holds before a partial write folds them into its
/// value ([`Db::patch_string`]).
pub const MAX_BIT_PATCHES: usize = 1024;

/// What applying a peer's op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteApply {
    Applied {
        clock_ahead: Option<meridian_crdt::ClockAhead>,
    },
    /// Already applied here (it came through another region too).
    Duplicate,
}

/// A peer's op arrived before one it depends on: the sender broke causal
/// order, which its stream never does; the link is reset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("op {dot} arrived before its dependencies (applied here: {have:?})")]
pub struct NotReady {
    pub dot: Dot,
    pub have: VersionVector,
}

/// An operation against a key holding the wrong kind of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
pub struct WrongType;

#[derive(Debug)]
pub struct Db {
    region: RegionId,
    seq: u64,
    clock: HlcClock,
    vv: VersionVector,
    keys: Keyspace,
    now_ms: u64,
    building: Option<Op>,
    conflicts: VecDeque<Conflict>,
    /// Conflicts found since the store last took them for the journal.
    fresh_conflicts: Vec<Conflict>,
    conflicts_total: u64,
    expired_total: u64,
    /// Keys under WATCH by some client: (watchers, modification count).
    watched: std::collections::HashMap<Blob, (u32, u64)>,
    /// Per anti-entropy session (by tracker id), the keys changed since it
    /// took its digests; several sessions (with different peers, or as
    /// dialer and acceptor) can run at once.
    touched: Vec<(u64, std::collections::HashSet<Blob>)>,
    /// The id the next tracker gets.
    next_tracker: u64,
    /// Keys that may hold settled counter incarnations: a write or delete
    /// reset a counter there, or state was merged. Tombstone collection
    /// takes them as candidates.
    tombstone_keys: std::collections::HashSet<Blob>,
    /// Every key is a candidate (state loaded from a snapshot).
    tombstone_scan_all: bool,
    /// The index the next list element inserted by the op being built
    /// takes (an element's id is the op's tag and this index).
    elem_next: u32,
    /// Keys some client is blocked on (BLPOP and friends), with how many
    /// clients; a change to one is recorded in `ready`.
    blocked_on: std::collections::HashMap<Blob, u32>,
    /// Keys with blocked clients that changed since [`Db::take_ready`].
    ready: Vec<Blob>,
    /// The change feed ([`changes`]), `None` while nobody reads it.
    changes: Option<changes::Feed>,
    /// FUNCTION libraries: replicated like keys, kept apart from them, so
    /// no key command (KEYS, SCAN, DBSIZE, FLUSHALL…) sees or changes them.
    libraries: Libraries,
    /// Raised by every change to `libraries` (a local or peer's effect, a
    /// merge, a snapshot load): the server reloads its compiled libraries
    /// when it differs from the one it loaded.
    libraries_generation: u64,
}

/// What one tombstone collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Settled counter incarnations dropped.
    pub incarnations: usize,
    /// Keys left holding nothing, removed.
    pub keys_removed: usize,
    /// Candidates that changed since they were taken: kept for next time.
    pub changed: usize,
}

/// A fingerprint of a key's whole state, to tell whether it changed.
fn fingerprint(entry: &Entry) -> u64 {
    use std::hash::{Hash, Hasher};
    let bytes = postcard::to_stdvec(&*entry.canonical()).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Effects that may leave tombstones: ones that reset counter totals
/// (settled incarnations), and deletes and TTL changes (a TTL left on a key
/// whose content a concurrent delete removed).
fn may_leave_tombstones(kind: &EffectKind) -> bool {
    match kind {
        EffectKind::Del { .. } | EffectKind::Expire { .. } | EffectKind::SetTtl { .. } => true,
        EffectKind::StrSet { obs, .. } | EffectKind::StrPatch { obs, .. } => !obs.is_empty(),
        EffectKind::HSet { obs, .. }
        | EffectKind::HDel { obs, .. }
        | EffectKind::ZAdd { obs, .. }
        | EffectKind::ZRem { obs, .. } => !obs.is_empty(),
        _ => false,
    }
}

fn apply_library(
    libraries: &mut Libraries,
    name: &[u8],
    kind: &EffectKind,
    ctx: &OpCtx<'_>,
    found: &mut Vec<Conflict>,
) {
    match kind {
        EffectKind::LibrarySet { code } => libraries.set(name, code, ctx.tag, ctx, found),
        EffectKind::LibraryDel => libraries.del(name, ctx),
        _ => unreachable!("not a library effect: {kind:?}"),
    }
}

impl Db {
    pub fn new(region: RegionId, max_clock_offset_ms: u64) -> Db {
        Db {
            region,
            seq: 0,
            clock: HlcClock::new(max_clock_offset_ms),
            vv: VersionVector::new(),
            keys: Keyspace::new(),
            now_ms: 0,
            building: None,
            conflicts: VecDeque::new(),
            fresh_conflicts: Vec::new(),
            conflicts_total: 0,
            expired_total: 0,
            watched: Default::default(),
            touched: Vec::new(),
            next_tracker: 0,
            tombstone_keys: Default::default(),
            tombstone_scan_all: true,
            elem_next: 0,
            blocked_on: Default::default(),
            ready: Vec::new(),
            changes: None,
            libraries: Libraries::new(),
            libraries_generation: 0,
        }
    }

    // ----- tombstone collection -----

    /// Up to `max` keys holding settled counter incarnations, each with a
    /// fingerprint of its state now. Collect them with
    /// [`Db::collect_tombstones`] once every region holds what this region
    /// holds now (causal stability).
    pub fn tombstone_candidates(&mut self, max: usize) -> Vec<(Blob, u64)> {
        if self.tombstone_scan_all {
            self.tombstone_scan_all = false;
            let all: Vec<Blob> = self.keys.iter_all().map(|(k, _)| k.clone()).collect();
            self.tombstone_keys.extend(all);
        }
        let mut out = Vec::new();
        let mut rest = std::collections::HashSet::new();
        for key in self.tombstone_keys.drain() {
            if out.len() >= max {
                rest.insert(key);
                continue;
            }
            if let Some(e) = self.keys.get_any(&key) {
                if e.tombstone_count() > 0 {
                    let f = fingerprint(e);
                    out.push((key, f));
                }
            }
        }
        self.tombstone_keys = rest;
        out
    }

    /// Makes `keys` candidates again (a collection round was abandoned).
    pub fn requeue_tombstones(&mut self, keys: impl IntoIterator<Item = Blob>) {
        self.tombstone_keys.extend(keys);
    }

    /// Keys waiting to be looked at by tombstone collection.
    pub fn tombstone_backlog(&self) -> usize {
        if self.tombstone_scan_all {
            self.keys.len() + self.keys.hidden_len()
        } else {
            self.tombstone_keys.len()
        }
    }

    /// Drops the settled counter incarnations of every candidate whose state
    /// is unchanged since [`Db::tombstone_candidates`] took it. The caller
    /// guarantees causal stability: every region held, durably, everything
    /// this region held when the candidates were taken, and this region has
    /// applied everything those regions held then (so no op that could
    /// change these incarnations is still in flight anywhere).
    pub fn collect_tombstones(&mut self, candidates: Vec<(Blob, u64)>) -> Collected {
        let mut done = Collected::default();
        for (key, f) in candidates {
            match self.keys.get_any(&key) {
                Some(e) if fingerprint(e) == f => {}
                Some(_) => {
                    done.changed += 1;
                    self.tombstone_keys.insert(key);
                    continue;
                }
                None => continue,
            }
            // Readers see no change: WATCH versions stay as they are.
            let (n, removed) = self.keys.collect_tombstones(&key);
            done.incarnations += n;
            done.keys_removed += removed as usize;
        }
        done
    }

    pub fn region(&self) -> RegionId {
        self.region
    }

    pub fn version_vector(&self) -> &VersionVector {
        &self.vv
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sets the wall time used for expiry and new HLC stamps.
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    pub fn conflicts(&self) -> impl DoubleEndedIterator<Item = &Conflict> {
        self.conflicts.iter()
    }

    pub fn conflicts_total(&self) -> u64 {
        self.conflicts_total
    }

    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    fn record_conflicts(&mut self, found: Vec<Conflict>) {
        for c in found {
            self.remember_conflict(c.clone());
            self.fresh_conflicts.push(c);
        }
    }

    /// Adds a conflict to the in-memory list readers see.
    pub fn remember_conflict(&mut self, c: Conflict) {
        self.conflicts_total += 1;
        if self.conflicts.len() == CONFLICTS_KEPT_MAX {
            self.conflicts.pop_front();
        }
        self.conflicts.push_back(c);
    }

    /// Conflicts found since the last call, for the durable journal.
    pub fn take_fresh_conflicts(&mut self) -> Vec<Conflict> {
        std::mem::take(&mut self.fresh_conflicts)
    }

    /// Forgets the in-memory conflict list (recovery reloads it from the
    /// journal instead of counting replayed conflicts twice).
    pub fn clear_conflicts(&mut self) {
        self.conflicts.clear();
        self.fresh_conflicts.clear();
        self.conflicts_total = 0;
    }

    // ----- reading -----

    /// The visible entry of `key`, expiring it first if its deadline passed.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        self.expire_if_due(key);
        self.keys.get(key)
    }

    /// The entry if it has the expected type; `Ok(None)` when absent.
    pub fn get_typed(&mut self, key: &[u8], kind: Kind) -> Result<Option<&Entry>, WrongType> {
        match self.get(key) {
            Some(e) if e.kind() != kind => Err(WrongType),
            other => Ok(other),
        }
    }

    /// A key's visible entry without expiring anything: for read paths that
    /// must not write (the entry may be past its deadline).
    pub fn peek(&self, key: &[u8]) -> Option<&Entry> {
        self.keys
            .get(key)
            .filter(|e| e.deadline_ms().is_none_or(|d| d > self.now_ms))
    }

    fn expire_if_due(&mut self, key: &[u8]) {
        let due = self
            .keys
            .get_any(key)
            .and_then(|e| e.deadline_ms())
            .is_some_and(|d| d <= self.now_ms);
        if due {
            self.expire(key);
        }
    }

    fn expire(&mut self, key: &[u8]) {
        let Some(entry) = self.keys.get_any(key) else {
            return;
        };
        let Some(deadline_ms) = entry.deadline_ms() else {
            return;
        };
        let obs = entry.observe();
        let was_live = entry.is_live();
        self.effect(key, EffectKind::Expire { deadline_ms, obs });
        if was_live {
            self.expired_total += 1;
        }
    }

    /// Expires up to `limit` keys whose deadline has passed (the active
    /// expiry cycle); returns how many it expired.
    pub fn expire_due(&mut self, limit: usize) -> usize {
        let due = self.keys.due(self.now_ms, limit);
        for k in &due {
            self.expire(k);
        }
        due.len()
    }

    // ----- writing -----

    /// Adds an effect that changes no value a reader sees, only the
    /// metadata that decides merges (an element re-added with a fresh
    /// tag): WATCH, blocked clients and the change feed do not hear of it,
    /// as Redis does not for a write that changed nothing.
    pub fn effect_unseen(&mut self, key: &[u8], kind: EffectKind) {
        self.op_tag();
        self.touch(key);
        self.apply_built(key, kind);
    }

    /// Adds an effect to the op being built and applies it now.
    pub fn effect(&mut self, key: &[u8], kind: EffectKind) {
        if kind.is_library() {
            return self.library_effect(key, kind);
        }
        let created =
            self.changes.is_some() && changes::creates_key(&kind) && self.keys.get(key).is_none();
        if kind.needs_ttl_dropped() && self.keys.get_any(key).is_none_or(|e| !e.is_live()) {
            // A new key has no TTL: drop any a delete left behind, here or
            // at a region that has not collected it yet.
            self.effect(key, EffectKind::DropTtl);
        }
        self.op_tag();
        if let Some((_, version)) = self.watched.get_mut(key) {
            *version += 1;
        }
        self.touch(key);
        self.mark_ready(key);
        match kind {
            // Bookkeeping that precedes the write itself.
            EffectKind::DropTtl => {}
            EffectKind::Expire { .. } if self.keys.get(key).is_some() => {
                self.record_change(key, Origin::Expired, false)
            }
            _ => self.record_change(key, Origin::Local, created),
        }
        self.apply_built(key, kind);
    }

    /// Applies an effect of the op under construction and records it there.
    fn apply_built(&mut self, key: &[u8], kind: EffectKind) {
        if may_leave_tombstones(&kind) {
            self.tombstone_keys.insert(Blob::from(key));
        }
        let op = self.building.as_mut().expect("op under construction");
        assert!(
            op.tag.dot == Dot::new(self.region, self.seq),
            "the op under construction has dot {:?} but this region's last issued seq is {}",
            op.tag.dot,
            self.seq
        );
        let mut found = Vec::new();
        self.keys.apply(key, &kind, &op.context(), &mut found);
        op.effects.push(Effect {
            key: Blob::from(key),
            kind,
        });
        self.record_conflicts(found);
    }

    /// An effect on the library `name`, added to the op being built: it
    /// touches no key (no WATCH, blocked client, change feed or
    /// anti-entropy tracker sees it).
    fn library_effect(&mut self, name: &[u8], kind: EffectKind) {
        self.op_tag();
        let op = self.building.as_mut().expect("op under construction");
        assert!(
            op.tag.dot == Dot::new(self.region, self.seq),
            "the op under construction has dot {:?} but this region's last issued seq is {}",
            op.tag.dot,
            self.seq
        );
        let mut found = Vec::new();
        apply_library(&mut self.libraries, name, &kind, &op.context(), &mut found);
        self.libraries_generation += 1;
        op.effects.push(Effect {
            key: Blob::from(name),
            kind,
        });
        self.record_conflicts(found);
    }

    /// The tag of the op under construction, starting one if none is: its
    /// first effect must follow before [`Db::commit`].
    fn op_tag(&mut self) -> Tag {
        if let Some(op) = &self.building {
            return op.tag;
        }
        self.assert_seq_matches_vv();
        self.seq += 1;
        let tag = Tag {
            hlc: self.clock.now(self.now_ms),
            dot: Dot::new(self.region, self.seq),
        };
        self.building = Some(Op {
            tag,
            ctx: self.vv.clone(),
            effects: Vec::new(),
        });
        self.elem_next = 0;
        tag
    }

    /// Finishes the op under construction; `None` if nothing was written.
    pub fn commit(&mut self) -> Option<Op> {
        let op = self.building.take()?;
        let dot = op.tag.dot;
        assert!(
            !op.effects.is_empty(),
            "committing op {dot:?} with no effects: an op starts only with its first effect"
        );
        assert!(
            dot.region() == self.region && dot.seq() == self.vv.get(self.region) + 1,
            "committing op {dot:?}, which is not the next op of region {} (its vector holds {})",
            self.region,
            self.vv.get(self.region)
        );
        debug_assert!(
            op.ctx == self.vv,
            "the version vector moved from {:?} to {:?} while op {dot:?} was built",
            op.ctx,
            self.vv
        );
        self.vv.observe(dot);
        self.assert_seq_matches_vv();
        Some(op)
    }

    /// The next local op takes the dot `vv[me] + 1`: this region's own
    /// counter and the last seq it issued move together, or a new op would
    /// reuse a dot peers hold (and they would drop it as a duplicate) or
    /// skip one (and they would wait for it forever).
    fn assert_seq_matches_vv(&self) {
        assert!(
            self.seq == self.vv.get(self.region),
            "region {} issued seq {} but its version vector holds {} of its own ops",
            self.region,
            self.seq,
            self.vv.get(self.region)
        );
    }

    /// Ops from peers, the log or merged state are applied between
    /// batches, never into the middle of an op this region is building:
    /// that op's context was taken when it started.
    fn assert_no_op_in_progress(&self, what: &str) {
        if let Some(op) = &self.building {
            panic!("{what} while op {:?} is being built", op.tag.dot);
        }
    }

    /// Whether an op is being built (its effects are applied but it is not
    /// committed yet).
    pub fn op_in_progress(&self) -> bool {
        self.building.is_some()
    }

    /// Applies an op read back from this region's own log (recovery).
    /// Returns false for an op already applied.
    pub fn apply_op(&mut self, op: &Op) -> bool {
        self.assert_no_op_in_progress("replaying a logged op");
        if self.vv.covers(op.dot()) {
            return false;
        }
        self.clock.raise_to(op.tag.hlc);
        self.apply_effects(op);
        true
    }

    /// True when `op` can be applied here now: the origin's previous op and
    /// everything the writer had observed are applied (causal delivery).
    pub fn is_ready(&self, op: &Op) -> bool {
        let dot = op.dot();
        self.vv.get(dot.region()) + 1 == dot.seq() && self.vv.dominates(&op.ctx)
    }

    /// Applies an op received from a peer. The local clock advances past the
    /// op's HLC unless that stamp is more than `max_clock_offset_ms` ahead of
    /// `wall_ms`; the op is applied either way (convergence never depends on
    /// clocks) and the offset is reported.
    pub fn apply_remote(&mut self, op: &Op, wall_ms: u64) -> Result<RemoteApply, NotReady> {
        self.assert_no_op_in_progress("applying a peer's op");
        if self.vv.covers(op.dot()) {
            return Ok(RemoteApply::Duplicate);
        }
        if !self.is_ready(op) {
            return Err(NotReady {
                dot: op.dot(),
                have: self.vv.clone(),
            });
        }
        let clock_ahead = self.clock.observe(op.tag.hlc, wall_ms).err();
        self.apply_effects(op);
        let dot = op.dot();
        assert!(
            self.vv.get(dot.region()) == dot.seq(),
            "after applying the ready op {dot:?} the vector holds {} of its region's ops",
            self.vv.get(dot.region())
        );
        debug_assert!(
            self.vv.dominates(&op.ctx),
            "after applying op {dot:?} the vector {:?} does not cover its context {:?}",
            self.vv,
            op.ctx
        );
        Ok(RemoteApply::Applied { clock_ahead })
    }

    fn apply_effects(&mut self, op: &Op) {
        let dot = op.dot();
        let ctx: OpCtx<'_> = op.context();
        let mut found = Vec::new();
        for e in &op.effects {
            if e.kind.is_library() {
                apply_library(&mut self.libraries, &e.key, &e.kind, &ctx, &mut found);
                self.libraries_generation += 1;
                continue;
            }
            if let Some((_, version)) = self.watched.get_mut(&e.key[..]) {
                *version += 1;
            }
            for (_, t) in &mut self.touched {
                t.insert(e.key.clone());
            }
            self.mark_ready(&e.key);
            if may_leave_tombstones(&e.kind) {
                self.tombstone_keys.insert(e.key.clone());
            }
            if self.changes.is_none() {
                self.keys.apply(&e.key, &e.kind, &ctx, &mut found);
                continue;
            }
            let before = self.keys.get(&e.key);
            let was_live = before.is_some();
            let created = !was_live && changes::creates_key(&e.kind);
            if let Some(event) = changes::event_of(&e.kind, before) {
                self.record_change(&e.key, Origin::Peer(event), created);
            }
            self.keys.apply(&e.key, &e.kind, &ctx, &mut found);
            // A removal that left a collection empty deletes the key, as
            // the command that made it did where it ran.
            let removal = matches!(
                e.kind,
                EffectKind::HDel { .. }
                    | EffectKind::SRem { .. }
                    | EffectKind::ZRem { .. }
                    | EffectKind::LRemove { .. }
            );
            if removal && was_live && self.keys.get(&e.key).is_none() {
                self.record_change(&e.key, Origin::Peer(changes::DEL), false);
            }
        }
        self.vv.observe(dot);
        if dot.region() == self.region {
            self.seq = self.seq.max(dot.seq());
        }
        assert!(
            self.vv.covers(dot),
            "applied op {dot:?} but the vector {:?} does not cover it",
            self.vv
        );
        self.assert_seq_matches_vv();
        self.record_conflicts(found);
    }

    // ----- blocked clients -----

    /// A client blocks on `key`: changes to it are recorded for
    /// [`Db::take_ready`] until as many [`Db::unblock_on`] calls.
    pub fn block_on(&mut self, key: &[u8]) {
        *self.blocked_on.entry(Blob::from(key)).or_insert(0) += 1;
    }

    pub fn unblock_on(&mut self, key: &[u8]) {
        if let Some(n) = self.blocked_on.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.blocked_on.remove(key);
            }
        }
    }

    /// Keys clients are blocked on that changed (by this region's writes,
    /// peers' ops or merged state) since the last call.
    pub fn take_ready(&mut self) -> Vec<Blob> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort();
        ready.dedup();
        ready
    }

    fn mark_ready(&mut self, key: &[u8]) {
        if !self.blocked_on.is_empty() && self.blocked_on.contains_key(key) {
            self.ready.push(Blob::from(key));
        }
    }

    // ----- state merge (anti-entropy) -----

    fn touch(&mut self, key: &[u8]) {
        for (_, t) in &mut self.touched {
            t.insert(Blob::from(key));
        }
    }

    /// Starts remembering which keys change, until [`Db::take_touched`]
    /// with the id returned.
    pub fn track_touched(&mut self) -> u64 {
        let id = self.next_tracker;
        self.next_tracker += 1;
        self.touched.push((id, Default::default()));
        id
    }

    /// The keys changed since [`Db::track_touched`] returned `id`; stops
    /// that tracking (others go on).
    pub fn take_touched(&mut self, id: u64) -> std::collections::HashSet<Blob> {
        match self.touched.iter().position(|(t, _)| *t == id) {
            Some(at) => self.touched.swap_remove(at).1,
            None => Default::default(),
        }
    }

    /// How many trackers are on (for tests: a failed session stops its own).
    pub fn trackers(&self) -> usize {
        self.touched.len()
    }

    /// The join of this region's state of `key` with a peer's; `None` when
    /// neither holds anything.
    fn joined(
        &self,
        key: &[u8],
        theirs: Option<&Entry>,
        their_vv: &VersionVector,
        found: &mut Vec<Conflict>,
    ) -> Option<Entry> {
        let mut merged = match (self.keys.get_any(key), theirs) {
            (None, None) => return None,
            (Some(mine), _) => mine.clone(),
            (None, Some(t)) => Entry::new(t.kind()),
        };
        let empty;
        let theirs = match theirs {
            Some(t) => t,
            None => {
                empty = Entry::new(merged.kind());
                &empty
            }
        };
        merged.join(key, &self.vv, theirs, their_vv, found);
        Some(merged)
    }

    /// What [`Db::merge_state`] would make of `key`, changing nothing:
    /// `None` when the key would hold nothing. Conflicts are not recorded.
    pub fn joined_state(
        &self,
        key: &[u8],
        theirs: Option<&Entry>,
        their_vv: &VersionVector,
    ) -> Option<Entry> {
        self.joined(key, theirs, their_vv, &mut Vec::new())
            .filter(|e| !e.is_empty())
    }

    /// Joins a peer's state of `key` (`None`: the peer holds nothing for
    /// it) with this region's, `their_vv` being the peer's version vector
    /// when it read that state. The version vector is not changed here: a
    /// caller joins it ([`Db::absorb_context`]) only after merging every key
    /// whose state may differ, or it would claim ops it never merged.
    pub fn merge_state(&mut self, key: &[u8], theirs: Option<&Entry>, their_vv: &VersionVector) {
        self.assert_no_op_in_progress("merging a peer's state");
        let mut found = Vec::new();
        let Some(merged) = self.joined(key, theirs, their_vv, &mut found) else {
            return;
        };
        if merged.tombstone_count() > 0 {
            self.tombstone_keys.insert(Blob::from(key));
        }
        if let Some((_, version)) = self.watched.get_mut(key) {
            *version += 1;
        }
        self.touch(key);
        self.mark_ready(key);
        if self.changes.is_some() {
            // Only a merge that changed what this region holds is a change.
            let before = self.keys.get_any(key).map(fingerprint);
            if before != Some(fingerprint(&merged)) {
                let created = self.keys.get(key).is_none() && merged.is_live();
                self.record_change(key, Origin::Merged, created);
            }
        }
        self.keys.replace(key, merged);
        self.record_conflicts(found);
    }

    /// Joins a peer's libraries, read when its vector was `their_vv`, with
    /// this region's (see [`Db::merge_state`]: the vector is joined later,
    /// by [`Db::absorb_context`]).
    pub fn merge_libraries(&mut self, theirs: &Libraries, their_vv: &VersionVector) {
        self.assert_no_op_in_progress("merging a peer's libraries");
        let mut found = Vec::new();
        if self.libraries.join(&self.vv, theirs, their_vv, &mut found) {
            self.libraries_generation += 1;
        }
        self.record_conflicts(found);
    }

    /// The FUNCTION libraries this region holds.
    pub fn libraries(&self) -> &Libraries {
        &self.libraries
    }

    /// Raised by every change to [`Db::libraries`].
    pub fn libraries_generation(&self) -> u64 {
        self.libraries_generation
    }

    /// `FUNCTION LOAD`: `code` becomes the library `name` (the caller has
    /// compiled it), replacing the versions this region holds.
    pub fn library_set(&mut self, name: &[u8], code: Blob) {
        self.effect(name, EffectKind::LibrarySet { code });
    }

    /// `FUNCTION DELETE`: removes the versions of `name` this region
    /// holds; false when it holds none.
    pub fn library_del(&mut self, name: &[u8]) -> bool {
        if self.libraries.get(name).is_none() {
            return false;
        }
        self.effect(name, EffectKind::LibraryDel);
        true
    }

    /// Takes in the context of a merged state: its version vector and clock.
    ///
    /// A peer may hold ops of this region that this region no longer has
    /// (its data directory was lost); once their effects are merged in, the
    /// next local op must come after them, or peers would drop it as one
    /// they already hold.
    pub fn absorb_context(&mut self, vv: &VersionVector, clock: Hlc) {
        self.assert_no_op_in_progress("taking in a merged state's context");
        self.vv.join(vv);
        self.seq = self.seq.max(self.vv.get(self.region));
        self.clock.raise_to(clock);
        self.assert_seq_matches_vv();
    }

    // ----- WATCH -----

    /// Starts watching `key`; returns its modification count.
    pub fn watch(&mut self, key: &[u8]) -> u64 {
        let slot = self.watched.entry(Blob::from(key)).or_insert((0, 0));
        slot.0 += 1;
        slot.1
    }

    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(slot) = self.watched.get_mut(key) {
            slot.0 -= 1;
            if slot.0 == 0 {
                self.watched.remove(key);
            }
        }
    }

    /// How often a watched key was written since the first WATCH of it.
    pub fn watch_version(&mut self, key: &[u8]) -> u64 {
        self.expire_if_due(key);
        self.watched.get(key).map_or(0, |s| s.1)
    }

    // ----- write helpers: observations are read from current state -----

    /// DEL: true if the key was visible.
    pub fn del(&mut self, key: &[u8]) -> bool {
        match self.get(key) {
            Some(e) => {
                let obs = e.observe();
                self.effect(key, EffectKind::Del { obs });
                true
            }
            None => false,
        }
    }

    pub fn set_string(&mut self, key: &[u8], value: Blob, keep_ttl: bool) {
        let obs = self
            .keys
            .get_any(key)
            .map(|e| e.observe())
            .unwrap_or_default();
        self.effect(
            key,
            EffectKind::StrSet {
                value,
                keep_ttl,
                obs,
            },
        );
    }

    /// The dot of the op under construction, or of the next one.
    fn next_dot(&self) -> Dot {
        match &self.building {
            Some(op) => op.tag.dot,
            None => Dot::new(self.region, self.seq + 1),
        }
    }

    /// The counter incarnation this region's next increment goes to.
    fn counter_start(&self, key: &[u8], kind: Kind, sub: Option<&[u8]>) -> u64 {
        let dot = self.next_dot();
        self.keys
            .get_any(key)
            .map_or(dot.seq(), |e| e.counter_start(kind, sub, dot))
    }

    pub fn incr(&mut self, key: &[u8], delta: Delta) {
        // An increment adds to the number the base and counter show: bits
        // patched over it are folded into the base first.
        if let Some(Value::Str(r)) = self.keys.get_any(key).and_then(|e| e.typed(Kind::String)) {
            if r.patch_count() > 0 || r.shown_fields().next().is_some() {
                let whole = Blob::from(&r.render()[..]);
                self.set_string(key, whole, true);
            }
        }
        let start = self.counter_start(key, Kind::String, None);
        self.effect(key, EffectKind::StrIncr { delta, start });
    }

    /// EXPIRE family with `Some(deadline)`, PERSIST with `None`.
    pub fn set_ttl(&mut self, key: &[u8], deadline_ms: Option<u64>) {
        self.effect(key, EffectKind::SetTtl { deadline_ms });
    }

    fn sub_obs(&self, key: &[u8], kind: Kind, subs: &[&[u8]]) -> Vec<SubObs> {
        let Some(entry) = self.keys.get_any(key) else {
            return Vec::new();
        };
        subs.iter()
            .filter_map(|s| {
                let totals = entry.sub_observation(kind, s);
                (!totals.is_empty()).then(|| SubObs {
                    sub: Blob::from(*s),
                    totals,
                })
            })
            .collect()
    }

    pub fn hset(&mut self, key: &[u8], fields: Vec<(Blob, Blob)>) {
        let subs: Vec<&[u8]> = fields.iter().map(|(f, _)| &f[..]).collect();
        let obs = self.sub_obs(key, Kind::Hash, &subs);
        self.effect(key, EffectKind::HSet { fields, obs });
    }

    pub fn hdel(&mut self, key: &[u8], fields: Vec<Blob>) {
        let subs: Vec<&[u8]> = fields.iter().map(|f| &f[..]).collect();
        let obs = self.sub_obs(key, Kind::Hash, &subs);
        self.effect(key, EffectKind::HDel { fields, obs });
    }

    pub fn hincr(&mut self, key: &[u8], field: Blob, delta: Delta) {
        let start = self.counter_start(key, Kind::Hash, Some(&field));
        self.effect(
            key,
            EffectKind::HIncr {
                field,
                delta,
                start,
            },
        );
    }

    pub fn sadd(&mut self, key: &[u8], members: Vec<Blob>) {
        self.effect(key, EffectKind::SAdd { members });
    }

    /// SADD of members already in the set: they get this op's tag, so a
    /// concurrent SREM (which removes only the tags it observed) does not
    /// remove them — add wins — while readers see no change.
    pub fn sadd_again(&mut self, key: &[u8], members: Vec<Blob>) {
        self.effect_unseen(key, EffectKind::SAdd { members });
    }

    pub fn srem(&mut self, key: &[u8], members: Vec<Blob>) {
        self.effect(key, EffectKind::SRem { members });
    }

    pub fn zadd(&mut self, key: &[u8], members: Vec<(Blob, f64)>) {
        let subs: Vec<&[u8]> = members.iter().map(|(m, _)| &m[..]).collect();
        let obs = self.sub_obs(key, Kind::ZSet, &subs);
        self.effect(key, EffectKind::ZAdd { members, obs });
    }

    pub fn zincr(&mut self, key: &[u8], member: Blob, delta: f64) {
        let start = self.counter_start(key, Kind::ZSet, Some(&member));
        self.effect(
            key,
            EffectKind::ZIncr {
                member,
                delta,
                start,
            },
        );
    }

    pub fn zrem(&mut self, key: &[u8], members: Vec<Blob>) {
        let subs: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
        let obs = self.sub_obs(key, Kind::ZSet, &subs);
        self.effect(key, EffectKind::ZRem { members, obs });
    }

    // ----- snapshots -----

    /// Restores the counters a snapshot recorded. The caller has checked
    /// that `seq` is not above the vector's count of this region's ops; a
    /// lower one (written before merged state raised the count) is raised
    /// to it, as [`Db::absorb_context`] does.
    pub fn restore_meta(&mut self, seq: u64, vv: VersionVector, clock: Hlc) {
        self.assert_no_op_in_progress("restoring a snapshot");
        self.seq = seq.max(vv.get(self.region));
        self.vv = vv;
        self.clock.raise_to(clock);
        self.assert_seq_matches_vv();
    }

    /// The libraries a snapshot recorded.
    pub fn load_libraries(&mut self, libraries: Libraries) {
        self.libraries = libraries;
        self.libraries_generation += 1;
    }

    pub fn load_entry(&mut self, key: Blob, entry: Entry) {
        self.keys.load(key, entry);
    }

    pub fn reserve(&mut self, additional: usize) {
        self.keys.reserve(additional);
    }
}

/// A digest of what readers see: every visible key with its type, value
/// (fields, members and scores in sorted order) and whether it has a TTL.
/// Regions holding the same data have equal digests, whatever order their
/// ops arrived in; it is what tests and the demo compare across regions.
pub fn visible_digest(db: &Db) -> (u64, usize) {
    use meridian_crdt::Value;
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, b: &[u8]) {
            for chunk in [&(b.len() as u64).to_le_bytes()[..], b] {
                for &x in chunk {
                    self.0 ^= x as u64;
                    self.0 = self.0.wrapping_mul(0x100000001b3);
                }
            }
        }
    }
    let mut keys: Vec<(&Blob, &Entry)> = db.keyspace().iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Fnv(0xcbf29ce484222325);
    for (k, e) in &keys {
        h.bytes(k);
        h.bytes(e.kind().name().as_bytes());
        h.bytes(&[e.deadline_ms().is_some() as u8]);
        match e.value() {
            Value::Str(r) => h.bytes(&r.render()),
            Value::Hash(hv) => {
                let mut fields: Vec<(&Blob, Vec<u8>)> = hv
                    .fields
                    .live
                    .iter()
                    .map(|(f, v)| (f, v.render().into_owned()))
                    .collect();
                fields.sort();
                for (f, v) in fields {
                    h.bytes(f);
                    h.bytes(&v);
                }
            }
            Value::Set(s) => {
                let mut members: Vec<&Blob> = s.members.live.keys().collect();
                members.sort();
                for m in members {
                    h.bytes(m);
                }
            }
            Value::ZSet(z) => {
                for (score, m) in &z.index {
                    h.bytes(m);
                    h.bytes(&score.0.to_bits().to_le_bytes());
                }
            }
            Value::List(l) => {
                for v in l.values() {
                    h.bytes(v);
                }
            }
            Value::Stream(s) => {
                for (id, fields) in
                    s.range(meridian_crdt::StreamId::ZERO, meridian_crdt::StreamId::MAX)
                {
                    h.bytes(id.to_string().as_bytes());
                    for f in fields.iter() {
                        h.bytes(f);
                    }
                }
                let meta = format!("{} {} {}", s.last_id(), s.entries_added(), s.max_deleted());
                h.bytes(meta.as_bytes());
                for (name, g) in s.groups() {
                    h.bytes(name);
                    let (last, read) = g.last_delivered();
                    h.bytes(format!("{last} {read:?}").as_bytes());
                    for (id, n) in g.pending() {
                        let shown = format!("{id} {} {}", n.delivered_ms, n.count);
                        h.bytes(shown.as_bytes());
                        h.bytes(&n.consumer);
                    }
                    for (c, seen) in g.consumers() {
                        h.bytes(c);
                        h.bytes(&seen.to_le_bytes());
                    }
                }
            }
        }
    }
    (h.0, keys.len())
}
