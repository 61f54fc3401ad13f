//! Incremental parsing of client requests, with Redis 7.0's limits and
//! error texts.
//!
//! A server reads whatever the socket delivers and asks for the next command;
//! the parser either returns one, says it needs more bytes, or fails with the
//! exact error Redis would send before closing the connection. Decisions
//! follow `processInlineBuffer` and `processMultibulkBuffer` in Redis 7.0's
//! `networking.c`, including their quirks, so that a client sees the same
//! behaviour byte for byte:
//!
//! - The first byte of a request picks its form: `*` is multibulk, anything
//!   else is an inline line.
//! - Header lines are found by their CR, and the byte after the CR is skipped
//!   without being checked; the two bytes after a bulk payload are skipped
//!   the same way.
//! - Redis searches for line ends with `strchr`, which stops at a NUL byte,
//!   so a line with a NUL before its end never completes; it waits until the
//!   size limit turns it into an error.
//! - `*0` and `*-N` are empty commands, and so are blank inline lines; Redis
//!   ignores them, and this parser skips them instead of returning them.
//!
//! Progress is kept between calls (the current header line is never searched
//! twice and a bulk payload is never looked at until all of it has arrived),
//! so a 512 MiB argument arriving in 64 KiB reads costs linear time.
//!
//! Line limits are judged as if bytes arrived one at a time: a line longer
//! than the limit is refused even when it arrives whole. Redis, reading 16 KiB
//! at a time, admits some lines up to 16 KiB past the limit when they arrive
//! in one read; this parser gives the same answer however the input is split.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::inline::split_inline;
use crate::number::parse_redis_int;

/// Redis lets a client that still has to authenticate send at most this many
/// arguments in one multibulk request.
pub const UNAUTHENTICATED_MAX_MULTIBULK_LEN: usize = 10;

/// Redis lets a client that still has to authenticate send bulk strings of at
/// most this many bytes.
pub const UNAUTHENTICATED_MAX_BULK_BYTES: usize = 16 * 1024;

/// Bounds on what a client may send, checked while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest inline line, multibulk count line or bulk length line
    /// (Redis's `PROTO_INLINE_MAX_SIZE`).
    pub max_inline_bytes: usize,
    /// Longest bulk string (`proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Most arguments in one multibulk request. Redis 7.0 itself accepts up
    /// to `i32::MAX`; set that for exact parity.
    pub max_multibulk_len: usize,
    /// The connection has not authenticated yet although the server requires
    /// it; the tighter `UNAUTHENTICATED_*` limits apply.
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inline_bytes: 64 * 1024,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            unauthenticated: false,
        }
    }
}

/// A malformed request. The connection cannot be resynchronised after one:
/// the server replies with [`ProtocolError::encode_reply`] and closes it.
///
/// `Display` gives the text after `-ERR `, exactly as Redis 7.0 words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The multibulk count is not an integer or exceeds
    /// [`Limits::max_multibulk_len`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length is not an integer, is negative, or exceeds
    /// [`Limits::max_bulk_bytes`].
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An unauthenticated client sent more than
    /// [`UNAUTHENTICATED_MAX_MULTIBULK_LEN`] arguments.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// An unauthenticated client sent a bulk string longer than
    /// [`UNAUTHENTICATED_MAX_BULK_BYTES`].
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A multibulk element did not start with `$`. `Display` shows the byte
    /// as a Latin-1 character; [`ProtocolError::encode_reply`] sends it raw,
    /// as Redis does. Either way CR and LF show as a space, since Redis
    /// replaces them in formatted errors.
    #[error("Protocol error: expected '$', got '{}'", char::from(shown_byte(*.0)))]
    ExpectedDollar(u8),
    /// An inline line has an unterminated quote, or a closing quote followed
    /// by something other than a blank.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline line grew past [`Limits::max_inline_bytes`] without ending.
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// A multibulk count line grew past [`Limits::max_inline_bytes`].
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    /// A bulk length line grew past [`Limits::max_inline_bytes`].
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
}

impl ProtocolError {
    /// Appends the exact reply Redis sends for this error:
    /// `-ERR <text>\r\n`, with the offending byte of
    /// [`ProtocolError::ExpectedDollar`] written as is.
    pub fn encode_reply(&self, out: &mut BytesMut) {
        out.put_slice(b"-ERR ");
        match self {
            ProtocolError::ExpectedDollar(byte) => {
                out.put_slice(b"Protocol error: expected '$', got '");
                out.put_u8(shown_byte(*byte));
                out.put_slice(b"'");
            }
            other => out.put_slice(other.to_string().as_bytes()),
        }
        out.put_slice(b"\r\n");
    }
}

