//! `bit`: LuaBitOp 1.0.2, the bitwise operations Redis 7.0 bundles.
//!
//! Lua 5.1 numbers are doubles, so LuaBitOp first turns each argument into a
//! 32-bit integer: it adds 2^52 + 2^51 and takes the low 32 bits of the
//! result's representation, which rounds to nearest (ties to even) and wraps
//! modulo 2^32. Results are signed 32-bit values (`bit.tobit(0xffffffff)` is
//! -1). Numeric strings are accepted as numbers; anything else is "number
//! expected".

use mlua::{Lua, MultiValue, Table, Value};

use super::{add_function, type_error, Args, Outcome};

/// Builds the `bit` table.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    add_function(lua, &table, "tobit", |lua, args| unary(lua, &args, |b| b))?;
    add_function(lua, &table, "bnot", |lua, args| unary(lua, &args, |b| !b))?;
    add_function(lua, &table, "band", |lua, args| {
        fold(lua, &args, |a, b| a & b)
    })?;
    add_function(lua, &table, "bor", |lua, args| {
        fold(lua, &args, |a, b| a | b)
    })?;
    add_function(lua, &table, "bxor", |lua, args| {
        fold(lua, &args, |a, b| a ^ b)
    })?;
    add_function(lua, &table, "lshift", |lua, args| {
        shift(lua, &args, |b, n| b << n)
    })?;
    add_function(lua, &table, "rshift", |lua, args| {
        shift(lua, &args, |b, n| b >> n)
    })?;
    add_function(lua, &table, "arshift", |lua, args| {
        shift(lua, &args, |b, n| to_unsigned(to_signed(b) >> n))
    })?;
    add_function(lua, &table, "rol", |lua, args| {
        shift(lua, &args, u32::rotate_left)
    })?;
    add_function(lua, &table, "ror", |lua, args| {
        shift(lua, &args, u32::rotate_right)
    })?;
    add_function(lua, &table, "bswap", |lua, args| {
        unary(lua, &args, u32::swap_bytes)
    })?;
    add_function(lua, &table, "tohex", tohex)?;
    Ok(table)
}

/// 2^52 + 2^51: adding it leaves a double's integer part, rounded, in the
/// low bits of its representation.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// A number's 32-bit value as LuaBitOp computes it.
fn normalize(n: f64) -> u32 {
    // The low 32 bits of the representation are the point of the trick.
    #[allow(clippy::cast_possible_truncation)]
    let low = (n + MAGIC).to_bits() as u32;
    low
}

/// Argument `n` as 32 bits. A non-number normalizes as 0, which LuaBitOp
/// only then checks to be a number.
fn barg(lua: &Lua, args: &Args, n: usize) -> Outcome<u32> {
    let number = args.to_number(lua, n)?;
    let bits = normalize(number.unwrap_or(0.0));
    if bits == 0 && number.is_none() {
        return Err(type_error(n, "number", args.get(n)));
    }
    Ok(bits)
}

fn to_signed(b: u32) -> i32 {
    i32::from_ne_bytes(b.to_ne_bytes())
}

fn to_unsigned(i: i32) -> u32 {
    u32::from_ne_bytes(i.to_ne_bytes())
}

/// The result as Lua sees it: a signed 32-bit number.
fn bret(b: u32) -> MultiValue {
    MultiValue::from_vec(vec![Value::Integer(i64::from(to_signed(b)))])
}

fn unary(lua: &Lua, args: &Args, op: impl Fn(u32) -> u32) -> Outcome<MultiValue> {
    Ok(bret(op(barg(lua, args, 1)?)))
}

/// `band`, `bor`, `bxor`: the first argument, then the others from the last
/// down, which decides which bad argument is reported.
fn fold(lua: &Lua, args: &Args, op: impl Fn(u32, u32) -> u32) -> Outcome<MultiValue> {
    let mut b = barg(lua, args, 1)?;
    for n in (2..=args.len()).rev() {
        b = op(b, barg(lua, args, n)?);
    }
    Ok(bret(b))
}

/// Shifts and rotations: the count is taken modulo 32.
fn shift(lua: &Lua, args: &Args, op: impl Fn(u32, u32) -> u32) -> Outcome<MultiValue> {
    let b = barg(lua, args, 1)?;
    let n = barg(lua, args, 2)? & 31;
    Ok(bret(op(b, n)))
}

