//! The call handler: what sparkgate does with each HS2 call of a client connection. It checks
//! the caller owns the handles it names, swaps them for the driver's, forwards, and answers what
//! it can itself.
//!
//! * [`client`]: which family of client a session serves, and answers shaped for it.
//! * [`open`]: OpenSession: the user, the tenant, and a place on one of the tenant's drivers.
//! * [`operations`]: calls that start and end operations and sessions; [`status`]: status polls
//!   and the operation log.
//! * [`admission`], [`queued`]: per-tenant statement queues; [`record`]: statements' records for
//!   the audit log and usage book.
//! * [`replay`]: sessions that outlive their driver (moved elsewhere, their state replayed);
//!   [`sealed`]: HTTP handles any replica can serve.
//! * [`reply`]: framing replies, and error replies of each method's type.
//! * [`housekeeping`]: idle sessions, finished connections, gone drivers, shutdown.
//! * [`table`]: the session table (client handle → owner, tenant, driver handle).

pub mod admission;
pub mod cache;
pub mod client;
mod housekeeping;
pub mod metrics;
mod open;
mod operations;
mod queued;
pub mod record;
pub mod replay;
pub mod reply;
pub mod sealed;
mod status;
pub mod stock;
pub mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response, MessageHeader, MessageKind};
use tracing::{debug, info, warn};

use sparkgate_auth::{AuthService, Principal};

use crate::config::Config;
use crate::driver::BackendLinks;
use crate::error::{Fault, GatewayError};
use crate::pool::DriverPool;
use crate::tenant::Tenants;

pub use housekeeping::SHARED_RECHECK_AFTER;
pub use open::{FETCH_SIZE_KEY, MAX_PROTOCOL, PROXY_USER_KEY};
use reply::{encoded, exception};
pub use reply::{Reply, ReplyEncoder};
use table::OperationEntry;
pub use table::{Owner, Session, SessionTable};

/// Who is calling: the owner identity for handle checks, the authenticated principal (none yet
/// on a NOSASL connection, whose user comes with OpenSession), and the client's address.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub owner: Owner,
    pub principal: Option<Principal>,
    pub peer: SocketAddr,
    /// Cancelled when the client goes away mid-call: a statement sparkgate runs for it is
    /// cancelled on the driver.
    pub client_gone: tokio_util::sync::CancellationToken,
}

/// What sparkgate does with HS2 calls, shared by every connection and transport.
pub struct CallHandler {
    config: Arc<Config>,
    tenants: Tenants,
    auth: Arc<AuthService>,
    pub table: Arc<SessionTable>,
    /// Seals HTTP sessions' handles (see [`sealed`]).
    sealer: Option<Arc<sealed::Sealer>>,
    /// Every tenant's driver pool, by tenant name.
    pub pools: HashMap<String, Arc<DriverPool>>,
    /// Connections to drivers, shared by their sessions.
    pub links: Arc<BackendLinks>,
    /// Reads drivers' Spark UIs (statements' progress).
    ui: crate::driver::progress::UiClient,
    /// Results of read-only statements.
    pub cache: Arc<cache::ResultCache>,
    /// Driver sessions kept for reuse.
    pub stock: stock::SessionStock,
    /// Where statements' and sessions' records go (audit log, usage book).
    pub recorders: record::Recorders,
    /// Each tenant's statement queue.
    pub admission: HashMap<String, Arc<admission::TenantQueue>>,
    /// Asynchronous statements that wait in a queue, for the dispatcher to start when their turn
    /// comes (see [`CallHandler::dispatch_queued`]).
    queued: tokio::sync::mpsc::UnboundedSender<queued::QueuedStatement>,
    queued_receiver:
        std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<queued::QueuedStatement>>>,
}

