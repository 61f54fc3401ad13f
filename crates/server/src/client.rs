//! Per-connection state.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bytes::Bytes;
use meridian_crdt::Blob;
use meridian_resp::Protocol;
use tokio::sync::mpsc;

/// A Pub/Sub message on its way to a subscriber.
#[derive(Debug, Clone)]
pub struct PushMsg {
    /// The pattern it matched, for PSUBSCRIBE subscribers.
    pub pattern: Option<Bytes>,
    /// Published with SPUBLISH to a shard channel (`smessage`).
    pub shard: bool,
    pub channel: Bytes,
    pub message: Bytes,
}

/// Messages a subscribed connection can receive.
pub type PushSender = mpsc::Sender<PushMsg>;

pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub proto: Protocol,
    pub authenticated: bool,
    /// The ACL user this connection runs as (`default` until AUTH).
    pub user: String,
    pub name: Option<Bytes>,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC must abort.
    pub multi_failed: bool,
    /// Keys under WATCH with the version seen at WATCH time.
    pub watched: Vec<(Blob, u64)>,
    pub channels: BTreeSet<Bytes>,
    pub patterns: BTreeSet<Bytes>,
    /// Shard channels (SSUBSCRIBE), a namespace apart from `channels`.
    pub shard_channels: BTreeSet<Bytes>,
    pub push: PushSender,
    /// Close the connection once the pending replies are written.
    pub close: bool,
    /// EXEC is running this client's queued commands: blocking commands
    /// answer at once.
    pub in_exec: bool,
    /// A script is running this client's commands (`redis.call`).
    pub in_script: bool,
    /// The wait a blocking command asked for, kept while it lasts (its
    /// deadline holds across retries).
    pub block: Option<crate::blocking::BlockRequest>,
    /// The command just run asked to block: the batch stops there.
    pub block_pending: bool,
    /// Woken when a key this client is blocked on changes.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// The last batch woke blocked clients: its replies wait for them.
    pub woke_others: bool,
    /// CLIENT REPLY OFF: replies are dropped until CLIENT REPLY ON.
    pub reply_off: bool,
    /// The replies of the command running now are dropped (it follows
    /// CLIENT REPLY SKIP, or is that command itself).
    pub reply_skip: bool,
    /// CLIENT REPLY SKIP ran: the next command's replies are dropped.
    pub reply_skip_next: bool,
    /// CLIENT TRACKING is on (the rest of its state is in
    /// `Shared::tracking`): dispatch remembers the keys this client reads.
    pub tracking: Option<crate::tracking::Own>,
    /// The op this connection's writes last committed: what WAIT and
    /// WAITAOF count acknowledgements of.
    pub last_write: Option<crate::cmd::wait::LastWrite>,
    /// MONITOR ran: the connection receives every command run here.
    pub monitor: bool,
    /// The feed MONITOR opened, taken by the connection after the batch.
    pub monitor_feed: Option<crate::monitor::Feed>,
    /// A data API request made with the read-only token: anything needing
    /// more than `@read` is refused, whatever the user would allow.
    pub read_only: bool,
}

impl Client {
    pub fn new(id: u64, addr: SocketAddr, authenticated: bool, push: PushSender) -> Client {
        Client {
            id,
            addr,
            proto: Protocol::Resp2,
            authenticated,
            user: crate::acl::DEFAULT_USER.to_string(),
            name: None,
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
            push,
            close: false,
            in_exec: false,
            in_script: false,
            block: None,
            block_pending: false,
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            woke_others: false,
            reply_off: false,
            reply_skip: false,
            reply_skip_next: false,
            tracking: None,
            last_write: None,
            monitor: false,
            monitor_feed: None,
            read_only: false,
        }
    }

    /// Channels and patterns: the count SUBSCRIBE and PSUBSCRIBE report
    /// (shard channels are counted apart, by SSUBSCRIBE).
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// In RESP2 a connection subscribed to anything, shard channels
    /// included, may only run Pub/Sub commands.
    pub fn in_pubsub_context(&self) -> bool {
        self.proto == Protocol::Resp2 && self.subscriptions() + self.shard_channels.len() > 0
    }
}
