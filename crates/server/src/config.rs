//! `meridian serve` settings: flags, `MERIDIAN_*` environment variables and
//! a TOML file with the same names. Flags override the environment, which
//! overrides the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use meridian_crdt::RegionId;
use meridian_repl::tls::{ClientAuth, PeerTls, TlsFiles};
use meridian_store::FsyncPolicy;
use serde::{Deserialize, Serialize};

/// Every setting of `meridian serve`. All are optional here so that the file
/// can fill what flags and environment leave unset; [`Config::resolve`]
/// applies the defaults.
#[derive(Args, Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with the same names as the flags (e.g. `listen = "0.0.0.0:7379"`).
    #[arg(long, env = "MERIDIAN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the settings in force (file, environment and flags merged,
    /// defaults filled in, secrets hidden) as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// This region's id: 1 to 32 characters from [a-z0-9-].
    #[arg(long, env = "MERIDIAN_REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Address for Redis clients (RESP2/RESP3). Default 127.0.0.1:7379.
    #[arg(long, env = "MERIDIAN_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Address for the HTTP admin API, health checks and metrics. Default 127.0.0.1:7380.
    #[arg(long, env = "MERIDIAN_HTTP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Address for replication between regions. Default 127.0.0.1:7381.
    #[arg(long, env = "MERIDIAN_REPL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repl: Option<String>,
    /// Name of the cluster; peers from another cluster are refused. Default "meridian".
    #[arg(long, env = "MERIDIAN_CLUSTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Secret every region of the cluster shares; peers prove it at handshake.
    #[arg(long, env = "MERIDIAN_CLUSTER_SECRET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<String>,
    /// A peer region, as ID=HOST:PORT (repeatable).
    #[arg(long = "peer", env = "MERIDIAN_PEER", value_delimiter = ',')]
    #[serde(default)]
    pub peer: Vec<String>,
    /// Run as a witness: votes in quorum decisions, stores no user data.
    #[arg(long, env = "MERIDIAN_WITNESS")]
    #[serde(default)]
    pub witness: bool,
    /// Where the op log and snapshots live. Default ./meridian-data.
    #[arg(long, env = "MERIDIAN_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// When the op log is fsynced: always, everysec (default) or no.
    #[arg(long, env = "MERIDIAN_FSYNC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// Password clients must send with AUTH.
    #[arg(long, env = "MERIDIAN_REQUIREPASS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirepass: Option<String>,
    /// ACL users file, one `user NAME RULES...` line each (Redis syntax,
    /// passwords as `#<sha256hex>`). Users are per region, not replicated.
    #[arg(long, env = "MERIDIAN_ACLFILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aclfile: Option<PathBuf>,
    /// yes (default): with no password and no ACL users, accept only
    /// loopback clients. no: accept everyone.
    #[arg(long, env = "MERIDIAN_PROTECTED_MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected_mode: Option<String>,
    /// Keyspace notifications, as Redis's `notify-keyspace-events`: event
    /// classes from `Ag$lshzxeKEtmdn` (e.g. `KEA`). Default "" (off).
    /// Changes at run time through CONFIG SET, SIGHUP or the admin API.
    #[arg(long, env = "MERIDIAN_NOTIFY_KEYSPACE_EVENTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_keyspace_events: Option<String>,
    /// Keyspace policy PATTERN=POLICY (active-active, majority, primary:REGION), repeatable.
    #[arg(long = "policy", env = "MERIDIAN_POLICY", value_delimiter = ',')]
    #[serde(default)]
    pub policy: Vec<String>,
    /// Heartbeat interval on idle replication links, in ms. Default 250.
    #[arg(long, env = "MERIDIAN_HEARTBEAT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// Quorum lease length in milliseconds. Default 3000.
    #[arg(long, env = "MERIDIAN_LEASE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// How many ops the log retains for peers that fall behind; a peer
    /// further behind repairs by anti-entropy. Default 1000000.
    #[arg(long, env = "MERIDIAN_REPL_BACKLOG_OPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repl_backlog_ops: Option<u64>,
    /// Every this many ms each link compares full state with its peer
    /// (anti-entropy), even when the log covers it. Default 600000; 0 turns
    /// the periodic comparison off.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_ANTIENTROPY_INTERVAL_MS")]
    pub antientropy_interval_ms: Option<u64>,
    /// Every this many ms a tombstone collection round starts; it drops
    /// the hidden state deletes leave behind only once every region holds
    /// the deletes durably (causal stability). Default 10000; 0: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_TOMBSTONE_INTERVAL_MS")]
    pub tombstone_interval_ms: Option<u64>,
    /// A peer clock further ahead than this is reported. Default 500.
    #[arg(long, env = "MERIDIAN_MAX_CLOCK_OFFSET_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clock_offset_ms: Option<u64>,
    /// Address of a second RESP listener that speaks TLS (needs --tls-cert
    /// and --tls-key).
    #[arg(long, env = "MERIDIAN_TLS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain this region presents, to TLS clients and to
    /// peers. With --tls-replication it must name the region id as a DNS
    /// subject alternative name.
    #[arg(long, env = "MERIDIAN_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MERIDIAN_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: verifies client certificates and, with
    /// --tls-replication, is the cluster CA every peer certificate must
    /// come from.
    #[arg(long, env = "MERIDIAN_TLS_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates on --tls-listen, as Redis: yes (the default when
    /// --tls-ca is given) requires one signed by --tls-ca, optional
    /// verifies one if sent, no does not ask.
    #[arg(long, env = "MERIDIAN_TLS_AUTH_CLIENTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_auth_clients: Option<String>,
    /// yes: every replication link, inbound and outbound, is mutual TLS
    /// with --tls-cert/--tls-key and --tls-ca as the cluster CA; a peer
    /// dialed as ID must present a certificate naming ID. Default no.
    #[arg(long, env = "MERIDIAN_TLS_REPLICATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_replication: Option<String>,
    /// Ops logged after which a snapshot compacts the log. Default 1000000.
    #[arg(long, env = "MERIDIAN_SNAPSHOT_AFTER_OPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_after_ops: Option<u64>,
    /// Size at which a log segment is sealed; compaction drops whole
    /// segments. Default 67108864 (64 MiB).
    #[arg(long, env = "MERIDIAN_LOG_SEGMENT_MAX_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_segment_max_bytes: Option<u64>,
    /// Conflict-journal entries kept (oldest dropped first). Default 100000.
    #[arg(long, env = "MERIDIAN_CONFLICT_RETENTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_retention: Option<u64>,
    /// Log filter: a level (error, warn, info, debug, trace) or per-module
    /// directives such as `warn,meridian_repl=debug`. Default info. Changes
    /// at run time through SIGHUP or the admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Bearer token the HTTP admin API (`/v1/...`) requires. Without one,
    /// `/v1` reads are open and changes are accepted only from loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bearer token of the REST data API (`POST /`, `/pipeline`,
    /// `/multi-exec` on the HTTP port) with full access. With neither data
    /// API token set, the data API is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_DATA_API_TOKEN", hide_env_values = true)]
    pub data_api_token: Option<String>,
    /// Bearer token of the REST data API that runs read commands only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[arg(long, env = "MERIDIAN_DATA_API_READONLY_TOKEN", hide_env_values = true)]
    pub data_api_readonly_token: Option<String>,
    /// Log format: text (default) or json.
    #[arg(long, env = "MERIDIAN_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Test only: shift this region's wall clock (the HLC's physical part,
    /// heartbeats, leases, expiry) by this many ms, ahead or behind. Used by
    /// `meridian chaos` to run regions with skewed clocks; hidden from --help.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    #[serde(skip)]
    pub clock_offset_ms: Option<i64>,
}

