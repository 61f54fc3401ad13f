//! Conflicts: two writes to the same register that had not observed each
//! other, resolved by discarding one value. Each is reported so the conflict
//! journal can keep the loser: nothing is lost silently.

use serde::{Deserialize, Serialize};

use crate::blob::Blob;
use crate::num::Displaced;
use crate::value::{Kind, Ttl};
use crate::vv::Tag;

/// Which merge rule resolved a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// Concurrent writes of a string, hash field or score: the larger tag wins.
    LastWriterWins,
    /// Concurrent TTLs: PERSIST beats any deadline, else the later deadline.
    LongestTtl,
    /// Concurrent writes of different types: the newest write's type is shown.
    TypeChange,
    /// Concurrent versions of a FUNCTION library (the key is the library's
    /// name, not a key of the keyspace): the larger tag is loaded.
    Library,
    /// A write of a BITFIELD field and increments of it (INCRBY under
    /// OVERFLOW WRAP) it had not observed: the increments are added on top
    /// of the written value, which readers no longer see as written.
    AddedOnTop,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::LastWriterWins => "lww",
            Rule::LongestTtl => "ttl-longest",
            Rule::TypeChange => "type-change",
            Rule::Library => "function-library",
            Rule::AddedOnTop => "incr-added-on-top",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub key: Blob,
    /// Hash field or sorted-set member, when the conflict is inside a key.
    pub sub: Option<Blob>,
    pub kind: Kind,
    pub rule: Rule,
    pub winner: Tag,
    pub loser: Tag,
    /// The discarded value, as the client wrote it.
    pub loser_value: Blob,
    /// The value readers see instead.
    pub winner_value: Blob,
}

impl Conflict {
    pub(crate) fn register(
        key: &[u8],
        sub: Option<&[u8]>,
        kind: Kind,
        d: Displaced<Blob>,
    ) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: sub.map(Blob::from),
            kind,
            rule: Rule::LastWriterWins,
            winner: d.winner.tag,
            loser: d.loser.tag,
            loser_value: d.loser.val,
            winner_value: d.winner.val,
        }
    }

    pub(crate) fn list_set(key: &[u8], d: crate::list::SetDisplaced) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: None,
            kind: Kind::List,
            rule: Rule::LastWriterWins,
            winner: d.winner.0,
            loser: d.loser.0,
            loser_value: d.loser.1,
            winner_value: d.winner.1,
        }
    }

    /// Two regions added the same explicit entry ID concurrently: `sub`
    /// is the ID, each value the entry's fields and values.
    pub(crate) fn stream_entry(
        key: &[u8],
        id: crate::stream::StreamId,
        winner: &crate::stream::Version,
        loser: &crate::stream::Version,
    ) -> Conflict {
        let shown = |v: &crate::stream::Version| {
            let mut out = Vec::new();
            for (i, f) in v.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(f);
            }
            Blob::from(out)
        };
        Conflict {
            key: Blob::from(key),
            sub: Some(Blob::from(id.to_string().as_str())),
            kind: Kind::Stream,
            rule: Rule::LastWriterWins,
            winner: winner.tag,
            loser: loser.tag,
            loser_value: shown(loser),
            winner_value: shown(winner),
        }
    }

    pub(crate) fn score(key: &[u8], member: &[u8], d: Displaced<f64>) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: Some(Blob::from(member)),
            kind: Kind::ZSet,
            rule: Rule::LastWriterWins,
            winner: d.winner.tag,
            loser: d.loser.tag,
            loser_value: Blob::from(format!("{}", d.loser.val).as_str()),
            winner_value: Blob::from(format!("{}", d.winner.val).as_str()),
        }
    }

    /// Concurrent bit patches overlapping on bits `from .. to` with other
    /// values: `sub` names the bits, each value is its patch's bits, most
    /// significant first, starting at its own offset.
    pub(crate) fn bits(
        key: &[u8],
        (from, to): (u64, u64),
        winner: (Tag, &crate::patch::Patch),
        loser: (Tag, &crate::patch::Patch),
    ) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: Some(Blob::from(format!("bits {from}..{to}").as_str())),
            kind: Kind::String,
            rule: Rule::LastWriterWins,
            winner: winner.0,
            loser: loser.0,
            loser_value: Blob::from(shown_patch(loser.1).as_str()),
            winner_value: Blob::from(shown_patch(winner.1).as_str()),
        }
    }

    /// A bit patch hidden by a later whole-string write it had not observed.
    pub(crate) fn patch_hidden(
        key: &[u8],
        loser: (Tag, &crate::patch::Patch),
        winner: (Tag, &Blob),
    ) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: None,
            kind: Kind::String,
            rule: Rule::LastWriterWins,
            winner: winner.0,
            loser: loser.0,
            loser_value: Blob::from(shown_patch(loser.1).as_str()),
            winner_value: winner.1.clone(),
        }
    }

    /// A write of bits `from .. to` (a BITFIELD field) and a concurrent
    /// increment of the field, added on top of it: the loser is the write
    /// as written, the winner the increment (`incrby FROM..TO +N`, N
    /// modulo 2^width).
    pub(crate) fn added_on_top(
        key: &[u8],
        (from, to): (u64, u64),
        write: (Tag, Blob),
        incr: (Tag, u64),
    ) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: Some(Blob::from(format!("bits {from}..{to}").as_str())),
            kind: Kind::String,
            rule: Rule::AddedOnTop,
            winner: incr.0,
            loser: write.0,
            loser_value: write.1,
            winner_value: Blob::from(format!("incrby {from}..{to} +{}", incr.1).as_str()),
        }
    }

    pub(crate) fn ttl(key: &[u8], kind: Kind, winner: Ttl, loser: Ttl) -> Conflict {
        let shown = |t: Ttl| {
            t.deadline_ms
                .map_or_else(|| "persist".to_string(), |d| format!("deadline_ms={d}"))
        };
        Conflict {
            key: Blob::from(key),
            sub: None,
            kind,
            rule: Rule::LongestTtl,
            winner: winner.tag,
            loser: loser.tag,
            loser_value: Blob::from(shown(loser).as_str()),
            winner_value: Blob::from(shown(winner).as_str()),
        }
    }

    pub(crate) fn type_change(key: &[u8], shown: Kind, hidden: Kind, tag: Tag) -> Conflict {
        Conflict {
            key: Blob::from(key),
            sub: None,
            kind: hidden,
            rule: Rule::TypeChange,
            winner: tag,
            loser: tag,
            loser_value: Blob::from(hidden.name()),
            winner_value: Blob::from(shown.name()),
        }
    }
}

/// A patch as the journal shows it: `bits FROM..TO=BITS` or
/// `register INDEX=VALUE`.
pub(crate) fn shown_patch(p: &crate::patch::Patch) -> String {
    match *p {
        crate::patch::Patch::Bits {
            offset,
            width,
            value,
        } => format!(
            "bits {offset}..{}={value:0w$b}",
            offset + u64::from(width),
            w = usize::from(width)
        ),
        crate::patch::Patch::Register { index, value } => format!("register {index}={value}"),
        crate::patch::Patch::Incr {
            offset,
            width,
            delta,
            ..
        } => format!("incrby {offset}..{} +{delta}", offset + u64::from(width)),
    }
}
