//! The streaming half of a link as a state machine without I/O: where it
//! resumes, which log records go out, in what batches, when the position is
//! announced, and what the receiver's acknowledgements say.
//!
//! The driver reads the log in order (records on stable storage only) and
//! offers each record; the stream keeps those whose op the receiver's
//! vector does not cover, so a receiver never gets an op twice on one
//! connection unless it acknowledged nothing newer. The tokio sender
//! ([`crate::sender`]) and the simulator drive the same stream.
//!
//! Ops another region made are relayed only to a receiver that does not
//! stream from that region itself: its acknowledgements name the origins
//! it gets directly ([`Stream::set_direct`]), and their ops are skipped
//! here, since the receiver gets them from their origin. When an origin
//! leaves that list, the stream starts again from the receiver's vector,
//! so the ops it skipped go out after all.

use meridian_crdt::{RegionId, Tag, VersionVector};
use meridian_store::Store;

/// A log record that does not start with its op's tag.
#[derive(Debug, thiserror::Error)]
#[error("undecodable log record {lsn}: {source}")]
pub struct UndecodableRecord {
    pub lsn: u64,
    pub source: postcard::Error,
}

/// Records for one `Ops` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The last record read for it (shipped or skipped).
    pub upto_lsn: u64,
    pub records: Vec<Vec<u8>>,
}

/// One connection's stream of this region's log to a receiver.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The last record read (shipped or skipped).
    upto_lsn: u64,
    /// The position last sent, in an `Ops` or a heartbeat.
    announced_lsn: u64,
    /// What the receiver holds, from its `Welcome` or a session, then from
    /// its acknowledgements.
    peer_vv: VersionVector,
    /// Origins the receiver streams from directly: their ops are not
    /// relayed to it.
    direct: Vec<RegionId>,
    /// The receiver, when it holds every op it made that this region
    /// holds: its own ops are not echoed back to it.
    echo_free: Option<RegionId>,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
}

impl Stream {
    /// A stream to a receiver at `peer_vv`, from the first record it may
    /// lack ([`Store::resume_lsn`]).
    pub fn resume(store: &Store, peer_vv: VersionVector) -> Stream {
        Stream::from_lsn(store.resume_lsn(&peer_vv), peer_vv)
    }

