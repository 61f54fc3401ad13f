//! `cmsgpack`: MessagePack as lua-cmsgpack 0.4.0, the version Redis 7.0
//! bundles, packs and unpacks it.
//!
//! What scripts rely on, and what this reproduces:
//! - `pack(...)` packs each argument and concatenates the results;
//! - a number is packed as an integer when it is integral and fits an
//!   `int64`, else as a float 32 when that loses nothing, else as a float 64,
//!   and integers take the smallest encoding;
//! - a table whose keys are exactly 1..n packs as an array, any other as a
//!   map, the empty table as an empty array;
//! - tables nested 16 deep pack as nil, so circular references terminate;
//! - strings use the raw/str encodings (fixstr, str 8, str 16, str 32);
//!   functions, userdata, threads and nil pack as nil;
//! - `unpack` returns every value in the string, `unpack_one` and
//!   `unpack_limit` return the offset to go on from first (-1 at the end);
//! - unsigned 64-bit values are read through a signed `lua_Integer`, so
//!   those past 2^63 come out negative, as in Redis.

use mlua::{Lua, MultiValue, Table, Value};

use super::{
    add_function, c_double_to_i32, c_double_to_i64, number_of, set_fields, Args, Outcome, Parking,
    Raise, Reply, LUA_MAX_C_STACK,
};

/// Tables nested this deep pack as nil (`LUACMSGPACK_MAX_NESTING`).
const MAX_NESTING: usize = 16;

/// Builds the `cmsgpack` table.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    add_function(lua, &table, "pack", pack)?;
    add_function(lua, &table, "unpack", unpack)?;
    add_function(lua, &table, "unpack_one", unpack_one)?;
    add_function(lua, &table, "unpack_limit", unpack_limit)?;
    set_fields(
        &table,
        &[
            ("_NAME", "cmsgpack"),
            ("_VERSION", "lua-cmsgpack 0.4.0"),
            ("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo"),
            ("_DESCRIPTION", "MessagePack C implementation for Lua"),
        ],
    )?;
    Ok(table)
}

// ===== Packing =====

fn pack(lua: &Lua, args: Args) -> Outcome<MultiValue> {
    if args.len() == 0 {
        return Err(Raise::arg(0, "MessagePack pack needs input."));
    }
    // The C code asks Lua for one more stack slot per argument.
    if args.len() * 2 > LUA_MAX_C_STACK {
        return Err(Raise::arg(0, "Too many arguments for MessagePack pack."));
    }
    let mut out = Vec::new();
    for n in 1..=args.len() {
        let value = args.get(n).cloned().unwrap_or(Value::Nil);
        pack_value(&mut out, value, 0)?;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(out)?,
    )]))
}

