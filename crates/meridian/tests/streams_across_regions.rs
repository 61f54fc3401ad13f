//! Streams across three real regions linked through the fault proxy:
//! entries added with `*` on every side of a partition all arrive, in one
//! order, with IDs that never collide; a trim made meanwhile removes only
//! what its region held; a client blocked in XREAD or XREADGROUP is woken
//! by an entry added in another region; and what a consumer group
//! promises under `active-active` and `primary` keyspaces.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);
const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// `[[id, [field, value, ...]], ...]` as (id, fields).
fn entries(f: &Frame) -> Vec<(String, Vec<String>)> {
    match f {
        Frame::Array(items) => items
            .iter()
            .map(|e| match e {
                Frame::Array(pair) if pair.len() == 2 => {
                    let fields = match &pair[1] {
                        Frame::Array(fs) => fs.iter().map(text).collect(),
                        other => panic!("not fields: {other:?}"),
                    };
                    (text(&pair[0]), fields)
                }
                other => panic!("not an entry: {other:?}"),
            })
            .collect(),
        Frame::NullArray => Vec::new(),
        other => panic!("not entries: {other:?}"),
    }
}

fn xrange(c: &mut Conn, key: &str) -> Vec<(String, Vec<String>)> {
    entries(&c.cmd(&["XRANGE", key, "-", "+"]))
}

/// The entries an XREAD or XREADGROUP reply holds for its one stream.
fn read_entries(f: &Frame) -> Vec<(String, Vec<String>)> {
    match f {
        Frame::NullArray => Vec::new(),
        Frame::Array(streams) if streams.len() == 1 => match &streams[0] {
            Frame::Array(kv) if kv.len() == 2 => entries(&kv[1]),
            other => panic!("not a stream's reply: {other:?}"),
        },
        other => panic!("not a read reply: {other:?}"),
    }
}

fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("ms-seq");
    (ms.parse().unwrap(), seq.parse().unwrap())
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

fn wait_blocked(c: &mut Conn, n: usize) {
    let want = format!("blocked_clients:{n}");
    let reply = until(
        c,
        &["INFO", "clients"],
        Duration::from_secs(5),
        |f| matches!(f, Frame::Bulk(b) if String::from_utf8_lossy(b).contains(&want)),
    );
    assert!(
        matches!(&reply, Frame::Bulk(b) if String::from_utf8_lossy(b).contains(&want)),
        "{reply:?}"
    );
}

/// Every region adds entries with `*` while all three are cut off from
/// each other, one of them also trimming its stream; after the heal every
/// entry added is there but the ones the trim removed where it ran, in
/// one order in every region, with no ID twice and each ID's sequence
/// number carrying its region's slot.
#[test]
fn xadds_from_every_region_during_a_partition_all_arrive_in_one_order() {
    let names = ["sa", "sb", "sc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 41);
    cluster
        .conn("sa")
        .cmd(&["XADD", "events", "*", "from", "start", "n", "0"]);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    for n in names {
        let mut c = cluster.conn(n);
        for i in 0..20 {
            let reply = c.cmd(&["XADD", "events", "*", "from", n, "n", &i.to_string()]);
            assert!(matches!(reply, Frame::Bulk(_)), "{reply:?}");
        }
        // Several entries in one op (a pipelined batch) take distinct IDs.
        for i in 20..23 {
            c.send(&["XADD", "events", "*", "from", n, "n", &i.to_string()]);
        }
        for _ in 20..23 {
            assert!(matches!(c.read().unwrap(), Frame::Bulk(_)));
        }
    }
    // sb trims to its last 5 entries: the start entry and sb's first 18,
    // which it held; the entries sa and sc added meanwhile survive.
    assert_eq!(
        cluster.conn("sb").cmd(&["XTRIM", "events", "MAXLEN", "5"]),
        Frame::Integer(19)
    );
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert!(dump["events"].starts_with("stream:"), "{dump:?}");

    let all = xrange(&mut cluster.conn("sc"), "events");
    assert_eq!(all.len(), 23 + 5 + 23, "{all:?}");
    let ids: Vec<(u64, u64)> = all.iter().map(|(id, _)| parse_id(id)).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "IDs in order, none twice"
    );
    for (slot, n) in names.iter().enumerate() {
        let own: Vec<&(String, Vec<String>)> = all.iter().filter(|(_, f)| f[1] == *n).collect();
        let want: Vec<String> = if *n == "sb" {
            (18..23).map(|i| i.to_string()).collect()
        } else {
            (0..23).map(|i| i.to_string()).collect()
        };
        let got: Vec<String> = own.iter().map(|(_, f)| f[3].clone()).collect();
        assert_eq!(got, want, "{n}'s entries, each once, in the order added");
        for (id, _) in own {
            let (_, seq) = parse_id(id);
            assert_eq!(
                seq % 1024,
                slot as u64 + 1,
                "{n}'s ID {id} carries its slot"
            );
        }
    }
    // Every region counts every entry added, deleted or not.
    let info = cluster.conn("sa").cmd(&["XINFO", "STREAM", "events"]);
    let Frame::Array(kv) = info else {
        panic!("{info:?}")
    };
    let added = kv
        .chunks(2)
        .find(|p| text(&p[0]) == "entries-added")
        .map(|p| p[1].clone());
    assert_eq!(added, Some(Frame::Integer(1 + 3 * 23)));
}

