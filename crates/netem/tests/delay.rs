//! Delay, jitter, bandwidth, loss and backpressure, measured end to end
//! through a proxy to local servers. Tolerances allow for a loaded 2-core
//! machine: a delivery is never early, and at most 150 ms late.

mod common;

use std::time::{Duration, Instant};

use common::*;
use meridian_netem::{Direction, LinkConditions, Proxy, QUEUE_MAX_BYTES, READ_CHUNK_MAX_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLACK: Duration = Duration::from_millis(150);

fn forward_only(forward: Direction) -> LinkConditions {
    LinkConditions {
        forward,
        backward: Direction::IDEAL,
    }
}

fn assert_within(measured: Duration, configured: Duration) {
    assert!(
        measured >= configured && measured <= configured + SLACK,
        "measured {measured:?}, configured {configured:?} (+{SLACK:?} allowed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_delay_is_never_early_and_at_most_150ms_late() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction::delayed(120)))
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    for i in 0..5u8 {
        let sent = Instant::now();
        client.write_all(&[i; 100]).await.unwrap();
        let (bytes, at) = receive_exactly(&mut arrivals, 100, Duration::from_secs(5)).await;
        assert_eq!(bytes, [i; 100]);
        assert_within(at - sent, Duration::from_millis(120));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_adds_the_delays_of_both_directions() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    proxy
        .control()
        .set(LinkConditions {
            forward: Direction::delayed(80),
            backward: Direction::delayed(40),
        })
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    for _ in 0..5 {
        let rtt = round_trip(&mut client, b"ping").await;
        assert_within(rtt, Duration::from_millis(120));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_delay_applies_to_an_established_connection() {
    let proxy = Proxy::start(any_port(), echo_server().await).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    assert_within(round_trip(&mut client, b"a").await, Duration::ZERO);
    proxy.control().set(LinkConditions::wan(100)).unwrap();
    assert_within(
        round_trip(&mut client, b"b").await,
        Duration::from_millis(200),
    );
    proxy.control().set(LinkConditions::IDEAL).unwrap();
    assert_within(round_trip(&mut client, b"c").await, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_delay_releases_queued_bytes_at_once() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction::delayed(5_000)))
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    let sent = Instant::now();
    client.write_all(b"queued").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(arrivals.try_recv().is_err(), "delivered before its delay");
    proxy.control().set(LinkConditions::IDEAL).unwrap();
    let (bytes, at) = receive_exactly(&mut arrivals, 6, Duration::from_secs(2)).await;
    assert_eq!(bytes, b"queued");
    assert_within(at - sent, Duration::from_millis(200));
}

/// A small xorshift for the test's own choices (batch sizes, pauses), seeded
/// from the printed test seed.
struct TestRng(u64);

impl TestRng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_never_reorders_the_stream() {
    let seed = test_seed("jitter_never_reorders_the_stream");
    let proxy = Proxy::start_seeded(any_port(), echo_server().await, seed)
        .await
        .unwrap();
    // Jitter larger than the delay: sampled delays range over 0..=40 ms, so
    // without the ordering rule later chunks would often overtake earlier ones.
    proxy
        .control()
        .set(LinkConditions::wan(10).with_jitter(30))
        .unwrap();
    const NUMBERS: u32 = 50_000;
    let client = connect(proxy.addr()).await;
    let (mut reader, mut writer) = client.into_split();
    let writing = tokio::spawn(async move {
        let mut rng = TestRng(seed | 1);
        let mut next = 0u32;
        while next < NUMBERS {
            let batch = (1 + rng.below(200) as u32).min(NUMBERS - next);
            let bytes: Vec<u8> = (next..next + batch).flat_map(u32::to_be_bytes).collect();
            writer.write_all(&bytes).await.unwrap();
            next += batch;
            tokio::time::sleep(Duration::from_micros(rng.below(2_000))).await;
        }
        writer.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut echoed))
        .await
        .expect("stream finished within 60 s")
        .unwrap();
    writing.await.unwrap();
    assert_eq!(echoed.len(), NUMBERS as usize * 4, "seed {seed}");
    for (expected, word) in echoed.chunks_exact(4).enumerate() {
        let got = u32::from_be_bytes(word.try_into().unwrap());
        assert_eq!(got, expected as u32, "out of order (seed {seed})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_is_roughly_honored() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction {
            bandwidth_bytes_per_s: Some(200_000),
            ..Direction::IDEAL
        }))
        .unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let mut client = connect(proxy.addr()).await;
    let sent = Instant::now();
    client.write_all(&payload).await.unwrap();
    let (bytes, at) = receive_exactly(&mut arrivals, payload.len(), Duration::from_secs(10)).await;
    assert_eq!(bytes, payload);
    let took = at - sent;
    // 300 kB at 200 kB/s is 1.5 s; the first slice leaves without waiting.
    assert!(
        took >= Duration::from_millis(1_400) && took <= Duration::from_millis(2_500),
        "300 kB at 200 kB/s took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_chunk_arrives_late_and_intact() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction {
            delay_ms: 100,
            loss: 1.0,
            ..Direction::IDEAL
        }))
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    let sent = Instant::now();
    client.write_all(b"retransmitted").await.unwrap();
    let (bytes, at) = receive_exactly(&mut arrivals, 13, Duration::from_secs(5)).await;
    assert_eq!(bytes, b"retransmitted");
    // 100 ms delay plus a penalty of max(3 x 100 ms, 200 ms).
    assert_within(at - sent, Duration::from_millis(400));
    assert!(proxy.stats().chunks_lost >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_loss_penalizes_exactly_the_chunks_it_counts() {
    let seed = test_seed("partial_loss_penalizes_exactly_the_chunks_it_counts");
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start_seeded(any_port(), sink, seed).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction {
            loss: 0.5,
            ..Direction::IDEAL
        }))
        .unwrap();
    let mut client = connect(proxy.addr()).await;
    let mut slow = 0;
    const MESSAGES: u64 = 20;
    for i in 0..MESSAGES {
        let sent = Instant::now();
        client.write_all(&i.to_be_bytes()).await.unwrap();
        let (_, at) = receive_exactly(&mut arrivals, 8, Duration::from_secs(5)).await;
        if at - sent >= Duration::from_millis(200) {
            slow += 1;
        }
    }
    let lost = proxy.stats().chunks_lost;
    // Every lost chunk waits at least 200 ms; only a badly stalled machine
    // makes a chunk that was not lost that slow.
    assert!(
        slow >= lost,
        "{slow} slow messages but {lost} lost (seed {seed})"
    );
    assert!(
        (1..MESSAGES).contains(&lost),
        "{lost} of {MESSAGES} lost at p=0.5 (seed {seed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pauses_reading_until_delivery_catches_up() {
    let (sink, mut arrivals) = sink_server().await;
    let proxy = Proxy::start(any_port(), sink).await.unwrap();
    proxy
        .control()
        .set(forward_only(Direction::delayed(1_500)))
        .unwrap();
    // More than the queue plus what both kernels' socket buffers can absorb.
    const TOTAL: usize = 40 * 1024 * 1024;
    let mut client = connect(proxy.addr()).await;
    let writing = tokio::spawn(async move {
        let block = vec![7u8; 1024 * 1024];
        for _ in 0..TOTAL / block.len() {
            client.write_all(&block).await.unwrap();
        }
        client
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let queued = proxy.stats().bytes_queued_forward;
    assert!(
        queued as usize <= QUEUE_MAX_BYTES + READ_CHUNK_MAX_BYTES,
        "{queued} bytes queued, over the bound"
    );
    assert!(
        queued as usize >= QUEUE_MAX_BYTES / 2,
        "only {queued} bytes queued"
    );
    assert!(!writing.is_finished(), "writer was never held back");
    let mut received = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while received < TOTAL {
            received += arrivals.recv().await.expect("sink alive").bytes.len();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {received} of {TOTAL} bytes arrived"));
    writing.await.unwrap();
    let stats = proxy.stats();
    assert_eq!(stats.bytes_forward, TOTAL as u64);
    assert_eq!(stats.bytes_queued_forward, 0);
}
