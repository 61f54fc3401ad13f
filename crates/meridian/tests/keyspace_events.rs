//! Keyspace notifications on real regions: the events local commands send
//! to channel and pattern subscribers, `expired` from lazy and active
//! expiry (announced before the event of the command whose lookup expired
//! the key), the flags as CONFIG SET, `--notify-keyspace-events` and a
//! reloaded config file take them, and, across two linked regions, the
//! events of a write made in one region heard by a subscriber of the
//! other. Every command's events are compared with redis-server's in
//! `differential/notify.redis`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{http_request, Cluster};
use common::{Conn, Meridian};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

/// Published after the commands under test: what arrives before it is
/// theirs.
const MARKER: &str = "keyspace-events-marker";

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// A connection subscribed to keyspace channels and to the marker.
struct Subscriber {
    conn: Conn,
}

impl Subscriber {
    /// Subscribes with PSUBSCRIBE to `patterns` and SUBSCRIBE to `channels`.
    fn start(region: &Meridian, patterns: &[&str], channels: &[&str]) -> Subscriber {
        let mut conn = region.conn();
        let mut expected = 0;
        if !patterns.is_empty() {
            conn.send(&[&["PSUBSCRIBE"], patterns].concat());
            expected += patterns.len();
        }
        let mut chans = vec!["SUBSCRIBE", MARKER];
        chans.extend_from_slice(channels);
        conn.send(&chans);
        expected += chans.len() - 1;
        for _ in 0..expected {
            conn.read().expect("subscription reply");
        }
        Subscriber { conn }
    }

    /// The next message as `channel message`.
    fn next(&mut self) -> String {
        let frame = self.conn.read().expect("subscriber closed");
        let (Frame::Array(parts) | Frame::Push(parts)) = &frame else {
            panic!("not a message: {frame:?}");
        };
        let n = parts.len();
        format!("{} {}", text(&parts[n - 2]), text(&parts[n - 1]))
    }

    /// Every message up to the marker, which `publisher` publishes now
    /// (markers published for other subscribers are passed over).
    fn until_marker(&mut self, publisher: &mut Conn) -> Vec<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mine = format!("{MARKER} {id}");
        publisher.cmd(&["PUBLISH", MARKER, &id.to_string()]);
        let mut out = Vec::new();
        loop {
            let m = self.next();
            if m == mine {
                return out;
            }
            if !m.starts_with(MARKER) {
                out.push(m);
            }
        }
    }
}

fn keyspace(key: &str, events: &[&str]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("__keyspace@0__:{key} {e}"))
        .collect()
}

fn ok() -> Frame {
    Frame::Simple("OK".into())
}

