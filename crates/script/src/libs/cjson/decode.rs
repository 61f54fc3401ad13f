//! `cjson.decode`: JSON text to Lua values, as lua-cjson reads it.

use super::*;

pub(super) fn decode(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    if args.len() != 1 {
        return Err(Raise::arg(1, "expected 1 argument"));
    }
    let text = args.check_string(lua, 1)?;
    let bytes = text.as_bytes();
    // JSON text in UTF-16 or UTF-32 has a NUL in its first two bytes.
    if bytes.len() >= 2 && (bytes[0] == 0 || bytes[1] == 0) {
        return Err(Raise::error(
            "JSON parser does not support UTF-16 or UTF-32",
        ));
    }
    let mut decoder = Decoder {
        lua,
        text: &bytes,
        pos: 0,
        settings: current(shared),
        open: Vec::new(),
        parked: Parking::new(lua)?,
    };
    Ok(one(decoder.run()?))
}

/// A token of JSON text, as lua-cjson's tokenizer tells them apart.
#[derive(Debug)]
enum Kind {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    String(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// What is wrong, as lua-cjson names it in "Expected ... but found ...".
    Error(&'static str),
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    /// Offset of the token, or of the problem for an error token.
    index: usize,
}

impl Token {
    /// The name lua-cjson's errors give what was found.
    fn found(&self) -> &'static str {
        match self.kind {
            Kind::ObjBegin => "T_OBJ_BEGIN",
            Kind::ObjEnd => "T_OBJ_END",
            Kind::ArrBegin => "T_ARR_BEGIN",
            Kind::ArrEnd => "T_ARR_END",
            Kind::String(_) => "T_STRING",
            Kind::Number(_) => "T_NUMBER",
            Kind::Boolean(_) => "T_BOOLEAN",
            Kind::Null => "T_NULL",
            Kind::Colon => "T_COLON",
            Kind::Comma => "T_COMMA",
            Kind::End => "T_END",
            Kind::Error(what) => what,
        }
    }
}

/// A container the decoder is inside of. The table, and for an object the
/// key of the value being read, are parked (see [`Parking`]) under the same
/// slots as the encoder's.
#[derive(Clone, Copy)]
enum Open {
    Object,
    Array { next: i64 },
}

impl Open {
    /// Stack slots the C decoder holds while inside it: the table, and for
    /// an object the key too.
    fn slots(self) -> usize {
        match self {
            Open::Object => 2,
            Open::Array { .. } => 1,
        }
    }
}

/// How a value started.
enum Begun {
    Value(Value),
    /// A container opened, with the token its first element starts with.
    Opened(Token),
}

/// What storing a value led to.
enum Stored {
    /// The first token of the next value to read.
    Next(Token),
    /// The end of the text, after this top-level value.
    Document(Value),
}

/// Reads JSON text into Lua values.
///
/// Like the encoder it keeps the containers it is inside of on a stack of
/// its own rather than recursing. `text` is read as a C string: past its
/// end, and at any NUL byte, it ends.
struct Decoder<'a> {
    lua: &'a Lua,
    text: &'a [u8],
    pos: usize,
    settings: Settings,
    open: Vec<Open>,
    parked: Parking,
}

