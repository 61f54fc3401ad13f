//! The checks of strings written in part in a chaos run: bitmaps (`b:*`,
//! SETBIT to 1 only) and bitfields (`bf:*`, BITFIELD OVERFLOW WRAP INCRBY
//! of fixed fields only), neither ever deleted.

use std::collections::{BTreeMap, BTreeSet};

use super::{Ctx, Index, KeyState};
use crate::chaos::history::{Cmd, Op};

fn bytes_of<'s>(state: &'s BTreeMap<String, KeyState>, key: &str) -> Option<&'s [u8]> {
    match state.get(key) {
        None => Some(&[]),
        Some(KeyState::Bytes(b)) => Some(b),
        // `check_types` reports it.
        Some(_) => None,
    }
}

/// Bit `bit` of `bytes`, Redis's order (bit 0 is the first byte's top).
fn bit_of(bytes: &[u8], bit: u64) -> bool {
    let byte = (bit / 8) as usize;
    bytes.get(byte).is_some_and(|b| b >> (7 - bit % 8) & 1 == 1)
}

/// The `width` bits from `offset`, as an unsigned number.
fn field_of(bytes: &[u8], offset: u64, width: u8) -> u64 {
    (0..u64::from(width)).fold(0, |v, i| v << 1 | u64::from(bit_of(bytes, offset + i)))
}

/// Bitmaps: every bit an acknowledged SETBIT set is set (concurrent
/// SETBITs of different bits all count, whichever region made them), and
/// every bit set was the target of some SETBIT sent.
pub(super) fn check_bitmaps(cx: &mut Ctx<'_>, ix: &Index<'_>, state: &BTreeMap<String, KeyState>) {
    for (&key, ops) in &ix.setbits {
        let Some(bytes) = bytes_of(state, key) else {
            continue;
        };
        let mut sent = BTreeSet::new();
        for op in ops {
            let Cmd::Setbit { bit, .. } = op.cmd else {
                continue;
            };
            sent.insert(bit);
            if op.acked() {
                cx.count("bitmap-acked-bit-set");
                if !bit_of(bytes, bit) {
                    cx.anomaly(
                        "bitmap-lost",
                        key,
                        format!("bit {bit}, set by an acknowledged SETBIT, is clear"),
                        &[*op],
                    );
                }
            }
        }
        for bit in (0..bytes.len() as u64 * 8).filter(|b| bit_of(bytes, *b)) {
            cx.count("bitmap-bit-known");
            if !sent.contains(&bit) {
                cx.anomaly(
                    "bitmap-invented",
                    key,
                    format!("bit {bit} is set, and no SETBIT was sent for it"),
                    &[],
                );
            }
        }
    }
}

/// Bitfield increments under OVERFLOW WRAP merge as a counter: each field
/// reads (the sum of its acknowledged increments + those of some of the
/// increments whose replies were lost) modulo 2^width. With no lost reply
/// that is one exact value; otherwise the reachable sums are tracked
/// modulo 2^width, which the fixed width keeps small.
pub(super) fn check_bitfields(
    cx: &mut Ctx<'_>,
    ix: &Index<'_>,
    state: &BTreeMap<String, KeyState>,
) {
    for (&key, ops) in &ix.bitfields {
        let Some(bytes) = bytes_of(state, key) else {
            continue;
        };
        let mut fields: BTreeMap<(u64, u8), Vec<&Op>> = BTreeMap::new();
        for op in ops {
            if let Cmd::Bitfield { width, offset, .. } = op.cmd {
                fields.entry((offset, width)).or_default().push(op);
            }
        }
        for ((offset, width), incrs) in fields {
            let modulus = 1u64 << width;
            let wrap = |d: i64| (d.rem_euclid(modulus as i64)) as u64;
            let mut reachable = vec![false; modulus as usize];
            reachable[0] = true;
            let mut uncertain = Vec::new();
            for op in &incrs {
                let Cmd::Bitfield { delta, .. } = op.cmd else {
                    continue;
                };
                let d = wrap(delta);
                let next: Vec<bool> = (0..modulus)
                    .map(|v| {
                        let before = ((v + modulus - d) % modulus) as usize;
                        if op.acked() {
                            reachable[before]
                        } else {
                            reachable[v as usize] || reachable[before]
                        }
                    })
                    .collect();
                reachable = next;
                if !op.acked() {
                    uncertain.push(*op);
                }
            }
            let found = field_of(bytes, offset, width);
            cx.count(if uncertain.is_empty() {
                "bitfield-exact"
            } else {
                "bitfield-reachable"
            });
            if !reachable[found as usize] {
                let mut quoted: Vec<&Op> = uncertain.clone();
                quoted.extend(incrs.iter().filter(|o| o.acked()).take(4));
                cx.anomaly(
                    "bitfield-sum",
                    key,
                    format!(
                        "u{width} at {offset} reads {found}, not the sum modulo {modulus} of its {} acknowledged increments plus any of its {} uncertain ones",
                        incrs.len() - uncertain.len(),
                        uncertain.len()
                    ),
                    &quoted,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-made histories of bitmaps and bitfields.
    use super::super::tests::H;
    use super::*;

    fn setbit(key: &str, bit: u64) -> Cmd {
        Cmd::Setbit {
            key: key.into(),
            bit,
        }
    }

    fn incr(offset: u64, delta: i64) -> Cmd {
        Cmd::Bitfield {
            key: "bf:0".into(),
            width: 8,
            offset,
            delta,
        }
    }

    fn bytes(b: &[u8]) -> KeyState {
        KeyState::Bytes(b.to_vec())
    }

    #[test]
    fn acknowledged_setbits_are_all_set_and_nothing_else() {
        let mut h = H::new();
        h.acked(0, setbit("b:0", 0), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, setbit("b:0", 9), 0, 5, [0, 0, 0], [0, 1, 0]);
        h.unknown(2, setbit("b:0", 15), 0, 5);
        assert!(h.check(&[("b:0", bytes(&[0x80, 0x40]))]).is_empty());
        assert!(h.check(&[("b:0", bytes(&[0x80, 0x41]))]).is_empty());
        assert_eq!(
            h.check(&[("b:0", bytes(&[0x80, 0x00]))]),
            vec!["bitmap-lost"]
        );
        assert_eq!(
            h.check(&[("b:0", bytes(&[0x81, 0x40]))]),
            vec!["bitmap-invented"]
        );
    }

    #[test]
    fn wrapping_increments_sum_modulo_the_width() {
        let mut h = H::new();
        h.acked(0, incr(8, 200), 0, 5, [0, 0, 0], [1, 0, 0]);
        h.acked(1, incr(8, 100), 0, 5, [0, 0, 0], [0, 1, 0]);
        h.acked(2, incr(0, -1), 0, 5, [0, 0, 0], [0, 0, 1]);
        // 300 mod 256 = 44; -1 mod 256 = 255.
        assert!(h.check(&[("bf:0", bytes(&[255, 44]))]).is_empty());
        assert_eq!(
            h.check(&[("bf:0", bytes(&[255, 200]))]),
            vec!["bitfield-sum"]
        );
        // An increment whose reply was lost may or may not count.
        h.unknown(0, incr(8, 10), 6, 7);
        assert!(h.check(&[("bf:0", bytes(&[255, 44]))]).is_empty());
        assert!(h.check(&[("bf:0", bytes(&[255, 54]))]).is_empty());
        assert_eq!(
            h.check(&[("bf:0", bytes(&[255, 45]))]),
            vec!["bitfield-sum"]
        );
    }
}
