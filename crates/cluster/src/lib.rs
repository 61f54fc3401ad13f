//! Meridian's view of the cluster. Pure: no I/O, time passed in, so the
//! simulator and tests drive exactly this code.
//!
//! # Layout
//! - [`detector`]: phi-accrual failure detector per peer.
//! - [`view`]: reachability, majority, the quorum lease and the epoch.
//! - [`policy`]: keyspace policies and what they allow a write right now.
//! - [`membership`]: the versioned list of regions and how changes spread.
//! - [`election`]: terms, votes and the lease of the elected primary of
//!   `primary` keyspaces.

pub mod admission;
pub mod detector;
pub mod election;
pub mod membership;
pub mod policy;
pub mod view;

pub use admission::{admit, Refusal};
pub use detector::{Detector, Liveness, Thresholds};
pub use election::{
    AcceptedWrites, Durable, Election, ElectionConfig, ElectionEvent, ElectionMsg, Role,
};
pub use membership::{Membership, MembershipError};
pub use policy::{Policies, Policy, PolicyError, PrimaryNow, WriteVerdict};
pub use view::{Change, ClusterView, Partition, Transition, ViewConfig};
