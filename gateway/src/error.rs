//! Gateway errors, and the one place they become an HS2 `TStatus`.

use hive_thrift::client::ClientError;
use hive_thrift::generated::tcliservice::{TStatus, TStatusCode};
use sparkgate_auth::{clip, AuthError};

use crate::pool::PoolError;
use crate::tenant::TenantError;

/// Whose fault an error is; decides the SQLSTATE class and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something we refuse (unknown handle, limit reached).
    Client,
    /// The Spark Thrift Server is unreachable, failed or timed out.
    Backend,
    /// A bug or resource problem inside sparkgate.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "Invalid {kind} handle: unknown, already closed, or opened by another connection or user"
    )]
    UnknownHandle { kind: &'static str },
    #[error("{0}")]
    Tenant(#[from] TenantError),
    #[error("{0}")]
    Pool(#[from] PoolError),
    #[error("authentication failed: {0}")]
    Auth(AuthError),
    #[error("user {:?} may not open sessions as another user ({:?}): hive.server2.proxy.user is for sparkgate administrators", clip(.user).to_string(), clip(.proxy_user).to_string())]
    ProxyUserRefused { user: String, proxy_user: String },
    #[error("this connection already holds {max} sessions (server.max_sessions_per_connection); close one first")]
    TooManySessions { max: usize },
    #[error("this session already holds {max} open operations (server.max_operations_per_session); close some (CloseOperation) first")]
    TooManyOperations { max: usize },
    #[error("sparkgate refused the statement for tenant {tenant:?}: {refusal}")]
    Refused {
        tenant: String,
        refusal: crate::tenant::statements::Refusal,
    },
    #[error("sparkgate cannot reach the Spark Thrift Server at {addr}: {detail}. Check that it is running and that backend.address is right; then retry")]
    BackendUnreachable { addr: String, detail: String },
    #[error("the Spark Thrift Server at {addr} did not answer {method} within {secs} s (backend.{setting}); the session is lost, open a new one")]
    BackendTimeout {
        addr: String,
        method: &'static str,
        secs: u64,
        setting: &'static str,
    },
    #[error("all {max} connections to the Spark Thrift Server at {addr} stayed busy for the whole call deadline (backend.max_connections_per_driver); try again, or ask an administrator to raise the limit")]
    BackendBusy { addr: String, max: usize },
    #[error("connection to the Spark Thrift Server at {addr} failed during {method}: {detail}. The session is lost; open a new one")]
    BackendLost {
        addr: String,
        method: &'static str,
        detail: String,
    },
    #[error("{}", session_moved(.from, .to))]
    SessionMoved { from: String, to: String },
    #[error("the driver at {addr} was lost and the session could not move to another driver: {detail}. The session is closed; open a new one")]
    SessionNotMoved { addr: String, detail: String },
    #[error("the driver at {addr} this session ran on is gone (if another sparkgate replica moved the session to a new driver, that replica alone serves it now); open a new session")]
    DriverGone { addr: String },
    #[error("this statement's result or place in the queue is held by the sparkgate replica that started it, which this call did not reach; run the statement again")]
    NotHere,
    #[error("{0}")]
    BadSessionSetting(String),
    #[error("the client went away; its statement was cancelled on the driver")]
    ClientGone,
    #[error("the driver at {addr} did not finish the statement within {secs} s (backend.execute_timeout); sparkgate cancelled it")]
    StatementTimeout { addr: String, secs: u64 },
    #[error("internal error: tenant {tenant:?} has no driver pool")]
    NoPool { tenant: String },
    #[error("{0}")]
    Admission(#[from] AdmissionError),
    #[error("the statement has not run: {0}")]
    NotRun(String),
}

fn session_moved(from: &str, to: &str) -> String {
    let opened = if from == to {
        format!("the session's connection to the driver at {from} was lost; the session was opened again on that driver")
    } else {
        format!("the driver at {from} was lost; the session moved to another driver ({to})")
    };
    format!("{opened} with its database, settings and temporary views, and the statement did not complete: retry it")
}

/// How to retry an OpenSession a driver failed (see [`GatewayError::open_session_retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenSessionRetry {
    /// Take the driver out of placement and try another.
    OtherDriver,
    /// Wait one reconcile pass and try again.
    AfterAPause,
}

impl GatewayError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::UnknownHandle { .. }
            | Self::TooManySessions { .. }
            | Self::TooManyOperations { .. }
            | Self::Refused { .. }
            | Self::Tenant(_)
            | Self::ProxyUserRefused { .. }
            | Self::BadSessionSetting(_)
            | Self::Admission(_)
            | Self::NotRun(_)
            | Self::NotHere
            | Self::ClientGone => Fault::Client,
            Self::Auth(AuthError::Unavailable(_) | AuthError::Busy) => Fault::Backend,
            Self::Auth(_) => Fault::Client,
            Self::BackendUnreachable { .. }
            | Self::BackendTimeout { .. }
            | Self::BackendLost { .. }
            | Self::BackendBusy { .. }
            | Self::StatementTimeout { .. }
            | Self::SessionMoved { .. }
            | Self::SessionNotMoved { .. }
            | Self::DriverGone { .. }
            | Self::Pool(_) => Fault::Backend,
            Self::NoPool { .. } => Fault::Internal,
        }
    }

    /// What placing a new session may do after this error from a driver's OpenSession: no
    /// session exists yet on the driver in either case, so trying again is safe.
    pub fn open_session_retry(&self) -> Option<OpenSessionRetry> {
        match self {
            // The driver refused the connection: dead, or not what the pool thinks.
            Self::BackendUnreachable { .. } => Some(OpenSessionRetry::OtherDriver),
            // The connection broke mid-call: a driver dying, or one still starting behind a
            // reused address.
            Self::BackendLost { .. } => Some(OpenSessionRetry::AfterAPause),
            _ => None,
        }
    }

    /// The driver this says is gone (its process, or the session on it), if it says so.
    pub fn lost_driver(&self) -> Option<&str> {
        match self {
            Self::BackendLost { addr, .. } | Self::BackendUnreachable { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Whether the same request could succeed if tried again later.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::BackendUnreachable { .. }
                | Self::BackendBusy { .. }
                | Self::Pool(_)
                | Self::TooManySessions { .. }
                | Self::TooManyOperations { .. }
                | Self::Admission(_)
                | Self::SessionMoved { .. }
                | Self::Auth(
                    AuthError::Unavailable(_) | AuthError::Throttled { .. } | AuthError::Busy
                )
        )
    }

    /// SQLSTATE: 08xxx for connection problems (JDBC tools treat those as "reconnect"),
    /// HY000 otherwise.
    fn sql_state(&self) -> &'static str {
        match self {
            Self::BackendUnreachable { .. } | Self::Pool(_) | Self::BackendBusy { .. } => "08001",
            Self::BackendTimeout { .. } | Self::BackendLost { .. } => "08S01",
            Self::SessionNotMoved { .. } | Self::DriverGone { .. } => "08S01",
            // "transaction rollback": retry the statement. Not 08xxx, which connection pools
            // (HikariCP) take for a dead connection and drop, and the moved session with it.
            Self::SessionMoved { .. } => "40001",
            Self::StatementTimeout { .. } => "HYT00",
            Self::Admission(AdmissionError::Timeout { .. }) => "HYT00",
            // "insufficient resources"
            Self::Admission(AdmissionError::QueueFull { .. }) => "53000",
            Self::NotRun(_) | Self::NotHere => "HY010",
            Self::BadSessionSetting(_) => "42000",
            Self::ClientGone => "08006",
            Self::UnknownHandle { .. }
            | Self::TooManySessions { .. }
            | Self::TooManyOperations { .. }
            | Self::NoPool { .. } => "HY000",
            // "syntax error or access rule violation"
            Self::Refused { .. } => "42000",
            // "invalid authorization specification"
            Self::Tenant(_) | Self::Auth(_) | Self::ProxyUserRefused { .. } => "28000",
        }
    }

    /// The HS2 status a client receives for this error.
    pub fn to_status(&self) -> TStatus {
        TStatus {
            status_code: TStatusCode::ERROR_STATUS,
            info_messages: None,
            sql_state: Some(self.sql_state().to_owned()),
            error_code: Some(match self.fault() {
                Fault::Client => 10_001,
                Fault::Backend => 10_002,
                Fault::Internal => 10_003,
            }),
            error_message: Some(format!("sparkgate: {self}")),
        }
    }

    /// Maps a failed backend call.
    pub fn from_backend(addr: &str, method: &'static str, error: ClientError) -> Self {
        match error {
            ClientError::Connect { source, .. } => Self::BackendUnreachable {
                addr: addr.to_owned(),
                detail: source.to_string(),
            },
            ClientError::ConnectTimeout { after, .. } => Self::BackendUnreachable {
                addr: addr.to_owned(),
                detail: format!("no connection within {after:?}"),
            },
            ClientError::Sasl(e) => Self::BackendUnreachable {
                addr: addr.to_owned(),
                detail: format!("SASL negotiation failed: {e} (is backend.transport right?)"),
            },
            other => Self::BackendLost {
                addr: addr.to_owned(),
                method,
                detail: other.to_string(),
            },
        }
    }
}

/// Why a tenant's admission control refused a statement (see `session::admission`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    #[error("sparkgate refused the statement: tenant {tenant:?} already has {max} statements queued (max_queued); try again when some have run")]
    QueueFull { tenant: String, max: u32 },
    #[error("sparkgate gave up on the statement: it waited {secs} s in tenant {tenant:?}'s queue for a place on its driver (queue_timeout) while max_running_per_driver = {running} statements ran there; try again later")]
    Timeout {
        tenant: String,
        secs: u64,
        running: u32,
    },
}
