//! Replicated ops: what a write command becomes once it has been checked
//! against local state.
//!
//! An [`Op`] is one atomic unit (a command, or a whole MULTI/EXEC block) with
//! one dot and one HLC. It carries `ctx`, the origin's version vector when it
//! was written: every element whose dot `ctx` covers was *observed* by the
//! writer, and only observed elements are ever removed or overwritten. That is
//! what makes "add wins", "a delete removes only what it observed" and exact
//! conflict detection fall out of one rule.
//!
//! Ops that reset counters carry the running totals the writer observed
//! (`obs`), because a receiver may have seen more of a region's increments than
//! the writer had.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::blob::Blob;
use crate::list::Pos;
use crate::num::{Contrib, Delta, Observes};
use crate::patch::Patch;
use crate::stream::{Delivery, StreamId};
use crate::vv::{Dot, Tag, VersionVector};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub tag: Tag,
    pub ctx: VersionVector,
    pub effects: Vec<Effect>,
}

impl Op {
    pub fn dot(&self) -> Dot {
        self.tag.dot
    }

    pub fn context(&self) -> OpCtx<'_> {
        OpCtx {
            tag: self.tag,
            vv: &self.ctx,
        }
    }
}

/// The causal view an effect is applied with.
#[derive(Debug, Clone, Copy)]
pub struct OpCtx<'a> {
    pub tag: Tag,
    pub vv: &'a VersionVector,
}

impl Observes for OpCtx<'_> {
    /// Covered by the writer's version vector, or written earlier in the same op.
    fn observed(&self, dot: Dot) -> bool {
        dot == self.tag.dot || self.vv.covers(dot)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub key: Blob,
    pub kind: EffectKind,
}

/// Counter totals a writer observed under one field or member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubObs {
    pub sub: Blob,
    pub totals: SmallVec<[Contrib; 1]>,
}

/// Counter totals a key-wide delete observed, per type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyObs {
    pub string: SmallVec<[Contrib; 1]>,
    pub fields: Vec<SubObs>,
    pub members: Vec<SubObs>,
}

impl KeyObs {
    pub fn is_empty(&self) -> bool {
        self.string.is_empty() && self.fields.is_empty() && self.members.is_empty()
    }
}

