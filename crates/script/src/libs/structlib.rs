//! `struct`: Roberto Ierusalimschy's struct library (v1.4 with Redis's
//! overflow check), packing Lua values into binary strings and back.
//!
//! Format options, with the sizes of x86-64 Linux where Redis runs:
//! `>` big endian, `<` little endian (the default), `![n]` alignment (8 when
//! `n` is left out; a power of 2), `x` a zero byte, `b`/`B` signed/unsigned
//! char, `h`/`H` short (2), `l`/`L` long (8), `T` size_t (8), `i[n]`/`I[n]`
//! int of `n` bytes (4 by default, at most 32), `f` float, `d` double,
//! `c[n]` `n` bytes of a string (`c0`: all of it when packing, a length
//! unpacked just before when unpacking), `s` a NUL-terminated string, and
//! spaces, which are ignored. The format is a C string: a NUL byte ends it.

use mlua::{IntoLua, Lua, MultiValue, Table, Value};

use super::{
    add_function, c_double_to_i64, c_double_to_u64, number_of, Args, Outcome, Parking, Raise,
    Reply, LUA_MAX_C_STACK,
};

/// Builds the `struct` table.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    add_function(lua, &table, "pack", pack)?;
    add_function(lua, &table, "unpack", unpack)?;
    add_function(lua, &table, "size", size)?;
    Ok(table)
}

/// Largest integer size `i`/`I` take (`MAXINTSIZE`).
const MAX_INT_SIZE: i32 = 32;

/// Default alignment for `!`: that of a double on x86-64 (`MAXALIGN`).
const MAX_ALIGN: i32 = 8;

/// Byte order and alignment, which options change as the format goes.
struct Header {
    little: bool,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header {
            little: true,
            align: 1,
        }
    }
}

