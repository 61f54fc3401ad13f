//! The writer: open and recovery, append, group commit, segment roll, poisoning
//! and prefix truncation.
//!
//! [`Log::append`] only encodes the record into a userspace buffer, so a server can
//! append every op of a batch and then call [`Log::commit`] once: one `write` and,
//! under [`FsyncPolicy::Always`], one fdatasync for the whole batch (group commit).
//! Progress is published through three LSNs:
//!
//! - `last_lsn`: the newest LSN handed out by `append`;
//! - `flushed_lsn`: the newest LSN written to the OS; readers can see it, and it
//!   survives a process crash but not power loss;
//! - `synced_lsn`: the newest LSN known to be on stable storage.
//!
//! `synced_lsn <= flushed_lsn <= last_lsn` always holds.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::fileops;
use crate::format::{
    encode_record, is_segment_tmp_name, parse_segment_name, segment_path, RECORD_PAYLOAD_MAX_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::options::{FsyncPolicy, LogOptions};
use crate::reader::{LogReader, ReadBound};
use crate::segment::scan_segment;
use crate::LogError;

/// Once this many bytes are buffered, `append` writes them to the OS without
/// waiting for `commit`, which bounds the userspace buffer.
pub const WRITE_BUFFER_FLUSH_BYTES: usize = 1024 * 1024;

/// Progress counters shared with readers, which run on other threads.
#[derive(Debug)]
pub(crate) struct SharedProgress {
    pub flushed_lsn: AtomicU64,
    pub synced_lsn: AtomicU64,
    pub oldest_lsn: AtomicU64,
}

/// What [`Log::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files read and verified.
    pub segments_scanned: usize,
    /// Valid records found.
    pub records: u64,
    /// LSN of the oldest record found, if any.
    pub first_lsn: Option<u64>,
    /// LSN of the newest record found, if any.
    pub last_lsn: Option<u64>,
    /// The LSN the next append receives.
    pub next_lsn: u64,
    /// The torn tail that was cut off the newest segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Leftover temporary segment files (from a crash while creating a segment)
    /// that were deleted.
    pub tmp_files_removed: usize,
}

/// A torn tail removed during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was truncated.
    pub path: PathBuf,
    /// The file now ends here: just past the last valid record.
    pub offset: u64,
    /// How many bytes were cut off.
    pub bytes_truncated: u64,
    /// What was wrong with the first byte range that was cut off.
    pub reason: String,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first_lsn, self.last_lsn) {
            (Some(first), Some(last)) => write!(
                f,
                "recovered {} records (lsn {first}..={last}) from {} segments",
                self.records, self.segments_scanned
            )?,
            _ => write!(
                f,
                "recovered no records from {} segments; next lsn is {}",
                self.segments_scanned, self.next_lsn
            )?,
        }
        if let Some(torn) = &self.torn_tail {
            write!(
                f,
                "; truncated a torn tail of {} bytes at byte offset {} of `{}` ({})",
                torn.bytes_truncated,
                torn.offset,
                torn.path.display(),
                torn.reason
            )?;
        }
        if self.tmp_files_removed > 0 {
            write!(
                f,
                "; removed {} leftover temporary segment files",
                self.tmp_files_removed
            )?;
        }
        Ok(())
    }
}

/// The part of a log file written to the OS but not yet synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsyncedTail {
    pub path: PathBuf,
    /// Length the file keeps whatever happens to the machine.
    pub synced_bytes: u64,
    /// Length the file has now.
    pub written_bytes: u64,
}

impl UnsyncedTail {
    /// Cuts the file as a power loss would: it keeps its synced part and,
    /// of the rest, only the first `kept_bytes` (what the OS happened to
    /// write back, possibly ending inside a record). Run on a log that is
    /// not open.
    pub fn lose_power(&self, kept_bytes: u64) -> io::Result<()> {
        let len = self.synced_bytes + kept_bytes.min(self.written_bytes - self.synced_bytes);
        let file = OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(len)?;
        file.sync_all()
    }
}

/// An fdatasync prepared by [`Log::begin_sync`], run without the log.
#[derive(Debug)]
pub struct PendingSync {
    file: File,
    path: PathBuf,
    lsn: u64,
    /// Bytes of the file the sync makes durable.
    bytes: u64,
    faults: crate::options::FaultInjector,
}