/// Settings after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub region: RegionId,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub requirepass: Option<String>,
    pub aclfile: Option<PathBuf>,
    pub protected_mode: bool,
    /// `--notify-keyspace-events` as flags (`crate::notify`).
    pub notify_keyspace_events: u32,
    pub max_clock_offset_ms: u64,
    pub snapshot_after_ops: u64,
    pub log_json: bool,
    pub log_level: String,
    pub admin_token: Option<String>,
    /// The REST data API's bearer tokens: full access, read commands only.
    pub data_api_token: Option<String>,
    pub data_api_readonly_token: Option<String>,
    pub repl: SocketAddr,
    pub cluster: String,
    pub cluster_secret: Vec<u8>,
    pub peers: Vec<(RegionId, String)>,
    pub conflict_retention: u64,
    pub policies: meridian_cluster::Policies,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub witness: bool,
    /// Log records kept for peers that fall behind; older ones may be
    /// compacted and such a peer repairs by anti-entropy.
    pub repl_backlog_ops: u64,
    /// Periodic full comparison with each peer; 0: off.
    pub antientropy_interval_ms: u64,
    /// Tombstone collection rounds; 0: off.
    pub tombstone_interval_ms: u64,
    pub log_segment_max_bytes: Option<u64>,
    /// The flags and environment as given, before the file was read: a
    /// reload reads the file again on top of these.
    pub source: ServeArgs,
    /// Flags, environment and file merged, for `--print-config`.
    merged: ServeArgs,
    pub tls: TlsSettings,
    /// Test-only shift of the wall clock (`--clock-offset-ms`), 0 normally.
    pub clock_offset_ms: i64,
}

