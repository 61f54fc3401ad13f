//! The `meridian` binary's library: the RESP server, the HTTP admin port and
//! the command-line tools.
//!
//! # Layout
//! - [`config`]: flags, environment and TOML file for `serve`.
//! - [`server`]: startup, recovery, background duties (expiry, fsync, snapshots).
//! - [`conn`]: one client connection; batches pipelined commands.
//! - [`dispatch`]: the checks before a handler runs, and committing its op.
//! - [`acl`]: ACL users, their passwords (salted hashes), command levels and key patterns.
//! - [`cmd`]: the command table, one file per command family.
//! - [`http`]: `/health/live`, `/health/ready`, `/metrics`, `/v1/status`, `/v1/conflicts`.
//! - [`admin`]: the token-protected admin API under `/v1` (policies,
//!   reload, log level); [`reload`] applies a changed config file (SIGHUP).
//! - [`logging`]: structured logs with a filter that changes at run time.
//! - [`status`]: the region's view of the cluster, for HTTP, metrics and `MERIDIAN`.
//! - [`dashboard`]: the live page at `/` on the HTTP port.
//! - [`status_cli`]: `meridian status`, any region's view as a table.
//! - [`members_cli`]: `meridian members`, list/add/remove regions.
//! - [`shared`], [`client`], [`metrics`]: state shared by connections, per
//!   connection, and counters.
//! - [`demo`], [`bench`]: `meridian demo` and `meridian bench`, which drive a
//!   [`cluster`] of child-process regions through the WAN emulator with the
//!   async RESP client [`rclient`].
//! - [`chaos`]: `meridian chaos`, the same cluster under random faults with
//!   a recorded history and an offline checker.

pub mod acl;
pub mod admin;
pub mod bench;
pub mod bench_ae;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod dashboard;
pub mod demo;
pub mod dispatch;
pub mod heal;
pub mod http;
pub mod logging;
pub mod members_cli;
pub mod metrics;
pub mod metrics_export;
pub mod rclient;
pub mod reload;
pub mod server;
pub mod shared;
pub mod status;
pub mod status_cli;
