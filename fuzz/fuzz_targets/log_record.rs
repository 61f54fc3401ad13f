//! Writes arbitrary bytes as the only segment of an op log, opens the log
//! as recovery does (`Log::open`), reads every record back with a
//! `LogReader`, and decodes and applies each one as an `Op` the way
//! `Store::open` replays the log.
//!
//! Checks that nothing panics, that a log that does not open fails with
//! `Corrupt` (never an I/O error, never a huge allocation), and that a log
//! that opens yields exactly the records a simple reference decoder finds
//! in the bytes (same LSNs, same payloads), with a torn tail cut off at the
//! end of the last valid record. Decoded ops must re-encode to bytes that
//! decode and re-encode to the same bytes.
//!
//! Input layout: byte 0 holds flags (bit 0: repair checksums, bit 1:
//! renumber LSNs from 1, bit 2: seal the segment by adding a newer, empty
//! one after it, so that damage must be refused rather than cut off as a
//! torn tail); the rest is the segment file. Repairing rewrites
//! the header crc and each record's crc (and LSN) for as long as record
//! lengths fit, so mutations reach the record and op decoders instead of
//! stopping at a checksum.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use meridian_crdt::{Op, RegionId};
use meridian_log::{FsyncPolicy, Log, LogError, LogOptions, RECORD_PAYLOAD_MAX_BYTES};
use meridian_store::Db;

const SEGMENT_HEADER_BYTES: usize = 24;
const RECORD_HEADER_BYTES: usize = 16;
const MAGIC: &[u8; 8] = b"MRDNLOG\0";
const SEGMENT_NAME: &str = "seg-00000000000000000001.log";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, segment)) = data.split_first() else {
        return;
    };
    let mut segment = segment.to_vec();
    if flags & 1 == 1 {
        repair(&mut segment, flags & 2 == 2);
    }
    let dir = scratch_dir();
    let path = dir.path().join(SEGMENT_NAME);
    std::fs::write(&path, &segment).expect("segment written");

    let expected = reference_records(&segment);
    // A newer (empty) segment seals the fuzzed one: damage in it can no
    // longer pass for a torn tail.
    // (A sealed segment always holds a record: segments roll only then.)
    let sealed = flags & 4 == 4 && expected.as_ref().is_some_and(|e| !e.payloads.is_empty());
    if let (true, Some(expected)) = (sealed, &expected) {
        let next_lsn = expected.payloads.len() as u64 + 1;
        std::fs::write(
            dir.path().join(format!("seg-{next_lsn:020}.log")),
            segment_header(next_lsn),
        )
        .expect("sealing segment written");
    }

    let opts = LogOptions {
        fsync: FsyncPolicy::No,
        ..LogOptions::default()
    };
    let (log, recovery) = match Log::open(dir.path(), opts) {
        Ok(opened) => opened,
        Err(LogError::Corrupt { .. }) => {
            assert!(
                expected.is_none() || expected.as_ref().is_some_and(|r| r.damaged),
                "an undamaged segment was refused"
            );
            return;
        }
        Err(other) => panic!("opening a damaged log must fail as Corrupt, not {other}"),
    };
    let expected = expected.expect("the log opened, so its header is valid");
    assert!(
        !(sealed && expected.damaged),
        "damage in a sealed segment was cut off as a torn tail"
    );

    assert_eq!(recovery.records, expected.payloads.len() as u64);
    assert_eq!(recovery.next_lsn, expected.payloads.len() as u64 + 1);
    let file_len = std::fs::metadata(&path).expect("segment still there").len();
    assert_eq!(
        file_len, expected.valid_end as u64,
        "torn tail cut elsewhere"
    );
    assert_eq!(recovery.torn_tail.is_some(), expected.damaged);

    let mut read = Vec::new();
    if log.last_lsn() >= 1 {
        for record in log.reader(1).expect("reader over a recovered log") {
            let (lsn, payload) = record.expect("recovered records read back");
            assert_eq!(lsn, read.len() as u64 + 1);
            read.push(payload);
        }
    }
    assert_eq!(read.len(), expected.payloads.len());
    for (got, want) in read.iter().zip(&expected.payloads) {
        assert_eq!(got.as_slice(), &segment[want.clone()]);
    }

    let region = RegionId::new("fuzz").expect("valid region name");
    let mut db = Db::new(region, 500);
    for payload in &read {
        let Ok(op) = postcard::from_bytes::<Op>(payload) else {
            continue;
        };
        let encoded = postcard::to_stdvec(&op).expect("decoded op encodes");
        let again: Op = postcard::from_bytes(&encoded).expect("re-encoded op decodes");
        assert_eq!(postcard::to_stdvec(&again).expect("encodes"), encoded);
        db.apply_op(&op);
    }
});

