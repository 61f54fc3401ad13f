//! Which regions make up the cluster, and how a change spreads.
//!
//! Membership is a versioned list of regions (data and witness alike) with
//! their replication addresses, plus the regions removed from it. An
//! operator changes it at any one region (add or remove, one region per
//! change); the change raises the version, and every link carries the
//! dialer's membership so the others adopt it, including a region that was
//! down when the change was made. Adoption is a join: the higher version
//! wins, and equal versions (changes made at two regions at once) are
//! ordered by their content, so every region settles on the same list.
//!
//! One region per change keeps quorums safe: a majority of the old list and
//! a majority of the new one always share a region, so two sides can never
//! both hold a lease while regions disagree about the list.

use std::collections::{BTreeMap, BTreeSet};

use meridian_crdt::RegionId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("region {0} is already a member")]
    AlreadyMember(RegionId),
    #[error("region {0} is not a member")]
    NotMember(RegionId),
    #[error("a region cannot remove itself; remove it from another region")]
    RemoveSelf,
    #[error("the replication address {0:?} is not HOST:PORT")]
    BadAddress(String),
}

/// The cluster's regions as one region knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Raised by every change; the higher version wins when two meet.
    pub version: u64,
    /// Every member, this region included, with its replication address
    /// (empty when unknown, as for this region when it started with
    /// `--peer` flags only).
    pub members: BTreeMap<String, String>,
    /// Regions removed by an operator: refused if they dial in.
    pub removed: BTreeSet<String>,
}

impl Membership {
    /// Version 0: this region and the peers it was started with.
    pub fn initial(me: RegionId, peers: &[(RegionId, String)]) -> Membership {
        let mut members: BTreeMap<String, String> = peers
            .iter()
            .map(|(r, a)| (r.to_string(), a.clone()))
            .collect();
        members.entry(me.to_string()).or_default();
        Membership {
            version: 0,
            members,
            removed: BTreeSet::new(),
        }
    }

    pub fn is_member(&self, region: RegionId) -> bool {
        self.members.contains_key(region.as_str())
    }

    pub fn was_removed(&self, region: RegionId) -> bool {
        self.removed.contains(region.as_str())
    }

    /// Every member but `me`, with the address to dial: this region's own
    /// (`local`, from its `--peer` flags, which may go through a proxy or a
    /// name only it resolves) when it has one, else the one the change that
    /// added the member gave.
    pub fn peers(&self, me: RegionId, local: &[(RegionId, String)]) -> Vec<(RegionId, String)> {
        self.members
            .iter()
            .filter(|(r, _)| r.as_str() != me.as_str())
            .filter_map(|(r, a)| {
                let id = RegionId::new(r).ok()?;
                let addr = local
                    .iter()
                    .find(|(l, _)| *l == id)
                    .map_or_else(|| a.clone(), |(_, la)| la.clone());
                Some((id, addr))
            })
            .collect()
    }

    /// Adds `region` at `addr` (a region removed earlier may come back).
    pub fn add(&mut self, region: RegionId, addr: &str) -> Result<(), MembershipError> {
        if self.is_member(region) {
            return Err(MembershipError::AlreadyMember(region));
        }
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(MembershipError::BadAddress(addr.to_string()));
        }
        self.removed.remove(region.as_str());
        self.members.insert(region.to_string(), addr.to_string());
        self.version += 1;
        Ok(())
    }

    /// Removes `region`; from now on it is refused.
    pub fn remove(&mut self, me: RegionId, region: RegionId) -> Result<(), MembershipError> {
        if region == me {
            return Err(MembershipError::RemoveSelf);
        }
        if self.members.remove(region.as_str()).is_none() {
            return Err(MembershipError::NotMember(region));
        }
        self.removed.insert(region.to_string());
        self.version += 1;
        Ok(())
    }

    /// Takes `theirs` if it is newer. Returns whether anything changed.
    /// A join: commutative, associative and idempotent.
    pub fn adopt(&mut self, theirs: &Membership) -> bool {
        if theirs.rank() <= self.rank() {
            return false;
        }
        *self = theirs.clone();
        true
    }

    /// The order in which memberships win: version, then which regions
    /// (addresses do not count: each region may know another by its own).
    fn rank(&self) -> (u64, Vec<&String>, &BTreeSet<String>) {
        (self.version, self.members.keys().collect(), &self.removed)
    }

    /// Members counted for quorums (this region included).
    pub fn size(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegionId {
        RegionId::new(s).unwrap()
    }

    fn start() -> Membership {
        Membership::initial(
            r("ma"),
            &[
                (r("mb"), "10.0.0.2:7381".into()),
                (r("mc"), "10.0.0.3:7381".into()),
            ],
        )
    }

    #[test]
    fn changes_raise_the_version_and_refuse_what_makes_no_sense() {
        let mut m = start();
        assert_eq!((m.version, m.size()), (0, 3));
        m.add(r("md"), "10.0.0.4:7381").unwrap();
        assert_eq!((m.version, m.size()), (1, 4));
        assert_eq!(
            m.add(r("md"), "10.0.0.4:7381"),
            Err(MembershipError::AlreadyMember(r("md")))
        );
        assert!(matches!(
            m.add(r("me"), "nohost"),
            Err(MembershipError::BadAddress(_))
        ));
        assert_eq!(m.remove(r("ma"), r("ma")), Err(MembershipError::RemoveSelf));
        m.remove(r("ma"), r("mc")).unwrap();
        assert!(m.was_removed(r("mc")) && !m.is_member(r("mc")));
        assert_eq!(
            m.remove(r("ma"), r("mc")),
            Err(MembershipError::NotMember(r("mc")))
        );
        assert_eq!(m.peers(r("ma"), &[]).len(), 2);
        let local = [(r("mb"), "proxy:1".to_string())];
        assert!(m
            .peers(r("ma"), &local)
            .contains(&(r("mb"), "proxy:1".into())));
        m.add(r("mc"), "10.0.0.9:7381").unwrap();
        assert!(
            !m.was_removed(r("mc")),
            "an operator may add a removed region back"
        );
        assert_eq!(m.version, 3);
    }

    #[test]
    fn adoption_converges_whatever_the_order() {
        let base = start();
        let mut at_a = base.clone();
        at_a.add(r("md"), "10.0.0.4:7381").unwrap();
        let mut at_b = base.clone();
        at_b.remove(r("mb"), r("mc")).unwrap();
        // Concurrent changes at two regions: both version 1.
        let orders = [
            vec![&base, &at_a, &at_b],
            vec![&at_b, &at_a, &base],
            vec![&at_a, &at_b, &at_b, &base],
        ];
        let finals: Vec<Membership> = orders
            .iter()
            .map(|order| {
                let mut m = base.clone();
                for other in order {
                    m.adopt(other);
                }
                m
            })
            .collect();
        assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
        assert!(
            !base.clone().adopt(&base),
            "adopting an equal list changes nothing"
        );
    }
}
