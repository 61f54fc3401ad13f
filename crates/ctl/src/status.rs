//! `meridian status`: any region's view of the cluster as a table a person
//! reads in a second.
//!
//! It reads `/v1/status` and `/v1/conflicts` from a region's HTTP admin port
//! with the blocking client of [`crate::http`], so the tool needs no async
//! runtime. Fetching ([`fetch_status`]) is kept apart from rendering
//! ([`render_table`]), which is pure and tested on fixed JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::http::{quote_body, wall_ms, FetchError, Request};

/// Journal entries (newest first) read to count the last hour's conflicts:
/// a small page first, since the region serializes them under its store
/// lock, and a larger one only while every entry read is within the hour.
/// The last is the journal's own retention limit.
const CONFLICT_PAGES: [usize; 3] = [100, 1_000, 10_000];
const HOUR_MS: u64 = 3_600_000;
/// `--watch` never polls faster than this.
const INTERVAL_MIN_MS: u64 = 100;

#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// HTTP admin address of any region (`HOST:PORT`).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub http: String,
    /// Print the region's `/v1/status` JSON instead of the table (one
    /// compact line per refresh with `--watch`).
    #[arg(long)]
    pub json: bool,
    /// Refresh in place until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// The region's admin token, when it runs with `--admin-token`.
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Milliseconds between refreshes with `--watch`.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

/// A region's `/v1/status`, checked to be one.
#[derive(Debug)]
pub struct Status {
    pub json: Value,
    /// The body exactly as the region sent it, for `--json`.
    pub raw: Vec<u8>,
    /// The region's clock when it answered, in Unix milliseconds (from the
    /// `Date` header, else this machine's clock).
    pub now_ms: u64,
}

/// Conflicts detected in the last hour, from the region's journal.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConflictSummary {
    pub last_hour: usize,
    /// Per region whose write lost: how many of `last_hour` it lost.
    pub lost_by_region: BTreeMap<String, usize>,
    /// The journal returned as many entries as were asked for, all within
    /// the hour: there may be more.
    pub at_least: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.interval_ms.max(INTERVAL_MIN_MS));
    if !args.watch {
        let mut out = std::io::stdout().lock();
        if args.json {
            let status = fetch_status(&args.http, args.token.as_deref())?;
            out.write_all(&status.raw)?;
            if !status.raw.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
        } else {
            out.write_all(table(&args.http, args.token.as_deref())?.as_bytes())?;
        }
        return Ok(out.flush()?);
    }
    // A region that restarts or drops off the network shows as an error in
    // place; the watch goes on and picks it up again when it answers.
    loop {
        let mut out = std::io::stdout().lock();
        if args.json {
            match fetch_status(&args.http, args.token.as_deref()) {
                Ok(status) => writeln!(out, "{}", serde_json::to_string(&status.json)?)?,
                Err(e) => eprintln!("{e}"),
            }
        } else {
            let body = table(&args.http, args.token.as_deref())
                .unwrap_or_else(|e| format!("error: {e}\n"));
            let footer = format!(
                "\n{} UTC · every {} ms · Ctrl-C to stop\n",
                clock_utc(wall_ms()),
                interval.as_millis()
            );
            out.write_all(in_place(&(body + &footer)).as_bytes())?;
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(interval);
    }
}

/// The table for the region at `addr`. A journal that cannot be read is
/// shown as unknown rather than failing the whole table.
fn table(addr: &str, token: Option<&str>) -> Result<String, FetchError> {
    let status = fetch_status(addr, token)?;
    let conflicts = fetch_conflicts(addr, status.now_ms, token);
    Ok(render_table(&status.json, &conflicts))
}

/// Reads and checks `/v1/status` from `addr`.
pub fn fetch_status(addr: &str, token: Option<&str>) -> Result<Status, FetchError> {
    let reply = Request::get("/v1/status").token(token).send(addr)?;
    let url = reply.url.clone();
    if reply.code != 200 {
        return Err(FetchError::Status {
            url,
            code: reply.code,
            body: quote_body(&reply.body),
        });
    }
    let json: Value = serde_json::from_slice(&reply.body).map_err(|e| FetchError::NotStatus {
        url: url.clone(),
        reason: format!("{e}; the reply starts {}", quote_body(&reply.body)),
    })?;
    check_status_shape(&json).map_err(|reason| FetchError::NotStatus { url, reason })?;
    Ok(Status {
        json,
        raw: reply.body,
        now_ms: reply.date_ms.unwrap_or_else(wall_ms),
    })
}

