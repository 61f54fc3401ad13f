//! The conflict journal: every value a merge rule hid, kept durably.
//!
//! Each entry names the op-log LSN of the op whose apply found it. Recovery
//! replays ops after the snapshot; conflicts of ops at or below the journal's
//! newest LSN are already recorded and are not written twice, so the journal
//! holds each conflict once per region however often the region restarts.
//! It is bounded by a retention count: old segments are dropped whole.
//!
//! The journal and the op log are separate files synced separately, so after
//! a power loss the journal can hold entries for ops the op log lost. Those
//! entries name LSNs the region will give to new ops, so opening the journal
//! drops them: the journal is rewritten without them into `journal.rewrite`,
//! which then replaces `journal` by two renames. Opening finishes or discards
//! a rewrite that a crash interrupted.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use meridian_crdt::Conflict;
use meridian_log::{FsyncPolicy, Log, LogOptions, PendingSync};
use serde::{Deserialize, Serialize};

use crate::persist::StoreError;

/// Journal segments are small so retention trims at a fine grain.
const JOURNAL_SEGMENT_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// LSN, in this region's op log, of the op whose apply found the conflict.
    pub op_lsn: u64,
    /// Wall time when it was found.
    pub detected_ms: u64,
    /// This region's epoch when it was found.
    pub epoch: u64,
    pub conflict: Conflict,
}

pub struct Journal {
    log: Log,
    retention: u64,
    /// Newest entries, for readers (`MERIDIAN CONFLICTS`, HTTP).
    recent: VecDeque<JournalEntry>,
    recent_max: usize,
    /// (journal LSN, op LSN) of retained entries, oldest first, for trimming.
    index: VecDeque<(u64, u64)>,
    max_op_lsn: u64,
    counts: BTreeMap<(&'static str, &'static str), u64>,
}

