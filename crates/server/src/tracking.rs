//! Client tracking (CLIENT TRACKING): invalidation messages for keys that
//! tracking clients read, whichever region changed them.
//!
//! Redis's server-assisted client-side caching, as Redis 7.0 does it:
//! - **Default mode.** After a tracking client's read-only command
//!   succeeds, dispatch hands its keys to [`remember`] (unless OPTIN without
//!   `CLIENT CACHING yes`, or OPTOUT after `CLIENT CACHING no`). The table
//!   maps each key to the clients that read it. When the key changes, each
//!   of them gets one invalidation and the key leaves the table: the client
//!   is told once, and is tracked again only when it reads the key again.
//! - **BCAST.** A client registers key prefixes (none: the empty prefix,
//!   every key) and is sent, per prefix, the keys that changed and start
//!   with it, one message per prefix for each batch of changes.
//! - **Where changes come from.** [`on_changes`] is fed the store's change
//!   feed ([`crate::events`]): this region's writes, its expiries, other
//!   regions' ops and anti-entropy merges alike, so a client caching in one
//!   region is invalidated by a write made in any other. The feed records
//!   only while some client tracks ([`wants_changes`]).
//! - **Delivery.** Every connection registers a [`Note`] channel
//!   ([`connect`]); a note is rendered by the connection that receives it
//!   ([`encode_pending`]), for the protocol and Pub/Sub state it has then:
//!   a RESP3 connection gets a `>2 invalidate [keys]` push; a RESP2
//!   connection that another one redirects to gets, while it is
//!   subscribed, a `message` on `__redis__:invalidate` whose payload is the
//!   array of keys; anything else is dropped. A redirect whose target is
//!   gone marks the client `broken_redirect` and sends it
//!   `tracking-redir-broken` (RESP3 only). Notes reach a connection after
//!   the replies of the batch it is running, and before the replies of the
//!   next one, as Redis sends an invalidation caused by a client's own
//!   command after that command's reply.
//! - **NOLOOP** skips the client's own writes (a change this region's
//!   command made in that client's batch); expiries and other regions'
//!   writes are never its own.
//! - **FLUSHALL/FLUSHDB** ([`flushed`]) send every tracking client a null
//!   key list (every key is invalid) and empty the table. Another region's
//!   flush arrives as deletes of the keys it observed and invalidates those.
//! - **`tracking-table-max-keys`** bounds the table: past it, keys are
//!   dropped (their readers invalidated as if they had changed), on each
//!   remember and by [`bound_table`] when the limit is lowered.
//!
//! The state lives in `Shared::tracking`, a leaf lock: it is taken under
//! the store lock (dispatch, the feed's drains) or alone, and nothing is
//! taken while it is held (notes go out with `try_send`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meridian_crdt::Blob;
use meridian_resp::{encode, parse_redis_int, Frame, Protocol};
use meridian_store::{Change, Origin, Store};
use tokio::sync::{mpsc, Notify};

use crate::client::Client;
use crate::cmd::redis_meta;
use crate::cmd::spec::{Ctx, Spec};
use crate::cmd::util::{eq_ignore_case, lossy, not_integer, syntax_error};
use crate::shared::Shared;

/// Notes waiting for a connection that does not read them before it is
/// disconnected (as a Pub/Sub subscriber is).
pub const NOTE_QUEUE_MAX: usize = 4096;
/// Redis's default `tracking-table-max-keys`.
pub const TABLE_MAX_KEYS_DEFAULT: usize = 1_000_000;
/// How often [`bound_table`] applies a changed `tracking-table-max-keys`
/// (Redis checks it every cron run, 10 times a second).
const BOUND_INTERVAL_MS: u64 = 100;
/// The Pub/Sub channel of RESP2 redirect targets.
pub const INVALIDATE_CHANNEL: &str = "__redis__:invalidate";

