//! Scanning one segment file at open time.
//!
//! This is where a torn tail is told apart from corruption. A crash can leave the
//! newest segment ending in a partial record, or in a whole-length record whose
//! bytes never all reached the disk (bad checksum), or in zeros or other bytes a
//! filesystem exposes after extending a file. None of that was ever acknowledged
//! under `FsyncPolicy::Always`, so cutting it off is correct. A damaged record that
//! is followed by a valid one, or that sits in a sealed (synced) segment, cannot be
//! explained by a crash: it is corruption, and serving on top of it would mean
//! serving wrong data, so the log refuses to open.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::format::{
    decode_segment_header, read_u32, read_u64, record_crc, FrameHeader, FRAME_HEADER_BYTES,
    RECORD_PAYLOAD_MAX_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::LogError;

/// Read buffer for recovery. Large, so that scanning millions of small records
/// costs a few hundred syscalls rather than millions.
const SCAN_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// Number of valid records.
    pub records: u64,
    /// Offset just past the last valid record (or past the header if none).
    pub valid_end_bytes: u64,
    /// Size of the file as found.
    pub file_len_bytes: u64,
    /// Set when the newest segment ends in a torn tail starting at `valid_end_bytes`.
    pub torn_reason: Option<String>,
}

/// Reads and checks the header of the segment at `path` named for `name_lsn`.
pub(crate) fn read_segment_header<R: Read>(
    reader: &mut R,
    path: &Path,
    name_lsn: u64,
    file_len_bytes: u64,
) -> Result<(), LogError> {
    if name_lsn == 0 {
        return Err(LogError::corrupt(
            path,
            0,
            "segment file name declares first lsn 0, but lsns start at 1",
        ));
    }
    if file_len_bytes < SEGMENT_HEADER_BYTES {
        return Err(LogError::corrupt(
            path,
            0,
            format!(
                "file is {file_len_bytes} bytes, shorter than the {SEGMENT_HEADER_BYTES}-byte \
                 segment header (segments are created atomically, so this is not a crash artifact)"
            ),
        ));
    }
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    reader
        .read_exact(&mut header)
        .map_err(|e| LogError::io("reading segment header of", path, e))?;
    let header_lsn = decode_segment_header(&header)
        .map_err(|problem| LogError::corrupt(path, problem.offset, problem.reason))?;
    if header_lsn != name_lsn {
        return Err(LogError::corrupt(
            path,
            12,
            format!(
                "segment header declares first lsn {header_lsn} but the file name declares {name_lsn}"
            ),
        ));
    }
    Ok(())
}

/// Scans the segment at `path`, whose name declares `first_lsn`, verifying every
/// record. `is_newest` says whether a damaged tail may be treated as torn.
pub(crate) fn scan_segment(
    path: &Path,
    first_lsn: u64,
    is_newest: bool,
) -> Result<SegmentScan, LogError> {
    let file = File::open(path).map_err(|e| LogError::io("opening", path, e))?;
    let file_len_bytes = file
        .metadata()
        .map_err(|e| LogError::io("reading metadata of", path, e))?
        .len();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, file);
    read_segment_header(&mut reader, path, first_lsn, file_len_bytes)?;

    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected_lsn = first_lsn;
    let damage = loop {
        let remaining = file_len_bytes - offset;
        if remaining == 0 {
            break None;
        }
        if remaining < FRAME_HEADER_BYTES as u64 {
            break Some(format!(
                "incomplete record header: {remaining} bytes where a record needs at least {FRAME_HEADER_BYTES}"
            ));
        }
        let mut head = [0u8; FRAME_HEADER_BYTES];
        reader
            .read_exact(&mut head)
            .map_err(|e| LogError::io("reading", path, e))?;
        let frame = FrameHeader::decode(&head);
        if frame.payload_len > RECORD_PAYLOAD_MAX_BYTES {
            break Some(format!(
                "record length {} exceeds the maximum of {RECORD_PAYLOAD_MAX_BYTES} bytes",
                frame.payload_len
            ));
        }
        if frame.frame_bytes() > remaining {
            break Some(format!(
                "incomplete record: {} payload bytes declared but only {} bytes remain in the file",
                frame.payload_len,
                remaining - FRAME_HEADER_BYTES as u64
            ));
        }
        let computed = crc_of_payload(&mut reader, path, frame)?;
        if computed != frame.crc {
            break Some(format!(
                "checksum mismatch in the record declaring lsn {} (stored {:#010x}, computed {computed:#010x})",
                frame.lsn, frame.crc
            ));
        }
        if frame.lsn != expected_lsn {
            return Err(LogError::corrupt(
                path,
                offset,
                format!(
                    "record carries lsn {} where lsn {expected_lsn} was expected (a gap or an \
                     out-of-order record; its checksum is valid, so this is not a torn write)",
                    frame.lsn
                ),
            ));
        }
        offset += frame.frame_bytes();
        expected_lsn += 1;
    };

    let records = expected_lsn - first_lsn;
    let Some(reason) = damage else {
        return Ok(SegmentScan {
            records,
            valid_end_bytes: offset,
            file_len_bytes,
            torn_reason: None,
        });
    };
    if !is_newest {
        return Err(LogError::corrupt(
            path,
            offset,
            format!(
                "{reason}; this segment was sealed and synced before a newer one was created, \
                 so the damage cannot come from an interrupted write"
            ),
        ));
    }
    let last_valid_lsn = expected_lsn - 1;
    if let Some((later_offset, later_lsn)) = find_valid_frame_after(
        reader.into_inner(),
        path,
        offset,
        file_len_bytes,
        last_valid_lsn,
    )? {
        return Err(LogError::corrupt(
            path,
            offset,
            format!(
                "{reason}; a valid record (lsn {later_lsn}) follows at byte offset {later_offset}, \
                 so this is damage inside the log, not a torn write at its end"
            ),
        ));
    }
    Ok(SegmentScan {
        records,
        valid_end_bytes: offset,
        file_len_bytes,
        torn_reason: Some(reason),
    })
}

