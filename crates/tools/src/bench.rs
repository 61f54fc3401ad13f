//! `meridian bench`: benchmarks that need a whole cluster.
//!
//! `meridian bench replication` measures, on one machine:
//! - **local write latency** under a steady, rate-limited write load, with
//!   three regions linked through the WAN emulator and, in the same run, with
//!   one region and no peers (the baseline the three-region figure is
//!   compared with);
//! - **replication lag**, two ways: probes (`SET probe:<k>` on one region,
//!   polled with `MGET` every millisecond on the others, timed from the
//!   origin's acknowledgement to the first poll that sees it), and the
//!   receivers' own apply lag from `/v1/status` (apply time minus the op's
//!   HLC wall time; the clocks agree on one machine);
//! - **bytes on the wire** per replicated op, from `/v1/status` and from the
//!   proxies' counters;
//! - **CPU** used by each process during the measured window, because on a
//!   small machine the load generator, the proxies and three regions share
//!   the same cores.
//!
//! The load is open-loop: each client connection has a writer task that
//! sends commands on schedule (pipelining whatever is due) and a reader task
//! that times each reply from the moment its command was written, so a slow
//! reply never delays the next command.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::cluster::{peers, ClusterSpec, LocalCluster};
use crate::demo::{group, megabytes};
use crate::rclient::Client;

/// Unmeasured seconds at the start of each run, while connections and
/// caches settle.
const WARMUP: Duration = Duration::from_secs(2);
/// Probes written per second (round-robin over the regions).
const PROBE_RATE_PER_S: u64 = 50;
/// How often a watcher polls for probes it has not seen yet.
const PROBE_POLL: Duration = Duration::from_millis(1);
/// A probe not seen this long after the load ends counts as lost.
const PROBE_GIVE_UP: Duration = Duration::from_secs(10);
/// Probe keys are reused round-robin, so probes add a bounded number of
/// keys; at 50 probes a second a key is rewritten every 5 s, far beyond any lag.
const PROBE_KEYS: u64 = 256;
/// How often `/v1/status` is sampled during the measured window.
const STATUS_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Keys the load writes to, so memory stays bounded whatever the length.
const KEYS_MAX: u64 = 100_000;
/// Bytes of each SET value.
const VALUE_BYTES: usize = 32;
/// Commands a client may have in flight before the run is declared
/// overloaded (the server is not keeping up with the offered rate).
const IN_FLIGHT_MAX: u64 = 200_000;
/// Once the load stops, the regions must converge within this.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux's USER_HZ: the unit of CPU times in `/proc/<pid>/stat`.
const CLOCK_TICKS_PER_S: f64 = 100.0;

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Replication lag, local write latency (three regions vs. one) and bytes
    /// per replicated op, under a steady write load through emulated WAN links.
    Replication(ReplicationArgs),
    /// Anti-entropy after a partition: N keys, a share changed on each side
    /// while the logs are compacted, then heal time and bytes moved against
    /// the diverged payload.
    Antientropy(crate::bench_ae::AntientropyArgs),
    /// A GET/SET load of many connections on one running server (Meridian
    /// or redis-server), optionally with RESP3 and client tracking on; prints
    /// throughput, p50/p99 latency and invalidations received as one CSV line.
    Clients(crate::bench_clients::ClientsArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReplicationArgs {
    /// One-way delay of every link between regions, in ms.
    #[arg(long, default_value_t = 50)]
    pub delay_ms: u64,
    /// Offered write load, commands per second over all clients.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Measured seconds per run (each run adds a 2 s warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Client connections, spread evenly over the regions.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub clients: u64,
    /// `--fsync` of the regions.
    #[arg(long, default_value = "everysec")]
    pub fsync: String,
    /// Skip the single-region baseline.
    #[arg(long)]
    pub skip_baseline: bool,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Replication(args) => replication(args).await,
        BenchCommand::Antientropy(args) => crate::bench_ae::run(args).await,
        BenchCommand::Clients(args) => crate::bench_clients::run(args).await,
    }
}