/// A client blocked in XREAD on `$` in one region is served by an entry
/// added in another, once it is applied there; so is one blocked in
/// XREADGROUP on `>`.
#[test]
fn xread_block_in_one_region_is_woken_by_xadd_in_another() {
    let cluster = Cluster::start(&["ba", "bb", "bc"], LinkConditions::wan(20), &[], 42);
    let mut a = cluster.conn("ba");
    a.cmd(&["XADD", "feed", "1-1", "old", "x"]);
    a.cmd(&["XGROUP", "CREATE", "feed", "workers", "$"]);
    cluster.converge(CONVERGE);

    let mut reader = cluster.conn("bb");
    reader.send(&["XREAD", "BLOCK", "20000", "STREAMS", "feed", "$"]);
    let mut worker = cluster.conn("bc");
    worker.send(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "BLOCK",
        "20000",
        "STREAMS",
        "feed",
        ">",
    ]);
    wait_blocked(&mut cluster.conn("bb"), 1);
    wait_blocked(&mut cluster.conn("bc"), 1);
    let added = Instant::now();
    let id = text(&a.cmd(&["XADD", "feed", "*", "new", "y"]));
    let got = read_entries(&reader.read().unwrap());
    assert_eq!(got, vec![(id.clone(), vec!["new".into(), "y".into()])]);
    let got = read_entries(&worker.read().unwrap());
    assert_eq!(got, vec![(id.clone(), vec!["new".into(), "y".into()])]);
    println!(
        "served {} ms after the XADD in another region",
        added.elapsed().as_millis()
    );
    // The delivery replicates: the entry is pending for w1 everywhere.
    cluster.converge(CONVERGE);
    let pending = cluster.conn("ba").cmd(&["XPENDING", "feed", "workers"]);
    assert_eq!(
        pending,
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Bulk(id.clone().into()),
            Frame::Bulk(id.into()),
            Frame::Array(vec![Frame::Array(vec![
                Frame::Bulk("w1".into()),
                Frame::Bulk("1".into())
            ])]),
        ])
    );
}

