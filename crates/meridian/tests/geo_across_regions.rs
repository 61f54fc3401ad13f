//! Geo sets across three real regions linked through the fault proxy: a
//! geo set is a sorted set, so GEOADDs made on every side of a partition
//! all survive the heal, a member moved concurrently in several regions
//! ends at one position everywhere, and every region then answers every
//! search alike.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::Cluster;
use common::Conn;
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const CONVERGE: Duration = Duration::from_secs(30);

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not a bulk string: {other:?}"),
    }
}

/// The members of a geo set with their scores (the encoded positions).
fn scores(c: &mut Conn, key: &str) -> BTreeMap<String, String> {
    match c.cmd(&["ZRANGE", key, "0", "-1", "WITHSCORES"]) {
        Frame::Array(items) => items
            .chunks(2)
            .map(|p| (text(&p[0]), text(&p[1])))
            .collect(),
        other => panic!("ZRANGE replied {other:?}"),
    }
}

/// A position near Sicily for the `i`th member a region adds.
fn position(region: usize, i: usize) -> (String, String) {
    let lon = 13.0 + region as f64 * 0.7 + i as f64 * 0.031;
    let lat = 37.0 + i as f64 * 0.017 - region as f64 * 0.2;
    (format!("{lon:.6}"), format!("{lat:.6}"))
}

/// The searches every region must answer alike, with every kind of option.
const SEARCHES: &[&[&str]] = &[
    &[
        "GEOSEARCH",
        "places",
        "FROMLONLAT",
        "14",
        "37.3",
        "BYRADIUS",
        "150",
        "km",
        "ASC",
        "WITHDIST",
        "WITHCOORD",
        "WITHHASH",
    ],
    &[
        "GEOSEARCH",
        "places",
        "FROMLONLAT",
        "14",
        "37.3",
        "BYBOX",
        "300",
        "120",
        "km",
        "DESC",
        "WITHDIST",
    ],
    &[
        "GEOSEARCH",
        "places",
        "FROMMEMBER",
        "Palermo",
        "BYRADIUS",
        "250",
        "km",
    ],
    &[
        "GEOSEARCH",
        "places",
        "FROMMEMBER",
        "meeting",
        "BYBOX",
        "200",
        "200",
        "mi",
        "COUNT",
        "7",
        "WITHDIST",
    ],
    &[
        "GEOSEARCH",
        "places",
        "FROMLONLAT",
        "14",
        "37.3",
        "BYRADIUS",
        "500",
        "km",
        "COUNT",
        "5",
        "ANY",
    ],
    &[
        "GEORADIUS_RO",
        "places",
        "15",
        "37",
        "200",
        "km",
        "WITHDIST",
        "ASC",
    ],
    &[
        "GEORADIUSBYMEMBER_RO",
        "places",
        "Catania",
        "100",
        "km",
        "COUNT",
        "10",
        "DESC",
    ],
    &[
        "GEOPOS", "places", "Palermo", "meeting", "ga-p0", "gb-p19", "gc-p7", "nowhere",
    ],
    &[
        "GEOHASH", "places", "Palermo", "meeting", "ga-p0", "gb-p19", "gc-p7",
    ],
    &["GEODIST", "places", "ga-p3", "gc-p11", "km"],
];

