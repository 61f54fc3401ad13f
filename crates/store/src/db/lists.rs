//! List writes: each reads the list as this region holds it now to choose
//! position keys (inserts) or key ranges (removals), then records one effect
//! (see `meridian_crdt::list`). Indexes are 0-based and already resolved by
//! the caller (negative indexes and clamping are Redis's, in the command).

use meridian_crdt::{Blob, EffectKind, ElemId, Kind, ListVal, Pos, Value};

use super::{Db, WrongType};

impl Db {
    /// The visible list at `key` (expiring it first if due); `Ok(None)` when
    /// the key is absent.
    pub fn list(&mut self, key: &[u8]) -> Result<Option<&ListVal>, WrongType> {
        match self.get_typed(key, Kind::List)? {
            Some(e) => match e.value() {
                Value::List(l) => Ok(Some(l)),
                _ => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// The list value the next list effect on `key` applies to.
    fn list_for_write(&self, key: &[u8]) -> Option<&ListVal> {
        match self.keys.get_any(key)?.typed(Kind::List)? {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The id the next element inserted by the op being built takes.
    fn next_elem_id(&mut self) -> ElemId {
        let tag = self.op_tag();
        let idx = self.elem_next;
        self.elem_next = self
            .elem_next
            .checked_add(1)
            .expect("fewer than 2^32 list elements inserted by one op");
        ElemId { tag, idx }
    }

    /// LPUSH (`front`) or RPUSH: each value becomes the new first (last)
    /// element in turn.
    pub fn lpush(&mut self, key: &[u8], values: Vec<Blob>, front: bool) {
        if values.is_empty() {
            return;
        }
        let mut end: Option<Pos> = self.list_for_write(key).and_then(|l| {
            let e = if front { l.first() } else { l.last() };
            e.map(|e| e.pos.into_owned())
        });
        let mut items = Vec::with_capacity(values.len());
        for v in values {
            let id = self.next_elem_id();
            let pos = if front {
                Pos::before(end.as_ref(), id)
            } else {
                Pos::after(end.as_ref(), id)
            };
            end = Some(pos.clone());
            items.push((pos, v));
        }
        self.effect(key, EffectKind::LInsert { items });
    }

    /// Inserts `value` so that it ends up at `index` (0 ..= len), between the
    /// elements now at `index - 1` and `index`.
    pub fn linsert(&mut self, key: &[u8], index: usize, value: Blob) {
        let (lo, hi) = match self.list_for_write(key) {
            Some(l) => (
                index
                    .checked_sub(1)
                    .and_then(|i| l.get(i))
                    .map(|e| e.pos.into_owned()),
                l.get(index).map(|e| e.pos.into_owned()),
            ),
            None => (None, None),
        };
        let id = self.next_elem_id();
        let pos = match (&lo, &hi) {
            (_, None) => Pos::after(lo.as_ref(), id),
            (None, Some(_)) => Pos::before(hi.as_ref(), id),
            _ => Pos::between(lo.as_ref(), hi.as_ref(), id),
        };
        self.effect(
            key,
            EffectKind::LInsert {
                items: vec![(pos, value)],
            },
        );
    }

    /// Removes the elements at the given inclusive index ranges (each within
    /// the list, in any order).
    pub fn lremove(&mut self, key: &[u8], ranges: &[(usize, usize)]) {
        let Some(l) = self.list_for_write(key) else {
            return;
        };
        let ranges: Vec<(Pos, Pos)> = ranges
            .iter()
            .filter_map(|&(a, b)| Some((l.get(a)?.pos.into_owned(), l.get(b)?.pos.into_owned())))
            .collect();
        if !ranges.is_empty() {
            self.effect(key, EffectKind::LRemove { ranges });
        }
    }

    /// Removes and returns up to `count` elements from the front or back.
    pub fn lpop(&mut self, key: &[u8], front: bool, count: usize) -> Vec<Blob> {
        let Some(l) = self.list_for_write(key) else {
            return Vec::new();
        };
        let n = count.min(l.len());
        if n == 0 {
            return Vec::new();
        }
        let (a, b) = if front {
            (0, n - 1)
        } else {
            (l.len() - n, l.len() - 1)
        };
        let mut popped: Vec<Blob> = l.range_values(a, b + 1).map(Blob::from).collect();
        if !front {
            popped.reverse();
        }
        self.lremove(key, &[(a, b)]);
        popped
    }

    /// LSET: false if `index` is out of range.
    pub fn lset(&mut self, key: &[u8], index: usize, value: Blob) -> bool {
        let Some(pos) = self
            .list_for_write(key)
            .and_then(|l| l.get(index))
            .map(|e| e.pos.into_owned())
        else {
            return false;
        };
        self.effect(key, EffectKind::LSet { pos, value });
        true
    }
}