impl CallHandler {
    pub fn new(
        config: Arc<Config>,
        auth: Arc<AuthService>,
        pools: HashMap<String, Arc<DriverPool>>,
    ) -> Self {
        let tenants = config.effective_tenants();
        let admission = tenants
            .iter()
            .map(|t| {
                let gauge = pools
                    .get(&t.name)
                    .map(|p| p.queued_statements.clone())
                    .unwrap_or_default();
                let queue = admission::TenantQueue::new(&t.name, t.admission(), gauge);
                (t.name.clone(), queue)
            })
            .collect();
        let (queued, queued_receiver) = tokio::sync::mpsc::unbounded_channel();
        Self {
            tenants: Tenants::new(tenants),
            recorders: record::Recorders {
                audit: Arc::new(crate::audit::AuditLog::off()),
                usage: Arc::new(crate::usage::Usage::load(config.usage.clone())),
            },
            admission,
            queued,
            queued_receiver: std::sync::Mutex::new(Some(queued_receiver)),
            links: Arc::new(BackendLinks::new(config.backend.clone())),
            cache: cache::ResultCache::new(config.cache.clone()),
            stock: Default::default(),
            config,
            auth,
            table: Arc::default(),
            sealer: None,
            pools,
            ui: crate::driver::progress::UiClient::new(std::time::Duration::from_secs(2)),
        }
    }

