//! The REST data API on the HTTP port, driven by the serverless SDKs
//! unchanged (`@upstash/redis` from npm, `upstash-redis` from PyPI, both
//! installed by `scripts/test`; a missing one fails the test), by raw HTTP
//! for bad input, and across two regions through the fault proxy for the
//! sync token's read-your-writes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{http_get, Cluster, HttpReply};
use common::Meridian;
use meridian_netem::LinkConditions;
use serde_json::json;

const TOKEN: &str = "data-api-token-for-tests";
const READONLY: &str = "data-api-readonly-token-for-tests";

fn with_tokens() -> Vec<&'static str> {
    vec![
        "--data-api-token",
        TOKEN,
        "--data-api-readonly-token",
        READONLY,
    ]
}

/// One HTTP request with a byte body; the reply read whole.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> HttpReply {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    // A refused body may be answered (and the connection closed) before
    // it is all sent: the reply read so far is what counts.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply {
        code,
        headers,
        body: body.to_string(),
    }
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// `POST /` with one command as the full-access client.
fn command(addr: SocketAddr, cmd: serde_json::Value, extra: &[&str]) -> HttpReply {
    let auth = bearer(TOKEN);
    let mut headers = vec![auth.as_str()];
    headers.extend_from_slice(extra);
    request(addr, "POST", "/", &headers, cmd.to_string().as_bytes())
}

fn run_sdk(program: &str, script: &str, m: &Meridian, hint: &str) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let url = format!("http://{}", m.http);
    let out = Command::new(program)
        .args([&path, &url, TOKEN, READONLY])
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}): {hint}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({hint}):\n{stdout}\n{stderr}"
    );
    for line in ["ok base64", "ok json", "ok tokens"] {
        assert!(stdout.contains(line), "{script}: no {line:?} in\n{stdout}");
    }
}

#[test]
fn upstash_js_sdk_works_unchanged() {
    let m = Meridian::start(&with_tokens());
    run_sdk(
        "node",
        "upstash_js_check.mjs",
        &m,
        "run scripts/test, which installs Node's @upstash/redis into crates/meridian/tests/clients",
    );
}

#[test]
fn upstash_py_sdk_works_unchanged() {
    let m = Meridian::start(&with_tokens());
    run_sdk(
        "python3",
        "upstash_py_check.py",
        &m,
        "run scripts/test, which installs upstash-redis from PyPI",
    );
}

#[test]
fn data_api_is_off_without_a_token() {
    let m = Meridian::start(&[]);
    let reply = command(m.http, json!(["SET", "k", "v"]), &[]);
    assert_eq!(reply.code, 404, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("off"));
    let reply = request(m.http, "GET", "/get/k", &[], b"");
    assert_eq!(reply.code, 404, "{}", reply.body);
    assert_eq!(http_get(m.http, "/health/live").0, 200);
}

