//! Status calls and the operation log: answered from sparkgate's memory once a statement is
//! final, from the queue while it waits there, else from the driver, with progress lines read
//! from the driver's Spark UI.

use std::time::{Duration, Instant};

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response, MessageHeader};
use tracing::debug;

use super::client::{self, ClientFamily};
use super::operations::succeeded;
use super::table::{is_final, OperationEntry};
use super::{encoded, CallContext, CallHandler, Reply};
use crate::driver::progress;
use crate::error::GatewayError;

/// How long a status call on a queued statement is held, at most.
const QUEUED_STATUS_WAIT: Duration = Duration::from_secs(1);

/// How often a statement's operation log gets progress lines, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl CallHandler {
    /// GetOperationStatus: from sparkgate's memory once the operation is final, else the
    /// driver. A JDBC client's call waits (up to `server.status_wait`) for the statement to end,
    /// as HiveServer2 does; a Python client's is answered at once.
    pub(super) async fn operation_status(
        &self,
        ctx: &CallContext,
        req: &t::TGetOperationStatusReq,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let mut op = self.operation(&req.operation_handle, &ctx.owner).await?;
        if op.is_queued() && op.final_status.is_none() {
            // Held shorter than a running statement's: its client shows the queue's progress.
            let wait = self.status_wait(&op).min(QUEUED_STATUS_WAIT);
            if let Some(status) = self.queued_status(&op, wait).await {
                return Ok(encoded(Hs2Response::GetOperationStatus(status), seqid));
            }
            op = self.operation(&req.operation_handle, &ctx.owner).await?;
        }
        if let Some(cached) = op.final_status {
            let header = MessageHeader::parse(&cached).expect("sparkgate encoded it");
            return Ok(Reply::Passthrough {
                message: cached,
                header,
                seqid,
            });
        }
        if op.is_queued() {
            // Left the queue without a status recorded: nothing to ask the driver about yet.
            let pending = message::operation_status_reply(
                message::success_status(),
                Some(t::TOperationState::PENDING_STATE),
            );
            return Ok(encoded(Hs2Response::GetOperationStatus(pending), seqid));
        }
        let wait = self.status_wait(&op);
        let asked = Instant::now();
        let status = loop {
            let op = self
                .table
                .operation_for_gateway(&op.client_handle)
                .ok_or(GatewayError::UnknownHandle { kind: "operation" })?;
            let status = self.poll_driver(&op).await?;
            let done = !succeeded(&status.status) || status.operation_state.is_some_and(is_final);
            if done || asked.elapsed() >= wait || ctx.client_gone.is_cancelled() {
                break status;
            }
        };
        let mut status = status;
        if req.get_progress_update == Some(true) && op.session.spark_ui.is_some() {
            status.progress_update_response = Some(self.progress_update(&op, &status).await);
        }
        Ok(encoded(Hs2Response::GetOperationStatus(status), seqid))
    }

    /// How long a status call is held while the operation runs. A Python client (Superset)
    /// sleeps 5 s between polls: its first poll, right after the statement starts, is held like
    /// a JDBC client's (a short statement ends within it), later ones are answered at once, so a
    /// Stop pressed meanwhile is sent at its next poll.
    fn status_wait(&self, op: &OperationEntry) -> Duration {
        match op.session.family {
            ClientFamily::Python => self.config.server.status_wait.saturating_sub(op.age()),
            ClientFamily::Jdbc => self.config.server.status_wait,
        }
    }

    /// HS2's progress update for beeline's bar: the statement's running jobs, or done.
    async fn progress_update(
        &self,
        op: &OperationEntry,
        status: &t::TGetOperationStatusResp,
    ) -> t::TProgressUpdateResp {
        let finished = status.operation_state.is_some_and(is_final);
        let jobs = if finished {
            Vec::new()
        } else {
            self.running_jobs(op).await.unwrap_or_default()
        };
        let mut progress = op.progress.lock().expect("progress");
        let mut update = progress.update(&jobs, op.started_ms);
        if finished {
            update.status = t::TJobExecutionStatus::COMPLETE;
            update.progressed_percentage = 1.0.into();
        }
        update
    }

    /// The running Spark jobs of an operation's statement, from its driver's UI; `None` when the
    /// driver has no UI sparkgate reads, or it did not answer (logged).
    async fn running_jobs(&self, op: &OperationEntry) -> Option<Vec<progress::JobData>> {
        let ui = op.session.spark_ui.as_ref()?;
        let group = progress::group_of(&op.backend_handle.operation_id.guid)?;
        match self.ui.running_jobs(ui, &group).await {
            Ok(jobs) => Some(jobs),
            Err(e) => {
                debug!(error = %e, "no progress from the driver's Spark UI");
                None
            }
        }
    }

    /// FetchResults of the operation log: the driver's lines, then sparkgate's progress lines
    /// (Hive's, which Superset parses), at most once a second, so a client reading the log until
    /// a batch comes back empty gets one.
    pub(super) async fn operation_log(
        &self,
        op: &OperationEntry,
        request: &Hs2Request,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let (message, header) = self.session_call_raw(&op.session, request).await?;
        let passthrough = |message, header| Reply::Passthrough {
            message,
            header,
            seqid,
        };
        let Some(ui) = &op.session.spark_ui else {
            return Ok(passthrough(message, header));
        };
        let due =
            op.final_status.is_none() && op.progress.lock().expect("progress").due(PROGRESS_EVERY);
        if !due {
            return Ok(passthrough(message, header));
        }
        let jobs = self.running_jobs(op).await.unwrap_or_default();
        let lines = op.progress.lock().expect("progress").lines(&ui.base, &jobs);
        if lines.is_empty() {
            return Ok(passthrough(message, header));
        }
        let mut response = self.decode_reply(&op.session, request, &message)?;
        if let Hs2Response::FetchResults(resp) = &mut response {
            if !succeeded(&resp.status) {
                // The driver keeps no operation log: sparkgate's lines alone.
                resp.status = hive_thrift::message::success_status();
                resp.has_more_rows = Some(false);
                resp.results = None;
            }
            client::append_log_lines(&mut resp.results, lines);
        }
        Ok(encoded(response, seqid))
    }
}
