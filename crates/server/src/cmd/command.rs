//! COMMAND, COMMAND COUNT/INFO/DOCS/LIST/GETKEYS/GETKEYSANDFLAGS: the
//! command table as clients introspect it.
//!
//! A command Redis has is described with Redis's own flags, ACL
//! categories, tips, key specs and documentation ([`super::redis_meta`]),
//! listing only the subcommands Meridian implements; Meridian's own
//! commands (MERIDIAN) are described from their table entries.

use bytes::Bytes;
use meridian_resp::Frame;

use super::redis_meta::{self, keys_by_specs, KeyPositions, Meta, SpecMiss};
use super::spec::{arity_ok, command, lookup, Ctx, Spec, Table, READ};
use super::util::{eq_ignore_case, glob_match, help_reply, pair, subcommand, syntax_error};

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![command("command", -1, READ, NONE, command_cmd, &[])]
}

pub const COMMAND_SUBCOMMANDS: &[(&str, i32)] = &[
    ("count", 2),
    ("docs", -2),
    ("getkeys", -4),
    ("getkeysandflags", -4),
    ("help", 2),
    ("info", -2),
    ("list", -2),
];

/// The subcommands Meridian implements of a Redis container command, from
/// the tables its handler dispatches on; `None` for other commands.
pub fn supported_subcommands(name: &str) -> Option<&'static [(&'static str, i32)]> {
    match name {
        "acl" => Some(super::acl::SUBCOMMANDS),
        "client" => Some(super::connection::CLIENT_SUBCOMMANDS),
        "command" => Some(COMMAND_SUBCOMMANDS),
        "config" => Some(super::config::CONFIG_SUBCOMMANDS),
        "memory" => Some(super::object::MEMORY_SUBCOMMANDS),
        "object" => Some(super::object::OBJECT_SUBCOMMANDS),
        "pubsub" => Some(super::pubsub::PUBSUB_SUBCOMMANDS),
        "script" => Some(super::scripting::SCRIPT_SUBCOMMANDS),
        "function" => Some(super::function::FUNCTION_SUBCOMMANDS),
        "xgroup" => Some(super::stream_group::XGROUP_SUBCOMMANDS),
        "xinfo" => Some(super::stream::XINFO_SUBCOMMANDS),
        _ => None,
    }
}

/// Whether Meridian implements `full` (`client|kill`), a subcommand of
/// `container`.
fn supports(container: &str, full: &str) -> bool {
    let sub = full.split_once('|').map_or("", |(_, s)| s);
    supported_subcommands(container).is_some_and(|subs| subs.iter().any(|(n, _)| *n == sub))
}

/// The full name (`client|kill`) of the subcommand `args` calls, when
/// `spec` is a container command and Meridian implements that subcommand.
pub fn subcommand_name(spec: &Spec, args: &[Bytes]) -> Option<String> {
    let subs = supported_subcommands(spec.name)?;
    let sub = args.get(1)?;
    subs.iter()
        .find(|(n, _)| eq_ignore_case(sub, n))
        .map(|(n, _)| format!("{}|{n}", spec.name))
}

const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full command.",
];

/// Redis's description of `spec`, if Redis has the command.
fn meta(spec: &Spec) -> Option<&'static Meta> {
    redis_meta::get(spec.name)
}

/// The name an entry of a subcommand list starts with.
fn entry_name(item: &Frame) -> &[u8] {
    match item {
        Frame::Array(fields) => match fields.first() {
            Some(Frame::Bulk(n)) => n,
            _ => b"",
        },
        _ => b"",
    }
}

/// Only the entries of a subcommand list that Meridian implements, by
/// name (Redis lists them in its hash table's order, which changes from
/// one process to the next).
fn supported_only(container: &str, items: &[Frame]) -> Vec<Frame> {
    let mut kept: Vec<Frame> = items
        .iter()
        .filter(|item| supports(container, &String::from_utf8_lossy(entry_name(item))))
        .cloned()
        .collect();
    kept.sort_by(|a, b| entry_name(a).cmp(entry_name(b)));
    kept
}

/// The `COMMAND INFO` entry of a command.
fn command_info(spec: &Spec) -> Frame {
    match meta(spec).map(|m| &m.info) {
        Some(Frame::Array(fields)) => {
            let mut fields = fields.clone();
            if let Some(Frame::Array(subs)) = fields.get(9) {
                fields[9] = Frame::Array(supported_only(spec.name, subs));
            }
            Frame::Array(fields)
        }
        _ => derived_info(spec),
    }
}

