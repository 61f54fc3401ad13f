//! The one way a write reaches the op log: what a batch of commands built is
//! appended as one op ([`append`]), then made durable under the fsync
//! policy before any reply of the batch leaves ([`finish`]). A failure of
//! either poisons the region ([`poison`]): the error is logged,
//! `/health/ready` turns 503, and every later write is refused with
//! [`poisoned_error`], never retried, since what the disk holds is unknown.
//!
//! Callers: a connection's batch (`conn::run_batch`), the commands that
//! must commit what their batch built so far before they act
//! (`MERIDIAN TOKEN`, and `SAVE` through the snapshot module), and active expiry.

use std::fmt::Display;

use meridian_resp::Frame;
use meridian_store::{FsyncPolicy, Store};
use parking_lot::MutexGuard;

use crate::metrics::Metrics;
use crate::shared::{Readiness, Shared};

/// Appends the op the current batch built, if it built one. False if the
/// op log failed: then nothing of the batch may be acknowledged.
pub fn append(store: &mut Store, shared: &Shared) -> bool {
    let appended_before = store.log().last_lsn();
    match store.commit() {
        Ok(Some(_)) => {
            debug_assert!(
                store.log().last_lsn() > appended_before,
                "a committed op must advance the log"
            );
            Metrics::inc(&shared.metrics.ops_committed_total);
            true
        }
        Ok(None) => true,
        Err(e) => {
            poison(shared, "appending to the op log", &e);
            false
        }
    }
}

/// Appends what the batch built and makes every record appended since
/// `before_lsn` durable, releasing the store lock first. Under
/// `--fsync always` the fdatasync runs after the lock is released, so
/// batches of other connections proceed and their syncs overlap; under the
/// other policies the records are written to the file under the lock.
/// False if the op log failed: no reply of the batch may claim success.
pub fn finish(shared: &Shared, mut store: MutexGuard<'_, Store>, before_lsn: u64) -> bool {
    let appended = append(&mut store, shared);
    if store.log().last_lsn() == before_lsn {
        return appended;
    }
    let durable = if store.fsync_policy() == FsyncPolicy::Always {
        drop(store);
        // The runtime moves this worker's other connections to another
        // thread while the disk works.
        tokio::task::block_in_place(|| shared.host.sync())
    } else {
        let flushed = store.flush();
        drop(store);
        flushed
    };
    match durable {
        Ok(_) => appended,
        Err(e) => {
            poison(shared, "making the op log durable", &e);
            false
        }
    }
}

/// Marks the region poisoned after an op-log failure: writes are refused
/// from now on and readiness reports why.
pub fn poison(shared: &Shared, what: &str, error: &dyn Display) {
    tracing::error!(error = %error, "{what} failed; writes are refused from now on");
    *shared.readiness.lock() = Readiness::Poisoned(error.to_string());
}

/// The reply to a write once the op log has failed (Redis's `MISCONF`).
pub fn poisoned_error() -> Frame {
    Frame::error(
        "MISCONF Errors writing to the op log; this region refuses writes until it is restarted",
    )
}
