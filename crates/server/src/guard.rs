//! The checks a command passes before its handler runs, beyond arity and
//! authentication: the connection's ACL permissions and this region's
//! keyspace policies (or its being a witness). Dispatch runs them before a
//! command runs or is queued; EXEC runs them again for each queued command,
//! since the user or the cluster may have changed in between.

use bytes::Bytes;
use meridian_cluster::{admit, Refusal};
use meridian_repl::election::mono_ms;
use meridian_resp::Frame;

use crate::acl;
use crate::cmd::spec::{Ctx, Spec};
use crate::metrics::Metrics;
use crate::shared::wall_ms;

/// Why the connection's ACL user may not run this command on its keys, if
/// it may not. Checked before queueing in MULTI and again at EXEC, since the
/// user may have changed in between.
pub fn permission_refusal(ctx: &mut Ctx<'_>, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let (need, name) = acl::need(spec.name, args, spec.flags.write, spec.flags.no_auth);
    if need == acl::Need::Nothing {
        return None;
    }
    if beyond_read_only(ctx.client, &need) {
        let name = name.into_owned();
        let reply = Frame::error(format!(
            "NOPERM the data API's read-only token may not run the '{name}' command"
        ));
        crate::shared::acl_log(ctx.shared, ctx.client, acl::LogReason::Command, &name);
        return Some(reply);
    }
    let verdict = ctx
        .shared
        .acl
        .read()
        .check_keys_of(&ctx.client.user, need, &name, || command_keys(spec, args));
    let (reason, object, reply) = match verdict {
        Ok(()) => return None,
        Err(acl::Denied::NoUser) => {
            // As Redis does for a deleted user: the connection ends.
            ctx.client.close = true;
            return Some(Frame::error(format!(
                "NOPERM the user '{}' no longer exists",
                ctx.client.user
            )));
        }
        Err(acl::Denied::Command(name)) => {
            let reply = Frame::error(format!(
                "NOPERM this user has no permissions to run the '{name}' command"
            ));
            (acl::LogReason::Command, name, reply)
        }
        Err(acl::Denied::Key(key)) => (
            acl::LogReason::Key,
            key,
            Frame::error(
                "NOPERM this user has no permissions to access one of the keys used as arguments",
            ),
        ),
    };
    crate::shared::acl_log(ctx.shared, ctx.client, reason, &object);
    Some(reply)
}

/// Whether the connection's ACL user may run this command on its keys;
/// nothing is logged (`redis.acl_check_cmd` asks without acting).
pub fn permitted(ctx: &Ctx<'_>, spec: &Spec, args: &[Bytes]) -> bool {
    let (need, name) = acl::need(spec.name, args, spec.flags.write, spec.flags.no_auth);
    if need == acl::Need::Nothing {
        return true;
    }
    if beyond_read_only(ctx.client, &need) {
        return false;
    }
    ctx.shared
        .acl
        .read()
        .check_keys_of(&ctx.client.user, need, &name, || command_keys(spec, args))
        .is_ok()
}

/// Whether a read-only client (the data API's read-only token) is asked
/// for more than `@read`.
fn beyond_read_only(client: &crate::client::Client, need: &acl::Need) -> bool {
    client.read_only && matches!(need, acl::Need::Level(level) if *level > acl::Level::Read)
}

