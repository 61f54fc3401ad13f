//! The change feed: which keys changed, and who changed them, for the
//! consumers that react to every change wherever it was made (keyspace
//! notifications and client tracking in the server). It records only while
//! some consumer has turned it on, so a region that uses neither pays
//! nothing per write.

use meridian_crdt::{Blob, Delta, EffectKind, Entry, ListVal, Pos, Value};

use super::Db;

/// One change to one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: Blob,
    pub origin: Origin,
    /// The change created the key: it was not visible here before (Redis's
    /// `new` event, which precedes the change's own).
    pub created: bool,
}

/// The feed while it is on: what was recorded since it was last taken,
/// and how many of those changes were already announced as they happened
/// ([`Db::announce_changes`]).
#[derive(Debug, Default)]
pub(super) struct Feed {
    changes: Vec<Change>,
    announced: usize,
}

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A command of this region (the batch that ran it takes the change).
    Local,
    /// This region expired the key (lazily on access, or by active
    /// expiry): Redis's `expired` event, emitted where the expiry happened.
    Expired,
    /// A peer's op (or this region's own op replayed from the log), with
    /// the event Redis would emit for the effect it carried.
    Peer(Event),
    /// Anti-entropy merged a peer's state of the key.
    Merged,
}

/// A keyspace event: its class (a `notify-keyspace-events` letter) and its
/// name, as Redis names the event of the command that makes such a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub class: u8,
    pub name: &'static str,
}

impl Event {
    pub const fn new(class: u8, name: &'static str) -> Event {
        Event { class, name }
    }
}

/// The event of a key deleted because a removal left it empty.
pub const DEL: Event = Event::new(b'g', "del");

/// The event a peer's effect stands for, `None` for the bookkeeping
/// effects no command is seen to make and for removals of a key not
/// visible here. `before`: the key's visible entry here before the effect.
///
/// An effect says what changed, not which command changed it, so some names
/// are coarser than the command's: every whole-string write (SET, APPEND,
/// SETRANGE, SETBIT, GETSET…) is `set`, every removal of sorted-set members
/// (ZREM, ZPOPMIN, ZREMRANGEBYSCORE…) is `zrem`, of set members (SREM,
/// SPOP, SMOVE's source) `srem`. List inserts and removals are named from
/// where they land in the list as this region holds it ([`list_insert`],
/// [`list_remove`]).
pub fn event_of(kind: &EffectKind, before: Option<&Entry>) -> Option<Event> {
    let was_live = before.is_some();
    let list = before.and_then(|e| match e.value() {
        Value::List(l) => Some(&**l),
        _ => None,
    });
    Some(match kind {
        EffectKind::Del { .. } if was_live => Event::new(b'g', "del"),
        EffectKind::Del { .. } => return None,
        EffectKind::Expire { .. } if was_live => Event::new(b'x', "expired"),
        EffectKind::Expire { .. } => return None,
        EffectKind::SetTtl {
            deadline_ms: Some(_),
        } => Event::new(b'g', "expire"),
        EffectKind::SetTtl { deadline_ms: None } => Event::new(b'g', "persist"),
        EffectKind::StrSet { .. } => Event::new(b'$', "set"),
        EffectKind::StrIncr {
            delta: Delta::Int(_),
            ..
        } => Event::new(b'$', "incrby"),
        EffectKind::StrIncr {
            delta: Delta::Float(_),
            ..
        } => Event::new(b'$', "incrbyfloat"),
        EffectKind::HSet { .. } => Event::new(b'h', "hset"),
        EffectKind::HDel { .. } => Event::new(b'h', "hdel"),
        EffectKind::HIncr {
            delta: Delta::Int(_),
            ..
        } => Event::new(b'h', "hincrby"),
        EffectKind::HIncr {
            delta: Delta::Float(_),
            ..
        } => Event::new(b'h', "hincrbyfloat"),
        EffectKind::SAdd { .. } => Event::new(b's', "sadd"),
        EffectKind::SRem { .. } => Event::new(b's', "srem"),
        EffectKind::ZAdd { .. } => Event::new(b'z', "zadd"),
        EffectKind::ZIncr { .. } => Event::new(b'z', "zincr"),
        EffectKind::ZRem { .. } => Event::new(b'z', "zrem"),
        EffectKind::LInsert { items } => Event::new(b'l', list_insert(list, items)),
        EffectKind::LRemove { ranges } => Event::new(b'l', list_remove(list, ranges)),
        EffectKind::LSet { .. } => Event::new(b'l', "lset"),
        // A partial write is named by what it patches: bits as SETBIT and
        // BITFIELD announce, registers as PFADD and PFMERGE do.
        EffectKind::StrPatch { patches, fold, .. } => {
            let registers = patches
                .iter()
                .any(|p| matches!(p, meridian_crdt::Patch::Register { .. }));
            if registers || fold.as_ref().is_some_and(|v| meridian_crdt::hll::is_hll(v)) {
                Event::new(b'$', "pfadd")
            } else {
                Event::new(b'$', "setbit")
            }
        }
        EffectKind::DropTtl => return None,
        EffectKind::XAdd { .. } => Event::new(b't', "xadd"),
        EffectKind::XDel { .. } => Event::new(b't', "xdel"),
        EffectKind::XTrim { .. } => Event::new(b't', "xtrim"),
        EffectKind::XSetId { .. } => Event::new(b't', "xsetid"),
        EffectKind::XGroupCreate { .. } => Event::new(b't', "xgroup-create"),
        EffectKind::XGroupSetId { .. } => Event::new(b't', "xgroup-setid"),
        EffectKind::XGroupDestroy { group } if stream_group(before, group).is_some() => {
            Event::new(b't', "xgroup-destroy")
        }
        EffectKind::XConsumerDel { group, consumer }
            if stream_group(before, group).is_some_and(|g| g.has_consumer(consumer)) =>
        {
            Event::new(b't', "xgroup-delconsumer")
        }
        // A consumer this region did not know of was created (by
        // CREATECONSUMER, or by the read or claim that served it).
        EffectKind::XConsumerCreate {
            group, consumer, ..
        }
        | EffectKind::XDeliver {
            group,
            delivery:
                meridian_crdt::Delivery {
                    consumer: Some(consumer),
                    ..
                },
        } if !stream_group(before, group).is_some_and(|g| g.has_consumer(consumer)) => {
            Event::new(b't', "xgroup-createconsumer")
        }
        // Reads, claims and acknowledgements change no key Redis announces.
        EffectKind::XGroupDestroy { .. }
        | EffectKind::XConsumerDel { .. }
        | EffectKind::XConsumerCreate { .. }
        | EffectKind::XDeliver { .. }
        | EffectKind::XAck { .. } => return None,
        // Libraries are not keys: `Db::libraries_generation` says they changed.
        EffectKind::LibrarySet { .. } | EffectKind::LibraryDel => return None,
    })
}