/// `COMMAND INFO` of a command Redis does not have, from its table entry.
fn derived_info(spec: &Spec) -> Frame {
    let (first, last, step) = spec.keys;
    let key_specs = if first > 0 {
        let access = if spec.flags.write { "RW" } else { "RO" };
        let last_rel = if last < 0 { last } else { last - first };
        vec![Frame::Map(vec![
            pair("flags", Frame::Set(vec![Frame::simple(access)])),
            pair(
                "begin_search",
                Frame::Map(vec![
                    pair("type", Frame::bulk("index")),
                    pair(
                        "spec",
                        Frame::Map(vec![pair("index", Frame::Integer(first.into()))]),
                    ),
                ]),
            ),
            pair(
                "find_keys",
                Frame::Map(vec![
                    pair("type", Frame::bulk("range")),
                    pair(
                        "spec",
                        Frame::Map(vec![
                            pair("lastkey", Frame::Integer(last_rel.into())),
                            pair("keystep", Frame::Integer(step.into())),
                            pair("limit", Frame::Integer(0)),
                        ]),
                    ),
                ]),
            ),
        ])]
    } else {
        Vec::new()
    };
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity.into()),
        Frame::Set(spec.info_flags.iter().map(|f| Frame::simple(*f)).collect()),
        Frame::Integer(first.into()),
        Frame::Integer(last.into()),
        Frame::Integer(step.into()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(key_specs),
        Frame::Set(Vec::new()),
    ])
}

/// The `COMMAND DOCS` map of a command: Redis's documentation with only the
/// subcommands Meridian implements, or the group for Meridian's own.
fn command_docs(spec: &Spec) -> Frame {
    let Some(Frame::Map(fields)) = meta(spec).and_then(|m| m.docs.as_ref()) else {
        return Frame::Map(vec![pair("group", Frame::bulk(spec.group))]);
    };
    let fields = fields
        .iter()
        .map(|(k, v)| match (k, v) {
            (Frame::Bulk(name), Frame::Map(subs)) if &name[..] == b"subcommands" => {
                let mut subs: Vec<(Frame, Frame)> = subs
                    .iter()
                    .filter(|(n, _)| match n {
                        Frame::Bulk(n) => supports(spec.name, &String::from_utf8_lossy(n)),
                        _ => false,
                    })
                    .cloned()
                    .collect();
                subs.sort_by(|(a, _), (b, _)| format!("{a:?}").cmp(&format!("{b:?}")));
                (k.clone(), Frame::Map(subs))
            }
            _ => (k.clone(), v.clone()),
        })
        .collect();
    Frame::Map(fields)
}

fn sorted_specs(table: &Table) -> Vec<&Spec> {
    let mut all: Vec<&Spec> = table.values().collect();
    all.sort_by_key(|s| s.name);
    all
}

fn command_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let table = ctx.table;
    if args.len() == 1 {
        return Frame::Array(sorted_specs(table).into_iter().map(command_info).collect());
    }
    match subcommand(args, COMMAND_SUBCOMMANDS, "command") {
        Err(e) => e,
        Ok("count") => Frame::Integer(table.len() as i64),
        Ok("info") => {
            if args.len() == 2 {
                return Frame::Array(sorted_specs(table).into_iter().map(command_info).collect());
            }
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|n| lookup(table, n).map_or(Frame::Null, command_info))
                    .collect(),
            )
        }
        Ok("docs") => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                sorted_specs(table)
            } else {
                args[2..].iter().filter_map(|n| lookup(table, n)).collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::bulk(s.name), command_docs(s)))
                    .collect(),
            )
        }
        Ok("list") => command_list(table, args),
        Ok("getkeys") => command_getkeys(table, &args[2..], false),
        Ok("getkeysandflags") => command_getkeys(table, &args[2..], true),
        Ok(_) => help_reply(&args[0], COMMAND_HELP),
    }
}

