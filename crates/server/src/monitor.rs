//! MONITOR: connections that receive every command the region's clients
//! run afterwards, one line each in Redis's format
//! (`+1700000000.123456 [0 127.0.0.1:12345] "set" "k" "v"`).
//!
//! Lines are fed where client commands run (`dispatch::run`, once the
//! checks passed, and EXEC for the commands it runs) and where a script
//! calls one (`scripting::ScriptHost::call`, shown as `[0 lua]`). Each monitor has a
//! bounded channel (`Monitors`, a leaf lock); a monitor that falls
//! [`FEED_QUEUE_MAX`] lines behind is disconnected, as Redis drops a
//! replica past its output buffer limit. While nobody monitors, feeding
//! costs one atomic load.
//!
//! Only commands run here are shown: peers' ops arrive as effects, not
//! commands, and are not.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use meridian_resp::Frame;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::cmd::spec::{Ctx, Spec};
use crate::shared::Shared;

/// Lines waiting for a slow monitor before it is disconnected.
pub const FEED_QUEUE_MAX: usize = 4096;

/// A monitor's end of its channel: whole RESP lines.
pub type Feed = mpsc::Receiver<Bytes>;

#[derive(Default)]
pub struct Monitors {
    count: AtomicUsize,
    feeds: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
}

impl Monitors {
    fn start(&self, client: u64) -> Feed {
        let (tx, rx) = mpsc::channel(FEED_QUEUE_MAX);
        let mut feeds = self.feeds.lock();
        feeds.insert(client, tx);
        self.count.store(feeds.len(), Ordering::Release);
        rx
    }

    /// The client stops monitoring (RESET, or it left).
    pub fn stop(&self, client: u64) {
        let mut feeds = self.feeds.lock();
        feeds.remove(&client);
        self.count.store(feeds.len(), Ordering::Release);
    }

    fn send(&self, line: Bytes) {
        let mut feeds = self.feeds.lock();
        // A full channel drops its sender: the connection sees its feed
        // close and disconnects.
        feeds.retain(|_, tx| tx.try_send(line.clone()).is_ok());
        self.count.store(feeds.len(), Ordering::Release);
    }

    fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }
}

/// MONITOR. A second MONITOR on the same connection is ignored without a
/// reply, as in Redis (the spec's replies are a list, empty then).
pub fn monitor_command(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    if ctx.client.in_exec {
        return Frame::error("ERR MONITOR isn't allowed for DENY BLOCKING client");
    }
    if ctx.client.monitor {
        return Frame::Array(Vec::new());
    }
    ctx.client.monitor = true;
    ctx.client.monitor_feed = Some(ctx.shared.monitors.start(ctx.client.id));
    Frame::Array(vec![Frame::ok()])
}

/// Before a client's command runs: feeds it now if Redis shows it before
/// it runs (scripts, so their line comes before the commands they call),
/// and says whether [`feed`] must show it after it ran (every other
/// command, as Redis shows it once done: RESET is not shown to the monitor
/// it ends). A blocked command's retry is not shown again.
pub fn feed_before(shared: &Shared, client: &Client, spec: &Spec, args: &[Bytes]) -> bool {
    if !shared.monitors.active() || client.block.is_some() {
        return false;
    }
    let script = matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    );
    if script {
        feed(shared, client, spec, args);
    }
    !script
}

/// Feeds a client's command to the monitors, unless Redis hides it
/// (administrative commands).
pub fn feed(shared: &Shared, client: &Client, spec: &Spec, args: &[Bytes]) {
    if !shared.monitors.active() {
        return;
    }
    if crate::cmd::redis_meta::has_flag(spec.name, "admin") {
        return;
    }
    shared.monitors.send(line(&client.addr.to_string(), args));
}

/// Feeds a command a script called (`[0 lua]`).
pub fn feed_script(shared: &Shared, args: &[Bytes]) {
    if shared.monitors.active() {
        shared.monitors.send(line("lua", args));
    }
}

/// Whether a monitoring connection is refused `spec`: as a replica in
/// Redis, it may not touch the keyspace.
pub fn refused(client: &Client, spec: &Spec) -> Option<Frame> {
    if !client.monitor {
        return None;
    }
    let keyspace = spec.flags.write
        || crate::cmd::redis_meta::get(spec.name).is_some_and(|m| {
            m.flags()
                .any(|f| matches!(f, "readonly" | "write" | "may_replicate"))
        });
    keyspace.then(|| Frame::error("ERR Replica can't interact with the keyspace"))
}

/// One line: time, database and source, then each argument quoted as
/// Redis's `sdscatrepr` quotes it, passwords redacted.
fn line(source: &str, args: &[Bytes]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = format!("+{}.{:06} [0 {source}]", now.as_secs(), now.subsec_micros());
    let redacted = redacted_from(args);
    for (i, arg) in args.iter().enumerate() {
        out.push(' ');
        if redacted.contains(&i) {
            out.push_str("\"(redacted)\"");
        } else {
            quote(&mut out, arg);
        }
    }
    out.push_str("\r\n");
    Bytes::from(out)
}

/// The positions Redis redacts: AUTH's arguments, HELLO's AUTH pair.
fn redacted_from(args: &[Bytes]) -> Vec<usize> {
    let name = &args[0];
    if name.eq_ignore_ascii_case(b"auth") {
        return (1..args.len()).collect();
    }
    if name.eq_ignore_ascii_case(b"hello") {
        if let Some(at) = args.iter().position(|a| a.eq_ignore_ascii_case(b"auth")) {
            return (at + 1..(at + 3).min(args.len())).collect();
        }
    }
    Vec::new()
}

fn quote(out: &mut String, arg: &[u8]) {
    out.push('"');
    for &b in arg {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&[u8]]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
    }

    #[test]
    fn lines_quote_as_redis_and_redact_passwords() {
        let l = line("127.0.0.1:5", &args(&[b"set", b"k\"\n", b"\x01v"]));
        let text = std::str::from_utf8(&l).unwrap();
        assert!(text.starts_with('+'), "{text}");
        assert!(
            text.ends_with(" [0 127.0.0.1:5] \"set\" \"k\\\"\\n\" \"\\x01v\"\r\n"),
            "{text}"
        );
        let l = line("lua", &args(&[b"auth", b"user", b"secret"]));
        assert!(std::str::from_utf8(&l)
            .unwrap()
            .ends_with("[0 lua] \"auth\" \"(redacted)\" \"(redacted)\"\r\n"));
        let l = line(
            "a",
            &args(&[b"hello", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"]),
        );
        assert!(std::str::from_utf8(&l).unwrap().ends_with(
            "\"hello\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
        ));
    }
}
