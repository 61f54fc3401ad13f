//! How requests become commands: both request forms, the Redis quirks a
//! client can observe, and incremental arrival. Quirks were checked against
//! redis-server 7.0.15.

use bytes::{Bytes, BytesMut};
use meridian_resp::{Limits, ProtocolError, RequestParser};

type Commands = Vec<Vec<Vec<u8>>>;

/// Feeds `input` in pieces of `piece` bytes, collecting every command, and
/// returns them with the final outcome (`Ok` if the parser wants more).
fn parse_in_pieces(
    input: &[u8],
    piece: usize,
    limits: &Limits,
) -> (Commands, Result<(), ProtocolError>) {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.next_command(&mut buf, limits) {
                Ok(Some(args)) => commands.push(args.iter().map(|a| a.to_vec()).collect()),
                Ok(None) => break,
                Err(error) => return (commands, Err(error)),
            }
        }
    }
    (commands, Ok(()))
}

fn parse(input: &[u8]) -> (Commands, Result<(), ProtocolError>) {
    let whole = parse_in_pieces(input, input.len(), &Limits::default());
    let bytewise = parse_in_pieces(input, 1, &Limits::default());
    assert_eq!(
        whole, bytewise,
        "outcome depends on how {input:?} was split"
    );
    whole
}

fn commands(list: &[&[&[u8]]]) -> Commands {
    list.iter()
        .map(|args| args.iter().map(|a| a.to_vec()).collect())
        .collect()
}

#[test]
fn multibulk_and_inline_commands_can_be_pipelined() {
    assert_eq!(
        parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nPING\r\nSET a b\n"),
        (
            commands(&[
                &[b"GET", b"k"],
                &[b"PING"],
                &[b"PING"],
                &[b"SET", b"a", b"b"]
            ]),
            Ok(())
        )
    );
}

#[test]
fn bulk_payload_is_binary_safe() {
    assert_eq!(
        parse(b"*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\0\rb\r\n"),
        (commands(&[&[b"ECHO", b"a\r\n\0\rb"]]), Ok(()))
    );
    assert_eq!(parse(b"*1\r\n$0\r\n\r\n"), (commands(&[&[b""]]), Ok(())));
}

#[test]
fn empty_multibulk_and_blank_lines_are_skipped() {
    assert_eq!(
        parse(b"*0\r\n*-1\r\n*-7\r\n\r\n\n   \r\n\t\x0b\x0c\nPING\r\n"),
        (commands(&[&[b"PING"]]), Ok(()))
    );
}

#[test]
fn quoted_empty_inline_arguments_are_kept() {
    assert_eq!(
        parse(b"\"\" ''\r\nECHO \"\" x\r\n"),
        (commands(&[&[b"", b""], &[b"ECHO", b"", b"x"]]), Ok(()))
    );
}

#[test]
fn byte_after_header_cr_and_after_payload_is_not_checked() {
    assert_eq!(
        parse(b"*1\rX$4\r\nPINGxx*1\rz$4\rzPING\r\n"),
        (commands(&[&[b"PING"], &[b"PING"]]), Ok(()))
    );
}

#[test]
fn inline_line_may_end_in_bare_lf() {
    assert_eq!(
        parse(b"PING\nECHO \"a b\"\r\n"),
        (commands(&[&[b"PING"], &[b"ECHO", b"a b"]]), Ok(()))
    );
}

#[test]
fn inline_quoting_follows_sdssplitargs() {
    assert_eq!(
        parse(b"SET \"k\\x41\\n\" 'it\\'s'\r\nECHO \"\" x\r\nECHO\ta\x0bb\r\n"),
        (
            commands(&[
                &[b"SET", b"kA\n", b"it's"],
                &[b"ECHO", b"", b"x"],
                &[b"ECHO", b"a\x0bb"],
            ]),
            Ok(())
        )
    );
}

/// Inside single quotes only `\'` escapes, so a backslash before the closing
/// quote escapes it and the line never closes (redis-server answers the same).
#[test]
fn single_quoted_trailing_backslash_escapes_the_closing_quote() {
    assert_eq!(
        parse(b"ECHO 'a\\'\r\n"),
        (Vec::new(), Err(ProtocolError::UnbalancedQuotes))
    );
    assert_eq!(
        parse(b"ECHO 'a\\' x'\r\n"),
        (commands(&[&[b"ECHO", b"a' x"]]), Ok(()))
    );
}

