//! Statements that wait in their tenant's admission queue (see [`super::admission`]).
//!
//! A synchronous ExecuteStatement waits in its call. An asynchronous one is answered at once
//! with an operation handle only sparkgate knows; the dispatcher starts it on the driver when its
//! turn comes, and until then sparkgate answers its calls: status PENDING (RUNNING for Python
//! clients, which take PENDING for the end of a statement), its place in the operation log,
//! cancel and close take it out of the queue, and it never reaches the driver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use super::admission::{PlaceReader, Slot, Ticket};
use super::client::ClientFamily;
use super::table::{display_id, OperationEntry};
use super::{encoded, CallHandler, Reply};
use crate::error::GatewayError;

/// Where a queued statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    /// Its turn came; the driver is being asked.
    Starting,
    /// On the driver: the operation is an ordinary one now.
    OnDriver,
    /// It ended without reaching the driver (cancelled, closed, timed out, refused).
    Ended,
}

/// A queued statement's state, shared by its operation entry and the dispatcher.
#[derive(Debug)]
pub struct QueuedState {
    phase: Mutex<Phase>,
    changed: Notify,
    /// Set when its client cancels or closes it.
    cancelled: CancellationToken,
    /// Its place, for the status and the operation log.
    place: Mutex<Option<(usize, usize)>>,
    /// The place its operation log reported last (a line only when it changes).
    reported: Mutex<Option<(usize, usize)>>,
    /// Why it ended in the queue, if it failed there.
    failure: Mutex<Option<String>>,
    tenant: String,
    max_running: u32,
    since: Instant,
}

/// What the dispatcher needs to start a queued statement.
pub struct QueuedStatement {
    client_handle: t::TOperationHandle,
    request: Hs2Request,
    ticket: Ticket,
    state: Arc<QueuedState>,
    _mark: Option<crate::pool::QueuedMark>,
    span: tracing::Span,
}

impl QueuedState {
    /// Whether the statement is on the driver (its operation is an ordinary one).
    pub fn on_driver(&self) -> bool {
        *self.phase.lock().expect("queued") == Phase::OnDriver
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().expect("queued")
    }

    /// Moves from `from` to `to`; `false` if it was not in `from`. Status calls waiting on it
    /// wake at [`QueuedState::settled`], once what the move means is recorded.
    fn advance(&self, from: Phase, to: Phase) -> bool {
        let mut phase = self.phase.lock().expect("queued");
        let moved = *phase == from;
        if moved {
            *phase = to;
        }
        moved
    }

    fn settled(&self) {
        self.changed.notify_waiters();
    }

    /// Its session ended: it leaves the queue.
    pub fn abandon(&self) {
        self.advance(Phase::Waiting, Phase::Ended);
        self.cancelled.cancel();
        self.settled();
    }

    fn describe(&self) -> String {
        let waited = self.since.elapsed().as_secs();
        match *self.place.lock().expect("queued") {
            Some((ahead, total)) => format!(
                "sparkgate: the statement waits in tenant {:?}'s queue: {ahead} of {total} queued for its driver run before it (max_running_per_driver = {}); waiting {waited} s",
                self.tenant, self.max_running
            ),
            None => format!("sparkgate: the statement is starting on its driver after {waited} s in the queue"),
        }
    }
}

impl CallHandler {
    /// Queues an asynchronous ExecuteStatement (its session handle already the driver's) and
    /// answers with a handle for it at once.
    pub(super) fn queue_statement(
        &self,
        session: &Arc<super::Session>,
        request: Hs2Request,
        ticket: Ticket,
        extras: super::table::OperationExtras,
        span: tracing::Span,
    ) -> t::TOperationHandle {
        let state = Arc::new(QueuedState {
            phase: Mutex::new(Phase::Waiting),
            changed: Notify::new(),
            cancelled: CancellationToken::new(),
            place: Mutex::new(ticket.place()),
            reported: Mutex::default(),
            failure: Mutex::default(),
            tenant: session.tenant.clone(),
            max_running: ticket.queue().policy().max_running_per_driver,
            since: Instant::now(),
        });
        let placeholder = t::TOperationHandle {
            operation_id: super::table::mint_identifier(),
            operation_type: t::TOperationType::EXECUTE_STATEMENT,
            has_result_set: true,
            modified_row_count: None,
        };
        let client_handle =
            self.table
                .add_queued_operation(session, placeholder, extras, state.clone());
        span.record("op.id", display_id(&client_handle.operation_id));
        span.in_scope(|| info!(place = ?ticket.place(), "statement queued"));
        let job = QueuedStatement {
            client_handle: client_handle.clone(),
            request,
            _mark: session.lease.as_ref().map(|l| l.statement_queued()),
            ticket,
            state,
            span,
        };
        if self.queued.send(job).is_err() {
            // The dispatcher stopped (shutdown): the statement ends with the gateway.
            warn!("statement queued during shutdown; it will not run");
        }
        client_handle
    }

