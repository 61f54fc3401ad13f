//! What deletes leave behind, between two regions exchanging ops by hand:
//! a TTL a delete missed never reaches a key created again, and tombstone
//! collection drops leftovers without changing what anyone reads.

use meridian_crdt::{Blob, Delta, Op, RegionId};
use meridian_store::{Db, RemoteApply};

const NOW: u64 = 1_800_000_000_000;

fn region(name: &str) -> Db {
    let mut db = Db::new(RegionId::new(name).unwrap(), 500);
    db.set_now_ms(NOW);
    db
}

fn commit(db: &mut Db) -> Op {
    db.commit().expect("an op")
}

fn deliver(to: &mut Db, ops: &[&Op]) {
    for op in ops {
        match to.apply_remote(op, NOW) {
            Ok(RemoteApply::Applied { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

fn collect_all(db: &mut Db) -> usize {
    let candidates = db.tombstone_candidates(usize::MAX);
    db.collect_tombstones(candidates).incarnations
}

/// DEL at one region while another sets a TTL: the TTL outlives the
/// content (hidden). A key created again later must not expire with it,
/// whichever region creates it, and whether or not a region collected the
/// leftover TTL first.
#[test]
fn a_key_created_after_a_delete_that_missed_an_expire_has_no_ttl() {
    for collect_first in [false, true] {
        let (mut a, mut b) = (region("ts-a"), region("ts-b"));
        a.hset(b"h", vec![(Blob::from("f"), Blob::from("v"))]);
        let set = commit(&mut a);
        deliver(&mut b, &[&set]);
        assert!(a.del(b"h"));
        let del = commit(&mut a);
        b.set_ttl(b"h", Some(NOW + 60_000));
        let expire = commit(&mut b);
        deliver(&mut a, &[&expire]);
        deliver(&mut b, &[&del]);
        for db in [&a, &b] {
            assert!(db.peek(b"h").is_none());
            assert_eq!(
                db.keyspace().hidden_len(),
                1,
                "the TTL outlives the content"
            );
        }
        if collect_first {
            // Both hold both ops: stable. Only one region collects.
            assert_eq!(collect_all(&mut a), 1);
            assert_eq!(a.keyspace().hidden_len(), 0);
        }
        a.sadd(b"h", vec![Blob::from("m")]);
        let again = commit(&mut a);
        deliver(&mut b, &[&again]);
        for db in [&a, &b] {
            let e = db.peek(b"h").expect("the new set");
            assert_eq!(e.deadline_ms(), None, "collected first: {collect_first}");
        }
    }
}

/// A deleted counter is a hidden key until collected; counting then starts
/// from zero the same way at both regions.
#[test]
fn a_collected_counter_counts_again_from_zero_everywhere() {
    let (mut a, mut b) = (region("tc-a"), region("tc-b"));
    a.incr(b"c", Delta::Int(5));
    let inc_a = commit(&mut a);
    b.incr(b"c", Delta::Int(2));
    let inc_b = commit(&mut b);
    deliver(&mut a, &[&inc_b]);
    deliver(&mut b, &[&inc_a]);
    assert!(b.del(b"c"));
    let del = commit(&mut b);
    deliver(&mut a, &[&del]);
    assert_eq!(a.keyspace().hidden_len(), 1);
    assert_eq!(collect_all(&mut a), 2, "both regions' totals");
    assert_eq!(a.keyspace().hidden_len(), 0);
    // b has not collected; a increments its collected counter.
    a.incr(b"c", Delta::Int(3));
    let again = commit(&mut a);
    deliver(&mut b, &[&again]);
    for db in [&a, &b] {
        let e = db.peek(b"c").expect("counter");
        match e.value() {
            meridian_crdt::Value::Str(r) => assert_eq!(&r.render()[..], b"3"),
            other => panic!("{other:?}"),
        }
    }
    // a's new incarnation replaced its old one at b; b's own is left.
    assert_eq!(collect_all(&mut b), 1);
    let state = |db: &Db| {
        let e = db.peek(b"c").unwrap().canonical().into_owned();
        postcard::to_stdvec(&e).unwrap()
    };
    assert_eq!(
        state(&a),
        state(&b),
        "whole states agree once both collected"
    );
}
