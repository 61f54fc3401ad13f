//! Active-active replication between real `meridian` processes, linked
//! through the fault proxy. Each test is named after what it proves.
//! Randomized workloads print their seed; `MERIDIAN_TEST_SEED` replays one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::http_json;
use common::cluster::Cluster;
use common::{int, ok, seed, Conn};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use rand::{Rng, SeedableRng};

const CONVERGE: Duration = Duration::from_secs(30);

/// A mixed workload on one region; returns acknowledged counter increments
/// per counter key (strings, hash fields and scores).
fn drive(c: &mut Conn, region: &str, ops: usize, seed: u64) -> BTreeMap<String, i64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = BTreeMap::new();
    for i in 0..ops {
        let k = rng.gen_range(0..8);
        let n: i64 = rng.gen_range(1..5);
        match rng.gen_range(0..9) {
            0 => ok(c.cmd(&["SET", &format!("s:{k}"), &format!("{region}-{i}")])),
            1 => {
                ok(c.cmd(&["INCRBY", &format!("c:{k}"), &n.to_string()]));
                *acked.entry(format!("c:{k}")).or_insert(0) += n;
            }
            2 => ok(c.cmd(&[
                "HSET",
                &format!("h:{k}"),
                &format!("f{}", i % 3),
                &format!("{region}-{i}"),
            ])),
            3 => {
                ok(c.cmd(&["HINCRBY", &format!("hc:{k}"), "n", &n.to_string()]));
                *acked.entry(format!("hc:{k}.n")).or_insert(0) += n;
            }
            4 => ok(c.cmd(&[
                "SADD",
                &format!("set:{k}"),
                &format!("m{}", rng.gen_range(0..6)),
            ])),
            5 => ok(c.cmd(&[
                "SREM",
                &format!("set:{k}"),
                &format!("m{}", rng.gen_range(0..6)),
            ])),
            6 => ok(c.cmd(&[
                "ZADD",
                &format!("z:{k}"),
                &n.to_string(),
                &format!("m{}", rng.gen_range(0..4)),
            ])),
            7 => {
                ok(c.cmd(&["ZINCRBY", &format!("zc:{k}"), &n.to_string(), "m"]));
                *acked.entry(format!("zc:{k}.m")).or_insert(0) += n;
            }
            _ => ok(c.cmd(&["DEL", &format!("s:{k}")])),
        }
    }
    acked
}

fn check_counters(dump: &BTreeMap<String, String>, acked: &BTreeMap<String, i64>) {
    for (key, want) in acked {
        let got = if let Some((k, field)) = key.split_once('.') {
            let v = &dump[k];
            let (_, pairs) = v.split_once(':').unwrap();
            pairs
                .split(',')
                .find_map(|p| p.strip_prefix(&format!("{field}=")))
                .unwrap_or_else(|| panic!("{key} missing in {v}"))
                .parse::<f64>()
                .unwrap() as i64
        } else {
            dump[key]
                .trim_start_matches("string:")
                .parse::<i64>()
                .unwrap()
        };
        assert_eq!(
            got, *want,
            "counter {key}: value {got}, acknowledged increments {want}"
        );
    }
}

fn merge_acked(into: &mut BTreeMap<String, i64>, from: BTreeMap<String, i64>) {
    for (k, v) in from {
        *into.entry(k).or_insert(0) += v;
    }
}

#[test]
fn concurrent_writers_on_every_type_converge() {
    let seed = seed();
    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(15).with_jitter(5),
        &[],
        seed,
    );
    let handles: Vec<_> = ["ra", "rb", "rc"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut c = cluster.conn(name);
            let name = name.to_string();
            std::thread::spawn(move || drive(&mut c, &name, 400, seed.wrapping_add(i as u64)))
        })
        .collect();
    let mut acked = BTreeMap::new();
    for h in handles {
        merge_acked(&mut acked, h.join().unwrap());
    }
    let dump = cluster.converge(CONVERGE);
    println!(
        "converged on {} keys; counters checked: {}",
        dump.len(),
        acked.len()
    );
    check_counters(&dump, &acked);
}

