//! Number text exactly as Redis 7.0 writes and reads it.
//!
//! Clients compare replies byte for byte, and scores or counters that print
//! differently from Redis break them, so these functions reproduce the C
//! library formats Redis uses (`%.17g`, `%.17Lf`) and the acceptance rules of
//! `string2ll` and `strtod` rather than Rust's own float and integer syntax.

use std::fmt::Write as _;

/// Longest text `string2ll` looks at: Redis's `LONG_STR_SIZE` is 21, and a
/// string of that length or more is rejected before any digit is read.
const MAX_INT_TEXT_BYTES: usize = 20;

/// Significant digits of `%.17g`.
const DOUBLE_DIGITS: i32 = 17;

/// A fixed buffer for number text, so that encoding a reply allocates nothing.
///
/// 24 bytes hold the longest `%.17g` output (`-1.2345678901234567e-308`)
/// and the longest `i64` (`-9223372036854775808`).
pub(crate) struct NumBuf {
    bytes: [u8; 24],
    len: usize,
}

impl NumBuf {
    fn new() -> Self {
        NumBuf {
            bytes: [0; 24],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// `%.16e` output of a finite, non-negative double, split into its parts.
///
/// The `{:.16e}` formatter rounds the exact binary value to 17 significant
/// digits with ties to even, which is what glibc's `printf` does, so these
/// digits are the ones `%.17g` prints.
struct Scientific {
    /// Always 18 bytes: one digit, the point, then 16 digits.
    mantissa: [u8; 18],
    exponent: i32,
}

impl Scientific {
    fn of(value: f64) -> Scientific {
        struct Cursor {
            bytes: [u8; 32],
            len: usize,
        }
        impl std::fmt::Write for Cursor {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let end = self.len + s.len();
                let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
                slot.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
        }
        let mut cursor = Cursor {
            bytes: [0; 32],
            len: 0,
        };
        // The longest output, "1.7976931348623157e308", is 22 bytes.
        let written = write!(cursor, "{value:.16e}");
        debug_assert!(written.is_ok());
        let text = &cursor.bytes[..cursor.len];
        let mut mantissa = [b'0'; 18];
        mantissa.copy_from_slice(&text[..18]);
        debug_assert_eq!(text[18], b'e');
        let exponent_text = &text[19..];
        let (negative, digits) = match exponent_text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, exponent_text),
        };
        let magnitude = digits
            .iter()
            .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'));
        Scientific {
            mantissa,
            exponent: if negative { -magnitude } else { magnitude },
        }
    }

    /// The 17 significant digits, without the point.
    fn digits(&self) -> [u8; 17] {
        let mut digits = [0u8; 17];
        digits[0] = self.mantissa[0];
        digits[1..].copy_from_slice(&self.mantissa[2..]);
        digits
    }
}

/// Formats a double as C's `printf("%.17g")` does, which is how Redis 7.0
/// writes scores and other doubles (`ZSCORE`, RESP3 `,` replies).
///
/// `1.5` gives `"1.5"`, `0.1` gives `"0.10000000000000001"`, `3.0` gives
/// `"3"`, `1e20` gives `"1e+20"`, infinities give `"inf"` and `"-inf"`.
/// NaN gives `"nan"` (glibc would print `"-nan"` for a NaN with its sign bit
/// set; Redis never replies with a NaN).
pub fn format_double(value: f64) -> String {
    let buf = double_text(value);
    // Every byte written by `double_text` is ASCII.
    String::from_utf8_lossy(buf.as_bytes()).into_owned()
}

pub(crate) fn double_text(value: f64) -> NumBuf {
    let mut out = NumBuf::new();
    if value.is_nan() {
        out.extend(b"nan");
        return out;
    }
    if value.is_sign_negative() {
        out.push(b'-');
    }
    let magnitude = value.abs();
    if magnitude.is_infinite() {
        out.extend(b"inf");
        return out;
    }
    let sci = Scientific::of(magnitude);
    let digits = sci.digits();
    let significant = trimmed_len(&digits);
    // C's rule for %g: with precision P and decimal exponent X (after
    // rounding), use fixed notation when -4 <= X < P, else scientific; then
    // drop trailing zeros and a trailing point.
    match usize::try_from(sci.exponent) {
        Ok(exponent) if sci.exponent < DOUBLE_DIGITS => {
            let int_len = exponent + 1;
            out.extend(&digits[..int_len]);
            if significant > int_len {
                out.push(b'.');
                out.extend(&digits[int_len..significant]);
            }
        }
        Err(_) if sci.exponent >= -4 => {
            out.extend(b"0.");
            for _ in 0..(-sci.exponent - 1) {
                out.push(b'0');
            }
            out.extend(&digits[..significant]);
        }
        _ => {
            out.push(digits[0]);
            if significant > 1 {
                out.push(b'.');
                out.extend(&digits[1..significant]);
            }
            out.push(b'e');
            out.push(if sci.exponent < 0 { b'-' } else { b'+' });
            let exponent = sci.exponent.unsigned_abs();
            if exponent < 10 {
                out.push(b'0');
            }
            write_u64(&mut out, u64::from(exponent));
        }
    }
    out
}

/// Length of `digits` without its trailing zeros, keeping at least one digit.
fn trimmed_len(digits: &[u8]) -> usize {
    digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |last| last + 1)
}