/// An invalidation on its way to a connection.
#[derive(Debug, Clone)]
pub enum Note {
    /// Keys to drop from the cache; `None`: every key (a flush).
    /// `redirected`: sent on another connection's behalf (REDIRECT).
    Invalidate {
        keys: Option<Arc<[Bytes]>>,
        redirected: bool,
    },
    /// The connection this client redirects to (its id) is gone.
    RedirBroken(u64),
}

pub type NoteSender = mpsc::Sender<Note>;

/// What a tracking connection knows of its own tracking, so that dispatch
/// decides whether to remember a read without taking the lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Own {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    /// `CLIENT CACHING yes` (OPTIN) or `no` (OPTOUT) applies to the next
    /// command, or to the next transaction.
    pub caching: bool,
}

impl Own {
    /// Whether the next command's reads are remembered: OPTIN tracks only
    /// after CLIENT CACHING yes, OPTOUT all but after CLIENT CACHING no;
    /// BCAST does not track reads.
    fn tracks_reads(&self) -> bool {
        !(self.bcast || (self.optin && !self.caching) || (self.optout && self.caching))
    }
}

/// A tracking client's settings, as other connections' changes need them.
#[derive(Debug, Default)]
struct Tracker {
    /// The connection its notes go to; 0: its own.
    redirect: u64,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    broken_redirect: bool,
    /// BCAST prefixes, in byte order.
    prefixes: BTreeSet<Blob>,
}

/// A connection's way in, and how to disconnect it when it stops reading.
struct Conn {
    notes: NoteSender,
    kill: Arc<Notify>,
    killed: Arc<AtomicBool>,
}

/// The tracking table and every connection's note channel
/// (`Shared::tracking`).
pub struct Tracking {
    conns: HashMap<u64, Conn>,
    trackers: HashMap<u64, Tracker>,
    /// Default mode: each key read, with the clients that read it.
    keys: HashMap<Blob, BTreeSet<u64>>,
    /// Client ids across `keys` (INFO's `tracking_total_items`).
    items: usize,
    /// BCAST: each prefix with the clients registered for it.
    prefixes: BTreeMap<Blob, BTreeSet<u64>>,
    /// `tracking-table-max-keys` as last read; 0: no limit.
    max_keys: usize,
    /// A flush is handing out the changes before it: they are covered by
    /// the null invalidation that follows.
    flushing: bool,
}

impl Default for Tracking {
    fn default() -> Tracking {
        Tracking {
            conns: HashMap::new(),
            trackers: HashMap::new(),
            keys: HashMap::new(),
            items: 0,
            prefixes: BTreeMap::new(),
            max_keys: TABLE_MAX_KEYS_DEFAULT,
            flushing: false,
        }
    }
}

/// Queues a note for connection `to`; one whose queue is full is
/// disconnected rather than allowed to grow memory without bound.
fn push(conns: &HashMap<u64, Conn>, to: u64, note: Note) {
    let Some(conn) = conns.get(&to) else {
        return;
    };
    if let Err(mpsc::error::TrySendError::Full(_)) = conn.notes.try_send(note) {
        conn.killed.store(true, Ordering::Relaxed);
        conn.kill.notify_one();
    }
}

impl Tracking {
    /// Sends client `id` an invalidation, through its redirect if it has
    /// one (Redis's `sendTrackingMessage`).
    fn send(&mut self, id: u64, keys: Option<Arc<[Bytes]>>) {
        let Some(tracker) = self.trackers.get_mut(&id) else {
            return;
        };
        if tracker.redirect == 0 {
            push(
                &self.conns,
                id,
                Note::Invalidate {
                    keys,
                    redirected: false,
                },
            );
        } else if self.conns.contains_key(&tracker.redirect) {
            let note = Note::Invalidate {
                keys,
                redirected: true,
            };
            push(&self.conns, tracker.redirect, note);
        } else {
            tracker.broken_redirect = true;
            push(&self.conns, id, Note::RedirBroken(tracker.redirect));
        }
    }

