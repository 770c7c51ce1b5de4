//! The client-facing listener: accept, handshake (SASL PLAIN or NOSASL), then one task per
//! connection turning whole messages into calls on its [`SessionProxy`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use hive_thrift::frame::{FramedError, Framing, MessageCodec};
use hive_thrift::message::MessageHeader;
use hive_thrift::sasl::{SaslServer, DEFAULT_MAX_NEGOTIATION_FRAME};
use sparkgate_auth::{Authenticator, Credential};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, FrontendTransport};
use crate::proxy::{ReplyEncoder, SessionProxy};

/// How often a connection looks for idle sessions to close (more often for short timeouts).
const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Tokens that steer shutdown: `stop_accepting` first, `force_close` when the grace period ends.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub stop_accepting: CancellationToken,
    pub force_close: CancellationToken,
}

/// Accepts connections until told to stop; each runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    authenticator: Arc<dyn Authenticator>,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(config.server.max_connections));
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.stop_accepting.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: survive, back off a little.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.stop_accepting.cancelled() => break,
        };
        let span = info_span!("connection", client.addr = %peer);
        let connection = Connection {
            config: config.clone(),
            authenticator: authenticator.clone(),
            peer,
            force_close: shutdown.force_close.clone(),
        };
        tracker.spawn(
            async move {
                connection.run(stream).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    info!("stopped accepting connections");
}

struct Connection {
    config: Arc<Config>,
    authenticator: Arc<dyn Authenticator>,
    peer: SocketAddr,
    force_close: CancellationToken,
}

impl Connection {
    async fn run(self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        debug!("connection accepted");
        let mut read_buf = BytesMut::with_capacity(8 * 1024);
        let handshake = tokio::time::timeout(
            self.config.server.handshake_timeout,
            self.handshake(&mut stream, &mut read_buf),
        );
        let (framing, user) = match handshake.await {
            Ok(Ok(result)) => result,
            Ok(Err(reason)) => {
                warn!(%reason, "handshake failed; closing connection");
                return;
            }
            Err(_) => {
                warn!(
                    timeout_secs = self.config.server.handshake_timeout.as_secs_f64(),
                    "client sent no complete handshake in time; closing connection"
                );
                return;
            }
        };
        let mut proxy = SessionProxy::new(self.config.clone(), user);
        let end = self
            .serve_messages(stream, read_buf, framing, &mut proxy)
            .await;
        let sessions = proxy.session_count();
        // Backend sessions must be closed even though the client is gone: this runs to the end
        // on the connection's own task, which shutdown waits for.
        proxy.close_all().await;
        info!(
            reason = end,
            closed_sessions = sessions,
            "connection closed"
        );
    }

    /// SASL: negotiate and authenticate. NOSASL: nothing to do, identity comes with OpenSession.
    async fn handshake(
        &self,
        stream: &mut TcpStream,
        read_buf: &mut BytesMut,
    ) -> Result<(Framing, Option<String>), String> {
        match self.config.server.transport {
            FrontendTransport::Nosasl => {
                // No negotiation, but a client that never sends its first byte is held to the
                // same deadline as a SASL handshake.
                match stream.read_buf(read_buf).await {
                    Ok(0) => Err("client closed before sending anything".into()),
                    Ok(_) => Ok((Framing::Raw, None)),
                    Err(e) => Err(format!("read failed: {e}")),
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
                            SaslServer::refuse(&format!("sparkgate: {e}"), &mut out);
                            let _ = stream.write_all(&out).await;
                            return Err(format!("SASL negotiation refused: {e}"));
                        }
                    }
                    match stream.read_buf(read_buf).await {
                        Ok(0) => return Err("client closed during SASL negotiation".into()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read failed during SASL negotiation: {e}")),
                    }
                };
                let principal = self.authenticator.authenticate(&Credential::Password {
                    user: &credentials.user,
                    password: &credentials.password,
                });
                let mut out = BytesMut::new();
                match principal {
                    Ok(principal) => {
                        SaslServer::accept(&mut out);
                        stream
                            .write_all(&out)
                            .await
                            .map_err(|e| format!("write failed: {e}"))?;
                        debug!(user = %principal.user, "authenticated");
                        Ok((Framing::Sasl, Some(principal.user)))
                    }
                    Err(e) => {
                        SaslServer::refuse(&format!("sparkgate: {e}"), &mut out);
                        let _ = stream.write_all(&out).await;
                        Err(format!("authentication failed: {e}"))
                    }
                }
            }
        }
    }

    /// Reads calls and answers them until the client leaves, errs or shutdown forces an end.
    /// Returns why it ended.
    async fn serve_messages(
        &self,
        stream: TcpStream,
        read_buf: BytesMut,
        framing: Framing,
        proxy: &mut SessionProxy,
    ) -> &'static str {
        let max = self.config.server.max_message_size;
        let (reader, writer) = stream.into_split();
        let mut reader = MessageReader {
            reader,
            decoder: MessageCodec::new(framing, max),
            read_buf,
            read_timeout: self.config.server.read_timeout,
            deadline: None,
        };
        let mut writer = FramedWrite::new(writer, ReplyEncoder(MessageCodec::new(framing, max)));
        let sweep_every = IDLE_SWEEP_EVERY.min(self.config.server.idle_session_timeout / 2);
        let mut idle_sweep = tokio::time::interval(sweep_every);
        idle_sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                _ = self.force_close.cancelled() => return "shutdown",
                _ = idle_sweep.tick() => {
                    proxy.expire_idle_sessions().await;
                    continue;
                }
                next = reader.next_message() => next,
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => return "client closed the connection",
                Err(e) => {
                    warn!(error = %e, peer = %self.peer, "closing connection: bad input from client");
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
            let reply = proxy.handle(&header, &message).await;
            if let Err(e) = writer.send(reply).await {
                debug!(error = %e, "write to client failed");
                return "client write failed";
            }
        }
    }
}

/// Whole messages from the client's read half, with a deadline that starts at a message's
/// first byte: an idle connection may wait forever between calls, a half-sent call may not.
struct MessageReader {
    reader: OwnedReadHalf,
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

impl MessageReader {
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
