//! `meridian status`: any region's view of the cluster as a table a person
//! reads in a second.
//!
//! It reads `/v1/status` and `/v1/conflicts` from a region's HTTP admin port
//! with a small blocking HTTP/1.1 client (one request per connection,
//! `Connection: close`), so the tool needs no async runtime and no HTTP
//! library. Fetching ([`fetch_status`]) is kept apart from rendering
//! ([`render_table`]), which is pure and tested on fixed JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a connect, a write or a read may take before the region counts
/// as unreachable.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply larger than this is refused rather than buffered (the conflict
/// journal at its 10 000-entry limit is a few MiB).
const HTTP_REPLY_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Journal entries (newest first) read to count the last hour's conflicts:
/// a small page first, since the region serializes them under its store
/// lock, and a larger one only while every entry read is within the hour.
/// The last is the journal's own retention limit.
const CONFLICT_PAGES: [usize; 3] = [100, 1_000, 10_000];
const HOUR_MS: u64 = 3_600_000;
/// `--watch` never polls faster than this.
const INTERVAL_MIN_MS: u64 = 100;
/// Every reply of an HTTP/1.x server starts with this.
const HTTP_PREFIX: &[u8] = b"HTTP/1.";
/// Characters of an error quoted from a reply that is not status JSON.
const QUOTED_BODY_MAX_CHARS: usize = 120;

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

/// Why a region's status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot resolve {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("{url}: region unreachable: {error}")]
    Unreachable { url: String, error: std::io::Error },
    #[error("{url}: {reason}")]
    BadReply { url: String, reason: String },
    #[error("{url}: HTTP {code}: {body}")]
    Status {
        url: String,
        code: u16,
        body: String,
    },
    #[error("{url}: not Meridian status JSON: {reason}")]
    NotStatus { url: String, reason: String },
}

/// One HTTP reply, body already de-chunked.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    /// The server's clock, from the `Date` header, in Unix milliseconds.
    pub date_ms: Option<u64>,
    pub body: Vec<u8>,
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

