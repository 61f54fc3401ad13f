//! Connection and server commands: PING, ECHO, HELLO, AUTH, SELECT, CLIENT,
//! INFO, CONFIG, COMMAND, TIME, QUIT, RESET, DBSIZE, FLUSHDB, FLUSHALL,
//! SWAPDB, LASTSAVE, SAVE, BGSAVE and SHUTDOWN.
//!
//! Meridian presents itself as a Redis 7.0 server with one database, so
//! clients that check the version or call SELECT 0 work unchanged; `HELLO`
//! and `INFO` add `meridian_*` fields for tools that want to tell the two
//! apart. FLUSHDB and FLUSHALL delete every visible key the way DEL does:
//! only what this region has observed, so a concurrent write elsewhere
//! survives. SAVE and BGSAVE write a snapshot (which also compacts the op
//! log); the op log itself plays the part of Redis's AOF.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use meridian_resp::{parse_redis_int, Frame, Protocol};

use super::util::{arity_error, eq_ignore_case, glob_match, not_integer, syntax_error};
use super::{Ctx, Flags, Spec, READ, WRITE};
use crate::client::Client;
use crate::metrics::Metrics;
use crate::shared::{wall_ms, Readiness};

/// The Redis version Meridian's command set and replies follow.
pub const REDIS_VERSION: &str = "7.0.15";
/// Largest bulk string a client may send (Redis's `proto-max-bulk-len`).
const PROTO_MAX_BULK_LEN_BYTES: u64 = 512 * 1024 * 1024;
/// How often the expiry cycle runs, as Redis's `hz` reports it.
const HZ: u64 = 10;
/// File descriptors Redis keeps for itself when it derives `maxclients`
/// from the open-file limit.
const RESERVED_FDS: u64 = 32;
/// Linux reports CPU time in /proc in ticks of 1/100 s (`USER_HZ`).
const USER_HZ: f64 = 100.0;

const NO_AUTH: Flags = Flags {
    no_auth: true,
    ..READ
};
/// QUIT and RESET: before AUTH, inside MULTI and in the Pub/Sub context.
const ANYTIME: Flags = Flags {
    no_auth: true,
    tx_control: true,
    pubsub_ok: true,
    ..READ
};
const PUBSUB_OK: Flags = Flags {
    pubsub_ok: true,
    ..READ
};
/// SHUTDOWN answers nothing when it succeeds: the connection just closes.
const NO_REPLY: Flags = Flags {
    multi_reply: true,
    ..READ
};

fn command(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    handler: super::Handler,
    info_flags: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        handler,
        info_flags,
        calls: Default::default(),
    }
}

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("ping", -1, PUBSUB_OK, NONE, ping, &["fast"]),
        command("echo", 2, READ, NONE, echo, &["fast"]),
        command("hello", -1, NO_AUTH, NONE, hello, &["no_auth", "fast"]),
        command("auth", -2, NO_AUTH, NONE, auth, &["no_auth", "fast"]),
        command("select", 2, READ, NONE, select, &["fast"]),
        command("swapdb", 3, WRITE, NONE, swapdb, &["write", "fast"]),
        command("client", -2, READ, NONE, client, &[]),
        command("info", -1, READ, NONE, info, &[]),
        command("config", -2, READ, NONE, config, &["admin"]),
        command("command", -1, READ, NONE, command_cmd, &[]),
        command("time", 1, READ, NONE, time, &["fast"]),
        command("quit", -1, ANYTIME, NONE, quit, &["no_auth", "fast"]),
        command("reset", 1, ANYTIME, NONE, reset, &["no_auth", "fast"]),
        command("dbsize", 1, READ, NONE, dbsize, &["readonly", "fast"]),
        command("flushdb", -1, WRITE, NONE, flush, &["write"]),
        command("flushall", -1, WRITE, NONE, flush, &["write"]),
        command("lastsave", 1, READ, NONE, lastsave, &["fast"]),
        command("save", 1, READ, NONE, save, &["admin"]),
        command("bgsave", -1, READ, NONE, bgsave, &["admin"]),
        command("shutdown", -1, NO_REPLY, NONE, shutdown, &["admin"]),
    ]
}

fn lossy(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(arg)
}

/// Finds a container command's subcommand and checks its arity, with
/// Redis's errors: `unknown subcommand` and `wrong number of arguments for
/// 'client|kill' command`.
pub fn subcommand(
    args: &[Bytes],
    table: &[(&'static str, i32)],
    cmd: &str,
) -> Result<&'static str, Frame> {
    let sub = &args[1];
    let Some(&(name, arity)) = table.iter().find(|(n, _)| eq_ignore_case(sub, n)) else {
        let shown = &sub[..sub.len().min(128)];
        return Err(Frame::error(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            lossy(shown),
            cmd.to_ascii_uppercase()
        )));
    };
    let fits = if arity >= 0 {
        args.len() == arity as usize
    } else {
        args.len() >= arity.unsigned_abs() as usize
    };
    if !fits {
        return Err(arity_error(&format!("{cmd}|{name}")));
    }
    Ok(name)
}

