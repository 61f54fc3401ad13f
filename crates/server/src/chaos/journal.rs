//! Collects every region's conflict journal during a chaos run.
//!
//! A region shows only its newest entries (`MERIDIAN CONFLICTS`, a window
//! of `CONFLICTS_KEPT_MAX`), and a long run journals far more than that, so
//! the harness reads each region's window every couple of seconds and keeps
//! the union. Values are unique per run, so an entry is identified by its
//! key, field and two values. If a read shares nothing with what was seen
//! before while the window is full, entries may have scrolled past unseen:
//! that region's journal is marked incomplete and the checker does not
//! look for missing entries there.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use meridian_resp::Frame;

use super::check::JournalEntry;
use crate::cluster::LocalCluster;
use crate::rclient::{frame_text, Client};

/// Entries a region shows (`meridian_store::db::CONFLICTS_KEPT_MAX`).
const WINDOW_ENTRIES: usize = 10_000;
/// Entries asked for on a routine read; the whole window when that is not
/// enough to reach what was already seen.
const ROUTINE_ENTRIES: usize = 2_000;
const READ_TIMEOUT: Duration = Duration::from_secs(3);

type Id = (String, Option<String>, String, String);

/// The union of every data region's journal, as read so far.
pub struct JournalCollector {
    seen: Vec<HashSet<Id>>,
    entries: Vec<Vec<JournalEntry>>,
    /// Entries may have been missed (the window scrolled past unseen).
    pub incomplete: Vec<bool>,
    /// Reads that got an answer.
    pub reads: u64,
}

impl JournalCollector {
    pub fn new(data_regions: usize) -> JournalCollector {
        JournalCollector {
            seen: vec![HashSet::new(); data_regions],
            entries: vec![Vec::new(); data_regions],
            incomplete: vec![false; data_regions],
            reads: 0,
        }
    }

    /// Reads every data region's window; regions that are down or slow are
    /// skipped until the next call.
    pub async fn poll(&mut self, cluster: &LocalCluster) {
        for i in 0..self.seen.len() {
            let addr = cluster.regions[i].resp;
            let _ = tokio::time::timeout(READ_TIMEOUT, self.poll_one(i, addr)).await;
        }
    }

    async fn poll_one(&mut self, i: usize, addr: std::net::SocketAddr) -> Option<()> {
        let mut client = Client::connect(addr).await.ok()?;
        let mut count = ROUTINE_ENTRIES;
        loop {
            let reply = client
                .cmd(&["MERIDIAN", "CONFLICTS", "COUNT", &count.to_string()])
                .await
                .ok()?;
            if reply.is_error() {
                return None;
            }
            let fetched = journal_entries(&reply);
            let overlaps = fetched.iter().any(|e| self.seen[i].contains(&id(e)));
            let full = fetched.len() == count;
            if full && !overlaps && count < WINDOW_ENTRIES {
                count = WINDOW_ENTRIES;
                continue;
            }
            if full && !overlaps && count == WINDOW_ENTRIES {
                self.incomplete[i] = true;
            }
            self.reads += 1;
            // Newest first; keep the journal's order, oldest first.
            for e in fetched.into_iter().rev() {
                if self.seen[i].insert(id(&e)) {
                    self.entries[i].push(e);
                }
            }
            return Some(());
        }
    }

    /// Region `i`'s entries per key for the checker, every key in `keys`
    /// present (possibly empty); nothing when entries may be missing.
    pub fn by_key(&self, i: usize, keys: &[String]) -> BTreeMap<String, Vec<JournalEntry>> {
        if self.incomplete[i] {
            return BTreeMap::new();
        }
        let mut out: BTreeMap<String, Vec<JournalEntry>> =
            keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        for e in &self.entries[i] {
            if let Some(list) = out.get_mut(&e.key) {
                list.push(e.clone());
            }
        }
        out
    }
}

fn id(e: &JournalEntry) -> Id {
    (
        e.key.clone(),
        e.field.clone(),
        e.winner.clone(),
        e.loser.clone(),
    )
}

/// The entries of a `MERIDIAN CONFLICTS` reply (RESP2: each entry a flat
/// list of name, value pairs).
fn journal_entries(reply: &Frame) -> Vec<JournalEntry> {
    let Frame::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let mut fields: BTreeMap<String, Option<String>> = BTreeMap::new();
            match entry {
                Frame::Array(items) => {
                    for pair in items.chunks(2) {
                        if let [name, value] = pair {
                            fields.insert(frame_text(name).unwrap_or_default(), frame_text(value));
                        }
                    }
                }
                Frame::Map(pairs) => {
                    for (name, value) in pairs {
                        fields.insert(frame_text(name).unwrap_or_default(), frame_text(value));
                    }
                }
                _ => {}
            }
            let text = |name: &str| fields.get(name).cloned().flatten().unwrap_or_default();
            JournalEntry {
                key: text("key"),
                field: fields.get("field").cloned().flatten(),
                winner: text("winner_value"),
                loser: text("loser_value"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::bulk(s.to_string())
    }

    #[test]
    fn conflicts_replies_parse_in_resp2_and_resp3_shapes() {
        let flat = Frame::Array(vec![Frame::Array(vec![
            bulk("key"),
            bulk("h:1"),
            bulk("field"),
            bulk("f0"),
            bulk("winner_value"),
            bulk("v1-2"),
            bulk("loser_value"),
            bulk("v2-9"),
        ])]);
        let map = Frame::Array(vec![Frame::Map(vec![
            (bulk("key"), bulk("r:3")),
            (bulk("field"), Frame::Null),
            (bulk("winner_value"), bulk("a")),
            (bulk("loser_value"), bulk("b")),
        ])]);
        assert_eq!(
            journal_entries(&flat),
            vec![JournalEntry {
                key: "h:1".into(),
                field: Some("f0".into()),
                winner: "v1-2".into(),
                loser: "v2-9".into(),
            }]
        );
        assert_eq!(journal_entries(&map)[0].field, None);
        assert_eq!(journal_entries(&map)[0].key, "r:3");
    }

    #[test]
    fn a_region_whose_window_scrolled_past_unseen_is_not_offered_for_checking() {
        let mut c = JournalCollector::new(2);
        c.incomplete[1] = true;
        let keys = vec!["r:0".to_string()];
        assert_eq!(c.by_key(0, &keys).get("r:0"), Some(&Vec::new()));
        assert!(c.by_key(1, &keys).is_empty());
    }
}