/// Packs a value found `level` tables deep.
fn pack_value(out: &mut Vec<u8>, value: Value, level: usize) -> Outcome<()> {
    match value {
        Value::String(s) => pack_bytes(out, &s.as_bytes()),
        Value::Boolean(b) => out.push(if b { 0xc3 } else { 0xc2 }),
        Value::Integer(_) | Value::Number(_) => {
            pack_number(out, number_of(&value).unwrap_or_default())
        }
        Value::Table(table) if level < MAX_NESTING => pack_table(out, &table, level)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

/// Packs a table by walking it twice, to count and then to write, as the C
/// code does; nothing from it is held in between (see [`super::Parking`]).
fn pack_table(out: &mut Vec<u8>, table: &Table, level: usize) -> Outcome<()> {
    match array_length(table)? {
        Some(length) => {
            pack_length(out, length, [0x90, 0xdc, 0xdd]);
            for i in 1..=length {
                pack_value(out, table.raw_get(i)?, level + 1)?;
            }
        }
        None => {
            let mut count = 0;
            table.for_each(|_: Value, _: Value| {
                count += 1;
                Ok(())
            })?;
            pack_length(out, count, [0x80, 0xde, 0xdf]);
            for pair in table.pairs::<Value, Value>() {
                let (key, value) = pair?;
                pack_value(out, key, level + 1)?;
                pack_value(out, value, level + 1)?;
            }
        }
    }
    Ok(())
}

/// The length of a table whose keys are exactly 1..n, which packs as an
/// array; `None` for any other. Keys must be numbers that fit a C `int`, as
/// lua-cmsgpack checks them.
fn array_length(table: &Table) -> Outcome<Option<usize>> {
    let mut count: usize = 0;
    let mut max: i32 = 0;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let Some(n) = number_of(&key) else {
            return Ok(None);
        };
        if n <= 0.0 || n.is_infinite() || f64::from(c_double_to_i32(n)) != n {
            return Ok(None);
        }
        max = max.max(c_double_to_i32(n));
        count += 1;
    }
    Ok((usize::try_from(max).ok() == Some(count)).then_some(count))
}

/// lua-cmsgpack's choice for a number: an integer when it is integral and
/// fits an `int64`, else a float 32 when that is exact, else a float 64.
fn pack_number(out: &mut Vec<u8>, n: f64) {
    // `(int64_t)n == n` in C, with x86-64's conversion of out-of-range values.
    #[allow(clippy::cast_precision_loss)]
    let integral = n.is_finite() && c_double_to_i64(n) as f64 == n;
    if integral {
        pack_integer(out, c_double_to_i64(n));
        return;
    }
    #[allow(clippy::cast_possible_truncation)]
    let single = n as f32;
    if f64::from(single) == n {
        out.push(0xca);
        out.extend_from_slice(&single.to_bits().to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_bits().to_be_bytes());
    }
}

/// The smallest integer encoding, unsigned ones for non-negative values.
fn pack_integer(out: &mut Vec<u8>, n: i64) {
    if let Ok(u) = u64::try_from(n) {
        match u {
            0..=0x7f => out.push(low_byte(u)),
            0x80..=0xff => out.extend_from_slice(&[0xcc, low_byte(u)]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&u.to_be_bytes()[6..]);
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&u.to_be_bytes()[4..]);
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
        }
        return;
    }
    let bytes = n.to_be_bytes();
    match n {
        -32..=-1 => out.push(bytes[7]),
        -128..=-33 => out.extend_from_slice(&[0xd0, bytes[7]]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&bytes[6..]);
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&bytes[4..]);
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&bytes);
        }
    }
}

fn low_byte(u: u64) -> u8 {
    u.to_le_bytes()[0]
}

fn pack_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    let be = (len as u64).to_be_bytes();
    match len {
        0..=31 => out.push(0xa0 | be[7]),
        32..=0xff => out.extend_from_slice(&[0xd9, be[7]]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&be[6..]);
        }
        // Like the C code, a string of 4 GiB or more gets its length's low
        // 32 bits.
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&be[4..]);
        }
    }
    out.extend_from_slice(bytes);
}

/// An array or map header: `codes` are the fix, 16-bit and 32-bit forms.
fn pack_length(out: &mut Vec<u8>, length: usize, codes: [u8; 3]) {
    let be = (length as u64).to_be_bytes();
    match length {
        0..=15 => out.push(codes[0] | be[7]),
        16..=0xffff => {
            out.push(codes[1]);
            out.extend_from_slice(&be[6..]);
        }
        _ => {
            out.push(codes[2]);
            out.extend_from_slice(&be[4..]);
        }
    }
}

// ===== Unpacking =====

fn unpack(lua: &Lua, args: Args) -> Outcome<Reply> {
    let text = args.check_string(lua, 1)?;
    // The C function leaves all its arguments on the stack under the results.
    unpack_full(lua, &text.as_bytes(), 0, 0, args.len())
}

fn unpack_one(lua: &Lua, args: Args) -> Outcome<Reply> {
    let offset = args.opt_integer(lua, 2, 0)?;
    let text = args.check_string(lua, 1)?;
    unpack_full(lua, &text.as_bytes(), 1, offset, 1)
}

fn unpack_limit(lua: &Lua, args: Args) -> Outcome<Reply> {
    let limit = args.check_integer(lua, 2)?;
    let offset = args.opt_integer(lua, 3, 0)?;
    let text = args.check_string(lua, 1)?;
    unpack_full(lua, &text.as_bytes(), limit, offset, 1)
}

