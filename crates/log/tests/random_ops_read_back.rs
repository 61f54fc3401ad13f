//! Random sequences of appends, commits, syncs, compactions, clean reopens and
//! simulated crashes: whatever a reader sees must equal what was appended.
//! proptest prints the failing sequence, shrunk, and stores its seed under
//! `proptest-regressions/` so the failure replays.

mod common;

use std::mem;

use common::*;
use meridian_log::Log;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Commit,
    Sync,
    /// Drop the log (which hands buffered records to the OS) and reopen it.
    Reopen,
    /// Lose everything not yet written to the OS, as a process crash would.
    Crash,
    /// Compact up to this fraction (per mille) of the last LSN.
    TruncatePrefix(u16),
    /// Read from this fraction (per mille) of the retained range.
    ReadFrom(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Append),
        4 => Just(Op::Commit),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0u16..=1000).prop_map(Op::TruncatePrefix),
        2 => (0u16..=1000).prop_map(Op::ReadFrom),
    ]
}

const SEGMENT_MAX_BYTES: u64 = 1024;

/// Checks that a reader from `from` sees exactly the flushed model records.
fn check_read(log: &Log, model: &[Vec<u8>], from: u64) -> Result<(), TestCaseError> {
    let flushed = log.flushed_lsn();
    let read = log
        .reader(from)
        .map_err(|e| TestCaseError::fail(format!("reader({from}): {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TestCaseError::fail(format!("read from {from}: {e}")))?;
    let expected: Vec<(u64, Vec<u8>)> = (from..=flushed)
        .map(|lsn| (lsn, model[(lsn - 1) as usize].clone()))
        .collect();
    prop_assert_eq!(read, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_ops_read_back_what_was_appended(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), small_segments(SEGMENT_MAX_BYTES));
        // model[lsn - 1] is the payload of lsn; it only shrinks on a crash.
        let mut model: Vec<Vec<u8>> = Vec::new();

        for op in ops {
            match op {
                Op::Append(p) => {
                    let lsn = log.append(&p).expect("append");
                    prop_assert_eq!(lsn, model.len() as u64 + 1);
                    model.push(p);
                }
                Op::Commit => {
                    prop_assert_eq!(log.commit().expect("commit"), model.len() as u64);
                }
                Op::Sync => {
                    prop_assert_eq!(log.sync().expect("sync"), model.len() as u64);
                    prop_assert_eq!(log.synced_lsn(), model.len() as u64);
                }
                Op::Reopen | Op::Crash => {
                    let oldest = log.oldest_lsn();
                    if matches!(op, Op::Crash) {
                        model.truncate(log.flushed_lsn() as usize);
                        mem::forget(log);
                    } else {
                        drop(log);
                    }
                    let (reopened, recovery) = open(dir.path(), small_segments(SEGMENT_MAX_BYTES));
                    log = reopened;
                    prop_assert_eq!(recovery.torn_tail, None);
                    prop_assert_eq!(recovery.next_lsn, model.len() as u64 + 1);
                    prop_assert_eq!(log.oldest_lsn(), oldest);
                    prop_assert_eq!(recovery.records, model.len() as u64 + 1 - oldest);
                }
                Op::TruncatePrefix(per_mille) => {
                    let upto = log.last_lsn() * u64::from(per_mille) / 1000;
                    let before = log.oldest_lsn();
                    log.truncate_prefix(upto).expect("truncate_prefix");
                    let oldest = log.oldest_lsn();
                    prop_assert!(oldest >= before);
                    // Nothing above `upto` may be gone.
                    prop_assert!(oldest <= upto.max(before - 1) + 1);
                }
                Op::ReadFrom(per_mille) => {
                    let oldest = log.oldest_lsn();
                    let span = log.flushed_lsn() + 1 - oldest;
                    let from = oldest + span * u64::from(per_mille) / 1000;
                    check_read(&log, &model, from)?;
                }
            }
            prop_assert!(log.synced_lsn() <= log.flushed_lsn());
            prop_assert!(log.flushed_lsn() <= log.last_lsn());
        }
        log.commit().expect("final commit");
        check_read(&log, &model, log.oldest_lsn())?;
    }
}