#[test]
fn add_wins_over_a_concurrent_remove() {
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::IDEAL, &[], seed());
    ok(cluster.conn("ra").cmd(&["SADD", "s", "x", "y"]));
    ok(cluster.conn("ra").cmd(&["HSET", "h", "f", "v0"]));
    cluster.converge(CONVERGE);
    cluster.mesh.partition("ra").unwrap();
    // ra removes and re-adds x while rb concurrently removes it; rb never
    // saw the re-add, so its remove cannot take it away.
    ok(cluster.conn("ra").cmd(&["SREM", "s", "x"]));
    ok(cluster.conn("ra").cmd(&["SADD", "s", "x"]));
    ok(cluster.conn("ra").cmd(&["HSET", "h", "f", "v1"]));
    ok(cluster.conn("rb").cmd(&["SREM", "s", "x", "y"]));
    ok(cluster.conn("rb").cmd(&["HDEL", "h", "f"]));
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert_eq!(
        dump["s"], "set:x",
        "x was re-added concurrently and survives; y was removed"
    );
    assert_eq!(dump["h"], "hash:f=v1");
}

#[test]
fn delete_never_comes_back_after_a_partition() {
    let mut cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], seed());
    for k in ["k1", "k2"] {
        ok(cluster.conn("ra").cmd(&["SET", k, "v"]));
    }
    ok(cluster.conn("rc").cmd(&["SADD", "s", "a", "b"]));
    cluster.converge(CONVERGE);
    cluster.mesh.partition("rb").unwrap();
    ok(cluster.conn("rb").cmd(&["DEL", "k1", "s"]));
    // The other side keeps writing other keys meanwhile.
    for i in 0..50 {
        ok(cluster.conn("ra").cmd(&["SET", &format!("other{i}"), "x"]));
    }
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert!(
        !dump.contains_key("k1") && !dump.contains_key("s"),
        "deleted keys came back: {dump:?}"
    );
    assert_eq!(dump["k2"], "string:v");
    // Still gone after every region restarts.
    for name in ["ra", "rb", "rc"] {
        cluster.restart(name);
    }
    let dump = cluster.converge(CONVERGE);
    assert!(!dump.contains_key("k1") && !dump.contains_key("s"));
}

