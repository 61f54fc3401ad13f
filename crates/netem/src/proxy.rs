//! [`Proxy`]: one directed link A→B as a TCP listener that forwards to B's
//! real address, and [`LinkControl`], the handle that changes it at run time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conditions::{ConditionsError, LinkConditions};
use crate::conn::{self, End, Way};
use crate::rng::SplitMix64;
use crate::stats::{Counters, LinkStats};

/// Seed of proxies started without one, so that even they are reproducible.
pub const DEFAULT_SEED: u64 = 0x6d65_7269_6469_616e;
/// Connections one proxy forwards at once; more are refused. A region opens
/// one per peer, so this only stops a runaway reconnect loop.
pub const CONNECTIONS_MAX: u64 = 256;
/// How long dialing the target may take before the dialer's connection is
/// closed as if the target were unreachable.
pub const UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed `accept` (for example out of file descriptors), so a
/// persistent failure does not spin a core.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the bound address of the listener on {listen}: {source}")]
    LocalAddr {
        listen: SocketAddr,
        source: std::io::Error,
    },
}

/// State shared by the accept loop, every connection and every
/// [`LinkControl`] clone.
struct Shared {
    conditions: watch::Sender<LinkConditions>,
    target: watch::Sender<Option<SocketAddr>>,
    counters: Counters,
    seed: u64,
    /// The proxy's listening address, for log fields.
    addr: SocketAddr,
}

/// A cloneable handle that changes a running [`Proxy`]. Changes take effect
/// at once on existing connections (including bytes already queued) and on
/// new ones; see the crate docs for what each setting means over TCP.
#[derive(Clone)]
pub struct LinkControl {
    shared: Arc<Shared>,
}

impl LinkControl {
    /// Replaces the conditions. Invalid conditions are rejected and the old
    /// ones stay in force.
    pub fn set(&self, conditions: LinkConditions) -> Result<(), ConditionsError> {
        self.update(|c| *c = conditions)
    }

    /// Changes the conditions in place, atomically with respect to other
    /// updates. If the result is invalid nothing changes.
    pub fn update(&self, change: impl FnOnce(&mut LinkConditions)) -> Result<(), ConditionsError> {
        let mut result = Ok(());
        self.shared.conditions.send_if_modified(|current| {
            let mut next = *current;
            change(&mut next);
            if let Err(e) = next.validate() {
                result = Err(e);
                return false;
            }
            let modified = next != *current;
            *current = next;
            modified
        });
        if result.is_ok() {
            tracing::debug!(proxy = %self.shared.addr, conditions = ?self.conditions(), "link conditions set");
        }
        result
    }

    /// Takes both directions down, keeping delays and limits for [`heal`](Self::heal).
    pub fn partition(&self) {
        self.set_up(false);
    }

    /// Brings both directions up, keeping delays and limits.
    pub fn heal(&self) {
        self.set_up(true);
    }

    fn set_up(&self, up: bool) {
        self.shared.conditions.send_if_modified(|current| {
            let next = current.with_up(up);
            let modified = next != *current;
            *current = next;
            modified
        });
        tracing::debug!(proxy = %self.shared.addr, up, "link up state set");
    }

    /// The conditions in force.
    pub fn conditions(&self) -> LinkConditions {
        *self.shared.conditions.borrow()
    }

    /// Points new connections at `target`. Established connections stay with
    /// the old target until they close (if it was a region that stopped, they
    /// have already).
    pub fn set_target(&self, target: SocketAddr) {
        self.shared.target.send_replace(Some(target));
        tracing::debug!(proxy = %self.shared.addr, %target, "link target set");
    }

    /// Where new connections are forwarded; `None` while pending.
    pub fn target(&self) -> Option<SocketAddr> {
        *self.shared.target.borrow()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.snapshot()
    }
}

/// A running link proxy. Dropping it stops listening and closes every
/// connection it forwards.
pub struct Proxy {
    addr: SocketAddr,
    control: LinkControl,
    accept_task: JoinHandle<()>,
    /// Never sent on: dropping it is the signal that ends every connection.
    _shutdown: watch::Sender<()>,
}

impl Proxy {
    /// Starts a proxy to `target` with [`DEFAULT_SEED`]. Pass `127.0.0.1:0`
    /// as `listen` to let the OS pick a free port, then read [`Proxy::addr`].
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> Result<Proxy, StartError> {
        Proxy::start_with(listen, Some(target), DEFAULT_SEED).await
    }

    /// Starts a proxy to `target` whose random draws derive from `seed`.
    pub async fn start_seeded(
        listen: SocketAddr,
        target: SocketAddr,
        seed: u64,
    ) -> Result<Proxy, StartError> {
        Proxy::start_with(listen, Some(target), seed).await
    }

