//! Replication between regions.
//!
//! # Layout
//! - [`wire`]: checksummed frames and the message set.
//! - [`handshake`]: mutual proof of the cluster secret.
//! - [`link`]: the streaming half of a link as a state machine without I/O
//!   (resume position, records the peer lacks, batches, heartbeats, acks).
//! - [`sender`]: one task per peer that dials it and streams this region's
//!   op log from the peer's version vector, reconnecting forever.
//! - [`inbound`]: the receiving half of a link as a state machine without
//!   I/O (apply a batch with the causal check, append applied ops to this
//!   region's log to relay them, the acknowledgement with the durable vector).
//! - [`receiver`]: accepts peers and drives [`inbound`] over each
//!   connection (causal order is guaranteed by each stream being a log in
//!   apply order), flushing each batch before acknowledging it.
//! - [`status`]: link states and lag for status views and metrics.
//! - [`tls`]: mutual TLS with the cluster CA on every link (when
//!   configured), PEM loading, and the plain-or-TLS [`tls::Transport`].
//! - [`antientropy`]: digest trees over the key space, and the session that
//!   repairs a peer the retained log cannot serve by merging state.
//! - [`election`]: the durable term file, the monotonic clock and the
//!   locking around the elected primary's protocol, whose messages travel
//!   dialer to acceptor on every link.
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
pub mod election;
pub mod handshake;
pub mod inbound;
pub mod link;
pub mod members;
pub mod receiver;
pub mod sender;
pub mod status;
mod store_lock;
pub mod tls;
pub use store_lock::{in_multi_thread_runtime, StoreLock};
pub mod tombstones;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_crdt::RegionId;
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
    /// Mutual TLS on every link, inbound and outbound; `None` is plain TCP.
    pub tls: Option<tls::PeerTls>,
    /// Every this often a link reconnects and compares full state with its
    /// peer (anti-entropy) even when the log covers it; 0: never.
    pub antientropy_interval_ms: u64,
    /// Every this often a tombstone collection round starts (it then waits
    /// for causal stability, however long that takes); 0: never.
    pub tombstone_interval_ms: u64,
}

/// What replication shares with the rest of the region.
#[derive(Clone)]
pub struct Host {
    pub store: Arc<crate::StoreLock>,
    /// The op-log LSN on stable storage; senders ship records up to it.
    pub synced: Arc<watch::Sender<u64>>,
    /// Bumped after ops from peers are applied (for `MERIDIAN AFTER`).
    pub applied: Arc<watch::Sender<u64>>,
    /// Bumped after each acknowledgement a peer sends (`WAIT` waits on it).
    pub peer_acked: Arc<watch::Sender<u64>>,
    /// Failure detection and the quorum lease; fed with every message a
    /// peer sends on either link.
    pub view: Arc<Mutex<meridian_cluster::ClusterView>>,
    /// Which regions make up the cluster; links follow it.
    pub members: Arc<members::Members>,
    /// Bumped when anti-entropy merged state that raised the version
    /// vector: what the log lacks must reach the other peers by state too.
    pub state_merged: Arc<watch::Sender<u64>>,
    /// Set when the region shuts down: senders say goodbye and stop.
    pub closing: Arc<watch::Sender<bool>>,
    /// Goodbyes sent, so shutdown can wait for them.
    pub goodbyes_sent: Arc<std::sync::atomic::AtomicUsize>,
    /// The elected primary's protocol. Outside this crate it is read
    /// through [`Host::election_view`] and changed only through
    /// [`Host::election_step`], which saves and announces what changed.
    pub(crate) election: Arc<Mutex<meridian_cluster::Election>>,
    /// Bumped when the election's term, role, primary or vote changed, so
    /// senders tell their peers at once.
    pub election_changed: Arc<watch::Sender<u64>>,
    /// Bumped when the election's durable state changed and must be saved.
    election_unsaved: Arc<watch::Sender<u64>>,
    /// Where the election state is saved (`None`: not saved, in tests).
    election_dir: Option<PathBuf>,
}

impl Host {
    pub fn new(
        store: Arc<crate::StoreLock>,
        view: meridian_cluster::ClusterView,
        members: members::Members,
        election: meridian_cluster::Election,
        election_dir: Option<PathBuf>,
    ) -> Host {
        let synced = store.lock().log().synced_lsn();
        Host {
            store,
            synced: Arc::new(watch::channel(synced).0),
            applied: Arc::new(watch::channel(0).0),
            peer_acked: Arc::new(watch::channel(0).0),
            view: Arc::new(Mutex::new(view)),
            members: Arc::new(members),
            state_merged: Arc::new(watch::channel(0).0),
            closing: Arc::new(watch::channel(false).0),
            goodbyes_sent: Default::default(),
            election: Arc::new(Mutex::new(election)),
            election_changed: Arc::new(watch::channel(0).0),
            election_unsaved: Arc::new(watch::channel(0).0),
            election_dir,
        }
    }