/// TLS as configured; files are only named here and are read at startup
/// ([`TlsSettings::client_acceptor`], [`TlsSettings::peer_tls`]).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The TLS RESP listener, if any.
    pub listen: Option<SocketAddr>,
    /// Certificate, key and CA; set whenever TLS is used at all.
    pub files: Option<TlsFiles>,
    pub auth_clients: ClientAuth,
    /// Mutual TLS on every replication link.
    pub replication: bool,
}

fn addr(value: Option<&str>, default: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    let text = value.unwrap_or(default);
    text.parse()
        .with_context(|| format!("--{flag} {text:?} is not an IP:PORT address"))
}

impl ServeArgs {
    /// Fills unset fields from the file named by `--config`.
    pub fn merge_file(mut self) -> anyhow::Result<ServeArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = load_file(&path)?;
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            region,
            listen,
            http,
            repl,
            data_dir,
            fsync,
            requirepass,
            aclfile,
            protected_mode,
            notify_keyspace_events,
            lease_ms,
            repl_backlog_ops,
            antientropy_interval_ms,
            tombstone_interval_ms,
            max_clock_offset_ms,
            tls_listen,
            tls_cert,
            tls_key,
            tls_ca,
            tls_auth_clients,
            tls_replication,
            snapshot_after_ops,
            log_segment_max_bytes,
            log_format,
            log_level,
            admin_token,
            data_api_token,
            data_api_readonly_token,
            cluster,
            cluster_secret,
            conflict_retention,
            heartbeat_ms
        );
        if self.peer.is_empty() {
            self.peer = file.peer;
        }
        if self.policy.is_empty() {
            self.policy = file.policy;
        }
        self.witness |= file.witness;
        Ok(self)
    }
}

