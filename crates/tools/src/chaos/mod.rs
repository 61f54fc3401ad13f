//! `meridian chaos`: the chaos harness on real processes.
//!
//! Three data regions and a witness run as `meridian serve` children
//! (`--fsync always`) linked through the WAN fault proxy. A concurrent client
//! load ([`workload`]) records every operation with its outcome in
//! `history.jsonl`; the fault injector ([`faults`]) partitions, cuts, heals,
//! slows links, `kill -9`s and restarts regions and skews their clocks. At
//! the end every fault is healed and every region restarted, the regions
//! must converge within a bound, and the offline checker ([`check`]) reads
//! the history and the final state. Any anomaly makes the command fail with
//! the seed that replays the run's choices (the timing of real processes
//! is not replayable).
//!
//! Layout: [`history`] the record format, [`workload`] the drivers,
//! [`faults`] the injector, [`journal`] the reader of the regions' conflict
//! journals, [`check`] the checker; this file wires them and prints the
//! report.

pub mod check;
pub mod faults;
pub mod history;
pub mod journal;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use self::check::{Barrier, KeyState, RegionState};
use self::history::{Header, HistoryWriter};
use self::workload::Workload;
use crate::cluster::{ClusterSpec, LocalCluster, StartOptions};
use crate::rclient::{frame_text, Client};

/// The data regions and the witness, in start order.
const DATA_REGIONS: [&str; 3] = ["eu-west", "eu-central", "us-east"];
const WITNESS: &str = "witness";
/// One-way delay of each pair's links at start (and after the final heal).
const LINK_DELAYS_MS: [(&str, &str, u64); 6] = [
    ("eu-west", "eu-central", 20),
    ("eu-west", "us-east", 40),
    ("eu-central", "us-east", 70),
    ("witness", "eu-west", 30),
    ("witness", "eu-central", 30),
    ("witness", "us-east", 50),
];
/// Conflict-journal entries each region keeps: far more than a run writes,
/// so the journals read at the end are whole.
const CONFLICT_RETENTION: u64 = 100_000_000;
/// How often the run prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Seed of the workload's and the injector's choices (random by default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds of load under faults; start-up, healing, convergence and the
    /// check come on top.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Pause between faults in ms, `MIN-MAX` (drawn uniformly) or one number.
    #[arg(long, default_value = "2000-4000", value_parser = parse_interval)]
    pub fault_interval_ms: (u64, u64),
    /// Keep the run directory here (history, faults, final state, region
    /// logs and data). By default a temp dir, kept only on failure.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keyspace policy for the data regions, PATTERN=POLICY (repeatable);
    /// default active-active everywhere.
    #[arg(long)]
    pub policy: Vec<String>,
    /// Passed to every region: log records kept for lagging peers; a small
    /// value makes partitioned regions repair by anti-entropy.
    #[arg(long)]
    pub repl_backlog_ops: Option<u64>,
    /// Passed to every region: ops after which a snapshot compacts the log;
    /// a small value makes restarts recover from snapshots.
    #[arg(long)]
    pub snapshot_after_ops: Option<u64>,
    /// Passed to every region: how often tombstone collection rounds start.
    /// Once the regions converged, every hidden key must be collected.
    #[arg(long, default_value_t = 1000)]
    pub tombstone_interval_ms: u64,
    /// Client connections per data region.
    #[arg(long, default_value_t = 3)]
    pub clients_per_region: u32,
    /// Each client pauses up to this long between commands.
    #[arg(long, default_value_t = 10)]
    pub think_ms: u64,
    /// How long the regions may take to converge once faults stop.
    #[arg(long, default_value_t = 120)]
    pub converge_timeout_secs: u64,
    /// Only check a finished run: read DIR/history.jsonl and DIR/final.json.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["seed", "dir"])]
    pub check: Option<PathBuf>,
}

fn parse_interval(text: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (text.trim(), text.trim()),
    };
    let lo: u64 = lo
        .parse()
        .map_err(|_| format!("{text:?}: use MIN-MAX in ms"))?;
    let hi: u64 = hi
        .parse()
        .map_err(|_| format!("{text:?}: use MIN-MAX in ms"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{text:?}: need 0 < MIN <= MAX"));
    }
    Ok((lo, hi))
}

