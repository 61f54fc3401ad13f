//! A TCP fault proxy that puts WAN conditions between Meridian regions.
//!
//! Multi-region tests, benchmarks and `meridian demo` run every region as a
//! real process on one machine, where every link is a perfect loopback. The
//! kernel here has no `netem` qdisc, and turmoil only reaches code running
//! inside its own simulation, so the WAN between real processes comes from
//! this crate: a proxy per directed link that delays, slows, "loses" and cuts
//! the bytes crossing it, with conditions that can be changed while traffic
//! flows.
//!
//! # Topology
//! A region opens one outbound connection to each peer's replication port.
//! To put a WAN in between, region A is told (`--peer b=PROXY`) to dial a
//! [`Proxy`] that forwards to B's real address. That proxy is the directed
//! link A→B: bytes flow both ways on it, A's op stream *forward* and B's
//! acknowledgements *backward*. B's own connection to A is a different proxy,
//! the link B→A. [`Mesh`] builds all N×(N−1) of them for N regions.
//!
//! # What each condition means over TCP
//! The proxy forwards a byte stream, not packets, so it models what a WAN does
//! to a TCP connection rather than to datagrams. Its unit is the **chunk**:
//! whatever one `read` on the source socket returned (at most
//! [`READ_CHUNK_MAX_BYTES`]).
//!
//! - **Delay and jitter.** Every chunk is delivered `delay_ms ± jitter_ms`
//!   (uniform, floored at zero) after it was read. TCP never reorders its
//!   stream, and neither does jitter here: a chunk is delivered at
//!   `max(delivery of the previous chunk, read time + its delay)`. Each
//!   direction of a connection has its own queue between a reader and a
//!   deliverer, so a delayed chunk delays only itself, not the reading of the
//!   next one: latency goes up, throughput does not collapse.
//! - **Changes apply at once**, to new connections, to established ones and to
//!   chunks already queued: a chunk's random draws are kept as fractions and
//!   its delivery time is recomputed from the conditions in force whenever
//!   they change. Lowering a delay from 5 s to 0 releases queued bytes
//!   immediately.
//! - **Bandwidth** (`bandwidth_bytes_per_s`) paces delivery, in slices of at
//!   most 10 ms worth of bytes. An idle link earns no burst credit.
//! - **Loss.** TCP cannot silently lose bytes; on a lossy path it retransmits,
//!   and the application sees late bytes, not missing ones. So each chunk is
//!   "lost" with probability `loss` and then delivered only after an extra
//!   retransmission penalty of `max(3 × delay_ms, 200 ms)` (200 ms being
//!   Linux's minimum retransmission timeout). Because delivery keeps order,
//!   the penalty also holds back everything behind the lost chunk, which is
//!   TCP's head-of-line blocking.
//! - **Partition** (`up = false` in either direction). A TCP connection cannot
//!   work one way only, so a link with any direction down carries no
//!   connection at all: bytes read in that direction are discarded,
//!   established connections are closed on both sides at once, and new
//!   connections are accepted and closed immediately, as long as any
//!   direction is down. The dialing region sees its link fail and every
//!   reconnect attempt fail, which is how a partition looks to TCP. Bringing
//!   the direction back up lets the next reconnect through.
//! - **One-way partitions between regions** are therefore expressed per link,
//!   not per direction: cutting A→B only (its proxy down) and leaving B→A up
//!   means A's op stream to B stops while B's stream to A keeps flowing.
//!   Setting one direction of a single link down behaves exactly like taking
//!   that whole link down.
//! - **Targets.** A proxy started pending, or whose target region restarted on
//!   another port, gets its target with [`LinkControl::set_target`]; new
//!   connections go there. Connections that arrive while no target is known,
//!   or whose target cannot be dialed, are accepted and closed at once.
//! - **Not modelled:** the TCP handshake itself is not delayed (the proxy
//!   accepts at once and dials the target at once), so a refused or dead peer
//!   shows up as a connection that opens and immediately reaches end of
//!   stream rather than as `ECONNREFUSED`.
//!
//! # Limits and backpressure
//! Every queue is bounded: one direction of one connection holds at most
//! [`QUEUE_MAX_BYTES`] (16 MiB) and [`QUEUE_MAX_CHUNKS`] between read and
//! delivery. When either fills, the reader stops reading and the sender's TCP
//! window closes, as behind a slow link. A proxy forwards at most
//! [`CONNECTIONS_MAX`] connections at once; delays are capped at
//! [`DELAY_MS_MAX`].
//!
//! # Reproducibility
//! All randomness comes from a seeded SplitMix64 ([`Proxy::start_seeded`];
//! [`DEFAULT_SEED`] otherwise). Each connection direction has its own stream,
//! derived from the seed, the connection's accept order and the direction, and
//! draws exactly two values per chunk. The same seed therefore gives the same
//! sequence of delays per connection; the timing of a whole run is identical
//! only as far as the kernel splits the byte stream into the same reads.
//!
//! # Layout
//! - [`conditions`]: [`LinkConditions`] and [`Direction`], plain validated
//!   values.
//! - `schedule`: the pure timing rules: a chunk's delay from its draws, and the
//!   bandwidth pacer. No I/O, no clock reads.
//! - `rng`: the seeded SplitMix64.
//! - `conn`: one forwarded connection: per direction a reader, a bounded
//!   queue and a deliverer, plus the watchers that cut it.
//! - [`proxy`]: [`Proxy`] (listener, accept loop, dialing the target) and
//!   [`LinkControl`].
//! - [`mesh`]: [`Mesh`], the directed proxies between N regions.
//! - [`stats`]: [`LinkStats`], the counters a proxy keeps.
//!
//! # Invariants
//! - **Bytes are delivered exactly once and in order, or the connection is
//!   closed.** Nothing is dropped from a stream that stays open; a discarded
//!   byte always comes with a closed connection.
//! - **No connection is carried while any direction of its link is down.**
//!   The accept loop checks before dialing, a watcher cuts established
//!   connections, and every reader re-checks before queueing a chunk.
//! - **Dropping a [`Proxy`] closes its listener and every connection**; no
//!   task it started outlives it for longer than one wake-up.
//! - The crate prints nothing; it logs through `tracing` at `debug`, and at
//!   `warn` only when `accept` itself fails.
//!
//! # Example
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use meridian_netem::{LinkConditions, Mesh};
//!
//! let mesh = Mesh::start(["a", "b", "c"], 7).await?;
//! let args_for_a = mesh.peer_args("a")?; // ["--peer", "b=127.0.0.1:…", "--peer", "c=…"]
//! # let addr_of_b = "127.0.0.1:1".parse()?;
//! // ... start region a with `args_for_a`, read b's printed address ...
//! mesh.set_repl_addr("b", addr_of_b)?;
//! mesh.set_all(LinkConditions::wan(40).with_jitter(5))?;
//! mesh.link("a", "b")?.partition(); // a's stream to b stops; b→a keeps flowing
//! mesh.heal_all();
//! # let _ = args_for_a;
//! # Ok(())
//! # }
//! ```

pub mod conditions;
mod conn;
pub mod mesh;
pub mod proxy;
mod rng;
mod schedule;
pub mod stats;

pub use conditions::{
    ConditionsError, Direction, LinkConditions, DELAY_MS_MAX, LOSS_PENALTY_DELAY_FACTOR,
    LOSS_PENALTY_MIN_MS,
};
pub use conn::{QUEUE_MAX_BYTES, QUEUE_MAX_CHUNKS, READ_CHUNK_MAX_BYTES};
pub use mesh::{Mesh, MeshError};
pub use proxy::{
    LinkControl, Proxy, StartError, CONNECTIONS_MAX, DEFAULT_SEED, UPSTREAM_CONNECT_TIMEOUT_MS,
};
pub use stats::LinkStats;
