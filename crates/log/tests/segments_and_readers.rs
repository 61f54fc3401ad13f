//! Segment rolling, readers that stream independently of the writer, and prefix
//! truncation.

mod common;

use std::fs;
use std::sync::mpsc;
use std::thread;

use common::*;
use meridian_log::{FsyncPolicy, LogError, LogOptions, ReadBound};

#[test]
fn segments_roll_at_the_size_limit_and_a_reader_crosses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    let written = fill(&mut log, 200);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), log.segment_count());
    assert!(files.len() >= 5, "{} segments", files.len());
    for file in &files[..files.len() - 1] {
        let len = fs::metadata(file).expect("meta").len();
        // A segment is sealed by the first append that finds it full, so it
        // overshoots by less than one record.
        assert!((1024..1024 + 16 + 41).contains(&len), "{len}");
    }
    let read = read_all(&log, 1);
    assert_eq!(read.len(), written.len());
    for (i, (lsn, p)) in read.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &written[i]);
    }
}

#[test]
fn reader_starting_mid_log_yields_from_that_lsn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    let written = fill(&mut log, 120);
    for from in [1, 2, 37, 60, 119, 120, 121] {
        let read = read_all(&log, from);
        assert_eq!(read.len() as u64, 121 - from, "from {from}");
        if let Some((lsn, p)) = read.first() {
            assert_eq!(*lsn, from);
            assert_eq!(p, &written[from as usize - 1]);
        }
    }
}

#[test]
fn reader_sees_only_flushed_records_and_picks_up_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    log.append(b"one").expect("append");
    let mut reader = log.reader(1).expect("reader");
    assert!(reader.next().is_none(), "uncommitted record is invisible");
    log.commit().expect("commit");
    assert_eq!(
        reader.next().map(|r| r.expect("read")),
        Some((1, b"one".to_vec()))
    );
    assert!(reader.next().is_none(), "caught up");
    log.append(b"two").expect("append");
    log.commit().expect("commit");
    assert_eq!(
        reader.next().map(|r| r.expect("read")),
        Some((2, b"two".to_vec()))
    );
    assert_eq!(reader.next_lsn(), 3);
}

#[test]
fn synced_bound_reader_sees_only_synced_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        segment_max_bytes: 1024,
        fsync: FsyncPolicy::Everysec,
        ..LogOptions::default()
    };
    let (mut log, _) = open(dir.path(), opts);
    log.append(b"one").expect("append");
    log.commit().expect("commit");
    let mut synced = log.reader_bounded(1, ReadBound::Synced).expect("reader");
    assert_eq!(log.reader(1).expect("reader").count(), 1);
    assert!(synced.next().is_none(), "flushed but not synced");
    log.sync().expect("sync");
    assert_eq!(
        synced.next().map(|r| r.expect("read")),
        Some((1, b"one".to_vec()))
    );
}

#[test]
fn reader_on_another_thread_follows_the_writer_across_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    let total = 2000u64;
    let mut reader = log.reader(1).expect("reader");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let follower = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut writer_done = false;
        loop {
            match reader.next() {
                Some(record) => seen.push(record.expect("read")),
                None if writer_done => break,
                None => {
                    writer_done = done_rx.try_recv().is_ok();
                    thread::yield_now();
                }
            }
        }
        seen
    });
    for batch in 0..total / 10 {
        for i in 0..10 {
            log.append(&payload(batch * 10 + i + 1)).expect("append");
        }
        log.commit().expect("commit");
    }
    done_tx.send(()).expect("send");
    let seen = follower.join().expect("follower");
    assert!(log.segment_count() > 10);
    assert_eq!(seen.len() as u64, total);
    for (i, (lsn, p)) in seen.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &payload(*lsn));
    }
}