/// Counts the conflicts `addr` detected in the hour before `now_ms`.
pub fn fetch_conflicts(
    addr: &str,
    now_ms: u64,
    token: Option<&str>,
) -> Result<ConflictSummary, String> {
    let mut summary = ConflictSummary::default();
    for count in CONFLICT_PAGES {
        let path = format!("/v1/conflicts?count={count}");
        let reply = Request::get(&path)
            .token(token)
            .send(addr)
            .map_err(|e| e.to_string())?;
        if reply.code != 200 {
            return Err(format!("{path}: HTTP {}", reply.code));
        }
        let journal: Value =
            serde_json::from_slice(&reply.body).map_err(|e| format!("{path}: {e}"))?;
        summary = summarize_conflicts(&journal, now_ms, count)
            .ok_or_else(|| format!("{path}: no \"conflicts\" array"))?;
        if !summary.at_least {
            break;
        }
    }
    Ok(summary)
}

/// The fields the table needs, so that a reply from something other than a
/// Meridian region is refused with a reason instead of printed half empty.
fn check_status_shape(status: &Value) -> Result<(), String> {
    if !status.is_object() {
        return Err("the reply is not a JSON object".into());
    }
    if !status["region"].is_string() {
        return Err("no \"region\" string".into());
    }
    if !status["epoch"].is_u64() {
        return Err("no \"epoch\" number".into());
    }
    let Some(regions) = status["regions"].as_array() else {
        return Err("no \"regions\" array".into());
    };
    if regions.iter().any(|r| !r["id"].is_string()) {
        return Err("a region without an \"id\"".into());
    }
    Ok(())
}

/// Counts the journal entries (newest first) detected within the hour
/// before `now_ms`. `None` if `journal` is not a `/v1/conflicts` reply.
pub fn summarize_conflicts(
    journal: &Value,
    now_ms: u64,
    asked_for: usize,
) -> Option<ConflictSummary> {
    let entries = journal["conflicts"].as_array()?;
    let since_ms = now_ms.saturating_sub(HOUR_MS);
    let mut summary = ConflictSummary::default();
    for e in entries {
        if e["detected_ms"].as_u64().is_some_and(|t| t >= since_ms) {
            summary.last_hour += 1;
            if let Some(loser) = e["loser"]["region"].as_str() {
                *summary.lost_by_region.entry(loser.to_string()).or_default() += 1;
            }
        }
    }
    summary.at_least = entries.len() >= asked_for && summary.last_hour == entries.len();
    Some(summary)
}

/// The table's columns, and which of them are right-aligned: numbers, so
/// that their magnitudes line up.
const COLUMNS: [(&str, bool); 9] = [
    ("  REGION", false),
    ("ROLE", false),
    ("STATE", false),
    ("LINK", false),
    ("LAG ms", true),
    ("LAG ops", true),
    ("CLOCK ms", true),
    ("LOST 1h", true),
    ("LAST ERROR", false),
];

/// What the table's marks and columns mean, printed under it.
const LEGEND: &str = "\n* this region · STATE: failure detector · LINK: replication both ways · \
                      LOST 1h: that region's writes discarded by a concurrent write\n";

/// The table. Pure: everything comes from `status` and `conflicts`.
pub fn render_table(status: &Value, conflicts: &Result<ConflictSummary, String>) -> String {
    let mut out = summary_lines(status, conflicts);
    out.push('\n');
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.iter().map(|(h, _)| h.to_string()).collect()];
    let regions = status["regions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    rows.extend(regions.iter().map(|r| region_row(r, conflicts)));
    out.push_str(&align_columns(&rows));
    out.push_str(LEGEND);
    out
}

