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
    let (vv, last_lsn, synced_lsn, keys, epoch, conflict_counts, conflicts_retained, peers) = {
        let store = shared.store.lock();
        let peers = shared.repl.view(store.log().last_lsn(), wall_ms(), |lsn| {
            store.appended_ms_after(lsn)
        });
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
            peers,
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
        peers,
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
        Readiness::ShuttingDown => (false, Some("shutting down".to_string())),
    };
    let mut regions = vec![json!({
        "id": v.region,
        "self": true,
        "role": if shared.config.witness { "witness" } else { "data" },
        "state": if ready { "up" } else { "not-ready" },
        "epoch": v.epoch,
        "version_vector": vv_json(&v.vv),
        "lag_ms": 0,
        "lag_ops": 0,
    })];
    regions.extend(v.peers.iter().map(peer_json));
    {
        let view = shared.host.view.lock();
        for r in regions.iter_mut().skip(1) {
            let liveness = r["id"]
                .as_str()
                .and_then(|id| meridian_crdt::RegionId::new(id).ok())
                .and_then(|id| view.liveness(id));
            if let Some(l) = liveness {
                r["state"] = json!(l.name());
            }
        }
    }
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
        "policies": policy_states(shared).iter().map(PolicyState::json).collect::<Vec<_>>(),
        "election": election_json(shared),
        "role": if shared.config.witness { "witness" } else { "data" },
        "view": view_json(shared),
        "conflicts": {
            "retained": v.conflicts_retained,
            "by_type_rule": v.conflict_counts.iter().map(|(k, r, n)| json!({"type": k, "rule": r, "count": n})).collect::<Vec<_>>(),
        },
        "tombstones": tombstones_json(shared),
        "handshakes_refused": refused,
        "last_refusal": shared.repl.last_refusal.lock().as_ref().map(|r| json!({
            "reason": r.reason,
            "peer": r.peer,
            "detail": r.detail,
            "at_ms": r.at_ms,
        })),
        "tls": {
            "clients": shared.config.tls.listen.map(|a| a.to_string()),
            "replication": shared.config.tls.replication,
        },
    })
}

