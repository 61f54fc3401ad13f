//! Throughput of the hot paths: parsing pipelined requests and encoding the
//! replies they get. Run with `cargo bench -p meridian-resp`; results are
//! kept in `benches/RESULTS.md`.
//!
//! A plain timing loop rather than a framework: the numbers only need to show
//! that the codec costs a small fraction of a request's budget (Redis serves
//! roughly 100k-1M requests per second per core, so 1 µs per request).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use meridian_resp::{encode, encode_command, Frame, Limits, Protocol, RequestParser};

const MIN_RUN: Duration = Duration::from_millis(500);

/// Runs `work` (which handles `items` items) until `MIN_RUN` has passed and
/// prints the cost per item.
fn measure(name: &str, items: u64, bytes: u64, mut work: impl FnMut()) {
    work();
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < MIN_RUN {
        work();
        rounds += 1;
    }
    let elapsed = start.elapsed();
    let per_item_ns = elapsed.as_nanos() as f64 / (rounds * items) as f64;
    if bytes == 0 {
        println!("{name:<40} {per_item_ns:>12.1} ns/item");
    } else {
        let mib_per_s = (rounds * bytes) as f64 / elapsed.as_secs_f64() / (1024.0 * 1024.0);
        println!("{name:<40} {per_item_ns:>12.1} ns/item {mib_per_s:>7.0} MiB/s");
    }
}

fn pipeline(commands: &[Vec<Bytes>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for command in commands {
        encode_command(command, &mut out);
    }
    out.to_vec()
}

fn parse_all(input: &[u8], read_bytes: usize) -> usize {
    let mut parser = RequestParser::new();
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut parsed = 0;
    for read in input.chunks(read_bytes) {
        buf.extend_from_slice(read);
        while let Ok(Some(command)) = parser.next_command(&mut buf, &limits) {
            black_box(&command);
            parsed += 1;
        }
    }
    parsed
}

fn main() {
    const COMMANDS: u64 = 10_000;
    let set_commands: Vec<Vec<Bytes>> = (0..COMMANDS)
        .map(|i| {
            vec![
                Bytes::from_static(b"SET"),
                Bytes::from(format!("key:{i:012}")),
                Bytes::from_static(b"xxx"),
            ]
        })
        .collect();
    let sets = pipeline(&set_commands);
    measure(
        "parse SET, 16 KiB reads",
        COMMANDS,
        sets.len() as u64,
        || {
            assert_eq!(parse_all(&sets, 16 * 1024), COMMANDS as usize);
        },
    );
    measure(
        "parse SET, one command per read",
        COMMANDS,
        sets.len() as u64,
        || {
            assert_eq!(
                parse_all(&sets, sets.len() / COMMANDS as usize),
                COMMANDS as usize
            );
        },
    );

    let inline: Vec<u8> = (0..COMMANDS)
        .flat_map(|i| format!("SET key:{i:012} xxx\r\n").into_bytes())
        .collect();
    measure(
        "parse inline SET, 16 KiB reads",
        COMMANDS,
        inline.len() as u64,
        || {
            assert_eq!(parse_all(&inline, 16 * 1024), COMMANDS as usize);
        },
    );

    let big_value = vec![b'v'; 64 * 1024 * 1024];
    let big = pipeline(&[vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"k"),
        Bytes::from(big_value),
    ]]);
    measure(
        "parse 64 MiB SET, 64 KiB reads",
        1,
        big.len() as u64,
        || {
            assert_eq!(parse_all(&big, 64 * 1024), 1);
        },
    );

    let replies: Vec<Frame> = (0..COMMANDS)
        .map(|i| match i % 4 {
            0 => Frame::ok(),
            1 => Frame::bulk(Bytes::from_static(b"some value of moderate size")),
            2 => Frame::Integer(i as i64),
            _ => Frame::Null,
        })
        .collect();
    let mut out = BytesMut::with_capacity(1024 * 1024);
    measure("encode mixed replies", COMMANDS, 0, || {
        out.clear();
        for reply in &replies {
            encode(reply, Protocol::Resp2, &mut out);
        }
        black_box(&out);
    });

    let scores: Vec<Frame> = (0..COMMANDS)
        .map(|i| Frame::Double(i as f64 / 7.0))
        .collect();
    measure("encode double replies (RESP3)", COMMANDS, 0, || {
        out.clear();
        for reply in &scores {
            encode(reply, Protocol::Resp3, &mut out);
        }
        black_box(&out);
    });
}
