//! `meridian demo` end to end: three real regions behind the WAN emulator,
//! a partition and a heal, in a short run. A failing run prints the demo's
//! whole output, which names its seed (`--seed` replays the workload).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Temp dirs of a demo run are named `meridian-demo-<its pid>-<random>`.
fn demo_dirs_left(pid: u32) -> Vec<String> {
    let prefix = format!("meridian-demo-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn short_demo_converges_with_exact_counters_and_cleans_up() {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--seconds", "8"])
        .env_remove("MERIDIAN_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting meridian demo");
    let pid = child.id();
    let output = child.wait_with_output().expect("waiting for meridian demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        output.status.success(),
        "demo exited with {}\n{context}",
        output.status
    );
    for line in [
        "converged",
        "all equal to the sum of acknowledged increments ✓",
        "digests equal in every region ✓",
        "present in all 3 regions ✓",
        "RESULT: PASS",
    ] {
        assert!(stdout.contains(line), "report lacks {line:?}\n{context}");
    }
    assert!(
        demo_dirs_left(pid).is_empty(),
        "temp dirs left behind: {:?}",
        demo_dirs_left(pid)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an 8-second demo took {:?}",
        started.elapsed()
    );
}

#[test]
fn interrupted_demo_stops_its_regions_and_removes_its_temp_dir() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--seconds", "30"])
        .env_remove("MERIDIAN_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting meridian demo");
    let pid = child.id();
    let mut region_pids = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("reading the demo's output");
        // "           eu-west     resp 127.0.0.1:… http 127.0.0.1:… pid 1234"
        if let Some(p) = line.split(" pid ").nth(1) {
            region_pids.push(p.trim().parse::<u32>().expect("region pid"));
        }
        if line.contains("writing in every region") {
            break;
        }
    }
    assert_eq!(
        region_pids.len(),
        3,
        "the demo should list three region pids"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("waiting for meridian demo");
    assert!(!status.success(), "an interrupted demo must not exit 0");
    for p in region_pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "region process {p} still running after the demo stopped"
        );
    }
    assert!(
        demo_dirs_left(pid).is_empty(),
        "temp dirs left behind: {:?}; output after the signal: {rest:?}",
        demo_dirs_left(pid)
    );
}