/// Unpacks up to `limit` values from `offset` on; with both 0 (which
/// `unpack_limit(s, 0)` also asks for) every value, without the offset
/// in front. `base_slots` is the stack the C function starts with.
fn unpack_full(
    lua: &Lua,
    text: &[u8],
    limit: i64,
    offset: i64,
    base_slots: usize,
) -> Outcome<Reply> {
    let all = limit == 0 && offset == 0;
    // The C messages print these through `%d`.
    #[allow(clippy::cast_possible_truncation)]
    let (shown_offset, shown_len) = (offset as i32, text.len() as i32);
    if offset < 0 || limit < 0 {
        // lua-cmsgpack prints the input length where it means the limit.
        return Err(Raise::error(format!(
            "Invalid request to unpack with offset of {shown_offset} and limit of {shown_len}."
        )));
    }
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if start > text.len() {
        return Err(Raise::error(format!(
            "Start offset {shown_offset} greater than input length {shown_len}."
        )));
    }
    let limit = if all { i64::from(i32::MAX) } else { limit };
    let mut cursor = Cursor { text, pos: start };
    // Unless all values are asked for, the offset goes in front of them.
    let first_slot = if all { 1 } else { 2 };
    let results = Parking::new(lua)?;
    let mut count = 0;
    while cursor.left() > 0 && i64::try_from(count).unwrap_or(i64::MAX) < limit {
        let value = Unpacker::new(lua, base_slots + count)?.run(&mut cursor)?;
        results.put(first_slot + count, value)?;
        count += 1;
    }
    let table = results.into_table();
    if all {
        return Ok(Reply::Spread(table, count));
    }
    if base_slots + count + 1 > LUA_MAX_C_STACK {
        return Err(Raise::stack_overflow("in function mp_unpack_full"));
    }
    let next = if cursor.left() == 0 {
        -1
    } else {
        i64::try_from(cursor.pos).unwrap_or(i64::MAX)
    };
    table.raw_set(1, next)?;
    Ok(Reply::Spread(table, count + 1))
}

/// Where unpacking went wrong, in lua-cmsgpack's words.
fn missing_bytes() -> Raise {
    Raise::error("Missing bytes in input.")
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.text.len() - self.pos
    }

    /// The next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Outcome<&'a [u8]> {
        if self.left() < n {
            return Err(missing_bytes());
        }
        let bytes = &self.text[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// A big-endian length of `n` bytes (1, 2 or 4).
    fn length(&mut self, n: usize) -> Outcome<usize> {
        let bytes = self.take(n)?;
        let value = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        Ok(usize::try_from(value).unwrap_or(usize::MAX))
    }

    fn array<const N: usize>(&mut self) -> Outcome<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }
}

/// A container being filled. Its table, and a map's key while its value is
/// read, are parked (see [`Parking`]): slot `2i + 1` and `2i + 2` for the
/// container `i` levels in.
#[derive(Clone, Copy)]
enum Open {
    Array { left: usize, next: i64 },
    Map { left: usize, has_key: bool },
}

impl Open {
    /// Stack slots the C decoder holds for this container while it reads
    /// an element: the table and the array index, or the table and, while
    /// the value is read, the key.
    fn slots(self) -> usize {
        match self {
            Open::Array { .. } | Open::Map { has_key: true, .. } => 2,
            Open::Map { has_key: false, .. } => 1,
        }
    }
}

/// What the type byte announced.
enum Item {
    Value(Value),
    Array(usize),
    Map(usize),
}

/// Reads one top-level value. Containers are kept on a stack of its own
/// rather than recursed into, so hostile nesting cannot exhaust the thread's
/// stack; the Lua stack the C code would use is counted to fail where it
/// fails.
struct Unpacker<'l> {
    lua: &'l Lua,
    base_slots: usize,
    open: Vec<Open>,
    parked: Parking,
}

