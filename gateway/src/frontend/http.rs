//! Thrift over HTTP: each POST to the configured path carries one binary-protocol call and gets
//! its reply back (beeline `;transportMode=http;httpPath=cliservice`, PyHive `THttpClient`).
//!
//! Every request is authenticated: a valid session cookie (signed by sparkgate, expiring) or an
//! `Authorization: Basic|Bearer` header. Sessions opened over HTTP belong to the user, not to a
//! TCP connection, since a client may send each request on a new connection.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::message::MessageHeader;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sparkgate_auth::{AuthError, Credential, Principal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::frontend::limits::LimitGuard;
use crate::frontend::Shared;
use crate::session::CallContext;
use crate::session::Owner;

pub use super::cookie::{CookieSigner, COOKIE_NAME};

/// Serves HTTP connections until told to stop.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, cookies: Arc<CookieSigner>) {
    let for_connections = shared.clone();
    crate::frontend::accept_loop(listener, shared, "http", move |stream, peer, _| {
        serve_connection(stream, peer, for_connections.clone(), cookies.clone())
    })
    .await;
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cookies: Arc<CookieSigner>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let force_close = shared.shutdown.force_close.clone();
    let shared_handshake_timeout = shared.config.server.handshake_timeout;
    // The users this connection carries requests of, each holding one of its user's
    // `server.max_connections_per_user` slots while the connection lasts.
    let users: Arc<UserSlots> = Arc::default();
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        let cookies = cookies.clone();
        let users = users.clone();
        async move { Ok::<_, Infallible>(handle(request, peer, &shared, &cookies, &users).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // A client that opens a connection and never finishes its headers is cut off.
        .header_read_timeout(shared_handshake_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => if let Err(e) = result {
            debug!(error = %e, "HTTP connection ended with an error");
        },
        _ = force_close.cancelled() => {}
    }
}

fn text_response(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn unauthorized(text: &str) -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::UNAUTHORIZED, text);
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sparkgate\", Bearer"),
    );
    response
}

/// The client's address: the peer, or, when the peer is a configured proxy, the rightmost
/// `X-Forwarded-For` hop that is not one: each proxy appends the address it got the request
/// from, so entries left of the last untrusted hop are whatever the client chose to send.
fn client_address(headers: &hyper::HeaderMap, peer: SocketAddr, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer.ip()) {
        return peer.ip();
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer.ip();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(addr) => {
                client = addr;
                if !trusted.contains(&addr) {
                    break;
                }
            }
            // Not an address: nothing left of it can be believed; the last trusted hop stands.
            Err(_) => break,
        }
    }
    client
}

fn cookie_value(request: &Request<Incoming>) -> Option<&str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

/// Who sent the request: by cookie, else by credentials (and then a new cookie to set).
async fn authenticate(
    request: &Request<Incoming>,
    client: IpAddr,
    shared: &Shared,
    cookies: &CookieSigner,
) -> Result<(Principal, Option<String>), Response<Full<Bytes>>> {
    let now = SystemTime::now();
    if let Some(principal) = cookie_value(request).and_then(|v| cookies.verify(v, now)) {
        return Ok((principal, None));
    }
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(unauthorized(
            "sparkgate: authentication required: send Authorization: Basic (user and password) or Bearer (a JWT)",
        ));
    };
    let header = header.to_str().unwrap_or_default();
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    let decoded;
    let credential = match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            decoded = STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unauthorized("sparkgate: malformed Basic credentials"))?;
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            Credential::Password { user, password }
        }
        "bearer" => Credential::Bearer {
            token: value.trim(),
        },
        _ => {
            return Err(unauthorized(
                "sparkgate: unsupported Authorization scheme (use Basic or Bearer)",
            ))
        }
    };
    match shared.auth.authenticate_until(&credential, client).await {
        Ok((principal, valid_until)) => {
            let cookie = cookies.issue(&principal, now, valid_until);
            Ok((principal, cookie))
        }
        Err(e) => {
            warn!(client = %client, error = %e, "HTTP authentication failed");
            let user = match &credential {
                Credential::Password { user, .. } => Some(crate::audit::truncated(user)),
                _ => None,
            };
            shared.handler.recorders.audit.record(crate::audit::Record {
                event: "login_refused",
                user,
                client_addr: Some(client.to_string()),
                transport: "http",
                error: Some(e.to_string()),
                ..Default::default()
            });
            let status = match e {
                AuthError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                AuthError::Unavailable(_) | AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let text = format!("sparkgate: authentication failed: {e}");
            Err(if status == StatusCode::UNAUTHORIZED {
                unauthorized(&text)
            } else {
                text_response(status, &text)
            })
        }
    }
}

