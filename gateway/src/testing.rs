//! Test kit of the gateway: [`FakeLauncher`], a [`Launcher`] whose drivers are in-process fake
//! Spark Thrift Servers (`hive_thrift::testing`), each serving after a configurable cold start,
//! so a real [`crate::pool::DriverPool`] and its autoscaler can be driven in tests and
//! benchmarks without Spark.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
pub use hive_thrift::testing::{FakeSts, FakeStsStats, Fault, RunningFakeSts};

use crate::launcher::{DriverSpec, Health, LaunchError, LaunchedDriver, Launcher};

/// A [`Launcher`] of in-process fake drivers: [`Launcher::start`] records a driver
/// (`<tenant>-fake-<n>`) at once, [`Launcher::wait_ready`] waits the cold start and then starts
/// a [`FakeSts`] for it, [`Launcher::stop`] drops that server. [`FakeLauncher::kill`] drops it
/// as if the process had died: the driver's health turns `Dead`.
pub struct FakeLauncher {
    /// How long a driver takes from `start` until it serves.
    cold_start: Duration,
    /// What each driver serves.
    server: FakeSts,
    drivers: Mutex<FakeDrivers>,
}

#[derive(Default)]
struct FakeDrivers {
    /// Drivers started so far (numbers the ids, and counts launches).
    started: u64,
    /// Drivers stopped so far.
    stopped: u64,
    live: Vec<FakeDriver>,
}

struct FakeDriver {
    launched: LaunchedDriver,
    /// Serving once the cold start is over; `None` while starting and after a kill.
    server: Option<RunningFakeSts>,
    /// Set by [`FakeLauncher::kill`]: the "process" is gone until the pool stops it.
    killed: bool,
}

impl Default for FakeLauncher {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeLauncher {
    /// Drivers that serve at once, with [`FakeSts::new`]'s defaults.
    pub fn new() -> Self {
        Self {
            cold_start: Duration::ZERO,
            server: FakeSts::new(),
            drivers: Mutex::default(),
        }
    }

    /// Time from `start` until a driver serves.
    pub fn cold_start(mut self, delay: Duration) -> Self {
        self.cold_start = delay;
        self
    }

    /// What every driver serves.
    pub fn server(mut self, server: FakeSts) -> Self {
        self.server = server;
        self
    }

    /// Kills a driver as a crash would: its server goes away and its health is `Dead` until the
    /// pool stops it. `false` if there is no such live driver.
    pub fn kill(&self, id: &str) -> bool {
        let server = {
            let mut drivers = self.drivers.lock().expect("fake launcher");
            let Some(d) = drivers
                .live
                .iter_mut()
                .find(|d| d.launched.id == id && !d.killed)
            else {
                return false;
            };
            d.killed = true;
            d.server.take()
        }; // lock released before the server is dropped
        drop(server);
        true
    }

    /// Drivers that exist now (starting, serving, or killed but not yet stopped).
    pub fn live(&self) -> usize {
        self.drivers.lock().expect("fake launcher").live.len()
    }

    /// Drivers started since this launcher was made.
    pub fn launches(&self) -> u64 {
        self.drivers.lock().expect("fake launcher").started
    }

    /// Drivers stopped since this launcher was made.
    pub fn stops(&self) -> u64 {
        self.drivers.lock().expect("fake launcher").stopped
    }

    /// The counters of a serving driver's fake server.
    pub fn server_stats(&self, id: &str) -> Option<Arc<FakeStsStats>> {
        let drivers = self.drivers.lock().expect("fake launcher");
        drivers
            .live
            .iter()
            .find(|d| d.launched.id == id)
            .and_then(|d| d.server.as_ref().map(|s| s.stats.clone()))
    }

    async fn ready(&self, driver: &LaunchedDriver) -> Result<LaunchedDriver, LaunchError> {
        tokio::time::sleep(self.cold_start).await;
        let server = self.server.clone().start().await;
        let address = server.addr.to_string();
        let mut drivers = self.drivers.lock().expect("fake launcher");
        let failed = |reason: &str| LaunchError::Failed {
            id: driver.id.clone(),
            reason: reason.into(),
        };
        let Some(d) = drivers.live.iter_mut().find(|d| d.launched.id == driver.id) else {
            return Err(failed("stopped while starting"));
        };
        if d.killed {
            return Err(failed("killed while starting"));
        }
        d.launched.address = address;
        d.server = Some(server);
        Ok(d.launched.clone())
    }
}

impl Launcher for FakeLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        let mut drivers = self.drivers.lock().expect("fake launcher");
        drivers.started += 1;
        let launched = LaunchedDriver {
            id: format!("{}-fake-{}", spec.tenant, drivers.started),
            tenant: spec.tenant.clone(),
            address: String::new(),
            pid: 0,
            secret: crate::launcher::DriverSecret::generate(),
            ui: None,
        };
        drivers.live.push(FakeDriver {
            launched: launched.clone(),
            server: None,
            killed: false,
        });
        std::future::ready(Ok(launched)).boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.ready(driver).boxed()
    }

    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        let removed = {
            let mut drivers = self.drivers.lock().expect("fake launcher");
            let at = drivers.live.iter().position(|d| d.launched.id == driver.id);
            let removed = at.map(|i| drivers.live.remove(i));
            if removed.is_some() {
                drivers.stopped += 1;
            }
            removed
        }; // lock released before the server is dropped
        drop(removed);
        std::future::ready(()).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        let listed = self
            .drivers
            .lock()
            .expect("fake launcher")
            .live
            .iter()
            .filter(|d| !d.killed)
            .map(|d| {
                let health = match &d.server {
                    Some(_) => Health::Ready {
                        address: d.launched.address.clone(),
                    },
                    None => Health::Alive,
                };
                (d.launched.clone(), health)
            })
            .collect();
        std::future::ready(listed).boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        let drivers = self.drivers.lock().expect("fake launcher");
        match drivers.live.iter().find(|d| d.launched.id == driver.id) {
            None => Health::Dead("stopped".into()),
            Some(d) if d.killed => Health::Dead("killed (fake launcher)".into()),
            Some(d) => match &d.server {
                Some(_) => Health::Ready {
                    address: d.launched.address.clone(),
                },
                None => Health::Alive,
            },
        }
    }
}
