//! What sparkgate tells operators about itself: its logs (`tracing`, filtered by
//! `SPARKGATE_LOG`) and its Prometheus metrics under the `sparkgate_` prefix. Each component
//! owns its series and registers them here: the pools ([`crate::pool::metrics`]), the session
//! table ([`crate::session::metrics`]) and the driver connections ([`crate::driver::metrics`]);
//! the admin port only encodes the registry.

use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

/// Logs to stderr, at `info` unless `SPARKGATE_LOG` says otherwise (an `EnvFilter`, e.g.
/// `sparkgate=debug,info`); colours only on a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SPARKGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The registry every component's metrics are registered in.
pub struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            registry: Registry::with_prefix("sparkgate"),
        }
    }
}

impl Metrics {
    /// Where components register their series, before the gateway serves.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text of every series now.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}
