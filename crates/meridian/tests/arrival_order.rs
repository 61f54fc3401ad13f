//! Commands from different connections run in the order their bytes reach
//! the region, as they do on redis-server's one event loop. Redis's own
//! suite relies on it without saying so: a test sends a blocking read on one
//! connection and, without waiting, a write on another, and expects the read
//! to have blocked first.

mod common;

use common::Meridian;
use meridian_resp::Frame;

/// How many times the two connections race. Before the runtime stopped
/// running the most recently woken connection first, about 1 in 70 of
/// these ran the second connection's command first.
const ROUNDS: usize = 2_000;

#[test]
fn a_command_sent_first_on_one_connection_runs_before_one_sent_next_on_another() {
    let m = Meridian::start(&[]);
    let mut first = m.conn();
    let mut second = m.conn();
    let mut inverted = 0;
    for round in 0..ROUNDS {
        let value = round.to_string();
        first.send(&["SET", "k", "first"]);
        assert_eq!(second.cmd(&["SET", "k", value.as_str()]), Frame::ok());
        assert_eq!(first.read(), Some(Frame::ok()));
        match second.cmd(&["GET", "k"]) {
            Frame::Bulk(v) if v == value.as_bytes() => {}
            Frame::Bulk(v) if v.as_ref() == b"first" => inverted += 1,
            other => panic!("GET k answered {other:?}"),
        }
    }
    assert_eq!(
        inverted, 0,
        "{inverted} of {ROUNDS} rounds ran the later connection's SET first"
    );
}
