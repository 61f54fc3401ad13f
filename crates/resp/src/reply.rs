//! Parsing replies, for clients, replication links and tests.
//!
//! Servers never parse replies, so this favours simplicity over speed: it is
//! stateless, and an incomplete reply is parsed again from its start when more
//! bytes arrive. It reads both RESP2 and RESP3 and is strict about framing
//! (every line must end in CRLF) so that tests catch malformed output.

use bytes::Bytes;

use crate::frame::Frame;
use crate::number::parse_redis_int;

/// Deepest nesting of aggregates accepted, so that hostile input cannot
/// exhaust the stack of the recursive parser (or of `Frame`'s destructor).
pub const MAX_REPLY_DEPTH: usize = 128;

/// A malformed reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not a RESP2 or RESP3 type marker.
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    /// A line ends in CR without LF, or a payload is not followed by CRLF.
    #[error("reply line not terminated by CRLF")]
    MissingCrlf,
    /// A length or count is not an integer of the allowed range.
    #[error("invalid length in reply")]
    InvalidLength,
    /// An integer reply is not an `i64`.
    #[error("invalid integer reply")]
    InvalidInteger,
    /// A double reply is not a number, `inf`, `-inf` or `nan`.
    #[error("invalid double reply")]
    InvalidDouble,
    /// A boolean reply is neither `t` nor `f`.
    #[error("invalid boolean reply")]
    InvalidBoolean,
    /// A big number reply is not an optional `-` followed by digits.
    #[error("invalid big number reply")]
    InvalidBigNumber,
    /// A verbatim string lacks its `xxx:` format prefix.
    #[error("invalid verbatim string reply")]
    InvalidVerbatim,
    /// Aggregates are nested deeper than [`MAX_REPLY_DEPTH`].
    #[error("reply nested deeper than {MAX_REPLY_DEPTH} levels")]
    TooDeep,
}

