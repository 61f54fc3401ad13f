//! Packed chunks: a list's interior elements as varint deltas with their
//! values inline.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::pos::{ElemId, Part, Pos};
use super::{Elem, ElemRef};
use crate::hlc::Hlc;
use crate::region::RegionId;
use crate::vv::{Dot, Tag};

/// Elements encoded back to back, each field relative to the element before
/// (varints of zigzagged differences), with the value bytes inline: a queue's
/// element costs its value plus a handful of bytes, where a decoded [`Elem`]
/// costs about eighty. Interior chunks of a list are packed; the two ends,
/// where pushes and pops land, stay open.
#[derive(Debug, Clone)]
pub(super) struct Packed {
    buf: Box<[u8]>,
    pub(super) count: usize,
    pub(super) first: Pos,
    pub(super) last: Pos,
}

/// What an element's fields are encoded relative to.
#[derive(Default, Clone, Copy)]
struct Prev {
    digit: i64,
    region: u16,
    seq: u64,
    hlc: u64,
    idx: u32,
}

const HAS_PREFIX: u8 = 1;
const HAS_SET: u8 = 2;
const SAME_REGION: u8 = 4;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_var(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint the encoder wrote (the buffer is only ever ours).
fn get_var(buf: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = buf[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn put_part(buf: &mut Vec<u8>, p: &Part) {
    put_var(buf, zigzag(p.digit));
    put_var(buf, u64::from(p.id.tag.dot.region().index()));
    put_var(buf, p.id.tag.dot.seq());
    put_var(buf, p.id.tag.hlc.0);
    put_var(buf, u64::from(p.id.idx));
}

fn get_part(buf: &[u8], at: &mut usize) -> Part {
    let digit = unzigzag(get_var(buf, at));
    let region = RegionId::from_index(get_var(buf, at) as u16);
    let seq = get_var(buf, at);
    let hlc = Hlc(get_var(buf, at));
    let idx = get_var(buf, at) as u32;
    Part {
        digit,
        id: ElemId {
            tag: Tag {
                hlc,
                dot: Dot::new(region, seq),
            },
            idx,
        },
    }
}

impl Packed {
    pub(super) fn encode(elems: &[Elem]) -> Packed {
        let mut buf = Vec::with_capacity(elems.len() * 12);
        let mut prev = Prev::default();
        for e in elems {
            let parts = e.pos.parts();
            let (prefix, own) = parts.split_at(parts.len() - 1);
            let own = own[0];
            let region = own.id.tag.dot.region().index();
            let mut flags = 0;
            if !prefix.is_empty() {
                flags |= HAS_PREFIX;
            }
            if e.set.is_some() {
                flags |= HAS_SET;
            }
            if region == prev.region {
                flags |= SAME_REGION;
            }
            buf.push(flags);
            put_var(&mut buf, zigzag(own.digit.wrapping_sub(prev.digit)));
            if region != prev.region {
                put_var(&mut buf, u64::from(region));
            }
            let seq = own.id.tag.dot.seq();
            put_var(&mut buf, zigzag(seq.wrapping_sub(prev.seq) as i64));
            put_var(
                &mut buf,
                zigzag(own.id.tag.hlc.0.wrapping_sub(prev.hlc) as i64),
            );
            put_var(
                &mut buf,
                zigzag(i64::from(own.id.idx) - i64::from(prev.idx)),
            );
            if !prefix.is_empty() {
                put_var(&mut buf, prefix.len() as u64);
                for p in prefix {
                    put_part(&mut buf, p);
                }
            }
            if let Some(t) = e.set {
                put_var(&mut buf, t.hlc.0);
                put_var(&mut buf, u64::from(t.dot.region().index()));
                put_var(&mut buf, t.dot.seq());
            }
            put_var(&mut buf, e.value.len() as u64);
            buf.extend_from_slice(e.value.as_bytes());
            prev = Prev {
                digit: own.digit,
                region,
                seq,
                hlc: own.id.tag.hlc.0,
                idx: own.id.idx,
            };
        }
        Packed {
            buf: buf.into_boxed_slice(),
            count: elems.len(),
            first: elems
                .first()
                .expect("a packed chunk is not empty")
                .pos
                .clone(),
            last: elems
                .last()
                .expect("a packed chunk is not empty")
                .pos
                .clone(),
        }
    }

    /// Only the values: the keys are skipped, not decoded (LRANGE, pops).
    pub(super) fn values(&self) -> Vec<&[u8]> {
        fn skip_var(buf: &[u8], at: &mut usize) {
            while buf[*at] >= 0x80 {
                *at += 1;
            }
            *at += 1;
        }
        let buf = &self.buf[..];
        let mut out = Vec::with_capacity(self.count);
        let mut at = 0;
        while at < buf.len() {
            let flags = buf[at];
            at += 1;
            // digit, [region], seq, hlc, idx
            let fields = if flags & SAME_REGION != 0 { 4 } else { 5 };
            for _ in 0..fields {
                skip_var(buf, &mut at);
            }
            if flags & HAS_PREFIX != 0 {
                let n = get_var(buf, &mut at);
                for _ in 0..n * 5 {
                    skip_var(buf, &mut at);
                }
            }
            if flags & HAS_SET != 0 {
                for _ in 0..3 {
                    skip_var(buf, &mut at);
                }
            }
            let len = get_var(buf, &mut at) as usize;
            out.push(&buf[at..at + len]);
            at += len;
        }
        out
    }

    pub(super) fn refs(&self) -> Vec<ElemRef<'_>> {
        let buf = &self.buf[..];
        let mut out = Vec::with_capacity(self.count);
        let mut at = 0;
        let mut prev = Prev::default();
        while at < buf.len() {
            let flags = buf[at];
            at += 1;
            let digit = prev.digit.wrapping_add(unzigzag(get_var(buf, &mut at)));
            let region = if flags & SAME_REGION != 0 {
                prev.region
            } else {
                get_var(buf, &mut at) as u16
            };
            let seq = prev
                .seq
                .wrapping_add(unzigzag(get_var(buf, &mut at)) as u64);
            let hlc = prev
                .hlc
                .wrapping_add(unzigzag(get_var(buf, &mut at)) as u64);
            let idx = (i64::from(prev.idx) + unzigzag(get_var(buf, &mut at))) as u32;
            let mut parts: SmallVec<[Part; 1]> = SmallVec::new();
            if flags & HAS_PREFIX != 0 {
                let n = get_var(buf, &mut at) as usize;
                for _ in 0..n {
                    parts.push(get_part(buf, &mut at));
                }
            }
            parts.push(Part {
                digit,
                id: ElemId {
                    tag: Tag {
                        hlc: Hlc(hlc),
                        dot: Dot::new(RegionId::from_index(region), seq),
                    },
                    idx,
                },
            });
            let set = (flags & HAS_SET != 0).then(|| {
                let hlc = Hlc(get_var(buf, &mut at));
                let region = RegionId::from_index(get_var(buf, &mut at) as u16);
                let seq = get_var(buf, &mut at);
                Tag {
                    hlc,
                    dot: Dot::new(region, seq),
                }
            });
            let len = get_var(buf, &mut at) as usize;
            let value = &buf[at..at + len];
            at += len;
            out.push(ElemRef {
                pos: Cow::Owned(Pos(parts)),
                value,
                set,
            });
            prev = Prev {
                digit,
                region,
                seq,
                hlc,
                idx,
            };
        }
        debug_assert_eq!(out.len(), self.count);
        out
    }

    /// Bytes held, the buffer included.
    pub(super) fn heap_bytes(&self) -> usize {
        self.buf.len() + std::mem::size_of::<Packed>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blob;
    use crate::list::pos::tests::id;

    /// Packed chunks decode to exactly what was encoded: multi-part keys,
    /// LSET tags, regions changing and digits going down included.
    #[test]
    fn packing_round_trips_every_field() {
        let mut elems = Vec::new();
        let a = Pos::single(5, id("ra", 1, 0));
        let b = Pos::single(6, id("rb", 2, 0));
        elems.push(Elem {
            pos: a.clone(),
            value: Blob::from("a"),
            set: None,
        });
        elems.push(Elem {
            pos: Pos::between(Some(&a), Some(&b), id("rc", 3, 7)),
            value: Blob::from(""),
            set: Some(id("ra", 9, 0).tag),
        });
        elems.push(Elem {
            pos: b,
            value: Blob::from("a value longer than sixteen bytes"),
            set: None,
        });
        elems.push(Elem {
            pos: Pos::single(i64::MAX, id("ra", u64::from(u32::MAX), u32::MAX)),
            value: Blob::from("end"),
            set: None,
        });
        let p = Packed::encode(&elems);
        let back: Vec<Elem> = p.refs().iter().map(ElemRef::to_owned).collect();
        assert_eq!(back, elems);
    }
}
