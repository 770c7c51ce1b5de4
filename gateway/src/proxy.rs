//! What sparkgate does with each HS2 call of one client connection: check the caller owns the
//! handles it names, swap them for the driver's, forward, and answer what it can itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::frame::{FramedError, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{
    self, encode_application_exception, Hs2Request, Hs2Response, MessageHeader, MessageKind,
};
use hive_thrift::sasl::PlainCredentials;
use hive_thrift::FrameError;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, FrontendTransport};
use crate::error::{Fault, GatewayError};
use crate::session::{display_id, is_final, SessionTable};

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

/// Frames [`Reply`]s for the client connection's writer.
pub struct ReplyEncoder(pub MessageCodec);

impl tokio_util::codec::Encoder<Reply> for ReplyEncoder {
    type Error = FramedError;
    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), FramedError> {
        Ok(reply.encode(&self.0, dst)?)
    }
}

/// Per-connection proxy state: the backend connection and the sessions this client owns.
pub struct SessionProxy {
    config: Arc<Config>,
    /// User the frontend authenticated (SASL); `None` on NOSASL, where OpenSession names it.
    transport_user: Option<String>,
    /// Opened at the first OpenSession, as the session's user, so the driver sees the real user.
    backend: Option<Hs2Connection>,
    table: SessionTable,
    /// Why the backend connection went away, for the errors of calls on sessions it carried.
    backend_lost: Option<String>,
}

impl SessionProxy {
    pub fn new(config: Arc<Config>, transport_user: Option<String>) -> Self {
        Self {
            config,
            transport_user,
            backend: None,
            table: SessionTable::default(),
            backend_lost: None,
        }
    }

    pub fn session_count(&self) -> usize {
        self.table.session_count()
    }

    /// Answers one call. Never fails: every problem becomes an HS2 error status or a Thrift
    /// application exception for the client.
    ///
    /// # Cancel safety
    /// Not cancel-safe (a backend call may be half done); the connection loop awaits it whole.
    pub async fn handle(&mut self, header: &MessageHeader, message: &[u8]) -> Reply {
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
        match self.dispatch(request.clone(), seqid).await {
            Ok(reply) => reply,
            Err(e) => {
                match e.fault() {
                    Fault::Client => info!(method = request.method(), error = %e, "call refused"),
                    Fault::Backend | Fault::Internal => {
                        warn!(method = request.method(), error = %e, "call failed")
                    }
                }
                let mut out = Vec::new();
                error_response(&request, e.to_status()).encode_reply(seqid, &mut out);
                Reply::Encoded(out)
            }
        }
    }

    async fn dispatch(&mut self, request: Hs2Request, seqid: i32) -> Result<Reply, GatewayError> {
        use Hs2Request as R;
        match request {
            R::OpenSession(req) => self.open_session(req, seqid).await,
            R::CloseSession(req) => self.close_session(req, seqid).await,
            R::GetOperationStatus(req) => self.operation_status(req, seqid).await,
            R::FetchResults(mut req) => {
                req.operation_handle = self.backend_operation(&req.operation_handle)?;
                req.max_rows = req.max_rows.min(self.config.server.max_fetch_rows);
                self.forward_raw(&R::FetchResults(req), seqid).await
            }
            R::CloseOperation(mut req) => {
                let client_handle = req.operation_handle.clone();
                req.operation_handle = self.backend_operation(&client_handle)?;
                let reply = self.forward(R::CloseOperation(req), seqid).await?;
                self.table.remove_operation(&client_handle);
                Ok(reply)
            }
            R::CancelOperation(mut req) => {
                let client_handle = req.operation_handle.clone();
                req.operation_handle = self.backend_operation(&client_handle)?;
                let reply = self.forward(R::CancelOperation(req), seqid).await?;
                // The state changes; the next status poll must ask the driver.
                if let Some(op) = self.table.operation_mut(&client_handle) {
                    op.final_status = None;
                }
                Ok(reply)
            }
            R::GetResultSetMetadata(mut req) => {
                req.operation_handle = self.backend_operation(&req.operation_handle)?;
                self.forward(R::GetResultSetMetadata(req), seqid).await
            }
            R::GetQueryId(mut req) => {
                req.operation_handle = self.backend_operation(&req.operation_handle)?;
                self.forward(R::GetQueryId(req), seqid).await
            }
            R::GetInfo(mut req) => {
                req.session_handle = self.backend_session(&req.session_handle)?;
                self.forward(R::GetInfo(req), seqid).await
            }
            R::SetClientInfo(mut req) => {
                req.session_handle = self.backend_session(&req.session_handle)?;
                self.forward(R::SetClientInfo(req), seqid).await
            }
            R::GetDelegationToken(mut req) => {
                req.session_handle = self.backend_session(&req.session_handle)?;
                self.forward(R::GetDelegationToken(req), seqid).await
            }
            R::CancelDelegationToken(mut req) => {
                req.session_handle = self.backend_session(&req.session_handle)?;
                self.forward(R::CancelDelegationToken(req), seqid).await
            }
            R::RenewDelegationToken(mut req) => {
                req.session_handle = self.backend_session(&req.session_handle)?;
                self.forward(R::RenewDelegationToken(req), seqid).await
            }
            other => self.start_operation(other, seqid).await,
        }
    }

