//! Redis 7 FUNCTION libraries, replicated: library name → code.
//!
//! Each name is a multi-value register without tombstones, the rule of
//! every register here: a write (`FUNCTION LOAD`, `RESTORE`) replaces the
//! versions its op observed and leaves concurrent ones as siblings; readers
//! see the sibling with the largest [`Tag`] (last writer wins). A delete
//! (`FUNCTION DELETE`, `FLUSH`) removes only the versions its op observed,
//! so a library loaded concurrently in another region survives a flush.
//! A state merge keeps a version held on one side only unless the other
//! side's vector covers its dot (that side removed it). Nothing here
//! depends on the order ops arrive in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::blob::Blob;
use crate::conflict::{Conflict, Rule};
use crate::num::Observes;
use crate::value::Kind;
use crate::vv::{Tag, VersionVector};

/// One written version of a library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibVersion {
    pub tag: Tag,
    pub code: Blob,
}

/// Every library this region holds, by name; each name's versions in tag
/// order (the last one is what readers see), never empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Libraries {
    libs: BTreeMap<Blob, Vec<LibVersion>>,
}

impl Libraries {
    pub fn new() -> Libraries {
        Libraries::default()
    }

    pub fn is_empty(&self) -> bool {
        self.libs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.libs.len()
    }

    /// The visible version of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&LibVersion> {
        self.libs.get(name).and_then(|v| v.last())
    }

    /// Every library with its visible version, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Blob, &LibVersion)> {
        self.libs
            .iter()
            .filter_map(|(n, v)| v.last().map(|top| (n, top)))
    }

    /// Every version held, siblings included (for tests and digests).
    pub fn versions(&self, name: &[u8]) -> &[LibVersion] {
        self.libs.get(name).map_or(&[], |v| &v[..])
    }

    /// `FUNCTION LOAD`: `code` under `name`, replacing the versions `ctx`
    /// observed. A version it did not observe stays as a sibling and the
    /// one that loses is reported.
    pub fn set(
        &mut self,
        name: &[u8],
        code: &Blob,
        tag: Tag,
        ctx: &impl Observes,
        conflicts: &mut Vec<Conflict>,
    ) {
        let versions = self.libs.entry(Blob::from(name)).or_default();
        if versions.iter().any(|v| v.tag == tag) {
            return;
        }
        versions.retain(|v| !ctx.observed(v.tag.dot));
        let new = LibVersion {
            tag,
            code: code.clone(),
        };
        for old in versions.iter() {
            conflicts.push(conflict(name, old, &new));
        }
        versions.push(new);
        versions.sort_by_key(|v| v.tag);
    }

    /// `FUNCTION DELETE` / `FLUSH`: removes the versions `ctx` observed.
    pub fn del(&mut self, name: &[u8], ctx: &impl Observes) {
        if let Some(versions) = self.libs.get_mut(name) {
            versions.retain(|v| !ctx.observed(v.tag.dot));
            if versions.is_empty() {
                self.libs.remove(name);
            }
        }
    }

    /// Joins a peer's libraries, read when its vector was `their_vv`, with
    /// these, held at `my_vv`: a version on one side only stays unless the
    /// other side's vector covers it (it was removed there). Concurrent
    /// versions that meet here for the first time are reported. True when
    /// anything changed.
    pub fn join(
        &mut self,
        my_vv: &VersionVector,
        theirs: &Libraries,
        their_vv: &VersionVector,
        conflicts: &mut Vec<Conflict>,
    ) -> bool {
        let mut names: Vec<Blob> = self.libs.keys().cloned().collect();
        names.extend(theirs.libs.keys().cloned());
        names.sort();
        names.dedup();
        let mut changed = false;
        for name in names {
            let mine = self.libs.get(&name).cloned().unwrap_or_default();
            let other = theirs.versions(&name);
            let holds = |vs: &[LibVersion], t: Tag| vs.iter().any(|v| v.tag == t);
            let mut kept: Vec<LibVersion> = mine
                .iter()
                .filter(|v| holds(other, v.tag) || !their_vv.covers(v.tag.dot))
                .cloned()
                .collect();
            let mine_kept = kept.len();
            for v in other {
                if !holds(&mine, v.tag) && !my_vv.covers(v.tag.dot) {
                    kept.push(v.clone());
                }
            }
            kept.sort_by_key(|v| v.tag);
            // Versions new here that stand beside ones this region held.
            if mine_kept > 0 && kept.len() > mine_kept {
                let top = kept.last().expect("not empty");
                for v in &kept {
                    if v.tag != top.tag {
                        let new_here = !holds(&mine, v.tag) || !holds(&mine, top.tag);
                        if new_here {
                            conflicts.push(conflict(&name, v, top));
                        }
                    }
                }
            }
            if kept != mine {
                changed = true;
                if kept.is_empty() {
                    self.libs.remove(&name);
                } else {
                    self.libs.insert(name, kept);
                }
            }
        }
        changed
    }
}

