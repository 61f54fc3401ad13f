//! Tombstone collection by causal stability, with real processes through
//! the fault proxy: what deletes of counters leave behind is dropped only
//! once every region holds the deletes, never while one is cut off.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{http_get, http_json, Cluster};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const ARGS: [&str; 6] = [
    "--heartbeat-ms",
    "100",
    "--lease-ms",
    "1000",
    "--tombstone-interval-ms",
    "200",
];

fn metric(http: std::net::SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(http, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no metric {name}")) as u64
}

fn tombstones(cluster: &Cluster, i: usize) -> serde_json::Value {
    http_json(cluster.regions[i].http, "/v1/status")["tombstones"].clone()
}

#[test]
fn counter_tombstones_are_collected_only_once_every_region_holds_the_deletes() {
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &ARGS, 7);
    // Counters with contributions from two regions.
    let mut a = cluster.conn("ra");
    let mut b = cluster.conn("rb");
    for i in 0..20 {
        let key = format!("c:{i}");
        assert_eq!(a.cmd(&["INCRBY", &key, "5"]), Frame::Integer(5));
        b.cmd(&["HINCRBY", &format!("h:{i}"), "f", "3"]);
        b.cmd(&["ZINCRBY", &format!("z:{i}"), "2", "m"]);
        b.cmd(&["HSET", &format!("h:{i}"), "keep", "x"]);
    }
    cluster.converge(Duration::from_secs(20));
    for i in 0..20 {
        b.cmd(&["INCRBY", &format!("c:{i}"), "1"]);
    }
    cluster.converge(Duration::from_secs(20));

    // rc is cut off; the deletes happen on the other side.
    cluster.mesh.partition("rc").unwrap();
    for i in 0..20 {
        assert_eq!(a.cmd(&["DEL", &format!("c:{i}")]), Frame::Integer(1));
        assert_eq!(a.cmd(&["HDEL", &format!("h:{i}"), "f"]), Frame::Integer(1));
        assert_eq!(a.cmd(&["ZREM", &format!("z:{i}"), "m"]), Frame::Integer(1));
    }
    let token = a.cmd(&["MERIDIAN", "TOKEN"]);
    let Frame::Bulk(token) = token else {
        panic!("{token:?}")
    };
    let token = String::from_utf8(token.to_vec()).unwrap();
    assert_eq!(
        b.cmd(&["MERIDIAN", "AFTER", &token, "TIMEOUT", "10000"]),
        Frame::ok(),
        "rb never saw the deletes"
    );
    // The deleted counters (c:*) and the emptied sorted sets (z:*) are
    // hidden keys; the deleted hash fields are remembered inside h:*.
    assert_eq!(metric(cluster.regions[0].http, "meridian_keys_hidden"), 40);
    // Many rounds pass; none may collect while rc lacks the deletes.
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..2 {
        let t = tombstones(&cluster, i);
        assert_eq!(t["collected"], 0, "{t}");
        let waiting = t["waiting_for"].as_str().unwrap_or_default().to_string();
        assert!(waiting.contains("rc"), "{t}");
        assert_eq!(metric(cluster.regions[i].http, "meridian_keys_hidden"), 40);
    }
    println!("while rc is cut off, ra waits: {}", tombstones(&cluster, 0));

    // Heal: once rc holds the deletes, every region collects.
    let healed = Instant::now();
    cluster.mesh.heal_all();
    cluster.converge(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        loop {
            let hidden = metric(cluster.regions[i].http, "meridian_keys_hidden");
            let t = tombstones(&cluster, i);
            // 20 keys x 2 regions' increments, 20 fields, 20 members.
            if hidden == 0 && t["collected"].as_u64() == Some(80) {
                println!(
                    "{}: collected {} ms after the heal: {t}",
                    cluster.names[i],
                    healed.elapsed().as_millis()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: hidden {hidden}, {t}",
                cluster.names[i]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Nothing anyone sees changed, and counting starts again from zero the
    // same way everywhere, whichever region increments.
    let dump = cluster.converge(Duration::from_secs(10));
    assert!(!dump.contains_key("c:0"), "{dump:?}");
    assert_eq!(dump["h:0"], "hash:keep=x");
    let mut c = cluster.conn("rc");
    for i in 0..20 {
        assert_eq!(
            c.cmd(&["INCRBY", &format!("c:{i}"), "7"]),
            Frame::Integer(7)
        );
        assert_eq!(
            a.cmd(&["HINCRBY", &format!("h:{i}"), "f", "1"]),
            Frame::Integer(1)
        );
    }
    let dump = cluster.converge(Duration::from_secs(20));
    assert_eq!(dump["c:0"], "string:7");
    for i in 0..3 {
        let reply = cluster.conn(&cluster.names[i]).cmd(&["INCR", "c:0"]);
        assert_eq!(reply, Frame::Integer(8 + i as i64));
        cluster.converge(Duration::from_secs(20));
    }
    let dump = cluster.converge(Duration::from_secs(20));
    assert_eq!(dump["c:0"], "string:10");
}
