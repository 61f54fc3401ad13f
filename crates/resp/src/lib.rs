//! The Redis serialization protocol (RESP2 and RESP3) as Meridian speaks it.
//!
//! Meridian must be indistinguishable from Redis 7.0 on the wire, so this
//! crate reproduces Redis's request parsing (limits, quirks and error texts),
//! its reply encodings in both protocol versions, and its number formats.
//! It is pure: no I/O, no async runtime, no clock. The server owns the
//! sockets and hands this crate bytes.
//!
//! # Layout
//!
//! - [`frame`]: [`Frame`], the protocol-independent reply value.
//! - [`encode`](mod@encode): [`encode`](fn@encode) writes a frame for a [`Protocol`],
//!   downgrading RESP3 shapes for RESP2 clients; [`encode_command`] writes a
//!   multibulk request.
//! - [`request`]: [`RequestParser`], the incremental parser of client
//!   requests (multibulk and inline) under [`Limits`], failing with
//!   [`ProtocolError`].
//! - `inline`: Redis's `sdssplitargs` quoting rules for inline requests.
//! - [`reply`]: [`parse_frame`], a reply parser for clients and tests.
//! - [`number`]: `%.17g` and `%.17Lf` formatting and Redis's strict integer
//!   and double parsing.
//!
//! # Invariants
//!
//! - Nothing here panics on any input bytes; malformed input is an error
//!   value. The fuzz target `fuzz/fuzz_targets/resp_parser.rs` checks this.
//! - A command parsed from a stream is the same however the stream is split
//!   into reads.
//! - Encoding a command and parsing it back gives the same arguments.

pub mod encode;
pub mod frame;
mod inline;
pub mod number;
pub mod reply;
pub mod request;

pub use encode::{encode, encode_command, Protocol};
pub use frame::Frame;
pub use number::{format_double, format_long_double, parse_redis_double, parse_redis_int};
pub use reply::{parse_frame, FrameError, MAX_REPLY_DEPTH};
pub use request::{
    Limits, ProtocolError, RequestParser, UNAUTHENTICATED_MAX_BULK_BYTES,
    UNAUTHENTICATED_MAX_MULTIBULK_LEN,
};
