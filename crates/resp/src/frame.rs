//! The reply value a command produces, independent of the protocol version.
//!
//! Commands build a `Frame` once and the connection encodes it for whatever
//! protocol the client negotiated with `HELLO`, so no command has to know
//! whether it is talking RESP2 or RESP3.

use bytes::Bytes;

/// One reply, possibly nested.
///
/// RESP3-only shapes (`Map`, `Set`, `Double`, ...) are downgraded on the way
/// out to RESP2 clients; see [`encode`](fn@crate::encode).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`: a status reply such as `OK`. Must not contain CR or LF; the
    /// encoder replaces them with spaces.
    Simple(String),
    /// `-text`: an error, without the leading `-`, e.g. `"ERR syntax error"`
    /// or `"WRONGTYPE Operation against a key holding the wrong kind of value"`.
    /// CR and LF are replaced with spaces when encoded.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` + bytes: binary-safe string.
    Bulk(Bytes),
    /// The missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The missing array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*n` + elements.
    Array(Vec<Frame>),
    /// `%n` + key/value pairs; a flat array of 2n elements in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// `~n` + elements; an array in RESP2.
    Set(Vec<Frame>),
    /// `,value`; a bulk string of the `%.17g` text in RESP2.
    Double(f64),
    /// `,value` with the value in Redis's human long-double form
    /// ([`crate::format_long_double`]: 17 decimals, trailing zeros dropped),
    /// a bulk string of that text in RESP2: how Redis replies coordinates
    /// (GEOPOS, WITHCOORD). Parsed back, it is a [`Frame::Double`].
    HumanDouble(f64),
    /// `#t` / `#f`; the integer 1 / 0 in RESP2.
    Boolean(bool),
    /// `(digits`: an integer too large for `i64`; a bulk string in RESP2.
    BigNumber(String),
    /// `=len` + `fmt:text`, e.g. `txt` for `INFO`; a bulk string of `text`
    /// in RESP2.
    Verbatim { format: [u8; 3], text: Bytes },
    /// `>n` + elements: out-of-band data such as Pub/Sub messages; an array
    /// in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// A status reply.
    pub fn simple(text: impl Into<String>) -> Frame {
        Frame::Simple(text.into())
    }

    /// An error reply; `text` starts with the error code, e.g.
    /// `Frame::error("ERR syntax error")`.
    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// An array of bulk strings, the shape of most multi-value replies.
    pub fn bulk_array<I>(items: I) -> Frame
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        Frame::Array(
            items
                .into_iter()
                .map(|item| Frame::Bulk(item.into()))
                .collect(),
        )
    }

    /// A verbatim string of plain text (`txt:` in RESP3).
    pub fn verbatim_text(text: impl Into<Bytes>) -> Frame {
        Frame::Verbatim {
            format: *b"txt",
            text: text.into(),
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
}