/// Every command and implemented subcommand (`client|kill`) by full name,
/// with its ACL categories.
fn all_names(table: &Table) -> Vec<(String, Vec<&'static str>)> {
    let cats = |name: &str| -> Vec<&'static str> {
        redis_meta::get(name).map_or_else(Vec::new, |m| m.acl_categories().collect())
    };
    let mut out = Vec::new();
    for spec in sorted_specs(table) {
        out.push((spec.name.to_string(), cats(spec.name)));
        for full in redis_meta::subcommand_names(spec.name) {
            if supports(spec.name, full) {
                out.push((full.to_string(), cats(full)));
            }
        }
    }
    out
}

/// `COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]`, subcommands
/// included as Redis lists them. There are no modules, so that filter
/// matches nothing.
fn command_list(table: &Table, args: &[Bytes]) -> Frame {
    let names = all_names(table).into_iter();
    let keep: Vec<String> = match args.len() {
        2 => names.map(|(n, _)| n).collect(),
        5 if eq_ignore_case(&args[2], "filterby") => {
            let (by, value) = (&args[3], &args[4]);
            if eq_ignore_case(by, "pattern") {
                names
                    .filter(|(n, _)| glob_match(value, n.as_bytes(), true))
                    .map(|(n, _)| n)
                    .collect()
            } else if eq_ignore_case(by, "aclcat") {
                names
                    .filter(|(_, cats)| {
                        cats.iter().any(|c| {
                            c.strip_prefix('@')
                                .is_some_and(|c| eq_ignore_case(value, c))
                        })
                    })
                    .map(|(n, _)| n)
                    .collect()
            } else if eq_ignore_case(by, "module") {
                Vec::new()
            } else {
                return syntax_error();
            }
        }
        _ => return syntax_error(),
    };
    Frame::Array(keep.into_iter().map(Frame::bulk).collect())
}

/// The keys of a full command line from its table entry's key positions,
/// for commands Redis does not describe.
fn keys_by_range(spec: &Spec, line: &[Bytes]) -> Option<KeyPositions> {
    let (first, last, step) = spec.keys;
    let argc = line.len() as i64;
    let last = if last < 0 {
        argc + i64::from(last)
    } else {
        i64::from(last)
    };
    if last >= argc {
        return None;
    }
    let access = if spec.flags.write { "RW" } else { "RO" };
    let step = usize::try_from(step.max(1)).unwrap_or(1);
    Some(
        (i64::from(first)..=last)
            .step_by(step)
            .map(|i| (i as usize, vec![Frame::simple(access)]))
            .collect(),
    )
}

