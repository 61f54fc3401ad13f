//! Running one command: the checks Redis makes before a handler runs, in
//! Redis's order (the ACL and policy checks themselves live in
//! [`crate::guard`], which EXEC runs again for each queued command), then
//! the handler. Committing what a batch built is [`crate::commit`]'s.

use bytes::Bytes;
use meridian_resp::Frame;

use crate::cmd::spec::Ctx;
use crate::cmd::{self, util::arity_error};
use crate::commit::poisoned_error;
use crate::guard::{permission_refusal, policy_refusal};
use crate::metrics::Metrics;

/// Executes one command and returns its replies (usually one).
pub fn execute(ctx: &mut Ctx<'_>, args: Vec<Bytes>, out: &mut Vec<Frame>) {
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

fn count_error(ctx: &Ctx<'_>, f: Frame) -> Frame {
    Metrics::inc(&ctx.shared.metrics.command_errors_total);
    f
}