impl<'l> Unpacker<'l> {
    fn new(lua: &'l Lua, base_slots: usize) -> mlua::Result<Unpacker<'l>> {
        Ok(Unpacker {
            lua,
            base_slots,
            open: Vec::new(),
            parked: Parking::new(lua)?,
        })
    }

    fn slots(&self) -> usize {
        self.base_slots + self.open.iter().map(|o| o.slots()).sum::<usize>()
    }

    fn run(mut self, cursor: &mut Cursor<'_>) -> Outcome<Value> {
        loop {
            if cursor.left() == 0 {
                return Err(missing_bytes());
            }
            if self.slots() + 1 > LUA_MAX_C_STACK {
                return Err(Raise::stack_overflow(
                    "too many return values at once; use unpack_one or unpack_limit instead.",
                ));
            }
            let value = match read_item(self.lua, cursor)? {
                Item::Value(value) => value,
                Item::Array(len) => {
                    if self.slots() + 2 > LUA_MAX_C_STACK {
                        return Err(Raise::stack_overflow("in function mp_decode_to_lua_array"));
                    }
                    let table = self
                        .lua
                        .create_table_with_capacity(len.min(cursor.left()), 0)?;
                    if len == 0 {
                        Value::Table(table)
                    } else {
                        self.open(Open::Array { left: len, next: 1 }, table)?;
                        continue;
                    }
                }
                Item::Map(len) => {
                    let table = self
                        .lua
                        .create_table_with_capacity(0, len.min(cursor.left() / 2))?;
                    if len == 0 {
                        Value::Table(table)
                    } else {
                        self.open(
                            Open::Map {
                                left: len,
                                has_key: false,
                            },
                            table,
                        )?;
                        continue;
                    }
                }
            };
            if let Some(done) = self.store(value)? {
                return Ok(done);
            }
        }
    }

    fn open(&mut self, open: Open, table: Table) -> mlua::Result<()> {
        self.parked.put(2 * self.open.len() + 1, table)?;
        self.open.push(open);
        Ok(())
    }

    /// Stores a complete value in the container being filled, and that
    /// container in its own when the value completes it, and so on; returns
    /// the top-level value once it is complete.
    fn store(&mut self, mut value: Value) -> Outcome<Option<Value>> {
        while let Some(level) = self.open.len().checked_sub(1) {
            let (table_slot, key_slot) = (2 * level + 1, 2 * level + 2);
            let table: Table = self.parked.get(table_slot)?;
            let left = match self.open[level] {
                Open::Array { left, next } => {
                    table.raw_set(next, value)?;
                    self.open[level] = Open::Array {
                        left: left - 1,
                        next: next + 1,
                    };
                    left - 1
                }
                Open::Map {
                    left,
                    has_key: false,
                } => {
                    self.parked.put(key_slot, value)?;
                    self.open[level] = Open::Map {
                        left,
                        has_key: true,
                    };
                    return Ok(None);
                }
                Open::Map {
                    left,
                    has_key: true,
                } => {
                    let key: Value = self.parked.get(key_slot)?;
                    self.parked.clear(key_slot)?;
                    set_field(&table, key, value)?;
                    self.open[level] = Open::Map {
                        left: left - 1,
                        has_key: false,
                    };
                    left - 1
                }
            };
            if left > 0 {
                return Ok(None);
            }
            self.open.pop();
            self.parked.clear(table_slot)?;
            value = Value::Table(table);
        }
        Ok(Some(value))
    }
}

/// `t[k] = v` on a fresh table, failing as Lua does on a nil or NaN key.
fn set_field(table: &Table, key: Value, value: Value) -> Outcome<()> {
    match key {
        Value::Nil => Err(Raise::bare("table index is nil")),
        Value::Number(n) if n.is_nan() => Err(Raise::bare("table index is NaN")),
        key => Ok(table.raw_set(key, value)?),
    }
}

/// Reads a type byte and what follows it, up to the elements of a container.
fn read_item(lua: &Lua, cursor: &mut Cursor<'_>) -> Outcome<Item> {
    let [code] = cursor.array::<1>()?;
    let integer = |n: i64| Ok(Item::Value(Value::Integer(n)));
    match code {
        0x00..=0x7f => integer(i64::from(code)),
        0x80..=0x8f => Ok(Item::Map(usize::from(code & 0x0f))),
        0x90..=0x9f => Ok(Item::Array(usize::from(code & 0x0f))),
        0xa0..=0xbf => read_string(lua, cursor, usize::from(code & 0x1f)),
        0xc0 => Ok(Item::Value(Value::Nil)),
        0xc2 => Ok(Item::Value(Value::Boolean(false))),
        0xc3 => Ok(Item::Value(Value::Boolean(true))),
        0xca => {
            let f = f32::from_be_bytes(cursor.array()?);
            Ok(Item::Value(Value::Number(f64::from(f))))
        }
        0xcb => Ok(Item::Value(Value::Number(f64::from_be_bytes(
            cursor.array()?,
        )))),
        0xcc => integer(i64::from(u8::from_be_bytes(cursor.array()?))),
        0xcd => integer(i64::from(u16::from_be_bytes(cursor.array()?))),
        0xce => integer(i64::from(u32::from_be_bytes(cursor.array()?))),
        // Pushed through a signed `lua_Integer` in C: past 2^63 it wraps.
        0xcf => integer(i64::from_be_bytes(cursor.array()?)),
        0xd0 => integer(i64::from(i8::from_be_bytes(cursor.array()?))),
        0xd1 => integer(i64::from(i16::from_be_bytes(cursor.array()?))),
        0xd2 => integer(i64::from(i32::from_be_bytes(cursor.array()?))),
        0xd3 => integer(i64::from_be_bytes(cursor.array()?)),
        0xd9 => {
            let len = cursor.length(1)?;
            read_string(lua, cursor, len)
        }
        0xda => {
            let len = cursor.length(2)?;
            read_string(lua, cursor, len)
        }
        0xdb => {
            let len = cursor.length(4)?;
            read_string(lua, cursor, len)
        }
        0xdc => Ok(Item::Array(cursor.length(2)?)),
        0xdd => Ok(Item::Array(cursor.length(4)?)),
        0xde => Ok(Item::Map(cursor.length(2)?)),
        0xdf => Ok(Item::Map(cursor.length(4)?)),
        0xe0..=0xff => integer(i64::from(i8::from_be_bytes([code]))),
        // Bin, ext and the reserved byte: lua-cmsgpack reads none of them.
        _ => Err(Raise::error("Bad data format in input.")),
    }
}

fn read_string(lua: &Lua, cursor: &mut Cursor<'_>, len: usize) -> Outcome<Item> {
    let bytes = cursor.take(len)?;
    Ok(Item::Value(Value::String(lua.create_string(bytes)?)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error_of, eval, eval_in, lua};
    use proptest::prelude::*;

    /// The hex of `cmsgpack.pack(<args>)`.
    fn packed(args: &str) -> String {
        eval(&format!(
            "local s = cmsgpack.pack({args}) \
             return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))"
        ))
    }

    #[test]
    fn redis_packs_double() {
        assert_eq!(packed("0.1"), "cb3fb999999999999a");
    }

    #[test]
    fn redis_packs_negative_int64() {
        assert_eq!(packed("-1099511627776"), "d3ffffff0000000000");
    }

    /// Redis's "EVAL - cmsgpack pack/unpack smoke test", as it stands in
    /// scripting.tcl.
    #[test]
    fn redis_pack_unpack_smoke_test() {
        let () = eval(
            r#"
            local str_lt_32 = string.rep("x", 30)
            local str_lt_255 = string.rep("x", 250)
            local str_lt_65535 = string.rep("x", 65530)
            local str_long = string.rep("x", 100000)
            local array_lt_15 = {1, 2, 3, 4, 5}
            local array_lt_65535 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
            local array_big = {}
            for i=1, 100000 do
                array_big[i] = i
            end
            local map_lt_15 = {a=1, b=2}
            local map_big = {}
            for i=1, 100000 do
                map_big[tostring(i)] = i
            end
            local some_map = {
                s1=str_lt_32,
                s2=str_lt_255,
                s3=str_lt_65535,
                s4=str_long,
                d1=0.1,
                i1=1,
                i2=250,
                i3=65530,
                i4=100000,
                i5=2^40,
                i6=-1,
                i7=-120,
                i8=-32000,
                i9=-100000,
                i10=-3147483648,
                a1=array_lt_15,
                a2=array_lt_65535,
                a3=array_big,
                m1=map_lt_15,
                m2=map_big,
                b1=false,
                b2=true,
                n=nil
            }
            local encoded = cmsgpack.pack(some_map)
            local decoded = cmsgpack.unpack(encoded)
            assert(table.concat(some_map) == table.concat(decoded))
            local offset, decoded_one = cmsgpack.unpack_one(encoded, 0)
            assert(table.concat(some_map) == table.concat(decoded_one))
            assert(offset == -1)

            local encoded_multiple = cmsgpack.pack(str_lt_32, str_lt_255, str_lt_65535, str_long)
            local offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, 0)
            assert(obj == str_lt_32)
            offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
            assert(obj == str_lt_255)
            offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
            assert(obj == str_lt_65535)
            offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
            assert(obj == str_long)
            assert(offset == -1)

            -- Beyond Redis's test: the big values come back whole.
            assert(#decoded.a3 == 100000 and decoded.a3[100000] == 100000)
            local n = 0
            for k, v in pairs(decoded.m2) do assert(tostring(v) == k) n = n + 1 end
            assert(n == 100000)
            assert(decoded.i5 == 2^40 and decoded.i10 == -3147483648 and decoded.d1 == 0.1)
            "#,
        );
    }

    /// Redis's "EVAL - cmsgpack can pack and unpack circular references?".
    #[test]
    fn redis_circular_references_stop_at_16_levels() {
        let (hex, eight, five): (String, bool, bool) = eval(
            r#"
            local a = {x=nil,y=5}
            local b = {x=a}
            a['x'] = b
            local encoded = cmsgpack.pack(a)
            local h = ""
            for i = 1, #encoded do
                h = h .. string.format("%02x",string.byte(encoded,i))
            end
            local re = cmsgpack.unpack(encoded)
            assert(re)
            assert(re.x)
            assert(re.x.x.y == re.y)
            assert(re.x.x.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.x.x.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.y == re.y)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x)
            assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x == nil)
            return h, re.x.x.x.x.x.x.x.x.y == re.y, re.y == 5
            "#,
        );
        assert_eq!(
            hex,
            "82a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882\
             a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a178c0"
        );
        assert!(eight && five);
    }

