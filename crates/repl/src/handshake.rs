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
//!
//! [`DialerHandshake`] and [`AcceptorHandshake`] are the two sides as state
//! machines without I/O: fed the peer's messages, they answer the message
//! to send or why the handshake fails. The drivers in [`crate::sender`] and
//! [`crate::receiver`] add what needs the region's state (the certificate's
//! name, membership, one live link per region) and the `Welcome`.

use hmac::{Hmac, Mac};
use meridian_crdt::{RegionId, VersionVector};
use rand::RngCore;
use sha2::Sha256;

use crate::wire::{Msg, Nonce, Proof, MAGIC, PROTOCOL_VERSION};

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

/// Who a region is to its peers.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub cluster: &'a str,
    pub secret: &'a [u8],
    pub region: RegionId,
}

/// Why a handshake did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer refused this region.
    #[error("refused by peer: {0}")]
    RefusedByPeer(String),
    /// This side refuses the peer: `Msg::Refuse { reason }` goes out, and
    /// the refusal is counted under `kind` when there is one.
    #[error("{reason}")]
    Refuse {
        kind: Option<&'static str>,
        reason: String,
    },
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

fn refuse(kind: &'static str, reason: String) -> HandshakeError {
    HandshakeError::Refuse {
        kind: Some(kind),
        reason,
    }
}

fn unexpected(expected: &'static str, got: Msg) -> HandshakeError {
    HandshakeError::Unexpected {
        expected,
        got: format!("{got:?}"),
    }
}

/// The dialing side of a handshake.
#[derive(Debug)]
pub struct DialerHandshake {
    my_nonce: Nonce,
    peer: RegionId,
}

/// What the dialer does with the acceptor's `Challenge`.
#[derive(Debug)]
pub struct Challenged {
    /// Sent either way, so the acceptor learns (and reports) a secret
    /// mismatch too; it is bound to both nonces and reveals nothing.
    pub proof: Msg,
    /// Set when the acceptor did not prove the secret or is not the region
    /// dialed: this side refuses it after sending the proof.
    pub refusal: Option<HandshakeError>,
}

impl DialerHandshake {
    /// Dials `peer`: the `Hello` to send.
    pub fn hello(me: Identity<'_>, peer: RegionId, my_nonce: Nonce) -> (DialerHandshake, Msg) {
        let hello = Msg::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            cluster: me.cluster.to_string(),
            region: me.region.as_str().to_string(),
            nonce: my_nonce,
        };
        (DialerHandshake { my_nonce, peer }, hello)
    }

    /// The acceptor's answer to the `Hello`; `at` names where it was
    /// dialed, for the refusal texts.
    pub fn challenged(
        &self,
        me: Identity<'_>,
        msg: Msg,
        at: &str,
    ) -> Result<Challenged, HandshakeError> {
        let (their_nonce, their_region, their_proof) = match msg {
            Msg::Challenge {
                region,
                nonce,
                proof,
            } => (nonce, region, proof),
            Msg::Refuse { reason } => return Err(HandshakeError::RefusedByPeer(reason)),
            other => return Err(unexpected("Challenge", other)),
        };
        let proof = Msg::Proof {
            proof: proof(
                me.secret,
                "dialer",
                me.cluster,
                &their_nonce,
                &self.my_nonce,
                me.region.as_str(),
            ),
        };
        let proved = verify(
            me.secret,
            "acceptor",
            me.cluster,
            &self.my_nonce,
            &their_nonce,
            &their_region,
            &their_proof,
        );
        let refusal = if !proved {
            Some(refuse(
                "bad secret",
                format!("region {their_region} at {at} could not prove the cluster secret"),
            ))
        } else if their_region != self.peer.as_str() {
            Some(HandshakeError::Refuse {
                kind: None,
                reason: format!(
                    "expected region {} at {at}, found {their_region}",
                    self.peer
                ),
            })
        } else {
            None
        };
        Ok(Challenged { proof, refusal })
    }

    /// The acceptor's verdict on the proof: its version vector and whether
    /// it is a witness.
    pub fn welcomed(&self, msg: Msg) -> Result<(VersionVector, bool), HandshakeError> {
        match msg {
            Msg::Welcome { vv, witness } => Ok((vv, witness)),
            Msg::Refuse { reason } => Err(HandshakeError::RefusedByPeer(reason)),
            other => Err(unexpected("Welcome", other)),
        }
    }
}

/// The accepting side of a handshake.
#[derive(Debug)]
pub struct AcceptorHandshake {
    my_nonce: Nonce,
    their_nonce: Nonce,
    peer: RegionId,
}

