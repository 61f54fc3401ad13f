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

use meridian_crdt::{Blob, Entry, Hlc, Op, RegionId, VersionVector};
use meridian_log::{
    load_latest_snapshot, write_snapshot, FsyncPolicy, Log, LogError, LogOptions, Recovery,
    SnapshotInfo,
};
use serde::{Deserialize, Serialize};

use crate::db::Db;

const SNAPSHOT_FORMAT_VERSION: u32 = 1;

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
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub region: RegionId,
    pub fsync: FsyncPolicy,
    pub max_clock_offset_ms: u64,
    pub log: LogOptions,
}

impl StoreOptions {
    pub fn new(dir: impl Into<PathBuf>, region: RegionId) -> StoreOptions {
        StoreOptions {
            dir: dir.into(),
            region,
            fsync: FsyncPolicy::Everysec,
            max_clock_offset_ms: 500,
            log: LogOptions::default(),
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

pub struct Store {
    db: Db,
    log: Log,
    dir: PathBuf,
    ops_since_snapshot: u64,
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
        let mut log_opts = opts.log.clone();
        log_opts.fsync = opts.fsync;
        let (log, recovery) = Log::open(&opts.dir, log_opts)?;
        let from = report
            .snapshot_lsn
            .map_or(1, |l| l + 1)
            .max(log.oldest_lsn());
        if from <= log.last_lsn() {
            for record in log.reader(from)? {
                let (lsn, payload) = record?;
                let op: Op = postcard::from_bytes(&payload).map_err(|e| StoreError::BadRecord {
                    dir: opts.dir.clone(),
                    lsn,
                    reason: e.to_string(),
                })?;
                db.apply_op(&op);
                report.replayed_ops += 1;
            }
        }
        report.log = recovery;
        report.elapsed_ms = started.elapsed().as_millis();
        let store = Store {
            db,
            log,
            dir: opts.dir,
            ops_since_snapshot: report.replayed_ops,
        };
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
        self.log.is_poisoned()
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
        let payload = postcard::to_stdvec(&op).map_err(|e| StoreError::Encode(e.to_string()))?;
        let lsn = self.log.append(&payload)?;
        self.ops_since_snapshot += 1;
        Ok(Some(lsn))
    }

    /// Hands buffered records to the OS, and with `--fsync always` makes them
    /// durable. Call before acknowledging the writes of a batch.
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        Ok(self.log.commit()?)
    }

    /// Makes everything written so far durable (the `everysec` timer).
    pub fn sync(&mut self) -> Result<u64, StoreError> {
        Ok(self.log.sync()?)
    }

    /// Serializes the keyspace as of the last committed op. Cheap enough to
    /// do under the lock; the file is written by [`PreparedSnapshot::write`].
    pub fn prepare_snapshot(&mut self) -> Result<PreparedSnapshot, StoreError> {
        self.flush()?;
        let lsn = self.log.last_lsn();
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
        self.ops_since_snapshot = 0;
        Ok(PreparedSnapshot {
            dir: self.dir.clone(),
            lsn,
            content,
            keys,
        })
    }

    /// Drops log segments a written snapshot covers.
    pub fn snapshot_written(&mut self, lsn: u64) -> Result<usize, StoreError> {
        Ok(self.log.truncate_prefix(lsn)?)
    }

    /// Snapshot, write, and compact in one step (tests, shutdown).
    pub fn snapshot(&mut self) -> Result<SnapshotInfo, StoreError> {
        let prepared = self.prepare_snapshot()?;
        let info = prepared.write()?;
        self.snapshot_written(info.lsn)?;
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
    let (header, mut rest): (SnapshotHeader, &[u8]) =
        postcard::take_from_bytes(content).map_err(|e| bad(e.to_string()))?;
    if header.version != SNAPSHOT_FORMAT_VERSION {
        return Err(bad(format!("unknown format version {}", header.version)));
    }
    if header.region != region {
        return Err(StoreError::RegionMismatch {
            dir: dir.to_path_buf(),
            found: header.region.to_string(),
            expected: region.to_string(),
        });
    }
    db.reserve(header.keys as usize);
    for _ in 0..header.keys {
        let ((key, entry), next): ((Blob, Entry), &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| bad(e.to_string()))?;
        db.load_entry(key, entry);
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
