//! What sparkgate does with each HS2 call of one client connection: check the caller owns the
//! handles it names, swap them for the driver's, forward, and answer what it can itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hive_thrift::frame::{FramedError, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{
    self, encode_application_exception, Hs2Request, Hs2Response, MessageHeader, MessageKind,
};
use hive_thrift::FrameError;
use tracing::{debug, info, info_span, warn, Instrument};

use sparkgate_auth::{AuthService, Credential, Principal};

use crate::backend::BackendLinks;
use crate::config::Config;
use crate::error::{Fault, GatewayError};
use crate::pool::{DriverLease, DriverPool};
use crate::session::{display_id, is_final, OperationEntry, Owner, Session, SessionTable};
use crate::tenant::{TenantConfig, Tenants, TENANT_KEYS};

/// The newest protocol version sparkgate understands; newer client requests are capped to it.
pub const MAX_PROTOCOL: t::TProtocolVersion = t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V11;
/// The OpenSession configuration key the Hive JDBC driver (2.3+) reads its fetch size from.
pub const FETCH_SIZE_KEY: &str = "hive.server2.thrift.resultset.default.fetch.size";

/// A reply ready to be framed and written to the client.
#[derive(Debug)]
pub enum Reply {
    /// Encoded by sparkgate.
    Encoded(Vec<u8>),
    /// The driver's reply bytes, passed on with only the seqid rewritten (FetchResults).
    Passthrough {
        message: Bytes,
        header: MessageHeader,
        seqid: i32,
    },
}

impl Reply {
    /// Frames this reply into `dst`, with the client's seqid in place.
    pub fn encode(&self, codec: &MessageCodec, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Reply::Encoded(v) => codec.encode_message(v, dst),
            Reply::Passthrough {
                message,
                header,
                seqid,
            } => {
                let at = header.seqid_offset;
                codec.encode_parts(
                    &[&message[..at], &seqid.to_be_bytes(), &message[at + 4..]],
                    dst,
                )
            }
        }
    }
}

/// Counts a call as a running operation on its driver while it lasts (also when cancelled).
struct InFlight<'a>(Option<&'a DriverLease>);

impl<'a> InFlight<'a> {
    fn start(lease: Option<&'a DriverLease>) -> Self {
        if let Some(lease) = lease {
            lease.operation_started();
        }
        Self(lease)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(lease) = self.0 {
            lease.operation_ended();
        }
    }
}

/// Frames [`Reply`]s for the client connection's writer.
pub struct ReplyEncoder(pub MessageCodec);

impl tokio_util::codec::Encoder<Reply> for ReplyEncoder {
    type Error = FramedError;
    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), FramedError> {
        Ok(reply.encode(&self.0, dst)?)
    }
}

/// Who is calling: the owner identity for handle checks, the authenticated principal (none yet
/// on a NOSASL connection, whose user comes with OpenSession), and the client's address.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub owner: Owner,
    pub principal: Option<Principal>,
    pub peer: SocketAddr,
}

/// The OpenSession configuration key that asks to run the session as another user.
pub const PROXY_USER_KEY: &str = "hive.server2.proxy.user";

/// What sparkgate does with HS2 calls, shared by every connection and transport.
pub struct Hs2Proxy {
    config: Arc<Config>,
    tenants: Tenants,
    auth: Arc<AuthService>,
    pub table: SessionTable,
    /// Driver pools of tenants whose drivers sparkgate starts, by tenant name.
    pub pools: HashMap<String, Arc<DriverPool>>,
    /// Connections to drivers, shared by their sessions.
    pub links: BackendLinks,
}

impl Hs2Proxy {
    pub fn new(
        config: Arc<Config>,
        auth: Arc<AuthService>,
        pools: HashMap<String, Arc<DriverPool>>,
    ) -> Self {
        Self {
            tenants: Tenants::new(config.effective_tenants()),
            links: BackendLinks::new(config.backend.clone()),
            config,
            auth,
            table: SessionTable::default(),
            pools,
        }
    }

