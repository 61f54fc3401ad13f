//! Counters a proxy keeps, so a test can check what the link actually did
//! (bytes through, connections cut, chunks "lost") rather than infer it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::conn::Way;

/// A snapshot of one proxy's counters. Totals only grow; the `*_queued_*` and
/// `connections_active` fields are gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes delivered to the target (A→B).
    pub bytes_forward: u64,
    /// Bytes delivered back to the dialer (A←B).
    pub bytes_backward: u64,
    /// Bytes read but never delivered because their connection was cut or
    /// failed.
    pub bytes_discarded: u64,
    /// Bytes read and waiting for their delivery time, now, per direction.
    pub bytes_queued_forward: u64,
    pub bytes_queued_backward: u64,
    /// Chunks that drew "lost" and paid the retransmission penalty.
    pub chunks_lost: u64,
    /// Every connection the listener accepted, including refused ones.
    pub connections_accepted: u64,
    /// Accepted connections closed at once without forwarding anything: the
    /// link was down, the target unknown or unreachable, or the connection
    /// limit reached.
    pub connections_refused: u64,
    /// Established connections closed because the link went down.
    pub connections_cut: u64,
    /// Connections being forwarded now.
    pub connections_active: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes: [AtomicU64; 2],
    queued: [AtomicU64; 2],
    bytes_discarded: AtomicU64,
    chunks_lost: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_cut: AtomicU64,
    connections_active: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LinkStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            bytes_forward: get(&self.bytes[0]),
            bytes_backward: get(&self.bytes[1]),
            bytes_discarded: get(&self.bytes_discarded),
            bytes_queued_forward: get(&self.queued[0]),
            bytes_queued_backward: get(&self.queued[1]),
            chunks_lost: get(&self.chunks_lost),
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            connections_cut: get(&self.connections_cut),
            connections_active: get(&self.connections_active),
        }
    }

    pub(crate) fn delivered(&self, way: Way, len: usize) {
        self.bytes[way.index()].fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self, way: Way, len: usize) {
        self.queued[way.index()].fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn dequeued(&self, way: Way, len: usize) {
        self.queued[way.index()].fetch_sub(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn discarded(&self, len: usize) {
        self.bytes_discarded
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn lost(&self) {
        self.chunks_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accepted(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cut(&self) {
        self.connections_cut.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn opened(&self) {
        self.connections_active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn active_now(&self) -> u64 {
        self.connections_active.load(Ordering::Relaxed)
    }
}
