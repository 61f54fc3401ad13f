//! The history of a chaos run: every client operation with its outcome, one
//! JSON object per line in `history.jsonl`, written by the workload and read
//! back by the checker.
//!
//! Causality between operations in different regions is not visible from
//! the outside, so every write is sent as the pipeline `MERIDIAN TOKEN`,
//! the write, `MERIDIAN TOKEN`. The first token is the region's version
//! vector before the write (a lower bound of what the write observed), the
//! second the vector just after it (so the write's own dot is at most that
//! vector's entry for its region, and above the first one's). See
//! [`Op::certainly_observed`] and [`Op::maybe_observed`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A version vector as the checker sees it: one sequence number per data
/// region, indexed like [`Header::regions`].
pub type Vv = Vec<u64>;

/// The first line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub seed: u64,
    /// The data regions, in index order (the witness holds no data).
    pub regions: Vec<String>,
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Cmd {
    Set {
        key: String,
        value: String,
    },
    Incrby {
        key: String,
        delta: i64,
    },
    Sadd {
        key: String,
        member: String,
    },
    Srem {
        key: String,
        member: String,
    },
    Hset {
        key: String,
        field: String,
        value: String,
    },
    Del {
        key: String,
    },
    Get {
        key: String,
    },
    Smembers {
        key: String,
    },
    Hgetall {
        key: String,
    },
    Rpush {
        key: String,
        value: String,
    },
    Lpush {
        key: String,
        value: String,
    },
    /// LPOP with a count: the reply lists what it took, front first.
    Lpop {
        key: String,
        count: u32,
    },
    /// RPOP with a count: the reply lists what it took, back first.
    Rpop {
        key: String,
        count: u32,
    },
    /// LRANGE of the whole list.
    Lrange {
        key: String,
    },
    /// XADD `*` of one entry whose field `v` holds `value`, unique to the
    /// run; the ID its reply names is recorded as the op's read.
    Xadd {
        key: String,
        value: String,
    },
    /// SETBIT to 1 of a bitmap only ever written so.
    Setbit {
        key: String,
        bit: u64,
    },
    /// BITFIELD `OVERFLOW WRAP INCRBY u<width> offset delta` of a field
    /// only ever written so.
    Bitfield {
        key: String,
        width: u8,
        offset: u64,
        delta: i64,
    },
}

impl Cmd {
    pub fn key(&self) -> &str {
        match self {
            Cmd::Set { key, .. }
            | Cmd::Incrby { key, .. }
            | Cmd::Sadd { key, .. }
            | Cmd::Srem { key, .. }
            | Cmd::Hset { key, .. }
            | Cmd::Del { key }
            | Cmd::Get { key }
            | Cmd::Smembers { key }
            | Cmd::Hgetall { key }
            | Cmd::Rpush { key, .. }
            | Cmd::Lpush { key, .. }
            | Cmd::Lpop { key, .. }
            | Cmd::Rpop { key, .. }
            | Cmd::Lrange { key }
            | Cmd::Xadd { key, .. }
            | Cmd::Setbit { key, .. }
            | Cmd::Bitfield { key, .. } => key,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Set { .. } => "SET",
            Cmd::Incrby { .. } => "INCRBY",
            Cmd::Sadd { .. } => "SADD",
            Cmd::Srem { .. } => "SREM",
            Cmd::Hset { .. } => "HSET",
            Cmd::Del { .. } => "DEL",
            Cmd::Get { .. } => "GET",
            Cmd::Smembers { .. } => "SMEMBERS",
            Cmd::Hgetall { .. } => "HGETALL",
            Cmd::Rpush { .. } => "RPUSH",
            Cmd::Lpush { .. } => "LPUSH",
            Cmd::Lpop { .. } => "LPOP",
            Cmd::Rpop { .. } => "RPOP",
            Cmd::Lrange { .. } => "LRANGE",
            Cmd::Xadd { .. } => "XADD",
            Cmd::Setbit { .. } => "SETBIT",
            Cmd::Bitfield { .. } => "BITFIELD",
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Cmd::Get { .. } | Cmd::Smembers { .. } | Cmd::Hgetall { .. } | Cmd::Lrange { .. }
        )
    }

    /// A write whose reply says what it removed (a pop), recorded as the
    /// op's [`Op::read`] when the reply arrived.
    pub fn is_pop(&self) -> bool {
        matches!(self, Cmd::Lpop { .. } | Cmd::Rpop { .. })
    }

    /// A write whose reply the checker needs (what a pop took, the ID an
    /// XADD took), recorded as the op's [`Op::read`] when it arrived.
    pub fn keeps_reply(&self) -> bool {
        self.is_pop() || matches!(self, Cmd::Xadd { .. })
    }

