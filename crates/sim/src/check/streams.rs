//! The stream family (`xs:*`): every region reads the same entries, and
//! exactly the acknowledged ones no observed XDEL or XTRIM removed.

use super::*;

/// The stream keys the history wrote.
fn stream_keys(history: &History) -> BTreeSet<&str> {
    history
        .ops
        .iter()
        .filter_map(|op| match &op.write {
            Write::XAdd { key, .. }
            | Write::XDel { key, .. }
            | Write::XTrim { key, .. }
            | Write::XReadGroup { key, .. } => Some(key.as_str()),
            Write::Other {
                key,
                what: "xgroup-create",
            } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

/// A stream as XRANGE `-` `+` reads it (empty when absent), and what its
/// group `g` has not delivered yet (`None`: no group).
type StreamRead = (Vec<(StreamId, String)>, Option<Vec<StreamId>>);

fn stream_of(db: &mut Db, key: &str) -> Result<StreamRead, Anomaly> {
    match db.stream(key.as_bytes()) {
        Ok(Some(s)) => {
            let entries = s
                .range(StreamId::ZERO, StreamId::MAX)
                .map(|(id, f)| (id, crate::driver::entry_value(f)))
                .collect();
            let undelivered = s
                .group(crate::driver::STREAM_GROUP)
                .map(|g| s.undelivered(g).map(|(id, _, _)| id).collect());
            Ok((entries, undelivered))
        }
        Ok(None) => Ok((Vec::new(), None)),
        Err(_) => Err(Anomaly::new("streams", format!("{key} holds no stream"))),
    }
}

/// Streams (`xs:*`), once the regions converged:
/// - every region reads the same entries in the same order (XRANGE), and
///   the same undelivered entries of the group;
/// - IDs are strictly increasing, and the IDs acknowledged XADDs took
///   (`*`) are unique across regions, each carrying its region's slot;
/// - exactly the entries of acknowledged XADDs are present that no
///   acknowledged XDEL naming them or XTRIM up to them observed: nothing
///   acknowledged is lost, nothing removed comes back, nothing appears
///   that no XADD added (each held value is the one its XADD wrote);
/// - group `g` delivers at least once: every entry present was delivered
///   by an acknowledged XREADGROUP in some region, or a region's next
///   XREADGROUP `>` would still deliver it (no cursor skipped it).
pub fn check_streams(regions: &mut [SimRegion], history: &History) -> Check {
    let keys = stream_keys(history);
    let mut reads: BTreeMap<&str, StreamRead> = BTreeMap::new();
    for key in &keys {
        let first = stream_of(regions[0].store().db_mut(), key)?;
        for r in regions.iter_mut().skip(1) {
            let id = r.id;
            let other = stream_of(r.store().db_mut(), key)?;
            if other != first {
                return fail(
                    "streams",
                    format!("{key}: region {id} reads {other:?}, region 0 reads {first:?}"),
                );
            }
        }
        reads.insert(key, first);
    }
    let mut adds: BTreeMap<(&str, StreamId), &Recorded> = BTreeMap::new();
    let mut removers: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    let mut delivered: BTreeMap<&str, BTreeSet<StreamId>> = BTreeMap::new();
    let mut created: BTreeSet<&str> = BTreeSet::new();
    // Reported after what a missing slot leads to (collisions, entries
    // hidden), which says more.
    let mut unslotted: Option<String> = None;
    for op in history.durable() {
        match &op.write {
            Write::XAdd { key, id, .. } => {
                let r = &regions[op.region];
                let slot = crate::driver::stream_slot(r.id, &r.peers);
                if id.seq & ((1 << meridian_store::db::SLOT_BITS) - 1) != slot {
                    unslotted.get_or_insert(format!(
                        "{key}: {} took ID {id}, which lacks its slot {slot}",
                        op.dot()
                    ));
                }
                if let Some(other) = adds.insert((key, *id), op) {
                    return fail(
                        "streams",
                        format!(
                            "{key}: acknowledged XADDs {} and {} both took ID {id}",
                            other.dot(),
                            op.dot()
                        ),
                    );
                }
            }
            Write::XDel { key, .. } | Write::XTrim { key, .. } => {
                removers.entry(key).or_default().push(op)
            }
            Write::XReadGroup { key, ids } => delivered.entry(key).or_default().extend(ids),
            Write::Other {
                key,
                what: "xgroup-create",
            } => {
                created.insert(key);
            }
            _ => {}
        }
    }
    let removes = |rm: &Recorded, id: StreamId| match &rm.write {
        Write::XDel { ids, .. } => ids.contains(&id),
        Write::XTrim { upto, .. } => id <= *upto,
        _ => false,
    };
    for (key, (entries, undelivered)) in &reads {
        for pair in entries.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return fail(
                    "streams",
                    format!("{key}: ID {} comes before {}", pair[0].0, pair[1].0),
                );
            }
        }
        let none = Vec::new();
        let removed_by = removers.get(key).unwrap_or(&none);
        let held: BTreeMap<StreamId, &str> =
            entries.iter().map(|(id, v)| (*id, v.as_str())).collect();
        for (id, value) in &held {
            let written = adds.get(&(*key, *id)).map(|op| match &op.write {
                Write::XAdd { value, .. } => value.as_str(),
                _ => "",
            });
            if written != Some(*value) {
                return fail(
                    "streams",
                    format!("{key}: entry {id} holds {value:?}, but no acknowledged XADD added that (its XADD wrote {written:?})"),
                );
            }
        }
        for ((_, id), add) in adds.range((*key, StreamId::ZERO)..=(*key, StreamId::MAX)) {
            let remover = removed_by
                .iter()
                .find(|rm| rm.observed(add) && removes(rm, *id));
            match (remover, held.contains_key(id)) {
                (None, false) => {
                    return fail(
                        "streams",
                        format!("{key}: entry {id}, added by {} (acknowledged), is gone and no XDEL or XTRIM that observed it removed it", add.dot()),
                    )
                }
                (Some(rm), true) => {
                    return fail(
                        "streams",
                        format!("{key}: entry {id}, added by {}, is present though {} observed it and removed it", add.dot(), rm.dot()),
                    )
                }
                _ => {}
            }
        }
        match undelivered {
            None if created.contains(key) => {
                return fail(
                    "streams",
                    format!("{key}: group created by an acknowledged XGROUP CREATE is gone"),
                )
            }
            None => {}
            Some(undelivered) => {
                let served = delivered.get(key);
                for id in held.keys() {
                    if !undelivered.contains(id) && !served.is_some_and(|d| d.contains(id)) {
                        return fail(
                            "streams",
                            format!("{key}: entry {id} was never delivered by an acknowledged XREADGROUP, and group g will not deliver it"),
                        );
                    }
                }
            }
        }
    }
    match unslotted {
        Some(detail) => fail("streams", detail),
        None => Ok(()),
    }
}
