//! Randomized proofs about the request parser: commands survive any split of
//! the stream, garbage never panics and gets the same answer however it is
//! split, and parsed commands re-encode to themselves. A failure prints the
//! shrunk input, and proptest keeps it in `proptest-regressions/` to replay.

use bytes::BytesMut;
use meridian_resp::{encode_command, Limits, ProtocolError, RequestParser};
use proptest::collection::vec;
use proptest::prelude::*;

type Command = Vec<Vec<u8>>;

/// Everything a stream produced: its commands and how it ended (`Ok` if the
/// parser was waiting for more).
#[derive(Debug, PartialEq)]
struct Outcome {
    commands: Vec<Command>,
    end: Result<(), ProtocolError>,
}

/// Feeds `input` cut at `cuts` (offsets, in any order, possibly repeated).
fn feed(input: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut start = 0;
    for bound in bounds {
        buf.extend_from_slice(&input[start..bound]);
        start = bound;
        loop {
            match parser.next_command(&mut buf, limits) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "empty command returned");
                    commands.push(args.iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        commands,
                        end: Err(error),
                    }
                }
            }
        }
    }
    Outcome {
        commands,
        end: Ok(()),
    }
}

fn multibulk(commands: &[Command]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for command in commands {
        encode_command(command, &mut out);
    }
    out.to_vec()
}

/// Bytes that look enough like RESP to reach deep into the parser.
fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        Just(b"\r\n".to_vec()),
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\0".to_vec()),
        (0i64..40).prop_map(|n| n.to_string().into_bytes()),
        Just(b"-1".to_vec()),
        Just(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()),
    ];
    vec(piece, 0..200).prop_map(|pieces| pieces.concat())
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (1usize..80, 0usize..64, 0usize..16, any::<bool>()).prop_map(
        |(max_inline_bytes, max_bulk_bytes, max_multibulk_len, unauthenticated)| Limits {
            max_inline_bytes,
            max_bulk_bytes,
            max_multibulk_len,
            unauthenticated,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn multibulk_commands_survive_any_split(
        commands in vec(vec(vec(any::<u8>(), 0..300), 0..20), 1..6),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let input = multibulk(&commands);
        let expected: Vec<Command> = commands.iter().filter(|c| !c.is_empty()).cloned().collect();
        prop_assert_eq!(
            feed(&input, &cuts, &Limits::default()),
            Outcome { commands: expected, end: Ok(()) }
        );
    }

    #[test]
    fn garbage_never_panics_and_any_split_gives_the_same_outcome(
        input in resp_like_bytes(),
        cuts in vec(any::<usize>(), 0..12),
        limits in small_limits(),
    ) {
        let whole = feed(&input, &[], &limits);
        let split = feed(&input, &cuts, &limits);
        prop_assert_eq!(&whole, &split);
        for command in &whole.commands {
            let mut encoded = BytesMut::new();
            encode_command(command, &mut encoded);
            let again = feed(&encoded, &[], &Limits::default());
            prop_assert_eq!(again, Outcome { commands: vec![command.clone()], end: Ok(()) });
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        input in vec(any::<u8>(), 0..600),
        cuts in vec(any::<usize>(), 0..6),
        limits in small_limits(),
    ) {
        let whole = feed(&input, &[], &limits);
        prop_assert_eq!(whole, feed(&input, &cuts, &limits));
    }

    #[test]
    fn quoted_inline_arguments_read_back_exactly(
        args in vec(vec(any::<u8>(), 0..40), 1..8),
        single_quote_plain in any::<bool>(),
    ) {
        let mut line = Vec::new();
        for arg in &args {
            line.extend_from_slice(&quote(arg, single_quote_plain));
            line.push(b' ');
        }
        line.extend_from_slice(b"\r\n");
        prop_assert_eq!(
            feed(&line, &[], &Limits::default()),
            Outcome { commands: vec![args], end: Ok(()) }
        );
    }
}

/// Quotes `arg` so that `sdssplitargs` reads it back: double quotes with
/// escapes, or single quotes when asked and the argument allows it. Inside
/// single quotes only `\'` is an escape, so an argument ending in a backslash
/// cannot be single-quoted: `'\'` is an escaped quote with no closing one.
fn quote(arg: &[u8], single_quote_plain: bool) -> Vec<u8> {
    let plain = arg.iter().all(|&c| (0x20..0x7f).contains(&c));
    if single_quote_plain && plain && arg.last() != Some(&b'\\') {
        let mut out = vec![b'\''];
        for &c in arg {
            if c == b'\'' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'\'');
        return out;
    }
    let mut out = vec![b'"'];
    for &c in arg {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}
