//! One proxied TCP connection: two independent directions, each a reader and
//! a deliverer joined by a bounded queue.
//!
//! The reader takes bytes off the source socket as soon as they arrive, stamps
//! each chunk with its read time and random draws, and queues it; the
//! deliverer writes chunks to the destination in queue order once they are
//! due. Keeping the two apart is what lets a 200 ms delay add 200 ms of
//! latency without also cutting throughput to one chunk per 200 ms.
//!
//! All four halves (two readers, two deliverers) run as futures of the
//! connection's one task, next to a watcher that fires when the link goes down
//! and one that fires when the proxy is dropped. Whichever ends the connection,
//! dropping that task's future drops both sockets and both queues at once:
//! there is no second task to forget to stop.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::conditions::{Direction, LinkConditions};
use crate::rng::SplitMix64;
use crate::schedule::{Draw, Pacer};
use crate::stats::Counters;

/// Largest chunk one read takes off a socket.
pub const READ_CHUNK_MAX_BYTES: usize = 64 * 1024;
/// Bytes one direction of one connection may hold between read and delivery.
/// When it is full the reader stops reading, so the sender's TCP window closes
/// the way it would behind a slow link.
pub const QUEUE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Chunks one direction may hold, bounding the per-chunk overhead when a
/// sender writes many tiny messages into a long delay.
pub const QUEUE_MAX_CHUNKS: usize = 65_536;

// Every chunk must fit the byte budget on its own, or the reader would wait
// for permits that can never be granted.
const _: () = assert!(READ_CHUNK_MAX_BYTES <= QUEUE_MAX_BYTES);

/// A direction on a directed link A→B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// A→B: from the dialing region to the target.
    Forward,
    /// A←B: the target's replies back to the dialer.
    Backward,
}

impl Way {
    pub(crate) fn index(self) -> usize {
        match self {
            Way::Forward => 0,
            Way::Backward => 1,
        }
    }

