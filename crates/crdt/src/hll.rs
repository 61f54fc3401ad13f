//! HyperLogLog values byte for byte as Redis 7.0 encodes them, so `GET`,
//! `DUMP` and `PFCOUNT` of a HyperLogLog answer here what redis-server
//! answers after the same commands.
//!
//! A HyperLogLog is a string: a 16-byte header (`HYLL`, the encoding, three
//! unused bytes, then the cached cardinality as a little-endian u64 whose
//! top bit marks it stale) followed by 16384 six-bit registers, either
//! - *dense*: 12288 bytes, register `i` in bits `6i .. 6i + 6` counted from
//!   the least significant bit of the first byte; or
//! - *sparse*: run-length opcodes, ZERO `00rrrrrr` (1–64 zero registers),
//!   XZERO `01rrrrrr rrrrrrrr` (1–16384 zero registers) and VAL
//!   `1vvvvvrr` (1–4 registers holding 1–32), each field one less than
//!   what it stands for.
//!
//! An element raises one register: the hash's low 14 bits pick it, and the
//! position of the lowest set bit of the other 50 (plus one) is the value.
//!
//! Redis edits a sparse value in place: it splits the opcode covering the
//! register and then merges equal VAL neighbours within five opcodes. The
//! bytes therefore depend on the order registers were raised in, and
//! [`Hll::set`] makes the same edits in the same order. A sparse value
//! turns dense, for good, when a register needs more than 32 or an edit
//! would grow it past `hll-sparse-max-bytes`.
//!
//! Damaged values fail where Redis's fail: the header is checked by every
//! command ([`Hll::parse`], `WRONGTYPE`), the opcodes only when something
//! reads them ([`Corrupt`], `INVALIDOBJ`), and a two-byte opcode cut short
//! reads its missing byte as zero (the terminator of a Redis string).
//!
//! [`crate::patch`] uses three functions: [`is_hll`], [`registers`] and
//! [`raise`], which let concurrent `PFADD`s in different regions count as
//! their union.

use thiserror::Error;

/// Registers a HyperLogLog holds: one per value of the hash's low bits.
pub const REGISTERS: usize = 1 << INDEX_BITS;
/// Magic, encoding, three unused bytes, cached cardinality.
pub const HEADER_BYTES: usize = 16;
/// A dense value: the header and 16384 six-bit registers.
pub const DENSE_BYTES: usize = HEADER_BYTES + REGISTERS * 6 / 8;
/// Redis's default `hll-sparse-max-bytes`.
pub const SPARSE_MAX_BYTES_DEFAULT: usize = 3000;

const INDEX_BITS: u32 = 14;
/// Hash bits left once the index is taken; a register reaches Q + 1 at most.
const Q: usize = 64 - INDEX_BITS as usize;
const REGISTER_MAX: u8 = 63;
const HASH_SEED: u64 = 0xadc8_3b19;
const MAGIC: &[u8; 4] = b"HYLL";
const ENCODING_AT: usize = 4;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// Byte 15, the cache's most significant byte: its top bit marks it stale.
const STALE_AT: usize = 15;
const STALE_BIT: u8 = 0x80;
const SPARSE_VAL_MAX: u8 = 32;
const SPARSE_VAL_RUN_MAX: usize = 4;
const SPARSE_ZERO_RUN_MAX: usize = 64;
const SPARSE_XZERO_RUN_MAX: usize = 16384;
/// How many opcodes from the one before an edit Redis tries to merge.
const MERGE_SCAN_OPCODES: usize = 5;
/// The estimator's constant, 1 / (2 ln 2).
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The string is not a HyperLogLog: its header is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
pub struct NotHll;

/// The header is right but the sparse opcodes do not cover the 16384
/// registers exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("INVALIDOBJ Corrupted HLL object detected")]
pub struct Corrupt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Dense,
    Sparse,
}

impl Encoding {
    /// The word `PFDEBUG ENCODING` answers.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Dense => "dense",
            Encoding::Sparse => "sparse",
        }
    }
}

/// A HyperLogLog whose header Redis would accept (its sparse opcodes are
/// checked only as they are read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hll {
    bytes: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Hll {
        Hll::new()
    }
}

