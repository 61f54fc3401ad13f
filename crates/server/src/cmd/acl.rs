//! ACL: SETUSER, GETUSER, LIST, USERS, WHOAMI, DELUSER, CAT, LOAD, SAVE, LOG.
//!
//! The users live in `Shared::acl` ([`crate::acl`]) and belong to this
//! region only: ACL SETUSER is not replicated.

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, Table, READ};
use super::util::{help_reply, pair, subcommand};
use crate::acl::{self, Level, Need};

pub fn specs() -> Vec<Spec> {
    vec![spec("acl", -2, READ, (0, 0, 0), acl_cmd)]
}

/// ACL's subcommands and their arities (COMMAND lists them too).
pub const SUBCOMMANDS: &[(&str, i32)] = &[
    ("cat", -2),
    ("deluser", -3),
    ("getuser", 3),
    ("help", 2),
    ("list", 2),
    ("load", 2),
    ("log", -2),
    ("save", 2),
    ("setuser", -3),
    ("users", 2),
    ("whoami", 2),
];

const HELP: &[&str] = &[
    "CAT [<category>]",
    "    List the categories (read, write, admin), or the commands in one.",
    "DELUSER <username> [<username> ...]",
    "    Delete users.",
    "GETUSER <username>",
    "    A user's flags, password digests, commands and key patterns.",
    "LIST",
    "    Every user as ACL rules; passwords appear only as #<digest>.",
    "LOAD",
    "    Reload the users from --aclfile.",
    "LOG [<count> | RESET]",
    "    Recent refusals (failed AUTH, commands and keys a user may not use), newest first.",
    "SAVE",
    "    Write the users to --aclfile (passwords as salted digests only).",
    "SETUSER <username> [<rule> ...]",
    "    Create or change a user: on, off, ><password>, #<sha256hex>, nopass, resetpass,",
    "    ~<pattern>, allkeys, resetkeys, +@read, +@write, +@admin, +@all, -@..., reset.",
    "    Users belong to this region only; they are not replicated.",
    "USERS",
    "    The user names.",
    "WHOAMI",
    "    The user this connection runs as.",
];

fn acl_cmd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match subcommand(args, SUBCOMMANDS, "acl") {
        Err(e) => e,
        Ok("cat") => cat(ctx.table, args),
        Ok("deluser") => deluser(ctx, args),
        Ok("getuser") => getuser(ctx, args),
        Ok("help") => help_reply(&args[0], HELP),
        Ok("list") => list(ctx),
        Ok("load") => load(ctx),
        Ok("log") => log(ctx, args),
        Ok("save") => save(ctx),
        Ok("setuser") => setuser(ctx, args),
        Ok("users") => Frame::Array(
            ctx.shared
                .acl
                .read()
                .users()
                .map(|u| Frame::bulk(u.name.clone()))
                .collect(),
        ),
        Ok(_) => Frame::bulk(ctx.client.user.clone()),
    }
}

fn user_name(arg: &[u8]) -> Result<&str, Frame> {
    match std::str::from_utf8(arg) {
        Ok(name) if !name.is_empty() && !name.contains(|c: char| c.is_whitespace()) => Ok(name),
        _ => Err(Frame::error(
            "ERR Usernames can't contain spaces or null characters",
        )),
    }
}

fn setuser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = match user_name(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let rules: Vec<&[u8]> = args[3..].iter().map(|a| &a[..]).collect();
    match ctx
        .shared
        .acl
        .write()
        .set_user(name, &rules, &mut rand::thread_rng())
    {
        Ok(()) => Frame::ok(),
        Err(e) => Frame::error(format!("ERR {e}")),
    }
}

fn deluser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let names: Vec<String> = args[2..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match ctx.shared.acl.write().delete_users(&names) {
        Ok(n) => Frame::Integer(n as i64),
        Err(e) => Frame::error(format!("ERR {e}")),
    }
}

