//! DUMP, RESTORE and COPY on real regions: every type survives a round
//! trip, TTLs are set as Redis sets them, a damaged or foreign payload is
//! refused (and a real Redis refuses Meridian's), and a restored or copied
//! key replicates to another region like any write.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{Conn, Meridian, RedisServer};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CHECKSUM_WRONG: &str = "ERR DUMP payload version or checksum are wrong";

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec().into())
}

fn payload(c: &mut Conn, key: &str) -> Vec<u8> {
    match c.cmd(&["DUMP", key]) {
        Frame::Bulk(b) => b.to_vec(),
        other => panic!("DUMP {key} replied {other:?}"),
    }
}

fn restore(c: &mut Conn, key: &str, ttl: &str, payload: &[u8], opts: &[&str]) -> Frame {
    let mut args: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), ttl.as_bytes(), payload];
    args.extend(opts.iter().map(|o| o.as_bytes()));
    c.cmd(&args)
}

fn int(f: Frame) -> i64 {
    match f {
        Frame::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// Sorted elements of an array reply, as text.
fn sorted(f: Frame) -> Vec<String> {
    let Frame::Array(items) = f else {
        panic!("expected an array, got {f:?}");
    };
    let mut out: Vec<String> = items
        .into_iter()
        .map(|i| match i {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_type_survives_dump_and_restore() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET s hello");
    c.line("INCRBY n 41");
    c.line("INCR n");
    c.line("HSET h f1 v1 f2 v2");
    c.line("HINCRBY h hits 3");
    c.line("SADD st a b 1");
    c.line("ZADD z 1.5 one -2 two");
    for key in ["s", "n", "h", "st", "z"] {
        let before = m.conn().cmd(&["TYPE", key]);
        let p = payload(&mut c, key);
        assert_eq!(c.cmd(&["DEL", key]), Frame::Integer(1));
        assert_eq!(restore(&mut c, key, "0", &p, &[]), ok(), "{key}");
        assert_eq!(c.cmd(&["TYPE", key]), before, "{key}");
        assert_eq!(c.cmd(&["TTL", key]), Frame::Integer(-1), "{key}");
    }
    assert_eq!(c.line("GET s"), bulk("hello"));
    assert_eq!(c.line("GET n"), bulk("42"));
    assert_eq!(c.line("INCR n"), Frame::Integer(43));
    assert_eq!(
        sorted(c.line("HGETALL h")),
        ["3", "f1", "f2", "hits", "v1", "v2"]
    );
    assert_eq!(sorted(c.line("SMEMBERS st")), ["1", "a", "b"]);
    assert_eq!(
        c.line("ZRANGE z 0 -1 WITHSCORES"),
        Frame::Array(vec![bulk("two"), bulk("-2"), bulk("one"), bulk("1.5")])
    );
}

#[test]
fn restore_sets_ttls_and_replaces_as_redis_does() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET k v");
    let p = payload(&mut c, "k");

    assert_eq!(
        restore(&mut c, "k", "0", &p, &[]),
        Frame::Error("BUSYKEY Target key name already exists.".into())
    );
    assert_eq!(restore(&mut c, "k", "5000", &p, &["REPLACE"]), ok());
    let pttl = int(c.line("PTTL k"));
    assert!((3000..=5000).contains(&pttl), "{pttl}");

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let at = (now_ms + 60_000).to_string();
    assert_eq!(restore(&mut c, "abs", &at, &p, &["ABSTTL"]), ok());
    let pttl = int(c.line("PTTL abs"));
    assert!((50_000..=60_000).contains(&pttl), "{pttl}");

    // A deadline already past: OK, and the key is gone (REPLACE deleted it).
    let past = (now_ms - 3000).to_string();
    assert_eq!(
        restore(&mut c, "abs", &past, &p, &["ABSTTL", "REPLACE"]),
        ok()
    );
    assert_eq!(c.line("EXISTS abs"), Frame::Integer(0));

    // IDLETIME and FREQ are parsed as Redis parses them.
    assert_eq!(restore(&mut c, "i", "0", &p, &["IDLETIME", "100"]), ok());
    assert_eq!(restore(&mut c, "f", "0", &p, &["FREQ", "5"]), ok());
    assert_eq!(
        restore(&mut c, "g", "0", &p, &["FREQ", "5", "IDLETIME", "1"]),
        Frame::Error("ERR syntax error".into())
    );
}

#[test]
fn restore_refuses_a_payload_with_any_byte_flipped() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("HSET h field value other 12");
    let p = payload(&mut c, "h");
    for i in 0..p.len() {
        let mut bad = p.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            restore(&mut c, "copy", "0", &bad, &[]),
            Frame::Error(CHECKSUM_WRONG.into()),
            "byte {i} flipped"
        );
    }
    assert_eq!(c.line("EXISTS copy"), Frame::Integer(0));
    assert_eq!(restore(&mut c, "copy", "0", &p, &[]), ok());
}

#[test]
fn redis_strings_restore_here_and_other_payloads_do_not_cross() {
    let redis = RedisServer::start();
    let m = Meridian::start(&[]);
    let (mut r, mut c) = (redis.conn(), m.conn());
    r.line("SET k v");
    c.line("SET k v");
    r.line("SADD s a");
    let from_redis = payload(&mut r, "k");
    let from_meridian = payload(&mut c, "k");
    // A Redis string moves to Meridian (HyperLogLogs and bitmaps are
    // strings); a Redis set does not, and no Meridian payload goes to Redis.
    assert_eq!(
        restore(&mut c, "x", "0", &from_redis, &[]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        c.line("GET x"),
        Frame::Bulk(bytes::Bytes::from_static(b"v"))
    );
    let set_from_redis = payload(&mut r, "s");
    assert_eq!(
        restore(&mut c, "y", "0", &set_from_redis, &[]),
        Frame::Error(CHECKSUM_WRONG.into())
    );
    assert_eq!(
        restore(&mut r, "x", "0", &from_meridian, &[]),
        Frame::Error(CHECKSUM_WRONG.into())
    );
}

/// Waits until `c` answers `cmd` with `want`.
fn eventually(c: &mut Conn, cmd: &[&str], want: Frame) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = c.cmd(cmd);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{cmd:?} still answers {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restored_and_copied_keys_replicate_to_another_region() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::IDEAL, &[], 7);
    let mut a = cluster.conn("ra");
    let mut b = cluster.conn("rb");
    a.line("HSET src f v");
    a.line("EXPIRE src 1000");
    let p = payload(&mut a, "src");
    assert_eq!(restore(&mut a, "restored", "0", &p, &[]), ok());
    assert_eq!(a.line("COPY src copied"), Frame::Integer(1));

    eventually(&mut b, &["HGET", "restored", "f"], bulk("v"));
    eventually(&mut b, &["HGET", "copied", "f"], bulk("v"));
    // COPY carries the source's deadline; RESTORE with TTL 0 sets none.
    let ttl = int(b.line("TTL copied"));
    assert!((990..=1000).contains(&ttl), "{ttl}");
    assert_eq!(b.line("TTL restored"), Frame::Integer(-1));
    cluster.converge(Duration::from_secs(30));
}