/// Parses one reply from the front of `input`.
///
/// Returns the frame and the number of bytes it took, `Ok(None)` if `input`
/// holds only part of a reply, or an error if it is malformed. RESP2's null
/// bulk string (`$-1`) and RESP3's null (`_`) both give [`Frame::Null`];
/// RESP2's null array (`*-1`) gives [`Frame::NullArray`]. Attributes (`|`)
/// are skipped, and blob errors (`!`) give [`Frame::Error`]. Text that is not
/// UTF-8 in simple strings, errors and big numbers is converted lossily.
pub fn parse_frame(input: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut reader = Reader { input, pos: 0 };
    Ok(reader.frame(0)?.map(|frame| (frame, reader.pos)))
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

/// `Ok(None)` (more input needed) propagates like an error through `?`.
macro_rules! need {
    ($e:expr) => {
        match $e? {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

impl<'a> Reader<'a> {
    fn frame(&mut self, depth: usize) -> Result<Option<Frame>, FrameError> {
        if depth > MAX_REPLY_DEPTH {
            return Err(FrameError::TooDeep);
        }
        let Some(&marker) = self.input.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let frame = match marker {
            b'+' => Frame::Simple(lossy(need!(self.line()))),
            b'-' => Frame::Error(lossy(need!(self.line()))),
            b':' => Frame::Integer(
                parse_redis_int(need!(self.line())).ok_or(FrameError::InvalidInteger)?,
            ),
            b'$' => match need!(self.length_or_null()) {
                None => Frame::Null,
                Some(len) => Frame::Bulk(Bytes::copy_from_slice(need!(self.payload(len)))),
            },
            b'!' => {
                let len = need!(self.length());
                Frame::Error(lossy(need!(self.payload(len))))
            }
            b'=' => {
                let len = need!(self.length());
                let payload = need!(self.payload(len));
                match payload {
                    [a, b, c, b':', text @ ..] => Frame::Verbatim {
                        format: [*a, *b, *c],
                        text: Bytes::copy_from_slice(text),
                    },
                    _ => return Err(FrameError::InvalidVerbatim),
                }
            }
            b'*' => match need!(self.length_or_null()) {
                None => Frame::NullArray,
                Some(len) => Frame::Array(need!(self.frames(len, depth))),
            },
            b'~' => {
                let len = need!(self.length());
                Frame::Set(need!(self.frames(len, depth)))
            }
            b'>' => {
                let len = need!(self.length());
                Frame::Push(need!(self.frames(len, depth)))
            }
            b'%' => {
                let len = need!(self.length());
                Frame::Map(need!(self.pairs(len, depth)))
            }
            b'|' => {
                let len = need!(self.length());
                need!(self.pairs(len, depth));
                need!(self.frame(depth))
            }
            b'_' => {
                if !need!(self.line()).is_empty() {
                    return Err(FrameError::MissingCrlf);
                }
                Frame::Null
            }
            b',' => Frame::Double(parse_double(need!(self.line()))?),
            b'#' => match need!(self.line()) {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(FrameError::InvalidBoolean),
            },
            b'(' => {
                let line = need!(self.line());
                let digits = line.strip_prefix(b"-").unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(FrameError::InvalidBigNumber);
                }
                Frame::BigNumber(lossy(line))
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(Some(frame))
    }

    /// The rest of the current line, without its CRLF.
    fn line(&mut self) -> Result<Option<&'a [u8]>, FrameError> {
        let input = self.input;
        let rest = &input[self.pos..];
        let Some(cr) = memchr::memchr(b'\r', rest) else {
            return Ok(None);
        };
        match rest.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') => {
                self.pos += cr + 2;
                Ok(Some(&rest[..cr]))
            }
            Some(_) => Err(FrameError::MissingCrlf),
        }
    }

    /// A non-negative length line.
    fn length(&mut self) -> Result<Option<usize>, FrameError> {
        match need!(self.length_or_null()) {
            Some(len) => Ok(Some(len)),
            None => Err(FrameError::InvalidLength),
        }
    }

    /// A length line where `-1` means null.
    fn length_or_null(&mut self) -> Result<Option<Option<usize>>, FrameError> {
        let value = parse_redis_int(need!(self.line())).ok_or(FrameError::InvalidLength)?;
        match value {
            -1 => Ok(Some(None)),
            _ => usize::try_from(value)
                .map(|len| Some(Some(len)))
                .map_err(|_| FrameError::InvalidLength),
        }
    }

    /// `len` bytes followed by CRLF.
    fn payload(&mut self, len: usize) -> Result<Option<&'a [u8]>, FrameError> {
        let input = self.input;
        let start = self.pos;
        let end = start.checked_add(len).ok_or(FrameError::InvalidLength)?;
        let Some(after) = input.get(end..) else {
            return Ok(None);
        };
        match after {
            [b'\r', b'\n', ..] => {
                self.pos = end + 2;
                Ok(Some(&input[start..end]))
            }
            [] | [b'\r'] => Ok(None),
            _ => Err(FrameError::MissingCrlf),
        }
    }

    fn frames(&mut self, len: usize, depth: usize) -> Result<Option<Vec<Frame>>, FrameError> {
        // Every element takes at least three bytes, which bounds an honest
        // count by the input; a lying count must not reserve gigabytes.
        let mut items = Vec::with_capacity(len.min(self.input.len() / 3));
        for _ in 0..len {
            items.push(need!(self.frame(depth + 1)));
        }
        Ok(Some(items))
    }

    fn pairs(
        &mut self,
        len: usize,
        depth: usize,
    ) -> Result<Option<Vec<(Frame, Frame)>>, FrameError> {
        let mut pairs = Vec::with_capacity(len.min(self.input.len() / 6));
        for _ in 0..len {
            let key = need!(self.frame(depth + 1));
            let value = need!(self.frame(depth + 1));
            pairs.push((key, value));
        }
        Ok(Some(pairs))
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

/// RESP3 doubles: `inf`, `-inf`, `nan` or a decimal number.
fn parse_double(text: &[u8]) -> Result<f64, FrameError> {
    let valid = !text.is_empty()
        && text
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+'));
    std::str::from_utf8(text)
        .ok()
        .filter(|_| valid)
        .and_then(|text| text.parse::<f64>().ok())
        .ok_or(FrameError::InvalidDouble)
}