impl AcceptorHandshake {
    /// The dialer's `Hello`: refuses a foreign magic, protocol version or
    /// cluster, a region id that is not one, and this region's own;
    /// otherwise the `Challenge` to send (after the driver's own checks of
    /// the dialer, such as its certificate's name).
    pub fn hello(
        me: Identity<'_>,
        msg: Msg,
        my_nonce: Nonce,
    ) -> Result<(AcceptorHandshake, Msg), HandshakeError> {
        let (cluster, region, their_nonce) = match msg {
            Msg::Hello {
                magic,
                version,
                cluster,
                region,
                nonce,
            } => {
                if magic != MAGIC {
                    return Err(refuse(
                        "bad magic",
                        "not a Meridian replication peer".into(),
                    ));
                }
                if version != PROTOCOL_VERSION {
                    return Err(refuse("protocol version", format!("protocol version {version} is not supported (this region speaks {PROTOCOL_VERSION})")));
                }
                (cluster, region, nonce)
            }
            other => return Err(unexpected("Hello", other)),
        };
        if cluster != me.cluster {
            return Err(refuse(
                "other cluster",
                format!(
                    "peer belongs to cluster {cluster:?}, this region to {:?}",
                    me.cluster
                ),
            ));
        }
        let Ok(peer) = RegionId::new(&region) else {
            return Err(refuse(
                "bad region id",
                format!("invalid region id {region:?}"),
            ));
        };
        if peer == me.region {
            return Err(refuse(
                "duplicate region id",
                format!("peer claims this region's own id {region:?}"),
            ));
        }
        let challenge = Msg::Challenge {
            region: me.region.as_str().to_string(),
            nonce: my_nonce,
            proof: proof(
                me.secret,
                "acceptor",
                me.cluster,
                &their_nonce,
                &my_nonce,
                me.region.as_str(),
            ),
        };
        let handshake = AcceptorHandshake {
            my_nonce,
            their_nonce,
            peer,
        };
        Ok((handshake, challenge))
    }

    /// The region that dials.
    pub fn peer(&self) -> RegionId {
        self.peer
    }

    /// The dialer's `Proof` of the secret.
    pub fn proved(&self, me: Identity<'_>, msg: Msg) -> Result<(), HandshakeError> {
        match msg {
            Msg::Proof { proof } => {
                let region = self.peer.as_str();
                if verify(
                    me.secret,
                    "dialer",
                    me.cluster,
                    &self.my_nonce,
                    &self.their_nonce,
                    region,
                    &proof,
                ) {
                    Ok(())
                } else {
                    Err(refuse(
                        "bad secret",
                        format!("region {region} could not prove the cluster secret"),
                    ))
                }
            }
            Msg::Refuse { reason } => Err(HandshakeError::RefusedByPeer(reason)),
            other => Err(unexpected("Proof", other)),
        }
    }
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

    fn me(region: &str, secret: &'static [u8]) -> Identity<'static> {
        Identity {
            cluster: "c1",
            secret,
            region: RegionId::new(region).unwrap(),
        }
    }

    /// Both sides fed each other's messages: the dialer learns the
    /// acceptor's vector; each side refuses a peer without the secret.
    #[test]
    fn the_two_sides_prove_the_secret_to_each_other() {
        let (d, a) = (me("eu", b"s3cret"), me("us", b"s3cret"));
        let (dialer, hello) = DialerHandshake::hello(d, a.region, nonce());
        let (acceptor, challenge) = AcceptorHandshake::hello(a, hello, nonce()).unwrap();
        assert_eq!(acceptor.peer(), d.region);
        let challenged = dialer.challenged(d, challenge, "addr").unwrap();
        assert_eq!(challenged.refusal, None);
        acceptor.proved(a, challenged.proof).unwrap();
        let welcome = Msg::Welcome {
            vv: VersionVector::new(),
            witness: true,
        };
        assert_eq!(
            dialer.welcomed(welcome).unwrap(),
            (VersionVector::new(), true)
        );

        let wrong = me("us", b"wrong");
        let (dialer, hello) = DialerHandshake::hello(d, wrong.region, nonce());
        let (acceptor, challenge) = AcceptorHandshake::hello(wrong, hello, nonce()).unwrap();
        let challenged = dialer.challenged(d, challenge, "addr").unwrap();
        let refusal = challenged.refusal.expect("the dialer refuses");
        assert!(matches!(
            refusal,
            HandshakeError::Refuse {
                kind: Some("bad secret"),
                ..
            }
        ));
        let refused = acceptor.proved(wrong, challenged.proof).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "region eu could not prove the cluster secret"
        );
    }

    #[test]
    fn an_acceptor_refuses_another_cluster_its_own_id_and_a_region_it_did_not_dial() {
        let a = me("us", b"s3cret");
        let mut other = me("eu", b"s3cret");
        other.cluster = "c2";
        let (_, hello) = DialerHandshake::hello(other, a.region, nonce());
        let e = AcceptorHandshake::hello(a, hello, nonce()).unwrap_err();
        assert!(matches!(
            e,
            HandshakeError::Refuse {
                kind: Some("other cluster"),
                ..
            }
        ));
        let (_, hello) = DialerHandshake::hello(a, a.region, nonce());
        let e = AcceptorHandshake::hello(a, hello, nonce()).unwrap_err();
        assert!(matches!(
            e,
            HandshakeError::Refuse {
                kind: Some("duplicate region id"),
                ..
            }
        ));
        // The dialer meant to reach "ap" but "us" answered.
        let d = me("eu", b"s3cret");
        let (dialer, hello) = DialerHandshake::hello(d, RegionId::new("ap").unwrap(), nonce());
        let (_, challenge) = AcceptorHandshake::hello(a, hello, nonce()).unwrap();
        let refusal = dialer.challenged(d, challenge, "addr").unwrap().refusal;
        assert_eq!(
            refusal.map(|r| r.to_string()).as_deref(),
            Some("expected region ap at addr, found us")
        );
    }
}