    #[test]
    fn integers_take_the_smallest_encoding() {
        let cases = [
            ("0", "00"),
            ("127", "7f"),
            ("128", "cc80"),
            ("255", "ccff"),
            ("256", "cd0100"),
            ("65535", "cdffff"),
            ("65536", "ce00010000"),
            ("2^32 - 1", "ceffffffff"),
            ("2^32", "cf0000000100000000"),
            ("-1", "ff"),
            ("-32", "e0"),
            ("-33", "d0df"),
            ("-128", "d080"),
            ("-129", "d1ff7f"),
            ("-32768", "d18000"),
            ("-32769", "d2ffff7fff"),
            ("-2^31", "d280000000"),
            ("-2^31 - 1", "d3ffffffff7fffffff"),
            ("-2^63", "d38000000000000000"),
            ("-0", "00"),
        ];
        for (number, hex) in cases {
            assert_eq!(packed(number), hex, "{number}");
        }
    }

    #[test]
    fn other_numbers_are_float_when_exact_else_double() {
        assert_eq!(packed("1.5"), "ca3fc00000");
        assert_eq!(packed("-0.25"), "cabe800000");
        assert_eq!(packed("2^63"), "ca5f000000");
        assert_eq!(packed("math.huge"), "ca7f800000");
        assert_eq!(packed("1/3"), "cb3fd5555555555555");
        assert!(packed("0/0").starts_with("cb"));
    }