/// Tombstone collection: what it did and what a round in progress waits for.
fn tombstones_json(shared: &Shared) -> Value {
    let t = shared.repl.tombstones.lock().clone();
    let (backlog, hidden_keys) = {
        let store = shared.store.lock();
        (
            store.db().tombstone_backlog(),
            store.db().keyspace().hidden_len(),
        )
    };
    json!({
        "interval_ms": shared.config.tombstone_interval_ms,
        "rounds": t.rounds_total,
        "rounds_abandoned": t.rounds_abandoned_total,
        "collected": t.collected_total,
        "keys_removed": t.keys_removed_total,
        "pending": t.pending,
        "waiting_for": t.waiting_for,
        "candidates_queued": backlog,
        "hidden_keys": hidden_keys,
        "last_round_ms": t.last_round_ms,
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

/// One keyspace policy and what it allows here now.
pub struct PolicyState {
    pub pattern: String,
    pub policy: String,
    /// `writable`, `fenced`, `read-only` or `witness`.
    pub state: &'static str,
    pub reason: Option<String>,
    /// For `primary` keyspaces: the elected primary as this region knows
    /// it, and this region's term.
    pub primary: Option<PrimaryState>,
}

pub struct PrimaryState {
    pub primary: String,
    pub term: u64,
    /// The term the primary was elected in (0: the configured one).
    pub primary_term: u64,
    /// `primary` writes this region accepted in its current term.
    pub writes_accepted_in_term: u64,
}

impl PolicyState {
    pub fn json(&self) -> Value {
        let mut v = json!({"pattern": self.pattern, "policy": self.policy, "state": self.state, "reason": self.reason});
        if let Some(p) = &self.primary {
            v["primary"] = json!(p.primary);
            v["term"] = json!(p.term);
            v["primary_term"] = json!(p.primary_term);
            v["writes_accepted_in_term"] = json!(p.writes_accepted_in_term);
        }
        v
    }
}

/// Every configured policy, then the default rule for all other keys.
pub fn policy_states(shared: &Shared) -> Vec<PolicyState> {
    let config = &shared.config;
    let lease = shared.host.view.lock().lease(wall_ms());
    let poisoned = matches!(*shared.readiness.lock(), Readiness::Poisoned(_));
    let (elected, writable, term, primary_term, accepted) = {
        let e = shared.host.election_read();
        let accepted = e
            .accepted()
            .next_back()
            .filter(|a| a.term == e.term())
            .map_or(0, |a| a.count);
        (
            e.primary(),
            e.may_write(meridian_repl::election::mono_ms()),
            e.term(),
            e.primary_term(),
            accepted,
        )
    };
    let policies = shared.policies();
    let mut out: Vec<PolicyState> = policies
        .rules()
        .map(|(pattern, policy)| {
            let mut primary = None;
            let (state, reason) = match policy {
                meridian_cluster::Policy::ActiveActive => ("writable", None),
                meridian_cluster::Policy::Primary(configured) => {
                    let current = elected.unwrap_or(*configured);
                    primary = Some(PrimaryState {
                        primary: current.to_string(),
                        term,
                        primary_term,
                        writes_accepted_in_term: accepted,
                    });
                    if current != config.region {
                        (
                            "read-only",
                            Some(format!(
                                "the primary is {current} (elected in term {primary_term})"
                            )),
                        )
                    } else {
                        match lease.as_ref().map_err(String::clone).and(writable.clone()) {
                            Ok(()) => ("writable", None),
                            Err(why) => ("fenced", Some(why)),
                        }
                    }
                }
                meridian_cluster::Policy::Majority => match &lease {
                    Ok(()) => ("writable", None),
                    Err(why) => ("fenced", Some(why.clone())),
                },
            };
            PolicyState {
                pattern: String::from_utf8_lossy(pattern).into_owned(),
                policy: policy.name(),
                state,
                reason,
                primary,
            }
        })
        .collect();
    out.push(PolicyState {
        pattern: "*".into(),
        policy: "active-active".into(),
        state: "writable",
        reason: None,
        primary: None,
    });
    for p in &mut out {
        if config.witness {
            p.state = "witness";
            p.reason = Some("a witness stores no data".into());
        } else if poisoned {
            p.state = "fenced";
            p.reason = Some("the op log failed; writes are refused until restart".into());
        }
    }
    out
}

/// Why `/health/ready` must fail, if it must: the region cannot accept
/// writes for every keyspace it serves.
pub fn not_ready_reason(shared: &Shared) -> Option<(&'static str, String)> {
    match &*shared.readiness.lock() {
        Readiness::Recovering => return Some(("recovering", "replaying the op log".into())),
        Readiness::Poisoned(r) => return Some(("poisoned", r.clone())),
        Readiness::ShuttingDown => {
            return Some(("shutting-down", "the region is shutting down".into()))
        }
        Readiness::Ready => {}
    }
    if shared.config.witness {
        return None;
    }
    policy_states(shared)
        .into_iter()
        .find(|p| p.state == "fenced")
        .map(|p| {
            (
                "fenced",
                format!(
                    "keys matching '{}' ({}): {}",
                    p.pattern,
                    p.policy,
                    p.reason.unwrap_or_default()
                ),
            )
        })
}

/// The elected primary's protocol as this region sees it, and the
/// `primary` writes it accepted in each recent term (wall-clock ms).
pub fn election_json(shared: &Shared) -> Value {
    let e = shared.host.election_read();
    let now = meridian_repl::election::mono_ms();
    let accepted: Vec<Value> = e
        .accepted()
        .map(|a| json!({"term": a.term, "region": shared.config.region.as_str(), "count": a.count, "first_ms": a.first_ms, "last_ms": a.last_ms}))
        .collect();
    json!({
        "primary": e.primary().map(|r| r.to_string()),
        "term": e.term(),
        "primary_term": e.primary_term(),
        "role": e.role().name(),
        "voted_for": e.durable().voted_for.map(|r| r.to_string()),
        "writable": e.may_write(now).is_ok(),
        "not_writable_reason": e.may_write(now).err(),
        "lease_ms": e.lease_ms(),
        "lease_remaining_ms": e.lease_remaining_ms(now),
        "elections_started": e.elections_total(),
        "writes_accepted": accepted,
    })
}

/// Failure detection and lease as this region sees them.
fn view_json(shared: &Shared) -> Value {
    let now = wall_ms();
    let view = shared.host.view.lock();
    let peers: Vec<Value> = shared
        .config
        .peers
        .iter()
        .map(|(r, _)| {
            json!({
                "id": r.as_str(),
                "liveness": view.liveness(*r).map(|l| l.name()),
                "last_heard_ms_ago": view.last_heard_ago_ms(*r, now),
            })
        })
        .collect();
    let transitions: Vec<Value> = view
        .transitions()
        .rev()
        .take(20)
        .map(|t| json!({"at_ms": t.at_ms, "epoch": t.epoch, "change": format!("{:?}", t.change)}))
        .collect();
    let lease = view.lease(now);
    let partition = view
        .partition()
        .map(|p| json!({"started_ms": p.started_ms, "ended_ms": p.ended_ms}));
    drop(view);
    let heal = shared.heal.lock();
    json!({
        "members": shared.config.peers.len() + 1,
        "lease_ms": shared.config.lease_ms,
        "has_majority_lease": lease.is_ok(),
        "lease_problem": lease.err(),
        "peers": peers,
        "partition": partition,
        "last_heal": heal.last().map(|h| h.json()),
        "heals_total": heal.heals_total,
        "transitions": transitions,
    })
}
