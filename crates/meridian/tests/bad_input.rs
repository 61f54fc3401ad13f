//! Malformed input gets Redis's protocol error and a closed connection,
//! with no state change, while every other client keeps being served.

mod common;

use common::Meridian;
use meridian_resp::Frame;

fn expect_protocol_error(m: &Meridian, raw: &[u8], text: &str) {
    let mut c = m.conn();
    c.send_raw(raw);
    assert_eq!(
        c.read(),
        Some(Frame::Error(format!("ERR Protocol error: {text}"))),
        "for {raw:?}"
    );
    assert_eq!(c.read(), None, "connection must be closed after {raw:?}");
}

#[test]
fn malformed_requests_close_only_their_connection() {
    let m = Meridian::start(&[]);
    let mut bystander = m.conn();
    assert_eq!(bystander.cmd(&["SET", "k", "before"]), Frame::ok());

    expect_protocol_error(&m, b"*abc\r\n", "invalid multibulk length");
    expect_protocol_error(&m, b"*1\r\n$x\r\n", "invalid bulk length");
    expect_protocol_error(&m, b"*1\r\n+GET\r\n", "expected '$', got '+'");
    expect_protocol_error(
        &m,
        b"SET k \"unbalanced\r\n",
        "unbalanced quotes in request",
    );
    expect_protocol_error(&m, b"*1\r\n$-5\r\n", "invalid bulk length");
    let mut big_inline = vec![b'a'; 70 * 1024];
    big_inline.extend_from_slice(b"\r\n");
    expect_protocol_error(&m, &big_inline[..64 * 1024 + 10], "too big inline request");
    expect_protocol_error(&m, b"*1\r\n$536870913\r\n", "invalid bulk length");

    // A command cut short by the error is not applied.
    let mut c = m.conn();
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nafter\r\n*x\r\n");
    assert_eq!(c.read(), Some(Frame::ok()));
    assert!(matches!(c.read(), Some(Frame::Error(_))));
    assert_eq!(c.read(), None);
    let mut c = m.conn();
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\nnever");
    drop(c);

    assert_eq!(bystander.cmd(&["GET", "k"]), Frame::bulk("after"));
    assert_eq!(bystander.cmd(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn inline_commands_work() {
    let m = Meridian::start(&[]);
    let mut c = m.conn();
    c.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\r\n\r\n");
    assert_eq!(c.read(), Some(Frame::ok()));
    assert_eq!(c.read(), Some(Frame::bulk("hello world")));
}
