//! State shared by every connection: the store, the client registry,
//! counters and the Pub/Sub channels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::client::PushSender;
use crate::config::Config;
use crate::metrics::Metrics;

/// What `CLIENT LIST` shows and `CLIENT KILL` acts on.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub name: Option<Bytes>,
    pub created: Instant,
    pub last_cmd: String,
    pub last_active: Instant,
    pub kill: std::sync::Arc<tokio::sync::Notify>,
    pub killed: std::sync::Arc<AtomicBool>,
    pub subscriptions: usize,
    pub in_multi: bool,
    pub resp: u8,
}

/// Why the region does not accept writes, if it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Recovering,
    Ready,
    Poisoned(String),
    /// SIGTERM or SHUTDOWN: load balancers should stop sending clients.
    ShuttingDown,
}

pub struct Shared {
    pub config: Config,
    pub store: Arc<meridian_repl::StoreLock>,
    /// What replication shares with client connections.
    pub host: meridian_repl::Host,
    pub repl: Arc<meridian_repl::ReplStatus>,
    pub clients: Mutex<HashMap<u64, ClientEntry>>,
    pub next_client_id: AtomicU64,
    pub channels: Mutex<HashMap<Bytes, HashMap<u64, PushSender>>>,
    pub patterns: Mutex<HashMap<Bytes, HashMap<u64, PushSender>>>,
    /// Shard channels (SSUBSCRIBE/SPUBLISH): one node holds every shard,
    /// so they are channels in a namespace of their own.
    pub shard_channels: Mutex<HashMap<Bytes, HashMap<u64, PushSender>>>,
    pub metrics: Metrics,
    /// INFO's `commandstats` and `errorstats` (a leaf lock).
    pub cmdstats: Mutex<crate::cmd::stats::Stats>,
    pub started: Instant,
    pub readiness: Mutex<Readiness>,
    pub requirepass: Mutex<Option<String>>,
    /// ACL users of this region (not replicated).
    pub acl: parking_lot::RwLock<crate::acl::Acl>,
    /// Recent refusals for `ACL LOG`.
    pub acl_log: Mutex<crate::acl::AclLog>,
    /// Set at shutdown, just before the final sync: writes are refused.
    pub closing: AtomicBool,
    /// `--protected-mode`, changeable by `CONFIG SET protected-mode`.
    pub protected_mode: AtomicBool,
    /// Keyspace policies in force: `--policy` at start, then reloads and
    /// the admin API.
    pub policies: parking_lot::RwLock<Arc<meridian_cluster::Policies>>,
    /// The admin API's bearer token (`--admin-token`), replaced by reloads.
    pub admin_token: parking_lot::RwLock<Option<String>>,
    /// The REST data API's bearer tokens, replaced by reloads.
    pub data_api_tokens: parking_lot::RwLock<crate::data_api::Tokens>,
    pub shutdown: tokio::sync::Notify,
    pub heal: Mutex<crate::heal::HealTracker>,
    /// Redis parameters Meridian has no mechanism for, as `CONFIG SET`
    /// left them (`cmd/config_params.rs`); not replicated, not persisted.
    pub config_kept: Mutex<HashMap<&'static str, String>>,
    /// Clients blocked on keys (BLPOP and friends): a leaf lock.
    pub blocking: Mutex<crate::blocking::Blocking>,
    /// The EVAL scripting state and its script cache; taken under the
    /// store lock, for the length of a script.
    pub scripting: Mutex<crate::scripting::Scripting>,
    /// FUNCTION libraries and their Lua state (taken like `scripting`).
    pub functions: Mutex<crate::scripting::Functions>,
    /// The script running now, if one is (a leaf lock): other connections
    /// read it to answer BUSY or to kill it without the store lock.
    pub running_script: Mutex<Option<Arc<crate::scripting::Running>>>,
    /// The record the last script left, reused by the next one so a short
    /// script allocates none (`scripting::run`).
    pub spare_running: Mutex<Option<Arc<crate::scripting::Running>>>,
    /// `notify-keyspace-events` as flags (`crate::notify`): one atomic, so
    /// a write whose class is off pays one load.
    pub notify_flags: AtomicU32,
    /// Client tracking: the keys tracking clients read and every
    /// connection's invalidation channel (a leaf lock).
    pub tracking: Mutex<crate::tracking::Tracking>,
    /// CLIENT PAUSE (a leaf lock behind an atomic).
    pub pause: crate::pause::Pause,
    /// MONITOR connections' feeds (a leaf lock behind an atomic).
    pub monitors: crate::monitor::Monitors,
}

/// Where the HTTP port finds the region's shared state: empty while the
/// region recovers (health and readiness answer meanwhile), filled once.
pub type Slot = Arc<std::sync::OnceLock<Arc<Shared>>>;

impl Shared {
    /// The keyspace policies in force now.
    pub fn policies(&self) -> Arc<meridian_cluster::Policies> {
        self.policies.read().clone()
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// This region's wall clock in ms, including the test-only
/// `--clock-offset-ms` shift ([`meridian_repl::wall_ms`]).
pub fn wall_ms() -> u64 {
    meridian_repl::wall_ms()
}

/// Adds a refusal to `ACL LOG` (never a password).
pub fn acl_log(
    shared: &Shared,
    client: &crate::client::Client,
    reason: crate::acl::LogReason,
    object: &str,
) {
    acl_log_as(shared, client, reason, object, &client.user);
}

/// [`acl_log`] for a user other than the connection's (a failed AUTH
/// names the user it tried).
pub fn acl_log_as(
    shared: &Shared,
    client: &crate::client::Client,
    reason: crate::acl::LogReason,
    object: &str,
    username: &str,
) {
    let context = if client.multi.is_some() {
        "multi"
    } else {
        "toplevel"
    };
    let info = format!("id={} addr={} user={}", client.id, client.addr, client.user);
    shared
        .acl_log
        .lock()
        .record(reason, context, object, username, info, wall_ms());
}