/// What one load run measured.
struct LoadResult {
    window_s: f64,
    completed: u64,
    errors: u64,
    error_sample: Option<String>,
    /// Latency of every command sent during the window, in µs, sorted.
    latencies_us: Vec<u32>,
    /// Commands written more than 5 ms after their scheduled time: the load
    /// generator itself could not keep up.
    late_sends: u64,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.window_s
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.latencies_us, q) as f64 / 1000.0
    }

    fn line(&self, label: &str) -> String {
        format!(
            "  {label:<24} {:>9}/s  {:>8.2} {:>8.2} {:>8.2} {:>8.2}   {}",
            group(self.rate() as i64),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.quantile_ms(1.0),
            if self.errors > 0 || self.late_sends > 0 {
                format!(
                    "{} errors, {} sends >5 ms late",
                    group(self.errors as i64),
                    group(self.late_sends as i64)
                )
            } else {
                String::new()
            }
        )
    }
}

fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let at = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted[at]
}

/// Per process: CPU seconds used, and seconds its threads spent runnable
/// but waiting for a CPU (the scheduler's run-queue wait), which is how CPU
/// contention shows up in latency.
#[derive(Clone, Default)]
struct CpuSample {
    cpu_s: Vec<f64>,
    run_queue_wait_s: Vec<f64>,
}

/// Samples `pids` and this process (last).
fn cpu_sample(pids: &[u32]) -> CpuSample {
    let cpu = |pid: &str| -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0.0;
        };
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / CLOCK_TICKS_PER_S
    };
    // `/proc/<pid>/task/<tid>/schedstat`: run ns, run-queue wait ns, slices.
    let wait = |pid: &str| -> f64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return 0.0;
        };
        let ns: u64 = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        ns as f64 / 1e9
    };
    let mut ids: Vec<String> = pids.iter().map(u32::to_string).collect();
    ids.push("self".into());
    CpuSample {
        cpu_s: ids.iter().map(|p| cpu(p)).collect(),
        run_queue_wait_s: ids.iter().map(|p| wait(p)).collect(),
    }
}

