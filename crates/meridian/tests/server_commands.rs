//! Server, connection and MERIDIAN commands whose replies a comparison with
//! redis-server cannot check: ids, addresses, INFO fields, authentication,
//! closing connections, stopping the process, expiry over time and snapshots.

mod common;

use std::time::{Duration, Instant};

use common::{Conn, Meridian};
use meridian_resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec().into())
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        Frame::Simple(s) | Frame::Error(s) => s.clone(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn int(f: &Frame) -> i64 {
    match f {
        Frame::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn is_error_starting(f: &Frame, prefix: &str) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(prefix))
}

/// The value under `key` in a RESP3 map or a RESP2 flat array of pairs.
fn field<'a>(f: &'a Frame, key: &str) -> Option<&'a Frame> {
    match f {
        Frame::Map(pairs) => pairs.iter().find(|(k, _)| text(k) == key).map(|(_, v)| v),
        Frame::Array(items) => items.chunks(2).find(|c| text(&c[0]) == key).map(|c| &c[1]),
        _ => None,
    }
}

/// `key:value` from an INFO reply.
fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim_end_matches('\r').to_string())
}

/// True once the server has closed the connection (nothing was pending).
fn closed(c: &mut Conn) -> bool {
    c.read().is_none()
}

#[test]
fn meridian_subcommands_describe_this_region() {
    let m = Meridian::start(&["--region", "eu-west"]);
    let mut c = m.conn();
    assert_eq!(c.line("MERIDIAN TOKEN"), bulk(""));
    assert_eq!(c.line("MERIDIAN AFTER \"\""), ok());
    assert_eq!(c.line("SET a 1"), ok());
    assert_eq!(c.line("SET b 2"), ok());
    let token = c.line("MERIDIAN TOKEN");
    assert_eq!(token, bulk("eu-west:2"));
    assert_eq!(c.cmd(&["MERIDIAN", "AFTER", "eu-west:2"]), ok());
    assert_eq!(
        c.cmd(&["MERIDIAN", "AFTER", "eu-west:1", "TIMEOUT", "100"]),
        ok()
    );
    let ahead = c.cmd(&["MERIDIAN", "AFTER", "eu-west:3"]);
    assert!(
        is_error_starting(&ahead, "ERR this region has not applied"),
        "{ahead:?}"
    );
    let other = c.cmd(&["MERIDIAN", "AFTER", "eu-west:1,us-east:4", "TIMEOUT", "10"]);
    assert!(text(&other).contains("us-east"), "{other:?}");
    assert!(is_error_starting(
        &c.line("MERIDIAN AFTER eu-west"),
        "ERR invalid token"
    ));
    assert!(is_error_starting(
        &c.line("MERIDIAN AFTER eu-west:1 TIMEOUT -1"),
        "ERR timeout is negative"
    ));
    assert!(is_error_starting(
        &c.line("MERIDIAN AFTER eu-west:1 WAIT 1"),
        "ERR syntax error"
    ));

    let regions = c.line("MERIDIAN REGIONS");
    let Frame::Array(rows) = &regions else {
        panic!("REGIONS is an array: {regions:?}");
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(field(&rows[0], "id"), Some(&bulk("eu-west")));
    assert_eq!(field(&rows[0], "role"), Some(&bulk("data")));
    assert_eq!(field(&rows[0], "link"), Some(&bulk("self")));
    assert_eq!(field(&rows[0], "lag_ms"), Some(&Frame::Integer(0)));
    assert_eq!(field(&rows[0], "version_vector"), Some(&token));

    let policy = c.line("MERIDIAN POLICY");
    let Frame::Array(rows) = &policy else {
        panic!("POLICY is an array: {policy:?}");
    };
    assert_eq!(field(&rows[0], "pattern"), Some(&bulk("*")));
    assert_eq!(field(&rows[0], "policy"), Some(&bulk("active-active")));
    assert_eq!(field(&rows[0], "state"), Some(&bulk("writable")));

    assert_eq!(c.line("MERIDIAN CONFLICTS"), Frame::Array(Vec::new()));
    assert_eq!(
        c.line("MERIDIAN CONFLICTS COUNT 5 KEY a"),
        Frame::Array(Vec::new())
    );
    assert!(is_error_starting(
        &c.line("MERIDIAN CONFLICTS COUNT -1"),
        "ERR value is out of range"
    ));
    assert!(is_error_starting(
        &c.line("MERIDIAN CONFLICTS COUNT"),
        "ERR syntax error"
    ));
    assert_eq!(
        c.line("MERIDIAN NOPE"),
        Frame::Error("ERR unknown subcommand 'NOPE'. Try MERIDIAN HELP.".into())
    );
    assert_eq!(
        c.line("MERIDIAN TOKEN extra"),
        Frame::Error("ERR wrong number of arguments for 'meridian|token' command".into())
    );
    let Frame::Array(help) = c.line("MERIDIAN HELP") else {
        panic!("HELP is an array");
    };
    assert!(help.iter().any(|l| text(l).starts_with("AFTER")));

    c.line("HELLO 3");
    let Frame::Array(rows) = c.line("MERIDIAN REGIONS") else {
        panic!("REGIONS is an array");
    };
    assert!(
        matches!(rows[0], Frame::Map(_)),
        "RESP3 rows are maps: {:?}",
        rows[0]
    );
}

#[test]
fn client_list_shows_connections_and_kill_closes_them() {
    let m = Meridian::start(&[]);
    let mut a = m.conn();
    let mut b = m.conn();
    assert_eq!(a.line("CLIENT SETNAME alpha"), ok());
    let a_id = int(&a.line("CLIENT ID"));
    let b_id = int(&b.line("CLIENT ID"));
    assert_ne!(a_id, b_id);

    let list = text(&b.line("CLIENT LIST"));
    let a_line = list
        .lines()
        .find(|l| l.starts_with(&format!("id={a_id} ")))
        .unwrap_or_else(|| panic!("no line for {a_id} in {list:?}"));
    assert!(a_line.contains(" name=alpha "), "{a_line}");
    assert!(a_line.contains(" flags=N "), "{a_line}");
    assert!(list.contains(&format!("id={b_id} ")));
    let info = text(&b.line("CLIENT INFO"));
    assert!(
        info.starts_with(&format!("id={b_id} ")) && info.ends_with('\n'),
        "{info:?}"
    );
    let only_a = text(&b.cmd(&["CLIENT", "LIST", "ID", &a_id.to_string()]));
    assert_eq!(only_a.lines().count(), 1);
    assert!(only_a.contains("name=alpha"));

    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &a_id.to_string()]),
        Frame::Integer(1)
    );
    assert!(closed(&mut a), "the killed connection is closed");
    assert!(!text(&b.line("CLIENT LIST")).contains("name=alpha"));

    // The legacy form takes the address CLIENT LIST shows.
    let mut d = m.conn();
    let d_id = int(&d.line("CLIENT ID"));
    let list = text(&b.line("CLIENT LIST"));
    let addr = list
        .lines()
        .find(|l| l.starts_with(&format!("id={d_id} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .expect("addr field")
        .to_string();
    assert_eq!(b.cmd(&["CLIENT", "KILL", &addr]), ok());
    assert!(closed(&mut d));
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", &addr]),
        Frame::Error("ERR No such client".into())
    );

    // SKIPME defaults to yes: a connection does not kill itself unless asked.
    let b_id_text = b_id.to_string();
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &b_id_text]),
        Frame::Integer(0)
    );
    assert_eq!(
        b.cmd(&["CLIENT", "KILL", "ID", &b_id_text, "SKIPME", "no"]),
        Frame::Integer(1)
    );
    assert!(closed(&mut b));
}

