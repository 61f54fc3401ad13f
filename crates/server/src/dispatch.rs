//! Running one command: the checks Redis makes before a handler runs, in
//! Redis's order, and committing the op the command produced.

use bytes::Bytes;
use meridian_resp::Frame;

use crate::acl;
use crate::cmd::{self, util::arity_error, Ctx, Spec};
use crate::metrics::Metrics;
use meridian_cluster::{Policy, PrimaryNow, WriteVerdict};

/// Executes one command and returns its replies (usually one).
pub fn execute(ctx: &mut Ctx<'_>, args: Vec<Bytes>, out: &mut Vec<Frame>) {
    Metrics::inc(&ctx.shared.metrics.commands_total);
    let Some(spec) = cmd::lookup(&args[0]) else {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(count_error(ctx, cmd::unknown_command(&args)));
        return;
    };
    if !cmd::arity_ok(spec, args.len()) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(count_error(ctx, arity_error(spec.name)));
        return;
    }
    if !ctx.client.authenticated && !spec.flags.no_auth {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(count_error(
            ctx,
            Frame::error("NOAUTH Authentication required."),
        ));
        return;
    }
    if let Some(refusal) = permission_refusal(ctx, spec, &args) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(count_error(ctx, refusal));
        return;
    }
    if ctx.client.in_pubsub_context() && !spec.flags.pubsub_ok {
        let text = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        );
        out.push(count_error(ctx, Frame::error(text)));
        return;
    }
    if let Some(queue) = ctx.client.multi.as_mut() {
        if !spec.flags.tx_control {
            queue.push(args);
            out.push(Frame::simple("QUEUED"));
            return;
        }
    }
    spec.calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if spec.flags.write && ctx.store.is_poisoned() {
        out.push(count_error(ctx, poisoned_error()));
        return;
    }
    if spec.flags.write
        && ctx
            .shared
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
    {
        out.push(count_error(
            ctx,
            Frame::error(
                "ERR this region is shutting down: writes are refused; send them to another region",
            ),
        ));
        return;
    }
    if let Some(refusal) = policy_refusal(ctx, spec, &args) {
        out.push(count_error(ctx, refusal));
        return;
    }
    let reply = (spec.handler)(ctx, &args);
    push_reply(ctx, reply, spec.flags.multi_reply, out);
}

/// Commits the op a command (or an EXEC block) built; a failed append turns
/// the reply into an error, since the write is not durable.
/// Commits the op the batch's commands built: everything one connection
/// sent in one read becomes one op (as a MULTI block would), which is
/// stronger than Redis promises for a pipeline and saves a dot, a context
/// and a log record per command. Returns false if the op log failed, in
/// which case no reply of the batch may claim success.
pub fn commit(ctx: &mut Ctx<'_>) -> bool {
    match ctx.store.commit() {
        Ok(Some(_)) => {
            Metrics::inc(&ctx.shared.metrics.ops_committed_total);
            true
        }
        Ok(None) => true,
        Err(e) => {
            tracing::error!(error = %e, "appending to the op log failed; writes are refused from now on");
            *ctx.shared.readiness.lock() = crate::shared::Readiness::Poisoned(e.to_string());
            false
        }
    }
}

fn push_reply(ctx: &mut Ctx<'_>, reply: Frame, multi_reply: bool, out: &mut Vec<Frame>) {
    match reply {
        Frame::Array(items) if multi_reply => out.extend(items),
        reply => {
            if reply.is_error() {
                Metrics::inc(&ctx.shared.metrics.command_errors_total);
            }
            out.push(reply)
        }
    }
}

pub fn poisoned_error() -> Frame {
    Frame::error(
        "MISCONF Errors writing to the op log; this region refuses writes until it is restarted",
    )
}

fn count_error(ctx: &Ctx<'_>, f: Frame) -> Frame {
    Metrics::inc(&ctx.shared.metrics.command_errors_total);
    f
}

/// Why the connection's ACL user may not run this command on its keys, if
/// it may not. Checked before queueing in MULTI and again at EXEC, since the
/// user may have changed in between.
pub fn permission_refusal(ctx: &mut Ctx<'_>, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let (need, name) = acl::need(spec.name, args, spec.flags.write, spec.flags.no_auth);
    if need == acl::Need::Nothing {
        return None;
    }
    let keys = command_keys(spec, args);
    let verdict = ctx
        .shared
        .acl
        .read()
        .check(&ctx.client.user, need, &name, &keys);
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

/// The keys a command names, from its table entry (first, last, step).
pub fn command_keys<'a>(spec: &Spec, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    let (first, last, step) = spec.keys;
    if first <= 0 || step <= 0 {
        return Vec::new();
    }
    let last = if last < 0 {
        args.len() as i32 + last
    } else {
        last
    };
    (first..=last.min(args.len() as i32 - 1))
        .step_by(step as usize)
        .filter_map(|i| args.get(i as usize))
        .collect()
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
    if !spec.flags.write {
        return None;
    }
    let policies = ctx.shared.policies();
    if !policies.needs_lease() {
        return None;
    }
    let lease = ctx.shared.host.view.lock().lease(crate::shared::wall_ms());
    let lease = lease.as_ref().map(|_| ()).map_err(String::as_str);
    let (primary, writable) = {
        let e = ctx.shared.host.election.lock();
        (e.primary(), e.may_write(meridian_repl::election::mono_ms()))
    };
    let primary = PrimaryNow {
        region: primary,
        writable: writable.as_ref().map(|_| ()).map_err(String::as_str),
    };
    let keys = command_keys(spec, args);
    let verdicts: Vec<(String, bool, WriteVerdict)> = if keys.is_empty() {
        // A keyless write (FLUSHALL) touches every keyspace.
        policies
            .rules()
            .map(|(pattern, policy)| {
                (
                    String::from_utf8_lossy(pattern).into_owned(),
                    matches!(policy, Policy::Primary(_)),
                    policies.verdict(pattern, config.region, lease, primary),
                )
            })
            .collect()
    } else {
        keys.iter()
            .map(|k| {
                let (pattern, policy) = policies.for_key(k);
                (
                    String::from_utf8_lossy(pattern).into_owned(),
                    matches!(policy, Policy::Primary(_)),
                    policies.verdict(k, config.region, lease, primary),
                )
            })
            .collect()
    };
    let as_primary = verdicts.iter().any(|(_, p, _)| *p);
    for (pattern, _, verdict) in verdicts {
        match verdict {
            WriteVerdict::Allowed => {}
            WriteVerdict::Fenced(why) => {
                Metrics::inc(&ctx.shared.metrics.fenced_writes_total);
                return Some(Frame::error(format!(
                    "FENCED writes to keys matching '{pattern}' are refused while {why}; reads still work but may be stale"
                )));
            }
            WriteVerdict::ReadOnly { primary, pattern } => {
                return Some(Frame::error(format!(
                    "READONLY You can't write against a read only region. Keys matching '{pattern}' are written at their primary region {primary}"
                )));
            }
        }
    }
    if as_primary {
        // Recorded per term, so status can show that no two regions
        // accepted primary writes in one term.
        ctx.shared
            .host
            .election
            .lock()
            .note_write(crate::shared::wall_ms());
    }
    None
}