    /// `key` changed (`writer`: the client whose command changed it): its
    /// default-mode readers are told once and forgotten. A reader that
    /// switched to BCAST, or whose own write this is under NOLOOP, is
    /// forgotten without a message, as in Redis.
    fn invalidate_key(&mut self, key: &[u8], writer: Option<u64>) {
        let Some(ids) = self.keys.remove(key) else {
            return;
        };
        self.items -= ids.len();
        let keys: Arc<[Bytes]> = Arc::new([Bytes::copy_from_slice(key)]);
        for id in ids {
            let Some(t) = self.trackers.get(&id) else {
                continue;
            };
            if t.bcast || (t.noloop && writer == Some(id)) {
                continue;
            }
            self.send(id, Some(keys.clone()));
        }
    }

    /// Drops keys past `max_keys`, invalidating their readers as if they
    /// had changed (Redis's `trackingLimitUsedSlots`). Which keys go is
    /// arbitrary, as Redis picks them at random.
    fn bound(&mut self) {
        if self.max_keys == 0 || self.keys.len() <= self.max_keys {
            return;
        }
        let excess = self.keys.len() - self.max_keys;
        let victims: Vec<Blob> = self.keys.keys().take(excess).cloned().collect();
        for key in victims {
            self.invalidate_key(&key, None);
        }
    }

    /// Client `id` stops tracking (Redis's `disableTracking`). Its ids in
    /// the table go lazily, when their keys change, as in Redis; once no
    /// client tracks, nobody could receive them and the table is emptied.
    fn disable(&mut self, id: u64) {
        let Some(tracker) = self.trackers.remove(&id) else {
            return;
        };
        for prefix in &tracker.prefixes {
            if let Some(ids) = self.prefixes.get_mut(prefix) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.prefixes.remove(prefix);
                }
            }
        }
        if self.trackers.is_empty() {
            self.keys.clear();
            self.items = 0;
        }
    }
}

// ----- the connection's side -----

/// Registers a new connection's note channel, so that invalidations (its
/// own, or redirected to it) reach it.
pub fn connect(
    shared: &Shared,
    id: u64,
    notes: NoteSender,
    kill: Arc<Notify>,
    killed: Arc<AtomicBool>,
) {
    let conn = Conn {
        notes,
        kill,
        killed,
    };
    shared.tracking.lock().conns.insert(id, conn);
}

/// A connection is closing: it leaves tracking and is no longer a
/// redirect target (clients redirecting to it see it broken from now on).
/// Safe to call twice.
pub fn disconnect(shared: &Shared, client: &mut Client) {
    if client.tracking.is_some() {
        let mut store = shared.store.lock();
        disable_client(shared, &mut store, client);
    }
    shared.tracking.lock().conns.remove(&client.id);
}

