//! Runs arbitrary bytes as a Lua script, with arbitrary keys and
//! arguments, through `meridian_script::Engine` against an in-memory host,
//! and hands the arguments to the libraries' decoders.
//!
//! Checks that nothing panics, that every outcome is a reply (a script
//! still running after 50 ms is killed, as SCRIPT KILL would), and that
//! the state then still runs a trivial script right.
//!
//! Input layout: the body, then for each key or argument a 0xFF byte
//! followed by it; byte 0 of the body says how many of those are keys
//! (its low two bits). One engine serves every input, as one serves a
//! region, so what an input leaves behind meets the next.

#![no_main]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use meridian_resp::Frame;
use meridian_script::{Engine, Host, Mode, Watch};

const BUSY_AFTER: Duration = Duration::from_millis(50);
/// The scripting state's memory, below the 32 MB any one allocation may
/// take under `scripts/fuzz`.
const MEMORY_LIMIT: usize = 24 << 20;

/// Strings, lists and hashes over maps; any other command is unknown.
#[derive(Default)]
struct MapHost {
    strings: HashMap<Bytes, Bytes>,
    lists: HashMap<Bytes, VecDeque<Bytes>>,
    hashes: HashMap<Bytes, HashMap<Bytes, Bytes>>,
}

impl Host for MapHost {
    fn call(&mut self, args: Vec<Bytes>, _resp3: bool) -> Frame {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match (name.as_str(), args.len()) {
            ("get", 2) => self
                .strings
                .get(&args[1])
                .map_or(Frame::Null, |v| Frame::Bulk(v.clone())),
            ("set", 3) => {
                self.strings.insert(args[1].clone(), args[2].clone());
                Frame::ok()
            }
            ("incr", 2) => {
                let Some(n) = self.strings.get(&args[1]).map_or(Some(0), |v| {
                    std::str::from_utf8(v).ok()?.parse::<i64>().ok()
                }) else {
                    return Frame::error("ERR value is not an integer or out of range");
                };
                let Some(n) = n.checked_add(1) else {
                    return Frame::error("ERR increment or decrement would overflow");
                };
                self.strings
                    .insert(args[1].clone(), Bytes::from(n.to_string()));
                Frame::Integer(n)
            }
            ("del", n) if n >= 2 => {
                let mut gone = 0;
                for k in &args[1..] {
                    gone += i64::from(self.strings.remove(k).is_some())
                        + i64::from(self.lists.remove(k).is_some())
                        + i64::from(self.hashes.remove(k).is_some());
                }
                Frame::Integer(gone)
            }
            ("lpush", n) if n >= 3 => {
                let list = self.lists.entry(args[1].clone()).or_default();
                for v in &args[2..] {
                    list.push_front(v.clone());
                }
                Frame::Integer(list.len() as i64)
            }
            ("hset", n) if n >= 4 && n % 2 == 0 => {
                let hash = self.hashes.entry(args[1].clone()).or_default();
                let mut added = 0;
                for pair in args[2..].chunks(2) {
                    added += i64::from(hash.insert(pair[0].clone(), pair[1].clone()).is_none());
                }
                Frame::Integer(added)
            }
            ("hgetall", 2) => {
                let hash = self.hashes.get(&args[1]).cloned().unwrap_or_default();
                Frame::Map(
                    hash.into_iter()
                        .map(|(k, v)| (Frame::Bulk(k), Frame::Bulk(v)))
                        .collect(),
                )
            }
            ("ping", 1) => Frame::simple("PONG"),
            _ => Frame::error("ERR Unknown Redis command called from script"),
        }
    }

    fn acl_check(&mut self, _args: &[Bytes]) -> Option<bool> {
        Some(true)
    }

    fn log(&mut self, _level: u8, _message: &[u8]) {}
}

struct State {
    engine: Engine,
    host: MapHost,
}

/// One engine for the whole run, used only under this mutex.
fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut engine = Engine::new(Mode::Eval).expect("a scripting state");
        // scripts/fuzz fails any allocation over 32 MB.
        engine
            .set_memory_limit(MEMORY_LIMIT)
            .expect("a memory limit");
        Mutex::new(State {
            engine,
            host: MapHost::default(),
        })
    })
}

/// Compiles and runs `body`, killing it once its watch turns busy.
fn run(state: &mut State, body: &[u8], keys: &[Bytes], args: &[Bytes]) -> Frame {
    let f = match state.engine.compile("user_script", body) {
        Ok(f) => f,
        Err(e) => return Frame::error(format!("ERR Error compiling script {e}")),
    };
    let watch = Arc::new(Watch::new(BUSY_AFTER));
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (watch, done) = (watch.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if watch.is_busy() {
                    watch.kill();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let reply = state
        .engine
        .invoke(&f, keys, args, "f_fuzz", &mut state.host, &watch);
    done.store(true, Ordering::Release);
    killer.join().expect("the killer thread ends");
    reply
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    let body = parts.next().unwrap_or_default();
    let rest: Vec<Bytes> = parts.map(Bytes::copy_from_slice).collect();
    let nkeys = usize::from(body.first().copied().unwrap_or(0) & 3).min(rest.len());
    let (keys, args) = rest.split_at(nkeys);
    let mut state = state().lock().unwrap_or_else(|p| p.into_inner());
    let state = &mut *state;

    let _ = run(state, body, keys, args);
    for decoder in [
        "return {pcall(cjson.decode, ARGV[1])}",
        "return {pcall(cmsgpack.unpack, ARGV[1])}",
        "return {pcall(struct.unpack, ARGV[1], ARGV[2])}",
        "return {pcall(struct.pack, ARGV[1], ARGV[2], 1, 2)}",
        "return {pcall(bit.tohex, tonumber(ARGV[1]) or 0, tonumber(ARGV[2]) or 8)}",
        "return {pcall(cjson.encode, cmsgpack.unpack(ARGV[1]))}",
    ] {
        let _ = run(state, decoder.as_bytes(), &[], &rest);
    }

    let health = run(
        state,
        b"redis.call('set', KEYS[1], ARGV[1]); return {redis.call('get', KEYS[1]), 1 + 1}",
        &[Bytes::from_static(b"health")],
        &[Bytes::from_static(b"ok")],
    );
    assert_eq!(
        health,
        Frame::Array(vec![Frame::bulk("ok"), Frame::Integer(2)]),
        "the scripting state is poisoned"
    );
});
