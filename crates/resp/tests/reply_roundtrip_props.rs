//! Randomized proofs that encoding and `parse_frame` agree: any frame (NaN
//! aside, which never equals itself) reads back as itself in RESP3 and as its
//! documented downgrade in RESP2, every proper prefix is incomplete, and
//! garbage never panics the reply parser.

use bytes::{Bytes, BytesMut};
use meridian_resp::{encode, format_double, parse_frame, Frame, Protocol};
use proptest::collection::vec;
use proptest::prelude::*;

/// Text for one-line replies: anything but CR and LF.
fn line_text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,30}"
}

fn leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        vec(any::<u8>(), 0..50).prop_map(|b| Frame::Bulk(Bytes::from(b))),
        Just(Frame::Null),
        Just(Frame::NullArray),
        any::<f64>()
            .prop_filter("NaN never equals itself", |d| !d.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[0-9]{1,60}".prop_map(Frame::BigNumber),
        (any::<[u8; 3]>(), vec(any::<u8>(), 0..50)).prop_map(|(format, text)| Frame::Verbatim {
            format,
            text: Bytes::from(text),
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Frame::Array),
            vec(inner.clone(), 0..8).prop_map(Frame::Set),
            vec(inner.clone(), 0..8).prop_map(Frame::Push),
            vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

/// What a RESP3 client reads back: both nulls look alike.
fn as_read_in_resp3(frame: &Frame) -> Frame {
    match frame {
        Frame::NullArray => Frame::Null,
        Frame::Array(items) => Frame::Array(items.iter().map(as_read_in_resp3).collect()),
        Frame::Set(items) => Frame::Set(items.iter().map(as_read_in_resp3).collect()),
        Frame::Push(items) => Frame::Push(items.iter().map(as_read_in_resp3).collect()),
        Frame::Map(pairs) => Frame::Map(
            pairs
                .iter()
                .map(|(k, v)| (as_read_in_resp3(k), as_read_in_resp3(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a RESP2 client reads back: Redis 7.0's downgrades.
fn as_read_in_resp2(frame: &Frame) -> Frame {
    match frame {
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            Frame::Array(items.iter().map(as_read_in_resp2).collect())
        }
        Frame::Map(pairs) => Frame::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [as_read_in_resp2(k), as_read_in_resp2(v)])
                .collect(),
        ),
        Frame::Double(d) => Frame::Bulk(Bytes::from(format_double(*d))),
        Frame::Boolean(b) => Frame::Integer(i64::from(*b)),
        Frame::BigNumber(digits) => Frame::Bulk(Bytes::from(digits.clone())),
        Frame::Verbatim { text, .. } => Frame::Bulk(text.clone()),
        other => other.clone(),
    }
}

fn encoded(frame: &Frame, proto: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, proto, &mut out);
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resp3_encoding_reads_back_as_the_same_frame(frame in frame()) {
        let bytes = encoded(&frame, Protocol::Resp3);
        prop_assert_eq!(
            parse_frame(&bytes),
            Ok(Some((as_read_in_resp3(&frame), bytes.len())))
        );
    }

    #[test]
    fn resp2_encoding_reads_back_as_the_redis_downgrade(frame in frame()) {
        let bytes = encoded(&frame, Protocol::Resp2);
        prop_assert_eq!(
            parse_frame(&bytes),
            Ok(Some((as_read_in_resp2(&frame), bytes.len())))
        );
    }

    #[test]
    fn every_proper_prefix_is_incomplete(frame in frame(), resp3 in any::<bool>()) {
        let proto = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
        let bytes = encoded(&frame, proto);
        for end in 0..bytes.len() {
            prop_assert_eq!(parse_frame(&bytes[..end]), Ok(None), "prefix of {} bytes", end);
        }
    }

    #[test]
    fn trailing_bytes_are_left_for_the_next_frame(frame in frame(), tail in vec(any::<u8>(), 0..20)) {
        let mut bytes = encoded(&frame, Protocol::Resp3);
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(parse_frame(&bytes), Ok(Some((as_read_in_resp3(&frame), len))));
    }

    #[test]
    fn garbage_never_panics_the_reply_parser(input in vec(any::<u8>(), 0..400)) {
        if let Ok(Some((_, used))) = parse_frame(&input) {
            prop_assert!(used <= input.len());
        }
    }
}

#[test]
fn attributes_are_skipped() {
    let bytes = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*1\r\n:2\r\n";
    assert_eq!(
        parse_frame(bytes),
        Ok(Some((Frame::Array(vec![Frame::Integer(2)]), bytes.len())))
    );
}

#[test]
fn blob_error_reads_as_error() {
    let bytes = b"!21\r\nSYNTAX invalid syntax\r\n";
    assert_eq!(
        parse_frame(bytes),
        Ok(Some((Frame::error("SYNTAX invalid syntax"), bytes.len())))
    );
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let bytes = b"*1\r\n".repeat(100_000);
    assert_eq!(parse_frame(&bytes), Err(meridian_resp::FrameError::TooDeep));
}
