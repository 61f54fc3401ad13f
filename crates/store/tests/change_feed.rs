//! The change feed records local writes, expiries and peers' ops with the
//! event each stands for, only while it is on.

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
    }
}

#[test]
fn records_nothing_while_off() {
    let mut eu = db("feed-eu");
    eu.set_string(b"k", Blob::from(&b"v"[..]), false);
    eu.commit();
    assert_eq!(eu.take_changes(), vec![]);
}

#[test]
fn local_writes_and_expiry_are_recorded_in_order() {
    let mut eu = db("feed-eu");
    eu.set_change_feed(true);
    eu.set_string(b"a", Blob::from(&b"1"[..]), false);
    eu.set_ttl(b"a", Some(1_500));
    eu.sadd(b"s", vec![Blob::from(&b"m"[..])]);
    eu.commit();
    eu.set_now_ms(2_000);
    assert!(eu.get(b"a").is_none());
    eu.commit();
    assert_eq!(
        eu.take_changes(),
        vec![
            change("a", Origin::Local),
            change("a", Origin::Local),
            change("s", Origin::Local),
            change("a", Origin::Expired),
        ]
    );
    assert_eq!(eu.take_changes(), vec![]);
}

#[test]
fn peers_ops_carry_their_event() {
    let mut eu = db("feed-eu");
    let mut us = db("feed-us");
    eu.hset(b"h", vec![(Blob::from(&b"f"[..]), Blob::from(&b"v"[..]))]);
    let first = eu.commit().unwrap();
    eu.del(b"h");
    let second = eu.commit().unwrap();
    us.set_change_feed(true);
    us.apply_remote(&first, 1_000).unwrap();
    us.apply_remote(&second, 1_000).unwrap();
    let hset = Event {
        class: b'h',
        name: "hset",
    };
    let del = Event {
        class: b'g',
        name: "del",
    };
    assert_eq!(
        us.take_changes(),
        vec![
            change("h", Origin::Peer(hset)),
            change("h", Origin::Peer(del))
        ]
    );
    us.set_change_feed(false);
    assert!(!us.change_feed_on());
}
