//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN and friends).
//!
//! A blocking command that finds nothing to take registers its client here
//! and in the store (`Db::block_on`), under the store lock, so no change to
//! its keys can slip between its look and its wait. The connection then
//! waits with the store unlocked. Any change to one of those keys, by a
//! command here, an op applied from a peer or merged state, is recorded by
//! the store; whoever released the store lock after it ([`wake_ready`])
//! wakes the clients queued on those keys, and each retries its command.
//!
//! First blocked, first served: a key's queue is ordered, and a blocking
//! command takes from a key only while no client blocked before it waits
//! there ([`may_serve`]). A client that is served, times out, is unblocked
//! or disconnects leaves every queue and wakes the clients behind it, so
//! what it did not take goes to the next.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_crdt::Blob;
use meridian_store::Store;
use tokio::sync::Notify;

use crate::cmd::spec::Ctx;
use crate::shared::Shared;

/// How a CLIENT UNBLOCK ends a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblock {
    /// As if the timeout had passed.
    Timeout,
    /// With `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error,
}

/// One blocked client.
struct Waiter {
    keys: Vec<Blob>,
    wake: Arc<Notify>,
    unblock: Option<Unblock>,
}

/// The registry: per key, the clients waiting in the order they blocked.
#[derive(Default)]
pub struct Blocking {
    queues: HashMap<Blob, VecDeque<u64>>,
    waiters: HashMap<u64, Waiter>,
    /// Clients woken whose retry has not run yet: the writer that woke
    /// them answers once they have ([`wait_for_woken`]).
    woken: std::collections::HashSet<u64>,
    /// Notified whenever `woken` shrinks.
    retried: Arc<Notify>,
}

