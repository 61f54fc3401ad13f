//! One client connection: read, parse every complete command, execute the
//! batch under one store lock, commit what it wrote as one op, make it
//! durable as the fsync policy says, then write all replies. Pipelined
//! clients therefore pay for one lock, one op and one log write per batch,
//! not per command.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use meridian_resp::{encode, Frame, Limits, RequestParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::client::Client;
use crate::cmd::Ctx;
use crate::metrics::Metrics;
use crate::shared::{wall_ms, ClientEntry, Shared};

/// A client whose unparsed input grows past this is disconnected
/// (Redis's `client-query-buffer-limit`).
pub const QUERY_BUFFER_MAX_BYTES: usize = 1024 * 1024 * 1024;
/// Pub/Sub messages waiting for a slow subscriber before it is disconnected.
pub const PUSH_QUEUE_MAX: usize = 4096;
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What a client outside loopback reads before being disconnected while
/// protected mode applies (Redis's text, with Meridian's ways out).
const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Meridian you may adopt one of the following solutions: 1) Set a password for the default user with --requirepass. 2) Define ACL users with --aclfile. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Serves one client on `stream`, plain TCP or TLS alike: the loop reads
/// and writes in turn on one task, so the stream is never split.
pub async fn serve<S>(shared: Arc<Shared>, mut stream: S, addr: SocketAddr, local: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Protected mode, as in Redis: while anyone would be logged in as
    // `default` without a password, only loopback clients are accepted.
    // ACL users do not lift it while `default` stays open; `user default
    // off` (or a password for it) does.
    let default_needs_no_auth = shared.acl.read().default_needs_no_auth();
    let loopback = addr.ip().to_canonical().is_loopback();
    if shared
        .protected_mode
        .load(std::sync::atomic::Ordering::Relaxed)
        && default_needs_no_auth
        && !loopback
    {
        Metrics::inc(&shared.metrics.rejected_connections_total);
        tracing::warn!(%addr, "refused a client outside loopback: protected mode (the default user has no password)");
        let _ = stream.write_all(PROTECTED_MODE_DENIED).await;
        let _ = stream.shutdown().await;
        // Closing with the client's request unread would reset the
        // connection and could destroy the reply before the client reads
        // it; drain briefly first.
        let mut sink = [0u8; 1024];
        let drain = async { while let Ok(1..) = stream.read(&mut sink).await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
        return;
    }
    let id = shared.next_client_id();
    let (push_tx, mut push_rx) = mpsc::channel(PUSH_QUEUE_MAX);
    let authenticated = default_needs_no_auth;
    let mut client = Client::new(id, addr, authenticated, push_tx);
    let kill = Arc::new(Notify::new());
    let killed = Arc::new(AtomicBool::new(false));
    // Client tracking's invalidations for this connection.
    let (note_tx, mut note_rx) = mpsc::channel(crate::tracking::NOTE_QUEUE_MAX);
    crate::tracking::connect(&shared, id, note_tx, kill.clone(), killed.clone());
    shared.clients.lock().insert(
        id,
        ClientEntry {
            id,
            addr,
            local,
            name: None,
            created: Instant::now(),
            last_cmd: "NULL".into(),
            last_active: Instant::now(),
            kill: kill.clone(),
            killed: killed.clone(),
            subscriptions: 0,
            in_multi: false,
            resp: 2,
        },
    );
    Metrics::inc(&shared.metrics.connections_total);
    Metrics::inc(&shared.metrics.connections_current);

    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut parser = RequestParser::new();
    let mut blocked: Option<Blocked> = None;
    let mut held: Option<Held> = None;
    // MONITOR's lines, once the client asked for them.
    let mut monitor_feed: Option<crate::monitor::Feed> = None;
    'conn: loop {
        if input.capacity() - input.len() < READ_CHUNK_BYTES / 2 {
            input.reserve(READ_CHUNK_BYTES);
        }
        if let Some(h) = held.take() {
            // A command that waits (CLIENT PAUSE, WAIT, MERIDIAN AFTER):
            // input is read and kept only to notice the client leaving.
            let done = tokio::select! {
                _ = hold(&shared, &client, &h) => true,
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => {
                        Metrics::add(&shared.metrics.net_input_bytes, n as u64);
                        if input.len() > QUERY_BUFFER_MAX_BYTES {
                            break 'conn;
                        }
                        false
                    }
                },
                _ = kill.notified() => break 'conn,
            };
            if !done {
                held = Some(h);
                continue;
            }
            blocked = run_commands(&shared, &mut client, vec![h.args], &mut output);
            if std::mem::take(&mut client.woke_others) {
                crate::blocking::wait_for_woken(&shared).await;
            }
            monitor_feed = client.monitor_feed.take().or(monitor_feed);
            if write_out(&mut stream, &mut output, &shared).await.is_err() {
                break 'conn;
            }
            if client.close {
                break 'conn;
            }
            if blocked.is_some() || input.is_empty() {
                continue;
            }
        } else if let Some(b) = blocked.take() {
            // Blocked: input is read (and kept) only to notice the client
            // leaving; commands wait until the blocking one is answered.
            let deadline = client.block.as_ref().and_then(|r| r.deadline);
            let wake = client.wake.clone();
            let expiry = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let timed_out = tokio::select! {
                _ = wake.notified() => false,
                _ = expiry => true,
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => {
                        Metrics::add(&shared.metrics.net_input_bytes, n as u64);
                        if input.len() > QUERY_BUFFER_MAX_BYTES {
                            break 'conn;
                        }
                        blocked = Some(b);
                        continue;
                    }
                },
                _ = kill.notified() => break 'conn,
                Some(note) = note_rx.recv() => {
                    crate::tracking::encode_pending(&client, Some(note), &mut note_rx, &mut output);
                    if write_out(&mut stream, &mut output, &shared).await.is_err() {
                        break 'conn;
                    }
                    blocked = Some(b);
                    continue;
                }
            };
            // Redis serves blocked clients after the commands that arrived
            // in the same turn of its event loop; yielding once lets the
            // other connections woken with this one run first.
            tokio::task::yield_now().await;
            blocked = retry_blocked(&shared, &mut client, b, timed_out, &mut output);
            if std::mem::take(&mut client.woke_others) {
                crate::blocking::wait_for_woken(&shared).await;
            }
            if write_out(&mut stream, &mut output, &shared).await.is_err() {
                break 'conn;
            }
            if blocked.is_some() || input.is_empty() {
                continue;
            }
        } else {
            tokio::select! {
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => Metrics::add(&shared.metrics.net_input_bytes, n as u64),
                },
                Some(msg) = push_rx.recv() => {
                    encode(&crate::cmd::pubsub::message_frame(&msg), client.proto, &mut output);
                    while let Ok(msg) = push_rx.try_recv() {
                        encode(&crate::cmd::pubsub::message_frame(&msg), client.proto, &mut output);
                    }
                    if write_out(&mut stream, &mut output, &shared).await.is_err() {
                        break 'conn;
                    }
                    continue;
                }
                Some(note) = note_rx.recv() => {
                    crate::tracking::encode_pending(&client, Some(note), &mut note_rx, &mut output);
                    if write_out(&mut stream, &mut output, &shared).await.is_err() {
                        break 'conn;
                    }
                    continue;
                }
                line = next_monitor_line(&mut monitor_feed) => {
                    match line {
                        Some(line) => output.extend_from_slice(&line),
                        // Fell too far behind: dropped, as Redis drops it.
                        None if client.monitor => break 'conn,
                        // RESET ended it.
                        None => monitor_feed = None,
                    }
                    while let Some(Ok(line)) = monitor_feed.as_mut().map(|f| f.try_recv()) {
                        output.extend_from_slice(&line);
                    }
                    if write_out(&mut stream, &mut output, &shared).await.is_err() {
                        break 'conn;
                    }
                    continue;
                }
                _ = kill.notified() => break 'conn,
            }
        }
        // Invalidations queued before these commands go out before their
        // replies.
        crate::tracking::encode_pending(&client, None, &mut note_rx, &mut output);
        let next = process_input(&shared, &mut client, &mut parser, &mut input, &mut output).await;
        monitor_feed = client.monitor_feed.take().or(monitor_feed);
        match next {
            Next::Continue => {}
            Next::Block(b) => blocked = Some(b),
            Next::Hold(h) => held = Some(h),
            Next::Close => {
                // Gone before the last reply is read, as in Redis: a
                // redirect to this connection is broken from then on.
                crate::tracking::disconnect(&shared, &mut client);
                let _ = write_out(&mut stream, &mut output, &shared).await;
                break 'conn;
            }
        }
        if input.len() > QUERY_BUFFER_MAX_BYTES {
            tracing::warn!(client = id, %addr, "query buffer over its limit; closing the connection");
            break 'conn;
        }
        if write_out(&mut stream, &mut output, &shared).await.is_err() {
            break 'conn;
        }
        if killed.load(std::sync::atomic::Ordering::Relaxed) {
            break 'conn;
        }
    }
    if client.block.take().is_some() {
        crate::blocking::leave(&shared, &mut shared.store.lock(), id);
    }
    crate::cmd::pubsub::unsubscribe_all(&shared, &mut client);
    crate::tracking::disconnect(&shared, &mut client);
    if client.monitor {
        shared.monitors.stop(id);
    }
    shared.clients.lock().remove(&id);
    shared
        .metrics
        .connections_current
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let _ = stream.shutdown().await;
}

