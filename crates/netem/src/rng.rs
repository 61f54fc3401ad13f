//! The proxy's only source of randomness: SplitMix64, seeded explicitly.
//!
//! It is a dozen lines, fast, and gives the same sequence for the same seed on
//! every platform and every version of this crate, which a general-purpose RNG
//! crate does not promise. Statistical quality far beyond "jitter looks
//! uniform" is not needed here.

/// A SplitMix64 generator (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// A generator for one stream of a proxy: each `(connection, direction)`
    /// gets its own, so the draws a chunk sees do not depend on how the
    /// scheduler interleaved other connections.
    pub(crate) fn derived(seed: u64, parts: &[u64]) -> SplitMix64 {
        let mut mixer = SplitMix64::new(seed);
        let mut state = mixer.next_u64();
        for &part in parts {
            mixer.state ^= part;
            state ^= mixer.next_u64();
        }
        SplitMix64::new(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`, using the top 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..16).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..16).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn matches_reference_output() {
        // First outputs of the reference implementation for seed 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn derived_streams_differ() {
        let mut a = SplitMix64::derived(1, &[0, 0]);
        let mut b = SplitMix64::derived(1, &[0, 1]);
        let mut c = SplitMix64::derived(1, &[1, 0]);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert!(x != y && y != z && x != z);
    }

    #[test]
    fn floats_stay_in_unit_interval() {
        let mut r = SplitMix64::new(99);
        for _ in 0..10_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
