//! The region's store behind its one lock, which every client batch,
//! background duty and replication task takes.
//!
//! Holds are short (a batch, an apply), except while a Lua script runs: a
//! script holds the store for as long as it runs, seconds if it loops,
//! and meanwhile the runtime's workers must go on answering other clients
//! with BUSY. A task that finds the store held longer than a moment
//! therefore waits through `tokio::task::block_in_place`, which hands its
//! worker to another thread, rather than parking a worker the runtime
//! needs (a region may run on a single worker).

use std::time::Duration;

use meridian_store::Store;
use parking_lot::{Mutex, MutexGuard};

/// How long a lock waits in place before it gives its worker away.
const WAIT_IN_PLACE: Duration = Duration::from_millis(2);

pub struct StoreLock(Mutex<Store>);

impl StoreLock {
    pub fn new(store: Store) -> StoreLock {
        StoreLock(Mutex::new(store))
    }

    /// Takes the store, however long it is held.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        if let Some(store) = self.0.try_lock_for(WAIT_IN_PLACE) {
            return store;
        }
        if in_multi_thread_runtime() {
            tokio::task::block_in_place(|| self.0.lock())
        } else {
            self.0.lock()
        }
    }

    /// Takes the store if it is free within `timeout`.
    pub fn try_lock_for(&self, timeout: Duration) -> Option<MutexGuard<'_, Store>> {
        self.0.try_lock_for(timeout)
    }
}

/// Whether this thread runs in a multi-threaded tokio runtime, where
/// `block_in_place` may hand its worker away (it panics elsewhere).
pub fn in_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
