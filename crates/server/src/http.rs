//! The HTTP admin port: health checks for load balancers and DNS GSLB, and
//! Prometheus metrics. It starts before recovery so that a recovering
//! region answers `/health/ready` with 503 instead of refusing connections.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::{render, rss_bytes, Metrics, Sample};
use crate::shared::{Readiness, Shared};

/// Filled once recovery has finished.
pub type Slot = Arc<OnceLock<Arc<Shared>>>;

pub async fn serve(slot: Slot, listener: TcpListener) {
    let app = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(slot);
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
    let readiness = shared.readiness.lock().clone();
    match readiness {
        Readiness::Ready => {
            Json(json!({"status": "ready", "region": shared.config.region.as_str()}))
                .into_response()
        }
        Readiness::Recovering => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering", "reason": "replaying the op log"})),
        )
            .into_response(),
        Readiness::Poisoned(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "poisoned", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response();
    };
    let body = metrics_text(shared);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
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
    let c = |name, help, value: u64| Sample {
        name,
        help,
        kind: "counter",
        labels: vec![],
        value: value as f64,
    };
    let g = |name, help, value: f64| Sample {
        name,
        help,
        kind: "gauge",
        labels: vec![],
        value,
    };
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
    for (cmd, n) in m.per_command.lock().iter() {
        samples.push(Sample {
            name: "meridian_command_calls_total",
            help: "Calls per command.",
            kind: "counter",
            labels: vec![("cmd", cmd.to_string())],
            value: *n as f64,
        });
    }
    render(&samples)
}