/// Formats the result of `INCRBYFLOAT` / `HINCRBYFLOAT` as Redis 7.0 does:
/// `printf("%.17Lf")`, then trailing zeros and a trailing point removed, and
/// `"-0"` turned into `"0"`.
///
/// `10.5` gives `"10.5"`, `3.0e3` gives `"3000"`, infinities give `"inf"`
/// and `"-inf"`, NaN gives `"nan"`.
///
/// Known difference: Redis parses, adds and formats in an 80-bit
/// `long double`, while this takes the `f64` the caller computed. The digits
/// are those of that `f64` value, so a value that is not exact in binary
/// shows its error where Redis's 11 extra bits of mantissa hide it below the
/// 17th decimal: `INCRBYFLOAT` by `0.1` from 0 gives `"0.1"` in Redis but
/// `"0.10000000000000001"` here, and `10.5 + 0.1` gives `"10.6"` in Redis
/// but `"10.59999999999999964"` here. Values whose `f64` error lies below
/// the 17th decimal (integers below 2^53, halves, quarters, small numbers
/// such as `0.0000125`) print identically.
pub fn format_long_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let mut text = format!("{value:.17}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
    text.truncate(trimmed);
    if text == "-0" {
        text.remove(0);
    }
    text
}

/// Parses an integer with the strictness of Redis's `string2ll`: an optional
/// `-`, then `0` alone or a digit 1-9 followed by digits; no `+`, no leading
/// zeros, no spaces, nothing after the digits, at most 20 bytes, and no
/// overflow of `i64`.
pub fn parse_redis_int(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > MAX_INT_TEXT_BYTES {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a double the way Redis 7.0 accepts scores and other double
/// arguments (`getDoubleFromObject`): the whole text must be read by C's
/// `strtod`, the first byte must not be a space, the result must not be NaN,
/// and a value that overflows to infinity or underflows to zero is
/// rejected.
///
/// Accepted: `"1"`, `"-1.5"`, `".5"`, `"5."`, `"1e10"`, `"+2E-3"`, `"inf"`,
/// `"+inf"`, `"-inf"`, `"Infinity"` (any case), and C99 hex floats such as
/// `"0x1.8p1"`. Rejected: `""`, `" 1"`, `"1 "`, `"nan"`, `"1e"`, `"1e400"`,
/// `"1e-400"`.
pub fn parse_redis_double(text: &[u8]) -> Option<f64> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        f64::INFINITY
    } else if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        parse_hex_float(&body[2..])?
    } else {
        parse_decimal_float(body)?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The decimal form `digits [. digits] [(e|E) [+|-] digits]` with at least
/// one mantissa digit. Out-of-range results are rejected, as `strtod`
/// reports them with `ERANGE`.
fn parse_decimal_float(body: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut mantissa_digits = 0;
    let mut nonzero_mantissa = false;
    while let Some(d) = body.get(i).filter(|d| d.is_ascii_digit()) {
        nonzero_mantissa |= *d != b'0';
        mantissa_digits += 1;
        i += 1;
    }
    if body.get(i) == Some(&b'.') {
        i += 1;
        while let Some(d) = body.get(i).filter(|d| d.is_ascii_digit()) {
            nonzero_mantissa |= *d != b'0';
            mantissa_digits += 1;
            i += 1;
        }
    }
    if mantissa_digits == 0 {
        return None;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent_start = i;
        while body.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exponent_start {
            return None;
        }
    }
    if i != body.len() {
        return None;
    }
    // The grammar above admits only ASCII digits, '.', 'e', 'E', '+' and '-',
    // all of which Rust's parser reads with the same correctly rounded result
    // as glibc's strtod.
    let value: f64 = std::str::from_utf8(body).ok()?.parse().ok()?;
    if value.is_infinite() || (value == 0.0 && nonzero_mantissa) {
        return None;
    }
    Some(value)
}

/// The C99 hex form after `0x`: `hexdigits [. hexdigits] [(p|P) [+|-] digits]`
/// with at least one mantissa digit, rounded to nearest, ties to even.
fn parse_hex_float(body: &[u8]) -> Option<f64> {
    // Up to 16 significant hex digits fit in the u64 accumulator; any digit
    // past those only matters for rounding, through `sticky`.
    let mut mantissa: u64 = 0;
    let mut significant = 0u32;
    let mut sticky = false;
    // Binary exponent adjustment from digits dropped before the point or
    // kept after it.
    let mut shift: i64 = 0;
    let mut digits = 0;
    let mut i = 0;
    let mut after_point = false;
    loop {
        match body.get(i) {
            Some(b'.') if !after_point => after_point = true,
            Some(&c) if c.is_ascii_hexdigit() => {
                let nibble = u64::from(hex_value(c));
                digits += 1;
                if significant < 16 {
                    if significant > 0 || nibble != 0 {
                        mantissa = mantissa << 4 | nibble;
                        significant += 1;
                    }
                    if after_point {
                        shift -= 4;
                    }
                } else {
                    sticky |= nibble != 0;
                    if !after_point {
                        shift += 4;
                    }
                }
            }
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if matches!(body.get(i), Some(b'p' | b'P')) {
        i += 1;
        let negative = match body.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exponent_start = i;
        let mut exponent: i64 = 0;
        while let Some(d) = body.get(i).filter(|d| d.is_ascii_digit()) {
            // Saturating keeps absurd exponents absurd without overflow;
            // anything past ±2^40 is far outside the range of a double.
            exponent = (exponent * 10 + i64::from(d - b'0')).min(1 << 40);
            i += 1;
        }
        if i == exponent_start {
            return None;
        }
        shift += if negative { -exponent } else { exponent };
    }
    if i != body.len() {
        return None;
    }
    if mantissa == 0 {
        return Some(0.0);
    }
    let value = round_binary(mantissa, sticky, shift);
    if value.is_infinite() || value == 0.0 {
        return None;
    }
    Some(value)
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => (c | 0x20) - b'a' + 10,
    }
}

/// Rounds `(mantissa + a nonzero fraction below one if sticky) * 2^shift` to
/// the nearest double, ties to even. `mantissa` must be nonzero.
fn round_binary(mantissa: u64, sticky: bool, shift: i64) -> f64 {
    let leading = mantissa.leading_zeros();
    let normalized = mantissa << leading;
    // The value is 1.f * 2^exponent with the top bit of `normalized` as the 1.
    let exponent = shift + 63 - i64::from(leading);
    if exponent > 1023 {
        return f64::INFINITY;
    }
    // Bits of precision available at this exponent: 53 for normal numbers,
    // fewer for subnormals, none (or less) below the smallest subnormal.
    let kept = if exponent >= -1022 {
        53
    } else {
        53 + (exponent + 1022)
    };
    if kept < 0 {
        return 0.0;
    }
    let dropped = u32::try_from(64 - kept).unwrap_or(64);
    let (quotient, remainder_above_half, remainder_is_half) = if dropped == 64 {
        // Only the rounding decision is left: the value is in [2^-1075, 2^-1074).
        let half = 1u64 << 63;
        (0u64, normalized > half || sticky, normalized == half)
    } else {
        let half = 1u64 << (dropped - 1);
        let remainder = normalized & ((1u64 << dropped) - 1);
        (
            normalized >> dropped,
            remainder > half || (remainder == half && sticky),
            remainder == half && !sticky,
        )
    };
    let round_up = remainder_above_half || (remainder_is_half && quotient & 1 == 1);
    let mut quotient = quotient + u64::from(round_up);
    if exponent >= -1022 {
        let mut biased = exponent + 1023;
        if quotient == 1 << 53 {
            quotient >>= 1;
            biased += 1;
        }
        if biased > 2046 {
            return f64::INFINITY;
        }
        let biased = u64::try_from(biased).unwrap_or(0);
        f64::from_bits(biased << 52 | (quotient & ((1 << 52) - 1)))
    } else {
        // A subnormal's bits are its multiple of 2^-1074; rounding up to
        // 2^52 of them lands exactly on the smallest normal encoding.
        f64::from_bits(quotient)
    }
}

/// Appends the decimal text of `value`.
pub(crate) fn write_i64(out: &mut NumBuf, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

fn write_u64(out: &mut NumBuf, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `value % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(&digits[start..]);
}

/// The decimal text of `value` in a stack buffer.
pub(crate) fn int_text(value: i64) -> NumBuf {
    let mut out = NumBuf::new();
    write_i64(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_double_matches_redis_examples() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-3.0), "-3");
        assert_eq!(format_double(0.0), "0");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1e16), "10000000000000000");
        assert_eq!(format_double(1e17), "1e+17");
        assert_eq!(format_double(1e-5), "1.0000000000000001e-05");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
        assert_eq!(format_double(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(format_double(5e-324), "4.9406564584124654e-324");
    }

    #[test]
    fn format_long_double_trims_like_incrbyfloat() {
        assert_eq!(format_long_double(10.5), "10.5");
        assert_eq!(format_long_double(3.0e3), "3000");
        assert_eq!(format_long_double(0.0), "0");
        assert_eq!(format_long_double(-0.0), "0");
        assert_eq!(format_long_double(-1e-30), "0");
        assert_eq!(format_long_double(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_long_double(10.5 + 0.1), "10.59999999999999964");
        assert_eq!(format_long_double(5.0e200).len(), 201);
        assert_eq!(format_long_double(f64::INFINITY), "inf");
        assert_eq!(format_long_double(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn parse_redis_int_has_string2ll_strictness() {
        assert_eq!(parse_redis_int(b"0"), Some(0));
        assert_eq!(parse_redis_int(b"-1"), Some(-1));
        assert_eq!(parse_redis_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b"00",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"100000000000000000000",
        ] {
            assert_eq!(
                parse_redis_int(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parse_redis_double_accepts_what_strtod_reads_whole() {
        assert_eq!(parse_redis_double(b"1.5"), Some(1.5));
        assert_eq!(parse_redis_double(b"-.5"), Some(-0.5));
        assert_eq!(parse_redis_double(b"5."), Some(5.0));
        assert_eq!(parse_redis_double(b"+2E-3"), Some(0.002));
        assert_eq!(parse_redis_double(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_redis_double(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_redis_double(b"-INFINITY"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_redis_double(b"0x1.8p1"), Some(3.0));
        assert_eq!(parse_redis_double(b"0X.8"), Some(0.5));
        assert_eq!(parse_redis_double(b"0e999999"), Some(0.0));
        assert_eq!(parse_redis_double(b"4e-324"), Some(5e-324));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"-nan",
            b"1e",
            b"1e+",
            b".",
            b"+",
            b"infx",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"0x",
            b"0x1p",
            b"0x1p99999",
            b"0x1p-99999",
            b"1,5",
            b"1\0",
        ] {
            assert_eq!(
                parse_redis_double(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn hex_rounding_handles_ties_and_subnormals() {
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: ties go to even.
        assert_eq!(
            parse_redis_double(b"0x20000000000001"),
            Some(9007199254740992.0)
        );
        assert_eq!(
            parse_redis_double(b"0x20000000000003"),
            Some(9007199254740996.0)
        );
        // More than 16 digits: the sticky bit breaks the tie upwards.
        assert_eq!(
            parse_redis_double(b"0x200000000000010001p-8"),
            Some(2f64.powi(61) + 512.0)
        );
        assert_eq!(parse_redis_double(b"0x1p-1074"), Some(5e-324));
        assert_eq!(parse_redis_double(b"0x1p-1075"), None);
        assert_eq!(parse_redis_double(b"0x1.8p-1075"), Some(5e-324));
        assert_eq!(
            parse_redis_double(b"0x1.fffffffffffff8p-1023"),
            Some(f64::MIN_POSITIVE)
        );
        assert_eq!(
            parse_redis_double(b"0x1.fffffffffffffp1023"),
            Some(f64::MAX)
        );
        assert_eq!(parse_redis_double(b"0x1.fffffffffffff8p1023"), None);
    }
}
