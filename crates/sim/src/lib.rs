//! Meridian's deterministic simulator.
//!
//! Several regions run in one thread: each is a real `Store` (op log on
//! disk, conflict journal, recovery) and a real `ClusterView` (failure
//! detection, quorum lease, epochs), connected by a simulated network. The
//! replication crate's state machines run on it as they run over TCP: the
//! link's `Stream`, anti-entropy sessions and tombstone collection rounds.
//! One seeded RNG decides every delay, fault and client command, so a seed
//! replays its run exactly.
//!
//! # Layout
//! - [`config`]: the faults a run may inject and its length.
//! - [`rng`]: the seeded generator.
//! - [`region`]: a region's store, view and clock; crash and restart.
//! - [`net`]: links, messages, cuts.
//! - [`connect`]: links coming up through the replication crate's
//!   handshake, then a session or the stream.
//! - [`repair`]: anti-entropy sessions (the replication crate's state
//!   machines) over the links, and log compaction.
//! - [`driver`]: workload drivers (client commands), recorded in [`history`].
//! - [`check`]: invariant checkers, kept apart from the drivers.
//! - [`sim`]: the scheduler that ties them together.
//! - [`trace`]: the event log, its hash and the tail printed with an anomaly.
//!
//! A run has a fault phase (writes and faults), a heal (every fault ends,
//! crashed regions restart), a bounded wait for convergence, then the
//! checkers.

pub mod check;
pub mod config;
pub mod connect;
pub mod driver;
pub mod history;
pub mod net;
pub mod region;
mod relay;
pub mod repair;
pub mod rng;
pub mod sim;
pub mod trace;

pub use check::Anomaly;
pub use config::{Breakage, Fault, SimConfig};
pub use sim::{run_seed, Sim, SimReport};
