//! The replication wire format: length-prefixed, checksummed frames, each
//! holding one postcard-encoded [`Msg`].
//!
//! Frame: `len u32 LE | crc32c(payload) u32 LE | payload`. A frame longer
//! than [`FRAME_MAX_BYTES`], a bad checksum or an undecodable payload ends the
//! connection; the link reconnects and resumes from the peer's version
//! vector, so nothing is lost by dropping a connection.

use meridian_crdt::{RegionId, VersionVector};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAGIC: [u8; 4] = *b"MRDN";
/// Version 3: counter increments name their incarnation, `Ack` carries
/// the acceptor's durable version vector, and anti-entropy sessions repair
/// both sides.
/// Version 4: ops may carry FUNCTION library effects, and `AeEnd`/`AeDone`
/// carry the sender's libraries.
/// Version 5: ops may carry partial string writes (`EffectKind::StrPatch`),
/// and anti-entropy's key states carry a string's patches.
/// Version 6: partial string writes may carry BITFIELD increments
/// (`Patch::Incr`), and a string's state carries its counted fields.
/// Version 7: `Ack` names the origins the receiver streams from directly,
/// whose ops the sender then does not relay to it.
pub const PROTOCOL_VERSION: u16 = 7;
/// Largest frame accepted (a batch of ops is cut well below this).
pub const FRAME_MAX_BYTES: usize = 64 * 1024 * 1024;
/// A frame's buffer starts at most this large and grows as its bytes arrive.
pub const FRAME_PREALLOC_BYTES: usize = 64 * 1024;
/// A batch of ops stops growing at this many bytes…
pub const BATCH_MAX_BYTES: usize = 1024 * 1024;
/// …or this many ops.
pub const BATCH_MAX_OPS: usize = 4096;

pub type Nonce = [u8; 16];
pub type Proof = [u8; 32];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    /// Dialer → acceptor: who I am and a fresh nonce.
    Hello {
        magic: [u8; 4],
        version: u16,
        cluster: String,
        region: String,
        nonce: Nonce,
    },
    /// Acceptor → dialer: who I am, my nonce, and proof I hold the secret.
    Challenge {
        region: String,
        nonce: Nonce,
        proof: Proof,
    },
    /// Dialer → acceptor: proof the dialer holds the secret.
    Proof { proof: Proof },
    /// Acceptor → dialer: accepted; stream what I lack (nothing to a
    /// witness, which stores no data and only needs heartbeats).
    Welcome { vv: VersionVector, witness: bool },
    /// Either side: the link is refused, and why.
    Refuse { reason: String },
    /// Dialer → acceptor: op records (as stored in the dialer's log), and
    /// the dialer's log position they bring the acceptor up to.
    Ops {
        upto_lsn: u64,
        #[serde(with = "serde_bytes_vec")]
        records: Vec<Vec<u8>>,
    },
    /// Dialer → acceptor when idle: still here, my clock, my position.
    Heartbeat {
        upto_lsn: u64,
        hlc: u64,
        wall_ms: u64,
    },
    /// Acceptor → dialer: applied up to your `upto_lsn`; my version vector,
    /// and the part of it on my stable storage (tombstone collection waits
    /// for every region to hold a delete durably); the origins I stream
    /// from directly, whose ops you need not relay to me.
    Ack {
        upto_lsn: u64,
        vv: VersionVector,
        durable_vv: VersionVector,
        wall_ms: u64,
        direct: Vec<RegionId>,
    },
    /// Dialer → acceptor: my log cannot bring you up to date (or it is time
    /// to compare state); anti-entropy starts, `vv` being my version vector
    /// as of my states ahead of you. Answered with the acceptor's states
    /// ahead of `vv` and `AeAheadEnd` (or `AeBusy`).
    AeBegin { vv: VersionVector },
    /// Either side: my states holding ops you lack (`AeState`s since the
    /// session began) are all sent; they were read at `vv`. From the dialer
    /// it also asks for the digests of the acceptor's top-level ranges.
    AeAheadEnd { vv: VersionVector },
    /// Acceptor → dialer: one 8-byte LE digest per range of the current
    /// frontier, in frontier order.
    AeNodes {
        #[serde(with = "serde_bytes")]
        digests: Vec<u8>,
    },
    /// Dialer → acceptor: one bit per frontier range (LSB first); the
    /// marked ranges are split and their parts become the new frontier.
    AeDescend {
        #[serde(with = "serde_bytes")]
        bitmap: Vec<u8>,
    },
    /// Either side: states, postcard-encoded `(Blob, Option<Entry>)` pairs.
    /// From the dialer after the digests, `ranges` (`(prefix, bits)` of the
    /// key hash) are the ranges whose every key it sends or lacks.
    AeState {
        ranges: Vec<(u64, u8)>,
        #[serde(with = "serde_bytes")]
        entries: Vec<u8>,
    },
    /// Dialer → acceptor: the states sent since the digests reflect exactly
    /// the ops this version vector covers; merge them with the earlier ones.
    /// `libraries`: all my FUNCTION libraries (postcard `Libraries`) as of
    /// that vector.
    AeEnd {
        vv: VersionVector,
        clock: u64,
        #[serde(with = "serde_bytes")]
        libraries: Vec<u8>,
    },
    /// Acceptor → dialer: merged (and durable); the `AeState`s since
    /// `AeEnd` are my states the dialer lacks, read at this vector and
    /// clock, as are `libraries` (all of mine).
    AeDone {
        vv: VersionVector,
        clock: u64,
        #[serde(with = "serde_bytes")]
        libraries: Vec<u8>,
    },
    /// Acceptor → dialer: a session between us runs the other way and will
    /// repair both; reconnect once it is over.
    AeBusy,
    /// Dialer → acceptor, at every heartbeat and whenever the dialer's
    /// election state changes: the elected primary's protocol
    /// (`meridian_cluster::election`). Never acknowledged.
    Election(meridian_cluster::ElectionMsg),
    /// Dialer → acceptor, after the handshake and after each change: the
    /// dialer's copy of the cluster membership. Never acknowledged.
    Members(meridian_cluster::Membership),
    /// Dialer → acceptor when the dialer shuts down cleanly: count it down
    /// now rather than when the failure detector notices.
    Goodbye,
}

mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let bufs: Vec<&serde_bytes::Bytes> = v.iter().map(|b| serde_bytes::Bytes::new(b)).collect();
        bufs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let bufs: Vec<serde_bytes::ByteBuf> = Vec::deserialize(d)?;
        Ok(bufs.into_iter().map(|b| b.into_vec()).collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {FRAME_MAX_BYTES} byte limit")]
    TooBig(usize),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("undecodable frame: {0}")]
    Decode(String),
}

pub fn encode(msg: &Msg) -> Vec<u8> {
    let payload = postcard::to_stdvec(msg).expect("messages always encode");
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Bytes a message takes on the wire.
pub fn encoded_len(msg: &Msg) -> usize {
    postcard::to_stdvec(msg).map_or(0, |p| p.len() + 8)
}

pub async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> Result<usize, WireError> {
    let frame = encode(msg);
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(frame.len())
}

/// Reads one message; also returns its size on the wire.
pub async fn read_msg<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<(Msg, usize), WireError> {
    let mut header = [0u8; 8];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > FRAME_MAX_BYTES {
        return Err(WireError::TooBig(len));
    }
    // The buffer grows as the payload arrives: a header alone, from a peer
    // that may not have authenticated yet, must not pin `len` bytes.
    let mut payload = Vec::with_capacity(len.min(FRAME_PREALLOC_BYTES));
    (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
    if payload.len() < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    if crc32c::crc32c(&payload) != crc {
        return Err(WireError::Checksum);
    }
    let msg = postcard::from_bytes(&payload).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok((msg, len + 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_damage_is_detected() {
        let msg = Msg::Ops {
            upto_lsn: 7,
            records: vec![b"abc".to_vec(), vec![0u8; 1000]],
        };
        let frame = encode(&msg);
        let (back, len) = read_msg(&mut &frame[..]).await.unwrap();
        assert_eq!(back, msg);
        assert_eq!(len, frame.len());
        let mut bad = frame.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            read_msg(&mut &bad[..]).await,
            Err(WireError::Checksum)
        ));
        let mut huge = frame;
        huge[..4].copy_from_slice(&(FRAME_MAX_BYTES as u32 + 1).to_le_bytes());
        assert!(matches!(
            read_msg(&mut &huge[..]).await,
            Err(WireError::TooBig(_))
        ));
        assert!(matches!(
            read_msg(&mut &b""[..]).await,
            Err(WireError::Closed)
        ));
    }

    /// Found by the `repl_frame` fuzz target: eight bytes declaring a frame
    /// of tens of MiB made the reader allocate the whole frame before any of
    /// it arrived, so a peer that has not even authenticated could pin
    /// `FRAME_MAX_BYTES` per connection. The buffer must grow with the bytes.
    #[tokio::test]
    async fn a_frame_header_alone_does_not_reserve_the_declared_length() {
        let mut stream = (FRAME_MAX_BYTES as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&[0; 4]);
        stream.extend_from_slice(b"only a few payload bytes");
        let mut reader = OfferedBytes {
            rest: &stream,
            offered_max_bytes: 0,
        };
        assert!(matches!(
            read_msg(&mut reader).await,
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        ));
        assert!(
            reader.offered_max_bytes <= FRAME_PREALLOC_BYTES,
            "the reader offered a buffer of {} bytes",
            reader.offered_max_bytes
        );
    }

    /// Serves `rest` and records the largest buffer it was asked to fill.
    struct OfferedBytes<'a> {
        rest: &'a [u8],
        offered_max_bytes: usize,
    }

    impl tokio::io::AsyncRead for OfferedBytes<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.offered_max_bytes = self.offered_max_bytes.max(buf.remaining());
            let take = self.rest.len().min(buf.remaining());
            let (now, later) = self.rest.split_at(take);
            buf.put_slice(now);
            self.rest = later;
            std::task::Poll::Ready(Ok(()))
        }
    }
}
