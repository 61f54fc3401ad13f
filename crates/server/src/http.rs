//! The HTTP admin port: health checks for load balancers and DNS GSLB,
//! Prometheus metrics, and the REST data API (`crate::data_api`). It starts before recovery so that a recovering
//! region answers `/health/ready` with 503 instead of refusing connections.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::shared::Slot;

pub async fn serve(slot: Slot, listener: TcpListener) {
    // Stored values: behind a token whenever the data is (see
    // `data_api::require_data_access`).
    let revealing = Router::new()
        .route("/v1/conflicts", get(conflicts))
        .route("/v1/digest", get(digest))
        .route_layer(axum::middleware::from_fn_with_state(
            slot.clone(),
            crate::data_api::require_data_access,
        ));
    let api = Router::new()
        .route("/v1/status", get(status))
        .merge(revealing)
        .merge(crate::admin::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            slot.clone(),
            crate::admin::require_admin,
        ));
    let app = Router::new()
        .route("/", get(crate::dashboard::page).post(crate::data_api::one))
        .route("/pipeline", post(crate::data_api::pipeline))
        .route("/multi-exec", post(crate::data_api::multi_exec))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(crate::data_api::path)
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

/// Prometheus text 0.0.4 (see `metrics_export`), for scrapers and
/// `curl` alike.
async fn metrics(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response();
    };
    match crate::metrics_export::encode(shared) {
        Ok(body) => (
            [(header::CONTENT_TYPE, crate::metrics_export::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}
