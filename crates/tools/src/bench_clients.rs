//! `meridian bench clients`: a closed-loop GET/SET load on one server, for
//! what `redis-benchmark` cannot do: turn client tracking on for its
//! connections.
//!
//! Each client is its own TCP connection; with `--resp3` it sends `HELLO 3`
//! first, with `--tracking` then `CLIENT TRACKING ON`. It runs its share of
//! `--requests` as GETs and SETs of random keys out of `--keys`, `--pipeline`
//! commands per round trip, and times every command from the write of its
//! batch to its reply, as `redis-benchmark` does. With tracking on, a SET of
//! a key other clients read sends them invalidation pushes, which arrive
//! between replies: they are read, counted and never taken for a reply.
//!
//! The keys are written once before the measured run, so every GET finds a
//! value. All clients run on one thread (a current-thread runtime), like
//! `redis-benchmark`'s event loop, so the load generator takes one core
//! whatever the server does. It works against any server speaking RESP:
//! `redis-server` and Meridian alike. The result is one CSV line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BytesMut};
use meridian_resp::{encode_command, parse_frame, Frame, FrameError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection whose unparsed input grows past this is broken.
const READ_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Keys written per round trip while filling the keyspace.
const FILL_BATCH: u64 = 1_000;
/// No single reply may take longer than this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The CSV columns of the result line, in order.
pub const CSV_HEADER: &str = "clients,pipeline,resp,tracking,ratio_get,keys,requests,errors,seconds,rps,p50_ms,p99_ms,invalidation_pushes,invalidated_keys";

#[derive(clap::Args, Debug, Clone)]
pub struct ClientsArgs {
    /// The server, `HOST:PORT`.
    #[arg(long)]
    pub target: String,
    /// Client connections.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub clients: u64,
    /// Commands over all clients.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: u64,
    /// Distinct keys (`key:0` .. `key:K-1`), written once before the run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,
    /// `CLIENT TRACKING ON` on every connection (needs `--resp3`: under
    /// RESP2 invalidations go only to a redirect connection).
    #[arg(long)]
    pub tracking: bool,
    /// `HELLO 3` on every connection.
    #[arg(long)]
    pub resp3: bool,
    /// Share of the commands that are GETs; the rest are SETs.
    #[arg(long, default_value_t = 0.9)]
    pub ratio_get: f64,
    /// Commands per round trip of each client.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub pipeline: u64,
    /// Bytes of each SET value (redis-benchmark's default is 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub value_bytes: u64,
    /// Seed of the key and command choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the CSV header line before the result.
    #[arg(long)]
    pub header: bool,
}

/// Pushes taken out of a connection's input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushes {
    /// `invalidate` pushes.
    pub invalidations: u64,
    /// Keys they named (a push with a null key list, after a flush, counts one).
    pub keys: u64,
    /// Any other push.
    pub other: u64,
}

impl Pushes {
    fn count(&mut self, push: &[Frame]) {
        let kind = match push.first() {
            Some(Frame::Bulk(b)) => b.as_ref(),
            Some(Frame::Simple(s)) => s.as_bytes(),
            _ => b"",
        };
        if !kind.eq_ignore_ascii_case(b"invalidate") {
            self.other += 1;
            return;
        }
        self.invalidations += 1;
        self.keys += match push.get(1) {
            Some(Frame::Array(keys)) | Some(Frame::Set(keys)) => keys.len() as u64,
            _ => 1,
        };
    }

    fn add(&mut self, other: Pushes) {
        self.invalidations += other.invalidations;
        self.keys += other.keys;
        self.other += other.other;
    }
}

