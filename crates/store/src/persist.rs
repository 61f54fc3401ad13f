//! Durability: the op log, snapshots and recovery around a [`Db`].
//!
//! Every committed op is appended to the log (one record per op, in apply
//! order, so the log doubles as the replication stream). A snapshot is the
//! whole keyspace as of an LSN; recovery loads the newest snapshot and replays
//! the log records after it through [`Db::apply_op`], the same code that
//! applies ops from peers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::db::{NotReady, RemoteApply};
use crate::journal::{Journal, JournalEntry};
use meridian_crdt::value::{v3, v4};
use meridian_crdt::vv::SEQ_MAX;
use meridian_crdt::{Blob, Entry, Hlc, Libraries, Op, RegionId, VersionVector};
use meridian_log::{
    load_latest_snapshot, write_snapshot, FsyncPolicy, Log, LogError, LogOptions, PendingSync,
    Recovery, SnapshotInfo,
};
use serde::{Deserialize, Serialize};

use crate::db::Db;

/// Version 2: counter contributions carry their incarnation.
/// Version 3: the FUNCTION libraries follow the last key. Version 2
/// snapshots still load (with no libraries).
/// Version 5: strings carry counted fields (`meridian_crdt::Counted`).
const SNAPSHOT_FORMAT_VERSION: u32 = 5;
/// Before strings carried counted fields.
const SNAPSHOT_FORMAT_VERSION_NO_COUNTED: u32 = 4;
/// Before strings carried patches (`meridian_crdt::patch`).
const SNAPSHOT_FORMAT_VERSION_NO_PATCHES: u32 = 3;
const SNAPSHOT_FORMAT_VERSION_NO_LIBRARIES: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("log record {lsn} in {dir} cannot be decoded ({reason}); the region refuses to start rather than serve wrong data")]
    BadRecord {
        dir: PathBuf,
        lsn: u64,
        reason: String,
    },
    #[error("snapshot {lsn} in {dir} cannot be decoded ({reason}); the region refuses to start rather than serve wrong data")]
    BadSnapshot {
        dir: PathBuf,
        lsn: u64,
        reason: String,
    },
    #[error("data directory {dir} belongs to region {found:?}, not {expected:?}")]
    RegionMismatch {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("encoding an op failed: {0}")]
    Encode(String),
    #[error("{0}")]
    Io(String),
    #[error("a peer sent an op that cannot be decoded: {0}")]
    BadPeerOp(String),
    #[error(transparent)]
    NotReady(#[from] NotReady),
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub region: RegionId,
    pub fsync: FsyncPolicy,
    pub max_clock_offset_ms: u64,
    pub log: LogOptions,
    /// Conflict-journal entries kept.
    pub conflict_retention: u64,
}

impl StoreOptions {
    pub fn new(dir: impl Into<PathBuf>, region: RegionId) -> StoreOptions {
        StoreOptions {
            dir: dir.into(),
            region,
            fsync: FsyncPolicy::Everysec,
            max_clock_offset_ms: 500,
            log: LogOptions::default(),
            conflict_retention: 100_000,
        }
    }
}

/// What recovery found and how long it took.
#[derive(Debug, Clone)]
pub struct OpenReport {
    pub snapshot_lsn: Option<u64>,
    pub snapshot_keys: u64,
    pub replayed_ops: u64,
    pub log: Recovery,
    pub elapsed_ms: u128,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    version: u32,
    region: RegionId,
    seq: u64,
    vv: VersionVector,
    clock: Hlc,
    keys: u64,
}

/// A snapshot serialized under the lock, to be written to disk without it.
pub struct PreparedSnapshot {
    dir: PathBuf,
    lsn: u64,
    content: Vec<u8>,
    keys: u64,
}

impl PreparedSnapshot {
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }

    pub fn write(self) -> Result<SnapshotInfo, StoreError> {
        let content = self.content;
        Ok(write_snapshot(&self.dir, self.lsn, |w: &mut dyn Write| {
            w.write_all(&content)
        })?)
    }
}

/// Every this many log records, remember the version vector of the log
/// prefix, so a peer's resume point is found without scanning the log.
const CHECKPOINT_EVERY_RECORDS: u64 = 1024;

/// What applying one op from a peer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerApply {
    /// Applied and appended at this LSN.
    Applied {
        lsn: u64,
        clock_ahead: Option<meridian_crdt::ClockAhead>,
    },
    Duplicate,
}

/// fsyncs of the op log and the journal, prepared under the store's lock
/// and run without it ([`Store::begin_sync`]).
#[derive(Debug)]
pub struct StoreSync {
    log: Option<PendingSync>,
    journal: Option<PendingSync>,
}