    /// Tells every peer this region is leaving (each sender sends `Goodbye`
    /// and stops), waiting up to `wait` for the links that are up.
    pub async fn close_links(&self, status: &ReplStatus, wait: Duration) {
        let up = status
            .outbound
            .lock()
            .values()
            .filter(|o| o.state == status::LinkState::Up)
            .count();
        self.closing.send_replace(true);
        let deadline = tokio::time::Instant::now() + wait;
        while self
            .goodbyes_sent
            .load(std::sync::atomic::Ordering::Acquire)
            < up
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
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
    tokio::spawn(election::save_loop(host.clone()));
    tokio::spawn(receiver::accept_loop(
        listener,
        config.clone(),
        host.clone(),
        status.clone(),
    ));
    tokio::spawn(tombstones::run(
        config.clone(),
        host.clone(),
        status.clone(),
    ));
    tokio::spawn(manage_links(config, host, status.clone()));
    status
}

/// Keeps one sender per member (this region aside), following the
/// membership: a region added gets a link, a region removed loses its link
/// and its place in the majority. Starts the shipping fsync with the first
/// peer.
async fn manage_links(config: Arc<ReplConfig>, host: Host, status: Arc<ReplStatus>) {
    let me = config.region;
    let mut changes = host.members.subscribe();
    let mut links: std::collections::HashMap<RegionId, (String, tokio::task::JoinHandle<()>)> =
        Default::default();
    let mut shipping = false;
    loop {
        let membership = host.members.current();
        let wanted = membership.peers(me, &config.peers);
        for (peer, addr) in &wanted {
            let current = links.get(peer).map(|(a, _)| a.as_str());
            if current == Some(addr.as_str()) {
                continue;
            }
            if let Some((_, old)) = links.remove(peer) {
                old.abort();
            }
            if addr.is_empty() {
                // Known only by a peer that did not say where it listens.
                continue;
            }
            let task = tokio::spawn(sender::run(
                *peer,
                addr.clone(),
                config.clone(),
                host.clone(),
                status.clone(),
            ));
            links.insert(*peer, (addr.clone(), task));
        }
        let gone: Vec<RegionId> = links
            .keys()
            .filter(|p| !wanted.iter().any(|(w, _)| w == *p))
            .copied()
            .collect();
        for peer in gone {
            if let Some((_, task)) = links.remove(&peer) {
                task.abort();
            }
            status.outbound.lock().remove(&peer);
            status.inbound.lock().remove(&peer);
            tracing::info!(%peer, "replication link closed: the region is no longer a member");
        }
        let peers: Vec<RegionId> = wanted.iter().map(|(p, _)| *p).collect();
        host.election_step(|e| e.set_peers(&peers));
        if let Some(t) = host.view.lock().set_peers(&peers, wall_ms()) {
            tracing::info!(
                epoch = t.epoch,
                version = membership.version,
                members = membership.size(),
                "cluster membership changed"
            );
        }
        if !shipping && !peers.is_empty() {
            shipping = true;
            tokio::spawn(sync_for_shipping(host.clone(), status.clone()));
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
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

/// What the in-process tests of this crate build a region from.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use meridian_crdt::RegionId;
    use meridian_store::Store;

    use crate::{wall_ms, Host, ReplConfig};

    /// A host over `store` for region `me`, whose one peer is `other`.
    pub fn host(store: Store, me: RegionId, other: RegionId) -> Host {
        let view = meridian_cluster::ClusterView::new(
            meridian_cluster::ViewConfig {
                me,
                peers: vec![other],
                lease_ms: 3_000,
                thresholds: Default::default(),
                unsafe_wall_clock: false,
            },
            wall_ms(),
        );
        let members =
            crate::members::Members::open(me, &[(other, "127.0.0.1:1".into())], None).unwrap();
        let election = meridian_cluster::Election::new(
            meridian_cluster::ElectionConfig {
                me,
                peers: vec![other],
                witness: false,
                initial_primary: None,
                lease_ms: 3_000,
                stagger_ms: 500,
                unsafe_skip_leases: false,
            },
            None,
            1,
            0,
        );
        Host::new(
            Arc::new(crate::StoreLock::new(store)),
            view,
            members,
            election,
            None,
        )
    }

    /// Replication settings with no periodic work (no periodic
    /// anti-entropy, no tombstone rounds).
    pub fn config(me: RegionId, tls: Option<crate::tls::PeerTls>) -> ReplConfig {
        ReplConfig {
            region: me,
            cluster: "c".into(),
            secret: b"secret".to_vec(),
            peers: Vec::new(),
            max_clock_offset_ms: 500,
            heartbeat_ms: 250,
            idle_timeout_ms: 5_000,
            witness: false,
            tls,
            antientropy_interval_ms: 0,
            tombstone_interval_ms: 0,
        }
    }
}
