//! A region cut off for longer than its peers retain their logs
//! (`--repl-backlog-ops`) converges by anti-entropy after the heal, and
//! only the keys that differ move.

mod common;

use std::time::Duration;

use common::cluster::{http_get, Cluster};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

/// The value of an unlabelled metric.
fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    http_get(addr, "/metrics")
        .1
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no metric {name}")) as u64
}

/// Sends `commands` pipelined and checks every reply is OK.
fn pipeline(conn: &mut common::Conn, commands: &[Vec<String>]) {
    for chunk in commands.chunks(500) {
        for c in chunk {
            conn.send(c);
        }
        for _ in chunk {
            let reply = conn.read().expect("reply");
            assert!(
                matches!(&reply, Frame::Simple(s) if s == "OK"),
                "unexpected reply {reply:?}"
            );
        }
    }
}

#[test]
fn region_isolated_past_the_backlog_converges_by_anti_entropy() {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("seed {seed}");
    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(5),
        &[
            "--repl-backlog-ops",
            "100",
            "--snapshot-after-ops",
            "200",
            "--log-segment-max-bytes",
            "4096",
        ],
        seed,
    );
    let keys = 10_000;
    let value = "v".repeat(40);
    let mut ra = cluster.conn("ra");
    let writes: Vec<Vec<String>> = (0..keys)
        .map(|i| vec!["SET".into(), format!("key:{i:05}"), value.clone()])
        .collect();
    pipeline(&mut ra, &writes);
    cluster.converge(Duration::from_secs(60));

    cluster.mesh.partition("rc").unwrap();
    // 100 keys change, each five times on ra and once on rb: far more
    // records than the 100 the peers keep for rc.
    let changed: Vec<String> = (0..100).map(|i| format!("key:{:05}", i * 97)).collect();
    for round in 0..5 {
        let writes: Vec<Vec<String>> = changed
            .iter()
            .map(|k| vec!["SET".into(), k.clone(), format!("ra-{round}")])
            .collect();
        pipeline(&mut ra, &writes);
    }
    let mut rb = cluster.conn("rb");
    let writes: Vec<Vec<String>> = changed
        .iter()
        .take(10)
        .map(|k| vec!["SET".into(), k.clone(), "rb".into()])
        .collect();
    pipeline(&mut rb, &writes);
    std::thread::sleep(Duration::from_secs(1));
    for name in ["ra", "rb"] {
        let reply = cluster.conn(name).cmd(&["SAVE"]);
        assert!(matches!(&reply, Frame::Simple(s) if s == "OK"), "{reply:?}");
    }
    let rc_http = cluster.regions[cluster.index("rc")].http;
    assert_eq!(metric(rc_http, "meridian_antientropy_sessions_total"), 0);

    cluster.mesh.heal_all();
    let state = cluster.converge(Duration::from_secs(60));
    assert_eq!(state.len(), keys);

    let sessions = metric(rc_http, "meridian_antientropy_sessions_total");
    let merged = metric(rc_http, "meridian_antientropy_keys_merged_total");
    let bytes = metric(rc_http, "meridian_antientropy_bytes_total");
    println!("rc: {sessions} sessions, {merged} keys merged, {bytes} bytes");
    assert!(
        sessions >= 1,
        "anti-entropy did not run: the log was not compacted past rc"
    );
    // Each session (one per peer that dialed rc) sends the 100 changed keys
    // and a few neighbours sharing their ranges, never the 10 000.
    assert!(
        merged >= 100 && merged <= sessions * 250,
        "{merged} keys merged"
    );
    let full_copy = keys as u64 * (9 + 40);
    assert!(
        bytes * 5 < full_copy,
        "{bytes} bytes vs {full_copy} for a full copy"
    );
}

/// Both regions change different keys while cut off from each other and
/// compact their logs. At the heal both dial, yet one session repairs both
/// sides: each region counts exactly one session, and it moves each changed
/// key's state about once (two sessions, or states sent both ways, would
/// move at least twice the payload).
#[test]
fn partition_heal_is_repaired_by_one_session_for_both_sides() {
    let cluster = Cluster::start(
        &["ha", "hb"],
        LinkConditions::wan(5),
        &[
            "--repl-backlog-ops",
            "20",
            "--log-segment-max-bytes",
            "4096",
        ],
        11,
    );
    let mut ha = cluster.conn("ha");
    let writes: Vec<Vec<String>> = (0..5_000)
        .map(|i| vec!["SET".into(), format!("key:{i:05}"), "v".repeat(100)])
        .collect();
    pipeline(&mut ha, &writes);
    cluster.converge(Duration::from_secs(60));

    cluster.mesh.partition("hb").unwrap();
    let mut hb = cluster.conn("hb");
    let mut payload = 0;
    // One op per key: far more records than the 20 the logs keep.
    for i in 0..200 {
        let (conn, value) = if i % 2 == 0 {
            (&mut ha, "a".repeat(100))
        } else {
            (&mut hb, "b".repeat(100))
        };
        let key = format!("key:{:05}", i * 23);
        payload += key.len() + value.len();
        assert_eq!(conn.cmd(&["SET", &key, &value]), Frame::Simple("OK".into()));
    }
    for conn in [&mut ha, &mut hb] {
        assert_eq!(conn.cmd(&["SAVE"]), Frame::Simple("OK".into()));
    }
    let (a, b) = (cluster.index("ha"), cluster.index("hb"));
    for r in [a, b] {
        assert_eq!(
            metric(
                cluster.regions[r].http,
                "meridian_antientropy_sessions_total"
            ),
            0
        );
    }

    cluster.mesh.heal_all();
    let state = cluster.converge(Duration::from_secs(60));
    assert_eq!(state.len(), 5_000);
    assert_eq!(state["key:00000"], format!("string:{}", "a".repeat(100)));
    assert_eq!(state["key:00023"], format!("string:{}", "b".repeat(100)));
    // Let a second session, if one were coming, start and finish.
    std::thread::sleep(Duration::from_secs(3));
    let mut bytes = 0;
    for r in [a, b] {
        let http = cluster.regions[r].http;
        assert_eq!(
            metric(http, "meridian_antientropy_sessions_total"),
            1,
            "one session for the pair, counted by both sides"
        );
        bytes = metric(http, "meridian_antientropy_bytes_total");
    }
    println!("one session moved {bytes} bytes for {payload} B of changed keys and values");
    assert!(
        bytes as f64 <= 1.6 * payload as f64,
        "{bytes} bytes for {payload} B of changed keys and values"
    );
}

