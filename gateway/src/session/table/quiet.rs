//! Shared HTTP sessions this replica no longer hears from, and their statements that run long:
//! their calls may reach other replicas now, or they ended there (closed, finished). Asked of
//! their driver, so what ended elsewhere stops counting as load here (see
//! [`crate::session::housekeeping`]).

use std::sync::Arc;
use std::time::Instant;

use hive_thrift::generated::tcliservice::TOperationHandle;

use super::{key_of, OperationEntry, Session, SessionTable};

impl SessionTable {
    /// Shared HTTP sessions unused here since `cutoff` and not checked since: each is returned
    /// once per period.
    pub fn quiet_shared(&self, cutoff: Instant) -> Vec<Arc<Session>> {
        self.sessions
            .lock()
            .expect("sessions")
            .values()
            .filter(|s| s.sealed.is_some() && s.take_check(cutoff))
            .cloned()
            .collect()
    }

    /// Forgets `session`, which ended on its driver, without a call there. Only this very
    /// session: `false` if another took its handle since (one moved to another driver).
    pub fn forget_ended(&self, session: &Arc<Session>) -> bool {
        let Some(key) = key_of(&session.client_handle.session_id) else {
            return false;
        };
        let same = self
            .sessions
            .lock()
            .expect("sessions")
            .get(&key)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if same {
            self.forget(session);
        }
        same
    }

    /// Statements of shared HTTP sessions counted as running here since before `cutoff`, and
    /// not asked about since: each is returned once per period. Their status polls may all
    /// reach other replicas, so this one would not see them end.
    pub fn due_rechecks(&self, cutoff: Instant) -> Vec<OperationEntry> {
        let mut operations = self.operations.lock().expect("operations");
        operations
            .values_mut()
            .filter(|op| {
                op.running
                    && op.final_status.is_none()
                    && op.session.sealed.is_some()
                    && op.started < cutoff
                    && op.rechecked.is_none_or(|at| at < cutoff)
            })
            .map(|op| {
                op.rechecked = Some(Instant::now());
                op.clone()
            })
            .collect()
    }

    /// Stops counting an operation as running: its driver says it ended.
    pub fn settle_operation(&self, handle: &TOperationHandle) {
        let Some(key) = key_of(&handle.operation_id) else {
            return;
        };
        if let Some(op) = self.operations.lock().expect("operations").get_mut(&key) {
            op.settle();
        }
    }
}
