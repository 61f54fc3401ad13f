//! The bytes on disk.
//!
//! A segment file `seg-{first_lsn:020}.log` is a header followed by records:
//!
//! ```text
//! header (24 bytes): magic "MRDNLOG\0" | format version u32 LE | first lsn u64 LE
//!                    | crc32c u32 LE over the previous 20 bytes
//! record:            payload length u32 LE | crc32c u32 LE over (lsn ++ payload)
//!                    | lsn u64 LE | payload
//! ```
//!
//! The zero-padded LSN in the name makes lexical order equal LSN order and lets a
//! reader find the segment that starts at a given LSN without listing the
//! directory. The checksum covers the LSN so that a frame copied to the wrong place
//! cannot pass as valid.

use std::path::{Path, PathBuf};

/// Magic bytes at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"MRDNLOG\0";
/// Segment format version written by this code; the only one it reads.
/// Version 2: counter increments name their incarnation (the records'
/// payloads, ops, changed shape).
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 2;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 24;
/// Size of a record frame before its payload: length, crc, lsn.
pub(crate) const FRAME_HEADER_BYTES: usize = 16;
/// Largest payload a record may carry: 512 MiB plus 1 MiB of slack for framing done
/// by the layer above. Recovery rejects larger lengths before allocating, so a
/// corrupt length field cannot make it allocate a huge buffer.
pub const RECORD_PAYLOAD_MAX_BYTES: u32 = 512 * 1024 * 1024 + 1024 * 1024;

const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".log";
/// Suffix of a segment being created; such files are removed at open.
pub(crate) const SEGMENT_TMP_SUFFIX: &str = ".log.tmp";
const LSN_DIGITS: usize = 20;

/// The path of the segment whose first record has `first_lsn`.
pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// The temporary path under which a new segment's header is written.
pub(crate) fn segment_tmp_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!(
        "{SEGMENT_PREFIX}{first_lsn:020}{SEGMENT_TMP_SUFFIX}"
    ))
}

/// The first LSN encoded in a segment file name, if `name` is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_lsn_name(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)
}

/// Whether `name` is a leftover temporary segment file.
pub(crate) fn is_segment_tmp_name(name: &str) -> bool {
    parse_lsn_name(name, SEGMENT_PREFIX, SEGMENT_TMP_SUFFIX).is_some()
}

/// Parses `{prefix}{20 digits}{suffix}` strictly.
pub(crate) fn parse_lsn_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes the header of a segment starting at `first_lsn`.
pub(crate) fn encode_segment_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What is wrong with a segment header, with the offset of the bad field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeaderProblem {
    pub offset: u64,
    pub reason: String,
}

/// Checks a segment header and returns the first LSN it declares.
pub(crate) fn decode_segment_header(
    header: &[u8; SEGMENT_HEADER_BYTES as usize],
) -> Result<u64, HeaderProblem> {
    if header[0..8] != SEGMENT_MAGIC {
        return Err(HeaderProblem {
            offset: 0,
            reason: format!(
                "segment header has magic {:02x?}, expected {:02x?}: this is not a Meridian log segment",
                &header[0..8],
                SEGMENT_MAGIC
            ),
        });
    }
    let stored_crc = read_u32(header, 20);
    let computed_crc = crc32c::crc32c(&header[0..20]);
    if stored_crc != computed_crc {
        return Err(HeaderProblem {
            offset: 20,
            reason: format!(
                "segment header checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
            ),
        });
    }
    let version = read_u32(header, 8);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(HeaderProblem {
            offset: 8,
            reason: format!(
                "segment format version {version} is not supported (this build reads version {SEGMENT_FORMAT_VERSION})"
            ),
        });
    }
    Ok(read_u64(header, 12))
}

/// The checksum stored in a frame: crc32c over the LSN (LE) followed by the payload.
pub(crate) fn record_crc(lsn: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload)
}

/// Appends one framed record to `out`. The caller has checked the payload length.
pub(crate) fn encode_record(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= RECORD_PAYLOAD_MAX_BYTES as usize);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(lsn, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The fixed part of a frame, decoded but not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_len: u32,
    pub crc: u32,
    pub lsn: u64,
}

impl FrameHeader {
    pub(crate) fn decode(bytes: &[u8; FRAME_HEADER_BYTES]) -> Self {
        FrameHeader {
            payload_len: read_u32(bytes, 0),
            crc: read_u32(bytes, 4),
            lsn: read_u64(bytes, 8),
        }
    }

    /// Total size of the frame on disk.
    pub(crate) fn frame_bytes(&self) -> u64 {
        FRAME_HEADER_BYTES as u64 + u64::from(self.payload_len)
    }
}

/// Reads a little-endian u32 at `at`. Callers pass slices known to be long enough.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Reads a little-endian u64 at `at`. Callers pass slices known to be long enough.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort_by_lsn() {
        let dir = Path::new("/d");
        let a = segment_path(dir, 9);
        let b = segment_path(dir, 10);
        let name_a = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let name_b = b.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(name_a, "seg-00000000000000000009.log");
        assert!(name_a < name_b);
        assert_eq!(parse_segment_name(name_a), Some(9));
        assert_eq!(parse_segment_name(name_b), Some(10));
        assert_eq!(parse_segment_name("seg-9.log"), None);
        assert_eq!(parse_segment_name("seg-0000000000000000000x.log"), None);
        assert_eq!(parse_segment_name("seg-00000000000000000009.log.tmp"), None);
        assert!(is_segment_tmp_name("seg-00000000000000000009.log.tmp"));
        assert_eq!(parse_segment_name("seg-99999999999999999999.log"), None);
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        for byte in 0..header.len() {
            let mut damaged = header;
            damaged[byte] ^= 0x01;
            assert!(decode_segment_header(&damaged).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn record_frame_layout_matches_the_documented_format() {
        let mut out = Vec::new();
        encode_record(&mut out, 7, b"abc");
        assert_eq!(out.len(), FRAME_HEADER_BYTES + 3);
        let mut head = [0u8; FRAME_HEADER_BYTES];
        head.copy_from_slice(&out[..FRAME_HEADER_BYTES]);
        let frame = FrameHeader::decode(&head);
        assert_eq!(frame.payload_len, 3);
        assert_eq!(frame.lsn, 7);
        let mut covered = 7u64.to_le_bytes().to_vec();
        covered.extend_from_slice(b"abc");
        assert_eq!(frame.crc, crc32c::crc32c(&covered));
        assert_eq!(&out[FRAME_HEADER_BYTES..], b"abc");
    }
}