    async fn open_session(
        &mut self,
        mut req: t::TOpenSessionReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let max = self.config.server.max_sessions_per_connection;
        if self.table.session_count() >= max {
            return Err(GatewayError::TooManySessions { max });
        }
        let user = self
            .transport_user
            .clone()
            .or_else(|| req.username.clone().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "anonymous".to_owned());
        if self.backend.is_none() {
            self.connect_backend(&user).await?;
        }
        let client_protocol = req.client_protocol;
        if client_protocol > MAX_PROTOCOL {
            req.client_protocol = MAX_PROTOCOL;
        }
        let Hs2Response::OpenSession(mut resp) = self.call(&Hs2Request::OpenSession(req)).await?
        else {
            unreachable!("reply decoded for OpenSession");
        };
        if let Some(backend_handle) = resp.session_handle.take() {
            if resp.status.status_code == t::TStatusCode::SUCCESS_STATUS
                || resp.status.status_code == t::TStatusCode::SUCCESS_WITH_INFO_STATUS
            {
                let handle = self.table.add_session(backend_handle, user.clone());
                info!(
                    session.id = %display_id(&handle.session_id),
                    user = %user,
                    client_protocol = client_protocol.0,
                    server_protocol = resp.server_protocol_version.0,
                    "session opened"
                );
                resp.session_handle = Some(handle);
                let configuration = resp.configuration.get_or_insert_with(Default::default);
                configuration
                    .entry(FETCH_SIZE_KEY.to_owned())
                    .or_insert_with(|| self.config.server.default_fetch_size.to_string());
            }
        }
        Ok(encoded(Hs2Response::OpenSession(resp), seqid))
    }

    async fn connect_backend(&mut self, user: &str) -> Result<(), GatewayError> {
        let backend = &self.config.backend;
        let auth = match backend.transport {
            FrontendTransport::Sasl => ClientAuth::Plain(PlainCredentials {
                authzid: String::new(),
                user: user.to_owned(),
                // The driver runs auth NONE: the password is ignored; the real check is ours.
                password: "sparkgate".to_owned(),
            }),
            FrontendTransport::Nosasl => ClientAuth::NoSasl,
        };
        let conn = Hs2Connection::connect(
            &backend.address,
            &auth,
            backend.max_message_size,
            backend.connect_timeout,
        )
        .await
        .map_err(|e| GatewayError::from_backend(&backend.address, "OpenSession", e))?;
        debug!(backend = %backend.address, "backend connection open");
        self.backend = Some(conn);
        self.backend_lost = None;
        Ok(())
    }

    async fn close_session(
        &mut self,
        req: t::TCloseSessionReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let entry = self
            .table
            .remove_session(&req.session_handle)
            .ok_or_else(|| self.unknown_handle("session"))?;
        info!(session.id = %display_id(&entry.client_handle.session_id), "session closed by client");
        let forwarded = t::TCloseSessionReq {
            session_handle: entry.backend_handle,
        };
        self.forward(Hs2Request::CloseSession(forwarded), seqid)
            .await
    }