/// Rewrites the header crc, then each record's crc (and, with `renumber`,
/// its LSN) until a record's length runs past the end.
fn repair(segment: &mut [u8], renumber: bool) {
    if segment.len() < SEGMENT_HEADER_BYTES {
        return;
    }
    let crc = crc32c::crc32c(&segment[..20]);
    segment[20..24].copy_from_slice(&crc.to_le_bytes());
    let mut at = SEGMENT_HEADER_BYTES;
    let mut lsn = 1u64;
    while let Some(end) = record_end(segment, at) {
        if renumber {
            segment[at + 8..at + 16].copy_from_slice(&lsn.to_le_bytes());
        }
        let crc = record_crc(
            &segment[at + 8..at + 16],
            &segment[at + RECORD_HEADER_BYTES..end],
        );
        segment[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        lsn += 1;
        at = end;
    }
}

/// Where the record starting at `at` ends, if its declared length fits.
fn record_end(segment: &[u8], at: usize) -> Option<usize> {
    let head = segment.get(at..at + RECORD_HEADER_BYTES)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if len > RECORD_PAYLOAD_MAX_BYTES {
        return None;
    }
    let end = at + RECORD_HEADER_BYTES + len as usize;
    (end <= segment.len()).then_some(end)
}

/// A valid header for a segment whose first record is `first_lsn`.
fn segment_header(first_lsn: u64) -> Vec<u8> {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

fn record_crc(lsn: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(lsn), payload)
}

/// What the documented format says a segment holds.
struct Expected {
    /// Byte ranges of the payloads of the valid records, in order.
    payloads: Vec<std::ops::Range<usize>>,
    /// Just past the last valid record.
    valid_end: usize,
    /// Bytes after `valid_end` do not form a valid record.
    damaged: bool,
}

/// Decodes the segment by the documented format: `None` if the header is
/// not valid, otherwise the leading run of records with valid checksums
/// and consecutive LSNs from 1.
fn reference_records(segment: &[u8]) -> Option<Expected> {
    let header = segment.get(..SEGMENT_HEADER_BYTES)?;
    let valid_header = &header[..8] == MAGIC
        && header[8..12] == 1u32.to_le_bytes()
        && header[12..20] == 1u64.to_le_bytes()
        && header[20..24] == crc32c::crc32c(&header[..20]).to_le_bytes();
    if !valid_header {
        return None;
    }
    let mut payloads = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Some(end) = record_end(segment, at) {
        let lsn = &segment[at + 8..at + 16];
        let payload = at + RECORD_HEADER_BYTES..end;
        let crc = record_crc(lsn, &segment[payload.clone()]);
        let next_lsn = payloads.len() as u64 + 1;
        if segment[at + 4..at + 8] != crc.to_le_bytes() || lsn != next_lsn.to_le_bytes() {
            break;
        }
        payloads.push(payload);
        at = end;
    }
    Some(Expected {
        payloads,
        valid_end: at,
        damaged: at < segment.len(),
    })
}

/// A fresh directory, in memory when the machine has `/dev/shm`, because
/// opening a log fsyncs.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}