fn cpu_line(names: &[String], before: &CpuSample, after: &CpuSample, secs: f64) -> String {
    let per_s = |a: &[f64], b: &[f64], i: usize| (a[i] - b[i]) / secs;
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < before.cpu_s.len() && *i < after.cpu_s.len())
        .map(|(i, n)| {
            format!(
                "{n} {:.0}% ({:.0} ms/s waiting for a CPU)",
                per_s(&after.cpu_s, &before.cpu_s, i) * 100.0,
                per_s(&after.run_queue_wait_s, &before.run_queue_wait_s, i) * 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Run 1 (unless skipped) measures one region alone, run 2 three regions
/// through the WAN emulator; the regions then drain and the report compares
/// the two runs against the targets.
async fn replication(args: ReplicationArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "meridian bench replication: one-way delay {} ms, offered {} writes/s over {} clients, {} s measured per run (+{} s warm-up), --fsync {}, {cpus} CPUs",
        args.delay_ms,
        group(args.rate as i64),
        args.clients,
        args.seconds,
        WARMUP.as_secs(),
        args.fsync
    );
    let serve_args = vec!["--fsync".to_string(), args.fsync.clone()];
    let baseline = if args.skip_baseline {
        None
    } else {
        Some(one_region_run(&args, serve_args.clone(), started).await?)
    };
    let mut cluster = start_three_regions(&args, serve_args, started).await?;
    let run = three_region_run(&cluster, &args, started).await?;

    // Drain: every region must end with the same state.
    let drain_start = Instant::now();
    converge(&mut cluster).await?;
    println!(
        "{} regions converged {:.2} s after the load stopped",
        stamp(started),
        drain_start.elapsed().as_secs_f64()
    );

    println!("\n══ Results ═════════════════════════════════════════════════════════════");
    report_latency(&args, baseline.as_ref(), &run.load);
    report_lag(&args, &run.probe, &run.status_lags);
    report_wire(&run);
    drop(cluster);
    Ok(())
}

/// The time since the bench started, as its progress lines show it.
fn stamp(started: Instant) -> String {
    format!("[{:6.1}s]", started.elapsed().as_secs_f64())
}

/// Run 1: the load against one region with no peers, the baseline of the
/// local write latency.
async fn one_region_run(
    args: &ReplicationArgs,
    serve_args: Vec<String>,
    started: Instant,
) -> anyhow::Result<LoadResult> {
    println!(
        "{} run 1: one region, no peers (load average {})",
        stamp(started),
        load_average()
    );
    let spec = spec(&["solo"], args, serve_args);
    let cluster = LocalCluster::start(&spec).await?;
    let pids: Vec<u32> = cluster.regions.iter().map(|r| r.pid()).collect();
    let addrs: Vec<SocketAddr> = cluster.regions.iter().map(|r| r.resp).collect();
    let cpu_before = Arc::new(parking_lot::Mutex::new(CpuSample::default()));
    let load = {
        let cpu_before = cpu_before.clone();
        let pids = pids.clone();
        run_load(&addrs, args, move || *cpu_before.lock() = cpu_sample(&pids)).await?
    };
    let cpu_after = cpu_sample(&pids);
    println!("{}{}", stamp(started), &load.line("one region")[1..]);
    println!(
        "           CPU, % of one core: {}",
        cpu_line(
            &["region".to_string(), "bench process".to_string()],
            &cpu_before.lock(),
            &cpu_after,
            load.window_s
        )
    );
    drop(cluster);
    Ok(load)
}

/// Starts run 2's cluster: [`REGIONS`], every link `--delay-ms` one way.
async fn start_three_regions(
    args: &ReplicationArgs,
    serve_args: Vec<String>,
    started: Instant,
) -> anyhow::Result<LocalCluster> {
    println!(
        "{} run 2: three regions, every link {} ms one way (load average {})",
        stamp(started),
        args.delay_ms,
        load_average()
    );
    let spec = spec(&REGIONS, args, serve_args);
    LocalCluster::start(&spec).await
}

/// What run 2 measured.
struct ThreeRegionRun {
    load: LoadResult,
    probe: ProbeLag,
    status_lags: Vec<StatusLag>,
    /// The replication counters when the window opened, read by a task
    /// started then (`None` until it has read them).
    wire_before: Arc<parking_lot::Mutex<Option<WireTotals>>>,
    /// The replication counters and the proxies' bytes when the load ended.
    wire_after: WireTotals,
    proxy_bytes_after: u64,
}

/// Run 2: the load against the three regions, with probes and status
/// sampling alongside; prints the load's line and the CPU used.
async fn three_region_run(
    cluster: &LocalCluster,
    args: &ReplicationArgs,
    started: Instant,
) -> anyhow::Result<ThreeRegionRun> {
    let addrs: Vec<SocketAddr> = cluster.regions.iter().map(|r| r.resp).collect();
    let pids: Vec<u32> = cluster.regions.iter().map(|r| r.pid()).collect();
    let https: Vec<SocketAddr> = cluster.regions.iter().map(|r| r.http).collect();

    // Probes and status sampling run alongside the load.
    let window_start = Instant::now() + WARMUP;
    let window_end = window_start + Duration::from_secs(args.seconds);
    // Nothing can arrive before about half the emulated delay, so polls
    // start then; a probe seen at its first poll would show that bound.
    let probes = tokio::spawn(probe_lag(
        addrs.clone(),
        window_start,
        window_end,
        Duration::from_millis(args.delay_ms / 2),
        PROBE_RATE_PER_S,
    ));
    let sampler = tokio::spawn(sample_status(https.clone(), window_start, window_end));
    let wire_before = Arc::new(parking_lot::Mutex::new(None));
    let cpu_before = Arc::new(parking_lot::Mutex::new(CpuSample::default()));
    let load = {
        let (wire_before, cpu_before, pids, https) = (
            wire_before.clone(),
            cpu_before.clone(),
            pids.clone(),
            https.clone(),
        );
        run_load(&addrs, args, move || {
            *cpu_before.lock() = cpu_sample(&pids);
            // Status is read over HTTP; take it from a task, not here.
            let wire_before = wire_before.clone();
            let https = https.clone();
            tokio::spawn(async move {
                *wire_before.lock() = wire_totals(&https).await.ok();
            });
        })
        .await?
    };
    let cpu_after = cpu_sample(&pids);
    let wire_after = wire_totals(&https).await?;
    let proxy_bytes_after = proxy_bytes(cluster);
    println!("{}{}", stamp(started), &load.line("three regions")[1..]);
    let mut names: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
    names.push("bench process (load, probes, proxies)".into());
    println!(
        "           CPU, % of one core: {}",
        cpu_line(&names, &cpu_before.lock(), &cpu_after, load.window_s)
    );

    let status_lags = sampler.await.context("status sampler")??;
    let probe = probes.await.context("probe task")??;
    Ok(ThreeRegionRun {
        load,
        probe,
        status_lags,
        wire_before,
        wire_after,
        proxy_bytes_after,
    })
}

/// Local write latency of both runs, and whether three regions met the
/// latency and rate targets.
fn report_latency(args: &ReplicationArgs, baseline: Option<&LoadResult>, load: &LoadResult) {
    println!("Local write latency (ms; from writing the command to reading its reply)");
    println!(
        "  {:<24} {:>11}  {:>8} {:>8} {:>8} {:>8}",
        "run", "achieved", "p50", "p99", "p99.9", "max"
    );
    if let Some(b) = baseline {
        println!("{}", b.line("one region, no peers"));
    }
    println!(
        "{}",
        load.line(&format!("three regions, {} ms", args.delay_ms))
    );
    if let Some(b) = baseline {
        let ratio = load.quantile_ms(0.99) / b.quantile_ms(0.99).max(0.001);
        println!(
            "  p99 three regions / one region: {ratio:.2}× (target ≤ 1.2×): {}",
            verdict(ratio <= 1.2)
        );
    }
    println!(
        "  achieved rate (three regions): {} writes/s of {} offered: {}",
        group(load.rate() as i64),
        group(args.rate as i64),
        verdict(load.rate() >= args.rate as f64 * 0.99)
    );
}

/// Replication lag from the probes, per pair and against the target, and
/// from the receivers' `/v1/status`, per link.
fn report_lag(args: &ReplicationArgs, probe: &ProbeLag, status_lags: &[StatusLag]) {
    let target_lag_ms = args.delay_ms as f64 + 10.0;
    println!("\nReplication lag (ms)");
    let p = &probe.all_ms;
    println!(
        "  probes: {} acknowledged writes timed to their first sighting in each other region (poll every {} ms): p50 {:.1} p99 {:.1} max {:.1}; {} never seen",
        group(p.len() as i64),
        PROBE_POLL.as_millis(),
        quantile(p, 0.5),
        quantile(p, 0.99),
        quantile(p, 1.0),
        probe.lost
    );
    for ((from, to), v) in &probe.by_pair_ms {
        println!(
            "    {:<20} p50 {:>6.1}  p99 {:>6.1}  max {:>6.1}  ({} probes)",
            format!("{} → {}", REGIONS[*from], REGIONS[*to]),
            quantile(v, 0.5),
            quantile(v, 0.99),
            quantile(v, 1.0),
            v.len()
        );
    }
    println!(
        "  probe p99 {:.1} ms vs. target ≤ delay + 10 = {target_lag_ms:.0} ms: {}",
        quantile(p, 0.99),
        verdict(quantile(p, 0.99) <= target_lag_ms)
    );
    let mut p50s: Vec<u64> = status_lags.iter().filter_map(|s| s.p50_ms).collect();
    let mut p99s: Vec<u64> = status_lags.iter().filter_map(|s| s.p99_ms).collect();
    p50s.sort_unstable();
    p99s.sort_unstable();
    println!(
        "  server apply lag (/v1/status, each link's last ≤8192 ops, sampled every {} s, {} samples): p50 median {} · p99 median {} · p99 worst {}",
        STATUS_SAMPLE_EVERY.as_secs(),
        p99s.len(),
        quantile(&p50s, 0.5),
        quantile(&p99s, 0.5),
        quantile(&p99s, 1.0)
    );
    let mut by_link: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in status_lags {
        if let Some(v) = s.p99_ms {
            by_link.entry(s.link.clone()).or_default().push(v);
        }
    }
    for (link, mut v) in by_link {
        v.sort_unstable();
        println!(
            "    {link:<20} p99 median {:>4}  worst {:>4}",
            quantile(&v, 0.5),
            quantile(&v, 1.0)
        );
    }
}

/// Bytes per op shipped in the window, and per replicated copy of a write
/// over the whole run.
fn report_wire(run: &ThreeRegionRun) {
    println!("\nWire");
    let before = run.wire_before.lock().clone().unwrap_or_default();
    let after = &run.wire_after;
    let ops = after.ops_sent.saturating_sub(before.ops_sent);
    let bytes = after.bytes_sent.saturating_sub(before.bytes_sent);
    println!(
        "  replication streams in the window: {} ops shipped, {} → {:.1} bytes per op shipped",
        group(ops as i64),
        megabytes(bytes),
        bytes as f64 / ops.max(1) as f64
    );
    println!(
        "  whole run: {:.2} ops shipped per write (2 peers + relays; {} skipped as duplicates); through the proxies {} both ways = {:.1} bytes per replicated copy of a write",
        after.ops_sent as f64 / after.local_ops.max(1) as f64,
        group(after.duplicates as i64),
        megabytes(run.proxy_bytes_after),
        run.proxy_bytes_after as f64 / (2 * after.local_ops).max(1) as f64
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

fn spec(regions: &[&str], args: &ReplicationArgs, serve_args: Vec<String>) -> ClusterSpec {
    ClusterSpec {
        regions: regions.iter().map(|r| r.to_string()).collect(),
        links: Vec::new(),
        default_link: LinkConditions::wan(args.delay_ms),
        seed: 1,
        serve_args,
        log_filter: "warn".into(),
        work_dir_prefix: "meridian-bench".into(),
    }
}

/// Drives the offered load against `addrs` (clients spread round-robin) and
/// measures the window after the warm-up. `at_window_start` runs once when
/// the window opens.
async fn run_load(
    addrs: &[SocketAddr],
    args: &ReplicationArgs,
    at_window_start: impl FnOnce() + Send + 'static,
) -> anyhow::Result<LoadResult> {
    let clients = args.clients as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + WARMUP;
    let window_end = window_start + Duration::from_secs(args.seconds);
    let per_client_rate = args.rate as f64 / clients as f64;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = Client::connect(addrs[c % addrs.len()]).await?;
        tasks.push(tokio::spawn(client_load(
            client,
            c as u64,
            per_client_rate,
            start,
            window_start,
            window_end,
        )));
    }
    tokio::time::sleep_until(window_start.into()).await;
    at_window_start();
    let mut result = LoadResult {
        window_s: args.seconds as f64,
        completed: 0,
        errors: 0,
        error_sample: None,
        latencies_us: Vec::new(),
        late_sends: 0,
    };
    for t in tasks {
        let r = t.await.context("load task")??;
        result.completed += r.completed;
        result.errors += r.errors;
        result.late_sends += r.late_sends;
        result.error_sample = result.error_sample.or(r.error_sample);
        result.latencies_us.extend(r.latencies_us);
    }
    result.latencies_us.sort_unstable();
    if let Some(e) = &result.error_sample {
        println!("           first error reply: {e}");
    }
    Ok(result)
}

/// One connection of the load: a writer on schedule, a reader timing replies.
async fn client_load(
    client: Client,
    id: u64,
    rate: f64,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
) -> anyhow::Result<LoadResult> {
    let (mut writer, mut reader) = client.into_split();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let interval_ns = 1e9 / rate;
    let received = Arc::new(AtomicU64::new(0));
    let received_by_reader = received.clone();
    let writer_task = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(id);
        let value: String = "v".repeat(VALUE_BYTES);
        let mut i: u64 = 0;
        let mut late_sends = 0u64;
        let in_window = |t: Instant| t >= window_start && t < window_end;
        loop {
            let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
            if due >= window_end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            let mut queued = 0;
            loop {
                let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                if due > now || due >= window_end {
                    break;
                }
                if in_window(due) && now.duration_since(due) > Duration::from_millis(5) {
                    late_sends += 1;
                }
                let k = rng.gen_range(0..KEYS_MAX);
                match rng.gen_range(0..10) {
                    0..=6 => writer.queue(&["SET", &format!("key:{k}"), &value]),
                    7..=8 => writer.queue(&["INCRBY", &format!("cnt:{}", k % 1000), "1"]),
                    _ => writer.queue(&[
                        "HSET",
                        &format!("h:{}", k % 1000),
                        &format!("f{}", k % 10),
                        &value,
                    ]),
                }
                queued += 1;
                i += 1;
            }
            let sent_at = Instant::now();
            writer.flush().await?;
            for _ in 0..queued {
                // The reader only needs the send time; it ignores commands
                // sent outside the window by their time.
                if sent_tx.send(sent_at).is_err() {
                    bail!("the reply reader stopped");
                }
            }
            if i.saturating_sub(received.load(Ordering::Relaxed)) > IN_FLIGHT_MAX {
                bail!("more than {IN_FLIGHT_MAX} commands in flight on one connection: the region is not keeping up");
            }
        }
        Ok::<u64, anyhow::Error>(late_sends)
    });
    let mut result = LoadResult {
        window_s: window_end.duration_since(window_start).as_secs_f64(),
        completed: 0,
        errors: 0,
        error_sample: None,
        latencies_us: Vec::new(),
        late_sends: 0,
    };
    while let Some(sent_at) = sent_rx.recv().await {
        let reply = reader.read().await?;
        let now = Instant::now();
        received_by_reader.fetch_add(1, Ordering::Relaxed);
        if sent_at >= window_start && sent_at < window_end {
            result.completed += 1;
            result.latencies_us.push(
                now.duration_since(sent_at)
                    .as_micros()
                    .min(u32::MAX as u128) as u32,
            );
            if let Frame::Error(e) = &reply {
                result.errors += 1;
                result.error_sample.get_or_insert_with(|| e.clone());
            }
        }
    }
    result.late_sends = writer_task.await.context("load writer")??;
    Ok(result)
}

/// Probe results: lag in ms per (origin, destination) and all together,
/// each sorted.
pub(crate) struct ProbeLag {
    pub all_ms: Vec<f64>,
    pub by_pair_ms: BTreeMap<(usize, usize), Vec<f64>>,
    pub lost: u64,
}

/// Writes `SET probe:<n mod 256> "<n> <wall µs>"` round-robin on the regions, `rate_per_s`
/// a second during the window, and times each one from its acknowledgement
/// to its first sighting in every other region (polled every millisecond,
/// starting `quiet` after the acknowledgement).
pub(crate) async fn probe_lag(
    addrs: Vec<SocketAddr>,
    window_start: Instant,
    window_end: Instant,
    quiet: Duration,
    rate_per_s: u64,
) -> anyhow::Result<ProbeLag> {
    let n_regions = addrs.len();
    let mut watchers = Vec::new();
    let mut to_watchers = Vec::new();
    for (dest, addr) in addrs.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel::<(u64, usize, Instant)>();
        to_watchers.push(tx);
        let client = Client::connect(*addr).await?;
        watchers.push(tokio::spawn(watch_probes(client, dest, rx, quiet)));
    }
    let mut writers = Vec::new();
    for addr in &addrs {
        writers.push(Client::connect(*addr).await?);
    }
    tokio::time::sleep_until(window_start.into()).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate_per_s.max(1)));
    let mut n = 0u64;
    while Instant::now() < window_end {
        tick.tick().await;
        let origin = (n as usize) % n_regions;
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let reply = writers[origin]
            .cmd(&[
                "SET",
                &format!("probe:{}", n % PROBE_KEYS),
                &format!("{n} {wall_us}"),
            ])
            .await?;
        if reply.is_error() {
            bail!("probe write failed: {reply:?}");
        }
        let acked = Instant::now();
        for (dest, tx) in to_watchers.iter().enumerate() {
            if dest != origin {
                let _ = tx.send((n, origin, acked));
            }
        }
        n += 1;
    }
    drop(to_watchers);
    let mut result = ProbeLag {
        all_ms: Vec::new(),
        by_pair_ms: BTreeMap::new(),
        lost: 0,
    };
    for w in watchers {
        let (seen, lost) = w.await.context("probe watcher")??;
        result.lost += lost;
        for (origin, dest, ms) in seen {
            result.all_ms.push(ms);
            result
                .by_pair_ms
                .entry((origin, dest))
                .or_default()
                .push(ms);
        }
    }
    result.all_ms.sort_by(f64::total_cmp);
    for v in result.by_pair_ms.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(result)
}