/// Under `active-active`, a group read in three regions cut off from each
/// other delivers from each region's own copy: every entry, those added
/// during the partition included, is delivered at least once, some more
/// than once. After the heal the group's state is one everywhere, reading
/// on finds only what no region had delivered, and acknowledging in one
/// region empties the pending list in every region.
#[test]
fn active_active_group_delivers_every_entry_at_least_once() {
    let names = ["ga", "gb", "gc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 43);
    let mut a = cluster.conn("ga");
    for i in 1..=30 {
        a.cmd(&["XADD", "jobs", &format!("{i}-0"), "job", &i.to_string()]);
    }
    a.cmd(&["XGROUP", "CREATE", "jobs", "workers", "0"]);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for n in names {
        let mut c = cluster.conn(n);
        if n == "gb" {
            for i in 1..=5 {
                c.cmd(&["XADD", "jobs", "*", "job", &format!("gb-{i}")]);
            }
        }
        read_group(&mut c, &format!("c-{n}"), &mut delivered);
        read_group(&mut c, &format!("c-{n}"), &mut delivered);
    }
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    for n in names {
        let mut c = cluster.conn(n);
        while read_group(&mut c, &format!("c-{n}"), &mut delivered) > 0 {}
    }
    let all: BTreeSet<String> = xrange(&mut cluster.conn("gc"), "jobs")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(all.len(), 35);
    let missed: Vec<&String> = all
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .collect();
    assert!(missed.is_empty(), "never delivered: {missed:?}");
    assert!(
        delivered.values().any(|n| *n > 1),
        "regions cut off from each other delivered the same entries: {delivered:?}"
    );
    cluster.converge(CONVERGE);
    // Acknowledging everything in one region empties the group's pending
    // list everywhere once that region observed every delivery.
    let ids: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut ack = vec!["XACK", "jobs", "workers"];
    ack.extend(ids);
    let acked = a.cmd(&ack);
    assert_eq!(acked, Frame::Integer(35));
    cluster.converge(CONVERGE);
    for n in names {
        let pending = cluster.conn(n).cmd(&["XPENDING", "jobs", "workers"]);
        assert_eq!(
            pending,
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Null,
                Frame::Null,
                Frame::NullArray
            ]),
            "{n}"
        );
    }
}

/// Reads up to 10 new entries of `jobs` for `consumer` of `workers`,
/// counting each delivery; returns how many it got.
fn read_group(c: &mut Conn, consumer: &str, delivered: &mut BTreeMap<String, usize>) -> usize {
    let reply = c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        consumer,
        "COUNT",
        "10",
        "STREAMS",
        "jobs",
        ">",
    ]);
    let got = read_entries(&reply);
    for (id, _) in &got {
        *delivered.entry(id.clone()).or_default() += 1;
    }
    got.len()
}

/// Under `primary`, only the primary delivers: another region is told
/// where the primary is, so each entry is delivered once.
#[test]
fn primary_keyspace_group_delivers_only_at_the_primary() {
    let mut args = vec!["--policy", "q:*=primary:pa"];
    args.extend(FAST);
    let cluster = Cluster::start(&["pa", "pb", "pc"], LinkConditions::wan(5), &args, 44);
    let created = until(
        &mut cluster.conn("pa"),
        &["XGROUP", "CREATE", "q:jobs", "workers", "$", "MKSTREAM"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert_eq!(created, Frame::ok());
    let mut a = cluster.conn("pa");
    a.cmd(&["XADD", "q:jobs", "1-0", "job", "1"]);
    a.cmd(&["XADD", "q:jobs", "2-0", "job", "2"]);
    cluster.converge(CONVERGE);
    let read = |c: &mut Conn| {
        c.cmd(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w",
            "COUNT",
            "1",
            "STREAMS",
            "q:jobs",
            ">",
        ])
    };
    let refused = read(&mut cluster.conn("pb"));
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with("READONLY") && e.contains("pa")),
        "{refused:?}"
    );
    let refused = cluster
        .conn("pc")
        .cmd(&["XGROUP", "SETID", "q:jobs", "workers", "0"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with("READONLY")),
        "{refused:?}"
    );
    assert_eq!(
        read_entries(&read(&mut cluster.conn("pa"))),
        vec![("1-0".to_string(), vec!["job".into(), "1".into()])]
    );
    cluster.converge(CONVERGE);
    assert_eq!(
        read_entries(&read(&mut cluster.conn("pa"))),
        vec![("2-0".to_string(), vec!["job".into(), "2".into()])]
    );
}

