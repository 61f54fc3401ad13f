//! Argument parsing and reply helpers shared by the command families, with
//! Redis's exact error texts.

use bytes::Bytes;
use meridian_crdt::Blob;
use meridian_resp::{parse_redis_double, parse_redis_int, Frame};

/// The Redis version Meridian's command set and replies follow.
pub const REDIS_VERSION: &str = "7.0.15";

pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";
pub const ERR_SYNTAX: &str = "ERR syntax error";
pub const ERR_WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";

pub fn syntax_error() -> Frame {
    Frame::error(ERR_SYNTAX)
}

pub fn wrongtype() -> Frame {
    Frame::error(ERR_WRONGTYPE)
}

pub fn not_integer() -> Frame {
    Frame::error(ERR_NOT_INTEGER)
}

pub fn arity_error(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name
    ))
}

pub fn parse_int(arg: &[u8]) -> Result<i64, Frame> {
    parse_redis_int(arg).ok_or_else(not_integer)
}

/// A non-negative integer, with the error Redis gives for negatives where the
/// caller passes one.
pub fn parse_float(arg: &[u8]) -> Result<f64, Frame> {
    parse_redis_double(arg).ok_or_else(|| Frame::error(ERR_NOT_FLOAT))
}

/// `inf`, `+inf`, `-inf` or `infinity` in any case: numbers Redis's
/// `strtold` reads, so its float commands fail on the result rather than
/// on the argument.
pub fn is_infinity(arg: &[u8]) -> bool {
    let t = arg
        .strip_prefix(b"+")
        .or_else(|| arg.strip_prefix(b"-"))
        .unwrap_or(arg);
    t.eq_ignore_ascii_case(b"inf") || t.eq_ignore_ascii_case(b"infinity")
}

pub fn blob(arg: &Bytes) -> Blob {
    Blob::from(&arg[..])
}

pub fn bulk(bytes: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(bytes))
}

/// An array of bulk strings copied into one shared buffer: one allocation
/// for the whole reply instead of one per element (LRANGE and friends).
pub fn bulk_array<'a>(values: impl Iterator<Item = &'a [u8]>) -> Frame {
    let mut buf = bytes::BytesMut::new();
    let mut ends = Vec::new();
    for v in values {
        buf.extend_from_slice(v);
        ends.push(buf.len());
    }
    let buf = buf.freeze();
    let mut start = 0;
    Frame::Array(
        ends.into_iter()
            .map(|end| {
                let b = buf.slice(start..end);
                start = end;
                Frame::Bulk(b)
            })
            .collect(),
    )
}

pub fn eq_ignore_case(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub use meridian_cluster::policy::glob_match;

/// Parsed `[MATCH pattern] [COUNT n] [TYPE t]` of the SCAN family.
pub struct ScanArgs {
    pub cursor: u64,
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub type_filter: Option<Bytes>,
    pub novalues: bool,
}

pub fn parse_scan(
    args: &[Bytes],
    allow_type: bool,
    allow_novalues: bool,
) -> Result<ScanArgs, Frame> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Frame::error("ERR invalid cursor"))?;
    let mut out = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        type_filter: None,
        novalues: false,
    };
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if eq_ignore_case(a, "match") && i + 1 < args.len() {
            out.pattern = Some(args[i + 1].clone());
            i += 2;
        } else if eq_ignore_case(a, "count") && i + 1 < args.len() {
            let n = parse_int(&args[i + 1])?;
            if n < 1 {
                return Err(syntax_error());
            }
            out.count = n as usize;
            i += 2;
        } else if allow_type && eq_ignore_case(a, "type") && i + 1 < args.len() {
            out.type_filter = Some(args[i + 1].clone());
            i += 2;
        } else if allow_novalues && eq_ignore_case(a, "novalues") {
            out.novalues = true;
            i += 1;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(out)
}

/// Redis-style range normalisation for LRANGE/GETRANGE/ZRANGE indexes:
/// negative counts from the end; returns None for an empty range.
pub fn normalize_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if e >= len {
        e = len - 1;
    }
    if s > e || s >= len || len == 0 {
        return None;
    }
    Some((s as usize, e as usize))
}

pub fn lossy(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(arg)
}

/// Finds a container command's subcommand and checks its arity, with
/// Redis's errors: `unknown subcommand` and `wrong number of arguments for
/// 'client|kill' command`.
pub fn subcommand(
    args: &[Bytes],
    table: &[(&'static str, i32)],
    cmd: &str,
) -> Result<&'static str, Frame> {
    let sub = &args[1];
    let Some(&(name, arity)) = table.iter().find(|(n, _)| eq_ignore_case(sub, n)) else {
        let shown = &sub[..sub.len().min(128)];
        return Err(Frame::error(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            lossy(shown),
            cmd.to_ascii_uppercase()
        )));
    };
    let fits = if arity >= 0 {
        args.len() == arity as usize
    } else {
        args.len() >= arity.unsigned_abs() as usize
    };
    if !fits {
        return Err(arity_error(&format!("{cmd}|{name}")));
    }
    Ok(name)
}

/// A HELP reply in Redis's shape: header, the lines, then HELP itself.
pub fn help_reply(cmd: &[u8], lines: &[&str]) -> Frame {
    let mut out = vec![Frame::simple(format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        lossy(cmd).to_ascii_uppercase()
    ))];
    out.extend(lines.iter().map(|l| Frame::simple(*l)));
    out.push(Frame::simple("HELP"));
    out.push(Frame::simple("    Prints this help."));
    Frame::Array(out)
}

/// One key/value of a map reply.
pub fn pair(key: &str, value: Frame) -> (Frame, Frame) {
    (Frame::bulk(key.to_string()), value)
}

/// A database index argument: only 0 exists (one database, as Redis with
/// `databases 1`).
pub fn db_index(arg: &[u8]) -> Result<i32, Frame> {
    let n = parse_redis_int(arg).ok_or_else(not_integer)?;
    i32::try_from(n).map_err(|_| {
        Frame::error(format!(
            "ERR value is out of range, value must between {} and {}",
            i32::MIN,
            i32::MAX
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"key:*:x", b"key:12:x", false));
        assert!(!glob_match(b"key:*:x", b"key:12:y", false));
        assert!(glob_match(b"a\\*b", b"a*b", false));
        assert!(glob_match(b"HELLO", b"hello", true));
    }
}
