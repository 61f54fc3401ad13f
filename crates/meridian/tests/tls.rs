//! TLS for clients and mutual TLS between regions, against real processes.
//! Certificates are made here with rcgen and written to each test's temp
//! dir; regions are linked through the fault proxy like other cluster tests.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{http_get, http_json, SECRET};
use common::{ok, Meridian};
use meridian_netem::{LinkConditions, Mesh};
use meridian_resp::{encode_command, parse_frame, Frame};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const DEADLINE: Duration = Duration::from_secs(20);

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem_path: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join(format!("{name}.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem_path,
        }
    }

    /// A certificate for `names` (DNS names or IPs), usable as server and
    /// client certificate; returns the (cert, key) PEM files.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A blocking TLS client that trusts `ca` and presents `identity` if given.
fn tls_client(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&(PathBuf, PathBuf)>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Sends one command over TLS and reads its reply; any TLS or I/O failure
/// (including the server refusing the handshake) is an `Err`.
fn tls_cmd(
    stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    args: &[&str],
) -> Result<Frame, String> {
    let mut out = bytes::BytesMut::new();
    encode_command(args, &mut out);
    stream.write_all(&out).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        if let Some((frame, _)) = parse_frame(&buf).map_err(|e| format!("{e:?}"))? {
            return Ok(frame);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn metric(http: SocketAddr, line_prefix: &str) -> f64 {
    let (_, text) = http_get(http, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn tls_clients_need_the_ca_and_the_plain_port_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "client-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let server = ca.issue(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let m = Meridian::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&server.0),
        "--tls-key",
        s(&server.1),
    ]);
    let tls = m.tls.expect("a TLS listener");
    let status = http_json(m.http, "/v1/status");
    assert_eq!(status["tls"]["clients"], tls.to_string(), "{status}");

    let started = Instant::now();
    let mut c = tls_client(tls, &ca.pem_path, None);
    assert_eq!(tls_cmd(&mut c, &["PING"]), Ok(Frame::Simple("PONG".into())));
    eprintln!("TLS handshake and first PING took {:?}", started.elapsed());
    ok(tls_cmd(&mut c, &["SET", "k", "over-tls"]).unwrap());
    assert_eq!(
        tls_cmd(&mut c, &["GET", "k"]),
        Ok(Frame::Bulk("over-tls".into()))
    );

    // A client that trusts another CA does not accept the server.
    let mut stranger = tls_client(tls, &other.pem_path, None);
    let refused = tls_cmd(&mut stranger, &["PING"]).unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // The plain port serves the same data alongside.
    assert_eq!(m.conn().cmd(&["GET", "k"]), Frame::Bulk("over-tls".into()));
    // Plain RESP on the TLS port gets no reply (at most a TLS alert) and
    // is counted.
    let mut plain = TcpStream::connect(tls).unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.windows(4).any(|w| w == b"PONG"), "{answer:?}");
    let deadline = Instant::now() + DEADLINE;
    while metric(m.http, "meridian_tls_handshake_failures_total ") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "TLS handshake failures not counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A region whose TLS port asks for client certificates (`mode`), a client
/// certificate from its CA (alice) and one from another CA (mallory).
struct ClientAuthSetup {
    _dir: tempfile::TempDir,
    ca: Ca,
    good: (std::path::PathBuf, std::path::PathBuf),
    foreign: (std::path::PathBuf, std::path::PathBuf),
    m: Meridian,
}

fn client_auth_setup(mode: &str) -> ClientAuthSetup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "client-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let good = ca.issue(dir.path(), "alice", &["alice"]);
    let foreign = other.issue(dir.path(), "mallory", &["mallory"]);
    let m = Meridian::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&server.0),
        "--tls-key",
        s(&server.1),
        "--tls-ca",
        s(&ca.pem_path),
        "--tls-auth-clients",
        mode,
    ]);
    ClientAuthSetup {
        _dir: dir,
        ca,
        good,
        foreign,
        m,
    }
}

#[test]
fn tls_auth_clients_yes_requires_a_certificate_from_the_ca() {
    // `_dir` stays bound: the certificates live in it.
    let ClientAuthSetup {
        _dir: _certificates,
        ca,
        good,
        foreign,
        m,
    } = client_auth_setup("yes");
    let tls = m.tls.unwrap();

    let mut anonymous = tls_client(tls, &ca.pem_path, None);
    let refused = tls_cmd(&mut anonymous, &["PING"]).unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");

    let mut mallory = tls_client(tls, &ca.pem_path, Some(&foreign));
    assert!(tls_cmd(&mut mallory, &["PING"]).is_err());

    let mut alice = tls_client(tls, &ca.pem_path, Some(&good));
    assert_eq!(
        tls_cmd(&mut alice, &["PING"]),
        Ok(Frame::Simple("PONG".into()))
    );
    ok(m.conn().cmd(&["PING"]));
}

