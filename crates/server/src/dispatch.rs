//! Running one command: the checks Redis makes before a handler runs, in
//! Redis's order, and committing the op the command produced.

use bytes::Bytes;
use meridian_resp::Frame;

use crate::cmd::{self, util::arity_error, Ctx};
use crate::metrics::Metrics;

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
    {
        let mut per = ctx.shared.metrics.per_command.lock();
        *per.entry(spec.name).or_insert(0) += 1;
    }
    if spec.flags.write && ctx.store.is_poisoned() {
        out.push(count_error(ctx, poisoned_error()));
        return;
    }
    let reply = (spec.handler)(ctx, &args);
    commit(ctx, reply, spec.flags.multi_reply, out);
}

/// Commits the op a command (or an EXEC block) built; a failed append turns
/// the reply into an error, since the write is not durable.
pub fn commit(ctx: &mut Ctx<'_>, reply: Frame, multi_reply: bool, out: &mut Vec<Frame>) {
    match ctx.store.commit() {
        Ok(Some(_)) => Metrics::inc(&ctx.shared.metrics.ops_committed_total),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "appending to the op log failed; writes are refused from now on");
            *ctx.shared.readiness.lock() = crate::shared::Readiness::Poisoned(e.to_string());
            out.push(count_error(ctx, poisoned_error()));
            return;
        }
    }
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