/// The byte Redis shows for `byte` inside an error line: CR and LF would end
/// the line early, so they become spaces.
fn shown_byte(byte: u8) -> u8 {
    match byte {
        b'\r' | b'\n' => b' ',
        other => other,
    }
}

/// Turns a stream of request bytes into commands, one call per command.
///
/// Feed it the connection's read buffer, appending to the buffer between
/// calls but never changing bytes already in it. Complete commands are
/// removed from the front of the buffer; a partial one is left in place while
/// the parser remembers how far it got.
///
/// Arguments of multibulk requests share the buffer's memory rather than
/// being copied, so a long-lived argument (a stored value) pins the read
/// chunk it came from; copy it if it is kept.
#[derive(Debug, Default)]
pub struct RequestParser {
    state: State,
    /// Offset in the buffer below which the current line has been searched
    /// for its end without finding it (or where a blocking NUL sits).
    scanned: usize,
    /// Where the arguments of the current multibulk request sit in the buffer.
    args: Vec<Range<usize>>,
    /// Set by the first error; a parser that failed keeps failing.
    failed: Option<ProtocolError>,
}

#[derive(Debug, Clone, Copy, Default)]
enum State {
    /// Between commands.
    #[default]
    Start,
    /// Reading an inline line.
    Inline,
    /// Reading the `*N` line of a multibulk request.
    Count,
    /// Reading the `$len` line that starts at `at`, with `remaining`
    /// arguments (this one included) still to come.
    BulkHeader { remaining: usize, at: usize },
    /// Waiting for `len` payload bytes, plus two for the line end, at `at`.
    BulkPayload {
        remaining: usize,
        at: usize,
        len: usize,
    },
}

/// Where the search for a line end got to.
enum LineEnd {
    /// The terminator is at this offset.
    Found(usize),
    /// The line may still end; more bytes are needed.
    Pending,
    /// The line exceeded the limit before ending, or can never end.
    TooBig,
}

impl RequestParser {
    /// A parser at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the next command from the front of `buf`.
    ///
    /// Returns `Ok(Some(args))` with at least one argument and removes the
    /// command's bytes from `buf`; `Ok(None)` when `buf` holds no complete
    /// command yet; `Err` when the request is malformed, after which every
    /// call returns the same error.
    pub fn next_command(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let result = self.advance(buf, limits);
        if let Err(error) = result {
            self.failed = Some(error);
        }
        result
    }

    fn advance(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            match self.state {
                State::Start => match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => self.state = State::Count,
                    Some(_) => self.state = State::Inline,
                },
                State::Inline => {
                    let newline = match self.find_line_end(buf, 0, b'\n', limits.max_inline_bytes) {
                        LineEnd::Found(at) => at,
                        LineEnd::Pending => return Ok(None),
                        LineEnd::TooBig => return Err(ProtocolError::InlineTooBig),
                    };
                    let end = if newline > 0 && buf[newline - 1] == b'\r' {
                        newline - 1
                    } else {
                        newline
                    };
                    let args = split_inline(&buf[..end])?;
                    self.consume(buf, newline + 1);
                    if !args.is_empty() {
                        return Ok(Some(args));
                    }
                }
                State::Count => {
                    let Some((cr, count)) = self.header_line(
                        buf,
                        0,
                        b'*',
                        limits.max_inline_bytes,
                        ProtocolError::MultibulkCountTooBig,
                    )?
                    else {
                        return Ok(None);
                    };
                    let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
                    // A count of zero or less is an empty command: skip it.
                    let Ok(count @ 1..) = usize::try_from(count) else {
                        self.consume(buf, cr + 2);
                        continue;
                    };
                    if count > limits.max_multibulk_len {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    if limits.unauthenticated && count > UNAUTHENTICATED_MAX_MULTIBULK_LEN {
                        return Err(ProtocolError::UnauthenticatedMultibulkLength);
                    }
                    // The count is the client's claim; reserve a bounded
                    // amount and let real arguments grow the list.
                    self.args.reserve(count.min(1024));
                    self.state = State::BulkHeader {
                        remaining: count,
                        at: cr + 2,
                    };
                }
                State::BulkHeader { remaining, at } => {
                    let Some((cr, len)) = self.header_line(
                        buf,
                        at,
                        b'$',
                        limits.max_inline_bytes,
                        ProtocolError::BulkCountTooBig,
                    )?
                    else {
                        return Ok(None);
                    };
                    if buf[at] != b'$' {
                        return Err(ProtocolError::ExpectedDollar(buf[at]));
                    }
                    let len = len
                        .and_then(|len| usize::try_from(len).ok())
                        .filter(|&len| len <= limits.max_bulk_bytes)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if limits.unauthenticated && len > UNAUTHENTICATED_MAX_BULK_BYTES {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.state = State::BulkPayload {
                        remaining,
                        at: cr + 2,
                        len,
                    };
                }
                State::BulkPayload { remaining, at, len } => {
                    // `len` is bounded by `max_bulk_bytes`, but that is the
                    // caller's number: do not let the sum wrap.
                    let end = at.saturating_add(len).saturating_add(2);
                    if buf.len() < end {
                        return Ok(None);
                    }
                    self.args.push(at..at + len);
                    if remaining > 1 {
                        self.state = State::BulkHeader {
                            remaining: remaining - 1,
                            at: end,
                        };
                    } else {
                        let request = buf.split_to(end).freeze();
                        self.restart();
                        return Ok(Some(self.take_command(request)));
                    }
                }
            }
        }
    }

