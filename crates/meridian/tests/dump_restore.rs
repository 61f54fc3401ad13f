//! DUMP, RESTORE and COPY on real regions: every type survives a round
//! trip, TTLs are set as Redis sets them, a damaged or foreign payload is
//! refused, DUMP of a string gives redis-server's very bytes (so strings
//! cross to Redis and back, while Meridian's payloads of other types are
//! refused there), and a restored or copied key replicates to another
//! region like any write.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{Conn, Meridian, RedisServer};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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
fn strings_cross_both_ways_and_other_payloads_do_not() {
    let redis = RedisServer::start();
    let m = Meridian::start(&[]);
    let (mut r, mut c) = (redis.conn(), m.conn());
    r.line("SET k v");
    c.line("SET k v");
    r.line("SADD s a");
    c.line("SADD s a");
    c.line("HSET h f v");
    // A string moves either way (HyperLogLogs and bitmaps are strings).
    let from_redis = payload(&mut r, "k");
    let from_meridian = payload(&mut c, "k");
    assert_eq!(from_meridian, from_redis);
    assert_eq!(restore(&mut c, "x", "0", &from_redis, &[]), ok());
    assert_eq!(c.line("GET x"), bulk("v"));
    assert_eq!(restore(&mut r, "x", "0", &from_meridian, &[]), ok());
    assert_eq!(r.line("GET x"), bulk("v"));
    // A Redis set does not restore here, nor Meridian's set or hash there:
    // their bodies are each side's own.
    let set_from_redis = payload(&mut r, "s");
    assert_eq!(
        restore(&mut c, "y", "0", &set_from_redis, &[]),
        Frame::Error(CHECKSUM_WRONG.into())
    );
    for key in ["s", "h"] {
        let from_meridian = payload(&mut c, key);
        assert_eq!(
            restore(&mut r, "y", "0", &from_meridian, &[]),
            Frame::Error(CHECKSUM_WRONG.into()),
            "{key}"
        );
    }
}

/// Values whose DUMP exercises each of Redis's string encodings: empty,
/// integers of every width and strings that only look like integers,
/// lengths around the 20 bytes past which LZF is tried, and random bytes,
/// text and runs up to 20 KB, compressible or not.
fn generated_strings(rng: &mut StdRng) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let fixed = [
        "",
        "a",
        "0",
        "-1",
        "1",
        "-0",
        "+1",
        "007",
        " 1",
        "1 ",
        "1.5",
        "0x10",
        "127",
        "128",
        "-128",
        "-129",
        "32767",
        "32768",
        "-32768",
        "-32769",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967296",
        "12345678901",
        "-1234567890",
        "99999999999",
        "123456789012",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551616",
    ];
    for f in fixed {
        out.push((format!("fixed {f:?}"), f.as_bytes().to_vec()));
    }
    for len in 17..=26 {
        out.push((format!("{len} x 'a'"), vec![b'a'; len]));
        out.push((format!("{len} x \"ab\""), b"ab".repeat(len).to_vec()));
        let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        out.push((format!("{len} random bytes"), random));
    }
    let words = [
        "the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog ", "\n",
    ];
    for i in 0..400 {
        let len = match i % 4 {
            0 => rng.gen_range(0..64),
            1 => rng.gen_range(0..600),
            2 => rng.gen_range(0..5_000),
            _ => rng.gen_range(0..=20_000),
        };
        let (kind, value): (&str, Vec<u8>) = match i % 5 {
            0 => ("random bytes", (0..len).map(|_| rng.gen()).collect()),
            1 => {
                let letters = rng.gen_range(1..=4u8);
                let v = (0..len).map(|_| b'a' + rng.gen_range(0..letters)).collect();
                ("few letters", v)
            }
            2 => {
                let mut v = Vec::with_capacity(len + 8);
                while v.len() < len {
                    v.extend_from_slice(words[rng.gen_range(0..words.len())].as_bytes());
                }
                v.truncate(len);
                ("text", v)
            }
            3 => {
                let mut v = Vec::with_capacity(len + 300);
                while v.len() < len {
                    let byte: u8 = rng.gen();
                    v.extend(std::iter::repeat_n(byte, rng.gen_range(1..300)));
                }
                v.truncate(len);
                ("runs", v)
            }
            _ => {
                let unit: Vec<u8> = (0..rng.gen_range(1..20)).map(|_| rng.gen()).collect();
                let mut v = Vec::with_capacity(len + 20);
                while v.len() < len {
                    if rng.gen_range(0..10) == 0 {
                        v.push(rng.gen());
                    } else {
                        v.extend_from_slice(&unit);
                    }
                }
                v.truncate(len);
                ("repeated unit", v)
            }
        };
        out.push((format!("{kind}, {} bytes", value.len()), value));
    }
    out
}

