//! What each link is doing, for `MERIDIAN REGIONS`, `/v1/status` and
//! metrics. Senders and receivers update it; readers take a consistent view.

use std::collections::{BTreeMap, VecDeque};

use meridian_crdt::{RegionId, VersionVector};
use parking_lot::Mutex;

/// Apply-lag samples kept per inbound link for percentiles.
pub const LAG_SAMPLES_MAX: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Up,
    Down,
    Refused,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Refused => "refused",
        }
    }
}

/// This region streaming its log to one peer.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub addr: String,
    pub state: LinkState,
    pub since_ms: u64,
    pub last_error: Option<String>,
    pub connects: u64,
    /// Highest LSN of this region's log the peer acknowledged.
    pub acked_lsn: u64,
    /// The peer's version vector as of its last acknowledgement.
    pub peer_vv: VersionVector,
    /// The part of `peer_vv` on the peer's stable storage, as of its last
    /// acknowledgement (empty until the first).
    pub peer_durable_vv: VersionVector,
    /// The peer said it is a witness (`None`: not heard yet).
    pub peer_witness: Option<bool>,
    pub ops_sent: u64,
    pub bytes_sent: u64,
    /// The peer's clock minus ours, from its acknowledgements.
    pub clock_offset_ms: i64,
}

/// One peer streaming its log to this region.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    pub connected: bool,
    pub since_ms: u64,
    pub ops_received: u64,
    pub ops_applied: u64,
    pub duplicates: u64,
    pub bytes_received: u64,
    /// Apply time minus the op's HLC wall time, for recent ops.
    pub lag_samples_ms: VecDeque<u64>,
    pub clock_offset_ms: i64,
    pub clock_alarm: bool,
    pub clock_alarms_total: u64,
    pub last_msg_ms: u64,
}

impl Inbound {
    pub fn record_lag(&mut self, ms: u64) {
        if self.lag_samples_ms.len() == LAG_SAMPLES_MAX {
            self.lag_samples_ms.pop_front();
        }
        self.lag_samples_ms.push_back(ms);
    }

    /// The `p`-quantile (0..=1) of recent apply lag, in ms.
    pub fn lag_quantile_ms(&self, p: f64) -> Option<u64> {
        quantile(self.lag_samples_ms.iter().copied(), p)
    }
}

pub fn quantile(samples: impl Iterator<Item = u64>, p: f64) -> Option<u64> {
    let mut v: Vec<u64> = samples.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = ((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    Some(v[at])
}

#[derive(Debug, Default)]
pub struct ReplStatus {
    pub outbound: Mutex<BTreeMap<RegionId, Outbound>>,
    pub inbound: Mutex<BTreeMap<RegionId, Inbound>>,
    /// Handshakes refused, by reason.
    pub refused: Mutex<BTreeMap<String, u64>>,
    /// The most recent refusal, with who was refused and why.
    pub last_refusal: Mutex<Option<Refusal>>,
    /// Anti-entropy sessions run here, either side.
    pub antientropy: Mutex<AntiEntropyStats>,
    /// Tombstone collection rounds.
    pub tombstones: Mutex<crate::tombstones::TombstoneStats>,
    /// Held by the one anti-entropy session this region dials at a time.
    pub antientropy_session: tokio::sync::Mutex<()>,
    /// Peers with an anti-entropy session in progress, by this region's
    /// role in it: one session repairs both sides, so a pair runs one.
    pub antientropy_peers: Mutex<AntiEntropyPeers>,
    /// Notified whenever a peer leaves [`ReplStatus::antientropy_peers`].
    pub antientropy_ended: tokio::sync::Notify,
    /// Links reset because a peer sent an op before its dependencies.
    pub causal_resets: std::sync::atomic::AtomicU64,
    /// Until this wall time (ms) acknowledgements name no origin streamed
    /// directly, so every sender relays everything: a wait for
    /// dependencies over a link failed.
    pub relay_all_until_ms: std::sync::atomic::AtomicU64,
}

/// One refused handshake, either side of a link.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The counter it went to (`tls`, `bad secret`, ...).
    pub reason: String,
    /// The peer's address, or its region id when this region dialed it.
    pub peer: String,
    /// The whole explanation, as logged.
    pub detail: String,
    pub at_ms: u64,
}

/// Peers in an anti-entropy session with this region.
#[derive(Debug, Clone, Default)]
pub struct AntiEntropyPeers {
    /// This region dialed the session.
    pub dialing: std::collections::BTreeSet<RegionId>,
    /// The peer dialed it; kept until the peer streams again, which it
    /// does only after merging this region's states.
    pub accepting: std::collections::BTreeSet<RegionId>,
}

/// Counters of anti-entropy sessions, as dialer and acceptor.
#[derive(Debug, Clone, Default)]
pub struct AntiEntropyStats {
    pub sessions_total: u64,
    /// Bytes sent and received in sessions (digests and state).
    pub bytes_total: u64,
    /// Keys whose state this region sent.
    pub keys_sent_total: u64,
    /// Keys whose state this region merged.
    pub keys_merged_total: u64,
}

/// One row of `MERIDIAN REGIONS` / `/v1/status`.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub region: RegionId,
    pub addr: String,
    pub outbound_state: LinkState,
    pub inbound_connected: bool,
    pub last_error: Option<String>,
    /// Ops of this region's log the peer has not acknowledged.
    pub lag_ops: u64,
    /// Age of the oldest op the peer has not acknowledged.
    pub lag_ms: u64,
    /// Recent apply lag of the peer's stream here (p50, p99).
    pub apply_lag_p50_ms: Option<u64>,
    pub apply_lag_p99_ms: Option<u64>,
    pub peer_vv: VersionVector,
    pub ops_sent: u64,
    pub bytes_sent: u64,
    pub ops_received: u64,
    pub ops_applied: u64,
    pub duplicates: u64,
    pub bytes_received: u64,
    pub clock_offset_ms: i64,
    pub clock_alarm: bool,
}

