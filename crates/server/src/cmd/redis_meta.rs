//! Redis 7.0's description of its commands: the flags, ACL categories, tips,
//! key specs and subcommands `COMMAND INFO` reports and the documentation
//! `COMMAND DOCS` reports, for every command Redis 7.0.15 has.
//!
//! Redis generates this from its own JSON command files when it is built;
//! Meridian keeps the result as Redis sends it: `redis_commands.resp` holds
//! redis-server 7.0.15's RESP3 replies to `COMMAND INFO` and `COMMAND DOCS`
//! (written and checked against a real redis-server by
//! `crates/meridian/tests/command_metadata.rs`). Parsing the replies keeps
//! every RESP3 type (sets, maps) and every order exactly as Redis has them.
//!
//! Redis's key specs are evaluated here too ([`keys_by_specs`]), for
//! `COMMAND GETKEYS` and for the keys client tracking remembers.
//!
//! Meridian's own table stays the authority for what it implements: arity
//! and key positions come from its [`super::Spec`]s, and a test checks that
//! they and the `write` flag agree with Redis's description.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use meridian_resp::{parse_frame, Frame};

/// redis-server 7.0.15's RESP3 replies to `COMMAND INFO` then `COMMAND DOCS`.
const REDIS_COMMANDS_RESP3: &[u8] = include_bytes!("redis_commands.resp");

/// Redis's description of one command or subcommand.
pub struct Meta {
    /// The `COMMAND INFO` entry: name, arity, flags, first key, last key,
    /// step, ACL categories, tips, key specs, subcommands.
    pub info: Frame,
    /// The `COMMAND DOCS` map of the command (without its name).
    pub docs: Option<Frame>,
}

impl Meta {
    /// The flags (`write`, `readonly`, `fast`, …).
    pub fn flags(&self) -> impl Iterator<Item = &str> {
        words(self.field(2))
    }

    /// Whether Redis gives the command the flag `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags().any(|f| f == flag)
    }

    /// The ACL categories (`@read`, `@string`, …).
    pub fn acl_categories(&self) -> impl Iterator<Item = &str> {
        words(self.field(6))
    }

    pub fn arity(&self) -> i64 {
        match self.field(1) {
            Some(Frame::Integer(n)) => *n,
            _ => 0,
        }
    }

    /// First key, last key and step.
    pub fn key_range(&self) -> (i64, i64, i64) {
        let int = |i| match self.field(i) {
            Some(Frame::Integer(n)) => *n,
            _ => 0,
        };
        (int(3), int(4), int(5))
    }

    /// The `COMMAND INFO` element at `i`.
    pub fn field(&self, i: usize) -> Option<&Frame> {
        match &self.info {
            Frame::Array(items) => items.get(i),
            _ => None,
        }
    }
}

/// The words of a set or array of simple strings.
fn words(f: Option<&Frame>) -> impl Iterator<Item = &str> {
    let items: &[Frame] = match f {
        Some(Frame::Set(items) | Frame::Array(items)) => items,
        _ => &[],
    };
    items.iter().filter_map(|w| match w {
        Frame::Simple(s) => Some(s.as_str()),
        _ => None,
    })
}

/// Where a command's keys are, with Redis's key-spec flags for each.
pub type KeyPositions = Vec<(usize, Vec<Frame>)>;

