//! Redis 7.0's configuration parameters that Meridian has no mechanism for:
//! their names, aliases, defaults and value syntax. `CONFIG SET` checks a
//! value as Redis does and keeps it, `CONFIG GET` reports it back, and it
//! changes nothing else (each is listed in docs/compatibility.md), so
//! clients and tests that tune encodings, defragmentation or replica
//! settings run unchanged. Parameters Meridian does have (the port, the
//! fsync policy, the password...) are in `config.rs` with their real
//! values. TLS parameters are left out: Meridian's TLS is set by its own
//! flags at start, and pretending to accept a certificate change would hide
//! that it did not happen.

/// What values a parameter takes.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `yes` or `no`.
    Bool,
    /// A whole number within bounds.
    Int { min: i64, max: i64 },
    /// Bytes, with Redis's units (`k`, `kb`, `m`, `mb`, `g`, `gb`);
    /// reported back as a plain number of bytes.
    Memory,
    /// One of the words.
    Enum(&'static [&'static str]),
    /// Any text (lists of numbers, class limits, file names).
    Text,
}

/// How `CONFIG SET` treats a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Checked, kept and reported back; no effect in Meridian.
    Kept,
    /// Fixed when the server starts, in Redis as here: `CONFIG SET`
    /// refuses it.
    Immutable,
}

#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// The older name Redis still accepts (`hash-max-ziplist-entries`).
    pub alias: Option<&'static str>,
    pub default: &'static str,
    pub kind: Kind,
    pub mode: Mode,
}

const INT_MAX: i64 = i32::MAX as i64;
const LONG_MAX: i64 = i64::MAX;

const fn kept(name: &'static str, default: &'static str, kind: Kind) -> Param {
    Param {
        name,
        alias: None,
        default,
        kind,
        mode: Mode::Kept,
    }
}

const fn aliased(
    name: &'static str,
    alias: &'static str,
    default: &'static str,
    kind: Kind,
) -> Param {
    Param {
        name,
        alias: Some(alias),
        default,
        kind,
        mode: Mode::Kept,
    }
}

