//! The admin API under `/v1` on the HTTP port: status and conflicts (read),
//! and the changes an operator makes to a running region — keyspace
//! policies, a reload of the config file, the log level, a snapshot, and
//! the cluster's membership (which then spreads to every region).
//! Described in `docs/openapi.yaml`.
//!
//! Access: with `--admin-token`, every `/v1` request must carry
//! `Authorization: Bearer <token>`. Without one, reads are open and changes
//! are accepted only from loopback clients (the HTTP port listens on
//! 127.0.0.1 by default). Health checks, metrics and the dashboard page are
//! never behind the token: load balancers and Prometheus probe them.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::shared::Shared;
use crate::shared::Slot;

/// Request bodies larger than this are refused before parsing.
const ADMIN_BODY_MAX_BYTES: usize = 64 * 1024;

/// The `/v1` routes that change things (the read routes live with the
/// health and metrics routes in `http.rs`); [`require_admin`] guards them
/// all.
pub fn routes() -> Router<Slot> {
    Router::new()
        .route("/v1/policies", get(get_policies).put(put_policies))
        .route("/v1/reload", post(reload))
        .route("/v1/log-level", get(get_log_level).put(put_log_level))
        .route("/v1/snapshot", post(snapshot))
        .route("/v1/members", get(get_members).post(add_member))
        .route("/v1/members/{region}", axum::routing::delete(remove_member))
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

fn recovering() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "recovering", "reason": "replaying the op log"})),
    )
        .into_response()
}

/// Checks the bearer token, or loopback for changes when there is none.
pub async fn require_admin(
    State(slot): State<Slot>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    let token = shared.admin_token.read().clone();
    match token {
        Some(token) => {
            if !bearer_matches(request.headers(), &token) {
                let mut reply = error(
                    StatusCode::UNAUTHORIZED,
                    "this region's admin API needs Authorization: Bearer <admin token>",
                );
                reply.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"meridian\""),
                );
                tracing::warn!(%peer, path = %request.uri().path(), "admin API request without a valid token refused");
                return reply;
            }
        }
        None => {
            let reads = [Method::GET, Method::HEAD];
            if !reads.contains(request.method()) && !peer.ip().is_loopback() {
                tracing::warn!(%peer, path = %request.uri().path(), "admin change from outside loopback refused: no --admin-token set");
                return error(
                    StatusCode::FORBIDDEN,
                    "without --admin-token, changes are accepted only from loopback clients",
                );
            }
        }
    }
    next.run(request).await
}

/// Constant-time comparison, so timing does not tell how much of a guess
/// was right.
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A refused request: its status code and the reason for the JSON body.
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.code, self.message)
    }
}

/// Parses a JSON body into `T`, answering 400 with the reason otherwise.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.len() > ADMIN_BODY_MAX_BYTES {
        return Err(ApiError {
            code: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the body is larger than {ADMIN_BODY_MAX_BYTES} bytes"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError {
        code: StatusCode::BAD_REQUEST,
        message: format!("the body is not valid: {e}"),
    })
}

/// Rejects query parameters a route does not take.
pub fn only_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError {
            code: StatusCode::BAD_REQUEST,
            message: format!("unknown query parameter {k:?}"),
        }),
        None => Ok(()),
    }
}

fn policies_json(shared: &Shared) -> Value {
    let rules: Vec<String> = shared
        .policies()
        .rules()
        .map(|(p, policy)| format!("{}={}", String::from_utf8_lossy(p), policy.name()))
        .collect();
    json!({
        "region": shared.config.region.as_str(),
        "rules": rules,
        "policies": crate::status::policy_states(shared).iter().map(|p| json!({
            "pattern": p.pattern, "policy": p.policy, "state": p.state, "reason": p.reason,
        })).collect::<Vec<_>>(),
    })
}

async fn get_policies(State(slot): State<Slot>) -> Response {
    match slot.get() {
        Some(shared) => Json(policies_json(shared)).into_response(),
        None => recovering(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesBody {
    rules: Vec<String>,
}

/// Replaces this region's keyspace policies (first match wins; an empty
/// list makes every key active-active). Other regions keep theirs: apply
/// the same change to every region.
async fn put_policies(State(slot): State<Slot>, bytes: Bytes) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    let rules: PoliciesBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if shared.config.witness && !rules.rules.is_empty() {
        return error(
            StatusCode::CONFLICT,
            "a witness stores no keys: keyspace policies have no meaning here",
        );
    }
    let policies = match meridian_cluster::Policies::parse(&rules.rules) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // The election was set up at start for the primary the flags named;
    // another one needs a restart with the new rules.
    match policies.single_primary() {
        Err(why) => return error(StatusCode::CONFLICT, why),
        Ok(Some(p)) if Some(p) != shared.config.policies.initial_primary() => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "primary:{p} differs from the primary this region was started with ({}); primary keyspaces are elected, so change their region in the settings and restart",
                    shared
                        .config
                        .policies
                        .initial_primary()
                        .map_or("none".to_string(), |r| r.to_string())
                ),
            )
        }
        Ok(_) => {}
    }
    crate::reload::set_policies(shared, policies);
    Json(policies_json(shared)).into_response()
}

async fn reload(State(slot): State<Slot>) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    match crate::reload::reload(shared) {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the settings in force are unchanged: {e}"),
        ),
    }
}

