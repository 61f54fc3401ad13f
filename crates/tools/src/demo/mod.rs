//! `meridian demo`: the product's main job shown in one command.
//!
//! Three regions run as child processes on loopback, linked through the WAN
//! emulator (`meridian-netem`) with one-way delays of 20, 40 and 70 ms. The
//! demo drives a mixed workload in every region at once, cuts one region off
//! while all keep writing (with deliberately conflicting writes on both
//! sides), heals, waits for convergence and reports what a person wants to
//! see: lag per link, the conflicts the merge rules resolved, counters equal
//! to the sum of acknowledged increments, add-wins sets, equal state digests
//! and the bytes on the wire. It exits non-zero, with the reason, if any
//! check fails.
//!
//! The workload drivers ([`worker`], [`conflict_writer`]) only write and
//! record what was acknowledged; the checks run once everything has
//! converged (`check_*`), against what the drivers recorded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cluster::{peers, ClusterSpec, LocalCluster};

mod workload;
use crate::rclient::{frame_f64, frame_i64, Client};
use workload::{conflict_writer, expect_ok, worker};

/// The regions, in start order.
const REGIONS: [&str; 3] = ["eu-west", "eu-central", "us-east"];
/// One-way delay per pair of regions, in both directions.
const LINK_DELAYS_MS: [(&str, &str, u64); 3] = [
    ("eu-west", "eu-central", 20),
    ("eu-west", "us-east", 40),
    ("eu-central", "us-east", 70),
];
/// The region the partition cuts off, and the region on the other side that
/// writes the same keys while it is cut off.
const ISOLATED: &str = "us-east";
const RIVAL: &str = "eu-west";

/// Load: connections per region, commands per pipelined batch, commands per
/// second per region.
const WORKERS_PER_REGION: usize = 2;
const BATCH_COMMANDS: usize = 10;
const RATE_PER_REGION_OPS: u64 = 1_500;
/// Conflicting writes during the partition: one round of every key this often.
const CONFLICT_ROUND_MS: u64 = 100;
const CONFLICT_KEYS: usize = 5;

/// Probes written per second during the steady phase (round-robin over the
/// regions), and how long after its acknowledgement a probe is first polled
/// for: half the shortest link's delay.
const PROBE_RATE_PER_S: u64 = 60;
const PROBE_QUIET: Duration = Duration::from_millis(10);

/// A command batch that gets no answer within this long fails the demo.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the regions may take to converge once writes stop.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many command errors are quoted in the report.
const ERRORS_QUOTED_MAX: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Seconds of workload: 40% steady, 35% with one region cut off, 25%
    /// after the heal. Start-up and convergence add a few seconds.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(3..=75))]
    pub seconds: u64,
    /// Seed of the workload and of the emulated links' jitter (random by default).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A counter the workload increments: the reference the regions must match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Counter {
    /// INCRBY on a string key.
    Int(String),
    /// INCRBYFLOAT on a string key, counted in quarters (exact in binary).
    Quarters(String),
    /// HINCRBY on a hash field.
    Field(String, String),
    /// ZINCRBY on a sorted-set member.
    Score(String, String),
}

impl Counter {
    fn label(&self) -> String {
        match self {
            Counter::Int(k) => format!("{k} (INCRBY)"),
            Counter::Quarters(k) => format!("{k} (INCRBYFLOAT)"),
            Counter::Field(k, f) => format!("{k} {f} (HINCRBY)"),
            Counter::Score(k, m) => format!("{k} {m} (ZINCRBY)"),
        }
    }

    fn read_command(&self) -> Vec<String> {
        match self {
            Counter::Int(k) | Counter::Quarters(k) => vec!["GET".into(), k.clone()],
            Counter::Field(k, f) => vec!["HGET".into(), k.clone(), f.clone()],
            Counter::Score(k, m) => vec!["ZSCORE".into(), k.clone(), m.clone()],
        }
    }

    /// The value a region must show for `sum` acknowledged increments.
    fn expected(&self, sum: i64) -> f64 {
        match self {
            Counter::Quarters(_) => sum as f64 / 4.0,
            _ => sum as f64,
        }
    }