const fn fixed(name: &'static str, default: &'static str, kind: Kind) -> Param {
    Param {
        name,
        alias: None,
        default,
        kind,
        mode: Mode::Immutable,
    }
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const BOOL: Kind = Kind::Bool;
const MEMORY: Kind = Kind::Memory;
const TEXT: Kind = Kind::Text;

/// Every Redis 7.0 parameter Meridian keeps without acting on it.
pub const PARAMS: &[Param] = &[
    fixed("acllog-max-len", "128", int(0, LONG_MAX)),
    kept("activedefrag", "no", BOOL),
    kept("active-defrag-cycle-max", "25", int(1, 99)),
    kept("active-defrag-cycle-min", "1", int(1, 99)),
    kept("active-defrag-ignore-bytes", "104857600", MEMORY),
    kept("active-defrag-max-scan-fields", "1000", int(1, LONG_MAX)),
    kept("active-defrag-threshold-lower", "10", int(0, 1000)),
    kept("active-defrag-threshold-upper", "100", int(0, 1000)),
    kept("active-expire-effort", "1", int(1, 10)),
    kept("activerehashing", "yes", BOOL),
    kept(
        "acl-pubsub-default",
        "resetchannels",
        Kind::Enum(&["allchannels", "resetchannels"]),
    ),
    fixed("always-show-logo", "no", BOOL),
    kept("aof-disable-auto-gc", "no", BOOL),
    kept("aof-load-truncated", "yes", BOOL),
    kept("aof-rewrite-incremental-fsync", "yes", BOOL),
    kept("aof-timestamp-enabled", "no", BOOL),
    kept("aof-use-rdb-preamble", "yes", BOOL),
    fixed("aof_rewrite_cpulist", "", TEXT),
    fixed("appenddirname", "appendonlydir", TEXT),
    fixed("appendfilename", "appendonly.aof", TEXT),
    kept("auto-aof-rewrite-min-size", "67108864", MEMORY),
    kept("auto-aof-rewrite-percentage", "100", int(0, INT_MAX)),
    fixed("bgsave_cpulist", "", TEXT),
    fixed("bio_cpulist", "", TEXT),
    kept("bind-source-addr", "", TEXT),
    aliased(
        "busy-reply-threshold",
        "lua-time-limit",
        "5000",
        int(0, LONG_MAX),
    ),
    kept(
        "client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
        TEXT,
    ),
    kept("client-query-buffer-limit", "1073741824", MEMORY),
    kept("cluster-allow-pubsubshard-when-down", "yes", BOOL),
    kept("cluster-allow-reads-when-down", "no", BOOL),
    kept("cluster-allow-replica-migration", "yes", BOOL),
    kept("cluster-announce-bus-port", "0", int(0, 65535)),
    kept("cluster-announce-hostname", "", TEXT),
    kept("cluster-announce-ip", "", TEXT),
    kept("cluster-announce-port", "0", int(0, 65535)),
    kept("cluster-announce-tls-port", "0", int(0, 65535)),
    fixed("cluster-config-file", "nodes.conf", TEXT),
    fixed("cluster-enabled", "no", BOOL),
    kept("cluster-link-sendbuf-limit", "0", MEMORY),
    kept("cluster-migration-barrier", "1", int(0, INT_MAX)),
    kept("cluster-node-timeout", "15000", int(0, LONG_MAX)),
    fixed("cluster-port", "0", int(0, 65535)),
    kept(
        "cluster-preferred-endpoint-type",
        "ip",
        Kind::Enum(&["ip", "hostname", "unknown-endpoint"]),
    ),
    aliased(
        "cluster-replica-no-failover",
        "cluster-slave-no-failover",
        "no",
        BOOL,
    ),
    aliased(
        "cluster-replica-validity-factor",
        "cluster-slave-validity-factor",
        "10",
        int(0, INT_MAX),
    ),
    kept("cluster-require-full-coverage", "yes", BOOL),
    kept("crash-log-enabled", "yes", BOOL),
    kept("crash-memcheck-enabled", "yes", BOOL),
    fixed("daemonize", "no", BOOL),
    kept("dbfilename", "dump.rdb", TEXT),
    fixed("disable-thp", "yes", BOOL),
    kept("dynamic-hz", "yes", BOOL),
    fixed(
        "enable-debug-command",
        "no",
        Kind::Enum(&["no", "yes", "local"]),
    ),
    fixed(
        "enable-module-command",
        "no",
        Kind::Enum(&["no", "yes", "local"]),
    ),
    fixed(
        "enable-protected-configs",
        "no",
        Kind::Enum(&["no", "yes", "local"]),
    ),
    aliased(
        "hash-max-listpack-entries",
        "hash-max-ziplist-entries",
        "512",
        int(0, LONG_MAX),
    ),
    aliased(
        "hash-max-listpack-value",
        "hash-max-ziplist-value",
        "64",
        int(0, LONG_MAX),
    ),
    // Kept here, and read from here by PFADD, PFMERGE and PFSELFTEST
    // (cmd/hll.rs), which apply it.
    kept("hll-sparse-max-bytes", "3000", MEMORY),
    fixed("ignore-warnings", "", TEXT),
    fixed("io-threads", "1", int(1, 128)),
    fixed("io-threads-do-reads", "no", BOOL),
    kept("jemalloc-bg-thread", "yes", BOOL),
    kept("key-load-delay", "0", int(i32::MIN as i64, INT_MAX)),
    kept("latency-monitor-threshold", "0", int(0, LONG_MAX)),
    kept("latency-tracking", "yes", BOOL),
    kept("latency-tracking-info-percentiles", "50 99 99.9", TEXT),
    kept("lazyfree-lazy-eviction", "no", BOOL),
    kept("lazyfree-lazy-expire", "no", BOOL),
    kept("lazyfree-lazy-server-del", "no", BOOL),
    kept("lazyfree-lazy-user-del", "no", BOOL),
    kept("lazyfree-lazy-user-flush", "no", BOOL),
    kept("lfu-decay-time", "1", int(0, INT_MAX)),
    kept("lfu-log-factor", "10", int(0, INT_MAX)),
    kept("list-compress-depth", "0", int(0, INT_MAX)),
    aliased(
        "list-max-listpack-size",
        "list-max-ziplist-size",
        "-2",
        int(i32::MIN as i64, INT_MAX),
    ),
    fixed("logfile", "", TEXT),
    kept(
        "loglevel",
        "notice",
        Kind::Enum(&["debug", "verbose", "notice", "warning"]),
    ),
    kept("masterauth", "", TEXT),
    kept("masteruser", "", TEXT),
    kept("maxmemory-clients", "0", TEXT),
    kept("maxmemory-eviction-tenacity", "10", int(0, 100)),
    kept("maxmemory-samples", "5", int(1, 64)),
    aliased(
        "min-replicas-max-lag",
        "min-slaves-max-lag",
        "10",
        int(0, INT_MAX),
    ),
    aliased(
        "min-replicas-to-write",
        "min-slaves-to-write",
        "0",
        int(0, INT_MAX),
    ),
    kept("no-appendfsync-on-rewrite", "no", BOOL),
    kept(
        "oom-score-adj",
        "no",
        Kind::Enum(&["no", "yes", "relative", "absolute"]),
    ),
    kept("oom-score-adj-values", "0 200 800", TEXT),
    fixed("pidfile", "", TEXT),
    kept(
        "proc-title-template",
        "{title} {listen-addr} {server-mode}",
        TEXT,
    ),
    kept(
        "propagation-error-behavior",
        "ignore",
        Kind::Enum(&["ignore", "panic", "panic-on-replicas"]),
    ),
    kept("rdb-del-sync-files", "no", BOOL),
    kept("rdb-key-save-delay", "0", int(i32::MIN as i64, INT_MAX)),
    kept("rdb-save-incremental-fsync", "yes", BOOL),
    kept("rdbchecksum", "yes", BOOL),
    kept("rdbcompression", "yes", BOOL),
    kept("repl-backlog-size", "1048576", MEMORY),
    kept("repl-backlog-ttl", "3600", int(0, INT_MAX)),
    kept("repl-disable-tcp-nodelay", "no", BOOL),
    kept(
        "repl-diskless-load",
        "disabled",
        Kind::Enum(&["disabled", "on-empty-db", "swapdb"]),
    ),
    kept("repl-diskless-sync", "yes", BOOL),
    kept("repl-diskless-sync-delay", "5", int(0, INT_MAX)),
    kept("repl-diskless-sync-max-replicas", "0", int(0, INT_MAX)),
    aliased(
        "repl-ping-replica-period",
        "repl-ping-slave-period",
        "10",
        int(1, INT_MAX),
    ),
    kept("repl-timeout", "60", int(1, INT_MAX)),
    aliased("replica-announce-ip", "slave-announce-ip", "", TEXT),
    aliased(
        "replica-announce-port",
        "slave-announce-port",
        "0",
        int(0, 65535),
    ),
    kept("replica-announced", "yes", BOOL),
    kept("replica-ignore-disk-write-errors", "no", BOOL),
    aliased(
        "replica-ignore-maxmemory",
        "slave-ignore-maxmemory",
        "yes",
        BOOL,
    ),
    aliased("replica-lazy-flush", "slave-lazy-flush", "no", BOOL),
    aliased("replica-priority", "slave-priority", "100", int(0, INT_MAX)),
    aliased("replica-read-only", "slave-read-only", "yes", BOOL),
    aliased(
        "replica-serve-stale-data",
        "slave-serve-stale-data",
        "yes",
        BOOL,
    ),
    kept(
        "sanitize-dump-payload",
        "no",
        Kind::Enum(&["no", "yes", "clients"]),
    ),
    fixed("server_cpulist", "", TEXT),
    fixed("set-proc-title", "yes", BOOL),
    kept("set-max-intset-entries", "512", int(0, LONG_MAX)),
    kept("shutdown-on-sigint", "default", TEXT),
    kept("shutdown-on-sigterm", "default", TEXT),
    kept("shutdown-timeout", "10", int(0, INT_MAX)),
    kept("slowlog-log-slower-than", "10000", int(-1, LONG_MAX)),
    kept("slowlog-max-len", "128", int(0, LONG_MAX)),
    kept("socket-mark-id", "0", int(0, u32::MAX as i64)),
    kept("stop-writes-on-bgsave-error", "yes", BOOL),
    kept("stream-node-max-bytes", "4096", MEMORY),
    kept("stream-node-max-entries", "100", int(0, LONG_MAX)),
    fixed(
        "supervised",
        "no",
        Kind::Enum(&["upstart", "systemd", "auto", "no"]),
    ),
    fixed("syslog-enabled", "no", BOOL),
    fixed("syslog-facility", "local0", TEXT),
    fixed("syslog-ident", "redis", TEXT),
    kept("tcp-keepalive", "300", int(0, INT_MAX)),
    fixed("tcp-backlog", "511", int(0, INT_MAX)),
    // Kept here, and read from here by client tracking, which applies it.
    kept("tracking-table-max-keys", "1000000", int(0, LONG_MAX)),
    fixed("unixsocket", "", TEXT),
    fixed("unixsocketperm", "0", int(0, 0o777)),
    kept("watchdog-period", "0", int(0, INT_MAX)),
    aliased(
        "zset-max-listpack-entries",
        "zset-max-ziplist-entries",
        "128",
        int(0, LONG_MAX),
    ),
    aliased(
        "zset-max-listpack-value",
        "zset-max-ziplist-value",
        "64",
        int(0, LONG_MAX),
    ),
];

/// The parameter `name` names (or names by its alias), ignoring case.
pub fn find(name: &[u8]) -> Option<&'static Param> {
    PARAMS.iter().find(|p| {
        name.eq_ignore_ascii_case(p.name.as_bytes())
            || p.alias
                .is_some_and(|a| name.eq_ignore_ascii_case(a.as_bytes()))
    })
}

