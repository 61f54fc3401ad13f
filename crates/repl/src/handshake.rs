//! The link handshake: both sides prove they hold the cluster secret without
//! sending it, and the acceptor refuses a wrong cluster, protocol version,
//! secret, its own region id, or a second live link from one region.
//!
//! ```text
//! dialer   → Hello { magic, version, cluster, region, nonce_d }
//! acceptor → Challenge { region, nonce_a, HMAC(secret, "acceptor" | cluster | nonce_d | nonce_a | acceptor) }
//! dialer   → Proof { HMAC(secret, "dialer" | cluster | nonce_a | nonce_d | dialer) }
//! acceptor → Welcome { vv, witness } | Refuse { reason }
//! ```

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::wire::{Nonce, Proof};

pub fn nonce() -> Nonce {
    let mut n = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

fn mac(
    secret: &[u8],
    role: &str,
    cluster: &str,
    their_nonce: &Nonce,
    my_nonce: &Nonce,
    region: &str,
) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in [
        role.as_bytes(),
        cluster.as_bytes(),
        their_nonce,
        my_nonce,
        region.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_le_bytes());
        mac.update(part);
    }
    mac
}

/// The proof one side sends: binds the role, the cluster, both nonces (the
/// peer's first, so a proof cannot be replayed on another connection) and
/// the sender's region id.
pub fn proof(
    secret: &[u8],
    role: &str,
    cluster: &str,
    their_nonce: &Nonce,
    my_nonce: &Nonce,
    region: &str,
) -> Proof {
    mac(secret, role, cluster, their_nonce, my_nonce, region)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a proof.
pub fn verify(
    secret: &[u8],
    role: &str,
    cluster: &str,
    their_nonce: &Nonce,
    my_nonce: &Nonce,
    region: &str,
    claimed: &Proof,
) -> bool {
    mac(secret, role, cluster, their_nonce, my_nonce, region)
        .verify_slice(claimed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_secret_role_nonces_and_region() {
        let (a, b) = (nonce(), nonce());
        let p = proof(b"s3cret", "dialer", "c1", &a, &b, "eu");
        assert!(verify(b"s3cret", "dialer", "c1", &a, &b, "eu", &p));
        assert!(!verify(b"wrong", "dialer", "c1", &a, &b, "eu", &p));
        assert!(!verify(b"s3cret", "acceptor", "c1", &a, &b, "eu", &p));
        assert!(!verify(b"s3cret", "dialer", "c2", &a, &b, "eu", &p));
        assert!(!verify(b"s3cret", "dialer", "c1", &b, &a, "eu", &p));
        assert!(!verify(b"s3cret", "dialer", "c1", &a, &b, "us", &p));
    }
}