enum Next {
    Continue,
    /// A blocking command is waiting; the commands after it wait too.
    Block(Blocked),
    /// A command waits before it runs ([`Held`]); the ones after it too.
    Hold(Held),
    Close,
}

/// A command that waits, with nothing locked, before it runs: until a
/// CLIENT PAUSE that covers it ends, then, for `MERIDIAN AFTER`, until this
/// region applied the token's writes and, for WAIT and WAITAOF, until
/// enough regions (and this one's disk) hold this connection's last write,
/// or its timeout passes. It then runs and answers what holds then.
struct Held {
    args: Vec<Bytes>,
    deadline: Option<tokio::time::Instant>,
}

impl Held {
    fn new(args: Vec<Bytes>) -> Held {
        let timeout = match crate::cmd::meridian::after_wait(&args) {
            Some(t) => Some(t),
            None => crate::cmd::wait::wanted(&args)
                .filter(|w| w.timeout_ms > 0)
                .map(|w| std::time::Duration::from_millis(w.timeout_ms)),
        };
        Held {
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            args,
        }
    }

    /// Whether `args` must wait before running.
    fn needed(shared: &Shared, client: &Client, args: &[Bytes]) -> bool {
        shared.pause.holds(client, args, false)
            || crate::cmd::meridian::after_wait(args).is_some()
            || crate::cmd::wait::wanted(args).is_some()
    }
}