/// Commands whose keys follow a count at `args[2]` (scripts and functions
/// declare the keys they touch that way).
const NUMKEYS_AT_2: &[&str] = &[
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// Commands with a key after an option (GEORADIUS … STORE key), which
/// The keys a command names: by Redis's key specs for a command whose keys
/// move with its arguments (a STORE destination, keys after a count), so
/// every key passes the ACL and the keyspace policies; else from its table
/// entry (first, last, step).
pub fn command_keys<'a>(spec: &Spec, args: &'a [Bytes]) -> Vec<&'a [u8]> {
    if matches!(spec.name, "sort" | "sort_ro") {
        return sort_keys(args);
    }
    // Scripts first: the commonest movable keys, found without the specs.
    if NUMKEYS_AT_2.contains(&spec.name) {
        let n = std::str::from_utf8(args.get(2).map_or(&b""[..], |a| &a[..]))
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        return args.iter().skip(3).take(n).map(|a| &a[..]).collect();
    }
    if spec.movable_keys {
        let found = crate::cmd::redis_meta::key_positions(spec.name, args);
        if !found.is_empty() {
            return found.into_iter().map(|i| &args[i][..]).collect();
        }
    }
    let (first, last, step) = spec.keys;
    if first <= 0 || step <= 0 {
        // A container's keys are its subcommand's (XGROUP CREATE key …),
        // where Redis's key specs find them.
        return crate::cmd::command::subcommand_name(spec, args)
            .map(|full| crate::cmd::redis_meta::key_positions(&full, args))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| args.get(i).map(|a| &a[..]))
            .collect();
    }
    let last = if last < 0 {
        args.len() as i32 + last
    } else {
        last
    };
    (first..=last.min(args.len() as i32 - 1))
        .step_by(step as usize)
        .filter_map(|i| args.get(i as usize).map(|a| &a[..]))
        .collect()
}

/// SORT's keys: the source and the STORE destination, found as Redis
/// finds them (its key specs leave the destination to code): LIMIT takes
/// two arguments, BY and GET one, the last STORE wins.
fn sort_keys(args: &[Bytes]) -> Vec<&[u8]> {
    let mut keys: Vec<&[u8]> = args.get(1).map(|k| &k[..]).into_iter().collect();
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let word = &args[i][..];
        if word.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if word.eq_ignore_ascii_case(b"by") || word.eq_ignore_ascii_case(b"get") {
            i += 1;
        } else if word.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            store = Some(&args[i + 1][..]);
            i += 1;
        }
        i += 1;
    }
    keys.extend(store);
    keys
}

/// Commands a witness answers: it stores no data, so everything else is
/// refused rather than answered from an empty keyspace.
const WITNESS_COMMANDS: &[&str] = &[
    "ping", "echo", "hello", "auth", "info", "client", "config", "command", "time", "quit",
    "reset", "meridian", "select", "shutdown",
];

/// Why this region may not run a command now under its keyspace policies
/// (or because it is a witness), if it may not.
pub fn policy_refusal(ctx: &Ctx<'_>, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let config = &ctx.shared.config;
    if config.witness && !WITNESS_COMMANDS.contains(&spec.name) {
        return Some(Frame::error(format!(
            "WITNESS region {} is a witness: it stores no data; send '{}' to a data region",
            config.region, spec.name
        )));
    }
    if !spec.flags.write || !ctx.shared.policies().needs_lease() {
        return None;
    }
    write_refusal(ctx, &command_keys(spec, args))
}

/// Why this region may not write `keys` now under its keyspace policies,
/// if it may not (a script checks the keys it declares before it runs).
pub fn write_refusal(ctx: &Ctx<'_>, keys: &[&[u8]]) -> Option<Frame> {
    let config = &ctx.shared.config;
    let policies = ctx.shared.policies();
    if !policies.needs_lease() {
        return None;
    }
    let lease = ctx.shared.host.view.lock().lease(wall_ms());
    let lease = lease.as_ref().map(|_| ()).map_err(String::as_str);
    // The election's verdict and the count of an admitted primary write
    // happen under one hold of the election's lock, through the one door
    // that changes the election: a write checked in term T is counted in
    // term T, never in a term that began in between.
    let admitted = ctx.shared.host.election_step(|election| {
        admit(
            &policies,
            keys,
            config.region,
            lease,
            election,
            (mono_ms(), wall_ms()),
        )
    });
    match admitted {
        Ok(()) => None,
        Err(Refusal::Fenced { pattern, why }) => {
            Metrics::inc(&ctx.shared.metrics.fenced_writes_total);
            Some(Frame::error(format!(
                "FENCED writes to keys matching '{pattern}' are refused while {why}; reads still work but may be stale"
            )))
        }
        Err(Refusal::ReadOnly { pattern, primary }) => Some(Frame::error(format!(
            "READONLY You can't write against a read only region. Keys matching '{pattern}' are written at their primary region {primary}"
        ))),
    }
}
