//! The session table: every open session and operation, who owns it, and what stands behind it
//! on the driver.
//!
//! Clients only ever see handles sparkgate minted (random guid and secret), never the driver's.
//! A handle is found only if its secret matches and the caller is its owner: the binary
//! connection that opened it, or, over HTTP (where every request may come on a new connection),
//! the user who opened it. A handle copied to another connection or user, guessed or forged is
//! refused, never routed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hive_thrift::generated::tcliservice::{
    THandleIdentifier, TOperationHandle, TOperationState, TSessionHandle,
};
use rand::RngCore;

/// A handle's guid; the table key.
pub type HandleId = [u8; 16];

/// Mints a fresh handle identifier: 16 random bytes of guid, 16 of secret.
pub fn mint_identifier() -> THandleIdentifier {
    let mut guid = vec![0u8; 16];
    let mut secret = vec![0u8; 16];
    let mut rng = rand::thread_rng();
    rng.fill_bytes(&mut guid);
    rng.fill_bytes(&mut secret);
    THandleIdentifier { guid, secret }
}

fn key_of(id: &THandleIdentifier) -> Option<HandleId> {
    id.guid.as_slice().try_into().ok()
}

/// Human-readable form of a handle for logs (guid only; the secret stays out of logs).
pub fn display_id(id: &THandleIdentifier) -> String {
    id.guid.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who may use a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The binary-transport connection with this id (sessions end with the connection).
    Connection(u64),
    /// This authenticated user, over HTTP.
    User(String),
}

impl Owner {
    /// The transport its calls come over, as logs and audit records name it.
    pub fn transport(&self) -> &'static str {
        match self {
            Self::Connection(_) => "binary",
            Self::User(_) => "http",
        }
    }
}

/// What sparkgate remembers of an operation.
#[derive(Debug, Clone)]
pub struct OperationEntry {
    pub client_handle: TOperationHandle,
    pub backend_handle: TOperationHandle,
    /// The session the operation belongs to.
    pub session: Arc<Session>,
    /// Once the driver reported a final state, the encoded GetOperationStatus reply (seqid to be
    /// patched), answered from here: the Hive JDBC driver asks once per fetched row.
    pub final_status: Option<Bytes>,
    /// Counted as running on its driver (until a final state, or its end, is seen).
    running: bool,
    /// Python clients read this column alone of the results (see [`super::client`]).
    pub name_column: Option<usize>,
    /// Why sparkgate cancelled it (a tenant limit), shown instead of the driver's "cancelled".
    pub cancelled_by_limit: Option<String>,
    started: Instant,
    /// When its driver was last asked whether it still runs (see [`SessionTable::due_rechecks`]).
    rechecked: Option<Instant>,
    /// When it started, in milliseconds since the epoch (HS2's progress update).
    pub started_ms: i64,
    /// What its client has been told of its progress.
    pub progress: Arc<Mutex<crate::driver::progress::ProgressLog>>,
    /// What the result cache does for it.
    pub cache: Option<super::cache::serve::OpCacheHandle>,
    /// Its place on the driver under the tenant's admission control, given back when it settles.
    slot: Option<Arc<super::admission::Slot>>,
    /// While it waits in the tenant's queue (not yet on the driver): where it stands.
    pub queued: Option<Arc<super::queued::QueuedState>>,
    /// A statement's record for the audit log and usage book (handed over when the last
    /// reference goes).
    pub record: Option<Arc<super::record::StatementRecord>>,
    /// A statement that shapes its session's state, for the session's replay log (taken once,
    /// by the first to see it finish).
    pub session_state: Option<Arc<Mutex<Option<String>>>>,
}

/// What an operation carries besides its handles.
#[derive(Debug, Default)]
pub struct OperationExtras {
    /// Python clients read this column alone of the results (see [`super::client`]).
    pub name_column: Option<usize>,
    pub cache: Option<super::cache::serve::OpCacheHandle>,
    /// Its place on the driver (admission control).
    pub slot: Option<super::admission::Slot>,
    pub record: Option<Arc<super::record::StatementRecord>>,
    /// A statement that shapes its session's state: kept for a replay once it finishes.
    pub session_state: Option<String>,
}

