//! The chaos fault injector: at random moments from a seeded RNG it
//! partitions a region, cuts links both ways or one way, heals, changes a
//! link's delay and loss, `kill -9`s a region (the witness included) and
//! restarts it later on the same data dir, or restarts a region with its
//! clock shifted (`--clock-offset-ms`). Every fault is printed with the
//! run's elapsed time and appended to `faults.log`.
//!
//! A region that exits without having been killed is a crash: it is
//! reported (the checker turns it into an anomaly) and restarted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use meridian_netem::LinkConditions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::workload::Workload;
use crate::cluster::LocalCluster;

/// At most this many processes are down at once (so a restart always has
/// peers to catch up from).
const DOWN_MAX: usize = 2;
/// Largest link delay and loss a link change draws.
const LINK_DELAY_MS_MAX: u64 = 150;
const LINK_LOSS_MAX: f64 = 0.2;
/// Clock offsets drawn for a skewed restart: up to this far either way;
/// beyond `--max-clock-offset-ms` (500) peers raise their clock alarm.
const CLOCK_OFFSET_MS_MAX: i64 = 3_000;

/// One fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Every link to and from a region down.
    Partition(usize),
    /// Both links between two regions down.
    Cut(usize, usize),
    /// Only the link the first region dials to reach the second down.
    CutOneWay(usize, usize),
    /// Every link up again.
    Heal,
    /// A link's delay, jitter and loss changed (its up state kept).
    Link(usize, usize, u64, u64, f64),
    /// `kill -9` of a region.
    Kill(usize),
    /// A killed region started again, its clock right.
    Restart(usize),
    /// A running region killed and started again with its clock shifted.
    ClockSkew(usize, i64),
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
            Fault::Cut(..) => "cut",
            Fault::CutOneWay(..) => "cut-one-way",
            Fault::Heal => "heal",
            Fault::Link(..) => "link-change",
            Fault::Kill(_) => "kill-9",
            Fault::Restart(_) => "restart",
            Fault::ClockSkew(..) => "clock-skew",
        }
    }
}

/// The injector's state.
pub struct Injector {
    rng: StdRng,
    /// Every region, data regions first (their index is the workload's),
    /// the witness last.
    names: Vec<String>,
    data_regions: usize,
    down: Vec<bool>,
    /// The links' conditions at start, restored by the final heal.
    default_links: BTreeMap<(String, String), LinkConditions>,
    started: Instant,
    log: std::fs::File,
    pub counts: BTreeMap<&'static str, u64>,
    /// Regions that exited on their own: (region, exit status, log path).
    pub crashes: Vec<String>,
}

impl Injector {
    pub fn new(
        seed: u64,
        cluster: &LocalCluster,
        data_regions: usize,
        started: Instant,
        dir: &Path,
    ) -> anyhow::Result<Injector> {
        let names: Vec<String> = cluster.regions.iter().map(|r| r.name.clone()).collect();
        let mut default_links = BTreeMap::new();
        if let Some(mesh) = &cluster.mesh {
            for a in &names {
                for b in &names {
                    if a != b {
                        default_links.insert((a.clone(), b.clone()), mesh.link(a, b)?.conditions());
                    }
                }
            }
        }
        let path = dir.join("faults.log");
        let log =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Injector {
            rng: StdRng::seed_from_u64(seed),
            down: vec![false; names.len()],
            names,
            data_regions,
            default_links,
            started,
            log,
            counts: BTreeMap::new(),
            crashes: Vec::new(),
        })
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    fn say(&mut self, text: &str) {
        let line = format!("[{:7.2}s] {text}", self.started.elapsed().as_secs_f64());
        println!("{line}");
        let _ = writeln!(self.log, "{line}");
    }

    /// Draws the next fault.
    pub fn choose(&mut self) -> Fault {
        let n = self.names.len();
        let down: Vec<usize> = (0..n).filter(|&i| self.down[i]).collect();
        let up: Vec<usize> = (0..n).filter(|&i| !self.down[i]).collect();
        if !down.is_empty() && self.rng.gen_bool(0.5) {
            return Fault::Restart(down[self.rng.gen_range(0..down.len())]);
        }
        let pair = |rng: &mut StdRng| {
            let a = rng.gen_range(0..n);
            let b = (a + rng.gen_range(1..n)) % n;
            (a, b)
        };
        loop {
            let fault = match self.rng.gen_range(0..100) {
                0..=17 => Fault::Partition(self.rng.gen_range(0..n)),
                18..=31 => {
                    let (a, b) = pair(&mut self.rng);
                    Fault::Cut(a, b)
                }
                32..=45 => {
                    let (a, b) = pair(&mut self.rng);
                    Fault::CutOneWay(a, b)
                }
                46..=59 => Fault::Heal,
                60..=69 => {
                    let (a, b) = pair(&mut self.rng);
                    let delay = self.rng.gen_range(0..=LINK_DELAY_MS_MAX);
                    let jitter = self.rng.gen_range(0..=delay / 4);
                    let loss = if self.rng.gen_bool(0.5) {
                        0.0
                    } else {
                        self.rng.gen_range(0.0..LINK_LOSS_MAX)
                    };
                    Fault::Link(a, b, delay, jitter, loss)
                }
                70..=84 if down.len() < DOWN_MAX => {
                    Fault::Kill(up[self.rng.gen_range(0..up.len())])
                }
                85..=99 if down.len() < DOWN_MAX => {
                    let data_up: Vec<usize> = up
                        .iter()
                        .copied()
                        .filter(|&i| i < self.data_regions)
                        .collect();
                    if data_up.is_empty() {
                        continue;
                    }
                    let i = data_up[self.rng.gen_range(0..data_up.len())];
                    let magnitude = self.rng.gen_range(100..=CLOCK_OFFSET_MS_MAX);
                    let offset = if self.rng.gen_bool(0.5) {
                        magnitude
                    } else {
                        -magnitude
                    };
                    Fault::ClockSkew(i, offset)
                }
                _ => continue,
            };
            return fault;
        }
    }

