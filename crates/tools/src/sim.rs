//! `meridian sim`: runs the deterministic simulator over a range of seeds
//! and stops at the first anomaly, printing its seed and the events that
//! led to it.

use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use meridian_sim::{run_seed, Breakage, Fault, SimConfig, SimReport};

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// How many seeds to run (from `--seed` on). Defaults to 1 with
    /// `--seed`, else 100.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// The first seed (alone: replay exactly that seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Faults to inject: a comma-separated list of delay, dup, drop,
    /// partition, oneway, crash, clock, power, isolate-primary, compact; or
    /// `all`, or `none`.
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Regions per run.
    #[arg(long, default_value_t = 3)]
    pub regions: usize,
    /// Ticks (10 simulated ms each) of writes and faults per seed.
    #[arg(long, default_value_t = 300)]
    pub ticks: u64,
    /// Events printed with an anomaly.
    #[arg(long, default_value_t = 40)]
    pub trace: usize,
    /// Deliberately break the merge, the election or the lease to see a
    /// checker fail (`lose-relayed-effects`, `skip-primary-leases`,
    /// `wall-clock-lease`), tombstone collection (`collect-early`),
    /// anti-entropy (`ae-skip-key`), or list inserts
    /// (`lose-relayed-pushes`), or scripts committed in two ops
    /// (`split-scripts`), or stream IDs that leave out the region's slot
    /// (`stream-ids-without-slot`), or BITFIELD WRAP increments written as
    /// bit patches (`bitfield-incr-as-bits`).
    #[arg(long, default_value = "none")]
    pub r#break: String,
    /// Leave list writes out of the workload: a seed then replays the run
    /// it made before lists joined the mix.
    #[arg(long)]
    pub no_lists: bool,
    /// Leave scripted writes out of the workload: a seed then replays the
    /// run it made before scripts joined the mix.
    #[arg(long)]
    pub no_scripts: bool,
    /// Leave SETBITs out of the workload: a seed then replays the run it
    /// made before bitmaps joined the mix.
    #[arg(long)]
    pub no_bits: bool,
    /// Leave stream writes out of the workload: a seed then replays the
    /// run it made before streams joined the mix.
    #[arg(long)]
    pub no_streams: bool,
    /// Leave BITFIELD WRAP increments out of the workload: a seed then
    /// replays the run it made before they joined the mix.
    #[arg(long)]
    pub no_bitfields: bool,
    /// Print one line per seed.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: SimArgs) -> Result<()> {
    let faults = Fault::parse_list(&args.faults).map_err(|e| anyhow!(e))?;
    let breakage = Breakage::parse(&args.r#break).map_err(|e| anyhow!(e))?;
    if !(2..=16).contains(&args.regions) {
        return Err(anyhow!("--regions must lie between 2 and 16"));
    }
    let first = args.seed.unwrap_or(0);
    let count = args
        .seeds
        .unwrap_or(if args.seed.is_some() { 1 } else { 100 });
    let fault_names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    let faults_arg = if fault_names.is_empty() {
        "none".to_string()
    } else {
        fault_names.join(",")
    };
    let started = Instant::now();
    let mut totals = Totals::default();
    for seed in first..first.saturating_add(count) {
        let cfg = SimConfig {
            regions: args.regions,
            fault_ticks: args.ticks,
            faults: faults.clone(),
            breakage,
            lists: !args.no_lists,
            scripts: !args.no_scripts,
            bits: !args.no_bits,
            streams: !args.no_streams,
            bitfields: !args.no_bitfields,
            trace_keep: args.trace,
            ..SimConfig::new(seed)
        };
        let report = run_seed(cfg);
        totals.add(&report);
        if args.verbose {
            println!(
                "seed {seed}: {} ticks, {} ops, {} lost, {} faults, {} messages, healed in {} ticks, trace {:016x}",
                report.ticks,
                report.ops_durable,
                report.ops_lost,
                report.faults_total(),
                report.messages,
                report.heal_ticks,
                report.trace_hash
            );
        }
        if let Some(a) = &report.anomaly {
            eprintln!("ANOMALY at seed {seed}: {a}");
            eprintln!("last {} events:", a.trace.len());
            for e in &a.trace {
                eprintln!("  {e}");
            }
            eprintln!(
                "replay: meridian sim --seed {seed} --faults {faults_arg} --regions {} --ticks {}{}{}{}{}{}{}",
                args.regions,
                args.ticks,
                if args.no_lists { " --no-lists" } else { "" },
                if args.no_scripts { " --no-scripts" } else { "" },
                if args.no_bits { " --no-bits" } else { "" },
                if args.no_streams { " --no-streams" } else { "" },
                if args.no_bitfields { " --no-bitfields" } else { "" },
                if breakage == Breakage::None {
                    String::new()
                } else {
                    format!(" --break {}", args.r#break)
                }
            );
            totals.print(started);
            std::process::exit(1);
        }
    }
    totals.print(started);
    Ok(())
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    ticks: u64,
    ops: u64,
    lost: u64,
    lost_acked: u64,
    refused: u64,
    conflicts: u64,
    tombstones: u64,
    list_pushed: u64,
    list_removed: u64,
    stream_added: u64,
    stream_delivered: u64,
    field_increments: u64,
    elections: u64,
    primary_writes: u64,
    messages: u64,
    duplicates: u64,
    relay_waits_failed: u64,
    faults: std::collections::BTreeMap<&'static str, u64>,
    anomalies: u64,
}

impl Totals {
    fn add(&mut self, r: &SimReport) {
        self.seeds += 1;
        self.ticks += r.ticks;
        self.ops += r.ops_durable;
        self.lost += r.ops_lost - r.ops_lost_acked;
        self.lost_acked += r.ops_lost_acked;
        self.refused += r.writes_refused;
        self.conflicts += r.conflicts_journaled;
        self.tombstones += r.tombstones_collected;
        self.list_pushed += r.list_values_pushed;
        self.list_removed += r.list_values_removed;
        self.stream_added += r.stream_entries_added;
        self.stream_delivered += r.stream_entries_delivered;
        self.field_increments += r.field_increments;
        self.elections += r.elections_won;
        self.primary_writes += r.primary_writes;
        self.messages += r.messages;
        self.duplicates += r.duplicates_received;
        self.relay_waits_failed += r.relay_waits_failed;
        for (k, v) in &r.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.anomalies += r.anomaly.is_some() as u64;
    }

    fn print(&self, started: Instant) {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "seeds {}  steps {}  ops acknowledged {}  ops lost unacknowledged {}  acknowledged ops lost to power loss before fsync {}  writes fenced {}  conflicts journaled {}  tombstones collected {}  list values pushed {}  list values removed {}  stream entries added {}  stream entries delivered {}  bitfield increments {}  elections won {}  primary writes {}  messages {}  duplicates received {}  relay waits given up {}  faults {} ({})  anomalies {}  time {:.1} s",
            self.seeds,
            self.ticks,
            self.ops,
            self.lost,
            self.lost_acked,
            self.refused,
            self.conflicts,
            self.tombstones,
            self.list_pushed,
            self.list_removed,
            self.stream_added,
            self.stream_delivered,
            self.field_increments,
            self.elections,
            self.primary_writes,
            self.messages,
            self.duplicates,
            self.relay_waits_failed,
            self.faults.values().sum::<u64>(),
            faults.join(", "),
            self.anomalies,
            started.elapsed().as_secs_f64()
        );
    }
}
