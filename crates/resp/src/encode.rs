//! Writing frames and commands as RESP bytes.
//!
//! RESP2 clients see RESP3 shapes downgraded exactly as Redis 7.0 downgrades
//! them, so a client cannot tell this server from Redis by its replies.

use bytes::{BufMut, BytesMut};

use crate::frame::Frame;
use crate::number::{double_text, format_long_double, int_text};

/// The protocol version a connection speaks, chosen by `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default for a new connection.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Appends `frame` to `out` in the given protocol.
///
/// RESP2 downgrades: `Null` is `$-1`, `NullArray` is `*-1`, a map is a flat
/// array of keys and values, a set or push is an array, a double is a bulk
/// string of its `%.17g` text (a human double of its `%.17Lf` text), a
/// boolean is the integer 1 or 0, a big number is a bulk string, and a
/// verbatim string is a bulk string of its text.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    match frame {
        Frame::Simple(text) => write_line(b'+', text.as_bytes(), out),
        Frame::Error(text) => write_line(b'-', text.as_bytes(), out),
        Frame::Integer(value) => write_header(b':', *value, out),
        Frame::Bulk(data) => write_bulk(data, out),
        Frame::Null => out.put_slice(match proto {
            Protocol::Resp2 => b"$-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        }),
        Frame::NullArray => out.put_slice(match proto {
            Protocol::Resp2 => b"*-1\r\n",
            Protocol::Resp3 => b"_\r\n",
        }),
        Frame::Array(items) => write_aggregate(b'*', items, proto, out),
        Frame::Set(items) => {
            let prefix = match proto {
                Protocol::Resp2 => b'*',
                Protocol::Resp3 => b'~',
            };
            write_aggregate(prefix, items, proto, out);
        }
        Frame::Push(items) => {
            let prefix = match proto {
                Protocol::Resp2 => b'*',
                Protocol::Resp3 => b'>',
            };
            write_aggregate(prefix, items, proto, out);
        }
        Frame::Map(pairs) => {
            match proto {
                Protocol::Resp2 => write_len(b'*', pairs.len().saturating_mul(2), out),
                Protocol::Resp3 => write_len(b'%', pairs.len(), out),
            }
            for (key, value) in pairs {
                encode(key, proto, out);
                encode(value, proto, out);
            }
        }
        Frame::Double(value) => {
            let text = double_text(*value);
            match proto {
                Protocol::Resp2 => write_bulk(text.as_bytes(), out),
                Protocol::Resp3 => {
                    out.reserve(text.as_bytes().len() + 3);
                    out.put_u8(b',');
                    out.put_slice(text.as_bytes());
                    out.put_slice(b"\r\n");
                }
            }
        }
        Frame::HumanDouble(value) => {
            let text = format_long_double(*value);
            match proto {
                Protocol::Resp2 => write_bulk(text.as_bytes(), out),
                Protocol::Resp3 => write_line(b',', text.as_bytes(), out),
            }
        }
        Frame::Boolean(value) => out.put_slice(match (proto, value) {
            (Protocol::Resp2, true) => b":1\r\n",
            (Protocol::Resp2, false) => b":0\r\n",
            (Protocol::Resp3, true) => b"#t\r\n",
            (Protocol::Resp3, false) => b"#f\r\n",
        }),
        Frame::BigNumber(digits) => match proto {
            Protocol::Resp2 => write_bulk(digits.as_bytes(), out),
            Protocol::Resp3 => write_line(b'(', digits.as_bytes(), out),
        },
        Frame::Verbatim { format, text } => match proto {
            Protocol::Resp2 => write_bulk(text, out),
            Protocol::Resp3 => {
                write_len(b'=', text.len() + 4, out);
                out.reserve(text.len() + 6);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(b"\r\n");
            }
        },
    }
}

/// Appends a command as a multibulk request (`*N` then one `$len` bulk per
/// argument), the form clients and replication links send.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    write_len(b'*', args.len(), out);
    for arg in args {
        write_bulk(arg.as_ref(), out);
    }
}

fn write_aggregate(prefix: u8, items: &[Frame], proto: Protocol, out: &mut BytesMut) {
    write_len(prefix, items.len(), out);
    for item in items {
        encode(item, proto, out);
    }
}

