//! Pub/Sub within this region: SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs,
//! PUBLISH and PUBSUB, and sharded Pub/Sub (SSUBSCRIBE, SUNSUBSCRIBE,
//! SPUBLISH). Messages are not replicated to other regions. Keyspace
//! notifications (`crate::notify`) are published here too, through
//! [`publish_message`].
//!
//! A region is one node holding every shard, so shard channels behave as
//! channels in a namespace of their own: SPUBLISH reaches only SSUBSCRIBE
//! subscribers (as `smessage`), never channel or pattern subscribers, and
//! SSUBSCRIBE counts only shard channels in its replies, as Redis does.

use std::collections::HashMap;

use bytes::Bytes;
use meridian_resp::Frame;
use parking_lot::Mutex;

use super::spec::{spec, Ctx, Flags, Spec, READ};
use super::util::{glob_match, help_reply, lossy, subcommand};
use crate::client::Client;
use crate::client::{PushMsg, PushSender};
use crate::shared::Shared;

const SUB: Flags = Flags {
    pubsub_ok: true,
    multi_reply: true,
    ..READ
};

pub fn specs() -> Vec<Spec> {
    vec![
        spec("subscribe", -2, SUB, (0, 0, 0), subscribe),
        spec("unsubscribe", -1, SUB, (0, 0, 0), unsubscribe),
        spec("psubscribe", -2, SUB, (0, 0, 0), psubscribe),
        spec("punsubscribe", -1, SUB, (0, 0, 0), punsubscribe),
        // Channels are not keys to Meridian's ACL, which has no channel
        // permissions: the sharded commands list no key positions.
        spec("ssubscribe", -2, SUB, (0, 0, 0), ssubscribe),
        spec("sunsubscribe", -1, SUB, (0, 0, 0), sunsubscribe),
        spec("publish", 3, READ, (0, 0, 0), publish),
        spec("spublish", 3, READ, (0, 0, 0), spublish),
        spec("pubsub", -2, READ, (0, 0, 0), pubsub),
    ]
}

pub const PUBSUB_SUBCOMMANDS: &[(&str, i32)] = &[
    ("channels", -2),
    ("help", 2),
    ("numpat", 2),
    ("numsub", -2),
    ("shardchannels", -2),
    ("shardnumsub", -2),
];

const PUBSUB_HELP: &[&str] = &[
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
];

/// The frame a subscriber receives for a message.
pub fn message_frame(msg: &PushMsg) -> Frame {
    let items = match &msg.pattern {
        Some(p) => vec![
            Frame::bulk("pmessage"),
            Frame::Bulk(p.clone()),
            Frame::Bulk(msg.channel.clone()),
            Frame::Bulk(msg.message.clone()),
        ],
        None => vec![
            Frame::bulk(if msg.shard { "smessage" } else { "message" }),
            Frame::Bulk(msg.channel.clone()),
            Frame::Bulk(msg.message.clone()),
        ],
    };
    Frame::Push(items)
}

fn notice(kind: &'static str, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(kind),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

type Registry = Mutex<HashMap<Bytes, HashMap<u64, PushSender>>>;

fn join(registry: &Registry, name: &Bytes, client: &Client) {
    registry
        .lock()
        .entry(name.clone())
        .or_default()
        .insert(client.id, client.push.clone());
}

fn leave(registry: &Registry, name: &Bytes, id: u64) {
    let mut map = registry.lock();
    if let Some(subs) = map.get_mut(name) {
        subs.remove(&id);
        if subs.is_empty() {
            map.remove(name);
        }
    }
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut out = Vec::new();
    for ch in &args[1..] {
        if ctx.client.channels.insert(ch.clone()) {
            join(&ctx.shared.channels, ch, ctx.client);
        }
        out.push(notice(
            "subscribe",
            Some(ch.clone()),
            ctx.client.subscriptions(),
        ));
    }
    Frame::Array(out)
}

fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut out = Vec::new();
    for p in &args[1..] {
        if ctx.client.patterns.insert(p.clone()) {
            join(&ctx.shared.patterns, p, ctx.client);
        }
        out.push(notice(
            "psubscribe",
            Some(p.clone()),
            ctx.client.subscriptions(),
        ));
    }
    Frame::Array(out)
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.channels.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for ch in names {
        if ctx.client.channels.remove(&ch) {
            leave(&ctx.shared.channels, &ch, ctx.client.id);
        }
        out.push(notice("unsubscribe", Some(ch), ctx.client.subscriptions()));
    }
    if out.is_empty() {
        out.push(notice("unsubscribe", None, ctx.client.subscriptions()));
    }
    Frame::Array(out)
}

fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.patterns.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for p in names {
        if ctx.client.patterns.remove(&p) {
            leave(&ctx.shared.patterns, &p, ctx.client.id);
        }
        out.push(notice("punsubscribe", Some(p), ctx.client.subscriptions()));
    }
    if out.is_empty() {
        out.push(notice("punsubscribe", None, ctx.client.subscriptions()));
    }
    Frame::Array(out)
}

fn ssubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut out = Vec::new();
    for ch in &args[1..] {
        if ctx.client.shard_channels.insert(ch.clone()) {
            join(&ctx.shared.shard_channels, ch, ctx.client);
        }
        out.push(notice(
            "ssubscribe",
            Some(ch.clone()),
            ctx.client.shard_channels.len(),
        ));
    }
    Frame::Array(out)
}