/// What running a [`StoreSync`] gave.
pub struct SyncOutcome {
    log: std::io::Result<()>,
    journal: std::io::Result<()>,
}

impl StoreSync {
    pub fn is_empty(&self) -> bool {
        self.log.is_none() && self.journal.is_none()
    }

    /// Runs the fdatasyncs (blocking).
    pub fn run(&self) -> SyncOutcome {
        SyncOutcome {
            log: self.log.as_ref().map_or(Ok(()), |p| p.run()),
            journal: self.journal.as_ref().map_or(Ok(()), |p| p.run()),
        }
    }
}

/// Append times kept for replication lag: one sample per this many ms…
const APPEND_TIME_GRAIN_MS: u64 = 10;
/// …and at most this many samples (about 17 minutes of steady writes).
const APPEND_TIMES_MAX: usize = 100_000;

/// Peer states to merge ([`Store::merge_states`]): `(key, entry)` pairs as
/// the peer held them (`None`: nothing) and the peer's version vector when
/// it read them.
pub type StateBatch<'a> = (Vec<(&'a Blob, Option<&'a Entry>)>, &'a VersionVector);

pub struct Store {
    /// (lsn, wall ms) of the first record appended in each grain, oldest
    /// first: how old the oldest op a peer lacks is.
    append_times: std::collections::VecDeque<(u64, u64)>,
    fsync: FsyncPolicy,
    /// Reused to encode each committed op.
    scratch: Vec<u8>,
    db: Db,
    log: Log,
    journal: Journal,
    dir: PathBuf,
    ops_since_snapshot: u64,
    /// (lsn, version vector of the log up to and including lsn).
    checkpoints: Vec<(u64, VersionVector)>,
    /// Peers still need records from this LSN on; compaction keeps them.
    retain_from_lsn: Option<u64>,
    /// Compaction keeps at most this many records for peers
    /// (`--repl-backlog-ops`); a peer further behind repairs by anti-entropy.
    backlog_ops_max: Option<u64>,
    /// Covers every op whose effects are in the state but not in the
    /// retained log (compacted away, or merged in as state). A peer whose
    /// version vector does not dominate it cannot be served from the log.
    base_vv: VersionVector,
    /// (LSN, version vector) of the last prepared snapshot.
    prepared_vv: Option<(u64, VersionVector)>,
    epoch: u64,
    /// Covers every op on stable storage: what this region still holds
    /// after a power loss. Peers collect tombstones by it.
    durable_vv: VersionVector,
    /// (flushed LSN, version vector then) not yet known to be synced.
    unsynced_vvs: std::collections::VecDeque<(u64, VersionVector)>,
}

