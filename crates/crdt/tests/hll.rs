//! Property tests of the HyperLogLog encoder: whatever order registers are
//! raised in and wherever the sparse limit lies, the value holds exactly
//! the registers a plain array of 16384 would, and no input, however
//! damaged, makes it panic.

use meridian_crdt::hll::{
    self, count_registers, hash, is_hll, raise_with, Encoding, Hll, DENSE_BYTES, HEADER_BYTES,
    REGISTERS,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    }
}

/// Register raises: hashed elements, or raw (index, value) pairs packed
/// into a few hundred registers so runs meet, split and merge.
fn raises() -> impl Strategy<Value = Vec<(u16, u8)>> {
    prop_oneof![
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..600)
            .prop_map(|elements| elements.iter().map(|e| hash(e)).collect()),
        prop::collection::vec((0u16..300, 1u8..=36), 0..600),
        prop::collection::vec((any::<u16>(), any::<u8>()), 0..100),
    ]
}

fn sparse_max_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(40), Just(300), Just(3000), Just(100_000)]
}

/// What the raises leave in a plain array (indexes out of range and zero
/// values raise nothing, values above 63 count as 63).
fn plain(regs: &[(u16, u8)]) -> Vec<(u16, u8)> {
    let mut array = [0u8; REGISTERS];
    for &(i, v) in regs {
        if let Some(r) = array.get_mut(usize::from(i)) {
            *r = (*r).max(v.min(63));
        }
    }
    (0u16..).zip(array).filter(|&(_, v)| v != 0).collect()
}

fn plain_array(regs: &[(u16, u8)]) -> [u8; REGISTERS] {
    let mut array = [0u8; REGISTERS];
    for (i, v) in plain(regs) {
        array[usize::from(i)] = v;
    }
    array
}

proptest! {
    #![proptest_config(config())]

    /// Raised one at a time from an empty sparse value, as PFADD raises
    /// them, the registers are the plain array's, the estimate is the
    /// plain array's, and a sparse value never outgrows its limit.
    #[test]
    fn raising_from_sparse_keeps_the_plain_registers(regs in raises(), max in sparse_max_bytes()) {
        let mut bytes = Vec::new();
        for r in &regs {
            bytes = raise_with(&bytes, &[*r], max).expect("a HyperLogLog");
        }
        let bytes = if bytes.is_empty() { raise_with(&bytes, &[], max).unwrap() } else { bytes };
        prop_assert!(is_hll(&bytes));
        prop_assert_eq!(hll::registers(&bytes), Some(plain(&regs)));
        let parsed = Hll::parse(bytes.clone()).unwrap();
        prop_assert_eq!(parsed.count(), Ok(count_registers(&plain_array(&regs))));
        match parsed.encoding() {
            Encoding::Sparse => prop_assert!(bytes.len() <= max.max(HEADER_BYTES + 2)),
            Encoding::Dense => prop_assert_eq!(bytes.len(), DENSE_BYTES),
        }
        let mut dense = parsed.clone();
        dense.to_dense().unwrap();
        prop_assert_eq!(dense.registers(), parsed.registers());
        prop_assert_eq!(dense.count(), parsed.count());
    }

    /// Raising all at once, in any order, reaches the same registers.
    #[test]
    fn the_order_of_raises_does_not_change_the_registers(regs in raises()) {
        let forward = hll::raise(&[], &regs).unwrap();
        let mut reversed = regs.clone();
        reversed.reverse();
        let backward = hll::raise(&[], &reversed).unwrap();
        prop_assert_eq!(hll::registers(&forward), hll::registers(&backward));
        let again = hll::raise(&forward, &regs).unwrap();
        prop_assert_eq!(again, forward, "raising to what it holds changes nothing");
    }

    /// Any bytes at all: nothing panics, and `is_hll` says exactly whether
    /// the header passes and the registers can be counted.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..64),
        header in prop_oneof![Just(None), Just(Some(1u8)), Just(Some(0u8)), any::<u8>().prop_map(Some)],
        regs in prop::collection::vec((any::<u16>(), any::<u8>()), 0..8),
    ) {
        let bytes = match header {
            None => body,
            Some(encoding) => {
                let mut b = b"HYLL".to_vec();
                b.push(encoding);
                b.resize(HEADER_BYTES, 0);
                b.extend(body);
                b
            }
        };
        exercise(&bytes, &regs)?;
    }

    /// A valid sparse value with a few bytes overwritten (the suite's
    /// fuzzing of SETRANGE over a HyperLogLog): found out or still whole.
    #[test]
    fn damaged_sparse_values_are_found_out(
        elements in 0u32..3000,
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        regs in prop::collection::vec((any::<u16>(), any::<u8>()), 0..8),
    ) {
        let mut hll = Hll::new();
        for i in 0..elements {
            hll.add(i.to_string().as_bytes(), hll::SPARSE_MAX_BYTES_DEFAULT).unwrap();
        }
        let mut bytes = hll.into_bytes();
        for (at, b) in damage {
            let at = at.index(bytes.len());
            bytes[at] = b;
        }
        exercise(&bytes, &regs)?;
    }
}

/// Every entry point on `bytes`, checking they agree with [`is_hll`].
fn exercise(bytes: &[u8], regs: &[(u16, u8)]) -> Result<(), TestCaseError> {
    let valid = is_hll(bytes);
    prop_assert_eq!(hll::registers(bytes).is_some(), valid);
    prop_assert_eq!(hll::raise(bytes, regs).is_some(), valid || bytes.is_empty());
    match Hll::parse(bytes.to_vec()) {
        Err(_) => prop_assert!(!valid),
        Ok(parsed) => {
            prop_assert_eq!(parsed.count().is_ok(), valid);
            let _ = parsed.decode();
            let _ = parsed.cached_count();
            let mut max = [0u8; REGISTERS];
            let merged = parsed.max_into(&mut max);
            if valid {
                prop_assert!(merged.is_ok());
            }
            let mut dense = parsed.clone();
            if dense.to_dense().is_ok() {
                prop_assert_eq!(dense.registers().ok(), Some(max));
            }
            let mut edited = parsed;
            for &(i, v) in regs {
                let _ = edited.set(usize::from(i), v, 40);
            }
        }
    }
    Ok(())
}