#[test]
fn wrong_or_missing_token_is_refused_with_401() {
    let m = Meridian::start(&with_tokens());
    for headers in [
        vec![],
        vec!["Authorization: Bearer wrong-token-wrong-token"],
    ] {
        let reply = request(m.http, "POST", "/", &headers, br#"["GET","k"]"#);
        assert_eq!(reply.code, 401, "{}", reply.body);
        assert!(reply.json()["error"].as_str().unwrap().contains("Bearer"));
        assert!(reply.header("www-authenticate").is_some());
    }
    let admin = bearer(READONLY);
    let reply = request(m.http, "POST", "/", &[&admin], br#"["DEL","k"]"#);
    assert_eq!(reply.code, 400, "{}", reply.body);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("NOPERM"));
}

#[test]
fn every_request_shape_answers_and_carries_the_sync_token() {
    let m = Meridian::start(&with_tokens());
    let reply = command(m.http, json!(["SET", "k", "v", "EX", 100]), &[]);
    assert_eq!((reply.code, reply.json()), (200, json!({"result": "OK"})));
    let token = reply.header("upstash-sync-token").unwrap().to_string();
    assert!(token.contains(':'), "{token}");
    // Path commands, with a binary value as the body.
    let auth = bearer(TOKEN);
    let reply = request(m.http, "POST", "/set/bin", &[&auth], b"\xff\x00raw");
    assert_eq!(reply.json(), json!({"result": "OK"}));
    let reply = request(
        m.http,
        "GET",
        "/get/bin",
        &[&auth, "Upstash-Encoding: base64"],
        b"",
    );
    assert_eq!(reply.json(), json!({"result": "/wByYXc="}));
    let reply = request(m.http, "GET", "/ttl/k", &[&auth], b"");
    assert!(reply.json()["result"].as_i64().unwrap() > 90);
    // A pipeline: each command answers on its own.
    let body = json!([["INCR", "n"], ["INCR", "k"], ["GET", "n"]]).to_string();
    let reply = request(m.http, "POST", "/pipeline", &[&auth], body.as_bytes());
    let v = reply.json();
    assert_eq!(v[0], json!({"result": 1}));
    assert!(v[1]["error"].as_str().unwrap().contains("not an integer"));
    assert_eq!(v[2], json!({"result": "1"}));
    // A transaction answers each command; one refused at queueing aborts it.
    let body = json!([["INCR", "n"], ["HSET", "h", "f", "v"], ["HGETALL", "h"]]).to_string();
    let reply = request(m.http, "POST", "/multi-exec", &[&auth], body.as_bytes());
    assert_eq!(
        reply.json(),
        json!([{"result": 2}, {"result": 1}, {"result": ["f", "v"]}])
    );
    let body = json!([["INCR", "n"], ["NOSUCHCOMMAND"]]).to_string();
    let reply = request(m.http, "POST", "/multi-exec", &[&auth], body.as_bytes());
    assert_eq!(reply.code, 400);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("EXECABORT"));
    assert_eq!(
        command(m.http, json!(["GET", "n"]), &[]).json(),
        json!({"result": "2"})
    );
    // A sync token this region has applied answers at once.
    let header = format!("Upstash-Sync-Token: {token}");
    let reply = command(m.http, json!(["GET", "k"]), &[&header]);
    assert_eq!(reply.json(), json!({"result": "v"}));
}

