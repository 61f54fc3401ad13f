//! Lua scripts across real regions linked through the fault proxy: a
//! script's writes are one op, so another region (even one that hears of
//! them only as a third region relays them) never sees half of them;
//! increments made by scripts on both sides of a partition sum exactly;
//! set writes made by scripts merge as the same plain commands do
//! (add wins); a script's write in one region reaches keyspace
//! subscribers and tracking clients of another; and keyspace policies
//! refuse a script's writes before it runs. Randomized tests print their
//! seed; `MERIDIAN_TEST_SEED=N` replays one.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::Cluster;
use common::{Conn, Meridian};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;
use rand::{Rng, SeedableRng};

const CONVERGE: Duration = Duration::from_secs(30);
const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];

const SET_BOTH: &str = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1])";
const INCR: &str = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

fn seed(test: &str) -> u64 {
    let seed = match std::env::var("MERIDIAN_TEST_SEED") {
        Ok(s) => s.parse().expect("MERIDIAN_TEST_SEED must be a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    println!("{test}: seed {seed} (replay with MERIDIAN_TEST_SEED={seed})");
    seed
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        Frame::Null => None,
        other => panic!("not a string: {other:?}"),
    }
}

fn members(c: &mut Conn, key: &str) -> BTreeSet<String> {
    match c.cmd(&["SMEMBERS", key]) {
        Frame::Array(xs) | Frame::Set(xs) => xs.iter().filter_map(text).collect(),
        other => panic!("SMEMBERS replied {other:?}"),
    }
}

fn is_error_starting(f: &Frame, prefix: &str) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(prefix))
}

/// Retries `cmd` until the reply satisfies `done`, up to `timeout`.
fn until(c: &mut Conn, cmd: &[&str], timeout: Duration, done: impl Fn(&Frame) -> bool) -> Frame {
    let started = Instant::now();
    loop {
        let reply = c.cmd(cmd);
        if done(&reply) || started.elapsed() > timeout {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a reader polling `MGET k1 k2` in one region saw.
#[derive(Default)]
struct Reads {
    polls: u64,
    torn: Vec<(Option<String>, Option<String>)>,
    went_back: Vec<(u64, u64)>,
    distinct: BTreeSet<u64>,
}

/// Polls `MGET k1 k2` on `c` until `stop`, recording every pair whose two
/// values differ and every value older than one read before it.
fn poll_pairs(mut c: Conn, stop: Arc<AtomicBool>) -> Reads {
    let mut reads = Reads::default();
    let mut last = 0u64;
    while !stop.load(Ordering::Acquire) {
        let pair = match c.cmd(&["MGET", "k1", "k2"]) {
            Frame::Array(xs) if xs.len() == 2 => (text(&xs[0]), text(&xs[1])),
            other => panic!("MGET replied {other:?}"),
        };
        reads.polls += 1;
        if pair.0 != pair.1 {
            reads.torn.push(pair);
            continue;
        }
        if let Some(v) = pair.0 {
            let v: u64 = v.parse().expect("a number");
            if v < last {
                reads.went_back.push((last, v));
            }
            last = last.max(v);
            reads.distinct.insert(v);
        }
    }
    reads
}

/// A script setting two keys runs 300 times in region wa while readers in
/// wb and wc poll both keys: every read holds two equal values (or neither
/// key), never one script's first write without its second, and the
/// values never go back. wc never hears wa directly: it gets wa's scripts
/// as wb relays them. Partway through, wa is cut off from wb too and
/// healed again, so some scripts reach the readers only after the heal.
#[test]
fn a_scripts_writes_are_never_seen_half_applied_in_another_region() {
    let seed = seed("a_scripts_writes_are_never_seen_half_applied_in_another_region");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(&["wa", "wb", "wc"], LinkConditions::wan(5), &[], seed);
    cluster.mesh.cut("wa", "wc").unwrap();
    let (cut_at, heal_at) = (rng.gen_range(50..150), rng.gen_range(160..260));
    println!("wa and wb cut at script {cut_at}, healed at script {heal_at}");

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = ["wb", "wc"]
        .into_iter()
        .map(|n| {
            let (c, stop) = (cluster.conn(n), stop.clone());
            (n, std::thread::spawn(move || poll_pairs(c, stop)))
        })
        .collect();
    let mut a = cluster.conn("wa");
    let sha = match a.cmd(&["SCRIPT", "LOAD", SET_BOTH]) {
        Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("SCRIPT LOAD replied {other:?}"),
    };
    const RUNS: u64 = 300;
    for i in 1..=RUNS {
        if i == cut_at {
            cluster.mesh.cut("wa", "wb").unwrap();
        }
        if i == heal_at {
            // The cut holds: what wa wrote since is in neither reader's
            // region yet.
            std::thread::sleep(Duration::from_millis(200));
            for n in ["wb", "wc"] {
                match cluster.conn(n).cmd(&["GET", "k2"]) {
                    Frame::Bulk(b) => {
                        let v: u64 = String::from_utf8_lossy(&b).parse().unwrap();
                        assert!(v < i - 1, "{n} read {v} while wa was cut off");
                    }
                    Frame::Null => {}
                    other => panic!("GET replied {other:?}"),
                }
            }
            cluster.mesh.link("wa", "wb").unwrap().heal();
            cluster.mesh.link("wb", "wa").unwrap().heal();
        }
        let v = i.to_string();
        // EVAL and EVALSHA alike.
        let reply = if rng.gen_bool(0.5) {
            a.cmd(&["EVAL", SET_BOTH, "2", "k1", "k2", &v])
        } else {
            a.cmd(&["EVALSHA", &sha, "2", "k1", "k2", &v])
        };
        assert_eq!(reply, Frame::Null, "script {i}");
        if rng.gen_bool(0.2) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(1..10)));
        }
    }
    let last = RUNS.to_string();
    let want = Frame::Array(vec![bulk(&last), bulk(&last)]);
    for n in ["wb", "wc"] {
        let seen = until(&mut cluster.conn(n), &["MGET", "k1", "k2"], CONVERGE, |f| {
            *f == want
        });
        assert_eq!(seen, want, "{n}");
    }
    stop.store(true, Ordering::Release);
    for (n, reader) in readers {
        let reads = reader.join().unwrap();
        println!(
            "{} reads in {n}, {} distinct values seen",
            reads.polls,
            reads.distinct.len()
        );
        assert!(
            reads.torn.is_empty(),
            "{} of {} reads in {n} saw one script's writes half applied, e.g. {:?}",
            reads.torn.len(),
            reads.polls,
            &reads.torn[..reads.torn.len().min(10)]
        );
        assert!(
            reads.went_back.is_empty(),
            "values went back in {n}: {:?}",
            reads.went_back
        );
        assert!(
            reads.distinct.len() > 1,
            "{n}'s reader saw {:?} only: it observed nothing in between",
            reads.distinct
        );
    }
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
}