/// Conflicts the journal must hold after a full partition in which each key
/// was written once by each of a known set of regions: one entry per pair of
/// concurrent writes, at every region, and nothing for the causally ordered
/// overwrites before it.
#[test]
fn conflict_journal_matches_the_reference_model() {
    let names = ["ra", "rb", "rc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], seed());
    // Causally ordered history first: no conflicts may come of it.
    ok(cluster.conn("ra").cmd(&["SET", "seq", "1"]));
    cluster.converge(CONVERGE);
    ok(cluster.conn("rb").cmd(&["SET", "seq", "2"]));
    cluster.converge(CONVERGE);
    ok(cluster.conn("rc").cmd(&["SET", "seq", "3"]));
    cluster.converge(CONVERGE);
    for name in names {
        cluster.mesh.partition(name).unwrap();
    }
    // key → regions writing it concurrently.
    let writers: Vec<(&str, Vec<&str>)> = vec![
        ("k:ab", vec!["ra", "rb"]),
        ("k:abc", vec!["ra", "rb", "rc"]),
        ("k:c", vec!["rc"]),
        ("k:bc", vec!["rb", "rc"]),
    ];
    let mut expected: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (key, ws) in &writers {
        for w in ws {
            ok(cluster.conn(w).cmd(&["SET", key, &format!("{w}-new")]));
        }
        for (i, a) in ws.iter().enumerate() {
            for b in &ws[i + 1..] {
                let (x, y) = (format!("{a}-new"), format!("{b}-new"));
                expected.insert((key.to_string(), x.clone().min(y.clone()), x.max(y)));
            }
        }
    }
    // Hash fields conflict one by one.
    ok(cluster.conn("ra").cmd(&["HSET", "h", "f", "ra", "g", "ra"]));
    ok(cluster.conn("rb").cmd(&["HSET", "h", "f", "rb"]));
    expected.insert(("h".into(), "ra".into(), "rb".into()));
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    for name in names {
        let journal = cluster
            .conn(name)
            .cmd(&["MERIDIAN", "CONFLICTS", "COUNT", "1000"]);
        let Frame::Array(entries) = journal else {
            panic!("{journal:?}")
        };
        let mut found = BTreeSet::new();
        for e in &entries {
            let fields = entry_fields(e);
            let (key, loser, winner) = (
                &fields["key"],
                &fields["loser_value"],
                &fields["winner_value"],
            );
            // The shown value of a key is the winner of every pair it is in.
            let shown = dump[key].split_once(':').unwrap().1;
            let shown = shown
                .split(',')
                .find_map(|p| p.strip_prefix("f="))
                .unwrap_or(shown);
            assert_ne!(
                loser, shown,
                "{name}: journal says the shown value {shown} of {key} lost"
            );
            let pair = (
                key.clone(),
                loser.clone().min(winner.clone()),
                loser.clone().max(winner.clone()),
            );
            assert!(
                found.insert(pair.clone()),
                "{name}: conflict {pair:?} journaled twice"
            );
        }
        assert_eq!(
            found, expected,
            "{name}: journal differs from the reference model"
        );
        println!(
            "{name}: {} journal entries, as the model predicts",
            found.len()
        );
    }
}

/// Reads one `MERIDIAN CONFLICTS` entry (a map in RESP3, flat pairs in RESP2).
fn entry_fields(e: &Frame) -> BTreeMap<String, String> {
    let pairs: Vec<(Frame, Frame)> = match e {
        Frame::Map(p) => p.clone(),
        Frame::Array(items) => items
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        other => panic!("conflict entry {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let s = |f: Frame| match f {
                Frame::Bulk(b) => String::from_utf8_lossy(&b).to_string(),
                Frame::Simple(s) => s,
                Frame::Integer(i) => i.to_string(),
                Frame::Null => String::new(),
                other => format!("{other:?}"),
            };
            (s(k), s(v))
        })
        .collect()
}