/// A key spec's field `name` (a map inside a map).
fn field<'a>(map: &'a Frame, name: &str) -> Option<&'a Frame> {
    match map {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches!(k, Frame::Bulk(b) if &b[..] == name.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn int_field(map: &Frame, name: &str) -> Option<i64> {
    match field(map, name) {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    }
}

fn type_of(part: &Frame) -> &[u8] {
    match field(part, "type") {
        Some(Frame::Bulk(t)) => t,
        _ => b"",
    }
}

/// Why key specs found no keys.
#[derive(Debug, PartialEq)]
pub enum SpecMiss {
    /// A spec of type `unknown`: only the command's own code knows.
    Unknown,
    /// The arguments do not fit the specs.
    Invalid,
}

/// Evaluates Redis's key specs against a full command line, as Redis's
/// `getKeysUsingKeySpecs` does.
pub fn keys_by_specs(specs: &[Frame], line: &[Bytes]) -> Result<KeyPositions, SpecMiss> {
    let known = |t: &[u8]| matches!(t, b"index" | b"keyword" | b"range" | b"keynum");
    let unknown = specs.iter().any(|ks| {
        [field(ks, "begin_search"), field(ks, "find_keys")]
            .into_iter()
            .any(|part| part.is_none_or(|p| !known(type_of(p))))
    });
    if unknown {
        return Err(SpecMiss::Unknown);
    }
    keys_by_known_specs(specs, line).ok_or(SpecMiss::Invalid)
}

fn keys_by_known_specs(specs: &[Frame], line: &[Bytes]) -> Option<KeyPositions> {
    let argc = line.len() as i64;
    let mut out = Vec::new();
    for ks in specs {
        let flags = match field(ks, "flags") {
            Some(Frame::Set(f) | Frame::Array(f)) => f.clone(),
            _ => Vec::new(),
        };
        if flags
            .iter()
            .any(|f| matches!(f, Frame::Simple(s) if s == "not_key"))
        {
            continue;
        }
        let (begin, find) = (field(ks, "begin_search")?, field(ks, "find_keys")?);
        let (bspec, fspec) = (field(begin, "spec")?, field(find, "spec")?);
        let first = match type_of(begin) {
            b"index" => int_field(bspec, "index")?,
            b"keyword" => {
                let word = match field(bspec, "keyword") {
                    Some(Frame::Bulk(w)) => w.clone(),
                    _ => return None,
                };
                let from = int_field(bspec, "startfrom")?;
                // As Redis searches: forward up to the last argument but
                // one, or backward down to the second (a key must follow).
                let is_word = |i: &i64| line[*i as usize].eq_ignore_ascii_case(&word);
                let found = if from > 0 {
                    (from..argc - 1).find(is_word)
                } else {
                    (2..=argc + from).rev().find(is_word)
                };
                match found {
                    Some(i) => i + 1,
                    None => continue,
                }
            }
            _ => return None,
        };
        let (first, last, step) = match type_of(find) {
            b"range" => {
                let (lastkey, step) = (int_field(fspec, "lastkey")?, int_field(fspec, "keystep")?);
                let limit = int_field(fspec, "limit")?;
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, step)
            }
            b"keynum" => {
                let idx = first + int_field(fspec, "keynumidx")?;
                let n = line
                    .get(usize::try_from(idx).ok()?)
                    .and_then(|a| meridian_resp::parse_redis_int(a))
                    .filter(|n| *n >= 0)?;
                let step = int_field(fspec, "keystep")?;
                let first = first.checked_add(int_field(fspec, "firstkey")?)?;
                // A count from the client: it may be anything.
                (first, first.checked_add(n)? - 1, step)
            }
            _ => return None,
        };
        if step <= 0 {
            return None;
        }
        let mut i = first;
        while i <= last {
            if i >= argc || i < 1 {
                return None;
            }
            out.push((i as usize, flags.clone()));
            i = i.checked_add(step)?;
        }
    }
    Some(out)
}

/// Every command and subcommand Redis 7.0 has, by lower-case full name
/// (`get`, `client|kill`).
pub fn all() -> &'static HashMap<String, Meta> {
    static META: OnceLock<HashMap<String, Meta>> = OnceLock::new();
    META.get_or_init(|| load(REDIS_COMMANDS_RESP3))
}

/// Redis's description of `name` (`get`, `client|kill`), if Redis has it.
pub fn get(name: &str) -> Option<&'static Meta> {
    all().get(name)
}

/// Where the keys of `line` are, by the key specs of `name` (`zunion`,
/// `object|encoding`); empty if Redis does not describe it or its specs
/// do not fit the line.
pub fn key_positions(name: &str, line: &[Bytes]) -> Vec<usize> {
    let Some(Frame::Set(specs) | Frame::Array(specs)) = get(name).and_then(|m| m.field(8)) else {
        return Vec::new();
    };
    keys_by_specs(specs, line)
        .map(|keys| keys.into_iter().map(|(i, _)| i).collect())
        .unwrap_or_default()
}

