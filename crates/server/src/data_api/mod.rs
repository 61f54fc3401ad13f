//! The REST data API on the HTTP port: the protocol serverless Redis SDKs
//! speak (`@upstash/redis`, `upstash-redis`), for platforms that cannot
//! keep TCP connections (Lambda, Cloud Run, Azure Functions, edge workers).
//! Described in `docs/serverless.md` and `docs/openapi.yaml`.
//!
//! - `POST /` runs one command, `POST /pipeline` several, each on its own,
//!   `POST /multi-exec` several as one MULTI/EXEC transaction, and a path
//!   (`GET /get/k`, `POST /set/k` with the value as the body) one command
//!   ([`request`] decodes them all; [`reply`] renders the answers).
//! - Access: `Authorization: Bearer <token>`, `--data-api-token` for every
//!   command, `--data-api-readonly-token` for `@read` ones only. With
//!   neither set the API is off and answers 404; a wrong or missing token
//!   gets 401.
//! - Each request runs as a client of its own, logged in as the `default`
//!   user, through the very batch path a RESP connection uses
//!   ([`crate::conn::execute_batch`]): ACL rules, keyspace policies
//!   (`FENCED`, `READONLY`), scripts and every command behave as over RESP.
//!   A blocking command answers at once as if its timeout had passed.
//! - Read-your-writes across regions: every answer carries
//!   `Upstash-Sync-Token`, this region's session token after the request
//!   (what `MERIDIAN TOKEN` gives). A request carrying one first waits, at
//!   most [`SYNC_WAIT_MAX_MS`], until this region has applied the writes it
//!   names (as `MERIDIAN AFTER` does), and answers 412 (the precondition
//!   its header sets does not hold) rather than stale data when it has not.

pub mod reply;
pub mod request;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use meridian_resp::Frame;
use serde_json::{json, Value};

use crate::client::Client;
use crate::config::Config;
use crate::shared::{Shared, Slot};
use reply::Encoding;

/// Request bodies larger than this are refused (413) before decoding.
pub const BODY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// A client that has not sent its whole body within this is cut off (408).
pub const BODY_READ_MAX_MS: u64 = 10_000;
/// How long a request carrying `Upstash-Sync-Token` waits for this region
/// to apply the writes it names before answering 412.
pub const SYNC_WAIT_MAX_MS: u64 = 5_000;

const SYNC_TOKEN_HEADER: &str = "upstash-sync-token";

/// The data API's bearer tokens (`--data-api-token`,
/// `--data-api-readonly-token`), replaced whole by reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub full: Option<String>,
    pub read_only: Option<String>,
}

impl Tokens {
    pub fn from_config(config: &Config) -> Tokens {
        Tokens {
            full: config.data_api_token.clone(),
            read_only: config.data_api_readonly_token.clone(),
        }
    }

    fn is_off(&self) -> bool {
        self.full.is_none() && self.read_only.is_none()
    }
}

/// What a request's bearer token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    ReadOnly,
}

/// Which data API token `headers` carry, if any.
pub fn access(shared: &Shared, headers: &HeaderMap) -> Option<Access> {
    let tokens = shared.data_api_tokens.read();
    if tokens
        .full
        .as_deref()
        .is_some_and(|t| crate::admin::bearer_matches(headers, t))
    {
        return Some(Access::Full);
    }
    if tokens
        .read_only
        .as_deref()
        .is_some_and(|t| crate::admin::bearer_matches(headers, t))
    {
        return Some(Access::ReadOnly);
    }
    None
}

/// The shapes a request comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Pipeline,
    MultiExec,
    Path,
}

pub async fn one(slot: State<Slot>, peer: ConnectInfo<SocketAddr>, request: Request) -> Response {
    handle(slot, peer, request, Shape::One).await
}

pub async fn pipeline(
    slot: State<Slot>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    handle(slot, peer, request, Shape::Pipeline).await
}

pub async fn multi_exec(
    slot: State<Slot>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    handle(slot, peer, request, Shape::MultiExec).await
}

/// Any path no other route takes: a path command (`GET /get/k`).
pub async fn path(slot: State<Slot>, peer: ConnectInfo<SocketAddr>, request: Request) -> Response {
    handle(slot, peer, request, Shape::Path).await
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    crate::admin::error(code, message)
}

async fn handle(
    State(slot): State<Slot>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    shape: Shape,
) -> Response {
    let Some(shared) = slot.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this region is recovering: replaying the op log",
        );
    };
    if shared.data_api_tokens.read().is_off() {
        return error(
            StatusCode::NOT_FOUND,
            "not found (the data API is off: no --data-api-token or --data-api-readonly-token is set)",
        );
    }
    let (parts, body) = request.into_parts();
    let Some(access) = access(shared, &parts.headers) else {
        tracing::debug!(%peer, "data API request without a valid token refused");
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            "the data API needs Authorization: Bearer <data API token>",
        );
        reply.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"meridian\""),
        );
        return reply;
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let cmds = match decode(shape, &parts.uri, &body) {
        Ok(cmds) => cmds,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some(reason) = cmds.iter().find_map(|args| request::refusal(args)) {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    if let Some(token) = parts.headers.get(SYNC_TOKEN_HEADER) {
        if let Err(reply) = wait_for_sync_token(shared, token.as_bytes()).await {
            return reply;
        }
    }
    let encoding = match parts.headers.get("upstash-encoding") {
        None => Encoding::Json,
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"base64") => Encoding::Base64,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Upstash-Encoding takes one value, base64",
            )
        }
    };
    let n = cmds.len();
    let batch = match shape {
        Shape::MultiExec => {
            let mut batch = Vec::with_capacity(n + 2);
            batch.push(vec![Bytes::from_static(b"MULTI")]);
            batch.extend(cmds);
            batch.push(vec![Bytes::from_static(b"EXEC")]);
            batch
        }
        _ => cmds,
    };
    let replies = run(shared, peer, access, batch).await;
    let (code, body) = match shape {
        Shape::One | Shape::Path => {
            let frame = replies.into_iter().next().unwrap_or(Frame::Null);
            let code = if frame.is_error() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (code, reply::entry(&frame, encoding))
        }
        Shape::Pipeline => (
            StatusCode::OK,
            Value::Array(replies.iter().map(|f| reply::entry(f, encoding)).collect()),
        ),
        Shape::MultiExec => match replies.into_iter().last() {
            Some(Frame::Array(results)) => (
                StatusCode::OK,
                Value::Array(results.iter().map(|f| reply::entry(f, encoding)).collect()),
            ),
            Some(Frame::Error(text)) => (StatusCode::BAD_REQUEST, json!({ "error": text })),
            _ => (
                StatusCode::CONFLICT,
                json!({"error": "EXECABORT the transaction was discarded: a watched key changed"}),
            ),
        },
    };
    let token = {
        let store = shared.store.lock();
        crate::cmd::meridian::token(store.db().version_vector())
    };
    let mut response = (code, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert(SYNC_TOKEN_HEADER, value);
    }
    response
}

