//! Running one command: the checks Redis makes before a handler runs, in
//! Redis's order (the ACL and policy checks themselves live in
//! [`crate::guard`], which EXEC runs again for each queued command), then
//! the handler and CLIENT REPLY. Committing what a batch built is
//! [`crate::commit`]'s.

use bytes::Bytes;
use meridian_resp::Frame;

use crate::client::Client;
use crate::cmd::spec::Ctx;
use crate::cmd::{self, util::arity_error};
use crate::commit::poisoned_error;
use crate::guard::{permission_refusal, policy_refusal};
use crate::metrics::Metrics;

/// Executes one command and appends its replies (usually one) to `out`,
/// unless CLIENT REPLY says to drop them.
pub fn execute(ctx: &mut Ctx<'_>, args: Vec<Bytes>, out: &mut Vec<Frame>) {
    let first = out.len();
    run(ctx, args, out);
    apply_reply_mode(ctx.client, out, first);
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
