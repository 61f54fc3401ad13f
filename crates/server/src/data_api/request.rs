//! Decoding a data API request into commands: a pure function of the body
//! (and, for path commands, the path and query), so the fuzz target
//! `fuzz_targets/data_api_request.rs` and the unit tests below drive exactly
//! what the HTTP handlers run.
//!
//! The shapes are those of the REST protocol serverless Redis SDKs speak:
//! - `POST /`: one command, `["SET","k","v"]`;
//! - `POST /pipeline` and `POST /multi-exec`: `[["SET","k","v"],["GET","k"]]`;
//! - a path command, `GET /set/k/v?EX=10`: each path segment an argument
//!   (percent-decoded), each query pair two more (or one, when it has no
//!   value), and a non-empty body the last argument, byte for byte, which
//!   is how a binary value is sent.
//!
//! An argument is a JSON string (its UTF-8 bytes) or a JSON number (its
//! text as sent, `1.5` stays `1.5`); anything else is refused with a message
//! naming the command and argument.

use bytes::Bytes;
use serde_json::Value;

/// Commands one `/pipeline` or `/multi-exec` request may carry.
pub const PIPELINE_COMMANDS_MAX: usize = 10_000;

/// Why a request body or path is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the body must be a JSON array holding one command, such as [\"SET\",\"key\",\"value\"]"
    )]
    NotCommand,
    #[error("the body must be a JSON array of commands, each an array such as [\"SET\",\"key\",\"value\"]")]
    NotCommandList,
    #[error("command {command} is empty: a command is an array of its name and arguments")]
    EmptyCommand { command: usize },
    #[error("command {command}, argument {argument}: {kind} is not a string or a number")]
    BadArgument {
        command: usize,
        argument: usize,
        kind: &'static str,
    },
    #[error("the request carries {count} commands, more than the {max} allowed")]
    TooManyCommands { count: usize, max: usize },
    #[error("the request carries no command")]
    NoCommands,
    #[error("the path is not a command: {0}")]
    BadPath(&'static str),
}

/// `POST /`: one command.
pub fn command(body: &[u8]) -> Result<Vec<Bytes>, RequestError> {
    let value = json(body)?;
    match value {
        Value::Array(items) => args(items, 1),
        _ => Err(RequestError::NotCommand),
    }
}

/// `POST /pipeline` and `POST /multi-exec`: a list of commands.
pub fn commands(body: &[u8]) -> Result<Vec<Vec<Bytes>>, RequestError> {
    let Value::Array(list) = json(body)? else {
        return Err(RequestError::NotCommandList);
    };
    if list.is_empty() {
        return Err(RequestError::NoCommands);
    }
    if list.len() > PIPELINE_COMMANDS_MAX {
        return Err(RequestError::TooManyCommands {
            count: list.len(),
            max: PIPELINE_COMMANDS_MAX,
        });
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Array(items) => args(items, i + 1),
            _ => Err(RequestError::NotCommandList),
        })
        .collect()
}

/// A path command: `path` without its leading `/`, `query` the text after
/// `?` (empty when there is none), `body` the request body.
pub fn path_command(path: &str, query: &str, body: &[u8]) -> Result<Vec<Bytes>, RequestError> {
    let mut out = Vec::new();
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Err(RequestError::NoCommands);
    }
    for segment in path.split('/') {
        out.push(percent_decode(segment)?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.push(percent_decode(name)?);
        if !value.is_empty() {
            out.push(percent_decode(value)?);
        }
    }
    if !body.is_empty() {
        out.push(Bytes::copy_from_slice(body));
    }
    Ok(out)
}

/// Commands the data API does not run, with the reason: each request is
/// answered once, so nothing can be pushed to it later.
pub fn refusal(args: &[Bytes]) -> Option<String> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let stays_open = matches!(
        name.as_str(),
        "subscribe" | "psubscribe" | "ssubscribe" | "monitor" | "sync" | "psync"
    ) || (name == "client"
        && args
            .get(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"tracking")));
    stays_open.then(|| {
        format!("ERR '{name}' needs a connection that stays open; the data API answers each request once (use RESP for it)")
    })
}