/// A HELP reply in Redis's shape: header, the lines, then HELP itself.
pub fn help_reply(cmd: &[u8], lines: &[&str]) -> Frame {
    let mut out = vec![Frame::simple(format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        lossy(cmd).to_ascii_uppercase()
    ))];
    out.extend(lines.iter().map(|l| Frame::simple(*l)));
    out.push(Frame::simple("HELP"));
    out.push(Frame::simple("    Prints this help."));
    Frame::Array(out)
}

/// One key/value of a map reply.
pub fn pair(key: &str, value: Frame) -> (Frame, Frame) {
    (Frame::bulk(key.to_string()), value)
}

// ----- connection -----

fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 2 {
        return arity_error("ping");
    }
    if ctx.client.in_pubsub_context() {
        return Frame::Array(vec![
            Frame::bulk("pong"),
            Frame::Bulk(args.get(1).cloned().unwrap_or_default()),
        ]);
    }
    match args.get(1) {
        Some(m) => Frame::Bulk(m.clone()),
        None => Frame::simple("PONG"),
    }
}

fn echo(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Bulk(args[1].clone())
}

fn wrongpass() -> Frame {
    Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
}

/// Checks credentials against the region's ACL users; a refusal is logged
/// (the user name and address, never the password) and counted.
fn log_in(ctx: &mut Ctx<'_>, user: &[u8], password: &[u8]) -> Result<(), Frame> {
    if ctx.shared.acl.read().authenticate(user, password) {
        ctx.client.authenticated = true;
        ctx.client.user = lossy(user).into_owned();
        return Ok(());
    }
    Metrics::inc(&ctx.shared.metrics.auth_failures_total);
    let shown = &user[..user.len().min(64)];
    tracing::warn!(client = ctx.client.id, addr = %ctx.client.addr, user = %lossy(shown), "AUTH failed");
    crate::shared::acl_log_as(
        ctx.shared,
        ctx.client,
        crate::acl::LogReason::Auth,
        "AUTH",
        &lossy(shown),
    );
    Err(wrongpass())
}

fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 3 {
        return syntax_error();
    }
    if args.len() == 2 && ctx.shared.acl.read().default_needs_no_auth() {
        return Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    let (user, password): (&[u8], &[u8]) = if args.len() == 2 {
        (crate::acl::DEFAULT_USER.as_bytes(), &args[1])
    } else {
        (&args[1], &args[2])
    };
    match log_in(ctx, user, password) {
        Ok(()) => Frame::ok(),
        Err(e) => e,
    }
}

/// Sets or (with an empty name) clears the connection name, refusing the
/// characters that would break `CLIENT LIST` lines.
fn set_name(client: &mut Client, name: &Bytes) -> Result<(), Frame> {
    if name.iter().any(|b| !(b'!'..=b'~').contains(b)) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    client.name = (!name.is_empty()).then(|| name.clone());
    Ok(())
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut proto = None;
    let mut i = 1;
    if let Some(v) = args.get(1) {
        proto = match parse_redis_int(v) {
            Some(2) => Some(Protocol::Resp2),
            Some(3) => Some(Protocol::Resp3),
            Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
            None => return Frame::error("ERR Protocol version is not an integer or out of range"),
        };
        i = 2;
    }
    let (mut credentials, mut name) = (None, None);
    while i < args.len() {
        let more = args.len() - 1 - i;
        if eq_ignore_case(&args[i], "auth") && more >= 2 {
            credentials = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if eq_ignore_case(&args[i], "setname") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            return Frame::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                lossy(&args[i])
            ));
        }
    }
    if let Some((user, password)) = credentials {
        if let Err(e) = log_in(ctx, user, password) {
            return e;
        }
    }
    if !ctx.client.authenticated {
        return Frame::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(name) = name {
        if let Err(e) = set_name(ctx.client, name) {
            return e;
        }
    }
    if let Some(p) = proto {
        ctx.client.proto = p;
    }
    let proto = match ctx.client.proto {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    Frame::Map(vec![
        pair("server", Frame::bulk("redis")),
        pair("version", Frame::bulk(REDIS_VERSION)),
        pair("proto", Frame::Integer(proto)),
        pair("id", Frame::Integer(ctx.client.id as i64)),
        pair("mode", Frame::bulk("standalone")),
        pair("role", Frame::bulk("master")),
        pair("modules", Frame::Array(Vec::new())),
        pair("meridian_version", Frame::bulk(env!("CARGO_PKG_VERSION"))),
        pair(
            "meridian_region",
            Frame::bulk(ctx.shared.config.region.as_str()),
        ),
    ])
}

/// A database index as Redis reads it: a C `int`, with Redis's two errors.
pub fn db_index(arg: &[u8]) -> Result<i32, Frame> {
    let n = parse_redis_int(arg).ok_or_else(not_integer)?;
    i32::try_from(n).map_err(|_| {
        Frame::error(format!(
            "ERR value is out of range, value must between {} and {}",
            i32::MIN,
            i32::MAX
        ))
    })
}

/// There is one database, 0, as in Redis with `databases 1`.
fn select(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match db_index(&args[1]) {
        Ok(0) => Frame::ok(),
        Ok(_) => Frame::error("ERR DB index is out of range"),
        Err(e) => e,
    }
}

fn swapdb(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Ok(a) = db_index(&args[1]) else {
        return Frame::error("ERR invalid first DB index");
    };
    let Ok(b) = db_index(&args[2]) else {
        return Frame::error("ERR invalid second DB index");
    };
    if a == 0 && b == 0 {
        Frame::ok()
    } else {
        Frame::error("ERR DB index is out of range")
    }
}

fn quit(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.client.close = true;
    Frame::ok()
}

/// Back to a fresh connection's state: out of MULTI, nothing watched or
/// subscribed, RESP2, no name, and not authenticated if a password is set.
fn reset(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.client.multi = None;
    ctx.client.multi_failed = false;
    super::tx::unwatch_all(ctx);
    super::pubsub::unsubscribe_all(ctx.shared, ctx.client);
    ctx.client.proto = Protocol::Resp2;
    ctx.client.name = None;
    ctx.client.user = crate::acl::DEFAULT_USER.to_string();
    ctx.client.authenticated = ctx.shared.acl.read().default_needs_no_auth();
    Frame::simple("RESET")
}

fn time(_: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // The same clock as the region's HLC, test-only offset included.
    let offset = std::time::Duration::from_millis(meridian_repl::clock_offset_ms().unsigned_abs());
    let now = if meridian_repl::clock_offset_ms() < 0 {
        now.saturating_sub(offset)
    } else {
        now + offset
    };
    Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ])
}

