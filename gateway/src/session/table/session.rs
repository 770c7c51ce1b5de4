//! One open session: who owns it, its place on a driver, and what it has set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hive_thrift::generated::tcliservice::TSessionHandle;

use super::{display_id, Owner};

/// One open session.
#[derive(Debug)]
pub struct Session {
    pub client_handle: TSessionHandle,
    pub owner: Owner,
    /// The user the driver runs the session as.
    pub user: String,
    pub tenant: String,
    /// The tenant's statement switches, checked before a statement reaches the driver.
    pub rules: crate::tenant::statements::StatementRules,
    /// The driver's address, and its handle for this session.
    pub backend_addr: String,
    pub backend_handle: TSessionHandle,
    /// Its place on a pooled driver, given back when the session ends.
    pub lease: Option<crate::pool::DriverLease>,
    /// The client's family: which answers it reads in which shape.
    pub family: crate::session::client::ClientFamily,
    /// Errors go to this session's client without Java stack frames or plans.
    pub concise_errors: bool,
    /// The tenant's `max_query_time`: a statement running longer is cancelled.
    pub max_query_time: Option<std::time::Duration>,
    /// The driver's Spark UI, where statements' progress is read.
    pub spark_ui: Option<crate::driver::progress::SparkUi>,
    /// The tenant's result cache TTL (`None`: its results are not cached), and who shares them
    /// (the user, or empty for the whole tenant).
    pub cache_ttl: Option<std::time::Duration>,
    pub cache_scope: String,
    /// Who logged in, from where, over what (the audit log's fields).
    pub origin: crate::audit::Origin,
    cache_state: Mutex<crate::session::cache::SessionCacheState>,
    /// Where the session goes when its client closes it, if it may be reused.
    pub reuse: Option<
        Box<(
            crate::session::stock::StockKey,
            hive_thrift::generated::tcliservice::TOpenSessionResp,
        )>,
    >,
    /// Operations it holds open, and those being started (counted before the driver is asked,
    /// so concurrent starts cannot pass `server.max_operations_per_session` together).
    open_operations: AtomicUsize,
    state: Mutex<SessionState>,
    /// What it needs to be opened again elsewhere with the same state, when its tenant moves
    /// sessions off lost drivers.
    pub replay: Option<Mutex<crate::session::replay::ReplayLog>>,
    /// Held while the session moves to another driver: one move, however many calls failed.
    pub moving: tokio::sync::Mutex<()>,
    /// An HTTP session's state as its sealed handle carries it (see [`crate::session::sealed`]).
    pub sealed: Option<crate::session::sealed::SealedSession>,
}

/// An operation place [`Session::reserve_operation`] took; given back when dropped, unless an
/// operation took it ([`OperationPlace::keep`]).
#[derive(Debug)]
pub struct OperationPlace<'a> {
    session: &'a Session,
    kept: bool,
}

impl OperationPlace<'_> {
    /// The place now belongs to a registered operation; removing it gives the place back.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OperationPlace<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.session.release_operation();
        }
    }
}

