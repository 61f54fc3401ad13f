//! Client tracking (CLIENT TRACKING) on real regions: a RESP3 client is
//! pushed invalidations on its own connection, a RESP2 client redirects
//! them to a Pub/Sub subscriber, BCAST sends changed keys by prefix,
//! OPTIN/OPTOUT and NOLOOP choose what is tracked and sent, and a change
//! made in another region (a write streamed from it, or state merged by
//! anti-entropy) invalidates a key a client cached in this one.
//!
//! "Nothing more was sent" is checked with a PING: invalidations queued
//! for a connection are written before the replies of its next command.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{http_get, Cluster};
use common::{Conn, Meridian};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn keys(keys: &[&str]) -> Frame {
    Frame::Array(keys.iter().map(|k| bulk(k)).collect())
}

/// The push a RESP3 client gets for `keys` (`None`: every key).
fn invalidate(k: Option<&[&str]>) -> Frame {
    Frame::Push(vec![bulk("invalidate"), k.map_or(Frame::Null, keys)])
}

/// The Pub/Sub message a RESP2 redirect target gets for `keys`.
fn redirected(k: Option<&[&str]>) -> Frame {
    Frame::Array(vec![
        bulk("message"),
        bulk("__redis__:invalidate"),
        k.map_or(Frame::Null, keys),
    ])
}

/// A RESP3 connection with tracking on, with `options`.
fn tracker(m: &Meridian, options: &[&str]) -> Conn {
    let mut c = m.conn();
    c.cmd(&["HELLO", "3"]);
    let mut cmd = vec!["CLIENT", "TRACKING", "on"];
    cmd.extend_from_slice(options);
    assert_eq!(c.cmd(&cmd), ok());
    c
}

/// Nothing is waiting for `c`: its next reply is PING's own.
fn assert_nothing_sent(c: &mut Conn) {
    assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

fn client_id(c: &mut Conn) -> i64 {
    match c.cmd(&["CLIENT", "ID"]) {
        Frame::Integer(id) => id,
        other => panic!("CLIENT ID answered {other:?}"),
    }
}

/// A connection subscribed to `__redis__:invalidate`, and its id.
fn invalidation_subscriber(m: &Meridian) -> (Conn, i64) {
    let mut sub = m.conn();
    let id = client_id(&mut sub);
    sub.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
    (sub, id)
}

#[test]
fn resp3_client_is_told_once_of_each_change_to_a_key_it_read() {
    let m = Meridian::start(&[]);
    let mut t = tracker(&m, &[]);
    let mut w = m.conn();
    w.cmd(&["SET", "k", "v1"]);
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v1"));
    w.cmd(&["SET", "k", "v2"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["k"]))));
    // Told once: the key is tracked again only once it is read again.
    w.cmd(&["SET", "k", "v3"]);
    w.cmd(&["SET", "never-read", "1"]);
    assert_nothing_sent(&mut t);

    // Its own write invalidates too, after the write's reply.
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v3"));
    assert_eq!(t.cmd(&["DEL", "k"]), Frame::Integer(1));
    assert_eq!(t.read(), Some(invalidate(Some(&["k"]))));

    // Keys read in a transaction are tracked; a write earlier in the
    // transaction does not invalidate what is read after it.
    t.cmd(&["MULTI"]);
    t.cmd(&["SET", "a", "1"]);
    t.cmd(&["GET", "a"]);
    t.cmd(&["MGET", "b", "c"]);
    assert_eq!(
        t.cmd(&["EXEC"]),
        Frame::Array(vec![ok(), bulk("1"), Frame::Array(vec![Frame::Null; 2])])
    );
    w.cmd(&["MSET", "a", "2", "c", "2"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["a"]))));
    assert_eq!(t.read(), Some(invalidate(Some(&["c"]))));
    assert_nothing_sent(&mut t);

    // A key read through a numkeys list is tracked as Redis finds it.
    t.cmd(&["ZUNION", "2", "z1", "z2"]);
    w.cmd(&["ZADD", "z2", "1", "m"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["z2"]))));

    // An expiry is a change like any other: no command needed.
    w.cmd(&["SET", "short", "x", "PX", "500"]);
    assert_eq!(t.cmd(&["GET", "short"]), bulk("x"));
    assert_eq!(t.read(), Some(invalidate(Some(&["short"]))));

    // A flush invalidates every key at once.
    t.cmd(&["GET", "k"]);
    w.cmd(&["FLUSHALL"]);
    assert_eq!(t.read(), Some(invalidate(None)));
    assert_nothing_sent(&mut t);
}

