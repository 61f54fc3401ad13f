//! A short `meridian chaos` run: three regions and a witness as real
//! processes under random partitions, kill -9, restarts and clock skew,
//! with the history checked offline. The long run is recorded in
//! bench/RESULTS.md; this one proves the harness works end to end.

use std::process::Command;

/// The seed of this run; a failure prints it with the harness's output.
const SEED: u64 = 20_261_127;

#[test]
fn chaos_run_with_faults_finds_no_anomalies() {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args([
            "chaos",
            "--duration",
            "20",
            "--fault-interval-ms",
            "1000-2000",
            "--seed",
            &SEED.to_string(),
        ])
        .env_remove("MERIDIAN_LOG")
        .output()
        .expect("running meridian chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "meridian chaos --seed {SEED} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("chaos: "))
        .unwrap_or_else(|| panic!("no summary line (seed {SEED}):\n{stdout}"));
    let number = |name: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {summary:?}"))
    };
    assert_eq!(number("seed"), SEED);
    assert_eq!(number("anomalies"), 0, "{stdout}");
    assert!(number("ops") > 0, "{stdout}");
    assert!(number("faults") > 0, "{stdout}");
    // The stream, bitmap and bitfield workloads ran and were checked.
    // Report lines `  <check> <count>`; a name ending in `-` is a prefix.
    let checked = |name: &str| -> u64 {
        stdout
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let check = words.next()?;
                let count = words.next()?.parse::<u64>().ok()?;
                let hit = match name.strip_suffix('-') {
                    Some(prefix) => check.starts_with(prefix),
                    None => check == name,
                };
                hit.then_some(count)
            })
            .sum()
    };
    for check in [
        "stream-acked-entry-present",
        "stream-id-unique",
        "bitmap-acked-bit-set",
        "bitfield-",
    ] {
        assert!(
            checked(check) > 0,
            "no {check} assertion (seed {SEED}):\n{stdout}"
        );
    }
}
