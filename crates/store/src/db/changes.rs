//! The change feed: which keys changed, and who changed them, for the
//! consumers that react to every change wherever it was made (keyspace
//! notifications and client tracking in the server). It records only while
//! some consumer has turned it on, so a region that uses neither pays
//! nothing per write.

use meridian_crdt::{Blob, EffectKind};

use super::Db;

/// One change to one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: Blob,
    pub origin: Origin,
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
    const fn new(class: u8, name: &'static str) -> Event {
        Event { class, name }
    }
}

/// The event a peer's effect stands for, `None` for the bookkeeping
/// effects no command is seen to make. `was_live`: whether the key was
/// visible here before the effect (an expiry of a key already gone here
/// is no event).
pub fn event_of(kind: &EffectKind, was_live: bool) -> Option<Event> {
    Some(match kind {
        EffectKind::Del { .. } => Event::new(b'g', "del"),
        EffectKind::Expire { .. } if was_live => Event::new(b'x', "expired"),
        EffectKind::Expire { .. } => return None,
        EffectKind::SetTtl {
            deadline_ms: Some(_),
        } => Event::new(b'g', "expire"),
        EffectKind::SetTtl { deadline_ms: None } => Event::new(b'g', "persist"),
        EffectKind::StrSet { .. } => Event::new(b'$', "set"),
        EffectKind::StrIncr { .. } => Event::new(b'$', "incrby"),
        EffectKind::HSet { .. } => Event::new(b'h', "hset"),
        EffectKind::HDel { .. } => Event::new(b'h', "hdel"),
        EffectKind::HIncr { .. } => Event::new(b'h', "hincrby"),
        EffectKind::SAdd { .. } => Event::new(b's', "sadd"),
        EffectKind::SRem { .. } => Event::new(b's', "srem"),
        EffectKind::ZAdd { .. } => Event::new(b'z', "zadd"),
        EffectKind::ZIncr { .. } => Event::new(b'z', "zincr"),
        EffectKind::ZRem { .. } => Event::new(b'z', "zrem"),
        EffectKind::LInsert { .. } => Event::new(b'l', "linsert"),
        EffectKind::LRemove { .. } => Event::new(b'l', "lrem"),
        EffectKind::LSet { .. } => Event::new(b'l', "lset"),
        EffectKind::DropTtl => return None,
    })
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
            Some(changes) => std::mem::take(changes),
            None => Vec::new(),
        }
    }

    pub(super) fn record_change(&mut self, key: &[u8], origin: Origin) {
        if let Some(changes) = &mut self.changes {
            changes.push(Change {
                key: Blob::from(key),
                origin,
            });
        }
    }
}