/// Every region adds its own members while all three are cut off from each
/// other, and all three move one shared member; after the heal every
/// region holds every member at the position its GEOADD wrote, the shared
/// one at one position, and answers every search alike.
#[test]
fn geoadds_on_every_side_of_a_partition_all_survive_with_one_answer() {
    let names = ["ga", "gb", "gc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 41);
    cluster.conn("ga").cmd(&[
        "GEOADD",
        "places",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
        "14.0",
        "37.0",
        "meeting",
    ]);
    cluster.converge(CONVERGE);

    for n in names {
        cluster.mesh.partition(n).unwrap();
    }
    // What each region's own GEOADDs wrote, read back where they ran.
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut meeting = Vec::new();
    for (r, n) in names.iter().enumerate() {
        let mut c = cluster.conn(n);
        // One GEOADD of many members, then one member per command,
        // pipelined (one op), then a move of the shared member.
        let mut args: Vec<String> = vec!["GEOADD".into(), "places".into()];
        for i in 0..10 {
            let (lon, lat) = position(r, i);
            args.extend([lon, lat, format!("{n}-p{i}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(c.cmd(&args), Frame::Integer(10));
        for i in 10..20 {
            let (lon, lat) = position(r, i);
            c.send(&["GEOADD", "places", &lon, &lat, &format!("{n}-p{i}")]);
        }
        for _ in 10..20 {
            assert_eq!(c.read().unwrap(), Frame::Integer(1));
        }
        let (lon, lat) = position(r, 40);
        assert_eq!(
            c.cmd(&["GEOADD", "places", "CH", &lon, &lat, "meeting"]),
            Frame::Integer(1)
        );
        // NX leaves an existing member where it is; XX adds nobody.
        assert_eq!(
            c.cmd(&["GEOADD", "places", "NX", "0", "0", "Palermo"]),
            Frame::Integer(0)
        );
        assert_eq!(
            c.cmd(&["GEOADD", "places", "XX", "0", "0", &format!("{n}-ghost")]),
            Frame::Integer(0)
        );
        let own = scores(&mut c, "places");
        for i in 0..20 {
            let m = format!("{n}-p{i}");
            written.insert(m.clone(), own[&m].clone());
        }
        meeting.push(own["meeting"].clone());
        // During the partition a region sees only its own members.
        assert_eq!(own.len(), 3 + 20, "{n}: {own:?}");
    }
    cluster.mesh.heal_all();
    let dump = cluster.converge(CONVERGE);
    assert!(dump["places"].starts_with("zset:"), "{dump:?}");

    let mut answers: Vec<Vec<Frame>> = Vec::new();
    for n in names {
        let mut c = cluster.conn(n);
        let held = scores(&mut c, "places");
        assert_eq!(held.len(), 3 + 3 * 20, "{n}: {held:?}");
        for (m, score) in &written {
            assert_eq!(held.get(m), Some(score), "{n}: {m}");
        }
        assert!(meeting.contains(&held["meeting"]), "{n}: {held:?}");
        assert!(!held.keys().any(|m| m.ends_with("-ghost")));
        let replies: Vec<Frame> = SEARCHES.iter().map(|q| c.cmd(q)).collect();
        for (q, reply) in SEARCHES.iter().zip(&replies) {
            assert!(!matches!(reply, Frame::Error(_)), "{n}: {q:?}: {reply:?}");
        }
        answers.push(replies);
    }
    for (n, replies) in names.iter().zip(&answers).skip(1) {
        for ((q, got), want) in SEARCHES.iter().zip(replies).zip(&answers[0]) {
            assert_eq!(got, want, "{n} answers {q:?} unlike {}", names[0]);
        }
    }
    // The widest search finds members that every region added.
    let Frame::Array(found) = &answers[0][0] else {
        panic!("{:?}", answers[0][0]);
    };
    for n in names {
        let prefix = format!("{n}-p");
        let any = found.iter().any(
            |item| matches!(item, Frame::Array(parts) if text(&parts[0]).starts_with(&prefix)),
        );
        assert!(any, "no member of {n} within 150 km: {found:?}");
    }
}

/// A GEOSEARCHSTORE replicates its result, not its query: the region that
/// ran it and the regions that apply it hold the same destination, even
/// though they held different sources when it ran.
#[test]
fn a_stored_search_is_the_same_everywhere() {
    let names = ["sa", "sb", "sc"];
    let cluster = Cluster::start(&names, LinkConditions::wan(5), &[], 42);
    cluster.conn("sa").cmd(&[
        "GEOADD",
        "src",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ]);
    cluster.converge(CONVERGE);
    cluster.mesh.partition("sb").unwrap();
    // Only sb knows Agrigento while it stores its search.
    let mut b = cluster.conn("sb");
    b.cmd(&["GEOADD", "src", "13.5765", "37.3111", "Agrigento"]);
    assert_eq!(
        b.cmd(&[
            "GEOSEARCHSTORE",
            "near",
            "src",
            "FROMMEMBER",
            "Palermo",
            "BYRADIUS",
            "200",
            "km",
            "STOREDIST",
        ]),
        Frame::Integer(3)
    );
    let stored = scores(&mut b, "near");
    cluster.conn("sa").cmd(&[
        "GEORADIUS",
        "src",
        "15",
        "37",
        "100",
        "km",
        "STORE",
        "around",
    ]);
    cluster.mesh.heal_all();
    cluster.converge(CONVERGE);
    for n in names {
        let mut c = cluster.conn(n);
        assert_eq!(scores(&mut c, "near"), stored, "{n}");
        assert_eq!(
            scores(&mut c, "around").keys().collect::<Vec<_>>(),
            ["Catania"],
            "{n}"
        );
        assert_eq!(scores(&mut c, "src").len(), 3, "{n}");
    }
}
