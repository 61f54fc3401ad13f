//! One simulated region: a real [`Store`] in its own data directory, a
//! real [`ClusterView`] and a real [`Election`], with a wall clock that is
//! the simulation's time plus this region's offset. The election runs on
//! the simulation's time itself, as the server runs it on a monotonic clock
//! that offsets and jumps of the wall clock do not move.
//!
//! A crash is `kill -9`: the process's memory is gone, what it had handed to
//! the OS survives. The op log keeps appended records in a userspace buffer
//! until `Store::flush`, and dropping a `Log` would write that buffer out, so
//! a crash first arms the log's fault injector to refuse every write and then
//! drops the store: the buffer is lost exactly as a killed process loses it.
//! The conflict journal's buffer is not behind that injector; the simulator
//! keeps it empty at every point a crash can happen (each batch of peer ops
//! is flushed at once, and a local op that journals a conflict is flushed at
//! once), so dropping it writes nothing.
//!
//! A power loss goes further: after the crash, each file of the op log and
//! the journal keeps only its synced bytes plus a random prefix of the rest
//! ([`SimRegion::lose_power`]).

use std::path::PathBuf;

use meridian_cluster::{
    ClusterView, Durable, Election, ElectionConfig, ElectionEvent, Thresholds, ViewConfig,
};
use meridian_crdt::RegionId;
use meridian_log::{FaultInjector, LogOptions, SEGMENT_MAX_BYTES_MIN};
use meridian_repl::tombstones::Round;
use meridian_store::{Store, StoreError, StoreOptions};

use crate::config::Breakage;

/// The failure detector's expected heartbeat interval.
pub const HEARTBEAT_MS: u64 = 100;
/// Short enough that cuts of the fault phase outlast it and elections
/// happen in most runs.
pub const LEASE_MS: u64 = 1_000;
/// Where region wall clocks start (2026-01-01 in Unix ms).
const WALL_CLOCK_BASE_MS: i64 = 1_767_225_600_000;
/// Region `r0` is the primary of `primary` keyspaces in term 0.
pub const INITIAL_PRIMARY: &str = "r0";

pub struct SimRegion {
    pub id: RegionId,
    pub dir: PathBuf,
    pub peers: Vec<RegionId>,
    /// `None` while crashed.
    pub store: Option<Store>,
    faults: FaultInjector,
    pub view: ClusterView,
    pub election: Election,
    /// The election's durable state as last saved (the server's file):
    /// survives crashes.
    pub election_saved: Option<Durable>,
    /// Raised whenever the election's term, role, primary or vote changed,
    /// so links send its state at once.
    pub election_gen: u64,
    incarnation: u64,
    breakage: Breakage,
    pub clock_offset_ms: i64,
    /// History indices of ops committed here and not yet flushed.
    pub pending: Vec<usize>,
    /// The tick at which a crashed region comes back.
    pub restart_at: u64,
    /// The tombstone collection round in progress (lost in a crash).
    pub collection: Option<Round>,
    /// Anti-entropy merges that raised this region's vector (the server's
    /// `Host::state_merged`): its links compare state before streaming on.
    pub merges: u64,
}

impl SimRegion {
    pub fn open(
        id: RegionId,
        dir: PathBuf,
        peers: Vec<RegionId>,
        now_ms: u64,
        breakage: Breakage,
    ) -> Result<SimRegion, StoreError> {
        let faults = FaultInjector::new();
        let store = open_store(&dir, id, &faults)?;
        Ok(SimRegion {
            id,
            dir,
            view: new_view(id, &peers, now_ms, breakage),
            election: new_election(id, &peers, None, 0, now_ms, breakage),
            election_saved: None,
            election_gen: 0,
            incarnation: 0,
            breakage,
            peers,
            store: Some(store),
            faults,
            clock_offset_ms: 0,
            pending: Vec::new(),
            restart_at: 0,
            collection: None,
            merges: 0,
        })
    }

    pub fn is_up(&self) -> bool {
        self.store.is_some()
    }

    /// The store of a region that is up (callers check [`is_up`] first).
    pub fn store(&mut self) -> &mut Store {
        self.store.as_mut().expect("region is up")
    }

