//! Feeds arbitrary bytes, in arbitrary chunkings and under arbitrary limits,
//! to the request parser and the reply parser.
//!
//! Checks that nothing panics, that the request parser's outcome does not
//! depend on how the bytes were split into reads, that every parsed command
//! re-encodes and parses back to itself, and that any reply `parse_frame`
//! accepts re-encodes to bytes that parse to the same encoding again.
//!
//! Input layout: byte 0 holds flags (bit 0: unauthenticated, bit 1: small
//! limits), bytes 1-3 the small limits, byte 4 seeds the chunk sizes; the
//! rest is the stream.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use meridian_resp::{
    encode, encode_command, parse_frame, Frame, Limits, Protocol, ProtocolError, RequestParser,
};

const HEADER_BYTES: usize = 5;

type Command = Vec<Vec<u8>>;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_BYTES {
        return;
    }
    let (header, stream) = data.split_at(HEADER_BYTES);
    let limits = limits_from(header);

    let whole = parse_stream(stream, &[stream.len()], &limits);
    let split = parse_stream(stream, &chunk_sizes(header[4], stream.len()), &limits);
    assert_eq!(whole, split, "outcome depends on how the stream was split");

    for command in &whole.0 {
        assert!(!command.is_empty(), "empty command returned");
        let mut encoded = BytesMut::new();
        encode_command(command, &mut encoded);
        let again = parse_stream(&encoded, &[encoded.len()], &Limits::default());
        assert_eq!(again, (vec![command.clone()], Ok(())));
        let as_reply = Frame::bulk_array(command.iter().cloned());
        assert_eq!(
            parse_frame(&encoded),
            Ok(Some((as_reply, encoded.len())))
        );
    }

    if let Ok(Some((frame, used))) = parse_frame(stream) {
        assert!(used <= stream.len());
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let first = encoded(&frame, proto);
            let Ok(Some((reparsed, reused))) = parse_frame(&first) else {
                panic!("encoding of a parsed frame does not parse: {first:?}");
            };
            assert_eq!(reused, first.len());
            assert_eq!(encoded(&reparsed, proto), first);
        }
    }
});

fn limits_from(header: &[u8]) -> Limits {
    let unauthenticated = header[0] & 1 == 1;
    if header[0] & 2 == 0 {
        return Limits {
            unauthenticated,
            ..Limits::default()
        };
    }
    Limits {
        max_inline_bytes: usize::from(header[1]) + 1,
        max_bulk_bytes: usize::from(header[2]),
        max_multibulk_len: usize::from(header[3] & 0x3f),
        unauthenticated,
    }
}

/// Read sizes from 1 to 32 bytes, drawn from a small generator seeded by the
/// input so that each input always splits the same way.
fn chunk_sizes(seed: u8, total: usize) -> Vec<usize> {
    let mut state = u32::from(seed) | 0x100;
    let mut sizes = Vec::new();
    let mut covered = 0;
    while covered < total {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = usize::try_from((state >> 16) % 32).unwrap_or(0) + 1;
        sizes.push(size);
        covered += size;
    }
    sizes
}

fn parse_stream(
    stream: &[u8],
    sizes: &[usize],
    limits: &Limits,
) -> (Vec<Command>, Result<(), ProtocolError>) {
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut rest = stream;
    for &size in sizes {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
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

fn encoded(frame: &Frame, proto: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, proto, &mut out);
    out.to_vec()
}