    /// Starts a proxy whose target is not known yet (the region behind it has
    /// not printed its address). Connections are accepted and closed at once
    /// until [`Proxy::set_target`] is called.
    pub async fn start_pending(listen: SocketAddr) -> Result<Proxy, StartError> {
        Proxy::start_with(listen, None, DEFAULT_SEED).await
    }

    /// [`Proxy::start_pending`] with an explicit seed.
    pub async fn start_pending_seeded(listen: SocketAddr, seed: u64) -> Result<Proxy, StartError> {
        Proxy::start_with(listen, None, seed).await
    }

    async fn start_with(
        listen: SocketAddr,
        target: Option<SocketAddr>,
        seed: u64,
    ) -> Result<Proxy, StartError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Bind { listen, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::LocalAddr { listen, source })?;
        let shared = Arc::new(Shared {
            conditions: watch::Sender::new(LinkConditions::IDEAL),
            target: watch::Sender::new(target),
            counters: Counters::default(),
            seed,
            addr,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(());
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        tracing::debug!(proxy = %addr, ?target, seed, "link proxy started");
        Ok(Proxy {
            addr,
            control: LinkControl { shared },
            accept_task,
            _shutdown: shutdown_tx,
        })
    }

    /// The address the proxy listens on: what the dialing region must be told.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control handle; clone it to keep it beyond the proxy's borrow.
    pub fn control(&self) -> &LinkControl {
        &self.control
    }

    /// Shorthand for `self.control().set_target(target)`.
    pub fn set_target(&self, target: SocketAddr) {
        self.control.set_target(target);
    }

    /// Shorthand for `self.control().stats()`.
    pub fn stats(&self) -> LinkStats {
        self.control.stats()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: watch::Receiver<()>) {
    let mut next_connection_id: u64 = 0;
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(proxy = %shared.addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        shared.counters.accepted();
        let connection_id = next_connection_id;
        next_connection_id += 1;
        let up = shared.conditions.borrow().is_up();
        let target = match *shared.target.borrow() {
            _ if !up => Err("link down"),
            None => Err("target not set"),
            Some(_) if shared.counters.active_now() >= CONNECTIONS_MAX => {
                Err("connection limit reached")
            }
            Some(target) => Ok(target),
        };
        let target = match target {
            Ok(target) => target,
            Err(reason) => {
                tracing::debug!(proxy = %shared.addr, %peer, reason, "connection refused");
                shared.counters.refused();
                drop(client);
                continue;
            }
        };
        // Counted here rather than in the task, so the limit check above never
        // races with connections that are spawned but not yet running.
        shared.counters.opened();
        tokio::spawn(serve(
            Arc::clone(&shared),
            client,
            target,
            connection_id,
            shutdown.clone(),
        ));
    }
}

async fn serve(
    shared: Arc<Shared>,
    client: TcpStream,
    target: SocketAddr,
    connection_id: u64,
    mut shutdown: watch::Receiver<()>,
) {
    let conditions = shared.conditions.subscribe();
    let dial = tokio::time::timeout(
        Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS),
        TcpStream::connect(target),
    );
    let upstream = tokio::select! {
        dialed = dial => match dialed {
            Ok(Ok(upstream)) => Some(upstream),
            Ok(Err(e)) => {
                tracing::debug!(proxy = %shared.addr, %target, error = %e, "target unreachable");
                None
            }
            Err(_) => {
                tracing::debug!(proxy = %shared.addr, %target, "dialing target timed out");
                None
            }
        },
        () = conn::link_down(conditions.clone()) => None,
        _ = shutdown.changed() => None,
    };
    let Some(upstream) = upstream else {
        shared.counters.refused();
        shared.counters.closed();
        return;
    };
    // The proxy re-chunks the stream on its own schedule; Nagle's algorithm on
    // top would add its own, unmodelled delay. Failing to set it only costs
    // latency, so it is not a reason to drop the connection.
    for socket in [&client, &upstream] {
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(proxy = %shared.addr, error = %e, "cannot set TCP_NODELAY");
        }
    }
    let rngs = [Way::Forward, Way::Backward]
        .map(|way| SplitMix64::derived(shared.seed, &[connection_id, way.index() as u64]));
    let end = conn::run(
        client,
        upstream,
        conditions,
        shutdown,
        &shared.counters,
        rngs,
    )
    .await;
    match &end {
        End::Cut => {
            shared.counters.cut();
            tracing::debug!(proxy = %shared.addr, connection_id, "connection cut: link down");
        }
        End::Finished | End::Shutdown => {
            tracing::debug!(proxy = %shared.addr, connection_id, ?end, "connection closed");
        }
        End::Failed(e) => {
            tracing::debug!(proxy = %shared.addr, connection_id, error = %e, "connection failed");
        }
    }
    shared.counters.closed();
}
