//! `crates/server/src/cmd/redis_commands.resp` is what redis-server 7.0.15
//! answers to `COMMAND INFO` and `COMMAND DOCS` in RESP3: this test asks a
//! real redis-server and compares (Redis lists commands and subcommands in
//! its hash tables' order, which changes with each process, so both sides
//! are put in name order first).
//!
//! `MERIDIAN_WRITE_REDIS_COMMANDS=1 cargo test -p meridian --test
//! command_metadata` writes the file from the running redis-server instead.

mod common;

use std::path::PathBuf;

use bytes::BytesMut;
use common::RedisServer;
use meridian_resp::{encode, parse_frame, Frame, Protocol};

fn file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/src/cmd/redis_commands.resp")
}

fn name(f: &Frame) -> Vec<u8> {
    match f {
        Frame::Bulk(b) => b.to_vec(),
        Frame::Array(items) => items.first().map(name).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `COMMAND INFO` entries by name, subcommands too.
fn sorted_info(f: Frame) -> Frame {
    let (Frame::Array(items) | Frame::Set(items)) = f else {
        return f;
    };
    let mut items: Vec<Frame> = items
        .into_iter()
        .map(|entry| match entry {
            Frame::Array(mut fields) if fields.len() == 10 => {
                fields[9] = sorted_info(fields[9].clone());
                Frame::Array(fields)
            }
            other => other,
        })
        .collect();
    items.sort_by_key(name);
    Frame::Array(items)
}

/// `COMMAND DOCS` maps by name, subcommands too.
fn sorted_docs(f: Frame) -> Frame {
    let Frame::Map(pairs) = f else {
        return f;
    };
    let mut pairs: Vec<(Frame, Frame)> = pairs
        .into_iter()
        .map(|(k, doc)| {
            let doc = match doc {
                Frame::Map(fields) => Frame::Map(
                    fields
                        .into_iter()
                        .map(|(fk, fv)| {
                            if name(&fk) == b"subcommands" {
                                (fk, sorted_docs(fv))
                            } else {
                                (fk, fv)
                            }
                        })
                        .collect(),
                ),
                other => other,
            };
            (k, doc)
        })
        .collect();
    pairs.sort_by_key(|(k, _)| name(k));
    Frame::Map(pairs)
}

#[test]
fn vendored_metadata_is_what_redis_7_0_15_answers() {
    let redis = RedisServer::start();
    let mut r = redis.conn();
    let Frame::Map(hello) = r.cmd(&["HELLO", "3"]) else {
        panic!("HELLO 3 did not answer a map");
    };
    let version = hello
        .iter()
        .find(|(k, _)| name(k) == b"version")
        .map(|(_, v)| name(v))
        .unwrap_or_default();
    assert_eq!(
        version, b"7.0.15",
        "the metadata describes Redis 7.0.15; this redis-server is another version"
    );
    let info = r.cmd(&["COMMAND", "INFO"]);
    let docs = r.cmd(&["COMMAND", "DOCS"]);

    if std::env::var_os("MERIDIAN_WRITE_REDIS_COMMANDS").is_some() {
        let mut out = BytesMut::new();
        encode(&info, Protocol::Resp3, &mut out);
        encode(&docs, Protocol::Resp3, &mut out);
        std::fs::write(file(), &out).expect("writing the metadata");
    }

    let bytes = std::fs::read(file()).expect("reading the metadata");
    let (vendored_info, used) = parse_frame(&bytes).unwrap().expect("COMMAND INFO reply");
    let (vendored_docs, _) = parse_frame(&bytes[used..])
        .unwrap()
        .expect("COMMAND DOCS reply");
    assert!(
        sorted_info(vendored_info) == sorted_info(info),
        "COMMAND INFO differs"
    );
    assert!(
        sorted_docs(vendored_docs) == sorted_docs(docs),
        "COMMAND DOCS differs"
    );
}