impl PendingSync {
    /// The LSN up to which records are durable once this has run.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Runs the fdatasync (blocking).
    pub fn run(&self) -> io::Result<()> {
        fileops::sync_data(&self.faults, &self.file)
    }
}

/// The region's durable op log: a directory of segment files with one writer.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    opts: LogOptions,
    /// First LSN of every retained segment, oldest first. The last one is active.
    segments: VecDeque<u64>,
    active: File,
    active_path: PathBuf,
    /// Records in the active segment, including buffered ones.
    active_records: u64,
    /// Bytes of the active segment already handed to the OS, header included.
    active_written_bytes: u64,
    /// Bytes of the active segment known to be on disk (fdatasynced); the
    /// rest could vanish in a power loss. Sealed segments are synced whole.
    active_synced_bytes: u64,
    buffer: Vec<u8>,
    next_lsn: u64,
    flushed_lsn: u64,
    synced_lsn: u64,
    shared: Arc<SharedProgress>,
    poisoned: Option<String>,
}

impl Log {
    /// Opens the log in `dir`, creating the directory and a first segment if
    /// needed, and verifies every record on disk.
    ///
    /// A torn tail in the newest segment is cut off (and reported in
    /// [`Recovery::torn_tail`]); any other damage is [`LogError::Corrupt`].
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, Recovery), LogError> {
        opts.validate()?;
        fs::create_dir_all(dir).map_err(|e| LogError::io("creating directory", dir, e))?;
        let (mut firsts, tmp_files_removed) = list_segments(dir)?;
        firsts.sort_unstable();

        let Some(&active_first) = firsts.last() else {
            let active = fileops::create_segment(&opts.faults, dir, 1)?;
            let segments = VecDeque::from([1]);
            let log = Log::assemble(dir, opts, segments, active, 1, 0, SEGMENT_HEADER_BYTES);
            let recovery = Recovery {
                segments_scanned: 0,
                records: 0,
                first_lsn: None,
                last_lsn: None,
                next_lsn: 1,
                torn_tail: None,
                tmp_files_removed,
            };
            return Ok((log, recovery));
        };

        let mut records_total = 0u64;
        let mut next_lsn = firsts[0];
        let mut torn_tail = None;
        let mut active_records = 0;
        let mut active_valid_end_bytes = SEGMENT_HEADER_BYTES;
        for (index, &first_lsn) in firsts.iter().enumerate() {
            let path = segment_path(dir, first_lsn);
            if first_lsn != next_lsn {
                return Err(LogError::corrupt(
                    path,
                    12,
                    segment_gap_reason(dir, firsts[index - 1], first_lsn, next_lsn),
                ));
            }
            let is_newest = index + 1 == firsts.len();
            let scan = scan_segment(&path, first_lsn, is_newest)?;
            records_total += scan.records;
            next_lsn = first_lsn + scan.records;
            active_records = scan.records;
            active_valid_end_bytes = scan.valid_end_bytes;
            if let Some(reason) = scan.torn_reason {
                torn_tail = Some(TornTail {
                    path,
                    offset: scan.valid_end_bytes,
                    bytes_truncated: scan.file_len_bytes - scan.valid_end_bytes,
                    reason,
                });
            }
        }

        let active_path = segment_path(dir, active_first);
        let active = OpenOptions::new()
            .append(true)
            .open(&active_path)
            .map_err(|e| LogError::io("opening segment for append", &active_path, e))?;
        if torn_tail.is_some() {
            active
                .set_len(active_valid_end_bytes)
                .map_err(|e| LogError::io("truncating the torn tail of", &active_path, e))?;
        }
        // Records that a crashed process had written but not synced may still sit
        // only in the page cache; one fsync makes `synced_lsn` true from the start.
        opts.faults
            .check_fsync()
            .and_then(|()| active.sync_all())
            .map_err(|e| LogError::io("syncing", &active_path, e))?;

        let first_lsn = firsts[0];
        let segments_scanned = firsts.len();
        let log = Log::assemble(
            dir,
            opts,
            firsts.into_iter().collect(),
            active,
            next_lsn,
            active_records,
            active_valid_end_bytes,
        );
        let recovery = Recovery {
            segments_scanned,
            records: records_total,
            first_lsn: (records_total > 0).then_some(first_lsn),
            last_lsn: (records_total > 0).then_some(next_lsn - 1),
            next_lsn,
            torn_tail,
            tmp_files_removed,
        };
        Ok((log, recovery))
    }

    /// Builds a log whose records up to `next_lsn - 1` are all on disk.
    fn assemble(
        dir: &Path,
        opts: LogOptions,
        segments: VecDeque<u64>,
        active: File,
        next_lsn: u64,
        active_records: u64,
        active_written_bytes: u64,
    ) -> Log {
        let oldest = segments.front().copied().unwrap_or(next_lsn);
        let active_first = segments.back().copied().unwrap_or(next_lsn);
        let durable_lsn = next_lsn - 1;
        Log {
            dir: dir.to_path_buf(),
            active_path: segment_path(dir, active_first),
            opts,
            segments,
            active,
            active_records,
            active_written_bytes,
            active_synced_bytes: active_written_bytes,
            buffer: Vec::with_capacity(WRITE_BUFFER_FLUSH_BYTES),
            next_lsn,
            flushed_lsn: durable_lsn,
            synced_lsn: durable_lsn,
            shared: Arc::new(SharedProgress {
                flushed_lsn: AtomicU64::new(durable_lsn),
                synced_lsn: AtomicU64::new(durable_lsn),
                oldest_lsn: AtomicU64::new(oldest),
            }),
            poisoned: None,
        }
        .checked()
    }

    /// Asserts the progress invariants and hands the log back.
    fn checked(self) -> Log {
        self.assert_progress();
        self
    }

    /// `synced_lsn <= flushed_lsn <= last_lsn`, the published copies equal
    /// the writer's, and the active segment's records end just before
    /// `next_lsn` (segment numbering continues across rolls). Cheap: run
    /// after every change of progress.
    fn assert_progress(&self) {
        assert!(
            self.synced_lsn <= self.flushed_lsn && self.flushed_lsn <= self.last_lsn(),
            "log progress out of order: synced lsn {} flushed lsn {} last lsn {}",
            self.synced_lsn,
            self.flushed_lsn,
            self.last_lsn()
        );
        assert!(
            self.shared.flushed_lsn.load(Ordering::Relaxed) == self.flushed_lsn
                && self.shared.synced_lsn.load(Ordering::Relaxed) == self.synced_lsn,
            "readers were told flushed lsn {} and synced lsn {}, the writer has {} and {}",
            self.shared.flushed_lsn.load(Ordering::Relaxed),
            self.shared.synced_lsn.load(Ordering::Relaxed),
            self.flushed_lsn,
            self.synced_lsn
        );
        let active_first = self.segments.back().copied().unwrap_or(self.next_lsn);
        assert!(
            active_first + self.active_records == self.next_lsn,
            "the active segment starts at lsn {active_first} and holds {} records, \
             but the next lsn is {}",
            self.active_records,
            self.next_lsn
        );
        assert!(
            self.active_synced_bytes <= self.active_written_bytes,
            "the active segment has {} bytes synced of {} written",
            self.active_synced_bytes,
            self.active_written_bytes
        );
        debug_assert!(
            self.segments
                .iter()
                .zip(self.segments.iter().skip(1))
                .all(|(a, b)| a < b),
            "segments out of order: {:?}",
            self.segments
        );
    }

    /// A poisoned log never writes again: every public entry point refuses
    /// first, so reaching a write while poisoned is a bug in that check.
    fn assert_not_poisoned(&self, what: &str) {
        if let Some(cause) = &self.poisoned {
            panic!("{what} a log poisoned by: {cause}");
        }
    }

    /// Buffers one record and returns its LSN. The record reaches the OS at the
    /// next [`Log::commit`] or [`Log::sync`], or earlier once
    /// [`WRITE_BUFFER_FLUSH_BYTES`] are buffered. May seal the active segment and
    /// start a new one first.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        self.check_poisoned()?;
        if payload.len() > RECORD_PAYLOAD_MAX_BYTES as usize {
            return Err(LogError::RecordTooLarge {
                len_bytes: payload.len() as u64,
                max_bytes: u64::from(RECORD_PAYLOAD_MAX_BYTES),
            });
        }
        let active_bytes = self.active_written_bytes + self.buffer.len() as u64;
        if self.active_records > 0 && active_bytes >= self.opts.segment_max_bytes {
            self.roll()?;
        }
        self.assert_not_poisoned("appending to");
        let lsn = self.next_lsn;
        let at = self.buffer.len();
        encode_record(&mut self.buffer, lsn, payload);
        // The pair of the reader's check: the frame just encoded carries
        // this lsn and length.
        debug_assert!(
            {
                let frame = crate::format::FrameHeader::decode(
                    self.buffer[at..at + crate::format::FRAME_HEADER_BYTES]
                        .try_into()
                        .expect("a whole frame header"),
                );
                frame.lsn == lsn && frame.payload_len as usize == payload.len()
            },
            "the record encoded for lsn {lsn} does not read back as lsn {lsn} with {} bytes",
            payload.len()
        );
        self.next_lsn += 1;
        self.active_records += 1;
        if self.buffer.len() >= WRITE_BUFFER_FLUSH_BYTES {
            self.flush_buffer()?;
        }
        self.assert_progress();
        Ok(lsn)
    }

    /// Writes buffered records to the OS and, under [`FsyncPolicy::Always`],
    /// fdatasyncs. Returns the LSN up to which records are now durable
    /// (`Always`) or handed to the OS (`Everysec`, `No`); every record appended
    /// before the call is covered, so all of them may be acknowledged.
    pub fn commit(&mut self) -> Result<u64, LogError> {
        self.check_poisoned()?;
        self.flush_buffer()?;
        match self.opts.fsync {
            FsyncPolicy::Always => {
                self.sync_active()?;
                Ok(self.synced_lsn)
            }
            FsyncPolicy::Everysec | FsyncPolicy::No => Ok(self.flushed_lsn),
        }
    }

    /// Writes buffered records and fdatasyncs, whatever the policy. The server
    /// calls this once a second under [`FsyncPolicy::Everysec`]. Returns
    /// `synced_lsn`.
    pub fn sync(&mut self) -> Result<u64, LogError> {
        self.check_poisoned()?;
        self.flush_buffer()?;
        self.sync_active()?;
        Ok(self.synced_lsn)
    }

    /// Writes buffered records to the OS and returns a handle that fdatasyncs
    /// them without borrowing the log, so the caller can release whatever
    /// lock guards the log while the disk works; `None` when everything is
    /// already synced. Report the outcome with [`Log::finish_sync`].
    pub fn begin_sync(&mut self) -> Result<Option<PendingSync>, LogError> {
        self.check_poisoned()?;
        self.flush_buffer()?;
        if self.synced_lsn == self.flushed_lsn {
            return Ok(None);
        }
        let file = match self.active.try_clone() {
            Ok(f) => f,
            Err(e) => {
                let err = LogError::io("duplicating the handle of", &self.active_path, e);
                return Err(self.poison(err));
            }
        };
        Ok(Some(PendingSync {
            file,
            path: self.active_path.clone(),
            lsn: self.flushed_lsn,
            bytes: self.active_written_bytes,
            faults: self.opts.faults.clone(),
        }))
    }

    /// Records the outcome of [`PendingSync::run`]: on success the records it
    /// covered count as synced; a failure poisons the log like any fsync error.
    pub fn finish_sync(
        &mut self,
        pending: PendingSync,
        result: io::Result<()>,
    ) -> Result<u64, LogError> {
        self.check_poisoned()?;
        if let Err(e) = result {
            let err = LogError::io("syncing", &pending.path, e);
            return Err(self.poison(err));
        }
        assert!(
            pending.lsn <= self.flushed_lsn,
            "a sync prepared for lsn {} finished beyond the flushed lsn {}",
            pending.lsn,
            self.flushed_lsn
        );
        // A roll may have synced further meanwhile; never move backwards.
        if pending.path == self.active_path {
            self.active_synced_bytes = self.active_synced_bytes.max(pending.bytes);
        }
        if pending.lsn > self.synced_lsn {
            self.synced_lsn = pending.lsn;
            self.shared
                .synced_lsn
                .store(self.synced_lsn, Ordering::Release);
        }
        self.assert_progress();
        Ok(self.synced_lsn)
    }

    /// Syncs and closes the log, reporting any error that dropping would hide.
    pub fn close(mut self) -> Result<u64, LogError> {
        self.sync()
    }

    /// Removes every sealed segment all of whose records have an LSN of at most
    /// `upto_lsn`, oldest first. The active segment is never removed. Returns the
    /// number of segments removed.
    ///
    /// Each removal is made durable (directory fsync) before the next, so a crash
    /// can never leave a hole in the middle of the log.
    pub fn truncate_prefix(&mut self, upto_lsn: u64) -> Result<usize, LogError> {
        self.check_poisoned()?;
        let oldest_before = self.oldest_lsn();
        let mut removed = 0;
        while self.segments.len() > 1 {
            let oldest_first = self.segments[0];
            let next_first = self.segments[1];
            if next_first - 1 > upto_lsn {
                break;
            }
            // Publish the new oldest LSN before the file disappears, so a reader that
            // finds it missing reports compaction rather than corruption.
            self.shared.oldest_lsn.store(next_first, Ordering::Release);
            let path = segment_path(&self.dir, oldest_first);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.shared
                        .oldest_lsn
                        .store(oldest_first, Ordering::Release);
                    return Err(LogError::io("removing", path, e));
                }
            }
            self.segments.pop_front();
            removed += 1;
            if let Err(e) = fileops::sync_dir(&self.opts.faults, &self.dir) {
                let err = LogError::io("syncing directory", &self.dir, e);
                return Err(self.poison(err));
            }
        }
        assert!(
            !self.segments.is_empty() && self.oldest_lsn() >= oldest_before,
            "truncating up to lsn {upto_lsn} left {} segments, oldest lsn {} (was {oldest_before})",
            self.segments.len(),
            self.oldest_lsn()
        );
        assert!(
            removed == 0 || self.oldest_lsn() <= upto_lsn.saturating_add(1),
            "truncating up to lsn {upto_lsn} removed records after it (oldest lsn now {})",
            self.oldest_lsn()
        );
        Ok(removed)
    }

    /// A reader over records with LSN `from_lsn` and up that have been written to
    /// the OS (see [`Log::flushed_lsn`]). `from_lsn` 0 means 1.
    pub fn reader(&self, from_lsn: u64) -> Result<LogReader, LogError> {
        self.reader_bounded(from_lsn, ReadBound::Flushed)
    }

    /// Like [`Log::reader`], with a choice of how far the reader may read.
    pub fn reader_bounded(&self, from_lsn: u64, bound: ReadBound) -> Result<LogReader, LogError> {
        self.check_poisoned()?;
        let from_lsn = from_lsn.max(1);
        let oldest = self.oldest_lsn();
        if from_lsn < oldest {
            return Err(LogError::Compacted {
                requested: from_lsn,
                oldest,
            });
        }
        if from_lsn > self.next_lsn {
            return Err(LogError::BeyondEnd {
                requested: from_lsn,
                next_lsn: self.next_lsn,
            });
        }
        let start_segment = self
            .segments
            .iter()
            .rev()
            .find(|&&first| first <= from_lsn)
            .copied()
            .unwrap_or(oldest);
        LogReader::open(
            &self.dir,
            start_segment,
            from_lsn,
            Arc::clone(&self.shared),
            bound,
        )
    }

    /// The newest LSN handed out by [`Log::append`]; 0 if none ever was.
    pub fn last_lsn(&self) -> u64 {
        self.next_lsn - 1
    }

    /// The newest LSN written to the OS (visible to readers, lost on power loss
    /// unless also synced).
    pub fn flushed_lsn(&self) -> u64 {
        self.flushed_lsn
    }

    /// The newest LSN known to be on stable storage.
    pub fn synced_lsn(&self) -> u64 {
        self.synced_lsn
    }

    /// The LSN of the oldest retained record, or the next LSN to be assigned if
    /// the log holds no records.
    pub fn oldest_lsn(&self) -> u64 {
        self.segments.front().copied().unwrap_or(self.next_lsn)
    }

    /// Number of segment files, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What a power loss could take now: the active segment's bytes past the
    /// last fdatasync. Used by the simulator to model losing what the OS had
    /// not yet written to disk.
    pub fn unsynced_tail(&self) -> UnsyncedTail {
        UnsyncedTail {
            path: self.active_path.clone(),
            synced_bytes: self.active_synced_bytes,
            written_bytes: self.active_written_bytes,
        }
    }

    /// Whether an earlier I/O failure poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn check_poisoned(&self) -> Result<(), LogError> {
        match &self.poisoned {
            Some(cause) => Err(LogError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, err: LogError) -> LogError {
        self.poisoned = Some(err.to_string());
        err
    }

    fn flush_buffer(&mut self) -> Result<(), LogError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.assert_not_poisoned("writing to");
        let flushed_before = self.flushed_lsn;
        if let Err(e) = fileops::write_all(&self.opts.faults, &mut self.active, &self.buffer) {
            let err = LogError::io("writing to", &self.active_path, e);
            return Err(self.poison(err));
        }
        self.active_written_bytes += self.buffer.len() as u64;
        self.flushed_lsn = self.next_lsn - 1;
        self.shared
            .flushed_lsn
            .store(self.flushed_lsn, Ordering::Release);
        self.buffer.clear();
        assert!(
            self.flushed_lsn > flushed_before,
            "writing buffered records moved the flushed lsn from {flushed_before} to {}",
            self.flushed_lsn
        );
        if self.buffer.capacity() > 2 * WRITE_BUFFER_FLUSH_BYTES {
            self.buffer.shrink_to(WRITE_BUFFER_FLUSH_BYTES);
        }
        self.assert_progress();
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), LogError> {
        if self.synced_lsn == self.flushed_lsn {
            return Ok(());
        }
        self.assert_not_poisoned("syncing");
        assert!(
            self.buffer.is_empty(),
            "syncing with {} bytes still buffered: they would count as synced",
            self.buffer.len()
        );
        if let Err(e) = fileops::sync_data(&self.opts.faults, &self.active) {
            let err = LogError::io("syncing", &self.active_path, e);
            return Err(self.poison(err));
        }
        self.synced_lsn = self.flushed_lsn;
        self.active_synced_bytes = self.active_written_bytes;
        self.shared
            .synced_lsn
            .store(self.synced_lsn, Ordering::Release);
        self.assert_progress();
        Ok(())
    }

    /// Seals the active segment (write, fdatasync) and starts a new one whose
    /// first record will be `next_lsn`.
    fn roll(&mut self) -> Result<(), LogError> {
        self.flush_buffer()?;
        self.sync_active()?;
        assert!(
            self.synced_lsn == self.last_lsn(),
            "sealing a segment synced only up to lsn {} of {}",
            self.synced_lsn,
            self.last_lsn()
        );
        self.assert_not_poisoned("starting a segment in");
        let first_lsn = self.next_lsn;
        let active = match fileops::create_segment(&self.opts.faults, &self.dir, first_lsn) {
            Ok(file) => file,
            Err(err) => return Err(self.poison(err)),
        };
        self.active = active;
        self.active_path = segment_path(&self.dir, first_lsn);
        self.active_records = 0;
        self.active_written_bytes = SEGMENT_HEADER_BYTES;
        self.active_synced_bytes = SEGMENT_HEADER_BYTES;
        self.segments.push_back(first_lsn);
        self.assert_progress();
        Ok(())
    }
}