// ----- CLIENT -----

const CLIENT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("getname", 2),
    ("help", 2),
    ("id", 2),
    ("info", 2),
    ("kill", -3),
    ("list", -2),
    ("no-evict", 3),
    ("setname", 3),
];

const CLIENT_HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients of specified IDs.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction (Meridian never evicts clients).",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
];

fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match subcommand(args, CLIENT_SUBCOMMANDS, "client") {
        Err(e) => e,
        Ok("getname") => ctx.client.name.clone().map_or(Frame::Null, Frame::Bulk),
        Ok("setname") => match set_name(ctx.client, &args[2]) {
            Ok(()) => Frame::ok(),
            Err(e) => e,
        },
        Ok("id") => Frame::Integer(ctx.client.id as i64),
        Ok("info") => {
            let me = ctx.client.id;
            let lines = client_lines(ctx, |v| v.id == me);
            Frame::verbatim_text(lines)
        }
        Ok("list") => client_list(ctx, args),
        Ok("kill") => client_kill(ctx, args),
        Ok("no-evict") => {
            if eq_ignore_case(&args[2], "on") || eq_ignore_case(&args[2], "off") {
                Frame::ok()
            } else {
                syntax_error()
            }
        }
        Ok(_) => help_reply(&args[0], CLIENT_HELP),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Replica,
    PubSub,
    Master,
}

fn client_type(name: &[u8]) -> Result<ClientType, Frame> {
    let t = if eq_ignore_case(name, "normal") {
        ClientType::Normal
    } else if eq_ignore_case(name, "slave") || eq_ignore_case(name, "replica") {
        ClientType::Replica
    } else if eq_ignore_case(name, "pubsub") {
        ClientType::PubSub
    } else if eq_ignore_case(name, "master") {
        ClientType::Master
    } else {
        return Err(Frame::error(format!(
            "ERR Unknown client type '{}'",
            lossy(name)
        )));
    };
    Ok(t)
}

/// One connection as `CLIENT LIST` shows it.
struct ClientView {
    id: u64,
    addr: String,
    laddr: String,
    name: String,
    age_s: u64,
    idle_s: u64,
    sub: usize,
    psub: usize,
    in_multi: bool,
    cmd: String,
    resp: u8,
}

