//! PFADD, PFCOUNT, PFMERGE, PFDEBUG and PFSELFTEST. A HyperLogLog is a
//! string in Redis 7.0's own encodings ([`meridian_crdt::hll`]), so GET,
//! DUMP and PFCOUNT read here what redis-server holds after the same
//! commands.
//!
//! PFADD and PFMERGE raise registers and write them as register patches
//! ([`meridian_crdt::patch`]): two regions adding to one key at the same
//! time count the union of what they added. Each write carries the whole
//! value too, as Redis would hold it after the command: computed from the
//! bytes this region sees, with the configured `hll-sparse-max-bytes`.
//! Sparse bytes depend on the order of edits, and the patched value reads
//! as the base with the patches raised in tag order, with the default
//! limit; when that would not read back as the whole value (a limit other
//! than the default, a register raised twice since the last whole write,
//! a concurrent value merged in), the whole value is written as well.
//!
//! PFCOUNT of one key keeps the cardinality it computed in the value's
//! cache, as Redis does: by a whole write of the same registers, made only
//! when the cache was stale. PFCOUNT is a read, so nothing checked it
//! against the write refusals before it ran; where this region may not
//! write now (a poisoned log, a shutdown, a keyspace policy refusing the
//! key), it answers without keeping the count.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use meridian_crdt::hll::{self, Corrupt, Encoding, Hll, REGISTERS, SPARSE_MAX_BYTES_DEFAULT};
use meridian_crdt::{Blob, Patch};
use meridian_resp::Frame;

use super::spec::{command, spec, Ctx, Spec, READ, WRITE};
use super::strings::read;
use super::util::{eq_ignore_case, lossy};
use crate::notify::{self, STRING};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("pfadd", -2, WRITE, (1, 1, 1), pfadd),
        spec("pfcount", -2, READ, (1, -1, 1), pfcount),
        spec("pfmerge", -2, WRITE, (1, -1, 1), pfmerge),
        command(
            "pfdebug",
            3,
            WRITE,
            (2, 2, 1),
            pfdebug,
            &["write", "denyoom", "admin"],
        ),
        command("pfselftest", 1, READ, (0, 0, 0), pfselftest, &["admin"]),
    ]
}

/// `hll-sparse-max-bytes` as CONFIG SET left it.
fn sparse_max_bytes(ctx: &Ctx<'_>) -> usize {
    ctx.shared
        .config_kept
        .lock()
        .get("hll-sparse-max-bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(SPARSE_MAX_BYTES_DEFAULT)
}

/// The HyperLogLog at `key` (None if there is no key), or the error Redis
/// gives for a key that holds something else.
fn load(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Hll>, Frame> {
    match read(ctx, key)? {
        None => Ok(None),
        Some(bytes) => Hll::parse(bytes)
            .map(Some)
            .map_err(|e| Frame::error(e.to_string())),
    }
}

fn corrupt() -> Frame {
    Frame::error(Corrupt.to_string())
}

/// Writes `hll` as the value of `key`: as `patches` when there are some
/// and the key then reads as `hll`, whole otherwise (see the module docs).
fn store(ctx: &mut Ctx<'_>, key: &[u8], patches: Vec<Patch>, hll: Hll) {
    let whole = hll.into_bytes();
    if !patches.is_empty() {
        ctx.db()
            .patch_string(key, patches, |_| Blob::from(whole.as_slice()));
        if read(ctx, key).is_ok_and(|now| now.as_deref() == Some(&whole[..])) {
            return;
        }
    }
    ctx.db().set_string(key, Blob::from(whole), true);
}

fn pfadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let (mut hll, created) = match load(ctx, key) {
        Err(e) => return e,
        Ok(Some(hll)) => (hll, false),
        Ok(None) => (Hll::new(), true),
    };
    let max_bytes = sparse_max_bytes(ctx);
    let mut patches = Vec::new();
    for element in &args[2..] {
        let (index, value) = hll::hash(element);
        match hll.set(usize::from(index), value, max_bytes) {
            Ok(true) => patches.push(Patch::Register { index, value }),
            Ok(false) => {}
            // Redis keeps what the elements before changed in memory but
            // neither replicates nor persists it; nothing is written here.
            Err(Corrupt) => return corrupt(),
        }
    }
    if !created && patches.is_empty() {
        return Frame::Integer(0);
    }
    hll.invalidate_cache();
    store(ctx, key, patches, hll);
    notify::emit(ctx, STRING, "pfadd", key);
    Frame::Integer(1)
}

fn pfcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len() > 2 {
        // The union of several keys, leaving their caches alone.
        let mut max = [0u8; REGISTERS];
        for key in &args[1..] {
            match load(ctx, key) {
                Err(e) => return e,
                Ok(None) => {}
                Ok(Some(hll)) => {
                    if hll.max_into(&mut max).is_err() {
                        return corrupt();
                    }
                }
            }
        }
        return Frame::Integer(hll::count_registers(&max) as i64);
    }
    let key = &args[1];
    let mut hll = match load(ctx, key) {
        Err(e) => return e,
        Ok(None) => return Frame::Integer(0),
        Ok(Some(hll)) => hll,
    };
    if let Some(count) = hll.cached_count() {
        return Frame::Integer(count as i64);
    }
    let Ok(count) = hll.count() else {
        return corrupt();
    };
    hll.set_cached_count(count);
    if may_keep_count(ctx, key) {
        ctx.db().set_string(key, Blob::from(hll.into_bytes()), true);
    }
    Frame::Integer(count as i64)
}