    /// Applies a fault and prints it.
    pub async fn inject(
        &mut self,
        fault: Fault,
        cluster: &mut LocalCluster,
        load: &Workload,
    ) -> anyhow::Result<()> {
        *self.counts.entry(fault.kind()).or_default() += 1;
        let names = self.names.clone();
        let name = |i: usize| names[i].clone();
        let mesh = || {
            cluster
                .mesh
                .as_ref()
                .context("the chaos cluster has a mesh")
        };
        match fault {
            Fault::Partition(i) => {
                mesh()?.partition(&name(i))?;
                self.say(&format!("PARTITION {} from every peer", name(i)));
            }
            Fault::Cut(a, b) => {
                mesh()?.cut(&name(a), &name(b))?;
                self.say(&format!("CUT {} <-> {}", name(a), name(b)));
            }
            Fault::CutOneWay(a, b) => {
                mesh()?.link(&name(a), &name(b))?.partition();
                self.say(&format!(
                    "CUT ONE WAY {} -> {} (its stream to {} stops; {} -> {} stays)",
                    name(a),
                    name(b),
                    name(b),
                    name(b),
                    name(a)
                ));
            }
            Fault::Heal => {
                mesh()?.heal_all();
                self.say("HEAL every link");
            }
            Fault::Link(a, b, delay, jitter, loss) => {
                for (x, y) in [(a, b), (b, a)] {
                    mesh()?.link(&name(x), &name(y))?.update(|c| {
                        for d in [&mut c.forward, &mut c.backward] {
                            d.delay_ms = delay;
                            d.jitter_ms = jitter;
                            d.loss = loss;
                        }
                    })?;
                }
                self.say(&format!(
                    "LINK {} <-> {}: {delay} ms ±{jitter} ms, loss {:.0}%",
                    name(a),
                    name(b),
                    loss * 100.0
                ));
            }
            Fault::Kill(i) => {
                let pid = cluster.regions[i].pid();
                self.set_down(i, cluster, load);
                self.say(&format!("KILL -9 {} (pid {pid})", name(i)));
            }
            Fault::Restart(i) => {
                self.start(i, 0, cluster, load).await?;
                self.say(&format!(
                    "RESTART {} on its data dir (pid {})",
                    name(i),
                    cluster.regions[i].pid()
                ));
            }
            Fault::ClockSkew(i, offset) => {
                self.set_down(i, cluster, load);
                self.start(i, offset, cluster, load).await?;
                self.say(&format!(
                    "CLOCK {} killed and restarted {offset:+} ms off (pid {})",
                    name(i),
                    cluster.regions[i].pid()
                ));
            }
        }
        Ok(())
    }

    fn set_down(&mut self, i: usize, cluster: &mut LocalCluster, load: &Workload) {
        if i < self.data_regions {
            load.addrs.write()[i] = None;
        }
        cluster.kill9(i);
        self.down[i] = true;
    }

    async fn start(
        &mut self,
        i: usize,
        clock_offset_ms: i64,
        cluster: &mut LocalCluster,
        load: &Workload,
    ) -> anyhow::Result<()> {
        let extra = if clock_offset_ms == 0 {
            Vec::new()
        } else {
            vec![format!("--clock-offset-ms={clock_offset_ms}")]
        };
        cluster
            .restart(i, &extra)
            .await
            .with_context(|| format!("restarting {}", self.names[i]))?;
        if i < self.data_regions {
            load.addrs.write()[i] = Some(cluster.regions[i].resp);
        }
        self.down[i] = false;
        Ok(())
    }

    /// Finds regions that exited although nobody killed them, records each
    /// as a crash and starts it again.
    pub async fn restart_crashed(
        &mut self,
        cluster: &mut LocalCluster,
        load: &Workload,
    ) -> anyhow::Result<()> {
        for i in 0..self.names.len() {
            if self.down[i] {
                continue;
            }
            if let Some(status) = cluster.regions[i].exited() {
                let text = format!(
                    "region {} exited on its own ({status}); its log: {}",
                    self.names[i],
                    cluster.regions[i].log_path.display()
                );
                self.say(&format!("CRASH {text}"));
                self.crashes.push(text);
                self.set_down(i, cluster, load);
                self.start(i, 0, cluster, load).await?;
            }
        }
        Ok(())
    }

    /// The end of the faults: every link back to its starting conditions
    /// and every region that is down started again (clocks right).
    pub async fn heal_everything(
        &mut self,
        cluster: &mut LocalCluster,
        load: &Workload,
    ) -> anyhow::Result<()> {
        if let Some(mesh) = &cluster.mesh {
            for ((a, b), c) in &self.default_links {
                mesh.link(a, b)?.set(*c)?;
            }
        }
        self.say("END OF FAULTS: every link restored");
        self.restart_crashed(cluster, load).await?;
        for i in 0..self.names.len() {
            if self.down[i] {
                self.start(i, 0, cluster, load).await?;
                self.say(&format!(
                    "RESTART {} for the final convergence",
                    self.names[i]
                ));
            }
        }
        Ok(())
    }
}
