//! Splitting an inline command line into arguments, as Redis's
//! `sdssplitargs` does.
//!
//! Inline commands are what people type into `telnet` or `nc`; scripts that
//! drive Redis that way rely on its exact quoting rules, including the odd
//! ones (a quote may open in the middle of a word, `\v` separates words only
//! at their start, an unknown escape stands for the escaped character).

use bytes::{BufMut, Bytes, BytesMut};

use crate::request::ProtocolError;

/// Splits `line` (without its line ending, and free of NUL bytes) into
/// arguments. Quotes can make an argument empty (`ECHO ""`); it is kept, as
/// Redis 7.0 keeps it.
///
/// Outside quotes, words are separated by space, tab, CR or LF, and leading
/// blanks (those plus `\v` and `\f`) are skipped. In double quotes, `\n`,
/// `\r`, `\t`, `\b`, `\a` and `\xHH` are escapes and any other `\c` is `c`;
/// in single quotes only `\'` is an escape. A closing quote must be followed
/// by a blank or the end of the line.
pub(crate) fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    debug_assert!(!line.contains(&0));
    // One allocation holds every argument; each is split off and shared.
    let mut out = BytesMut::with_capacity(line.len());
    let mut args = Vec::new();
    // Reading past the end yields 0, the C string terminator `sdssplitargs`
    // stops at.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut quote = Quote::None;
        loop {
            let c = at(i);
            let mut done = false;
            match quote {
                Quote::Double => {
                    if c == b'\\' && at(i + 1) == b'x' && is_hex(at(i + 2)) && is_hex(at(i + 3)) {
                        out.put_u8(hex_value(at(i + 2)) << 4 | hex_value(at(i + 3)));
                        i += 3;
                    } else if c == b'\\' && at(i + 1) != 0 {
                        i += 1;
                        out.put_u8(match at(i) {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    } else if c == b'"' {
                        if at(i + 1) != 0 && !is_c_space(at(i + 1)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        done = true;
                    } else if c == 0 {
                        return Err(ProtocolError::UnbalancedQuotes);
                    } else {
                        out.put_u8(c);
                    }
                }
                Quote::Single => {
                    if c == b'\\' && at(i + 1) == b'\'' {
                        i += 1;
                        out.put_u8(b'\'');
                    } else if c == b'\'' {
                        if at(i + 1) != 0 && !is_c_space(at(i + 1)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        done = true;
                    } else if c == 0 {
                        return Err(ProtocolError::UnbalancedQuotes);
                    } else {
                        out.put_u8(c);
                    }
                }
                Quote::None => match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => quote = Quote::Double,
                    b'\'' => quote = Quote::Single,
                    _ => out.put_u8(c),
                },
            }
            if at(i) != 0 {
                i += 1;
            }
            if done {
                break;
            }
        }
        args.push(out.split().freeze());
    }
}

#[derive(Clone, Copy)]
enum Quote {
    None,
    Double,
    Single,
}

/// C's `isspace` in the "C" locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => (c | 0x20) - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        split_inline(line).map(|args| args.iter().map(|a| a.to_vec()).collect())
    }

    fn ok(args: &[&[u8]]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        Ok(args.iter().map(|a| a.to_vec()).collect())
    }

    #[test]
    fn plain_words_split_on_spaces_and_tabs() {
        assert_eq!(split(b"SET key value"), ok(&[b"SET", b"key", b"value"]));
        assert_eq!(split(b"  ECHO\tx  "), ok(&[b"ECHO", b"x"]));
        assert_eq!(split(b""), ok(&[]));
        assert_eq!(split(b" \t "), ok(&[]));
    }

    #[test]
    fn vertical_tab_is_skipped_before_a_word_but_kept_inside_it() {
        assert_eq!(split(b"\x0bab\x0bc"), ok(&[b"ab\x0bc"]));
    }

    #[test]
    fn double_quotes_understand_escapes() {
        assert_eq!(
            split(br#"SET "a b" "\n\r\t\b\a\\\"\q""#),
            ok(&[b"SET", b"a b", b"\n\r\t\x08\x07\\\"q"])
        );
        assert_eq!(split(br#"ECHO "\x41\x4g\xZZ""#), ok(&[b"ECHO", b"Ax4gxZZ"]));
        assert_eq!(split(br#"ECHO "\x00\xff""#), ok(&[b"ECHO", b"\x00\xff"]));
    }

    #[test]
    fn single_quotes_only_escape_the_quote() {
        assert_eq!(split(br"ECHO 'a\'b\n'"), ok(&[b"ECHO", b"a'b\\n"]));
    }

    #[test]
    fn quote_may_open_mid_word() {
        assert_eq!(split(br#"ab"c d" e"#), ok(&[b"abc d", b"e"]));
    }

    #[test]
    fn quoted_empty_arguments_are_kept() {
        assert_eq!(split(br#"ECHO "" x ''"#), ok(&[b"ECHO", b"", b"x", b""]));
        assert_eq!(split(br#""""#), ok(&[b""]));
    }

    #[test]
    fn closing_quote_must_be_followed_by_blank_or_end() {
        assert_eq!(split(br#"ECHO "a"b"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(br"ECHO 'a'b"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(b"ECHO \"a\"\tb"), ok(&[b"ECHO", b"a", b"b"]));
        assert_eq!(split(b"ECHO \"a\"\x0cb"), ok(&[b"ECHO", b"a", b"b"]));
    }

    #[test]
    fn unterminated_quotes_are_unbalanced() {
        assert_eq!(split(br#"ECHO "abc"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(br"ECHO 'abc"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(
            split(br#"ECHO "abc\"#),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            split(br#"ECHO "abc\""#),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn cr_inside_a_line_ends_a_word_outside_quotes_only() {
        assert_eq!(split(b"a\rb \"c\rd\""), ok(&[b"a", b"b", b"c\rd"]));
    }
}
