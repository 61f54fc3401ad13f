//! Position keys: how a list orders its elements (see the module above).

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::vv::{Dot, Tag};

/// An element's identity: the op that inserted it and its index in that op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ElemId {
    pub tag: Tag,
    pub idx: u32,
}

impl ElemId {
    pub fn dot(&self) -> Dot {
        self.tag.dot
    }
}

/// One part of a position key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Part {
    pub digit: i64,
    pub id: ElemId,
}

/// A position key: parts compared in order, a shorter key before any key it
/// is a prefix of. The last part's id is the element's own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos(pub(super) SmallVec<[Part; 1]>);

impl Pos {
    pub fn single(digit: i64, id: ElemId) -> Pos {
        Pos(smallvec::smallvec![Part { digit, id }])
    }

    /// The element's id (the last part's).
    pub fn id(&self) -> ElemId {
        self.0.last().expect("a position key has a part").id
    }

    pub fn parts(&self) -> &[Part] {
        &self.0
    }

    /// A key for a new first element (`LPUSH`), before `first`.
    pub fn before(first: Option<&Pos>, id: ElemId) -> Pos {
        match first {
            None => Pos::single(0, id),
            Some(f) => match f.0[0].digit.checked_sub(1) {
                Some(d) => Pos::single(d, id),
                None => Pos::between(None, Some(f), id),
            },
        }
    }

    /// A key for a new last element (`RPUSH`), after `last`.
    pub fn after(last: Option<&Pos>, id: ElemId) -> Pos {
        match last {
            None => Pos::single(0, id),
            Some(l) => match l.0[0].digit.checked_add(1) {
                Some(d) => Pos::single(d, id),
                None => Pos::between(Some(l), None, id),
            },
        }
    }

    /// A key strictly between `lo` and `hi` (`None`: no bound on that side),
    /// as short as the neighbours allow. Requires `lo < hi`.
    pub fn between(lo: Option<&Pos>, hi: Option<&Pos>, id: ElemId) -> Pos {
        debug_assert!(
            lo.zip(hi).is_none_or(|(l, h)| l < h),
            "between {lo:?} and {hi:?}"
        );
        let lo = lo.map_or(&[][..], |p| &p.0[..]);
        let mut hi = hi.map(|p| &p.0[..]);
        let mut out: SmallVec<[Part; 1]> = SmallVec::new();
        let mut level = 0;
        loop {
            let l = lo.get(level);
            // Past the end of `hi` only once `hi` is known to be above
            // whatever extends the parts taken so far.
            let h = hi.and_then(|h| h.get(level));
            let digit = match (l, h) {
                (None, None) => Some(0),
                (Some(l), None) => l.digit.checked_add(1),
                (None, Some(h)) => h.digit.checked_sub(1),
                (Some(l), Some(h)) => {
                    let gap = (h.digit as i128) - (l.digit as i128);
                    (gap > 1).then(|| (l.digit as i128 + gap / 2) as i64)
                }
            };
            if let Some(digit) = digit {
                out.push(Part { digit, id });
                return Pos(out);
            }
            // No digit fits at this level: copy the lower neighbour's part
            // (or the upper's, when the lower has ended) and go deeper.
            let take = match (l, h) {
                (Some(l), _) => *l,
                // Only below `i64::MIN`, after 2^63 pushes to one end.
                (None, _) => panic!("list position digits exhausted below {h:?}"),
            };
            if h.is_some_and(|h| *h != take) {
                // Everything that extends `take` sorts below `h`.
                hi = None;
            }
            out.push(take);
            level += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::region::RegionId;

    pub(crate) fn id(region: &str, seq: u64, idx: u32) -> ElemId {
        ElemId {
            tag: Tag {
                hlc: Hlc(seq << 16),
                dot: Dot::new(RegionId::new(region).unwrap(), seq),
            },
            idx,
        }
    }

    #[test]
    fn between_is_strictly_between_and_short() {
        let a = Pos::single(5, id("ra", 1, 0));
        let b = Pos::single(6, id("ra", 2, 0));
        let m = Pos::between(Some(&a), Some(&b), id("rb", 3, 0));
        assert!(a < m && m < b, "{m:?}");
        assert_eq!(m.parts().len(), 2);
        // Repeatedly inserting right after `a` stays two parts deep.
        let mut hi = m.clone();
        for seq in 4..200 {
            let n = Pos::between(Some(&a), Some(&hi), id("rb", seq, 0));
            assert!(a < n && n < hi);
            assert!(n.parts().len() <= 2, "{n:?}");
            hi = n;
        }
        // And right before `b`.
        let mut lo = m;
        for seq in 200..400 {
            let n = Pos::between(Some(&lo), Some(&b), id("rc", seq, 0));
            assert!(lo < n && n < b);
            assert!(n.parts().len() <= 2, "{n:?}");
            lo = n;
        }
        // Equal digits from different regions.
        let x = Pos::single(7, id("ra", 9, 0));
        let y = Pos::single(7, id("rb", 9, 0));
        let z = Pos::between(Some(&x), Some(&y), id("rc", 10, 0));
        assert!(x < z && z < y, "{z:?}");
    }

    #[test]
    fn the_last_digit_overflows_into_a_deeper_key() {
        let last = Pos::single(i64::MAX, id("ra", 1, 0));
        let after = Pos::after(Some(&last), id("ra", 2, 0));
        assert!(after > last);
    }
}
