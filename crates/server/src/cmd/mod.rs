//! The command table: one file per command family, as in mini-redis, each
//! listing its entries (`specs()`); this file gathers them into the table.
//!
//! Each handler takes the execution context and the full argument list
//! (`args[0]` is the command name) and returns one reply frame; dispatch
//! has already checked arity, authentication, MULTI queueing and the
//! Pub/Sub context. What a command is ([`Spec`], [`Ctx`]) lives in
//! [`spec`]; helpers several families use live in [`util`]. A handler that
//! needs the table (COMMAND, ACL CAT, EXEC) finds it in its [`Ctx`], so no
//! family depends on this file.

use std::sync::OnceLock;

pub mod acl;
pub mod bitfield;
pub mod bits;
pub mod command;
pub mod config;
pub mod config_params;
pub mod connection;
pub mod dump;
pub mod function;
pub mod geo;
pub mod geohash;
pub mod hash;
pub mod hll;
pub mod info;
pub mod keys;
pub mod keyspace;
pub mod lcs;
pub mod list;
pub mod lzf;
pub mod meridian;
pub mod object;
pub mod persistence;
pub mod plain;
pub mod pubsub;
pub mod rdb;
pub mod redis_meta;
pub mod scripting;
pub mod set;
pub mod sort;
pub mod spec;
pub mod stats;
pub mod stream;
pub mod stream_group;
pub mod strings;
pub mod tx;
pub mod util;
pub mod wait;
pub mod zset;
pub mod zset_algebra;
pub mod zset_pop;

pub use spec::{Ctx, Flags, Handler, Spec, Table};

/// Commands of the connection group that Redis lists there although they
/// live with another family here.
const CONNECTION_GROUP: &[&str] = &["select"];

/// Every family's entries, each with the group `COMMAND DOCS` reports.
fn all_specs() -> Vec<Spec> {
    let families: [(Vec<Spec>, &'static str); 31] = [
        (strings::specs(), "string"),
        (lcs::specs(), "string"),
        (bits::specs(), "bitmap"),
        (bitfield::specs(), "bitmap"),
        (hll::specs(), "hyperloglog"),
        (keys::specs(), "generic"),
        (sort::specs(), "generic"),
        (dump::specs(), "generic"),
        (object::specs(), "generic"),
        (wait::specs(), "generic"),
        (hash::specs(), "hash"),
        (set::specs(), "set"),
        (zset::specs(), "sorted-set"),
        (zset_algebra::specs(), "sorted-set"),
        (zset_pop::specs(), "sorted-set"),
        (geo::specs(), "geo"),
        (list::specs(), "list"),
        (stream::specs(), "stream"),
        (stream_group::specs(), "stream"),
        (connection::specs(), "connection"),
        (info::specs(), "server"),
        (config::specs(), "server"),
        (command::specs(), "server"),
        (keyspace::specs(), "server"),
        (persistence::specs(), "server"),
        (tx::specs(), "transactions"),
        (pubsub::specs(), "pubsub"),
        (meridian::specs(), "meridian"),
        (acl::specs(), "server"),
        (scripting::specs(), "scripting"),
        (function::specs(), "scripting"),
    ];
    let mut all = Vec::new();
    for (specs, group) in families {
        for mut s in specs {
            s.group = if CONNECTION_GROUP.contains(&s.name) {
                "connection"
            } else {
                group
            };
            s.movable_keys = redis_meta::has_flag(s.name, "movablekeys");
            s.redis_flags = spec::RedisFlags {
                readonly: redis_meta::has_flag(s.name, "readonly"),
                noscript: redis_meta::has_flag(s.name, "noscript"),
                may_replicate: redis_meta::may_replicate(s.name),
            };
            all.push(s);
        }
    }
    all
}

/// The command table, built once.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| all_specs().into_iter().map(|s| (s.name, s)).collect())
}