/// Polls region `dest` for the probes it is told about; returns
/// (origin, dest, lag ms) per probe seen and the count never seen.
async fn watch_probes(
    mut client: Client,
    dest: usize,
    mut rx: mpsc::UnboundedReceiver<(u64, usize, Instant)>,
    quiet: Duration,
) -> anyhow::Result<(Vec<(usize, usize, f64)>, u64)> {
    let mut pending: VecDeque<(u64, usize, Instant)> = VecDeque::new();
    let mut seen = Vec::new();
    let mut closed = false;
    let mut closed_at = None;
    let mut tick = tokio::time::interval(PROBE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        while !closed {
            match rx.try_recv() {
                Ok(p) => pending.push_back(p),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    closed_at = Some(Instant::now());
                }
            }
        }
        if closed && pending.is_empty() {
            return Ok((seen, 0));
        }
        if closed_at.is_some_and(|t| t.elapsed() > PROBE_GIVE_UP) {
            return Ok((seen, pending.len() as u64));
        }
        let due: Vec<(u64, usize, Instant)> = pending
            .iter()
            .copied()
            .filter(|(_, _, acked)| acked.elapsed() >= quiet)
            .collect();
        if due.is_empty() {
            continue;
        }
        let mut command = vec!["MGET".to_string()];
        command.extend(
            due.iter()
                .map(|(n, _, _)| format!("probe:{}", n % PROBE_KEYS)),
        );
        let polled_at = Instant::now();
        let reply = client.cmd(&command).await?;
        let Frame::Array(values) = reply else {
            bail!("MGET replied {reply:?}");
        };
        for ((n, origin, acked), value) in due.iter().zip(values) {
            let this_probe = crate::rclient::frame_text(&value)
                .is_some_and(|v| v.split(' ').next() == Some(n.to_string().as_str()));
            if this_probe {
                seen.push((
                    *origin,
                    dest,
                    polled_at.duration_since(*acked).as_secs_f64() * 1000.0,
                ));
                pending.retain(|(m, _, _)| m != n);
            }
        }
    }
}

