//! The engine against a small in-memory host: conversions, errors, the
//! sandbox and stopping a busy script.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meridian_resp::Frame;
use meridian_script::{Engine, Host, Mode, Watch};

/// GET, SET and INCR over a map; anything else is unknown.
#[derive(Default)]
struct MapHost {
    data: HashMap<Bytes, Bytes>,
    calls: usize,
}

impl Host for MapHost {
    fn call(&mut self, args: Vec<Bytes>, _resp3: bool) -> Frame {
        self.calls += 1;
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match (name.as_str(), args.len()) {
            ("get", 2) => self
                .data
                .get(&args[1])
                .map_or(Frame::Null, |v| Frame::Bulk(v.clone())),
            ("set", 3) => {
                self.data.insert(args[1].clone(), args[2].clone());
                Frame::ok()
            }
            ("incr", 2) => {
                let n: i64 = self
                    .data
                    .get(&args[1])
                    .map_or(Some(0), |v| std::str::from_utf8(v).ok()?.parse().ok())
                    .unwrap_or(0)
                    + 1;
                self.data
                    .insert(args[1].clone(), Bytes::from(n.to_string()));
                Frame::Integer(n)
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

fn eval(engine: &Engine, host: &mut MapHost, body: &str, keys: &[&str], args: &[&str]) -> Frame {
    let f = engine
        .compile("user_script", body.as_bytes())
        .expect("compiles");
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::from(k.to_string())).collect();
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
    let watch = Arc::new(Watch::new(Duration::ZERO));
    engine.invoke(&f, &keys, &args, "f_test", host, &watch)
}

#[test]
fn replies_convert_as_redis_converts_them() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    assert_eq!(
        eval(&engine, &mut host, "return 100.5", &[], &[]),
        Frame::Integer(100)
    );
    assert_eq!(
        eval(&engine, &mut host, "return true", &[], &[]),
        Frame::Integer(1)
    );
    assert_eq!(
        eval(&engine, &mut host, "return false", &[], &[]),
        Frame::Null
    );
    assert_eq!(
        eval(&engine, &mut host, "return {ok='fine'}", &[], &[]),
        Frame::simple("fine")
    );
    assert_eq!(
        eval(&engine, &mut host, "return {1,'a',{2}}", &[], &[]),
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::bulk("a"),
            Frame::Array(vec![Frame::Integer(2)])
        ])
    );
    assert_eq!(
        eval(
            &engine,
            &mut host,
            "return {KEYS[1], ARGV[1]}",
            &["k"],
            &["v"]
        ),
        Frame::Array(vec![Frame::bulk("k"), Frame::bulk("v")])
    );
}

#[test]
fn redis_call_runs_commands_and_raises_their_errors() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let body = "redis.call('set', KEYS[1], 'x'); return redis.call('get', KEYS[1])";
    assert_eq!(
        eval(&engine, &mut host, body, &["k"], &[]),
        Frame::bulk("x")
    );
    let Frame::Error(e) = eval(&engine, &mut host, "redis.call('nosuch')", &[], &[]) else {
        panic!("an error");
    };
    assert!(
        e.starts_with(
            "ERR Unknown Redis command called from script script: f_test, on @user_script:1."
        ),
        "{e}"
    );
    let pcall = "local r = redis.pcall('nosuch'); return type(r) .. ':' .. r.err";
    assert_eq!(
        eval(&engine, &mut host, pcall, &[], &[]),
        Frame::bulk("table:ERR Unknown Redis command called from script")
    );
}

#[test]
fn globals_are_protected() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    for (body, want) in [
        (
            "return a",
            "Script attempted to access nonexistent global variable 'a'",
        ),
        ("a = 1", "Attempt to modify a readonly table"),
        ("setmetatable(_G, {})", "Attempt to modify a readonly table"),
        ("redis.call = 1", "Attempt to modify a readonly table"),
        ("print('x')", "nonexistent global variable 'print'"),
        ("os.exit()", "nonexistent global variable 'os'"),
        (
            "return loadstring(string.dump(function() return 1 end))()",
            "attempt to call a nil value",
        ),
    ] {
        let Frame::Error(e) = eval(&engine, &mut host, body, &[], &[]) else {
            panic!("{body} must fail");
        };
        assert!(e.contains(want), "{body}: {e}");
    }
}

#[test]
fn a_busy_script_turns_busy_and_stops_when_killed() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let f = engine.compile("user_script", b"while true do end").unwrap();
    let watch = Arc::new(Watch::new(Duration::from_millis(10)));
    let killer = {
        let watch = watch.clone();
        std::thread::spawn(move || {
            while !watch.is_busy() {
                std::thread::sleep(Duration::from_millis(5));
            }
            watch.kill();
        })
    };
    let reply = engine.invoke(&f, &[], &[], "f_test", &mut host, &watch);
    killer.join().unwrap();
    assert_eq!(reply, Frame::error(meridian_script::KILLED));
}

