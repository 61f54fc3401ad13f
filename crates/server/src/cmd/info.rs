//! INFO and TIME: what the server reports about itself, with Redis's
//! sections and fields plus `meridian_*` ones.

use std::collections::HashSet;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use meridian_resp::Frame;

use super::spec::{command, Ctx, Spec, READ};
use super::stats;
use super::util::{eq_ignore_case, REDIS_VERSION};
use crate::metrics::Metrics;
use crate::shared::wall_ms;

/// Largest bulk string a client may send (Redis's `proto-max-bulk-len`).
pub const PROTO_MAX_BULK_LEN_BYTES: u64 = 512 * 1024 * 1024;
/// How often the expiry cycle runs, as Redis's `hz` reports it.
pub const HZ: u64 = 10;
/// File descriptors Redis keeps for itself when it derives `maxclients`
/// from the open-file limit.
const RESERVED_FDS: u64 = 32;
/// Linux reports CPU time in /proc in ticks of 1/100 s (`USER_HZ`).
const USER_HZ: f64 = 100.0;

pub fn specs() -> Vec<Spec> {
    const NONE: (i32, i32, i32) = (0, 0, 0);
    vec![
        command("info", -1, READ, NONE, info, &[]),
        command("time", 1, READ, NONE, time, &["fast"]),
    ]
}

/// Sections in the order INFO prints them, and whether the default set
/// (INFO with no argument, or `default`) includes each; `all` and
/// `everything` print every one.
const INFO_SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("meridian", true),
    ("keyspace", true),
];

/// The sections `INFO args…` asks for, as Redis 7 reads its arguments:
/// several names at once, case ignored, `default`, `all` and
/// `everything`; unknown names add nothing.
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let mut all = false;
    let mut wanted = HashSet::new();
    if args.is_empty() {
        wanted.extend(INFO_SECTIONS.iter().filter(|s| s.1).map(|s| s.0));
    }
    for a in args {
        if eq_ignore_case(a, "all") || eq_ignore_case(a, "everything") {
            all = true;
        } else if eq_ignore_case(a, "default") {
            wanted.extend(INFO_SECTIONS.iter().filter(|s| s.1).map(|s| s.0));
        } else if eq_ignore_case(a, "module_list") {
            wanted.insert("modules");
        } else if let Some((name, _)) = INFO_SECTIONS.iter().find(|s| eq_ignore_case(a, s.0)) {
            wanted.insert(*name);
        }
    }
    INFO_SECTIONS
        .iter()
        .map(|s| s.0)
        .filter(|s| all || wanted.contains(s))
        .collect()
}

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut text = String::new();
    for (i, section) in wanted_sections(&args[1..]).iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        let (title, lines) = section_lines(ctx, section);
        text.push_str(&format!("# {title}\r\n"));
        for line in lines {
            text.push_str(&line);
            text.push_str("\r\n");
        }
    }
    Frame::verbatim_text(text)
}

/// A section's title and its `field:value` lines.
fn section_lines(ctx: &mut Ctx<'_>, section: &str) -> (&'static str, Vec<String>) {
    match section {
        // Commands that ran or were refused, as `cmdstat_<name>` (a
        // container's subcommands as `cmdstat_client|kill`).
        "commandstats" => {
            let stats = ctx.shared.cmdstats.lock();
            let lines = stats
                .commands()
                .into_iter()
                .map(|(name, s)| format!("cmdstat_{name}:{}", stats::commandstat_line(&s)))
                .collect();
            ("Commandstats", lines)
        }
        "errorstats" => {
            let stats = ctx.shared.cmdstats.lock();
            let lines = stats
                .errors()
                .map(|(code, n)| format!("errorstat_{code}:count={n}"))
                .collect();
            ("Errorstats", lines)
        }
        _ => {
            let (title, fields) = info_section(ctx, section);
            let lines = fields
                .into_iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            (title, lines)
        }
    }
}

/// The port clients connect to: the one this connection arrived on, which
/// is the bound port even when the configuration asked for port 0.
pub fn listen_port(ctx: &Ctx<'_>) -> u16 {
    ctx.shared
        .clients
        .lock()
        .get(&ctx.client.id)
        .map_or(ctx.shared.config.listen.port(), |e| e.local.port())
}

/// Redis's `bytesToHuman`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut d = n as f64 / 1024.0;
    let mut unit = 0;
    while d >= 1024.0 && unit + 1 < UNITS.len() {
        d /= 1024.0;
        unit += 1;
    }
    format!("{d:.2}{}", UNITS[unit])
}

/// CPU seconds from /proc (Linux): this process's user and system time,
/// then those of its waited-for children.
fn cpu_seconds() -> (f64, f64, f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0, 0.0, 0.0);
    };
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime and cstime are fields 14 to 17 of stat; 3 is
    // the first after the name.
    (
        ticks(11) / USER_HZ,
        ticks(12) / USER_HZ,
        ticks(13) / USER_HZ,
        ticks(14) / USER_HZ,
    )
}