impl ClientView {
    fn kind(&self) -> ClientType {
        if self.sub + self.psub > 0 {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }

    /// Redis's field names, limited to the ones Meridian can fill in truly.
    fn line(&self) -> String {
        let mut flags = String::new();
        if self.sub + self.psub > 0 {
            flags.push('P');
        }
        if self.in_multi {
            flags.push('x');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 cmd={} user=default redir=-1 resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.name,
            self.age_s,
            self.idle_s,
            flags,
            self.sub,
            self.psub,
            self.cmd,
            self.resp
        )
    }
}

/// `ip:port` the way Redis writes peer addresses (no brackets for IPv6).
fn peer_id(addr: std::net::SocketAddr) -> String {
    format!("{}:{}", addr.ip(), addr.port())
}

/// Every connection, in id order. The calling connection is described from
/// its live state; the others from what their last batch recorded.
fn client_views(ctx: &Ctx<'_>) -> Vec<ClientView> {
    let mut subs: HashMap<u64, (usize, usize)> = HashMap::new();
    for ids in ctx.shared.channels.lock().values() {
        for id in ids.keys() {
            subs.entry(*id).or_default().0 += 1;
        }
    }
    for ids in ctx.shared.patterns.lock().values() {
        for id in ids.keys() {
            subs.entry(*id).or_default().1 += 1;
        }
    }
    let me = ctx.client.id;
    let clients = ctx.shared.clients.lock();
    let mut views: Vec<ClientView> = clients
        .values()
        .map(|e| {
            let (sub, psub) = subs.get(&e.id).copied().unwrap_or_default();
            ClientView {
                id: e.id,
                addr: peer_id(e.addr),
                laddr: peer_id(e.local),
                name: e
                    .name
                    .as_deref()
                    .map(lossy)
                    .unwrap_or_default()
                    .into_owned(),
                age_s: e.created.elapsed().as_secs(),
                idle_s: e.last_active.elapsed().as_secs(),
                sub,
                psub,
                in_multi: e.in_multi,
                cmd: e.last_cmd.clone(),
                resp: e.resp,
            }
        })
        .collect();
    drop(clients);
    if let Some(v) = views.iter_mut().find(|v| v.id == me) {
        let c = &ctx.client;
        v.name = c
            .name
            .as_deref()
            .map(lossy)
            .unwrap_or_default()
            .into_owned();
        v.idle_s = 0;
        v.sub = c.channels.len();
        v.psub = c.patterns.len();
        v.in_multi = c.multi.is_some();
        v.cmd = "client".into();
        v.resp = match c.proto {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
    }
    views.sort_by_key(|v| v.id);
    views
}

fn client_lines(ctx: &Ctx<'_>, keep: impl Fn(&ClientView) -> bool) -> String {
    client_views(ctx)
        .iter()
        .filter(|v| keep(v))
        .map(ClientView::line)
        .collect()
}

fn client_list(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() == 4 && eq_ignore_case(&args[2], "type") {
        let t = match client_type(&args[3]) {
            Ok(t) => t,
            Err(e) => return e,
        };
        return Frame::verbatim_text(client_lines(ctx, |v| v.kind() == t));
    }
    if args.len() > 3 && eq_ignore_case(&args[2], "id") {
        let mut ids = Vec::new();
        for a in &args[3..] {
            match parse_redis_int(a) {
                Some(id) => ids.push(id),
                None => return Frame::error("ERR Invalid client ID"),
            }
        }
        let views = client_views(ctx);
        let text: String = ids
            .iter()
            .filter_map(|id| views.iter().find(|v| v.id as i64 == *id))
            .map(ClientView::line)
            .collect();
        return Frame::verbatim_text(text);
    }
    if args.len() != 2 {
        return syntax_error();
    }
    Frame::verbatim_text(client_lines(ctx, |_| true))
}

/// What `CLIENT KILL` matches on; unset criteria match everything.
#[derive(Default)]
struct KillFilter {
    addr: Option<String>,
    laddr: Option<String>,
    kind: Option<ClientType>,
    id: Option<u64>,
    skip_me: bool,
}

fn parse_kill(args: &[Bytes]) -> Result<KillFilter, Frame> {
    if args.len() == 3 {
        return Ok(KillFilter {
            addr: Some(lossy(&args[2]).into_owned()),
            ..KillFilter::default()
        });
    }
    let mut f = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    for opt in args[2..].chunks(2) {
        let [name, value] = opt else {
            return Err(syntax_error());
        };
        if eq_ignore_case(name, "id") {
            match parse_redis_int(value) {
                Some(id) if id >= 1 => f.id = Some(id as u64),
                _ => return Err(Frame::error("ERR client-id should be greater than 0")),
            }
        } else if eq_ignore_case(name, "type") {
            f.kind = Some(client_type(value)?);
        } else if eq_ignore_case(name, "addr") {
            f.addr = Some(lossy(value).into_owned());
        } else if eq_ignore_case(name, "laddr") {
            f.laddr = Some(lossy(value).into_owned());
        } else if eq_ignore_case(name, "user") {
            if &value[..] != b"default" {
                return Err(Frame::error(format!("ERR No such user '{}'", lossy(value))));
            }
        } else if eq_ignore_case(name, "skipme") {
            if eq_ignore_case(value, "yes") {
                f.skip_me = true;
            } else if eq_ignore_case(value, "no") {
                f.skip_me = false;
            } else {
                return Err(syntax_error());
            }
        } else {
            return Err(syntax_error());
        }
    }
    Ok(f)
}

/// Kills matching connections: others through their kill signal, this one
/// by closing after the reply.
fn client_kill(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let f = match parse_kill(args) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let me = ctx.client.id;
    let matching: Vec<u64> = client_views(ctx)
        .into_iter()
        .filter(|v| {
            f.addr.as_ref().is_none_or(|a| *a == v.addr)
                && f.laddr.as_ref().is_none_or(|a| *a == v.laddr)
                && f.kind.is_none_or(|k| k == v.kind())
                && f.id.is_none_or(|id| id == v.id)
                && !(f.skip_me && v.id == me)
        })
        .map(|v| v.id)
        .collect();
    {
        let clients = ctx.shared.clients.lock();
        for id in matching.iter().filter(|id| **id != me) {
            if let Some(entry) = clients.get(id) {
                entry.killed.store(true, Ordering::Relaxed);
                entry.kill.notify_one();
            }
        }
    }
    if matching.contains(&me) {
        ctx.client.close = true;
    }
    if args.len() == 3 {
        if matching.is_empty() {
            Frame::error("ERR No such client")
        } else {
            Frame::ok()
        }
    } else {
        Frame::Integer(matching.len() as i64)
    }
}

// ----- INFO -----

/// Sections in the order INFO prints them; all are in the default set.
const INFO_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "meridian",
    "keyspace",
];

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let wanted: Vec<&str> = if args.len() == 1 {
        INFO_SECTIONS.to_vec()
    } else {
        let mut w = HashSet::new();
        for a in &args[1..] {
            if ["all", "everything", "default"]
                .iter()
                .any(|s| eq_ignore_case(a, s))
            {
                w.extend(INFO_SECTIONS.iter().copied());
            } else if let Some(s) = INFO_SECTIONS.iter().find(|s| eq_ignore_case(a, s)) {
                w.insert(*s);
            }
        }
        INFO_SECTIONS
            .iter()
            .copied()
            .filter(|s| w.contains(s))
            .collect()
    };
    let mut text = String::new();
    for (i, section) in wanted.iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        let (title, fields) = info_section(ctx, section);
        text.push_str(&format!("# {title}\r\n"));
        for (k, v) in fields {
            text.push_str(&format!("{k}:{v}\r\n"));
        }
    }
    Frame::verbatim_text(text)
}

