//! Every protocol error, triggered the way a client would trigger it, and the
//! exact bytes the server must send back. The expected bytes and the inputs
//! that produce them were checked against redis-server 7.0.15.

use bytes::BytesMut;
use meridian_resp::{Limits, ProtocolError, RequestParser};

/// Parses `input` in one piece and returns the commands before the error and
/// the error reply's bytes, or `None` if no error occurred.
fn reply_to(input: &[u8], limits: &Limits) -> (Vec<Vec<Vec<u8>>>, Option<Vec<u8>>) {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        match parser.next_command(&mut buf, limits) {
            Ok(Some(args)) => commands.push(args.iter().map(|a| a.to_vec()).collect()),
            Ok(None) => return (commands, None),
            Err(error) => {
                let mut out = BytesMut::new();
                error.encode_reply(&mut out);
                return (commands, Some(out.to_vec()));
            }
        }
    }
}

fn error_reply(input: &[u8], limits: &Limits) -> Vec<u8> {
    match reply_to(input, limits) {
        (_, Some(reply)) => reply,
        (commands, None) => panic!("no error for {input:?}; parsed {commands:?}"),
    }
}

fn unauthenticated() -> Limits {
    Limits {
        unauthenticated: true,
        ..Limits::default()
    }
}

#[test]
fn non_integer_multibulk_count_is_invalid_multibulk_length() {
    for input in [
        &b"*x\r\n"[..],
        b"*\r\n",
        b"*+1\r\n",
        b"*01\r\n",
        b"*1 \r\n",
        b"*-0\r\n",
    ] {
        assert_eq!(
            error_reply(input, &Limits::default()),
            b"-ERR Protocol error: invalid multibulk length\r\n",
            "{input:?}"
        );
    }
}