impl Hll {
    /// An empty HyperLogLog as Redis creates one: sparse, one XZERO
    /// opcode, a valid cached cardinality of 0.
    pub fn new() -> Hll {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + 2);
        bytes.extend_from_slice(MAGIC);
        bytes.push(SPARSE);
        bytes.resize(HEADER_BYTES, 0);
        push_zeros(&mut bytes, REGISTERS);
        Hll { bytes }
    }

    /// `bytes` if their header is one Redis accepts: the magic, a known
    /// encoding, and exactly 12304 bytes when dense.
    pub fn parse(bytes: Vec<u8>) -> Result<Hll, NotHll> {
        header(&bytes)?;
        Ok(Hll { bytes })
    }

    pub fn encoding(&self) -> Encoding {
        if self.bytes[ENCODING_AT] == DENSE {
            Encoding::Dense
        } else {
            Encoding::Sparse
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The cached cardinality, unless a change made it stale.
    pub fn cached_count(&self) -> Option<u64> {
        if self.bytes[STALE_AT] & STALE_BIT != 0 {
            return None;
        }
        let mut le = [0u8; 8];
        le.copy_from_slice(&self.bytes[8..HEADER_BYTES]);
        Some(u64::from_le_bytes(le))
    }

    pub fn set_cached_count(&mut self, count: u64) {
        self.bytes[8..HEADER_BYTES].copy_from_slice(&count.to_le_bytes());
    }

    pub fn invalidate_cache(&mut self) {
        self.bytes[STALE_AT] |= STALE_BIT;
    }

    /// Adds an element: raises the register its hash picks. True if the
    /// register changed.
    pub fn add(&mut self, element: &[u8], sparse_max_bytes: usize) -> Result<bool, Corrupt> {
        let (index, count) = hash(element);
        self.set(usize::from(index), count, sparse_max_bytes)
    }

    /// Raises register `index` to `count` if it holds less, as Redis does
    /// (see the module docs). True if the register changed. The cached
    /// cardinality is left alone: the command that changed the registers
    /// marks it stale. A register index out of range or a count of 0 raises
    /// nothing; counts above 63 are taken as 63.
    pub fn set(
        &mut self,
        index: usize,
        count: u8,
        sparse_max_bytes: usize,
    ) -> Result<bool, Corrupt> {
        if index >= REGISTERS || count == 0 {
            return Ok(false);
        }
        let count = count.min(REGISTER_MAX);
        match self.encoding() {
            Encoding::Dense => Ok(dense_raise(&mut self.bytes[HEADER_BYTES..], index, count)),
            Encoding::Sparse => self.sparse_set(index, count, sparse_max_bytes),
        }
    }

    /// The sparse form of [`Hll::set`]: find the opcode covering `index`,
    /// rewrite it, merge neighbours.
    fn sparse_set(
        &mut self,
        index: usize,
        count: u8,
        sparse_max_bytes: usize,
    ) -> Result<bool, Corrupt> {
        if count > SPARSE_VAL_MAX {
            return self.promote(index, count);
        }
        let end = self.bytes.len();
        let mut at = HEADER_BYTES;
        let mut first = 0;
        let mut prev = None;
        let mut found = None;
        // The walk decodes lengths inline: it is the hot loop of PFADD and
        // of every read of a patched sparse value.
        while at < end {
            let b = self.bytes[at];
            let (run, len) = if b & 0xc0 == 0x40 {
                let low = self.bytes.get(at + 1).copied().unwrap_or(0);
                ((usize::from(b & 0x3f) << 8 | usize::from(low)) + 1, 2)
            } else if b & 0x80 != 0 {
                (usize::from(b & 0x03) + 1, 1)
            } else {
                (usize::from(b & 0x3f) + 1, 1)
            };
            if index < first + run {
                found = Some(Opcode::read(&self.bytes, at));
                break;
            }
            prev = Some(at);
            at += len;
            first += run;
        }
        let Some((op, op_len)) = found else {
            return Err(Corrupt);
        };
        let last = first + op.run() - 1;
        match op {
            Opcode::Val { value, .. } if value >= count => return Ok(false),
            Opcode::Val { run: 1, .. } | Opcode::Zero(1) => {
                self.bytes[at] = val_byte(count, 1);
                self.merge_vals(prev.unwrap_or(HEADER_BYTES));
                return Ok(true);
            }
            _ => {}
        }
        // Split the opcode around the register: at most XZERO, VAL, XZERO.
        let mut seq = Vec::with_capacity(5);
        match op {
            Opcode::Val { value, .. } => {
                if index != first {
                    seq.push(val_byte(value, index - first));
                }
                seq.push(val_byte(count, 1));
                if index != last {
                    seq.push(val_byte(value, last - index));
                }
            }
            Opcode::Zero(_) | Opcode::XZero(_) => {
                if index != first {
                    push_zeros(&mut seq, index - first);
                }
                seq.push(val_byte(count, 1));
                if index != last {
                    push_zeros(&mut seq, last - index);
                }
            }
        }
        let grown_len = end + seq.len();
        if seq.len() > op_len && grown_len - op_len > sparse_max_bytes {
            return self.promote(index, count);
        }
        // An XZERO cut short by the end of the string counts its missing
        // byte in the length it replaces, as Redis's in-place copy does.
        self.bytes
            .splice(at..(at + op_len).min(end), seq.iter().copied());
        self.bytes.truncate(grown_len - op_len);
        self.merge_vals(prev.unwrap_or(HEADER_BYTES));
        Ok(true)
    }

    /// Merges adjacent VAL opcodes of one value whose runs fit in one,
    /// scanning five opcodes from `from`, as Redis does after an edit.
    fn merge_vals(&mut self, from: usize) {
        let mut at = from;
        let mut scan = MERGE_SCAN_OPCODES;
        while at < self.bytes.len() && scan > 0 {
            scan -= 1;
            let b = self.bytes[at];
            if b & 0xc0 == 0x40 {
                at += 2;
                continue;
            }
            if b & 0xc0 == 0 {
                at += 1;
                continue;
            }
            if let Some(&next) = self.bytes.get(at + 1) {
                let ((v1, r1), (v2, r2)) = (val_fields(b), val_fields(next));
                if next & 0x80 != 0 && v1 == v2 && r1 + r2 <= SPARSE_VAL_RUN_MAX {
                    self.bytes[at + 1] = val_byte(v1, r1 + r2);
                    self.bytes.remove(at);
                    continue;
                }
            }
            at += 1;
        }
    }

    /// Turns dense, then raises the register there.
    fn promote(&mut self, index: usize, count: u8) -> Result<bool, Corrupt> {
        self.to_dense()?;
        Ok(dense_raise(&mut self.bytes[HEADER_BYTES..], index, count))
    }

    /// Converts a sparse value to dense, keeping the header's other bytes
    /// (the cache included). True if it was sparse.
    pub fn to_dense(&mut self) -> Result<bool, Corrupt> {
        if self.encoding() == Encoding::Dense {
            return Ok(false);
        }
        let mut regs = [0u8; REGISTERS];
        sparse_max_into(&self.bytes[HEADER_BYTES..], &mut regs)?;
        let mut dense = vec![0u8; DENSE_BYTES];
        dense[..HEADER_BYTES].copy_from_slice(&self.bytes[..HEADER_BYTES]);
        dense[ENCODING_AT] = DENSE;
        for (i, &v) in regs.iter().enumerate() {
            if v != 0 {
                dense_write(&mut dense[HEADER_BYTES..], i, v);
            }
        }
        self.bytes = dense;
        Ok(true)
    }

    /// Raises each of `max` to this value's register (Redis's merge step of
    /// PFMERGE and of PFCOUNT over several keys).
    pub fn max_into(&self, max: &mut [u8; REGISTERS]) -> Result<(), Corrupt> {
        match self.encoding() {
            Encoding::Dense => {
                for (m, r) in max
                    .iter_mut()
                    .zip(dense_unpack(&self.bytes[HEADER_BYTES..]))
                {
                    *m = (*m).max(r);
                }
                Ok(())
            }
            Encoding::Sparse => sparse_max_into(&self.bytes[HEADER_BYTES..], max),
        }
    }

    /// Every register.
    pub fn registers(&self) -> Result<[u8; REGISTERS], Corrupt> {
        let mut regs = [0u8; REGISTERS];
        self.max_into(&mut regs)?;
        Ok(regs)
    }

    /// The estimated cardinality, computed afresh (the cache is not read).
    pub fn count(&self) -> Result<u64, Corrupt> {
        let mut histogram = [0u64; 64];
        match self.encoding() {
            Encoding::Dense => {
                for r in dense_unpack(&self.bytes[HEADER_BYTES..]) {
                    histogram[usize::from(r)] += 1;
                }
            }
            Encoding::Sparse => {
                if !sparse_histogram(&self.bytes[HEADER_BYTES..], &mut histogram) {
                    return Err(Corrupt);
                }
            }
        }
        Ok(estimate(&histogram))
    }

    /// The sparse opcodes as `PFDEBUG DECODE` lists them (`z:` ZERO, `Z:`
    /// XZERO, `v:value,run` VAL); None when dense.
    pub fn decode(&self) -> Option<String> {
        if self.encoding() == Encoding::Dense {
            return None;
        }
        let mut words = Vec::new();
        let mut at = HEADER_BYTES;
        while at < self.bytes.len() {
            let (op, len) = Opcode::read(&self.bytes, at);
            words.push(match op {
                Opcode::Zero(run) => format!("z:{run}"),
                Opcode::XZero(run) => format!("Z:{run}"),
                Opcode::Val { value, run } => format!("v:{value},{run}"),
            });
            at += len;
        }
        Some(words.join(" "))
    }
}

/// True if `bytes` are a HyperLogLog Redis would accept and could count:
/// the header checks of [`Hll::parse`], and sparse opcodes that cover the
/// 16384 registers exactly.
pub fn is_hll(bytes: &[u8]) -> bool {
    match header(bytes) {
        Ok(Encoding::Dense) => true,
        Ok(Encoding::Sparse) => {
            let mut histogram = [0u64; 64];
            sparse_histogram(&bytes[HEADER_BYTES..], &mut histogram)
        }
        Err(NotHll) => false,
    }
}

/// The non-zero registers of a HyperLogLog, by index (None if `bytes` are
/// not one, [`is_hll`]).
pub fn registers(bytes: &[u8]) -> Option<Vec<(u16, u8)>> {
    if !is_hll(bytes) {
        return None;
    }
    let regs = Hll {
        bytes: bytes.to_vec(),
    }
    .registers()
    .ok()?;
    Some((0u16..).zip(regs).filter(|&(_, v)| v != 0).collect())
}

/// `bytes` (empty: a new HyperLogLog) with each register raised to at
/// least its value, in order, with Redis's default `hll-sparse-max-bytes`
/// (see [`raise_with`]).
pub fn raise(bytes: &[u8], regs: &[(u16, u8)]) -> Option<Vec<u8>> {
    raise_with(bytes, regs, SPARSE_MAX_BYTES_DEFAULT)
}

/// `bytes` (empty: a new HyperLogLog) with each register raised to at
/// least its value, in order, as Redis raises them; the cached cardinality
/// goes stale if a register changed. None if `bytes` are not a HyperLogLog
/// ([`is_hll`]).
pub fn raise_with(bytes: &[u8], regs: &[(u16, u8)], sparse_max_bytes: usize) -> Option<Vec<u8>> {
    let mut hll = if bytes.is_empty() {
        Hll::new()
    } else if is_hll(bytes) {
        Hll {
            bytes: bytes.to_vec(),
        }
    } else {
        return None;
    };
    let mut changed = false;
    for &(index, value) in regs {
        changed |= hll.set(usize::from(index), value, sparse_max_bytes).ok()?;
    }
    if changed {
        hll.invalidate_cache();
    }
    Some(hll.into_bytes())
}

/// The register an element raises and the value it raises it to, as Redis
/// hashes it: MurmurHash64A, seed `0xadc83b19`; the low 14 bits pick the
/// register, and the value is one more than the number of zero bits below
/// the lowest set bit of the rest (at most 51).
pub fn hash(element: &[u8]) -> (u16, u8) {
    let h = murmur_hash64a(element, HASH_SEED);
    let index = (h & (REGISTERS as u64 - 1)) as u16;
    let rest = (h >> INDEX_BITS) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// MurmurHash64A (MurmurHash2, 64-bit), reading 8-byte words little-endian
/// as Redis's endian-neutral copy does.
pub fn murmur_hash64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut k = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The estimated cardinality of registers given one per index (values
/// above 63 are not expected), as PFCOUNT of several keys counts their
/// union.
pub fn count_registers(regs: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u64; 64];
    for &r in regs {
        histogram[usize::from(r & REGISTER_MAX)] += 1;
    }
    estimate(&histogram)
}

/// Redis 7's estimator (Ertl, "New cardinality estimation algorithms for
/// HyperLogLog sketches", 2017) from the histogram of register values.
/// Values above Q + 1 cannot come from a hash and are left out, as Redis
/// leaves them out.
fn estimate(histogram: &[u64; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histogram[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += histogram[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histogram[0] as f64 / m);
    round_to_i64(ALPHA_INF * m * m / z) as u64
}

/// Rounds half away from zero to an i64 as C's `llroundl` does on x86-64:
/// a result out of range (or not a number) is `i64::MIN`.
fn round_to_i64(x: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let r = x.round();
    if r.is_nan() || !(-LIMIT..LIMIT).contains(&r) {
        i64::MIN
    } else {
        r as i64
    }
}

/// The estimator's σ(x) = x + Σ x^(2^k) 2^(k-1), summed until it stops
/// changing.
fn sigma(x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut x = x;
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// The estimator's τ(x) = (1 - x - Σ (1 - x^(2^-k))² 2^-k) / 3, summed
/// until it stops changing.
fn tau(x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut x = x;
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// Redis's `PFSELFTEST`: registers written and read back over 1000 rounds
/// of random values, then 10 million distinct elements added to a dense
/// and a sparse HyperLogLog, checking at every power of ten that the two
/// agree, that the sparse one stayed sparse while small, and that the
/// estimate is within six standard errors. `seed` stands for Redis's
/// `rand()`; the error is Redis's text.
pub fn self_test(seed: u64, sparse_max_bytes: usize) -> Result<(), String> {
    let mut rng = SplitMix64(seed);
    registers_round_trip(&mut rng, 1000)?;
    estimates_hold(rng.next(), sparse_max_bytes, 10_000_000)
}

/// The first half of [`self_test`]: `rounds` of random register values.
fn registers_round_trip(rng: &mut SplitMix64, rounds: usize) -> Result<(), String> {
    let mut dense = vec![0u8; DENSE_BYTES - HEADER_BYTES];
    let mut expected = [0u8; REGISTERS];
    for _ in 0..rounds {
        for (i, e) in expected.iter_mut().enumerate() {
            *e = (rng.next() as u8) & REGISTER_MAX;
            dense_write(&mut dense, i, *e);
        }
        for (i, &e) in expected.iter().enumerate() {
            let got = dense_read(&dense, i);
            if got != e {
                return Err(format!(
                    "TESTFAILED Register {i} should be {e} but is {got}"
                ));
            }
        }
    }
    Ok(())
}

/// The second half of [`self_test`]: elements `1 ..= elements` XORed with
/// `seed`, as 8 little-endian bytes.
fn estimates_hold(seed: u64, sparse_max_bytes: usize, elements: u64) -> Result<(), String> {
    let mut dense = Hll::new();
    dense.bytes.truncate(HEADER_BYTES);
    dense.bytes.resize(DENSE_BYTES, 0);
    dense.bytes[ENCODING_AT] = DENSE;
    let mut sparse = Hll::new();
    let relative_error = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for j in 1..=elements {
        let element = (j ^ seed).to_le_bytes();
        let corrupt = |_| "TESTFAILED dense/sparse disagree".to_string();
        dense.add(&element, sparse_max_bytes).map_err(corrupt)?;
        sparse.add(&element, sparse_max_bytes).map_err(corrupt)?;
        if j != checkpoint {
            continue;
        }
        if j < (sparse_max_bytes / 2) as u64 && sparse.encoding() != Encoding::Sparse {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let count = dense.count().map_err(corrupt)?;
        if sparse.count().map_err(corrupt)? != count {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let error = checkpoint.abs_diff(count);
        let allowed = if j == 10 {
            1
        } else {
            (relative_error * 6.0 * checkpoint as f64).ceil() as u64
        };
        if error > allowed {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{error}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

/// A small deterministic generator for the self test (the caller seeds it).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The header checks of Redis's `isHLLObjectOrReply`.
fn header(bytes: &[u8]) -> Result<Encoding, NotHll> {
    if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
        return Err(NotHll);
    }
    match bytes[ENCODING_AT] {
        DENSE if bytes.len() == DENSE_BYTES => Ok(Encoding::Dense),
        SPARSE => Ok(Encoding::Sparse),
        _ => Err(NotHll),
    }
}

/// One sparse opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Zero(usize),
    XZero(usize),
    Val { value: u8, run: usize },
}

impl Opcode {
    /// The opcode at `at` and its length in bytes (a byte past the end
    /// reads as zero).
    fn read(bytes: &[u8], at: usize) -> (Opcode, usize) {
        let b = bytes[at];
        match b & 0xc0 {
            0x00 => (Opcode::Zero(usize::from(b & 0x3f) + 1), 1),
            0x40 => {
                let low = bytes.get(at + 1).copied().unwrap_or(0);
                let run = (usize::from(b & 0x3f) << 8 | usize::from(low)) + 1;
                (Opcode::XZero(run), 2)
            }
            _ => {
                let (value, run) = val_fields(b);
                (Opcode::Val { value, run }, 1)
            }
        }
    }

    /// Registers covered.
    fn run(self) -> usize {
        match self {
            Opcode::Zero(run) | Opcode::XZero(run) | Opcode::Val { run, .. } => run,
        }
    }
}

/// The value and run of a VAL opcode's byte.
fn val_fields(b: u8) -> (u8, usize) {
    (((b >> 2) & 0x1f) + 1, usize::from(b & 0x03) + 1)
}

/// A VAL opcode: `run` (1–4) registers holding `value` (1–32).
fn val_byte(value: u8, run: usize) -> u8 {
    debug_assert!((1..=SPARSE_VAL_MAX).contains(&value) && (1..=SPARSE_VAL_RUN_MAX).contains(&run));
    0x80 | ((value - 1) << 2) | (run - 1) as u8
}

/// One ZERO opcode for up to 64 zero registers, one XZERO for more.
fn push_zeros(out: &mut Vec<u8>, run: usize) {
    debug_assert!((1..=SPARSE_XZERO_RUN_MAX).contains(&run));
    if run > SPARSE_ZERO_RUN_MAX {
        let n = run - 1;
        out.push(0x40 | (n >> 8) as u8);
        out.push((n & 0xff) as u8);
    } else {
        out.push((run - 1) as u8);
    }
}

/// Counts register values over a sparse body; true if the opcodes cover
/// exactly 16384 registers (how PFCOUNT reads a sparse value).
fn sparse_histogram(body: &[u8], histogram: &mut [u64; 64]) -> bool {
    let mut covered = 0usize;
    let mut at = 0;
    while at < body.len() {
        let b = body[at];
        if b & 0x80 != 0 {
            let (value, run) = val_fields(b);
            histogram[usize::from(value)] += run as u64;
            covered += run;
            at += 1;
        } else {
            let (run, len) = zeros_at(body, at);
            histogram[0] += run as u64;
            covered += run;
            at += len;
        }
    }
    covered == REGISTERS
}

/// The run and length of the ZERO or XZERO opcode at `at` (a byte past
/// the end reads as zero).
fn zeros_at(body: &[u8], at: usize) -> (usize, usize) {
    let b = body[at];
    if b & 0x40 == 0 {
        return (usize::from(b & 0x3f) + 1, 1);
    }
    let low = body.get(at + 1).copied().unwrap_or(0);
    ((usize::from(b & 0x3f) << 8 | usize::from(low)) + 1, 2)
}

/// Raises `max` to a sparse body's registers, as PFMERGE and the dense
/// conversion read it: a VAL running past the last register ends the
/// walk, and the body is valid if the walk covered exactly 16384.
fn sparse_max_into(body: &[u8], max: &mut [u8; REGISTERS]) -> Result<(), Corrupt> {
    let mut i = 0usize;
    let mut at = 0;
    while at < body.len() {
        let b = body[at];
        if b & 0x80 != 0 {
            let (value, run) = val_fields(b);
            if i + run > REGISTERS {
                break;
            }
            for m in &mut max[i..i + run] {
                *m = (*m).max(value);
            }
            i += run;
            at += 1;
        } else {
            let (run, len) = zeros_at(body, at);
            i += run;
            at += len;
        }
    }
    if i == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Every register of a dense body: four in each three bytes.
fn dense_unpack(regs: &[u8]) -> [u8; REGISTERS] {
    let mut out = [0u8; REGISTERS];
    for (four, three) in out.chunks_exact_mut(4).zip(regs.chunks_exact(3)) {
        let (b0, b1, b2) = (three[0], three[1], three[2]);
        four[0] = b0 & REGISTER_MAX;
        four[1] = (b0 >> 6 | b1 << 2) & REGISTER_MAX;
        four[2] = (b1 >> 4 | b2 << 4) & REGISTER_MAX;
        four[3] = b2 >> 2;
    }
    out
}

/// Register `i` of a dense body.
fn dense_read(regs: &[u8], i: usize) -> u8 {
    let (byte, shift) = (i * 6 / 8, i * 6 % 8);
    let low = u16::from(regs[byte]) >> shift;
    let high = u16::from(regs.get(byte + 1).copied().unwrap_or(0)) << (8 - shift);
    ((low | high) & u16::from(REGISTER_MAX)) as u8
}

/// Writes register `i` of a dense body (`value` at most 63).
fn dense_write(regs: &mut [u8], i: usize, value: u8) {
    let (byte, shift) = (i * 6 / 8, i * 6 % 8);
    let (mask, value) = (u16::from(REGISTER_MAX), u16::from(value));
    regs[byte] &= !((mask << shift) as u8);
    regs[byte] |= (value << shift) as u8;
    if let Some(next) = regs.get_mut(byte + 1) {
        *next &= !((mask >> (8 - shift)) as u8);
        *next |= (value >> (8 - shift)) as u8;
    }
}

/// Raises register `i` of a dense body to `count`; true if it changed.
fn dense_raise(regs: &mut [u8], i: usize, count: u8) -> bool {
    if dense_read(regs, i) >= count {
        return false;
    }
    dense_write(regs, i, count);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redis-server 7.0.15's value after `PFADD h a b c`.
    const REDIS_ABC: &[u8] = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x60\xf3\x80\x50\xb1\x84\x4b\xfb\x80\x42\x5a";

    fn pfadd(hll: &mut Hll, elements: impl IntoIterator<Item = Vec<u8>>) -> bool {
        let mut changed = false;
        for e in elements {
            changed |= hll.add(&e, SPARSE_MAX_BYTES_DEFAULT).unwrap();
        }
        if changed {
            hll.invalidate_cache();
        }
        changed
    }

    fn numbers(range: std::ops::RangeInclusive<u32>) -> impl Iterator<Item = Vec<u8>> {
        range.map(|i| i.to_string().into_bytes())
    }

    #[test]
    fn a_new_value_is_redis_empty_sparse_one() {
        let hll = Hll::new();
        let mut want = b"HYLL\x01".to_vec();
        want.resize(HEADER_BYTES, 0);
        want.extend([0x7f, 0xff]);
        assert_eq!(hll.as_bytes(), &want[..]);
        assert!(is_hll(hll.as_bytes()));
        assert_eq!(hll.cached_count(), Some(0));
        assert_eq!(hll.count(), Ok(0));
        assert_eq!(registers(hll.as_bytes()), Some(Vec::new()));
    }

    #[test]
    fn adding_elements_writes_the_bytes_redis_writes() {
        let mut hll = Hll::new();
        assert!(pfadd(
            &mut hll,
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        ));
        assert_eq!(hll.as_bytes(), REDIS_ABC);
        assert_eq!(
            registers(REDIS_ABC),
            Some(vec![(8436, 1), (12711, 2), (15780, 1)])
        );
        assert_eq!(
            hll.decode().as_deref(),
            Some("Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603")
        );
        assert!(!pfadd(&mut hll, [b"a".to_vec(), b"c".to_vec()]));
        assert_eq!(hll.count(), Ok(3));
    }

    #[test]
    fn the_estimate_is_redis_estimate() {
        // redis-server 7.0.15: PFADD of 1..=1000 counts 1001 (still sparse),
        // of e1..=e100000 counts 100853 (dense).
        let mut small = Hll::new();
        pfadd(&mut small, numbers(1..=1000));
        assert_eq!(small.encoding(), Encoding::Sparse);
        assert_eq!(small.as_bytes().len(), 1922);
        assert_eq!(small.count(), Ok(1001));
        let mut large = Hll::new();
        pfadd(
            &mut large,
            (1..=100_000).map(|i| format!("e{i}").into_bytes()),
        );
        assert_eq!(large.encoding(), Encoding::Dense);
        assert_eq!(large.count(), Ok(100_853));
        assert_eq!(count_registers(&large.registers().unwrap()), 100_853);
    }

    #[test]
    fn hashing_follows_redis() {
        // The three registers of REDIS_ABC, one element each.
        let mut got: Vec<(u16, u8)> = [&b"a"[..], b"b", b"c"].iter().map(|e| hash(e)).collect();
        got.sort();
        assert_eq!(got, vec![(8436, 1), (12711, 2), (15780, 1)]);
        assert_eq!(murmur_hash64a(b"", 0), 0);
        assert!(hash(&[0u8; 1000]).1 <= 51);
    }

    #[test]
    fn sparse_and_dense_hold_the_same_registers() {
        let mut sparse = Hll::new();
        pfadd(&mut sparse, numbers(1..=500));
        let mut dense = sparse.clone();
        assert_eq!(dense.to_dense(), Ok(true));
        assert_eq!(dense.to_dense(), Ok(false));
        assert_eq!(dense.as_bytes().len(), DENSE_BYTES);
        assert_eq!(dense.as_bytes()[..4], sparse.as_bytes()[..4]);
        assert_eq!(
            dense.as_bytes()[5..HEADER_BYTES],
            sparse.as_bytes()[5..HEADER_BYTES]
        );
        assert_eq!(sparse.registers(), dense.registers());
        assert_eq!(sparse.count(), dense.count());
        assert_eq!(registers(sparse.as_bytes()), registers(dense.as_bytes()));
        assert!(dense.decode().is_none());
    }

    #[test]
    fn a_value_above_32_turns_sparse_dense() {
        let mut hll = Hll::new();
        assert_eq!(hll.set(5, 32, SPARSE_MAX_BYTES_DEFAULT), Ok(true));
        assert_eq!(hll.encoding(), Encoding::Sparse);
        assert_eq!(hll.set(6, 33, SPARSE_MAX_BYTES_DEFAULT), Ok(true));
        assert_eq!(hll.encoding(), Encoding::Dense);
        assert_eq!(registers(hll.as_bytes()), Some(vec![(5, 32), (6, 33)]));
        assert_eq!(hll.set(6, 200, SPARSE_MAX_BYTES_DEFAULT), Ok(true));
        assert_eq!(hll.registers().unwrap()[6], REGISTER_MAX);
        assert_eq!(hll.set(REGISTERS, 3, SPARSE_MAX_BYTES_DEFAULT), Ok(false));
    }

    #[test]
    fn growing_past_the_sparse_limit_turns_dense() {
        let mut hll = Hll::new();
        let mut i = 0;
        while hll.encoding() == Encoding::Sparse {
            assert!(hll.as_bytes().len() <= 100);
            i += 1;
            hll.add(i.to_string().as_bytes(), 100).unwrap();
        }
        let mut sparse = Hll::new();
        pfadd(&mut sparse, numbers(1..=i));
        assert_eq!(sparse.registers(), hll.registers());
        // With no room to grow at all, the first split promotes.
        let mut tight = Hll::new();
        assert_eq!(tight.set(100, 1, 0), Ok(true));
        assert_eq!(tight.encoding(), Encoding::Dense);
    }

    #[test]
    fn equal_neighbours_merge_in_redis_order() {
        let max = SPARSE_MAX_BYTES_DEFAULT;
        let mut up = Hll::new();
        for i in 0..6 {
            up.set(i, 1, max).unwrap();
        }
        assert_eq!(up.decode().as_deref(), Some("v:1,4 v:1,2 Z:16378"));
        let mut down = Hll::new();
        for i in (0..6).rev() {
            down.set(i, 1, max).unwrap();
        }
        assert_eq!(down.decode().as_deref(), Some("v:1,2 v:1,4 Z:16378"));
        assert_eq!(up.registers(), down.registers());
        // Raising one register of a run splits it, and the scan after the
        // edit merges the two runs of 2 that now sit side by side.
        up.set(1, 3, max).unwrap();
        assert_eq!(up.decode().as_deref(), Some("v:1,1 v:3,1 v:1,4 Z:16378"));
        assert_eq!(up.set(1, 2, max), Ok(false));
    }

    #[test]
    fn the_cache_lives_in_bytes_8_to_16() {
        let mut hll = Hll::new();
        hll.set_cached_count(0x0102_0304);
        assert_eq!(hll.as_bytes()[8..16], [4, 3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(hll.cached_count(), Some(0x0102_0304));
        hll.invalidate_cache();
        assert_eq!(hll.as_bytes()[15], 0x80);
        assert_eq!(hll.cached_count(), None);
        let raised = raise(hll.as_bytes(), &[]).unwrap();
        assert_eq!(raised, hll.as_bytes(), "nothing changed: the cache stays");
        let mut fresh = Hll::new();
        fresh.set_cached_count(7);
        let raised = raise(fresh.as_bytes(), &[(3, 1)]).unwrap();
        assert_eq!(raised[15], 0x80);
        let same = raise(&raised, &[(3, 1)]).unwrap();
        assert_eq!(same, raised);
    }

    #[test]
    fn headers_are_checked_as_redis_checks_them() {
        assert_eq!(Hll::parse(b"HYLL".to_vec()), Err(NotHll));
        let mut bytes = REDIS_ABC.to_vec();
        bytes[0] = b'0';
        assert_eq!(Hll::parse(bytes), Err(NotHll));
        let mut bytes = REDIS_ABC.to_vec();
        bytes[4] = b'x';
        assert_eq!(Hll::parse(bytes), Err(NotHll));
        let mut bytes = REDIS_ABC.to_vec();
        bytes[4] = 0;
        assert_eq!(Hll::parse(bytes), Err(NotHll), "dense of the wrong length");
        assert!(!is_hll(b""));
        assert!(!is_hll(b"hello"));
    }

    #[test]
    fn damaged_opcodes_are_found_when_read() {
        let mut bytes = REDIS_ABC.to_vec();
        bytes.extend_from_slice(b"hello");
        assert!(!is_hll(&bytes));
        assert_eq!(registers(&bytes), None);
        assert_eq!(raise(&bytes, &[(1, 1)]), None);
        let hll = Hll::parse(bytes).unwrap();
        assert_eq!(hll.count(), Err(Corrupt));
        assert_eq!(hll.clone().to_dense(), Err(Corrupt));
        // Like Redis, an edit only reads as far as the register it raises.
        let mut edited = hll.clone();
        assert_eq!(edited.set(0, 1, SPARSE_MAX_BYTES_DEFAULT), Ok(true));
        // An XZERO cut short reads a zero second byte: 16127 + 257 zeros.
        let mut cut = b"HYLL\x01".to_vec();
        cut.resize(HEADER_BYTES, 0);
        cut.extend([0x7e, 0xfe, 0x41]);
        assert!(is_hll(&cut));
        let mut cut = Hll::parse(cut).unwrap();
        assert_eq!(cut.count(), Ok(0));
        assert_eq!(cut.set(16383, 2, SPARSE_MAX_BYTES_DEFAULT), Ok(true));
        assert_eq!(cut.decode().as_deref(), Some("Z:16127 Z:256"));
    }

    #[test]
    fn dense_registers_unpack_as_read_one_by_one() {
        let mut body = vec![0u8; DENSE_BYTES - HEADER_BYTES];
        let mut rng = SplitMix64(3);
        for i in 0..REGISTERS {
            dense_write(&mut body, i, rng.next() as u8 & REGISTER_MAX);
        }
        let all = dense_unpack(&body);
        assert!((0..REGISTERS).all(|i| all[i] == dense_read(&body, i)));
    }

    #[test]
    fn an_impossible_histogram_rounds_as_redis_does() {
        // Every register at 63: the estimator divides by zero and Redis's
        // llroundl gives the smallest i64.
        let regs = [REGISTER_MAX; REGISTERS];
        assert_eq!(count_registers(&regs), 1 << 63);
        assert_eq!(count_registers(&[0; REGISTERS]), 0);
    }

    #[test]
    fn the_self_test_passes() {
        let mut rng = SplitMix64(7);
        registers_round_trip(&mut rng, 3).unwrap();
        estimates_hold(rng.next(), SPARSE_MAX_BYTES_DEFAULT, 100_000).unwrap();
        estimates_hold(1, 0, 10_000).unwrap();
    }
}