/// Two concurrent versions of a library: the larger tag is shown.
fn conflict(name: &[u8], a: &LibVersion, b: &LibVersion) -> Conflict {
    let (winner, loser) = if a.tag > b.tag { (a, b) } else { (b, a) };
    Conflict {
        key: Blob::from(name),
        sub: None,
        kind: Kind::String,
        rule: Rule::Library,
        winner: winner.tag,
        loser: loser.tag,
        loser_value: loser.code.clone(),
        winner_value: winner.code.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::op::OpCtx;
    use crate::region::RegionId;
    use crate::vv::Dot;

    fn r(name: &str) -> RegionId {
        RegionId::new(name).unwrap()
    }

    fn tag(region: &str, seq: u64, wall: u64) -> Tag {
        Tag {
            hlc: Hlc::new(wall, 0),
            dot: Dot::new(r(region), seq),
        }
    }

    #[test]
    fn a_write_replaces_what_it_observed_and_keeps_a_concurrent_one() {
        let mut l = Libraries::new();
        let mut c = Vec::new();
        let empty = VersionVector::new();
        let t1 = tag("ra", 1, 10);
        l.set(
            b"lib",
            &Blob::from("v1"),
            t1,
            &OpCtx {
                tag: t1,
                vv: &empty,
            },
            &mut c,
        );
        let t2 = tag("rb", 1, 5);
        l.set(
            b"lib",
            &Blob::from("v2"),
            t2,
            &OpCtx {
                tag: t2,
                vv: &empty,
            },
            &mut c,
        );
        assert_eq!(l.versions(b"lib").len(), 2);
        assert_eq!(&l.get(b"lib").unwrap().code[..], b"v1", "larger tag wins");
        assert_eq!(c.len(), 1);
        assert_eq!(&c[0].loser_value[..], b"v2");
        let mut seen = VersionVector::new();
        seen.observe(t1.dot);
        seen.observe(t2.dot);
        let t3 = tag("ra", 2, 11);
        l.set(
            b"lib",
            &Blob::from("v3"),
            t3,
            &OpCtx { tag: t3, vv: &seen },
            &mut c,
        );
        assert_eq!(l.versions(b"lib").len(), 1);
        assert_eq!(&l.get(b"lib").unwrap().code[..], b"v3");
    }

    #[test]
    fn a_delete_leaves_what_it_did_not_observe() {
        let mut l = Libraries::new();
        let empty = VersionVector::new();
        let t1 = tag("ra", 1, 10);
        l.set(
            b"lib",
            &Blob::from("v1"),
            t1,
            &OpCtx {
                tag: t1,
                vv: &empty,
            },
            &mut vec![],
        );
        let mut saw_t1 = VersionVector::new();
        saw_t1.observe(t1.dot);
        let td = tag("rb", 1, 20);
        let t2 = tag("rc", 1, 5);
        l.set(
            b"lib",
            &Blob::from("v2"),
            t2,
            &OpCtx {
                tag: t2,
                vv: &empty,
            },
            &mut vec![],
        );
        l.del(
            b"lib",
            &OpCtx {
                tag: td,
                vv: &saw_t1,
            },
        );
        assert_eq!(&l.get(b"lib").unwrap().code[..], b"v2");
        l.del(
            b"lib",
            &OpCtx {
                tag: td,
                vv: &{
                    let mut v = saw_t1.clone();
                    v.observe(t2.dot);
                    v
                },
            },
        );
        assert!(l.is_empty());
    }
}
