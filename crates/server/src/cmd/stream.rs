//! Stream commands without consumer groups: XADD, XRANGE, XREVRANGE,
//! XLEN, XDEL, XTRIM, XREAD, XSETID, XINFO (groups are in
//! [`super::stream_group`]).
//!
//! A stream is a CRDT (`meridian_crdt::stream`): entries from every region
//! are kept in one ID order everywhere, XDEL and trims remove only what
//! their writer observed (a trim replicates as the IDs it removed, so an
//! entry added elsewhere meanwhile survives it). Auto-generated IDs follow
//! Redis exactly while the region is the only member of its cluster; with
//! peers, an ID's sequence number carries the region's slot in its low
//! bits, so regions adding in the same millisecond never take the same ID
//! (`meridian_store::db::auto_id`). An explicit ID is accepted as Redis
//! accepts it, above the last ID as this region holds it: one below the
//! latest entry of a peer not seen here yet lands in ID order among the
//! others, and two regions adding the same explicit ID at once keep both,
//! the larger tag shown and the other journaled.
//!
//! XREAD BLOCK waits through [`crate::blocking`] like BLPOP; `$` is
//! resolved to the last ID when the command first blocks, so an entry any
//! region adds later wakes it.

use bytes::Bytes;
use meridian_crdt::{Blob, FieldsRef, NodeLimits, StreamId, StreamVal};
use meridian_resp::{Frame, Protocol};
use meridian_store::db::{auto_id, auto_seq, Trim, TrimTo};

use super::spec::{command, spec, Ctx, Spec, READ, WRITE};
use super::util::{arity_error, bulk, eq_ignore_case, lossy, parse_int, syntax_error, wrongtype};
use crate::blocking;
use crate::notify::{self, STREAM};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("xadd", -5, WRITE, (1, 1, 1), xadd),
        spec("xrange", -4, READ, (1, 1, 1), xrange),
        spec("xrevrange", -4, READ, (1, 1, 1), xrevrange),
        spec("xlen", 2, READ, (1, 1, 1), xlen),
        spec("xdel", -3, WRITE, (1, 1, 1), xdel),
        spec("xtrim", -4, WRITE, (1, 1, 1), xtrim),
        spec("xread", -4, READ, (0, 0, 0), xread),
        spec("xsetid", -3, WRITE, (1, 1, 1), xsetid),
        command("xinfo", -2, READ, (0, 0, 0), xinfo, &[]),
    ]
}

/// XINFO's subcommands and their arities.
pub const XINFO_SUBCOMMANDS: &[(&str, i32)] =
    &[("consumers", 4), ("groups", 3), ("help", 2), ("stream", -3)];

pub(super) const ERR_INVALID_ID: &str =
    "ERR Invalid stream ID specified as stream command argument";

pub(super) fn invalid_id() -> Frame {
    Frame::error(ERR_INVALID_ID)
}

// ----- IDs -----

