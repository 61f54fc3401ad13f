//! Split-brain handling with real processes through the fault proxy:
//! failure detection, the quorum lease, and what each keyspace policy does
//! on each side of a partition.

mod common;

use std::time::{Duration, Instant};

use common::cluster::http_get;
use common::cluster::Cluster;
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const LEASE_MS: u64 = 1_000;
const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];

fn args(policy: &str) -> Vec<&str> {
    let mut a = vec!["--policy", policy];
    a.extend(FAST);
    a
}

/// Retries `cmd` until the reply satisfies `done`, up to `timeout`.
fn until(
    c: &mut Conn,
    cmd: &[&str],
    timeout: Duration,
    done: impl Fn(&Frame) -> bool,
) -> (Frame, Duration) {
    let started = Instant::now();
    loop {
        let reply = c.cmd(cmd);
        if done(&reply) || started.elapsed() > timeout {
            return (reply, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn is_ok(f: &Frame) -> bool {
    !f.is_error()
}

fn error_text(f: &Frame) -> String {
    match f {
        Frame::Error(e) => e.clone(),
        other => format!("{other:?}"),
    }
}

#[test]
fn minority_region_fences_majority_keys_within_the_lease_and_unfences_after_heal() {
    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(5),
        &args("acct:*=majority"),
        1,
    );
    for r in ["ra", "rb", "rc"] {
        let (reply, _) = until(
            &mut cluster.conn(r),
            &["SET", "acct:warm", r],
            Duration::from_secs(10),
            is_ok,
        );
        assert!(is_ok(&reply), "{r} never got the lease: {reply:?}");
    }
    let mut c = cluster.conn("rc");
    cluster.mesh.partition("rc").unwrap();
    let (reply, window) = until(
        &mut c,
        &["SET", "acct:1", "minority"],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    let text = error_text(&reply);
    assert!(text.starts_with("FENCED"), "{text}");
    println!(
        "fencing window: {} ms from cut to first -FENCED (lease {LEASE_MS} ms): {text}",
        window.as_millis()
    );
    assert!(
        window <= Duration::from_millis(LEASE_MS + 1_000),
        "fenced after {window:?}"
    );
    // Other keyspaces stay writable; reads keep working.
    assert_eq!(c.cmd(&["SET", "cart:1", "still-writable"]), Frame::ok());
    assert!(!c.cmd(&["GET", "acct:warm"]).is_error());
    let (code, body) = http_get(cluster.regions[2].http, "/health/ready");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("fenced"), "{body}");
    // The majority side keeps writing the same keys.
    assert_eq!(
        cluster.conn("ra").cmd(&["SET", "acct:1", "majority"]),
        Frame::ok()
    );
    assert_eq!(http_get(cluster.regions[0].http, "/health/ready").0, 200);

    cluster.mesh.heal_all();
    let (reply, took) = until(
        &mut c,
        &["SET", "acct:2", "after-heal"],
        Duration::from_secs(15),
        is_ok,
    );
    assert!(is_ok(&reply), "still fenced after heal: {reply:?}");
    println!("unfenced {} ms after heal", took.as_millis());
    let dump = cluster.converge(Duration::from_secs(30));
    assert_eq!(
        dump["acct:1"], "string:majority",
        "the minority's write was refused, so nothing to merge"
    );
    // A heal report appears once the peers have caught up.
    let deadline = Instant::now() + Duration::from_secs(35);
    loop {
        let (_, body) = http_get(cluster.regions[2].http, "/v1/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let heal = &status["view"]["last_heal"];
        if heal["partition_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= LEASE_MS)
        {
            println!("heal report: {heal}");
            break;
        }
        assert!(Instant::now() < deadline, "no heal report: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn active_active_keyspace_stays_writable_on_both_sides_and_journals_conflicts() {
    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(5),
        &args("acct:*=majority"),
        2,
    );
    cluster.converge(Duration::from_secs(10));
    cluster.mesh.partition("rc").unwrap();
    std::thread::sleep(Duration::from_millis(LEASE_MS + 500));
    assert_eq!(
        cluster.conn("rc").cmd(&["SET", "cart", "minority"]),
        Frame::ok()
    );
    assert_eq!(
        cluster.conn("ra").cmd(&["SET", "cart", "majority"]),
        Frame::ok()
    );
    cluster.mesh.heal_all();
    cluster.converge(Duration::from_secs(30));
    let Frame::Array(entries) = cluster
        .conn("ra")
        .cmd(&["MERIDIAN", "CONFLICTS", "KEY", "cart"])
    else {
        panic!()
    };
    assert_eq!(
        entries.len(),
        1,
        "one concurrent pair, one journal entry: {entries:?}"
    );
}

#[test]
fn primary_keyspace_is_written_only_at_its_primary_and_fenced_when_it_is_cut_off() {
    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(5),
        &args("acct:*=primary:ra"),
        3,
    );
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:1", "v1"],
        Duration::from_secs(10),
        is_ok,
    );
    assert!(is_ok(&reply), "{reply:?}");
    let refused = error_text(&cluster.conn("rb").cmd(&["SET", "acct:1", "v2"]));
    assert!(
        refused.starts_with("READONLY") && refused.contains("ra"),
        "{refused}"
    );
    assert_eq!(cluster.conn("rb").cmd(&["SET", "other", "x"]), Frame::ok());
    cluster.mesh.partition("ra").unwrap();
    let (reply, window) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:1", "v3"],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    assert!(error_text(&reply).starts_with("FENCED"), "{reply:?}");
    println!(
        "primary fenced {} ms after being cut off",
        window.as_millis()
    );
    cluster.mesh.heal_all();
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:1", "v4"],
        Duration::from_secs(15),
        is_ok,
    );
    assert!(is_ok(&reply));
    let dump = cluster.converge(Duration::from_secs(30));
    assert_eq!(dump["acct:1"], "string:v4");
}

#[test]
fn witness_counts_toward_the_majority_and_stores_nothing() {
    let cluster = Cluster::start_with(
        &["ra", "rb", "rw"],
        LinkConditions::wan(5),
        &args("acct:*=majority"),
        4,
        |name| {
            if name == "rw" {
                FAST.iter()
                    .map(|s| s.to_string())
                    .chain(["--witness".to_string()])
                    .collect()
            } else {
                args("acct:*=majority")
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }
        },
    );
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:1", "a"],
        Duration::from_secs(10),
        is_ok,
    );
    assert!(is_ok(&reply), "{reply:?}");
    let refused = error_text(&cluster.conn("rw").cmd(&["SET", "k", "v"]));
    assert!(refused.starts_with("WITNESS"), "{refused}");
    assert!(error_text(&cluster.conn("rw").cmd(&["GET", "acct:1"])).starts_with("WITNESS"));
    // rb is cut off: ra and the witness are still a majority.
    cluster.mesh.partition("rb").unwrap();
    let (reply, _) = until(
        &mut cluster.conn("rb"),
        &["SET", "acct:2", "b"],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    assert!(error_text(&reply).starts_with("FENCED"), "{reply:?}");
    std::thread::sleep(Duration::from_millis(LEASE_MS + 300));
    assert_eq!(
        cluster.conn("ra").cmd(&["SET", "acct:3", "a"]),
        Frame::ok(),
        "ra + witness hold the majority"
    );
    // The witness received no data at all.
    let (_, body) = http_get(cluster.regions[2].http, "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["keys"], 0, "{status}");
    assert_eq!(status["log"]["last_lsn"], 0, "{status}");
}