impl Config {
    /// The settings in force as TOML that `--config` reads back: every
    /// setting with its default filled in, secrets replaced by a marker.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut a = self.merged.clone();
        let hide = |v: &mut Option<String>| {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                *v = Some(SECRET_SHOWN.into());
            }
        };
        a.region = Some(self.region.to_string());
        a.listen = Some(self.listen.to_string());
        a.http = Some(self.http.to_string());
        a.repl = Some(self.repl.to_string());
        a.cluster = Some(self.cluster.clone());
        a.data_dir = Some(self.data_dir.clone());
        a.fsync = Some(self.fsync.as_str().into());
        a.protected_mode = Some(if self.protected_mode { "yes" } else { "no" }.into());
        a.notify_keyspace_events = Some(crate::notify::render(self.notify_keyspace_events));
        a.heartbeat_ms = Some(self.heartbeat_ms);
        a.lease_ms = Some(self.lease_ms);
        a.repl_backlog_ops = Some(self.repl_backlog_ops);
        a.antientropy_interval_ms = Some(self.antientropy_interval_ms);
        a.tombstone_interval_ms = Some(self.tombstone_interval_ms);
        a.max_clock_offset_ms = Some(self.max_clock_offset_ms);
        a.snapshot_after_ops = Some(self.snapshot_after_ops);
        a.conflict_retention = Some(self.conflict_retention);
        a.log_format = Some(if self.log_json { "json" } else { "text" }.into());
        a.log_level = Some(self.log_level.clone());
        if a.policy.is_empty() {
            a.policy = vec!["*=active-active".into()];
        }
        hide(&mut a.cluster_secret);
        hide(&mut a.requirepass);
        hide(&mut a.admin_token);
        hide(&mut a.data_api_token);
        hide(&mut a.data_api_readonly_token);
        let body = toml::to_string(&a).context("rendering the settings as TOML")?;
        Ok(format!(
            "# meridian serve settings in force (flags > MERIDIAN_* > --config file > defaults).\n\
             # Secrets are shown as {SECRET_SHOWN:?}.\n{body}"
        ))
    }
}

/// A guessable admin token is refused at startup.
pub const ADMIN_TOKEN_MIN_LEN: usize = 16;

/// A bearer token flag: empty is unset, shorter than
/// [`ADMIN_TOKEN_MIN_LEN`] is refused.
fn token_arg(value: Option<String>, flag: &str) -> anyhow::Result<Option<String>> {
    let value = value.filter(|t| !t.is_empty());
    if value
        .as_ref()
        .is_some_and(|t| t.len() < ADMIN_TOKEN_MIN_LEN)
    {
        bail!("--{flag} must be at least {ADMIN_TOKEN_MIN_LEN} characters");
    }
    Ok(value)
}

/// What `--print-config` shows instead of a secret.
const SECRET_SHOWN: &str = "<hidden>";