    #[test]
    fn strings_and_tables() {
        let cases = [
            ("''", "a0".to_owned()),
            ("'abc'", "a3616263".to_owned()),
            ("string.rep('x', 31)", format!("bf{}", "78".repeat(31))),
            ("string.rep('x', 32)", format!("d920{}", "78".repeat(32))),
            (
                "string.rep('x', 256)",
                format!("da0100{}", "78".repeat(256)),
            ),
            (
                "string.rep('x', 65536)",
                format!("db00010000{}", "78".repeat(65536)),
            ),
            ("{}", "90".to_owned()),
            ("{1, 2}", "920102".to_owned()),
            ("{a = 1}", "81a16101".to_owned()),
            ("{[1] = 1, [3] = 3}", "82".to_owned()),
            ("{[1.5] = 1}", "81ca3fc0000001".to_owned()),
            ("{[0] = 1}", "810001".to_owned()),
            (
                "{(('x'):rep(16)):byte(1, -1)}",
                format!("dc0010{}", "78".repeat(16)),
            ),
            ("true, false, nil, print", "c3c2c0c0".to_owned()),
            ("{{{}}}", "919190".to_owned()),
        ];
        for (args, hex) in cases {
            let got = packed(args);
            assert!(got.starts_with(&hex), "{args}: {got}");
        }
    }

    #[test]
    fn unpack_returns_every_value() {
        let (count, a, b, c): (i64, String, bool, Option<i64>) = eval(
            "local s = cmsgpack.pack('a', true, nil) \
             return select('#', cmsgpack.unpack(s)), cmsgpack.unpack(s)",
        );
        assert_eq!((count, a.as_str(), b, c), (3, "a", true, None));
        let empty: i64 = eval("return select('#', cmsgpack.unpack(''))");
        assert_eq!(empty, 0);
        // A number is read as its text: "5" is the byte 0x35, the fixint 53.
        let number: i64 = eval("return cmsgpack.unpack(5)");
        assert_eq!(number, 53);
    }

