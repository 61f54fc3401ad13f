//! The change feed records local writes, expiries and peers' ops with the
//! event each stands for, only while it is on; it says which change created
//! its key, and what notifications announced mid-batch stays for the take.

use meridian_crdt::{Blob, RegionId};
use meridian_store::{Change, Db, Event, Origin};

fn db(name: &str) -> Db {
    let mut db = Db::new(RegionId::new(name).unwrap(), 500);
    db.set_now_ms(1_000);
    db
}

fn change(key: &str, origin: Origin) -> Change {
    Change {
        key: Blob::from(key.as_bytes()),
        origin,
        created: false,
    }
}

fn created(key: &str, origin: Origin) -> Change {
    Change {
        created: true,
        ..change(key, origin)
    }
}

fn blob(s: &str) -> Blob {
    Blob::from(s.as_bytes())
}

fn peer(class: u8, name: &'static str) -> Origin {
    Origin::Peer(Event::new(class, name))
}

/// What a peer's ops look like to `us`: every op `write` makes in its own
/// region, applied in turn, with the events they carried.
fn peer_events(setup: impl Fn(&mut Db), write: impl Fn(&mut Db)) -> Vec<Change> {
    let mut eu = db("feed-eu");
    let mut us = db("feed-us");
    setup(&mut eu);
    if let Some(op) = eu.commit() {
        us.apply_remote(&op, 1_000).unwrap();
    }
    us.set_change_feed(true);
    write(&mut eu);
    let op = eu.commit().expect("the write made an op");
    us.apply_remote(&op, 1_000).unwrap();
    us.take_changes()
}

#[test]
fn records_nothing_while_off() {
    let mut eu = db("feed-eu");
    eu.set_string(b"k", blob("v"), false);
    eu.commit();
    assert_eq!(eu.take_changes(), vec![]);
}

#[test]
fn local_writes_and_expiry_are_recorded_in_order() {
    let mut eu = db("feed-eu");
    eu.set_change_feed(true);
    eu.set_string(b"a", blob("1"), false);
    eu.set_ttl(b"a", Some(1_500));
    eu.sadd(b"s", vec![blob("m")]);
    eu.sadd(b"s", vec![blob("n")]);
    eu.commit();
    eu.set_now_ms(2_000);
    assert!(eu.get(b"a").is_none());
    eu.commit();
    assert_eq!(
        eu.take_changes(),
        vec![
            created("a", Origin::Local),
            change("a", Origin::Local),
            created("s", Origin::Local),
            change("s", Origin::Local),
            change("a", Origin::Expired),
        ]
    );
    assert_eq!(eu.take_changes(), vec![]);
}

#[test]
fn announced_changes_are_still_taken_and_counted() {
    let mut eu = db("feed-eu");
    eu.set_change_feed(true);
    eu.set_string(b"a", blob("1"), false);
    assert_eq!(eu.announce_changes(), &[created("a", Origin::Local)]);
    assert_eq!(eu.announce_changes(), &[]);
    eu.set_string(b"b", blob("1"), false);
    assert_eq!(eu.changes_announced(), 1);
    let all = eu.take_changes();
    assert_eq!(all.len(), 2);
    assert_eq!(eu.changes_announced(), 0);
    eu.set_string(b"c", blob("1"), false);
    assert_eq!(eu.announce_changes(), &[created("c", Origin::Local)]);
}

#[test]
fn peers_ops_carry_their_event() {
    let mut eu = db("feed-eu");
    let mut us = db("feed-us");
    eu.hset(b"h", vec![(blob("f"), blob("v"))]);
    let first = eu.commit().unwrap();
    eu.del(b"h");
    let second = eu.commit().unwrap();
    us.set_change_feed(true);
    us.apply_remote(&first, 1_000).unwrap();
    us.apply_remote(&second, 1_000).unwrap();
    assert_eq!(
        us.take_changes(),
        vec![
            created("h", peer(b'h', "hset")),
            change("h", peer(b'g', "del"))
        ]
    );
    us.set_change_feed(false);
    assert!(!us.change_feed_on());
}

