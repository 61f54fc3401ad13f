//! CLIENT REPLY ON/OFF/SKIP drops replies as Redis does while Pub/Sub
//! notices still arrive; sharded Pub/Sub is a namespace of its own, with
//! Redis's RESP2 and RESP3 shapes (`ssubscribe`, `smessage`).

mod common;

use std::time::Duration;

use common::Meridian;
use meridian_resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec().into())
}

fn notice(kind: &str, name: Option<&str>, count: i64, resp3: bool) -> Frame {
    let items = vec![
        bulk(kind),
        name.map_or(Frame::Null, bulk),
        Frame::Integer(count),
    ];
    if resp3 {
        Frame::Push(items)
    } else {
        Frame::Array(items)
    }
}

#[test]
fn client_reply_off_and_skip_drop_replies_until_on() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    // OFF drops its own reply and every later one, errors included.
    c.send(&["CLIENT", "REPLY", "OFF"]);
    c.send(&["SET", "k", "v"]);
    c.send(&["GET", "k"]);
    c.send(&["NOSUCH"]);
    c.send(&["CLIENT", "REPLY", "ON"]);
    assert_eq!(c.read(), Some(Frame::Simple("OK".into())));
    assert_eq!(c.line("GET k"), bulk("v"));

    // SKIP drops its own reply and the next command's only.
    c.send(&["CLIENT", "REPLY", "SKIP"]);
    c.send(&["GET", "k"]);
    c.send(&["ECHO", "after"]);
    assert_eq!(c.read(), Some(bulk("after")));

    // SKIP while OFF changes nothing; ON ends both.
    c.send(&["CLIENT", "REPLY", "OFF"]);
    c.send(&["CLIENT", "REPLY", "SKIP"]);
    c.send(&["ECHO", "dropped"]);
    c.send(&["CLIENT", "REPLY", "ON"]);
    assert_eq!(c.read(), Some(Frame::Simple("OK".into())));
    assert_eq!(c.line("ECHO x"), bulk("x"));
    assert_eq!(
        c.line("CLIENT REPLY maybe"),
        Frame::Error("ERR syntax error".into())
    );
}

#[test]
fn pubsub_notices_and_messages_arrive_with_replies_off() {
    let m = Meridian::start(&[]);
    for resp3 in [false, true] {
        let mut sub = m.conn();
        if resp3 {
            sub.line("HELLO 3");
        }
        let mut publisher = m.conn();
        sub.send(&["CLIENT", "REPLY", "OFF"]);
        sub.send(&["SUBSCRIBE", "ch"]);
        assert_eq!(sub.read(), Some(notice("subscribe", Some("ch"), 1, resp3)));
        sub.send(&["SSUBSCRIBE", "sh"]);
        assert_eq!(sub.read(), Some(notice("ssubscribe", Some("sh"), 1, resp3)));
        assert_eq!(publisher.line("PUBLISH ch hello"), Frame::Integer(1));
        let message = vec![bulk("message"), bulk("ch"), bulk("hello")];
        let want = if resp3 {
            Frame::Push(message)
        } else {
            Frame::Array(message)
        };
        assert_eq!(sub.read(), Some(want));
    }
}

#[test]
fn shard_channels_are_a_namespace_of_their_own() {
    let m = Meridian::start(&[]);
    let mut sub = m.conn();
    let mut publisher = m.conn();
    sub.send(&["SSUBSCRIBE", "a", "b"]);
    assert_eq!(sub.read(), Some(notice("ssubscribe", Some("a"), 1, false)));
    assert_eq!(sub.read(), Some(notice("ssubscribe", Some("b"), 2, false)));
    // A channel subscription counts apart from shard channels.
    sub.send(&["SUBSCRIBE", "a"]);
    assert_eq!(sub.read(), Some(notice("subscribe", Some("a"), 1, false)));

    assert_eq!(publisher.line("SPUBLISH a one"), Frame::Integer(1));
    assert_eq!(
        sub.read(),
        Some(Frame::Array(vec![bulk("smessage"), bulk("a"), bulk("one")]))
    );
    assert_eq!(publisher.line("PUBLISH a two"), Frame::Integer(1));
    assert_eq!(
        sub.read(),
        Some(Frame::Array(vec![bulk("message"), bulk("a"), bulk("two")]))
    );
    assert_eq!(publisher.line("PUBLISH b three"), Frame::Integer(0));
    assert_eq!(
        publisher.line("PUBSUB SHARDCHANNELS"),
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(
        publisher.line("PUBSUB SHARDNUMSUB a c"),
        Frame::Array(vec![
            bulk("a"),
            Frame::Integer(1),
            bulk("c"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(
        publisher.line("PUBSUB CHANNELS"),
        Frame::Array(vec![bulk("a")])
    );

    // Subscribed to shard channels only, a RESP2 connection is still in
    // the Pub/Sub context.
    sub.send(&["UNSUBSCRIBE"]);
    assert_eq!(sub.read(), Some(notice("unsubscribe", Some("a"), 0, false)));
    sub.send(&["GET", "k"]);
    assert!(
        matches!(sub.read(), Some(Frame::Error(e)) if e.starts_with("ERR Can't execute 'get'"))
    );
    sub.send(&["SUNSUBSCRIBE"]);
    let mut left = vec![sub.read().unwrap(), sub.read().unwrap()];
    left.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(
        left,
        [
            notice("sunsubscribe", Some("a"), 1, false),
            notice("sunsubscribe", Some("b"), 0, false),
        ]
    );
    sub.send(&["SUNSUBSCRIBE"]);
    assert_eq!(sub.read(), Some(notice("sunsubscribe", None, 0, false)));
    assert_eq!(sub.line("GET k"), Frame::Null);

    // A closed connection's shard subscriptions go with it.
    sub.line("SSUBSCRIBE gone");
    drop(sub);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while publisher.line("SPUBLISH gone x") != Frame::Integer(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "subscription outlived its connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
