//! The I/O edge of the elected primary's protocol: the durable term file
//! (saved off the runtime by [`save_loop`]; votes wait for it), the
//! monotonic clock its leases run on, and applying messages and ticks to
//! the region's [`Election`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use meridian_cluster::{Durable, Election, ElectionEvent, ElectionMsg};
use meridian_crdt::RegionId;

use crate::Host;

/// The file in the data directory holding the term, the vote and the
/// known primary.
pub const FILE_NAME: &str = "election";

/// Milliseconds on a clock that never jumps (leases must not follow the
/// wall clock backwards). Starts near 0 at process start.
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Reads the saved state, `None` for a region that never saved one.
pub fn load(dir: &Path) -> Result<Option<Durable>, ElectionFileError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => Durable::decode(&text)
            .map(Some)
            .map_err(|reason| ElectionFileError::Corrupt { path, reason }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ElectionFileError::Io { path, source }),
    }
}

/// Replaces the saved state durably: write a temporary file, fsync it,
/// rename it over the old one, fsync the directory.
pub fn save(dir: &Path, d: &Durable) -> Result<(), ElectionFileError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |source| ElectionFileError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(d.encode().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// A read-only hold of the election's lock.
pub struct ElectionRead<'a>(parking_lot::MutexGuard<'a, Election>);

impl std::ops::Deref for ElectionRead<'_> {
    type Target = Election;

    fn deref(&self) -> &Election {
        &self.0
    }
}

impl Host {
    /// Runs `f` on the election under its lock; what changed is handed to
    /// [`save_loop`] (votes wait for it), and the senders are woken when
    /// something did change.
    pub fn election_step<T>(&self, f: impl FnOnce(&mut Election) -> T) -> T {
        let mut e = self.election.lock();
        let before = (e.term(), e.role(), e.primary(), e.durable().voted_for);
        let out = f(&mut e);
        let dirty = e.take_dirty();
        if let (Some(d), None) = (&dirty, &self.election_dir) {
            e.mark_saved(d.clone());
        }
        let after = (e.term(), e.role(), e.primary(), e.durable().voted_for);
        drop(e);
        if dirty.is_some() && self.election_dir.is_some() {
            self.election_unsaved.send_modify(|n| *n += 1);
        }
        if before != after {
            self.election_changed.send_modify(|n| *n += 1);
        }
        out
    }

    /// The election under its lock, for reading only: changes go through
    /// [`Host::election_step`].
    pub fn election_read(&self) -> ElectionRead<'_> {
        ElectionRead(self.election.lock())
    }

    /// Advances the election (every few tens of ms).
    pub fn election_tick(&self) {
        let now = mono_ms();
        let events = self.election_step(|e| e.tick(now));
        log_events(&events);
    }

    /// Applies an election message from `peer`.
    pub fn election_receive(&self, peer: RegionId, msg: ElectionMsg) {
        let vv = self.store.lock().db().version_vector().clone();
        let events = self.election_step(|e| e.receive(peer, msg, mono_ms(), &vv));
        log_events(&events);
    }

    /// What to send `peer` now.
    pub fn election_outbox(&self, peer: RegionId) -> Vec<ElectionMsg> {
        let vv = self.store.lock().db().version_vector().clone();
        self.election.lock().outbox(peer, mono_ms(), &vv)
    }
}

/// Saves the election state whenever it changed, on a blocking thread and
/// without holding the election's lock (an fsync on a busy disk must not
/// stall the region's links), then lets the votes it covers go out.
pub async fn save_loop(host: Host) {
    let Some(dir) = host.election_dir.clone() else {
        return;
    };
    let mut unsaved = host.election_unsaved.subscribe();
    while unsaved.changed().await.is_ok() {
        unsaved.borrow_and_update();
        let d = host.election.lock().durable().clone();
        let dir = dir.clone();
        let saved = tokio::task::spawn_blocking(move || save(&dir, &d).map(|()| d)).await;
        match saved {
            Ok(Ok(d)) => {
                host.election.lock().mark_saved(d);
                host.election_changed.send_modify(|n| *n += 1);
            }
            Ok(Err(err)) => {
                // A vote that cannot be made durable is never sent; the
                // region stops rather than run without a term record.
                tracing::error!(error = %err, "saving the election state failed; stopping");
                std::process::exit(1);
            }
            Err(err) => {
                tracing::error!(error = %err, "the election save task failed; stopping");
                std::process::exit(1);
            }
        }
    }
}

/// Every change of term, role or primary is logged.
fn log_events(events: &[ElectionEvent]) {
    for e in events {
        match e {
            ElectionEvent::Stood { term } => {
                tracing::warn!(term, "the primary is silent: standing for election")
            }
            ElectionEvent::Won {
                term,
                writable_in_ms,
            } => tracing::warn!(
                term,
                writable_in_ms,
                "elected primary; primary keyspaces are writable here once the old primary's lease has expired"
            ),
            ElectionEvent::Follows { primary, term } => {
                tracing::warn!(%primary, term, "following a newly elected primary")
            }
            ElectionEvent::SteppedDown { term, reason } => {
                tracing::warn!(term, %reason, "no longer primary")
            }
            ElectionEvent::Voted { candidate, term } => {
                tracing::info!(%candidate, term, "voted")
            }
            ElectionEvent::Refused {
                candidate,
                term,
                reason,
            } => tracing::debug!(%candidate, term, reason, "vote refused"),
        }
    }
}
