//! Reading records back, independently of the writer.
//!
//! A [`LogReader`] opens the segment files itself and only shares three atomic
//! counters with the [`crate::Log`], so a replication sender can stream on its own
//! thread while the writer keeps appending. It never reads past the bound the
//! writer has published, so it never sees a half-written record, and it moves to
//! the next segment by name (`seg-{lsn}.log` for the LSN it needs next), which
//! works for segments created after the reader was.
//!
//! The default bound is the flushed LSN: records written to the OS but perhaps not
//! yet synced. If the process crashes, such records survive; on power loss they
//! may not, and after restart the same LSNs are handed out again for new records.
//! A sender that must never ship a record that could later be replaced uses
//! [`ReadBound::Synced`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::format::{
    record_crc, segment_path, FrameHeader, FRAME_HEADER_BYTES, RECORD_PAYLOAD_MAX_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::log::SharedProgress;
use crate::segment::read_segment_header;
use crate::LogError;

/// Read buffer of one reader. Readers are long-lived and there may be one per
/// peer, so this is smaller than the recovery buffer.
const READER_BUFFER_BYTES: usize = 256 * 1024;

/// How far a [`LogReader`] may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadBound {
    /// Records written to the OS ([`crate::Log::flushed_lsn`]).
    #[default]
    Flushed,
    /// Records on stable storage ([`crate::Log::synced_lsn`]).
    Synced,
}

/// An iterator over `(lsn, payload)` in LSN order, starting at the LSN it was
/// created for.
///
/// `next` returning `None` means the reader has caught up with the writer, not
/// that the log ended for good: calling `next` again after the writer commits
/// more records yields them. After an error the reader yields nothing more.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    shared: Arc<SharedProgress>,
    bound: ReadBound,
    /// The first LSN to yield; records before it are skipped without a checksum.
    from_lsn: u64,
    /// The LSN of the record at the current position.
    pos_lsn: u64,
    segment: OpenSegment,
    failed: bool,
    /// The LSN of the last record yielded, to check that the next one
    /// follows it.
    yielded_lsn: Option<u64>,
}

#[derive(Debug)]
struct OpenSegment {
    reader: BufReader<File>,
    path: PathBuf,
    offset: u64,
}

impl OpenSegment {
    fn open(dir: &Path, first_lsn: u64) -> Result<Self, (io::ErrorKind, LogError)> {
        let path = segment_path(dir, first_lsn);
        let file =
            File::open(&path).map_err(|e| (e.kind(), LogError::io("opening", path.clone(), e)))?;
        let len = file
            .metadata()
            .map_err(|e| {
                (
                    e.kind(),
                    LogError::io("reading metadata of", path.clone(), e),
                )
            })?
            .len();
        let mut reader = BufReader::with_capacity(READER_BUFFER_BYTES, file);
        read_segment_header(&mut reader, &path, first_lsn, len)
            .map_err(|e| (io::ErrorKind::Other, e))?;
        Ok(OpenSegment {
            reader,
            path,
            offset: SEGMENT_HEADER_BYTES,
        })
    }
}

impl LogReader {
    pub(crate) fn open(
        dir: &Path,
        segment_first_lsn: u64,
        from_lsn: u64,
        shared: Arc<SharedProgress>,
        bound: ReadBound,
    ) -> Result<Self, LogError> {
        let segment = OpenSegment::open(dir, segment_first_lsn).map_err(|(_, e)| e)?;
        Ok(LogReader {
            dir: dir.to_path_buf(),
            shared,
            bound,
            from_lsn,
            pos_lsn: segment_first_lsn,
            segment,
            failed: false,
            yielded_lsn: None,
        })
    }

    /// The LSN of the next record this reader will yield.
    pub fn next_lsn(&self) -> u64 {
        self.pos_lsn.max(self.from_lsn)
    }

    fn bound_lsn(&self) -> u64 {
        match self.bound {
            ReadBound::Flushed => self.shared.flushed_lsn.load(Ordering::Acquire),
            ReadBound::Synced => self.shared.synced_lsn.load(Ordering::Acquire),
        }
    }

