//! The chaos workload: several client connections per data region, each a
//! closed loop of single commands over a bounded key set, every one
//! recorded with its outcome ([`super::history`]). The drivers only write,
//! read and record; they check nothing.
//!
//! Keys: `r:N` registers (SET, GET), `c:N` counters (INCRBY; only the
//! upper ones are ever deleted), `s:N` sets (SADD of unique members, SREM
//! of members anyone added, SMEMBERS; only the upper ones are deleted), `h:N` hashes (HSET of unique values
//! into a few fields, HGETALL), `l:N` lists (RPUSH and LPUSH of unique
//! values, LPOP and RPOP of one or two, LRANGE; never deleted), `xs:N`
//! streams (XADD `*` of unique values), `b:N` bitmaps (SETBIT to 1),
//! `bf:N` bitfields (BITFIELD OVERFLOW WRAP INCRBY of fixed `u8` fields,
//! which merge as counters), none of these three ever deleted, and DEL on
//! every other type. Values and members are unique per run
//! (`<client>-<n>`), so the checker can tell which write produced what it
//! finds.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_resp::Frame;
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use super::history::{parse_token, Cmd, Op, Outcome, ReadValue};
use crate::rclient::{frame_text, Client, ClientError};

pub const REGISTERS: usize = 12;
pub const COUNTERS: usize = 8;
/// Counters `c:0` .. below this are never deleted.
pub const COUNTERS_NEVER_DELETED: usize = 5;
pub const SETS: usize = 10;
/// Sets `s:0` .. below this are never deleted, so most of their members
/// must survive to the end.
pub const SETS_NEVER_DELETED: usize = 5;
pub const HASHES: usize = 6;
const HASH_FIELDS: usize = 4;
pub const LISTS: usize = 4;
pub const STREAMS: usize = 3;
pub const BITMAPS: usize = 3;
/// Bits a SETBIT picks from.
pub const BITMAP_BITS: u64 = 2048;
pub const BITFIELDS: usize = 2;
/// The fields of every `bf:N`: `u8` at these offsets (apart, so each
/// field's value depends on its own increments only).
pub const BITFIELD_OFFSETS: [u64; 4] = [0, 8, 16, 24];
pub const BITFIELD_WIDTH: u8 = 8;
/// Members per set key kept as candidates for SREM.
const REMOVABLE_MEMBERS_MAX: usize = 32;

/// A command's reply (all of a write's pipeline) must arrive within this.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before reconnecting to a region that is down or restarting.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Every key the workload touches.
pub fn all_keys() -> Vec<String> {
    let mut keys = Vec::new();
    keys.extend((0..REGISTERS).map(|i| format!("r:{i}")));
    keys.extend((0..COUNTERS).map(|i| format!("c:{i}")));
    keys.extend((0..SETS).map(|i| format!("s:{i}")));
    keys.extend((0..HASHES).map(|i| format!("h:{i}")));
    keys.extend((0..LISTS).map(|i| format!("l:{i}")));
    keys.extend((0..STREAMS).map(|i| format!("xs:{i}")));
    keys.extend((0..BITMAPS).map(|i| format!("b:{i}")));
    keys.extend((0..BITFIELDS).map(|i| format!("bf:{i}")));
    keys
}

/// What the drivers share: where each data region is now (`None` while it
/// is down), the stop flag, the history channel and the SREM candidates.
pub struct Workload {
    pub regions: Vec<String>,
    pub addrs: RwLock<Vec<Option<SocketAddr>>>,
    pub stop: AtomicBool,
    pub started: Instant,
    pub think_ms: u64,
    next_id: AtomicU64,
    /// `None` once the run is over, which ends the history writer.
    history: Mutex<Option<mpsc::UnboundedSender<Op>>>,
    removable: Mutex<Vec<VecDeque<String>>>,
}

