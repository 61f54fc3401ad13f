//! Reads every data region's whole conflict journal at the end of a chaos
//! run.
//!
//! A running region shows only its newest entries (`MERIDIAN CONFLICTS`,
//! a window of 10 000), and one heal after a long partition can journal
//! more than that within a second, so the harness does not read the
//! journal through the API: once the final state has been read it stops
//! the regions and opens each one's durable journal (retention is set far
//! above what a run writes) from its data dir, with the store's own reader.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use meridian_store::{FsyncPolicy, Journal};

use super::check::JournalEntry;

/// Every entry of the journal in `data_dir`, oldest first. The region
/// must have stopped.
pub fn read_journal(data_dir: &Path, retention: u64) -> anyhow::Result<Vec<JournalEntry>> {
    // Regions the harness stopped shut down cleanly or were killed (no power
    // loss), so every entry's op is in the op log: keep them all.
    let journal = Journal::open(data_dir, FsyncPolicy::No, retention, usize::MAX, u64::MAX)
        .with_context(|| format!("opening the conflict journal in {}", data_dir.display()))?;
    // Trimming keeps `retention` entries, so fewer means nothing was cut.
    anyhow::ensure!(
        (journal.retained() as u64) < retention,
        "the journal in {} reached its retention; entries may have been dropped",
        data_dir.display()
    );
    Ok(journal
        .recent()
        .map(|e| {
            let c = &e.conflict;
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            JournalEntry {
                key: text(&c.key),
                field: c.sub.as_ref().map(|s| text(s)),
                winner: text(&c.winner_value),
                loser: text(&c.loser_value),
            }
        })
        .collect())
}

/// The entries of `keys`, every one of them present (possibly empty).
pub fn by_key(entries: &[JournalEntry], keys: &[String]) -> BTreeMap<String, Vec<JournalEntry>> {
    let mut out: BTreeMap<String, Vec<JournalEntry>> =
        keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    for e in entries {
        if let Some(list) = out.get_mut(&e.key) {
            list.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_grouped_by_the_keys_asked_for() {
        let e = |key: &str, w: &str| JournalEntry {
            key: key.into(),
            field: None,
            winner: w.into(),
            loser: "x".into(),
        };
        let keys = vec!["r:0".to_string(), "r:1".to_string()];
        let grouped = by_key(&[e("r:0", "a"), e("c:0", "b"), e("r:0", "c")], &keys);
        assert_eq!(grouped["r:0"].len(), 2);
        assert!(grouped["r:1"].is_empty());
        assert!(!grouped.contains_key("c:0"));
    }
}
