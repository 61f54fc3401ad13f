//! After a failed write or fsync the writer must refuse all further writes, and
//! keep refusing: retrying a failed fsync could report data durable that is not.

mod common;

use common::*;
use meridian_log::{
    FaultInjector, FsyncPolicy, Log, LogError, LogOptions, RECORD_PAYLOAD_MAX_BYTES,
};

fn options(faults: &FaultInjector, fsync: FsyncPolicy, segment_max_bytes: u64) -> LogOptions {
    LogOptions {
        segment_max_bytes,
        fsync,
        faults: faults.clone(),
    }
}

fn assert_poisoned<T: std::fmt::Debug>(result: Result<T, LogError>, what: &str) {
    match result {
        Err(LogError::Poisoned { cause }) => assert!(!cause.is_empty(), "{what}"),
        other => panic!("{what}: expected Poisoned, got {other:?}"),
    }
}

fn assert_io<T: std::fmt::Debug>(result: Result<T, LogError>, what: &str) {
    match result {
        Err(LogError::Io { .. }) => {}
        other => panic!("{what}: expected Io, got {other:?}"),
    }
}

/// Every write entry point is refused, even after the fault is cleared.
fn assert_stays_poisoned(log: &mut Log, faults: &FaultInjector) {
    faults.clear();
    assert!(log.is_poisoned());
    for _ in 0..3 {
        assert_poisoned(log.append(b"more"), "append");
        assert_poisoned(log.commit(), "commit");
        assert_poisoned(log.sync(), "sync");
        assert_poisoned(log.truncate_prefix(u64::MAX), "truncate_prefix");
        assert_poisoned(log.reader(1), "reader");
    }
}

#[test]
fn failed_fsync_on_commit_poisons_the_log_and_it_stays_poisoned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = open(dir.path(), options(&faults, FsyncPolicy::Always, 1 << 20));
    fill(&mut log, 5);
    assert_eq!(log.synced_lsn(), 5);

    faults.fail_fsyncs(true);
    log.append(b"six").expect("append only buffers");
    assert_io(log.commit(), "commit with failing fsync");
    assert_eq!(
        log.synced_lsn(),
        5,
        "a failed fsync must not advance synced_lsn"
    );
    assert_stays_poisoned(&mut log, &faults);

    let message = match log.commit() {
        Err(err) => err.to_string(),
        Ok(lsn) => panic!("commit succeeded at {lsn}"),
    };
    assert!(message.contains("injected fsync failure"), "{message}");
}

#[test]
fn failed_write_poisons_the_log_and_the_short_write_is_a_torn_tail_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = open(dir.path(), options(&faults, FsyncPolicy::Always, 1 << 20));
    let written = fill(&mut log, 5);

    faults.fail_writes_after_bytes(10);
    log.append(b"this record will be cut short")
        .expect("append only buffers");
    assert_io(log.commit(), "commit with failing write");
    assert_eq!(
        log.flushed_lsn(),
        5,
        "a failed write must not advance flushed_lsn"
    );
    assert_stays_poisoned(&mut log, &faults);
    drop(log);

    let (log, recovery) = open(dir.path(), LogOptions::default());
    let torn = recovery.torn_tail.expect("the short write is a torn tail");
    assert_eq!(torn.bytes_truncated, 10);
    let read: Vec<Vec<u8>> = read_all(&log, 1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(read, written);
}

#[test]
fn everysec_commit_does_not_fsync_but_sync_does_and_its_failure_poisons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = open(dir.path(), options(&faults, FsyncPolicy::Everysec, 1 << 20));
    faults.fail_fsyncs(true);
    log.append(b"one").expect("append");
    assert_eq!(log.commit().expect("commit does not fsync"), 1);
    assert_eq!(log.flushed_lsn(), 1);
    assert_eq!(log.synced_lsn(), 0);
    assert_io(log.sync(), "sync with failing fsync");
    assert_stays_poisoned(&mut log, &faults);
}

#[test]
fn failed_fsync_during_segment_roll_poisons_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = open(dir.path(), options(&faults, FsyncPolicy::No, 1024));
    let mut rolled = false;
    faults.fail_fsyncs(true);
    for i in 0..1000u64 {
        match log.append(&payload(i)) {
            Ok(_) => assert_eq!(log.segment_count(), 1),
            Err(LogError::Io { .. }) => {
                rolled = true;
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(rolled, "the segment never rolled");
    assert_stays_poisoned(&mut log, &faults);
}

#[test]
fn failed_write_while_creating_a_segment_leaves_a_log_that_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let (mut log, _) = open(dir.path(), options(&faults, FsyncPolicy::No, 1024));
    let mut written = Vec::new();
    loop {
        let p = payload(log.last_lsn() + 1);
        log.append(&p).expect("append");
        written.push(p);
        log.commit().expect("commit");
        // The next append rolls: let it fail halfway through the new header.
        if log.segment_count() == 1
            && std::fs::metadata(&segment_files(dir.path())[0])
                .expect("meta")
                .len()
                >= 1024
        {
            break;
        }
    }
    faults.fail_writes_after_bytes(5);
    assert_io(log.append(b"x"), "append that rolls");
    assert_stays_poisoned(&mut log, &faults);
    drop(log);

    let (log, recovery) = open(dir.path(), LogOptions::default());
    assert_eq!(recovery.tmp_files_removed, 1);
    assert_eq!(recovery.segments_scanned, 1);
    let read: Vec<Vec<u8>> = read_all(&log, 1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(read, written);
}

#[test]
fn oversized_record_is_rejected_without_poisoning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1 << 20));
    // Zeroed allocations are lazy, so this costs address space, not memory.
    let huge = vec![0u8; RECORD_PAYLOAD_MAX_BYTES as usize + 1];
    match log.append(&huge) {
        Err(LogError::RecordTooLarge { len_bytes, .. }) => {
            assert_eq!(len_bytes, huge.len() as u64)
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(!log.is_poisoned());
    assert_eq!(log.append(b"fine").expect("append"), 1);
}

/// A sync run outside the writer (so a server can release its lock during
/// the fdatasync) marks the records synced, and its failure poisons the log.
#[test]
fn sync_begun_and_finished_outside_the_writer_counts_and_its_failure_poisons() {
    use meridian_log::{FaultInjector, FsyncPolicy, Log, LogOptions};
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let opts = LogOptions {
        fsync: FsyncPolicy::Everysec,
        faults: faults.clone(),
        ..LogOptions::default()
    };
    let (mut log, _) = Log::open(dir.path(), opts).unwrap();
    log.append(b"one").unwrap();
    log.append(b"two").unwrap();
    let pending = log.begin_sync().unwrap().expect("records to sync");
    assert_eq!(pending.lsn(), 2);
    // The writer keeps appending while the sync runs elsewhere.
    log.append(b"three").unwrap();
    let result = pending.run();
    assert_eq!(log.finish_sync(pending, result).unwrap(), 2);
    assert_eq!(log.synced_lsn(), 2);
    assert!(
        log.begin_sync().unwrap().is_some(),
        "record 3 still needs a sync"
    );
    log.sync().unwrap();
    assert!(log.begin_sync().unwrap().is_none());

    log.append(b"four").unwrap();
    let pending = log.begin_sync().unwrap().unwrap();
    faults.fail_fsyncs(true);
    let result = pending.run();
    assert!(log.finish_sync(pending, result).is_err());
    assert!(log.is_poisoned());
    assert!(log.append(b"five").is_err());
}
