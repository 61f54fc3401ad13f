//! Running one command: the checks Redis makes before a handler runs, in
//! Redis's order (the ACL and policy checks themselves live in
//! [`crate::guard`], which EXEC runs again for each queued command), then
//! the handler, the counters INFO reports ([`crate::cmd::stats`]) and
//! CLIENT REPLY. Committing what a batch built is [`crate::commit`]'s.

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use meridian_resp::Frame;

use crate::client::Client;
use crate::cmd::spec::{Ctx, Spec};
use crate::cmd::{self, util::arity_error};
use crate::commit::poisoned_error;
use crate::guard::{permission_refusal, policy_refusal};
use crate::metrics::Metrics;

/// Executes one command and appends its replies (usually one) to `out`,
/// unless CLIENT REPLY says to drop them.
pub fn execute(ctx: &mut Ctx<'_>, args: Vec<Bytes>, out: &mut Vec<Frame>) {
    let first = out.len();
    let client_command = ctx.client.tracking.is_some() && args[0].eq_ignore_ascii_case(b"client");
    run(ctx, args, out);
    apply_reply_mode(ctx.client, out, first);
    crate::tracking::after_command(ctx.client, client_command);
}

/// CLIENT REPLY OFF and SKIP drop a command's replies, as Redis does at
/// the moment it adds them: Pub/Sub notices still go out (Redis pushes
/// them whatever the mode), everything else is dropped. Then a SKIP
/// requested by this command applies to the next one.
fn apply_reply_mode(client: &mut Client, out: &mut Vec<Frame>, first: usize) {
    if client.reply_off || client.reply_skip {
        let kept: Vec<Frame> = out
            .drain(first..)
            .filter(|f| matches!(f, Frame::Push(_)))
            .collect();
        out.extend(kept);
    }
    client.reply_skip = std::mem::take(&mut client.reply_skip_next);
}

/// What a command's counters are kept under: its name, or a container's
/// subcommand (`client|kill`). `None` for an unknown subcommand, which
/// Redis counts against no command.
fn stat_name(spec: &Spec, args: &[Bytes]) -> Option<Cow<'static, str>> {
    match cmd::command::supported_subcommands(spec.name) {
        Some(_) if args.len() > 1 => cmd::command::subcommand_name(spec, args).map(Cow::Owned),
        _ => Some(Cow::Borrowed(spec.name)),
    }
}

/// Redis's refusal of a container's subcommand: unknown, or given a wrong
/// number of arguments (a rejected call of the subcommand).
fn subcommand_refusal(spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let subs = cmd::command::supported_subcommands(spec.name)?;
    args.get(1)?;
    cmd::util::subcommand(args, subs, spec.name).err()
}