/// With `--antientropy-interval-ms`, links compare full state now and then
/// even though the log covers every peer; regions in sync exchange only the
/// top-level digests, send no key, and reconnect without being refused.
#[test]
fn periodic_anti_entropy_compares_regions_in_sync_cheaply() {
    let cluster = Cluster::start(
        &["pa", "pb"],
        LinkConditions::wan(2),
        &["--antientropy-interval-ms", "400"],
        3,
    );
    let mut pa = cluster.conn("pa");
    let writes: Vec<Vec<String>> = (0..2_000)
        .map(|i| vec!["SET".into(), format!("k:{i}"), "v".into()])
        .collect();
    pipeline(&mut pa, &writes);
    cluster.converge(Duration::from_secs(30));
    let a = cluster.index("pa");
    let (sessions0, bytes0, keys0) = (
        metric(
            cluster.regions[a].http,
            "meridian_antientropy_sessions_total",
        ) as f64,
        metric(cluster.regions[a].http, "meridian_antientropy_bytes_total") as f64,
        metric(
            cluster.regions[a].http,
            "meridian_antientropy_keys_sent_total",
        ) as f64,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let sessions = loop {
        let s = metric(
            cluster.regions[a].http,
            "meridian_antientropy_sessions_total",
        ) as f64;
        if s >= sessions0 + 4.0 {
            break s - sessions0;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic sessions ({s})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let bytes = metric(cluster.regions[a].http, "meridian_antientropy_bytes_total") as f64 - bytes0;
    let keys = metric(
        cluster.regions[a].http,
        "meridian_antientropy_keys_sent_total",
    ) as f64
        - keys0;
    println!("{sessions} sessions, {bytes} bytes, {keys} keys sent");
    assert_eq!(keys, 0.0, "regions in sync send no key");
    assert!(
        bytes / sessions < 8_192.0,
        "{bytes} bytes in {sessions} sessions"
    );
    let status = common::cluster::http_json(cluster.regions[a].http, "/v1/status");
    assert!(
        status["handshakes_refused"]
            .get("duplicate region id")
            .is_none(),
        "a planned reconnect was refused: {status}"
    );
    cluster.converge(Duration::from_secs(10));
}

/// ra repairs rc by anti-entropy while rb, still cut off from rc, streams
/// from ra. ra's new writes depend on rc's ops, which reached ra as state,
/// not in its log: ra must compare state with rb before streaming them, or
/// rb sees ops before their dependencies and resets the link.
#[test]
fn state_merged_by_anti_entropy_reaches_other_peers_before_ops_that_depend_on_it() {
    let cluster = Cluster::start(
        &["ma", "mb", "mc"],
        LinkConditions::wan(2),
        &[
            "--repl-backlog-ops",
            "20",
            "--log-segment-max-bytes",
            "4096",
        ],
        9,
    );
    let (a, b, c) = (
        cluster.index("ma"),
        cluster.index("mb"),
        cluster.index("mc"),
    );
    cluster.mesh.partition("mc").unwrap();
    let mut mc = cluster.conn("mc");
    for i in 0..300 {
        mc.cmd(&["SET", &format!("c:{i}"), "x"]);
    }
    // mc's log no longer reaches back to where its peers stopped.
    let snap = common::cluster::http_request(
        std::net::TcpStream::connect(cluster.regions[c].http).unwrap(),
        "POST",
        "/v1/snapshot",
        &[],
        "",
    );
    assert_eq!(snap.code, 200, "{}", snap.body);
    // Only ma and mc meet again.
    cluster.mesh.link("mc", "ma").unwrap().heal();
    cluster.mesh.link("ma", "mc").unwrap().heal();
    let mut ma = cluster.conn("ma");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ma.cmd(&["EXISTS", "c:299"]) != Frame::Integer(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "ma never got mc's state"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        metric(
            cluster.regions[a].http,
            "meridian_antientropy_sessions_total"
        ) > 0,
        "mc reached ma by anti-entropy"
    );
    for i in 0..20 {
        assert_eq!(
            ma.cmd(&["SET", &format!("a:{i}"), "after"]),
            Frame::Simple("OK".into())
        );
    }
    let mut mb = cluster.conn("mb");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mb.cmd(&["EXISTS", "a:19"]) != Frame::Integer(1)
        || mb.cmd(&["EXISTS", "c:299"]) != Frame::Integer(1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "mb never got ma's writes and mc's state"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(
            cluster.regions[b].http,
            "meridian_replication_causal_resets_total"
        ),
        0,
        "mb saw ops before their dependencies"
    );
    cluster.mesh.heal_all();
    cluster.converge(Duration::from_secs(30));
}
