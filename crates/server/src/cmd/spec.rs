//! What a command is: its table entry ([`Spec`]), its flags and the context
//! its handler runs in ([`Ctx`]). Every command family builds its entries
//! here; the table itself is assembled in `cmd/mod.rs`.

use std::collections::HashMap;

use bytes::Bytes;
use meridian_resp::{Frame, Protocol};
use meridian_store::{Db, Store};

use crate::client::Client;
use crate::shared::Shared;

/// What a handler works with. The store lock is held for the whole batch.
pub struct Ctx<'a> {
    pub store: &'a mut Store,
    pub client: &'a mut Client,
    pub shared: &'a Shared,
    /// The command table this command was found in.
    pub table: &'static Table,
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
    /// The group `COMMAND DOCS` reports, set when the table is built.
    pub group: &'static str,
    /// Redis flags the command `movablekeys`: where its keys are depends
    /// on its arguments (a count, a keyword), so `keys` names only the
    /// fixed ones and the key specs find the rest. Set with the table.
    pub movable_keys: bool,
    /// What Redis's own description of the command flags, read once when
    /// the table is built: the command path asks on every call.
    pub redis_flags: RedisFlags,
}

/// Flags of Redis's command descriptions that the command path checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisFlags {
    /// `readonly`: a read (tracking and scripts remember the keys read).
    pub readonly: bool,
    /// `noscript`: refused inside scripts.
    pub noscript: bool,
    /// May replicate though it is not a write (see
    /// `redis_meta::may_replicate`).
    pub may_replicate: bool,
}

/// Commands by lower-case name.
pub type Table = HashMap<&'static str, Spec, foldhash::fast::RandomState>;

/// Looks a command up by name, ignoring case.
pub fn lookup<'t>(table: &'t Table, name: &[u8]) -> Option<&'t Spec> {
    if name.len() > 32 {
        return None;
    }
    let mut lower = [0u8; 32];
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(&lower[..name.len()]).ok()?;
    table.get(name)
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

/// Allowed before AUTH.
pub const NO_AUTH: Flags = Flags {
    no_auth: true,
    ..READ
};
/// QUIT and RESET: before AUTH, inside MULTI and in the Pub/Sub context.
pub const ANYTIME: Flags = Flags {
    no_auth: true,
    tx_control: true,
    pubsub_ok: true,
    ..READ
};
/// Allowed in the RESP2 Pub/Sub context.
pub const PUBSUB_OK: Flags = Flags {
    pubsub_ok: true,
    ..READ
};
/// SHUTDOWN answers nothing when it succeeds: the connection just closes.
pub const NO_REPLY: Flags = Flags {
    multi_reply: true,
    ..READ
};

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
    command(name, arity, flags, keys, handler, info_flags)
}

/// A table entry with the flags `COMMAND INFO` lists given explicitly.
pub fn command(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (i32, i32, i32),
    handler: super::Handler,
    info_flags: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        handler,
        info_flags,
        calls: Default::default(),
        group: "",
        movable_keys: false,
        redis_flags: RedisFlags::default(),
    }
}
