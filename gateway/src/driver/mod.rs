//! Connections to drivers, shared by every session on a driver and bounded per driver
//! (`backend.max_connections_per_driver`), so ten thousand idle client sessions cost no driver
//! connection at all.
//!
//! A Spark Thrift Server lets any connection use any session handle, so a call takes whichever
//! connection of its driver is free. Connections authenticate as sparkgate's service user with
//! the driver's own secret (a driver sparkgate runs takes no other connection), and OpenSession
//! names the session's user with `hive.server2.proxy.user`, which the driver allows that service
//! user alone.
//!
//! One server behaviour shapes this module: when a connection ends, the driver closes the last
//! session opened on it (unless it was closed on the same connection). So a connection that
//! breaks is dropped together with the knowledge of which session went with it, and the caller
//! marks that session lost instead of letting it fail later with a puzzling error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response, MessageHeader};
use hive_thrift::sasl::PlainCredentials;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::config::{BackendConfig, FrontendTransport};
use crate::error::GatewayError;
use crate::launcher::DriverSecret;

pub mod metrics;
pub mod progress;

/// One pooled connection.
struct Link {
    conn: Hs2Connection,
    /// The session the driver would close if this connection ended.
    bound_session: Option<Vec<u8>>,
}

/// The connections of one driver.
struct DriverLinks {
    /// What new connections log in with: the secret of the driver now at this address.
    secret: Mutex<DriverSecret>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Link>>,
    open: AtomicUsize,
}

/// Every driver's connections.
pub struct BackendLinks {
    config: BackendConfig,
    drivers: Mutex<HashMap<String, Arc<DriverLinks>>>,
    /// Sessions (driver address, backend handle guid) the drivers closed with a broken
    /// connection, for the caller to mark lost ([`BackendLinks::take_lost_sessions`]).
    lost_sessions: Mutex<Vec<(String, Vec<u8>)>>,
    /// Calls sent to drivers, by method (metrics: what sparkgate costs the drivers).
    calls: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for BackendLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLinks")
            .field("drivers", &self.drivers.lock().expect("links").len())
            .finish_non_exhaustive()
    }
}

impl BackendLinks {
    pub fn new(config: BackendConfig) -> Self {
        Self {
            config,
            drivers: Mutex::new(HashMap::new()),
            lost_sessions: Mutex::new(Vec::new()),
            calls: Mutex::default(),
        }
    }

