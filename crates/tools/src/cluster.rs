//! Regions as child processes of this executable on loopback, linked
//! through an in-process [`Mesh`] of fault proxies: the cluster that
//! `meridian demo` and `meridian bench` drive.
//!
//! Every region is `meridian serve` with port-0 addresses; its one stdout
//! line (`meridian listening resp=… http=… repl=…`) tells us where it is.
//! Its logs (stderr and any later stdout) go to `<work dir>/<region>.log`.
//!
//! Cleanup: dropping a [`LocalCluster`] kills every child (`kill -9`: data
//! dirs are scratch) and removes the work dir, unless [`LocalCluster::keep_logs`]
//! asked to keep the logs for a failure report. This also runs when the tool
//! is interrupted, because the tool drops the cluster on Ctrl-C and SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use meridian_ctl::http::{Reply, Request};
use meridian_netem::{LinkConditions, Mesh};
use rand::Rng;
use serde_json::Value;

/// How long a region may take from spawn to its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every link may take to come up once all regions run.
const LINKS_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// One HTTP request to a region's admin port, connect to last byte.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// An admin action such as a snapshot of millions of keys.
const ADMIN_ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Region ids, in order.
    pub regions: Vec<String>,
    /// Conditions of both directed links between two regions; pairs not
    /// listed get `default_link`.
    pub links: Vec<(String, String, LinkConditions)>,
    pub default_link: LinkConditions,
    /// Seeds the proxies' jitter and loss draws.
    pub seed: u64,
    /// Extra `serve` flags for every region (e.g. `--fsync no`).
    pub serve_args: Vec<String>,
    /// `MERIDIAN_LOG` of the children.
    pub log_filter: String,
    /// Prefix of the work dir under the system temp dir.
    pub work_dir_prefix: String,
}

/// What [`LocalCluster::start_with`] adds to a [`ClusterSpec`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Extra `serve` flags of single regions (e.g. `--witness`), after the
    /// spec's `serve_args`.
    pub region_args: BTreeMap<String, Vec<String>>,
    /// Use this directory (created if missing) as the work dir and keep it;
    /// `None`: a scratch dir under the system temp dir.
    pub work_dir: Option<PathBuf>,
}

/// Links for [`ClusterSpec::links`] from (region, region, one-way delay in
/// ms): emulated WAN with a tenth of the delay as jitter.
pub fn wan_links(delays_ms: &[(&str, &str, u64)]) -> Vec<(String, String, LinkConditions)> {
    delays_ms
        .iter()
        .map(|(a, b, ms)| {
            let conditions = LinkConditions::wan(*ms).with_jitter(ms / 10);
            (a.to_string(), b.to_string(), conditions)
        })
        .collect()
}

/// A scratch directory removed on drop (except the logs, if asked), or a
/// directory the caller named, which is kept whole.
struct WorkDir {
    path: PathBuf,
    keep_logs: bool,
    keep_all: bool,
}

impl WorkDir {
    fn create(prefix: &str) -> anyhow::Result<WorkDir> {
        let suffix: u32 = rand::thread_rng().gen();
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{suffix:08x}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the work dir {}", path.display()))?;
        Ok(WorkDir {
            path,
            keep_logs: false,
            keep_all: false,
        })
    }

    fn named(path: &Path) -> anyhow::Result<WorkDir> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the work dir {}", path.display()))?;
        Ok(WorkDir {
            path: path.to_path_buf(),
            keep_logs: true,
            keep_all: true,
        })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep_all {
            return;
        }
        if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.path);
            return;
        }
        // Keep `*.log`, drop the data dirs.
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// One running region.
pub struct RegionProcess {
    pub name: String,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    pub repl: SocketAddr,
    pub log_path: PathBuf,
    child: Child,
}

impl RegionProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RegionProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Regions and the proxies between them.
pub struct LocalCluster {
    pub regions: Vec<RegionProcess>,
    /// `None` for a single region, which has no peers.
    pub mesh: Option<Mesh>,
    /// The one-way delay configured for each directed link, for reports.
    pub link_delays_ms: BTreeMap<(String, String), u64>,
    work: WorkDir,
    exe: PathBuf,
    /// Every region's `serve` flags after its name and addresses, for restarts.
    region_args: Vec<Vec<String>>,
    log_filter: String,
}

