//! The accepting side of peer links: handshake, then drive the receiving
//! half ([`crate::inbound`]): apply each batch of ops under one store lock,
//! flush it, acknowledge.

use std::sync::Arc;
use std::time::Duration;

use meridian_crdt::RegionId;
use tokio::io::{BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::handshake::{nonce, AcceptorHandshake, HandshakeError, Identity};
use crate::inbound::{ApplyError, Inbound};
use crate::status::ReplStatus;
use crate::tls::{tls_failure, TlsFailure, Transport};
use crate::wire::{read_msg, write_msg, Msg};
use crate::{wall_ms, Host, ReplConfig};

pub async fn accept_loop(
    listener: TcpListener,
    config: Arc<ReplConfig>,
    host: Host,
    status: Arc<ReplStatus>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let (config, host, status) = (config.clone(), host.clone(), status.clone());
                tokio::spawn(async move {
                    let Some(stream) = secure(stream, addr, &config, &status).await else {
                        return;
                    };
                    if let Err(reason) = serve(stream, &config, &host, &status).await {
                        tracing::debug!(%addr, %reason, "inbound replication link ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a replication connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the TLS handshake when links use TLS. A dialer whose certificate
/// the cluster CA did not sign (or that does not speak TLS) is refused,
/// logged and counted under `tls`.
async fn secure(
    stream: TcpStream,
    addr: std::net::SocketAddr,
    config: &ReplConfig,
    status: &ReplStatus,
) -> Option<Transport> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &config.tls else {
        return Some(Transport::Plain(stream));
    };
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let error = match tokio::time::timeout(idle, tls.acceptor.accept(stream)).await {
        Ok(Ok(s)) => return Some(Transport::TlsServer(Box::new(s))),
        Ok(Err(e)) => e,
        Err(_) => {
            tracing::debug!(%addr, "replication TLS handshake timed out");
            return None;
        }
    };
    match tls_failure(&error) {
        Some(TlsFailure::WeRefused(e)) => {
            let reason = format!("TLS handshake from {addr} failed: {e}");
            tracing::warn!(%reason, "refused a replication peer");
            status.refuse_from("tls", &addr.to_string(), &reason);
        }
        Some(TlsFailure::TheyRefused(e)) => {
            tracing::info!(%addr, error = %e, "a dialing peer refused this region's certificate");
        }
        None => tracing::debug!(%addr, error = %error, "replication TLS handshake failed"),
    }
    None
}

/// Refuses a handshake: tells the dialer why, logs and counts it.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    status: &ReplStatus,
    from: &str,
    kind: &str,
    reason: String,
) -> Result<(), String> {
    tracing::warn!(%reason, "refused a replication peer");
    status.refuse_from(kind, from, &reason);
    let _ = write_msg(
        wr,
        &Msg::Refuse {
            reason: reason.clone(),
        },
    )
    .await;
    Err(reason)
}

/// Ends a handshake that failed: refuses the dialer when this side
/// refuses it.
async fn handshake_failed<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    status: &ReplStatus,
    from: &str,
    e: HandshakeError,
) -> Result<(), String> {
    match e {
        HandshakeError::Refuse { kind, reason } => {
            refuse(wr, status, from, kind.unwrap_or("refused"), reason).await
        }
        HandshakeError::RefusedByPeer(reason) => Err(format!("dialer refused us: {reason}")),
        e @ HandshakeError::Unexpected { .. } => Err(e.to_string()),
    }
}

async fn serve(
    stream: Transport,
    config: &ReplConfig,
    host: &Host,
    status: &Arc<ReplStatus>,
) -> Result<(), String> {
    let from = match &stream {
        Transport::Plain(s) => s.peer_addr(),
        Transport::TlsServer(s) => s.get_ref().0.peer_addr(),
        Transport::TlsClient(s) => s.get_ref().0.peer_addr(),
    }
    .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let from = from.as_str();
    // Checked once the Hello says which region dials.
    let certificate = crate::tls::peer_certificate(&stream);
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    let idle = Duration::from_millis(config.idle_timeout_ms);

    let me = Identity {
        cluster: &config.cluster,
        secret: &config.secret,
        region: config.region,
    };
    let hello = read(&mut rd, idle).await?.0;
    let (handshake, challenge) = match AcceptorHandshake::hello(me, hello, nonce()) {
        Ok(h) => h,
        Err(e) => return handshake_failed(&mut wr, status, from, e).await,
    };
    let peer = handshake.peer();
    let region = peer.as_str();
    if config.tls.is_some()
        && !certificate
            .as_ref()
            .is_some_and(|c| crate::tls::names_region(c, region))
    {
        let reason = format!(
            "the certificate of the peer claiming region {region} does not name that region"
        );
        return refuse(&mut wr, status, from, "tls", reason).await;
    }
    write_msg(&mut wr, &challenge)
        .await
        .map_err(|e| e.to_string())?;
    let proof = read(&mut rd, idle).await?.0;
    if let Err(e) = handshake.proved(me, proof) {
        return handshake_failed(&mut wr, status, from, e).await;
    }
    // Only a peer that proved the secret learns whether it is a member.
    if host.members.current().was_removed(peer) {
        let reason =
            format!("region {region} was removed from the cluster; add it again to let it back");
        return refuse(&mut wr, status, from, "removed", reason).await;
    }
    if !host.members.current().is_member(peer) {
        let reason = format!(
            "region {region} is not a member of this cluster; add it first (meridian members add, or POST /v1/members)"
        );
        return refuse(&mut wr, status, from, "not a member", reason).await;
    }
    let already_up = {
        let mut inbound = status.inbound.lock();
        let entry = inbound.entry(peer).or_default();
        let up = entry.connected;
        if !up {
            entry.connected = true;
            entry.since_ms = wall_ms();
        }
        up
    };
    if already_up {
        let reason = format!("duplicate region id {region}: a link from that region is already up");
        return refuse(&mut wr, status, from, "duplicate region id", reason).await;
    }
    let result = stream_ops(peer, rd, &mut wr, config, host, status, idle).await;
    if let Some(entry) = status.inbound.lock().get_mut(&peer) {
        entry.connected = false;
        entry.since_ms = wall_ms();
    }
    result
}

type Reader = BufReader<ReadHalf<Transport>>;

/// Reads one message, giving up on a peer silent for `idle` (heartbeats
/// come every second), so a dead connection frees its region's slot.
async fn read(rd: &mut Reader, idle: Duration) -> Result<(Msg, usize), String> {
    match tokio::time::timeout(idle, read_msg(rd)).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("peer silent past the idle timeout".to_string()),
    }
}

async fn stream_ops(
    peer: RegionId,
    rd: Reader,
    wr: &mut WriteHalf<Transport>,
    config: &ReplConfig,
    host: &Host,
    status: &Arc<ReplStatus>,
    idle: Duration,
) -> Result<(), String> {
    let vv = host.store.lock().db().version_vector().clone();
    write_msg(
        wr,
        &Msg::Welcome {
            vv,
            witness: config.witness,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    host.view.lock().reconnected(peer);
    host.heard(peer);
    tracing::info!(%peer, "inbound replication link up");
    let mut antientropy = crate::antientropy::Acceptor::new(host);
    let mut inbound = Inbound::new(peer);
    // Messages are read by a task of their own, so the loop below can also
    // wake when another link applied what waiting records depend on.
    let (msgs_tx, mut msgs) = tokio::sync::mpsc::channel(4);
    let reader = AbortOnDrop(tokio::spawn(read_all(rd, idle, msgs_tx)));
    let mut applied = host.applied.subscribe();
    let mut upto = 0;
    loop {
        let next = if inbound.waiting() == 0 {
            msgs.recv().await
        } else {
            let deadline = inbound.wait_deadline_ms().unwrap_or(0);
            let left = Duration::from_millis(deadline.saturating_sub(wall_ms()));
            tokio::select! {
                biased;
                m = msgs.recv() => m,
                r = applied.changed() => {
                    r.map_err(|_| "the region is closing".to_string())?;
                    if retry_waiting(&mut inbound, config, host, status)? {
                        let ack = inbound.ack(&mut host.store.lock(), upto, direct_origins(config, status, peer));
                        write_msg(wr, &ack.into_msg(wall_ms()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    continue;
                }
                _ = tokio::time::sleep(left) => {
                    // A state merge may have brought what they wait for.
                    retry_waiting(&mut inbound, config, host, status)?;
                    if inbound.waited_too_long(wall_ms()) {
                        return Err(gave_up_waiting(status, peer));
                    }
                    continue;
                }
            }
        };
        let Some(next) = next else {
            drop(reader);
            return Err("the link's reader ended".to_string());
        };
        let (msg, size) = next?;
        let now = wall_ms();
        if !host.members.current().is_member(peer) {
            return Err(format!("region {peer} is no longer a member"));
        }
        host.heard(peer);
        if !crate::antientropy::is_session_msg(&msg) {
            // The dialer streams again: any session it dialed is over.
            antientropy.settle();
        }
        if let Msg::Members(theirs) = &msg {
            host.members.adopt(theirs).map_err(|e| e.to_string())?;
            continue;
        }
        if let Msg::Goodbye = msg {
            host.view.lock().peer_left(peer);
            tracing::info!(%peer, "peer is shutting down cleanly");
            return Ok(());
        }
        if crate::antientropy::is_session_msg(&msg) {
            antientropy
                .handle(peer, msg, size, wr, config, host, status)
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        upto = match msg {
            Msg::Election(m) => {
                host.election_receive(peer, m);
                continue;
            }
            Msg::Ops { upto_lsn, records } => {
                if config.witness {
                    return Err(format!("region {peer} sent ops to a witness"));
                }
                apply_batch(&mut inbound, upto_lsn, &records, size, config, host, status)?;
                upto_lsn
            }
            Msg::Heartbeat {
                upto_lsn,
                wall_ms: their_ms,
                ..
            } => {
                let offset = their_ms as i64 - now as i64;
                let alarm = offset > config.max_clock_offset_ms as i64;
                if let Some(entry) = status.inbound.lock().get_mut(&peer) {
                    if alarm && !entry.clock_alarm {
                        tracing::warn!(%peer, offset_ms = offset, limit_ms = config.max_clock_offset_ms, "peer clock is ahead of ours beyond the limit");
                        entry.clock_alarms_total += 1;
                    }
                    entry.clock_offset_ms = offset;
                    entry.clock_alarm = alarm;
                    entry.last_msg_ms = now;
                    entry.bytes_received += size as u64;
                }
                upto_lsn
            }
            other => return Err(format!("unexpected message {other:?}")),
        };
        if inbound.waited_too_long(now) {
            return Err(gave_up_waiting(status, peer));
        }
        let direct = direct_origins(config, status, peer);
        let ack = inbound.ack(&mut host.store.lock(), upto, direct);
        write_msg(wr, &ack.into_msg(wall_ms()))
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// Reads the link's messages into `msgs` until the link fails.
async fn read_all(
    mut rd: Reader,
    idle: Duration,
    msgs: tokio::sync::mpsc::Sender<Result<(Msg, usize), String>>,
) {
    loop {
        let m = read(&mut rd, idle).await;
        let failed = m.is_err();
        if msgs.send(m).await.is_err() || failed {
            return;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long after its link came up an origin counts as streamed directly:
/// a link that has just come up may still be catching up.
const DIRECT_AFTER_MS: u64 = 1_000;
/// After a link gave up waiting for dependencies, this region asks every
/// sender to relay everything for this long.
const RELAY_ALL_FOR_MS: u64 = 30_000;

/// The origins this region streams from directly, as told to `peer`: each
/// other region whose link here has been up a while and heard from
/// lately, unless a wait for dependencies failed recently.
pub(crate) fn direct_origins(
    config: &ReplConfig,
    status: &ReplStatus,
    peer: RegionId,
) -> Vec<RegionId> {
    let now = wall_ms();
    if now
        < status
            .relay_all_until_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Vec::new();
    }
    let silent_after = config.heartbeat_ms.saturating_mul(3).max(500);
    status
        .inbound
        .lock()
        .iter()
        .filter(|(region, link)| {
            **region != peer
                && link.connected
                && now.saturating_sub(link.since_ms) >= DIRECT_AFTER_MS
                && now.saturating_sub(link.last_msg_ms) <= silent_after
        })
        .map(|(region, _)| *region)
        .collect()
}

/// A record waited past its bound: reset the link and ask every sender to
/// relay everything for a while.
fn gave_up_waiting(status: &ReplStatus, peer: RegionId) -> String {
    status.relay_all_until_ms.store(
        wall_ms() + RELAY_ALL_FOR_MS,
        std::sync::atomic::Ordering::Relaxed,
    );
    status
        .causal_resets
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reason = format!(
        "ops from {peer} waited over {} ms for dependencies that did not come directly",
        crate::inbound::WAIT_MAX_MS
    );
    tracing::warn!(%peer, "{reason}; resetting the link and asking for every op to be relayed");
    reason
}

/// Applies what waits on this link as far as its dependencies are here;
/// true when something was applied (the sender hears of it).
fn retry_waiting(
    inbound: &mut Inbound,
    config: &ReplConfig,
    host: &Host,
    status: &ReplStatus,
) -> Result<bool, String> {
    let before = inbound.waiting();
    let batch = {
        let mut store = host.store.lock();
        let mut batch = inbound.retry(&mut store, wall_ms());
        if batch.needs_flush() && batch.applied > 0 {
            if let Err(e) = store.flush() {
                batch.failed = Some(ApplyError::Store(e));
            }
        }
        batch
    };
    let progressed = inbound.waiting() < before;
    settle(inbound.peer(), batch, 0, 0, config, host, status)?;
    Ok(progressed)
}

/// Applies one batch through [`Inbound`] under one store lock and flushes
/// it, then updates the link's counters and wakes what waits on applied
/// ops. Any failure resets the link.
fn apply_batch(
    inbound: &mut Inbound,
    upto_lsn: u64,
    records: &[Vec<u8>],
    size: usize,
    config: &ReplConfig,
    host: &Host,
    status: &ReplStatus,
) -> Result<(), String> {
    let batch = {
        let mut store = host.store.lock();
        let mut batch = inbound.apply(&mut store, wall_ms(), upto_lsn, records, None);
        if batch.needs_flush() {
            if let Err(e) = store.flush() {
                batch.failed = Some(ApplyError::Store(e));
            }
        }
        batch
    };
    settle(
        inbound.peer(),
        batch,
        records.len() as u64,
        size,
        config,
        host,
        status,
    )
}

/// After records of `peer` were applied: the link's counters, the synced
/// position, and what waits on applied ops; a failure resets the link.
fn settle(
    peer: RegionId,
    mut batch: crate::inbound::Applied,
    received: u64,
    size: usize,
    config: &ReplConfig,
    host: &Host,
    status: &ReplStatus,
) -> Result<(), String> {
    if let Some(e) = batch.failed.take() {
        if matches!(
            e,
            ApplyError::MissingDependencies(_) | ApplyError::WaitedTooMuch(_)
        ) {
            status
                .causal_resets
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!(%peer, error = %e, "applying a batch from a peer failed; resetting the link");
        return Err(e.to_string());
    }
    let synced = host.store.lock().log().synced_lsn();
    if let Some(entry) = status.inbound.lock().get_mut(&peer) {
        entry.ops_received += received;
        entry.ops_applied += batch.applied;
        entry.duplicates += batch.duplicates;
        entry.bytes_received += size as u64;
        entry.last_msg_ms = wall_ms();
        for l in batch.lags_ms {
            entry.record_lag(l);
        }
        if let Some(ahead) = batch.clock_ahead {
            if !entry.clock_alarm {
                tracing::warn!(%peer, ahead_ms = ahead.ahead_ms, limit_ms = config.max_clock_offset_ms, "op stamped ahead of our clock beyond the limit");
                entry.clock_alarms_total += 1;
            }
            entry.clock_alarm = true;
        }
    }
    host.publish_synced(synced);
    if batch.applied > 0 {
        host.applied.send_modify(|n| *n += batch.applied);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::tests::{ca, files};
    use crate::tls::{server_name, PeerTls};
    use crate::wire::{MAGIC, PROTOCOL_VERSION};

    /// A region of the cluster cannot pose as another: the acceptor holds
    /// the dialer to the region its certificate names.
    #[tokio::test]
    async fn a_dialer_whose_certificate_names_another_region_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cluster_ca = ca(dir.path(), "cluster");
        let ra = RegionId::new("ra").unwrap();
        let opts = meridian_store::StoreOptions::new(dir.path().join("data"), ra);
        let (store, _) = meridian_store::Store::open(opts).unwrap();
        let host = crate::testing::host(store, ra, RegionId::new("rb").unwrap());
        let tls = PeerTls::load(&files(dir.path(), &cluster_ca, "ra", &["ra"]), "ra").unwrap();
        let config = Arc::new(crate::testing::config(ra, Some(tls)));
        let status = Arc::new(ReplStatus::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(accept_loop(listener, config, host, status.clone()));

        let rx = PeerTls::load(&files(dir.path(), &cluster_ca, "rx", &["rx"]), "rx").unwrap();
        let hello = |region: &str| Msg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster: "c".into(),
            region: region.into(),
            nonce: nonce(),
        };
        for (claim, refused) in [("rb", true), ("rx", false)] {
            let tcp = TcpStream::connect(at).await.unwrap();
            let mut link = rx
                .connector
                .connect(server_name("ra").unwrap(), tcp)
                .await
                .unwrap();
            write_msg(&mut link, &hello(claim)).await.unwrap();
            match read_msg(&mut link).await.unwrap().0 {
                Msg::Refuse { reason } if refused => {
                    assert!(reason.contains("does not name that region"), "{reason}")
                }
                Msg::Challenge { region, .. } if !refused => assert_eq!(region, "ra"),
                other => panic!("claiming {claim}: {other:?}"),
            }
        }
        assert_eq!(status.refused.lock().get("tls"), Some(&1));
    }
}