impl Store {
    pub fn open(opts: StoreOptions) -> Result<(Store, OpenReport), StoreError> {
        let started = Instant::now();
        std::fs::create_dir_all(&opts.dir).map_err(|e| LogError::Io {
            op: "creating the data directory",
            path: opts.dir.clone(),
            source: e,
        })?;
        let mut db = Db::new(opts.region, opts.max_clock_offset_ms);
        let mut report = OpenReport {
            snapshot_lsn: None,
            snapshot_keys: 0,
            replayed_ops: 0,
            log: Recovery {
                segments_scanned: 0,
                records: 0,
                first_lsn: None,
                last_lsn: None,
                next_lsn: 1,
                torn_tail: None,
                tmp_files_removed: 0,
            },
            elapsed_ms: 0,
        };
        if let Some((lsn, content)) = load_latest_snapshot(&opts.dir)? {
            report.snapshot_keys = load_snapshot(&mut db, &opts.dir, lsn, &content, opts.region)?;
            report.snapshot_lsn = Some(lsn);
        }
        // Records before the snapshot may still be in the log; taking the
        // snapshot's vector errs towards running anti-entropy needlessly.
        let base_vv = db.version_vector().clone();
        let mut log_opts = opts.log.clone();
        log_opts.fsync = opts.fsync;
        let (log, recovery) = Log::open(&opts.dir, log_opts)?;
        let mut journal = Journal::open(
            &opts.dir,
            opts.fsync,
            opts.conflict_retention,
            crate::db::CONFLICTS_KEPT_MAX,
            log.last_lsn(),
        )?;
        let journaled_upto = journal.max_op_lsn();
        // An op can find several conflicts, and a power loss can keep some of
        // their entries and lose the rest; the newest op's are compared one
        // by one, later ops' are all journaled again.
        let mut journaled_at_upto: Vec<meridian_crdt::Conflict> = journal
            .recent()
            .filter(|e| e.op_lsn == journaled_upto)
            .map(|e| e.conflict.clone())
            .collect();
        let mut checkpoints = Vec::new();
        let from = report
            .snapshot_lsn
            .map_or(1, |l| l + 1)
            .max(log.oldest_lsn());
        if from <= log.last_lsn() {
            let mut replayed_upto = from - 1;
            for record in log.reader(from)? {
                let (lsn, payload) = record?;
                assert!(
                    lsn == replayed_upto + 1,
                    "recovery read lsn {lsn} right after lsn {replayed_upto}"
                );
                replayed_upto = lsn;
                let op: Op = postcard::from_bytes(&payload).map_err(|e| StoreError::BadRecord {
                    dir: opts.dir.clone(),
                    lsn,
                    reason: e.to_string(),
                })?;
                db.apply_op(&op);
                for conflict in db.take_fresh_conflicts() {
                    let recorded = lsn == journaled_upto
                        && journaled_at_upto
                            .iter()
                            .position(|c| *c == conflict)
                            .map(|i| journaled_at_upto.swap_remove(i))
                            .is_some();
                    if lsn >= journaled_upto && !recorded {
                        journal.append(JournalEntry {
                            op_lsn: lsn,
                            detected_ms: op.tag.hlc.wall_ms(),
                            epoch: 0,
                            conflict,
                        })?;
                    }
                }
                if lsn % CHECKPOINT_EVERY_RECORDS == 0 {
                    checkpoints.push((lsn, db.version_vector().clone()));
                }
                report.replayed_ops += 1;
            }
            // The log was opened with everything on disk written, so its
            // reader reaches the last record.
            assert!(
                replayed_upto == log.last_lsn(),
                "recovery replayed up to lsn {replayed_upto} of a log ending at lsn {}",
                log.last_lsn()
            );
        }
        journal.flush()?;
        db.clear_conflicts();
        for entry in journal.recent() {
            db.remember_conflict(entry.conflict.clone());
        }
        report.log = recovery;
        report.elapsed_ms = started.elapsed().as_millis();
        let store = Store {
            append_times: Default::default(),
            fsync: opts.fsync,
            scratch: Vec::new(),
            db,
            log,
            journal,
            dir: opts.dir,
            ops_since_snapshot: report.replayed_ops,
            checkpoints,
            retain_from_lsn: None,
            backlog_ops_max: None,
            base_vv,
            prepared_vv: None,
            epoch: 0,
            durable_vv: VersionVector::new(),
            unsynced_vvs: Default::default(),
        };
        let mut store = store;
        let (lsn, vv) = (store.log.last_lsn(), store.db.version_vector().clone());
        store.unsynced_vvs.push_back((lsn, vv));
        store.note_synced();
        Ok((store, report))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn db_mut(&mut self) -> &mut Db {
        &mut self.db
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn is_poisoned(&self) -> bool {
        self.log.is_poisoned() || self.journal.is_poisoned()
    }

    pub fn ops_since_snapshot(&self) -> u64 {
        self.ops_since_snapshot
    }

    /// Finishes the op being built and appends it to the log buffer.
    /// Returns the op's LSN, or `None` if the command wrote nothing.
    pub fn commit(&mut self) -> Result<Option<u64>, StoreError> {
        let Some(op) = self.db.commit() else {
            return Ok(None);
        };
        // One buffer reused for every op: no allocation per write command.
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let buf = postcard::to_extend(&op, buf).map_err(|e| StoreError::Encode(e.to_string()))?;
        let lsn = self.append(&buf);
        self.scratch = buf;
        Ok(Some(lsn?))
    }

    fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        let last_lsn = self.log.last_lsn();
        let lsn = self.log.append(payload)?;
        assert!(
            lsn == last_lsn + 1 && self.log.last_lsn() == lsn,
            "appending after lsn {last_lsn} gave lsn {lsn}; lsns must go up by one"
        );
        let now_ms = self.db.now_ms();
        if self
            .append_times
            .back()
            .is_none_or(|(_, t)| now_ms >= t + APPEND_TIME_GRAIN_MS)
        {
            if self.append_times.len() == APPEND_TIMES_MAX {
                self.append_times.pop_front();
            }
            self.append_times.push_back((lsn, now_ms));
        }
        self.ops_since_snapshot += 1;
        for conflict in self.db.take_fresh_conflicts() {
            self.journal.append(JournalEntry {
                op_lsn: lsn,
                detected_ms: self.db.now_ms(),
                epoch: self.epoch,
                conflict,
            })?;
        }
        if lsn % CHECKPOINT_EVERY_RECORDS == 0 {
            if let Some((last, vv)) = self.checkpoints.last() {
                assert!(
                    *last < lsn,
                    "checkpoint at lsn {lsn} after one at lsn {last}"
                );
                debug_assert!(
                    self.db.version_vector().dominates(vv),
                    "the vector at checkpoint lsn {lsn} does not cover the one at lsn {last}"
                );
            }
            self.checkpoints
                .push((lsn, self.db.version_vector().clone()));
        }
        Ok(lsn)
    }

    /// Applies one op a peer sent, as its encoded bytes, and appends those
    /// bytes to this region's log (so it is relayed onwards and survives a
    /// restart). Ops already applied are skipped.
    pub fn apply_peer_op(&mut self, payload: &[u8], wall_ms: u64) -> Result<PeerApply, StoreError> {
        let op: Op =
            postcard::from_bytes(payload).map_err(|e| StoreError::BadPeerOp(e.to_string()))?;
        match self.db.apply_remote(&op, wall_ms)? {
            RemoteApply::Duplicate => Ok(PeerApply::Duplicate),
            RemoteApply::Applied { clock_ahead } => {
                let lsn = self.append(payload)?;
                Ok(PeerApply::Applied { lsn, clock_ahead })
            }
        }
    }

    /// Hands buffered records to the OS, and with `--fsync always` makes them
    /// durable. Call before acknowledging the writes of a batch.
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        let lsn = self.log.commit()?;
        self.journal.flush()?;
        assert!(
            lsn == self.log.last_lsn(),
            "a flush covered lsns up to {lsn} of a log whose last is {}",
            self.log.last_lsn()
        );
        let vv = self.db.version_vector();
        let known = self
            .unsynced_vvs
            .back()
            .map_or(&self.durable_vv, |(_, v)| v);
        if known != vv {
            if let Some((last, _)) = self.unsynced_vvs.back() {
                assert!(
                    *last <= lsn,
                    "flushed lsn {lsn} is behind lsn {last} flushed before"
                );
            }
            debug_assert!(
                vv.dominates(known),
                "the vector {vv:?} at lsn {lsn} does not cover {known:?} flushed before"
            );
            self.unsynced_vvs.push_back((lsn, vv.clone()));
        }
        self.note_synced();
        Ok(lsn)
    }

