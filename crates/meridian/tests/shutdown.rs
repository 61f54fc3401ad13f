//! Graceful shutdown on SIGTERM: the region stops, exits 0, keeps every
//! acknowledged write, and its peers count it down at once because it said
//! goodbye, not seconds later when their failure detectors notice.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{http_json, Cluster};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

#[test]
fn sigterm_says_goodbye_to_peers_and_keeps_every_acknowledged_write() {
    // Slow heartbeats: a failure detector would need many seconds to call
    // a silent peer down, so a prompt "down" can only come from the goodbye.
    let mut cluster = Cluster::start(
        &["ga", "gb", "gc"],
        LinkConditions::wan(2),
        &[
            "--heartbeat-ms",
            "2000",
            "--lease-ms",
            "20000",
            "--fsync",
            "everysec",
        ],
        21,
    );
    let mut gc = cluster.conn("gc");
    for i in 0..200 {
        assert_eq!(
            gc.cmd(&["SET", &format!("k{i}"), "v"]),
            Frame::Simple("OK".into())
        );
    }
    let c = cluster.index("gc");
    let pid = cluster.regions[c].child.id().to_string();
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    let exit = loop {
        if let Some(status) = cluster.regions[c].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "gc did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let a = cluster.index("ga");
    loop {
        let status = http_json(cluster.regions[a].http, "/v1/status");
        let gc_state = status["regions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "gc")
            .map(|r| r["state"].clone());
        if gc_state == Some("down".into()) {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "ga still counts gc {gc_state:?} {} ms after its shutdown",
            sent.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "ga counted gc down {} ms after SIGTERM",
        sent.elapsed().as_millis()
    );

    cluster.restart("gc");
    let mut gc = cluster.conn("gc");
    assert_eq!(
        gc.cmd(&["DBSIZE"]),
        Frame::Integer(200),
        "every acknowledged write survived"
    );
    let dump = cluster.converge(Duration::from_secs(30));
    assert_eq!(dump.len(), 200);
}