    /// Sessions the drivers closed because their connection broke, since the last call.
    pub fn take_lost_sessions(&self) -> Vec<(String, Vec<u8>)> {
        let mut lost = self.lost_sessions.lock().expect("links");
        if lost.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut *lost)
    }

    /// Drops a broken connection, noting the session the driver closed with it.
    fn discard(&self, addr: &str, links: &DriverLinks, link: Link) {
        links.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(guid) = link.bound_session {
            self.lost_sessions
                .lock()
                .expect("links")
                .push((addr.to_owned(), guid));
        }
    }

    fn driver(&self, addr: &str) -> Arc<DriverLinks> {
        self.drivers
            .lock()
            .expect("links")
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(DriverLinks {
                    secret: Mutex::new(DriverSecret::default()),
                    permits: Arc::new(Semaphore::new(self.config.max_connections_per_driver)),
                    idle: Mutex::new(Vec::new()),
                    open: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// The secret of the driver now at `addr`, for the connections opened to it from now on.
    /// Called with each lease, before a session's first call. A different secret means another
    /// driver took the address (a local port reused): idle connections to the old one go.
    pub fn introduce(&self, addr: &str, secret: &DriverSecret) {
        let links = self.driver(addr);
        let mut known = links.secret.lock().expect("links");
        if *known != *secret {
            *known = secret.clone();
            let stale = std::mem::take(&mut *links.idle.lock().expect("links"));
            links.open.fetch_sub(stale.len(), Ordering::Relaxed);
        }
    }

    /// Calls sent to drivers so far, by method.
    pub fn calls_by_method(&self) -> Vec<(&'static str, u64)> {
        let calls = self.calls.lock().expect("links");
        calls.iter().map(|(m, n)| (*m, *n)).collect()
    }

    /// Open connections per driver address (admin API, metrics, benches).
    pub fn open_connections(&self) -> Vec<(String, usize)> {
        let drivers = self.drivers.lock().expect("links");
        let mut open: Vec<_> = drivers
            .iter()
            .map(|(addr, d)| (addr.clone(), d.open.load(Ordering::Relaxed)))
            .collect();
        open.sort();
        open
    }

    /// Drops the connections of drivers not in `live` (stopped or failed drivers).
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .drivers
            .lock()
            .expect("links")
            .keys()
            .filter(|addr| !live.contains(*addr))
            .cloned()
            .collect();
        for addr in gone {
            self.forget(&addr);
        }
    }

    /// Drops the idle connections of a driver that is gone.
    pub fn forget(&self, addr: &str) {
        if let Some(links) = self.drivers.lock().expect("links").remove(addr) {
            let idle = std::mem::take(&mut *links.idle.lock().expect("links"));
            links.open.fetch_sub(idle.len(), Ordering::Relaxed);
        }
    }

    async fn connect(
        &self,
        addr: &str,
        secret: &DriverSecret,
        method: &'static str,
    ) -> Result<Link, GatewayError> {
        let auth = match self.config.transport {
            FrontendTransport::Sasl => ClientAuth::Plain(PlainCredentials {
                authzid: String::new(),
                user: self.config.service_user.clone(),
                // A server sparkgate does not run has no secret of ours (and, on auth NONE,
                // ignores the password; the real check was ours).
                password: if secret.is_empty() {
                    "sparkgate".to_owned()
                } else {
                    secret.expose().to_owned()
                },
            }),
            FrontendTransport::Nosasl => ClientAuth::NoSasl,
        };
        let conn = Hs2Connection::connect(
            addr,
            &auth,
            self.config.max_message_size,
            self.config.connect_timeout,
        )
        .await
        .map_err(|e| GatewayError::from_backend(addr, method, e))?;
        Ok(Link {
            conn,
            bound_session: None,
        })
    }

    /// Sends one call to the driver at `addr` on a free connection (waiting for one, within the
    /// call's deadline, when all are busy), and returns its raw reply.
    ///
    /// # Cancel safety
    /// Cancel-safe as far as the pool goes: a call dropped mid-way discards its connection
    /// (counted closed) and reports the session the driver closes with it through
    /// [`BackendLinks::take_lost_sessions`]. The call itself may or may not have run.
    pub async fn call(
        &self,
        addr: &str,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        self.call_on_link(addr, request, false).await
    }

    /// An OpenSession whose session is then untied from the connection it was opened on (see
    /// the module notes): a throwaway session is opened and closed on the same connection
    /// right after. The session then outlives that connection, and the sparkgate process that
    /// holds it: what an HTTP session other replicas also serve needs. Two more round trips;
    /// if they fail, the session stays tied (and is marked lost with its connection, as any).
    pub async fn open_untied(
        &self,
        addr: &str,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        self.call_on_link(addr, request, true).await
    }

    async fn call_on_link(
        &self,
        addr: &str,
        request: &Hs2Request,
        untie: bool,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        let sync_execute =
            matches!(request, Hs2Request::ExecuteStatement(r) if r.run_async != Some(true));
        let (timeout, setting) = match request {
            _ if sync_execute => (self.config.execute_timeout, "execute_timeout"),
            Hs2Request::OpenSession(_) | Hs2Request::CloseSession(_) => {
                (self.config.session_call_timeout, "session_call_timeout")
            }
            _ => (self.config.call_timeout, "call_timeout"),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        *self
            .calls
            .lock()
            .expect("links")
            .entry(request.method())
            .or_default() += 1;
        let links = self.driver(addr);
        let permit =
            match tokio::time::timeout_at(deadline, links.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    return Err(GatewayError::BackendBusy {
                        addr: addr.to_owned(),
                        max: self.config.max_connections_per_driver,
                    })
                }
            };
        let reused = loop {
            let Some(mut link) = links.idle.lock().expect("links").pop() else {
                break None;
            };
            if !link.conn.is_broken() {
                break Some(link);
            }
            // Closed by the driver while idle (it restarted, or timed the connection out).
            self.discard(addr, &links, link);
            debug!(driver = %addr, "dropped a driver connection closed while idle");
        };
        let link = match reused {
            Some(link) => link,
            None => {
                let secret = links.secret.lock().expect("links").clone();
                let link = self.connect(addr, &secret, request.method()).await?;
                links.open.fetch_add(1, Ordering::Relaxed);
                debug!(driver = %addr, open = links.open.load(Ordering::Relaxed), "new driver connection");
                link
            }
        };
        // From here the connection is counted open and may carry a bound session: if this
        // future is dropped mid-call, the guard discards it as broken (half a call may be on
        // the wire) and notes its session lost.
        let mut checkout = Checkout {
            owner: self,
            addr,
            links: &links,
            link: Some(link),
        };
        let conn = &mut checkout.link.as_mut().expect("checked out").conn;
        let outcome = tokio::time::timeout_at(deadline, conn.call_raw(request)).await;
        let failure = match outcome {
            Ok(Ok(reply)) => {
                let mut link = checkout.link.take().expect("checked out");
                track_bound_session(&mut link, request, &reply.0);
                if let (true, Hs2Request::OpenSession(open)) = (untie, request) {
                    let untied =
                        tokio::time::timeout_at(deadline, untie_session(&mut link, open, addr));
                    if untied.await.is_err() {
                        // Half a call may be on the wire: the connection goes, with what it ties.
                        self.discard(addr, &links, link);
                        return Err(GatewayError::BackendTimeout {
                            addr: addr.to_owned(),
                            method: request.method(),
                            secs: timeout.as_secs(),
                            setting,
                        });
                    }
                }
                links.idle.lock().expect("links").push(link);
                drop(permit);
                return Ok(reply);
            }
            Ok(Err(e)) => GatewayError::from_backend(addr, request.method(), e),
            Err(_) => GatewayError::BackendTimeout {
                addr: addr.to_owned(),
                method: request.method(),
                secs: timeout.as_secs(),
                setting,
            },
        };
        warn!(driver = %addr, method = request.method(), error = %failure, "driver connection dropped");
        drop(checkout);
        Err(failure)
    }
}

/// A connection taken out of its driver's idle list for one call; discarded on drop unless
/// the call gave it back.
struct Checkout<'a> {
    owner: &'a BackendLinks,
    addr: &'a str,
    links: &'a DriverLinks,
    link: Option<Link>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.owner.discard(self.addr, self.links, link);
        }
    }
}

