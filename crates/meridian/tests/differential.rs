//! Differential test: every script under `tests/differential/` runs against
//! a real redis-server and against Meridian, and the replies must match.
//!
//! Script lines:
//! - `CMD args…` compare replies exactly (errors included, text and all);
//! - `~ CMD…` compare as unordered: array elements sorted first;
//! - `~2 CMD…` unordered pairs (HGETALL, ZRANGE … WITHSCORES in RESP2);
//! - `! CMD…` run on both but do not compare: a difference the README
//!   documents, with its reason;
//! - `@resp3` / `@resp2` switch both connections' protocol with HELLO;
//! - `@events`: from here to the end of the script, the keyspace
//!   notifications each command sends (every class, `new` included, on
//!   both kinds of channel) must match too, in order;
//! - `#` comments, blank lines ignored.

mod common;

use std::path::Path;

use common::{split_args, Conn, Meridian, RedisServer};
use meridian_resp::Frame;

/// The channel published on after each command while events are compared:
/// the events that arrive before it are that command's.
const MARKER: &str = "differential-marker";

/// A connection subscribed to every keyspace notification and the marker,
/// and one that publishes the marker (the script's own may be in MULTI).
struct Events {
    sub: Conn,
    marker: Conn,
}

impl Events {
    fn start(mut marker: Conn, mut sub: Conn) -> Events {
        marker.cmd(&["CONFIG", "SET", "notify-keyspace-events", "AKEn"]);
        sub.send(&["PSUBSCRIBE", "__key*__:*", MARKER]);
        for _ in 0..2 {
            sub.read().expect("psubscribe reply");
        }
        Events { sub, marker }
    }

    /// The events sent since the last call, as `channel message` lines.
    fn take(&mut self) -> Vec<String> {
        self.marker.cmd(&["PUBLISH", MARKER, "-"]);
        let mut out = Vec::new();
        loop {
            let frame = self.sub.read().expect("subscriber closed");
            let (Frame::Array(parts) | Frame::Push(parts)) = frame else {
                panic!("not a message: {frame:?}");
            };
            let text: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            if text[2] == MARKER {
                return out;
            }
            out.push(format!("{} {}", text[2], text[3]));
        }
    }
}

fn sort_key(f: &Frame) -> String {
    format!("{f:?}")
}

fn unordered(f: Frame, chunk: usize) -> Frame {
    let sort = |items: Vec<Frame>| -> Vec<Frame> {
        let mut groups: Vec<Vec<Frame>> = items.chunks(chunk).map(|c| c.to_vec()).collect();
        groups.sort_by_key(|g| g.iter().map(sort_key).collect::<Vec<_>>().join("\u{1}"));
        groups.into_iter().flatten().collect()
    };
    match f {
        Frame::Array(items) => Frame::Array(sort(items)),
        Frame::Set(items) => Frame::Set(sort(items)),
        Frame::Map(mut pairs) => {
            pairs.sort_by_key(|(k, v)| format!("{}{}", sort_key(k), sort_key(v)));
            Frame::Map(pairs)
        }
        other => other,
    }
}

#[test]
fn replies_match_redis_server() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/differential")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "redis"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scripts in {}", dir.display());

    let redis = RedisServer::start();
    let meridian = Meridian::start(&[]);
    let mut compared = 0;
    let mut skipped = 0;
    let mut events_compared = 0;
    let mut mismatches = Vec::new();
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(script).unwrap();
        let mut r = redis.conn();
        let mut m = meridian.conn();
        r.cmd(&["FLUSHALL"]);
        m.cmd(&["FLUSHALL"]);
        let mut events: Option<(Events, Events)> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "@events" {
                events = Some((
                    Events::start(redis.conn(), redis.conn()),
                    Events::start(meridian.conn(), meridian.conn()),
                ));
                continue;
            }
            if line == "@resp3" || line == "@resp2" {
                let v = if line == "@resp3" { "3" } else { "2" };
                r.cmd(&["HELLO", v]);
                m.cmd(&["HELLO", v]);
                continue;
            }
            let (mode, command) = if let Some(rest) = line.strip_prefix("~2 ") {
                ("pairs", rest)
            } else if let Some(rest) = line.strip_prefix("~ ") {
                ("unordered", rest)
            } else if let Some(rest) = line.strip_prefix("! ") {
                ("skip", rest)
            } else {
                ("exact", line)
            };
            let args = split_args(command)
                .unwrap_or_else(|| panic!("{name}:{}: cannot split {command:?}", n + 1));
            let (mut want, mut got) = (r.cmd(&args), m.cmd(&args));
            if let Some((re, me)) = &mut events {
                let (want_events, got_events) = (re.take(), me.take());
                if mode != "skip" {
                    events_compared += want_events.len();
                }
                if mode != "skip" && want_events != got_events {
                    mismatches.push(format!(
                        "{name}:{}: {command} (events)\n    redis:    {want_events:?}\n    meridian: {got_events:?}",
                        n + 1
                    ));
                }
            }
            match mode {
                "skip" => {
                    skipped += 1;
                    continue;
                }
                "unordered" => {
                    want = unordered(want, 1);
                    got = unordered(got, 1);
                }
                "pairs" => {
                    want = unordered(want, 2);
                    got = unordered(got, 2);
                }
                _ => {}
            }
            compared += 1;
            if want != got {
                mismatches.push(format!(
                    "{name}:{}: {command}\n    redis:    {want:?}\n    meridian: {got:?}",
                    n + 1
                ));
            }
        }
        if events.is_some() {
            r.cmd(&["CONFIG", "SET", "notify-keyspace-events", ""]);
            m.cmd(&["CONFIG", "SET", "notify-keyspace-events", ""]);
        }
    }
    println!(
        "{compared} replies and {events_compared} keyspace notifications compared across {} scripts, {skipped} documented differences not compared",
        scripts.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} replies differ from redis-server:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