/// Under `primary`, a group read across a failover: what the old primary
/// delivered, once replicated, the new primary does not deliver again, so
/// each entry is delivered once; the old primary, cut off, delivers
/// nothing. (An entry the old primary delivered but had not replicated
/// before it was cut off would be delivered again, as any write a primary
/// acknowledged and lost.)
#[test]
fn primary_keyspace_group_delivers_each_entry_once_across_a_failover() {
    let mut args = vec!["--policy", "q:*=primary:pa"];
    args.extend(FAST);
    let cluster = Cluster::start(&["pa", "pb", "pc"], LinkConditions::wan(5), &args, 45);
    let created = until(
        &mut cluster.conn("pa"),
        &["XGROUP", "CREATE", "q:jobs", "workers", "$", "MKSTREAM"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert_eq!(created, Frame::ok());
    let mut a = cluster.conn("pa");
    for i in 1..=10 {
        a.cmd(&["XADD", "q:jobs", &format!("{i}-0"), "job", &i.to_string()]);
    }
    let read = |c: &mut Conn| {
        c.cmd(&[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w",
            "COUNT",
            "4",
            "STREAMS",
            "q:jobs",
            ">",
        ])
    };
    let mut delivered: Vec<String> = read_entries(&read(&mut a))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(delivered, ["1-0", "2-0", "3-0", "4-0"]);
    cluster.converge(CONVERGE);

    cluster.mesh.partition("pa").unwrap();
    let fenced = until(
        &mut a,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "w",
            "STREAMS",
            "q:jobs",
            ">",
        ],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    assert!(
        matches!(&fenced, Frame::Error(e) if e.starts_with("FENCED")),
        "{fenced:?}"
    );
    // pb or pc is elected; until then both refuse.
    let deadline = Instant::now() + Duration::from_secs(20);
    let primary = loop {
        let served = ["pb", "pc"].into_iter().find_map(|n| {
            let reply = read(&mut cluster.conn(n));
            (!reply.is_error()).then_some((n, reply))
        });
        if let Some((n, reply)) = served {
            delivered.extend(read_entries(&reply).into_iter().map(|(id, _)| id));
            break n;
        }
        assert!(Instant::now() < deadline, "no new primary delivered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut p = cluster.conn(primary);
    loop {
        let got = read_entries(&read(&mut p));
        if got.is_empty() {
            break;
        }
        delivered.extend(got.into_iter().map(|(id, _)| id));
    }
    let want: Vec<String> = (1..=10).map(|i| format!("{i}-0")).collect();
    assert_eq!(
        delivered, want,
        "each entry once, in order, across the failover"
    );
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    let pending = cluster.conn("pa").cmd(&["XPENDING", "q:jobs", "workers"]);
    assert!(
        matches!(&pending, Frame::Array(p) if p[0] == Frame::Integer(10)),
        "{pending:?}"
    );
}

/// A group read in one region moves how far it delivered that region's
/// entries (and those of every region it served), not every region's: an
/// entry another region added meanwhile with a lower ID (its clock behind,
/// or an explicit ID) is still delivered once it arrives, so no entry is
/// skipped.
#[test]
fn a_group_delivers_an_entry_added_elsewhere_below_what_it_delivered() {
    let cluster = Cluster::start(&["la", "lb"], LinkConditions::wan(5), &[], 46);
    let mut a = cluster.conn("la");
    a.cmd(&["XGROUP", "CREATE", "jobs", "workers", "0", "MKSTREAM"]);
    cluster.converge(CONVERGE);
    cluster.mesh.partition("la").unwrap();
    for i in 10..=12 {
        a.cmd(&["XADD", "jobs", &format!("{i}-0"), "from", "la"]);
    }
    // lb has not seen la's entries: 5-0 is above its last ID.
    let id = cluster
        .conn("lb")
        .cmd(&["XADD", "jobs", "5-0", "from", "lb"]);
    assert_eq!(text(&id), "5-0");
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    while read_group(&mut a, "c-la", &mut delivered) > 0 {}
    assert_eq!(delivered.len(), 3);
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    // The group's last delivered ID is 12-0 everywhere, yet 5-0 is served.
    while read_group(&mut cluster.conn("la"), "c-la", &mut delivered) > 0 {}
    assert_eq!(delivered.get("5-0"), Some(&1), "{delivered:?}");
    assert_eq!(delivered.len(), 4);
    cluster.converge(CONVERGE);
    let mut b = cluster.conn("lb");
    assert_eq!(read_group(&mut b, "c-lb", &mut delivered), 0);
    let info = b.cmd(&["XINFO", "GROUPS", "jobs"]);
    let Frame::Array(groups) = info else {
        panic!("{info:?}")
    };
    let Frame::Array(kv) = &groups[0] else {
        panic!("{groups:?}")
    };
    let last = kv
        .chunks(2)
        .find(|p| text(&p[0]) == "last-delivered-id")
        .map(|p| text(&p[1]));
    assert_eq!(last.as_deref(), Some("12-0"));
}