/// C's `isspace`, which `strtoull` skips before a number.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Redis's `string2ull`: a strict 64-bit integer when it is one (a
/// negative one is refused), else what `strtoull` reads of the whole text
/// (leading blanks and a sign allowed, a `-` wrapping around as in C).
fn string2ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = meridian_resp::parse_redis_int(s) {
        return u64::try_from(v).ok();
    }
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits = &s[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

/// Redis's `streamGenericParseIDOrReply`: `ms-seq`, `ms` (the sequence
/// number taken as `missing_seq`), and unless `strict` `-` and `+`. With
/// `star`, `ms-*` is accepted too and `false` returned for it (the
/// sequence number is to be generated). The text is read as C reads it,
/// up to its first NUL.
fn parse_id_with(
    arg: &[u8],
    missing_seq: u64,
    strict: bool,
    star: bool,
) -> Result<(StreamId, bool), Frame> {
    if arg.len() > 127 {
        return Err(invalid_id());
    }
    let text = match arg.iter().position(|&b| b == 0) {
        Some(nul) => &arg[..nul],
        None => arg,
    };
    if strict && (text == b"-" || text == b"+") {
        return Err(invalid_id());
    }
    if text == b"-" {
        return Ok((StreamId::ZERO, true));
    }
    if text == b"+" {
        return Ok((StreamId::MAX, true));
    }
    let (ms, seq) = match text.iter().position(|&b| b == b'-') {
        Some(dash) => (&text[..dash], Some(&text[dash + 1..])),
        None => (text, None),
    };
    let ms = string2ull(ms).ok_or_else(invalid_id)?;
    match seq {
        Some(b"*") if star => Ok((StreamId::new(ms, 0), false)),
        Some(seq) => Ok((
            StreamId::new(ms, string2ull(seq).ok_or_else(invalid_id)?),
            true,
        )),
        None => Ok((StreamId::new(ms, missing_seq), true)),
    }
}

/// An ID where `-` and `+` are refused.
pub(super) fn parse_strict_id(arg: &[u8]) -> Result<StreamId, Frame> {
    parse_id_with(arg, 0, true, false).map(|(id, _)| id)
}

/// An ID where `-` and `+` mean the smallest and largest.
pub(super) fn parse_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, Frame> {
    parse_id_with(arg, missing_seq, false, false).map(|(id, _)| id)
}

/// One end of a range: `(` before an ID makes it exclusive (and strict).
fn parse_interval(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Frame> {
    if arg.len() > 1 && arg[0] == b'(' {
        let id = parse_id_with(&arg[1..], missing_seq, true, false)?.0;
        Ok((id, true))
    } else {
        Ok((parse_id(arg, missing_seq)?, false))
    }
}

/// A range's start: inclusive, or the ID after an exclusive one.
pub(super) fn range_start(arg: &[u8]) -> Result<StreamId, Frame> {
    match parse_interval(arg, 0)? {
        (id, false) => Ok(id),
        (id, true) => id
            .next()
            .ok_or_else(|| Frame::error("ERR invalid start ID for the interval")),
    }
}

/// A range's end: inclusive, or the ID before an exclusive one.
pub(super) fn range_end(arg: &[u8]) -> Result<StreamId, Frame> {
    match parse_interval(arg, u64::MAX)? {
        (id, false) => Ok(id),
        (id, true) => id
            .prev()
            .ok_or_else(|| Frame::error("ERR invalid end ID for the interval")),
    }
}

/// `ms-seq`, written by hand: every XADD answers one, and going through
/// `fmt` cost as much as appending the entry.
pub(super) fn id_frame(id: StreamId) -> Frame {
    fn digits(out: &mut Vec<u8>, mut n: u64) {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&buf[at..]);
    }
    let mut out = Vec::with_capacity(41);
    digits(&mut out, id.ms);
    out.push(b'-');
    digits(&mut out, id.seq);
    Frame::bulk(out)
}

/// `[id, [field, value, ...]]`.
pub(super) fn entry_frame(id: StreamId, fields: FieldsRef<'_>) -> Frame {
    Frame::Array(vec![id_frame(id), super::util::bulk_array(fields.iter())])
}

/// The stream at `key`, `Ok(None)` if absent, WRONGTYPE for another type.
pub(super) fn read<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c StreamVal>, Frame> {
    ctx.db().stream(key).map_err(|_| wrongtype())
}

/// `stream-node-max-entries` and `stream-node-max-bytes` as CONFIG SET
/// left them.
pub(super) fn node_limits(ctx: &Ctx<'_>) -> NodeLimits {
    let kept = ctx.shared.config_kept.lock();
    let get = |name: &str, default: u64| {
        kept.get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let d = NodeLimits::default();
    NodeLimits {
        entries: get("stream-node-max-entries", d.entries),
        bytes: get("stream-node-max-bytes", d.bytes),
    }
}

// ----- XADD and XTRIM -----

/// What Redis's `streamParseAddOrTrimArgsOrReply` reads.
struct AddTrimArgs {
    /// `None`: `*`; else the ID and whether its sequence number was given.
    id: Option<(StreamId, bool)>,
    no_mkstream: bool,
    trim: Option<Trim>,
    /// Where the ID is (XADD's fields follow it).
    id_at: usize,
}

fn parse_add_trim(args: &[Bytes], xadd: bool, node_entries: u64) -> Result<AddTrimArgs, Frame> {
    let mut out = AddTrimArgs {
        id: None,
        no_mkstream: false,
        trim: None,
        id_at: args.len(),
    };
    let mut to: Option<TrimTo> = None;
    let mut approx = false;
    let mut limit: i64 = 0;
    let mut limit_given = false;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if xadd && opt.as_ref() == b"*" {
            break;
        } else if (eq_ignore_case(opt, "maxlen") || eq_ignore_case(opt, "minid")) && more > 0 {
            if to.is_some() {
                return Err(Frame::error(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            approx = false;
            let next = &args[i + 1];
            if more >= 2 && next.as_ref() == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && next.as_ref() == b"=" {
                i += 1;
            }
            if eq_ignore_case(opt, "maxlen") {
                let n = parse_int(&args[i + 1])?;
                if n < 0 {
                    return Err(Frame::error("ERR The MAXLEN argument must be >= 0."));
                }
                to = Some(TrimTo::MaxLen(n as u64));
            } else {
                to = Some(TrimTo::MinId(parse_strict_id(&args[i + 1])?));
            }
            i += 1;
        } else if eq_ignore_case(opt, "limit") && more > 0 {
            limit = parse_int(&args[i + 1])?;
            if limit < 0 {
                return Err(Frame::error("ERR The LIMIT argument must be >= 0."));
            }
            limit_given = true;
            i += 1;
        } else if xadd && eq_ignore_case(opt, "nomkstream") {
            out.no_mkstream = true;
        } else if xadd {
            out.id = Some(parse_id_with(opt, 0, true, true)?);
            break;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    out.id_at = i;
    if limit != 0 && to.is_none() {
        return Err(Frame::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    let Some(to) = to else {
        if !xadd {
            return Err(Frame::error(
                "ERR syntax error, XTRIM must be called with a trimming strategy",
            ));
        }
        return Ok(out);
    };
    let limit = if limit_given {
        if !approx {
            return Err(Frame::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        limit as u64
    } else if approx {
        // Redis bounds an approximate trim's work to 100 nodes.
        let n = node_entries.saturating_mul(100);
        if n == 0 {
            10_000
        } else {
            n.min(1_000_000)
        }
    } else {
        0
    };
    out.trim = Some(Trim { to, approx, limit });
    Ok(out)
}

/// `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]]
/// *|id field value [field value ...]`.
fn xadd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let limits = node_limits(ctx);
    let parsed = match parse_add_trim(args, true, limits.entries) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let fields_at = parsed.id_at + 1;
    let n_fields = args.len().saturating_sub(fields_at);
    if fields_at > args.len() || n_fields < 2 || n_fields % 2 == 1 {
        return arity_error("xadd");
    }
    if let Some((id, true)) = parsed.id {
        if id.is_zero() {
            return Frame::error("ERR The ID specified in XADD must be greater than 0-0");
        }
    }
    let key = &args[1];
    let last = match read(ctx, key) {
        Ok(Some(s)) => s.last_id(),
        Ok(None) if parsed.no_mkstream => return Frame::Null,
        Ok(None) => StreamId::ZERO,
        Err(e) => return e,
    };
    if last == StreamId::MAX {
        return Frame::error(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        );
    }
    let slot = ctx.shared.host.members.stream_slot();
    let now_ms = ctx.db().now_ms();
    let id = match parsed.id {
        None => auto_id(last, now_ms, slot),
        Some((id, true)) => Some(id),
        Some((id, false)) => auto_seq(last, id.ms, slot),
    };
    let Some(id) = id else {
        // Redis's `errno` is left from elsewhere on this path.
        return Frame::error("ERR Elements are too large to be stored");
    };
    if id <= last {
        return Frame::error(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        );
    }
    let total: u64 = args[fields_at..].iter().map(|a| a.len() as u64).sum();
    if total > 1 << 30 {
        return Frame::error("ERR Elements are too large to be stored");
    }
    let fields: Vec<Blob> = args[fields_at..]
        .iter()
        .map(|a| Blob::from(&a[..]))
        .collect();
    ctx.db().xadd(key, id, fields, limits);
    notify::emit(ctx, STREAM, "xadd", key);
    if let Some(trim) = parsed.trim {
        if ctx.db().xtrim(key, trim) > 0 {
            notify::emit(ctx, STREAM, "xtrim", key);
        }
    }
    id_frame(id)
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]`.
fn xtrim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let limits = node_limits(ctx);
    let parsed = match parse_add_trim(args, false, limits.entries) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let key = &args[1];
    match read(ctx, key) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let Some(trim) = parsed.trim else {
        return Frame::Integer(0);
    };
    let removed = ctx.db().xtrim(key, trim);
    if removed > 0 {
        notify::emit(ctx, STREAM, "xtrim", key);
    }
    Frame::Integer(removed as i64)
}

// ----- reading -----

fn xrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range(ctx, args, false)
}

fn xrevrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    range(ctx, args, true)
}

/// XRANGE and XREVRANGE (whose arguments come end first).
fn range(ctx: &mut Ctx<'_>, args: &[Bytes], rev: bool) -> Frame {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = match range_start(start_arg) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let end = match range_end(end_arg) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut count: i64 = -1;
    let mut j = 4;
    while j < args.len() {
        if eq_ignore_case(&args[j], "count") && j + 1 < args.len() {
            count = match parse_int(&args[j + 1]) {
                Ok(n) => n.max(0),
                Err(e) => return e,
            };
            j += 2;
        } else {
            return syntax_error();
        }
    }
    let s = match read(ctx, &args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(e) => return e,
    };
    if count == 0 {
        return Frame::NullArray;
    }
    let take = if count < 0 {
        usize::MAX
    } else {
        count as usize
    };
    let entries = s.range(start, end);
    let items: Vec<Frame> = if rev {
        entries
            .rev()
            .take(take)
            .map(|(id, f)| entry_frame(id, f))
            .collect()
    } else {
        entries
            .take(take)
            .map(|(id, f)| entry_frame(id, f))
            .collect()
    };
    Frame::Array(items)
}

fn xlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match read(ctx, &args[1]) {
        Ok(Some(s)) => Frame::Integer(s.len() as i64),
        Ok(None) => Frame::Integer(0),
        Err(e) => e,
    }
}

fn xdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    match read(ctx, key) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let mut ids = Vec::with_capacity(args.len() - 2);
    for a in &args[2..] {
        match parse_strict_id(a) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    let deleted = ctx.db().xdel(key, &ids);
    if deleted > 0 {
        notify::emit(ctx, STREAM, "xdel", key);
    }
    Frame::Integer(deleted as i64)
}

/// `XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]`.
fn xsetid(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let id = match parse_strict_id(&args[2]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut added: Option<u64> = None;
    let mut max_deleted = StreamId::ZERO;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if eq_ignore_case(&args[i], "entriesadded") && more > 0 {
            match parse_int(&args[i + 1]) {
                Ok(n) if n < 0 => return Frame::error("ERR entries_added must be positive"),
                Ok(n) => added = Some(n as u64),
                Err(e) => return e,
            }
            i += 2;
        } else if eq_ignore_case(&args[i], "maxdeletedid") && more > 0 {
            max_deleted = match parse_strict_id(&args[i + 1]) {
                Ok(m) => m,
                Err(e) => return e,
            };
            if id < max_deleted {
                return Frame::error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                );
            }
            i += 2;
        } else {
            return syntax_error();
        }
    }
    let key = &args[1];
    let (len, top) = match read(ctx, key) {
        Ok(Some(s)) => (s.len() as u64, s.last_entry_id()),
        Ok(None) => return Frame::error("ERR no such key"),
        Err(e) => return e,
    };
    if let Some(top) = top {
        if id < top {
            return Frame::error(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            );
        }
        if added.is_some_and(|n| len > n) {
            return Frame::error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            );
        }
    }
    let max_deleted = (!max_deleted.is_zero()).then_some(max_deleted);
    ctx.db().xsetid(key, id, added, max_deleted);
    notify::emit(ctx, STREAM, "xsetid", key);
    Frame::ok()
}

// ----- XREAD (and XREADGROUP's arguments) -----

/// How many entries a blocked XREAD or XREADGROUP without COUNT gets.
pub(super) const BLOCKED_COUNT_DEFAULT: usize = 1000;

/// What XREAD and XREADGROUP read of their arguments.
pub(super) struct ReadArgs<'a> {
    /// `None`: no BLOCK; `Some(None)`: block for ever.
    pub block: Option<Option<std::time::Duration>>,
    /// 0: no limit.
    pub count: usize,
    pub group: Option<(&'a Bytes, &'a Bytes)>,
    pub noack: bool,
    pub keys: &'a [Bytes],
    pub ids: &'a [Bytes],
    /// Where the keys start.
    pub streams_at: usize,
}

/// Redis's `xreadCommand` argument loop, for XREAD (`group` false) and
/// XREADGROUP.
pub(super) fn parse_read<'a>(
    ctx: &Ctx<'_>,
    args: &'a [Bytes],
    group: bool,
) -> Result<ReadArgs<'a>, Frame> {
    let mut out = ReadArgs {
        block: None,
        count: 0,
        group: None,
        noack: false,
        keys: &[],
        ids: &[],
        streams_at: 0,
    };
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let o = &args[i];
        if eq_ignore_case(o, "block") && more > 0 {
            if ctx.client.in_script {
                return Err(Frame::error(format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    lossy(&args[0])
                )));
            }
            i += 1;
            let ms = parse_int(&args[i])
                .map_err(|_| Frame::error("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(Frame::error("ERR timeout is negative"));
            }
            out.block = Some((ms > 0).then(|| std::time::Duration::from_millis(ms as u64)));
        } else if eq_ignore_case(o, "count") && more > 0 {
            i += 1;
            out.count = parse_int(&args[i])?.max(0) as usize;
        } else if eq_ignore_case(o, "streams") && more > 0 {
            let rest = &args[i + 1..];
            if !rest.len().is_multiple_of(2) {
                return Err(Frame::error(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            let half = rest.len() / 2;
            out.keys = &rest[..half];
            out.ids = &rest[half..];
            out.streams_at = i + 1;
            break;
        } else if eq_ignore_case(o, "group") && more >= 2 {
            if !group {
                return Err(Frame::error(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            out.group = Some((&args[i + 1], &args[i + 2]));
            i += 2;
        } else if eq_ignore_case(o, "noack") {
            if !group {
                return Err(Frame::error(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            out.noack = true;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    if out.streams_at == 0 {
        return Err(syntax_error());
    }
    if group && out.group.is_none() {
        return Err(Frame::error("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(out)
}

/// The reply of XREAD and XREADGROUP: per stream served, its key and
/// entries (a map in RESP3).
pub(super) fn read_reply(proto: Protocol, served: Vec<(Bytes, Vec<Frame>)>) -> Frame {
    match proto {
        Protocol::Resp3 => Frame::Map(
            served
                .into_iter()
                .map(|(k, e)| (Frame::Bulk(k), Frame::Array(e)))
                .collect(),
        ),
        Protocol::Resp2 => Frame::Array(
            served
                .into_iter()
                .map(|(k, e)| Frame::Array(vec![Frame::Bulk(k), Frame::Array(e)]))
                .collect(),
        ),
    }
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS key... id...`.
fn xread(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let a = match parse_read(ctx, args, false) {
        Ok(a) => a,
        Err(e) => return e,
    };
    // Once blocked, a key that became another type is passed over: Redis
    // serves a blocked client only from the type it waits for.
    let retrying = ctx.client.block.is_some();
    let mut after = Vec::with_capacity(a.keys.len());
    let mut resolved = args.to_vec();
    for (j, (key, id)) in a.keys.iter().zip(a.ids).enumerate() {
        let s = match read(ctx, key) {
            Ok(s) => s,
            Err(_) if retrying => None,
            Err(e) => return e,
        };
        if id.as_ref() == b"$" {
            let last = s.map_or(StreamId::ZERO, |s| s.last_id());
            after.push(last);
            resolved[a.streams_at + a.keys.len() + j] = Bytes::from(last.to_string());
            continue;
        }
        if id.as_ref() == b">" {
            return Frame::error(
                "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
            );
        }
        match parse_strict_id(id) {
            Ok(id) => after.push(id),
            Err(e) => return e,
        }
    }
    let count = match a.count {
        0 if retrying => BLOCKED_COUNT_DEFAULT,
        0 => usize::MAX,
        n => n,
    };
    let mut served = Vec::new();
    for (key, gt) in a.keys.iter().zip(&after) {
        let Ok(Some(s)) = read(ctx, key) else {
            continue;
        };
        if s.last_entry_id().is_none_or(|top| top <= *gt) {
            continue;
        }
        let Some(start) = gt.next() else {
            continue;
        };
        let entries: Vec<Frame> = s
            .range(start, StreamId::MAX)
            .take(count)
            .map(|(id, f)| entry_frame(id, f))
            .collect();
        served.push((key.clone(), entries));
    }
    if !served.is_empty() {
        return read_reply(ctx.proto(), served);
    }
    match a.block {
        Some(timeout) => blocking::block_as(ctx, a.keys, timeout, Frame::NullArray, resolved),
        None => Frame::NullArray,
    }
}

// ----- XINFO -----

const XINFO_HELP: &[&str] = &[
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
];

fn subcommand_syntax_error(args: &[Bytes]) -> Frame {
    let shown = &args[1][..args[1].len().min(128)];
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        lossy(shown),
        lossy(&args[0]).to_ascii_uppercase()
    ))
}

pub(super) fn nogroup_for_key(group: &[u8], key: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        lossy(group),
        lossy(key)
    ))
}

fn xinfo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if eq_ignore_case(&args[1], "help") {
        return super::util::help_reply(&args[0], XINFO_HELP);
    }
    let key = &args[2];
    let now_ms = ctx.db().now_ms();
    let s = match read(ctx, key) {
        Ok(Some(s)) => s,
        Ok(None) => return Frame::error("ERR no such key"),
        Err(e) => return e,
    };
    if eq_ignore_case(&args[1], "consumers") {
        let Some(g) = s.group(&args[3]) else {
            return nogroup_for_key(&args[3], key);
        };
        let items = g
            .consumers()
            .map(|(name, seen)| {
                let idle = now_ms.saturating_sub(seen);
                Frame::Map(vec![
                    (Frame::bulk("name"), bulk(name)),
                    (
                        Frame::bulk("pending"),
                        Frame::Integer(g.pending_of(name) as i64),
                    ),
                    (Frame::bulk("idle"), Frame::Integer(idle as i64)),
                ])
            })
            .collect();
        return Frame::Array(items);
    }
    if eq_ignore_case(&args[1], "groups") {
        let items = s
            .groups()
            .map(|(name, g)| {
                let (last, read) = g.last_delivered();
                Frame::Map(vec![
                    (Frame::bulk("name"), bulk(name)),
                    (
                        Frame::bulk("consumers"),
                        Frame::Integer(g.consumers().count() as i64),
                    ),
                    (
                        Frame::bulk("pending"),
                        Frame::Integer(g.pending_len() as i64),
                    ),
                    (Frame::bulk("last-delivered-id"), id_frame(last)),
                    (Frame::bulk("entries-read"), read_frame(read)),
                    (Frame::bulk("lag"), lag_frame(s, last, read)),
                ])
            })
            .collect();
        return Frame::Array(items);
    }
    // STREAM [FULL [COUNT n]]
    let opts = &args[3..];
    let full = !opts.is_empty();
    let mut count: i64 = 10;
    if full {
        if (opts.len() != 1 && opts.len() != 3) || !eq_ignore_case(&opts[0], "full") {
            return subcommand_syntax_error(args);
        }
        if opts.len() == 3 {
            if !eq_ignore_case(&opts[1], "count") {
                return subcommand_syntax_error(args);
            }
            count = match parse_int(&opts[2]) {
                Ok(n) if n < 0 => 10,
                Ok(n) => n,
                Err(e) => return e,
            };
        }
    }
    let limit = if count == 0 {
        usize::MAX
    } else {
        count as usize
    };
    let mut map = vec![
        (Frame::bulk("length"), Frame::Integer(s.len() as i64)),
        (
            Frame::bulk("radix-tree-keys"),
            Frame::Integer(s.nodes().count() as i64),
        ),
        (
            Frame::bulk("radix-tree-nodes"),
            Frame::Integer(s.radix_nodes() as i64),
        ),
        (Frame::bulk("last-generated-id"), id_frame(s.last_id())),
        (
            Frame::bulk("max-deleted-entry-id"),
            id_frame(s.max_deleted()),
        ),
        (
            Frame::bulk("entries-added"),
            Frame::Integer(s.entries_added() as i64),
        ),
        (
            Frame::bulk("recorded-first-entry-id"),
            id_frame(s.first_id()),
        ),
    ];
    if !full {
        let all = || s.range(StreamId::ZERO, StreamId::MAX);
        map.push((
            Frame::bulk("groups"),
            Frame::Integer(s.groups().count() as i64),
        ));
        map.push((
            Frame::bulk("first-entry"),
            all()
                .next()
                .map_or(Frame::Null, |(id, f)| entry_frame(id, f)),
        ));
        map.push((
            Frame::bulk("last-entry"),
            all()
                .next_back()
                .map_or(Frame::Null, |(id, f)| entry_frame(id, f)),
        ));
        return Frame::Map(map);
    }
    let entries = s
        .range(StreamId::ZERO, StreamId::MAX)
        .take(limit)
        .map(|(id, f)| entry_frame(id, f))
        .collect();
    map.push((Frame::bulk("entries"), Frame::Array(entries)));
    let groups = s
        .groups()
        .map(|(name, g)| {
            let (last, read) = g.last_delivered();
            let pending = g
                .pending()
                .take(limit)
                .map(|(id, n)| {
                    Frame::Array(vec![
                        id_frame(id),
                        bulk(&n.consumer),
                        Frame::Integer(n.delivered_ms as i64),
                        Frame::Integer(n.count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers()
                .map(|(c, seen)| {
                    let own = g
                        .pending()
                        .filter(|(_, n)| n.consumer == *c)
                        .take(limit)
                        .map(|(id, n)| {
                            Frame::Array(vec![
                                id_frame(id),
                                Frame::Integer(n.delivered_ms as i64),
                                Frame::Integer(n.count as i64),
                            ])
                        })
                        .collect();
                    Frame::Map(vec![
                        (Frame::bulk("name"), bulk(c)),
                        (Frame::bulk("seen-time"), Frame::Integer(seen as i64)),
                        (
                            Frame::bulk("pel-count"),
                            Frame::Integer(g.pending_of(c) as i64),
                        ),
                        (Frame::bulk("pending"), Frame::Array(own)),
                    ])
                })
                .collect();
            Frame::Map(vec![
                (Frame::bulk("name"), bulk(name)),
                (Frame::bulk("last-delivered-id"), id_frame(last)),
                (Frame::bulk("entries-read"), read_frame(read)),
                (Frame::bulk("lag"), lag_frame(s, last, read)),
                (
                    Frame::bulk("pel-count"),
                    Frame::Integer(g.pending_len() as i64),
                ),
                (Frame::bulk("pending"), Frame::Array(pending)),
                (Frame::bulk("consumers"), Frame::Array(consumers)),
            ])
        })
        .collect();
    map.push((Frame::bulk("groups"), Frame::Array(groups)));
    Frame::Map(map)
}

fn read_frame(read: Option<u64>) -> Frame {
    read.map_or(Frame::Null, |n| Frame::Integer(n as i64))
}

// ----- group read counters (Redis 7's lag) -----

/// Whether the part of the stream from `start` on may hold a deleted
/// entry (Redis's `streamRangeHasTombstones` with no end).
pub(super) fn has_tombstones_from(s: &StreamVal, start: StreamId) -> bool {
    let max_deleted = s.max_deleted();
    if s.is_empty() || max_deleted.is_zero() {
        return false;
    }
    if s.first_id() > max_deleted {
        return false;
    }
    start <= max_deleted
}

/// The logical read counter of `id` (Redis's
/// `streamEstimateDistanceFromFirstEverEntry`): `None` when it cannot
/// be known.
pub(super) fn distance_from_first(s: &StreamVal, id: StreamId) -> Option<u64> {
    let added = s.entries_added();
    if added == 0 {
        return Some(0);
    }
    let last = s.last_id();
    let len = s.len() as u64;
    if len == 0 && id <= last {
        return Some(added);
    }
    if id == last {
        return Some(added);
    }
    if id > last {
        return None;
    }
    let first = s.first_id();
    let max_deleted = s.max_deleted();
    if max_deleted.is_zero() || max_deleted < first {
        if id < first {
            return Some(added.saturating_sub(len));
        }
        if id == first {
            return Some(added.saturating_sub(len) + 1);
        }
    }
    None
}

/// A group's lag (Redis's `streamReplyWithCGLag`), null when unknown.
fn lag_frame(s: &StreamVal, last: StreamId, read: Option<u64>) -> Frame {
    let added = s.entries_added();
    if added == 0 {
        return Frame::Integer(0);
    }
    if let Some(read) = read {
        if !has_tombstones_from(s, last) {
            return Frame::Integer(added as i64 - read as i64);
        }
    }
    match distance_from_first(s, last) {
        Some(read) => Frame::Integer(added as i64 - read as i64),
        None => Frame::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis_parses_them() {
        let id = |s: &str| parse_id(s.as_bytes(), 0).ok();
        assert_eq!(id("5-3"), Some(StreamId::new(5, 3)));
        assert_eq!(id("5"), Some(StreamId::new(5, 0)));
        assert_eq!(id("+5"), Some(StreamId::new(5, 0)));
        assert_eq!(id(" 6-1"), Some(StreamId::new(6, 1)));
        assert_eq!(id("-0"), None);
        assert_eq!(id("1-2-3"), None);
        assert_eq!(id("-"), Some(StreamId::ZERO));
        assert_eq!(id("+"), Some(StreamId::MAX));
        assert_eq!(
            id("18446744073709551615-18446744073709551615"),
            Some(StreamId::MAX)
        );
        assert_eq!(id("18446744073709551616"), None);
        assert!(parse_strict_id(b"-").is_err());
        assert_eq!(
            parse_id_with(b"7-*", 0, true, true).ok(),
            Some((StreamId::new(7, 0), false))
        );
        assert!(parse_id_with(b"7-*", 0, true, false).is_err());
        assert_eq!(range_end(b"(1-0").ok(), Some(StreamId::new(0, u64::MAX)));
        assert!(range_end(b"(0-0").is_err());
        assert!(range_start(b"(-").is_err());
    }
}
