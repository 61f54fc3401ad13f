//! What `/metrics` exposes, scraped from real regions: every metric family
//! recorded in `metrics_names.txt` (name, type and label names) is still
//! there, nothing unrecorded has appeared, and the text is valid Prometheus
//! text exposition (version 0.0.4). Dashboards and alerts query these names,
//! so a family that disappears or changes its labels breaks them silently.
//!
//! The fixture's last column says when a family shows: `always`, or `peers`
//! for families that need linked peers, a healed partition with a conflict,
//! or a refused handshake; the linked pair below produces all of them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{http_request, Cluster};
use common::{Conn, Meridian};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const FIXTURE: &str = include_str!("metrics_names.txt");
const FAST: [&str; 4] = ["--lease-ms", "1000", "--heartbeat-ms", "100"];
/// How long a region may take to show what a step of a scenario caused.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// One family as the fixture records it or a scrape exposes it: its type
/// and every set of label names its samples carry.
#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    kind: String,
    label_sets: BTreeSet<Vec<String>>,
}

/// One line of the fixture.
struct Recorded {
    name: String,
    kind: String,
    labels: Vec<String>,
    always: bool,
}

fn fixture() -> Vec<Recorded> {
    FIXTURE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "fixture line {l:?}: name type labels when");
            let labels = match fields[2] {
                "-" => Vec::new(),
                list => list.split(',').map(str::to_string).collect(),
            };
            let always = match fields[3] {
                "always" => true,
                "peers" => false,
                other => panic!("fixture line {l:?}: unknown `when` {other:?}"),
            };
            Recorded {
                name: fields[0].to_string(),
                kind: fields[1].to_string(),
                labels,
                always,
            }
        })
        .collect()
}

/// A scrape: the content type and the families, keyed by sample name.
struct Scrape {
    content_type: String,
    families: BTreeMap<String, Family>,
    text: String,
}

fn scrape(http: SocketAddr) -> Scrape {
    let reply = http_request(
        std::net::TcpStream::connect(http).expect("connect to the HTTP port"),
        "GET",
        "/metrics",
        &[],
        "",
    );
    assert_eq!(reply.code, 200, "{}", reply.body);
    let content_type = reply.header("content-type").unwrap_or("").to_string();
    let families = parse_exposition(&reply.body).unwrap_or_else(|e| panic!("{e}\n{}", reply.body));
    Scrape {
        content_type,
        families,
        text: reply.body,
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits a sample line into its name, its label names and its value,
/// checking the quoting and escapes of label values.
fn parse_sample(line: &str) -> Result<(String, Vec<String>, f64), String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without a value")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let start = chars.peek().map(|&(i, _)| i).ok_or("unclosed labels")?;
            if inner[start..].starts_with('}') {
                rest = &inner[start + 1..];
                break;
            }
            let eq = inner[start..].find('=').ok_or("label without '='")? + start;
            let label = &inner[start..eq];
            if !valid_name(label) || label.starts_with("__") {
                return Err(format!("bad label name {label:?}"));
            }
            labels.push(label.to_string());
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} has an unquoted value"));
            }
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err(format!("label {label} has an unclosed value")),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\' | '"' | 'n') => {}
                        other => return Err(format!("bad escape {other:?} in label {label}")),
                    },
                    Some('\n') => return Err(format!("raw newline in label {label}")),
                    Some(_) => {}
                }
            }
            if chars.peek().map(|&(_, c)| c) == Some(',') {
                chars.next();
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("sample without a value")?;
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields after the value".into());
    }
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    Ok((name.to_string(), labels, value))
}

