//! Redis 7 functions: FUNCTION (LOAD, DELETE, FLUSH, LIST, STATS, KILL,
//! DUMP, RESTORE) and FCALL / FCALL_RO, over the libraries in
//! [`crate::scripting::Functions`].
//!
//! Libraries are replicated: LOAD, DELETE, FLUSH and RESTORE compile and
//! check first, then write library effects into the batch's op
//! ([`meridian_store::Db::library_set`], `library_del`), which every region
//! applies; the compiled libraries follow the store's
//! ([`Functions::sync`]).

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{command, Ctx, Spec, READ};
use super::util::{eq_ignore_case, help_reply, subcommand};
use crate::scripting::{self, Functions, Running};
use crate::shared::Shared;

/// The compiled libraries, brought in step with the store's first.
fn synced<'a>(ctx: &mut Ctx<'a>) -> parking_lot::MutexGuard<'a, Functions> {
    let shared: &'a Shared = ctx.shared;
    let mut functions = shared.functions.lock();
    functions.sync(ctx.store.db());
    functions
}

/// Why a FUNCTION command may not change the libraries now: they are
/// written to the op log like keys.
fn write_refusal(ctx: &Ctx<'_>) -> Option<Frame> {
    if ctx.store.is_poisoned() {
        return Some(crate::commit::poisoned_error());
    }
    if ctx
        .shared
        .closing
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Some(Frame::error(
            "ERR this region is shutting down: writes are refused; send them to another region",
        ));
    }
    None
}

pub fn specs() -> Vec<Spec> {
    use super::scripting::{RUNS_SCRIPT, RUNS_SCRIPT_RO};
    vec![
        command("fcall", -3, READ, (0, 0, 0), fcall, RUNS_SCRIPT),
        command("fcall_ro", -3, READ, (0, 0, 0), fcall_ro, RUNS_SCRIPT_RO),
        command("function", -2, READ, (0, 0, 0), function, &["noscript"]),
    ]
}

pub const FUNCTION_SUBCOMMANDS: &[(&str, i32)] = &[
    ("delete", 3),
    ("dump", 2),
    ("flush", -2),
    ("help", 2),
    ("kill", 2),
    ("list", -2),
    ("load", -3),
    ("restore", -3),
    ("stats", 2),
];

fn fcall(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    call(ctx, args, false)
}

fn fcall_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    call(ctx, args, true)
}

fn call(ctx: &mut Ctx<'_>, args: &[Bytes], ro: bool) -> Frame {
    let n = match super::scripting::numkeys(args, "ERR Bad number of keys provided") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let (keys, argv) = args[3..].split_at(n);
    let functions = synced(ctx);
    let name = String::from_utf8_lossy(&args[1]).into_owned();
    let Some(f) = functions.function(&name) else {
        return Frame::error("ERR Function not found");
    };
    // A function always declares its flags: without `no-writes` it writes.
    let no_writes = f.flags.iter().any(|fl| fl == "no-writes");
    let read_only = match super::scripting::may_run(ctx, keys, ro, !no_writes, no_writes) {
        Ok(read_only) => read_only,
        Err(refusal) => return refusal,
    };
    let callback = f.callback.clone();
    scripting::run(
        ctx,
        &functions.engine,
        &callback,
        keys,
        argv,
        &name,
        read_only,
        true,
        args,
    )
}

const FUNCTION_HELP: &[&str] = &[
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
];

fn function(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = match subcommand(args, FUNCTION_SUBCOMMANDS, "function") {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    if matches!(sub, "load" | "delete" | "flush" | "restore") {
        if let Some(refusal) = write_refusal(ctx) {
            return refusal;
        }
    }
    match sub {
        "help" => help_reply(&args[0], FUNCTION_HELP),
        "load" => load(ctx, args),
        "delete" => {
            let mut functions = synced(ctx);
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            if !ctx.db().library_del(name.as_bytes()) {
                return Frame::error("ERR Library not found");
            }
            if functions.failed.is_empty() {
                functions.delete(&name);
                functions.mark_synced(ctx.store.db());
            } else {
                // A library that failed to load may load now.
                functions.sync(ctx.store.db());
            }
            Frame::ok()
        }
        "flush" => {
            if args.len() > 3 {
                return Frame::error("ERR unknown subcommand or wrong number of arguments for 'flush'. Try FUNCTION HELP.");
            }
            let ok = args
                .get(2)
                .is_none_or(|m| eq_ignore_case(m, "async") || eq_ignore_case(m, "sync"));
            if !ok {
                return Frame::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
            }
            let mut functions = synced(ctx);
            flush_libraries(ctx);
            functions.flush();
            functions.mark_synced(ctx.store.db());
            Frame::ok()
        }
        "list" => list(ctx, args),
        "stats" => {
            drop(synced(ctx));
            stats(ctx.shared, None)
        }
        // A function holds the store while it runs, so a FUNCTION KILL
        // that gets here found none (see `scripting::while_busy`).
        "kill" => Frame::error("NOTBUSY No scripts in execution right now."),
        "dump" => Frame::Bulk(dump(ctx.store.db())),
        "restore" => restore(ctx, args),
        _ => unreachable!("every FUNCTION subcommand is listed"),
    }
}

/// Deletes every library this region holds (FUNCTION FLUSH): each delete
/// removes only the version seen here, so a library loaded concurrently
/// in another region survives.
fn flush_libraries(ctx: &mut Ctx<'_>) {
    let names: Vec<meridian_crdt::Blob> = ctx
        .db()
        .libraries()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        ctx.db().library_del(&name);
    }
}