/// COMMAND GETKEYS and GETKEYSANDFLAGS, with Redis's checks in its order:
/// the command (or subcommand) exists, has keys, and its arity fits.
fn command_getkeys(table: &Table, line: &[Bytes], with_flags: bool) -> Frame {
    let Some(spec) = lookup(table, &line[0]) else {
        return Frame::error("ERR Invalid command specified");
    };
    let full = match (supported_subcommands(spec.name), line.get(1)) {
        (Some(_), Some(_)) => match subcommand_name(spec, line) {
            Some(full) => full,
            None => return Frame::error("ERR Invalid command specified"),
        },
        _ => spec.name.to_string(),
    };
    let meta = redis_meta::get(&full);
    let key_specs = match meta.and_then(|m| m.field(8)) {
        Some(Frame::Set(ks) | Frame::Array(ks)) => Some(ks.as_slice()),
        _ => None,
    };
    let has_keys = match key_specs {
        Some(ks) => !ks.is_empty(),
        None => spec.keys.0 > 0,
    };
    if !has_keys {
        return Frame::error("ERR The command has no key arguments");
    }
    let arity_fits = match meta {
        Some(m) => {
            let (arity, argc) = (m.arity(), line.len() as i64);
            if arity >= 0 {
                argc == arity
            } else {
                argc >= -arity
            }
        }
        None => arity_ok(spec, line.len()),
    };
    if !arity_fits {
        return Frame::error("ERR Invalid number of arguments specified for command");
    }
    // Key specs Redis cannot evaluate either (an `unknown` search) send it
    // to the command's own key finder; Meridian's is its table's range.
    let found = match key_specs.map(|ks| keys_by_specs(ks, line)) {
        Some(Ok(k)) => Some(k),
        Some(Err(SpecMiss::Invalid)) => None,
        Some(Err(SpecMiss::Unknown)) | None if spec.name == "sort" => {
            Some(super::sort::key_positions(line))
        }
        Some(Err(SpecMiss::Unknown)) | None => keys_by_range(spec, line),
    };
    let no_mandatory = meta.is_some_and(|m| m.has_flag("no_mandatory_keys"));
    let keys = match found {
        Some(k) if !k.is_empty() || no_mandatory => k,
        _ => return Frame::error("ERR Invalid arguments specified for command"),
    };
    let reply = keys
        .into_iter()
        .map(|(i, flags)| {
            let key = Frame::Bulk(line[i].clone());
            if with_flags {
                Frame::Array(vec![key, Frame::Set(flags)])
            } else {
                key
            }
        })
        .collect();
    Frame::Array(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::table;

    /// Meridian's table and Redis's description must agree where both
    /// speak: arity, whether a command writes, and where its keys are.
    #[test]
    fn table_agrees_with_redis_description() {
        // Channels are not keys to Meridian's ACL (it has no channel
        // permissions), so the sharded Pub/Sub commands list no keys.
        const KEYS_DIFFER: &[&str] = &["ssubscribe", "sunsubscribe", "spublish"];
        // Subcommands Redis added after 7.0 that applications already send
        // (CLIENT NO-TOUCH is 7.2's): Redis 7.0's description lacks them.
        const NEWER_THAN_7_0: &[&str] = &["client|no-touch"];
        let mut mismatches = Vec::new();
        for spec in table().values() {
            let Some(m) = redis_meta::get(spec.name) else {
                continue;
            };
            if m.arity() != i64::from(spec.arity) {
                mismatches.push(format!(
                    "{}: arity {} vs {}",
                    spec.name,
                    spec.arity,
                    m.arity()
                ));
            }
            let redis_writes = m.has_flag("write");
            if redis_writes != spec.flags.write {
                mismatches.push(format!("{}: write {}", spec.name, spec.flags.write));
            }
            let (f, l, s) = spec.keys;
            let ours = (i64::from(f), i64::from(l), i64::from(s));
            let container = supported_subcommands(spec.name).is_some();
            if !container && !KEYS_DIFFER.contains(&spec.name) && ours != m.key_range() {
                mismatches.push(format!(
                    "{}: keys {ours:?} vs {:?}",
                    spec.name,
                    m.key_range()
                ));
            }
            if let Some(subs) = supported_subcommands(spec.name) {
                for (sub, arity) in subs {
                    let full = format!("{}|{sub}", spec.name);
                    match redis_meta::get(&full) {
                        Some(sm) if sm.arity() == i64::from(*arity) => {}
                        Some(sm) => {
                            mismatches.push(format!("{full}: arity {arity} vs {}", sm.arity()))
                        }
                        None if NEWER_THAN_7_0.contains(&full.as_str()) => {}
                        None => mismatches.push(format!("{full}: Redis has no such subcommand")),
                    }
                }
            }
        }
        mismatches.sort();
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    fn line(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn key_specs(name: &str) -> Vec<Frame> {
        match redis_meta::get(name).and_then(|m| m.field(8)) {
            Some(Frame::Set(ks) | Frame::Array(ks)) => ks.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn key_specs_find_keys_as_redis_does() {
        let pos = |name: &str, l: &str| {
            keys_by_specs(&key_specs(name), &line(l))
                .map(|k| k.into_iter().map(|(i, _)| i).collect::<Vec<_>>())
                .ok()
        };
        assert_eq!(pos("get", "get a"), Some(vec![1]));
        assert_eq!(pos("mset", "mset a 1 b 2"), Some(vec![1, 3]));
        assert_eq!(pos("copy", "copy a b"), Some(vec![1, 2]));
        assert_eq!(
            pos("zunionstore", "zunionstore d 2 a b"),
            Some(vec![1, 3, 4])
        );
        assert_eq!(pos("zunionstore", "zunionstore d 3 a b"), None);
        assert_eq!(pos("object|encoding", "object encoding k"), Some(vec![2]));
        assert_eq!(
            pos("xreadgroup", "xreadgroup group g c count 1 streams a b > >"),
            Some(vec![7, 8])
        );
        // A count no line can hold is a mismatch, not an overflow: ACL and
        // policy checks evaluate specs before the command checks its
        // arguments.
        assert_eq!(pos("zunion", "zunion 9223372036854775807 a b"), None);
        assert_eq!(pos("lmpop", "lmpop 9223372036854775807 a left"), None);
    }
}
