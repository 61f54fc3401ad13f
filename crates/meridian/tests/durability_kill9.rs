//! Crash durability of one region, against the real `meridian` binary.
//!
//! `kill -9` under load must lose no acknowledged write with `--fsync
//! always`, and at most about one second of writes with `--fsync everysec`
//! (the fsync timer's period; a killed process leaves its writes in the page
//! cache, so in practice nothing is lost either). On disk, a torn tail (bytes
//! after the last whole record of the newest segment, as a crash in the
//! middle of a write leaves) is cut off at startup, while damage inside the
//! log with valid records after it stops the region with a message naming
//! the file, because serving on top of it would serve wrong data.
//!
//! Randomness (when to kill, which garbage, which byte to flip) comes from
//! one seed, printed by every test; `MERIDIAN_TEST_SEED=N` replays a run.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use common::{Conn, Meridian};
use meridian_resp::{encode_command, parse_frame, Frame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Writer threads, each with its own connection.
const WRITERS: u64 = 4;
/// SET + INCR pairs each writer sends per round trip.
const PIPELINE_PAIRS: u64 = 8;
/// A writer stops on its own after this many SETs, which bounds the
/// verification work if the kill comes late.
const SETS_PER_WRITER_MAX: u64 = 100_000;
/// Acknowledged commands (all writers) before the kill may happen.
const ACKED_BEFORE_KILL: u64 = 4_000;
/// If the load is this slow to reach `ACKED_BEFORE_KILL`, kill anyway.
const LOAD_WAIT_MAX: Duration = Duration::from_secs(12);
/// Keys per MGET when verifying.
const VERIFY_CHUNK: u64 = 500;

fn seed() -> u64 {
    match std::env::var("MERIDIAN_TEST_SEED") {
        Ok(s) => s.parse().expect("MERIDIAN_TEST_SEED must be a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

fn set_key(writer: u64, i: u64) -> String {
    format!("dura:{writer}:{i}")
}

fn set_value(writer: u64, i: u64) -> String {
    format!(
        "value-{writer}-{i}-{:016x}",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

fn counter_key(writer: u64) -> String {
    format!("dura:counter:{writer}")
}

/// A RESP client whose failures are values: after `kill -9` a read ends in
/// EOF or a reset, which is the expected end of a writer, not a test failure.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// One reply, `Ok(None)` once the server has gone away.
    fn read(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match parse_frame(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk)? {
                0 => return Ok(None),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// What one writer sent and what the server acknowledged. SETs go to
/// `set_key(writer, 0..)` in order and replies arrive in order, so the
/// acknowledged SETs are exactly the first `sets_acked` keys.
#[derive(Debug, Default, Clone)]
struct WriterLog {
    sets_sent: u64,
    sets_acked: u64,
    incrs_sent: u64,
    incrs_acked: u64,
    /// A reply other than the expected one (the test fails on it).
    unexpected: Option<String>,
}

fn writer(addr: SocketAddr, w: u64, acked_total: &AtomicU64, stop: &AtomicBool) -> WriterLog {
    let mut log = WriterLog::default();
    let Ok(mut client) = Client::connect(addr) else {
        return log;
    };
    let counter = counter_key(w);
    while !stop.load(Ordering::Relaxed) && log.sets_sent < SETS_PER_WRITER_MAX {
        let mut out = BytesMut::new();
        for i in log.sets_sent..log.sets_sent + PIPELINE_PAIRS {
            encode_command(
                &["SET", set_key(w, i).as_str(), set_value(w, i).as_str()],
                &mut out,
            );
            encode_command(&["INCR", counter.as_str()], &mut out);
        }
        // Counted as sent before the write: part of it may reach the server
        // even if the write fails.
        log.sets_sent += PIPELINE_PAIRS;
        log.incrs_sent += PIPELINE_PAIRS;
        if client.stream.write_all(&out).is_err() {
            return log;
        }
        for _ in 0..PIPELINE_PAIRS {
            match client.read() {
                Ok(Some(Frame::Simple(s))) if s == "OK" => log.sets_acked += 1,
                Ok(Some(other)) => {
                    log.unexpected = Some(format!("SET replied {other:?}"));
                    return log;
                }
                Ok(None) | Err(_) => return log,
            }
            match client.read() {
                Ok(Some(Frame::Integer(n))) if n as u64 == log.incrs_acked + 1 => {
                    log.incrs_acked += 1
                }
                Ok(Some(other)) => {
                    log.unexpected = Some(format!(
                        "INCR number {} replied {other:?}",
                        log.incrs_acked + 1
                    ));
                    return log;
                }
                Ok(None) | Err(_) => return log,
            }
            acked_total.fetch_add(2, Ordering::Relaxed);
        }
    }
    log
}

/// What a restarted region holds of what the writers sent.
#[derive(Debug, Default)]
struct Found {
    /// Acknowledged SETs found with their value.
    sets_present: u64,
    /// Acknowledged SETs missing (or holding another value).
    sets_missing: u64,
    /// Sent but unacknowledged SETs that made it.
    inflight_sets_present: u64,
    /// Acknowledged INCRs not reflected in their counter.
    incrs_missing: u64,
    /// Counters holding more than the INCRs sent (impossible if correct).
    counters_over_sent: Vec<String>,
    /// Keys never sent that exist (impossible if correct).
    phantom_keys: Vec<String>,
    first_missing: Vec<String>,
}

fn verify(conn: &mut Conn, logs: &[WriterLog]) -> Found {
    let mut found = Found::default();
    for (w, log) in logs.iter().enumerate() {
        let w = w as u64;
        let mut start = 0;
        while start < log.sets_sent {
            let end = (start + VERIFY_CHUNK).min(log.sets_sent);
            let mut args = vec!["MGET".to_string()];
            args.extend((start..end).map(|i| set_key(w, i)));
            let Frame::Array(values) = conn.cmd(&args) else {
                panic!("MGET did not return an array");
            };
            assert_eq!(values.len() as u64, end - start);
            for (i, value) in (start..end).zip(values) {
                let right = value == Frame::Bulk(set_value(w, i).into());
                if i < log.sets_acked {
                    if right {
                        found.sets_present += 1;
                    } else {
                        found.sets_missing += 1;
                        if found.first_missing.len() < 5 {
                            found
                                .first_missing
                                .push(format!("{} = {value:?}", set_key(w, i)));
                        }
                    }
                } else if right {
                    found.inflight_sets_present += 1;
                }
            }
            start = end;
        }
        let never_sent = set_key(w, log.sets_sent);
        if conn.cmd(&["GET", never_sent.as_str()]) != Frame::Null {
            found.phantom_keys.push(never_sent);
        }
        let counter = match conn.cmd(&["GET", counter_key(w).as_str()]) {
            Frame::Null => 0,
            Frame::Bulk(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("counter {w} holds {b:?}")),
            other => panic!("GET counter {w} replied {other:?}"),
        };
        found.incrs_missing += log.incrs_acked.saturating_sub(counter);
        if counter > log.incrs_sent {
            found.counters_over_sent.push(format!(
                "{} = {counter} but only {} INCRs were sent",
                counter_key(w),
                log.incrs_sent
            ));
        }
    }
    found
}

struct CrashRun {
    logs: Vec<WriterLog>,
    /// From the writers' start to the kill.
    load_time: Duration,
    found: Found,
}

/// Loads the region from `WRITERS` connections, kills it with SIGKILL at a
/// random moment once `ACKED_BEFORE_KILL` commands were acknowledged,
/// restarts it on the same data directory and checks what survived.
fn crash_under_load(fsync: &str, kill_jitter_ms: u64, test: &str) -> CrashRun {
    let seed = seed();
    println!("{test}: seed {seed} (replay with MERIDIAN_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let jitter = Duration::from_millis(rng.gen_range(0..=kill_jitter_ms));

    let mut region = Meridian::start(&["--fsync", fsync]);
    let addr = region.resp;
    let acked_total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked_total, stop) = (acked_total.clone(), stop.clone());
            thread::spawn(move || writer(addr, w, &acked_total, &stop))
        })
        .collect();

    let wait_until = started + LOAD_WAIT_MAX;
    while acked_total.load(Ordering::Relaxed) < ACKED_BEFORE_KILL && Instant::now() < wait_until {
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(jitter);
    let acked_at_kill = acked_total.load(Ordering::Relaxed);
    region.kill9();
    let load_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<WriterLog> = writers
        .into_iter()
        .map(|h| h.join().expect("writer thread panicked"))
        .collect();

    for (w, log) in logs.iter().enumerate() {
        assert!(
            log.unexpected.is_none(),
            "{test}: writer {w}: {}",
            log.unexpected.as_deref().unwrap_or_default()
        );
    }
    let acked: u64 = logs.iter().map(|l| l.sets_acked + l.incrs_acked).sum();
    assert!(
        acked >= acked_at_kill,
        "{test}: fewer acknowledgements recorded than counted"
    );
    assert!(
        acked > 0,
        "{test}: no write was acknowledged before the kill"
    );

    let restarted = Meridian::start_in(&region.dir, &["--fsync", fsync]);
    let found = verify(&mut restarted.conn(), &logs);
    drop(restarted);

    let sets_acked: u64 = logs.iter().map(|l| l.sets_acked).sum();
    let incrs_acked: u64 = logs.iter().map(|l| l.incrs_acked).sum();
    let sets_inflight: u64 = logs.iter().map(|l| l.sets_sent - l.sets_acked).sum();
    let incrs_inflight: u64 = logs.iter().map(|l| l.incrs_sent - l.incrs_acked).sum();
    println!(
        "{test}: killed after {:.3}s (jitter {}ms); acknowledged {sets_acked} SETs + {incrs_acked} \
         INCRs ({:.0} writes/s); present after restart {} SETs, missing {} SETs + {} INCRs; \
         in flight at the kill {sets_inflight} SETs ({} of them present) + {incrs_inflight} INCRs",
        load_time.as_secs_f64(),
        jitter.as_millis(),
        acked as f64 / load_time.as_secs_f64(),
        found.sets_present,
        found.sets_missing,
        found.incrs_missing,
        found.inflight_sets_present,
    );
    assert!(
        found.phantom_keys.is_empty(),
        "{test}: keys that were never written exist: {:?}",
        found.phantom_keys
    );
    assert!(
        found.counters_over_sent.is_empty(),
        "{test}: counters above the INCRs sent: {:?}",
        found.counters_over_sent
    );
    CrashRun {
        logs,
        load_time,
        found,
    }
}

#[test]
fn fsync_always_keeps_every_acknowledged_write_after_kill9() {
    let run = crash_under_load(
        "always",
        500,
        "fsync_always_keeps_every_acknowledged_write_after_kill9",
    );
    assert_eq!(
        run.found.sets_missing, 0,
        "acknowledged SETs lost or wrong, e.g. {:?}",
        run.found.first_missing
    );
    assert_eq!(
        run.found.incrs_missing, 0,
        "acknowledged INCRs lost (a counter is below its acknowledged INCRs)"
    );
    let sets_acked: u64 = run.logs.iter().map(|l| l.sets_acked).sum();
    assert_eq!(run.found.sets_present, sets_acked);
}

#[test]
fn fsync_everysec_loss_is_bounded_after_kill9() {
    let run = crash_under_load(
        "everysec",
        1_500,
        "fsync_everysec_loss_is_bounded_after_kill9",
    );
    let acked: u64 = run.logs.iter().map(|l| l.sets_acked + l.incrs_acked).sum();
    let lost = run.found.sets_missing + run.found.incrs_missing;
    let writes_per_second = acked as f64 / run.load_time.as_secs_f64();
    // Everything older than the last fsync tick is on disk: at most one
    // timer period of acknowledged writes may be missing.
    let bound = writes_per_second.ceil() as u64;
    println!(
        "fsync_everysec_loss_is_bounded_after_kill9: lost {lost} of {acked} acknowledged writes \
         (bound: one second of writes = {bound})"
    );
    assert!(
        lost <= bound,
        "lost {lost} acknowledged writes, more than one second's worth ({bound}); e.g. {:?}",
        run.found.first_missing
    );
}

/// Stops the region with SIGTERM and checks it exits cleanly.
fn stop_cleanly(region: &mut Meridian) {
    let pid = region.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match region.child.try_wait().expect("waiting for meridian") {
            Some(status) => {
                assert!(status.success(), "meridian exited with {status} on SIGTERM");
                return;
            }
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            None => panic!("meridian did not exit within 10s of SIGTERM"),
        }
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("listing the data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".log"))
        })
        .collect();
    segs.sort();
    segs
}

fn newest_segment(dir: &Path) -> PathBuf {
    segments(dir)
        .pop()
        .unwrap_or_else(|| panic!("no seg-*.log in {}", dir.display()))
}

/// Writes `keys` pipelined SETs `prefix:0..keys`, one round trip per 100.
fn write_keys(conn: &mut Conn, prefix: &str, keys: u64) {
    for chunk_start in (0..keys).step_by(100) {
        let end = (chunk_start + 100).min(keys);
        for i in chunk_start..end {
            let (key, value) = (format!("{prefix}:{i}"), format!("{prefix}-value-{i}"));
            conn.send(&["SET", key.as_str(), value.as_str()]);
        }
        for i in chunk_start..end {
            assert_eq!(conn.read(), Some(Frame::ok()), "SET {prefix}:{i}");
        }
    }
}

fn assert_keys(conn: &mut Conn, prefix: &str, keys: u64) {
    for chunk_start in (0..keys).step_by(VERIFY_CHUNK as usize) {
        let end = (chunk_start + VERIFY_CHUNK).min(keys);
        let mut args = vec!["MGET".to_string()];
        args.extend((chunk_start..end).map(|i| format!("{prefix}:{i}")));
        let expected = Frame::Array(
            (chunk_start..end)
                .map(|i| Frame::Bulk(format!("{prefix}-value-{i}").into()))
                .collect(),
        );
        assert_eq!(
            conn.cmd(&args),
            expected,
            "keys {prefix}:{chunk_start}..{end}"
        );
    }
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening the segment");
    f.write_all(bytes).expect("appending to the segment");
    f.sync_all().expect("syncing the segment");
}

#[test]
fn torn_tail_of_the_newest_segment_is_cut_off_at_restart() {
    let seed = seed();
    println!("torn_tail_of_the_newest_segment_is_cut_off_at_restart: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let random = |rng: &mut StdRng, n: usize| -> Vec<u8> { (0..n).map(|_| rng.gen()).collect() };
    // What a crash can leave after the last whole record: a partial record
    // header, a header whose payload never fully arrived, a whole record
    // whose bytes did not all reach the disk (bad checksum), and the zeros a
    // filesystem can expose after extending a file.
    let mut partial_payload = 1_000u32.to_le_bytes().to_vec();
    partial_payload.extend(random(&mut rng, 12 + 37));
    let mut bad_checksum = 24u32.to_le_bytes().to_vec();
    bad_checksum.extend(random(&mut rng, 12 + 24));
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("partial record header", random(&mut rng, 7)),
        ("partial payload", partial_payload),
        ("bad checksum", bad_checksum),
        ("zeros", vec![0; 4096]),
    ];

    let mut region = Meridian::start(&["--fsync", "always"]);
    let dir = region.dir.clone();
    write_keys(&mut region.conn(), "torn0", 1_000);
    stop_cleanly(&mut region);
    for (round, (kind, bytes)) in garbage.iter().enumerate() {
        let segment = newest_segment(&dir);
        let clean_len = std::fs::metadata(&segment).unwrap().len();
        append_bytes(&segment, bytes);

        let mut restarted = Meridian::start_in(&dir, &["--fsync", "always"]);
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            clean_len,
            "{kind}: {} was not cut back to its last whole record",
            segment.display()
        );
        let mut conn = restarted.conn();
        for earlier in 0..=round {
            assert_keys(&mut conn, &format!("torn{earlier}"), 1_000);
        }
        // The region accepts writes again on top of the cut log.
        write_keys(&mut conn, &format!("torn{}", round + 1), 1_000);
        stop_cleanly(&mut restarted);
        println!(
            "{kind}: {} garbage bytes appended to {}, cut off at restart, all keys present",
            bytes.len(),
            segment.display()
        );
    }
    let last = Meridian::start_in(&dir, &[]);
    let mut conn = last.conn();
    for round in 0..=garbage.len() {
        assert_keys(&mut conn, &format!("torn{round}"), 1_000);
    }
}

#[test]
fn corrupt_record_inside_the_log_stops_the_region() {
    let seed = seed();
    println!("corrupt_record_inside_the_log_stops_the_region: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    // No snapshot may compact the records away before the damage is made.
    let no_snapshot = ["--fsync", "always", "--snapshot-after-ops", "1000000000"];
    let mut region = Meridian::start(&no_snapshot);
    let dir = region.dir.clone();
    write_keys(&mut region.conn(), "intact", 3_000);
    stop_cleanly(&mut region);

    let segs = segments(&dir);
    assert_eq!(segs.len(), 1, "expected one segment: {segs:?}");
    let segment = &segs[0];
    let original = std::fs::read(segment).unwrap();
    // Somewhere in the middle half: whole records follow the damaged one.
    let at = rng.gen_range(original.len() / 4..original.len() * 3 / 4);
    let mut damaged = original.clone();
    damaged[at] ^= 1 << rng.gen_range(0..8);
    std::fs::write(segment, &damaged).unwrap();
    println!(
        "flipped a bit of byte {at} of {} ({} bytes)",
        segment.display(),
        original.len()
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--repl",
            "127.0.0.1:0",
        ])
        .args(no_snapshot)
        .env("MERIDIAN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning meridian");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("meridian kept running on a log with a corrupt record");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    println!("meridian exited with {status}; stderr:\n{stderr}");
    assert!(!status.success(), "meridian exited successfully: {status}");
    assert!(
        !stdout.contains("listening"),
        "meridian served before failing: {stdout}"
    );
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(name),
        "stderr does not name the damaged file {name}: {stderr}"
    );
    assert!(
        stderr.contains("corrupt"),
        "stderr does not say the data is corrupt: {stderr}"
    );
    assert_eq!(
        std::fs::read(segment).unwrap(),
        damaged,
        "the failed start modified the damaged segment"
    );

    // With the byte restored the same directory opens and holds everything.
    std::fs::write(segment, &original).unwrap();
    let repaired = Meridian::start_in(&dir, &no_snapshot);
    assert_keys(&mut repaired.conn(), "intact", 3_000);
}
