//! The HTTP admin port: health checks for load balancers and DNS GSLB, and
//! Prometheus metrics. It starts before recovery so that a recovering
//! region answers `/health/ready` with 503 instead of refusing connections.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::{render, rss_bytes, Metrics, Sample};
use crate::shared::{Readiness, Shared, Slot};

pub async fn serve(slot: Slot, listener: TcpListener) {
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/conflicts", get(conflicts))
        .route("/v1/digest", get(digest))
        .merge(crate::admin::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            slot.clone(),
            crate::admin::require_admin,
        ));
    let app = Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(slot);
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

async fn ready(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering", "reason": "replaying the op log"})),
        )
            .into_response();
    };
    match crate::status::not_ready_reason(shared) {
        None => Json(json!({"status": "ready", "region": shared.config.region.as_str()})).into_response(),
        Some((status, reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status, "reason": reason, "region": shared.config.region.as_str()})),
        )
            .into_response(),
    }
}

async fn status(State(slot): State<Slot>) -> Response {
    match slot.get() {
        Some(shared) => Json(crate::status::status_json(shared)).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        )
            .into_response(),
    }
}

/// A digest of the visible data, to compare regions.
async fn digest(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        )
            .into_response();
    };
    let store = shared.store.lock();
    let (digest, keys) = meridian_store::db::visible_digest(store.db());
    let vv = crate::status::vv_json(store.db().version_vector());
    drop(store);
    Json(json!({"region": shared.config.region.as_str(), "digest": format!("{digest:016x}"), "keys": keys, "version_vector": vv})).into_response()
}

/// Entries `/v1/conflicts` returns at most.
const CONFLICTS_PAGE_MAX: usize = 10_000;

async fn conflicts(
    State(slot): State<Slot>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(shared) = slot.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        )
            .into_response();
    };
    if let Err(e) = crate::admin::only_params(&q, &["count", "key"]) {
        return e.into_response();
    }
    let count = match q.get("count").map(|c| c.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if n <= CONFLICTS_PAGE_MAX => n,
        Some(_) => {
            return crate::admin::error(
                StatusCode::BAD_REQUEST,
                format!("count must be a whole number from 0 to {CONFLICTS_PAGE_MAX}"),
            )
        }
    };
    Json(crate::status::conflicts_json(
        shared,
        count,
        q.get("key").map(|k| k.as_bytes()),
    ))
    .into_response()
}

async fn metrics(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response();
    };
    let body = metrics_text(shared);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn g2<'a>(name: &'a str, help: &'a str, labels: Vec<(&'a str, String)>, value: f64) -> Sample<'a> {
    Sample {
        name,
        help,
        kind: "gauge",
        labels,
        value,
    }
}

fn c2<'a>(name: &'a str, help: &'a str, labels: Vec<(&'a str, String)>, value: f64) -> Sample<'a> {
    Sample {
        name,
        help,
        kind: "counter",
        labels,
        value,
    }
}

