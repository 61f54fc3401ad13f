//! WAIT and WAITAOF: how many *other regions* hold, on stable storage,
//! everything this connection wrote (Redis counts replicas; a Meridian
//! region's peers are other regions, each a full copy).
//!
//! A connection's last write is the op its last writing batch committed
//! (`conn::run_batch` records its seq and LSN in [`LastWrite`]). A peer holds
//! it once the durable vector of its last acknowledgement
//! (`Outbound::peer_durable_vv`, the vector tombstone collection trusts)
//! covers that seq; only peers whose link is up and that store data count,
//! as Redis counts only connected replicas. With no write yet, every such
//! peer holds all of it, so WAIT answers the number of live peers at once.
//!
//! The handlers answer at once: they run under the store lock, which the
//! replication that would raise the count needs. A connection waits before
//! running them, with nothing locked (`conn::wait_for_acks`); inside MULTI
//! or a script they answer what holds now, as in Redis.

use bytes::Bytes;
use meridian_repl::LinkState;
use meridian_resp::Frame;

use super::spec::{command, Ctx, Spec, READ};
use super::util::parse_int;
use crate::shared::Shared;

/// The op a connection's writes last committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastWrite {
    /// Its seq in this region's counter of the version vector.
    pub seq: u64,
    /// Its record in this region's op log.
    pub lsn: u64,
}

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("wait", 3, READ, NONE, wait, &["noscript"]),
        command("waitaof", 4, READ, NONE, waitaof, &["noscript"]),
    ]
}

/// What a WAIT or WAITAOF with valid arguments waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// 1: the write must be on this region's stable storage (WAITAOF).
    pub local: i64,
    pub regions: i64,
    /// 0 waits for as long as it takes, as in Redis.
    pub timeout_ms: u64,
}

/// For WAIT or WAITAOF: what the connection may wait for before running
/// it; `None` when the arguments are refused (the handler says why).
pub fn wanted(args: &[Bytes]) -> Option<Wanted> {
    let name = args.first()?;
    if name.eq_ignore_ascii_case(b"wait") && args.len() == 3 {
        let regions = parse_int(&args[1]).ok()?;
        let timeout_ms = parse_timeout(&args[2]).ok()?;
        return Some(Wanted {
            local: 0,
            regions,
            timeout_ms,
        });
    }
    if name.eq_ignore_ascii_case(b"waitaof") && args.len() == 4 {
        let (local, regions) = parse_waitaof_counts(&args[1], &args[2]).ok()?;
        let timeout_ms = parse_timeout(&args[3]).ok()?;
        return Some(Wanted {
            local,
            regions,
            timeout_ms,
        });
    }
    None
}

/// Redis's timeout in milliseconds: an integer, not negative.
fn parse_timeout(arg: &[u8]) -> Result<u64, Frame> {
    let ms = parse_int(arg)
        .map_err(|_| Frame::error("ERR timeout is not an integer or out of range"))?;
    u64::try_from(ms).map_err(|_| Frame::error("ERR timeout is negative"))
}

/// WAITAOF's `numlocal` (0 or 1) and `numreplicas` (not negative), with
/// Redis 7.2's refusals.
fn parse_waitaof_counts(local: &[u8], regions: &[u8]) -> Result<(i64, i64), Frame> {
    let local = parse_int(local)?;
    if !(0..=1).contains(&local) {
        return Err(Frame::error(
            "ERR value is out of range, value must between 0 and 1",
        ));
    }
    let regions = parse_int(regions)?;
    if regions < 0 {
        return Err(Frame::error("ERR value is out of range, must be positive"));
    }
    Ok((local, regions))
}

/// Peers (data regions with a live link) whose durable vector covers
/// `last`. Takes `ReplStatus::outbound`, a leaf lock.
pub fn regions_holding(shared: &Shared, last: Option<LastWrite>) -> i64 {
    let me = shared.config.region;
    let seq = last.map_or(0, |w| w.seq);
    let held = shared
        .repl
        .outbound
        .lock()
        .values()
        .filter(|o| {
            o.state == LinkState::Up
                && o.peer_witness == Some(false)
                && o.peer_durable_vv.get(me) >= seq
        })
        .count();
    i64::try_from(held).unwrap_or(i64::MAX)
}

/// 1 once `last` is on this region's stable storage (always, without a write).
pub fn synced_here(shared: &Shared, last: Option<LastWrite>) -> i64 {
    let synced = *shared.host.synced.borrow();
    i64::from(last.is_none_or(|w| synced >= w.lsn))
}

/// True once what `wanted` asks for holds for `last`.
pub fn satisfied(shared: &Shared, last: Option<LastWrite>, wanted: &Wanted) -> bool {
    synced_here(shared, last) >= wanted.local && regions_holding(shared, last) >= wanted.regions
}

/// WAIT numreplicas timeout: the regions holding this connection's last
/// write now (the connection waited before running it).
fn wait(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if let Err(e) = parse_int(&args[1]) {
        return e;
    }
    if let Err(e) = parse_timeout(&args[2]) {
        return e;
    }
    Frame::Integer(regions_holding(ctx.shared, ctx.client.last_write))
}

/// WAITAOF numlocal numreplicas timeout: `[numlocal, numreplicas]`, where
/// numlocal is 1 once the write is on this region's disk. Meridian always
/// logs, so Redis's refusal without `appendonly` never applies.
fn waitaof(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if let Err(e) = parse_waitaof_counts(&args[1], &args[2]) {
        return e;
    }
    if let Err(e) = parse_timeout(&args[3]) {
        return e;
    }
    let last = ctx.client.last_write;
    Frame::Array(vec![
        Frame::Integer(synced_here(ctx.shared, last)),
        Frame::Integer(regions_holding(ctx.shared, last)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn only_valid_arguments_make_a_connection_wait() {
        assert_eq!(
            wanted(&args(&["WAIT", "1", "100"])),
            Some(Wanted {
                local: 0,
                regions: 1,
                timeout_ms: 100
            })
        );
        assert_eq!(wanted(&args(&["wait", "1", "-1"])), None);
        assert_eq!(wanted(&args(&["wait", "x", "0"])), None);
        assert_eq!(
            wanted(&args(&["waitaof", "1", "0", "0"])),
            Some(Wanted {
                local: 1,
                regions: 0,
                timeout_ms: 0
            })
        );
        assert_eq!(wanted(&args(&["waitaof", "2", "0", "0"])), None);
        assert_eq!(wanted(&args(&["waitaof", "0", "-1", "0"])), None);
        assert_eq!(wanted(&args(&["get", "k"])), None);
    }
}
