//! The scheduler: one thread, one seeded RNG, time in ticks.
//!
//! Each tick: maybe inject a fault, end expired cuts, restart regions whose
//! downtime is over; then each live region advances its failure detector,
//! runs client commands, flushes (acknowledges) some of its pending ones and
//! syncs (the server's prompt sync for shipping); then links connect, send,
//! and due messages are delivered in (due tick, send order).

use std::collections::BTreeMap;

use meridian_cluster::{ElectionEvent, Role};
use meridian_crdt::{EffectKind, Op, RegionId};
use meridian_log::{LogError, ReadBound};
use meridian_repl::antientropy::is_session_msg;
use meridian_repl::inbound::{ApplyError, OpHook};
use meridian_repl::tombstones::{PeerDurable, Progress, Round, Step};
use meridian_store::{db::visible_digest, Store, StoreError};

use crate::check::{self, Anomaly};
use crate::config::{Breakage, Fault, SimConfig};
use crate::driver::{self, Outcome};
use crate::history::{Fate, History, Write};
use crate::net::{Cut, InFlight, Link, Msg};
use crate::region::{SimRegion, HEARTBEAT_MS, LEASE_MS};
use crate::rng::SimRng;
use crate::trace::Trace;

/// Simulated milliseconds per tick.
pub const TICK_MS: u64 = 10;
const HEARTBEAT_TICKS: u64 = HEARTBEAT_MS / TICK_MS;
/// Records per `Ops` message at most (the real sender batches too).
const BATCH_OPS_MAX: u64 = 16;
/// Messages in flight per link at most (the TCP window).
const IN_FLIGHT_MAX: usize = 32;
const DELAY_TICKS_MAX: i64 = 30;
const CUT_TICKS: (i64, i64) = (20, 300);
const DOWN_TICKS: (i64, i64) = (5, 60);
const CLOCK_OFFSET_MS_MAX: i64 = 2_000;

/// Totals of one run.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    pub ticks: u64,
    /// Ticks from the end of the fault phase to convergence.
    pub heal_ticks: u64,
    pub ops_durable: u64,
    /// Ops lost in crashes: unacknowledged ones, plus `ops_lost_acked`.
    pub ops_lost: u64,
    /// Acknowledged ops a power loss took before they were synced.
    pub ops_lost_acked: u64,
    pub writes_refused: u64,
    /// List values given by surviving pushes and inserts, and taken by
    /// surviving pops, LREMs and LTRIMs: what the list checker accounted for.
    pub list_values_pushed: u64,
    pub list_values_removed: u64,
    /// Stream entries acknowledged XADDs added, and entries acknowledged
    /// XREADGROUPs delivered: what the stream checker accounted for.
    pub stream_entries_added: u64,
    pub stream_entries_delivered: u64,
    /// BITFIELD WRAP increments that survived, each field counted.
    pub field_increments: u64,
    /// Scripted writes (transfers and pairs) that survived.
    pub script_ops: u64,
    /// Elections won (new primaries of `primary` keyspaces).
    pub elections_won: u64,
    /// `primary` writes accepted, across terms.
    pub primary_writes: u64,
    /// Conflict-journal entries across regions, all checked exact.
    pub conflicts_journaled: u64,
    /// Regions whose journal was checked exact: those whose log still holds
    /// their whole history (no compaction, no merged state).
    pub journals_exact: u64,
    /// Settled counter incarnations collected during the run (before the
    /// final collection at convergence).
    pub tombstones_collected: u64,
    /// Anti-entropy sessions that ran to their end (on the dialer).
    pub ae_sessions: u64,
    /// Keys whose state those sessions merged, both sides.
    pub ae_keys_merged: u64,
    pub messages: u64,
    pub duplicates_received: u64,
    /// Links reset because records waited too long for dependencies the
    /// receiver expected directly from their origin.
    pub relay_waits_failed: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub trace_hash: u64,
    pub events: u64,
    pub anomaly: Option<Anomaly>,
}

