//! Several regions as real `meridian` processes, linked through the
//! in-process fault proxy so tests can add WAN delay and cut links.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meridian_netem::{LinkConditions, Mesh};
use meridian_resp::Frame;

use super::{Conn, Meridian};

pub const SECRET: &str = "test-cluster-secret";

pub struct Cluster {
    pub names: Vec<String>,
    pub regions: Vec<Meridian>,
    pub mesh: Mesh,
    extra: Vec<String>,
    // Declared last: the proxies' tasks run on it and must outlive the mesh.
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts one region per name, every pair linked through a proxy with
    /// `conditions`. `seed` drives the proxies' randomness.
    pub fn start(names: &[&str], conditions: LinkConditions, extra: &[&str], seed: u64) -> Cluster {
        let extra_owned: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Cluster::start_with(names, conditions, extra, seed, |_| extra_owned.clone())
    }

    /// Like [`Cluster::start`], with per-region extra arguments.
    pub fn start_with(
        names: &[&str],
        conditions: LinkConditions,
        extra: &[&str],
        seed: u64,
        per_region: impl Fn(&str) -> Vec<String>,
    ) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mesh = rt
            .block_on(Mesh::start(names.iter().map(|n| n.to_string()), seed))
            .unwrap();
        mesh.set_all(conditions).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut regions = Vec::new();
        for name in names.iter() {
            let args = Self::args(&mesh, name, &per_region(name));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let m = Meridian::start(&args);
            mesh.set_repl_addr(name, m.repl).unwrap();
            regions.push(m);
        }
        let cluster = Cluster {
            names: names.iter().map(|s| s.to_string()).collect(),
            regions,
            mesh,
            extra,
            rt,
        };
        cluster.wait_linked(Duration::from_secs(20));
        cluster
    }

    /// Waits until every region reports every link up in both directions,
    /// so a test's first cut starts from a fully connected cluster.
    pub fn wait_linked(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for m in &self.regions {
            loop {
                let status = http_json(m.http, "/v1/status");
                let linked = status["regions"].as_array().is_some_and(|rs| {
                    rs.iter()
                        .filter(|r| r["self"] == false)
                        .all(|r| r["link"]["outbound"] == "up" && r["link"]["inbound"] == "up")
                });
                if linked {
                    break;
                }
                assert!(Instant::now() < deadline, "links did not come up: {status}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn args(mesh: &Mesh, name: &str, extra: &[String]) -> Vec<String> {
        let mut args = vec![
            "--region".to_string(),
            name.to_string(),
            "--cluster-secret".into(),
            SECRET.into(),
        ];
        args.extend(mesh.peer_args(name).unwrap());
        args.extend(extra.iter().cloned());
        args
    }

    pub fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no region {name}"))
    }

    pub fn conn(&self, name: &str) -> Conn {
        self.regions[self.index(name)].conn()
    }

    /// `kill -9` one region and start it again on its data directory.
    pub fn restart(&mut self, name: &str) {
        let i = self.index(name);
        self.regions[i].kill9();
        let dir = self.regions[i].dir.clone();
        let args = Self::args(&self.mesh, name, &self.extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let m = Meridian::start_in(&dir, &args);
        self.mesh.set_repl_addr(name, m.repl).unwrap();
        // Keep the temp dir alive: move the old handle's ownership over.
        let old = std::mem::replace(&mut self.regions[i], m);
        self.regions[i].adopt_dir(old);
    }

    /// Waits until every region shows the same data and the same version
    /// vector; returns the common dump.
    pub fn converge(&self, timeout: Duration) -> BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let dumps: Vec<_> = self.regions.iter().map(|m| dump(&mut m.conn())).collect();
            let vvs: Vec<_> = self
                .regions
                .iter()
                .map(|m| m.conn().cmd(&["MERIDIAN", "TOKEN"]))
                .collect();
            if dumps.windows(2).all(|w| w[0] == w[1]) && vvs.windows(2).all(|w| w[0] == w[1]) {
                return dumps.into_iter().next().unwrap();
            }
            if Instant::now() > deadline {
                for (name, d) in self.names.iter().zip(&dumps) {
                    eprintln!("--- {name}: {} keys", d.len());
                }
                let first = &dumps[0];
                for (name, d) in self.names.iter().zip(&dumps).skip(1) {
                    for (k, v) in d {
                        if first.get(k) != Some(v) {
                            eprintln!("{name} differs at {k}: {v:?} vs {:?}", first.get(k));
                        }
                    }
                    for k in first.keys() {
                        if !d.contains_key(k) {
                            eprintln!("{name} lacks {k}");
                        }
                    }
                }
                panic!("regions did not converge within {timeout:?}; tokens: {vvs:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).to_string(),
        Frame::Simple(s) => s.clone(),
        Frame::Integer(i) => i.to_string(),
        Frame::Array(items) | Frame::Set(items) => {
            let mut parts: Vec<String> = items.iter().map(text).collect();
            parts.sort();
            parts.join(",")
        }
        other => format!("{other:?}"),
    }
}

/// A reply as text with arrays kept in their order.
fn ordered(f: &Frame) -> String {
    match f {
        Frame::Array(items) => {
            let parts: Vec<String> = items.iter().map(ordered).collect();
            format!("[{}]", parts.join(" "))
        }
        Frame::Null | Frame::NullArray => "nil".to_string(),
        other => text(other),
    }
}

/// Everything a client can see, as key → canonical text.
pub fn dump(c: &mut Conn) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    loop {
        match c.cmd(&["SCAN", &cursor, "COUNT", "1000"]) {
            Frame::Array(parts) if parts.len() == 2 => {
                cursor = text(&parts[0]);
                if let Frame::Array(ks) = &parts[1] {
                    keys.extend(ks.iter().map(text));
                }
            }
            other => panic!("SCAN replied {other:?}"),
        }
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    for k in keys {
        let kind = text(&c.cmd(&["TYPE", &k]));
        let value = match kind.as_str() {
            "string" => text(&c.cmd(&["GET", &k])),
            "hash" => pairs(&c.cmd(&["HGETALL", &k])),
            "set" => text(&c.cmd(&["SMEMBERS", &k])),
            "zset" => pairs(&c.cmd(&["ZRANGE", &k, "0", "-1", "WITHSCORES"])),
            // In order: every region must hold one order.
            "list" => match c.cmd(&["LRANGE", &k, "0", "-1"]) {
                Frame::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                other => text(&other),
            },
            // Entries in ID order and every group's state: every region
            // must hold one order and one group state.
            "stream" => format!(
                "{}|{}",
                ordered(&c.cmd(&["XRANGE", &k, "-", "+"])),
                ordered(&c.cmd(&["XINFO", "GROUPS", &k]))
            ),
            "none" => continue,
            other => panic!("unexpected type {other}"),
        };
        out.insert(k, format!("{kind}:{value}"));
    }
    out
}

fn pairs(f: &Frame) -> String {
    match f {
        Frame::Array(items) => {
            let mut ps: Vec<String> = items
                .chunks(2)
                .map(|p| format!("{}={}", text(&p[0]), text(&p[1])))
                .collect();
            ps.sort();
            ps.join(",")
        }
        other => text(other),
    }
}

/// GET `path` from a region's HTTP port: (status code, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let reply = http_request(
        std::net::TcpStream::connect(addr).unwrap(),
        "GET",
        path,
        &[],
        "",
    );
    (reply.code, reply.body)
}

/// One HTTP reply, headers lowercased.
pub struct HttpReply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on `stream` (`headers` as `Name: value` lines) and
/// reads the whole reply.
pub fn http_request(
    mut stream: std::net::TcpStream,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> HttpReply {
    use std::io::{Read, Write};
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
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

/// GET `path` from a region's HTTP port as JSON.
pub fn http_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (_, body) = http_get(addr, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}
