//! A power loss keeps only what was fdatasynced. Recovery after one must
//! never lose what was synced, and must not give a later op an LSN the
//! snapshot or the conflict journal already accounts for.

use meridian_crdt::value::Value;
use meridian_crdt::{Blob, RegionId};
use meridian_store::{FsyncPolicy, Store, StoreOptions};

fn open(dir: &std::path::Path) -> Store {
    let mut opts = StoreOptions::new(dir, RegionId::new("eu").unwrap());
    opts.fsync = FsyncPolicy::Everysec;
    Store::open(opts).expect("open").0
}

fn set(store: &mut Store, key: &str, value: &str) {
    store
        .db_mut()
        .set_string(key.as_bytes(), Blob::from(value.as_bytes()), false);
    store.commit().expect("commit");
    store.flush().expect("flush");
}

fn get(store: &mut Store, key: &str) -> Option<String> {
    match store.db_mut().get(key.as_bytes())?.value() {
        Value::Str(reg) => Some(String::from_utf8_lossy(&reg.render()).into_owned()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

/// Loses everything not synced, as the power going out does.
fn power_loss(store: Store) {
    let tails = store.unsynced_tails();
    drop(store);
    for tail in tails {
        tail.lose_power(0).expect("cut the unsynced tail");
    }
}

/// A snapshot taken while the log's newest records were not yet synced
/// used to end up ahead of the log after a power loss: the region then
/// gave new ops LSNs the snapshot claimed to cover, and the next recovery
/// skipped them — acknowledged writes lost although they were synced.
#[test]
fn ops_after_a_power_loss_that_followed_a_snapshot_survive_the_next_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    for i in 0..10 {
        set(&mut store, &format!("k{i}"), "before");
    }
    store.snapshot().expect("snapshot");
    set(&mut store, "unsynced", "x");
    power_loss(store);

    let mut store = open(dir.path());
    assert_eq!(get(&mut store, "k9").as_deref(), Some("before"));
    set(&mut store, "after", "synced");
    store.sync().expect("sync");
    drop(store);

    let mut store = open(dir.path());
    assert_eq!(
        get(&mut store, "after").as_deref(),
        Some("synced"),
        "a synced write after the power loss was lost by the next recovery"
    );
    assert_eq!(get(&mut store, "k0").as_deref(), Some("before"));
}

/// The conflict journal is synced apart from the op log. When a power loss
/// keeps a journal entry whose op the log lost, that entry must go: the op's
/// LSN will name another op, and the conflict it reports never happened.
#[test]
fn journal_entries_of_ops_lost_in_a_power_loss_are_dropped() {
    let (eu_dir, us_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut eu = open(eu_dir.path());
    set(&mut eu, "k", "from-eu");
    eu.sync().expect("sync");
    let mut us_opts = StoreOptions::new(us_dir.path(), RegionId::new("us").unwrap());
    us_opts.fsync = FsyncPolicy::Everysec;
    let mut us = Store::open(us_opts).expect("open us").0;
    set(&mut us, "k", "from-us");
    us.sync().expect("sync us");
    let (_, payload) = us
        .log()
        .reader(1)
        .expect("reader")
        .next()
        .expect("one record")
        .expect("record");
    // Concurrent with eu's write: a conflict, journaled with the op's LSN.
    eu.apply_peer_op(&payload, 0).expect("apply");
    eu.flush().expect("flush");
    assert_eq!(eu.journal().retained(), 1);
    let tails = eu.unsynced_tails();
    assert_eq!(tails.len(), 2, "op log and journal");
    drop(eu);
    // The op log loses the peer op; the journal keeps its entry.
    tails[0].lose_power(0).expect("cut the op log");

    let mut eu = open(eu_dir.path());
    assert_eq!(get(&mut eu, "k").as_deref(), Some("from-eu"));
    assert_eq!(
        eu.journal().retained(),
        0,
        "the entry of the lost op was kept"
    );
    // The LSN now goes to an unrelated op; a restart still shows no conflict.
    set(&mut eu, "other", "x");
    eu.sync().expect("sync");
    drop(eu);
    let eu = open(eu_dir.path());
    assert_eq!(eu.journal().retained(), 0);
    assert!(!eu_dir.path().join("journal.rewrite").exists());
    assert!(!eu_dir.path().join("journal.old").exists());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// One op can find two conflicts. A power loss that keeps the journal entry
/// of the first and loses the second used to lose the second for good:
/// recovery re-journaled only ops after the newest journaled one.
#[test]
fn every_conflict_of_an_op_survives_a_power_loss_that_split_its_entries() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let open_as = |dir: &std::path::Path, region: &str| {
        let mut opts = StoreOptions::new(dir, RegionId::new(region).unwrap());
        opts.fsync = FsyncPolicy::Everysec;
        Store::open(opts).expect("open").0
    };
    let record = |store: &Store| -> Vec<u8> {
        store
            .log()
            .reader(1)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .1
            .to_vec()
    };
    let mut us = open_as(dirs[1].path(), "us");
    set(&mut us, "k", "from-us");
    us.sync().unwrap();
    let mut ap = open_as(dirs[2].path(), "ap");
    set(&mut ap, "k", "from-ap");
    ap.sync().unwrap();
    let mut eu = open_as(dirs[0].path(), "eu");
    set(&mut eu, "k", "from-eu");
    eu.apply_peer_op(&record(&us), 0).unwrap();
    eu.sync().unwrap();
    assert_eq!(eu.journal().retained(), 1);
    // Concurrent with both values eu holds: two entries for one op.
    eu.apply_peer_op(&record(&ap), 0).unwrap();
    eu.flush().unwrap();
    assert_eq!(eu.journal().retained(), 3);
    let journal_tail = eu.unsynced_tails()[1].clone();
    // Only the journal is cut; the op log keeps the op (the OS happened to
    // write it back).
    drop(eu);
    let unsynced = journal_tail.written_bytes - journal_tail.synced_bytes;
    assert!(unsynced > 0);
    for kept in 0..=unsynced {
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(dirs[0].path(), scratch.path());
        let tail = meridian_log::UnsyncedTail {
            path: scratch
                .path()
                .join(journal_tail.path.strip_prefix(dirs[0].path()).unwrap()),
            ..journal_tail.clone()
        };
        tail.lose_power(kept).unwrap();
        let eu = open_as(scratch.path(), "eu");
        assert_eq!(
            eu.journal().retained(),
            3,
            "kept {kept} of {unsynced} unsynced journal bytes"
        );
    }
}
