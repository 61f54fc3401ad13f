//! CLIENT PAUSE and CLIENT UNPAUSE: while a pause lasts, client commands
//! it covers (ALL: every command; WRITE: commands that may write) wait
//! before they run, as Redis postpones them, and run once it ends.
//!
//! A waiting connection holds no lock: `conn.rs` checks [`Pause::holds`]
//! (one atomic load while no pause is set) as it parses, runs what came
//! before, then waits in [`wait_out`]. Only this region's clients pause:
//! peers' ops keep applying here, and this region keeps shipping, so a
//! pause is not a way to freeze the cluster's data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::shared::Shared;

/// What a pause holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Commands that may write (Redis's `write` and `may_replicate`).
    Write,
    /// Every command.
    All,
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    until: Instant,
}

/// The region's pause (a leaf lock), with an atomic that lets the command
/// path skip it while none is set.
pub struct Pause {
    set: AtomicBool,
    state: Mutex<Option<State>>,
    /// Bumped when a pause is set or lifted, so waiting clients look again.
    changed: watch::Sender<u64>,
}

impl Default for Pause {
    fn default() -> Pause {
        Pause {
            set: AtomicBool::new(false),
            state: Mutex::new(None),
            changed: watch::channel(0).0,
        }
    }
}

impl Pause {
    /// CLIENT PAUSE: the mode replaces the current one and the end is the
    /// later of the two, as in Redis.
    pub fn pause(&self, mode: Mode, timeout: Duration) {
        let until = Instant::now() + timeout;
        {
            let mut state = self.state.lock();
            let until = state.map_or(until, |s| s.until.max(until));
            *state = Some(State { mode, until });
            self.set.store(true, Ordering::Release);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// CLIENT UNPAUSE.
    pub fn unpause(&self) {
        {
            *self.state.lock() = None;
            self.set.store(false, Ordering::Release);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The pause in force now, if one is.
    fn current(&self) -> Option<State> {
        if !self.set.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.state.lock();
        match *state {
            Some(s) if s.until > Instant::now() => Some(s),
            _ => {
                *state = None;
                self.set.store(false, Ordering::Release);
                None
            }
        }
    }

    /// Whether `args` must wait for the pause to end before running. EXEC
    /// under a WRITE pause is held until its queue is known
    /// (`queue_known`), then only if the queue may write.
    pub fn holds(&self, client: &Client, args: &[Bytes], queue_known: bool) -> bool {
        // Redis never pauses replicas; a MONITOR client is one there.
        if client.monitor {
            return false;
        }
        match self.current() {
            None => false,
            Some(State {
                mode: Mode::All, ..
            }) => true,
            Some(State {
                mode: Mode::Write, ..
            }) => {
                if args[0].eq_ignore_ascii_case(b"exec") {
                    return !queue_known
                        || client
                            .multi
                            .as_ref()
                            .is_some_and(|q| q.iter().any(|a| may_write(a)));
                }
                may_write(args)
            }
        }
    }
}

/// Commands Redis's WRITE pause holds: writes, and those that may
/// replicate (scripts, PUBLISH…).
fn may_write(args: &[Bytes]) -> bool {
    let Some(spec) = crate::cmd::spec::lookup(crate::cmd::table(), &args[0]) else {
        return false;
    };
    spec.flags.write || spec.redis_flags.may_replicate
}

/// Waits, with nothing locked, until no pause holds `args`.
pub async fn wait_out(shared: &Shared, client: &Client, args: &[Bytes]) {
    loop {
        let mut changed = shared.pause.changed.subscribe();
        if !shared.pause.holds(client, args, true) {
            return;
        }
        let Some(until) = shared.pause.current().map(|s| s.until) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = changed.changed() => {}
        }
    }
}
