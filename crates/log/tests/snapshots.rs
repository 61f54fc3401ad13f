//! Snapshots round-trip, are verified on load, and a damaged newest snapshot is
//! an error rather than a silent fallback.

mod common;

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

use common::*;
use meridian_log::{load_latest_snapshot, snapshot_path, write_snapshot, LogError};

fn content(lsn: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 131 + lsn) as u8).collect()
}

fn write(dir: &Path, lsn: u64, bytes: &[u8]) {
    let info = write_snapshot(dir, lsn, |w| {
        // Several writes, as a real serializer would do.
        for chunk in bytes.chunks(1000) {
            w.write_all(chunk)?;
        }
        Ok(())
    })
    .expect("write_snapshot");
    assert_eq!(info.lsn, lsn);
    assert_eq!(info.content_bytes, bytes.len() as u64);
    assert_eq!(info.path, snapshot_path(dir, lsn));
}

fn expect_snapshot_corrupt(dir: &Path) -> (std::path::PathBuf, u64, String) {
    match load_latest_snapshot(dir) {
        Err(LogError::Corrupt {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        other => panic!(
            "expected Corrupt, got {:?}",
            other.map(|s| s.map(|(lsn, _)| lsn))
        ),
    }
}

#[test]
fn snapshot_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(load_latest_snapshot(dir.path()).expect("load"), None);
    for len in [0usize, 1, 4095, 100_000] {
        let bytes = content(len as u64, len);
        write(dir.path(), 10 + len as u64, &bytes);
        assert_eq!(
            load_latest_snapshot(dir.path()).expect("load"),
            Some((10 + len as u64, bytes))
        );
    }
}

#[test]
fn missing_directory_has_no_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        load_latest_snapshot(&dir.path().join("absent")).expect("load"),
        None
    );
}

#[test]
fn any_flipped_byte_in_the_newest_snapshot_is_corrupt() {
    let source = tempfile::tempdir().expect("tempdir");
    write(source.path(), 5, &content(5, 300));
    write(source.path(), 9, &content(9, 300));
    let newest = snapshot_path(source.path(), 9);
    let len = fs::metadata(&newest).expect("meta").len();
    for offset in 0..len {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(source.path(), dir.path());
        let path = snapshot_path(dir.path(), 9);
        flip_byte(&path, offset);
        let (bad_path, _, reason) = expect_snapshot_corrupt(dir.path());
        assert_eq!(bad_path, path, "flip at {offset}: {reason}");
    }
}

#[test]
fn truncated_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 3, &content(3, 500));
    let path = snapshot_path(dir.path(), 3);
    for cut in [0u64, 10, 31, 32, 200, 531] {
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(cut))
            .expect("cut");
        let (bad_path, _, reason) = expect_snapshot_corrupt(dir.path());
        assert_eq!(bad_path, path, "cut at {cut}: {reason}");
    }
}

#[test]
fn writing_a_snapshot_keeps_only_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    for lsn in [10, 20, 30, 40] {
        write(dir.path(), lsn, &content(lsn, 64));
    }
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "snap-00000000000000000030.snap".to_owned(),
            "snap-00000000000000000040.snap".to_owned()
        ]
    );
}

#[test]
fn leftover_temporary_snapshot_is_removed_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 7, &content(7, 64));
    let leftover = dir.path().join("snap-00000000000000000008.tmp");
    fs::write(&leftover, b"half a snapshot").expect("write");
    assert_eq!(
        load_latest_snapshot(dir.path())
            .expect("load")
            .map(|(lsn, _)| lsn),
        Some(7)
    );
    assert!(!leftover.exists());
}

#[test]
fn failing_content_writer_leaves_no_snapshot_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), 1, &content(1, 64));
    let result = write_snapshot(dir.path(), 2, |w| {
        w.write_all(b"partial")?;
        Err(io::Error::other("serializer failed"))
    });
    match result {
        Err(LogError::Io { source, .. }) => assert_eq!(source.to_string(), "serializer failed"),
        other => panic!("expected Io, got {other:?}"),
    }
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["snap-00000000000000000001.snap".to_owned()]);
    assert_eq!(
        load_latest_snapshot(dir.path())
            .expect("load")
            .map(|(lsn, _)| lsn),
        Some(1)
    );
}

#[test]
fn snapshot_plus_log_suffix_restores_every_record_after_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), small_segments(1024));
    let written = fill(&mut log, 150);
    // The "state" is the concatenation of payloads; snapshot it at lsn 100.
    let state: Vec<u8> = written[..100].concat();
    write(dir.path(), 100, &state);
    assert!(log.truncate_prefix(100).expect("truncate") > 0);
    log.close().expect("close");

    let (log, recovery) = open(dir.path(), small_segments(1024));
    assert!(recovery.first_lsn.expect("records") <= 101);
    let (snap_lsn, snap) = load_latest_snapshot(dir.path())
        .expect("load")
        .expect("snapshot");
    let mut restored = snap;
    for (_, p) in read_all(&log, snap_lsn + 1) {
        restored.extend_from_slice(&p);
    }
    assert_eq!(restored, written.concat());
}
