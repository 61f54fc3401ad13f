//! Merging a peer's whole state (anti-entropy) into a region, by hand:
//! what the region's own next op looks like afterwards.

use meridian_crdt::{Blob, Op, RegionId, Value};
use meridian_store::{Db, RemoteApply};

const NOW: u64 = 1_800_000_000_000;

fn region(name: &str) -> Db {
    let mut db = Db::new(RegionId::new(name).unwrap(), 500);
    db.set_now_ms(NOW);
    db
}

fn set(db: &mut Db, key: &[u8], value: &str) -> Op {
    db.set_string(key, Blob::from(value), false);
    db.commit().expect("an op")
}

fn string_at(db: &mut Db, key: &[u8]) -> Option<Vec<u8>> {
    match db.get(key).map(|e| e.value()) {
        Some(Value::Str(r)) => Some(r.render().into_owned()),
        _ => None,
    }
}

/// A region whose data directory was lost starts again from nothing while
/// its peers still hold its ops. Anti-entropy merges their state and their
/// version vector back in; its next write must take the dot after the ops
/// the peers hold. It used to take the dot after the ones it had issued
/// since the loss (none), which every peer then dropped as a duplicate: the
/// write was acknowledged and never replicated.
#[test]
fn a_region_that_lost_its_data_writes_after_the_ops_peers_hold_of_it() {
    let (mut a, mut b) = (region("sm-a"), region("sm-b"));
    for value in ["1", "2"] {
        let op = set(&mut a, b"k", value);
        assert!(matches!(
            b.apply_remote(&op, NOW),
            Ok(RemoteApply::Applied { .. })
        ));
    }

    let mut a_again = region("sm-a");
    a_again.merge_state(
        b"k",
        b.keyspace().get_any(b"k"),
        &b.version_vector().clone(),
    );
    a_again.absorb_context(&b.version_vector().clone(), b.clock());
    assert_eq!(string_at(&mut a_again, b"k").as_deref(), Some(&b"2"[..]));

    let op = set(&mut a_again, b"k", "3");
    assert_eq!(
        op.dot().seq(),
        3,
        "the next dot follows the two ops b holds"
    );
    assert!(
        matches!(b.apply_remote(&op, NOW), Ok(RemoteApply::Applied { .. })),
        "b applies the write made after the merge"
    );
    assert_eq!(string_at(&mut b, b"k").as_deref(), Some(&b"3"[..]));
}