/// The lines above the table: the cluster as a whole, seen from this region.
fn summary_lines(status: &Value, conflicts: &Result<ConflictSummary, String>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} seen from {} · {} · epoch {} · {} keys",
        status["cluster"].as_str().unwrap_or("?"),
        status["region"].as_str().unwrap_or("?"),
        readiness(status),
        status["epoch"],
        status["keys"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(out, "fenced keyspaces: {}", fenced_keyspaces(status));
    if let Some(line) = primary_line(&status["election"]) {
        let _ = writeln!(out, "{line}");
    }
    let conflicts_line = match conflicts {
        Ok(c) if c.at_least => format!("at least {}", c.last_hour),
        Ok(c) => c.last_hour.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    let _ = writeln!(out, "conflicts in the last hour: {conflicts_line}");
    let refused: Vec<String> = status["handshakes_refused"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect())
        .unwrap_or_default();
    if !refused.is_empty() {
        let _ = writeln!(out, "peer handshakes refused: {}", refused.join(", "));
    }
    out
}

/// `ready`, or `NOT READY` with the region's reason when it gives one.
fn readiness(status: &Value) -> String {
    if status["ready"].as_bool() == Some(true) {
        "ready".to_string()
    } else {
        match status["not_ready_reason"].as_str() {
            Some(reason) => format!("NOT READY ({reason})"),
            None => "NOT READY".to_string(),
        }
    }
}

/// Every keyspace that is not writable, with its state and reason, or
/// `none`.
fn fenced_keyspaces(status: &Value) -> String {
    let policies = status["policies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let fenced: Vec<String> = policies
        .iter()
        .filter(|p| p["state"].as_str() != Some("writable"))
        .map(|p| {
            let pattern = p["pattern"].as_str().unwrap_or("?");
            let state = p["state"].as_str().unwrap_or("?");
            match p["reason"].as_str() {
                Some(reason) => format!("{pattern} ({state}: {reason})"),
                None => format!("{pattern} ({state})"),
            }
        })
        .collect();
    if fenced.is_empty() {
        "none".to_string()
    } else {
        fenced.join(", ")
    }
}

/// Who holds the primary keyspaces and in which term, when the cluster has
/// elected a primary.
fn primary_line(election: &Value) -> Option<String> {
    let primary = election["primary"].as_str()?;
    Some(format!(
        "primary of primary keyspaces: {primary} (term {}; this region: {}{})",
        election["primary_term"],
        election["role"].as_str().unwrap_or("?"),
        match election["not_writable_reason"].as_str() {
            Some(why) if election["role"] == "leader" => format!(", not writable: {why}"),
            _ => String::new(),
        }
    ))
}

/// One region's row, in the order of [`COLUMNS`]. This region (`self`) has
/// no link, clock offset or link error of its own.
fn region_row(r: &Value, conflicts: &Result<ConflictSummary, String>) -> Vec<String> {
    let id = r["id"].as_str().unwrap_or("?");
    let is_self = r["self"].as_bool() == Some(true);
    let state = r["state"].as_str().unwrap_or("?");
    let lost = match conflicts {
        Ok(c) => c.lost_by_region.get(id).copied().unwrap_or(0).to_string(),
        Err(_) => "?".into(),
    };
    let (link, clock, error) = if is_self {
        ("self".to_string(), "-".to_string(), String::new())
    } else {
        let link = link_state(&r["link"]);
        let clock = match r["clock_offset_ms"].as_i64() {
            Some(ms) if r["clock_alarm"].as_bool() == Some(true) => format!("{ms:+} ALARM"),
            Some(ms) => format!("{ms:+}"),
            None => "-".into(),
        };
        let error = if link == "up" {
            String::new()
        } else {
            r["link"]["last_error"].as_str().unwrap_or("").to_string()
        };
        (shout_unless(link, "up"), clock, error)
    };
    vec![
        format!("{} {id}", if is_self { '*' } else { ' ' }),
        r["role"].as_str().unwrap_or("?").to_string(),
        shout_unless(state, "up"),
        link,
        r["lag_ms"].as_u64().map_or("-".into(), |n| n.to_string()),
        r["lag_ops"].as_u64().map_or("-".into(), |n| n.to_string()),
        clock,
        lost,
        error,
    ]
}

/// `rows` (the header first) padded to their columns' widths, two spaces
/// apart, aligned as [`COLUMNS`] says, without trailing spaces.
fn align_columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if COLUMNS[c].1 {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One word for both directions of a link: `up` only when this region
/// streams to the peer and the peer streams back.
fn link_state(link: &Value) -> &'static str {
    match (link["outbound"].as_str(), link["inbound"].as_str()) {
        (Some("up"), Some("up")) => "up",
        (Some("refused"), _) => "refused",
        (Some("up"), _) | (_, Some("up")) => "one-way",
        (Some("connecting"), _) => "connecting",
        _ => "down",
    }
}

/// Anything but the healthy value is shouted so it stands out in a column
/// of lowercase.
fn shout_unless(value: &str, healthy: &str) -> String {
    if value == healthy {
        value.to_string()
    } else {
        value.to_uppercase()
    }
}

/// Rewrites `text` to repaint the terminal from its top-left corner: each
/// line clears its own rest, and the screen below the last line is cleared,
/// so a refresh does not flicker the way clearing first does.
fn in_place(text: &str) -> String {
    let mut out = String::from("\x1b[H");
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\x1b[K\n");
    }
    out.push_str("\x1b[J");
    out
}

fn clock_utc(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status_fixture() -> Value {
        json!({
            "region": "eu-west",
            "cluster": "prod",
            "epoch": 4,
            "ready": true,
            "not_ready_reason": null,
            "keys": 1204,
            "regions": [
                {"id": "eu-west", "self": true, "role": "data", "state": "up", "epoch": 4, "lag_ms": 0, "lag_ops": 0},
                {"id": "eu-central", "self": false, "role": "data", "state": "up",
                 "link": {"outbound": "up", "inbound": "up", "last_error": null},
                 "lag_ms": 21, "lag_ops": 3, "clock_offset_ms": -2, "clock_alarm": false},
                {"id": "us-east", "self": false, "role": "witness", "state": "suspect",
                 "link": {"outbound": "connecting", "inbound": "down", "last_error": "connection refused"},
                 "lag_ms": 12034, "lag_ops": 815, "clock_offset_ms": 812, "clock_alarm": true},
            ],
            "policies": [
                {"pattern": "cart:*", "policy": "majority", "state": "fenced", "reason": "no majority lease"},
                {"pattern": "*", "policy": "active-active", "state": "writable"},
            ],
            "handshakes_refused": {},
        })
    }

    fn conflict(loser: &str, detected_ms: u64) -> Value {
        json!({"key": "k", "type": "string", "rule": "lww",
               "winner": {"region": "eu-west"}, "loser": {"region": loser},
               "detected_ms": detected_ms})
    }

    #[test]
    fn table_marks_self_and_shouts_problems() {
        let conflicts = Ok(ConflictSummary {
            last_hour: 3,
            lost_by_region: [("us-east".to_string(), 2), ("eu-central".to_string(), 1)].into(),
            at_least: false,
        });
        let table = render_table(&status_fixture(), &conflicts);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "cluster prod seen from eu-west · ready · epoch 4 · 1204 keys"
        );
        assert_eq!(
            lines[1],
            "fenced keyspaces: cart:* (fenced: no majority lease)"
        );
        assert_eq!(lines[2], "conflicts in the last hour: 3");
        let table_start = lines.iter().position(|l| l.contains("REGION")).unwrap();
        let row = |id: &str| {
            lines[table_start..]
                .iter()
                .find(|l| l.split_whitespace().any(|w| w == id))
                .unwrap_or_else(|| panic!("no row for {id} in\n{table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("eu-west"),
            ["*", "eu-west", "data", "up", "self", "0", "0", "-", "0"]
        );
        assert_eq!(
            row("eu-central"),
            ["eu-central", "data", "up", "up", "21", "3", "-2", "1"]
        );
        assert_eq!(
            row("us-east"),
            [
                "us-east",
                "witness",
                "SUSPECT",
                "CONNECTING",
                "12034",
                "815",
                "+812",
                "ALARM",
                "2",
                "connection",
                "refused"
            ]
        );
        // Columns line up: every row's LAG ms ends where its header does.
        let header = lines.iter().find(|l| l.contains("REGION")).unwrap();
        let end = header.find("LAG ms").unwrap() + "LAG ms".len();
        for id in ["eu-central", "us-east"] {
            let line = lines.iter().find(|l| l.contains(id)).unwrap();
            assert!(
                line[..end].ends_with(char::is_numeric),
                "{line:?} vs {header:?}"
            );
        }
    }

    #[test]
    fn a_link_is_up_only_both_ways() {
        let link = |o: &str, i: &str| link_state(&json!({"outbound": o, "inbound": i}));
        assert_eq!(link("up", "up"), "up");
        assert_eq!(link("up", "down"), "one-way");
        assert_eq!(link("down", "up"), "one-way");
        assert_eq!(link("connecting", "down"), "connecting");
        assert_eq!(link("refused", "up"), "refused");
        assert_eq!(link("down", "down"), "down");
        assert_eq!(link_state(&Value::Null), "down");
    }

    #[test]
    fn table_says_when_the_journal_could_not_be_read() {
        let table = render_table(&status_fixture(), &Err("HTTP 503".into()));
        assert!(
            table.contains("conflicts in the last hour: unknown (HTTP 503)"),
            "{table}"
        );
    }

    #[test]
    fn only_the_last_hour_of_conflicts_counts() {
        let now = 10 * HOUR_MS;
        let journal = json!({"conflicts": [
            conflict("us-east", now - 10),
            conflict("us-east", now - HOUR_MS),
            conflict("eu-central", now - HOUR_MS - 1),
        ]});
        let summary = summarize_conflicts(&journal, now, 100).unwrap();
        assert_eq!(summary.last_hour, 2);
        assert_eq!(summary.lost_by_region, [("us-east".to_string(), 2)].into());
        assert!(!summary.at_least);
        // A full page inside the hour means there may be more.
        let full = summarize_conflicts(&journal, now, 2).unwrap();
        assert!(!full.at_least, "the page reaches past the hour");
        let journal = json!({"conflicts": [conflict("a", now), conflict("b", now)]});
        assert!(summarize_conflicts(&journal, now, 2).unwrap().at_least);
        assert_eq!(summarize_conflicts(&json!({"x": 1}), now, 2), None);
    }

    #[test]
    fn status_json_of_another_service_is_refused() {
        assert!(check_status_shape(&status_fixture()).is_ok());
        for other in [
            json!([1, 2]),
            json!({"status": "ok"}),
            json!({"region": "a", "epoch": 1}),
        ] {
            assert!(check_status_shape(&other).is_err(), "{other}");
        }
    }
}