/// The next reply at the front of `input`, with every push before it taken
/// out and counted; `None` when `input` does not yet hold a whole reply
/// (pushes already whole are still taken). The commands this load sends
/// (HELLO, CLIENT TRACKING, GET, SET) never answer with a push, so a push is
/// always out-of-band data.
pub fn next_reply(input: &mut BytesMut, pushes: &mut Pushes) -> Result<Option<Frame>, FrameError> {
    loop {
        let Some((frame, used)) = parse_frame(input)? else {
            return Ok(None);
        };
        input.advance(used);
        match frame {
            Frame::Push(items) => pushes.count(&items),
            reply => return Ok(Some(reply)),
        }
    }
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
    pushes: Pushes,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: BytesMut::with_capacity(16 * 1024),
            input: BytesMut::with_capacity(READ_CHUNK_BYTES),
            pushes: Pushes::default(),
        })
    }

    fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.out);
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn reply(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = next_reply(&mut self.input, &mut self.pushes)? {
                return Ok(frame);
            }
            if self.input.len() > READ_MAX_BYTES {
                bail!("reply larger than {READ_MAX_BYTES} bytes");
            }
            self.input.reserve(READ_CHUNK_BYTES);
            let read = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_buf(&mut self.input))
                .await
                .map_err(|_| anyhow!("no reply within {REPLY_TIMEOUT:?}"))??;
            if read == 0 {
                bail!("server closed the connection");
            }
        }
    }

    async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> anyhow::Result<Frame> {
        self.queue(args);
        self.flush().await?;
        self.reply().await
    }
}

/// What one client did in the measured run.
#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    errors: u64,
    error_sample: Option<String>,
    pushes: Pushes,
}

pub async fn run(args: ClientsArgs) -> anyhow::Result<()> {
    if args.tracking && !args.resp3 {
        bail!(
            "--tracking needs --resp3: under RESP2 invalidations go only to a redirect connection"
        );
    }
    if !(0.0..=1.0).contains(&args.ratio_get) {
        bail!("--ratio-get must be between 0 and 1");
    }
    let addr = tokio::net::lookup_host(&args.target)
        .await
        .with_context(|| format!("resolving {}", args.target))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", args.target))?;
    // One thread for the whole load, as redis-benchmark has.
    let load = args.clone();
    let handle = std::thread::Builder::new()
        .name("bench-clients".to_owned())
        .spawn(move || -> anyhow::Result<String> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(measure(addr, load))
        })?;
    let line = tokio::task::spawn_blocking(move || handle.join())
        .await?
        .map_err(|_| anyhow!("the load thread panicked"))??;
    if args.header {
        println!("{CSV_HEADER}");
    }
    println!("{line}");
    Ok(())
}

async fn measure(addr: SocketAddr, args: ClientsArgs) -> anyhow::Result<String> {
    let value = vec![b'x'; args.value_bytes as usize];
    fill(addr, args.keys, &value).await?;

    let mut conns = Vec::with_capacity(args.clients as usize);
    for _ in 0..args.clients {
        let mut conn = Conn::connect(addr).await?;
        if args.resp3 {
            let reply = conn.cmd(&["HELLO", "3"]).await?;
            if !matches!(reply, Frame::Map(_)) {
                bail!("HELLO 3 answered {reply:?}");
            }
        }
        if args.tracking {
            let reply = conn.cmd(&["CLIENT", "TRACKING", "ON"]).await?;
            if reply != Frame::ok() {
                bail!("CLIENT TRACKING ON answered {reply:?}");
            }
        }
        conns.push(conn);
    }

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let i = i as u64;
        // The remainder goes to the first clients.
        let share = args.requests / args.clients + u64::from(i < args.requests % args.clients);
        let rng = StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(i));
        tasks.spawn(client(conn, rng, share, args.clone(), value.clone()));
    }
    let mut latencies_us = Vec::with_capacity(args.requests as usize);
    let (mut errors, mut error_sample, mut pushes) = (0, None, Pushes::default());
    while let Some(result) = tasks.join_next().await {
        let result = result??;
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
        error_sample = error_sample.or(result.error_sample);
        pushes.add(result.pushes);
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    if let Some(sample) = error_sample {
        eprintln!("{errors} error replies, e.g. {sample}");
    }
    if pushes.other > 0 {
        eprintln!("{} pushes other than invalidations", pushes.other);
    }
    let done = latencies_us.len() as f64;
    Ok(format!(
        "{},{},{},{},{},{},{},{},{:.3},{:.0},{:.3},{:.3},{},{}",
        args.clients,
        args.pipeline,
        if args.resp3 { 3 } else { 2 },
        if args.tracking { "on" } else { "off" },
        args.ratio_get,
        args.keys,
        latencies_us.len(),
        errors,
        seconds,
        done / seconds,
        quantile_ms(&latencies_us, 0.5),
        quantile_ms(&latencies_us, 0.99),
        pushes.invalidations,
        pushes.keys,
    ))
}

