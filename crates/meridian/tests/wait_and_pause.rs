//! WAIT and WAITAOF count the other regions that hold a connection's last
//! write durably (two real regions through the fault proxy, then one cut
//! off); CLIENT PAUSE delays the commands it covers until UNPAUSE; MONITOR
//! sees other clients' commands and the ones a script calls.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::Meridian;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];

fn ints(f: &Frame) -> Vec<i64> {
    match f {
        Frame::Array(xs) => xs
            .iter()
            .map(|x| match x {
                Frame::Integer(n) => *n,
                other => panic!("not an integer: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn error(f: &Frame) -> &str {
    match f {
        Frame::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}

fn simple(f: Option<Frame>) -> String {
    match f {
        Some(Frame::Simple(s)) => s,
        other => panic!("not a status line: {other:?}"),
    }
}

#[test]
fn wait_counts_a_live_peer_and_times_out_on_a_cut_off_one() {
    let cluster = Cluster::start(&["wa", "wb"], LinkConditions::wan(5), &FAST, 7);
    let mut c = cluster.conn("wa");
    // No write yet: every live peer holds all of it.
    assert_eq!(c.cmd(&["WAIT", "1", "5000"]), Frame::Integer(1));

    c.cmd(&["SET", "k", "v1"]);
    let started = Instant::now();
    assert_eq!(c.cmd(&["WAIT", "1", "10000"]), Frame::Integer(1));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ints(&c.cmd(&["WAITAOF", "1", "1", "10000"])), [1, 1]);

    cluster.mesh.partition("wb").unwrap();
    c.cmd(&["SET", "k", "v2"]);
    let started = Instant::now();
    assert_eq!(c.cmd(&["WAIT", "1", "500"]), Frame::Integer(0));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(ints(&c.cmd(&["WAITAOF", "1", "1", "300"])), [1, 0]);
    // Asking for no region answers at once, whatever the timeout.
    assert_eq!(c.cmd(&["WAIT", "0", "0"]), Frame::Integer(0));

    // Once healed, a WAIT without timeout returns as soon as the peer
    // acknowledges the write made while it was cut off.
    cluster.mesh.heal_all();
    assert_eq!(c.cmd(&["WAIT", "1", "0"]), Frame::Integer(1));
}

#[test]
fn wait_and_waitaof_arguments_and_contexts_answer_as_redis() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    assert_eq!(c.cmd(&["WAIT", "0", "0"]), Frame::Integer(0));
    assert_eq!(
        error(&c.cmd(&["WAIT", "1", "-1"])),
        "ERR timeout is negative"
    );
    assert_eq!(
        error(&c.cmd(&["WAIT", "1", "soon"])),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        error(&c.cmd(&["WAIT", "x", "0"])),
        "ERR value is not an integer or out of range"
    );
    assert!(error(&c.cmd(&["WAIT", "1"])).contains("wrong number of arguments"));
    assert_eq!(
        error(&c.cmd(&["WAITAOF", "2", "0", "0"])),
        "ERR value is out of range, value must between 0 and 1"
    );
    assert_eq!(
        error(&c.cmd(&["WAITAOF", "0", "-1", "0"])),
        "ERR value is out of range, must be positive"
    );
    assert_eq!(
        error(&c.cmd(&["WAITAOF", "0", "0", "-5"])),
        "ERR timeout is negative"
    );

    // No peer: the timeout passes and nobody is counted.
    c.cmd(&["SET", "k", "v"]);
    let started = Instant::now();
    assert_eq!(c.cmd(&["WAIT", "1", "200"]), Frame::Integer(0));
    assert!(started.elapsed() >= Duration::from_millis(180));
    // The write reaches this region's disk: numlocal 1.
    assert_eq!(ints(&c.cmd(&["WAITAOF", "1", "0", "0"])), [1, 0]);

    // Inside MULTI it answers at once; scripts may not call it.
    c.cmd(&["MULTI"]);
    assert_eq!(c.cmd(&["WAIT", "1", "0"]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![Frame::Integer(0)]));
    let refused = c.cmd(&["EVAL", "return redis.call('wait', '0', '0')", "0"]);
    assert!(
        error(&refused).starts_with("ERR This Redis command is not allowed from script"),
        "{refused:?}"
    );
}

#[test]
fn client_pause_write_delays_a_set_but_not_a_get_until_unpause() {
    let m = Meridian::start(&[]);
    let mut admin = m.conn();
    let mut writer = m.conn();
    let mut reader = m.conn();
    reader.cmd(&["SET", "k", "old"]);

    assert_eq!(
        error(&admin.cmd(&["CLIENT", "PAUSE", "100", "SOME"])),
        "ERR CLIENT PAUSE mode must be WRITE or ALL"
    );
    assert_eq!(
        error(&admin.cmd(&["CLIENT", "PAUSE", "-1"])),
        "ERR timeout is negative"
    );
    assert_eq!(
        error(&admin.cmd(&["CLIENT", "PAUSE", "x", "WRITE"])),
        "ERR timeout is not an integer or out of range"
    );
    assert_eq!(
        admin.cmd(&["CLIENT", "NO-TOUCH", "on"]),
        Frame::Simple("OK".into())
    );

    assert_eq!(
        admin.cmd(&["CLIENT", "PAUSE", "60000", "WRITE"]),
        Frame::Simple("OK".into())
    );
    writer.send(&["SET", "k", "new"]);
    std::thread::sleep(Duration::from_millis(200));
    // Reads go on; the SET has not run.
    assert_eq!(reader.cmd(&["GET", "k"]), Frame::Bulk("old".into()));
    assert_eq!(
        admin.cmd(&["CLIENT", "UNPAUSE"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(writer.read(), Some(Frame::Simple("OK".into())));
    assert_eq!(reader.cmd(&["GET", "k"]), Frame::Bulk("new".into()));

    // ALL delays every command until the pause runs out by itself.
    admin.cmd(&["CLIENT", "PAUSE", "300", "ALL"]);
    let started = Instant::now();
    assert_eq!(reader.cmd(&["GET", "k"]), Frame::Bulk("new".into()));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn monitor_sees_other_clients_and_scripts_with_passwords_redacted() {
    let m = Meridian::start(&[]);
    let mut mon = m.conn();
    let mut c = m.conn();
    assert_eq!(mon.cmd(&["MONITOR"]), Frame::Simple("OK".into()));

    c.cmd(&["SET", "k", "v"]);
    let line = simple(mon.read());
    assert!(line.contains(" [0 127.0.0.1:"), "{line}");
    assert!(line.ends_with("] \"SET\" \"k\" \"v\""), "{line}");

    c.cmd(&[
        "EVAL",
        "return redis.call('set', KEYS[1], ARGV[1])",
        "1",
        "foo",
        "bar",
    ]);
    assert!(simple(mon.read()).contains("\"EVAL\""));
    let line = simple(mon.read());
    assert!(line.ends_with("[0 lua] \"set\" \"foo\" \"bar\""), "{line}");

    c.cmd(&["AUTH", "nobody", "secret"]);
    let line = simple(mon.read());
    assert!(
        line.ends_with("\"AUTH\" \"(redacted)\" \"(redacted)\""),
        "{line}"
    );

    // A monitor may not touch the keyspace; RESET ends monitoring.
    assert_eq!(
        error(&mon.cmd(&["GET", "k"])),
        "ERR Replica can't interact with the keyspace"
    );
    assert_eq!(mon.cmd(&["RESET"]), Frame::Simple("RESET".into()));
    c.cmd(&["SET", "k", "again"]);
    assert_eq!(mon.cmd(&["GET", "k"]), Frame::Bulk("again".into()));
}
