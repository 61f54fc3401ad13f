//! States as snapshot format 4 encoded them, before strings carried
//! counted fields ([`crate::patch::Counted`]): read once, written anew.

use serde::Deserialize;
use smallvec::SmallVec;

use super::{Entry, Extra, HashVal, ListVal, SetVal, StreamVal, Ttl, Value, ZSetVal};
use crate::blob::Blob;
use crate::num::NumReg;
use crate::patch::{Patched, StrReg};

#[derive(Deserialize)]
struct OldStrReg {
    reg: NumReg<Blob>,
    #[allow(clippy::box_collection)]
    patches: Option<Box<Vec<Patched>>>,
}

#[derive(Deserialize)]
enum OldValue {
    Str(OldStrReg),
    Hash(Box<HashVal>),
    Set(Box<SetVal>),
    ZSet(Box<ZSetVal>),
    List(Box<ListVal>),
    Stream(Box<StreamVal>),
}

impl From<OldValue> for Value {
    fn from(v: OldValue) -> Value {
        match v {
            OldValue::Str(r) => Value::Str(StrReg::from_parts(r.reg, r.patches)),
            OldValue::Hash(h) => Value::Hash(h),
            OldValue::Set(s) => Value::Set(s),
            OldValue::ZSet(z) => Value::ZSet(z),
            OldValue::List(l) => Value::List(l),
            OldValue::Stream(x) => Value::Stream(x),
        }
    }
}

#[derive(Deserialize)]
struct OldExtra {
    ttl: SmallVec<[Ttl; 1]>,
    shadows: Vec<OldValue>,
}

/// An [`Entry`] as format 4 encoded it.
#[derive(Deserialize)]
pub struct OldEntry {
    value: OldValue,
    extra: Option<Box<OldExtra>>,
}

impl From<OldEntry> for Entry {
    fn from(e: OldEntry) -> Entry {
        Entry {
            value: e.value.into(),
            extra: e.extra.map(|x| {
                Box::new(Extra {
                    ttl: x.ttl,
                    shadows: x.shadows.into_iter().map(Value::from).collect(),
                })
            }),
        }
    }
}
