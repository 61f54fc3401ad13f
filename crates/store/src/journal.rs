//! The conflict journal: every value a merge rule hid, kept durably.
//!
//! Each entry names the op-log LSN of the op whose apply found it. Recovery
//! replays ops after the snapshot; conflicts of ops at or below the journal's
//! newest LSN are already recorded and are not written twice, so the journal
//! holds each conflict once per region however often the region restarts.
//! It is bounded by a retention count: old segments are dropped whole.

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
    pub fn open(
        dir: &Path,
        fsync: FsyncPolicy,
        retention: u64,
        recent_max: usize,
    ) -> Result<Journal, StoreError> {
        let opts = LogOptions {
            segment_max_bytes: JOURNAL_SEGMENT_BYTES,
            fsync,
            ..LogOptions::default()
        };
        let (log, _) = Log::open(&dir.join("journal"), opts)?;
        let mut journal = Journal {
            log,
            retention: retention.max(1),
            recent: VecDeque::new(),
            recent_max,
            index: VecDeque::new(),
            max_op_lsn: 0,
            counts: BTreeMap::new(),
        };
        if journal.log.last_lsn() >= journal.log.oldest_lsn() {
            for record in journal.log.reader(journal.log.oldest_lsn())? {
                let (lsn, payload) = record?;
                let entry: JournalEntry =
                    postcard::from_bytes(&payload).map_err(|e| StoreError::BadRecord {
                        dir: dir.join("journal"),
                        lsn,
                        reason: e.to_string(),
                    })?;
                journal.remember(lsn, entry);
            }
        }
        Ok(journal)
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
