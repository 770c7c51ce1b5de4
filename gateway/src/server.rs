//! Running a whole gateway: bind, serve, and the one shutdown path.

use std::net::SocketAddr;
use std::sync::Arc;

use sparkgate_auth::{Authenticator, NoneAuthenticator};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::frontend::{serve, Shutdown};

/// A bound, running gateway.
pub struct Gateway {
    pub local_addr: SocketAddr,
    shutdown: Shutdown,
    tracker: TaskTracker,
    config: Arc<Config>,
}

impl Gateway {
    /// Binds the listener and starts serving in the background.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        let config = Arc::new(config);
        let listener = TcpListener::bind(config.server.bind).await?;
        let local_addr = listener.local_addr()?;
        let authenticator: Arc<dyn Authenticator> = Arc::new(NoneAuthenticator);
        let shutdown = Shutdown::default();
        let tracker = TaskTracker::new();
        tokio::spawn(serve(
            listener,
            config.clone(),
            authenticator,
            shutdown.clone(),
            tracker.clone(),
        ));
        info!(
            %local_addr,
            transport = ?config.server.transport,
            backend = %config.backend.address,
            "sparkgate listening"
        );
        Ok(Self {
            local_addr,
            shutdown,
            tracker,
            config,
        })
    }

    /// Stops accepting, lets connections finish within the grace period, then closes the rest
    /// (their backend sessions are closed on the way out).
    pub async fn shutdown(self) {
        let grace = self.config.server.shutdown_grace;
        info!(
            grace_secs = grace.as_secs(),
            connections = self.tracker.len(),
            "shutting down"
        );
        self.shutdown.stop_accepting.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = self.tracker.len(),
                "grace period over; closing remaining connections"
            );
            self.shutdown.force_close.cancel();
            // Closing backend sessions is bounded by backend.call_timeout per session.
            self.tracker.wait().await;
        }
        info!("shutdown complete");
    }
}
