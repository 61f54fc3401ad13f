//! One peer link, dialing side: connect, handshake, then stream this
//! region's op log from the first record the peer lacks, forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_crdt::{RegionId, VersionVector};
use meridian_log::{LogError, LogReader, ReadBound};
use meridian_store::StoreError;
use rand::Rng;
use tokio::io::{BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::handshake::{nonce, DialerHandshake, HandshakeError, Identity};
use crate::link::Stream;
use crate::status::{LinkState, Outbound, ReplStatus};
use crate::tls::{tls_failure, TlsFailure, Transport};
use crate::wire::{read_msg, write_msg, Msg, BATCH_MAX_BYTES, BATCH_MAX_OPS};
use crate::{wall_ms, Host, ReplConfig};

/// How long a goodbye waits for the peer to close its side.
const GOODBYE_WAIT: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("refused by peer: {0}")]
    Refused(String),
    #[error("{0}")]
    Wire(#[from] crate::wire::WireError),
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Log(#[from] LogError),
}

fn update(status: &ReplStatus, peer: RegionId, f: impl FnOnce(&mut Outbound)) {
    if let Some(o) = status.outbound.lock().get_mut(&peer) {
        f(o)
    }
}

/// How a link ended without an error.
enum LinkEnd {
    /// The peer or this region closed it.
    Closed,
    /// Time for the periodic full comparison: reconnect and run one.
    Recheck,
    /// The peer's own anti-entropy session with this region repaired both
    /// sides: reconnect and compare version vectors afresh.
    Retry,
}

/// Dials `addr` forever with capped, jittered exponential backoff.
pub async fn run(
    peer: RegionId,
    addr: String,
    config: Arc<ReplConfig>,
    host: Host,
    status: Arc<ReplStatus>,
) {
    status.outbound.lock().insert(
        peer,
        Outbound {
            addr: addr.clone(),
            state: LinkState::Connecting,
            since_ms: wall_ms(),
            last_error: None,
            connects: 0,
            acked_lsn: 0,
            peer_vv: VersionVector::new(),
            peer_durable_vv: VersionVector::new(),
            peer_witness: None,
            ops_sent: 0,
            bytes_sent: 0,
            clock_offset_ms: 0,
        },
    );
    let mut backoff_ms = BACKOFF_MIN_MS;
    let mut recheck = false;
    loop {
        let closing = *host.closing.borrow();
        if closing {
            return;
        }
        let result = link(peer, &addr, &config, &host, &status, recheck).await;
        recheck = false;
        let (state, err) = match &result {
            Err(LinkError::Refused(reason)) => (LinkState::Refused, reason.clone()),
            Err(e) => (LinkState::Down, e.to_string()),
            Ok(LinkEnd::Closed) => (LinkState::Down, "closed".to_string()),
            Ok(LinkEnd::Recheck) => {
                // A planned reconnect: the next handshake compares state.
                recheck = true;
                continue;
            }
            Ok(LinkEnd::Retry) => continue,
        };
        let was_up = status
            .outbound
            .lock()
            .get(&peer)
            .is_some_and(|o| o.state == LinkState::Up);
        if was_up {
            tracing::warn!(%peer, %addr, error = %err, "replication link down");
            backoff_ms = BACKOFF_MIN_MS;
        } else if state == LinkState::Refused {
            tracing::warn!(%peer, %addr, reason = %err, "replication link refused");
        } else {
            tracing::debug!(%peer, %addr, error = %err, "replication link not up");
        }
        update(&status, peer, |o| {
            if o.state != state {
                o.since_ms = wall_ms();
            }
            o.state = state;
            o.last_error = Some(err);
        });
        let jitter = rand::thread_rng().gen_range(0..=backoff_ms / 2);
        tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
        backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
    }
}

type Reader = BufReader<ReadHalf<Transport>>;
type Writer = WriteHalf<Transport>;

/// One connection: dial, handshake, repair by state when needed, stream.
async fn link(
    peer: RegionId,
    addr: &str,
    config: &ReplConfig,
    host: &Host,
    status: &Arc<ReplStatus>,
    recheck: bool,
) -> Result<LinkEnd, LinkError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Connect("timed out".into()))?
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let stream = secure(stream, peer, addr, config, status).await?;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    let (peer_vv, peer_is_witness) =
        handshake(&mut rd, &mut wr, peer, addr, config, status).await?;
    // The log cannot bring this peer up to date: repair by state first.
    let peer_vv = if !peer_is_witness
        && !config.witness
        && (recheck || crate::antientropy::needed(host, &peer_vv))
    {
        match repair(&mut rd, &mut wr, peer, host, status, &peer_vv).await? {
            Ok(vv) => vv,
            Err(end) => return Ok(end),
        }
    } else {
        peer_vv
    };
    let (stream, reader) = {
        let store = host.store.lock();
        let stream = Stream::resume(&store, peer_vv.clone()).without_echoes(&store, peer);
        let reader = store
            .log()
            .reader_bounded(stream.next_lsn(), ReadBound::Synced)?;
        (stream, reader)
    };
    let from = stream.next_lsn();
    tracing::info!(%peer, %addr, resume_lsn = from, "replication link up");
    update(status, peer, |o| {
        o.state = LinkState::Up;
        o.since_ms = wall_ms();
        o.last_error = None;
        o.connects += 1;
        o.peer_vv = peer_vv;
        o.peer_witness = Some(peer_is_witness);
        o.acked_lsn = o.acked_lsn.max(from.saturating_sub(1));
    });
    // Acknowledgements come back on the same connection.
    host.view.lock().reconnected(peer);
    host.heard(peer);
    // The acknowledgements of this connection, and only those, tell the
    // stream what the peer holds.
    let (acked, peer_acked) = tokio::sync::watch::channel((stream.peer_vv().clone(), Vec::new()));
    let mut acks = tokio::spawn(read_acks(rd, peer, status.clone(), host.clone(), acked));
    // A witness stores no data; a witness has none to send.
    let streams = !peer_is_witness && !config.witness;
    let streaming = Streaming {
        peer,
        config,
        host,
        status,
        stream,
        peer_acked,
        reader,
        streams,
    };
    let result = streaming.run(&mut wr, &mut acks).await;
    acks.abort();
    result
}