#[test]
fn tls_auth_clients_optional_verifies_only_certificates_sent() {
    // `_dir` stays bound: the certificates live in it.
    let ClientAuthSetup {
        _dir: _certificates,
        ca,
        good,
        foreign,
        m,
    } = client_auth_setup("optional");
    let tls = m.tls.unwrap();
    for identity in [None, Some(&good)] {
        let mut c = tls_client(tls, &ca.pem_path, identity);
        assert_eq!(tls_cmd(&mut c, &["PING"]), Ok(Frame::Simple("PONG".into())));
    }
    let mut mallory = tls_client(tls, &ca.pem_path, Some(&foreign));
    assert!(tls_cmd(&mut mallory, &["PING"]).is_err());
}

/// Runs `meridian serve` expecting it to refuse to start; returns stderr.
fn start_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--repl", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "meridian started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificate_files_stop_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue(dir.path(), "server", &["localhost"]);
    let (_, other_key) = ca.issue(dir.path(), "other", &["localhost"]);
    let missing = dir.path().join("missing.crt");
    let tls = ["--tls-listen", "127.0.0.1:0"];

    let err = start_fails(&[&tls[..], &["--tls-cert", s(&missing), "--tls-key", s(&key)]].concat());
    assert!(
        err.contains(s(&missing)) && err.contains("--tls-cert"),
        "{err}"
    );

    let err = start_fails(&[&tls[..], &["--tls-cert", s(&key), "--tls-key", s(&key)]].concat());
    assert!(
        err.contains(s(&key)) && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );

    let err = start_fails(&[&tls[..], &["--tls-cert", s(&cert), "--tls-key", s(&cert)]].concat());
    assert!(err.contains(s(&cert)) && err.contains("--tls-key"), "{err}");

    let err = start_fails(
        &[
            &tls[..],
            &["--tls-cert", s(&cert), "--tls-key", s(&other_key)],
        ]
        .concat(),
    );
    assert!(
        err.contains("does not belong") && err.contains(s(&other_key)),
        "{err}"
    );

    // A region certificate must name the region it is used by.
    let err = start_fails(&[
        "--region",
        "eu-west",
        "--tls-replication",
        "yes",
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
        "--tls-ca",
        s(&ca.pem_path),
    ]);
    assert!(err.contains("does not name region \"eu-west\""), "{err}");
}

/// Regions linked through the fault proxy, each with its own extra flags.
struct TlsCluster {
    regions: Vec<(String, Meridian)>,
    _mesh: Mesh,
    // Declared last: the proxies run on it.
    _rt: tokio::runtime::Runtime,
}