/// Computes the record checksum while consuming the payload from the read
/// buffer, without copying it.
fn crc_of_payload(
    reader: &mut BufReader<File>,
    path: &Path,
    frame: FrameHeader,
) -> Result<u32, LogError> {
    let mut crc = record_crc(frame.lsn, &[]);
    let mut left = frame.payload_len as usize;
    while left > 0 {
        let chunk = reader
            .fill_buf()
            .map_err(|e| LogError::io("reading", path, e))?;
        if chunk.is_empty() {
            // The length was checked against the file size, so the file shrank
            // under us; nothing else should be touching the directory.
            return Err(LogError::io(
                "reading",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shrank while it was being scanned",
                ),
            ));
        }
        let take = chunk.len().min(left);
        crc = crc32c::crc32c_append(crc, &chunk[..take]);
        reader.consume(take);
        left -= take;
    }
    Ok(crc)
}

/// Looks for a checksum-valid frame with an LSN above `last_valid_lsn` anywhere
/// after `bad_offset`. Returns its offset and LSN.
///
/// The LSN must also be plausible: no more than one record per 16 bytes of
/// remaining file can fit, which keeps random payload bytes from triggering
/// checksum computations over large spans.
fn find_valid_frame_after(
    mut file: File,
    path: &Path,
    bad_offset: u64,
    file_len_bytes: u64,
    last_valid_lsn: u64,
) -> Result<Option<(u64, u64)>, LogError> {
    let start = bad_offset + 1;
    if start >= file_len_bytes {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(start))
        .map_err(|e| LogError::io("seeking in", path, e))?;
    let rest_len = usize::try_from(file_len_bytes - start)
        .map_err(|_| LogError::corrupt(path, bad_offset, "segment tail is too large to examine"))?;
    let mut rest = Vec::with_capacity(rest_len);
    file.take(rest_len as u64)
        .read_to_end(&mut rest)
        .map_err(|e| LogError::io("reading", path, e))?;

    let lsn_span_max = (rest.len() / FRAME_HEADER_BYTES) as u64 + 1;
    let last_start = rest.len().saturating_sub(FRAME_HEADER_BYTES - 1);
    for at in 0..last_start {
        let payload_len = read_u32(&rest, at);
        if payload_len > RECORD_PAYLOAD_MAX_BYTES {
            continue;
        }
        let end = at + FRAME_HEADER_BYTES + payload_len as usize;
        if end > rest.len() {
            continue;
        }
        let lsn = read_u64(&rest, at + 8);
        if lsn <= last_valid_lsn || lsn - last_valid_lsn > lsn_span_max {
            continue;
        }
        let stored = read_u32(&rest, at + 4);
        if record_crc(lsn, &rest[at + FRAME_HEADER_BYTES..end]) == stored {
            return Ok(Some((start + at as u64, lsn)));
        }
    }
    Ok(None)
}
