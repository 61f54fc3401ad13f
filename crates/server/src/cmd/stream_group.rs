//! Consumer groups: XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM.
//!
//! A group is state of its stream (`meridian_crdt::stream`): created
//! add-wins and destroyed observed-remove; its last delivered ID raised by
//! reads and set by SETID; its pending entries written by deliveries and
//! claims (a concurrent claim of one entry in two regions: the later tag
//! owns it) and removed by XACK as far as XACK observed them. XREADGROUP,
//! XCLAIM and XAUTOCLAIM change that state, so they are writes and pass
//! the keyspace policies like any write: under a `primary` keyspace only
//! the primary delivers. In an `active-active` keyspace each region
//! delivers from the stream as it holds it, so a group delivers every
//! entry at least once across regions: two regions reading the same group
//! at the same time may both deliver an entry (each region's own
//! deliveries are once each), as Redis Enterprise Active-Active documents.
//!
//! XREADGROUP BLOCK with `>` waits through [`crate::blocking`]; an entry
//! any region adds wakes it, and a group or key that went away ends the
//! wait with Redis's errors.

use bytes::Bytes;
use meridian_crdt::{Blob, Delivery, StreamId, StreamVal};
use meridian_resp::Frame;

use super::spec::{command, spec, Ctx, Spec, READ, WRITE};
use super::stream::{
    distance_from_first, entry_frame, has_tombstones_from, id_frame, nogroup_for_key, parse_id,
    parse_read, parse_strict_id, range_end, range_start, read, read_reply, BLOCKED_COUNT_DEFAULT,
};
use super::util::{bulk, eq_ignore_case, help_reply, lossy, parse_int, syntax_error};
use crate::blocking;
use crate::notify::{self, STREAM};

pub fn specs() -> Vec<Spec> {
    vec![
        command("xgroup", -2, READ, (0, 0, 0), xgroup, &[]),
        spec("xreadgroup", -7, WRITE, (0, 0, 0), xreadgroup),
        spec("xack", -4, WRITE, (1, 1, 1), xack),
        spec("xpending", -3, READ, (1, 1, 1), xpending),
        spec("xclaim", -6, WRITE, (1, 1, 1), xclaim),
        spec("xautoclaim", -6, WRITE, (1, 1, 1), xautoclaim),
    ]
}

/// XGROUP's subcommands and their arities.
pub const XGROUP_SUBCOMMANDS: &[(&str, i32)] = &[
    ("create", -5),
    ("createconsumer", 5),
    ("delconsumer", 5),
    ("destroy", 4),
    ("help", 2),
    ("setid", -5),
];

const XGROUP_HELP: &[&str] = &[
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
];

fn subcommand_syntax_error(args: &[Bytes]) -> Frame {
    let shown = &args[1][..args[1].len().min(128)];
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        lossy(shown),
        lossy(&args[0]).to_ascii_uppercase()
    ))
}

fn nogroup(key: &[u8], group: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        lossy(key),
        lossy(group)
    ))
}

/// Why XGROUP may not write now: the checks dispatch makes before every
/// write, which it cannot make for a container whose other subcommands
/// only read (its table entry is not a write, as in Redis).
fn write_refusal(ctx: &Ctx<'_>, key: &[u8]) -> Option<Frame> {
    if ctx.store.is_poisoned() {
        return Some(crate::commit::poisoned_error());
    }
    if ctx
        .shared
        .closing
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Some(Frame::error(
            "ERR this region is shutting down: writes are refused; send them to another region",
        ));
    }
    crate::guard::write_refusal(ctx, &[key])
}

