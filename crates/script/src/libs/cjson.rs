//! `cjson`: JSON as lua-cjson 2.1.0, the version Redis 7.0 bundles, reads and
//! writes it.
//!
//! What scripts rely on, and what this reproduces:
//! - a table whose keys are all positive integers encodes as an array (holes
//!   become `null`) unless it is excessively sparse, which is an error by
//!   default; any other table, the empty one included, encodes as an object;
//! - numbers are written with `%.14g` (the precision is configurable from 1
//!   to 14), so `0.1` stays `0.1` and `1e20` becomes `1e+20`;
//! - `/` is escaped as `\/`, control bytes and DEL as `\u00XX`, other bytes
//!   (UTF-8 or not) pass through untouched;
//! - nesting is limited to 1000 levels each way by default;
//! - JSON `null` decodes to `cjson.null`, a NULL light userdata;
//! - the decoder reads the text as the C string it is in C: a NUL byte ends
//!   it, so `"[1]\0junk"` decodes to `{1}`;
//! - numbers are read with C's `strtod`, so `0x10`, `Infinity` and `NaN`
//!   decode unless `decode_invalid_numbers(false)`;
//! - errors carry lua-cjson's wording ("Expected value but found invalid
//!   token at character 1").

use std::sync::{Arc, Mutex, PoisonError};

use mlua::{Lua, MultiValue, Table, Value};

use super::{
    add_function, c_double_to_i32, next_pair, number_of, set_fields, type_name, Args, Outcome,
    Parking, Raise, LUA_MAX_C_STACK,
};

/// The `_VERSION` lua-cjson reports.
const VERSION: &str = "2.1.0";

/// The settings one `cjson` table's functions share. `cjson.new()` makes a
/// table with settings of its own.
#[derive(Clone, Copy, Debug)]
struct Settings {
    /// Whether an excessively sparse array encodes as an object (else error).
    sparse_convert: usize,
    /// An array is excessively sparse when its highest index is over this
    /// many times its element count (0 allows any sparseness)...
    sparse_ratio: i32,
    /// ...and over this index, so small arrays never are.
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    /// 0: NaN and infinities are an error; 1: written as `nan`, `inf`,
    /// `-inf`; 2: written as `null`.
    encode_invalid_numbers: usize,
    /// Whether the decoder accepts `strtod`'s extras (hex, `inf`, `nan`,
    /// leading `+` or zeros).
    decode_invalid_numbers: usize,
    /// Only reported back: the C library keeps its encode buffer between
    /// calls when set, which changes nothing a script can see.
    encode_keep_buffer: usize,
    encode_number_precision: i32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            sparse_convert: 0,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: 1,
            encode_keep_buffer: 1,
            encode_number_precision: 14,
        }
    }
}

type Shared = Arc<Mutex<Settings>>;