/// Parses Prometheus text exposition (0.0.4) strictly: each family has one
/// HELP and one TYPE line before its samples, its samples are contiguous and
/// carry its name, no series repeats, and no other comment appears.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut series = BTreeSet::new();
    let mut current: Option<String> = None;
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or("");
            if !valid_name(name) || !helped.insert(name.to_string()) {
                return Err(at("repeated or malformed HELP".into()));
            }
        } else if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if !helped.contains(name) {
                return Err(at("TYPE before (or without) its HELP".into()));
            }
            if families.contains_key(name) {
                return Err(at("a second TYPE for one family".into()));
            }
            families.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    label_sets: BTreeSet::new(),
                },
            );
            current = Some(name.to_string());
        } else if line.starts_with('#') {
            return Err(at("a comment that is neither HELP nor TYPE".into()));
        } else if line.trim().is_empty() {
            return Err(at("an empty line".into()));
        } else {
            let (name, labels, _) = parse_sample(line).map_err(at)?;
            if current.as_deref() != Some(name.as_str()) {
                return Err(at(format!("sample outside its family (in {current:?})")));
            }
            let mut key = labels.clone();
            key.sort();
            if key.windows(2).any(|w| w[0] == w[1]) {
                return Err(at("a label repeated in one sample".into()));
            }
            let id = line.rsplit_once(' ').map_or(line, |(series, _)| series);
            if !series.insert(id.to_string()) {
                return Err(at("a series exposed twice".into()));
            }
            let family = families
                .get_mut(&name)
                .ok_or_else(|| at("no TYPE".into()))?;
            family.label_sets.insert(key);
        }
    }
    if let Some(name) = helped.iter().find(|n| !families.contains_key(*n)) {
        return Err(format!("HELP without TYPE for {name}"));
    }
    Ok(families)
}

