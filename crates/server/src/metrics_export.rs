//! `/metrics`: this region's counters and gauges in the Prometheus text
//! format, version 0.0.4, encoded by `prometheus-client`.
//!
//! Nothing is registered ahead of a scrape. The values stay where they are
//! kept (`Metrics`, the store, the replication status, the cluster view, the
//! election, the heal tracker) and each scrape builds a [`Registry`] with one
//! collector that reads them then, so no value is copied into a second place
//! that could drift from the first. Every family is written under the name
//! it is exposed as: dashboards and alerts query these names, label names and
//! label values, listed in `tests/metrics_names.txt`, which
//! `tests/metrics_exposition.rs` holds real regions to.
//!
//! The library also writes OpenMetrics, but there a counter family is named
//! without its `_total`, so the counter `meridian_connections_total` would
//! declare the same family as the gauge `meridian_connections`. Version
//! 0.0.4 names each family after its samples and is what Prometheus and
//! every other scraper read, so it is the one served ([`CONTENT_TYPE`]).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use meridian_cluster::{Liveness, Role};
use meridian_repl::LinkState;
use meridian_repl::PeerView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::{rss_bytes, Metrics};
use crate::shared::{Readiness, Shared};

/// The content type `/metrics` is served with: Prometheus text 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// This region's metrics as Prometheus text. An error can only come from an
/// encoder refusing a value, never from the region's state.
pub fn encode(shared: &Arc<Shared>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(RegionCollector {
        shared: shared.clone(),
    }));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// Reads the live state of one region at each scrape.
struct RegionCollector {
    shared: Arc<Shared>,
}

impl fmt::Debug for RegionCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionCollector")
            .field("region", &self.shared.config.region.as_str())
            .finish()
    }
}

impl Collector for RegionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Families(&mut encoder);
        clients(&self.shared, &mut out)?;
        store(&self.shared, &mut out)?;
        replication(&self.shared, &mut out)?;
        cluster(&self.shared, &mut out)?;
        background(&self.shared, &mut out)
    }
}

/// The name a family is declared under, given the name its samples are
/// exposed as. The encoder appends `_total` to a counter's name and `_info`
/// to an info metric's itself, so those suffixes are taken off first; a
/// counter or info metric without its suffix is a mistake in this file.
fn declared(exposed: &str, kind: MetricType) -> &str {
    let suffix = match kind {
        MetricType::Counter => "_total",
        MetricType::Info => "_info",
        _ => return exposed,
    };
    debug_assert!(exposed.ends_with(suffix), "{exposed} lacks {suffix}");
    exposed.strip_suffix(suffix).unwrap_or(exposed)
}

/// Writes families one after another, each with its HELP and TYPE lines
/// and then its samples.
struct Families<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Families<'_, '_> {
    fn one(&mut self, name: &str, help: &str, metric: impl EncodeMetric) -> fmt::Result {
        let kind = metric.metric_type();
        metric.encode(
            self.0
                .encode_descriptor(declared(name, kind), help, None, kind)?,
        )
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.one(name, help, ConstCounter::new(value))
    }

    fn gauge<N: EncodeGaugeValue>(&mut self, name: &str, help: &str, value: N) -> fmt::Result {
        self.one(name, help, ConstGauge::new(value))
    }

    /// A gauge that is 1 while `on`, else 0.
    fn flag(&mut self, name: &str, help: &str, on: bool) -> fmt::Result {
        self.gauge(name, help, i64::from(on))
    }

