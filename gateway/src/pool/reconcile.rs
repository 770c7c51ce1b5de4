//! The reconcile loop of a pool: adopt what the launcher lists, account for failures, and apply
//! the autoscaler's decision (where this replica leads).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::autoscale::{decide, overloaded, underloaded, Decision, Observed};
use super::{Driver, DriverPool, DriverState};
use crate::launcher::{Health, LaunchedDriver};

impl DriverPool {
    pub(super) fn observe(&self, now: Instant) -> Observed {
        // Other replicas' sessions and statements weigh as much as this one's.
        let others = self.others_load();
        let drivers = self.drivers.lock().expect("pool");
        let count = |s| drivers.iter().filter(|d| d.state == s).count() as u32;
        let mut observed = Observed {
            starting: count(DriverState::Starting),
            ready: count(DriverState::Ready),
            running_operations: drivers
                .iter()
                .filter(|d| d.state == DriverState::Ready)
                .map(|d| d.load.operations() + others.on_driver(&d.launched.id).operations)
                .sum(),
            // Statements waiting for a place count as much as sessions waiting for a driver.
            queued: self.waiting.load(Ordering::Relaxed)
                + self.queued_statements.load(Ordering::Relaxed)
                + others.queued,
            overloaded_for: Duration::ZERO,
            underloaded_for: Duration::ZERO,
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
        drop(since);
        let mut since = self.underloaded_since.lock().expect("pool");
        if underloaded(&observed, &self.policy) {
            observed.underloaded_for = now - *since.get_or_insert(now);
        } else {
            *since = None;
        }
        observed
    }

    /// One reconcile pass: adoption, bookkeeping, failures, then (where this replica leads)
    /// the autoscaler's decision.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped during a launch, the driver may have been started without
    /// the pool recording it (the next pass adopts it from the launcher's list). Shutdown joins
    /// the loop instead of dropping it.
    pub async fn reconcile(self: &Arc<Self>) {
        self.adopt().await;
        let leading = self.leading();
        let now = Instant::now();
        let mut to_stop = Vec::new();
        let others = self.others_load();
        {
            let mut drivers = self.drivers.lock().expect("pool");
            for d in drivers.iter_mut() {
                if d.state == DriverState::Ready && others.draining.contains(&d.launched.id) {
                    info!(tenant = %self.tenant, driver = %d.launched.id, "another replica drains this driver; no new sessions on it");
                    d.state = DriverState::Draining;
                    d.draining_since = Some(now);
                }
                let elsewhere = others.on_driver(&d.launched.id);
                let sessions = d.load.sessions() + elsewhere.sessions;
                let idle = sessions == 0 && d.load.operations() + elsewhere.operations == 0;
                d.idle_since = match (idle, d.idle_since) {
                    (true, None) => Some(now),
                    (true, since) => since,
                    (false, _) => None,
                };
                if d.state != DriverState::Failed {
                    if let Health::Dead(reason) = self.launcher.health(&d.launched) {
                        warn!(tenant = %self.tenant, driver = %d.launched.id, %reason, "driver lost");
                        d.load
                            .fail(&format!("driver {} failed: {reason}", d.launched.id));
                        d.state = DriverState::Failed;
                        self.metrics.launch_failures.inc();
                    }
                }
                let drained = d.state == DriverState::Draining
                    && (sessions == 0
                        || d.draining_since
                            .is_some_and(|s| now - s >= self.limits.drain_grace));
                // A follower keeps a driver the leader drains until it is gone (else it would
                // adopt it again as Ready on its next pass).
                if (drained && leading) || d.state == DriverState::Failed {
                    to_stop.push(d.launched.clone());
                }
            }
            drivers.retain(|d| !to_stop.iter().any(|s| s.id == d.launched.id));
        }
        // Another replica's drivers are its to stop; a follower only stops routing to them
        // (the leader's launcher removes them, and they are adopted again if they live on).
        if leading {
            for launched in to_stop {
                self.stop_in_background(launched);
            }
        }
        if !leading || !self.launcher.scales() {
            return;
        }
        let observed = self.observe(now);
        match decide(&observed, &self.policy) {
            Decision::Hold => {}
            Decision::Launch(n) => {
                info!(tenant = %self.tenant, launch = n, ?observed, "scaling up");
                self.metrics.scale_ups.inc();
                for _ in 0..n {
                    self.launch().await;
                }
            }
            Decision::DrainOne => {
                let mut drivers = self.drivers.lock().expect("pool");
                // The longest idle driver, else the least busy one (low load).
                if let Some(d) = drivers
                    .iter_mut()
                    .filter(|d| d.state == DriverState::Ready)
                    .min_by_key(|d| {
                        let elsewhere = others.on_driver(&d.launched.id);
                        (
                            d.idle_since.is_none(),
                            d.idle_since,
                            d.load.operations() + elsewhere.operations,
                            d.load.sessions() + elsewhere.sessions,
                        )
                    })
                {
                    info!(tenant = %self.tenant, driver = %d.launched.id, sessions = d.load.sessions(), "scaling down: draining a driver");
                    self.metrics.scale_downs.inc();
                    d.state = DriverState::Draining;
                    d.draining_since = Some(now);
                }
                drop(drivers);
                *self.underloaded_since.lock().expect("pool") = None;
            }
        }
    }

    /// Asks the launcher for a driver and watches it start. Awaited in the reconcile pass, so the
    /// next pass's adoption never mistakes it for a stranger.
    async fn launch(self: &Arc<Self>) {
        let launched = match self.launcher.start(&self.spec).await {
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
            load: Arc::default(),
            idle_since: None,
            draining_since: None,
        });
        self.watch_start(launched);
    }

    fn stop_in_background(&self, launched: LaunchedDriver) {
        self.stopping
            .lock()
            .expect("pool")
            .insert(launched.id.clone());
        let launcher = self.launcher.clone();
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            launcher.stop(&launched).await;
            stopping.lock().expect("pool").remove(&launched.id);
        });
    }

    /// Waits (in the background) for a Starting driver to be ready, then lets sessions in.
    pub(super) fn watch_start(self: &Arc<Self>, launched: LaunchedDriver) {
        let pool = self.clone();
        self.tasks.spawn(async move {
            let started = Instant::now();
            let result = pool.launcher.wait_ready(&launched).await;
            let mut drivers = pool.drivers.lock().expect("pool");
            if let Some(d) = drivers.iter_mut().find(|d| d.launched.id == launched.id) {
                match result {
                    Ok(ready) => {
                        info!(tenant = %pool.tenant, driver = %launched.id, address = %ready.address, secs = started.elapsed().as_secs_f64(), "driver ready");
                        d.launched.address = ready.address;
                        // Kubernetes learns the UI's address with the Pod's, once it runs.
                        if ready.ui.is_some() {
                            d.launched.ui = ready.ui;
                        }
                        if d.state == DriverState::Starting {
                            d.state = DriverState::Ready;
                        }
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

    /// Runs [`DriverPool::reconcile`] until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(self.limits.reconcile_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reconcile().await,
                _ = stop.cancelled() => return,
            }
        }
    }
}
