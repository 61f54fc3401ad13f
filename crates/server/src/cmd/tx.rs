//! MULTI / EXEC / DISCARD / WATCH / UNWATCH.
//!
//! EXEC runs the queued commands under the store lock the batch already
//! holds, so the block is atomic here, and everything it writes becomes one
//! op: the block replicates as one unit.

use bytes::Bytes;
use meridian_crdt::Blob;
use meridian_resp::Frame;

use super::spec::{lookup, spec, Ctx, Flags, Spec, READ};

const CONTROL: Flags = Flags {
    tx_control: true,
    ..READ
};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("multi", 1, CONTROL, (0, 0, 0), multi),
        spec("exec", 1, CONTROL, (0, 0, 0), exec),
        spec("discard", 1, CONTROL, (0, 0, 0), discard),
        spec("watch", -2, CONTROL, (1, -1, 1), watch),
        spec("unwatch", 1, CONTROL, (0, 0, 0), unwatch),
    ]
}

fn multi(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    if ctx.client.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested");
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_failed = false;
    Frame::ok()
}

fn discard(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    if ctx.client.multi.take().is_none() {
        return Frame::error("ERR DISCARD without MULTI");
    }
    ctx.client.multi_failed = false;
    unwatch_all(ctx);
    Frame::ok()
}

fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if ctx.client.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &args[1..] {
        if ctx.client.watched.iter().any(|(k, _)| k[..] == key[..]) {
            continue;
        }
        let version = ctx.db().watch(key);
        ctx.client.watched.push((Blob::from(&key[..]), version));
    }
    Frame::ok()
}

fn unwatch(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    unwatch_all(ctx);
    Frame::ok()
}

pub fn unwatch_all(ctx: &mut Ctx<'_>) {
    for (key, _) in std::mem::take(&mut ctx.client.watched) {
        ctx.db().unwatch(&key);
    }
}

fn exec(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let Some(queue) = ctx.client.multi.take() else {
        return Frame::error("ERR EXEC without MULTI");
    };
    if std::mem::take(&mut ctx.client.multi_failed) {
        unwatch_all(ctx);
        return Frame::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let watched = ctx.client.watched.clone();
    let touched = watched.iter().any(|(k, v)| ctx.db().watch_version(k) != *v);
    unwatch_all(ctx);
    if touched {
        return Frame::NullArray;
    }
    let mut replies = Vec::with_capacity(queue.len());
    ctx.client.in_exec = true;
    for args in queue {
        let Some(spec) = lookup(ctx.table, &args[0]) else {
            replies.push(super::spec::unknown_command(&args));
            continue;
        };
        if let Some(refusal) = crate::guard::permission_refusal(ctx, spec, &args) {
            replies.push(refusal);
            continue;
        }
        if spec.flags.write && ctx.store.is_poisoned() {
            replies.push(crate::commit::poisoned_error());
            continue;
        }
        if let Some(refusal) = crate::guard::policy_refusal(ctx, spec, &args) {
            replies.push(refusal);
            continue;
        }
        let reply = (spec.handler)(ctx, &args);
        crate::monitor::feed(ctx.shared, ctx.client, spec, &args);
        crate::tracking::track_reads(ctx, spec, &args, &reply);
        crate::notify::key_misses(ctx, spec, &args);
        replies.push(reply);
    }
    ctx.client.in_exec = false;
    Frame::Array(replies)
}