/// The dialer's side of the handshake ([`DialerHandshake`]): returns the
/// acceptor's version vector and whether it is a witness (its `Welcome`).
async fn handshake(
    rd: &mut Reader,
    wr: &mut Writer,
    peer: RegionId,
    addr: &str,
    config: &ReplConfig,
    status: &ReplStatus,
) -> Result<(VersionVector, bool), LinkError> {
    let me = Identity {
        cluster: &config.cluster,
        secret: &config.secret,
        region: config.region,
    };
    let (dialer, hello) = DialerHandshake::hello(me, peer, nonce());
    write_msg(wr, &hello).await?;
    // Under TLS 1.3 the acceptor checks our certificate after our side of
    // the TLS handshake completed, so its verdict arrives here.
    let challenge = read_msg(rd).await.map_err(|e| match e {
        crate::wire::WireError::Io(io) => match tls_failure(&io) {
            Some(TlsFailure::TheyRefused(tls)) => LinkError::Refused(format!(
                "TLS: {peer} at {addr} refused this region's certificate ({tls})"
            )),
            _ => LinkError::Wire(crate::wire::WireError::Io(io)),
        },
        other => LinkError::Wire(other),
    })?;
    let challenged = dialer
        .challenged(me, challenge.0, addr)
        .map_err(|e| handshake_failed(status, peer, e))?;
    write_msg(wr, &challenged.proof).await?;
    if let Some(refusal) = challenged.refusal {
        let reason = refusal.to_string();
        let _ = write_msg(wr, &Msg::Refuse { reason }).await;
        return Err(handshake_failed(status, peer, refusal));
    }
    dialer
        .welcomed(read_msg(rd).await?.0)
        .map_err(|e| handshake_failed(status, peer, e))
}