impl SimReport {
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

pub struct Sim {
    pub cfg: SimConfig,
    pub(crate) rng: SimRng,
    pub regions: Vec<SimRegion>,
    pub(crate) links: Vec<Link>,
    cuts: Vec<Cut>,
    pub(crate) blocked: Vec<Vec<bool>>,
    pub history: History,
    pub trace: Trace,
    pub(crate) tick: u64,
    next_msg_id: u64,
    workload: driver::Workload,
    pub(crate) report: SimReport,
    /// Relayed records received, per region (for [`Breakage`]).
    relayed_seen: Vec<u64>,
    /// Until this tick a region names no direct origin in its acks
    /// (`crate::relay`).
    pub(crate) relay_all_until: Vec<u64>,
    /// `heard_ms[r][p]`: simulated time region `r` last heard region `p`
    /// (the truth the `majority` checker judges leases by).
    pub(crate) heard_ms: Vec<Vec<Option<u64>>>,
    _root: tempfile::TempDir,
}

pub(crate) fn store_err(what: &str, e: StoreError) -> Anomaly {
    Anomaly::new("store", format!("{what}: {e}"))
}

/// Where data directories go: `MERIDIAN_SIM_DIR`, else `/dev/shm` when it
/// exists (fsync is free there), else the system temp dir.
fn temp_root() -> std::io::Result<tempfile::TempDir> {
    let b = tempfile::Builder::new().prefix("meridian-sim-").to_owned();
    if let Some(dir) = std::env::var_os("MERIDIAN_SIM_DIR") {
        return b.tempdir_in(dir);
    }
    if std::path::Path::new("/dev/shm").is_dir() {
        if let Ok(d) = b.tempdir_in("/dev/shm") {
            return Ok(d);
        }
    }
    b.tempdir()
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Result<Sim, Anomaly> {
        let root = temp_root().map_err(|e| Anomaly::new("setup", e.to_string()))?;
        let ids: Vec<RegionId> = (0..cfg.regions)
            .map(|i| RegionId::new(&format!("r{i}")).expect("valid region id"))
            .collect();
        let mut regions = Vec::new();
        for id in &ids {
            let peers = ids.iter().copied().filter(|p| p != id).collect();
            let dir = root.path().join(id.as_str());
            regions.push(
                SimRegion::open(*id, dir, peers, 0, cfg.breakage)
                    .map_err(|e| store_err("open", e))?,
            );
        }
        let mut links = Vec::new();
        for (from, from_id) in ids.iter().enumerate() {
            for to in 0..cfg.regions {
                if from != to {
                    links.push(Link::new(from, *from_id, to));
                }
            }
        }
        let n = cfg.regions;
        let workload = driver::Workload::new(&cfg);
        Ok(Sim {
            rng: SimRng::new(cfg.seed),
            trace: Trace::new(cfg.trace_keep),
            report: SimReport {
                seed: cfg.seed,
                ..SimReport::default()
            },
            cfg,
            regions,
            links,
            cuts: Vec::new(),
            blocked: vec![vec![false; n]; n],
            history: History::default(),
            tick: 0,
            next_msg_id: 0,
            workload,
            relayed_seen: vec![0; n],
            relay_all_until: vec![0; n],
            heard_ms: vec![vec![None; n]; n],
            _root: root,
        })
    }

    pub(crate) fn sim_ms(&self) -> u64 {
        self.tick * TICK_MS
    }

    pub(crate) fn now_ms(&self, r: usize) -> u64 {
        self.regions[r].now_ms(self.sim_ms())
    }

    pub(crate) fn event(&mut self, e: String) {
        self.trace.record(self.tick, e);
    }

    fn count_fault(&mut self, f: Fault) {
        *self.report.faults.entry(f.name()).or_default() += 1;
    }

    /// Runs the fault phase, heals, waits for convergence, then checks.
    pub fn run(mut self) -> SimReport {
        let result = self.run_inner();
        self.report.ticks = self.tick;
        self.report.ops_durable = self.history.count(Fate::Durable);
        self.report.ops_lost = self.history.count(Fate::Lost);
        self.report.writes_refused = self.history.refused;
        self.report.primary_writes = self
            .history
            .ops
            .iter()
            .filter(|o| o.primary_term.is_some())
            .count() as u64;
        for op in self.history.durable() {
            match &op.write {
                Write::Push { values, .. } => self.report.list_values_pushed += values.len() as u64,
                Write::Insert { .. } => self.report.list_values_pushed += 1,
                Write::Remove { values, .. } => {
                    self.report.list_values_removed += values.len() as u64
                }
                Write::Transfer { .. } | Write::Pair { .. } => self.report.script_ops += 1,
                Write::XAdd { .. } => self.report.stream_entries_added += 1,
                Write::FieldIncr { incrs, .. } => {
                    self.report.field_increments += incrs.len() as u64
                }
                Write::XReadGroup { ids, .. } => {
                    self.report.stream_entries_delivered += ids.len() as u64
                }
                _ => {}
            }
        }
        self.report.trace_hash = self.trace.hash();
        self.report.events = self.trace.events();
        if let Err(mut a) = result {
            a.trace = self.trace.tail();
            self.report.anomaly = Some(a);
        }
        self.report
    }

    fn run_inner(&mut self) -> Result<(), Anomaly> {
        for _ in 0..self.cfg.fault_ticks {
            self.step(true)?;
        }
        self.heal()?;
        let started = self.tick;
        loop {
            if self.converged() {
                break;
            }
            if self.tick - started >= self.cfg.heal_ticks_max {
                return Err(check::divergence(
                    &mut self.regions,
                    self.cfg.heal_ticks_max,
                ));
            }
            self.step(false)?;
        }
        self.report.heal_ticks = self.tick - started;
        self.event("converged".into());
        for r in 0..self.regions.len() {
            let store = self.regions[r].store();
            store.flush().map_err(|e| store_err("flush", e))?;
            store.sync().map_err(|e| store_err("sync", e))?;
        }
        // Everything is stable now: every region collects all it can, and
        // then whole states, hidden parts included, must be equal.
        for r in 0..self.regions.len() {
            let in_progress = self.regions[r].collection.take();
            let db = self.regions[r].store().db_mut();
            if let Some(round) = in_progress {
                db.requeue_tombstones(round.into_candidates().into_iter().map(|(k, _)| k));
            }
            let candidates = db.tombstone_candidates(usize::MAX);
            db.collect_tombstones(candidates);
        }
        check::check_whole_states_equal(&mut self.regions)?;
        self.report.conflicts_journaled = self
            .regions
            .iter_mut()
            .map(|r| r.store().journal().retained() as u64)
            .sum();
        self.report.journals_exact = self
            .regions
            .iter_mut()
            .map(|r| r.store().log_base_vv().is_empty() as u64)
            .sum();
        check::check_all(&mut self.regions, &self.history)
    }

    /// Ends every fault: cuts heal, crashed regions restart, pending
    /// commands are answered. Clock offsets stay: convergence must not
    /// depend on clocks.
    fn heal(&mut self) -> Result<(), Anomaly> {
        self.event("heal".into());
        self.cuts.clear();
        self.recompute_blocked();
        for r in 0..self.regions.len() {
            if !self.regions[r].is_up() {
                self.restart(r)?;
            }
            self.flush_pending(r)?;
        }
        Ok(())
    }

    fn converged(&mut self) -> bool {
        let vv0 = self.regions[0].store().db().version_vector().clone();
        if self
            .regions
            .iter_mut()
            .any(|r| *r.store().db().version_vector() != vv0)
        {
            return false;
        }
        let d0 = visible_digest(self.regions[0].store().db());
        self.regions
            .iter_mut()
            .all(|r| visible_digest(r.store().db()) == d0)
    }

    fn step(&mut self, faulty: bool) -> Result<(), Anomaly> {
        self.tick += 1;
        if faulty && self.rng.chance(self.cfg.fault_per_mille) {
            self.inject_fault()?;
        }
        let tick = self.tick;
        if self.cuts.iter().any(|c| c.until_tick <= tick) {
            self.cuts.retain(|c| c.until_tick > tick);
            self.recompute_blocked();
            self.event("cuts healed".into());
        }
        for r in 0..self.regions.len() {
            if !self.regions[r].is_up() {
                if self.regions[r].restart_at <= tick {
                    self.restart(r)?;
                }
                continue;
            }
            self.region_step(r, faulty)?;
        }
        self.connect_links();
        for l in 0..self.links.len() {
            self.send(l)?;
        }
        self.deliver_due()?;
        self.check_waits()?;
        self.check_point()
    }

    /// What every region that is up holds between ticks, as a client would
    /// read it: each script's writes all or none (transfers sum to zero,
    /// both keys of a pair alike).
    fn check_point(&mut self) -> Result<(), Anomaly> {
        if !self.cfg.scripts {
            return Ok(());
        }
        for r in 0..self.regions.len() {
            if !self.regions[r].is_up() {
                continue;
            }
            let id = self.regions[r].id;
            check::check_scripts_whole(self.regions[r].store().db())
                .map_err(|a| check::tag_region(a, id))?;
        }
        Ok(())
    }

    /// One step of region `r`'s tombstone collection: the round of
    /// `meridian_repl::tombstones`, fed this region's vectors and the
    /// durable vectors its links' acks carried. There is no witness and no
    /// change of membership here, and every peer has a link from the start
    /// (its durable vector empty until an ack says more).
    /// `--break collect-early` collects at once.
    fn collection_step(&mut self, r: usize) {
        const EVERY_TICKS: u64 = 25;
        let round = match self.regions[r].collection.take() {
            Some(round) => round,
            None => {
                if self.tick % EVERY_TICKS != r as u64 % EVERY_TICKS {
                    return;
                }
                let store = self.regions[r].store();
                let v0 = store.db().version_vector().clone();
                let candidates = store.db_mut().tombstone_candidates(usize::MAX);
                match Round::begin(v0, candidates, 0) {
                    Some(round) if self.cfg.breakage == Breakage::CollectEarly => {
                        round.unsafe_skip_stability()
                    }
                    Some(round) => round,
                    None => return,
                }
            }
        };
        let store = self.regions[r].store();
        let durable_vv = store.durable_vv().clone();
        let applied_vv = store.db().version_vector().clone();
        let now = Progress {
            members_version: 0,
            durable_vv: &durable_vv,
            applied_vv: &applied_vv,
        };
        let peers = self.links.iter().filter(|l| l.from == r).map(|l| {
            (
                self.regions[l.to].id,
                PeerDurable::Durable(&l.peer_durable_vv),
            )
        });
        let candidates = match round.step(now, peers) {
            Step::Wait(round, _) => {
                self.regions[r].collection = Some(round);
                return;
            }
            Step::Collect(candidates) => candidates,
            Step::Abandon(candidates) => {
                let keys = candidates.into_iter().map(|(k, _)| k);
                self.regions[r].store().db_mut().requeue_tombstones(keys);
                return;
            }
        };
        let done = self.regions[r]
            .store()
            .db_mut()
            .collect_tombstones(candidates);
        if done.incarnations > 0 {
            self.report.tombstones_collected += done.incarnations as u64;
            let e = format!(
                "r{r} collected {} settled incarnations, {} keys",
                done.incarnations, done.keys_removed
            );
            self.event(e);
        }
    }

    fn region_step(&mut self, r: usize, writes: bool) -> Result<(), Anomaly> {
        self.retain(r);
        let now = self.now_ms(r);
        let epoch_before = self.regions[r].view.epoch();
        for t in self.regions[r].view.tick(now) {
            let e = format!("r{r} epoch {} {:?}", t.epoch, t.change);
            self.event(e);
        }
        let epoch = self.regions[r].view.epoch();
        if epoch != epoch_before {
            self.regions[r].store().set_epoch(epoch);
        }
        let sim_ms = self.sim_ms();
        for e in self.regions[r].election_step(|e| e.tick(sim_ms)) {
            self.election_event(r, e);
        }
        if writes {
            for _ in 0..self.rng.below(3) {
                let region = &mut self.regions[r];
                match driver::driver_write(
                    &mut self.rng,
                    region,
                    r,
                    &self.workload,
                    &mut self.history,
                    self.tick,
                    now,
                ) {
                    Outcome::Committed { index, journaled } => {
                        if matches!(
                            self.history.ops[index].write,
                            Write::Other {
                                what: "set-majority",
                                ..
                            }
                        ) {
                            let reached = self.reached_in_lease(r);
                            self.history.ops[index].reached_in_lease = Some(reached);
                        }
                        let op = &self.history.ops[index];
                        let e = format!("r{r} write {} {:?}", op.dot(), op.write);
                        self.regions[r].pending.push(index);
                        self.event(e);
                        // Keeps the journal's buffer empty whenever a crash
                        // can strike (see region.rs).
                        if journaled {
                            self.flush_pending(r)?;
                        }
                    }
                    Outcome::Refused => self.event(format!("r{r} write refused (fenced)")),
                    Outcome::Nothing => {}
                    Outcome::Failed(e) => return Err(Anomaly::new("store", e)),
                }
            }
            if self.rng.chance(600) {
                self.flush_pending(r)?;
            }
        }
        if self.rng.chance(500) {
            self.regions[r]
                .store()
                .sync()
                .map_err(|e| store_err("sync", e))?;
        }
        self.collection_step(r);
        Ok(())
    }

    /// Regions (`r` included) that `r` heard from within the lease of
    /// simulated time, give or take two ticks: a region's view misses at
    /// most the tick before each backward jump of its clock.
    fn reached_in_lease(&self, r: usize) -> usize {
        let now = self.sim_ms();
        let within = LEASE_MS + 2 * TICK_MS;
        1 + self.heard_ms[r]
            .iter()
            .enumerate()
            .filter(|(p, t)| *p != r && t.is_some_and(|t| now - t <= within))
            .count()
    }

    fn election_event(&mut self, r: usize, e: ElectionEvent) {
        if matches!(e, ElectionEvent::Won { .. }) {
            self.report.elections_won += 1;
        }
        self.event(format!("r{r} election {e:?}"));
    }

    /// Flushes region `r`'s log: its pending commands are acknowledged.
    pub(crate) fn flush_pending(&mut self, r: usize) -> Result<(), Anomaly> {
        if !self.regions[r].is_up() {
            return Ok(());
        }
        self.regions[r]
            .store()
            .flush()
            .map_err(|e| store_err("flush", e))?;
        for i in std::mem::take(&mut self.regions[r].pending) {
            self.history.ops[i].fate = Fate::Durable;
        }
        Ok(())
    }

    fn recompute_blocked(&mut self) {
        for row in &mut self.blocked {
            row.fill(false);
        }
        for c in &self.cuts {
            self.blocked[c.from][c.to] = true;
        }
    }

    fn cut(&mut self, from: usize, to: usize, until_tick: u64) {
        self.cuts.push(Cut {
            from,
            to,
            until_tick,
        });
    }

    /// The connection of link `l` breaks; its sessions end on both sides,
    /// as dropping them does in the server.
    pub(crate) fn reset_link(&mut self, l: usize, why: &str) {
        let (from, to) = (self.links[l].from, self.links[l].to);
        if let Some(mut dialer) = self.links[l].dialer.take() {
            if self.regions[from].is_up() {
                dialer.stop_tracking(self.regions[from].store());
            }
        }
        let mut acceptor = std::mem::take(&mut self.links[l].acceptor);
        if self.regions[to].is_up() {
            acceptor.settle(self.regions[to].store());
        }
        let backoff = self.tick + 1 + self.rng.below(20);
        let link = &mut self.links[l];
        let was_up = link.up;
        link.reset(backoff);
        if was_up {
            let e = format!("link r{}->r{} reset: {why}", link.from, link.to);
            self.event(e);
        }
    }

    fn inject_fault(&mut self) -> Result<(), Anomaly> {
        let kinds: Vec<Fault> = self
            .cfg
            .faults
            .iter()
            .copied()
            .filter(|f| *f != Fault::Delay)
            .collect();
        if kinds.is_empty() {
            return Ok(());
        }
        let n = self.regions.len();
        let fault = kinds[self.rng.index(kinds.len())];
        let until = self.tick + self.rng.between(CUT_TICKS.0, CUT_TICKS.1) as u64;
        match fault {
            Fault::Dup | Fault::Drop => {
                let l = self.rng.index(self.links.len());
                if !self.links[l].up {
                    return Ok(());
                }
                self.reset_link(l, fault.name());
                if fault == Fault::Dup {
                    self.links[l].stale_resume = true;
                    self.links[l].reconnect_at = self.tick;
                }
            }
            Fault::Partition => {
                let side: Vec<bool> = loop {
                    let s: Vec<bool> = (0..n).map(|_| self.rng.chance(500)).collect();
                    if s.iter().any(|x| *x) && s.iter().any(|x| !*x) {
                        break s;
                    }
                };
                for a in 0..n {
                    for b in 0..n {
                        if side[a] && !side[b] {
                            self.cut(a, b, until);
                            self.cut(b, a, until);
                        }
                    }
                }
                self.event(format!("partition {side:?} until t={until}"));
            }
            Fault::OneWay => {
                let a = self.rng.index(n);
                let b = (a + 1 + self.rng.index(n - 1)) % n;
                self.cut(a, b, until);
                self.event(format!("cut r{a}->r{b} until t={until}"));
            }
            Fault::Crash | Fault::Power => {
                let r = self.rng.index(n);
                if !self.regions[r].is_up() {
                    return Ok(());
                }
                for l in 0..self.links.len() {
                    if self.links[l].from == r || self.links[l].to == r {
                        self.reset_link(l, "region crashed");
                    }
                }
                let back = self.tick + self.rng.between(DOWN_TICKS.0, DOWN_TICKS.1) as u64;
                let pending = self.regions[r].pending.len();
                if fault == Fault::Power {
                    let rng = &mut self.rng;
                    self.regions[r]
                        .lose_power(|unsynced| rng.below(unsynced + 1))
                        .map_err(|e| Anomaly::new("power loss", e.to_string()))?;
                    self.event(format!(
                        "power loss r{r} ({pending} unflushed) until t={back}"
                    ));
                } else {
                    self.regions[r].crash();
                    self.event(format!("crash r{r} ({pending} unflushed) until t={back}"));
                }
                self.regions[r].restart_at = back;
            }
            Fault::IsolatePrimary => {
                let p = (0..n)
                    .find(|r| {
                        self.regions[*r].is_up() && self.regions[*r].election.role() == Role::Leader
                    })
                    .unwrap_or(0);
                let both = self.rng.chance(500);
                for o in (0..n).filter(|o| *o != p) {
                    self.cut(p, o, until);
                    if both {
                        self.cut(o, p, until);
                    }
                }
                let how = if both { "both ways" } else { "outbound" };
                self.event(format!("isolate primary r{p} ({how}) until t={until}"));
            }
            Fault::Clock => {
                let r = self.rng.index(n);
                let offset = self.rng.between(-CLOCK_OFFSET_MS_MAX, CLOCK_OFFSET_MS_MAX);
                self.regions[r].clock_offset_ms = offset;
                self.event(format!("clock r{r} offset {offset} ms"));
            }
            Fault::Compact => {
                // Every region that is up, as periodic snapshots would.
                for r in 0..n {
                    if self.regions[r].is_up() {
                        self.compact(r)?;
                    }
                }
            }
            Fault::Delay => {}
        }
        self.count_fault(fault);
        self.recompute_blocked();
        Ok(())
    }

    fn restart(&mut self, r: usize) -> Result<(), Anomaly> {
        let now = self.now_ms(r);
        let sim_ms = self.sim_ms();
        self.regions[r]
            .restart(now, sim_ms)
            .map_err(|e| store_err("restart", e))?;
        let seq = self.regions[r].store().db().seq();
        let (mut kept, mut lost) = (0, 0);
        for i in std::mem::take(&mut self.regions[r].pending) {
            let op = &mut self.history.ops[i];
            if op.dot().seq() <= seq {
                op.fate = Fate::Durable;
                kept += 1;
            } else {
                op.fate = Fate::Lost;
                lost += 1;
            }
        }
        // After a power loss, acknowledged ops past the synced log may be
        // gone too. That is what `--fsync everysec` allows, but only if none
        // of them ever left the region: their dots go to the next ops.
        let mut acked_lost = 0;
        for i in 0..self.history.ops.len() {
            let op = &self.history.ops[i];
            if op.region != r || op.fate != Fate::Durable || op.dot().seq() <= seq {
                continue;
            }
            if let Some(peer) = (0..self.regions.len()).find(|&p| {
                p != r
                    && self.regions[p].is_up()
                    && self.regions[p]
                        .store()
                        .db()
                        .version_vector()
                        .covers(op.dot())
            }) {
                return Err(Anomaly::new(
                    "durability",
                    format!(
                        "r{r} lost op {} in a power loss, but r{peer} had already received it: an op was shipped before it was synced",
                        op.dot()
                    ),
                ));
            }
            self.history.ops[i].fate = Fate::Lost;
            acked_lost += 1;
        }
        self.report.ops_lost_acked += acked_lost;
        self.event(format!(
            "restart r{r} at seq {seq}: {kept} unflushed ops survived, {lost} lost, {acked_lost} acknowledged but unsynced ops lost"
        ));
        Ok(())
    }

    fn delay_ticks(&mut self) -> u64 {
        if self.cfg.has(Fault::Delay) {
            self.rng.between(1, DELAY_TICKS_MAX) as u64
        } else {
            1
        }
    }

    pub(crate) fn push(&mut self, l: usize, forward: bool, msg: Msg) {
        let delay = self.delay_ticks();
        self.next_msg_id += 1;
        self.report.messages += 1;
        let link = &mut self.links[l];
        let queue = if forward {
            &mut link.forward
        } else {
            &mut link.back
        };
        // One stream: never overtake the message ahead.
        let at_tick = queue.back().map_or(0, |m| m.at_tick).max(self.tick + delay);
        queue.push_back(InFlight {
            at_tick,
            id: self.next_msg_id,
            msg,
        });
    }

    /// The sender side of link `l`, as `meridian_repl::sender::link` does it.
    fn send(&mut self, l: usize) -> Result<(), Anomaly> {
        let from = self.links[l].from;
        if !self.links[l].streaming() || self.links[l].forward.len() >= IN_FLIGHT_MAX {
            return Ok(());
        }
        // State merged here is not in the log this link streams: reconnect
        // at once and compare state first.
        if self.regions[from].merges != self.links[l].merges_seen {
            self.reset_link(l, "state merged");
            self.links[l].recheck = true;
            self.links[l].reconnect_at = self.tick;
            return Ok(());
        }
        // The election state: at every heartbeat, and at once after a change.
        let gen = self.regions[from].election_gen;
        let link = &self.links[l];
        if link.election_gen != Some(gen) || self.tick - link.election_tick >= HEARTBEAT_TICKS {
            let to_id = self.regions[link.to].id;
            let sim_ms = self.sim_ms();
            let region = &mut self.regions[from];
            let vv = region.store().db().version_vector().clone();
            let msgs = region.election.outbox(to_id, sim_ms, &vv);
            let link = &mut self.links[l];
            link.election_gen = Some(gen);
            link.election_tick = self.tick;
            for m in msgs {
                self.push(l, true, Msg::Election(m));
            }
        }
        let batch_max = 1 + self.rng.below(BATCH_OPS_MAX) as usize;
        let (bound, shippable) = if self.cfg.breakage == Breakage::ShipUnsynced {
            (
                ReadBound::Flushed,
                self.regions[from].store().log().flushed_lsn(),
            )
        } else {
            (
                ReadBound::Synced,
                self.regions[from].store().log().synced_lsn(),
            )
        };
        let store = self.regions[from].store();
        let stream = &mut self.links[l].stream;
        if stream.upto_lsn() < shippable {
            // A peer more than the backlog behind loses its records to a
            // compaction; the sender's read fails and the link goes down,
            // to come back through a session (`needs_state`).
            let compacted = match store.log().reader_bounded(stream.next_lsn(), bound) {
                Ok(reader) => {
                    let mut compacted = None;
                    for next in reader {
                        let (lsn, payload) = match next {
                            Ok(record) => record,
                            Err(e @ LogError::Compacted { .. }) => {
                                compacted = Some(e);
                                break;
                            }
                            Err(e) => return Err(store_err("log read", e.into())),
                        };
                        stream
                            .offer(lsn, payload)
                            .map_err(|e| Anomaly::new("store", e.to_string()))?;
                        if !stream.has_room(batch_max, usize::MAX) {
                            break;
                        }
                    }
                    compacted
                }
                Err(e @ LogError::Compacted { .. }) => Some(e),
                Err(e) => return Err(store_err("log reader", e.into())),
            };
            if let Some(e) = compacted {
                self.reset_link(l, &e.to_string());
                return Ok(());
            }
        }
        let link = &mut self.links[l];
        let heartbeat_due = self.tick - link.last_send_tick >= HEARTBEAT_TICKS;
        let msg = match link.stream.take_batch() {
            Some(batch) => Msg::Ops {
                upto_lsn: batch.upto_lsn,
                records: batch.records,
            },
            None => match link.stream.announce(heartbeat_due) {
                Some(upto_lsn) => Msg::Heartbeat { upto_lsn },
                None => return Ok(()),
            },
        };
        link.last_send_tick = self.tick;
        self.push(l, true, msg);
        Ok(())
    }

    fn deliver_due(&mut self) -> Result<(), Anomaly> {
        loop {
            let mut best: Option<(u64, u64, usize, bool)> = None;
            for (l, link) in self.links.iter().enumerate() {
                for (forward, q) in [(true, &link.forward), (false, &link.back)] {
                    if let Some(m) = q.front() {
                        if m.at_tick <= self.tick
                            && best.is_none_or(|b| (m.at_tick, m.id) < (b.0, b.1))
                        {
                            best = Some((m.at_tick, m.id, l, forward));
                        }
                    }
                }
            }
            let Some((_, _, l, forward)) = best else {
                return Ok(());
            };
            let link = &mut self.links[l];
            let m = if forward {
                link.forward.pop_front()
            } else {
                link.back.pop_front()
            }
            .expect("message at the front");
            let (src, dst) = if forward {
                (link.from, link.to)
            } else {
                (link.to, link.from)
            };
            if self.blocked[src][dst] {
                self.reset_link(l, "path cut");
                continue;
            }
            let now = self.now_ms(dst);
            self.heard_ms[dst][src] = Some(self.sim_ms());
            let src_id = self.regions[src].id;
            self.regions[dst].view.heard(src_id, now);
            if forward && !matches!(&m.msg, Msg::Wire(w) if is_session_msg(w)) {
                // The dialer streams again: any session it dialed is over.
                let link = &mut self.links[l];
                link.acceptor.settle(self.regions[dst].store());
            }
            match m.msg {
                Msg::Wire(msg) if forward && is_session_msg(&msg) => self.ae_at_acceptor(l, msg)?,
                Msg::Wire(msg) if forward => self.handshake_at_acceptor(l, msg),
                Msg::Wire(msg) if self.links[l].dialing.is_some() => {
                    self.handshake_at_dialer(l, msg)?
                }
                Msg::Wire(msg) => self.ae_at_dialer(l, msg)?,
                Msg::Ops { upto_lsn, records } => {
                    if self.receive(l, upto_lsn, &records)? {
                        self.ack(l, upto_lsn);
                    }
                }
                Msg::Heartbeat { upto_lsn } => self.ack(l, upto_lsn),
                Msg::Ack(ack) => self.acked(l, ack)?,
                Msg::Election(m) => {
                    let sim_ms = self.sim_ms();
                    let vv = self.regions[dst].store().db().version_vector().clone();
                    let events =
                        self.regions[dst].election_step(|e| e.receive(src_id, m, sim_ms, &vv));
                    for e in events {
                        self.election_event(dst, e);
                    }
                }
            }
        }
    }

    /// The receiver acknowledges the sender's log up to `upto_lsn`.
    fn ack(&mut self, l: usize, upto_lsn: u64) {
        let to = self.links[l].to;
        let direct = self.direct_for(l);
        let ack = self.links[l]
            .inbound
            .ack(self.regions[to].store(), upto_lsn, direct);
        self.push(l, false, Msg::Ack(ack));
    }

    /// The receiver side: applies a batch through the link's [`Inbound`],
    /// as `meridian_repl::receiver` does. Returns false when the link was
    /// reset.
    fn receive(&mut self, l: usize, upto_lsn: u64, records: &[Vec<u8>]) -> Result<bool, Anomaly> {
        let (from, to) = (self.links[l].from, self.links[l].to);
        let now = self.now_ms(to);
        let mut breakage = LoseRelayedEffects {
            seen: &mut self.relayed_seen[to],
        };
        let mut lose_pushes = LoseRelayedPushes;
        let hook: Option<&mut dyn OpHook> = match self.cfg.breakage {
            Breakage::LoseRelayedEffects => Some(&mut breakage),
            Breakage::LoseRelayedPushes => Some(&mut lose_pushes),
            _ => None,
        };
        let store = self.regions[to].store();
        let batch = self.links[l]
            .inbound
            .apply(store, now, upto_lsn, records, hook);
        // The real receiver skips this flush when a batch fails; flushing
        // here anyway keeps the journal buffer empty for crashes (region.rs)
        // and only hands to the OS what the next flush would have.
        store.flush().map_err(|e| store_err("flush", e))?;
        self.report.duplicates_received += batch.duplicates;
        self.event(format!(
            "r{from}->r{to} {} ops: {} applied, {} duplicate",
            records.len(),
            batch.applied,
            batch.duplicates
        ));
        match batch.failed {
            None => {
                if batch.applied > 0 {
                    self.retry_waiting(to)?;
                }
                Ok(true)
            }
            Some(e @ (ApplyError::MissingDependencies(_) | ApplyError::WaitedTooMuch(_))) => {
                self.reset_link(l, &e.to_string());
                Ok(false)
            }
            Some(ApplyError::Store(e)) => Err(store_err("apply", e)),
        }
    }
}

/// [`Breakage::LoseRelayedEffects`]: every third relayed record a region
/// receives (one whose op neither the sender made nor the region holds) is
/// applied as the same op without its effects.
struct LoseRelayedEffects<'a> {
    /// Relayed records this region received since the last one broken.
    seen: &'a mut u64,
}

