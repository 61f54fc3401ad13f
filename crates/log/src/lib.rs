//! Meridian's durable op log and snapshots.
//!
//! The layer above serializes each replicated op into an opaque byte record and
//! appends it here. The log gives every record a log sequence number (LSN), makes
//! it durable according to the [`FsyncPolicy`], lets replication senders stream
//! records to peers through independent [`LogReader`]s, and is compacted once a
//! snapshot covers a prefix of it.
//!
//! # Layout
//! - [`error`]: [`LogError`], the one error type of the crate, and the operator
//!   message printed when data on disk is damaged.
//! - [`options`]: [`LogOptions`], [`FsyncPolicy`] and the [`FaultInjector`] that
//!   tests use to make writes and fsyncs fail on purpose.
//! - `format`: the bytes on disk: segment header, record frame, file names.
//! - `fileops`: the few file operations the writer performs, routed through the
//!   fault injector, plus directory fsync.
//! - `segment`: scanning one segment file at open time, and telling a torn tail
//!   from corruption.
//! - [`log`]: [`Log`], the single writer: open and recovery, append, group commit,
//!   segment roll, poisoning, prefix truncation.
//! - [`reader`]: [`LogReader`], which reads flushed records from the segment files
//!   with its own file handles, so it can run on another thread than the writer.
//! - [`snapshot`]: writing and loading checksummed snapshot files in the same
//!   directory.
//!
//! # Invariants
//! - **LSNs start at 1, grow by exactly 1 per record and are never reused**, even
//!   across segment removal: the next LSN is derived from the newest segment.
//! - **A record is either wholly valid or not there.** Every frame carries a
//!   crc32c over its LSN and payload; recovery accepts a damaged record only as a
//!   torn tail (last segment, nothing valid after it) and cuts it off. Anything
//!   else is [`LogError::Corrupt`] and the region refuses to start.
//! - **After any failed write or fsync the [`Log`] is poisoned** and rejects all
//!   further writes: a failed fsync leaves the page cache in an unknown state, so
//!   the only safe continuation is a restart that re-reads what is on disk.
//! - **Sealed segments are immutable and synced.** A segment is fsynced before the
//!   next one is created, and new segments appear atomically (written under a
//!   temporary name, then renamed), so only the newest segment can have a torn tail
//!   and no segment ever has a torn header.
//!
//! All I/O is synchronous `std` I/O; the crate starts no threads.

pub mod error;
mod fileops;
mod format;
pub mod log;
pub mod options;
pub mod reader;
mod segment;
pub mod snapshot;

pub use error::LogError;
pub use format::{RECORD_PAYLOAD_MAX_BYTES, SEGMENT_HEADER_BYTES};
pub use log::{Log, PendingSync, Recovery, TornTail, UnsyncedTail, WRITE_BUFFER_FLUSH_BYTES};
pub use options::{
    FaultInjector, FsyncPolicy, LogOptions, ParseFsyncPolicyError, SEGMENT_MAX_BYTES_DEFAULT,
    SEGMENT_MAX_BYTES_MAX, SEGMENT_MAX_BYTES_MIN,
};
pub use reader::{LogReader, ReadBound};
pub use snapshot::{
    load_latest_snapshot, snapshot_path, write_snapshot, SnapshotInfo, SNAPSHOT_TRAILER_BYTES,
};