/// The link error for a failed handshake; a refusal of the peer is
/// counted when it has a kind.
fn handshake_failed(status: &ReplStatus, peer: RegionId, e: HandshakeError) -> LinkError {
    match e {
        HandshakeError::RefusedByPeer(reason) => LinkError::Refused(reason),
        HandshakeError::Refuse { kind, reason } => {
            if let Some(kind) = kind {
                status.refuse_from(kind, peer.as_str(), &reason);
            }
            LinkError::Refused(reason)
        }
        e @ HandshakeError::Unexpected { .. } => LinkError::Protocol(e.to_string()),
    }
}

/// Runs an anti-entropy session with the peer at `peer_vv`: `Ok(vv)` with
/// the peer's vector after it, or how the link ends when the peer runs its
/// own session with this region.
async fn repair(
    rd: &mut Reader,
    wr: &mut Writer,
    peer: RegionId,
    host: &Host,
    status: &Arc<ReplStatus>,
    peer_vv: &VersionVector,
) -> Result<Result<VersionVector, LinkEnd>, LinkError> {
    match crate::antientropy::push(rd, wr, host, status, peer, peer_vv).await {
        Ok(vv) => Ok(Ok(vv)),
        Err(crate::antientropy::PushError::Busy) => {
            // The peer's session repairs both sides. Close this
            // connection (the peer frees its slot for us) and wait for
            // that session to end before comparing vectors again.
            let _ = tokio::io::AsyncWriteExt::shutdown(wr).await;
            let _ = tokio::time::timeout(GOODBYE_WAIT, read_msg(rd)).await;
            crate::antientropy::wait_for_accepted(status, peer).await;
            Ok(Err(LinkEnd::Retry))
        }
        Err(e) => Err(LinkError::Protocol(e.to_string())),
    }
}

/// A link that streams: the log from where the peer's vector resumes,
/// membership and election state, heartbeats, until it fails, the region
/// closes, or state must be compared again.
struct Streaming<'a> {
    peer: RegionId,
    config: &'a ReplConfig,
    host: &'a Host,
    status: &'a Arc<ReplStatus>,
    stream: Stream,
    /// The peer's vector and the origins it streams from directly, from
    /// its latest acknowledgement on this connection, as [`read_acks`]
    /// reads them.
    peer_acked: tokio::sync::watch::Receiver<(VersionVector, Vec<RegionId>)>,
    reader: LogReader,
    /// Whether records flow (not to or from a witness).
    streams: bool,
}

