//! The local launcher: drivers as child processes of Spark's HiveThriftServer2 on loopback
//! ports, each with its own work dir and logs. A state file per driver (`drivers/<id>/driver.json`
//! in the work dir) lets a restarted sparkgate find the drivers of its previous run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use tracing::{info, warn};

use super::{probe, DriverSpec, Health, LaunchError, LaunchedDriver, Launcher};

/// Settings of the local launcher.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LocalLauncherConfig {
    /// Spark home (with `bin/spark-submit`); default: `$SPARK_HOME`, else the pyspark package
    /// of the repo's venv.
    pub spark_home: Option<PathBuf>,
    /// Where drivers keep their work dirs, logs and state files.
    pub work_dir: PathBuf,
    /// Loopback ports handed to drivers, from this one up.
    pub first_port: u16,
    /// A driver not answering an HS2 OpenSession within this time has failed to start.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// After SIGTERM, a driver gets this long before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
}

impl Default for LocalLauncherConfig {
    fn default() -> Self {
        Self {
            spark_home: None,
            work_dir: PathBuf::from("sparkgate-work"),
            first_port: 20_100,
            startup_timeout: Duration::from_secs(180),
            stop_grace: Duration::from_secs(20),
        }
    }
}

/// Child processes of Spark's HiveThriftServer2 on loopback ports.
pub struct LocalLauncher {
    config: LocalLauncherConfig,
    spark_home: PathBuf,
    /// Held from picking a port until the driver's state file records it: pools start drivers
    /// concurrently, and a port is free until the new JVM binds it, seconds later.
    spawning: std::sync::Mutex<()>,
    /// Where the search for a free port starts next.
    next_port: std::sync::atomic::AtomicU16,
}

fn default_spark_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("SPARK_HOME") {
        return Some(PathBuf::from(home));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv_lib = repo.join(".venv/lib");
    std::fs::read_dir(venv_lib)
        .ok()?
        .flatten()
        .find_map(|python| {
            let home = python.path().join("site-packages/pyspark");
            home.join("bin/spark-submit").exists().then_some(home)
        })
}

/// Whether a process is alive (it may be a zombie child; `/proc` says so).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Signals the driver's whole process group: it leads its own (spark-submit becomes the JVM,
/// which may have children of its own).
fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if let Err(e) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal) {
        if e != nix::errno::Errno::ESRCH {
            warn!(pid, ?signal, error = %e, "cannot signal driver");
        }
    }
}

impl LocalLauncher {
    pub fn new(config: LocalLauncherConfig) -> Result<Self, LaunchError> {
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
        let config_first_port = config.first_port;
        Ok(Self {
            config,
            spark_home,
            spawning: std::sync::Mutex::new(()),
            next_port: std::sync::atomic::AtomicU16::new(config_first_port),
        })
    }

    fn driver_dir(&self, id: &str) -> PathBuf {
        self.config.work_dir.join("drivers").join(id)
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
                Ok(driver) if alive(driver.pid) => found.push(driver),
                _ => {
                    let _ = std::fs::remove_file(&state);
                }
            }
        }
        found
    }

    fn free_port(&self) -> Result<u16, LaunchError> {
        let taken: Vec<u16> = self
            .list_alive()
            .iter()
            .filter_map(|d| d.address.rsplit_once(':')?.1.parse().ok())
            .collect();
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

    /// Starts a driver process; it is not ready yet (see [`wait_ready`]).
    fn spawn(&self, spec: &DriverSpec) -> Result<LaunchedDriver, LaunchError> {
        let _one_at_a_time = self.spawning.lock().expect("spawn lock");
        let port = self.free_port()?;
        // Unique even when a port is reused after a driver died: its state must not be confused
        // with the dead one's.
        let id = format!("{}-{port}-{:08x}", spec.tenant, rand::random::<u32>());
        let dir = self.driver_dir(&id);
        for sub in ["tmp", "warehouse", "scratch", "ls"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let w = dir.display().to_string();
        let mut cmd = std::process::Command::new(self.spark_home.join("bin/spark-submit"));
        cmd.args([
            "--class",
            "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        ])
        .args([
            "--master",
            "local[2]",
            "--driver-memory",
            &spec.driver_memory,
        ])
        .args([
            "--driver-java-options",
            &format!("-Djava.io.tmpdir={w}/tmp -XX:TieredStopAtLevel=1 -XX:-UsePerfData"),
        ])
        .args(["--conf", "spark.ui.enabled=false"])
        .args(["--conf", &format!("spark.local.dir={w}/tmp")])
        .args(["--conf", &format!("spark.sql.warehouse.dir={w}/warehouse")])
        .args(["--conf", "spark.driver.host=127.0.0.1"])
        .args(["--conf", "spark.driver.bindAddress=127.0.0.1"])
        .args(["--conf", &format!("spark.sparkgate.tenant={}", spec.tenant)]);
        for (key, value) in &spec.spark_conf {
            cmd.args(["--conf", &format!("{key}={value}")]);
        }
        cmd.arg("spark-internal")
            .args([
                "--hiveconf",
                &format!("javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={w}/metastore_db;create=true"),
            ])
            .args(["--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1"])
            .args(["--hiveconf", &format!("hive.server2.thrift.port={port}")])
            .args(["--hiveconf", "hive.server2.transport.mode=binary"])
            .args(["--hiveconf", "hive.server2.authentication=NONE"])
            .args(["--hiveconf", &format!("hive.exec.scratchdir={w}/scratch")])
            .args(["--hiveconf", &format!("hive.exec.local.scratchdir={w}/ls")])
            .args(
                spec.hive_conf
                    .iter()
                    .flat_map(|(key, value)| ["--hiveconf".to_owned(), format!("{key}={value}")]),
            )
            .env("SPARK_HOME", &self.spark_home)
            .env("SPARK_LOG_DIR", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("driver.log"))?)
            .stderr(std::fs::File::create(dir.join("driver.err.log"))?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| LaunchError::Start(e.to_string()))?;
        let driver = LaunchedDriver {
            id,
            tenant: spec.tenant.clone(),
            address: format!("127.0.0.1:{port}"),
            pid: child.id(),
        };
        // The child is reaped by a thread, so it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        std::fs::write(
            dir.join("driver.json"),
            serde_json::to_string(&driver).expect("serializable"),
        )?;
        info!(driver = %driver.id, address = %driver.address, "driver process started");
        Ok(driver)
    }

    /// Waits until the driver answers an HS2 OpenSession (its port opens well before that).
    async fn ready(&self, driver: &LaunchedDriver) -> Result<LaunchedDriver, LaunchError> {
        let deadline = tokio::time::Instant::now() + self.config.startup_timeout;
        while tokio::time::Instant::now() < deadline {
            if !alive(driver.pid) {
                break;
            }
            if probe(&driver.address).await {
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
    async fn terminate(&self, driver: &LaunchedDriver) {
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
    }
}

impl Launcher for LocalLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        std::future::ready(self.spawn(spec)).boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.ready(driver).boxed()
    }

    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        self.terminate(driver).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        let found = self
            .list_alive()
            .into_iter()
            .map(|d| (d, Health::Alive))
            .collect();
        std::future::ready(found).boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        if alive(driver.pid) {
            Health::Alive
        } else {
            Health::Dead("the driver process exited".into())
        }
    }
}
