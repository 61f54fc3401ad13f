//! Configuration of a [`crate::Log`] and the fault-injection hook.
//!
//! The fault injector lives in the options (rather than behind `cfg(test)`) so that
//! integration tests and simulations outside this crate can make the real writer
//! fail on purpose and check that it poisons itself.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Default segment size: 64 MiB.
pub const SEGMENT_MAX_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest accepted `segment_max_bytes`. Small values are useful in tests.
pub const SEGMENT_MAX_BYTES_MIN: u64 = 1024;
/// Largest accepted `segment_max_bytes`: 16 GiB.
pub const SEGMENT_MAX_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// When [`crate::Log`] asks the kernel to put written records on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every [`crate::Log::commit`] fdatasyncs before it returns: an acknowledged
    /// write survives power loss. Appending many records and committing once
    /// (group commit) amortizes the cost.
    #[default]
    Always,
    /// `commit` only hands records to the OS; the server calls
    /// [`crate::Log::sync`] once a second, so power loss can lose about a second.
    Everysec,
    /// `commit` only hands records to the OS; the kernel decides when to write back.
    No,
}

impl FsyncPolicy {
    /// The configuration spelling: `always`, `everysec` or `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Everysec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of `always`, `everysec`, `no`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync policy `{0}`: expected `always`, `everysec` or `no`")]
pub struct ParseFsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    /// Parses the Redis `appendfsync` spellings, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::Everysec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(ParseFsyncPolicyError(s.to_owned())),
        }
    }
}

/// Options for [`crate::Log::open`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment is sealed and a new one started once it holds at least this many
    /// bytes (header included). Must lie in
    /// [`SEGMENT_MAX_BYTES_MIN`]`..=`[`SEGMENT_MAX_BYTES_MAX`]. A single record larger
    /// than this still goes into one segment.
    pub segment_max_bytes: u64,
    /// When commits are made durable.
    pub fsync: FsyncPolicy,
    /// Makes writes or fsyncs fail on demand; inert unless a test arms it.
    pub faults: FaultInjector,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_max_bytes: SEGMENT_MAX_BYTES_DEFAULT,
            fsync: FsyncPolicy::default(),
            faults: FaultInjector::default(),
        }
    }
}

impl LogOptions {
    pub(crate) fn validate(&self) -> Result<(), crate::LogError> {
        if !(SEGMENT_MAX_BYTES_MIN..=SEGMENT_MAX_BYTES_MAX).contains(&self.segment_max_bytes) {
            return Err(crate::LogError::InvalidOptions {
                reason: format!(
                    "segment_max_bytes is {} but must lie between {} and {}",
                    self.segment_max_bytes, SEGMENT_MAX_BYTES_MIN, SEGMENT_MAX_BYTES_MAX
                ),
            });
        }
        Ok(())
    }
}

/// A switchboard that makes the log's writes or fsyncs fail, for tests.
///
/// Clones share state, so a test keeps one clone and hands another to the log
/// through [`LogOptions::faults`]. Segment writes and fsyncs of segments and of the
/// directory go through it; reads and snapshot files do not.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    inner: Arc<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    /// Bytes that may still be written before writes fail; `u64::MAX` means no limit.
    write_budget_bytes: AtomicU64,
    fail_fsync: AtomicBool,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            write_budget_bytes: AtomicU64::new(u64::MAX),
            fail_fsync: AtomicBool::new(false),
        }
    }
}

impl FaultInjector {
    /// A disarmed injector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `bytes` more bytes be written, then fails. The write that crosses the
    /// limit writes its first bytes up to the limit and then reports an error, the
    /// way a full disk produces a short write.
    pub fn fail_writes_after_bytes(&self, bytes: u64) {
        self.inner
            .write_budget_bytes
            .store(bytes.min(u64::MAX - 1), Ordering::SeqCst);
    }

    /// Makes every fsync fail (`true`) or succeed again (`false`).
    pub fn fail_fsyncs(&self, fail: bool) {
        self.inner.fail_fsync.store(fail, Ordering::SeqCst);
    }

    /// Disarms both faults.
    pub fn clear(&self) {
        self.inner
            .write_budget_bytes
            .store(u64::MAX, Ordering::SeqCst);
        self.inner.fail_fsync.store(false, Ordering::SeqCst);
    }

    /// How many of `wanted` bytes may be written, and whether the write must then
    /// fail. Consumes budget.
    pub(crate) fn admit_write(&self, wanted: usize) -> (usize, bool) {
        let wanted_u64 = u64::try_from(wanted).unwrap_or(u64::MAX);
        let mut admitted = wanted;
        let mut fail = false;
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self.inner.write_budget_bytes.fetch_update(
            Ordering::SeqCst,
            Ordering::SeqCst,
            |budget| {
                if budget == u64::MAX {
                    admitted = wanted;
                    fail = false;
                    Some(budget)
                } else if budget >= wanted_u64 {
                    admitted = wanted;
                    fail = false;
                    Some(budget - wanted_u64)
                } else {
                    // budget < wanted, so it fits in usize.
                    admitted = usize::try_from(budget).unwrap_or(0);
                    fail = true;
                    Some(0)
                }
            },
        );
        (admitted, fail)
    }

    pub(crate) fn check_fsync(&self) -> io::Result<()> {
        if self.inner.fail_fsync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_redis_spellings() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!("everysec".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Everysec));
        assert_eq!("no".parse::<FsyncPolicy>(), Ok(FsyncPolicy::No));
        assert_eq!("EverySec".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Everysec));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        for policy in [FsyncPolicy::Always, FsyncPolicy::Everysec, FsyncPolicy::No] {
            assert_eq!(policy.to_string().parse::<FsyncPolicy>(), Ok(policy));
        }
    }

    #[test]
    fn write_budget_admits_prefix_then_fails() {
        let faults = FaultInjector::new();
        assert_eq!(faults.admit_write(10), (10, false));
        faults.fail_writes_after_bytes(15);
        assert_eq!(faults.admit_write(10), (10, false));
        assert_eq!(faults.admit_write(10), (5, true));
        assert_eq!(faults.admit_write(10), (0, true));
        faults.clear();
        assert_eq!(faults.admit_write(10), (10, false));
    }

    #[test]
    fn segment_size_bounds_are_enforced() {
        let mut opts = LogOptions::default();
        assert!(opts.validate().is_ok());
        opts.segment_max_bytes = SEGMENT_MAX_BYTES_MIN - 1;
        assert!(opts.validate().is_err());
        opts.segment_max_bytes = SEGMENT_MAX_BYTES_MAX + 1;
        assert!(opts.validate().is_err());
    }
}
