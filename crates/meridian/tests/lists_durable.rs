//! Lists survive `kill -9` and restart: from the op log alone, and from a
//! snapshot (packed chunks included) plus the log after it.

mod common;

use common::{Conn, Meridian};
use meridian_resp::Frame;

fn lrange(c: &mut Conn, key: &str) -> Frame {
    c.cmd(&["LRANGE", key, "0", "-1"])
}

/// Pushes to both ends, inserts, overwrites, pops and trims: enough
/// elements that the list has packed interior chunks.
fn build(c: &mut Conn) {
    for i in 0..600 {
        let v = format!("r{i}");
        c.cmd(&["RPUSH", "q", &v]);
    }
    let front: Vec<String> = (0..300).map(|i| format!("l{i}")).collect();
    let mut args = vec!["LPUSH".to_string(), "q".to_string()];
    args.extend(front);
    c.cmd(&args);
    assert_eq!(
        c.cmd(&["LINSERT", "q", "BEFORE", "r300", "middle"]),
        Frame::Integer(901)
    );
    assert_eq!(c.cmd(&["LSET", "q", "450", "overwritten"]), Frame::ok());
    c.cmd(&["LPOP", "q", "7"]);
    c.cmd(&["RPOP", "q", "5"]);
    assert_eq!(c.cmd(&["LREM", "q", "0", "r10"]), Frame::Integer(1));
    assert_eq!(c.cmd(&["LTRIM", "q", "3", "-4"]), Frame::ok());
    c.cmd(&["RPUSH", "small", "a", "b", "c"]);
}

/// Reads both lists, `kill -9`s the region, restarts it on its data dir
/// and checks it reads them back the same; returns it, with a connection.
fn restart_and_compare(mut m: Meridian, c: &mut Conn) -> (Meridian, Conn) {
    let want = (lrange(c, "q"), lrange(c, "small"));
    let dir = m.dir.clone();
    m.kill9();
    let mut again = Meridian::start_in(&dir, &["--fsync", "always"]);
    again.adopt_dir(m);
    let mut c = again.conn();
    assert_eq!((lrange(&mut c, "q"), lrange(&mut c, "small")), want);
    (again, c)
}

#[test]
fn lists_come_back_whole_after_kill_9_from_the_log() {
    let m = Meridian::start(&["--fsync", "always"]);
    let mut c = m.conn();
    build(&mut c);
    let (_region, mut c) = restart_and_compare(m, &mut c);
    assert_eq!(c.cmd(&["LLEN", "q"]), Frame::Integer(882));
}

#[test]
fn lists_come_back_whole_after_kill_9_from_a_snapshot_and_the_log() {
    let m = Meridian::start(&["--fsync", "always"]);
    let mut c = m.conn();
    build(&mut c);
    assert_eq!(c.cmd(&["SAVE"]), Frame::ok());
    // Written after the snapshot: replayed from the log over it.
    c.cmd(&["RPUSH", "q", "after-save"]);
    c.cmd(&["LPOP", "small"]);
    restart_and_compare(m, &mut c);
}
