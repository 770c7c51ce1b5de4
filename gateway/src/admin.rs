//! The admin HTTP port: `/healthz`, `/readyz`, Prometheus `/metrics`, and a small JSON API:
//! `GET /api/v1/drivers`, `GET /api/v1/sessions`, `POST /api/v1/drivers/{id}/drain`.
//! It has no authentication of its own: bind it to loopback or a private network.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::session::{CallHandler, Owner};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// What the admin port reads: it changes nothing but a driver's drain flag.
#[derive(Clone)]
pub struct AdminView {
    pub handler: Arc<CallHandler>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
}

/// Serves the admin port until shutdown.
pub async fn serve(listener: TcpListener, view: AdminView) {
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
            _ = view.shutdown.force_close.cancelled() => break,
        };
        let view = view.clone();
        let tasks = view.shutdown.clone();
        tasks.spawn("admin connection", async move {
            let force_close = view.shutdown.force_close.clone();
            let service = hyper::service::service_fn(move |request| {
                let view = view.clone();
                async move { Ok::<_, Infallible>(handle(request, &view)) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let result = tokio::select! {
                result = result => result,
                _ = force_close.cancelled() => Ok(()),
            };
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

fn handle(request: Request<Incoming>, view: &AdminView) -> Response<Full<Bytes>> {
    let handler = &view.handler;
    let path = request.uri().path().trim_end_matches('/');
    match (request.method(), path) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            if view.shutdown.stop_accepting.is_cancelled() {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n")
            } else {
                respond(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        (&Method::GET, "/metrics") => match view.metrics.encode() {
            Ok(body) => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        },
        (&Method::GET, "/api/v1/drivers") => {
            let drivers: Vec<_> = handler.pools.values().flat_map(|p| p.drivers()).collect();
            json(&drivers)
        }
        (&Method::GET, "/api/v1/sessions") => {
            let sessions: Vec<SessionView> = handler
                .table
                .sessions()
                .iter()
                .map(|s| SessionView {
                    id: s.id(),
                    user: s.user.clone(),
                    tenant: s.tenant.clone(),
                    driver: s.backend_addr.clone(),
                    owner: match s.owner {
                        Owner::Connection(_) => "connection",
                        Owner::User(_) => "user",
                    },
                    idle_seconds: s.idle_for().as_secs(),
                })
                .collect();
            json(&sessions)
        }
        (&Method::POST, path) if path.starts_with("/api/v1/drivers/") && path.ends_with("/drain") => {
            let id = &path["/api/v1/drivers/".len()..path.len() - "/drain".len()];
            if handler.pools.values().any(|p| p.drain(id)) {
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
