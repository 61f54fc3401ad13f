//! A small async RESP client for the tools that drive a cluster from the
//! outside (`meridian demo`, `meridian bench`).
//!
//! It speaks RESP2 only, the way `redis-cli` does by default, and supports
//! pipelining in two shapes:
//! - [`Client::pipeline`] sends a batch of commands in one write and reads
//!   their replies, in order;
//! - [`Client::into_split`] hands out a [`CommandWriter`] and a
//!   [`ReplyReader`] that can live in different tasks, for open-loop load
//!   where commands leave on a schedule whatever the replies are doing.
//!
//! Replies arrive in the order the commands were sent (RESP has no request
//! ids), so whoever pipelines matches replies to commands by position.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use meridian_resp::{encode_command, parse_frame, Frame, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A reply that grows past this many bytes ends the connection: the tools
/// never ask for anything near it, so it can only be a runaway.
pub const REPLY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Protocol(#[from] FrameError),
    #[error("reply larger than {REPLY_MAX_BYTES} bytes")]
    ReplyTooLarge,
    #[error("server closed the connection")]
    Closed,
}

/// The sending half: encodes commands into a buffer and writes it out.
pub struct CommandWriter {
    wr: OwnedWriteHalf,
    buf: BytesMut,
}

impl CommandWriter {
    /// Adds a command to the next write without sending it.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.buf);
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes every queued command in one go.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// The receiving half: parses replies as they arrive.
pub struct ReplyReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl ReplyReader {
    /// The next reply, waiting for it if needed.
    pub async fn read(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf)? {
                self.buf.advance(used);
                return Ok(frame);
            }
            if self.buf.len() > REPLY_MAX_BYTES {
                return Err(ClientError::ReplyTooLarge);
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// One connection to a region's RESP port.
pub struct Client {
    writer: CommandWriter,
    reader: ReplyReader,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Client {
            writer: CommandWriter {
                wr,
                buf: BytesMut::with_capacity(16 * 1024),
            },
            reader: ReplyReader {
                rd,
                buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            },
        })
    }

    /// Sends one command and waits for its reply. An error reply is a
    /// `Frame::Error`, not a `ClientError`: the connection is still fine.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, ClientError> {
        self.writer.queue(args);
        self.writer.flush().await?;
        self.reader.read().await
    }

    /// Sends every command in one write, then reads one reply per command.
    pub async fn pipeline<C, A>(&mut self, commands: &[C]) -> Result<Vec<Frame>, ClientError>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        for command in commands {
            self.writer.queue(command.as_ref());
        }
        self.writer.flush().await?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.reader.read().await?);
        }
        Ok(replies)
    }

    /// The two halves, for a writer task and a reader task.
    pub fn into_split(self) -> (CommandWriter, ReplyReader) {
        (self.writer, self.reader)
    }
}

/// A bulk or simple string reply as text; `None` for nil and other shapes.
pub fn frame_text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        Frame::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An integer reply, or a bulk string holding an integer (GET of a counter).
pub fn frame_i64(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(i) => Some(*i),
        other => frame_text(other)?.parse().ok(),
    }
}

/// A number reply of any shape (INCRBYFLOAT, ZSCORE, ZINCRBY).
pub fn frame_f64(frame: &Frame) -> Option<f64> {
    match frame {
        Frame::Double(d) => Some(*d),
        Frame::Integer(i) => Some(*i as f64),
        other => frame_text(other)?.parse().ok(),
    }
}
