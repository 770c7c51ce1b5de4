//! The local launcher: drivers as child processes of Spark's HiveThriftServer2 on loopback
//! ports, each with its own work dir and logs. A state file per driver (`drivers/<id>/driver.json`
//! in the work dir) lets a restarted sparkgate find the drivers of its previous run.
//!
//! A driver's work dir holds only what may be lost with it (temp files, scratch, logs); its
//! tenant's tables live in the tenant's catalog and warehouse (`tenants/<tenant>/`, see
//! [`catalog`]), shared by all of the tenant's drivers and kept across their restarts.

mod catalog;
mod config;
pub mod os_user;
mod process;
mod spawn;

use std::collections::BTreeMap;
use std::sync::Arc;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::{info, warn};

use super::jvm::ScalaJar;
use super::{probe, DriverSpec, Health, LaunchError, LaunchedDriver, Launcher, DRIVER_AUTH_SOURCE};
pub use catalog::own_catalog;
use catalog::TenantCatalogs;
pub(crate) use config::default_spark_home;
use config::warn_if_ephemeral;
pub use config::LocalLauncherConfig;
use process::{alive, signal};

/// Child processes of Spark's HiveThriftServer2 on loopback ports.
pub struct LocalLauncher {
    inner: Arc<Inner>,
}

struct Inner {
    /// `work_dir` made absolute: drivers and catalogs run in directories of their own.
    config: LocalLauncherConfig,
    catalogs: TenantCatalogs,
    /// sparkgate's password provider on the drivers' class path.
    driver_auth: ScalaJar,
    /// The guard of the drivers' Spark UI; drivers go without a UI (and progress) if this
    /// Spark cannot compile it.
    ui_auth: ScalaJar,
    /// The user sparkgate's driver connections log in as.
    service_user: String,
    spark_home: PathBuf,
    /// Each tenant's OS user; empty when drivers run as sparkgate's own.
    users: BTreeMap<String, os_user::RunAs>,
    /// Held from picking a port until the driver's state file records it: pools start drivers
    /// concurrently, and a port is free until the new JVM binds it, seconds later.
    spawning: std::sync::Mutex<()>,
    /// Where the search for a free port starts next.
    next_port: std::sync::atomic::AtomicU16,
}