/// The port clients connect to: the one this connection arrived on, which
/// is the bound port even when the configuration asked for port 0.
fn listen_port(ctx: &Ctx<'_>) -> u16 {
    ctx.shared
        .clients
        .lock()
        .get(&ctx.client.id)
        .map_or(ctx.shared.config.listen.port(), |e| e.local.port())
}

/// Redis's `bytesToHuman`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut d = n as f64 / 1024.0;
    let mut unit = 0;
    while d >= 1024.0 && unit + 1 < UNITS.len() {
        d /= 1024.0;
        unit += 1;
    }
    format!("{d:.2}{}", UNITS[unit])
}

/// User and system CPU seconds of this process, from /proc (Linux).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 3 is the first after the name.
    (ticks(11) / USER_HZ, ticks(12) / USER_HZ)
}

/// Connections this process can hold: its open-file limit less the
/// descriptors kept for files and listeners, as Redis derives `maxclients`.
fn max_clients() -> u64 {
    let mut text = String::new();
    let read =
        std::fs::File::open("/proc/self/limits").and_then(|mut f| f.read_to_string(&mut text));
    if read.is_err() {
        return 0;
    }
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok())
        .map_or(0, |n| n.saturating_sub(RESERVED_FDS))
}

/// Unix time in seconds of the newest snapshot, or of the start of this
/// process if none exists yet.
fn last_save_secs(ctx: &Ctx<'_>) -> u64 {
    let newest = std::fs::read_dir(ctx.store.dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => d.as_secs(),
        None => (wall_ms() / 1000).saturating_sub(ctx.shared.started.elapsed().as_secs()),
    }
}

