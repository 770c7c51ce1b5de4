//! Sessions that outlive their driver. A session keeps what shaped its state on the driver: the
//! OpenSession it was opened with and, in order, the statements that finished and set state
//! (`USE`, `SET`, `RESET`, temporary views and functions, session variables, `ADD JAR`). When
//! its driver is lost, the session is opened again on another driver of its tenant and that
//! state replayed, under the same client handle: the call that found the loss fails with an
//! error that says so, and the next statement runs as if nothing happened.
//!
//! Not replayed: global temporary views (the driver's, not the session's), cached tables,
//! anything a statement wrote (the catalog and the tables outlive drivers by themselves).

use std::sync::Arc;
use std::time::Instant;

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response};
use tracing::{info, warn};

use super::admission::strip_leading_comments;
use super::{encoded, CallHandler, OperationEntry, Reply, Session};
use crate::error::GatewayError;

/// A session's replay log keeps at most this many statements, and this many bytes of them;
/// past either, the session can no longer be moved (its loss ends it, as without replay).
pub const MAX_STATEMENTS: usize = 1_000;
pub const MAX_BYTES: usize = 1 << 20;

/// What a finished statement does to the replay log.
#[derive(Debug, PartialEq, Eq)]
pub enum Shapes {
    /// It set session state: replay it.
    Keep,
    /// `DROP VIEW name`: a temporary view of that name created earlier is not replayed.
    DropsView(String),
}

