//! Local servers and small client helpers for the proxy tests: an echo
//! server, a timestamping sink and a greeter that names itself, all on
//! loopback ports the OS picks.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Echoes every connection's bytes back until it closes its write half, then
/// closes.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(any_port()).await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// What a sink saw arrive: when, and which bytes.
#[derive(Debug)]
pub struct Arrival {
    pub at: Instant,
    pub bytes: Vec<u8>,
}

/// Reads every connection to the end and reports each read, with the time
/// it completed.
pub async fn sink_server() -> (SocketAddr, mpsc::UnboundedReceiver<Arrival>) {
    let listener = TcpListener::bind(any_port()).await.expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let arrival = Arrival {
                        at: Instant::now(),
                        bytes: buf[..n].to_vec(),
                    };
                    if tx.send(arrival).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Writes `name` to every connection as soon as it is accepted, then echoes.
pub async fn greeter_server(name: u8) -> SocketAddr {
    let listener = TcpListener::bind(any_port()).await.expect("bind greeter");
    let addr = listener.local_addr().expect("greeter addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket.write_all(&[name]).await.is_err() {
                    return;
                }
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `message` and waits for it to come back whole; returns the time
/// that took.
pub async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("echo within 10 s")
        .expect("read echo");
    assert_eq!(back, message);
    started.elapsed()
}

/// True if the stream reaches end of stream or an error within `within`,
/// skipping any bytes still in flight.
pub async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// Collects sink arrivals until `len` bytes came in; returns them with the
/// time the last one arrived.
pub async fn receive_exactly(
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    len: usize,
    within: Duration,
) -> (Vec<u8>, Instant) {
    let mut bytes = Vec::with_capacity(len);
    let mut last = Instant::now();
    tokio::time::timeout(within, async {
        while bytes.len() < len {
            let arrival = arrivals.recv().await.expect("sink alive");
            bytes.extend_from_slice(&arrival.bytes);
            last = arrival.at;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {len} bytes within {within:?}", bytes.len()));
    (bytes, last)
}

/// Polls `condition` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A seed for a randomized test: `NETEM_TEST_SEED` if set (to replay a
/// failure), otherwise the clock. Printed so a failing run can be replayed.
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("NETEM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{test}: seed {seed} (replay with NETEM_TEST_SEED={seed})");
    seed
}