pub fn metrics_text(shared: &Shared) -> String {
    let m = &shared.metrics;
    let (
        keys,
        expiring,
        hidden,
        log_last,
        log_synced,
        segments,
        expired,
        conflicts,
        ops_since_snapshot,
    ) = {
        let store = shared.store.lock();
        let ks = store.db().keyspace();
        (
            ks.len() as f64,
            ks.expiring_len() as f64,
            ks.hidden_len() as f64,
            store.log().last_lsn() as f64,
            store.log().synced_lsn() as f64,
            store.log().segment_count() as f64,
            store.db().expired_total() as f64,
            store.db().conflicts_total() as f64,
            store.ops_since_snapshot() as f64,
        )
    };
    let c = |name, help, value: u64| c2(name, help, vec![], value as f64);
    let g = |name, help, value: f64| g2(name, help, vec![], value);
    let region = shared.config.region.as_str().to_string();
    let mut samples = vec![
        Sample {
            name: "meridian_info",
            help: "Build and region of this process.",
            kind: "gauge",
            labels: vec![
                ("region", region),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
            ],
            value: 1.0,
        },
        g(
            "meridian_up",
            "1 while the region accepts writes.",
            if *shared.readiness.lock() == Readiness::Ready {
                1.0
            } else {
                0.0
            },
        ),
        g(
            "meridian_uptime_seconds",
            "Seconds since start.",
            shared.started.elapsed().as_secs_f64(),
        ),
        c(
            "meridian_connections_total",
            "Client connections accepted.",
            Metrics::get(&m.connections_total),
        ),
        c(
            "meridian_auth_failures_total",
            "AUTH and HELLO AUTH attempts refused (wrong password, unknown or disabled user).",
            Metrics::get(&m.auth_failures_total),
        ),
        c(
            "meridian_tls_handshake_failures_total",
            "TLS client handshakes that failed or timed out on --tls-listen.",
            Metrics::get(&m.tls_handshake_failures_total),
        ),
        g(
            "meridian_connections",
            "Client connections open.",
            Metrics::get(&m.connections_current) as f64,
        ),
        c(
            "meridian_commands_total",
            "Commands received.",
            Metrics::get(&m.commands_total),
        ),
        c(
            "meridian_command_errors_total",
            "Commands answered with an error.",
            Metrics::get(&m.command_errors_total),
        ),
        c(
            "meridian_protocol_errors_total",
            "Connections closed for malformed input.",
            Metrics::get(&m.protocol_errors_total),
        ),
        c(
            "meridian_ops_total",
            "Ops committed to the op log.",
            Metrics::get(&m.ops_committed_total),
        ),
        c(
            "meridian_net_input_bytes_total",
            "Bytes read from clients.",
            Metrics::get(&m.net_input_bytes),
        ),
        c(
            "meridian_net_output_bytes_total",
            "Bytes written to clients.",
            Metrics::get(&m.net_output_bytes),
        ),
        g("meridian_keys", "Visible keys.", keys),
        g("meridian_keys_expiring", "Keys with a deadline.", expiring),
        g(
            "meridian_keys_hidden",
            "Keys holding only remembered state (counter offsets, orphan TTLs).",
            hidden,
        ),
        c(
            "meridian_expired_keys_total",
            "Keys expired.",
            expired as u64,
        ),
        c(
            "meridian_conflicts_total",
            "Concurrent writes resolved by discarding a value.",
            conflicts as u64,
        ),
        g(
            "meridian_memory_rss_bytes",
            "Resident set size of the process.",
            rss_bytes() as f64,
        ),
        g(
            "meridian_log_last_lsn",
            "LSN of the newest op-log record.",
            log_last,
        ),
        g(
            "meridian_log_synced_lsn",
            "LSN up to which the op log is on stable storage.",
            log_synced,
        ),
        g(
            "meridian_log_segments",
            "Op-log segment files retained.",
            segments,
        ),
        g(
            "meridian_log_ops_since_snapshot",
            "Ops logged since the last snapshot.",
            ops_since_snapshot,
        ),
        c(
            "meridian_snapshots_total",
            "Snapshots written.",
            Metrics::get(&m.snapshots_total),
        ),
    ];
    let view = crate::status::view(shared);
    for p in &view.peers {
        let peer = || vec![("peer", p.region.to_string())];
        samples.push(g2(
            "meridian_replication_lag_seconds",
            "Age of the oldest op this peer has not acknowledged.",
            peer(),
            p.lag_ms as f64 / 1000.0,
        ));
        samples.push(g2(
            "meridian_replication_lag_ops",
            "Ops of this region's log the peer has not acknowledged.",
            peer(),
            p.lag_ops as f64,
        ));
        samples.push(g2(
            "meridian_replication_link_up",
            "1 while the outbound link to the peer is up.",
            peer(),
            if p.outbound_state == meridian_repl::LinkState::Up {
                1.0
            } else {
                0.0
            },
        ));
        samples.push(c2(
            "meridian_replication_sent_ops_total",
            "Ops streamed to the peer.",
            peer(),
            p.ops_sent as f64,
        ));
        samples.push(c2(
            "meridian_replication_sent_bytes_total",
            "Bytes streamed to the peer.",
            peer(),
            p.bytes_sent as f64,
        ));
        samples.push(c2(
            "meridian_replication_received_ops_total",
            "Ops received from the peer.",
            peer(),
            p.ops_received as f64,
        ));
        samples.push(c2(
            "meridian_replication_received_bytes_total",
            "Bytes received from the peer.",
            peer(),
            p.bytes_received as f64,
        ));
        samples.push(c2(
            "meridian_replication_applied_ops_total",
            "Ops from the peer applied here.",
            peer(),
            p.ops_applied as f64,
        ));
        samples.push(c2(
            "meridian_replication_duplicate_ops_total",
            "Ops from the peer already applied (came through another region).",
            peer(),
            p.duplicates as f64,
        ));
        samples.push(g2(
            "meridian_clock_offset_ms",
            "Peer clock minus local clock, from heartbeats.",
            peer(),
            p.clock_offset_ms as f64,
        ));
        samples.push(g2(
            "meridian_clock_offset_alarm",
            "1 while the peer's clock is ahead beyond max_clock_offset_ms.",
            peer(),
            if p.clock_alarm { 1.0 } else { 0.0 },
        ));
        for (q, v) in [("0.5", p.apply_lag_p50_ms), ("0.99", p.apply_lag_p99_ms)] {
            if let Some(v) = v {
                samples.push(g2(
                    "meridian_replication_apply_lag_seconds",
                    "Apply time minus write time of recent ops from the peer.",
                    vec![("peer", p.region.to_string()), ("quantile", q.to_string())],
                    v as f64 / 1000.0,
                ));
            }
        }
    }
    let (epoch, lease_ok, liveness) = {
        let cv = shared.host.view.lock();
        let now = crate::shared::wall_ms();
        let liveness: Vec<(String, f64)> = shared
            .config
            .peers
            .iter()
            .map(|(r, _)| {
                (
                    r.to_string(),
                    cv.liveness(*r).map_or(0.0, |l| match l {
                        meridian_cluster::Liveness::Up => 1.0,
                        meridian_cluster::Liveness::Suspect => 0.5,
                        meridian_cluster::Liveness::Down => 0.0,
                    }),
                )
            })
            .collect();
        (cv.epoch(), cv.lease(now).is_ok(), liveness)
    };
    samples.push(g2(
        "meridian_view_epoch",
        "This region's epoch: raised at every change of its view of the cluster.",
        vec![],
        epoch as f64,
    ));
    let (term, primary_term, leader, elections) = {
        let e = shared.host.election_read();
        (
            e.term(),
            e.primary_term(),
            e.role() == meridian_cluster::Role::Leader,
            e.elections_total(),
        )
    };
    samples.push(g2(
        "meridian_primary_term",
        "The term the primary of primary keyspaces was elected in, as this region knows it.",
        vec![],
        primary_term as f64,
    ));
    samples.push(g2(
        "meridian_election_term",
        "This region's election term (raised by standing or voting).",
        vec![],
        term as f64,
    ));
    samples.push(g2(
        "meridian_primary",
        "1 while this region is the elected primary of primary keyspaces.",
        vec![],
        if leader { 1.0 } else { 0.0 },
    ));
    samples.push(c2(
        "meridian_elections_total",
        "Elections this region started (stood as candidate) since it started.",
        vec![],
        elections as f64,
    ));
    samples.push(g2(
        "meridian_quorum_lease",
        "1 while this region holds the majority lease.",
        vec![],
        if lease_ok { 1.0 } else { 0.0 },
    ));
    samples.push(g2(
        "meridian_fenced",
        "1 while some keyspace refuses writes here (fenced).",
        vec![],
        if crate::status::not_ready_reason(shared).is_some_and(|(s, _)| s == "fenced") {
            1.0
        } else {
            0.0
        },
    ));
    samples.push(c2(
        "meridian_view_changes_total",
        "Changes of this region's view (peers down/up, lease lost/regained).",
        vec![],
        Metrics::get(&m.view_changes_total) as f64,
    ));
    samples.push(c2(
        "meridian_fencings_total",
        "Times this region lost the majority lease.",
        vec![],
        Metrics::get(&m.fenced_total) as f64,
    ));
    samples.push(c2(
        "meridian_fenced_writes_total",
        "Writes refused with -FENCED.",
        vec![],
        Metrics::get(&m.fenced_writes_total) as f64,
    ));
    {
        let heal = shared.heal.lock();
        samples.push(c2(
            "meridian_heals_total",
            "Partitions seen healed from here.",
            vec![],
            heal.heals_total as f64,
        ));
        if let Some(h) = heal.last() {
            samples.push(g2(
                "meridian_last_partition_seconds",
                "How long the last healed partition lasted.",
                vec![],
                h.healed_ms.saturating_sub(h.started_ms) as f64 / 1000.0,
            ));
            samples.push(g2(
                "meridian_last_heal_ops",
                "Ops exchanged to catch up after the last heal.",
                vec![],
                h.ops_exchanged as f64,
            ));
            samples.push(g2(
                "meridian_last_heal_conflicts",
                "Conflicts journaled during the last partition.",
                vec![],
                h.conflicts_during as f64,
            ));
        }
    }
    for (peer, up) in liveness {
        samples.push(g2(
            "meridian_peer_liveness",
            "Failure detector: 1 up, 0.5 suspect, 0 down.",
            vec![("peer", peer)],
            up,
        ));
    }
    for (kind, rule, n) in &view.conflict_counts {
        samples.push(c2(
            "meridian_conflicts_total",
            "Concurrent writes resolved by hiding a value, by type and rule.",
            vec![("type", kind.to_string()), ("rule", rule.to_string())],
            *n as f64,
        ));
    }
    let ae = shared.repl.antientropy.lock().clone();
    samples.push(c(
        "meridian_antientropy_sessions_total",
        "Anti-entropy sessions completed here (as either side).",
        ae.sessions_total,
    ));
    samples.push(c(
        "meridian_antientropy_bytes_total",
        "Bytes of anti-entropy sessions sent and received here (digests and state).",
        ae.bytes_total,
    ));
    samples.push(c(
        "meridian_antientropy_keys_sent_total",
        "Keys whose state this region sent by anti-entropy.",
        ae.keys_sent_total,
    ));
    samples.push(c(
        "meridian_replication_causal_resets_total",
        "Inbound links reset because a peer sent an op before its dependencies.",
        shared
            .repl
            .causal_resets
            .load(std::sync::atomic::Ordering::Relaxed),
    ));
    samples.push(c(
        "meridian_antientropy_keys_merged_total",
        "Keys whose state this region merged by anti-entropy.",
        ae.keys_merged_total,
    ));
    let tombstones = shared.repl.tombstones.lock().clone();
    samples.push(c(
        "meridian_tombstones_collected_total",
        "Tombstones (settled counter incarnations, TTLs a delete missed) dropped once every region held them.",
        tombstones.collected_total,
    ));
    samples.push(c(
        "meridian_tombstone_keys_removed_total",
        "Hidden keys removed by tombstone collection.",
        tombstones.keys_removed_total,
    ));
    samples.push(c(
        "meridian_tombstone_rounds_total",
        "Tombstone collection rounds completed.",
        tombstones.rounds_total,
    ));
    for (reason, n) in shared.repl.refused.lock().iter() {
        samples.push(c2(
            "meridian_replication_refused_total",
            "Peer handshakes refused, by reason.",
            vec![("reason", reason.clone())],
            *n as f64,
        ));
    }
    samples.sort_by(|a, b| a.name.cmp(b.name));
    let mut calls: Vec<(&str, u64)> = crate::cmd::table()
        .values()
        .map(|s| (s.name, s.calls.load(std::sync::atomic::Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect();
    calls.sort();
    for (cmd, n) in calls {
        samples.push(Sample {
            name: "meridian_command_calls_total",
            help: "Calls per command.",
            kind: "counter",
            labels: vec![("cmd", cmd.to_string())],
            value: n as f64,
        });
    }
    render(&samples)
}
