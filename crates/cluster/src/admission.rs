//! Whether this region may write some keys now, decided and recorded in one
//! step. The keyspace policies give a verdict per key from the quorum lease
//! and the election's primary; a write admitted under a `primary` policy is
//! counted in the election's current term. Taking the election by `&mut`
//! for both is what keeps a write checked in term T from being counted in
//! a term that began in between (the per-term counts are the evidence that
//! no two regions accepted primary writes in one term).

use meridian_crdt::RegionId;

use crate::election::Election;
use crate::policy::{Policies, Policy, PrimaryNow, WriteVerdict};

/// Why a write was refused under a keyspace policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `-FENCED`: a `majority` or `primary` keyspace while this region
    /// cannot write it (no lease, primary not writable yet).
    Fenced { pattern: String, why: String },
    /// `-READONLY`: a `primary` keyspace whose primary is another region.
    ReadOnly { pattern: String, primary: RegionId },
}

/// Decides a write to `keys` (none: every keyspace, as FLUSHALL) by
/// `region`, holding the quorum lease or not (`lease`), and counts it in
/// the election's current term when it is admitted as a primary write.
/// `now` is (monotonic ms for the election's lease, wall ms for the record).
pub fn admit(
    policies: &Policies,
    keys: &[&[u8]],
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
                    why,
                })
            }
            WriteVerdict::ReadOnly { primary, pattern } => {
                return Err(Refusal::ReadOnly { pattern, primary })
            }
        }
    }
    if as_primary {
        election.note_write(now_wall_ms);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::{ElectionConfig, Role};

    fn r(n: &str) -> RegionId {
        RegionId::new(n).unwrap()
    }

    /// A region of three whose election starts with `ea` as the primary of
    /// term 0; leases are skipped so the test needs no clock.
    fn election(me: &str) -> Election {
        let all = ["ea", "eb", "ec"];
        Election::new(
            ElectionConfig {
                me: r(me),
                peers: all.iter().filter(|p| **p != me).map(|p| r(p)).collect(),
                witness: false,
                initial_primary: Some(r("ea")),
                lease_ms: 1_000,
                stagger_ms: 200,
                unsafe_skip_leases: true,
            },
            None,
            1,
            0,
        )
    }

    fn counted(e: &Election) -> Vec<(u64, u64)> {
        e.accepted().map(|a| (a.term, a.count)).collect()
    }

    #[test]
    fn a_primary_write_is_counted_in_the_term_it_was_admitted_in() {
        let policies = Policies::parse(&["acct:*=primary:ea"]).unwrap();
        let mut primary = election("ea");
        assert_eq!(primary.role(), Role::Leader);
        let admitted = admit(
            &policies,
            &[b"acct:1"],
            r("ea"),
            Ok(()),
            &mut primary,
            (5, 5),
        );
        assert_eq!(admitted, Ok(()));
        assert_eq!(counted(&primary), [(primary.term(), 1)]);
        // An active-active key is no primary write: nothing is counted.
        let admitted = admit(
            &policies,
            &[b"cart:1"],
            r("ea"),
            Ok(()),
            &mut primary,
            (6, 6),
        );
        assert_eq!(admitted, Ok(()));
        assert_eq!(counted(&primary), [(primary.term(), 1)]);
    }

    #[test]
    fn a_refused_write_is_not_counted() {
        let policies = Policies::parse(&["acct:*=primary:ea", "ledger:*=majority"]).unwrap();
        let mut follower = election("eb");
        assert_eq!(
            admit(
                &policies,
                &[b"acct:1"],
                r("eb"),
                Ok(()),
                &mut follower,
                (5, 5)
            ),
            Err(Refusal::ReadOnly {
                pattern: "acct:*".into(),
                primary: r("ea")
            })
        );
        let mut primary = election("ea");
        let cut_off = admit(
            &policies,
            &[b"acct:1", b"ledger:1"],
            r("ea"),
            Err("no majority heard"),
            &mut primary,
            (5, 5),
        );
        assert!(
            matches!(cut_off, Err(Refusal::Fenced { .. })),
            "{cut_off:?}"
        );
        assert!(counted(&follower).is_empty());
        assert!(counted(&primary).is_empty());
    }

    #[test]
    fn a_keyless_write_touches_every_keyspace() {
        let policies = Policies::parse(&["acct:*=primary:ea"]).unwrap();
        let mut follower = election("eb");
        let flushall = admit(&policies, &[], r("eb"), Ok(()), &mut follower, (5, 5));
        assert!(
            matches!(flushall, Err(Refusal::ReadOnly { .. })),
            "{flushall:?}"
        );
    }
}
