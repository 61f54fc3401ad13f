//! This region's copy of the cluster's membership: kept in
//! `membership.json` in the data directory once it has changed, spread by
//! every link (the dialer sends its copy after the handshake and after each
//! change), and watched by the task that starts and stops peer links.

use std::io::Write;
use std::path::{Path, PathBuf};

use meridian_cluster::{Membership, MembershipError};
use meridian_crdt::RegionId;
use parking_lot::Mutex;
use tokio::sync::watch;

/// File name of the persisted membership in the data directory.
pub const MEMBERSHIP_FILE: &str = "membership.json";

#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error(transparent)]
    Change(#[from] MembershipError),
    #[error("writing {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

pub struct Members {
    me: RegionId,
    state: Mutex<Membership>,
    file: Option<PathBuf>,
    /// The version in force, for the link manager and the senders.
    version: watch::Sender<u64>,
}

impl Members {
    /// The membership persisted in `dir` if any (it wins over the `--peer`
    /// flags: it is what the cluster agreed on since), else this region and
    /// `peers` at version 0. `dir: None` keeps nothing on disk.
    pub fn open(
        me: RegionId,
        peers: &[(RegionId, String)],
        dir: Option<&Path>,
    ) -> Result<Members, MembersError> {
        let file = dir.map(|d| d.join(MEMBERSHIP_FILE));
        let state = match &file {
            Some(path) if path.exists() => {
                let load = |reason: String| MembersError::Load {
                    path: path.clone(),
                    reason,
                };
                let text = std::fs::read_to_string(path).map_err(|e| load(e.to_string()))?;
                let m: Membership = serde_json::from_str(&text).map_err(|e| load(e.to_string()))?;
                if !m.is_member(me) {
                    tracing::warn!(region = %me, version = m.version, "this region was removed from the cluster; its peers will refuse it");
                }
                m
            }
            _ => Membership::initial(me, peers),
        };
        Ok(Members {
            me,
            version: watch::channel(state.version).0,
            state: Mutex::new(state),
            file,
        })
    }

    pub fn me(&self) -> RegionId {
        self.me
    }

    pub fn current(&self) -> Membership {
        self.state.lock().clone()
    }

    pub fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// This region's slot in the stream IDs it generates: its place among
    /// the members in name order, counted from 1; `None` while it is the
    /// only member (its IDs are then exactly Redis's). See the store's
    /// `auto_id`.
    pub fn stream_slot(&self) -> Option<u64> {
        let state = self.state.lock();
        if state.members.len() < 2 {
            return None;
        }
        state
            .members
            .keys()
            .position(|r| r.as_str() == self.me.as_str())
            .map(|i| i as u64 + 1)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Applies an operator's change, keeps it on disk, and announces it.
    pub fn change(
        &self,
        f: impl FnOnce(&mut Membership) -> Result<(), MembershipError>,
    ) -> Result<Membership, MembersError> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        f(&mut next)?;
        self.persist(&next)?;
        *state = next.clone();
        drop(state);
        self.version.send_replace(next.version);
        Ok(next)
    }

    /// Takes a peer's membership if it is newer; returns whether it was.
    pub fn adopt(&self, theirs: &Membership) -> Result<bool, MembersError> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        if !next.adopt(theirs) {
            return Ok(false);
        }
        self.persist(&next)?;
        *state = next.clone();
        drop(state);
        tracing::info!(version = next.version, members = ?next.members.keys().collect::<Vec<_>>(), "adopted a newer cluster membership from a peer");
        self.version.send_replace(next.version);
        Ok(true)
    }

    /// Written to a temporary file, fsynced and renamed, so a crash leaves
    /// the old membership or the new one.
    fn persist(&self, m: &Membership) -> Result<(), MembersError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let failed = |source| MembersError::Persist {
            path: path.clone(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(m).expect("membership serializes");
        let mut f = std::fs::File::create(&tmp).map_err(failed)?;
        f.write_all(text.as_bytes()).map_err(failed)?;
        f.sync_all().map_err(failed)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(failed)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(failed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_survives_a_restart_and_wins_over_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let me = RegionId::new("pa").unwrap();
        let peers = vec![(RegionId::new("pb").unwrap(), "127.0.0.1:1".to_string())];
        let m = Members::open(me, &peers, Some(dir.path())).unwrap();
        let rx = m.subscribe();
        m.change(|s| s.add(RegionId::new("pc").unwrap(), "127.0.0.1:2"))
            .unwrap();
        assert!(rx.has_changed().unwrap());
        assert!(m.change(|s| s.remove(me, me)).is_err());
        let again = Members::open(me, &peers, Some(dir.path())).unwrap();
        assert_eq!(again.current(), m.current());
        assert_eq!(again.version(), 1);
        let stale = Membership::initial(me, &peers);
        assert!(!again.adopt(&stale).unwrap(), "an older list is ignored");
    }
}
