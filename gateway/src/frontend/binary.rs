//! The binary-transport listener: accept (optionally TLS), handshake (SASL PLAIN or NOSASL),
//! then one task per connection turning whole messages into calls on the shared [`CallHandler`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use hive_thrift::error::SaslError;
use hive_thrift::frame::{FramedError, Framing, MessageCodec};
use hive_thrift::message::MessageHeader;
use hive_thrift::sasl::{SaslServer, DEFAULT_MAX_NEGOTIATION_FRAME};
use sparkgate_auth::{AuthError, Credential, Principal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::TcpListener;
use tokio_util::codec::FramedWrite;
use tracing::{debug, info, warn};

use super::{accept_loop, Shared};
use crate::config::FrontendTransport;
use crate::frontend::limits::LimitGuard;
use crate::session::Owner;
use crate::session::{CallContext, ReplyEncoder};

/// Serves the binary transport until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let for_connections = shared.clone();
    accept_loop(listener, shared, "binary", move |stream, peer, id| {
        let connection = Connection {
            shared: for_connections.clone(),
            id,
            peer,
        };
        connection.run(stream)
    })
    .await;
}

struct Connection {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
}

/// Why a binary connection ended before its first call.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("client closed before sending anything")]
    ClosedBeforeStart,
    #[error("client closed during SASL negotiation")]
    ClosedDuringNegotiation,
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("SASL negotiation refused: {0}")]
    Negotiation(SaslError),
    #[error("refused user {:?}: {reason}", sparkgate_auth::clip(.user).to_string())]
    Refused { user: String, reason: Refusal },
}

/// Why valid SASL credentials were refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Auth(AuthError),
    #[error("user {user:?} already holds {max} connections (server.max_connections_per_user)")]
    ConnectionsPerUser { user: String, max: usize },
}

/// The one place a SASL refusal becomes the text a client is shown.
fn refusal_text(reason: &dyn std::fmt::Display) -> String {
    format!("sparkgate: {reason}")
}

impl Connection {
    async fn run<S>(self, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.shared.config;
        debug!("connection accepted");
        let mut read_buf = BytesMut::with_capacity(8 * 1024);
        let handshake = tokio::time::timeout(
            config.server.handshake_timeout,
            self.handshake(&mut stream, &mut read_buf),
        );
        let (framing, principal, _user_slot) = match handshake.await {
            Ok(Ok(result)) => result,
            Ok(Err(reason)) => {
                warn!(%reason, "handshake failed; closing connection");
                return;
            }
            Err(_) => {
                warn!(
                    timeout_secs = config.server.handshake_timeout.as_secs_f64(),
                    "client sent no complete handshake in time; closing connection"
                );
                return;
            }
        };
        let ctx = CallContext {
            owner: Owner::Connection(self.id),
            principal,
            peer: self.peer,
            client_gone: Default::default(),
        };
        let end = self.serve_messages(stream, read_buf, framing, &ctx).await;
        // Driver sessions must be closed even though the client is gone: this runs to the end
        // on the connection's own task, which shutdown waits for.
        let closed = self.shared.handler.close_owned_by(&ctx.owner).await;
        info!(reason = end, closed_sessions = closed, "connection closed");
    }