fn run(ctx: &mut Ctx<'_>, args: Vec<Bytes>, out: &mut Vec<Frame>) {
    Metrics::inc(&ctx.shared.metrics.commands_total);
    let Some(spec) = cmd::spec::lookup(ctx.table, &args[0]) else {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(count_error(ctx, cmd::spec::unknown_command(&args)));
        return;
    };
    if !cmd::spec::arity_ok(spec, args.len()) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(reject(ctx, spec, &args, arity_error(spec.name)));
        return;
    }
    // A container's subcommand is looked up with the command, as Redis
    // does: an unknown one or a wrong count of its arguments is refused
    // before authentication and aborts a transaction.
    if let Some(refusal) = subcommand_refusal(spec, &args) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    if !ctx.client.authenticated && !spec.flags.no_auth {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        let refusal = Frame::error("NOAUTH Authentication required.");
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    if let Some(refusal) = permission_refusal(ctx, spec, &args) {
        if ctx.client.multi.is_some() {
            ctx.client.multi_failed = true;
        }
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    if ctx.client.in_pubsub_context() && !spec.flags.pubsub_ok {
        let text = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        );
        out.push(reject(ctx, spec, &args, Frame::error(text)));
        return;
    }
    if let Some(refusal) = crate::monitor::refused(ctx.client, spec) {
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    if ctx.client.multi.is_some() && !spec.flags.tx_control && not_in_multi(spec.name) {
        ctx.client.multi_failed = true;
        let refusal = Frame::error("ERR Command not allowed inside a transaction");
        out.push(reject(ctx, spec, &args, refusal));
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
        out.push(reject(ctx, spec, &args, poisoned_error()));
        return;
    }
    if spec.flags.write
        && ctx
            .shared
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
    {
        let refusal = Frame::error(
            "ERR this region is shutting down: writes are refused; send them to another region",
        );
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    if let Some(refusal) = policy_refusal(ctx, spec, &args) {
        out.push(reject(ctx, spec, &args, refusal));
        return;
    }
    let queued = (spec.name == "exec").then(|| queued_stat_names(ctx));
    let monitor_after = crate::monitor::feed_before(ctx.shared, ctx.client, spec, &args);
    let started = Instant::now();
    let reply = (spec.handler)(ctx, &args);
    if monitor_after {
        crate::monitor::feed(ctx.shared, ctx.client, spec, &args);
    }
    let usec = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // A command that blocked is counted once, when its wait ends (its
    // retries, or `blocked_done`), as Redis counts it.
    let blocked = ctx.client.block_pending;
    if let Some(name) = stat_name(spec, &args).filter(|_| !blocked) {
        ctx.shared
            .cmdstats
            .lock()
            .called(&name, usec, reply.is_error());
    }
    if let (Some(names), Frame::Array(replies)) = (queued, &reply) {
        count_transaction(ctx, &names, replies);
    }
    // Client tracking remembers what a tracking client read (one branch
    // for any other client).
    crate::tracking::track_reads(ctx, spec, &args, &reply);
    crate::notify::key_misses(ctx, spec, &args);
    push_reply(ctx, reply, spec.flags.multi_reply, out);
}

/// A blocked command's wait ended without it running again (it timed out
/// or CLIENT UNBLOCK ended it): its one call is counted now, with `reply`.
pub fn blocked_done(shared: &crate::shared::Shared, args: &[Bytes], reply: &Frame) {
    let Some(spec) = cmd::spec::lookup(cmd::table(), &args[0]) else {
        return;
    };
    let mut stats = shared.cmdstats.lock();
    if let Some(name) = stat_name(spec, args) {
        stats.called(&name, 0, reply.is_error());
    }
    if let Frame::Error(text) = reply {
        Metrics::inc(&shared.metrics.command_errors_total);
        stats.error(text);
    }
}

/// Commands Redis refuses to queue in a transaction (`no_multi`: SAVE,
/// SHUTDOWN and the like).
fn not_in_multi(name: &str) -> bool {
    cmd::redis_meta::has_flag(name, "no_multi")
}

/// The counter names of the commands EXEC is about to run, read before it
/// takes the queue.
fn queued_stat_names(ctx: &Ctx<'_>) -> Vec<Option<Cow<'static, str>>> {
    let Some(queue) = ctx.client.multi.as_ref() else {
        return Vec::new();
    };
    queue
        .iter()
        .map(|args| cmd::spec::lookup(ctx.table, &args[0]).and_then(|s| stat_name(s, args)))
        .collect()
}

/// Counts the commands a transaction ran, one reply each, as Redis counts
/// commands EXEC calls: each one called (failed if it answered an error),
/// each error reply in the error stats. Their time is counted in EXEC's.
fn count_transaction(ctx: &Ctx<'_>, names: &[Option<Cow<'static, str>>], replies: &[Frame]) {
    if names.len() != replies.len() {
        return;
    }
    let mut stats = ctx.shared.cmdstats.lock();
    for (name, reply) in names.iter().zip(replies) {
        if let Some(name) = name {
            stats.called(name, 0, reply.is_error());
        }
        if let Frame::Error(text) = reply {
            Metrics::inc(&ctx.shared.metrics.command_errors_total);
            stats.error(text);
        }
    }
}

fn push_reply(ctx: &mut Ctx<'_>, reply: Frame, multi_reply: bool, out: &mut Vec<Frame>) {
    match reply {
        Frame::Array(items) if multi_reply => out.extend(items),
        reply => out.push(count_error(ctx, reply)),
    }
}

/// A refusal before the command ran: counted as a rejected call of it.
fn reject(ctx: &Ctx<'_>, spec: &Spec, args: &[Bytes], refusal: Frame) -> Frame {
    if let Some(name) = stat_name(spec, args) {
        ctx.shared.cmdstats.lock().rejected(&name);
    }
    count_error(ctx, refusal)
}

/// Counts `f` in `total_error_replies` and the error stats if it is an
/// error, and hands it back.
fn count_error(ctx: &Ctx<'_>, f: Frame) -> Frame {
    if let Frame::Error(text) = &f {
        Metrics::inc(&ctx.shared.metrics.command_errors_total);
        ctx.shared.cmdstats.lock().error(text);
    }
    f
}
