//! The stream checks of a chaos run (`xs:*`, XADD `*` only, never
//! deleted or trimmed).

use std::collections::{BTreeMap, HashMap};

use super::{Ctx, Index, KeyState};
use crate::chaos::history::{Cmd, Op, ReadValue};

/// The ID an XADD's reply named, when it arrived.
fn taken_id(op: &Op) -> Option<&str> {
    match &op.read {
        Some(ReadValue::Text(id)) => Some(id),
        _ => None,
    }
}

fn added_value(op: &Op) -> Option<&str> {
    match &op.cmd {
        Cmd::Xadd { value, .. } => Some(value),
        _ => None,
    }
}

/// An entry ID as (ms, seq), which orders IDs as Redis does.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Streams, from what clients were told (the final state is the same in
/// every region, `check_identical` says so):
/// - every acknowledged XADD's entry is present, at the ID its reply
///   named; no two acknowledged XADDs to one stream took one ID (auto IDs
///   never collide across regions);
/// - every entry held was added by an XADD sent for its value (one whose
///   reply was lost may or may not be there), once;
/// - IDs are strictly increasing in XRANGE order.
pub(super) fn check_streams(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    for (&key, adds) in &ix.xadds {
        // IDs are unique within a stream; two streams may take one ID.
        let mut taken: HashMap<(u64, u64), &Op> = HashMap::new();
        let empty = Vec::new();
        let entries = match state.get(key) {
            None => &empty,
            Some(KeyState::Stream(e)) => e,
            // `check_types` reports it.
            Some(_) => continue,
        };
        let by_value: HashMap<&str, &Op> = adds
            .iter()
            .filter_map(|a| Some((added_value(a)?, *a)))
            .collect();
        let held: HashMap<&str, &str> = entries
            .iter()
            .map(|(id, v)| (v.as_str(), id.as_str()))
            .collect();
        for add in adds.iter().filter(|a| a.acked()) {
            let Some(value) = added_value(add) else {
                continue;
            };
            cx.count("stream-acked-entry-present");
            match (held.get(value), taken_id(add)) {
                (None, _) => cx.anomaly(
                    "stream-lost",
                    key,
                    format!("the entry {value} an acknowledged XADD added is missing"),
                    &[*add],
                ),
                (Some(at), Some(id)) if at != &id => cx.anomaly(
                    "stream-moved",
                    key,
                    format!("{value} is held at {at}, but its XADD's reply named {id}"),
                    &[*add],
                ),
                _ => {}
            }
            if let Some(id) = taken_id(add).and_then(parse_id) {
                cx.count("stream-id-unique");
                if let Some(other) = taken.insert(id, add) {
                    cx.anomaly(
                        "stream-id-collision",
                        key,
                        format!("two acknowledged XADDs took the ID {}-{}", id.0, id.1),
                        &[other, *add],
                    );
                }
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut previous: Option<(u64, u64)> = None;
        for (id, value) in entries {
            cx.count("stream-entry-known");
            if !by_value.contains_key(value.as_str()) {
                cx.anomaly(
                    "stream-invented",
                    key,
                    format!("entry {id} holds {value}, which no XADD was sent for"),
                    &[],
                );
            }
            *seen.entry(value).or_default() += 1;
            if seen[value.as_str()] == 2 {
                cx.anomaly(
                    "stream-duplicated",
                    key,
                    format!("{value} is held twice"),
                    &[],
                );
            }
            let parsed = parse_id(id);
            if parsed.is_none() || previous.is_some_and(|p| Some(p) >= parsed) {
                cx.anomaly(
                    "stream-order",
                    key,
                    format!("entry {id} does not follow the one before it in ID order"),
                    &[],
                );
            }
            previous = parsed;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories of streams: lost, moved, invented and colliding
    //! entries must be caught, an XADD whose reply was lost must not be.
    use super::super::tests::H;
    use super::*;

    fn xadd(key: &str, value: &str) -> Cmd {
        Cmd::Xadd {
            key: key.into(),
            value: value.into(),
        }
    }

    fn stream(entries: &[(&str, &str)]) -> KeyState {
        KeyState::Stream(
            entries
                .iter()
                .map(|(id, v)| (id.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Two acknowledged XADDs in two regions, replies `5-1` and `5-2`, and
    /// one whose reply was lost.
    fn history() -> H {
        let mut h = H::new();
        h.acked(0, xadd("xs:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, xadd("xs:0", "b"), 0, 5, [0, 0, 0], [0, 1, 0]);
        h.unknown(2, xadd("xs:0", "c"), 0, 5);
        h.ops[0].read = Some(ReadValue::Text("5-1".into()));
        h.ops[1].read = Some(ReadValue::Text("5-2".into()));
        h
    }

    #[test]
    fn acknowledged_entries_are_present_at_their_ids_in_order() {
        let h = history();
        assert!(h
            .check(&[("xs:0", stream(&[("5-1", "a"), ("5-2", "b")]))])
            .is_empty());
        assert!(h
            .check(&[("xs:0", stream(&[("5-1", "a"), ("5-2", "b"), ("5-3", "c")]))])
            .is_empty());
        assert_eq!(
            h.check(&[("xs:0", stream(&[("5-1", "a")]))]),
            vec!["stream-lost"]
        );
        assert_eq!(
            h.check(&[("xs:0", stream(&[("5-1", "a"), ("5-4", "b")]))]),
            vec!["stream-moved"]
        );
        assert_eq!(
            h.check(&[("xs:0", stream(&[("5-2", "b"), ("5-1", "a")]))]),
            vec!["stream-order"]
        );
        assert_eq!(
            h.check(&[("xs:0", stream(&[("5-1", "a"), ("5-2", "b"), ("6-1", "z")]))]),
            vec!["stream-invented"]
        );
    }

    #[test]
    fn two_acknowledged_xadds_taking_one_id_collide() {
        let mut h = history();
        h.ops[1].read = Some(ReadValue::Text("5-1".into()));
        let found = h.check(&[("xs:0", stream(&[("5-1", "a"), ("5-2", "b")]))]);
        assert!(found.contains(&"stream-id-collision"), "{found:?}");
        // Two streams may each hold an entry 5-1.
        let mut h = H::new();
        h.acked(0, xadd("xs:0", "a"), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(0, xadd("xs:1", "b"), 0, 5, [1, 0, 0], [2, 0, 0]);
        h.ops[0].read = Some(ReadValue::Text("5-1".into()));
        h.ops[1].read = Some(ReadValue::Text("5-1".into()));
        let held = [
            ("xs:0", stream(&[("5-1", "a")])),
            ("xs:1", stream(&[("5-1", "b")])),
        ];
        assert!(h.check(&held).is_empty());
    }
}
