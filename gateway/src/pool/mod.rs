//! A tenant's pool of drivers started by a launcher: drivers move Starting → Ready → Draining →
//! gone (or Failed); a new session goes to the Ready driver with the fewest running operations,
//! then the fewest sessions, and stays there for life; when no driver can take a session, it
//! waits (bounded, with a deadline) while one starts. A reconcile loop adopts drivers the
//! launcher lists (a previous run's, or another replica's), applies the autoscaler's decisions
//! (only where this replica leads), replaces dead drivers and drains idle ones.

mod adoption;
pub mod autoscale;
pub mod leader;
pub mod metrics;
mod reconcile;
pub mod replicas;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tracing::warn;

use crate::launcher::{DriverSpec, LaunchedDriver, Launcher};
use autoscale::ScalingPolicy;
pub use metrics::PoolMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverState {
    Starting,
    Ready,
    Draining,
    Failed,
}

impl DriverState {
    pub const ALL: [DriverState; 4] = [Self::Starting, Self::Ready, Self::Draining, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Failed => "failed",
        }
    }
}

struct Driver {
    launched: LaunchedDriver,
    state: DriverState,
    /// Sessions placed on it and their running operations; shared with the sessions' leases.
    load: Arc<DriverLoad>,
    /// When it last had no session (for the idle TTL); `None` while it has some.
    idle_since: Option<Instant>,
    draining_since: Option<Instant>,
}

impl Driver {
    /// A session's place on it, reached at `address`.
    fn lease(&self, address: &str) -> DriverLease {
        self.load.sessions.fetch_add(1, Ordering::Relaxed);
        DriverLease {
            driver_id: self.launched.id.clone(),
            address: address.to_owned(),
            secret: self.launched.secret.clone(),
            ui: self.launched.ui.clone(),
            load: self.load.clone(),
        }
    }
}

/// A view of a driver for the admin API and logs.
#[derive(Debug, Clone, Serialize)]
pub struct DriverView {
    pub id: String,
    pub tenant: String,
    pub address: String,
    pub state: DriverState,
    pub sessions: u32,
    pub running_operations: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no driver of tenant {tenant:?} could take the session within {secs} s (drivers are starting or full); try again shortly")]
    Timeout { tenant: String, secs: u64 },
    #[error("tenant {tenant:?} already has {max} sessions waiting for a driver (pool queue full); try again shortly")]
    QueueFull { tenant: String, max: u32 },
    #[error("cannot reach the Spark Thrift Server at {addresses} (tenant {tenant:?}'s fixed backends): none accepts connections. Check that it is running and that the tenant's backends (or backend.address) are right; then retry")]
    Unreachable { tenant: String, addresses: String },
}

/// What runs on one driver, counted by the sessions placed on it.
#[derive(Debug, Default)]
pub struct DriverLoad {
    sessions: AtomicU32,
    operations: AtomicU32,
    /// Statements of its sessions waiting in the tenant's admission queue.
    queued: AtomicU32,
    /// Why the driver failed, once it has: its sessions' next calls say so at once.
    failure: Mutex<Option<String>>,
}

impl DriverLoad {
    fn sessions(&self) -> u32 {
        self.sessions.load(Ordering::Relaxed)
    }

    fn operations(&self) -> u32 {
        self.operations.load(Ordering::Relaxed)
    }

    /// What placement weighs: running and queued statements.
    fn busy(&self) -> u32 {
        self.operations() + self.queued.load(Ordering::Relaxed)
    }

    fn fail(&self, reason: &str) {
        self.failure
            .lock()
            .expect("driver load")
            .get_or_insert_with(|| reason.to_owned());
    }
}

/// A session's place on a driver; gives it back when the session ends.
#[derive(Debug)]
pub struct DriverLease {
    pub driver_id: String,
    pub address: String,
    /// What sparkgate's connections to the driver log in with.
    pub secret: crate::launcher::DriverSecret,
    /// The driver's Spark UI, if sparkgate may read it.
    pub ui: Option<String>,
    load: Arc<DriverLoad>,
}

impl DriverLease {
    /// Why the session's driver failed, if it has.
    pub fn driver_failure(&self) -> Option<String> {
        self.load.failure.lock().expect("driver load").clone()
    }

    /// An operation of the session started on the driver.
    pub fn operation_started(&self) {
        self.load.operations.fetch_add(1, Ordering::Relaxed);
    }

