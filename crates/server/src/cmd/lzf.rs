//! LZF, the compression Redis applies to long strings in RDB payloads.
//!
//! [`decompress`] reads any valid LZF stream. [`compress`] must do more:
//! a DUMP of a string is compared byte for byte with redis-server's, so it
//! makes the very choices liblzf 3.6 makes (the version Redis 7.0 ships,
//! and the one Debian's redis-server links), with the settings both build
//! it with:
//!
//! - a hash table of 2^16 slots, indexed by the "very fast" hash of the
//!   next three bytes, each slot holding the last position hashed there;
//! - a slot's position is taken as a match when it lies at most 8192 bytes
//!   back, is not the first byte of the input, and its three bytes equal
//!   the current three (no other candidate is looked at);
//! - a match grows to at most 264 bytes and stops two bytes short of the
//!   end, except that the first 16 bytes past the three are compared
//!   without that bound when more than 16 may follow, so a match can then
//!   run to the very end;
//! - after a match only the last two positions it covered are hashed;
//! - positions are tried while three bytes remain (a match found there
//!   covers them); what no match covers is literals, in runs of at most
//!   32 bytes.
//!
//! Compression gives up (returns `None`) exactly where liblzf returns 0
//! for the same output bound, since Redis then writes the string raw.
//!
//! One thing cannot be copied: liblzf's table is an uninitialised stack
//! array, so a slot never written during a call holds whatever an earlier
//! call (or another function) left there, read as an offset into the
//! current input. Here every slot starts empty. The two differ only when
//! such a leftover offset points into the last 8192 bytes before the
//! current position, at three bytes equal to the current three, at a
//! position this call skipped inside a match; then Redis emits a back
//! reference where Meridian emits literals. Both decode to the same
//! string.
//!
//! The format: a control byte `000LLLLL` is followed by L+1 literal bytes;
//! `LLLooooo oooooooo` copies L+2 bytes from o+1 bytes back; when L is 7
//! a byte E follows it, `111ooooo EEEEEEEE oooooooo`, to copy E+9.

/// Literal bytes one control byte can introduce.
const LITERAL_RUN_MAX: usize = 1 << 5;
/// How far back a reference reaches: 13 bits of offset, plus one.
const OFFSET_MAX: usize = 1 << 13;
/// Bytes one reference copies at most: 7 + 255 in its length, plus two.
const MATCH_LEN_MAX: usize = (1 << 8) + (1 << 3);
/// log2 of the hash table's slots (liblzf's `HLOG`).
const HASH_LOG: u32 = 16;

/// The hash of three bytes, the first two already in `hval`: liblzf's
/// `IDX` in its "very fast" mode, on the 32-bit value it keeps rolling.
fn slot_of(hval: u32) -> usize {
    let h = (hval >> (3 * 8 - HASH_LOG)).wrapping_sub(hval.wrapping_mul(5));
    (h & ((1 << HASH_LOG) - 1)) as usize
}

/// `input` compressed as liblzf 3.6 compresses it, or `None` where liblzf
/// gives up: the output would not fit in `out_max` bytes (judged at the
/// points liblzf judges it), or `input` or `out_max` is empty. Inputs of
/// 4 GiB or more, which liblzf's 32-bit lengths cannot take, are never
/// compressed.
pub fn compress(input: &[u8], out_max: usize) -> Option<Vec<u8>> {
    let len = input.len();
    if len == 0 || out_max == 0 || u32::try_from(len).is_err() {
        return None;
    }
    let mut table = vec![0u32; 1 << HASH_LOG];
    let mut out = Output::with_capacity(out_max.min(len + len / LITERAL_RUN_MAX + 1));
    let mut ip = 0usize;
    // A 1-byte input has no second byte; it is never hashed.
    let mut hval = (u32::from(input[0]) << 8) | u32::from(input.get(1).copied().unwrap_or(0));
    while ip + 2 < len {
        hval = (hval << 8) | u32::from(input[ip + 2]);
        let slot = slot_of(hval);
        let candidate = table[slot] as usize;
        table[slot] = ip as u32;
        // Wraps past OFFSET_MAX when the candidate is not behind `ip`.
        let off = ip.wrapping_sub(candidate).wrapping_sub(1);
        let is_match = off < OFFSET_MAX
            && candidate > 0
            && input[candidate..candidate + 3] == input[ip..ip + 3];
        if !is_match {
            if out.bytes.len() >= out_max {
                return None;
            }
            out.literal(input[ip]);
            ip += 1;
            continue;
        }
        // The reference (at most 3 bytes) and the next run's control byte
        // must fit after the run ends.
        if out.len_after_run_ends() + 3 + 1 >= out_max {
            return None;
        }
        out.end_run();
        let matched = match_len(input, candidate, ip);
        let code = matched - 2;
        if code < 7 {
            out.bytes.push(((off >> 8) + (code << 5)) as u8);
        } else {
            out.bytes.push(((off >> 8) + (7 << 5)) as u8);
            out.bytes.push((code - 7) as u8);
        }
        out.bytes.push(off as u8);
        out.start_run();
        ip += matched;
        if ip + 2 >= len {
            break;
        }
        // Only the match's last two positions go into the table.
        ip -= 2;
        hval = (u32::from(input[ip]) << 8) | u32::from(input[ip + 1]);
        for _ in 0..2 {
            hval = (hval << 8) | u32::from(input[ip + 2]);
            table[slot_of(hval)] = ip as u32;
            ip += 1;
        }
    }
    // At most two bytes are left, and one more control byte.
    if out.bytes.len() + 3 > out_max {
        return None;
    }
    for &b in &input[ip..] {
        out.literal(b);
    }
    out.end_run();
    Some(out.bytes)
}

