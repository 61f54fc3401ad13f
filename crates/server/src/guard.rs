//! The checks a command passes before its handler runs, beyond arity and
//! authentication: the connection's ACL permissions and this region's
//! keyspace policies (or its being a witness). Dispatch runs them before a
//! command runs or is queued; EXEC runs them again for each queued command,
//! since the user or the cluster may have changed in between.

use bytes::Bytes;
use meridian_cluster::{Election, Policies, Policy, PrimaryNow, WriteVerdict};
use meridian_crdt::RegionId;
use meridian_repl::election::mono_ms;
use meridian_resp::Frame;

use crate::acl;
use crate::cmd::spec::{Ctx, Spec};
use crate::metrics::Metrics;
use crate::shared::wall_ms;

/// Why the connection's ACL user may not run this command on its keys, if
/// it may not. Checked before queueing in MULTI and again at EXEC, since the
/// user may have changed in between.
pub fn permission_refusal(ctx: &mut Ctx<'_>, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let (need, name) = acl::need(spec.name, args, spec.flags.write, spec.flags.no_auth);
    if need == acl::Need::Nothing {
        return None;
    }
    let keys = command_keys(spec, args);
    let verdict = ctx
        .shared
        .acl
        .read()
        .check(&ctx.client.user, need, &name, &keys);
    let (reason, object, reply) = match verdict {
        Ok(()) => return None,
        Err(acl::Denied::NoUser) => {
            // As Redis does for a deleted user: the connection ends.
            ctx.client.close = true;
            return Some(Frame::error(format!(
                "NOPERM the user '{}' no longer exists",
                ctx.client.user
            )));
        }
        Err(acl::Denied::Command(name)) => {
            let reply = Frame::error(format!(
                "NOPERM this user has no permissions to run the '{name}' command"
            ));
            (acl::LogReason::Command, name, reply)
        }
        Err(acl::Denied::Key(key)) => (
            acl::LogReason::Key,
            key,
            Frame::error(
                "NOPERM this user has no permissions to access one of the keys used as arguments",
            ),
        ),
    };
    crate::shared::acl_log(ctx.shared, ctx.client, reason, &object);
    Some(reply)
}

/// The keys a command names, from its table entry (first, last, step).
pub fn command_keys<'a>(spec: &Spec, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    let (first, last, step) = spec.keys;
    if first <= 0 || step <= 0 {
        return Vec::new();
    }
    let last = if last < 0 {
        args.len() as i32 + last
    } else {
        last
    };
    (first..=last.min(args.len() as i32 - 1))
        .step_by(step as usize)
        .filter_map(|i| args.get(i as usize))
        .collect()
}

/// Commands a witness answers: it stores no data, so everything else is
/// refused rather than answered from an empty keyspace.
const WITNESS_COMMANDS: &[&str] = &[
    "ping", "echo", "hello", "auth", "info", "client", "config", "command", "time", "quit",
    "reset", "meridian", "select", "shutdown",
];

/// Why this region may not run a command now under its keyspace policies
/// (or because it is a witness), if it may not.
pub fn policy_refusal(ctx: &Ctx<'_>, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
    let config = &ctx.shared.config;
    if config.witness && !WITNESS_COMMANDS.contains(&spec.name) {
        return Some(Frame::error(format!(
            "WITNESS region {} is a witness: it stores no data; send '{}' to a data region",
            config.region, spec.name
        )));
    }
    if !spec.flags.write {
        return None;
    }
    let policies = ctx.shared.policies();
    if !policies.needs_lease() {
        return None;
    }
    let lease = ctx.shared.host.view.lock().lease(wall_ms());
    let lease = lease.as_ref().map(|_| ()).map_err(String::as_str);
    let keys = command_keys(spec, args);
    // The election's verdict and the count of an admitted primary write
    // happen under one hold of the election's lock, through the one door
    // that changes the election: a write checked in term T is counted in
    // term T, never in a term that began in between.
    let admitted = ctx.shared.host.election_step(|election| {
        admit(
            &policies,
            &keys,
            config.region,
            lease,
            election,
            (mono_ms(), wall_ms()),
        )
    });
    match admitted {
        Ok(()) => None,
        Err(Refusal::Fenced { pattern, why }) => {
            Metrics::inc(&ctx.shared.metrics.fenced_writes_total);
            Some(Frame::error(format!(
                "FENCED writes to keys matching '{pattern}' are refused while {why}; reads still work but may be stale"
            )))
        }
        Err(Refusal::ReadOnly { pattern, primary }) => Some(Frame::error(format!(
            "READONLY You can't write against a read only region. Keys matching '{pattern}' are written at their primary region {primary}"
        ))),
    }
}

/// Why a write was refused under a keyspace policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Fenced { pattern: String, why: String },
    ReadOnly { pattern: String, primary: String },
}

/// Decides a write to `keys` (no keys: every keyspace, as FLUSHALL) and,
/// when it is admitted as a primary write, counts it in the election's
/// current term. Taking the election by `&mut` is what makes the check and
/// the count one step. `now` is (monotonic ms for the lease, wall ms for
/// the record).
pub fn admit(
    policies: &Policies,
    keys: &[&Bytes],
    region: RegionId,
    lease: Result<(), &str>,
    election: &mut Election,
    now: (u64, u64),
) -> Result<(), Refusal> {
    let (now_mono_ms, now_wall_ms) = now;
    let writable = election.may_write(now_mono_ms);
    let primary = PrimaryNow {
        region: election.primary(),
        writable: writable.as_ref().map(|_| ()).map_err(String::as_str),
    };
    let verdicts: Vec<(&[u8], bool, WriteVerdict)> = if keys.is_empty() {
        policies
            .rules()
            .map(|(pattern, policy)| {
                let verdict = policies.verdict(pattern, region, lease, primary);
                (pattern, matches!(policy, Policy::Primary(_)), verdict)
            })
            .collect()
    } else {
        keys.iter()
            .map(|k| {
                let (pattern, policy) = policies.for_key(k);
                let verdict = policies.verdict(k, region, lease, primary);
                (pattern, matches!(policy, Policy::Primary(_)), verdict)
            })
            .collect()
    };
    let as_primary = verdicts.iter().any(|(_, p, _)| *p);
    for (pattern, _, verdict) in verdicts {
        match verdict {
            WriteVerdict::Allowed => {}
            WriteVerdict::Fenced(why) => {
                return Err(Refusal::Fenced {
                    pattern: String::from_utf8_lossy(pattern).into_owned(),
                    why: why.to_string(),
                })
            }
            WriteVerdict::ReadOnly { primary, pattern } => {
                return Err(Refusal::ReadOnly {
                    pattern: pattern.to_string(),
                    primary: primary.to_string(),
                })
            }
        }
    }
    if as_primary {
        // Recorded per term, so status can show that no two regions
        // accepted primary writes in one term.
        election.note_write(now_wall_ms);
    }
    Ok(())
}