pub fn obs_for<'a>(list: &'a [SubObs], sub: &[u8]) -> &'a [Contrib] {
    list.iter()
        .find(|o| o.sub.as_bytes() == sub)
        .map_or(&[], |o| &o.totals[..])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EffectKind {
    /// DEL/UNLINK/FLUSH: removes everything of the key the writer observed.
    Del {
        obs: KeyObs,
    },
    /// Expiry: removes what the writer observed and that was written at or
    /// before the deadline, so a write made after the deadline survives.
    Expire {
        deadline_ms: u64,
        obs: KeyObs,
    },
    /// EXPIRE family (`Some`) or PERSIST (`None`).
    SetTtl {
        deadline_ms: Option<u64>,
    },
    /// A string write over a key of any type (SET, APPEND, SETRANGE, GETSET…).
    StrSet {
        value: Blob,
        keep_ttl: bool,
        obs: KeyObs,
    },
    /// An increment to the counter incarnation `start` (the origin's choice,
    /// see [`crate::num`]).
    StrIncr {
        delta: Delta,
        start: u64,
    },
    HSet {
        fields: Vec<(Blob, Blob)>,
        obs: Vec<SubObs>,
    },
    HDel {
        fields: Vec<Blob>,
        obs: Vec<SubObs>,
    },
    HIncr {
        field: Blob,
        delta: Delta,
        start: u64,
    },
    SAdd {
        members: Vec<Blob>,
    },
    SRem {
        members: Vec<Blob>,
    },
    ZAdd {
        members: Vec<(Blob, f64)>,
        obs: Vec<SubObs>,
    },
    ZIncr {
        member: Blob,
        delta: f64,
        start: u64,
    },
    ZRem {
        members: Vec<Blob>,
        obs: Vec<SubObs>,
    },
    /// Inserts list elements, each at its own position key (`LPUSH`,
    /// `RPUSH`, `LINSERT`, the push half of `LMOVE`). Every key's id is this
    /// op's tag with an index of its own.
    LInsert {
        items: Vec<(Pos, Blob)>,
    },
    /// Removes the list elements with keys in each range (inclusive) that
    /// the writer observed (pops, `LREM`, `LTRIM`): a concurrent insert into
    /// a range survives.
    LRemove {
        ranges: Vec<(Pos, Pos)>,
    },
    /// `LSET`: overwrites the element at `pos` if it is still there.
    LSet {
        pos: Pos,
        value: Blob,
    },
    /// A write that creates a key holding only remembered state (a TTL a
    /// concurrent EXPIRE left after a delete): the TTLs the writer observed
    /// go first, since a new key has none. Emitted by the store before the
    /// write itself.
    DropTtl,
    /// `FUNCTION LOAD`/`RESTORE`: the FUNCTION library named by the
    /// effect's key (not a key of the keyspace: the store keeps libraries
    /// apart, [`crate::library`]) is `code`, replacing the versions the op
    /// observed.
    LibrarySet {
        code: Blob,
    },
    /// `FUNCTION DELETE`/`FLUSH`: removes the versions of the library named
    /// by the key that the op observed.
    LibraryDel,
    /// A partial write of a string (SETBIT, BITFIELD, PFADD, PFMERGE): the
    /// patches, each dropping the older ones it supersedes that the op
    /// observed (see [`crate::patch`]). With `fold`, the string is first
    /// written whole with that value, as a `StrSet` keeping the TTL: the
    /// store folds a key's patches into its value once they add up.
    StrPatch {
        patches: Vec<Patch>,
        fold: Option<Blob>,
        obs: KeyObs,
    },
    /// XADD: the entry `id` with its fields and values (flattened in
    /// pairs); `added` is the origin's own count of XADDs to the stream,
    /// this one included (see [`crate::stream`]).
    XAdd {
        id: StreamId,
        fields: Vec<Blob>,
        added: u64,
    },
    /// XDEL: removes the observed entries `ids`; `max_deleted` is the
    /// stream's largest deleted ID as the origin holds it after.
    XDel {
        ids: Vec<StreamId>,
        max_deleted: StreamId,
    },
    /// XTRIM, or XADD's MAXLEN/MINID: removes every observed entry up to
    /// `upto` (a trim removes a prefix of the stream as the origin held it).
    XTrim {
        upto: StreamId,
    },
    /// XSETID.
    XSetId {
        last: StreamId,
        added: Option<u64>,
        max_deleted: Option<StreamId>,
    },
    /// XGROUP CREATE: the group (and the stream, if MKSTREAM made it), its
    /// last delivered ID and `entries_read` (`None`: unknown).
    XGroupCreate {
        group: Blob,
        last: StreamId,
        read: Option<u64>,
    },
    /// XGROUP SETID.
    XGroupSetId {
        group: Blob,
        last: StreamId,
        read: Option<u64>,
    },
    /// XGROUP DESTROY: removes what the op observed of the group.
    XGroupDestroy {
        group: Blob,
    },
    /// XGROUP CREATECONSUMER.
    XConsumerCreate {
        group: Blob,
        consumer: Blob,
        now_ms: u64,
    },
    /// XGROUP DELCONSUMER: the consumer and its pending entries, as far as
    /// the op observed them.
    XConsumerDel {
        group: Blob,
        consumer: Blob,
    },
    /// XREADGROUP, XCLAIM, XAUTOCLAIM: what they delivered or claimed.
    XDeliver {
        group: Blob,
        delivery: Delivery,
    },
    /// XACK: removes the observed deliveries of `ids`.
    XAck {
        group: Blob,
        ids: Vec<StreamId>,
    },
}

impl EffectKind {
    /// An effect on a FUNCTION library rather than on the keyspace.
    pub fn is_library(&self) -> bool {
        matches!(self, EffectKind::LibrarySet { .. } | EffectKind::LibraryDel)
    }

    /// An effect on a stream (it creates a stream where none is).
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            EffectKind::XAdd { .. }
                | EffectKind::XDel { .. }
                | EffectKind::XTrim { .. }
                | EffectKind::XSetId { .. }
                | EffectKind::XGroupCreate { .. }
                | EffectKind::XGroupSetId { .. }
                | EffectKind::XGroupDestroy { .. }
                | EffectKind::XConsumerCreate { .. }
                | EffectKind::XConsumerDel { .. }
                | EffectKind::XDeliver { .. }
                | EffectKind::XAck { .. }
        )
    }

    /// A write that makes the key exist if it did not, and that does not
    /// itself drop the TTLs it observed: written to a key that does not
    /// exist, it must be preceded by [`EffectKind::DropTtl`], since a new
    /// key has no TTL (not one a delete left behind here, nor one that this
    /// region collected and another still holds).
    pub fn needs_ttl_dropped(&self) -> bool {
        matches!(
            self,
            EffectKind::StrSet { keep_ttl: true, .. }
                | EffectKind::StrIncr { .. }
                | EffectKind::HSet { .. }
                | EffectKind::HIncr { .. }
                | EffectKind::SAdd { .. }
                | EffectKind::ZAdd { .. }
                | EffectKind::ZIncr { .. }
                | EffectKind::LInsert { .. }
                | EffectKind::StrPatch { .. }
                | EffectKind::XAdd { .. }
                | EffectKind::XSetId { .. }
                | EffectKind::XGroupCreate { .. }
        )
    }
}