#[test]
fn client_list_type_pubsub_sees_subscribers() {
    let m = Meridian::start(&[]);
    let mut sub = m.conn();
    let mut c = m.conn();
    let sub_id = int(&sub.line("CLIENT ID"));
    sub.line("SUBSCRIBE news");
    sub.line("PSUBSCRIBE n*");
    let list = text(&c.line("CLIENT LIST TYPE pubsub"));
    assert_eq!(list.lines().count(), 1, "{list:?}");
    assert!(list.starts_with(&format!("id={sub_id} ")));
    assert!(
        list.contains(" flags=P ") && list.contains(" sub=1 psub=1 "),
        "{list}"
    );
    assert!(!text(&c.line("CLIENT LIST TYPE normal")).contains(&format!("id={sub_id} ")));
    assert_eq!(c.line("CLIENT KILL TYPE pubsub"), Frame::Integer(1));
    assert!(closed(&mut sub));
}

#[test]
fn info_reports_sections_and_keyspace() {
    let m = Meridian::start(&["--region", "ap-south"]);
    let mut c = m.conn();
    c.line("SET a 1");
    c.line("SET b 2 EX 100");
    c.line("HSET h f v");
    let info = text(&c.line("INFO"));
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Meridian",
        "# Keyspace",
    ] {
        assert!(
            info.contains(&format!("{section}\r\n")),
            "{section} missing from {info}"
        );
    }
    assert_eq!(
        info_field(&info, "redis_version").as_deref(),
        Some("7.0.15")
    );
    assert_eq!(info_field(&info, "role").as_deref(), Some("master"));
    assert_eq!(info_field(&info, "connected_slaves").as_deref(), Some("0"));
    assert_eq!(
        info_field(&info, "meridian_region").as_deref(),
        Some("ap-south")
    );
    assert_eq!(
        info_field(&info, "tcp_port").as_deref(),
        Some(m.resp.port().to_string().as_str())
    );
    let used: u64 = info_field(&info, "used_memory")
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    assert!(used > 0);
    let db0 = info_field(&info, "db0").expect("db0 line");
    assert!(db0.starts_with("keys=3,expires=1,avg_ttl="), "{db0}");
    let avg_ttl: u64 = db0
        .trim()
        .rsplit('=')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(avg_ttl > 90_000 && avg_ttl <= 100_000, "{avg_ttl}");

    let keyspace = text(&c.line("INFO keyspace"));
    assert!(
        keyspace.starts_with("# Keyspace\r\ndb0:keys=3"),
        "{keyspace:?}"
    );
    let two = text(&c.line("INFO CLIENTS server"));
    assert!(
        two.starts_with("# Server\r\n"),
        "sections come in INFO's order: {two}"
    );
    assert!(two.contains("\r\n\r\n# Clients\r\n"));
    assert!(!two.contains("# Memory"));
    let clients = info_field(&two, "connected_clients").expect("connected_clients");
    assert_eq!(clients.trim(), "1");
    // Redis 7.0's eleven sections with Commandstats, plus Meridian's own.
    assert_eq!(
        text(&c.line("INFO everything")).matches("\r\n# ").count() + 1,
        13
    );

    c.line("FLUSHALL");
    let keyspace = text(&c.line("INFO keyspace"));
    assert_eq!(keyspace, "# Keyspace\r\n");

    // RESP3 clients get INFO as a verbatim string.
    c.line("HELLO 3");
    assert!(matches!(c.line("INFO server"), Frame::Verbatim { .. }));
}