#[test]
fn resp2_client_redirects_invalidations_to_a_subscriber() {
    let m = Meridian::start(&[]);
    let (mut sub, sub_id) = invalidation_subscriber(&m);
    let mut t = m.conn();
    let id = sub_id.to_string();
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), ok());
    assert_eq!(t.cmd(&["CLIENT", "GETREDIR"]), Frame::Integer(sub_id));
    t.cmd(&["MGET", "a", "b"]);
    let mut w = m.conn();
    w.cmd(&["MSET", "a", "1", "b", "2"]);
    assert_eq!(sub.read(), Some(redirected(Some(&["a"]))));
    assert_eq!(sub.read(), Some(redirected(Some(&["b"]))));
    t.cmd(&["GET", "a"]);
    w.cmd(&["FLUSHDB"]);
    assert_eq!(sub.read(), Some(redirected(None)));

    // The target gone, a RESP3 client is told its redirect is broken as
    // soon as an invalidation cannot reach it.
    t.cmd(&["HELLO", "3"]);
    t.cmd(&["GET", "a"]);
    assert_eq!(sub.cmd(&["QUIT"]), ok());
    w.cmd(&["SET", "a", "3"]);
    assert_eq!(
        t.read(),
        Some(Frame::Push(vec![
            bulk("tracking-redir-broken"),
            Frame::Integer(sub_id)
        ]))
    );
    let info = t.cmd(&["CLIENT", "TRACKINGINFO"]);
    assert_eq!(
        info,
        Frame::Map(vec![
            (
                bulk("flags"),
                Frame::Set(vec![bulk("on"), bulk("broken_redirect")])
            ),
            (bulk("redirect"), Frame::Integer(sub_id)),
            (bulk("prefixes"), Frame::Array(vec![])),
        ])
    );
    let Frame::Verbatim { text, .. } = t.cmd(&["CLIENT", "INFO"]) else {
        panic!("CLIENT INFO is verbatim text");
    };
    let line = String::from_utf8_lossy(&text);
    assert!(line.contains(" flags=tR "), "{line}");
    assert!(line.contains(&format!(" redir={sub_id} ")), "{line}");
}

#[test]
fn bcast_sends_the_changed_keys_under_each_prefix() {
    let m = Meridian::start(&[]);
    let mut t = tracker(&m, &["BCAST", "PREFIX", "user:", "PREFIX", "cart:"]);
    let mut w = m.conn();
    w.cmd(&[
        "MSET", "user:1", "a", "cart:9", "b", "user:2", "c", "other", "d",
    ]);
    // One message per prefix for the batch, prefixes in byte order.
    assert_eq!(t.read(), Some(invalidate(Some(&["cart:9"]))));
    assert_eq!(t.read(), Some(invalidate(Some(&["user:1", "user:2"]))));
    w.cmd(&["SET", "other", "e"]);
    assert_nothing_sent(&mut t);
    // Prefixes of one client must not overlap.
    assert_eq!(
        t.cmd(&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "us"]),
        Frame::Error(
            "ERR Prefix 'us' overlaps with an existing prefix 'user:'. Prefixes for a single client must not overlap."
                .into()
        )
    );
    // The empty prefix: every key. A client's own change is sent too...
    let mut all = tracker(&m, &["BCAST"]);
    all.cmd(&["SET", "x", "1"]);
    assert_eq!(all.read(), Some(invalidate(Some(&["x"]))));
    // ...unless NOLOOP: then only the keys others changed last.
    let mut quiet = tracker(&m, &["BCAST", "NOLOOP"]);
    quiet.cmd(&["MSET", "x", "2", "y", "2"]);
    w.cmd(&["SET", "y", "3"]);
    assert_eq!(quiet.read(), Some(invalidate(Some(&["y"]))));
    assert_nothing_sent(&mut quiet);
    let info = t.cmd(&["CLIENT", "TRACKINGINFO"]);
    let Frame::Map(fields) = info else {
        panic!("TRACKINGINFO is a map in RESP3");
    };
    assert_eq!(fields[2].1, keys(&["cart:", "user:"]));
}