#[test]
fn bad_input_gets_json_errors_and_the_region_stays_up() {
    let m = Meridian::start(&with_tokens());
    let auth = bearer(TOKEN);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/", b"{".to_vec(), 400, "not valid JSON"),
        ("/", b"[]".to_vec(), 400, "empty"),
        ("/", br#"["SET",{"a":1}]"#.to_vec(), 400, "argument 2"),
        ("/", "[".repeat(10_000).into_bytes(), 400, "not valid JSON"),
        (
            "/pipeline",
            br#"["GET","k"]"#.to_vec(),
            400,
            "array of commands",
        ),
        ("/", br#"["SUBSCRIBE","c"]"#.to_vec(), 400, "stays open"),
        ("/", br#"["BLPOP","empty",0]"#.to_vec(), 200, ""),
        ("/", vec![b' '; 17 * 1024 * 1024], 413, "limit"),
    ];
    for (path, body, code, needle) in cases {
        let reply = request(m.http, "POST", path, &[&auth], &body);
        assert_eq!(reply.code, code, "{path}: {}", reply.body);
        let v = reply.json();
        if code == 200 {
            assert_eq!(v, json!({"result": null}));
        } else {
            assert!(v["error"].as_str().unwrap().contains(needle), "{v}");
        }
    }
    let many = format!("[{}[\"PING\"]]", "[\"PING\"],".repeat(10_000));
    let reply = request(m.http, "POST", "/pipeline", &[&auth], many.as_bytes());
    assert_eq!(reply.code, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("10000"));
    let bad_token = ["Upstash-Sync-Token: not a token"];
    let reply = command(m.http, json!(["PING"]), &bad_token);
    assert_eq!(reply.code, 400);
    // A client that stops sending its body is cut off.
    let mut slow = TcpStream::connect(m.http).unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 100\r\n\r\n[\"PI");
    slow.write_all(head.as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut text = String::new();
    let _ = slow.read_to_string(&mut text);
    assert!(text.contains(" 408 "), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        command(m.http, json!(["PING"]), &[]).json(),
        json!({"result": "PONG"})
    );
}

#[test]
fn tokens_change_on_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("meridian.toml");
    std::fs::write(&file, format!("data-api-token = \"{TOKEN}\"\n")).unwrap();
    let m = Meridian::start(&["--config", file.to_str().unwrap()]);
    assert_eq!(command(m.http, json!(["PING"]), &[]).code, 200);
    let rotated = "rotated-data-api-token-0001";
    std::fs::write(&file, format!("data-api-token = \"{rotated}\"\n")).unwrap();
    let reply = request(m.http, "POST", "/v1/reload", &[], b"");
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_eq!(command(m.http, json!(["PING"]), &[]).code, 401);
    let auth = bearer(rotated);
    let reply = request(m.http, "POST", "/", &[&auth], br#"["PING"]"#);
    assert_eq!(reply.code, 200, "{}", reply.body);
}

#[test]
fn conflicts_and_digest_need_a_token_when_the_data_does() {
    let mut args = with_tokens();
    args.extend(["--requirepass", "secret-password"]);
    let m = Meridian::start(&args);
    for path in ["/v1/conflicts", "/v1/digest"] {
        let reply = request(m.http, "GET", path, &[], b"");
        assert_eq!(reply.code, 401, "{path}: {}", reply.body);
        assert!(reply.json()["error"].as_str().unwrap().contains("Bearer"));
        for token in [TOKEN, READONLY] {
            let auth = bearer(token);
            assert_eq!(request(m.http, "GET", path, &[&auth], b"").code, 200);
        }
    }
    for open in ["/health/live", "/metrics", "/v1/status"] {
        assert_eq!(http_get(m.http, open).0, 200, "{open}");
    }
    // Without a password the data is open over RESP, and so are they.
    let open = Meridian::start(&[]);
    assert_eq!(http_get(open.http, "/v1/digest").0, 200);
}

#[test]
fn sync_token_reads_your_writes_in_another_region_and_never_stale() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::wan(5), &with_tokens(), 7);
    let (a, b) = (cluster.regions[0].http, cluster.regions[1].http);
    let first = command(a, json!(["SET", "profile", "v1"]), &[]);
    let token = first.header("upstash-sync-token").unwrap().to_string();
    let header = format!("Upstash-Sync-Token: {token}");
    assert_eq!(
        command(b, json!(["GET", "profile"]), &[&header]).json(),
        json!({"result": "v1"})
    );
    // Cut off, rb never answers with v1 for a token that names v2.
    cluster.mesh.partition("ra").unwrap();
    let second = command(a, json!(["SET", "profile", "v2"]), &[]);
    let token = second.header("upstash-sync-token").unwrap().to_string();
    let header = format!("Upstash-Sync-Token: {token}");
    let started = Instant::now();
    let reply = command(b, json!(["GET", "profile"]), &[&header]);
    assert_eq!(reply.code, 412, "{}", reply.body);
    assert!(reply.json().get("result").is_none(), "{}", reply.body);
    assert!(started.elapsed() >= Duration::from_secs(4));
    cluster.mesh.heal_all();
    let reply = command(b, json!(["GET", "profile"]), &[&header]);
    assert_eq!((reply.code, reply.json()), (200, json!({"result": "v2"})));
    // The answer's own token covers what rb holds now, ra's write included.
    let after = reply.header("upstash-sync-token").unwrap();
    assert!(after.contains("ra:"), "{after}");
}