/// Whether Redis has the command `name` (`get`, `client|kill`) and gives
/// it the flag `flag` (`readonly`, `noscript`, `no_multi`…).
pub fn has_flag(name: &str, flag: &str) -> bool {
    get(name).is_some_and(|m| m.has_flag(flag))
}

/// Whether Redis treats `name` as a command that may replicate: its
/// `may_replicate` flag, and PFCOUNT, which keeps its cached count by
/// writing and is flagged so inside Redis though its description shows
/// only `readonly`. Read-only scripts refuse these and a WRITE pause holds
/// them.
pub fn may_replicate(name: &str) -> bool {
    name == "pfcount" || has_flag(name, "may_replicate")
}

/// The subcommands Redis has of a container command, by full name.
pub fn subcommand_names(name: &str) -> Vec<&'static str> {
    // Redis sends a container's subcommands as an array, and a plain
    // command's (none) as an empty set.
    let Some(Frame::Array(subs) | Frame::Set(subs)) = get(name).and_then(|m| m.field(9)) else {
        return Vec::new();
    };
    subs.iter()
        .filter_map(|s| match s {
            Frame::Array(items) => match items.first() {
                Some(Frame::Bulk(n)) => std::str::from_utf8(n).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn load(bytes: &[u8]) -> HashMap<String, Meta> {
    let mut out = HashMap::new();
    let Ok(Some((info, used))) = parse_frame(bytes) else {
        return out;
    };
    let docs = match parse_frame(&bytes[used..]) {
        Ok(Some((Frame::Map(pairs), _))) => pairs,
        _ => Vec::new(),
    };
    let mut docs_by_name = HashMap::new();
    collect_docs(docs, &mut docs_by_name);
    if let Frame::Array(entries) = info {
        collect_info(entries, &mut docs_by_name, &mut out);
    }
    out
}

fn name_of(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => std::str::from_utf8(b).ok().map(str::to_ascii_lowercase),
        Frame::Simple(s) => Some(s.to_ascii_lowercase()),
        _ => None,
    }
}

/// Flattens the docs map, subcommands included, by full name.
fn collect_docs(pairs: Vec<(Frame, Frame)>, out: &mut HashMap<String, Frame>) {
    for (name, doc) in pairs {
        let Some(name) = name_of(&name) else {
            continue;
        };
        if let Frame::Map(fields) = &doc {
            for (k, v) in fields {
                if name_of(k).as_deref() == Some("subcommands") {
                    if let Frame::Map(subs) = v {
                        collect_docs(subs.clone(), out);
                    }
                }
            }
        }
        out.insert(name, doc);
    }
}

fn collect_info(
    entries: Vec<Frame>,
    docs: &mut HashMap<String, Frame>,
    out: &mut HashMap<String, Meta>,
) {
    for info in entries {
        let Frame::Array(items) = &info else {
            continue;
        };
        let Some(name) = items.first().and_then(name_of) else {
            continue;
        };
        if let Some(Frame::Array(subs) | Frame::Set(subs)) = items.get(9) {
            collect_info(subs.clone(), docs, out);
        }
        let doc = docs.remove(&name);
        out.insert(name, Meta { info, docs: doc });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_redis_command_is_described() {
        let all = all();
        // Redis 7.0.15 has 240 commands, plus their subcommands.
        assert!(all.len() > 240, "{}", all.len());
        let get = super::get("get").expect("get");
        assert_eq!(get.arity(), 2);
        assert_eq!(get.flags().collect::<Vec<_>>(), ["readonly", "fast"]);
        assert_eq!(
            get.acl_categories().collect::<Vec<_>>(),
            ["@read", "@string", "@fast"]
        );
        assert_eq!(get.key_range(), (1, 1, 1));
        assert!(get.docs.is_some());
        let kill = super::get("client|kill").expect("client|kill");
        assert_eq!(kill.arity(), -3);
        assert!(kill.docs.is_some());
        assert!(subcommand_names("client").contains(&"client|kill"));
    }
}
