//! `MERIDIAN`: the commands Redis does not have — regions, the conflict
//! journal, session tokens and keyspace policies.
//!
//! REGIONS lists this region (with the elected primary and its term when
//! there are `primary` keyspaces) and the peers replication knows of;
//! POLICY reports each keyspace policy's state here, and for `primary`
//! keyspaces the primary, the term and the writes accepted in it; AFTER
//! answers at once, from the version vector as it stands, because a
//! handler runs under the store lock and must not wait.
//!
//! A session token is the version vector in text: `region:seq` pairs joined
//! by commas (`eu-west:5,us-east:7`), the empty string for a region that has
//! applied nothing. Region names never contain `:` or `,`, so the text
//! parses back unambiguously.

use std::collections::HashSet;

use bytes::Bytes;
use meridian_crdt::region::{REGIONS_MAX, REGION_NAME_MAX_BYTES};
use meridian_crdt::vv::SEQ_MAX;
use meridian_crdt::{Hlc, Tag, VersionVector};
use meridian_repl::LinkState;
use meridian_resp::Frame;

use super::spec::{spec, Ctx, Spec, READ};
use super::util::{eq_ignore_case, parse_int, syntax_error};
use super::util::{help_reply, pair, subcommand};
use crate::shared::{wall_ms, Readiness, Shared};

/// Conflicts `MERIDIAN CONFLICTS` returns when COUNT is not given.
const CONFLICTS_DEFAULT_COUNT: usize = 10;

pub fn specs() -> Vec<Spec> {
    vec![spec("meridian", -2, READ, (0, 0, 0), meridian)]
}

const SUBCOMMANDS: &[(&str, i32)] = &[
    ("after", -3),
    ("conflicts", -2),
    ("help", 2),
    ("policy", 2),
    ("regions", 2),
    ("token", 2),
];

const HELP: &[&str] = &[
    "REGIONS",
    "    Each region: id, role, link state, lag (ms and ops), epoch, version vector;",
    "    for this region also the elected primary, the term and its election role.",
    "CONFLICTS [COUNT <n>] [KEY <key>]",
    "    Newest entries of the conflict journal (default COUNT 10).",
    "TOKEN",
    "    A session token: every write this region has applied.",
    "AFTER <token> [TIMEOUT <ms>]",
    "    +OK once this region has applied every write in <token>, else an error.",
    "POLICY",
    "    The keyspace policies in force and each one's state in this region; for",
    "    primary keyspaces also the primary, the term and writes accepted in it.",
];

fn meridian(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match subcommand(args, SUBCOMMANDS, "meridian") {
        Err(e) => e,
        Ok("regions") => regions(ctx),
        Ok("conflicts") => conflicts(ctx, args),
        Ok("token") => {
            // Writes earlier in this pipeline belong in the token.
            if !crate::commit::append(ctx.store, ctx.shared) {
                return crate::commit::poisoned_error();
            }
            Frame::bulk(token(ctx.db().version_vector()))
        }
        Ok("after") => after(ctx, args),
        Ok("policy") => policy(ctx),
        Ok(_) => help_reply(&args[0], HELP),
    }
}