#[test]
fn hello_and_config_report_meridian() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    let hello = c.line("HELLO 3 SETNAME app");
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(field(&hello, "server"), Some(&bulk("redis")));
    assert_eq!(field(&hello, "version"), Some(&bulk("7.0.15")));
    assert_eq!(field(&hello, "proto"), Some(&Frame::Integer(3)));
    assert_eq!(field(&hello, "mode"), Some(&bulk("standalone")));
    assert_eq!(field(&hello, "role"), Some(&bulk("master")));
    assert_eq!(
        field(&hello, "meridian_version"),
        Some(&bulk(env!("CARGO_PKG_VERSION")))
    );
    let id = field(&hello, "id").map(int).expect("id");
    assert_eq!(c.line("CLIENT ID"), Frame::Integer(id));
    assert_eq!(c.line("CLIENT GETNAME"), bulk("app"));

    let port = c.line("CONFIG GET port");
    assert_eq!(
        field(&port, "port"),
        Some(&bulk(&m.resp.port().to_string()))
    );
    let all = c.line("CONFIG GET *");
    assert_eq!(field(&all, "databases"), Some(&bulk("1")));
    assert_eq!(field(&all, "appendonly"), Some(&bulk("yes")));
    assert_eq!(field(&all, "appendfsync"), Some(&bulk("everysec")));
    assert_eq!(
        c.line("CONFIG SET maxmemory 100"),
        Frame::Error(
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - can't set immutable config".into()
        )
    );

    // COMMAND is built from the command table.
    let Frame::Array(all) = c.line("COMMAND") else {
        panic!("COMMAND is an array");
    };
    assert_eq!(c.line("COMMAND COUNT"), Frame::Integer(all.len() as i64));
    let Frame::Array(info) = c.line("COMMAND INFO get nosuch") else {
        panic!("COMMAND INFO is an array");
    };
    let Frame::Array(get) = &info[0] else {
        panic!("one array per command");
    };
    assert_eq!(get.len(), 10);
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], Frame::Integer(2));
    assert_eq!(
        &get[3..6],
        &[Frame::Integer(1), Frame::Integer(1), Frame::Integer(1)]
    );
    assert_eq!(info[1], Frame::Null);
    let docs = c.line("COMMAND DOCS get meridian ping");
    let get_doc = field(&docs, "get").expect("docs for get");
    assert_eq!(field(get_doc, "group"), Some(&bulk("string")));
    assert_eq!(
        field(field(&docs, "ping").unwrap(), "group"),
        Some(&bulk("connection"))
    );
    assert_eq!(
        field(field(&docs, "meridian").unwrap(), "group"),
        Some(&bulk("meridian"))
    );
}