#[test]
fn reader_refuses_compacted_and_future_lsns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 200);
    log.truncate_prefix(100).expect("truncate");
    let oldest = log.oldest_lsn();
    assert!(oldest > 1 && oldest <= 101, "{oldest}");
    match log.reader(oldest - 1) {
        Err(LogError::Compacted {
            requested,
            oldest: reported,
        }) => {
            assert_eq!(requested, oldest - 1);
            assert_eq!(reported, oldest);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    match log.reader(202) {
        Err(LogError::BeyondEnd { next_lsn, .. }) => assert_eq!(next_lsn, 201),
        other => panic!("expected BeyondEnd, got {other:?}"),
    }
    assert_eq!(read_all(&log, oldest).len() as u64, 201 - oldest);
}

#[test]
fn truncate_prefix_removes_only_whole_sealed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 200);
    let before = segment_files(dir.path());
    let first_lsns: Vec<u64> = before
        .iter()
        .map(|p| {
            p.file_name().and_then(|n| n.to_str()).expect("name")[4..24]
                .parse()
                .expect("lsn")
        })
        .collect();

    // Up to one below the end of the second segment: only the first goes.
    assert_eq!(log.truncate_prefix(first_lsns[2] - 2).expect("truncate"), 1);
    assert_eq!(log.oldest_lsn(), first_lsns[1]);
    // Exactly the end of the second segment: it goes too.
    assert_eq!(log.truncate_prefix(first_lsns[2] - 1).expect("truncate"), 1);
    assert_eq!(log.oldest_lsn(), first_lsns[2]);
    assert_eq!(segment_files(dir.path()), before[2..].to_vec());
    // Everything: the active segment stays.
    log.truncate_prefix(u64::MAX).expect("truncate");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        segment_files(dir.path()),
        before[before.len() - 1..].to_vec()
    );
    assert_eq!(log.last_lsn(), 200);
}

#[test]
fn lsns_are_never_reused_after_compaction_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 200);
    log.truncate_prefix(u64::MAX).expect("truncate");
    let oldest = log.oldest_lsn();
    log.close().expect("close");

    let (mut log, recovery) = open(dir.path(), small_segments(1024));
    assert_eq!(recovery.first_lsn, Some(oldest));
    assert_eq!(recovery.last_lsn, Some(200));
    assert_eq!(recovery.records, 201 - oldest);
    assert_eq!(log.append(b"next").expect("append"), 201);
}

#[test]
fn reopen_reports_what_recovery_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, recovery) = open(dir.path(), small_segments(1024));
    assert_eq!(recovery.records, 0);
    assert_eq!(recovery.next_lsn, 1);
    fill(&mut log, 100);
    let segments = log.segment_count();
    drop(log);

    let (log, recovery) = open(dir.path(), small_segments(1024));
    assert_eq!(recovery.segments_scanned, segments);
    assert_eq!(recovery.records, 100);
    assert_eq!(recovery.first_lsn, Some(1));
    assert_eq!(recovery.last_lsn, Some(100));
    assert_eq!(recovery.torn_tail, None);
    assert_eq!(log.last_lsn(), 100);
    assert_eq!(log.flushed_lsn(), 100);
    assert_eq!(log.synced_lsn(), 100);
    let summary = recovery.to_string();
    assert!(summary.contains("100 records (lsn 1..=100)"), "{summary}");
}

#[test]
fn dropping_the_log_hands_buffered_records_to_the_os() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    log.append(b"never committed").expect("append");
    drop(log);
    let (log, recovery) = open(dir.path(), small_segments(1024));
    assert_eq!(recovery.records, 1);
    assert_eq!(read_all(&log, 1), vec![(1, b"never committed".to_vec())]);
}

#[test]
fn commit_returns_the_synced_lsn_under_always() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        ..LogOptions::default()
    };
    let (mut log, _) = open(dir.path(), opts);
    for _ in 0..100 {
        log.append(b"batched").expect("append");
    }
    assert_eq!(log.flushed_lsn(), 0);
    assert_eq!(log.commit().expect("commit"), 100);
    assert_eq!(log.synced_lsn(), 100);
    assert_eq!(log.flushed_lsn(), 100);
}

#[test]
fn append_flushes_once_the_write_buffer_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(64 << 20));
    let record = vec![7u8; 4096];
    let mut appended = 0;
    while log.flushed_lsn() == 0 {
        log.append(&record).expect("append");
        appended += 1;
        assert!(appended * 4096 <= 2 * meridian_log::WRITE_BUFFER_FLUSH_BYTES);
    }
    assert_eq!(log.flushed_lsn(), appended as u64);
}

#[test]
fn leftover_temporary_segment_is_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    fill(&mut log, 3);
    drop(log);
    let leftover = dir.path().join("seg-00000000000000000004.log.tmp");
    fs::write(&leftover, b"MRDN").expect("write");
    let (mut log, recovery) = open(dir.path(), small_segments(1024));
    assert_eq!(recovery.tmp_files_removed, 1);
    assert!(!leftover.exists());
    assert_eq!(log.append(b"four").expect("append"), 4);
}

#[test]
fn segment_size_outside_bounds_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    match meridian_log::Log::open(dir.path(), small_segments(10)) {
        Err(LogError::InvalidOptions { reason }) => {
            assert!(reason.contains("segment_max_bytes"), "{reason}")
        }
        other => panic!("expected InvalidOptions, got {:?}", other.map(|(_, r)| r)),
    }
}