    /// The command as sent.
    pub fn args(&self) -> Vec<String> {
        let mut out = vec![self.name().to_string(), self.key().to_string()];
        match self {
            Cmd::Set { value, .. } => out.push(value.clone()),
            Cmd::Incrby { delta, .. } => out.push(delta.to_string()),
            Cmd::Sadd { member, .. } | Cmd::Srem { member, .. } => out.push(member.clone()),
            Cmd::Hset { field, value, .. } => out.extend([field.clone(), value.clone()]),
            Cmd::Rpush { value, .. } | Cmd::Lpush { value, .. } => out.push(value.clone()),
            Cmd::Lpop { count, .. } | Cmd::Rpop { count, .. } => out.push(count.to_string()),
            Cmd::Lrange { .. } => out.extend(["0".to_string(), "-1".to_string()]),
            Cmd::Xadd { value, .. } => out.extend(["*", "v", value].map(String::from)),
            Cmd::Setbit { bit, .. } => out.extend([bit.to_string(), "1".to_string()]),
            Cmd::Bitfield {
                width,
                offset,
                delta,
                ..
            } => out.extend([
                "OVERFLOW".to_string(),
                "WRAP".to_string(),
                "INCRBY".to_string(),
                format!("u{width}"),
                offset.to_string(),
                delta.to_string(),
            ]),
            Cmd::Del { .. } | Cmd::Get { .. } | Cmd::Smembers { .. } | Cmd::Hgetall { .. } => {}
        }
        out
    }
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A reply that is not an error.
    Ok,
    /// An error reply. Counted as "may have happened" by the checker, which
    /// never relies on an error having had no effect.
    Error,
    /// The connection died before the reply (the region was killed): the
    /// operation may or may not have happened, but not after `complete_us`.
    Indeterminate,
    /// No reply within the client's timeout: it may have happened at any
    /// time, even after `complete_us`.
    Timeout,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadValue {
    Nil,
    Text(String),
    Members(Vec<String>),
    Fields(BTreeMap<String, String>),
    /// A list's elements in order (LRANGE), or what a pop took, in the
    /// order of its reply.
    Elements(Vec<String>),
}

/// One operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    pub id: u64,
    pub client: u32,
    /// Index of the data region the client talked to.
    pub region: usize,
    #[serde(flatten)]
    pub cmd: Cmd,
    /// Microseconds since the run started, on the harness's monotonic clock:
    /// just before the command was written, and when its outcome was known.
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Outcome,
    /// Version vectors just before and just after a write (acknowledged
    /// writes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Vv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vv>,
    /// A read's answer, or what a pop returned (when its reply arrived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadValue>,
    /// An error reply's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    pub fn acked(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The latest moment this op can have taken effect.
    pub fn effect_deadline_us(&self) -> u64 {
        match self.outcome {
            Outcome::Timeout => u64::MAX,
            _ => self.complete_us,
        }
    }

    /// True when `self` certainly observed `earlier` (its causal context
    /// covers `earlier`'s dot), so an observed-remove `self` removed it and
    /// an overwrite by `self` replaced it. Both must be acknowledged: `self`
    /// observed at least its "before" vector, and `earlier`'s dot is at most
    /// its own "after" vector's entry for its region. Seqs of acknowledged
    /// (hence durable) ops are never reissued after a crash, so the bound
    /// holds across restarts.
    pub fn certainly_observed(&self, earlier: &Op) -> bool {
        match (&self.before, &earlier.after) {
            (Some(before), Some(after)) if self.acked() && earlier.acked() => {
                before[earlier.region] >= after[earlier.region]
            }
            _ => false,
        }
    }

    /// False only when `self` certainly did not observe `other`: it took
    /// effect before `other` was sent, or (both acknowledged) its vector
    /// just after it is below `other`'s dot, whose seq exceeds `other`'s
    /// "before" vector at its region.
    pub fn maybe_observed(&self, other: &Op) -> bool {
        if self.id == other.id || self.effect_deadline_us() < other.invoke_us {
            return false;
        }
        if let (Some(after), Some(before)) = (&self.after, &other.before) {
            if after[other.region] <= before[other.region] {
                return false;
            }
        }
        true
    }

    /// One line for anomaly reports.
    pub fn describe(&self, regions: &[String]) -> String {
        let region = regions.get(self.region).map_or("?", String::as_str);
        let mut s = format!(
            "#{} client {} @{} {} [{:.3}s..{}] {:?}",
            self.id,
            self.client,
            region,
            self.cmd.args().join(" "),
            self.invoke_us as f64 / 1e6,
            if self.complete_us == u64::MAX {
                "?".to_string()
            } else {
                format!("{:.3}s", self.complete_us as f64 / 1e6)
            },
            self.outcome
        );
        if let (Some(b), Some(a)) = (&self.before, &self.after) {
            s.push_str(&format!(" vv {b:?}->{a:?}"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" error {e:?}"));
        }
        if let Some(r) = &self.read {
            s.push_str(&format!(" read {r:?}"));
        }
        s
    }
}

/// Parses a `MERIDIAN TOKEN` reply (`region:seq,...`) into a [`Vv`];
/// regions not named are 0, names not in `regions` are refused.
pub fn parse_token(text: &str, regions: &[String]) -> Option<Vv> {
    let mut vv = vec![0; regions.len()];
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (name, seq) = pair.rsplit_once(':')?;
        let i = regions.iter().position(|r| r == name)?;
        vv[i] = seq.parse().ok()?;
    }
    Some(vv)
}

/// Appends records to `history.jsonl`.
pub struct HistoryWriter {
    out: BufWriter<std::fs::File>,
}

impl HistoryWriter {
    pub fn create(path: &Path, header: &Header) -> anyhow::Result<HistoryWriter> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = HistoryWriter {
            out: BufWriter::new(file),
        };
        serde_json::to_writer(&mut w.out, header)?;
        w.out.write_all(b"\n")?;
        Ok(w)
    }

    pub fn append(&mut self, op: &Op) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, op)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Reads a whole history file back.
pub fn read_history(path: &Path) -> anyhow::Result<(Header, Vec<Op>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let header: Header = serde_json::from_str(
        &lines
            .next()
            .context("empty history file")?
            .context("reading the history")?,
    )
    .context("history header")?;
    let mut ops = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line.context("reading the history")?;
        ops.push(serde_json::from_str(&line).with_context(|| format!("history line {}", n + 2))?);
    }
    Ok((header, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_into_region_indexed_vectors() {
        let regions = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(parse_token("a:3,c:7", &regions), Some(vec![3, 0, 7]));
        assert_eq!(parse_token("", &regions), Some(vec![0, 0, 0]));
        assert_eq!(parse_token("x:1", &regions), None);
    }
}