#[test]
fn a_peers_removal_that_empties_a_key_is_followed_by_del() {
    let changes = peer_events(
        |eu| eu.sadd(b"s", vec![blob("m")]),
        |eu| eu.srem(b"s", vec![blob("m")]),
    );
    assert_eq!(
        changes,
        vec![
            change("s", peer(b's', "srem")),
            change("s", peer(b'g', "del"))
        ]
    );
}

#[test]
fn a_peers_delete_of_a_key_absent_here_is_no_event() {
    let changes = peer_events(
        |eu| eu.set_string(b"k", blob("v"), false),
        |eu| {
            eu.del(b"k");
            eu.set_string(b"k", blob("again"), false);
            eu.del(b"k");
        },
    );
    assert_eq!(
        changes,
        vec![
            change("k", peer(b'g', "del")),
            created("k", peer(b'$', "set")),
            change("k", peer(b'g', "del")),
        ]
    );
}

#[test]
fn peers_increments_are_named_by_their_kind() {
    use meridian_crdt::Delta;
    let changes = peer_events(
        |_| {},
        |eu| {
            eu.incr(b"i", Delta::Int(2));
            eu.incr(b"f", Delta::Float(0.5));
            eu.hincr(b"h", blob("a"), Delta::Int(1));
            eu.hincr(b"h", blob("b"), Delta::Float(1.5));
        },
    );
    let names: Vec<&str> = changes
        .iter()
        .map(|c| match c.origin {
            Origin::Peer(e) => e.name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["incrby", "incrbyfloat", "hincrby", "hincrbyfloat"]);
}

/// List inserts and removals are named from where they land in the list
/// as the receiving region holds it.
#[test]
fn peers_list_writes_are_named_by_where_they_land() {
    let seed = |eu: &mut Db| eu.lpush(b"l", vec![blob("a"), blob("b"), blob("c")], false);
    let name = |write: fn(&mut Db)| -> Vec<&'static str> {
        peer_events(seed, write)
            .iter()
            .map(|c| match c.origin {
                Origin::Peer(e) => e.name,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(name(|eu| eu.lpush(b"l", vec![blob("x")], true)), ["lpush"]);
    assert_eq!(name(|eu| eu.lpush(b"l", vec![blob("x")], false)), ["rpush"]);
    assert_eq!(name(|eu| eu.linsert(b"l", 1, blob("x"))), ["linsert"]);
    assert_eq!(name(|eu| drop(eu.lpop(b"l", true, 2))), ["lpop"]);
    assert_eq!(name(|eu| drop(eu.lpop(b"l", false, 1))), ["rpop"]);
    assert_eq!(name(|eu| eu.lremove(b"l", &[(1, 1)])), ["lrem"]);
    assert_eq!(name(|eu| eu.lremove(b"l", &[(0, 0), (2, 2)])), ["ltrim"]);
    assert_eq!(name(|eu| drop(eu.lpop(b"l", true, 3))), ["lpop", "del"]);
    assert_eq!(
        peer_events(
            |_| {},
            |eu| eu.lpush(b"n", vec![blob("x"), blob("y")], true)
        )[0]
        .origin,
        peer(b'l', "lpush")
    );
    assert_eq!(
        peer_events(
            |_| {},
            |eu| eu.lpush(b"n", vec![blob("x"), blob("y")], false)
        )[0],
        created("n", peer(b'l', "rpush"))
    );
}

/// A merged state is a change only when it changed what this region holds;
/// one that brought the key here created it.
#[test]
fn merges_are_recorded_only_when_they_change_the_key() {
    let mut eu = db("feed-eu");
    let mut us = db("feed-us");
    eu.set_string(b"k", blob("v"), false);
    eu.commit();
    us.set_change_feed(true);
    let theirs = eu.keyspace().get(b"k").cloned();
    us.merge_state(b"k", theirs.as_ref(), eu.version_vector());
    assert_eq!(us.take_changes(), vec![created("k", Origin::Merged)]);
    us.merge_state(b"k", theirs.as_ref(), eu.version_vector());
    assert_eq!(us.take_changes(), vec![], "the same state again");
}