/// Encodes `first` and every note already queued behind it into `out`,
/// each as this connection's protocol and Pub/Sub state call for.
pub fn encode_pending(
    client: &Client,
    first: Option<Note>,
    rx: &mut mpsc::Receiver<Note>,
    out: &mut BytesMut,
) {
    let mut next = first;
    loop {
        let note = match next.take() {
            Some(n) => n,
            None => match rx.try_recv() {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        if let Some(frame) = render(note, client) {
            encode(&frame, client.proto, out);
        }
    }
}

/// What `note` looks like on `client`'s connection, if anything.
fn render(note: Note, client: &Client) -> Option<Frame> {
    match note {
        Note::Invalidate { keys, redirected } => {
            let keys = match keys {
                Some(keys) => Frame::Array(keys.iter().cloned().map(Frame::Bulk).collect()),
                None => Frame::Null,
            };
            if client.proto == Protocol::Resp3 {
                Some(Frame::Push(vec![Frame::bulk("invalidate"), keys]))
            } else if redirected && client.subscriptions() + client.shard_channels.len() > 0 {
                Some(Frame::Push(vec![
                    Frame::bulk("message"),
                    Frame::bulk(INVALIDATE_CHANNEL),
                    keys,
                ]))
            } else {
                // RESP2 has no push on the connection itself.
                None
            }
        }
        Note::RedirBroken(to) => (client.proto == Protocol::Resp3).then(|| {
            Frame::Push(vec![
                Frame::bulk("tracking-redir-broken"),
                Frame::Integer(i64::try_from(to).unwrap_or(i64::MAX)),
            ])
        }),
    }
}

// ----- the change feed's side -----

/// Whether tracking needs the store's change feed.
pub fn wants_changes(shared: &Shared) -> bool {
    !shared.tracking.lock().trackers.is_empty()
}

/// Sends invalidations for changed keys. `by`: the client that made the
/// local changes (NOLOOP skips it).
pub fn on_changes(shared: &Shared, changes: &[Change], by: Option<u64>) {
    let mut t = shared.tracking.lock();
    if t.flushing || t.trackers.is_empty() {
        return;
    }
    // BCAST: per prefix, the changed keys with who changed each last.
    let mut bcast: BTreeMap<Blob, BTreeMap<Blob, Option<u64>>> = BTreeMap::new();
    for change in changes {
        let writer = match change.origin {
            Origin::Local => by,
            Origin::Expired | Origin::Peer(_) | Origin::Merged => None,
        };
        for prefix in t.prefixes.keys() {
            if change.key.starts_with(prefix) {
                bcast
                    .entry(prefix.clone())
                    .or_default()
                    .insert(change.key.clone(), writer);
            }
        }
        t.invalidate_key(&change.key, writer);
    }
    for (prefix, keys) in bcast {
        let ids: Vec<u64> = t
            .prefixes
            .get(&prefix)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        let all: Arc<[Bytes]> = keys.keys().map(|k| Bytes::copy_from_slice(k)).collect();
        for id in ids {
            let noloop = t.trackers.get(&id).is_some_and(|tr| tr.noloop);
            if !noloop {
                t.send(id, Some(all.clone()));
                continue;
            }
            let others: Arc<[Bytes]> = keys
                .iter()
                .filter(|(_, writer)| **writer != Some(id))
                .map(|(k, _)| Bytes::copy_from_slice(k))
                .collect();
            if !others.is_empty() {
                t.send(id, Some(others));
            }
        }
    }
}

/// FLUSHALL and FLUSHDB (called by the command after it deleted every
/// key): every tracking client is told that every key is invalid, and the
/// table is emptied. The changes before and of the flush are handed out
/// first (notifications see them), tracking skipping them since the null
/// invalidation covers them.
pub fn flushed(shared: &Shared, store: &mut Store, by: u64) {
    if !wants_changes(shared) {
        return;
    }
    shared.tracking.lock().flushing = true;
    crate::events::drain(shared, store, Some(by));
    let mut t = shared.tracking.lock();
    t.flushing = false;
    let ids: Vec<u64> = t.trackers.keys().copied().collect();
    for id in ids {
        t.send(id, None);
    }
    t.keys.clear();
    t.items = 0;
}

/// Remembers the keys a tracking client's read-only command read
/// successfully, so that it is told when they change. Dispatch calls it
/// after every command it runs and EXEC after each queued one; for a
/// client that does not track it is one branch.
pub fn track_reads(ctx: &mut Ctx<'_>, spec: &Spec, args: &[Bytes], reply: &Frame) {
    let Some(own) = ctx.client.tracking else {
        return;
    };
    if spec.flags.write || reply.is_error() {
        return;
    }
    if !own.tracks_reads() {
        return;
    }
    let keys = read_keys(spec, args);
    if !keys.is_empty() {
        remember(ctx, &keys);
    }
}

/// A script that called a read-only command read its declared keys, as
/// Redis 7.0's tracking takes a script's reads: those keys are remembered
/// for the tracking client that ran it.
pub fn track_script_keys(ctx: &mut Ctx<'_>, keys: &[Bytes]) {
    let Some(own) = ctx.client.tracking else {
        return;
    };
    if !own.tracks_reads() {
        return;
    }
    let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    if !keys.is_empty() {
        remember(ctx, &keys);
    }
}

/// The keys a command reads, as Redis's tracking takes them: only a
/// command Redis flags `readonly` reads keys, found at its key positions
/// (by Redis's key specs where they move with a `numkeys`). A read-only
/// script's declared keys are not taken: the commands it runs are tracked
/// as they run.
fn read_keys<'a>(spec: &Spec, args: &'a [Bytes]) -> Vec<&'a [u8]> {
    if matches!(spec.name, "eval_ro" | "evalsha_ro" | "fcall_ro") {
        return Vec::new();
    }
    let Some(meta) = redis_meta::get(spec.name) else {
        return Vec::new();
    };
    // A container's subcommand (OBJECT ENCODING) has flags of its own.
    let sub = match (meta.field(9), args.get(1)) {
        (Some(Frame::Array(subs)), Some(sub)) if !subs.is_empty() => {
            let full = format!("{}|{}", spec.name, lossy(sub).to_ascii_lowercase());
            Some((redis_meta::get(&full), full))
        }
        _ => None,
    };
    let (meta, name) = match &sub {
        Some((Some(m), full)) => (*m, full.as_str()),
        Some((None, _)) => return Vec::new(),
        None => (meta, spec.name),
    };
    if !meta.has_flag("readonly") {
        return Vec::new();
    }
    if spec.keys.0 > 0 {
        crate::guard::command_keys(spec, args)
    } else {
        redis_meta::key_positions(name, args)
            .into_iter()
            .map(|i| &args[i][..])
            .collect()
    }
}