#[test]
fn region_restarted_mid_stream_resumes_without_duplicates() {
    let seed = seed();
    let mut cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(10), &[], seed);
    let writers: Vec<_> = ["ra", "rb"]
        .iter()
        .map(|name| {
            let mut c = cluster.conn(name);
            std::thread::spawn(move || {
                let mut acked = 0;
                for _ in 0..1500 {
                    if let Frame::Integer(_) = c.cmd(&["INCR", "counter"]) {
                        acked += 1;
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(
        rand::rngs::StdRng::seed_from_u64(seed).gen_range(100..400),
    ));
    cluster.restart("rc");
    std::thread::sleep(Duration::from_millis(200));
    // The writer regions restart too, one at a time, while the other writes.
    let total: i64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    cluster.restart("ra");
    let dump = cluster.converge(CONVERGE);
    assert_eq!(
        dump["counter"],
        format!("string:{total}"),
        "duplicate or lost application"
    );
    println!("counter = {total} = acknowledged increments, at every region");
}

#[test]
fn partial_partition_converges_through_relay() {
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], seed());
    cluster.mesh.cut("ra", "rb").unwrap();
    let mut a = cluster.conn("ra");
    let mut b = cluster.conn("rb");
    for i in 0..100 {
        ok(a.cmd(&["SET", &format!("a{i}"), "x"]));
        ok(b.cmd(&["INCR", "shared"]));
        ok(a.cmd(&["INCR", "shared"]));
    }
    // ra and rb cannot talk; everything they wrote reaches the other via rc.
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["shared"], "string:200");
    assert_eq!(dump.keys().filter(|k| k.starts_with('a')).count(), 100);
    assert_eq!(int(cluster.conn("rb").cmd(&["EXISTS", "a99"])), 1);
}

#[test]
fn session_token_gives_read_your_writes_in_another_region() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::wan(300), &[], seed());
    let mut a = cluster.conn("ra");
    ok(a.cmd(&["SET", "profile", "v2"]));
    let token = match a.cmd(&["MERIDIAN", "TOKEN"]) {
        Frame::Bulk(t) => String::from_utf8(t.to_vec()).unwrap(),
        other => panic!("{other:?}"),
    };
    // The client moves to rb before the write has crossed the 300 ms link.
    let mut b = cluster.conn("rb");
    let started = std::time::Instant::now();
    assert_eq!(
        b.cmd(&["MERIDIAN", "AFTER", &token, "TIMEOUT", "5000"]),
        Frame::ok()
    );
    assert_eq!(b.cmd(&["GET", "profile"]), Frame::bulk("v2"));
    println!("AFTER waited {:?}", started.elapsed());
    // Cut off, the wait ends at its timeout with an error naming the gap.
    cluster.mesh.partition("ra").unwrap();
    ok(a.cmd(&["SET", "profile", "v3"]));
    let token = match a.cmd(&["MERIDIAN", "TOKEN"]) {
        Frame::Bulk(t) => String::from_utf8(t.to_vec()).unwrap(),
        other => panic!("{other:?}"),
    };
    let started = std::time::Instant::now();
    let reply = b.cmd(&["MERIDIAN", "AFTER", &token, "TIMEOUT", "300"]);
    assert!(reply.is_error(), "{reply:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn peer_with_a_wrong_secret_or_cluster_is_refused() {
    let good = common::Meridian::start(&["--region", "ra", "--cluster-secret", "right"]);
    let repl = good.repl.to_string();
    let wrong_secret = common::Meridian::start(&[
        "--region",
        "rb",
        "--cluster-secret",
        "wrong",
        "--peer",
        &format!("ra={repl}"),
    ]);
    let wrong_cluster = common::Meridian::start(&[
        "--region",
        "rc",
        "--cluster-secret",
        "right",
        "--cluster",
        "other",
        "--peer",
        &format!("ra={repl}"),
    ]);
    let same_id = common::Meridian::start(&[
        "--region",
        "ra",
        "--cluster-secret",
        "right",
        "--peer",
        &format!("ra2={repl}"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let status: serde_json::Value = http_json(good.http, "/v1/status");
    let refused = &status["handshakes_refused"];
    assert!(refused["bad secret"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert!(
        refused["other cluster"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    assert!(
        refused["duplicate region id"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    // Nothing from the refused peers reached the good region.
    ok(wrong_secret.conn().cmd(&["SET", "leak", "1"]));
    ok(wrong_cluster.conn().cmd(&["SET", "leak", "1"]));
    ok(same_id.conn().cmd(&["SET", "leak", "1"]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(good.conn().cmd(&["EXISTS", "leak"]), Frame::Integer(0));
}

/// Lag in ms is the age of the oldest op a peer has not acknowledged, and
/// keeps growing while the link is cut (it once read 0 for a down link).
#[test]
fn lag_of_a_cut_link_keeps_growing_until_heal() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::wan(5), &[], seed());
    ok(cluster.conn("ra").cmd(&["SET", "warm", "1"]));
    cluster.converge(CONVERGE);
    cluster.mesh.partition("rb").unwrap();
    for i in 0..20 {
        ok(cluster.conn("ra").cmd(&["SET", &format!("k{i}"), "v"]));
    }
    std::thread::sleep(Duration::from_millis(800));
    let status = http_json(cluster.regions[0].http, "/v1/status");
    let rb = status["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "rb")
        .unwrap()
        .clone();
    assert!(rb["lag_ops"].as_u64().unwrap() >= 20, "{rb}");
    assert!(rb["lag_ms"].as_u64().unwrap() >= 700, "{rb}");
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = http_json(cluster.regions[0].http, "/v1/status");
        let rb = status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "rb")
            .unwrap()
            .clone();
        if rb["lag_ops"] == 0 && rb["lag_ms"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lag stayed after heal: {rb}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