    /// Moves what the log has synced into [`Store::durable_vv`].
    fn note_synced(&mut self) {
        let synced = self.log.synced_lsn();
        while self
            .unsynced_vvs
            .front()
            .is_some_and(|(lsn, _)| *lsn <= synced)
        {
            if let Some((_, vv)) = self.unsynced_vvs.pop_front() {
                debug_assert!(
                    vv.dominates(&self.durable_vv),
                    "the durable vector would go back from {:?} to {vv:?}",
                    self.durable_vv
                );
                self.durable_vv = vv;
            }
        }
        debug_assert!(
            self.db.version_vector().dominates(&self.durable_vv),
            "the durable vector {:?} covers ops the region does not hold ({:?})",
            self.durable_vv,
            self.db.version_vector()
        );
    }

    /// Covers every op this region holds on stable storage (in the synced
    /// log or a snapshot): what it would still hold after a power loss.
    pub fn durable_vv(&mut self) -> &VersionVector {
        self.note_synced();
        &self.durable_vv
    }

    /// When the record after `lsn` was appended (to within
    /// `APPEND_TIME_GRAIN_MS`, never later than it was): the age of the
    /// oldest op a peer that acknowledged `lsn` lacks.
    pub fn appended_ms_after(&self, lsn: u64) -> Option<u64> {
        if lsn >= self.log.last_lsn() {
            return None;
        }
        let at = self.append_times.partition_point(|(l, _)| *l <= lsn + 1);
        match at {
            0 => self.append_times.front().map(|(_, t)| *t),
            i => Some(self.append_times[i - 1].1),
        }
    }

    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Writes buffered records to the OS and prepares their fsync, to be run
    /// with [`StoreSync::run`] after the caller released its lock, so one
    /// slow disk flush does not stall every client. Finish with
    /// [`Store::finish_sync`].
    pub fn begin_sync(&mut self) -> Result<StoreSync, StoreError> {
        Ok(StoreSync {
            log: self.log.begin_sync()?,
            journal: self.journal.begin_sync()?,
        })
    }

    /// Records what a sync run outside the lock gave; returns the synced LSN.
    pub fn finish_sync(
        &mut self,
        sync: StoreSync,
        outcome: SyncOutcome,
    ) -> Result<u64, StoreError> {
        if let Some(p) = sync.journal {
            self.journal.finish_sync(p, outcome.journal)?;
        }
        match sync.log {
            Some(p) => Ok(self.log.finish_sync(p, outcome.log)?),
            None => Ok(self.log.synced_lsn()),
        }
    }

    /// Makes everything written so far durable (the `everysec` timer).
    pub fn sync(&mut self) -> Result<u64, StoreError> {
        let lsn = self.log.sync()?;
        self.journal.sync()?;
        Ok(lsn)
    }