/// The text form of a version vector; see the module docs.
pub fn token(vv: &VersionVector) -> String {
    vv.iter()
        .filter(|(_, seq)| *seq > 0)
        .map(|(r, seq)| format!("{r}:{seq}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a token into `(region name, seq)` pairs without interning the
/// names: a token may name regions this process has never heard of.
fn parse_token(text: &[u8]) -> Option<Vec<(&str, u64)>> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for part in text.split(',') {
        let (name, seq) = part.split_once(':')?;
        let name_ok = !name.is_empty()
            && name.len() <= REGION_NAME_MAX_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || !seq.bytes().all(|b| b.is_ascii_digit()) || !names.insert(name) {
            return None;
        }
        let seq: u64 = seq.parse().ok().filter(|s| *s <= SEQ_MAX)?;
        out.push((name, seq));
        if out.len() > REGIONS_MAX {
            return None;
        }
    }
    Some(out)
}

/// What the region is doing about writes, for POLICY and INFO.
pub fn state(shared: &Shared) -> &'static str {
    match *shared.readiness.lock() {
        Readiness::Ready => "writable",
        Readiness::Recovering => "recovering",
        Readiness::Poisoned(_) => "poisoned",
        Readiness::ShuttingDown => "shutting-down",
    }
}

/// This region first, then every peer replication knows of. Built from the
/// replication status directly: the store lock is already held here.
fn regions(ctx: &mut Ctx<'_>) -> Frame {
    let epoch = ctx.store.epoch();
    let last_lsn = ctx.store.log().last_lsn();
    let db = ctx.db();
    let mut me = vec![
        pair("id", Frame::bulk(db.region().as_str())),
        pair("role", Frame::bulk("data")),
        pair("link", Frame::bulk("self")),
        pair("lag_ms", Frame::Integer(0)),
        pair("lag_ops", Frame::Integer(0)),
        pair("epoch", Frame::Integer(epoch as i64)),
        pair("version_vector", Frame::bulk(token(db.version_vector()))),
    ];
    {
        let e = ctx.shared.host.election_read();
        if let Some(p) = e.primary() {
            me.push(pair("primary", Frame::bulk(p.as_str())));
            me.push(pair("term", Frame::Integer(e.term() as i64)));
            me.push(pair("election_role", Frame::bulk(e.role().name())));
        }
    }
    let mut rows = vec![Frame::Map(me)];
    for p in ctx
        .shared
        .repl
        .view(last_lsn, wall_ms(), |lsn| ctx.store.appended_ms_after(lsn))
    {
        let link = if p.outbound_state == LinkState::Up && p.inbound_connected {
            "up"
        } else {
            p.outbound_state.name()
        };
        rows.push(Frame::Map(vec![
            pair("id", Frame::bulk(p.region.as_str())),
            pair("role", Frame::bulk("data")),
            pair("link", Frame::bulk(link)),
            pair("lag_ms", Frame::Integer(p.lag_ms as i64)),
            pair("lag_ops", Frame::Integer(p.lag_ops as i64)),
            pair("version_vector", Frame::bulk(token(&p.peer_vv))),
            pair("addr", Frame::bulk(p.addr)),
            pair("clock_offset_ms", Frame::Integer(p.clock_offset_ms)),
            pair("clock_alarm", Frame::Boolean(p.clock_alarm)),
            pair("last_error", p.last_error.map_or(Frame::Null, Frame::bulk)),
        ]));
    }
    Frame::Array(rows)
}

fn dot_text(tag: &Tag) -> String {
    format!("{}:{}", tag.dot.region(), tag.dot.seq())
}

fn hlc_text(hlc: Hlc) -> String {
    format!("{}.{}", hlc.wall_ms(), hlc.logical())
}

fn conflicts(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut count = CONFLICTS_DEFAULT_COUNT;
    let mut key: Option<&Bytes> = None;
    for opt in args[2..].chunks(2) {
        let [name, value] = opt else {
            return syntax_error();
        };
        if eq_ignore_case(name, "count") {
            match parse_int(value) {
                Ok(n) if n >= 0 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Ok(_) => return Frame::error("ERR value is out of range, must be positive"),
                Err(e) => return e,
            }
        } else if eq_ignore_case(name, "key") {
            key = Some(value);
        } else {
            return syntax_error();
        }
    }
    let entries = ctx
        .store
        .journal()
        .recent()
        .rev()
        .filter(|e| key.is_none_or(|k| e.conflict.key[..] == k[..]))
        .take(count)
        .map(|e| {
            let c = &e.conflict;
            let blob = |b: &[u8]| Frame::bulk(Bytes::copy_from_slice(b));
            Frame::Map(vec![
                pair("key", blob(&c.key)),
                pair("field", c.sub.as_deref().map_or(Frame::Null, blob)),
                pair("type", Frame::bulk(c.kind.name())),
                pair("rule", Frame::bulk(c.rule.name())),
                pair("winner", Frame::bulk(dot_text(&c.winner))),
                pair("winner_hlc", Frame::bulk(hlc_text(c.winner.hlc))),
                pair("winner_value", blob(&c.winner_value)),
                pair("loser", Frame::bulk(dot_text(&c.loser))),
                pair("loser_hlc", Frame::bulk(hlc_text(c.loser.hlc))),
                pair("loser_value", blob(&c.loser_value)),
                pair("epoch", Frame::Integer(e.epoch as i64)),
                pair("detected_ms", Frame::Integer(e.detected_ms as i64)),
            ])
        })
        .collect();
    Frame::Array(entries)
}

/// AFTER token [TIMEOUT ms]. The answer is immediate whatever the timeout:
/// a handler holds the store lock, and replication needs it to apply the
/// writes a wait would be for.
fn after(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(wanted) = parse_token(&args[2]) else {
        return Frame::error(format!(
            "ERR invalid token '{}': expected REGION:SEQ[,REGION:SEQ...]",
            String::from_utf8_lossy(&args[2])
        ));
    };
    match &args[3..] {
        [] => {}
        [opt, ms] if eq_ignore_case(opt, "timeout") => match parse_int(ms) {
            Ok(n) if n >= 0 => {}
            Ok(_) => return Frame::error("ERR timeout is negative"),
            Err(_) => return Frame::error("ERR timeout is not an integer or out of range"),
        },
        _ => return syntax_error(),
    }
    let vv = ctx.db().version_vector();
    match first_missing(vv, &wanted) {
        None => Frame::ok(),
        Some((name, have, seq)) => Frame::error(format!(
            "ERR this region has not applied the token's writes: region {name} is at seq {have}, the token needs {seq}"
        )),
    }
}

/// The first region of a token this region is behind on: (name, applied, needed).
fn first_missing<'a>(vv: &VersionVector, wanted: &[(&'a str, u64)]) -> Option<(&'a str, u64, u64)> {
    let applied = |name: &str| {
        vv.iter()
            .find(|(r, _)| r.as_str() == name)
            .map_or(0, |(_, seq)| seq)
    };
    wanted
        .iter()
        .find(|(name, seq)| applied(name) < *seq)
        .map(|(name, seq)| (*name, applied(name), *seq))
}

