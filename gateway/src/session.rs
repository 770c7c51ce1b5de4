//! The session table of one client connection: which sessions and operations it owns, and the
//! backend handle behind each.
//!
//! Clients only ever see handles sparkgate minted (random guid and secret), never the driver's.
//! A handle is found only in the table of the connection that opened it, and its secret must
//! match too, so a handle copied from elsewhere, guessed or forged is refused, never routed.

use std::collections::HashMap;
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

#[derive(Debug)]
pub struct SessionEntry {
    pub client_handle: TSessionHandle,
    pub backend_handle: TSessionHandle,
    pub user: String,
    pub last_used: Instant,
}

/// What sparkgate remembers of an operation.
#[derive(Debug)]
pub struct OperationEntry {
    pub client_handle: TOperationHandle,
    pub backend_handle: TOperationHandle,
    /// The session the operation belongs to (its guid).
    pub session: HandleId,
    /// Once the driver reported a final state, the encoded GetOperationStatus reply (seqid to be
    /// patched), answered from here: the Hive JDBC driver asks once per fetched row.
    pub final_status: Option<Bytes>,
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

/// Sessions and operations owned by one client connection.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: HashMap<HandleId, SessionEntry>,
    operations: HashMap<HandleId, OperationEntry>,
}

impl SessionTable {
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// Registers a session the backend opened; returns the handle to give the client.
    pub fn add_session(&mut self, backend_handle: TSessionHandle, user: String) -> TSessionHandle {
        let client_handle = TSessionHandle {
            session_id: mint_identifier(),
        };
        let key = key_of(&client_handle.session_id).expect("minted guid has 16 bytes");
        self.sessions.insert(
            key,
            SessionEntry {
                client_handle: client_handle.clone(),
                backend_handle,
                user,
                last_used: Instant::now(),
            },
        );
        client_handle
    }

    /// The session behind a client handle, if this connection owns it; marks it used.
    pub fn session_mut(&mut self, handle: &TSessionHandle) -> Option<&mut SessionEntry> {
        let entry = self.sessions.get_mut(&key_of(&handle.session_id)?)?;
        if entry.client_handle.session_id.secret != handle.session_id.secret {
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry)
    }

    /// Removes a session and its operations.
    pub fn remove_session(&mut self, handle: &TSessionHandle) -> Option<SessionEntry> {
        let key = key_of(&handle.session_id)?;
        let owned = self
            .sessions
            .get(&key)
            .is_some_and(|e| e.client_handle.session_id.secret == handle.session_id.secret);
        if !owned {
            return None;
        }
        self.operations.retain(|_, op| op.session != key);
        self.sessions.remove(&key)
    }

    /// Sessions unused since before `cutoff`, removed from the table.
    pub fn take_idle(&mut self, cutoff: Instant) -> Vec<SessionEntry> {
        let idle: Vec<TSessionHandle> = self
            .sessions
            .values()
            .filter(|e| e.last_used < cutoff)
            .map(|e| e.client_handle.clone())
            .collect();
        idle.iter().filter_map(|h| self.remove_session(h)).collect()
    }

    /// Every session, removed from the table (connection end, shutdown).
    pub fn take_all(&mut self) -> Vec<SessionEntry> {
        self.operations.clear();
        self.sessions.drain().map(|(_, e)| e).collect()
    }

    /// Registers an operation the backend started in `session`; returns the client's handle.
    pub fn add_operation(
        &mut self,
        session: &TSessionHandle,
        backend_handle: TOperationHandle,
    ) -> TOperationHandle {
        let client_handle = TOperationHandle {
            operation_id: mint_identifier(),
            ..backend_handle.clone()
        };
        let key = key_of(&client_handle.operation_id).expect("minted guid has 16 bytes");
        let session = key_of(&session.session_id).expect("session handle was looked up");
        self.operations.insert(
            key,
            OperationEntry {
                client_handle: client_handle.clone(),
                backend_handle,
                session,
                final_status: None,
            },
        );
        client_handle
    }

    /// The operation behind a client handle, if this connection owns it; marks its session used.
    pub fn operation_mut(&mut self, handle: &TOperationHandle) -> Option<&mut OperationEntry> {
        let op = self.operations.get_mut(&key_of(&handle.operation_id)?)?;
        if op.client_handle.operation_id.secret != handle.operation_id.secret {
            return None;
        }
        if let Some(session) = self.sessions.get_mut(&op.session) {
            session.last_used = Instant::now();
        }
        Some(op)
    }

    pub fn remove_operation(&mut self, handle: &TOperationHandle) -> Option<OperationEntry> {
        self.operation_mut(handle)?;
        self.operations.remove(&key_of(&handle.operation_id)?)
    }
}

#[cfg(test)]
mod tests;