/// Physical memory of the machine (`MemTotal`), or 0 where unknown.
fn total_system_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Connections this process can hold: its open-file limit less the
/// descriptors kept for files and listeners, as Redis derives `maxclients`.
pub fn max_clients() -> u64 {
    let mut text = String::new();
    let read =
        std::fs::File::open("/proc/self/limits").and_then(|mut f| f.read_to_string(&mut text));
    if read.is_err() {
        return 0;
    }
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok())
        .map_or(0, |n| n.saturating_sub(RESERVED_FDS))
}

/// Unix time in seconds of the newest snapshot, or of the start of this
/// process if none exists yet.
pub fn last_save_secs(ctx: &Ctx<'_>) -> u64 {
    let newest = std::fs::read_dir(ctx.store.dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => d.as_secs(),
        None => (wall_ms() / 1000).saturating_sub(ctx.shared.started.elapsed().as_secs()),
    }
}

type Section = (&'static str, Vec<(&'static str, String)>);

fn server_section(ctx: &mut Ctx<'_>) -> Section {
    let shared = ctx.shared;
    let uptime_s = shared.started.elapsed().as_secs();
    (
        "Server",
        vec![
            ("redis_version", REDIS_VERSION.into()),
            ("meridian_version", env!("CARGO_PKG_VERSION").into()),
            ("redis_mode", "standalone".into()),
            (
                "os",
                format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            ),
            ("arch_bits", usize::BITS.to_string()),
            ("process_id", std::process::id().to_string()),
            ("tcp_port", listen_port(ctx).to_string()),
            ("server_time_usec", (wall_ms() * 1000).to_string()),
            ("uptime_in_seconds", uptime_s.to_string()),
            ("uptime_in_days", (uptime_s / 86_400).to_string()),
            ("hz", HZ.to_string()),
            ("meridian_region", shared.config.region.to_string()),
        ],
    )
}

fn persistence_section(ctx: &mut Ctx<'_>) -> Section {
    let shared = ctx.shared;
    let m = &shared.metrics;
    (
        "Persistence",
        vec![
            ("loading", "0".into()),
            ("async_loading", "0".into()),
            (
                "rdb_changes_since_last_save",
                ctx.store.ops_since_snapshot().to_string(),
            ),
            ("rdb_bgsave_in_progress", "0".into()),
            ("rdb_last_save_time", last_save_secs(ctx).to_string()),
            ("aof_enabled", "1".into()),
            ("aof_rewrite_in_progress", "0".into()),
            ("meridian_fsync", shared.config.fsync.as_str().into()),
            (
                "meridian_log_last_lsn",
                ctx.store.log().last_lsn().to_string(),
            ),
            (
                "meridian_snapshots",
                Metrics::get(&m.snapshots_total).to_string(),
            ),
        ],
    )
}

fn stats_section(ctx: &mut Ctx<'_>) -> Section {
    let shared = ctx.shared;
    let m = &shared.metrics;
    let tracking = crate::tracking::totals(shared);
    (
        "Stats",
        vec![
            (
                "total_connections_received",
                Metrics::get(&m.connections_total).to_string(),
            ),
            (
                "total_commands_processed",
                Metrics::get(&m.commands_total).to_string(),
            ),
            (
                "total_net_input_bytes",
                Metrics::get(&m.net_input_bytes).to_string(),
            ),
            (
                "total_net_output_bytes",
                Metrics::get(&m.net_output_bytes).to_string(),
            ),
            (
                "rejected_connections",
                Metrics::get(&m.rejected_connections_total).to_string(),
            ),
            ("expired_keys", ctx.db().expired_total().to_string()),
            ("evicted_keys", "0".into()),
            ("pubsub_channels", shared.channels.lock().len().to_string()),
            ("pubsub_patterns", shared.patterns.lock().len().to_string()),
            (
                "pubsubshard_channels",
                shared.shard_channels.lock().len().to_string(),
            ),
            // Meridian has no MIGRATE, so it never caches a connection for it.
            ("migrate_cached_sockets", "0".into()),
            ("tracking_total_keys", tracking.keys.to_string()),
            ("tracking_total_items", tracking.items.to_string()),
            ("tracking_total_prefixes", tracking.prefixes.to_string()),
            (
                "total_error_replies",
                Metrics::get(&m.command_errors_total).to_string(),
            ),
            (
                "meridian_ops_committed",
                Metrics::get(&m.ops_committed_total).to_string(),
            ),
            (
                "meridian_protocol_errors",
                Metrics::get(&m.protocol_errors_total).to_string(),
            ),
        ],
    )
}

