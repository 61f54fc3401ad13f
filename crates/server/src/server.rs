//! `meridian serve`: bind the listeners, recover the store, join the
//! cluster, start replication and the background duties ([`crate::duties`]),
//! serve clients until shutdown, then leave cleanly.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meridian_repl::tls::PeerTls;
use meridian_store::{Store, StoreOptions};
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shared::{wall_ms, Readiness, Shared};

/// Runtime worker threads for `serve`: `TOKIO_WORKER_THREADS` if set, else
/// half the cores. Every command batch takes the one store lock, so more
/// workers than that add lock hand-offs without parallel work; measured on 2
/// cores, one worker gave 25% more pipelined SET throughput than two and
/// half the p99 (bench/RESULTS.md).
pub fn worker_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1)
        })
}

/// Every socket a region listens on, bound before recovery so that a port
/// in use stops the region at once.
struct Listeners {
    resp: TcpListener,
    tls: Option<TcpListener>,
    http_addr: std::net::SocketAddr,
    repl: TcpListener,
    repl_addr: std::net::SocketAddr,
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    // Before anything can report the region as started: SIGHUP's default
    // action would end the process.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    if config.clock_offset_ms != 0 {
        meridian_repl::set_clock_offset_ms(config.clock_offset_ms);
        tracing::warn!(
            offset_ms = config.clock_offset_ms,
            "test-only --clock-offset-ms: this region's wall clock is shifted"
        );
    }
    let acl = crate::acl::load(&config)?;
    // Certificates are read before anything binds, so a bad file stops
    // the region with its name instead of leaving a half-started one.
    let client_tls = config.tls.client_acceptor()?;
    let peer_tls = config.tls.peer_tls(config.region)?;
    let slot: crate::shared::Slot = Default::default();
    let listeners = bind(&mut config, &slot).await?;
    let store = Arc::new(meridian_repl::StoreLock::new(recover(&config).await?));
    let host = join_cluster(&config, store.clone())?;
    let Listeners {
        resp,
        tls,
        http_addr,
        repl: repl_listener,
        repl_addr,
    } = listeners;
    let repl = start_replication(&config, &host, peer_tls, repl_listener);
    let notify_flags = config.notify_keyspace_events;
    let shared = Arc::new(Shared {
        requirepass: Mutex::new(config.requirepass.clone()),
        acl: parking_lot::RwLock::new(acl),
        acl_log: Mutex::new(Default::default()),
        protected_mode: std::sync::atomic::AtomicBool::new(config.protected_mode),
        closing: std::sync::atomic::AtomicBool::new(false),
        policies: parking_lot::RwLock::new(Arc::new(config.policies.clone())),
        admin_token: parking_lot::RwLock::new(config.admin_token.clone()),
        data_api_tokens: parking_lot::RwLock::new(crate::data_api::Tokens::from_config(&config)),
        config,
        store,
        host,
        repl,
        clients: Mutex::new(Default::default()),
        next_client_id: AtomicU64::new(1),
        channels: Mutex::new(Default::default()),
        patterns: Mutex::new(Default::default()),
        shard_channels: Mutex::new(Default::default()),
        metrics: Metrics::default(),
        cmdstats: Mutex::new(Default::default()),
        started: Instant::now(),
        readiness: Mutex::new(Readiness::Ready),
        shutdown: tokio::sync::Notify::new(),
        heal: Mutex::new(Default::default()),
        config_kept: Mutex::new(Default::default()),
        blocking: Mutex::new(Default::default()),
        scripting: Mutex::new(Default::default()),
        functions: Mutex::new(Default::default()),
        running_script: Mutex::new(None),
        spare_running: Mutex::new(None),
        notify_flags: std::sync::atomic::AtomicU32::new(notify_flags),
        tracking: Mutex::new(Default::default()),
        pause: Default::default(),
        monitors: Default::default(),
    });
    // Recovery replayed the log with the change feed off; it records from
    // now on if notifications need it.
    crate::events::refresh_feed(&shared, &mut shared.store.lock());
    // Compile the recovered FUNCTION libraries now, so one that cannot be
    // loaded is logged at start (FCALL and FUNCTION also catch up alone).
    {
        let store = shared.store.lock();
        shared.functions.lock().sync(store.db());
    }
    // Tests and scripts read this line to find the ports when binding port 0.
    let _ = slot.set(shared.clone());
    let tls_addr = match &tls {
        Some(l) => format!(" tls={}", l.local_addr()?),
        None => String::new(),
    };
    println!(
        "meridian listening resp={} http={} repl={}{tls_addr}",
        resp.local_addr()?,
        http_addr,
        repl_addr,
    );
    crate::duties::start(&shared);
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(shared.clone(), hangups));
    if let (Some(listener), Some(acceptor)) = (tls, client_tls) {
        tokio::spawn(accept_tls(shared.clone(), listener, acceptor));
    }
    tokio::select! {
        _ = accept(shared.clone(), resp) => {}
        _ = shutdown_signal() => tracing::info!("shutdown requested by signal"),
        _ = shared.shutdown.notified() => tracing::info!("shutdown requested by SHUTDOWN"),
    }
    // The client listener is closed (the accept loop ended). Peers hear it
    // from us rather than from their failure detectors, then the log is
    // made durable with writes refused from then on.
    *shared.readiness.lock() = Readiness::ShuttingDown;
    shared
        .host
        .close_links(&shared.repl, Duration::from_millis(500))
        .await;
    shutdown(&shared);
    Ok(())
}