fn getuser(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let acl = ctx.shared.acl.read();
    let Some(u) = std::str::from_utf8(&args[2]).ok().and_then(|n| acl.user(n)) else {
        return Frame::Null;
    };
    let mut flags = vec![Frame::bulk(if u.enabled { "on" } else { "off" })];
    if u.allkeys {
        flags.push(Frame::bulk("allkeys"));
    }
    if u.nopass {
        flags.push(Frame::bulk("nopass"));
    }
    let keys = if u.allkeys {
        "~*".to_string()
    } else {
        u.key_patterns
            .iter()
            .map(|p| format!("~{}", String::from_utf8_lossy(p)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let commands = u.rules().pop().unwrap_or_default();
    Frame::Map(vec![
        pair("flags", Frame::Array(flags)),
        pair(
            "passwords",
            Frame::Array(u.password_digests().into_iter().map(Frame::bulk).collect()),
        ),
        pair("commands", Frame::bulk(commands)),
        pair("keys", Frame::bulk(keys)),
        pair("channels", Frame::bulk("")),
        pair("selectors", Frame::Array(Vec::new())),
    ])
}

fn list(ctx: &mut Ctx<'_>) -> Frame {
    Frame::Array(
        ctx.shared
            .acl
            .read()
            .users()
            .map(|u| Frame::bulk(format!("user {} {}", u.name, u.rules().join(" "))))
            .collect(),
    )
}

const NO_ACLFILE: &str = "ERR This Meridian instance is not configured to use an ACL file. Start it with --aclfile or add users with ACL SETUSER.";

fn load(ctx: &mut Ctx<'_>) -> Frame {
    if ctx.shared.config.aclfile.is_none() {
        return Frame::error(NO_ACLFILE);
    }
    match crate::acl::load(&ctx.shared.config) {
        Ok(fresh) => {
            *ctx.shared.acl.write() = fresh;
            Frame::ok()
        }
        Err(e) => Frame::error(format!("ERR {e:#}")),
    }
}

/// Writes the users to `--aclfile` through a temporary file, fsynced and
/// renamed over the old one, so a crash leaves the old file or the new one.
fn save(ctx: &mut Ctx<'_>) -> Frame {
    let Some(path) = ctx.shared.config.aclfile.clone() else {
        return Frame::error(NO_ACLFILE);
    };
    let text = ctx.shared.acl.read().to_file();
    match write_atomically(&path, text.as_bytes()) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "ACL users saved");
            Frame::ok()
        }
        Err(e) => Frame::error(format!(
            "ERR There was an error trying to save the ACLs. Please check the server logs for more information: {e}"
        )),
    }
}

pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// `ACL LOG [count | RESET]`, in Redis's reply shape.
fn log(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let count = match args.get(2) {
        None => 10,
        Some(a) if a.eq_ignore_ascii_case(b"reset") => {
            ctx.shared.acl_log.lock().reset();
            return Frame::ok();
        }
        Some(a) => match std::str::from_utf8(a)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        {
            Some(n) if n >= 0 => n as usize,
            _ => return Frame::error("ERR value is out of range, must be positive"),
        },
    };
    if args.len() > 3 {
        return Frame::error("ERR syntax error");
    }
    let now = crate::shared::wall_ms();
    let log = ctx.shared.acl_log.lock();
    Frame::Array(
        log.entries(count)
            .map(|e| {
                Frame::Map(vec![
                    pair("count", Frame::Integer(e.count as i64)),
                    pair("reason", Frame::bulk(e.reason.as_str())),
                    pair("context", Frame::bulk(e.context)),
                    pair("object", Frame::bulk(e.object.clone())),
                    pair("username", Frame::bulk(e.username.clone())),
                    pair(
                        "age-seconds",
                        Frame::Double(now.saturating_sub(e.created_ms) as f64 / 1000.0),
                    ),
                    pair("client-info", Frame::bulk(e.client_info.clone())),
                    pair("entry-id", Frame::Integer(e.id as i64)),
                    pair("timestamp-created", Frame::Integer(e.created_ms as i64)),
                    pair(
                        "timestamp-last-updated",
                        Frame::Integer(e.updated_ms as i64),
                    ),
                ])
            })
            .collect(),
    )
}

/// `ACL CAT`: the levels, or the commands a level adds.
fn cat(table: &Table, args: &[Bytes]) -> Frame {
    let Some(category) = args.get(2) else {
        return Frame::Array(vec![
            Frame::bulk("read"),
            Frame::bulk("write"),
            Frame::bulk("admin"),
        ]);
    };
    let level = match String::from_utf8_lossy(category)
        .to_ascii_lowercase()
        .as_str()
    {
        "read" => Level::Read,
        "write" => Level::Write,
        "admin" => Level::Admin,
        _ => {
            return Frame::error(format!(
                "ERR Unknown category '{}'",
                String::from_utf8_lossy(category)
            ))
        }
    };
    let mut names: Vec<&str> = table
        .values()
        .filter(|s| {
            let (need, _) = acl::need(s.name, &[], s.flags.write, s.flags.no_auth);
            need == Need::Level(level)
        })
        .map(|s| s.name)
        .collect();
    names.sort_unstable();
    Frame::Array(names.into_iter().map(Frame::bulk).collect())
}
