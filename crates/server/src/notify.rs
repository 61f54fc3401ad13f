//! Keyspace notifications (`notify-keyspace-events`), as Redis 7.0 sends
//! them: `__keyspace@0__:<key>` with the event's name as the message (`K`)
//! and `__keyevent@0__:<event>` with the key as the message (`E`),
//! published through Pub/Sub ([`crate::cmd::pubsub::publish_message`]) to
//! channel and pattern subscribers of this region.
//!
//! Who announces what:
//! - A command run here announces its own events from its handler
//!   ([`emit`]), with Redis's names, classes and order.
//! - The store's change feed ([`meridian_store::Change`]) supplies the rest:
//!   `new` when a write created a key, `expired` when this region expired a
//!   key (lazily or in the active cycle), the event of each effect of a
//!   peer's op, and `merged` (class `g`) when anti-entropy changed a key's
//!   state here. [`emit`] announces what the feed recorded so far before
//!   the command's own event, so a key's expiry or creation comes first, as
//!   in Redis; what is left is announced when the feed is drained
//!   ([`on_changes`]).
//!
//! The flags live in one atomic: with a command's class off, [`emit`] costs
//! one load and a branch. `evicted` (`e`) is accepted and never sent: there
//! is no `maxmemory`, so nothing is evicted. Key misses (`m`) are not sent
//! either.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use meridian_store::{Change, Db, Origin};

use crate::cmd::spec::Ctx;
use crate::shared::Shared;

/// `K`: `__keyspace@0__:<key>` channels.
pub const KEYSPACE: u32 = 1 << 0;
/// `E`: `__keyevent@0__:<event>` channels.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME…).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted-set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: keys expired.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: keys evicted (never sent: nothing is evicted).
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses (not sent).
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events (no modules).
pub const MODULE: u32 = 1 << 12;
/// `n`: a key was created.
pub const NEW: u32 = 1 << 13;
/// `A`: what Redis 7.0's `A` stands for, `g$lshzxetd` (not `m` or `n`).
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Every event class: a notification needs one of these and `K` or `E`.
const CLASSES: u32 = ALL | KEY_MISS | NEW;

/// The class letters in the order Redis lists them when it renders flags.
const LETTERS: [(u8, u32); 11] = [
    (b'g', GENERIC),
    (b'$', STRING),
    (b'l', LIST),
    (b's', SET),
    (b'h', HASH),
    (b'z', ZSET),
    (b'x', EXPIRED),
    (b'e', EVICTED),
    (b't', STREAM),
    (b'd', MODULE),
    (b'n', NEW),
];

/// The error Redis gives for a character that is no class.
pub const INVALID_CLASS: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// The class a letter names (as the store's [`meridian_store::Event`]
/// carries it); 0 for none.
pub fn class(letter: u8) -> u32 {
    match letter {
        b'A' => ALL,
        b'K' => KEYSPACE,
        b'E' => KEYEVENT,
        b'm' => KEY_MISS,
        _ => LETTERS
            .iter()
            .find(|(l, _)| *l == letter)
            .map_or(0, |(_, c)| *c),
    }
}

/// Parses a `notify-keyspace-events` value: any of `Ag$lshzxeKEtmdn`, in
/// any order and repeated; the empty string turns everything off.
pub fn parse(text: &[u8]) -> Result<u32, &'static str> {
    text.iter().try_fold(0, |flags, &c| match class(c) {
        0 => Err(INVALID_CLASS),
        bits => Ok(flags | bits),
    })
}

/// The canonical text of `flags`, as Redis 7.0's CONFIG GET shows it: `A`
/// when every class it stands for is on, else each class's letter; then
/// `K`, `E` and `m`. Like Redis 7.0, `A` hides `n` (`AKEn` shows as `AKE`,
/// though new-key events are on).
pub fn render(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (letter, bits) in LETTERS {
            if flags & bits != 0 {
                out.push(letter as char);
            }
        }
    }
    for (letter, bits) in [('K', KEYSPACE), ('E', KEYEVENT), ('m', KEY_MISS)] {
        if flags & bits != 0 {
            out.push(letter);
        }
    }
    out
}

/// The flags in force.
pub fn flags(shared: &Shared) -> u32 {
    shared.notify_flags.load(Ordering::Relaxed)
}

/// Whether any event would be published: a class and a kind of channel.
fn on(flags: u32) -> bool {
    flags & CLASSES != 0 && flags & (KEYSPACE | KEYEVENT) != 0
}

/// Sets the flags (CONFIG SET, a reload) and turns the store's change feed
/// on or off to match. The caller holds the store lock.
pub fn set_flags(shared: &Shared, store: &mut meridian_store::Store, flags: u32) {
    shared.notify_flags.store(flags, Ordering::Relaxed);
    crate::events::refresh_feed(shared, store);
}

/// Announces event `event` of class `class` for `key`, made by the command
/// running now; first whatever the change feed recorded before it (the
/// key's creation, an expiry the command's lookup caused), as Redis
/// announces those when they happen.
pub fn emit(ctx: &mut Ctx<'_>, class: u32, event: &'static str, key: &[u8]) {
    let flags = flags(ctx.shared);
    if !on(flags) {
        return;
    }
    announce_pending(ctx.shared, ctx.store.db_mut(), flags);
    if flags & class != 0 {
        publish(ctx.shared, flags, event, key);
    }
}

