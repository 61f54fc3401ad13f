//! Pub/Sub within this region: SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs,
//! PUBLISH and PUBSUB. Messages are not replicated to other regions.

use std::collections::HashMap;

use bytes::Bytes;
use meridian_resp::Frame;
use parking_lot::Mutex;

use super::spec::{spec, Ctx, Flags, Spec, READ};
use super::util::{eq_ignore_case, glob_match};
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
        spec("publish", 3, READ, (0, 0, 0), publish),
        spec("pubsub", -2, READ, (0, 0, 0), pubsub),
    ]
}

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
            Frame::bulk("message"),
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

/// Drops every subscription of a closing connection.
pub fn unsubscribe_all(shared: &Shared, client: &mut Client) {
    for ch in std::mem::take(&mut client.channels) {
        leave(&shared.channels, &ch, client.id);
    }
    for p in std::mem::take(&mut client.patterns) {
        leave(&shared.patterns, &p, client.id);
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

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (channel, message) = (&args[1], &args[2]);
    let mut receivers = 0;
    let direct: Vec<(u64, PushSender)> = ctx
        .shared
        .channels
        .lock()
        .get(channel)
        .map(|subs| subs.iter().map(|(id, s)| (*id, s.clone())).collect())
        .unwrap_or_default();
    for (id, s) in direct {
        let msg = PushMsg {
            pattern: None,
            channel: channel.clone(),
            message: message.clone(),
        };
        if deliver(ctx.shared, &s, id, msg) {
            receivers += 1;
        }
    }
    let by_pattern: Vec<(Bytes, u64, PushSender)> = ctx
        .shared
        .patterns
        .lock()
        .iter()
        .filter(|(p, _)| glob_match(p, channel, false))
        .flat_map(|(p, subs)| subs.iter().map(move |(id, s)| (p.clone(), *id, s.clone())))
        .collect();
    for (p, id, s) in by_pattern {
        let msg = PushMsg {
            pattern: Some(p),
            channel: channel.clone(),
            message: message.clone(),
        };
        if deliver(ctx.shared, &s, id, msg) {
            receivers += 1;
        }
    }
    Frame::Integer(receivers)
}

fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    if eq_ignore_case(sub, "channels") && args.len() <= 3 {
        let pattern = args.get(2);
        let mut names: Vec<Frame> = ctx
            .shared
            .channels
            .lock()
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .map(|c| Frame::Bulk(c.clone()))
            .collect();
        names.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        Frame::Array(names)
    } else if eq_ignore_case(sub, "numsub") {
        let channels = ctx.shared.channels.lock();
        let mut out = Vec::new();
        for c in &args[2..] {
            out.push(Frame::Bulk(c.clone()));
            out.push(Frame::Integer(channels.get(c).map_or(0, |s| s.len()) as i64));
        }
        Frame::Array(out)
    } else if eq_ignore_case(sub, "numpat") && args.len() == 2 {
        Frame::Integer(ctx.shared.patterns.lock().len() as i64)
    } else {
        Frame::error(format!(
            "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(sub)
        ))
    }
}
