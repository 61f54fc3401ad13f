//! Randomized proofs that the number functions agree with the C library
//! calls Redis 7.0 makes: `snprintf("%.17g")`, `snprintf("%.17Lf")` on a value
//! exact in `double`, `strtod` with Redis's acceptance checks, and
//! `string2ll`.

use std::ffi::{c_char, CStr, CString};

use meridian_resp::{format_double, format_long_double, parse_redis_double, parse_redis_int};
use proptest::collection::vec;
use proptest::prelude::*;

fn c_format(format: &CStr, value: f64) -> String {
    let mut buf = [0u8; 512];
    // SAFETY: the buffer size is passed along, the format takes one double.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
            format.as_ptr(),
            value,
        )
    };
    let len = usize::try_from(len).expect("snprintf succeeded");
    assert!(len < buf.len(), "snprintf output truncated");
    String::from_utf8(buf[..len].to_vec()).expect("ASCII")
}

/// Redis's `ld2string(..., LD_STR_HUMAN)` on a value that is exact in double.
fn redis_human(value: f64) -> String {
    let mut text = c_format(c"%.17f", value);
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(trimmed);
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}

/// Redis's `getDoubleFromObject`.
fn redis_double(text: &[u8]) -> Option<f64> {
    if text.is_empty() || text[0].is_ascii_whitespace() || text[0] == 0x0b {
        return None;
    }
    // strtod stops at a NUL, so the whole text is never consumed.
    let c_text = CString::new(text).ok()?;
    let mut end: *mut c_char = std::ptr::null_mut();
    // SAFETY: errno is thread-local; the string is NUL-terminated.
    let (value, errno) = unsafe {
        *libc::__errno_location() = 0;
        let value = libc::strtod(c_text.as_ptr(), &mut end);
        (value, *libc::__errno_location())
    };
    let consumed = end as usize - c_text.as_ptr() as usize;
    let out_of_range = errno == libc::ERANGE && (value.is_infinite() || value == 0.0);
    if consumed != text.len() || out_of_range || value.is_nan() {
        return None;
    }
    Some(value)
}

/// Doubles whose decimal expansions end in many exact digits, which is where
/// ties in rounding to 17 digits live.
fn dyadic() -> impl Strategy<Value = f64> {
    (1u64..1 << 20, -1074i32..1000).prop_map(|(m, e)| (m as f64) * 2f64.powi(e))
}

fn any_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        dyadic(),
        (-1e6f64..1e6),
        any::<i32>().prop_map(f64::from),
    ]
    .prop_filter("NaN formats by sign in C", |d| !d.is_nan())
}

/// Pieces of number syntax, and things that must break it.
const NUMBER_PIECES: &[&[u8]] = &[
    b"0",
    b"1",
    b"9",
    b"5",
    b".",
    b"e",
    b"E",
    b"-",
    b"+",
    b"0x",
    b"p",
    b"f",
    b"A",
    b"inf",
    b"nan",
    b"infinity",
    b" ",
    b"\0",
    b"400",
    b"308",
    b"1074",
    b"00000000000000000000",
];

fn number_like() -> impl Strategy<Value = Vec<u8>> {
    vec(prop::sample::select(NUMBER_PIECES), 1..10).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn format_double_matches_c_percent_17g(value in any_double()) {
        prop_assert_eq!(format_double(value), c_format(c"%.17g", value));
    }

    #[test]
    fn format_long_double_matches_redis_human_format(value in any_double()) {
        prop_assert_eq!(format_long_double(value), redis_human(value));
    }

    #[test]
    fn parse_redis_double_accepts_exactly_what_redis_accepts(text in number_like()) {
        let ours = parse_redis_double(&text).map(f64::to_bits);
        let redis = redis_double(&text).map(f64::to_bits);
        prop_assert_eq!(ours, redis, "{:?}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn parse_redis_double_reads_back_formatted_doubles(value in any_double()) {
        prop_assert_eq!(parse_redis_double(format_double(value).as_bytes()), Some(value));
    }

    #[test]
    fn parse_redis_double_reads_hex_floats_like_strtod(
        mantissa in "[0-9a-fA-F]{0,20}(\\.[0-9a-fA-F]{0,20})?",
        exponent in prop::option::of(-1200i32..1200),
        negative in any::<bool>(),
    ) {
        let mut text = format!("{}0x{mantissa}", if negative { "-" } else { "" });
        if let Some(exponent) = exponent {
            text.push_str(&format!("p{exponent}"));
        }
        let ours = parse_redis_double(text.as_bytes()).map(f64::to_bits);
        let redis = redis_double(text.as_bytes()).map(f64::to_bits);
        prop_assert_eq!(ours, redis, "{}", text);
    }

    #[test]
    fn parse_redis_int_reads_every_canonical_i64(value in any::<i64>()) {
        prop_assert_eq!(parse_redis_int(value.to_string().as_bytes()), Some(value));
    }

    #[test]
    fn parse_redis_int_accepts_only_canonical_text(text in "[-+ 0-9a]{0,22}") {
        let canonical = text
            .parse::<i64>()
            .ok()
            .filter(|value| value.to_string() == text);
        prop_assert_eq!(parse_redis_int(text.as_bytes()), canonical);
    }
}
