//! The admin API on the HTTP port: the bearer token, loopback-only changes
//! without one, policy and log-level changes, reloads by SIGHUP and by
//! `POST /v1/reload`, and schemathesis against `docs/openapi.yaml`.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{http_request, HttpReply};
use common::Meridian;
use meridian_resp::Frame;

const TOKEN: &str = "test-admin-token-0123456789";

fn call(m: &Meridian, method: &str, path: &str, token: Option<&str>, body: &str) -> HttpReply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    http_request(
        TcpStream::connect(m.http).unwrap(),
        method,
        path,
        &headers,
        body,
    )
}

/// The rules `GET /v1/policies` reports.
fn rules(m: &Meridian, token: Option<&str>) -> Vec<String> {
    let reply = call(m, "GET", "/v1/policies", token, "");
    assert_eq!(reply.code, 200, "{}", reply.body);
    serde_json::from_value(reply.json()["rules"].clone()).unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_api_requires_the_token_but_health_and_metrics_stay_open() {
    let m = Meridian::start(&["--admin-token", TOKEN]);
    for path in ["/v1/status", "/v1/conflicts", "/v1/digest", "/v1/policies"] {
        let none = call(&m, "GET", path, None, "");
        assert_eq!(none.code, 401, "{path}: {}", none.body);
        assert_eq!(
            none.header("www-authenticate"),
            Some("Bearer realm=\"meridian\"")
        );
        assert!(none.json()["error"].as_str().unwrap().contains("Bearer"));
        assert_eq!(
            call(&m, "GET", path, Some("wrong-token-of-some-length"), "").code,
            401
        );
        assert_eq!(call(&m, "GET", path, Some(TOKEN), "").code, 200, "{path}");
    }
    let refused = call(
        &m,
        "PUT",
        "/v1/policies",
        None,
        r#"{"rules":["x*=majority"]}"#,
    );
    assert_eq!(refused.code, 401);
    assert_eq!(
        rules(&m, Some(TOKEN)),
        Vec::<String>::new(),
        "nothing changed"
    );
    for open in ["/health/live", "/health/ready", "/metrics", "/"] {
        assert_eq!(call(&m, "GET", open, None, "").code, 200, "{open}");
    }

    // A short token is refused at startup rather than guessed later.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--print-config", "--admin-token", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-token must be at least"));
}

#[test]
fn policy_and_log_level_changes_apply_at_once_and_bad_ones_change_nothing() {
    let m = Meridian::start(&[
        "--admin-token",
        TOKEN,
        "--policy",
        "orders:*=majority",
        "--policy",
        "cache:*=primary:elsewhere",
    ]);
    let t = Some(TOKEN);
    assert_eq!(
        rules(&m, t),
        ["orders:*=majority", "cache:*=primary:elsewhere"]
    );
    // The primary is elected from the region named at start: another one
    // needs a restart.
    let other = call(
        &m,
        "PUT",
        "/v1/policies",
        t,
        r#"{"rules":["cache:*=primary:another"]}"#,
    );
    assert_eq!(other.code, 409, "{}", other.body);
    let put = call(
        &m,
        "PUT",
        "/v1/policies",
        t,
        r#"{"rules":["cache:*=primary:elsewhere","orders:*=majority"]}"#,
    );
    assert_eq!(put.code, 200, "{}", put.body);
    assert_eq!(put.json()["policies"][0]["state"], "read-only");
    // The change is in force for clients at once.
    let mut c = m.conn();
    match c.line("SET cache:1 x") {
        Frame::Error(e) => assert!(e.starts_with("READONLY") && e.contains("elsewhere"), "{e}"),
        other => panic!("a write to a read-only keyspace succeeded: {other:?}"),
    }
    assert_eq!(c.line("SET other 1"), Frame::Simple("OK".into()));

    for bad in [
        r#"{"rules":["orders:*=sometimes"]}"#,
        r#"{"rules":"orders:*=majority"}"#,
        r#"{"rules":[],"extra":1}"#,
        "not json",
    ] {
        let reply = call(&m, "PUT", "/v1/policies", t, bad);
        assert_eq!(reply.code, 400, "{bad}: {}", reply.body);
        assert!(reply.json()["error"].is_string());
    }
    assert_eq!(
        rules(&m, t),
        ["cache:*=primary:elsewhere", "orders:*=majority"]
    );

    let level = call(
        &m,
        "PUT",
        "/v1/log-level",
        t,
        r#"{"level":"warn,meridian_repl=debug"}"#,
    );
    assert_eq!(level.code, 200, "{}", level.body);
    assert_eq!(
        call(&m, "GET", "/v1/log-level", t, "").json()["level"],
        "warn,meridian_repl=debug"
    );
    assert_eq!(
        call(
            &m,
            "PUT",
            "/v1/log-level",
            t,
            r#"{"level":"meridian=loud"}"#
        )
        .code,
        400
    );
    assert_eq!(
        call(&m, "GET", "/v1/log-level", t, "").json()["level"],
        "warn,meridian_repl=debug"
    );

    let snap = call(&m, "POST", "/v1/snapshot", t, "");
    assert_eq!(snap.code, 200, "{}", snap.body);
    assert!(snap.json()["lsn"].as_u64().unwrap() >= 1);
    assert_eq!(
        call(&m, "GET", "/v1/conflicts?count=10001", t, "").code,
        400
    );
    assert_eq!(call(&m, "GET", "/v1/conflicts?cuont=1", t, "").code, 400);
}

/// SIGHUP and `POST /v1/reload` read the config file again: policies, ACL
/// users and the admin token change at once, other changed settings are
/// reported as needing a restart, and a broken file changes nothing.
#[test]
fn reload_applies_a_changed_config_file_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    let acl = dir.path().join("users.acl");
    std::fs::write(&acl, "user app on >app-pw ~* +@all\n").unwrap();
    let settings = |policy: &str, token: &str, extra: &str| {
        format!(
            "policy = [{policy:?}]\nadmin-token = {token:?}\naclfile = {:?}\n{extra}",
            acl.display()
        )
    };
    std::fs::write(&file, settings("orders:*=majority", TOKEN, "")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let m = Meridian::start_in(data.path(), &["--config", file.to_str().unwrap()]);
    assert_eq!(rules(&m, Some(TOKEN)), ["orders:*=majority"]);

    // SIGHUP: a new policy, a new user, a new token.
    let token2 = "second-admin-token-abcdef";
    std::fs::write(&file, settings("orders:*=active-active", token2, "")).unwrap();
    std::fs::write(
        &acl,
        "user app on >app-pw ~* +@all\nuser ops on >ops-pw ~* +@read\n",
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &m.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for("the SIGHUP reload", || {
        call(&m, "GET", "/v1/policies", Some(token2), "").code == 200
    });
    assert_eq!(rules(&m, Some(token2)), ["orders:*=active-active"]);
    assert_eq!(
        call(&m, "GET", "/v1/status", Some(TOKEN), "").code,
        401,
        "the old token is gone"
    );
    let mut c = m.conn();
    assert_eq!(c.line("AUTH ops ops-pw"), Frame::Simple("OK".into()));

    // POST /v1/reload reports what it applied and what needs a restart.
    std::fs::write(
        &file,
        settings("orders:*=majority", token2, "lease-ms = 9000\n"),
    )
    .unwrap();
    let reply = call(&m, "POST", "/v1/reload", Some(token2), "");
    assert_eq!(reply.code, 200, "{}", reply.body);
    let report = reply.json();
    assert_eq!(report["needs_restart"], serde_json::json!(["lease-ms"]));
    let applied = report["applied"].to_string();
    assert!(applied.contains("policy: orders:*=majority"), "{applied}");
    assert!(applied.contains("aclfile: 3 users"), "{applied}");

    // A primary other than the one named at start needs a restart.
    std::fs::write(&file, settings("orders:*=primary:elsewhere", token2, "")).unwrap();
    let reply = call(&m, "POST", "/v1/reload", Some(token2), "");
    assert_eq!(reply.code, 422, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("needs a restart"));
    assert_eq!(rules(&m, Some(token2)), ["orders:*=majority"]);

    // A file that does not resolve changes nothing.
    std::fs::write(&file, settings("orders:*=never", token2, "")).unwrap();
    let reply = call(&m, "POST", "/v1/reload", Some(token2), "");
    assert_eq!(reply.code, 422, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("orders:*=never"));
    assert_eq!(rules(&m, Some(token2)), ["orders:*=majority"]);
}

/// An address of this machine that is not loopback, to reach a region's
/// HTTP port from "outside".
fn outside_address() -> IpAddr {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("run ip addr (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .expect("this test needs one non-loopback IPv4 address on the machine")
}

#[test]
fn without_a_token_changes_come_only_from_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meridian::start_with_http(dir.path(), "0.0.0.0:0", &[]);
    let outside = SocketAddr::new(outside_address(), m.http.port());
    let loopback = SocketAddr::new("127.0.0.1".parse().unwrap(), m.http.port());
    let body = r#"{"rules":["x*=majority"]}"#;

    let read = http_request(
        TcpStream::connect(outside).unwrap(),
        "GET",
        "/v1/policies",
        &[],
        "",
    );
    assert_eq!(read.code, 200, "reads are open: {}", read.body);
    let change = http_request(
        TcpStream::connect(outside).unwrap(),
        "PUT",
        "/v1/policies",
        &[],
        body,
    );
    assert_eq!(change.code, 403, "{}", change.body);
    assert!(change.json()["error"]
        .as_str()
        .unwrap()
        .contains("loopback"));
    let change = http_request(
        TcpStream::connect(loopback).unwrap(),
        "PUT",
        "/v1/policies",
        &[],
        body,
    );
    assert_eq!(change.code, 200, "{}", change.body);
}

/// schemathesis generates requests from `docs/openapi.yaml` (examples,
/// boundary values, fuzzing) and checks every reply against it: no server
/// error, documented status codes, content types and bodies. The data API
/// (`/`, `/pipeline`, `/multi-exec`) runs apart without the check that a
/// schema-valid request succeeds: a well-formed command Redis refuses
/// (an unknown name, a wrong argument) is answered 400 with its error, as
/// the protocol says.
#[test]
fn schemathesis_finds_no_server_error_in_the_admin_api() {
    // The data API takes the same token here, so the generated requests
    // reach it too.
    let m = Meridian::start(&["--admin-token", TOKEN, "--data-api-token", TOKEN]);
    let data_api = "^/(pipeline|multi-exec)?$";
    schemathesis(&m, &["--exclude-path-regex", data_api]);
    schemathesis(
        &m,
        &[
            "--include-path-regex",
            data_api,
            "--exclude-checks",
            "positive_data_acceptance",
        ],
    );
}

fn schemathesis(m: &Meridian, selection: &[&str]) {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let url = format!("http://{}", m.http);
    let out = Command::new("schemathesis")
        .args([
            "run",
            spec,
            "--url",
            &url,
            "--checks",
            "all",
            "--max-examples",
            "40",
        ])
        .args(selection)
        .args([
            "--seed",
            "20261127",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect(
            "schemathesis is not installed: scripts/test installs it (pip install schemathesis)",
        );
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems (replay with --seed 20261127):\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