    /// Answers one call. Never fails: every problem becomes an HS2 error status or a Thrift
    /// application exception for the client.
    ///
    /// # Cancel safety
    /// Not cancel-safe (a backend call may be half done, and the session's driver connection
    /// is then unusable); callers await it whole.
    pub async fn handle(&self, ctx: &CallContext, header: &MessageHeader, message: &[u8]) -> Reply {
        let seqid = header.seqid;
        if header.kind != MessageKind::Call {
            return exception(header, message::PROTOCOL_ERROR, "expected a call message");
        }
        if let Err(e) = message::validate_lengths(message) {
            warn!(method = %header.name, error = %e, "refused malformed call");
            return exception(header, message::PROTOCOL_ERROR, &format!("sparkgate: {e}"));
        }
        let request = match Hs2Request::decode(&header.name, &message[header.body_offset..]) {
            Ok(Some(request)) => request,
            Ok(None) => {
                debug!(method = %header.name, "unknown method");
                return exception(
                    header,
                    message::UNKNOWN_METHOD,
                    &format!("Invalid method name: '{}'", header.name),
                );
            }
            Err(e) => {
                warn!(method = %header.name, error = %e, "refused undecodable call");
                return exception(header, message::PROTOCOL_ERROR, &format!("sparkgate: {e}"));
            }
        };
        match self.dispatch(ctx, request.clone(), seqid).await {
            Ok(reply) => reply,
            Err(e) => {
                match e.fault() {
                    Fault::Client => info!(method = request.method(), error = %e, "call refused"),
                    Fault::Backend | Fault::Internal => {
                        warn!(method = request.method(), error = %e, "call failed")
                    }
                }
                let status = e.to_status();
                if let Hs2Request::GetQueryId(_) = request {
                    // TGetQueryIdResp has no status: report failures as HS2 does.
                    let text = status.error_message.unwrap_or_default();
                    return exception(header, message::INTERNAL_ERROR, &text);
                }
                let mut out = Vec::new();
                error_response(&request, status).encode_reply(seqid, &mut out);
                Reply::Encoded(out)
            }
        }
    }

    async fn dispatch(
        &self,
        ctx: &CallContext,
        request: Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        use Hs2Request as R;
        let owner = &ctx.owner;
        match request {
            R::OpenSession(req) => self.open_session(ctx, req, seqid).await,
            R::CloseSession(req) => self.close_session(owner, req, seqid).await,
            R::GetOperationStatus(req) => self.operation_status(owner, req, seqid).await,
            R::FetchResults(mut req) => {
                let op = self.operation(&req.operation_handle, owner)?;
                req.operation_handle = op.backend_handle;
                req.max_rows = req.max_rows.min(self.config.server.max_fetch_rows);
                let (message, header) = self
                    .session_call_raw(&op.session, &R::FetchResults(req))
                    .await?;
                Ok(Reply::Passthrough {
                    message,
                    header,
                    seqid,
                })
            }
            R::CloseOperation(mut req) => {
                let client_handle = req.operation_handle.clone();
                let op = self.operation(&client_handle, owner)?;
                req.operation_handle = op.backend_handle;
                let reply = self
                    .forward(&op.session, R::CloseOperation(req), seqid)
                    .await?;
                self.table.remove_operation(&client_handle, owner);
                Ok(reply)
            }
            R::CancelOperation(mut req) => {
                let client_handle = req.operation_handle.clone();
                let op = self.operation(&client_handle, owner)?;
                req.operation_handle = op.backend_handle;
                let reply = self
                    .forward(&op.session, R::CancelOperation(req), seqid)
                    .await?;
                // The state changes; the next status poll must ask the driver.
                self.table.set_final_status(&client_handle, None);
                Ok(reply)
            }
            R::GetResultSetMetadata(mut req) => {
                let op = self.operation(&req.operation_handle, owner)?;
                req.operation_handle = op.backend_handle;
                self.forward(&op.session, R::GetResultSetMetadata(req), seqid)
                    .await
            }
            R::GetQueryId(mut req) => {
                let op = self.operation(&req.operation_handle, owner)?;
                req.operation_handle = op.backend_handle;
                self.forward(&op.session, R::GetQueryId(req), seqid).await
            }
            R::GetInfo(mut req) => {
                let session = self.session(&req.session_handle, owner)?;
                req.session_handle = session.backend_handle.clone();
                self.forward(&session, R::GetInfo(req), seqid).await
            }
            R::SetClientInfo(mut req) => {
                let session = self.session(&req.session_handle, owner)?;
                req.session_handle = session.backend_handle.clone();
                self.forward(&session, R::SetClientInfo(req), seqid).await
            }
            R::GetDelegationToken(mut req) => {
                let session = self.session(&req.session_handle, owner)?;
                req.session_handle = session.backend_handle.clone();
                self.forward(&session, R::GetDelegationToken(req), seqid)
                    .await
            }
            R::CancelDelegationToken(mut req) => {
                let session = self.session(&req.session_handle, owner)?;
                req.session_handle = session.backend_handle.clone();
                self.forward(&session, R::CancelDelegationToken(req), seqid)
                    .await
            }
            R::RenewDelegationToken(mut req) => {
                let session = self.session(&req.session_handle, owner)?;
                req.session_handle = session.backend_handle.clone();
                self.forward(&session, R::RenewDelegationToken(req), seqid)
                    .await
            }
            other => self.start_operation(owner, other, seqid).await,
        }
    }