    /// SASL: negotiate and authenticate. NOSASL: nothing to do, identity comes with OpenSession.
    async fn handshake<S>(
        &self,
        stream: &mut S,
        read_buf: &mut BytesMut,
    ) -> Result<(Framing, Option<Principal>, Option<LimitGuard>), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.shared.config.server.transport {
            FrontendTransport::Nosasl => {
                // No negotiation, but a client that never sends its first byte is held to the
                // same deadline as a SASL handshake.
                match stream.read_buf(read_buf).await {
                    Ok(0) => Err(HandshakeError::ClosedBeforeStart),
                    Ok(_) => Ok((Framing::Raw, None, None)),
                    Err(e) => Err(HandshakeError::Read(e)),
                }
            }
            FrontendTransport::Sasl => {
                let mut sasl = SaslServer::new(DEFAULT_MAX_NEGOTIATION_FRAME);
                let credentials = loop {
                    match sasl.decode(read_buf) {
                        Ok(Some(credentials)) => break credentials,
                        Ok(None) => {}
                        Err(e) => {
                            let mut out = BytesMut::new();
                            SaslServer::refuse(&refusal_text(&e), &mut out);
                            let _ = stream.write_all(&out).await;
                            return Err(HandshakeError::Negotiation(e));
                        }
                    }
                    match stream.read_buf(read_buf).await {
                        Ok(0) => return Err(HandshakeError::ClosedDuringNegotiation),
                        Ok(_) => {}
                        Err(e) => return Err(HandshakeError::Read(e)),
                    }
                };
                let credential = Credential::Password {
                    user: &credentials.user,
                    password: &credentials.password,
                };
                let result = self
                    .shared
                    .auth
                    .authenticate(&credential, self.peer.ip())
                    .await;
                let mut out = BytesMut::new();
                let result = result.map_err(Refusal::Auth).and_then(|principal| {
                    match self.shared.limits.admit_user(&principal.user) {
                        Some(slot) => Ok((principal, slot)),
                        None => Err(Refusal::ConnectionsPerUser {
                            user: principal.user.clone(),
                            max: self.shared.config.server.max_connections_per_user,
                        }),
                    }
                });
                match result {
                    Ok((principal, slot)) => {
                        SaslServer::accept(&mut out);
                        stream
                            .write_all(&out)
                            .await
                            .map_err(HandshakeError::Write)?;
                        debug!(user = %principal.user, groups = ?principal.groups, "authenticated");
                        Ok((Framing::Sasl, Some(principal), Some(slot)))
                    }
                    Err(reason) => {
                        self.shared
                            .handler
                            .recorders
                            .audit
                            .record(crate::audit::Record {
                                event: "login_refused",
                                user: Some(crate::audit::truncated(&credentials.user)),
                                client_addr: Some(self.peer.to_string()),
                                transport: "binary",
                                error: Some(refusal_text(&reason)),
                                ..Default::default()
                            });
                        SaslServer::refuse(&refusal_text(&reason), &mut out);
                        let _ = stream.write_all(&out).await;
                        let _ = stream.flush().await;
                        Err(HandshakeError::Refused {
                            user: credentials.user.clone(),
                            reason,
                        })
                    }
                }
            }
        }
    }

    /// Reads calls and answers them until the client leaves, errs or shutdown forces an end.
    /// Returns why it ended.
    async fn serve_messages<S>(
        &self,
        stream: S,
        read_buf: BytesMut,
        framing: Framing,
        ctx: &CallContext,
    ) -> &'static str
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.shared.config;
        let max = config.server.max_message_size;
        let (reader, writer) = tokio::io::split(stream);
        let mut reader = MessageReader {
            reader,
            decoder: MessageCodec::new(framing, max),
            read_buf,
            read_timeout: config.server.read_timeout,
            deadline: None,
        };
        let mut writer = FramedWrite::new(writer, ReplyEncoder(MessageCodec::new(framing, max)));
        // A message that came while a call was in flight (clients wait for each reply, so
        // rarely), served next.
        let mut early: Option<Bytes> = None;
        loop {
            let next = match early.take() {
                Some(message) => Ok(Some(message)),
                None => tokio::select! {
                    biased;
                    _ = self.shared.shutdown.force_close.cancelled() => return "shutdown",
                    next = reader.next_message() => next,
                },
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => return "client closed the connection",
                Err(e) => {
                    warn!(error = %e, "closing connection: bad input from client");
                    return "bad input";
                }
            };
            let header = match MessageHeader::parse(&message) {
                Ok(header) => header,
                Err(e) => {
                    warn!(error = %e, "closing connection: unreadable message header");
                    return "bad input";
                }
            };
            // Shutdown cuts a call in flight too (a synchronous ExecuteStatement may run for
            // hours); the driver connection it used is discarded, not reused. A client that
            // goes away mid-call is told to the call, which cancels the statement it runs on the
            // driver and ends soon; the call is not dropped, so no driver connection is cut.
            let call = self.shared.handler.handle(ctx, &header, &message);
            tokio::pin!(call);
            let mut gone = None;
            let reply = loop {
                tokio::select! {
                    biased;
                    _ = self.shared.shutdown.force_close.cancelled() => return "shutdown (a call in flight was cut)",
                    reply = &mut call => break reply,
                    next = reader.next_message(), if early.is_none() && gone.is_none() => match next {
                        Ok(Some(message)) => early = Some(message),
                        Ok(None) => {
                            gone = Some("client closed the connection mid-call");
                            ctx.client_gone.cancel();
                        }
                        Err(e) => {
                            warn!(error = %e, "client connection failed mid-call");
                            gone = Some("client connection failed mid-call");
                            ctx.client_gone.cancel();
                        }
                    },
                }
            };
            if let Some(reason) = gone {
                return reason;
            }
            if let Err(e) = writer.send(reply).await {
                debug!(error = %e, "write to client failed");
                return "client write failed";
            }
        }
    }
}

/// Whole messages from the client's read half, with a deadline that starts at a message's
/// first byte: an idle connection may wait forever between calls, a half-sent call may not.
struct MessageReader<S> {
    reader: ReadHalf<S>,
    decoder: MessageCodec,
    read_buf: BytesMut,
    read_timeout: Duration,
    /// When the message now arriving must be complete; kept across cancelled reads.
    deadline: Option<tokio::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Framed(#[from] FramedError),
    #[error("client stalled: a message was started but not finished within {0:?}")]
    Stalled(Duration),
    #[error("connection cut mid-message ({0} bytes of it had arrived)")]
    CutMidMessage(usize),
}

impl<S: AsyncRead> MessageReader<S> {
    /// The next whole message; `Ok(None)` when the client closed cleanly between messages.
    ///
    /// # Cancel safety
    /// Cancel-safe: partial input and the deadline stay in `self`.
    async fn next_message(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(message) = self
                .decoder
                .decode_message(&mut self.read_buf)
                .map_err(FramedError::from)?
            {
                self.deadline = None;
                return Ok(Some(message));
            }
            if !self.read_buf.is_empty() && self.deadline.is_none() {
                self.deadline = Some(tokio::time::Instant::now() + self.read_timeout);
            }
            let read = match self.deadline {
                None => self.reader.read_buf(&mut self.read_buf).await,
                Some(deadline) => {
                    match tokio::time::timeout_at(
                        deadline,
                        self.reader.read_buf(&mut self.read_buf),
                    )
                    .await
                    {
                        Ok(read) => read,
                        Err(_) => return Err(ReadError::Stalled(self.read_timeout)),
                    }
                }
            };
            match read.map_err(FramedError::from)? {
                0 if self.read_buf.is_empty() => return Ok(None),
                0 => return Err(ReadError::CutMidMessage(self.read_buf.len())),
                _ => {}
            }
        }
    }
}