    fn advance(&mut self) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        loop {
            if self.pos_lsn > self.bound_lsn() {
                return Ok(None);
            }
            // The record at pos_lsn is complete on disk. If the current segment has
            // no more bytes, it was sealed and the record starts the next segment.
            let at_end = self
                .segment
                .reader
                .fill_buf()
                .map_err(|e| LogError::io("reading", self.segment.path.clone(), e))?
                .is_empty();
            if at_end {
                self.open_next_segment()?;
                continue;
            }
            let frame = self.read_frame_header()?;
            let payload_len = frame.payload_len as usize;
            if self.pos_lsn < self.from_lsn {
                self.segment
                    .reader
                    .seek_relative(i64::from(frame.payload_len))
                    .map_err(|e| LogError::io("seeking in", self.segment.path.clone(), e))?;
                self.finish_record(frame);
                continue;
            }
            let mut payload = vec![0u8; payload_len];
            self.segment
                .reader
                .read_exact(&mut payload)
                .map_err(|e| self.read_error(e, "record payload"))?;
            let computed = record_crc(frame.lsn, &payload);
            if computed != frame.crc {
                return Err(LogError::corrupt(
                    self.segment.path.clone(),
                    self.segment.offset,
                    format!(
                        "checksum mismatch in the record for lsn {} (stored {:#010x}, computed {computed:#010x})",
                        frame.lsn, frame.crc
                    ),
                ));
            }
            let lsn = frame.lsn;
            self.finish_record(frame);
            return Ok(Some((lsn, payload)));
        }
    }

    fn read_frame_header(&mut self) -> Result<FrameHeader, LogError> {
        let mut head = [0u8; FRAME_HEADER_BYTES];
        self.segment
            .reader
            .read_exact(&mut head)
            .map_err(|e| self.read_error(e, "record header"))?;
        let frame = FrameHeader::decode(&head);
        if frame.payload_len > RECORD_PAYLOAD_MAX_BYTES {
            return Err(LogError::corrupt(
                self.segment.path.clone(),
                self.segment.offset,
                format!(
                    "record length {} exceeds the maximum of {RECORD_PAYLOAD_MAX_BYTES} bytes",
                    frame.payload_len
                ),
            ));
        }
        if frame.lsn != self.pos_lsn {
            return Err(LogError::corrupt(
                self.segment.path.clone(),
                self.segment.offset,
                format!(
                    "record carries lsn {} where lsn {} was expected",
                    frame.lsn, self.pos_lsn
                ),
            ));
        }
        Ok(frame)
    }

    fn finish_record(&mut self, frame: FrameHeader) {
        self.segment.offset += frame.frame_bytes();
        self.pos_lsn += 1;
    }

    /// A record below the published bound must be complete, so running out of
    /// bytes inside one means the file was damaged or cut after it was written.
    fn read_error(&self, err: io::Error, what: &str) -> LogError {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            LogError::corrupt(
                self.segment.path.clone(),
                self.segment.offset,
                format!(
                    "file ends inside the {what} of lsn {}, which the writer reported as written",
                    self.pos_lsn
                ),
            )
        } else {
            LogError::io("reading", self.segment.path.clone(), err)
        }
    }

    fn open_next_segment(&mut self) -> Result<(), LogError> {
        match OpenSegment::open(&self.dir, self.pos_lsn) {
            Ok(segment) => {
                self.segment = segment;
                Ok(())
            }
            Err((io::ErrorKind::NotFound, err)) => {
                let oldest = self.shared.oldest_lsn.load(Ordering::Acquire);
                if self.pos_lsn < oldest {
                    Err(LogError::Compacted {
                        requested: self.pos_lsn,
                        oldest,
                    })
                } else {
                    Err(LogError::corrupt(
                        segment_path(&self.dir, self.pos_lsn),
                        0,
                        format!(
                            "the segment holding lsn {} is missing although the previous segment \
                             ends at lsn {} ({err})",
                            self.pos_lsn,
                            self.pos_lsn - 1
                        ),
                    ))
                }
            }
            Err((_, err)) => Err(err),
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<(u64, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.advance() {
            Ok(Some(record)) => {
                // The read-back half of the writer's numbering: the frame's
                // lsn was checked against the position (a mismatch is
                // corruption, reported above), so what is yielded runs on
                // from `from_lsn` without a gap and within the bound.
                let expected = self.yielded_lsn.map_or(self.from_lsn, |l| l + 1);
                assert!(
                    record.0 == expected && record.0 <= self.bound_lsn(),
                    "a log reader yielded lsn {} where lsn {expected} was due (bound {})",
                    record.0,
                    self.bound_lsn()
                );
                self.yielded_lsn = Some(record.0);
                Some(Ok(record))
            }
            Ok(None) => None,
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}