#[test]
fn redis_call_takes_thousands_of_arguments() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    // Redis's "Script check unpack with massive arguments": 7,999 values.
    let body = "local a = {} for i=1,7999 do a[i] = 1 end return redis.pcall('nosuch', unpack(a))";
    let Frame::Error(e) = eval(&engine, &mut host, body, &[], &[]) else {
        panic!("the unknown command's error");
    };
    assert!(e.starts_with("ERR Unknown Redis command"), "{e}");
    assert_eq!(host.calls, 1);
    let bad = "return redis.pcall('get', {})";
    assert_eq!(
        eval(&engine, &mut host, bad, &[], &[]),
        Frame::error("ERR Lua redis lib command arguments must be strings or integers")
    );
}

#[test]
fn acl_check_cmd_answers_for_the_calling_user() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    assert_eq!(
        eval(
            &engine,
            &mut host,
            "return redis.acl_check_cmd('set', 'k', 1)",
            &[],
            &[]
        ),
        Frame::Integer(1)
    );
}

#[test]
fn many_invocations_do_not_pile_up_garbage() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let start = engine.used_memory();
    for _ in 0..10_000 {
        eval(
            &engine,
            &mut host,
            "return redis.call('incr', KEYS[1])",
            &["x"],
            &[],
        );
    }
    // Redis's own check ("EVAL does not leak in the Lua stack") allows
    // 100 kB for the whole state.
    assert!(
        engine.used_memory() < 100 * 1024,
        "{} bytes after 10,000 calls (started at {start})",
        engine.used_memory()
    );
}

#[test]
fn pcall_hands_back_many_results() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    // Lua 5.1's own pcall overruns its frame past about twenty results.
    let body = "local t = {} for i = 1, 40 do t[i] = i end \
                return select('#', pcall(function() return unpack(t) end))";
    assert_eq!(eval(&engine, &mut host, body, &[], &[]), Frame::Integer(41));
    let body = "local t = {} for i = 1, 40 do t[i] = i end return unpack(t)";
    assert_eq!(eval(&engine, &mut host, body, &[], &[]), Frame::Integer(1));
}

#[test]
fn the_string_metatable_cannot_be_changed() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let Frame::Error(e) = eval(
        &engine,
        &mut host,
        "getmetatable('').__index = {upper = function() return 'x' end}",
        &[],
        &[],
    ) else {
        panic!("the change must fail");
    };
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    let Frame::Error(e) = eval(
        &engine,
        &mut host,
        "getmetatable('').__index.upper = function() return 'x' end",
        &[],
        &[],
    ) else {
        panic!("the change must fail");
    };
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    assert_eq!(
        eval(&engine, &mut host, "return ('a'):upper()", &[], &[]),
        Frame::bulk("A")
    );
}

/// A script ending in `return redis.call(...)` (a tail call) once lost the
/// line its error came from: Lua 5.1 gives a tail call to a Lua function
/// the caller's frame. The error names the script and the line, as Redis's.
#[test]
fn an_error_from_a_tail_called_redis_call_names_the_script_line() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    for body in [
        "return redis.call('nosuch')",
        "local x = 1\nreturn redis.call('nosuch')",
        "redis.call('nosuch')",
    ] {
        let Frame::Error(e) = eval(&engine, &mut host, body, &[], &[]) else {
            panic!("an error");
        };
        let line = if body.contains('\n') { 2 } else { 1 };
        assert!(
            e.ends_with(&format!("script: f_test, on @user_script:{line}.")),
            "{body}: {e}"
        );
    }
}

#[test]
fn a_script_sees_fresh_keys_and_argv_whatever_the_last_one_did_to_them() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let spoil = "KEYS[3] = 'x' KEYS.extra = 1 ARGV[1] = 'changed' \
                 setmetatable(KEYS, {__index = function() return 'ghost' end}) return 1";
    assert_eq!(
        eval(&engine, &mut host, spoil, &["a", "b"], &["v"]),
        Frame::Integer(1)
    );
    let look = "return {#KEYS, #ARGV, tostring(KEYS.extra), tostring(KEYS[3]), \
                tostring(getmetatable(KEYS)), KEYS[1], ARGV[1]}";
    let text = |s: &str| Frame::Bulk(Bytes::from(s.to_string()));
    assert_eq!(
        eval(&engine, &mut host, look, &["k"], &["w"]),
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Integer(1),
            text("nil"),
            text("nil"),
            text("nil"),
            text("k"),
            text("w"),
        ])
    );
}

#[test]
fn keys_and_argv_follow_each_script_between_reused_and_fresh_tables() {
    let engine = Engine::new(Mode::Eval).unwrap();
    let mut host = MapHost::default();
    let many: Vec<String> = (0..100).map(|i| format!("a{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let count = "return {#KEYS, #ARGV, ARGV[#ARGV]}";
    let text = |s: &str| Frame::Bulk(Bytes::from(s.to_string()));
    for (keys, args, last) in [
        (&["k"][..], &["x"][..], "x"),
        (&["k"][..], &many[..], "a99"),
        (&["k"][..], &["y"][..], "y"),
        (&many[..], &["z"][..], "z"),
    ] {
        assert_eq!(
            eval(&engine, &mut host, count, keys, args),
            Frame::Array(vec![
                Frame::Integer(keys.len() as i64),
                Frame::Integer(args.len() as i64),
                text(last),
            ])
        );
    }
}