fn load(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut replace = false;
    for opt in &args[2..args.len() - 1] {
        if eq_ignore_case(opt, "replace") {
            replace = true;
        } else {
            return Frame::error(format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    let code = &args[args.len() - 1];
    let mut functions = synced(ctx);
    // Compiled and registered before anything is written: a library that
    // does not load here is never replicated.
    match functions.prepare(code, replace) {
        // Held here but not loaded (see `Functions::failed`): it exists.
        Ok((name, _)) if !replace && ctx.store.db().libraries().get(name.as_bytes()).is_some() => {
            Frame::error(format!("ERR Library '{name}' already exists"))
        }
        Ok((name, library)) => {
            ctx.db()
                .library_set(name.as_bytes(), meridian_crdt::Blob::from(&code[..]));
            if functions.failed.is_empty() {
                functions.add(name.clone(), library);
                functions.mark_synced(ctx.store.db());
            } else {
                functions.sync(ctx.store.db());
            }
            Frame::bulk(name)
        }
        Err(e) => Frame::Error(e),
    }
}

fn list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut with_code = false;
    let mut pattern: Option<Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        if eq_ignore_case(&args[i], "withcode") {
            if with_code {
                return Frame::error("ERR Unknown argument withcode");
            }
            with_code = true;
        } else if eq_ignore_case(&args[i], "libraryname") {
            if pattern.is_some() {
                return Frame::error("ERR Unknown argument libraryname");
            }
            let Some(p) = args.get(i + 1) else {
                return Frame::error("ERR library name argument was not given");
            };
            pattern = Some(p.clone());
            i += 1;
        } else {
            return Frame::error(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(&args[i])
            ));
        }
        i += 1;
    }
    let functions = synced(ctx);
    let mut out = Vec::new();
    for (name, lib) in &functions.libraries {
        if let Some(p) = &pattern {
            if !super::util::glob_match(p, name.as_bytes(), false) {
                continue;
            }
        }
        let fns = lib
            .functions
            .iter()
            .map(|(fname, f)| {
                Frame::Map(vec![
                    (Frame::bulk("name"), Frame::bulk(fname.clone())),
                    (
                        Frame::bulk("description"),
                        f.description.clone().map_or(Frame::Null, Frame::bulk),
                    ),
                    (
                        Frame::bulk("flags"),
                        Frame::Set(f.flags.iter().map(|fl| Frame::bulk(fl.clone())).collect()),
                    ),
                ])
            })
            .collect();
        let mut entry = vec![
            (Frame::bulk("library_name"), Frame::bulk(name.clone())),
            (Frame::bulk("engine"), Frame::bulk("LUA")),
            (Frame::bulk("functions"), Frame::Array(fns)),
        ];
        if with_code {
            entry.push((Frame::bulk("library_code"), Frame::Bulk(lib.code.clone())));
        }
        out.push(Frame::Map(entry));
    }
    // Replicated libraries that could not be loaded in this region: listed
    // with no functions and why.
    for (name, error) in &functions.failed {
        if let Some(p) = &pattern {
            if !super::util::glob_match(p, name.as_bytes(), false) {
                continue;
            }
        }
        let mut entry = vec![
            (Frame::bulk("library_name"), Frame::bulk(name.clone())),
            (Frame::bulk("engine"), Frame::bulk("LUA")),
            (Frame::bulk("functions"), Frame::Array(Vec::new())),
            (Frame::bulk("load_error"), Frame::bulk(error.clone())),
        ];
        if with_code {
            let code = ctx
                .store
                .db()
                .libraries()
                .get(name.as_bytes())
                .map(|v| Bytes::copy_from_slice(&v.code))
                .unwrap_or_default();
            entry.push((Frame::bulk("library_code"), Frame::Bulk(code)));
        }
        out.push(Frame::Map(entry));
    }
    Frame::Array(out)
}

