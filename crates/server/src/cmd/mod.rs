//! The command table and dispatch.
//!
//! One file per command family, as in mini-redis. Each handler takes the
//! execution context and the full argument list (`args[0]` is the command
//! name) and returns one reply frame; dispatch has already checked arity,
//! authentication, MULTI queueing and the Pub/Sub context.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use meridian_resp::{Frame, Protocol};
use meridian_store::{Db, Store};

use crate::client::Client;
use crate::shared::Shared;

pub mod acl;
pub mod hash;
pub mod keys;
pub mod meridian;
pub mod pubsub;
pub mod server;
pub mod set;
pub mod strings;
pub mod tx;
pub mod util;
pub mod zset;

/// What a handler works with. The store lock is held for the whole batch.
pub struct Ctx<'a> {
    pub store: &'a mut Store,
    pub client: &'a mut Client,
    pub shared: &'a Shared,
}

impl Ctx<'_> {
    pub fn db(&mut self) -> &mut Db {
        self.store.db_mut()
    }

    pub fn proto(&self) -> Protocol {
        self.client.proto
    }
}

pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Frame;

/// Command flags as `COMMAND INFO` reports them, plus what dispatch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// May change the keyspace: refused when the op log is poisoned.
    pub write: bool,
    /// Allowed before AUTH.
    pub no_auth: bool,
    /// Runs immediately inside MULTI instead of being queued.
    pub tx_control: bool,
    /// Allowed in the RESP2 Pub/Sub context.
    pub pubsub_ok: bool,
    /// The reply is a list of separate replies (SUBSCRIBE and friends).
    pub multi_reply: bool,
}

pub const READ: Flags = Flags {
    write: false,
    no_auth: false,
    tx_control: false,
    pubsub_ok: false,
    multi_reply: false,
};
pub const WRITE: Flags = Flags {
    write: true,
    ..READ
};

pub struct Spec {
    pub name: &'static str,
    /// Redis arity: positive = exact count, negative = at least that many.
    pub arity: i32,
    pub flags: Flags,
    /// First key, last key (negative counts from the end), step.
    pub keys: (i32, i32, i32),
    pub handler: Handler,
    /// Words `COMMAND INFO` lists as flags.
    pub info_flags: &'static [&'static str],
    /// Calls since start (or CONFIG RESETSTAT), for metrics: an atomic in
    /// the table, so counting costs no lock on the command path.
    pub calls: std::sync::atomic::AtomicU64,
}

fn all_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    v.extend(strings::specs());
    v.extend(keys::specs());
    v.extend(hash::specs());
    v.extend(set::specs());
    v.extend(zset::specs());
    v.extend(server::specs());
    v.extend(tx::specs());
    v.extend(pubsub::specs());
    v.extend(meridian::specs());
    v.extend(acl::specs());
    v
}

type Table = HashMap<&'static str, Spec, foldhash::fast::RandomState>;

pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| all_specs().into_iter().map(|s| (s.name, s)).collect())
}

/// Looks a command up by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > 32 {
        return None;
    }
    let mut lower = [0u8; 32];
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(&lower[..name.len()]).ok()?;
    table().get(name)
}

pub fn arity_ok(spec: &Spec, argc: usize) -> bool {
    if spec.arity >= 0 {
        argc == spec.arity as usize
    } else {
        argc >= (-spec.arity) as usize
    }
}

/// Redis's reply for an unknown command, quoting up to the first arguments.
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&args[0])
    );
    for a in args.iter().skip(1) {
        let a = String::from_utf8_lossy(a);
        if text.len() + a.len() > 128 {
            break;
        }
        text.push_str(&format!("'{a}' "));
    }
    Frame::error(text)
}

/// A shorthand for building table entries.
pub fn spec(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    handler: Handler,
) -> Spec {
    let info_flags: &'static [&'static str] = if flags.write {
        &["write"]
    } else {
        &["readonly"]
    };
    Spec {
        name,
        arity,
        flags,
        keys,
        handler,
        info_flags,
        calls: Default::default(),
    }
}
