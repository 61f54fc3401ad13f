//! Bit writes that share one op: a pipelined batch (or MULTI) of SETBITs
//! past the point where a key's patches fold into a whole value, and a
//! SETBIT after a SET of the same key in one batch. Every write of one op
//! carries the op's tag, and a bit patch shows over the base only when it
//! is newer, so these once lost bits in a single region.

mod common;

use common::Meridian;
use meridian_resp::Frame;

/// More distinct bits than the patches a key holds before they fold.
const BITS: u64 = 3_000;

#[test]
fn pipelined_setbits_past_the_fold_bound_all_stay_set() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    // Offsets spread over 100,000 bits, all distinct, in one pipelined batch.
    let offsets: Vec<String> = (0..BITS).map(|i| (i * 33 % 100_000).to_string()).collect();
    for o in &offsets {
        c.send(&["SETBIT", "b", o.as_str(), "1"]);
    }
    for _ in &offsets {
        assert_eq!(c.read(), Some(Frame::Integer(0)));
    }
    assert_eq!(c.cmd(&["BITCOUNT", "b"]), Frame::Integer(BITS as i64));
    for o in offsets.iter().step_by(97) {
        assert_eq!(
            c.cmd(&["GETBIT", "b", o.as_str()]),
            Frame::Integer(1),
            "bit {o}"
        );
    }
}

#[test]
fn a_setbit_after_a_set_in_one_batch_shows() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.send(&["SET", "k", "\0"]);
    c.send(&["SETBIT", "k", "1", "1"]);
    c.send(&["GET", "k"]);
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(Frame::Integer(0)));
    assert_eq!(c.read(), Some(Frame::Bulk("@".into())));
    assert_eq!(c.cmd(&["MULTI"]), Frame::ok());
    c.cmd(&["SET", "t", "\0"]);
    c.cmd(&["SETBIT", "t", "7", "1"]);
    c.cmd(&["BITCOUNT", "t"]);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![Frame::ok(), Frame::Integer(0), Frame::Integer(1)])
    );
    assert_eq!(c.cmd(&["GET", "t"]), Frame::Bulk("\x01".into()));
    // A BITFIELD SET and a WRAP increment after a SET, in one batch.
    c.send(&["SET", "f", "\0\0"]);
    c.send(&["BITFIELD", "f", "SET", "u8", "8", "7"]);
    c.send(&["BITFIELD", "f", "INCRBY", "u8", "0", "5"]);
    c.send(&["GET", "f"]);
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(Frame::Array(vec![Frame::Integer(0)])));
    assert_eq!(c.read(), Some(Frame::Array(vec![Frame::Integer(5)])));
    assert_eq!(c.read(), Some(Frame::Bulk("\x05\x07".into())));
}
