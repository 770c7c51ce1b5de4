//! A tenant's pool of drivers started by the local launcher: drivers move Starting → Ready →
//! Draining → gone (or Failed); new sessions go to the Ready driver with the fewest sessions; a
//! session stays on its driver for life; when no driver can take a session, it waits (bounded,
//! with a deadline) while one starts. A reconcile loop applies the autoscaler's decisions,
//! replaces dead drivers and drains idle ones.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::autoscale::{decide, overloaded, Decision, Observed, ScalingPolicy};
use crate::launcher::{DriverSpec, LaunchedDriver, LocalLauncher};

/// How often a pool looks at its drivers and load.
pub const RECONCILE_EVERY: Duration = Duration::from_millis(500);

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

/// A pool's handles on the metrics it feeds (see `admin::Metrics`).
#[derive(Clone, Default)]
pub struct PoolMetrics {
    pub launches: prometheus_client::metrics::counter::Counter,
    pub launch_failures: prometheus_client::metrics::counter::Counter,
    pub scale_ups: prometheus_client::metrics::counter::Counter,
    pub scale_downs: prometheus_client::metrics::counter::Counter,
    pub wait_seconds: Option<prometheus_client::metrics::histogram::Histogram>,
}

struct Driver {
    launched: LaunchedDriver,
    state: DriverState,
    /// Sessions placed on it; shared with their leases.
    sessions: Arc<AtomicU32>,
    /// When it last had no session (for the idle TTL); `None` while it has some.
    idle_since: Option<Instant>,
    draining_since: Option<Instant>,
}

/// A view of a driver for the admin API and logs.
#[derive(Debug, Clone, Serialize)]
pub struct DriverView {
    pub id: String,
    pub tenant: String,
    pub address: String,
    pub state: DriverState,
    pub sessions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no driver of tenant {tenant:?} could take the session within {secs} s (drivers are starting or full); try again shortly")]
    Timeout { tenant: String, secs: u64 },
    #[error("tenant {tenant:?} already has {max} sessions waiting for a driver (pool queue full); try again shortly")]
    QueueFull { tenant: String, max: u32 },
}

/// A session's place on a driver; gives it back when the session ends.
#[derive(Debug)]
pub struct DriverLease {
    pub driver_id: String,
    pub address: String,
    sessions: Arc<AtomicU32>,
}