/// A copy of the current settings.
fn current(shared: &Shared) -> Settings {
    *shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies `change` to the settings and returns what it returns.
fn update<T>(shared: &Shared, change: impl FnOnce(&mut Settings) -> T) -> T {
    change(&mut shared.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Builds a `cjson` table with fresh settings.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    let shared: Shared = Arc::default();
    let with = |f: fn(&Lua, &Args, &Shared) -> Outcome<MultiValue>| {
        let shared = Arc::clone(&shared);
        move |lua: &Lua, args: Args| f(lua, &args, &shared)
    };
    add_function(lua, &table, "encode", with(encode))?;
    add_function(lua, &table, "decode", with(decode))?;
    add_function(lua, &table, "encode_sparse_array", with(cfg_sparse_array))?;
    add_function(lua, &table, "encode_max_depth", with(cfg_encode_max_depth))?;
    add_function(lua, &table, "decode_max_depth", with(cfg_decode_max_depth))?;
    add_function(lua, &table, "encode_number_precision", with(cfg_precision))?;
    add_function(lua, &table, "encode_keep_buffer", with(cfg_keep_buffer))?;
    add_function(
        lua,
        &table,
        "encode_invalid_numbers",
        with(cfg_encode_invalid),
    )?;
    add_function(
        lua,
        &table,
        "decode_invalid_numbers",
        with(cfg_decode_invalid),
    )?;
    add_function(lua, &table, "new", |lua, _args| {
        Ok(MultiValue::from_vec(vec![Value::Table(module(lua)?)]))
    })?;
    table.raw_set("null", Value::NULL)?;
    set_fields(&table, &[("_NAME", "cjson"), ("_VERSION", VERSION)])?;
    Ok(table)
}

fn one(value: Value) -> MultiValue {
    MultiValue::from_vec(vec![value])
}

// ===== Configuration =====

const BOOL_OPTIONS: &[&str] = &["off", "on"];

/// Rejects more than `max` arguments, as every configuration function does.
fn check_arg_count(args: &Args, max: usize) -> Outcome<()> {
    if args.len() > max {
        let n = i32::try_from(max + 1).unwrap_or(i32::MAX);
        return Err(Raise::arg(n, "found too many arguments"));
    }
    Ok(())
}

/// An integer setting: sets it from argument `n` when given, returns it.
///
/// lua-cjson blames argument #1 for a value out of range whichever argument
/// it was, and so does this.
fn integer_option(
    lua: &Lua,
    args: &Args,
    n: usize,
    setting: &mut i32,
    (min, max): (i32, i32),
) -> Outcome<Value> {
    if !args.is_none_or_nil(n) {
        // C stores `luaL_checkinteger`'s result in an int: its low 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        let value = args.check_integer(lua, n)? as i32;
        if !(min..=max).contains(&value) {
            return Err(Raise::arg(
                1,
                format!("expected integer between {min} and {max}"),
            ));
        }
        *setting = value;
    }
    Ok(Value::Integer(i64::from(*setting)))
}

/// An enumerated setting whose index 1 also answers to `true` and index 0 to
/// `false`: sets it from argument `n` when given, returns it as a boolean
/// when it is 0 or 1 and by name otherwise.
fn enum_option(
    lua: &Lua,
    args: &Args,
    n: usize,
    setting: &mut usize,
    options: &[&str],
) -> Outcome<Value> {
    match args.get(n) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = usize::from(*b),
        Some(_) => *setting = check_option(lua, args, n, options)?,
    }
    Ok(match *setting {
        0 | 1 => Value::Boolean(*setting == 1),
        index => Value::String(lua.create_string(options[index])?),
    })
}

/// `luaL_checkoption` without a default: the index of the option named by
/// argument `n`, compared as the C string it is (up to a NUL byte).
fn check_option(lua: &Lua, args: &Args, n: usize, options: &[&str]) -> Outcome<usize> {
    let name = args.check_string(lua, n)?;
    let bytes = name.as_bytes();
    let name = bytes.split(|&b| b == 0).next().unwrap_or_default();
    if let Some(index) = options.iter().position(|o| o.as_bytes() == name) {
        return Ok(index);
    }
    let mut message = b"invalid option '".to_vec();
    message.extend_from_slice(name);
    message.push(b'\'');
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    Err(Raise::arg(n, message))
}

fn cfg_sparse_array(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    check_arg_count(args, 3)?;
    let mut s = current(shared);
    let convert = enum_option(lua, args, 1, &mut s.sparse_convert, BOOL_OPTIONS)?;
    let ratio = integer_option(lua, args, 2, &mut s.sparse_ratio, (0, i32::MAX))?;
    let safe = integer_option(lua, args, 3, &mut s.sparse_safe, (0, i32::MAX))?;
    update(shared, |settings| *settings = s);
    Ok(MultiValue::from_vec(vec![convert, ratio, safe]))
}

/// Runs a one-argument configuration function on a copy of the settings
/// and keeps the copy only when it succeeds.
fn configure(
    args: &Args,
    shared: &Shared,
    f: impl FnOnce(&mut Settings) -> Outcome<Value>,
) -> Outcome<MultiValue> {
    check_arg_count(args, 1)?;
    let mut s = current(shared);
    let value = f(&mut s)?;
    update(shared, |settings| *settings = s);
    Ok(one(value))
}

fn cfg_encode_max_depth(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        integer_option(lua, args, 1, &mut s.encode_max_depth, (1, i32::MAX))
    })
}

fn cfg_decode_max_depth(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        integer_option(lua, args, 1, &mut s.decode_max_depth, (1, i32::MAX))
    })
}

fn cfg_precision(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        integer_option(lua, args, 1, &mut s.encode_number_precision, (1, 14))
    })
}

fn cfg_keep_buffer(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        enum_option(lua, args, 1, &mut s.encode_keep_buffer, BOOL_OPTIONS)
    })
}

fn cfg_encode_invalid(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        enum_option(
            lua,
            args,
            1,
            &mut s.encode_invalid_numbers,
            &["off", "on", "null"],
        )
    })
}

fn cfg_decode_invalid(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    configure(args, shared, |s| {
        enum_option(lua, args, 1, &mut s.decode_invalid_numbers, BOOL_OPTIONS)
    })
}

// ===== Encoding =====

fn encode(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
    if args.len() != 1 {
        return Err(Raise::arg(1, "expected 1 argument"));
    }
    let value = args.get(1).cloned().unwrap_or(Value::Nil);
    let json = Encoder::new(lua, current(shared))?.run(value)?;
    Ok(one(Value::String(lua.create_string(json)?)))
}

/// A table the encoder is inside of. The table itself, and for an object
/// the key reached, are parked (see [`Parking`]).
#[derive(Clone, Copy)]
enum OpenTable {
    Array { length: i32, next: i32 },
    Object { started: bool },
}

impl OpenTable {
    /// Stack slots the C encoder holds while inside this table: the element
    /// it fetched, and for an object the key `lua_next` left too.
    fn slots(self) -> usize {
        match self {
            OpenTable::Array { .. } => 1,
            OpenTable::Object { .. } => 2,
        }
    }
}