    /// Answers one call. Never fails: every problem becomes an HS2 error status or a Thrift
    /// application exception for the client.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped mid-call, the driver may have done what was asked without
    /// sparkgate recording it (an operation started but not in the table, a session closed on
    /// the driver but still listed). The driver connection itself is safe (see
    /// [`BackendLinks::call`]). Only shutdown drops it, after the grace period, and the session
    /// table is closed right after.
    pub async fn handle(&self, ctx: &CallContext, header: &MessageHeader, message: &[u8]) -> Reply {
        let seqid = header.seqid;
        if header.kind != MessageKind::Call {
            return exception(header, message::PROTOCOL_ERROR, "expected a call message");
        }
        if let Err(e) = message::validate_lengths(message) {
            warn!(method = %sparkgate_auth::clip(&header.name), error = %e, "refused malformed call");
            return exception(header, message::PROTOCOL_ERROR, &format!("sparkgate: {e}"));
        }
        let mut request = match Hs2Request::decode(&header.name, &message[header.body_offset..]) {
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
                warn!(method = %sparkgate_auth::clip(&header.name), error = %e, "refused undecodable call");
                return exception(header, message::PROTOCOL_ERROR, &format!("sparkgate: {e}"));
            }
        };
        let target = replay::CallTarget::of(&mut request);
        match self.dispatch(ctx, &mut request, seqid).await {
            Ok(reply) => reply,
            Err(e) => {
                let e = match e.lost_driver() {
                    Some(_) => self.driver_lost_error(&ctx.owner, target, e).await,
                    None => e,
                };
                match e.fault() {
                    Fault::Client => info!(method = request.method(), error = %e, "call refused"),
                    Fault::Backend | Fault::Internal => {
                        warn!(method = request.method(), error = %e, "call failed")
                    }
                }
                let status = e.to_status();
                if let Hs2Request::OpenSession(req) = &request {
                    self.audit_refused_session(ctx, req, &status);
                }
                if let Hs2Request::GetQueryId(_) = request {
                    // TGetQueryIdResp has no status: report failures as HS2 does.
                    let text = status.error_message.unwrap_or_default();
                    return exception(header, message::INTERNAL_ERROR, &text);
                }
                encoded(Hs2Response::error_for(&request, status), seqid)
            }
        }
    }

    /// Routes one call. Handles in `request` are swapped for the driver's on the way (the
    /// caller only reads its method and type afterwards, for an error reply).
    async fn dispatch(
        &self,
        ctx: &CallContext,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        use Hs2Request as R;
        let owner = &ctx.owner;
        match request {
            R::OpenSession(req) => self.open_session(ctx, req, seqid).await,
            R::CloseSession(req) => self.close_session(owner, req, seqid).await,
            R::GetOperationStatus(req) => self.operation_status(ctx, req, seqid).await,
            _ if request.starts_operation() => self.start_operation(ctx, request, seqid).await,
            _ => {
                if let Some(handle) = request.operation_handle_mut() {
                    let op = self.operation(handle, owner).await?;
                    return self.dispatch_on_operation(owner, op, request, seqid).await;
                }
                // Any other call on a session: swap the handle, forward.
                let handle = request
                    .session_handle_mut()
                    .expect("every call but OpenSession names a session or an operation");
                let session = self.session(handle, owner).await?;
                *handle = session.backend_handle.clone();
                self.forward(&session, request, seqid).await
            }
        }
    }

    /// A call on an operation (but its status poll): answered for a statement still queued in
    /// sparkgate, from the cache, or forwarded with the driver's handle.
    async fn dispatch_on_operation(
        &self,
        owner: &Owner,
        op: OperationEntry,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        use Hs2Request as R;
        if let Some(reply) = self.queued_answer(&op, request, seqid).await? {
            return Ok(reply);
        }
        match request {
            R::FetchResults(_) => {
                let reply = self.fetch_results(&op, request, seqid).await?;
                if let (Some(record), R::FetchResults(req)) = (&op.record, &*request) {
                    if req.fetch_type.unwrap_or(0) == 0 {
                        let bytes = reply.bytes();
                        let rows = message::fetch_row_count(bytes).unwrap_or(0);
                        record.fetched(rows, bytes.len() as u64);
                    }
                }
                Ok(reply)
            }
            R::GetResultSetMetadata(req) => {
                req.operation_handle = op.backend_handle.clone();
                if let Some(reply) = self.cached_metadata(&op, seqid).await {
                    return Ok(reply);
                }
                let mut response = self.session_call(&op.session, request).await?;
                if let (
                    Some(keep),
                    Hs2Response::GetResultSetMetadata(t::TGetResultSetMetadataResp {
                        schema: Some(schema),
                        ..
                    }),
                ) = (op.name_column, &mut response)
                {
                    client::keep_column_desc(schema, keep);
                }
                Ok(encoded(response, seqid))
            }
            R::CloseOperation(req) => {
                let client_handle = op.client_handle.clone();
                self.cache_on_close(&op).await;
                if op.cache.as_ref().is_some_and(|c| c.gateway_only) {
                    self.table.remove_operation(&client_handle, owner);
                    let resp = t::TCloseOperationResp {
                        status: message::success_status(),
                    };
                    return Ok(encoded(Hs2Response::CloseOperation(resp), seqid));
                }
                req.operation_handle = op.backend_handle.clone();
                let reply = match self.forward(&op.session, request, seqid).await {
                    Err(e) if e.lost_driver().is_some() => {
                        self.table.remove_operation(&client_handle, owner);
                        return self.settled_with_lost_driver(&op, request, e, seqid).await;
                    }
                    other => other?,
                };
                self.table.remove_operation(&client_handle, owner);
                Ok(reply)
            }
            R::CancelOperation(req) => {
                if op.cache.as_ref().is_some_and(|c| c.gateway_only) {
                    // Already finished: nothing to cancel.
                    let resp = t::TCancelOperationResp {
                        status: message::success_status(),
                    };
                    return Ok(encoded(Hs2Response::CancelOperation(resp), seqid));
                }
                req.operation_handle = op.backend_handle.clone();
                let reply = match self.forward(&op.session, request, seqid).await {
                    Err(e) if e.lost_driver().is_some() => {
                        return self.settled_with_lost_driver(&op, request, e, seqid).await;
                    }
                    other => other?,
                };
                // The state changes; the next status poll must ask the driver.
                self.table.set_final_status(&op.client_handle, None);
                Ok(reply)
            }
            _ => {
                let handle = request
                    .operation_handle_mut()
                    .expect("dispatched as a call on an operation");
                *handle = op.backend_handle;
                self.forward(&op.session, request, seqid).await
            }
        }
    }

    /// FetchResults: the cache's rows, the operation log (with progress lines), or the
    /// driver's reply passed through (one column kept for Python clients' name lists).
    async fn fetch_results(
        &self,
        op: &OperationEntry,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let Hs2Request::FetchResults(req) = request else {
            unreachable!("called for FetchResults");
        };
        req.operation_handle = op.backend_handle.clone();
        req.max_rows = req.max_rows.min(self.config.server.max_fetch_rows);
        if let Some(reply) = self.cached_fetch(op, req, seqid).await {
            return Ok(reply);
        }
        if req.fetch_type.unwrap_or(0) == 1 {
            return self.operation_log(op, request, seqid).await;
        }
        let results = req.fetch_type.unwrap_or(0) == 0;
        let (message, header) = self.session_call_raw(&op.session, request).await?;
        match (results, op.name_column) {
            (true, Some(keep)) => {
                let mut response = self.decode_reply(&op.session, request, &message)?;
                if let Hs2Response::FetchResults(t::TFetchResultsResp {
                    results: Some(rows),
                    ..
                }) = &mut response
                {
                    client::keep_column(rows, keep);
                }
                Ok(encoded(response, seqid))
            }
            _ => Ok(Reply::Passthrough {
                message,
                header,
                seqid,
            }),
        }
    }

    /// An OpenSession sparkgate refused, for the audit log.
    fn audit_refused_session(
        &self,
        ctx: &CallContext,
        req: &t::TOpenSessionReq,
        status: &t::TStatus,
    ) {
        let claimed = ctx
            .principal
            .as_ref()
            .map(|p| p.user.clone())
            .or_else(|| req.username.as_deref().map(crate::audit::truncated));
        self.recorders.audit.record(crate::audit::Record {
            event: "session_refused",
            user: claimed,
            client_addr: Some(ctx.peer.to_string()),
            transport: ctx.owner.transport(),
            error_code: status.sql_state.clone(),
            error: status.error_message.clone(),
            ..Default::default()
        });
    }

    /// The configured tenants' names.
    pub fn tenant_names(&self) -> impl Iterator<Item = &str> {
        self.tenants.names()
    }

    /// One call on a shared driver connection; a session the driver dropped with a broken
    /// connection is marked lost, so its next call says so.
    pub(super) async fn call_driver(
        &self,
        addr: &str,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        self.call_driver_on_link(addr, request, false).await
    }

    /// [`CallHandler::call_driver`]; `untie`: an OpenSession whose session must outlive the
    /// driver connection it is opened on (see [`BackendLinks::open_untied`]).
    pub(super) async fn call_driver_on_link(
        &self,
        addr: &str,
        request: &Hs2Request,
        untie: bool,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        let result = if untie {
            self.links.open_untied(addr, request).await
        } else {
            self.links.call(addr, request).await
        };
        for (driver, guid) in self.links.take_lost_sessions() {
            if let Some(session) = self.table.find_by_backend(&driver, &guid) {
                warn!(session.id = %session.id(), "the driver closed this session with a broken connection");
                session.mark_lost("its driver connection broke (the driver closed the session)");
            }
        }
        result
    }

    /// The session behind a client's handle: one of this replica's, or an HTTP session another
    /// replica opened (taken in from its sealed handle).
    pub(super) async fn session(
        &self,
        handle: &t::TSessionHandle,
        owner: &Owner,
    ) -> Result<Arc<Session>, GatewayError> {
        if let Some(session) = self.table.session(handle, owner) {
            return Ok(session);
        }
        self.adopt_session(handle, owner)
            .await?
            .ok_or(GatewayError::UnknownHandle { kind: "session" })
    }

    /// The operation behind a client's handle (see [`CallHandler::session`]).
    pub(super) async fn operation(
        &self,
        handle: &t::TOperationHandle,
        owner: &Owner,
    ) -> Result<OperationEntry, GatewayError> {
        if let Some(op) = self.table.operation(handle, owner) {
            return Ok(op);
        }
        self.adopt_operation(handle, owner)
            .await?
            .ok_or(GatewayError::UnknownHandle { kind: "operation" })
    }

    pub(super) async fn forward(
        &self,
        session: &Session,
        request: &Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let response = self.session_call(session, request).await?;
        Ok(encoded(response, seqid))
    }

    pub(super) async fn session_call(
        &self,
        session: &Session,
        request: &Hs2Request,
    ) -> Result<Hs2Response, GatewayError> {
        let (reply, _) = self.session_call_raw(session, request).await?;
        self.decode_reply(session, request, &reply)
    }

    /// Decodes a driver's reply to `request`; one that cannot be read loses the session.
    fn decode_reply(
        &self,
        session: &Session,
        request: &Hs2Request,
        reply: &[u8],
    ) -> Result<Hs2Response, GatewayError> {
        Hs2Response::decode_for(request, reply).map_err(|e| {
            session.mark_lost(&e.to_string());
            GatewayError::BackendLost {
                addr: session.backend_addr.clone(),
                method: request.method(),
                detail: e.to_string(),
            }
        })
    }

    /// Sends a call of `session` to its driver, unless the session is known to be lost.
    pub(super) async fn session_call_raw(
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
}