/// One write of each type family, each heard on the keyspace channel of
/// its key by a pattern subscriber, and on its event's channel by a
/// channel subscriber, with Redis's names.
#[test]
fn local_writes_of_every_type_reach_channel_and_pattern_subscribers() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(
        c.line("CONFIG SET notify-keyspace-events KEA"),
        ok(),
        "K, E and every class"
    );
    let mut keys = Subscriber::start(&m, &["__keyspace@0__:*"], &[]);
    let mut sets = Subscriber::start(&m, &[], &["__keyevent@0__:set"]);
    for line in [
        "SET s v",
        "INCRBYFLOAT f 1.5",
        "LPUSH l a b c",
        "LMOVE l l2 RIGHT LEFT",
        "SADD st a b c d",
        "SPOP st 2",
        "HSET h a 1",
        "HINCRBYFLOAT h a 0.5",
        "ZADD z 1 a",
        "ZINCRBY z 2 a",
        "RENAME s s2",
        "SORT l ALPHA STORE sorted",
        "EXPIRE sorted -1",
    ] {
        c.line(line);
    }
    let mut want = Vec::new();
    for (key, events) in [
        ("s", &["set"][..]),
        ("f", &["incrbyfloat"]),
        ("l", &["lpush"]),
        ("l2", &["lpush"]),
        ("l", &["rpop"]),
        ("st", &["sadd", "spop"]),
        ("h", &["hset", "hincrbyfloat"]),
        ("z", &["zadd", "zincr"]),
        ("s", &["rename_from"]),
        ("s2", &["rename_to"]),
        ("sorted", &["sortstore", "del"]),
    ] {
        want.extend(keyspace(key, events));
    }
    assert_eq!(keys.until_marker(&mut c), want);
    assert_eq!(
        sets.until_marker(&mut c),
        ["__keyevent@0__:set s"],
        "only the set event's channel"
    );

    // RESTORE of this region's own DUMP: `restore`, after `new`.
    c.line("CONFIG SET notify-keyspace-events KEAn");
    let Frame::Bulk(payload) = c.line("DUMP h") else {
        panic!("DUMP h");
    };
    assert_eq!(c.cmd(&[&b"RESTORE"[..], b"h2", b"0", &payload]), ok());
    assert_eq!(
        c.cmd(&[&b"RESTORE"[..], b"h2", b"0", &payload, b"REPLACE"]),
        ok()
    );
    let mut want = keyspace("h2", &["new", "restore"]);
    want.extend(keyspace("h2", &["new", "restore"]));
    assert_eq!(keys.until_marker(&mut c), want);

    // Off again: nothing more is sent.
    c.line("CONFIG SET notify-keyspace-events \"\"");
    c.line("SET s v");
    assert_eq!(keys.until_marker(&mut c), Vec::<String>::new());
}

