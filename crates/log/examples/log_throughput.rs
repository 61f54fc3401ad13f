//! Measures append+commit throughput under `fsync=always` and recovery time.
//!
//! Run: `cargo run --release -p meridian-log --example log_throughput [DIR]`
//!
//! Without DIR everything goes to a temporary directory that is removed at exit.
//! With DIR the logs are kept there, and a second run reuses the recovery log, so
//! recovery can be timed with a cold page cache
//! (`sync; echo 3 > /proc/sys/vm/drop_caches` between runs).

use std::path::{Path, PathBuf};
use std::time::Instant;

use meridian_log::{FsyncPolicy, Log, LogError, LogOptions};

const PAYLOAD_BYTES: usize = 60;
const RECOVERY_RECORDS: u64 = 2_000_000;

fn main() -> Result<(), LogError> {
    let tmp = tempfile::tempdir().map_err(|e| LogError::Io {
        op: "creating",
        path: "a temporary directory".into(),
        source: e,
    })?;
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let payload = [0xabu8; PAYLOAD_BYTES];

    let dir = root.join("recovery");
    let opts = LogOptions {
        fsync: FsyncPolicy::No,
        ..LogOptions::default()
    };
    let reuse = dir.exists();
    for attempt in 1..=3 {
        if !reuse {
            break;
        }
        time_recovery(&dir, &opts, attempt)?;
    }

    for batch in [1u64, 10, 100] {
        let dir = root.join(format!("always-batch-{batch}"));
        let _ = std::fs::remove_dir_all(&dir);
        let records = if batch == 1 { 2_000 } else { 200 * batch };
        let per_s = append_commit(&dir, &payload, records, batch)?;
        println!(
            "fsync=always, batch {batch:>3}: {records:>7} records, {:>9.0} records/s, {:>7.0} commits/s",
            per_s,
            per_s / batch as f64
        );
    }

    if reuse {
        return Ok(());
    }
    let (mut log, _) = Log::open(&dir, opts.clone())?;
    let start = Instant::now();
    for _ in 0..RECOVERY_RECORDS {
        log.append(&payload)?;
    }
    log.close()?;
    println!(
        "fsync=no: wrote {RECOVERY_RECORDS} records of {PAYLOAD_BYTES} bytes in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    for attempt in 1..=3 {
        time_recovery(&dir, &opts, attempt)?;
    }
    Ok(())
}

/// Times `Log::open` on `dir`, then a full read by a reader.
fn time_recovery(dir: &Path, opts: &LogOptions, attempt: u32) -> Result<(), LogError> {
    let start = Instant::now();
    let (log, recovery) = Log::open(dir, opts.clone())?;
    let open_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut read = 0u64;
    for record in log.reader(1)? {
        record?;
        read += 1;
    }
    println!(
        "recovery #{attempt}: {open_s:.3} s to open ({recovery}); a reader read {read} records in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Appends `records` records, committing every `batch`; returns records/s.
fn append_commit(dir: &Path, payload: &[u8], records: u64, batch: u64) -> Result<f64, LogError> {
    let opts = LogOptions {
        fsync: FsyncPolicy::Always,
        ..LogOptions::default()
    };
    let (mut log, _) = Log::open(dir, opts)?;
    let start = Instant::now();
    for i in 0..records {
        log.append(payload)?;
        if (i + 1) % batch == 0 {
            log.commit()?;
        }
    }
    log.commit()?;
    Ok(records as f64 / start.elapsed().as_secs_f64())
}
