//! The admin HTTP port: `/healthz`, `/readyz`, Prometheus `/metrics`, and a small JSON API:
//! `GET /api/v1/drivers`, `GET /api/v1/sessions`, `POST /api/v1/drivers/{id}/drain`.
//! It has no authentication of its own: bind it to loopback or a private network.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::frontend::Shared;
use crate::pool::DriverState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverStateLabels {
    pub tenant: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub tenant: String,
    pub decision: String,
}

/// sparkgate's metrics, registered under the `sparkgate_` prefix; components get handles.
pub struct Metrics {
    pub registry: Registry,
    pub sessions: Gauge,
    pub operations: Gauge,
    pub drivers: Family<DriverStateLabels, Gauge>,
    pub queue_waiting: Family<TenantLabel, Gauge>,
    pub queue_wait_seconds: Family<TenantLabel, Histogram>,
    pub launches: Family<TenantLabel, Counter>,
    pub launch_failures: Family<TenantLabel, Counter>,
    pub scale_decisions: Family<DecisionLabels, Counter>,
    pub running_operations: Family<TenantLabel, Gauge>,
    pub backend_connections: Family<DriverAddressLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverAddressLabel {
    pub driver: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sparkgate");
        let m = Self {
            sessions: Gauge::default(),
            operations: Gauge::default(),
            drivers: Family::default(),
            queue_waiting: Family::default(),
            queue_wait_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0])
            }),
            launches: Family::default(),
            launch_failures: Family::default(),
            scale_decisions: Family::default(),
            running_operations: Family::default(),
            backend_connections: Family::default(),
            registry: Registry::default(),
        };
        registry.register("sessions", "Open client sessions", m.sessions.clone());
        registry.register(
            "operations",
            "Operations sparkgate tracks",
            m.operations.clone(),
        );
        registry.register("drivers", "Drivers per tenant and state", m.drivers.clone());
        registry.register(
            "queue_waiting",
            "Sessions waiting for a driver",
            m.queue_waiting.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "How long sessions waited for a driver",
            m.queue_wait_seconds.clone(),
        );
        registry.register("driver_launches", "Drivers launched", m.launches.clone());
        registry.register(
            "driver_launch_failures",
            "Drivers that failed to start or died",
            m.launch_failures.clone(),
        );
        registry.register(
            "running_operations",
            "Operations running on a tenant's ready drivers (the autoscaler's load)",
            m.running_operations.clone(),
        );
        registry.register(
            "backend_connections",
            "Open connections to each driver (bounded by backend.max_connections_per_driver)",
            m.backend_connections.clone(),
        );
        registry.register(
            "scale_decisions",
            "Autoscaler decisions that changed a pool",
            m.scale_decisions.clone(),
        );
        Self { registry, ..m }
    }
}

/// Serves the admin port until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.shutdown.force_close.cancelled() => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(request, &shared)) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                debug!(client.addr = %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    info!("admin port closed");
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

#[derive(serde::Serialize)]
struct SessionView {
    id: String,
    user: String,
    tenant: String,
    driver: String,
    /// `connection` (binary transport) or `user` (HTTP).
    owner: &'static str,
    idle_seconds: u64,
}

fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let proxy = &shared.proxy;
    let path = request.uri().path().trim_end_matches('/');
    match (request.method(), path) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            if shared.shutdown.stop_accepting.is_cancelled() {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n")
            } else {
                respond(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let metrics = &shared.metrics;
            metrics.sessions.set(proxy.table.session_count() as i64);
            metrics.operations.set(proxy.table.operation_count() as i64);
            for (tenant, pool) in &proxy.pools {
                let drivers = pool.drivers();
                for state in DriverState::ALL {
                    let n = drivers.iter().filter(|d| d.state == state).count();
                    let gauge = metrics
                        .drivers
                        .get_or_create(&DriverStateLabels {
                            tenant: tenant.clone(),
                            state: state.as_str().into(),
                        })
                        .clone();
                    gauge.set(n as i64);
                }
                let waiting = metrics
                    .queue_waiting
                    .get_or_create(&TenantLabel {
                        tenant: tenant.clone(),
                    })
                    .clone();
                waiting.set(i64::from(pool.waiting.load(Ordering::Relaxed)));
                let running: u32 = drivers.iter().map(|d| d.running_operations).sum();
                let gauge = metrics
                    .running_operations
                    .get_or_create(&TenantLabel {
                        tenant: tenant.clone(),
                    })
                    .clone();
                gauge.set(i64::from(running));
            }
            // Drivers come and go: only the current ones.
            metrics.backend_connections.clear();
            for (driver, open) in proxy.links.open_connections() {
                let gauge = metrics
                    .backend_connections
                    .get_or_create(&DriverAddressLabel { driver })
                    .clone();
                gauge.set(open as i64);
            }
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &metrics.registry) {
                Ok(()) => respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
            }
        }
        (&Method::GET, "/api/v1/drivers") => {
            let drivers: Vec<_> = proxy.pools.values().flat_map(|p| p.drivers()).collect();
            json(&drivers)
        }
        (&Method::GET, "/api/v1/sessions") => {
            let sessions: Vec<SessionView> = proxy
                .table
                .sessions()
                .iter()
                .map(|s| SessionView {
                    id: s.id(),
                    user: s.user.clone(),
                    tenant: s.tenant.clone(),
                    driver: s.backend_addr.clone(),
                    owner: match s.owner {
                        crate::session::Owner::Connection(_) => "connection",
                        crate::session::Owner::User(_) => "user",
                    },
                    idle_seconds: s.idle_for().as_secs(),
                })
                .collect();
            json(&sessions)
        }
        (&Method::POST, path) if path.starts_with("/api/v1/drivers/") && path.ends_with("/drain") => {
            let id = &path["/api/v1/drivers/".len()..path.len() - "/drain".len()];
            if proxy.pools.values().any(|p| p.drain(id)) {
                info!(driver = id, "driver drained through the admin API");
                respond(StatusCode::ACCEPTED, "text/plain", format!("draining {id}\n"))
            } else {
                respond(StatusCode::NOT_FOUND, "text/plain", format!("no driver {id}\n"))
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "sparkgate admin: /healthz /readyz /metrics /api/v1/drivers /api/v1/sessions POST /api/v1/drivers/{id}/drain\n",
        ),
    }
}