    fn is_admin(&self, principal: &Principal) -> bool {
        let server = &self.config.server;
        server.admin_users.contains(&principal.user)
            || principal
                .groups
                .iter()
                .any(|g| server.admin_groups.contains(g))
    }

    async fn open_session(
        &self,
        ctx: &CallContext,
        mut req: t::TOpenSessionReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let principal = match &ctx.principal {
            Some(principal) => principal.clone(),
            None => {
                // NOSASL: the transport carried no identity; OpenSession names the user.
                let user = req.username.clone().filter(|u| !u.is_empty());
                let user = user.as_deref().unwrap_or("anonymous");
                self.auth
                    .authenticate(&Credential::Anonymous { user }, ctx.peer.ip())
                    .await
                    .map_err(GatewayError::Auth)?
            }
        };
        let max = self.config.server.max_sessions_per_connection;
        if self.table.count_owned_by(&ctx.owner) >= max {
            return Err(GatewayError::TooManySessions { max });
        }
        let configuration = req.configuration.get_or_insert_with(Default::default);
        let mut requested = None;
        for key in TENANT_KEYS {
            if let Some(value) = configuration.remove(key) {
                requested = Some(value);
            }
        }
        let user = match configuration.remove(PROXY_USER_KEY) {
            Some(proxy_user) if self.is_admin(&principal) => proxy_user,
            Some(proxy_user) => {
                return Err(GatewayError::ProxyUserRefused {
                    user: principal.user.clone(),
                    proxy_user,
                })
            }
            None => principal.user.clone(),
        };
        let tenant = self
            .tenants
            .decide(&principal, requested.as_deref())
            .map_err(GatewayError::Tenant)?;
        let client_protocol = req.client_protocol;
        if client_protocol > MAX_PROTOCOL {
            req.client_protocol = MAX_PROTOCOL;
        }
        req.username = Some(user.clone());
        req.password = None;
        // The driver connection is sparkgate's own; this names the session's user.
        req.configuration
            .get_or_insert_with(Default::default)
            .insert(PROXY_USER_KEY.to_owned(), user.clone());
        let request = Hs2Request::OpenSession(req);
        let (reply, addr, lease) = self.place_session(tenant, &user, &request).await?;
        let Hs2Response::OpenSession(mut resp) = Hs2Response::decode_for(&request, &reply)
            .map_err(|e| GatewayError::BackendLost {
                addr: addr.clone(),
                method: "OpenSession",
                detail: e.to_string(),
            })?
        else {
            unreachable!("reply decoded for OpenSession");
        };
        let succeeded = matches!(
            resp.status.status_code,
            t::TStatusCode::SUCCESS_STATUS | t::TStatusCode::SUCCESS_WITH_INFO_STATUS
        );
        if let (true, Some(backend_handle)) = (succeeded, resp.session_handle.take()) {
            let handle = t::TSessionHandle {
                session_id: crate::session::mint_identifier(),
            };
            let mut session = Session::new(
                handle.clone(),
                ctx.owner.clone(),
                user.clone(),
                tenant.name.clone(),
                addr.clone(),
                backend_handle,
            );
            session.lease = lease;
            let session = self.table.insert(session);
            info!(
                session.id = %session.id(),
                user = %user,
                authenticated_as = %principal.user,
                tenant = %tenant.name,
                driver = %addr,
                client_protocol = client_protocol.0,
                server_protocol = resp.server_protocol_version.0,
                "session opened"
            );
            resp.session_handle = Some(handle);
            resp.configuration
                .get_or_insert_with(Default::default)
                .entry(FETCH_SIZE_KEY.to_owned())
                .or_insert_with(|| self.config.server.default_fetch_size.to_string());
        }
        Ok(encoded(Hs2Response::OpenSession(resp), seqid))
    }

