//! Thrift over HTTP: each POST to the configured path carries one binary-protocol call and gets
//! its reply back (beeline `;transportMode=http;httpPath=cliservice`, PyHive `THttpClient`).
//!
//! Every request is authenticated: a valid session cookie (signed by sparkgate, expiring) or an
//! `Authorization: Basic|Bearer` header. Sessions opened over HTTP belong to the user, not to a
//! TCP connection, since a client may send each request on a new connection.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::message::MessageHeader;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Sha256;
use sparkgate_auth::{AuthError, Credential, Principal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::frontend::limits::LimitGuard;
use crate::frontend::Shared;
use crate::session::CallContext;
use crate::session::Owner;

/// The cookie Hive's own HTTP transport uses; clients that keep cookies send it back.
pub const COOKIE_NAME: &str = "hive.server2.auth";

/// Signs and checks session cookies.
pub struct CookieSigner {
    key: Vec<u8>,
    ttl: Duration,
    secure: bool,
}

impl CookieSigner {
    pub fn new(key: Vec<u8>, ttl: Duration, secure: bool) -> Self {
        Self { key, ttl, secure }
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// `Set-Cookie` value for `principal`, valid for the cookie lifetime but never past
    /// `valid_until` (the login's own expiry, a token's `exp`); none when that leaves nothing.
    pub fn issue(
        &self,
        principal: &Principal,
        now: SystemTime,
        valid_until: Option<SystemTime>,
    ) -> Option<String> {
        let left = match valid_until {
            Some(until) => until.duration_since(now).unwrap_or_default().min(self.ttl),
            None => self.ttl,
        };
        if left.as_secs() == 0 {
            return None;
        }
        let expires = now.duration_since(UNIX_EPOCH).unwrap_or_default() + left;
        let payload = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&principal.user),
            URL_SAFE_NO_PAD.encode(principal.groups.join("\n")),
            expires.as_secs()
        );
        let signature = self.mac(&payload);
        Some(format!(
            "{COOKIE_NAME}={payload}.{signature}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            left.as_secs(),
            if self.secure { "; Secure" } else { "" }
        ))
    }

    /// The principal of a cookie value, if its signature is right and it has not expired.
    pub fn verify(&self, value: &str, now: SystemTime) -> Option<Principal> {
        let (payload, signature) = value.rsplit_once('.')?;
        let expected = self.mac(payload);
        // Constant-time comparison through the MAC API.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload.as_bytes());
        let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
        mac.verify_slice(&given).ok()?;
        debug_assert_eq!(expected, signature);
        let mut parts = payload.splitn(3, '.');
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let groups = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let expires: u64 = parts.next()?.parse().ok()?;
        if now.duration_since(UNIX_EPOCH).ok()?.as_secs() >= expires {
            return None;
        }
        let groups = groups
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Principal { user, groups })
    }
}

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

    fn principal() -> Principal {
        Principal {
            user: "alice".into(),
            groups: vec!["analysts".into(), "admins".into()],
        }
    }

    fn value_of(set_cookie: &str) -> &str {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("hive.server2.auth=")
            .unwrap()
    }

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

    #[test]
    fn cookie_round_trip_and_attributes() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), true);
        let now = SystemTime::now();
        let set = signer.issue(&principal(), now, None).unwrap();
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age=60"));
        assert_eq!(signer.verify(value_of(&set), now), Some(principal()));
        let plain = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), false);
        assert!(!plain
            .issue(&principal(), now, None)
            .unwrap()
            .contains("Secure"));
    }

    /// A cookie never outlives the login it stands for (a token's `exp`), and none is issued
    /// when nothing is left of it (or cookies last zero seconds: `auth.cache_ttl = 0`).
    #[test]
    fn a_cookie_ends_with_the_login_it_stands_for() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(3600), false);
        let now = SystemTime::now();
        let set = signer
            .issue(&principal(), now, Some(now + Duration::from_secs(90)))
            .unwrap();
        assert!(set.contains("Max-Age=90"), "{set}");
        assert_eq!(signer.verify(value_of(&set), now), Some(principal()));
        assert_eq!(
            signer.verify(value_of(&set), now + Duration::from_secs(91)),
            None
        );
        assert_eq!(signer.issue(&principal(), now, Some(now)), None);
        let off = CookieSigner::new(b"k".repeat(32), Duration::ZERO, false);
        assert_eq!(off.issue(&principal(), now, None), None);
    }

    #[test]
    fn forged_tampered_or_expired_cookies_are_refused() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), false);
        let now = SystemTime::now();
        let set = signer.issue(&principal(), now, None).unwrap();
        let value = value_of(&set);
        let other_key = CookieSigner::new(b"x".repeat(32), Duration::from_secs(60), false);
        assert_eq!(
            other_key.verify(value, now),
            None,
            "signed with another key"
        );
        let (payload, sig) = value.rsplit_once('.').unwrap();
        let tampered = format!(
            "{}.{sig}",
            payload.replacen(
                &URL_SAFE_NO_PAD.encode("alice"),
                &URL_SAFE_NO_PAD.encode("admin"),
                1
            )
        );
        assert_eq!(signer.verify(&tampered, now), None, "payload changed");
        assert_eq!(
            signer.verify(value, now + Duration::from_secs(61)),
            None,
            "expired"
        );
        assert_eq!(signer.verify("garbage", now), None);
    }
}
