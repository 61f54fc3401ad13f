//! [`Mesh`]: the N×(N−1) directed proxies between N regions, addressed by
//! region id.
//!
//! A region needs its `--peer` list when it starts, but with `--repl
//! 127.0.0.1:0` its real replication address is known only once it has
//! started. So the mesh starts every proxy pending, hands out
//! [`Mesh::peer_args`] that point at the proxies, and learns each region's
//! address later through [`Mesh::set_repl_addr`]. Until then, a region's dials
//! to that peer are accepted and closed, which looks like a peer that is not
//! up yet, and the region's ordinary reconnect loop takes care of the rest.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use crate::conditions::{ConditionsError, LinkConditions};
use crate::proxy::{LinkControl, Proxy, StartError};
use crate::rng::SplitMix64;

/// Longest region id, as `meridian-crdt` accepts them.
const REGION_ID_MAX_BYTES: usize = 32;

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("invalid region id {0:?}: use 1 to 32 characters from [a-z0-9-]")]
    InvalidRegionId(String),
    #[error("region {0:?} is listed twice")]
    DuplicateRegion(String),
    #[error("unknown region {0:?}")]
    UnknownRegion(String),
    #[error("no link from {from:?} to {to:?}")]
    UnknownLink { from: String, to: String },
    #[error("cannot start the proxy for link {from}->{to}: {source}")]
    Start {
        from: String,
        to: String,
        #[source]
        source: StartError,
    },
    #[error(transparent)]
    Conditions(#[from] ConditionsError),
}

/// Every directed link between a set of regions, each a [`Proxy`] on a
/// loopback port. The link `(from, to)` is the proxy `from` dials to reach
/// `to`; it carries `from`'s op stream forward and `to`'s replies backward.
pub struct Mesh {
    regions: Vec<String>,
    links: BTreeMap<(String, String), Proxy>,
}

impl Mesh {
    /// Starts a proxy for every ordered pair of distinct `regions`, all
    /// pending until [`Mesh::set_repl_addr`] names each region's address.
    /// Link `(i, j)` (indices in `regions`) draws from a seed derived from
    /// `seed`, `i` and `j`.
    pub async fn start<I, S>(regions: I, seed: u64) -> Result<Mesh, MeshError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let regions: Vec<String> = regions.into_iter().map(Into::into).collect();
        for (i, region) in regions.iter().enumerate() {
            if !is_valid_region_id(region) {
                return Err(MeshError::InvalidRegionId(region.clone()));
            }
            if regions[..i].contains(region) {
                return Err(MeshError::DuplicateRegion(region.clone()));
            }
        }
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut links = BTreeMap::new();
        for (i, from) in regions.iter().enumerate() {
            for (j, to) in regions.iter().enumerate() {
                if i == j {
                    continue;
                }
                let link_seed = SplitMix64::derived(seed, &[i as u64, j as u64]).next_u64();
                let proxy = Proxy::start_pending_seeded(listen, link_seed)
                    .await
                    .map_err(|source| MeshError::Start {
                        from: from.clone(),
                        to: to.clone(),
                        source,
                    })?;
                links.insert((from.clone(), to.clone()), proxy);
            }
        }
        Ok(Mesh { regions, links })
    }

    /// [`Mesh::start`] for regions whose addresses are already known.
    pub async fn start_with_addrs<I, S>(regions: I, seed: u64) -> Result<Mesh, MeshError>
    where
        I: IntoIterator<Item = (S, SocketAddr)>,
        S: Into<String>,
    {
        let regions: Vec<(String, SocketAddr)> = regions
            .into_iter()
            .map(|(region, addr)| (region.into(), addr))
            .collect();
        let mesh = Mesh::start(regions.iter().map(|(region, _)| region.clone()), seed).await?;
        for (region, addr) in &regions {
            mesh.set_repl_addr(region, *addr)?;
        }
        Ok(mesh)
    }

    /// The region ids, in the order given at start.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// Records `region`'s real replication address: every link into it
    /// forwards there from now on. Call it again after restarting the region
    /// on another port.
    pub fn set_repl_addr(&self, region: &str, addr: SocketAddr) -> Result<(), MeshError> {
        self.check_region(region)?;
        for ((_, to), proxy) in &self.links {
            if to == region {
                proxy.set_target(addr);
            }
        }
        Ok(())
    }

    /// The peers `region` should dial, each with the proxy address that
    /// stands for it, in region order.
    pub fn peers(&self, region: &str) -> Result<Vec<(String, SocketAddr)>, MeshError> {
        self.check_region(region)?;
        self.regions
            .iter()
            .filter(|peer| *peer != region)
            .map(|peer| Ok((peer.clone(), self.proxy(region, peer)?.addr())))
            .collect()
    }

    /// The arguments `region` should be started with, ready for
    /// `Command::args`: `["--peer", "b=127.0.0.1:PORT", "--peer", ...]`.
    pub fn peer_args(&self, region: &str) -> Result<Vec<String>, MeshError> {
        Ok(self
            .peers(region)?
            .into_iter()
            .flat_map(|(peer, addr)| ["--peer".to_string(), format!("{peer}={addr}")])
            .collect())
    }

    /// The control of the link `from` dials to reach `to`.
    pub fn link(&self, from: &str, to: &str) -> Result<&LinkControl, MeshError> {
        Ok(self.proxy(from, to)?.control())
    }

    /// Takes every link to and from `region` down, keeping their delays for
    /// when they heal.
    pub fn partition(&self, region: &str) -> Result<(), MeshError> {
        self.check_region(region)?;
        for ((from, to), proxy) in &self.links {
            if from == region || to == region {
                proxy.control().partition();
            }
        }
        Ok(())
    }

    /// Takes both links between `a` and `b` down (a→b and b→a). To cut only
    /// one way, partition `link(a, b)` alone.
    pub fn cut(&self, a: &str, b: &str) -> Result<(), MeshError> {
        let (ab, ba) = (self.link(a, b)?, self.link(b, a)?);
        ab.partition();
        ba.partition();
        Ok(())
    }

    /// Brings every link up, keeping delays and limits.
    pub fn heal_all(&self) {
        for proxy in self.links.values() {
            proxy.control().heal();
        }
    }

    /// Sets the same conditions on every link.
    pub fn set_all(&self, conditions: LinkConditions) -> Result<(), MeshError> {
        conditions.validate()?;
        for proxy in self.links.values() {
            proxy.control().set(conditions)?;
        }
        Ok(())
    }

    fn proxy(&self, from: &str, to: &str) -> Result<&Proxy, MeshError> {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .ok_or_else(|| MeshError::UnknownLink {
                from: from.to_string(),
                to: to.to_string(),
            })
    }

    fn check_region(&self, region: &str) -> Result<(), MeshError> {
        if self.regions.iter().any(|r| r == region) {
            Ok(())
        } else {
            Err(MeshError::UnknownRegion(region.to_string()))
        }
    }
}

/// The rule of `meridian_crdt::RegionId`, repeated so that this crate stays a
/// leaf that only needs tokio. An id the mesh accepts must also be one the
/// `--peer ID=ADDR` parser accepts.
fn is_valid_region_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REGION_ID_MAX_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
