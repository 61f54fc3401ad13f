//! Bitmaps across three real regions linked through the fault proxy:
//! SETBITs and BITFIELD SETs of different bits of one key, made on every
//! side of a partition, all survive with the same bytes everywhere; one
//! bit or one field written differently in two regions resolves to one
//! value everywhere (a field whole, never a mix of two writers) and the
//! conflict is in the journal. BITFIELD INCRBY under OVERFLOW WRAP merges
//! as a counter: increments of one field in every region all count;
//! under OVERFLOW SAT one region's value wins everywhere.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);

fn int(f: &Frame) -> i64 {
    match f {
        Frame::Integer(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn getbit(c: &mut Conn, key: &str, bit: u64) -> i64 {
    int(&c.cmd(&["GETBIT", key, &bit.to_string()]))
}

/// `BITFIELD_RO key GET u8 #field`.
fn field_u8(c: &mut Conn, key: &str, field: u64) -> i64 {
    match c.cmd(&["BITFIELD_RO", key, "GET", "u8", &format!("#{field}")]) {
        Frame::Array(v) if v.len() == 1 => int(&v[0]),
        other => panic!("BITFIELD_RO replied {other:?}"),
    }
}

/// Every region's GET of `key` must be the same bytes.
fn same_bytes_everywhere(cluster: &Cluster, key: &str) {
    let gets: Vec<Frame> = cluster
        .names
        .iter()
        .map(|n| cluster.conn(n).cmd(&["GET", key]))
        .collect();
    for (n, g) in cluster.names.iter().zip(&gets) {
        assert_eq!(
            g, &gets[0],
            "{n}'s bytes differ from {}'s",
            cluster.names[0]
        );
    }
}

/// The `count` bits region `i` of three sets, spread over `span_bits`: its
/// own byte of each 24-bit block, so no two regions touch one bit.
fn bits_of(i: u64, count: u64, span_bits: u64) -> Vec<u64> {
    let stride = span_bits / count / 24 * 24;
    (0..count).map(|b| b * stride + i * 8 + 3).collect()
}

/// Each region SETBITs `count` bits of its own and BITFIELD SETs two
/// byte-wide fields of its own in one key of `span_bits` while all three
/// are cut off from each other; after the heal every region reads the same
/// bytes, with every bit and field.
fn partial_writes_on_every_side_survive(span_bits: u64, count: u64, seed: u64) {
    let names = ["ba", "bb", "bc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], seed);
    // A bitmap every region holds before the cut.
    let last = (span_bits - 1).to_string();
    cluster.conn("ba").cmd(&["SETBIT", "map", &last, "1"]);
    cluster.converge(CONVERGE);
    // Region i's fields are the bytes just past the bitmap: 2i and 2i + 1.
    let field = |i: u64, j: u64| span_bits / 8 + 2 * i + j;
    let value = |i: u64, j: u64| if j == 0 { 0x11 * (i + 1) } else { 0xa0 + i };

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    for (i, n) in (0u64..).zip(names) {
        let mut c = cluster.conn(n);
        for bit in bits_of(i, count, span_bits) {
            assert_eq!(
                c.cmd(&["SETBIT", "map", &bit.to_string(), "1"]),
                Frame::Integer(0)
            );
        }
        let mut args = vec!["BITFIELD".to_string(), "map".into()];
        for j in 0..2 {
            args.extend([
                "SET".into(),
                "u8".into(),
                format!("#{}", field(i, j)),
                value(i, j).to_string(),
            ]);
        }
        assert_eq!(
            c.cmd(&args),
            Frame::Array(vec![Frame::Integer(0), Frame::Integer(0)])
        );
    }
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    same_bytes_everywhere(&cluster, "map");
    for n in names {
        let mut c = cluster.conn(n);
        assert_eq!(getbit(&mut c, "map", span_bits - 1), 1, "{n}");
        let mut ones = 1;
        for i in 0..3 {
            for bit in bits_of(i, count, span_bits) {
                assert_eq!(
                    getbit(&mut c, "map", bit),
                    1,
                    "{n}: bit {bit} of region {i}"
                );
                ones += 1;
            }
            for j in 0..2 {
                assert_eq!(
                    field_u8(&mut c, "map", field(i, j)),
                    value(i, j) as i64,
                    "{n}: field {j} of region {i}"
                );
                ones += i64::from(value(i, j).count_ones());
            }
        }
        assert_eq!(int(&c.cmd(&["BITCOUNT", "map"])), ones, "{n}");
        // No write touched another's bits, so none was discarded.
        let discarded = conflicts(&mut c, "map");
        assert!(discarded.is_empty(), "{n}: {discarded:?}");
    }
}

/// A bitmap of 1,000 bytes, ten bits and two fields from each region.
#[test]
fn setbits_and_fields_from_every_region_survive_a_partition() {
    partial_writes_on_every_side_survive(8000, 10, 41);
}

/// A bitmap of 16 bytes, the size a small set of flags takes.
#[test]
fn setbits_and_fields_from_every_region_survive_a_partition_in_a_short_bitmap() {
    partial_writes_on_every_side_survive(128, 5, 42);
}

/// Fifty bits from each region: a longer partition (each region's bits
/// stay patches: a bitmap folds only past `MAX_BIT_PATCHES`).
#[test]
fn many_setbits_from_every_region_survive_a_partition() {
    partial_writes_on_every_side_survive(8000, 50, 44);
}

/// The journal's entries for `key` in one region, each as (name, value)
/// pairs (a RESP2 map is a flat array).
fn conflicts(c: &mut Conn, key: &str) -> Vec<Vec<(String, Frame)>> {
    match c.cmd(&["MERIDIAN", "CONFLICTS", "COUNT", "100", "KEY", key]) {
        Frame::Array(entries) => entries
            .into_iter()
            .map(|e| match e {
                Frame::Array(flat) => flat
                    .chunks(2)
                    .map(|p| (text(&p[0]), p[1].clone()))
                    .collect(),
                other => panic!("not an entry: {other:?}"),
            })
            .collect(),
        other => panic!("MERIDIAN CONFLICTS replied {other:?}"),
    }
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// One bit set to 1 in one region and to 0 in another while they are cut
/// off, one byte-wide field set to two values and another saturated in
/// both: after the heal each reads the same everywhere (a field as one
/// writer wrote it: saturating increments do not add up), and every
/// region's journal holds the three conflicts with the value that won.
#[test]
fn a_bit_and_a_field_written_differently_in_two_regions_resolve_to_one_value_and_are_journaled() {
    let names = ["ca", "cb", "cc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 43);
    cluster.conn("ca").cmd(&["SETBIT", "flags", "4095", "1"]);
    cluster.converge(CONVERGE);

    cluster.mesh.partition("ca").unwrap();
    let mut a = cluster.conn("ca");
    let mut b = cluster.conn("cb");
    assert_eq!(a.cmd(&["SETBIT", "flags", "5", "1"]), Frame::Integer(0));
    // The bit is 0 where cb is, so it sets it first: a SETBIT that leaves a
    // bit as it was writes nothing.
    assert_eq!(b.cmd(&["SETBIT", "flags", "5", "1"]), Frame::Integer(0));
    assert_eq!(b.cmd(&["SETBIT", "flags", "5", "0"]), Frame::Integer(1));
    a.cmd(&["BITFIELD", "flags", "SET", "u8", "#10", "15"]);
    b.cmd(&["BITFIELD", "flags", "SET", "u8", "#10", "240"]);
    let incr = |c: &mut Conn, by: &str| {
        c.cmd(&[
            "BITFIELD", "flags", "OVERFLOW", "SAT", "INCRBY", "u8", "#20", by,
        ])
    };
    assert_eq!(incr(&mut a, "1"), Frame::Array(vec![Frame::Integer(1)]));
    assert_eq!(incr(&mut b, "2"), Frame::Array(vec![Frame::Integer(2)]));
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    same_bytes_everywhere(&cluster, "flags");
    let bit = getbit(&mut cluster.conn("cc"), "flags", 5);
    let field = field_u8(&mut cluster.conn("cc"), "flags", 10);
    assert!(field == 15 || field == 240, "a mix of two writers: {field}");
    let counter = field_u8(&mut cluster.conn("cc"), "flags", 20);
    assert!(
        counter == 1 || counter == 2,
        "increments of one field: {counter}"
    );
    for n in names {
        let entries = conflicts(&mut cluster.conn(n), "flags");
        let find = |range: &str| {
            entries
                .iter()
                .find(|e| e.iter().any(|(k, v)| k == "field" && text(v) == range))
                .unwrap_or_else(|| panic!("{n}: no conflict on {range} in {entries:?}"))
        };
        let value = |e: &Vec<(String, Frame)>, name: &str| {
            text(&e.iter().find(|(k, _)| k == name).unwrap().1)
        };
        let on_bit = find("bits 5..6");
        assert_eq!(
            value(on_bit, "winner_value"),
            format!("bits 5..6={bit}"),
            "{n}"
        );
        assert_eq!(
            value(on_bit, "loser_value"),
            format!("bits 5..6={}", 1 - bit),
            "{n}"
        );
        let on_field = find("bits 80..88");
        assert_eq!(
            value(on_field, "winner_value"),
            format!("bits 80..88={field:08b}"),
            "{n}"
        );
        let on_counter = find("bits 160..168");
        assert_eq!(
            value(on_counter, "winner_value"),
            format!("bits 160..168={counter:08b}"),
            "{n}"
        );
    }
    println!("resolved to bit {bit}, field {field}, counter {counter}");
}

/// `BITFIELD key INCRBY type offset by`, with `OVERFLOW how` first: the
/// value the region answered.
fn incrby(c: &mut Conn, key: &str, how: &str, ty: &str, offset: &str, by: i64) -> i64 {
    match c.cmd(&[
        "BITFIELD",
        key,
        "OVERFLOW",
        how,
        "INCRBY",
        ty,
        offset,
        &by.to_string(),
    ]) {
        Frame::Array(v) if v.len() == 1 => int(&v[0]),
        other => panic!("BITFIELD INCRBY replied {other:?}"),
    }
}

/// The field `ty` at `offset` as `BITFIELD_RO` reads it.
fn field(c: &mut Conn, key: &str, ty: &str, offset: &str) -> i64 {
    match c.cmd(&["BITFIELD_RO", key, "GET", ty, offset]) {
        Frame::Array(v) if v.len() == 1 => int(&v[0]),
        other => panic!("BITFIELD_RO replied {other:?}"),
    }
}

/// `v` modulo 2^`bits`, read back as a signed or unsigned field.
fn wrapped(v: i128, bits: u32, signed: bool) -> i64 {
    let m = 1i128 << bits;
    let u = v.rem_euclid(m);
    if signed && u >= m / 2 {
        (u - m) as i64
    } else {
        u as i64
    }
}

/// A small deterministic generator: the seed printed replays the run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// During a partition each of three regions increments a u8 and an i16
/// field of one key many times under OVERFLOW WRAP, wrapping around both
/// ways; after the heal every region reads the sum of every increment
/// modulo 2^width over the value all had before the cut, and the journal
/// holds nothing for them. A u8 saturated (OVERFLOW SAT) in each region
/// meanwhile ends, everywhere, as one region's value.
#[test]
fn wrap_increments_from_every_region_add_up_after_a_partition() {
    let seed = std::env::var("BITS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b17c);
    println!("seed {seed} (BITS_SEED={seed} replays it)");
    let names = ["wa", "wb", "wc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], seed);
    let mut a = cluster.conn("wa");
    // Values every region holds before the cut: a u8 at bit 3 (across a
    // byte boundary), an i16 at #1 and a saturating u8 at #5.
    a.cmd(&[
        "BITFIELD", "ctr", "SET", "u8", "3", "200", "SET", "i16", "#1", "-30000",
    ]);
    a.cmd(&["BITFIELD", "ctr", "SET", "u8", "#5", "100"]);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    let mut rng = Rng(seed | 1);
    let (mut sum_u8, mut sum_i16) = (200i128, -30000i128);
    let mut saturated = Vec::new();
    for n in names {
        let mut c = cluster.conn(n);
        // What this region reads: the common base plus its own increments.
        let (mut mine_u8, mut mine_i16) = (200i128, -30000i128);
        for _ in 0..40 {
            let by = rng.between(-300, 300);
            mine_u8 += i128::from(by);
            sum_u8 += i128::from(by);
            let got = incrby(&mut c, "ctr", "WRAP", "u8", "3", by);
            assert_eq!(got, wrapped(mine_u8, 8, false), "{n}: the reply is local");
            let by = rng.between(-40_000, 40_000);
            mine_i16 += i128::from(by);
            sum_i16 += i128::from(by);
            let got = incrby(&mut c, "ctr", "WRAP", "i16", "#1", by);
            assert_eq!(got, wrapped(mine_i16, 16, true), "{n}: the reply is local");
        }
        let by = rng.between(-100, 200);
        saturated.push(incrby(&mut c, "ctr", "SAT", "u8", "#5", by));
    }
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);

    same_bytes_everywhere(&cluster, "ctr");
    let (want_u8, want_i16) = (wrapped(sum_u8, 8, false), wrapped(sum_i16, 16, true));
    for n in names {
        let mut c = cluster.conn(n);
        assert_eq!(field(&mut c, "ctr", "u8", "3"), want_u8, "{n}: u8 at bit 3");
        // Signed or not, the same bits.
        assert_eq!(
            field(&mut c, "ctr", "u16", "#1"),
            wrapped(sum_i16, 16, false),
            "{n}: the i16's bits as a u16"
        );
        assert_eq!(field(&mut c, "ctr", "i16", "#1"), want_i16, "{n}: i16");
        let sat = field(&mut c, "ctr", "u8", "#5");
        assert!(
            saturated.contains(&sat),
            "{n}: {sat} not one of {saturated:?}"
        );
        let entries = conflicts(&mut c, "ctr");
        let on = |range: &str| {
            entries
                .iter()
                .filter(|e| e.iter().any(|(k, v)| k == "field" && text(v) == range))
                .count()
        };
        assert_eq!(on("bits 3..11"), 0, "{n}: {entries:?}");
        assert_eq!(on("bits 16..32"), 0, "{n}: {entries:?}");
        if saturated.iter().any(|s| *s != saturated[0]) {
            assert!(
                on("bits 40..48") >= 1,
                "{n}: the saturated field: {entries:?}"
            );
        }
    }
    println!("u8 {want_u8}, i16 {want_i16}, saturated {saturated:?}");
}