    /// This region's wall clock: simulated time from a base far enough
    /// above zero that no offset pins it at zero (a clock stuck at zero
    /// would look, to the region, like time standing still).
    pub fn now_ms(&self, sim_ms: u64) -> u64 {
        (WALL_CLOCK_BASE_MS + sim_ms as i64 + self.clock_offset_ms).max(0) as u64
    }

    /// `kill -9`: everything not yet handed to the OS is lost.
    pub fn crash(&mut self) {
        self.collection = None;
        self.faults.fail_writes_after_bytes(0);
        drop(self.store.take());
    }

    /// The machine loses power: a crash, then each log file keeps its synced
    /// part and `keep(unsynced_bytes)` bytes of the rest.
    pub fn lose_power(&mut self, mut keep: impl FnMut(u64) -> u64) -> std::io::Result<()> {
        let tails = self.store().unsynced_tails();
        self.crash();
        for tail in tails {
            tail.lose_power(keep(tail.written_bytes - tail.synced_bytes))?;
        }
        Ok(())
    }

    /// Restarts from the data directory, as the server does after a crash;
    /// the election starts from its saved state in a new incarnation.
    pub fn restart(&mut self, now_ms: u64, sim_ms: u64) -> Result<(), StoreError> {
        self.faults.clear();
        self.store = Some(open_store(&self.dir, self.id, &self.faults)?);
        self.view = new_view(self.id, &self.peers, now_ms, self.breakage);
        self.incarnation += 1;
        self.election = new_election(
            self.id,
            &self.peers,
            self.election_saved.clone(),
            self.incarnation,
            sim_ms,
            self.breakage,
        );
        self.election_gen += 1;
        Ok(())
    }

    /// Runs `f` on the election as `meridian_repl::Host::election_step`
    /// does, saving what changed at once (the server saves on another
    /// thread; votes wait for it either way).
    pub fn election_step(
        &mut self,
        f: impl FnOnce(&mut Election) -> Vec<ElectionEvent>,
    ) -> Vec<ElectionEvent> {
        let e = &mut self.election;
        let before = (e.term(), e.role(), e.primary(), e.durable().voted_for);
        let out = f(e);
        if let Some(d) = e.take_dirty() {
            self.election_saved = Some(d.clone());
            e.mark_saved(d);
        }
        let after = (e.term(), e.role(), e.primary(), e.durable().voted_for);
        if before != after {
            self.election_gen += 1;
        }
        out
    }

    /// A clean stop (flush, then drop) and a restart: recovery must rebuild
    /// exactly the state the region had.
    pub fn reopen_clean(&mut self, now_ms: u64) -> Result<(), StoreError> {
        if let Some(mut store) = self.store.take() {
            store.flush()?;
            store.sync()?;
        }
        self.restart(now_ms, now_ms)
    }
}

fn open_store(dir: &PathBuf, id: RegionId, faults: &FaultInjector) -> Result<Store, StoreError> {
    let mut opts = StoreOptions::new(dir, id);
    // Small segments, so runs also cross segment rolls.
    opts.log = LogOptions {
        segment_max_bytes: SEGMENT_MAX_BYTES_MIN.max(64 * 1024),
        faults: faults.clone(),
        ..LogOptions::default()
    };
    Ok(Store::open(opts)?.0)
}

fn new_election(
    id: RegionId,
    peers: &[RegionId],
    saved: Option<Durable>,
    incarnation: u64,
    sim_ms: u64,
    breakage: Breakage,
) -> Election {
    Election::new(
        ElectionConfig {
            me: id,
            peers: peers.to_vec(),
            witness: false,
            initial_primary: Some(RegionId::new(INITIAL_PRIMARY).expect("valid region id")),
            lease_ms: LEASE_MS,
            stagger_ms: 2 * HEARTBEAT_MS,
            unsafe_skip_leases: breakage == Breakage::SkipPrimaryLeases,
        },
        saved,
        incarnation,
        sim_ms,
    )
}

fn new_view(id: RegionId, peers: &[RegionId], now_ms: u64, breakage: Breakage) -> ClusterView {
    ClusterView::new(
        ViewConfig {
            me: id,
            peers: peers.to_vec(),
            lease_ms: LEASE_MS,
            thresholds: Thresholds {
                heartbeat_ms: HEARTBEAT_MS,
                ..Thresholds::default()
            },
            unsafe_wall_clock: breakage == Breakage::WallClockLease,
        },
        now_ms,
    )
}
