//! Housekeeping: sessions closed for idleness, for a finished connection or at shutdown, and
//! driver connections of drivers that are gone.

use std::time::{Duration, Instant};

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::Hs2Request;
use tracing::{debug, info, warn};

use super::table::{Owner, Session};
use super::CallHandler;

/// How long a shared HTTP session may go unserved by this replica (or one of its statements run)
/// before its driver is asked whether it still goes on; and how often it is asked again.
pub const SHARED_RECHECK_AFTER: Duration = Duration::from_secs(10);
/// Driver calls of one recheck pass at a time.
const RECHECKS_AT_ONCE: usize = 16;

impl CallHandler {
    /// Drops the driver connections of drivers that are gone.
    pub fn forget_gone_drivers(&self) {
        let live: std::collections::HashSet<String> = self
            .pools
            .values()
            .flat_map(|pool| pool.drivers())
            .map(|d| d.address)
            .collect();
        self.links.retain(&live);
    }

    /// Closes sessions idle for longer than the configured timeout, on the driver too.
    ///
    /// # Cancel safety
    /// Not cancel-safe: sessions are taken out of the table first, and those not yet closed
    /// when it is dropped stay open on their driver until the driver drops them.
    pub async fn expire_idle_sessions(&self) {
        let timeout = self.config.server.idle_session_timeout;
        let Some(cutoff) = Instant::now().checked_sub(timeout) else {
            return;
        };
        for session in self.table.take_idle(cutoff) {
            if self.shares_session(&session) {
                // Idle here, maybe not on the replicas its other calls reach: forgotten, not
                // closed (the driver's own idle timeout ends it if nobody comes back).
                debug!(session.id = %session.id(), "forgetting an HTTP session idle on this replica");
                continue;
            }
            info!(session.id = %session.id(), idle = %humantime(timeout), "closing idle session");
            self.audit_closed(&session, "idle timeout");
            self.close_on_driver(&session).await;
        }
        let expired = self
            .stock
            .take_expired(self.config.server.session_reuse_ttl);
        for session in &expired {
            debug!(session.id = %session.id(), "closing a kept session nobody reused");
            self.close_on_driver(session).await;
        }
    }

    /// Asks the drivers of shared HTTP sessions quiet here, and of their statements running
    /// long, whether they still go on. A client's calls reach any replica: the one that closed
    /// the session, or saw its statement finish, was maybe another, and this copy would
    /// otherwise count as load (keeping drivers from draining, or scaling pools up) until the
    /// session idled out here, or for as long as the client kept using it.
    pub async fn recheck_shared_sessions(&self) {
        use futures::StreamExt;
        if !self.config.http.shared_sessions {
            return;
        }
        let Some(cutoff) = Instant::now().checked_sub(SHARED_RECHECK_AFTER) else {
            return;
        };
        let quiet = self.table.quiet_shared(cutoff);
        futures::stream::iter(quiet)
            .for_each_concurrent(RECHECKS_AT_ONCE, |session| async move {
                self.recheck_session(&session).await;
            })
            .await;
        let running = self.table.due_rechecks(cutoff);
        futures::stream::iter(running)
            .for_each_concurrent(RECHECKS_AT_ONCE, |op| async move {
                self.recheck_operation(&op).await;
            })
            .await;
    }

    async fn recheck_session(&self, session: &std::sync::Arc<Session>) {
        use hive_thrift::message::Hs2Response;
        // The lightest call a Spark Thrift Server answers on the session itself, with an error
        // reply it can send (GetInfo looks up no session for the server's name or version, and
        // for other kinds its error reply breaks the connection); its operation is closed.
        let probe = Hs2Request::GetCatalogs(t::TGetCatalogsReq {
            session_handle: session.backend_handle.clone(),
        });
        match self.session_call(session, &probe).await {
            Ok(Hs2Response::GetCatalogs(t::TGetCatalogsResp {
                operation_handle: Some(operation_handle),
                ..
            })) => {
                let close = Hs2Request::CloseOperation(t::TCloseOperationReq { operation_handle });
                if let Err(e) = self.session_call(session, &close).await {
                    debug!(session.id = %session.id(), error = %e, "closing a recheck's operation failed");
                }
            }
            Ok(resp) if ended_on_driver(resp.status()) => {
                if self.table.forget_ended(session) {
                    debug!(session.id = %session.id(), "an HTTP session closed through another replica; forgotten here");
                }
            }
            Ok(resp) => {
                debug!(session.id = %session.id(), status = ?resp.status(), "a quiet HTTP session's recheck was refused")
            }
            Err(e) => {
                debug!(session.id = %session.id(), error = %e, "could not check a quiet HTTP session on its driver")
            }
        }
    }

