//! Relaying only what a region cannot get directly: with every link up,
//! each write crosses to each peer once (not once more through every
//! other region), and when a link is cut under load the regions on either
//! side of it get each other's writes through the third, exactly once.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{http_json, Cluster};
use common::{int, ok, seed};
use meridian_netem::LinkConditions;

const CONVERGE: Duration = Duration::from_secs(30);

/// Ops every region shipped to its peers, and ops the regions wrote.
fn shipped_and_written(cluster: &Cluster) -> (u64, u64) {
    let (mut shipped, mut written) = (0, 0);
    for m in &cluster.regions {
        let status = http_json(m.http, "/v1/status");
        let region = status["region"].as_str().unwrap().to_string();
        written += status["version_vector"][&region].as_u64().unwrap_or(0);
        for r in status["regions"].as_array().unwrap() {
            shipped += r["ops_sent"].as_u64().unwrap_or(0);
        }
    }
    (shipped, written)
}

#[test]
fn with_every_link_up_each_write_crosses_to_each_peer_once() {
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], seed());
    // Links count as direct once up a second and acknowledged since.
    std::thread::sleep(Duration::from_millis(1_500));
    let (shipped_before, written_before) = shipped_and_written(&cluster);
    for name in ["ra", "rb", "rc"] {
        let mut c = cluster.conn(name);
        for i in 0..300 {
            ok(c.cmd(&["SET", &format!("{name}:{i}"), "v"]));
            ok(c.cmd(&["INCR", "shared"]));
        }
    }
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["shared"], "string:900");
    for m in &cluster.regions {
        let status = http_json(m.http, "/v1/status");
        for r in status["regions"].as_array().unwrap() {
            println!(
                "{} -> {}: sent {} dup {}",
                status["region"], r["id"], r["ops_sent"], r["duplicates"]
            );
        }
    }
    let (shipped, written) = shipped_and_written(&cluster);
    let (shipped, written) = (shipped - shipped_before, written - written_before);
    let per_write = shipped as f64 / written as f64;
    println!("{shipped} ops shipped for {written} writes: {per_write:.2} per write");
    assert_eq!(written, 1_800);
    assert!(
        per_write <= 2.1,
        "{per_write:.2} ops shipped per write with 2 peers: writes are relayed to regions that get them directly"
    );
}

#[test]
fn a_link_cut_under_load_makes_the_third_region_relay() {
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], seed());
    std::thread::sleep(Duration::from_millis(1_500));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["ra", "rb"]
        .into_iter()
        .map(|name| {
            let mut c = cluster.conn(name);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    ok(c.cmd(&["INCR", "shared"]));
                    ok(c.cmd(&["SET", &format!("{name}:{n}"), "v"]));
                    n += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    // Cut while ops flow and each region relays nothing to the other.
    cluster.mesh.cut("ra", "rb").unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    let b_wrote_during_cut = int(cluster.conn("rb").cmd(&["GET", "shared"]));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<i64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: i64 = counts.iter().sum();
    // Still cut: everything crosses through rc.
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["shared"], format!("string:{total}"));
    for (name, n) in ["ra", "rb"].iter().zip(&counts) {
        let key = format!("{name}:{}", n - 1);
        assert!(dump.contains_key(&key), "{key} missing");
    }
    assert!(b_wrote_during_cut > 0);
    // Healed, the direct link takes over again and nothing is lost.
    cluster.mesh.heal_all();
    let mut a = cluster.conn("ra");
    for _ in 0..50 {
        ok(a.cmd(&["INCR", "shared"]));
    }
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["shared"], format!("string:{}", total + 50));
    println!("{counts:?} increments while cut; converged through rc");
}