fn json(body: &[u8]) -> Result<Value, RequestError> {
    serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))
}

fn args(items: Vec<Value>, command: usize) -> Result<Vec<Bytes>, RequestError> {
    if items.is_empty() {
        return Err(RequestError::EmptyCommand { command });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(Bytes::from(s)),
            Value::Number(n) => Ok(Bytes::from(n.to_string())),
            other => Err(RequestError::BadArgument {
                command,
                argument: i + 1,
                kind: match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Array(_) => "an array",
                    _ => "an object",
                },
            }),
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<Bytes, RequestError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(RequestError::BadPath(
                    "a % is not followed by two hex digits",
                ))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(args: &[Bytes]) -> Vec<&[u8]> {
        args.iter().map(|a| &a[..]).collect()
    }

    #[test]
    fn one_command_takes_strings_and_numbers_as_sent() {
        let args = command(br#"["SET","k","v\u0000\u00e9","EX",10,"x",1.5]"#).unwrap();
        assert_eq!(
            strs(&args),
            vec![
                &b"SET"[..],
                b"k",
                "v\u{0}é".as_bytes(),
                b"EX",
                b"10",
                b"x",
                b"1.5"
            ]
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert!(matches!(command(b"{"), Err(RequestError::NotJson(_))));
        assert_eq!(command(b"{}"), Err(RequestError::NotCommand));
        assert_eq!(
            command(b"[]"),
            Err(RequestError::EmptyCommand { command: 1 })
        );
        assert_eq!(
            command(br#"["SET",null]"#),
            Err(RequestError::BadArgument {
                command: 1,
                argument: 2,
                kind: "null"
            })
        );
        assert_eq!(commands(b"[]"), Err(RequestError::NoCommands));
        assert_eq!(
            commands(br#"["GET","k"]"#),
            Err(RequestError::NotCommandList)
        );
        assert_eq!(
            commands(br#"[["GET","k"],[{"a":1}]]"#),
            Err(RequestError::BadArgument {
                command: 2,
                argument: 1,
                kind: "an object"
            })
        );
        let deep = "[".repeat(100_000);
        assert!(matches!(
            command(deep.as_bytes()),
            Err(RequestError::NotJson(_))
        ));
    }

    #[test]
    fn pipelines_are_bounded() {
        let one = r#"["PING"],"#.repeat(PIPELINE_COMMANDS_MAX);
        let ok = format!("[{}]", one.trim_end_matches(','));
        assert_eq!(
            commands(ok.as_bytes()).unwrap().len(),
            PIPELINE_COMMANDS_MAX
        );
        let over = format!("[{one}[\"PING\"]]");
        assert_eq!(
            commands(over.as_bytes()),
            Err(RequestError::TooManyCommands {
                count: PIPELINE_COMMANDS_MAX + 1,
                max: PIPELINE_COMMANDS_MAX
            })
        );
    }

    #[test]
    fn path_commands_decode_segments_query_and_body() {
        let args = path_command("set/a%2Fb/v%20w", "EX=10&NX", b"").unwrap();
        assert_eq!(
            strs(&args),
            vec![&b"set"[..], b"a/b", b"v w", b"EX", b"10", b"NX"]
        );
        let args = path_command("set/k/", "", b"\xff\x00bin").unwrap();
        assert_eq!(strs(&args), vec![&b"set"[..], b"k", b"\xff\x00bin"]);
        assert_eq!(
            path_command("get/%zz", "", b""),
            Err(RequestError::BadPath(
                "a % is not followed by two hex digits"
            ))
        );
        assert_eq!(path_command("", "", b""), Err(RequestError::NoCommands));
        assert!(path_command("get/%4", "", b"").is_err());
    }

    #[test]
    fn commands_that_need_an_open_connection_are_refused() {
        assert!(refusal(&[Bytes::from("SUBSCRIBE"), Bytes::from("c")]).is_some());
        assert!(refusal(&[Bytes::from("client"), Bytes::from("TRACKING")]).is_some());
        assert!(refusal(&[Bytes::from("client"), Bytes::from("id")]).is_none());
        assert!(refusal(&[Bytes::from("get"), Bytes::from("k")]).is_none());
    }
}
