//! The crate's error type.
//!
//! One enum covers the log and snapshots because the caller reacts to the same few
//! situations everywhere: an I/O failure (retry at a higher level or stop), damaged
//! data (stop and tell the operator exactly where), a poisoned writer (restart), or
//! a request the log cannot serve (compacted away, not yet written, too large).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the log or in snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An operating-system call failed. `op` says what the log was doing.
    #[error("I/O error while {op} `{}`: {source}", path.display())]
    Io {
        /// What the log was doing, phrased to follow "while", e.g. "syncing".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Data on disk is damaged in a way that is not a torn write at the tail.
    #[error(
        "corrupt data in `{}` at byte offset {offset}: {reason}. Meridian refuses to \
         start from (or serve) this data rather than risk serving wrong data; restore \
         the file from a replica or a backup, or move it aside after inspecting it",
        path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset within `path` where the damage was found.
        offset: u64,
        /// What exactly was wrong.
        reason: String,
    },

    /// An earlier write, flush or fsync failed; the log accepts no more writes.
    #[error(
        "the log is poisoned by an earlier I/O failure ({cause}) and accepts no more \
         writes; restart so that recovery can establish what reached the disk"
    )]
    Poisoned {
        /// The error that poisoned the log.
        cause: String,
    },

    /// The requested LSN was removed by compaction.
    #[error(
        "lsn {requested} has been compacted away; the oldest retained lsn is {oldest} \
         (a peer this far behind needs a snapshot)"
    )]
    Compacted {
        /// The LSN that was asked for.
        requested: u64,
        /// The oldest LSN still in the log.
        oldest: u64,
    },

    /// The requested LSN has not been assigned yet.
    #[error("lsn {requested} is beyond the end of the log (the next lsn is {next_lsn})")]
    BeyondEnd {
        /// The LSN that was asked for.
        requested: u64,
        /// The LSN the next append will receive.
        next_lsn: u64,
    },

    /// A payload exceeds [`crate::RECORD_PAYLOAD_MAX_BYTES`]. The log is not poisoned.
    #[error("record payload of {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    RecordTooLarge {
        /// Size of the rejected payload.
        len_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },

    /// [`crate::LogOptions`] holds a value outside its documented range.
    #[error("invalid log options: {reason}")]
    InvalidOptions {
        /// Which option and why.
        reason: String,
    },
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