    async fn recheck_operation(&self, op: &super::table::OperationEntry) {
        use hive_thrift::message::Hs2Response;
        let status = Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
            operation_handle: op.backend_handle.clone(),
            get_progress_update: None,
        });
        if let Ok(Hs2Response::GetOperationStatus(resp)) =
            self.session_call(&op.session, &status).await
        {
            let finished = resp.operation_state.is_some_and(super::table::is_final);
            if finished || ended_on_driver(&resp.status) {
                debug!(session.id = %op.session.id(), "a statement that ended through another replica no longer counts as running here");
                self.table.settle_operation(&op.client_handle);
            }
        }
    }

    /// Keeps a session its client closed for reuse, if it may be (see [`super::stock`]).
    pub(super) fn stock_session(
        &self,
        session: std::sync::Arc<Session>,
    ) -> Result<(), std::sync::Arc<Session>> {
        let server = &self.config.server;
        let reusable = !server.session_reuse_ttl.is_zero()
            && session.reuse.is_some()
            && session.lost_reason().is_none()
            && session.open_operation_count() == 0
            && !session.cache_state().changed()
            && session
                .lease
                .as_ref()
                .is_some_and(|l| l.driver_failure().is_none());
        if !reusable {
            return Err(session);
        }
        let mut session = std::sync::Arc::try_unwrap(session)?;
        let Some(reuse) = session.reuse.take() else {
            unreachable!("checked above");
        };
        let (key, opened) = *reuse;
        let id = session.id();
        match self
            .stock
            .put(key, session, opened, server.session_reuse_max)
        {
            None => {
                debug!(session.id = %id, "session kept for reuse");
                Ok(())
            }
            Some(session) => Err(std::sync::Arc::new(session)),
        }
    }

    /// Closes, on their drivers, the sessions a finished connection owned.
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`CallHandler::expire_idle_sessions`].
    /// In parallel, each bounded by `backend.call_timeout`.
    pub async fn close_owned_by(&self, owner: &Owner) -> usize {
        let sessions = self.table.take_owned_by(owner);
        let count = sessions.len();
        for session in &sessions {
            self.audit_closed(session, "connection ended");
        }
        // A client that hangs up without CloseSession (PyHive leaves that to the garbage
        // collector) ends its sessions too: those that changed nothing may be reused.
        let to_close: Vec<_> = sessions
            .into_iter()
            .filter_map(|s| self.stock_session(s).err())
            .collect();
        futures::future::join_all(to_close.iter().map(|s| self.close_on_driver(s))).await;
        count
    }

    /// Closes every session on its driver (shutdown), in parallel, each bounded by
    /// `backend.call_timeout`.
    ///
    /// # Cancel safety
    /// Not cancel-safe, as [`CallHandler::expire_idle_sessions`]: shutdown drops it at
    /// `server.shutdown_close_timeout` on purpose.
    pub async fn close_all(&self) {
        let (handed_off, sessions): (Vec<_>, Vec<_>) = self
            .table
            .take_all()
            .into_iter()
            .partition(|s| self.shares_session(s));
        if !handed_off.is_empty() {
            // Their clients' next calls reach another replica, which takes them in.
            info!(
                sessions = handed_off.len(),
                "leaving HTTP sessions open for the other replicas"
            );
        }
        for session in &sessions {
            self.audit_closed(session, "sparkgate shutdown");
        }
        futures::future::join_all(sessions.iter().map(|s| self.close_on_driver(s))).await;
        let kept = self.stock.take_expired(Duration::ZERO);
        futures::future::join_all(kept.iter().map(|s| self.close_on_driver(s))).await;
    }

    /// A session's end, for the audit log.
    pub(super) fn audit_closed(&self, session: &Session, why: &str) {
        self.recorders.audit.record(super::record::session_record(
            "session_close",
            session,
            Some(why),
        ));
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

/// Whether the driver answered that the session or operation asked about no longer exists there.
fn ended_on_driver(status: &t::TStatus) -> bool {
    status.status_code == t::TStatusCode::ERROR_STATUS
        && status.error_message.as_deref().is_some_and(|m| {
            m.contains("Invalid SessionHandle") || m.contains("Invalid OperationHandle")
        })
}

fn humantime(d: Duration) -> String {
    format!("{} s", d.as_secs())
}
