//! One simulated region: a real [`Store`] in its own data directory and a
//! real [`ClusterView`], with a wall clock that is the simulation's time
//! plus this region's offset.
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

use meridian_cluster::{ClusterView, Thresholds, ViewConfig};
use meridian_crdt::RegionId;
use meridian_log::{FaultInjector, LogOptions, SEGMENT_MAX_BYTES_MIN};
use meridian_store::{Store, StoreError, StoreOptions};

/// The failure detector's expected heartbeat interval.
pub const HEARTBEAT_MS: u64 = 250;
pub const LEASE_MS: u64 = 1_500;

pub struct SimRegion {
    pub id: RegionId,
    pub dir: PathBuf,
    pub peers: Vec<RegionId>,
    /// `None` while crashed.
    pub store: Option<Store>,
    faults: FaultInjector,
    pub view: ClusterView,
    pub clock_offset_ms: i64,
    /// History indices of ops committed here and not yet flushed.
    pub pending: Vec<usize>,
    /// The tick at which a crashed region comes back.
    pub restart_at: u64,
}

impl SimRegion {
    pub fn open(
        id: RegionId,
        dir: PathBuf,
        peers: Vec<RegionId>,
        now_ms: u64,
    ) -> Result<SimRegion, StoreError> {
        let faults = FaultInjector::new();
        let store = open_store(&dir, id, &faults)?;
        Ok(SimRegion {
            id,
            dir,
            view: new_view(id, &peers, now_ms),
            peers,
            store: Some(store),
            faults,
            clock_offset_ms: 0,
            pending: Vec::new(),
            restart_at: 0,
        })
    }

    pub fn is_up(&self) -> bool {
        self.store.is_some()
    }

    /// The store of a region that is up (callers check [`is_up`] first).
    pub fn store(&mut self) -> &mut Store {
        self.store.as_mut().expect("region is up")
    }

    pub fn now_ms(&self, sim_ms: u64) -> u64 {
        (sim_ms as i64 + self.clock_offset_ms).max(0) as u64
    }

    /// `kill -9`: everything not yet handed to the OS is lost.
    pub fn crash(&mut self) {
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

    /// Restarts from the data directory, as the server does after a crash.
    pub fn restart(&mut self, now_ms: u64) -> Result<(), StoreError> {
        self.faults.clear();
        self.store = Some(open_store(&self.dir, self.id, &self.faults)?);
        self.view = new_view(self.id, &self.peers, now_ms);
        Ok(())
    }

    /// A clean stop (flush, then drop) and a restart: recovery must rebuild
    /// exactly the state the region had.
    pub fn reopen_clean(&mut self, now_ms: u64) -> Result<(), StoreError> {
        if let Some(mut store) = self.store.take() {
            store.flush()?;
            store.sync()?;
        }
        self.restart(now_ms)
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

fn new_view(id: RegionId, peers: &[RegionId], now_ms: u64) -> ClusterView {
    ClusterView::new(
        ViewConfig {
            me: id,
            peers: peers.to_vec(),
            lease_ms: LEASE_MS,
            thresholds: Thresholds {
                heartbeat_ms: HEARTBEAT_MS,
                ..Thresholds::default()
            },
        },
        now_ms,
    )
}