/// Checks a scrape against the fixture: every recorded family that should
/// show (all of them when `with_peers`) is exposed with its type and label
/// names, and every exposed family and label set is recorded.
fn check_against_fixture(scrape: &Scrape, with_peers: bool) {
    assert!(
        scrape.content_type.starts_with("text/plain; version=0.0.4"),
        "content type {:?} is not Prometheus text 0.0.4",
        scrape.content_type
    );
    let recorded = fixture();
    let mut missing = Vec::new();
    for r in recorded.iter().filter(|r| r.always || with_peers) {
        let mut labels = r.labels.clone();
        labels.sort();
        match scrape.families.get(&r.name) {
            Some(f) if f.kind == r.kind && f.label_sets.contains(&labels) => {}
            found => missing.push(format!(
                "{} {} {:?}: exposed as {found:?}",
                r.name, r.kind, r.labels
            )),
        }
    }
    for (name, family) in &scrape.families {
        for labels in &family.label_sets {
            let known = recorded.iter().any(|r| {
                let mut recorded_labels = r.labels.clone();
                recorded_labels.sort();
                &r.name == name && r.kind == family.kind && &recorded_labels == labels
            });
            if !known {
                missing.push(format!(
                    "{name} {} {labels:?} is exposed but not recorded",
                    family.kind
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "/metrics differs from metrics_names.txt:\n{}\n--- scraped:\n{}",
        missing.join("\n"),
        scrape.text
    );
}

fn ok(reply: Frame) {
    assert_eq!(reply, Frame::Simple("OK".into()));
}

/// The first sample of `name` whose line contains `labels`, if exposed.
fn sample(http: SocketAddr, name: &str, labels: &str) -> Option<f64> {
    let text = scrape(http).text;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with(' ') || rest.starts_with('{')) || !rest.contains(labels) {
            return None;
        }
        rest.rsplit(' ').next()?.parse().ok()
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SHOW_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fixture_records_each_family_and_label_set_once() {
    let mut seen = BTreeSet::new();
    let mut kinds = BTreeMap::new();
    for r in fixture() {
        assert!(
            seen.insert((r.name.clone(), r.labels.clone())),
            "{} {:?} recorded twice",
            r.name,
            r.labels
        );
        let kind = kinds.entry(r.name.clone()).or_insert(r.kind.clone());
        assert_eq!(*kind, r.kind, "{} recorded with two types", r.name);
    }
    assert!(seen.len() > 50, "the fixture lost families: {}", seen.len());
}

#[test]
fn a_single_region_exposes_every_recorded_family_that_needs_no_peers() {
    let region = Meridian::start(&[]);
    let mut conn: Conn = region.conn();
    ok(conn.cmd(&["SET", "k", "v"]));
    assert_eq!(conn.cmd(&["GET", "k"]), Frame::Bulk("v".into()));
    check_against_fixture(&scrape(region.http), false);
}

#[test]
fn a_linked_pair_after_a_healed_partition_exposes_every_recorded_family() {
    let cluster = Cluster::start(&["ma", "mb"], LinkConditions::wan(2), &FAST, 11);
    let (ma, mb) = (cluster.regions[0].http, cluster.regions[1].http);
    ok(cluster.conn("ma").cmd(&["SET", "from-ma", "1"]));
    ok(cluster.conn("mb").cmd(&["SET", "from-mb", "1"]));
    cluster.converge(SHOW_TIMEOUT);

    // Concurrent writes to one key on both sides of a partition leave a
    // conflict in each journal once it heals, and a heal report.
    cluster.mesh.partition("ma").unwrap();
    for (http, peer) in [(ma, "mb"), (mb, "ma")] {
        let labels = format!("peer=\"{peer}\"");
        wait_until("each region to see its peer down", || {
            sample(http, "meridian_peer_liveness", &labels) == Some(0.0)
        });
    }
    ok(cluster.conn("ma").cmd(&["SET", "clash", "a"]));
    ok(cluster.conn("mb").cmd(&["SET", "clash", "b"]));
    cluster.mesh.heal_all();
    cluster.converge(SHOW_TIMEOUT);
    for http in [ma, mb] {
        wait_until("a heal report", || {
            sample(http, "meridian_last_partition_seconds", "").is_some()
        });
    }
    wait_until("a conflict counted by type and rule", || {
        sample(ma, "meridian_conflicts_total", "type=").is_some()
    });

    // A region with the wrong secret is refused, by reason.
    let repl = cluster.regions[0].repl;
    let _intruder = Meridian::start(&[
        "--region",
        "intruder",
        "--cluster-secret",
        "wrong",
        "--peer",
        &format!("ma={repl}"),
    ]);
    wait_until("a refused handshake", || {
        sample(ma, "meridian_replication_refused_total", "reason=").is_some()
    });
    wait_until("apply lag quantiles from the peer", || {
        sample(
            ma,
            "meridian_replication_apply_lag_seconds",
            "quantile=\"0.99\"",
        )
        .is_some()
    });

    let exposed = scrape(ma);
    check_against_fixture(&exposed, true);
    // Dashboards also filter on label values, in this order.
    let info = format!(
        "meridian_info{{region=\"ma\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let expected = [
        info.as_str(),
        "meridian_command_calls_total{cmd=\"set\"} ",
        "meridian_conflicts_total{type=\"string\",rule=\"lww\"} ",
        "meridian_replication_refused_total{reason=\"bad secret\"} ",
        "meridian_replication_apply_lag_seconds{peer=\"mb\",quantile=\"0.5\"} ",
        "meridian_replication_apply_lag_seconds{peer=\"mb\",quantile=\"0.99\"} ",
        "meridian_replication_link_up{peer=\"mb\"} 1",
        "meridian_peer_liveness{peer=\"mb\"} 1",
    ];
    for series in expected {
        assert!(
            exposed.text.lines().any(|l| l.starts_with(series)),
            "no {series:?} in\n{}",
            exposed.text
        );
    }
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\"} 3\n";
    assert!(parse_exposition(good).is_ok());
    for bad in [
        "# HELP a A.\n# TYPE a gauge\n# HELP a A.\n# TYPE a gauge\na 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP a A.\n# TYPE a gauge\nb 1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a A.\n# TYPE a gauge\na one\n",
        "# HELP a A.\n# TYPE a gauge\na 1\n# EOF\n",
        "# TYPE a gauge\na 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