impl Journal {
    /// Opens the journal in `dir`, keeping only entries of ops at or below
    /// `op_log_last_lsn` (what the op log recovered).
    pub fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        retention: u64,
        recent_max: usize,
        op_log_last_lsn: u64,
    ) -> Result<Journal, StoreError> {
        let (live, rewrite, old) = (
            dir.join("journal"),
            dir.join("journal.rewrite"),
            dir.join("journal.old"),
        );
        finish_interrupted_rewrite(dir, &live, &rewrite, &old)?;
        let opts = LogOptions {
            segment_max_bytes: JOURNAL_SEGMENT_BYTES,
            fsync,
            ..LogOptions::default()
        };
        let (log, _) = Log::open(&live, opts.clone())?;
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        if log.last_lsn() >= log.oldest_lsn() {
            for record in log.reader(log.oldest_lsn())? {
                let (lsn, payload) = record?;
                let entry: JournalEntry =
                    postcard::from_bytes(&payload).map_err(|e| StoreError::BadRecord {
                        dir: live.clone(),
                        lsn,
                        reason: e.to_string(),
                    })?;
                if entry.op_lsn <= op_log_last_lsn {
                    kept.push((lsn, entry));
                } else {
                    dropped += 1;
                }
            }
        }
        let log = if dropped == 0 {
            log
        } else {
            tracing::warn!(
                dropped,
                op_log_last_lsn,
                "the conflict journal held entries for ops the op log lost (power loss); rewriting it without them"
            );
            drop(log);
            let (mut fresh, _) = Log::open(&rewrite, opts.clone())?;
            for (_, entry) in &mut kept {
                let payload =
                    postcard::to_stdvec(&entry).map_err(|e| StoreError::Encode(e.to_string()))?;
                fresh.append(&payload)?;
            }
            fresh.close()?;
            std::fs::rename(&live, &old).map_err(|e| io_error("renaming", &live, e))?;
            std::fs::rename(&rewrite, &live).map_err(|e| io_error("renaming", &rewrite, e))?;
            sync_dir(dir)?;
            std::fs::remove_dir_all(&old).map_err(|e| io_error("removing", &old, e))?;
            let (log, _) = Log::open(&live, opts)?;
            // The rewritten log numbers entries from 1 again.
            kept = kept
                .into_iter()
                .enumerate()
                .map(|(i, (_, e))| (i as u64 + 1, e))
                .collect();
            log
        };
        let mut journal = Journal {
            log,
            retention: retention.max(1),
            recent: VecDeque::new(),
            recent_max,
            index: VecDeque::new(),
            max_op_lsn: 0,
            counts: BTreeMap::new(),
        };
        for (lsn, entry) in kept {
            journal.remember(lsn, entry);
        }
        Ok(journal)
    }

    /// What a power loss could take from the journal now.
    pub fn unsynced_tail(&self) -> meridian_log::UnsyncedTail {
        self.log.unsynced_tail()
    }

    fn remember(&mut self, journal_lsn: u64, entry: JournalEntry) {
        self.max_op_lsn = self.max_op_lsn.max(entry.op_lsn);
        *self
            .counts
            .entry((entry.conflict.kind.name(), entry.conflict.rule.name()))
            .or_insert(0) += 1;
        self.index.push_back((journal_lsn, entry.op_lsn));
        if self.recent.len() == self.recent_max {
            self.recent.pop_front();
        }
        self.recent.push_back(entry);
    }

    /// Newest op LSN whose conflicts are recorded.
    pub fn max_op_lsn(&self) -> u64 {
        self.max_op_lsn
    }

    pub fn append(&mut self, entry: JournalEntry) -> Result<(), StoreError> {
        let payload = postcard::to_stdvec(&entry).map_err(|e| StoreError::Encode(e.to_string()))?;
        let lsn = self.log.append(&payload)?;
        self.remember(lsn, entry);
        Ok(())
    }

    /// Writes buffered entries (and fsyncs under `always`), then trims what
    /// retention no longer covers.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.log.commit()?;
        self.trim()
    }

    /// Writes buffered entries and returns their fsync to run elsewhere.
    pub fn begin_sync(&mut self) -> Result<Option<PendingSync>, StoreError> {
        let pending = self.log.begin_sync()?;
        self.trim()?;
        Ok(pending)
    }

    pub fn finish_sync(
        &mut self,
        pending: PendingSync,
        result: std::io::Result<()>,
    ) -> Result<(), StoreError> {
        self.log.finish_sync(pending, result)?;
        Ok(())
    }

    fn trim(&mut self) -> Result<(), StoreError> {
        let retained = self.index.len() as u64;
        if retained > self.retention + self.retention / 4 {
            let cut = (retained - self.retention) as usize;
            let upto = self.index[cut - 1].0;
            self.log.truncate_prefix(upto)?;
            let oldest = self.log.oldest_lsn();
            while self.index.front().is_some_and(|(l, _)| *l < oldest) {
                self.index.pop_front();
            }
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.log.sync()?;
        Ok(())
    }

    pub fn is_poisoned(&self) -> bool {
        self.log.is_poisoned()
    }

    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &JournalEntry> {
        self.recent.iter()
    }

    /// Conflicts by (type, rule): those retained when this process started
    /// plus those recorded since.
    pub fn counts(&self) -> &BTreeMap<(&'static str, &'static str), u64> {
        &self.counts
    }

    pub fn retained(&self) -> usize {
        self.index.len()
    }
}

/// A rewrite is complete once `journal.rewrite` is closed; the renames then
/// move `journal` aside and the rewrite in. A crash before the first rename
/// leaves an incomplete or complete rewrite beside the old journal (the old
/// one is still right: discard the rewrite); a crash between the renames
/// leaves only `journal.old` and a complete rewrite (finish the swap).
fn finish_interrupted_rewrite(
    dir: &Path,
    live: &Path,
    rewrite: &Path,
    old: &Path,
) -> Result<(), StoreError> {
    if !live.exists() && rewrite.exists() {
        std::fs::rename(rewrite, live).map_err(|e| io_error("renaming", rewrite, e))?;
        sync_dir(dir)?;
    }
    if rewrite.exists() {
        std::fs::remove_dir_all(rewrite).map_err(|e| io_error("removing", rewrite, e))?;
    }
    if old.exists() && live.exists() {
        std::fs::remove_dir_all(old).map_err(|e| io_error("removing", old, e))?;
    }
    Ok(())
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}