/// Binds every listener and starts the HTTP port (health answers while the
/// store recovers), then logs what the region is about to be.
async fn bind(config: &mut Config, slot: &crate::shared::Slot) -> anyhow::Result<Listeners> {
    let resp = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the RESP listener on {}", config.listen))?;
    let http_listener = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
    let http_addr = http_listener.local_addr()?;
    let tls = match config.tls.listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the TLS RESP listener on {at}"))?,
        ),
        None => None,
    };
    // Status shows the bound address, also when port 0 was asked for.
    if let Some(l) = &tls {
        config.tls.listen = Some(l.local_addr()?);
    }
    let repl = meridian_repl::bind(config.repl)
        .await
        .with_context(|| format!("binding the replication listener on {}", config.repl))?;
    let repl_addr = repl.local_addr()?;
    tokio::spawn(crate::http::serve(slot.clone(), http_listener));
    tracing::info!(
        region = %config.region,
        listen = %resp.local_addr()?,
        http = %http_addr,
        repl = %repl_addr,
        tls_replication = config.tls.replication,
        peers = shared_peers(config),
        data_dir = %config.data_dir.display(),
        fsync = config.fsync.as_str(),
        "meridian starting"
    );
    Ok(Listeners {
        resp,
        tls,
        http_addr,
        repl,
        repl_addr,
    })
}

/// Opens the store: the latest snapshot plus the op log replayed after it.
async fn recover(config: &Config) -> anyhow::Result<Store> {
    let mut opts = StoreOptions::new(config.data_dir.clone(), config.region);
    opts.fsync = config.fsync;
    opts.max_clock_offset_ms = config.max_clock_offset_ms;
    opts.conflict_retention = config.conflict_retention;
    if let Some(bytes) = config.log_segment_max_bytes {
        opts.log.segment_max_bytes = bytes;
    }
    let (mut store, report) = tokio::task::spawn_blocking(move || Store::open(opts))
        .await
        .context("recovery task")??;
    store.set_backlog_ops_max(Some(config.repl_backlog_ops));
    tracing::info!(
        snapshot_lsn = ?report.snapshot_lsn,
        snapshot_keys = report.snapshot_keys,
        replayed_ops = report.replayed_ops,
        log = %report.log,
        elapsed_ms = report.elapsed_ms as u64,
        "recovered"
    );
    Ok(store)
}

