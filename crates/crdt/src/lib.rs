//! Meridian's pure core: clocks, causality and the CRDT value types.
//!
//! # Layout
//! - [`region`]: interned region ids (ordering by name breaks LWW ties).
//! - [`hlc`]: hybrid logical clock; time is always passed in.
//! - [`vv`]: dots `(region, seq)`, tags `(hlc, dot)`, version vectors.
//! - [`blob`]: inline-when-small byte strings for keys and values.
//! - [`num`]: the counting register shared by strings, hash fields and scores.
//! - [`elems`]: the collections inside hashes, sets and sorted sets.
//! - [`list`]: lists, a sequence CRDT ordered by dense position keys.
//! - [`value`]: typed values (string, hash, set, sorted set), TTL, and how an
//!   effect or a state merge changes a key.
//! - [`patch`]: strings written in part (bits, HyperLogLog registers).
//! - [`hll`]: HyperLogLog values as Redis encodes them.
//! - [`stream`]: streams: entries, their metadata and consumer groups.
//! - [`op`]: the replicated op and its effects.
//! - [`library`]: FUNCTION libraries, replicated apart from the keyspace.
//! - [`conflict`]: what a merge discarded, for the conflict journal.
//!
//! This crate does no I/O, reads no clock and draws no randomness: a
//! simulator drives exactly the code that production runs.

pub mod blob;
pub mod conflict;
pub mod elems;
pub mod hlc;
pub mod hll;
pub mod library;
pub mod list;
pub mod num;
pub mod op;
pub mod patch;
pub mod region;
pub mod stream;
pub mod value;
pub mod vv;

pub use blob::Blob;
pub use conflict::{Conflict, Rule};
pub use hlc::{ClockAhead, Hlc, HlcClock};
pub use library::{LibVersion, Libraries};
pub use list::{Elem, ElemId, ListVal, Pos};
pub use num::{Contrib, Counter, Delta, NumReg, Unobserved};
pub use op::{Effect, EffectKind, KeyObs, Op, OpCtx, SubObs};
pub use patch::{Counted, Field, Patch, Patched, StrReg};
pub use region::{RegionId, RegionIdError};
pub use stream::{Delivery, Fields, FieldsRef, Group, NodeLimits, StreamId, StreamVal};
pub use value::{Entry, HashVal, Kind, SetVal, Value, ZMember, ZSetVal};
pub use vv::{Dot, Tag, VersionVector};