/// Waits out what `h` waits for (see [`Held`]).
async fn hold(shared: &Shared, client: &Client, h: &Held) {
    crate::pause::wait_out(shared, client, &h.args).await;
    let expiry = async {
        match h.deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let waited = async {
        if crate::cmd::meridian::after_wait(&h.args).is_some() {
            wait_for_token(shared, &h.args[2]).await;
        } else if let Some(wanted) = crate::cmd::wait::wanted(&h.args) {
            // Inside MULTI it is queued, and answers at EXEC without waiting.
            if client.multi.is_none() {
                wait_for_acks(shared, client.last_write, &wanted).await;
            }
        }
    };
    tokio::select! {
        _ = expiry => {}
        _ = waited => {}
    }
}

/// Waits until `wanted` holds for `last`: woken by every peer's
/// acknowledgement and every sync of this region's log.
async fn wait_for_acks(
    shared: &Shared,
    last: Option<crate::cmd::wait::LastWrite>,
    wanted: &crate::cmd::wait::Wanted,
) {
    let mut acked = shared.host.peer_acked.subscribe();
    let mut synced = shared.host.synced.subscribe();
    while !crate::cmd::wait::satisfied(shared, last, wanted) {
        tokio::select! {
            _ = acked.changed() => {}
            _ = synced.changed() => {}
        }
    }
}

async fn next_monitor_line(feed: &mut Option<crate::monitor::Feed>) -> Option<Bytes> {
    match feed {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}

/// A client waiting in a blocking command.
struct Blocked {
    /// The command, run again each time a key it waits on changes.
    args: Vec<Bytes>,
    /// What it answers if the wait ends without an element.
    timeout_reply: Frame,
    /// Commands the client sent after it, run once it is answered.
    rest: Vec<Vec<Bytes>>,
}

/// Runs `cmds` as one batch; if one blocks, returns the wait.
fn run_commands(
    shared: &Shared,
    client: &mut Client,
    cmds: Vec<Vec<Bytes>>,
    output: &mut BytesMut,
) -> Option<Blocked> {
    let mut cmds = cmds;
    loop {
        if cmds.is_empty() {
            return None;
        }
        let (args, timeout_reply, rest) = run_batch(shared, client, cmds, output)?;
        if client.block.is_some() {
            return Some(Blocked {
                args,
                timeout_reply,
                rest,
            });
        }
        cmds = rest;
    }
}

/// A blocked client was woken (or its deadline passed): answers it if the
/// wait is over, else keeps it waiting.
fn retry_blocked(
    shared: &Shared,
    client: &mut Client,
    b: Blocked,
    timed_out: bool,
    output: &mut BytesMut,
) -> Option<Blocked> {
    let unblocked = shared.blocking.lock().unblocked(client.id);
    let answer = match (unblocked, timed_out) {
        (Some(crate::blocking::Unblock::Error), _) => Some(Frame::error(
            "UNBLOCKED client unblocked via CLIENT UNBLOCK",
        )),
        (Some(crate::blocking::Unblock::Timeout), _) | (None, true) => {
            Some(b.timeout_reply.clone())
        }
        (None, false) => None,
    };
    if let Some(reply) = answer {
        crate::dispatch::blocked_done(shared, &b.args, &reply);
        encode(&reply, client.proto, output);
        return end_block(shared, client, b.rest, output);
    }
    let retry = run_batch(shared, client, vec![b.args], output);
    crate::blocking::retried(shared, client.id);
    match retry {
        // Still nothing to take: it keeps its place and its deadline.
        Some((args, timeout_reply, _)) if client.block.is_some() => Some(Blocked {
            args,
            timeout_reply,
            rest: b.rest,
        }),
        _ => end_block(shared, client, b.rest, output),
    }
}

/// The wait is over (answered, timed out, unblocked): the client leaves
/// every queue, then the commands it sent after the blocking one run.
fn end_block(
    shared: &Shared,
    client: &mut Client,
    rest: Vec<Vec<Bytes>>,
    output: &mut BytesMut,
) -> Option<Blocked> {
    client.block = None;
    crate::blocking::leave(shared, &mut shared.store.lock(), client.id);
    run_commands(shared, client, rest, output)
}

/// Runs every complete command in `input`. Before AUTH the parser's limits
/// are tighter, so parsing stops after each command until the client has
/// authenticated. A command that waits ([`Held`]) ends the parse: what came
/// before runs, then the connection waits with the store unlocked.
async fn process_input(
    shared: &Shared,
    client: &mut Client,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    output: &mut BytesMut,
) -> Next {
    loop {
        let limits = Limits {
            unauthenticated: !client.authenticated,
            ..Limits::default()
        };
        let mut batch: Vec<Vec<Bytes>> = Vec::new();
        let mut protocol_error = None;
        let mut stopped_early = false;
        let mut wait = None;
        loop {
            match parser.next_command(input, &limits) {
                Ok(Some(args)) if args.is_empty() => continue,
                Ok(Some(args)) => {
                    if Held::needed(shared, client, &args) {
                        // What came before runs first, then the wait.
                        wait = Some(args);
                        stopped_early = true;
                        break;
                    }
                    batch.push(args)
                }
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
            if !client.authenticated {
                stopped_early = true;
                break;
            }
        }
        if !batch.is_empty() {
            let blocked = run_commands(shared, client, batch, output);
            if std::mem::take(&mut client.woke_others) {
                // The clients this batch unblocked are served before its
                // replies leave, as in Redis.
                crate::blocking::wait_for_woken(shared).await;
            }
            if let Some(mut b) = blocked {
                // The commands after the blocking one, the MERIDIAN AFTER
                // that stopped the parse included, wait with it.
                if let Some(args) = wait {
                    b.rest.push(args);
                }
                return Next::Block(b);
            }
        }
        if let Some(args) = wait {
            if client.close {
                return Next::Close;
            }
            return Next::Hold(Held::new(args));
        }
        if let Some(e) = protocol_error {
            Metrics::inc(&shared.metrics.protocol_errors_total);
            tracing::debug!(client = client.id, addr = %client.addr, error = %e, "protocol error; closing the connection");
            e.encode_reply(output);
            return Next::Close;
        }
        if client.close {
            return Next::Close;
        }
        if !stopped_early {
            return Next::Continue;
        }
    }
}

/// Waits until this region has applied everything `token` names (the
/// caller bounds the wait); the command itself then reports whether it did.
pub async fn wait_for_token(shared: &Shared, token: &[u8]) {
    let mut applied = shared.host.applied.subscribe();
    loop {
        let done = {
            let store = shared.store.lock();
            crate::cmd::meridian::token_satisfied(store.db().version_vector(), token)
        };
        if done {
            return;
        }
        if applied.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn write_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    output: &mut BytesMut,
    shared: &Shared,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    Metrics::add(&shared.metrics.net_output_bytes, output.len() as u64);
    wr.write_all(output).await?;
    // TLS may hold encrypted records back when the socket is full; plain
    // TCP's flush does nothing.
    wr.flush().await?;
    output.clear();
    if output.capacity() > 4 * 1024 * 1024 {
        *output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    }
    Ok(())
}

/// Executes a batch under one store lock and makes its ops durable before
/// any reply leaves. A command that blocks ends the batch: it is returned
/// with the reply it gives if its wait ends empty, and the commands after
/// it, unrun.
pub fn run_batch(
    shared: &Shared,
    client: &mut Client,
    batch: Vec<Vec<Bytes>>,
    output: &mut BytesMut,
) -> Option<(Vec<Bytes>, Frame, Vec<Vec<Bytes>>)> {
    let outcome = execute_batch(shared, client, batch);
    for (frame, proto) in &outcome.replies {
        encode(frame, *proto, output);
    }
    outcome.blocked_on
}

/// What [`execute_batch`] did: the replies, and the command that blocked.
pub struct BatchOutcome {
    /// Each reply with the protocol in force right after its command ran
    /// (HELLO 3 answers in RESP3; earlier replies stay RESP2).
    pub replies: Vec<(Frame, meridian_resp::Protocol)>,
    /// The command that blocked, the reply it gives if its wait ends
    /// empty, and the commands after it, unrun.
    pub blocked_on: Option<(Vec<Bytes>, Frame, Vec<Vec<Bytes>>)>,
}

/// [`run_batch`] without the encoding: the replies as frames, for front
/// ends other than RESP (the REST data API).
pub fn execute_batch(shared: &Shared, client: &mut Client, batch: Vec<Vec<Bytes>>) -> BatchOutcome {
    let mut replies: Vec<Frame> = Vec::new();
    // Each reply is encoded in the protocol in force right after its command
    // ran (HELLO 3 answers in RESP3; earlier replies stay RESP2).
    let mut protos: Vec<meridian_resp::Protocol> = Vec::new();
    let last_cmd = batch
        .last()
        .map(|a| String::from_utf8_lossy(&a[0]).to_ascii_lowercase())
        .unwrap_or_default();
    let mut store = match crate::scripting::lock_store_or_busy(shared) {
        Ok(store) => store,
        Err(running) => {
            let replies = batch
                .iter()
                .map(|args| {
                    let reply = crate::scripting::while_busy(shared, client, &running, args);
                    (reply, client.proto)
                })
                .collect();
            return BatchOutcome {
                replies,
                blocked_on: None,
            };
        }
    };
    store.db_mut().set_now_ms(wall_ms());
    let before = store.log().last_lsn();
    let me = store.db().region();
    let seq_before = store.db().version_vector().get(me);
    let mut blocked_on = None;
    {
        let mut ctx = Ctx {
            store: &mut store,
            client,
            shared,
            table: crate::cmd::table(),
        };
        let mut cmds = batch.into_iter();
        while let Some(args) = cmds.next() {
            let keep = args.clone();
            crate::dispatch::execute(&mut ctx, args, &mut replies);
            if std::mem::take(&mut ctx.client.block_pending) {
                let timeout_reply = replies.pop().unwrap_or(Frame::Null);
                let keep = ctx
                    .client
                    .block
                    .as_mut()
                    .and_then(|b| b.args.take())
                    .unwrap_or(keep);
                blocked_on = Some((keep, timeout_reply, cmds.collect()));
                break;
            }
            protos.resize(replies.len(), ctx.client.proto);
        }
    }
    if crate::blocking::wake_ready(shared, &mut store) {
        client.woke_others = true;
    }
    crate::events::drain(shared, &mut store, Some(client.id));
    // Everything the batch wrote is one op, durable before any reply leaves.
    // The op it committed (here, or earlier by MERIDIAN TOKEN) is what a
    // later WAIT counts acknowledgements of.
    let appended = crate::commit::append(&mut store, shared);
    let seq = store.db().version_vector().get(me);
    if seq > seq_before {
        client.last_write = Some(crate::cmd::wait::LastWrite {
            seq,
            lsn: store.log().last_lsn(),
        });
    }
    if !(crate::commit::finish(shared, store, before) && appended) {
        for r in replies.iter_mut() {
            if !r.is_error() {
                *r = crate::commit::poisoned_error();
            }
        }
    }
    let replies = replies.into_iter().zip(protos).collect();
    if let Some(entry) = shared.clients.lock().get_mut(&client.id) {
        entry.last_cmd = last_cmd;
        entry.last_active = Instant::now();
        entry.name = client.name.clone();
        entry.subscriptions = client.subscriptions();
        entry.in_multi = client.multi.is_some();
        entry.resp = match client.proto {
            meridian_resp::Protocol::Resp2 => 2,
            meridian_resp::Protocol::Resp3 => 3,
        };
    }
    BatchOutcome {
        replies,
        blocked_on,
    }
}
