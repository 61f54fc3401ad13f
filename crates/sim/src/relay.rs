//! Relaying only what a receiver cannot get directly, as the server does
//! (`meridian_repl::link` and `meridian_repl::inbound`): each
//! acknowledgement names the origins the receiver streams from directly,
//! the sender leaves their ops out and starts again from the receiver's
//! vector when one drops off the list, and a record that comes before a
//! dependency waits on its link until another link brings it, for at
//! most `WAIT_MAX_MS` of the receiver's clock.

use meridian_repl::inbound::{Ack, WAIT_MAX_MS};
use meridian_repl::link::Stream;

use crate::sim::{store_err, Sim};
use crate::Anomaly;
use meridian_repl::antientropy::needs_state;

/// After a link gave up waiting, its receiver asks every sender to relay
/// everything for this many ticks (the server: 30 s).
const RELAY_ALL_TICKS: u64 = 300;

impl Sim {
    /// The origins region `to` streams from directly, as told over link
    /// `l`: every other region whose link to `to` streams now, unless a
    /// wait failed there lately.
    pub(crate) fn direct_for(&self, l: usize) -> Vec<meridian_crdt::RegionId> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        if self.tick < self.relay_all_until[to] {
            return Vec::new();
        }
        self.links
            .iter()
            .filter(|k| k.to == to && k.from != from && k.streaming())
            .map(|k| self.regions[k.from].id)
            .collect()
    }

    /// The sender of link `l` reads the receiver's acknowledgement.
    pub(crate) fn acked(&mut self, l: usize, ack: Ack) -> Result<(), Anomaly> {
        let from = self.links[l].from;
        let me = self.regions[from].id;
        let link = &mut self.links[l];
        link.acked_lsn = link.acked_lsn.max(ack.upto_lsn);
        link.stream.acked(ack.vv.clone());
        link.peer_durable_vv = ack.durable_vv;
        if !link.stream.set_direct(me, ack.direct) || !link.streaming() {
            return Ok(());
        }
        // An origin left the list: what was skipped may be lacking.
        let store = self.regions[from].store();
        if needs_state(store, &ack.vv) {
            self.links[l].recheck = true;
            self.reset_link(l, "relayed ops the log no longer holds");
            return Ok(());
        }
        let direct = self.links[l].stream.direct().to_vec();
        let to_id = self.regions[self.links[l].to].id;
        let store = self.regions[from].store();
        let mut stream = Stream::resume(store, ack.vv).without_echoes(store, to_id);
        stream.set_direct(me, direct);
        let e = format!(
            "link r{from}->r{} relays again from lsn {}",
            self.links[l].to,
            stream.next_lsn()
        );
        self.links[l].stream = stream;
        self.event(e);
        Ok(())
    }

    /// Region `to` applied something: records waiting on its other links
    /// may now apply, each success perhaps freeing more.
    pub(crate) fn retry_waiting(&mut self, to: usize) -> Result<(), Anomaly> {
        loop {
            let mut progressed = false;
            for l in 0..self.links.len() {
                if self.links[l].to != to || self.links[l].inbound.waiting() == 0 {
                    continue;
                }
                let now = self.now_ms(to);
                let store = self.regions[to].store();
                let before = self.links[l].inbound.waiting();
                let out = self.links[l].inbound.retry(store, now);
                store.flush().map_err(|e| store_err("flush", e))?;
                if let Some(e) = out.failed {
                    self.reset_link(l, &e.to_string());
                    continue;
                }
                if self.links[l].inbound.waiting() < before {
                    progressed = true;
                    self.event(format!(
                        "r{}->r{to} {} waiting ops applied",
                        self.links[l].from, out.applied
                    ));
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Links whose oldest waiting record waited past the bound reset, and
    /// their receiver asks for every op for a while.
    pub(crate) fn check_waits(&mut self) -> Result<(), Anomaly> {
        for to in 0..self.regions.len() {
            let waits = self
                .links
                .iter()
                .any(|k| k.to == to && k.inbound.waiting() > 0);
            if waits && self.regions[to].is_up() {
                // A state merge may have brought what they wait for.
                self.retry_waiting(to)?;
            }
        }
        for l in 0..self.links.len() {
            let to = self.links[l].to;
            if !self.regions[to].is_up() || !self.links[l].up {
                continue;
            }
            let now = self.now_ms(to);
            if self.links[l].inbound.waited_too_long(now) {
                self.relay_all_until[to] = self.tick + RELAY_ALL_TICKS;
                self.report.relay_waits_failed += 1;
                let why = format!("ops waited over {WAIT_MAX_MS} ms for their dependencies");
                self.reset_link(l, &why);
            }
        }
        Ok(())
    }
}
