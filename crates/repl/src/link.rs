//! The streaming half of a link as a state machine without I/O: where it
//! resumes, which log records go out, in what batches, when the position is
//! announced, and what the receiver's acknowledgements say.
//!
//! The driver reads the log in order (records on stable storage only) and
//! offers each record; the stream keeps those whose op the receiver's
//! vector does not cover, so a receiver never gets an op twice on one
//! connection unless it acknowledged nothing newer. The tokio sender
//! ([`crate::sender`]) and the simulator drive the same stream.

use meridian_crdt::{Tag, VersionVector};
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
            batch: Vec::new(),
            batch_bytes: 0,
        }
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
        if !self.peer_vv.covers(tag.dot) {
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
}
