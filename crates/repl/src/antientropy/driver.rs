//! The tokio driver of a session: locks the store around each step of
//! [`DialerSession`] or [`Acceptor`], waits for the log to be synced before
//! sending state, moves the messages over the link, keeps one session per
//! pair ([`ReplStatus::antientropy_peers`]) and records what it did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_crdt::{RegionId, VersionVector};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{refuses, Acceptor as AcceptorMachine, DialerSession, Out, SessionError};
use crate::status::ReplStatus;
use crate::wire::{read_msg, write_msg, Msg, WireError};
use crate::{wall_ms, Host, ReplConfig};

/// How long a session waits for the state it sends to be on disk.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// How long a dialer waits for a session the peer dialed to end.
pub const BUSY_WAIT: Duration = Duration::from_secs(120);

/// True when this region's log cannot bring a peer at `peer_vv` up to date.
pub fn needed(host: &Host, peer_vv: &VersionVector) -> bool {
    super::session::needs_state(&host.store.lock(), peer_vv)
}

/// Why a session did not run to its end here.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The peer runs a session with this region the other way
    /// ([`wait_for_accepted`], then reconnect).
    #[error("anti-entropy: the peer runs its own session with this region")]
    Busy,
    #[error("{0}")]
    Session(SessionError),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("anti-entropy: the op log did not become durable up to lsn {0} within {SYNC_WAIT:?}")]
    NotDurable(u64),
    #[error("anti-entropy sent to a witness")]
    Witness,
}

impl From<SessionError> for PushError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Busy => PushError::Busy,
            other => PushError::Session(other),
        }
    }
}

fn record(status: &ReplStatus, bytes: u64, keys_sent: u64, keys_merged: u64) {
    let mut ae = status.antientropy.lock();
    ae.sessions_total += 1;
    ae.bytes_total += bytes;
    ae.keys_sent_total += keys_sent;
    ae.keys_merged_total += keys_merged;
}

/// A peer's place in [`ReplStatus::antientropy_peers`], left when dropped.
struct PeerSession {
    status: Arc<ReplStatus>,
    peer: RegionId,
    dialing: bool,
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        {
            let mut peers = self.status.antientropy_peers.lock();
            if self.dialing {
                peers.dialing.remove(&self.peer);
            } else {
                peers.accepting.remove(&self.peer);
            }
        }
        self.status.antientropy_ended.notify_waiters();
    }
}

/// Waits (at most [`BUSY_WAIT`]) until no session accepted from `peer` is
/// in progress here.
pub async fn wait_for_accepted(status: &ReplStatus, peer: RegionId) {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    loop {
        // Created before the check, so a notification in between counts.
        let ended = status.antientropy_ended.notified();
        if !status.antientropy_peers.lock().accepting.contains(&peer) {
            return;
        }
        if tokio::time::timeout_at(deadline, ended).await.is_err() {
            return;
        }
    }
}

/// Waits until the op log is on disk up to `lsn`: state sent to a peer
/// must not hold ops a crash here could lose (and this region reissue).
async fn wait_synced(host: &Host, lsn: u64) -> Result<(), PushError> {
    if host.store.lock().log().synced_lsn() >= lsn {
        return Ok(());
    }
    let mut synced = host.synced.subscribe();
    let durable = tokio::time::timeout(SYNC_WAIT, synced.wait_for(|l| *l >= lsn))
        .await
        .is_ok_and(|r| r.is_ok());
    match durable {
        true => Ok(()),
        false => Err(PushError::NotDurable(lsn)),
    }
}

/// Carries out what a step asked: tells the other links about a merge,
/// waits for the log, sends. Returns the bytes written.
async fn carry_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    host: &Host,
    out: &Out,
) -> Result<u64, PushError> {
    if out.raised_vv {
        // Ops now in the state but not in the log: links that stream this
        // region's log must compare state first.
        host.state_merged.send_modify(|n| *n += 1);
    }
    wait_synced(host, out.synced_lsn).await?;
    let mut bytes = 0;
    for msg in &out.msgs {
        bytes += write_msg(wr, msg).await? as u64;
    }
    Ok(bytes)
}