async fn get_log_level(State(slot): State<Slot>) -> Response {
    match slot.get() {
        Some(_) => Json(json!({ "level": crate::logging::current() })).into_response(),
        None => recovering(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLevelBody {
    level: String,
}

async fn put_log_level(State(slot): State<Slot>, bytes: Bytes) -> Response {
    if slot.get().is_none() {
        return recovering();
    }
    let wanted: LogLevelBody = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match crate::logging::set(&wanted.level) {
        Ok(()) => {
            tracing::info!(level = %wanted.level, "log level changed through the admin API");
            Json(json!({ "level": crate::logging::current() })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Writes a snapshot now (compacting the log), as `SAVE` does.
async fn snapshot(State(slot): State<Slot>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    if let Err(e) = only_params(&q, &[]) {
        return e.into_response();
    }
    if shared.config.witness {
        return error(StatusCode::CONFLICT, "a witness stores no data to snapshot");
    }
    match crate::snapshot::take(&std::sync::Arc::clone(shared)).await {
        Ok(lsn) => Json(json!({ "lsn": lsn })).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("snapshot failed: {e:#}"),
        ),
    }
}

fn members_json(shared: &Shared) -> Value {
    let m = shared.host.members.current();
    let me = shared.config.region;
    let view = shared.host.view.lock();
    let members: Vec<Value> = m
        .members
        .iter()
        .map(|(id, addr)| {
            let is_me = id == me.as_str();
            let state = if is_me {
                "self".to_string()
            } else {
                meridian_crdt::RegionId::new(id)
                    .ok()
                    .and_then(|r| view.liveness(r))
                    .map_or("unknown".to_string(), |l| l.name().to_string())
            };
            json!({"id": id, "addr": addr, "self": is_me, "state": state})
        })
        .collect();
    json!({
        "region": me.as_str(),
        "version": m.version,
        "members": members,
        "removed": m.removed,
        "majority": view.majority(),
    })
}

async fn get_members(State(slot): State<Slot>) -> Response {
    match slot.get() {
        Some(shared) => Json(members_json(shared)).into_response(),
        None => recovering(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    region: String,
    addr: String,
}

fn member_error(e: meridian_repl::members::MembersError) -> Response {
    use meridian_cluster::MembershipError as M;
    use meridian_repl::members::MembersError as E;
    let code = match &e {
        E::Change(M::AlreadyMember(_)) | E::Change(M::RemoveSelf) => StatusCode::CONFLICT,
        E::Change(M::NotMember(_)) => StatusCode::NOT_FOUND,
        E::Change(M::BadAddress(_)) => StatusCode::BAD_REQUEST,
        E::Persist { .. } | E::Load { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e.to_string())
}

/// Adds a region; the change spreads to every region over the links. The
/// new region bootstraps from its peers (by anti-entropy when their logs no
/// longer reach back to the start), then streams.
async fn add_member(State(slot): State<Slot>, bytes: Bytes) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    let req: AddMember = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let region = match meridian_crdt::RegionId::new(&req.region) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match shared.host.members.change(|m| m.add(region, &req.addr)) {
        Ok(m) => {
            tracing::info!(%region, addr = %req.addr, version = m.version, "region added to the cluster");
            Json(members_json(shared)).into_response()
        }
        Err(e) => member_error(e),
    }
}

/// Removes a region (an operator's decision, typically for a region that
/// is gone for good) and reports what it had written that this region never
/// received, as far as its last acknowledgement tells.
async fn remove_member(
    State(slot): State<Slot>,
    axum::extract::Path(region): axum::extract::Path<String>,
) -> Response {
    let Some(shared) = slot.get() else {
        return recovering();
    };
    let Ok(region) = meridian_crdt::RegionId::new(&region) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("{region:?} is not a member (nor a valid region id)"),
        );
    };
    let unshipped = unshipped_report(shared, region);
    match shared
        .host
        .members
        .change(|m| m.remove(shared.config.region, region))
    {
        Ok(m) => {
            tracing::warn!(%region, version = m.version, unshipped = %unshipped, "region removed from the cluster");
            let mut reply = members_json(shared);
            reply["removed_region"] = json!(region.as_str());
            reply["unshipped"] = unshipped;
            Json(reply).into_response()
        }
        Err(e) => member_error(e),
    }
}

/// What `region` had that this region lacks: its own ops beyond ours, from
/// the version vector it last acknowledged on our link to it.
fn unshipped_report(shared: &Shared, region: meridian_crdt::RegionId) -> Value {
    let ours = shared.store.lock().db().version_vector().get(region);
    let (theirs, acked) = shared
        .repl
        .outbound
        .lock()
        .get(&region)
        .map(|o| (o.peer_vv.get(region), o.connects > 0))
        .unwrap_or((0, false));
    let last_heard_ms_ago = shared
        .host
        .view
        .lock()
        .last_heard_ago_ms(region, crate::shared::wall_ms());
    json!({
        "ops_of_theirs_received_here": ours,
        "ops_they_had_written_when_last_heard": theirs.max(ours),
        "unshipped_ops": theirs.saturating_sub(ours),
        "last_heard_ms_ago": last_heard_ms_ago,
        "known": acked,
        "note": "ops it wrote after it was last heard are unknown here; other regions may hold some of them",
    })
}