    /// Reads the header line that starts at `start` and should start with
    /// `prefix` (`*N` or `$N`): the offset of its CR and its number as
    /// `string2ll` reads it (`None` if it is not one). `Ok(None)` if the line
    /// is not complete yet. The caller checks the prefix.
    fn header_line(
        &mut self,
        buf: &[u8],
        start: usize,
        prefix: u8,
        max_line_bytes: usize,
        too_big: ProtocolError,
    ) -> Result<Option<(usize, Option<i64>)>, ProtocolError> {
        if let Some((cr_offset, value)) = plain_header(&buf[start..], prefix) {
            if cr_offset <= max_line_bytes {
                return Ok(Some((start + cr_offset, Some(value))));
            }
        }
        match self.find_line_end(buf, start, b'\r', max_line_bytes) {
            LineEnd::Found(cr) if cr + 2 <= buf.len() => {
                // A line that is only its CR has no number, and no prefix
                // either; the caller reports the prefix.
                let number = buf.get(start + 1..cr).and_then(parse_redis_int);
                Ok(Some((cr, number)))
            }
            LineEnd::Found(_) | LineEnd::Pending => Ok(None),
            LineEnd::TooBig => Err(too_big),
        }
    }

    /// Builds the finished command from its request bytes. Each argument is
    /// a view of `request`; the last one takes `request` itself, which saves
    /// a reference count increment and decrement per command.
    fn take_command(&mut self, mut request: Bytes) -> Vec<Bytes> {
        let mut command = Vec::with_capacity(self.args.len());
        if let Some(last) = self.args.pop() {
            command.extend(self.args.drain(..).map(|range| request.slice(range)));
            request.truncate(last.end);
            request.advance(last.start);
            command.push(request);
        }
        command
    }

    /// Searches `buf` from `start` for `terminator`, resuming where the last
    /// search of this line stopped. A NUL byte ends the search unsuccessfully,
    /// as it ends Redis's `strchr`.
    fn find_line_end(
        &mut self,
        buf: &[u8],
        start: usize,
        terminator: u8,
        max_line_bytes: usize,
    ) -> LineEnd {
        let from = self.scanned.max(start);
        match memchr::memchr2(terminator, 0, &buf[from..]).map(|offset| from + offset) {
            Some(at) if buf[at] == terminator => {
                self.scanned = at;
                if at - start > max_line_bytes {
                    LineEnd::TooBig
                } else {
                    LineEnd::Found(at)
                }
            }
            blocked_at => {
                self.scanned = blocked_at.unwrap_or(buf.len());
                if buf.len() - start > max_line_bytes {
                    LineEnd::TooBig
                } else {
                    LineEnd::Pending
                }
            }
        }
    }

    /// Drops `n` bytes from the front of `buf` and starts the next command
    /// there.
    fn consume(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.restart();
    }

    /// Starts the next command at the front of the buffer.
    fn restart(&mut self) {
        self.scanned = 0;
        self.state = State::Start;
    }
}

/// The common header line, `prefix`, up to 18 digits with no leading zero,
/// CR, and one more byte, read in a single pass. Returns the CR's offset and
/// the number, or `None` for anything else (another prefix, signs, long or
/// zero-padded numbers, a line not yet complete), which the general path
/// handles with the same result.
fn plain_header(line: &[u8], prefix: u8) -> Option<(usize, i64)> {
    if line.first() != Some(&prefix) {
        return None;
    }
    let mut value: i64 = 0;
    let mut i = 1;
    loop {
        match *line.get(i)? {
            d @ b'0'..=b'9' if i <= 18 => {
                value = value * 10 + i64::from(d - b'0');
                i += 1;
            }
            b'\r' => break,
            _ => return None,
        }
    }
    let digits = i - 1;
    if digits == 0 || (digits > 1 && line[1] == b'0') {
        return None;
    }
    line.get(i + 1)?;
    Some((i, value))
}
