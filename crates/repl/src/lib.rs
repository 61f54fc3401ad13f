//! Replication between regions.
//!
//! # Layout
//! - [`wire`]: checksummed frames and the message set.
//! - [`handshake`]: mutual proof of the cluster secret.
//! - [`sender`]: one task per peer that dials it and streams this region's
//!   op log from the peer's version vector, reconnecting forever.
//! - [`receiver`]: accepts peers, applies their ops (causal order is
//!   guaranteed by each stream being a log in apply order), appends them to
//!   this region's log, and acknowledges.
//! - [`status`]: link states and lag for status views and metrics.
//! - [`antientropy`]: digest trees over the key space, and the session that
//!   repairs a peer the retained log cannot serve by merging state.
//!
//! Invariants:
//! - A stream is a log in the sender's apply order, so every op arrives
//!   after everything it depends on; a receiver that sees otherwise resets
//!   the link instead of applying out of order.
//! - Relayed ops are appended to the receiver's log like its own, so two
//!   regions that cannot reach each other converge through a third.
//! - Only records on stable storage are shipped: a region that crashes never
//!   finds peers holding ops it has lost (and would reissue under the same dot).
//! - Nothing here holds the store lock across a network wait.

pub mod antientropy;
pub mod handshake;
pub mod receiver;
pub mod sender;
pub mod status;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_crdt::RegionId;
use meridian_store::Store;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use status::{AntiEntropyStats, LinkState, PeerView, ReplStatus};

/// How a region replicates.
#[derive(Debug, Clone)]
pub struct ReplConfig {
    pub region: RegionId,
    pub cluster: String,
    pub secret: Vec<u8>,
    pub peers: Vec<(RegionId, String)>,
    pub max_clock_offset_ms: u64,
    /// Idle links send a heartbeat this often.
    pub heartbeat_ms: u64,
    /// An inbound link silent for this long is closed.
    pub idle_timeout_ms: u64,
    /// This region is a witness: it stores no data, takes no ops, and only
    /// heartbeats so quorum decisions can count it.
    pub witness: bool,
}

/// What replication shares with the rest of the region.
#[derive(Clone)]
pub struct Host {
    pub store: Arc<Mutex<Store>>,
    /// The op-log LSN on stable storage; senders ship records up to it.
    pub synced: Arc<watch::Sender<u64>>,
    /// Bumped after ops from peers are applied (for `MERIDIAN AFTER`).
    pub applied: Arc<watch::Sender<u64>>,
    /// Failure detection and the quorum lease; fed with every message a
    /// peer sends on either link.
    pub view: Arc<Mutex<meridian_cluster::ClusterView>>,
}

impl Host {
    pub fn new(store: Arc<Mutex<Store>>, view: meridian_cluster::ClusterView) -> Host {
        let synced = store.lock().log().synced_lsn();
        Host {
            store,
            synced: Arc::new(watch::channel(synced).0),
            applied: Arc::new(watch::channel(0).0),
            view: Arc::new(Mutex::new(view)),
        }
    }

    /// Notes a message from `peer` for failure detection.
    pub fn heard(&self, peer: RegionId) {
        self.view.lock().heard(peer, wall_ms());
    }

    /// Makes everything logged so far durable. The store lock is held only
    /// to hand records to the OS and to record the outcome, never during the
    /// fdatasync itself, so clients keep being served meanwhile.
    pub fn sync(&self) -> Result<u64, meridian_store::StoreError> {
        let pending = self.store.lock().begin_sync()?;
        let lsn = if pending.is_empty() {
            self.store.lock().log().synced_lsn()
        } else {
            let outcome = pending.run();
            self.store.lock().finish_sync(pending, outcome)?
        };
        self.publish_synced(lsn);
        Ok(lsn)
    }

    /// Publishes the synced LSN so senders wake up.
    pub fn publish_synced(&self, lsn: u64) {
        self.synced.send_if_modified(|cur| {
            let changed = lsn > *cur;
            if changed {
                *cur = lsn;
            }
            changed
        });
    }
}

/// Test-only shift of this process's wall clock, in ms (`meridian serve
/// --clock-offset-ms`): every reading of the region's physical clock (HLC
/// stamps, heartbeats, leases, expiry) goes through [`wall_ms`], so the
/// region behaves as if its clock were that far ahead (or behind).
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts this process's wall clock by `offset_ms`; see [`wall_ms`]. Only
/// chaos tests use it, to run a region with a skewed clock.
pub fn set_clock_offset_ms(offset_ms: i64) {
    CLOCK_OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

/// The offset set by [`set_clock_offset_ms`] (0 unless a test set one).
pub fn clock_offset_ms() -> i64 {
    CLOCK_OFFSET_MS.load(Ordering::Relaxed)
}

/// This region's wall clock in ms since the Unix epoch, shifted by the
/// test-only clock offset.
pub fn wall_ms() -> u64 {
    let real_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    real_ms.saturating_add_signed(clock_offset_ms())
}

/// Starts the acceptor on `listener`, one sender per peer, and the task that
/// makes logged records durable promptly so they can be shipped.
pub fn start(config: ReplConfig, host: Host, listener: TcpListener) -> Arc<ReplStatus> {
    let status = Arc::new(ReplStatus::default());
    let config = Arc::new(config);
    tokio::spawn(receiver::accept_loop(
        listener,
        config.clone(),
        host.clone(),
        status.clone(),
    ));
    for (peer, addr) in config.peers.clone() {
        tokio::spawn(sender::run(
            peer,
            addr,
            config.clone(),
            host.clone(),
            status.clone(),
        ));
    }
    // A region with no peers to ship to keeps its fsync policy as it is.
    if !config.peers.is_empty() {
        tokio::spawn(sync_for_shipping(host, status.clone()));
    }
    status
}

/// Peers are only sent records on stable storage. Under `--fsync always`
/// every commit is already synced; otherwise this syncs within about a
/// millisecond of a flush, so replication does not wait for the
/// once-a-second fsync. It also keeps compaction from dropping records a
/// peer has not acknowledged.
async fn sync_for_shipping(host: Host, status: Arc<ReplStatus>) {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let behind = {
            let mut store = host.store.lock();
            store.retain_from(status.retain_from());
            !store.is_poisoned() && store.log().flushed_lsn() > store.log().synced_lsn()
        };
        if behind {
            // The fdatasync runs on a blocking thread: on the runtime worker
            // it stalled every client of the region for each disk flush.
            let host = host.clone();
            match tokio::task::spawn_blocking(move || host.sync()).await {
                Ok(Err(e)) => tracing::error!(error = %e, "fsync for replication failed"),
                Err(e) => tracing::error!(error = %e, "fsync task for replication failed"),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Binds the replication listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
