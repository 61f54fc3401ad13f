//! Region identifiers.
//!
//! A region id is a short name (`[a-z0-9-]{1,32}`) that is meaningful across
//! the whole cluster. Every stored element carries the id of the region that
//! wrote it, so the in-memory form must be tiny: names are interned once per
//! process into a `u16` index. The index is only a local compression; equality
//! and hashing use it, but ordering (used to break last-writer-wins ties) always
//! compares the names, so every region orders the same way.

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Upper bound on distinct region names one process will ever intern.
pub const REGIONS_MAX: usize = 4096;
/// Longest region name accepted.
pub const REGION_NAME_MAX_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionIdError {
    #[error("invalid region id {0:?}: use 1 to 32 characters from [a-z0-9-]")]
    Invalid(String),
    #[error("too many distinct region ids (limit {REGIONS_MAX})")]
    TooMany,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionId(u16);

struct Interner {
    count: usize,
    index: HashMap<&'static str, u16>,
}

fn interner() -> &'static RwLock<Interner> {
    static INTERNER: OnceLock<RwLock<Interner>> = OnceLock::new();
    INTERNER.get_or_init(|| {
        RwLock::new(Interner {
            count: 0,
            index: HashMap::new(),
        })
    })
}

/// Names by index, readable without a lock: `as_str` runs for every dot
/// encoded and every tie broken, so it must be cheap.
static NAMES: [OnceLock<&'static str>; REGIONS_MAX] = [const { OnceLock::new() }; REGIONS_MAX];

impl RegionId {
    /// Validates and interns `name`.
    pub fn new(name: &str) -> Result<RegionId, RegionIdError> {
        let valid = !name.is_empty()
            && name.len() <= REGION_NAME_MAX_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(RegionIdError::Invalid(name.to_string()));
        }
        if let Some(&i) = interner().read().expect("interner lock").index.get(name) {
            return Ok(RegionId(i));
        }
        let mut w = interner().write().expect("interner lock");
        if let Some(&i) = w.index.get(name) {
            return Ok(RegionId(i));
        }
        if w.count >= REGIONS_MAX {
            return Err(RegionIdError::TooMany);
        }
        // Interned names live for the whole process; there are at most
        // REGIONS_MAX of them, each at most 32 bytes.
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        let i = w.count as u16;
        // Published before the index can hand `i` out.
        let _ = NAMES[w.count].set(leaked);
        w.count += 1;
        w.index.insert(leaked, i);
        Ok(RegionId(i))
    }

    pub fn as_str(self) -> &'static str {
        NAMES[self.0 as usize]
            .get()
            .copied()
            .expect("a RegionId is only made for an interned name")
    }

    pub(crate) fn index(self) -> u16 {
        self.0
    }

    pub(crate) fn from_index(i: u16) -> RegionId {
        RegionId(i)
    }
}

impl Ord for RegionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == other.0 {
            return std::cmp::Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for RegionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RegionId {
    type Err = RegionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionId::new(s)
    }
}

impl Serialize for RegionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RegionId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(RegionId::new("eu-west").is_ok());
        assert!(RegionId::new("").is_err());
        assert!(RegionId::new("EU").is_err());
        assert!(RegionId::new(&"a".repeat(33)).is_err());
    }

    #[test]
    fn order_follows_names_not_interning_order() {
        let z = RegionId::new("zz-order").unwrap();
        let a = RegionId::new("aa-order").unwrap();
        assert!(a < z);
        assert_eq!(RegionId::new("zz-order").unwrap(), z);
    }
}
