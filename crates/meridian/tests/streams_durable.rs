//! Streams survive `kill -9` and restart, consumer groups included: from
//! the op log alone, and from a snapshot plus the log after it. The node
//! layout approximate trimming goes by is replayed with the log; loaded
//! from a snapshot, it is rebuilt from the entries held.

mod common;

use common::{Conn, Meridian};
use meridian_resp::Frame;

/// Everything a client can read of the streams but the node layout.
fn read_all(c: &mut Conn) -> Vec<Frame> {
    let without_layout = |f: Frame| match f {
        Frame::Array(kv) => Frame::Array(
            kv.chunks(2)
                .filter(|p| !matches!(&p[0], Frame::Bulk(k) if k.starts_with(b"radix-tree")))
                .flat_map(|p| p.to_vec())
                .collect(),
        ),
        other => other,
    };
    vec![
        c.cmd(&["XRANGE", "s", "-", "+"]),
        without_layout(c.cmd(&["XINFO", "STREAM", "s", "FULL", "COUNT", "0"])),
        without_layout(c.cmd(&["XINFO", "STREAM", "empty"])),
    ]
}

fn build(c: &mut Conn) {
    for i in 1..=250 {
        c.cmd(&["XADD", "s", &format!("{i}-0"), "n", &i.to_string()]);
    }
    assert_eq!(c.cmd(&["XDEL", "s", "7-0", "8-0"]), Frame::Integer(2));
    assert_eq!(c.cmd(&["XTRIM", "s", "MINID", "5"]), Frame::Integer(4));
    assert_eq!(c.cmd(&["XGROUP", "CREATE", "s", "g", "0"]), Frame::ok());
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "3",
        "STREAMS",
        "s",
        ">",
    ]);
    c.cmd(&["XCLAIM", "s", "g", "bob", "0", "6-0", "JUSTID"]);
    c.cmd(&["XACK", "s", "g", "5-0"]);
    c.cmd(&["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"]);
    c.cmd(&["XGROUP", "DESTROY", "empty", "g"]);
}

/// Reads the streams, `kill -9`s the region, restarts it on its data dir
/// and checks it reads them back the same.
fn restart_and_compare(mut m: Meridian, c: &mut Conn) -> (Meridian, Conn) {
    let want = read_all(c);
    let dir = m.dir.clone();
    m.kill9();
    let mut again = Meridian::start_in(&dir, &["--fsync", "always"]);
    again.adopt_dir(m);
    let mut c = again.conn();
    assert_eq!(read_all(&mut c), want);
    (again, c)
}

#[test]
fn streams_come_back_whole_after_kill_9_from_the_log() {
    let m = Meridian::start(&["--fsync", "always"]);
    let mut c = m.conn();
    build(&mut c);
    let before = c.cmd(&["XINFO", "STREAM", "s"]);
    let (_region, mut c) = restart_and_compare(m, &mut c);
    assert_eq!(c.cmd(&["XINFO", "STREAM", "s"]), before);
    // The nodes are those of the appends replayed: the first holds 94
    // live entries of its 100, so `~ 150` of 244 removes it whole.
    assert_eq!(
        c.cmd(&["XTRIM", "s", "MAXLEN", "~", "150"]),
        Frame::Integer(94)
    );
}

#[test]
fn streams_come_back_whole_after_kill_9_from_a_snapshot_and_the_log() {
    let m = Meridian::start(&["--fsync", "always"]);
    let mut c = m.conn();
    build(&mut c);
    assert_eq!(c.cmd(&["SAVE"]), Frame::ok());
    // Written after the snapshot: replayed from the log over it.
    c.cmd(&["XADD", "s", "300-0", "n", "300"]);
    c.cmd(&["XREADGROUP", "GROUP", "g", "carol", "STREAMS", "s", ">"]);
    restart_and_compare(m, &mut c);
}