/// `XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER|HELP ...`.
fn xgroup(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    if sub == b"help" {
        return help_reply(&args[0], XGROUP_HELP);
    }
    let create = sub == b"create";
    let setid = sub == b"setid";
    let mut mkstream = false;
    let mut read: Option<u64> = None;
    let mut i = 5;
    while i < args.len() {
        if create && eq_ignore_case(&args[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if (create || setid) && eq_ignore_case(&args[i], "entriesread") && i + 1 < args.len()
        {
            match parse_int(&args[i + 1]) {
                Ok(-1) => read = None,
                Ok(n) if n < 0 => {
                    return Frame::error("ERR value for ENTRIESREAD must be positive or -1")
                }
                Ok(n) => read = Some(n as u64),
                Err(e) => return e,
            }
            i += 2;
        } else {
            return subcommand_syntax_error(args);
        }
    }
    let (key, group) = (&args[2], &args[3]);
    let (exists, last, has_group) = match read_stream(ctx, key) {
        Ok(Some(s)) => (true, s.last_id(), s.group(group).is_some()),
        Ok(None) => (false, StreamId::ZERO, false),
        Err(e) => return e,
    };
    if !mkstream {
        if !exists {
            return Frame::error(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            );
        }
        if !has_group && !create && sub != b"destroy" {
            return nogroup_for_key(group, key);
        }
    }
    match sub.as_slice() {
        b"create" if (5..=8).contains(&args.len()) => {
            let id = if args[4].as_ref() == b"$" {
                last
            } else {
                match parse_strict_id(&args[4]) {
                    Ok(id) => id,
                    Err(e) => return e,
                }
            };
            if let Some(refusal) = write_refusal(ctx, key) {
                return refusal;
            }
            if has_group {
                return Frame::error("BUSYGROUP Consumer Group name already exists");
            }
            ctx.db().xgroup_create(key, group, id, read);
            notify::emit(ctx, STREAM, "xgroup-create", key);
            Frame::ok()
        }
        b"setid" if args.len() == 5 || args.len() == 7 => {
            let id = if args[4].as_ref() == b"$" {
                last
            } else {
                match parse_id(&args[4], 0) {
                    Ok(id) => id,
                    Err(e) => return e,
                }
            };
            if let Some(refusal) = write_refusal(ctx, key) {
                return refusal;
            }
            ctx.db().xgroup_setid(key, group, id, read);
            notify::emit(ctx, STREAM, "xgroup-setid", key);
            Frame::ok()
        }
        b"destroy" if args.len() == 4 => {
            if !has_group {
                return Frame::Integer(0);
            }
            if let Some(refusal) = write_refusal(ctx, key) {
                return refusal;
            }
            ctx.db().xgroup_destroy(key, group);
            notify::emit(ctx, STREAM, "xgroup-destroy", key);
            Frame::Integer(1)
        }
        b"createconsumer" if args.len() == 5 => {
            let consumer = &args[4];
            if has_consumer(ctx, key, group, consumer) {
                return Frame::Integer(0);
            }
            if let Some(refusal) = write_refusal(ctx, key) {
                return refusal;
            }
            let now_ms = ctx.db().now_ms();
            ctx.db().xgroup_createconsumer(key, group, consumer, now_ms);
            notify::emit(ctx, STREAM, "xgroup-createconsumer", key);
            Frame::Integer(1)
        }
        b"delconsumer" if args.len() == 5 => {
            let consumer = &args[4];
            if !has_consumer(ctx, key, group, consumer) {
                return Frame::Integer(0);
            }
            let pending = match read_stream(ctx, key) {
                Ok(Some(s)) => s.group(group).map_or(0, |g| g.pending_of(consumer)),
                _ => 0,
            };
            if let Some(refusal) = write_refusal(ctx, key) {
                return refusal;
            }
            ctx.db().xgroup_delconsumer(key, group, consumer);
            notify::emit(ctx, STREAM, "xgroup-delconsumer", key);
            Frame::Integer(pending as i64)
        }
        _ => subcommand_syntax_error(args),
    }
}

fn read_stream<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c StreamVal>, Frame> {
    read(ctx, key)
}

fn has_consumer(ctx: &mut Ctx<'_>, key: &[u8], group: &[u8], consumer: &[u8]) -> bool {
    matches!(read(ctx, key), Ok(Some(s)) if s.group(group).is_some_and(|g| g.has_consumer(consumer)))
}

// ----- XREADGROUP -----

/// Where XREADGROUP reads a stream from.
#[derive(Clone, Copy)]
enum From {
    /// `>`: entries never delivered to the group.
    New,
    /// An ID: the consumer's own pending entries after it.
    History(StreamId),
}

/// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS
/// key... id...`.
fn xreadgroup(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let a = match parse_read(ctx, args, true) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Some((group, consumer)) = a.group else {
        return syntax_error();
    };
    // A retry once blocked: the key or group may have gone meanwhile.
    let retrying = ctx.client.block.is_some();
    let mut from = Vec::with_capacity(a.keys.len());
    for (key, id) in a.keys.iter().zip(a.ids) {
        match read(ctx, key) {
            Ok(Some(s)) if s.group(group).is_some() => {}
            Ok(Some(_)) if retrying => {
                return Frame::error(
                    "NOGROUP the consumer group this client was blocked on no longer exists",
                )
            }
            Ok(None) | Err(_) if retrying => {
                return Frame::error("UNBLOCKED the stream key no longer exists")
            }
            Err(e) => return e,
            Ok(_) => {
                return Frame::error(format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                lossy(key),
                lossy(group)
            ))
            }
        }
        if id.as_ref() == b"$" {
            return Frame::error(
                "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
            );
        }
        if id.as_ref() == b">" {
            from.push(From::New);
            continue;
        }
        match parse_strict_id(id) {
            Ok(id) => from.push(From::History(id)),
            Err(e) => return e,
        }
    }
    let count = match a.count {
        0 if retrying => BLOCKED_COUNT_DEFAULT,
        0 => usize::MAX,
        n => n,
    };
    let now_ms = ctx.db().now_ms();
    let mut served = Vec::new();
    for (key, from) in a.keys.iter().zip(from) {
        let Ok(Some(s)) = read(ctx, key) else {
            continue;
        };
        let Some(g) = s.group(group) else {
            continue;
        };
        let known = g.has_consumer(consumer);
        let (entries, delivery) = match from {
            From::History(after) => history(s, g, consumer, after, count, now_ms),
            From::New => {
                if s.undelivered(g).next().is_none() {
                    continue;
                }
                deliver_new(s, g, consumer, count, a.noack, now_ms)
            }
        };
        ctx.db().xdeliver(key, group, delivery);
        if !known {
            notify::emit(ctx, STREAM, "xgroup-createconsumer", key);
        }
        served.push((key.clone(), entries));
    }
    if !served.is_empty() {
        return read_reply(ctx.proto(), served);
    }
    match a.block {
        Some(timeout) => blocking::block(ctx, a.keys, timeout, Frame::NullArray),
        None => Frame::NullArray,
    }
}

/// The consumer's pending entries after `after`: each still in the stream
/// is delivered again (its count raised), one gone shows with no fields.
fn history(
    s: &StreamVal,
    g: &meridian_crdt::Group,
    consumer: &[u8],
    after: StreamId,
    count: usize,
    now_ms: u64,
) -> (Vec<Frame>, Delivery) {
    // Redis's `streamIncrID` past the last ID wraps to 0-0.
    let start = after.next().unwrap_or_default();
    let mut entries = Vec::new();
    let mut pel = Vec::new();
    for (id, n) in g
        .pending_from(start)
        .filter(|(_, n)| n.consumer.as_bytes() == consumer)
        .take(count)
    {
        match s.get(id) {
            Some(fields) => {
                entries.push(entry_frame(id, fields));
                pel.push((id, now_ms, n.count + 1));
            }
            None => entries.push(Frame::Array(vec![id_frame(id), Frame::NullArray])),
        }
    }
    let delivery = Delivery {
        consumer: Some(Blob::from(consumer)),
        now_ms,
        cursors: Vec::new(),
        raise: None,
        read: None,
        pel,
        dropped: Vec::new(),
    };
    (entries, delivery)
}

/// Entries the group has not delivered yet, up to `count`: the group's
/// last delivered ID and read counter advance over them (Redis's
/// `streamReplyWithRange` with a group), each region's floor over its
/// entries served (an entry another region added concurrently below the
/// last delivered ID is still served once it arrives), and unless NOACK
/// each becomes a pending entry of `consumer`.
fn deliver_new(
    s: &StreamVal,
    g: &meridian_crdt::Group,
    consumer: &[u8],
    count: usize,
    noack: bool,
    now_ms: u64,
) -> (Vec<Frame>, Delivery) {
    let (mut last, mut read) = g.last_delivered();
    let mut entries = Vec::new();
    let mut pel = Vec::new();
    let mut cursors: Vec<(meridian_crdt::RegionId, StreamId)> = Vec::new();
    for (id, fields, origin) in s.undelivered(g).take(count) {
        match cursors.iter_mut().find(|c| c.0 == origin) {
            Some(c) => c.1 = c.1.max(id),
            None => cursors.push((origin, id)),
        }
        if id > last {
            if read.is_some() && !has_tombstones_from(s, id) {
                read = read.map(|r| r + 1);
            } else if s.entries_added() > 0 {
                read = distance_from_first(s, id);
            }
            last = id;
        }
        entries.push(entry_frame(id, fields));
        if !noack {
            pel.push((id, now_ms, 1));
        }
    }
    let delivery = Delivery {
        consumer: Some(Blob::from(consumer)),
        now_ms,
        cursors,
        raise: None,
        read,
        pel,
        dropped: Vec::new(),
    };
    (entries, delivery)
}

// ----- XACK, XPENDING -----

/// `XACK key group id...`.
fn xack(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, group) = (&args[1], &args[2]);
    match read(ctx, key) {
        Ok(Some(s)) if s.group(group).is_some() => {}
        Ok(_) => return Frame::Integer(0),
        Err(e) => return e,
    }
    let mut ids = Vec::with_capacity(args.len() - 3);
    for a in &args[3..] {
        match parse_strict_id(a) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    Frame::Integer(ctx.db().xack(key, group, &ids) as i64)
}

/// `XPENDING key group [[IDLE min-idle] start end count [consumer]]`.
fn xpending(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let summary = args.len() == 3;
    if !summary && !(6..=9).contains(&args.len()) {
        return syntax_error();
    }
    let mut min_idle: i64 = 0;
    let mut range = None;
    let mut consumer = None;
    if args.len() >= 6 {
        let mut at = 3;
        if eq_ignore_case(&args[3], "idle") {
            min_idle = match parse_int(&args[4]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            if args.len() < 8 {
                return syntax_error();
            }
            at += 2;
        }
        let count = match parse_int(&args[at + 2]) {
            Ok(n) => n.max(0) as usize,
            Err(e) => return e,
        };
        let start = match range_start(&args[at]) {
            Ok(id) => id,
            Err(e) => return e,
        };
        let end = match range_end(&args[at + 1]) {
            Ok(id) => id,
            Err(e) => return e,
        };
        range = Some((start, end, count));
        consumer = args.get(at + 3);
    }
    let (key, group) = (&args[1], &args[2]);
    let now_ms = ctx.db().now_ms();
    let s = match read(ctx, key) {
        Ok(Some(s)) => s,
        Ok(None) => return nogroup(key, group),
        Err(e) => return e,
    };
    let Some(g) = s.group(group) else {
        return nogroup(key, group);
    };
    let Some((start, end, mut count)) = range else {
        let total = g.pending_len();
        if total == 0 {
            return Frame::Array(vec![
                Frame::Integer(0),
                Frame::Null,
                Frame::Null,
                Frame::NullArray,
            ]);
        }
        let first = g.pending().next().map(|(id, _)| id).unwrap_or_default();
        let last = g
            .pending()
            .next_back()
            .map(|(id, _)| id)
            .unwrap_or_default();
        let mut owners: std::collections::BTreeMap<&Blob, u64> = Default::default();
        for (_, n) in g.pending() {
            *owners.entry(&n.consumer).or_default() += 1;
        }
        return Frame::Array(vec![
            Frame::Integer(total as i64),
            id_frame(first),
            id_frame(last),
            Frame::Array(
                owners
                    .into_iter()
                    .map(|(c, n)| Frame::Array(vec![bulk(c), Frame::bulk(n.to_string())]))
                    .collect(),
            ),
        ]);
    };
    if let Some(c) = consumer {
        if !g.has_consumer(c) {
            return Frame::Array(Vec::new());
        }
    }
    let mut out = Vec::new();
    for (id, n) in g.pending_from(start) {
        if count == 0 || id > end {
            break;
        }
        if consumer.is_some_and(|c| n.consumer.as_bytes() != c.as_ref()) {
            continue;
        }
        let idle = now_ms as i64 - n.delivered_ms as i64;
        if min_idle != 0 && idle < min_idle {
            continue;
        }
        count -= 1;
        out.push(Frame::Array(vec![
            id_frame(id),
            bulk(&n.consumer),
            Frame::Integer(idle.max(0)),
            Frame::Integer(n.count as i64),
        ]));
    }
    Frame::Array(out)
}

// ----- XCLAIM, XAUTOCLAIM -----

/// Parses a `long long` option with Redis's own error text for it.
fn int_or(arg: &[u8], message: &str) -> Result<i64, Frame> {
    meridian_resp::parse_redis_int(arg).ok_or_else(|| Frame::error(format!("ERR {message}")))
}

/// `XCLAIM key group consumer min-idle-time id... [IDLE ms] [TIME ms]
/// [RETRYCOUNT n] [FORCE] [JUSTID] [LASTID id]`.
fn xclaim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, group, consumer) = (&args[1], &args[2], &args[3]);
    match read(ctx, key) {
        Ok(Some(s)) if s.group(group).is_some() => {}
        Ok(_) => return nogroup(key, group),
        Err(e) => return e,
    }
    let min_idle = match int_or(&args[4], "Invalid min-idle-time argument for XCLAIM") {
        Ok(n) => n.max(0),
        Err(e) => return e,
    };
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match parse_strict_id(&args[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now_ms = ctx.db().now_ms() as i64;
    let mut delivery_ms: i64 = -1;
    let mut retry: i64 = -1;
    let mut force = false;
    let mut justid = false;
    let mut last_id = StreamId::ZERO;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        if eq_ignore_case(opt, "force") {
            force = true;
        } else if eq_ignore_case(opt, "justid") {
            justid = true;
        } else if eq_ignore_case(opt, "idle") && more > 0 {
            j += 1;
            match int_or(&args[j], "Invalid IDLE option argument for XCLAIM") {
                Ok(n) => delivery_ms = now_ms.wrapping_sub(n),
                Err(e) => return e,
            }
        } else if eq_ignore_case(opt, "time") && more > 0 {
            j += 1;
            match int_or(&args[j], "Invalid TIME option argument for XCLAIM") {
                Ok(n) => delivery_ms = n,
                Err(e) => return e,
            }
        } else if eq_ignore_case(opt, "retrycount") && more > 0 {
            j += 1;
            match int_or(&args[j], "Invalid RETRYCOUNT option argument for XCLAIM") {
                Ok(n) => retry = n,
                Err(e) => return e,
            }
        } else if eq_ignore_case(opt, "lastid") && more > 0 {
            j += 1;
            match parse_strict_id(&args[j]) {
                Ok(id) => last_id = id,
                Err(e) => return e,
            }
        } else {
            return Frame::error(format!("ERR Unrecognized XCLAIM option '{}'", lossy(opt)));
        }
        j += 1;
    }
    if delivery_ms == -1 || delivery_ms < 0 || delivery_ms > now_ms {
        delivery_ms = now_ms;
    }
    let Ok(Some(s)) = read(ctx, key) else {
        return nogroup(key, group);
    };
    let Some(g) = s.group(group) else {
        return nogroup(key, group);
    };
    let (group_last, group_read) = g.last_delivered();
    let known = g.has_consumer(consumer);
    let mut out = Vec::new();
    let mut pel = Vec::new();
    let mut dropped = Vec::new();
    let mut claimed_any = false;
    for id in ids {
        let nack = g.pending_entry(id);
        let Some(fields) = s.get(id) else {
            if nack.is_some() && !dropped.contains(&id) {
                dropped.push(id);
            }
            continue;
        };
        let prior = match nack {
            Some(n) => {
                if min_idle > 0 && now_ms - (n.delivered_ms as i64) < min_idle {
                    continue;
                }
                n.count
            }
            // FORCE makes a pending entry (Redis's count starts at 1).
            None if force => 1,
            None => continue,
        };
        let count = if retry >= 0 {
            retry as u64
        } else if !justid {
            prior + 1
        } else {
            prior
        };
        pel.retain(|(p, _, _)| *p != id);
        pel.push((id, delivery_ms as u64, count));
        claimed_any = true;
        out.push(if justid {
            id_frame(id)
        } else {
            entry_frame(id, fields)
        });
    }
    let raise = (last_id > group_last).then_some(last_id);
    if claimed_any || !dropped.is_empty() || raise.is_some() {
        let delivery = Delivery {
            consumer: claimed_any.then(|| Blob::from(&consumer[..])),
            now_ms: now_ms as u64,
            cursors: Vec::new(),
            raise,
            read: group_read,
            pel,
            dropped,
        };
        ctx.db().xdeliver(key, group, delivery);
        if claimed_any && !known {
            notify::emit(ctx, STREAM, "xgroup-createconsumer", key);
        }
    }
    Frame::Array(out)
}

/// `XAUTOCLAIM key group consumer min-idle-time start [COUNT n]
/// [JUSTID]`.
fn xautoclaim(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let min_idle = match int_or(&args[4], "Invalid min-idle-time argument for XAUTOCLAIM") {
        Ok(n) => n.max(0),
        Err(e) => return e,
    };
    let start = match range_start(&args[5]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut count: u64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if eq_ignore_case(&args[j], "count") && more > 0 {
            // Redis's bound: LONG_MAX over the larger of an ID's size and
            // the attempts factor.
            const COUNT_MAX: i64 = i64::MAX / 16;
            match meridian_resp::parse_redis_int(&args[j + 1]) {
                Some(n) if (1..=COUNT_MAX).contains(&n) => count = n as u64,
                _ => return Frame::error("ERR COUNT must be > 0"),
            }
            j += 1;
        } else if eq_ignore_case(&args[j], "justid") {
            justid = true;
        } else {
            return syntax_error();
        }
        j += 1;
    }
    let (key, group, consumer) = (&args[1], &args[2], &args[3]);
    let now_ms = ctx.db().now_ms();
    let s = match read(ctx, key) {
        Ok(Some(s)) => s,
        Ok(None) => return nogroup(key, group),
        Err(e) => return e,
    };
    let Some(g) = s.group(group) else {
        return nogroup(key, group);
    };
    let known = g.has_consumer(consumer);
    let candidates: Vec<(StreamId, u64, u64)> = g
        .pending_from(start)
        .map(|(id, n)| (id, n.delivered_ms, n.count))
        .collect();
    let mut attempts = count.saturating_mul(10);
    let mut next = 0;
    let mut out = Vec::new();
    let mut pel = Vec::new();
    let mut dropped = Vec::new();
    loop {
        if attempts == 0 {
            break;
        }
        attempts -= 1;
        if count == 0 || next >= candidates.len() {
            break;
        }
        let (id, delivered_ms, n) = candidates[next];
        next += 1;
        let Some(fields) = s.get(id) else {
            dropped.push(id);
            count -= 1;
            continue;
        };
        if min_idle > 0 && (now_ms as i64 - delivered_ms as i64) < min_idle {
            continue;
        }
        pel.push((id, now_ms, if justid { n } else { n + 1 }));
        out.push(if justid {
            id_frame(id)
        } else {
            entry_frame(id, fields)
        });
        count -= 1;
    }
    let cursor = candidates.get(next).map_or(StreamId::ZERO, |c| c.0);
    let claimed_any = !pel.is_empty();
    let deleted: Vec<Frame> = dropped.iter().map(|id| id_frame(*id)).collect();
    if claimed_any || !dropped.is_empty() {
        let delivery = Delivery {
            consumer: claimed_any.then(|| Blob::from(&consumer[..])),
            now_ms,
            cursors: Vec::new(),
            raise: None,
            read: None,
            pel,
            dropped,
        };
        ctx.db().xdeliver(key, group, delivery);
        if claimed_any && !known {
            notify::emit(ctx, STREAM, "xgroup-createconsumer", key);
        }
    }
    Frame::Array(vec![
        id_frame(cursor),
        Frame::Array(out),
        Frame::Array(deleted),
    ])
}
