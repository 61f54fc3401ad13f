//! Connection commands: PING, ECHO, HELLO, AUTH, QUIT, RESET and CLIENT.
//!
//! Meridian presents itself as a Redis 7.0 server, so clients that check the
//! version work unchanged; `HELLO` adds `meridian_*` fields for tools that
//! want to tell the two apart.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use meridian_resp::{parse_redis_int, Frame, Protocol};

use super::spec::{command, Ctx, Spec, ANYTIME, NO_AUTH, PUBSUB_OK, READ};
use super::util::{
    arity_error, eq_ignore_case, help_reply, lossy, pair, subcommand, syntax_error, REDIS_VERSION,
};
use crate::client::Client;
use crate::metrics::Metrics;

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("ping", -1, PUBSUB_OK, NONE, ping, &["fast"]),
        command("echo", 2, READ, NONE, echo, &["fast"]),
        command("hello", -1, NO_AUTH, NONE, hello, &["no_auth", "fast"]),
        command("auth", -2, NO_AUTH, NONE, auth, &["no_auth", "fast"]),
        command("client", -2, READ, NONE, client, &[]),
        command("quit", -1, ANYTIME, NONE, quit, &["no_auth", "fast"]),
        command("reset", 1, ANYTIME, NONE, reset, &["no_auth", "fast"]),
        command(
            "monitor",
            1,
            super::spec::Flags {
                multi_reply: true,
                ..READ
            },
            NONE,
            crate::monitor::monitor_command,
            &["admin", "noscript", "loading", "stale"],
        ),
    ]
}

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
fn quit(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.client.close = true;
    Frame::ok()
}

/// Back to a fresh connection's state: out of MULTI, nothing watched or
/// subscribed, tracking off, RESP2, no name, and not authenticated if a
/// password is set.
fn reset(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.client.multi = None;
    ctx.client.multi_failed = false;
    super::tx::unwatch_all(ctx);
    super::pubsub::unsubscribe_all(ctx.shared, ctx.client);
    crate::tracking::disable(ctx);
    if std::mem::take(&mut ctx.client.monitor) {
        ctx.shared.monitors.stop(ctx.client.id);
    }
    ctx.client.proto = Protocol::Resp2;
    ctx.client.name = None;
    ctx.client.reply_off = false;
    ctx.client.reply_skip_next = false;
    ctx.client.user = crate::acl::DEFAULT_USER.to_string();
    ctx.client.authenticated = ctx.shared.acl.read().default_needs_no_auth();
    Frame::simple("RESET")
}

// ----- CLIENT -----

pub const CLIENT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("caching", 3),
    ("getname", 2),
    ("getredir", 2),
    ("help", 2),
    ("id", 2),
    ("info", 2),
    ("kill", -3),
    ("list", -2),
    ("no-evict", 3),
    ("no-touch", 3),
    ("pause", -3),
    ("reply", 3),
    ("setname", 3),
    ("tracking", -3),
    ("trackinginfo", 2),
    ("unblock", -3),
    ("unpause", 2),
];

const CLIENT_HELP: &[&str] = &[
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
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
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on (Meridian keeps no such stats).",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
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
        Ok("reply") => client_reply(ctx.client, &args[2]),
        Ok("unblock") => client_unblock(ctx, args),
        Ok("tracking") => crate::tracking::client_tracking(ctx, args),
        Ok("caching") => crate::tracking::client_caching(ctx, args),
        Ok("getredir") => crate::tracking::client_getredir(ctx),
        Ok("trackinginfo") => crate::tracking::client_trackinginfo(ctx),
        Ok("pause") => client_pause(ctx, args),
        Ok("unpause") => {
            ctx.shared.pause.unpause();
            Frame::ok()
        }
        Ok("no-evict" | "no-touch") => {
            if eq_ignore_case(&args[2], "on") || eq_ignore_case(&args[2], "off") {
                Frame::ok()
            } else {
                syntax_error()
            }
        }
        Ok(_) => help_reply(&args[0], CLIENT_HELP),
    }
}