/// The format string, read an option at a time.
struct Format<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Format<'a> {
    fn new(text: &'a [u8]) -> Format<'a> {
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        Format {
            bytes: &text[..end],
            pos: 0,
        }
    }

    fn next_option(&mut self) -> Option<u8> {
        let opt = self.bytes.get(self.pos).copied()?;
        self.pos += 1;
        Some(opt)
    }

    /// The number written right after an option, or `default`.
    fn number(&mut self, default: i32) -> Outcome<i32> {
        if !self.peek_digit() {
            return Ok(default);
        }
        let mut value: i32 = 0;
        while self.peek_digit() {
            let digit = i32::from(self.bytes[self.pos] - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(digit))
                .ok_or_else(|| Raise::error("integral size overflow"))?;
            self.pos += 1;
        }
        Ok(value)
    }

    fn peek_digit(&self) -> bool {
        self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit)
    }

    /// The size of the data option `opt` covers, reading its count if it
    /// takes one; 0 for options without data.
    fn option_size(&mut self, opt: u8) -> Outcome<usize> {
        Ok(match opt {
            b'b' | b'B' | b'x' => 1,
            b'h' | b'H' => 2,
            b'f' => 4,
            b'l' | b'L' | b'T' | b'd' => 8,
            b'c' => to_size(self.number(1)?),
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > MAX_INT_SIZE {
                    return Err(Raise::error(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                to_size(size)
            }
            _ => 0,
        })
    }

    /// Options that change the header, and the error for unknown ones.
    fn control(&mut self, opt: u8, header: &mut Header) -> Outcome<()> {
        match opt {
            b' ' => {}
            b'>' => header.little = false,
            b'<' => header.little = true,
            b'!' => {
                let align = self.number(MAX_ALIGN)?;
                if align <= 0 || align & (align - 1) != 0 {
                    return Err(Raise::error(format!(
                        "alignment {align} is not a power of 2"
                    )));
                }
                header.align = to_size(align);
            }
            _ => {
                let mut message = b"invalid format option '".to_vec();
                message.push(opt);
                message.push(b'\'');
                return Err(Raise::arg(1, message));
            }
        }
        Ok(())
    }
}

fn to_size(n: i32) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Padding that aligns an item of `size` bytes at offset `len`.
fn padding(len: usize, header: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(header.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn is_integer_option(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

// ===== struct.pack =====

fn pack(lua: &Lua, args: Args) -> Outcome<MultiValue> {
    let format = args.check_string(lua, 1)?;
    let format = format.as_bytes();
    let mut format = Format::new(&format);
    let mut header = Header::new();
    let mut arg = 2;
    let mut out = Vec::new();
    while let Some(opt) = format.next_option() {
        let mut size = format.option_size(opt)?;
        let pad = padding(out.len(), &header, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            _ if is_integer_option(opt) => {
                let n = args.check_number(lua, arg)?;
                arg += 1;
                put_integer(&mut out, n, header.little, size);
            }
            b'x' => out.push(0),
            b'f' => {
                #[allow(clippy::cast_possible_truncation)]
                let f = args.check_number(lua, arg)? as f32;
                arg += 1;
                put_ordered(&mut out, &f.to_le_bytes(), header.little);
            }
            b'd' => {
                let d = args.check_number(lua, arg)?;
                arg += 1;
                put_ordered(&mut out, &d.to_le_bytes(), header.little);
            }
            b'c' | b's' => {
                let s = args.check_string(lua, arg)?;
                arg += 1;
                let s = s.as_bytes();
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // The C code blames the argument after the string.
                    let n = i32::try_from(arg).unwrap_or(i32::MAX);
                    return Err(Raise::arg(n, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => format.control(opt, &mut header)?,
        }
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(out)?,
    )]))
}

/// Writes the low `size` bytes of `n` as an integer. Negative numbers go
/// through `long` and others through `unsigned long` as in C, so past 8
/// bytes only zeros follow.
fn put_integer(out: &mut Vec<u8>, n: f64, little: bool, size: usize) {
    let value = if n < 0.0 {
        u64::from_ne_bytes(c_double_to_i64(n).to_ne_bytes())
    } else {
        c_double_to_u64(n)
    };
    let le = value.to_le_bytes();
    let byte = |i: usize| le.get(i).copied().unwrap_or(0);
    if little {
        out.extend((0..size).map(byte));
    } else {
        out.extend((0..size).rev().map(byte));
    }
}

/// Appends little-endian `bytes` in the header's byte order.
fn put_ordered(out: &mut Vec<u8>, bytes: &[u8], little: bool) {
    if little {
        out.extend_from_slice(bytes);
    } else {
        out.extend(bytes.iter().rev());
    }
}

// ===== struct.unpack =====

/// The Lua stack of the C function: the format, the data, then results.
/// `c0` may pop whatever is on top, the data itself included, which decides
/// what is returned. Kept in Lua (see [`Parking`]) as it may hold thousands
/// of strings.
struct LuaStack {
    values: Parking,
    len: usize,
}

impl LuaStack {
    fn push(&mut self, value: impl IntoLua) -> mlua::Result<()> {
        self.len += 1;
        self.values.put(self.len, value)
    }

    /// `c0`'s length: the number on top of the stack, popped.
    fn pop_size(&mut self, lua: &Lua) -> Outcome<usize> {
        let top: Value = self.values.get(self.len)?;
        let number = match top {
            Value::String(_) => lua.coerce_number(top)?,
            other => number_of(&other),
        };
        let Some(n) = number else {
            return Err(Raise::error("format `c0' needs a previous size"));
        };
        self.values.clear(self.len)?;
        self.len -= 1;
        Ok(usize::try_from(c_double_to_u64(n)).unwrap_or(usize::MAX))
    }

    /// What the C function returns: everything above its first two slots.
    fn into_reply(self) -> mlua::Result<Reply> {
        let count = self.len.saturating_sub(2);
        let skipped = self.len - count;
        for i in 1..=count {
            self.values.put(i, self.values.get::<Value>(skipped + i)?)?;
        }
        for i in count + 1..=self.len {
            self.values.clear(i)?;
        }
        Ok(Reply::Spread(self.values.into_table(), count))
    }
}

fn unpack(lua: &Lua, args: Args) -> Outcome<Reply> {
    let format_arg = args.check_string(lua, 1)?;
    let data_arg = args.check_string(lua, 2)?;
    let start = args.opt_integer(lua, 3, 1)?;
    let format = format_arg.as_bytes();
    let data = data_arg.as_bytes();
    let mut format = Format::new(&format);
    let mut header = Header::new();
    // A C `size_t`: a start of 0 or less wraps around.
    let mut pos = u64::from_ne_bytes(start.wrapping_sub(1).to_ne_bytes());
    let mut stack = LuaStack {
        values: Parking::new(lua)?,
        len: 0,
    };
    stack.push(format_arg.clone())?;
    stack.push(data_arg.clone())?;
    while let Some(opt) = format.next_option() {
        let mut size = format.option_size(opt)?;
        pos = pos.wrapping_add(padding_u64(pos, &header, opt, size));
        let at = item_start(pos, size, data.len())?;
        if stack.len + 1 > LUA_MAX_C_STACK {
            return Err(Raise::stack_overflow("too many results"));
        }
        match opt {
            _ if is_integer_option(opt) => {
                let signed = opt.is_ascii_lowercase();
                stack.push(get_integer(&data[at..at + size], header.little, signed))?;
            }
            b'x' => {}
            b'f' => {
                let bytes = ordered::<4>(&data[at..at + 4], header.little);
                stack.push(f64::from(f32::from_le_bytes(bytes)))?;
            }
            b'd' => {
                let bytes = ordered::<8>(&data[at..at + 8], header.little);
                stack.push(f64::from_le_bytes(bytes))?;
            }
            b'c' => {
                if size == 0 {
                    size = stack.pop_size(lua)?;
                }
                let at = item_start(pos, size, data.len())?;
                stack.push(lua.create_string(&data[at..at + size])?)?;
            }
            b's' => {
                let Some(len) = data[at..].iter().position(|&b| b == 0) else {
                    return Err(Raise::error("unfinished string in data"));
                };
                size = len + 1;
                stack.push(lua.create_string(&data[at..at + len])?)?;
            }
            _ => format.control(opt, &mut header)?,
        }
        pos = pos.wrapping_add(size as u64);
    }
    stack.push(i64::from_ne_bytes(pos.wrapping_add(1).to_ne_bytes()))?;
    Ok(stack.into_reply()?)
}

/// Where an item of `size` bytes at `pos` starts in data of `len` bytes, if
/// it fits.
fn item_start(pos: u64, size: usize, len: usize) -> Outcome<usize> {
    usize::try_from(pos)
        .ok()
        .filter(|&at| at <= len && size <= len - at)
        .ok_or_else(|| Raise::arg(2, "data string too short"))
}

fn padding_u64(pos: u64, header: &Header, opt: u8, size: usize) -> u64 {
    // Only the low bits of the position matter to alignment.
    #[allow(clippy::cast_possible_truncation)]
    let low = pos as usize;
    padding(low, header, opt, size) as u64
}

/// `N` bytes turned little-endian.
fn ordered<const N: usize>(bytes: &[u8], little: bool) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(bytes);
    if !little {
        array.reverse();
    }
    array
}

/// An integer of `bytes.len()` bytes. Only the last 8 read count, and the
/// sign is extended from the bit C's shift picks (x86 takes shift counts
/// modulo 64).
fn get_integer(bytes: &[u8], little: bool, signed: bool) -> f64 {
    let fold = |acc: u64, &b: &u8| acc << 8 | u64::from(b);
    let mut value = if little {
        bytes.iter().rev().fold(0, fold)
    } else {
        bytes.iter().fold(0, fold)
    };
    if !signed {
        #[allow(clippy::cast_precision_loss)]
        return value as f64;
    }
    let bits = i64::try_from(bytes.len()).unwrap_or(0) * 8 - 1;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mask = u64::MAX.wrapping_shl(bits as u32);
    if value & mask != 0 {
        value |= mask;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = i64::from_ne_bytes(value.to_ne_bytes()) as f64;
    n
}

// ===== struct.size =====

fn size(lua: &Lua, args: Args) -> Outcome<MultiValue> {
    let format = args.check_string(lua, 1)?;
    let format = format.as_bytes();
    let mut format = Format::new(&format);
    let mut header = Header::new();
    let mut pos: usize = 0;
    while let Some(opt) = format.next_option() {
        let size = format.option_size(opt)?;
        pos += padding(pos, &header, opt, size);
        if opt == b's' {
            return Err(Raise::arg(1, "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(Raise::arg(1, "option 'c0' has no fixed size"));
        }
        // Unknown letters and digits are skipped here, unlike in pack.
        if !opt.is_ascii_alphanumeric() {
            format.control(opt, &mut header)?;
        }
        pos = pos.saturating_add(size);
    }
    let pos = i64::try_from(pos).unwrap_or(i64::MAX);
    Ok(MultiValue::from_vec(vec![Value::Integer(pos)]))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error_of, eval, eval_in, lua};

    /// The bytes of `struct.pack(<args>)` as a list of numbers.
    fn packed(args: &str) -> Vec<u8> {
        eval(&format!(
            "return {{string.byte(struct.pack({args}), 1, -1)}}"
        ))
    }

    #[test]
    fn packs_integers_in_either_byte_order() {
        assert_eq!(packed("'>I2', 258"), [1, 2]);
        assert_eq!(packed("'<I2', 258"), [2, 1]);
        assert_eq!(packed("'I2', 258"), [2, 1]);
        assert_eq!(packed("'i', -2"), [254, 255, 255, 255]);
        assert_eq!(packed("'>h', -2"), [255, 254]);
        assert_eq!(packed("'b', 200"), [200]);
        assert_eq!(packed("'B', -1"), [255]);
        assert_eq!(packed("'>l', 1"), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(packed("'T', 3"), [3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(packed("'I3', 0x010203"), [3, 2, 1]);
        assert_eq!(packed("'i0', 5"), Vec::<u8>::new());
        // Past 8 bytes C has only zeros left to shift in, even for -1.
        let mut wide = vec![255; 8];
        wide.extend([0; 4]);
        assert_eq!(packed("'i12', -1"), wide);
        assert_eq!(packed("'I8', 2^64"), [0; 8]);
        assert_eq!(packed("'I2', '513'"), [1, 2]);
    }

    #[test]
    fn packs_floats_strings_and_padding() {
        assert_eq!(packed("'>f', 1.5"), [0x3f, 0xc0, 0, 0]);
        assert_eq!(packed("'<d', 1"), [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(packed("'c3', 'abcdef'"), b"abc");
        assert_eq!(packed("'c0', 'abc'"), b"abc");
        assert_eq!(packed("'s', 'hi'"), b"hi\0");
        assert_eq!(packed("'bxb', 1, 2"), [1, 0, 2]);
        assert_eq!(packed("'!4 b i', 1, 2"), [1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            packed("'! b d', 1, 0"),
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(packed("'!2 b i', 1, 2"), [1, 0, 2, 0, 0, 0]);
        assert_eq!(packed("'b c2 i', 1, 'xy', 2"), [1, b'x', b'y', 2, 0, 0, 0]);
        assert_eq!(packed("'i\\0garbage', 7"), [7, 0, 0, 0]);
    }

    #[test]
    fn unpacks_what_it_packs() {
        let lua = lua();
        let values: Vec<mlua::Value> = eval_in(
            &lua,
            "return {struct.unpack('>I2 i b B h H l L f d c3 s', \
             struct.pack('>I2 i b B h H l L f d c3 s', 258, -7, -1, 255, -300, 60000, \
             -2^40, 2^40, 0.5, 0.1, 'abcdef', 'zero'))}",
        );
        let shown: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        assert_eq!(
            shown,
            [
                "Integer(258)",
                "Integer(-7)",
                "Integer(-1)",
                "Integer(255)",
                "Integer(-300)",
                "Integer(60000)",
                "Integer(-1099511627776)",
                "Integer(1099511627776)",
                "Number(0.5)",
                "Number(0.1)",
                "String(\"abc\")",
                "String(\"zero\")",
                "Integer(49)",
            ]
        );
    }

    #[test]
    fn unpack_positions_and_lengths() {
        let values: Vec<i64> = eval(
            "local r = {} \
             r[1], r[2] = struct.unpack('b', '\\1\\2', 2) \
             local s, n = struct.unpack('Bc0', '\\3abcd') r[3], r[4] = #s, n \
             r[5] = select('#', struct.unpack('xx', 'ab')) \
             r[6] = select(2, struct.unpack('i16', struct.pack('i16', -1))) \
             r[7] = struct.unpack('i16', struct.pack('i16', -1)) \
             return r",
        );
        assert_eq!(values, [2, 3, 3, 5, 1, 17, -1]);
        // `c0` takes its length from the data itself when nothing came
        // before, and then the data is no longer below the results: the
        // string read takes its place and only the position is returned.
        let only_position: Vec<i64> = eval("return {struct.unpack('c0', '1')}");
        assert_eq!(only_position, [2]);
    }

    #[test]
    fn size_adds_up_fixed_formats() {
        let sizes: Vec<i64> = eval(
            "return {struct.size('i'), struct.size('!4 b i'), struct.size('>d c10'), \
             struct.size('bhlT'), struct.size(''), struct.size('b z9 b')}",
        );
        assert_eq!(sizes, [4, 8, 18, 19, 0, 2]);
    }

    #[test]
    fn errors_read_like_the_struct_library() {
        let cases = [
            (
                "struct.pack('z')",
                "bad argument #1 to 'pack' (invalid format option 'z')",
            ),
            (
                "struct.pack('i33', 1)",
                "integral size 33 is larger than limit of 32",
            ),
            ("struct.pack('!3')", "alignment 3 is not a power of 2"),
            ("struct.pack('c99999999999', 'a')", "integral size overflow"),
            (
                "struct.pack('i')",
                "bad argument #2 to 'pack' (number expected, got no value)",
            ),
            (
                "struct.pack('c5', 'ab')",
                "bad argument #3 to 'pack' (string too short)",
            ),
            (
                "struct.pack('s', {})",
                "bad argument #2 to 'pack' (string expected, got table)",
            ),
            (
                "struct.unpack('i', 'ab')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('b', 'a', 3)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('c0', 'x')",
                "format `c0' needs a previous size",
            ),
            (
                "struct.unpack('bc0', '\\5ab')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            ("struct.unpack('s', 'abc')", "unfinished string in data"),
            (
                "struct.unpack('#', 'abc')",
                "bad argument #1 to 'unpack' (invalid format option '#')",
            ),
            (
                "struct.size('s')",
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ),
            (
                "struct.size('c0')",
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ),
            (
                "struct.size('b#')",
                "bad argument #1 to 'size' (invalid format option '#')",
            ),
            (
                "struct.size()",
                "bad argument #1 to 'size' (string expected, got no value)",
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
    fn results_are_limited_by_the_lua_stack() {
        let count: i64 = eval(
            "return select('#', struct.unpack(string.rep('c1', 7998), string.rep('x', 7998)))",
        );
        assert_eq!(count, 7999);
        assert_eq!(
            error_of("struct.unpack(string.rep('b', 7999), string.rep('x', 7999))"),
            "user_script:1: stack overflow (too many results)"
        );
    }
}