    /// A stream from `lsn` on; records before it are taken as announced.
    pub fn from_lsn(lsn: u64, peer_vv: VersionVector) -> Stream {
        let upto_lsn = lsn.saturating_sub(1);
        Stream {
            upto_lsn,
            announced_lsn: upto_lsn,
            peer_vv,
            direct: Vec::new(),
            echo_free: None,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// Leaves out the receiver's own ops, which it made and so holds,
    /// when its vector (at the start of the stream) shows it holds every
    /// op of its own that `store` does: an acknowledgement may not yet
    /// cover an op the receiver just made, and without this the op would
    /// go back to it. A receiver that lacks some of its own ops (restored
    /// from an old copy) gets them.
    pub fn without_echoes(mut self, store: &Store, peer: RegionId) -> Stream {
        let theirs = store.db().version_vector().get(peer);
        if self.peer_vv.get(peer) >= theirs {
            self.echo_free = Some(peer);
        }
        self
    }

    /// The next record to offer.
    pub fn next_lsn(&self) -> u64 {
        self.upto_lsn + 1
    }

    pub fn upto_lsn(&self) -> u64 {
        self.upto_lsn
    }

    pub fn peer_vv(&self) -> &VersionVector {
        &self.peer_vv
    }

    /// Whether the batch being built takes another record.
    pub fn has_room(&self, ops_max: usize, bytes_max: usize) -> bool {
        self.batch.len() < ops_max && self.batch_bytes < bytes_max
    }

    /// The next record in log order: it joins the batch unless the
    /// receiver holds its op.
    pub fn offer(&mut self, lsn: u64, payload: Vec<u8>) -> Result<(), UndecodableRecord> {
        let (tag, _) = postcard::take_from_bytes::<Tag>(&payload)
            .map_err(|source| UndecodableRecord { lsn, source })?;
        self.upto_lsn = lsn;
        let origin = tag.dot.region();
        if !self.peer_vv.covers(tag.dot)
            && !self.direct.contains(&origin)
            && self.echo_free != Some(origin)
        {
            self.batch_bytes += payload.len();
            self.batch.push(payload);
        }
        Ok(())
    }

    /// The batch built so far, if it holds a record; its position counts
    /// as announced.
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.batch.is_empty() {
            return None;
        }
        self.batch_bytes = 0;
        self.announced_lsn = self.upto_lsn;
        Some(Batch {
            upto_lsn: self.upto_lsn,
            records: std::mem::take(&mut self.batch),
        })
    }

    /// The position a heartbeat should announce now: always when `due`
    /// (the heartbeat interval passed), else only when records the
    /// receiver already had moved it.
    pub fn announce(&mut self, due: bool) -> Option<u64> {
        if !due && self.upto_lsn <= self.announced_lsn {
            return None;
        }
        self.announced_lsn = self.upto_lsn;
        Some(self.upto_lsn)
    }

    /// The receiver acknowledged holding `vv`: records it covers are
    /// skipped from now on.
    pub fn acked(&mut self, vv: VersionVector) {
        self.peer_vv = vv;
    }

    /// The origins the receiver now streams from directly, by its latest
    /// acknowledgement; this region's own ops are never left out, whatever
    /// the list says. Returns true when an origin left the list: ops of it
    /// already skipped may be ones the receiver lacks, so the caller
    /// starts the stream again from the receiver's vector
    /// ([`Stream::resume`]) and hands it this list.
    pub fn set_direct(&mut self, me: RegionId, mut direct: Vec<RegionId>) -> bool {
        direct.retain(|r| *r != me);
        direct.sort_unstable();
        direct.dedup();
        let lost = self.direct.iter().any(|r| !direct.contains(r));
        self.direct = direct;
        lost
    }

    pub fn direct(&self) -> &[RegionId] {
        &self.direct
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::{Dot, Hlc, RegionId};

    fn record(region: &str, seq: u64) -> Vec<u8> {
        let dot = Dot::new(RegionId::new(region).unwrap(), seq);
        let tag = Tag { hlc: Hlc(seq), dot };
        postcard::to_stdvec(&tag).unwrap()
    }

    #[test]
    fn records_the_receiver_holds_are_skipped_but_move_the_position() {
        let mut held = VersionVector::new();
        held.set(RegionId::new("a").unwrap(), 1);
        let mut s = Stream::from_lsn(5, held);
        assert_eq!(s.next_lsn(), 5);
        s.offer(5, record("a", 1)).unwrap();
        assert_eq!(s.take_batch(), None, "the receiver holds a:1");
        assert_eq!(s.announce(false), Some(5), "skipped records still move it");
        assert_eq!(s.announce(false), None);
        s.offer(6, record("b", 1)).unwrap();
        s.offer(7, record("a", 2)).unwrap();
        let batch = s.take_batch().unwrap();
        assert_eq!((batch.upto_lsn, batch.records.len()), (7, 2));
        assert_eq!(s.announce(false), None, "a batch announces its position");
        assert_eq!(s.announce(true), Some(7));
    }

    #[test]
    fn a_batch_is_bounded_and_acks_narrow_what_is_sent() {
        let mut s = Stream::from_lsn(1, VersionVector::new());
        s.offer(1, record("a", 1)).unwrap();
        assert!(s.has_room(2, 1 << 20));
        s.offer(2, record("a", 2)).unwrap();
        assert!(!s.has_room(2, 1 << 20));
        assert_eq!(s.take_batch().unwrap().records.len(), 2);
        let mut vv = VersionVector::new();
        vv.set(RegionId::new("a").unwrap(), 3);
        s.acked(vv);
        s.offer(3, record("a", 3)).unwrap();
        assert_eq!(s.take_batch(), None);
        assert!(s.offer(4, vec![0xff; 3]).is_err());
    }

    #[test]
    fn a_receiver_that_holds_its_own_ops_gets_none_back() {
        let dir = tempfile::tempdir().unwrap();
        let b = RegionId::new("b").unwrap();
        let opts =
            meridian_store::StoreOptions::new(dir.path().join("a"), RegionId::new("a").unwrap());
        let (store, _) = Store::open(opts).unwrap();
        let mut s = Stream::from_lsn(1, VersionVector::new()).without_echoes(&store, b);
        s.offer(1, record("b", 1)).unwrap();
        s.offer(2, record("a", 1)).unwrap();
        assert_eq!(s.take_batch().unwrap().records, vec![record("a", 1)]);
    }

    #[test]
    fn ops_of_an_origin_the_receiver_streams_directly_are_not_relayed() {
        let [a, b, c] = ["a", "b", "c"].map(|r| RegionId::new(r).unwrap());
        let mut s = Stream::from_lsn(1, VersionVector::new());
        assert!(
            !s.set_direct(a, vec![b, a, b]),
            "nothing was left out before"
        );
        assert_eq!(s.direct(), &[b], "this region's own ops always go out");
        s.offer(1, record("b", 1)).unwrap();
        s.offer(2, record("a", 1)).unwrap();
        s.offer(3, record("c", 1)).unwrap();
        let batch = s.take_batch().unwrap();
        assert_eq!(batch.upto_lsn, 3, "skipped records still move the position");
        assert_eq!(batch.records, vec![record("a", 1), record("c", 1)]);
        assert!(!s.set_direct(a, vec![b, c]), "a longer list skips more");
        assert!(s.set_direct(a, vec![c]), "b left: its skipped ops are due");
        assert!(!s.set_direct(a, vec![c]));
    }
}