/// `CLIENT PAUSE timeout [WRITE|ALL]`, with Redis's checks in its order
/// (the mode, then the timeout).
fn client_pause(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 4 {
        return Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            lossy(&args[1])
        ));
    }
    let mode = match args.get(3) {
        None => crate::pause::Mode::All,
        Some(m) if eq_ignore_case(m, "write") => crate::pause::Mode::Write,
        Some(m) if eq_ignore_case(m, "all") => crate::pause::Mode::All,
        Some(_) => return Frame::error("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    let ms = match super::util::parse_int(&args[2]) {
        Ok(ms) => ms,
        Err(_) => return Frame::error("ERR timeout is not an integer or out of range"),
    };
    let Ok(ms) = u64::try_from(ms) else {
        return Frame::error("ERR timeout is negative");
    };
    ctx.shared
        .pause
        .pause(mode, std::time::Duration::from_millis(ms));
    Frame::ok()
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: ends another client's blocking
/// command as if it timed out, or with an `UNBLOCKED` error; 1 if that
/// client was blocked.
fn client_unblock(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let id = match super::util::parse_int(&args[2]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let how = match args.get(3) {
        None => crate::blocking::Unblock::Timeout,
        Some(a) if eq_ignore_case(a, "timeout") => crate::blocking::Unblock::Timeout,
        Some(a) if eq_ignore_case(a, "error") => crate::blocking::Unblock::Error,
        Some(_) => {
            return Frame::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        }
    };
    if args.len() > 4 {
        return syntax_error();
    }
    let Ok(id) = u64::try_from(id) else {
        return Frame::Integer(0);
    };
    Frame::Integer(i64::from(ctx.shared.blocking.lock().unblock(id, how)))
}

/// `CLIENT REPLY ON|OFF|SKIP`. OFF and SKIP answer nothing themselves:
/// dispatch drops the replies of a command while `reply_off` or
/// `reply_skip` is set, and moves `reply_skip_next` to `reply_skip` after
/// each command, as Redis does.
fn client_reply(client: &mut Client, mode: &[u8]) -> Frame {
    if eq_ignore_case(mode, "on") {
        client.reply_off = false;
        client.reply_skip = false;
        client.reply_skip_next = false;
    } else if eq_ignore_case(mode, "off") {
        client.reply_off = true;
    } else if eq_ignore_case(mode, "skip") {
        if !client.reply_off {
            client.reply_skip = true;
            client.reply_skip_next = true;
        }
    } else {
        return syntax_error();
    }
    Frame::ok()
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
    ssub: usize,
    in_multi: bool,
    blocked: bool,
    cmd: String,
    resp: u8,
    /// Client tracking's flag letters (`t`, `R`, `B`) and redirect.
    tracking: (String, i64),
}

impl ClientView {
    fn kind(&self) -> ClientType {
        if self.sub + self.psub + self.ssub > 0 {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }

    /// Redis's field names, limited to the ones Meridian can fill in truly.
    fn line(&self) -> String {
        let mut flags = String::new();
        if self.sub + self.psub + self.ssub > 0 {
            flags.push('P');
        }
        if self.in_multi {
            flags.push('x');
        }
        if self.blocked {
            flags.push('b');
        }
        flags.push_str(&self.tracking.0);
        if flags.is_empty() {
            flags.push('N');
        }
        format!(
            "id={} addr={} laddr={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} cmd={} user=default redir={} resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.name,
            self.age_s,
            self.idle_s,
            flags,
            self.sub,
            self.psub,
            self.ssub,
            self.cmd,
            self.tracking.1,
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
    let mut subs: HashMap<u64, (usize, usize, usize)> = HashMap::new();
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
    for ids in ctx.shared.shard_channels.lock().values() {
        for id in ids.keys() {
            subs.entry(*id).or_default().2 += 1;
        }
    }
    let me = ctx.client.id;
    let clients = ctx.shared.clients.lock();
    let mut views: Vec<ClientView> = clients
        .values()
        .map(|e| {
            let (sub, psub, ssub) = subs.get(&e.id).copied().unwrap_or_default();
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
                ssub,
                in_multi: e.in_multi,
                blocked: ctx.shared.blocking.lock().is_blocked(e.id),
                cmd: e.last_cmd.clone(),
                resp: e.resp,
                tracking: Default::default(),
            }
        })
        .collect();
    drop(clients);
    for v in &mut views {
        v.tracking = crate::tracking::list_fields(ctx.shared, v.id);
    }
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
        v.ssub = c.shard_channels.len();
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
