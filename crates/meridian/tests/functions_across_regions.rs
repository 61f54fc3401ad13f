//! FUNCTION libraries across two real regions linked through the fault
//! proxy: a library loaded in one region is called in the other, deletes
//! and flushes replicate (a flush removes only what it saw), libraries
//! survive a restart, a region that missed the ops gets them by log
//! catch-up or anti-entropy, and concurrent loads of one library converge
//! to one code everywhere.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{http_get, Cluster};
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);

fn lib(name: &str, function: &str, answer: &str) -> String {
    format!(
        "#!lua name={name}\nredis.register_function('{function}', function() return '{answer}' end)"
    )
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

/// Retries `cmd` until the reply is `want`, up to `timeout`.
fn until(c: &mut Conn, cmd: &[&str], want: &Frame, timeout: Duration) -> Frame {
    let started = Instant::now();
    loop {
        let reply = c.cmd(cmd);
        if &reply == want || started.elapsed() > timeout {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn not_found() -> Frame {
    Frame::Error("ERR Function not found".into())
}

/// `FUNCTION LIST WITHCODE` as the region answers it.
fn listing(c: &mut Conn) -> Frame {
    c.cmd(&["FUNCTION", "LIST", "WITHCODE"])
}

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

#[test]
fn libraries_replicate_restart_and_converge() {
    let mut cluster = Cluster::start(&["fa", "fb"], LinkConditions::wan(5), &[], 41);
    let mut a = cluster.conn("fa");
    let mut b = cluster.conn("fb");

    // LOAD in A, FCALL in B.
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("one", "f1", "v1")]),
        bulk("one")
    );
    assert_eq!(
        until(&mut b, &["FCALL", "f1", "0"], &bulk("v1"), CONVERGE),
        bulk("v1")
    );
    // Not a key: neither region lists it.
    assert_eq!(b.cmd(&["DBSIZE"]), Frame::Integer(0));
    // FLUSHALL keeps functions, as in Redis.
    assert_eq!(b.cmd(&["FLUSHALL"]), Frame::Simple("OK".into()));
    assert_eq!(b.cmd(&["FCALL", "f1", "0"]), bulk("v1"));

    // LOAD REPLACE in B reaches A; DELETE in B removes it in A.
    assert_eq!(
        b.cmd(&["FUNCTION", "LOAD", "REPLACE", &lib("one", "f1", "v2")]),
        bulk("one")
    );
    assert_eq!(
        until(&mut a, &["FCALL", "f1", "0"], &bulk("v2"), CONVERGE),
        bulk("v2")
    );
    assert_eq!(
        b.cmd(&["FUNCTION", "DELETE", "one"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        until(&mut a, &["FCALL", "f1", "0"], &not_found(), CONVERGE),
        not_found()
    );

    // A library loaded while partitioned reaches the other region after
    // the heal; a FLUSH on the other side during the partition removes
    // only the library it saw.
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("seen", "fs", "s")]),
        bulk("seen")
    );
    assert_eq!(
        until(&mut b, &["FCALL", "fs", "0"], &bulk("s"), CONVERGE),
        bulk("s")
    );
    cluster.mesh.partition("fa").unwrap();
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("cut", "fc", "c")]),
        bulk("cut")
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(b.cmd(&["FUNCTION", "FLUSH"]), Frame::Simple("OK".into()));
    // Concurrent loads of one library name, B's later.
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("same", "fx", "from-a")]),
        bulk("same")
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        b.cmd(&["FUNCTION", "LOAD", &lib("same", "fx", "from-b")]),
        bulk("same")
    );
    // Two libraries under different names registering one function: one
    // server would refuse the second, two cut-off regions cannot.
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("aclash", "dup", "from-aclash")]),
        bulk("aclash")
    );
    assert_eq!(
        b.cmd(&["FUNCTION", "LOAD", &lib("bclash", "dup", "from-bclash")]),
        bulk("bclash")
    );
    assert_eq!(b.cmd(&["FCALL", "fc", "0"]), not_found(), "partitioned");
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    for c in [&mut a, &mut b] {
        assert_eq!(
            until(c, &["FCALL", "fc", "0"], &bulk("c"), CONVERGE),
            bulk("c")
        );
        assert_eq!(
            c.cmd(&["FCALL", "fs", "0"]),
            not_found(),
            "the flush saw it"
        );
        assert_eq!(
            c.cmd(&["FCALL", "fx", "0"]),
            bulk("from-b"),
            "the later load wins"
        );
    }
    assert_eq!(listing(&mut a), listing(&mut b));
    // The clash: every region loads the first library by name and lists
    // the other with why it is not loaded.
    for c in [&mut a, &mut b] {
        assert_eq!(c.cmd(&["FCALL", "dup", "0"]), bulk("from-aclash"));
        let listed = format!(
            "{:?}",
            c.cmd(&["FUNCTION", "LIST", "LIBRARYNAME", "bclash"])
        );
        assert!(listed.contains("load_error"), "{listed}");
    }
    assert_eq!(
        a.cmd(&["FUNCTION", "DELETE", "aclash"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        until(
            &mut b,
            &["FCALL", "dup", "0"],
            &bulk("from-bclash"),
            CONVERGE
        ),
        bulk("from-bclash"),
        "once the clash is gone the other library loads"
    );
    assert_eq!(a.cmd(&["FCALL", "dup", "0"]), bulk("from-bclash"));

    // A restart keeps the libraries.
    cluster.restart("fb");
    let mut b = cluster.conn("fb");
    assert_eq!(b.cmd(&["FCALL", "fc", "0"]), bulk("c"));
    assert_eq!(b.cmd(&["FCALL", "fx", "0"]), bulk("from-b"));
    assert_eq!(listing(&mut a), listing(&mut b));
}

/// A region cut off for longer than its peer retains its log gets the
/// libraries by anti-entropy, in both directions.
#[test]
fn a_region_past_the_backlog_gets_libraries_by_anti_entropy() {
    let cluster = Cluster::start(
        &["ga", "gb"],
        LinkConditions::wan(5),
        &[
            "--repl-backlog-ops",
            "20",
            "--snapshot-after-ops",
            "50",
            "--log-segment-max-bytes",
            "4096",
        ],
        43,
    );
    let mut a = cluster.conn("ga");
    let mut b = cluster.conn("gb");
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("early", "fe", "e")]),
        bulk("early")
    );
    cluster.converge(CONVERGE);
    cluster.mesh.partition("gb").unwrap();
    assert_eq!(
        a.cmd(&["FUNCTION", "LOAD", &lib("late", "fl", "l")]),
        bulk("late")
    );
    assert_eq!(
        a.cmd(&["FUNCTION", "DELETE", "early"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        b.cmd(&["FUNCTION", "LOAD", &lib("bside", "fb", "b")]),
        bulk("bside")
    );
    // Far more records than the 20 either keeps for the other.
    for r in [&mut a, &mut b] {
        for i in 0..200 {
            r.cmd(&["SET", &format!("k{i}"), "v"]);
        }
        assert_eq!(r.cmd(&["SAVE"]), Frame::Simple("OK".into()));
    }
    cluster.mesh.heal_all();
    cluster.converge(Duration::from_secs(60));
    for c in [&mut a, &mut b] {
        assert_eq!(
            until(c, &["FCALL", "fl", "0"], &bulk("l"), CONVERGE),
            bulk("l")
        );
        assert_eq!(c.cmd(&["FCALL", "fb", "0"]), bulk("b"));
        assert_eq!(c.cmd(&["FCALL", "fe", "0"]), not_found());
    }
    assert_eq!(listing(&mut a), listing(&mut b));
    let sessions = ["ga", "gb"]
        .iter()
        .map(|n| {
            metric(
                cluster.regions[cluster.index(n)].http,
                "meridian_antientropy_sessions_total",
            )
        })
        .sum::<u64>();
    println!("{sessions} anti-entropy sessions");
    assert!(
        sessions >= 1,
        "anti-entropy did not run: the logs were not compacted"
    );
}