#[test]
fn auth_guards_every_command_when_a_password_is_set() {
    let m = Meridian::start(&["--requirepass", "secret"]);
    let mut c = m.conn();
    assert_eq!(
        c.line("GET k"),
        Frame::Error("NOAUTH Authentication required.".into())
    );
    assert!(is_error_starting(
        &c.line("HELLO 3"),
        "NOAUTH HELLO must be called"
    ));
    let wrong =
        Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    assert_eq!(c.line("AUTH wrong"), wrong);
    assert_eq!(c.line("AUTH default wrong"), wrong);
    assert_eq!(c.line("AUTH other secret"), wrong);
    assert_eq!(c.line("HELLO 3 AUTH default wrong"), wrong);
    assert_eq!(
        c.line("GET k"),
        Frame::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(c.line("AUTH secret"), ok());
    assert_eq!(c.line("SET k v"), ok());

    let mut d = m.conn();
    let hello = d.line("HELLO 3 AUTH default secret");
    assert_eq!(field(&hello, "proto"), Some(&Frame::Integer(3)));
    assert_eq!(d.line("GET k"), bulk("v"));
    assert_eq!(
        d.line("CONFIG GET requirepass"),
        Frame::Map(vec![(bulk("requirepass"), bulk("secret"))])
    );

    // A new password applies to new connections; existing ones stay in.
    assert_eq!(d.line("CONFIG SET requirepass fresh"), ok());
    assert_eq!(d.line("GET k"), bulk("v"));
    let mut e = m.conn();
    assert_eq!(e.line("AUTH secret"), wrong);
    assert_eq!(e.line("AUTH default fresh"), ok());

    // RESET logs the connection out again.
    assert_eq!(d.line("RESET"), Frame::Simple("RESET".into()));
    assert_eq!(
        d.line("GET k"),
        Frame::Error("NOAUTH Authentication required.".into())
    );

    // QUIT works before authenticating.
    let mut q = m.conn();
    assert_eq!(q.line("QUIT"), ok());
    assert!(closed(&mut q));

    // Without a password configured, AUTH with only a password is an error.
    assert_eq!(e.line("CONFIG SET requirepass \"\""), ok());
    let mut f = m.conn();
    assert!(is_error_starting(
        &f.line("AUTH x"),
        "ERR AUTH <password> called without any password configured"
    ));
    assert_eq!(f.line("GET k"), bulk("v"));
}

#[test]
fn quit_replies_then_closes() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(c.line("QUIT"), ok());
    assert!(closed(&mut c));
    // Inside MULTI, QUIT is not queued.
    let mut d = m.conn();
    assert_eq!(d.line("MULTI"), ok());
    assert_eq!(d.line("QUIT"), ok());
    assert!(closed(&mut d));
}

