//! The receiving half of a link as a state machine without I/O: apply a
//! batch of the sender's log records under the store lock, say whether the
//! driver must flush before acknowledging, and build the acknowledgement.
//!
//! A stream is a log in the sender's apply order, so records are applied in
//! arrival order: an op whose dot this region's vector covers is skipped
//! (idempotent apply), an op whose dependencies are missing stops the batch
//! and resets the link, and every applied op is appended to this region's
//! log so it is shipped onward (relaying). The tokio receiver
//! ([`crate::receiver`]) and the simulator drive the same code.
//!
//! A receiver that told its sender which origins it streams from directly
//! (the `direct` list of its acknowledgements) gets no relayed ops of
//! those origins on this link, so an op here may depend on one still on
//! its way over another link. Such an op, and everything after it on this
//! link, waits in arrival order ([`Inbound::retry`] after other links
//! applied), bounded in size; the driver gives up on a wait that lasts
//! past [`WAIT_MAX_MS`] and resets the link.

use std::collections::VecDeque;

use meridian_crdt::{ClockAhead, Op, RegionId, Tag, VersionVector};
use meridian_store::{PeerApply, Store, StoreError};

use crate::wire::Msg;

/// What a receiver acknowledges: how far it read the sender's log, what it
/// holds, and the part of that on its stable storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// How far the sender's log is applied here: records still waiting for
    /// their dependencies are not (so the sender's log keeps them).
    pub upto_lsn: u64,
    pub vv: VersionVector,
    /// Senders collect tombstones only once every data member holds the
    /// resets durably, so the acknowledgement carries the durable vector.
    pub durable_vv: VersionVector,
    /// Origins this region streams from directly, whose ops the sender
    /// need not relay here.
    pub direct: Vec<RegionId>,
}

/// Records waiting for their dependencies, at most this many bytes per
/// link…
pub const WAIT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// …and at most this long: a dependency that has not come directly by then
/// will not soon, so the link resets and the receiver asks for every op.
pub const WAIT_MAX_MS: u64 = 3_000;

impl Ack {
    /// The message that carries it, stamped with this region's wall clock
    /// (the sender derives the clock offset from it).
    pub fn into_msg(self, wall_ms: u64) -> Msg {
        Msg::Ack {
            upto_lsn: self.upto_lsn,
            vv: self.vv,
            durable_vv: self.durable_vv,
            wall_ms,
            direct: self.direct,
        }
    }
}

/// Changes an op before it is applied. Only the simulator's deliberate
/// breakages use one, to prove its checkers catch a receiver that applies
/// something other than what was sent; the server passes none.
pub trait OpHook {
    /// Called for each decoded op of a batch from `sender`, before the op
    /// is applied to `store`; returns whether it changed `op`.
    fn before_apply(&mut self, sender: RegionId, store: &Store, op: &mut Op) -> bool;
}

/// Why a batch stopped before its end. The records before the failing one
/// stay applied; the driver resets the link either way.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The op's causal context is not covered here: the stream is not a
    /// log in apply order from this region's point of view.
    #[error("an op's dependencies are missing: {0}")]
    MissingDependencies(#[source] StoreError),
    /// More records waited for their dependencies than a link may hold.
    #[error("{0} bytes of ops wait for dependencies that do not come")]
    WaitedTooMuch(usize),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> ApplyError {
        match e {
            e @ StoreError::NotReady(_) => ApplyError::MissingDependencies(e),
            e => ApplyError::Store(e),
        }
    }
}

/// What applying one batch did.
#[derive(Debug, Default)]
pub struct Applied {
    pub applied: u64,
    pub duplicates: u64,
    /// Apply time minus each applied op's HLC wall time, in ms.
    pub lags_ms: Vec<u64>,
    /// The last applied op stamped ahead of this region's clock beyond the
    /// allowed offset.
    pub clock_ahead: Option<ClockAhead>,
    /// Why the batch stopped early; `None` when every record was taken.
    pub failed: Option<ApplyError>,
}

