//! `meridian serve`: open the store, bind the listeners, run the background
//! duties (active expiry, fsync timer, snapshots) until shutdown.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meridian_store::{FsyncPolicy, Store, StoreOptions};
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shared::{wall_ms, Readiness, Shared};

/// Keys examined per active-expiry pass, and how often passes run.
const EXPIRE_KEYS_PER_PASS_MAX: usize = 200;
const EXPIRE_PASS_INTERVAL_MS: u64 = 100;

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
    let acl = load_acl(&config)?;
    // Certificates are read before anything binds, so a bad file stops
    // the region with its name instead of leaving a half-started one.
    let client_tls = config.tls.client_acceptor()?;
    let peer_tls = config.tls.peer_tls(config.region)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the RESP listener on {}", config.listen))?;
    let http_listener = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
    let http_addr = http_listener.local_addr()?;
    let tls_listener = match config.tls.listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("binding the TLS RESP listener on {at}"))?,
        ),
        None => None,
    };
    // Status shows the bound address, also when port 0 was asked for.
    if let Some(l) = &tls_listener {
        config.tls.listen = Some(l.local_addr()?);
    }
    let repl_listener = meridian_repl::bind(config.repl)
        .await
        .with_context(|| format!("binding the replication listener on {}", config.repl))?;
    let repl_addr = repl_listener.local_addr()?;
    let slot: crate::http::Slot = Default::default();
    tokio::spawn(crate::http::serve(slot.clone(), http_listener));
    tracing::info!(
        region = %config.region,
        listen = %listener.local_addr()?,
        http = %http_addr,
        repl = %repl_addr,
        tls_replication = config.tls.replication,
        peers = shared_peers(&config),
        data_dir = %config.data_dir.display(),
        fsync = config.fsync.as_str(),
        "meridian starting"
    );

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
    let store = Arc::new(Mutex::new(store));
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
    let host = meridian_repl::Host::new(
        store.clone(),
        view,
        members,
        election,
        Some(config.data_dir.clone()),
    );
    let repl = meridian_repl::start(
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
            tls: peer_tls,
        },
        host.clone(),
        repl_listener,
    );
    let shared = Arc::new(Shared {
        requirepass: Mutex::new(config.requirepass.clone()),
        acl: parking_lot::RwLock::new(acl),
        acl_log: Mutex::new(Default::default()),
        protected_mode: std::sync::atomic::AtomicBool::new(config.protected_mode),
        closing: std::sync::atomic::AtomicBool::new(false),
        policies: parking_lot::RwLock::new(Arc::new(config.policies.clone())),
        admin_token: parking_lot::RwLock::new(config.admin_token.clone()),
        config,
        store,
        host,
        repl,
        clients: Mutex::new(Default::default()),
        next_client_id: AtomicU64::new(1),
        channels: Mutex::new(Default::default()),
        patterns: Mutex::new(Default::default()),
        metrics: Metrics::default(),
        started: Instant::now(),
        readiness: Mutex::new(Readiness::Ready),
        shutdown: tokio::sync::Notify::new(),
        heal: Mutex::new(Default::default()),
    });
    // Tests and scripts read these lines to find the ports when binding port 0.
    let _ = slot.set(shared.clone());
    let tls_addr = match &tls_listener {
        Some(l) => format!(" tls={}", l.local_addr()?),
        None => String::new(),
    };
    println!(
        "meridian listening resp={} http={} repl={}{tls_addr}",
        listener.local_addr()?,
        http_addr,
        repl_addr
    );
    tokio::spawn(active_expiry(shared.clone()));
    tokio::spawn(watch_the_cluster(shared.clone()));
    if shared.config.fsync == FsyncPolicy::Everysec {
        tokio::spawn(fsync_every_second(shared.clone()));
    }
    tokio::spawn(snapshots(shared.clone()));
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(shared.clone(), hangups));

    let accept = {
        let shared = shared.clone();
        async move {
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
    };
    if let (Some(listener), Some(acceptor)) = (tls_listener, client_tls) {
        tokio::spawn(accept_tls(shared.clone(), listener, acceptor));
    }
    tokio::select! {
        _ = accept => {}
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

/// The users `--aclfile` names, or only `default` (from `--requirepass`).
pub fn load_acl(config: &Config) -> anyhow::Result<crate::acl::Acl> {
    let mut rng = rand::thread_rng();
    let Some(path) = &config.aclfile else {
        return Ok(crate::acl::Acl::new(
            config.requirepass.as_deref(),
            &mut rng,
        ));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --aclfile {}", path.display()))?;
    crate::acl::Acl::from_file(&text, config.requirepass.as_deref(), &mut rng)
        .map_err(|e| anyhow::anyhow!("--aclfile {}: {e}", path.display()))
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

/// Re-evaluates failure detection, the quorum lease and the election every
/// 50 ms; each change of view raises the epoch, is logged and counted, and
/// stamps the conflict journal from then on.
async fn watch_the_cluster(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_epoch = shared.host.view.lock().epoch();
    loop {
        tick.tick().await;
        let now = wall_ms();
        let (transitions, epoch) = {
            let mut view = shared.host.view.lock();
            (view.tick(now), view.epoch())
        };
        crate::heal::observe(&shared, now);
        shared.host.election_tick();
        // Membership changes raise the epoch outside `tick`.
        if epoch != last_epoch {
            shared.store.lock().set_epoch(epoch);
            last_epoch = epoch;
        }
        for t in &transitions {
            Metrics::inc(&shared.metrics.view_changes_total);
            match &t.change {
                meridian_cluster::Change::PeerLiveness { peer, from, to } => {
                    if *to == meridian_cluster::Liveness::Down {
                        tracing::warn!(epoch = t.epoch, %peer, from = from.name(), "peer is down")
                    } else {
                        tracing::info!(epoch = t.epoch, %peer, to = to.name(), "peer is back")
                    }
                }
                meridian_cluster::Change::LeaseLost { reason } => {
                    Metrics::inc(&shared.metrics.fenced_total);
                    tracing::warn!(epoch = t.epoch, %reason, "quorum lease lost: majority and primary keyspaces are fenced")
                }
                meridian_cluster::Change::LeaseRegained => {
                    tracing::info!(
                        epoch = t.epoch,
                        "quorum lease regained: fenced keyspaces are writable again"
                    )
                }
                // Logged by the link manager when it applies the change.
                meridian_cluster::Change::MembersChanged { .. } => {}
            }
        }
    }
}

/// Deletes expired keys nobody reads, a bounded number per pass, so a mass
/// expiry never holds the lock for long.
async fn active_expiry(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(EXPIRE_PASS_INTERVAL_MS));
    loop {
        tick.tick().await;
        let mut store = shared.store.lock();
        if store.is_poisoned() {
            continue;
        }
        store.db_mut().set_now_ms(wall_ms());
        let mut expired = 0;
        loop {
            let n = store.db_mut().expire_due(EXPIRE_KEYS_PER_PASS_MAX);
            if let Err(e) = store.commit().and_then(|_| store.flush()) {
                tracing::error!(error = %e, "logging expirations failed");
                *shared.readiness.lock() = Readiness::Poisoned(e.to_string());
                break;
            }
            expired += n;
            // Keep going while a quarter of the pass was due, as Redis does.
            if n < EXPIRE_KEYS_PER_PASS_MAX / 4 || expired >= EXPIRE_KEYS_PER_PASS_MAX * 10 {
                break;
            }
        }
    }
}

async fn fsync_every_second(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if shared.store.lock().is_poisoned() {
            continue;
        }
        let host = shared.host.clone();
        let result = tokio::task::spawn_blocking(move || host.sync()).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "fsync of the op log failed; writes are refused from now on");
            *shared.readiness.lock() = Readiness::Poisoned(e.to_string());
        }
    }
}

/// Compacts the log with a snapshot once enough ops accumulated. The
/// keyspace is serialized under the lock; the file is written without it.
async fn snapshots(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let due = {
            let store = shared.store.lock();
            !store.is_poisoned() && store.ops_since_snapshot() >= shared.config.snapshot_after_ops
        };
        if due {
            if let Err(e) = take_snapshot(&shared).await {
                tracing::error!(error = %e, "snapshot failed");
            }
        }
    }
}

pub async fn take_snapshot(shared: &Arc<Shared>) -> anyhow::Result<u64> {
    let started = Instant::now();
    let prepared = shared.store.lock().prepare_snapshot()?;
    let keys = prepared.keys();
    let info = tokio::task::spawn_blocking(move || prepared.write()).await??;
    let removed = shared.store.lock().snapshot_written(info.lsn)?;
    Metrics::inc(&shared.metrics.snapshots_total);
    tracing::info!(
        lsn = info.lsn,
        keys,
        bytes = info.content_bytes,
        segments_removed = removed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(info.lsn)
}