    #[test]
    fn unpack_one_and_limit_return_the_next_offset_first() {
        let lua = lua();
        let out: Vec<mlua::Value> = eval_in(
            &lua,
            "local s = cmsgpack.pack(1, 'two', {3}) \
             local r = {} \
             r[1], r[2] = cmsgpack.unpack_one(s) \
             r[3], r[4] = cmsgpack.unpack_one(s, r[1]) \
             local o, t = cmsgpack.unpack_one(s, r[3]) r[5], r[6] = o, t[1] \
             r[7], r[8], r[9] = cmsgpack.unpack_limit(s, 2) \
             r[10] = select('#', cmsgpack.unpack_limit(s, 0)) \
             r[11] = cmsgpack.unpack_one(s, #s) \
             r[12] = select('#', cmsgpack.unpack_one(s, #s)) \
             return r",
        );
        let shown: Vec<String> = out.iter().map(|v| format!("{v:?}")).collect();
        assert_eq!(
            shown,
            [
                "Integer(1)",
                "Integer(1)",
                "Integer(5)",
                "String(\"two\")",
                "Integer(-1)",
                "Integer(3)",
                "Integer(5)",
                "Integer(1)",
                "String(\"two\")",
                "Integer(3)",
                "Integer(-1)",
                "Integer(1)",
            ]
        );
    }

    #[test]
    fn unpack_errors_read_like_lua_cmsgpack() {
        let cases = [
            (
                "cmsgpack.unpack('\\146\\1')",
                "user_script:1: Missing bytes in input.",
            ),
            (
                "cmsgpack.unpack('\\218\\0\\5ab')",
                "user_script:1: Missing bytes in input.",
            ),
            (
                "cmsgpack.unpack('\\193')",
                "user_script:1: Bad data format in input.",
            ),
            (
                "cmsgpack.unpack('\\196\\1a')",
                "user_script:1: Bad data format in input.",
            ),
            ("cmsgpack.unpack('\\129\\192\\1')", "table index is nil"),
            (
                "cmsgpack.unpack('\\129\\203\\127\\248\\0\\0\\0\\0\\0\\0\\1')",
                "table index is NaN",
            ),
            (
                "cmsgpack.unpack_one('\\1', -1)",
                "user_script:1: Invalid request to unpack with offset of -1 and limit of 1.",
            ),
            (
                "cmsgpack.unpack_limit('abc', -2)",
                "user_script:1: Invalid request to unpack with offset of 0 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_one('\\1', 2)",
                "user_script:1: Start offset 2 greater than input length 1.",
            ),
            (
                "cmsgpack.unpack()",
                "user_script:1: bad argument #1 to 'unpack' (string expected, got no value)",
            ),
            (
                "cmsgpack.unpack_limit('')",
                "user_script:1: bad argument #2 to 'unpack_limit' (number expected, got no value)",
            ),
            (
                "cmsgpack.pack()",
                "user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.)",
            ),
        ];
        for (code, message) in cases {
            assert_eq!(error_of(code), message, "{code}");
        }
    }

    #[test]
    fn wide_values_read_as_lua_cmsgpack_reads_them() {
        let values: Vec<f64> = eval(
            "return {cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255'), \
             cmsgpack.unpack('\\211\\255\\255\\255\\255\\255\\255\\255\\254'), \
             cmsgpack.unpack('\\202\\63\\192\\0\\0'), cmsgpack.unpack('\\208\\128'), \
             cmsgpack.unpack('\\209\\255\\1'), cmsgpack.unpack('\\217\\1a'):len()}",
        );
        assert_eq!(values, [-1.0, -2.0, 1.5, -128.0, -255.0, 1.0]);
    }

    #[test]
    fn result_and_nesting_limits_follow_the_lua_stack() {
        let ok: i64 =
            eval("local s = string.rep('\\1', 7999) return select('#', cmsgpack.unpack(s))");
        assert_eq!(ok, 7999);
        assert_eq!(
            error_of("cmsgpack.unpack(string.rep('\\1', 8000))"),
            "user_script:1: stack overflow (too many return values at once; \
             use unpack_one or unpack_limit instead.)"
        );
        assert_eq!(
            error_of("cmsgpack.unpack_limit(string.rep('\\1', 8000), 7999)"),
            "user_script:1: stack overflow (in function mp_unpack_full)"
        );
        let strings: i64 =
            eval("local s = string.rep('\\161a', 7999) return select('#', cmsgpack.unpack(s))");
        assert_eq!(strings, 7999);
        // Each array level holds two slots in the C code.
        let deep: i64 = eval(
            "local t = cmsgpack.unpack(string.rep('\\145', 3999) .. '\\1') \
             local n = 0 while type(t) == 'table' do t = t[1] n = n + 1 end return n",
        );
        assert_eq!(deep, 3999);
        assert_eq!(
            error_of("cmsgpack.unpack(string.rep('\\145', 4000) .. '\\1')"),
            "user_script:1: stack overflow (in function mp_decode_to_lua_array)"
        );
        assert_eq!(
            error_of("cmsgpack.unpack(string.rep('\\129\\1', 4000) .. '\\1')"),
            "user_script:1: stack overflow (too many return values at once; \
             use unpack_one or unpack_limit instead.)"
        );
        assert_eq!(
            error_of("cmsgpack.pack(unpack((function() local t = {} for i = 1, 4001 do t[i] = i end return t end)()))"),
            "user_script:1: bad argument #0 to 'pack' (Too many arguments for MessagePack pack.)"
        );
    }