fn info_section(ctx: &mut Ctx<'_>, section: &str) -> (&'static str, Vec<(&'static str, String)>) {
    let shared = ctx.shared;
    let m = &shared.metrics;
    match section {
        "server" => {
            let uptime_s = shared.started.elapsed().as_secs();
            (
                "Server",
                vec![
                    ("redis_version", REDIS_VERSION.into()),
                    ("meridian_version", env!("CARGO_PKG_VERSION").into()),
                    ("redis_mode", "standalone".into()),
                    (
                        "os",
                        format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                    ),
                    ("arch_bits", usize::BITS.to_string()),
                    ("process_id", std::process::id().to_string()),
                    ("tcp_port", listen_port(ctx).to_string()),
                    ("server_time_usec", (wall_ms() * 1000).to_string()),
                    ("uptime_in_seconds", uptime_s.to_string()),
                    ("uptime_in_days", (uptime_s / 86_400).to_string()),
                    ("hz", HZ.to_string()),
                    ("meridian_region", shared.config.region.to_string()),
                ],
            )
        }
        "clients" => (
            "Clients",
            vec![
                ("connected_clients", shared.clients.lock().len().to_string()),
                ("maxclients", max_clients().to_string()),
                ("blocked_clients", "0".into()),
            ],
        ),
        "memory" => {
            let rss = crate::metrics::rss_bytes();
            (
                "Memory",
                vec![
                    ("used_memory", rss.to_string()),
                    ("used_memory_human", human_bytes(rss)),
                    ("used_memory_rss", rss.to_string()),
                    ("used_memory_rss_human", human_bytes(rss)),
                    ("maxmemory", "0".into()),
                    ("maxmemory_human", "0B".into()),
                    ("maxmemory_policy", "noeviction".into()),
                ],
            )
        }
        "persistence" => (
            "Persistence",
            vec![
                ("loading", "0".into()),
                ("async_loading", "0".into()),
                (
                    "rdb_changes_since_last_save",
                    ctx.store.ops_since_snapshot().to_string(),
                ),
                ("rdb_bgsave_in_progress", "0".into()),
                ("rdb_last_save_time", last_save_secs(ctx).to_string()),
                ("aof_enabled", "1".into()),
                ("aof_rewrite_in_progress", "0".into()),
                ("meridian_fsync", shared.config.fsync.as_str().into()),
                (
                    "meridian_log_last_lsn",
                    ctx.store.log().last_lsn().to_string(),
                ),
                (
                    "meridian_snapshots",
                    Metrics::get(&m.snapshots_total).to_string(),
                ),
            ],
        ),
        "stats" => (
            "Stats",
            vec![
                (
                    "total_connections_received",
                    Metrics::get(&m.connections_total).to_string(),
                ),
                (
                    "total_commands_processed",
                    Metrics::get(&m.commands_total).to_string(),
                ),
                (
                    "total_net_input_bytes",
                    Metrics::get(&m.net_input_bytes).to_string(),
                ),
                (
                    "total_net_output_bytes",
                    Metrics::get(&m.net_output_bytes).to_string(),
                ),
                (
                    "rejected_connections",
                    Metrics::get(&m.rejected_connections_total).to_string(),
                ),
                ("expired_keys", ctx.db().expired_total().to_string()),
                ("evicted_keys", "0".into()),
                ("pubsub_channels", shared.channels.lock().len().to_string()),
                ("pubsub_patterns", shared.patterns.lock().len().to_string()),
                (
                    "total_error_replies",
                    Metrics::get(&m.command_errors_total).to_string(),
                ),
                (
                    "meridian_ops_committed",
                    Metrics::get(&m.ops_committed_total).to_string(),
                ),
                (
                    "meridian_protocol_errors",
                    Metrics::get(&m.protocol_errors_total).to_string(),
                ),
            ],
        ),
        "replication" => (
            "Replication",
            vec![("role", "master".into()), ("connected_slaves", "0".into())],
        ),
        "cpu" => {
            let (user, sys) = cpu_seconds();
            (
                "CPU",
                vec![
                    ("used_cpu_sys", format!("{sys:.6}")),
                    ("used_cpu_user", format!("{user:.6}")),
                ],
            )
        }
        "meridian" => {
            let epoch = ctx.store.epoch();
            let conflicts_retained = ctx.store.journal().retained();
            let db = ctx.db();
            let clock = db.clock();
            let fields = vec![
                ("region", db.region().to_string()),
                ("epoch", epoch.to_string()),
                ("seq", db.seq().to_string()),
                (
                    "version_vector",
                    super::meridian::token(db.version_vector()),
                ),
                ("hlc", format!("{}.{}", clock.wall_ms(), clock.logical())),
                ("conflicts_total", db.conflicts_total().to_string()),
                ("conflicts_retained", conflicts_retained.to_string()),
                ("peers", shared.config.peers.len().to_string()),
                ("state", super::meridian::state(shared).into()),
            ];
            ("Meridian", fields)
        }
        _ => {
            let c = super::keys::key_counts(ctx);
            let fields = if c.keys == 0 {
                Vec::new()
            } else {
                vec![(
                    "db0",
                    format!(
                        "keys={},expires={},avg_ttl={}",
                        c.keys, c.expires, c.avg_ttl_ms
                    ),
                )]
            };
            ("Keyspace", fields)
        }
    }
}

// ----- CONFIG -----

const CONFIG_SUBCOMMANDS: &[(&str, i32)] =
    &[("get", -3), ("help", 2), ("resetstat", 2), ("set", -4)];

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value> (only requirepass and protected-mode change at run time).",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
];