fn words(sql: &str, n: usize) -> Vec<String> {
    strip_leading_comments(sql)
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A view's name as Spark resolves it for a temporary view: unquoted, case-insensitive.
fn view_name(word: &str) -> String {
    word.trim_matches('`').to_ascii_lowercase()
}

/// The temporary view (session-scoped, not global) a statement creates, if it does.
fn created_temp_view(sql: &str) -> Option<String> {
    let words = words(sql, 10);
    let mut rest = words.iter().map(String::as_str);
    if rest.next()? != "create" {
        return None;
    }
    let mut word = rest.next()?;
    if word == "or" {
        rest.next().filter(|w| *w == "replace")?;
        word = rest.next()?;
    }
    if !matches!(word, "temporary" | "temp") {
        return None;
    }
    if !matches!(rest.next()?, "view" | "table") {
        return None;
    }
    let mut name = rest.next()?;
    if name == "if" {
        rest.next().filter(|w| *w == "not")?;
        rest.next().filter(|w| *w == "exists")?;
        name = rest.next()?;
    }
    Some(view_name(name))
}

/// Whether (and how) a statement that finished shapes its session's state.
pub fn shapes_session(sql: &str) -> Option<Shapes> {
    let words = words(sql, 6);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    match word(0) {
        "use" | "set" | "reset" | "declare" => Some(Shapes::Keep),
        "add" => matches!(
            word(1),
            "jar" | "jars" | "file" | "files" | "archive" | "archives"
        )
        .then_some(Shapes::Keep),
        "create" => {
            let kind = if word(1) == "or" { word(3) } else { word(1) };
            matches!(kind, "temporary" | "temp").then_some(Shapes::Keep)
        }
        "drop" if matches!(word(1), "temporary" | "temp") => Some(Shapes::Keep),
        "drop" if word(1) == "view" => {
            let name = if word(2) == "if" && word(3) == "exists" {
                word(4)
            } else {
                word(2)
            };
            (!name.is_empty()).then(|| Shapes::DropsView(view_name(name)))
        }
        _ => None,
    }
}

/// What a session needs to be opened again elsewhere with the same state.
#[derive(Debug, Clone)]
pub struct ReplayLog {
    /// The OpenSession as sparkgate sent it to the driver (no password in it).
    pub opened_with: t::TOpenSessionReq,
    statements: Vec<Arc<str>>,
    bytes: usize,
    overflowed: bool,
}

impl ReplayLog {
    pub fn new(opened_with: t::TOpenSessionReq) -> Self {
        Self {
            opened_with,
            statements: Vec::new(),
            bytes: 0,
            overflowed: false,
        }
    }

    /// Notes a statement that finished on the driver.
    pub fn remember(&mut self, sql: &str) {
        match shapes_session(sql) {
            None => {}
            Some(Shapes::DropsView(name)) => {
                // Dropping a permanent view again on replay would be wrong: only forget the
                // temporary view it dropped, if the session made one.
                self.statements.retain(|s| {
                    let keep = created_temp_view(s).as_deref() != Some(name.as_str());
                    if !keep {
                        self.bytes -= s.len();
                    }
                    keep
                });
            }
            Some(Shapes::Keep) => {
                if self.statements.len() >= MAX_STATEMENTS || self.bytes + sql.len() > MAX_BYTES {
                    self.overflowed = true;
                    return;
                }
                self.bytes += sql.len();
                self.statements.push(Arc::from(sql));
            }
        }
    }

    /// The statements to replay, in order; an error when there were too many to keep.
    pub fn statements(&self) -> Result<&[Arc<str>], String> {
        if self.overflowed {
            return Err(format!(
                "the session set more state than sparkgate keeps to replay ({MAX_STATEMENTS} statements or {} KiB)",
                MAX_BYTES / 1024
            ));
        }
        Ok(&self.statements)
    }
}

/// The client's handle a call names, kept before the call swaps it for the driver's.
#[derive(Debug)]
pub(super) enum CallTarget {
    Session(t::TSessionHandle),
    Operation(t::TOperationHandle),
}

impl CallTarget {
    pub(super) fn of(request: &mut Hs2Request) -> Option<Self> {
        if matches!(
            request,
            Hs2Request::OpenSession(_) | Hs2Request::CloseSession(_)
        ) {
            return None;
        }
        if let Some(handle) = request.operation_handle_mut() {
            return Some(Self::Operation(handle.clone()));
        }
        request
            .session_handle_mut()
            .map(|handle| Self::Session(handle.clone()))
    }
}

impl CallHandler {
    /// A call on `target` failed with `cause`, which says its driver is lost: the error its
    /// client gets, once the session has moved (or ended).
    pub(super) async fn driver_lost_error(
        &self,
        owner: &super::Owner,
        target: Option<CallTarget>,
        cause: GatewayError,
    ) -> GatewayError {
        let session = match target {
            Some(CallTarget::Session(handle)) => self.table.session(&handle, owner),
            Some(CallTarget::Operation(handle)) => {
                self.table.operation(&handle, owner).map(|op| op.session)
            }
            None => None,
        };
        match session {
            Some(session) => self.after_driver_loss(&session, cause).await,
            None => cause,
        }
    }

    /// After a call of `session` failed because its driver is lost (`cause`): moves the session
    /// to another driver (once, however many calls found the loss) and returns the error the
    /// call answers with. Without replay, or if the move fails, the session ends.
    pub(super) async fn after_driver_loss(
        &self,
        session: &Arc<Session>,
        cause: GatewayError,
    ) -> GatewayError {
        let Some(log) = &session.replay else {
            return cause;
        };
        if cause.lost_driver() != Some(session.backend_addr.as_str()) {
            // The session is on another driver than the one lost: moved already.
            return GatewayError::SessionMoved {
                from: cause.lost_driver().unwrap_or_default().to_owned(),
                to: session.backend_addr.clone(),
            };
        }
        let _moving = session.moving.lock().await;
        match self.table.session_for_gateway(&session.client_handle) {
            Some(current) if Arc::ptr_eq(&current, session) => {}
            // Another call moved it already.
            Some(current) => {
                return GatewayError::SessionMoved {
                    from: session.backend_addr.clone(),
                    to: current.backend_addr.clone(),
                }
            }
            None => return cause,
        }
        session.mark_lost(&cause.to_string());
        let log = log.lock().expect("replay log").clone();
        let started = Instant::now();
        warn!(session.id = %session.id(), driver = %session.backend_addr, error = %cause, "the session's driver is lost; moving the session to another driver");
        match self.move_session(session, &log).await {
            Ok(moved) => {
                info!(
                    session.id = %moved.id(),
                    from = %session.backend_addr,
                    to = %moved.backend_addr,
                    replayed = log.statements().map_or(0, <[_]>::len),
                    secs = started.elapsed().as_secs_f64(),
                    "session moved to another driver with its state replayed"
                );
                self.recorders.audit.record(super::record::session_record(
                    "session_moved",
                    &moved,
                    Some(&format!("from {}", session.backend_addr)),
                ));
                GatewayError::SessionMoved {
                    from: session.backend_addr.clone(),
                    to: moved.backend_addr.clone(),
                }
            }
            Err(detail) => {
                warn!(session.id = %session.id(), %detail, "the session could not be moved; it ends");
                if let Some(gone) = self
                    .table
                    .remove_session(&session.client_handle, &session.owner)
                {
                    self.audit_closed(&gone, "driver lost; the session could not be moved");
                }
                GatewayError::SessionNotMoved {
                    addr: session.backend_addr.clone(),
                    detail,
                }
            }
        }
    }

    /// Opens the session again on a driver of its tenant, replays its state and puts it in the
    /// table under its client handle.
    async fn move_session(
        &self,
        session: &Arc<Session>,
        log: &ReplayLog,
    ) -> Result<Arc<Session>, String> {
        let statements = log.statements()?;
        let tenant = self
            .tenants
            .get(&session.tenant)
            .ok_or_else(|| format!("tenant {:?} is no longer configured", session.tenant))?;
        let open = Hs2Request::OpenSession(log.opened_with.clone());
        let (reply, addr, lease) = self
            .place_session(tenant, &session.user, &open, self.shares_session(session))
            .await
            .map_err(|e| format!("no driver took it: {e}"))?;
        let backend_handle = match Hs2Response::decode_for(&open, &reply) {
            Ok(Hs2Response::OpenSession(t::TOpenSessionResp {
                status,
                session_handle: Some(handle),
                ..
            })) if super::operations::succeeded(&status) => handle,
            Ok(response) => {
                let why = response.status().error_message.clone().unwrap_or_default();
                return Err(format!("the driver at {addr} refused to open it: {why}"));
            }
            Err(e) => {
                return Err(format!(
                    "the driver at {addr} answered OpenSession badly: {e}"
                ))
            }
        };
        let moved = session.moved_to(addr, backend_handle, lease);
        for sql in statements {
            if let Err(why) = self.replay_statement(&moved, sql).await {
                self.close_moved(&moved).await;
                return Err(format!("replaying `{}` failed: {why}", clip_sql(sql)));
            }
        }
        match self.table.replace_session(session, Arc::new(moved)) {
            Ok(moved) => Ok(moved),
            Err(moved) => {
                self.close_moved(&moved).await;
                Err("the client closed the session meanwhile".to_owned())
            }
        }
    }

    /// Closes a new driver session the move does not use.
    async fn close_moved(&self, moved: &Session) {
        let close = Hs2Request::CloseSession(t::TCloseSessionReq {
            session_handle: moved.backend_handle.clone(),
        });
        if let Err(e) = self.session_call(moved, &close).await {
            warn!(error = %e, "could not close an unused driver session of a move");
        }
    }

    /// Runs one statement of the replay log to its end on the session's new driver.
    async fn replay_statement(&self, session: &Session, sql: &str) -> Result<(), String> {
        let execute = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session.backend_handle.clone(),
            statement: sql.to_owned(),
            conf_overlay: None,
            run_async: Some(false),
            query_timeout: None,
        });
        let response = self
            .session_call(session, &execute)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().clone();
        if let Hs2Response::ExecuteStatement(t::TExecuteStatementResp {
            operation_handle: Some(handle),
            ..
        }) = response
        {
            let close = Hs2Request::CloseOperation(t::TCloseOperationReq {
                operation_handle: handle,
            });
            if let Err(e) = self.session_call(session, &close).await {
                warn!(error = %e, "could not close a replayed statement on the driver");
            }
        }
        if super::operations::succeeded(&status) {
            Ok(())
        } else {
            let text = status.error_message.unwrap_or_else(|| "no message".into());
            Err(super::client::concise_error(&text))
        }
    }
}

/// A statement for an error message and the log: literals redacted (a `SET` may carry a
/// secret), cut.
fn clip_sql(sql: &str) -> String {
    const MAX: usize = 120;
    let (text, _) = crate::audit::render_statement(sql, crate::audit::StatementText::Redacted);
    let text = text.unwrap_or_default();
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

impl CallHandler {
    /// CloseOperation or CancelOperation of a statement whose driver is lost (`cause`): it is
    /// gone with its driver, so the call succeeds, and the session moves for its next
    /// statement. Only a session that could not move makes it an error.
    pub(super) async fn settled_with_lost_driver(
        &self,
        op: &OperationEntry,
        request: &Hs2Request,
        cause: GatewayError,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        if let e @ GatewayError::SessionNotMoved { .. } =
            self.after_driver_loss(&op.session, cause).await
        {
            return Err(e);
        }
        let status = message::success_status();
        let response = match request {
            Hs2Request::CancelOperation(_) => {
                Hs2Response::CancelOperation(t::TCancelOperationResp { status })
            }
            _ => Hs2Response::CloseOperation(t::TCloseOperationResp { status }),
        };
        Ok(encoded(response, seqid))
    }
}

#[cfg(test)]
mod tests;