#[test]
fn optin_and_optout_choose_the_reads_that_are_tracked() {
    let m = Meridian::start(&[]);
    let mut w = m.conn();
    let mut t = tracker(&m, &["OPTIN"]);
    t.cmd(&["GET", "a"]);
    assert_eq!(t.cmd(&["CLIENT", "CACHING", "yes"]), ok());
    t.cmd(&["GET", "b"]);
    // CACHING yes covers the next command only.
    t.cmd(&["GET", "c"]);
    w.cmd(&["MSET", "a", "1", "b", "1", "c", "1"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["b"]))));
    assert_nothing_sent(&mut t);

    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "off"]), ok());
    assert_eq!(t.cmd(&["CLIENT", "TRACKING", "on", "OPTOUT"]), ok());
    t.cmd(&["GET", "a"]);
    assert_eq!(t.cmd(&["CLIENT", "CACHING", "no"]), ok());
    // CACHING no covers the whole next transaction.
    t.cmd(&["MULTI"]);
    t.cmd(&["GET", "b"]);
    t.cmd(&["GET", "c"]);
    t.cmd(&["EXEC"]);
    t.cmd(&["GET", "d"]);
    w.cmd(&["MSET", "a", "2", "b", "2", "c", "2", "d", "2"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["a"]))));
    assert_eq!(t.read(), Some(invalidate(Some(&["d"]))));
    assert_nothing_sent(&mut t);
}

#[test]
fn noloop_skips_only_the_clients_own_writes() {
    let m = Meridian::start(&[]);
    let mut w = m.conn();
    let mut t = tracker(&m, &["NOLOOP"]);
    t.cmd(&["MGET", "mine", "theirs"]);
    t.cmd(&["SET", "mine", "1"]);
    w.cmd(&["SET", "theirs", "1"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["theirs"]))));
    assert_nothing_sent(&mut t);
    // An expiry is never the client's own write.
    t.cmd(&["SET", "mine", "2", "PX", "500"]);
    t.cmd(&["GET", "mine"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["mine"]))));
}

/// The value of an unlabelled metric.
fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    http_get(addr, "/metrics")
        .1
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no metric {name}")) as u64
}

/// Waits until `key` reads `want` on `c`.
fn wait_for(c: &mut Conn, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.cmd(&["GET", key]) != bulk(want) {
        assert!(Instant::now() < deadline, "{key} never became {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client caching in region B is invalidated by writes made in region
/// A: in default mode, in BCAST mode and through a RESP2 redirect.
#[test]
fn a_write_in_another_region_invalidates_a_key_cached_in_this_one() {
    let cluster = Cluster::start(&["ca", "cb"], LinkConditions::wan(5), &[], 41);
    let b = &cluster.regions[cluster.index("cb")];
    let mut a = cluster.conn("ca");
    a.cmd(&["SET", "k", "v1"]);
    wait_for(&mut cluster.conn("cb"), "k", "v1");

    let mut t = tracker(b, &[]);
    let mut bcast = tracker(b, &["BCAST", "PREFIX", "k"]);
    let (mut sub, sub_id) = invalidation_subscriber(b);
    let mut resp2 = b.conn();
    let id = sub_id.to_string();
    resp2.cmd(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]);
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v1"));
    assert_eq!(resp2.cmd(&["GET", "k"]), bulk("v1"));

    a.cmd(&["SET", "k", "v2"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["k"]))));
    assert_eq!(bcast.read(), Some(invalidate(Some(&["k"]))));
    assert_eq!(sub.read(), Some(redirected(Some(&["k"]))));
    // By the time it is told, this region holds the new value.
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v2"));
    a.cmd(&["DEL", "k"]);
    assert_eq!(t.read(), Some(invalidate(Some(&["k"]))));
    assert_nothing_sent(&mut t);
}

/// A region cut off past what its peer's log retains is repaired by
/// anti-entropy; the keys the merge changes are invalidated there like
/// any write.
#[test]
fn state_merged_by_anti_entropy_invalidates_cached_keys() {
    let cluster = Cluster::start(
        &["ma", "mb"],
        LinkConditions::wan(5),
        &[
            "--repl-backlog-ops",
            "20",
            "--snapshot-after-ops",
            "50",
            "--log-segment-max-bytes",
            "4096",
        ],
        43,
    );
    let b = &cluster.regions[cluster.index("mb")];
    let mut a = cluster.conn("ma");
    a.cmd(&["SET", "k", "v1"]);
    wait_for(&mut cluster.conn("mb"), "k", "v1");
    let mut t = tracker(b, &[]);
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v1"));

    cluster.mesh.partition("mb").unwrap();
    a.cmd(&["SET", "k", "v2"]);
    for i in 0..300 {
        a.cmd(&["SET", &format!("filler:{i}"), "x"]);
    }
    assert_eq!(a.cmd(&["SAVE"]), ok());
    cluster.mesh.heal_all();
    assert_eq!(t.read(), Some(invalidate(Some(&["k"]))));
    assert_eq!(t.cmd(&["GET", "k"]), bulk("v2"));
    assert!(
        metric(b.http, "meridian_antientropy_sessions_total") >= 1,
        "the heal was not repaired by anti-entropy"
    );
}
