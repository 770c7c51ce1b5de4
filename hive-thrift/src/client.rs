//! An async HiveServer2 client over tokio: one connection, one call at a time (HS2 has no
//! multiplexing), SASL PLAIN or NOSASL.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{DecodeError, FrameError, SaslError};
use crate::frame::{Framing, MessageCodec};
use crate::message::{Hs2Request, Hs2Response, MessageHeader, MessageKind};
use crate::sasl::{PlainCredentials, SaslClient, DEFAULT_MAX_NEGOTIATION_FRAME};

/// How the client proves itself to the server.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// SASL PLAIN; the server takes `credentials.user` as the session's user.
    Plain(PlainCredentials),
    /// Raw binary protocol, no handshake.
    NoSasl,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("SASL negotiation with the server failed: {0}")]
    Sasl(#[from] SaslError),
    #[error("connection i/o failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("server answered seqid {got}, expected {expected}")]
    OutOfSync { expected: i32, got: i32 },
    #[error("connection is unusable: an earlier call was interrupted")]
    Poisoned,
}

/// A connection to one HiveServer2 server.
#[derive(Debug)]
pub struct Hs2Connection {
    stream: TcpStream,
    codec: MessageCodec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    next_seqid: i32,
    /// Set while a call is under way; a call dropped half-way leaves it set, and the
    /// connection, whose stream now holds a stale reply, is refused from then on.
    in_call: bool,
}

impl Hs2Connection {
    /// Connects and, for SASL, negotiates, all within `timeout`.
    pub async fn connect(
        addr: &str,
        auth: &ClientAuth,
        max_message_size: usize,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        match tokio::time::timeout(timeout, Self::connect_inner(addr, auth, max_message_size)).await
        {
            Ok(result) => result,
            Err(_) => Err(ClientError::ConnectTimeout {
                addr: addr.to_owned(),
                after: timeout,
            }),
        }
    }

    async fn connect_inner(
        addr: &str,
        auth: &ClientAuth,
        max_message_size: usize,
    ) -> Result<Self, ClientError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let mut read_buf = BytesMut::with_capacity(64 * 1024);
        let framing = match auth {
            ClientAuth::Plain(credentials) => {
                let mut out = BytesMut::new();
                let mut sasl =
                    SaslClient::start(credentials, DEFAULT_MAX_NEGOTIATION_FRAME, &mut out);
                stream.write_all(&out).await?;
                loop {
                    if sasl.decode(&mut read_buf)?.is_some() {
                        break;
                    }
                    if stream.read_buf(&mut read_buf).await? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
                Framing::Sasl
            }
            ClientAuth::NoSasl => Framing::Raw,
        };
        Ok(Self {
            stream,
            codec: MessageCodec::new(framing, max_message_size),
            read_buf,
            write_buf: BytesMut::with_capacity(4096),
            next_seqid: 1,
            in_call: false,
        })
    }

    /// Whether the connection can no longer carry a call: a call was interrupted, or, while
    /// idle, the server closed it or sent something unasked (both mean it is unusable). Never
    /// blocks; for pools checking an idle connection before reusing it.
    pub fn is_broken(&mut self) -> bool {
        if self.in_call {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Sends `request` and returns the raw reply message, for callers that pass it on unchanged.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropping the future mid-call leaves the reply unread, and the connection
    /// refuses further calls ([`ClientError::Poisoned`]).
    pub async fn call_raw(
        &mut self,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), ClientError> {
        let seqid = self.next_seqid;
        self.next_seqid = self.next_seqid.wrapping_add(1);
        let mut message = Vec::with_capacity(256);
        request.encode_call(seqid, &mut message);
        self.call_encoded(&message).await
    }

    /// Sends an already encoded call message and returns the raw reply, checking it answers
    /// that call (seqid). For tests and for calls [`Hs2Request`] does not model.
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`Hs2Connection::call_raw`].
    pub async fn call_encoded(
        &mut self,
        message: &[u8],
    ) -> Result<(Bytes, MessageHeader), ClientError> {
        if self.in_call {
            return Err(ClientError::Poisoned);
        }
        self.in_call = true;
        let seqid = MessageHeader::parse(message)?.seqid;
        self.write_buf.clear();
        self.codec.encode_message(message, &mut self.write_buf)?;
        self.stream.write_all(&self.write_buf).await?;
        let reply = loop {
            if let Some(reply) = self.codec.decode_message(&mut self.read_buf)? {
                break reply;
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        };
        let header = MessageHeader::parse(&reply)?;
        if header.seqid != seqid {
            return Err(ClientError::OutOfSync {
                expected: seqid,
                got: header.seqid,
            });
        }
        if !matches!(header.kind, MessageKind::Reply | MessageKind::Exception) {
            return Err(DecodeError::UnexpectedMessageType(header.kind as u8, "reply").into());
        }
        self.in_call = false;
        Ok((reply, header))
    }

    /// Sends `request` and decodes the reply.
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`Hs2Connection::call_raw`].
    pub async fn call(&mut self, request: &Hs2Request) -> Result<Hs2Response, ClientError> {
        let (reply, _) = self.call_raw(request).await?;
        Ok(Hs2Response::decode_for(request, &reply)?)
    }
}