/// With the two regions cut off from each other, each runs scripts that
/// INCRBY one counter (EVAL and EVALSHA, positive and negative amounts);
/// after the heal both read the exact sum of every increment.
#[test]
fn increments_made_by_scripts_in_both_regions_sum_exactly() {
    let seed = seed("increments_made_by_scripts_in_both_regions_sum_exactly");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let names = ["ia", "ib"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], seed);
    assert_eq!(
        cluster.conn("ia").cmd(&["INCRBY", "counter", "1000"]),
        Frame::Integer(1000)
    );
    cluster.converge(CONVERGE);
    cluster.mesh.partition("ia").unwrap();

    let mut sum = 1000i64;
    for n in names {
        let mut c = cluster.conn(n);
        let sha = text(&c.cmd(&["SCRIPT", "LOAD", INCR])).unwrap();
        // What this region reads: the shared start plus its own increments.
        let mut local = 1000i64;
        for _ in 0..60 {
            let by: i64 = rng.gen_range(-50..=100);
            local += by;
            sum += by;
            let by = by.to_string();
            let reply = if rng.gen_bool(0.5) {
                c.cmd(&["EVAL", INCR, "1", "counter", &by])
            } else {
                c.cmd(&["EVALSHA", &sha, "1", "counter", &by])
            };
            assert_eq!(reply, Frame::Integer(local), "{n}");
        }
    }
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["counter"], format!("string:{sum}"));
    for n in names {
        assert_eq!(
            cluster.conn(n).cmd(&["GET", "counter"]),
            bulk(&sum.to_string()),
            "{n}"
        );
    }
}