/// A dialer's session that stops tracking changed keys when dropped
/// unfinished. Never dropped while the store lock is held.
struct Dialing {
    store: Arc<crate::StoreLock>,
    session: DialerSession,
}

impl Drop for Dialing {
    fn drop(&mut self) {
        if self.session.is_tracking() {
            self.session.stop_tracking(&mut self.store.lock());
        }
    }
}

/// Runs a session as the dialer, `peer_vv` being the peer's vector from its
/// `Welcome`; returns the peer's version vector after it.
pub async fn push<R, W>(
    rd: &mut R,
    wr: &mut W,
    host: &Host,
    status: &Arc<ReplStatus>,
    peer: RegionId,
    peer_vv: &VersionVector,
) -> Result<VersionVector, PushError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // One session dialed at a time: each buffers up to a session's state.
    let _one = status.antientropy_session.lock().await;
    let _pair = {
        let mut peers = status.antientropy_peers.lock();
        if peers.accepting.contains(&peer) {
            return Err(PushError::Busy);
        }
        peers.dialing.insert(peer);
        PeerSession {
            status: status.clone(),
            peer,
            dialing: true,
        }
    };
    let started = Instant::now();
    let (session, out) = DialerSession::begin(&mut host.store.lock(), peer_vv);
    let mut dialing = Dialing {
        store: host.store.clone(),
        session,
    };
    let mut bytes = carry_out(wr, host, &out).await?;
    loop {
        let (msg, size) = read_msg(rd).await?;
        bytes += size as u64;
        let mut out = {
            let mut store = host.store.lock();
            dialing.session.handle(&mut store, msg, wall_ms())?
        };
        bytes += carry_out(wr, host, &out).await?;
        if let Some(done) = out.finished.take() {
            record(status, bytes, done.keys_sent, done.keys_merged);
            tracing::info!(%peer, keys_sent = done.keys_sent, keys_merged = done.keys_merged, bytes, elapsed_ms = started.elapsed().as_millis() as u64, "anti-entropy session repaired both sides");
            return Ok(done.peer_vv);
        }
    }
}

/// The acceptor's side of a link (see [`AcceptorMachine`]), holding the
/// pair's place in [`ReplStatus::antientropy_peers`] from a session's begin
/// until the dialer streams again. Stops tracking changed keys when dropped
/// unfinished; never dropped while the store lock is held.
pub struct Acceptor {
    store: Arc<crate::StoreLock>,
    machine: AcceptorMachine,
    pair: Option<PeerSession>,
    bytes: u64,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("machine", &self.machine.is_accepting())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if self.machine.is_tracking() {
            self.machine.stop_tracking(&mut self.store.lock());
        }
    }
}

impl Acceptor {
    pub fn new(host: &Host) -> Acceptor {
        Acceptor {
            store: host.store.clone(),
            machine: AcceptorMachine::default(),
            pair: None,
            bytes: 0,
        }
    }

    /// The last session was answered or refused.
    pub fn is_over(&self) -> bool {
        self.machine.is_over()
    }

    /// The dialer sent something outside a session: any session it dialed
    /// is over on its side.
    pub fn settle(&mut self) {
        if self.machine.is_accepting() || self.machine.is_over() {
            self.machine.settle(&mut self.store.lock());
            self.pair = None;
        }
    }