/// The group `name` of the stream `before` holds, if it has one.
fn stream_group<'a>(before: Option<&'a Entry>, name: &[u8]) -> Option<&'a meridian_crdt::Group> {
    match before?.value() {
        Value::Stream(s) => s.group(name),
        _ => None,
    }
}

/// Which command an insert looks like: before the first element `lpush`,
/// after the last `rpush`, between two `linsert`. Into an empty list,
/// several values pushed to the front come in descending position order
/// (`lpush`); a single value cannot be told and counts as `rpush`.
pub fn list_insert(list: Option<&ListVal>, items: &[(Pos, Blob)]) -> &'static str {
    let (Some(lo), Some(hi)) = (
        items.iter().map(|(p, _)| p).min(),
        items.iter().map(|(p, _)| p).max(),
    ) else {
        return "rpush";
    };
    match list.and_then(|l| Some((l.first()?, l.last()?))) {
        Some((first, _)) if *hi < *first.pos => "lpush",
        Some((_, last)) if *lo > *last.pos => "rpush",
        Some(_) => "linsert",
        None if items.len() > 1 && items[0].0 > items[1].0 => "lpush",
        None => "rpush",
    }
}

/// Which command a removal looks like: one range holding the first
/// element `lpop`, one holding the last `rpop`, two holding both ends
/// `ltrim`, anything else `lrem`.
pub fn list_remove(list: Option<&ListVal>, ranges: &[(Pos, Pos)]) -> &'static str {
    let Some((first, last)) = list.and_then(|l| Some((l.first()?, l.last()?))) else {
        return "lrem";
    };
    let holds = |p: &Pos| ranges.iter().any(|(lo, hi)| lo <= p && p <= hi);
    let (head, tail) = (holds(&first.pos), holds(&last.pos));
    match (ranges.len(), head, tail) {
        (1, true, _) => "lpop",
        (1, false, true) => "rpop",
        (2, true, true) => "ltrim",
        _ => "lrem",
    }
}

/// Whether an effect writes content, so that it creates a key not visible
/// before it.
pub fn creates_key(kind: &EffectKind) -> bool {
    matches!(
        kind,
        EffectKind::StrSet { .. }
            | EffectKind::StrIncr { .. }
            | EffectKind::StrPatch { .. }
            | EffectKind::HSet { .. }
            | EffectKind::HIncr { .. }
            | EffectKind::SAdd { .. }
            | EffectKind::ZAdd { .. }
            | EffectKind::ZIncr { .. }
            | EffectKind::LInsert { .. }
            | EffectKind::XAdd { .. }
            | EffectKind::XSetId { .. }
            | EffectKind::XGroupCreate { .. }
    )
}

impl Db {
    /// Turns the change feed on or off; off forgets what it held.
    pub fn set_change_feed(&mut self, on: bool) {
        self.changes = on.then(|| self.changes.take().unwrap_or_default());
    }

    pub fn change_feed_on(&self) -> bool {
        self.changes.is_some()
    }

    /// The changes recorded since the last call, in the order they were made.
    pub fn take_changes(&mut self) -> Vec<Change> {
        match &mut self.changes {
            Some(feed) => {
                feed.announced = 0;
                std::mem::take(&mut feed.changes)
            }
            None => Vec::new(),
        }
    }

    /// How many of the changes [`Db::take_changes`] would return now were
    /// already handed out by [`Db::announce_changes`] (they lead the list).
    pub fn changes_announced(&self) -> usize {
        self.changes.as_ref().map_or(0, |f| f.announced)
    }

    /// The changes recorded since the last call (or take), without taking
    /// them: for keyspace notifications, which must announce an expiry or
    /// a key's creation in the middle of a command, before the command's
    /// own event. [`Db::take_changes`] still returns them.
    pub fn announce_changes(&mut self) -> &[Change] {
        match &mut self.changes {
            Some(feed) => {
                let from = feed.announced;
                feed.announced = feed.changes.len();
                &feed.changes[from..]
            }
            None => &[],
        }
    }

    pub(super) fn record_change(&mut self, key: &[u8], origin: Origin, created: bool) {
        if let Some(feed) = &mut self.changes {
            feed.changes.push(Change {
                key: Blob::from(key),
                origin,
                created,
            });
        }
    }
}
