//! Keyspace notifications (`notify-keyspace-events`).

use meridian_store::Change;

use crate::shared::Shared;

/// Whether notifications need the store's change feed.
pub fn wants_changes(_shared: &Shared) -> bool {
    false
}

/// Emits the events for changes that no local command announced itself:
/// peers' ops, merged state and expiries.
pub fn on_changes(_shared: &Shared, _changes: &[Change]) {}
