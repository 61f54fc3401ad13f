//! The sorted-set algebra (ZUNION, ZINTER, ZDIFF, their `*STORE` forms,
//! ZINTERCARD), ZRANGESTORE, ZMPOP and the set commands Redis's `type/set`
//! unit uses, on real processes: replies compared with a real redis-server
//! (errors included, text and all), and stored results replicated to
//! another region as the CRDT effects of one write.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{split_args, Conn, Meridian, RedisServer};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);

/// Sorted-set commands, in the format of `tests/differential/*.redis`:
/// `~ ` compares as unordered, `@resp3`/`@resp2` switch protocols.
const ZSET_SCRIPT: &str = r#"
# ----- ZUNION / ZINTER / ZDIFF: inputs, weights, aggregates -----
ZADD za 1 a 2 b 3 c
ZADD zb 1 b 2 c 3 d
SADD sa a b c e
SET str x
HSET h f v
ZUNION 2 za zb
ZUNION 2 za zb WITHSCORES
ZINTER 2 za zb WITHSCORES
ZDIFF 2 za zb WITHSCORES
ZUNION 3 za zb sa WITHSCORES
ZUNION 3 za zb sa WEIGHTS 1 2 3 WITHSCORES
ZUNION 3 za zb sa WEIGHTS 1 2 3 AGGREGATE MIN WITHSCORES
ZUNION 3 za zb sa weights 1 2 3 aggregate max withscores
ZINTER 3 za zb sa WEIGHTS 2 3 4 WITHSCORES
ZINTER 2 sa za AGGREGATE MAX WITHSCORES
ZINTER 2 sa sa
ZDIFF 2 sa zb WITHSCORES
ZDIFF 3 sa zb za WITHSCORES
ZDIFF 2 za za
ZUNION 2 za nokey WITHSCORES
ZINTER 2 za nokey WITHSCORES
ZDIFF 2 nokey za
ZUNION 1 nokey
ZUNION 2 za zb WEIGHTS 1 2 WEIGHTS 3 4 WITHSCORES
ZUNION 2 za zb AGGREGATE MIN AGGREGATE SUM WITHSCORES
ZUNION 1 za WEIGHTS -1 WITHSCORES
ZUNION 1 za WEIGHTS -0 WITHSCORES
ZUNION 2 za zb WEIGHTS 0x10 1e3 WITHSCORES
ZADD zero 0 a
ZADD negzero 0 b
ZUNION 2 negzero zero WEIGHTS -1 1 WITHSCORES
# Infinities: inf + -inf is 0, inf * 0 is 0, and the smallest inputs go first.
ZADD pinf +inf k
ZADD ninf -inf k
ZADD one 1 k
ZADD ninf2 -inf k 1 other
ZUNION 2 pinf ninf WITHSCORES
ZINTER 2 pinf ninf WITHSCORES
ZUNION 2 pinf ninf WEIGHTS 0 1 WITHSCORES
ZINTER 2 pinf ninf WEIGHTS 1 0 WITHSCORES
ZINTER 2 pinf ninf WEIGHTS 1 0 AGGREGATE MIN WITHSCORES
ZINTER 2 pinf ninf WEIGHTS 1 0 AGGREGATE MAX WITHSCORES
ZINTER 2 pinf ninf WEIGHTS 0 1 AGGREGATE MAX WITHSCORES
ZUNION 3 pinf ninf2 one WITHSCORES
ZUNION 3 ninf2 pinf one WITHSCORES
ZINTER 3 ninf2 pinf one WITHSCORES
# Errors: the keys are type-checked before the options are read.
ZUNION 2 str za
ZUNION 2 za str
ZINTER 2 za h
ZDIFF 1 str
ZUNION 2 str za BADOPT
ZUNION 0 za
ZINTER -1 za
ZDIFF 0 za
ZUNION abc za
ZUNION 3 za zb
ZUNION 9223372036854775807 za
ZUNION 2 za zb WEIGHTS 1
ZUNION 2 za zb WEIGHTS 1 nan
ZUNION 2 za zb WEIGHTS 1 x
ZUNION 2 za zb WEIGHTS 1 1e400
ZUNION 2 za zb AGGREGATE avg
ZUNION 2 za zb AGGREGATE
ZDIFF 2 za zb WEIGHTS 1 1
ZDIFF 2 za zb AGGREGATE MIN
ZUNION 2 za zb BADOPT
ZUNION
ZUNION 1
# ----- ZINTERCARD -----
ZINTERCARD 2 za zb
ZINTERCARD 2 za zb LIMIT 1
ZINTERCARD 2 za zb LIMIT 0
ZINTERCARD 3 za zb sa LIMIT 10
ZINTERCARD 1 nokey
ZINTERCARD 1 za za
ZINTERCARD 1 za LIMIT
ZINTERCARD 1 za LIMIT -1
ZINTERCARD 1 za LIMIT abc
ZINTERCARD 1 za WITHSCORES
ZINTERCARD 1 za WEIGHTS 1
ZINTERCARD 0 za
ZINTERCARD abc za
ZINTERCARD 1 str
ZINTERCARD 2 za str
# ----- *STORE: any destination is replaced; an empty result deletes it -----
ZUNIONSTORE dst 2 za zb WEIGHTS 2 3
ZRANGE dst 0 -1 WITHSCORES
ZINTERSTORE dst 2 za sa AGGREGATE MAX
ZRANGE dst 0 -1 WITHSCORES
ZDIFFSTORE dst 2 za zb
ZRANGE dst 0 -1 WITHSCORES
SET sdst x EX 100
ZUNIONSTORE sdst 1 za
TYPE sdst
TTL sdst
ZRANGE sdst 0 -1 WITHSCORES
HSET hdst f v
ZINTERSTORE hdst 2 za zb
TYPE hdst
SADD setdst m
ZDIFFSTORE setdst 1 sa
TYPE setdst
ZRANGE setdst 0 -1 WITHSCORES
ZINTERSTORE dst 2 za nokey
EXISTS dst
SET sdst x
ZUNIONSTORE sdst 1 nokey
EXISTS sdst
ZADD self 5 a 6 z
ZUNIONSTORE self 2 self za
ZRANGE self 0 -1 WITHSCORES
ZDIFFSTORE self 2 self za
ZRANGE self 0 -1 WITHSCORES
ZUNIONSTORE self 2 str za
ZRANGE self 0 -1 WITHSCORES
ZUNIONSTORE dst 2 za zb WITHSCORES
ZINTERSTORE dst 2 za zb WITHSCORES
ZDIFFSTORE dst 2 za zb WITHSCORES
ZUNIONSTORE dst 0 za
ZINTERSTORE dst 0 za
ZDIFFSTORE dst 0 za
ZUNIONSTORE dst 1
ZUNIONSTORE infdst 2 pinf ninf
ZSCORE infdst k
ZINTERSTORE infdst 2 pinf pinf
ZSCORE infdst k
ZUNIONSTORE negdst 1 za WEIGHTS -0
ZRANGE negdst 0 -1 WITHSCORES
# ----- ZRANGESTORE -----
ZADD src 1 a 2 b 3 c 4 d
ZRANGESTORE rdst src 0 -1
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src 1 2
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src 0 1 REV
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src (1 +inf BYSCORE LIMIT 1 2
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src +inf -inf BYSCORE REV LIMIT 0 2
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src [b (d BYLEX
ZRANGE rdst 0 -1 WITHSCORES
ZRANGESTORE rdst src + - BYLEX REV LIMIT 0 1
ZRANGE rdst 0 -1 WITHSCORES
SET rstr x EX 100
ZRANGESTORE rstr src 0 0
TYPE rstr
TTL rstr
ZRANGESTORE rdst src 5 6
EXISTS rdst
ZRANGESTORE rdst src 0 -1
ZRANGESTORE rdst nokey 0 -1
EXISTS rdst
ZRANGESTORE rdst src 0 -1
ZRANGESTORE rdst str 0 -1
EXISTS rdst
ZRANGESTORE rdst src 0 -1 WITHSCORES
ZRANGESTORE rdst src 0 -1 LIMIT 0 1
ZRANGESTORE rdst src a b BYSCORE
ZRANGESTORE rdst src a b BYLEX
ZRANGESTORE rdst src 0 x
ZRANGESTORE rdst src 0 -1 BYSCORE BYLEX
ZRANGESTORE rdst src 0 -1 REV REV
ZRANGESTORE rdst src 0
# ----- ZMPOP -----
ZADD p1 1 a 2 b 3 c
ZADD p2 4 d 5 e
ZMPOP 1 p1 MIN
ZMPOP 1 p1 MAX COUNT 1
ZMPOP 2 nokey p2 MAX COUNT 10
EXISTS p2
ZMPOP 2 nokey p2 MIN
ZADD p2 4 d 5 e
ZMPOP 3 p1 nokey p2 min count 5
ZMPOP 1 p1 MIN
ZADD p1 1 a
ZMPOP 2 str p1 MIN
ZMPOP 2 nokey str MIN
ZMPOP 2 p1 str MIN
ZMPOP 0 p1 MIN
ZMPOP -1 p1 MIN
ZMPOP abc p1 MIN
ZMPOP 1 p1 bad
ZMPOP 1 p1 MIN bad
ZMPOP 1 p1 MIN MAX
ZMPOP 1 p1 COUNT
ZMPOP 1 p1 MIN COUNT
ZMPOP 1 p1 MIN COUNT 0
ZMPOP 1 p1 MIN COUNT -1
ZMPOP 1 p1 MIN COUNT x
ZMPOP 1 p1 MIN COUNT 1 COUNT 2
ZMPOP 2 p1 p2 bad
ZMPOP 5 p1 MIN
ZMPOP 9223372036854775806 p1 MIN
ZMPOP 1 p1
ZMPOP
# ----- RESP3 shapes -----
@resp3
ZADD r3a 1 a 2 b
ZADD r3b 3 b 4 c
ZUNION 2 r3a r3b WITHSCORES
ZUNION 2 r3a r3b
ZINTER 2 r3a r3b WITHSCORES
ZDIFF 2 r3a r3b WITHSCORES
ZUNION 1 r3a WEIGHTS -0 WITHSCORES
ZINTERCARD 2 r3a r3b
ZMPOP 1 r3a MIN COUNT 2
ZMPOP 1 nokey MIN
ZRANGESTORE r3d r3b 0 -1
ZRANGE r3d 0 -1 WITHSCORES
@resp2
ZMPOP 1 nokey MIN
"#;

/// The set commands of Redis's `type/set` unit whose replies do not depend
/// on chance (or only up to order).
const SET_SCRIPT: &str = r#"
SADD s1 a b c d
SADD s2 c d e
SADD s3 d
SET str x
SINTERCARD 2 s1 s2
SINTERCARD 3 s1 s2 s3 LIMIT 0
SINTERCARD 2 s1 s2 LIMIT 1
SINTERCARD 1 nokey
SINTERCARD 0 s1
SINTERCARD -1 s1
SINTERCARD abc s1
SINTERCARD 2 s1
SINTERCARD 1 s1 s2
SINTERCARD 1 s1 LIMIT
SINTERCARD 1 s1 LIMIT -1
SINTERCARD 1 s1 LIMIT abc
SINTERCARD 1 str
SINTERCARD 2 s1 str
SINTERCARD 2 str nokey
SINTERCARD
SMISMEMBER s1 a x d
SMISMEMBER nokey a b
SMISMEMBER str a
SMISMEMBER s1
SMOVE s1 s2 a
~ SMEMBERS s1
~ SMEMBERS s2
SMOVE s1 s2 c
~ SMEMBERS s2
SMOVE s1 s1 b
SMOVE s1 s1 zz
SMOVE s1 s2 zz
SMOVE nokey s2 a
SMOVE s1 str b
SMOVE str s1 b
SMOVE nokey str b
SMOVE s1 newset b
~ SMEMBERS newset
SMOVE s3 s1 d
EXISTS s3
SPOP s1 0
~ SPOP s1 100
EXISTS s1
SPOP nokey 3
SPOP nokey
SPOP s2 -1
SPOP s2 abc
SPOP s2 1 2
SPOP str 1
SADD one x
SRANDMEMBER one -3
SRANDMEMBER one 0
SRANDMEMBER one 5
SRANDMEMBER nokey 5
SRANDMEMBER nokey
SRANDMEMBER one -9223372036854775808
SRANDMEMBER one 1 2
SRANDMEMBER str 1
~ SRANDMEMBER s2 10
SINTERSTORE str s2 nokey
EXISTS str
@resp3
SPOP nokey 3
SRANDMEMBER nokey 1
~ SPOP one 2
@resp2
"#;

fn sort_key(f: &Frame) -> String {
    format!("{f:?}")
}

/// An array or set reply with its elements sorted.
fn unordered(f: Frame) -> Frame {
    match f {
        Frame::Array(mut items) => {
            items.sort_by_key(sort_key);
            Frame::Array(items)
        }
        Frame::Set(mut items) => {
            items.sort_by_key(sort_key);
            Frame::Set(items)
        }
        other => other,
    }
}

/// Runs `script` on a fresh redis-server and a fresh region side by side
/// and returns the replies compared and every difference.
fn compare_with_redis(script: &str) -> (usize, Vec<String>) {
    let redis = RedisServer::start();
    let meridian = Meridian::start(&[]);
    let (mut r, mut m) = (redis.conn(), meridian.conn());
    let mut compared = 0;
    let mut differences = Vec::new();
    for (n, raw) in script.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "@resp3" || line == "@resp2" {
            let version = &line[5..];
            r.cmd(&["HELLO", version]);
            m.cmd(&["HELLO", version]);
            continue;
        }
        let (sorted, command) = match line.strip_prefix("~ ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let args = split_args(command).unwrap_or_else(|| panic!("line {}: {command:?}", n + 1));
        let (mut want, mut got) = (r.cmd(&args), m.cmd(&args));
        if sorted {
            (want, got) = (unordered(want), unordered(got));
        }
        compared += 1;
        if want != got {
            differences.push(format!(
                "line {}: {command}\n    redis:    {want:?}\n    meridian: {got:?}",
                n + 1
            ));
        }
    }
    (compared, differences)
}

fn assert_same_as_redis(script: &str) {
    let (compared, differences) = compare_with_redis(script);
    assert!(
        differences.is_empty(),
        "{} of {compared} replies differ from redis-server:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn sorted_set_algebra_replies_match_redis_server() {
    assert_same_as_redis(ZSET_SCRIPT);
}

#[test]
fn set_command_replies_match_redis_server() {
    assert_same_as_redis(SET_SCRIPT);
}

fn run(c: &mut Conn, line: &str) -> Frame {
    let reply = c.line(line);
    assert!(!reply.is_error(), "{line}: {reply:?}");
    reply
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

/// `ZRANGE key 0 -1 WITHSCORES` as it should read: member, score, ….
fn pairs(items: &[(&str, &str)]) -> Frame {
    Frame::Array(items.iter().flat_map(|(m, s)| [bulk(m), bulk(s)]).collect())
}

/// A destination written by ZUNIONSTORE, ZINTERSTORE and ZRANGESTORE in one
/// region reads the same in another: the stored result replicates, TTL
/// and former type of the destination gone, and an empty result deletes.
#[test]
fn stored_destinations_replicate_to_another_region() {
    let cluster = Cluster::start(&["za", "zb"], LinkConditions::wan(5), &[], 21);
    let (mut a, mut b) = (cluster.conn("za"), cluster.conn("zb"));
    run(&mut b, "SET union-dst old EX 1000");
    run(&mut b, "HSET range-dst f v");
    run(&mut b, "ZADD inter-dst 1 gone");
    cluster.converge(CONVERGE);

    run(&mut a, "ZADD src 1 x 2 y");
    run(&mut a, "SADD members y z");
    assert_eq!(
        run(&mut a, "ZUNIONSTORE union-dst 2 src members WEIGHTS 2 1"),
        Frame::Integer(3)
    );
    assert_eq!(
        run(
            &mut a,
            "ZRANGESTORE range-dst src +inf -inf BYSCORE REV LIMIT 0 1"
        ),
        Frame::Integer(1)
    );
    assert_eq!(
        run(&mut a, "ZINTERSTORE inter-dst 2 src nokey"),
        Frame::Integer(0)
    );
    cluster.converge(CONVERGE);

    assert_eq!(run(&mut b, "TYPE union-dst"), Frame::Simple("zset".into()));
    assert_eq!(run(&mut b, "TTL union-dst"), Frame::Integer(-1));
    assert_eq!(
        run(&mut b, "ZRANGE union-dst 0 -1 WITHSCORES"),
        pairs(&[("z", "1"), ("x", "2"), ("y", "5")])
    );
    assert_eq!(
        run(&mut b, "ZRANGE range-dst 0 -1 WITHSCORES"),
        pairs(&[("y", "2")])
    );
    assert_eq!(run(&mut b, "EXISTS inter-dst"), Frame::Integer(0));
}

/// A `*STORE` replaces what its region had seen at the destination; a
/// member another region adds there meanwhile survives next to the stored
/// result (add wins), in every region once they heal.
#[test]
fn member_added_concurrently_to_a_destination_survives_the_store() {
    let cluster = Cluster::start(&["za", "zb"], LinkConditions::wan(5), &[], 22);
    let (mut a, mut b) = (cluster.conn("za"), cluster.conn("zb"));
    run(&mut a, "ZADD dst 1 seen");
    run(&mut a, "ZADD src 3 x");
    cluster.converge(CONVERGE);

    cluster.mesh.partition("za").unwrap();
    assert_eq!(run(&mut a, "ZUNIONSTORE dst 1 src"), Frame::Integer(1));
    run(&mut b, "ZADD dst 7 concurrent");
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    let want = pairs(&[("x", "3"), ("concurrent", "7")]);
    assert_eq!(run(&mut a, "ZRANGE dst 0 -1 WITHSCORES"), want);
    assert_eq!(run(&mut b, "ZRANGE dst 0 -1 WITHSCORES"), want);
}