impl LocalCluster {
    /// Starts the proxies, then every region, and waits until every link is
    /// up in both directions.
    pub async fn start(spec: &ClusterSpec) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with(spec, &StartOptions::default()).await
    }

    /// [`LocalCluster::start`] with per-region flags and a chosen work dir.
    pub async fn start_with(
        spec: &ClusterSpec,
        options: &StartOptions,
    ) -> anyhow::Result<LocalCluster> {
        let work = match &options.work_dir {
            Some(dir) => WorkDir::named(dir)?,
            None => WorkDir::create(&spec.work_dir_prefix)?,
        };
        let exe = std::env::current_exe().context("finding this executable")?;
        let mesh = if spec.regions.len() > 1 {
            Some(
                Mesh::start(spec.regions.iter().cloned(), spec.seed)
                    .await
                    .context("starting the WAN emulator")?,
            )
        } else {
            None
        };
        let mut link_delays_ms = BTreeMap::new();
        if let Some(mesh) = &mesh {
            for a in &spec.regions {
                for b in &spec.regions {
                    if a == b {
                        continue;
                    }
                    let conditions = spec
                        .links
                        .iter()
                        .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                        .map_or(spec.default_link, |(_, _, c)| *c);
                    mesh.link(a, b)?.set(conditions)?;
                    link_delays_ms.insert((a.clone(), b.clone()), conditions.forward.delay_ms);
                }
            }
        }
        let secret: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rand::thread_rng().gen_range(0..16)]))
            .collect();
        let mut cluster = LocalCluster {
            regions: Vec::new(),
            mesh,
            link_delays_ms,
            work,
            exe,
            region_args: Vec::new(),
            log_filter: spec.log_filter.clone(),
        };
        for name in &spec.regions {
            let mut args: Vec<String> = Vec::new();
            if let Some(mesh) = &cluster.mesh {
                args.extend(["--cluster-secret".to_string(), secret.clone()]);
                args.extend(mesh.peer_args(name)?);
            }
            args.extend(spec.serve_args.iter().cloned());
            args.extend(options.region_args.get(name).into_iter().flatten().cloned());
            let region = spawn_region(
                &cluster.exe,
                name,
                &cluster.work.path,
                &args,
                &spec.log_filter,
            )
            .await?;
            if let Some(mesh) = &cluster.mesh {
                mesh.set_repl_addr(name, region.repl)?;
            }
            cluster.regions.push(region);
            cluster.region_args.push(args);
        }
        cluster.wait_links_up().await?;
        Ok(cluster)
    }

    /// The work dir (logs and data dirs).
    pub fn work_dir(&self) -> &Path {
        &self.work.path
    }

    /// Keeps the children's logs when the cluster is dropped.
    pub fn keep_logs(&mut self) {
        self.work.keep_logs = true;
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// `kill -9` of region `i`; its data dir stays for [`LocalCluster::restart`].
    pub fn kill9(&mut self, i: usize) {
        self.regions[i].kill();
    }

    /// Starts region `i` again on its data dir, with its original flags plus
    /// `extra_args`, and points the proxies into it at its new address. The
    /// old process, if still running, is killed first.
    pub async fn restart(&mut self, i: usize, extra_args: &[String]) -> anyhow::Result<()> {
        self.regions[i].kill();
        let mut args = self.region_args[i].clone();
        args.extend(extra_args.iter().cloned());
        let name = self.regions[i].name.clone();
        let region =
            spawn_region(&self.exe, &name, &self.work.path, &args, &self.log_filter).await?;
        if let Some(mesh) = &self.mesh {
            mesh.set_repl_addr(&name, region.repl)?;
        }
        self.regions[i] = region;
        Ok(())
    }

    /// Fails if any region has exited, naming its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for r in &mut self.regions {
            if let Some(status) = r.child.try_wait()? {
                bail!(
                    "region {} exited ({status}); its log: {}",
                    r.name,
                    r.log_path.display()
                );
            }
        }
        Ok(())
    }

    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        http_get_json(self.regions[i].http, "/v1/status").await
    }

    pub async fn digest(&self, i: usize) -> anyhow::Result<Value> {
        http_get_json(self.regions[i].http, "/v1/digest").await
    }

    /// Newest conflict-journal entries, optionally of one key.
    pub async fn conflicts(
        &self,
        i: usize,
        count: usize,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let path = match key {
            Some(k) => format!("/v1/conflicts?count={count}&key={}", query_escape(k)),
            None => format!("/v1/conflicts?count={count}"),
        };
        http_get_json(self.regions[i].http, &path).await
    }

    async fn wait_links_up(&mut self) -> anyhow::Result<()> {
        if self.regions.len() < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + LINKS_UP_TIMEOUT;
        loop {
            self.check_alive()?;
            let mut down = Vec::new();
            for i in 0..self.regions.len() {
                let status = self.status(i).await?;
                for peer in peers(&status) {
                    if peer["state"] != "up" {
                        down.push(format!(
                            "{}→{}",
                            self.regions[i].name,
                            peer["id"].as_str().unwrap_or("?")
                        ));
                    }
                }
            }
            if down.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "replication links still down after {:?}: {}",
                    LINKS_UP_TIMEOUT,
                    down.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Children first, while their log files and data dirs still exist.
        for r in &mut self.regions {
            r.kill();
        }
    }
}