    fn render(&self, value: f64) -> String {
        match self {
            Counter::Quarters(_) => format!("{value:.2}"),
            _ => group(value as i64),
        }
    }
}

/// Sums of acknowledged increments.
type Acked = BTreeMap<Counter, i64>;

/// A workload command and the increment it makes, if it is a counter command.
type Planned = (Vec<String>, Option<(Counter, i64)>);

/// What the workload did, per region.
#[derive(Default)]
struct LoadStats {
    ops: [AtomicU64; 3],
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
}

impl LoadStats {
    fn total_ops(&self) -> u64 {
        self.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    fn error(&self, region: &str, command: &[String], reply: &Frame) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock();
        if samples.len() < ERRORS_QUOTED_MAX {
            samples.push(format!("{region}: {} → {reply:?}", command.join(" ")));
        }
    }
}

/// One directed pair's lag: the probes' write-to-visible time from `from`
/// to `to`, and the apply lag `to` measured on its link from `from`.
struct LinkLag {
    from: String,
    to: String,
    delay_ms: u64,
    probe_ms: Vec<f64>,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
}

/// What happened while [`ISOLATED`] was cut off.
struct Partition {
    lasted: Duration,
    /// Commands the workload ran in [`ISOLATED`] meanwhile.
    isolated_ops: u64,
    /// Writes of the same keys on the two sides.
    conflict_writes: u64,
}

struct Demo {
    cluster: LocalCluster,
    started: Instant,
    started_wall_ms: u64,
    stats: Arc<LoadStats>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<anyhow::Result<Acked>>>,
    progress_every: Duration,
}

