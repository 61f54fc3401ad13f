//! A crash can leave the newest segment ending in a partial or garbled record.
//! Recovery must cut exactly that off and keep every complete record before it.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;

use common::*;
use meridian_log::SEGMENT_HEADER_BYTES;

/// Builds a log with several segments and returns the payloads written.
fn build_log(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let (mut log, _) = open(dir, small_segments(1024));
    let written = fill(&mut log, 60);
    assert!(log.segment_count() >= 3, "want several segments");
    log.close().expect("close");
    written
}

#[test]
fn cutting_the_last_segment_at_every_byte_yields_exactly_the_complete_prefix() {
    let source = tempfile::tempdir().expect("tempdir");
    let written = build_log(source.path());
    let segments = segment_files(source.path());
    let last_name = segments
        .last()
        .and_then(|p| p.file_name())
        .expect("last segment")
        .to_owned();
    let last_len = fs::metadata(segments.last().expect("last"))
        .expect("meta")
        .len();

    // The first LSN of the last segment, and the frame boundaries inside it.
    let last_first_lsn = last_name.to_str().expect("utf8")[4..24]
        .parse::<u64>()
        .expect("lsn in name");
    let mut boundaries = vec![SEGMENT_HEADER_BYTES];
    for p in &written[(last_first_lsn - 1) as usize..] {
        let end = boundaries.last().copied().unwrap_or_default() + frame_bytes(p);
        boundaries.push(end);
    }
    assert_eq!(boundaries.last().copied(), Some(last_len));

    for cut in SEGMENT_HEADER_BYTES..=last_len {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let last_path = dir.path().join(&last_name);
        OpenOptions::new()
            .write(true)
            .open(&last_path)
            .and_then(|f| f.set_len(cut))
            .expect("cut");

        let complete_in_last = boundaries.iter().filter(|&&b| b <= cut).count() as u64 - 1;
        let kept_end = boundaries[complete_in_last as usize];
        let expected_last_lsn = last_first_lsn - 1 + complete_in_last;

        let (mut log, recovery) = open(dir.path(), small_segments(1024));
        assert_eq!(recovery.next_lsn, expected_last_lsn + 1, "cut at {cut}");
        assert_eq!(recovery.last_lsn, Some(expected_last_lsn), "cut at {cut}");
        match &recovery.torn_tail {
            Some(torn) => {
                assert_ne!(cut, kept_end, "cut at a boundary is not torn");
                assert_eq!(torn.offset, kept_end, "cut at {cut}");
                assert_eq!(torn.bytes_truncated, cut - kept_end, "cut at {cut}");
                assert_eq!(torn.path, last_path);
            }
            None => assert_eq!(cut, kept_end, "cut at {cut} must be reported as torn"),
        }
        assert_eq!(fs::metadata(&last_path).expect("meta").len(), kept_end);

        let read = read_all(&log, 1);
        assert_eq!(read.len() as u64, expected_last_lsn, "cut at {cut}");
        for (lsn, p) in &read {
            assert_eq!(p, &written[(*lsn - 1) as usize], "lsn {lsn}, cut at {cut}");
        }
        // The log continues right after the kept prefix.
        assert_eq!(log.append(b"after").expect("append"), expected_last_lsn + 1);
        log.commit().expect("commit");
    }
}

#[test]
fn cut_inside_the_segment_header_is_corrupt_not_torn() {
    let source = tempfile::tempdir().expect("tempdir");
    build_log(source.path());
    let last = segment_files(source.path()).pop().expect("last");
    OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(SEGMENT_HEADER_BYTES - 1))
        .expect("cut");
    let (path, offset, reason) =
        expect_corrupt(meridian_log::Log::open(source.path(), small_segments(1024)));
    assert_eq!(path, last);
    assert_eq!(offset, 0);
    assert!(reason.contains("header"), "{reason}");
}

