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

mod decode;
#[cfg(test)]
mod tests;

use decode::decode;