/// Per HTTP connection: the connection slot each of its users holds.
type UserSlots = std::sync::Mutex<std::collections::HashMap<String, LimitGuard>>;

/// Takes a slot of `user` for this connection, unless it holds one; `false` at the user's limit.
fn admit_on_connection(shared: &Shared, users: &UserSlots, user: &str) -> bool {
    let mut users = users.lock().expect("user slots");
    if users.contains_key(user) {
        return true;
    }
    match shared.limits.admit_user(user) {
        Some(slot) => {
            users.insert(user.to_owned(), slot);
            true
        }
        None => false,
    }
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    cookies: &CookieSigner,
    users: &UserSlots,
) -> Response<Full<Bytes>> {
    let config = &shared.config;
    let path = request.uri().path();
    if path.trim_end_matches('/') != config.http.path.trim_end_matches('/') {
        return text_response(
            StatusCode::NOT_FOUND,
            &format!(
                "sparkgate: no such path; HiveServer2 clients POST to {}",
                config.http.path
            ),
        );
    }
    if request.method() != Method::POST {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "sparkgate: HiveServer2 over HTTP takes POST requests",
        );
    }
    let client = client_address(request.headers(), peer, &config.http.trusted_proxies);
    let max_body = config.http.max_body_size;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|n| *n > max_body as u64) {
        warn!(%client, length, max = max_body, "refused HTTP request: declared body too large");
        return text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("sparkgate: request body of {length} bytes refused: at most {max_body} (http.max_body_size)"),
        );
    }
    let (principal, new_cookie) = match authenticate(&request, client, shared, cookies).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if !admit_on_connection(shared, users, &principal.user) {
        let max = config.server.max_connections_per_user;
        warn!(%client, user = %sparkgate_auth::clip(&principal.user), max, "refused HTTP request: too many connections of this user");
        return text_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "sparkgate: user {:?} already holds {max} connections (server.max_connections_per_user)",
                sparkgate_auth::clip(&principal.user).to_string()
            ),
        );
    }
    let collect = Limited::new(request.into_body(), max_body).collect();
    let body = match tokio::time::timeout(config.http.body_timeout, collect).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) => {
            warn!(%client, error = %e, "refused HTTP request body");
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("sparkgate: request body refused: {e} (http.max_body_size)"),
            );
        }
        Err(_) => {
            warn!(%client, "HTTP request body did not arrive in time");
            return text_response(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "sparkgate: the request body did not arrive within {} s (http.body_timeout)",
                    config.http.body_timeout.as_secs()
                ),
            );
        }
    };
    let header = match MessageHeader::parse(&body) {
        Ok(header) => header,
        Err(e) => {
            warn!(%client, error = %e, "HTTP body is not a Thrift message");
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!("sparkgate: the body is not a Thrift binary message: {e}"),
            );
        }
    };
    let ctx = CallContext {
        owner: Owner::User(principal.user.clone()),
        principal: Some(principal),
        peer: SocketAddr::new(client, peer.port()),
        // Each HTTP request may come on a new connection: a closed one says nothing.
        client_gone: Default::default(),
    };
    let reply = shared.handler.handle(&ctx, &header, &body).await;
    let mut out = BytesMut::new();
    let codec = MessageCodec::new(Framing::Raw, usize::MAX);
    if let Err(e) = reply.encode(&codec, &mut out) {
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("sparkgate: {e}"),
        );
    }
    let mut response = Response::new(Full::new(out.freeze()));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-thrift"),
    );
    if let Some(cookie) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.5:4000".parse().unwrap();
        let inner_proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [proxy.ip(), inner_proxy];
        let with = |values: &[&'static str]| {
            let mut headers = hyper::HeaderMap::new();
            for v in values {
                headers.append("x-forwarded-for", HeaderValue::from_static(v));
            }
            headers
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client sent "6.6.6.6" itself; the proxies appended the real address and theirs.
        let spoofed = with(&["6.6.6.6, 198.51.100.9, 10.0.0.1"]);
        assert_eq!(
            client_address(&spoofed, proxy, &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_address(&with(&["6.6.6.6", "198.51.100.9"]), proxy, &trusted),
            ip("198.51.100.9"),
            "several headers are one list, in order"
        );
        assert_eq!(
            client_address(&with(&["garbage, 198.51.100.9"]), proxy, &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_address(&with(&["198.51.100.9, garbage, 10.0.0.1"]), proxy, &trusted),
            inner_proxy,
            "nothing left of a hop that is not an address is believed"
        );
        assert_eq!(client_address(&spoofed, stranger, &trusted), stranger.ip());
        assert_eq!(
            client_address(&hyper::HeaderMap::new(), proxy, &trusted),
            proxy.ip()
        );
    }
}