fn load_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let source = args.clone();
        let args = args.merge_file()?;
        let merged = args.clone();
        let region_name = args.region.as_deref().unwrap_or("local");
        let region = RegionId::new(region_name).map_err(|e| anyhow::anyhow!("--region: {e}"))?;
        let mut peers: Vec<(RegionId, String)> = Vec::new();
        for p in &args.peer {
            let Some((id, at)) = p.split_once('=') else {
                bail!("--peer {p:?}: use ID=HOST:PORT");
            };
            let id = RegionId::new(id).map_err(|e| anyhow::anyhow!("--peer {p:?}: {e}"))?;
            if id == region {
                bail!("--peer {p:?} names this region itself");
            }
            if peers.iter().any(|(r, _)| *r == id) {
                bail!("--peer {p:?}: region {id} is listed twice");
            }
            if at
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                bail!("--peer {p:?}: use ID=HOST:PORT");
            }
            peers.push((id, at.to_string()));
        }
        let policies = meridian_cluster::Policies::parse(&args.policy)?;
        let lease_ms = args.lease_ms.unwrap_or(3_000);
        let heartbeat_ms = args.heartbeat_ms.unwrap_or(250);
        if !(10..=60_000).contains(&heartbeat_ms) || lease_ms < 2 * heartbeat_ms {
            bail!("--heartbeat-ms must lie in 10..=60000 and --lease-ms be at least twice it");
        }
        if let Err(why) = policies.single_primary() {
            bail!("--policy: {why}");
        }
        if args.witness && policies.rules().next().is_some() {
            bail!("--policy has no meaning on a witness: it stores no keys");
        }
        let tls = resolve_tls(&args, region, &peers)?;
        let cluster_secret = args.cluster_secret.unwrap_or_default();
        if !peers.is_empty() && cluster_secret.is_empty() {
            bail!("--cluster-secret (or MERIDIAN_CLUSTER_SECRET) is required when --peer is given");
        }
        let fsync = match args.fsync.as_deref() {
            None => FsyncPolicy::Everysec,
            Some(s) => s
                .parse()
                .map_err(|_| anyhow::anyhow!("--fsync {s:?}: use always, everysec or no"))?,
        };
        let protected_mode = match args.protected_mode.as_deref() {
            None | Some("yes") => true,
            Some("no") => false,
            Some(other) => bail!("--protected-mode {other:?}: use yes or no"),
        };
        let notify_keyspace_events = crate::notify::parse(
            args.notify_keyspace_events
                .as_deref()
                .unwrap_or("")
                .as_bytes(),
        )
        .map_err(|why| {
            anyhow::anyhow!(
                "--notify-keyspace-events {:?}: {why}",
                args.notify_keyspace_events.as_deref().unwrap_or("")
            )
        })?;
        let log_json = match args.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("--log-format {other:?}: use text or json"),
        };
        let log_level = args.log_level.unwrap_or_else(|| "info".into());
        crate::logging::parse(&log_level).map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
        let admin_token = args.admin_token.filter(|t| !t.is_empty());
        if admin_token
            .as_ref()
            .is_some_and(|t| t.len() < ADMIN_TOKEN_MIN_LEN)
        {
            bail!("--admin-token must be at least {ADMIN_TOKEN_MIN_LEN} characters");
        }
        let data_api_token = token_arg(args.data_api_token, "data-api-token")?;
        let data_api_readonly_token =
            token_arg(args.data_api_readonly_token, "data-api-readonly-token")?;
        if data_api_token.is_some() && data_api_token == data_api_readonly_token {
            bail!("--data-api-token and --data-api-readonly-token must differ");
        }
        Ok(Config {
            region,
            listen: addr(args.listen.as_deref(), "127.0.0.1:7379", "listen")?,
            http: addr(args.http.as_deref(), "127.0.0.1:7380", "http")?,
            data_dir: args
                .data_dir
                .unwrap_or_else(|| PathBuf::from("meridian-data")),
            fsync,
            requirepass: args.requirepass.filter(|p| !p.is_empty()),
            aclfile: args.aclfile,
            protected_mode,
            notify_keyspace_events,
            max_clock_offset_ms: args.max_clock_offset_ms.unwrap_or(500),
            snapshot_after_ops: args.snapshot_after_ops.unwrap_or(1_000_000),
            log_json,
            log_level,
            admin_token,
            data_api_token,
            data_api_readonly_token,
            repl: addr(args.repl.as_deref(), "127.0.0.1:7381", "repl")?,
            cluster: args.cluster.unwrap_or_else(|| "meridian".to_string()),
            cluster_secret: cluster_secret.into_bytes(),
            peers,
            conflict_retention: args.conflict_retention.unwrap_or(100_000).max(1),
            policies,
            lease_ms,
            heartbeat_ms,
            witness: args.witness,
            repl_backlog_ops: args.repl_backlog_ops.unwrap_or(1_000_000).max(1),
            antientropy_interval_ms: args.antientropy_interval_ms.unwrap_or(600_000),
            tombstone_interval_ms: args.tombstone_interval_ms.unwrap_or(10_000),
            log_segment_max_bytes: args.log_segment_max_bytes,
            source,
            merged,
            tls,
            clock_offset_ms: args.clock_offset_ms.unwrap_or(0),
        })
    }
}

fn yes_no(flag: &str, value: Option<&str>) -> anyhow::Result<bool> {
    match value {
        None | Some("no") => Ok(false),
        Some("yes") => Ok(true),
        Some(other) => bail!("--{flag} {other:?}: use yes or no"),
    }
}

