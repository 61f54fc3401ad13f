//! HyperLogLogs across real regions linked through the fault proxy: what
//! every side of a partition added counts as the union once it heals,
//! whether the writes travelled as register patches or as whole values,
//! exactly as one HyperLogLog fed every element counts, and the regions
//! then hold the same bytes.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{Conn, Meridian};
use meridian_crdt::hll;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);

fn get(c: &mut Conn, key: &str) -> Vec<u8> {
    match c.cmd(&["GET", key]) {
        Frame::Bulk(b) => b.to_vec(),
        other => panic!("GET {key} replied {other:?}"),
    }
}

fn int(f: Frame) -> i64 {
    match f {
        Frame::Integer(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// PFADD of `elements` in commands of `per_command` elements.
fn pfadd(c: &mut Conn, key: &str, elements: &[String], per_command: usize) {
    for chunk in elements.chunks(per_command) {
        let mut args = vec!["PFADD", key];
        args.extend(chunk.iter().map(String::as_str));
        int(c.cmd(&args));
    }
}

/// The non-zero registers a HyperLogLog of `elements` holds.
fn registers_of<'a>(elements: impl Iterator<Item = &'a String>) -> Vec<(u16, u8)> {
    let mut max = [0u8; hll::REGISTERS];
    for e in elements {
        let (i, v) = hll::hash(e.as_bytes());
        max[usize::from(i)] = max[usize::from(i)].max(v);
    }
    (0u16..).zip(max).filter(|&(_, v)| v != 0).collect()
}

/// Both regions add to a sparse and a dense HyperLogLog while cut off from
/// each other (one element per command, and thousands per command), one
/// counts (a whole write of its cache) and one merges; after the heal each
/// key holds exactly the registers of every element added anywhere.
#[test]
fn pfadds_on_both_sides_of_a_partition_count_their_union() {
    let names = ["ha", "hb"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 41);
    let names_of = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    };
    let before = names_of("before", 3000);
    let mut a = cluster.conn("ha");
    pfadd(&mut a, "small", &before[..3], 3);
    pfadd(&mut a, "big", &before, 1000);
    assert_eq!(
        a.cmd(&["PFDEBUG", "ENCODING", "big"]),
        Frame::simple("dense")
    );
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    let (from_a, from_b) = (names_of("a", 200), names_of("b", 200));
    pfadd(&mut a, "small", &from_a[..40], 1);
    pfadd(&mut a, "big", &from_a, 1);
    int(a.cmd(&["PFCOUNT", "big"]));
    let mut b = cluster.conn("hb");
    pfadd(&mut b, "small", &from_b[..40], 1);
    pfadd(&mut b, "big", &from_b, 50);
    assert_eq!(b.cmd(&["PFMERGE", "merged", "small", "big"]), Frame::ok());
    let b_alone = registers_of(before[..3].iter().chain(&from_b[..40]));
    assert_eq!(
        hll::registers(&get(&mut b, "small")),
        Some(b_alone),
        "the partition kept ha's additions from hb"
    );
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    let small = registers_of(before[..3].iter().chain(&from_a[..40]).chain(&from_b[..40]));
    let big = registers_of(before.iter().chain(&from_a).chain(&from_b));
    let merged_then = registers_of(
        before
            .iter()
            .chain(&from_b)
            .chain(&before[..3])
            .chain(&from_b[..40]),
    );
    let mut held = Vec::new();
    for n in names {
        let mut c = cluster.conn(n);
        for (key, want) in [("small", &small), ("big", &big), ("merged", &merged_then)] {
            let bytes = get(&mut c, key);
            assert_eq!(hll::registers(&bytes).as_ref(), Some(want), "{n} {key}");
            held.push((key, bytes));
        }
    }
    let (in_a, in_b) = held.split_at(3);
    assert_eq!(in_a, in_b, "both regions hold the same bytes");
    for n in names {
        let mut c = cluster.conn(n);
        for (key, want) in [("small", &small), ("big", &big), ("merged", &merged_then)] {
            let mut regs = [0u8; hll::REGISTERS];
            for &(i, v) in want {
                regs[usize::from(i)] = v;
            }
            let count = hll::count_registers(&regs) as i64;
            assert_eq!(int(c.cmd(&["PFCOUNT", key])), count, "{n} {key}");
        }
    }
}

fn count(c: &mut Conn, keys: &[&str]) -> i64 {
    let mut cmd = vec!["PFCOUNT"];
    cmd.extend_from_slice(keys);
    int(c.cmd(&cmd))
}

/// Three regions, each cut off from the others, add their own elements to
/// a key that becomes dense, to one that stays sparse (one element per
/// command: register patches) and to one each creates on its own side;
/// after the heal every region counts what a region fed every element
/// counts, key by key and as a union.
#[test]
fn pfadds_from_three_cut_off_regions_count_as_one_hyperloglog_fed_everything() {
    let names = ["ha", "hb", "hc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 41);
    let seed = vec!["seed".to_string()];
    pfadd(&mut cluster.conn("ha"), "big", &seed, 1);
    pfadd(&mut cluster.conn("ha"), "small", &seed, 1);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    let (mut all_big, mut all_small, mut all_new) = (seed.clone(), seed, Vec::new());
    for n in names {
        let mut c = cluster.conn(n);
        let big: Vec<String> = (0..3000).map(|i| format!("{n}-big-{i}")).collect();
        let small: Vec<String> = (0..7).map(|i| format!("{n}-small-{i}")).collect();
        let new: Vec<String> = (0..50).map(|i| format!("{n}-new-{i}")).collect();
        pfadd(&mut c, "big", &big, 100);
        pfadd(&mut c, "small", &small, 1);
        pfadd(&mut c, "new", &new, 10);
        all_big.extend(big);
        all_small.extend(small);
        all_new.extend(new);
    }
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    let reference = Meridian::start(&[]);
    let mut r = reference.conn();
    pfadd(&mut r, "big", &all_big, 100);
    pfadd(&mut r, "small", &all_small, 100);
    pfadd(&mut r, "new", &all_new, 100);
    let keys = ["big", "small", "new"];
    let expected: Vec<i64> = keys.iter().map(|k| count(&mut r, &[k])).collect();
    let expected_union = count(&mut r, &keys);
    assert!(expected[0] > 8000, "{expected:?}");
    for n in names {
        let mut c = cluster.conn(n);
        let got: Vec<i64> = keys.iter().map(|k| count(&mut c, &[k])).collect();
        assert_eq!(got, expected, "region {n}");
        assert_eq!(count(&mut c, &keys), expected_union, "region {n}");
    }
}