    /// One sample per label set. A family without samples is left out, as
    /// it always was here: it would tell a dashboard nothing.
    fn labelled<L: EncodeLabelSet, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, M)>,
    ) -> fmt::Result {
        let mut samples = samples.into_iter().peekable();
        let Some(kind) = samples.peek().map(|(_, metric)| metric.metric_type()) else {
            return Ok(());
        };
        let mut family = self
            .0
            .encode_descriptor(declared(name, kind), help, None, kind)?;
        for (labels, metric) in samples {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The process and its clients: connections, commands, bytes.
fn clients(shared: &Shared, out: &mut Families) -> fmt::Result {
    let m = &shared.metrics;
    let info = Info::new([
        ("region", shared.config.region.as_str().to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ]);
    out.one("meridian_info", "Build and region of this process.", info)?;
    let ready = *shared.readiness.lock() == Readiness::Ready;
    out.flag("meridian_up", "1 while the region accepts writes.", ready)?;
    out.gauge(
        "meridian_uptime_seconds",
        "Seconds since start.",
        shared.started.elapsed().as_secs_f64(),
    )?;
    out.gauge(
        "meridian_memory_rss_bytes",
        "Resident set size of the process.",
        rss_bytes(),
    )?;
    for (name, help, counter) in [
        (
            "meridian_connections_total",
            "Client connections accepted.",
            &m.connections_total,
        ),
        (
            "meridian_auth_failures_total",
            "AUTH and HELLO AUTH attempts refused (wrong password, unknown or disabled user).",
            &m.auth_failures_total,
        ),
        (
            "meridian_tls_handshake_failures_total",
            "TLS client handshakes that failed or timed out on --tls-listen.",
            &m.tls_handshake_failures_total,
        ),
        (
            "meridian_commands_total",
            "Commands received.",
            &m.commands_total,
        ),
        (
            "meridian_command_errors_total",
            "Commands answered with an error.",
            &m.command_errors_total,
        ),
        (
            "meridian_protocol_errors_total",
            "Connections closed for malformed input.",
            &m.protocol_errors_total,
        ),
        (
            "meridian_ops_total",
            "Ops committed to the op log.",
            &m.ops_committed_total,
        ),
        (
            "meridian_net_input_bytes_total",
            "Bytes read from clients.",
            &m.net_input_bytes,
        ),
        (
            "meridian_net_output_bytes_total",
            "Bytes written to clients.",
            &m.net_output_bytes,
        ),
    ] {
        out.counter(name, help, Metrics::get(counter))?;
    }
    out.gauge(
        "meridian_connections",
        "Client connections open.",
        Metrics::get(&m.connections_current),
    )?;
    let mut calls: Vec<(&str, u64)> = crate::cmd::table()
        .values()
        .map(|spec| (spec.name, spec.calls.load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect();
    calls.sort();
    out.labelled(
        "meridian_command_calls_total",
        "Calls per command.",
        calls
            .into_iter()
            .map(|(cmd, n)| ([("cmd", cmd)], ConstCounter::new(n))),
    )
}

/// The keyspace, the op log and the conflict journal, read under one hold
/// of the store's lock so they agree with each other.
fn store(shared: &Shared, out: &mut Families) -> fmt::Result {
    let store = shared.store.lock();
    let keyspace = store.db().keyspace();
    let (keys, expiring, hidden) = (
        keyspace.len(),
        keyspace.expiring_len(),
        keyspace.hidden_len(),
    );
    let (expired, conflicts) = (store.db().expired_total(), store.db().conflicts_total());
    let log = store.log();
    let (last_lsn, synced_lsn, segments) = (log.last_lsn(), log.synced_lsn(), log.segment_count());
    let ops_since_snapshot = store.ops_since_snapshot();
    let by_type_rule: Vec<(&str, &str, u64)> = store
        .journal()
        .counts()
        .iter()
        .map(|((kind, rule), n)| (*kind, *rule, *n))
        .collect();
    drop(store);
    out.gauge("meridian_keys", "Visible keys.", keys)?;
    out.gauge("meridian_keys_expiring", "Keys with a deadline.", expiring)?;
    out.gauge(
        "meridian_keys_hidden",
        "Keys holding only remembered state (counter offsets, orphan TTLs).",
        hidden,
    )?;
    out.counter("meridian_expired_keys_total", "Keys expired.", expired)?;
    // One family holds both the total and its split by type and rule, as
    // it always has; the split's label set is empty for the total.
    let total = (Vec::new(), ConstCounter::new(conflicts));
    let split = by_type_rule
        .into_iter()
        .map(|(kind, rule, n)| (vec![("type", kind), ("rule", rule)], ConstCounter::new(n)));
    out.labelled(
        "meridian_conflicts_total",
        "Concurrent writes resolved by discarding a value.",
        std::iter::once(total).chain(split),
    )?;
    out.gauge(
        "meridian_log_last_lsn",
        "LSN of the newest op-log record.",
        last_lsn,
    )?;
    out.gauge(
        "meridian_log_synced_lsn",
        "LSN up to which the op log is on stable storage.",
        synced_lsn,
    )?;
    out.gauge(
        "meridian_log_segments",
        "Op-log segment files retained.",
        segments,
    )?;
    out.gauge(
        "meridian_log_ops_since_snapshot",
        "Ops logged since the last snapshot.",
        ops_since_snapshot,
    )?;
    out.counter(
        "meridian_snapshots_total",
        "Snapshots written.",
        Metrics::get(&shared.metrics.snapshots_total),
    )
}

/// A per-peer family of gauges.
fn per_peer_gauge<N: EncodeGaugeValue>(
    out: &mut Families,
    peers: &[PeerView],
    name: &str,
    help: &str,
    value: impl Fn(&PeerView) -> N,
) -> fmt::Result {
    let samples = peers
        .iter()
        .map(|p| ([("peer", p.region.to_string())], ConstGauge::new(value(p))));
    out.labelled(name, help, samples)
}

/// A per-peer family of counters.
fn per_peer_counter(
    out: &mut Families,
    peers: &[PeerView],
    name: &str,
    help: &str,
    value: impl Fn(&PeerView) -> u64,
) -> fmt::Result {
    let samples = peers.iter().map(|p| {
        (
            [("peer", p.region.to_string())],
            ConstCounter::new(value(p)),
        )
    });
    out.labelled(name, help, samples)
}

/// Each replication link: lag, traffic, clock offsets, and refusals.
fn replication(shared: &Shared, out: &mut Families) -> fmt::Result {
    let view = crate::status::view(shared);
    let peers = &view.peers;
    per_peer_gauge(
        out,
        peers,
        "meridian_replication_lag_seconds",
        "Age of the oldest op this peer has not acknowledged.",
        |p| p.lag_ms as f64 / 1000.0,
    )?;
    per_peer_gauge(
        out,
        peers,
        "meridian_replication_lag_ops",
        "Ops of this region's log the peer has not acknowledged.",
        |p| p.lag_ops,
    )?;
    per_peer_gauge(
        out,
        peers,
        "meridian_replication_link_up",
        "1 while the outbound link to the peer is up.",
        |p| i64::from(p.outbound_state == LinkState::Up),
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_sent_ops_total",
        "Ops streamed to the peer.",
        |p| p.ops_sent,
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_sent_bytes_total",
        "Bytes streamed to the peer.",
        |p| p.bytes_sent,
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_received_ops_total",
        "Ops received from the peer.",
        |p| p.ops_received,
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_received_bytes_total",
        "Bytes received from the peer.",
        |p| p.bytes_received,
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_applied_ops_total",
        "Ops from the peer applied here.",
        |p| p.ops_applied,
    )?;
    per_peer_counter(
        out,
        peers,
        "meridian_replication_duplicate_ops_total",
        "Ops from the peer already applied (came through another region).",
        |p| p.duplicates,
    )?;
    per_peer_gauge(
        out,
        peers,
        "meridian_clock_offset_ms",
        "Peer clock minus local clock, from heartbeats.",
        |p| p.clock_offset_ms,
    )?;
    per_peer_gauge(
        out,
        peers,
        "meridian_clock_offset_alarm",
        "1 while the peer's clock is ahead beyond max_clock_offset_ms.",
        |p| i64::from(p.clock_alarm),
    )?;
    let quantiles = peers.iter().flat_map(|p| {
        [("0.5", p.apply_lag_p50_ms), ("0.99", p.apply_lag_p99_ms)]
            .into_iter()
            .filter_map(move |(q, ms)| {
                let labels = [("peer", p.region.to_string()), ("quantile", q.to_string())];
                Some((labels, ConstGauge::new(ms? as f64 / 1000.0)))
            })
    });
    out.labelled(
        "meridian_replication_apply_lag_seconds",
        "Apply time minus write time of recent ops from the peer.",
        quantiles,
    )?;
    out.counter(
        "meridian_replication_causal_resets_total",
        "Inbound links reset because a peer sent an op before its dependencies.",
        shared.repl.causal_resets.load(Ordering::Relaxed),
    )?;
    let refused: Vec<(String, u64)> = shared
        .repl
        .refused
        .lock()
        .iter()
        .map(|(reason, n)| (reason.clone(), *n))
        .collect();
    out.labelled(
        "meridian_replication_refused_total",
        "Peer handshakes refused, by reason.",
        refused
            .into_iter()
            .map(|(reason, n)| ([("reason", reason)], ConstCounter::new(n))),
    )
}

/// The cluster view, the election, fencing and partitions healed.
fn cluster(shared: &Shared, out: &mut Families) -> fmt::Result {
    let (epoch, lease_held, liveness) = {
        let view = shared.host.view.lock();
        let now = crate::shared::wall_ms();
        let liveness: Vec<(String, f64)> = shared
            .config
            .peers
            .iter()
            .map(|(region, _)| {
                let up = view.liveness(*region).map_or(0.0, |l| match l {
                    Liveness::Up => 1.0,
                    Liveness::Suspect => 0.5,
                    Liveness::Down => 0.0,
                });
                (region.to_string(), up)
            })
            .collect();
        (view.epoch(), view.lease(now).is_ok(), liveness)
    };
    let (term, primary_term, leader, elections) = {
        let election = shared.host.election_read();
        (
            election.term(),
            election.primary_term(),
            election.role() == Role::Leader,
            election.elections_total(),
        )
    };
    let fenced =
        crate::status::not_ready_reason(shared).is_some_and(|(status, _)| status == "fenced");
    let m = &shared.metrics;
    out.gauge(
        "meridian_view_epoch",
        "This region's epoch: raised at every change of its view of the cluster.",
        epoch,
    )?;
    out.gauge(
        "meridian_primary_term",
        "The term the primary of primary keyspaces was elected in, as this region knows it.",
        primary_term,
    )?;
    out.gauge(
        "meridian_election_term",
        "This region's election term (raised by standing or voting).",
        term,
    )?;
    out.flag(
        "meridian_primary",
        "1 while this region is the elected primary of primary keyspaces.",
        leader,
    )?;
    out.counter(
        "meridian_elections_total",
        "Elections this region started (stood as candidate) since it started.",
        elections,
    )?;
    out.flag(
        "meridian_quorum_lease",
        "1 while this region holds the majority lease.",
        lease_held,
    )?;
    out.flag(
        "meridian_fenced",
        "1 while some keyspace refuses writes here (fenced).",
        fenced,
    )?;
    out.counter(
        "meridian_view_changes_total",
        "Changes of this region's view (peers down/up, lease lost/regained).",
        Metrics::get(&m.view_changes_total),
    )?;
    out.counter(
        "meridian_fencings_total",
        "Times this region lost the majority lease.",
        Metrics::get(&m.fenced_total),
    )?;
    out.counter(
        "meridian_fenced_writes_total",
        "Writes refused with -FENCED.",
        Metrics::get(&m.fenced_writes_total),
    )?;
    out.labelled(
        "meridian_peer_liveness",
        "Failure detector: 1 up, 0.5 suspect, 0 down.",
        liveness
            .into_iter()
            .map(|(peer, up)| ([("peer", peer)], ConstGauge::new(up))),
    )?;
    let (heals_total, last) = {
        let heal = shared.heal.lock();
        (heal.heals_total, heal.last().cloned())
    };
    out.counter(
        "meridian_heals_total",
        "Partitions seen healed from here.",
        heals_total,
    )?;
    // The last heal's figures exist only once a partition has healed.
    let Some(last) = last else { return Ok(()) };
    let partition_ms = last.healed_ms.saturating_sub(last.started_ms);
    out.gauge(
        "meridian_last_partition_seconds",
        "How long the last healed partition lasted.",
        partition_ms as f64 / 1000.0,
    )?;
    out.gauge(
        "meridian_last_heal_ops",
        "Ops exchanged to catch up after the last heal.",
        last.ops_exchanged,
    )?;
    out.gauge(
        "meridian_last_heal_conflicts",
        "Conflicts journaled during the last partition.",
        last.conflicts_during,
    )
}

/// Anti-entropy sessions and tombstone collection.
fn background(shared: &Shared, out: &mut Families) -> fmt::Result {
    let ae = shared.repl.antientropy.lock().clone();
    let tombstones = shared.repl.tombstones.lock().clone();
    out.counter(
        "meridian_antientropy_sessions_total",
        "Anti-entropy sessions completed here (as either side).",
        ae.sessions_total,
    )?;
    out.counter(
        "meridian_antientropy_bytes_total",
        "Bytes of anti-entropy sessions sent and received here (digests and state).",
        ae.bytes_total,
    )?;
    out.counter(
        "meridian_antientropy_keys_sent_total",
        "Keys whose state this region sent by anti-entropy.",
        ae.keys_sent_total,
    )?;
    out.counter(
        "meridian_antientropy_keys_merged_total",
        "Keys whose state this region merged by anti-entropy.",
        ae.keys_merged_total,
    )?;
    out.counter(
        "meridian_tombstones_collected_total",
        "Tombstones (settled counter incarnations, TTLs a delete missed) dropped once every region held them.",
        tombstones.collected_total,
    )?;
    out.counter(
        "meridian_tombstone_keys_removed_total",
        "Hidden keys removed by tombstone collection.",
        tombstones.keys_removed_total,
    )?;
    out.counter(
        "meridian_tombstone_rounds_total",
        "Tombstone collection rounds completed.",
        tombstones.rounds_total,
    )
}