/// The final state file of a run, for `--check`.
#[derive(Serialize, Deserialize)]
struct Finals {
    regions: Vec<RegionState>,
    barrier: Option<Barrier>,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.check {
        return check_only(dir);
    }
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().gen());
    println!(
        "meridian chaos: seed {seed} (replay the choices with --seed {seed}), {} s of faults every {}-{} ms",
        args.duration, args.fault_interval_ms.0, args.fault_interval_ms.1
    );
    let started = Instant::now();
    let mut cluster = start_cluster(&args, seed).await?;
    let dir = cluster.work_dir().to_path_buf();
    println!("run directory: {}", dir.display());
    for r in &cluster.regions {
        println!(
            "  {:<11} resp {:<21} http {:<21} pid {}",
            r.name,
            r.resp.to_string(),
            r.http.to_string(),
            r.pid()
        );
    }
    let outcome = drive(&args, seed, &mut cluster, &dir, started).await;
    match outcome {
        Ok(0) => {
            println!("RESULT: PASS (seed {seed})");
            Ok(())
        }
        Ok(anomalies) => {
            cluster.keep_logs();
            println!(
                "RESULT: FAIL: {anomalies} anomalies (seed {seed}); run directory kept: {}",
                dir.display()
            );
            Err(anyhow!("{anomalies} anomalies; replay with --seed {seed}"))
        }
        Err(e) => {
            cluster.keep_logs();
            println!(
                "RESULT: FAIL: {e:#} (seed {seed}); run directory kept: {}",
                dir.display()
            );
            Err(e.context(format!("chaos run with seed {seed}")))
        }
    }
}

/// The `serve` flags of every region.
fn serve_args(args: &ChaosArgs) -> Vec<String> {
    let mut out: Vec<String> = ["--fsync", "always", "--conflict-retention"]
        .map(String::from)
        .to_vec();
    out.push(CONFLICT_RETENTION.to_string());
    if let Some(n) = args.repl_backlog_ops {
        out.extend(["--repl-backlog-ops".to_string(), n.to_string()]);
    }
    if let Some(n) = args.snapshot_after_ops {
        out.extend(["--snapshot-after-ops".to_string(), n.to_string()]);
    }
    out.extend([
        "--tombstone-interval-ms".to_string(),
        args.tombstone_interval_ms.to_string(),
    ]);
    out
}