/// Parking slot of the table open at `level` (0 for the outermost).
fn table_slot(level: usize) -> usize {
    2 * level + 1
}

/// Parking slot of the key reached in the object open at `level`.
fn key_slot(level: usize) -> usize {
    2 * level + 2
}

/// Writes one value as JSON.
///
/// The C encoder recurses into nested tables; this one keeps the tables it
/// is inside of on a stack of its own, so that deep nesting (up to whatever
/// limit a script sets) cannot exhaust the thread's stack.
struct Encoder<'l> {
    lua: &'l Lua,
    settings: Settings,
    out: Vec<u8>,
    open: Vec<OpenTable>,
    parked: Parking,
}

impl<'l> Encoder<'l> {
    fn new(lua: &'l Lua, settings: Settings) -> mlua::Result<Encoder<'l>> {
        Ok(Encoder {
            lua,
            settings,
            out: Vec::new(),
            open: Vec::new(),
            parked: Parking::new(lua)?,
        })
    }

    fn run(mut self, value: Value) -> Outcome<Vec<u8>> {
        let mut pending = Some(value);
        loop {
            if let Some(value) = pending.take() {
                self.append_value(value)?;
            }
            if self.open.is_empty() {
                return Ok(self.out);
            }
            pending = self.next_element()?;
        }
    }

    /// Moves on in the innermost open table: returns its next element to
    /// write, or closes the table and returns `None`.
    fn next_element(&mut self) -> Outcome<Option<Value>> {
        let level = self.open.len() - 1;
        let table: Table = self.parked.get(table_slot(level))?;
        match self.open[level] {
            OpenTable::Array { length, next } => {
                if next > length {
                    self.close(b']')?;
                    return Ok(None);
                }
                if next > 1 {
                    self.out.push(b',');
                }
                self.open[level] = OpenTable::Array {
                    length,
                    next: next + 1,
                };
                Ok(Some(table.raw_get(next)?))
            }
            OpenTable::Object { started } => {
                let key = self.parked.get(key_slot(level))?;
                let Some((key, value)) = next_pair(self.lua, &table, key)? else {
                    self.close(b'}')?;
                    return Ok(None);
                };
                if started {
                    self.out.push(b',');
                }
                self.open[level] = OpenTable::Object { started: true };
                self.append_key(&key)?;
                self.parked.put(key_slot(level), key)?;
                Ok(Some(value))
            }
        }
    }

    fn close(&mut self, bracket: u8) -> mlua::Result<()> {
        self.out.push(bracket);
        self.open.pop();
        let level = self.open.len();
        self.parked.clear(table_slot(level))?;
        self.parked.clear(key_slot(level))
    }

    /// Appends a scalar, or opens a table.
    fn append_value(&mut self, value: Value) -> Outcome<()> {
        match value {
            Value::String(s) => append_string(&mut self.out, &s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                let n = number_of(&value).unwrap_or_default();
                self.append_number(n)?;
            }
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if b { b"true" } else { b"false" }),
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"null"),
            Value::Table(table) => self.open_table(table)?,
            other => {
                return Err(Raise::error(format!(
                    "Cannot serialise {}: type not supported",
                    type_name(Some(&other))
                )))
            }
        }
        Ok(())
    }

    fn open_table(&mut self, table: Table) -> Outcome<()> {
        let depth = self.open.len() + 1;
        let slots = 1 + self.open.iter().map(|t| t.slots()).sum::<usize>();
        let too_deep = i32::try_from(depth).map_or(true, |d| d > self.settings.encode_max_depth);
        if too_deep || slots + 3 > LUA_MAX_C_STACK {
            return Err(Raise::error(format!(
                "Cannot serialise, excessive nesting ({depth})"
            )));
        }
        let length = self.array_length(&table)?;
        let frame = if length > 0 {
            self.out.push(b'[');
            OpenTable::Array { length, next: 1 }
        } else {
            self.out.push(b'{');
            OpenTable::Object { started: false }
        };
        self.parked.put(table_slot(self.open.len()), table)?;
        self.open.push(frame);
        Ok(())
    }

    /// The length to encode a table as an array with, or 0 or less to encode
    /// it as an object: lua-cjson's rules, including its use of a C `int`
    /// for the highest index (an index past `INT_MAX` makes it negative).
    fn array_length(&self, table: &Table) -> Outcome<i32> {
        let mut max: i32 = 0;
        let mut items: i32 = 0;
        for pair in table.pairs::<Value, Value>() {
            let (key, _) = pair?;
            match number_of(&key) {
                Some(k) if k != 0.0 && k.floor() == k && k >= 1.0 => {
                    if k > f64::from(max) {
                        max = c_double_to_i32(k);
                    }
                    items = items.wrapping_add(1);
                }
                _ => return Ok(-1),
            }
        }
        let s = &self.settings;
        if s.sparse_ratio > 0 && max > items.wrapping_mul(s.sparse_ratio) && max > s.sparse_safe {
            if s.sparse_convert == 0 {
                return Err(Raise::error(
                    "Cannot serialise table: excessively sparse array",
                ));
            }
            return Ok(-1);
        }
        Ok(max)
    }

    /// An object key: a string as is, a number as its text in quotes.
    fn append_key(&mut self, key: &Value) -> Outcome<()> {
        match key {
            Value::String(s) => append_string(&mut self.out, &s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => {
                self.out.push(b'"');
                self.append_number(number_of(key).unwrap_or_default())?;
                self.out.push(b'"');
            }
            other => {
                return Err(Raise::error(format!(
                    "Cannot serialise {}: table key must be a number or string",
                    type_name(Some(other))
                )))
            }
        }
        self.out.push(b':');
        Ok(())
    }

    fn append_number(&mut self, n: f64) -> Outcome<()> {
        match self.settings.encode_invalid_numbers {
            _ if n.is_finite() => {}
            0 => {
                return Err(Raise::error(
                    "Cannot serialise number: must not be NaN or Inf",
                ))
            }
            // lua-cjson writes NaN itself, as some C libraries print "-nan";
            // infinities go on to be printed as "inf" and "-inf".
            1 if n.is_nan() => {
                self.out.extend_from_slice(b"nan");
                return Ok(());
            }
            1 => {}
            _ => {
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
        }
        let precision = usize::try_from(self.settings.encode_number_precision).unwrap_or(14);
        format_g(n, precision, &mut self.out);
        Ok(())
    }
}

/// Appends `bytes` as a JSON string the way lua-cjson escapes it: `"`, `\`
/// and `/` with a backslash, control bytes and DEL as `\u00XX` (or the short
/// form JSON has for some), every other byte as is.
fn append_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x00..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX_LOWER[usize::from(b >> 4)]);
                out.push(HEX_LOWER[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// C's `printf("%.{precision}g")`, which lua-cjson writes numbers with.
///
/// Rust's `{:e}` with a precision rounds the exact binary value to that many
/// digits with ties to even, as glibc does, so the digits agree; this lays
/// them out by `%g`'s rules: scientific notation when the exponent is below
/// -4 or not below the precision, fixed otherwise, trailing zeros dropped.
pub(crate) fn format_g(value: f64, precision: usize, out: &mut Vec<u8>) {
    if value.is_nan() {
        let text: &[u8] = if value.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        };
        out.extend_from_slice(text);
        return;
    }
    if value.is_sign_negative() {
        out.push(b'-');
    }
    let magnitude = value.abs();
    if magnitude.is_infinite() {
        out.extend_from_slice(b"inf");
        return;
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, magnitude);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    // Exactly `precision` digits, the first before the point.
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let significant = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |last| last + 1);
    let p = i64::try_from(precision).unwrap_or(i64::MAX);
    if exponent < -4 || exponent >= p {
        write_scientific(out, &digits[..significant], exponent);
    } else {
        write_fixed(out, &digits, significant, exponent);
    }
}

