//! What the workload drivers did: every committed op, what it wrote, and
//! whether it survived. The checkers judge the final state against this.

use meridian_crdt::{Dot, StreamId, Tag, VersionVector};

/// What became of a committed op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Committed, not yet flushed: the client has no reply yet.
    Pending,
    /// Flushed (acknowledged), or found in the log after a crash.
    Durable,
    /// Lost in a crash before it reached the OS (never acknowledged), or
    /// acknowledged but lost in a power loss before it was synced (as
    /// `--fsync everysec` allows). Never shipped either way; its dot is
    /// reused by the region's next op.
    Lost,
}

/// The part of a write the checkers model exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// INCRBY on a counter key (`c:*`).
    Incr {
        key: String,
        delta: i64,
    },
    /// HINCRBY of field `n` of a hash (`h:*`).
    HIncr {
        key: String,
        delta: i64,
    },
    /// ZINCRBY of member `zc` of a sorted set (`z:*`).
    ZIncr {
        key: String,
        delta: i64,
    },
    /// SETBIT to 1 of a bitmap only ever written so (`b:*`).
    SetBit {
        key: String,
        bit: u64,
    },
    /// BITFIELD `OVERFLOW WRAP INCRBY` of fixed fields of a string only
    /// ever written so (`bf:*`): (offset, width, increment) per field.
    FieldIncr {
        key: String,
        incrs: Vec<(u64, u8, i64)>,
    },
    /// PFADD of `elements` to a HyperLogLog only ever written so (`u:*`).
    PfAdd {
        key: String,
        elements: Vec<String>,
    },
    /// SET of a register only ever written by SET (`r:*`).
    Set {
        key: String,
        value: String,
    },
    SAdd {
        key: String,
        member: String,
    },
    SRem {
        key: String,
        member: String,
    },
    /// DEL of a set key (`d:*`).
    Del {
        key: String,
    },
    /// RPUSH (`front` false) or LPUSH of values unique to the run to a
    /// list (`l:*`), in argument order.
    Push {
        key: String,
        values: Vec<String>,
        front: bool,
    },
    /// LINSERT of a unique value between the elements the writer held
    /// around its index (`None`: the list's end on that side).
    Insert {
        key: String,
        value: String,
        after: Option<String>,
        before: Option<String>,
    },
    /// LPOP/RPOP (the values returned), LREM or LTRIM (the values the
    /// writer's list lost): what the writer saw it remove.
    Remove {
        key: String,
        what: &'static str,
        values: Vec<String>,
    },
    /// A script moving `amount` from counter `from` to counter `to`
    /// (`x:*`): two INCRBYs, one op.
    Transfer {
        from: String,
        to: String,
        amount: i64,
    },
    /// A script setting both keys of a pair (`y:*:a`, `y:*:b`) to one
    /// value: two SETs, one op.
    Pair {
        keys: [String; 2],
        value: String,
    },
    /// XADD `*` of one entry whose field `v` holds `value`, unique to the
    /// run, to a stream (`xs:*`); `id` is the ID it took.
    XAdd {
        key: String,
        id: StreamId,
        value: String,
    },
    /// XDEL of `ids`, entries the writer held.
    XDel {
        key: String,
        ids: Vec<StreamId>,
    },
    /// XTRIM MAXLEN: every entry up to `upto` that the op observed goes
    /// (`removed`: those the writer saw it remove).
    XTrim {
        key: String,
        upto: StreamId,
        removed: Vec<StreamId>,
    },
    /// XREADGROUP `>` of the group `g` of a stream: the IDs it delivered.
    XReadGroup {
        key: String,
        ids: Vec<StreamId>,
    },
    /// Writes only the convergence checker judges (HSET, ZADD, TTLs,
    /// `majority` and `primary` keys).
    Other {
        key: String,
        what: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub region: usize,
    pub tick: u64,
    pub tag: Tag,
    /// The region's version vector when the op was made: what it observed.
    pub ctx: VersionVector,
    pub write: Write,
    pub fate: Fate,
    /// For a write to a `primary` key: the term the region accepted it in.
    pub primary_term: Option<u64>,
    /// For a write to a `majority` key: how many regions (itself included)
    /// the region had heard from within the lease of simulated time.
    pub reached_in_lease: Option<usize>,
}

impl Recorded {
    pub fn dot(&self) -> Dot {
        self.tag.dot
    }

    /// True when this op had observed `other` when it was made.
    pub fn observed(&self, other: &Recorded) -> bool {
        self.ctx.covers(other.dot())
    }
}

#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Recorded>,
    /// Writes refused by a keyspace policy (`-FENCED`, `-READONLY`).
    pub refused: u64,
    /// List values handed out so far: each pushed value is `<region>-<n>`
    /// with `n` counted across the run, so a value names its push even
    /// after a crash reused the push's dot.
    pub list_values: u64,
    /// Stream entry values handed out so far (`<region>-<n>`, as list
    /// values).
    pub stream_values: u64,
}

impl History {
    pub fn durable(&self) -> impl Iterator<Item = &Recorded> {
        self.ops.iter().filter(|o| o.fate == Fate::Durable)
    }

    pub fn count(&self, fate: Fate) -> u64 {
        self.ops.iter().filter(|o| o.fate == fate).count() as u64
    }
}