impl Decoder<'_> {
    fn byte(&self, at: usize) -> u8 {
        self.text.get(at).copied().unwrap_or(0)
    }

    /// Whether the text at `at` starts with `word` (compared exactly).
    fn starts_with(&self, at: usize, word: &[u8]) -> bool {
        word.iter()
            .enumerate()
            .all(|(i, &w)| self.byte(at + i) == w)
    }

    /// Whether the text at `at` starts with `word`, ignoring ASCII case.
    fn starts_with_ignore_case(&self, at: usize, word: &[u8]) -> bool {
        word.iter()
            .enumerate()
            .all(|(i, &w)| self.byte(at + i).eq_ignore_ascii_case(&w))
    }

    fn run(&mut self) -> Outcome<Value> {
        let mut token = self.next_token();
        loop {
            let value = match self.begin_value(token)? {
                Begun::Value(value) => value,
                Begun::Opened(first) => {
                    token = first;
                    continue;
                }
            };
            match self.store(value)? {
                Stored::Next(next) => token = next,
                Stored::Document(document) => return Ok(document),
            }
        }
    }

    /// Starts a value at its first token. A scalar is then complete; `{`
    /// or `[` opens a container, complete at once only when empty.
    fn begin_value(&mut self, token: Token) -> Outcome<Begun> {
        Ok(Begun::Value(match token.kind {
            Kind::ObjBegin => {
                self.descend(3)?;
                let table = self.lua.create_table()?;
                let next = self.next_token();
                if matches!(next.kind, Kind::ObjEnd) {
                    Value::Table(table)
                } else {
                    let key = self.object_key(next)?;
                    self.open_container(Open::Object, table)?;
                    self.park_key(&key)?;
                    return Ok(Begun::Opened(self.next_token()));
                }
            }
            Kind::ArrBegin => {
                self.descend(2)?;
                let table = self.lua.create_table()?;
                let next = self.next_token();
                if matches!(next.kind, Kind::ArrEnd) {
                    Value::Table(table)
                } else {
                    self.open_container(Open::Array { next: 1 }, table)?;
                    return Ok(Begun::Opened(next));
                }
            }
            Kind::String(bytes) => Value::String(self.lua.create_string(bytes)?),
            Kind::Number(n) => Value::Number(n),
            Kind::Boolean(b) => Value::Boolean(b),
            Kind::Null => Value::NULL,
            _ => return Err(parse_error("value", &token)),
        }))
    }

    /// Stores a complete value in the innermost container, and that
    /// container in its own when the value completes it, and so on. Returns
    /// the first token of the next value to read, or the whole document.
    fn store(&mut self, mut value: Value) -> Outcome<Stored> {
        while let Some(level) = self.open.len().checked_sub(1) {
            let table: Table = self.parked.get(table_slot(level))?;
            let after = match self.open[level] {
                Open::Object => {
                    let key: mlua::String = self.parked.get(key_slot(level))?;
                    table.raw_set(key, value)?;
                    let after = self.next_token();
                    match after.kind {
                        Kind::ObjEnd => None,
                        Kind::Comma => {
                            let key_token = self.next_token();
                            let key = self.object_key(key_token)?;
                            self.park_key(&key)?;
                            Some(self.next_token())
                        }
                        _ => return Err(parse_error("comma or object end", &after)),
                    }
                }
                Open::Array { next } => {
                    table.raw_set(next, value)?;
                    self.open[level] = Open::Array { next: next + 1 };
                    let after = self.next_token();
                    match after.kind {
                        Kind::ArrEnd => None,
                        Kind::Comma => Some(self.next_token()),
                        _ => return Err(parse_error("comma or array end", &after)),
                    }
                }
            };
            if let Some(next) = after {
                return Ok(Stored::Next(next));
            }
            self.open.pop();
            self.parked.clear(table_slot(level))?;
            self.parked.clear(key_slot(level))?;
            value = Value::Table(table);
        }
        let end = self.next_token();
        if !matches!(end.kind, Kind::End) {
            return Err(parse_error("the end", &end));
        }
        Ok(Stored::Document(value))
    }

    fn open_container(&mut self, open: Open, table: Table) -> mlua::Result<()> {
        self.parked.put(table_slot(self.open.len()), table)?;
        self.open.push(open);
        Ok(())
    }

    /// Parks the key of the value about to be read in the innermost object.
    fn park_key(&self, key: &[u8]) -> mlua::Result<()> {
        let level = self.open.len() - 1;
        self.parked
            .put(key_slot(level), self.lua.create_string(key)?)
    }

    /// Enters one more level of nesting, failing past the configured depth
    /// or where the C decoder would run out of Lua stack.
    fn descend(&self, needed: usize) -> Outcome<()> {
        let depth = self.open.len() + 1;
        let slots = 1 + self.open.iter().map(|o| o.slots()).sum::<usize>();
        let too_deep = i32::try_from(depth).map_or(true, |d| d > self.settings.decode_max_depth);
        if too_deep || slots + needed > LUA_MAX_C_STACK {
            return Err(Raise::error(format!(
                "Found too many nested data structures ({depth}) at character {}",
                self.pos
            )));
        }
        Ok(())
    }

    /// An object's key, and the colon after it.
    fn object_key(&mut self, token: Token) -> Outcome<Vec<u8>> {
        let Kind::String(key) = token.kind else {
            return Err(parse_error("object key string", &token));
        };
        let colon = self.next_token();
        if !matches!(colon.kind, Kind::Colon) {
            return Err(parse_error("colon", &colon));
        }
        Ok(key)
    }

    fn next_token(&mut self) -> Token {
        while matches!(self.byte(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let index = self.pos;
        let token = |kind| Token { kind, index };
        let single = match self.byte(index) {
            b'{' => Some(Kind::ObjBegin),
            b'}' => Some(Kind::ObjEnd),
            b'[' => Some(Kind::ArrBegin),
            b']' => Some(Kind::ArrEnd),
            b',' => Some(Kind::Comma),
            b':' => Some(Kind::Colon),
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return token(kind);
        }
        match self.byte(index) {
            0 => token(Kind::End),
            b'"' => self.string_token(),
            b'-' | b'0'..=b'9' => {
                if self.settings.decode_invalid_numbers == 0 && self.is_invalid_number() {
                    token(Kind::Error("invalid number"))
                } else {
                    self.number_token()
                }
            }
            b't' | b'f' | b'n' | b'i' | b'I' | b'N' | b'+' => self.word_token(),
            _ => token(Kind::Error("invalid token")),
        }
    }

    /// `true`, `false`, `null`, or with invalid numbers allowed `+1`,
    /// `inf`, `nan` and the like.
    fn word_token(&mut self) -> Token {
        let index = self.pos;
        for (word, kind) in [
            (&b"true"[..], Kind::Boolean(true)),
            (b"false", Kind::Boolean(false)),
            (b"null", Kind::Null),
        ] {
            if self.starts_with(index, word) {
                self.pos += word.len();
                return Token { kind, index };
            }
        }
        if self.settings.decode_invalid_numbers != 0 && self.is_invalid_number() {
            return self.number_token();
        }
        Token {
            kind: Kind::Error("invalid token"),
            index,
        }
    }

    /// lua-cjson's test for the numbers `strtod` reads but JSON forbids: a
    /// leading `+`, hex, leading zeros, `inf` and `nan`.
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.byte(p) == b'+' {
            return true;
        }
        if self.byte(p) == b'-' {
            p += 1;
        }
        let first = self.byte(p);
        if first == b'0' {
            let second = self.byte(p + 1);
            return (second | 0x20) == b'x' || second.is_ascii_digit();
        }
        // The C code compares a plain `char`, signed on x86: bytes from 0x80
        // count as below '9' too.
        if first <= b'9' || first >= 0x80 {
            return false;
        }
        self.starts_with_ignore_case(p, b"inf") || self.starts_with_ignore_case(p, b"nan")
    }

    fn number_token(&mut self) -> Token {
        let index = self.pos;
        match strtod(self, index) {
            Some((value, end)) => {
                self.pos = end;
                Token {
                    kind: Kind::Number(value),
                    index,
                }
            }
            None => Token {
                kind: Kind::Error("invalid number"),
                index,
            },
        }
    }

    fn string_token(&mut self) -> Token {
        let index = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            let c = self.byte(self.pos);
            match c {
                b'"' => break,
                0 => return self.error_here("unexpected end of string"),
                b'\\' => {
                    let unescaped = match self.byte(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 0x0c,
                        b'r' => b'\r',
                        b'u' => {
                            if self.unicode_escape(&mut value) {
                                continue;
                            }
                            return self.error_here("invalid unicode escape code");
                        }
                        _ => return self.error_here("invalid escape code"),
                    };
                    value.push(unescaped);
                    self.pos += 2;
                }
                _ => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Token {
            kind: Kind::String(value),
            index,
        }
    }

    /// An error token at the current position, where lua-cjson reports it.
    fn error_here(&self, what: &'static str) -> Token {
        Token {
            kind: Kind::Error(what),
            index: self.pos,
        }
    }

    /// Reads `\uXXXX` (or a surrogate pair of them) at the current position
    /// as UTF-8 into `out`; false when it is malformed.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(mut codepoint) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut length = 6;
        if codepoint & 0xF800 == 0xD800 {
            // A pair must start with the high surrogate and go on with the low.
            if codepoint & 0x400 != 0 {
                return false;
            }
            if self.byte(self.pos + 6) != b'\\' || self.byte(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = self.hex4(self.pos + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            codepoint = (((codepoint & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            length = 12;
        }
        push_utf8(out, codepoint);
        self.pos += length;
        true
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        (0..4).try_fold(0u32, |acc, i| {
            let digit = char::from(self.byte(at + i)).to_digit(16)?;
            Some(acc << 4 | digit)
        })
    }
}

/// UTF-8 for a code point below 0x110000, surrogates included as lua-cjson
/// writes them (it never checks).
fn push_utf8(out: &mut Vec<u8>, codepoint: u32) {
    // Each shifted and masked part fits a byte.
    #[allow(clippy::cast_possible_truncation)]
    let byte = |v: u32| v as u8;
    match codepoint {
        0..=0x7F => out.push(byte(codepoint)),
        0x80..=0x7FF => {
            out.push(byte(codepoint >> 6) | 0xC0);
            out.push(byte(codepoint & 0x3F) | 0x80);
        }
        0x800..=0xFFFF => {
            out.push(byte(codepoint >> 12) | 0xE0);
            out.push(byte((codepoint >> 6) & 0x3F) | 0x80);
            out.push(byte(codepoint & 0x3F) | 0x80);
        }
        _ => {
            out.push(byte(codepoint >> 18) | 0xF0);
            out.push(byte((codepoint >> 12) & 0x3F) | 0x80);
            out.push(byte((codepoint >> 6) & 0x3F) | 0x80);
            out.push(byte(codepoint & 0x3F) | 0x80);
        }
    }
}

fn parse_error(expected: &str, token: &Token) -> Raise {
    Raise::error(format!(
        "Expected {expected} but found {} at character {}",
        token.found(),
        token.index + 1
    ))
}

/// C's `strtod` (C locale, as glibc reads it) on the text at `start`: the
/// value and where it stops, or `None` when no number starts there.
fn strtod(text: &Decoder<'_>, start: usize) -> Option<(f64, usize)> {
    let mut i = start;
    let negative = match text.byte(i) {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = |v: f64| if negative { -v } else { v };
    if text.starts_with_ignore_case(i, b"inf") {
        let end = if text.starts_with_ignore_case(i + 3, b"inity") {
            i + 8
        } else {
            i + 3
        };
        return Some((sign(f64::INFINITY), end));
    }
    if text.starts_with_ignore_case(i, b"nan") {
        return Some((sign(f64::NAN), nan_end(text, i + 3)));
    }
    if text.byte(i) == b'0' && (text.byte(i + 1) | 0x20) == b'x' {
        if let Some((value, end)) = hex_float(text, i + 2) {
            return Some((sign(value), end));
        }
        // "0x" without hex digits reads as the "0" alone.
    }
    let end = decimal_end(text, i)?;
    let span = std::str::from_utf8(&text.text[start..end]).ok()?;
    // The span is ASCII digits, sign, point and exponent: Rust reads it with
    // the same correctly rounded result as glibc, overflow to infinity and
    // underflow to zero included.
    span.parse::<f64>().ok().map(|value| (value, end))
}

/// Past `nan`, `strtod` also takes a parenthesised run of letters, digits
/// and underscores.
fn nan_end(text: &Decoder<'_>, after: usize) -> usize {
    if text.byte(after) != b'(' {
        return after;
    }
    let mut j = after + 1;
    while text.byte(j).is_ascii_alphanumeric() || text.byte(j) == b'_' {
        j += 1;
    }
    if text.byte(j) == b')' {
        j + 1
    } else {
        after
    }
}

/// End of `digits [. digits] [e [sign] digits]` with at least one mantissa
/// digit; an exponent marker without digits is left unread.
fn decimal_end(text: &Decoder<'_>, mut i: usize) -> Option<usize> {
    let mut digits = 0;
    while text.byte(i).is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if text.byte(i) == b'.' {
        i += 1;
        while text.byte(i).is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(text.byte(i), b'e' | b'E') {
        let mut j = i + 1;
        if matches!(text.byte(j), b'+' | b'-') {
            j += 1;
        }
        if text.byte(j).is_ascii_digit() {
            while text.byte(j).is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    Some(i)
}

/// A C99 hex float body after `0x`: `hexdigits [. hexdigits] [p [sign]
/// digits]` with at least one digit. Returns its magnitude and end.
fn hex_float(text: &Decoder<'_>, start: usize) -> Option<(f64, usize)> {
    let mut i = start;
    let mut digits = 0;
    while text.byte(i).is_ascii_hexdigit() {
        i += 1;
        digits += 1;
    }
    if text.byte(i) == b'.' {
        i += 1;
        while text.byte(i).is_ascii_hexdigit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(text.byte(i), b'p' | b'P') {
        let mut j = i + 1;
        if matches!(text.byte(j), b'+' | b'-') {
            j += 1;
        }
        if text.byte(j).is_ascii_digit() {
            while text.byte(j).is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    let mut literal = b"0x".to_vec();
    literal.extend_from_slice(&text.text[start..i]);
    // Meridian's strict reader rounds hex floats exactly but refuses results
    // that overflow or underflow, where strtod gives infinity or zero.
    let value = meridian_resp::parse_redis_double(&literal)
        .unwrap_or_else(|| out_of_range_hex(&text.text[start..i]));
    Some((value, i))
}

/// Infinity or zero for a hex float too large or too small for a double,
/// told apart by its rough binary magnitude (only its sign matters here).
fn out_of_range_hex(body: &[u8]) -> f64 {
    let (mantissa, exponent) = match body.iter().position(|&b| b == b'p' || b == b'P') {
        Some(p) => (&body[..p], exponent_value(&body[p + 1..])),
        None => (body, 0),
    };
    let integer_digits = mantissa.iter().take_while(|&&b| b != b'.').count();
    let leading_zeros = mantissa
        .iter()
        .filter(|&&b| b != b'.')
        .take_while(|&&b| b == b'0')
        .count();
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let magnitude = 4 * (to_i64(integer_digits) - to_i64(leading_zeros));
    if magnitude.saturating_add(exponent) > 0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// A decimal exponent, saturated far beyond any double's range.
fn exponent_value(text: &[u8]) -> i64 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits
        .iter()
        .fold(0i64, |acc, d| (acc * 10 + i64::from(d - b'0')).min(1 << 40));
    if negative {
        -magnitude
    } else {
        magnitude
    }
}
