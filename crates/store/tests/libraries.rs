//! FUNCTION libraries in the store: kept apart from the keyspace,
//! replicated as effects of ops, recovered from snapshot + log replay,
//! merged by anti-entropy, and journaled when concurrent loads conflict.

use meridian_crdt::{Blob, Op, RegionId, Rule};
use meridian_store::{Db, FsyncPolicy, RemoteApply, Store, StoreOptions};

const NOW: u64 = 1_800_000_000_000;

fn region(name: &str) -> Db {
    let mut db = Db::new(RegionId::new(name).unwrap(), 500);
    db.set_now_ms(NOW);
    db
}

fn code(db: &Db, name: &[u8]) -> Option<String> {
    db.libraries()
        .get(name)
        .map(|v| String::from_utf8_lossy(&v.code).into_owned())
}

fn open(dir: &std::path::Path, name: &str) -> Store {
    let mut opts = StoreOptions::new(dir, RegionId::new(name).unwrap());
    opts.fsync = FsyncPolicy::No;
    let (mut store, _) = Store::open(opts).unwrap();
    store.db_mut().set_now_ms(NOW);
    store
}

#[test]
fn libraries_are_not_keys() {
    let mut db = region("lib-a");
    let g0 = db.libraries_generation();
    db.library_set(b"mylib", Blob::from("code1"));
    let op = db.commit().expect("an op");
    assert_eq!(op.effects.len(), 1);
    assert!(db.libraries_generation() > g0);
    assert_eq!(db.keyspace().len(), 0, "no key holds the library");
    assert_eq!(db.keyspace().hidden_len(), 0);
    assert!(db.get(b"mylib").is_none());
    // A key of the same name is a different thing.
    db.set_string(b"mylib", Blob::from("v"), false);
    db.del(b"mylib");
    db.commit();
    assert_eq!(code(&db, b"mylib").as_deref(), Some("code1"));
    assert!(!db.library_del(b"other"), "nothing to delete");
    assert!(db.commit().is_none(), "a delete of nothing writes nothing");
    assert!(db.library_del(b"mylib"));
    db.commit().unwrap();
    assert!(db.libraries().is_empty());
}

#[test]
fn a_peer_applies_loads_and_deletes() {
    let (mut a, mut b) = (region("lib-a"), region("lib-b"));
    a.library_set(b"l", Blob::from("v1"));
    let op1 = a.commit().unwrap();
    let g = b.libraries_generation();
    assert!(matches!(
        b.apply_remote(&op1, NOW),
        Ok(RemoteApply::Applied { .. })
    ));
    assert!(b.libraries_generation() > g);
    assert_eq!(code(&b, b"l").as_deref(), Some("v1"));
    assert!(b.library_del(b"l"));
    let op2 = b.commit().unwrap();
    a.apply_remote(&op2, NOW).unwrap();
    assert!(a.libraries().is_empty());
}

#[test]
fn concurrent_loads_converge_and_the_loser_is_journaled() {
    let (mut a, mut b) = (region("lib-a"), region("lib-b"));
    a.library_set(b"l", Blob::from("from-a"));
    let oa = a.commit().unwrap();
    b.set_now_ms(NOW + 5);
    b.library_set(b"l", Blob::from("from-b"));
    let ob = b.commit().unwrap();
    a.apply_remote(&ob, NOW).unwrap();
    b.apply_remote(&oa, NOW).unwrap();
    assert_eq!(
        code(&a, b"l").as_deref(),
        Some("from-b"),
        "the later tag wins"
    );
    assert_eq!(a.libraries(), b.libraries());
    for db in [&mut a, &mut b] {
        let found = db.take_fresh_conflicts();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, Rule::Library);
        assert_eq!(&found[0].loser_value[..], b"from-a");
    }
}

/// FUNCTION FLUSH in one region removes only the libraries it observed.
#[test]
fn a_flush_leaves_a_library_loaded_concurrently() {
    let (mut a, mut b) = (region("lib-a"), region("lib-b"));
    a.library_set(b"old", Blob::from("o"));
    let o1 = a.commit().unwrap();
    b.apply_remote(&o1, NOW).unwrap();
    a.library_set(b"new", Blob::from("n"));
    let o2 = a.commit().unwrap();
    let names: Vec<Blob> = b.libraries().iter().map(|(n, _)| n.clone()).collect();
    b.set_now_ms(NOW + 1000);
    for n in names {
        b.library_del(&n);
    }
    let flush = b.commit().unwrap();
    a.apply_remote(&flush, NOW).unwrap();
    b.apply_remote(&o2, NOW).unwrap();
    assert_eq!(a.libraries(), b.libraries());
    assert!(code(&a, b"old").is_none());
    assert_eq!(code(&a, b"new").as_deref(), Some("n"));
}

#[test]
fn libraries_survive_a_restart_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), "lib-a");
        s.db_mut()
            .library_set(b"snap", Blob::from("in the snapshot"));
        s.db_mut()
            .library_set(b"gone", Blob::from("deleted after it"));
        s.commit().unwrap();
        s.snapshot().unwrap();
        s.db_mut().library_set(b"log", Blob::from("in the log"));
        s.db_mut().library_del(b"gone");
        s.commit().unwrap();
        s.flush().unwrap();
        s.sync().unwrap();
    }
    let s = open(dir.path(), "lib-a");
    assert_eq!(code(s.db(), b"snap").as_deref(), Some("in the snapshot"));
    assert_eq!(code(s.db(), b"log").as_deref(), Some("in the log"));
    assert!(code(s.db(), b"gone").is_none());
    assert_eq!(s.db().libraries().len(), 2);
    assert_eq!(s.db().keyspace().len(), 0);
}

/// A region that missed the ops gets the libraries by a state merge, and
/// a delete the peer made removes only what the peer's vector covers.
#[test]
fn a_state_merge_brings_libraries_and_their_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = region("lib-a");
    a.library_set(b"x", Blob::from("x1"));
    a.library_set(b"y", Blob::from("y1"));
    let o1: Op = a.commit().unwrap();
    let mut b = open(dir.path(), "lib-b");
    b.db_mut().apply_remote(&o1, NOW).unwrap();
    b.db_mut().library_set(b"z", Blob::from("z-from-b"));
    b.commit().unwrap();
    a.library_del(b"x");
    a.commit().unwrap();
    let (libs, vv, clock) = (a.libraries().clone(), a.version_vector().clone(), a.clock());
    let g = b.db().libraries_generation();
    b.merge_states(&[], &libs, &vv, clock).unwrap();
    assert!(b.db().libraries_generation() > g);
    assert!(code(b.db(), b"x").is_none(), "the delete a observed");
    assert_eq!(code(b.db(), b"y").as_deref(), Some("y1"));
    assert_eq!(
        code(b.db(), b"z").as_deref(),
        Some("z-from-b"),
        "a never saw it"
    );
    // The merge is durable: the snapshot it wrote holds the libraries.
    drop(b);
    let b = open(dir.path(), "lib-b");
    assert_eq!(b.db().libraries().len(), 2);
}