/// FUNCTION STATS: the function running now (when answered while one is
/// busy) and the engine's counts.
pub fn stats(shared: &Shared, running: Option<&Running>) -> Frame {
    let running = match running {
        Some(r) if r.function => Frame::Map(vec![
            (Frame::bulk("name"), Frame::bulk(r.name.clone())),
            (
                Frame::bulk("command"),
                Frame::Array(r.command.iter().cloned().map(Frame::Bulk).collect()),
            ),
            (
                Frame::bulk("duration_ms"),
                Frame::Integer(r.watch.ran_ms() as i64),
            ),
        ]),
        _ => Frame::Null,
    };
    // While a function runs, its state is locked; the counts are read only
    // when it is free.
    let counts = shared
        .functions
        .try_lock()
        .map(|f| {
            let functions: usize = f.libraries.values().map(|l| l.functions.len()).sum();
            (f.libraries.len(), functions)
        })
        .unwrap_or((0, 0));
    Frame::Map(vec![
        (Frame::bulk("running_script"), running),
        (
            Frame::bulk("engines"),
            Frame::Map(vec![(
                Frame::bulk("LUA"),
                Frame::Map(vec![
                    (
                        Frame::bulk("libraries_count"),
                        Frame::Integer(counts.0 as i64),
                    ),
                    (
                        Frame::bulk("functions_count"),
                        Frame::Integer(counts.1 as i64),
                    ),
                ]),
            )]),
        ),
    ])
}

/// The payload's first bytes: what it is and its format version.
const DUMP_MAGIC: &[u8] = b"MFUNC1";

/// FUNCTION DUMP: every library's code (as the region holds them, loaded
/// here or not), length-prefixed, then a CRC-64 of all of it (the checksum
/// Redis's payloads carry).
fn dump(db: &meridian_store::Db) -> Bytes {
    let mut out = DUMP_MAGIC.to_vec();
    for (_, lib) in db.libraries().iter() {
        out.extend_from_slice(&(lib.code.len() as u64).to_le_bytes());
        out.extend_from_slice(&lib.code);
    }
    let crc = super::dump::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

fn undump(payload: &[u8]) -> Option<Vec<Bytes>> {
    let (body, crc) = payload.split_at_checked(payload.len().checked_sub(8)?)?;
    if super::dump::crc64(0, body).to_le_bytes() != crc {
        return None;
    }
    let mut rest = body.strip_prefix(DUMP_MAGIC)?;
    let mut codes = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(8)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let (code, tail) = tail.split_at_checked(len)?;
        codes.push(Bytes::copy_from_slice(code));
        rest = tail;
    }
    Some(codes)
}

fn restore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 4 {
        return Frame::error(
            "ERR unknown subcommand or wrong number of arguments for 'restore'. Try FUNCTION HELP.",
        );
    }
    #[derive(PartialEq)]
    enum Policy {
        Flush,
        Append,
        Replace,
    }
    let policy =
        match args.get(3) {
            None => Policy::Append,
            Some(p) if eq_ignore_case(p, "flush") => Policy::Flush,
            Some(p) if eq_ignore_case(p, "append") => Policy::Append,
            Some(p) if eq_ignore_case(p, "replace") => Policy::Replace,
            Some(_) => return Frame::error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ),
        };
    let Some(codes) = undump(&args[2]) else {
        return Frame::error("ERR payload version or checksum are wrong");
    };
    let mut functions = synced(ctx);
    // Everything is checked against a copy of the state first, so a
    // failure leaves the libraries as they were and writes nothing.
    let mut staged: Vec<(String, &Bytes)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for code in &codes {
        match functions.prepare(code, policy != Policy::Append) {
            Ok((name, _)) => {
                let held = ctx.store.db().libraries().get(name.as_bytes()).is_some();
                if !names.insert(name.clone()) || (policy == Policy::Append && held) {
                    return Frame::error(format!("ERR Library '{name}' already exists"));
                }
                staged.push((name, code));
            }
            Err(e) if policy == Policy::Flush && e.ends_with("already exists") => {
                // Under FLUSH the existing libraries go first: load it
                // against an empty state.
                let empty = Functions::new();
                match empty.prepare(code, true) {
                    Ok((name, _)) => staged.push((name, code)),
                    Err(e) => return Frame::Error(e),
                }
            }
            // Restoring names a clashing library without quotes, as Redis.
            Err(e) => return Frame::Error(e.replace(" '", " ").replace("' ", " ")),
        }
    }
    if policy == Policy::Flush {
        // Checked together, as one FLUSH then LOADs would leave them.
        let mut fresh = Functions::new();
        for code in &codes {
            match fresh.prepare(code, true) {
                Ok((name, lib)) => fresh.add(name, lib),
                Err(e) => return Frame::Error(e),
            }
        }
        flush_libraries(ctx);
    }
    for (name, code) in staged {
        ctx.db()
            .library_set(name.as_bytes(), meridian_crdt::Blob::from(&code[..]));
    }
    functions.sync(ctx.store.db());
    Frame::ok()
}
