//! Persistence commands: LASTSAVE, SAVE, BGSAVE and SHUTDOWN.
//!
//! SAVE and BGSAVE write a snapshot (which also compacts the op log); the op
//! log itself plays the part of Redis's AOF.

use bytes::Bytes;
use meridian_resp::Frame;

use super::info::last_save_secs;
use super::spec::{command, Ctx, Spec, NO_REPLY, READ};
use super::util::{eq_ignore_case, syntax_error};

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("lastsave", 1, READ, NONE, lastsave, &["fast"]),
        command("save", 1, READ, NONE, save, &["admin"]),
        command("bgsave", -1, READ, NONE, bgsave, &["admin"]),
        command("shutdown", -1, NO_REPLY, NONE, shutdown, &["admin"]),
    ]
}

fn lastsave(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    Frame::Integer(last_save_secs(ctx) as i64)
}

fn save(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    match crate::snapshot::in_batch(ctx.store, ctx.shared) {
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
    match crate::snapshot::in_batch(ctx.store, ctx.shared) {
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
    if save && crate::snapshot::in_batch(ctx.store, ctx.shared).is_err() && !force {
        return Frame::error("ERR Errors trying to SHUTDOWN. Check logs.");
    }
    tracing::info!(client = ctx.client.id, addr = %ctx.client.addr, "SHUTDOWN requested by a client");
    ctx.shared.shutdown.notify_one();
    ctx.client.close = true;
    Frame::Array(Vec::new())
}