impl OperationEntry {
    /// How long since it started.
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Stops counting the operation as running on its driver (once).
    fn settle(&mut self) {
        if std::mem::take(&mut self.running) {
            if let Some(lease) = &self.session.lease {
                lease.operation_ended();
            }
        }
        if let Some(slot) = self.slot.take() {
            slot.release();
        }
    }

    /// Whether it waits in the queue still (or ended there), with no statement on the driver.
    pub fn is_queued(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| !q.on_driver())
    }
}

/// Whether an operation can change state no more.
pub fn is_final(state: TOperationState) -> bool {
    matches!(
        state,
        TOperationState::FINISHED_STATE
            | TOperationState::CANCELED_STATE
            | TOperationState::CLOSED_STATE
            | TOperationState::ERROR_STATE
            | TOperationState::TIMEDOUT_STATE
    )
}

/// Every session and operation of the gateway.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<HandleId, Arc<Session>>>,
    operations: Mutex<HashMap<HandleId, OperationEntry>>,
    /// Seals the operation handles of HTTP sessions (see [`super::sealed`]).
    sealer: Option<Arc<super::sealed::Sealer>>,
}

/// Finds an owned entry: the guid must be known, the secret must match, the caller must own it.
fn owned<'a, T>(
    map: &'a HashMap<HandleId, T>,
    id: &THandleIdentifier,
    secret_of: impl Fn(&T) -> &[u8],
    owner_of: impl Fn(&T) -> &Owner,
    caller: &Owner,
) -> Option<&'a T> {
    let entry = map.get(&key_of(id)?)?;
    (secret_of(entry) == id.secret.as_slice() && owner_of(entry) == caller).then_some(entry)
}

impl SessionTable {
    /// A table whose HTTP sessions' operation handles are sealed with `sealer`.
    pub fn sealing(sealer: Arc<super::sealed::Sealer>) -> Self {
        Self {
            sealer: Some(sealer),
            ..Self::default()
        }
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().expect("sessions").len()
    }

    pub fn operation_count(&self) -> usize {
        self.operations.lock().expect("operations").len()
    }

