//! Calls on sessions and operations: starting operations (through the tenant's queue), waiting
//! for synchronous statements, cancelling, closing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response};
use tracing::{debug, info, info_span, warn, Instrument};

use super::admission::{self, Admit};
use super::cache::serve::{OpCacheHandle, Plan};
use super::client::{self, ClientFamily};
use super::queued;
use super::record::StatementRecord;
use super::table::{display_id, is_final, OperationEntry, Owner};
use super::table::{OperationExtras, Session};
use super::{encoded, CallContext, CallHandler, Reply};
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
        self.audit_closed(&session, "closed by client");
        let session = match self.stock_session(session) {
            Ok(()) => {
                let resp = Hs2Response::CloseSession(t::TCloseSessionResp {
                    status: message::success_status(),
                });
                return Ok(encoded(resp, seqid));
            }
            Err(session) => session,
        };
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
        match self
            .forward(&session, &Hs2Request::CloseSession(forwarded), seqid)
            .await
        {
            // Gone with its driver: closed all the same.
            Err(e) if e.lost_driver().is_some() => {
                let resp = Hs2Response::CloseSession(t::TCloseSessionResp {
                    status: message::success_status(),
                });
                Ok(encoded(resp, seqid))
            }
            other => other,
        }
    }
    /// ExecuteStatement and the metadata calls: each starts an operation in a session.
    ///
    /// A synchronous ExecuteStatement (every Superset chart query) runs asynchronously on the
    /// driver: sparkgate waits for it, polling, and answers as the driver would have. The shared
    /// driver connection is free meanwhile, and the statement can be cancelled (a client gone,
    /// the tenant's `max_query_time`).
    pub(super) async fn start_operation(
        &self,
        ctx: &CallContext,
        request: &mut Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let handle = request
            .session_handle_mut()
            .expect("an operation starts in a session");
        let session = self.session(handle, &ctx.owner).await?;
        *handle = session.backend_handle.clone();
        let Hs2Request::ExecuteStatement(statement) = &*request else {
            return self
                .begin_operation(ctx, session, request, None, seqid)
                .await;
        };
        let record = StatementRecord::new(&self.recorders, &session, &statement.statement);
        let result = self
            .begin_operation(ctx, session, request, Some(record.clone()), seqid)
            .await;
        if let Err(e) = &result {
            let state = match e {
                GatewayError::Refused { .. } | GatewayError::Admission(_) => "refused",
                _ => "error",
            };
            record.ended(state, Some(&e.to_status()));
        }
        result
    }

    async fn begin_operation(
        &self,
        ctx: &CallContext,
        session: Arc<Session>,
        request: &mut Hs2Request,
        record: Option<Arc<StatementRecord>>,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let mut name_column = None;
        let mut wait_for_client = false;
        let mut cache = None;
        let mut session_state = None;
        if let Hs2Request::ExecuteStatement(statement) = request {
            if session.replay.is_some()
                && super::replay::shapes_session(&statement.statement).is_some()
            {
                session_state = Some(statement.statement.clone());
            }
            if let Err(refusal) = session.rules.check(&statement.statement) {
                warn!(session.id = %session.id(), tenant = %session.tenant, %refusal, "statement refused by the tenant's rules");
                return Err(GatewayError::Refused {
                    tenant: session.tenant.clone(),
                    refusal,
                });
            }
            match self.cache_plan(ctx, &session, statement).await? {
                Plan::Hit(result) => {
                    return self.answer_from_cache(&session, result, record, seqid)
                }
                Plan::Run(plan) => cache = plan.map(|p| OpCacheHandle::new(p, false)),
            }
            if session.family == ClientFamily::Python {
                name_column = client::name_column_for_python(&statement.statement);
            }
            if statement.run_async != Some(true) {
                statement.run_async = Some(true);
                wait_for_client = true;
            }
        }
        let span = info_span!(
            "operation",
            method = request.method(),
            session.id = %session.id(),
            tenant = %session.tenant,
            op.id = tracing::field::Empty
        );
        // The call itself is a running operation while it lasts; a statement goes on running
        // after it, until a final state is seen.
        let runs_on = matches!(&request, Hs2Request::ExecuteStatement(_));
        let admitted = match &request {
            Hs2Request::ExecuteStatement(s) => !admission::sets_session_state(&s.statement),
            _ => false,
        };
        let max = self.config.server.max_operations_per_session;
        let place = session
            .reserve_operation(max)
            .ok_or(GatewayError::TooManyOperations { max })?;
        // A statement needs a place on its driver under the tenant's admission control.
        let mut slot = None;
        if let (true, Some(queue)) = (admitted, self.admission.get(&session.tenant)) {
            match queue.admit(&session.user, &session.backend_addr)? {
                Admit::Run(granted) => slot = Some(granted),
                // Over HTTP with replicas sharing sessions, the next call may reach a replica
                // that does not hold this queue: the statement waits in this call instead.
                Admit::Wait(ticket) if wait_for_client || self.shares_session(&session) => {
                    let (granted, waited) = queued::wait_for_place(ticket, &ctx.client_gone)
                        .instrument(span.clone())
                        .await?;
                    if let Some(record) = &record {
                        record.admitted(waited);
                    }
                    slot = Some(granted);
                }
                Admit::Wait(ticket) => {
                    let extras = OperationExtras {
                        name_column,
                        cache,
                        slot: None,
                        record,
                        session_state,
                    };
                    let handle =
                        self.queue_statement(&session, request.clone(), ticket, extras, span);
                    place.keep();
                    let resp = t::TExecuteStatementResp {
                        status: message::success_status(),
                        operation_handle: Some(handle),
                    };
                    return Ok(encoded(Hs2Response::ExecuteStatement(resp), seqid));
                }
            }
        }
        let in_flight = InFlight::start(session.lease.as_ref());
        let response = self
            .session_call(&session, request)
            .instrument(span.clone())
            .await;
        drop(in_flight);
        let mut response = response?;
        if session.concise_errors && !succeeded(response.status()) {
            let status = concise_status(response.status().clone());
            response = Hs2Response::error_for(request, status);
        }
        let Some(backend_handle) = response.new_operation_mut().and_then(Option::take) else {
            if let Some(record) = &record {
                record.ended("error", Some(response.status()));
            }
            return Ok(encoded(response, seqid));
        };
        let client_handle = self.table.add_operation(
            &session,
            backend_handle,
            runs_on,
            OperationExtras {
                name_column,
                cache,
                slot,
                record,
                session_state,
            },
        );
        place.keep();
        span.record("op.id", display_id(&client_handle.operation_id));
        if let Some(slot) = response.new_operation_mut() {
            *slot = Some(client_handle.clone());
        }
        if wait_for_client {
            let outcome = self
                .wait_for_statement(ctx, &client_handle)
                .instrument(span.clone())
                .await?;
            if let Err(status) = outcome {
                let failed = t::TExecuteStatementResp {
                    status,
                    operation_handle: None,
                };
                return Ok(encoded(Hs2Response::ExecuteStatement(failed), seqid));
            }
        }
        let _enter = span.enter();
        debug!("operation started");
        Ok(encoded(response, seqid))
    }

    /// Waits, polling the driver, until the statement behind `client_handle` is final.
    /// `Ok(Err(status))`: it failed, and is closed (the reply a synchronous statement gets).
    async fn wait_for_statement(
        &self,
        ctx: &CallContext,
        client_handle: &t::TOperationHandle,
    ) -> Result<Result<(), t::TStatus>, GatewayError> {
        let deadline = Instant::now() + self.config.backend.execute_timeout;
        let status = loop {
            let op = self
                .table
                .operation_for_gateway(client_handle)
                .ok_or(GatewayError::UnknownHandle { kind: "operation" })?;
            if ctx.client_gone.is_cancelled() {
                info!("client went away mid-statement; cancelling it on the driver");
                self.cancel_and_close(&op).await;
                return Err(GatewayError::ClientGone);
            }
            if Instant::now() >= deadline {
                warn!(
                    "the statement ran past backend.execute_timeout; cancelling it on the driver"
                );
                self.cancel_and_close(&op).await;
                let addr = op.session.backend_addr.clone();
                let secs = self.config.backend.execute_timeout.as_secs();
                return Err(GatewayError::StatementTimeout { addr, secs });
            }
            let status = self.poll_driver(&op).await?;
            if !succeeded(&status.status) || status.operation_state.is_some_and(is_final) {
                break status;
            }
        };
        if status.operation_state == Some(t::TOperationState::FINISHED_STATE) {
            return Ok(Ok(()));
        }
        if let Some(op) = self.table.operation_for_gateway(client_handle) {
            self.cancel_and_close(&op).await;
        }
        let failed = if succeeded(&status.status) {
            t::TStatus {
                status_code: t::TStatusCode::ERROR_STATUS,
                info_messages: None,
                sql_state: status.sql_state.clone(),
                error_code: status.error_code,
                error_message: Some(client::statement_error_text(
                    status
                        .error_message
                        .as_deref()
                        .unwrap_or("the statement was cancelled"),
                )),
            }
        } else {
            status.status
        };
        Ok(Err(failed))
    }

    /// Cancels an operation on its driver and closes it there and here (sparkgate's own
    /// decision, or its client is gone). Failures are logged: the session's end closes it too.
    async fn cancel_and_close(&self, op: &OperationEntry) {
        let cancel = Hs2Request::CancelOperation(t::TCancelOperationReq {
            operation_handle: op.backend_handle.clone(),
        });
        let close = Hs2Request::CloseOperation(t::TCloseOperationReq {
            operation_handle: op.backend_handle.clone(),
        });
        for request in [cancel, close] {
            if let Err(e) = self.session_call(&op.session, &request).await {
                debug!(method = request.method(), error = %e, "driver call failed");
            }
        }
        self.table
            .remove_operation(&op.client_handle, &op.session.owner);
    }

    /// One status call to the driver (it holds it up to `backend.status_poll` while the
    /// operation runs), shaped for the session's client: a limit's cancel named, errors concise.
    /// A final status is remembered, and answered from memory from then on.
    pub(super) async fn poll_driver(
        &self,
        op: &OperationEntry,
    ) -> Result<t::TGetOperationStatusResp, GatewayError> {
        let asked = Instant::now();
        let request = Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
            operation_handle: op.backend_handle.clone(),
            get_progress_update: None,
        });
        let Hs2Response::GetOperationStatus(mut status) =
            self.session_call(&op.session, &request).await?
        else {
            unreachable!("decoded for GetOperationStatus");
        };
        // A driver that does not hold status calls must not be asked in a tight loop.
        let floor = self.config.backend.status_poll / 5;
        if !status.operation_state.is_some_and(is_final) && asked.elapsed() < floor {
            tokio::time::sleep(floor - asked.elapsed()).await;
        }
        // Superset takes any state but INITIALIZED and RUNNING for the end of a statement.
        if op.session.family == ClientFamily::Python
            && status.operation_state == Some(t::TOperationState::PENDING_STATE)
        {
            status.operation_state = Some(t::TOperationState::RUNNING_STATE);
        }
        if status.operation_state == Some(t::TOperationState::CANCELED_STATE) {
            if let Some(why) = self
                .table
                .operation_for_gateway(&op.client_handle)
                .and_then(|op| op.cancelled_by_limit)
            {
                status.operation_state = Some(t::TOperationState::ERROR_STATE);
                status.error_message = Some(why);
                status.sql_state = Some("HYT00".into());
            }
        }
        if op.session.concise_errors {
            status.status = concise_status(status.status);
            if let Some(message) = status.error_message.take() {
                status.error_message = Some(client::concise_error(&message));
            }
        }
        if let Some(state) = status.operation_state.filter(|s| is_final(*s)) {
            if let Some(record) = &op.record {
                record.ended_as(&status);
            }
            let finished = state == t::TOperationState::FINISHED_STATE;
            let taken = op.session_state.as_ref().filter(|_| finished);
            if let Some(sql) = taken.and_then(|s| s.lock().expect("session state").take()) {
                op.session.remember(&sql);
            }
            self.cache_on_final(op, finished && succeeded(&status.status))
                .await;
        }
        if succeeded(&status.status) && status.operation_state.is_some_and(is_final) {
            let mut out = Vec::new();
            Hs2Response::GetOperationStatus(status.clone()).encode_reply(0, &mut out);
            self.table
                .set_final_status(&op.client_handle, Some(Bytes::from(out)));
        }
        Ok(status)
    }

    /// Cancels, on their drivers, the statements that have run longer than their tenant's
    /// `max_query_time` (housekeeping calls this every few seconds). The client's next status
    /// call (or sparkgate's own wait) then reports an error naming the limit.
    pub async fn cancel_overdue_statements(&self) {
        let overdue = self.table.take_overdue(|tenant, limit| {
            format!(
                "sparkgate cancelled the statement: it ran longer than the max_query_time of tenant {tenant:?} ({})",
                humantime_serde::re::humantime::format_duration(limit)
            )
        });
        let cancels = overdue.iter().map(|op| async move {
            warn!(session.id = %op.session.id(), op.id = %display_id(&op.client_handle.operation_id), tenant = %op.session.tenant, "statement ran past the tenant's max_query_time; cancelling it on the driver");
            let cancel = Hs2Request::CancelOperation(t::TCancelOperationReq {
                operation_handle: op.backend_handle.clone(),
            });
            if let Err(e) = self.session_call(&op.session, &cancel).await {
                warn!(error = %e, "could not cancel the statement on its driver");
            }
        });
        futures::future::join_all(cancels).await;
    }
}

pub(super) fn succeeded(status: &t::TStatus) -> bool {
    matches!(
        status.status_code,
        t::TStatusCode::SUCCESS_STATUS | t::TStatusCode::SUCCESS_WITH_INFO_STATUS
    )
}

/// An error status without Java stack frames (`infoMessages`) and with a concise message.
pub(super) fn concise_status(mut status: t::TStatus) -> t::TStatus {
    if !succeeded(&status) {
        status.info_messages = None;
        if let Some(message) = status.error_message.take() {
            status.error_message = Some(client::concise_error(&message));
        }
    }
    status
}