impl TlsCluster {
    /// `regions`: name, the peers it dials (by name) and its extra flags.
    fn start(regions: Vec<(&str, Vec<&str>, Vec<String>)>) -> TlsCluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let names: Vec<&str> = regions.iter().map(|(n, _, _)| *n).collect();
        let mesh = rt.block_on(Mesh::start(names, 7)).unwrap();
        mesh.set_all(LinkConditions::default()).unwrap();
        let mut started = Vec::new();
        for (name, dials, extra) in regions {
            let mut args = vec!["--region".to_string(), name.to_string()];
            for (peer, addr) in mesh.peers(name).unwrap() {
                if dials.contains(&peer.as_str()) {
                    args.extend(["--peer".to_string(), format!("{peer}={addr}")]);
                }
            }
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let m = Meridian::start(&args);
            mesh.set_repl_addr(name, m.repl).unwrap();
            started.push((name.to_string(), m));
        }
        TlsCluster {
            regions: started,
            _mesh: mesh,
            _rt: rt,
        }
    }

    fn get(&self, name: &str) -> &Meridian {
        &self.regions.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Polls `name`'s `/v1/status` until `cond` holds.
    fn wait_status(&self, name: &str, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = http_json(self.get(name).http, "/v1/status");
            if cond(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "{name}: {what}: {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `name`'s links to every region in `peers` are up both ways.
    fn wait_linked(&self, name: &str, peers: &[&str]) {
        self.wait_status(name, "links up", |st| {
            peers.iter().all(|p| {
                row(st, p)
                    .is_some_and(|r| r["link"]["outbound"] == "up" && r["link"]["inbound"] == "up")
            })
        });
    }

    /// Polls GET `key` on `name` until it reads `want`.
    fn wait_value(&self, name: &str, key: &str, want: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.get(name).conn().cmd(&["GET", key]) == Frame::Bulk(want.to_string().into()) {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never read {key}={want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn row<'a>(status: &'a serde_json::Value, region: &str) -> Option<&'a serde_json::Value> {
    status["regions"]
        .as_array()?
        .iter()
        .find(|r| r["id"] == region)
}

fn refused(status: &serde_json::Value, reason: &str) -> u64 {
    status["handshakes_refused"][reason].as_u64().unwrap_or(0)
}

/// The flags of a region with mutual TLS on its links.
fn mtls(cert: &(PathBuf, PathBuf), ca: &Path, secret: &str) -> Vec<String> {
    [
        "--tls-replication",
        "yes",
        "--tls-cert",
        s(&cert.0),
        "--tls-key",
        s(&cert.1),
        "--tls-ca",
        s(ca),
        "--cluster-secret",
        secret,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

#[test]
fn three_regions_replicate_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let names = ["ra", "rb", "rc"];
    let spec = names
        .iter()
        .map(|n| {
            let cert = ca.issue(dir.path(), n, &[n]);
            let dials = names.iter().copied().filter(|p| p != n).collect();
            (*n, dials, mtls(&cert, &ca.pem_path, SECRET))
        })
        .collect();
    let started = Instant::now();
    let cluster = TlsCluster::start(spec);
    for n in names {
        let peers: Vec<&str> = names.iter().copied().filter(|p| *p != n).collect();
        cluster.wait_linked(n, &peers);
    }
    eprintln!(
        "three regions started and linked over mutual TLS in {:?}",
        started.elapsed()
    );
    ok(cluster.get("ra").conn().cmd(&["SET", "from-ra", "1"]));
    ok(cluster.get("rc").conn().cmd(&["SET", "from-rc", "3"]));
    for n in names {
        cluster.wait_value(n, "from-ra", "1");
        cluster.wait_value(n, "from-rc", "3");
    }
    let status = http_json(cluster.get("rb").http, "/v1/status");
    assert_eq!(status["tls"]["replication"], true, "{status}");
    assert_eq!(refused(&status, "tls"), 0, "{status}");
}

#[test]
fn region_with_a_foreign_ca_certificate_is_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let foreign = Ca::new(dir.path(), "foreign-ca");
    let all = ["ra", "rb", "rc", "rd"];
    let mut spec = Vec::new();
    for n in ["ra", "rb", "rc"] {
        let cert = ca.issue(dir.path(), n, &[n]);
        let dials = all.iter().copied().filter(|p| *p != n).collect();
        spec.push((n, dials, mtls(&cert, &ca.pem_path, SECRET)));
    }
    // The impostor knows the secret and trusts the cluster CA (which is
    // public), but its own certificate comes from another CA.
    let impostor = foreign.issue(dir.path(), "rd", &["rd"]);
    spec.push((
        "rd",
        vec!["ra", "rb", "rc"],
        mtls(&impostor, &ca.pem_path, SECRET),
    ));
    let cluster = TlsCluster::start(spec);

    cluster.wait_linked("ra", &["rb", "rc"]);
    cluster.wait_linked("rb", &["ra", "rc"]);
    // Dialing side: ra does not accept rd's server certificate.
    cluster.wait_status("ra", "rd refused when dialed", |st| {
        row(st, "rd").is_some_and(|r| {
            r["link"]["outbound"] == "refused"
                && r["link"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("UnknownIssuer"))
        })
    });
    // Accepting side: rd's client certificate is refused by ra, which
    // rd sees as a refusal of its certificate.
    cluster.wait_status("rd", "rd refused by ra", |st| {
        row(st, "ra").is_some_and(|r| {
            r["link"]["outbound"] == "refused"
                && r["link"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("refused this region's certificate"))
        })
    });
    cluster.wait_status("ra", "refusals counted", |st| {
        refused(st, "tls") >= 2 && st["regions"].as_array().is_some()
    });
    let status = http_json(cluster.get("ra").http, "/v1/status");
    assert_eq!(status["last_refusal"]["reason"], "tls", "{status}");
    assert_eq!(row(&status, "rd").unwrap()["link"]["inbound"], "down");
    assert!(
        metric(
            cluster.get("ra").http,
            "meridian_replication_refused_total{reason=\"tls\"} "
        ) >= 2.0
    );

    // The rest of the cluster keeps working; nothing crosses to or from rd.
    ok(cluster.get("ra").conn().cmd(&["SET", "good", "1"]));
    ok(cluster.get("rd").conn().cmd(&["SET", "leak", "1"]));
    cluster.wait_value("rc", "good", "1");
    cluster.wait_value("rb", "good", "1");
    assert_eq!(
        cluster.get("rd").conn().cmd(&["EXISTS", "good"]),
        Frame::Integer(0)
    );
    for n in ["ra", "rb", "rc"] {
        assert_eq!(
            cluster.get(n).conn().cmd(&["EXISTS", "leak"]),
            Frame::Integer(0)
        );
    }
}

#[test]
fn regions_with_a_wrong_secret_or_without_tls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let mut spec = Vec::new();
    for n in ["ra", "rb"] {
        let cert = ca.issue(dir.path(), n, &[n]);
        let dials = vec![if n == "ra" { "rb" } else { "ra" }];
        spec.push((n, dials, mtls(&cert, &ca.pem_path, SECRET)));
    }
    let cert = ca.issue(dir.path(), "re", &["re"]);
    spec.push((
        "re",
        vec!["ra", "rb"],
        mtls(&cert, &ca.pem_path, "not-the-secret"),
    ));
    // A region that knows the secret but does not speak TLS.
    let plain = vec!["--cluster-secret".to_string(), SECRET.to_string()];
    spec.push(("rp", vec!["ra"], plain));
    let cluster = TlsCluster::start(spec);
    cluster.wait_linked("ra", &["rb"]);
    cluster.wait_status("ra", "wrong secret refused", |st| {
        refused(st, "bad secret") >= 1
    });
    cluster.wait_status("rb", "wrong secret refused", |st| {
        refused(st, "bad secret") >= 1
    });
    cluster.wait_status("ra", "plain peer refused", |st| refused(st, "tls") >= 1);
    assert!(
        metric(
            cluster.get("ra").http,
            "meridian_replication_refused_total{reason=\"bad secret\"} "
        ) >= 1.0
    );

    ok(cluster.get("ra").conn().cmd(&["SET", "good", "1"]));
    ok(cluster.get("re").conn().cmd(&["SET", "leak", "1"]));
    ok(cluster.get("rp").conn().cmd(&["SET", "plain-leak", "1"]));
    cluster.wait_value("rb", "good", "1");
    for key in ["leak", "plain-leak"] {
        assert_eq!(
            cluster.get("ra").conn().cmd(&["EXISTS", key]),
            Frame::Integer(0)
        );
    }
}

/// Runs redis-cli (OpenSSL) against a TLS port: (success, stdout+stderr).
fn redis_cli(port: u16, tls_args: &[&str], cmd: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls"])
        .args(tls_args)
        .args(cmd)
        .output()
        .expect("redis-cli not found: run scripts/test, which installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("ERR"), text)
}

/// A stock client with its own TLS stack (redis-cli over OpenSSL) works
/// with the CA and its certificate, and is refused without them.
#[test]
fn redis_cli_connects_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "client-ca");
    let server = ca.issue(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let client = ca.issue(dir.path(), "cli", &["cli"]);
    let m = Meridian::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&server.0),
        "--tls-key",
        s(&server.1),
        "--tls-ca",
        s(&ca.pem_path),
    ]);
    let port = m.tls.unwrap().port();
    let trusted = ["--cacert", s(&ca.pem_path)];
    let identity = [
        &trusted[..],
        &["--cert", s(&client.0), "--key", s(&client.1)],
    ]
    .concat();
    let (set, out) = redis_cli(port, &identity, &["SET", "cli", "tls"]);
    assert!(set && out.contains("OK"), "{out}");
    let (get, out) = redis_cli(port, &identity, &["GET", "cli"]);
    assert!(get && out.contains("tls"), "{out}");
    // No client certificate: the default --tls-auth-clients with a CA is yes.
    let (anonymous, out) = redis_cli(port, &trusted, &["PING"]);
    assert!(!anonymous && !out.contains("PONG"), "{out}");
    // Not trusting the server's CA.
    let (untrusted, out) = redis_cli(port, &[], &["PING"]);
    assert!(!untrusted && !out.contains("PONG"), "{out}");
}