#[test]
fn reset_returns_the_connection_to_its_initial_state() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("HELLO 3 SETNAME worker");
    c.line("WATCH w");
    assert_eq!(c.line("MULTI"), ok());
    assert_eq!(c.line("SET x 1"), Frame::Simple("QUEUED".into()));
    assert_eq!(c.line("RESET"), Frame::Simple("RESET".into()));
    assert_eq!(c.line("GET x"), Frame::Null);
    assert_eq!(c.line("CLIENT GETNAME"), Frame::Null);
    assert!(
        matches!(c.line("CONFIG GET hz"), Frame::Array(_)),
        "back to RESP2"
    );
    assert_eq!(
        c.line("EXEC"),
        Frame::Error("ERR EXEC without MULTI".into())
    );
}

#[test]
fn shutdown_stops_the_process() {
    let mut m = Meridian::start(&[]);
    let mut c = m.conn();
    assert!(is_error_starting(
        &c.line("SHUTDOWN NOSAVE SAVE"),
        "ERR syntax error"
    ));
    assert_eq!(c.line("SET k v"), ok());
    c.send(&["SHUTDOWN"]);
    assert!(closed(&mut c), "SHUTDOWN sends no reply and closes");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = m.child.try_wait().expect("waiting for meridian") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "meridian still running after SHUTDOWN"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The op log was synced on the way out.
    let m = Meridian::start_in(&m.dir.clone(), &[]);
    assert_eq!(m.conn().line("GET k"), bulk("v"));
}

#[test]
fn keys_disappear_when_their_deadline_passes() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    // Long enough that the writes and the first DBSIZE land before any
    // deadline on a loaded machine (100 ms once did not).
    assert_eq!(c.line("SET k v PX 1500"), ok());
    assert_eq!(c.line("SET other v PX 1500"), ok());
    assert_eq!(c.line("HSET h f v"), Frame::Integer(1));
    assert_eq!(c.line("PEXPIRE h 1500"), Frame::Integer(1));
    assert_eq!(c.line("SET stays v"), ok());
    assert_eq!(c.line("DBSIZE"), Frame::Integer(4));
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(c.line("DBSIZE"), Frame::Integer(1));
    assert_eq!(c.line("KEYS *"), Frame::Array(vec![bulk("stays")]));
    assert_eq!(
        c.line("SCAN 0 COUNT 100"),
        Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("stays")])])
    );
    assert_eq!(c.line("RANDOMKEY"), bulk("stays"));
    assert_eq!(c.line("GET k"), Frame::Null);
    assert_eq!(c.line("TTL k"), Frame::Integer(-2));
    assert_eq!(c.line("HGET h f"), Frame::Null);
    assert_eq!(c.line("EXISTS other"), Frame::Integer(0));
    assert_eq!(c.line("DBSIZE"), Frame::Integer(1));
    let info = text(&c.line("INFO stats"));
    let expired: u64 = info_field(&info, "expired_keys")
        .and_then(|v| v.trim().parse().ok())
        .expect("expired_keys");
    assert_eq!(expired, 3);
}

