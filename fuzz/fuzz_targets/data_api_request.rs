//! Feeds arbitrary bytes to the REST data API's request decoder
//! (`meridian_server::data_api::request`), the pure function every data API
//! request passes before anything runs.
//!
//! Checks that nothing panics, that every decoded command has a name, that
//! a pipeline never exceeds its command cap, that a command re-encoded as a
//! JSON array of strings decodes back to itself, and that a decoded command
//! is either refused or not whatever its case.
//!
//! Input layout: byte 0 picks the shape (0: `POST /`, 1: `/pipeline`, else a
//! path command); for a path command byte 1 splits the rest into path and
//! query + body at that offset, and a `\n` in the rest ends the query.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use meridian_server::data_api::request::{self, PIPELINE_COMMANDS_MAX};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    match shape {
        0 => {
            if let Ok(args) = request::command(rest) {
                check(&args);
                round_trips(&args);
            }
        }
        1 => {
            if let Ok(cmds) = request::commands(rest) {
                assert!(!cmds.is_empty() && cmds.len() <= PIPELINE_COMMANDS_MAX);
                cmds.iter().for_each(|c| check(c));
            }
        }
        _ => {
            let Some((&split, rest)) = rest.split_first() else {
                return;
            };
            let at = usize::from(split).min(rest.len());
            let (path, tail) = rest.split_at(at);
            let (query, body) = match tail.iter().position(|&b| b == b'\n') {
                Some(i) => (&tail[..i], &tail[i + 1..]),
                None => (tail, &[][..]),
            };
            let (Ok(path), Ok(query)) = (std::str::from_utf8(path), std::str::from_utf8(query))
            else {
                return;
            };
            if let Ok(args) = request::path_command(path, query, body) {
                assert!(!args.is_empty());
                if !body.is_empty() {
                    assert_eq!(args.last().map(|a| &a[..]), Some(body));
                }
                let _ = request::refusal(&args);
            }
        }
    }
});

fn check(args: &[Bytes]) {
    assert!(!args.is_empty(), "a decoded command has a name");
    let upper: Vec<Bytes> = args
        .iter()
        .map(|a| Bytes::from(a.to_ascii_uppercase()))
        .collect();
    assert_eq!(
        request::refusal(args).is_some(),
        request::refusal(&upper).is_some()
    );
}

fn round_trips(args: &[Bytes]) {
    let strings: Option<Vec<&str>> = args.iter().map(|a| std::str::from_utf8(a).ok()).collect();
    let strings = strings.expect("arguments decoded from JSON are UTF-8");
    let json = serde_json::to_vec(&strings).expect("strings encode");
    assert_eq!(request::command(&json).as_deref(), Ok(args));
}