fn info_section(ctx: &mut Ctx<'_>, section: &str) -> Section {
    let shared = ctx.shared;
    match section {
        "server" => server_section(ctx),
        "clients" => {
            let tracking_clients = crate::tracking::totals(shared).clients;
            (
                "Clients",
                vec![
                    ("connected_clients", shared.clients.lock().len().to_string()),
                    ("maxclients", max_clients().to_string()),
                    (
                        "blocked_clients",
                        shared.blocking.lock().count().to_string(),
                    ),
                    ("tracking_clients", tracking_clients.to_string()),
                ],
            )
        }
        "memory" => {
            // The Lua states are busy only while a script runs, and INFO
            // never runs then (a script holds the store).
            let (lua_eval, cached_scripts) = ctx
                .shared
                .scripting
                .try_lock()
                .map_or((0, 0), |s| (s.engine.used_memory() as u64, s.cache.len()));
            let (lua_functions, functions, libraries) =
                ctx.shared.functions.try_lock().map_or((0, 0, 0), |f| {
                    (
                        f.engine.used_memory() as u64,
                        f.owner.len(),
                        f.libraries.len(),
                    )
                });
            // Meridian has no allocator statistics: what it uses is its
            // resident set, and its peak the largest one so far.
            let rss = crate::metrics::rss_bytes();
            let peak = super::object::peak_rss_bytes().max(rss);
            let system = total_system_memory_bytes();
            (
                "Memory",
                vec![
                    ("used_memory", rss.to_string()),
                    ("used_memory_human", human_bytes(rss)),
                    ("used_memory_rss", rss.to_string()),
                    ("used_memory_rss_human", human_bytes(rss)),
                    ("used_memory_peak", peak.to_string()),
                    ("used_memory_peak_human", human_bytes(peak)),
                    ("total_system_memory", system.to_string()),
                    ("total_system_memory_human", human_bytes(system)),
                    ("maxmemory", "0".into()),
                    ("maxmemory_human", "0B".into()),
                    ("maxmemory_policy", "noeviction".into()),
                    // Rust's global allocator here is the C library's malloc.
                    ("mem_allocator", "libc".into()),
                    ("used_memory_lua", lua_eval.to_string()),
                    ("used_memory_vm_eval", lua_eval.to_string()),
                    ("used_memory_lua_human", human_bytes(lua_eval)),
                    ("used_memory_scripts_eval", "0".into()),
                    ("number_of_cached_scripts", cached_scripts.to_string()),
                    ("number_of_functions", functions.to_string()),
                    ("number_of_libraries", libraries.to_string()),
                    ("used_memory_vm_functions", lua_functions.to_string()),
                ],
            )
        }
        "persistence" => persistence_section(ctx),
        "stats" => stats_section(ctx),
        // Every region is a master that accepts writes; its peers are not
        // Redis replicas. The offset is the op log's last LSN: Meridian's
        // replication stream counts ops, not bytes.
        "replication" => (
            "Replication",
            vec![
                ("role", "master".into()),
                ("connected_slaves", "0".into()),
                ("master_failover_state", "no-failover".into()),
                ("master_repl_offset", ctx.store.log().last_lsn().to_string()),
                ("second_repl_offset", "-1".into()),
                ("repl_backlog_active", "0".into()),
            ],
        ),
        "cpu" => {
            let (user, sys, child_user, child_sys) = cpu_seconds();
            (
                "CPU",
                vec![
                    ("used_cpu_sys", format!("{sys:.6}")),
                    ("used_cpu_user", format!("{user:.6}")),
                    ("used_cpu_sys_children", format!("{child_sys:.6}")),
                    ("used_cpu_user_children", format!("{child_user:.6}")),
                ],
            )
        }
        "modules" => ("Modules", Vec::new()),
        "cluster" => ("Cluster", vec![("cluster_enabled", "0".into())]),
        "meridian" => {
            let epoch = ctx.store.epoch();
            let conflicts_retained = ctx.store.journal().retained();
            let db = ctx.db();
            let clock = db.clock();
            let fields = vec![
                ("region", db.region().to_string()),
                ("epoch", epoch.to_string()),
                ("seq", db.seq().to_string()),
                (
                    "version_vector",
                    super::meridian::token(db.version_vector()),
                ),
                ("hlc", format!("{}.{}", clock.wall_ms(), clock.logical())),
                ("conflicts_total", db.conflicts_total().to_string()),
                ("conflicts_retained", conflicts_retained.to_string()),
                ("peers", shared.config.peers.len().to_string()),
                ("state", super::meridian::state(shared).into()),
            ];
            ("Meridian", fields)
        }
        _ => {
            let c = super::keys::key_counts(ctx);
            let fields = if c.keys == 0 {
                Vec::new()
            } else {
                vec![(
                    "db0",
                    format!(
                        "keys={},expires={},avg_ttl={}",
                        c.keys, c.expires, c.avg_ttl_ms
                    ),
                )]
            };
            ("Keyspace", fields)
        }
    }
}

fn time(_: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // The same clock as the region's HLC, test-only offset included.
    let offset = std::time::Duration::from_millis(meridian_repl::clock_offset_ms().unsigned_abs());
    let now = if meridian_repl::clock_offset_ms() < 0 {
        now.saturating_sub(offset)
    } else {
        now + offset
    };
    Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ])
}
