//! COMMAND, COMMAND COUNT/INFO/DOCS/LIST/GETKEYS: the command table as
//! clients introspect it.

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{arity_ok, command, lookup, Ctx, Spec, Table, READ};
use super::util::{eq_ignore_case, glob_match, help_reply, pair, subcommand, syntax_error};

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![command("command", -1, READ, NONE, command_cmd, &[])]
}

const COMMAND_SUBCOMMANDS: &[(&str, i32)] = &[
    ("count", 2),
    ("docs", -2),
    ("getkeys", -4),
    ("help", 2),
    ("info", -2),
    ("list", -2),
];

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
];

fn command_info(spec: &Spec) -> Frame {
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
                    .map(|s| {
                        let doc = vec![pair("group", Frame::bulk(s.group))];
                        (Frame::bulk(s.name), Frame::Map(doc))
                    })
                    .collect(),
            )
        }
        Ok("list") => command_list(table, args),
        Ok("getkeys") => command_getkeys(table, &args[2..]),
        Ok(_) => help_reply(&args[0], COMMAND_HELP),
    }
}

/// `COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]`. There are no
/// modules and no ACL categories, so those filters match nothing.
fn command_list(table: &Table, args: &[Bytes]) -> Frame {
    let names = sorted_specs(table).into_iter().map(|s| s.name);
    let keep: Vec<&str> = match args.len() {
        2 => names.collect(),
        5 if eq_ignore_case(&args[2], "filterby") => {
            if eq_ignore_case(&args[3], "pattern") {
                names
                    .filter(|n| glob_match(&args[4], n.as_bytes(), true))
                    .collect()
            } else if eq_ignore_case(&args[3], "module") || eq_ignore_case(&args[3], "aclcat") {
                Vec::new()
            } else {
                return syntax_error();
            }
        }
        _ => return syntax_error(),
    };
    Frame::Array(keep.into_iter().map(Frame::bulk).collect())
}

/// The keys of a full command line, from its table entry's key positions.
fn command_getkeys(table: &Table, line: &[Bytes]) -> Frame {
    let Some(spec) = lookup(table, &line[0]) else {
        return Frame::error("ERR Invalid command specified");
    };
    let (first, last, step) = spec.keys;
    if first <= 0 {
        return Frame::error("ERR The command has no key arguments");
    }
    if !arity_ok(spec, line.len()) {
        return Frame::error("ERR Invalid number of arguments specified for command");
    }
    let argc = line.len() as i64;
    let last = if last < 0 {
        argc + i64::from(last)
    } else {
        i64::from(last)
    };
    if last >= argc {
        return Frame::error("ERR Invalid arguments specified for command");
    }
    let step = usize::try_from(step.max(1)).unwrap_or(1);
    let keys = (i64::from(first)..=last)
        .step_by(step)
        .filter_map(|i| line.get(i as usize))
        .map(|k| Frame::Bulk(k.clone()))
        .collect();
    Frame::Array(keys)
}