#[test]
fn flipped_byte_in_the_final_record_is_truncated_as_torn() {
    let source = tempfile::tempdir().expect("tempdir");
    let written = build_log(source.path());
    let last_name = segment_files(source.path())
        .pop()
        .and_then(|p| p.file_name().map(|n| n.to_owned()))
        .expect("last");
    let last_len = fs::metadata(source.path().join(&last_name))
        .expect("meta")
        .len();
    let final_frame = frame_bytes(written.last().expect("records"));
    let final_start = last_len - final_frame;

    for offset in final_start..last_len {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        flip_byte(&dir.path().join(&last_name), offset);
        let (log, recovery) = open(dir.path(), small_segments(1024));
        let torn = recovery
            .torn_tail
            .as_ref()
            .unwrap_or_else(|| panic!("flip at {offset} not reported as torn"));
        assert_eq!(torn.offset, final_start, "flip at {offset}");
        assert_eq!(torn.bytes_truncated, final_frame, "flip at {offset}");
        assert_eq!(log.last_lsn(), written.len() as u64 - 1, "flip at {offset}");
        assert_eq!(read_all(&log, 1).len(), written.len() - 1);
    }
}

#[test]
fn garbage_appended_after_the_last_record_is_truncated() {
    let source = tempfile::tempdir().expect("tempdir");
    let written = build_log(source.path());
    let last_name = segment_files(source.path())
        .pop()
        .and_then(|p| p.file_name().map(|n| n.to_owned()))
        .expect("last");
    let clean_len = fs::metadata(source.path().join(&last_name))
        .expect("meta")
        .len();

    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for garbage_len in [1usize, 7, 15, 16, 17, 100, 4096] {
        let garbage: Vec<u8> = (0..garbage_len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let path = dir.path().join(&last_name);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&garbage))
            .expect("append garbage");

        let (log, recovery) = open(dir.path(), small_segments(1024));
        let torn = recovery.torn_tail.as_ref().expect("garbage is a torn tail");
        assert_eq!(torn.offset, clean_len);
        assert_eq!(torn.bytes_truncated, garbage_len as u64);
        assert_eq!(log.last_lsn(), written.len() as u64);
        assert_eq!(fs::metadata(&path).expect("meta").len(), clean_len);
        let display = recovery.to_string();
        assert!(display.contains("torn tail"), "{display}");
    }
}

#[test]
fn zero_filled_tail_is_truncated() {
    // Some filesystems expose a file's new size before its data after a crash,
    // which reads back as zeros.
    let source = tempfile::tempdir().expect("tempdir");
    let written = build_log(source.path());
    let last = segment_files(source.path()).pop().expect("last");
    OpenOptions::new()
        .append(true)
        .open(&last)
        .and_then(|mut f| f.write_all(&[0u8; 4096]))
        .expect("append zeros");
    let (log, recovery) = open(source.path(), small_segments(1024));
    assert_eq!(recovery.torn_tail.map(|t| t.bytes_truncated), Some(4096));
    assert_eq!(log.last_lsn(), written.len() as u64);
}

/// A power loss keeps what was fdatasynced and, of the rest, some prefix:
/// recovery then holds every synced record and never a damaged one, wherever
/// the cut falls (including segment rolls, which sync what they seal).
#[test]
fn a_power_loss_keeps_every_synced_record_wherever_the_unsynced_tail_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    let mut written = fill(&mut log, 25);
    let synced = log.sync().expect("sync");
    assert_eq!(synced, 25);
    for i in 0..12u32 {
        let payload = format!("after sync {i}").into_bytes();
        log.append(&payload).expect("append");
        written.push(payload);
    }
    log.commit().expect("hand to the OS");
    let tail = log.unsynced_tail();
    let synced_lsn = log.synced_lsn();
    assert!(tail.written_bytes > tail.synced_bytes, "{tail:?}");
    drop(log);
    let snapshot = tempfile::tempdir().expect("tempdir");
    for kept in 0..=(tail.written_bytes - tail.synced_bytes) {
        // Each cut starts from the same files.
        for f in segment_files(snapshot.path()) {
            fs::remove_file(f).expect("clear");
        }
        for f in segment_files(dir.path()) {
            fs::copy(&f, snapshot.path().join(f.file_name().expect("name"))).expect("copy");
        }
        let cut = meridian_log::UnsyncedTail {
            path: snapshot.path().join(tail.path.file_name().expect("name")),
            ..tail.clone()
        };
        cut.lose_power(kept).expect("cut");
        let (log, _) = open(snapshot.path(), small_segments(1024));
        let last = log.last_lsn();
        assert!(
            last >= synced_lsn,
            "kept {kept}: lost synced records ({last} < {synced_lsn})"
        );
        let read: Vec<Vec<u8>> = log
            .reader(1)
            .expect("reader")
            .map(|r| r.expect("record").1.to_vec())
            .collect();
        assert_eq!(read[..], written[..last as usize], "kept {kept}");
    }
}