/// The settings CONFIG GET reports, with Meridian's actual values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let c = &ctx.shared.config;
    let dir = std::fs::canonicalize(&c.data_dir).unwrap_or_else(|_| c.data_dir.clone());
    vec![
        ("appendfsync", c.fsync.as_str().into()),
        ("appendonly", "yes".into()),
        ("bind", c.listen.ip().to_string()),
        ("databases", "1".into()),
        ("dir", dir.display().to_string()),
        ("hz", HZ.to_string()),
        ("maxclients", max_clients().to_string()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("port", listen_port(ctx).to_string()),
        (
            "protected-mode",
            if ctx.shared.protected_mode.load(Ordering::Relaxed) {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
        ("proto-max-bulk-len", PROTO_MAX_BULK_LEN_BYTES.to_string()),
        (
            "requirepass",
            ctx.shared.requirepass.lock().clone().unwrap_or_default(),
        ),
        ("save", String::new()),
        ("timeout", "0".into()),
    ]
}

fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match subcommand(args, CONFIG_SUBCOMMANDS, "config") {
        Err(e) => e,
        Ok("get") => config_get(ctx, args),
        Ok("set") => config_set(ctx, args),
        Ok("resetstat") => {
            let m = &ctx.shared.metrics;
            for counter in [
                &m.connections_total,
                &m.commands_total,
                &m.command_errors_total,
                &m.net_input_bytes,
                &m.net_output_bytes,
                &m.rejected_connections_total,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            for spec in super::table().values() {
                spec.calls.store(0, Ordering::Relaxed);
            }
            Frame::ok()
        }
        Ok(_) => help_reply(&args[0], CONFIG_HELP),
    }
}

/// Patterns without glob characters name one setting and are echoed back
/// as typed; glob patterns list settings under their own names. Either
/// way the match ignores case, as in Redis.
fn config_get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let params = config_params(ctx);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pattern in &args[2..] {
        let is_glob = pattern.iter().any(|b| b"*?[".contains(b));
        for (name, value) in &params {
            if glob_match(pattern, name.as_bytes(), true) && seen.insert(*name) {
                let shown = if is_glob {
                    Frame::bulk(*name)
                } else {
                    Frame::Bulk(pattern.clone())
                };
                out.push((shown, Frame::bulk(value.clone())));
            }
        }
    }
    Frame::Map(out)
}

/// Only `requirepass` and `protected-mode` change at run time; the other
/// settings Meridian reports are fixed for the life of the process. All
/// values are checked before any is applied.
fn config_set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() % 2 == 1 {
        return syntax_error();
    }
    let known: Vec<&str> = config_params(ctx).into_iter().map(|(n, _)| n).collect();
    let mut password = None;
    let mut protected = None;
    let mut seen = HashSet::new();
    for p in args[2..].chunks(2) {
        let (name, value) = (&p[0], &p[1]);
        let Some(param) = known.iter().find(|k| eq_ignore_case(name, k)) else {
            return Frame::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                lossy(name)
            ));
        };
        let failed = |why: &str| {
            Frame::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                lossy(name)
            ))
        };
        if !seen.insert(*param) {
            return failed("duplicate parameter");
        }
        match *param {
            "requirepass" => match std::str::from_utf8(value) {
                Ok(v) => password = Some(v.to_string()),
                Err(_) => return failed("argument must be valid UTF-8"),
            },
            "protected-mode" => {
                protected = Some(if eq_ignore_case(value, "yes") {
                    true
                } else if eq_ignore_case(value, "no") {
                    false
                } else {
                    return failed("argument must be 'yes' or 'no'");
                })
            }
            _ => return failed("can't set immutable config"),
        }
    }
    if let Some(on) = protected {
        ctx.shared.protected_mode.store(on, Ordering::Relaxed);
        tracing::info!(
            protected_mode = on,
            client = ctx.client.id,
            "protected mode changed by CONFIG SET"
        );
    }
    if let Some(p) = password {
        let p = (!p.is_empty()).then_some(p);
        ctx.shared
            .acl
            .write()
            .set_default_password(p.as_deref(), &mut rand::thread_rng());
        *ctx.shared.requirepass.lock() = p;
    }
    Frame::ok()
}

// ----- COMMAND -----

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

/// Commands of the connection group, which share this file with the server
/// group.
const CONNECTION_GROUP: &[&str] = &[
    "auth", "client", "echo", "hello", "ping", "quit", "reset", "select",
];

/// The `group` COMMAND DOCS reports, from the family that defines a command.
fn command_group(name: &str) -> &'static str {
    static GROUPS: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    let groups = GROUPS.get_or_init(|| {
        let families: [(Vec<Spec>, &'static str); 9] = [
            (super::strings::specs(), "string"),
            (super::keys::specs(), "generic"),
            (super::hash::specs(), "hash"),
            (super::set::specs(), "set"),
            (super::zset::specs(), "sorted-set"),
            (super::tx::specs(), "transactions"),
            (super::pubsub::specs(), "pubsub"),
            (super::meridian::specs(), "meridian"),
            (specs(), "server"),
        ];
        let mut map = HashMap::new();
        for (list, group) in families {
            for s in list {
                let group = if CONNECTION_GROUP.contains(&s.name) {
                    "connection"
                } else {
                    group
                };
                map.insert(s.name, group);
            }
        }
        map
    });
    groups.get(name).copied().unwrap_or("server")
}

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

fn sorted_specs() -> Vec<&'static Spec> {
    let mut all: Vec<&Spec> = super::table().values().collect();
    all.sort_by_key(|s| s.name);
    all
}