/// The peer rows of a `/v1/status` document (every region but itself).
pub fn peers(status: &Value) -> impl Iterator<Item = &Value> {
    status["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["self"] != true)
}

async fn spawn_region(
    exe: &Path,
    name: &str,
    work: &Path,
    args: &[String],
    log_filter: &str,
) -> anyhow::Result<RegionProcess> {
    let data_dir = work.join(name);
    let log_path = work.join(format!("{name}.log"));
    // Appended to, so a restarted region's log follows its previous life.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    // A region must not pick up the settings of the shell that runs the tool.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MERIDIAN_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("serve")
        .args(["--region", name])
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--repl",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("MERIDIAN_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone()?));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting region {name} ({})", exe.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    // The first line names the addresses; the rest goes to the log, so the
    // child never writes into a closed pipe.
    let (line_tx, line_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = line_tx.send(first);
        let mut log = log;
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
        }
    });
    let mut region = RegionProcess {
        name: name.to_string(),
        resp: SocketAddr::from(([127, 0, 0, 1], 0)),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        repl: SocketAddr::from(([127, 0, 0, 1], 0)),
        log_path,
        child,
    };
    let line = match tokio::time::timeout(START_TIMEOUT, line_rx).await {
        Ok(Ok(Some(line))) => line,
        Ok(_) => bail!(
            "region {name} exited before listening; its log: {}",
            region.log_path.display()
        ),
        Err(_) => bail!(
            "region {name} did not start within {START_TIMEOUT:?}; its log: {}",
            region.log_path.display()
        ),
    };
    let field = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("region {name} printed {line:?}, which has no {key}ADDR"))
    };
    region.resp = field("resp=")?;
    region.http = field("http=")?;
    region.repl = field("repl=")?;
    Ok(region)
}

/// `GET path` on a region's admin port, parsed as JSON.
pub async fn http_get_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let reply = admin_request(addr, "GET", path, HTTP_TIMEOUT).await?;
    Ok(reply.ok_json()?)
}

/// `GET path` on a region's admin port, as text (`/metrics`).
pub async fn http_get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let reply = admin_request(addr, "GET", path, HTTP_TIMEOUT).await?;
    Ok(reply.ok_text()?)
}

/// `POST path` (no body) on a region's admin port, parsed as JSON. Admin
/// actions (a snapshot of millions of keys) may take a while.
pub async fn http_post_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let reply = admin_request(addr, "POST", path, ADMIN_ACTION_TIMEOUT).await?;
    Ok(reply.ok_json()?)
}

/// One request through the operator CLI's client, on a blocking thread so
/// the tools' runtime keeps driving the regions' proxies meanwhile.
async fn admin_request(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let path = path.to_string();
    let reply = tokio::task::spawn_blocking(move || {
        Request::new(method, &path)
            .timeout(timeout)
            .send(&addr.to_string())
    })
    .await
    .context("the HTTP request's thread")??;
    Ok(reply)
}

/// Percent-encodes a query value (keys in the tools are plain ASCII, but
/// `:` and friends stay safe this way).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
