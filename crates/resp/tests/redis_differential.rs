//! Differential check of request parsing against a real redis-server: the
//! same random request streams go to Redis and to `RequestParser`, and the
//! replies Redis sends must be exactly the ones our parse implies (one reply
//! per command, then the same protocol error and a close, or a wait).
//!
//! Needs `redis-server` (7.0) on PATH; `scripts/test` installs it, and the
//! test fails rather than skips without it.
//! Set `RESP_DIFF_SEED` to replay a run; the seed is printed on failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use meridian_resp::{parse_frame, Frame, Limits, RequestParser};

const CASES: usize = 600;
const CONNECTIONS_AT_ONCE: usize = 32;
/// How long Redis may stay silent before we conclude it is waiting for more.
const QUIET_MS: u64 = 200;

/// What a client observes for one reply.
#[derive(Debug, PartialEq)]
enum Observed {
    Pong,
    Bulk(Vec<u8>),
    /// Any error other than a protocol error (unknown command, NOAUTH, ...).
    CommandError,
    /// The raw protocol error line, after which the server closes.
    ProtocolError(Vec<u8>),
}

struct Server(Child, u16);

impl Server {
    fn start(password: Option<&str>) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only the server this test started.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ask_redis(port: u16, input: &[u8]) -> (Vec<Observed>, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(QUIET_MS)))
        .expect("timeout");
    stream.write_all(input).expect("send");
    let mut received = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let mut observed = Vec::new();
    let mut rest = &received[..];
    while !rest.is_empty() {
        // A protocol error may carry a raw byte that breaks reply framing.
        if rest.starts_with(b"-ERR Protocol error") {
            observed.push(Observed::ProtocolError(rest.to_vec()));
            break;
        }
        match parse_frame(rest) {
            Ok(Some((frame, used))) => {
                observed.push(match frame {
                    Frame::Simple(text) if text == "PONG" => Observed::Pong,
                    Frame::Bulk(data) => Observed::Bulk(data.to_vec()),
                    Frame::Error(_) => Observed::CommandError,
                    other => panic!("unexpected reply {other:?}"),
                });
                rest = &rest[used..];
            }
            other => panic!("unparsable reply {other:?} in {received:?}"),
        }
    }
    (observed, closed)
}

/// The replies Redis must send if it parsed `input` the way we do. Commands
/// are drawn from `PING [msg]`, `ECHO msg` and junk, so each reply follows
/// from the arguments alone.
fn expected(input: &[u8], unauthenticated: bool) -> (Vec<Observed>, bool) {
    let limits = Limits {
        unauthenticated,
        // Redis 7.0 accepts counts up to i32::MAX.
        max_multibulk_len: i32::MAX as usize,
        ..Limits::default()
    };
    let mut parser = RequestParser::new();
    let mut buf = BytesMut::from(input);
    let mut observed = Vec::new();
    loop {
        match parser.next_command(&mut buf, &limits) {
            Ok(Some(args)) => {
                let name = args[0].to_ascii_uppercase();
                observed.push(match (unauthenticated, &name[..], args.len()) {
                    (true, _, _) => Observed::CommandError,
                    (false, b"PING", 1) => Observed::Pong,
                    (false, b"PING" | b"ECHO", 2) => Observed::Bulk(args[1].to_vec()),
                    _ => Observed::CommandError,
                });
            }
            Ok(None) => return (observed, false),
            Err(error) => {
                let mut reply = BytesMut::new();
                error.encode_reply(&mut reply);
                observed.push(Observed::ProtocolError(reply.to_vec()));
                return (observed, true);
            }
        }
    }
}

/// Pieces of requests, valid and not, that random streams are made of. No
/// piece can spell a command with side effects.
const PIECES: &[&[u8]] = &[
    b"*",
    b"$",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"-1",
    b"11",
    b"16385",
    b"\r\n",
    b"\r",
    b"\n",
    b"\0",
    b" ",
    b"\t",
    b"\x0b",
    b"\"",
    b"'",
    b"\\",
    b"\\x",
    b"41",
    b"4g",
    b"ECHO",
    b"PING",
    b"ECHO ",
    b"-",
    b"a",
    b"\xff",
    b":",
    b"\"\"",
    b"*2\r\n$4\r\nECHO\r\n$1\r\nz\r\n",
];

fn random_stream(state: &mut u64) -> Vec<u8> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let pieces = 1 + next() % 25;
    let mut stream = Vec::new();
    for _ in 0..pieces {
        stream.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
    }
    if next() % 2 == 0 {
        stream.extend_from_slice(b"\r\n");
    }
    stream
}

#[test]
fn random_request_streams_get_the_replies_redis_sends() {
    let seed: u64 = std::env::var("RESP_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let open = Server::start(None);
    let locked = Server::start(Some("differential"));
    let mut state = seed;
    let cases: Vec<(Vec<u8>, bool)> = (0..CASES)
        .map(|i| (random_stream(&mut state), i % 3 == 0))
        .collect();
    let mismatches: Vec<String> = thread::scope(|scope| {
        let workers: Vec<_> = cases
            .chunks(CASES.div_ceil(CONNECTIONS_AT_ONCE))
            .map(|chunk| {
                let (open, locked) = (open.1, locked.1);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(input, unauthenticated)| {
                            let port = if *unauthenticated { locked } else { open };
                            let redis = ask_redis(port, input);
                            let ours = expected(input, *unauthenticated);
                            (redis != ours).then(|| {
                                format!(
                                    "{:?} (unauthenticated: {unauthenticated})\n  redis: {redis:?}\n  ours:  {ours:?}",
                                    String::from_utf8_lossy(input)
                                )
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    });
    assert!(
        mismatches.is_empty(),
        "seed {seed}: {} of {CASES} streams differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
