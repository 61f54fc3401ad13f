//! States as snapshot format 3 and earlier encoded them, before strings
//! carried patches ([`crate::patch`]): read once, written anew.

use serde::Deserialize;
use smallvec::SmallVec;

use super::{Entry, Extra, HashVal, ListVal, SetVal, Ttl, Value, ZSetVal};
use crate::blob::Blob;
use crate::num::NumReg;

#[derive(Deserialize)]
enum OldValue {
    Str(NumReg<Blob>),
    Hash(Box<HashVal>),
    Set(Box<SetVal>),
    ZSet(Box<ZSetVal>),
    List(Box<ListVal>),
}

impl From<OldValue> for Value {
    fn from(v: OldValue) -> Value {
        match v {
            OldValue::Str(r) => Value::Str(r.into()),
            OldValue::Hash(h) => Value::Hash(h),
            OldValue::Set(s) => Value::Set(s),
            OldValue::ZSet(z) => Value::ZSet(z),
            OldValue::List(l) => Value::List(l),
        }
    }
}

#[derive(Deserialize)]
struct OldExtra {
    ttl: SmallVec<[Ttl; 1]>,
    shadows: Vec<OldValue>,
}

/// An [`Entry`] as format 3 encoded it.
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
