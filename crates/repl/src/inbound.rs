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

use meridian_crdt::{ClockAhead, Op, RegionId, Tag, VersionVector};
use meridian_store::{PeerApply, Store, StoreError};

use crate::wire::Msg;

/// What a receiver acknowledges: how far it read the sender's log, what it
/// holds, and the part of that on its stable storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub upto_lsn: u64,
    pub vv: VersionVector,
    /// Senders collect tombstones only once every data member holds the
    /// resets durably, so the acknowledgement carries the durable vector.
    pub durable_vv: VersionVector,
}

impl Ack {
    /// The message that carries it, stamped with this region's wall clock
    /// (the sender derives the clock offset from it).
    pub fn into_msg(self, wall_ms: u64) -> Msg {
        Msg::Ack {
            upto_lsn: self.upto_lsn,
            vv: self.vv,
            durable_vv: self.durable_vv,
            wall_ms,
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
}

impl Inbound {
    pub fn new(peer: RegionId) -> Inbound {
        Inbound { peer }
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
        records: &[Vec<u8>],
        mut hook: Option<&mut dyn OpHook>,
    ) -> Applied {
        let mut out = Applied {
            lags_ms: Vec::with_capacity(records.len()),
            ..Applied::default()
        };
        store.db_mut().set_now_ms(now_ms);
        for record in records {
            let changed = hook
                .as_deref_mut()
                .and_then(|hook| self.hooked(hook, store, record));
            let record = changed.as_deref().unwrap_or(record);
            match store.apply_peer_op(record, now_ms) {
                Ok(PeerApply::Applied { clock_ahead, .. }) => {
                    out.applied += 1;
                    if let Ok((tag, _)) = postcard::take_from_bytes::<Tag>(record) {
                        out.lags_ms.push(now_ms.saturating_sub(tag.hlc.wall_ms()));
                    }
                    if clock_ahead.is_some() {
                        out.clock_ahead = clock_ahead;
                    }
                }
                Ok(PeerApply::Duplicate) => out.duplicates += 1,
                Err(e) => {
                    out.failed = Some(e.into());
                    break;
                }
            }
        }
        out
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
    /// applied and flushed, or a heartbeat's position), as `store` holds it.
    pub fn ack(&self, store: &mut Store, upto_lsn: u64) -> Ack {
        let vv = store.db().version_vector().clone();
        Ack {
            upto_lsn,
            vv,
            durable_vv: store.durable_vv().clone(),
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
        let first = inbound.apply(&mut b, 2_000, &batch, None);
        assert_eq!((first.applied, first.duplicates), (2, 0));
        assert_eq!(first.lags_ms.len(), 2);
        assert!(first.needs_flush());
        b.flush().unwrap();
        assert_eq!(logged(&b), batch, "b appends what it applied, to relay it");
        let again = inbound.apply(&mut b, 2_000, &batch, None);
        assert_eq!((again.applied, again.duplicates), (0, 2));
        assert_eq!(logged(&b).len(), 2, "a duplicate is not logged again");
        let ack = inbound.ack(&mut b, 7);
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
        let out = inbound.apply(&mut b, 2_000, &[second, first], None);
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
}