/// A key past its deadline is announced `expired` when it goes, whether a
/// command's lookup finds it due (before that command's own events, as
/// Redis announces them) or the active expiry cycle reclaims it unread.
#[test]
fn expired_keys_are_announced_by_lazy_and_active_expiry() {
    let m = Meridian::start(&["--notify-keyspace-events", "KExn$"]);
    let mut c = m.conn();
    let mut sub = Subscriber::start(&m, &["__keyspace@0__:*"], &[]);

    // Lazy: a SET just past the deadline expires the key in its own
    // lookup. The active cycle (every 100 ms) may win the race for some of
    // the keys; the order is the same either way.
    for i in 0..5 {
        let key = format!("lazy{i}");
        c.cmd(&["SET", &key, "v", "PX", "20"]);
        std::thread::sleep(Duration::from_millis(25));
        c.cmd(&["SET", &key, "again"]);
        let mut want = keyspace(&key, &["new", "set"]);
        want.extend(keyspace(&key, &["expired", "new", "set"]));
        assert_eq!(sub.until_marker(&mut c), want, "{key}");
    }

    // Active: nobody reads the key.
    c.line("SET active v PX 50");
    assert_eq!(sub.next(), "__keyspace@0__:active new");
    assert_eq!(sub.next(), "__keyspace@0__:active set");
    let started = Instant::now();
    assert_eq!(sub.next(), "__keyspace@0__:active expired");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Class `m`: a read of a key that is not there announces `keymiss` for
/// each missing key (GET, MGET, EXISTS, inside MULTI too); a read of a
/// present key and a write announce none.
#[test]
fn reads_of_missing_keys_are_announced_as_key_misses() {
    let m = Meridian::start(&["--notify-keyspace-events", "KEm"]);
    let mut c = m.conn();
    let mut sub = Subscriber::start(&m, &["__keyevent@0__:*"], &[]);
    c.cmd(&["SET", "here", "v"]);
    c.cmd(&["GET", "here"]);
    c.cmd(&["GET", "gone"]);
    c.cmd(&["MGET", "here", "a", "b"]);
    c.cmd(&["EXISTS", "c"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["GET", "d"]);
    c.cmd(&["EXEC"]);
    let miss = |k: &str| format!("__keyevent@0__:keymiss {k}");
    assert_eq!(
        sub.until_marker(&mut c),
        vec![miss("gone"), miss("a"), miss("b"), miss("c"), miss("d")]
    );
    // Off again: nothing.
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KE"]);
    c.cmd(&["GET", "gone"]);
    assert_eq!(sub.until_marker(&mut c), Vec::<String>::new());
}

/// The flags as Redis 7.0 takes and shows them, through CONFIG SET, the
/// `--notify-keyspace-events` flag and a reloaded config file.
#[test]
fn flags_are_taken_and_shown_as_redis_does_from_every_source() {
    let m = Meridian::start(&["--notify-keyspace-events", "KEA"]);
    let mut c = m.conn();
    let get = |c: &mut Conn| match c.line("CONFIG GET notify-keyspace-events") {
        Frame::Array(kv) => text(&kv[1]),
        other => panic!("{other:?}"),
    };
    assert_eq!(get(&mut c), "AKE");
    assert_eq!(
        c.line("CONFIG SET notify-keyspace-events KEQ"),
        Frame::Error(
            "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()
        )
    );
    assert_eq!(get(&mut c), "AKE", "a refused value changes nothing");
    c.line("CONFIG SET notify-keyspace-events glzE");
    assert_eq!(get(&mut c), "glzE");

    // A bad flag stops the region before it starts.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--print-config", "--notify-keyspace-events", "Kq"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--notify-keyspace-events \"Kq\": Invalid event class character"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--print-config", "--notify-keyspace-events", "xKg"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("notify-keyspace-events = \"gxK\""),
        "{shown}"
    );

    // The config file's value, applied again by a reload.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("meridian.toml");
    std::fs::write(&file, "notify-keyspace-events = \"\"\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let m = Meridian::start_in(data.path(), &["--config", file.to_str().unwrap()]);
    let mut c = m.conn();
    assert_eq!(get(&mut c), "");
    let mut sub = Subscriber::start(&m, &["__key*"], &[]);
    c.line("SET before v");
    assert_eq!(sub.until_marker(&mut c), Vec::<String>::new());
    std::fs::write(&file, "notify-keyspace-events = \"Kg$\"\n").unwrap();
    let reply = http_request(
        std::net::TcpStream::connect(m.http).unwrap(),
        "POST",
        "/v1/reload",
        &[],
        "",
    );
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert!(
        reply.body.contains("notify-keyspace-events"),
        "{}",
        reply.body
    );
    assert_eq!(get(&mut c), "g$K");
    c.line("SET after v");
    assert_eq!(sub.until_marker(&mut c), keyspace("after", &["set"]));
}

/// Two linked regions: a subscriber in one hears the writes made in the
/// other, named as Redis names the command's event (a list push by its
/// end, a float increment as `incrbyfloat`), keys the write created as
/// `new`, a pop that empties a list followed by `del`, and expiry as
/// `expired`; its own region's writes it hears once, from their commands.
#[test]
fn a_subscriber_hears_writes_made_in_another_region() {
    let cluster = Cluster::start(
        &["ka", "kb"],
        LinkConditions::wan(5),
        &["--notify-keyspace-events", "KEAn"],
        41,
    );
    let b = &cluster.regions[cluster.index("kb")];
    let mut sub = Subscriber::start(b, &["__keyspace@0__:*"], &[]);
    let mut a = cluster.conn("ka");
    let mut on_b = cluster.conn("kb");

    a.line("SET k v");
    assert_eq!(sub.next(), "__keyspace@0__:k new");
    assert_eq!(sub.next(), "__keyspace@0__:k set");

    for line in [
        "RPUSH q a b",
        "LPUSH q z",
        "INCRBYFLOAT f 0.5",
        "SET e v PX 200",
        "LPOP q 3",
    ] {
        a.line(line);
    }
    let mut want = keyspace("q", &["new", "rpush", "lpush"]);
    want.extend(keyspace("f", &["new", "incrbyfloat"]));
    want.extend(keyspace("e", &["new", "set", "expire"]));
    want.extend(keyspace("q", &["lpop", "del"]));
    let got: Vec<String> = (0..want.len()).map(|_| sub.next()).collect();
    assert_eq!(got, want);
    // Each region expires the key itself, or applies the other's expiry
    // first; either way this region announces it once.
    assert_eq!(sub.next(), "__keyspace@0__:e expired");

    // A write made here is announced by its command alone, not again when
    // the change feed is drained.
    on_b.line("SET mine v");
    assert_eq!(
        sub.until_marker(&mut on_b),
        keyspace("mine", &["new", "set"])
    );
}

/// Stream writes made in another region are announced as Redis names
/// them: `xadd`, `xtrim`, `xdel`, `xsetid`, the group events, a consumer
/// created by the read that served it; reads and acknowledgements are not
/// announced, as in Redis.
#[test]
fn a_subscriber_hears_stream_writes_made_in_another_region() {
    let cluster = Cluster::start(
        &["ta", "tb"],
        LinkConditions::wan(5),
        &["--notify-keyspace-events", "KEAn"],
        42,
    );
    let b = &cluster.regions[cluster.index("tb")];
    let mut sub = Subscriber::start(b, &["__keyspace@0__:*"], &[]);
    let mut a = cluster.conn("ta");
    for line in [
        "XADD s 1-0 f v",
        "XGROUP CREATE s g 0",
        "XREADGROUP GROUP g alice STREAMS s >",
        "XACK s g 1-0",
        "XDEL s 1-0",
        "XADD s MAXLEN 0 2-0 f v",
        "XSETID s 5-0",
        "XGROUP SETID s g 0",
        "XGROUP CREATECONSUMER s g bob",
        "XGROUP DELCONSUMER s g bob",
        "XGROUP DESTROY s g",
    ] {
        let reply = a.line(line);
        assert!(!reply.is_error(), "{line}: {reply:?}");
    }
    let want = keyspace(
        "s",
        &[
            "new",
            "xadd",
            "xgroup-create",
            "xgroup-createconsumer",
            "xdel",
            "xadd",
            "xtrim",
            "xsetid",
            "xgroup-setid",
            "xgroup-createconsumer",
            "xgroup-delconsumer",
            "xgroup-destroy",
        ],
    );
    let got: Vec<String> = (0..want.len()).map(|_| sub.next()).collect();
    assert_eq!(got, want);
}

/// A region cut off for longer than its peer keeps its log is repaired by
/// anti-entropy: a key the repair brought is announced as `new`, then
/// `merged` (Meridian's event for a state replaced by a merge).
#[test]
fn keys_repaired_by_anti_entropy_are_announced_as_merged() {
    let cluster = Cluster::start(
        &["ma", "mb"],
        LinkConditions::wan(5),
        &[
            "--notify-keyspace-events",
            "KEAn",
            "--repl-backlog-ops",
            "10",
            "--log-segment-max-bytes",
            "4096",
        ],
        43,
    );
    let b = &cluster.regions[cluster.index("mb")];
    let mut sub = Subscriber::start(b, &["__keyspace@0__:m:*"], &[]);
    cluster.mesh.partition("mb").unwrap();
    let mut a = cluster.conn("ma");
    for i in 0..400 {
        a.cmd(&["SET", &format!("m:{i:03}"), "v"]);
    }
    // A snapshot compacts the log past what the backlog keeps for mb.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a.line("SAVE"), ok());
    cluster.mesh.heal_all();
    let mut seen = Vec::new();
    while !seen.contains(&"__keyspace@0__:m:000 merged".to_string()) {
        seen.push(sub.next());
    }
    let first: Vec<&String> = seen.iter().filter(|m| m.contains("m:000 ")).collect();
    assert_eq!(
        first,
        ["__keyspace@0__:m:000 new", "__keyspace@0__:m:000 merged"]
    );
}
