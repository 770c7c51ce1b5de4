//! Where clients come in: listeners, connection limits, TLS, and the two transports.
//!
//! * [`binary`]: Thrift over TCP, after a SASL PLAIN or NOSASL handshake.
//! * [`http`]: Thrift over HTTP (`POST /cliservice`), Basic or Bearer auth, signed cookies.
//! * [`limits`]: connections per address, open sessions per connection.
//! * [`tls`]: the certificate, reloaded when its files change.

pub mod binary;
pub mod cookie;
pub mod http;
pub mod limits;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sparkgate_auth::AuthService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::config::Config;
use crate::session::CallHandler;
use crate::shutdown::Shutdown;
use limits::ConnectionLimits;
use tls::TlsAcceptorCell;

/// What every connection task shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub auth: Arc<AuthService>,
    pub handler: Arc<CallHandler>,
    pub limits: Arc<ConnectionLimits>,
    pub tls: Option<Arc<TlsAcceptorCell>>,
    pub shutdown: Shutdown,
    pub tracker: TaskTracker,
}

/// Connection ids, the owners of binary-transport sessions.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A client connection, with or without TLS.
pub type ClientStream =
    tokio_util::either::Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// Accepts connections until shutdown, for either listener: per connection a slot under
/// `server.max_connections` and `server.max_connections_per_address`, the TLS handshake when
/// TLS is configured (within the handshake deadline), then `handle` on the tracker.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    kind: &'static str,
    handle: F,
) where
    F: Fn(ClientStream, SocketAddr, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: survive, back off a little.
                    warn!(error = %e, listener = kind, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.shutdown.stop_accepting.cancelled() => break,
        };
        // The slot is taken after the accept, so an idle listener holds none; while all are
        // held, this connection waits here and the next ones in the kernel's accept queue.
        let permit = tokio::select! {
            permit = shared.limits.connection_slot() => permit,
            _ = shared.shutdown.stop_accepting.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("connection", conn.id = id, client.addr = %peer, listener = kind);
        let shared_for_task = shared.clone();
        let handle = handle.clone();
        shared.tracker.spawn(
            async move {
                let shared = shared_for_task;
                let Some(_address_slot) = shared.limits.admit_address(peer.ip()) else {
                    warn!(
                        max = shared.config.server.max_connections_per_address,
                        "refused: too many connections from this address (server.max_connections_per_address)"
                    );
                    return;
                };
                let stream = match shared.tls.as_ref().map(|t| t.current()) {
                    None => tokio_util::either::Either::Left(stream),
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            shared.config.server.handshake_timeout,
                            acceptor.accept(stream),
                        );
                        match handshake.await {
                            Ok(Ok(tls)) => tokio_util::either::Either::Right(tls),
                            Ok(Err(e)) => {
                                warn!(error = %e, "TLS handshake failed; closing connection");
                                return;
                            }
                            Err(_) => {
                                warn!("TLS handshake timed out; closing connection");
                                return;
                            }
                        }
                    }
                };
                handle(stream, peer, id).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    info!(listener = kind, "stopped accepting connections");
}
