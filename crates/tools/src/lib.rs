//! What spawns and attacks Meridian regions. Every tool here runs regions as
//! child processes of the running `meridian` binary (`meridian serve`) and
//! talks to them only as a client would: RESP, the admin HTTP port, and the
//! WAN fault proxy between them. Nothing here is linked into the daemon.
//!
//! # Layout
//! - [`cluster`]: the local-cluster launcher: N regions on loopback, linked
//!   through `meridian-netem`, started, killed and restarted on demand.
//! - [`rclient`]: a small async RESP client for the tools' workloads.
//! - [`demo`]: `meridian demo`, three regions, a partition and its heal.
//! - [`bench`], [`bench_ae`]: `meridian bench`, latency, lag and
//!   anti-entropy benchmarks on such a cluster; [`bench_clients`]: a GET/SET
//!   load of many connections, with client tracking on or off, on any one
//!   running server.
//! - [`chaos`]: `meridian chaos`, the cluster under random faults with a
//!   recorded history and an offline checker.
//! - [`sim`]: `meridian sim`, the deterministic simulator over many seeds.

pub mod bench;
pub mod bench_ae;
pub mod bench_clients;
pub mod chaos;
pub mod cluster;
pub mod demo;
pub mod rclient;
pub mod sim;
