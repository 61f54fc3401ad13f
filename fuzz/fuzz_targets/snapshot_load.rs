//! Writes arbitrary bytes as a snapshot file in an otherwise empty data
//! directory and opens a store there, as a region does on startup
//! (`Store::open`: `load_latest_snapshot` checks the trailer and checksum,
//! then the content is decoded into the keyspace).
//!
//! Checks that nothing panics, that a snapshot that does not load fails as
//! corrupt, undecodable or belonging to another region (never an I/O error,
//! never a huge allocation from a count or length in the file), and that a
//! snapshot that loads is a fixpoint after one save: saving the loaded
//! state, loading that and saving again gives the same bytes and the same
//! sequence number, version vector and clock, after which a write commits
//! with the next sequence number.
//!
//! Input layout: byte 0 holds flags (bit 0: repair the trailer); the rest is
//! the snapshot file. The file is named after the LSN its trailer declares.
//! Repairing rewrites the trailer's content length, checksum, version and
//! magic, so mutations reach the content decoder instead of stopping at the
//! checksum.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use meridian_crdt::{Blob, RegionId};
use meridian_log::{snapshot_path, FsyncPolicy, LogError, SNAPSHOT_TRAILER_BYTES};
use meridian_store::{Store, StoreError, StoreOptions};

const TRAILER_BYTES: usize = SNAPSHOT_TRAILER_BYTES as usize;
/// The region the seed snapshots were written by.
const REGION: &str = "fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if flags & 1 == 1 {
        repair_trailer(&mut file);
    }
    let dir = scratch_dir();
    let lsn = trailer_lsn(&file);
    std::fs::write(snapshot_path(dir.path(), lsn), &file).expect("snapshot written");

    let store = match open(dir.path()) {
        Ok(store) => store,
        Err(
            StoreError::Log(LogError::Corrupt { .. })
            | StoreError::BadSnapshot { .. }
            | StoreError::RegionMismatch { .. },
        ) => return,
        Err(other) => panic!("loading a damaged snapshot must fail as corrupt, not {other}"),
    };

    // The store's own log is empty, so its snapshots cover LSN 0; the fuzzed
    // file goes first so that the saved one is the newest.
    std::fs::remove_file(snapshot_path(dir.path(), lsn)).expect("fuzzed snapshot removed");
    let (first, first_meta) = save(store);
    let reloaded = open(dir.path()).expect("a saved snapshot loads");
    let loaded_seq = reloaded.db().seq();
    let (second, second_meta) = save(reloaded);
    assert_eq!(
        first_meta, second_meta,
        "reloading changed the region's metadata"
    );
    assert_eq!(first, second, "saving a loaded snapshot is not a fixpoint");

    // The region carries on from the loaded state: its next write takes the
    // next sequence number.
    let mut store = open(dir.path()).expect("a saved snapshot loads again");
    store
        .db_mut()
        .set_string(b"after-load", Blob::from("x"), false);
    store.commit().expect("a write after loading commits");
    assert_eq!(store.db().seq(), loaded_seq + 1);
});

fn open(dir: &Path) -> Result<Store, StoreError> {
    let region = RegionId::new(REGION).expect("valid region name");
    let mut opts = StoreOptions::new(dir, region);
    opts.fsync = FsyncPolicy::No;
    Store::open(opts).map(|(store, _)| store)
}

/// Snapshots `store` and returns the file's bytes and the metadata it holds.
fn save(mut store: Store) -> (Vec<u8>, String) {
    let meta = format!(
        "seq {} vv {:?} clock {:?}",
        store.db().seq(),
        store.db().version_vector(),
        store.db().clock()
    );
    let info = store.snapshot().expect("a loaded store snapshots");
    (
        std::fs::read(info.path).expect("saved snapshot reads"),
        meta,
    )
}

/// The LSN the trailer declares, or 0 when the file is too short for one.
fn trailer_lsn(file: &[u8]) -> u64 {
    let Some(at) = file.len().checked_sub(TRAILER_BYTES) else {
        return 0;
    };
    u64::from_le_bytes(file[at..at + 8].try_into().expect("8 bytes"))
}

/// Makes the trailer agree with the content: length, crc32c, format
/// version 1 and magic; the LSN is left as it is.
fn repair_trailer(file: &mut [u8]) {
    let Some(at) = file.len().checked_sub(TRAILER_BYTES) else {
        return;
    };
    let crc = crc32c::crc32c(&file[..at]);
    file[at + 8..at + 16].copy_from_slice(&(at as u64).to_le_bytes());
    file[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    file[at + 20..at + 24].copy_from_slice(&1u32.to_le_bytes());
    file[at + 24..at + 32].copy_from_slice(b"MRDNSNAP");
}

/// A fresh directory, in memory when the machine has `/dev/shm`, because
/// opening a store fsyncs.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}