    /// Handles one session message the dialer sent ([`super::is_session_msg`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        peer: RegionId,
        msg: Msg,
        size: usize,
        wr: &mut W,
        config: &ReplConfig,
        host: &Host,
        status: &Arc<ReplStatus>,
    ) -> Result<(), PushError> {
        if config.witness {
            return Err(PushError::Witness);
        }
        let mut refuse = false;
        if let Msg::AeBegin { .. } = msg {
            self.bytes = 0;
            // The place of an earlier session goes first.
            self.pair = None;
            let mut peers = status.antientropy_peers.lock();
            refuse = refuses(config.region, peer, peers.dialing.contains(&peer));
            if !refuse {
                peers.accepting.insert(peer);
                self.pair = Some(PeerSession {
                    status: status.clone(),
                    peer,
                    dialing: false,
                });
            }
        }
        self.bytes += size as u64;
        let mut out = {
            let mut store = host.store.lock();
            self.machine.handle(&mut store, msg, wall_ms(), refuse)?
        };
        if refuse {
            tracing::info!(%peer, "anti-entropy: refused a session; this region's own session with the peer repairs both");
        }
        self.bytes += carry_out(wr, host, &out).await?;
        if let Some(done) = out.finished.take() {
            record(status, self.bytes, done.keys_sent, done.keys_merged);
            tracing::info!(%peer, keys_merged = done.keys_merged, keys_sent = done.keys_sent, bytes = self.bytes, "anti-entropy session merged and answered");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Sessions between two in-process regions over an in-memory pipe.
    mod sessions {
        use super::super::*;
        use meridian_crdt::{Blob, Entry, Hlc, Tag};
        use meridian_log::ReadBound;
        use meridian_store::Db;

        struct Region {
            name: RegionId,
            host: Host,
            status: Arc<ReplStatus>,
            config: ReplConfig,
            _dir: tempfile::TempDir,
        }

        fn region(name: &str, peer: &str) -> Region {
            let dir = tempfile::tempdir().unwrap();
            let me = RegionId::new(name).unwrap();
            let other = RegionId::new(peer).unwrap();
            let opts = meridian_store::StoreOptions::new(dir.path().join("data"), me);
            let (mut store, _) = meridian_store::Store::open(opts).unwrap();
            // Keep the whole log, so what follows a session can be streamed.
            store.retain_from(Some(1));
            let host = crate::testing::host(store, me, other);
            let config = crate::testing::config(me, None);
            Region {
                name: me,
                host,
                status: Arc::new(ReplStatus::default()),
                config,
                _dir: dir,
            }
        }

        /// Commits one op made by `f` and syncs it.
        fn write(r: &Region, f: impl FnOnce(&mut Db)) {
            let mut store = r.host.store.lock();
            store.db_mut().set_now_ms(wall_ms());
            f(store.db_mut());
            store.commit().unwrap();
            store.sync().unwrap();
        }

        fn set(r: &Region, key: &str, value: &str) {
            write(r, |db| {
                db.set_string(key.as_bytes(), Blob::from(value), false)
            });
        }

        fn del(r: &Region, key: &str) {
            write(r, |db| {
                db.del(key.as_bytes());
            });
        }

        /// What a sender streams after the session: `from`'s log from
        /// `to`'s version vector, applied in order (an op whose
        /// dependencies are missing fails, as it resets a real link).
        fn stream(from: &Region, to: &Region) {
            let peer_vv = to.host.store.lock().db().version_vector().clone();
            let mut records = Vec::new();
            {
                let store = from.host.store.lock();
                let reader = store
                    .log()
                    .reader_bounded(store.resume_lsn(&peer_vv), ReadBound::Synced)
                    .unwrap();
                for next in reader {
                    records.push(next.unwrap().1);
                }
            }
            let mut store = to.host.store.lock();
            for record in records {
                let tag = postcard::take_from_bytes::<Tag>(&record).unwrap().0;
                if !store.db().version_vector().covers(tag.dot) {
                    store.apply_peer_op(&record, wall_ms()).unwrap();
                }
            }
            store.flush().unwrap();
        }

        /// Every key's state (canonical) and the version vector.
        fn state(r: &Region) -> (Vec<(Blob, Entry)>, VersionVector) {
            let store = r.host.store.lock();
            let mut keys: Vec<(Blob, Entry)> = store
                .db()
                .keyspace()
                .iter_all()
                .map(|(k, e)| (k.clone(), e.canonical().into_owned()))
                .collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            (keys, store.db().version_vector().clone())
        }

        fn encoded_len(r: &Region, key: &str) -> usize {
            let store = r.host.store.lock();
            let entry = store.db().keyspace().get_any(key.as_bytes()).cloned();
            postcard::to_stdvec(&(Blob::from(key), entry))
                .unwrap()
                .len()
        }

        fn session_bytes(r: &Region) -> u64 {
            r.status.antientropy.lock().bytes_total
        }

        /// Runs one session, `dialer` dialing `acceptor`; `during` runs
        /// before the acceptor handles each message.
        async fn session(
            dialer: &Region,
            acceptor: &Region,
            mut during: impl FnMut(&Msg),
        ) -> Result<VersionVector, PushError> {
            let (d_side, a_side) = tokio::io::duplex(64 << 20);
            let (mut d_rd, mut d_wr) = tokio::io::split(d_side);
            let (mut a_rd, mut a_wr) = tokio::io::split(a_side);
            let welcome = acceptor.host.store.lock().db().version_vector().clone();
            // The dialer's ends close when it is done, so an acceptor left
            // waiting sees the connection end.
            let dial = async move {
                push(
                    &mut d_rd,
                    &mut d_wr,
                    &dialer.host,
                    &dialer.status,
                    acceptor.name,
                    &welcome,
                )
                .await
            };
            let accept = async {
                let mut acceptor_side = Acceptor::new(&acceptor.host);
                while let Ok((msg, size)) = read_msg(&mut a_rd).await {
                    during(&msg);
                    acceptor_side
                        .handle(
                            dialer.name,
                            msg,
                            size,
                            &mut a_wr,
                            &acceptor.config,
                            &acceptor.host,
                            &acceptor.status,
                        )
                        .await
                        .unwrap();
                    if acceptor_side.is_over() {
                        break;
                    }
                }
            };
            let (result, ()) = tokio::join!(dial, accept);
            result
        }

        fn key(i: usize) -> String {
            format!("key:{i:05}")
        }

        /// Two regions holding `n` keys in sync.
        async fn loaded(n: usize) -> (Region, Region) {
            let (ra, rb) = (region("ra", "rb"), region("rb", "ra"));
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                write(&ra, |db| {
                    for i in chunk {
                        db.set_string(key(*i).as_bytes(), Blob::from("initial value"), false);
                    }
                });
            }
            stream(&ra, &rb);
            assert_eq!(state(&ra), state(&rb));
            (ra, rb)
        }

        /// After a partition each side changed and deleted keys the other
        /// did not: one session leaves both with the same state and vector,
        /// each changed key's state crossing once (it holds a dot the
        /// other lacks); only the deletes, which leave no dot, are found by
        /// the digest trees.
        #[tokio::test]
        async fn one_session_repairs_both_sides_moving_each_changed_key_once() {
            let (ra, rb) = loaded(3_000).await;
            let mut changed = Vec::new();
            for i in 0..40 {
                let (r, k) = (if i % 2 == 0 { &ra } else { &rb }, key(i * 70));
                set(r, &k, &format!("changed at {}", r.name));
                changed.push((i % 2, k));
            }
            for i in 0..6 {
                del(if i % 2 == 0 { &ra } else { &rb }, &key(i * 70 + 35));
            }
            let payload: usize = changed
                .iter()
                .map(|(side, k)| encoded_len(if *side == 0 { &ra } else { &rb }, k))
                .sum();

            session(&rb, &ra, |_| {}).await.unwrap();
            assert_eq!(state(&ra), state(&rb), "one session repairs both sides");
            assert_eq!(ra.host.store.lock().db().keyspace().len(), 3_000 - 6);
            for r in [&ra, &rb] {
                let ae = r.status.antientropy.lock().clone();
                assert_eq!(ae.sessions_total, 1);
            }
            // Each changed key once, the top-level digests, for each of the
            // six deletes a descent and a state, and the framing. Sending
            // back what the dialer sent (or 8-byte digests down to every
            // changed key) would not fit.
            let bytes = session_bytes(&rb) as usize;
            let allowance = 256 * 8 + 6 * (120 + 40) + 512;
            println!("{bytes} bytes for {payload} B of changed states");
            assert!(
                bytes <= payload + allowance,
                "{bytes} bytes for {payload} B of changed states"
            );
            assert_eq!(session_bytes(&ra), session_bytes(&rb));
        }

        /// Keys written and deleted on both sides while the session runs,
        /// at every step of it: after the session and the op streams that
        /// follow it, both sides hold the same state. A vector raised past
        /// a change the state lacks would make the stream skip its op.
        #[tokio::test]
        async fn keys_changed_on_both_sides_mid_session_still_converge() {
            let (ra, rb) = loaded(2_000).await;
            for i in 0..20 {
                set(
                    if i % 2 == 0 { &ra } else { &rb },
                    &key(i * 90),
                    "partition",
                );
            }
            del(&ra, &key(5));
            let mut step = 0;
            session(&rb, &ra, |msg| {
                step += 1;
                let at = format!("{step}");
                match msg {
                    Msg::AeBegin { .. } | Msg::AeAheadEnd { .. } | Msg::AeEnd { .. } => {
                        // The acceptor's keys: one it sends ahead, one in
                        // a range the trees compare, one deleted.
                        set(&ra, &key(step * 7), &format!("ra during {at}"));
                        set(&ra, &format!("new:ra:{step}"), "x");
                        del(&ra, &key(step * 7 + 1));
                        // The dialer's, past its own first reads.
                        set(&rb, &key(step * 7 + 2), &format!("rb during {at}"));
                        set(&rb, &format!("new:rb:{step}"), "x");
                        del(&rb, &key(step * 7 + 3));
                        // The same key on both sides.
                        set(&ra, &key(1_000 + step), "ra");
                        set(&rb, &key(1_000 + step), "rb");
                    }
                    _ => {}
                }
            })
            .await
            .unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
            assert_eq!(ra.host.store.lock().db().trackers(), 0);
            assert_eq!(rb.host.store.lock().db().trackers(), 0);
        }

        /// An op the acceptor had seen (and whose element it had since
        /// deleted) reaches the dialer by another stream after the dialer
        /// collected its states: raising the dialer's vector past the
        /// delete would keep the element forever, so the session is given
        /// up, and the next one converges.
        #[tokio::test]
        async fn an_op_relayed_to_the_dialer_mid_session_does_not_hide_a_delete() {
            let (ra, rb) = loaded(500).await;
            set(&ra, "relayed", "x");
            let created = {
                let store = ra.host.store.lock();
                let reader = store
                    .log()
                    .reader_bounded(store.log().last_lsn(), ReadBound::Synced)
                    .unwrap();
                reader.map(|r| r.unwrap().1).next().unwrap()
            };
            del(&ra, "relayed");
            set(&rb, &key(3), "rb");
            let failed = session(&rb, &ra, |msg| {
                if let Msg::AeEnd { .. } = msg {
                    let mut store = rb.host.store.lock();
                    store.apply_peer_op(&created, wall_ms()).unwrap();
                    store.sync().unwrap();
                }
            })
            .await;
            assert!(
                matches!(
                    failed,
                    Err(PushError::Session(SessionError::ChangedMidSession(_)))
                ),
                "{failed:?}"
            );
            session(&rb, &ra, |_| {}).await.unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
            assert!(rb
                .host
                .store
                .lock()
                .db()
                .keyspace()
                .get_any(b"relayed")
                .is_none());
        }

        /// The dialer deletes a key after it began (so it sends the key's
        /// empty state, the key lying in a leaf range); the acceptor adds
        /// an element to it and deletes it again, so its state equals what
        /// was sent and it answers nothing for the key; the element reaches
        /// the dialer by another stream after it sent its states. The
        /// dialer must join what it sent (the acceptor's state) at the
        /// acceptor's vector, or that vector, which covers the delete,
        /// would keep the element for good. Found by the simulator.
        #[tokio::test]
        async fn a_key_sent_in_a_leaf_range_and_changed_after_is_joined_with_what_was_sent() {
            let (ra, rb) = (region("ra", "rb"), region("rb", "ra"));
            write(&ra, |db| db.sadd(b"k", vec![Blob::from("m1")]));
            stream(&ra, &rb);
            let last_record = |r: &Region| {
                let store = r.host.store.lock();
                let reader = store
                    .log()
                    .reader_bounded(store.log().last_lsn(), ReadBound::Synced)
                    .unwrap();
                reader.map(|r| r.unwrap().1).next().unwrap()
            };
            session(&rb, &ra, |msg| match msg {
                Msg::AeBegin { .. } => del(&rb, "k"),
                Msg::AeEnd { .. } => {
                    write(&ra, |db| db.sadd(b"k", vec![Blob::from("m2")]));
                    let added = last_record(&ra);
                    del(&ra, "k");
                    let mut store = rb.host.store.lock();
                    store.apply_peer_op(&added, wall_ms()).unwrap();
                    store.sync().unwrap();
                }
                _ => {}
            })
            .await
            .unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
            assert!(rb.host.store.lock().db().keyspace().get_any(b"k").is_none());
        }

        /// The acceptor sends a key ahead and removes that element during
        /// the session; its state then equals what the dialer sent, so it
        /// answers nothing for the key. The dialer must not keep the
        /// element from the ahead state while joining a vector that covers
        /// its removal. Found by the simulator.
        #[tokio::test]
        async fn an_element_the_acceptor_sent_ahead_and_then_removed_does_not_come_back() {
            let (ra, rb) = (region("ra", "rb"), region("rb", "ra"));
            write(&rb, |db| db.sadd(b"k", vec![Blob::from("m2")]));
            write(&ra, |db| db.sadd(b"k", vec![Blob::from("m1")]));
            session(&rb, &ra, |msg| {
                if let Msg::AeEnd { .. } = msg {
                    write(&ra, |db| db.srem(b"k", vec![Blob::from("m1")]));
                }
            })
            .await
            .unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
        }

        /// The dialer's vector grows during the session by a merge that
        /// leaves a key it sent ahead alone (the key was equal with the
        /// region it merged from, which had seen an element added and
        /// removed). The acceptor holds that element: it must join the
        /// dialer's ahead state at the dialer's final vector, which covers
        /// the element, not only at the vector it was read at. Found by the
        /// simulator.
        #[tokio::test]
        async fn a_dialer_s_vector_grown_by_a_merge_removes_what_it_covers_at_the_acceptor() {
            let (ra, rb) = (region("ra", "rb"), region("rb", "ra"));
            write(&ra, |db| db.sadd(b"k", vec![Blob::from("m1")]));
            write(&rb, |db| db.sadd(b"k", vec![Blob::from("m2")]));
            let seen_elsewhere = ra.host.store.lock().db().version_vector().clone();
            session(&rb, &ra, |msg| {
                if let Msg::AeAheadEnd { .. } = msg {
                    let mut store = rb.host.store.lock();
                    // ra holds no libraries: its state is no key and none.
                    let none = meridian_crdt::Libraries::new();
                    store
                        .merge_states(&[], &none, &seen_elsewhere, Hlc(0))
                        .unwrap();
                }
            })
            .await
            .unwrap();
            stream(&ra, &rb);
            stream(&rb, &ra);
            assert_eq!(state(&ra), state(&rb));
        }

        /// When both ends dial at once, the acceptor whose own session to
        /// the peer runs refuses only if its region id sorts first: exactly
        /// one of the two sessions goes on, and the refused one changes
        /// nothing.
        #[tokio::test]
        async fn of_two_sessions_dialed_at_once_the_lower_region_s_goes_on() {
            let (ra, rb) = loaded(500).await;
            set(&ra, &key(1), "ra");
            set(&rb, &key(2), "rb");
            let before = state(&rb);
            ra.status.antientropy_peers.lock().dialing.insert(rb.name);
            rb.status.antientropy_peers.lock().dialing.insert(ra.name);
            let refused = session(&rb, &ra, |_| {}).await;
            assert!(matches!(refused, Err(PushError::Busy)), "{refused:?}");
            assert_eq!(state(&rb), before);
            assert_eq!(rb.host.store.lock().db().trackers(), 0);
            rb.status.antientropy_peers.lock().dialing.clear();
            ra.status.antientropy_peers.lock().dialing.clear();
            // rb accepts ra's session although rb's own dialer is busy.
            rb.status.antientropy_peers.lock().dialing.insert(ra.name);
            session(&ra, &rb, |_| {}).await.unwrap();
            assert_eq!(state(&ra), state(&rb));
        }
    }
}