impl ReplStatus {
    /// Counts a refused handshake under `reason` and remembers it as the
    /// latest, with the `peer` refused and the whole `detail`.
    pub fn refuse_from(&self, reason: &str, peer: &str, detail: &str) {
        *self.refused.lock().entry(reason.to_string()).or_insert(0) += 1;
        *self.last_refusal.lock() = Some(Refusal {
            reason: reason.to_string(),
            peer: peer.to_string(),
            detail: detail.to_string(),
            at_ms: crate::wall_ms(),
        });
    }

    /// `appended_ms_after(lsn)` tells when the record after `lsn` was
    /// written (`Store::appended_ms_after`), for lag in ms.
    pub fn view(
        &self,
        my_last_lsn: u64,
        now_ms: u64,
        appended_ms_after: impl Fn(u64) -> Option<u64>,
    ) -> Vec<PeerView> {
        let outbound = self.outbound.lock();
        let inbound = self.inbound.lock();
        let mut regions: Vec<RegionId> = outbound.keys().chain(inbound.keys()).copied().collect();
        regions.sort();
        regions.dedup();
        regions
            .into_iter()
            .map(|region| {
                let out = outbound.get(&region);
                let inb = inbound.get(&region).cloned().unwrap_or_default();
                // Age of the oldest op the peer has not acknowledged, down
                // or not: a cut link's lag keeps growing.
                let lag_ms = out
                    .and_then(|o| appended_ms_after(o.acked_lsn))
                    .map_or(0, |t| now_ms.saturating_sub(t));
                PeerView {
                    region,
                    addr: out.map_or_else(String::new, |o| o.addr.clone()),
                    outbound_state: out.map_or(LinkState::Down, |o| o.state),
                    inbound_connected: inb.connected,
                    last_error: out.and_then(|o| o.last_error.clone()),
                    lag_ops: out.map_or(0, |o| my_last_lsn.saturating_sub(o.acked_lsn)),
                    lag_ms,
                    apply_lag_p50_ms: inb.lag_quantile_ms(0.5),
                    apply_lag_p99_ms: inb.lag_quantile_ms(0.99),
                    peer_vv: out.map_or_else(VersionVector::new, |o| o.peer_vv.clone()),
                    ops_sent: out.map_or(0, |o| o.ops_sent),
                    bytes_sent: out.map_or(0, |o| o.bytes_sent),
                    ops_received: inb.ops_received,
                    ops_applied: inb.ops_applied,
                    duplicates: inb.duplicates,
                    bytes_received: inb.bytes_received,
                    clock_offset_ms: inb.clock_offset_ms,
                    clock_alarm: inb.clock_alarm,
                }
            })
            .collect()
    }

    /// The lowest LSN some peer still needs (compaction must keep it).
    pub fn retain_from(&self) -> Option<u64> {
        self.outbound.lock().values().map(|o| o.acked_lsn + 1).min()
    }
}