/// Ties a throwaway session to the connection in place of the one just opened on it, and
/// closes it there, so the driver ties none (see [`BackendLinks::open_untied`]).
async fn untie_session(link: &mut Link, open: &t::TOpenSessionReq, addr: &str) {
    let throwaway = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: open.client_protocol,
        username: None,
        password: None,
        configuration: None,
    });
    let untied = async {
        let (reply, _) = link.conn.call_raw(&throwaway).await.ok()?;
        track_bound_session(link, &throwaway, &reply);
        let Ok(Hs2Response::OpenSession(t::TOpenSessionResp {
            session_handle: Some(handle),
            ..
        })) = Hs2Response::decode_for(&throwaway, &reply)
        else {
            return None;
        };
        let close = Hs2Request::CloseSession(t::TCloseSessionReq {
            session_handle: handle,
        });
        let (reply, _) = link.conn.call_raw(&close).await.ok()?;
        track_bound_session(link, &close, &reply);
        link.bound_session.is_none().then_some(())
    };
    if untied.await.is_none() {
        warn!(driver = %addr, "could not untie a session from its driver connection; it ends with that connection");
    }
}

/// Follows which session the driver ties to this connection: the last one opened on it, until
/// it is closed on it.
fn track_bound_session(link: &mut Link, request: &Hs2Request, reply: &[u8]) {
    match request {
        Hs2Request::OpenSession(_) => {
            if let Ok(Hs2Response::OpenSession(resp)) = Hs2Response::decode_for(request, reply) {
                if let Some(handle) = resp.session_handle {
                    link.bound_session = Some(handle.session_id.guid);
                }
            }
        }
        Hs2Request::CloseSession(req) => {
            let closed_ok = matches!(
                Hs2Response::decode_for(request, reply),
                Ok(Hs2Response::CloseSession(t::TCloseSessionResp { status }))
                    if status.status_code == t::TStatusCode::SUCCESS_STATUS
            );
            if closed_ok && link.bound_session.as_ref() == Some(&req.session_handle.session_id.guid)
            {
                link.bound_session = None;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