impl Drop for Log {
    /// Hands buffered records to the OS, best effort and without fsync. Call
    /// [`Log::close`] to learn about errors.
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            let _ = self.flush_buffer();
        }
    }
}

/// Explains why the segment starting at `first_lsn` does not continue the one
/// starting at `previous_first`, which ends just before `expected_lsn`.
fn segment_gap_reason(
    dir: &Path,
    previous_first: u64,
    first_lsn: u64,
    expected_lsn: u64,
) -> String {
    let previous = segment_path(dir, previous_first);
    if first_lsn > expected_lsn {
        format!(
            "segment starts at lsn {first_lsn} but the previous segment `{}` ends at lsn {}, \
             so lsns {expected_lsn}..={} are missing",
            previous.display(),
            expected_lsn - 1,
            first_lsn - 1
        )
    } else {
        format!(
            "segment starts at lsn {first_lsn} but the previous segment `{}` already holds \
             lsns up to {}",
            previous.display(),
            expected_lsn - 1
        )
    }
}

/// Lists the segment files in `dir` and deletes leftover temporary ones.
fn list_segments(dir: &Path) -> Result<(Vec<u64>, usize), LogError> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("listing", dir, e))?;
    let mut firsts = Vec::new();
    let mut tmp_files_removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(first_lsn) = parse_segment_name(name) {
            firsts.push(first_lsn);
        } else if is_segment_tmp_name(name) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| LogError::io("removing", &path, e))?;
            tmp_files_removed += 1;
        }
    }
    Ok((firsts, tmp_files_removed))
}