fn sunsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.shard_channels.iter().cloned().collect()
    };
    let mut out = Vec::new();
    for ch in names {
        if ctx.client.shard_channels.remove(&ch) {
            leave(&ctx.shared.shard_channels, &ch, ctx.client.id);
        }
        out.push(notice(
            "sunsubscribe",
            Some(ch),
            ctx.client.shard_channels.len(),
        ));
    }
    if out.is_empty() {
        out.push(notice(
            "sunsubscribe",
            None,
            ctx.client.shard_channels.len(),
        ));
    }
    Frame::Array(out)
}

/// Drops every subscription of a closing connection.
pub fn unsubscribe_all(shared: &Shared, client: &mut Client) {
    for ch in std::mem::take(&mut client.channels) {
        leave(&shared.channels, &ch, client.id);
    }
    for p in std::mem::take(&mut client.patterns) {
        leave(&shared.patterns, &p, client.id);
    }
    for ch in std::mem::take(&mut client.shard_channels) {
        leave(&shared.shard_channels, &ch, client.id);
    }
}

/// Delivers to every subscriber; one whose queue is full is disconnected
/// rather than allowed to grow memory without bound.
fn deliver(shared: &Shared, sender: &PushSender, id: u64, msg: PushMsg) -> bool {
    match sender.try_send(msg) {
        Ok(()) => true,
        Err(_) => {
            if let Some(entry) = shared.clients.lock().get(&id) {
                entry
                    .killed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                entry.kill.notify_one();
            }
            false
        }
    }
}

/// The subscribers of `name` in a registry, copied out so delivery runs
/// without the registry's lock.
fn subscribers(registry: &Registry, name: &Bytes) -> Vec<(u64, PushSender)> {
    registry
        .lock()
        .get(name)
        .map(|subs| subs.iter().map(|(id, s)| (*id, s.clone())).collect())
        .unwrap_or_default()
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Integer(publish_message(ctx.shared, &args[1], &args[2]) as i64)
}

/// Delivers `message` on `channel` to its subscribers and to every pattern
/// subscriber it matches, as PUBLISH does (keyspace notifications publish
/// through here too); returns how many received it.
pub fn publish_message(shared: &Shared, channel: &Bytes, message: &Bytes) -> usize {
    let mut receivers = 0;
    for (id, s) in subscribers(&shared.channels, channel) {
        let msg = PushMsg {
            pattern: None,
            shard: false,
            channel: channel.clone(),
            message: message.clone(),
        };
        if deliver(shared, &s, id, msg) {
            receivers += 1;
        }
    }
    let by_pattern: Vec<(Bytes, u64, PushSender)> = shared
        .patterns
        .lock()
        .iter()
        .filter(|(p, _)| glob_match(p, channel, false))
        .flat_map(|(p, subs)| subs.iter().map(move |(id, s)| (p.clone(), *id, s.clone())))
        .collect();
    for (p, id, s) in by_pattern {
        let msg = PushMsg {
            pattern: Some(p),
            shard: false,
            channel: channel.clone(),
            message: message.clone(),
        };
        if deliver(shared, &s, id, msg) {
            receivers += 1;
        }
    }
    receivers
}

/// SPUBLISH: to the shard channel's subscribers only.
fn spublish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (channel, message) = (&args[1], &args[2]);
    let mut receivers = 0;
    for (id, s) in subscribers(&ctx.shared.shard_channels, channel) {
        let msg = PushMsg {
            pattern: None,
            shard: true,
            channel: channel.clone(),
            message: message.clone(),
        };
        if deliver(ctx.shared, &s, id, msg) {
            receivers += 1;
        }
    }
    Frame::Integer(receivers)
}

/// Names in a registry matching an optional pattern, sorted.
fn channel_names(registry: &Registry, pattern: Option<&Bytes>) -> Frame {
    let mut names: Vec<Bytes> = registry
        .lock()
        .keys()
        .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
        .cloned()
        .collect();
    names.sort();
    Frame::Array(names.into_iter().map(Frame::Bulk).collect())
}

/// Each channel with its subscriber count, flat as Redis replies.
fn subscriber_counts(registry: &Registry, channels: &[Bytes]) -> Frame {
    let map = registry.lock();
    let mut out = Vec::new();
    for c in channels {
        out.push(Frame::Bulk(c.clone()));
        out.push(Frame::Integer(map.get(c).map_or(0, |s| s.len()) as i64));
    }
    Frame::Array(out)
}

fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let shared = ctx.shared;
    match subcommand(args, PUBSUB_SUBCOMMANDS, "pubsub") {
        Err(e) => e,
        // Redis's table lets these take any count of arguments and their
        // handler then refuses more than one pattern with this text.
        Ok("channels" | "shardchannels") if args.len() > 3 => Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            lossy(&args[1])
        )),
        Ok("channels") => channel_names(&shared.channels, args.get(2)),
        Ok("shardchannels") => channel_names(&shared.shard_channels, args.get(2)),
        Ok("numsub") => subscriber_counts(&shared.channels, &args[2..]),
        Ok("shardnumsub") => subscriber_counts(&shared.shard_channels, &args[2..]),
        Ok("numpat") => Frame::Integer(shared.patterns.lock().len() as i64),
        Ok(_) => help_reply(&args[0], PUBSUB_HELP),
    }
}