/// This region's view of the cluster: its members, failure detection and
/// quorum lease, and the election of `primary` keyspaces, shared with
/// replication through the [`meridian_repl::Host`].
fn join_cluster(
    config: &Config,
    store: Arc<meridian_repl::StoreLock>,
) -> anyhow::Result<meridian_repl::Host> {
    let members = meridian_repl::members::Members::open(
        config.region,
        &config.peers,
        Some(&config.data_dir),
    )?;
    let membership = members.current();
    if membership.version > 0 {
        tracing::info!(
            version = membership.version,
            members = ?membership.members.keys().collect::<Vec<_>>(),
            "cluster membership from the data directory (it wins over --peer)"
        );
    }
    // Views and elections count every member, data region or witness.
    let peer_ids: Vec<meridian_crdt::RegionId> = membership
        .peers(config.region, &config.peers)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let view = meridian_cluster::ClusterView::new(
        meridian_cluster::ViewConfig {
            me: config.region,
            peers: peer_ids.clone(),
            lease_ms: config.lease_ms,
            thresholds: meridian_cluster::Thresholds {
                heartbeat_ms: config.heartbeat_ms,
                ..Default::default()
            },
            unsafe_wall_clock: false,
        },
        wall_ms(),
    );
    store.lock().set_epoch(view.epoch());
    let saved = meridian_repl::election::load(&config.data_dir)?;
    let election = meridian_cluster::Election::new(
        meridian_cluster::ElectionConfig {
            me: config.region,
            peers: peer_ids,
            witness: config.witness,
            initial_primary: config.policies.initial_primary(),
            lease_ms: config.lease_ms,
            stagger_ms: 2 * config.heartbeat_ms,
            unsafe_skip_leases: false,
        },
        saved,
        // A new incarnation at every start: echoes of an earlier life's
        // messages must not renew this one's lease.
        (wall_ms() << 20) ^ u64::from(std::process::id()),
        meridian_repl::election::mono_ms(),
    );
    if election.primary().is_some() {
        tracing::info!(
            term = election.term(),
            primary = ?election.primary().map(|r| r.to_string()),
            primary_term = election.primary_term(),
            role = election.role().name(),
            "election state"
        );
    }
    Ok(meridian_repl::Host::new(
        store.clone(),
        view,
        members,
        election,
        Some(config.data_dir.clone()),
    ))
}

fn start_replication(
    config: &Config,
    host: &meridian_repl::Host,
    tls: Option<PeerTls>,
    listener: TcpListener,
) -> Arc<meridian_repl::ReplStatus> {
    meridian_repl::start(
        meridian_repl::ReplConfig {
            region: config.region,
            cluster: config.cluster.clone(),
            secret: config.cluster_secret.clone(),
            peers: config.peers.clone(),
            max_clock_offset_ms: config.max_clock_offset_ms,
            heartbeat_ms: config.heartbeat_ms,
            idle_timeout_ms: (config.lease_ms * 2).max(5_000),
            witness: config.witness,
            antientropy_interval_ms: config.antientropy_interval_ms,
            tombstone_interval_ms: config.tombstone_interval_ms,
            tls,
        },
        host.clone(),
        listener,
    )
}

/// Accepts plain-TCP clients until the process shuts down.
async fn accept(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(addr);
                tokio::spawn(crate::conn::serve(shared.clone(), stream, addr, local));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A TLS client has this long to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS clients; each handshake runs in the client's own task, so a
/// slow one holds up nobody. Failed handshakes are logged and counted.
async fn accept_tls(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a TLS client failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(addr);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => crate::conn::serve(shared, tls, addr, local).await,
                Ok(Err(e)) => {
                    Metrics::inc(&shared.metrics.tls_handshake_failures_total);
                    tracing::info!(%addr, error = %e, "TLS client handshake failed");
                }
                Err(_) => {
                    Metrics::inc(&shared.metrics.tls_handshake_failures_total);
                    tracing::info!(%addr, "TLS client handshake timed out");
                }
            }
        });
    }
}

fn shared_peers(config: &Config) -> String {
    config
        .peers
        .iter()
        .map(|(r, a)| format!("{r}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Makes everything durable before the process exits. Writes are refused
/// from the moment the flag is set; any batch that committed before holds
/// the store lock until it is done, so the sync below covers it.
fn shutdown(shared: &Shared) {
    shared
        .closing
        .store(true, std::sync::atomic::Ordering::Release);
    let mut store = shared.store.lock();
    match store.sync() {
        Ok(lsn) => tracing::info!(synced_lsn = lsn, "op log synced; exiting"),
        Err(e) => tracing::error!(error = %e, "final sync of the op log failed"),
    }
}

/// SIGHUP re-reads the config file and applies what can change at run time.
#[cfg(unix)]
async fn reload_on_sighup(shared: Arc<Shared>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        if let Err(e) = crate::reload::reload(&shared) {
            tracing::error!(error = %e, "reload on SIGHUP failed; the settings in force are unchanged");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
