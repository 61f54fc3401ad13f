//! The simulated network: one replication link per directed region pair,
//! carrying what `meridian_repl::sender` ships over its TCP connection.
//!
//! The dialing side streams its op log from the receiver's version vector
//! (`Store::resume_lsn`), records up to the synced LSN, in log order,
//! skipping records the receiver is known to hold, as the replication
//! crate's [`Stream`] decides for the server; the receiver applies each
//! batch through the crate's [`Inbound`], flushes, and acknowledges with
//! its version vector. Messages of one
//! link keep their order (a TCP stream); links overtake each other.
//!
//! When the dialer's log cannot bring the receiver up to date
//! (`antientropy::needs_state`), or after a state merge raised the dialer's
//! vector, the link first runs an anti-entropy session: the dialer's
//! [`DialerSession`] and the receiver's [`Acceptor`] exchange their wire
//! messages over the link, as `meridian_repl::antientropy` does over TCP.

use std::collections::VecDeque;

use meridian_cluster::ElectionMsg;
use meridian_crdt::{RegionId, VersionVector};
use meridian_repl::antientropy::session::{Acceptor, DialerSession};
use meridian_repl::handshake::{AcceptorHandshake, DialerHandshake};
use meridian_repl::inbound::{Ack, Inbound};
use meridian_repl::link::Stream;

#[derive(Debug, Clone)]
pub enum Msg {
    Ops {
        upto_lsn: u64,
        records: Vec<Vec<u8>>,
    },
    Heartbeat {
        upto_lsn: u64,
    },
    /// What `meridian_repl::inbound` acknowledges (the wire adds only the
    /// receiver's wall clock, which nothing here reads).
    Ack(Ack),
    /// The elected primary's protocol, dialer to acceptor like the real
    /// links: at every heartbeat and after each change.
    Election(ElectionMsg),
    /// A message of the handshake or of an anti-entropy session, either
    /// way, as it goes over TCP.
    Wire(meridian_repl::wire::Msg),
}

#[derive(Debug)]
pub struct InFlight {
    pub at_tick: u64,
    /// Global send order: the tie-break between messages due at one tick.
    pub id: u64,
    pub msg: Msg,
}

/// The replication connection `from` dials to `to`.
#[derive(Debug)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub up: bool,
    pub reconnect_at: u64,
    /// The next reconnect resumes from an older position than needed.
    pub stale_resume: bool,
    /// What this connection streams: position, batches, the receiver's
    /// vector as its acks report it (`meridian_repl::link`).
    pub stream: Stream,
    /// The receiving side of the connection (`meridian_repl::inbound`).
    pub inbound: Inbound,
    /// What the receiver holds on stable storage (from its acks; kept
    /// across reconnects, as `meridian_repl::status::Outbound` keeps it).
    pub peer_durable_vv: VersionVector,
    pub last_send_tick: u64,
    /// When the election state last went out, and which change it carried.
    pub election_tick: u64,
    pub election_gen: Option<u64>,
    /// Ops and heartbeats, `from` to `to`.
    pub forward: VecDeque<InFlight>,
    /// Acknowledgements, `to` to `from`.
    pub back: VecDeque<InFlight>,
    /// The highest LSN the receiver acknowledged (kept across reconnects):
    /// compaction keeps the records after it.
    pub acked_lsn: u64,
    /// The dialer's side of the handshake, until the `Welcome`.
    pub dialing: Option<DialerHandshake>,
    /// The receiver's side of the handshake, until the `Proof`.
    pub accepting: Option<AcceptorHandshake>,
    /// The dialer's anti-entropy session; while it runs nothing streams.
    pub dialer: Option<DialerSession>,
    /// The receiver's side of the sessions this link runs.
    pub acceptor: Acceptor,
    /// The next connection compares state first (a merge raised the
    /// dialer's vector while this link streamed).
    pub recheck: bool,
    /// How many merges had raised the dialer's vector when this link began
    /// to stream.
    pub merges_seen: u64,
}

impl Link {
    /// The link from region index `from`, whose id is `from_id`, to `to`.
    pub fn new(from: usize, from_id: RegionId, to: usize) -> Link {
        Link {
            from,
            to,
            up: false,
            reconnect_at: 0,
            stale_resume: false,
            stream: Stream::from_lsn(1, VersionVector::new()),
            inbound: Inbound::new(from_id),
            peer_durable_vv: VersionVector::new(),
            last_send_tick: 0,
            election_tick: 0,
            election_gen: None,
            forward: VecDeque::new(),
            back: VecDeque::new(),
            acked_lsn: 0,
            dialing: None,
            accepting: None,
            dialer: None,
            acceptor: Acceptor::default(),
            recheck: false,
            merges_seen: 0,
        }
    }

    /// Up, past the handshake, with no session running: log records and
    /// heartbeats flow.
    pub fn streaming(&self) -> bool {
        self.up && self.dialing.is_none() && self.dialer.is_none()
    }

    /// The connection breaks: whatever was in flight is gone. Sessions are
    /// dropped by the caller, which stops their tracking in the stores.
    pub fn reset(&mut self, reconnect_at: u64) {
        self.up = false;
        self.dialing = None;
        self.accepting = None;
        self.election_gen = None;
        self.reconnect_at = reconnect_at;
        // A new connection starts with nothing waiting and no direct origin.
        self.inbound = Inbound::new(self.inbound.peer());
        self.forward.clear();
        self.back.clear();
    }
}

/// A cut of the directed path `from` → `to` until a tick.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    pub from: usize,
    pub to: usize,
    pub until_tick: u64,
}