    /// A MessagePack-able Lua value for the round trip test.
    #[derive(Clone, Debug)]
    enum Packable {
        Nil,
        Bool(bool),
        Number(f64),
        Bytes(Vec<u8>),
        Array(Vec<Packable>),
        Map(Vec<(Vec<u8>, Packable)>),
    }

    fn packable() -> impl Strategy<Value = Packable> {
        let number = prop_oneof![
            any::<i64>().prop_map(|i| i as f64),
            any::<i32>().prop_map(f64::from),
            any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan()),
            any::<f32>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(f64::from),
        ];
        let leaf = prop_oneof![
            any::<bool>().prop_map(Packable::Bool),
            number.prop_map(Packable::Number),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Packable::Bytes),
        ];
        // Arrays hold no nil, which Lua cannot keep in a sequence.
        leaf.prop_recursive(8, 64, 20, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..20).prop_map(Packable::Array),
                prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..8), inner, 1..20)
                    .prop_map(|m| Packable::Map(m.into_iter().collect())),
            ]
        })
    }

    fn to_lua(lua: &mlua::Lua, value: &Packable) -> mlua::Result<mlua::Value> {
        Ok(match value {
            Packable::Nil => mlua::Value::Nil,
            Packable::Bool(b) => mlua::Value::Boolean(*b),
            Packable::Number(n) => mlua::Value::Number(*n),
            Packable::Bytes(b) => mlua::Value::String(lua.create_string(b)?),
            Packable::Array(items) => {
                let table = lua.create_table()?;
                for (i, item) in items.iter().enumerate() {
                    table.raw_set(i + 1, to_lua(lua, item)?)?;
                }
                mlua::Value::Table(table)
            }
            Packable::Map(entries) => {
                let table = lua.create_table()?;
                for (key, item) in entries {
                    table.raw_set(lua.create_string(key)?, to_lua(lua, item)?)?;
                }
                mlua::Value::Table(table)
            }
        })
    }

    fn same(lua: &mlua::Lua, expected: &Packable, value: &mlua::Value) -> bool {
        match (expected, value) {
            (Packable::Nil, mlua::Value::Nil) => true,
            (Packable::Bool(a), mlua::Value::Boolean(b)) => a == b,
            (Packable::Number(n), v) => super::number_of(v) == Some(*n),
            (Packable::Bytes(b), mlua::Value::String(s)) => *b == *s.as_bytes(),
            (Packable::Array(items), mlua::Value::Table(t)) => {
                t.raw_len() == items.len()
                    && items.iter().enumerate().all(|(i, item)| {
                        t.raw_get::<mlua::Value>(i + 1)
                            .is_ok_and(|v| same(lua, item, &v))
                    })
            }
            (Packable::Map(entries), mlua::Value::Table(t)) => {
                t.clone().pairs::<mlua::Value, mlua::Value>().count() == entries.len()
                    && entries.iter().all(|(key, item)| {
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
        fn round_trips_through_pack_and_unpack(
            values in prop::collection::vec(
                prop_oneof![Just(Packable::Nil), packable()],
                1..5,
            )
        ) {
            let lua = lua();
            let args = values
                .iter()
                .map(|v| to_lua(&lua, v))
                .collect::<mlua::Result<mlua::MultiValue>>()
                .expect("builds");
            let round_trip: mlua::Function = eval_in(
                &lua,
                "return function(...) return cmsgpack.unpack(cmsgpack.pack(...)) end",
            );
            let back: mlua::MultiValue = round_trip.call(args).expect("round trip");
            prop_assert_eq!(back.len(), values.len());
            for (expected, got) in values.iter().zip(back.iter()) {
                prop_assert!(same(&lua, expected, got), "{:?} came back as {:?}", expected, got);
            }
        }
    }
}
