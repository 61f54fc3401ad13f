//! Redis's own RDB encoding in DUMP payloads: strings, which DUMP writes
//! as Redis 7.0 writes them and RESTORE reads, and streams, which RESTORE
//! reads besides Meridian's (`dump.rs`). A string (a HyperLogLog or a
//! bitmap included) or a stream DUMPed by Redis 7.0 or earlier (RDB types
//! 0, 15 and 19, RDB versions up to 10) restores here, and a string DUMPed
//! here restores on Redis. Other Redis types stay refused.
//!
//! A payload is the type byte, the RDB body, the RDB version (2 bytes) and
//! a CRC-64 (8 bytes), both little-endian. A string's body is one RDB
//! string: an 8, 16 or 32-bit integer, LZF compressed ([`super::lzf`]), or
//! a length and the raw bytes. A stream's body holds the stream's
//! nodes (each a 16-byte master ID and a listpack, either possibly LZF
//! compressed), its length, last ID (and in type 19 its first ID, largest
//! deleted ID and entries added), then its groups: name, last delivered
//! ID (and in type 19 the read counter), the pending entries (ID, delivery
//! time, count), the consumers (name, seen time, the IDs they own).
//! Every length is checked against what remains, so a hostile payload
//! allocates no more than its own size.

use meridian_crdt::{Blob, StreamId};

use super::plain::{PlainGroup, PlainStream};

/// The RDB version Redis 7.0 writes, so the one DUMP writes beside a
/// string; older ones read the same here.
pub const RDB_VERSION: u16 = 10;
/// `RDB_TYPE_STREAM_LISTPACKS` (Redis 5 to 6.2).
const TYPE_STREAM_V1: u8 = 15;
/// `RDB_TYPE_STREAM_LISTPACKS_2` (Redis 7.0).
const TYPE_STREAM_V2: u8 = 19;
/// A stream entry's flags.
const FLAG_DELETED: i64 = 1;
const FLAG_SAME_FIELDS: i64 = 2;

/// `RDB_TYPE_STRING`.
const TYPE_STRING: u8 = 0;
/// The first byte of an RDB string that is not a plain length
/// (`RDB_ENCVAL`), and the encodings it announces.
const ENCODED: u8 = 3 << 6;
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;
/// Strings at most this long are tried as integers; an `i32` takes at
/// most 11 characters.
const INTEGER_LEN_MAX: usize = 11;
/// Strings longer than this are tried with LZF (Redis's `rdbcompression`
/// is on by default); shorter ones never shrink.
const LZF_LEN_MIN_EXCLUSIVE: usize = 20;
/// LZF must save at least this many bytes, as liblzf judges an output
/// bound this much below the string's length, or the string is raw.
const LZF_SAVING_MIN_BYTES: usize = 4;