    /// An operation counted by [`DriverLease::operation_started`] reached a final state or was
    /// closed.
    pub fn operation_ended(&self) {
        let _ = self
            .load
            .operations
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// A statement of a session on the driver waits in the admission queue while this lives.
#[derive(Debug)]
pub struct QueuedMark(Arc<DriverLoad>);

impl DriverLease {
    /// Counts a statement waiting for a place on the driver (placement avoids busy drivers).
    pub fn statement_queued(&self) -> QueuedMark {
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        QueuedMark(self.load.clone())
    }
}

impl Drop for QueuedMark {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for DriverLease {
    fn drop(&mut self) {
        self.load.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A session's place in a pool's wait queue; leaving (placed, timed out or cancelled) lets the
/// next one try.
struct QueueTicket<'a> {
    pool: &'a DriverPool,
    ticket: u64,
}

impl<'a> QueueTicket<'a> {
    fn join(pool: &'a DriverPool) -> Self {
        let ticket = pool.next_ticket.fetch_add(1, Ordering::Relaxed);
        pool.queue.lock().expect("pool").push_back(ticket);
        pool.waiting.fetch_add(1, Ordering::Relaxed);
        Self { pool, ticket }
    }

    fn is_first(&self) -> bool {
        self.pool.queue.lock().expect("pool").front() == Some(&self.ticket)
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.pool
            .queue
            .lock()
            .expect("pool")
            .retain(|t| *t != self.ticket);
        self.pool.waiting.fetch_sub(1, Ordering::Relaxed);
        self.pool.ready.notify_waiters();
    }
}

/// Pool limits that are not scaling policy.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub max_sessions_per_driver: u32,
    pub max_waiting: u32,
    pub wait_timeout: Duration,
    pub drain_grace: Duration,
    /// How often the pool reconciles (and a waiting session looks again).
    pub reconcile_every: Duration,
}

pub struct DriverPool {
    tenant: String,
    spec: DriverSpec,
    policy: ScalingPolicy,
    limits: PoolLimits,
    launcher: Arc<dyn Launcher>,
    drivers: Mutex<Vec<Driver>>,
    /// Whether this replica makes scaling decisions (it leads, or it is alone).
    leading: Arc<AtomicBool>,
    /// Drivers being stopped: still listed by the launcher, but not to be adopted again.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// Its background work (drivers starting, drivers stopping), joined by [`DriverPool::stop_all`].
    tasks: tokio_util::task::TaskTracker,
    /// Sessions waiting for a driver.
    pub waiting: AtomicU32,
    /// Statements waiting in the tenant's admission queue (load, like waiting sessions).
    pub queued_statements: Arc<AtomicU32>,
    /// Their tickets, in arrival order: the first places next.
    queue: Mutex<std::collections::VecDeque<u64>>,
    next_ticket: std::sync::atomic::AtomicU64,
    metrics: PoolMetrics,
    ready: Notify,
    overloaded_since: Mutex<Option<Instant>>,
    underloaded_since: Mutex<Option<Instant>>,
    /// What the other replicas carry for this tenant (read while this replica leads).
    others: Mutex<replicas::TenantLoad>,
}

impl std::fmt::Debug for DriverPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverPool")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl DriverPool {
    pub fn new(
        spec: DriverSpec,
        policy: ScalingPolicy,
        limits: PoolLimits,
        launcher: Arc<dyn Launcher>,
        metrics: PoolMetrics,
        leading: Arc<AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            leading,
            stopping: Arc::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            metrics,
            tenant: spec.tenant.clone(),
            spec,
            policy,
            limits,
            launcher,
            drivers: Mutex::new(Vec::new()),
            waiting: AtomicU32::new(0),
            queued_statements: Arc::default(),
            queue: Mutex::default(),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
            ready: Notify::new(),
            overloaded_since: Mutex::new(None),
            underloaded_since: Mutex::new(None),
            others: Mutex::default(),
        })
    }

    pub fn drivers(&self) -> Vec<DriverView> {
        self.drivers
            .lock()
            .expect("pool")
            .iter()
            .map(|d| DriverView {
                id: d.launched.id.clone(),
                tenant: self.tenant.clone(),
                address: d.launched.address.clone(),
                state: d.state,
                sessions: d.load.sessions(),
                running_operations: d.load.operations(),
            })
            .collect()
    }

    fn try_place(&self) -> Option<DriverLease> {
        let drivers = self.drivers.lock().expect("pool");
        let best = drivers
            .iter()
            .filter(|d| d.state == DriverState::Ready)
            .filter(|d| d.load.sessions() < self.limits.max_sessions_per_driver)
            .min_by_key(|d| (d.load.busy(), d.load.sessions()))?;
        Some(best.lease(&best.launched.address))
    }