#[test]
fn nul_before_line_end_waits_until_the_limit() {
    let limits = Limits {
        max_inline_bytes: 16,
        ..Limits::default()
    };
    for (input, error) in [
        (&b"*1\0\r\n"[..], ProtocolError::MultibulkCountTooBig),
        (b"ECHO a\0b\r\n", ProtocolError::InlineTooBig),
        (b"*1\r\n$1\0\r\n", ProtocolError::BulkCountTooBig),
        (b"*1\r\n\x005\r\n", ProtocolError::BulkCountTooBig),
    ] {
        assert_eq!(
            parse_in_pieces(input, 1, &limits),
            (vec![], Ok(())),
            "{input:?}"
        );
        let mut padded = input.to_vec();
        padded.extend_from_slice(&[b'\n'; 20]);
        assert_eq!(
            parse_in_pieces(&padded, 3, &limits),
            (vec![], Err(error)),
            "{input:?}"
        );
    }
}

#[test]
fn partial_command_leaves_buffer_untouched_until_complete() {
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r"[..]);
    assert_eq!(parser.next_command(&mut buf, &limits), Ok(None));
    assert_eq!(buf.len(), 16);
    buf.extend_from_slice(b"\nk\r\n*1");
    assert_eq!(
        parser.next_command(&mut buf, &limits),
        Ok(Some(vec![
            Bytes::from_static(b"GET"),
            Bytes::from_static(b"k")
        ]))
    );
    assert_eq!(&buf[..], b"*1");
    assert_eq!(parser.next_command(&mut buf, &limits), Ok(None));
}

#[test]
fn unauthenticated_limits_can_be_lifted_between_commands() {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*11\r\n"[..]);
    let before = Limits {
        unauthenticated: true,
        ..Limits::default()
    };
    assert!(matches!(
        parser.next_command(&mut buf, &before),
        Ok(Some(_))
    ));
    assert_eq!(parser.next_command(&mut buf, &Limits::default()), Ok(None));
}

/// A 512 MiB argument arriving in 64 KiB reads must cost linear time: the
/// parser may not rescan what it has already seen. Quadratic rescanning
/// would take hours here.
#[test]
fn max_size_bulk_arriving_in_64_kib_reads_is_parsed_in_linear_time() {
    const PAYLOAD_BYTES: usize = 512 * 1024 * 1024;
    const READ_BYTES: usize = 64 * 1024;
    let header = format!("*2\r\n$3\r\nSET\r\n${PAYLOAD_BYTES}\r\n");
    let mut buf = BytesMut::with_capacity(header.len() + PAYLOAD_BYTES + 2);
    buf.extend_from_slice(header.as_bytes());
    // Line ends and NULs in the payload must not confuse the parser.
    let mut read = [b'v'; READ_BYTES];
    read[..4].copy_from_slice(b"\r\n\0*");
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut delivered = 0;
    while delivered < PAYLOAD_BYTES {
        assert_eq!(parser.next_command(&mut buf, &limits), Ok(None));
        buf.extend_from_slice(&read);
        delivered += READ_BYTES;
    }
    assert_eq!(parser.next_command(&mut buf, &limits), Ok(None));
    buf.extend_from_slice(b"\r\n");
    let command = parser
        .next_command(&mut buf, &limits)
        .expect("valid request")
        .expect("complete request");
    assert_eq!(command.len(), 2);
    assert_eq!(command[1].len(), PAYLOAD_BYTES);
    assert_eq!(&command[1][..4], b"\r\n\0*");
    assert!(buf.is_empty());
}

/// A header line trickling in one byte at a time is searched once overall,
/// not once per byte.
#[test]
fn long_header_line_arriving_bytewise_is_not_rescanned() {
    let mut input = b"*1\r\n$".to_vec();
    input.extend(std::iter::repeat_n(b'0', 60_000));
    input.extend_from_slice(b"3\r\nfoo\r\n");
    // string2ll refuses leading zeros, so this ends in an error, but only
    // after the whole line has been seen.
    assert_eq!(
        parse_in_pieces(&input, 1, &Limits::default()),
        (vec![], Err(ProtocolError::InvalidBulkLength))
    );
}
