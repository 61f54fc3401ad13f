//! OBJECT and MEMORY: what a key's value looks like inside the server.
//!
//! OBJECT ENCODING answers with the encoding Redis 7.0 would use for the
//! same contents, by Redis's own rules and the thresholds clients set with
//! CONFIG SET (`hash-max-listpack-*`, `zset-max-listpack-*`,
//! `set-max-intset-entries`): clients and tests that check encodings see
//! what they expect. Redis converts a collection one way only (a hash that
//! grew past the thresholds stays a hashtable after it shrinks); Meridian
//! derives the name from the contents now, as Redis would after a reload.
//!
//! Meridian never evicts keys, so it keeps neither an access time nor an
//! access frequency per key: OBJECT FREQ gives Redis's error for a server
//! without an LFU policy (which Meridian never has), and OBJECT IDLETIME
//! says that idle time is not tracked rather than invent a number.
//! OBJECT REFCOUNT is 1: Meridian shares no value between keys.
//!
//! MEMORY USAGE estimates the bytes a key takes in this process: the key,
//! its entry and each element with its CRDT metadata, from the sizes of the
//! types that hold them, sampling large collections as Redis does.

use std::mem::size_of;

use bytes::Bytes;
use meridian_crdt::num::{parse_strict_i64, NumReg};
use meridian_crdt::value::{Presence, Score, Ttl, ZMember};
use meridian_crdt::{Blob, Entry, Value};
use meridian_resp::Frame;

use super::config_params;
use super::spec::{spec, Ctx, Spec, READ};
use super::util::{help_reply, pair, parse_int, subcommand, syntax_error};

/// Elements MEMORY USAGE looks at in a collection unless told otherwise
/// (Redis's `OBJ_COMPUTE_SIZE_DEF_SAMPLES`).
const USAGE_SAMPLES_DEFAULT: usize = 5;
/// Strings up to this long are stored inside their `Blob`, with no heap
/// allocation of their own.
const BLOB_INLINE_BYTES: usize = 16;
/// MEMORY DOCTOR does not judge a process using less than this (Redis's
/// threshold for an empty instance).
const DOCTOR_EMPTY_BYTES: u64 = 5 * 1024 * 1024;

pub fn specs() -> Vec<Spec> {
    // The key of OBJECT ENCODING/FREQ/IDLETIME/REFCOUNT and MEMORY USAGE
    // is the third argument, where ACL key patterns must look.
    vec![
        spec("object", -2, READ, (2, 2, 1), object),
        spec("memory", -2, READ, (2, 2, 1), memory),
    ]
}

pub const OBJECT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("encoding", 3),
    ("freq", 3),
    ("help", 2),
    ("idletime", 3),
    ("refcount", 3),
];

pub const MEMORY_SUBCOMMANDS: &[(&str, i32)] = &[
    ("doctor", 2),
    ("help", 2),
    ("malloc-stats", 2),
    ("purge", 2),
    ("stats", 2),
    ("usage", -3),
];

const OBJECT_HELP: &[&str] = &[
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
];

const MEMORY_HELP: &[&str] = &[
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
];

fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = match subcommand(args, OBJECT_SUBCOMMANDS, "object") {
        Ok("help") => return help_reply(&args[0], OBJECT_HELP),
        Ok(sub) => sub,
        Err(e) => return e,
    };
    let limits = EncodingLimits::from_config(ctx);
    let Some(entry) = ctx.db().get(&args[2]) else {
        return Frame::Null;
    };
    match sub {
        "encoding" => Frame::bulk(encoding(entry.value(), &limits)),
        "refcount" => Frame::Integer(1),
        "freq" => Frame::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ => Frame::error(
            "ERR idle time not tracked: Meridian keeps no access time per key, since it never evicts keys",
        ),
    }
}

/// The `*-max-listpack-*` and `set-max-intset-entries` settings in force.
pub struct EncodingLimits {
    hash_entries: usize,
    hash_value_bytes: usize,
    set_intset_entries: usize,
    zset_entries: usize,
    zset_value_bytes: usize,
}

