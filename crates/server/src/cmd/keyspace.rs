//! Commands over the one database: SELECT, SWAPDB, DBSIZE, FLUSHDB and
//! FLUSHALL.
//!
//! Meridian has one database, so SELECT 0 works and other indexes are
//! refused as Redis refuses an index out of range. FLUSHDB and FLUSHALL
//! delete every visible key the way DEL does: only what this region has
//! observed, so a concurrent write elsewhere survives.

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{command, Ctx, Spec, READ, WRITE};
use super::util::{db_index, eq_ignore_case, syntax_error};

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("select", 2, READ, NONE, select, &["fast"]),
        command("swapdb", 3, WRITE, NONE, swapdb, &["write", "fast"]),
        command("dbsize", 1, READ, NONE, dbsize, &["readonly", "fast"]),
        command("flushdb", -1, WRITE, NONE, flush, &["write"]),
        command("flushall", -1, WRITE, NONE, flush, &["write"]),
    ]
}

/// There is one database, 0, as in Redis with `databases 1`.
fn select(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match db_index(&args[1]) {
        Ok(0) => Frame::ok(),
        Ok(_) => Frame::error("ERR DB index is out of range"),
        Err(e) => e,
    }
}

fn swapdb(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Ok(a) = db_index(&args[1]) else {
        return Frame::error("ERR invalid first DB index");
    };
    let Ok(b) = db_index(&args[2]) else {
        return Frame::error("ERR invalid second DB index");
    };
    if a == 0 && b == 0 {
        Frame::ok()
    } else {
        Frame::error("ERR DB index is out of range")
    }
}

fn dbsize(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    Frame::Integer(super::keys::dbsize(ctx) as i64)
}

/// FLUSHDB and FLUSHALL: a DEL of every visible key. ASYNC and SYNC are
/// accepted; the deletes are applied before the reply either way.
/// Tracking clients are told every key is invalid.
fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mode_ok = match args.len() {
        1 => true,
        2 => eq_ignore_case(&args[1], "sync") || eq_ignore_case(&args[1], "async"),
        _ => false,
    };
    if !mode_ok {
        return syntax_error();
    }
    let keys: Vec<_> = ctx.db().keyspace().iter().map(|(k, _)| k.clone()).collect();
    for key in keys {
        ctx.db().del(&key);
    }
    crate::tracking::flushed(ctx.shared, ctx.store, ctx.client.id);
    Frame::ok()
}
