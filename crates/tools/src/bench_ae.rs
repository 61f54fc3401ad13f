//! `meridian bench antientropy`: two regions hold N keys, a partition
//! lets each change a share of them while their logs are compacted past
//! what the other needs, then the heal is repaired by anti-entropy. Reports
//! the heal time and the bytes anti-entropy and the links moved against the
//! diverged payload (target: at most 3x).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

use crate::cluster::{ClusterSpec, LocalCluster};
use crate::rclient::Client;

#[derive(clap::Args, Debug, Clone)]
pub struct AntientropyArgs {
    /// Keys both regions hold before the partition.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,
    /// Share of the keys changed during the partition, in percent (half on
    /// each side, different keys).
    #[arg(long, default_value_t = 1.0)]
    pub diverged_percent: f64,
    /// Bytes of every value.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub value_bytes: u64,
    /// One-way delay of the link between the two regions, in ms.
    #[arg(long, default_value_t = 5)]
    pub delay_ms: u64,
}

/// Keys per pipelined batch while loading; each batch is one op.
const LOAD_BATCH_KEYS: u64 = 1_000;
/// Keys per op during the partition: one, so the retained log
/// (`--repl-backlog-ops`) cannot cover the divergence.
const DIVERGE_BATCH_KEYS: u64 = 1;
const BACKLOG_OPS: &str = "20";
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(900);

fn key(i: u64) -> String {
    format!("key:{i:09}")
}

