//! AUTH, ACL users and protected mode against a real `meridian` process.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Conn, Meridian};
use meridian_resp::Frame;

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn wrongpass() -> Frame {
    Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

fn noperm_command(name: &str) -> Frame {
    Frame::Error(format!(
        "NOPERM this user has no permissions to run the '{name}' command"
    ))
}

fn noperm_keys() -> Frame {
    Frame::Error(
        "NOPERM this user has no permissions to access one of the keys used as arguments".into(),
    )
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A region started by hand, for what `common::Meridian` does not offer:
/// another listen address, and the log lines on stderr.
struct Region {
    child: Child,
    resp: SocketAddr,
    http: SocketAddr,
    log: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Region {
    fn start(listen: &str, extra: &[&str]) -> Region {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--listen",
                listen,
                "--http",
                "127.0.0.1:0",
                "--repl",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning meridian");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("meridian exited").unwrap();
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        let (resp, http) = (field("resp="), field("http="));
        std::thread::spawn(move || for _ in lines {});
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Region {
            child,
            resp,
            http,
            log,
            _dir: dir,
        }
    }

    fn conn(&self) -> Conn {
        Conn::connect(self.resp)
    }

    /// Log lines written so far (waiting briefly for stragglers).
    fn log_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.log.recv_timeout(Duration::from_millis(300)) {
            out.push(l);
        }
        out
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn unauthenticated_and_wrong_password_clients_are_refused_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    // sha256("apple-pie")
    let digest = "5d7aab85372630f86688bfe94a30562432fc32b06e44c31edbabb1b4eb10ce9e";
    std::fs::write(
        &aclfile,
        format!("user alice on >alice-pw ~* +@write\nuser carol off >carol-pw ~* +@all\nuser dave on #{digest} ~* +@read\n"),
    )
    .unwrap();
    let m = Region::start(
        "127.0.0.1:0",
        &[
            "--requirepass",
            "secret",
            "--aclfile",
            aclfile.to_str().unwrap(),
        ],
    );
    let mut c = m.conn();
    assert_eq!(
        c.line("GET k"),
        Frame::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(c.line("AUTH guess-one"), wrongpass());
    assert_eq!(c.line("AUTH alice guess-two"), wrongpass());
    assert_eq!(c.line("AUTH nobody alice-pw"), wrongpass());
    assert_eq!(c.line("AUTH carol carol-pw"), wrongpass(), "carol is off");
    assert_eq!(c.line("HELLO 3 AUTH alice guess-three"), wrongpass());
    assert_eq!(
        c.line("GET k"),
        Frame::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(metric(m.http, "meridian_auth_failures_total"), 5);

    assert_eq!(c.line("AUTH alice alice-pw"), ok());
    assert_eq!(c.line("ACL WHOAMI"), bulk("alice"));
    assert_eq!(c.line("SET k v"), ok());
    let mut d = m.conn();
    assert_eq!(
        d.line("AUTH secret"),
        ok(),
        "requirepass is the default user's"
    );
    assert_eq!(d.line("ACL WHOAMI"), bulk("default"));
    let mut e = m.conn();
    assert_eq!(
        e.line("AUTH dave apple-pie"),
        ok(),
        "a #<sha256> from the file"
    );
    assert_eq!(e.line("GET k"), bulk("v"));
    assert_eq!(e.line("SET k w"), noperm_command("set"));

    let log = m.log_lines().join("\n");
    assert_eq!(log.matches("AUTH failed").count(), 5, "log:\n{log}");
    for password in [
        "guess-one",
        "guess-two",
        "guess-three",
        "alice-pw",
        "carol-pw",
    ] {
        assert!(!log.contains(password), "the log shows a password:\n{log}");
    }
}

#[test]
fn read_only_user_cannot_write() {
    let m = Meridian::start(&["--requirepass", "secret"]);
    let mut admin = m.conn();
    assert_eq!(admin.line("AUTH secret"), ok());
    assert_eq!(admin.line("SET k v"), ok());
    assert_eq!(admin.line("ACL SETUSER reader on >rpw ~* +@read"), ok());
    assert_eq!(admin.line("ACL SETUSER writer on >wpw ~* +@write"), ok());

    let mut r = m.conn();
    assert_eq!(r.line("AUTH reader rpw"), ok());
    assert_eq!(r.line("GET k"), bulk("v"));
    assert_eq!(r.line("SET k w"), noperm_command("set"));
    assert_eq!(r.line("DEL k"), noperm_command("del"));
    assert_eq!(r.line("CONFIG SET requirepass x"), noperm_command("config"));
    assert_eq!(
        r.line("ACL SETUSER reader +@all"),
        noperm_command("acl|setuser")
    );
    assert_eq!(r.line("CLIENT KILL ID 1"), noperm_command("client|kill"));
    // Refused while queueing: the transaction aborts, as in Redis.
    assert_eq!(r.line("MULTI"), ok());
    assert_eq!(r.line("SET k w"), noperm_command("set"));
    assert_eq!(
        r.line("EXEC"),
        Frame::Error("EXECABORT Transaction discarded because of previous errors.".into())
    );
    assert_eq!(r.line("GET k"), bulk("v"));

    // A writer may write but not administer.
    let mut w = m.conn();
    assert_eq!(w.line("AUTH writer wpw"), ok());
    assert_eq!(w.line("SET k w"), ok());
    assert_eq!(w.line("FLUSHALL"), noperm_command("flushall"));
    assert_eq!(w.line("SHUTDOWN"), noperm_command("shutdown"));
    assert_eq!(w.line("SAVE"), noperm_command("save"));

    // Permissions are checked again at EXEC: a user demoted after queueing
    // gets NOPERM for the write, and nothing is written.
    assert_eq!(w.line("MULTI"), ok());
    assert_eq!(w.line("SET k x"), Frame::Simple("QUEUED".into()));
    assert_eq!(w.line("GET k"), Frame::Simple("QUEUED".into()));
    assert_eq!(admin.line("ACL SETUSER writer -@write"), ok());
    assert_eq!(
        w.line("EXEC"),
        Frame::Array(vec![noperm_command("set"), bulk("w")])
    );
    assert_eq!(admin.line("GET k"), bulk("w"));
}

#[test]
fn key_patterns_limit_the_keys_a_user_may_touch() {
    let m = Meridian::start(&[]);
    let mut admin = m.conn();
    assert_eq!(
        admin.line("ACL SETUSER app on >pw ~app:* ~shared +@write"),
        ok()
    );
    assert_eq!(admin.line("SET other 1"), ok());
    let mut a = m.conn();
    assert_eq!(a.line("AUTH app pw"), ok());
    assert_eq!(a.line("SET app:1 x"), ok());
    assert_eq!(a.line("GET app:1"), bulk("x"));
    assert_eq!(a.line("SET shared y"), ok());
    assert_eq!(a.line("GET other"), noperm_keys());
    assert_eq!(a.line("SET other 2"), noperm_keys());
    assert_eq!(a.line("MSET app:2 a other b"), noperm_keys());
    assert_eq!(a.line("DEL app:1 other"), noperm_keys());
    assert_eq!(a.line("EXISTS app:1"), Frame::Integer(1));
    assert_eq!(admin.line("GET other"), bulk("1"));
    assert_eq!(admin.line("EXISTS app:2"), Frame::Integer(0));
}

/// GEORADIUS's STORE destination follows an option, where only Redis's key
/// specs find it; it is checked like any key (as redis-server does).
#[test]
fn a_geo_store_destination_must_match_the_key_patterns() {
    let m = Meridian::start(&[]);
    let mut admin = m.conn();
    assert_eq!(admin.line("ACL SETUSER app on >pw ~app:* +@all"), ok());
    assert_eq!(admin.line("GEOADD app:src 1 1 here"), Frame::Integer(1));
    let mut a = m.conn();
    assert_eq!(a.line("AUTH app pw"), ok());
    assert_eq!(
        a.line("GEORADIUS app:src 1 1 10 km STORE app:near"),
        Frame::Integer(1)
    );
    assert_eq!(
        a.line("GEORADIUS app:src 1 1 10 km STORE other"),
        noperm_keys()
    );
    assert_eq!(
        a.line("GEORADIUSBYMEMBER app:src here 10 km STOREDIST other"),
        noperm_keys()
    );
    assert_eq!(
        a.line("GEORADIUS_RO app:src 1 1 10 km"),
        Frame::Array(vec![bulk("here")])
    );
    assert_eq!(admin.line("EXISTS other"), Frame::Integer(0));
}

/// Keys whose place depends on the arguments (a STORE keyword, keys
/// after a count) are keys for the ACL too: SORT's STORE destination,
/// ZUNIONSTORE's sources and LMPOP's keys once escaped the key patterns.
#[test]
fn keys_placed_by_a_keyword_or_a_count_must_match_the_key_patterns() {
    let m = Meridian::start(&[]);
    let mut admin = m.conn();
    assert_eq!(admin.line("ACL SETUSER app on >pw ~app:* +@all"), ok());
    for line in ["RPUSH app:l 3 1 2", "RPUSH other 9", "ZADD otherz 1 x"] {
        assert!(matches!(admin.line(line), Frame::Integer(_)));
    }
    let mut a = m.conn();
    assert_eq!(a.line("AUTH app pw"), ok());
    assert_eq!(a.line("SORT app:l STORE app:sorted"), Frame::Integer(3));
    assert_eq!(a.line("SORT app:l STORE other"), noperm_keys());
    assert_eq!(a.line("ZUNIONSTORE app:u 2 app:z otherz"), noperm_keys());
    assert_eq!(a.line("ZINTERCARD 2 app:z otherz"), noperm_keys());
    assert_eq!(a.line("LMPOP 2 app:l other LEFT"), noperm_keys());
    assert_eq!(a.line("SINTERCARD 1 other"), noperm_keys());
    assert_eq!(admin.line("LLEN other"), Frame::Integer(1));
    assert_eq!(admin.line("EXISTS app:u"), Frame::Integer(0));
}

#[test]
fn acl_list_shows_password_digests_never_passwords() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(
        c.line("ACL SETUSER bob on >plain-text-pw ~cache:* +@read"),
        ok()
    );
    let Frame::Array(lines) = c.line("ACL LIST") else {
        panic!("ACL LIST is an array")
    };
    let lines: Vec<String> = lines
        .iter()
        .map(|f| match f {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("user bob on #"), "{lines:?}");
    let digest = lines[0].split_whitespace().nth(3).unwrap();
    let (salt, hash) = digest
        .strip_prefix("#ms1$")
        .and_then(|d| d.split_once('$'))
        .unwrap_or_else(|| panic!("#ms1$<salt>$<digest>: {digest}"));
    assert_eq!((salt.len(), hash.len()), (32, 64), "{digest}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(lines[0].ends_with("~cache:* +@read"), "{lines:?}");
    assert_eq!(lines[1], "user default on nopass ~* +@all");
    let all = format!("{lines:?} {:?}", c.line("ACL GETUSER bob"));
    assert!(!all.contains("plain-text-pw"), "{all}");
    assert!(all.contains(&digest[1..]), "GETUSER lists the same digest");

    // A deleted user's connections end, as in Redis.
    let mut b = m.conn();
    assert_eq!(b.line("AUTH bob plain-text-pw"), ok());
    assert_eq!(c.line("ACL DELUSER bob nobody"), Frame::Integer(1));
    assert!(matches!(b.line("GET cache:1"), Frame::Error(e) if e.starts_with("NOPERM")));
    assert_eq!(b.read(), None, "the connection is closed");
    assert_eq!(
        c.line("ACL DELUSER default"),
        Frame::Error("ERR The 'default' user cannot be removed".into())
    );
    assert!(
        matches!(c.line("ACL SETUSER x +get"), Frame::Error(e) if e.starts_with("ERR Error in ACL SETUSER modifier '+get'"))
    );
}

/// A network namespace joined to the host by a veth pair, removed on drop
/// (also when the test fails). Only the two veth ends carry traffic.
struct Netns {
    name: String,
    host_if: String,
    pub host_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let subnet = 1 + pid % 250;
        let ns = Netns {
            name: format!("meridian-acl-{pid}"),
            host_if: format!("mracl{}h", pid % 100_000),
            host_ip: format!("10.200.{subnet}.1"),
        };
        let peer_if = format!("mracl{}n", pid % 100_000);
        let ns_ip = format!("10.200.{subnet}.2/30");
        let host_cidr = format!("{}/30", ns.host_ip);
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ])?;
        ip(&["link", "set", &peer_if, "netns", &ns.name])?;
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&[
            "netns", "exec", &ns.name, "ip", "addr", "add", &ns_ip, "dev", &peer_if,
        ])?;
        ip(&[
            "netns", "exec", &ns.name, "ip", "link", "set", &peer_if, "up",
        ])?;
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `redis-cli PING` inside the namespace against `addr`.
    fn ping(&self, addr: SocketAddr, auth: Option<&str>) -> String {
        let port = addr.port().to_string();
        let host = addr.ip().to_string();
        let mut args = vec![
            "netns",
            "exec",
            &self.name,
            "timeout",
            "10",
            "redis-cli",
            "-h",
            &host,
            "-p",
            &port,
        ];
        if let Some(a) = auth {
            args.extend(["--no-auth-warning", "-a", a]);
        }
        args.push("PING");
        let out = Command::new("ip")
            .args(&args)
            .output()
            .expect("run redis-cli");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end inside it, and with it
        // the pair; the host end is deleted too in case that failed.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

#[test]
fn protected_mode_refuses_clients_outside_loopback() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        println!("skipped protected_mode_refuses_clients_outside_loopback: creating a network namespace needs root");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(e) => panic!("setting up the network namespace failed: {e}"),
    };
    let listen = format!("{}:0", ns.host_ip);

    let open = Region::start(&listen, &[]);
    let reply = ns.ping(open.resp, None);
    assert!(
        reply.contains("DENIED Redis is running in protected mode"),
        "{reply}"
    );
    let log = open.log_lines().join("\n");
    assert!(
        log.contains("protected mode"),
        "the refusal is logged: {log}"
    );
    // CONFIG SET protected-mode, from loopback, changes it at run time.
    let any = Region::start("0.0.0.0:0", &[]);
    let outside = SocketAddr::new(ns.host_ip.parse().unwrap(), any.resp.port());
    assert!(ns.ping(outside, None).contains("DENIED"));
    let mut admin = Conn::connect(SocketAddr::new(
        "127.0.0.1".parse().unwrap(),
        any.resp.port(),
    ));
    let _ = admin.line("HELLO 3");
    assert_eq!(admin.line("CONFIG SET protected-mode no"), ok());
    assert_eq!(
        admin.line("CONFIG GET protected-mode"),
        Frame::Map(vec![(bulk("protected-mode"), bulk("no"))])
    );
    assert_eq!(ns.ping(outside, None).trim(), "PONG");
    assert_eq!(admin.line("CONFIG SET protected-mode yes"), ok());
    assert!(ns.ping(outside, None).contains("DENIED"));
    assert!(matches!(
        admin.line("CONFIG SET protected-mode maybe"),
        Frame::Error(e) if e.contains("'yes' or 'no'")
    ));

    // A password for `default`, `default` turned off, or --protected-mode
    // no lets outsiders in.
    let with_password = Region::start(&listen, &["--requirepass", "secret"]);
    assert_eq!(ns.ping(with_password.resp, Some("secret")).trim(), "PONG");
    let mut c = with_password.conn();
    assert!(matches!(c.line("PING"), Frame::Error(e) if e.starts_with("NOAUTH")));

    let unprotected = Region::start(&listen, &["--protected-mode", "no"]);
    assert_eq!(ns.ping(unprotected.resp, None).trim(), "PONG");

    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    // ACL users alone leave `default` open to anyone, so protected mode
    // stays (as in Redis); turning `default` off lifts it.
    std::fs::write(&aclfile, "user app on >app-pw ~* +@all\n").unwrap();
    let users_only = Region::start(&listen, &["--aclfile", aclfile.to_str().unwrap()]);
    let reply = ns.ping(users_only.resp, None);
    assert!(reply.contains("DENIED"), "{reply}");
    std::fs::write(&aclfile, "user default off\nuser app on >app-pw ~* +@all\n").unwrap();
    let with_user = Region::start(&listen, &["--aclfile", aclfile.to_str().unwrap()]);
    let reply = ns.ping(with_user.resp, None);
    assert!(
        reply.contains("NOAUTH"),
        "accepted, then asked to log in: {reply}"
    );

    let loopback = Region::start("127.0.0.1:0", &[]);
    let mut l = loopback.conn();
    assert_eq!(
        l.line("PING"),
        Frame::Simple("PONG".into()),
        "loopback is accepted"
    );
}

/// ACL SAVE writes the users to --aclfile (salted digests only) and a
/// restarted region loads them; ACL LOG lists refusals without passwords.
#[test]
fn acl_save_persists_users_and_acl_log_records_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    std::fs::write(&aclfile, "user admin on >admin-pw ~* +@all\n").unwrap();
    let file_arg = aclfile.to_str().unwrap();
    let region = Region::start("127.0.0.1:0", &["--aclfile", file_arg]);
    let mut c = region.conn();
    assert_eq!(c.line("AUTH admin admin-pw"), ok());
    let _ = c.line("HELLO 3");
    assert_eq!(c.line("ACL SETUSER ro on >ro-secret ~cache:* +@read"), ok());
    assert_eq!(c.line("ACL SAVE"), ok());
    let text = std::fs::read_to_string(&aclfile).unwrap();
    assert!(
        !text.contains("ro-secret") && !text.contains("admin-pw"),
        "{text}"
    );
    assert!(text.contains("user ro on #ms1$"), "{text}");

    let mut bad = region.conn();
    assert_eq!(bad.line("AUTH ro not-the-password"), wrongpass());
    assert_eq!(bad.line("AUTH ro not-the-password-either"), wrongpass());
    assert_eq!(bad.line("AUTH ro ro-secret"), ok());
    assert_eq!(bad.line("SET cache:1 x"), noperm_command("set"));
    assert_eq!(bad.line("GET other"), noperm_keys());
    let Frame::Array(entries) = c.line("ACL LOG") else {
        panic!("ACL LOG is an array")
    };
    let field = |e: &Frame, name: &str| -> Frame {
        let Frame::Map(pairs) = e else {
            panic!("{e:?}")
        };
        pairs
            .iter()
            .find(|(k, _)| *k == bulk(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {e:?}"))
    };
    let summary: Vec<(Frame, Frame, Frame, Frame)> = entries
        .iter()
        .map(|e| {
            (
                field(e, "reason"),
                field(e, "object"),
                field(e, "username"),
                field(e, "count"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (bulk("key"), bulk("other"), bulk("ro"), Frame::Integer(1)),
            (bulk("command"), bulk("set"), bulk("ro"), Frame::Integer(1)),
            (bulk("auth"), bulk("AUTH"), bulk("ro"), Frame::Integer(2)),
        ]
    );
    assert!(!format!("{entries:?}").contains("not-the-password"));
    assert_eq!(bad.line("ACL LOG"), noperm_command("acl|log"));
    assert_eq!(c.line("ACL LOG RESET"), ok());
    assert_eq!(c.line("ACL LOG"), Frame::Array(vec![]));
    drop(region);

    let again = Region::start("127.0.0.1:0", &["--aclfile", file_arg]);
    let mut r = again.conn();
    assert_eq!(r.line("AUTH ro ro-secret"), ok());
    assert_eq!(r.line("GET cache:1"), Frame::Null);
    assert_eq!(r.line("SET cache:1 x"), noperm_command("set"));
    let mut a = again.conn();
    assert_eq!(a.line("AUTH admin admin-pw"), ok());

    let plain = Region::start("127.0.0.1:0", &[]);
    assert!(matches!(
        plain.conn().line("ACL SAVE"),
        Frame::Error(e) if e.contains("not configured to use an ACL file")
    ));
}
