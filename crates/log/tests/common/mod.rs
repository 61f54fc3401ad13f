//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use meridian_log::{FsyncPolicy, Log, LogError, LogOptions, Recovery};

/// Options for tests: no fsync on commit (rolls still fsync) and small segments.
pub fn small_segments(segment_max_bytes: u64) -> LogOptions {
    LogOptions {
        segment_max_bytes,
        fsync: FsyncPolicy::No,
        ..LogOptions::default()
    }
}

pub fn open(dir: &Path, opts: LogOptions) -> (Log, Recovery) {
    match Log::open(dir, opts) {
        Ok(opened) => opened,
        Err(err) => panic!("open failed: {err}"),
    }
}

/// A payload whose bytes and length depend on `i`, so misplaced records show.
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 40) as usize + 1;
    (0..len)
        .map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

/// Appends `count` records made by [`payload`] and commits; returns the payloads.
pub fn fill(log: &mut Log, count: u64) -> Vec<Vec<u8>> {
    let mut written = Vec::new();
    for _ in 0..count {
        let lsn_expected = log.last_lsn() + 1;
        let p = payload(lsn_expected);
        assert_eq!(log.append(&p).expect("append"), lsn_expected);
        written.push(p);
    }
    log.commit().expect("commit");
    written
}

/// Copies every file of `src` into `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    for entry in fs::read_dir(src).expect("read_dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name");
        fs::copy(&path, dst.join(name)).expect("copy");
    }
}

/// Every record from `from_lsn` that a fresh reader sees.
pub fn read_all(log: &Log, from_lsn: u64) -> Vec<(u64, Vec<u8>)> {
    log.reader(from_lsn)
        .expect("reader")
        .collect::<Result<Vec<_>, LogError>>()
        .expect("read")
}

/// Segment files in `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("seg-") && name.ends_with(".log")
        })
        .collect();
    files.sort();
    files
}

/// Frame size of a record with this payload.
pub fn frame_bytes(payload: &[u8]) -> u64 {
    16 + payload.len() as u64
}

pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).expect("write");
}

pub fn expect_corrupt(result: Result<(Log, Recovery), LogError>) -> (PathBuf, u64, String) {
    match result {
        Err(LogError::Corrupt {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, recovery)) => panic!("expected Corrupt, but the log opened: {recovery}"),
    }
}
