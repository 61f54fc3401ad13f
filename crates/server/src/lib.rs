//! The Meridian daemon as a library: one region's RESP server, its HTTP
//! admin port and everything they share. The `meridian` binary
//! (`crates/meridian`) runs it as `meridian serve`; the tools that spawn and
//! attack regions live in `meridian-tools`, the operator CLI in
//! `meridian-ctl`, and neither is linked into the daemon.
//!
//! # Layout
//! - [`config`]: flags, environment and TOML file for `serve`.
//! - [`server`]: startup, recovery, background duties (expiry, fsync, snapshots).
//! - [`conn`]: one client connection; batches pipelined commands.
//! - [`dispatch`]: the checks Redis makes before a handler runs, in order;
//!   [`guard`] the ACL and keyspace-policy checks (run again at EXEC).
//! - [`commit`]: the one path from a batch's effects to a durable op, and
//!   poisoning on an op-log failure.
//! - [`scripting`]: Lua scripts (`meridian-script`) run with every check a
//!   client's command passes; the script cache and the running script.
//! - [`acl`]: ACL users, their passwords (salted hashes), command levels and key patterns.
//! - [`cmd`]: the command table, one file per command family.
//! - [`http`]: `/health/live`, `/health/ready`, `/metrics`, `/v1/status`, `/v1/conflicts`.
//! - [`data_api`]: the REST data API serverless SDKs speak (`POST /`,
//!   `/pipeline`, `/multi-exec`, path commands), bearer tokens, session
//!   tokens in `Upstash-Sync-Token`.
//! - [`admin`]: the token-protected admin API under `/v1` (policies,
//!   reload, log level); [`reload`] applies a changed config file (SIGHUP).
//! - [`events`]: the store's change feed, drained for keyspace
//!   notifications ([`notify`]) and client tracking ([`tracking`]).
//! - [`pause`]: CLIENT PAUSE; [`monitor`]: MONITOR's feeds.
//! - [`logging`]: structured logs with a filter that changes at run time.
//! - [`status`]: the region's view of the cluster, for HTTP, metrics and `MERIDIAN`.
//! - [`dashboard`]: the live page at `/` on the HTTP port.
//! - [`shared`], [`client`], [`metrics`]: state shared by connections, per
//!   connection, and counters; [`metrics_export`] renders them and the
//!   region's state as Prometheus text (prometheus-client).

pub mod acl;
pub mod admin;
pub mod blocking;
pub mod client;
pub mod cmd;
pub mod commit;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod data_api;
pub mod dispatch;
pub mod duties;
pub mod events;
pub mod guard;
pub mod heal;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod metrics_export;
pub mod monitor;
pub mod notify;
pub mod pause;
pub mod reload;
pub mod scripting;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod status;
pub mod tracking;