impl Applied {
    fn took(&mut self, applied: PeerApply, record: &[u8], now_ms: u64) {
        match applied {
            PeerApply::Applied { clock_ahead, .. } => {
                self.applied += 1;
                if let Ok((tag, _)) = postcard::take_from_bytes::<Tag>(record) {
                    self.lags_ms.push(now_ms.saturating_sub(tag.hlc.wall_ms()));
                }
                if clock_ahead.is_some() {
                    self.clock_ahead = clock_ahead;
                }
            }
            PeerApply::Duplicate => self.duplicates += 1,
        }
    }

    /// Whether the driver flushes the log before it acknowledges: a whole
    /// batch was applied, and flushing hands its records to the OS so the
    /// fsync that follows within ~2 ms makes them durable, and so shippable
    /// onward. A failed batch is not acknowledged: the link resets.
    pub fn needs_flush(&self) -> bool {
        self.failed.is_none()
    }
}

/// One connection's receiving side.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The region that dialed and streams its log here.
    peer: RegionId,
    /// Records that came before their dependencies, in arrival order; the
    /// last record of each batch carries the batch's position.
    waiting: VecDeque<(Vec<u8>, Option<u64>)>,
    waiting_bytes: usize,
    /// When the oldest waiting record began to wait.
    waiting_since_ms: Option<u64>,
    /// The position of the last batch applied whole.
    applied_upto: u64,
    /// An acknowledgement on this link asked for no relays of some origin:
    /// from then on a record may come before its dependencies and waits.
    may_wait: bool,
}

impl Inbound {
    pub fn new(peer: RegionId) -> Inbound {
        Inbound {
            peer,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            waiting_since_ms: None,
            applied_upto: 0,
            may_wait: false,
        }
    }

    /// Records waiting for their dependencies.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether the oldest waiting record has waited past [`WAIT_MAX_MS`]
    /// at `now_ms`: the driver resets the link.
    pub fn waited_too_long(&self, now_ms: u64) -> bool {
        self.waiting_since_ms
            .is_some_and(|since| now_ms.saturating_sub(since) > WAIT_MAX_MS)
    }

    /// When the oldest waiting record has waited too long.
    pub fn wait_deadline_ms(&self) -> Option<u64> {
        self.waiting_since_ms.map(|since| since + WAIT_MAX_MS + 1)
    }

    pub fn peer(&self) -> RegionId {
        self.peer
    }

    /// Applies `records` in order at this region's wall time `now_ms`,
    /// appending each applied op to the log (so it is relayed), until one
    /// fails. `hook` may change each op first (the simulator's breakage).
    pub fn apply(
        &mut self,
        store: &mut Store,
        now_ms: u64,
        upto_lsn: u64,
        records: &[Vec<u8>],
        mut hook: Option<&mut dyn OpHook>,
    ) -> Applied {
        let mut out = Applied {
            lags_ms: Vec::with_capacity(records.len()),
            ..Applied::default()
        };
        store.db_mut().set_now_ms(now_ms);
        if !self.waiting.is_empty() {
            // Behind records that wait: this batch waits too, in order.
            self.wait_rest(store, hook, records, 0, upto_lsn);
            if records.is_empty() {
                self.wait_position(upto_lsn);
            }
            return self.retry_into(store, now_ms, out);
        }
        for (i, record) in records.iter().enumerate() {
            let changed = hook
                .as_deref_mut()
                .and_then(|hook| self.hooked(hook, store, record));
            let record = changed.as_deref().unwrap_or(record);
            match store.apply_peer_op(record, now_ms) {
                Ok(applied) => out.took(applied, record, now_ms),
                Err(StoreError::NotReady(_)) if self.may_wait => {
                    self.waiting_since_ms = Some(now_ms);
                    let last = (i + 1 == records.len()).then_some(upto_lsn);
                    self.wait(record.to_vec(), last);
                    self.wait_rest(store, hook.as_deref_mut(), records, i + 1, upto_lsn);
                    break;
                }
                Err(e) => {
                    out.failed = Some(e.into());
                    break;
                }
            }
        }
        if self.waiting.is_empty() && out.failed.is_none() {
            self.applied_upto = self.applied_upto.max(upto_lsn);
        }
        if self.waiting_bytes > WAIT_MAX_BYTES {
            out.failed = Some(ApplyError::WaitedTooMuch(self.waiting_bytes));
        }
        out
    }

