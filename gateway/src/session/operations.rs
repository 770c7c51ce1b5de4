//! Calls on sessions and operations: starting operations, status polls, closing.

use bytes::Bytes;
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response, MessageHeader};
use tracing::{debug, info, info_span, warn, Instrument};

use super::table::{display_id, is_final, Owner};
use super::{encoded, CallHandler, Reply};
use crate::error::GatewayError;
use crate::pool::DriverLease;

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

impl CallHandler {
    pub(super) async fn close_session(
        &self,
        owner: &Owner,
        req: &t::TCloseSessionReq,
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
        self.forward(&session, &Hs2Request::CloseSession(forwarded), seqid)
            .await
    }
    /// ExecuteStatement and the metadata calls: each starts an operation in a session.
    pub(super) async fn start_operation(
        &self,
        owner: &Owner,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let handle = request
            .session_handle_mut()
            .expect("an operation starts in a session");
        let session = self.session(handle, owner)?;
        *handle = session.backend_handle.clone();
        if let Hs2Request::ExecuteStatement(statement) = &*request {
            if let Err(refusal) = session.rules.check(&statement.statement) {
                warn!(session.id = %session.id(), tenant = %session.tenant, %refusal, "statement refused by the tenant's rules");
                return Err(GatewayError::Refused {
                    tenant: session.tenant.clone(),
                    refusal,
                });
            }
        }
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
        let max = self.config.server.max_operations_per_session;
        let place = session
            .reserve_operation(max)
            .ok_or(GatewayError::TooManyOperations { max })?;
        let in_flight = InFlight::start(session.lease.as_ref());
        let response = self
            .session_call(&session, request)
            .instrument(span.clone())
            .await;
        drop(in_flight);
        let mut response = response?;
        if let Some(handle) = response.new_operation_mut() {
            if let Some(backend_handle) = handle.take() {
                let client_handle = self.table.add_operation(&session, backend_handle, runs_on);
                place.keep();
                span.record("op.id", display_id(&client_handle.operation_id));
                let _enter = span.enter();
                debug!("operation started");
                *handle = Some(client_handle);
            }
        }
        Ok(encoded(response, seqid))
    }
    /// GetOperationStatus: from sparkgate's memory once the operation is final, else the driver.
    pub(super) async fn operation_status(
        &self,
        owner: &Owner,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let handle = request
            .operation_handle_mut()
            .expect("GetOperationStatus names an operation");
        let client_handle = handle.clone();
        let op = self.operation(&client_handle, owner)?;
        if let Some(cached) = op.final_status {
            let header = MessageHeader::parse(&cached).expect("sparkgate encoded it");
            return Ok(Reply::Passthrough {
                message: cached,
                header,
                seqid,
            });
        }
        *handle = op.backend_handle;
        let response = self.session_call(&op.session, request).await?;
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
}