/// One `/v1/status` reading of one link's apply lag.
struct StatusLag {
    link: String,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
}

async fn sample_status(
    https: Vec<SocketAddr>,
    window_start: Instant,
    window_end: Instant,
) -> anyhow::Result<Vec<StatusLag>> {
    let mut out = Vec::new();
    let mut at = window_start + STATUS_SAMPLE_EVERY;
    while at <= window_end {
        tokio::time::sleep_until(at.into()).await;
        for (i, http) in https.iter().enumerate() {
            let status = crate::cluster::http_get_json(*http, "/v1/status").await?;
            for p in peers(&status) {
                out.push(StatusLag {
                    link: format!("{} → {}", p["id"].as_str().unwrap_or("?"), REGIONS[i]),
                    p50_ms: p["apply_lag_p50_ms"].as_u64(),
                    p99_ms: p["apply_lag_p99_ms"].as_u64(),
                });
            }
        }
        at += STATUS_SAMPLE_EVERY;
    }
    Ok(out)
}

/// Replication counters summed over every region and peer.
#[derive(Clone, Default)]
struct WireTotals {
    ops_sent: u64,
    bytes_sent: u64,
    duplicates: u64,
    /// Ops this region originated (its own entry of its version vector).
    local_ops: u64,
}

async fn wire_totals(https: &[SocketAddr]) -> anyhow::Result<WireTotals> {
    let mut t = WireTotals::default();
    for http in https {
        let status = crate::cluster::http_get_json(*http, "/v1/status").await?;
        let region = status["region"].as_str().unwrap_or_default();
        t.local_ops += status["version_vector"][region].as_u64().unwrap_or(0);
        for p in peers(&status) {
            t.ops_sent += p["ops_sent"].as_u64().unwrap_or(0);
            t.bytes_sent += p["bytes_sent"].as_u64().unwrap_or(0);
            t.duplicates += p["duplicates"].as_u64().unwrap_or(0);
        }
    }
    Ok(t)
}

fn proxy_bytes(cluster: &LocalCluster) -> u64 {
    let Some(mesh) = &cluster.mesh else { return 0 };
    let mut total = 0;
    for a in mesh.regions() {
        for b in mesh.regions() {
            if let Ok(link) = mesh.link(a, b) {
                let s = link.stats();
                total += s.bytes_forward + s.bytes_backward;
            }
        }
    }
    total
}

/// Waits until every region shows the same digest and version vector.
async fn converge(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        cluster.check_alive()?;
        let mut digests = Vec::new();
        for i in 0..cluster.regions.len() {
            let d = cluster.digest(i).await?;
            digests.push((d["digest"].clone(), d["version_vector"].clone()));
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "regions did not converge within {CONVERGE_TIMEOUT:?} after the load: {digests:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