    /// Applies what waits for its dependencies, in order, as far as they
    /// are here now (another link applied them).
    pub fn retry(&mut self, store: &mut Store, now_ms: u64) -> Applied {
        store.db_mut().set_now_ms(now_ms);
        self.retry_into(store, now_ms, Applied::default())
    }

    fn retry_into(&mut self, store: &mut Store, now_ms: u64, mut out: Applied) -> Applied {
        while let Some((record, upto)) = self.waiting.front() {
            match store.apply_peer_op(record, now_ms) {
                Ok(applied) => out.took(applied, record, now_ms),
                Err(StoreError::NotReady(_)) => break,
                Err(e) => {
                    out.failed = Some(e.into());
                    return out;
                }
            }
            if let Some(upto) = *upto {
                self.applied_upto = self.applied_upto.max(upto);
            }
            let (record, _) = self.waiting.pop_front().expect("the front record");
            self.waiting_bytes -= record.len();
            // The next record has waited since now, at the most.
            self.waiting_since_ms = Some(now_ms);
        }
        if self.waiting.is_empty() {
            self.waiting_since_ms = None;
        }
        if self.waiting_bytes > WAIT_MAX_BYTES {
            out.failed = Some(ApplyError::WaitedTooMuch(self.waiting_bytes));
        }
        out
    }

