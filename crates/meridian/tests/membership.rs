//! Adding, removing and re-admitting regions on a running cluster, each
//! while another region is down, with real processes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{http_get, http_json, Cluster, SECRET};
use common::Meridian;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

fn members(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("members")
        .args(args)
        .output()
        .expect("run meridian members");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn membership_version(m: &Meridian) -> u64 {
    http_json(m.http, "/v1/members")["version"]
        .as_u64()
        .unwrap()
}

/// The sum of a metric's samples (all label sets).
fn metric(m: &Meridian, name: &str) -> f64 {
    let (_, text) = http_get(m.http, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn refused(m: &Meridian, kind: &str) -> u64 {
    http_json(m.http, "/v1/status")["handshakes_refused"][kind]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn region_added_while_another_is_down_converges_once_all_are_back() {
    let mut cluster = Cluster::start(&["ma", "mb", "mc"], LinkConditions::wan(5), &[], 11);
    let mut a = cluster.conn("ma");
    for i in 0..50 {
        assert_eq!(
            a.cmd(&["SET", &format!("before:{i}"), "x"]),
            Frame::Simple("OK".into())
        );
    }
    let c = cluster.index("mc");
    cluster.regions[c].kill9();

    // The new region knows the cluster; the cluster does not know it yet.
    let peers: Vec<String> = ["ma", "mb", "mc"]
        .iter()
        .map(|n| format!("{n}={}", cluster.regions[cluster.index(n)].repl))
        .collect();
    let mut args = vec!["--region", "md", "--cluster-secret", SECRET];
    for p in &peers {
        args.extend(["--peer", p.as_str()]);
    }
    let d = Meridian::start(&args);
    let a_http = cluster.regions[cluster.index("ma")].http.to_string();
    wait_for("ma to refuse md", Duration::from_secs(10), || {
        refused(&cluster.regions[0], "not a member") > 0
    });

    let (ok, out, err) = members(&["--http", &a_http, "add", "md", &d.repl.to_string()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("md") && out.contains("version 1"), "{out}");
    let b = cluster.index("mb");
    wait_for("mb to learn of md", Duration::from_secs(10), || {
        membership_version(&cluster.regions[b]) == 1
    });
    wait_for("md to link with ma and mb", Duration::from_secs(20), || {
        let s = http_json(d.http, "/v1/status");
        ["ma", "mb"].iter().all(|p| {
            s["regions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == *p && r["link"]["outbound"] == "up")
        })
    });
    let mut dc = d.conn();
    for i in 0..50 {
        assert_eq!(
            dc.cmd(&["SET", &format!("from-d:{i}"), "y"]),
            Frame::Simple("OK".into())
        );
    }
    assert_eq!(a.cmd(&["INCRBY", "counter", "5"]), Frame::Integer(5));

    // mc comes back knowing nothing of md, learns it from its peers, and
    // everyone converges.
    cluster.restart("mc");
    wait_for("mc to learn of md", Duration::from_secs(20), || {
        membership_version(&cluster.regions[c]) == 1
    });
    let m = http_json(cluster.regions[c].http, "/v1/members");
    assert_eq!(m["majority"], 3, "{m}");
    cluster.names.push("md".into());
    cluster.regions.push(d);
    let dump = cluster.converge(Duration::from_secs(60));
    assert_eq!(dump.len(), 101, "50 + 50 keys and the counter");
    assert_eq!(dump["counter"], "string:5");
}

#[test]
fn removing_a_dead_region_reports_what_it_had_not_shipped_and_refuses_it_after() {
    let mut cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], 12);
    let (a, b, c) = (
        cluster.index("ra"),
        cluster.index("rb"),
        cluster.index("rc"),
    );
    // rc's own links out are cut: its writes cannot leave, but it still
    // acknowledges what ra and rb send, so they learn how far it got.
    cluster.mesh.link("rc", "ra").unwrap().partition();
    cluster.mesh.link("rc", "rb").unwrap().partition();
    let mut rc = cluster.conn("rc");
    for i in 0..10 {
        assert_eq!(
            rc.cmd(&["SET", &format!("stranded:{i}"), "z"]),
            Frame::Simple("OK".into())
        );
    }
    let mut ra = cluster.conn("ra");
    wait_for("ra to learn rc's position", Duration::from_secs(20), || {
        // Any write from ra makes rc acknowledge with its version vector.
        ra.cmd(&["INCR", "tick"]);
        let s = http_json(cluster.regions[a].http, "/v1/status");
        s["regions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "rc" && r["version_vector"]["rc"].as_u64() >= Some(10))
    });
    cluster.regions[c].kill9();

    let http = cluster.regions[a].http.to_string();
    let (ok, out, err) = members(&["--http", &http, "--json", "remove", "rc"]);
    assert!(ok, "{out}{err}");
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["unshipped"]["unshipped_ops"], 10, "{reply}");
    assert_eq!(reply["majority"], 2, "{reply}");
    let (ok, _, err) = members(&["--http", &http, "remove", "rc"]);
    assert!(!ok && err.contains("not a member"), "{err}");
    wait_for("rb to learn rc is gone", Duration::from_secs(10), || {
        membership_version(&cluster.regions[b]) == 1
    });

    // A removed region that comes back is refused by everyone.
    cluster.mesh.heal_all();
    cluster.restart("rc");
    wait_for("ra and rb to refuse rc", Duration::from_secs(20), || {
        refused(&cluster.regions[a], "removed") > 0 && refused(&cluster.regions[b], "removed") > 0
    });
    let mut rb = cluster.conn("rb");
    assert_eq!(rb.cmd(&["SET", "after", "1"]), Frame::Simple("OK".into()));
    let ra_after = ra.cmd(&["EXISTS", "stranded:0"]);
    assert_eq!(
        ra_after,
        Frame::Integer(0),
        "rc's stranded writes never arrive"
    );
}

#[test]
fn region_rejoins_after_a_long_outage_while_another_is_down() {
    let mut cluster = Cluster::start(
        &["ja", "jb", "jc"],
        LinkConditions::wan(5),
        &[
            "--repl-backlog-ops",
            "50",
            "--snapshot-after-ops",
            "100",
            "--log-segment-max-bytes",
            "4096",
        ],
        13,
    );
    let c = cluster.index("jc");
    cluster.regions[c].kill9();
    let mut ja = cluster.conn("ja");
    let mut jb = cluster.conn("jb");
    for i in 0..400 {
        ja.cmd(&["SET", &format!("a:{i}"), "x"]);
        jb.cmd(&["SADD", "set", &format!("b{i}")]);
    }
    // jb goes down before jc returns: jc must catch up from ja alone, past
    // what ja's log still holds.
    let b = cluster.index("jb");
    wait_for("ja to hold jb's writes", Duration::from_secs(20), || {
        ja.cmd(&["SCARD", "set"]) == Frame::Integer(400)
    });
    let a = cluster.index("ja");
    let snapshots_before = metric(&cluster.regions[a], "meridian_snapshots_total");
    cluster.regions[b].kill9();
    for i in 400..600 {
        ja.cmd(&["SET", &format!("a:{i}"), "x"]);
    }
    // A snapshot taken after these writes compacts ja's log past what jc,
    // down since the start, would need.
    wait_for(
        "ja to compact its log past what jc needs",
        Duration::from_secs(20),
        || metric(&cluster.regions[a], "meridian_snapshots_total") > snapshots_before,
    );
    cluster.restart("jc");
    let mut jc = cluster.conn("jc");
    wait_for("jc to catch up from ja", Duration::from_secs(60), || {
        jc.cmd(&["SCARD", "set"]) == Frame::Integer(400)
            && jc.cmd(&["EXISTS", "a:599"]) == Frame::Integer(1)
    });
    // ja counts the session once jc confirmed the merge.
    wait_for(
        "ja to report the anti-entropy session that repaired jc",
        Duration::from_secs(10),
        || metric(&cluster.regions[a], "meridian_antientropy_bytes_total") > 0.0,
    );
    cluster.restart("jb");
    let dump = cluster.converge(Duration::from_secs(60));
    assert_eq!(dump.len(), 601);
}
