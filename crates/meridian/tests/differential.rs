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
//! - `#` comments, blank lines ignored.

mod common;

use std::path::Path;

use common::{split_args, Meridian, RedisServer};
use meridian_resp::Frame;

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
    let mut mismatches = Vec::new();
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(script).unwrap();
        let mut r = redis.conn();
        let mut m = meridian.conn();
        r.cmd(&["FLUSHALL"]);
        m.cmd(&["FLUSHALL"]);
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
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
    }
    println!("{compared} replies compared across {} scripts, {skipped} documented differences not compared", scripts.len());
    assert!(
        mismatches.is_empty(),
        "{} of {compared} replies differ from redis-server:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