/// Runs the demo, printing progress and the report. `Err` carries the
/// reason when anything failed to converge or a check failed.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().gen());
    let started = Instant::now();
    println!(
        "meridian demo: 3 regions, {} s of writes, seed {seed} (replay the workload with --seed {seed})",
        args.seconds
    );
    let spec = ClusterSpec {
        regions: REGIONS.iter().map(|r| r.to_string()).collect(),
        links: crate::cluster::wan_links(&LINK_DELAYS_MS),
        default_link: LinkConditions::IDEAL,
        seed,
        serve_args: Vec::new(),
        log_filter: "info".into(),
        work_dir_prefix: "meridian-demo".into(),
    };
    let cluster = LocalCluster::start(&spec).await?;
    let mut demo = Demo {
        cluster,
        started,
        started_wall_ms: wall_ms(),
        stats: Arc::new(LoadStats::default()),
        stop: Arc::new(AtomicBool::new(false)),
        workers: Vec::new(),
        progress_every: Duration::from_secs(if args.seconds < 15 { 1 } else { 3 }),
    };
    demo.print_cluster();
    let result = demo.drive_and_check(&args, seed).await;
    demo.stop.store(true, Ordering::Relaxed);
    match result {
        Ok(failures) if failures.is_empty() => {
            println!(
                "\nRESULT: PASS: all 3 regions converged, every check held ({:.1} s in all)",
                demo.started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Ok(failures) => {
            println!("\nRESULT: FAIL");
            for f in &failures {
                println!("  - {f}");
            }
            demo.print_logs();
            Err(anyhow!("demo failed: {}", failures.join("; ")))
        }
        Err(e) => {
            println!("\nRESULT: FAIL: {e:#}");
            demo.print_logs();
            Err(e)
        }
    }
}

impl Demo {
    fn elapsed(&self) -> String {
        format!("[{:5.1}s]", self.started.elapsed().as_secs_f64())
    }

    fn print_cluster(&self) {
        println!(
            "{} 3 regions up, every replication link connected:",
            self.elapsed()
        );
        for r in &self.cluster.regions {
            println!(
                "           {:<11} resp {:<21} http {:<21} pid {}",
                r.name,
                r.resp.to_string(),
                r.http.to_string(),
                r.pid()
            );
        }
        let links: Vec<String> = LINK_DELAYS_MS
            .iter()
            .map(|(a, b, ms)| format!("{a}↔{b} {ms} ms"))
            .collect();
        println!(
            "           emulated one-way delays: {} (±10% jitter)",
            links.join(", ")
        );
    }

    fn print_logs(&mut self) {
        self.cluster.keep_logs();
        println!("Region logs (kept):");
        for r in &self.cluster.regions {
            println!("  {:<11} {}", r.name, r.log_path.display());
        }
    }

    /// The whole scenario: the workload driven through its phases (steady,
    /// partition, heal), then the checks once the regions converged. `Ok`
    /// holds the failed checks (empty: all passed).
    async fn drive_and_check(&mut self, args: &DemoArgs, seed: u64) -> anyhow::Result<Vec<String>> {
        let total = Duration::from_secs(args.seconds);
        let steady = total.mul_f64(0.40);
        let partitioned = total.mul_f64(0.35);
        let healed = total - steady - partitioned;

        // The add-wins scenario needs its members everywhere before the cut.
        let rival = self.region(RIVAL)?;
        let isolated = self.region(ISOLATED)?;
        let mut rival_client = self.client(rival).await?;
        let mut isolated_client = self.client(isolated).await?;
        expect_ok(
            &rival_client
                .cmd(&["SADD", "team:red", "alice", "bob", "carol", "dave"])
                .await?,
        )?;

        let load_started = self.start_load(seed);
        self.wait_visible(isolated, &["SISMEMBER", "team:red", "dave"])
            .await?;
        let lags = self.steady_phase(steady).await?;
        let partition = self
            .partition_phase(partitioned, &mut rival_client, &mut isolated_client)
            .await?;
        self.heal_phase(healed, &partition).await?;
        let (acked, writes_stopped) = self.stop_load().await?;
        let load_secs = writes_stopped.duration_since(load_started).as_secs_f64();
        let digests = self.wait_converged(writes_stopped).await?;
        self.report_and_check(load_secs, &lags, &acked, &digests)
            .await
    }

    /// Starts [`WORKERS_PER_REGION`] workload connections in every region;
    /// returns when the load started.
    fn start_load(&mut self, seed: u64) -> Instant {
        let load_started = Instant::now();
        println!(
            "{} writing in every region: strings, counters, hashes, sets, sorted sets ({} cmd/s per region)",
            self.elapsed(),
            group(RATE_PER_REGION_OPS as i64)
        );
        for (i, r) in self.cluster.regions.iter().enumerate() {
            for w in 0..WORKERS_PER_REGION {
                let worker_seed = seed ^ ((i as u64) << 40) ^ ((w as u64) << 32);
                self.workers.push(tokio::spawn(worker(
                    r.resp,
                    i,
                    r.name.clone(),
                    worker_seed,
                    RATE_PER_REGION_OPS / WORKERS_PER_REGION as u64,
                    self.stop.clone(),
                    self.stats.clone(),
                )));
            }
        }
        load_started
    }

    /// Lets the load run for `length` with every link up while probes time
    /// each link; returns the lag per link.
    async fn steady_phase(&mut self, length: Duration) -> anyhow::Result<Vec<LinkLag>> {
        let addrs: Vec<SocketAddr> = self.cluster.regions.iter().map(|r| r.resp).collect();
        let probes = tokio::spawn(crate::bench::probe_lag(
            addrs,
            Instant::now(),
            Instant::now() + length,
            PROBE_QUIET,
            PROBE_RATE_PER_S,
        ));
        self.run_phase("steady", length).await?;
        // Every probe is seen a link delay after the last one, before the cut.
        let probes = probes.await.context("probe task")??;
        self.link_lags(&probes).await
    }

    /// Cuts [`ISOLATED`] off from both peers for `length` while every region
    /// keeps writing and [`RIVAL`] and [`ISOLATED`] write the same keys.
    async fn partition_phase(
        &mut self,
        length: Duration,
        rival_client: &mut Client,
        isolated_client: &mut Client,
    ) -> anyhow::Result<Partition> {
        let rival = self.region(RIVAL)?;
        let isolated = self.region(ISOLATED)?;
        let ops_before_cut = self.stats.ops[isolated].load(Ordering::Relaxed);
        self.mesh()?.partition(ISOLATED)?;
        let cut_at = Instant::now();
        println!(
            "{} PARTITION: {ISOLATED} cut off from both peers; every region keeps writing, and {RIVAL} and {ISOLATED} write the same keys (profile:*, settings:*, highscore)",
            self.elapsed()
        );
        // Add wins: both sides remove carol, the isolated side adds her back
        // (a new add its peers have not observed); only the rival removes dave.
        expect_ok(
            &rival_client
                .cmd(&["SREM", "team:red", "carol", "dave"])
                .await?,
        )?;
        expect_ok(&isolated_client.cmd(&["SREM", "team:red", "carol"]).await?)?;
        expect_ok(&isolated_client.cmd(&["SADD", "team:red", "carol"]).await?)?;
        let conflict_stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = [rival, isolated]
            .into_iter()
            .enumerate()
            .map(|(side, i)| {
                let r = &self.cluster.regions[i];
                tokio::spawn(conflict_writer(
                    r.resp,
                    r.name.clone(),
                    side,
                    conflict_stop.clone(),
                ))
            })
            .collect();
        self.run_phase("partition", length).await?;
        conflict_stop.store(true, Ordering::Relaxed);
        let mut conflict_writes = 0;
        for w in writers {
            conflict_writes += w.await.context("conflict writer")??;
        }
        Ok(Partition {
            lasted: cut_at.elapsed(),
            isolated_ops: self.stats.ops[isolated].load(Ordering::Relaxed) - ops_before_cut,
            conflict_writes,
        })
    }

    /// Restores [`ISOLATED`]'s links and lets the load run for `length`.
    async fn heal_phase(&mut self, length: Duration, partition: &Partition) -> anyhow::Result<()> {
        self.mesh()?.heal_all();
        println!(
            "{} HEAL: links to {ISOLATED} restored after {:.1} s ({} commands ran there meanwhile, {} conflicting writes on the two sides)",
            self.elapsed(),
            partition.lasted.as_secs_f64(),
            group(partition.isolated_ops as i64),
            group(partition.conflict_writes as i64)
        );
        self.run_phase("healed", length).await
    }

    /// Stops the workload; returns the increments the regions acknowledged,
    /// summed over every connection, and when the writes stopped.
    async fn stop_load(&mut self) -> anyhow::Result<(Acked, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        let writes_stopped = Instant::now();
        let mut acked = Acked::new();
        for w in self.workers.drain(..) {
            for (counter, n) in w.await.context("workload task")?? {
                *acked.entry(counter).or_insert(0) += n;
            }
        }
        Ok((acked, writes_stopped))
    }

    /// Waits for the regions to converge once the writes stopped; returns
    /// their digests.
    async fn wait_converged(&mut self, writes_stopped: Instant) -> anyhow::Result<Vec<Value>> {
        println!(
            "{} writes stopped; waiting for the regions to converge",
            self.elapsed()
        );
        let digests = self.converge().await?;
        let converge_secs = writes_stopped.elapsed().as_secs_f64();
        println!(
            "{} converged {:.2} s after the last write: equal state digests and version vectors",
            self.elapsed(),
            converge_secs
        );
        Ok(digests)
    }

    /// The report, with every check made against what the drivers recorded.
    /// Returns the failed checks.
    async fn report_and_check(
        &self,
        load_secs: f64,
        lags: &[LinkLag],
        acked: &Acked,
        digests: &[Value],
    ) -> anyhow::Result<Vec<String>> {
        let mut failures = Vec::new();
        let total_ops = self.stats.total_ops();
        let errors = self.stats.errors.load(Ordering::Relaxed);
        println!("\n══ Report ══════════════════════════════════════════════════════════════");
        println!(
            "Workload: {} commands acknowledged in {:.1} s ({} cmd/s), {} errors",
            group(total_ops as i64),
            load_secs,
            group((total_ops as f64 / load_secs.max(0.001)) as i64),
            group(errors as i64)
        );
        if errors > 0 {
            for sample in self.stats.error_samples.lock().iter() {
                println!("  {sample}");
            }
            failures.push(format!("{errors} commands answered with an error"));
        }
        print_lags(lags);
        self.report_conflicts(&mut failures).await?;
        self.check_counters(acked, &mut failures).await?;
        self.check_add_wins(&mut failures).await?;
        print_digests(&self.cluster, digests);
        self.report_wire().await?;
        Ok(failures)
    }

    fn region(&self, name: &str) -> anyhow::Result<usize> {
        self.cluster
            .index(name)
            .ok_or_else(|| anyhow!("no region {name}"))
    }

    fn mesh(&self) -> anyhow::Result<&meridian_netem::Mesh> {
        self.cluster
            .mesh
            .as_ref()
            .ok_or_else(|| anyhow!("the demo cluster has no mesh"))
    }

    async fn client(&self, i: usize) -> anyhow::Result<Client> {
        Ok(Client::connect(self.cluster.regions[i].resp).await?)
    }

    /// Waits until `command` answers 1 in region `i`.
    async fn wait_visible(&mut self, i: usize, command: &[&str]) -> anyhow::Result<()> {
        let mut client = self.client(i).await?;
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while frame_i64(&client.cmd(command).await?) != Some(1) {
            if Instant::now() > deadline {
                bail!(
                    "{} never became true in {}",
                    command.join(" "),
                    self.cluster.regions[i].name
                );
            }
            self.cluster.check_alive()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Lets the workload run for `length`, printing progress and failing
    /// early if a region died or a workload task stopped.
    async fn run_phase(&mut self, label: &str, length: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + length;
        let mut last_ops: Vec<u64> = self.region_ops();
        let mut last_at = Instant::now();
        while Instant::now() < end {
            let next = (Instant::now() + self.progress_every).min(end);
            tokio::time::sleep_until(next.into()).await;
            self.cluster.check_alive()?;
            if let Some(i) = self.workers.iter().position(|w| w.is_finished()) {
                let failed = self.workers.swap_remove(i);
                return match failed.await {
                    Ok(Err(e)) => Err(e.context("a workload connection failed")),
                    Ok(Ok(_)) => Err(anyhow!("a workload task stopped early")),
                    Err(e) => Err(anyhow!("a workload task panicked: {e}")),
                };
            }
            let now_ops = self.region_ops();
            let secs = last_at.elapsed().as_secs_f64().max(0.001);
            let rates: Vec<String> = REGIONS
                .iter()
                .zip(now_ops.iter().zip(&last_ops))
                .map(|(r, (now, before))| {
                    format!("{r} {}", group(((now - before) as f64 / secs) as i64))
                })
                .collect();
            let total: u64 = now_ops.iter().sum::<u64>() - last_ops.iter().sum::<u64>();
            let (lag_ms, lag_ops) = self.max_link_lag().await?;
            println!(
                "{} {label:<9} {:>6} cmd/s ({})  oldest unacked op {} ms, {} ops behind",
                self.elapsed(),
                group((total as f64 / secs) as i64),
                rates.join(" · "),
                group(lag_ms as i64),
                group(lag_ops as i64)
            );
            last_ops = now_ops;
            last_at = Instant::now();
        }
        Ok(())
    }

    fn region_ops(&self) -> Vec<u64> {
        self.stats
            .ops
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }

    /// The worst `lag_ms` and `lag_ops` any region reports for any peer.
    async fn max_link_lag(&self) -> anyhow::Result<(u64, u64)> {
        let (mut ms, mut ops) = (0, 0);
        for i in 0..self.cluster.regions.len() {
            let status = self.cluster.status(i).await?;
            for p in peers(&status) {
                ms = ms.max(p["lag_ms"].as_u64().unwrap_or(0));
                ops = ops.max(p["lag_ops"].as_u64().unwrap_or(0));
            }
        }
        Ok((ms, ops))
    }

    /// Probe lag and the receivers' apply-lag percentiles, per directed pair.
    async fn link_lags(&self, probes: &crate::bench::ProbeLag) -> anyhow::Result<Vec<LinkLag>> {
        let mut lags = Vec::new();
        for (i, to) in self.cluster.regions.iter().enumerate() {
            let status = self.cluster.status(i).await?;
            for p in peers(&status) {
                let from = p["id"].as_str().unwrap_or("?").to_string();
                let delay_ms = self
                    .cluster
                    .link_delays_ms
                    .get(&(from.clone(), to.name.clone()))
                    .copied()
                    .unwrap_or(0);
                let from_index = self.region(&from)?;
                lags.push(LinkLag {
                    probe_ms: probes
                        .by_pair_ms
                        .get(&(from_index, i))
                        .cloned()
                        .unwrap_or_default(),
                    from,
                    to: to.name.clone(),
                    delay_ms,
                    p50_ms: p["apply_lag_p50_ms"].as_u64(),
                    p99_ms: p["apply_lag_p99_ms"].as_u64(),
                });
            }
        }
        lags.sort_by_key(|l| l.delay_ms);
        Ok(lags)
    }

    /// Polls every region's digest until all digests and version vectors
    /// are equal; returns the digests.
    async fn converge(&mut self) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut next_progress = Instant::now() + Duration::from_secs(2);
        loop {
            self.cluster.check_alive()?;
            let mut digests = Vec::new();
            for i in 0..self.cluster.regions.len() {
                digests.push(self.cluster.digest(i).await?);
            }
            let same = digests.windows(2).all(|w| {
                w[0]["digest"] == w[1]["digest"] && w[0]["version_vector"] == w[1]["version_vector"]
            });
            if same {
                return Ok(digests);
            }
            if Instant::now() > deadline {
                print_digests(&self.cluster, &digests);
                bail!("the regions did not converge within {CONVERGE_TIMEOUT:?} of the last write");
            }
            if Instant::now() > next_progress {
                let (lag_ms, lag_ops) = self.max_link_lag().await?;
                println!(
                    "{} converging: digests still differ; oldest unacked op {} ms, {} ops behind",
                    self.elapsed(),
                    group(lag_ms as i64),
                    group(lag_ops as i64)
                );
                next_progress = Instant::now() + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn report_conflicts(&self, failures: &mut Vec<String>) -> anyhow::Result<()> {
        println!("\nConflicts: concurrent writes a merge rule resolved; every loser is kept in the journal");
        for (i, r) in self.cluster.regions.iter().enumerate() {
            let status = self.cluster.status(i).await?;
            let by_rule: Vec<(String, u64)> = status["conflicts"]["by_type_rule"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        format!(
                            "{}/{}",
                            c["type"].as_str().unwrap_or("?"),
                            c["rule"].as_str().unwrap_or("?")
                        ),
                        c["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let total: u64 = by_rule.iter().map(|(_, n)| n).sum();
            let parts: Vec<String> = by_rule
                .iter()
                .map(|(rule, n)| format!("{rule} {}", group(*n as i64)))
                .collect();
            println!(
                "  {:<11} {:>7} found   {}",
                r.name,
                group(total as i64),
                parts.join(" · ")
            );
        }
        // The deliberately conflicting keys must be in every region's journal.
        let deliberate = ["profile:0", "settings:0", "highscore"];
        let mut examples = Vec::new();
        for (i, r) in self.cluster.regions.iter().enumerate() {
            for key in deliberate {
                let page = self.cluster.conflicts(i, 1, Some(key)).await?;
                match page["conflicts"].as_array().and_then(|c| c.first()) {
                    Some(entry) => {
                        if r.name == RIVAL {
                            examples.push(entry.clone());
                        }
                    }
                    None => failures.push(format!(
                        "{}'s conflict journal has no entry for {key}, written on both sides of the partition",
                        r.name
                    )),
                }
            }
        }
        // And one the ordinary workload produced, if any.
        let rival = self.region(RIVAL)?;
        let newest = self.cluster.conflicts(rival, 200, None).await?;
        if let Some(entry) = newest["conflicts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["key"].as_str().is_some_and(|k| k.starts_with("user:")))
        {
            examples.push(entry.clone());
        }
        println!("  examples from {RIVAL}'s journal (GET /v1/conflicts):");
        for e in &examples {
            println!("{}", self.conflict_line(e));
        }
        Ok(())
    }

    fn conflict_line(&self, e: &Value) -> String {
        let side = |s: &Value| {
            let value = s["value"].as_str().unwrap_or("");
            let shown: String = value.chars().take(24).collect();
            let t = s["hlc_ms"].as_u64().map_or_else(String::new, |ms| {
                format!(
                    " t+{:.3}s",
                    ms.saturating_sub(self.started_wall_ms) as f64 / 1000.0
                )
            });
            format!("{shown:?} ({}{t})", s["region"].as_str().unwrap_or("?"))
        };
        let mut target = e["key"].as_str().unwrap_or("?").to_string();
        if let Some(field) = e["field"].as_str() {
            let _ = write!(target, " {field}");
        }
        format!(
            "    {:<6} {:<20} {:<5} winner {:<36} loser {}",
            e["type"].as_str().unwrap_or("?"),
            target,
            e["rule"].as_str().unwrap_or("?"),
            side(&e["winner"]),
            side(&e["loser"])
        )
    }

    async fn check_counters(
        &self,
        acked: &Acked,
        failures: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        println!("\nCounters: the sum of acknowledged increments from all regions vs. the value each region shows");
        let mut header = format!("  {:<34} {:>10}", "counter", "expected");
        for r in &self.cluster.regions {
            let _ = write!(header, "  {:>12}", r.name);
        }
        println!("{header}");
        let mut clients = Vec::new();
        for i in 0..self.cluster.regions.len() {
            clients.push(self.client(i).await?);
        }
        let mut mismatches = 0;
        for (counter, sum) in acked {
            let expected = counter.expected(*sum);
            let mut line = format!("  {:<34} {:>10}", counter.label(), counter.render(expected));
            for (i, client) in clients.iter_mut().enumerate() {
                let reply = client.cmd(&counter.read_command()).await?;
                let got = match reply {
                    Frame::Null => Some(0.0),
                    ref other => frame_f64(other),
                };
                let ok = got == Some(expected);
                if !ok {
                    mismatches += 1;
                    failures.push(format!(
                        "{} in {}: expected {}, found {}",
                        counter.label(),
                        self.cluster.regions[i].name,
                        counter.render(expected),
                        got.map_or_else(|| format!("{reply:?}"), |g| counter.render(g))
                    ));
                }
                let shown = got.map_or_else(|| "?".to_string(), |g| counter.render(g));
                let _ = write!(line, "  {:>10} {}", shown, if ok { "✓" } else { "✗" });
            }
            println!("{line}");
        }
        println!(
            "  counters: {} checked in {} regions, {}",
            acked.len(),
            clients.len(),
            if mismatches == 0 {
                "all equal to the sum of acknowledged increments ✓".to_string()
            } else {
                format!("{mismatches} MISMATCHES ✗")
            }
        );
        Ok(())
    }

    async fn check_add_wins(&self, failures: &mut Vec<String>) -> anyhow::Result<()> {
        println!("\nSets: add wins over a concurrent remove; a remove nobody raced stays removed");
        let cases = [
            (
                "carol",
                true,
                format!(
                    "removed in {RIVAL}, removed and re-added in {ISOLATED} during the partition"
                ),
            ),
            ("dave", false, format!("removed in {RIVAL} only")),
        ];
        for (member, expected, story) in cases {
            let mut seen = Vec::new();
            for i in 0..self.cluster.regions.len() {
                let mut client = self.client(i).await?;
                let present =
                    frame_i64(&client.cmd(&["SISMEMBER", "team:red", member]).await?) == Some(1);
                seen.push(present);
            }
            let ok = seen.iter().all(|p| *p == expected);
            println!(
                "  team:red {member:<6} {story} → {} in all {} regions {}",
                if expected { "present" } else { "absent" },
                seen.len(),
                if ok { "✓" } else { "✗" }
            );
            if !ok {
                failures.push(format!(
                    "team:red {member} should be {} everywhere, found {seen:?} in {REGIONS:?}",
                    if expected { "present" } else { "absent" }
                ));
            }
        }
        Ok(())
    }

    async fn report_wire(&self) -> anyhow::Result<()> {
        let (mut ops_sent, mut bytes_sent, mut duplicates, mut applied) = (0u64, 0u64, 0u64, 0u64);
        for i in 0..self.cluster.regions.len() {
            let status = self.cluster.status(i).await?;
            for p in peers(&status) {
                ops_sent += p["ops_sent"].as_u64().unwrap_or(0);
                bytes_sent += p["bytes_sent"].as_u64().unwrap_or(0);
                duplicates += p["duplicates"].as_u64().unwrap_or(0);
                applied += p["ops_applied"].as_u64().unwrap_or(0);
            }
        }
        let proxied: u64 = self.proxy_bytes();
        println!(
            "\nWire (replication streams, from /v1/status; proxies counted by the WAN emulator)"
        );
        println!(
            "  ops shipped {} ({} applied, {} arrived twice via a relay and were skipped)",
            group(ops_sent as i64),
            group(applied as i64),
            group(duplicates as i64)
        );
        println!(
            "  op stream {} → {:.0} bytes per op shipped; through the proxies {} both ways (ops, acks, heartbeats)",
            megabytes(bytes_sent),
            bytes_sent as f64 / ops_sent.max(1) as f64,
            megabytes(proxied)
        );
        Ok(())
    }

    fn proxy_bytes(&self) -> u64 {
        let Some(mesh) = &self.cluster.mesh else {
            return 0;
        };
        let mut total = 0;
        for a in REGIONS {
            for b in REGIONS {
                if let Ok(link) = mesh.link(a, b) {
                    let s = link.stats();
                    total += s.bytes_forward + s.bytes_backward;
                }
            }
        }
        total
    }
}

fn print_lags(lags: &[LinkLag]) {
    println!("\nReplication lag before the partition, in ms");
    println!("  write → visible: a probe SET acknowledged in one region until a GET sees it in another (polled every 1 ms)");
    println!("  link apply lag: apply time − origin write time of the ops arriving over the link (GET /v1/status)");
    println!(
        "  {:<26} {:>6}   {:>17} {:>6} {:>7}   {:>14} {:>6}",
        "from → to", "delay", "write→visible p50", "p99", "probes", "link apply p50", "p99"
    );
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let probe = |v: &[f64], q: f64| {
        if v.is_empty() {
            "-".to_string()
        } else {
            let at = ((v.len() - 1) as f64 * q).round() as usize;
            format!("{:.1}", v[at])
        }
    };
    for l in lags {
        println!(
            "  {:<26} {:>6}   {:>17} {:>6} {:>7}   {:>14} {:>6}",
            format!("{} → {}", l.from, l.to),
            l.delay_ms,
            probe(&l.probe_ms, 0.5),
            probe(&l.probe_ms, 0.99),
            l.probe_ms.len(),
            ms(l.p50_ms),
            ms(l.p99_ms)
        );
    }
    println!("  (a link also carries a third region's ops when relaying is faster or the direct path stalls, so its apply lag can exceed its delay)");
}

fn print_digests(cluster: &LocalCluster, digests: &[Value]) {
    println!("\nState digests (GET /v1/digest)");
    for (r, d) in cluster.regions.iter().zip(digests) {
        let vv: Vec<String> = d["version_vector"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", group(v.as_i64().unwrap_or(0))))
            .collect();
        println!(
            "  {:<11} {}  {:>7} keys  version vector {}",
            r.name,
            d["digest"].as_str().unwrap_or("?"),
            group(d["keys"].as_i64().unwrap_or(0)),
            vv.join(" ")
        );
    }
    let equal = digests.windows(2).all(|w| w[0]["digest"] == w[1]["digest"]);
    println!(
        "  {}",
        if equal {
            "digests equal in every region ✓"
        } else {
            "digests DIFFER ✗"
        }
    );
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `1234567` → `1,234,567`.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    let out = groups.join(",");
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::workload::mixed_command;
    use super::*;

    #[test]
    fn group_inserts_thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(-1234567), "-1,234,567");
    }

    #[test]
    fn quarter_counters_render_exactly() {
        let c = Counter::Quarters("balance:eur".into());
        assert_eq!(c.expected(-3), -0.75);
        assert_eq!(c.render(c.expected(1251)), "312.75");
    }

    #[test]
    fn mixed_commands_replay_from_a_seed() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|n| mixed_command(&mut rng, "eu-west", n).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
    }
}
