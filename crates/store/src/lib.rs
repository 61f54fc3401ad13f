//! One region's state: keyspace, expiry, op stamping and durability.
//!
//! # Layout
//! - [`keyspace`]: visible and hidden keys, the expiry index, SCAN cursors.
//! - [`db`]: reads with lazy expiry; writes become effects of one op.
//! - [`persist`]: op log append, snapshots, recovery = snapshot + replay.
//! - [`journal`]: the durable conflict journal.
//!
//! Invariant: the op log holds every op in the order it was applied here, so
//! replaying it from any snapshot reproduces the state exactly.

pub mod db;
pub mod journal;
pub mod keyspace;
pub mod persist;

pub use db::{Change, Collected, Db, Event, NotReady, Origin, RemoteApply, WrongType};
pub use journal::{Journal, JournalEntry};
pub use keyspace::Keyspace;
pub use meridian_log::FsyncPolicy;
pub use persist::{
    OpenReport, PeerApply, PreparedSnapshot, StateBatch, Store, StoreError, StoreOptions,
    StoreSync, SyncOutcome,
};
