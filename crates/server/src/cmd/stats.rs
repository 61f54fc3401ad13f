//! The counters INFO's `commandstats` and `errorstats` sections report,
//! kept as Redis keeps them:
//!
//! - per command, and per subcommand of a container (`client|kill`):
//!   `calls` (it ran), `usec` (time in its handler), `rejected_calls` (it
//!   was refused before running: arity, authentication, ACL, the Pub/Sub
//!   context, a poisoned log, a keyspace policy) and `failed_calls` (it ran
//!   and answered an error);
//! - per error code (the error's first word: `ERR`, `WRONGTYPE`, …), every
//!   error reply, including one to an unknown command.
//!
//! The counters live in [`crate::shared::Shared::cmdstats`], a leaf lock
//! taken for a few statements per command; CONFIG RESETSTAT clears them.

use std::collections::{BTreeMap, HashMap};

/// Distinct error codes tracked; replies with further codes still count in
/// `total_error_replies` but get no `errorstat_` line of their own, so a
/// client inventing error texts cannot grow this map without bound.
pub const ERROR_CODES_MAX: usize = 128;

/// Redis looks for the error code's end within this many bytes.
const ERROR_CODE_SCAN_BYTES: usize = 32;

/// One command's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// By lower-case full name (`get`, `client|kill`).
    commands: HashMap<String, CommandStat, foldhash::fast::RandomState>,
    /// By error code, in the order INFO lists them.
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn stat(&mut self, name: &str) -> &mut CommandStat {
        // Every command runs through here: the map hashes with foldhash,
        // and the name is copied only the first time the command runs.
        if !self.commands.contains_key(name) {
            self.commands
                .insert(name.to_string(), CommandStat::default());
        }
        self.commands.get_mut(name).expect("inserted above")
    }

    /// `name` ran for `usec`; `failed` when it answered an error.
    pub fn called(&mut self, name: &str, usec: u64, failed: bool) {
        let s = self.stat(name);
        s.calls += 1;
        s.usec = s.usec.saturating_add(usec);
        if failed {
            s.failed_calls += 1;
        }
    }

    /// `name` was refused before it could run.
    pub fn rejected(&mut self, name: &str) {
        self.stat(name).rejected_calls += 1;
    }

    /// An error reply with this text (without the leading `-`).
    pub fn error(&mut self, text: &str) {
        let code = error_code(text);
        if let Some(n) = self.errors.get_mut(code) {
            *n += 1;
        } else if self.errors.len() < ERROR_CODES_MAX {
            self.errors.insert(code.to_string(), 1);
        }
    }

    /// Commands that ran or were refused at least once, by name.
    pub fn commands(&self) -> Vec<(&str, CommandStat)> {
        let mut all: Vec<(&str, CommandStat)> = self
            .commands
            .iter()
            .map(|(n, s)| (n.as_str(), *s))
            .collect();
        all.sort_by_key(|(n, _)| *n);
        all
    }

    pub fn errors(&self) -> impl Iterator<Item = (&str, u64)> {
        self.errors.iter().map(|(c, n)| (c.as_str(), *n))
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&mut self) {
        self.commands.clear();
        self.errors.clear();
    }
}

/// An error's code as Redis finds it: the text before the first space
/// within the first 32 bytes, or `ERR` when there is none.
pub fn error_code(text: &str) -> &str {
    let head = &text.as_bytes()[..text.len().min(ERROR_CODE_SCAN_BYTES)];
    match head.iter().position(|&b| b == b' ') {
        Some(0) | None => "ERR",
        Some(end) => &text[..end],
    }
}

/// One INFO `commandstats` line's value, in Redis's format.
pub fn commandstat_line(s: &CommandStat) -> String {
    let per_call = if s.calls == 0 {
        0.0
    } else {
        s.usec as f64 / s.calls as f64
    };
    format!(
        "calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}",
        s.calls, s.usec, s.rejected_calls, s.failed_calls
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_found_as_redis_finds_them() {
        assert_eq!(error_code("ERR syntax error"), "ERR");
        assert_eq!(error_code("WRONGTYPE Operation against a key"), "WRONGTYPE");
        assert_eq!(error_code("NOSPACEHERE"), "ERR");
        assert_eq!(error_code(&format!("{} x", "A".repeat(40))), "ERR");
    }

    #[test]
    fn counters_add_up_and_reset() {
        let mut s = Stats::default();
        s.called("get", 3, false);
        s.called("get", 5, true);
        s.rejected("get");
        s.error("ERR wrong number of arguments for 'get' command");
        let get = s.commands()[0].1;
        assert_eq!(
            commandstat_line(&get),
            "calls=2,usec=8,usec_per_call=4.00,rejected_calls=1,failed_calls=1"
        );
        assert_eq!(s.errors().collect::<Vec<_>>(), [("ERR", 1)]);
        s.reset();
        assert!(s.commands().is_empty() && s.errors().next().is_none());
    }

    #[test]
    fn error_codes_are_bounded() {
        let mut s = Stats::default();
        for i in 0..ERROR_CODES_MAX + 10 {
            s.error(&format!("E{i} text"));
        }
        assert_eq!(s.errors().count(), ERROR_CODES_MAX);
    }
}
