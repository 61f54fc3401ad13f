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

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.clock_offset_ms != 0 {
        meridian_repl::set_clock_offset_ms(config.clock_offset_ms);
        tracing::warn!(
            offset_ms = config.clock_offset_ms,
            "test-only --clock-offset-ms: this region's wall clock is shifted"
        );
    }
    let acl = load_acl(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the RESP listener on {}", config.listen))?;
    let http_listener = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
    let http_addr = http_listener.local_addr()?;
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
    let view = meridian_cluster::ClusterView::new(
        meridian_cluster::ViewConfig {
            me: config.region,
            peers: config.peers.iter().map(|(r, _)| *r).collect(),
            lease_ms: config.lease_ms,
            thresholds: meridian_cluster::Thresholds {
                heartbeat_ms: config.heartbeat_ms,
                ..Default::default()
            },
        },
        wall_ms(),
    );
    store.lock().set_epoch(view.epoch());
    let host = meridian_repl::Host::new(store.clone(), view);
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
        },
        host.clone(),
        repl_listener,
    );
    let shared = Arc::new(Shared {
        requirepass: Mutex::new(config.requirepass.clone()),
        acl: parking_lot::RwLock::new(acl),
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
    println!(
        "meridian listening resp={} http={} repl={}",
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

    let accept = {
        let shared = shared.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, addr)) => {
                        tokio::spawn(crate::conn::serve(shared.clone(), stream, addr));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown_signal() => tracing::info!("shutdown requested by signal"),
        _ = shared.shutdown.notified() => tracing::info!("shutdown requested by SHUTDOWN"),
    }
    shutdown(&shared);
    Ok(())
}

fn shared_peers(config: &Config) -> String {
    config
        .peers
        .iter()
        .map(|(r, a)| format!("{r}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Makes everything durable before the process exits.
fn shutdown(shared: &Shared) {
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

/// Re-evaluates failure detection and the quorum lease every 50 ms; each
/// change of view raises the epoch, is logged and counted, and stamps the
/// conflict journal from then on.
async fn watch_the_cluster(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = wall_ms();
        let (transitions, epoch) = {
            let mut view = shared.host.view.lock();
            (view.tick(now), view.epoch())
        };
        crate::heal::observe(&shared, now);
        if transitions.is_empty() {
            continue;
        }
        shared.store.lock().set_epoch(epoch);
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
