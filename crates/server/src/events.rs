//! Reacting to key changes wherever they were made: the store's change
//! feed ([`meridian_store::Change`]) is drained after every batch, every
//! active-expiry pass and whenever peers' ops or merged state were applied,
//! and handed to keyspace notifications ([`crate::notify`]) and client
//! tracking ([`crate::tracking`]). The feed is on only while one of them
//! needs it ([`refresh_feed`]).

use meridian_store::Store;

use crate::shared::Shared;

/// Drains the store's change feed and acts on it. `by`: the client whose
/// batch made the local changes, if a batch did (tracking's NOLOOP).
pub fn drain(shared: &Shared, store: &mut Store, by: Option<u64>) {
    if !store.db().change_feed_on() {
        return;
    }
    // Notifications announced the first ones already, in the middle of
    // the commands that made them.
    let announced = store.db().changes_announced();
    let changes = store.db_mut().take_changes();
    if changes.is_empty() {
        return;
    }
    crate::notify::on_changes(shared, &changes[announced..]);
    crate::tracking::on_changes(shared, &changes, by);
}

/// Whether notifications or tracking want the change feed.
pub fn wanted(shared: &Shared) -> bool {
    crate::notify::wants_changes(shared) || crate::tracking::wants_changes(shared)
}

/// Turns the change feed on while notifications or tracking want it.
pub fn refresh_feed(shared: &Shared, store: &mut Store) {
    let wanted = wanted(shared);
    if store.db().change_feed_on() != wanted {
        store.db_mut().set_change_feed(wanted);
    }
}
