//! DUMP and RESTORE: a string in Redis's own payload, every other type in
//! Meridian's own serialization of its visible value.
//!
//! A payload is laid out like Redis's: a type byte, the body, then a footer
//! of a 2-byte format version and an 8-byte CRC-64 (Jones, Redis's) of
//! everything before the CRC, both little-endian.
//!
//! A string's payload is exactly the one redis-server 7.0 gives for the
//! same bytes (RDB type 0, version 10, [`super::rdb::put_string`]), so a
//! string, a HyperLogLog or a bitmap DUMPed here RESTOREs on Redis, and
//! tools that compare DUMPs agree. Hashes, sets, lists, sorted sets and
//! streams keep Meridian's body (lengths as LEB128 varints), not RDB,
//! under a version no Redis uses: `0x4D01` ("M", format 1). RESTORE takes
//! that version besides Redis's, so a Redis server refuses these payloads
//! (its RDB version is far below `0x4D01`); string payloads written in
//! Meridian's format before strings moved to Redis's still restore.
//!
//! RESTORE also reads strings and streams DUMPed by Redis 7.0 or earlier
//! (their RDB encoding, [`super::rdb`]), so those move from Redis to
//! Meridian. Redis's payloads of other types are refused with Redis's
//! own error.
//!
//! A payload carries the visible value only: RESTORE writes it through the
//! same effects as client writes ([`super::plain`]), so the restored key
//! replicates to every region and merges like any write.

use bytes::Bytes;
use meridian_crdt::{Blob, StreamId};
use meridian_resp::Frame;

use super::plain::{plain, write_plain, Plain, PlainGroup, PlainStream};
use super::spec::{spec, Ctx, Spec, READ, WRITE};
use super::util::{eq_ignore_case, parse_int, syntax_error};
use crate::notify::{self, GENERIC};

/// The format version in the footer of every payload but a string's: "M"
/// and format 1.
pub const DUMP_VERSION: u16 = 0x4D01;
/// Footer bytes: the version, then the CRC-64.
const FOOTER_BYTES: usize = 2 + 8;

// Type bytes, numbered like Redis's RDB types of the same values (1, a
// list, is left for the list type).
const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
/// Redis's RDB type of a stream (`RDB_TYPE_STREAM_LISTPACKS`); the body
/// here is Meridian's own, like every other type's.
const TYPE_STREAM: u8 = 15;

pub fn specs() -> Vec<Spec> {
    vec![
        spec("dump", 2, READ, (1, 1, 1), dump),
        spec("restore", -4, WRITE, (1, 1, 1), restore),
    ]
}

fn dump(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match ctx.db().get(&args[1]) {
        Some(entry) => Frame::Bulk(Bytes::from(encode(&plain(entry.value())))),
        None => Frame::Null,
    }
}

/// RESTORE's options, parsed as Redis parses them.
#[derive(Default)]
struct RestoreOpts {
    replace: bool,
    absttl: bool,
    idle_s: Option<i64>,
    freq: Option<i64>,
}

