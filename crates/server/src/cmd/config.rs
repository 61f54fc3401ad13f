//! CONFIG GET, SET and RESETSTAT over every Redis 7.0 parameter: the ones
//! Meridian has report its real values (`requirepass`, `protected-mode`
//! and `notify-keyspace-events` change at run time, the others only at
//! start), and the ones it has no
//! mechanism for are checked, kept and reported back (`config_params.rs`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use meridian_resp::Frame;

use super::config_params::{self, Mode};
use super::info::{listen_port, max_clients, HZ, PROTO_MAX_BULK_LEN_BYTES};
use super::spec::{command, Ctx, Spec, READ};
use super::util::{eq_ignore_case, glob_match, help_reply, lossy, subcommand, syntax_error};

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![command("config", -2, READ, NONE, config, &["admin"])]
}

pub const CONFIG_SUBCOMMANDS: &[(&str, i32)] =
    &[("get", -3), ("help", 2), ("resetstat", 2), ("set", -4)];

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value> [<directive> <value> ...]",
    "    Set the configuration <directive> to <value>; of Meridian's own settings only requirepass, protected-mode and notify-keyspace-events change at run time.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
];

/// The settings CONFIG GET reports, with Meridian's actual values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let c = &ctx.shared.config;
    let dir = std::fs::canonicalize(&c.data_dir).unwrap_or_else(|_| c.data_dir.clone());
    let aclfile = c.aclfile.as_ref().map(|p| p.display().to_string());
    vec![
        ("aclfile", aclfile.unwrap_or_default()),
        ("appendfsync", c.fsync.as_str().into()),
        ("appendonly", "yes".into()),
        ("bind", c.listen.ip().to_string()),
        ("databases", "1".into()),
        ("dir", dir.display().to_string()),
        ("hz", HZ.to_string()),
        ("maxclients", max_clients().to_string()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        (
            "notify-keyspace-events",
            crate::notify::render(crate::notify::flags(ctx.shared)),
        ),
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
            for spec in ctx.table.values() {
                spec.calls.store(0, Ordering::Relaxed);
            }
            ctx.shared.cmdstats.lock().reset();
            Frame::ok()
        }
        Ok(_) => help_reply(&args[0], CONFIG_HELP),
    }
}

/// Patterns without glob characters name one setting and are echoed back
/// as typed; glob patterns list settings under their own names. Either
/// way the match ignores case, as in Redis.
fn config_get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut params = config_params(ctx);
    {
        let kept = ctx.shared.config_kept.lock();
        for p in config_params::PARAMS {
            let value = kept.get(p.name).map_or(p.default, String::as_str);
            params.push((p.name, value.to_string()));
            if let Some(alias) = p.alias {
                params.push((alias, value.to_string()));
            }
        }
    }
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

/// Of Meridian's own settings only `requirepass`, `protected-mode` and
/// `notify-keyspace-events` change at run time; the others may be set only to the value they have.
/// Parameters Meridian has no mechanism for are kept. All values are
/// checked before any is applied.
fn config_set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() % 2 == 1 {
        return syntax_error();
    }
    let own = config_params(ctx);
    let mut password = None;
    let mut protected = None;
    let mut notify = None;
    let mut kept = Vec::new();
    let mut seen = HashSet::new();
    for p in args[2..].chunks(2) {
        let (name, value) = (&p[0], &p[1]);
        let failed = |why: &str| {
            Frame::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                lossy(name)
            ))
        };
        if let Some(param) = config_params::find(name) {
            if !seen.insert(param.name) {
                return failed("duplicate parameter");
            }
            if param.mode == Mode::Immutable {
                return failed("can't set immutable config");
            }
            match config_params::normalize(param, value) {
                Ok(v) => kept.push((param.name, v)),
                Err(why) => return failed(&why),
            }
            continue;
        }
        let Some((param, current)) = own.iter().find(|(k, _)| eq_ignore_case(name, k)) else {
            return Frame::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                lossy(name)
            ));
        };
        if !seen.insert(*param) {
            return failed("duplicate parameter");
        }
        match *param {
            "requirepass" => match std::str::from_utf8(value) {
                Ok(v) => password = Some(v.to_string()),
                Err(_) => return failed("argument must be valid UTF-8"),
            },
            "notify-keyspace-events" => match crate::notify::parse(value) {
                Ok(flags) => notify = Some(flags),
                Err(why) => return failed(why),
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
            // Setting a value it already has changes nothing, so it is
            // accepted (clients restore what CONFIG GET gave them).
            _ if eq_ignore_case(value, current) => {}
            // Fixed when the region starts (by its flags), as Redis's own
            // immutable parameters are.
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
    if let Some(flags) = notify {
        crate::notify::set_flags(ctx.shared, ctx.store, flags);
    }
    if let Some(p) = password {
        let p = (!p.is_empty()).then_some(p);
        ctx.shared
            .acl
            .write()
            .set_default_password(p.as_deref(), &mut rand::thread_rng());
        *ctx.shared.requirepass.lock() = p;
    }
    if !kept.is_empty() {
        ctx.shared.config_kept.lock().extend(kept);
    }
    Frame::ok()
}
