//! Links coming up: the replication crate's handshake state machines over
//! the simulated links (`Hello`, `Challenge`, `Proof`, `Welcome`, each
//! delayed like any message), then a session or streaming from the vector
//! the `Welcome` carried, as `meridian_repl::sender` decides.

use meridian_crdt::{RegionId, VersionVector};
use meridian_repl::antientropy::needs_state;
use meridian_repl::handshake::{AcceptorHandshake, DialerHandshake, Identity};
use meridian_repl::link::Stream;
use meridian_repl::wire::{Msg as WireMsg, Nonce};

use crate::check::Anomaly;
use crate::net::Msg;
use crate::sim::Sim;

/// The cluster every simulated region belongs to, and its secret.
const CLUSTER: &str = "sim";
const SECRET: &[u8] = b"the simulated cluster's secret";

fn identity(region: RegionId) -> Identity<'static> {
    Identity {
        cluster: CLUSTER,
        secret: SECRET,
        region,
    }
}

impl Sim {
    /// A nonce from the run's generator, so a seed replays its messages.
    fn nonce(&mut self) -> Nonce {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        n[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        n
    }

    /// Dials every link that is down, due, and whose path is open: its
    /// `Hello` goes out.
    pub(crate) fn connect_links(&mut self) {
        for l in 0..self.links.len() {
            let (from, to) = (self.links[l].from, self.links[l].to);
            if self.links[l].up
                || self.links[l].reconnect_at > self.tick
                || !self.regions[from].is_up()
                || !self.regions[to].is_up()
                || self.blocked[from][to]
                || self.blocked[to][from]
            {
                continue;
            }
            let nonce = self.nonce();
            let me = identity(self.regions[from].id);
            let (dialing, hello) = DialerHandshake::hello(me, self.regions[to].id, nonce);
            let link = &mut self.links[l];
            link.up = true;
            link.dialing = Some(dialing);
            link.last_send_tick = self.tick;
            self.push(l, true, Msg::Wire(hello));
        }
    }

    /// A handshake message from the dialer of link `l` reaches the
    /// receiver: a `Hello` is challenged, a `Proof` welcomed with the
    /// receiver's version vector.
    pub(crate) fn handshake_at_acceptor(&mut self, l: usize, msg: WireMsg) {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let me = identity(self.regions[to].id);
        if let WireMsg::Hello { .. } = msg {
            let nonce = self.nonce();
            match AcceptorHandshake::hello(me, msg, nonce) {
                Ok((accepting, challenge)) => {
                    self.links[l].accepting = Some(accepting);
                    self.push(l, false, Msg::Wire(challenge));
                }
                Err(e) => self.reset_link(l, &e.to_string()),
            }
            return;
        }
        let Some(accepting) = self.links[l].accepting.take() else {
            self.reset_link(l, "a handshake message out of a handshake");
            return;
        };
        if let Err(e) = accepting.proved(me, msg) {
            self.reset_link(l, &e.to_string());
            return;
        }
        let now = self.now_ms(to);
        let dialer_id = self.regions[from].id;
        self.regions[to].view.reconnected(dialer_id);
        self.regions[to].view.heard(dialer_id, now);
        let vv = self.regions[to].store().db().version_vector().clone();
        let welcome = WireMsg::Welcome { vv, witness: false };
        self.push(l, false, Msg::Wire(welcome));
    }

    /// A handshake message from the receiver of link `l` reaches the
    /// dialer: a `Challenge` is answered with the proof, a `Welcome` starts
    /// a session or the stream.
    pub(crate) fn handshake_at_dialer(&mut self, l: usize, msg: WireMsg) -> Result<(), Anomaly> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let me = identity(self.regions[from].id);
        let Some(dialing) = self.links[l].dialing.take() else {
            return Ok(());
        };
        if let WireMsg::Challenge { .. } = msg {
            match dialing.challenged(me, msg, &format!("r{to}")) {
                Ok(challenged) => {
                    self.push(l, true, Msg::Wire(challenged.proof));
                    match challenged.refusal {
                        Some(e) => self.reset_link(l, &e.to_string()),
                        None => self.links[l].dialing = Some(dialing),
                    }
                }
                Err(e) => self.reset_link(l, &e.to_string()),
            }
            return Ok(());
        }
        let peer_vv = match dialing.welcomed(msg) {
            Ok((vv, _witness)) => vv,
            Err(e) => {
                self.reset_link(l, &e.to_string());
                return Ok(());
            }
        };
        let now = self.now_ms(from);
        let receiver_id = self.regions[to].id;
        self.regions[from].view.reconnected(receiver_id);
        self.regions[from].view.heard(receiver_id, now);
        self.welcomed(l, peer_vv)
    }

    /// After the `Welcome`: a session first when the dialer's log cannot
    /// serve the receiver or its state was merged meanwhile, else stream.
    fn welcomed(&mut self, l: usize, peer_vv: VersionVector) -> Result<(), Anomaly> {
        let from = self.links[l].from;
        let session = std::mem::take(&mut self.links[l].recheck)
            || needs_state(self.regions[from].store(), &peer_vv);
        if !session {
            self.start_streaming(l, peer_vv);
            return Ok(());
        }
        if !self.may_dial_session(l) {
            // The server's dialer waits for its turn or is refused as busy:
            // either way this connection does not stream yet.
            self.reset_link(l, "another anti-entropy session runs");
            return Ok(());
        }
        self.links[l].last_send_tick = self.tick;
        self.begin_session(l, &peer_vv)
    }

    /// The link streams from the receiver's vector `peer_vv` on.
    pub(crate) fn start_streaming(&mut self, l: usize, mut peer_vv: VersionVector) {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let store = self.regions[from].store();
        let resume = store.resume_lsn(&peer_vv);
        let oldest = store.log().oldest_lsn();
        let stale = std::mem::take(&mut self.links[l].stale_resume);
        let start = if stale {
            peer_vv = VersionVector::new();
            oldest + self.rng.below(resume.saturating_sub(oldest) + 1)
        } else {
            resume
        };
        let merges = self.regions[from].merges;
        let to_id = self.regions[to].id;
        let stream =
            Stream::from_lsn(start, peer_vv).without_echoes(self.regions[from].store(), to_id);
        let link = &mut self.links[l];
        link.stream = stream;
        link.acked_lsn = link.acked_lsn.max(link.stream.upto_lsn());
        link.merges_seen = merges;
        link.last_send_tick = self.tick;
        let e = format!(
            "link r{from}->r{to} up from lsn {start}{}",
            if stale { " (stale resume)" } else { "" }
        );
        self.event(e);
    }
}