    /// ExecuteStatement and the metadata calls: each starts an operation in a session.
    async fn start_operation(
        &mut self,
        mut request: Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let client_session = session_of(&mut request)
            .expect("every remaining call names a session")
            .clone();
        let backend_session = self.backend_session(&client_session)?;
        *session_of(&mut request).expect("checked above") = backend_session;
        let span = info_span!(
            "operation",
            method = request.method(),
            op.id = tracing::field::Empty
        );
        let mut response = self.call(&request).instrument(span.clone()).await?;
        if let Some(handle) = operation_of(&mut response) {
            if let Some(backend_handle) = handle.take() {
                let client_handle = self.table.add_operation(&client_session, backend_handle);
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
        &mut self,
        mut req: t::TGetOperationStatusReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let client_handle = req.operation_handle.clone();
        let Some(op) = self.table.operation_mut(&client_handle) else {
            return Err(self.unknown_handle("operation"));
        };
        if let Some(cached) = &op.final_status {
            let header = MessageHeader::parse(cached).expect("sparkgate encoded it");
            return Ok(Reply::Passthrough {
                message: cached.clone(),
                header,
                seqid,
            });
        }
        req.operation_handle = op.backend_handle.clone();
        let response = self.call(&Hs2Request::GetOperationStatus(req)).await?;
        let mut out = Vec::new();
        response.encode_reply(seqid, &mut out);
        if let Hs2Response::GetOperationStatus(status) = &response {
            let done = status.status.status_code == t::TStatusCode::SUCCESS_STATUS
                && status.operation_state.is_some_and(is_final);
            if done {
                if let Some(op) = self.table.operation_mut(&client_handle) {
                    op.final_status = Some(Bytes::from(out.clone()));
                }
            }
        }
        Ok(Reply::Encoded(out))
    }

    fn backend_session(
        &mut self,
        handle: &t::TSessionHandle,
    ) -> Result<t::TSessionHandle, GatewayError> {
        match self.table.session_mut(handle) {
            Some(entry) => Ok(entry.backend_handle.clone()),
            None => Err(self.unknown_handle("session")),
        }
    }

    fn backend_operation(
        &mut self,
        handle: &t::TOperationHandle,
    ) -> Result<t::TOperationHandle, GatewayError> {
        match self.table.operation_mut(handle) {
            Some(op) => Ok(op.backend_handle.clone()),
            None => Err(self.unknown_handle("operation")),
        }
    }

    fn unknown_handle(&self, kind: &'static str) -> GatewayError {
        match &self.backend_lost {
            Some(reason) => GatewayError::BackendLost {
                addr: self.config.backend.address.clone(),
                method: "an earlier call",
                detail: reason.clone(),
            },
            None => GatewayError::UnknownHandle { kind },
        }
    }

    async fn forward(&mut self, request: Hs2Request, seqid: i32) -> Result<Reply, GatewayError> {
        let response = self.call(&request).await?;
        Ok(encoded(response, seqid))
    }

    async fn call(&mut self, request: &Hs2Request) -> Result<Hs2Response, GatewayError> {
        let (reply, _) = self.call_raw(request).await?;
        Hs2Response::decode_for(request, &reply).map_err(|e| {
            self.lose_backend(&e.to_string());
            GatewayError::BackendLost {
                addr: self.config.backend.address.clone(),
                method: request.method(),
                detail: e.to_string(),
            }
        })
    }

    async fn forward_raw(
        &mut self,
        request: &Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let (message, header) = self.call_raw(request).await?;
        Ok(Reply::Passthrough {
            message,
            header,
            seqid,
        })
    }

    async fn call_raw(
        &mut self,
        request: &Hs2Request,
    ) -> Result<(Bytes, MessageHeader), GatewayError> {
        let backend = &self.config.backend;
        let addr = backend.address.clone();
        let Some(conn) = self.backend.as_mut() else {
            return Err(self.unknown_handle("session"));
        };
        let sync_execute =
            matches!(request, Hs2Request::ExecuteStatement(r) if r.run_async != Some(true));
        let (timeout, setting) = if sync_execute {
            (backend.execute_timeout, "execute_timeout")
        } else {
            (backend.call_timeout, "call_timeout")
        };
        match tokio::time::timeout(timeout, conn.call_raw(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.lose_backend(&e.to_string());
                Err(GatewayError::from_backend(&addr, request.method(), e))
            }
            Err(_) => {
                self.lose_backend(&format!("no answer within {}", humantime(timeout)));
                Err(GatewayError::BackendTimeout {
                    addr,
                    method: request.method(),
                    secs: timeout.as_secs(),
                    setting,
                })
            }
        }
    }

    /// The backend connection is gone, and with it every session it carried.
    fn lose_backend(&mut self, reason: &str) {
        self.backend = None;
        let lost = self.table.take_all();
        warn!(reason, sessions = lost.len(), "backend connection lost");
        self.backend_lost = Some(reason.to_owned());
    }

    /// Closes sessions idle for longer than the configured timeout, on the backend too.
    pub async fn expire_idle_sessions(&mut self) {
        let timeout = self.config.server.idle_session_timeout;
        let Some(cutoff) = Instant::now().checked_sub(timeout) else {
            return;
        };
        let idle = self.table.take_idle(cutoff);
        for entry in idle {
            info!(
                session.id = %display_id(&entry.client_handle.session_id),
                idle = %humantime(timeout),
                "closing idle session"
            );
            self.close_backend_session(entry.backend_handle).await;
        }
    }

    /// Closes every session on the backend (client gone, or shutdown).
    pub async fn close_all(&mut self) {
        for entry in self.table.take_all() {
            self.close_backend_session(entry.backend_handle).await;
        }
    }

    async fn close_backend_session(&mut self, handle: t::TSessionHandle) {
        let request = Hs2Request::CloseSession(t::TCloseSessionReq {
            session_handle: handle,
        });
        match self.call(&request).await {
            Ok(resp) if resp.status().status_code == t::TStatusCode::SUCCESS_STATUS => {}
            Ok(resp) => warn!(status = ?resp.status(), "backend refused CloseSession"),
            Err(e) => debug!(error = %e, "backend CloseSession failed"),
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
        Q::GetQueryId(_) => R::GetQueryId(t::TGetQueryIdResp {
            status,
            query_id: String::new(),
        }),
        Q::SetClientInfo(_) => R::SetClientInfo(t::TSetClientInfoResp { status }),
    }
}