    fn of(self, conditions: &LinkConditions) -> Direction {
        match self {
            Way::Forward => conditions.forward,
            Way::Backward => conditions.backward,
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Both sides closed their write halves and every byte was delivered.
    Finished,
    /// The link went down.
    Cut,
    /// The proxy was dropped.
    Shutdown,
    /// A socket failed, typically because one side reset the connection.
    Failed(io::Error),
}

/// Bytes read but not yet delivered, per direction. Shared by a reader and
/// its deliverer so that a cut can count what it discards.
#[derive(Default)]
struct Pending([AtomicU64; 2]);

impl Pending {
    fn add(&self, way: Way, len: usize) {
        self.0[way.index()].fetch_add(len as u64, Ordering::Relaxed);
    }

    fn sub(&self, way: Way, len: usize) {
        self.0[way.index()].fetch_sub(len as u64, Ordering::Relaxed);
    }

    fn get(&self, way: Way) -> u64 {
        self.0[way.index()].load(Ordering::Relaxed)
    }
}

/// What one direction needs besides its two sockets.
struct Ctx<'a> {
    way: Way,
    conditions: watch::Receiver<LinkConditions>,
    counters: &'a Counters,
    pending: &'a Pending,
    budget: &'a Semaphore,
}

struct Chunk {
    bytes: Bytes,
    read_at: Instant,
    draw: Draw,
}

/// Forwards between `client` (the dialer) and `upstream` (the target) until
/// both sides finish, a socket fails, the link goes down or `shutdown`'s
/// sender is dropped. `rngs` are the forward and backward draw streams.
pub(crate) async fn run(
    client: TcpStream,
    upstream: TcpStream,
    conditions: watch::Receiver<LinkConditions>,
    mut shutdown: watch::Receiver<()>,
    counters: &Counters,
    rngs: [SplitMix64; 2],
) -> End {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let pending = Pending::default();
    let budgets = [
        Semaphore::new(QUEUE_MAX_BYTES),
        Semaphore::new(QUEUE_MAX_BYTES),
    ];
    let [forward_rng, backward_rng] = rngs;
    let ctx = |way: Way| Ctx {
        way,
        conditions: conditions.clone(),
        counters,
        pending: &pending,
        budget: &budgets[way.index()],
    };
    let forward = direction(client_read, upstream_write, forward_rng, ctx(Way::Forward));
    let backward = direction(
        upstream_read,
        client_write,
        backward_rng,
        ctx(Way::Backward),
    );
    let end = tokio::select! {
        result = async { tokio::try_join!(forward, backward) } => match result {
            Ok(((), ())) => End::Finished,
            Err(end) => end,
        },
        () = link_down(conditions.clone()) => End::Cut,
        _ = shutdown.changed() => End::Shutdown,
    };
    for way in [Way::Forward, Way::Backward] {
        let left = pending.get(way);
        if left > 0 {
            counters.dequeued(way, left as usize);
            counters.discarded(left as usize);
        }
    }
    end
}

/// Resolves once either direction of the link is down.
pub(crate) async fn link_down(mut conditions: watch::Receiver<LinkConditions>) {
    loop {
        if !conditions.borrow_and_update().is_up() {
            return;
        }
        if conditions.changed().await.is_err() {
            // The control is gone, so the conditions can never change again.
            std::future::pending::<()>().await;
        }
    }
}

async fn direction(
    source: OwnedReadHalf,
    destination: OwnedWriteHalf,
    rng: SplitMix64,
    ctx: Ctx<'_>,
) -> Result<(), End> {
    let (queue_tx, queue_rx) = mpsc::channel(QUEUE_MAX_CHUNKS);
    let deliver_ctx = Ctx {
        conditions: ctx.conditions.clone(),
        ..ctx
    };
    tokio::try_join!(
        read_side(source, queue_tx, rng, ctx),
        deliver_side(destination, queue_rx, deliver_ctx),
    )?;
    Ok(())
}

async fn read_side(
    mut source: OwnedReadHalf,
    queue: mpsc::Sender<Chunk>,
    mut rng: SplitMix64,
    ctx: Ctx<'_>,
) -> Result<(), End> {
    let mut buf = vec![0u8; READ_CHUNK_MAX_BYTES];
    loop {
        let len = source.read(&mut buf).await.map_err(End::Failed)?;
        if len == 0 {
            // End of stream: returning drops `queue`, so the deliverer drains
            // what is left and then forwards the half-close.
            return Ok(());
        }
        let read_at = Instant::now();
        ctx.pending.add(ctx.way, len);
        ctx.counters.queued(ctx.way, len);
        let direction = ctx.way.of(&ctx.conditions.borrow());
        if !direction.up {
            return Err(End::Cut);
        }
        let draw = Draw::sample(&mut rng, direction.loss);
        if draw.lost {
            ctx.counters.lost();
        }
        // Waiting here is the backpressure: no read until the deliverer has
        // written enough to make room.
        let len_permits = u32::try_from(len).unwrap_or(u32::MAX);
        let Ok(permit) = ctx.budget.acquire_many(len_permits).await else {
            return Ok(());
        };
        permit.forget();
        let chunk = Chunk {
            bytes: Bytes::copy_from_slice(&buf[..len]),
            read_at,
            draw,
        };
        if queue.send(chunk).await.is_err() {
            // The deliverer is gone, which happens only when it failed; its
            // error ends the connection.
            return Ok(());
        }
    }
}

async fn deliver_side(
    mut destination: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Chunk>,
    mut ctx: Ctx<'_>,
) -> Result<(), End> {
    let mut pacer = Pacer::default();
    while let Some(chunk) = queue.recv().await {
        wait_until_due(&chunk, &mut ctx).await;
        let mut rest = &chunk.bytes[..];
        while !rest.is_empty() {
            let rate = ctx.way.of(&ctx.conditions.borrow()).bandwidth_bytes_per_s;
            let start = pacer.ready_at(Instant::now());
            tokio::time::sleep_until(start.into()).await;
            let len = Pacer::slice_len(rate, rest.len());
            destination
                .write_all(&rest[..len])
                .await
                .map_err(End::Failed)?;
            pacer.record(start, len, rate);
            ctx.pending.sub(ctx.way, len);
            ctx.counters.dequeued(ctx.way, len);
            ctx.counters.delivered(ctx.way, len);
            rest = &rest[len..];
        }
        ctx.budget.add_permits(chunk.bytes.len());
    }
    destination.shutdown().await.map_err(End::Failed)
}

/// Sleeps until the chunk is due under the conditions in force, re-reading
/// them whenever they change, so a new delay applies to bytes already queued.
/// Chunks are delivered strictly in queue order, so a chunk that is due early
/// still waits for the one before it: delivery happens at
/// `max(previous delivery, read time + sampled delay)` and jitter never
/// reorders a stream.
async fn wait_until_due(chunk: &Chunk, ctx: &mut Ctx<'_>) {
    loop {
        let direction = ctx.way.of(&ctx.conditions.borrow_and_update());
        let due = chunk.read_at + chunk.draw.delay(&direction);
        if due <= Instant::now() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => return,
            changed = ctx.conditions.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(due.into()).await;
                    return;
                }
            }
        }
    }
}