/// Whether PFCOUNT may write the count it computed into `key`'s cache.
fn may_keep_count(ctx: &Ctx<'_>, key: &[u8]) -> bool {
    !ctx.store.is_poisoned()
        && !ctx.shared.closing.load(Ordering::Acquire)
        && crate::guard::write_refusal(ctx, &[key]).is_none()
}

fn pfmerge(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    // Every key, the destination first, is a source, as in Redis.
    let mut max = [0u8; REGISTERS];
    let mut any_dense = false;
    let mut dest = None;
    for (i, key) in args[1..].iter().enumerate() {
        let hll = match load(ctx, key) {
            Err(e) => return e,
            Ok(None) => continue,
            Ok(Some(hll)) => hll,
        };
        any_dense |= hll.encoding() == Encoding::Dense;
        if hll.max_into(&mut max).is_err() {
            return corrupt();
        }
        if i == 0 {
            dest = Some(hll);
        }
    }
    // Redis 7.0 turns the destination dense when any input is dense, then
    // raises it register by register in index order.
    let mut dest = dest.unwrap_or_default();
    if any_dense && dest.to_dense().is_err() {
        return corrupt();
    }
    let max_bytes = sparse_max_bytes(ctx);
    let mut patches = Vec::new();
    for (index, &value) in (0u16..).zip(max.iter()) {
        if value == 0 {
            continue;
        }
        match dest.set(usize::from(index), value, max_bytes) {
            Ok(true) => patches.push(Patch::Register { index, value }),
            Ok(false) => {}
            Err(Corrupt) => return corrupt(),
        }
    }
    dest.invalidate_cache();
    store(ctx, &args[1], patches, dest);
    // Redis announces a merge as a PFADD.
    notify::emit(ctx, STRING, "pfadd", &args[1]);
    Frame::ok()
}

/// PFDEBUG GETREG | DECODE | ENCODING | TODENSE key. GETREG and TODENSE
/// turn a sparse value dense and write it, without an event, as Redis.
fn pfdebug(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (sub, key) = (&args[1], &args[2]);
    let mut hll = match load(ctx, key) {
        Err(e) => return e,
        Ok(None) => return Frame::error("ERR The specified key does not exist"),
        Ok(Some(hll)) => hll,
    };
    if eq_ignore_case(sub, "getreg") || eq_ignore_case(sub, "todense") {
        let converted = match hll.to_dense() {
            Ok(c) => c,
            Err(Corrupt) => return corrupt(),
        };
        if converted {
            ctx.db().set_string(key, Blob::from(hll.as_bytes()), true);
        }
        if eq_ignore_case(sub, "todense") {
            return Frame::Integer(i64::from(converted));
        }
        return match hll.registers() {
            Ok(regs) => Frame::Array(regs.iter().map(|&r| Frame::Integer(r.into())).collect()),
            Err(Corrupt) => corrupt(),
        };
    }
    if eq_ignore_case(sub, "decode") {
        return match hll.decode() {
            Some(text) => Frame::bulk(text),
            None => Frame::error("ERR HLL encoding is not sparse"),
        };
    }
    if eq_ignore_case(sub, "encoding") {
        return Frame::simple(hll.encoding().name());
    }
    Frame::error(format!("ERR Unknown PFDEBUG subcommand '{}'", lossy(sub)))
}

/// Redis's self test of the register layout and the estimator; the
/// random values it draws are seeded here, at the I/O edge.
fn pfselftest(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Frame {
    match hll::self_test(rand::random(), sparse_max_bytes(ctx)) {
        Ok(()) => Frame::ok(),
        Err(text) => Frame::error(text),
    }
}