fn write_bulk(data: &[u8], out: &mut BytesMut) {
    write_len(b'$', data.len(), out);
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn write_len(prefix: u8, len: usize, out: &mut BytesMut) {
    // No reply approaches i64::MAX elements or bytes.
    write_header(prefix, i64::try_from(len).unwrap_or(i64::MAX), out);
}

fn write_header(prefix: u8, value: i64, out: &mut BytesMut) {
    let text = int_text(value);
    out.reserve(text.as_bytes().len() + 3);
    out.put_u8(prefix);
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

/// A one-line reply (`+`, `-`, `(`). A CR or LF inside would end the line
/// early and desynchronise the client, so each is written as a space, as
/// Redis does for formatted errors.
fn write_line(prefix: u8, text: &[u8], out: &mut BytesMut) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    let mut rest = text;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', rest) {
        out.put_slice(&rest[..at]);
        out.put_u8(b' ');
        rest = &rest[at + 1..];
    }
    out.put_slice(rest);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bytes_of(frame: &Frame, proto: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(frame, proto, &mut out);
        out.to_vec()
    }

    /// Each case: the frame, its RESP2 bytes, its RESP3 bytes.
    fn cases() -> Vec<(Frame, &'static [u8], &'static [u8])> {
        vec![
            (Frame::ok(), b"+OK\r\n", b"+OK\r\n"),
            (
                Frame::error("ERR syntax error"),
                b"-ERR syntax error\r\n",
                b"-ERR syntax error\r\n",
            ),
            (Frame::Integer(-42), b":-42\r\n", b":-42\r\n"),
            (
                Frame::Integer(i64::MIN),
                b":-9223372036854775808\r\n",
                b":-9223372036854775808\r\n",
            ),
            (Frame::bulk("foo"), b"$3\r\nfoo\r\n", b"$3\r\nfoo\r\n"),
            (Frame::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
            (Frame::Null, b"$-1\r\n", b"_\r\n"),
            (Frame::NullArray, b"*-1\r\n", b"_\r\n"),
            (Frame::Array(vec![]), b"*0\r\n", b"*0\r\n"),
            (
                Frame::bulk_array(["a", "bc"]),
                b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n",
                b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n",
            ),
            (
                Frame::Map(vec![(Frame::bulk("k"), Frame::Integer(1))]),
                b"*2\r\n$1\r\nk\r\n:1\r\n",
                b"%1\r\n$1\r\nk\r\n:1\r\n",
            ),
            (
                Frame::Set(vec![Frame::bulk("m")]),
                b"*1\r\n$1\r\nm\r\n",
                b"~1\r\n$1\r\nm\r\n",
            ),
            (Frame::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
            (
                Frame::Double(0.1),
                b"$19\r\n0.10000000000000001\r\n",
                b",0.10000000000000001\r\n",
            ),
            (Frame::Double(3.0), b"$1\r\n3\r\n", b",3\r\n"),
            (Frame::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
            (
                Frame::Double(f64::NEG_INFINITY),
                b"$4\r\n-inf\r\n",
                b",-inf\r\n",
            ),
            (Frame::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n"),
            (
                Frame::HumanDouble(13.361389338970184),
                b"$20\r\n13.36138933897018433\r\n",
                b",13.36138933897018433\r\n",
            ),
            (Frame::HumanDouble(180.0), b"$3\r\n180\r\n", b",180\r\n"),
            (Frame::Boolean(true), b":1\r\n", b"#t\r\n"),
            (Frame::Boolean(false), b":0\r\n", b"#f\r\n"),
            (
                Frame::BigNumber("3492890328409238509324850943850943825024385".to_owned()),
                b"$43\r\n3492890328409238509324850943850943825024385\r\n",
                b"(3492890328409238509324850943850943825024385\r\n",
            ),
            (
                Frame::verbatim_text("Some string"),
                b"$11\r\nSome string\r\n",
                b"=15\r\ntxt:Some string\r\n",
            ),
            (
                Frame::Push(vec![Frame::bulk("message"), Frame::bulk("ch")]),
                b"*2\r\n$7\r\nmessage\r\n$2\r\nch\r\n",
                b">2\r\n$7\r\nmessage\r\n$2\r\nch\r\n",
            ),
            (
                Frame::error("ERR bad\r\nline\n"),
                b"-ERR bad  line \r\n",
                b"-ERR bad  line \r\n",
            ),
        ]
    }

    #[test]
    fn every_frame_encodes_to_exact_bytes_in_both_protocols() {
        for (frame, resp2, resp3) in cases() {
            assert_eq!(
                bytes_of(&frame, Protocol::Resp2),
                resp2,
                "RESP2 encoding of {frame:?}"
            );
            assert_eq!(
                bytes_of(&frame, Protocol::Resp3),
                resp3,
                "RESP3 encoding of {frame:?}"
            );
        }
    }

    #[test]
    fn nested_map_downgrades_recursively() {
        let frame = Frame::Array(vec![Frame::Map(vec![(
            Frame::simple("k"),
            Frame::Set(vec![Frame::Boolean(true), Frame::Null]),
        )])]);
        assert_eq!(
            bytes_of(&frame, Protocol::Resp2),
            b"*1\r\n*2\r\n+k\r\n*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(
            bytes_of(&frame, Protocol::Resp3),
            b"*1\r\n%1\r\n+k\r\n~2\r\n#t\r\n_\r\n"
        );
    }

    #[test]
    fn encode_command_writes_multibulk() {
        let mut out = BytesMut::new();
        encode_command(
            &[Bytes::from_static(b"SET"), Bytes::from_static(b"k\r\n")],
            &mut out,
        );
        assert_eq!(&out[..], b"*2\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n");
    }
}