    /// A place for a new session: at once on a Ready driver with room, else after waiting
    /// (bounded) for one to start. `on_wait` runs once if the session has to wait (cold start).
    ///
    /// # Cancel safety
    /// Cancel-safe: a session that gives up waiting leaves the queue (its ticket's drop) and
    /// holds no place on a driver.
    pub async fn acquire(&self, on_wait: impl FnOnce()) -> Result<DriverLease, PoolError> {
        // First come, first served: a newcomer goes ahead only when nobody waits.
        if self.queue.lock().expect("pool").is_empty() {
            if let Some(lease) = self.try_place() {
                return Ok(lease);
            }
        }
        if !self.launcher.scales() {
            // No driver will start for it: waiting would only delay the answer.
            return Err(self.unreachable().await);
        }
        if self.waiting.load(Ordering::Relaxed) >= self.limits.max_waiting {
            return Err(PoolError::QueueFull {
                tenant: self.tenant.clone(),
                max: self.limits.max_waiting,
            });
        }
        on_wait();
        let waited = Instant::now();
        let ticket = QueueTicket::join(self);
        let deadline = tokio::time::Instant::now() + self.limits.wait_timeout;
        let result = loop {
            let notified = self.ready.notified();
            if ticket.is_first() {
                if let Some(lease) = self.try_place() {
                    break Ok(lease);
                }
            }
            // Also look again now and then: a session ending frees a place without a notice.
            let wake = (tokio::time::Instant::now() + self.limits.reconcile_every).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                break Err(PoolError::Timeout {
                    tenant: self.tenant.clone(),
                    secs: self.limits.wait_timeout.as_secs(),
                });
            }
        };
        drop(ticket);
        if let Some(histogram) = &self.metrics.wait_seconds {
            histogram.observe(waited.elapsed().as_secs_f64());
        }
        result
    }

    /// Fixed servers (static launcher), none of which accepts connections now. Their sessions
    /// per server are not bounded (`pools.max_sessions_per_driver` is for drivers sparkgate
    /// runs), so a place is missing only when no server is ready.
    async fn unreachable(&self) -> PoolError {
        let listed = self.launcher.list().await;
        let addresses: Vec<&str> = listed
            .iter()
            .filter(|(d, _)| d.tenant == self.tenant)
            .map(|(d, _)| d.address.as_str())
            .collect();
        PoolError::Unreachable {
            tenant: self.tenant.clone(),
            addresses: addresses.join(", "),
        }
    }

    /// Whether the pool starts and stops its drivers (not a static tenant's fixed servers).
    pub fn scales(&self) -> bool {
        self.launcher.scales()
    }

    /// Whether this replica makes scaling decisions.
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Takes a driver that refused a connection out of placement at once, without waiting for
    /// the reconcile loop to notice its process is gone.
    pub fn mark_failed(&self, id: &str) {
        let mut drivers = self.drivers.lock().expect("pool");
        if let Some(d) = drivers.iter_mut().find(|d| d.launched.id == id) {
            if d.state != DriverState::Failed {
                warn!(tenant = %self.tenant, driver = %id, "driver refused a connection; taking it out of placement");
                d.load.fail(&format!("driver {id} refused connections"));
                d.state = DriverState::Failed;
                self.metrics.launch_failures.inc();
            }
        }
    }

    /// Marks a driver Draining (admin API); `false` if the pool has no such driver.
    pub fn drain(&self, id: &str) -> bool {
        let mut drivers = self.drivers.lock().expect("pool");
        match drivers.iter_mut().find(|d| d.launched.id == id) {
            Some(d) => {
                d.state = DriverState::Draining;
                d.draining_since = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Stops every driver (shutdown, when drivers are not kept for the next run), and waits for
    /// stops already under way. Call it after [`DriverPool::run`] has returned, so no reconcile
    /// pass launches a driver behind it.
    ///
    /// # Cancel safety
    /// Not cancel-safe: drivers are taken out of the pool first; those not yet stopped when it
    /// is dropped keep running, for the next run to adopt.
    pub async fn stop_all(&self) {
        let drivers: Vec<LaunchedDriver> = self
            .drivers
            .lock()
            .expect("pool")
            .drain(..)
            .map(|d| d.launched)
            .collect();
        futures::future::join_all(drivers.iter().map(|d| self.launcher.stop(d))).await;
        self.join_background().await;
    }

    /// Waits for the pool's background work: drivers being stopped, and starts being watched
    /// (which end when their driver is ready, fails or is stopped).
    pub async fn join_background(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}
