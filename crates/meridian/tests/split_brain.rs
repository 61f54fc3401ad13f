//! Split-brain handling with real processes through the fault proxy:
//! failure detection, the quorum lease, and what each keyspace policy does
//! on each side of a partition.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::cluster::{http_get, http_json};
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
    // The cut may have lasted long enough for rb or rc to be elected: the
    // write goes to whichever region the keyspace's primary is now.
    let (primary, reply) = write_at_primary(&cluster, "ra", &["SET", "acct:1", "v4"]);
    assert!(is_ok(&reply), "{primary}: {reply:?}");
    let dump = cluster.converge(Duration::from_secs(30));
    assert_eq!(dump["acct:1"], "string:v4");
}

/// The region a `-READONLY` error names as the primary.
fn named_primary(f: &Frame) -> Option<String> {
    let text = error_text(f);
    text.starts_with("READONLY")
        .then(|| text.rsplit(' ').next().map(str::to_string))
        .flatten()
}

/// Sends `cmd` to `first`, following `-READONLY` to the primary it names
/// and retrying `-FENCED`, for up to 15 s.
fn write_at_primary(cluster: &Cluster, first: &str, cmd: &[&str]) -> (String, Frame) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut at = first.to_string();
    loop {
        let reply = cluster.conn(&at).cmd(cmd);
        if is_ok(&reply) || Instant::now() > deadline {
            return (at, reply);
        }
        if let Some(p) = named_primary(&reply) {
            at = p;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let w = cluster.index("rw");
    let own_row = http_json(cluster.regions[w].http, "/v1/status")["regions"][0].clone();
    assert_eq!(
        (own_row["self"].clone(), own_row["role"].clone()),
        (serde_json::json!(true), serde_json::json!("witness")),
        "the witness's own row names its role"
    );
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

/// Milliseconds since the Unix epoch: the regions and the test share one
/// machine, hence one wall clock, so their timestamps compare.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What one client writing to one region saw.
#[derive(Default)]
struct Writes {
    /// (key, value, acknowledged at ms) of every acknowledged write.
    acked: Vec<(String, String, u64)>,
    /// (error text, at ms) of every refused write.
    refused: Vec<(String, u64)>,
}

/// Writes a new `acct:` key at `region` every few ms until `stop`.
fn writer(
    mut c: Conn,
    region: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    out: std::sync::Arc<std::sync::Mutex<Writes>>,
) {
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let (key, value) = (format!("acct:{region}:{n}"), format!("{region}-{n}"));
        let reply = c.cmd(&["SET", &key, &value]);
        let at = now_ms();
        let mut w = out.lock().unwrap();
        if is_ok(&reply) {
            w.acked.push((key, value, at));
        } else {
            w.refused.push((error_text(&reply), at));
        }
        drop(w);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status(cluster: &Cluster, region: &str) -> serde_json::Value {
    let (_, body) = http_get(cluster.regions[cluster.index(region)].http, "/v1/status");
    serde_json::from_str(&body).unwrap()
}

/// Every (term, region, first_ms, last_ms, count) of accepted `primary`
/// writes the regions report.
fn accepted_windows(cluster: &Cluster) -> Vec<(u64, String, u64, u64, u64)> {
    let mut out = Vec::new();
    for r in &cluster.names {
        let s = status(cluster, r);
        for w in s["election"]["writes_accepted"].as_array().unwrap() {
            out.push((
                w["term"].as_u64().unwrap(),
                r.clone(),
                w["first_ms"].as_u64().unwrap(),
                w["last_ms"].as_u64().unwrap(),
                w["count"].as_u64().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn primary_failover_elects_new_primary_with_higher_epoch_and_loses_no_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let cluster = Cluster::start(
        &["ra", "rb", "rc"],
        LinkConditions::wan(5),
        &args("acct:*=primary:ra"),
        5,
    );
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:warm", "x"],
        Duration::from_secs(10),
        is_ok,
    );
    assert!(is_ok(&reply), "{reply:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let names: [&'static str; 3] = ["ra", "rb", "rc"];
    let (logs, threads) = start_writers(&cluster, names, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let acked_before = logs[0].lock().unwrap().acked.len();
    assert!(acked_before > 10, "ra accepted only {acked_before} writes");
    assert!(
        logs[1].lock().unwrap().acked.is_empty(),
        "rb is not the primary yet"
    );

    let cut_ms = now_ms();
    cluster.mesh.partition("ra").unwrap();
    let (new, first_new_ms) = first_write_elsewhere(&names[1..], &logs[1..]);
    let (last_old_ms, first_fenced_ms) = last_acked_and_first_fenced(&logs[0], cut_ms);
    let first_fenced_ms = first_fenced_ms.expect("ra answered -FENCED after the cut");
    let (code, body) = http_get(cluster.regions[0].http, "/health/ready");
    assert_eq!(code, 503, "the cut-off primary is fenced: {body}");
    let new_status = status(&cluster, &new);
    assert_eq!(new_status["election"]["role"], "leader", "{new_status}");
    let term = new_status["election"]["term"].as_u64().unwrap();
    assert!(term >= 1, "elected in a higher term: {new_status}");
    assert_eq!(
        http_get(cluster.regions[cluster.index(&new)].http, "/health/ready").0,
        200
    );
    let follower = if new == "rb" { "rc" } else { "rb" };
    let refused = error_text(&cluster.conn(follower).cmd(&["SET", "acct:f", "x"]));
    assert!(
        refused.starts_with("READONLY") && refused.ends_with(&new),
        "{refused}"
    );
    assert_eq!(
        http_get(
            cluster.regions[cluster.index(follower)].http,
            "/health/ready"
        )
        .0,
        200,
        "a follower serves reads"
    );

    assert_one_primary_per_term(&cluster, &new);
    assert!(first_new_ms >= last_old_ms, "client acks overlap");
    let (_, metrics) = http_get(cluster.regions[cluster.index(&new)].http, "/metrics");
    assert!(
        metrics.contains(&format!("\nmeridian_primary_term {term}\n"))
            && metrics.contains("\nmeridian_primary 1\n")
            && !metrics.contains("\nmeridian_elections_total 0\n"),
        "{metrics}"
    );
    // The term and the vote are durable in the new primary's data dir.
    let saved =
        std::fs::read_to_string(cluster.regions[cluster.index(&new)].dir.join("election")).unwrap();
    assert!(
        saved.contains(&format!("term {term}\n")) && saved.contains(&format!("primary {new}\n")),
        "{saved}"
    );

    cluster.mesh.heal_all();
    let healed = Instant::now();
    let (reply, rejoin) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:after", "x"],
        Duration::from_secs(15),
        |f| error_text(f).starts_with("READONLY"),
    );
    let text = error_text(&reply);
    assert!(
        text.starts_with("READONLY") && text.ends_with(&new),
        "ra rejoins as a follower of {new}: {text}"
    );
    let ra_status = status(&cluster, "ra");
    assert_eq!(ra_status["election"]["role"], "follower", "{ra_status}");
    assert_eq!(ra_status["election"]["primary"], new.as_str());
    assert_eq!(http_get(cluster.regions[0].http, "/health/ready").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    let acked = assert_every_acknowledged_write_converged(&cluster, &logs);
    let windows = accepted_windows(&cluster);
    println!(
        "failover: cut at 0; ra's last accepted write +{} ms; ra answered -FENCED from +{} ms; {new} accepted its first write at +{} ms (term {term}); gap {} ms (lease {LEASE_MS} ms); ra followed {new} {} ms after heal; {acked} acknowledged writes all present",
        last_old_ms.saturating_sub(cut_ms),
        first_fenced_ms.saturating_sub(cut_ms),
        first_new_ms.saturating_sub(cut_ms),
        first_new_ms.saturating_sub(last_old_ms),
        rejoin.as_millis().min(healed.elapsed().as_millis()),
    );
    for (term, region, first, last, count) in windows {
        println!(
            "accepted primary writes: term {term} at {region}: {count} writes from +{} to +{} ms",
            first as i64 - cut_ms as i64,
            last as i64 - cut_ms as i64
        );
    }
}

/// One [`writer`] thread per region in `names`, each with its own log.
fn start_writers(
    cluster: &Cluster,
    names: [&'static str; 3],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (
    Vec<std::sync::Arc<std::sync::Mutex<Writes>>>,
    Vec<std::thread::JoinHandle<()>>,
) {
    let logs: Vec<std::sync::Arc<std::sync::Mutex<Writes>>> =
        names.iter().map(|_| std::sync::Arc::default()).collect();
    let threads = names
        .into_iter()
        .zip(&logs)
        .map(|(r, log)| {
            let (c, stop, log) = (cluster.conn(r), stop.clone(), log.clone());
            std::thread::spawn(move || writer(c, r, stop, log))
        })
        .collect();
    (logs, threads)
}

/// Waits until one of `names` (whose writers log to `logs`) acknowledges a
/// write: that region was elected. Returns it and when it acknowledged.
fn first_write_elsewhere(
    names: &[&str],
    logs: &[std::sync::Arc<std::sync::Mutex<Writes>>],
) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = names.iter().zip(logs).find_map(|(r, log)| {
            log.lock()
                .unwrap()
                .acked
                .first()
                .map(|(_, _, at)| (r.to_string(), *at))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no region was elected");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// When the old primary acknowledged its last write, and when it first
/// answered -FENCED after the cut at `cut_ms`.
fn last_acked_and_first_fenced(log: &std::sync::Mutex<Writes>, cut_ms: u64) -> (u64, Option<u64>) {
    let w = log.lock().unwrap();
    let last = w.acked.last().map_or(0, |(_, _, at)| *at);
    let fenced = w
        .refused
        .iter()
        .find(|(e, at)| *at >= cut_ms && e.starts_with("FENCED"))
        .map(|(_, at)| *at);
    (last, fenced)
}

/// No two regions accepted primary writes in one term, and the old
/// primary's (ra's) last accepted write came before the first of `new`.
fn assert_one_primary_per_term(cluster: &Cluster, new: &str) {
    let windows = accepted_windows(cluster);
    for pair in windows.windows(2) {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two regions wrote in one term: {windows:?}"
        );
    }
    let old = windows.iter().find(|w| w.1 == "ra").expect("ra's window");
    let newer = windows.iter().find(|w| w.1 == new).expect("the new window");
    assert!(old.0 < newer.0, "{windows:?}");
    assert!(
        newer.2 >= old.3,
        "the new primary accepted at {} before the old one stopped at {}: {windows:?}",
        newer.2,
        old.3
    );
}

/// Every acknowledged write, anywhere, is in the converged state. Returns
/// how many there were.
fn assert_every_acknowledged_write_converged(
    cluster: &Cluster,
    logs: &[std::sync::Arc<std::sync::Mutex<Writes>>],
) -> usize {
    let dump = cluster.converge(Duration::from_secs(30));
    let mut acked = 0;
    for log in logs {
        for (key, value, _) in &log.lock().unwrap().acked {
            assert_eq!(
                dump.get(key).map(String::as_str),
                Some(format!("string:{value}").as_str()),
                "acknowledged write {key} lost"
            );
            acked += 1;
        }
    }
    acked
}

#[test]
fn witness_votes_so_two_data_regions_fail_over_their_primary() {
    let mut cluster = Cluster::start_with(
        &["ra", "rb", "rw"],
        LinkConditions::wan(5),
        &args("acct:*=primary:ra"),
        6,
        |name| {
            let mut a: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
            if name == "rw" {
                a.push("--witness".into());
            } else {
                a.extend(["--policy".into(), "acct:*=primary:ra".into()]);
            }
            a
        },
    );
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:1", "a"],
        Duration::from_secs(10),
        is_ok,
    );
    assert!(is_ok(&reply), "{reply:?}");
    // The witness has no policies; it learns the primary from the others.
    let (_, body) = http_get(cluster.regions[2].http, "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["election"]["primary"], "ra", "{status}");

    cluster.mesh.partition("ra").unwrap();
    let (reply, took) = until(
        &mut cluster.conn("rb"),
        &["SET", "acct:2", "b"],
        Duration::from_secs(15),
        is_ok,
    );
    assert!(is_ok(&reply), "rb was not elected: {reply:?}");
    println!(
        "rb (with the witness's vote) accepted a primary write {} ms after ra was cut off",
        took.as_millis()
    );
    let (_, body) = http_get(cluster.regions[2].http, "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["election"]["primary"], "rb", "{status}");
    assert_eq!(status["election"]["role"], "follower", "{status}");

    cluster.mesh.heal_all();
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["SET", "acct:3", "a"],
        Duration::from_secs(15),
        |f| error_text(f).starts_with("READONLY"),
    );
    assert!(error_text(&reply).ends_with("rb"), "{reply:?}");
    // What the new primary acknowledged reaches the old one.
    let (reply, _) = until(
        &mut cluster.conn("ra"),
        &["GET", "acct:2"],
        Duration::from_secs(15),
        |f| *f == Frame::bulk("b"),
    );
    assert_eq!(reply, Frame::bulk("b"));

    // The new primary is killed and restarted: its term comes back from
    // its data directory, so it never returns to term 0.
    cluster.restart("rb");
    let (_, body) = http_get(cluster.regions[1].http, "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        status["election"]["term"].as_u64() >= Some(1),
        "term after restart: {status}"
    );
    let (primary, reply) = write_at_primary(&cluster, "rb", &["SET", "acct:4", "b"]);
    assert!(is_ok(&reply), "{primary}: {reply:?}");
}