    /// Opens the session on a driver of `tenant`: a pooled driver (waiting for one if needed; a
    /// driver that refuses the connection is taken out and another tried), or a static backend.
    /// Returns the driver's reply, its address and the session's place in the pool.
    async fn place_session(
        &self,
        tenant: &TenantConfig,
        user: &str,
        open: &Hs2Request,
    ) -> Result<(Bytes, String, Option<DriverLease>), GatewayError> {
        let Some(pool) = self.pools.get(&tenant.name) else {
            let addr = self.tenants.pick_backend(tenant).to_owned();
            let (reply, _) = self.call_driver(&addr, open).await?;
            return Ok((reply, addr, None));
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let waited = Instant::now();
            let lease = pool
                .acquire(|| {
                    info!(
                        tenant = %tenant.name,
                        user,
                        "no driver free for the session yet; waiting for one to start (cold start)"
                    )
                })
                .await?;
            if waited.elapsed() > Duration::from_millis(100) {
                info!(
                    tenant = %tenant.name,
                    driver = %lease.driver_id,
                    waited_secs = waited.elapsed().as_secs_f64(),
                    "session waited for a driver"
                );
            }
            match self.call_driver(&lease.address, open).await {
                Ok((reply, _)) => {
                    let addr = lease.address.clone();
                    return Ok((reply, addr, Some(lease)));
                }
                Err(e @ GatewayError::BackendUnreachable { .. }) if attempts < 3 => {
                    warn!(tenant = %tenant.name, driver = %lease.driver_id, error = %e, "placing the session elsewhere");
                    pool.mark_failed(&lease.driver_id);
                    self.links.forget(&lease.address);
                }
                // The connection broke mid-OpenSession (a driver dying, or one still starting
                // behind a reused address): no session exists yet, so trying again is safe.
                Err(e @ GatewayError::BackendLost { .. }) if attempts < 3 => {
                    warn!(tenant = %tenant.name, driver = %lease.driver_id, error = %e, "OpenSession failed on the driver's connection; trying again");
                    tokio::time::sleep(self.config.pools.reconcile_every).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One call on a shared driver connection; a session the driver dropped with a broken
    /// connection is marked lost, so its next call says so.
    async fn call_driver(
        &self,
        addr: &str,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        let result = self.links.call(addr, request).await;
        for (driver, guid) in self.links.take_lost_sessions() {
            if let Some(session) = self.table.find_by_backend(&driver, &guid) {
                warn!(session.id = %session.id(), "the driver closed this session with a broken connection");
                session.mark_lost("its driver connection broke (the driver closed the session)");
            }
        }
        result
    }

    async fn close_session(
        &self,
        owner: &Owner,
        req: t::TCloseSessionReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let session = self
            .table
            .remove_session(&req.session_handle, owner)
            .ok_or(GatewayError::UnknownHandle { kind: "session" })?;
        info!(session.id = %session.id(), "session closed by client");
        if session.lost_reason().is_some() {
            // Nothing left to close on the driver.
            let resp = Hs2Response::CloseSession(t::TCloseSessionResp {
                status: message::success_status(),
            });
            return Ok(encoded(resp, seqid));
        }
        let forwarded = t::TCloseSessionReq {
            session_handle: session.backend_handle.clone(),
        };
        self.forward(&session, Hs2Request::CloseSession(forwarded), seqid)
            .await
    }

    /// ExecuteStatement and the metadata calls: each starts an operation in a session.
    async fn start_operation(
        &self,
        owner: &Owner,
        mut request: Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let client_session = session_of(&mut request)
            .expect("every remaining call names a session")
            .clone();
        let session = self.session(&client_session, owner)?;
        *session_of(&mut request).expect("checked above") = session.backend_handle.clone();
        let span = info_span!(
            "operation",
            method = request.method(),
            session.id = %session.id(),
            tenant = %session.tenant,
            op.id = tracing::field::Empty
        );
        // The call itself is a running operation while it lasts (a synchronous
        // ExecuteStatement runs the whole query); an asynchronous statement goes on running
        // after it, until a final state is seen.
        let runs_on =
            matches!(&request, Hs2Request::ExecuteStatement(r) if r.run_async == Some(true));
        let in_flight = InFlight::start(session.lease.as_ref());
        let response = self
            .session_call(&session, &request)
            .instrument(span.clone())
            .await;
        drop(in_flight);
        let mut response = response?;
        if let Some(handle) = operation_of(&mut response) {
            if let Some(backend_handle) = handle.take() {
                let client_handle = self.table.add_operation(&session, backend_handle, runs_on);
                span.record("op.id", display_id(&client_handle.operation_id));
                let _enter = span.enter();
                debug!("operation started");
                *handle = Some(client_handle);
            }
        }
        Ok(encoded(response, seqid))
    }

    /// GetOperationStatus: from sparkgate's memory once the operation is final, else the driver.
    async fn operation_status(
        &self,
        owner: &Owner,
        mut req: t::TGetOperationStatusReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let client_handle = req.operation_handle.clone();
        let op = self.operation(&client_handle, owner)?;
        if let Some(cached) = op.final_status {
            let header = MessageHeader::parse(&cached).expect("sparkgate encoded it");
            return Ok(Reply::Passthrough {
                message: cached,
                header,
                seqid,
            });
        }
        req.operation_handle = op.backend_handle;
        let response = self
            .session_call(&op.session, &Hs2Request::GetOperationStatus(req))
            .await?;
        let mut out = Vec::new();
        response.encode_reply(seqid, &mut out);
        if let Hs2Response::GetOperationStatus(status) = &response {
            let done = status.status.status_code == t::TStatusCode::SUCCESS_STATUS
                && status.operation_state.is_some_and(is_final);
            if done {
                self.table
                    .set_final_status(&client_handle, Some(Bytes::from(out.clone())));
            }
        }
        Ok(Reply::Encoded(out))
    }

    fn session(
        &self,
        handle: &t::TSessionHandle,
        owner: &Owner,
    ) -> Result<Arc<Session>, GatewayError> {
        self.table
            .session(handle, owner)
            .ok_or(GatewayError::UnknownHandle { kind: "session" })
    }

    fn operation(
        &self,
        handle: &t::TOperationHandle,
        owner: &Owner,
    ) -> Result<OperationEntry, GatewayError> {
        self.table
            .operation(handle, owner)
            .ok_or(GatewayError::UnknownHandle { kind: "operation" })
    }

    async fn forward(
        &self,
        session: &Session,
        request: Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let response = self.session_call(session, &request).await?;
        Ok(encoded(response, seqid))
    }

    async fn session_call(
        &self,
        session: &Session,
        request: &Hs2Request,
    ) -> Result<Hs2Response, GatewayError> {
        let (reply, _) = self.session_call_raw(session, request).await?;
        Hs2Response::decode_for(request, &reply).map_err(|e| {
            session.mark_lost(&e.to_string());
            GatewayError::BackendLost {
                addr: session.backend_addr.clone(),
                method: request.method(),
                detail: e.to_string(),
            }
        })
    }

    /// Sends a call of `session` to its driver, unless the session is known to be lost.
    async fn session_call_raw(
        &self,
        session: &Session,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        let lost = |reason: String| GatewayError::BackendLost {
            addr: session.backend_addr.clone(),
            method: "an earlier call",
            detail: reason,
        };
        if let Some(reason) = session.lost_reason() {
            return Err(lost(reason));
        }
        if let Some(reason) = session.lease.as_ref().and_then(|l| l.driver_failure()) {
            session.mark_lost(&reason);
            return Err(lost(reason));
        }
        self.call_driver(&session.backend_addr, request).await
    }

    /// Drops the driver connections of pooled drivers that are gone (static backends stay).
    pub fn forget_gone_drivers(&self) {
        if self.pools.is_empty() {
            return;
        }
        let mut live: std::collections::HashSet<String> = self
            .pools
            .values()
            .flat_map(|pool| pool.drivers())
            .map(|d| d.address)
            .collect();
        for tenant in self.config.effective_tenants() {
            live.extend(tenant.backends);
        }
        self.links.retain(&live);
    }

    /// Closes sessions idle for longer than the configured timeout, on the driver too.
    pub async fn expire_idle_sessions(&self) {
        let timeout = self.config.server.idle_session_timeout;
        let Some(cutoff) = Instant::now().checked_sub(timeout) else {
            return;
        };
        for session in self.table.take_idle(cutoff) {
            info!(session.id = %session.id(), idle = %humantime(timeout), "closing idle session");
            self.close_on_driver(&session).await;
        }
    }

    /// Closes, on their drivers, the sessions a finished connection owned.
    pub async fn close_owned_by(&self, owner: &Owner) -> usize {
        let sessions = self.table.take_owned_by(owner);
        for session in &sessions {
            self.close_on_driver(session).await;
        }
        sessions.len()
    }

    /// Closes every session on its driver (shutdown).
    pub async fn close_all(&self) {
        for session in self.table.take_all() {
            self.close_on_driver(&session).await;
        }
    }

    async fn close_on_driver(&self, session: &Session) {
        if session.lost_reason().is_some() {
            return;
        }
        let request = Hs2Request::CloseSession(t::TCloseSessionReq {
            session_handle: session.backend_handle.clone(),
        });
        match self.session_call(session, &request).await {
            Ok(resp) if resp.status().status_code == t::TStatusCode::SUCCESS_STATUS => {}
            Ok(resp) => {
                warn!(session.id = %session.id(), status = ?resp.status(), "driver refused CloseSession")
            }
            Err(e) => debug!(session.id = %session.id(), error = %e, "driver CloseSession failed"),
        }
    }
}

fn humantime(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

fn encoded(response: Hs2Response, seqid: i32) -> Reply {
    let mut out = Vec::new();
    response.encode_reply(seqid, &mut out);
    Reply::Encoded(out)
}

fn exception(header: &MessageHeader, kind: i32, text: &str) -> Reply {
    let mut out = Vec::new();
    encode_application_exception(&header.name, header.seqid, kind, text, &mut out);
    Reply::Encoded(out)
}

/// The session a session-level call names.
fn session_of(request: &mut Hs2Request) -> Option<&mut t::TSessionHandle> {
    use Hs2Request as R;
    Some(match request {
        R::ExecuteStatement(r) => &mut r.session_handle,
        R::GetTypeInfo(r) => &mut r.session_handle,
        R::GetCatalogs(r) => &mut r.session_handle,
        R::GetSchemas(r) => &mut r.session_handle,
        R::GetTables(r) => &mut r.session_handle,
        R::GetTableTypes(r) => &mut r.session_handle,
        R::GetColumns(r) => &mut r.session_handle,
        R::GetFunctions(r) => &mut r.session_handle,
        R::GetPrimaryKeys(r) => &mut r.session_handle,
        R::GetCrossReference(r) => &mut r.session_handle,
        _ => return None,
    })
}

/// The operation handle a response to an operation-starting call carries.
fn operation_of(response: &mut Hs2Response) -> Option<&mut Option<t::TOperationHandle>> {
    use Hs2Response as R;
    Some(match response {
        R::ExecuteStatement(r) => &mut r.operation_handle,
        R::GetTypeInfo(r) => &mut r.operation_handle,
        R::GetCatalogs(r) => &mut r.operation_handle,
        R::GetSchemas(r) => &mut r.operation_handle,
        R::GetTables(r) => &mut r.operation_handle,
        R::GetTableTypes(r) => &mut r.operation_handle,
        R::GetColumns(r) => &mut r.operation_handle,
        R::GetFunctions(r) => &mut r.operation_handle,
        R::GetPrimaryKeys(r) => &mut r.operation_handle,
        R::GetCrossReference(r) => &mut r.operation_handle,
        _ => return None,
    })
}

/// A GetOperationStatus response with only a status and, optionally, a state.
pub fn operation_status_response(
    status: t::TStatus,
    state: Option<t::TOperationState>,
) -> t::TGetOperationStatusResp {
    t::TGetOperationStatusResp {
        status,
        operation_state: state,
        sql_state: None,
        error_code: None,
        error_message: None,
        task_status: None,
        operation_started: None,
        operation_completed: None,
        has_result_set: None,
        progress_update_response: None,
        num_modified_rows: None,
    }
}

/// A response of the request's type carrying only an error status.
pub fn error_response(request: &Hs2Request, status: t::TStatus) -> Hs2Response {
    use Hs2Request as Q;
    use Hs2Response as R;
    match request {
        Q::OpenSession(req) => R::OpenSession(t::TOpenSessionResp {
            status,
            server_protocol_version: req.client_protocol.min(MAX_PROTOCOL),
            session_handle: None,
            configuration: None,
        }),
        Q::CloseSession(_) => R::CloseSession(t::TCloseSessionResp { status }),
        Q::GetInfo(_) => R::GetInfo(t::TGetInfoResp {
            status,
            info_value: t::TGetInfoValue::StringValue(String::new()),
        }),
        Q::ExecuteStatement(_) => R::ExecuteStatement(t::TExecuteStatementResp {
            status,
            operation_handle: None,
        }),
        Q::GetTypeInfo(_) => R::GetTypeInfo(t::TGetTypeInfoResp {
            status,
            operation_handle: None,
        }),
        Q::GetCatalogs(_) => R::GetCatalogs(t::TGetCatalogsResp {
            status,
            operation_handle: None,
        }),
        Q::GetSchemas(_) => R::GetSchemas(t::TGetSchemasResp {
            status,
            operation_handle: None,
        }),
        Q::GetTables(_) => R::GetTables(t::TGetTablesResp {
            status,
            operation_handle: None,
        }),
        Q::GetTableTypes(_) => R::GetTableTypes(t::TGetTableTypesResp {
            status,
            operation_handle: None,
        }),
        Q::GetColumns(_) => R::GetColumns(t::TGetColumnsResp {
            status,
            operation_handle: None,
        }),
        Q::GetFunctions(_) => R::GetFunctions(t::TGetFunctionsResp {
            status,
            operation_handle: None,
        }),
        Q::GetPrimaryKeys(_) => R::GetPrimaryKeys(t::TGetPrimaryKeysResp {
            status,
            operation_handle: None,
        }),
        Q::GetCrossReference(_) => R::GetCrossReference(t::TGetCrossReferenceResp {
            status,
            operation_handle: None,
        }),
        Q::GetOperationStatus(_) => R::GetOperationStatus(operation_status_response(status, None)),
        Q::CancelOperation(_) => R::CancelOperation(t::TCancelOperationResp { status }),
        Q::CloseOperation(_) => R::CloseOperation(t::TCloseOperationResp { status }),
        Q::GetResultSetMetadata(_) => R::GetResultSetMetadata(t::TGetResultSetMetadataResp {
            status,
            schema: None,
        }),
        Q::FetchResults(_) => R::FetchResults(t::TFetchResultsResp {
            status,
            has_more_rows: None,
            results: None,
        }),
        Q::GetDelegationToken(_) => R::GetDelegationToken(t::TGetDelegationTokenResp {
            status,
            delegation_token: None,
        }),
        Q::CancelDelegationToken(_) => {
            R::CancelDelegationToken(t::TCancelDelegationTokenResp { status })
        }
        Q::RenewDelegationToken(_) => {
            R::RenewDelegationToken(t::TRenewDelegationTokenResp { status })
        }
        // No status on the wire: `handle` answers failed GetQueryId calls with an exception.
        Q::GetQueryId(_) => R::GetQueryId(t::TGetQueryIdResp {
            query_id: String::new(),
        }),
        Q::SetClientInfo(_) => R::SetClientInfo(t::TSetClientInfoResp { status }),
    }
}