    /// Queues `records[from..]`, each as `hook` changes it, behind what
    /// waits; the batch's last record carries its position.
    fn wait_rest(
        &mut self,
        store: &Store,
        mut hook: Option<&mut (dyn OpHook + '_)>,
        records: &[Vec<u8>],
        from: usize,
        upto_lsn: u64,
    ) {
        for (i, record) in records.iter().enumerate().skip(from) {
            let changed = hook
                .as_deref_mut()
                .and_then(|hook| self.hooked(hook, store, record));
            let last = (i + 1 == records.len()).then_some(upto_lsn);
            self.wait(changed.unwrap_or_else(|| record.clone()), last);
        }
    }

    fn wait(&mut self, record: Vec<u8>, upto: Option<u64>) {
        self.waiting_bytes += record.len();
        self.waiting.push_back((record, upto));
    }

    /// A heartbeat's position while records wait: reached once they are
    /// applied.
    fn wait_position(&mut self, upto_lsn: u64) {
        if let Some(last) = self.waiting.back_mut() {
            last.1 = Some(last.1.map_or(upto_lsn, |u| u.max(upto_lsn)));
        }
    }

    /// The record `hook` made of `record`, if it changed the op. A record
    /// that does not decode is left for the store to refuse.
    fn hooked(&self, hook: &mut dyn OpHook, store: &Store, record: &[u8]) -> Option<Vec<u8>> {
        let mut op: Op = postcard::from_bytes(record).ok()?;
        if !hook.before_apply(self.peer, store, &mut op) {
            return None;
        }
        Some(postcard::to_stdvec(&op).expect("an op that decoded encodes again"))
    }

    /// The acknowledgement of the sender's log up to `upto_lsn` (a batch
    /// applied and flushed, or a heartbeat's position; while records wait,
    /// only as far as every record is applied), as `store` holds it, and
    /// the origins this region streams from directly. Once `direct` names
    /// one, records of this link may come before their dependencies.
    pub fn ack(&mut self, store: &mut Store, upto_lsn: u64, mut direct: Vec<RegionId>) -> Ack {
        direct.retain(|r| *r != self.peer);
        if !direct.is_empty() {
            self.may_wait = true;
        }
        if self.waiting.is_empty() {
            self.applied_upto = self.applied_upto.max(upto_lsn);
        } else {
            self.wait_position(upto_lsn);
        }
        let vv = store.db().version_vector().clone();
        Ack {
            upto_lsn: self.applied_upto,
            vv,
            durable_vv: store.durable_vv().clone(),
            direct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::Blob;
    use meridian_log::ReadBound;
    use meridian_store::StoreOptions;

    fn open(dir: &std::path::Path, region: &str) -> Store {
        let me = RegionId::new(region).unwrap();
        Store::open(StoreOptions::new(dir.join(region), me))
            .unwrap()
            .0
    }

    /// Sets `key` to `value` in `store` and returns the synced record.
    fn set(store: &mut Store, key: &str, value: &str) -> Vec<u8> {
        store.db_mut().set_now_ms(1_000);
        store
            .db_mut()
            .set_string(key.as_bytes(), Blob::from(value), false);
        store.commit().unwrap();
        store.sync().unwrap();
        let last = store.log().last_lsn();
        let mut reader = store.log().reader_bounded(last, ReadBound::Synced).unwrap();
        reader.next().unwrap().unwrap().1
    }

    fn logged(store: &Store) -> Vec<Vec<u8>> {
        let reader = store.log().reader_bounded(1, ReadBound::Flushed).unwrap();
        reader.map(|r| r.unwrap().1).collect()
    }

    #[test]
    fn applied_ops_are_relayed_and_a_covered_op_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (open(dir.path(), "a"), open(dir.path(), "b"));
        let batch = vec![set(&mut a, "k", "1"), set(&mut a, "k", "2")];
        let mut inbound = Inbound::new(RegionId::new("a").unwrap());
        let first = inbound.apply(&mut b, 2_000, 2, &batch, None);
        assert_eq!((first.applied, first.duplicates), (2, 0));
        assert_eq!(first.lags_ms.len(), 2);
        assert!(first.needs_flush());
        b.flush().unwrap();
        assert_eq!(logged(&b), batch, "b appends what it applied, to relay it");
        let again = inbound.apply(&mut b, 2_000, 2, &batch, None);
        assert_eq!((again.applied, again.duplicates), (0, 2));
        assert_eq!(logged(&b).len(), 2, "a duplicate is not logged again");
        let ack = inbound.ack(&mut b, 7, Vec::new());
        assert_eq!(ack.upto_lsn, 7);
        assert_eq!(&ack.vv, a.db().version_vector());
        assert!(matches!(
            ack.into_msg(3).clone(),
            Msg::Ack { wall_ms: 3, .. }
        ));
    }

    #[test]
    fn an_op_whose_dependencies_are_missing_stops_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (open(dir.path(), "a"), open(dir.path(), "b"));
        let first = set(&mut a, "k", "1");
        let second = set(&mut a, "k", "2");
        let mut inbound = Inbound::new(RegionId::new("a").unwrap());
        let out = inbound.apply(&mut b, 2_000, 2, &[second, first], None);
        assert_eq!((out.applied, out.duplicates), (0, 0));
        assert!(matches!(
            out.failed,
            Some(ApplyError::MissingDependencies(_))
        ));
        assert!(!out.needs_flush());
        assert!(
            b.db().version_vector().is_empty(),
            "nothing after it applied"
        );
    }

    /// Drops the effects of every op it sees, as the simulator's
    /// `lose-relayed-effects` breakage does to some.
    struct DropEffects(Vec<RegionId>);

    impl OpHook for DropEffects {
        fn before_apply(&mut self, sender: RegionId, _: &Store, op: &mut Op) -> bool {
            self.0.push(sender);
            op.effects.clear();
            true
        }
    }

    #[test]
    fn a_hook_changes_what_is_applied_and_relayed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (open(dir.path(), "a"), open(dir.path(), "b"));
        let record = set(&mut a, "k", "1");
        let mut hook = DropEffects(Vec::new());
        let mut inbound = Inbound::new(RegionId::new("a").unwrap());
        let out = inbound.apply(
            &mut b,
            2_000,
            1,
            std::slice::from_ref(&record),
            Some(&mut hook),
        );
        assert_eq!(out.applied, 1);
        assert_eq!(hook.0, vec![RegionId::new("a").unwrap()]);
        b.flush().unwrap();
        let relayed = logged(&b);
        assert_eq!(relayed.len(), 1);
        assert_ne!(relayed[0], record, "the changed op is what b relays");
        assert!(b.db_mut().get(b"k").is_none(), "its effects were dropped");
    }

