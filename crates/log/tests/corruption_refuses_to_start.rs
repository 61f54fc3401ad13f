//! Damage that a crash cannot explain must stop the region from starting, with an
//! error that names the file, the byte offset and what was wrong.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::*;
use meridian_log::{Log, LogError, SEGMENT_HEADER_BYTES};

/// One segment holding records 1..=count; returns the payloads.
fn single_segment_log(dir: &std::path::Path, count: u64) -> Vec<Vec<u8>> {
    let (mut log, _) = open(dir, small_segments(1024 * 1024));
    let written = fill(&mut log, count);
    assert_eq!(log.segment_count(), 1);
    log.close().expect("close");
    written
}

/// Byte offset of the record with `lsn` in a single-segment log.
fn record_offset(written: &[Vec<u8>], lsn: u64) -> u64 {
    SEGMENT_HEADER_BYTES
        + written[..(lsn - 1) as usize]
            .iter()
            .map(|p| frame_bytes(p))
            .sum::<u64>()
}

#[test]
fn flipped_byte_in_a_middle_record_is_corrupt() {
    let source = tempfile::tempdir().expect("tempdir");
    let written = single_segment_log(source.path(), 6);
    let segment_name = segment_files(source.path())[0]
        .file_name()
        .expect("name")
        .to_owned();
    let start = record_offset(&written, 3);
    let end = start + frame_bytes(&written[2]);

    for offset in start..end {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let path = dir.path().join(&segment_name);
        flip_byte(&path, offset);
        let (bad_path, bad_offset, reason) =
            expect_corrupt(Log::open(dir.path(), small_segments(1024 * 1024)));
        assert_eq!(bad_path, path, "flip at {offset}");
        assert_eq!(bad_offset, start, "flip at {offset}: {reason}");
        assert!(reason.contains("follows"), "flip at {offset}: {reason}");
    }
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 60);
    log.close().expect("close");
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3);
    // Damage the very last byte of the first segment: its final record.
    let first = &segments[0];
    let len = fs::metadata(first).expect("meta").len();
    flip_byte(first, len - 1);
    let (path, offset, reason) = expect_corrupt(Log::open(dir.path(), small_segments(1024)));
    assert_eq!(&path, first);
    assert!(offset < len);
    assert!(reason.contains("sealed"), "{reason}");
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 60);
    log.close().expect("close");
    let segments = segment_files(dir.path());
    fs::remove_file(&segments[1]).expect("remove");
    let (path, _, reason) = expect_corrupt(Log::open(dir.path(), small_segments(1024)));
    assert_eq!(path, segments[2]);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn bad_segment_header_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    single_segment_log(dir.path(), 3);
    let segment = &segment_files(dir.path())[0];
    flip_byte(segment, 2);
    let (path, offset, reason) = expect_corrupt(Log::open(dir.path(), small_segments(1024)));
    assert_eq!(&path, segment);
    assert_eq!(offset, 0);
    assert!(reason.contains("magic"), "{reason}");
}

#[test]
fn valid_record_with_an_out_of_order_lsn_is_corrupt() {
    // A frame whose checksum verifies but whose LSN does not follow is not a torn
    // write: it is a record that should not be there.
    let dir = tempfile::tempdir().expect("tempdir");
    let written = single_segment_log(dir.path(), 4);
    let segment = &segment_files(dir.path())[0];
    let bytes = fs::read(segment).expect("read");
    let second_start = record_offset(&written, 2) as usize;
    let second_end = second_start + frame_bytes(&written[1]) as usize;
    let duplicate = bytes[second_start..second_end].to_vec();
    OpenOptions::new()
        .append(true)
        .open(segment)
        .and_then(|mut f| f.write_all(&duplicate))
        .expect("append duplicate");
    let (_, offset, reason) = expect_corrupt(Log::open(dir.path(), small_segments(1024)));
    assert_eq!(offset, bytes.len() as u64);
    assert!(reason.contains("lsn 2 where lsn 5"), "{reason}");
}

#[test]
fn corrupt_error_names_the_file_the_offset_and_the_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = single_segment_log(dir.path(), 5);
    let segment = &segment_files(dir.path())[0];
    let offset = record_offset(&written, 2);
    flip_byte(segment, offset + 20);
    let err = match Log::open(dir.path(), small_segments(1024)) {
        Err(err @ LogError::Corrupt { .. }) => err,
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, but the log opened"),
    };
    let message = err.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {offset}")),
        "{message}"
    );
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(message.contains("refuses to start"), "{message}");
}
