//! Client tracking (CLIENT TRACKING): invalidation messages for keys that
//! tracking clients read, whichever region changed them.

use meridian_store::Change;

use crate::shared::Shared;

/// Whether tracking needs the store's change feed.
pub fn wants_changes(_shared: &Shared) -> bool {
    false
}

/// Sends invalidations for changed keys. `by`: the client that made the
/// local changes (NOLOOP skips it).
pub fn on_changes(_shared: &Shared, _changes: &[Change], _by: Option<u64>) {}