impl Streaming<'_> {
    async fn run(
        mut self,
        wr: &mut Writer,
        acks: &mut JoinHandle<Result<(), LinkError>>,
    ) -> Result<LinkEnd, LinkError> {
        let (peer, host) = (self.peer, self.host);
        let mut members_sent = None;
        let mut closing = host.closing.subscribe();
        let mut merged = host.state_merged.subscribe();
        let merges_at_start = *merged.borrow_and_update();
        let mut synced = host.synced.subscribe();
        let mut election_changed = host.election_changed.subscribe();
        let heartbeat = Duration::from_millis(self.config.heartbeat_ms);
        let mut election_sent: Option<Instant> = None;
        let link_up = Instant::now();
        let recheck_after = (self.config.antientropy_interval_ms > 0)
            .then(|| Duration::from_millis(self.config.antientropy_interval_ms));
        loop {
            // Now and then the state is compared in full, even when the log
            // covers the peer: a safety net against any divergence the op
            // stream cannot see.
            // State merged here from another peer is not in the log this
            // link streams: ops written after it would reach the peer before
            // their dependencies. Reconnect and compare state first.
            let state_merged = *merged.borrow() != merges_at_start;
            if state_merged || recheck_after.is_some_and(|every| link_up.elapsed() >= every) {
                // Let the peer close its side first, so the new connection
                // does not find this one still holding its slot.
                let _ = tokio::io::AsyncWriteExt::shutdown(wr).await;
                let _ = tokio::time::timeout(GOODBYE_WAIT, &mut *acks).await;
                return Ok(LinkEnd::Recheck);
            }
            if acks.is_finished() {
                return Err(LinkError::Protocol("acknowledgement stream ended".into()));
            }
            // Membership spreads over every link: sent once up and after
            // each change, so a region down during a change learns it.
            let version = host.members.version();
            if members_sent != Some(version) {
                write_msg(wr, &Msg::Members(host.members.current())).await?;
                members_sent = Some(version);
            }
            // The election state goes out at every heartbeat, even while
            // streaming, and at once after a change.
            let changed = election_changed.has_changed().unwrap_or(false);
            if changed || election_sent.is_none_or(|t| t.elapsed() >= heartbeat) {
                election_changed.borrow_and_update();
                for m in host.election_outbox(peer) {
                    write_msg(wr, &Msg::Election(m)).await?;
                }
                election_sent = Some(Instant::now());
            }
            if self.ship(wr).await? {
                continue;
            }
            // Caught up: wait for new synced records, or heartbeat. Records
            // the peer already had still move its position, so announce it.
            let heartbeat_due = tokio::select! {
                r = synced.changed() => match r {
                    Ok(()) => false,
                    Err(_) => return Ok(LinkEnd::Closed),
                },
                r = election_changed.changed() => match r {
                    Ok(()) => continue,
                    Err(_) => return Ok(LinkEnd::Closed),
                },
                _ = tokio::time::sleep(heartbeat) => true,
                r = merged.changed() => match r {
                    // Acted on at the top of the loop.
                    Ok(()) => continue,
                    Err(_) => return Ok(LinkEnd::Closed),
                },
                _ = async { closing.wait_for(|c| *c).await.is_ok() } => {
                    return self.goodbye(wr, acks).await;
                }
            };
            if let Some(upto_lsn) = self.stream.announce(heartbeat_due) {
                let hlc = host.store.lock().db().clock().0;
                let beat = Msg::Heartbeat {
                    upto_lsn,
                    hlc,
                    wall_ms: wall_ms(),
                };
                write_msg(wr, &beat).await?;
            }
        }
    }

    /// Sends the next batch of records the peer lacks; false when there was
    /// none (caught up).
    async fn ship(&mut self, wr: &mut Writer) -> Result<bool, LinkError> {
        // An ended acknowledgement task is noticed by the caller's loop.
        if self.peer_acked.has_changed().unwrap_or(false) {
            let (peer_vv, direct) = self.peer_acked.borrow_and_update().clone();
            self.stream.acked(peer_vv.clone());
            if self.stream.set_direct(self.config.region, direct) {
                self.rewind(peer_vv)?;
            }
        }
        while self.streams && self.stream.has_room(BATCH_MAX_OPS, BATCH_MAX_BYTES) {
            let Some(next) = self.reader.next() else {
                break;
            };
            let (lsn, payload) = next?;
            self.stream
                .offer(lsn, payload)
                .map_err(|e| LinkError::Protocol(e.to_string()))?;
        }
        let Some(batch) = self.stream.take_batch() else {
            return Ok(false);
        };
        let n = batch.records.len() as u64;
        let msg = Msg::Ops {
            upto_lsn: batch.upto_lsn,
            records: batch.records,
        };
        let sent = write_msg(wr, &msg).await?;
        update(self.status, self.peer, |o| {
            o.ops_sent += n;
            o.bytes_sent += sent as u64;
        });
        Ok(true)
    }

    /// The peer stopped streaming from an origin whose ops this stream
    /// skipped: read the log again from the peer's vector, so what it lacks
    /// goes out.
    fn rewind(&mut self, peer_vv: VersionVector) -> Result<(), LinkError> {
        let store = self.host.store.lock();
        let direct = self.stream.direct().to_vec();
        let mut stream = Stream::resume(&store, peer_vv).without_echoes(&store, self.peer);
        stream.set_direct(self.config.region, direct);
        self.reader = store
            .log()
            .reader_bounded(stream.next_lsn(), ReadBound::Synced)?;
        tracing::info!(peer = %self.peer, from_lsn = stream.next_lsn(), "an origin left the peer's direct links; relaying its ops from the peer's vector");
        self.stream = stream;
        Ok(())
    }

    /// The region shuts down: tell the peer and let it close first.
    async fn goodbye(
        &self,
        wr: &mut Writer,
        acks: &mut JoinHandle<Result<(), LinkError>>,
    ) -> Result<LinkEnd, LinkError> {
        write_msg(wr, &Msg::Goodbye).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(wr).await;
        // Closing with acknowledgements unread would reset the connection,
        // and a reset can discard the goodbye before the peer reads it:
        // read until the peer closes.
        let _ = tokio::time::timeout(GOODBYE_WAIT, &mut *acks).await;
        self.host
            .goodbyes_sent
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        tracing::info!(peer = %self.peer, "told the peer this region is shutting down");
        Ok(LinkEnd::Closed)
    }
}

