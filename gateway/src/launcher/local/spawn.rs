//! Starting a driver process: its ports, its directories, its command line and environment,
//! and its state file.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use tracing::info;

use super::super::submit::DriverCommand;
use super::super::{DriverSecret, DriverSpec, LaunchError, LaunchedDriver, DRIVER_SECRET_ENV};
use super::catalog::own_catalog;
use super::os_user;
use super::process::signal;
use super::Inner;

impl Inner {
    /// The Spark UI guard's jar; `None` (logged) if this Spark cannot compile it.
    fn ui_auth_jar(&self) -> Option<PathBuf> {
        self.ui_auth
            .path()
            .inspect_err(|e| tracing::warn!(error = %e, "drivers start without a Spark UI: no progress for their statements"))
            .ok()
    }

    pub(super) fn free_port(&self) -> Result<u16, LaunchError> {
        let alive = self.list_alive();
        let mut taken: Vec<u16> = alive
            .iter()
            .flat_map(|d| [Some(d.address.as_str()), d.ui.as_deref()])
            .filter_map(|a| a?.rsplit_once(':')?.1.parse().ok())
            .collect();
        // A catalog's port is its tenant's for good (drivers that outlive the catalog process
        // have it), and the process binds it seconds after the port is picked.
        taken.extend(self.catalogs.reserved_ports());
        // Round robin from the last port handed out, so a driver that just died does not leave
        // its port to its replacement while sparkgate may still hold the dead one's address.
        let first = self.config.first_port;
        let span = u16::MAX - first;
        let start = self.next_port.load(std::sync::atomic::Ordering::Relaxed);
        let port = (0..span)
            .map(|i| first + (start.wrapping_sub(first).wrapping_add(i)) % span)
            .find(|p| !taken.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .ok_or_else(|| LaunchError::Start("no free loopback port".into()))?;
        self.next_port.store(
            port.wrapping_add(1).max(first),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(port)
    }

    /// The tenant's catalog, started if need be. Its old port taken by another process: the
    /// tenant's drivers (which would reach that process) are killed and the catalog moves.
    /// Called with the spawn lock held.
    fn catalog_uri(&self, tenant: &str) -> Result<String, LaunchError> {
        match self.catalogs.ensure_running(tenant, &|| self.free_port()) {
            Err(e @ LaunchError::PortTaken { .. }) => {
                tracing::error!(%tenant, error = %e, "moving the tenant catalog to a new port");
                self.abandon_catalog_port(tenant);
                self.catalogs.ensure_running(tenant, &|| self.free_port())
            }
            other => other,
        }
    }

    pub(super) fn abandon_catalog_port(&self, tenant: &str) {
        self.catalogs.forget_port(tenant);
        for d in self.list_alive().iter().filter(|d| d.tenant == tenant) {
            signal(d.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Starts a driver process, and its tenant's catalog if it does not run; neither is ready
    /// yet (see [`Launcher::wait_ready`]). Blocking: call it off the async runtime.
    pub(super) fn spawn(&self, spec: &DriverSpec) -> Result<LaunchedDriver, LaunchError> {
        // Held through the catalog check and the driver's state file, so a tenant's last driver
        // stopping (which stops the catalog) never misses a driver starting.
        let _one_at_a_time = self.spawning.lock().expect("spawn lock");
        let metastore = if own_catalog(&spec.hive_conf, &spec.spark_conf) {
            None
        } else {
            Some(self.catalog_uri(&spec.tenant)?)
        };
        let driver_auth = self.driver_auth.path()?;
        let ui_auth = self.ui_auth_jar();
        let port = self.free_port()?;
        let ui_port = match ui_auth {
            Some(_) => Some(self.free_port()?),
            None => None,
        };
        // Unique even when a port is reused after a driver died: its state must not be confused
        // with the dead one's.
        let id = format!("{}-{port}-{:08x}", spec.tenant, rand::random::<u32>());
        let dir = self.driver_dir(&id);
        let user = self.users.get(&spec.tenant);
        self.prepare_tenant(&spec.tenant)?;
        os_user::own_dir(&dir, 0o711)?;
        for sub in ["tmp", "scratch", "ls", "run"] {
            os_user::private_dir(&dir.join(sub), user)?;
        }
        let w = dir.display().to_string();
        // Where the driver listens, how it is reached, which tenant and catalog it serves:
        // sparkgate's decisions, over any tenant setting.
        let mut submit = DriverCommand::new(spec);
        submit
            .option("--master", "local[2]")
            .option(
                "--driver-java-options",
                format!("-Djava.io.tmpdir={w}/tmp -XX:TieredStopAtLevel=1 -XX:-UsePerfData"),
            )
            .default_spark(
                "spark.sql.warehouse.dir",
                self.catalogs.warehouse(&spec.tenant).display().to_string(),
            )
            .default_spark(
                crate::launcher::RELATION_CACHE_SIZE.0,
                crate::launcher::RELATION_CACHE_SIZE.1,
            )
            .spark("spark.ui.enabled", "false")
            // Its RPC and block-manager ports are on loopback, where every local user reaches
            // them: Spark then takes only peers holding the secret it makes for itself.
            .spark("spark.authenticate", "true")
            .spark("spark.local.dir", format!("{w}/tmp"))
            .spark("spark.driver.host", "127.0.0.1")
            .spark("spark.driver.bindAddress", "127.0.0.1")
            .spark("spark.sparkgate.tenant", spec.tenant.clone())
            .hive("hive.server2.thrift.bind.host", "127.0.0.1")
            .hive("hive.server2.thrift.port", port.to_string())
            .hive("hive.server2.transport.mode", "binary")
            .hive("hive.exec.scratchdir", format!("{w}/scratch"))
            .hive("hive.exec.local.scratchdir", format!("{w}/ls"));
        let mut class_path = driver_auth.display().to_string();
        if let (Some(jar), Some(ui_port)) = (&ui_auth, ui_port) {
            class_path = format!("{class_path}:{}", jar.display());
            crate::launcher::ui::enable(&mut submit, ui_port);
        }
        submit.sparkgate_only(&class_path, &self.service_user);
        if let Some(uri) = &metastore {
            // A cold start runs the catalog and the driver at once; the driver waits for the
            // catalog (and rides out a restart of it) instead of failing.
            submit
                .hive("hive.metastore.uris", uri.clone())
                .hive("hive.metastore.connect.retries", "120")
                .hive("hive.metastore.client.connect.retry.delay", "1s");
        }
        let secret = DriverSecret::generate();
        let mut cmd = std::process::Command::new(self.spark_home.join("bin/spark-submit"));
        cmd.args(submit.args());
        if let Some(user) = user {
            os_user::run_as(
                &mut cmd,
                user,
                &self.catalogs.tenant_dir(&spec.tenant).join("home"),
            );
        }
        // Logs are sparkgate's (the driver writes them through the descriptors it is given):
        // they hold the tenant's statements.
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(name))
        };
        cmd.env("SPARK_HOME", &self.spark_home)
            .env(DRIVER_SECRET_ENV, secret.expose())
            // Where the Spark UI listens (it ignores spark.driver.bindAddress).
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_LOG_DIR", dir.join("run"))
            .current_dir(dir.join("run"))
            .stdin(Stdio::null())
            .stdout(log("driver.log")?)
            .stderr(log("driver.err.log")?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| LaunchError::Start(e.to_string()))?;
        let driver = LaunchedDriver {
            id,
            tenant: spec.tenant.clone(),
            address: format!("127.0.0.1:{port}"),
            pid: child.id(),
            secret,
            ui: ui_port.map(|p| format!("http://127.0.0.1:{p}")),
        };
        // The child is reaped by a thread, so it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        // It holds the driver's secret: sparkgate's alone.
        let mut state = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("driver.json"))?;
        std::io::Write::write_all(
            &mut state,
            serde_json::to_string(&driver)
                .expect("serializable")
                .as_bytes(),
        )?;
        info!(driver = %driver.id, address = %driver.address, "driver process started");
        Ok(driver)
    }
}