impl Workload {
    pub fn new(
        regions: Vec<String>,
        addrs: Vec<SocketAddr>,
        started: Instant,
        think_ms: u64,
        history: mpsc::UnboundedSender<Op>,
    ) -> Arc<Workload> {
        Arc::new(Workload {
            regions,
            addrs: RwLock::new(addrs.into_iter().map(Some).collect()),
            stop: AtomicBool::new(false),
            started,
            think_ms,
            next_id: AtomicU64::new(1),
            history: Mutex::new(Some(history)),
            removable: Mutex::new(vec![VecDeque::new(); SETS]),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn record(&self, op: Op) {
        if let Some(history) = &*self.history.lock() {
            let _ = history.send(op);
        }
    }

    /// Closes the history once every client has stopped.
    pub fn close_history(&self) {
        self.history.lock().take();
    }
}

/// One client connection's loop until the workload stops.
pub async fn client(load: Arc<Workload>, region: usize, client: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let Some(addr) = load.addrs.read()[region] else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr)).await {
            Ok(Ok(c)) => c,
            _ => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        while !load.stop.load(Ordering::Relaxed) {
            n += 1;
            let cmd = next_command(&mut rng, &load, client, n);
            let alive = run_one(&load, &mut conn, region, client, cmd).await;
            if !alive {
                break;
            }
            if load.think_ms > 0 {
                let pause = rng.gen_range(0..=load.think_ms);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}

/// The client id of the epilogue's writes.
pub const EPILOGUE_CLIENT: u32 = 9_999;

/// After the regions have converged and the load has stopped: one SET of
/// every even register and one HSET of the even fields of every hash, each
/// in a region drawn from `seed`, one at a time. Each such write observed
/// every earlier acknowledged write, so the checker can prove what the
/// final value must be. The other cells keep the concurrent writes the
/// faults left, whose conflicts the checker finds in the journal. Returns
/// how many writes were acknowledged.
pub async fn epilogue(load: &Workload, seed: u64) -> anyhow::Result<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let addrs: Vec<SocketAddr> = load
        .addrs
        .read()
        .iter()
        .map(|a| a.ok_or_else(|| anyhow::anyhow!("a data region is down for the epilogue")))
        .collect::<anyhow::Result<_>>()?;
    let mut conns = Vec::new();
    for addr in &addrs {
        conns.push(Client::connect(*addr).await?);
    }
    let mut cmds: Vec<Cmd> = Vec::new();
    let mut n = 0u64;
    let mut unique = || {
        n += 1;
        format!("v{EPILOGUE_CLIENT}-{n}")
    };
    for r in (0..REGISTERS).step_by(2) {
        cmds.push(Cmd::Set {
            key: format!("r:{r}"),
            value: unique(),
        });
    }
    for h in 0..HASHES {
        for f in (0..HASH_FIELDS).step_by(2) {
            cmds.push(Cmd::Hset {
                key: format!("h:{h}"),
                field: format!("f{f}"),
                value: unique(),
            });
        }
    }
    let mut acked = 0;
    for cmd in cmds {
        let region = rng.gen_range(0..conns.len());
        if run_one(load, &mut conns[region], region, EPILOGUE_CLIENT, cmd).await {
            acked += 1;
        }
    }
    Ok(acked)
}

/// Sends one command (a write between two `MERIDIAN TOKEN`s), records it,
/// and says whether the connection is still usable.
async fn run_one(load: &Workload, conn: &mut Client, region: usize, client: u32, cmd: Cmd) -> bool {
    let args = cmd.args();
    let write = cmd.is_write();
    let token = ["MERIDIAN", "TOKEN"].map(String::from).to_vec();
    let pipeline: Vec<Vec<String>> = if write {
        vec![token.clone(), args, token]
    } else {
        vec![args]
    };
    let id = load.next_id.fetch_add(1, Ordering::Relaxed);
    let invoke_us = load.now_us();
    let result = tokio::time::timeout(REPLY_TIMEOUT, conn.pipeline(&pipeline)).await;
    let complete_us = load.now_us();
    let mut op = Op {
        id,
        client,
        region,
        cmd,
        invoke_us,
        complete_us,
        outcome: Outcome::Ok,
        before: None,
        after: None,
        read: None,
        error: None,
    };
    let alive = match result {
        Err(_) => {
            op.outcome = Outcome::Timeout;
            false
        }
        Ok(Err(e)) => {
            op.outcome = Outcome::Indeterminate;
            op.error = Some(short_error(&e));
            false
        }
        Ok(Ok(replies)) => {
            // What a pop took (the ID an XADD took) is known once its own
            // reply is, whatever the tokens around it answered.
            if op.cmd.keeps_reply() {
                if let Some(reply) = replies.get(1).filter(|r| !r.is_error()) {
                    op.read = Some(read_value(&op.cmd, reply));
                }
            }
            if let Some(err) = replies.iter().find(|r| r.is_error()) {
                op.outcome = Outcome::Error;
                op.error = Some(format!("{err:?}"));
            } else if write {
                let vv = |f: &Frame| frame_text(f).and_then(|t| parse_token(&t, &load.regions));
                op.before = vv(&replies[0]);
                op.after = vv(&replies[2]);
                if op.before.is_none() || op.after.is_none() {
                    op.outcome = Outcome::Error;
                    op.error = Some(format!("unreadable token replies {replies:?}"));
                }
            } else {
                op.read = Some(read_value(&op.cmd, &replies[0]));
            }
            true
        }
    };
    load.record(op);
    alive
}

fn short_error(e: &ClientError) -> String {
    let text = e.to_string();
    text.chars().take(120).collect()
}

fn read_value(cmd: &Cmd, frame: &Frame) -> ReadValue {
    match frame {
        Frame::Null | Frame::NullArray => ReadValue::Nil,
        Frame::Array(items) | Frame::Set(items) => {
            let texts: Vec<String> = items.iter().filter_map(frame_text).collect();
            match cmd {
                Cmd::Hgetall { .. } => ReadValue::Fields(fields_of(&texts)),
                Cmd::Lrange { .. } | Cmd::Lpop { .. } | Cmd::Rpop { .. } => {
                    ReadValue::Elements(texts)
                }
                _ => ReadValue::Members(texts),
            }
        }
        other => frame_text(other).map_or(ReadValue::Nil, ReadValue::Text),
    }
}

/// Pairs an HGETALL reply's flat list into fields.
pub fn fields_of(items: &[String]) -> BTreeMap<String, String> {
    items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// The next command of a client: the mix, over the bounded key set.
fn next_command(rng: &mut StdRng, load: &Workload, client: u32, n: u64) -> Cmd {
    let unique = format!("{client}-{n}");
    match rng.gen_range(0..112) {
        0..=16 => Cmd::Set {
            key: format!("r:{}", rng.gen_range(0..REGISTERS)),
            value: format!("v{unique}"),
        },
        17..=23 => Cmd::Get {
            key: format!("r:{}", rng.gen_range(0..REGISTERS)),
        },
        24..=37 => Cmd::Incrby {
            key: format!("c:{}", rng.gen_range(0..COUNTERS)),
            delta: loop {
                let d = rng.gen_range(-3..=6);
                if d != 0 {
                    break d;
                }
            },
        },
        38..=53 => {
            let set = rng.gen_range(0..SETS);
            let member = format!("m{unique}");
            let mut removable = load.removable.lock();
            let pool = &mut removable[set];
            pool.push_back(member.clone());
            if pool.len() > REMOVABLE_MEMBERS_MAX {
                pool.pop_front();
            }
            Cmd::Sadd {
                key: format!("s:{set}"),
                member,
            }
        }
        54..=62 => {
            let set = rng.gen_range(0..SETS);
            let removable = load.removable.lock();
            let pool = &removable[set];
            let member = if pool.is_empty() {
                "none".to_string()
            } else {
                pool[rng.gen_range(0..pool.len())].clone()
            };
            Cmd::Srem {
                key: format!("s:{set}"),
                member,
            }
        }
        // Only deleted sets stay small enough to read whole.
        63..=65 => Cmd::Smembers {
            key: format!("s:{}", rng.gen_range(SETS_NEVER_DELETED..SETS)),
        },
        66..=76 => Cmd::Hset {
            key: format!("h:{}", rng.gen_range(0..HASHES)),
            field: format!("f{}", rng.gen_range(0..HASH_FIELDS)),
            value: format!("v{unique}"),
        },
        77..=79 => Cmd::Hgetall {
            key: format!("h:{}", rng.gen_range(0..HASHES)),
        },
        80..=87 => {
            let key = format!("l:{}", rng.gen_range(0..LISTS));
            let value = format!("e{unique}");
            if rng.gen_bool(0.5) {
                Cmd::Rpush { key, value }
            } else {
                Cmd::Lpush { key, value }
            }
        }
        88..=92 => {
            let key = format!("l:{}", rng.gen_range(0..LISTS));
            let count = rng.gen_range(1..=2);
            if rng.gen_bool(0.5) {
                Cmd::Lpop { key, count }
            } else {
                Cmd::Rpop { key, count }
            }
        }
        93..=94 => Cmd::Lrange {
            key: format!("l:{}", rng.gen_range(0..LISTS)),
        },
        100..=104 => Cmd::Xadd {
            key: format!("xs:{}", rng.gen_range(0..STREAMS)),
            value: format!("e{unique}"),
        },
        105..=107 => Cmd::Setbit {
            key: format!("b:{}", rng.gen_range(0..BITMAPS)),
            bit: rng.gen_range(0..BITMAP_BITS),
        },
        108..=111 => Cmd::Bitfield {
            key: format!("bf:{}", rng.gen_range(0..BITFIELDS)),
            width: BITFIELD_WIDTH,
            offset: BITFIELD_OFFSETS[rng.gen_range(0..BITFIELD_OFFSETS.len())],
            delta: rng.gen_range(-200..=200),
        },
        _ => {
            let key = match rng.gen_range(0..4) {
                0 => format!("r:{}", rng.gen_range(0..REGISTERS)),
                1 => format!("s:{}", rng.gen_range(SETS_NEVER_DELETED..SETS)),
                2 => format!("h:{}", rng.gen_range(0..HASHES)),
                _ => format!("c:{}", rng.gen_range(COUNTERS_NEVER_DELETED..COUNTERS)),
            };
            Cmd::Del { key }
        }
    }
}