/// Checks which TLS flags go together. Files are read later, at startup.
fn resolve_tls(
    args: &ServeArgs,
    region: RegionId,
    peers: &[(RegionId, String)],
) -> anyhow::Result<TlsSettings> {
    let replication = yes_no("tls-replication", args.tls_replication.as_deref())?;
    let listen = args
        .tls_listen
        .as_deref()
        .map(|a| addr(Some(a), "", "tls-listen"))
        .transpose()?;
    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: args.tls_ca.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => bail!("--tls-cert needs --tls-key"),
        (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
    };
    if listen.is_none() && !replication {
        if let Some(flag) = [
            ("--tls-cert", args.tls_cert.is_some()),
            ("--tls-key", args.tls_key.is_some()),
            ("--tls-ca", args.tls_ca.is_some()),
            ("--tls-auth-clients", args.tls_auth_clients.is_some()),
        ]
        .iter()
        .find_map(|(flag, set)| set.then_some(flag))
        {
            // Accepting TLS files and then serving in clear text would be
            // worse than not starting.
            bail!("{flag} is given but neither --tls-listen nor --tls-replication yes uses it");
        }
    }
    if files.is_none() {
        if listen.is_some() {
            bail!("--tls-listen needs --tls-cert and --tls-key");
        }
        if replication {
            bail!("--tls-replication yes needs --tls-cert, --tls-key and --tls-ca");
        }
    }
    let has_ca = args.tls_ca.is_some();
    let auth_clients = match args.tls_auth_clients.as_deref() {
        None if has_ca => ClientAuth::Required,
        None | Some("no") => ClientAuth::No,
        Some("yes") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some(other) => bail!("--tls-auth-clients {other:?}: use yes, no or optional"),
    };
    if auth_clients != ClientAuth::No && !has_ca {
        bail!("--tls-auth-clients yes or optional needs --tls-ca to verify client certificates");
    }
    if args.tls_auth_clients.is_some() && listen.is_none() {
        bail!("--tls-auth-clients applies to --tls-listen, which is not given");
    }
    if replication {
        if !has_ca {
            bail!("--tls-replication yes needs --tls-ca (the cluster CA)");
        }
        for id in std::iter::once(&region).chain(peers.iter().map(|(r, _)| r)) {
            meridian_repl::tls::server_name(id.as_str()).map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    Ok(TlsSettings {
        listen,
        files,
        auth_clients,
        replication,
    })
}

impl TlsSettings {
    /// Reads the certificate and key for the TLS RESP listener.
    pub fn client_acceptor(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        let (Some(_), Some(files)) = (self.listen, &self.files) else {
            return Ok(None);
        };
        let config = meridian_repl::tls::server_config(files, self.auth_clients)?;
        Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
            config,
        ))))
    }

    /// Reads the certificate, key and cluster CA for peer links.
    pub fn peer_tls(&self, region: RegionId) -> anyhow::Result<Option<PeerTls>> {
        match (&self.files, self.replication) {
            (Some(files), true) => Ok(Some(PeerTls::load(files, region.as_str())?)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting is read from the file unless a flag (or the
    /// environment, which clap folds into the same fields) set it.
    #[test]
    fn file_fills_what_flags_leave_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            r#"
region = "eu-west"
listen = "127.0.0.1:7001"
cluster = "prod"
cluster-secret = "from-file"
peer = ["us-east=10.0.0.2:7381"]
conflict-retention = 500
fsync = "always"
"#,
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:9999".into()),
            ..ServeArgs::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.region.as_str(), "eu-west");
        assert_eq!(c.listen.port(), 9999, "the flag wins over the file");
        assert_eq!(c.cluster, "prod");
        assert_eq!(c.cluster_secret, b"from-file");
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.conflict_retention, 500);
        assert_eq!(c.fsync, FsyncPolicy::Always);
    }

    /// `--print-config` shows every setting, hides secrets, and what it
    /// prints is a config file that resolves to the same settings.
    #[test]
    fn printed_config_reads_back_to_the_same_settings() {
        let args = ServeArgs {
            region: Some("eu-west".into()),
            cluster_secret: Some("s3cret".into()),
            requirepass: Some("pw".into()),
            peer: vec!["us-east=10.0.0.2:7381".into()],
            policy: vec!["orders:*=majority".into()],
            lease_ms: Some(1500),
            ..ServeArgs::default()
        };
        let config = Config::resolve(args.clone()).unwrap();
        let text = config.to_toml().unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("\"pw\""),
            "{text}"
        );
        for line in [
            "region = \"eu-west\"",
            "listen = \"127.0.0.1:7379\"",
            "fsync = \"everysec\"",
            "lease-ms = 1500",
            "heartbeat-ms = 250",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("printed.toml");
        std::fs::write(&path, &text).unwrap();
        let back = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(back.region, config.region);
        assert_eq!(back.lease_ms, 1500);
        assert_eq!(back.peers, config.peers);
        assert_eq!(back.listen, config.listen);
        assert_eq!(
            back.policies.rules().count(),
            config.policies.rules().count()
        );
    }

    #[test]
    fn primary_rules_naming_different_regions_are_refused() {
        let args = ServeArgs {
            policy: vec!["a:*=primary:ra".into(), "b:*=primary:rb".into()],
            ..ServeArgs::default()
        };
        let err = Config::resolve(args).unwrap_err().to_string();
        assert!(err.contains("ra and rb"), "{err}");
    }

    #[test]
    fn peers_without_a_secret_are_refused() {
        let args = ServeArgs {
            peer: vec!["b=127.0.0.1:1".into()],
            ..ServeArgs::default()
        };
        let err = Config::resolve(args).unwrap_err().to_string();
        assert!(err.contains("--cluster-secret"), "{err}");
    }

    #[test]
    fn unknown_file_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "listen-port = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(Config::resolve(args).is_err());
    }

    fn tls_args(pairs: &[(&str, &str)]) -> ServeArgs {
        let mut args = ServeArgs::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "listen" => args.tls_listen = v,
                "cert" => args.tls_cert = v.map(PathBuf::from),
                "key" => args.tls_key = v.map(PathBuf::from),
                "ca" => args.tls_ca = v.map(PathBuf::from),
                "auth" => args.tls_auth_clients = v,
                "replication" => args.tls_replication = v,
                "region" => args.region = v,
                other => panic!("no TLS setting {other}"),
            }
        }
        args
    }

    fn tls_of(pairs: &[(&str, &str)]) -> anyhow::Result<TlsSettings> {
        Config::resolve(tls_args(pairs)).map(|c| c.tls)
    }

    /// As Redis: client certificates are required by default once a CA is
    /// given, and not asked for without one.
    #[test]
    fn tls_auth_clients_defaults_follow_the_ca() {
        let base = [
            ("listen", "127.0.0.1:0"),
            ("cert", "c.pem"),
            ("key", "k.pem"),
        ];
        let t = tls_of(&base).unwrap();
        assert_eq!(t.listen.unwrap().ip().to_string(), "127.0.0.1");
        assert_eq!(t.auth_clients, ClientAuth::No);
        assert!(!t.replication);
        let with_ca = [&base[..], &[("ca", "ca.pem")]].concat();
        assert_eq!(tls_of(&with_ca).unwrap().auth_clients, ClientAuth::Required);
        for (value, want) in [
            ("no", ClientAuth::No),
            ("optional", ClientAuth::Optional),
            ("yes", ClientAuth::Required),
        ] {
            let args = [&with_ca[..], &[("auth", value)]].concat();
            assert_eq!(tls_of(&args).unwrap().auth_clients, want, "{value}");
        }
        assert!(Config::resolve(ServeArgs::default())
            .unwrap()
            .tls
            .files
            .is_none());
    }

    /// Every combination that would leave a TLS setting unused, or TLS
    /// half configured, stops startup with the flag named.
    #[test]
    fn tls_settings_that_would_be_ignored_or_incomplete_are_refused() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("cert", "c.pem"), ("key", "k.pem")],
                "--tls-cert is given but",
            ),
            (&[("ca", "ca.pem")], "--tls-ca is given but"),
            (
                &[("listen", "127.0.0.1:0")],
                "--tls-listen needs --tls-cert",
            ),
            (
                &[("listen", "127.0.0.1:0"), ("cert", "c.pem")],
                "--tls-cert needs --tls-key",
            ),
            (
                &[("listen", "nowhere"), ("cert", "c"), ("key", "k")],
                "--tls-listen \"nowhere\"",
            ),
            (
                &[
                    ("listen", "127.0.0.1:0"),
                    ("cert", "c"),
                    ("key", "k"),
                    ("auth", "yes"),
                ],
                "needs --tls-ca",
            ),
            (
                &[
                    ("listen", "127.0.0.1:0"),
                    ("cert", "c"),
                    ("key", "k"),
                    ("ca", "a"),
                    ("auth", "maybe"),
                ],
                "use yes, no or optional",
            ),
            (
                &[
                    ("replication", "yes"),
                    ("cert", "c"),
                    ("key", "k"),
                    ("ca", "a"),
                    ("auth", "yes"),
                ],
                "--tls-auth-clients applies to --tls-listen",
            ),
            (
                &[("replication", "yes"), ("cert", "c"), ("key", "k")],
                "needs --tls-ca",
            ),
            (
                &[("replication", "yes")],
                "--tls-replication yes needs --tls-cert",
            ),
            (
                &[("replication", "sure")],
                "--tls-replication \"sure\": use yes or no",
            ),
            (
                &[
                    ("replication", "yes"),
                    ("cert", "c"),
                    ("key", "k"),
                    ("ca", "a"),
                    ("region", "123"),
                ],
                "not a valid DNS name",
            ),
        ];
        for (pairs, want) in cases {
            let err = format!("{:#}", tls_of(pairs).unwrap_err());
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn tls_replication_uses_the_shared_files() {
        let t = tls_of(&[
            ("replication", "yes"),
            ("cert", "c"),
            ("key", "k"),
            ("ca", "a"),
        ])
        .unwrap();
        assert!(t.replication && t.listen.is_none());
        let files = t.files.unwrap();
        assert_eq!(files.ca.as_deref(), Some(Path::new("a")));
    }

    /// TLS settings come from the file like any other, and from
    /// `MERIDIAN_TLS_*` through clap.
    #[test]
    fn tls_settings_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.toml");
        std::fs::write(
            &path,
            r#"
region = "eu-west"
tls-listen = "127.0.0.1:7389"
tls-cert = "/etc/meridian/tls.crt"
tls-key = "/etc/meridian/tls.key"
tls-ca = "/etc/meridian/ca.crt"
tls-auth-clients = "optional"
tls-replication = "yes"
"#,
        )
        .unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.tls.listen.unwrap().port(), 7389);
        assert_eq!(c.tls.auth_clients, ClientAuth::Optional);
        assert!(c.tls.replication);
        assert_eq!(
            c.tls.files.unwrap().cert,
            PathBuf::from("/etc/meridian/tls.crt")
        );

        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // Only this test reads these variables.
        std::env::set_var("MERIDIAN_TLS_REPLICATION", "yes");
        std::env::set_var("MERIDIAN_TLS_AUTH_CLIENTS", "no");
        let cli = <Cli as clap::Parser>::try_parse_from(["meridian"]).unwrap();
        std::env::remove_var("MERIDIAN_TLS_REPLICATION");
        std::env::remove_var("MERIDIAN_TLS_AUTH_CLIENTS");
        assert_eq!(cli.serve.tls_replication.as_deref(), Some("yes"));
        assert_eq!(cli.serve.tls_auth_clients.as_deref(), Some("no"));
    }
}
