//! Anti-entropy: repairing a pair of regions that the retained log cannot
//! bring up to date, by shipping state for the keys that differ — both
//! ways, in one session.
//!
//! # Digest tree
//! Every key sits at `key_hash(key)`, a 64-bit hash; a range is the set of
//! hashes sharing a prefix of `bits` bits ([`Range`]). A range's digest is
//! the wrapping sum of its keys' digests, each a hash of the key and its
//! postcard-encoded [`Entry`] (hidden state included, in
//! [`Entry::canonical`] form), so equal digests mean equal state (up to a
//! 64-bit collision). Trees are built on demand from the keyspace, one pass
//! under the store lock; nothing is maintained on the write path.
//!
//! # Keys ahead of the peer
//! A key whose state holds a dot the peer's version vector does not cover
//! ([`Entry::holds_dot_beyond`]) certainly differs from the peer's: the peer
//! has not seen that op. Such keys are sent first, with no digest at all;
//! after a partition they are nearly all the diverged keys (a write leaves
//! its dot). The digest trees then compare each side's state *as joining
//! the other's ahead states would leave it* ([`joined_tree`]), so they only
//! have to find what left no dot behind (deletes) and what changed during
//! the session.
//!
//! # Session (on the dialer's link, before streaming)
//! D is the dialer, A the acceptor; `t1…t6` name the moments below.
//! 1. `t1` D starts recording which keys change, collects its states ahead
//!    of A's `Welcome` vector and its vector `vD1`; sends `AeBegin { vD1 }`.
//! 2. `t2` A starts recording changed keys, collects its states ahead of
//!    `vD1` and its vector `vA2`, and sends them (`AeState`s, then
//!    `AeAheadEnd { vA2 }`). D sends its ahead states and `AeAheadEnd`.
//! 3. A builds its tree joined with D's ahead states and answers `AeNodes`
//!    with the digests of the 2^[`TOP_BITS`] top ranges; `t3` D builds its
//!    tree joined with A's ahead states and compares: an equal range is
//!    done; a differing range where D holds at most [`LEAF_KEYS_MAX`] keys
//!    becomes a leaf; any other is split into 2^[`SPLIT_BITS`] parts
//!    (`AeDescend`), whose digests A answers. Repeat.
//! 4. `t4` under one store lock D collects its states of every key in a
//!    leaf range that it did not send ahead, and of every key changed since
//!    `t1` (`None` for one it no longer holds), its vector `vD4` and clock;
//!    sends them (`AeState` with the leaf ranges) and `AeEnd { vD4 }`.
//! 5. `t5` under one store lock A joins D's ahead states (read at `vD1`),
//!    then D's later states and the empty state for every key it holds in a
//!    leaf range that D did not send (read at `vD4`), and only then joins
//!    `vD4`. It answers, read under the same lock, its state of every key
//!    that D sent, that lies in a leaf range or that changed at A since
//!    `t2`, unless D sent exactly that state; then `AeDone { vA5 }`.
//! 6. `t6` under one store lock D joins A's ahead states (at `vA2`), A's
//!    answer and the empty state for every key in a leaf range that neither
//!    side sent (at `vA5`), and only then joins `vA5`. Both merges are made
//!    durable by a snapshot ([`Store::merge_states`]); streaming resumes.
//!
//! Why each vector may be joined: a key outside the leaf ranges had equal
//! joined states in the trees, so whatever one side held there at the tree
//! is in the other's state once the ahead states are merged; a key changed
//! after its side started recording is sent by that side at `t4` or `t5`;
//! everything else was sent. A key D sent ahead and did not change is
//! D's state at `t4` too. A key A answered nothing for holds what D sent.
//!
//! A key that changes on one side after that side collected what it sends
//! (after `t2` at A, after `t4` at D) is joined with the other side's state
//! when that state is at hand (answered, sent, sent ahead, or empty in a
//! leaf range). Otherwise the other side's state is the one compared equal
//! at the trees, which this side no longer holds: if the change brought an
//! element whose dot the other side had seen (an op relayed by a third
//! region or streamed meanwhile), the other side may have removed it, and
//! joining its vector would hide that removal for good, so the session is
//! given up (before either merge at A, before D's merge at D) and runs again.
//!
//! Every state sent holds only ops on disk: a side waits until its log is
//! synced up to what it collected before sending.
//!
//! # One session per pair
//! The session repairs both sides, so a pair needs one. A dialer does not
//! start one while it is accepting one from the same peer; when both dial at
//! once, the acceptor whose own dialer runs a session to that peer refuses
//! (`AeBusy`) if its region id sorts first, so the session dialed by the
//! region sorting first goes on. The refused dialer waits for the accepted
//! session to end (the peer streams again), then reconnects and compares
//! version vectors afresh, which normally needs no session.
//!
//! # Layout
//! - [`tree`]: key hashes, digests, the tree and its comparison rounds.
//! - [`session`]: both sides of a session as state machines without I/O,
//!   which the simulator drives too.
//! - [`driver`]: the tokio driver on a link: locking, waiting for the log
//!   to sync, the wire, one session per pair, status.
//!
//! [`Store::merge_states`]: meridian_store::Store::merge_states

pub mod driver;
pub mod session;
pub mod tree;

pub use driver::{needed, push, wait_for_accepted, Acceptor, PushError, BUSY_WAIT};
pub use session::{is_session_msg, needs_state, SessionError, StateMap, SESSION_STATE_MAX_BYTES};
pub use tree::{
    ahead_of, compare, descend, in_ranges, joined_tree, key_digest, key_hash, top_frontier, Range,
    Tree, FRONTIER_MAX, LEAF_KEYS_MAX, SPLIT_BITS, TOP_BITS,
};