    /// What a power loss could take now from the op log and the journal.
    pub fn unsynced_tails(&self) -> Vec<meridian_log::UnsyncedTail> {
        vec![self.log.unsynced_tail(), self.journal.unsynced_tail()]
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The epoch that journal entries are stamped with from now on.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The first LSN a peer whose version vector is `peer` may lack: every
    /// record before it is covered by `peer`.
    pub fn resume_lsn(&self, peer: &VersionVector) -> u64 {
        let oldest = self.log.oldest_lsn();
        let at = self
            .checkpoints
            .partition_point(|(_, vv)| peer.dominates(vv));
        let from = if at == 0 {
            oldest
        } else {
            self.checkpoints[at - 1].0 + 1
        };
        from.max(oldest)
    }

    /// Peers still need records from `lsn` on (`None`: no peer constraint).
    pub fn retain_from(&mut self, lsn: Option<u64>) {
        self.retain_from_lsn = lsn;
    }

    /// Lets compaction drop records more than `ops` behind the log's end
    /// even if a peer has not acknowledged them (`None`: keep them).
    pub fn set_backlog_ops_max(&mut self, ops: Option<u64>) {
        self.backlog_ops_max = ops;
    }

    /// Covers every op whose effects the retained log cannot replay to a
    /// peer: a peer whose version vector does not dominate it needs state.
    pub fn log_base_vv(&self) -> &VersionVector {
        &self.base_vv
    }

    /// Joins a peer's state into this region's: each batch is a list of
    /// `(key, entry)` as the peer held it (`None`: nothing) together with
    /// the peer's version vector when it read them, joined in order; then
    /// the peer's libraries and version vector `their_vv` and clock (the
    /// libraries read at `their_vv`). The caller
    /// guarantees that after the batches every key reflects every op
    /// `their_vv` covers. Merged state has no op in the log, so it
    /// is made durable at once by a snapshot written under the lock: until
    /// that snapshot is on disk, no op depending on the merge is logged, and
    /// a crash before it loses the merge together with the vector it raised.
    pub fn merge_states(
        &mut self,
        batches: &[StateBatch<'_>],
        their_libraries: &Libraries,
        their_vv: &VersionVector,
        their_clock: Hlc,
    ) -> Result<SnapshotInfo, StoreError> {
        for (states, read_at) in batches {
            for (key, entry) in states {
                self.db.merge_state(key, *entry, read_at);
            }
        }
        // The peer's libraries as of `their_vv`: joined before the vector,
        // or this region would claim library ops it never took in.
        self.db.merge_libraries(their_libraries, their_vv);
        self.db.absorb_context(their_vv, their_clock);
        self.base_vv.join(their_vv);
        debug_assert!(
            self.db.version_vector().dominates(&self.base_vv),
            "the log's base vector {:?} covers ops the region does not hold",
            self.base_vv
        );
        let lsn = self.log.last_lsn();
        for conflict in self.db.take_fresh_conflicts() {
            self.journal.append(JournalEntry {
                op_lsn: lsn,
                detected_ms: self.db.now_ms(),
                epoch: self.epoch,
                conflict,
            })?;
        }
        self.snapshot()
    }

    /// Serializes the keyspace as of the last committed op. Cheap enough to
    /// do under the lock; the file is written by [`PreparedSnapshot::write`].
    ///
    /// The log is synced first: a snapshot must never cover records the log
    /// could lose in a power loss, or the region would hand their LSNs to
    /// new ops that the next recovery then skips as already in the snapshot.
    pub fn prepare_snapshot(&mut self) -> Result<PreparedSnapshot, StoreError> {
        self.sync()?;
        let lsn = self.log.last_lsn();
        assert!(
            self.log.synced_lsn() == lsn,
            "a snapshot at lsn {lsn} would cover records synced only up to lsn {}",
            self.log.synced_lsn()
        );
        assert!(
            !self.db.op_in_progress(),
            "a snapshot at lsn {lsn} would hold the effects of an op not yet committed"
        );
        let keys = self.db.keyspace().iter_all().count() as u64;
        let header = SnapshotHeader {
            version: SNAPSHOT_FORMAT_VERSION,
            region: self.db.region(),
            seq: self.db.seq(),
            vv: self.db.version_vector().clone(),
            clock: self.db.clock(),
            keys,
        };
        let mut content =
            postcard::to_stdvec(&header).map_err(|e| StoreError::Encode(e.to_string()))?;
        for (k, e) in self.db.keyspace().iter_all() {
            content = postcard::to_extend(&(k, e), content)
                .map_err(|e| StoreError::Encode(e.to_string()))?;
        }
        content = postcard::to_extend(self.db.libraries(), content)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        self.ops_since_snapshot = 0;
        self.prepared_vv = Some((lsn, self.db.version_vector().clone()));
        Ok(PreparedSnapshot {
            dir: self.dir.clone(),
            lsn,
            content,
            keys,
        })
    }

    /// Drops log segments a written snapshot covers and no peer still needs.
    pub fn snapshot_written(&mut self, lsn: u64) -> Result<usize, StoreError> {
        let mut needed = self.retain_from_lsn;
        if let (Some(n), Some(max)) = (needed.as_mut(), self.backlog_ops_max) {
            *n = (*n).max(self.log.last_lsn().saturating_sub(max) + 1);
        }
        let upto = match needed {
            Some(needed) => lsn.min(needed.saturating_sub(1)),
            None => lsn,
        };
        let removed = self.log.truncate_prefix(upto)?;
        let oldest = self.log.oldest_lsn();
        // The vector of everything before the oldest retained record, or
        // one that covers more (which only makes anti-entropy run sooner).
        let gone = oldest.saturating_sub(1);
        if gone > 0 {
            let exact_or_above = self
                .checkpoints
                .iter()
                .find(|(l, _)| *l >= gone && *l <= lsn)
                .map(|(_, vv)| vv);
            match (exact_or_above, &self.prepared_vv) {
                (Some(vv), _) => self.base_vv.join(vv),
                (None, Some((at, vv))) if *at >= gone => self.base_vv.join(vv),
                _ => self.base_vv.join(&self.db.version_vector().clone()),
            }
        }
        self.checkpoints.retain(|(l, _)| *l + 1 >= oldest);
        debug_assert!(
            self.db.version_vector().dominates(&self.base_vv),
            "the log's base vector {:?} covers ops the region does not hold",
            self.base_vv
        );
        Ok(removed)
    }

    /// Snapshot, write, and compact in one step (tests, shutdown).
    pub fn snapshot(&mut self) -> Result<SnapshotInfo, StoreError> {
        let prepared = self.prepare_snapshot()?;
        let info = prepared.write()?;
        self.snapshot_written(info.lsn)?;
        // Written under the lock: the snapshot holds the whole state,
        // merged state included.
        self.unsynced_vvs.clear();
        debug_assert!(
            self.db.version_vector().dominates(&self.durable_vv),
            "the durable vector {:?} covers ops the region does not hold",
            self.durable_vv
        );
        self.durable_vv = self.db.version_vector().clone();
        Ok(info)
    }
}

fn load_snapshot(
    db: &mut Db,
    dir: &Path,
    lsn: u64,
    content: &[u8],
    region: RegionId,
) -> Result<u64, StoreError> {
    let bad = |reason: String| StoreError::BadSnapshot {
        dir: dir.to_path_buf(),
        lsn,
        reason,
    };
    // Replay starts at the LSN after the snapshot's. No log reaches
    // u64::MAX, so only damage puts a snapshot there.
    if lsn == u64::MAX {
        return Err(bad("lsn u64::MAX leaves no lsn to replay from".into()));
    }
    let (header, mut rest): (SnapshotHeader, &[u8]) =
        postcard::take_from_bytes(content).map_err(|e| bad(e.to_string()))?;
    if ![
        SNAPSHOT_FORMAT_VERSION,
        SNAPSHOT_FORMAT_VERSION_NO_COUNTED,
        SNAPSHOT_FORMAT_VERSION_NO_PATCHES,
        SNAPSHOT_FORMAT_VERSION_NO_LIBRARIES,
    ]
    .contains(&header.version)
    {
        return Err(bad(format!("unknown format version {}", header.version)));
    }
    if header.region != region {
        return Err(StoreError::RegionMismatch {
            dir: dir.to_path_buf(),
            found: header.region.to_string(),
            expected: region.to_string(),
        });
    }
    // The count comes from the file: reserve no more keys than the content
    // could hold (each takes at least one byte), so a damaged count is
    // refused below instead of reserving memory for it.
    // A dot holds 48 bits of sequence number; a larger one in the file
    // would make this region's next write reuse a truncated dot.
    if let Some((r, seq)) = std::iter::once((header.region, header.seq))
        .chain(header.vv.iter())
        .find(|&(_, seq)| seq > SEQ_MAX)
    {
        return Err(bad(format!(
            "sequence number {seq} of region {r} exceeds the maximum {SEQ_MAX}"
        )));
    }
    // The region's next op takes the dot after those its vector holds; a
    // sequence number above them names ops no peer could ever be sent.
    if header.seq > header.vv.get(region) {
        return Err(bad(format!(
            "sequence number {} is above the {} ops of region {region} its version vector holds",
            header.seq,
            header.vv.get(region)
        )));
    }
    db.reserve(header.keys.min(rest.len() as u64) as usize);
    for _ in 0..header.keys {
        let (key, entry, next) = if header.version == SNAPSHOT_FORMAT_VERSION {
            let ((key, entry), next): ((Blob, Entry), &[u8]) =
                postcard::take_from_bytes(rest).map_err(|e| bad(e.to_string()))?;
            (key, entry, next)
        } else if header.version == SNAPSHOT_FORMAT_VERSION_NO_COUNTED {
            let ((key, entry), next): ((Blob, v4::OldEntry), &[u8]) =
                postcard::take_from_bytes(rest).map_err(|e| bad(e.to_string()))?;
            (key, Entry::from(entry), next)
        } else {
            let ((key, entry), next): ((Blob, v3::OldEntry), &[u8]) =
                postcard::take_from_bytes(rest).map_err(|e| bad(e.to_string()))?;
            (key, Entry::from(entry), next)
        };
        db.load_entry(key, entry);
        rest = next;
    }
    if header.version >= SNAPSHOT_FORMAT_VERSION_NO_PATCHES {
        let (libraries, next): (Libraries, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| bad(format!("libraries: {e}")))?;
        db.load_libraries(libraries);
        rest = next;
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} unexpected bytes after the last key",
            rest.len()
        )));
    }
    db.restore_meta(header.seq, header.vv, header.clock);
    Ok(header.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `snapshot_load` fuzz target: a snapshot whose content
    /// checksum is valid but whose header declares far more keys than the
    /// content holds made recovery reserve room for all of them up front,
    /// aborting the process instead of refusing the snapshot.
    #[test]
    fn snapshot_declaring_more_keys_than_it_holds_is_refused_without_reserving_them() {
        let region = RegionId::new("fuzz").unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_empty_snapshot(dir.path(), region, 1, u64::MAX);
        match open(dir.path(), region) {
            Err(StoreError::BadSnapshot { lsn: 1, .. }) => {}
            Err(other) => panic!("expected BadSnapshot, got {other}"),
            Ok(_) => panic!("a snapshot missing its keys loaded"),
        }
    }

    /// Found by the `snapshot_load` fuzz target: replay starts at the LSN
    /// after the snapshot's, which overflowed for a snapshot at `u64::MAX`
    /// (a panic in debug builds, replaying the whole log over the snapshot
    /// in release builds). No log reaches that LSN, so only damage puts a
    /// snapshot there.
    #[test]
    fn snapshot_at_the_last_possible_lsn_is_refused() {
        let region = RegionId::new("fuzz").unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_empty_snapshot(dir.path(), region, u64::MAX, 0);
        match open(dir.path(), region) {
            Err(StoreError::BadSnapshot { lsn: u64::MAX, .. }) => {}
            Err(other) => panic!("expected BadSnapshot, got {other}"),
            Ok(_) => panic!("a snapshot at lsn u64::MAX loaded"),
        }
    }

    /// Found by the `snapshot_load` fuzz target: a snapshot whose sequence
    /// number (or a version vector entry) lies beyond the 48 bits a dot
    /// holds loaded, and the region's next write then hit a debug assertion
    /// (in release builds: a dot truncated to one already issued).
    #[test]
    fn snapshot_with_a_sequence_number_beyond_a_dot_is_refused() {
        let region = RegionId::new("fuzz").unwrap();
        let mut beyond = VersionVector::new();
        beyond.set(region, SEQ_MAX + 1);
        for (seq, vv) in [(SEQ_MAX + 1, VersionVector::new()), (0, beyond)] {
            let dir = tempfile::tempdir().unwrap();
            let header = SnapshotHeader {
                version: SNAPSHOT_FORMAT_VERSION,
                region,
                seq,
                vv,
                clock: Hlc(0),
                keys: 0,
            };
            write_header_only(dir.path(), 1, &header);
            match open(dir.path(), region) {
                Err(StoreError::BadSnapshot { lsn: 1, .. }) => {}
                Err(other) => panic!("expected BadSnapshot, got {other}"),
                Ok(_) => panic!("a snapshot with seq {seq} loaded"),
            }
        }
    }

    /// A snapshot written before strings carried patches (format 3) loads:
    /// its strings read as they were.
    #[test]
    fn a_format_3_snapshot_loads() {
        use meridian_crdt::{NumReg, Tag};
        use serde::Serialize;

        // Format 3's encoding of a string key: the register alone, no extra.
        #[derive(Serialize)]
        enum OldValue {
            Str(NumReg<Blob>),
        }
        #[derive(Serialize)]
        struct OldEntry {
            value: OldValue,
            extra: Option<()>,
        }
        let region = RegionId::new("old").unwrap();
        let mut vv = VersionVector::new();
        vv.set(region, 1);
        let mut reg = NumReg::default();
        reg.base.push(meridian_crdt::num::Reg {
            val: Blob::from("kept"),
            tag: Tag {
                hlc: Hlc::new(5, 0),
                dot: meridian_crdt::Dot::new(region, 1),
            },
        });
        let header = SnapshotHeader {
            version: SNAPSHOT_FORMAT_VERSION_NO_PATCHES,
            region,
            seq: 1,
            vv,
            clock: Hlc::new(5, 0),
            keys: 1,
        };
        let mut content = postcard::to_stdvec(&header).unwrap();
        let entry = OldEntry {
            value: OldValue::Str(reg),
            extra: None,
        };
        content = postcard::to_extend(&(Blob::from("k"), entry), content).unwrap();
        content = postcard::to_extend(&Libraries::default(), content).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), 1, |w: &mut dyn Write| w.write_all(&content)).unwrap();
        let (mut store, _) = open(dir.path(), region).expect("a format 3 snapshot loads");
        let entry = store.db_mut().get(b"k").expect("the key is there").clone();
        match entry.value() {
            meridian_crdt::Value::Str(r) => assert_eq!(&r.render()[..], b"kept"),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// A snapshot written before strings carried counted fields (format
    /// 4) loads: its strings read as they were, bit patches included.
    #[test]
    fn a_format_4_snapshot_loads() {
        use meridian_crdt::{NumReg, Patch, Patched, Tag};
        use serde::Serialize;

        // Format 4's encoding of a string key: the register and its patches.
        #[derive(Serialize)]
        struct OldStrReg {
            reg: NumReg<Blob>,
            // The encoding of the format: a boxed list.
            #[allow(clippy::box_collection)]
            patches: Option<Box<Vec<Patched>>>,
        }
        #[derive(Serialize)]
        enum OldValue {
            Str(OldStrReg),
        }
        #[derive(Serialize)]
        struct OldEntry {
            value: OldValue,
            extra: Option<()>,
        }
        let region = RegionId::new("old").unwrap();
        let mut vv = VersionVector::new();
        vv.set(region, 2);
        let tag = |seq| Tag {
            hlc: Hlc::new(5, seq as u16),
            dot: meridian_crdt::Dot::new(region, seq),
        };
        let mut reg = NumReg::default();
        reg.base.push(meridian_crdt::num::Reg {
            val: Blob::from("\x00\x00"),
            tag: tag(1),
        });
        let patched = Patched {
            patch: Patch::Bits {
                offset: 8,
                width: 8,
                value: 0x41,
            },
            tag: tag(2),
        };
        let header = SnapshotHeader {
            version: SNAPSHOT_FORMAT_VERSION_NO_COUNTED,
            region,
            seq: 2,
            vv,
            clock: Hlc::new(5, 2),
            keys: 1,
        };
        let mut content = postcard::to_stdvec(&header).unwrap();
        let entry = OldEntry {
            value: OldValue::Str(OldStrReg {
                reg,
                patches: Some(Box::new(vec![patched])),
            }),
            extra: None,
        };
        content = postcard::to_extend(&(Blob::from("k"), entry), content).unwrap();
        content = postcard::to_extend(&Libraries::default(), content).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_snapshot(dir.path(), 1, |w: &mut dyn Write| w.write_all(&content)).unwrap();
        let (mut store, _) = open(dir.path(), region).expect("a format 4 snapshot loads");
        let entry = store.db_mut().get(b"k").expect("the key is there").clone();
        match entry.value() {
            meridian_crdt::Value::Str(r) => {
                assert_eq!(&r.render()[..], b"\x00A");
                assert_eq!(r.patch_count(), 1);
            }
            other => panic!("not a string: {other:?}"),
        }
    }

    /// A snapshot file at `lsn` whose header declares `keys` keys and
    /// which holds none.
    fn write_empty_snapshot(dir: &Path, region: RegionId, lsn: u64, keys: u64) {
        let header = SnapshotHeader {
            version: SNAPSHOT_FORMAT_VERSION,
            region,
            seq: 0,
            vv: VersionVector::new(),
            clock: Hlc(0),
            keys,
        };
        write_header_only(dir, lsn, &header);
    }

    fn write_header_only(dir: &Path, lsn: u64, header: &SnapshotHeader) {
        let content = postcard::to_stdvec(header).unwrap();
        write_snapshot(dir, lsn, |w: &mut dyn Write| w.write_all(&content)).unwrap();
    }

    fn open(dir: &Path, region: RegionId) -> Result<(Store, OpenReport), StoreError> {
        let mut opts = StoreOptions::new(dir, region);
        opts.fsync = FsyncPolicy::No;
        Store::open(opts)
    }
}