/// Runs the TLS handshake when links use TLS: the peer must present a
/// certificate from the cluster CA that names `peer`. A certificate that
/// fails is a refusal, counted under `tls`; one the peer refuses is a
/// refusal too, counted by the peer.
async fn secure(
    stream: TcpStream,
    peer: RegionId,
    addr: &str,
    config: &ReplConfig,
    status: &ReplStatus,
) -> Result<Transport, LinkError> {
    let Some(tls) = &config.tls else {
        return Ok(Transport::Plain(stream));
    };
    let name = crate::tls::server_name(peer.as_str()).map_err(LinkError::Protocol)?;
    let error =
        match tokio::time::timeout(CONNECT_TIMEOUT, tls.connector.connect(name, stream)).await {
            Ok(Ok(s)) => return Ok(Transport::TlsClient(Box::new(s))),
            Ok(Err(e)) => e,
            Err(_) => return Err(LinkError::Connect("TLS handshake timed out".into())),
        };
    Err(match tls_failure(&error) {
        Some(TlsFailure::WeRefused(e)) => {
            let reason = format!("TLS: the certificate of {peer} at {addr} failed: {e}");
            status.refuse_from("tls", peer.as_str(), &reason);
            LinkError::Refused(reason)
        }
        Some(TlsFailure::TheyRefused(e)) => LinkError::Refused(format!(
            "TLS: {peer} at {addr} refused this region's certificate ({e})"
        )),
        None => LinkError::Connect(format!("TLS handshake: {error}")),
    })
}

