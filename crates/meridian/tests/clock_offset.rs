//! The test-only `--clock-offset-ms` flag: a region started with its clock
//! ahead is reported by its peers (`/v1/status`, `MERIDIAN REGIONS`) once
//! the offset passes `--max-clock-offset-ms`, and the flag stays out of
//! `--help`.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{http_json, Cluster};
use meridian_netem::LinkConditions;
use meridian_resp::Frame;

const OFFSET_MS: i64 = 3_000;

/// The `MERIDIAN REGIONS` row (RESP2: a flat name/value list) of `id`.
fn regions_row(reply: &Frame, id: &str) -> Option<Vec<(String, Frame)>> {
    let Frame::Array(rows) = reply else {
        return None;
    };
    rows.iter().find_map(|row| {
        let pairs: Vec<(String, Frame)> = match row {
            Frame::Array(items) => items
                .chunks(2)
                .map(|p| (text(&p[0]), p[1].clone()))
                .collect(),
            Frame::Map(pairs) => pairs.iter().map(|(k, v)| (text(k), v.clone())).collect(),
            _ => return None,
        };
        pairs
            .iter()
            .any(|(k, v)| k == "id" && text(v) == id)
            .then_some(pairs)
    })
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        Frame::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn field(row: &[(String, Frame)], name: &str) -> Option<Frame> {
    row.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn a_region_whose_clock_runs_ahead_raises_the_clock_alarm_on_its_peers() {
    let cluster = Cluster::start_with(&["fast", "true"], LinkConditions::IDEAL, &[], 5, |name| {
        if name == "fast" {
            vec![format!("--clock-offset-ms={OFFSET_MS}")]
        } else {
            Vec::new()
        }
    });
    let mut fast = cluster.conn("fast");
    assert!(!fast.cmd(&["SET", "k", "v"]).is_error());
    let honest = &cluster.regions[cluster.index("true")];
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let status = http_json(honest.http, "/v1/status");
        let row = status["regions"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == "fast"))
            .cloned()
            .expect("a status row for the fast region");
        // The alarm comes with the first op stamped ahead, the offset with
        // the next heartbeat on the idle link.
        if row["clock_alarm"] == true && row["clock_offset_ms"].as_i64() > Some(0) {
            break row;
        }
        assert!(Instant::now() < deadline, "no clock alarm: {row}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let offset = row["clock_offset_ms"].as_i64().unwrap();
    assert!(
        (OFFSET_MS - 1_000..=OFFSET_MS + 1_000).contains(&offset),
        "offset {offset}"
    );

    let reply = cluster.conn("true").cmd(&["MERIDIAN", "REGIONS"]);
    let row = regions_row(&reply, "fast").expect("a REGIONS row for the fast region");
    assert_eq!(
        field(&row, "clock_alarm"),
        Some(Frame::Integer(1)),
        "{row:?}"
    );
    let offset: i64 = text(&field(&row, "clock_offset_ms").unwrap())
        .parse()
        .unwrap();
    assert!(offset >= OFFSET_MS - 1_000, "offset {offset}");

    // The fast region sees its peer behind, which is not alarming.
    let status = http_json(cluster.regions[cluster.index("fast")].http, "/v1/status");
    let row = status["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == "true"))
        .cloned()
        .unwrap();
    assert_eq!(row["clock_alarm"], false, "{row}");

    // TIME answers from the shifted clock too.
    let time = cluster.conn("fast").cmd(&["TIME"]);
    let Frame::Array(parts) = time else {
        panic!("TIME: {time:?}")
    };
    let secs: i64 = text(&parts[0]).parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (secs - now - OFFSET_MS / 1000).abs() <= 1,
        "TIME {secs}, now {now}"
    );
}

#[test]
fn the_clock_offset_flag_is_hidden_from_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-clock-offset-ms"), "{help}");
    assert!(!help.contains("--clock-offset-ms"), "{help}");
}