/// Adds `keys` to the table for the running client.
fn remember(ctx: &mut Ctx<'_>, keys: &[&[u8]]) {
    // A change an earlier command of this batch made to a key is handed
    // out first, so that it does not invalidate the value read now.
    crate::events::drain(ctx.shared, ctx.store, Some(ctx.client.id));
    let id = ctx.client.id;
    let mut t = ctx.shared.tracking.lock();
    for key in keys {
        if t.keys.entry(Blob::from(*key)).or_default().insert(id) {
            t.items += 1;
        }
    }
    if t.max_keys == 0 || t.keys.len() <= t.max_keys {
        return;
    }
    // Over the limit as last read: read it again (CONFIG SET may have
    // raised it since) before dropping anything.
    drop(t);
    let max_keys = table_max_keys(ctx.shared);
    let mut t = ctx.shared.tracking.lock();
    t.max_keys = max_keys;
    t.bound();
}

/// `tracking-table-max-keys` as CONFIG SET left it.
fn table_max_keys(shared: &Shared) -> usize {
    shared
        .config_kept
        .lock()
        .get("tracking-table-max-keys")
        .and_then(|v| v.parse().ok())
        .unwrap_or(TABLE_MAX_KEYS_DEFAULT)
}

/// After each command: `CLIENT CACHING` applies to the next command only,
/// or to the whole next transaction (Redis's `resetClient`).
pub fn after_command(client: &mut Client, was_client_command: bool) {
    if let Some(own) = client.tracking.as_mut() {
        if !was_client_command && client.multi.is_none() {
            own.caching = false;
        }
    }
}

/// Applies `tracking-table-max-keys` as `CONFIG SET` changes it: a lower
/// limit drops keys (invalidating their readers) within a tick.
pub async fn bound_table(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(BOUND_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let max_keys = table_max_keys(&shared);
        let mut t = shared.tracking.lock();
        t.max_keys = max_keys;
        t.bound();
    }
}

// ----- CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO; RESET -----

/// Whether two prefixes would both match some key (one starts the other).
fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The options of `CLIENT TRACKING on|off ...`, as parsed.
#[derive(Default)]
struct Options {
    redirect: u64,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: Vec<Bytes>,
}