pub async fn run(args: AntientropyArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let spec = ClusterSpec {
        regions: vec!["ae-a".into(), "ae-b".into()],
        links: Vec::new(),
        default_link: LinkConditions::wan(args.delay_ms),
        seed: 7,
        // Small segments, so compaction can drop what the backlog does not
        // keep.
        serve_args: [
            "--fsync",
            "no",
            "--repl-backlog-ops",
            BACKLOG_OPS,
            "--log-segment-max-bytes",
            "4096",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        log_filter: "warn".into(),
        work_dir_prefix: "meridian-bench-ae".into(),
    };
    let cluster = LocalCluster::start(&spec).await?;
    let (a, b) = (&cluster.regions[0], &cluster.regions[1]);
    let value = "v".repeat(args.value_bytes as usize);

    let load_started = Instant::now();
    let mut ca = Client::connect(a.resp).await?;
    set_range(&mut ca, 0..args.keys, &value, LOAD_BATCH_KEYS).await?;
    let loaded_s = load_started.elapsed().as_secs_f64();
    let digest = wait_equal(&cluster, CONVERGE_TIMEOUT).await?;
    println!(
        "loaded {} keys of {} B at ae-a in {loaded_s:.1} s; both regions equal ({} keys, digest {digest}) after {:.1} s",
        args.keys,
        args.value_bytes,
        args.keys,
        load_started.elapsed().as_secs_f64()
    );

    let mesh = cluster.mesh.as_ref().context("two regions have a mesh")?;
    mesh.partition("ae-b")?;
    let diverged = ((args.keys as f64) * args.diverged_percent / 100.0).round() as u64;
    let (half_a, half_b) = (diverged / 2, diverged - diverged / 2);
    let changed = "w".repeat(args.value_bytes as usize);
    // Different keys on each side, spread over the key space.
    let stride = (args.keys / diverged.max(1)).max(1);
    let a_keys: Vec<u64> = (0..half_a).map(|i| (i * 2 * stride) % args.keys).collect();
    let b_keys: Vec<u64> = (0..half_b)
        .map(|i| (i * 2 * stride + stride) % args.keys)
        .collect();
    let mut cb = Client::connect(b.resp).await?;
    set_keys(&mut ca, &a_keys, &changed, DIVERGE_BATCH_KEYS).await?;
    set_keys(&mut cb, &b_keys, &changed, DIVERGE_BATCH_KEYS).await?;
    let payload_bytes: u64 = a_keys
        .iter()
        .chain(&b_keys)
        .map(|k| key(*k).len() as u64 + args.value_bytes)
        .sum();
    // Both logs compacted past what the other side needs.
    for r in [a, b] {
        crate::cluster::http_post_json(r.http, "/v1/snapshot").await?;
    }
    println!(
        "partition: ae-a changed {half_a} keys, ae-b {half_b} others ({diverged} = {}% diverged, {payload_bytes} B of keys and values); both compacted their logs",
        args.diverged_percent
    );

    let ae_before = metric(a.http, "meridian_antientropy_bytes_total").await?
        + metric(b.http, "meridian_antientropy_bytes_total").await?;
    let links = ["ae-a->ae-b", "ae-b->ae-a"];
    let wire_before = wire_bytes(mesh);
    let healed_at = Instant::now();
    mesh.heal_all();
    let digest = wait_equal(&cluster, CONVERGE_TIMEOUT).await?;
    let heal_s = healed_at.elapsed().as_secs_f64();
    // Each session is counted by both sides (sent and received); halve.
    let ae_bytes = (metric(a.http, "meridian_antientropy_bytes_total").await?
        + metric(b.http, "meridian_antientropy_bytes_total").await?
        - ae_before)
        / 2.0;
    let wire = wire_bytes(mesh) - wire_before;
    for (r, k) in [(a, &b_keys[..]), (b, &a_keys[..])] {
        let mut c = Client::connect(r.resp).await?;
        if let Some(k) = k.first() {
            let got = c.cmd(&["GET", &key(*k)]).await?;
            anyhow::ensure!(
                got == Frame::Bulk(changed.clone().into()),
                "{} lacks the other side's change to {}: {got:?}",
                r.name,
                key(*k)
            );
        }
    }
    println!(
        "heal: equal again after {heal_s:.2} s (digest {digest}); anti-entropy moved {ae_bytes:.0} B = {:.2}x the diverged payload; the links ({}) carried {wire} B = {:.2}x",
        ae_bytes / payload_bytes as f64,
        links.join(", "),
        wire as f64 / payload_bytes as f64,
    );
    let ratio = wire as f64 / payload_bytes as f64;
    println!(
        "RESULT: {} (target: heal bytes at most 3x the diverged payload) in {:.0} s",
        if ratio <= 3.0 { "PASS" } else { "MISSED" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn set_range(
    c: &mut Client,
    keys: std::ops::Range<u64>,
    value: &str,
    batch: u64,
) -> anyhow::Result<()> {
    let all: Vec<u64> = keys.collect();
    set_keys(c, &all, value, batch).await
}

async fn set_keys(c: &mut Client, keys: &[u64], value: &str, batch: u64) -> anyhow::Result<()> {
    for chunk in keys.chunks(batch as usize) {
        let commands: Vec<[String; 3]> = chunk
            .iter()
            .map(|k| ["SET".to_string(), key(*k), value.to_string()])
            .collect();
        for reply in c.pipeline(&commands).await? {
            anyhow::ensure!(reply == Frame::Simple("OK".into()), "SET failed: {reply:?}");
        }
    }
    Ok(())
}

/// Waits until both regions report the same digest and version vector.
async fn wait_equal(cluster: &LocalCluster, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let a = cluster.digest(0).await?;
        let b = cluster.digest(1).await?;
        if a["digest"] == b["digest"] && a["version_vector"] == b["version_vector"] {
            return Ok(a["digest"].as_str().unwrap_or_default().to_string());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "regions still differ after {timeout:?}: {a} vs {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of a metric's samples on one region.
async fn metric(http: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let text = crate::cluster::http_get_text(http, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Bytes both proxies delivered, both directions.
fn wire_bytes(mesh: &meridian_netem::Mesh) -> u64 {
    [("ae-a", "ae-b"), ("ae-b", "ae-a")]
        .iter()
        .filter_map(|(f, t)| mesh.link(f, t).ok())
        .map(|l| {
            let s = l.stats();
            s.bytes_forward + s.bytes_backward
        })
        .sum()
}