#[derive(Debug)]
struct SessionState {
    last_used: Instant,
    /// When a shared HTTP session quiet here was last checked on its driver.
    checked: Option<Instant>,
    /// Why the backend connection failed, once it has.
    lost: Option<String>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client_handle: TSessionHandle,
        owner: Owner,
        user: String,
        tenant: String,
        backend_addr: String,
        backend_handle: TSessionHandle,
    ) -> Self {
        Self {
            client_handle,
            owner,
            user,
            tenant,
            rules: Default::default(),
            backend_addr,
            backend_handle,
            lease: None,
            family: crate::session::client::ClientFamily::Jdbc,
            concise_errors: false,
            max_query_time: None,
            spark_ui: None,
            cache_ttl: None,
            cache_scope: String::new(),
            origin: Default::default(),
            cache_state: Mutex::default(),
            reuse: None,
            open_operations: AtomicUsize::new(0),
            state: Mutex::new(SessionState {
                last_used: Instant::now(),
                checked: None,
                lost: None,
            }),
            replay: None,
            moving: tokio::sync::Mutex::new(()),
            sealed: None,
        }
    }

    /// The same session, opened again on another driver (its state is replayed there).
    pub fn moved_to(
        &self,
        backend_addr: String,
        backend_handle: TSessionHandle,
        lease: Option<crate::pool::DriverLease>,
    ) -> Session {
        let replay = self
            .replay
            .as_ref()
            .map(|log| Mutex::new(log.lock().expect("replay log").clone()));
        let spark_ui = lease.as_ref().and_then(crate::session::open::spark_ui_of);
        Session {
            client_handle: self.client_handle.clone(),
            owner: self.owner.clone(),
            user: self.user.clone(),
            tenant: self.tenant.clone(),
            rules: self.rules.clone(),
            backend_addr,
            backend_handle,
            lease,
            family: self.family,
            concise_errors: self.concise_errors,
            max_query_time: self.max_query_time,
            spark_ui,
            cache_ttl: self.cache_ttl,
            cache_scope: self.cache_scope.clone(),
            origin: self.origin.clone(),
            cache_state: Mutex::new(self.cache_state().clone()),
            // A moved session is not kept for reuse: its driver session is younger than its
            // settings.
            reuse: None,
            open_operations: AtomicUsize::new(0),
            state: Mutex::new(SessionState {
                last_used: Instant::now(),
                checked: None,
                lost: None,
            }),
            replay,
            moving: tokio::sync::Mutex::new(()),
            // Its handle still names the lost driver: other replicas cannot take it in.
            sealed: None,
        }
    }

    /// Notes a statement that finished on the driver, for a replay elsewhere.
    pub fn remember(&self, sql: &str) {
        if let Some(log) = &self.replay {
            log.lock().expect("replay log").remember(sql);
        }
    }

    /// The same driver session for another client: its handle and owner, fresh counters.
    pub fn rehome(self, client_handle: TSessionHandle, owner: Owner) -> Session {
        Session {
            client_handle,
            owner,
            open_operations: AtomicUsize::new(0),
            state: Mutex::new(SessionState {
                last_used: Instant::now(),
                checked: None,
                lost: None,
            }),
            ..self
        }
    }

    /// Operations open now.
    pub fn open_operation_count(&self) -> usize {
        self.open_operations.load(Ordering::Acquire)
    }

    pub fn id(&self) -> String {
        display_id(&self.client_handle.session_id)
    }

    /// A place for one more open operation, unless the session holds `max` already.
    pub fn reserve_operation(&self, max: usize) -> Option<OperationPlace<'_>> {
        self.open_operations
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(OperationPlace {
            session: self,
            kept: false,
        })
    }

    pub(super) fn release_operation(&self) {
        let _ = self
            .open_operations
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub(super) fn touch(&self) {
        self.state.lock().expect("session state").last_used = Instant::now();
    }

    /// Whether the session is due a check on its driver: unused here since `cutoff`, and not
    /// checked since either. A due session is noted as checked now (one check per period).
    pub(super) fn take_check(&self, cutoff: Instant) -> bool {
        let mut state = self.state.lock().expect("session state");
        let due = state.last_used < cutoff && state.checked.is_none_or(|at| at < cutoff);
        if due {
            state.checked = Some(Instant::now());
        }
        due
    }

    pub(super) fn last_used(&self) -> Instant {
        self.state.lock().expect("session state").last_used
    }

    /// How long since the session's last call.
    pub fn idle_for(&self) -> std::time::Duration {
        self.last_used().elapsed()
    }

    /// Why the session's backend connection failed, if it has.
    pub fn lost_reason(&self) -> Option<String> {
        self.state.lock().expect("session state").lost.clone()
    }

    /// What the session has set that cached results depend on.
    pub fn cache_state(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::session::cache::SessionCacheState> {
        self.cache_state.lock().expect("cache state")
    }

    pub fn set_cache_state(&self, state: crate::session::cache::SessionCacheState) {
        *self.cache_state() = state;
    }

    pub fn mark_lost(&self, reason: &str) {
        self.state.lock().expect("session state").lost = Some(reason.to_owned());
    }
}