/// One region adds members (new ones, and one the other removes) while
/// the other, cut off, removes every member it observes but one: by
/// scripts on one set, by plain SADD/SREM on another. After the heal both
/// sets hold the same members, as add-wins promises: the concurrent adds
/// survive, what only the remover saw is gone.
#[test]
fn set_writes_made_by_scripts_merge_like_plain_commands() {
    let cluster = Cluster::start(&["sa", "sb"], LinkConditions::wan(5), &[], 51);
    let mut a = cluster.conn("sa");
    for key in ["script:s", "plain:s"] {
        assert_eq!(a.cmd(&["SADD", key, "x", "y", "keep"]), Frame::Integer(3));
    }
    cluster.converge(CONVERGE);
    cluster.mesh.partition("sa").unwrap();

    let add = "return redis.call('SADD', KEYS[1], unpack(ARGV))";
    assert_eq!(
        a.cmd(&["EVAL", add, "1", "script:s", "a1", "a2", "x"]),
        Frame::Integer(2)
    );
    assert_eq!(
        a.cmd(&["SADD", "plain:s", "a1", "a2", "x"]),
        Frame::Integer(2)
    );

    let mut b = cluster.conn("sb");
    let remove_observed = "local n = 0 \
        for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do \
          if m ~= ARGV[1] then n = n + redis.call('SREM', KEYS[1], m) end \
        end \
        return n";
    assert_eq!(
        b.cmd(&["EVAL", remove_observed, "1", "script:s", "keep"]),
        Frame::Integer(2)
    );
    assert_eq!(b.cmd(&["SREM", "plain:s", "x", "y"]), Frame::Integer(2));
    assert_eq!(
        members(&mut b, "script:s"),
        BTreeSet::from(["keep".to_string()])
    );

    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    // x, which sa added again (already a member there) while sb removed
    // it, ends as the plain commands leave it (see
    // `a_sadd_of_a_present_member_survives_a_concurrent_srem`).
    for n in ["sa", "sb"] {
        let mut c = cluster.conn(n);
        let (by_script, by_plain) = (members(&mut c, "script:s"), members(&mut c, "plain:s"));
        println!("{n}: scripts {by_script:?}, plain commands {by_plain:?}");
        assert_eq!(
            by_script, by_plain,
            "{n}: scripts merge like plain commands"
        );
        for m in ["a1", "a2", "keep"] {
            assert!(by_script.contains(m), "{n}: concurrent add of {m} lost");
        }
        assert!(!by_script.contains("y"), "{n}: observed remove of y lost");
    }
}

