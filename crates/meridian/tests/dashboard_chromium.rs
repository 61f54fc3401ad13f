//! The live dashboard in a real browser. Headless Chromium loads the page a
//! region serves at `/` while a three-region cluster runs; the page must
//! show the three regions with their links up, and once one region is cut
//! off by the fault proxy, that region's link as down. Screenshots of both
//! loads are saved as test artifacts (the path is printed).
//!
//! Chromium is not installed by the test: `scripts/test` installs it, and
//! the test fails, naming the package, when it is missing.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use meridian_netem::LinkConditions;

const CHROMIUM: &str = "chromium";
/// One browser run: start-up, the page's polls, the dump and the screenshot.
const BROWSER_RUN_TIMEOUT: Duration = Duration::from_secs(25);
/// Page time the browser lets pass before dumping: enough for a few of the
/// page's one-second polls (the browser skips idle time, so it is not
/// wall-clock time).
const VIRTUAL_TIME_BUDGET_MS: u64 = 6_000;
/// How long the cluster may take to show a change in `/v1/status`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);
const WINDOW_SIZE: &str = "1400,1080";

#[test]
fn dashboard_shows_three_regions_and_a_cut_link() {
    let version = chromium_version();
    println!("using {version}");
    let started = Instant::now();
    let cluster = Cluster::start(&["ra", "rb", "rc"], LinkConditions::wan(5), &[], 7);
    let ra = cluster.regions[0].http;
    wait_for_status(ra, "every link up", |s| {
        peers(s).iter().all(|p| link_up(p)) && peers(s).len() == 2
    });

    // One conflict for the journal table: ra and rb write the same key
    // while ra is cut off.
    cluster.mesh.partition("ra").unwrap();
    for (name, value) in [("ra", "basket-from-ra"), ("rb", "basket-from-rb")] {
        let reply = cluster.conn(name).cmd(&["SET", "cart:42", value]);
        assert!(!reply.is_error(), "{reply:?}");
    }
    cluster.mesh.heal_all();
    wait_for_status(ra, "links back up and the conflict journaled", |s| {
        peers(s).iter().all(|p| link_up(p)) && s["conflicts"]["retained"].as_u64() >= Some(1)
    });

    // A light steady workload so the throughput chart has something to show.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let mut conn = cluster.conn("rb");
        std::thread::spawn(move || {
            let mut i = 0u64;
            while writing.load(Ordering::Relaxed) {
                conn.cmd(&["INCR", &format!("visits:{}", i % 16)]);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let artifacts = artifacts_dir();
    let url = format!("http://{ra}/");
    let healthy = artifacts.join("dashboard-healthy.png");
    let dom = load_until(&url, &healthy, "three regions, both links up", |dom| {
        let ok = attr(dom, "body", "data-regions").as_deref() == Some("3")
            && ["ra", "rb", "rc"]
                .iter()
                .all(|r| tag_with(dom, "data-region", r).is_some())
            && ["rb", "rc"]
                .iter()
                .all(|p| edge_link(dom, p).as_deref() == Some("up"));
        ok.then_some(())
    });
    let ra_node = tag_with(&dom, "data-region", "ra").unwrap();
    assert_eq!(
        attr_in(ra_node, "data-self").as_deref(),
        Some("true"),
        "{ra_node}"
    );
    assert!(
        dom.contains("cart:42") && dom.contains("basket-from-rb"),
        "the journal table lacks the conflict on cart:42"
    );
    println!("healthy cluster: {}", healthy.display());

    cluster.mesh.partition("rc").unwrap();
    wait_for_status(ra, "rc's link down", |s| {
        peers(s).iter().any(|p| {
            p["id"] == "rc" && p["link"]["outbound"] != "up" && p["link"]["inbound"] != "up"
        })
    });
    let cut = artifacts.join("dashboard.png");
    load_until(&url, &cut, "rc's link not up, rb's still up", |dom| {
        let rc = edge_link(dom, "rc")?;
        let ok = rc != "up" && edge_link(dom, "rb").as_deref() == Some("up");
        ok.then_some(())
    });
    println!("rc cut off: {}", cut.display());

    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    println!("whole test took {:?}", started.elapsed());
}

/// `chromium --version`, or a failure that says how to install it.
fn chromium_version() -> String {
    match Command::new(CHROMIUM).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "`{CHROMIUM} --version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{CHROMIUM}` ({e}): this test needs headless Chromium; \
             scripts/test installs it (Debian package `chromium`)"
        ),
    }
}

/// Where screenshots go: a fixed place under the target directory that
/// survives the test run.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn http_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn peers(status: &serde_json::Value) -> Vec<&serde_json::Value> {
    status["regions"]
        .as_array()
        .map(|rs| rs.iter().filter(|r| r["self"] == false).collect())
        .unwrap_or_default()
}

fn link_up(peer: &serde_json::Value) -> bool {
    peer["link"]["outbound"] == "up" && peer["link"]["inbound"] == "up"
}

fn wait_for_status(addr: SocketAddr, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + STATUS_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(status) = http_json(addr, "/v1/status") {
            if done(&status) {
                return;
            }
            last = Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/v1/status of {addr} did not show {what} within {STATUS_TIMEOUT:?}: {last:#?}");
}

/// Loads `url` in headless Chromium until `check` accepts the DOM (the
/// browser is slow to start on a loaded machine, so a load whose page had
/// not polled yet is retried), saving a screenshot of the last load.
fn load_until(
    url: &str,
    screenshot: &Path,
    what: &str,
    check: impl Fn(&str) -> Option<()>,
) -> String {
    let deadline = Instant::now() + BROWSER_RUN_TIMEOUT * 2;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let dom = chromium_dump(url, screenshot);
        if check(&dom).is_some() {
            assert!(
                screenshot.exists(),
                "Chromium saved no screenshot at {}",
                screenshot.display()
            );
            return dom;
        }
        if Instant::now() >= deadline || attempts >= 3 {
            panic!(
                "the dashboard at {url} did not show {what} after {attempts} loads; last DOM:\n{dom}"
            );
        }
    }
}

/// One headless run: the DOM after the page's polls, and a screenshot.
fn chromium_dump(url: &str, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let _ = std::fs::remove_file(screenshot);
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={WINDOW_SIZE}"))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning chromium");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, BROWSER_RUN_TIMEOUT);
    let dom = stdout.join().unwrap();
    let log = stderr.join().unwrap();
    match status {
        Some(s) if s.success() => dom,
        Some(s) => panic!("chromium exited with {s}:\n{log}"),
        None => panic!("chromium did not finish within {BROWSER_RUN_TIMEOUT:?}:\n{log}"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Waits for `child` at most `timeout`; kills it and returns `None` after.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The first start tag in `dom` with `name="value"`.
fn tag_with<'a>(dom: &'a str, name: &str, value: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"{value}\"");
    let at = dom.find(&needle)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

/// The value of attribute `name` in one start tag.
fn attr_in(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    let len = tag[at..].find('"')?;
    Some(tag[at..at + len].to_string())
}

/// Attribute `name` of the first `<element ...>` start tag.
fn attr(dom: &str, element: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("<{element} "))?;
    let end = at + dom[at..].find('>')?;
    attr_in(&dom[at..=end], name)
}

/// The link state the graph draws for the edge to `peer`.
fn edge_link(dom: &str, peer: &str) -> Option<String> {
    attr_in(tag_with(dom, "data-peer", peer)?, "data-link")
}
