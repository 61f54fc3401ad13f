//! Counters for `/metrics` (Prometheus text format) and `INFO`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_current: AtomicU64,
    pub commands_total: AtomicU64,
    pub command_errors_total: AtomicU64,
    pub protocol_errors_total: AtomicU64,
    pub ops_committed_total: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub rejected_connections_total: AtomicU64,
    pub snapshots_total: AtomicU64,
    pub view_changes_total: AtomicU64,
    pub fenced_total: AtomicU64,
    pub fenced_writes_total: AtomicU64,
    pub auth_failures_total: AtomicU64,
    pub tls_handshake_failures_total: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Resident set size of this process, in bytes (Linux), or 0 where unknown.
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
