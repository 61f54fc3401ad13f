//! Lists across three real regions linked through the fault proxy: pushes
//! made on every side of a partition all survive in one order, pops are
//! seen everywhere, a blocked client is served by another region's push,
//! and what a pop promises under each keyspace policy.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);
const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn items(f: &Frame) -> Vec<String> {
    match f {
        Frame::Array(xs) => xs
            .iter()
            .map(|x| match x {
                Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn lrange(c: &mut Conn, key: &str) -> Vec<String> {
    items(&c.cmd(&["LRANGE", key, "0", "-1"]))
}

/// Retries `cmd` until the reply satisfies `done`, up to `timeout`.
fn until(c: &mut Conn, cmd: &[&str], timeout: Duration, done: impl Fn(&Frame) -> bool) -> Frame {
    let started = Instant::now();
    loop {
        let reply = c.cmd(cmd);
        if done(&reply) || started.elapsed() > timeout {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every region pushes to both ends and inserts in the middle while all
/// three are cut off from each other; after the heal every push is there,
/// in the same order in every region, and each region's own pushes keep
/// the order it made them in.
#[test]
fn pushes_from_every_region_during_a_partition_all_survive_in_one_order() {
    let names = ["la", "lb", "lc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 31);
    cluster.conn("la").cmd(&["RPUSH", "q", "first", "last"]);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    for n in names {
        let mut c = cluster.conn(n);
        for i in 0..20 {
            let v = format!("{n}-r{i}");
            c.cmd(&["RPUSH", "q", &v]);
        }
        // Several values in one command, and pipelined commands (one op).
        c.cmd(&["LPUSH", "q", &format!("{n}-l0"), &format!("{n}-l1")]);
        c.send(&["LPUSH", "q", &format!("{n}-l2")]);
        c.send(&["LINSERT", "q", "AFTER", "first", &format!("{n}-mid")]);
        c.read().unwrap();
        assert!(matches!(c.read().unwrap(), Frame::Integer(_)));
    }
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert!(dump["q"].starts_with("list:"), "{dump:?}");

    let list = lrange(&mut cluster.conn("lb"), "q");
    assert_eq!(list.len(), 2 + 3 * 24, "{list:?}");
    for n in names {
        let own: Vec<&String> = list
            .iter()
            .filter(|v| v.starts_with(&format!("{n}-r")))
            .collect();
        let want: Vec<String> = (0..20).map(|i| format!("{n}-r{i}")).collect();
        assert_eq!(
            own,
            want.iter().collect::<Vec<_>>(),
            "{n}'s pushes in order"
        );
        let at = |v: &str| list.iter().position(|x| x == v).unwrap();
        assert!(at(&format!("{n}-l2")) < at(&format!("{n}-l1")));
        assert!(at(&format!("{n}-l1")) < at(&format!("{n}-l0")));
        assert!(at(&format!("{n}-l0")) < at("first"));
        assert!(at("first") < at(&format!("{n}-mid")));
        assert!(at(&format!("{n}-mid")) < at("last"));
        assert!(at("last") < at(&format!("{n}-r0")));
    }
}

/// A pop, an LSET and an LTRIM made in one region read back the same in
/// every region.
#[test]
fn pops_and_overwrites_are_seen_everywhere() {
    let cluster = Cluster::start(&["pa", "pb", "pc"], LinkConditions::wan(5), &[], 32);
    let mut a = cluster.conn("pa");
    a.cmd(&["RPUSH", "q", "a", "b", "c", "d", "e"]);
    cluster.converge(CONVERGE);
    assert_eq!(cluster.conn("pb").cmd(&["LPOP", "q"]), bulk("a"));
    cluster.conn("pc").cmd(&["LSET", "q", "-1", "E"]);
    cluster.converge(CONVERGE);
    a.cmd(&["LTRIM", "q", "1", "-1"]);
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["q"], "list:c,d,E");
}

/// A client blocked in BLPOP in one region is served by a push made in
/// another, once that push is applied there.
#[test]
fn blpop_in_one_region_is_woken_by_a_push_in_another() {
    let cluster = Cluster::start(&["ba", "bb", "bc"], LinkConditions::wan(20), &[], 33);
    let mut waiter = cluster.conn("bb");
    waiter.send(&["BLPOP", "jobs", "20"]);
    let mut probe = cluster.conn("bb");
    let blocked = until(
        &mut probe,
        &["INFO", "clients"],
        Duration::from_secs(5),
        |f| matches!(f, Frame::Bulk(b) if String::from_utf8_lossy(b).contains("blocked_clients:1")),
    );
    assert!(
        matches!(&blocked, Frame::Bulk(b) if String::from_utf8_lossy(b).contains("blocked_clients:1")),
        "{blocked:?}"
    );
    let pushed = Instant::now();
    cluster.conn("ba").cmd(&["RPUSH", "jobs", "job-1"]);
    let reply = waiter.read().unwrap();
    assert_eq!(reply, Frame::Array(vec![bulk("jobs"), bulk("job-1")]));
    println!(
        "served {} ms after the push in another region",
        pushed.elapsed().as_millis()
    );
    // The pop replicates: the element is gone everywhere.
    let dump = cluster.converge(CONVERGE);
    assert!(!dump.contains_key("jobs"), "{dump:?}");
}

/// Under `active-active`, two regions cut off from each other may pop the
/// same element (at-least-once delivery); after the heal it is gone
/// everywhere, and what neither popped is still there.
#[test]
fn active_active_pops_are_at_least_once_across_a_partition() {
    let cluster = Cluster::start(&["aa", "ab", "ac"], LinkConditions::wan(5), &[], 34);
    cluster.conn("aa").cmd(&["RPUSH", "q", "x", "y"]);
    cluster.converge(CONVERGE);
    cluster.mesh.partition("aa").unwrap();
    assert_eq!(cluster.conn("aa").cmd(&["LPOP", "q"]), bulk("x"));
    assert_eq!(cluster.conn("ab").cmd(&["LPOP", "q"]), bulk("x"));
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["q"], "list:y");
}

/// Under `majority`, a region cut off from the majority refuses pops once
/// its lease runs out (regions that hear a majority still pop concurrently:
/// at-least-once, as under `active-active`), so an element is popped by
/// the majority side only.
#[test]
fn majority_keyspace_fences_pops_in_a_cut_off_region() {
    let mut args = vec!["--policy", "q:*=majority"];
    args.extend(FAST);
    let cluster = Cluster::start(&["ma", "mb", "mc"], LinkConditions::wan(5), &args, 35);
    let pushed = until(
        &mut cluster.conn("ma"),
        &["RPUSH", "q:jobs", "j1", "j2"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert!(!pushed.is_error(), "{pushed:?}");
    cluster.converge(CONVERGE);
    cluster.mesh.partition("mc").unwrap();
    // Wait for the fence on another key of the keyspace, then pop.
    let fenced = until(
        &mut cluster.conn("mc"),
        &["RPUSH", "q:probe", "x"],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    assert!(
        matches!(&fenced, Frame::Error(e) if e.starts_with("FENCED")),
        "{fenced:?}"
    );
    let refused = cluster.conn("mc").cmd(&["LPOP", "q:jobs"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with("FENCED")),
        "{refused:?}"
    );
    assert_eq!(cluster.conn("ma").cmd(&["LPOP", "q:jobs"]), bulk("j1"));
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["q:jobs"], "list:j2");
}

/// Under `primary`, only the primary pops, so each element is popped once
/// (while the primary stands); another region is told where it is.
#[test]
fn primary_keyspace_pops_only_at_the_primary() {
    let mut args = vec!["--policy", "q:*=primary:pa"];
    args.extend(FAST);
    let cluster = Cluster::start(&["pa", "pb", "pc"], LinkConditions::wan(5), &args, 36);
    let pushed = until(
        &mut cluster.conn("pa"),
        &["RPUSH", "q:jobs", "j1", "j2"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert!(!pushed.is_error(), "{pushed:?}");
    cluster.converge(CONVERGE);
    let refused = cluster.conn("pb").cmd(&["BLPOP", "q:jobs", "1"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with("READONLY") && e.contains("pa")),
        "{refused:?}"
    );
    assert_eq!(
        cluster.conn("pa").cmd(&["BLPOP", "q:jobs", "1"]),
        Frame::Array(vec![bulk("q:jobs"), bulk("j1")])
    );
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["q:jobs"], "list:j2");
}