/// Announces `keymiss` (class `m`) for each key a read-only command looked
/// for and did not find, as Redis's lookups do; one atomic load when the
/// class is off. Run after the command: a read changes nothing, and a key
/// its lookup expired is a miss, as in Redis.
pub fn key_misses(ctx: &mut Ctx<'_>, spec: &crate::cmd::Spec, args: &[bytes::Bytes]) {
    let flags = flags(ctx.shared);
    if flags & KEY_MISS == 0 || !on(flags) {
        return;
    }
    let reads = spec.redis_flags.readonly;
    if !reads {
        return;
    }
    let keys: Vec<Vec<u8>> = crate::guard::command_keys(spec, args)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    for key in keys {
        if ctx.store.db().peek(&key).is_none() {
            publish(ctx.shared, flags, "keymiss", &key);
        }
    }
}

/// [`emit`] for a command that replaced the value of `key`, which existed
/// before it: Redis overwrites such a key in place and announces no `new`
/// for it, though Meridian deletes it and writes it afresh (SINTERSTORE
/// and the other STOREs, an LMOVE from a list to itself).
pub fn emit_replaced(ctx: &mut Ctx<'_>, class: u32, event: &'static str, key: &[u8]) {
    let flags = flags(ctx.shared);
    if !on(flags) {
        return;
    }
    for change in ctx.store.db_mut().announce_changes() {
        if change.created && change.key[..] == *key {
            announce(ctx.shared, flags & !NEW, change);
        } else {
            announce(ctx.shared, flags, change);
        }
    }
    if flags & class != 0 {
        publish(ctx.shared, flags, event, key);
    }
}

/// Announces a STORE command's write of `key`, which it deleted first:
/// `event` if it stored a result (with `new` only if the key did not exist
/// before, as Redis overwrites in place), `del` if an empty result removed
/// a key that existed, nothing otherwise.
pub fn emit_store(
    ctx: &mut Ctx<'_>,
    class: u32,
    event: &'static str,
    key: &[u8],
    existed: bool,
    stored: bool,
) {
    match (stored, existed) {
        (true, true) => emit_replaced(ctx, class, event, key),
        (true, false) => emit(ctx, class, event, key),
        (false, true) => emit(ctx, GENERIC, "del", key),
        (false, false) => {}
    }
}

/// Announces `del` if `key` is gone: a removal (HDEL, SREM, a pop…) left
/// its collection empty, which deletes the key.
pub fn emit_del_if_emptied(ctx: &mut Ctx<'_>, key: &[u8]) {
    let flags = flags(ctx.shared);
    if flags & GENERIC == 0 || !on(flags) {
        return;
    }
    if ctx.store.db().peek(key).is_none() {
        emit(ctx, GENERIC, "del", key);
    }
}

/// Announces what the change feed recorded since it was last announced or
/// drained.
fn announce_pending(shared: &Shared, db: &mut Db, flags: u32) {
    for change in db.announce_changes() {
        announce(shared, flags, change);
    }
}

/// Whether notifications need the store's change feed: whenever any event
/// would be published, since peers' writes, expiries and new keys all come
/// from it.
pub fn wants_changes(shared: &Shared) -> bool {
    on(flags(shared))
}

/// Emits the events for changes that no local command announced itself:
/// new keys, expiries, peers' ops and merged state. A local change is
/// announced by its command's handler.
pub fn on_changes(shared: &Shared, changes: &[Change]) {
    let flags = flags(shared);
    if !on(flags) {
        return;
    }
    for change in changes {
        announce(shared, flags, change);
    }
}

fn announce(shared: &Shared, flags: u32, change: &Change) {
    if change.created && flags & NEW != 0 {
        publish(shared, flags, "new", &change.key);
    }
    let (bits, name) = match change.origin {
        Origin::Local => return,
        Origin::Expired => (EXPIRED, "expired"),
        Origin::Peer(event) => (class(event.class), event.name),
        Origin::Merged => (GENERIC, "merged"),
    };
    if flags & bits != 0 {
        publish(shared, flags, name, &change.key);
    }
}

/// Publishes one event on the channels `flags` asks for.
fn publish(shared: &Shared, flags: u32, event: &'static str, key: &[u8]) {
    let channel = |prefix: &str, rest: &[u8]| {
        let mut c = BytesMut::with_capacity(prefix.len() + rest.len());
        c.extend_from_slice(prefix.as_bytes());
        c.extend_from_slice(rest);
        c.freeze()
    };
    let key = Bytes::copy_from_slice(key);
    let name = Bytes::from_static(event.as_bytes());
    if flags & KEYSPACE != 0 {
        let ch = channel("__keyspace@0__:", &key);
        crate::cmd::pubsub::publish_message(shared, &ch, &name);
    }
    if flags & KEYEVENT != 0 {
        let ch = channel("__keyevent@0__:", event.as_bytes());
        crate::cmd::pubsub::publish_message(shared, &ch, &key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_as_redis_renders_them() {
        let cases = [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("", ""),
            ("Kg$lshzxetd", "AK"),
            ("AKEmn", "AKEm"),
            ("AKEn", "AKE"),
            ("nE", "nE"),
            ("xxK", "xK"),
        ];
        for (given, shown) in cases {
            assert_eq!(render(parse(given.as_bytes()).unwrap()), shown, "{given}");
        }
    }

    #[test]
    fn a_character_that_is_no_class_is_refused() {
        assert_eq!(parse(b"KEQ"), Err(INVALID_CLASS));
        assert_eq!(parse(b"a"), Err(INVALID_CLASS));
        assert_eq!(parse(b" K"), Err(INVALID_CLASS));
    }

    #[test]
    fn nothing_is_on_without_a_class_and_a_channel_kind() {
        assert!(!on(parse(b"KE").unwrap()));
        assert!(!on(parse(b"A").unwrap()));
        assert!(on(parse(b"Kg").unwrap()));
        assert!(on(parse(b"En").unwrap()));
    }
}