impl EncodingLimits {
    fn from_config(ctx: &Ctx<'_>) -> EncodingLimits {
        let kept = ctx.shared.config_kept.lock();
        let get = |name: &str| -> usize {
            let value = kept.get(name).map(String::as_str).or_else(|| {
                config_params::PARAMS
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.default)
            });
            value
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        EncodingLimits {
            hash_entries: get("hash-max-listpack-entries"),
            hash_value_bytes: get("hash-max-listpack-value"),
            set_intset_entries: get("set-max-intset-entries"),
            zset_entries: get("zset-max-listpack-entries"),
            zset_value_bytes: get("zset-max-listpack-value"),
        }
    }
}

/// Redis's longest string kept in one allocation with its header.
const EMBSTR_MAX_BYTES: usize = 44;

/// The encoding Redis 7.0 gives a value with these contents.
pub fn encoding(value: &Value, limits: &EncodingLimits) -> &'static str {
    match value {
        Value::Str(r) => {
            let s = r.render();
            if parse_strict_i64(&s).is_some() {
                "int"
            } else if s.len() <= EMBSTR_MAX_BYTES {
                "embstr"
            } else {
                "raw"
            }
        }
        Value::Hash(h) => {
            let live = &h.fields.live;
            let small = live.len() <= limits.hash_entries
                && live.iter().all(|(f, v)| {
                    f.len() <= limits.hash_value_bytes
                        && v.render().len() <= limits.hash_value_bytes
                });
            if small {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Value::Set(s) => {
            let live = &s.members.live;
            let ints = live.len() <= limits.set_intset_entries
                && live.keys().all(|m| parse_strict_i64(m).is_some());
            if ints {
                "intset"
            } else {
                "hashtable"
            }
        }
        // Redis 7.0 keeps every list in a quicklist (its listpack lists
        // came in 7.2).
        Value::List(_) => "quicklist",
        Value::Stream(_) => "stream",
        Value::ZSet(z) => {
            let live = &z.members.live;
            let small = live.len() <= limits.zset_entries
                && live.keys().all(|m| m.len() <= limits.zset_value_bytes);
            if small {
                "listpack"
            } else {
                "skiplist"
            }
        }
    }
}

fn memory(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match subcommand(args, MEMORY_SUBCOMMANDS, "memory") {
        Err(e) => e,
        Ok("usage") => memory_usage(ctx, args),
        Ok("stats") => memory_stats(ctx),
        Ok("doctor") => {
            Frame::verbatim_text(doctor_report(crate::metrics::rss_bytes(), peak_rss_bytes()))
        }
        Ok("malloc-stats") => Frame::verbatim_text("Stats not supported for the current allocator"),
        Ok("purge") => Frame::ok(),
        Ok(_) => help_reply(&args[0], MEMORY_HELP),
    }
}

/// `MEMORY USAGE key [SAMPLES n]`, options checked as Redis checks them.
fn memory_usage(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut samples = USAGE_SAMPLES_DEFAULT;
    let mut j = 3;
    while j < args.len() {
        if !super::util::eq_ignore_case(&args[j], "samples") || j + 1 >= args.len() {
            return syntax_error();
        }
        samples = match parse_int(&args[j + 1]) {
            Ok(n) if n < 0 => return syntax_error(),
            Ok(0) => usize::MAX,
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(e) => return e,
        };
        j += 2;
    }
    let key = &args[2];
    match ctx.db().get(key) {
        Some(entry) => Frame::Integer(usage_bytes(key, entry, samples) as i64),
        None => Frame::Null,
    }
}

/// Heap bytes a blob of this length owns.
fn heap_len(len: usize) -> usize {
    if len > BLOB_INLINE_BYTES {
        len
    } else {
        0
    }
}

/// The bytes of one slot of a hash map: a stored entry of `entry_bytes`,
/// its cached hash, and the index table's slot and control byte.
fn map_slot_bytes(entry_bytes: usize) -> usize {
    entry_bytes + 2 * size_of::<usize>() + 1
}

/// An estimate of what `entry` under `key` takes in this process: the
/// keyspace's slot and the boxed entry, then per element the sizes of the
/// types holding it (a string and its last write's tag, a member and the
/// tags of its adds, a score and its index entry) plus the heap bytes of
/// long strings. For collections, the first `samples` elements stand for
/// all of them, as Redis's MEMORY USAGE samples.
pub fn usage_bytes(key: &[u8], entry: &Entry, samples: usize) -> usize {
    let mut bytes = map_slot_bytes(size_of::<Blob>() + size_of::<Box<Entry>>())
        + heap_len(key.len())
        + size_of::<Entry>();
    if entry.ttl().is_some() {
        // The TTL register, and the expiry index's entry for the key.
        bytes += size_of::<Ttl>() + 2 * size_of::<usize>() + size_of::<(u64, Blob)>();
    }
    let sampled = |len: usize, each: &mut dyn Iterator<Item = usize>| -> usize {
        let n = len.min(samples);
        if n == 0 {
            return 0;
        }
        let sum: usize = each.take(n).sum();
        sum / n * len
    };
    bytes += match entry.value() {
        Value::Str(r) => size_of::<NumReg<Blob>>() + heap_len(r.render().len()),
        Value::Hash(h) => {
            let live = &h.fields.live;
            let slot = map_slot_bytes(size_of::<Blob>() + size_of::<NumReg<Blob>>());
            sampled(
                live.len(),
                &mut live
                    .iter()
                    .map(|(f, v)| slot + f.heap_bytes() + heap_len(v.render().len())),
            )
        }
        Value::Set(s) => {
            let live = &s.members.live;
            let slot = map_slot_bytes(size_of::<Blob>() + size_of::<Presence>());
            sampled(live.len(), &mut live.keys().map(|m| slot + m.heap_bytes()))
        }
        // The list knows its own heap use (packed chunks included).
        Value::List(l) => l.heap_bytes(),
        Value::Stream(s) => s.heap_bytes(),
        Value::ZSet(z) => {
            let live = &z.members.live;
            let slot = map_slot_bytes(size_of::<Blob>() + size_of::<ZMember>());
            // The score index holds the member a second time.
            let index = size_of::<(Score, Blob)>();
            sampled(
                live.len(),
                &mut live.keys().map(|m| slot + index + 2 * m.heap_bytes()),
            )
        }
    };
    bytes
}

/// This process's largest resident set so far (`VmHWM`), or 0 where
/// unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// MEMORY DOCTOR, with Redis's texts, judging what Meridian can measure:
/// the resident set now and at its peak (Meridian has no allocator
/// statistics, so Redis's fragmentation checks have nothing to read).
pub fn doctor_report(rss_bytes: u64, peak_bytes: u64) -> String {
    if rss_bytes < DOCTOR_EMPTY_BYTES {
        return "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n".into();
    }
    if (peak_bytes as f64 / rss_bytes as f64) <= 1.5 {
        return "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n".into();
    }
    "Sam, I detected a few issues in this Redis instance memory implants:\n\n * Peak memory: In the past this instance used more than 150% the memory that is currently using. The allocator is normally not able to release memory after a peak, so you can expect to see a big fragmentation ratio, however this is actually harmless and is only due to the memory peak, and if the Redis instance Resident Set Size (RSS) is currently bigger than expected, the memory will be used as soon as you fill the Redis instance with more data. If the memory peak was only occasional and you want to try to reclaim memory, please try the MEMORY PURGE command, otherwise the only other option is to shutdown and restart the instance.\n\nI'm here to keep you safe, Sam. I want to help you.\n".into()
}

/// MEMORY STATS: Redis's fields that Meridian can fill truly, from the
/// process's resident set (it has no allocator statistics).
fn memory_stats(ctx: &mut Ctx<'_>) -> Frame {
    let rss = crate::metrics::rss_bytes();
    let keys = super::keys::dbsize(ctx);
    let per_key = rss.checked_div(keys).unwrap_or(0);
    Frame::Map(vec![
        pair("peak.allocated", Frame::Integer(peak_rss_bytes() as i64)),
        pair("total.allocated", Frame::Integer(rss as i64)),
        pair("keys.count", Frame::Integer(keys as i64)),
        pair("keys.bytes-per-key", Frame::Integer(per_key as i64)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_reports_as_redis_words_it() {
        assert!(doctor_report(1024, 1024).starts_with("Hi Sam, this instance is empty"));
        assert!(doctor_report(64 << 20, 70 << 20).starts_with("Hi Sam, I can't find"));
        assert!(doctor_report(64 << 20, 200 << 20).contains("* Peak memory"));
    }

    #[test]
    fn heap_bytes_only_past_inline_length() {
        assert_eq!(heap_len(BLOB_INLINE_BYTES), 0);
        assert_eq!(heap_len(100), 100);
    }
}
