//! OBJECT and MEMORY answers that a comparison with redis-server cannot
//! check (`differential/generic.redis` checks the rest): what Meridian does
//! not track is said, never invented, and MEMORY USAGE grows with what a
//! key holds.

mod common;

use common::{Conn, Meridian};
use meridian_resp::Frame;

fn int(f: Frame) -> i64 {
    match f {
        Frame::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn usage(c: &mut Conn, key: &str, extra: &[&str]) -> i64 {
    let mut cmd = vec!["MEMORY", "USAGE", key];
    cmd.extend_from_slice(extra);
    int(c.cmd(&cmd))
}

#[test]
fn object_says_what_is_not_tracked() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET k 1");
    assert_eq!(c.line("OBJECT REFCOUNT k"), Frame::Integer(1));
    let idle = c.line("OBJECT IDLETIME k");
    assert!(
        matches!(&idle, Frame::Error(e) if e.starts_with("ERR idle time not tracked")),
        "{idle:?}"
    );
    let freq = c.line("OBJECT FREQ k");
    assert!(
        matches!(&freq, Frame::Error(e) if e.starts_with("ERR An LFU maxmemory policy is not selected")),
        "{freq:?}"
    );
    assert_eq!(c.line("OBJECT IDLETIME nosuch"), Frame::Null);
}

#[test]
fn memory_usage_grows_with_the_value() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET small x");
    c.cmd(&["SET", "large", &"x".repeat(10_000)]);
    let (small, large) = (usage(&mut c, "small", &[]), usage(&mut c, "large", &[]));
    assert!(small > 0 && large > small + 9_000, "{small} {large}");

    c.line("EXPIRE small 100");
    assert!(usage(&mut c, "small", &[]) > small);

    for i in 0..200 {
        c.cmd(&["HSET", "h", &format!("field{i}"), &"v".repeat(i)]);
        c.cmd(&["SADD", "s", &format!("member{i}")]);
        c.cmd(&["ZADD", "z", &i.to_string(), &format!("member{i}")]);
    }
    c.line("HSET tiny f v");
    assert!(usage(&mut c, "h", &[]) > usage(&mut c, "tiny", &[]));
    // Sampling every field sees the long values the first five lack.
    assert!(usage(&mut c, "h", &["SAMPLES", "0"]) > usage(&mut c, "h", &["SAMPLES", "5"]));
    for key in ["s", "z"] {
        let n = usage(&mut c, key, &["SAMPLES", "0"]);
        assert!(n > 200 * 16, "{key}: {n}");
    }
    assert_eq!(c.line("MEMORY USAGE nosuch"), Frame::Null);
}

#[test]
fn memory_stats_and_reports_answer_in_redis_shapes() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET a 1");
    let Frame::Array(stats) = c.line("MEMORY STATS") else {
        panic!("MEMORY STATS is a map");
    };
    let names: Vec<String> = stats
        .chunks(2)
        .map(|p| match &p[0] {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "peak.allocated",
            "total.allocated",
            "keys.count",
            "keys.bytes-per-key"
        ]
    );
    assert_eq!(stats[5], Frame::Integer(1));
    let doctor = c.line("MEMORY DOCTOR");
    assert!(
        matches!(&doctor, Frame::Bulk(t) if t.starts_with(b"Hi Sam") || t.starts_with(b"Sam,")),
        "{doctor:?}"
    );
    assert_eq!(
        c.line("MEMORY MALLOC-STATS"),
        Frame::Bulk(
            b"Stats not supported for the current allocator"
                .to_vec()
                .into()
        )
    );
}