/// `bit.tohex(x [, n])`: the low `|n|` hex digits (8 at most, 8 by
/// default), upper case when `n` is negative.
fn tohex(lua: &Lua, args: Args) -> Outcome<MultiValue> {
    let mut b = barg(lua, &args, 1)?;
    let mut n = match args.get(2) {
        None => 8,
        Some(_) => to_signed(barg(lua, &args, 2)?),
    };
    let mut digits = b"0123456789abcdef";
    if n < 0 {
        n = n.wrapping_neg();
        digits = b"0123456789ABCDEF";
    }
    // -2^31 stays negative; the C code would then write nothing sensible.
    let len = usize::try_from(n.min(8)).unwrap_or(0);
    let mut out = vec![0u8; len];
    for slot in out.iter_mut().rev() {
        *slot = digits[usize::try_from(b & 15).unwrap_or(0)];
        b >>= 4;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(out)?,
    )]))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error_of, eval};

    /// Redis's "EVAL - Verify minimal bitop functionality" and "Numerical
    /// sanity check from bitop".
    #[test]
    fn redis_minimal_bitop_functionality() {
        let () = eval(
            r#"
            assert(0x7fffffff == 2147483647, "broken hex literals");
            assert(0xffffffff == -1 or 0xffffffff == 2^32-1, "broken hex literals");
            assert(tostring(-1) == "-1", "broken tostring()");
            assert(tostring(0xffffffff) == "-1" or tostring(0xffffffff) == "4294967295",
                "broken tostring()")
            assert(bit.tobit(1) == 1);
            assert(bit.band(1) == 1);
            assert(bit.bxor(1,2) == 3);
            assert(bit.bor(1,2,4,8,16,32,64,128) == 255)
            "#,
        );
    }

    #[test]
    fn numbers_normalize_to_signed_32_bits() {
        let values: Vec<i64> = eval(
            "return {bit.tobit(0xffffffff), bit.tobit(2^32 + 1), bit.tobit(-1), \
             bit.tobit(1.5), bit.tobit(2.5), bit.tobit(-1.5), bit.tobit(2^31), \
             bit.tobit('0x10'), bit.tobit(' 7 '), bit.tobit(0/0), bit.tobit(math.huge), \
             bit.tobit(2^52 + 3)}",
        );
        assert_eq!(
            values,
            // Past 2^51 the sum rounds away the low bits: 2^52 + 3 gives 2.
            [-1, 1, -1, 2, 2, -2, -2_147_483_648, 16, 7, 0, 0, 2]
        );
    }

    #[test]
    fn operations_match_luabitop() {
        let values: Vec<i64> = eval(
            "return {bit.bnot(0), bit.band(0xff, 0x0f, 0x3c), bit.bor(1, 2, 4), \
             bit.bxor(0xff, 0x0f, 1), bit.lshift(1, 31), bit.lshift(1, 32), \
             bit.rshift(-1, 28), bit.rshift(0x80, 39), bit.arshift(-256, 4), \
             bit.arshift(0x7fffffff, 30), bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), \
             bit.rol(0x12345678, 0), bit.bswap(0x12345678), bit.bswap(-1), \
             bit.band(bit.rshift(0x00070206, 16), 0x000000ff)}",
        );
        assert_eq!(
            values,
            [
                -1,
                0x0c,
                7,
                0xf1,
                -2_147_483_648,
                1,
                15,
                1,
                -16,
                1,
                0x3456_7812,
                0x7812_3456,
                0x1234_5678,
                0x7856_3412,
                -1,
                7
            ]
        );
    }

    #[test]
    fn tohex_writes_the_low_digits() {
        let values: Vec<String> = eval(
            "return {bit.tohex(255), bit.tohex(-1), bit.tohex(0x12345678, 2), \
             bit.tohex(0xabcdef, -4), bit.tohex(1, 20), bit.tohex(1, 0), bit.tohex(-1, -8)}",
        );
        assert_eq!(
            values,
            ["000000ff", "ffffffff", "78", "CDEF", "00000001", "", "FFFFFFFF"]
        );
    }

    #[test]
    fn non_numbers_are_rejected_as_luabitop_does() {
        let cases = [
            (
                "bit.tobit()",
                "bad argument #1 to 'tobit' (number expected, got no value)",
            ),
            (
                "bit.band(1, {}, 'x')",
                "bad argument #3 to 'band' (number expected, got string)",
            ),
            (
                "bit.bor(1, nil)",
                "bad argument #2 to 'bor' (number expected, got nil)",
            ),
            (
                "bit.lshift(1)",
                "bad argument #2 to 'lshift' (number expected, got no value)",
            ),
            (
                "bit.tohex(1, nil)",
                "bad argument #2 to 'tohex' (number expected, got nil)",
            ),
            (
                "bit.bnot(true)",
                "bad argument #1 to 'bnot' (number expected, got boolean)",
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
}