/// Strips what a person may paste along with the address.
fn host_port(addr: &str) -> &str {
    addr.trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

/// Reads and checks `/v1/status` from `addr`.
pub fn fetch_status(addr: &str, token: Option<&str>) -> Result<Status, FetchError> {
    let addr = host_port(addr);
    let path = "/v1/status";
    let url = format!("http://{addr}{path}");
    let reply = http_get(addr, path, token)?;
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
    let addr = host_port(addr);
    let mut summary = ConflictSummary::default();
    for count in CONFLICT_PAGES {
        let path = format!("/v1/conflicts?count={count}");
        let reply = http_get(addr, &path, token).map_err(|e| e.to_string())?;
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

/// The table. Pure: everything comes from `status` and `conflicts`.
pub fn render_table(status: &Value, conflicts: &Result<ConflictSummary, String>) -> String {
    let mut out = String::new();
    let ready = if status["ready"].as_bool() == Some(true) {
        "ready".to_string()
    } else {
        match status["not_ready_reason"].as_str() {
            Some(reason) => format!("NOT READY ({reason})"),
            None => "NOT READY".to_string(),
        }
    };
    let _ = writeln!(
        out,
        "cluster {} seen from {} · {} · epoch {} · {} keys",
        status["cluster"].as_str().unwrap_or("?"),
        status["region"].as_str().unwrap_or("?"),
        ready,
        status["epoch"],
        status["keys"].as_u64().unwrap_or(0),
    );
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
    let _ = writeln!(
        out,
        "fenced keyspaces: {}",
        if fenced.is_empty() {
            "none".to_string()
        } else {
            fenced.join(", ")
        }
    );
    let election = &status["election"];
    if let Some(primary) = election["primary"].as_str() {
        let _ = writeln!(
            out,
            "primary of primary keyspaces: {primary} (term {}; this region: {}{})",
            election["primary_term"],
            election["role"].as_str().unwrap_or("?"),
            match election["not_writable_reason"].as_str() {
                Some(why) if election["role"] == "leader" => format!(", not writable: {why}"),
                _ => String::new(),
            }
        );
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
    out.push('\n');

    let header = [
        "  REGION",
        "ROLE",
        "STATE",
        "LINK",
        "LAG ms",
        "LAG ops",
        "CLOCK ms",
        "LOST 1h",
        "LAST ERROR",
    ];
    // Numbers are right-aligned so their magnitudes line up.
    let right = [false, false, false, false, true, true, true, true, false];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let regions = status["regions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for r in regions {
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
        rows.push(vec![
            format!("{} {id}", if is_self { '*' } else { ' ' }),
            r["role"].as_str().unwrap_or("?").to_string(),
            shout_unless(state, "up"),
            link,
            r["lag_ms"].as_u64().map_or("-".into(), |n| n.to_string()),
            r["lag_ops"].as_u64().map_or("-".into(), |n| n.to_string()),
            clock,
            lost,
            error,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if right[c] {
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
    out.push_str(
        "\n* this region · STATE: failure detector · LINK: replication both ways · \
         LOST 1h: that region's writes discarded by a concurrent write\n",
    );
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

fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "an empty body".into();
    }
    let mut quoted: String = text.chars().take(QUOTED_BODY_MAX_CHARS).collect();
    if text.chars().count() > QUOTED_BODY_MAX_CHARS {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

/// `GET path` on `addr` over one HTTP/1.1 connection, with the admin token
/// as a bearer token if there is one.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> Result<Reply, FetchError> {
    http_request(addr, "GET", path, token, None)
}

/// One request on `addr` over one HTTP/1.1 connection, with a JSON body
/// if one is given.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    json_body: Option<&str>,
) -> Result<Reply, FetchError> {
    let addr = host_port(addr);
    let url = format!("http://{addr}{path}");
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| FetchError::BadAddress {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last_error = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for target in &targets {
        match TcpStream::connect_timeout(target, HTTP_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let unreachable = |error| FetchError::Unreachable {
        url: url.clone(),
        error,
    };
    let mut stream = stream.ok_or_else(|| unreachable(last_error))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(unreachable)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = json_body.unwrap_or_default();
    let content = match json_body {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
        None => String::new(),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         User-Agent: meridian-status\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreachable(e)),
        };
        raw.extend_from_slice(&chunk[..n]);
        // Something that is not an HTTP server (a RESP port, say) may never
        // close the connection: give up as soon as the reply says so.
        let prefix_len = raw.len().min(HTTP_PREFIX.len());
        if raw[..prefix_len] != HTTP_PREFIX[..prefix_len] {
            return Err(FetchError::BadReply {
                url,
                reason: format!("not an HTTP reply: {}", quote_body(&raw)),
            });
        }
        if raw.len() as u64 > HTTP_REPLY_MAX_BYTES {
            return Err(FetchError::BadReply {
                url,
                reason: format!("reply larger than {HTTP_REPLY_MAX_BYTES} bytes"),
            });
        }
    }
    parse_reply(&raw).map_err(|reason| FetchError::BadReply { url, reason })
}

/// Parses a whole HTTP/1.x reply read until the server closed.
pub fn parse_reply(raw: &[u8]) -> Result<Reply, String> {
    if raw.is_empty() {
        return Err("the connection closed without a reply".into());
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("not an HTTP reply: {}", quote_body(raw)));
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split_whitespace();
    let code = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.as_bytes().starts_with(HTTP_PREFIX) => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("not an HTTP reply: {}", quote_body(status_line.as_bytes())))?;
    let (mut length, mut chunked, mut date_ms) = (None, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "date" => date_ms = parse_http_date_ms(value),
            _ => {}
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("reply cut short: {} of {n} body bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        code,
        date_ms,
        body,
    })
}

/// Decodes a `Transfer-Encoding: chunked` body (extensions and trailers
/// ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut short")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("chunked body cut short")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("chunked body cut short")?;
    }
}

/// Parses an HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`),
/// the only form servers send today, to Unix milliseconds.
pub fn parse_http_date_ms(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    u64::try_from(seconds).ok().map(|s| s * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    #[test]
    fn replies_with_length_or_chunks_parse() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n{}";
        let reply = parse_reply(plain).unwrap();
        assert_eq!((reply.code, reply.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(reply.date_ms, Some(784_111_777_000));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let reply = parse_reply(chunked).unwrap();
        assert_eq!((reply.code, reply.body.as_slice()), (503, &b"abcde"[..]));
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_reply(b"").is_err());
    }

    #[test]
    fn http_dates_parse_to_unix_ms() {
        assert_eq!(parse_http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date_ms("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599_000)
        );
        assert_eq!(parse_http_date_ms("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date_ms("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }
}