/// `%g`'s fixed form: `digits` (of which the first `significant` matter)
/// with the point after digit `exponent`, which is below their count.
fn write_fixed(out: &mut Vec<u8>, digits: &[u8], significant: usize, exponent: i64) {
    match usize::try_from(exponent) {
        Ok(before_point) => {
            let int_len = before_point + 1;
            out.extend_from_slice(&digits[..int_len]);
            if significant > int_len {
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..significant]);
            }
        }
        Err(_) => {
            out.extend_from_slice(b"0.");
            for _ in 0..(-exponent - 1) {
                out.push(b'0');
            }
            out.extend_from_slice(&digits[..significant]);
        }
    }
}

/// `%g`'s scientific form: `d.ddde+XX`, at least two exponent digits.
fn write_scientific(out: &mut Vec<u8>, digits: &[u8], exponent: i64) {
    out.push(digits[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend_from_slice(&digits[1..]);
    }
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(magnitude.to_string().as_bytes());
}

// ===== Decoding =====

fn decode(lua: &Lua, args: &Args, shared: &Shared) -> Outcome<MultiValue> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{error_of, eval, eval_in, lua};
    use super::format_g;
    use proptest::prelude::*;

    fn g(value: f64, precision: usize) -> String {
        let mut out = Vec::new();
        format_g(value, precision, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn numbers_print_as_percent_14g() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (100.0, "100"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333333333333"),
            (1023.2, "1023.2"),
            (0.0003, "0.0003"),
            (0.00001, "1e-05"),
            (1e20, "1e+20"),
            (123_456_789_012_345.0, "1.2345678901234e+14"),
            (99_999_999_999_999.5, "1e+14"),
            (12_345_678_901_234.0, "12345678901234"),
            (-1.5e-300, "-1.5e-300"),
            (1.797_693_134_862_315_7e308, "1.7976931348623e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(g(value, 14), expected, "{value:e}");
        }
        assert_eq!(g(0.5, 1), "0.5");
        assert_eq!(g(2.5, 1), "2");
        assert_eq!(g(1.23456, 3), "1.23");
        assert_eq!(g(1234.0, 3), "1.23e+03");
    }

    #[test]
    fn redis_json_numeric_decoding() {
        let text: String = eval(
            "return table.concat(cjson.decode(\"[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]\"), \" \")",
        );
        assert_eq!(text, "0 -5000 -1 0.0003 1023.2 0");
    }

    #[test]
    fn redis_json_string_decoding() {
        let pair: Vec<String> = eval(
            "local decoded = cjson.decode('{\"keya\": \"a\", \"keyb\": \"b\"}') \
             return {decoded.keya, decoded.keyb}",
        );
        assert_eq!(pair, ["a", "b"]);
    }

    /// Redis's "EVAL - JSON smoke test", as it stands in scripting.tcl.
    #[test]
    fn redis_json_smoke_test() {
        let () = eval(
            r#"
            local some_map = {
                s1="Some string",
                n1=100,
                a1={"Some","String","Array"},
                nil1=nil,
                b1=true,
                b2=false}
            local encoded = cjson.encode(some_map)
            local decoded = cjson.decode(encoded)
            assert(table.concat(some_map) == table.concat(decoded))

            cjson.encode_keep_buffer(false)
            encoded = cjson.encode(some_map)
            decoded = cjson.decode(encoded)
            assert(table.concat(some_map) == table.concat(decoded))

            -- Table with numeric keys
            local table1 = {one="one", [1]="one"}
            encoded = cjson.encode(table1)
            decoded = cjson.decode(encoded)
            assert(decoded["one"] == table1["one"])
            assert(decoded["1"] == table1[1])

            -- Array
            local array1 = {[1]="one", [2]="two"}
            encoded = cjson.encode(array1)
            decoded = cjson.decode(encoded)
            assert(table.concat(array1) == table.concat(decoded))

            -- Invalid keys
            local invalid_map = {}
            invalid_map[false] = "false"
            local ok, encoded = pcall(cjson.encode, invalid_map)
            assert(ok == false)

            -- Max depth
            cjson.encode_max_depth(1)
            ok, encoded = pcall(cjson.encode, some_map)
            assert(ok == false)

            cjson.decode_max_depth(1)
            ok, decoded = pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}')
            assert(ok == false)

            -- Invalid numbers
            ok, encoded = pcall(cjson.encode, {num1=0/0})
            assert(ok == false)
            cjson.encode_invalid_numbers(true)
            ok, encoded = pcall(cjson.encode, {num1=0/0})
            assert(ok == true)

            -- Restore defaults
            cjson.decode_max_depth(1000)
            cjson.encode_max_depth(1000)
            cjson.encode_invalid_numbers(false)
            "#,
        );
    }

    #[test]
    fn encodes_scalars() {
        let out: Vec<String> = eval(
            "return {cjson.encode('a'), cjson.encode(1), cjson.encode(-2.5), \
             cjson.encode(true), cjson.encode(false), cjson.encode(nil), \
             cjson.encode(cjson.null), cjson.encode(1/3)}",
        );
        assert_eq!(
            out,
            [
                "\"a\"",
                "1",
                "-2.5",
                "true",
                "false",
                "null",
                "null",
                "0.33333333333333"
            ]
        );
    }

    #[test]
    fn escapes_as_lua_cjson() {
        let lua = lua();
        let out: mlua::String = eval_in(
            &lua,
            r#"return cjson.encode("a/b\"c\\d\b\f\n\r\t\0\1\31\127\128\255é")"#,
        );
        assert_eq!(
            &*out.as_bytes(),
            b"\"a\\/b\\\"c\\\\d\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\\u007f\x80\xff\xc3\xa9\""
        );
    }

    #[test]
    fn tables_encode_as_arrays_or_objects() {
        let out: Vec<String> = eval(
            "return {cjson.encode({}), cjson.encode({1, 'two', true}), \
             cjson.encode({[1]=1, [2]=2, [4]=4}), cjson.encode({a={b={}}}), \
             cjson.encode({[1.5]=1}), cjson.encode({[0]=1}), cjson.encode({['1']=1}), \
             cjson.encode({[-1]=1})}",
        );
        assert_eq!(
            out,
            [
                "{}",
                "[1,\"two\",true]",
                "[1,2,null,4]",
                "{\"a\":{\"b\":{}}}",
                "{\"1.5\":1}",
                "{\"0\":1}",
                "{\"1\":1}",
                "{\"-1\":1}",
            ]
        );
    }

    #[test]
    fn sparse_arrays_follow_the_settings() {
        assert_eq!(
            error_of("cjson.encode({[1]=1, [20]=2})"),
            "user_script:1: Cannot serialise table: excessively sparse array"
        );
        // Up to index 10 any sparseness is fine.
        let small: String = eval("return cjson.encode({[1]=1, [10]=2})");
        assert_eq!(small, "[1,null,null,null,null,null,null,null,null,2]");
        let (settings, converted): (Vec<mlua::Value>, String) = {
            let lua = lua();
            let settings = eval_in(&lua, "return {cjson.encode_sparse_array()}");
            let converted = eval_in(
                &lua,
                "cjson.encode_sparse_array(true) return cjson.encode({[20]=2})",
            );
            (settings, converted)
        };
        assert_eq!(
            format!("{settings:?}"),
            "[Boolean(false), Integer(2), Integer(10)]"
        );
        assert_eq!(converted, "{\"20\":2}");
        let allowed: String =
            eval("cjson.encode_sparse_array(false, 0) return cjson.encode({[3]=3})");
        assert_eq!(allowed, "[null,null,3]");
    }

    #[test]
    fn encode_errors_read_like_lua_cjson() {
        assert_eq!(
            error_of("local t = {} t[false] = 1 cjson.encode(t)"),
            "user_script:1: Cannot serialise boolean: table key must be a number or string"
        );
        assert_eq!(
            error_of("cjson.encode({f = print})"),
            "user_script:1: Cannot serialise function: type not supported"
        );
        assert_eq!(
            error_of("cjson.encode(coroutine.create(function() end))"),
            "user_script:1: Cannot serialise thread: type not supported"
        );
        assert_eq!(
            error_of("cjson.encode({1, 0/0})"),
            "user_script:1: Cannot serialise number: must not be NaN or Inf"
        );
        assert_eq!(
            error_of("cjson.encode({[math.huge] = 1})"),
            "user_script:1: Cannot serialise number: must not be NaN or Inf"
        );
        assert_eq!(
            error_of("cjson.encode(1, 2)"),
            "user_script:1: bad argument #1 to 'encode' (expected 1 argument)"
        );
    }

    #[test]
    fn nesting_is_limited_to_1000_levels() {
        let deep = "local t = {} local top = t for i = 1, 1000 do t[1] = {} t = t[1] end";
        assert_eq!(
            error_of(&format!("{deep} cjson.encode(top)")),
            "user_script:1: Cannot serialise, excessive nesting (1001)"
        );
        let ok: usize = eval(
            "local t = {} local top = t for i = 1, 999 do t[1] = {} t = t[1] end \
             return #cjson.encode(top)",
        );
        assert_eq!(ok, 2000);
        let circular = "local a = {} a.a = a cjson.encode(a)";
        assert_eq!(
            error_of(circular),
            "user_script:1: Cannot serialise, excessive nesting (1001)"
        );
        assert_eq!(
            error_of("cjson.decode(string.rep('[', 1001))"),
            "user_script:1: Found too many nested data structures (1001) at character 1001"
        );
        assert_eq!(
            error_of("cjson.decode_max_depth(1) cjson.decode('{\"obj\": {\"array\": [1,2,3,4]}}')"),
            "user_script:1: Found too many nested data structures (2) at character 9"
        );
    }

    #[test]
    fn raised_limits_stop_where_lua_stack_runs_out() {
        // Objects hold two Lua stack slots a level in the C code: with the
        // limit out of the way the C stack limit of 8000 slots decides.
        assert_eq!(
            error_of("cjson.encode_max_depth(100000) local a = {} a.a = a cjson.encode(a)"),
            "user_script:1: Cannot serialise, excessive nesting (4000)"
        );
        let deepest = "cjson.encode_max_depth(100000) local t = {} local top = t \
                       for i = 1, DEPTH - 1 do t[1] = {} t = t[1] end";
        let ok: usize = eval(&format!(
            "{} return #cjson.encode(top)",
            deepest.replace("DEPTH", "7997")
        ));
        assert_eq!(ok, 2 * 7997);
        assert_eq!(
            error_of(&format!(
                "{} cjson.encode(top)",
                deepest.replace("DEPTH", "7998")
            )),
            "user_script:1: Cannot serialise, excessive nesting (7998)"
        );
        assert_eq!(
            error_of("cjson.decode_max_depth(100000) cjson.decode(string.rep('[', 9000))"),
            "user_script:1: Found too many nested data structures (7999) at character 7999"
        );
    }

    #[test]
    fn large_documents_round_trip() {
        let () = eval(
            "local map, list = {}, {} \
             for i = 1, 20000 do map['k' .. i] = {v = 'x' .. i} list[i] = tostring(i) end \
             local back = cjson.decode(cjson.encode({map = map, list = list})) \
             assert(#back.list == 20000 and back.list[20000] == '20000') \
             local n = 0 for k, v in pairs(back.map) do assert(v.v == 'x' .. k:sub(2)) n = n + 1 end \
             assert(n == 20000)",
        );
    }

    #[test]
    fn decodes_values() {
        let out: Vec<String> = eval(
            r#"local t = cjson.decode('{"a":[1,2,{"b":null}],"c":true,"d":"x\\u00e9\\ud83d\\ude00\\/"}')
               return {tostring(#t.a), tostring(t.a[3].b == cjson.null), tostring(t.c), t.d,
                       type(cjson.decode('null')), tostring(cjson.decode(' 12 ')),
                       tostring(cjson.decode('"\\u0000"') == '\0'), tostring(cjson.decode('-0'))}"#,
        );
        assert_eq!(
            out,
            ["3", "true", "true", "xé😀/", "userdata", "12", "true", "-0"]
        );
    }

    #[test]
    fn decode_reads_the_text_as_a_c_string() {
        let n: i64 = eval("return cjson.decode('[1]\\0junk')[1]");
        assert_eq!(n, 1);
        assert_eq!(
            error_of("cjson.decode('\"ab\\0cd\"')"),
            "user_script:1: Expected value but found unexpected end of string at character 4"
        );
        assert_eq!(
            error_of("cjson.decode('[\\0')"),
            "user_script:1: JSON parser does not support UTF-16 or UTF-32"
        );
    }

    #[test]
    fn decode_errors_read_like_lua_cjson() {
        let cases = [
            ("''", "Expected value but found T_END at character 1"),
            (
                "'x'",
                "Expected value but found invalid token at character 1",
            ),
            (
                "'{'",
                "Expected object key string but found T_END at character 2",
            ),
            (
                "'[1,]'",
                "Expected value but found T_ARR_END at character 4",
            ),
            (
                "'[1 2]'",
                "Expected comma or array end but found T_NUMBER at character 4",
            ),
            (
                "'{\"a\" 1}'",
                "Expected colon but found T_NUMBER at character 6",
            ),
            (
                "'{\"a\":1,}'",
                "Expected object key string but found T_OBJ_END at character 8",
            ),
            (
                "'{\"a\":1 \"b\"}'",
                "Expected comma or object end but found T_STRING at character 8",
            ),
            (
                "'{1:2}'",
                "Expected object key string but found T_NUMBER at character 2",
            ),
            (
                "'1 2'",
                "Expected the end but found T_NUMBER at character 3",
            ),
            (
                "'\"abc'",
                "Expected value but found unexpected end of string at character 5",
            ),
            (
                "'\"a\\\\qb\"'",
                "Expected value but found invalid escape code at character 3",
            ),
            (
                "'\"\\\\u12\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'\"\\\\udc00\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'\"\\\\ud800x\"'",
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "'tru'",
                "Expected value but found invalid token at character 1",
            ),
            (
                "'-'",
                "Expected value but found invalid number at character 1",
            ),
            (
                "'+'",
                "Expected value but found invalid number at character 1",
            ),
            (
                "'[nil]'",
                "Expected value but found invalid token at character 2",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(
                error_of(&format!("cjson.decode({text})")),
                format!("user_script:1: {message}"),
                "{text}"
            );
        }
        assert_eq!(
            error_of("cjson.decode()"),
            "user_script:1: bad argument #1 to 'decode' (expected 1 argument)"
        );
        assert_eq!(
            error_of("cjson.decode({})"),
            "user_script:1: bad argument #1 to 'decode' (string expected, got table)"
        );
    }

    #[test]
    fn invalid_numbers_follow_the_settings() {
        let decoded: Vec<String> = eval(
            "return {tostring(cjson.decode('0x10')), tostring(cjson.decode('+5')), \
             tostring(cjson.decode('-Infinity')), tostring(cjson.decode('007')), \
             tostring(cjson.decode('[1e400]')[1]), tostring(cjson.decode('0x1.8p1')), \
             tostring(cjson.decode('NaN') ~= cjson.decode('NaN'))}",
        );
        assert_eq!(decoded, ["16", "5", "-inf", "7", "inf", "3", "true"]);
        assert_eq!(
            error_of("cjson.decode_invalid_numbers(false) cjson.decode('0x10')"),
            "user_script:1: Expected value but found invalid number at character 1"
        );
        assert_eq!(
            error_of("cjson.decode_invalid_numbers(false) cjson.decode('Infinity')"),
            "user_script:1: Expected value but found invalid token at character 1"
        );
        let encoded: Vec<String> = eval(
            "local r = {cjson.encode_invalid_numbers(true)} \
             r[2] = cjson.encode({0/0, math.huge, -math.huge}) \
             r[3] = cjson.encode_invalid_numbers('null') \
             r[4] = cjson.encode({0/0, math.huge}) \
             return {tostring(r[1]), r[2], r[3], r[4]}",
        );
        assert_eq!(encoded, ["true", "[nan,inf,-inf]", "null", "[null,null]"]);
    }

    #[test]
    fn configuration_functions_check_their_arguments() {
        let values: Vec<String> = eval(
            "return {tostring(cjson.encode_max_depth()), tostring(cjson.decode_max_depth(5)), \
             tostring(cjson.encode_number_precision(3)), cjson.encode(math.pi), \
             tostring(cjson.encode_keep_buffer('off')), tostring(cjson.decode_invalid_numbers('on')), \
             tostring(cjson.encode_invalid_numbers()) }",
        );
        assert_eq!(values, ["1000", "5", "3", "3.14", "false", "true", "false"]);
        let cases = [
            (
                "cjson.encode_number_precision(15)",
                "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)",
            ),
            (
                "cjson.encode_max_depth(0)",
                "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)",
            ),
            (
                "cjson.encode_sparse_array(true, -1)",
                "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
            ),
            (
                "cjson.encode_max_depth('x')",
                "bad argument #1 to 'encode_max_depth' (number expected, got string)",
            ),
            (
                "cjson.encode_invalid_numbers('maybe')",
                "bad argument #1 to 'encode_invalid_numbers' (invalid option 'maybe')",
            ),
            (
                "cjson.encode_keep_buffer({})",
                "bad argument #1 to 'encode_keep_buffer' (string expected, got table)",
            ),
            (
                "cjson.decode_max_depth(1, 2)",
                "bad argument #2 to 'decode_max_depth' (found too many arguments)",
            ),
        ];
        for (code, message) in cases {
            assert_eq!(
                error_of(code),
                format!("user_script:1: {message}"),
                "{code}"
            );
        }
    }

    #[test]
    fn new_gives_independent_settings() {
        let out: Vec<String> = eval(
            "local other = cjson.new() other.encode_number_precision(2) \
             return {other.encode(1/3), cjson.encode(1/3), other._NAME, other._VERSION, \
             tostring(other.null == cjson.null), type(other.new)}",
        );
        assert_eq!(
            out,
            [
                "0.33",
                "0.33333333333333",
                "cjson",
                "2.1.0",
                "true",
                "function"
            ]
        );
    }

    /// A JSON document as the round trip test builds it.
    #[derive(Clone, Debug)]
    enum Json {
        Null,
        Bool(bool),
        Number(f64),
        Text(Vec<u8>),
        Array(Vec<Json>),
        Object(Vec<(Vec<u8>, Json)>),
    }

    /// Numbers `%.14g` writes exactly: integers below 10^14 and eighths.
    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-99_999_999_999_999i64..99_999_999_999_999).prop_map(|i| i as f64),
            (-1_000_000i32..1_000_000).prop_map(|i| f64::from(i) / 8.0),
        ]
    }

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number().prop_map(Json::Number),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(Json::Text),
        ];
        leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..6).prop_map(Json::Array),
                prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..6), inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    fn to_lua(lua: &mlua::Lua, json: &Json) -> mlua::Result<mlua::Value> {
        Ok(match json {
            Json::Null => mlua::Value::NULL,
            Json::Bool(b) => mlua::Value::Boolean(*b),
            Json::Number(n) => mlua::Value::Number(*n),
            Json::Text(t) => mlua::Value::String(lua.create_string(t)?),
            Json::Array(items) => {
                let table = lua.create_table()?;
                for (i, item) in items.iter().enumerate() {
                    table.raw_set(i + 1, to_lua(lua, item)?)?;
                }
                mlua::Value::Table(table)
            }
            Json::Object(fields) => {
                let table = lua.create_table()?;
                for (key, item) in fields {
                    table.raw_set(lua.create_string(key)?, to_lua(lua, item)?)?;
                }
                mlua::Value::Table(table)
            }
        })
    }

    /// Whether a decoded Lua value is the document (an empty array comes
    /// back as the empty object it is encoded as).
    fn same(lua: &mlua::Lua, json: &Json, value: &mlua::Value) -> bool {
        match (json, value) {
            (Json::Null, mlua::Value::LightUserData(p)) => p.0.is_null(),
            (Json::Bool(a), mlua::Value::Boolean(b)) => a == b,
            (Json::Number(n), v) => super::number_of(v) == Some(*n),
            (Json::Text(t), mlua::Value::String(s)) => *t == *s.as_bytes(),
            (Json::Array(items), mlua::Value::Table(t)) => {
                t.raw_len() == items.len()
                    && t.clone().pairs::<mlua::Value, mlua::Value>().count() == items.len()
                    && items.iter().enumerate().all(|(i, item)| {
                        t.raw_get::<mlua::Value>(i + 1)
                            .is_ok_and(|v| same(lua, item, &v))
                    })
            }
            (Json::Object(fields), mlua::Value::Table(t)) => {
                t.clone().pairs::<mlua::Value, mlua::Value>().count() == fields.len()
                    && fields.iter().all(|(key, item)| {
                        let key = lua.create_string(key).expect("string");
                        t.raw_get::<mlua::Value>(key)
                            .is_ok_and(|v| same(lua, item, &v))
                    })
            }
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trips_through_encode_and_decode(doc in json()) {
            let lua = lua();
            let value = to_lua(&lua, &doc).expect("builds");
            let round_trip: mlua::Function = eval_in(
                &lua,
                "return function(v) return cjson.decode(cjson.encode(v)) end",
            );
            let back: mlua::Value = round_trip.call(value).expect("round trip");
            prop_assert!(same(&lua, &doc, &back), "{doc:?} came back as {back:?}");
        }
    }
}
