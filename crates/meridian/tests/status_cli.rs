//! `meridian status` against real regions: the table names every region and
//! its link, `--json` is the region's status JSON, `--watch` repaints in
//! place, and an address that is not a Meridian region fails with a reason
//! and a non-zero exit.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use meridian_netem::LinkConditions;

/// How long two regions may take to link up on a loaded machine.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(20);

fn status(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("status")
        .args(args)
        .output()
        .expect("running meridian status")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `meridian status --json` of `http`, once every peer's link is up both ways.
fn status_json_when_linked(http: SocketAddr) -> serde_json::Value {
    let deadline = Instant::now() + LINK_UP_TIMEOUT;
    loop {
        let out = status(&["--http", &http.to_string(), "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {}", text(&out.stdout)));
        let peers: Vec<_> = json["regions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["self"] == false)
            .collect();
        if peers
            .iter()
            .all(|p| p["link"]["outbound"] == "up" && p["link"]["inbound"] == "up")
        {
            return json;
        }
        assert!(Instant::now() < deadline, "links not up: {json:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_table_lists_every_region_and_its_link() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::IDEAL, &[], 1);
    let http = cluster.regions[0].http.to_string();
    let json = status_json_when_linked(cluster.regions[0].http);
    assert_eq!(json["region"], "ra");
    let ids: Vec<&str> = json["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ra", "rb"]);

    let out = status(&["--http", &http]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    println!("{table}");
    assert!(table.starts_with("cluster "), "{table}");
    assert!(table.contains("seen from ra"), "{table}");
    assert!(table.contains("fenced keyspaces: none"), "{table}");
    assert!(table.contains("conflicts in the last hour: 0"), "{table}");
    let row = |id: &str| -> Vec<String> {
        table
            .lines()
            .skip_while(|l| !l.contains("REGION"))
            .find(|l| l.split_whitespace().any(|w| w == id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let ra = row("ra");
    assert_eq!(&ra[..5], ["*", "ra", "data", "up", "self"], "{table}");
    let rb = row("rb");
    assert_eq!(&rb[..2], ["rb", "data"], "{table}");
    assert_eq!(rb[3], "up", "rb's link in\n{table}");

    // Any region answers; rb marks itself.
    let out = status(&["--http", &cluster.regions[1].http.to_string()]);
    assert!(text(&out.stdout).contains("* rb"), "{}", text(&out.stdout));
}

/// More conflicts than the first journal page holds, so the count needs
/// the larger page.
const CONFLICTING_KEYS: usize = 150;

#[test]
fn status_counts_the_last_hours_conflicts() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::IDEAL, &[], 2);
    status_json_when_linked(cluster.regions[0].http);
    cluster.mesh.partition("ra").unwrap();
    for name in ["ra", "rb"] {
        let mut conn = cluster.conn(name);
        for i in 0..CONFLICTING_KEYS {
            let reply = conn.cmd(&["SET", &format!("k:{i}"), &format!("from-{name}")]);
            assert!(!reply.is_error(), "{reply:?}");
        }
    }
    cluster.mesh.heal_all();
    cluster.converge(Duration::from_secs(30));
    let http = cluster.regions[0].http.to_string();
    let out = status(&["--http", &http]);
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!("conflicts in the last hour: {CONFLICTING_KEYS}")),
        "{table}"
    );
    // Every conflict discarded one region's write; the two rows add up.
    let lost: usize = ["ra", "rb"]
        .iter()
        .map(|id| {
            let row = table
                .lines()
                .skip_while(|l| !l.contains("REGION"))
                .find(|l| l.split_whitespace().any(|w| w == *id))
                .unwrap();
            let cells: Vec<&str> = row.split_whitespace().collect();
            let lost_at = if cells[0] == "*" { 8 } else { 7 };
            cells[lost_at]
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{row}"))
        })
        .sum();
    assert_eq!(lost, CONFLICTING_KEYS, "{table}");
}

#[test]
fn status_watch_repaints_in_place() {
    let region = common::Meridian::start(&["--region", "ra"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["status", "--watch", "--interval-ms", "200", "--http"])
        .arg(region.http.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let repaints = |seen: &[u8]| seen.windows(3).filter(|w| w == b"\x1b[H").count();
    while repaints(&seen) < 3 && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = text(&seen);
    assert!(repaints(seen.as_bytes()) >= 3, "{seen:?}");
    assert!(seen.contains("* ra"), "{seen:?}");
    assert!(seen.contains("Ctrl-C to stop"), "{seen:?}");
}

#[test]
fn status_of_an_address_nobody_listens_on_fails_clearly() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = status(&["--http", &addr]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&addr) && err.contains("unreachable"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A one-connection-at-a-time HTTP server that answers every request with
/// `reply`, for as long as the test runs.
fn fake_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(reply);
        }
    });
    addr
}

#[test]
fn status_refuses_a_reply_that_is_not_meridian_status() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
            "not Meridian status JSON: no \"region\"",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>",
            "not Meridian status JSON",
        ),
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "HTTP 404",
        ),
    ];
    for (reply, expected) in cases {
        let addr = fake_server(reply).to_string();
        let out = status(&["--http", &addr]);
        assert!(!out.status.success(), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains(expected) && err.contains(&addr), "{err}");
    }
}

#[test]
fn status_pointed_at_the_resp_port_says_it_is_not_http() {
    let region = common::Meridian::start(&["--region", "ra"]);
    let started = Instant::now();
    let out = status(&["--http", &region.resp.to_string()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not an HTTP reply"), "{err}");
    // It gives up on the first bytes instead of waiting for a timeout.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A region with `--admin-token` answers `meridian status` only with the
/// token (`--token` or MERIDIAN_ADMIN_TOKEN), and says why otherwise.
#[test]
fn status_of_a_region_with_an_admin_token_needs_the_token() {
    let token = "status-cli-token-0123456789";
    let m = common::Meridian::start(&["--admin-token", token]);
    let http = m.http.to_string();
    let refused = status(&["--http", &http]);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(err.contains("HTTP 401") && err.contains("Bearer"), "{err}");
    let ok = status(&["--http", &http, "--token", token]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("local"), "{}", text(&ok.stdout));
}