impl Drop for DriverLease {
    fn drop(&mut self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Pool limits that are not scaling policy.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub max_sessions_per_driver: u32,
    pub max_waiting: u32,
    pub wait_timeout: Duration,
    pub drain_grace: Duration,
}

pub struct DriverPool {
    tenant: String,
    spec: DriverSpec,
    policy: ScalingPolicy,
    limits: PoolLimits,
    launcher: Arc<LocalLauncher>,
    drivers: Mutex<Vec<Driver>>,
    /// Sessions waiting for a driver.
    pub waiting: AtomicU32,
    metrics: PoolMetrics,
    ready: Notify,
    overloaded_since: Mutex<Option<Instant>>,
}

impl DriverPool {
    pub fn new(
        spec: DriverSpec,
        policy: ScalingPolicy,
        limits: PoolLimits,
        launcher: Arc<LocalLauncher>,
        metrics: PoolMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            tenant: spec.tenant.clone(),
            spec,
            policy,
            limits,
            launcher,
            drivers: Mutex::new(Vec::new()),
            waiting: AtomicU32::new(0),
            ready: Notify::new(),
            overloaded_since: Mutex::new(None),
        })
    }

    /// Takes over drivers a previous run left for this tenant (they are ready if they answer).
    pub async fn adopt(&self) {
        for launched in self.launcher.list() {
            if launched.tenant != self.tenant {
                continue;
            }
            if crate::launcher::probe(&launched.address).await {
                info!(tenant = %self.tenant, driver = %launched.id, "adopted a driver of a previous run");
                self.drivers.lock().expect("pool").push(Driver {
                    launched,
                    state: DriverState::Ready,
                    sessions: Arc::new(AtomicU32::new(0)),
                    idle_since: Some(Instant::now()),
                    draining_since: None,
                });
            } else {
                warn!(tenant = %self.tenant, driver = %launched.id, "a driver of a previous run does not answer; stopping it");
                self.launcher.stop(&launched).await;
            }
        }
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
                sessions: d.sessions.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn try_place(&self) -> Option<DriverLease> {
        let drivers = self.drivers.lock().expect("pool");
        let best = drivers
            .iter()
            .filter(|d| d.state == DriverState::Ready)
            .filter(|d| d.sessions.load(Ordering::Relaxed) < self.limits.max_sessions_per_driver)
            .min_by_key(|d| d.sessions.load(Ordering::Relaxed))?;
        best.sessions.fetch_add(1, Ordering::Relaxed);
        Some(DriverLease {
            driver_id: best.launched.id.clone(),
            address: best.launched.address.clone(),
            sessions: best.sessions.clone(),
        })
    }

    /// A place for a new session: at once on a Ready driver with room, else after waiting
    /// (bounded) for one to start. `on_wait` runs once if the session has to wait (cold start).
    pub async fn acquire(&self, on_wait: impl FnOnce()) -> Result<DriverLease, PoolError> {
        if let Some(lease) = self.try_place() {
            return Ok(lease);
        }
        if self.waiting.load(Ordering::Relaxed) >= self.limits.max_waiting {
            return Err(PoolError::QueueFull {
                tenant: self.tenant.clone(),
                max: self.limits.max_waiting,
            });
        }
        on_wait();
        let waited = Instant::now();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.limits.wait_timeout;
        let result = loop {
            let notified = self.ready.notified();
            if let Some(lease) = self.try_place() {
                break Ok(lease);
            }
            // Also look again now and then: a session ending frees a place without a notice.
            let wake = (tokio::time::Instant::now() + RECONCILE_EVERY).min(deadline);
            if tokio::time::timeout_at(wake, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                break self.try_place().ok_or(PoolError::Timeout {
                    tenant: self.tenant.clone(),
                    secs: self.limits.wait_timeout.as_secs(),
                });
            }
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(histogram) = &self.metrics.wait_seconds {
            histogram.observe(waited.elapsed().as_secs_f64());
        }
        result
    }

    fn observe(&self, now: Instant) -> Observed {
        let drivers = self.drivers.lock().expect("pool");
        let count = |s| drivers.iter().filter(|d| d.state == s).count() as u32;
        let mut observed = Observed {
            starting: count(DriverState::Starting),
            ready: count(DriverState::Ready),
            running_operations: drivers
                .iter()
                .filter(|d| d.state == DriverState::Ready)
                .map(|d| d.sessions.load(Ordering::Relaxed))
                .sum(),
            queued: self.waiting.load(Ordering::Relaxed),
            overloaded_for: Duration::ZERO,
            idle_drivers: drivers
                .iter()
                .filter(|d| d.state == DriverState::Ready)
                .filter_map(|d| d.idle_since.map(|since| now - since))
                .collect(),
        };
        drop(drivers);
        let mut since = self.overloaded_since.lock().expect("pool");
        if overloaded(&observed, &self.policy) {
            observed.overloaded_for = now - *since.get_or_insert(now);
        } else {
            *since = None;
        }
        observed
    }

    /// One reconcile pass: bookkeeping, failures, then the autoscaler's decision.
    pub async fn reconcile(self: &Arc<Self>) {
        let now = Instant::now();
        let mut to_stop = Vec::new();
        {
            let mut drivers = self.drivers.lock().expect("pool");
            for d in drivers.iter_mut() {
                let sessions = d.sessions.load(Ordering::Relaxed);
                d.idle_since = match (sessions, d.idle_since) {
                    (0, None) => Some(now),
                    (0, since) => since,
                    _ => None,
                };
                if d.state != DriverState::Failed && !self.launcher.is_alive(&d.launched) {
                    warn!(tenant = %self.tenant, driver = %d.launched.id, "driver process died");
                    d.state = DriverState::Failed;
                    self.metrics.launch_failures.inc();
                }
                let drained = d.state == DriverState::Draining
                    && (sessions == 0
                        || d.draining_since
                            .is_some_and(|s| now - s >= self.limits.drain_grace));
                if drained || d.state == DriverState::Failed {
                    to_stop.push(d.launched.clone());
                }
            }
            drivers.retain(|d| !to_stop.iter().any(|s| s.id == d.launched.id));
        }
        for launched in to_stop {
            let launcher = self.launcher.clone();
            tokio::spawn(async move { launcher.stop(&launched).await });
        }
        let observed = self.observe(now);
        match decide(&observed, &self.policy) {
            Decision::Hold => {}
            Decision::Launch(n) => {
                info!(tenant = %self.tenant, launch = n, ?observed, "scaling up");
                self.metrics.scale_ups.inc();
                for _ in 0..n {
                    self.launch();
                }
            }
            Decision::DrainOne => {
                let mut drivers = self.drivers.lock().expect("pool");
                if let Some(d) = drivers
                    .iter_mut()
                    .filter(|d| d.state == DriverState::Ready && d.idle_since.is_some())
                    .min_by_key(|d| d.idle_since)
                {
                    info!(tenant = %self.tenant, driver = %d.launched.id, "scaling down: draining an idle driver");
                    self.metrics.scale_downs.inc();
                    d.state = DriverState::Draining;
                    d.draining_since = Some(now);
                }
            }
        }
    }

    fn launch(self: &Arc<Self>) {
        let launched = match self.launcher.start(&self.spec) {
            Ok(launched) => launched,
            Err(e) => {
                warn!(tenant = %self.tenant, error = %e, "driver launch failed");
                self.metrics.launch_failures.inc();
                return;
            }
        };
        self.metrics.launches.inc();
        self.drivers.lock().expect("pool").push(Driver {
            launched: launched.clone(),
            state: DriverState::Starting,
            sessions: Arc::new(AtomicU32::new(0)),
            idle_since: None,
            draining_since: None,
        });
        let pool = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = pool.launcher.wait_ready(&launched).await;
            let mut drivers = pool.drivers.lock().expect("pool");
            if let Some(d) = drivers.iter_mut().find(|d| d.launched.id == launched.id) {
                match result {
                    Ok(()) => {
                        info!(tenant = %pool.tenant, driver = %launched.id, secs = started.elapsed().as_secs_f64(), "driver ready");
                        d.state = DriverState::Ready;
                        d.idle_since = Some(Instant::now());
                    }
                    Err(e) => {
                        warn!(tenant = %pool.tenant, error = %e, "driver failed to start");
                        d.state = DriverState::Failed;
                        pool.metrics.launch_failures.inc();
                    }
                }
            }
            drop(drivers);
            pool.ready.notify_waiters();
        });
    }

    /// Takes a driver that refused a connection out of placement at once, without waiting for
    /// the reconcile loop to notice its process is gone.
    pub fn mark_failed(&self, id: &str) {
        let mut drivers = self.drivers.lock().expect("pool");
        if let Some(d) = drivers.iter_mut().find(|d| d.launched.id == id) {
            if d.state != DriverState::Failed {
                warn!(tenant = %self.tenant, driver = %id, "driver refused a connection; taking it out of placement");
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

    /// Stops every driver (shutdown, when drivers are not kept for the next run).
    pub async fn stop_all(&self) {
        let drivers: Vec<LaunchedDriver> = self
            .drivers
            .lock()
            .expect("pool")
            .drain(..)
            .map(|d| d.launched)
            .collect();
        for d in drivers {
            self.launcher.stop(&d).await;
        }
    }

    /// Runs [`DriverPool::reconcile`] until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reconcile().await,
                _ = stop.cancelled() => return,
            }
        }
    }
}