/// The body, at most [`BODY_MAX_BYTES`], read within [`BODY_READ_MAX_MS`].
async fn read_body(body: Body) -> Result<Bytes, Response> {
    let read = axum::body::to_bytes(body, BODY_MAX_BYTES);
    match tokio::time::timeout(Duration::from_millis(BODY_READ_MAX_MS), read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body could not be read within its limit of {BODY_MAX_BYTES} bytes: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {BODY_READ_MAX_MS} ms"),
        )),
    }
}

fn decode(shape: Shape, uri: &Uri, body: &[u8]) -> Result<Vec<Vec<Bytes>>, request::RequestError> {
    match shape {
        Shape::One => request::command(body).map(|c| vec![c]),
        Shape::Pipeline | Shape::MultiExec => request::commands(body),
        Shape::Path => {
            let path = uri.path().trim_start_matches('/');
            request::path_command(path, uri.query().unwrap_or(""), body).map(|c| vec![c])
        }
    }
}

/// Waits, at most [`SYNC_WAIT_MAX_MS`], until this region has applied what
/// `token` names; an empty token names nothing.
async fn wait_for_sync_token(shared: &Shared, token: &[u8]) -> Result<(), Response> {
    if token.is_empty() {
        return Ok(());
    }
    if !crate::cmd::meridian::valid_token(token) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "Upstash-Sync-Token {:?} is not a session token: expected REGION:SEQ[,REGION:SEQ...]",
                String::from_utf8_lossy(token)
            ),
        ));
    }
    let wait = crate::conn::wait_for_token(shared, token);
    let _ = tokio::time::timeout(Duration::from_millis(SYNC_WAIT_MAX_MS), wait).await;
    let satisfied = {
        let store = shared.store.lock();
        crate::cmd::meridian::token_satisfied(store.db().version_vector(), token)
    };
    if satisfied {
        Ok(())
    } else {
        // 412: the request's precondition (the writes its token names)
        // does not hold here; the region itself is fine.
        Err(error(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "ERR this region has not applied the writes of Upstash-Sync-Token within {SYNC_WAIT_MAX_MS} ms (it may be cut off from the region that made them); retry, or send the request to that region"
            ),
        ))
    }
}

/// Runs `batch` as one client of its own, through the batch path a RESP
/// connection uses; a command that would block answers its timeout reply.
async fn run(
    shared: &Shared,
    peer: SocketAddr,
    access: Access,
    batch: Vec<Vec<Bytes>>,
) -> Vec<Frame> {
    let (push_tx, _push_rx) = tokio::sync::mpsc::channel(1);
    let mut client = Client::new(shared.next_client_id(), peer, true, push_tx);
    client.read_only = access == Access::ReadOnly;
    let mut replies = Vec::with_capacity(batch.len());
    let mut cmds = batch;
    while !cmds.is_empty() {
        let outcome = crate::conn::execute_batch(shared, &mut client, cmds);
        replies.extend(outcome.replies.into_iter().map(|(frame, _)| frame));
        if std::mem::take(&mut client.woke_others) {
            crate::blocking::wait_for_woken(shared).await;
        }
        cmds = match outcome.blocked_on {
            Some((_, timeout_reply, rest)) => {
                replies.push(timeout_reply);
                client.block = None;
                crate::blocking::leave(shared, &mut shared.store.lock(), client.id);
                rest
            }
            None => Vec::new(),
        };
    }
    replies
}

/// `/v1/conflicts` and `/v1/digest` show stored values: while this
/// region's data needs a password (`--requirepass`, or a `default` user
/// that must authenticate) they need a bearer token too — the admin token
/// when one is set (checked by [`crate::admin::require_admin`]), else a
/// data API token.
pub async fn require_data_access(
    State(slot): State<Slot>,
    request: Request,
    next: Next,
) -> Response {
    let Some(shared) = slot.get() else {
        return next.run(request).await;
    };
    let data_needs_auth = !shared.acl.read().default_needs_no_auth();
    let admin_token_set = shared.admin_token.read().is_some();
    if data_needs_auth && !admin_token_set && access(shared, request.headers()).is_none() {
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            "this region's data needs a password, so this endpoint needs Authorization: Bearer <admin token or data API token>",
        );
        reply.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"meridian\""),
        );
        return reply;
    }
    next.run(request).await
}