fn restore_opts(args: &[Bytes]) -> Result<RestoreOpts, Frame> {
    let mut o = RestoreOpts::default();
    let mut j = 4;
    while j < args.len() {
        let more = args.len() - j - 1;
        let a = &args[j];
        if eq_ignore_case(a, "replace") {
            o.replace = true;
        } else if eq_ignore_case(a, "absttl") {
            o.absttl = true;
        } else if eq_ignore_case(a, "idletime") && more >= 1 && o.freq.is_none() {
            let idle = parse_int(&args[j + 1])?;
            if idle < 0 {
                return Err(Frame::error("ERR Invalid IDLETIME value, must be >= 0"));
            }
            o.idle_s = Some(idle);
            j += 1;
        } else if eq_ignore_case(a, "freq") && more >= 1 && o.idle_s.is_none() {
            let freq = parse_int(&args[j + 1])?;
            if !(0..=255).contains(&freq) {
                return Err(Frame::error(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            o.freq = Some(freq);
            j += 1;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(o)
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`,
/// checked in Redis's order: options, an existing key, the TTL, the
/// footer, the body. IDLETIME and FREQ are validated and then have no
/// effect: Meridian never evicts, so it keeps no access time or frequency.
fn restore(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let opts = match restore_opts(args) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let key = &args[1];
    if !opts.replace && ctx.db().get(key).is_some() {
        return Frame::error("BUSYKEY Target key name already exists.");
    }
    let ttl_ms = match parse_int(&args[2]) {
        Ok(t) if t < 0 => return Frame::error("ERR Invalid TTL value, must be >= 0"),
        Ok(t) => t as u64,
        Err(e) => return e,
    };
    let value = match decode(&args[3]) {
        Ok(v) => v,
        Err(DecodeError::Footer) => {
            return Frame::error("ERR DUMP payload version or checksum are wrong")
        }
        Err(DecodeError::Body) => return Frame::error("ERR Bad data format"),
    };
    let replaced = opts.replace && ctx.db().del(key);
    let now_ms = ctx.db().now_ms();
    let deadline_ms = match ttl_ms {
        0 => None,
        t if opts.absttl => Some(t),
        t => Some(t.saturating_add(now_ms)),
    };
    // A deadline already past leaves no key, as in Redis (which answers OK).
    if deadline_ms.is_some_and(|d| d <= now_ms) {
        if replaced {
            notify::emit(ctx, GENERIC, "del", key);
        }
        return Frame::ok();
    }
    write_plain(ctx.db(), key, value);
    if deadline_ms.is_some() {
        ctx.db().set_ttl(key, deadline_ms);
    }
    notify::emit(ctx, GENERIC, "restore", key);
    Frame::ok()
}

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Too short, another format version, or the checksum does not match.
    Footer,
    /// The footer is right but the body does not decode to a value.
    Body,
}

/// A visible value as a DUMP payload: a string as Redis 7.0 writes it,
/// any other type in Meridian's format.
pub fn encode(value: &Plain) -> Vec<u8> {
    let mut out = Vec::new();
    let version = match value {
        Plain::Str(_) => super::rdb::RDB_VERSION,
        _ => DUMP_VERSION,
    };
    match value {
        Plain::Str(s) => {
            out.push(TYPE_STRING);
            super::rdb::put_string(&mut out, s);
        }
        Plain::Hash(fields) => {
            out.push(TYPE_HASH);
            put_len(&mut out, fields.len());
            for (f, v) in fields {
                put_bytes(&mut out, f);
                put_bytes(&mut out, v);
            }
        }
        Plain::Set(members) => {
            out.push(TYPE_SET);
            put_len(&mut out, members.len());
            for m in members {
                put_bytes(&mut out, m);
            }
        }
        Plain::List(values) => {
            out.push(TYPE_LIST);
            put_len(&mut out, values.len());
            for v in values {
                put_bytes(&mut out, v);
            }
        }
        Plain::ZSet(members) => {
            out.push(TYPE_ZSET);
            put_len(&mut out, members.len());
            for (m, score) in members {
                put_bytes(&mut out, m);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        Plain::Stream(s) => {
            out.push(TYPE_STREAM);
            put_stream(&mut out, s);
        }
    }
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The value a payload holds, after checking its footer. Every length is
/// checked against the bytes that remain, so a damaged or hostile payload
/// allocates no more than its own size.
pub fn decode(payload: &[u8]) -> Result<Plain, DecodeError> {
    if payload.len() < 1 + FOOTER_BYTES {
        return Err(DecodeError::Footer);
    }
    if super::rdb::is_redis_string(payload, |b| crc64(0, b)) {
        return super::rdb::decode_string(payload)
            .map(Plain::Str)
            .ok_or(DecodeError::Body);
    }
    if super::rdb::is_redis_stream(payload, |b| crc64(0, b)) {
        return super::rdb::decode_stream(payload)
            .map(|s| Plain::Stream(Box::new(s)))
            .ok_or(DecodeError::Body);
    }
    let (signed, crc) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([signed[signed.len() - 2], signed[signed.len() - 1]]);
    let crc = u64::from_le_bytes(crc.try_into().map_err(|_| DecodeError::Footer)?);
    if version != DUMP_VERSION || crc64(0, signed) != crc {
        return Err(DecodeError::Footer);
    }
    let mut r = Reader {
        buf: &signed[..signed.len() - 2],
    };
    let value = match r.byte()? {
        // Meridian wrote strings in its own format before it wrote Redis's;
        // those payloads still restore.
        TYPE_STRING => Plain::Str(r.blob()?),
        TYPE_HASH => {
            let n = r.count(2)?;
            let mut fields = Vec::with_capacity(n);
            let mut seen = std::collections::HashSet::with_capacity(n);
            for _ in 0..n {
                let (f, v) = (r.blob()?, r.blob()?);
                if !seen.insert(f.clone()) {
                    return Err(DecodeError::Body);
                }
                fields.push((f, v));
            }
            Plain::Hash(fields)
        }
        TYPE_LIST => {
            let n = r.count(1)?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                values.push(r.blob()?);
            }
            Plain::List(values)
        }
        TYPE_SET => {
            let n = r.count(1)?;
            let mut members = Vec::with_capacity(n);
            let mut seen = std::collections::HashSet::with_capacity(n);
            for _ in 0..n {
                let m = r.blob()?;
                if !seen.insert(m.clone()) {
                    return Err(DecodeError::Body);
                }
                members.push(m);
            }
            Plain::Set(members)
        }
        TYPE_ZSET => {
            let n = r.count(9)?;
            let mut members = Vec::with_capacity(n);
            let mut seen = std::collections::HashSet::with_capacity(n);
            for _ in 0..n {
                let m = r.blob()?;
                let score =
                    f64::from_le_bytes(r.take(8)?.try_into().map_err(|_| DecodeError::Body)?);
                if score.is_nan() || !seen.insert(m.clone()) {
                    return Err(DecodeError::Body);
                }
                members.push((m, score));
            }
            Plain::ZSet(members)
        }
        TYPE_STREAM => Plain::Stream(Box::new(r.stream()?)),
        _ => return Err(DecodeError::Body),
    };
    // Trailing bytes or an empty collection (no key holds one) are damage.
    if !r.buf.is_empty() || value.is_empty() {
        return Err(DecodeError::Body);
    }
    Ok(value)
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
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

fn put_u64(out: &mut Vec<u8>, mut n: u64) {
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

fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_u64(out, id.ms);
    put_u64(out, id.seq);
}

/// A stream: its entries (ID, then the fields and values), the last ID,
/// entries added and largest deleted ID, then each group (name, last
/// delivered ID, read counter plus one or 0 for unknown, pending entries
/// as ID, consumer, delivery time, count, then consumers as name and the
/// time last seen).
fn put_stream(out: &mut Vec<u8>, s: &PlainStream) {
    put_len(out, s.entries.len());
    for (id, fields) in &s.entries {
        put_id(out, *id);
        put_len(out, fields.len());
        for f in fields {
            put_bytes(out, f);
        }
    }
    put_id(out, s.last_id);
    put_u64(out, s.entries_added);
    put_id(out, s.max_deleted);
    put_len(out, s.groups.len());
    for g in &s.groups {
        put_bytes(out, &g.name);
        put_id(out, g.last);
        put_u64(out, g.read.map_or(0, |n| n.saturating_add(1)));
        put_len(out, g.pending.len());
        for (id, consumer, delivered_ms, count) in &g.pending {
            put_id(out, *id);
            put_bytes(out, consumer);
            put_u64(out, *delivered_ms);
            put_u64(out, *count);
        }
        put_len(out, g.consumers.len());
        for (name, seen) in &g.consumers {
            put_bytes(out, name);
            put_u64(out, *seen);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Body)?;
        self.buf = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Body);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A LEB128 length of at most 64 bits.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| DecodeError::Body);
            }
        }
        Err(DecodeError::Body)
    }

    /// A LEB128 number of at most 64 bits.
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(DecodeError::Body);
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::Body)
    }

    fn id(&mut self) -> Result<StreamId, DecodeError> {
        Ok(StreamId::new(self.u64()?, self.u64()?))
    }

    /// A stream as [`put_stream`] lays it out; IDs must rise, fields come
    /// in pairs, names are unique and every pending entry's consumer is
    /// one of the group's.
    fn stream(&mut self) -> Result<PlainStream, DecodeError> {
        let n = self.count(3)?;
        let mut entries: Vec<(StreamId, Vec<Blob>)> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.id()?;
            if entries.last().is_some_and(|(prev, _)| *prev >= id) {
                return Err(DecodeError::Body);
            }
            let nf = self.count(1)?;
            if nf == 0 || nf % 2 == 1 {
                return Err(DecodeError::Body);
            }
            let mut fields = Vec::with_capacity(nf);
            for _ in 0..nf {
                fields.push(self.blob()?);
            }
            entries.push((id, fields));
        }
        let last_id = self.id()?;
        if entries.last().is_some_and(|(top, _)| *top > last_id) {
            return Err(DecodeError::Body);
        }
        let entries_added = self.u64()?;
        let max_deleted = self.id()?;
        let ng = self.count(5)?;
        let mut groups: Vec<PlainGroup> = Vec::with_capacity(ng);
        for _ in 0..ng {
            let name = self.blob()?;
            if groups.last().is_some_and(|g| g.name >= name) {
                return Err(DecodeError::Body);
            }
            let last = self.id()?;
            let read = self.u64()?.checked_sub(1);
            let np = self.count(5)?;
            let mut pending: Vec<(StreamId, Blob, u64, u64)> = Vec::with_capacity(np);
            for _ in 0..np {
                let id = self.id()?;
                if pending.last().is_some_and(|p| p.0 >= id) {
                    return Err(DecodeError::Body);
                }
                pending.push((id, self.blob()?, self.u64()?, self.u64()?));
            }
            let nc = self.count(2)?;
            let mut consumers: Vec<(Blob, u64)> = Vec::with_capacity(nc);
            for _ in 0..nc {
                let c = self.blob()?;
                if consumers.last().is_some_and(|(prev, _)| *prev >= c) {
                    return Err(DecodeError::Body);
                }
                consumers.push((c, self.u64()?));
            }
            if pending
                .iter()
                .any(|p| !consumers.iter().any(|(c, _)| *c == p.1))
            {
                return Err(DecodeError::Body);
            }
            groups.push(PlainGroup {
                name,
                last,
                read,
                pending,
                consumers,
            });
        }
        Ok(PlainStream {
            entries,
            last_id,
            entries_added,
            max_deleted,
            groups,
        })
    }

    fn blob(&mut self) -> Result<Blob, DecodeError> {
        let n = self.len()?;
        Ok(Blob::from(self.take(n)?))
    }

    /// An element count, each element needing at least `min_bytes`: a
    /// count the remaining bytes cannot hold is damage.
    fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.len()?;
        if n.saturating_mul(min_bytes) > self.buf.len() {
            return Err(DecodeError::Body);
        }
        Ok(n)
    }
}

/// CRC-64 with the Jones polynomial, reflected, as Redis's `crc64`
/// computes it (`crc64(0, "123456789") == 0xe9c6d914c4b8d9ca`).
pub fn crc64(mut crc: u64, bytes: &[u8]) -> u64 {
    const TABLE: [u64; 256] = crc64_table();
    for &b in bytes {
        crc = TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

const fn crc64_table() -> [u64; 256] {
    // The Jones polynomial 0xad93d23594c935a9, bit-reversed.
    const POLY_REFLECTED: u64 = 0x95ac9329ac4bc9b5;
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Blob {
        Blob::from(s.as_bytes())
    }

    /// Payloads redis-server 7.0.15 gave for DUMP of strings: raw, an
    /// integer, LZF-compressed, and a HyperLogLog (`PFADD h a b c`). Each
    /// restores its bytes here, and DUMP here gives the very same payload.
    #[test]
    fn redis_string_payloads_are_dumped_and_restored_byte_for_byte() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let cases = [
            ("000568656c6c6f0a006372df766534200a", b"hello".to_vec()),
            ("00c139300a009d94ea2793fc08b9", b"12345".to_vec()),
            (
                "00c30a3c02616261e02e010161620a00bb16d3ebae6fc574",
                "ab".repeat(30).into_bytes(),
            ),
            (
                "001b48594c4c01000000000000000000008060f38050b1844bfb80425a0a009f590c06b6497049",
                hex("48594c4c01000000000000000000008060f38050b1844bfb80425a"),
            ),
        ];
        for (payload, want) in cases {
            match decode(&hex(payload)) {
                Ok(Plain::Str(got)) => assert_eq!(got.as_bytes(), &want[..], "{payload}"),
                Ok(_) => panic!("{payload}: not a string"),
                Err(e) => panic!("{payload}: {e:?}"),
            }
            let dumped = encode(&Plain::Str(Blob::from(want.as_slice())));
            assert_eq!(dumped, hex(payload), "{want:?}");
        }
        // A damaged body behind a valid footer is refused.
        let mut bad = hex("000568656c6c6f0a006372df766534200a");
        bad[1] = 9;
        let n = bad.len();
        let crc = crc64(0, &bad[..n - 8]);
        bad[n - 8..].copy_from_slice(&crc.to_le_bytes());
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn integer_strings_take_redis_integer_encodings() {
        let body = |s: &str| {
            let p = encode(&Plain::Str(b(s)));
            p[1..p.len() - FOOTER_BYTES].to_vec()
        };
        assert_eq!(body("0"), [0xc0, 0]);
        assert_eq!(body("-1"), [0xc0, 0xff]);
        assert_eq!(body("-128"), [0xc0, 0x80]);
        assert_eq!(body("128"), [0xc1, 0x80, 0x00]);
        assert_eq!(body("-32769"), [0xc2, 0xff, 0x7f, 0xff, 0xff]);
        assert_eq!(body("2147483647"), [0xc2, 0xff, 0xff, 0xff, 0x7f]);
        // Too wide, not the canonical form, or too long: raw.
        for raw in [
            "2147483648",
            "12345678901",
            "007",
            "-0",
            "+1",
            " 1",
            "1 ",
            "",
        ] {
            let mut want = vec![raw.len() as u8];
            want.extend_from_slice(raw.as_bytes());
            assert_eq!(body(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn a_meridian_string_payload_still_restores() {
        // The format DUMP wrote for strings before it wrote Redis's.
        assert_eq!(
            decode(&sealed(b"\x00\x05hello")),
            Ok(Plain::Str(b("hello")))
        );
    }

    #[test]
    fn crc64_matches_redis_check_value() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn every_type_round_trips() {
        let values = [
            Plain::Str(b("")),
            Plain::Str(Blob::from(vec![7u8; 300].as_slice())),
            Plain::Hash(vec![(b("f"), b("v")), (b("g"), b(""))]),
            Plain::Set(vec![b("a"), b("1"), b("")]),
            Plain::ZSet(vec![(b("m"), -1.5), (b("n"), f64::INFINITY)]),
        ];
        for v in values {
            assert_eq!(decode(&encode(&v)), Ok(v));
        }
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let payload = encode(&Plain::Hash(vec![(b("field"), b("value"))]));
        for i in 0..payload.len() {
            for bit in 0..8 {
                let mut bad = payload.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(decode(&bad), Err(DecodeError::Footer), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_redis_payload_of_a_set_is_refused_by_its_version() {
        // `DUMP` of the set {a} on Redis 7.0.15: RDB version 10. Its
        // checksum is the one this module computes, so only the version
        // refuses it (Redis's strings and streams are read).
        let redis = b"\x02\x01\x01a\x0a\x00\x62\x96\xe9\x7e\x44\xd2\x1a\x6d";
        let (signed, crc) = redis.split_at(redis.len() - 8);
        assert_eq!(crc64(0, signed).to_le_bytes(), crc);
        assert_eq!(decode(redis), Err(DecodeError::Footer));
        // The string "bar" on Redis 7.0.15 is read.
        let bar = b"\x00\x03bar\x0a\x00\xe6\xbe\x49\x60\xee\x66\xfd\x17";
        assert_eq!(decode(bar), Ok(Plain::Str(b("bar"))));
    }

    /// `DUMP` of a stream on Redis 7.0.15 (RDB type 19, version 10): `XADD
    /// y 1-1 f v`, `XADD y 2-0 f 42 g x`, `XGROUP CREATE y g 0`,
    /// `XREADGROUP GROUP g alice COUNT 1 STREAMS y >`, `XDEL y 2-0`.
    #[test]
    fn a_redis_stream_payload_restores() {
        let hex = "13011000000000000000010000000000000001333300000013000101010101018166020001020100010001817602040101010101dfff0202018166022a018167028178020801ff01020001010200020101670101010100000000000000010000000000000001631cee51a2010000010105616c696365631cee51a201000001000000000000000100000000000000010a00b1ce76106fb22fa4";
        let payload: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let Ok(Plain::Stream(s)) = decode(&payload) else {
            panic!("{:?}", decode(&payload));
        };
        let id = StreamId::new;
        assert_eq!(s.entries, vec![(id(1, 1), vec![b("f"), b("v")])]);
        assert_eq!(s.last_id, id(2, 0));
        assert_eq!(s.max_deleted, id(2, 0));
        assert_eq!(s.entries_added, 2);
        assert_eq!(s.groups.len(), 1);
        let g = &s.groups[0];
        assert_eq!(
            (g.name.clone(), g.last, g.read),
            (b("g"), id(1, 1), Some(1))
        );
        assert_eq!(g.pending.len(), 1);
        assert_eq!(
            (g.pending[0].0, g.pending[0].1.clone()),
            (id(1, 1), b("alice"))
        );
        assert_eq!(g.consumers.len(), 1);
        // Any flipped byte of the body fails the checksum: refused.
        let mut bad = payload.clone();
        bad[5] ^= 1;
        assert_eq!(decode(&bad), Err(DecodeError::Footer));
    }

    /// Redis stream payloads with damaged bodies behind valid footers are
    /// refused, never a panic: every byte flipped, every length cut.
    #[test]
    fn damaged_redis_stream_payloads_are_refused() {
        let hex = "13011000000000000000010000000000000001333300000013000101010101018166020001020100010001817602040101010101dfff0202018166022a018167028178020801ff01020001010200020101670101010100000000000000010000000000000001631cee51a2010000010105616c696365631cee51a201000001000000000000000100000000000000010a00b1ce76106fb22fa4";
        let payload: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let body = &payload[..payload.len() - 10];
        let reseal = |body: &[u8]| {
            let mut out = body.to_vec();
            out.extend_from_slice(&10u16.to_le_bytes());
            let crc = crc64(0, &out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        };
        for i in 1..body.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = body.to_vec();
                bad[i] ^= x;
                let _ = decode(&reseal(&bad));
            }
            let _ = decode(&reseal(&body[..i]));
        }
    }

    #[test]
    fn a_stream_round_trips() {
        let id = StreamId::new;
        let s = PlainStream {
            entries: vec![
                (id(1, 0), vec![b("f"), b("v")]),
                (id(5, 9), vec![b("a"), b(""), b("b"), b("2")]),
            ],
            last_id: id(7, 0),
            entries_added: 4,
            max_deleted: id(6, 0),
            groups: vec![PlainGroup {
                name: b("g"),
                last: id(5, 9),
                read: None,
                pending: vec![(id(1, 0), b("c"), 1_000, 2)],
                consumers: vec![(b("c"), 2_000), (b("d"), 3_000)],
            }],
        };
        let v = Plain::Stream(Box::new(s));
        assert_eq!(decode(&encode(&v)), Ok(v));
        // An empty stream is a stream (Redis keeps one).
        let empty = Plain::Stream(Box::new(PlainStream {
            entries: Vec::new(),
            last_id: id(3, 0),
            entries_added: 1,
            max_deleted: StreamId::ZERO,
            groups: Vec::new(),
        }));
        assert_eq!(decode(&encode(&empty)), Ok(empty));
    }

    /// A body that lies about its lengths, behind a valid footer.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&DUMP_VERSION.to_le_bytes());
        let crc = crc64(0, &out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn damaged_bodies_behind_valid_footers_are_bad_data() {
        for body in [
            &b"\x09"[..],                                        // unknown type
            b"\x00\x05ab",                                       // string longer than the body
            b"\x04\xff\xff\xff\xff\x0f",                         // count the body cannot hold
            b"\x02\x02\x01a\x01a",                               // duplicate set member
            b"\x02\x00",                                         // empty set
            b"\x00\x01ab",                                       // trailing byte
            b"\x03\x01\x01m\x00\x00\x00\x00\x00\x00\xf8\x7f",    // NaN score
            b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // length over 64 bits
        ] {
            assert_eq!(decode(&sealed(body)), Err(DecodeError::Body), "{body:?}");
        }
    }
}
