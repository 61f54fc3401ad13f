//! Scripts cannot crash or hang the engine: hostile scripts, generated
//! scripts and random bytes all come back as replies, within a bound, and
//! leave a state that still runs a trivial script right.
//!
//! A failing case prints its proptest seed; `PROPTEST_CASES` runs more.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meridian_resp::Frame;
use meridian_script::{Engine, Host, Mode, Watch};
use proptest::prelude::*;

/// Strings, lists and hashes over maps, with the replies Redis gives; any
/// other command is unknown.
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
            ("lrange", 4) => {
                let list = self.lists.get(&args[1]).cloned().unwrap_or_default();
                Frame::Array(list.into_iter().map(Frame::Bulk).collect())
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
            ("echo", 2) => Frame::Bulk(args[1].clone()),
            _ => Frame::error("ERR Unknown Redis command called from script"),
        }
    }

    fn acl_check(&mut self, _args: &[Bytes]) -> Option<bool> {
        Some(true)
    }

    fn log(&mut self, _level: u8, _message: &[u8]) {}
}

/// How long a script may run before the watch kills it.
const BUSY_AFTER: Duration = Duration::from_millis(50);
/// A reply must come back within this, killed scripts included.
const REPLY_WITHIN: Duration = Duration::from_secs(20);

/// Compiles and runs `body`; a script still running once its watch turns
/// busy is killed, as SCRIPT KILL would. Any outcome is a reply.
fn run(engine: &Engine, host: &mut MapHost, body: &[u8], keys: &[Bytes], args: &[Bytes]) -> Frame {
    let started = Instant::now();
    let f = match engine.compile("user_script", body) {
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
    let reply = engine.invoke(&f, keys, args, "f_test", host, &watch);
    done.store(true, Ordering::Release);
    killer.join().expect("the killer thread ends");
    assert!(
        started.elapsed() < REPLY_WITHIN,
        "{:?} took {:?}",
        String::from_utf8_lossy(body),
        started.elapsed()
    );
    reply
}

fn strs(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// The state is not poisoned: a trivial script still runs right.
fn assert_healthy(engine: &Engine, host: &mut MapHost) {
    let reply = run(
        engine,
        host,
        b"redis.call('set', KEYS[1], ARGV[1]); return {redis.call('get', KEYS[1]), 1 + 1, string.rep('ab', 2)}",
        &strs(&["health"]),
        &strs(&["ok"]),
    );
    assert_eq!(
        reply,
        Frame::Array(vec![
            Frame::bulk("ok"),
            Frame::Integer(2),
            Frame::bulk("abab")
        ]),
        "the state is poisoned"
    );
}

fn is_error(f: &Frame) -> bool {
    matches!(f, Frame::Error(_))
}

fn error_text(f: &Frame) -> String {
    match f {
        Frame::Error(e) => e.clone(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Scripts that attack the engine itself, with what their reply must say
/// (`None`: any reply will do).
const HOSTILE: &[(&str, Option<&str>)] = &[
    // Recursion: Lua's stack, the C stack through metamethods, and
    // endless tail calls (killed).
    (
        "local function f(n) return 1 + f(n + 1) end return f(1)",
        Some("stack overflow"),
    ),
    ("local function f() return f() end return f()", Some("Script killed")),
    (
        "local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end return t.x",
        None,
    ),
    (
        "local t = {} setmetatable(t, {__index = t}) return t.x",
        None,
    ),
    (
        "local mt = {} mt.__add = function(a, b) return a + b end local t = setmetatable({}, mt) return t + 1",
        None,
    ),
    (
        "local s = 'return 1' for i = 1, 300 do s = 'return (function() ' .. s .. ' end)()' end return loadstring(s)()",
        None,
    ),
    ("local s = string.rep('(', 100000) return loadstring('return ' .. s)", None),
    // Memory.
    ("return #string.rep('x', 1e9)", Some("not enough memory")),
    ("local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 1000) .. i end", None),
    ("local s = 'x' while true do s = s .. s end", None),
    ("return table.concat({string.rep('z', 1e6)}, ',', 1, 1e5)", None),
    // unpack and redis.call with very many arguments.
    ("return unpack({}, 1, 1e8)", Some("too many results to unpack")),
    (
        "local t = {} for i = 1, 7990 do t[i] = 'a' end return redis.call('lpush', 'l', unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 20000 do t[i] = 'a' end return redis.call('lpush', 'l', unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7998 do t[i] = i end return redis.pcall(unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 20000 do t[i] = 'x' end return redis.call('del', unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 20000 do t[i] = i end return {unpack(t)}",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = 'a' end return redis.sha1hex(unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = 'a' end return redis.log(redis.LOG_WARNING, unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = i end return math.random(unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = 'a' end return cmsgpack.pack(unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = 1 end return #struct.pack(string.rep('b', 7990), unpack(t))",
        None,
    ),
    (
        "local t = {} for i = 1, 7990 do t[i] = 1 end return bit.bor(unpack(t))",
        None,
    ),
    (
        "return {cmsgpack.unpack(cmsgpack.pack(unpack((function() local t = {} for i = 1, 7000 do t[i] = i end return t end)())))}",
        None,
    ),
    // Coroutines around redis.call.
    (
        "local co = coroutine.wrap(function() return redis.call('set', 'k', coroutine.yield(1)) end) co() return co('v')",
        None,
    ),
    (
        "local co = coroutine.create(function() return redis.call('get', coroutine.yield()) end) coroutine.resume(co) return {coroutine.resume(co, 'k')}",
        None,
    ),
    (
        "local co = coroutine.wrap(function() return pcall(coroutine.yield, 1) end) co() return co()",
        None,
    ),
    (
        "local co = coroutine.wrap(function() while true do redis.call('incr', 'n') end end) return co()",
        Some("Script killed"),
    ),
    (
        "local co = coroutine.create(function() return table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end) return {coroutine.resume(co)}",
        None,
    ),
    // Errors of every type.
    ("error({})", None),
    ("error(nil)", None),
    ("error(function() end)", None),
    ("error(coroutine.create(function() end))", None),
    ("error(setmetatable({}, {__tostring = function() error('again') end}))", None),
    ("error(setmetatable({}, {__tostring = function() return {} end}))", None),
    ("error(setmetatable({err = 1}, {__index = function() error('x') end}))", None),
    ("error({err = {err = 'nested'}})", None),
    ("error(string.rep('e', 1e7))", None),
    ("return tostring(setmetatable({}, {__tostring = function() error({}) end}))", None),
    ("return redis.error_reply(setmetatable({}, {__tostring = function() error('x') end}))", None),
    ("return redis.call('set', 'k', setmetatable({}, {__tostring = function() error('x') end}))", None),
    ("return setmetatable({}, {__index = function() error('boom') end})", None),
    ("return setmetatable({}, {__index = function() while true do end end})", None),
    ("return {err = setmetatable({}, {__tostring = function() error('x') end})}", None),
    // pcall loops.
    ("for i = 1, 100000 do pcall(redis.call, 'nosuch') end return 1", None),
    ("for i = 1, 100000 do pcall(redis.call) end return 1", None),
    ("while true do pcall(redis.call, 'nosuch') end", Some("Script killed")),
    ("while true do pcall(error, {}) end", Some("Script killed")),
    ("while true do pcall(function() while true do end end) end", Some("Script killed")),
    ("while true do xpcall(function() while true do end end, function(e) return e end) end", Some("Script killed")),
    ("while true do coroutine.resume(coroutine.create(function() while true do end end)) end", Some("Script killed")),
    ("return newproxy", Some("nonexistent global variable 'newproxy'")),
    ("local function f() pcall(f) end f() return 1", None),
    // Libraries on hostile input.
    ("return cjson.decode(string.rep('[', 100000))", None),
    ("return cjson.encode(setmetatable({}, {__index = function() error('x') end}))", None),
    ("local t = {} t[1] = t return cjson.encode(t)", None),
    ("return cmsgpack.unpack(string.rep('\\221\\255\\255\\255\\255', 10))", None),
    ("return cmsgpack.unpack(string.rep('\\145', 100000))", None),
    ("local t = {} t[1] = t return cmsgpack.pack(t)", None),
    ("return struct.unpack('i' .. string.rep('9', 30), 'x')", None),
    ("return struct.pack('c0', string.rep('x', 10))", None),
    ("return struct.unpack('!17i', 'xxxx')", None),
    ("return string.format('%' .. string.rep('9', 100) .. 'd', 1)", None),
    ("return string.rep('x', -1)", None),
    ("return bit.tohex(1, -2147483648)", None),
    ("return math.random(2147483647, -2147483648)", None),
    // Replies.
    ("local t = {} local c = t for i = 1, 100000 do c[1] = {} c = c[1] end return t", None),
    ("local t = {} t[1] = t return t", None),
    ("redis.setresp(3) local t = {} t.map = t return t", None),
    ("return {double = 0/0}", None),
    ("return {big_number = string.rep('1', 100)}", None),
    ("return {verbatim_string = {format = 'txtx', string = 'y'}}", None),
    // The sandbox's own pieces.
    ("getmetatable('').__index = nil return ('x'):rep(2)", None),
    ("return getfenv(0)", None),
    ("return getfenv(1000)", None),
    ("setfenv(1, {})", None),
    ("return load(function() error('x') end)", None),
    ("return load(function() return {} end)", None),
    ("return loadstring('\\027Lua')", None),
    ("return collectgarbage('step', 1e9)", None),
    ("return string.dump(redis.call)", None),
];

fn engine() -> Engine {
    Engine::new(Mode::Eval).expect("a scripting state")
}

#[test]
fn hostile_scripts_get_replies_and_leave_the_state_healthy() {
    let engine = engine();
    let mut host = MapHost::default();
    for (body, want) in HOSTILE {
        let reply = run(&engine, &mut host, body.as_bytes(), &[], &[]);
        if let Some(want) = want {
            let text = error_text(&reply);
            assert!(text.contains(want), "{body}: {text}");
        }
        assert_healthy(&engine, &mut host);
    }
}

#[test]
fn each_hostile_script_alone_in_a_fresh_state() {
    for (body, _) in HOSTILE {
        let engine = engine();
        let mut host = MapHost::default();
        run(&engine, &mut host, body.as_bytes(), &[], &[]);
        assert_healthy(&engine, &mut host);
        drop(engine);
    }
}

#[test]
fn a_script_cannot_take_the_regions_memory() {
    let engine = engine();
    let mut host = MapHost::default();
    for body in [
        "return #string.rep('x', 1e9)",
        "local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 1000) .. i end",
    ] {
        let reply = run(&engine, &mut host, body.as_bytes(), &[], &[]);
        assert!(is_error(&reply), "{body}: {reply:?}");
        assert!(
            engine.used_memory() <= meridian_script::engine::MEMORY_LIMIT,
            "{} bytes held",
            engine.used_memory()
        );
        assert_healthy(&engine, &mut host);
    }
}

/// Pieces of Lua the generator strings together.
const SNIPPETS: &[&str] = &[
    "local x = redis.call('get', KEYS[1] or 'k')",
    "redis.call('set', KEYS[1] or 'k', ARGV[1] or 'v')",
    "redis.call('incr', 'n')",
    "redis.pcall('incr', KEYS[1] or 'k')",
    "redis.call('lpush', 'l', unpack(ARGV))",
    "redis.call('hset', 'h', ARGV[1] or 'f', ARGV[2] or 'v')",
    "redis.call('del', unpack(KEYS))",
    "redis.call(unpack(ARGV))",
    "redis.pcall(unpack(ARGV))",
    "redis.setresp(3) local m = redis.call('hgetall', 'h')",
    "local d = cjson.decode(ARGV[1] or '[]')",
    "local d = cmsgpack.unpack(ARGV[1] or '')",
    "local d = {struct.unpack(ARGV[1] or 'i', ARGV[2] or '')}",
    "local d = cjson.encode({KEYS, ARGV})",
    "local d = cmsgpack.pack(KEYS, ARGV)",
    "local d = bit.band(tonumber(ARGV[1]) or 0, 255)",
    "local s = string.rep(ARGV[1] or 'x', tonumber(ARGV[2]) or 3)",
    "local s = string.format('%s %d', ARGV[1] or '', #ARGV)",
    "local s = (ARGV[1] or ''):gsub('.', '%0%0')",
    "pcall(error, {})",
    "pcall(error)",
    "error(ARGV[1])",
    "error({err = ARGV[1]})",
    "error(setmetatable({}, {__tostring = function() error('t') end}))",
    "local t = setmetatable({}, {__index = function(t, k) return k end}) local y = t.z",
    "local co = coroutine.wrap(function(a) return redis.call('get', coroutine.yield(a)) end) co('k') co('k')",
    "collectgarbage()",
    "local function f(n) if n > 0 then return f(n - 1) end return 0 end f(tonumber(ARGV[1]) or 5)",
    "local function g(n) return 1 + g(n + 1) end pcall(g, 1)",
    "for i = 1, 100 do redis.pcall('nosuch', i) end",
    "while #ARGV > 100 do end",
    "local t = {} for i = 1, 9000 do t[i] = i end pcall(redis.call, 'del', unpack(t))",
    "local ok, e = pcall(redis.call, 'incr') local s = tostring(e)",
    "return redis.status_reply(ARGV[1])",
    "return redis.error_reply(ARGV[1])",
    "return {KEYS[1], ARGV[1], {1, 2, {3}}, {ok = 'x'}}",
    "return {err = ARGV[1]}",
    "return tonumber(ARGV[1])",
    "return redis.sha1hex(ARGV[1] or '')",
    "if ARGV[1] then return #ARGV[1] end",
    "do",
    "end",
    "(",
    ")",
    "function",
    "return",
];

fn script() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => proptest::sample::select(SNIPPETS).prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.join(&b"\n"[..]))
}

fn arg() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from),
        proptest::sample::select(
            &[
                "get",
                "set",
                "incr",
                "k",
                "-1",
                "1e9",
                "4294967296",
                "[1,2,{\"a\":[]}]",
                "i",
                "!17i",
                "\u{93}\u{1}\u{2}",
                "{\"a\":",
                "\u{dd}\u{ff}\u{ff}\u{ff}\u{ff}",
                "ping",
            ][..]
        )
        .prop_map(|s| Bytes::from(s.as_bytes().to_vec())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_scripts_always_reply(
        body in script(),
        keys in proptest::collection::vec(arg(), 0..4),
        args in proptest::collection::vec(arg(), 0..6),
    ) {
        let engine = engine();
        let mut host = MapHost::default();
        let _reply = run(&engine, &mut host, &body, &keys, &args);
        let _again = run(&engine, &mut host, &body, &keys, &args);
        assert_healthy(&engine, &mut host);
    }

    #[test]
    fn library_decoders_take_any_bytes(input in proptest::collection::vec(any::<u8>(), 0..64), fmt in arg()) {
        let engine = engine();
        let mut host = MapHost::default();
        let args = vec![Bytes::from(input), fmt];
        for body in [
            "return {pcall(cjson.decode, ARGV[1])}",
            "return {pcall(cmsgpack.unpack, ARGV[1])}",
            "return {pcall(struct.unpack, ARGV[2], ARGV[1])}",
            "return {pcall(struct.unpack, ARGV[1], ARGV[2])}",
            "return {pcall(struct.pack, ARGV[1], 1, 2, 'x')}",
            "return {pcall(string.format, ARGV[1], 1, 'x')}",
            "return cjson.decode(ARGV[1])",
        ] {
            let _ = run(&engine, &mut host, body.as_bytes(), &[], &args);
        }
        assert_healthy(&engine, &mut host);
    }
}

/// A function that calls itself through `pcall` (or `xpcall`) in tail
/// position until the C stack overflows tripped Lua 5.1's own API check in
/// `luaB_pcall` (`L->top < L->ci->top`): an abort where the vendored Lua is
/// built with its assertions. The sandbox's pcall now stops nesting first.
#[test]
fn tail_recursion_through_pcall_overflows_the_c_stack() {
    for body in [
        "local function f() return pcall(f) end return f()",
        "local function f() return xpcall(f, f) end return f()",
    ] {
        let engine = engine();
        let mut host = MapHost::default();
        run(&engine, &mut host, body.as_bytes(), &[], &[]);
        assert_healthy(&engine, &mut host);
    }
}
