//! The admin HTTP port: `/healthz`, `/readyz`, Prometheus `/metrics`, and a small JSON API:
//! `GET /api/v1/drivers`, `GET /api/v1/sessions`, `POST /api/v1/drivers/{id}/drain`.
//!
//! Health and metrics are open (probes and scrapers). The rest lists users and drains drivers:
//! with `admin.token_file` it needs `Authorization: Bearer <token>`; without one (loopback binds
//! only, startup refuses others) it answers requests whose `Host` is a loopback name and that
//! no web page sent (no `Origin`), so a browser on the machine cannot be made to call it.

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
    /// The bearer token of the API, if configured.
    pub token: Option<Arc<[u8]>>,
    /// `false`: health, readiness and metrics only.
    pub api: bool,
    /// OS users whose processes run tenants' SQL (local drivers; SQL can run commands there):
    /// without a token, the API does not count them as local tools.
    pub untrusted_uids: Arc<[u32]>,
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
        // Asked once, while the connection is open: its peer's socket is in the kernel's table.
        let local_tool = view.untrusted_uids.is_empty()
            || stream
                .local_addr()
                .ok()
                .and_then(|local| crate::launcher::local::os_user::loopback_peer_uid(peer, local))
                .is_some_and(|uid| !view.untrusted_uids.contains(&uid));
        tasks.spawn("admin connection", async move {
            let force_close = view.shutdown.force_close.clone();
            let service = hyper::service::service_fn(move |request| {
                let view = view.clone();
                async move { Ok::<_, Infallible>(handle(request, &view, local_tool)) }
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

/// Why a request to the API (not health or metrics) is refused, if it is.
fn refusal(
    request: &Request<Incoming>,
    token: Option<&[u8]>,
    local_tool: bool,
) -> Option<Response<Full<Bytes>>> {
    let headers = request.headers();
    match token {
        Some(token) => {
            let given = headers
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(|v| v.split_at_checked(7))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
                .map(|(_, given)| given)
                .unwrap_or_default();
            if bool::from(subtle::ConstantTimeEq::ct_eq(given, token)) {
                None
            } else {
                let mut refused = respond(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    "the admin API needs Authorization: Bearer <the token of admin.token_file>\n",
                );
                refused.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sparkgate admin\""),
                );
                Some(refused)
            }
        }
        None => {
            let host = headers
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if local_tool && loopback_host(host) && !headers.contains_key(hyper::header::ORIGIN) {
                None
            } else {
                Some(respond(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "without admin.token_file the admin API answers local tools only (Host 127.0.0.1 or localhost, no Origin, not a process of a local driver's OS user)\n",
                ))
            }
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port: not a name a DNS rebinding
/// page could use.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `local_tool`: the connection comes from a process that is not a local driver's (see
/// [`AdminView::untrusted_uids`]).
fn handle(request: Request<Incoming>, view: &AdminView, local_tool: bool) -> Response<Full<Bytes>> {
    let handler = &view.handler;
    let path = request.uri().path().trim_end_matches('/');
    let open = matches!(path, "/healthz" | "/readyz" | "/metrics");
    if !open && !view.api {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "sparkgate admin: /healthz /readyz /metrics (the API is off: admin.api = false)\n",
        );
    }
    if !open {
        if let Some(refused) = refusal(&request, view.token.as_deref(), local_tool) {
            warn!(%path, status = refused.status().as_u16(), "admin API request refused");
            return refused;
        }
    }
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
        (&Method::GET, "/api/v1/usage") => usage_report(handler, request.uri().query().unwrap_or("")),
        (&Method::POST, "/api/v1/cache/invalidate") => {
            invalidate_cache(handler, request.uri().query().unwrap_or(""))
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
            "sparkgate admin: /healthz /readyz /metrics /api/v1/drivers /api/v1/sessions /api/v1/usage?since=T&until=T POST /api/v1/drivers/{id}/drain POST /api/v1/cache/invalidate?tenant=T[&table=N]\n",
        ),
    }
}

/// `POST /api/v1/cache/invalidate?tenant=T[&table=N]`: drops the tenant's cached results (those
/// reading table N only, when given), for writes sparkgate did not see.
fn invalidate_cache(handler: &CallHandler, query: &str) -> Response<Full<Bytes>> {
    let mut tenant = None;
    let mut table = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tenant", value)) => tenant = Some(value),
            Some(("table", value)) => table = Some(value),
            _ => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "expected ?tenant=T and optionally &table=N\n",
                )
            }
        }
    }
    let Some(tenant) = tenant.filter(|t| handler.tenant_names().any(|n| n == *t)) else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no such tenant: name one with ?tenant=T\n",
        );
    };
    // A table as the cache keeps it: the bare name, lower case.
    let table = table.map(|t| {
        let bare = t.rsplit('.').next().unwrap_or(t).trim_matches('`');
        vec![bare.to_ascii_lowercase()]
    });
    handler.cache.invalidate(tenant, table.as_deref());
    info!(
        tenant,
        ?table,
        "cached results dropped through the admin API"
    );
    respond(
        StatusCode::OK,
        "text/plain",
        format!("dropped the cached results of tenant {tenant}\n"),
    )
}

/// `GET /api/v1/usage?since=T&until=T`: each tenant's figures between two times (seconds since
/// the epoch or RFC 3339; default: from the start of the book until now).
fn usage_report(handler: &CallHandler, query: &str) -> Response<Full<Bytes>> {
    let mut since = 0;
    let mut until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let parsed = match pair.split_once('=') {
            Some((key @ ("since" | "until"), value)) => {
                crate::usage::parse_time(&percent_decoded(value)).map(|t| (key, t))
            }
            _ => None,
        };
        match parsed {
            Some(("since", t)) => since = t,
            Some((_, t)) => until = t,
            None => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "expected ?since=T&until=T, each seconds since the epoch or RFC 3339 (2026-12-07T10:00:00Z)\n",
                )
            }
        }
    }
    json(&handler.recorders.usage.report(since, until))
}

/// `%XX` escapes decoded (a client may send `:` as `%3A`); anything malformed is kept as is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_pass_without_a_token() {
        for host in [
            "127.0.0.1:10011",
            "localhost",
            "LOCALHOST:1",
            "[::1]:10011",
            "127.1.2.3",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:10011",
            "10.0.0.1:10011",
            "",
            "[2001:db8::1]:1",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
