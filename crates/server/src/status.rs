//! The region's view of the cluster, shared by `/v1/status`,
//! `/v1/conflicts`, `MERIDIAN REGIONS` and the metrics.

use meridian_crdt::VersionVector;
use meridian_repl::{LinkState, PeerView};
use meridian_store::JournalEntry;
use serde_json::{json, Value};

use crate::shared::{wall_ms, Readiness, Shared};

pub fn vv_json(vv: &VersionVector) -> Value {
    Value::Object(vv.iter().map(|(r, s)| (r.to_string(), json!(s))).collect())
}

/// A consistent snapshot of what this region knows.
pub struct View {
    pub region: String,
    pub epoch: u64,
    pub vv: VersionVector,
    pub last_lsn: u64,
    pub synced_lsn: u64,
    pub keys: usize,
    pub readiness: Readiness,
    pub peers: Vec<PeerView>,
    pub conflict_counts: Vec<(&'static str, &'static str, u64)>,
    pub conflicts_retained: usize,
}

pub fn view(shared: &Shared) -> View {
    let (vv, last_lsn, synced_lsn, keys, epoch, conflict_counts, conflicts_retained) = {
        let store = shared.store.lock();
        (
            store.db().version_vector().clone(),
            store.log().last_lsn(),
            store.log().synced_lsn(),
            store.db().keyspace().len(),
            store.epoch(),
            store
                .journal()
                .counts()
                .iter()
                .map(|((k, r), n)| (*k, *r, *n))
                .collect(),
            store.journal().retained(),
        )
    };
    View {
        region: shared.config.region.to_string(),
        epoch,
        vv,
        last_lsn,
        synced_lsn,
        keys,
        readiness: shared.readiness.lock().clone(),
        peers: shared.repl.view(last_lsn, wall_ms()),
        conflict_counts,
        conflicts_retained,
    }
}

fn peer_json(p: &PeerView) -> Value {
    json!({
        "id": p.region.as_str(),
        "self": false,
        "role": "data",
        "addr": p.addr,
        "link": {
            "outbound": p.outbound_state.name(),
            "inbound": if p.inbound_connected { "up" } else { "down" },
            "last_error": p.last_error,
        },
        "state": if p.outbound_state == LinkState::Up && p.inbound_connected { "up" } else { "down" },
        "lag_ms": p.lag_ms,
        "lag_ops": p.lag_ops,
        "apply_lag_p50_ms": p.apply_lag_p50_ms,
        "apply_lag_p99_ms": p.apply_lag_p99_ms,
        "version_vector": vv_json(&p.peer_vv),
        "ops_sent": p.ops_sent,
        "bytes_sent": p.bytes_sent,
        "ops_received": p.ops_received,
        "ops_applied": p.ops_applied,
        "duplicates": p.duplicates,
        "bytes_received": p.bytes_received,
        "clock_offset_ms": p.clock_offset_ms,
        "clock_alarm": p.clock_alarm,
    })
}

pub fn status_json(shared: &Shared) -> Value {
    let v = view(shared);
    let (ready, reason) = match &v.readiness {
        Readiness::Ready => (true, None),
        Readiness::Recovering => (false, Some("recovering".to_string())),
        Readiness::Poisoned(r) => (false, Some(r.clone())),
    };
    let mut regions = vec![json!({
        "id": v.region,
        "self": true,
        "role": "data",
        "state": if ready { "up" } else { "not-ready" },
        "epoch": v.epoch,
        "version_vector": vv_json(&v.vv),
        "lag_ms": 0,
        "lag_ops": 0,
    })];
    regions.extend(v.peers.iter().map(peer_json));
    let refused: Value = shared
        .repl
        .refused
        .lock()
        .iter()
        .map(|(k, n)| (k.clone(), json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    json!({
        "region": v.region,
        "cluster": shared.config.cluster,
        "epoch": v.epoch,
        "ready": ready,
        "not_ready_reason": reason,
        "version_vector": vv_json(&v.vv),
        "keys": v.keys,
        "log": {"last_lsn": v.last_lsn, "synced_lsn": v.synced_lsn},
        "regions": regions,
        "policies": [{"pattern": "*", "policy": "active-active", "state": "writable"}],
        "conflicts": {
            "retained": v.conflicts_retained,
            "by_type_rule": v.conflict_counts.iter().map(|(k, r, n)| json!({"type": k, "rule": r, "count": n})).collect::<Vec<_>>(),
        },
        "handshakes_refused": refused,
    })
}

pub fn journal_entry_json(e: &JournalEntry) -> Value {
    let c = &e.conflict;
    let side = |tag: &meridian_crdt::Tag, value: &[u8]| {
        json!({
            "dot": tag.dot.to_string(),
            "region": tag.dot.region().as_str(),
            "hlc_ms": tag.hlc.wall_ms(),
            "hlc_logical": tag.hlc.logical(),
            "value": String::from_utf8_lossy(value),
        })
    };
    json!({
        "key": String::from_utf8_lossy(&c.key),
        "field": c.sub.as_ref().map(|s| String::from_utf8_lossy(s).to_string()),
        "type": c.kind.name(),
        "rule": c.rule.name(),
        "winner": side(&c.winner, &c.winner_value),
        "loser": side(&c.loser, &c.loser_value),
        "epoch": e.epoch,
        "detected_ms": e.detected_ms,
        "op_lsn": e.op_lsn,
    })
}

/// Newest first, optionally only one key.
pub fn conflicts_json(shared: &Shared, count: usize, key: Option<&[u8]>) -> Value {
    let store = shared.store.lock();
    let entries: Vec<Value> = store
        .journal()
        .recent()
        .rev()
        .filter(|e| key.is_none_or(|k| &e.conflict.key[..] == k))
        .take(count)
        .map(journal_entry_json)
        .collect();
    json!({"region": shared.config.region.as_str(), "conflicts": entries})
}