impl OpHook for LoseRelayedEffects<'_> {
    fn before_apply(&mut self, sender: RegionId, store: &Store, op: &mut Op) -> bool {
        if op.dot().region() == sender || store.db().version_vector().covers(op.dot()) {
            return false;
        }
        *self.seen += 1;
        if *self.seen < 3 {
            return false;
        }
        *self.seen = 0;
        op.effects.clear();
        true
    }
}

/// [`Breakage::LoseRelayedPushes`]: a relayed op (one neither the sender
/// made nor the region holds) is applied without its list inserts.
struct LoseRelayedPushes;

impl OpHook for LoseRelayedPushes {
    fn before_apply(&mut self, sender: RegionId, store: &Store, op: &mut Op) -> bool {
        if op.dot().region() == sender || store.db().version_vector().covers(op.dot()) {
            return false;
        }
        let before = op.effects.len();
        op.effects
            .retain(|e| !matches!(e.kind, EffectKind::LInsert { .. }));
        op.effects.len() != before
    }
}

/// Runs one seed.
pub fn run_seed(cfg: SimConfig) -> SimReport {
    let seed = cfg.seed;
    match Sim::new(cfg) {
        Ok(sim) => sim.run(),
        Err(a) => SimReport {
            seed,
            anomaly: Some(a),
            ..SimReport::default()
        },
    }
}