/// `value` checked against the parameter's syntax, in the form `CONFIG
/// GET` reports it; the error says why it was refused.
pub fn normalize(param: &Param, value: &[u8]) -> Result<String, String> {
    let text =
        std::str::from_utf8(value).map_err(|_| "argument must be valid UTF-8".to_string())?;
    match param.kind {
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Kind::Int { min, max } => {
            let n: i64 = text
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Kind::Memory => memory_bytes(text)
            .map(|n| n.to_string())
            .ok_or_else(|| "argument must be a memory value".to_string()),
        Kind::Enum(words) => {
            let lower = text.to_ascii_lowercase();
            if words.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                Err(format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                ))
            }
        }
        Kind::Text => Ok(text.to_string()),
    }
}

/// Redis's memory syntax: a whole number of bytes, or one with a unit
/// (`k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb` powers of 1024).
fn memory_bytes(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_found_without_regard_to_case() {
        assert_eq!(
            find(b"HASH-MAX-ZIPLIST-ENTRIES").unwrap().name,
            "hash-max-listpack-entries"
        );
        assert_eq!(
            find(b"lua-time-limit").unwrap().name,
            "busy-reply-threshold"
        );
        assert!(find(b"no-such-parameter").is_none());
    }

    #[test]
    fn values_are_checked_and_reported_as_redis_reports_them() {
        let p = find(b"active-defrag-ignore-bytes").unwrap();
        assert_eq!(normalize(p, b"2mb").unwrap(), "2097152");
        assert_eq!(normalize(p, b"2m").unwrap(), "2000000");
        assert!(normalize(p, b"2tb").is_err());
        let p = find(b"activerehashing").unwrap();
        assert_eq!(normalize(p, b"NO").unwrap(), "no");
        assert!(normalize(p, b"maybe").is_err());
        let p = find(b"active-defrag-cycle-max").unwrap();
        assert!(normalize(p, b"100").is_err());
        assert_eq!(normalize(p, b"99").unwrap(), "99");
        let p = find(b"loglevel").unwrap();
        assert_eq!(normalize(p, b"Warning").unwrap(), "warning");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = PARAMS
            .iter()
            .flat_map(|p| [Some(p.name), p.alias])
            .flatten()
            .collect();
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