/// A write made by a script in region A reaches region B's keyspace
/// subscribers (the `set` event on the key's channel) and invalidates the
/// key for a RESP3 client tracking it in B.
#[test]
fn a_scripts_write_reaches_keyspace_subscribers_and_trackers_in_another_region() {
    let cluster = Cluster::start(&["na", "nb"], LinkConditions::wan(5), &[], 52);
    let b: &Meridian = &cluster.regions[cluster.index("nb")];
    assert_eq!(
        b.conn()
            .cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        Frame::Simple("OK".into())
    );
    let mut sub = b.conn();
    sub.cmd(&["PSUBSCRIBE", "__keyspace@0__:*"]);

    let mut tracker = b.conn();
    tracker.cmd(&["HELLO", "3"]);
    assert_eq!(
        tracker.cmd(&["CLIENT", "TRACKING", "ON"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(tracker.cmd(&["GET", "k"]), Frame::Null);

    assert_eq!(
        cluster
            .conn("na")
            .cmd(&["EVAL", "redis.call('SET', KEYS[1], 'v')", "1", "k"]),
        Frame::Null
    );

    let event = sub.read().expect("subscriber closed");
    let (Frame::Array(parts) | Frame::Push(parts)) = &event else {
        panic!("not a message: {event:?}");
    };
    assert_eq!(
        parts,
        &vec![
            bulk("pmessage"),
            bulk("__keyspace@0__:*"),
            bulk("__keyspace@0__:k"),
            bulk("set"),
        ]
    );
    assert_eq!(
        tracker.read(),
        Some(Frame::Push(vec![
            bulk("invalidate"),
            Frame::Array(vec![bulk("k")])
        ]))
    );
    // The invalidation came once B held the write.
    assert_eq!(tracker.cmd(&["GET", "k"]), bulk("v"));
}

/// Under `primary`, a script in a region that is not the primary and
/// declares a key of that keyspace is refused with READONLY before it
/// runs: not even its write to a key outside the keyspace happens. At the
/// primary the same script runs.
#[test]
fn primary_keyspace_refuses_a_script_outside_the_primary_before_it_writes() {
    let mut args = vec!["--policy", "p:*=primary:pa"];
    args.extend(FAST);
    let cluster = Cluster::start(&["pa", "pb", "pc"], LinkConditions::wan(5), &args, 53);
    let mut pa = cluster.conn("pa");
    let ready = until(
        &mut pa,
        &["SET", "p:k", "before"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert!(!ready.is_error(), "{ready:?}");
    cluster.converge(CONVERGE);

    let script = "redis.call('SET', KEYS[2], ARGV[1]); redis.call('SET', KEYS[1], ARGV[1])";
    let refused = cluster
        .conn("pb")
        .cmd(&["EVAL", script, "2", "p:k", "free", "from-pb"]);
    assert!(
        is_error_starting(&refused, "READONLY")
            && matches!(&refused, Frame::Error(e) if e.contains("pa")),
        "{refused:?}"
    );
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump.get("p:k").map(String::as_str), Some("string:before"));
    assert!(!dump.contains_key("free"), "{dump:?}");

    assert_eq!(
        pa.cmd(&["EVAL", script, "2", "p:k", "free", "from-pa"]),
        Frame::Null
    );
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["p:k"], "string:from-pa");
    assert_eq!(dump["free"], "string:from-pa");

    // A key of the keyspace the script did not declare is refused at its
    // redis.call, which stops the script; what it wrote before stays, as
    // Redis keeps a failed script's earlier writes, and reaches every
    // region.
    let undeclared = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', 'p:k', ARGV[1])";
    let reply = cluster
        .conn("pb")
        .cmd(&["EVAL", undeclared, "1", "free2", "from-pb"]);
    println!("undeclared key of the keyspace: {reply:?}");
    assert!(
        matches!(&reply, Frame::Error(e) if e.contains("READONLY")),
        "{reply:?}"
    );
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["p:k"], "string:from-pa");
    assert_eq!(dump["free2"], "string:from-pb");
}

/// Under `majority`, a script that declares a key of the keyspace runs
/// while its region hears a majority and is refused with FENCED, writing
/// nothing, once the region is cut off.
#[test]
fn majority_keyspace_fences_a_script_in_a_cut_off_region() {
    let mut args = vec!["--policy", "m:*=majority"];
    args.extend(FAST);
    let cluster = Cluster::start(&["ma", "mb", "mc"], LinkConditions::wan(5), &args, 54);
    let script = "redis.call('SET', KEYS[2], ARGV[1]); redis.call('SET', KEYS[1], ARGV[1])";
    let mut mc = cluster.conn("mc");
    let ran = until(
        &mut mc,
        &["EVAL", script, "2", "m:k", "free", "linked"],
        Duration::from_secs(10),
        |f| !f.is_error(),
    );
    assert_eq!(ran, Frame::Null);
    cluster.converge(CONVERGE);

    cluster.mesh.partition("mc").unwrap();
    let fenced = until(
        &mut mc,
        &["SET", "m:probe", "x"],
        Duration::from_secs(10),
        |f| f.is_error(),
    );
    assert!(is_error_starting(&fenced, "FENCED"), "{fenced:?}");
    let refused = mc.cmd(&["EVAL", script, "2", "m:k", "free", "cut-off"]);
    assert!(is_error_starting(&refused, "FENCED"), "{refused:?}");
    assert_eq!(mc.cmd(&["GET", "m:k"]), bulk("linked"));
    assert_eq!(mc.cmd(&["GET", "free"]), bulk("linked"));

    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert_eq!(dump["m:k"], "string:linked");
    assert_eq!(dump["free"], "string:linked");
}

/// An SADD of a member already present, acknowledged in one region while
/// the other, cut off, removes that member, is an add the remove did not
/// observe: add wins, so the member stays (the rule the chaos checker
/// holds acknowledged SADDs to, `set-lost` in docs/chaos.md). By a script
/// and by the plain command alike.
#[test]
fn a_sadd_of_a_present_member_survives_a_concurrent_srem() {
    let cluster = Cluster::start(&["ra", "rb"], LinkConditions::wan(5), &[], 55);
    let mut a = cluster.conn("ra");
    for key in ["script:s", "plain:s"] {
        assert_eq!(a.cmd(&["SADD", key, "x"]), Frame::Integer(1));
    }
    cluster.converge(CONVERGE);
    cluster.mesh.partition("ra").unwrap();
    assert_eq!(
        a.cmd(&[
            "EVAL",
            "return redis.call('SADD', KEYS[1], ARGV[1])",
            "1",
            "script:s",
            "x"
        ]),
        Frame::Integer(0)
    );
    assert_eq!(a.cmd(&["SADD", "plain:s", "x"]), Frame::Integer(0));
    let mut b = cluster.conn("rb");
    assert_eq!(
        b.cmd(&[
            "EVAL",
            "return redis.call('SREM', KEYS[1], ARGV[1])",
            "1",
            "script:s",
            "x"
        ]),
        Frame::Integer(1)
    );
    assert_eq!(b.cmd(&["SREM", "plain:s", "x"]), Frame::Integer(1));
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    for n in ["ra", "rb"] {
        let mut c = cluster.conn(n);
        for key in ["script:s", "plain:s"] {
            assert_eq!(
                members(&mut c, key),
                BTreeSet::from(["x".to_string()]),
                "{n}: {key}"
            );
        }
    }
}
