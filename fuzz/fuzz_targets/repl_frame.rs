//! Feeds arbitrary bytes to the replication frame reader exactly as a
//! receiver does (`wire::read_msg` over a buffered stream), in arbitrary
//! read sizes, then decodes what the messages carry the way the receiver
//! does: op records as `Op`s applied to a region's state, anti-entropy state
//! as `(Blob, Option<Entry>)` pairs merged into it.
//!
//! Checks that nothing panics, that the outcome does not depend on how the
//! bytes arrived, that every decoded message re-encodes to a frame that
//! reads back to the same message, and that every decoded op or state
//! re-encodes to bytes that decode and re-encode to the same bytes.
//!
//! Input layout: byte 0 holds flags (bit 0: repair checksums), byte 1 seeds
//! the read sizes; the rest is the stream. With checksums repaired, each
//! frame's crc is recomputed over its payload before reading, so mutations
//! reach the message decoder instead of stopping at the checksum.

#![no_main]

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use meridian_crdt::{Blob, Entry, Op, RegionId, Tag, VersionVector};
use meridian_repl::wire::{encode, encoded_len, read_msg, Msg, WireError, FRAME_MAX_BYTES};
use meridian_store::Db;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

const HEADER_BYTES: usize = 2;
const FRAME_HEADER_BYTES: usize = 8;

/// What reading a stream gave: every message with its size on the wire,
/// then the error that ended the stream.
type Outcome = (Vec<(Msg, usize)>, String);

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_BYTES {
        return;
    }
    let (header, stream) = data.split_at(HEADER_BYTES);
    let mut stream = stream.to_vec();
    if header[0] & 1 == 1 {
        repair_checksums(&mut stream);
    }

    let whole = read_stream(&stream, 0);
    let split = read_stream(&stream, header[1] | 1);
    assert_eq!(whole, split, "outcome depends on how the stream arrived");

    let consumed: usize = whole.0.iter().map(|(_, size)| size).sum();
    assert!(consumed <= stream.len());
    let region = RegionId::new("fuzz").expect("valid region name");
    let mut db = Db::new(region, 500);
    for (msg, size) in &whole.0 {
        check_reencodes(msg, *size);
        apply_like_a_receiver(&mut db, msg);
    }
});

/// Recomputes the crc of every frame whose length fits in the stream.
fn repair_checksums(stream: &mut [u8]) {
    let mut at = 0;
    while stream.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_le_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end = at + FRAME_HEADER_BYTES + len;
        if len > FRAME_MAX_BYTES || end > stream.len() {
            return;
        }
        let crc = crc32c::crc32c(&stream[at + FRAME_HEADER_BYTES..end]);
        stream[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// Reads messages until the first error; `seed` 0 delivers the stream in
/// one read, any other seed in reads of 1 to 32 bytes.
fn read_stream(stream: &[u8], seed: u8) -> Outcome {
    let mut reader = BufReader::new(Chunked {
        rest: stream,
        state: u32::from(seed),
    });
    let mut msgs = Vec::new();
    loop {
        match block_on(read_msg(&mut reader)) {
            Ok(got) => msgs.push(got),
            Err(error) => return (msgs, describe(&error)),
        }
    }
}

fn describe(error: &WireError) -> String {
    match error {
        WireError::Io(e) => format!("i/o {:?}", e.kind()),
        other => other.to_string(),
    }
}

fn check_reencodes(msg: &Msg, size: usize) {
    let frame = encode(msg);
    assert_eq!(encoded_len(msg), frame.len());
    assert!(frame.len() <= size, "re-encoding grew the frame");
    let mut reader = &frame[..];
    let (again, again_size) = block_on(read_msg(&mut reader)).expect("re-encoded frame reads");
    assert_eq!(&again, msg);
    assert_eq!(again_size, frame.len());
}

/// What the receiver and the anti-entropy session do with a message's
/// contents (`inbound::Inbound::apply`, `antientropy` on `AeState`).
fn apply_like_a_receiver(db: &mut Db, msg: &Msg) {
    match msg {
        Msg::Ops { records, .. } => {
            for record in records {
                let _ = postcard::take_from_bytes::<Tag>(record);
                if let Some(op) = decode_and_reencode::<Op>(record) {
                    let _ = db.apply_remote(&op, 0);
                }
            }
        }
        Msg::AeState { entries, .. } => {
            let mut rest = &entries[..];
            while !rest.is_empty() {
                let Ok(((key, entry), next)) =
                    postcard::take_from_bytes::<(Blob, Option<Entry>)>(rest)
                else {
                    break;
                };
                let used = &rest[..rest.len() - next.len()];
                decode_and_reencode::<(Blob, Option<Entry>)>(used);
                db.merge_state(&key, entry.as_ref(), &VersionVector::new());
                rest = next;
            }
        }
        _ => {}
    }
}

/// Decodes `bytes` as a `T` and checks that its encoding is a fixpoint:
/// decoding it and encoding again gives the same bytes.
fn decode_and_reencode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let value: T = postcard::from_bytes(bytes).ok()?;
    let first = postcard::to_stdvec(&value).expect("decoded value encodes");
    let again: T = postcard::from_bytes(&first).expect("re-encoded value decodes");
    assert_eq!(postcard::to_stdvec(&again).expect("encodes"), first);
    Some(value)
}

/// A byte source that hands out reads of 1 to 32 bytes (or everything at
/// once when `state` is 0), like a socket receiving small segments.
struct Chunked<'a> {
    rest: &'a [u8],
    state: u32,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut take = self.rest.len().min(buf.remaining());
        if self.state != 0 {
            self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let size = usize::try_from((self.state >> 16) % 32).unwrap_or(0) + 1;
            take = take.min(size);
        }
        let (now, later) = self.rest.split_at(take);
        buf.put_slice(now);
        self.rest = later;
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose I/O is always ready.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}