    /// Starts queued statements when their turn comes, until `stop`. The composition root runs
    /// it once, as a background task.
    pub async fn dispatch_queued(self: Arc<Self>, stop: CancellationToken) {
        let Some(mut jobs) = self.queued_receiver.lock().expect("queue").take() else {
            return;
        };
        let mut waiting = futures::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        let span = job.span.clone();
                        waiting.push(self.run_queued(job).instrument(span));
                    }
                    None => return,
                },
                Some(()) = waiting.next(), if !waiting.is_empty() => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// While statements wait for a driver, asks the driver how the statements running there
    /// stand, so a place frees as soon as one ends, not at its client's next poll (Superset polls
    /// every 5 s). Runs until `stop`, a background task of the composition root.
    pub async fn watch_awaited_drivers(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let awaited: std::collections::HashSet<String> = self
                .admission
                .values()
                .filter(|q| q.queued() > 0)
                .flat_map(|q| q.awaited_drivers())
                .collect();
            if awaited.is_empty() {
                continue;
            }
            let running = self.table.running_on(|addr| awaited.contains(addr));
            let handler = &*self;
            let polls = running.iter().map(|op| async move {
                if let Err(e) = handler.poll_driver(op).await {
                    tracing::debug!(error = %e, "status of a running statement unknown");
                }
            });
            futures::future::join_all(polls).await;
        }
    }

    async fn run_queued(&self, job: QueuedStatement) {
        let QueuedStatement {
            client_handle,
            request,
            mut ticket,
            state,
            _mark,
            span: _,
        } = job;
        let timeout = ticket.queue().policy().queue_timeout;
        let timeout_error = ticket.queue().timeout_error();
        let reader = ticket.place_reader();
        let granted = tokio::select! {
            slot = ticket.granted() => Some(slot),
            () = state.cancelled.cancelled() => return,
            () = follow_place(&reader, &state, timeout) => None,
        };
        drop(ticket);
        *state.place.lock().expect("queued") = None;
        let Some(slot) = granted else {
            if state.advance(Phase::Waiting, Phase::Ended) {
                warn!(error = %timeout_error, "statement waited past the queue timeout");
                self.end_queued(
                    &state,
                    &client_handle,
                    &GatewayError::from(timeout_error).to_status(),
                    "refused",
                );
                state.settled();
            }
            return;
        };
        if !state.advance(Phase::Waiting, Phase::Starting) {
            return;
        }
        let waited = state.since.elapsed();
        info!(
            waited_ms = waited.as_millis() as u64,
            "statement's turn came"
        );
        let Some(op) = self.table.operation_for_gateway(&client_handle) else {
            return;
        };
        match self.session_call(&op.session, &request).await {
            Err(e) => {
                warn!(error = %e, "queued statement could not start on the driver");
                state.advance(Phase::Starting, Phase::Ended);
                self.end_queued(&state, &client_handle, &e.to_status(), "error");
                state.settled();
            }
            Ok(mut response) => {
                let started = response.new_operation_mut().and_then(Option::take);
                let status = response.status().clone();
                let Some(backend_handle) = started else {
                    state.advance(Phase::Starting, Phase::Ended);
                    self.end_queued(&state, &client_handle, &status, "error");
                    state.settled();
                    return;
                };
                let kept =
                    self.table
                        .start_queued(&client_handle, backend_handle.clone(), slot, waited);
                state.advance(Phase::Starting, Phase::OnDriver);
                state.settled();
                if !kept || state.cancelled.is_cancelled() {
                    // Closed or cancelled while the driver was asked.
                    self.cancel_on_driver(&op.session, &backend_handle, !kept)
                        .await;
                }
            }
        }
    }

    async fn cancel_on_driver(
        &self,
        session: &super::Session,
        handle: &t::TOperationHandle,
        close: bool,
    ) {
        let mut requests = vec![Hs2Request::CancelOperation(t::TCancelOperationReq {
            operation_handle: handle.clone(),
        })];
        if close {
            requests.push(Hs2Request::CloseOperation(t::TCloseOperationReq {
                operation_handle: handle.clone(),
            }));
        }
        for request in requests {
            if let Err(e) = self.session_call(session, &request).await {
                warn!(method = request.method(), error = %e, "driver call failed");
            }
        }
    }

    /// A queued statement ended before running on the driver: its status says why from now on,
    /// its audit record says `ended_as` ("cancelled", "refused" by sparkgate, "error" from the
    /// driver).
    fn end_queued(
        &self,
        state: &QueuedState,
        client_handle: &t::TOperationHandle,
        why: &t::TStatus,
        ended_as: &'static str,
    ) {
        state
            .failure
            .lock()
            .expect("queued")
            .clone_from(&why.error_message);
        if let Some(record) = self
            .table
            .operation_for_gateway(client_handle)
            .and_then(|op| op.record)
        {
            record.ended(ended_as, why.error_message.as_ref().map(|_| why));
        }
        let reply = if why.error_message.is_none() {
            message::operation_status_reply(
                message::success_status(),
                Some(t::TOperationState::CANCELED_STATE),
            )
        } else {
            t::TGetOperationStatusResp {
                error_message: why.error_message.clone(),
                sql_state: why.sql_state.clone(),
                error_code: why.error_code,
                ..message::operation_status_reply(
                    message::success_status(),
                    Some(t::TOperationState::ERROR_STATE),
                )
            }
        };
        let mut out = Vec::new();
        Hs2Response::GetOperationStatus(reply).encode_reply(0, &mut out);
        self.table
            .set_final_status(client_handle, Some(Bytes::from(out)));
    }

    /// Answers a call on an operation that is not on the driver (waiting, or ended in the
    /// queue); `None` when it is on the driver, for the ordinary path.
    pub(super) async fn queued_answer(
        &self,
        op: &OperationEntry,
        request: &Hs2Request,
        seqid: i32,
    ) -> Result<Option<Reply>, GatewayError> {
        let Some(state) = op.queued.as_ref().filter(|_| op.is_queued()) else {
            return Ok(None);
        };
        let owner = &op.session.owner;
        let reply = match request {
            Hs2Request::CancelOperation(_) | Hs2Request::CloseOperation(_) => {
                let ended = state.advance(Phase::Waiting, Phase::Ended);
                state.cancelled.cancel();
                if ended {
                    info!(op.id = %display_id(&op.client_handle.operation_id), "queued statement cancelled before it ran");
                    self.end_queued(
                        state,
                        &op.client_handle,
                        &message::success_status(),
                        "cancelled",
                    );
                }
                state.settled();
                let status = message::success_status();
                if let Hs2Request::CloseOperation(_) = request {
                    self.table.remove_operation(&op.client_handle, owner);
                    Hs2Response::CloseOperation(t::TCloseOperationResp { status })
                } else {
                    Hs2Response::CancelOperation(t::TCancelOperationResp { status })
                }
            }
            Hs2Request::FetchResults(req) if req.fetch_type == Some(1) => {
                let place = *state.place.lock().expect("queued");
                let mut reported = state.reported.lock().expect("queued");
                let lines = if place.is_some() && *reported != place {
                    *reported = place;
                    vec![state.describe()]
                } else {
                    Vec::new()
                };
                drop(reported);
                let mut results = None;
                super::client::append_log_lines(&mut results, lines);
                Hs2Response::FetchResults(t::TFetchResultsResp {
                    status: message::success_status(),
                    has_more_rows: Some(false),
                    results,
                })
            }
            _ => {
                let why = match state.phase() {
                    Phase::Ended => state
                        .failure
                        .lock()
                        .expect("queued")
                        .clone()
                        .unwrap_or_else(|| "it was cancelled before its turn came".to_owned()),
                    _ => format!(
                        "{}; poll its status until it is finished",
                        state.describe().trim_start_matches("sparkgate: ")
                    ),
                };
                return Err(GatewayError::NotRun(why));
            }
        };
        Ok(Some(encoded(reply, seqid)))
    }

    /// The status of a queued statement: held (like a driver's status call) until it leaves
    /// the queue or `wait` passes; `None` once it is on the driver.
    pub(super) async fn queued_status(
        &self,
        op: &OperationEntry,
        wait: Duration,
    ) -> Option<t::TGetOperationStatusResp> {
        let state = op.queued.as_ref()?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = state.changed.notified();
            match state.phase() {
                Phase::OnDriver | Phase::Ended => return None,
                Phase::Waiting | Phase::Starting => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        // Superset and PyHive take anything but INITIALIZED and RUNNING for the end.
        let state = match op.session.family {
            ClientFamily::Python => t::TOperationState::RUNNING_STATE,
            ClientFamily::Jdbc => t::TOperationState::PENDING_STATE,
        };
        Some(message::operation_status_reply(
            message::success_status(),
            Some(state),
        ))
    }
}

/// How often sparkgate looks at the statements on drivers others wait for.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Keeps a waiting statement's place current (for its status and log) until `timeout` passes.
async fn follow_place(ticket: &PlaceReader, state: &QueuedState, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        *state.place.lock().expect("queued") = ticket.place();
        let next = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
        tokio::time::sleep_until(next).await;
    }
}

/// Waits for a place for a synchronous statement, within the tenant's `queue_timeout` and
/// while its client is there.
pub(super) async fn wait_for_place(
    mut ticket: Ticket,
    client_gone: &CancellationToken,
) -> Result<(Slot, Duration), GatewayError> {
    let since = Instant::now();
    let timeout = ticket.queue().policy().queue_timeout;
    info!(place = ?ticket.place(), "synchronous statement queued");
    tokio::select! {
        slot = ticket.granted() => {
            let waited = since.elapsed();
            info!(waited_ms = waited.as_millis() as u64, "synchronous statement's turn came");
            Ok((slot, waited))
        }
        () = tokio::time::sleep(timeout) => Err(ticket.queue().timeout_error().into()),
        () = client_gone.cancelled() => Err(GatewayError::ClientGone),
    }
}
