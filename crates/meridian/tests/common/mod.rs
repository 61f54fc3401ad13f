//! Helpers for tests that run real processes: a `meridian` region on
//! loopback ports chosen by the OS, a real `redis-server` to compare with,
//! and a minimal RESP client that returns parsed frames.

#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_resp::{encode_command, parse_frame, Frame};

pub struct Meridian {
    pub child: Child,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    pub repl: SocketAddr,
    /// The TLS RESP listener, when started with `--tls-listen`.
    pub tls: Option<SocketAddr>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Meridian {
    /// Starts a region with its own temp data dir.
    pub fn start(extra: &[&str]) -> Meridian {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut m = Meridian::start_in(&dir, extra);
        m._tmp = Some(tmp);
        m
    }

    /// Starts a region on an existing data dir (restarts).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Meridian {
        Meridian::start_with_http(dir, "127.0.0.1:0", extra)
    }

    /// Starts a region whose HTTP port listens on `http` (e.g. `0.0.0.0:0`).
    pub fn start_with_http(dir: &Path, http: &str, extra: &[&str]) -> Meridian {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http",
                http,
                "--repl",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawning meridian");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("meridian exited before listening")
            .expect("reading meridian stdout");
        // "meridian listening resp=ADDR http=ADDR repl=ADDR"
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        let (resp, http, repl) = (field("resp="), field("http="), field("repl="));
        let tls = line.contains(" tls=").then(|| field("tls="));
        std::thread::spawn(move || for _ in lines {});
        Meridian {
            child,
            resp,
            http,
            repl,
            tls,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.resp)
    }

    /// Takes over the temp dir of a handle being replaced by a restart.
    pub fn adopt_dir(&mut self, mut old: Meridian) {
        self._tmp = old._tmp.take();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Meridian {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A free loopback port (for servers that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts Debian's redis-server; the test fails (never skips) if it is
    /// missing: `scripts/test` installs it.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server not found: run scripts/test, which installs it");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(addr).is_ok() {
                    return RedisServer {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut child = child;
            let _ = child.kill();
        }
        panic!("redis-server did not start");
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking RESP client that hands back parsed frames.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let mut out = bytes::BytesMut::new();
        encode_command(args, &mut out);
        self.send_raw(&out);
    }

    /// Reads one reply; `None` if the server closed the connection.
    pub fn read(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf).expect("server sent malformed RESP")
            {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading reply: {e}"),
            }
        }
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.send(args);
        self.read().expect("connection closed")
    }

    /// Splits `line` like redis-cli and runs it.
    pub fn line(&mut self, line: &str) -> Frame {
        let args = split_args(line).unwrap_or_else(|| panic!("bad test line {line:?}"));
        self.cmd(&args)
    }
}

/// Splits a command line like redis-cli: spaces, "double quotes" with
/// \n \r \t \" \\ \xHH escapes, 'single quotes'.
pub fn split_args(line: &str) -> Option<Vec<Vec<u8>>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let mut arg = Vec::new();
        if b[i] == b'"' {
            i += 1;
            loop {
                if i >= b.len() {
                    return None;
                }
                match b[i] {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        i += 1;
                        match b[i] {
                            b'n' => arg.push(b'\n'),
                            b'r' => arg.push(b'\r'),
                            b't' => arg.push(b'\t'),
                            b'x' if i + 2 < b.len() => {
                                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                                arg.push(u8::from_str_radix(hex, 16).ok()?);
                                i += 2;
                            }
                            c => arg.push(c),
                        }
                    }
                    c => arg.push(c),
                }
                i += 1;
            }
        } else if b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                arg.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            i += 1;
        } else {
            while i < b.len() && b[i] != b' ' {
                arg.push(b[i]);
                i += 1;
            }
        }
        out.push(arg);
    }
    Some(out)
}

/// The seed of a randomized test: `MERIDIAN_TEST_SEED`, else a random one;
/// printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("MERIDIAN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed: {seed} (replay with MERIDIAN_TEST_SEED={seed})");
    seed
}

/// An integer reply, or a bulk string holding one.
pub fn int(f: Frame) -> i64 {
    match f {
        Frame::Integer(i) => i,
        Frame::Bulk(b) => std::str::from_utf8(&b).unwrap().parse().unwrap(),
        other => panic!("not an integer: {other:?}"),
    }
}

/// Asserts a reply is not an error.
pub fn ok(f: Frame) {
    assert!(!f.is_error(), "{f:?}");
}