impl Blocking {
    /// Clients blocked now (INFO `blocked_clients`).
    pub fn count(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_blocked(&self, client: u64) -> bool {
        self.waiters.contains_key(&client)
    }

    /// Whether `client` may take from `key` now: nobody waits there, or it
    /// is the first in line.
    pub fn may_serve(&self, key: &[u8], client: u64) -> bool {
        self.queues
            .get(key)
            .and_then(|q| q.front())
            .is_none_or(|&first| first == client)
    }

    /// How a CLIENT UNBLOCK ended `client`'s wait, if one did.
    pub fn unblocked(&self, client: u64) -> Option<Unblock> {
        self.waiters.get(&client).and_then(|w| w.unblock)
    }

    /// CLIENT UNBLOCK: false if `client` is not blocked.
    pub fn unblock(&mut self, client: u64, how: Unblock) -> bool {
        match self.waiters.get_mut(&client) {
            Some(w) => {
                w.unblock = Some(how);
                w.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Wakes every client waiting on one of `keys`; true if any was.
    pub fn wake(&mut self, keys: &[Blob]) -> bool {
        let mut any = false;
        for k in keys {
            for c in self.queues.get(k).into_iter().flatten() {
                if let Some(w) = self.waiters.get(c) {
                    w.wake.notify_one();
                    self.woken.insert(*c);
                    any = true;
                }
            }
        }
        any
    }

    /// `client`'s retry has run (or it left): writers waiting for it go on.
    fn retried(&mut self, client: u64) {
        if self.woken.remove(&client) {
            self.retried.notify_waiters();
        }
    }

    fn enqueue(&mut self, client: u64, keys: Vec<Blob>, wake: Arc<Notify>) {
        for k in &keys {
            let q = self.queues.entry(k.clone()).or_default();
            if !q.contains(&client) {
                q.push_back(client);
            }
        }
        self.waiters.insert(
            client,
            Waiter {
                keys,
                wake,
                unblock: None,
            },
        );
    }

    /// Removes `client` from every queue; returns the keys it waited on.
    fn dequeue(&mut self, client: u64) -> Vec<Blob> {
        self.retried(client);
        let Some(w) = self.waiters.remove(&client) else {
            return Vec::new();
        };
        for k in &w.keys {
            if let Some(q) = self.queues.get_mut(k) {
                q.retain(|&c| c != client);
                if q.is_empty() {
                    self.queues.remove(k);
                }
            }
        }
        w.keys
    }
}

/// What a blocking command asks of its connection: wait on `keys` until
/// woken or `deadline`, then run the command again.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    pub keys: Vec<Blob>,
    pub deadline: Option<Instant>,
    /// The command as it runs again, when it resolved some of its
    /// arguments as it blocked (XREAD's `$` becomes the last ID then).
    pub args: Option<Vec<bytes::Bytes>>,
}

/// Redis's timeout argument of the blocking commands: seconds, fractions
/// allowed, 0 for ever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, meridian_resp::Frame> {
    let text = std::str::from_utf8(arg).ok();
    let secs: f64 = match text.and_then(|t| t.trim().parse::<f64>().ok()) {
        Some(s) if s.is_finite() => s,
        _ => {
            return Err(meridian_resp::Frame::error(
                "ERR timeout is not a float or out of range",
            ))
        }
    };
    if secs < 0.0 {
        return Err(meridian_resp::Frame::error("ERR timeout is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| meridian_resp::Frame::error("ERR timeout is not a float or out of range"))
}

/// The length of a key's value if it has the type a blocking command waits
/// for, or its WRONGTYPE error.
pub type LenOf = fn(&mut Ctx<'_>, &[u8]) -> Result<usize, meridian_resp::Frame>;

/// Every key is type-checked before the command blocks, as Redis does.
/// Once blocked, a key that became another type is passed over instead
/// (Redis serves a blocked client only from the type it waits for).
pub fn check_types(
    ctx: &mut Ctx<'_>,
    keys: &[bytes::Bytes],
    len_of: LenOf,
) -> Result<(), meridian_resp::Frame> {
    if ctx.client.block.is_some() {
        return Ok(());
    }
    for k in keys {
        len_of(ctx, k)?;
    }
    Ok(())
}

/// A non-empty value of the awaited type that this client may take from now.
pub fn available(ctx: &mut Ctx<'_>, key: &[u8], len_of: LenOf) -> bool {
    len_of(ctx, key).is_ok_and(|n| n > 0) && may_serve(ctx, key)
}

/// Whether this client may take from `key` now (see [`Blocking::may_serve`]).
pub fn may_serve(ctx: &Ctx<'_>, key: &[u8]) -> bool {
    ctx.shared.blocking.lock().may_serve(key, ctx.client.id)
}

/// A blocking command found nothing to take: blocks the client on `keys`
/// (under the store lock; queued once, on its first attempt, and a retry
/// keeps its place) and returns `empty`, its reply if the wait ends with
/// nothing. Inside MULTI/EXEC, as in Redis, it does not wait and `empty` is
/// the answer now.
pub fn block(
    ctx: &mut Ctx<'_>,
    keys: &[bytes::Bytes],
    timeout: Option<Duration>,
    empty: meridian_resp::Frame,
) -> meridian_resp::Frame {
    if ctx.client.in_exec {
        return empty;
    }
    let keys: Vec<Blob> = keys.iter().map(|k| Blob::from(&k[..])).collect();
    let id = ctx.client.id;
    let deadline = match &ctx.client.block {
        Some(b) => b.deadline,
        None => timeout.map(|t| Instant::now() + t),
    };
    let mut reg = ctx.shared.blocking.lock();
    if !reg.is_blocked(id) {
        for k in &keys {
            ctx.store.db_mut().block_on(k);
        }
        reg.enqueue(id, keys.clone(), ctx.client.wake.clone());
    }
    drop(reg);
    ctx.client.block = Some(BlockRequest {
        keys,
        deadline,
        args: None,
    });
    ctx.client.block_pending = true;
    empty
}

/// [`block`] for a command that resolved some of its arguments as it
/// blocked: it runs again as `args`.
pub fn block_as(
    ctx: &mut Ctx<'_>,
    keys: &[bytes::Bytes],
    timeout: Option<Duration>,
    empty: meridian_resp::Frame,
    args: Vec<bytes::Bytes>,
) -> meridian_resp::Frame {
    let reply = block(ctx, keys, timeout, empty);
    if let Some(b) = ctx.client.block.as_mut() {
        b.args = Some(args);
    }
    reply
}

/// The client's wait is over (served, timed out, unblocked, gone): it
/// leaves every queue and the clients behind it are woken.
pub fn leave(shared: &Shared, store: &mut Store, client: u64) {
    let keys = {
        let mut reg = shared.blocking.lock();
        let keys = reg.dequeue(client);
        reg.wake(&keys);
        keys
    };
    for k in &keys {
        store.db_mut().unblock_on(k);
    }
}

/// Wakes the clients blocked on keys that changed since the last call;
/// called with the store locked, after a batch or after peers' ops. True if
/// it woke anyone.
pub fn wake_ready(shared: &Shared, store: &mut Store) -> bool {
    let ready = store.db_mut().take_ready();
    !ready.is_empty() && shared.blocking.lock().wake(&ready)
}

/// A woken client's retry has run: it no longer holds up the writer that
/// woke it.
pub fn retried(shared: &Shared, client: u64) {
    shared.blocking.lock().retried(client);
}

/// Longest a writer's replies wait for the clients it woke.
const WOKEN_WAIT_MAX: Duration = Duration::from_millis(200);

/// Waits, bounded, until every woken client has run its retry (and those
/// woke theirs), as Redis serves the clients a command unblocked before
/// that command's reply leaves: once `RPUSH` answers, a `BLPOP` waiting on
/// the list has its element, and chains of BLMOVEs have moved.
pub async fn wait_for_woken(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + WOKEN_WAIT_MAX;
    loop {
        let retried = shared.blocking.lock().retried.clone();
        let notified = retried.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.blocking.lock().woken.is_empty() {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}
