//! Snapshots on demand and on schedule. A snapshot serializes the keyspace
//! and compacts the op log behind it; the op log stays the source of truth
//! between snapshots.

use std::sync::Arc;
use std::time::Instant;

use meridian_store::Store;

use crate::metrics::Metrics;
use crate::shared::Shared;

/// Writes a snapshot without holding the store lock while the file is
/// written: the keyspace is serialized under the lock, the file written on
/// a blocking thread, and the log compacted under the lock again. Used by
/// the scheduled snapshots and `POST /v1/snapshot`.
pub async fn take(shared: &Arc<Shared>) -> anyhow::Result<u64> {
    let started = Instant::now();
    let prepared = shared.store.lock().prepare_snapshot()?;
    let keys = prepared.keys();
    let info = tokio::task::spawn_blocking(move || prepared.write()).await??;
    let removed = shared.store.lock().snapshot_written(info.lsn)?;
    Metrics::inc(&shared.metrics.snapshots_total);
    tracing::info!(
        lsn = info.lsn,
        keys,
        bytes = info.content_bytes,
        segments_removed = removed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(info.lsn)
}

/// Writes a snapshot now, under the store lock a command's batch already
/// holds (SAVE, BGSAVE, SHUTDOWN SAVE). Inside EXEC an op may be half
/// built: it is appended first, so that the snapshot and the op log agree
/// on which ops the snapshot covers.
pub fn in_batch(store: &mut Store, shared: &Shared) -> Result<(), String> {
    if !crate::commit::append(store, shared) {
        return Err("appending to the op log failed".into());
    }
    match store.snapshot() {
        Ok(info) => {
            Metrics::inc(&shared.metrics.snapshots_total);
            tracing::info!(
                lsn = info.lsn,
                bytes = info.content_bytes,
                "snapshot written by SAVE"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot requested by a client failed");
            Err(e.to_string())
        }
    }
}
