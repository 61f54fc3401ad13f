//! The demo's client load: workload connections sending pipelined batches of
//! mixed commands at a fixed rate, and the writers that make conflicts on
//! purpose. They only drive and record; the checks are in `mod.rs`.

use super::*;

/// One workload connection: pipelined batches of mixed commands at a fixed
/// rate until `stop`; returns the increments the region acknowledged.
pub(super) async fn worker(
    addr: SocketAddr,
    region_index: usize,
    region: String,
    seed: u64,
    rate_ops: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
) -> anyhow::Result<Acked> {
    let mut client = Client::connect(addr).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Acked::new();
    let period = Duration::from_micros(BATCH_COMMANDS as u64 * 1_000_000 / rate_ops.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let batch: Vec<Planned> = (0..BATCH_COMMANDS)
            .map(|_| {
                n += 1;
                mixed_command(&mut rng, &region, n)
            })
            .collect();
        let commands: Vec<&Vec<String>> = batch.iter().map(|(c, _)| c).collect();
        let replies = tokio::time::timeout(REPLY_TIMEOUT, client.pipeline(&commands))
            .await
            .map_err(|_| anyhow!("{region}: no reply within {REPLY_TIMEOUT:?}"))?
            .with_context(|| format!("{region}: workload connection"))?;
        for ((command, increment), reply) in batch.iter().zip(&replies) {
            if reply.is_error() {
                stats.error(&region, command, reply);
            } else if let Some((counter, by)) = increment {
                *acked.entry(counter.clone()).or_insert(0) += by;
            }
        }
        stats.ops[region_index].fetch_add(replies.len() as u64, Ordering::Relaxed);
    }
    Ok(acked)
}

/// One command of the mixed workload, and the increment it makes if it is
/// a counter command.
pub(super) fn mixed_command(rng: &mut StdRng, region: &str, n: u64) -> Planned {
    let cmd = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let nonzero = |rng: &mut StdRng, lo: i64, hi: i64| loop {
        let v = rng.gen_range(lo..=hi);
        if v != 0 {
            break v;
        }
    };
    match rng.gen_range(0..100) {
        0..=17 => {
            let key = format!("user:{}:name", rng.gen_range(0..40));
            (cmd(&["SET", &key, &format!("{region}-{n}")]), None)
        }
        18..=25 => (
            cmd(&["GET", &format!("user:{}:name", rng.gen_range(0..40))]),
            None,
        ),
        26..=35 => {
            let key = format!("views:{}", rng.gen_range(0..3));
            let by = nonzero(rng, -2, 5);
            (
                cmd(&["INCRBY", &key, &by.to_string()]),
                Some((Counter::Int(key), by)),
            )
        }
        36..=40 => {
            let quarters = nonzero(rng, -4, 8);
            let by = format!("{}", quarters as f64 / 4.0);
            let key = "balance:eur".to_string();
            (
                cmd(&["INCRBYFLOAT", &key, &by]),
                Some((Counter::Quarters(key), quarters)),
            )
        }
        41..=49 => {
            let key = format!("cart:{}", rng.gen_range(0..15));
            let item = format!("item-{}", rng.gen_range(0..5));
            (
                cmd(&["HSET", &key, &item, &rng.gen_range(1..10).to_string()]),
                None,
            )
        }
        50..=51 => (
            cmd(&["DEL", &format!("cart:{}", rng.gen_range(0..15))]),
            None,
        ),
        52..=59 => {
            let key = format!("stats:{}", rng.gen_range(0..2));
            let by = nonzero(rng, -1, 4);
            (
                cmd(&["HINCRBY", &key, "clicks", &by.to_string()]),
                Some((Counter::Field(key, "clicks".into()), by)),
            )
        }
        60..=69 => {
            let key = format!("tags:{}", rng.gen_range(0..10));
            (
                cmd(&["SADD", &key, &format!("t{}", rng.gen_range(0..8))]),
                None,
            )
        }
        70..=75 => {
            let key = format!("tags:{}", rng.gen_range(0..10));
            (
                cmd(&["SREM", &key, &format!("t{}", rng.gen_range(0..8))]),
                None,
            )
        }
        76..=83 => {
            let key = format!("ranking:{}", rng.gen_range(0..5));
            let member = format!("m{}", rng.gen_range(0..6));
            (
                cmd(&["ZADD", &key, &rng.gen_range(0..1000).to_string(), &member]),
                None,
            )
        }
        84..=93 => {
            let member = format!("player-{}", rng.gen_range(0..4));
            let by = nonzero(rng, -1, 5);
            (
                cmd(&["ZINCRBY", "leaderboard", &by.to_string(), &member]),
                Some((Counter::Score("leaderboard".into(), member), by)),
            )
        }
        94..=96 => (
            cmd(&["SMEMBERS", &format!("tags:{}", rng.gen_range(0..10))]),
            None,
        ),
        _ => (
            cmd(&["HGETALL", &format!("cart:{}", rng.gen_range(0..15))]),
            None,
        ),
    }
}

/// During the partition: the same string keys, hash fields and sorted-set
/// members written on both sides, so the heal has real conflicts to resolve.
/// `side` (0 or 1) makes the two sides' values differ. Returns how many
/// writes it made.
pub(super) async fn conflict_writer(
    addr: SocketAddr,
    region: String,
    side: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u64> {
    let mut client = Client::connect(addr).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(CONFLICT_ROUND_MS));
    let mut round = 0u64;
    let mut writes = 0u64;
    let colors = ["teal", "amber", "plum", "slate"];
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        round += 1;
        let mut commands: Vec<Vec<String>> = Vec::new();
        for k in 0..CONFLICT_KEYS {
            let color = colors[(round as usize + k + 2 * side) % colors.len()];
            commands.push(vec![
                "SET".into(),
                format!("profile:{k}"),
                format!("{region} #{round}"),
            ]);
            commands.push(vec![
                "HSET".into(),
                format!("settings:{k}"),
                "theme".into(),
                format!("{color} from {region}"),
            ]);
            commands.push(vec![
                "ZADD".into(),
                "highscore".into(),
                (side as u64 * 1000 + round * 10 + k as u64).to_string(),
                format!("player-{k}"),
            ]);
        }
        let replies = tokio::time::timeout(REPLY_TIMEOUT, client.pipeline(&commands))
            .await
            .map_err(|_| anyhow!("{region}: no reply within {REPLY_TIMEOUT:?}"))??;
        for (command, reply) in commands.iter().zip(&replies) {
            if reply.is_error() {
                bail!("{region}: {} → {reply:?}", command.join(" "));
            }
        }
        writes += replies.len() as u64;
    }
    Ok(writes)
}

pub(super) fn expect_ok(reply: &Frame) -> anyhow::Result<()> {
    if reply.is_error() {
        bail!("unexpected error reply: {reply:?}");
    }
    Ok(())
}