#[test]
fn multibulk_count_over_limit_is_invalid_multibulk_length() {
    let limits = Limits::default();
    assert_eq!(
        error_reply(b"*1048577\r\n", &limits),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert_eq!(reply_to(b"*1048576\r\n", &limits), (vec![], None));
}

#[test]
fn unauthenticated_client_may_send_at_most_ten_arguments() {
    assert_eq!(
        error_reply(b"*11\r\n", &unauthenticated()),
        b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert_eq!(reply_to(b"*10\r\n", &unauthenticated()), (vec![], None));
    assert_eq!(reply_to(b"*11\r\n", &Limits::default()), (vec![], None));
}

#[test]
fn bad_bulk_length_is_invalid_bulk_length() {
    for input in [
        &b"*1\r\n$-1\r\n"[..],
        b"*1\r\n$x\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$+3\r\n",
        b"*1\r\n$536870913\r\n",
        b"*1\r\n$99999999999999999999\r\n",
    ] {
        assert_eq!(
            error_reply(input, &Limits::default()),
            b"-ERR Protocol error: invalid bulk length\r\n",
            "{input:?}"
        );
    }
    assert_eq!(
        reply_to(b"*1\r\n$536870912\r\n", &Limits::default()),
        (vec![], None)
    );
}

#[test]
fn max_bulk_bytes_is_configurable() {
    let limits = Limits {
        max_bulk_bytes: 3,
        ..Limits::default()
    };
    assert_eq!(
        error_reply(b"*1\r\n$4\r\nPING\r\n", &limits),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(
        reply_to(b"*1\r\n$3\r\nfoo\r\n", &limits),
        (vec![vec![b"foo".to_vec()]], None)
    );
}

#[test]
fn unauthenticated_client_may_send_at_most_16_kib_per_argument() {
    assert_eq!(
        error_reply(b"*1\r\n$16385\r\n", &unauthenticated()),
        b"-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert_eq!(
        reply_to(b"*1\r\n$16384\r\n", &unauthenticated()),
        (vec![], None)
    );
}

#[test]
fn element_not_starting_with_dollar_names_the_byte() {
    assert_eq!(
        error_reply(b"*1\r\n:5\r\n", &Limits::default()),
        b"-ERR Protocol error: expected '$', got ':'\r\n"
    );
    assert_eq!(
        error_reply(b"*2\r\n$1\r\na\r\n\xff\r\n", &Limits::default()),
        b"-ERR Protocol error: expected '$', got '\xff'\r\n"
    );
    assert_eq!(
        error_reply(b"*1\r\n\r\n", &Limits::default()),
        b"-ERR Protocol error: expected '$', got ' '\r\n"
    );
    assert_eq!(
        error_reply(b"*1\r\n\n\r\n", &Limits::default()),
        b"-ERR Protocol error: expected '$', got ' '\r\n"
    );
}

#[test]
fn unbalanced_quotes_in_inline_request() {
    for input in [&b"ECHO \"abc\r\n"[..], b"ECHO \"a\"b\r\n", b"ECHO 'abc\n"] {
        assert_eq!(
            error_reply(input, &Limits::default()),
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
            "{input:?}"
        );
    }
}

#[test]
fn inline_line_longer_than_64_kib_is_too_big() {
    let mut input = vec![b'A'; 64 * 1024];
    assert_eq!(reply_to(&input, &Limits::default()), (vec![], None));
    input.push(b'A');
    assert_eq!(
        error_reply(&input, &Limits::default()),
        b"-ERR Protocol error: too big inline request\r\n"
    );
    // Judged by the line, however it arrived.
    input.extend_from_slice(b"\r\n");
    assert_eq!(
        error_reply(&input, &Limits::default()),
        b"-ERR Protocol error: too big inline request\r\n"
    );
}

#[test]
fn multibulk_count_line_longer_than_64_kib_is_too_big() {
    let mut input = vec![b'*'];
    input.extend(std::iter::repeat_n(b'1', 64 * 1024 - 1));
    assert_eq!(reply_to(&input, &Limits::default()), (vec![], None));
    input.push(b'1');
    assert_eq!(
        error_reply(&input, &Limits::default()),
        b"-ERR Protocol error: too big mbulk count string\r\n"
    );
}

#[test]
fn bulk_length_line_longer_than_64_kib_is_too_big() {
    let mut input = b"*1\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'X', 70_000));
    assert_eq!(
        error_reply(&input, &Limits::default()),
        b"-ERR Protocol error: too big bulk count string\r\n"
    );
}

#[test]
fn display_is_the_text_after_err() {
    let cases = [
        (
            ProtocolError::InvalidMultibulkLength,
            "Protocol error: invalid multibulk length",
        ),
        (
            ProtocolError::InvalidBulkLength,
            "Protocol error: invalid bulk length",
        ),
        (
            ProtocolError::UnauthenticatedMultibulkLength,
            "Protocol error: unauthenticated multibulk length",
        ),
        (
            ProtocolError::UnauthenticatedBulkLength,
            "Protocol error: unauthenticated bulk length",
        ),
        (
            ProtocolError::ExpectedDollar(b'X'),
            "Protocol error: expected '$', got 'X'",
        ),
        (
            ProtocolError::UnbalancedQuotes,
            "Protocol error: unbalanced quotes in request",
        ),
        (
            ProtocolError::InlineTooBig,
            "Protocol error: too big inline request",
        ),
        (
            ProtocolError::MultibulkCountTooBig,
            "Protocol error: too big mbulk count string",
        ),
        (
            ProtocolError::BulkCountTooBig,
            "Protocol error: too big bulk count string",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
        let mut out = BytesMut::new();
        error.encode_reply(&mut out);
        assert_eq!(&out[..], format!("-ERR {text}\r\n").as_bytes());
    }
}

#[test]
fn parser_keeps_failing_after_an_error() {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::from(&b"*x\r\n*1\r\n$4\r\nPING\r\n"[..]);
    let limits = Limits::default();
    for _ in 0..2 {
        assert_eq!(
            parser.next_command(&mut buf, &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }
}

#[test]
fn commands_before_an_error_are_still_returned() {
    let (commands, reply) = reply_to(b"PING\r\n*1\r\n$4\r\nECHO\r\n*x\r\n", &Limits::default());
    assert_eq!(
        commands,
        vec![vec![b"PING".to_vec()], vec![b"ECHO".to_vec()]]
    );
    assert_eq!(
        reply.as_deref(),
        Some(&b"-ERR Protocol error: invalid multibulk length\r\n"[..])
    );
}