/// Hands the peer's acknowledgements to the link's stream (`acked`) and
/// to the link status until the connection fails.
async fn read_acks(
    mut rd: BufReader<ReadHalf<Transport>>,
    peer: RegionId,
    status: Arc<ReplStatus>,
    host: Host,
    acked: tokio::sync::watch::Sender<(VersionVector, Vec<RegionId>)>,
) -> Result<(), LinkError> {
    loop {
        let msg = read_msg(&mut rd).await?;
        host.heard(peer);
        match msg {
            (
                Msg::Ack {
                    upto_lsn,
                    vv,
                    durable_vv,
                    wall_ms: their_ms,
                    direct,
                },
                _,
            ) => {
                let now = wall_ms();
                acked.send_replace((vv.clone(), direct));
                update(&status, peer, |o| {
                    o.acked_lsn = o.acked_lsn.max(upto_lsn);
                    o.peer_vv = vv;
                    o.peer_durable_vv = durable_vv;
                    o.clock_offset_ms = their_ms as i64 - now as i64;
                });
                host.peer_acked.send_modify(|n| *n = n.wrapping_add(1));
            }
            (Msg::Refuse { reason }, _) => return Err(LinkError::Refused(reason)),
            (other, _) => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_crdt::{Blob, Dot, Tag};
    use meridian_store::{Store, StoreOptions};
    use tokio::net::TcpListener;

    use crate::handshake::AcceptorHandshake;

    fn region(name: &str) -> RegionId {
        RegionId::new(name).unwrap()
    }

    /// Writes `key` in `store` and syncs it; returns its log record.
    fn write(store: &mut Store, key: &str) -> Vec<u8> {
        store.db_mut().set_now_ms(wall_ms());
        store
            .db_mut()
            .set_string(key.as_bytes(), Blob::from("v"), false);
        store.commit().unwrap();
        store.sync().unwrap();
        let last = store.log().last_lsn();
        let mut reader = store.log().reader_bounded(last, ReadBound::Synced).unwrap();
        reader.next().unwrap().unwrap().1
    }

    /// The dots of the next `Ops` message, skipping membership, election
    /// state and heartbeats.
    async fn next_ops<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) -> (u64, Vec<Dot>) {
        loop {
            let read = tokio::time::timeout(Duration::from_secs(5), read_msg(rd));
            if let Msg::Ops { upto_lsn, records } = read.await.unwrap().unwrap().0 {
                let dot = |r: &Vec<u8>| postcard::take_from_bytes::<Tag>(r).unwrap().0.dot;
                return (upto_lsn, records.iter().map(dot).collect());
            }
        }
    }

    /// A peer that acknowledges holding an op (it got it from a third
    /// region) is not sent that op when this region relays it: the ack
    /// reaches the connection's stream.
    #[tokio::test]
    async fn an_op_the_peer_acknowledged_holding_is_not_shipped_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (ra, rb, rc) = (region("ra"), region("rb"), region("rc"));
        let open = |me: RegionId| {
            let opts = StoreOptions::new(dir.path().join(me.as_str()), me);
            Store::open(opts).unwrap().0
        };
        let relayed = write(&mut open(rc), "from-c");
        let host = crate::testing::host(open(ra), ra, rb);
        write(&mut host.store.lock(), "a1");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let status = Arc::new(ReplStatus::default());
        let config = Arc::new(crate::testing::config(ra, None));
        let sender = tokio::spawn(run(rb, addr, config, host.clone(), status.clone()));

        let (tcp, _) = listener.accept().await.unwrap();
        let (rd, mut wr) = tcp.into_split();
        let mut rd = BufReader::new(rd);
        let me = Identity {
            cluster: "c",
            secret: b"secret",
            region: rb,
        };
        let hello = read_msg(&mut rd).await.unwrap().0;
        let (handshake, challenge) = AcceptorHandshake::hello(me, hello, nonce()).unwrap();
        write_msg(&mut wr, &challenge).await.unwrap();
        let proof = read_msg(&mut rd).await.unwrap().0;
        handshake.proved(me, proof).unwrap();
        let welcome = Msg::Welcome {
            vv: VersionVector::new(),
            witness: false,
        };
        write_msg(&mut wr, &welcome).await.unwrap();
        let (upto_lsn, dots) = next_ops(&mut rd).await;
        assert_eq!(dots, vec![Dot::new(ra, 1)]);

        let mut held = VersionVector::new();
        held.set(ra, 1);
        held.set(rc, 1);
        let ack = Msg::Ack {
            upto_lsn,
            vv: held.clone(),
            durable_vv: held.clone(),
            wall_ms: wall_ms(),
            direct: Vec::new(),
        };
        write_msg(&mut wr, &ack).await.unwrap();
        // The stream is handed the ack before the status shows it.
        let acked = || status.outbound.lock().get(&rb).map(|o| o.peer_vv.clone());
        let wait = async {
            while acked().as_ref() != Some(&held) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the ack was read");
        let synced = {
            let mut store = host.store.lock();
            store.apply_peer_op(&relayed, wall_ms()).unwrap();
            write(&mut store, "a2");
            store.log().synced_lsn()
        };
        host.publish_synced(synced);
        let (upto_lsn, dots) = next_ops(&mut rd).await;
        assert_eq!(upto_lsn, 3, "the relayed record was read");
        assert_eq!(dots, vec![Dot::new(ra, 2)], "and skipped");
        sender.abort();
    }
}
