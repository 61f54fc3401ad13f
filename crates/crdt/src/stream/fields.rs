//! An entry's fields and values, packed: a count, then each string as its
//! length and bytes (LEB128 lengths). [`Fields`] owns one such packing (a
//! version being written, merged or encoded); [`FieldsRef`] reads one in
//! place, where a chunk of entries holds it (`chunk.rs`), names included or
//! shared with an earlier entry of the chunk.

use serde::{Deserialize, Serialize};

/// Fields and values in pairs, at least one pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Fields(Box<[u8]>);

pub(super) fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u64(out, n as u64);
}

/// A LEB128 length at `at`, and where what follows it starts.
pub(super) fn get_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let (n, at) = get_u64(buf, at)?;
    Some((usize::try_from(n).ok()?, at))
}

/// A LEB128 number (an ID's or a tag's difference in a chunk, a length).
pub(super) fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// A LEB128 number at `at`, and where what follows it starts; `None` when
/// the bytes end first or it would not fit in 64 bits.
pub(super) fn get_u64(buf: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(at)?;
        at += 1;
        let part = u64::from(b & 0x7f);
        if shift >= u64::BITS || (part << shift) >> shift != part {
            return None;
        }
        n |= part << shift;
        if b & 0x80 == 0 {
            return Some((n, at));
        }
        shift += 7;
    }
}

impl Fields {
    pub fn new<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Fields {
        let mut out = Vec::new();
        put_len(&mut out, items.len());
        for item in items {
            put_len(&mut out, item.len());
            out.extend_from_slice(item);
        }
        Fields(out.into_boxed_slice())
    }

    /// How many strings (twice the pairs).
    pub fn len(&self) -> usize {
        get_len(&self.0, 0).map_or(0, |(n, _)| n)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The strings in order: field, value, field, value…
    pub fn iter(&self) -> FieldsIter<'_> {
        self.as_ref().iter()
    }

    /// The packed bytes' total size.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }

    /// The same strings, read in place.
    pub fn as_ref(&self) -> FieldsRef<'_> {
        let (strings, at) = get_len(&self.0, 0).unwrap_or((0, self.0.len()));
        FieldsRef {
            body: &self.0[at..],
            names: None,
            strings,
        }
    }

    /// Whether `buf` is a well-formed packing of pairs with nothing after.
    fn well_formed(buf: &[u8]) -> bool {
        let Some((n, mut at)) = get_len(buf, 0) else {
            return false;
        };
        if n == 0 || n % 2 == 1 || n > buf.len() {
            return false;
        }
        for _ in 0..n {
            let Some((len, start)) = get_len(buf, at) else {
                return false;
            };
            match start.checked_add(len) {
                Some(end) if end <= buf.len() => at = end,
                _ => return false,
            }
        }
        at == buf.len()
    }
}

/// An entry's fields and values read in place: `body` holds the strings
/// one after another, each as its length and bytes; or, when `names` is
/// given, only the values, the names being every other string of `names`
/// (the entry of the same chunk that wrote them, names and values).
#[derive(Clone, Copy)]
pub struct FieldsRef<'a> {
    pub(super) body: &'a [u8],
    pub(super) names: Option<&'a [u8]>,
    pub(super) strings: usize,
}

impl<'a> FieldsRef<'a> {
    /// How many strings (twice the pairs).
    pub fn len(&self) -> usize {
        self.strings
    }

    pub fn is_empty(&self) -> bool {
        self.strings == 0
    }

    /// The strings in order: field, value, field, value…
    pub fn iter(&self) -> FieldsIter<'a> {
        FieldsIter {
            fields: *self,
            i: 0,
            at_body: 0,
            at_names: 0,
        }
    }

    /// The same strings in a packing of their own.
    pub fn to_owned(&self) -> Fields {
        Fields::new(self.iter())
    }

    /// The names alone, in order.
    pub fn names(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.iter().step_by(2)
    }
}

impl PartialEq for FieldsRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.strings == other.strings && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for FieldsRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// The strings of a [`FieldsRef`].
#[derive(Clone)]
pub struct FieldsIter<'a> {
    fields: FieldsRef<'a>,
    i: usize,
    at_body: usize,
    at_names: usize,
}

/// The string at `at` of a packing, and where the next one starts.
fn get_str(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (len, start) = get_len(buf, at)?;
    let end = start.checked_add(len)?;
    Some((buf.get(start..end)?, end))
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.i >= self.fields.strings {
            return None;
        }
        let item = match self.fields.names {
            Some(names) if self.i.is_multiple_of(2) => {
                let (name, next) = get_str(names, self.at_names)?;
                // Past the value that follows the name there.
                let (_, next) = get_str(names, next)?;
                self.at_names = next;
                name
            }
            _ => {
                let (item, next) = get_str(self.fields.body, self.at_body)?;
                self.at_body = next;
                item
            }
        };
        self.i += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.fields.strings.saturating_sub(self.i);
        (left, Some(left))
    }
}

impl ExactSizeIterator for FieldsIter<'_> {}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("packed stream fields")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Fields, E> {
                if !Fields::well_formed(v) {
                    return Err(E::custom("stream fields: not pairs of strings"));
                }
                Ok(Fields(v.into()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Fields, E> {
                self.visit_bytes(&v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Fields, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                self.visit_bytes(&v)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pack_and_read_back() {
        let long = vec![b'x'; 300];
        let items: Vec<&[u8]> = vec![b"f", b"", b"g", &long];
        let f = Fields::new(items.iter().copied());
        assert_eq!(f.len(), 4);
        assert_eq!(f.iter().collect::<Vec<_>>(), items);
        let bytes = postcard::to_stdvec(&f).unwrap();
        assert_eq!(postcard::from_bytes::<Fields>(&bytes).unwrap(), f);
        // Damaged packings are refused when decoded.
        for bad in [&[][..], &[0], &[1, 0], &[2, 5, b'a'], &[2, 0, 0, 9]] {
            let bytes = postcard::to_stdvec(&serde_bytes_of(bad)).unwrap();
            assert!(postcard::from_bytes::<Fields>(&bytes).is_err(), "{bad:?}");
        }
    }

    /// Bytes serialized as serde bytes, as [`Fields`] serializes itself.
    fn serde_bytes_of(b: &[u8]) -> Fields {
        Fields(b.into())
    }
}