/// Appends `s` as one RDB string, as Redis's `rdbSaveRawString` writes
/// it, so a DUMP here is byte for byte redis-server's: a string that is
/// exactly the decimal form of an integer of up to 32 bits is that
/// integer in 1, 2 or 4 bytes; a string over 20 bytes that LZF fits in 4
/// bytes less is compressed; anything else is its length and bytes.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if let Some(v) = canonical_integer(s) {
        if let Ok(v) = i8::try_from(v) {
            out.extend_from_slice(&[ENCODED | ENC_INT8, v as u8]);
            return;
        }
        if let Ok(v) = i16::try_from(v) {
            out.push(ENCODED | ENC_INT16);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        }
        if let Ok(v) = i32::try_from(v) {
            out.push(ENCODED | ENC_INT32);
            out.extend_from_slice(&v.to_le_bytes());
            return;
        }
    }
    if s.len() > LZF_LEN_MIN_EXCLUSIVE {
        if let Some(packed) = super::lzf::compress(s, s.len() - LZF_SAVING_MIN_BYTES) {
            out.push(ENCODED | ENC_LZF);
            put_len(out, packed.len() as u64);
            put_len(out, s.len() as u64);
            out.extend_from_slice(&packed);
            return;
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The integer `s` spells when it is short enough to try and reads back
/// to the same bytes (no sign but a leading minus, no leading zeros, no
/// spaces), as Redis's `string2ll` accepts it.
fn canonical_integer(s: &[u8]) -> Option<i64> {
    if s.len() > INTEGER_LEN_MAX {
        return None;
    }
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (v.to_string().as_bytes() == s).then_some(v)
}

/// `rdbSaveLen`: 6 bits in one byte, 14 bits in two, then 32 or 64 bits
/// big-endian after a marker byte.
fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0x80);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Whether `payload`'s footer is Redis's (a version it writes and a
/// matching checksum).
fn is_redis_payload(payload: &[u8], crc64: impl Fn(&[u8]) -> u64) -> bool {
    if payload.len() < 1 + 10 {
        return false;
    }
    let (signed, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([signed[signed.len() - 2], signed[signed.len() - 1]]);
    let crc_ok = <[u8; 8]>::try_from(crc).is_ok_and(|c| u64::from_le_bytes(c) == crc64(signed));
    version <= RDB_VERSION && crc_ok
}

/// Whether `payload` is Redis's and holds a stream.
pub fn is_redis_stream(payload: &[u8], crc64: impl Fn(&[u8]) -> u64) -> bool {
    is_redis_payload(payload, crc64) && matches!(payload[0], TYPE_STREAM_V1 | TYPE_STREAM_V2)
}

/// Whether `payload` is Redis's and holds a string (a HyperLogLog or a
/// bitmap included).
pub fn is_redis_string(payload: &[u8], crc64: impl Fn(&[u8]) -> u64) -> bool {
    is_redis_payload(payload, crc64) && payload[0] == TYPE_STRING
}

/// The string a Redis payload (checked by [`is_redis_string`]) holds, in
/// any of Redis's encodings (raw, integer, LZF); `None` when its body is
/// damaged.
pub fn decode_string(payload: &[u8]) -> Option<Blob> {
    let mut r = Rdb {
        buf: &payload[1..payload.len() - 10],
    };
    let s = r.string()?;
    r.buf.is_empty().then(|| Blob::from(s.as_slice()))
}

/// The stream a Redis payload (checked by [`is_redis_stream`]) holds;
/// `None` when its body is damaged.
pub fn decode_stream(payload: &[u8]) -> Option<PlainStream> {
    let body = &payload[1..payload.len() - 10];
    let v2 = payload[0] == TYPE_STREAM_V2;
    let mut r = Rdb { buf: body };
    let mut entries: Vec<(StreamId, Vec<Blob>)> = Vec::new();
    for _ in 0..r.count(2)? {
        let key = r.string()?;
        let master = id_of(&key)?;
        let lp = r.string()?;
        node_entries(&lp, master, &mut entries)?;
    }
    if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
        return None;
    }
    let length = r.len()?;
    if length != entries.len() as u64 {
        return None;
    }
    let last_id = StreamId::new(r.len()?, r.len()?);
    let (max_deleted, entries_added) = if v2 {
        let _first = StreamId::new(r.len()?, r.len()?);
        (StreamId::new(r.len()?, r.len()?), r.len()?)
    } else {
        (StreamId::ZERO, length)
    };
    let first_id = entries.first().map_or(StreamId::ZERO, |e| e.0);
    let mut groups: Vec<PlainGroup> = Vec::new();
    for _ in 0..r.count(3)? {
        let name = Blob::from(r.string()?);
        let last = StreamId::new(r.len()?, r.len()?);
        let read = if v2 {
            // Redis saves an unknown counter (-1) as the largest length.
            Some(r.len()?).filter(|n| *n != u64::MAX)
        } else {
            estimate_read(entries_added, length, first_id, last_id, max_deleted, last)
        };
        let mut pel: Vec<(StreamId, u64, u64)> = Vec::new();
        for _ in 0..r.count(17)? {
            let id = id_of(r.take(16)?)?;
            let delivered_ms = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            pel.push((id, delivered_ms, r.len()?));
        }
        let mut pending: Vec<(StreamId, Blob, u64, u64)> = Vec::new();
        let mut consumers: Vec<(Blob, u64)> = Vec::new();
        for _ in 0..r.count(9)? {
            let consumer = Blob::from(r.string()?);
            let seen = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            for _ in 0..r.count(16)? {
                let id = id_of(r.take(16)?)?;
                let (_, delivered_ms, count) = *pel.iter().find(|p| p.0 == id)?;
                pending.push((id, consumer.clone(), delivered_ms, count));
            }
            consumers.push((consumer, seen));
        }
        pending.sort_by_key(|p| p.0);
        pending.dedup_by_key(|p| p.0);
        consumers.sort();
        if consumers.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        groups.push(PlainGroup {
            name,
            last,
            read,
            pending,
            consumers,
        });
    }
    if !r.buf.is_empty() {
        return None;
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    if groups.windows(2).any(|w| w[0].name == w[1].name) {
        return None;
    }
    Some(PlainStream {
        entries,
        last_id,
        entries_added,
        max_deleted,
        groups,
    })
}

/// A group's read counter as Redis estimates it when loading a stream
/// saved before 7.0 (`streamEstimateDistanceFromFirstEverEntry`).
fn estimate_read(
    added: u64,
    length: u64,
    first: StreamId,
    last_id: StreamId,
    max_deleted: StreamId,
    id: StreamId,
) -> Option<u64> {
    if added == 0 {
        return Some(0);
    }
    if (length == 0 && id <= last_id) || id == last_id {
        return Some(added);
    }
    if id > last_id {
        return None;
    }
    if max_deleted.is_zero() || max_deleted < first {
        if id < first {
            return Some(added - length);
        }
        if id == first {
            return Some(added - length + 1);
        }
    }
    None
}

/// A 16-byte big-endian stream ID.
fn id_of(raw: &[u8]) -> Option<StreamId> {
    if raw.len() != 16 {
        return None;
    }
    Some(StreamId::new(
        u64::from_be_bytes(raw[..8].try_into().ok()?),
        u64::from_be_bytes(raw[8..].try_into().ok()?),
    ))
}

/// An RDB body being read.
struct Rdb<'a> {
    buf: &'a [u8],
}

impl<'a> Rdb<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// `rdbLoadLen`: a length, or (`Err`) the code of a special encoding.
    fn len_or_encoding(&mut self) -> Option<Result<u64, u8>> {
        let b = self.byte()?;
        Some(match b >> 6 {
            0 => Ok(u64::from(b & 0x3f)),
            1 => Ok((u64::from(b & 0x3f) << 8) | u64::from(self.byte()?)),
            3 => Err(b & 0x3f),
            _ if b == 0x80 => Ok(u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().ok()?,
            ))),
            _ if b == 0x81 => Ok(u64::from_be_bytes(self.take(8)?.try_into().ok()?)),
            _ => return None,
        })
    }

    fn len(&mut self) -> Option<u64> {
        self.len_or_encoding()?.ok()
    }

    /// A count of things each at least `min_bytes` long, which the bytes
    /// left must be able to hold.
    fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.len()?).ok()?;
        (n.saturating_mul(min_bytes) <= self.buf.len()).then_some(n)
    }

    /// `rdbGenericLoadStringObject`: raw, an integer, or LZF compressed.
    fn string(&mut self) -> Option<Vec<u8>> {
        match self.len_or_encoding()? {
            Ok(n) => Some(self.take(usize::try_from(n).ok()?)?.to_vec()),
            Err(ENC_INT8) => Some((self.byte()? as i8).to_string().into_bytes()),
            Err(ENC_INT16) => Some(
                i16::from_le_bytes(self.take(2)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Err(ENC_INT32) => Some(
                i32::from_le_bytes(self.take(4)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Err(ENC_LZF) => {
                let clen = usize::try_from(self.len()?).ok()?;
                let len = usize::try_from(self.len()?).ok()?;
                let compressed = self.take(clen)?;
                // LZF never expands a byte to more than 264 (a back
                // reference of 264 bytes takes 3).
                if len > clen.saturating_mul(264) {
                    return None;
                }
                super::lzf::decompress(compressed, len)
            }
            Err(_) => None,
        }
    }
}

/// A listpack element: an integer or a string.
enum Element<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Element<'_> {
    fn int(&self) -> Option<i64> {
        match self {
            Element::Int(v) => Some(*v),
            Element::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }

    fn blob(&self) -> Blob {
        match self {
            Element::Int(v) => Blob::from(v.to_string().as_str()),
            Element::Str(s) => Blob::from(*s),
        }
    }
}

/// The elements of a listpack, in order.
fn listpack(lp: &[u8]) -> Option<Vec<Element<'_>>> {
    if lp.len() < 7 || u32::from_le_bytes(lp[..4].try_into().ok()?) as usize != lp.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut p = 6;
    loop {
        let b = *lp.get(p)?;
        if b == 0xff {
            return (p + 1 == lp.len()).then_some(out);
        }
        let at = |from: usize, n: usize| lp.get(p + from..p + from + n);
        let (element, size) = if b & 0x80 == 0 {
            (Element::Int(i64::from(b & 0x7f)), 1)
        } else if b & 0xc0 == 0x80 {
            let n = usize::from(b & 0x3f);
            (Element::Str(at(1, n)?), 1 + n)
        } else if b & 0xe0 == 0xc0 {
            let raw = (i64::from(b & 0x1f) << 8) | i64::from(*lp.get(p + 1)?);
            let v = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
            (Element::Int(v), 2)
        } else if b & 0xf0 == 0xe0 {
            let n = (usize::from(b & 0x0f) << 8) | usize::from(*lp.get(p + 1)?);
            (Element::Str(at(2, n)?), 2 + n)
        } else {
            match b {
                0xf0 => {
                    let n = u32::from_le_bytes(at(1, 4)?.try_into().ok()?) as usize;
                    (Element::Str(at(5, n)?), 5 + n)
                }
                0xf1 => {
                    let v = i16::from_le_bytes(at(1, 2)?.try_into().ok()?);
                    (Element::Int(i64::from(v)), 3)
                }
                0xf2 => {
                    let raw = at(1, 3)?;
                    let v = i32::from_le_bytes([0, raw[0], raw[1], raw[2]]) >> 8;
                    (Element::Int(i64::from(v)), 4)
                }
                0xf3 => {
                    let v = i32::from_le_bytes(at(1, 4)?.try_into().ok()?);
                    (Element::Int(i64::from(v)), 5)
                }
                0xf4 => (
                    Element::Int(i64::from_le_bytes(at(1, 8)?.try_into().ok()?)),
                    9,
                ),
                _ => return None,
            }
        };
        out.push(element);
        p += size + backlen_bytes(size);
    }
}

/// Bytes a listpack element's back length takes after an element of
/// `size` bytes.
fn backlen_bytes(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Appends the live entries of one node (a listpack whose master entry is
/// followed by entries delta-encoded against `master`).
fn node_entries(lp: &[u8], master: StreamId, out: &mut Vec<(StreamId, Vec<Blob>)>) -> Option<()> {
    let elements = listpack(lp)?;
    let mut it = elements.iter();
    let int = |it: &mut std::slice::Iter<'_, Element<'_>>| it.next()?.int();
    let _count = int(&mut it)?;
    let _deleted = int(&mut it)?;
    let n_master = usize::try_from(int(&mut it)?).ok()?;
    let mut names = Vec::with_capacity(n_master.min(elements.len()));
    for _ in 0..n_master {
        names.push(it.next()?.blob());
    }
    if int(&mut it)? != 0 {
        return None;
    }
    while it.len() > 0 {
        let flags = int(&mut it)?;
        let ms = master.ms.wrapping_add(int(&mut it)? as u64);
        let seq = master.seq.wrapping_add(int(&mut it)? as u64);
        let mut fields = Vec::new();
        if flags & FLAG_SAME_FIELDS != 0 {
            for name in &names {
                fields.push(name.clone());
                fields.push(it.next()?.blob());
            }
        } else {
            let n = usize::try_from(int(&mut it)?).ok()?;
            if n > it.len() {
                return None;
            }
            for _ in 0..n {
                fields.push(it.next()?.blob());
                fields.push(it.next()?.blob());
            }
        }
        let _lp_count = int(&mut it)?;
        if flags & FLAG_DELETED == 0 {
            if fields.is_empty() {
                return None;
            }
            out.push((StreamId::new(ms, seq), fields));
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listpack_elements_decode() {
        // Header (total bytes, count), 5, "ok", -1 (13-bit), end.
        let mut lp = vec![0, 0, 0, 0, 3, 0];
        lp.extend_from_slice(&[5, 1]);
        lp.extend_from_slice(&[0x82, b'o', b'k', 3]);
        lp.extend_from_slice(&[0xdf, 0xff, 2]);
        lp.push(0xff);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        let e = listpack(&lp).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].int(), Some(5));
        assert_eq!(e[1].blob(), Blob::from("ok"));
        assert_eq!(e[2].int(), Some(-1));
    }
}