#[test]
fn save_writes_a_snapshot_that_a_restart_recovers() {
    let mut m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("SET s v");
    c.line("HSET h f 1");
    c.line("HINCRBY h f 4");
    c.line("SADD set a b");
    c.line("ZADD z 2 m");
    c.line("INCRBY n 7");
    c.line("SET t v EX 1000");
    assert_eq!(c.line("SAVE"), ok());
    let snapshots: Vec<_> = std::fs::read_dir(&m.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(
        snapshots.len(),
        1,
        "one snapshot file in {}",
        m.dir.display()
    );
    let info = text(&c.line("INFO persistence"));
    assert_eq!(
        info_field(&info, "rdb_changes_since_last_save").as_deref(),
        Some("0")
    );
    let lastsave = int(&c.line("LASTSAVE"));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now_s - lastsave).abs() <= 5,
        "LASTSAVE {lastsave}, now {now_s}"
    );
    assert_eq!(
        c.line("BGSAVE"),
        Frame::Simple("Background saving started".into())
    );

    let dir = m.dir.clone();
    m.kill9();
    let r = Meridian::start_in(&dir, &[]);
    let mut c = r.conn();
    assert_eq!(c.line("GET s"), bulk("v"));
    assert_eq!(c.line("HGET h f"), bulk("5"));
    assert_eq!(c.line("SCARD set"), Frame::Integer(2));
    assert_eq!(c.line("ZSCORE z m"), bulk("2"));
    assert_eq!(c.line("INCR n"), Frame::Integer(8));
    let ttl = int(&c.line("TTL t"));
    assert!(ttl > 900 && ttl <= 1000, "TTL survived the restart: {ttl}");
    assert_eq!(c.line("DBSIZE"), Frame::Integer(6));
}

/// SAVE is refused inside MULTI, as Redis refuses it (`no_multi`); sent
/// in one batch between writes, the snapshot and the log stay in step.
#[test]
fn save_inside_a_batch_keeps_the_snapshot_and_log_in_step() {
    let mut m = Meridian::start(&[]);
    let mut c = m.conn();
    c.line("INCRBY n 10");
    c.line("MULTI");
    c.line("INCRBY n 5");
    assert_eq!(
        c.line("SAVE"),
        Frame::error("ERR Command not allowed inside a transaction")
    );
    assert_eq!(
        c.line("EXEC"),
        Frame::error("EXECABORT Transaction discarded because of previous errors.")
    );
    c.send(&["INCRBY", "n", "5"]);
    c.send(&["SAVE"]);
    c.send(&["INCRBY", "n", "1"]);
    assert_eq!(c.read().unwrap(), Frame::Integer(15));
    assert_eq!(c.read().unwrap(), ok());
    assert_eq!(c.read().unwrap(), Frame::Integer(16));
    c.line("INCRBY n 100");
    let dir = m.dir.clone();
    m.kill9();
    let r = Meridian::start_in(&dir, &[]);
    assert_eq!(
        r.conn().line("GET n"),
        bulk("116"),
        "no increment applied twice or lost"
    );
}

/// SET KEEPTTL on a key whose deadline has passed creates a key without a
/// TTL, as in Redis (the expired TTL must not be kept).
#[test]
fn set_keepttl_on_an_expired_key_keeps_no_ttl() {
    let m = common::Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(
        c.cmd(&["SET", "k", "v", "PX", "50"]),
        meridian_resp::Frame::ok()
    );
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(
        c.cmd(&["SET", "k", "w", "KEEPTTL"]),
        meridian_resp::Frame::ok()
    );
    assert_eq!(c.cmd(&["TTL", "k"]), meridian_resp::Frame::Integer(-1));
    assert_eq!(c.cmd(&["GET", "k"]), meridian_resp::Frame::bulk("w"));
}