    /// Applies `records` to `store` as a link from `from` would.
    fn take(store: &mut Store, from: &str, records: &[Vec<u8>]) {
        let mut inbound = Inbound::new(RegionId::new(from).unwrap());
        let out = inbound.apply(store, 2_000, 1, records, None);
        assert!(out.failed.is_none() && inbound.waiting() == 0);
    }

    #[test]
    fn an_op_that_comes_before_a_dependency_streamed_directly_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b, mut c) = (
            open(dir.path(), "a"),
            open(dir.path(), "b"),
            open(dir.path(), "c"),
        );
        let (ra, rb) = (RegionId::new("a").unwrap(), RegionId::new("b").unwrap());
        // b writes; a applies it, then writes over it.
        let from_b = set(&mut b, "k", "b");
        take(&mut a, "b", std::slice::from_ref(&from_b));
        let from_a = set(&mut a, "k", "a");
        let later_a = set(&mut a, "j", "a");

        // c told a it streams from b directly, so a did not relay b's op.
        let mut link_a = Inbound::new(ra);
        let ack = link_a.ack(&mut c, 0, vec![rb, ra]);
        assert_eq!(ack.direct, vec![rb], "the sender itself is not listed");
        let out = link_a.apply(&mut c, 2_000, 5, std::slice::from_ref(&from_a), None);
        assert!(out.failed.is_none(), "{:?}", out.failed);
        assert_eq!((out.applied, link_a.waiting()), (0, 1));
        let out = link_a.apply(&mut c, 2_100, 6, std::slice::from_ref(&later_a), None);
        assert_eq!((out.applied, link_a.waiting()), (0, 2), "it waits behind");
        assert_eq!(
            link_a.ack(&mut c, 6, vec![rb]).upto_lsn,
            0,
            "nothing applied yet"
        );
        assert!(!link_a.waited_too_long(2_000 + WAIT_MAX_MS));
        assert!(link_a.waited_too_long(2_001 + WAIT_MAX_MS));

        // b's op arrives over c's link from b; the waiting ops follow.
        take(&mut c, "b", std::slice::from_ref(&from_b));
        let out = link_a.retry(&mut c, 2_200);
        assert_eq!((out.applied, link_a.waiting()), (2, 0));
        assert_eq!(c.db().version_vector(), a.db().version_vector());
        assert_eq!(link_a.ack(&mut c, 6, vec![rb]).upto_lsn, 6);
        assert_eq!(link_a.wait_deadline_ms(), None);
    }

    #[test]
    fn without_a_direct_origin_named_a_missing_dependency_still_resets() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b, mut c) = (
            open(dir.path(), "a"),
            open(dir.path(), "b"),
            open(dir.path(), "c"),
        );
        let from_b = set(&mut b, "k", "b");
        take(&mut a, "b", std::slice::from_ref(&from_b));
        let from_a = set(&mut a, "k", "a");
        let mut link_a = Inbound::new(RegionId::new("a").unwrap());
        let ack = link_a.ack(&mut c, 0, vec![RegionId::new("a").unwrap()]);
        assert!(ack.direct.is_empty());
        let out = link_a.apply(&mut c, 2_000, 1, &[from_a], None);
        assert!(matches!(
            out.failed,
            Some(ApplyError::MissingDependencies(_))
        ));
        assert_eq!(link_a.waiting(), 0);
    }
}