/// Once the regions converged and nothing is written, every region holds
/// every delete, so tombstone collection must leave no hidden key. Returns
/// the incarnations and TTLs collected (since each region's last start), or
/// why some remain.
async fn tombstones_collected(
    cluster: &LocalCluster,
    data: usize,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut collected = 0;
        let mut hidden = Vec::new();
        for i in 0..data {
            let status = cluster.status(i).await.map_err(|e| e.to_string())?;
            let t = &status["tombstones"];
            collected += t["collected"].as_u64().unwrap_or(0);
            let left = t["hidden_keys"].as_u64().unwrap_or(0);
            if left > 0 {
                hidden.push(format!("{}: {left} hidden keys, {t}", status["region"]));
            }
        }
        if hidden.is_empty() {
            return Ok(collected);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(hidden.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_cluster(args: &ChaosArgs, seed: u64) -> anyhow::Result<LocalCluster> {
    let mut regions: Vec<String> = DATA_REGIONS.iter().map(|r| r.to_string()).collect();
    regions.push(WITNESS.to_string());
    let spec = ClusterSpec {
        regions,
        links: crate::cluster::wan_links(&LINK_DELAYS_MS),
        default_link: LinkConditions::IDEAL,
        seed,
        serve_args: serve_args(args),
        log_filter: "info".into(),
        work_dir_prefix: "meridian-chaos".into(),
    };
    let mut options = StartOptions {
        work_dir: args.dir.clone(),
        ..StartOptions::default()
    };
    options
        .region_args
        .insert(WITNESS.to_string(), vec!["--witness".to_string()]);
    for r in DATA_REGIONS {
        let policies = args
            .policy
            .iter()
            .flat_map(|p| ["--policy".to_string(), p.clone()])
            .collect();
        options.region_args.insert(r.to_string(), policies);
    }
    LocalCluster::start_with(&spec, &options).await
}

/// Load, faults, heal, convergence, check. `Ok` holds the anomaly count.
///
/// The drivers (the workload's clients, the fault injector, the epilogue)
/// only act and record; what the regions must show is checked after they
/// stopped: convergence, tombstone collection, then the offline checker
/// over the history and the final states.
async fn drive(
    args: &ChaosArgs,
    seed: u64,
    cluster: &mut LocalCluster,
    dir: &Path,
    started: Instant,
) -> anyhow::Result<usize> {
    let data: Vec<String> = DATA_REGIONS.iter().map(|r| r.to_string()).collect();
    let header = Header {
        seed,
        regions: data.clone(),
    };
    let history_path = dir.join("history.jsonl");
    let (recorder, tx) = HistoryRecorder::start(&history_path, &header)?;
    let (load, clients) = start_load(args, seed, cluster, &data, started, tx);
    let mut injector = faults::Injector::new(seed, cluster, data.len(), started, dir)?;
    inject_faults(
        args,
        seed,
        cluster,
        &load,
        &mut injector,
        &recorder,
        started,
    )
    .await?;
    injector.heal_everything(cluster, &load).await?;
    stop_load(&load, clients, &recorder, started).await?;

    let converged = wait_converged(args, cluster, data.len(), started).await?;
    let mut barrier = None;
    if converged.is_ok() {
        barrier = Some(barrier_then_epilogue(cluster, &data, &load, seed, started).await?);
    }
    load.close_history();
    recorder.finish()?;
    // The epilogue wrote after the first convergence: converge again.
    let converged = match converged {
        Ok(_) => {
            converge(
                cluster,
                data.len(),
                Duration::from_secs(args.converge_timeout_secs),
            )
            .await?
        }
        failed => failed,
    };
    injector.restart_crashed(cluster, &load).await?;
    let tombstones =
        tombstones_after_convergence(args, cluster, data.len(), &converged, started).await;
    let finals = Finals {
        regions: final_states(cluster, &data, dir).await?,
        barrier,
    };
    save_finals(&finals, dir, started)?;

    let (_, ops) = history::read_history(&history_path)?;
    let report = check::check(&check::Input {
        regions: &data,
        ops: &ops,
        finals: &finals.regions,
        barrier: finals.barrier.as_ref(),
    });
    let extra = run_anomalies(args, converged, tombstones, &injector);
    print_report(&report, &injector.counts, &extra, seed);
    Ok(report.anomalies.len() + extra.len())
}

/// The thread that appends every operation the workload records to
/// `history.jsonl`, and how many it has appended.
struct HistoryRecorder {
    recorded: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl HistoryRecorder {
    /// Creates the history at `path`; returns the recorder and the sender
    /// the workload records into. The history ends when every sender is gone.
    fn start(
        path: &Path,
        header: &Header,
    ) -> anyhow::Result<(HistoryRecorder, UnboundedSender<history::Op>)> {
        let mut writer = HistoryWriter::create(path, header)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let recorded = Arc::new(AtomicU64::new(0));
        let thread = {
            let recorded = recorded.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                while let Some(op) = rx.blocking_recv() {
                    writer.append(&op)?;
                    recorded.fetch_add(1, Ordering::Relaxed);
                }
                writer.finish()
            })
        };
        Ok((HistoryRecorder { recorded, thread }, tx))
    }

    fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Waits for the history to be written out and closed.
    fn finish(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow!("the history writer panicked"))?
    }
}

/// Starts `--clients-per-region` workload clients in every data region,
/// recording into `record`.
fn start_load(
    args: &ChaosArgs,
    seed: u64,
    cluster: &LocalCluster,
    data: &[String],
    started: Instant,
    record: UnboundedSender<history::Op>,
) -> (Arc<Workload>, Vec<tokio::task::JoinHandle<()>>) {
    let addrs: Vec<SocketAddr> = cluster.regions[..data.len()]
        .iter()
        .map(|r| r.resp)
        .collect();
    let load = Workload::new(data.to_vec(), addrs, started, args.think_ms, record);
    let mut clients = Vec::new();
    for region in 0..data.len() {
        for k in 0..args.clients_per_region {
            let id = region as u32 * args.clients_per_region + k;
            let client_seed = seed ^ (u64::from(id) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            clients.push(tokio::spawn(workload::client(
                load.clone(),
                region,
                id,
                client_seed,
            )));
        }
    }
    println!(
        "[{:7.2}s] load started: {} clients per data region, faults from now on",
        started.elapsed().as_secs_f64(),
        args.clients_per_region
    );
    (load, clients)
}

/// For `--duration` seconds: a fault every `--fault-interval-ms`, regions
/// that crashed on their own started again, and progress printed.
async fn inject_faults(
    args: &ChaosArgs,
    seed: u64,
    cluster: &mut LocalCluster,
    load: &Workload,
    injector: &mut faults::Injector,
    recorder: &HistoryRecorder,
    started: Instant,
) -> anyhow::Result<()> {
    let faults_end = Instant::now() + Duration::from_secs(args.duration);
    let (lo, hi) = args.fault_interval_ms;
    let mut interval_rng = rand::rngs::StdRng::seed_from_u64(seed.rotate_left(17));
    let mut next_fault = Instant::now() + Duration::from_millis(interval_rng.gen_range(lo..=hi));
    let mut next_progress = Instant::now() + PROGRESS_EVERY;

    while Instant::now() < faults_end {
        let wake = next_fault
            .min(faults_end)
            .min(Instant::now() + Duration::from_millis(250));
        tokio::time::sleep_until(wake.into()).await;
        injector.restart_crashed(cluster, load).await?;
        if Instant::now() >= next_fault && Instant::now() < faults_end {
            let fault = injector.choose();
            injector.inject(fault, cluster, load).await?;
            next_fault = Instant::now() + Duration::from_millis(interval_rng.gen_range(lo..=hi));
        }
        if Instant::now() >= next_progress {
            println!(
                "[{:7.2}s] progress: {} operations recorded, {} faults",
                started.elapsed().as_secs_f64(),
                recorder.recorded(),
                injector.total()
            );
            next_progress += PROGRESS_EVERY;
        }
    }
    Ok(())
}

/// Stops the workload and waits for every client to finish.
async fn stop_load(
    load: &Workload,
    clients: Vec<tokio::task::JoinHandle<()>>,
    recorder: &HistoryRecorder,
    started: Instant,
) -> anyhow::Result<()> {
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.context("a workload client panicked")?;
    }
    println!(
        "[{:7.2}s] load stopped after {} operations; waiting for convergence",
        started.elapsed().as_secs_f64(),
        recorder.recorded()
    );
    Ok(())
}

/// [`converge`] once the faults stopped, printing how it went.
async fn wait_converged(
    args: &ChaosArgs,
    cluster: &LocalCluster,
    data_regions: usize,
    started: Instant,
) -> anyhow::Result<Result<String, String>> {
    let converge_started = Instant::now();
    let converged = converge(
        cluster,
        data_regions,
        Duration::from_secs(args.converge_timeout_secs),
    )
    .await?;
    match &converged {
        Ok(digest) => println!(
            "[{:7.2}s] converged in {:.2} s: digest {digest} in every data region",
            started.elapsed().as_secs_f64(),
            converge_started.elapsed().as_secs_f64()
        ),
        Err(why) => println!(
            "[{:7.2}s] NOT converged after {} s: {why}",
            started.elapsed().as_secs_f64(),
            args.converge_timeout_secs
        ),
    }
    Ok(converged)
}

/// Once the regions converged: the barrier (now, and the converged version
/// vector), then the epilogue's writes, one at a time.
async fn barrier_then_epilogue(
    cluster: &LocalCluster,
    data: &[String],
    load: &Workload,
    seed: u64,
    started: Instant,
) -> anyhow::Result<Barrier> {
    let barrier = Barrier {
        at_us: load.now_us(),
        vv: version_vector(cluster, data).await?,
    };
    let acked = workload::epilogue(load, seed.rotate_left(29)).await?;
    println!(
        "[{:7.2}s] epilogue: {acked} register and hash-field writes, one at a time",
        started.elapsed().as_secs_f64()
    );
    Ok(barrier)
}

/// [`tombstones_collected`], given ten collection rounds and 5 s, once
/// the regions converged (`Ok(0)` if they did not: that is reported as
/// its own anomaly); prints the count when no hidden key is left.
async fn tombstones_after_convergence(
    args: &ChaosArgs,
    cluster: &LocalCluster,
    data_regions: usize,
    converged: &Result<String, String>,
    started: Instant,
) -> Result<u64, String> {
    let tombstones = match converged {
        Ok(_) => {
            let every = Duration::from_millis(args.tombstone_interval_ms);
            tombstones_collected(cluster, data_regions, every * 10 + Duration::from_secs(5)).await
        }
        Err(_) => Ok(0),
    };
    if let Ok(n) = &tombstones {
        println!(
            "[{:7.2}s] no hidden key left: {n} tombstones collected (since each region's last start)",
            started.elapsed().as_secs_f64()
        );
    }
    tombstones
}

/// Writes `final.json` for `--check`.
fn save_finals(finals: &Finals, dir: &Path, started: Instant) -> anyhow::Result<()> {
    let journaled: usize = finals
        .regions
        .iter()
        .flat_map(|r| r.conflicts.values())
        .map(Vec::len)
        .sum();
    println!(
        "[{:7.2}s] regions stopped; {journaled} conflict-journal entries of registers and hashes read from their data dirs",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join("final.json"), serde_json::to_vec(finals)?)?;
    Ok(())
}

/// The anomalies of the run itself, on top of the checker's: no
/// convergence, hidden keys left, regions that crashed.
fn run_anomalies(
    args: &ChaosArgs,
    converged: Result<String, String>,
    tombstones: Result<u64, String>,
    injector: &faults::Injector,
) -> Vec<String> {
    let mut extra = Vec::new();
    if let Err(why) = converged {
        extra.push(format!(
            "[convergence] regions differ {} s after the faults stopped: {why}",
            args.converge_timeout_secs
        ));
    }
    if let Err(why) = tombstones {
        extra.push(format!(
            "[tombstones] hidden keys left after convergence: {why}"
        ));
    }
    extra.extend(injector.crashes.iter().map(|c| format!("[crash] {c}")));
    extra
}

/// Waits until every data region reports the same digest and version
/// vector. The inner `Err` says how they still differ at the deadline.
async fn converge(
    cluster: &LocalCluster,
    data_regions: usize,
    timeout: Duration,
) -> anyhow::Result<Result<String, String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for i in 0..data_regions {
            match cluster.digest(i).await {
                Ok(d) => seen.push(d),
                Err(e) => seen.push(serde_json::json!({"error": e.to_string()})),
            }
        }
        let same = seen.windows(2).all(|w| {
            w[0]["digest"] == w[1]["digest"] && w[0]["version_vector"] == w[1]["version_vector"]
        }) && seen.iter().all(|d| d["digest"].is_string());
        if same {
            return Ok(Ok(seen[0]["digest"].as_str().unwrap_or("?").to_string()));
        }
        if Instant::now() > deadline {
            let lines: Vec<String> = cluster.regions[..data_regions]
                .iter()
                .zip(&seen)
                .map(|(r, d)| format!("{}: {d}", r.name))
                .collect();
            return Ok(Err(lines.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The (converged) version vector of the first data region, indexed like
/// `data`.
async fn version_vector(cluster: &LocalCluster, data: &[String]) -> anyhow::Result<history::Vv> {
    let digest = cluster.digest(0).await?;
    Ok(data
        .iter()
        .map(|r| digest["version_vector"][r].as_u64().unwrap_or(0))
        .collect())
}

/// Every workload key's value in every data region, then (the regions
/// stopped) the conflict journal entries of every register and hash.
async fn final_states(
    cluster: &mut LocalCluster,
    data: &[String],
    dir: &Path,
) -> anyhow::Result<Vec<RegionState>> {
    let keys = workload::all_keys();
    let mut out = Vec::new();
    for (i, name) in data.iter().enumerate() {
        let mut client = Client::connect(cluster.regions[i].resp).await?;
        let types: Vec<Vec<String>> = keys
            .iter()
            .map(|k| vec!["TYPE".into(), k.clone()])
            .collect();
        let types = client.pipeline(&types).await?;
        let mut state = RegionState {
            name: name.clone(),
            ..RegionState::default()
        };
        for (key, t) in keys.iter().zip(&types) {
            let t = frame_text(t).unwrap_or_default();
            let read = |cmd: &str| vec![cmd.to_string(), key.clone()];
            let value = match t.as_str() {
                "none" => continue,
                "string" if key.starts_with("b:") || key.starts_with("bf:") => {
                    match client.cmd(&read("GET")).await? {
                        Frame::Bulk(bytes) => KeyState::Bytes(bytes.to_vec()),
                        _ => KeyState::Bytes(Vec::new()),
                    }
                }
                "string" => {
                    KeyState::Str(frame_text(&client.cmd(&read("GET")).await?).unwrap_or_default())
                }
                "stream" => {
                    let mut xrange = read("XRANGE");
                    xrange.extend(["-".to_string(), "+".to_string()]);
                    KeyState::Stream(stream_entries(&client.cmd(&xrange).await?))
                }
                "set" => KeyState::Set(
                    texts(&client.cmd(&read("SMEMBERS")).await?)
                        .into_iter()
                        .collect(),
                ),
                "hash" => KeyState::Hash(workload::fields_of(&texts(
                    &client.cmd(&read("HGETALL")).await?,
                ))),
                "list" => {
                    let mut lrange = read("LRANGE");
                    lrange.extend(["0".to_string(), "-1".to_string()]);
                    KeyState::List(texts(&client.cmd(&lrange).await?))
                }
                other => KeyState::Other(other.to_string()),
            };
            state.keys.insert(key.clone(), value);
        }
        out.push(state);
    }
    // Stopped regions' journals are read whole from disk; a running
    // region shows only its newest entries.
    for i in 0..cluster.regions.len() {
        cluster.kill9(i);
    }
    let journaled: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("r:") || k.starts_with("h:"))
        .cloned()
        .collect();
    for state in &mut out {
        let entries = journal::read_journal(&dir.join(&state.name), CONFLICT_RETENTION)?;
        state.conflicts = journal::by_key(&entries, &journaled);
    }
    Ok(out)
}

/// An XRANGE reply as (ID, value of field `v`) pairs, in reply order.
fn stream_entries(frame: &Frame) -> Vec<(String, String)> {
    let Frame::Array(entries) = frame else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| match e {
            Frame::Array(parts) if parts.len() == 2 => {
                let id = frame_text(&parts[0])?;
                let fields = texts(&parts[1]);
                let value = fields.get(1).cloned().unwrap_or_default();
                Some((id, value))
            }
            _ => None,
        })
        .collect()
}

fn texts(frame: &Frame) -> Vec<String> {
    match frame {
        Frame::Array(items) | Frame::Set(items) => items.iter().filter_map(frame_text).collect(),
        _ => Vec::new(),
    }
}

fn print_report(
    report: &check::Report,
    faults: &BTreeMap<&'static str, u64>,
    extra: &[String],
    seed: u64,
) {
    println!("\n== Chaos report (seed {seed}) ==");
    let ops_total: u64 = report.ops.values().sum();
    println!("operations checked: {ops_total}");
    for (kind, n) in &report.ops {
        println!("  {kind:<28} {n:>9}");
    }
    let faults_total: u64 = faults.values().sum();
    println!("faults injected: {faults_total}");
    for (kind, n) in faults {
        println!("  {kind:<28} {n:>9}");
    }
    println!("assertions made by the checker:");
    for (kind, n) in &report.checked {
        println!("  {kind:<28} {n:>9}");
    }
    let anomalies = report.anomalies.len() + extra.len();
    println!("anomalies: {anomalies}");
    for a in &report.anomalies {
        print!("  {a}");
    }
    for e in extra {
        println!("  {e}");
    }
    println!("chaos: seed={seed} ops={ops_total} faults={faults_total} anomalies={anomalies}");
}

/// `--check DIR`: the checker alone over a kept run directory.
fn check_only(dir: &Path) -> anyhow::Result<()> {
    let (header, ops) = history::read_history(&dir.join("history.jsonl"))?;
    let finals: Finals = serde_json::from_slice(
        &std::fs::read(dir.join("final.json")).context("reading final.json")?,
    )?;
    let report = check::check(&check::Input {
        regions: &header.regions,
        ops: &ops,
        finals: &finals.regions,
        barrier: finals.barrier.as_ref(),
    });
    print_report(&report, &BTreeMap::new(), &[], header.seed);
    if !report.anomalies.is_empty() {
        bail!(
            "{} anomalies (seed {})",
            report.anomalies.len(),
            header.seed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_intervals_parse_as_a_range_or_one_number() {
        assert_eq!(parse_interval("2000-4000"), Ok((2000, 4000)));
        assert_eq!(parse_interval("500"), Ok((500, 500)));
        assert!(parse_interval("4000-2000").is_err());
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("fast").is_err());
    }
}
