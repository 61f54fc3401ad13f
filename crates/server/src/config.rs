//! `meridian serve` settings: flags, `MERIDIAN_*` environment variables and
//! a TOML file with the same names. Flags override the environment, which
//! overrides the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use meridian_crdt::RegionId;
use meridian_store::FsyncPolicy;
use serde::Deserialize;

/// Every setting of `meridian serve`. All are optional here so that the file
/// can fill what flags and environment leave unset; [`Config::resolve`]
/// applies the defaults.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with the same names as the flags (e.g. `listen = "0.0.0.0:7379"`).
    #[arg(long, env = "MERIDIAN_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This region's id: 1 to 32 characters from [a-z0-9-].
    #[arg(long, env = "MERIDIAN_REGION")]
    pub region: Option<String>,
    /// Address for Redis clients (RESP2/RESP3). Default 127.0.0.1:7379.
    #[arg(long, env = "MERIDIAN_LISTEN")]
    pub listen: Option<String>,
    /// Address for the HTTP admin API, health checks and metrics. Default 127.0.0.1:7380.
    #[arg(long, env = "MERIDIAN_HTTP")]
    pub http: Option<String>,
    /// Address for replication between regions. Default 127.0.0.1:7381.
    #[arg(long, env = "MERIDIAN_REPL")]
    pub repl: Option<String>,
    /// Name of the cluster; peers from another cluster are refused. Default "meridian".
    #[arg(long, env = "MERIDIAN_CLUSTER")]
    pub cluster: Option<String>,
    /// Secret every region of the cluster shares; peers prove it at handshake.
    #[arg(long, env = "MERIDIAN_CLUSTER_SECRET", hide_env_values = true)]
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
    pub data_dir: Option<PathBuf>,
    /// When the op log is fsynced: always, everysec (default) or no.
    #[arg(long, env = "MERIDIAN_FSYNC")]
    pub fsync: Option<String>,
    /// Password clients must send with AUTH.
    #[arg(long, env = "MERIDIAN_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// ACL users file, one `user NAME RULES...` line each (Redis syntax,
    /// passwords as `#<sha256hex>`). Users are per region, not replicated.
    #[arg(long, env = "MERIDIAN_ACLFILE")]
    pub aclfile: Option<PathBuf>,
    /// yes (default): with no password and no ACL users, accept only
    /// loopback clients. no: accept everyone.
    #[arg(long, env = "MERIDIAN_PROTECTED_MODE")]
    pub protected_mode: Option<String>,
    /// Keyspace policy PATTERN=POLICY (active-active, majority, primary:REGION), repeatable.
    #[arg(long = "policy", env = "MERIDIAN_POLICY", value_delimiter = ',')]
    #[serde(default)]
    pub policy: Vec<String>,
    /// Heartbeat interval on idle replication links, in ms. Default 250.
    #[arg(long, env = "MERIDIAN_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Quorum lease length in milliseconds. Default 3000.
    #[arg(long, env = "MERIDIAN_LEASE_MS")]
    pub lease_ms: Option<u64>,
    /// How many ops the log retains for peers that fall behind; a peer
    /// further behind repairs by anti-entropy. Default 1000000.
    #[arg(long, env = "MERIDIAN_REPL_BACKLOG_OPS")]
    pub repl_backlog_ops: Option<u64>,
    /// A peer clock further ahead than this is reported. Default 500.
    #[arg(long, env = "MERIDIAN_MAX_CLOCK_OFFSET_MS")]
    pub max_clock_offset_ms: Option<u64>,
    /// Address for TLS clients.
    #[arg(long, env = "MERIDIAN_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for TLS.
    #[arg(long, env = "MERIDIAN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "MERIDIAN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for verifying peers and clients.
    #[arg(long, env = "MERIDIAN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificates: yes, no or optional.
    #[arg(long, env = "MERIDIAN_TLS_AUTH_CLIENTS")]
    pub tls_auth_clients: Option<String>,
    /// Ops logged after which a snapshot compacts the log. Default 1000000.
    #[arg(long, env = "MERIDIAN_SNAPSHOT_AFTER_OPS")]
    pub snapshot_after_ops: Option<u64>,
    /// Size at which a log segment is sealed; compaction drops whole
    /// segments. Default 67108864 (64 MiB).
    #[arg(long, env = "MERIDIAN_LOG_SEGMENT_MAX_BYTES")]
    pub log_segment_max_bytes: Option<u64>,
    /// Conflict-journal entries kept (oldest dropped first). Default 100000.
    #[arg(long, env = "MERIDIAN_CONFLICT_RETENTION")]
    pub conflict_retention: Option<u64>,
    /// Log format: text (default) or json.
    #[arg(long, env = "MERIDIAN_LOG_FORMAT")]
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
    pub max_clock_offset_ms: u64,
    pub snapshot_after_ops: u64,
    pub log_json: bool,
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
    pub log_segment_max_bytes: Option<u64>,
    /// Test-only shift of the wall clock (`--clock-offset-ms`), 0 normally.
    pub clock_offset_ms: i64,
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
            lease_ms,
            repl_backlog_ops,
            max_clock_offset_ms,
            tls_listen,
            tls_cert,
            tls_key,
            tls_ca,
            tls_auth_clients,
            snapshot_after_ops,
            log_segment_max_bytes,
            log_format,
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

fn load_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

impl Config {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
        let args = args.merge_file()?;
        // Settings that belong to multi-region operation are refused rather
        // than accepted and ignored: a region that silently does not
        // replicate would be worse than one that does not start.
        let unsupported = [
            ("--tls-listen", args.tls_listen.is_some()),
            ("--tls-cert", args.tls_cert.is_some()),
            ("--tls-key", args.tls_key.is_some()),
            ("--tls-ca", args.tls_ca.is_some()),
            ("--tls-auth-clients", args.tls_auth_clients.is_some()),
        ];
        if let Some((flag, _)) = unsupported.iter().find(|(_, set)| *set) {
            bail!("{flag} is not available in this version of meridian yet");
        }
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
        if args.witness && policies.rules().next().is_some() {
            bail!("--policy has no meaning on a witness: it stores no keys");
        }
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
        let log_json = match args.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("--log-format {other:?}: use text or json"),
        };
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
            max_clock_offset_ms: args.max_clock_offset_ms.unwrap_or(500),
            snapshot_after_ops: args.snapshot_after_ops.unwrap_or(1_000_000),
            log_json,
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
            log_segment_max_bytes: args.log_segment_max_bytes,
            clock_offset_ms: args.clock_offset_ms.unwrap_or(0),
        })
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
}
