//! Repair by state: `meridian_repl::antientropy`'s session state machines
//! driven over the simulated links, and the log compaction that makes them
//! needed.
//!
//! The simulator plays the part of the server's tokio driver: it hands each
//! step the region's store (one thread, so no lock), syncs the log before
//! sending when a step asks, bumps the region's merge count when a merge
//! raised its vector (every other link of that region then reconnects and
//! compares state, as `Host::state_merged` makes them), keeps one session
//! dialed per region at a time, and applies the rule for two sessions
//! dialed at once (`session::refuses`, then `AeBusy`).

use meridian_crdt::VersionVector;
use meridian_repl::antientropy::session::{refuses, DialerSession, Out};

use crate::check::Anomaly;
use crate::config::Breakage;
use crate::net::Msg;
use crate::sim::{store_err, Sim};

/// Log records a compaction keeps behind the log's end even when a peer
/// has not acknowledged them (`--repl-backlog-ops`).
pub const BACKLOG_OPS: u64 = 24;

impl Sim {
    /// The link the receiver of `l` dials back to its dialer.
    fn reverse(&self, l: usize) -> usize {
        let (from, to) = (self.links[l].from, self.links[l].to);
        self.links
            .iter()
            .position(|k| k.from == to && k.to == from)
            .expect("a link each way")
    }

    /// Whether link `l` may dial a session now: one dialed session per
    /// region at a time, and none while a session the peer dialed to this
    /// region runs or awaits the peer's streaming (the server's dialer gets
    /// `Busy` then, waits for it to end, and dials again).
    pub(crate) fn may_dial_session(&self, l: usize) -> bool {
        let from = self.links[l].from;
        if self
            .links
            .iter()
            .any(|k| k.from == from && k.dialer.is_some())
        {
            return false;
        }
        !self.links[self.reverse(l)].acceptor.is_accepting()
    }

    /// `t1` on the dialer of link `l`, the receiver's vector being `peer_vv`.
    pub(crate) fn begin_session(
        &mut self,
        l: usize,
        peer_vv: &VersionVector,
    ) -> Result<(), Anomaly> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let (session, out) = DialerSession::begin(self.regions[from].store(), peer_vv);
        let session = match self.cfg.breakage {
            Breakage::AeSkipKey => session.unsafe_skip_one_key(),
            _ => session,
        };
        self.links[l].dialer = Some(session);
        self.event(format!("link r{from}->r{to} up: anti-entropy session"));
        self.carry_out(l, from, true, out)
    }

    /// A session message from the dialer of link `l` reaches its receiver.
    pub(crate) fn ae_at_acceptor(
        &mut self,
        l: usize,
        msg: meridian_repl::wire::Msg,
    ) -> Result<(), Anomaly> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let dialing = self.links[self.reverse(l)].dialer.is_some();
        let refuse = refuses(self.regions[to].id, self.regions[from].id, dialing);
        let now = self.now_ms(to);
        let mut acceptor = std::mem::take(&mut self.links[l].acceptor);
        if self.cfg.breakage == Breakage::AeSkipKey {
            acceptor.unsafe_skip_one_key();
        }
        let result = acceptor.handle(self.regions[to].store(), msg, now, refuse);
        self.links[l].acceptor = acceptor;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                self.reset_link(l, &e.to_string());
                return Ok(());
            }
        };
        if out
            .msgs
            .first()
            .is_some_and(|m| matches!(m, meridian_repl::wire::Msg::AeBusy))
        {
            self.event(format!("r{to} refused r{from}'s session: its own runs"));
        }
        if let Some(done) = &out.finished {
            let e = format!(
                "r{to} answered r{from}'s session: {} keys merged, {} sent",
                done.keys_merged, done.keys_sent
            );
            self.report.ae_keys_merged += done.keys_merged;
            self.event(e);
        }
        self.carry_out(l, to, false, out)
    }

    /// A session message from the receiver of link `l` reaches its dialer.
    pub(crate) fn ae_at_dialer(
        &mut self,
        l: usize,
        msg: meridian_repl::wire::Msg,
    ) -> Result<(), Anomaly> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let Some(mut session) = self.links[l].dialer.take() else {
            self.reset_link(l, "a session message outside a session");
            return Ok(());
        };
        let now = self.now_ms(from);
        let mut out = match session.handle(self.regions[from].store(), msg, now) {
            Ok(out) => out,
            Err(e) => {
                session.stop_tracking(self.regions[from].store());
                // After `AeBusy` the link stays down while the peer's
                // session runs ([`Sim::may_dial_session`]).
                self.reset_link(l, &e.to_string());
                return Ok(());
            }
        };
        let finished = out.finished.take();
        if finished.is_none() {
            self.links[l].dialer = Some(session);
        }
        self.carry_out(l, from, true, out)?;
        if let Some(done) = finished {
            self.report.ae_sessions += 1;
            self.report.ae_keys_merged += done.keys_merged;
            let e = format!(
                "r{from} ended its session with r{to}: {} keys merged, {} sent",
                done.keys_merged, done.keys_sent
            );
            self.event(e);
            self.start_streaming(l, done.peer_vv);
        }
        Ok(())
    }

    /// Does what a session step of region `r` on link `l` asked: notes a
    /// merge that raised the vector, syncs the log as far as the messages
    /// need (the server's prompt sync; pending client ops are acknowledged
    /// with it), and sends.
    fn carry_out(&mut self, l: usize, r: usize, forward: bool, out: Out) -> Result<(), Anomaly> {
        if out.raised_vv {
            self.regions[r].merges += 1;
        }
        if out.finished.is_some() || out.synced_lsn > self.regions[r].store().log().synced_lsn() {
            // Keeps the journal's buffer empty whenever a crash can strike
            // (a merge journals the conflicts it found).
            self.flush_pending(r)?;
            self.regions[r]
                .store()
                .sync()
                .map_err(|e| store_err("sync", e))?;
        }
        for msg in out.msgs {
            self.push(l, forward, Msg::Wire(msg));
        }
        Ok(())
    }

    /// Tells region `r`'s store what its peers still need, as the server's
    /// shipping loop does every millisecond: every snapshot (a compaction,
    /// or the one a merge writes) compacts by it.
    pub(crate) fn retain(&mut self, r: usize) {
        let needed = self
            .links
            .iter()
            .filter(|k| k.from == r)
            .map(|k| k.acked_lsn + 1)
            .min();
        let store = self.regions[r].store();
        store.retain_from(needed);
        store.set_backlog_ops_max(Some(BACKLOG_OPS));
    }

    /// Region `r` writes a snapshot and compacts its log, keeping what its
    /// peers have not acknowledged but at most [`BACKLOG_OPS`] records
    /// behind the end.
    pub(crate) fn compact(&mut self, r: usize) -> Result<(), Anomaly> {
        self.flush_pending(r)?;
        self.retain(r);
        let store = self.regions[r].store();
        let info = store.snapshot().map_err(|e| store_err("snapshot", e))?;
        let oldest = store.log().oldest_lsn();
        self.event(format!(
            "r{r} snapshot at lsn {}, log kept from lsn {oldest}",
            info.lsn
        ));
        Ok(())
    }
}