/// How many bytes from `ip` equal those from `candidate` (at least the 3
/// already compared), as liblzf counts them: up to 264 and two bytes
/// short of the end, except that when more than 16 may follow the first
/// 16 past the three are compared without that bound, so a match found
/// 19 or 20 bytes from the end may run to the end.
fn match_len(input: &[u8], candidate: usize, ip: usize) -> usize {
    let bound = (input.len() - ip - 2).min(MATCH_LEN_MAX);
    let mut matched = 3;
    if bound > 16 {
        while matched < 19 {
            if input[candidate + matched] != input[ip + matched] {
                return matched;
            }
            matched += 1;
        }
    }
    while matched < bound && input[candidate + matched] == input[ip + matched] {
        matched += 1;
    }
    matched
}

/// Compressed output being built: `bytes` ends with the control byte of
/// the literal run being gathered (a placeholder until the run ends) and
/// that run's `lit` bytes.
struct Output {
    bytes: Vec<u8>,
    lit: usize,
}

impl Output {
    fn with_capacity(capacity: usize) -> Output {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(0);
        Output { bytes, lit: 0 }
    }

    /// Appends one literal byte; a run that reaches 32 ends and the next
    /// begins.
    fn literal(&mut self, b: u8) {
        self.bytes.push(b);
        self.lit += 1;
        if self.lit == LITERAL_RUN_MAX {
            self.end_run();
            self.start_run();
        }
    }

    /// The length once the current run ends: an empty run gives its
    /// placeholder back.
    fn len_after_run_ends(&self) -> usize {
        self.bytes.len() - usize::from(self.lit == 0)
    }

    /// Ends the current run: its control byte says its length, or, when
    /// it holds nothing, its placeholder goes.
    fn end_run(&mut self) {
        if self.lit == 0 {
            self.bytes.pop();
        } else {
            let at = self.bytes.len() - self.lit - 1;
            self.bytes[at] = (self.lit - 1) as u8;
        }
    }

    fn start_run(&mut self) {
        self.bytes.push(0);
        self.lit = 0;
    }
}

/// LZF decompression (`lzf_decompress`) to exactly `len` bytes; `None`
/// when `input` is damaged or decodes to another length.
pub fn decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let bytes = input.get(i..i + run)?;
            if out.len() + run > len {
                return None;
            }
            out.extend_from_slice(bytes);
            i += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            run += 2;
            let from = out.len().checked_sub(back)?;
            if out.len() + run > len {
                return None;
            }
            for k in 0..run {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn unbounded(input: &[u8]) -> Vec<u8> {
        compress(input, usize::MAX).expect("an unbounded output always fits")
    }

    #[test]
    fn back_references_copy_what_came_before() {
        // A literal "ab", then a back reference of 4 bytes one back: "abbbbb".
        let input = [1, b'a', b'b', 2 << 5, 0];
        assert_eq!(decompress(&input, 6), Some(b"abbbbb".to_vec()));
        assert_eq!(decompress(&input, 7), None);
        assert_eq!(decompress(&[2 << 5, 0], 4), None);
    }

    /// Outputs liblzf 3.6 gives (through redis-server 7.0.15's DUMP).
    #[test]
    fn compression_matches_liblzf() {
        // "ab" 30 times: "aba" as literals (the third byte's only match
        // is the first byte), one reference of 55 bytes two back that
        // stops two bytes short of the end, then those two as literals.
        assert_eq!(
            unbounded("ab".repeat(30).as_bytes()),
            [0x02, b'a', b'b', b'a', 0xe0, 0x2e, 0x01, 0x01, b'a', b'b']
        );
        // The first byte is never referenced: "aaaa…" starts two literals.
        let a = unbounded(&[b'a'; 40]);
        assert_eq!(&a[..3], &[0x01, b'a', b'a']);
    }

    /// Every compressed output decodes back to its input: random bytes,
    /// text, runs, at every length up to a few kilobytes.
    #[test]
    fn compressed_strings_decompress_to_themselves() {
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for case in 0..2_000 {
            let len = rng.gen_range(1..4_000);
            let alphabet = *[2u8, 4, 26, 255].get(case % 4).unwrap_or(&255);
            let input: Vec<u8> = (0..len).map(|_| rng.gen_range(0..=alphabet)).collect();
            let packed = unbounded(&input);
            assert_eq!(
                decompress(&packed, input.len()).as_deref(),
                Some(&input[..]),
                "seed {seed}, case {case}"
            );
            // A bound the output does not fit in gives up.
            assert_eq!(
                compress(&input, packed.len() - 1),
                None,
                "seed {seed}, case {case}"
            );
        }
    }

    #[test]
    fn nothing_to_compress_or_no_room_gives_up() {
        assert_eq!(compress(b"", 10), None);
        assert_eq!(compress(b"abc", 0), None);
        assert_eq!(unbounded(b"x"), [0x00, b'x']);
    }
}
