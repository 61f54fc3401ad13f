//! HyperLogLog values as Redis encodes them (placeholder until the encoder lands).

/// True if `bytes` are a HyperLogLog Redis would accept.
pub fn is_hll(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HYLL")
}

/// The non-zero registers of a HyperLogLog.
pub fn registers(_bytes: &[u8]) -> Option<Vec<(u16, u8)>> {
    None
}

/// `bytes` (empty: a new HyperLogLog) with each register raised to at least its value.
pub fn raise(_bytes: &[u8], _regs: &[(u16, u8)]) -> Option<Vec<u8>> {
    None
}