impl LocalLauncher {
    /// `service_user`: the user sparkgate's connections to the drivers log in as. `tenants`:
    /// the local tenants, whose OS users and directories are made ready now. `secrets`: files
    /// of sparkgate's that no tenant's OS user may read (startup fails if one can).
    pub fn new(
        mut config: LocalLauncherConfig,
        service_user: &str,
        tenants: &[String],
        secrets: &[PathBuf],
    ) -> Result<Self, LaunchError> {
        let spark_home = config
            .spark_home
            .clone()
            .or_else(default_spark_home)
            .ok_or_else(|| {
                LaunchError::Start(
                    "no Spark home: set local.spark_home or SPARK_HOME, or run integration/setup.sh".into(),
                )
            })?;
        if !spark_home.join("bin/spark-submit").exists() {
            return Err(LaunchError::Start(format!(
                "{} has no bin/spark-submit",
                spark_home.display()
            )));
        }
        std::fs::create_dir_all(config.work_dir.join("drivers"))?;
        config.work_dir = config.work_dir.canonicalize()?;
        // Traversable, not listable: drivers reach their own directories only.
        for dir in ["", "drivers", "tenants"] {
            os_user::own_dir(&config.work_dir.join(dir), 0o711)?;
        }
        for dir in ["driver-auth", "catalog-server"] {
            os_user::own_dir(&config.work_dir.join(dir), 0o755)?;
        }
        let users = os_user::tenant_users(&config, tenants)?;
        let spark_home = if users.is_empty() {
            spark_home
        } else {
            os_user::reachable_spark_home(&spark_home, &config.work_dir, &users)?
        };
        for (tenant, user) in &users {
            let readable = os_user::readable_by(user, secrets)?;
            if let Some(path) = readable.into_iter().next() {
                return Err(os_user::OsUserError::SecretReadable {
                    path,
                    tenant: tenant.clone(),
                    name: user.name.clone(),
                }
                .into());
            }
        }
        catalog::report_per_driver_tables(&config.work_dir.join("drivers"));
        warn_if_ephemeral(config.first_port);
        let config_first_port = config.first_port;
        let catalogs = TenantCatalogs::new(
            spark_home.clone(),
            config.work_dir.clone(),
            config.catalog_memory.clone(),
            config.stop_grace,
            users.clone(),
        );
        let driver_auth = ScalaJar::new(
            "driver-auth",
            &[("DriverAuth.scala", DRIVER_AUTH_SOURCE)],
            spark_home.clone(),
            config.work_dir.join("driver-auth"),
        );
        let ui_auth = ScalaJar::new(
            "ui-auth",
            &[("UiAuth.scala", super::ui::UI_AUTH_SOURCE)],
            spark_home.clone(),
            config.work_dir.join("driver-auth"),
        );
        let inner = Inner {
            config,
            catalogs,
            driver_auth,
            ui_auth,
            service_user: service_user.to_owned(),
            spark_home,
            users,
            spawning: std::sync::Mutex::new(()),
            next_port: std::sync::atomic::AtomicU16::new(config_first_port),
        };
        // Drivers and catalogs an earlier run started as another OS user go first: they hold
        // files the tenant's own user is about to be given.
        inner.list_alive();
        for tenant in tenants {
            inner.catalogs.stop_foreign(tenant);
            inner.prepare_tenant(tenant)?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

impl LocalLauncher {
    /// The OS users the drivers run as (none when they run as sparkgate's own): their processes
    /// run tenants' SQL, which can run commands.
    pub fn driver_uids(&self) -> Vec<u32> {
        self.inner.users.values().map(|u| u.uid).collect()
    }
}

impl Inner {
    fn driver_dir(&self, id: &str) -> PathBuf {
        self.config.work_dir.join("drivers").join(id)
    }

    /// The tenant's directories (catalog, warehouse, home), its user's alone. Idempotent.
    fn prepare_tenant(&self, tenant: &str) -> Result<(), LaunchError> {
        let user = self.users.get(tenant);
        let dir = self.catalogs.tenant_dir(tenant);
        os_user::own_dir(&dir, 0o711)?;
        for sub in ["catalog", "warehouse", "home"] {
            os_user::private_dir(&dir.join(sub), user)?;
        }
        Ok(())
    }

    /// The OS user a tenant's processes must run as.
    fn expected_uid(&self, tenant: &str) -> u32 {
        self.users
            .get(tenant)
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |u| u.uid)
    }

    /// The drivers a previous run (or this one) left, alive; dead ones' state is removed.
    fn list_alive(&self) -> Vec<LaunchedDriver> {
        let Ok(entries) = std::fs::read_dir(self.config.work_dir.join("drivers")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let state = entry.path().join("driver.json");
            let Ok(text) = std::fs::read_to_string(&state) else {
                continue;
            };
            match serde_json::from_str::<LaunchedDriver>(&text) {
                Ok(driver) if alive(driver.pid) && driver.secret.is_empty() => {
                    // An older sparkgate started it open to anyone on the machine: replaced.
                    warn!(driver = %driver.id, "stopping a driver started without a secret (by an older sparkgate); it takes connections from anyone");
                    signal(driver.pid, nix::sys::signal::Signal::SIGTERM);
                    let _ = std::fs::remove_file(&state);
                }
                Ok(driver)
                    if alive(driver.pid)
                        && os_user::process_uid(driver.pid)
                            .is_some_and(|uid| uid != self.expected_uid(&driver.tenant)) =>
                {
                    // Started by an earlier run as another OS user (as sparkgate's own, before
                    // tenants had users): it could read what the tenant must not.
                    warn!(driver = %driver.id, "stopping a driver that runs as another OS user than its tenant's");
                    signal(driver.pid, nix::sys::signal::Signal::SIGTERM);
                    let _ = std::fs::remove_file(&state);
                }
                Ok(driver) if alive(driver.pid) => found.push(driver),
                _ => {
                    let _ = std::fs::remove_file(&state);
                }
            }
        }
        found
    }

    /// Waits until the driver answers an HS2 OpenSession (its port opens well before that).
    async fn ready(&self, driver: &LaunchedDriver) -> Result<LaunchedDriver, LaunchError> {
        let deadline = tokio::time::Instant::now() + self.config.startup_timeout;
        while tokio::time::Instant::now() < deadline {
            if !alive(driver.pid) {
                break;
            }
            if probe(&driver.address, &driver.secret).await {
                return Ok(driver.clone());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(LaunchError::NotReady {
            id: driver.id.clone(),
            secs: self.config.startup_timeout.as_secs(),
            log: self
                .driver_dir(&driver.id)
                .join("driver.err.log")
                .display()
                .to_string(),
        })
    }

    /// Stops a driver: SIGTERM, then SIGKILL after the grace period; forgets its state.
    async fn terminate(self: &Arc<Self>, driver: &LaunchedDriver) {
        signal(driver.pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + self.config.stop_grace;
        while alive(driver.pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if alive(driver.pid) {
            warn!(driver = %driver.id, "driver ignored SIGTERM; killing it");
            signal(driver.pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(self.driver_dir(&driver.id).join("driver.json"));
        info!(driver = %driver.id, "driver stopped");
        // The tenant's last driver takes its catalog with it (scale to zero frees its memory
        // too); the next driver starts it again, with the same tables.
        let stopping_catalog = {
            let _no_spawn_meanwhile = self.spawning.lock().expect("spawn lock");
            let last = !self.list_alive().iter().any(|d| d.tenant == driver.tenant);
            if last {
                self.catalogs.begin_stop(&driver.tenant)
            } else {
                None
            }
        };
        if let Some(pid) = stopping_catalog {
            let inner = self.clone();
            let tenant = driver.tenant.clone();
            let _ =
                tokio::task::spawn_blocking(move || inner.catalogs.wait_exit(&tenant, pid)).await;
        }
    }

    /// Restarts the catalogs of tenants whose drivers run but whose catalog died.
    async fn supervise_catalogs(self: &Arc<Self>, alive: &[LaunchedDriver]) {
        let mut dead: Vec<String> = alive
            .iter()
            .map(|d| d.tenant.clone())
            .filter(|t| self.catalogs.needs_revival(t))
            .collect();
        dead.sort();
        dead.dedup();
        if dead.is_empty() {
            return;
        }
        let inner = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // Ports are picked under the spawn lock (see `spawn`).
            let _one_at_a_time = inner.spawning.lock().expect("spawn lock");
            for tenant in dead {
                if let Err(e) = inner.catalogs.revive(&tenant, &|| inner.free_port()) {
                    // Its drivers would reach whatever listens there: they go, and their
                    // replacements get a catalog on a new port.
                    tracing::error!(%tenant, error = %e, "cannot restart the tenant catalog; stopping its drivers");
                    if matches!(e, LaunchError::PortTaken { .. }) {
                        inner.abandon_catalog_port(&tenant);
                    }
                }
            }
        })
        .await;
    }
}

impl Launcher for LocalLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        let inner = self.inner.clone();
        let spec = spec.clone();
        async move {
            tokio::task::spawn_blocking(move || inner.spawn(&spec))
                .await
                .map_err(|e| LaunchError::Start(format!("driver start task failed: {e}")))?
        }
        .boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.inner.ready(driver).boxed()
    }

    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        self.inner.terminate(driver).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        async move {
            let alive = self.inner.list_alive();
            self.inner.supervise_catalogs(&alive).await;
            alive.into_iter().map(|d| (d, Health::Alive)).collect()
        }
        .boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        if alive(driver.pid) {
            Health::Alive
        } else {
            Health::Dead("the driver process exited".into())
        }
    }
}
