//! Sessions and operations that change hands: a session moved to another driver, and HTTP
//! sessions and operations another replica opened, taken in from their sealed handles; and the
//! one way an operation entry begins, for these and for the table's own.

use std::sync::Arc;
use std::time::Instant;

use hive_thrift::generated::tcliservice::{TOperationHandle, TSessionHandle};

use super::{key_of, OperationEntry, Session, SessionTable};

impl OperationEntry {
    /// An operation starting now, with nothing besides its handles.
    pub(super) fn new(
        client_handle: TOperationHandle,
        backend_handle: TOperationHandle,
        session: &Arc<Session>,
    ) -> Self {
        Self {
            client_handle,
            backend_handle,
            session: session.clone(),
            final_status: None,
            running: false,
            name_column: None,
            cancelled_by_limit: None,
            started: Instant::now(),
            rechecked: None,
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            progress: Arc::default(),
            cache: None,
            slot: None,
            queued: None,
            record: None,
            session_state: None,
        }
    }
}

impl SessionTable {
    /// The session behind a client handle, whoever owns it (sparkgate's own work).
    pub fn session_for_gateway(&self, handle: &TSessionHandle) -> Option<Arc<Session>> {
        let key = key_of(&handle.session_id)?;
        self.sessions.lock().expect("sessions").get(&key).cloned()
    }

    /// Puts `moved` (the same session on another driver) in place of `old`, unless the session
    /// is gone or was replaced meanwhile (then `moved` comes back). The operations `old` started
    /// stay, settled (their driver is gone), until the client closes them.
    pub fn replace_session(
        &self,
        old: &Arc<Session>,
        moved: Arc<Session>,
    ) -> Result<Arc<Session>, Arc<Session>> {
        let Some(key) = key_of(&old.client_handle.session_id) else {
            return Err(moved);
        };
        let mut sessions = self.sessions.lock().expect("sessions");
        let Some(current) = sessions.get_mut(&key).filter(|c| Arc::ptr_eq(c, old)) else {
            return Err(moved);
        };
        *current = moved.clone();
        drop(sessions);
        for op in self.operations.lock().expect("operations").values_mut() {
            if Arc::ptr_eq(&op.session, old) {
                op.settle();
            }
        }
        Ok(moved)
    }

    /// Takes in a session another replica opened (its sealed handle), unless its handle's GUID
    /// is taken here already.
    pub fn insert_if_absent(&self, session: Session) -> Option<Arc<Session>> {
        let key = key_of(&session.client_handle.session_id)?;
        let mut sessions = self.sessions.lock().expect("sessions");
        if sessions.contains_key(&key) {
            return None;
        }
        let session = Arc::new(session);
        sessions.insert(key, session.clone());
        Some(session)
    }

    /// Takes in an operation another replica started (its sealed handle), unless its handle's
    /// GUID is taken here already. Its status and results are asked of its driver.
    pub fn adopt_operation(
        &self,
        session: &Arc<Session>,
        client_handle: TOperationHandle,
        backend_handle: TOperationHandle,
        name_column: Option<usize>,
    ) -> Option<OperationEntry> {
        let key = key_of(&client_handle.operation_id)?;
        let mut operations = self.operations.lock().expect("operations");
        if operations.contains_key(&key) {
            return None;
        }
        let entry = OperationEntry {
            name_column,
            ..OperationEntry::new(client_handle, backend_handle, session)
        };
        operations.insert(key, entry.clone());
        Some(entry)
    }
}