/// Writes every key once, from one connection, pipelined.
async fn fill(addr: SocketAddr, keys: u64, value: &[u8]) -> anyhow::Result<()> {
    let mut conn = Conn::connect(addr).await?;
    let mut next = 0;
    while next < keys {
        let end = (next + FILL_BATCH).min(keys);
        for k in next..end {
            conn.queue(&[b"SET".as_slice(), key(k).as_bytes(), value]);
        }
        conn.flush().await?;
        for _ in next..end {
            let reply = conn.reply().await?;
            if let Frame::Error(e) = reply {
                bail!("filling the keys: SET answered -{e}");
            }
        }
        next = end;
    }
    Ok(())
}

fn key(k: u64) -> String {
    format!("key:{k}")
}

async fn client(
    mut conn: Conn,
    mut rng: StdRng,
    share: u64,
    args: ClientsArgs,
    value: Vec<u8>,
) -> anyhow::Result<ClientResult> {
    let mut result = ClientResult {
        latencies_us: Vec::with_capacity(share as usize),
        ..ClientResult::default()
    };
    let mut left = share;
    while left > 0 {
        let batch = left.min(args.pipeline);
        for _ in 0..batch {
            let k = key(rng.gen_range(0..args.keys));
            if rng.gen_bool(args.ratio_get) {
                conn.queue(&[b"GET".as_slice(), k.as_bytes()]);
            } else {
                conn.queue(&[b"SET".as_slice(), k.as_bytes(), &value]);
            }
        }
        let sent = Instant::now();
        conn.flush().await?;
        for _ in 0..batch {
            let reply = conn.reply().await?;
            let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            result.latencies_us.push(us);
            if let Frame::Error(e) = reply {
                result.errors += 1;
                result.error_sample.get_or_insert(e);
            }
        }
        left -= batch;
    }
    result.pushes = conn.pushes;
    Ok(result)
}

fn quantile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let at = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[at]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(bytes: &[u8]) -> (Vec<Frame>, Pushes, usize) {
        let mut input = BytesMut::from(bytes);
        let mut pushes = Pushes::default();
        let mut out = Vec::new();
        while let Some(frame) = next_reply(&mut input, &mut pushes).unwrap() {
            out.push(frame);
        }
        (out, pushes, input.len())
    }

    #[test]
    fn pushes_between_replies_are_counted_not_returned() {
        let bytes = b"+OK\r\n\
            >2\r\n$10\r\ninvalidate\r\n*1\r\n$5\r\nkey:1\r\n\
            $3\r\nabc\r\n\
            >2\r\n$10\r\ninvalidate\r\n*2\r\n$5\r\nkey:2\r\n$5\r\nkey:3\r\n\
            >2\r\n$10\r\ninvalidate\r\n_\r\n\
            _\r\n\
            >3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n";
        let (out, pushes, left) = replies(bytes);
        assert_eq!(
            out,
            vec![Frame::ok(), Frame::Bulk("abc".into()), Frame::Null]
        );
        assert_eq!(
            pushes,
            Pushes {
                invalidations: 3,
                keys: 4,
                other: 1
            }
        );
        assert_eq!(left, 0);
    }

    #[test]
    fn a_split_reply_waits_and_a_whole_push_before_it_is_taken() {
        let mut input =
            BytesMut::from(&b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$3\r\nab"[..]);
        let mut pushes = Pushes::default();
        assert_eq!(next_reply(&mut input, &mut pushes).unwrap(), None);
        assert_eq!(pushes.invalidations, 1);
        assert_eq!(&input[..], b"$3\r\nab");
        input.extend_from_slice(b"c\r\n");
        assert_eq!(
            next_reply(&mut input, &mut pushes).unwrap(),
            Some(Frame::Bulk("abc".into()))
        );
        assert_eq!(pushes.invalidations, 1);
        assert!(input.is_empty());
    }

    #[test]
    fn a_split_push_is_not_a_reply() {
        let mut input = BytesMut::from(&b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1"[..]);
        let mut pushes = Pushes::default();
        assert_eq!(next_reply(&mut input, &mut pushes).unwrap(), None);
        assert_eq!(pushes, Pushes::default());
        input.extend_from_slice(b"\r\nk\r\n:7\r\n");
        assert_eq!(
            next_reply(&mut input, &mut pushes).unwrap(),
            Some(Frame::Integer(7))
        );
        assert_eq!(pushes.keys, 1);
    }
}