/// Parses the options in Redis's order and with its errors; REDIRECT's
/// target must exist now (it may go later: the redirect then breaks).
fn parse_options(shared: &Shared, args: &[Bytes]) -> Result<Options, Frame> {
    let mut o = Options::default();
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        let arg = &args[j];
        if eq_ignore_case(arg, "redirect") && more {
            j += 1;
            if o.redirect != 0 {
                return Err(Frame::error(
                    "ERR A client can only redirect to a single other client",
                ));
            }
            let id = parse_redis_int(&args[j]).ok_or_else(not_integer)?;
            let exists = u64::try_from(id)
                .is_ok_and(|id| id != 0 && shared.tracking.lock().conns.contains_key(&id));
            if !exists {
                return Err(Frame::error(
                    "ERR The client ID you want redirect to does not exist",
                ));
            }
            o.redirect = id as u64;
        } else if eq_ignore_case(arg, "bcast") {
            o.bcast = true;
        } else if eq_ignore_case(arg, "optin") {
            o.optin = true;
        } else if eq_ignore_case(arg, "optout") {
            o.optout = true;
        } else if eq_ignore_case(arg, "noloop") {
            o.noloop = true;
        } else if eq_ignore_case(arg, "prefix") && more {
            j += 1;
            o.prefixes.push(args[j].clone());
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(o)
}

/// `CLIENT TRACKING on|off [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN]
/// [OPTOUT] [NOLOOP]`.
pub fn client_tracking(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let o = match parse_options(ctx.shared, args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    if eq_ignore_case(&args[2], "on") {
        match enable(ctx, o) {
            Ok(()) => Frame::ok(),
            Err(e) => e,
        }
    } else if eq_ignore_case(&args[2], "off") {
        disable(ctx);
        Frame::ok()
    } else {
        syntax_error()
    }
}

/// Turns tracking on, or changes it while on (Redis's checks, in order:
/// options that contradict each other or the mode in force, then prefixes
/// that overlap the client's or each other).
fn enable(ctx: &mut Ctx<'_>, o: Options) -> Result<(), Frame> {
    let was = ctx.client.tracking;
    if !o.bcast && !o.prefixes.is_empty() {
        return Err(Frame::error(
            "ERR PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if was.is_some_and(|w| w.bcast != o.bcast) {
        return Err(Frame::error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."));
    }
    if o.bcast && (o.optin || o.optout) {
        return Err(Frame::error(
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if o.optin && o.optout {
        return Err(Frame::error(
            "ERR You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if was.is_some_and(|w| (o.optin && w.optout) || (o.optout && w.optin)) {
        return Err(Frame::error("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."));
    }
    let id = ctx.client.id;
    {
        let mut t = ctx.shared.tracking.lock();
        if o.bcast {
            let held = t.trackers.get(&id).map(|tr| &tr.prefixes);
            for (i, p) in o.prefixes.iter().enumerate() {
                if let Some(h) = held.and_then(|h| h.iter().find(|h| overlap(h, p))) {
                    return Err(Frame::error(format!(
                        "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                        lossy(p),
                        lossy(h)
                    )));
                }
                if let Some(q) = o.prefixes[i + 1..].iter().find(|q| overlap(p, q)) {
                    return Err(Frame::error(format!(
                        "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                        lossy(p),
                        lossy(q)
                    )));
                }
            }
        }
        let tracker = t.trackers.entry(id).or_default();
        tracker.redirect = o.redirect;
        tracker.bcast = o.bcast;
        tracker.optin = o.optin;
        tracker.optout = o.optout;
        tracker.noloop = o.noloop;
        tracker.broken_redirect = false;
        if o.bcast {
            let mut added: Vec<Blob> = o.prefixes.iter().map(|p| Blob::from(&p[..])).collect();
            if added.is_empty() {
                added.push(Blob::new());
            }
            for p in &added {
                tracker.prefixes.insert(p.clone());
            }
            for p in added {
                t.prefixes.entry(p).or_default().insert(id);
            }
        }
    }
    ctx.client.tracking = Some(Own {
        bcast: o.bcast,
        optin: o.optin,
        optout: o.optout,
        caching: was.is_some_and(|w| w.caching),
    });
    if was.is_none() {
        crate::events::refresh_feed(ctx.shared, ctx.store);
    }
    Ok(())
}

/// Turns tracking off (CLIENT TRACKING off, RESET).
pub fn disable(ctx: &mut Ctx<'_>) {
    disable_client(ctx.shared, ctx.store, ctx.client);
}

fn disable_client(shared: &Shared, store: &mut Store, client: &mut Client) {
    if client.tracking.take().is_some() {
        shared.tracking.lock().disable(client.id);
        crate::events::refresh_feed(shared, store);
    }
}

/// `CLIENT CACHING yes|no`.
pub fn client_caching(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(own) = ctx.client.tracking.as_mut() else {
        return Frame::error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
    };
    if eq_ignore_case(&args[2], "yes") {
        if !own.optin {
            return Frame::error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
    } else if eq_ignore_case(&args[2], "no") {
        if !own.optout {
            return Frame::error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
    } else {
        return syntax_error();
    }
    own.caching = true;
    Frame::ok()
}

/// `CLIENT GETREDIR`: the redirect target, 0 for none, -1 when not
/// tracking.
pub fn client_getredir(ctx: &mut Ctx<'_>) -> Frame {
    let t = ctx.shared.tracking.lock();
    match t.trackers.get(&ctx.client.id) {
        Some(tr) => Frame::Integer(i64::try_from(tr.redirect).unwrap_or(i64::MAX)),
        None => Frame::Integer(-1),
    }
}

/// `CLIENT TRACKINGINFO`: flags (a set), redirect, prefixes.
pub fn client_trackinginfo(ctx: &mut Ctx<'_>) -> Frame {
    let t = ctx.shared.tracking.lock();
    let tracker = t.trackers.get(&ctx.client.id);
    let own = ctx.client.tracking;
    let mut flags = vec![if tracker.is_some() { "on" } else { "off" }];
    if let (Some(tr), Some(own)) = (tracker, own) {
        if tr.bcast {
            flags.push("bcast");
        }
        if tr.optin {
            flags.push("optin");
            if own.caching {
                flags.push("caching-yes");
            }
        }
        if tr.optout {
            flags.push("optout");
            if own.caching {
                flags.push("caching-no");
            }
        }
        if tr.noloop {
            flags.push("noloop");
        }
        if tr.broken_redirect {
            flags.push("broken_redirect");
        }
    }
    let redirect = tracker.map_or(-1, |tr| i64::try_from(tr.redirect).unwrap_or(i64::MAX));
    let prefixes = tracker
        .map(|tr| {
            tr.prefixes
                .iter()
                .map(|p| Frame::Bulk(Bytes::copy_from_slice(p)))
                .collect()
        })
        .unwrap_or_default();
    Frame::Map(vec![
        (
            Frame::bulk("flags"),
            Frame::Set(flags.into_iter().map(Frame::bulk).collect()),
        ),
        (Frame::bulk("redirect"), Frame::Integer(redirect)),
        (Frame::bulk("prefixes"), Frame::Array(prefixes)),
    ])
}

/// A client's tracking as `CLIENT LIST` shows it: its flag letters (`t`,
/// `R` for a broken redirect, `B` for BCAST) and `redir` (-1: not
/// tracking).
pub fn list_fields(shared: &Shared, id: u64) -> (String, i64) {
    let t = shared.tracking.lock();
    let Some(tr) = t.trackers.get(&id) else {
        return (String::new(), -1);
    };
    let mut flags = String::from("t");
    if tr.broken_redirect {
        flags.push('R');
    }
    if tr.bcast {
        flags.push('B');
    }
    (flags, i64::try_from(tr.redirect).unwrap_or(i64::MAX))
}

/// INFO's `tracking_clients`, `tracking_total_keys`,
/// `tracking_total_items` and `tracking_total_prefixes`.
pub struct Totals {
    pub clients: usize,
    pub keys: usize,
    pub items: usize,
    pub prefixes: usize,
}

pub fn totals(shared: &Shared) -> Totals {
    let t = shared.tracking.lock();
    Totals {
        clients: t.trackers.len(),
        keys: t.keys.len(),
        items: t.items,
        prefixes: t.prefixes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_conns(ids: &[u64]) -> (Tracking, HashMap<u64, mpsc::Receiver<Note>>) {
        let mut t = Tracking::default();
        let mut rxs = HashMap::new();
        for id in ids {
            let (tx, rx) = mpsc::channel(NOTE_QUEUE_MAX);
            let conn = Conn {
                notes: tx,
                kill: Arc::new(Notify::new()),
                killed: Arc::new(AtomicBool::new(false)),
            };
            t.conns.insert(*id, conn);
            rxs.insert(*id, rx);
        }
        (t, rxs)
    }

    fn read(t: &mut Tracking, id: u64, key: &str) {
        t.trackers.entry(id).or_default();
        if t.keys.entry(Blob::from(key)).or_default().insert(id) {
            t.items += 1;
        }
    }

    fn keys_of(note: Note) -> Option<Vec<Bytes>> {
        match note {
            Note::Invalidate { keys, .. } => keys.map(|k| k.to_vec()),
            Note::RedirBroken(_) => panic!("unexpected redir-broken"),
        }
    }

    #[test]
    fn a_reader_is_told_once_then_forgotten() {
        let (mut t, mut rx) = with_conns(&[1, 2]);
        read(&mut t, 1, "k");
        read(&mut t, 2, "k");
        assert_eq!(t.items, 2);
        t.invalidate_key(b"k", None);
        for id in [1, 2] {
            let note = rx.get_mut(&id).unwrap().try_recv().unwrap();
            assert_eq!(keys_of(note), Some(vec![Bytes::from_static(b"k")]));
        }
        assert_eq!((t.keys.len(), t.items), (0, 0));
        t.invalidate_key(b"k", None);
        assert!(rx.get_mut(&1).unwrap().try_recv().is_err());
    }

    #[test]
    fn noloop_and_bcast_readers_are_forgotten_without_a_message() {
        let (mut t, mut rx) = with_conns(&[1, 2]);
        read(&mut t, 1, "k");
        read(&mut t, 2, "k");
        t.trackers.get_mut(&1).unwrap().noloop = true;
        t.trackers.get_mut(&2).unwrap().bcast = true;
        t.invalidate_key(b"k", Some(1));
        assert!(rx.get_mut(&1).unwrap().try_recv().is_err());
        assert!(rx.get_mut(&2).unwrap().try_recv().is_err());
        assert_eq!(t.items, 0);
    }

    #[test]
    fn a_redirect_to_a_closed_connection_is_broken() {
        let (mut t, mut rx) = with_conns(&[1, 2]);
        read(&mut t, 1, "k");
        t.trackers.get_mut(&1).unwrap().redirect = 2;
        t.conns.remove(&2);
        t.invalidate_key(b"k", None);
        assert!(t.trackers[&1].broken_redirect);
        assert!(matches!(
            rx.get_mut(&1).unwrap().try_recv(),
            Ok(Note::RedirBroken(2))
        ));
    }

    #[test]
    fn the_table_keeps_at_most_max_keys_and_tells_the_dropped_keys_readers() {
        let (mut t, mut rx) = with_conns(&[1]);
        for i in 0..10 {
            read(&mut t, 1, &format!("k{i}"));
        }
        t.max_keys = 3;
        t.bound();
        assert_eq!((t.keys.len(), t.items), (3, 3));
        let mut told = 0;
        while rx.get_mut(&1).unwrap().try_recv().is_ok() {
            told += 1;
        }
        assert_eq!(told, 7);
        t.max_keys = 0;
        for i in 10..20 {
            read(&mut t, 1, &format!("k{i}"));
        }
        t.bound();
        assert_eq!(t.keys.len(), 13);
    }

    #[test]
    fn the_last_client_to_stop_empties_the_table() {
        let (mut t, _rx) = with_conns(&[1, 2]);
        read(&mut t, 1, "a");
        read(&mut t, 2, "b");
        t.disable(1);
        assert_eq!(t.keys.len(), 2);
        t.disable(2);
        assert_eq!((t.keys.len(), t.items), (0, 0));
    }

    #[test]
    fn prefixes_overlap_when_one_starts_the_other() {
        assert!(overlap(b"foo", b"foobar"));
        assert!(overlap(b"foobar", b"foo"));
        assert!(overlap(b"", b"x"));
        assert!(!overlap(b"foo", b"bar"));
    }
}
