//! The one HTTP client that reads and changes a region's admin port, for
//! the operator CLI and for the tools that drive regions.
//!
//! Requests are blocking ([`ureq`]), so the operator CLI needs no async
//! runtime; async callers run them on a blocking thread. Every request has
//! a deadline and every reply a size bound, and each failure says which URL
//! failed and whether the region could not be reached, did not answer HTTP,
//! or answered with an error.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a request may take, connect to last body byte, before the
/// region counts as unreachable.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply larger than this is refused rather than buffered (the conflict
/// journal at its 10 000-entry limit is a few MiB).
pub const HTTP_REPLY_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Characters of a body quoted in an error.
const QUOTED_BODY_MAX_CHARS: usize = 120;

/// Why a request to a region's admin port failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: region unreachable: {error}")]
    Unreachable { url: String, error: io::Error },
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

/// One HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub url: String,
    pub code: u16,
    /// The server's clock, from the `Date` header, in Unix milliseconds.
    pub date_ms: Option<u64>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, refusing any status but 200 with the reason the
    /// region gave (its `{"error": ...}` when it sent one).
    pub fn ok_json(self) -> Result<Value, FetchError> {
        let json = serde_json::from_slice::<Value>(&self.body);
        if self.code != 200 {
            let body = match &json {
                Ok(v) if v["error"].is_string() => v["error"].as_str().unwrap_or("").to_string(),
                _ => quote_body(&self.body),
            };
            return Err(FetchError::Status {
                url: self.url,
                code: self.code,
                body,
            });
        }
        json.map_err(|e| FetchError::BadReply {
            reason: format!("body is not JSON ({e}): {}", quote_body(&self.body)),
            url: self.url,
        })
    }

    /// The body as text, refusing any status but 200.
    pub fn ok_text(self) -> Result<String, FetchError> {
        if self.code != 200 {
            return Err(FetchError::Status {
                body: quote_body(&self.body),
                url: self.url,
                code: self.code,
            });
        }
        Ok(String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// A request to one region's admin port.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The admin token, sent as a bearer token.
    pub token: Option<&'a str>,
    /// A JSON body, sent with its content type.
    pub json_body: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            path,
            token: None,
            json_body: None,
            timeout: HTTP_TIMEOUT,
        }
    }

    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            ..Request::get(path)
        }
    }

    pub fn token(self, token: Option<&'a str>) -> Request<'a> {
        Request { token, ..self }
    }

    pub fn json_body(self, json_body: Option<&'a str>) -> Request<'a> {
        Request { json_body, ..self }
    }

    pub fn timeout(self, timeout: Duration) -> Request<'a> {
        Request { timeout, ..self }
    }

    /// Sends the request to `addr` (`HOST:PORT`, optionally written as a
    /// URL) and reads the whole reply.
    pub fn send(self, addr: &str) -> Result<Reply, FetchError> {
        let url = format!("http://{}{}", host_port(addr), self.path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("meridian")
            .build()
            .into();
        let mut request = ureq::http::Request::builder()
            .method(self.method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(token) = self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let built = match self.json_body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body.as_bytes().to_vec()),
            None => request.body(Vec::new()),
        }
        .map_err(|e| FetchError::BadReply {
            url: url.clone(),
            reason: format!("cannot build the request: {e}"),
        })?;
        let mut response = agent.run(built).map_err(|e| classify(&url, e))?;
        let code = response.status().as_u16();
        let date_ms = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date_ms);
        let body = response
            .body_mut()
            .with_config()
            .limit(HTTP_REPLY_MAX_BYTES)
            .read_to_vec()
            .map_err(|e| classify(&url, e))?;
        Ok(Reply {
            url,
            code,
            date_ms,
            body,
        })
    }
}

/// Sorts a client error into "could not reach" and "did not answer HTTP".
fn classify(url: &str, error: ureq::Error) -> FetchError {
    let url = url.to_string();
    match error {
        ureq::Error::Io(error) => FetchError::Unreachable { url, error },
        ureq::Error::Timeout(what) => FetchError::Unreachable {
            url,
            error: io::Error::new(io::ErrorKind::TimedOut, format!("timed out ({what})")),
        },
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => FetchError::Unreachable {
            url,
            error: io::Error::new(io::ErrorKind::NotFound, error.to_string()),
        },
        ureq::Error::BadUri(reason) => FetchError::BadReply {
            url,
            reason: format!("not a HOST:PORT address: {reason}"),
        },
        ureq::Error::BodyExceedsLimit(limit) => FetchError::BadReply {
            url,
            reason: format!("reply larger than {limit} bytes"),
        },
        ureq::Error::Protocol(e) => FetchError::BadReply {
            url,
            reason: format!("not an HTTP reply: {e}"),
        },
        other => FetchError::BadReply {
            url,
            reason: other.to_string(),
        },
    }
}

/// Strips what a person may paste along with the address.
pub fn host_port(addr: &str) -> &str {
    addr.trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
}

/// At most [`QUOTED_BODY_MAX_CHARS`] of a body, quoted, for an error.
pub fn quote_body(body: &[u8]) -> String {
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

/// An HTTP `Date` header in Unix milliseconds.
pub fn parse_http_date_ms(value: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// This machine's clock in Unix milliseconds.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_to_unix_ms() {
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date_ms("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599_000)
        );
        assert_eq!(parse_http_date_ms("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date_ms("yesterday"), None);
    }

    #[test]
    fn pasted_urls_become_addresses() {
        assert_eq!(host_port(" http://127.0.0.1:7380/ "), "127.0.0.1:7380");
        assert_eq!(host_port("[::1]:7380"), "[::1]:7380");
    }

    #[test]
    fn errors_quote_at_most_a_line_of_the_body() {
        let long = vec![b'x'; 1000];
        let quoted = quote_body(&long);
        assert!(
            quoted.chars().count() <= QUOTED_BODY_MAX_CHARS + 3,
            "{quoted}"
        );
        assert!(quoted.ends_with("…\""), "{quoted}");
    }
}