fn command_cmd(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() == 1 {
        return Frame::Array(sorted_specs().into_iter().map(command_info).collect());
    }
    match subcommand(args, COMMAND_SUBCOMMANDS, "command") {
        Err(e) => e,
        Ok("count") => Frame::Integer(super::table().len() as i64),
        Ok("info") => {
            if args.len() == 2 {
                return Frame::Array(sorted_specs().into_iter().map(command_info).collect());
            }
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|n| super::lookup(n).map_or(Frame::Null, command_info))
                    .collect(),
            )
        }
        Ok("docs") => {
            let specs: Vec<&Spec> = if args.len() == 2 {
                sorted_specs()
            } else {
                args[2..].iter().filter_map(|n| super::lookup(n)).collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| {
                        let doc = vec![pair("group", Frame::bulk(command_group(s.name)))];
                        (Frame::bulk(s.name), Frame::Map(doc))
                    })
                    .collect(),
            )
        }
        Ok("list") => command_list(args),
        Ok("getkeys") => command_getkeys(&args[2..]),
        Ok(_) => help_reply(&args[0], COMMAND_HELP),
    }
}

/// `COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p]`. There are no
/// modules and no ACL categories, so those filters match nothing.
fn command_list(args: &[Bytes]) -> Frame {
    let names = sorted_specs().into_iter().map(|s| s.name);
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
fn command_getkeys(line: &[Bytes]) -> Frame {
    let Some(spec) = super::lookup(&line[0]) else {
        return Frame::error("ERR Invalid command specified");
    };
    let (first, last, step) = spec.keys;
    if first <= 0 {
        return Frame::error("ERR The command has no key arguments");
    }
    if !super::arity_ok(spec, line.len()) {
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

// ----- the database -----

fn dbsize(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    Frame::Integer(super::keys::dbsize(ctx) as i64)
}

/// FLUSHDB and FLUSHALL: a DEL of every visible key. ASYNC and SYNC are
/// accepted; the deletes are applied before the reply either way.
fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mode_ok = match args.len() {
        1 => true,
        2 => eq_ignore_case(&args[1], "sync") || eq_ignore_case(&args[1], "async"),
        _ => false,
    };
    if !mode_ok {
        return syntax_error();
    }
    let keys: Vec<_> = ctx.db().keyspace().iter().map(|(k, _)| k.clone()).collect();
    for key in keys {
        ctx.db().del(&key);
    }
    Frame::ok()
}

fn lastsave(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    Frame::Integer(last_save_secs(ctx) as i64)
}

/// Writes a snapshot now, under the store lock the command already holds.
/// Inside EXEC an op may be half built: it is committed first, so that the
/// snapshot and the op log agree on which ops the snapshot covers.
fn snapshot_now(ctx: &mut Ctx<'_>) -> Result<(), String> {
    match ctx.store.commit() {
        Ok(Some(_)) => Metrics::inc(&ctx.shared.metrics.ops_committed_total),
        Ok(None) => {}
        Err(e) => {
            *ctx.shared.readiness.lock() = Readiness::Poisoned(e.to_string());
            return Err(e.to_string());
        }
    }
    match ctx.store.snapshot() {
        Ok(info) => {
            Metrics::inc(&ctx.shared.metrics.snapshots_total);
            tracing::info!(
                lsn = info.lsn,
                bytes = info.content_bytes,
                "snapshot written by SAVE"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot requested by a client failed");
            Err(e.to_string())
        }
    }
}

fn save(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    match snapshot_now(ctx) {
        Ok(()) => Frame::ok(),
        Err(e) => Frame::error(format!("ERR snapshot failed: {e}")),
    }
}

/// BGSAVE [SCHEDULE]: the snapshot is written before the reply, so it is
/// complete by the time the client reads "Background saving started".
fn bgsave(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 2 || (args.len() == 2 && !eq_ignore_case(&args[1], "schedule")) {
        return syntax_error();
    }
    match snapshot_now(ctx) {
        Ok(()) => Frame::simple("Background saving started"),
        Err(e) => Frame::error(format!("ERR snapshot failed: {e}")),
    }
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. The op log is synced on the
/// way out in every case; SAVE also writes a snapshot first.
fn shutdown(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (mut nosave, mut save, mut now, mut force, mut abort) = (false, false, false, false, false);
    for a in &args[1..] {
        if eq_ignore_case(a, "nosave") {
            nosave = true;
        } else if eq_ignore_case(a, "save") {
            save = true;
        } else if eq_ignore_case(a, "now") {
            now = true;
        } else if eq_ignore_case(a, "force") {
            force = true;
        } else if eq_ignore_case(a, "abort") {
            abort = true;
        } else {
            return syntax_error();
        }
    }
    if (nosave && save) || (abort && (nosave || save || now || force)) {
        return syntax_error();
    }
    if abort {
        return Frame::error("ERR No shutdown in progress.");
    }
    if save && snapshot_now(ctx).is_err() && !force {
        return Frame::error("ERR Errors trying to SHUTDOWN. Check logs.");
    }
    tracing::info!(client = ctx.client.id, addr = %ctx.client.addr, "SHUTDOWN requested by a client");
    ctx.shared.shutdown.notify_one();
    ctx.client.close = true;
    Frame::Array(Vec::new())
}