/// Waiting for a token happens in the connection, outside the store lock;
/// without TIMEOUT a client waits this long.
pub const AFTER_DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// For `MERIDIAN AFTER token [TIMEOUT ms]` with a valid token: how long the
/// connection may wait for this region to catch up before running it.
pub fn after_wait(args: &[Bytes]) -> Option<std::time::Duration> {
    if args.len() < 3 || !eq_ignore_case(&args[0], "meridian") || !eq_ignore_case(&args[1], "after")
    {
        return None;
    }
    parse_token(&args[2])?;
    let ms = match &args[3..] {
        [] => AFTER_DEFAULT_TIMEOUT_MS,
        [opt, ms] if eq_ignore_case(opt, "timeout") => u64::try_from(parse_int(ms).ok()?).ok()?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// Whether `text` is a session token (see the module docs).
pub fn valid_token(text: &[u8]) -> bool {
    parse_token(text).is_some()
}

/// True once `vv` covers every write the token names.
pub fn token_satisfied(vv: &VersionVector, token_arg: &[u8]) -> bool {
    parse_token(token_arg).is_some_and(|wanted| first_missing(vv, &wanted).is_none())
}

fn policy(ctx: &mut Ctx<'_>) -> Frame {
    let rows = crate::status::policy_states(ctx.shared)
        .into_iter()
        .map(|p| {
            let mut row = vec![
                pair("pattern", Frame::bulk(p.pattern)),
                pair("policy", Frame::bulk(p.policy)),
                pair("state", Frame::bulk(p.state)),
                pair("reason", p.reason.map_or(Frame::Null, Frame::bulk)),
            ];
            if let Some(primary) = p.primary {
                row.push(pair("primary", Frame::bulk(primary.primary)));
                row.push(pair("term", Frame::Integer(primary.term as i64)));
                row.push(pair(
                    "writes_accepted_in_term",
                    Frame::Integer(primary.writes_accepted_in_term as i64),
                ));
            }
            Frame::Map(row)
        })
        .collect();
    Frame::Array(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::{Dot, RegionId};

    #[test]
    fn token_round_trips_through_its_text() {
        let mut vv = VersionVector::new();
        vv.observe(Dot::new(RegionId::new("tok-a").unwrap(), 5));
        vv.observe(Dot::new(RegionId::new("tok-b").unwrap(), 7));
        let text = token(&vv);
        assert_eq!(text, "tok-a:5,tok-b:7");
        assert_eq!(
            parse_token(text.as_bytes()),
            Some(vec![("tok-a", 5), ("tok-b", 7)])
        );
        assert_eq!(parse_token(b""), Some(Vec::new()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            &b"a"[..],
            b"a:",
            b":1",
            b"a:1,",
            b"a:1,a:2",
            b"A:1",
            b"a:-1",
            b"a:1:2",
            b"a:99999999999999999999",
        ] {
            assert_eq!(parse_token(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