/// Where two payloads first differ, for a failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} and {}, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

/// Every generated string, HyperLogLog and bitmap DUMPs to the same bytes
/// on Meridian as on redis-server, and each side's payload RESTOREs on the
/// other to the same value. `SEED=n` replays a run.
#[test]
fn string_dumps_are_redis_bytes_and_restore_both_ways() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let redis = RedisServer::start();
    let m = Meridian::start(&[]);
    let (mut r, mut c) = (redis.conn(), m.conn());

    let mut keys: Vec<(String, String)> = Vec::new();
    for (i, (what, value)) in generated_strings(&mut rng).into_iter().enumerate() {
        let key = format!("s{i}");
        let set: [&[u8]; 3] = [b"SET", key.as_bytes(), &value];
        assert_eq!(r.cmd(&set), ok());
        assert_eq!(c.cmd(&set), ok(), "seed {seed}: SET of {what}");
        keys.push((key, what));
    }
    // HyperLogLogs, sparse and dense, and bitmaps, built by each server.
    for (i, elements) in [1usize, 10, 100, 1_000, 5_000].into_iter().enumerate() {
        let key = format!("hll{i}");
        let mut pfadd = vec!["PFADD".to_string(), key.clone()];
        pfadd.extend((0..elements).map(|_| format!("e{}", rng.gen::<u32>())));
        assert_eq!(
            r.cmd(&pfadd),
            c.cmd(&pfadd),
            "seed {seed}: PFADD {elements}"
        );
        keys.push((key, format!("PFADD of {elements} elements")));
    }
    for (i, bits) in [1usize, 8, 200, 3_000].into_iter().enumerate() {
        let key = format!("bits{i}");
        let span: u32 = rng.gen_range(8..200_000);
        for _ in 0..bits {
            let offset = rng.gen_range(0..span).to_string();
            let setbit = ["SETBIT", key.as_str(), offset.as_str(), "1"];
            assert_eq!(r.cmd(&setbit), c.cmd(&setbit), "seed {seed}: SETBIT");
        }
        keys.push((key, format!("{bits} bits set below {span}")));
    }

    // Payloads by the encoding of their string: integer, LZF, raw.
    let (mut integers, mut compressed, mut raw) = (0, 0, 0);
    for (key, what) in &keys {
        let (from_redis, from_meridian) = (payload(&mut r, key), payload(&mut c, key));
        match from_redis[1] {
            0xc0..=0xc2 => integers += 1,
            0xc3 => compressed += 1,
            _ => raw += 1,
        }
        assert!(
            from_meridian == from_redis,
            "seed {seed}: DUMP of {what} differs from redis-server's: {}",
            first_difference(&from_meridian, &from_redis)
        );
        let value = r.cmd(&["GET", key]);
        assert_eq!(c.cmd(&["GET", key]), value, "seed {seed}: GET of {what}");
        let copy = format!("{key}-copy");
        assert_eq!(
            restore(&mut r, &copy, "0", &from_meridian, &[]),
            ok(),
            "seed {seed}: {what}"
        );
        assert_eq!(
            r.cmd(&["GET", &copy]),
            value,
            "seed {seed}: {what} restored on Redis"
        );
        assert_eq!(
            restore(&mut c, &copy, "0", &from_redis, &[]),
            ok(),
            "seed {seed}: {what}"
        );
        assert_eq!(
            c.cmd(&["GET", &copy]),
            value,
            "seed {seed}: {what} restored here"
        );
    }
    println!(
        "{} strings DUMP to redis-server's bytes: {integers} integers, {compressed} LZF, {raw} raw",
        keys.len()
    );
    assert!(integers > 0 && compressed > 0 && raw > 0);
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