    /// Every open session (admin API).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .lock()
            .expect("sessions")
            .values()
            .cloned()
            .collect()
    }

    /// The session with this driver-side handle on the driver at `addr`.
    pub fn find_by_backend(&self, addr: &str, guid: &[u8]) -> Option<Arc<Session>> {
        let sessions = self.sessions.lock().expect("sessions");
        sessions
            .values()
            .find(|s| s.backend_addr == addr && s.backend_handle.session_id.guid == guid)
            .cloned()
    }

    /// Sessions `owner` holds.
    pub fn count_owned_by(&self, owner: &Owner) -> usize {
        let sessions = self.sessions.lock().expect("sessions");
        sessions.values().filter(|s| &s.owner == owner).count()
    }

    pub fn insert(&self, session: Session) -> Arc<Session> {
        let key = key_of(&session.client_handle.session_id).expect("minted guid has 16 bytes");
        let session = Arc::new(session);
        self.sessions
            .lock()
            .expect("sessions")
            .insert(key, session.clone());
        session
    }

    /// The session behind a client handle, if `caller` owns it; marks it used.
    pub fn session(&self, handle: &TSessionHandle, caller: &Owner) -> Option<Arc<Session>> {
        let sessions = self.sessions.lock().expect("sessions");
        let session = owned(
            &sessions,
            &handle.session_id,
            |s| &s.client_handle.session_id.secret,
            |s| &s.owner,
            caller,
        )?
        .clone();
        drop(sessions);
        session.touch();
        Some(session)
    }

    /// Removes a session `caller` owns, and its operations.
    pub fn remove_session(&self, handle: &TSessionHandle, caller: &Owner) -> Option<Arc<Session>> {
        let session = self.session(handle, caller)?;
        self.forget(&session);
        Some(session)
    }

    fn forget(&self, session: &Arc<Session>) {
        let key = key_of(&session.client_handle.session_id).expect("minted guid has 16 bytes");
        self.sessions.lock().expect("sessions").remove(&key);
        // By handle, not by pointer: a moved session's operations from before the move go too.
        let id = &session.client_handle.session_id;
        self.operations.lock().expect("operations").retain(|_, op| {
            let keep = op.session.client_handle.session_id != *id;
            if !keep {
                op.settle();
                if let Some(queued) = &op.queued {
                    queued.abandon();
                }
            }
            keep
        });
    }

    /// Removes and returns the sessions matching `pick`.
    fn take_where(&self, pick: impl Fn(&Session) -> bool) -> Vec<Arc<Session>> {
        let picked: Vec<Arc<Session>> = {
            let sessions = self.sessions.lock().expect("sessions");
            sessions.values().filter(|s| pick(s)).cloned().collect()
        };
        for session in &picked {
            self.forget(session);
        }
        picked
    }

    /// Every session `owner` holds, removed (its connection ended).
    pub fn take_owned_by(&self, owner: &Owner) -> Vec<Arc<Session>> {
        self.take_where(|s| &s.owner == owner)
    }

    /// Sessions unused since before `cutoff`, removed.
    pub fn take_idle(&self, cutoff: Instant) -> Vec<Arc<Session>> {
        self.take_where(|s| s.last_used() < cutoff)
    }

    /// Every session, removed (shutdown).
    pub fn take_all(&self) -> Vec<Arc<Session>> {
        self.take_where(|_| true)
    }

    /// Registers an operation the backend started in `session`; returns the client's handle.
    /// `runs_on`: it goes on running on the driver (an asynchronous statement), and counts as
    /// load until a final state is seen.
    pub fn add_operation(
        &self,
        session: &Arc<Session>,
        backend_handle: TOperationHandle,
        runs_on: bool,
        extras: OperationExtras,
    ) -> TOperationHandle {
        self.insert_operation(session, backend_handle, runs_on, extras, false)
    }

    /// [`SessionTable::add_operation`]; `issuer_only`: no other replica can serve it.
    fn insert_operation(
        &self,
        session: &Arc<Session>,
        backend_handle: TOperationHandle,
        runs_on: bool,
        extras: OperationExtras,
        issuer_only: bool,
    ) -> TOperationHandle {
        let issuer_only = issuer_only || extras.cache.as_ref().is_some_and(|c| c.gateway_only);
        let OperationExtras {
            name_column,
            cache,
            slot,
            record,
            session_state,
        } = extras;
        let mut client_handle = TOperationHandle {
            operation_id: mint_identifier(),
            ..backend_handle.clone()
        };
        if let (Some(sealer), Some(sealed)) = (&self.sealer, &session.sealed) {
            let state = super::sealed::SealedOperation {
                session: sealed.clone(),
                session_guid: session.client_handle.session_id.guid.clone(),
                session_secret: session.client_handle.session_id.secret.clone(),
                driver_guid: backend_handle.operation_id.guid.clone(),
                driver_secret: backend_handle.operation_id.secret.clone(),
                operation_type: backend_handle.operation_type.0,
                has_result_set: backend_handle.has_result_set,
                modified_row_count: backend_handle.modified_row_count.map(|c| c.0),
                name_column,
                issuer_only,
            };
            client_handle.operation_id.secret =
                sealer.seal(&client_handle.operation_id.guid, &state);
        }
        let key = key_of(&client_handle.operation_id).expect("minted guid has 16 bytes");
        if let Some(record) = &record {
            record.operation(display_id(&client_handle.operation_id));
        }
        if let (true, Some(lease)) = (runs_on, &session.lease) {
            lease.operation_started();
        }
        let entry = OperationEntry {
            running: runs_on,
            name_column,
            cache,
            slot: slot.map(Arc::new),
            record,
            session_state: session_state.map(|sql| Arc::new(Mutex::new(Some(sql)))),
            ..OperationEntry::new(client_handle.clone(), backend_handle, session)
        };
        self.operations
            .lock()
            .expect("operations")
            .insert(key, entry);
        client_handle
    }

    /// Registers a statement that waits in its tenant's queue, under a placeholder driver
    /// handle until [`SessionTable::start_queued`].
    pub fn add_queued_operation(
        &self,
        session: &Arc<Session>,
        placeholder: TOperationHandle,
        extras: OperationExtras,
        queued: Arc<super::queued::QueuedState>,
    ) -> TOperationHandle {
        let handle = self.insert_operation(session, placeholder, false, extras, true);
        if let Some(op) = self
            .operations
            .lock()
            .expect("operations")
            .get_mut(&key_of(&handle.operation_id).expect("minted"))
        {
            op.queued = Some(queued);
        }
        handle
    }

    /// A queued statement got its place and started on the driver as `backend_handle`; `false`
    /// if its operation is gone meanwhile (closed: the caller cancels it on the driver).
    pub fn start_queued(
        &self,
        handle: &TOperationHandle,
        backend_handle: TOperationHandle,
        slot: super::admission::Slot,
        waited: std::time::Duration,
    ) -> bool {
        let Some(key) = key_of(&handle.operation_id) else {
            return false;
        };
        let mut operations = self.operations.lock().expect("operations");
        let Some(op) = operations.get_mut(&key) else {
            return false;
        };
        op.backend_handle = backend_handle;
        op.running = true;
        if let Some(lease) = &op.session.lease {
            lease.operation_started();
        }
        op.slot = Some(Arc::new(slot));
        if let Some(record) = &op.record {
            record.admitted(waited);
        }
        op.started = Instant::now();
        true
    }

    /// The operation behind a client handle, if `caller` owns its session; marks the session used.
    pub fn operation(&self, handle: &TOperationHandle, caller: &Owner) -> Option<OperationEntry> {
        let operations = self.operations.lock().expect("operations");
        let op = owned(
            &operations,
            &handle.operation_id,
            |op| &op.client_handle.operation_id.secret,
            |op| &op.session.owner,
            caller,
        )?
        .clone();
        drop(operations);
        op.session.touch();
        Some(op)
    }

    /// The operation behind a client handle sparkgate itself holds (no owner check: for its
    /// own timers, never for a client's call).
    pub fn operation_for_gateway(&self, handle: &TOperationHandle) -> Option<OperationEntry> {
        let key = key_of(&handle.operation_id)?;
        self.operations
            .lock()
            .expect("operations")
            .get(&key)
            .cloned()
    }

    /// Statements counted as running whose driver address `pick` chooses.
    pub fn running_on(&self, pick: impl Fn(&str) -> bool) -> Vec<OperationEntry> {
        let operations = self.operations.lock().expect("operations");
        operations
            .values()
            .filter(|op| op.running && op.final_status.is_none() && pick(&op.session.backend_addr))
            .cloned()
            .collect()
    }

    /// Statements still running past their session's `max_query_time`, each noted as
    /// cancelled for it (with `why(tenant, limit)`) and returned once, for sparkgate to cancel.
    pub fn take_overdue(
        &self,
        why: impl Fn(&str, std::time::Duration) -> String,
    ) -> Vec<OperationEntry> {
        let mut operations = self.operations.lock().expect("operations");
        operations
            .values_mut()
            .filter_map(|op| {
                let limit = op.session.max_query_time?;
                let overdue = op.running
                    && op.final_status.is_none()
                    && op.cancelled_by_limit.is_none()
                    && op.started.elapsed() > limit;
                overdue.then(|| {
                    op.cancelled_by_limit = Some(why(&op.session.tenant, limit));
                    op.clone()
                })
            })
            .collect()
    }

    /// Remembers (or, with `None`, forgets) the final status reply of an operation.
    pub fn set_final_status(&self, handle: &TOperationHandle, reply: Option<Bytes>) {
        if let Some(key) = key_of(&handle.operation_id) {
            if let Some(op) = self.operations.lock().expect("operations").get_mut(&key) {
                if reply.is_some() {
                    op.settle();
                }
                op.final_status = reply;
            }
        }
    }

    pub fn remove_operation(
        &self,
        handle: &TOperationHandle,
        caller: &Owner,
    ) -> Option<OperationEntry> {
        let op = self.operation(handle, caller)?;
        if let Some(mut removed) = self
            .operations
            .lock()
            .expect("operations")
            .remove(&key_of(&handle.operation_id)?)
        {
            removed.settle();
            removed.session.release_operation();
        }
        Some(op)
    }
}

mod moves;
mod quiet;
mod session;
#[cfg(test)]
mod tests;

pub use session::{OperationPlace, Session};
